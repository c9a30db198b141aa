"""A DataTable that holds one page of a long list at a time (1,000 nodes, 2,000 pods).

The rows are kept as items and turned into cells only when their page shows, so building the
panel and every key (cursor, page, filter) costs one page at most, whatever the cluster's size.
Moving the cursor past the page's last row (or first) turns the page; `]` / `[` turn it at once.
`info` says where you are ("nodes 51-100 of 1,000 · page 2/20 ([ ])"), posted as `Paged`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from clusterfix_tui.ui import view as v

# item -> (row key, cells)
RowRender = Callable[[Any], tuple[str, Sequence[Any]]]


class PagedTable(DataTable):
    BINDINGS = [
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", show=False),
    ]

    class Paged(Message):
        """The table shows another page or other items: `info` says which."""

        def __init__(self, table: PagedTable, info: str) -> None:
            super().__init__()
            self.table = table
            self.info = info

    def __init__(self, *, page_size: int | None = None, noun: str = "rows", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size or v.PAGE_SIZE
        self.noun = noun
        self.items: list[Any] = []
        self.page = 0
        self.pages = 1
        self.start = 0  # index in `items` of the page's first row
        self.pending: int | None = None  # set_items(defer=True): the item to show on flush()
        self._render_row: RowRender = lambda item: (str(item), (str(item),))
        self.total_label = ""  # e.g. " (filtered from 1,043)"
        self.info = ""

    def set_items(self, items: Sequence[Any], render: RowRender, at: int = 0,
                  defer: bool = False) -> None:
        """Hold `items`; show the page of item `at` (the first by default), the cursor on it.
        `defer`: the table is not shown now (a hidden panel): its rows are made by `flush()`,
        when it is about to show (items, page and info are already the new ones)."""
        self.items = list(items)
        self._render_row = render
        if defer:
            self.pending = at
            page, self.pages, self.start, end = v.page_bounds(len(self.items),
                                                              at // self.page_size,
                                                              self.page_size)
            self.page = page
            self._set_info(end - self.start)
            return
        self.pending = None
        self._show_page(at // self.page_size, row=at % self.page_size)

    def flush(self) -> bool:
        """Make the rows `set_items(..., defer=True)` left for later; True when there were."""
        if self.pending is None:
            return False
        at, self.pending = self.pending, None
        self._show_page(at // self.page_size, row=at % self.page_size)
        return True

    def item_at_cursor(self) -> Any:
        if self.pending is not None:
            return self.items[self.pending] if 0 <= self.pending < len(self.items) else None
        i = self.start + self.cursor_row
        return self.items[i] if self.row_count and 0 <= i < len(self.items) else None

    def _show_page(self, page: int, *, row: int = 0) -> None:
        page, self.pages, start, end = v.page_bounds(len(self.items), page, self.page_size)
        self.page, self.start = page, start
        self.clear()
        for i in range(start, end):
            key, cells = self._render_row(self.items[i])
            self.add_row(*cells, key=key)
        if self.row_count:
            row = min(max(0, row), self.row_count - 1)
            self.move_cursor(row=row, animate=False)
        self._set_info(self.row_count)
        self.post_message(self.Paged(self, self.info))

    def _set_info(self, shown: int) -> None:
        n = len(self.items)
        if n <= self.page_size:
            self.info = f"{n:,} {self.noun}{self.total_label}"
        else:
            self.info = (f"{self.noun} {self.start + 1:,}-{self.start + shown:,} of "
                         f"{n:,}{self.total_label} · page {self.page + 1}/{self.pages} ([ ])")

    # -- turning pages -------------------------------------------------------------------------
    def action_page(self, delta: int) -> None:
        self.flush()
        if 0 <= self.page + delta < self.pages:
            self._show_page(self.page + delta, row=0 if delta > 0 else self.page_size)

    def action_cursor_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1 and self.page + 1 < self.pages:
            self._show_page(self.page + 1, row=0)
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0 and self.page > 0:
            self._show_page(self.page - 1, row=self.page_size - 1)
            return
        super().action_cursor_up()

    def action_page_down(self) -> None:
        if self.row_count and self.cursor_row >= self.row_count - 1 and self.page + 1 < self.pages:
            self._show_page(self.page + 1, row=0)
            return
        super().action_page_down()

    def action_page_up(self) -> None:
        if self.cursor_row <= 0 and self.page > 0:
            self._show_page(self.page - 1, row=self.page_size - 1)
            return
        super().action_page_up()
