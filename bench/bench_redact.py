#!/usr/bin/env python3
"""Benchmark: core.redact on large outputs (every command's output passes through it).

Two inputs at growing sizes: an iptables-save nat table (the block of tests/test_redact.py,
repeated) and one very long line without newlines (where a backtracking regex would blow up).
For each size: the best of --runs, in ms, and the cost per KB; the cost per KB should stay flat
as the size grows (linear), which the last column shows as a ratio to the smallest size.

Prints figures only (nothing is asserted; tests/test_redact.py checks the result):

    python3 bench/bench_redact.py --runs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from test_redact import IPTABLES_SAVE  # noqa: E402

from clusterfix_tui.core.redact import redact  # noqa: E402


def best_ms(text: str, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        redact(text)
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", default="25,100,400,1600",
                    help="how many copies of the iptables-save block")
    ap.add_argument("--line", default="10000,70000,280000,1120000",
                    help="lengths of the single long line")
    args = ap.parse_args()
    cases = [(f"iptables x{n}", IPTABLES_SAVE * int(n)) for n in args.repeat.split(",")]
    lines = [(f"one line {n} chars", ("x" * 31 + " token=") * (int(n) // 38))
             for n in args.line.split(",")]
    print(f"{'input':<28}{'bytes':>12}{'ms':>10}{'ms/KB':>10}{'vs first':>10}")
    for group in (cases, lines):
        first = None
        for name, text in group:
            ms = best_ms(text, args.runs)
            per_kb = ms / (len(text) / 1024)
            first = first or per_kb
            print(f"{name:<28}{len(text):>12}{ms:>10.1f}{per_kb:>10.4f}{per_kb / first:>10.2f}")


if __name__ == "__main__":
    main()
