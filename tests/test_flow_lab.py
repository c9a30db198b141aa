"""The repair flow on a real lab: a shown action whose target vanished before it ran is "already
done" (never run blind), and a fix that unmasks a finding for an earlier step converges in a
second pass.

The flow is driven in-process (real SSH to the netns nodes, real HTTPS to the lab API), so the
test can change the cluster between the approval and the apply, as another admin would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.core.journal import Journal

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3, faults="iptables-foreign-rule")


def _flow(lab_dir, journal_path):
    from clusterfix_tui.core.flow import RepairFlow
    from clusterfix_tui.core.session import RepairSession
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(lab_dir))
    journal = Journal(journal_path)
    session = RepairSession(rt.api, rt.shells, rt.runner, journal, mode="headless",
                            prober=rt.prober)
    return rt, journal, RepairFlow(session, settle_timeout=0)


def test_targets_removed_between_approval_and_apply_are_already_done(lab, tmp_path):
    node = next(f["node"] for f in lab.info["faults"] if f["name"] == "iptables-foreign-rule")
    rt, journal, flow = _flow(lab.dir, tmp_path / "j.jsonl")
    try:
        flow.connect()
        flow.leave_out_unconnected()
        flow.diagnose()
        plan = flow.plan_for_approval("iptables")
        rule = next(a for a in plan.actions if a.target == node and "nft delete rule" in a.command)
        pod = next(a for a in plan.actions if a.target == node and a.kind == "api"
                   and (a.api or {}).get("verb") == "delete_pod")
        # the shown plan names the exact pod (uid pinned) and the rule's check
        assert pod.precondition.api["uid"]
        assert "handle" in rule.precondition.command
        handle = rule.command.rsplit(" ", 1)[1]
        fam, tab, chain = rule.command.split()[3:6]
        # someone else fixes it by hand after the plan was shown, before it is applied
        lab.exec(node, f"nft delete rule {fam} {tab} {chain} handle {handle}")
        rt.api.delete_pod(pod.api["namespace"], pod.api["name"])
        lines = []
        outcome = flow.apply(plan, flow.approvable_ids(plan),
                             on_line=lambda n, s, ln: lines.append((n, s, ln)))
    finally:
        rt.close()
        journal.close()
    by_id = {o.action_id: o for o in outcome.actions}
    assert by_id[rule.id].status == "already-done", by_id[rule.id]
    assert f"no rule at handle {handle}" in by_id[rule.id].detail
    assert by_id[pod.id].status == "already-done", by_id[pod.id]
    assert pod.api["name"] in by_id[pod.id].detail
    assert outcome.status not in ("failed", "partial"), outcome
    events = Journal.read(tmp_path / "j.jsonl")
    ran = {e["action_id"] for e in events if e["type"] == "command_start"}
    assert rule.id not in ran and pod.id not in ran  # never run blind
    checks = {e["action_id"]: e for e in events if e["type"] == "precheck"}
    assert checks[rule.id]["state"] == checks[pod.id]["state"] == "already-done"
    assert checks[rule.id]["command"] == rule.precondition.command  # as shown
    assert any(rule.id in ln and "already done" in ln for _, _, ln in lines)
    from clusterfix_tui.core import report

    md = report.render(events, "md")
    assert f"`{rule.id}` already-done" in md


def test_fix_converges_when_a_fix_unmasks_a_finding_for_an_earlier_step(tmp_path_factory,
                                                                        tmp_path):
    """kube-proxy crash-looping with its rules gone, and stale legacy KUBE-* rules on the same
    node: the pods step's restart brings kube-proxy's nft rules back, and only then does the
    legacy copy become a backend conflict for the iptables step (an earlier step)."""
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=3,
                     faults="iptables-shadow:node-3,kube-proxy-crashloop:node-3") as blab:
        journal = tmp_path / "fix.jsonl"
        report_path = tmp_path / "report.md"
        r = subprocess.run(
            [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--lab-dir",
             str(blab.dir), "--journal", str(journal), "--report", str(report_path),
             "--wait", "90"],
            capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"})
    out = r.stdout + r.stderr
    events = Journal.read(journal)
    from clusterfix_tui.core.record import replay

    rec = replay(events)
    assert rec.verdict == "fixed", out[-5000:]
    assert r.returncode == 0, out[-5000:]
    assert rec.passes == 2, out[-5000:]
    assert [e["step"] for e in rec.passes_steps()[2]] == ["iptables"], out[-5000:]
    assert "verdict: fixed after 2 passes" in r.stdout
    md = report_path.read_text()
    assert "iptables (pass 2)" in md and "2 repair passes" in md


def test_a_later_step_is_planned_from_the_cluster_as_it_is_after_an_earlier_one(
        tmp_path_factory, tmp_path):
    """The issue's path (all faults): look at step 1 and step 3, apply step 1, then step 3: its
    plan is rebuilt from the current cluster (the pods it deletes are the ones there now, pinned
    by uid), never the one shown before step 1; an old plan is refused, and even run past the
    flow its pod delete is not run blind once the pod was restarted meanwhile."""
    from lab_helpers import running_lab

    from clusterfix_tui.core.flow import StalePlanError

    def uids(api, ns):
        return {p["metadata"]["name"]: p["metadata"].get("uid") for p in api.list_pods(ns)}

    with running_lab(tmp_path_factory, nodes=3, faults="all") as flab:
        rt, journal, flow = _flow(flab.dir, tmp_path / "j.jsonl")
        try:
            flow.connect()
            flow.leave_out_unconnected()
            flow.diagnose()
            p1 = flow.plan_for_approval("iptables")
            p3_old = flow.plan_for_approval("pods")
            old = next(a for a in p3_old.actions if (a.api or {}).get("verb") == "delete_pod")
            assert flow.apply(p1, flow.approvable_ids(p1)).status in ("changed", "partial")
            with pytest.raises(StalePlanError):
                flow.apply(p3_old, flow.approvable_ids(p3_old))
            p3 = flow.plan_for_approval("pods")
            for a in p3.actions:
                if (a.api or {}).get("verb") == "delete_pod":
                    now = uids(rt.api, a.api["namespace"])
                    assert a.precondition.api["uid"] == now.get(a.api["name"]), a
            # the 404: the pod the old plan names is restarted by something else; the
            # old plan, run past the flow, reports it already done instead of failing
            rt.api.delete_pod(old.api["namespace"], old.api["name"])
            bypass = flow.session.apply(p3_old, [old.id])
            assert {o.action_id: o.status for o in bypass.actions}[old.id] == "already-done"
            p3 = flow.plan_for_approval("pods")
            out3 = flow.apply(p3, flow.approvable_ids(p3)) if p3.actions else None
        finally:
            rt.close()
            journal.close()
    assert out3 is None or out3.status not in ("failed", "partial"), out3
    events = Journal.read(tmp_path / "j.jsonl")
    refreshed = [e for e in events if e["type"] == "diagnosis" and e["phase"] == "refresh"]
    assert len(refreshed) == 1  # re-diagnosed once after step 1, before step 3 was re-planned
    assert not any(e["type"] == "command_end" and "(404)" in (e.get("stderr") or "")
                   for e in events)
