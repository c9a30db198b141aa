"""The diagnostics' detail panes (ui/widgets/detail_pane.py, #17 item 5): a new text is drawn as a
Static in a VerticalScroll drew it (the same lines, wrapped at the same width, scrolled the same),
but is a redraw of the pane, not a layout pass of the screen (the Static's new height laid the
screen out once or twice); only a scrollbar that comes or goes still costs layout passes. No
timing here (bench/bench_ui_scale.py measures the keys): layout passes are counted."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from scale_fakes import big_diagnosis, show_diagnosis
from test_ui_panels import _count_layouts
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static
from ui_fakes import make_app, settle

from clusterfix_tui.ui.widgets.detail_pane import DetailPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable

CSS = """
Screen { layout: horizontal; }
DetailPane, VerticalScroll { width: 1fr; height: 6; padding: 0 1; }
"""


def _text(words: int) -> Text:
    text = Text()
    text.append("HEAD  ", style="bold red")
    text.append(" ".join(f"word{i}" for i in range(words)), style="italic")
    text.append("\n  │ evidence line\n", style="yellow")
    return text


class Side(App):
    """A DetailPane next to the VerticalScroll + Static it replaces, the same size."""

    CSS = CSS

    def compose(self) -> ComposeResult:
        yield DetailPane(id="pane")
        with VerticalScroll(id="old"):
            yield Static(id="static")


def _pane_lines(pane: DetailPane) -> list[str]:
    return [pane.render_line(y).text.rstrip()
            for y in range(pane.scrollable_content_region.height)]


def _old_lines(app: Side) -> list[str]:
    static = app.query_one("#static", Static)
    old = app.query_one("#old", VerticalScroll)
    top = int(old.scroll_y)
    rows = old.scrollable_content_region.height
    return [static.render_line(y).text.rstrip()
            for y in range(top, min(top + rows, static.size.height))]


async def test_the_pane_shows_the_lines_a_static_in_a_vertical_scroll_shows() -> None:
    app = Side()
    async with app.run_test(size=(70, 12)) as pilot:
        pane = app.query_one(DetailPane)
        old = app.query_one("#old", VerticalScroll)
        for words, size in ((3, (70, 12)), (40, (70, 12)), (40, (50, 12)), (120, (90, 12)),
                            (2, (90, 12))):
            await pilot.resize_terminal(*size)
            pane.update(_text(words))
            app.query_one("#static", Static).update(_text(words))
            await pilot.pause()
            await pilot.pause()
            assert pane.show_vertical_scrollbar == old.show_vertical_scrollbar, words
            assert pane.virtual_size.height == app.query_one("#static").size.height, words
            want = _old_lines(app)
            assert _pane_lines(pane)[:len(want)] == want, (words, size)
            # scrolled to its end: the same last lines
            pane.scroll_end(animate=False, immediate=True)
            old.scroll_end(animate=False, immediate=True)
            await pilot.pause()
            want = _old_lines(app)
            assert _pane_lines(pane)[:len(want)] == want, (words, size, "end")
        assert str(pane.render()) == _text(2).plain  # what tests read, as a Static's render()


async def test_a_new_text_lays_nothing_out_unless_the_scrollbar_comes_or_goes() -> None:
    app = Side()
    async with app.run_test(size=(70, 12)) as pilot:
        pane = app.query_one(DetailPane)
        pane.update(_text(1))
        await pilot.pause()
        for words in (2, 5, 9, 4, 60, 80, 70, 3, 1):
            bar = pane.show_vertical_scrollbar
            layouts = _count_layouts(app.screen)
            pane.update(_text(words))
            await pilot.pause()
            toggled = pane.show_vertical_scrollbar != bar
            # a bar that comes or goes is placed by a layout pass (and sized by one more)
            assert layouts[0] <= 2 * toggled, (words, layouts[0], toggled)
            del app.screen._refresh_layout
            assert f"word{words - 1}" in " ".join(_pane_lines(pane)) or toggled or words > 20


async def test_moving_through_the_findings_lays_nothing_out(tmp_path: Path) -> None:
    """A cursor key in the findings table shows another finding in the detail pane below it: the
    Static there laid the whole screen out for each new text (twice when its height changed)."""
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, big_diagnosis(60))
        table = screen.query_one("#findings-table", PagedTable)
        pane = screen.query_one("#finding-text", DetailPane)
        table.focus()
        await pilot.pause()
        texts = set()
        for _ in range(min(12, table.row_count - 1)):
            bar = pane.show_vertical_scrollbar
            layouts = _count_layouts(screen)
            await pilot.press("down")
            await pilot.pause()
            toggled = pane.show_vertical_scrollbar != bar
            assert layouts[0] <= 2 * toggled, (table.cursor_row, layouts[0])
            del screen._refresh_layout
            texts.add(str(pane.render()))
        assert len(texts) > 3  # the pane did show other findings
