"""The full session log, one key away (bounded in memory; the journal holds everything)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import RichLog

from clusterfix_tui.ui.screens.base import WizardScreen


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
        log = self.query_one(RichLog)
        for text in list(self.wizard.session_log):
            log.write(text)

    def append(self, text) -> None:
        self.query_one(RichLog).write(text)

    def action_close(self) -> None:
        self.app.pop_screen()
