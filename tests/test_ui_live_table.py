"""LiveTable (ui/widgets/live_table.py): a row drawn before the table measured a wider row added
after it is drawn at the new width at once. Textual's DataTable draws it from its cache at the old
width until the screen lays the table out again (the flaky 140x40 validation snapshot); the same
steps on it show that."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from clusterfix_tui.ui.widgets.live_table import LiveTable

LONG = "x" * 90


class _Table(App):
    def __init__(self, cls: type[DataTable]) -> None:
        super().__init__()
        self.cls = cls

    def compose(self) -> ComposeResult:
        yield self.cls(id="t")


async def _first_row_after_a_wider_row(cls: type[DataTable]) -> int:
    """How wide row 0's detail cell is drawn when the table measured a wider row after it had
    drawn row 0, and the screen has not laid it out again since (the frame in which a snapshot,
    or a slow terminal, saw the old width)."""
    app = _Table(cls)
    async with app.run_test(size=(140, 10)) as pilot:
        t = app.query_one("#t", DataTable)
        t.add_column("check", key="c", width=6)
        t.add_column("detail", key="d")
        t.add_row("a", "short", key="0")
        await pilot.pause()
        t.add_row("b", LONG, key="1")
        t.render_line(1)  # drawn before the table is idle: row 0 at the old widths
        # what the table does when idle (measure the new row), with no layout pass after it
        t.columns["d"].content_width = len(LONG)  # type: ignore[index]
        assert t.columns["d"].get_render_width(t) == 92  # type: ignore[index]
        segments = list(t.render_line(1))
        i = next(k for k, seg in enumerate(segments) if "short" in seg.text)
        width = 0
        for seg in segments[i:]:  # the cell: its text and padding, in the cell's own style
            if seg.style != segments[i].style:
                break
            width += len(seg.text)
        return width


@pytest.mark.asyncio
async def test_a_row_drawn_before_a_wider_row_was_measured_is_drawn_at_the_new_width() -> None:
    assert await _first_row_after_a_wider_row(LiveTable) >= 91  # 90 + padding


@pytest.mark.asyncio
async def test_textuals_datatable_keeps_it_at_the_old_width() -> None:
    """The bug LiveTable works around: if a Textual release fixes it, this test says so, and
    LiveTable can go."""
    assert await _first_row_after_a_wider_row(DataTable) < 10  # "short" + padding
