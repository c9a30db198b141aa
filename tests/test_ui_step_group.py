"""One cause, one line on the step screen (#17 item 6): a 30-node stale VTEP is one finding (its
nodes counted, `e` lists every node's finding), the plan's whys are one entry, and the apply
dialog still names every command with every node it runs on."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from scale_fakes import show_diagnosis, vtep_diagnosis
from textual.widgets import SelectionList, Static
from ui_fakes import make_app, settle

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.ui.screens.modals import ConfirmationModal
from clusterfix_tui.ui.screens.step import StepScreen


def _dialog_runs(app) -> Counter:
    """(node, command) of every command the apply dialog names: a command under "on NODE:" or
    under "on each of N nodes: A, B, ...:" runs on each node named."""
    body = str(app.screen.query_one("#dialog-body Static", Static).render())
    runs: Counter = Counter()
    nodes: list[str] = []
    for line in body.splitlines():
        m = re.match(r"on (each of \d+ nodes: )?(.*):$", line.strip())
        if m:
            nodes = [n.strip() for n in m.group(2).split(",")]
            continue
        if line.strip().startswith("$ "):
            for n in nodes:
                runs[(n, line.strip()[2:])] += 1
    return runs


async def test_step_screen_one_line_per_cause_and_every_command_in_the_dialog(
        tmp_path: Path, monkeypatch) -> None:
    diag = vtep_diagnosis(30, stale=2)
    plan = get_step("cni_bridge").plan(diag)
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 50)) as pilot:
        await settle(pilot)
        await show_diagnosis(pilot, diag)
        monkeypatch.setattr(app.flow, "plan_for_approval", lambda step, **kw: plan)
        monkeypatch.setattr(app.flow, "is_current", lambda p: True)
        app.open_step("cni_bridge")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, StepScreen) and screen.plan is plan
        text = str(screen.query_one("#plan-text", Static).render())
        assert text.count("FLANNEL_STALE_VTEP") == 1
        assert "stale VTEP MAC for node-2 on 29 nodes" in text
        assert "nodes: node-1, node-3, node-4, node-5, node-6, ... (29)" in text
        # the whys: one entry for the cause, the same why on 29 nodes once
        assert text.count("▸ stale VTEP MAC for node-2 on 29 nodes") == 1
        assert text.count("cni_bridge:NODE:2 on 29 nodes: ") == 1
        # every rollback Undo would run is named, once per distinct command with its nodes
        for a in plan.actions:
            if a.rollback is not None:
                assert f"$ {a.rollback.command}" in text
        assert "on each of 29 nodes (node-1, node-3, node-4, node-5, node-6, node-7, " in text
        # the action list keeps one tickable line per action, exactly as it runs
        assert screen.query_one("#actions", SelectionList).option_count == len(plan.actions)

        await pilot.press("e")  # every node's finding
        await pilot.pause()
        text = str(screen.query_one("#plan-text", Static).render())
        assert text.count("FLANNEL_STALE_VTEP") == 1 + 29
        await pilot.press("e")
        await pilot.pause()
        assert str(screen.query_one("#plan-text", Static).render()).count(
            "FLANNEL_STALE_VTEP") == 1

        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-apply"
        runs = _dialog_runs(app)
        assert runs == Counter((a.target, a.command) for a in plan.actions)
        body = str(app.screen.query_one("#dialog-body Static", Static).render())
        assert sum(1 for ln in body.splitlines() if ln.strip().startswith("$ ")) < \
            len(plan.actions)
        await pilot.press("n")
        await settle(pilot)
