"""The live log pane: a bounded RichLog fed in batches from a thread-safe line buffer.

A step can stream hundreds of thousands of lines. Worker threads only append to a LineBuffer (a
lock and a bounded deque, no widget state); the buffer tells the producer when a batch is due so
that one StepLinesLogged message is posted per batch, never per line. The UI thread drains the
buffer and writes the whole batch as one Text. Lines that arrive faster than the screen refreshes
are collapsed into a "N lines collapsed" marker: the pane is a view, the journal keeps everything.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog

NODE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan",
                "bright_magenta", "bright_green", "bright_blue")


class LineBuffer:
    """Lines waiting for the UI. Safe to feed from any thread."""

    def __init__(self, batch_limit: int = 200, min_interval: float = 0.1) -> None:
        self._lines: deque[tuple[str, str, str]] = deque(maxlen=batch_limit)
        self._lock = threading.Lock()
        self._pending = False
        self._last_signal = 0.0
        self.min_interval = min_interval
        self.dropped = 0
        self.total = 0
        self.per_node: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()

    def feed(self, node: str, stream: str, line: str) -> bool:
        """Append a line; True when the caller should post one StepLinesLogged message."""
        with self._lock:
            if len(self._lines) == self._lines.maxlen:
                self.dropped += 1
            self._lines.append((node, stream, line))
            self.total += 1
            self.per_node[node] += 1
            if stream == "command":
                self.commands[node] += 1
            if self._pending:
                return False
            self._pending = True
            return True

    def drain(self) -> tuple[list[tuple[str, str, str]], int]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            dropped, self.dropped = self.dropped, 0
            self._pending = False
            self._last_signal = time.monotonic()
            return lines, dropped

    def snapshot_counts(self) -> tuple[int, dict[str, int], dict[str, int]]:
        with self._lock:
            return self.total, dict(self.per_node), dict(self.commands)


class LogPane(RichLog):
    """Node-prefixed, coloured, bounded log view."""

    DEFAULT_CSS = """
    LogPane { height: 1fr; border: round $primary-darken-1; background: $surface; }
    """

    def __init__(self, *, max_lines: int = 2000, **kwargs) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, highlight=False,
                         auto_scroll=True, **kwargs)
        self._colours: dict[str, str] = {}
        self.border_title = "live log"

    def colour(self, node: str) -> str:
        if node not in self._colours:
            self._colours[node] = NODE_COLOURS[len(self._colours) % len(NODE_COLOURS)]
        return self._colours[node]

    def write_lines(self, lines: Iterable[tuple[str, str, str]], dropped: int = 0) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        if dropped:
            text.append(f"… {dropped} lines collapsed (the journal has them all)\n",
                        style="dim italic")
        for node, stream, line in lines:
            text.append(f"{node:<8} ", style=f"bold {self.colour(node)}")
            if stream == "command":
                text.append(line, style="bold")
            elif stream == "stderr":
                text.append(line, style="red")
            else:
                text.append(line)
            text.append("\n")
        text.rstrip()
        if text.plain:
            self.write(text)
