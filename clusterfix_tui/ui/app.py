"""The wizard: connect -> diagnostics -> plan -> steps -> (another pass) -> validation -> summary.

The session (clusterfix_tui.core.session.RepairSession, or the replayed lab in tests) is injected
and driven through core.flow.RepairFlow, the one repair flow the headless `fix` drives too: the
flow decides when to re-diagnose, re-plan, settle, validate and offer another pass; the wizard
holds no rule of its own about that. The app keeps what the screens show (the "model"); each
screen drives one part of the flow. Every flow call runs in a thread worker on the screen that
needs it and comes back as a typed message; worker failures are handled here, in one place.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui import view as v

# titles of the errors that are not ours (a transport error carries its own: core/ports.py)
OS_ERROR_TITLES: tuple[tuple[type[BaseException], str], ...] = (
    (TimeoutError, "Timed out"),
    (FileNotFoundError, "File not found"),
    (PermissionError, "Permission denied"),
)


def error_title(error: BaseException | None, fallback: str) -> str:
    """The notification title of a worker's error: a TransportError's own `title` (each class of
    the error tree says what it means), an OS error's, else `fallback`."""
    from clusterfix_tui.core.ports import TransportError

    if isinstance(error, TransportError) and getattr(error, "title", None):
        return str(error.title)
    for cls, title in OS_ERROR_TITLES:
        if isinstance(error, cls):
            return title
    return fallback

_SECRET = re.compile(
    r"(?i)((?:password|passwd|token|secret|client-key-data|client-certificate-data|"
    r"authorization:\s*bearer)\s*[:=]?\s*)(\S+)"
)


def _fallback_redact(line: str) -> str:
    return _SECRET.sub(lambda mt: mt.group(1) + "***", line)


@dataclass
class WizardState:
    info: dict[str, Any] = field(default_factory=dict)
    conns: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    diagnosis_before: Any = None  # the first diagnosis: what the session found
    diagnosis: Any = None  # the latest the wizard received: what the panels show
    diagnosis_after: Any = None
    applied_plans: dict[str, Any] = field(default_factory=dict)  # step -> the plan that ran
    plans: dict[str, Any] = field(default_factory=dict)  # the last plan seen of each step
    outcomes: dict[str, Any] = field(default_factory=dict)
    rolled_back: set[str] = field(default_factory=set)
    previewed: set[str] = field(default_factory=set)
    validation: list[Any] = field(default_factory=list)
    validation_stale: bool = False
    verdict: str | None = None
    exported: list[str] = field(default_factory=list)
    run_all: bool = False
    pass_ended: bool = False  # the user went past the last step of the pass: converge next
    record: Any = None  # core.record.SessionRecord: what the summary shows (as the report)


UI_GC_THRESHOLD0 = 5000  # gc's first threshold while the wizard runs (on_mount)


class ClusterfixApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "clusterfix-tui"
    BINDINGS = [
        Binding("q", "quit_wizard", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("l", "show_log", "Log"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(
        self,
        session: Any = None,
        *,
        session_factory: Callable[[], Any] | None = None,
        dry_run: bool = False,
        journal_path: str | Path | None = None,
        render: Callable[[list[dict[str, Any]], str], str] | None = None,
        clock: Callable[[], float] | None = None,
        now: Callable[[], datetime] | None = None,
        report_dir: str | Path | None = None,
        pane_max_lines: int = 2000,
        session_log_lines: int = 5000,
        flow_factory: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # no animation frames unless asked for: a tab switch's underline sliding for 0.3 s
            # was ~17 full frames, half a panel switch's CPU at 1,000 nodes (#17 item 5); over
            # SSH every frame is also bytes on the wire
            self.animation_level = "none"
        if session is None and session_factory is None:
            raise ValueError("give a session or a session_factory")
        self.session: Any = session
        self._session_factory = session_factory
        self._flow_factory = flow_factory
        self.flow: Any = self._make_flow(session) if session is not None else None
        self.dry_run = dry_run
        self.journal_path = Path(journal_path) if journal_path else None
        self._report_render = render
        self.clock = clock or time.monotonic
        self.monotonic = time.monotonic
        self.now = now or datetime.now
        self.report_dir = Path(report_dir) if report_dir else None
        self.pane_max_lines = pane_max_lines
        # (stamp, node or None, stream or style, text): rendered only when the log screen shows
        self.session_log: deque[tuple[str, str | None, str, str]] = deque(
            maxlen=session_log_lines)
        self.state = WizardState()
        self.step_running = False
        self.finished = False  # session.finish() called
        self._quit_pending = False
        self._started = self.clock()
        self._redact: Callable[[str], str] | None = None
        self._line_redact: Callable[[str, Any], str] | None = None
        self._gc_threshold0: int | None = None  # the collector's first threshold before ours

    # -- life cycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        from clusterfix_tui.ui.screens.connect import ConnectScreen

        self._tick()
        self.set_interval(1.0, self._tick)
        self.log_event("clusterfix-tui wizard started" + (" (dry run)" if self.dry_run else ""))
        self.push_screen(ConnectScreen())
        self.call_after_refresh(gc.freeze)
        # Fewer young-generation collections while the wizard runs: a key at 1,000 nodes makes
        # ~15,000 short-lived containers (strips, segments, styles, messages), 20-odd collections
        # of the first generation and two of the second a panel switch at the default 700, whose
        # survivors (the new page's cached lines) each one walks again: ~13 ms a panel switch,
        # 25-38 ms the worst. At 5,000: about half that, in a third as many pauses. Only the
        # first threshold; diagnose's own GC handling saves and restores whatever is set.
        t0, t1, t2 = gc.get_threshold()
        if 0 < t0 < UI_GC_THRESHOLD0:
            gc.set_threshold(UI_GC_THRESHOLD0, t1, t2)
            self._gc_threshold0 = t0

    def on_unmount(self) -> None:
        t0, t1, t2 = gc.get_threshold()
        if self._gc_threshold0 is not None and t0 == UI_GC_THRESHOLD0:  # as the wizard set it
            gc.set_threshold(self._gc_threshold0, t1, t2)
            self._gc_threshold0 = None

    def freeze_heap(self) -> None:
        """Move every object alive now out of the garbage collector's generations.

        A full collection walks every object (textual, kubernetes, paramiko and the diagnosis
        are hundreds of thousands); while a step streams output the allocation rate triggers
        such collections, and each one stalls the UI for 150-200 ms. Objects alive after start-up
        and after a diagnosis live for the session anyway, so they are frozen (gc.freeze)."""
        gc.freeze()

    def _tick(self) -> None:
        context = self.state.info.get("context") or "connecting…"
        self.sub_title = f"{context} · session {v.hms(self.clock() - self._started)}"

    def _make_flow(self, session: Any) -> Any:
        if self._flow_factory is not None:
            return self._flow_factory(session)
        from clusterfix_tui.core.flow import RepairFlow

        return RepairFlow(session)

    def ensure_session(self) -> Any:
        """The flow over the session, built on first use (in a worker thread: building the
        session does I/O)."""
        if self.session is None:
            assert self._session_factory is not None
            self.session = self._session_factory()
        if self.flow is None:
            self.flow = self._make_flow(self.session)
        return self.flow

    def redact(self, line: str, key: Any = None) -> str:
        """Redact text for the screen. One line of a stream (`key`, e.g. (node, stream)) goes
        through a LineRedactor, which blanks a PEM block's body lines between BEGIN and END."""
        if self._redact is None:
            try:
                from clusterfix_tui.core.redact import LineRedactor, redact

                self._redact = redact
                self._line_redact = LineRedactor()
            except ImportError:
                self._redact = _fallback_redact
        try:
            if "\n" not in line and self._line_redact is not None:
                return self._line_redact(line, key)
            return self._redact(line)
        except Exception:  # noqa: BLE001 - never let redaction kill the log pane
            return _fallback_redact(line)

    # -- state updates (UI thread) -----------------------------------------------------------
    def set_cluster_info(self, info: dict[str, Any]) -> None:
        self.state.info = dict(info)
        self._tick()

    def set_diagnosis(self, diagnosis: Any) -> None:
        if self.state.diagnosis_before is None:
            self.state.diagnosis_before = diagnosis
        self.state.diagnosis = diagnosis
        self.freeze_heap()
        n = len(getattr(diagnosis, "findings", []) or [])
        self.log_event(f"diagnosis: {n} findings")

    def set_plans(self, plans: dict[str, Any]) -> None:
        self.state.plans.update(plans)

    def step_state(self, step: str) -> str:
        if step in self.state.rolled_back:
            return "rolled back"
        return v.step_state(self.state.plans.get(step), self.state.outcomes.get(step))

    def record_outcome(self, step: str, outcome: Any, *, rollback: bool = False,
                       plan: Any = None) -> None:
        if rollback:
            self.state.rolled_back.add(step)
        else:
            self.state.outcomes[step] = outcome
            self.state.rolled_back.discard(step)
            if plan is not None and outcome.status not in ("skipped",):
                self.state.applied_plans[step] = plan
        self.state.validation_stale = True
        self.log_event(f"{step}: {'rollback ' if rollback else ''}{outcome.status} "
                       f"{outcome.message}".rstrip(), "bold")

    def record_validation(self, results: list[Any]) -> None:
        self.state.validation = list(results)
        failed = sum(1 for r in results if not r.passed)
        self.log_event(f"validation: {len(results) - failed} passed, {failed} failed",
                       "green" if not failed else "red")

    # -- the session log ---------------------------------------------------------------------
    def _stamp(self) -> str:
        return v.hms(self.clock() - self._started)

    def log_event(self, text: str, style: str = "") -> None:
        self._append_log([(self._stamp(), None, style, text)])

    def log_lines(self, lines: Iterable[tuple[str, str, str]], dropped: int) -> None:
        stamp = self._stamp()
        entries: list[tuple[str, str | None, str, str]] = []
        if dropped:
            entries.append((stamp, None, "dim italic",
                            f"… {dropped} lines collapsed (see the journal)"))
        entries.extend((stamp, node, stream, line) for node, stream, line in lines)
        self._append_log(entries)

    def _append_log(self, entries: list[tuple[str, str | None, str, str]]) -> None:
        self.session_log.extend(entries)
        from clusterfix_tui.ui.screens.log import SessionLogScreen

        if isinstance(self.screen, SessionLogScreen):
            self.screen.append(entries)

    # -- navigation --------------------------------------------------------------------------
    def start_diagnostics(self) -> None:
        from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen

        self.switch_screen(DiagnosticsScreen())

    def open_plan(self) -> None:
        from clusterfix_tui.ui.screens.plan import PlanScreen

        self.push_screen(PlanScreen())

    def open_step(self, step: str, replace: bool = False, auto: bool = False) -> None:
        """`auto`: opened by Run all or `n`: a step with nothing to do passes on by itself."""
        from clusterfix_tui.ui.screens.step import StepScreen

        screen = StepScreen(step, auto=auto)
        if replace:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def open_next_step(self, after: str | None, replace: bool = False) -> bool:
        """Open the step after `after` in the flow's current pass (each is planned from the
        cluster as it is when it opens). False at the end of the pass."""
        steps = list(self.flow.pass_steps()) if self.flow is not None else list(STEP_ORDER)
        start = steps.index(after) + 1 if after in steps else 0
        if start < len(steps):
            self.open_step(steps[start], replace=replace, auto=True)
            return True
        self.state.run_all = False
        self.state.pass_ended = True
        return False

    def open_validation(self) -> None:
        from clusterfix_tui.ui.screens.validation import ValidationScreen

        self.push_screen(ValidationScreen())

    def open_summary(self) -> None:
        from clusterfix_tui.ui.screens.summary import SummaryScreen

        self.push_screen(SummaryScreen())

    def after_step_finished(self) -> None:
        if self._quit_pending:
            self.exit(1)

    # -- report ------------------------------------------------------------------------------
    def default_report_path(self) -> Path:
        cluster = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(self.state.info.get("context") or
                                                        "cluster")).strip("-") or "cluster"
        stamp = self.now().strftime("%Y%m%d-%H%M%S")
        return (self.report_dir or Path.cwd()) / f"clusterfix-report-{cluster}-{stamp}.md"

    def journal_events(self) -> list[dict[str, Any]]:
        """The journal as a list of events (called in a worker thread)."""
        if self.journal_path is None or not self.journal_path.exists():
            raise FileNotFoundError("this session has no journal to report from")
        from clusterfix_tui.core.report import load_journal

        events, _problems = load_journal(self.journal_path)  # tolerates a torn last line
        return events

    def export_report(self, path: Path, fmt: str) -> list[str]:
        """Write the report as `fmt` at path and the JSON beside it (called in a worker thread)."""
        render = self._report_render
        if render is None:
            from clusterfix_tui.core.report import render as core_render

            render = core_render
        from clusterfix_tui.core.report import write_private  # mode 0600: reports name hosts

        events = self.journal_events()
        path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        write_private(path, render(events, fmt))
        written.append(str(path))
        if fmt != "json":
            json_path = path.with_suffix(".json")
            write_private(json_path, render(events, "json"))
            written.append(str(json_path))
        return written

    # -- global actions ----------------------------------------------------------------------
    def action_quit_wizard(self) -> None:
        if not self.step_running:
            self.exit(0)
            return
        from clusterfix_tui.ui.screens.modals import ConfirmationModal

        if isinstance(self.screen, ConfirmationModal):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._quit_pending = True
                from clusterfix_tui.ui.screens.step import StepScreen

                for screen in self.screen_stack:
                    if isinstance(screen, StepScreen) and screen.phase == "running":
                        screen.action_cancel()
                if not self.step_running:
                    self.exit(1)

        self.push_screen(ConfirmationModal(
            "A step is running",
            "Quit now? The running step is cancelled after its current action, then the "
            "wizard exits. The journal keeps what ran.",
            yes="Cancel step and quit", no="Keep running", danger=True, id="confirm-quit"),
            answered)

    def action_help(self) -> None:
        from clusterfix_tui.ui.screens.modals import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(getattr(self.screen, "HELP", "")))

    def action_show_log(self) -> None:
        from clusterfix_tui.ui.screens.log import SessionLogScreen

        if isinstance(self.screen, SessionLogScreen):
            self.pop_screen()
        else:
            self.push_screen(SessionLogScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Session log", "Show everything the session did", self.action_show_log)
        yield SystemCommand("Light / dark", "Toggle the light and dark themes",
                            self.action_toggle_theme)
        yield SystemCommand("Help", "Keys of this screen", self.action_help)
        if self.state.diagnosis is not None and not self.step_running:
            yield SystemCommand("Plan", "The repair steps and their state", self.open_plan)
            yield SystemCommand("Validate", "Run the validation checks", self.open_validation)
            yield SystemCommand("Summary", "What was found, changed, skipped, still failing",
                                self.open_summary)
            for step in STEP_ORDER:
                if step in self.state.plans:
                    yield SystemCommand(f"Step: {step}", v.STEP_TITLES.get(step, ""),
                                        lambda s=step: self.open_step(s))

    # -- the one place worker failures are handled -------------------------------------------
    @on(Worker.StateChanged)
    def worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every screen forwards its workers' state changes here (the message does not bubble)."""
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        error = worker.error
        kind = type(error).__name__
        title = error_title(error, f"{worker.description or worker.name} failed")
        message = str(error) or kind
        self.notify(message, title=title, severity="error", timeout=12)
        self.log_event(f"{worker.description or worker.name} failed: {kind}: {message}", "bold red")
        node = worker.node
        handler = getattr(node, "worker_failed", None)
        if callable(handler):
            handler(worker)
