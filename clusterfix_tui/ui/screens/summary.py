"""The end: what was found, what changed, what was skipped, what still fails; export; quit."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Static

from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import ExportModal

VERDICT_STYLE = {"healthy": "bold green", "fixed": "bold green", "partially-fixed": "bold yellow",
                 "still-broken": "bold red", "aborted": "bold red", "incomplete": "bold red"}


class SummaryScreen(WizardScreen):
    HELP = """\
## Summary
What the session found, what it changed, what was skipped and what still fails. Export writes
the report (Markdown, HTML or JSON) from the session journal, plus the .json beside it.

| key | what |
|---|---|
| `e` | export the report |
| `q` | quit |
"""
    BINDINGS = [Binding("e", "export", "Export report")]

    def __init__(self) -> None:
        super().__init__(id="summary")

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="summary-body"):
            yield Static("", id="summary-text")
        with Horizontal(classes="buttons"):
            yield Button("Export report \\[e]", id="export", variant="primary", compact=True)
            yield Button("Quit \\[q]", id="quit", compact=True)

    def on_mount(self) -> None:
        self._show_summary()
        if self.wizard.state.verdict is None:
            self._finish_session()

    @work(thread=True, exclusive=True, exit_on_error=False, group="finish",
          description="Closing the session")
    def _finish_session(self) -> None:
        self.post_message(m.SessionFinished(self.wizard.session.finish()))

    def on_session_finished(self, event: m.SessionFinished) -> None:
        self.wizard.state.verdict = event.verdict
        self.wizard.log_event(f"session finished: {event.verdict}", "bold")
        self._show_summary()

    def _show_summary(self) -> None:
        state = self.wizard.state
        text = Text()
        verdict = state.verdict or "…"
        text.append("Verdict: ", style="bold")
        text.append(f"{verdict}\n", style=VERDICT_STYLE.get(verdict, "bold"))
        if self.wizard.dry_run:
            text.append("dry run: nothing on the cluster was changed\n", style="bold cyan")
        first_findings = v.findings_of(state.diagnosis_before) if state.diagnosis_before else []
        ran = [o for o in state.outcomes.values()
               if o.status in ("changed", "partial", "failed", "cancelled", "dry-run")]
        n_skipped = sum(1 for s in STEP_ORDER if self.wizard.step_state(s) == "skipped")
        n_failing = sum(1 for r in state.validation if not r.passed)
        text.append(f"found {len(first_findings)} · changed {len(ran)} step(s) · "
                    f"skipped {n_skipped} · still failing "
                    f"{n_failing if state.validation else '(not validated)'}\n", style="bold")

        first = state.diagnosis_before
        before = v.findings_of(first) if first is not None else []
        text.append(f"\nFound ({len(before)})\n", style="bold underline")
        for f in before:
            text.append(f"  {f.severity:<8} ", style=v.SEVERITY_STYLE.get(f.severity, ""))
            text.append(f"{f.node:<8} {f.code}")
            text.append(f"  → {f.step}\n" if f.step else "\n", style="dim")
        if state.left_out:
            text.append("\nNodes left out\n", style="bold underline")
            for node, reason in state.left_out.items():
                text.append(f"  {node}: {reason}\n", style="yellow")

        changed = [(s, o) for s, o in state.outcomes.items()
                   if o.status in ("changed", "partial", "failed", "cancelled", "dry-run")]
        text.append(f"\nChanged ({len(changed)} steps)\n", style="bold underline")
        if not changed:
            text.append("  nothing\n", style="dim")
        for step, o in changed:
            text.append(f"  {step:<18} ", style="bold")
            text.append(f"{o.status}", style=v.STEP_STATE_STYLE.get(v.step_state(None, o), ""))
            text.append(" (rolled back)" if step in state.rolled_back else "")
            text.append("\n")
            for c in o.changes:
                text.append(f"      {c.get('node', '')}: {c.get('what', '')}\n", style="dim")
        skipped = [s for s in STEP_ORDER if self.wizard.step_state(s) == "skipped"]
        text.append(f"\nSkipped ({len(skipped)})\n", style="bold underline")
        for step in skipped:
            text.append(f"  {step}\n", style="magenta")
        failing = [r for r in state.validation if not r.passed]
        text.append(f"\nStill failing ({len(failing)})\n", style="bold underline")
        if not state.validation:
            text.append("  (not validated)\n", style="dim")
        for r in failing:
            text.append(f"  ✗ {r.name} {r.target}", style="red")
            text.append(f"  → step {r.fix_step}\n" if r.fix_step else "\n", style="dim")
        if state.exported:
            text.append("\nReport written\n", style="bold underline")
            for p in state.exported:
                text.append(f"  {p}\n", style="green")
        self.query_one("#summary-text", Static).update(text)

    @on(Button.Pressed, "#export")
    def action_export(self) -> None:
        def chosen(answer: tuple[str, str] | None) -> None:
            if answer:
                self._export_report(Path(answer[0]).expanduser(), answer[1])

        self.app.push_screen(ExportModal(self.wizard.default_report_path()), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export",
          description="Exporting the report")
    def _export_report(self, path: Path, fmt: str) -> None:
        self.post_message(m.ReportExported(self.wizard.export_report(path, fmt)))

    def on_report_exported(self, event: m.ReportExported) -> None:
        self.wizard.state.exported = event.paths
        self.notify("Report written: " + ", ".join(event.paths), title="Exported", timeout=8)
        self.wizard.log_event("report written: " + ", ".join(event.paths), "green")
        self._show_summary()

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.wizard.action_quit_wizard()
