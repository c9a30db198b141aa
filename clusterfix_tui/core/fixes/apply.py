"""The engine: apply a Plan (a step's, or a RollbackPlan) exactly as shown, and roll back.

`apply_plan(plan, approved_ids, runner, journal, on_line=None, cancel=None) -> StepOutcome` runs
exactly the approved actions, in plan order, through `runner.run_action` (the runtime decides
whether it is the real or the dry-run runner). Between actions it checks `cancel` (a
threading.Event); after a failure on a target, later actions on that same target are skipped.
Every command is journaled `command_start` (before it runs, with the full action) and
`command_end` (after). It journals `step_end` with the outcome.

`rollback(source, runner, journal, ...)` runs the rollback actions of what DID run (started),
newest first; `source` is a (plan, outcome) pair or a list of journal events.

Every approved action's precondition (core/fixes/preconditions.py) is re-checked right before it
runs when a `precheck` is given: changed -> skipped with its reason, goal already holds ->
"already-done" (not a failure). Rollback plans run through the same apply_plan.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clusterfix_tui.core.fixes.step import plan_from_dict
from clusterfix_tui.core.model import (
    Action,
    ActionOutcome,
    CommandResult,
    Plan,
    StepOutcome,
)

# on_line(node, stream, line): what the session and the UI receive.
NodeLineCallback = Callable[[str, str, str], None]
_MAX_JOURNAL_OUTPUT = 64 * 1024  # per stream per command; the tail is kept


class Runner(Protocol):
    dry_run: bool

    def run_action(self, action: Any, *, on_line: Any = None) -> CommandResult: ...


class JournalLike(Protocol):
    def write(self, type_: str, **fields: Any) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------
# the engine


def _tail(text: str) -> str:
    if len(text) <= _MAX_JOURNAL_OUTPUT:
        return text
    return "[... truncated ...]\n" + text[-_MAX_JOURNAL_OUTPUT:]


def _run_one(
    action: Action,
    step: str,
    runner: Runner,
    journal: JournalLike | None,
    on_line: NodeLineCallback | None,
    *,
    rollback_of: str | None = None,
) -> CommandResult:
    if journal is not None:
        journal.write(
            "command_start",
            step=step,
            action_id=action.id,
            node=action.target,
            command=action.command,
            kind=action.kind,
            rollback=rollback_of is not None,
            rollback_of=rollback_of,
            mutating=action.mutating,
            dry_run=bool(getattr(runner, "dry_run", False)),
            action=action.to_dict(),
        )

    def _line(stream: str, line: str) -> None:
        if on_line is not None:
            try:
                on_line(action.target, stream, line)
            except Exception:  # a display callback must never break a repair  # noqa: BLE001, S110
                pass

    t0 = time.monotonic()
    try:
        result = runner.run_action(action, on_line=_line)
    except Exception as exc:  # TransportError and anything else: recorded, never propagated  # noqa: BLE001
        result = CommandResult(
            exit_code=None, duration=time.monotonic() - t0, error=f"{type(exc).__name__}: {exc}"
        )
    if journal is not None:
        journal.write(
            "command_end",
            step=step,
            action_id=action.id,
            node=action.target,
            exit_code=result.exit_code,
            duration=round(result.duration, 3),
            stdout=_tail(result.stdout),
            stderr=_tail(result.stderr),
            timed_out=result.timed_out,
            error=result.error,
            rollback=rollback_of is not None,
        )
    return result


def _precheck(
    action: Action,
    step: str,
    precheck: Prechecker,
    journal: JournalLike | None,
    on_line: NodeLineCallback | None,
) -> Any:
    """Re-check the action's precondition right before it runs; journal what it found."""
    from clusterfix_tui.core.model import PRECHECK_UNKNOWN

    pre = action.precondition
    assert pre is not None
    try:
        found = precheck(action)
    except Exception as exc:  # noqa: BLE001 - a check that cannot run means: do not run blind
        from clusterfix_tui.core.fixes.preconditions import PrecheckResult

        found = PrecheckResult(PRECHECK_UNKNOWN, f"the check could not run: {exc}")
    if journal is not None:
        journal.write(
            "precheck", step=step, action_id=action.id, node=action.target, kind=pre.kind,
            command=pre.command, state=found.state, detail=found.detail,
            exit_code=found.exit_code,
        )
    if on_line is not None and found.state != "holds":
        try:
            on_line(action.target, "stderr",
                    f"{action.id}: {_PRECHECK_WORDS.get(found.state, found.state)}: "
                    f"{found.detail}")
        except Exception:  # noqa: BLE001, S110
            pass
    return found


_PRECHECK_WORDS = {"already-done": "already done, not run",
                   "changed": "skipped, the node changed since the plan was shown",
                   "unknown": "skipped, its precondition could not be checked"}


def _gone_already(action: Action, result: CommandResult) -> bool:
    """Deleting a pod that is not there any more (404) is done, not failed."""
    return (action.kind == "api" and (action.api or {}).get("verb") == "delete_pod"
            and result.exit_code == 1 and "(404)" in (result.stderr or ""))


class Prechecker(Protocol):
    def __call__(self, action: Action, /) -> Any: ...


def _execute(
    step: str,
    actions: Sequence[Action],
    approved: set[str],
    runner: Runner,
    journal: JournalLike | None,
    on_line: NodeLineCallback | None,
    cancel: threading.Event | None,
    rollback_of: dict[str, str] | None = None,
    precheck: Prechecker | None = None,
) -> tuple[list[ActionOutcome], bool]:
    dry = bool(getattr(runner, "dry_run", False))
    failed_targets: set[str] = set()
    outcomes: list[ActionOutcome] = []
    cancelled = False
    for action in actions:
        if action.id not in approved:
            outcomes.append(ActionOutcome(action.id, action.target, action.command, None,
                                          "skipped", "not approved"))
            continue
        if cancelled or (cancel is not None and cancel.is_set()):
            cancelled = True
            outcomes.append(
                ActionOutcome(action.id, action.target, action.command, None, "cancelled")
            )
            continue
        if action.target in failed_targets:
            outcomes.append(ActionOutcome(action.id, action.target, action.command, None,
                                          "skipped", "an earlier action on this target failed"))
            continue
        if precheck is not None and action.precondition is not None:
            found = _precheck(action, step, precheck, journal, on_line)
            if found.state != "holds":
                outcomes.append(ActionOutcome(
                    action.id, action.target, action.command, None,
                    "already-done" if found.state == "already-done" else "skipped",
                    found.detail or found.state))
                continue
        result = _run_one(
            action, step, runner, journal, on_line,
            rollback_of=(rollback_of or {}).get(action.id) if rollback_of is not None else None,
        )
        not_run = (result.exit_code is None and result.error is None and not result.timed_out)
        detail = ""
        if dry and (action.mutating or not_run):
            status = "dry-run"
        elif result.ok:
            status = "ok"
        elif _gone_already(action, result):
            status, detail = "already-done", "the pod was already gone (404)"
        else:
            status = "failed"
            failed_targets.add(action.target)
        outcomes.append(ActionOutcome(action.id, action.target, action.command, result,
                                      status, detail))  # type: ignore[arg-type]
    return outcomes, cancelled


def _status(plan: Plan, outcomes: Sequence[ActionOutcome], cancelled: bool, dry: bool) -> str:
    ran = [o for o in outcomes if o.status in ("ok", "failed", "dry-run")]
    if plan.nothing_to_do:
        return "unchanged"
    if not ran and not cancelled:
        return "unchanged" if any(o.status == "already-done" for o in outcomes) else "skipped"
    if dry and any(o.status == "dry-run" for o in ran) and not any(o.status == "failed" for o in ran):
        return "dry-run"
    mutating_ids = {a.id for a in plan.actions if a.mutating}
    ok_mut = [o for o in ran if o.status == "ok" and o.action_id in mutating_ids]
    failed = [o for o in ran if o.status == "failed"]
    if cancelled:
        return "cancelled"
    if failed:
        return "partial" if ok_mut else "failed"
    return "changed" if ok_mut else "unchanged"


def _changes(plan: Plan, outcomes: Sequence[ActionOutcome]) -> list[dict[str, Any]]:
    by_id = {a.id: a for a in plan.actions}
    changes = []
    for o in outcomes:
        a = by_id.get(o.action_id)
        if a is None or o.status != "ok" or not a.mutating:
            continue
        ch = getattr(a, "change", None) or {}
        changes.append(
            {
                "node": a.target,
                "action_id": a.id,
                "what": ch.get("what", a.why or a.command),
                "before": ch.get("before"),
                "after": ch.get("after"),
            }
        )
    return changes


def apply_plan(
    plan: Plan,
    approved_ids: Iterable[str],
    runner: Runner,
    journal: JournalLike | None = None,
    on_line: NodeLineCallback | None = None,
    cancel: threading.Event | None = None,
    post: Callable[[StepOutcome], StepOutcome] | None = None,
    *,
    precheck: Prechecker | None = None,
    step_end: dict[str, Any] | None = None,
) -> StepOutcome:
    """Run exactly the approved actions of `plan`, as shown, in plan order. The one apply path:
    repair plans and rollback plans (a RollbackPlan) both run through here.

    `precheck(action)` re-checks each action's precondition right before it runs (an action
    whose state changed is skipped, one whose goal already holds is "already-done").
    `post(outcome) -> outcome` (e.g. the pods step waiting for its rollout) runs before the
    `step_end` event is journaled, so the journal has the final word. `step_end` adds fields to
    that event (e.g. the pass number)."""
    approved = set(approved_ids)
    unknown = approved - {a.id for a in plan.actions}
    if unknown:
        raise ValueError(f"approved ids not in the plan: {sorted(unknown)}")
    dry = bool(getattr(runner, "dry_run", False))
    rollback_of = getattr(plan, "rollback_of", None)
    is_rollback = isinstance(plan, RollbackPlan)
    outcomes, cancelled = _execute(plan.step, plan.actions, approved, runner, journal, on_line,
                                   cancel, rollback_of=dict(rollback_of or {}) if is_rollback
                                   else None, precheck=precheck)
    status = _status(plan, outcomes, cancelled, dry)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    if plan.nothing_to_do:
        message = "nothing to do" + (": " + "; ".join(plan.notes) if plan.notes else "")
    else:
        message = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if is_rollback:
        mapping = dict(rollback_of or {})
        changes = tuple(
            {"node": o.target, "action_id": o.action_id,
             "what": f"rolled back {mapping.get(o.action_id)}", "before": None, "after": None}
            for o in outcomes if o.status == "ok")
        message = ("rollback: " + ", ".join(f"{o.action_id}={o.status}" for o in outcomes)) \
            if outcomes else "rollback: nothing to roll back"
    else:
        changes = tuple(_changes(plan, outcomes))
    outcome = StepOutcome(
        step=plan.step,
        status=status,  # type: ignore[arg-type]
        actions=tuple(outcomes),
        changes=changes,
        message=message,
    )
    if post is not None:
        try:
            outcome = post(outcome)
        except Exception as exc:  # noqa: BLE001
            if journal is not None:
                journal.write("error", message=f"after {plan.step}: {exc}", where=plan.step)
    if journal is not None:
        extra = dict(step_end or {})
        if is_rollback:
            extra["rollback"] = True
        journal.write("step_end", step=plan.step, outcome=outcome.to_dict(), **extra)
    return outcome


# ---------------------------------------------------------------------------------------------
# rollback


@dataclass(frozen=True)
class RanAction:
    step: str
    action: Action
    finished_ok: bool | None  # None: started, never finished (process died)


def ran_from_outcome(plan: Plan, outcome: StepOutcome) -> list[RanAction]:
    by_id = {a.id: a for a in plan.actions}
    ran = []
    for o in outcome.actions:
        if o.status in ("ok", "failed") and o.action_id in by_id:
            ran.append(RanAction(plan.step, by_id[o.action_id], o.status == "ok"))
    return ran


def ran_from_events(events: Sequence[dict[str, Any]], step: str | None = None) -> list[RanAction]:
    """Forward actions that started and are not rolled back yet (core.record.ran_actions)."""
    from clusterfix_tui.core.record import ran_actions

    return ran_actions(events, step)


_REDACTION_MARKS = ("[REDACTED", "<redacted")


def _redacted(action: Action) -> bool:
    import json

    text = action.command + json.dumps(action.api or {}, default=str)
    return any(m in text for m in _REDACTION_MARKS)


@dataclass(frozen=True)
class RollbackPlan(Plan):
    """A Plan whose actions undo what ran; rollback_of maps each action id to the forward action
    it undoes. It is shown, approved and applied like any plan (apply_plan)."""

    rollback_of: dict[str, str] = dataclasses.field(default_factory=dict, hash=False,
                                                     compare=False)


def rollback_plan(ran: Sequence[RanAction], step: str | None = None
                  ) -> tuple[RollbackPlan, dict[str, str]]:
    """The rollback of what ran, newest first, as a Plan (so it can be shown and approved).

    Returns the plan and a map rollback-action-id -> forward-action-id. Actions without an
    automatic rollback appear in the plan's notes with their rollback_note."""
    actions: list[Action] = []
    mapping: dict[str, str] = {}
    notes: list[str] = []
    seen: set[tuple[str, str, str, str]] = set()
    for ra in reversed(list(ran)):
        a = ra.action
        if not a.mutating:
            continue
        if a.rollback is not None and _redacted(a.rollback):
            notes.append(f"{a.id} ({a.target}): its rollback command was redacted in the "
                         f"journal (it held something that looked like a secret); run it by "
                         f"hand from the plan the session showed")
            continue
        if a.rollback is not None:
            rb = a.rollback
            # the same undo (same node, same command) runs once, however often its action ran;
            # two different undos never share an id (a later pass re-plans with the same ids)
            same = (rb.target, rb.kind, rb.command, repr(sorted((rb.api or {}).items())))
            if same in seen:
                continue
            seen.add(same)
            rid, n = rb.id, 2
            while rid in mapping:
                rid, n = f"{rb.id}#{n}", n + 1
            if rid != rb.id:
                rb = dataclasses.replace(rb, id=rid)
            actions.append(rb)
            mapping[rid] = a.id
        else:
            notes.append(f"{a.id} ({a.target}): no automatic rollback: {a.rollback_note or 'none given'}")
    steps = sorted({ra.step for ra in ran})
    name = step or (steps[0] if len(steps) == 1 else "session")
    plan = RollbackPlan(
        step=name,
        title=f"Roll back {name}",
        actions=tuple(actions),
        notes=tuple(notes) or (() if actions else ("nothing ran that can be rolled back",)),
        rollback_of=dict(mapping),
    )
    return plan, mapping


def rollback_plan_from_dict(d: dict[str, Any]) -> RollbackPlan:
    p = plan_from_dict(d)
    return RollbackPlan(step=p.step, title=p.title, findings=p.findings, actions=p.actions,
                        notes=p.notes, rollback_of=dict(d.get("rollback_of") or {}))


def rollback(
    source: tuple[Plan, StepOutcome] | Sequence[dict[str, Any]],
    runner: Runner,
    journal: JournalLike | None = None,
    on_line: NodeLineCallback | None = None,
    cancel: threading.Event | None = None,
    step: str | None = None,
    approved_ids: Iterable[str] | None = None,
) -> StepOutcome:
    """Run the rollback actions of what did run, newest first (all of them unless approved_ids)."""
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], Plan):
        ran = ran_from_outcome(source[0], source[1])  # type: ignore[arg-type]
    else:
        ran = ran_from_events(source, step)  # type: ignore[arg-type]
    return rollback_ran(ran, runner, journal, on_line, cancel, step, approved_ids)


def rollback_ran(
    ran: Sequence[RanAction],
    runner: Runner,
    journal: JournalLike | None = None,
    on_line: NodeLineCallback | None = None,
    cancel: threading.Event | None = None,
    step: str | None = None,
    approved_ids: Iterable[str] | None = None,
    *,
    by: str = "user",
    precheck: Prechecker | None = None,
) -> StepOutcome:
    """Build the rollback plan of `ran`, journal it with its decision, run it (apply_plan)."""
    plan, _ = rollback_plan(ran, step)
    if journal is not None:
        journal.write("plan", step=plan.step, plan=plan.to_dict(), rollback=True)
        for n in plan.notes:
            journal.write("note", text=f"rollback {plan.step}: {n}")
    approved = list(approved_ids) if approved_ids is not None else [a.id for a in plan.actions]
    if journal is not None:
        journal.write("decision", step=plan.step,
                      decision="dry-run" if getattr(runner, "dry_run", False) else "approved",
                      action_ids=approved, by=by, rollback=True)
    return apply_plan(plan, approved, runner, journal, on_line, cancel, precheck=precheck)


