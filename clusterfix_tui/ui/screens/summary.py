"""The end: what was found, what changed, what was skipped, what still fails; export; quit."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Static

from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import ExportModal


class _Outcome:
    def __init__(self, status: str) -> None:
        self.status = status


VERDICT_STYLE = {"healthy": "bold green", "fixed": "bold green", "partially-fixed": "bold yellow",
                 "still-broken": "bold red", "aborted": "bold red", "incomplete": "bold red"}


class SummaryScreen(WizardScreen):
    HELP = """\
## Summary
What the session found, what it changed (per pass), what was skipped and what still fails,
replayed from the session's journal: the same record the report is rendered from. Export writes
the report (Markdown, HTML or JSON) from that journal, plus the .json beside it.

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
        self._finish_session()

    @work(thread=True, exclusive=True, exit_on_error=False, group="finish",
          description="Closing the session")
    def _finish_session(self) -> None:
        """The verdict (once), then the session replayed from its journal: the summary shows
        the same SessionRecord the report is rendered from, so they say the same thing."""
        flow = self.wizard.flow
        verdict = flow.finish() if self.wizard.state.verdict is None else None
        self.post_message(m.RecordReplayed(flow.record(), verdict))

    def on_record_replayed(self, event: m.RecordReplayed) -> None:
        state = self.wizard.state
        state.record = event.record
        if event.verdict is not None:
            state.verdict = event.verdict
            self.wizard.log_event(f"session finished: {event.verdict}", "bold")
        self._show_summary()

    def _show_summary(self) -> None:
        state = self.wizard.state
        record = state.record
        text = Text()
        verdict = (record.verdict if record is not None else None) or state.verdict or "…"
        text.append("Verdict: ", style="bold")
        text.append(f"{verdict}\n", style=VERDICT_STYLE.get(verdict, "bold"))
        if self.wizard.dry_run:
            text.append("dry run: nothing on the cluster was changed\n", style="bold cyan")
        if record is None:
            text.append("Reading the session's journal…\n", style="dim")
            self.query_one("#summary-text", Static).update(text)
            return
        summary = record.summary()
        statuses: dict[str, str] = summary["steps"]
        before = record.findings["before"]
        failing = [r for r in (record.validation["after"] or ()) if not r["passed"]]
        changed = [s for s, st in statuses.items() if st in ("changed", "partial")]
        skipped = [s for s, st in statuses.items() if st == "skipped"]
        failed = [s for s, st in statuses.items() if st in ("failed", "cancelled", "interrupted")]
        validated = record.validation["after"] is not None
        text.append(f"found {len(before)} · changed {len(changed)} step(s) · failed "
                    f"{len(failed)} · skipped {len(skipped)} · still failing "
                    f"{len(failing) if validated else '(not validated)'} · "
                    f"{summary['passes']} pass(es)\n", style="bold")

        text.append(f"\nFound ({len(before)})\n", style="bold underline")
        for f in before:
            sev = str(f.get("severity", ""))
            text.append(f"  {sev:<8} ", style=v.SEVERITY_STYLE.get(sev, ""))
            text.append(f"{f.get('node', ''):<8} {f.get('code', '')}")
            text.append(f"  → {f['step']}\n" if f.get("step") else "\n", style="dim")
        if record.left_out:
            text.append("\nNodes left out\n", style="bold underline")
            for e in record.left_out:
                text.append(f"  {e.get('node', '')}: {e.get('reason', '')}\n", style="yellow")
        if summary.get("checks_failed_in_diagnosis"):
            text.append("\nChecks that failed (the cluster is not known to be healthy)\n",
                        style="bold underline")
            for e in summary["checks_failed_in_diagnosis"]:
                text.append(f"  {e}\n", style="yellow")

        text.append(f"\nSteps ({len(statuses)})\n", style="bold underline")
        if not statuses:
            text.append("  nothing decided\n", style="dim")
        for entry in record.repairs:
            if entry["decision"] is None:
                continue
            step, status = entry["step"], entry["status"]
            text.append(f"  pass {entry['pass_no']}  {step:<18} ", style="bold")
            text.append(status, style=v.STEP_STATE_STYLE.get(
                v.step_state(None, _Outcome(status)), ""))
            if entry.get("rollback_status"):
                text.append(f" ({entry['rollback_status']})", style="blue")
            text.append("\n")
            for c in entry["changes"]:
                text.append(f"      {c.get('node', '')}: {c.get('what', '')}\n", style="dim")
        text.append(f"\nSkipped ({len(skipped)})\n", style="bold underline")
        for step in skipped:
            text.append(f"  {step}\n", style="magenta")
        text.append(f"\nStill failing ({len(failing)})\n", style="bold underline")
        if not validated:
            text.append("  (not validated)\n", style="dim")
        for r in failing:
            text.append(f"  ✗ {r['name']} {r['target']}", style="red")
            text.append(f"  → step {r['fix_step']}\n" if r.get("fix_step") else "\n",
                        style="dim")
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
