"""The session's (the wizard's) rollback re-checks each rollback action's own precondition right
before it runs, as `clusterfix-tui rollback` does: a rollback whose goal already holds (the ACCEPT
it would delete is gone) is "already-done", never run blind and reported failed. The old session
ran it without its check."""

from __future__ import annotations

from fix_helpers import FakeDiagnosis, snapshot
from test_session import API, Runner

from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.engine import FixAction
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import Action, CommandResult, Plan
from clusterfix_tui.core.session import RepairSession

GONE = "iptables -C FORWARD -s 10.244.0.0/16 -j ACCEPT"


class Shell:
    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        if GONE in command:  # the ACCEPT is not there any more
            return CommandResult(3, "no such ACCEPT to remove\n")
        return CommandResult(0, "")

    def close(self):
        pass


def test_session_rollback_checks_each_rollback_precondition(tmp_path):
    runner = Runner()
    s = RepairSession(API(), lambda node, address=None: Shell(), runner,
                      Journal(tmp_path / "j.jsonl"))
    s.diagnosis = s.before = FakeDiagnosis([], snapshot=snapshot())
    undo = Action(id="iptables:node-1:1:rollback", target="node-1", kind="shell",
                  command="iptables -D FORWARD -s 10.244.0.0/16 -j ACCEPT", why="undo",
                  precondition=pre.exists_else_done(GONE, "the ACCEPT is there", "it is gone"))
    act = FixAction(id="iptables:node-1:1", target="node-1", kind="shell",
                    command="iptables -I FORWARD 1 -s 10.244.0.0/16 -j ACCEPT", why="accept",
                    rollback=undo)
    plan = Plan(step="iptables", title="t", actions=(act,))
    assert s.apply(plan, [act.id]).status == "changed"
    rb = s.rollback("iptables")
    assert [(o.action_id, o.status) for o in rb.actions] == [(undo.id, "already-done")]
    assert undo.id not in runner.ran
