"""The Line-API table of the diagnostics panels (ui/widgets/paged_table.py): only the rows on the
screen are drawn, each once per data set and style; the cursor, pages, clicks; cell text is never
markup. No timing here (bench/bench_ui_scale.py measures the keys): rows drawn are counted."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from clusterfix_tui.ui.widgets.paged_table import PagedTable

ROWS = 1000


def _row(i: int) -> tuple[str, list[object]]:
    return f"k{i}", [f"node-{i}", Text("Ready" if i % 3 else "NotReady", style="bold red"),
                     "x" * (i % 7)]


class TableApp(App):
    def __init__(self, items: list[object], page_size: int = ROWS, render=_row) -> None:
        super().__init__()
        self.items, self.page_size, self.render_fn = items, page_size, render
        self.messages: list[PagedTable.RowHighlighted] = []

    def compose(self) -> ComposeResult:
        yield PagedTable(id="t", page_size=self.page_size, noun="nodes", zebra_stripes=True)

    def on_mount(self) -> None:
        t = self.query_one(PagedTable)
        for label in ("node", "Ready", "pad"):
            t.add_column(label)
        t.set_items(self.items, self.render_fn)
        t.focus()

    def on_paged_table_row_highlighted(self, event: PagedTable.RowHighlighted) -> None:
        self.messages.append(event)

    def on_paged_table_row_selected(self, event: PagedTable.RowSelected) -> None:
        self.messages.append(event)


def _lines(t: PagedTable) -> list[str]:
    return [t.render_line(y).text for y in range(t.scrollable_content_region.height)]


async def test_a_page_of_1000_rows_draws_only_the_rows_on_the_screen() -> None:
    app = TableApp(list(range(ROWS)))
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        t = app.query_one(PagedTable)
        shown = t.scrollable_content_region.height - 1  # the header takes a line
        assert t.row_count == ROWS and 0 < t.render_count <= shown
        first = t.render_count
        await pilot.press("pagedown")
        await pilot.pause()
        assert t.cursor_row == shown
        assert t.render_count - first <= shown  # one screen more, not the page's 1,000 rows
        drawn = t.render_count
        for _ in range(5):  # the cursor within the screen: no row drawn anew
            await pilot.press("up")
        await pilot.pause()
        assert t.cursor_row == shown - 5 and t.render_count == drawn
        assert app.messages[-1].cursor_row == shown - 5
        assert app.messages[-1].row_key == f"k{shown - 5}"
        await pilot.press("end")
        await pilot.pause()
        assert t.cursor_row == ROWS - 1 and t.item_at_cursor() == ROWS - 1
        assert t.render_count - drawn <= shown
        assert _lines(t)[-1].strip().startswith(f"node-{ROWS - 1}")


async def test_widths_fixed_per_data_set_and_pages_turned() -> None:
    app = TableApp([0, 1, 2, 3, 10**6], page_size=2)  # the widest cell is on the last page
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        t = app.query_one(PagedTable)
        assert t.pages == 3 and t.info == "nodes 1-2 of 5 · page 1/3 ([ ])"
        header = _lines(t)[0]
        assert header.index("Ready") == len(" node-1000000  ")  # measured over every item
        await pilot.press("down", "down")  # past the page's last row: the next page
        await pilot.pause()
        assert t.page == 1 and t.cursor_row == 0 and t.item_at_cursor() == 2
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert t.page == 2 and _lines(t)[0] == header
        await pilot.press("up")
        await pilot.pause()
        assert t.page == 1 and t.item_at_cursor() == 3
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.messages[-1], PagedTable.RowSelected)
        assert app.messages[-1].item == 3


async def test_hostile_cells_are_drawn_as_their_characters() -> None:
    def render(item: str) -> tuple[str, list[object]]:
        return item, [item, Text(item), "ok"]

    evil = ["[bold red]pod[/]", "[link=http://x]a[/link]", "\x1b[31mred\x1b[0m\tend", "é🙂x"]
    app = TableApp(evil, render=render)
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        t = app.query_one(PagedTable)
        lines = _lines(t)
        assert lines[1].split() == ["[bold", "red]pod[/]", "[bold", "red]pod[/]", "ok"]
        assert "[link=http://x]a[/link]" in lines[2]
        assert lines[3].split()[:2] == ["red", "end"]  # escape sequences dropped, tab expanded
        assert "é🙂x" in lines[4]
        assert [str(c) for c in t.get_row_at(0)] == [evil[0], evil[0], "ok"]


async def test_focus_and_width_redraw_no_row_and_a_click_selects() -> None:
    app = TableApp(list(range(ROWS)))
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        t = app.query_one(PagedTable)
        drawn = t.render_count
        focused = t.render_line(1)
        t.blur()
        await pilot.pause()
        blurred = t.render_line(1)
        assert focused.text == blurred.text and list(focused) != list(blurred)  # the cursor style
        assert any(s.style and s.style.reverse and s.style.bold for s in focused)  # seen mono too
        assert not any(s.style and s.style.reverse for s in t.render_line(2))
        assert t.render_count == drawn  # a focus change draws no row anew
        await pilot.resize_terminal(40, 20)
        await pilot.pause()
        assert t.render_count == drawn  # nor a width change: the cached rows are cropped anew
        assert all(len(line) == t.scrollable_content_region.width for line in _lines(t))
        await pilot.click(PagedTable, offset=(2, 3))  # line 0: the header; 1, 2, 3: rows 0, 1, 2
        await pilot.pause()
        assert t.cursor_row == 2 and isinstance(app.messages[-1], PagedTable.RowHighlighted)
        assert not isinstance(app.messages[-1], PagedTable.RowSelected)
        await pilot.click(PagedTable, offset=(2, 3))  # the cursor's row: selected
        await pilot.pause()
        assert isinstance(app.messages[-1], PagedTable.RowSelected)
        assert app.messages[-1].row_key == "k2"
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        assert t.render_count > drawn  # other colours: the rows are drawn anew


async def test_a_subset_reuses_the_cells_and_is_measured_anew() -> None:
    calls: list[int] = []

    def render(i: int) -> tuple[str, list[object]]:
        calls.append(i)
        return f"k{i}", [f"node-{i}", "Ready", "x" * i]

    items = list(range(1, 41))  # ints: the same objects in both data sets
    app = TableApp(items, render=render)
    async with app.run_test(size=(80, 12)) as pilot:
        await pilot.pause()
        t = app.query_one(PagedTable)
        assert sorted(set(calls)) == items  # measured over every item
        wide = _lines(t)[0]
        calls.clear()
        t.set_items(items[:5], render)  # a filter's subset of the same items
        await pilot.pause()
        assert calls == []  # their cells are reused, not rendered again
        narrow = _lines(t)[0]
        assert narrow.index("pad") < wide.index("pad")  # widths of the subset, not the old set
        assert narrow.rstrip().endswith("pad") and len(narrow.split()) == 3
        other = lambda i: (f"k{i}", [f"other-{i}", "", ""])  # noqa: E731
        t.set_items(items[:5], other)  # another render function: rendered anew
        await pilot.pause()
        assert _lines(t)[1].split()[0] == "other-1"
