"""Identity on any re-apply (#14 item 5): before a step's actions (or a rollback's) run in a
session, the cluster and the nodes they touch must still be the ones identified at connect; a
node that rebooted since (new boot_id) makes the apply refuse, say what differs and run nothing.
The real RepairSession on the recorded lab (tests/ui_fakes.py), the nodes answering the identity
script as a node does."""

from __future__ import annotations

import uuid
from pathlib import Path

from ui_fakes import NODES, FakeSession


def _session(tmp_path: Path) -> FakeSession:
    s = FakeSession(tmp_path / "j.jsonl", host_key_nodes=())
    s.cluster.boot_ids = {n: str(uuid.uuid4()) for n in NODES}
    assert all(c.state == "connected" for c in s.connect())
    s.diagnose()
    return s


def test_an_apply_on_the_same_nodes_runs(tmp_path: Path) -> None:
    s = _session(tmp_path)
    plan = s.build_plan("iptables")
    assert {a.target for a in plan.actions} == {"node-3"}
    out = s.apply(plan, [a.id for a in plan.actions])
    assert out.status in ("changed", "unchanged"), out
    assert s.fake_runner.ran


def test_an_apply_after_the_node_rebooted_is_refused(tmp_path: Path) -> None:
    s = _session(tmp_path)
    plan = s.build_plan("iptables")
    then = s.cluster.boot_ids["node-3"]
    s.cluster.boot_ids["node-3"] = str(uuid.uuid4())  # node-3 rebooted since connect
    out = s.apply(plan, [a.id for a in plan.actions])
    assert out.status == "failed" and "refused" in out.message
    assert f"node node-3 boot_id (rebooted): journal {then}" in out.message
    assert not s.fake_runner.ran, "nothing may run"
    errors = [e for e in s.events() if e["type"] == "error"]
    assert errors and errors[-1]["identity_differences"]
    assert [e["outcome"]["status"] for e in s.events() if e["type"] == "step_end"] == ["failed"]


def test_a_rollback_after_the_node_rebooted_is_refused(tmp_path: Path) -> None:
    s = _session(tmp_path)
    plan = s.build_plan("iptables")
    s.apply(plan, [a.id for a in plan.actions])
    ran = list(s.fake_runner.ran)
    s.cluster.boot_ids["node-3"] = str(uuid.uuid4())
    back = s.plan_rollback("iptables")
    assert back.actions
    out = s.apply_rollback(back)
    assert out.status == "failed" and "node-3 boot_id" in out.message
    assert s.fake_runner.ran == ran, "the rollback ran nothing"


def _api_down(s: FakeSession) -> None:
    from clusterfix_tui.core.ports import APIUnreachable

    def down(*_a, **_k):
        raise APIUnreachable("the API server did not answer (read timed out)")

    s.api.get_namespace = down  # type: ignore[method-assign]


def test_an_api_that_does_not_answer_is_not_another_cluster(tmp_path: Path) -> None:
    """A frozen API server cannot say which cluster it is: that is not a different cluster (the
    step is not refused with "start a new session"); the nodes are still compared, and the
    journal says the cluster was not confirmed."""
    s = _session(tmp_path)
    plan = s.build_plan("iptables")
    _api_down(s)
    out = s.apply(plan, [a.id for a in plan.actions])
    assert "refused" not in out.message and out.status in ("changed", "unchanged"), out
    assert s.fake_runner.ran
    notes = [e for e in s.events() if e["type"] == "note"]
    assert any("cluster identity not confirmed" in e.get("text", "") and "did not answer"
               in e.get("text", "") for e in notes), notes


def test_a_rebooted_node_is_refused_even_while_the_api_does_not_answer(tmp_path: Path) -> None:
    s = _session(tmp_path)
    plan = s.build_plan("iptables")
    _api_down(s)
    s.cluster.boot_ids["node-3"] = str(uuid.uuid4())
    out = s.apply(plan, [a.id for a in plan.actions])
    assert out.status == "failed" and "node-3 boot_id (rebooted)" in out.message
    assert "kube-system" not in out.message
    assert not s.fake_runner.ran
