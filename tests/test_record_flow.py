"""One replay, one flow: the session's summary, the report and the CLI rollback agree with the
journal, command for command and count for count."""

from __future__ import annotations

import argparse
import json

import pytest
from fix_helpers import FakeDiagnosis, finding, snapshot
from test_preconditions import _plans

from clusterfix_tui.core import report
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.flow import RepairFlow, StalePlanError
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CheckResult, CommandResult
from clusterfix_tui.core.record import replay
from clusterfix_tui.core.session import RepairSession


class API:
    def describe(self):
        return {"context": "lab", "server": "https://10.0.0.1:6443"}

    def version(self):
        return {"gitVersion": "v1.31.0"}

    def list_nodes(self):
        return [{"metadata": {"name": n}} for n in ("node-1", "node-2", "node-3")]

    def list_pods(self, namespace=None, label_selector=None):
        return []


class Shells:
    def __call__(self, node, address=None):
        return self

    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        return CommandResult(0, "")  # every precondition holds


class Runner:
    dry_run = False

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.ran: list[tuple[str, str]] = []

    def run_action(self, action, *, on_line=None):
        self.ran.append((action.id, action.command))
        if action.id in self.fail:
            return CommandResult(1, "", "boom\n")
        return CommandResult(0, "ok\n")


def _session(tmp_path, runner, findings):
    j = Journal(tmp_path / "s.jsonl")
    s = RepairSession(API(), Shells(), runner, j, prober=object())
    d = FakeDiagnosis(findings, snapshot=snapshot())
    s.diagnosis = s.before = d
    s.journal_diagnosis(d, "before")
    return s, j


FINDINGS = [
    finding("FORWARD_DROP", "node-1", "iptables", backend="legacy", pod_network="10.244.0.0/16"),
    finding("FLANNEL_STALE_SUBNET", "node-2", "cni_bridge", device="flannel.1",
            stale_addresses=["10.244.7.0/32"]),
]


def test_summary_record_and_report_agree_on_every_count_with_a_failed_step(tmp_path,
                                                                            monkeypatch):
    from clusterfix_tui.core import validate as V

    s, j = _session(tmp_path, Runner(), FINDINGS)
    flow = RepairFlow(s, max_passes=1, settle_timeout=0)
    p1 = flow.plan_for_approval("iptables")
    p2 = flow.plan_for_approval("cni_bridge")
    s.runner.fail = {next(a.id for a in p2.actions if a.mutating and a.kind == "shell"
                          and "addr del" in a.command)}
    assert flow.apply(p1, flow.approvable_ids(p1)).status == "changed"
    with pytest.raises(StalePlanError):  # p2 was built before iptables changed the cluster
        flow.apply(p2, flow.approvable_ids(p2))
    monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                        lambda *a, **k: FakeDiagnosis(FINDINGS[1:], snapshot=snapshot()))
    p2 = flow.plan_for_approval("cni_bridge")  # re-diagnosed, re-planned, journaled
    s.runner.fail = {a.id for a in p2.actions if "addr del" in a.command}
    assert flow.apply(p2, flow.approvable_ids(p2)).status == "failed"
    monkeypatch.setattr(V, "validate", lambda *a, **k: [CheckResult("nodeport", "node-1", True)])
    flow.validate()
    verdict = flow.finish()
    assert verdict == "partially-fixed"  # validation is green but a step failed

    events = Journal.read(tmp_path / "s.jsonl")
    rec = replay(events)
    end = events[-1]
    assert end["type"] == "session_end" and end["verdict"] == verdict == rec.verdict
    assert end["summary"]["steps"] == rec.step_status() == {"iptables": "changed",
                                                             "cni_bridge": "failed"}
    assert end["summary"]["counts"] == rec.counts()
    assert rec.counts()["steps_failed"] == 1 and rec.counts()["steps_changed"] == 1
    doc = report.build_report(events)
    assert doc["verdict"]["value"] == verdict
    final = {}
    for e in doc["steps"]:
        if e["kind"] == "repair" and e["decision"] is not None:
            final[e["step"]] = e["status"]
    assert final == rec.step_status()
    assert doc["stats"]["passes"] == rec.passes == 1
    md = report.render(events, "md")
    assert "failed" in md and "cni_bridge" in md
    # the plan shown for approval before the change is in the journal, but never decided on
    plans = [e for e in events if e["type"] == "plan" and e["step"] == "cni_bridge"]
    assert len(plans) == 2


def test_preview_is_not_journaled_as_a_plan_for_approval(tmp_path):
    s, j = _session(tmp_path, Runner(), FINDINGS)
    flow = RepairFlow(s)
    previews = flow.preview_all()
    assert previews["iptables"].actions
    assert not [e for e in j.events if e["type"] == "plan"]
    flow.plan_for_approval("iptables")
    flow.plan_for_approval("iptables")  # the same plan, shown once
    assert len([e for e in j.events if e["type"] == "plan"]) == 1


def test_next_pass_offers_only_steps_with_actions_that_have_not_run(tmp_path, monkeypatch):
    s, j = _session(tmp_path, Runner(), FINDINGS[:1])
    flow = RepairFlow(s, settle_timeout=0)
    monkeypatch.setattr(s, "validate_quiet", lambda: [CheckResult("x", "y", True)])
    p = flow.plan_for_approval("iptables")
    flow.apply(p, flow.approvable_ids(p))
    for step in ("cni_bridge", "pods", "worker_kubeconfig", "host_network"):
        flow.skip(flow.plan_for_approval(step), "nothing to do")
    # the fix unmasked a finding for an earlier step; the same FORWARD_DROP persists too
    unmasked = [FINDINGS[0], finding("FORWARD_DROP", "node-2", "iptables", backend="legacy",
                                     pod_network="10.244.0.0/16")]
    monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                        lambda *a, **k: FakeDiagnosis(unmasked, snapshot=snapshot()))
    assert flow.next_pass() == ["iptables"]
    assert flow.pass_no == 2 and flow.pass_steps() == ("iptables",)
    p2 = flow.plan_for_approval("iptables")
    flow.apply(p2, flow.approvable_ids(p2))
    rec = replay(j.events)
    assert rec.passes == 2
    assert [e["step"] for e in rec.passes_steps()[2]] == ["iptables"]
    # pass 3 would only repeat what ran: converged
    assert flow.next_pass() == []


# -- the CLI rollback: the plan it prints is, command for command, what runs ----------------

def _journal_of_every_step(path):
    from clusterfix_tui.core.fixes.engine import apply_plan

    j = Journal(path)
    runner = Runner()
    plans = _plans()
    for plan in plans:
        apply_plan(plan, [a.id for a in plan.actions], runner, j)
    host = get_step("host_network").plan(
        FakeDiagnosis([finding("IP_FORWARD_OFF", "node-2", "host_network", value="0")],
                      snapshot=snapshot()))
    apply_plan(host, [a.id for a in host.actions], runner, j)
    from test_fixes_worker_host import wk

    worker = get_step("worker_kubeconfig").plan(
        FakeDiagnosis([wk()], snapshot=snapshot()))
    apply_plan(worker, [a.id for a in worker.actions], runner, j)
    j.close()
    return [*plans, host, worker]


@pytest.mark.parametrize("step", ["iptables", "cni_bridge", "pods", "host_network",
                                  "worker_kubeconfig"])
def test_cli_rollback_prints_exactly_what_runs(tmp_path, monkeypatch, capsys, step):
    from clusterfix_tui.commands import rollback as cmd

    path = tmp_path / "j.jsonl"
    plans = {p.step: p for p in _journal_of_every_step(path)}
    with_rb = [a for a in plans[step].actions if a.rollback is not None]
    assert with_rb, step
    runner = Runner()

    class RT:
        api = None
        shells = None

        def __init__(self):
            self.runner = runner

        def close(self):
            pass

    monkeypatch.setattr("clusterfix_tui.runtime.build_runtime", lambda **k: RT())
    args = argparse.Namespace(journal=str(path), step=step, yes=True, dry_run=False,
                              kubeconfig=None, context=None, ssh_config=None, lab_dir=None)
    assert cmd.run(args) == 0
    printed = [ln.split("$ ", 1)[1] for ln in capsys.readouterr().out.splitlines()
               if ln.startswith("      $ ")]
    ran = [c for _, c in runner.ran]
    events = Journal.read(path)
    journaled = [e["command"] for e in events if e["type"] == "command_start"
                 and e.get("rollback")]
    assert printed == ran == journaled
    assert ran == [a.rollback.command for a in reversed(with_rb)]
    decision = [e for e in events if e["type"] == "decision" and e.get("rollback")]
    assert len(decision) == 1 and decision[0]["by"] == "--yes"
    assert json.dumps(decision[0]["action_ids"]) == json.dumps(
        [a.rollback.id for a in reversed(with_rb)])


def test_leaving_a_node_out_makes_plans_stale_but_is_no_change_to_wait_for(tmp_path):
    s, j = _session(tmp_path, Runner(), FINDINGS)
    flow = RepairFlow(s, settle_timeout=3600)
    flow._diagnosed()
    p = flow.plan_for_approval("iptables")
    flow.leave_out("node-3", "unreachable")
    assert flow.stale and not flow.changed_anything
    assert not flow.is_current(p)
    assert flow.settle() == []  # nothing ran: nothing to wait for, returns at once


def test_rollback_plan_keeps_both_passes_of_a_reused_action_id() -> None:
    """A later pass re-plans with the same action ids: both runs are undone, each once."""
    from clusterfix_tui.core.fixes.engine import RanAction, rollback_plan
    from clusterfix_tui.core.model import Action

    def act(cmd: str, undo: str) -> Action:
        return Action(id="host_network:node-2:1", target="node-2", kind="shell", command=cmd,
                      rollback=Action(id="host_network:node-2:1:rollback", target="node-2",
                                      kind="shell", command=undo))

    ran = [RanAction("host_network", act("iptables -I INPUT 1 -p udp --dport 8472 -j ACCEPT",
                                         "iptables -D INPUT -p udp --dport 8472 -j ACCEPT"), True),
           RanAction("host_network", act("iptables -I INPUT 1 -p tcp --dport 10250 -j ACCEPT",
                                         "iptables -D INPUT -p tcp --dport 10250 -j ACCEPT"), True),
           RanAction("host_network", act("iptables -I INPUT 1 -p tcp --dport 10250 -j ACCEPT",
                                         "iptables -D INPUT -p tcp --dport 10250 -j ACCEPT"), True)]
    plan, mapping = rollback_plan(ran)
    assert [a.command for a in plan.actions] == [
        "iptables -D INPUT -p tcp --dport 10250 -j ACCEPT",
        "iptables -D INPUT -p udp --dport 8472 -j ACCEPT"]
    assert len({a.id for a in plan.actions}) == 2 and set(mapping) == {a.id for a in plan.actions}
