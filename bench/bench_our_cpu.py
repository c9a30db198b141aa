#!/usr/bin/env python3
"""Benchmark: where our process's CPU goes in `diagnose`, per node, on a running lab.

    python3 -m clusterfix_tui lab up --nodes 10 --dir /tmp/cfx-cpu-lab
    python3 bench/bench_our_cpu.py --lab-dir /tmp/cfx-cpu-lab --runs 3 [--yappi]

For a cold run (new runtime, new SSH connections) and a warm one (the same runtime, connections
open) it prints the CPU seconds our process spent (time.process_time: all our threads, paramiko's
transport threads included) in each phase of `diagnose`, run one after the other:

  runtime   build_runtime(lab_dir=...): kubeconfig, kubernetes client, SSH pool
  snapshot  build_snapshot(api): the API requests (pod logs included), json
  connect   pool(node) on every node in parallel: `ssh -G`, TCP, key exchange, host key check
            (known_hosts), authentication
  exec      the facts script on every node in parallel (read_node without its parse): the exec
            channel, sending the script, reading the output
  parse     parse_facts of every node's output
  checks    detect_shape + run_checks

plus "children": the CPU of the processes we started and reaped in the phase (`ssh -G`), which
process_time does not count. Every figure is also given per node. The sum is checked against one
plain `diagnose()` (cold and warm), timed the same way.

--cli-runs N also runs `python3 -m clusterfix_tui diagnose --lab-dir D --json --quiet` N times as
its own process and prints that process's CPU (user+sys of it and its children, from wait4:
interpreter start, imports, the diagnosis, the JSON) and wall time: what one command costs
(with --compare: in every run of both trees, old against new).

--compare OLD_TREE runs this benchmark alternately on an old checkout (e.g. `git worktree add
/tmp/old <commit>`, or `git archive <commit> | tar -x -C /tmp/old`) and on this tree, --pairs
times each, every run its own process (same lab, same --runs), and prints old against new per
phase and for the plain diagnose(), cold and warm, with the load of each run: before/after in
the same conditions on a shared machine.

--yappi profiles one cold and one warm `diagnose()` with yappi (CPU clock, every thread) and
prints the functions with the most own CPU time, and that time summed by area (paramiko's
packets, key exchange, channels, the kubernetes client, json, our parse/checks, ...). yappi slows
everything down ~2x: its figures are shares, not times. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterfix_tui.core import diagnose as D
from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.checks.underlay import probe_ring, probe_targets
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.runtime import build_runtime


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Phases:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.child: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.chunks = (0.0, 0.0)  # per node: pieces read, bytes read

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        c0, k0, t0 = time.process_time(), children_cpu(), time.perf_counter()
        out = fn()
        self.cpu[name] = time.process_time() - c0
        self.child[name] = children_cpu() - k0
        self.wall[name] = time.perf_counter() - t0
        return out


PARSE_CPU: list[float] = []
_parse = D.parse_facts


def _timed_parse(*a: Any, **kw: Any) -> Any:
    t = time.thread_time()
    try:
        return _parse(*a, **kw)
    finally:
        PARSE_CPU.append(time.thread_time() - t)


D.parse_facts = _timed_parse  # read_node's parse, timed in its own thread (bench only)

CHUNKS: list[int] = []  # sizes of the pieces the SSH reader got (stdout and stderr)


def _count_feeds() -> None:
    from clusterfix_tui.transports import ssh as S

    real = S._Lines.feed

    def feed(self: Any, data: bytes) -> None:
        CHUNKS.append(len(data))
        real(self, data)

    S._Lines.feed = feed  # type: ignore[method-assign]


def one_pass(lab_dir: str, rt: Any | None) -> tuple[Phases, Any]:
    """One diagnose, phase after phase; rt=None: cold (a new runtime, closed at the end)."""
    ph = Phases()
    cold = rt is None
    if cold:
        rt = ph.run("runtime", lambda: build_runtime(lab_dir=lab_dir))
    snap = ph.run("snapshot", lambda: build_snapshot(rt.api))
    nodes = list(snap.nodes)
    first_ip = {n: sorted(ips)[:1] for n, ips in snap.pod_ips_by_node().items()}
    ring = probe_ring(snap)

    def peers(node: str) -> list[str]:
        return [ip for other, ips in first_ip.items() if other != node for ip in ips]

    workers = max(1, min(32, len(nodes)))
    with cf.ThreadPoolExecutor(workers) as ex:
        ph.run("connect", lambda: list(ex.map(
            lambda n: rt.shells(n, snap.nodes[n].internal_ip), nodes)))
        PARSE_CPU.clear()
        CHUNKS.clear()
        got = ph.run("exec+parse", lambda: list(ex.map(
            lambda n: D.read_node(rt.shells, n, snap.nodes[n].internal_ip, peers(n),
                                  vxlan_probes=probe_targets(snap, n, ring)), nodes)))
    parse = sum(PARSE_CPU)
    ph.cpu["exec"] = ph.cpu.pop("exec+parse") - parse
    ph.child["exec"] = ph.child.pop("exec+parse")
    ph.wall["exec"] = ph.wall.pop("exec+parse")
    ph.cpu["parse"], ph.child["parse"], ph.wall["parse"] = parse, 0.0, 0.0
    bad = [n for n, (facts, finding, _dt) in zip(nodes, got, strict=True)
           if facts is None or finding is not None]
    if bad:
        raise SystemExit(f"nodes not read: {bad}: {[got[nodes.index(b)][1] for b in bad]}")
    readable = {n: f for n, (f, _x, _dt) in zip(nodes, got, strict=True)}

    def checks() -> Any:
        shape = detect_shape(snap, readable)
        from dataclasses import replace
        return run_checks(replace(snap, shape=shape), readable)

    ph.run("checks", checks)
    ph.chunks = (len(CHUNKS) / len(nodes), sum(CHUNKS) / len(nodes))
    return ph, rt


def whole(lab_dir: str, rt: Any | None) -> tuple[float, float, float, Any]:
    """(cpu, children cpu, wall) of one plain diagnose(); rt=None: cold."""
    c0, k0, t0 = time.process_time(), children_cpu(), time.perf_counter()
    own = rt is None
    if own:
        rt = build_runtime(lab_dir=lab_dir)
    diag = D.diagnose(rt.api, rt.shells)
    out = (time.process_time() - c0, children_cpu() - k0, time.perf_counter() - t0)
    if diag.node_errors or diag.error:
        raise SystemExit(f"diagnose failed: {diag.error} {diag.node_errors}")
    # what the one full collection diagnose() ran on leaving costs: another one on the same heap
    g0 = time.process_time()
    gc.collect()
    GC_CPU.append((time.process_time() - g0, len(gc.get_objects())))
    return (*out, rt)


GC_CPU: list[tuple[float, int]] = []  # (CPU of a full collection after diagnose(), objects)


AREAS = [  # (area, substrings of the file path), first match wins
    ("paramiko packets (read/decrypt/mac)", ("paramiko/packet.py",)),
    ("paramiko kex + host key + auth", ("paramiko/kex_", "paramiko/auth_handler", "paramiko/pkey",
                                       "paramiko/ed25519key", "paramiko/rsakey", "paramiko/ecdsakey",
                                       "paramiko/agent", "nacl/", "bcrypt/")),
    ("paramiko channel", ("paramiko/channel.py", "paramiko/buffered_pipe.py", "paramiko/pipe.py")),
    ("paramiko transport (thread loop, messages)", ("paramiko/",)),
    ("cryptography", ("cryptography/",)),
    ("known_hosts / ssh config", ("transports/ssh.py:lookup_known_host",
                                  "transports/ssh.py:_host", "transports/ssh.py:_glob",
                                  "transports/ssh.py:_g", "transports/ssh.py:resolve",
                                  "transports/ssh.py:has_host", "subprocess.py")),
    ("our ssh transport", ("transports/ssh.py",)),
    ("kubernetes client", ("kubernetes/",)),
    ("urllib3 / ssl / http", ("urllib3/", "ssl.py", "http/client.py", "socket.py")),
    ("json", ("json/",)),
    ("yaml (kubeconfig)", ("yaml/",)),
    ("facts script build + parse", ("core/facts.py", "core/parsers.py")),
    ("checks, shape, snapshot", ("core/checks/", "core/shape.py", "core/snapshot.py",
                                 "core/model.py")),
    ("threading / queue / select", ("threading.py", "queue.py", "selectors.py",
                                    "concurrent/futures")),
]


def area_of(module: str, name: str) -> str:
    key = f"{module}:{name}"
    for area, needles in AREAS:
        if any(n in key for n in needles):
            return area
    if module.startswith("~") or "<built-in" in module or module == "":
        return "builtins (C, unattributed)"
    return "other"


def profile(lab_dir: str, top: int) -> None:
    import yappi

    yappi.set_clock_type("cpu")
    for label in ("cold", "warm"):
        if label == "warm":
            rt = build_runtime(lab_dir=lab_dir)
            D.diagnose(rt.api, rt.shells)  # opens the connections
        else:
            rt = None
        yappi.clear_stats()
        yappi.start(builtins=True, profile_threads=True)
        cpu, _k, wall, rt = whole(lab_dir, rt)
        yappi.stop()
        rt.close()
        stats = yappi.get_func_stats()
        areas: dict[str, float] = defaultdict(float)
        total = 0.0
        for s in stats:
            areas[area_of(s.module or "", s.name)] += s.tsub
            total += s.tsub
        print(f"\n[yappi {label}] diagnose under yappi: {cpu:.3f}s CPU, {wall:.3f}s wall; own "
              f"time by area (share of {total:.3f}s):")
        for area, t in sorted(areas.items(), key=lambda kv: -kv[1]):
            print(f"  {t / total * 100:5.1f}%  {t:7.3f}s  {area}")
        print(f"  top {top} functions by own CPU (ncall, tsub, ttot):")
        stats.sort("tsub", "desc")
        for s in list(stats)[:top]:
            mod = s.module.split("site-packages/")[-1].split("clusterfix_tui/")[-1]
            print(f"    {s.ncall:8d}  {s.tsub:7.4f}s  {s.ttot:7.4f}s  {mod}:{s.lineno} {s.name}")


def cli_runs(lab_dir: str, runs: int, n: int) -> dict[str, Any]:
    import subprocess

    import clusterfix_tui

    # the code this benchmark imported (`-m` would put the current directory first on sys.path)
    tree = str(Path(clusterfix_tui.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=tree)
    rows = []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "clusterfix_tui", "diagnose", "--lab-dir",
                              lab_dir, "--json", "--quiet"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=tree, env=env)
        _pid, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err = p.stderr.read().decode(errors="replace") if p.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise SystemExit(f"diagnose exited {code}: {err[-400:]}")
        rows.append((ru.ru_utime + ru.ru_stime, wall))
    cpu = statistics.median(r[0] for r in rows)
    w = statistics.median(r[1] for r in rows)
    print(f"\none `clusterfix-tui diagnose --json` process (median of {runs}; load "
          f"{os.getloadavg()[0]:.1f}): CPU {cpu:.3f}s = {cpu / n * 1000:.1f} ms/node (interpreter, "
          f"imports, diagnosis, JSON, `ssh -G`), wall {w:.3f}s; runs: "
          + ", ".join(f"{c:.2f}s" for c, _w in rows))
    return {"cpu": cpu, "wall": w, "runs": rows}


def compare(args: argparse.Namespace) -> int:
    """--compare: this benchmark on the old tree and on this one, alternately, one process each."""
    import subprocess
    import tempfile

    import clusterfix_tui

    trees = {"old": str(Path(args.compare).resolve()),
             "new": str(Path(clusterfix_tui.__file__).resolve().parents[1])}
    if not (Path(trees["old"]) / "clusterfix_tui").is_dir():
        raise SystemExit(f"--compare {args.compare}: no clusterfix_tui package there")
    got: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for pair in range(args.pairs):
        for side in ("old", "new"):
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--lab-dir", args.lab_dir,
                       "--runs", str(args.runs), "--json", out.name,
                       "--cli-runs", str(args.cli_runs)]
                env = dict(os.environ, PYTHONPATH=trees[side])
                load = os.getloadavg()[0]
                r = subprocess.run(cmd, env=env, cwd=trees[side], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"{side} run failed: {r.stderr[-800:]}")
                res = json.loads(Path(out.name).read_text())
            res["load_before"] = load
            got[side].append(res)
            cli = (f", one `diagnose --json` process {res['cli']['cpu']:.2f}s CPU"
                   if res.get("cli") else "")
            print(f"pair {pair + 1} {side}: cold {res['cold']['per_node_ms']:.1f} ms/node, warm "
                  f"{res['warm']['per_node_ms']:.1f} ms/node{cli} (load {load:.1f} -> "
                  f"{res['load_end']:.1f})", flush=True)
    n = got["new"][0]["nodes"]
    print(f"\nour CPU per node, ms (median of the pairs' medians; {n} nodes; old = "
          f"{trees['old']}):")
    for label in ("cold", "warm"):
        print(f"  {label:5s} {'phase':10s} {'old':>8s} {'new':>8s} {'new/old':>8s}")
        names = list(got["new"][0][label]["phases_cpu"])
        for k in [*names, "diagnose()", "children"]:
            def val(res: dict[str, Any], k: str = k, label: str = label) -> float:
                if k == "diagnose()":
                    return float(res[label]["diagnose_cpu"]) / n * 1000
                if k == "children":
                    return float(res[label]["diagnose_children"]) / n * 1000
                return float(res[label]["phases_cpu"].get(k, 0.0)) / n * 1000
            o = statistics.median(val(r) for r in got["old"])
            w = statistics.median(val(r) for r in got["new"])
            print(f"  {'':5s} {k:10s} {o:8.2f} {w:8.2f} {w / o if o else 0:8.2f}")
    if args.cli_runs:
        o = statistics.median(r["cli"]["cpu"] for r in got["old"])
        w = statistics.median(r["cli"]["cpu"] for r in got["new"])
        print(f"  one `clusterfix-tui diagnose --json` process, CPU s (interpreter, imports, "
              f"diagnosis, JSON, children): old {o:.3f} ({o / n * 1000:.1f} ms/node), new "
              f"{w:.3f} ({w / n * 1000:.1f} ms/node), new/old {w / o:.2f}")
        o = statistics.median(r["cli"]["wall"] for r in got["old"])
        w = statistics.median(r["cli"]["wall"] for r in got["new"])
        print(f"  its wall time: old {o:.3f}s, new {w:.3f}s")
    loads = [r["load_before"] for side in got.values() for r in side]
    print(f"  load during the runs: {min(loads):.1f} - {max(loads):.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(got, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--yappi", action="store_true", help="also profile with yappi")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--cli-runs", type=int, default=0,
                    help="also time this many whole `diagnose --json` processes")
    ap.add_argument("--compare", metavar="OLD_TREE",
                    help="alternate runs on this old checkout and on this tree (see above)")
    ap.add_argument("--pairs", type=int, default=2, help="--compare: old/new pairs")
    args = ap.parse_args()
    if args.compare:
        return compare(args)
    import kubernetes.client  # noqa: F401 - one-time imports are not part of a run
    import paramiko  # noqa: F401

    _count_feeds()

    lab = json.loads((Path(args.lab_dir) / "lab.json").read_text())
    n = len(lab["nodes"])
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  nodes={n}  cores={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}  runs={args.runs}", flush=True)
    whole(args.lab_dir, None)[3].close()  # warm-up: first TLS, module caches
    results: dict[str, Any] = {"nodes": n, "load_start": os.getloadavg()[0]}
    for label in ("cold", "warm"):
        runs: list[Phases] = []
        totals: list[tuple[float, float, float]] = []
        rt = None
        if label == "warm":
            rt = build_runtime(lab_dir=args.lab_dir)
            D.diagnose(rt.api, rt.shells)
        for _ in range(args.runs):
            ph, r = one_pass(args.lab_dir, rt)
            if label == "cold":
                r.close()
            runs.append(ph)
            cpu, kids, wall, r2 = whole(args.lab_dir, rt)
            if label == "cold":
                r2.close()
            totals.append((cpu, kids, wall))
        if rt is not None:
            rt.close()
        names = list(runs[0].cpu)
        med = {k: statistics.median(p.cpu[k] for p in runs) for k in names}
        kid = {k: statistics.median(p.child[k] for p in runs) for k in names}
        wall = {k: statistics.median(p.wall[k] for p in runs) for k in names}
        print(f"\n{label} (medians of {args.runs}; load {os.getloadavg()[0]:.1f}):")
        print(f"  {'phase':10s} {'our CPU':>9s} {'per node':>10s} {'children':>9s} {'wall':>8s}")
        for k in names:
            print(f"  {k:10s} {med[k]:8.3f}s {med[k] / n * 1000:8.1f}ms {kid[k]:8.3f}s "
                  f"{wall[k]:7.3f}s")
        pieces = statistics.median(p.chunks[0] for p in runs)
        size = statistics.median(p.chunks[1] for p in runs)
        print(f"  reading: {size / 1024:.1f} KiB per node in {pieces:.0f} pieces "
              f"({size / max(pieces, 1) / 1024:.1f} KiB each)")
        s = sum(med.values())
        print(f"  {'sum':10s} {s:8.3f}s {s / n * 1000:8.1f}ms {sum(kid.values()):8.3f}s")
        cpu = statistics.median(t[0] for t in totals)
        kids = statistics.median(t[1] for t in totals)
        w = statistics.median(t[2] for t in totals)
        print(f"  plain diagnose(): our CPU {cpu:.3f}s = {cpu / n * 1000:.1f} ms/node "
              f"(+ children {kids:.3f}s = {kids / n * 1000:.1f} ms/node), wall {w:.3f}s")
        gc_cpu = statistics.median(g for g, _n in GC_CPU[-args.runs:])
        objs = statistics.median(o for _g, o in GC_CPU[-args.runs:])
        print(f"  of which its last full garbage collection, about: {gc_cpu * 1000:.0f} ms = "
              f"{gc_cpu / n * 1000:.1f} ms/node ({objs:.0f} objects tracked, "
              f"{gc.get_freeze_count()} frozen)")
        results[label] = {"phases_cpu": med, "phases_children": kid, "phases_wall": wall,
                          "diagnose_cpu": cpu, "diagnose_children": kids, "diagnose_wall": w,
                          "per_node_ms": cpu / n * 1000, "full_collection_cpu": gc_cpu,
                          "tracked_objects": objs}
    results["load_end"] = os.getloadavg()[0]
    if args.cli_runs:
        results["cli"] = cli_runs(args.lab_dir, args.cli_runs, n)
    if args.yappi:
        profile(args.lab_dir, args.top)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
