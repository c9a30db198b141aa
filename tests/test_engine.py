"""Engine semantics with a fake runner (a plain class implementing ActionRunner)."""

from __future__ import annotations

import threading

import pytest

from clusterfix_tui.core.fixes.engine import (
    FixAction,
    apply_plan,
    check_rollbacks,
    default_approved,
    opt_in_id,
    rollback,
)
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CLUSTER, Action, CommandResult, Plan


class FakeRunner:
    """Runs nothing: records each action, answers from `fail` (ids that fail) and prints a line."""

    def __init__(self, dry_run=False, fail=(), on_run=None):
        self.dry_run = dry_run
        self.fail = set(fail)
        self.ran: list[str] = []
        self.on_run = on_run

    def run_action(self, action, *, on_line=None):
        self.ran.append(action.id)
        if self.on_run:
            self.on_run(action)
        if on_line:
            on_line("stdout", f"ran {action.id}")
        if self.dry_run and action.mutating:
            return CommandResult(exit_code=0, stdout="")
        if action.id in self.fail:
            return CommandResult(exit_code=1, stderr="boom")
        return CommandResult(exit_code=0, stdout=f"ran {action.id}\n")


def _a(i, target, rb=True):
    rbk = Action(id=f"rb-{i}", target=target, kind="shell", command=f"undo {i}") if rb else None
    return FixAction(
        id=i, target=target, kind="shell", command=f"do {i}", rollback=rbk,
        rollback_note="" if rb else "flannel recreates it",
        change={"what": f"thing {i}", "before": "old", "after": "new"},
    )


PLAN = Plan(
    step="iptables",
    title="t",
    actions=(
        _a("a1", "node-1"), _a("a2", "node-1"), _a("b1", "node-2"), _a("b2", "node-2", rb=False),
        _a("c1", CLUSTER),
    ),
)


def test_runs_only_the_approved_subset_in_plan_order():
    r = FakeRunner()
    out = apply_plan(PLAN, ["c1", "a2", "b1"], r)
    assert r.ran == ["a2", "b1", "c1"]
    st = {o.action_id: o.status for o in out.actions}
    assert st == {"a1": "skipped", "a2": "ok", "b1": "ok", "b2": "skipped", "c1": "ok"}
    assert out.status == "changed"
    assert {c["action_id"] for c in out.changes} == {"a2", "b1", "c1"}
    assert out.changes[0]["before"] == "old"


def test_unknown_approved_id_is_refused():
    with pytest.raises(ValueError):
        apply_plan(PLAN, ["zzz"], FakeRunner())


def test_failure_skips_later_actions_on_that_node_only():
    r = FakeRunner(fail={"a1"})
    out = apply_plan(PLAN, default_approved(PLAN), r)
    assert r.ran == ["a1", "b1", "b2", "c1"]
    st = {o.action_id: o.status for o in out.actions}
    assert st["a1"] == "failed" and st["a2"] == "skipped" and st["b2"] == "ok"
    assert out.status == "partial"


def test_all_failed_is_failed():
    out = apply_plan(PLAN, ["a1"], FakeRunner(fail={"a1"}))
    assert out.status == "failed"


def test_cancel_stops_between_actions():
    cancel = threading.Event()
    r = FakeRunner(on_run=lambda a: cancel.set() if a.id == "a2" else None)
    out = apply_plan(PLAN, default_approved(PLAN), r, cancel=cancel)
    assert r.ran == ["a1", "a2"]
    assert [o.status for o in out.actions] == ["ok", "ok", "cancelled", "cancelled", "cancelled"]
    assert out.status == "cancelled"


def test_streams_lines_with_the_node():
    lines = []
    apply_plan(PLAN, ["a1", "b1"], FakeRunner(), on_line=lambda n, s, line: lines.append((n, s, line)))
    assert lines == [("node-1", "stdout", "ran a1"), ("node-2", "stdout", "ran b1")]


def test_journal_has_start_before_and_end_after_each_command(tmp_path):
    path = tmp_path / "j.jsonl"
    seen_at_run: list[list[str]] = []
    j = Journal(path)

    def on_run(action):
        seen_at_run.append([e["type"] + ":" + e.get("action_id", "") for e in Journal.read(path)])

    apply_plan(PLAN, ["a1", "b1"], FakeRunner(on_run=on_run), j)
    j.close()
    # while a1 ran, its command_start was already on disk and its end was not
    assert seen_at_run[0][-1] == "command_start:a1"
    assert seen_at_run[1][-2:] == ["command_end:a1", "command_start:b1"]
    types = [e["type"] for e in Journal.read(path)]
    assert types == ["command_start", "command_end", "command_start", "command_end", "step_end"]


def test_dry_run_marks_mutations_and_changes_nothing():
    r = FakeRunner(dry_run=True)
    out = apply_plan(PLAN, default_approved(PLAN), r)
    assert {o.status for o in out.actions} == {"dry-run"}
    assert out.status == "dry-run"
    assert out.changes == ()


def test_nothing_to_do_is_unchanged():
    empty = Plan(step="pods", title="p", notes=("no findings",))
    out = apply_plan(empty, [], FakeRunner())
    assert out.status == "unchanged" and "no findings" in out.message


def test_nothing_approved_is_skipped():
    assert apply_plan(PLAN, [], FakeRunner()).status == "skipped"


def test_rollback_runs_what_ran_newest_first_and_notes_the_rest():
    r = FakeRunner()
    out = apply_plan(PLAN, ["a1", "a2", "b2", "c1"], r)
    r2 = FakeRunner()
    rb = rollback((PLAN, out), r2)
    assert r2.ran == ["rb-c1", "rb-a2", "rb-a1"]  # b2 has no rollback
    assert rb.status == "changed"


def test_rollback_from_journal_events_includes_a_command_that_never_finished(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal(path)

    class Dies(FakeRunner):
        def run_action(self, action, *, on_line=None):
            if action.id == "b1":
                raise KeyboardInterrupt  # stands in for the process dying mid-command
            return super().run_action(action, on_line=on_line)

    with pytest.raises(KeyboardInterrupt):
        apply_plan(PLAN, ["a1", "b1"], Dies(), j)
    j.close()
    events = Journal.read(path)
    assert [e["type"] for e in events] == ["command_start", "command_end", "command_start"]
    r = FakeRunner()
    j2 = Journal(path)
    rollback(events, r, j2, step="iptables")
    assert r.ran == ["rb-b1", "rb-a1"]
    # a second rollback of the same journal has nothing left to do
    r3 = FakeRunner()
    rollback(Journal.read(path), r3, step="iptables")
    assert r3.ran == []


def test_rollback_skips_dry_run_commands(tmp_path):
    j = Journal(tmp_path / "d.jsonl")
    apply_plan(PLAN, ["a1"], FakeRunner(dry_run=True), j)
    r = FakeRunner()
    rollback(j.events, r)
    assert r.ran == []


def test_opt_in_actions_are_not_default_approved():
    p = Plan(step="pods", title="p", actions=(
        _a("pods:node-1:1", "node-1"),
        FixAction(id=opt_in_id("pods", CLUSTER, "probe"), target=CLUSTER, kind="api",
                  command="kubectl patch", rollback_note="x"),
    ))
    assert default_approved(p) == ["pods:node-1:1"]
    assert check_rollbacks(p) == []
    assert check_rollbacks(Plan(step="x", title="x", actions=(
        Action(id="m", target="n", kind="shell", command="rm x"),))) == ["m"]


def test_a_rollback_redacted_in_the_journal_is_not_run(tmp_path):
    secret_rb = Action(id="rb-s", target="node-1", kind="shell",
                       command="echo token: eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.abcdef123456 > /x")
    p = Plan(step="worker_kubeconfig", title="w", actions=(
        FixAction(id="s1", target="node-1", kind="shell", command="true", rollback=secret_rb),))
    j = Journal(tmp_path / "r.jsonl")
    apply_plan(p, ["s1"], FakeRunner(), j)
    r = FakeRunner()
    j2 = Journal(tmp_path / "rb.jsonl")
    out = rollback(Journal.read(tmp_path / "r.jsonl"), r, j2)
    assert r.ran == []
    assert out.status == "unchanged"
    assert "eyJhbGciOiJSUzI1NiJ9" not in (tmp_path / "r.jsonl").read_text()
    plans = [e for e in j2.events if e["type"] == "plan"]
    assert "redacted" in " ".join(plans[0]["plan"]["notes"])
