"""A check that raises on one node's facts must not hide what it finds on the other nodes
(run_checks finds the node(s) by halving and runs the check again without them), and a
diagnosis whose checks raised is never "healthy"."""

from __future__ import annotations

from test_parsers_fuzz import _SNAP, REAL

from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.model import Finding


def _finding(node: str) -> Finding:
    return Finding(code="IP_FORWARD_OFF", severity="error", node=node, title=f"t {node}",
                   evidence=[], step="sysctl")


def _check_raising_on(bad: set[str], calls: list[int]):
    def check(snapshot, facts_by_node):
        calls.append(len(facts_by_node))
        out = []
        for node in facts_by_node:
            if node in bad:
                raise ValueError(f"cannot read {node}")
            out.append(_finding(node))
        return out
    return check


class _Facts:
    """A node's facts where every section was read (all these checks look at is the node)."""

    def unread_sections(self) -> dict[str, str]:
        return {}


def _nodes(n: int) -> dict[str, _Facts]:
    return {f"node-{i}": _Facts() for i in range(n)}


def test_one_bad_node_keeps_the_others_findings_and_is_named():
    calls: list[int] = []
    fn = _check_raising_on({"node-3"}, calls)
    findings, errors = run_checks(None, _nodes(6), checks=[fn])  # type: ignore[arg-type]
    assert sorted(f.node for f in findings) == [f"node-{i}" for i in range(6) if i != 3]
    assert len(errors) == 1 and "(node 'node-3')" in errors[0] and "cannot read node-3" in errors[0]


def test_two_bad_nodes_found_in_few_calls():
    calls: list[int] = []
    fn = _check_raising_on({"node-5", "node-900"}, calls)
    findings, errors = run_checks(None, _nodes(1000), checks=[fn])  # type: ignore[arg-type]
    assert len(findings) == 998
    assert sorted(e.split("'")[1] for e in errors) == ["node-5", "node-900"]
    assert len(calls) < 60  # halving: ~2 x log2(N) per bad node, never one call per node


def test_a_check_failing_whatever_the_nodes_is_one_error():
    calls: list[int] = []

    def check(snapshot, facts_by_node):
        calls.append(len(facts_by_node))
        raise KeyError("snapshot field")

    findings, errors = run_checks(None, _nodes(500), checks=[check])  # type: ignore[arg-type]
    assert findings == [] and len(errors) == 1 and "(node" not in errors[0]
    assert len(calls) == 2  # the cluster, then no node at all: not node-specific


def test_every_node_bad_is_one_error():
    fn = _check_raising_on({f"node-{i}" for i in range(4)}, [])
    findings, errors = run_checks(None, _nodes(4), checks=[fn])  # type: ignore[arg-type]
    assert findings == [] and len(errors) == 1 and "(node" not in errors[0]


def test_garbled_nft_rules_on_one_node_hide_nothing_on_another():
    """Real captured facts: one node's nft JSON garbled inside a table's rule items (decoded on
    first read: NftRulesUnreadable to the iptables check); the other node keeps every finding
    the check makes on it alone."""
    text, nonce = REAL["scratch-b"]
    i = text.index('"expr": [', text.index(' BEGIN nft_json'))
    garbled = text[:i] + '"expr": [,' + text[i + len('"expr": ['):]
    good = parse_facts("node-2", text, nonce)
    bad = parse_facts("node-1", garbled, nonce)
    alone, errors_alone = run_checks(_SNAP, {"node-2": good})
    both, errors = run_checks(_SNAP, {"node-1": bad, "node-2": good})
    assert errors_alone == []
    assert len(errors) == 1 and "(node 'node-1')" in errors[0] and "NftRulesUnreadable" in errors[0]
    key = [(f.code, f.node, f.title) for f in alone if f.node == "node-2"]
    assert key and [(f.code, f.node, f.title) for f in both if f.node == "node-2"] == key
    assert any(f.code == "FORWARD_DROP" for f in alone)  # an iptables-check finding among them


def test_check_errors_are_never_healthy():
    d = Diagnosis(snapshot=_SNAP, facts={}, findings=[], check_errors=["x.check: ValueError: y"])
    assert not d.healthy
    assert Diagnosis(snapshot=_SNAP, facts={}, findings=[]).healthy


def test_diagnose_text_with_a_failed_check_and_no_findings_is_not_healthy():
    from clusterfix_tui.commands.diagnose import render_text

    d = Diagnosis(snapshot=_SNAP, facts={}, findings=[],
                  check_errors=["clusterfix_tui.core.checks.iptables.check (node 'node-1'): ValueError: y"])
    text = render_text(d)
    assert "looks healthy" not in text and "not known to be healthy" in text
    assert "check error (please report): clusterfix_tui.core.checks.iptables.check (node 'node-1')" in text
