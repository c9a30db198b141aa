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
from clusterfix_tui.ui.widgets.paged_table import PagedTable

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


async def test_prefilled_trace_waits_for_enter_and_runs_the_edited_flow(tmp_path: Path) -> None:
    from textual.widgets import Input

    calls: list[int] = []

    def tracer() -> dict:
        calls.append(1)
        return _result()

    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = TraceScreen("vxlan", ("node-2", "node-1"), tracer=tracer, run=False,
                             why="a flow into node-1")
        await pilot.app.push_screen(screen)
        await settle(pilot)
        field = screen.query_one("#trace-flow", Input)
        assert field.value == "vxlan node-2 node-1" and calls == []
        assert "Enter traces this flow" in str(screen.query_one("#trace-verdict", Static).render())
        field.value = "api node-1"
        await pilot.press("enter")
        await settle(pilot)
        assert calls == [1] and (screen.kind, screen.args) == ("api", ("node-1",))
        assert "REJECTED at node-1" in str(screen.query_one("#trace-verdict", Static).render())
        field.value = "vxlan node-1"  # malformed: said, nothing runs
        field.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert calls == [1]
        assert "a flow is one of" in str(screen.query_one("#trace-verdict", Static).render())


async def test_diagnostics_t_opens_the_trace_prefilled_for_the_selected_node(tmp_path) -> None:
    from test_ui_flow import _connect_and_diagnose
    from textual.widgets import Input

    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _connect_and_diagnose(pilot)
        await pilot.press("2")  # the nodes panel, first node highlighted
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TraceScreen) and screen.kind == "vxlan"
        src, dst = screen.args
        assert src != dst and screen.query_one("#trace-flow", Input).value == f"vxlan {src} {dst}"
        events = (tmp_path / "journal.jsonl").read_text()
        assert "cfx_trace_" not in events  # nothing ran before enter


async def test_validation_proposes_a_trace_for_a_failure_no_finding_explains(tmp_path) -> None:
    from test_ui_flow import _connect_and_diagnose

    from clusterfix_tui.core.validate import CheckResult
    from clusterfix_tui.ui import messages as m
    from clusterfix_tui.ui.screens.validation import ValidationScreen

    app, _ = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await _connect_and_diagnose(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ValidationScreen)
        status = str(screen.query_one("#validation-status", Static).render())
        assert "No finding explains" not in status  # the lab's failures all have findings
        lone = CheckResult("pod-to-pod", "node-1->net-echo-x", False,
                           "net-echo-x 10.244.9.2:8080 NOT reachable (exit 1); route: -", None)
        screen.on_validation_finished(m.ValidationFinished(list(screen._results) + [lone]))
        await settle(pilot)
        status = str(screen.query_one("#validation-status", Static).render())
        assert "No finding explains 1 of them (pod-to-pod node-1->net-echo-x)" in status
        screen.query_one("#checks", DataTable).move_cursor(row=0)  # a row with no flow: t
        await pilot.press("t")  # ... takes the unexplained failure
        await settle(pilot)
        assert isinstance(app.screen, TraceScreen)
        assert (app.screen.kind, app.screen.args) == ("node-pod", ("node-1", "net-echo-x", 8080))
        # it ran at once over the session: no such pod in the replayed cluster, said on screen
        head = str(app.screen.query_one("#trace-verdict", Static).render())
        assert "could not run" in head and "net-echo-x" in head


def test_trace_screen_prefilled_snapshot_80x24(snap_compare, snap_dir: Path) -> None:
    app, _ = make_app(snap_dir)

    async def run_before(pilot) -> None:
        await settle(pilot)
        from textual.widgets import Input

        screen = TraceScreen("vxlan", ("node-2", "node-1"), tracer=_result, run=False,
                             why="a flow into node-1")
        await pilot.app.push_screen(screen)
        await settle(pilot)
        screen.query_one("#trace-flow", Input).cursor_blink = False  # a still picture
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_diagnostics_n_opens_the_netfilter_map_of_the_selected_node(tmp_path) -> None:
    from test_ui_flow import _connect_and_diagnose

    from clusterfix_tui.core.netfilter_map import netfilter_map
    from clusterfix_tui.ui import view as v
    from clusterfix_tui.ui.screens.netfilter import NetfilterScreen, map_rows

    app, _ = make_app(tmp_path)
    async with app.run_test(size=(120, 34)) as pilot:
        await _connect_and_diagnose(pilot)
        await pilot.press("2")
        await settle(pilot)
        node = str(app.screen.query_one("#nodes-table", PagedTable).get_row_at(0)[0])
        await pilot.press("n")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, NetfilterScreen)
        entries = netfilter_map(v.facts_of(app.state.diagnosis)[node])
        rows = map_rows(entries)
        table = screen.query_one("#netfilter-table", DataTable)
        assert rows and table.row_count == len(rows)
        assert [str(c) for c in table.get_row_at(0)] == list(rows[0])
        # packet order: hooks never go backwards
        from clusterfix_tui.ui.screens.netfilter import HOOKS
        order = [HOOKS.index(r[0]) for r in rows if r[0] in HOOKS]
        assert order == sorted(order)
        status = str(screen.query_one("#netfilter-status", Static).render())
        assert status.startswith(f"{node}: {len(entries)} table(s)") and "kube-proxy" in status


def test_netfilter_map_snapshot_100x30(snap_compare, snap_dir: Path) -> None:
    from test_ui_flow import _connect_and_diagnose

    app, _ = make_app(snap_dir)

    async def run_before(pilot) -> None:
        await _connect_and_diagnose(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=run_before)
