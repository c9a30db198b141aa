"""The wizard's DataTable (every small table: plan, validation, step results, connect, ...;
the big diagnostics panels use PagedTable). Their rows and cells change while they show.

Textual's DataTable (8.x) measures the rows added since it was last idle when it is idle next,
and keeps the cells it drew before that in its cache, keyed without the column widths: until the
screen lays the table out again (its next refresh), a paint draws those rows at the old widths.
A screenshot taken in that moment showed the validation's detail column 57 cells wide while its
longest detail, added last, is 136 (the 140x40 snapshot, ~1 run in 3), and the plan's nodes
column cut at "node-" (80x24, under load). LiveTable drops the cells drawn at other widths as
soon as a width changes, so what it draws always matches its columns.
"""

from __future__ import annotations

from typing import Any

from textual.strip import Strip
from textual.widgets import DataTable


class LiveTable(DataTable):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drawn_widths: tuple[int, ...] = ()

    def render_line(self, y: int) -> Strip:
        widths = tuple(c.get_render_width(self) for c in self.ordered_columns)
        if widths != self._drawn_widths:  # measured since the last paint: drop the old cells
            self._drawn_widths = widths
            self.notify_style_update()
        return super().render_line(y)
