"""`fix --opt-in`: an opt-in action is approved only when named. The grouped output prints the
same opt-in action on many nodes once, as `step:NODE:kind` (core/group.py); that id, given back,
approves it on each of those nodes and nothing else."""

from __future__ import annotations

from clusterfix_tui.core.fixes.engine import FixAction
from clusterfix_tui.core.flow import RepairFlow
from clusterfix_tui.core.group import fold_actions
from clusterfix_tui.core.model import Plan


def _plan() -> Plan:
    acts = []
    for node in ("node-1", "node-2", "NODE-x", "node-3:a"):
        acts.append(FixAction(id=f"iptables:{node}:1", target=node, kind="shell",
                              command="iptables-save >/dev/null"))
        acts.append(FixAction(id=f"iptables:{node}:restart-unit", target=node, kind="shell",
                              command="systemctl restart k3s", opt_in=True))
    acts.append(FixAction(id="iptables:node-1:other-opt", target="node-1", kind="shell",
                          command="true", opt_in=True))
    # an opt-in whose id names another node than its target is never chosen by a pattern
    acts.append(FixAction(id="iptables:node-9:restart-unit", target="node-2", kind="shell",
                          command="true", opt_in=True))
    return Plan(step="iptables", title="t", actions=tuple(acts))


def _flow() -> RepairFlow:
    return RepairFlow(session=object())


def test_opt_in_actions_need_their_id_and_all_takes_every_one() -> None:
    plan, flow = _plan(), _flow()
    defaults = ["iptables:node-1:1", "iptables:node-2:1", "iptables:NODE-x:1", "iptables:node-3:a:1"]
    assert flow.approvable_ids(plan) == defaults
    assert flow.approvable_ids(plan, ["iptables:node-2:restart-unit"]) == \
        defaults + ["iptables:node-2:restart-unit"]
    assert len(flow.approvable_ids(plan, ["all"])) == len(plan.actions)


def test_the_folded_id_as_printed_approves_that_action_on_each_node_only() -> None:
    plan, flow = _plan(), _flow()
    shown = [f.ids_text() for f in fold_actions(
        [a for a in plan.actions if a.command == "systemctl restart k3s"])]
    assert shown == ["iptables:NODE:restart-unit"]
    got = flow.approvable_ids(plan, shown)
    assert [i for i in got if i.endswith(":restart-unit")] == [
        "iptables:node-1:restart-unit", "iptables:node-2:restart-unit",
        "iptables:NODE-x:restart-unit", "iptables:node-3:a:restart-unit"]
    assert "iptables:node-1:other-opt" not in got
    assert "iptables:node-9:restart-unit" not in got
    # a pattern of another step or kind selects nothing
    assert flow.approvable_ids(plan, ["pods:NODE:restart-unit", "iptables:NODE:restart"]) == \
        flow.approvable_ids(plan)
