"""The full session log, one key away (bounded in memory; the journal holds everything)."""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.widgets.log_pane import clean

Entry = tuple[str, str | None, str, str]  # (stamp, node or None, stream or style, text)


class SessionLogView(ScrollView, can_focus=True):
    """The session log, rendered on demand (the Line API): only the visible lines become Strips.

    Rendering all 5,000 entries when the screen opens stalled the UI (~0.3 s of CPU) and left
    ~50,000 objects for the garbage collector per opening (full collections of 50-90 ms while a
    step streams). The view reads the app's bounded deque directly; nothing is copied.
    """

    def __init__(self, entries: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._entries = entries  # the app's session_log deque (bounded)
        self._styles: dict[str, Style] = {}
        self._widest = max((self._width(e) for e in entries), default=0)

    @staticmethod
    def _width(entry: Entry) -> int:
        stamp, node, _kind, line = entry
        return len(stamp) + 1 + (0 if node is None else max(8, len(node)) + 1) + len(line)

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style

    def on_mount(self) -> None:
        self.virtual_size = Size(self._widest, len(self._entries))
        self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def added(self, entries: list[Entry]) -> None:
        follow = self.scroll_y >= self.max_scroll_y
        if entries:
            self._widest = max(self._widest, max(self._width(e) for e in entries))
        self.virtual_size = Size(self._widest, len(self._entries))
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._entries):
            return Strip.blank(width, self.rich_style)
        stamp, node, kind, line = self._entries[index]
        segments = [Segment(f"{stamp} ", self._style("dim"))]
        if node is None:
            segments.append(Segment(line, self._style(kind)))
        else:
            segments.append(Segment(f"{node:<8} ", self._style("bold")))
            segments.append(Segment(clean(line), self._style("red" if kind == "stderr" else "")))
        strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, self.rich_style)
        return strip.apply_style(self.rich_style)


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
        log = SessionLogView(self.wizard.session_log, id="session-log-view")
        log.border_title = f"session log ({self.wizard.journal_path or 'no journal'})"
        yield log

    def append(self, entries: list[Entry]) -> None:
        """New entries are already in the app's deque: the view only has to grow."""
        self.query_one(SessionLogView).added(entries)

    def action_close(self) -> None:
        self.app.pop_screen()
