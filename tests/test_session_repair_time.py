"""Time to repair (#17) without weakening the rules: what may skip a re-read, what may overlap.

- the validation only reads: the diagnosis's facts stay the nodes' state after it, so the state
  before the first change is taken from them (not read again);
- an apply that started no command (nothing approved, every action already done or skipped by
  its precondition) changed nothing: the facts stay current; one that ran a command does not;
- the "before" diagnosis and validation run alongside each other and are journaled in the same
  order as one after the other; the validation is not journaled when the diagnosis failed or
  the run was stopped;
- the identity check before an apply reads the nodes at once, not one after another (a barrier
  every node's read must reach: one after another, it breaks).
No timing is asserted: overlap is shown by events that can only happen when both run at once.
"""

from __future__ import annotations

import threading

import pytest
from fix_helpers import FakeDiagnosis, finding, snapshot
from test_session import API, CountingShells, Runner

from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.flow import RepairFlow
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CheckResult
from clusterfix_tui.core.session import RepairSession

NODES = ("node-1", "node-2")


def _facts(node: str) -> NodeFacts:
    return NodeFacts(node=node, complete=True, sections={
        "sysctl": Section("sysctl", None, "net.ipv4.ip_forward = 1\n", "", 0)})


def _diag(error: str | None = None) -> FakeDiagnosis:
    d = FakeDiagnosis([finding("FORWARD_DROP", n, "iptables", backend="legacy", table="filter",
                               chain="FORWARD", policy="DROP") for n in NODES],
                      facts={n: _facts(n) for n in NODES}, snapshot=snapshot())
    if error:
        d.error = error  # type: ignore[attr-defined]
    return d


def _session(tmp_path, monkeypatch, diag=None):
    from clusterfix_tui.core import diagnose as D

    diag = diag or _diag()
    monkeypatch.setattr(D, "diagnose", lambda *a, **k: diag)
    shells = CountingShells()
    j = Journal(tmp_path / "j.jsonl")
    s = RepairSession(API(), shells, Runner(), j)
    s.connect()
    return s, shells, j, diag


def _by_node(plan):
    return {n: [a.id for a in plan.actions if a.target == n] for n in NODES}


def _states(j):
    return [e for e in j.events if e["type"] == "node_state"]


def test_validation_does_not_make_the_diagnosis_facts_stale(tmp_path, monkeypatch):
    from clusterfix_tui.core import validate as V

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    monkeypatch.setattr(V, "validate", lambda *a, **k: [CheckResult("node-ready", "node-1",
                                                                    False, "not Ready")])
    s.diagnose()
    s.validate("before")
    assert s.fresh_facts() == diag.facts
    plan = s.plan("iptables")
    s.apply(plan, _by_node(plan)["node-1"])
    (first,) = _states(j)
    assert first["node"] == "node-1" and first["read"] == "diagnosis"
    assert shells.facts_reads == []
    # a command ran since: node-2's state is read again (the rule for changes is unchanged)
    s.apply(plan, _by_node(plan)["node-2"])
    assert _states(j)[1]["read"] == "now" and shells.facts_reads == ["node-2"]


def test_an_apply_that_started_no_command_keeps_the_facts_current(tmp_path, monkeypatch):
    s, shells, j, diag = _session(tmp_path, monkeypatch)
    s.diagnose()
    plan = s.plan("iptables")
    out = s.apply(plan, [])  # nothing approved: every action "skipped", nothing started
    assert {o.status for o in out.actions} == {"skipped"}
    assert s.fresh_facts() == diag.facts
    s.apply(plan, _by_node(plan)["node-1"])
    assert [(e["node"], e["read"]) for e in _states(j)] == [("node-1", "diagnosis")]
    assert shells.facts_reads == []


def test_an_apply_whose_actions_were_already_done_keeps_the_facts_current(tmp_path,
                                                                          monkeypatch):
    from clusterfix_tui.core.fixes.preconditions import PrecheckResult

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    s.diagnose()
    plan = s.plan("iptables")
    checked = [a for a in plan.actions if a.precondition is not None]
    assert checked
    real = s.precheck
    s.precheck = lambda a: PrecheckResult("already-done", "the goal holds")
    out = s.apply(plan, [a.id for a in checked])
    assert {o.status for o in out.actions if o.action_id in {a.id for a in checked}} == {
        "already-done"}
    assert not s.runner.ran
    assert s.fresh_facts() == diag.facts
    s.precheck = real
    s.apply(plan, [a.id for a in plan.actions])
    assert s.runner.ran and s.fresh_facts() == {}


def _blocking_validation(monkeypatch, started: threading.Event, release: threading.Event,
                         raises: Exception | None = None):
    from clusterfix_tui.core import validate as V

    def validate(*a, **k):
        started.set()
        release.wait(30)
        if raises is not None:
            raise raises
        return [CheckResult("node-ready", "node-1", False, "not Ready")]

    monkeypatch.setattr(V, "validate", validate)


def _overlapping_diagnose(monkeypatch, diag, started, release, seen):
    """A diagnosis that returns only once the validation has started (it lets the validation
    finish then): run one after the other, the validation never starts while it waits."""
    from clusterfix_tui.core import diagnose as D

    def diagnose(*a, **k):
        seen.append(started.wait(10))
        release.set()
        return diag

    monkeypatch.setattr(D, "diagnose", diagnose)


def test_diagnosis_and_validation_before_run_alongside_and_journal_in_order(tmp_path,
                                                                           monkeypatch):
    s, shells, j, diag = _session(tmp_path, monkeypatch)
    started, release, seen = threading.Event(), threading.Event(), []
    _blocking_validation(monkeypatch, started, release)
    _overlapping_diagnose(monkeypatch, diag, started, release, seen)
    flow = RepairFlow(s)
    d, before = flow.diagnose_and_validate_before()
    assert seen == [True], "the validation did not run while the diagnosis did"
    assert d is diag and [r.name for r in before] == ["node-ready"]
    types = [e["type"] for e in j.events if e["type"] in ("diagnosis", "validation")]
    assert types == ["diagnosis", "validation"]
    assert [e["phase"] for e in j.events if e["type"] == "validation"] == ["before"]
    assert s.fresh_facts() == diag.facts  # the validation made nothing stale


@pytest.mark.parametrize("why", ["diagnosis error", "stopped"])
def test_validation_before_not_journaled_when_the_diagnosis_failed_or_the_run_stopped(
        tmp_path, monkeypatch, why):
    diag = _diag("the Kubernetes API did not list nodes" if why == "diagnosis error" else None)
    s, shells, j, _ = _session(tmp_path, monkeypatch, diag)
    started, release, seen = threading.Event(), threading.Event(), []
    _blocking_validation(monkeypatch, started, release)
    _overlapping_diagnose(monkeypatch, diag, started, release, seen)
    cancel = threading.Event()
    if why == "stopped":
        cancel.set()
    d, before = RepairFlow(s).diagnose_and_validate_before(cancel=cancel)
    assert d is diag and before is None
    assert not [e for e in j.events if e["type"] == "validation"]


def test_a_validation_that_raises_leaves_the_diagnosis_standing(tmp_path, monkeypatch):
    s, shells, j, diag = _session(tmp_path, monkeypatch)
    started, release, seen = threading.Event(), threading.Event(), []
    _blocking_validation(monkeypatch, started, release, raises=RuntimeError("probe bug"))
    _overlapping_diagnose(monkeypatch, diag, started, release, seen)
    d, before = RepairFlow(s).diagnose_and_validate_before()
    assert d is diag and before is None
    errors = [e for e in j.events if e["type"] == "error"]
    assert errors and "validation before failed: probe bug" in errors[-1]["message"]
    assert [e["phase"] for e in j.events if e["type"] == "diagnosis"] == ["before"]


def test_a_diagnosis_that_raises_waits_for_the_validation_and_raises(tmp_path, monkeypatch):
    from clusterfix_tui.core import diagnose as D

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    started, release = threading.Event(), threading.Event()
    _blocking_validation(monkeypatch, started, release)
    finished = []

    def diagnose(*a, **k):
        started.wait(10)
        release.set()
        raise RuntimeError("facts bug")

    monkeypatch.setattr(D, "diagnose", diagnose)
    real = s.validation_results

    def tracked(*a, **k):
        try:
            return real(*a, **k)
        finally:
            finished.append(True)

    monkeypatch.setattr(s, "validation_results", tracked)
    with pytest.raises(RuntimeError, match="facts bug"):
        RepairFlow(s).diagnose_and_validate_before()
    assert finished == [True], "the validation thread still ran after the call"
    assert not [e for e in j.events if e["type"] in ("diagnosis", "validation")]


def test_identity_check_reads_the_nodes_at_once(tmp_path, monkeypatch):
    """Every target node's identity read must be under way at the same time: a barrier of
    len(nodes) parties that each read waits on (one after another, the first read times out on
    it and the barrier breaks)."""
    from ui_fakes import NODES as ALL
    from ui_fakes import FakeSession

    s = FakeSession(tmp_path / "j.jsonl", host_key_nodes=())
    assert all(c.state == "connected" for c in s.connect())
    nodes = set(ALL)
    barrier = threading.Barrier(len(nodes), timeout=10)
    import clusterfix_tui.core.identity as ident

    real = ident.node_identity
    broken: list[str] = []

    def node_identity(shells, shell, node, address):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            broken.append(node)
        return real(shells, shell, node, address)

    monkeypatch.setattr(ident, "node_identity", node_identity)  # the core's, not a transport's
    assert s.identity_differences(nodes) == []
    assert broken == []


@pytest.mark.parametrize("run_between", [False, True])
def test_state_after_is_read_alongside_the_after_validation_and_again_if_anything_ran(
        tmp_path, monkeypatch, run_between):
    from clusterfix_tui.core import validate as V

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    reads_during: list[list[str]] = []

    def validate(*a, **k):  # the state read runs alongside: wait (bounded) until it has
        for _ in range(200):
            if len(shells.facts_reads) >= 2:
                break
            threading.Event().wait(0.05)
        reads_during.append(sorted(shells.facts_reads))
        return [CheckResult("node-ready", "node-1", True, "Ready")]

    monkeypatch.setattr(V, "validate", validate)
    s.diagnose()
    plan = s.plan("iptables")
    s.apply(plan, [a.id for a in plan.actions])
    assert {e["node"] for e in _states(j)} == set(NODES)
    shells.facts_reads.clear()
    s.validate("after")
    assert reads_during == [sorted(NODES)], "the state was not read alongside the validation"
    if run_between:  # a rollback after the validation: the state after is read again
        s.rollback("iptables")
    s.finish()
    after = [e for e in _states(j) if e["phase"] == "after"]
    assert {e["node"] for e in after} == set(NODES) and all(e["read"] == "now" for e in after)
    assert sorted(shells.facts_reads) == sorted(NODES * (2 if run_between else 1))


class _Validations:
    """core.validate.validate replaced: counts calls, and shows overlap with a diagnosis: a call
    waits (bounded, 1 s) for a diagnosis to be in progress and then tells it so; a diagnosis
    (below) waits (bounded) to be told. `results`: what each call answers, in turn (the last
    one from then on)."""

    def __init__(self, results=None):
        self.calls = 0
        self.diagnosing = threading.Event()
        self.seen = threading.Event()
        self.results = list(results or [[CheckResult("node-ready", "node-1", True, "Ready")]])

    def __call__(self, *a, **k):
        self.calls += 1
        if self.diagnosing.wait(1.0):
            self.seen.set()
        return self.results.pop(0) if len(self.results) > 1 else self.results[0]


def _flow_after_one_step(tmp_path, monkeypatch, refresh=None, results=None):
    """A flow after one applied step. `refresh`: what each re-diagnosis returns, in turn (the
    last one from then on; default: clean, nothing left). Records, per re-diagnosis, whether a
    validation ran while it did (overlapped) and the diagnoses read (reads)."""
    from clusterfix_tui.core import diagnose as D
    from clusterfix_tui.core import validate as V

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    vals = _Validations(results)
    monkeypatch.setattr(V, "validate", vals)
    overlapped: list[bool] = []
    reads: list[object] = []
    queue = list(refresh or [FakeDiagnosis([], facts={n: _facts(n) for n in NODES},
                                           snapshot=snapshot())])

    def diagnose(*a, **k):
        if s.before is None:
            return diag
        # a re-diagnosis: does a validation run meanwhile?
        vals.seen.clear()
        vals.diagnosing.set()
        try:
            overlapped.append(vals.seen.wait(10))
        finally:
            vals.diagnosing.clear()
        d = queue.pop(0) if len(queue) > 1 else queue[0]
        reads.append(d)
        return d

    monkeypatch.setattr(D, "diagnose", diagnose)
    flow = RepairFlow(s, steps=["iptables"], sleep=lambda _s: None)
    flow.diagnose()
    plan = flow.plan_for_approval("iptables")
    flow.apply(plan, flow.approvable_ids(plan))
    flow.overlapped, flow.reads = overlapped, reads  # type: ignore[attr-defined]
    return flow, s, j, vals, overlapped


def _refreshes(j):
    return [e for e in j.events if e["type"] == "diagnosis" and e.get("phase") == "refresh"]


def test_after_validation_runs_alongside_the_last_rediagnosis_and_is_journaled_once(
        tmp_path, monkeypatch):
    """The settle's first validation runs alongside the pass's last re-diagnosis: green, and
    that diagnosis finds nothing left, so it is the "after" validation: one validation in all
    (the settle's, then another alongside the re-diagnosis, before)."""
    flow, s, j, vals, overlapped = _flow_after_one_step(tmp_path, monkeypatch)
    assert flow.next_pass(validate_alongside=True) == []
    assert overlapped == [True], "the validation did not run alongside the re-diagnosis"
    assert vals.calls == 1, "the settle's validation and the after one ran apart"
    results = flow.validate()
    assert vals.calls == 1, "validate() ran the validation again"
    assert [r.name for r in results] == ["node-ready"]
    kinds = [(e["type"], e.get("phase")) for e in j.events
             if e["type"] in ("diagnosis", "validation")]
    assert kinds[-3:] == [("diagnosis", "refresh"), ("validation", "after"),
                          ("diagnosis", "after")]
    assert len(_refreshes(j)) == 1
    s.finish()
    after = [e for e in _states(j) if e["phase"] == "after"]
    assert after and all(e["read"] == "now" for e in after)


def test_a_rediagnosis_read_while_the_cluster_was_not_settled_is_dropped(tmp_path, monkeypatch):
    """The first validation fails (pods still restarting): the diagnosis read alongside it is
    not journaled nor used; the settle goes on, then the cluster is re-diagnosed after it
    (alongside the after validation), as before."""
    bad = [CheckResult("node-ready", "node-1", False, "not Ready", "cni_bridge")]
    good = [CheckResult("node-ready", "node-1", True, "Ready")]
    transient = FakeDiagnosis([finding("FORWARD_DROP", "node-1", "iptables", backend="legacy",
                                       table="filter", chain="FORWARD", policy="DROP")],
                              facts={n: _facts(n) for n in NODES}, snapshot=snapshot())
    clean = FakeDiagnosis([], facts={n: _facts(n) for n in NODES}, snapshot=snapshot())
    flow, s, j, vals, overlapped = _flow_after_one_step(
        tmp_path, monkeypatch, refresh=[transient, clean], results=[bad, good, good])
    waits = []
    assert flow.next_pass(validate_alongside=True, on_wait=lambda f, left: waits.append(
        [r.name for r in f])) == []
    assert waits == [["node-ready"]]  # the first (failing) results were reported as a wait
    assert flow.reads == [transient, clean]  # type: ignore[attr-defined]
    refreshes = _refreshes(j)
    assert len(refreshes) == 1 and refreshes[0]["findings"] == []  # the dropped read left no trace
    assert s.diagnosis is clean
    assert vals.calls == 3  # the first, the settle's retry, the one alongside the re-diagnosis
    assert all(r.passed for r in flow.validate()) and vals.calls == 3


def test_a_green_validation_with_findings_left_rediagnoses_after_it(tmp_path, monkeypatch):
    """Green, but the diagnosis read alongside still has findings with a step: it may have read
    the cluster before it settled, so it is dropped and the cluster re-diagnosed after the
    validation; that one decides."""
    left = FakeDiagnosis([finding("FORWARD_DROP", "node-1", "iptables", backend="legacy",
                                  table="filter", chain="FORWARD", policy="DROP")],
                         facts={n: _facts(n) for n in NODES}, snapshot=snapshot())
    flow, s, j, vals, overlapped = _flow_after_one_step(tmp_path, monkeypatch,
                                                        refresh=[left])
    flow.next_pass(validate_alongside=True, start=False)
    assert flow.reads == [left, left]  # type: ignore[attr-defined]
    assert len(_refreshes(j)) == 1  # only the read made after the green validation
    assert overlapped == [True, True]  # the second one alongside the after validation


def test_after_validation_alongside_is_dropped_when_something_ran_since(tmp_path, monkeypatch):
    left = _diag()  # the same findings again: the actions ran already, no other pass
    flow, s, j, vals, overlapped = _flow_after_one_step(tmp_path, monkeypatch, refresh=[left])
    assert flow.next_pass(validate_alongside=True) == []
    assert vals.calls == 2  # the first (its diagnosis not clean: dropped), the one alongside
    plan = flow.plan_for_approval("iptables")  # a change after it (the wizard's user, say)
    assert plan.actions
    flow.apply(plan, flow.approvable_ids(plan))
    flow.validate()
    assert vals.calls >= 3, "a validation from before the change was journaled as after it"


def test_without_validate_alongside_the_after_validation_runs_in_validate(tmp_path,
                                                                         monkeypatch):
    flow, s, j, vals, overlapped = _flow_after_one_step(tmp_path, monkeypatch)
    vals_before = vals.calls
    monkeypatch.setattr("clusterfix_tui.core.session.RepairSession.validation_and_state",
                        lambda *a, **k: pytest.fail("ran alongside without being asked"))
    overlapped.clear()
    flow._after_alongside = None
    # the wizard's way: next_pass without validate_alongside; its re-diagnosis waits (bounded)
    # for a validation that does not come
    assert flow.next_pass() == []
    assert overlapped == [False] and vals.calls == vals_before + 1  # the settle's only


def test_settle_rechecks_soon_at_first_then_less_often_within_the_same_deadline(tmp_path,
                                                                              monkeypatch):
    from clusterfix_tui.core import flow as F

    s, shells, j, diag = _session(tmp_path, monkeypatch)
    answers = [[CheckResult("node-ready", "node-1", False, "not Ready", None)]] * 6 + [
        [CheckResult("node-ready", "node-1", True, "Ready", None)]]
    calls = iter(answers)
    monkeypatch.setattr(s, "validate_quiet", lambda: next(calls))
    now = [0.0]
    sleeps: list[float] = []

    def sleep(t):
        sleeps.append(t)
        now[0] += t

    flow = RepairFlow(s, steps=["iptables"], clock=lambda: now[0], sleep=sleep,
                      settle_timeout=60)
    flow._mutations = 1  # something ran
    results = flow.settle()
    assert results and all(r.passed for r in results)
    assert len(sleeps) == 6
    assert sleeps[0] < F.SETTLE_POLL and sleeps == sorted(sleeps)
    assert max(sleeps) <= F.SETTLE_POLL and sleeps[-1] == F.SETTLE_POLL
    # the same deadline: it still gives up when the time is out
    flow2 = RepairFlow(s, steps=["iptables"], clock=lambda: now[0], sleep=sleep,
                       settle_timeout=5)
    flow2._mutations = 1
    monkeypatch.setattr(s, "validate_quiet", lambda: answers[0])
    start, sleeps[:] = now[0], []
    assert not flow2.settle()[0].passed
    assert now[0] - start == pytest.approx(5.0) and sum(sleeps) == pytest.approx(5.0)
