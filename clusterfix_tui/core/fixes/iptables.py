"""fix_iptables_compatibility: make the node's iptables state agree with the backend kube-proxy uses.

Which backend kube-proxy uses is decided the way kubernetes-sigs/iptables-wrappers does (the checks
put it in the findings' data). Rules living only in the other backend are cosmetic, but stale
KUBE-* DNAT chains there can shadow the live ones and a FORWARD DROP in either backend drops
forwarded pod traffic (../shared/notes/LAB-FACTS.md), so per affected node the plan:
  1. saves both backends (iptables-legacy-save, iptables-nft-save), `nft list ruleset` and the
     `iptables` alternative to a timestamped directory under /var/backups/clusterfix/;
  2. removes the KUBE-* chains (and the jumps to them) from the backend kube-proxy does not use,
     table by table, with iptables-restore of the filtered table (rollback: restore that table
     from the backup);
  3. sets a FORWARD DROP policy to ACCEPT in the backend that has it (rollback: -P FORWARD DROP);
  4. points the `iptables` alternative at kube-proxy's backend when it disagrees (rollback: the
     previous alternative);
  5. restarts kube-proxy on that node only (delete its pod; the DaemonSet recreates it).
"chain ... is incompatible" with cause "foreign-nft-rule": back up `nft -a list ruleset`, delete
the foreign rules by handle (rollback re-adds each rule from its text at its place in the chain),
restart kube-proxy.
Cause "version-skew": report the host's and kube-proxy's iptables versions and stop.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Any

from clusterfix_tui.core.checks.firewall_path import DOCKER_NFT_FIX, DOCKER_NFT_TABLES
from clusterfix_tui.core.checks.iptables import (
    BackendConflictData,
    ForwardDropData,
    IncompatibleChainData,
    ShadowedData,
)
from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.engine import (
    Diagnosis,
    FixAction,
    action_id,
    backup_dir,
    delete_pod_action,
    kube_proxy_pod,
    node_backup_dir,
    opt_in_id,
    q,
)
from clusterfix_tui.core.model import Action, Finding, Plan
from clusterfix_tui.core.shape import node_iptables_kind, scoped_findings, sole_control_plane

CODES = (
    "IPTABLES_BACKEND_CONFLICT",
    "FORWARD_DROP",
    "KUBE_PROXY_INCOMPATIBLE_CHAIN",
    "KUBE_PROXY_SHADOWED",
)
BACKENDS = ("legacy", "nft")
# the binaries a FORWARD policy is set with (from the finding's data, checked against this list)
# the data class of each code this step plans from
_DATA_OF: dict[str, type[BackendConflictData | ForwardDropData | IncompatibleChainData]] = {
    "IPTABLES_BACKEND_CONFLICT": BackendConflictData,
    "FORWARD_DROP": ForwardDropData,
    "KUBE_PROXY_INCOMPATIBLE_CHAIN": IncompatibleChainData,
}
FORWARD_BINARIES = ("iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft",
                    "iptables", "ip6tables")
# lines of an iptables-save table that belong to kube-proxy: its chains, their rules, jumps to them
KUBE_LINES_RE = r"^(:KUBE-|-A KUBE-)|-[jg] KUBE-"
# ... once kube-router's chain names are taken out of the line: its network policy chains
# (checks.iptables.NOT_KUBE_PROXY_PREFIXES) are live, never kube-proxy's leftovers
NOT_KUBE_PROXY_RE = r"KUBE-(ROUTER|POD-FW|NWPLCY)-[^ ]*"
# ... and, in a filter table kubelet still writes (its KUBE-KUBELET-CANARY there, the node's
# `iptables` pointing at it and left there), kubelet's own chains: it re-creates them only when
# its canary goes, so removing them would silently drop its rules (the localnet block)
KUBELET_FILTER_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY")
_KUBELET_RE = r"(KUBE-FIREWALL|KUBE-KUBELET-CANARY)( |$)"


def _kube_line_awk(keep_kubelet: bool = False) -> str:
    keep = NOT_KUBE_PROXY_RE + (f"|{_KUBELET_RE}" if keep_kubelet else "")
    return f"l = $0; gsub(/{keep}/, \"\", l); kube = (l ~ /{KUBE_LINES_RE}/)"


def keep_non_kube_awk(keep_kubelet: bool = False) -> str:
    """awk program printing the lines of an iptables-save table that are not kube-proxy's."""
    return "{ " + _kube_line_awk(keep_kubelet) + "; if (!kube) print }"


def any_kube_awk(keep_kubelet: bool = False) -> str:
    """awk program exiting 0 when the table holds a line of kube-proxy's, else 1."""
    return "{ " + _kube_line_awk(keep_kubelet) + "; if (kube) f = 1 } END { exit (f ? 0 : 1) }"


KEEP_NON_KUBE_AWK = keep_non_kube_awk()
ANY_KUBE_AWK = any_kube_awk()
# the built-in chains of the iptables tables (anything else in a backend is someone's chain)
BUILTIN_CHAINS = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}


def backend_users(facts: Any, backend: str | None) -> list[str]:
    """What else lives in one iptables backend besides kube-proxy's and kube-router's chains:
    other chains (docker's, firewalld's, ufw's, a CNI's, the admin's) and rules in the built-in
    chains that jump nowhere kube-proxy's, as "table/chain" (at most 8, then "..."). These are
    written with the host's `iptables`: pointing it at the other backend moves their next
    writes there while their current rules stay behind."""
    from clusterfix_tui.core.checks._common import backend_saves
    from clusterfix_tui.core.checks.iptables import MARKER_CHAINS, NOT_KUBE_PROXY_PREFIXES

    if facts is None or backend not in BACKENDS:
        return []
    out: list[str] = []
    for version in (4, 6):
        save = backend_saves(facts, version).get(backend)
        for tname, table in sorted(((save.tables if save is not None else {}) or {}).items()):
            mine = {c for c in table.chains
                    if c.startswith("KUBE-") or c in MARKER_CHAINS}
            for c in sorted(table.chains):
                if c not in BUILTIN_CHAINS and c not in mine:
                    out.append(f"{tname}/{c}")
            if any(r.chain in BUILTIN_CHAINS and r.target not in mine
                   and not str(r.target).startswith(NOT_KUBE_PROXY_PREFIXES)
                   for r in table.rules):
                out.append(f"{tname}: rules of its own in the built-in chains")
    out = list(dict.fromkeys(out))
    return out[:8] + (["..."] if len(out) > 8 else [])


def _other(backend: str) -> str:
    return "legacy" if backend == "nft" else "nft"


def _backend(value: Any) -> str | None:
    if not value:
        return None
    v = str(value).lower()
    if "legacy" in v:
        return "legacy"
    if "nf" in v:
        return "nft"
    return None


def _names_file(ip: str) -> str:
    return "/proc/net/ip6_tables_names" if ip == "ip6tables" else "/proc/net/ip_tables_names"


def _table_exists_guard(backend: str, table: str, ip: str = "iptables") -> str:
    # Never make the kernel create a legacy table by asking for it (iptables-wrappers' rule).
    if backend == "legacy":
        return f"grep -qx {q(table)} {_names_file(ip)} && "
    return ""


def _rule_text(text: str) -> str:
    """An `nft list` rule as `nft add rule` takes it back: no handle comment, zeroed counters."""
    import re

    text = re.sub(r"\s*# handle \d+\s*$", "", str(text))
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text).strip()


# awk over `nft -a list chain`: the rules' texts as `nft add rule` takes them (leading blanks,
# the handle comment and counter values off), compared with ENVIRON["CFX_T"]. CFX_K=0: print how
# many rules read that text; CFX_K=k: print the handle of the k-th one (nothing when fewer). The
# table and chain lines (`... { # handle N`) are not rules.
NFT_RULE_AWK = (
    '{ l = $0; sub(/^[ \\t]+/, "", l); n = split(l, p, " # handle "); '
    'if (n != 2 || p[1] ~ /[{]$/ || p[2] !~ /^[0-9]+[ \\t]*$/) next; t = p[1]; '
    'gsub(/counter packets [0-9]+ bytes [0-9]+/, "counter", t); sub(/[ \\t]+$/, "", t); '
    'if (t == ENVIRON["CFX_T"]) { c++; if (c == ENVIRON["CFX_K"] + 0) { print p[2] + 0; '
    'exit } } } END { if (ENVIRON["CFX_K"] + 0 == 0) print c + 0 }')


# one side of a rule's place in its chain: the rules next to it outwards, each (its text, how
# many rules of the chain read that text, whether the plan deletes it too), ending with the
# first rule the plan does not delete, or with None at the chain's end
Side = list[tuple[str, int, bool] | None]
Place = tuple[Side, Side, int]


def nft_neighbours(facts: Any, family: str, table: str, chain: str, handle: int,
                   deleted: frozenset[int] = frozenset()) -> Place | None:
    """Where the rule at `handle` sits in its chain as the node's facts read it: (the rules
    before it walking up, the rules after it walking down, how many rules of the chain read the
    same text as it). A walk passes the rules the plan deletes too (`deleted`: handles) and stops
    at the first it keeps, or at the chain's end (None). None when the chain or the rule is not
    in the facts, or a rule of the chain has no exact nft text (its place cannot be found again
    by text)."""
    from clusterfix_tui.core.checks.iptables import _rule_text as listed_text

    rs = getattr(facts, "nft_ruleset", None)
    if rs is None:
        return None
    rules = list(rs.rules_in(family, table, chain))
    idx = next((i for i, r in enumerate(rules) if r.handle == handle), None)
    if idx is None:
        return None
    texts: list[str] = []
    for r in rules:
        t = listed_text(facts, table, r)
        if t.startswith(f"{family} {table} {chain}: "):  # the readable form: not nft's text
            return None
        texts.append(_rule_text(t))

    def walk(order: Any) -> Side:
        out: Side = []
        for i in order:
            gone = rules[i].handle in deleted
            out.append((texts[i], texts.count(texts[i]), gone))
            if not gone:
                return out
        return out + [None]

    return (walk(range(idx - 1, -1, -1)), walk(range(idx + 1, len(rules))),
            texts.count(texts[idx]))


def nft_rule_text(facts: Any, family: str, table: str, chain: str, handle: int) -> str | None:
    """The rule at `handle` as `nft add rule` takes it back (nft's own listing, else an exact
    rendering), None when neither is known."""
    from clusterfix_tui.core.checks.iptables import _rule_text as listed_text

    rs = getattr(facts, "nft_ruleset", None)
    rule = next((r for r in (rs.rules_in(family, table, chain) if rs is not None else ())
                 if r.handle == handle), None)
    if rule is None:
        return None
    t = listed_text(facts, table, rule)
    return None if t.startswith(f"{family} {table} {chain}: ") else _rule_text(t)


def nft_readd_command(family: str, table: str, chain: str, text: str, place: Place,
                      backup: str) -> str:
    """The rollback of deleting one rule: re-add `text` at its place (`place`, nft_neighbours),
    found again by the neighbours' texts at rollback time (kube-proxy rewrites its chains: the
    handles change). First the rules before it, nearest first: one the plan deleted too that is
    back (the same number of rules read its text as the plan saw) is the anchor when its text is
    unique (`nft add rule ... position <its handle>`: right after it), ambiguous when not (stop,
    exit 4); one that is not back is passed; the first one the plan kept is the anchor when its
    text is in the chain exactly once now; the chain's start: `nft insert rule` (at the top).
    No anchor there: the same from the rules after it (`nft insert rule ... position`: right
    before it; the chain's end: `nft add rule`). None either way: nothing is added, exit 4 (re-add
    it by hand from `backup`): a rule at a guessed place can change what the chain does. The
    chain already holding as many rules of that text as the plan saw: it is back, nothing added."""
    before, after, seen = place
    ref = f"{q(family)} {q(table)} {q(chain)}"
    rule = q(text)

    # the awk program once, in a shell function (cfx_n TEXT 0: how many rules read TEXT; cfx_n
    # TEXT K: the handle of the K-th one): the command shown and run reads once, not per lookup
    def count(t: str) -> str:
        return f"$(cfx_n {q(t)} 0)"

    def first(t: str) -> str:
        return f"$(cfx_n {q(t)} 1)"

    ambiguous = (f"clusterfix: a rule next to it in {family} {table} {chain} reads like another: "
                 f"its place is ambiguous; re-add it by hand where it belongs (from {backup})")

    def side(walk: Side, put: str, end: str) -> str:
        out = ""
        for c in walk:
            if c is None:
                return out + f"{end} {ref} {rule}; exit $?; "
            t, n, gone = c
            if gone:  # deleted by this plan too: back already (rolled back first) or not
                if n == 1:
                    out += (f"if [ \"{count(t)}\" -ge 1 ]; then h={first(t)}; "
                            f"nft {put} rule {ref} position \"$h\" {rule}; exit $?; fi; ")
                else:
                    out += (f"if [ \"{count(t)}\" -ge {int(n)} ]; then echo {q(ambiguous)} >&2; "
                            "exit 4; fi; ")
            elif n == 1:
                out += (f"if [ \"{count(t)}\" -eq 1 ]; then h={first(t)}; "
                        f"nft {put} rule {ref} position \"$h\" {rule}; exit $?; fi; ")
        return out

    gone = (f"clusterfix: the rules around it in {family} {table} {chain} are not there any "
            f"more: re-add it by hand where it belongs (from {backup})")
    return (f"l=$(nft -a list chain {ref}) || {{ echo "
            f"{q(f'clusterfix: chain {family} {table} {chain} is not there: re-add the rule by hand from {backup}')}"
            " >&2; exit 4; }; "
            f"cfx_a={q(NFT_RULE_AWK)}; "
            "cfx_n() { printf '%s\\n' \"$l\" | CFX_T=\"$1\" CFX_K=\"$2\" awk \"$cfx_a\"; }; "
            f"if [ \"{count(text)}\" -ge {int(seen)} ]; then echo "
            f"{q('clusterfix: the rule is in the chain already (not added again)')}; exit 0; fi; "
            + side(before, "add", "nft insert rule") + side(after, "insert", "nft add rule")
            + f"echo {q(gone)} >&2; exit 4")


def iptables_rule_place(facts: Any, backend: str, family: str | None, table: str, chain: str,
                        spec: str) -> tuple[int, str | None, str | None] | None:
    """Where the rule `spec` ("-A CHAIN ...") sits in its chain as the node's facts read it:
    (its number, counted from 1 as `iptables -I CHAIN N` takes it, the rule before it, the rule
    after it; None at an end). None when the table was not read or the rule is not in it exactly
    once (its place could not be told)."""
    from clusterfix_tui.core.checks._common import backend_saves

    if facts is None:
        return None
    save = backend_saves(facts, 6 if family == "ip6" else 4).get(backend)
    t = save.table(table) if save is not None else None
    if t is None:
        return None
    specs = [r.spec.rstrip() for r in t.rules_in(chain)]
    if specs.count(spec.rstrip()) != 1:
        return None
    i = specs.index(spec.rstrip())
    return i + 1, (specs[i - 1] if i else None), (specs[i + 1] if i + 1 < len(specs) else None)


def iptables_reinsert_command(tool: str, chain: str, spec: str,
                              place: tuple[int, str | None, str | None], by_hand: str) -> str:
    """The rollback of deleting one iptables rule: insert it again at its number
    (`TOOL -I CHAIN N ...`), only when the chain still reads around that place as the plan saw
    it (rule N-1 is the rule that was before it, rule N the one that was after it, or the chain
    ends there): a rule at a shifted place can change what the chain does, so otherwise nothing
    is inserted (exit 4, `by_hand` says how to put it back). Already there: nothing inserted.
    Works with every iptables (-S and -I N are in 1.4)."""
    n, before, after = place
    argv = shlex.split(spec)
    body = " ".join(q(t) for t in [argv[1], str(int(n)), *argv[2:]])

    def nth(k: int) -> str:
        return f"$(printf '%s\\n' \"$l\" | grep -e '^-A ' | sed -n {int(k)}p)"

    ok = []
    if before is not None:
        ok.append(f"[ \"{nth(n - 1)}\" = {q(before)} ]")
    ok.append(f"[ \"{nth(n)}\" = {q(after or '')} ]")
    moved = (f"clusterfix: {chain} changed around the rule's place since the plan: not "
             f"inserted; put it back by hand ({by_hand})")
    return (f"l=$({tool} -S {q(chain)}) || exit 4; "
            f"if printf '%s\\n' \"$l\" | grep -qxF -e {q(spec.rstrip())}; then "
            f"echo {q('clusterfix: the rule is in the chain already (not inserted again)')}; "
            f"exit 0; fi; if {' && '.join(ok)}; then {tool} -I {body}; else "
            f"echo {q(moved)} >&2; exit 4; fi")


_ALT_STATE_AWK = '/^Status: / { s = $2 } /^Value: / { v = $2 } END { if (s != "") print s, v }'


def alternative_save_command(name: str, path: str) -> str:
    """Save the `name` alternative's status and value ("auto /usr/sbin/ip6tables-nft") to `path`
    once (an empty file: not read, e.g. no such alternative). Always succeeds."""
    return (f"{{ [ -e {q(path)} ] || {{ update-alternatives --query {q(name)} 2>/dev/null | "
            f"awk {q(_ALT_STATE_AWK)} > {q(path + '.tmp')}; mv -f -- {q(path + '.tmp')} "
            f"{q(path)}; }}; }}")


def alternative_restore_command(name: str, path: str, unknown: str) -> str:
    """Put the `name` alternative back as `path` recorded it (auto, or manual on its value);
    `unknown` when it was not recorded."""
    return (f"if read -r s v < {q(path)} 2>/dev/null && [ -n \"$s\" ]; then "
            f"if [ \"$s\" = auto ]; then update-alternatives --auto {q(name)}; "
            f"else update-alternatives --set {q(name)} \"$v\"; fi; else {unknown}; fi")


def _alternative_from_facts(diagnosis: Diagnosis, node: str) -> tuple[str | None, str | None]:
    """(current path, "auto"|"manual") of the node's `iptables` alternative, when known."""
    facts = diagnosis.facts.get(node)
    alt = facts.alternatives if facts is not None else None
    if alt is None:
        return None, None
    path = alt.value if alt.value and alt.value.startswith("/") else None
    mode = alt.status if alt.status in ("auto", "manual") else None
    return path, mode


def _chains_of(facts: Any, backend: str, table: str, version: int = 4) -> list[str]:
    """The chains of one table of one backend as the node's facts show them."""
    from clusterfix_tui.core.checks._common import backend_saves

    if facts is None:
        return []
    save = backend_saves(facts, version).get(backend)
    t = save.table(table) if save is not None else None
    return list(t.chains) if t is not None else []


def _kube_lines_present(backend: str, table: str, ip: str = "iptables",
                        keep_kubelet: bool = False) -> Any:
    """Stale KUBE-* lines are still in that backend's table (none left = already done)."""
    guard = ""
    what = f"{ip}-{backend}"
    if backend == "legacy":  # never make the kernel create a legacy table by asking for it
        guard = (f"grep -qx {q(table)} {_names_file(ip)} || "
                 f"{{ echo {q(f'no {what} {table} table any more')}; exit {pre.EXIT_DONE}; }}; ")
    return pre.shell(
        f"{guard}if {ip}-{backend}-save -t {q(table)} 2>/dev/null | awk "
        f"{q(any_kube_awk(keep_kubelet))}; then exit 0; fi; "
        f"echo {q(f'no KUBE-* rules left in the {what} {table} table')}; exit {pre.EXIT_DONE}",
        f"the {what} {table} table still holds KUBE-* rules")


def iptables_wait(facts: Any) -> str:
    """The wait flag this node's iptables takes, as kube-proxy decides it (kubernetes
    pkg/util/iptables: `-w <seconds>` from 1.4.22, a bare `-w` from 1.4.20, none before):
    CentOS 7's iptables 1.4.21 fails on `-w 5` ("Bad argument `5'"). Unknown version: -w 5."""
    v = getattr(facts, "iptables_version", None)
    t = v.tuple() if v is not None else ()
    if not t or t >= (1, 4, 22):
        return "-w 5"
    return "-w" if t >= (1, 4, 20) else ""


def iptables_restore_wait(facts: Any) -> str:
    """`iptables-restore`'s wait flag: from 1.6.2 (kubernetes pkg/util/iptables
    WaitRestoreMinVersion), none before. Unknown version: -w 5."""
    v = getattr(facts, "iptables_version", None)
    t = v.tuple() if v is not None else ()
    return "-w 5" if not t or t >= (1, 6, 2) else ""


def iptables_tool(ip: str, backend: str, single: bool) -> str:
    """The binary that writes one backend: `iptables-legacy`/`-nft`, or on an iptables
    without those variants (< 1.8: one `iptables`) the plain one."""
    return ip if single else f"{ip}-{backend}"


def _forward_policy_drop(backend: str, binary: str | None = None, wait: str = "-w 5") -> Any:
    """The FORWARD policy of that backend is still DROP (ACCEPT = already done)."""
    guard = ""
    if backend == "legacy":
        guard = ("grep -qx filter /proc/net/ip_tables_names || "
                 "{ echo 'no legacy filter table any more'; exit 4; }; ")
    return pre.shell(
        f"{guard}p=$({binary or 'iptables-' + backend} {wait} -S FORWARD 2>/dev/null "
        "| head -n 1); "
        "case \"$p\" in '-P FORWARD DROP') exit 0;; "
        f"'-P FORWARD ACCEPT') echo 'the FORWARD policy is ACCEPT already'; "
        f"exit {pre.EXIT_DONE};; esac; echo \"the FORWARD policy reads: $p\"; exit 4",
        f"the {backend} FORWARD policy is still DROP")


class IptablesStep:
    name = "iptables"
    title = "iptables / nftables compatibility"
    runbook_helper = "fix_iptables_compatibility.sh"

    # the shapes this step acts on: those of its findings (core.shape.SCOPES); FORWARD_DROP is
    # host-level (every shape), on iptables without -legacy/-nft variants with the plain binary
    applies_to = CODES

    def plan(self, diagnosis: Diagnosis) -> Plan:
        findings, scope_notes = scoped_findings(diagnosis, engine.findings_for(diagnosis, CODES))
        if not findings:
            plan = engine.nothing_to_do(
                self, "no iptables findings: kube-proxy's backend is consistent on every node"
            )
            if scope_notes:
                plan = Plan(step=plan.step, title=plan.title, findings=plan.findings,
                            actions=plan.actions, notes=tuple(plan.notes) + tuple(scope_notes))
            return plan
        stamp = engine.plan_stamp()
        bdir_all = backup_dir(self.name, stamp)
        actions: list[Action] = []
        notes: list[str] = []
        by_node: dict[str, list[Finding]] = {}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        for node in sorted(by_node):
            node_actions, node_notes = self._plan_node(diagnosis, node, by_node[node], bdir_all)
            actions.extend(node_actions)
            notes.extend(node_notes)
        notes.extend(scope_notes)
        if not actions and not notes:
            notes.append("the findings need no change on the nodes")
        return Plan(step=self.name, title=self.title, findings=tuple(findings),
                    actions=tuple(actions), notes=tuple(notes))

    # -- one node ----------------------------------------------------------------------------

    def _plan_node(
        self, diagnosis: Diagnosis, node: str, findings: list[Finding], bdir: str
    ) -> tuple[list[Action], list[str]]:
        notes: list[str] = []
        steps: list[tuple[str, dict[str, Any]]] = []  # (kind, params) in order
        codes_for: dict[str, tuple[str, ...]] = {}
        kp_backend: str | None = None
        alt_now: str | None = None

        def remember(kind: str, params: dict[str, Any], f: Finding) -> None:
            key = f"{kind}|{sorted(params.items())}"
            if key not in codes_for:
                steps.append((kind, params))
                codes_for[key] = (f.code,)
            elif f.code not in codes_for[key]:
                codes_for[key] = codes_for[key] + (f.code,)

        for f in findings:
            if f.code == "KUBE_PROXY_SHADOWED":
                continue  # kube-proxy's own backend, not a disagreement to align
            d = f.data_as(_DATA_OF[f.code])
            kp_backend = kp_backend or _backend(d.kube_proxy_backend)
            alt_now = alt_now or _backend(d.host_iptables)

        # the node's `iptables` alternative, when it disagrees with kube-proxy's backend, is
        # pointed at kube-proxy's by default only when nothing else lives in its current backend
        # (docker, firewalld, ufw, the admin's rules write there with the host's `iptables`):
        # otherwise the switch is an opt-in and kubelet keeps writing that backend
        kind_ipt = node_iptables_kind(diagnosis, node)
        facts = diagnosis.facts.get(node) if isinstance(diagnosis.facts, dict) else None
        switch = bool(kp_backend and alt_now and alt_now != kp_backend
                      and kind_ipt in ("both", "unknown"))
        users = backend_users(facts, alt_now) if switch else []

        for f in findings:
            if f.code == "IPTABLES_BACKEND_CONFLICT":
                bc = f.data_as(BackendConflictData)
                stale = _backend(bc.other_backend) or _other(kp_backend or "nft")
                ip = "ip6tables" if bc.ip_version == 6 else "iptables"
                for table in sorted(t for t, chains in bc.stale_chains.items() if chains):
                    params: dict[str, Any] = {"backend": stale, "table": table, "ip": ip}
                    if users and stale == alt_now and table == "filter" and \
                            "KUBE-KUBELET-CANARY" in (bc.stale_chains.get(table) or []) + \
                            _chains_of(facts, stale, table, bc.ip_version):
                        # kubelet writes this backend and keeps doing so: its chains stay
                        rest = [c for c in bc.stale_chains[table] if c not in KUBELET_FILTER_CHAINS]
                        notes.append(f"{node}: kubelet's {', '.join(KUBELET_FILTER_CHAINS)} in "
                                     f"the {stale} {table} table are kept (kubelet writes that "
                                     "backend while the node's `iptables` points at it)")
                        if not rest:
                            continue
                        params["keep_kubelet"] = True
                    remember("remove_kube_chains", params, f)
            elif f.code == "FORWARD_DROP":
                fd = f.data_as(ForwardDropData)
                if fd.blocklists:
                    notes.append(f"{node}: {fd.backend} {fd.table} {fd.chain}: an address "
                                 "set's drop (a blocklist) is on the forward path; an accept "
                                 "for the pod network at the top of the chain would let its "
                                 "addresses through, so none is planned: accept the pod "
                                 "network after that rule by hand")
                if fd.backend == "nft-native" and \
                        (fd.family or "inet", fd.table) in DOCKER_NFT_TABLES:
                    notes.append(f"{node}: nft {fd.family} {fd.table} {fd.chain} is docker's own "
                                 f"table: {DOCKER_NFT_FIX}")
                elif fd.backend == "nft-native":
                    remember("nft_chain_accept", {"family": fd.family or "inet",
                                                  "table": fd.table, "chain": fd.chain,
                                                  "pod_network": fd.pod_network,
                                                  "blocklisted": bool(fd.blocklists)}, f)
                elif backend := _backend(fd.backend):
                    binary = fd.binary or f"iptables-{backend}"
                    if binary not in FORWARD_BINARIES:
                        binary = f"iptables-{backend}"
                    # every pod network of the family (flannel's one, the clusterCIDR, else each
                    # node's podCIDR): accepting the first only leaves the others dropped
                    joined = ",".join(fd.pod_networks or [fd.pod_network])
                    remember("forward_accept", {"backend": backend,
                                                "blocklisted": bool(fd.blocklists),
                                                "pod_network": joined,
                                                "chain": fd.accept_chain, "binary": binary}, f)
                else:
                    notes.append(f"{node}: FORWARD_DROP in an unknown backend {fd.backend!r}; "
                                 "not planned")
            elif f.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN":
                ic = f.data_as(IncompatibleChainData)
                if ic.cause == "version-skew":
                    notes.append(
                        f"{node}: 'incompatible' chain from an iptables version skew "
                        f"(host iptables {ic.host_iptables_version or '?'}, kube-proxy's "
                        f"{ic.kube_proxy_iptables_version or 'newer'}); "
                        "switching backends would not fix it: align the iptables versions "
                        "(kubernetes/kubernetes#112477). Reported only; nothing is changed."
                    )
                elif ic.cause == "foreign-base-chain":
                    notes.append(
                        f"{node}: 'incompatible' table from base chains added with nft to "
                        "iptables-nft's own table (not a version skew, not a backend mismatch): "
                        "move them into a table of their own or upgrade iptables to 1.8.9+. "
                        "Reported only; nothing is changed.")
                elif ic.cause == "foreign-nft-rule":
                    planned = 0
                    for r in ic.foreign_rules:
                        if r.handle is None:
                            continue
                        if not re.fullmatch(r"[0-9]{1,12}", str(r.handle)):
                            notes.append(f"{node}: nft rule handle {r.handle!r} is not a "
                                         "number; not planned (see the evidence)")
                            continue
                        if str(r.text).startswith(f"{r.family} {r.table} {r.chain}: "):
                            # the readable form (nft -a list table not read, a statement not
                            # rendered exactly): no text nft would take back, none to compare
                            notes.append(f"{node}: nft rule handle {r.handle} in {r.family} "
                                         f"{r.table} {r.chain}: its nft text was not read "
                                         "(nft -a list table); not planned (see the evidence)")
                            continue
                        planned += 1
                        remember("delete_nft_rule", {
                            "family": r.family, "table": r.table, "chain": r.chain,
                            "handle": int(r.handle), "rule": _rule_text(r.text),
                        }, f)
                    if not planned:
                        notes.append(f"{node}: foreign nft rule without handles in the finding; "
                                     "not planned (see the evidence)")
                else:  # backend-mismatch: align the alternative (below) and restart kube-proxy
                    remember("restart", {}, f)
            elif f.code == "KUBE_PROXY_SHADOWED":
                remember("kube_proxy_jump", {"i": findings.index(f)}, f)
        alt_path_now, alt_mode = _alternative_from_facts(diagnosis, node)
        if switch:
            first = findings[0]
            remember("alternative", {"to": kp_backend, "from": alt_now,
                                     "users": ", ".join(users)}, first)
            if users:
                notes.append(f"{node}: the node's `iptables` stays on {alt_now} by default: "
                             f"{', '.join(users)} live in that backend (written with the host's "
                             f"`iptables`: docker, firewalld, ufw or the admin); pointing it at "
                             f"{kp_backend} is offered as an opt-in")

        if not steps:
            return [], notes

        nbdir = node_backup_dir(bdir, node)
        actions: list[Action] = []
        n = 0

        def add(**kw: Any) -> None:
            nonlocal n
            n += 1
            actions.append(FixAction(id=action_id(self.name, node, n), target=node, **kw))

        all_codes = tuple(sorted({f.code for f in findings}))
        v6 = any(str(p.get("binary", "")).startswith("ip6") or p.get("ip") == "ip6tables"
                 for _k, p in steps)
        if kind_ipt == "single":  # no -legacy/-nft variants: the one iptables-save
            saves = f"iptables-save > {q(nbdir + '/iptables.rules')} && "
            if v6:
                saves += f"ip6tables-save > {q(nbdir + '/ip6tables.rules')} && "
        else:
            # each backend the node has (RHEL 9 ships no iptables-legacy, an nft-only Alpine or
            # k3s node may have no iptables on the PATH at all): a save that is there must work
            saves = "".join(
                f"{{ ! command -v {b} >/dev/null 2>&1 || {b} > {q(nbdir + '/' + f)}; }} && "
                for b, f in (("iptables-legacy-save", "legacy.rules"),
                             ("iptables-nft-save", "nft.rules")))
            if v6:
                saves += (f"{{ ip6tables-legacy-save > {q(nbdir + '/ip6-legacy.rules')} || true; }} && "
                          f"{{ ip6tables-nft-save > {q(nbdir + '/ip6-nft.rules')} || true; }} && ")
        add(
            kind="shell",
            command=(
                f"mkdir -p -m 700 {q(nbdir)} && " + saves +
                f"{{ nft -a list ruleset > {q(nbdir + '/nft.ruleset')} || true; }} && "
                f"{{ readlink -f /etc/alternatives/iptables > {q(nbdir + '/iptables.alternative')}"
                " || true; }"
            ),
            why="save both iptables backends, the nft ruleset and the iptables alternative "
                "before changing anything (the rollback restores from here)",
            finding_codes=all_codes,
            risk="none (writes backup files only)",
            rollback_note=f"the backup in {nbdir} is kept; remove it by hand when no longer needed",
            change={"what": "backup", "before": None, "after": nbdir},
        )
        restart_needed = False
        for kind, p in steps:
            codes = codes_for[f"{kind}|{sorted(p.items())}"]
            if kind == "remove_kube_chains":
                b, t = p["backend"], p["table"]
                ip = "ip6tables" if p.get("ip") == "ip6tables" else "iptables"
                pfx = "ip6-" if ip == "ip6tables" else ""
                before = f"{nbdir}/{pfx}{b}-{t}.before"
                cleaned = f"{nbdir}/{pfx}{b}-{t}.cleaned"
                now = f"{nbdir}/{pfx}{b}-{t}.now"
                guard = _table_exists_guard(b, t, ip)
                add(
                    kind="shell",
                    # the table as it is right before the change, saved once (a re-run keeps
                    # the first): what the rollback restores (the step's first backup may be
                    # older than an earlier action of this plan on the same table)
                    command=(
                        f"{guard}{{ [ -s {q(before)} ] || {{ {ip}-{b}-save -t {q(t)} > "
                        f"{q(before + '.tmp')} && mv -f -- {q(before + '.tmp')} {q(before)}; }}; }}"
                        f" && {ip}-{b}-save -t {q(t)} > {q(now)} && "
                        f"awk {q(keep_non_kube_awk(bool(p.get('keep_kubelet'))))} {q(now)} "
                        f"> {q(cleaned)} && "
                        f"{ip}-{b}-restore -T {q(t)} < {q(cleaned)}"
                    ),
                    why=f"remove kube-proxy's stale KUBE-* chains (and the jumps to them) from "
                        f"the {t} table of the {ip} {b} backend, which kube-proxy does not use: "
                        "stale DNAT rules there can shadow the live ones",
                    finding_codes=codes,
                    risk=f"non-kube rules of {b} {t} are kept; kube-proxy's live rules in the "
                         f"other backend are untouched",
                    rollback=Action(
                        id=action_id(self.name, node, n + 1) + ":rollback",
                        target=node, kind="shell",
                        # no saved table: the action never got past its save (a session
                        # killed before it), so it removed nothing and there is nothing to put
                        # back (the removal runs only after the save)
                        command=(f"if [ -e {q(before)} ]; then {ip}-{b}-restore -T {q(t)} < "
                                 f"{q(before)}; else echo "
                                 + q(f"clusterfix: {before} was never saved: the removal did "
                                     "not run, nothing to restore") + "; fi"),
                        why=f"restore the {ip} {b} {t} table as it was right before",
                    ),
                    change={"what": f"{ip} {b} {t}: KUBE-* chains" if pfx else f"{b} {t}: KUBE-* chains",
                            "before": "present", "after": "removed"},
                    precondition=_kube_lines_present(b, t, ip, bool(p.get("keep_kubelet"))),
                )
                restart_needed = True
            elif kind == "forward_accept":
                b, pod_net, chain = p["backend"], p.get("pod_network") or "", p.get("chain")
                binary = p.get("binary") or f"iptables-{b}"
                chain = chain if chain in ("FORWARD", "DOCKER-USER") else "FORWARD"
                wait = iptables_wait(facts)
                tool = " ".join(x for x in (binary, wait, "-t filter") if x)
                fnets = [x.strip() for x in pod_net.split(",")
                         if re.fullmatch(r"[0-9a-fA-F:.]{2,39}/\d{1,3}", x.strip())]
                if p.get("blocklisted"):
                    pass  # a note says why: no accept ahead of a blocklist; the flip stays opt-in
                elif fnets and len(fnets) == len(pod_net.split(",")):
                    # default: accept the pod network (source and destination) ahead of the
                    # DROP policy, which stays (docker hosts: in DOCKER-USER, where docker
                    # expects them and keeps them across its restarts)
                    for pod_net, (flag, name) in ((n, fl) for n in fnets for fl in
                                                  (("-s", "pods-forward"), ("-d", "to-pods-forward"))):
                        spec = [flag, pod_net, "-m", "comment", "--comment",
                                f"clusterfix: {name}", "-j", "ACCEPT"]
                        body = " ".join(q(t) for t in spec)
                        add(
                            kind="shell",
                            command=(f"{tool} -C {q(chain)} {body} 2>/dev/null || "
                                     f"{tool} -I {q(chain)} 1 {body}"),
                            why=f"the FORWARD policy DROP in the {b} backend drops forwarded pod "
                                f"and NodePort traffic: accept {flag} {pod_net} at the top of "
                                f"{chain} (the policy stays DROP)",
                            finding_codes=codes,
                            risk=f"forwarded traffic {'from' if flag == '-s' else 'to'} the pod "
                                 f"network {pod_net} passes this node; everything else is still "
                                 "dropped by the policy",
                            rollback=Action(
                                id=action_id(self.name, node, n + 1) + ":rollback",
                                target=node, kind="shell",
                                command=f"{tool} -D {q(chain)} {body}",
                                why="remove that ACCEPT again (by its exact spec)",
                                # an insert that never ran (the session died first) is not
                                # there to remove: already done, not a failed rollback
                                precondition=pre.exists_else_done(
                                    f"{tool} -C {q(chain)} {body} 2>/dev/null",
                                    f"the ACCEPT {flag} {pod_net} is in {b} {chain}",
                                    f"no ACCEPT {flag} {pod_net} in {b} {chain} to remove"),
                            ),
                            change={"what": f"{b} filter {chain}", "before": None,
                                    "after": f"-I {chain} 1 " + " ".join(spec)},
                            precondition=pre.absent_else_done(
                                f"{tool} -C {q(chain)} {body} 2>/dev/null",
                                f"no such ACCEPT in {b} {chain} yet",
                                f"the ACCEPT {flag} {pod_net} is in {b} {chain} already"),
                        )
                else:
                    notes.append(f"{node}: the pod network is unknown, so no narrow ACCEPT is "
                                 "planned for the FORWARD DROP; the policy flip is opt-in")
                ident = opt_in_id(self.name, node, f"forward-policy-{b}")
                actions.append(FixAction(
                    id=ident, target=node, kind="shell",
                    command=" ".join(x for x in (binary, wait, "-P FORWARD ACCEPT") if x),
                    why=f"(opt-in alternative to the narrow ACCEPTs) set the FORWARD policy of "
                        f"the {b} backend to ACCEPT",
                    finding_codes=codes, opt_in=True,
                    risk="forwarded traffic is no longer dropped by default on this node (on a "
                         "docker host this removes docker's isolation, and dockerd sets DROP "
                         "again when it restarts)",
                    rollback=Action(id=ident + ":rollback", target=node, kind="shell",
                                    command=" ".join(x for x in (binary, wait,
                                                                 "-P FORWARD DROP") if x),
                                    why=f"put the {b} FORWARD policy back to DROP"),
                    change={"what": f"{b} filter FORWARD policy", "before": "DROP",
                            "after": "ACCEPT"},
                    precondition=_forward_policy_drop(b, binary, wait),
                ))
            elif kind == "nft_chain_accept":
                fam, tab, ch = p["family"], p["table"], p["chain"]
                ref = f"{q(fam)} {q(tab)} {q(ch)}"
                nets = [x.strip() for x in str(p.get("pod_network") or "").split(",")
                        if re.fullmatch(r"[0-9a-fA-F:.]{2,39}/\d{1,3}", x.strip())]
                nets = [x for x in nets if fam == "inet" or fam == ("ip6" if ":" in x else "ip")]
                blocked = bool(p.get("blocklisted"))  # a note says why: no accept ahead of it
                nets = [] if blocked else nets
                # default: accept the pod network (source, destination) at the top of the chain;
                # its drop policy stays. The policy flip is the opt-in below.
                for pod_net in nets:
                    pfam = "ip6" if ":" in pod_net else "ip"
                    for sel, name in (("saddr", "pods-forward"), ("daddr", "to-pods-forward")):
                        want = f'{pfam} {sel} {pod_net} accept comment "clusterfix: {name}"'
                        expr = [pfam, sel, pod_net, "accept", "comment", f'"clusterfix: {name}"']
                        handles = (f"nft -a list chain {ref} | CFX_WANT={q(want)} awk "
                                   + q('{ l = $0; sub(/^[ \t]+/, "", l); '
                                       'n = split(l, p, " # handle "); '
                                       'if (n == 2 && p[1] == ENVIRON["CFX_WANT"]) print p[2] }'))
                        add(
                            kind="shell",
                            command=(f"if [ -n \"$({handles})\" ]; then :; else "
                                     f"nft insert rule {ref} {' '.join(q(t) for t in expr)}; fi"),
                            why=f"the native nft chain {fam} {tab} {ch} hooks forward with policy "
                                f"drop: accept {pfam} {sel} {pod_net} at its top (the policy stays)",
                            finding_codes=codes,
                            risk=f"forwarded pod traffic ({sel} {pod_net}) passes that chain",
                            rollback=Action(
                                id=action_id(self.name, node, n + 1) + ":rollback",
                                target=node, kind="shell",
                                command=f"for h in $({handles}); do nft delete rule {ref} "
                                        "handle \"$h\"; done",
                                why="delete that accept again (its handle re-read from its exact "
                                    "text at rollback time)",
                            ),
                            change={"what": f"nft {fam} {tab} {ch}", "before": None,
                                    "after": want},
                            precondition=pre.absent_else_done(
                                f"[ -n \"$({handles})\" ]",
                                f"no such accept in nft {fam} {tab} {ch} yet",
                                f"the accept is in nft {fam} {tab} {ch} already"),
                        )
                if not nets and not blocked:
                    notes.append(f"{node}: the pod network is unknown (or of another family), "
                                 f"so no narrow accept is planned in nft {fam} {tab} {ch}; the "
                                 "policy change is opt-in")
                ident = opt_in_id(self.name, node, f"nft-policy-{tab}-{ch}")
                actions.append(FixAction(
                    id=ident, target=node, kind="shell",
                    command=f"nft chain {ref} '{{ policy accept; }}'",
                    why=f"(opt-in alternative to the narrow accepts) set the policy of the native "
                        f"nft chain {fam} {tab} {ch} to accept",
                    finding_codes=codes, opt_in=True,
                    risk="forwarded traffic is no longer dropped by that table's default policy",
                    rollback=Action(id=ident + ":rollback", target=node, kind="shell",
                                    command=f"nft chain {ref} '{{ policy drop; }}'",
                                    why="put the chain's policy back to drop"),
                    change={"what": f"nft {fam} {tab} {ch} policy", "before": "drop",
                            "after": "accept"},
                    precondition=pre.shell(
                        f"out=$(nft list chain {ref} 2>/dev/null) || "
                        f"{{ echo {q(f'chain {fam} {tab} {ch} is gone')}; exit 4; }}; "
                        "case \"$out\" in *'policy drop;'*) exit 0;; *'policy accept;'*) "
                        f"echo {q(f'{fam} {tab} {ch} has policy accept already')}; "
                        f"exit {pre.EXIT_DONE};; esac; echo 'its policy is neither drop nor "
                        "accept now'; exit 4",
                        f"nft chain {fam} {tab} {ch} still has policy drop"),
                ))
            elif kind == "restart":
                restart_needed = True
            elif kind == "kube_proxy_jump":
                fields, more = _kube_proxy_jump_actions(
                    facts, node, codes, findings[p["i"]].data_as(ShadowedData), n, nbdir)
                notes.extend(more)
                for kw in fields:
                    if kw.get("opt_in"):
                        actions.append(FixAction(target=node, **kw))
                    else:
                        add(**kw)
            elif kind == "delete_nft_rule":
                fam, tab, ch, h, text = p["family"], p["table"], p["chain"], p["handle"], p["rule"]
                rb: Action | None = None
                note = ""
                deleted = frozenset(int(x["handle"]) for k2, x in steps
                                    if k2 == "delete_nft_rule" and x["family"] == fam
                                    and x["table"] == tab and x["chain"] == ch)
                place = nft_neighbours(facts, fam, tab, ch, int(h), deleted) if text else None
                if text and place is not None:
                    rb = Action(
                        id=action_id(self.name, node, n + 1) + ":rollback",
                        target=node, kind="shell",
                        command=nft_readd_command(fam, tab, ch, text, place,
                                                  f"{nbdir}/nft.ruleset"),
                        why="re-add the foreign rule at its place in the chain (after the rule "
                            "that was before it, else before the one that was after it, found "
                            "again by their text)",
                    )
                else:
                    note = (f"re-add the rule by hand from {nbdir}/nft.ruleset at its place "
                            f"(handle {h} in {fam} {tab} {ch}; its neighbours in the chain were "
                            "not read exactly, so no automatic re-add is planned)")
                add(
                    kind="shell",
                    command=f"nft delete rule {q(fam)} {q(tab)} {q(ch)} handle {int(h)}",
                    why="a rule added with raw nft to kube-proxy's chain makes iptables-nft "
                        "report the chain as incompatible and kube-proxy fail to sync; "
                        "switching backends would not help",
                    finding_codes=codes,
                    risk="whatever added this rule (it is not kube-proxy's) loses it",
                    rollback=rb,
                    rollback_note=note,
                    change={"what": f"nft {fam} {tab} {ch} handle {h}", "before": text or "rule",
                            "after": "deleted"},
                    precondition=pre.nft_rule_at_handle(fam, tab, ch, int(h), text),
                )
                restart_needed = True
            elif kind == "alternative":
                to = p["to"]
                prev_path = alt_path_now or f"/usr/sbin/iptables-{p['from']}"
                # each alternative's own state (Status auto|manual, Value) is saved right before
                # the change and put back from that record: ip6tables' is not inferred from
                # iptables' (an admin may have set one by hand and left the other on auto)
                saved = {name: f"{nbdir}/{name}.alternative-state" for name in ("iptables", "ip6tables")}
                if alt_mode == "auto":
                    rb_ipt = "update-alternatives --auto iptables"
                else:
                    rb_ipt = f"update-alternatives --set iptables {q(prev_path)}"
                not_read = "clusterfix: ip6tables' alternative was not read before the fix: left as it is"
                rb_cmd = (f"{alternative_restore_command('iptables', saved['iptables'], rb_ipt)} && "
                          + alternative_restore_command("ip6tables", saved["ip6tables"],
                                                        f"echo {q(not_read)}"))
                set6 = (f"if [ -s {q(saved['ip6tables'])} ]; then {{ update-alternatives --set "
                        f"ip6tables /usr/sbin/ip6tables-{to} || true; }}; else echo "
                        f"{q(not_read)}; fi")
                alt_action: dict[str, Any] = dict(
                    kind="shell",
                    command=(
                        f"mkdir -p -m 700 {q(nbdir)} && "
                        + " && ".join(alternative_save_command(name, path)
                                      for name, path in saved.items())
                        + f" && update-alternatives --set iptables /usr/sbin/iptables-{to} && "
                        + set6
                    ),
                    why=f"the host's `iptables` points at {p['from']} but kube-proxy programs "
                        f"{to}: tools on the host (and admins) see the wrong rules",
                    finding_codes=codes,
                    risk="scripts on the host that call `iptables` now edit the "
                         f"{to} backend",
                    rollback=Action(
                        id=action_id(self.name, node, n + 1) + ":rollback",
                        target=node, kind="shell", command=rb_cmd,
                        why=f"point `iptables` back at {prev_path}",
                    ),
                    change={"what": "iptables alternative", "before": prev_path,
                            "after": f"/usr/sbin/iptables-{to}"},
                    precondition=pre.absent_else_done(
                        f"[ \"$(readlink /etc/alternatives/iptables)\" = "
                        f"{q('/usr/sbin/iptables-' + to)} ]",
                        f"`iptables` does not point at iptables-{to} yet",
                        f"`iptables` points at iptables-{to} already"),
                )
                if p.get("users"):
                    # others write the current backend with the host's `iptables`: offered only
                    ident = opt_in_id(self.name, node, "iptables-alternative")
                    rb_action = alt_action["rollback"]
                    alt_action.update(
                        why="(opt-in) " + str(alt_action["why"]) + f"; {p['users']} live in the "
                            f"{p['from']} backend and would be written to {to} from now on",
                        risk=str(alt_action["risk"]) + f" (docker, firewalld, ufw, saved rules: "
                             f"{p['users']})",
                        rollback=dataclasses.replace(rb_action, id=ident + ":rollback"))
                    actions.append(FixAction(id=ident, target=node, opt_in=True, **alt_action))
                else:
                    add(**alt_action)
        if restart_needed:
            pod = kube_proxy_pod(diagnosis, node)
            if pod is not None:
                n += 1
                actions.append(delete_pod_action(
                    action_id(self.name, node, n), node, pod[0], pod[1],
                    why="restart kube-proxy on this node so it re-syncs its rules",
                    finding_codes=all_codes,
                ))
            else:
                unit, how = _embedded_kube_proxy_unit(diagnosis, node)
                if unit is not None:
                    # k3s runs kube-proxy inside its own process: its restart is the unit's,
                    # which restarts kubelet and flannel too (the API server on a server): an
                    # opt-in, offered and never run by default; kube-proxy re-syncs on its own
                    from clusterfix_tui.core.fixes.cni_bridge import restart_service_action

                    act = restart_service_action(
                        opt_in_id(self.name, node, f"restart-{unit}"), node, unit,
                        finding_codes=all_codes, component="kube-proxy",
                        only_control_plane=sole_control_plane(diagnosis, node))
                    actions.append(dataclasses.replace(
                        act, why=act.why + ". Opt-in (not run unless selected): kube-proxy "
                                 "re-syncs its rules on its own within its sync period; restart "
                                 f"{unit} only when the rules do not come back"))
                else:
                    notes.append(f"{node}: no kube-proxy pod found on this node to restart"
                                 + (f" ({how})" if how else "") + "; kube-proxy re-syncs its "
                                 "rules on its own, or restart it by hand")
        return actions, notes


def _kube_proxy_jump_actions(facts: Any, node: str, codes: tuple[str, ...], d: ShadowedData,
                            n: int, nbdir: str) -> tuple[list[dict[str, Any]], list[str]]:
    """KUBE_PROXY_SHADOWED (core.fixes.kube_proxy_jump): kube-proxy's jump re-inserted ahead of
    the shadowing rule (default), deleting that rule (opt-in)."""
    from clusterfix_tui.core.fixes import kube_proxy_jump

    wait = iptables_wait(facts)
    fields = kube_proxy_jump.jump_ahead(d, wait, action_id("iptables", node, n + 1), node)
    if fields is None:
        return [], [f"{node}: {d.rule!r} shadows kube-proxy's jump in nat {d.builtin}, but the "
                    "rule texts are not usable: nothing planned, see the evidence"]
    out = [dict(fields, finding_codes=codes)]
    fam = "ip6" if d.ip_version == 6 else None
    place = iptables_rule_place(facts, d.backend, fam, "nat", d.builtin, d.rule)
    # numbered as the default action it stands beside: two rules shadowing one chain are two
    # opt-ins (one id would be approved, journaled and rolled back as one)
    ident = opt_in_id("iptables", node, f"delete-shadow-{d.ip_version}-{d.builtin.lower()}-{n + 1}")
    alt = kube_proxy_jump.delete_rule(
        d, wait, ident, node, place,
        f"the backup in {nbdir} ({'ip6-' if fam else ''}{d.backend}.rules) has it")
    if alt is not None:
        out.append(dict(alt, finding_codes=codes, id=ident))  # opt-in: its own id
    return out, []


def _embedded_kube_proxy_unit(diagnosis: Diagnosis, node: str) -> tuple[str | None, str]:
    """(the k3s/RKE2 unit that runs kube-proxy embedded on `node`, why): only when the shape says
    kube-proxy is embedded on the node and the node said which one unit of its distribution is
    active (core.shape.embedded_service_unit); (None, why) otherwise."""
    from clusterfix_tui.core.shape import SERVICE_UNITS, embedded_service_unit, shape_of

    shape = shape_of(diagnosis)
    ns = shape.nodes.get(node) if shape is not None else None
    if ns is None or ns.kube_proxy != "embedded":
        return None, ""
    dist = ns.distribution if ns.distribution in SERVICE_UNITS else None
    if dist is None:
        return None, "kube-proxy runs on the node outside a pod, not inside k3s/RKE2"
    facts = (getattr(diagnosis, "facts", None) or {}).get(node)
    return embedded_service_unit(facts, dist)


STEP = IptablesStep()
