"""Validation: re-diagnose, then the checklist filling in live; a failed check opens its step."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, ProgressBar, Static

from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.widgets.live_table import LiveTable


class ValidationScreen(WizardScreen):
    HELP = """\
## Validation
The runbook's validate_cluster_communication: nodes Ready, kube-proxy and flannel Running, one
backend of NAT rules, NodePort reachable, pod-to-pod across nodes. Checks fill in as they finish.
A failed check names the step that fixes it: select it (enter) to open that step.

| key | what |
|---|---|
| `enter` | open the step that fixes the highlighted failed check |
| `r` | validate again |
| `s` | the session summary |
| `t` | trace the highlighted failed check (NodePort, pod-to-pod, Ready, worker kubectl) |

A trace names the rule, route or node where the check's packet dies. When checks fail and no
finding explains them, the status line says so and proposes `t`.
"""
    BINDINGS = [
        Binding("r", "revalidate", "Re-run"),
        Binding("s", "summary", "Summary"),
        Binding("t", "trace", "Trace", show=False),  # in the help (?), not the footer
    ]

    def __init__(self) -> None:
        super().__init__(id="validation")
        self._results: list = []
        self._validating = False

    def compose_body(self) -> ComposeResult:
        yield Static("", id="validation-status")
        yield ProgressBar(id="validation-progress", show_eta=False)
        # rows arrive one by one while the table shows: LiveTable redraws them at new widths
        table: DataTable = LiveTable(id="checks", cursor_type="row", zebra_stripes=True)
        table.border_title = "validate_cluster_communication"
        yield table
        with Horizontal(classes="buttons"):
            yield Button("Open step \\[enter]", id="open-step", compact=True)
            yield Button("Re-run \\[r]", id="rerun", compact=True)
            yield Button("Trace \\[t]", id="trace-check", compact=True)
            yield Button("Summary \\[s]", id="summary", variant="primary", compact=True)

    def on_mount(self) -> None:
        t = self.query_one("#checks", DataTable)
        t.add_column("", key="ok", width=2)
        t.add_column("check", key="name", width=18)
        t.add_column("target", key="target", width=22)
        t.add_column("fix step", key="step", width=12)
        t.add_column("detail", key="detail")
        self.action_revalidate()

    @work(thread=True, exclusive=True, exit_on_error=False, group="validate",
          description="Validating the cluster")
    def _validate_cluster(self) -> None:
        flow = self.wizard.flow
        self.post_message(m.DiagnosisProgressed("waiting for the cluster to settle…"))
        results = flow.validate(
            on_check=lambda r: self.post_message(m.CheckCompleted(r)),
            on_wait=lambda failing, left: self.post_message(m.SettleWaited(failing, left)))
        if flow.diagnosis is not None:
            self.post_message(m.DiagnosisFinished(flow.diagnosis))
        self.post_message(m.ValidationFinished(list(results)))

    def on_settle_waited(self, event: m.SettleWaited) -> None:
        """Before the journaled validation the flow waits for restarted pods (validation
        retried, not journaled): a bar over its deadline, and what still fails."""
        flow = self.wizard.flow
        total = max(1.0, float(getattr(flow, "settle_timeout", 0.0) or 0.0), event.left)
        bar = self.query_one(ProgressBar)
        bar.update(total=total, progress=total - event.left)
        names = ", ".join(sorted({f"{r.name} {r.target}" for r in event.failing})[:3])
        text = Text()
        text.append("Waiting for the cluster to settle: ", style="bold")
        text.append(f"{len(event.failing)} check(s) still failing ({names}); gives up in "
                    f"{v.hms(event.left)}", style="dim")
        self.query_one("#validation-status", Static).update(text)

    def on_diagnosis_progressed(self, event: m.DiagnosisProgressed) -> None:
        self.query_one("#validation-status", Static).update(Text(event.text, style="dim"))

    def on_diagnosis_finished(self, event: m.DiagnosisFinished) -> None:
        self.wizard.state.diagnosis_after = event.diagnosis
        if event.diagnosis is not self.wizard.state.diagnosis:
            self.wizard.set_diagnosis(event.diagnosis)

    def on_check_completed(self, event: m.CheckCompleted) -> None:
        r = event.result
        if not self._results:  # the checks start: the bar counts them (as many as last time)
            expected = len(self.wizard.state.validation) or None
            self.query_one(ProgressBar).update(total=expected, progress=0)
            self.query_one("#validation-status", Static).update(
                Text("Running the checks…", style="dim"))
        self._results.append(r)
        self._add_row(len(self._results) - 1, r)
        bar = self.query_one(ProgressBar)
        if bar.total is not None and bar.progress + 1 > bar.total:
            bar.update(total=None)
        bar.advance(1)

    def _add_row(self, index: int, r) -> None:
        t = self.query_one("#checks", DataTable)
        t.add_row(Text("✓" if r.passed else "✗", style="bold green" if r.passed else "bold red"),
                  r.name, r.target,
                  Text(r.fix_step or "", style="bold cyan" if r.fix_step and not r.passed else ""),
                  Text(r.detail, style="" if r.passed else "red"), key=str(index))

    def on_validation_finished(self, event: m.ValidationFinished) -> None:
        self._validating = False
        self.wizard.record_validation(event.results)
        if len(event.results) != len(self._results):  # a session that reports only at the end
            self._results = []
            self.query_one("#checks", DataTable).clear()
            for r in event.results:
                self._results.append(r)
                self._add_row(len(self._results) - 1, r)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(1, len(self._results)), progress=len(self._results))
        failed = [r for r in self._results if not r.passed]
        status = Text()
        if not failed:
            status.append(f"All {len(self._results)} checks passed. ", style="bold green")
        else:
            status.append(f"{len(failed)} of {len(self._results)} checks failed. ",
                          style="bold red")
            steps = sorted({r.fix_step for r in failed if r.fix_step})
            if steps:
                status.append(f"Steps that fix them: {', '.join(steps)} (enter). ",
                              style="yellow")
            lone = self._unexplained()
            if lone:
                status.append(f"No finding explains {len(lone)} of them "
                              f"({', '.join(f'{r.name} {r.target}' for r in lone[:2])}"
                              f"{', …' if len(lone) > 2 else ''}): t traces it and names where "
                              f"its packet dies. ", style="bold yellow")
        status.append("s: summary", style="dim")
        self.query_one("#validation-status", Static).update(status)
        self.refresh_bindings()

    def worker_failed(self, worker) -> None:
        if worker.group == "validate":
            self._validating = False
            self.query_one("#validation-status", Static).update(
                Text(f"Validation failed to run: {worker.error}. r: retry", style="bold red"))

    @on(Button.Pressed, "#rerun")
    def action_revalidate(self) -> None:
        if self._validating:
            return
        self._validating = True
        self._results = []
        self.query_one("#checks", DataTable).clear()
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#validation-status", Static).update(Text("Validating…", style="dim"))
        self._validate_cluster()

    @on(DataTable.RowSelected, "#checks")
    def _check_selected(self, event: DataTable.RowSelected) -> None:
        self._open_fix(int(event.row_key.value or 0))

    @on(Button.Pressed, "#open-step")
    def _open_step_pressed(self) -> None:
        self._open_fix(self.query_one("#checks", DataTable).cursor_row)

    def _open_fix(self, index: int) -> None:
        if not (0 <= index < len(self._results)):
            return
        r = self._results[index]
        if r.passed or not r.fix_step:
            self.notify("This check has no step to open", severity="information")
            return
        self.wizard.open_step(r.fix_step)  # planned from the cluster as it is now

    def on_screen_resume(self) -> None:
        if self.wizard.state.validation_stale and not self._validating:
            self.wizard.state.validation_stale = False
            self.action_revalidate()

    @on(Button.Pressed, "#summary")
    def action_summary(self) -> None:
        if self._validating:
            self.notify("Validation is still running", severity="warning")
            return
        self.wizard.open_summary()

    def _unexplained(self) -> list:
        """Failed checks with a flow to trace that no finding of the latest diagnosis explains
        (no finding names the step that fixes the check)."""
        from clusterfix_tui.core.trace import trace_for_check

        diag = self.wizard.state.diagnosis_after or self.wizard.state.diagnosis
        steps = {f.step for f in v.findings_of(diag) if getattr(f, "step", None)} if diag else set()
        return [r for r in self._results if not r.passed
                and trace_for_check(r.name, r.target, r.detail) is not None
                and not (r.fix_step and r.fix_step in steps)]

    @on(Button.Pressed, "#trace-check")
    def action_trace(self) -> None:
        """Trace the highlighted failed check (ui/screens/trace.py, docs/trace.md); when the
        highlighted one has no flow, the first unexplained failure."""
        from clusterfix_tui.core.trace import trace_for_check
        from clusterfix_tui.ui.screens.trace import TraceScreen

        index = self.query_one("#checks", DataTable).cursor_row
        r = self._results[index] if 0 <= index < len(self._results) else None
        if r is None or r.passed or trace_for_check(r.name, r.target, r.detail) is None:
            r = next(iter(self._unexplained()), None)
        flow = trace_for_check(r.name, r.target, r.detail) if r is not None else None
        if r is None or flow is None:
            self.notify("Trace needs a failed NodePort, pod-to-pod, node-ready or worker-kubectl "
                        "check", severity="information")
            return
        self.app.push_screen(TraceScreen(*flow, why=f"{r.name} {r.target}: {r.detail}"))
