#!/usr/bin/env python3
"""Benchmark: time to repair, headless `fix --yes` on a fresh N-node all-faults lab (#17).

For each run: `lab up --nodes N --faults all --dir DIR` (not timed), then

    /usr/bin/time -v python3 -m clusterfix_tui fix --yes --lab-dir DIR --journal J --report R

timed from the start of that process to its exit (wall, our CPU user + sys, peak RSS), then
`lab down --dir DIR` (always). The phases come from the journal's timestamps (its events are
written when each thing ends; the table says which event closes each interval). The load average
is printed before and after each run: this machine is shared, compare runs made side by side.

    python3 bench/bench_repair.py                       # one run, the code on PYTHONPATH
    python3 bench/bench_repair.py --code /tmp/old-tree   # `fix` from another checkout (before)
    python3 bench/bench_repair.py --compare /tmp/old-tree --runs 2
        # before and after side by side: each run is a pair on fresh labs, back to back (the
        # order alternates between pairs), then one table of the phases' totals, per run

`--compare` is how to measure a change on this shared machine: both sides in the same minutes.

Not part of the test suite; needs root (the lab is network namespaces).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def ts(event: dict[str, Any]) -> float:
    return dt.datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.UTC).timestamp()


def _time_v(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, pat in (("user", r"User time \(seconds\): ([\d.]+)"),
                     ("sys", r"System time \(seconds\): ([\d.]+)"),
                     ("rss_kib", r"Maximum resident set size \(kbytes\): (\d+)")):
        m = re.search(pat, text)
        if m:
            out[key] = float(m.group(1))
    return out


def phases(events: list[dict[str, Any]], t0: float, t_end: float) -> list[tuple[str, float]]:
    """(what, seconds): the intervals between the journal's events, in order, each labelled by
    what ran in it (the event closing it says); consecutive intervals of one label are summed."""
    rows: list[tuple[str, float]] = []
    prev_t = t0

    def add(label: str, t: float) -> None:
        nonlocal prev_t
        if rows and rows[-1][0] == label:
            rows[-1] = (label, rows[-1][1] + (t - prev_t))
        else:
            rows.append((label, t - prev_t))
        prev_t = t

    for i, e in enumerate(events):
        t, kind = ts(e), e.get("type")
        nxt = events[i + 1] if i + 1 < len(events) else {}
        if kind == "session_start":
            add("start-up, kubeconfig, cluster info (to session_start)", t)
        elif kind in ("cluster_identity", "node_identity"):
            add("SSH connections + node identities", t)
        elif kind == "diagnosis":
            phase = e.get("phase")
            if phase == "before":
                add("diagnosis before", t)
            elif phase == "refresh" and (nxt.get("type") == "plan" or e.get("sections_left_out")):
                # (a lean one, core/flow.py, is followed by the note saying what it left out)
                add("re-diagnosis between steps", t)
            elif phase == "refresh":
                add("settle + re-diagnosis after the pass", t)
            else:
                add("diagnosis after", t)
        elif kind == "validation":
            add(f"validation {e.get('phase')}", t)
        elif kind in ("plan", "decision") and not e.get("rollback"):
            add("plans (build, pin pods, show, decide)", t)
        elif kind == "node_state":
            if e.get("phase") == "after":
                add("node state after (read)", t)
            else:
                add(f"identity check + node state before (read: {e.get('read')})", t)
        elif kind in ("precheck", "command_start", "command_end", "step_end"):
            add("prechecks + commands + step's wait", t)
        elif kind == "note" and str(e.get("text", "")).startswith("pass "):
            add("settle + re-diagnosis after the pass", t)
        elif kind == "session_end":
            add("verdict", t)
    if t_end > prev_t:
        add("report, exit", t_end)
    return rows


def diagnoses(events: list[dict[str, Any]]) -> str:
    """Each diagnosis: its phase, the seconds since the event before it (its read, for a
    re-diagnosis between steps), and what it left out (a lean one, core/flow.py: "-kubectl")."""
    out = []
    for i, e in enumerate(events):
        if e.get("type") != "diagnosis" or i == 0:
            continue
        left = "".join(f" -{k.split('_')[0]}" for k in sorted(e.get("sections_left_out") or ()))
        out.append(f"{e.get('phase')} {ts(e) - ts(events[i - 1]):.1f}{left}")
    return ", ".join(out)


def run_once(args: argparse.Namespace, n: int, tag: str = "") -> dict[str, Any]:
    lab = args.dir
    out = Path(args.out) / f"run{n}{tag}"
    out.mkdir(parents=True, exist_ok=True)
    journal, report = out / "J.jsonl", out / "R.md"
    for p in (journal, report):
        if p.exists():
            p.unlink()
    env = dict(os.environ)
    fix_env = dict(env)
    if args.code:
        fix_env["PYTHONPATH"] = args.code
    py = [sys.executable, "-m", "clusterfix_tui"]
    code = subprocess.run([sys.executable, "-c", "import clusterfix_tui; print(clusterfix_tui."
                           "__file__)"], env=fix_env, cwd=str(out), capture_output=True,
                          text=True).stdout.strip()
    t = time.monotonic()
    subprocess.run(py + ["lab", "up", "--nodes", str(args.nodes), "--faults", args.faults,
                         "--dir", lab], check=True, env=env, stdout=subprocess.DEVNULL)
    lab_up = time.monotonic() - t
    try:
        load_before = load()
        t0 = time.time()
        proc = subprocess.run(["/usr/bin/time", "-v"] + py + [
            "fix", "--yes", "--lab-dir", lab, "--journal", str(journal), "--report",
            str(report)], env=fix_env, capture_output=True, text=True,
            cwd=str(out))  # not the checkout: `python -m` puts the cwd first on sys.path
        t_end = time.time()
        load_after = load()
    finally:
        subprocess.run(py + ["lab", "down", "--dir", lab], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (out / "stdout.txt").write_text(proc.stdout)
    (out / "stderr.txt").write_text(proc.stderr)
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    verdict = next((e.get("verdict") for e in events if e.get("type") == "session_end"), None)
    passes = max((int(e.get("pass_no") or 1) for e in events), default=1)
    # the verdict itself: session_end is journaled when it is decided (the report and the
    # connections' close come after it, before the process exits)
    verdict_at = next((ts(e) - t0 for e in events if e.get("type") == "session_end"), None)
    return {"code": code, "wall": t_end - t0, "verdict_at": verdict_at, "rc": proc.returncode,
            "verdict": verdict, "passes": passes,
            "lab_up": lab_up, "load": f"{load_before} -> {load_after}",
            "phases": phases(events, t0, t_end), "diagnoses": diagnoses(events),
            **_time_v(proc.stderr)}


def totals(r: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, secs in r["phases"]:
        out[label] = out.get(label, 0.0) + secs
    return out


def compare(args: argparse.Namespace) -> int:
    """Pairs of runs, before (--compare's checkout) and after (the code on PYTHONPATH), back to
    back on fresh labs, the order alternating; one side-by-side table of the phases' totals."""
    new_code = args.code
    cols: list[tuple[str, dict[str, Any]]] = []
    for n in range(1, args.runs + 1):
        order = [("before", args.compare), ("after", new_code)]
        if n % 2 == 0:
            order.reverse()
        got = {}
        for side, code in order:
            args.code = code
            got[side] = run_once(args, n, f"-{side}")
            r = got[side]
            print(f"run {n} {side}: {r['wall']:.1f} s wall, CPU {r.get('user', 0):.1f} + "
                  f"{r.get('sys', 0):.1f} s, verdict {r['verdict']} after {r['passes']} "
                  f"pass(es), exit {r['rc']}, load {r['load']}", flush=True)
        cols += [(f"{n} before", got["before"]), (f"{n} after", got["after"])]
    labels: list[str] = []
    for _, r in cols:
        for label, _s in r["phases"]:
            if label not in labels:
                labels.append(label)
    width = 58
    print(f"\n{'phase (s)':<{width}}" + "".join(f"{name:>11}" for name, _ in cols))
    for label in labels:
        print(f"{label[:width]:<{width}}" + "".join(
            f"{totals(r).get(label, 0.0):11.1f}" for _, r in cols))
    print(f"{'start to verdict (process wall)':<{width}}" + "".join(
        f"{r['wall']:11.1f}" for _, r in cols))
    print(f"{'start to verdict (session_end journaled)':<{width}}" + "".join(
        f"{r['verdict_at'] or 0:11.1f}" for _, r in cols))
    print(f"{'our CPU user + sys':<{width}}" + "".join(
        f"{r.get('user', 0) + r.get('sys', 0):11.1f}" for _, r in cols))
    print("load before -> after each run:")
    for name, r in cols:
        print(f"  {name}: {r['load']}")
    print("diagnoses (phase, s since the event before, sections left out):")
    for name, r in cols:
        print(f"  {name}: {r['diagnoses']}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--faults", default="all")
    ap.add_argument("--dir", default="/tmp/repair-lab6", help="the lab's directory")
    ap.add_argument("--out", default="/tmp/repair", help="journals, reports, outputs")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--code", default="", help="PYTHONPATH for the `fix` process only "
                    "(another checkout, to measure the code before a change)")
    ap.add_argument("--compare", default="", metavar="OLD_CHECKOUT",
                    help="run pairs: `fix` from OLD_CHECKOUT (before) and from --code or "
                    "PYTHONPATH (after), back to back, and print them side by side")
    args = ap.parse_args()
    if args.compare:
        return compare(args)
    for n in range(1, args.runs + 1):
        r = run_once(args, n)
        print(f"\n== run {n}: {args.nodes} nodes, faults {args.faults}"
              f"{', code ' + args.code if args.code else ''}; load {r['load']}")
        print(f"start to verdict {r['wall']:.1f} s wall; our CPU {r.get('user', 0):.1f} s user + "
              f"{r.get('sys', 0):.1f} s sys; peak RSS {r.get('rss_kib', 0) / 1024:.0f} MiB; "
              f"verdict {r['verdict']} after {r['passes']} pass(es), exit {r['rc']} "
              f"(lab up took {r['lab_up']:.0f} s, not counted)\nfix ran {r['code']}\n"
              f"verdict (session_end journaled) {r['verdict_at'] or 0:.1f} s after the start")
        print(f"{'phase (the interval up to the event that ends it)':<66} {'s':>6}")
        totals: dict[str, float] = {}
        for label, secs in r["phases"]:
            print(f"  {label:<64} {secs:6.1f}")
            totals[label] = totals.get(label, 0.0) + secs
        print(f"diagnoses (phase, s since the event before, sections left out): {r['diagnoses']}")
        print("totals by kind:")
        for label, secs in sorted(totals.items(), key=lambda kv: -kv[1]):
            print(f"  {label:<64} {secs:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
