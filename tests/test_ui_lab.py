"""The wizard driven with Pilot on a real lab with every fault (needs root and netns)."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import pytest
from lab_helpers import running_lab
from textual.widgets import DataTable, Input, Static
from ui_fakes import settle

from clusterfix_tui.commands.tui import make_session_factory
from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui.app import ClusterfixApp
from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal, ExportModal
from clusterfix_tui.ui.screens.plan import PlanScreen
from clusterfix_tui.ui.screens.step import StepScreen
from clusterfix_tui.ui.screens.summary import SummaryScreen
from clusterfix_tui.ui.screens.validation import ValidationScreen

pytestmark = pytest.mark.lab


@contextlib.contextmanager
def wizard_on_lab(tmp_path_factory, tmp_path: Path):
    with running_lab(tmp_path_factory, nodes=3, faults="all") as lab:
        args = argparse.Namespace(kubeconfig=None, context=None, ssh_config=None, dry_run=False)
        runtimes: list = []
        journal = tmp_path / "journal.jsonl"
        app = ClusterfixApp(
            session_factory=make_session_factory(args, str(lab.dir), str(journal), runtimes),
            journal_path=journal, report_dir=tmp_path,
        )
        try:
            yield app, lab
        finally:
            for runtime in runtimes:
                runtime.close()


async def _connect_and_diagnose(pilot) -> None:
    app = pilot.app
    await settle(pilot)
    while isinstance(app.screen, ConfirmationModal):  # a host key to accept (lab known_hosts)
        await pilot.press("y")
        await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    assert all(c.state == "connected" for c in app.state.conns.values()), app.state.conns
    await pilot.press("c")
    await settle(pilot)
    assert isinstance(app.screen, DiagnosticsScreen)
    findings = app.state.diagnosis.findings
    assert findings, "a lab with faults must show findings"
    table = app.screen.query_one("#findings-table", DataTable)
    assert table.row_count == len(findings)
    shown = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
    assert {f.title for f in findings} == shown


async def _walk_steps(pilot, skip: str | None = None) -> None:
    """From the plan, run all in order: apply each needed step through its dialog (or skip one)."""
    app = pilot.app
    await pilot.press("p")
    await settle(pilot)
    assert isinstance(app.screen, PlanScreen)
    assert any(app.step_state(s) == "needed" for s in STEP_ORDER)
    await pilot.press("a")
    await settle(pilot)
    seen = []
    while isinstance(app.screen, StepScreen):
        screen = app.screen
        step = screen.step
        seen.append(step)
        assert screen.phase == "idle", f"{step}: {screen.phase}"
        if step == skip:
            await pilot.press("s")
            await settle(pilot)
            assert app.state.outcomes[step].status == "skipped"
        elif screen.plan.actions:
            await pilot.press("a")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmationModal), f"{step}: apply must ask"
            body = str(app.screen.query_one("#dialog-body Static", Static).render())
            assert screen.plan.actions[0].command.split()[0] in body
            await pilot.press("y")
            await settle(pilot)
            outcome = app.state.outcomes[step]
            assert outcome.status in ("changed", "unchanged"), (step, outcome)
        await pilot.press("n")
        await settle(pilot)
    assert isinstance(app.screen, PlanScreen)
    assert seen and len(seen) == len(set(seen))
    if skip:
        assert skip in seen


async def _validate_and_export(pilot, tmp_path: Path) -> Path:
    app = pilot.app
    await pilot.press("v")
    await settle(pilot)
    assert isinstance(app.screen, ValidationScreen)
    assert app.state.validation
    await pilot.press("s")
    await settle(pilot)
    assert isinstance(app.screen, SummaryScreen)
    assert app.state.verdict
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(app.screen, ExportModal)
    report = tmp_path / "exported" / "report.md"
    app.screen.query_one(Input).value = str(report)
    await pilot.press("enter")
    await settle(pilot)
    assert report.exists() and report.with_suffix(".json").exists()
    return report


async def test_whole_flow_on_a_lab_with_faults(tmp_path_factory, tmp_path: Path) -> None:
    with wizard_on_lab(tmp_path_factory, tmp_path) as (app, lab):
        async with app.run_test(size=(80, 24)) as pilot:
            await _connect_and_diagnose(pilot)
            await _walk_steps(pilot)
            report = await _validate_and_export(pilot, tmp_path)
            failed = [r for r in app.state.validation if not r.passed]
            assert not failed, failed
            assert app.state.verdict == "fixed"
            data = json.loads(report.with_suffix(".json").read_text())
            assert data


async def test_skipped_step_is_reported_and_validation_fails_for_it(tmp_path_factory,
                                                                   tmp_path: Path) -> None:
    skip = "host_network"
    with wizard_on_lab(tmp_path_factory, tmp_path) as (app, lab):
        async with app.run_test(size=(80, 24)) as pilot:
            await _connect_and_diagnose(pilot)
            assert any(f.step == skip for f in app.state.diagnosis.findings)
            await _walk_steps(pilot, skip=skip)
            assert app.step_state(skip) == "skipped"
            report = await _validate_and_export(pilot, tmp_path)
            failed = [r for r in app.state.validation if not r.passed]
            assert failed, "validation must still fail with the host_network faults left"
            summary = str(app.screen.query_one("#summary-text", Static).render())
            assert "Skipped (1)" in summary and skip in summary
            assert f"Still failing ({len(failed)})" in summary
            assert app.state.verdict in ("partially-fixed", "still-broken")
            assert "skipped" in report.read_text().lower()
