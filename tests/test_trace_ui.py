"""The wizard's trace screen (ui/screens/trace.py): a result is shown as the verdict line (node,
table, chain, handle, rule) and the hop table; a trace that cannot run says why. The tracer is
given (the lab tests drive the real trace through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static
from ui_fakes import make_app, settle

from clusterfix_tui.core import trace as T
from clusterfix_tui.ui.screens.trace import TraceScreen

MONITOR = (
    "trace id 1 ip nat PREROUTING rule counter packets 1 bytes 60 jump KUBE-SERVICES # handle 4 "
    "(verdict jump KUBE-SERVICES)\n"
    "trace id 1 ip nat KUBE-SEP-X rule meta l4proto tcp dnat to 10.244.1.3:8096 # handle 20 "
    "(verdict accept)\n"
    "trace id 1 ip filter FORWARD rule counter packets 0 bytes 0 jump CFX-VENDOR # handle 21 "
    "(verdict jump CFX-VENDOR)\n"
    "trace id 1 ip filter CFX-VENDOR rule meta l4proto tcp ct original proto-dst 30096 reject "
    "# handle 19 (verdict drop)\n")


def _result() -> dict:
    res = T.verdict([T.NodeTrace("node-1", "entry", hops=T.parse_monitor("node-1", MONITOR),
                                 route="10.244.1.3 via 10.244.1.0 dev flannel.1")], False)
    res.update(description="workstation -> node-1 10.213.20.11:30096 (service media/jellyfin)",
               nodes=[{"node": "node-1", "role": "entry", "route": "10.244.1.3 via 10.244.1.0 "
                       "dev flannel.1", "ip_forward": "1", "error": ""}])
    return res


async def _open(pilot, tracer) -> TraceScreen:
    await settle(pilot)
    screen = TraceScreen("nodeport", ("node-1", 30096), tracer=tracer)
    await pilot.app.push_screen(screen)
    await settle(pilot)
    assert pilot.app.screen is screen
    return screen


async def test_trace_screen_shows_verdict_and_hops(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, _result)
        head = str(screen.query_one("#trace-verdict", Static).render())
        assert "REJECTED at node-1" in head and "ip filter CFX-VENDOR" in head
        assert "handle 19" in head and "proto-dst 30096 reject" in head
        table = screen.query_one("#hops", DataTable)
        assert table.row_count == 4
        assert [str(c) for c in table.get_row_at(3)][:4] == ["node-1", "ip filter", "CFX-VENDOR",
                                                             "19"]


async def test_trace_screen_says_why_it_could_not_run(tmp_path: Path) -> None:
    def broken() -> dict:
        raise T.TraceError("no node 'node-9'")

    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, broken)
        head = str(screen.query_one("#trace-verdict", Static).render())
        assert "could not run" in head and "no node 'node-9'" in head


@pytest.fixture
def snap_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return Path(".")


def test_trace_screen_snapshot_80x24(snap_compare, snap_dir: Path) -> None:
    app, _ = make_app(snap_dir)

    async def run_before(pilot) -> None:
        await _open(pilot, _result)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
