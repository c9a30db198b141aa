"""The wizard driven end to end with Pilot on the recorded fake session (tests/ui_fakes.py)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerCancelled
from ui_fakes import FINDINGS, make_app, settle

from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal, ExportModal, HelpScreen
from clusterfix_tui.ui.screens.plan import PlanScreen
from clusterfix_tui.ui.screens.step import StepScreen
from clusterfix_tui.ui.screens.summary import SummaryScreen
from clusterfix_tui.ui.screens.validation import ValidationScreen
from clusterfix_tui.ui.widgets.log_pane import LogPane


def _text(widget: Static) -> str:
    return str(widget.render())


async def _connect_and_diagnose(pilot, accept: bool = True) -> None:
    app = pilot.app
    await settle(pilot)
    assert isinstance(app.screen, ConfirmationModal), "the unknown host key must ask"
    body = str(app.screen.query_one("#dialog-body Static", Static).render())
    assert "ssh-ed25519" in body and "SHA256:q3Vb1lX0u0GZr6mJ7kq1tq8k3m2o9wYf5lq3i8Jk2aE" in body
    await pilot.press("y" if accept else "n")
    await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    await pilot.press("c")
    await settle(pilot)
    assert isinstance(app.screen, DiagnosticsScreen)


async def _apply_current_step(pilot, step: str) -> None:
    app = pilot.app
    assert isinstance(app.screen, StepScreen) and app.screen.step == step
    await pilot.press("a")
    await pilot.pause()
    assert isinstance(app.screen, ConfirmationModal), "apply must ask first"
    body = str(app.screen.query_one("#dialog-body Static", Static).render())
    for action in app.state.plans[step].actions:
        assert action.command in body, "the dialog names exactly what will run"
    await pilot.press("y")
    await settle(pilot)


async def _export(pilot, path: Path) -> None:
    app = pilot.app
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(app.screen, ExportModal)
    inp = app.screen.query_one(Input)
    assert Path(inp.value).name.startswith("clusterfix-report-lab-k3f9-20261126-234000")
    inp.value = str(path)
    await pilot.press("enter")
    await settle(pilot)


async def test_whole_flow_applies_every_step_and_exports(tmp_path: Path) -> None:
    app, session = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _connect_and_diagnose(pilot)
        assert session.accepted == {"node-3"}
        table = app.screen.query_one("#findings-table", DataTable)
        assert table.row_count == len(FINDINGS)
        titles = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert {f.title for f in FINDINGS} == titles
        assert "IPTABLES_BACKEND_CONFLICT" in _text(app.screen.query_one("#finding-text", Static))

        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        assert [app.step_state(s) for s in STEP_ORDER] == ["needed"] * len(STEP_ORDER)
        await pilot.press("a")  # run all in order: each step still asks
        await settle(pilot)
        for step in STEP_ORDER:
            await _apply_current_step(pilot, step)
            assert app.state.outcomes[step].status == "changed"
            assert app.screen.query_one(LogPane).lines, "the live log showed the output"
            await pilot.press("n")
            await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        assert [app.step_state(s) for s in STEP_ORDER] == ["done"] * len(STEP_ORDER)
        assert session.applied == set(STEP_ORDER)

        await pilot.press("v")
        await settle(pilot)
        assert isinstance(app.screen, ValidationScreen)
        assert app.state.validation and all(r.passed for r in app.state.validation)
        assert app.screen.query_one("#checks", DataTable).row_count == len(app.state.validation)

        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, SummaryScreen)
        assert app.state.verdict == "fixed"
        report = tmp_path / "out" / "report.md"
        await _export(pilot, report)
        assert report.exists() and report.with_suffix(".json").exists()
        assert "IPTABLES_BACKEND_CONFLICT" in report.read_text()
        doc = json.loads(report.with_suffix(".json").read_text())
        assert doc
        assert oct(report.stat().st_mode & 0o777) == "0o600"
        # validation ran once before anything changed (failing) and again at the end (passing)
        events = [json.loads(x) for x in session.journal_path.read_text().splitlines()]
        validations = [e for e in events if e["type"] == "validation"]
        assert [e["phase"] for e in validations][:1] == ["before"]
        assert not all(r["passed"] for r in validations[0]["results"])
        assert all(r["passed"] for r in validations[-1]["results"])


async def test_skipped_step_is_reported_skipped_and_validation_fails_for_it(tmp_path: Path) -> None:
    app, session = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _connect_and_diagnose(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        for step in STEP_ORDER:
            if step == "cni_bridge":
                await pilot.press("s")
                await settle(pilot)
                assert app.state.outcomes[step].status == "skipped"
                assert "skipped" in _text(app.screen.query_one("#step-title", Static))
            else:
                await _apply_current_step(pilot, step)
            await pilot.press("n")
            await settle(pilot)
        assert app.step_state("cni_bridge") == "skipped"
        assert session.skipped == {"cni_bridge"}
        await pilot.press("v")
        await settle(pilot)
        failed = [r for r in app.state.validation if not r.passed]
        assert failed and {r.fix_step for r in failed} == {"cni_bridge"}
        status = _text(app.screen.query_one("#validation-status", Static))
        assert "cni_bridge" in status

        # a failed check opens the step that fixes it
        checks = app.screen.query_one("#checks", DataTable)
        index = app.state.validation.index(failed[0])
        checks.move_cursor(row=index)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, StepScreen) and app.screen.step == "cni_bridge"
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("s")
        await settle(pilot)
        summary = _text(app.screen.query_one("#summary-text", Static))
        assert "Skipped (1)" in summary and "cni_bridge" in summary
        assert app.state.verdict == "partially-fixed"
        report = tmp_path / "r.md"
        await _export(pilot, report)
        text = report.read_text()
        assert "skipped" in text.lower()


async def test_host_key_accept_and_refuse(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=("node-2", "node-3"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal)
        assert "node-2" in str(app.screen.query_one("#dialog-title").render())
        await pilot.press("y")  # accept node-2
        await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal)
        assert "node-3" in str(app.screen.query_one("#dialog-title").render())
        await pilot.press("n")  # refuse node-3
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        assert session.accepted == {"node-2"}
        assert session.left_out == {"node-3": "host key refused by the user"}
        assert app.state.conns["node-2"].state == "connected"
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, DiagnosticsScreen)
        nodes = app.screen.query_one("#nodes-table", DataTable)
        ssh = {str(nodes.get_row_at(i)[0]): str(nodes.get_row_at(i)[7])
               for i in range(nodes.row_count)}
        assert ssh["node-3"] == "left-out" and ssh["node-2"] == "connected"


async def test_no_node_answers_means_no_continue(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=(), unreachable=("node-1", "node-2", "node-3"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        assert "No node answers" in _text(app.screen.query_one("#connect-status", Static))


async def test_q_quits_at_once_when_idle(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0


async def test_q_asks_while_a_step_runs_and_cancels_between_actions(tmp_path: Path) -> None:
    gate = threading.Event()
    app, session = make_app(tmp_path, host_key_nodes=(), gates={"apply": gate})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("a", "y")
            await pilot.pause()
            assert app.step_running
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-quit"
            await pilot.press("n")  # keep running
            await pilot.pause()
            assert app.is_running and app.step_running
            await pilot.press("q")
            await pilot.pause()
            await pilot.press("y")  # cancel the step and quit
            await pilot.pause()
            assert app.is_running, "it waits for the step to stop between actions"
            gate.set()
            # the step ends, then the app exits and cancels what is left of the worker
            with contextlib.suppress(WorkerCancelled):
                await app.workers.wait_for_complete()
            await pilot.pause()
    finally:
        gate.set()
    assert app.return_value == 1
    assert app.state.outcomes["iptables"].status == "cancelled"


async def test_ui_keeps_responding_while_a_slow_session_call_runs(tmp_path: Path) -> None:
    gate = threading.Event()
    app, session = make_app(tmp_path, host_key_nodes=(), gates={"diagnose": gate})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("c")
            for _ in range(5):
                await pilot.pause()
            assert isinstance(app.screen, DiagnosticsScreen)
            assert not gate.is_set() and "diagnose" in session.calls  # the call is blocked
            await pilot.press("2")  # a key press, handled while diagnose() blocks
            await pilot.pause()
            assert app.screen.query_one("#panels").active == "nodes"
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            assert not gate.is_set(), "handled while the session call was still blocked"
            await pilot.press("escape")
            gate.set()
            await settle(pilot)
            assert app.state.diagnosis is not None
    finally:
        gate.set()


async def test_log_pane_stays_bounded_and_responsive_under_a_flood(tmp_path: Path) -> None:
    gate = threading.Event()
    app, session = make_app(tmp_path, host_key_nodes=(), lines_per_action=20_000,
                            stream_gate=gate)
    app.pane_max_lines = 500
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("a", "y")
            while not session.streaming.is_set():
                await pilot.pause()
            # 20,000 lines arrived; apply() now blocks mid-step: keys still work
            await pilot.press("l")
            await pilot.pause()
            assert app.screen.id == "session-log"
            await pilot.press("escape")
            await pilot.pause()
            assert not gate.is_set(), "handled while the session call was still blocked"
            gate.set()
            await settle(pilot)
            pane = app.screen.query_one(LogPane)
            assert len(pane.lines) <= 500
            assert app.screen._buffer.total == 2 * (20_000 + 1)
            assert len(app.session_log) <= app.session_log.maxlen
    finally:
        gate.set()


async def test_dry_run_shows_a_banner(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, dry_run=True, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        banner = app.screen.query_one(".dry-run-banner", Static)
        assert "DRY RUN" in _text(banner)


async def test_a_failing_session_call_is_reported_and_can_be_retried(tmp_path: Path) -> None:
    from clusterfix_tui.transports.base import APIError

    app, session = make_app(tmp_path, host_key_nodes=(),
                            errors={"diagnose": APIError("the API server said 503")})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, DiagnosticsScreen)
        status = _text(app.screen.query_one("#diag-status", Static))
        assert "Diagnosis failed" in status and "503" in status
        toasts = [n for n in app._notifications]
        assert any(n.title == "Kubernetes API error" and "503" in n.message for n in toasts)
        assert app.is_running
        await pilot.press("r")  # retry: the fake fails once
        await settle(pilot)
        assert app.state.diagnosis is not None
        assert app.screen.query_one("#findings-table", DataTable).row_count == len(FINDINGS)
