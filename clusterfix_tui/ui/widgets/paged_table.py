"""A table for long lists (1,000 nodes, 2,000 pods) that draws only the rows on the screen.

Textual's DataTable renders every cell through Rich (~1.5-2 ms a line for a fresh page) and drops
its caches on every focus change and page turn. This table uses the Line API instead (a
ScrollView whose `render_line(y)` returns one Strip), as the log pane does:

- the rows are kept as items and turned into cells (`render(item) -> (key, cells)`) once per
  item held (a later `set_items` with the same render function reuses the cells of the items it
  keeps: render must depend on the item alone); a cell is a `str` or a `rich.text.Text` (its
  text and its style: spans are not drawn);
  cell text is never read as markup, and control characters are dropped (a hostile pod name or
  reason draws as the characters it has);
- column widths are fixed once per data set (declared, or the widest cell of the whole data set,
  capped at `MAX_WIDTH` with an ellipsis), never measured again page by page;
- a row's Strip is made once per page shown and cached per (row, style); the cursor row is the cached row with
  the cursor style laid over it, so a focus change or a cursor move redraws two lines, not the
  page; the caches go when the data, the columns or the theme's styles change;
- it shows one page of `page_size` items at a time (scrolling inside it): moving past the page's
  last (or first) row turns the page, `]` / `[` turn it at once; `info` says where you are
  ("nodes 51-100 of 1,000 · page 2/20 ([ ])"), posted as `Paged`;
- the cursor is drawn in the theme's cursor colours, reversed and bold (visible without colour);
  `RowHighlighted` when it moves, `RowSelected` on enter or a click on the cursor row (a click
  elsewhere moves the cursor there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.widgets.log_pane import clean

# item -> (row key, cells)
RowRender = Callable[[Any], tuple[str, Sequence[Any]]]

MAX_WIDTH = 120  # an auto-sized column is never wider (a longer cell ends with "…")
PAD = 1  # blank cells either side of a cell's text


@dataclass
class Column:
    label: str
    key: str
    width: int | None = None  # None: the widest cell of the data set (<= MAX_WIDTH)


class PagedTable(ScrollView, can_focus=True):
    """One page of a long list, drawn line by line (see the module's text)."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last row", show=False),
        Binding("enter", "select", "Select", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", show=False),
    ]
    COMPONENT_CLASSES = {"paged-table--header", "paged-table--even-row", "paged-table--cursor"}
    DEFAULT_CSS = """
    PagedTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        width: 1fr;
        & > .paged-table--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .paged-table--header { background: ansi_bright_blue; color: ansi_default; }
        & > .paged-table--even-row { background: $surface-lighten-1 50%; }
        &:dark > .paged-table--even-row { background: $surface-darken-1 40%; }
        & > .paged-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .paged-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """

    class Paged(Message):
        """The table shows another page or other items: `info` says which."""

        def __init__(self, table: PagedTable, info: str) -> None:
            super().__init__()
            self.table = table
            self.info = info

    class RowHighlighted(Message):
        """The cursor is on row `cursor_row` of the page (item `item`, key `row_key`)."""

        def __init__(self, table: PagedTable, cursor_row: int, row_key: str, item: Any) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row
            self.row_key = row_key
            self.item = item

        @property
        def control(self) -> PagedTable:
            return self.table

    class RowSelected(RowHighlighted):
        """Enter (or a click) on the cursor row."""

    def __init__(self, *, page_size: int | None = None, noun: str = "rows",
                 zebra_stripes: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size or v.PAGE_SIZE
        self.noun = noun
        self.zebra_stripes = zebra_stripes
        self.columns: list[Column] = []
        self.items: list[Any] = []
        self.page = 0
        self.pages = 1
        self.start = 0  # index in `items` of the page's first row
        self.row_count = 0  # rows on the page shown
        self.cursor_row = 0
        self.pending: int | None = None  # set_items(defer=True): the item to show on flush()
        self._render_row: RowRender = lambda item: (str(item), (str(item),))
        self.total_label = ""  # e.g. " (filter: of 1,043)"
        self.info = ""
        self.render_count = 0  # rows turned into Strips (tests count them)
        # id(item) -> (item, key, cells, cell widths): kept across data sets for the items they
        # share (a filter's subset of the same items is measured from here, not rendered again)
        self._memo: dict[int, tuple[Any, str, Sequence[Any], list[int]]] = {}
        self._widths: list[int] | None = None  # per data set
        self._rows: dict[tuple[int, bool], Strip] = {}  # (item index, even) -> full-width strip
        self._lines: dict[tuple[int, Style | None], Strip] = {}  # cropped to the view
        self._view: tuple[int, int] = (-1, -1)  # (scroll_x, width) the _lines are cropped at
        self._header: Strip | None = None
        self._styles: tuple[Style, Style, Style] | None = None  # base, header, even row
        self._cursor_styles: dict[Style, Style] = {}

    # -- columns and data ------------------------------------------------------------------------
    def add_column(self, label: str, *, key: str | None = None, width: int | None = None) -> None:
        self.columns.append(Column(label, key or label, width))
        self._new_data()

    def set_items(self, items: Sequence[Any], render: RowRender, at: int = 0,
                  defer: bool = False) -> None:
        """Hold `items`; show the page of item `at` (the first by default), the cursor on it.
        `defer`: the table is not shown now (a hidden panel): its page is drawn on `flush()`,
        when it is about to show (items, page and info are already the new ones)."""
        self.items = list(items)
        if render == self._render_row:
            memo = self._memo
            self._memo = {k: memo[k] for k in map(id, self.items) if k in memo}
        else:
            self._memo = {}
        self._render_row = render
        self._new_data()
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
        """Show the page `set_items(..., defer=True)` left for later; True when there was one."""
        if self.pending is None:
            return False
        at, self.pending = self.pending, None
        self._show_page(at // self.page_size, row=at % self.page_size)
        return True

    def prepare(self) -> None:
        """Render and measure every item now (a table about to be shown, at a moment when the
        cost is hidden: the column widths are otherwise computed when it first draws)."""
        self._column_widths()

    def item_at_cursor(self) -> Any:
        if self.pending is not None:
            return self.items[self.pending] if 0 <= self.pending < len(self.items) else None
        i = self.start + self.cursor_row
        return self.items[i] if self.row_count and 0 <= i < len(self.items) else None

    def get_row_at(self, row: int) -> list[Any]:
        """The cells of the page's row `row` (as the render function made them)."""
        if not 0 <= row < self.row_count:
            raise IndexError(row)
        return list(self._render_row(self.items[self.start + row])[1])

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on the page's row `row` (clamped), scrolled into view."""
        if not self.row_count:
            return
        row = min(max(0, row), self.row_count - 1)
        old, self.cursor_row = self.cursor_row, row
        self._scroll_to_cursor()
        if old != row:
            self._refresh_row(old)
            self._refresh_row(row)
            self._post_highlighted()

    def _new_data(self) -> None:
        self._rows.clear()
        self._lines.clear()
        self._widths = None
        self._header = None

    # -- pages -------------------------------------------------------------------------------------
    def _show_page(self, page: int, *, row: int = 0) -> None:
        page, self.pages, start, end = v.page_bounds(len(self.items), page, self.page_size)
        self.page, self.start, self.row_count = page, start, end - start
        self.cursor_row = min(max(0, row), self.row_count - 1) if self.row_count else 0
        self._lines.clear()  # keyed by item index, but the screen lines move
        # only the page shown keeps its strips: a Strip is ~10 objects the collector tracks, and
        # every page ever shown kept at 1,000 nodes made each full collection a stall of its own
        self._rows.clear()
        self.virtual_size = Size(sum(self._column_widths()) + PAD * 2 * len(self.columns),
                                 self.row_count + 1)
        self._scrollbars_now()
        self._scroll_to_cursor()
        self.refresh()
        self._set_info(self.row_count)
        self.post_message(self.Paged(self, self.info))
        if self.row_count:
            self._post_highlighted()

    def _scrollbars_now(self) -> None:
        """Show or hide the scrollbars for a new virtual size now, for the layout pass that size
        asks for: found in that pass, a scrollbar shown or hidden asks for a second full pass
        (Widget._size_updated -> _scroll_update). The pass the table asked for places its
        scrollbars (by `show_vertical_scrollbar`...): the scrollbar widgets' own requests (their
        display changed) would only come after it, often late, and lay the screen out again. A
        table not laid out yet is left to its first pass."""
        scrollbars_now(self)

    def _set_info(self, shown: int) -> None:
        n = len(self.items)
        if n <= self.page_size:
            self.info = f"{n:,} {self.noun}{self.total_label}"
        else:
            self.info = (f"{self.noun} {self.start + 1:,}-{self.start + shown:,} of "
                         f"{n:,}{self.total_label} · page {self.page + 1}/{self.pages} ([ ])")

    def _post_highlighted(self) -> None:
        i = self.start + self.cursor_row
        self.post_message(self.RowHighlighted(self, self.cursor_row, self._cells_of(i)[0],
                                              self.items[i]))

    # -- keys and mouse ----------------------------------------------------------------------------
    @property
    def _visible_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # the header takes a line

    def action_page(self, delta: int) -> None:
        self.flush()
        if 0 <= self.page + delta < self.pages:
            self._show_page(self.page + delta, row=0 if delta > 0 else self.page_size)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def action_page_down(self) -> None:
        self._move(self._visible_rows)

    def action_page_up(self) -> None:
        self._move(-self._visible_rows)

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=self.row_count - 1)

    def _move(self, delta: int) -> None:
        """Move the cursor; from the page's last row on (first row back) turn the page."""
        if delta > 0 and self.cursor_row >= self.row_count - 1 and self.page + 1 < self.pages:
            self._show_page(self.page + 1, row=0)
        elif delta < 0 and self.cursor_row <= 0 and self.page > 0:
            self._show_page(self.page - 1, row=self.page_size - 1)
        else:
            self.move_cursor(row=self.cursor_row + delta)

    def action_select(self) -> None:
        if self.row_count:
            i = self.start + self.cursor_row
            self.post_message(self.RowSelected(self, self.cursor_row, self._cells_of(i)[0],
                                               self.items[i]))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = self.scroll_offset.y + offset.y - 1
        if not 0 <= row < self.row_count:
            return
        if row == self.cursor_row:
            self.action_select()
        else:
            self.move_cursor(row=row)

    def _scroll_to_cursor(self) -> None:
        top, rows = int(self.scroll_y), self._visible_rows
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + rows:
            self.scroll_to(y=self.cursor_row - rows + 1, animate=False, immediate=True)

    def _refresh_row(self, row: int) -> None:
        self.refresh_lines(row + 1)  # + the header (refresh_lines takes off the scroll offset)

    def on_resize(self, event: events.Resize) -> None:
        self._scroll_to_cursor()

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        return size_updated(self, size, virtual_size, container_size, layout)

    def _on_focus(self, event: events.Focus) -> None:
        self._refresh_row(self.cursor_row)  # the cursor's style changes: one line, not the page

    def _on_blur(self, event: events.Blur) -> None:
        self._refresh_row(self.cursor_row)

    # -- drawing -----------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        """The CSS changed (theme, focus, hover): drop the cached strips only when the styles
        they were drawn in did change (the cursor's style is laid over them when drawn)."""
        super().notify_style_update()
        try:
            styles: tuple[Style, Style, Style] | None = self._read_styles()
        except KeyError:  # not styled yet (the component classes come with the CSS)
            styles = None
        if styles is None or styles != self._styles:
            self._styles = styles
            self._rows.clear()
            self._lines.clear()
            self._header = None

    def _cells_of(self, i: int) -> tuple[str, Sequence[Any]]:
        """Item `i`'s key and cells (rendered once while the item is held)."""
        got = self._memoised(i)
        return got[1], got[2]

    def _memoised(self, i: int) -> tuple[Any, str, Sequence[Any], list[int]]:
        item = self.items[i]
        got = self._memo.get(id(item))
        if got is None or got[0] is not item:
            key, cells = self._render_row(item)
            got = self._memo[id(item)] = (item, str(key), cells,
                                          [cell_len(_plain(c)) for c in cells])
        return got

    def _column_widths(self) -> list[int]:
        """Fixed per data set: the declared width, else the widest cell of every item."""
        if self._widths is None:
            widths = [c.width if c.width is not None else cell_len(c.label) for c in self.columns]
            auto = [j for j, c in enumerate(self.columns) if c.width is None]
            if auto:
                for i in range(len(self.items)):
                    cell_widths = self._memoised(i)[3]
                    for j in auto:
                        if j < len(cell_widths) and cell_widths[j] > widths[j]:
                            widths[j] = min(cell_widths[j], MAX_WIDTH)
            self._widths = widths
        return self._widths

    def _fit(self, text: str, width: int) -> str:
        if cell_len(text) > width:
            text = set_cell_size(text, max(0, width - 1)) + "…"
        return " " * PAD + set_cell_size(text, width) + " " * PAD

    def _header_strip(self) -> Strip:
        if self._header is None:
            style = self._base_styles()[1]
            self._header = Strip([Segment(self._fit(c.label, w), style)
                                  for c, w in zip(self.columns, self._column_widths(), strict=True)])
        return self._header

    def _base_styles(self) -> tuple[Style, Style, Style]:
        if self._styles is None:
            self._styles = self._read_styles()
        return self._styles

    def _read_styles(self) -> tuple[Style, Style, Style]:
        return (self.rich_style, self.get_component_rich_style("paged-table--header"),
                self.get_component_rich_style("paged-table--even-row"))

    def _row_strip(self, i: int) -> Strip:
        """Item `i`'s line at full width, in the row's (zebra) style, cached."""
        even = self.zebra_stripes and (i - self.start) % 2 == 1
        strip = self._rows.get((i, even))
        if strip is None:
            base, _, even_style = self._base_styles()
            row_style = base + even_style if even else base
            cells = self._cells_of(i)[1]
            segments = []
            for j, w in enumerate(self._column_widths()):
                cell = cells[j] if j < len(cells) else ""
                style = row_style
                if isinstance(cell, Text) and cell.style:
                    style += cell.style if isinstance(cell.style, Style) else Style.parse(
                        cell.style)
                segments.append(Segment(self._fit(_plain(cell), w), style))
            strip = self._rows[(i, even)] = Strip(segments)
            self.render_count += 1
        return strip

    def _cursor_style(self) -> Style:
        """The theme's cursor colours, given swapped and drawn reversed and bold: the same
        colours on screen, and a cursor still seen where colours are not (NO_COLOR, mono)."""
        style = self.get_component_rich_style("paged-table--cursor")
        got = self._cursor_styles.get(style)
        if got is None:
            got = self._cursor_styles[style] = style + Style(
                color=style.bgcolor, bgcolor=style.color, reverse=True, bold=True)
        return got

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if (scroll_x, width) != self._view:  # scrolled sideways or resized: crop anew
            self._view = (scroll_x, width)
            self._lines.clear()
        base = self._base_styles()[0]
        if y == 0:
            return self._header_strip().crop_extend(scroll_x, scroll_x + width, base)
        row = scroll_y + y - 1
        if not 0 <= row < self.row_count or self.pending is not None:
            return Strip.blank(width, base)
        i = self.start + row
        cursor = self._cursor_style() if row == self.cursor_row else None
        line = self._lines.get((i, cursor))
        if line is None:
            strip = self._row_strip(i)
            if cursor is not None:
                strip = Strip(Segment.apply_style(list(strip), post_style=cursor))
            line = self._lines[(i, cursor)] = strip.crop_extend(scroll_x, scroll_x + width, base)
        return line


def scrollbars_now(view: ScrollView) -> None:
    """Show or hide `view`'s scrollbars for its new virtual size now (PagedTable._scrollbars_now:
    one layout pass when a bar comes or goes, not two)."""
    view._scroll_update(view.virtual_size)
    if view._layout_required:  # the view's pass is still to come: it covers the bars
        for bar in (view._vertical_scrollbar, view._horizontal_scrollbar):
            if bar is not None:
                bar._layout_required = False


def size_updated(view: ScrollView, size: Size, virtual_size: Size, container_size: Size,
                 layout: bool = True) -> bool:
    """ScrollView._size_updated, minus its redraw of the scrollbars on every layout pass.

    The compositor hands a ScrollView the size of its content region as its virtual size, never
    the ScrollView's own (which it keeps), so ScrollView._size_updated saw a change on every pass
    and redrew its scrollbars from scratch (Rich renders a bar: ~0.1-0.3 ms a line), though
    nothing of them changed. Nothing changed when the view's size and its content's size are what
    they were: the scrollbars are updated where the virtual size changes (set_items,
    DetailPane.update), and by ScrollView's own code when the size does.
    """
    if size == view._size and view._container_size == size - view.styles.gutter.totals:
        return False
    return bool(ScrollView._size_updated(view, size, virtual_size, container_size, layout))


def _plain(cell: Any) -> str:
    """A cell's text as drawn: never markup, no control characters or escape sequences."""
    text = cell.plain if isinstance(cell, Text) else ("" if cell is None else str(cell))
    return text if text.isprintable() else clean(text)
