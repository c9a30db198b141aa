"""The runbook's steps in order, with their state; run all in order or pick one."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Static

from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen


class PlanScreen(WizardScreen):
    HELP = """\
## Plan
The runbook's repair steps, in the runbook's order, each with its state: needed, nothing to do,
done, skipped, failed. Open one to see exactly what it would run, or run them all in order
(each step still asks before it changes anything).

| key | what |
|---|---|
| `enter` | open the highlighted step |
| `a` | run all needed steps in order |
| `v` | validate the cluster |
| `r` | re-plan from the last diagnosis |
"""
    BINDINGS = [
        Binding("a", "run_all", "Run all"),
        Binding("v", "validate", "Validate"),
        Binding("r", "replan", "Re-plan"),
    ]

    def __init__(self) -> None:
        super().__init__(id="plan")

    def compose_body(self) -> ComposeResult:
        yield Static("Building the plan…", id="plan-status")
        table: DataTable = DataTable(id="steps", cursor_type="row", zebra_stripes=True)
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
        self._refresh_if_stale()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self._refresh_if_stale()

    def _refresh_if_stale(self) -> None:
        if not self.wizard.plans_stale():
            self.refresh_steps()
            return
        if not self.wizard.diagnosis_fresh():
            self.query_one("#plan-status", Static).update(
                Text("Re-diagnosing after the last change, then re-planning…", style="dim"))
        self._build_plans(self.wizard.state.changes)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan",
          description="Planning the repair steps")
    def _build_plans(self, at: int) -> None:
        diagnosis, plans = self.wizard.refresh_plans(STEP_ORDER, at)
        self.post_message(m.PlansBuilt(plans, diagnosis, at))

    def on_plans_built(self, event: m.PlansBuilt) -> None:
        if event.diagnosis is not None:
            self.wizard.set_diagnosis(event.diagnosis, event.at)
        self.wizard.set_plans(event.plans, at=event.at)
        self.refresh_steps()

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
            t.update_cell(step, "nodes", ", ".join(nodes), update_width=True)
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
            for f in plan.findings:
                text.append(f"  {f.severity:<8} ", style=v.SEVERITY_STYLE.get(f.severity, ""))
                text.append(f"{f.node}: {f.title}\n")
            if not plan.findings:
                text.append("  no finding for this step\n", style="dim")
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
        if not self.wizard.state.plans:
            self.notify("The plan is still being built", severity="warning")
            return
        self.wizard.state.run_all = True
        if not self.wizard.open_next_step(None):
            self.notify("No step is needed", severity="information")

    @on(Button.Pressed, "#validate")
    def action_validate(self) -> None:
        self.wizard.open_validation()

    def action_replan(self) -> None:
        self.wizard.state.plans.clear()
        self.refresh_steps()
        self._build_plans(self.wizard.state.changes)
