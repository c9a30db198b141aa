"""A DataTable whose rows arrive while it shows (the validation's checks, one by one).

Textual's DataTable (8.x) measures the columns of rows added since it was last idle only when it
is idle next, and keeps the cells it drew before that at the old widths (its cell cache is not
dropped when a width changes): a row drawn in between stays cut at the old width until something
else changes the table. Seen on the validation screen: the detail column drawn 57 cells wide
while its longest detail (added last) is 136. LiveTable redraws at the new widths when they change.
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
