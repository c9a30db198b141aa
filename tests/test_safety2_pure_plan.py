"""host_network's plan is pure: the node's facts, iptables flavour and backup dir are handed to a
planner made for that node and plan, never kept on the step (a module-level singleton). Old code:
`self._facts`, `self._ipt`, `self._bdir` were set on the step while it planned a node, so a second
plan built meanwhile (the wizard re-planning while a headless plan is built, two tests in one
process) left its node's facts there and the first plan's remaining rules were planned from them
(another node's rule places, wait flags, backup dir for the firewalld marker)."""

from __future__ import annotations

from test_firewall_paths import HOST, _diag, _facts, _fw_findings

import clusterfix_tui.core.fixes.iptables as ipt_fixes


def _diag_of(name: str, node: str):
    facts = {node: _facts(name, node)}
    return _diag(_fw_findings(facts), facts)


def test_a_plan_built_meanwhile_does_not_change_the_first(monkeypatch) -> None:
    a, b = _diag_of("firewall-reject-legacy", "node-2"), _diag_of("firewall-reject-legacy", "node-1")
    alone = HOST.plan(a).to_dict()
    real = ipt_fixes.iptables_rule_place
    seen: list[str] = []
    nested: list[object] = []

    def place(facts, *args, **kw):
        seen.append(getattr(facts, "node", None))
        if not nested:  # the first rule of plan a: plan b meanwhile
            nested.append(None)
            nested.append(HOST.plan(b))
        return real(facts, *args, **kw)

    monkeypatch.setattr(ipt_fixes, "iptables_rule_place", place)
    interleaved = HOST.plan(a)
    assert len(nested) == 2 and "node-1" in seen  # plan b did run in the middle
    assert seen[0] == "node-2" and seen[-1] == "node-2", seen  # plan a's rules: a's facts only
    assert interleaved.to_dict() == alone


def test_planning_leaves_nothing_on_the_step() -> None:
    HOST.plan(_diag_of("firewall-reject-legacy", "node-2"))
    HOST.plan(_diag_of("firewalld", "node-1"))
    assert vars(HOST) == {}
