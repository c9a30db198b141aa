"""Snapshots of every wizard screen at 80x24 (and the main ones at 140x40), from the recorded fake
session (tests/ui_fakes.py: the real session on the recorded lab scenarios) with a frozen clock,
date and plan stamp, so that they are deterministic.

Update after an intended change: pytest tests/test_ui_snapshots.py --snapshot-update
(then look at the SVGs in tests/__snapshots__/ before committing them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable
from ui_fakes import make_app, settle

from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui.widgets.paged_table import PagedTable

Nav = Callable[[Pilot], Awaitable[None]]


async def _keys(pilot: Pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def _nav(*keys: str, then: Callable[[Pilot], Awaitable[None]] | None = None) -> Nav:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await _keys(pilot, *keys)
        if then is not None:
            await then(pilot)
            await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()

    return run_before


async def _crashlooping_pod(pilot: Pilot) -> None:
    table = pilot.app.screen.query_one("#pods-table", PagedTable)
    rows = [str(table.get_row_at(i)[2]) for i in range(table.row_count)]
    bad = [i for i, status in enumerate(rows) if status not in ("Running", "Succeeded")]
    assert bad, rows  # the recorded kube-proxy crash loop
    table.move_cursor(row=bad[0])


def _open_step(step: str, *keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """From the plan: open `step`, then press `keys`."""
    async def open_(pilot: Pilot) -> None:
        pilot.app.screen.query_one("#steps", DataTable).move_cursor(row=STEP_ORDER.index(step))
        await _keys(pilot, "enter", *keys)

    return open_


def _pick_node(list_id: str, index: int) -> Callable[[Pilot], Awaitable[None]]:
    async def pick(pilot: Pilot) -> None:
        pilot.app.screen.query_one(list_id, PagedTable).move_cursor(row=index)

    return pick


CONNECTED = ("a",)  # accept the unknown host key (node-3's)
DIAG = CONNECTED + ("c",)
PLAN = DIAG + ("p",)
STEP = PLAN + ("enter",)

SCREENS: dict[str, Nav] = {
    "connect": _nav(*CONNECTED),
    "diagnostics_findings": _nav(*DIAG),
    "diagnostics_nodes": _nav(*DIAG, "2"),
    "diagnostics_pods": _nav(*DIAG, "3", then=_crashlooping_pod),
    # node-2: cni0 outside its podCIDR; node-3: a rule the nft tool wrote into kube-proxy's chain
    "diagnostics_routes": _nav(*DIAG, "4", then=_pick_node("#routes-nodes", 1)),
    "diagnostics_nat": _nav(*DIAG, "5", then=_pick_node("#nat-nodes", 2)),
    "raw_output": _nav(*DIAG, "4", "o"),
    "plan": _nav(*PLAN),
    "step": _nav(*STEP),
    "step_confirm": _nav(*STEP, "a"),
    "step_finished": _nav(*STEP, "a", "y"),
    "validation": _nav(*PLAN, "v"),
    "summary": _nav(*PLAN, "v", "s"),
    "export_dialog": _nav(*PLAN, "v", "s", "e"),
    "help": _nav(*DIAG, "question_mark"),
    "session_log": _nav(*STEP, "a", "y", "l"),
    # a step with several actions, one per line, ticked; then its Undo dialog
    "step_actions": _nav(*PLAN, then=_open_step("host_network")),
    "undo_confirm": _nav(*PLAN, then=_open_step("host_network", "a", "y", "u")),
}
# "validation" at 140x40 drew its detail column at one of two widths (about 1 run in 3) until the
# screen's table became a LiveTable (ui/widgets/live_table.py: DataTable kept cells drawn before
# it measured the last rows)
WIDE = ("connect", "diagnostics_findings", "plan", "step_finished", "summary", "validation")


@pytest.fixture
def snap_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The journal and the report path show on some screens: run in a temporary directory and
    give relative paths, so that the screens are the same on every machine and run."""
    monkeypatch.chdir(tmp_path)
    return Path(".")


@pytest.mark.parametrize("screen", sorted(SCREENS))
def test_screen_80x24(screen: str, snap_compare, snap_dir: Path) -> None:
    app, _ = make_app(snap_dir)
    assert snap_compare(app, terminal_size=(80, 24), run_before=SCREENS[screen])


@pytest.mark.parametrize("screen", WIDE)
def test_screen_140x40(screen: str, snap_compare, snap_dir: Path) -> None:
    app, _ = make_app(snap_dir)
    assert snap_compare(app, terminal_size=(140, 40), run_before=SCREENS[screen])


async def _tick_node_1(pilot: Pilot) -> None:
    table = pilot.app.screen.query_one("#host-keys-table", DataTable)
    table.move_cursor(row=[k.host for k in pilot.app.screen.keys].index("node-1"))
    await pilot.press("space")


def test_host_keys_80x24(snap_compare, snap_dir: Path) -> None:
    """Every unknown key on one screen: two nodes' own keys, node-1 ticked; node-2's changed key
    named as refused (the recorded real keys of tests/data/host_keys.known)."""
    app, _ = make_app(snap_dir, host_key_nodes=("node-1", "node-3"), changed_key_nodes=("node-2",))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_nav(then=_tick_node_1))


def test_dry_run_banner_80x24(snap_compare, snap_dir: Path) -> None:
    app, _ = make_app(snap_dir, dry_run=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=SCREENS["step"])
