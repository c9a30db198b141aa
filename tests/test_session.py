"""RepairSession with fakes: connection states, journaled plan/decision/commands, rollback, verdict."""

from __future__ import annotations

import pytest
from fix_helpers import FakeDiagnosis, finding, snapshot

from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CommandResult
from clusterfix_tui.core.session import RepairSession
from clusterfix_tui.transports.base import HostKeyUnknown, NodeUnreachable


class API:
    def describe(self):
        return {"context": "lab", "server": "https://10.0.0.1:6443", "user": "admin"}

    def version(self):
        return {"gitVersion": "v1.31.0"}

    def list_nodes(self):
        return [{"metadata": {"name": n}, "status": {"addresses": [
            {"type": "InternalIP", "address": f"10.0.0.{i}"}]}}
            for i, n in enumerate(("node-1", "node-2", "node-3"), 1)]


class Shell:
    def __init__(self, node):
        self.node = node

    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        return CommandResult(0, "")

    def close(self):
        pass


class Shells:
    def __init__(self):
        self.accepted = []

    def __call__(self, node, address=None):
        if node == "node-2" and not self.accepted:
            raise HostKeyUnknown(node, "ssh-ed25519", "SHA256:abc", "/k", "node-2 ssh-ed25519 AAA")
        if node == "node-3":
            raise NodeUnreachable("connection refused")
        return Shell(node)

    def accept_host_key(self, exc):
        self.accepted.append(exc.host)


class Runner:
    dry_run = False

    def __init__(self):
        self.ran = []

    def run_action(self, action, *, on_line=None):
        self.ran.append(action.id)
        return CommandResult(0, "ok\n")


def test_connect_states_and_accept_host_key(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    shells = Shells()
    s = RepairSession(API(), shells, Runner(), j)
    conns = {c.node: c for c in s.connect()}
    assert conns["node-1"].state == "connected"
    assert conns["node-2"].state == "host-key-unknown"
    assert "SHA256:abc" in conns["node-2"].host_key
    assert conns["node-3"].state == "unreachable"
    assert s.accept_host_key("node-2").state == "connected"
    s.leave_out("node-3", "unreachable")
    types = [e["type"] for e in Journal.read(tmp_path / "j.jsonl")]
    assert types[0] == "session_start" and "node_left_out" in types
    start = Journal.read(tmp_path / "j.jsonl")[0]
    assert start["cluster"]["node_count"] == 3 and start["cluster"]["version"] == "v1.31.0"


def test_plan_apply_rollback_finish_are_journaled_in_order(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    runner = Runner()
    s = RepairSession(API(), Shells(), runner, j)
    diag = FakeDiagnosis([finding("FORWARD_DROP", "node-1", "iptables", backend="legacy",
                                  table="filter", chain="FORWARD", policy="DROP"),
                          finding("FORWARD_DROP", "node-3", "iptables", backend="legacy")],
                         snapshot=snapshot())
    s.diagnosis = s.before = diag
    s.journal_diagnosis(diag, "before")  # the verdict is replayed from the journal
    s.leave_out("node-3", "unreachable")
    plan = s.plan("iptables")
    assert {a.target for a in plan.actions} == {"node-1"}  # left-out node not planned
    out = s.apply(plan, [a.id for a in plan.actions])
    assert out.status == "changed"
    rb = s.rollback("iptables")
    assert rb.status == "changed"
    fwd = [a.id for a in plan.actions if a.rollback is not None]
    assert runner.ran[-len(fwd):] == [a.rollback.id for a in reversed(plan.actions)
                                      if a.rollback is not None]
    skip = s.skip(s.plan("cni_bridge"), "nothing to do")
    assert skip.status == "skipped"
    verdict = s.finish()
    # node-3 was left out: whatever else happened, the session cannot speak for the cluster
    assert verdict == "incomplete"
    evs = Journal.read(path)
    types = [e["type"] for e in evs]
    i = types.index("plan")
    # notes, the node's state before its first change and each action's precondition check
    # sit between; the order is plan, decision, run
    ordered = [t for t in types[i:] if t not in ("note", "precheck", "node_state")]
    assert "node_state" in types[i:types.index("command_start")]
    assert ordered[:3] == ["plan", "decision", "command_start"]
    checks = [k for k, e in enumerate(evs) if e["type"] == "precheck"]
    assert checks
    for k in checks:  # each check runs right before its own action
        nxt = next(e for e in evs[k + 1:] if e["type"] == "command_start")
        assert nxt["action_id"] == evs[k]["action_id"] and evs[k]["state"] == "holds"
    assert types[-1] == "session_end"
    dec = next(e for e in evs if e["type"] == "decision")
    assert dec["decision"] == "approved" and dec["by"] == "user"
    starts = [e for e in evs if e["type"] == "command_start"]
    assert [e["rollback"] for e in starts] == [False] * len(plan.actions) + [True] * len(fwd)


def test_workaround_is_reverted_once_validation_passes(tmp_path, monkeypatch):
    from clusterfix_tui.core import validate as V
    from clusterfix_tui.core.fixes.engine import FixAction
    from clusterfix_tui.core.model import CLUSTER, Action, CheckResult, Plan

    j = Journal(tmp_path / "w.jsonl")
    runner = Runner()
    s = RepairSession(API(), Shells(), runner, j, prober=object())
    s.diagnosis = s.before = FakeDiagnosis([], snapshot=snapshot())
    undo = Action(id="pods:cluster:opt-in-probe:rollback", target=CLUSTER, kind="api",
                  command="kubectl patch (undo)", api={"verb": "patch_deployment"})
    wa = FixAction(id="pods:cluster:opt-in-probe", target=CLUSTER, kind="api",
                   command="kubectl patch", api={"verb": "patch_deployment"}, rollback=undo,
                   opt_in=True, revert_after_validation=True)
    plan = Plan(step="pods", title="p", actions=(wa,))
    s.apply(plan, [wa.id])
    results = [CheckResult("node-ready", "node-1", False, "NotReady", "cni_bridge")]
    monkeypatch.setattr(V, "validate", lambda *a, **k: list(results))
    s.validate("after")
    assert runner.ran == [wa.id]  # still failing: the workaround stays
    results[:] = [CheckResult("node-ready", "node-1", True, "Ready")]
    s.validate("after")
    assert runner.ran == [wa.id, undo.id]
    s.validate("after")
    assert runner.ran == [wa.id, undo.id]  # reverted once only
    assert s.finish() == "fixed"


def test_ask_reads_y_s_n_and_eof_means_stop():
    import io

    from clusterfix_tui.commands.fix import ask

    out = io.StringIO()
    assert ask("? ", inp=io.StringIO("maybe\ny\n"), out=out) == "y"
    assert "answer y" in out.getvalue()
    assert ask("? ", inp=io.StringIO("skip\n"), out=out) == "s"
    assert ask("? ", inp=io.StringIO(""), out=out) == "n"


# ---- finish(): the verdict as a table over outcomes -------------------------------------------

def _two_node_plan():
    from clusterfix_tui.core.model import Action, Plan

    acts = tuple(Action(id=f"iptables:{n}:1", target=n, kind="shell", command=f"fix {n}",
                        mutating=True,
                        rollback=Action(id=f"iptables:{n}:1:rollback", target=n, kind="shell",
                                        command=f"undo {n}"))
                 for n in ("node-1", "node-2"))
    return Plan(step="iptables", title="t", actions=acts)


class _ExitRunner:
    """Exit code per target: {"node-2": 1} fails node-2's actions."""
    dry_run = False

    def __init__(self, fail=()):
        self.fail = set(fail)

    def run_action(self, action, *, on_line=None):
        return CommandResult(1 if action.target in self.fail else 0, "")


CHECK_OK = ("node-ready", "node-1", True)
CHECK_BAD = ("nodeport", "node-2", False)

# (case, diagnosed, findings before, what the step did, validation results, aborted) -> verdict
# the step: None = no step ran; "changed" / "partial" / "failed" from the runner; "skipped"
VERDICTS = [
    ("healthy: nothing found, all checks pass", True, 0, None, [CHECK_OK], False, "healthy"),
    ("healthy: nothing found, not validated", True, 0, None, None, False, "healthy"),
    ("fixed: changed and all checks pass", True, 2, "changed", [CHECK_OK], False, "fixed"),
    ("partially-fixed: a partial step, then all checks pass", True, 2, "partial", [CHECK_OK],
     False, "partially-fixed"),
    ("partially-fixed: changed, a check still fails", True, 2, "changed",
     [CHECK_OK, CHECK_BAD], False, "partially-fixed"),
    ("partially-fixed: a partial step, a check fails", True, 2, "partial", [CHECK_BAD], False,
     "partially-fixed"),
    ("still-broken: the step failed, a check fails", True, 2, "failed", [CHECK_BAD], False,
     "still-broken"),
    ("still-broken: the step skipped, a check fails", True, 2, "skipped", [CHECK_BAD], False,
     "still-broken"),
    ("still-broken: found problems, never validated", True, 2, "changed", None, False,
     "still-broken"),
    ("still-broken: nothing run, a check fails", True, 0, None, [CHECK_BAD], False,
     "still-broken"),
    ("aborted: the user stopped after a change", True, 2, "changed", [CHECK_OK], True, "aborted"),
    ("aborted: stopped before any diagnosis", False, 0, None, None, False, "aborted"),
]



@pytest.mark.parametrize("case,diagnosed,n_findings,step,checks,aborted,want", VERDICTS,
                         ids=[v[0].split(":")[0] + "-" + str(i) for i, v in enumerate(VERDICTS)])

def test_finish_verdict_table(tmp_path, monkeypatch, case, diagnosed, n_findings, step, checks,
                              aborted, want):
    from clusterfix_tui.core import validate as V
    from clusterfix_tui.core.model import CheckResult

    path = tmp_path / "j.jsonl"
    runner = _ExitRunner({"partial": ["node-2"], "failed": ["node-1", "node-2"]}.get(step, ()))
    s = RepairSession(API(), Shells(), runner, Journal(path))
    if diagnosed:
        found = [finding("FORWARD_DROP", f"node-{i + 1}", "iptables", backend="legacy")
                 for i in range(n_findings)]
        monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                            lambda *a, **k: FakeDiagnosis(found, snapshot=snapshot()))
        s.diagnose("before")
    if step == "skipped":
        assert s.skip(_two_node_plan(), "no").status == "skipped"
    elif step is not None:
        plan = _two_node_plan()
        out = s.apply(plan, [a.id for a in plan.actions])
        assert out.status == step, (case, out)
    if checks is not None:
        results = [CheckResult(n, t, ok, "") for n, t, ok in checks]
        monkeypatch.setattr(V, "validate", lambda *a, **k: list(results))
        s.validate("after")
    got = s.finish(aborted=aborted)
    assert got == want, case
    assert s.finish() == want  # decided once
    ends = [e for e in Journal.read(path) if e["type"] == "session_end"]
    assert [e["verdict"] for e in ends] == [want], ends


def test_finish_verdict_is_incomplete_when_a_node_was_left_out(tmp_path, monkeypatch):
    """A session that did not see the whole cluster never calls it fixed (or healthy)."""
    from clusterfix_tui.core import validate as V
    from clusterfix_tui.core.model import CheckResult

    s = RepairSession(API(), Shells(), _ExitRunner(), Journal(tmp_path / "j.jsonl"))
    s.leave_out("node-3", "unreachable")
    found = [finding("FORWARD_DROP", "node-1", "iptables", backend="legacy")]
    monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                        lambda *a, **k: FakeDiagnosis(found, snapshot=snapshot()))
    s.diagnose("before")
    plan = _two_node_plan()
    assert s.apply(plan, [a.id for a in plan.actions]).status == "changed"
    monkeypatch.setattr(V, "validate", lambda *a, **k: [CheckResult("node-ready", "node-1", True)])
    s.validate("after")
    assert s.finish() == "incomplete"


class CountingShells:
    """Every node reachable; counts the facts script runs (it comes on stdin) per node."""

    def __init__(self):
        self.facts_reads: list[str] = []

    def __call__(self, node, address=None):
        outer = self

        class _Shell(Shell):
            def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
                if stdin is not None:
                    outer.facts_reads.append(node)
                return CommandResult(0, "")

        return _Shell(node)


def test_before_state_comes_from_fresh_diagnosis_facts_and_is_read_again_once_something_ran(
        tmp_path, monkeypatch):
    from clusterfix_tui.core import diagnose as D
    from clusterfix_tui.core import nodestate
    from clusterfix_tui.core.facts import NodeFacts, Section

    def facts(node):
        return NodeFacts(node=node, complete=True, sections={
            "sysctl": Section("sysctl", None, "net.ipv4.ip_forward = 1\n", "", 0)})

    diag = FakeDiagnosis([finding("FORWARD_DROP", n, "iptables", backend="legacy",
                                  table="filter", chain="FORWARD", policy="DROP")
                          for n in ("node-1", "node-2")],
                         facts={n: facts(n) for n in ("node-1", "node-2")}, snapshot=snapshot())
    monkeypatch.setattr(D, "diagnose", lambda *a, **k: diag)
    shells = CountingShells()
    j = Journal(tmp_path / "j.jsonl")
    s = RepairSession(API(), shells, Runner(), j)
    s.connect()
    s.diagnose()
    plan = s.plan("iptables")
    by_node = {n: [a.id for a in plan.actions if a.target == n] for n in ("node-1", "node-2")}
    assert by_node["node-1"] and by_node["node-2"]

    def states():
        return [e for e in j.events if e["type"] == "node_state"]

    # right after the diagnosis, nothing run since: its facts are the state, not read again
    s.apply(plan, by_node["node-1"])
    (first,) = states()
    assert first["node"] == "node-1" and first["phase"] == "before"
    assert first["read"] == "diagnosis" and shells.facts_reads == []
    assert first["sections"] == nodestate.capture(diag.facts["node-1"])
    # something ran since: node-2's state is read again, on node-2 only
    s.apply(plan, by_node["node-2"])
    second = states()[1]
    assert second["node"] == "node-2" and second["read"] == "now"
    assert shells.facts_reads == ["node-2"]
    # a new diagnosis is fresh again; the "after" state is always read
    s.refresh()
    assert s.fresh_facts() == diag.facts
    s.finish()
    after = [e for e in states() if e["phase"] == "after"]
    assert {e["node"] for e in after} == {"node-1", "node-2"}
    assert all(e["read"] == "now" for e in after)
    assert sorted(shells.facts_reads) == ["node-1", "node-2", "node-2"]
