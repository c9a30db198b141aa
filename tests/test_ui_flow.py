"""The wizard driven end to end with Pilot on the recorded fake session (tests/ui_fakes.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from pathlib import Path

from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerCancelled
from ui_fakes import HOST_KEY_FINGERPRINT, make_app, settle

from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import (
    ConfirmationModal,
    ExportModal,
    HelpScreen,
    HostKeysModal,
)
from clusterfix_tui.ui.screens.plan import PlanScreen
from clusterfix_tui.ui.screens.step import StepScreen
from clusterfix_tui.ui.screens.summary import SummaryScreen
from clusterfix_tui.ui.screens.validation import ValidationScreen
from clusterfix_tui.ui.widgets.detail_pane import DetailPane
from clusterfix_tui.ui.widgets.log_pane import LogPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable


def _text(widget: Static | DetailPane) -> str:
    return str(widget.render())


async def _connect_and_diagnose(pilot, accept: bool = True) -> None:
    app = pilot.app
    await settle(pilot)
    assert isinstance(app.screen, HostKeysModal), "the unknown host key must ask"
    assert [(k.host, k.key_type, k.fingerprint) for k in app.screen.keys] == \
        [("node-3", "ssh-ed25519", HOST_KEY_FINGERPRINT)]
    await pilot.press("a" if accept else "n")
    await settle(pilot)
    assert isinstance(app.screen, ConnectScreen)
    await pilot.press("c")
    await settle(pilot)
    assert isinstance(app.screen, DiagnosticsScreen)


def _dialog_commands(app) -> list[str]:
    """The commands a confirmation dialog names, in its order (the `  $ ` lines)."""
    body = str(app.screen.query_one("#dialog-body Static", Static).render())
    return [line.strip()[2:] for line in body.splitlines() if line.strip().startswith("$ ")]


async def _confirm_apply(pilot, step: str) -> None:
    """The apply dialog is up for `step`: it names exactly the ticked actions; say yes."""
    app = pilot.app
    assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-apply", \
        app.screen
    assert f"Apply {step}?" in str(app.screen.query_one("#dialog-title").render())
    ticked = [a.command for a in app.state.plans[step].actions if not is_opt_in(a)]
    assert _dialog_commands(app) == ticked, "the dialog names exactly what will run"
    await pilot.press("y")
    await settle(pilot)


async def _apply_current_step(pilot, step: str) -> None:
    app = pilot.app
    assert isinstance(app.screen, StepScreen) and app.screen.step == step
    await pilot.press("a")
    await settle(pilot)
    await _confirm_apply(pilot, step)


async def _export(pilot, path: Path) -> None:
    app = pilot.app
    await pilot.press("e")
    await pilot.pause()
    assert isinstance(app.screen, ExportModal)
    inp = app.screen.query_one(Input)
    assert Path(inp.value).name.startswith("clusterfix-report-clusterfix-lab-20261126-234000")
    inp.value = str(path)
    await pilot.press("enter")
    await settle(pilot)


async def _run_all(pilot, skip: str | None = None) -> list[str]:
    """From the plan: `a` runs every step in order; each step with actions asks (answered yes,
    or `n` then `s` for `skip`), a step with nothing to do passes on by itself."""
    app = pilot.app
    await pilot.press("a")
    await settle(pilot)
    asked = []
    while isinstance(app.screen, ConfirmationModal):
        step = app.screen.query_one("#dialog-title").render()
        step = str(step).split()[1].rstrip("?")
        asked.append(step)
        if step == skip:
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen) and not app.state.run_all
            await pilot.press("s")
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)
            continue
        await _confirm_apply(pilot, step)
    return asked


async def test_whole_flow_applies_every_step_and_exports(tmp_path: Path) -> None:
    app, session = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _connect_and_diagnose(pilot)
        assert session.accepted == {"node-3"}
        findings = app.state.diagnosis.findings
        assert {f.step for f in findings} == set(STEP_ORDER) - {"pods"}  # pods: masked
        table = app.screen.query_one("#findings-table", PagedTable)
        assert table.row_count == len(findings)
        titles = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert {f.title for f in findings} == titles
        assert "KUBE_PROXY_INCOMPATIBLE_CHAIN" in _text(
            app.screen.query_one("#finding-text", DetailPane))

        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        assert app.step_state("pods") == "nothing to do"
        asked = await _run_all(pilot)
        # pods had nothing to do before; the iptables step restarted kube-proxy and unmasked its
        # crash loop: Run all re-planned pods from the cluster as it was then, and asked
        assert asked == list(STEP_ORDER)
        assert isinstance(app.screen, PlanScreen)
        assert [app.step_state(s) for s in STEP_ORDER] == ["done"] * len(STEP_ORDER)
        assert session.applied == set(STEP_ORDER)
        assert all(o.status == "changed" for o in app.state.outcomes.values())

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
        assert "KUBE_PROXY_INCOMPATIBLE_CHAIN" in report.read_text()
        doc = json.loads(report.with_suffix(".json").read_text())
        assert doc
        assert oct(report.stat().st_mode & 0o777) == "0o600"
        # validation ran once before anything changed (failing) and again at the end (passing)
        events = session.events()
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
        await _run_all(pilot, skip="cni_bridge")
        # Run all stopped at the declined step; `n` went on by hand from there
        while isinstance(app.screen, StepScreen):
            await _apply_current_step(pilot, app.screen.step)
            await pilot.press("n")
            await settle(pilot)
        assert app.step_state("cni_bridge") == "skipped"
        assert session.skipped == {"cni_bridge"}
        assert session.applied == set(STEP_ORDER) - {"cni_bridge"}
        # end of the pass: the flow re-diagnosed; the skipped step still has something to do
        assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-pass"
        assert "cni_bridge" in str(app.screen.query_one("#dialog-body Static", Static).render())
        await pilot.press("n")  # not now
        await settle(pilot)
        assert isinstance(app.screen, PlanScreen)
        await pilot.press("v")
        await settle(pilot)
        failed = [r for r in app.state.validation if not r.passed]
        assert failed and {r.fix_step for r in failed} == {"cni_bridge"}
        assert {r.name for r in failed} == {"pod-to-pod"}
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


async def test_a_step_is_planned_from_the_cluster_as_it_is_when_opened(tmp_path: Path) -> None:
    """#11: apply step 1, `n`, `n`, apply step 3. Step 1 restarted kube-proxy (deleted its pod);
    step 3 must be planned after that, not from the plan built before step 1 ran (which would
    delete the pod that is gone: 404)."""
    app, session = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await _apply_current_step(pilot, "iptables")
        deleted = [a.api["name"] for a in app.state.plans["iptables"].actions
                   if a.api and a.api.get("verb") == "delete_pod"]
        assert deleted, "step 1 restarts kube-proxy"
        assert app.state.outcomes["iptables"].status == "changed"
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, StepScreen) and app.screen.step == "cni_bridge"
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, StepScreen) and app.screen.step == "pods"
        plan = app.state.plans["pods"]
        targets = [a.api["name"] for a in plan.actions if a.api]
        assert targets and not set(targets) & set(deleted), targets
        await _apply_current_step(pilot, "pods")
        outcome = app.state.outcomes["pods"]
        assert outcome.status == "changed", outcome
        assert not [a for a in outcome.actions if a.status == "failed"]
        # what ran is the plan shown at approval time
        events = session.events()
        ran = [e["command"] for e in events if e["type"] == "command_start"
               and e["step"] == "pods"]
        assert ran == [a.command for a in plan.actions]


async def test_every_mutating_action_can_be_unticked_before_apply(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        app.screen.query_one("#steps", DataTable).move_cursor(row=STEP_ORDER.index("host_network"))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, StepScreen) and screen.step == "host_network"
        plan = app.state.plans["host_network"]
        actions = screen.query_one("#actions")
        assert actions.has_focus
        mutating = [a for a in plan.actions if a.mutating and not is_opt_in(a)]
        assert len(mutating) >= 2
        assert set(actions.selected) >= {a.id for a in mutating}
        unticked = mutating[1]
        actions.highlighted = plan.actions.index(unticked)
        await pilot.press("space")  # untick it
        await pilot.pause()
        assert unticked.id not in actions.selected
        await pilot.press("a")
        await settle(pilot)
        shown = _dialog_commands(app)
        assert unticked.command not in shown
        assert shown == [a.command for a in plan.actions
                         if a.id != unticked.id and not is_opt_in(a)]
        await pilot.press("y")
        await settle(pilot)
        decision = [e for e in session.events() if e["type"] == "decision"][-1]
        assert decision["action_ids"] == [a.id for a in plan.actions
                                          if a.id != unticked.id and not is_opt_in(a)]
        statuses = {o.action_id: o.status for o in app.state.outcomes["host_network"].actions}
        assert statuses[unticked.id] == "skipped"
        ran = [e["action_id"] for e in session.events() if e["type"] == "command_start"]
        assert unticked.id not in ran


async def test_undo_shows_exactly_what_it_runs(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        app.screen.query_one("#steps", DataTable).move_cursor(row=STEP_ORDER.index("host_network"))
        await pilot.press("enter")
        await settle(pilot)
        await _apply_current_step(pilot, "host_network")
        assert "host_network" in session.applied
        await pilot.press("u")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-undo"
        shown = _dialog_commands(app)
        assert shown, "Undo names the commands it runs"
        n_before = len(session.events())
        await pilot.press("y")
        await settle(pilot)
        events = session.events()[n_before:]
        ran = [e["command"] for e in events if e["type"] == "command_start"]
        assert ran == shown, "what Undo showed is, command for command, what ran"
        assert all(e["rollback"] for e in events if e["type"] == "command_start")
        assert "host_network" not in session.applied, "the rollback undid the change"
        assert app.step_state("host_network") == "rolled back"


async def test_confirm_dialog_shows_its_buttons_at_80x24(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        app.screen.query_one("#steps", DataTable).move_cursor(
            row=STEP_ORDER.index("worker_kubeconfig"))  # the longest commands
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal)
        screen_region = app.screen.region
        body = app.screen.query_one("#dialog-body")
        assert body.max_scroll_y > 0, "the command list is longer than the dialog: it scrolls"
        for button in ("#yes", "#no"):
            region = app.screen.query_one(button).region
            assert region.height and screen_region.contains_region(region), (button, region)


async def test_a_finding_without_reference_shows_no_ref_line(tmp_path: Path) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        findings = list(screen._findings)
        assert any(f.reference for f in findings)
        # one row per finding here (no cause shared by several nodes): row i shows finding i
        for i, f in enumerate(findings):
            screen._findings[i] = dataclasses.replace(f, reference=" " if i % 2 else "")
            screen._apply_filter()
            screen._show_finding(i)
            assert "ref:" not in _text(screen.query_one("#finding-text", DetailPane))
        screen._findings[0] = dataclasses.replace(findings[0], reference="https://example.org/x")
        screen._apply_filter()
        screen._show_finding(0)
        assert "ref: https://example.org/x" in _text(screen.query_one("#finding-text", DetailPane))


async def test_rollout_wait_shows_a_progress_bar_with_its_time_out(tmp_path: Path) -> None:
    from textual.widgets import ProgressBar

    from clusterfix_tui.core.fixes.pods import wait_for_components

    class Pods:
        """Two reads: 1 of 3 kube-proxy pods ready, then 3 of 3."""

        def __init__(self) -> None:
            self.ready = 1

        def list_nodes(self):
            return [{"metadata": {"name": f"node-{i}"}} for i in (1, 2, 3)]

        def list_pods(self, namespace, selector):
            ok = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            bad = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
            return [{"metadata": {"name": f"kube-proxy-{i}", "namespace": "kube-system"},
                     "spec": {"nodeName": f"node-{i}"}, "status": ok if i <= self.ready else bad}
                    for i in (1, 2, 3)]

    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        screen._start(rollback=False)
        lines = []
        api = Pods()
        wait_for_components(api, ["kube_proxy"], timeout=60, poll=0,
                            on_line=lambda *a: (lines.append(a), screen._on_line(*a)),
                            sleep=lambda s: setattr(api, "ready", 3))
        await pilot.pause()
        bar = screen.query_one("#rollout", ProgressBar)
        assert bar.display and bar.total == 3 and bar.progress == 3, lines
        label = _text(screen.query_one("#rollout-label", Static))
        assert "3/3 Running and Ready" in label and "gives up after 00:02:00" in label


async def test_summary_and_report_agree_on_a_session_with_a_failed_step(tmp_path: Path) -> None:
    """The summary screen renders the SessionRecord the report is built from: same verdict, same
    step statuses, same counts, on a session where a step failed."""
    import re

    app, session = make_app(tmp_path, host_key_nodes=(), fail_actions=("cni_bridge:node-2:2",))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        await _run_all(pilot)
        assert app.state.outcomes["cni_bridge"].status == "failed"
        while isinstance(app.screen, (StepScreen, ConfirmationModal)):
            if isinstance(app.screen, ConfirmationModal):
                await pilot.press("n" if app.screen.id == "confirm-pass" else "y")
            elif app.screen.step not in app.state.outcomes and app.screen.plan.actions:
                await pilot.press("a")
            else:
                await pilot.press("n")
            await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, SummaryScreen)
        summary = _text(app.screen.query_one("#summary-text", Static))
        report = tmp_path / "r.md"
        await _export(pilot, report)
        doc = json.loads(report.with_suffix(".json").read_text())
    final: dict[str, str] = {}
    for e in sorted((e for e in doc["steps"] if e["kind"] == "repair" and e["decision"]),
                    key=lambda e: e["pass_no"]):
        final[e["step"]] = e["status"]
    assert final["cni_bridge"] == "failed"
    failing = [r for r in doc["validation"]["after"] if not r["passed"]]
    want = (f"found {len(doc['findings']['before'])} · "
            f"changed {sum(1 for s in final.values() if s in ('changed', 'partial'))} step(s) · "
            f"failed {sum(1 for s in final.values() if s in ('failed', 'cancelled'))} · "
            f"skipped {sum(1 for s in final.values() if s == 'skipped')} · "
            f"still failing {len(failing)} · {doc['stats']['passes']} pass(es)")
    assert want in " ".join(summary.split()), (want, summary)
    assert re.search(rf"Verdict: {re.escape(doc['verdict']['value'])}\b", summary)
    assert app.state.verdict == doc["verdict"]["value"] == "partially-fixed"
    for step, status in final.items():
        assert re.search(rf"{step}\s+{status}", summary), (step, status)


async def test_another_pass_runs_the_steps_that_still_have_something_to_do(tmp_path: Path
                                                                           ) -> None:
    app, session = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        await _run_all(pilot, skip="cni_bridge")
        while isinstance(app.screen, StepScreen):  # Run all stopped: the rest by hand
            if app.screen.step not in app.state.outcomes and app.screen.plan.actions:
                await _apply_current_step(pilot, app.screen.step)
            await pilot.press("n")
            await settle(pilot)
        assert isinstance(app.screen, ConfirmationModal) and app.screen.id == "confirm-pass"
        await pilot.press("y")  # pass 2
        await settle(pilot)
        await _confirm_apply(pilot, "cni_bridge")
        while isinstance(app.screen, (StepScreen, ConfirmationModal)):
            if isinstance(app.screen, ConfirmationModal):
                await pilot.press("y" if app.screen.id == "confirm-apply" else "n")
            else:
                await pilot.press("n")
            await settle(pilot)
        assert app.state.outcomes["cni_bridge"].status == "changed"
        assert session.applied == set(STEP_ORDER)
        notes = [e["text"] for e in session.events() if e["type"] == "note"]
        assert any(n.startswith("pass 2:") and "cni_bridge" in n for n in notes), notes
        decisions = [(e["step"], e.get("pass_no")) for e in session.events()
                     if e["type"] == "decision"]
        assert ("cni_bridge", 2) in decisions, decisions


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


async def _until(pilot, cond, rounds: int = 400) -> None:
    """Poll (one event-loop round each) until cond() holds: a busy machine may need more than one
    round for a pushed screen to become the active one. No wall-clock bound."""
    for _ in range(rounds):
        if cond():
            return
        await pilot.pause()


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
            await _until(pilot, lambda: app.screen.id == "session-log")
            assert app.screen.id == "session-log"
            await pilot.press("escape")
            await _until(pilot, lambda: app.screen.id != "session-log")
            # both keys were handled while apply() was still blocked on the gate
            assert app.screen.id != "session-log" and not gate.is_set()
            gate.set()
            await settle(pilot)
            pane = app.screen.query_one(LogPane)
            assert len(pane.lines) <= 500
            ran = [o for o in app.state.outcomes["iptables"].actions if o.status == "ok"]
            assert ran and app.screen._buffer.total == len(ran) * 20_000
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
        assert app.screen.query_one("#findings-table", PagedTable).row_count == \
            len(app.state.diagnosis.findings) > 0
