"""The live log pane: a bounded RichLog fed in batches from a thread-safe line buffer.

A step can stream hundreds of thousands of lines. Worker threads only append to a LineBuffer (a
lock and a bounded deque, no widget state); the buffer tells the producer when a batch is due so
that one StepLinesLogged message is posted per batch, never per line. The UI thread drains the
buffer (at most ten times a second) and appends the batch to the pane as ready-made Strips.
Lines that arrive faster than the screen refreshes are collapsed into a "N lines collapsed"
marker: the pane is a view, the journal keeps everything.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

NODE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan",
                "bright_magenta", "bright_green", "bright_blue")


class LineBuffer:
    """Lines waiting for the UI. Safe to feed from any thread."""

    def __init__(self, batch_limit: int = 200, min_interval: float = 0.1,
                 high_water: int = 5000) -> None:
        self._lines: deque[tuple[str, str, str]] = deque(maxlen=batch_limit)
        self._lock = threading.Lock()
        self._pending = False
        self._last_signal = 0.0
        self.min_interval = min_interval
        self.dropped = 0
        self.total = 0
        self.per_node: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        # back-pressure: a producer more than `high_water` lines ahead of the UI waits (briefly)
        # for the next drain, so that a flood cannot starve the UI thread of the GIL
        self.high_water = high_water
        self._since_drain = 0
        self._drained = threading.Event()
        self._stalled = False

    def feed(self, node: str, stream: str, line: str) -> bool:
        """Append a line; True when the caller should post one StepLinesLogged message."""
        with self._lock:
            if len(self._lines) == self._lines.maxlen:
                self.dropped += 1
            self._lines.append((node, stream, line))
            self.total += 1
            self._since_drain += 1
            if self._since_drain == self.high_water:
                self._drained.clear()
            self.per_node[node] += 1
            if stream == "command":
                self.commands[node] += 1
            if self._pending:
                return False
            self._pending = True
            return True

    def backpressure(self, timeout: float = 0.25) -> None:
        """Called by the producer (never the UI): wait for a drain when too far ahead. A UI
        that does not drain within `timeout` (closing, gone) stops the waiting until it does."""
        if self._since_drain >= self.high_water and not self._stalled:
            if not self._drained.wait(timeout):
                self._stalled = True

    def drain(self) -> tuple[list[tuple[str, str, str]], int]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            dropped, self.dropped = self.dropped, 0
            self._pending = False
            self._last_signal = time.monotonic()
            self._since_drain = 0
            self._stalled = False
            self._drained.set()
            return lines, dropped

    def snapshot_counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        with self._lock:
            return self.total, dict(self.per_node), dict(self.commands)


_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|[@-Z\\\\-_])")
_CONTROL = {c: None for c in range(32) if c != 9} | {127: None}


def clean(line: str) -> str:
    """A line as plain printable text: no terminal escape sequences, no control characters."""
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    return line.translate(_CONTROL).expandtabs(8)


class LogPane(ScrollView, can_focus=True):
    """Node-prefixed, coloured, bounded log view (the Line API: one Strip per line).

    Lines are turned into Strips directly, without Rich's layout engine, and at most `max_lines`
    are kept: a batch costs about a millisecond per hundred lines on the UI thread.
    """

    DEFAULT_CSS = """
    LogPane { height: 1fr; border: round $primary-darken-1; background: $surface; }
    """

    def __init__(self, *, max_lines: int = 2000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lines = max_lines
        self.lines: list[Strip] = []
        self._widest = 0
        self._colours: dict[str, str] = {}
        self._styles: dict[str, Style] = {}
        self.border_title = "live log"

    def colour(self, node: str) -> str:
        if node not in self._colours:
            self._colours[node] = NODE_COLOURS[len(self._colours) % len(NODE_COLOURS)]
        return self._colours[node]

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec)
        return style

    def write_lines(self, lines: Iterable[tuple[str, str, str]], dropped: int = 0) -> None:
        follow = self.scroll_y >= self.max_scroll_y
        new: list[Strip] = []
        if dropped:
            new.append(Strip([Segment(f"… {dropped} lines collapsed (the journal has them all)",
                                      self._style("dim italic"))]))
        plain = Style()
        for node, stream, line in lines:
            text = clean(line)
            body = (self._style("bold") if stream == "command"
                    else self._style("red") if stream == "stderr" else plain)
            new.append(Strip([Segment(f"{node:<8} ", self._style(f"bold {self.colour(node)}")),
                              Segment(text, body)]))
        if not new:
            return
        self.lines.extend(new)
        excess = len(self.lines) - self.max_lines
        if excess > 0:
            del self.lines[:excess]
        self._widest = max(self._widest, max(strip.cell_length for strip in new))
        self.virtual_size = Size(self._widest, len(self.lines))
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        line = self.lines[index].crop_extend(scroll_x, scroll_x + width, self.rich_style)
        return line.apply_style(self.rich_style)  # the pane's background under every segment
