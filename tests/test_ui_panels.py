"""The diagnostics panels (#17 item 5): a hidden panel is laid out off the screen (StackedPane), so
that showing it is one layout pass; it is never drawn, never hit by the mouse, never focused.

No timing here (bench/bench_ui_scale.py measures the keys): the layout passes are counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scale_fakes import big_diagnosis, show_diagnosis
from textual.widget import Widget
from ui_fakes import make_app, settle

from clusterfix_tui.ui.screens.diagnostics import StackedPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable

PANELS = {"2": "nodes", "3": "pods", "4": "routes", "5": "nat", "1": "findings"}
TABLES = {"findings": "#findings-table", "nodes": "#nodes-table", "pods": "#pods-table",
          "routes": "#routes-nodes", "nat": "#nat-nodes"}


@pytest.fixture(scope="module")
def big60():
    return big_diagnosis(60)


def _pane_of(widget: Widget | None) -> StackedPane | None:
    for node in (widget.ancestors_with_self if widget is not None else ()):
        if isinstance(node, StackedPane):
            return node
    return None


def _count_layouts(screen: Any) -> list[int]:
    """Count the screen's full layout passes from now on (Screen._refresh_layout)."""
    calls = [0]
    original = screen._refresh_layout

    def counted(*args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        original(*args, **kwargs)

    screen._refresh_layout = counted
    return calls


async def test_hidden_panels_are_filled_but_never_drawn_hit_or_focused(tmp_path: Path,
                                                                       big60) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, big60)
        await pilot.pause()
        panes = {p.id: p for p in screen.query(StackedPane)}
        assert set(panes) == set(TABLES)
        for key, panel in PANELS.items():
            await pilot.press(key)
            await pilot.pause()
            assert screen.query_one("#panels").active == panel
            visible = screen._compositor.visible_widgets
            for pid, pane in panes.items():
                assert pane.shown == (pid == panel)
                table = screen.query_one(TABLES[pid], PagedTable)
                # every panel holds its rows, the hidden ones too (filled while hidden)
                assert table.row_count > 0 and table.pending is None
                inside = [w for w in visible if _pane_of(w) is pane]
                if pid == panel:
                    assert table in visible
                else:  # laid out off the screen: nothing of it drawn
                    assert not inside, (pid, inside)
            # the mouse finds the shown panel's table where the tables are
            region = screen.query_one(TABLES[panel], PagedTable).region
            hit, _ = screen.get_widget_at(region.x + 2, region.y + 2)
            assert _pane_of(hit) is panes[panel]
            # tab walks the shown panel's widgets and the rest of the screen, never a hidden one
            for _ in range(6):
                await pilot.press("tab")
                await pilot.pause()
                pane = _pane_of(app.focused)
                assert pane is None or pane is panes[panel], (panel, app.focused)
            assert screen.query_one("#panels").active == panel


async def test_a_panels_first_showing_is_one_layout_pass(tmp_path: Path, big60) -> None:
    """Textual's ContentSwitcher hid a panel with display: none; its first showing laid the screen
    out three times (its widgets sized, their virtual sizes, their scrollbars styled)."""
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, big60)
        screen.query_one("#findings-table", PagedTable).focus()
        await pilot.pause()
        for key, panel in PANELS.items():
            layouts = _count_layouts(screen)
            await pilot.press(key)
            await pilot.pause()
            assert screen.query_one("#panels").active == panel
            assert layouts[0] <= 1, (panel, layouts[0])
            del screen._refresh_layout
            assert app.focused is screen.query_one(TABLES[panel], PagedTable)


async def test_the_filter_keys_resize_nothing_and_lay_out_once(tmp_path: Path, big60) -> None:
    """`/`, `enter` and `escape` used to show or hide a row above the panels (every panel resized:
    the screen laid out twice) and swap the footer's keys (a recompose: twice more). The filter
    box now opens over the info line and the footer redraws its line: one layout pass a key, no
    widget resized; the filter does what it did (and the focus goes where it went)."""
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, big60)
        await pilot.press("2")
        await pilot.pause()
        nodes = screen.query_one("#nodes-table", PagedTable)
        box = screen.query_one("#diag-filter")
        info = screen.query_one("#table-info")
        assert nodes.pages > 1 and info.region.height == 1  # the info line shows (pages)
        sized = [w for w in screen.query("*") if w.region.area and w is not box]

        def regions() -> dict[Any, Any]:
            return {w: w.region for w in sized}

        before = regions()
        for keys, focused in ((("slash",), box), (tuple("node:node-1*"), box),
                              (("enter",), nodes), (("slash",), box), (("escape",), nodes),
                              (("slash",), box), (tuple("sev:critical"), box),
                              (("enter",), nodes), (("escape",), nodes)):
            for key in keys:
                layouts = _count_layouts(screen)
                await pilot.press(key)
                await pilot.pause()
                assert layouts[0] <= 1, (key, layouts[0])
                del screen._refresh_layout
            assert regions() == before, keys  # no widget moved or resized
            assert app.focused is focused, (keys, app.focused)
            # the box is on the screen while it has the focus, and only then; over the info line
            shown = box in screen._compositor.visible_widgets
            assert shown == (focused is box) and (not shown or box.region.y == info.region.y)
            if keys == tuple("node:node-1*"):
                assert box.value == "node:node-1*"
                assert len(nodes.items) == 60  # applied on enter, not per key
            if keys == ("enter",) and "node:node-1*" in str(info.render()):
                assert [r[0] for r in nodes.items] == ["node-1"] + [f"node-1{i}" for i in range(10)]
                assert "filter: node:node-1* (escape clears)" in str(info.render())
            if keys == ("escape",):
                assert len(nodes.items) == 60 and box.value == ""
                assert "filter:" not in str(info.render())
