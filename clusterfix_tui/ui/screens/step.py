"""One repair step: what it answers, exactly what it runs where (every mutating action ticked or
unticked one by one), its risk and rollback; then the live run (log pane, per-node progress,
the rollout wait as a progress bar with its time-out, cancel) and the result per node with Undo.

The plan shown for approval is core.flow's plan_for_approval(): built from the cluster as it is
now (the flow re-diagnoses and re-plans when anything changed since); Apply checks with the flow
that it is still current, and the flow refuses a stale one (re-planned and shown again)."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Button, DataTable, ProgressBar, SelectionList, Static
from textual.widgets.selection_list import Selection

from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.core.group import (
    all_nodes_text,
    fold_actions,
    group_findings,
    id_kind,
    nodes_text,
    plan_entries,
)
from clusterfix_tui.core.model import CLUSTER, STEP_ORDER
from clusterfix_tui.core.report.text import _visible as _shown  # a command's control characters
from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal
from clusterfix_tui.ui.widgets.live_table import LiveTable
from clusterfix_tui.ui.widgets.log_pane import LineBuffer, LogPane

STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "magenta", "dry-run": "cyan",
                "cancelled": "yellow"}


class StepScreen(WizardScreen):
    HELP = """\
## A repair step
Shows the findings this step answers (with their evidence), every action per node with its exact
command, the risk and the rollback. Every mutating action can be unticked before Apply; opt-in
actions are never ticked by default. Nothing runs until you confirm the dialog that names the
change. While it runs the log streams every node's output; `c` stops between actions.

| key | what |
|---|---|
| `a` | apply the ticked actions (asks first) |
| `space` | tick / untick the highlighted action (the list of actions) |
| `o` | tick / untick every opt-in action (workarounds; never ticked by default) |
| `e` | expand / fold the findings that share one cause across nodes (every node's finding) |
| `d` | dry run: show what would run, run nothing |
| `s` | skip this step |
| `c` | cancel a running step (between actions) |
| `u` | undo: run the rollback (asks first) |
| `n` | next step |
| `escape` | back to the plan |
"""
    BINDINGS = [
        Binding("a", "apply", "Apply"),
        Binding("o", "toggle_opt_in", "Opt-ins"),
        Binding("e", "expand", "Every node"),
        Binding("d", "dry_run", "Dry run"),
        Binding("s", "skip", "Skip"),
        Binding("c", "cancel", "Cancel"),
        Binding("u", "undo", "Undo"),
        Binding("n", "next", "Next"),
    ]

    phase: reactive[str] = reactive("idle")  # refreshing | idle | running | finished

    def __init__(self, step: str, auto: bool = False) -> None:
        super().__init__(id=f"step-{step}")
        self.step = step
        self.auto = auto  # opened by Run all or `n`: nothing to do passes on by itself
        self._buffer = LineBuffer()
        self._cancel = threading.Event()
        self._started = 0.0
        self._ended: float | None = None
        self._drain_timer: Any = None
        self._approved: list[str] = []
        self._running_actions: list[Any] = []
        self._unticked: set[str] = set()  # mutating, not opt-in, unticked by the user
        self._opt_in_selected: set[str] = set()  # opt-ins ticked by the user
        self._defaults: set[str] = set()  # ticked unless unticked: flow.approvable_ids(plan)
        self._listed: Any = None  # the plan the action list shows
        self._ran_plan: Any = None
        self._rollback = False
        self._rollback_plan: Any = None
        self._rollout_started: float | None = None
        self._rollout_timeout = v.ROLLOUT_TIMEOUT
        self._expanded = False  # `e`: every node's finding under its group
        self._groups_of: tuple[Any, bool] | None = None

    @property
    def plan(self) -> Any:
        plan = self.wizard.state.plans.get(self.step)
        if plan is None:  # not planned yet: an empty plan until plan_for_approval answers
            from clusterfix_tui.core.model import Plan

            plan = Plan(self.step, v.STEP_TITLES.get(self.step, self.step))
        return plan

    def _ticked(self, action: Any) -> bool:
        if not action.mutating:
            return True  # read-only: always runs, cannot be unticked
        if action.id in self._defaults:  # the flow's default approval (what --yes runs)
            return action.id not in self._unticked
        return action.id in self._opt_in_selected

    def _selected_actions(self) -> list[Any]:
        """What Apply approves: the actions ticked in the list (read-only ones always)."""
        return [a for a in self.plan.actions if self._ticked(a)]

    def compose_body(self) -> ComposeResult:
        yield Static("", id="step-title")
        with VerticalScroll(id="details"):
            yield Static("", id="plan-text")
        actions: SelectionList[str] = SelectionList(id="actions")
        actions.border_title = "actions, exactly as they will run (space: tick / untick)"
        yield actions
        with Vertical(id="run"):
            yield Static("", id="progress")
            yield Static("", id="rollout-label")
            yield ProgressBar(id="rollout", show_eta=False)
            # filled when the step ends, while it shows: LiveTable draws it at its measured widths
            yield LiveTable(id="results", cursor_type="row", zebra_stripes=True)
            yield LogPane(max_lines=self.wizard.pane_max_lines, id="log")
        with Horizontal(classes="buttons"):
            yield Button("Apply \\[a]", id="apply", variant="warning", compact=True)
            yield Button("Dry run \\[d]", id="dry-run", compact=True)
            yield Button("Skip \\[s]", id="skip", compact=True)
            yield Button("Cancel \\[c]", id="cancel", variant="error", compact=True)
            yield Button("Undo \\[u]", id="undo", compact=True)
            yield Button("Next \\[n]", id="next", variant="primary", compact=True)
            yield Button("Back \\[esc]", id="back", compact=True)

    def on_mount(self) -> None:
        t = self.query_one("#results", DataTable)
        for label, width in (("node", 8), ("status", 9), ("exit", 4), ("secs", 5), ("command", None)):
            t.add_column(label, key=label, width=width)
        self.query_one("#rollout", ProgressBar).display = False
        self.query_one("#rollout-label", Static).display = False
        self._replan()

    def _replan(self) -> None:
        """Ask the flow for the plan to approve (it re-diagnoses and re-plans when the cluster
        changed since the last one)."""
        self.phase = "refreshing"
        self._render_plan()
        self._plan_for_approval(self.step)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan",
          description="Planning from the cluster as it is now")
    def _plan_for_approval(self, step: str) -> None:
        flow = self.wizard.flow
        plan = flow.plan_for_approval(step, on_progress=lambda *a: None)
        self.post_message(m.PlansBuilt({step: plan}, flow.diagnosis, approval=True))

    def on_plans_built(self, event: m.PlansBuilt) -> None:
        if event.diagnosis is not None and event.diagnosis is not self.wizard.state.diagnosis:
            self.wizard.set_diagnosis(event.diagnosis)
        self.wizard.set_plans(event.plans)
        self._defaults = set(self.wizard.flow.approvable_ids(self.plan))
        self.phase = "idle"
        self._render_plan()
        self._sync()
        self._run_all_next()

    def on_plan_stale(self, event: m.PlanStale) -> None:
        self.notify(f"{event.reason}: planned again from the cluster as it is now. Review it, "
                    "then apply.", severity="warning", timeout=10)
        self.wizard.log_event(f"{self.step}: plan refused as stale; re-planned", "yellow")
        self.wizard.state.run_all = False
        self._replan()

    def _run_all_next(self) -> None:
        """Opened by Run all or `n`: a step with nothing to do passes on by itself; in Run all a
        step with actions asks for its confirmation at once (each step is still confirmed)."""
        if not self.auto or self.phase != "idle":
            return
        if not self.plan.actions:
            self.wizard.log_event(f"{self.step}: nothing to do (planned from the cluster now)")
            self.notify(f"{self.step}: nothing to do", severity="information")
            self.call_after_refresh(self.action_next)
        elif self.wizard.state.run_all:
            self.call_after_refresh(self.action_apply)

    # -- rendering ---------------------------------------------------------------------------
    def _render_plan(self) -> None:
        plan = self.plan
        index = STEP_ORDER.index(self.step) + 1 if self.step in STEP_ORDER else 0
        st = self.wizard.step_state(self.step)
        title = Text()
        title.append(f"Step {index}/{len(STEP_ORDER)}: {self.step}", style="bold")
        title.append(f"  {v.STEP_TITLES.get(self.step, plan.title)}  ")
        title.append(st, style=v.STEP_STATE_STYLE.get(st, ""))
        self.query_one("#step-title", Static).update(title)
        if self.phase == "refreshing":
            self.query_one("#plan-text", Static).update(Text(
                "Planning this step from the cluster as it is now (diagnosing again first when "
                "anything changed since the last diagnosis), so that what you approve is what "
                "the cluster needs now…",
                style="italic"))
            return

        text = Text()
        text.append("Findings this step answers\n", style="bold underline")
        if not plan.findings:
            text.append("  none: nothing to do\n", style="dim")
        # one cause, one line: findings sharing a cause across nodes are one item (core/group.py)
        groups = group_findings(plan.findings)
        for g in groups:
            if not g.grouped:
                self._finding_text(text, g.findings[0])
                continue
            text.append(f"  {g.severity:<8} ", style=v.SEVERITY_STYLE.get(g.severity, ""))
            text.append(f"{g.count} nodes  {g.code}\n", style="bold")
            text.append(f"           {g.title}\n")
            shown = all_nodes_text(g.nodes) if self._expanded else nodes_text(g.nodes)
            text.append(f"           nodes: {shown}", style="cyan")
            text.append("" if self._expanded else "  (e: every node's finding)", style="dim")
            text.append("\n")
            if self._expanded:
                for f in g.findings:
                    self._finding_text(text, f, indent="    ")
            else:
                first = g.findings[0]
                if first.evidence:
                    text.append(f"           evidence on {first.node}:\n", style="dim")
                for line in first.evidence:
                    text.append("           │ ", style="dim")
                    text.append(f"{line}\n", style="yellow")
        if not plan.actions:
            text.append("\nActions: none\n", style="dim")
        else:
            n = len(self._selected_actions())
            text.append(f"\nActions: {n} of {len(plan.actions)} ticked, in the list below\n",
                        style="bold")
            self._why_text(text, plan, groups)
        self._list_actions(plan)
        risks = sorted({a.risk for a in plan.actions if a.risk})
        if risks or plan.notes:
            text.append("\nRisk\n", style="bold underline")
            for r in risks:
                text.append(f"  ! {r}\n", style="yellow")
            for n in plan.notes:
                text.append(f"  • {n}\n")
        if plan.actions:
            text.append("\nRollback (Undo)\n", style="bold underline")
            last: tuple[str, ...] | None = None
            for fold in fold_actions(plan.actions, key=lambda a: (
                    a.rollback.command if a.rollback is not None else None,
                    a.rollback_note, id_kind(a.id))):
                a = fold.first
                if len(fold.actions) == 1:
                    where, last = f"  {a.target}: ", None
                else:  # the same rollback on many nodes: once, under every node it runs on
                    if tuple(fold.nodes) != last:
                        last = tuple(fold.nodes)
                        text.append(f"  on each of {len(last)} nodes "
                                    f"({all_nodes_text(last)}):\n")
                    where = "    "
                if a.rollback is not None:
                    text.append(f"{where}$ {_shown(a.rollback.command)}\n")
                elif a.rollback_note:
                    text.append(f"{where}manual: {a.rollback_note}\n", style="dim")
                else:
                    text.append(f"{where}no automatic rollback for {fold.ids_text()}\n",
                                style="dim")
        self.query_one("#plan-text", Static).update(text)

    @staticmethod
    def _finding_text(text: Text, f: Any, indent: str = "") -> None:
        text.append(f"{indent}  {f.severity:<8} ", style=v.SEVERITY_STYLE.get(f.severity, ""))
        text.append(f"{f.node}  {f.code}\n", style="bold")
        text.append(f"{indent}           {f.title}\n")
        for line in f.evidence:
            text.append(f"{indent}           │ ", style="dim")
            text.append(f"{line}\n", style="yellow")

    @staticmethod
    def _why_text(text: Text, plan: Any, groups: Any) -> None:
        """Why each action runs: as the plan's entries (the actions repairing one grouped cause
        are one entry), the same why on several nodes once with the nodes."""
        by_id = {a.id: a for a in plan.actions}

        def whys(actions: list[Any], indent: str) -> None:
            # the same why on several nodes once (the commands are in the list below)
            for fold in fold_actions(actions, key=lambda a: (a.why, id_kind(a.id))):
                a = fold.first
                if not a.why:
                    continue
                many = f" on {len(fold.actions)} nodes" if len(fold.actions) > 1 else ""
                text.append(f"{indent}{fold.ids_text()}{many}: ", style="dim")
                text.append(f"{a.why}\n", style="italic")

        loose: list[Any] = []
        for e in plan_entries(plan, groups):
            acts = [by_id[i] for i in e["action_ids"]]
            if e["group"] is None:
                loose.extend(acts)
                continue
            whys(loose, "  ")
            loose = []
            text.append(f"  ▸ {e['title']}: ", style="bold")
            text.append(f"{len(acts)} action(s) on {e['count']} node(s)\n")
            whys(acts, "    ")
        whys(loose, "  ")

    def _list_actions(self, plan: Any) -> None:
        """The action list: one line per action, its node and exact command, ticked or not."""
        sl = self.query_one("#actions", SelectionList)
        if self._listed is plan:
            return
        self._listed = plan
        highlighted = sl.highlighted
        sl.clear_options()
        for a in plan.actions:
            prompt = Text()
            prompt.append(f"{a.target if a.target != CLUSTER else 'API'} ", style="bold cyan")
            if not a.mutating:
                prompt.append("(read-only) ", style="dim")
            elif is_opt_in(a):
                prompt.append("OPT-IN ", style="bold magenta")
            prompt.append(f"$ {_shown(a.command)}")
            sl.add_option(Selection(prompt, a.id, self._ticked(a), disabled=not a.mutating))
        self.set_class(not plan.actions, "-no-actions")
        if plan.actions:
            sl.highlighted = min(highlighted or 0, len(plan.actions) - 1)
            sl.focus()  # space ticks / unticks the highlighted action at once

    @on(SelectionList.SelectionToggled, "#actions")
    def _action_toggled(self, event: SelectionList.SelectionToggled) -> None:
        action_id = str(event.selection.value)
        action = next((a for a in self.plan.actions if a.id == action_id), None)
        if action is None or not action.mutating:
            return
        ticked = action_id in event.selection_list.selected
        if action_id not in self._defaults:
            (self._opt_in_selected.add if ticked else self._opt_in_selected.discard)(action_id)
        else:
            (self._unticked.discard if ticked else self._unticked.add)(action_id)
        self.wizard.log_event(f"{self.step}: {action_id} {'ticked' if ticked else 'unticked'}")
        self._render_plan()

    def watch_phase(self, phase: str) -> None:
        self.set_class(phase in ("idle", "refreshing"), "-idle")
        self.set_class(phase == "running", "-running")
        self.set_class(phase == "finished", "-finished")
        if self.is_mounted:
            self.query_one("#actions", SelectionList).disabled = phase != "idle"
            self._sync()

    def _sync(self) -> None:
        """Buttons and bindings follow the phase."""
        has_actions = bool(self.plan.actions)
        shown = {
            "apply": self.phase in ("idle", "refreshing") and has_actions,
            "dry-run": self.phase in ("idle", "refreshing") and has_actions,
            "skip": self.phase in ("idle", "refreshing"),
            "cancel": self.phase == "running",
            "undo": self._can_undo(),
            "next": self.phase != "running",
            "back": self.phase != "running",
        }
        for button_id, visible in shown.items():
            self.query_one(f"#{button_id}", Button).display = visible
        self.refresh_bindings()

    def _can_undo(self) -> bool:
        outcome = self.wizard.state.outcomes.get(self.step)
        applied = self.wizard.state.applied_plans.get(self.step)
        return (self.phase in ("idle", "finished") and outcome is not None
                and self.step not in self.wizard.state.rolled_back and applied is not None
                and outcome.status in ("changed", "partial", "failed", "cancelled")
                and any(a.rollback is not None for a in applied.actions))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        running = self.phase == "running"
        if action in ("apply", "dry_run"):
            return self.phase == "idle" and bool(self.plan.actions)
        if action == "expand":
            return self._has_groups()
        if action == "toggle_opt_in":
            return self.phase == "idle" and any(is_opt_in(a) for a in self.plan.actions)
        if action == "skip":
            return self.phase == "idle"
        if action == "cancel":
            return running
        if action == "undo":
            return self._can_undo()
        if action in ("next", "back"):
            return not running
        return super().check_action(action, parameters)

    def _update_progress(self) -> None:
        clock = self.wizard.clock
        elapsed = (self._ended if self._ended is not None else clock()) - self._started
        total, per_node, commands = self._buffer.snapshot_counts()
        planned: dict[str, int] = {}
        for a in self._running_actions:
            planned[a.target] = planned.get(a.target, 0) + 1
        done_nodes = self._done_by_node()
        text = Text()
        label = "Rolling back" if self._rollback else "Running"
        if self.phase == "finished":
            outcome = self.wizard.state.outcomes.get(self.step)
            label = f"{'Rollback' if self._rollback else 'Step'} {outcome.status if outcome else ''}"
        text.append(f"{label}  ", style="bold")
        text.append(f"elapsed {v.hms(elapsed)}  {total} lines", style="dim")
        if self._cancel.is_set() and self.phase == "running":
            text.append("  cancelling after the current action…", style="bold yellow")
        for node in sorted(set(planned) | set(per_node)):
            n = planned.get(node, 0)
            k = done_nodes.get(node, min(commands.get(node, 0), n))
            bar = "▮" * k + "▯" * max(0, n - k)
            text.append(f"\n  {node:<8} ", style="bold")
            text.append(f"{bar:<6} {k}/{n} actions  {per_node.get(node, 0)} lines")
        self.query_one("#progress", Static).update(text)

    def _done_by_node(self) -> dict[str, int]:
        outcome = self.wizard.state.outcomes.get(self.step)
        if self.phase != "finished" or outcome is None:
            return {}
        done: dict[str, int] = {}
        for a in outcome.actions:
            if a.status in ("ok", "failed", "dry-run"):
                done[a.target] = done.get(a.target, 0) + 1
        return done

    # -- running -----------------------------------------------------------------------------
    def _start(self, rollback: bool) -> None:
        if self._running_actions:
            self.remove_class("-quiet")
        self._rollback = rollback
        self._cancel.clear()
        self._started = self.wizard.clock()
        self._ended = None
        self._rollout_started = None
        self.query_one("#rollout", ProgressBar).display = False
        self.query_one("#rollout-label", Static).display = False
        self.query_one("#results", DataTable).clear()
        self.phase = "running"
        self.wizard.step_running = True
        self._update_progress()
        self._tick = self.set_interval(0.5, self._update_progress)

    def _on_line(self, node: str, stream: str, line: str) -> None:
        """Called in the worker thread for every line: buffer it, signal once per batch."""
        wait = v.rollout_progress(node, line)
        if wait is not None:
            self.post_message(m.RolloutProgressed(*wait))
        if self._buffer.feed(node, stream, self.wizard.redact(line, (node, stream))):
            self.post_message(m.StepLinesLogged())
        self._buffer.backpressure()

    @work(thread=True, exclusive=True, exit_on_error=False, group="step",
          description="Applying the step")
    def _apply_plan(self, plan: Any, approved: list[str]) -> None:
        from clusterfix_tui.core.flow import StalePlanError

        try:
            outcome = self.wizard.flow.apply(plan, approved, on_line=self._on_line,
                                             cancel=self._cancel)
        except StalePlanError as exc:
            self.post_message(m.StepFinished(plan.step, None))
            self.post_message(m.PlanStale(plan.step, str(exc)))
            return
        self.post_message(m.StepFinished(plan.step, outcome))

    @work(thread=True, exclusive=True, exit_on_error=False, group="step",
          description="Rolling the step back")
    def _rollback_step(self, plan: Any, approved: list[str]) -> None:
        outcome = self.wizard.flow.apply_rollback(plan, approved, on_line=self._on_line,
                                                  cancel=self._cancel)
        self.post_message(m.StepFinished(self.step, outcome, rollback=True))

    @work(thread=True, exclusive=True, exit_on_error=False, group="step",
          description="Skipping the step")
    def _skip_step(self, plan: Any, reason: str) -> None:
        self.post_message(m.StepFinished(plan.step, self.wizard.flow.skip(plan, reason)))

    def on_rollout_progressed(self, event: m.RolloutProgressed) -> None:
        """The rollout wait after the step's actions: ready / total pods, and its time-out."""
        clock = self.wizard.clock
        if self._rollout_started is None:
            self._rollout_started = clock()
        bar = self.query_one("#rollout", ProgressBar)
        bar.update(total=max(1, event.total), progress=event.ready)
        bar.display = True
        label = self.query_one("#rollout-label", Static)
        left = max(0.0, self._rollout_timeout - (clock() - self._rollout_started))
        text = Text()
        text.append(f"rollout: {event.what} {event.ready}/{event.total} Running and Ready",
                    style="bold green" if event.ready >= event.total else "bold")
        text.append(f"  · gives up after {v.hms(self._rollout_timeout)}"
                    f" ({v.hms(left)} left)", style="dim")
        label.update(text)
        label.display = True

    def on_step_lines_logged(self, event: m.StepLinesLogged) -> None:
        wait = self._buffer.min_interval - (self.wizard.monotonic() - self._buffer._last_signal)
        if wait > 0:
            if self._drain_timer is None:
                self._drain_timer = self.set_timer(wait, self._drain)
            return
        self._drain()

    def _drain(self) -> None:
        self._drain_timer = None
        lines, dropped = self._buffer.drain()
        if lines or dropped:
            self.query_one(LogPane).write_lines(lines, dropped)
            self.wizard.log_lines(lines, dropped)

    def on_step_finished(self, event: m.StepFinished) -> None:
        self._drain()
        outcome = event.outcome
        if outcome is None:  # the flow refused the plan before running anything
            self._ended = self.wizard.clock()
            if hasattr(self, "_tick"):
                self._tick.stop()
            self.wizard.step_running = False
            self.phase = "idle"
            return
        self.wizard.record_outcome(event.step, outcome, rollback=event.rollback,
                                   plan=self._ran_plan)
        self._ended = self.wizard.clock()
        if hasattr(self, "_tick"):
            self._tick.stop()
        self.phase = "finished"
        self.wizard.step_running = False
        t = self.query_one("#results", DataTable)
        t.clear()
        for a in outcome.actions:
            t.add_row(*outcome_row(a))
        t.display = bool(outcome.actions)
        self._update_progress()
        self._render_plan()
        self._sync()
        severity = "information" if outcome.status in ("changed", "unchanged", "skipped",
                                                       "dry-run") else "warning"
        what = "Rollback" if event.rollback else f"Step {event.step}"
        self.notify(f"{what}: {outcome.status}. {outcome.message}".strip(), severity=severity)
        self.wizard.after_step_finished()
        if self.wizard.state.run_all and not event.rollback:
            if outcome.status in ("changed", "unchanged", "skipped", "dry-run"):
                self.call_after_refresh(self.action_next)  # on to the next step, still confirmed
            else:
                self.wizard.state.run_all = False
                self.notify(f"Run all stopped: {self.step} {outcome.status}", severity="warning")

    def worker_failed(self, worker) -> None:
        if worker.group == "step":
            self._drain()
            self._ended = self.wizard.clock()
            if hasattr(self, "_tick"):
                self._tick.stop()
            self.wizard.step_running = False
            self.phase = "finished" if self.wizard.state.outcomes.get(self.step) else "idle"
            self._sync()
            self.wizard.after_step_finished()

    # -- actions -----------------------------------------------------------------------------
    def _change_text(self, actions: list[Any], verb: str) -> Text:
        text = Text()
        text.append(f"{verb} {len(actions)} action(s) of step {self.step}", style="bold")
        text.append(" (dry-run session: recorded, not run)\n" if self.wizard.dry_run else "\n")
        folds = fold_actions(actions)
        if any(len(f.actions) > 1 for f in folds):
            # the same command on many nodes: once, with every node it runs on (never abbreviated)
            last: tuple[str, ...] | None = None
            for fold in folds:
                nodes = tuple(fold.nodes)
                if nodes != last:
                    where = (nodes[0] if nodes[0] != CLUSTER else "the cluster (API)") \
                        if len(nodes) == 1 else f"each of {len(nodes)} nodes: " \
                        f"{all_nodes_text(nodes)}"
                    text.append(f"\non {where}:\n", style="bold cyan")
                    last = nodes
                text.append(f"  $ {_shown(fold.first.command)}\n")
        else:
            by_node: dict[str, list[Any]] = {}
            for a in actions:
                by_node.setdefault(a.target, []).append(a)
            for node, acts in by_node.items():
                text.append(f"\non {node if node != CLUSTER else 'the cluster (API)'}:\n",
                            style="bold cyan")
                for a in acts:
                    text.append(f"  $ {_shown(a.command)}\n")
        risks = sorted({a.risk for a in actions if a.risk})
        for r in risks:
            text.append(f"\n! {r}", style="yellow")
        return text

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        if not self.check_action("apply", ()):
            return
        if not self.wizard.flow.is_current(self.plan):
            # approval time: the cluster changed since this plan was built; show the new one
            self.notify("The cluster changed since this plan was built: re-planning. Review it, "
                        "then apply.", severity="warning")
            self._replan()
            return
        actions = self._selected_actions()
        if not any(a.mutating for a in actions):
            self.notify("No action ticked (space ticks the highlighted one; o the opt-ins)",
                        severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                self.wizard.log_event(f"{self.step}: apply declined at the confirmation")
                self.wizard.state.run_all = False
                return
            self._approved = [a.id for a in actions]
            self._running_actions = actions
            self.wizard.log_event(f"{self.step}: apply approved ({len(actions)} actions)", "bold")
            self._start(rollback=False)
            self._ran_plan = self.plan
            self._apply_plan(self.plan, self._approved)

        self.app.push_screen(
            ConfirmationModal(f"Apply {self.step}?", self._change_text(actions, "Run"),
                              yes="Apply", no="Don't", danger=not self.wizard.dry_run,
                              id="confirm-apply"),
            confirmed,
        )

    @on(Button.Pressed, "#dry-run")
    def action_dry_run(self) -> None:
        if not self.check_action("dry_run", ()):
            return
        pane = self.query_one(LogPane)
        pane.border_title = "dry run: nothing was executed"
        lines = [(a.target, "command", f"would run: $ {_shown(a.command)}")
                 for a in self._selected_actions()]
        pane.write_lines(lines)
        self.wizard.log_lines(lines, 0)
        self.add_class("-previewed")
        self.wizard.state.previewed.add(self.step)
        self.wizard.log_event(f"{self.step}: dry run shown ({len(lines)} actions, none executed)")

    def _has_groups(self) -> bool:
        """Whether the plan shown has findings grouped (`e` has something to expand); cached per
        plan (bindings are checked often)."""
        plan = self.plan
        if self._groups_of is None or self._groups_of[0] is not plan:
            self._groups_of = (plan, any(g.grouped for g in group_findings(plan.findings)))
        return self._groups_of[1]

    def action_expand(self) -> None:
        """Every node's finding under its group, or the groups folded again."""
        self._expanded = not self._expanded
        self._render_plan()

    def action_toggle_opt_in(self) -> None:
        opt = {a.id for a in self.plan.actions if is_opt_in(a)}
        if not opt or self.phase != "idle":
            return
        self._opt_in_selected = set() if self._opt_in_selected >= opt else opt
        sl = self.query_one("#actions", SelectionList)
        for action_id in opt:
            (sl.select if action_id in self._opt_in_selected else sl.deselect)(action_id)
        self._render_plan()
        self.notify(f"opt-in actions {'ticked' if self._opt_in_selected else 'unticked'}")

    @on(Button.Pressed, "#skip")
    def action_skip(self) -> None:
        if not self.check_action("skip", ()):
            return
        self._approved = []
        self._running_actions = []
        self.wizard.log_event(f"{self.step}: skipped by the user", "magenta")
        self.add_class("-quiet")
        self._ran_plan = None
        self._start(rollback=False)
        self._skip_step(self.plan, "skipped by the user")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.phase != "running":
            return
        self._cancel.set()
        self.wizard.log_event(f"{self.step}: cancel requested", "yellow")
        self.notify("Stopping after the current action…", severity="warning")
        self._update_progress()

    @on(Button.Pressed, "#undo")
    def action_undo(self) -> None:
        if not self._can_undo():
            return
        self._plan_rollback(self.step)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan",
          description="Planning the rollback")
    def _plan_rollback(self, step: str) -> None:
        self.post_message(m.RollbackPlanned(step, self.wizard.flow.plan_rollback(step)))

    def on_rollback_planned(self, event: m.RollbackPlanned) -> None:
        """Undo shows the rollback plan the session will run: the same actions, same order."""
        plan = event.plan
        rollbacks = list(plan.actions)
        if not rollbacks:
            self.notify("Nothing this session ran for this step can be rolled back "
                        "automatically", severity="warning")
            return
        body = self._change_text(rollbacks, "Roll back with")
        for note in plan.notes:
            body.append(f"\n• {note}", style="dim")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._approved = [a.id for a in rollbacks]
                self._running_actions = rollbacks
                self._rollback_plan = plan
                self.wizard.log_event(f"{self.step}: rollback approved", "bold")
                self._start(rollback=True)
                self._rollback_step(plan, self._approved)

        self.app.push_screen(
            ConfirmationModal(f"Undo {self.step}?", body, yes="Undo", no="Keep", danger=True,
                              id="confirm-undo"),
            confirmed,
        )

    @on(Button.Pressed, "#next")
    def action_next(self) -> None:
        if self.phase == "running" or not self.is_current:
            return
        if not self.wizard.open_next_step(self.step, replace=True):
            self.app.pop_screen()  # the plan screen checks whether another pass is needed

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        if self.phase == "running":
            self.notify("A step is running: cancel it first (c)", severity="warning")
            return
        self.wizard.state.run_all = False
        self.app.pop_screen()


def outcome_row(a: Any) -> tuple[Any, ...]:
    """One row of the step's results table. The command is a Text, never a str: a DataTable reads
    a str cell as markup, so a command holding node-derived text (a foreign rule's comment
    "[/x]") raised MarkupError and "[bold]" restyled it; its control characters shown visibly."""
    r = a.result
    return (Text(str(a.target)), Text(a.status, style=STATUS_STYLE.get(a.status, "")),
            "" if r is None or r.exit_code is None else str(r.exit_code),
            "" if r is None else f"{r.duration:.1f}", Text(_shown(a.command)))
