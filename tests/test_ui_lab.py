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
from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.core.group import group_findings
from clusterfix_tui.core.model import CLUSTER, STEP_ORDER
from clusterfix_tui.ui.app import ClusterfixApp
from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal, ExportModal, HostKeysModal
from clusterfix_tui.ui.screens.plan import PlanScreen
from clusterfix_tui.ui.screens.step import StepScreen
from clusterfix_tui.ui.screens.summary import SummaryScreen
from clusterfix_tui.ui.screens.validation import ValidationScreen
from clusterfix_tui.ui.widgets.paged_table import PagedTable

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
    while isinstance(app.screen, HostKeysModal):  # host keys to accept (lab known_hosts)
        await pilot.press("a")
        await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    assert all(c.state == "connected" for c in app.state.conns.values()), app.state.conns
    await pilot.press("c")
    await settle(pilot)
    assert isinstance(app.screen, DiagnosticsScreen)
    findings = app.state.diagnosis.findings
    assert findings, "a lab with faults must show findings"
    # one row per cause (core/group.py): a finding alone shows its title, a cause shared by
    # several nodes its group's title; every finding is inside exactly one shown row
    groups = group_findings(findings)
    assert sorted(id(f) for g in groups for f in g.findings) == sorted(id(f) for f in findings)
    table = app.screen.query_one("#findings-table", PagedTable)
    assert table.row_count == len(groups)
    shown = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
    assert {g.title for g in groups} == shown


def _dialog_pairs(app) -> list[tuple[str, str]]:
    """(node, command) for every command the dialog names: under "on NODE:" or, when identical
    commands are shown once, "on each of N nodes: a, b, ...:" (every node named)."""
    body = str(app.screen.query_one("#dialog-body Static", Static).render())
    nodes: list[str] = []
    out: list[tuple[str, str]] = []
    for line in body.splitlines():
        t = line.strip()
        if t.startswith("on ") and t.endswith(":"):
            where = t[3:-1]
            if where.startswith("each of ") and ": " in where:
                count, names = where.split(": ", 1)
                nodes = names.split(", ")
                assert len(nodes) == int(count.split()[2]), t
            else:
                nodes = ["__cluster__" if where == "the cluster (API)" else where]
        elif t.startswith("$ "):
            out += [(n, t[2:]) for n in nodes]
    return out


def _dialog_commands(app) -> list[str]:
    """Every command the dialog names, once per node it runs on (sorted: identical commands are
    shown once with their nodes, so the order on screen is by command, not by node)."""
    return sorted(cmd for _node, cmd in _dialog_pairs(app))


async def _confirm(pilot, step: str) -> None:
    app = pilot.app
    assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-apply"
    plan = app.state.plans[step]
    want = [a for a in plan.actions if not is_opt_in(a)]
    assert sorted(_dialog_pairs(app)) == sorted(
        ("__cluster__" if a.target == CLUSTER else a.target, a.command) for a in want)
    await pilot.press("y")
    await settle(pilot)
    outcome = app.state.outcomes[step]
    assert outcome.status in ("changed", "unchanged"), (step, outcome)


async def _walk_steps(pilot, skip: str | None = None) -> list[str]:
    """From the plan, Run all: each step with actions asks (yes; or no, then skip, for `skip`),
    a step with nothing to do passes on by itself; after a skip, `n` and `a` by hand."""
    app = pilot.app
    await pilot.press("p")
    await settle(pilot)
    assert isinstance(app.screen, PlanScreen)
    assert any(app.step_state(s) == "needed" for s in STEP_ORDER)
    await pilot.press("a")
    await settle(pilot)
    seen: list[str] = []
    passes: list[str] = []
    while True:
        screen = app.screen
        if isinstance(screen, ConfirmationModal) and screen.id == "confirm-pass":
            # the end of a pass: findings remain that steps can act on; another pass (or not,
            # when a step was skipped on purpose)
            passes.append(str(screen.query_one("#dialog-body Static", Static).render()))
            await pilot.press("y" if skip is None else "n")
            await settle(pilot)
        elif isinstance(screen, ConfirmationModal):
            step = app.screen_stack[-2].step
            seen.append(step)
            if step == skip:
                await pilot.press("n")  # decline: Run all stops here
                await settle(pilot)
                await pilot.press("s")
                await settle(pilot)
                assert app.state.outcomes[step].status == "skipped"
                await pilot.press("n")
                await settle(pilot)
            else:
                await _confirm(pilot, step)
        elif isinstance(screen, StepScreen):
            step = screen.step
            assert screen.phase in ("idle", "finished"), f"{step}: {screen.phase}"
            if step not in app.state.outcomes and screen.plan.actions:
                seen.append(step)
                await pilot.press("a")
                await settle(pilot)
                await _confirm(pilot, step)
            await pilot.press("n")
            await settle(pilot)
        elif isinstance(screen, PlanScreen) and screen.converging:
            await settle(pilot)  # the flow settles and re-diagnoses after the pass
        else:
            break
    assert isinstance(app.screen, PlanScreen)
    assert seen and len(passes) < 3, (seen, passes)
    if skip:
        assert skip in seen
    return seen


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


async def test_step_3_is_planned_from_the_cluster_after_step_1_ran(tmp_path_factory,
                                                                   tmp_path: Path) -> None:
    """#11's path on the real lab (all faults): apply step 1 (iptables), `n`, `n`, apply step 3
    (pods). Step 1 restarts kube-proxy; step 3 must be planned from the cluster after that: no
    404, no failed step."""
    with wizard_on_lab(tmp_path_factory, tmp_path) as (app, lab):
        async with app.run_test(size=(80, 24)) as pilot:
            await _connect_and_diagnose(pilot)
            await pilot.press("p")
            await settle(pilot)
            before = app.state.plans["pods"]  # the preview built before anything ran
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen) and app.screen.step == "iptables"
            step1 = app.state.plans["iptables"]
            assert step1.actions, "the lab's iptables faults need step 1"
            await pilot.press("a")
            await settle(pilot)
            await _confirm(pilot, "iptables")
            assert app.state.outcomes["iptables"].status == "changed"
            restarted = {a.api["name"] for a in step1.actions
                         if a.api and a.api.get("verb") == "delete_pod"}
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen) and app.screen.step == "cni_bridge"
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen) and app.screen.step == "pods", \
                app.screen
            plan = app.state.plans["pods"]
            deletes = {a.api["name"] for a in plan.actions
                       if a.api and a.api.get("verb") == "delete_pod"}
            assert not deletes & restarted, "step 3 never targets a pod step 1 already replaced"
            assert plan is not before, "step 3 was planned again after step 1 changed the cluster"
            if plan.actions:
                await pilot.press("a")
                await settle(pilot)
                await _confirm(pilot, "pods")
            outcomes = app.state.outcomes
            assert all(o.status not in ("failed", "partial") for o in outcomes.values()), outcomes
            failed = [a for o in outcomes.values() for a in o.actions if a.status == "failed"]
            assert not failed, failed
            journal = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
            errors = [e for e in journal if e["type"] == "command_end"
                      and "404" in (e.get("stderr") or "") + (e.get("error") or "")]
            assert not errors, errors


async def test_undo_on_the_lab_shows_exactly_what_it_runs(tmp_path_factory,
                                                          tmp_path: Path) -> None:
    with wizard_on_lab(tmp_path_factory, tmp_path) as (app, lab):
        async with app.run_test(size=(80, 24)) as pilot:
            await _connect_and_diagnose(pilot)
            await pilot.press("p")
            await settle(pilot)
            app.screen.query_one("#steps", DataTable).move_cursor(
                row=STEP_ORDER.index("host_network"))
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen) and app.screen.step == "host_network"
            assert any(a.rollback is not None for a in app.screen.plan.actions)
            await pilot.press("a")
            await settle(pilot)
            await _confirm(pilot, "host_network")
            journal_path = tmp_path / "journal.jsonl"
            n_before = len(journal_path.read_text().splitlines())
            await pilot.press("u")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-undo"
            shown = _dialog_commands(app)
            assert shown, "Undo names what it runs"
            await pilot.press("y")
            await settle(pilot)
            events = [json.loads(x) for x in journal_path.read_text().splitlines()[n_before:]]
            ran = [e["command"] for e in events if e["type"] == "command_start"]
            assert sorted(ran) == shown, "what Undo showed is, command for command, what ran"
            assert all(e["rollback"] for e in events if e["type"] == "command_start")
            ends = [e for e in events if e["type"] == "command_end"]
            assert ends and all(e["exit_code"] == 0 for e in ends), ends
            assert app.step_state("host_network") == "rolled back"
