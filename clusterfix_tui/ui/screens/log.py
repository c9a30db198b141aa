"""The full session log, one key away (bounded in memory; the journal holds everything)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import RichLog

from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.widgets.log_pane import clean


FILL_CHUNK = 500  # session log entries rendered per event-loop turn when the screen opens


class SessionLogScreen(WizardScreen):
    HELP = """\
## Session log
Everything the session did, newest last: connections, decisions, every streamed line (bounded
here; the journal file keeps all of it).
"""
    BINDINGS = [Binding("escape,l", "close", "Close")]

    def __init__(self) -> None:
        super().__init__(id="session-log")

    def compose_body(self) -> ComposeResult:
        log = RichLog(id="session-log-view", max_lines=self.wizard.session_log.maxlen,
                      wrap=False, markup=False, highlight=False)
        log.border_title = f"session log ({self.wizard.journal_path or 'no journal'})"
        yield log

    def on_mount(self) -> None:
        # thousands of entries rendered in one go stall the UI for a second or more: render
        # them FILL_CHUNK at a time, one chunk per turn of the event loop (keys work meanwhile)
        # (after the first refresh: a RichLog without a size defers every write to its first
        # resize and renders them all at once there)
        self._backlog = list(self.wizard.session_log)
        self.call_after_refresh(self._fill)

    def _fill(self) -> None:
        if not self.is_attached:
            return
        chunk, self._backlog = self._backlog[:FILL_CHUNK], self._backlog[FILL_CHUNK:]
        self._write(chunk)
        if self._backlog:
            self.set_timer(0.005, self._fill)  # a timer: the loop (keys) runs between chunks

    def append(self, entries: list[tuple[str, str | None, str, str]]) -> None:
        """New entries: written now, or queued behind the ones still being filled in."""
        if getattr(self, "_backlog", None):
            self._backlog.extend(entries)
        else:
            self._write(entries)

    def _write(self, entries: list[tuple[str, str | None, str, str]]) -> None:
        """Render entries (stamp, node or None, stream or style, text) as one write."""
        text = Text(no_wrap=True, overflow="ellipsis")
        for stamp, node, kind, line in entries:
            text.append(f"{stamp} ", style="dim")
            if node is None:
                text.append(line, style=kind)
            else:
                text.append(f"{node:<8} ", style="bold")
                text.append(clean(line), style="red" if kind == "stderr" else "")
            text.append("\n")
        text.rstrip()
        if text.plain:
            self.query_one(RichLog).write(text)

    def action_close(self) -> None:
        self.app.pop_screen()
