"""RepairFlow: the one repair flow the wizard and the headless `fix` both drive.

connect + leave out -> diagnose -> (per step, in runbook order) plan for approval -> approve ->
apply -> ... -> settle + re-diagnose -> another pass for the steps that still have something to
do (never repeating an action that failed) -> validate -> verdict.

Every rule about *when* lives here, nowhere else:
- a step's plan is re-built when the cluster changed since that plan was built (per step: each
  plan remembers the diagnosis generation it came from; any applied change makes the diagnosis
  stale, and the next plan put up for approval re-diagnoses first);
- with lean_rediagnosis (headless `fix`), a re-diagnosis made between steps to plan the next
  step leaves out the facts sections only other steps read (each check module's ONLY_FOR: the
  nodes' own kubectl, read only for worker_kubeconfig; the VXLAN probes to the peers, read only
  for pods and host_network: both wait for a timeout where something is broken); the diagnosis
  says so (never "healthy"), the journal says which re-diagnosis left what out and why, and a
  step that reads a section the last diagnosis left out is planned only after a re-diagnosis
  that reads it.
  Every other diagnosis reads everything: the first, the one after each pass (which decides
  the next pass: _wanted_steps), the "after" one (the verdict), and all of the wizard's;
- every action's precondition is re-checked on the node right before it runs (the engine);
- after a pass, the flow waits for the cluster to settle (validation retried, not journaled,
  until green or the deadline), re-diagnoses, and offers another pass for the steps whose fresh
  plan holds a mutating action that has not run yet, up to `max_passes` (headless: the first
  settle validation and the re-diagnosis run alongside; that diagnosis is kept only when the
  validation is green and it finds nothing left, else it is dropped and read again after the
  settle);
- validation at the end waits the same way, is journaled once, and an "after" diagnosis is
  journaled when anything changed;
- rollback is a plan (plan_rollback) run through the same apply path (apply_rollback).

Methods block; the wizard calls them from thread workers and gets progress through callbacks.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.model import STEP_ORDER, Action, CheckResult, Plan, StepOutcome
from clusterfix_tui.core.record import SessionRecord, replay

NodeLineCallback = Callable[[str, str, str], None]
WaitCallback = Callable[[list[CheckResult], float], None]  # (failing checks, seconds left)

DEFAULT_MAX_PASSES = 3
SETTLE_POLL = 3.0  # the longest wait between two validations while the cluster settles
SETTLE_FIRST_POLL = 0.5  # the first one (then growing by half up to SETTLE_POLL)
_STAMP = re.compile(r"\d{8}T\d{6}Z")


class StalePlanError(RuntimeError):
    """apply() was given a plan built before the cluster last changed: plan_for_approval()
    again and show that one."""


def action_key(step: str, action: Action) -> str:
    """What identifies "the same action" across passes: its command with backup stamps
    normalised (a re-planned backup gets a new stamp, it is still the same action)."""
    api = action.api or {}
    what = action.command if action.kind == "shell" else repr(sorted(
        (k, str(v)) for k, v in api.items()))
    return f"{step}|{action.target}|{action.kind}|{_STAMP.sub('STAMP', what)}"


class RepairFlow:
    """Drive a RepairSession through the repair, one rule set for every front end."""

    def __init__(
        self,
        session: Any,
        *,
        steps: Sequence[str] | None = None,
        max_passes: int = DEFAULT_MAX_PASSES,
        settle_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        lean_rediagnosis: bool = False,
    ) -> None:
        self.session = session
        self.lean_rediagnosis = bool(lean_rediagnosis)
        self._read_at: dict[str, str] = {}  # section -> which diagnosis last read it, and when
        self.steps: tuple[str, ...] = tuple(s for s in STEP_ORDER if steps is None or s in steps)
        self.max_passes = max(1, int(max_passes))
        self.settle_timeout = float(settle_timeout)
        self._clock = clock
        self._sleep = sleep
        self.generation = 0  # bumped by every diagnosis
        self._changes = 0  # bumped by anything that makes plans stale (a change, a left-out node)
        self._changes_at_diagnosis = 0
        self._mutations = 0  # bumped by every apply that may have changed the cluster
        self._mutations_at_settle = 0
        self._plans: dict[str, tuple[int, Plan]] = {}  # step -> (generation, plan for approval)
        self._pass_steps: tuple[str, ...] = self.steps
        self._ran: set[str] = set()  # action keys that ran (any result)
        self._failed: set[str] = set()  # action keys that failed
        self._failed_targets: set[tuple[str, str]] = set()  # (step, target) with a failure
        self._changed_in_pass = False
        self._lock = threading.Lock()
        # the "after" validation (and node state) run alongside the last re-diagnosis of a
        # pass: (self._mutations, session.runs, results, state) then; validate() journals it
        # when nothing has run since
        self._after_alongside: tuple[int, int, list[CheckResult], Any] | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def pass_no(self) -> int:
        return int(self.session.pass_no)

    @property
    def dry_run(self) -> bool:
        return bool(self.session.dry_run)

    @property
    def diagnosis(self) -> Any:
        return self.session.diagnosis

    @property
    def stale(self) -> bool:
        """The cluster changed (through this flow) since the last diagnosis."""
        return self._changes > self._changes_at_diagnosis

    @property
    def changed_anything(self) -> bool:
        """Something ran that may have changed the cluster (dry runs never do)."""
        return self._mutations > 0

    def pass_steps(self) -> tuple[str, ...]:
        """The steps of the current pass, in runbook order (all steps in pass 1)."""
        return self._pass_steps

    def record(self) -> SessionRecord:
        """The session so far, replayed from its journal (what the summary screen shows)."""
        return replay(list(self.session.journal.events))

    # -- connect -------------------------------------------------------------------------------

    def cluster_info(self) -> dict[str, Any]:
        return self.session.cluster_info()

    def connect(self, on_node: Callable[[Any], None] | None = None) -> list[Any]:
        return self.session.connect(on_node=on_node)

    def accept_host_key(self, node: str) -> Any:
        return self.session.accept_host_key(node)

    def leave_out(self, node: str, reason: str) -> None:
        self.session.leave_out(node, reason)
        self._changes += 1  # plans built with that node in them are stale

    def leave_out_unconnected(self) -> list[Any]:
        """Leave out every node that is not connected (the headless policy). Returns them."""
        out = [c for c in self.session.conns.values() if c.state != "connected"
               and c.node not in self.session.left_out]
        for c in out:
            self.leave_out(c.node, f"{c.state}: {c.detail}")
        return out

    # -- diagnose ------------------------------------------------------------------------------

    def diagnose(self, on_progress: Callable[..., None] | None = None) -> Any:
        """The first ("before") diagnosis; later ones go through _rediagnose()."""
        phase = "before" if self.session.before is None else "refresh"
        if phase == "before":
            d = self.session.diagnose("before", on_progress=on_progress)
        else:
            d = self.session.refresh(on_progress=on_progress)
        self._diagnosed()
        return d

    def _diagnosed(self) -> None:
        self.generation += 1
        self._changes_at_diagnosis = self._changes
        d = self.session.diagnosis
        if d is not None and self.lean_rediagnosis:
            from clusterfix_tui.core.session import sections_only_for

            left = getattr(d, "sections_left_out", None) or {}
            when = (f"the diagnosis of pass {self.pass_no} at "
                    f"{time.strftime('%H:%M:%S', time.gmtime())} UTC")
            self._read_at.update({sec: when for sec in sections_only_for() if sec not in left})

    def _rediagnose(self, on_progress: Callable[..., None] | None = None,
                    for_step: str | None = None) -> Any:
        """Re-diagnose; `for_step`: made only to plan that step (lean_rediagnosis: the sections
        only other steps read are left out). None: read everything."""
        leave_out = self._leave_out_for(for_step)
        if leave_out:
            d = self.session.refresh(on_progress=on_progress, leave_out=leave_out)
        else:
            d = self.session.refresh(on_progress=on_progress)
        self._diagnosed()
        return d

    def _leave_out_for(self, step: str | None) -> dict[str, str]:
        """{section: why} a re-diagnosis made to plan `step` leaves out (lean_rediagnosis)."""
        if not self.lean_rediagnosis or step is None or self.dry_run:
            return {}
        from clusterfix_tui.core.session import sections_only_for

        def why(sec: str, steps: tuple[str, ...]) -> str:
            return (f"made to plan step {step}, which does not read it (read only for "
                    f"{', '.join(steps)}: read again before planning those, after each pass and "
                    f"for the verdict); last read by {self._read_at.get(sec, 'no diagnosis yet')}")

        return {sec: why(sec, steps) for sec, steps in sections_only_for().items()
                if step not in steps}

    def _unread_for(self, step: str | None) -> dict[str, str]:
        """The sections the current diagnosis left out that `step` (None: anything but
        planning one step) reads."""
        from clusterfix_tui.core.session import unread_for

        return unread_for(self.session.diagnosis, step)

    def validate_before(self, on_check: Callable[[CheckResult], None] | None = None
                        ) -> list[CheckResult]:
        return self.session.validate("before", on_check=on_check)

    def diagnose_and_validate_before(
        self, on_progress: Callable[..., None] | None = None,
        on_check: Callable[[CheckResult], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[Any, list[CheckResult] | None]:
        """The first diagnosis and the "before" validation, run alongside each other: both only
        read (the validation's probes change no node state), and neither needs the other's
        result. Journaled in the same order as one after the other (the diagnosis, then the
        validation). The validation is journaled and returned only when the diagnosis returned
        without an error and the run was not stopped (as when it ran after it); its thread is
        always waited for, so nothing of it runs on once this returns or raises."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cfx-validate-before") as ex:
            fut = ex.submit(self.session.validation_results, on_check)
            try:
                d = self.diagnose(on_progress=on_progress)
            finally:
                concurrent.futures.wait([fut])
        if getattr(d, "error", None) or (cancel is not None and cancel.is_set()):
            return d, None
        exc = fut.exception()
        if exc is not None:  # the diagnosis stands; the validation says why it is missing
            self.session.journal.write("error", message=f"validation before failed: {exc}",
                                       where="validate")
            return d, None
        return d, self.session.record_validation("before", fut.result())

    # -- plans ---------------------------------------------------------------------------------

    def preview(self, step: str) -> Plan:
        """The plan of `step` to look at (the plan screen): not journaled, not approvable. A
        diagnosis that left out a section `step` reads is completed first (read again)."""
        if self._unread_for(step) and not self.dry_run:
            self._rediagnose()
        return self._filtered(self.session.build_plan(step))

    def preview_all(self) -> dict[str, Plan]:
        return {s: self.preview(s) for s in self.steps}

    def plan_for_approval(self, step: str, on_progress: Callable[..., None] | None = None
                          ) -> Plan:
        """The plan of `step` to put in front of the user for a decision, built from the
        cluster as it is now: re-diagnoses first if anything changed since the last diagnosis,
        re-plans if this step's plan came from an older diagnosis. Journaled once per build."""
        with self._lock:
            if not self.dry_run and (self.stale or self._unread_for(step)):
                self._rediagnose(on_progress, for_step=step)
            held = self._plans.get(step)
            if held is not None and held[0] == self.generation:
                return held[1]
            plan = self._filtered(self.session.build_plan(step))
            self.session.show_plan(plan)
            self._plans[step] = (self.generation, plan)
            return plan

    def is_current(self, plan: Plan) -> bool:
        held = self._plans.get(plan.step)
        return held is not None and held[1] is plan and held[0] == self.generation \
            and not (self.stale and not self.dry_run)

    def _filtered(self, plan: Plan) -> Plan:
        """Drop what must not run again: actions that failed in an earlier pass, and the step's
        actions on a target where one of them failed."""
        if not (self._failed or self._failed_targets):
            return plan
        keep: list[Action] = []
        notes: list[str] = []
        for a in plan.actions:
            if action_key(plan.step, a) in self._failed:
                notes.append(f"{a.id} not offered again: it failed earlier in this session")
            elif (plan.step, a.target) in self._failed_targets:
                notes.append(f"{a.id} not offered again: an action of this step failed on "
                             f"{a.target} earlier in this session")
            else:
                keep.append(a)
        if not notes:
            return plan
        import dataclasses

        return dataclasses.replace(plan, actions=tuple(keep), notes=tuple(plan.notes) +
                                   tuple(notes))

    # -- decide and run ------------------------------------------------------------------------

    def approvable_ids(self, plan: Plan, opt_in: Iterable[str] = ()) -> list[str]:
        """The default approval (`--yes`, the wizard's ticks): every non-opt-in action, plus the
        opt-in ids given ("all" = every opt-in). An id as the grouped output prints it for the
        same action on many nodes, `step:NODE:kind` (core/group.py FoldedAction.ids_text), selects
        that action on each node: exactly the ids `step:<its node>:kind`, nothing else."""
        wanted = set(opt_in)
        folded = [w.partition(":NODE:") for w in wanted if ":NODE:" in w]

        def chosen(a: Any) -> bool:
            return ("all" in wanted or a.id in wanted
                    or any(a.id == f"{head}:{a.target}:{tail}" for head, _, tail in folded))

        return engine.default_approved(plan) + [
            a.id for a in plan.actions if engine.is_opt_in(a) and chosen(a)]

    def apply(
        self, plan: Plan, approved_ids: Iterable[str], on_line: NodeLineCallback | None = None,
        cancel: threading.Event | None = None, by: str = "user",
    ) -> StepOutcome:
        """Run the approved actions of the plan put up for approval (plan_for_approval)."""
        if not self.is_current(plan):
            raise StalePlanError(f"the plan of step {plan.step} was built before the cluster "
                                 "last changed; plan it again and show that one")
        outcome = self.session.apply(plan, list(approved_ids), on_line=on_line, cancel=cancel,
                                     by=by)
        self._learn(plan, outcome)
        return outcome

    def skip(self, plan: Plan, reason: str = "", by: str = "user") -> StepOutcome:
        return self.session.skip(plan, reason, by=by)

    def _learn(self, plan: Plan, outcome: StepOutcome) -> None:
        by_id = {a.id: a for a in plan.actions}
        touched = False
        for o in outcome.actions:
            a = by_id.get(o.action_id)
            if a is None or o.status not in ("ok", "failed"):
                continue
            key = action_key(plan.step, a)
            self._ran.add(key)
            if o.status == "failed":
                self._failed.add(key)
                self._failed_targets.add((plan.step, a.target))
            if a.mutating:
                touched = True
        if touched:
            self._changes += 1
            self._mutations += 1
            self._changed_in_pass = True
        self._plans.pop(plan.step, None)

    # -- converge ------------------------------------------------------------------------------

    def settle(self, on_wait: WaitCallback | None = None, cancel: threading.Event | None = None,
               timeout: float | None = None, first: list[CheckResult] | None = None
               ) -> list[CheckResult]:
        """After changes, retry validation (not journaled) until it is green or the deadline:
        restarted pods need a moment. Returns the last results ([] when nothing changed).
        `first`: the results of a validation just run for it (the first try)."""
        if self.dry_run or self._mutations == self._mutations_at_settle:
            return []
        self._mutations_at_settle = self._mutations
        deadline = self._clock() + (self.settle_timeout if timeout is None else timeout)
        results: list[CheckResult] = []
        # restarted pods are often Ready within a second or two: re-check soon at first, then
        # less often (the deadline is the same)
        interval = SETTLE_FIRST_POLL
        pending = first
        while True:
            if pending is not None:
                results, pending = pending, None
            else:
                try:
                    results = self.session.validate_quiet()
                except Exception:  # noqa: BLE001 - the API may blink while pods restart
                    results = []
            left = deadline - self._clock()
            if (results and all(r.passed for r in results)) or left <= 0 or (
                    cancel is not None and cancel.is_set()):
                return results
            if on_wait is not None:
                on_wait([r for r in results if not r.passed], left)
            self._sleep(min(interval, max(0.0, left)))
            interval = min(SETTLE_POLL, interval * 1.5)

    def next_pass(self, on_wait: WaitCallback | None = None,
                  on_progress: Callable[..., None] | None = None, *, start: bool = True,
                  cancel: threading.Event | None = None,
                  validate_alongside: bool = False) -> list[str]:
        """After the steps of a pass: settle, re-diagnose, and return the steps another pass
        would act on (those whose fresh plan holds a default-approved mutating action that has
        not run yet; opt-ins stay the user's call).
        [] = converged (or max passes reached, or nothing changed, or a dry run). With
        start=True (headless) the new pass begins; the wizard asks first, then start_pass().
        validate_alongside (headless, validate() follows at once): the settle's first validation
        runs alongside this re-diagnosis (both only read); when it is green and the diagnosis
        finds nothing left for any step, that diagnosis stands and that validation is the "after"
        one; otherwise the diagnosis is dropped unjournaled, the settle goes on, and the cluster
        is re-diagnosed after it with the "after" validation alongside (both after the cluster
        settled). validate() journals the "after" validation when no other pass is started and
        nothing has run since."""
        journal = self.session.journal
        if self.dry_run or not self._changed_in_pass:
            return []
        if self.pass_no >= self.max_passes:
            journal.write("note", text=f"pass {self.pass_no} was the last one allowed "
                          f"(--max-passes {self.max_passes})")
            return []
        self._after_alongside = None
        settled = False
        if validate_alongside and self._mutations != self._mutations_at_settle:
            t0 = self._clock()
            settled, first = self._settle_alongside_rediagnosis(on_progress, cancel)
            if not settled and not (cancel is not None and cancel.is_set()):
                self.settle(on_wait, cancel, first=first, timeout=max(
                    0.0, self.settle_timeout - (self._clock() - t0)))
        else:
            self.settle(on_wait, cancel)
        if cancel is not None and cancel.is_set():
            return []
        if not settled:
            if validate_alongside:
                self._rediagnose_and_validate(on_progress)
            else:
                self._rediagnose(on_progress)
        wanted = self._wanted_steps()
        if wanted and settled:
            # that diagnosis was read alongside the validation that found the cluster settled,
            # not after it: the next pass is planned from a read made after it
            self._after_alongside = None
            self._rediagnose(on_progress)
            wanted = self._wanted_steps()
        if wanted:
            self._after_alongside = None
        if wanted and start:
            self.start_pass(wanted)
        return wanted

    def _wanted_steps(self) -> list[str]:
        """The steps whose fresh plan holds a default-approved mutating action that has not run
        yet (what another pass would act on). Decided from a diagnosis that read everything."""
        if self._unread_for(None) and not self.dry_run:
            self._rediagnose()
        wanted: list[str] = []
        for step in self.steps:
            try:
                plan = self.preview(step)
            except Exception as exc:  # noqa: BLE001
                self.session.journal.write("error", message=f"could not plan step {step}: {exc}",
                                           where=step)
                continue
            if any(a.mutating and not engine.is_opt_in(a) and action_key(step, a) not in self._ran
                   for a in plan.actions):
                wanted.append(step)
        return wanted

    def _settle_alongside_rediagnosis(self, on_progress: Callable[..., None] | None,
                                      cancel: threading.Event | None
                                      ) -> tuple[bool, list[CheckResult] | None]:
        """The settle's first validation (with the node state after) and the pass's last
        re-diagnosis, run alongside each other (both only read). When that validation is green
        and the diagnosis finds nothing left for any step (no finding with a step), the cluster
        had settled: the diagnosis is adopted (journaled) and the validation is the "after" one
        (validate() journals it when nothing has run since). Otherwise the diagnosis is dropped,
        not journaled (it may have read the cluster while it was still settling): the caller
        settles as before and re-diagnoses after it. Returns (settled, the validation's results:
        None if it raised)."""
        import concurrent.futures

        mutations, runs = self._mutations, self.session.runs
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cfx-settle") as ex:
            fut = ex.submit(self.session.validation_and_state)
            try:
                read = self.session.read_refresh(on_progress)
            finally:
                concurrent.futures.wait([fut])
        if fut.exception() is not None:  # the API may blink while pods restart
            return False, None
        results, state = fut.result()
        if cancel is not None and cancel.is_set():
            return False, results
        green = bool(results) and all(r.passed for r in results)
        clean = not getattr(read[0], "error", None) and not any(
            getattr(f, "step", None) for f in getattr(read[0], "findings", ()))
        if not (green and clean):
            return False, results
        self._mutations_at_settle = self._mutations
        self.session.adopt_refresh(*read)
        self._diagnosed()
        self._after_alongside = (mutations, runs, results, state)
        return True, results

    def _rediagnose_and_validate(self, on_progress: Callable[..., None] | None) -> None:
        import concurrent.futures

        mutations, runs = self._mutations, self.session.runs
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cfx-validate-after") as ex:
            fut = ex.submit(self.session.validation_and_state)
            try:
                self._rediagnose(on_progress)
            finally:
                concurrent.futures.wait([fut])
        if fut.exception() is None:
            results, state = fut.result()
            self._after_alongside = (mutations, runs, results, state)

    def start_pass(self, steps: Sequence[str]) -> int:
        self.session.pass_no += 1
        self._pass_steps = tuple(s for s in self.steps if s in steps)
        self._changed_in_pass = False
        self._plans.clear()
        self.session.journal.write(
            "note", text=f"pass {self.pass_no}: findings remain that "
            f"{', '.join(self._pass_steps)} can act on")
        return self.pass_no

    # -- validate and end ----------------------------------------------------------------------

    def validate(self, on_check: Callable[[CheckResult], None] | None = None,
                 on_wait: WaitCallback | None = None, cancel: threading.Event | None = None
                 ) -> list[CheckResult]:
        """Settle, then the journaled "after" validation; then, when anything changed, the
        "after" diagnosis (re-using the last one if nothing changed since)."""
        self.settle(on_wait, cancel)
        held, self._after_alongside = self._after_alongside, None
        if held is not None and held[0] == self._mutations and held[1] == self.session.runs:
            results = self.session.record_after(held[2], held[3])
            for r in results if on_check is not None else ():
                try:
                    on_check(r)  # type: ignore[misc]
                except Exception:  # noqa: BLE001, S110 - as validate() treats its callback
                    pass
        else:
            results = self.session.validate("after", on_check=on_check)
        if self.changed_anything and not self.dry_run:
            try:
                if self.stale or self._unread_for(None):  # the verdict reads everything
                    self.session.diagnose("after")
                    self._diagnosed()
                elif self.session.diagnosis is not None:
                    self.session.journal_diagnosis(self.session.diagnosis, "after")
            except Exception as exc:  # noqa: BLE001
                self.session.journal.write("error", message=f"diagnosis after repair failed: "
                                           f"{exc}", where="diagnose")
        return results

    def finish(self, aborted: bool = False) -> str:
        return self.session.finish(aborted=aborted)

    # -- rollback: a plan like any other -------------------------------------------------------

    def plan_rollback(self, step: str | None = None) -> engine.RollbackPlan:
        """What undoing `step` (None: the whole session) would run, newest first, replayed from
        the journal; journaled as shown for approval. apply_rollback runs exactly it."""
        return self.session.plan_rollback(step)

    def apply_rollback(self, plan: engine.RollbackPlan, approved_ids: Iterable[str] | None = None,
                       on_line: NodeLineCallback | None = None,
                       cancel: threading.Event | None = None, by: str = "user") -> StepOutcome:
        outcome = self.session.apply_rollback(
            plan, list(approved_ids) if approved_ids is not None else None, on_line, cancel, by)
        if any(o.status in ("ok", "failed") for o in outcome.actions):
            self._changes += 1
            self._mutations += 1
            self._changed_in_pass = True
        self._plans.pop(plan.step, None)
        return outcome
