#!/usr/bin/env python3
"""Regenerate screenshots/*.svg: every wizard screen, from a real lab session.

    sudo python3 scripts/screenshots.py [--out screenshots] [--size 100x30]

Builds a 3-node lab with every fault (clusterfix_tui.lab.cluster.up), removes two nodes' host keys
from the lab's known_hosts so that the host-keys screen shows for real (one node's key ticked), drives the wizard with
Pilot through connect, diagnostics, plan, every step (through its confirmation), validation,
summary and export, saving an SVG of each screen (app.save_screenshot), then tears the lab down.

When no lab can be built here (not root, no network namespaces), it falls back to the recorded
session of tests/ui_fakes.py and says so: those files are named recorded-*.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def settle(pilot: Any) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


class Shooter:
    def __init__(self, out: Path, prefix: str) -> None:
        self.out = out
        self.prefix = prefix
        self.n = 0
        self.written: list[Path] = []

    async def shot(self, pilot: Any, name: str, number: int | None = None) -> None:
        """Saved as NN-name.svg: the next number, or `number` (kept out of the sequence)."""
        await settle(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()
        if number is None:
            self.n += 1
        filename = f"{self.prefix}{number or self.n:02d}-{name}.svg"
        pilot.app.save_screenshot(filename, str(self.out))
        self.written.append(self.out / filename)
        print(f"  {filename}", flush=True)


def _pick_row(table: Any, first_cell: str) -> None:
    """Put `table`'s cursor on the row (of its page) whose first cell is `first_cell`."""
    for i in range(table.row_count):
        if str(table.get_row_at(i)[0]) == first_cell:
            table.move_cursor(row=i)
            return


async def drive(app: Any, shooter: Shooter, size: tuple[int, int], report_dir: Path) -> None:
    from textual.widgets import DataTable

    from clusterfix_tui.ui.screens.modals import ConfirmationModal, HostKeysModal
    from clusterfix_tui.ui.screens.plan import PlanScreen
    from clusterfix_tui.ui.screens.step import StepScreen
    from clusterfix_tui.ui.widgets.paged_table import PagedTable

    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        shot = shooter.shot
        if isinstance(app.screen, HostKeysModal):
            table = app.screen.query_one("#host-keys-table", DataTable)
            table.move_cursor(row=0)
            await pilot.press("space")  # one ticked, to show the selection
            await shot(pilot, "connect-host-key")
        while isinstance(app.screen, HostKeysModal):
            await pilot.press("a")
            await settle(pilot)
        await shot(pilot, "connect")
        await pilot.press("c")
        await shot(pilot, "diagnostics-findings")
        await pilot.press("2")
        await shot(pilot, "diagnostics-nodes")
        await pilot.press("3")
        await settle(pilot)
        pods = app.screen.query_one("#pods-table", PagedTable)
        for i in range(pods.row_count):  # a crash-looping pod, with its last log lines
            if "CrashLoop" in str(pods.get_row_at(i)[2]):
                pods.move_cursor(row=i)
                break
        await shot(pilot, "diagnostics-pods")
        diagnosis = app.state.diagnosis
        anomalous = sorted({f.node for f in diagnosis.findings
                            if f.step == "cni_bridge" and f.node in diagnosis.facts})
        await pilot.press("4")
        await settle(pilot)
        if anomalous:
            _pick_row(app.screen.query_one("#routes-nodes", PagedTable), anomalous[0])
        await shot(pilot, "diagnostics-routes")
        nat_nodes = sorted({f.node for f in diagnosis.findings if f.step == "iptables"
                            and f.node in diagnosis.facts})
        await pilot.press("5")
        await settle(pilot)
        if nat_nodes:
            _pick_row(app.screen.query_one("#nat-nodes", PagedTable), nat_nodes[0])
        await shot(pilot, "diagnostics-nat")
        await pilot.press("o")
        await shot(pilot, "raw-output")
        await pilot.press("escape")
        await pilot.press("1")
        await pilot.press("p")
        await shot(pilot, "plan")
        await pilot.press("enter")  # the first step: its findings and the actions to tick
        step = app.screen.step
        await shot(pilot, f"step-{step}")
        await pilot.press("a")
        await shot(pilot, f"step-{step}-confirm")
        await pilot.press("y")
        await shot(pilot, f"step-{step}-done")
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("a")  # Run all: each step asks; nothing to do passes on by itself
        await settle(pilot)
        asked_pass = False
        while isinstance(app.screen, (StepScreen, ConfirmationModal)) or getattr(
                app.screen, "converging", False):
            screen = app.screen
            if isinstance(screen, PlanScreen):  # between passes: the flow settles, re-diagnoses
                await settle(pilot)
                continue
            if isinstance(screen, ConfirmationModal):
                if screen.id == "confirm-pass" and not asked_pass:
                    asked_pass = True
                    await shot(pilot, "another-pass", number=19)
                await pilot.press("y")
            elif screen.phase == "finished" or not screen.plan.actions:
                await pilot.press("n")
            else:
                await pilot.press("a")
            await settle(pilot)
        await pilot.press("v")
        await shot(pilot, "validation")
        await pilot.press("s")
        await shot(pilot, "summary")
        await pilot.press("e")
        await shot(pilot, "export")
        await pilot.press("escape")
        await pilot.press("question_mark")
        await shot(pilot, "help")
        await pilot.press("escape")
        await pilot.press("l")
        await shot(pilot, "session-log")
        await pilot.press("escape")
        app.theme = "textual-light"
        await shot(pilot, "summary-light")
        await pilot.press("q")


def _forget_host_key(lab_dir: Path, node: dict[str, Any]) -> None:
    known = lab_dir / "known_hosts"
    if not known.exists():
        return
    keep = [line for line in known.read_text().splitlines()
            if not any(token in line.split(" ", 1)[0].split(",")
                       for token in (node["name"], node["ip"], f"[{node['ip']}]:22"))]
    known.write_text("\n".join(keep) + ("\n" if keep else ""))


def lab_app(lab_dir: Path, work: Path, runtimes: list[Any]) -> Any:
    from clusterfix_tui.commands.tui import make_session_factory
    from clusterfix_tui.ui.app import ClusterfixApp

    args = argparse.Namespace(kubeconfig=None, context=None, ssh_config=None, dry_run=False)
    journal = work / "journal.jsonl"
    return ClusterfixApp(session_factory=make_session_factory(args, str(lab_dir), str(journal),
                                                              runtimes),
                         journal_path=journal, report_dir=work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"))
    parser.add_argument("--size", default="100x30", help="terminal size, COLSxROWS")
    parser.add_argument("--recorded", action="store_true",
                        help="use the recorded session even if a lab could be built")
    args = parser.parse_args()
    cols, rows = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="clusterfix-shots-"))
    lab_dir = work / "lab"
    built = False
    reason = "--recorded given"
    try:
        if not args.recorded:
            try:
                from clusterfix_tui.lab import cluster

                print(f"building a lab with every fault in {lab_dir} …", flush=True)
                handle = cluster.up(lab_dir, nodes=3, faults="all")
                built = True
                _forget_host_key(lab_dir, handle.node("node-2"))
                _forget_host_key(lab_dir, handle.node("node-3"))
            except Exception as exc:  # noqa: BLE001 - fall back, and say why
                reason = f"no lab could be built here: {exc}"
        for pattern in ("[0-9][0-9]-*.svg", "recorded-*.svg"):  # ours only (not trace-*.svg)
            for old in out.glob(pattern):
                old.unlink()
        if built:
            runtimes: list[Any] = []
            app = lab_app(lab_dir, work, runtimes)
            shooter = Shooter(out, "")
            print("driving the wizard on the lab:", flush=True)
            try:
                asyncio.run(drive(app, shooter, (cols, rows), work))
            finally:
                for runtime in runtimes:
                    runtime.close()
        else:
            print(f"FALLBACK to the recorded session ({reason}); files are named recorded-*.svg",
                  flush=True)
            sys.path.insert(0, str(ROOT / "tests"))
            from ui_fakes import make_app

            app, _ = make_app(work, frozen=False)
            shooter = Shooter(out, "recorded-")
            asyncio.run(drive(app, shooter, (cols, rows), work))
        print(f"{len(shooter.written)} screenshots in {out}")
        return 0
    finally:
        if built:
            from clusterfix_tui.lab import cluster

            cluster.down(lab_dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
