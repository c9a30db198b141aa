"""The runbook's steps in order, with their state; run all in order or pick one."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Static

from clusterfix_tui.core.group import group_findings, plan_entries
from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal
from clusterfix_tui.ui.widgets.live_table import LiveTable


class PlanScreen(WizardScreen):
    HELP = """\
## Plan
The runbook's repair steps, in the runbook's order, each with its state: needed, nothing to do,
done, skipped, failed. Open one to see exactly what it would run, or run them all in order
(each step still asks before it changes anything).

| key | what |
|---|---|
| `enter` | open the highlighted step |
| `a` | run all steps of the pass in order (each asks; nothing to do passes on) |
| `v` | validate the cluster |
| `r` | re-plan from the last diagnosis |

After the last step of a pass the wizard waits for the cluster to settle, diagnoses again and
offers another pass for the steps that still have something to do.
"""
    BINDINGS = [
        Binding("a", "run_all", "Run all"),
        Binding("v", "validate", "Validate"),
        Binding("r", "replan", "Re-plan"),
    ]

    def __init__(self) -> None:
        super().__init__(id="plan")
        self.converging = False  # flow.next_pass() runs: no validation or run meanwhile

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run_all", "validate", "replan") and self.converging:
            return False
        return super().check_action(action, parameters)

    def worker_failed(self, worker) -> None:
        if worker.group in ("plan", "pass") and self.converging:
            self.converging = False
            self.refresh_bindings()

    def compose_body(self) -> ComposeResult:
        yield Static("Building the plan…", id="plan-status")
        table: DataTable = LiveTable(id="steps", cursor_type="row", zebra_stripes=True)
        table.border_title = "repair steps (runbook order)"
        yield table
        with VerticalScroll(id="step-summary", classes="detail"):
            yield Static("", id="step-summary-text")
        with Horizontal(classes="buttons"):
            yield Button("Open \\[enter]", id="open", variant="primary", compact=True)
            yield Button("Run all \\[a]", id="run-all", compact=True)
            yield Button("Validate \\[v]", id="validate", compact=True)

    def on_mount(self) -> None:
        t = self.query_one("#steps", DataTable)
        t.add_column("#", key="n", width=2)
        t.add_column("step", key="step", width=18)
        t.add_column("state", key="state", width=13)
        t.add_column("finds", key="findings", width=5)
        t.add_column("actions", key="actions", width=7)
        t.add_column("nodes", key="nodes")
        for i, step in enumerate(STEP_ORDER, 1):
            t.add_row(str(i), step, "", "", "", "", key=step)
        self._build_plans()

    def on_screen_resume(self) -> None:
        if not self.is_mounted:
            return
        if self.wizard.state.pass_ended:
            # the user went past the last step of the pass: the flow settles, re-diagnoses and
            # says which steps another pass would act on
            self.wizard.state.pass_ended = False
            self.converging = True
            self.query_one("#plan-status", Static).update(Text(
                "The pass is over: waiting for the cluster to settle, then diagnosing again to "
                "see whether another pass is needed…", style="dim"))
            self.refresh_bindings()
            self._converge()
        else:
            self._build_plans()

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan",
          description="Planning the repair steps")
    def _build_plans(self) -> None:
        flow = self.wizard.flow
        plans = flow.preview_all()  # looking at plans is not deciding on them: not journaled
        self.post_message(m.PlansBuilt(plans, flow.diagnosis))

    def on_plans_built(self, event: m.PlansBuilt) -> None:
        if event.diagnosis is not None and event.diagnosis is not self.wizard.state.diagnosis:
            self.wizard.set_diagnosis(event.diagnosis)
        self.wizard.set_plans(event.plans)
        self.refresh_steps()

    # -- converge: another pass ----------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="plan",
          description="Checking whether another pass is needed")
    def _converge(self) -> None:
        flow = self.wizard.flow
        steps = flow.next_pass(
            on_wait=lambda failing, left: self.post_message(m.SettleWaited(failing, left)),
            on_progress=lambda *a: self.post_message(m.DiagnosisProgressed(
                " ".join(str(x) for x in a))),
            start=False)
        self.post_message(m.PassPlanned(list(steps), flow.diagnosis))
        self.post_message(m.PlansBuilt(flow.preview_all(), flow.diagnosis))

    def on_settle_waited(self, event: m.SettleWaited) -> None:
        status = Text()
        status.append("Waiting for the cluster to settle after the changes: ", style="bold")
        status.append(f"{len(event.failing)} check(s) still failing, gives up in "
                      f"{v.hms(event.left)}", style="dim")
        self.query_one("#plan-status", Static).update(status)

    def on_diagnosis_progressed(self, event: m.DiagnosisProgressed) -> None:
        self.query_one("#plan-status", Static).update(
            Text(f"Diagnosing again… {event.text}", style="dim"))

    def on_pass_planned(self, event: m.PassPlanned) -> None:
        self.converging = False
        self.refresh_bindings()
        if event.diagnosis is not None and event.diagnosis is not self.wizard.state.diagnosis:
            self.wizard.set_diagnosis(event.diagnosis)
        if not event.steps:
            return
        flow = self.wizard.flow
        body = Text()
        body.append(f"Pass {flow.pass_no} is over and findings remain that these steps can act "
                    "on (fixing one fault often unmasks another):\n\n")
        for step in event.steps:
            body.append(f"  {step}", style="bold")
            body.append(f"  {v.STEP_TITLES.get(step, '')}\n", style="dim")
        body.append("\nRun another pass over them? Each step is planned from the cluster as "
                    "it is now and still asks before it changes anything. Actions that failed "
                    "are not offered again.")

        def answered(yes: bool | None) -> None:
            if yes:
                self.converging = True  # until the pass has started
                # after the dialog is gone: a worker started from inside its callback is lost
                self.call_after_refresh(self._start_pass, list(event.steps))
            else:
                self.wizard.log_event("another pass declined")

        self.app.push_screen(ConfirmationModal(
            f"Another pass ({len(event.steps)} step(s))?", body, yes="Run pass",
            no="Not now", id="confirm-pass"), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pass",
          description="Starting another pass")
    def _start_pass(self, steps: list[str]) -> None:
        self.post_message(m.PassStarted(self.wizard.flow.start_pass(steps)))

    def on_pass_started(self, event: m.PassStarted) -> None:
        self.converging = False
        self.refresh_bindings()
        self.wizard.log_event(f"pass {event.pass_no} started", "bold")
        self.action_run_all()

    def refresh_steps(self) -> None:
        state = self.wizard.state
        t = self.query_one("#steps", DataTable)
        needed = 0
        for step in STEP_ORDER:
            plan = state.plans.get(step)
            st = self.wizard.step_state(step)
            needed += st == "needed"
            nodes = sorted({a.target for a in plan.actions}) if plan else []
            t.update_cell(step, "state", Text(st, style=v.STEP_STATE_STYLE.get(st, "")))
            t.update_cell(step, "findings", str(len(plan.findings)) if plan else "")
            t.update_cell(step, "actions", str(len(plan.actions)) if plan else "")
            t.update_cell(step, "nodes", v.compact_nodes(nodes), update_width=True)
        status = Text()
        if not state.plans:
            status.append("Building the plan…", style="dim")
        elif needed:
            status.append(f"{needed} step(s) needed. ", style="bold yellow")
            status.append("enter: open one · a: run all in order · v: validate", style="dim")
        else:
            status.append("No step left to run. ", style="bold green")
            status.append("v: validate the cluster", style="dim")
        self.query_one("#plan-status", Static).update(status)
        if t.row_count:
            self._summarise(STEP_ORDER[min(t.cursor_row, len(STEP_ORDER) - 1)])

    def _summarise(self, step: str) -> None:
        plan = self.wizard.state.plans.get(step)
        text = Text()
        text.append(f"{step}: {v.STEP_TITLES.get(step, '')}\n", style="bold")
        if plan is None:
            text.append("planning…", style="dim")
        else:
            # one cause, one line: the findings a cause shares across nodes, counted
            groups = group_findings(plan.findings)
            for g in groups:
                text.append(f"  {g.severity:<8} ", style=v.SEVERITY_STYLE.get(g.severity, ""))
                if g.grouped:
                    text.append(f"{g.title}\n")
                    text.append(f"           {v.compact_nodes(g.nodes, 6)}\n", style="dim")
                else:
                    f = g.findings[0]
                    text.append(f"{f.node}: {f.title}\n")
            if not plan.findings:
                text.append("  no finding for this step\n", style="dim")
            entries = plan_entries(plan, groups)
            if any(e["group"] for e in entries):
                # the actions repairing one grouped cause are one entry of the plan
                text.append(f"  planned as {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
                            f" for {len(plan.actions)} action(s):\n", style="bold")
                for e in entries:
                    n = len(e["action_ids"])
                    text.append(f"    • {e['title']}", style="" if e["group"] else "dim")
                    text.append(f"  ({n} action{'s' if n != 1 else ''} on "
                                f"{v.compact_nodes(e['nodes'])})\n", style="dim")
            outcome = self.wizard.state.outcomes.get(step)
            if outcome is not None:
                text.append(f"  last run: {outcome.status} {outcome.message}\n", style="italic")
        self.query_one("#step-summary-text", Static).update(text)

    @on(DataTable.RowHighlighted, "#steps")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value:
            self._summarise(event.row_key.value)

    @on(DataTable.RowSelected, "#steps")
    def _selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self._open(event.row_key.value)

    @on(Button.Pressed, "#open")
    def _open_pressed(self) -> None:
        t = self.query_one("#steps", DataTable)
        self._open(STEP_ORDER[t.cursor_row])

    def _open(self, step: str) -> None:
        if step not in self.wizard.state.plans:
            self.notify("The plan is still being built", severity="warning")
            return
        self.wizard.state.run_all = False
        self.wizard.open_step(step)

    @on(Button.Pressed, "#run-all")
    def action_run_all(self) -> None:
        if self.converging:
            self.notify("Checking whether another pass is needed…", severity="warning")
            return
        if not self.wizard.state.plans:
            self.notify("The plan is still being built", severity="warning")
            return
        self.wizard.state.run_all = True
        self.wizard.state.pass_ended = False
        if not self.wizard.open_next_step(None):
            self.notify("No step in this pass", severity="information")

    @on(Button.Pressed, "#validate")
    def action_validate(self) -> None:
        if self.converging:
            self.notify("Checking whether another pass is needed…", severity="warning")
            return
        self.wizard.open_validation()

    def action_replan(self) -> None:
        self.wizard.state.plans.clear()
        self.refresh_steps()
        self._build_plans()
