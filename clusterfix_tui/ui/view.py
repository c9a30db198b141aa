"""Pure helpers that turn the session's data (Diagnosis, snapshot, facts) into rows for the panels.

Kept apart from the widgets so they can be unit-tested, and tolerant of shape: the snapshot's
nodes and pods are Kubernetes JSON dicts (as `kubectl get -o json` prints them) or objects with
the same names as attributes; node facts are dataclasses or dicts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.fixes.pods import WAIT_TIMEOUT
from clusterfix_tui.core.group import FindingGroup, group_findings
from clusterfix_tui.core.model import CLUSTER, SEVERITY_ORDER, STEP_ORDER

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "error": "bold red",
    "warning": "bold yellow",
    "info": "cyan",
}
SSH_STATE_STYLE = {
    "connected": "green",
    "local": "bold green",
    "pending": "dim",
    "auth-failed": "red",
    "unreachable": "red",
    "host-key-unknown": "yellow",
    "host-key-changed": "bold red",
    "sudo-password": "yellow",
    "error": "red",
    "left-out": "dim red",
}
STEP_TITLES = {
    "iptables": "iptables / nftables compatibility",
    "cni_bridge": "CNI bridge and flannel",
    "pods": "kube-proxy and failing pods",
    "worker_kubeconfig": "worker kubeconfig",
    "host_network": "forwarding, br_netfilter, firewall",
}
STEP_STATE_STYLE = {
    "needed": "bold yellow",
    "nothing to do": "dim",
    "done": "bold green",
    "skipped": "magenta",
    "failed": "bold red",
    "partial": "yellow",
    "dry-run": "cyan",
    "cancelled": "yellow",
    "rolled back": "blue",
    "planning": "dim",
}


def pick(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of `names` present on obj (dict key or attribute); dotted names walk down."""
    for name in names:
        cur = obj
        ok = True
        for part in name.split("."):
            if cur is None:
                ok = False
                break
            if isinstance(cur, dict):
                if part in cur:
                    cur = cur[part]
                else:
                    ok = False
                    break
            elif hasattr(cur, part):
                cur = getattr(cur, part)
            else:
                ok = False
                break
        if ok and cur is not None:
            return cur
    return default


def plain(obj: Any) -> Any:
    """A JSON-able rendering of dataclasses/dicts/lists (for raw views)."""
    if hasattr(obj, "to_dict"):
        try:
            return plain(obj.to_dict())
        except Exception:  # noqa: BLE001 - a raw view must never fail
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def findings_of(diagnosis: Any) -> list[Any]:
    found = list(pick(diagnosis, "findings", default=[]) or [])
    found.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), _step_index(f.step), f.node, f.code))
    return found


def _step_index(step: str | None) -> int:
    return STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER)


def facts_of(diagnosis: Any) -> dict[str, Any]:
    facts = pick(diagnosis, "facts", "node_facts", default={}) or {}
    if isinstance(facts, dict):
        return facts
    return {pick(f, "node", "name", default="?"): f for f in facts}


def snapshot_nodes(diagnosis: Any) -> list[Any]:
    snap = pick(diagnosis, "snapshot", default=None)
    nodes = pick(snap, "nodes", default=[]) or []
    return list(nodes.values()) if isinstance(nodes, dict) else list(nodes)


def snapshot_pods(diagnosis: Any) -> list[Any]:
    snap = pick(diagnosis, "snapshot", default=None)
    return list(pick(snap, "pods", default=[]) or [])


def node_name(node: Any) -> str:
    return str(pick(node, "metadata.name", "name", default="?"))


def node_roles(node: Any) -> str:
    roles = pick(node, "roles", default=None)
    if roles:
        return ",".join(roles) if not isinstance(roles, str) else roles
    labels = pick(node, "metadata.labels", "labels", default={}) or {}
    found = [k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/")]
    return ",".join(found) or "worker"


def node_ready(node: Any) -> str:
    ready = pick(node, "ready", default=None)
    if ready is not None:
        return "True" if ready is True else ("False" if ready is False else str(ready))
    conditions = pick(node, "conditions", default=None)
    if isinstance(conditions, dict):  # core.snapshot.NodeInfo: type -> {status, reason, ...}
        return str(pick(conditions.get("Ready"), "status", default="Unknown"))
    for cond in pick(node, "status.conditions", default=[]) or []:
        if pick(cond, "type") == "Ready":
            return str(pick(cond, "status", default="Unknown"))
    return "Unknown"


def node_internal_ip(node: Any) -> str:
    ip = pick(node, "internal_ip", "address", default=None)
    if ip:
        return str(ip)
    for addr in pick(node, "status.addresses", default=[]) or []:
        if pick(addr, "type") == "InternalIP":
            return str(pick(addr, "address", default=""))
    return ""


def node_pod_cidr(node: Any) -> str:
    return str(pick(node, "spec.podCIDR", "pod_cidr", "podCIDR", default=""))


def node_kubelet(node: Any) -> str:
    return str(pick(node, "status.nodeInfo.kubeletVersion", "kubelet_version", default=""))


def iptables_mode(facts: Any) -> str:
    mode = pick(facts, "host_iptables", "iptables_mode", "iptables_backend", "iptables.mode",
                "iptables.backend", default="")
    return str(mode or "?")


def conntrack_cell(facts: Any) -> str:
    """A node's conntrack fill for the nodes panel: "count/max pct%", "not loaded" (no
    nf_conntrack: nothing tracked) or "not read" (no facts, or the section unread/unparsed)."""
    ct = pick(facts, "conntrack", default=None)
    state = pick(ct, "state", default=None)
    if state == "not-loaded":
        return "not loaded"
    count, most = pick(ct, "count", default=None), pick(ct, "max", default=None)
    if state != "read" or not isinstance(count, int) or not isinstance(most, int):
        return "not read"
    pct = f" {count * 100 // most}%" if most > 0 else ""
    return f"{count:,}/{most:,}{pct}"


def node_rows(diagnosis: Any, ssh_states: dict[str, str]) -> list[tuple[str, ...]]:
    facts = facts_of(diagnosis)
    rows: list[tuple[str, ...]] = []
    seen = set()
    for node in snapshot_nodes(diagnosis):
        name = node_name(node)
        seen.add(name)
        rows.append((
            name, node_roles(node), node_ready(node), node_internal_ip(node), node_pod_cidr(node),
            node_kubelet(node), iptables_mode(facts.get(name)), conntrack_cell(facts.get(name)),
            ssh_states.get(name, "?"),
        ))
    for name in sorted(set(ssh_states) - seen):
        rows.append((name, "", "Unknown", "", "", "", iptables_mode(facts.get(name)),
                     conntrack_cell(facts.get(name)), ssh_states[name]))
    return rows


def is_network_pod(pod: Any) -> bool:
    name = str(pick(pod, "metadata.name", "name", default=""))
    labels = pick(pod, "metadata.labels", "labels", default={}) or {}
    return (
        "kube-proxy" in name or "flannel" in name
        or labels.get("k8s-app") == "kube-proxy" or labels.get("app") in ("flannel", "kube-flannel")
        or is_dns_pod(pod)
    )


def is_dns_pod(pod: Any) -> bool:
    """A cluster DNS pod (CoreDNS / kube-dns: k8s-app=kube-dns, as core/dns.py reads them)."""
    labels = pick(pod, "metadata.labels", "labels", default={}) or {}
    return isinstance(labels, dict) and labels.get("k8s-app") == "kube-dns"


def dns_line(diagnosis: Any) -> tuple[str, str]:
    """The cluster DNS line of the diagnostics status, and its style: ("", "") when the API
    gave no DNS reads (an old journal, a fake API)."""
    dns = pick(pick(diagnosis, "snapshot", default=None), "dns", default=None)
    summary = getattr(dns, "summary", None)
    if not callable(summary):
        return "", ""
    if getattr(dns, "service_read", False) and not getattr(dns, "found", True):
        # core.dns's sentence names the label too: too long for one line of an 80-column screen
        return "cluster DNS: none found (no kube-dns Service, DNS pods or Deployments)", "yellow"
    line = str(summary())
    deps = getattr(dns, "deployments", ()) or ()
    if deps:
        line += "; " + ", ".join(f"{d.ref} {d.ready}/{1 if d.replicas is None else d.replicas} ready"
                                 for d in deps[:3]) + (f" +{len(deps) - 3}" if len(deps) > 3 else "")
    if getattr(dns, "serving", None) is False:
        return line, "bold red"
    return line, "yellow" if not getattr(dns, "service_read", False) else "dim"


def pod_key(pod: Any) -> str:
    return f"{pick(pod, 'metadata.namespace', 'namespace', default='')}/" \
           f"{pick(pod, 'metadata.name', 'name', default='')}"


def pod_row(pod: Any) -> tuple[str, ...]:
    if not isinstance(pod, dict):  # core.snapshot.PodInfo
        reason = pick(pod, "waiting_reason", "last_termination_reason", default="") or ""
        phase = str(pick(pod, "phase", default="?"))
        return (pod_key(pod), str(pick(pod, "node", default="") or ""),
                str(pick(pod, "waiting_reason", default="") or phase),
                str(pick(pod, "restart_count", default=0)), str(reason))
    statuses = pick(pod, "status.containerStatuses", default=[]) or []
    restarts = sum(int(pick(s, "restartCount", default=0) or 0) for s in statuses)
    reason = ""
    for s in statuses:
        reason = str(pick(s, "state.waiting.reason", "state.terminated.reason",
                          "lastState.terminated.reason", default="") or "")
        if reason:
            break
    status = str(pick(pod, "status.phase", "phase", default="?"))
    if reason and status == "Running":
        status = reason
    return (
        pod_key(pod),
        str(pick(pod, "spec.nodeName", "node", default="")),
        status,
        str(pick(pod, "restarts", default=restarts)),
        str(pick(pod, "reason", default=reason)),
    )


def pods_by_key(diagnosis: Any) -> dict[str, list[Any]]:
    """The diagnosis's pods (those that may carry log lines) by `pod_key`, in order: built once,
    so that a cursor move in the pods table does not walk 2,000 pods (`pod_log_text`)."""
    out: dict[str, list[Any]] = {}
    for pod in snapshot_pods(diagnosis):
        if not isinstance(pod, dict):
            out.setdefault(pod_key(pod), []).append(pod)
    return out


def pod_log_text(diagnosis: Any, key: str,
                 by_key: dict[str, list[Any]] | None = None) -> str | None:
    """Last log lines of a pod when the diagnosis carries them (else the UI fetches them).
    `by_key`: `pods_by_key(diagnosis)`, when the caller keeps it."""
    snap = pick(diagnosis, "snapshot", default=None)
    if by_key is None:
        by_key = pods_by_key(diagnosis)
    for pod in by_key.get(key, ()):
        tail = list(pick(pod, "log_tail", default=()) or ())
        previous = list(pick(pod, "previous_log_tail", default=()) or ())
        if previous:
            tail = ["(previous container)"] + previous + (["(current)"] + tail if tail else [])
        if tail:
            return "\n".join(tail)
    logs = pick(snap, "pod_logs", "logs", default=None) or pick(diagnosis, "pod_logs", default=None)
    if isinstance(logs, dict) and key in logs:
        return str(logs[key])
    return None


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines()
    out = []
    for item in value:
        if isinstance(item, dict):
            # `ip -j route` objects: render as `ip route` would
            parts = [str(item.get("dst", "?"))]
            for key, word in (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"),
                              ("proto", "proto"), ("scope", "scope"), ("prefsrc", "src"),
                              ("src", "src"), ("metric", "metric")):
                if item.get(key) not in (None, ""):
                    parts += [word, str(item[key])]
            parts += [str(f) for f in item.get("flags") or ()]
            out.append(" ".join(parts))
        else:
            out.append(str(item))
    return out


def routes_of(facts: Any) -> list[str]:
    return _lines(pick(facts, "routes", "ip_route", "route", default=None))


def addresses_of(facts: Any) -> dict[str, str]:
    addrs = pick(facts, "addresses", "ifaces", "interfaces", "addrs", default={}) or {}
    if isinstance(addrs, (list, tuple)):  # `ip -j addr` objects: the pod-network interfaces
        out_list: dict[str, str] = {}
        for link in addrs:
            name = str(link.get("ifname", "?")) if isinstance(link, dict) else str(link)
            if not isinstance(link, dict) or not (name in ("cni0", "flannel.1")
                                                  or name.startswith(("eth", "ens", "enp"))):
                continue
            inet = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or ()
                    if a.get("family") == "inet"]
            out_list[name] = ", ".join(inet) or "(no IPv4 address)"
        return out_list
    if isinstance(addrs, dict):
        out = {}
        for k, v in addrs.items():
            if isinstance(v, (list, tuple)):
                v = ", ".join(str(x) for x in v)
            elif isinstance(v, dict):
                v = v.get("address") or v.get("addr") or json.dumps(v)
            out[str(k)] = str(v)
        return out
    return {}


def address_in_cidr(address: str, cidr: str) -> bool | None:
    try:
        ip = ipaddress.ip_interface(address.split(",")[0].strip()).ip
        return ip in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def evidence_lines(findings: Iterable[Any], node: str) -> set[str]:
    lines: set[str] = set()
    for f in findings:
        if f.node == node:
            lines.update(e.strip() for e in f.evidence)
    return lines


def _save_chains(save: Any, table: str) -> dict[str, int] | None:
    """{chain: rule count} of the KUBE-*/FLANNEL chains of one table of an iptables-save parse."""
    tables = pick(save, "tables", default=None)
    if not isinstance(tables, dict):
        return None
    t = tables.get(table)
    if t is None:
        return {}
    per_chain: dict[str, int] = {}  # one pass over the rules (35,000 on a big node), not one per chain
    for r in pick(t, "rules", default=()) or ():
        c = pick(r, "chain")
        per_chain[c] = per_chain.get(c, 0) + 1
    return {chain: per_chain.get(chain, 0) for chain in pick(t, "chains", default={}) or {}
            if chain.startswith(("KUBE-", "FLANNEL"))}


def nat_of(facts: Any) -> dict[str, dict[str, int]]:
    """{backend: {chain: rule count}} for the KUBE-* (and FLANNEL) chains."""
    out: dict[str, dict[str, int]] = {}
    legacy = _save_chains(pick(facts, "legacy"), "nat")
    nft = _save_chains(pick(facts, "nft_nat"), "nat")
    if legacy is not None or nft is not None:
        return {"legacy": legacy or {}, "nft": nft or {}}
    nat = pick(facts, "nat_chains", "nat", "kube_chains", default={}) or {}
    if isinstance(nat, dict):
        for backend, chains in nat.items():
            if isinstance(chains, dict):
                out[str(backend)] = {str(k): _count(v) for k, v in chains.items()}
            elif isinstance(chains, (list, tuple)):
                out[str(backend)] = {str(c): 0 for c in chains}
    return out


def _count(v: Any) -> int:
    if isinstance(v, (list, tuple)):
        return len(v)
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def nat_incompatible(facts: Any) -> list[str]:
    """Why a backend's NAT table could not be read by iptables (rules written with nft)."""
    out = []
    for backend, attr in (("legacy", "legacy"), ("nft", "nft_nat")):
        for table in pick(facts, f"{attr}.incompatible_tables", default=()) or ():
            out.append(f"{backend}: table {table} is incompatible with iptables-{backend} "
                       "(rules written with the nft tool)")
    chains = pick(facts, "incompatible_chains", default={}) or {}
    for table, names in chains.items():
        if names:
            out.append(f"incompatible chain(s) in {table}: {', '.join(names)}")
    return out


def forward_policies(facts: Any) -> dict[str, str]:
    saves = {"legacy": pick(facts, "legacy"), "nft": pick(facts, "nft_filter")}
    if any(pick(s, "tables") is not None for s in saves.values()):
        out = {}
        for backend, save in saves.items():
            t = (pick(save, "tables", default={}) or {}).get("filter")
            policy = (pick(t, "chains", default={}) or {}).get("FORWARD") if t else None
            if policy:
                out[backend] = str(policy)
        return out
    pol = pick(facts, "forward_policy", "forward_policies", default={}) or {}
    if isinstance(pol, str):
        return {"iptables": pol}
    return {str(k): str(v) for k, v in pol.items()}


def raw_outputs(facts: Any) -> dict[str, str]:
    """Every raw command output a node's facts carry (command -> text); the whole facts as JSON
    when they carry none, so raw output is always one key away."""
    sections = pick(facts, "sections", default=None)
    if isinstance(sections, dict) and sections:
        try:
            from clusterfix_tui.core.facts import _SECTIONS as commands  # name -> command

            names = dict(commands)
        except ImportError:
            names = {}
        out = {}
        for key, sec in sections.items():
            name = pick(sec, "name", default=key)
            arg = pick(sec, "arg", default=None)
            title = names.get(name, name) + (f" {arg}" if arg and name not in names else "")
            text = str(pick(sec, "stdout", default="") or "")
            err = str(pick(sec, "stderr", default="") or "")
            if err:
                text += ("\n" if text else "") + "[stderr]\n" + err
            rc = pick(sec, "rc", default=None)
            text += f"\n[exit {rc if rc is not None else 'unknown: output truncated'}]"
            out[title if title not in out else key] = text
        return out
    raw = pick(facts, "raw", "raw_output", "raw_outputs", "outputs", default=None)
    if isinstance(raw, dict) and raw:
        return {str(k): v if isinstance(v, str) else json.dumps(plain(v), indent=2)
                for k, v in raw.items()}
    if isinstance(raw, str) and raw:
        return {"output": raw}
    if facts is None:
        return {}
    return {"facts": json.dumps(plain(facts), indent=2, default=str)}


def step_state(plan: Any, outcome: Any) -> str:
    """needed | nothing to do | done | skipped | failed | ... from a plan and its last outcome."""
    if outcome is not None:
        status = pick(outcome, "status", default="")
        return {
            "changed": "done", "unchanged": "done", "skipped": "skipped", "failed": "failed",
            "partial": "partial", "dry-run": "dry-run", "cancelled": "cancelled",
        }.get(status, str(status))
    if plan is None:
        return "planning"
    return "nothing to do" if not plan.actions else "needed"


def actions_by_node(plan: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for action in plan.actions:
        out.setdefault(action.target, []).append(action)
    return out


def hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


ROLLOUT_TIMEOUT = WAIT_TIMEOUT  # how long a step waits for its restarted pods
_ROLLOUT = re.compile(r"^waiting for (?P<what>.+): (?P<ready>\d+)/(?P<total>\d+) Running and Ready$")


def rollout_progress(node: str, line: str) -> tuple[str, int, int] | None:
    """(what, ready, total) from the line a step's rollout wait streams for the cluster
    (core.fixes.pods.wait_for_components), else None."""
    if node != CLUSTER:
        return None
    match = _ROLLOUT.match(line.strip())
    if match is None:
        return None
    return match["what"], int(match["ready"]), int(match["total"])


# -- scale: filters, grouped finding rows, pages ------------------------------------------------

PAGE_SIZE = 50  # rows a table holds at once: every key's work is bounded by a page, not by N
_FILTER_KEYS = {"node": "node", "n": "node", "sev": "sev", "severity": "sev", "s": "sev",
                "step": "step"}


@dataclass(frozen=True)
class Filter:
    """What the panels show: `node:PATTERN` (exact name, or a glob with * ?), `sev:error,critical`,
    `step:iptables` (`step:none`: reported only), any other word matched (case-insensitively)
    against the node, code and title. Words of one kind are alternatives, kinds are all required."""

    nodes: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    text: str = ""

    @property
    def empty(self) -> bool:
        return not (self.nodes or self.severities or self.steps or self.words)

    def node_ok(self, name: str) -> bool:
        if not self.nodes:
            return True
        return any(name == p or (any(c in p for c in "*?[") and fnmatch.fnmatchcase(name, p))
                   for p in self.nodes)

    def words_ok(self, *fields: str) -> bool:
        hay = " ".join(fields).lower()
        return all(w in hay for w in self.words)

    def finding_ok(self, f: Any) -> bool:
        if self.severities and f.severity not in self.severities:
            return False
        if self.steps and (f.step or "none") not in self.steps:
            return False
        return self.node_ok(f.node) and self.words_ok(f.node, f.code, f.title)

    def summary(self) -> str:
        return self.text.strip()


def parse_filter(text: str) -> Filter:
    nodes: list[str] = []
    sevs: list[str] = []
    steps: list[str] = []
    words: list[str] = []
    for tok in text.split():
        key, sep, val = tok.partition(":")
        if not sep:
            key, sep, val = tok.partition("=")
        kind = _FILTER_KEYS.get(key.lower()) if sep else None
        if kind is None:
            words.append(tok.lower())
            continue
        vals = [x for x in val.split(",") if x]
        if kind == "node":
            nodes += vals
        elif kind == "sev":
            sevs += [x.lower() for x in vals]
        else:
            steps += vals
    return Filter(tuple(nodes), tuple(sevs), tuple(steps), tuple(words), text)


@dataclass(frozen=True)
class FindingRow:
    """One line of the findings table: a group (or a finding alone), or one node's finding of an
    expanded group (`finding` set, `member` True)."""

    key: str
    group: FindingGroup
    finding: Any  # the node's finding (a member row, or the finding of a group of one)
    member: bool = False


def finding_groups(findings: Sequence[Any], flt: Filter | None = None) -> list[FindingGroup]:
    """The findings the filter keeps, grouped by cause (core/group.py), in the panel's order."""
    kept = [f for f in findings if flt is None or flt.finding_ok(f)]
    return group_findings(kept)


def finding_rows(groups: Sequence[FindingGroup], expanded: Iterable[str] = ()) -> list[FindingRow]:
    """A row per group; the node's own findings under the groups in `expanded` (group keys)."""
    open_ = set(expanded)
    rows = []
    for i, g in enumerate(groups):
        rows.append(FindingRow(f"g{i}", g, g.findings[0]))
        if g.grouped and g.key in open_:
            rows.extend(FindingRow(f"g{i}.{j}", g, f, True) for j, f in enumerate(g.findings))
    return rows


def finding_cells(row: FindingRow, expanded: Iterable[str] = ()) -> tuple[str, str, str, str]:
    """(severity, node, step, text) of a row: a group names its cause and counts its nodes."""
    g, f = row.group, row.finding
    if row.member:
        return f.severity, f"└ {f.node}", f.step or "(report only)", f.title
    if g.grouped:
        mark = "▾" if g.key in set(expanded) else "▸"
        return g.severity, f"{mark} {g.count} nodes", g.step or "(report only)", g.title
    return f.severity, f.node, f.step or "(report only)", f.title


def page_bounds(total: int, page: int, size: int = PAGE_SIZE) -> tuple[int, int, int, int]:
    """(page, pages, start, end) with `page` clamped into the pages there are (at least one)."""
    pages = max(1, -(-total // size))
    page = min(max(0, page), pages - 1)
    start = page * size
    return page, pages, start, min(total, start + size)


def compact_nodes(nodes: Sequence[str], shown: int = 3) -> str:
    """node-1, node-2, node-3 — or, for more, the first ones and how many more."""
    if len(nodes) <= shown:
        return ", ".join(nodes)
    return f"{len(nodes)} nodes: " + ", ".join(nodes[:shown]) + f", +{len(nodes) - shown}"
