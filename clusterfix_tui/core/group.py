"""One cause, one line: findings that share one cause across many nodes, grouped. Pure.

On a 30-node cluster where node-2's flannel.1 was recreated, 28 peers each report "stale VTEP MAC
for node-2": one cause (node-2's VTEP), 28 findings. And the same setting wrong on every node
(FORWARD policy DROP in one backend, ip_forward off) is one cause too. `group_findings` folds such
findings into a `FindingGroup` naming the cause and the affected nodes (counted); every node's
finding stays inside its group, unchanged (the JSON and the report keep them all).
`plan_entries` does the same for a step's plan: the actions that repair one group are one entry.

Keys:
- FLANNEL_STALE_VTEP: the peer whose VTEP is stale (and the IP family), whatever the wrong MACs
  seen on each node;
- otherwise: code, severity, step and the title with the node's own name taken out: findings
  whose one-line statement is the same on every node are the same setting wrong everywhere.
A group of one is the finding itself (`grouped` False). Findings about the cluster as a whole are
never grouped with each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.model import CLUSTER, SEVERITY_ORDER, Finding

# per-code: the data fields that identify the cause shared by many nodes
CAUSE_FIELDS: dict[str, tuple[str, ...]] = {
    "FLANNEL_STALE_VTEP": ("peer_node", "ip_version"),
}


@dataclass(frozen=True)
class FindingGroup:
    key: str
    code: str
    severity: str
    step: str | None
    title: str  # the line to show: the cause, and how many nodes
    cause: str  # the cause alone, e.g. "node-2's VTEP MAC 02:..:01 is stale on its peers"
    nodes: tuple[str, ...]  # the affected nodes, sorted
    findings: tuple[Finding, ...]  # every node's own finding, in the diagnosis' order

    @property
    def count(self) -> int:
        return len(self.nodes)

    @property
    def grouped(self) -> bool:
        return len(self.findings) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "code": self.code, "severity": self.severity, "step": self.step,
                "title": self.title, "cause": self.cause, "count": self.count,
                "nodes": list(self.nodes), "grouped": self.grouped,
                "findings": [f.to_dict() for f in self.findings]}


def _get(data: Any, key: str) -> Any:
    """A field of a finding's data: a dict (journal, older codes) or its FindingData class."""
    if isinstance(data, dict):
        return data.get(key)
    return getattr(data, key, None)


def group_key(f: Finding) -> str:
    fields = CAUSE_FIELDS.get(f.code)
    if fields and f.node != CLUSTER:
        vals = [_get(f.data, k) for k in fields]
        if vals[0] is not None:
            return "\x1f".join([f.code, *(str(v) for v in vals)])
    if f.node == CLUSTER:
        return "\x1f".join([f.code, CLUSTER, f.title])
    title = f.title.replace(f.node, "{node}") if f.node else f.title
    return "\x1f".join([f.code, f.severity, f.step or "", title])


def _cause(code: str, members: Sequence[Finding]) -> tuple[str, str]:
    """(cause, title) of a group."""
    first = members[0]
    n = len({f.node for f in members})
    if code == "FLANNEL_STALE_VTEP" and _get(first.data, "peer_node"):
        peer = _get(first.data, "peer_node")
        want = _get(first.data, "expected_mac")
        wrong = sorted({str(m) for f in members for m in (_get(f.data, "wrong_macs") or ())})
        cause = (f"{peer}'s VTEP MAC is stale on its peers: they hold "
                 f"{', '.join(wrong) if wrong else 'no entry'} instead of {want}"
                 if n > 1 else first.title)
        title = (f"stale VTEP MAC for {peer} on {n} nodes" + (f" ({', '.join(wrong)} instead of "
                                                            f"{want})" if wrong else f" ({want})")
                 if n > 1 else first.title)
        return cause, title
    if len(members) == 1:
        return first.title, first.title
    return first.title.replace(first.node, "each node"), f"{first.title} (on {n} nodes)"


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """Every finding in exactly one group, groups in the order of their first finding. Linear."""
    order: list[str] = []
    members: dict[str, list[Finding]] = {}
    for f in findings:
        k = group_key(f)
        if k not in members:
            members[k] = []
            order.append(k)
        members[k].append(f)
    out = []
    for k in order:
        ms = members[k]
        first = ms[0]
        cause, title = _cause(first.code, ms)
        sev = min((f.severity for f in ms), key=lambda s: SEVERITY_ORDER.get(s, 9))
        out.append(FindingGroup(key=k, code=first.code, severity=sev, step=first.step,
                                title=title, cause=cause,
                                nodes=tuple(sorted({f.node for f in ms})), findings=tuple(ms)))
    return out


def _finding_of(d: dict[str, Any]) -> Finding:
    data = d.get("data")
    return Finding(code=str(d.get("code", "")), severity=d.get("severity", "error"),
                   node=str(d.get("node", "")), title=str(d.get("title", "")),
                   evidence=tuple(d.get("evidence") or ()),
                   explanation=str(d.get("explanation", "")),
                   reference=str(d.get("reference", "")), step=d.get("step"),
                   data=dict(data) if isinstance(data, dict) else {})


def group_finding_dicts(findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """group_findings for findings as serialised (journal, report): the groups as dicts, each
    node's finding inside its group as the very dict it was given (nothing re-serialised)."""
    pairs = [(_finding_of(d), d) for d in findings if isinstance(d, dict)]
    given = {id(f): d for f, d in pairs}
    out = []
    for g in group_findings([f for f, _ in pairs]):
        gd = g.to_dict()
        gd["findings"] = [given[id(f)] for f in g.findings]
        out.append(gd)
    return out


def _hints(f: Finding) -> list[str]:
    """Values of a finding that show up in the commands repairing it (to tell apart two
    findings of one code on one node)."""
    out = []
    for k in ("peer_ip", "peer_subnet_gw", "peer_node", "expected_mac"):
        v = _get(f.data, k)
        if isinstance(v, str) and v:
            out.append(v)
    return out


def plan_entries(plan: Any, groups: Sequence[FindingGroup]) -> list[dict[str, Any]]:
    """A plan's actions as entries to show: the actions repairing one grouped cause are one
    entry (its title, the nodes counted, the action ids), every other action an entry of its own.
    Nothing is dropped or merged away: the action ids of all entries are the plan's, in order."""
    by_node_code: dict[tuple[str, str], list[tuple[FindingGroup, Finding]]] = {}
    for g in groups:
        if not g.grouped:
            continue
        for f in g.findings:
            by_node_code.setdefault((f.node, f.code), []).append((g, f))
    # an action that also answers a finding of no group on its node (a flannel restart for a
    # stale subnet and a stale VTEP) is an entry of its own, not folded into the group's
    alone = {(f.node, f.code) for g in groups if not g.grouped for f in g.findings}
    entries: list[dict[str, Any]] = []
    by_group: dict[str, dict[str, Any]] = {}
    for a in getattr(plan, "actions", ()) or ():
        codes = a.finding_codes or ()
        cands = [c for code in codes for c in by_node_code.get((a.target, code), ())]
        if any((a.target, code) in alone for code in codes):
            cands = []
        chosen: FindingGroup | None = None
        if len(cands) == 1:
            chosen = cands[0][0]
        elif cands:
            cmd = f"{a.id} {a.command}"
            chosen = next((g for g, f in cands if any(h in cmd for h in _hints(f))), cands[0][0])
        if chosen is None:
            entries.append({"title": a.why or a.command, "group": None, "nodes": [a.target],
                            "count": 1, "action_ids": [a.id]})
            continue
        e = by_group.get(chosen.key)
        if e is None:
            e = {"title": chosen.title, "group": chosen.key, "nodes": [], "count": 0,
                 "action_ids": []}
            by_group[chosen.key] = e
            entries.append(e)
        if a.target not in e["nodes"]:
            e["nodes"].append(a.target)
            e["count"] = len(e["nodes"])
        e["action_ids"].append(a.id)
    return entries


# -- showing groups on a terminal (the CLI's plain text, the step screen) ------------------------

def _natural(s: str) -> list[Any]:
    """node-2 before node-10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


def sorted_nodes(nodes: Iterable[str]) -> list[str]:
    return sorted(set(nodes), key=_natural)


def nodes_text(nodes: Iterable[str], shown: int = 5) -> str:
    """The nodes of a group in one short line: "node-1, node-3, node-4" or, for more than
    `shown`, "node-1, node-3, node-4, node-5, node-6, ... (29)". For findings only: where a command runs is
    always listed in full (all_nodes_text)."""
    ns = sorted_nodes(nodes)
    if len(ns) <= shown:
        return ", ".join(ns)
    return ", ".join(ns[:shown]) + f", ... ({len(ns)})"


def all_nodes_text(nodes: Iterable[str]) -> str:
    """Every node, in natural order (where a command runs is never abbreviated)."""
    return ", ".join(sorted_nodes(nodes))


def _pre_cmd(a: Any) -> str | None:
    pre = getattr(a, "precondition", None)
    return None if pre is None else f"{pre.kind}\x1f{pre.command}"


def _rb_cmd(a: Any) -> str | None:
    rb = getattr(a, "rollback", None)
    return None if rb is None else rb.command


def action_signature(a: Any) -> tuple[Any, ...]:
    """Everything shown about an action but its id and node: two actions with the same
    signature on two nodes are shown once with both nodes."""
    return (a.kind, a.command, bool(a.mutating), bool(getattr(a, "opt_in", False)), a.why,
            a.risk, _pre_cmd(a), _rb_cmd(a), getattr(a, "rollback_note", ""), id_kind(a.id))


def id_kind(action_id: str) -> str:
    """The last part of an action id when it says something (opt-in ids), not its number."""
    tail = action_id.rsplit(":", 1)[-1]
    return "#" if tail.isdigit() else tail


@dataclass(frozen=True)
class FoldedAction:
    """Actions byte-identical in everything shown (command, why, risk, check, rollback), one per
    node: shown once with every node they run on. `actions` in plan order."""

    actions: tuple[Any, ...]

    @property
    def first(self) -> Any:
        return self.actions[0]

    @property
    def nodes(self) -> list[str]:
        return [a.target for a in self.actions]

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.actions]

    def ids_text(self) -> str:
        """`cni_bridge:node-1:2` for one; `cni_bridge:NODE:2` when every id is that pattern with
        its own node; else every id."""
        if len(self.actions) == 1:
            return self.actions[0].id
        pats = set()
        for a in self.actions:
            head, sep, tail = a.id.partition(f":{a.target}:")
            if not sep:
                return ", ".join(self.ids)
            pats.add((head, tail))
        if len(pats) == 1:
            head, tail = next(iter(pats))
            return f"{head}:NODE:{tail}"
        return ", ".join(self.ids)


def fold_actions(actions: Iterable[Any], key: Callable[[Any], Any] = action_signature,
                 ) -> list[FoldedAction]:
    """Identical actions on different nodes folded into one FoldedAction, in the order of their
    first action. Every action is in exactly one fold; a fold never holds two actions of one node
    (the same command twice on a node is shown twice: it runs twice). `key`: what must be
    identical (by default everything shown about an action: action_signature)."""
    order: list[tuple[tuple[Any, ...], int]] = []
    members: dict[tuple[tuple[Any, ...], int], list[Any]] = {}
    seen: dict[tuple[Any, ...], list[set[str]]] = {}
    for a in actions:
        sig = key(a)
        folds = seen.setdefault(sig, [])
        i = next((k for k, targets in enumerate(folds) if a.target not in targets), len(folds))
        if i == len(folds):
            folds.append(set())
            order.append((sig, i))
            members[(sig, i)] = []
        folds[i].add(a.target)
        members[(sig, i)].append(a)
    return [FoldedAction(tuple(members[k])) for k in order]


def plan_dict_rows(plan: dict[str, Any], same: Callable[[dict[str, Any]], Any] = lambda a: None,
                   ) -> list[dict[str, Any]]:
    """A plan as journaled (core/record.py's plan dict: findings and actions as dicts), as the
    report shows it: its entries (plan_entries), each {"title" (None: actions of no grouped
    cause), "count" (nodes), "actions" (how many), "rows": [{"actions": [action dicts], "nodes",
    "ids"}]}, a row holding the actions identical but for their node (and for `same(action)`,
    e.g. whether it ran). Every action of the plan is in exactly one row."""
    from types import SimpleNamespace

    acts = [a for a in plan.get("actions") or () if isinstance(a, dict)]

    def ns(a: dict[str, Any]) -> Any:
        pre, rb = a.get("precondition"), a.get("rollback_command")
        return SimpleNamespace(
            id=str(a.get("id", "")), target=str(a.get("target", "")), kind=a.get("kind", "shell"),
            command=str(a.get("command", "")), why=a.get("why", ""), risk=a.get("risk", ""),
            mutating=bool(a.get("mutating", True)), opt_in=bool(a.get("opt_in", False)),
            finding_codes=tuple(a.get("finding_codes") or ()), rollback_note=a.get("rollback_note", ""),
            precondition=None if pre is None else SimpleNamespace(kind="", command=pre),
            rollback=None if rb is None else SimpleNamespace(command=rb), raw=a)

    wrapped = [ns(a) for a in acts]
    by_id = {w.id: w for w in wrapped}
    groups = group_findings(_finding_of(f) for f in plan.get("findings") or ()
                            if isinstance(f, dict))
    entries = plan_entries(SimpleNamespace(actions=wrapped), groups)
    if len(by_id) != len(wrapped):  # ids not unique (a damaged journal): one entry, as listed
        entries = [{"title": None, "group": None, "count": 0, "action_ids": []}]
        listed: list[Any] = wrapped
    else:
        listed = []

    def rows(ws: list[Any]) -> list[dict[str, Any]]:
        return [{"actions": [w.raw for w in f.actions], "nodes": f.nodes, "ids": f.ids_text()}
                for f in fold_actions(ws, key=lambda w: (action_signature(w), same(w.raw)))]

    out: list[dict[str, Any]] = []
    loose: list[Any] = list(listed)
    for e in entries:
        ws = [by_id[i] for i in e["action_ids"]]
        if e["group"] is None:
            loose.extend(ws)
            continue
        if loose:
            out.append({"title": None, "count": 0, "actions": len(loose), "rows": rows(loose)})
            loose = []
        out.append({"title": e["title"], "count": e["count"], "actions": len(ws), "rows": rows(ws)})
    if loose:
        out.append({"title": None, "count": 0, "actions": len(loose), "rows": rows(loose)})
    return out
