"""Checks: pure functions `(snapshot, facts_by_node) -> list[Finding]`, one module per failure
class. `run_checks` runs them all, then folds symptom findings into their root cause on the same
node (e.g. flannel crash-looping BECAUSE cni0 has a foreign address): the root cause keeps the
symptoms in `data["symptoms"]`, so one fault gives one finding. Codes: docs/findings.md."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import (
    FINDING_DATA,
    SEVERITY_ORDER,
    STEP_ORDER,
    Finding,
    FindingData,
)
from clusterfix_tui.core.snapshot import ClusterSnapshot

CheckFn = Callable[[ClusterSnapshot, dict[str, NodeFacts]], list[Finding]]

# symptom code -> root-cause codes on the same node that explain it
SYMPTOM_OF: dict[str, tuple[str, ...]] = {
    "KUBE_PROXY_NO_RULES": ("KUBE_PROXY_CRASHLOOP", "KUBE_PROXY_INCOMPATIBLE_CHAIN"),
    "KUBE_PROXY_CRASHLOOP": ("KUBE_PROXY_INCOMPATIBLE_CHAIN",),
    "FLANNEL_CRASHLOOP": ("CNI_BRIDGE_CONFLICT", "FLANNEL_STALE_SUBNET"),
    "POD_NOT_RUNNING": ("CNI_BRIDGE_CONFLICT", "FLANNEL_STALE_SUBNET",
                        "KUBE_PROXY_INCOMPATIBLE_CHAIN"),
    # a DNS pod on a node whose pod network is broken there (its sandbox cannot be set up)
    "DNS_POD_NOT_RUNNING": ("CNI_BRIDGE_CONFLICT", "FLANNEL_STALE_SUBNET"),
    "FLANNEL_MISSING_ROUTE": ("FLANNEL_STALE_SUBNET", "CNI_BRIDGE_CONFLICT"),
    # the node's own firewall drops the VXLAN the probes travel in
    "VXLAN_UNDERLAY_BLOCKED": ("FIREWALL_REJECT", "FIREWALL_POLICY_DROP"),
}
# symptom code -> root-cause codes anywhere in the cluster
CLUSTER_SYMPTOM_OF: dict[str, tuple[str, ...]] = {
    # a probe failing with "no route to host" is what these node faults look like from kubelet
    "PROBE_NO_ROUTE": ("FIREWALL_REJECT", "FIREWALL_POLICY_DROP", "CNI_BRIDGE_CONFLICT", "FLANNEL_STALE_SUBNET",
                       "FLANNEL_STALE_VTEP", "FLANNEL_MISSING_ROUTE", "FORWARD_DROP",
                       "IP_FORWARD_OFF", "VXLAN_UNDERLAY_BLOCKED", "FLANNEL_LINK_DOWN"),
    # probes through flannel.1 also fail when the overlay itself is broken somewhere
    "VXLAN_UNDERLAY_BLOCKED": ("FLANNEL_STALE_VTEP", "FLANNEL_STALE_SUBNET", "FLANNEL_MISSING_ROUTE",
                               "CNI_BRIDGE_CONFLICT", "FLANNEL_LINK_DOWN"),
}


def _check_modules() -> tuple[Any, ...]:
    """Every check module, in the order their checks run."""
    from clusterfix_tui.core.checks import (
        cni,
        conntrack,
        dns,
        firewall,
        flannel,
        host,
        iptables,
        kubeconfig,
        pods,
        underlay,
    )

    return (iptables, firewall, host, cni, flannel, pods, dns, kubeconfig, underlay, conntrack)


def all_checks() -> list[CheckFn]:
    return [mod.check for mod in _check_modules()]


@functools.lru_cache(maxsize=1)
def sections_read() -> dict[str, tuple[str, ...]]:
    """finding code -> the facts sections (core/facts.py names) its check decides it from, as
    every check module declares in READS. A code not listed reads no node facts (API-only)."""
    out: dict[str, tuple[str, ...]] = {}
    for mod in _check_modules():
        for code, secs in getattr(mod, "READS", {}).items():
            out[code] = tuple(dict.fromkeys(out.get(code, ()) + tuple(secs)))
    return out


def not_read(code: str, unread: dict[str, str]) -> list[tuple[str, str]]:
    """[(section, why)] of the sections `code` reads that were not read on a node, given that
    node's NodeFacts.unread_sections(): when not empty, `code` is not checked on that node."""
    if not unread:
        return []
    return [(s, unread[s]) for s in sections_read().get(code, ()) if s in unread]


def drop_not_read(findings: list[Finding], facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    """Drop every finding on a node where a section its code reads was not read completely
    (timed out, killed, cut off): an empty view there is not an absent thing, and a finding
    built from it would plan an action on a healthy node. core.shape.not_checked() says why."""
    unread: dict[str, dict[str, str]] = {}
    kept = []
    for f in findings:
        facts = facts_by_node.get(f.node)
        if facts is not None:
            if f.node not in unread:
                unread[f.node] = facts.unread_sections()
            if not_read(f.code, unread[f.node]):
                continue
        kept.append(f)
    return kept


def data_for(code: str, **values: Any) -> FindingData | dict[str, Any]:
    """The typed data of `code` built from keyword values, as its check builds it (a TypeError
    names a key the class does not have); a plain dict for a code without a data class."""
    all_checks()  # every check module registers its data classes when imported
    cls = FINDING_DATA.get(code)
    return cls(**values) if cls is not None else dict(values)


def run_checks(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts],
               checks: list[CheckFn] | None = None) -> tuple[list[Finding], list[str]]:
    """(findings, errors): a check that raises is a bug; it is reported, the others still run."""
    findings: list[Finding] = []
    errors: list[str] = []
    for fn in checks or all_checks():
        try:
            findings.extend(fn(snapshot, facts_by_node))
        except Exception as exc:  # keep diagnosing; say which check broke
            got, errs = _without_failing_nodes(fn, snapshot, facts_by_node, exc)
            findings.extend(got)
            errors.extend(errs)
    findings = in_scope(snapshot, drop_not_read(findings, facts_by_node))
    return sort_findings(fold_symptoms(findings)), errors


def _error(fn: CheckFn, exc: BaseException, node: str | None = None) -> str:
    where = f" (node {node!r})" if node is not None else ""
    return f"{fn.__module__}.{fn.__name__}{where}: {type(exc).__name__}: {exc}"


def _without_failing_nodes(fn: CheckFn, snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts],
                           exc: BaseException) -> tuple[list[Finding], list[str]]:
    """A check raised on the whole cluster: one node's facts it cannot read (a section cut or
    garbled in transit, a hostile node's output, a parser's bug) must not hide what the check
    finds on every other node. The nodes whose facts make it raise on their own are found by
    halving (a few calls, not one per node), and the check runs again without them; each is
    named in an error (its findings of this check are missing, so the diagnosis is not healthy).
    When no single node explains it, or the check raises again, the one error as before."""
    if len(facts_by_node) < 2:
        return [], [_error(fn, exc)]
    try:
        fn(snapshot, {})
    except Exception:  # noqa: BLE001 - not any node's facts: the one error as before
        return [], [_error(fn, exc)]
    bad: dict[str, BaseException] = {}
    calls_left = 8 * len(facts_by_node).bit_length()  # ~2 x log2(N) calls per failing node
    gave_up = False

    def halve(names: list[str]) -> None:
        nonlocal calls_left, gave_up
        if calls_left <= 0:
            gave_up = True
            return
        calls_left -= 1
        try:
            fn(snapshot, {n: facts_by_node[n] for n in names})
            return
        except Exception as e:  # noqa: BLE001 - the error is reported below
            if len(names) == 1:
                bad[names[0]] = e
                return
        mid = len(names) // 2
        halve(names[:mid])
        halve(names[mid:])

    names = list(facts_by_node)
    halve(names[:len(names) // 2])
    halve(names[len(names) // 2:])
    if not bad or len(bad) == len(names) or gave_up:
        return [], [_error(fn, exc)]
    try:
        got = fn(snapshot, {n: f for n, f in facts_by_node.items() if n not in bad})
    except Exception as again:  # noqa: BLE001
        return [], [_error(fn, again)]
    return list(got), [_error(fn, e, n) for n, e in bad.items()]


def in_scope(snapshot: ClusterSnapshot, findings: list[Finding]) -> list[Finding]:
    """Drop findings outside their code's shape scope (core.shape.SCOPES): the checks skip them
    already; this is the net that guarantees it. Without a shape (unit tests), all are kept."""
    from clusterfix_tui.core.shape import shape_of, why_not

    shape = shape_of(snapshot)
    if shape is None:
        return findings
    return [f for f in findings if why_not(shape, f.code, f.node) is None]


def fold_symptoms(findings: list[Finding]) -> list[Finding]:
    by_node: dict[str, set[str]] = {}
    for f in findings:
        by_node.setdefault(f.node, set()).add(f.code)
    codes_anywhere = {f.code for f in findings}
    kept: list[Finding] = []
    folded: list[tuple[Finding, str]] = []
    for f in findings:
        roots = [c for c in SYMPTOM_OF.get(f.code, ()) if c in by_node.get(f.node, set())]
        roots += [c for c in CLUSTER_SYMPTOM_OF.get(f.code, ()) if c in codes_anywhere]
        if roots and f.code not in roots:
            folded.append((f, roots[0]))
        else:
            kept.append(f)
    for sym, root_code in folded:
        for k in kept:
            if k.code == root_code and (k.node == sym.node or root_code in
                                        CLUSTER_SYMPTOM_OF.get(sym.code, ())):
                symptom = {"code": sym.code, "node": sym.node, "title": sym.title,
                           "evidence": list(sym.evidence), "data": sym.to_dict()["data"]}
                if isinstance(k.data, FindingData):
                    k.data.symptoms.append(symptom)
                else:
                    k.data.setdefault("symptoms", []).append(symptom)
                break
    return kept


def sort_findings(findings: list[Finding]) -> list[Finding]:
    step_idx = {s: i for i, s in enumerate(STEP_ORDER)}
    return sorted(findings, key=lambda f: (SEVERITY_ORDER.get(f.severity, 9),
                                           step_idx.get(f.step or "", 99), f.node, f.code))
