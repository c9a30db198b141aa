"""Node state before and after a repair, and which journaled action explains each difference.

Before its first change on a node, a session captures the state that matters there (iptables in
both backends and families, or the one `iptables-save` of an iptables without -legacy/-nft
variants, the nft ruleset, firewalld's zones, links, addresses, routes, flannel.1's (and
flannel-v6.1's) neighbours and fdb, the sysctls, the conntrack limit, CNI files, kubeconfig
servers, alternatives): the facts script's own sections, read the same way as a diagnosis, made
stable (no counters, timers, round-trip times). After its last change (and after a rollback) it
captures them again. Both go into the journal as
`node_state` events, so the report can show, per node, every section that differs, tied to the
actions that ran on that node and touch that kind of state; a difference no action explains is
flagged "changed during the session by something else".
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

# section name (before any " arg") -> what kind of state it is, and the words in a command that
# change it (an action whose command has one of them can explain a difference in that section)
STATE_SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # (firewall-cmd writes firewalld's rules into whichever backend firewalld uses)
    "legacy_save": ("iptables (legacy)", ("iptables", "-legacy", "firewall-cmd")),
    "nft_save_nat": ("iptables-nft nat", ("iptables", "-nft", "nft ", "firewall-cmd")),
    "nft_save_filter": ("iptables-nft filter", ("iptables", "-nft", "nft ", "firewall-cmd")),
    "nft_save_mangle": ("iptables-nft mangle", ("iptables", "-nft", "nft ", "firewall-cmd")),
    "ip6_legacy_save": ("ip6tables (legacy)", ("ip6tables", "firewall-cmd")),
    # the one `iptables-save` / `ip6tables-save` of an iptables without -legacy/-nft variants
    # (1.4.21 on CentOS 7, 1.6.x on Ubuntu 18.04): the only iptables state such a node has
    "iptables_save": ("iptables", ("iptables", "firewall-cmd")),
    "ip6tables_save": ("ip6tables", ("ip6tables", "firewall-cmd")),
    # firewalld's active zones (`firewall-cmd --get-active-zones`: a trusted source it was given)
    "firewalld": ("firewalld zones", ("firewall-cmd",)),
    "ip6_nft_save_nat": ("ip6tables-nft nat", ("ip6tables", "nft ", "firewall-cmd")),
    "ip6_nft_save_filter": ("ip6tables-nft filter", ("ip6tables", "nft ", "firewall-cmd")),
    "ip6_nft_save_mangle": ("ip6tables-nft mangle", ("ip6tables", "nft ", "firewall-cmd")),
    "nft_json": ("nft ruleset", ("nft ", "iptables", "firewall-cmd")),
    "ip_link": ("links", ("ip link", "ip -6 link", "ip -d link")),
    "ip_addr": ("addresses", ("ip addr", "ip address", "ip -6 addr")),
    "ip_route": ("routes", ("ip route", "ip -4 route", "route ")),
    "ip6_route": ("IPv6 routes", ("ip -6 route", "ip route")),
    "ip_neigh_flannel": ("flannel.1 neighbours", ("ip neigh", "neigh ")),
    "fdb_flannel": ("flannel.1 fdb", ("bridge fdb", "fdb ")),
    # a dual-stack flannel node's IPv6 vxlan device (its entries are repaired like flannel.1's)
    "ip6_neigh_flannel": ("flannel-v6.1 neighbours", ("ip neigh", "ip -6 neigh", "neigh ")),
    "fdb_flannel6": ("flannel-v6.1 fdb", ("bridge fdb", "fdb ")),
    "sysctl": ("sysctls", ("sysctl", "/proc/sys")),
    "proc_modules": ("kernel modules", ("modprobe", "insmod", "rmmod")),
    "cni_conf": ("CNI config", ("/etc/cni", "net.d", "conflist")),
    "kubeconfig": ("kubeconfig server", ("kubeconfig", ".kube", "/etc/kubernetes")),
    "alternatives": ("iptables alternatives", ("update-alternatives",)),
    "alternatives_link": ("iptables alternatives", ("update-alternatives",)),
    "subnet_env": ("flannel subnet.env", ("subnet.env", "/run/flannel")),
    # the conntrack limit (nf_conntrack_max, buckets, CPUs); its count and counters are not state
    "conntrack": ("conntrack limit", ("nf_conntrack_max",)),
}
MAX_SECTION = 256 * 1024  # per section in the journal; longer state is cut (and says so)

_COUNTERS = re.compile(r"^(:\S+ \S+) \[\d+:\d+\]$|^\[\d+:\d+\] ", re.M)
_SAVE_STAMP = re.compile(r"^# (Generated|Completed) .*$", re.M)
_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
# the conntrack section's lines that move on an untouched node: the table's count, its counters
_CONNTRACK_VOLATILE = re.compile(r"^(/proc/sys/net/netfilter/nf_conntrack_count|/proc/net/stat/nf_conntrack):.*\n?",
                                 re.M)
_DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)* ?ms\b")
# kernel bookkeeping that changes on an untouched node: timers, use counters, an address's
# remaining lifetimes (a DHCP or SLAAC address counts them down every second) and a new IPv6
# address's "tentative" flag (set until duplicate address detection ends, ~1-2 s after the
# address appears; "dadfailed", a real problem, stays state)
_VOLATILE_KEYS = re.compile(r"(_timer|^used|^updated|^confirmed|^refcnt|^stats(64)?|^expires"
                            r"|^tentative|^valid_life_time|^preferred_life_time)$")


def _canonical_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({} if k == "counter" and isinstance(v, dict) else _canonical_json(v))
                for k, v in value.items() if not _VOLATILE_KEYS.search(str(k))}
    if isinstance(value, list):
        return [_canonical_json(v) for v in value]
    return value


def stable(text: str) -> str:
    """A section as state: iptables-save without its timestamps and packet counters; JSON (ip -j,
    nft -j) one key a line, without timers, use counters and rule counters; probe round-trip
    times replaced (they change between two reads of an unchanged node)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            pass
        else:
            return json.dumps(_canonical_json(doc), indent=1, sort_keys=True)
    text = _SAVE_STAMP.sub("", text)
    text = _CONNTRACK_VOLATILE.sub("", text)
    text = _NFT_COUNTER.sub("counter", text)
    text = _DURATION.sub("N ms", text)
    return _COUNTERS.sub(lambda m: m.group(1) or "", text)


def is_state_section(key: str) -> bool:
    return key.split(" ", 1)[0] in STATE_SECTIONS


def capture(facts: Any) -> dict[str, str]:
    """The state sections of one node's NodeFacts, stable and bounded, keyed "name [arg]"."""
    out: dict[str, str] = {}
    for key, sec in sorted((getattr(facts, "sections", None) or {}).items()):
        if not is_state_section(key) or sec.rc not in (0, None):
            continue
        text = stable(sec.stdout or "")
        if len(text) > MAX_SECTION:
            text = text[:MAX_SECTION] + "\n[... cut: the section is longer than the journal keeps]"
        out[key] = text
    return out


def capture_nodes(shells: Any, nodes: dict[str, str | None]) -> dict[str, dict[str, str] | str]:
    """Read the state of `nodes` (name -> address) in parallel: name -> sections, or the reason it
    could not be read."""
    from clusterfix_tui.core.diagnose import read_node

    def one(item: tuple[str, str | None]) -> tuple[str, dict[str, str] | str]:
        node, address = item
        try:
            facts, finding, _ = read_node(shells, node, address, [])
        except Exception as exc:  # noqa: BLE001 - a node that cannot be read says so
            return node, f"{type(exc).__name__}: {exc}"
        if facts is None or finding is not None:
            why = finding.evidence[0] if finding is not None and finding.evidence else "unread"
            return node, f"not read: {why}"
        return node, capture(facts)

    if not nodes:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(nodes)),
                                               thread_name_prefix="cfx-state") as ex:
        return dict(ex.map(one, sorted(nodes.items())))


def journal_state(journal: Any, phase: str, shells: Any, nodes: dict[str, str | None],
                  known: dict[str, Any] | None = None,
                  read_now: dict[str, dict[str, str] | str] | None = None,
                  ) -> dict[str, dict[str, str] | str]:
    """Journal one `node_state` event per node of `nodes` (name -> address) for `phase`
    ("before" / "after"): the one way the session and the `rollback` command record node state.
    Nodes in `known` (name -> NodeFacts this session read and nothing has run since) are captured
    from those facts; the others are read now, in parallel. Never raises: a node that cannot be
    read gets its reason in the event. Each event says where its state came from (`read`:
    "diagnosis" or "now"). `read_now`: nodes whose state the caller has just read with
    capture_nodes() for this phase (nothing having run since), journaled as read now."""
    reuse = {n: f for n, f in (known or {}).items()
             if n in nodes and getattr(f, "complete", False) and getattr(f, "sections", None)}
    got: dict[str, dict[str, str] | str] = {n: capture(f) for n, f in reuse.items()}
    got.update({n: v for n, v in (read_now or {}).items() if n in nodes and n not in reuse})
    rest = {n: a for n, a in nodes.items() if n not in got}
    if rest:
        try:
            got.update(capture_nodes(shells, rest))
        except Exception as exc:  # noqa: BLE001 - the state is for the report: never a blocker
            got.update({n: f"{type(exc).__name__}: {exc}" for n in rest})
    for node, secs in sorted(got.items()):
        read = "diagnosis" if node in reuse else "now"
        if isinstance(secs, str):
            journal.write("node_state", node=node, phase=phase, read=read, error=secs)
        else:
            journal.write("node_state", node=node, phase=phase, read=read, sections=secs)
    return got


def captured_before(events: Iterable[dict[str, Any]]) -> set[str]:
    """Nodes whose "before" state a journal has (the ones an "after" capture compares)."""
    return {str(e.get("node")) for e in events if e.get("type") == "node_state"
            and e.get("phase") == "before"}


# -- the report's view -----------------------------------------------------------------------------


def _explains(section: str, command: str) -> bool:
    words = STATE_SECTIONS.get(section.split(" ", 1)[0], ("", ()))[1]
    return any(w in command for w in words)


def node_changes(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per node the journal captured: the first "before" against the last "after", every
    section that differs with its unified diff, the actions (that ran on that node and finished
    ok) that touch that kind of state, and `unexplained` when none does. A node rolled back to
    where it started has no differences."""
    before: dict[str, dict[str, str]] = {}
    after: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    ran: dict[str, list[tuple[str, str]]] = {}  # node -> [(action id, command)]
    open_cmds: dict[str, tuple[str, str, str]] = {}
    for ev in events:
        t = ev.get("type")
        if t == "node_state":
            node = str(ev.get("node"))
            if ev.get("error"):
                errors[node] = str(ev.get("error"))
                continue
            raw = ev.get("sections")
            secs: dict[str, str] = ({str(k): str(v) for k, v in raw.items()}
                                    if isinstance(raw, dict) else {})
            if ev.get("phase") == "before":
                before.setdefault(node, secs)
            else:
                after[node] = secs
        elif t == "command_start" and not ev.get("dry_run"):
            if ev.get("mutating") is False:
                continue
            open_cmds[str(ev.get("action_id"))] = (str(ev.get("node")), str(ev.get("command")),
                                                   "rollback of " + str(ev.get("rollback_of"))
                                                   if ev.get("rollback") else "")
        elif t == "command_end":
            start = open_cmds.pop(str(ev.get("action_id")), None)
            if start is not None and ev.get("exit_code") == 0 and not ev.get("error"):
                node, command, what = start
                label = str(ev.get("action_id")) + (f" ({what})" if what else "")
                ran.setdefault(node, []).append((label, command))
    out = []
    for node in sorted(set(before) | set(errors)):
        entry: dict[str, Any] = {"node": node, "sections": [], "error": errors.get(node)}
        b, a = before.get(node), after.get(node)
        if b is None or a is None:
            entry["error"] = entry["error"] or ("no state captured after the session's last "
                                                "change" if a is None else "no state before")
            out.append(entry)
            continue
        for key in sorted(set(b) | set(a)):
            old, new = b.get(key, ""), a.get(key, "")
            if old == new:
                continue
            diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "before",
                                             "after", n=1, lineterm=""))[2:]
            actions = [label for label, cmd in ran.get(node, ()) if _explains(key, cmd)]
            entry["sections"].append({
                "section": key, "what": STATE_SECTIONS.get(key.split(" ", 1)[0], (key,))[0],
                "diff": diff[:200] + (["... (cut)"] if len(diff) > 200 else []),
                "actions": actions, "unexplained": not actions,
            })
        out.append(entry)
    return out


def touched_nodes(events: Iterable[dict[str, Any]]) -> list[str]:
    """Nodes a shell action of the session ran on (what an "after" capture must read)."""
    return sorted({str(e.get("node")) for e in events if e.get("type") == "command_start"
                   and e.get("kind") == "shell" and not e.get("dry_run")
                   and e.get("mutating") is not False})
