#!/usr/bin/env python3
"""Benchmark: node-fact gathering at scale, ours against the runbook's way and Ansible.

Brings up a healthy lab of N nodes for each N and measures, in one run, side by side:
  ours cold   clusterfix-tui's `diagnose` engine (API snapshot + the one-round-trip facts
              script on all nodes in parallel + checks), new SSH connections each run
  ours warm   the same with the connections reused (as within a session)
  seq ssh     what the runbook's helpers do: OpenSSH's client, node after node, one `ssh` per
              command, for the same set of facts
  ansible     ansible-core ad-hoc `raw` of the same facts script over the same ssh_config,
              forks = N (skipped with a message when ansible is not installed:
              `pip install -e '.[bench]'`)
Prints medians over --runs runs and the ratios the performance issue asks for, plus our peak RSS.
Not part of the test suite. Run as root (the lab needs network namespaces):

    python3 bench/bench_diagnose.py --nodes 1,10,30 --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.lab import cluster
from clusterfix_tui.runtime import build_runtime


def ours(lab_dir: str, nodes: list[dict], rt=None) -> float:
    own = rt is None
    rt = rt or build_runtime(lab_dir=lab_dir)
    try:
        t0 = time.perf_counter()
        diag = diagnose(rt.api, rt.shells)
        dt = time.perf_counter() - t0
        if diag.node_errors or len(diag.facts) != len(nodes):
            raise SystemExit(f"fact gathering failed: {diag.node_errors}")
        return dt
    finally:
        if own:
            rt.close()


def seq_ssh(ssh_config: str, nodes: list[dict]) -> float:
    t0 = time.perf_counter()
    for n in nodes:
        for _name, command in F._SECTIONS:
            subprocess.run(["ssh", "-F", ssh_config, n["name"], command], capture_output=True,
                           timeout=60)
    return time.perf_counter() - t0


def ansible(lab_dir: str, ssh_config: str, nodes: list[dict], script: str) -> float | None:
    exe = shutil.which("ansible")
    if not exe:
        return None
    inv = Path(lab_dir) / "bench-inventory.ini"
    inv.write_text("[lab]\n" + "".join(f"{n['name']}\n" for n in nodes))
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_SSH_ARGS=f"-F {ssh_config}",
               ANSIBLE_PIPELINING="True", ANSIBLE_LOCAL_TEMP=str(Path(lab_dir) / "ansible-tmp"),
               ANSIBLE_GATHERING="explicit", ANSIBLE_STDOUT_CALLBACK="minimal")
    t0 = time.perf_counter()
    r = subprocess.run([exe, "lab", "-i", str(inv), "-u", "root", "-m", "raw", "-a", script,
                        "-f", str(len(nodes))], capture_output=True, text=True, env=env, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        print(f"  ansible failed (rc={r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}",
              file=sys.stderr)
        return None
    return dt


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1,10,30", help="comma-separated lab sizes")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seq-runs", type=int, default=2, help="runs of the slow sequential baseline")
    ap.add_argument("--no-ansible", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    rows: dict[int, dict[str, float | None]] = {}
    for n in sizes:
        lab_dir = tempfile.mkdtemp(prefix=f"cfx-bench-{n}-")
        t0 = time.perf_counter()
        handle = cluster.up(lab_dir, nodes=n, faults="none")
        up_s = time.perf_counter() - t0
        try:
            nodes = handle.info["nodes"]
            ssh_config = str(handle.ssh_config)
            cold = [ours(lab_dir, nodes) for _ in range(args.runs)]
            rt = build_runtime(lab_dir=lab_dir)
            ours(lab_dir, nodes, rt)  # open the connections
            warm = [ours(lab_dir, nodes, rt) for _ in range(args.runs)]
            rt.close()
            seq = [seq_ssh(ssh_config, nodes) for _ in range(args.seq_runs)]
            ans: list[float] = []
            if not args.no_ansible:
                script = F.build_facts_script([])
                for _ in range(max(1, args.runs // 2)):
                    v = ansible(lab_dir, ssh_config, nodes, script)
                    if v is None:
                        break
                    ans.append(v)
            rows[n] = {"up": up_s, "cold": median(cold), "warm": median(warm), "seq": median(seq),
                       "ansible": median(ans) if ans else None}
            r = rows[n]
            print(f"N={n:3d}  lab up {up_s:5.2f}s  ours cold {r['cold']:.3f}s  warm {r['warm']:.3f}s"
                  f"  seq-ssh {r['seq']:.3f}s  ansible "
                  + (f"{r['ansible']:.3f}s" if r["ansible"] else "n/a"), flush=True)
        finally:
            cluster.down(lab_dir)
            shutil.rmtree(lab_dir, ignore_errors=True)
    one = rows.get(1) or rows[min(rows)]
    print("\nratios (medians):")
    for n, r in rows.items():
        line = (f"N={n:3d}  ours(N)/ours(1) cold {r['cold'] / one['cold']:.2f}  "
                f"warm {r['warm'] / one['warm']:.2f}  ours/seq-ssh {r['cold'] / r['seq']:.3f}")
        if r["ansible"]:
            line += f"  ours/ansible {r['cold'] / r['ansible']:.3f}"
        print(line)
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
