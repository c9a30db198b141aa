#!/usr/bin/env python3
"""Benchmark: the wizard stays responsive while a step streams 200,000 lines; first paint.

1. Stream: a 1-node lab; the wizard (the real ClusterfixApp, StepScreen, LineBuffer, LogPane and
   the StepLinesLogged message flow) runs headless (`app.run_test()`) on the recorded fake session
   of the UI tests (tests/ui_fakes.py: it takes the wizard to a repair step without a broken
   cluster), except that the step's first action runs ONE REAL command over the real SSH
   transport on the lab node: `seq 1 N | sed 's/^/cfx-bench line /'`, every line handed through
   the engine to the step screen's own on_line callback (redaction, LineBuffer.feed, one
   StepLinesLogged per batch, drained into
   the LogPane and the session log on the UI thread). The only additions to the app are a
   measuring subclass: one extra app binding (f12 -> record the time) and a hook that stamps when
   a key event reaches the app.
   While the lines stream, a separate thread (as Textual's own input thread does) posts a key
   every --key-interval seconds: mostly f12, and every 2 s `l` (open the session log) then
   `escape`. For each key: the delay from posting to the app starting to handle it, and for f12
   from posting to its action having run. Memory: RSS (VmRSS) and, with --tracemalloc, the
   Python heap, when 10k, 100k and 200k lines have been fed; plus the pane's and the session
   log's line counts (both bounded).
2. First paint: `clusterfix-tui --lab-dir D` started in a pseudo-terminal (120x40), the time from
   spawning the process to the connect screen's table title appearing on the terminal; median
   and worst of --paint-runs.

Not part of the test suite. Run as root (the lab needs network namespaces):

    python3 bench/bench_ui_log.py --lines 200000
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import fcntl
import gc
import os
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import termios
import threading
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the UI tests' recorded fake session

from textual import events  # noqa: E402
from textual.binding import Binding  # noqa: E402
from ui_fakes import FakeSession, settle  # noqa: E402

from clusterfix_tui.lab import cluster  # noqa: E402
from clusterfix_tui.runtime import build_runtime  # noqa: E402
from clusterfix_tui.ui.app import ClusterfixApp  # noqa: E402
from clusterfix_tui.ui.screens.step import StepScreen  # noqa: E402
from clusterfix_tui.ui.widgets.log_pane import LogPane  # noqa: E402

CHECKPOINTS = (10_000, 100_000, 200_000)


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class StreamingSession(FakeSession):
    """The fake session, but the step's first action runs one real command over SSH on the lab
    node and streams its lines through the runner's own on_line (the engine -> step screen
    path). Only the runner is replaced: the session's apply() is the real one, whatever its
    signature becomes."""

    def __init__(self, journal: Path, lab_shells: Any, node: str, lines: int) -> None:
        super().__init__(journal, host_key_nodes=(), lines_per_action=0)
        self.lab_shells, self.node, self.lines = lab_shells, node, lines
        self.result: Any = None
        self.stream_seconds = 0.0
        fake_run = self.fake_runner.run_action

        def run_action(action: Any, *, on_line: Any = None) -> Any:
            if self.result is None and action.mutating and not self.fake_runner.dry_run:
                command = f"seq 1 {self.lines} | sed 's/^/cfx-bench line /'"
                t0 = time.perf_counter()
                self.result = self.lab_shells(self.node).run(command, timeout=600,
                                                             on_line=on_line)
                self.stream_seconds = time.perf_counter() - t0
            return fake_run(action, on_line=on_line)

        self.fake_runner.run_action = run_action  # type: ignore[method-assign]


class MeasuredApp(ClusterfixApp):
    CSS_PATH = str(Path(sys.modules[ClusterfixApp.__module__].__file__).with_name("app.tcss"))
    BINDINGS = [*ClusterfixApp.BINDINGS, Binding("f12", "bench_ping", show=False)]

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.key_delays: list[tuple[str, float]] = []  # (key, posted -> app handles it)
        self.ping_delays: list[float] = []  # f12 posted -> its action ran
        self.pings: deque[float] = deque()
        self.key_log: list[tuple[str, float, float]] = []  # (key, posted, delay)

    async def on_event(self, event: events.Event) -> None:
        posted = getattr(event, "_bench_posted", None)
        if posted is not None:
            self.key_delays.append((event.key, time.perf_counter() - posted))  # type: ignore[attr-defined]
            self.key_log.append((event.key, posted, time.perf_counter() - posted))  # type: ignore[attr-defined]
        await super().on_event(event)

    def action_bench_ping(self) -> None:
        if self.pings:
            self.ping_delays.append(time.perf_counter() - self.pings.popleft())


SLOW: list[tuple[str, float, float]] = []  # (what, started, seconds) of UI-thread calls


def _timed(cls: Any, name: str) -> None:
    """Measure (only) how long a real method takes on the UI thread."""
    orig = getattr(cls, name)

    def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig(self, *a, **kw)
        finally:
            SLOW.append((f"{cls.__name__}.{name}", t, time.perf_counter() - t))

    setattr(cls, name, wrapper)


def key_thread(app: MeasuredApp, stop: threading.Event, interval: float) -> None:
    """Posts keys from another thread, as the terminal driver's input thread does."""
    last_l = time.monotonic()
    log_open = False
    while not stop.is_set():
        now = time.monotonic()
        if log_open and now - last_l > 0.5:
            key, log_open = "escape", False
        elif not log_open and now - last_l > 2.0:
            key, log_open, last_l = "l", True, now
        else:
            key = "f12"
        ev = events.Key(key, None)
        ev._bench_posted = time.perf_counter()  # type: ignore[attr-defined]
        if key == "f12":
            app.pings.append(ev._bench_posted)  # type: ignore[attr-defined]
        app.post_message(ev)
        time.sleep(interval)


def memory_thread(app: MeasuredApp, stop: threading.Event, out: dict[int, dict[str, float]],
                  use_tracemalloc: bool) -> None:
    pending = list(CHECKPOINTS)
    while not stop.is_set() and pending:
        screen = app.screen_stack[-1] if app.screen_stack else None
        step = next((s for s in app.screen_stack if isinstance(s, StepScreen)), None)
        total = step._buffer.total if step is not None else 0
        while pending and total >= pending[0]:
            mark = pending.pop(0)
            rec = {"fed": total, "rss_mib": rss_mib(), "t": time.perf_counter()}
            if use_tracemalloc:
                cur, peak = tracemalloc.get_traced_memory()
                rec["heap_mib"], rec["heap_peak_mib"] = cur / 2**20, peak / 2**20
            try:
                rec["pane_lines"] = len(step.query_one(LogPane).lines)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - the screen may be switching
                rec["pane_lines"] = float("nan")
            rec["session_log"] = len(app.session_log)
            out[mark] = rec
        del screen
        time.sleep(0.005)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def stream_run(lab_dir: str, node: str, lines: int, interval: float,
                     use_tracemalloc: bool) -> dict[str, Any]:
    rt = build_runtime(lab_dir=lab_dir)
    tmp = Path(tempfile.mkdtemp(prefix="cfx-ui-bench-"))
    try:
        rt.shells(node).run("true")  # connect before the clock starts
        session = StreamingSession(tmp / "journal.jsonl", rt.shells, node, lines)
        app = MeasuredApp(session, journal_path=tmp / "journal.jsonl", report_dir=tmp)
        mem: dict[int, dict[str, float]] = {}
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            print("stage: c", file=sys.stderr, flush=True)
            await pilot.press("c")
            await settle(pilot)
            print("stage: p", file=sys.stderr, flush=True)
            await pilot.press("p")
            await settle(pilot)
            print("stage: enter", file=sys.stderr, flush=True)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, StepScreen), app.screen
            if use_tracemalloc:
                tracemalloc.start()
            rss0 = rss_mib()
            stop = threading.Event()
            threads = [threading.Thread(target=key_thread, args=(app, stop, interval), daemon=True),
                       threading.Thread(target=memory_thread,
                                        args=(app, stop, mem, use_tracemalloc), daemon=True)]
            beats: list[tuple[float, float]] = []  # (wall gap, UI-thread CPU gap) per beat

            async def heartbeat() -> None:
                last_w, last_c = time.perf_counter(), time.thread_time()
                while True:
                    await asyncio.sleep(0.005)
                    w, c = time.perf_counter(), time.thread_time()
                    beats.append((w - last_w, c - last_c))
                    last_w, last_c = w, c

            hb = asyncio.create_task(heartbeat())
            t0 = time.perf_counter()
            print("stage: apply", file=sys.stderr, flush=True)
            await pilot.press("a", "y")
            for t in threads:
                t.start()
            step = app.screen if isinstance(app.screen, StepScreen) else None
            while True:
                await asyncio.sleep(0.05)
                step = next((s for s in app.screen_stack if isinstance(s, StepScreen)), step)
                if step is not None and step.phase == "finished":
                    break
                if time.perf_counter() - t0 > 900:
                    raise SystemExit("the step did not finish in 15 minutes")
            elapsed = time.perf_counter() - t0
            hb.cancel()
            stop.set()
            for t in threads:
                t.join(5)
            await settle(pilot)
            assert step is not None
            pane = step.query_one(LogPane)
            res = {
                "lines": lines, "fed": step._buffer.total if step else 0,
                "exit_code": session.result.exit_code if session.result else None,
                "stream_seconds": session.stream_seconds, "step_seconds": elapsed,
                "pane_lines": len(pane.lines), "pane_max_lines": app.pane_max_lines,
                "session_log": len(app.session_log), "session_log_max": app.session_log.maxlen,
                "rss_before_mib": rss0, "rss_end_mib": rss_mib(), "memory": mem,
                "key_delays": app.key_delays, "ping_delays": app.ping_delays,
                "gc_frozen": gc.get_freeze_count(), "key_log": app.key_log, "t0": t0, "beats": beats,
            }
            if use_tracemalloc:
                tracemalloc.stop()
            from collections import Counter
            objs = gc.get_objects()  # the collector's generations (not the frozen objects)
            res["gc_tracked"] = len(objs)
            res["gc_types"] = Counter(type(o).__name__ for o in objs).most_common(8)
            del objs
        return res
    finally:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)


def first_paint(lab_dir: str, runs: int, marker: str = "nodes over SSH") -> list[float]:
    exe = shutil.which("clusterfix-tui")
    real = os.path.join(os.path.dirname(sys.executable), "clusterfix-tui")
    if os.path.exists(real):
        exe = real  # the installed entry point, not a pyenv shim (which adds its own start-up)
    out: list[float] = []
    for _ in range(runs):
        tmp = tempfile.mkdtemp(prefix="cfx-paint-")
        t0 = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(tmp)
            os.environ["TERM"] = "xterm-256color"
            os.execv(exe, [exe, "--lab-dir", lab_dir, "--journal", os.path.join(tmp, "j.jsonl")])
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        buf = b""
        seen = None
        while time.perf_counter() - t0 < 30:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                buf += chunk
                plain = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]", b"", buf)
                if marker.encode() in plain:
                    seen = time.perf_counter() - t0
                    break
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 5
            while time.time() < deadline:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        finally:
            os.close(fd)
            shutil.rmtree(tmp, ignore_errors=True)
        if seen is None:
            print(f"  first paint: {marker!r} not seen in 30 s", file=sys.stderr)
        else:
            out.append(seen)
    return out


_GC: dict[str, float] = {}


def _gc_cb(phase: str, info: dict[str, int]) -> None:
    # CPU time of the collecting thread (the wall time includes the machine's other load)
    if phase == "start":
        _GC["t"], _GC["c"] = time.perf_counter(), time.thread_time()
    elif "t" in _GC:
        SLOW.append((f"gc gen{info.get('generation')} (cpu)", _GC["t"], time.thread_time() - _GC["c"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--key-interval", type=float, default=0.02)
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also trace the Python heap (slows the app: a separate run)")
    ap.add_argument("--paint-runs", type=int, default=5)
    ap.add_argument("--no-stream", action="store_true")
    ap.add_argument("--explain", action="store_true",
                    help="time the UI-thread calls (pane writes, session log) and list the worst keys")
    args = ap.parse_args()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: where is it stuck?
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cores={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}", flush=True)
    lab_dir = tempfile.mkdtemp(prefix="cfx-ui-lab-")
    handle = cluster.up(lab_dir, nodes=1, faults="none")
    try:
        node = handle.info["nodes"][0]["name"]
        if args.paint_runs:
            paint = first_paint(lab_dir, args.paint_runs)
            if paint:
                print(f"first paint (spawn -> connect screen on a pty): median "
                      f"{statistics.median(paint):.3f}s  worst {max(paint):.3f}s  "
                      f"runs {[round(x, 3) for x in paint]}", flush=True)
        if args.no_stream:
            return 0
        if args.explain:
            gc.callbacks.append(_gc_cb)
        res = asyncio.run(stream_run(lab_dir, node, args.lines, args.key_interval,
                                     args.tracemalloc))
    finally:
        cluster.down(lab_dir)
        shutil.rmtree(lab_dir, ignore_errors=True)
    ping = res["ping_delays"]
    keys = [d for _k, d in res["key_delays"]]
    heavy = [d for k, d in res["key_delays"] if k != "f12"]
    print(f"streamed {res['fed']:,} lines fed to the pane (ssh exit {res['exit_code']}) in "
          f"{res['stream_seconds']:.2f}s; step finished after {res['step_seconds']:.2f}s")
    print(f"keys posted: {len(keys)} ({len(heavy)} of them l/escape)")
    print(f"key posted -> app handles it: p50 {pct(keys, 50) * 1e3:.1f} ms  p99 "
          f"{pct(keys, 99) * 1e3:.1f} ms  worst {max(keys, default=float('nan')) * 1e3:.1f} ms")
    print(f"f12 posted -> its action ran:  p50 {pct(ping, 50) * 1e3:.1f} ms  p99 "
          f"{pct(ping, 99) * 1e3:.1f} ms  worst {max(ping, default=float('nan')) * 1e3:.1f} ms "
          f"({len(ping)} pings)")
    walls = [w for w, _c in res["beats"]]
    cpus = [c for _w, c in res["beats"]]
    print(f"event loop heartbeat (5 ms sleep): wall gap p50 {pct(walls, 50) * 1e3:.1f} ms  p99 "
          f"{pct(walls, 99) * 1e3:.1f} ms  worst {max(walls, default=0) * 1e3:.1f} ms; UI-thread "
          f"CPU between beats p99 {pct(cpus, 99) * 1e3:.1f} ms  worst "
          f"{max(cpus, default=0) * 1e3:.1f} ms (our own blocking work, without the machine's "
          f"other load)")
    print(f"log pane: {res['pane_lines']} lines (max {res['pane_max_lines']}); session log "
          f"{res['session_log']} (max {res['session_log_max']}); gc frozen objects "
          f"{res['gc_frozen']:,}")
    print(f"RSS before streaming {res['rss_before_mib']:.1f} MiB, after {res['rss_end_mib']:.1f} MiB")
    for mark, rec in sorted(res["memory"].items()):
        line = (f"  at {mark:>7,} lines: RSS {rec['rss_mib']:.1f} MiB  pane {rec['pane_lines']}  "
                f"session log {rec['session_log']}")
        if "heap_mib" in rec:
            line += f"  python heap {rec['heap_mib']:.1f} MiB (peak {rec['heap_peak_mib']:.1f})"
        print(line)
    if args.explain:
        print(f"objects the collector tracks at the end (not frozen): {res['gc_tracked']:,} "
              f"{res['gc_types']}")
        t0 = res["t0"]
        print("worst keys (key, posted at s after apply, delay ms) and garbage collections (CPU):")
        heavy = [(k, p) for k, p, _d in res["key_log"] if k != "f12"]
        for key, posted, d in sorted(res["key_log"], key=lambda x: -x[2])[:8]:
            before = [f"{k}@+{p - t0:.2f}s" for k, p in heavy if p <= posted][-1:]
            print(f"  {key:7s} +{posted - t0:6.2f}s  {d * 1e3:7.1f} ms  (last l/escape: {before})")
        by: dict[str, list[float]] = {}
        for what, _t, d in SLOW:
            by.setdefault(what, []).append(d)
        for what, ds in sorted(by.items()):
            print(f"  {what:32s} n={len(ds):5d}  total {sum(ds):6.2f}s  max {max(ds) * 1e3:7.1f} ms")
        for what, t, d in sorted(SLOW, key=lambda x: x[1]):
            if d > 0.02:
                print(f"  +{t - t0:6.2f}s  {what:32s} {d * 1e3:7.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
