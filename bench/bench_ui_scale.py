#!/usr/bin/env python3
"""Benchmark: the wizard's diagnostics screen on a recorded 1,000-node diagnosis (#17 item 5).

The diagnosis: the recorded lab scenarios in tests/data/lab (API objects and every recorded
node's facts-script output) replicated and renamed node-1..node-N (bench_core.synthetic_cluster),
read by the real code (build_snapshot, parse_facts, detect_shape, run_checks) into a real
Diagnosis: tests/scale_fakes.big_diagnosis. The wizard: the real ClusterfixApp over the recorded
fake session of tests/ui_fakes.py, headless (Textual's pilot), 120x40.

Prints (nothing is asserted; the figures go into docs/performance.md):
  core       parse + checks of the N nodes' outputs (what runs in the worker thread, off the UI)
  first      from the diagnosis arriving on the UI thread to the diagnostics screen mounted,
             filled and rendered (switch_screen + _show + one refresh)
  keys       per key of a scripted sequence (cursor and page keys in the findings, nodes and pods
             tables, `[` `]`, panel switches, opening/closing a grouped finding, the route and
             NAT node lists, a filter typed and applied, cleared): worst, median, p95, and the
             worst per kind. One key = pilot.press + pilot.pause (the key handled, the messages it
             caused handled, the screen refreshed); the pilot's own cost is included.

    python3 bench/bench_ui_scale.py --nodes 1000 [--runs 3] [--page-size 100000: no paging]
        [--profile panel,page: cProfile of the keys of those kinds, top functions printed]
        [--profile-dump DIR: and their pstats written to DIR/<kind>.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from scale_fakes import big_diagnosis  # noqa: E402
from ui_fakes import make_app, settle  # noqa: E402

from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen  # noqa: E402
from clusterfix_tui.ui.widgets.paged_table import PagedTable  # noqa: E402

FILTER = "node:node-5*"


def script() -> list[tuple[str, str]]:
    """(kind, key) in order."""
    keys: list[tuple[str, str]] = []
    keys += [("cursor", "down")] * 12 + [("expand", "space")] + [("cursor", "down")] * 30
    keys += [("page", "pagedown")] * 4 + [("page", "pageup")] * 2 + [("expand", "space")]
    keys += [("panel", "2")] + [("cursor", "down")] * 30 + [("page", "pagedown")] * 8
    keys += [("page", "right_square_bracket")] * 6 + [("page", "left_square_bracket")] * 2
    keys += [("cursor", "up")] * 10
    keys += [("panel", "3")] + [("page", "pagedown")] * 6 + [("page", "right_square_bracket")] * 8
    keys += [("cursor", "down")] * 20
    keys += [("panel", "4"), ("focus", "tab")] + [("node list", "down")] * 15
    keys += [("panel", "5"), ("focus", "tab")] + [("node list", "down")] * 15
    keys += [("panel", "1"), ("filter", "slash")] + [("filter typing", c) for c in FILTER]
    keys += [("filter apply", "enter"), ("panel", "2"), ("cursor", "down"), ("cursor", "down")]
    keys += [("filter clear", "escape")]
    keys += [("panel", "1"), ("filter", "slash")] + [("filter typing", c) for c in "sev:critical"]
    keys += [("filter apply", "enter"), ("filter clear", "escape")]
    return keys


async def run_once(diag: Any, size: tuple[int, int],
                   profiles: dict[str, cProfile.Profile] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        app, _ = make_app(Path(tmp), host_key_nodes=())
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            t0, c0 = time.perf_counter(), time.process_time()
            app.set_diagnosis(diag)  # as on_diagnosis_finished does
            screen = DiagnosticsScreen()
            await app.switch_screen(screen)
            await pilot.pause()
            first = time.perf_counter() - t0
            first_cpu = time.process_time() - c0
            table = screen.query_one("#findings-table", PagedTable)
            assert table.row_count, "the findings table is empty"
            table.focus()
            await pilot.pause()
            delays: list[tuple[str, str, float, float]] = []
            for kind, key in script():
                prof = profiles.get(kind) if profiles is not None else None
                if prof is not None:
                    prof.enable()
                k0, kc = time.perf_counter(), time.process_time()
                await pilot.press(key)
                await pilot.pause()
                delays.append((kind, key, time.perf_counter() - k0, time.process_time() - kc))
                if prof is not None:
                    prof.disable()
            shown = {
                "findings rows": len(screen.query_one("#findings-table", PagedTable).items),
                "nodes": len(screen.query_one("#nodes-table", PagedTable).items),
                "pods": len(screen.query_one("#pods-table", PagedTable).items),
            }
    return {"first": first, "first_cpu": first_cpu, "delays": delays, "shown": shown}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="120x40")
    ap.add_argument("--page-size", type=int, default=0,
                    help="rows per page (default: the wizard's); 100000 = no paging, to compare")
    ap.add_argument("--profile", default="",
                    help="key kinds to profile (cProfile, comma-separated: panel,page,cursor,...);"
                         " the figures of a profiled run are inflated: compare without it")
    ap.add_argument("--profile-dump", default="",
                    help="also write each profiled kind's pstats to DIR/<kind>.prof")
    a = ap.parse_args()
    # CPU time (process_time): the waits for other processes on a shared machine left out
    profiles = {k: cProfile.Profile(time.process_time) for k in a.profile.split(",") if k}
    if a.page_size:
        from clusterfix_tui.ui import view

        view.PAGE_SIZE = a.page_size
    w, h = (int(x) for x in a.size.split("x"))
    c0 = time.perf_counter()
    diag = big_diagnosis(a.nodes)
    core = time.perf_counter() - c0
    print(f"diagnosis of {a.nodes} nodes (build_snapshot + parse + checks, off the UI thread): "
          f"{core:.2f} s; {len(diag.findings)} findings, {len(diag.facts)} nodes' facts, "
          f"{len(diag.snapshot.pods)} pods")
    firsts, first_cpus, walls, cpus = [], [], [], []
    per_kind: dict[str, list[tuple[float, float]]] = {}
    shown: dict[str, int] = {}
    all_delays: list[tuple[str, str, float, float]] = []
    for _ in range(a.runs):
        res = asyncio.run(run_once(diag, (w, h), profiles))
        firsts.append(res["first"])
        first_cpus.append(res["first_cpu"])
        all_delays += res["delays"]
        for kind, _key, d, c in res["delays"]:
            walls.append(d * 1000)
            cpus.append(c * 1000)
            per_kind.setdefault(kind, []).append((d * 1000, c * 1000))
        shown = res["shown"]

    def fig(xs: list[float]) -> str:
        xs = sorted(xs)
        return (f"worst {xs[-1]:.1f} ms, median {statistics.median(xs):.1f} ms, "
                f"p95 {xs[int(0.95 * (len(xs) - 1))]:.1f} ms")

    print(f"shown: {shown}")
    print(f"first diagnostics screen: wall median {statistics.median(firsts):.3f} s "
          f"(worst {max(firsts):.3f} s), CPU median {statistics.median(first_cpus):.3f} s, "
          f"over {a.runs} run(s)")
    print(f"keys: {len(walls)} ({len(walls) // a.runs} per run)")
    print(f"  wall: {fig(walls)}")
    print(f"  CPU:  {fig(cpus)}")
    for kind, ds in sorted(per_kind.items(), key=lambda kv: -max(x[0] for x in kv[1])):
        print(f"  {kind:<14} n={len(ds):<4} wall worst {max(x[0] for x in ds):6.1f} median "
              f"{statistics.median(x[0] for x in ds):6.1f} ms · CPU worst "
              f"{max(x[1] for x in ds):6.1f} median {statistics.median(x[1] for x in ds):6.1f} ms")
    panels: dict[str, list[float]] = {}
    for kind, key, _d, c in all_delays:
        if kind in ("panel", "focus", "filter apply", "filter clear"):
            panels.setdefault(f"{kind} {key}", []).append(c * 1000)
    print("  per key (CPU ms, every run): " + "; ".join(
        f"{k} {'/'.join(f'{x:.0f}' for x in xs)}" for k, xs in panels.items()))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"load {load:.1f}, {os.cpu_count()} cores")
    for kind, prof in profiles.items():
        print(f"\n== profile of the {kind!r} keys (cumulative)")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
        if a.profile_dump:
            prof.dump_stats(str(Path(a.profile_dump) / f"{kind.replace(' ', '_')}.prof"))


if __name__ == "__main__":
    main()
