#!/usr/bin/env python3
"""Benchmark: node-fact gathering at scale, ours against the runbook's way and Ansible.

Brings up a healthy lab of N nodes for each N (one lab at a time) and measures, side by side:
  ours cold   clusterfix-tui's `diagnose` engine as the commands run it: build_runtime (new
              KubeClusterAPI + new SSH pool) + API snapshot + the one-round-trip facts script on
              all nodes in parallel + the checks; new SSH connections every run
  ours warm   the same diagnose() with the runtime (and its SSH connections) reused, as within a
              wizard session
              (plus "our CPU": CPU seconds our process spent in a cold run, all threads; the
              CPU of the processes it started, `ssh -G` per node, as "children"; and our CPU
              in a warm run)
  ours floor  the same SSH pool running `true` on every node (new connections): what the transport
              alone costs; the difference to "ours cold" is the work on the nodes and the API
  seq ssh     what the runbook's helpers do: OpenSSH's client, node after node, one `ssh` per
              command, for the same facts (every fixed section, `ip -j route get` of one pod IP
              on every peer node, the sysctls, the CNI files, the kubeconfig server lines, the
              node's kubectl); with --seq-sample K only K nodes are walked and the time is scaled
              by N/K (it is linear by construction), and the table says so
  ansible     ansible-core ad-hoc `raw` of the very facts script diagnose sends (per host, with
              that host's peer IPs), over the same ssh_config, forks = N; the run counts only when
              every host answered rc=0 with the script's DONE marker for its own nonce
Prints medians over --runs runs, the ratios the performance issue asks for, and the peak memory
of our process (RSS high-water, and the tracemalloc peak of one cold diagnose).

The lab's nodes are network namespaces on this machine: the facts scripts of all N nodes share
its CPU cores (on a real cluster every node runs its own). "node cpu" is the CPU time one facts
script costs on a node (measured there with `times`), so N x node cpu / cores is the floor any
tool that gathers these facts pays in this lab.

Not part of the test suite. Run as root (the lab needs network namespaces):

    python3 bench/bench_diagnose.py --nodes 1,10,30 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.lab import cluster
from clusterfix_tui.runtime import build_runtime


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(diag, nodes: list[dict]) -> None:
    if diag.error or diag.node_errors or len(diag.facts) != len(nodes) \
            or not all(f.complete for f in diag.facts.values()):
        raise SystemExit(f"fact gathering failed: {diag.error} {diag.node_errors}")


CPU: list[float] = []  # our process's CPU seconds (all threads) of each cold run
KIDS: list[float] = []  # CPU seconds of the processes it started (`ssh -G`), each cold run
WARM_CPU: list[float] = []  # our process's CPU seconds of each warm run


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ours_cold(lab_dir: str, nodes: list[dict]) -> float:
    c0 = time.process_time()
    k0 = children_cpu()
    t0 = time.perf_counter()
    rt = build_runtime(lab_dir=lab_dir)
    try:
        diag = diagnose(rt.api, rt.shells)
        dt = time.perf_counter() - t0
    finally:
        rt.close()
    CPU.append(time.process_time() - c0)
    KIDS.append(children_cpu() - k0)
    check(diag, nodes)
    return dt


def ours_warm(rt, nodes: list[dict]) -> float:
    c0 = time.process_time()
    t0 = time.perf_counter()
    diag = diagnose(rt.api, rt.shells)
    dt = time.perf_counter() - t0
    WARM_CPU.append(time.process_time() - c0)
    check(diag, nodes)
    return dt


def ours_floor(lab_dir: str, nodes: list[dict]) -> float:
    """New SSH pool, `true` on every node in parallel (the same pool bound as diagnose)."""
    import concurrent.futures as cf

    rt = build_runtime(lab_dir=lab_dir)
    try:
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=min(32, len(nodes))) as ex:
            res = list(ex.map(lambda n: rt.shells(n["name"]).run("true"), nodes))
        dt = time.perf_counter() - t0
    finally:
        rt.close()
    if any(r.exit_code != 0 for r in res):
        raise SystemExit("floor: `true` failed on a node")
    return dt


def node_cpu(lab_dir: str, node: str, peers: list[str]) -> float:
    """CPU seconds (user+sys of the script and its children) of one facts script on a node."""
    rt = build_runtime(lab_dir=lab_dir)
    try:
        script = F.build_facts_script(peers)
        res = rt.shells(node).run(f"sh -c {shlex.quote(script)} >/dev/null 2>&1; times")
    finally:
        rt.close()
    # `times`: shell user/sys, then children user/sys
    vals = re.findall(r"(\d+)m([\d.]+)s", res.stdout)
    return sum(int(m) * 60 + float(s) for m, s in vals)


def fact_commands(peers: list[str]) -> list[str]:
    """The same facts as the script, one command each (as a runbook helper would run them)."""
    cmds = [cmd for _name, cmd in F._SECTIONS]
    cmds += [f"ip -j route get {ip}" for ip in peers]
    cmds += [f"cat {p}" for p in F.SYSCTLS.values()]
    cmds += ["ls /etc/cni/net.d", "head -c 65536 /etc/cni/net.d/*",
             "grep -E '^[[:space:]]*-?[[:space:]]*server:' " + " ".join(F.KUBECONFIG_GLOBS),
             "kubectl get nodes -o name --request-timeout=5s"]
    return cmds


def seq_ssh(ssh_config: str, nodes: list[dict], peers: dict[str, list[str]],
            sample: int | None) -> tuple[float, int, int]:
    """(seconds scaled to all nodes, commands run, commands whose ssh failed to connect)."""
    walk = nodes[:sample] if sample else nodes
    runs = failures = 0
    t0 = time.perf_counter()
    for n in walk:
        for command in fact_commands(peers[n["name"]]):
            r = subprocess.run(["ssh", "-F", ssh_config, n["name"], command], capture_output=True,
                               timeout=60)
            runs += 1
            if r.returncode == 255:  # ssh's own failure (not the command's)
                failures += 1
    dt = time.perf_counter() - t0
    return dt * len(nodes) / len(walk), runs, failures


def ansible(lab_dir: str, ssh_config: str, nodes: list[dict],
            peers: dict[str, list[str]]) -> float | None:
    exe = shutil.which("ansible")
    if not exe:
        print("  ansible not installed: pip install -e '.[bench]'", file=sys.stderr)
        return None
    nonces = {n["name"]: F.new_nonce() for n in nodes}
    inv = Path(lab_dir) / "bench-inventory.yml"
    # !unsafe: the script is sent as is, never run through Jinja
    lines = ["lab:", "  hosts:"]
    for n in nodes:
        script = F.build_facts_script(peers[n["name"]], nonce=nonces[n["name"]])
        lines.append(f"    {n['name']}:")
        lines.append(f"      cfx_script: !unsafe {json.dumps(script)}")
    inv.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_SSH_ARGS=f"-F {ssh_config}",
               ANSIBLE_PIPELINING="True", ANSIBLE_LOCAL_TEMP=str(Path(lab_dir) / "ansible-tmp"),
               ANSIBLE_GATHERING="explicit", ANSIBLE_STDOUT_CALLBACK="minimal",
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="0")
    t0 = time.perf_counter()
    r = subprocess.run([exe, "lab", "-i", str(inv), "-m", "raw", "-a", ": ; {{ cfx_script }}",
                        "-f", str(len(nodes))], capture_output=True, text=True, env=env, timeout=900)
    dt = time.perf_counter() - t0
    ok_hosts = set(re.findall(r"^(\S+) \| CHANGED \| rc=0", r.stdout, re.M))
    done = [n for n, nonce in nonces.items() if f"{F.MARK} {nonce} DONE" in r.stdout]
    if r.returncode != 0 or len(ok_hosts) != len(nodes) or len(done) != len(nodes):
        print(f"  ansible failed (rc={r.returncode}, {len(ok_hosts)} hosts rc=0, {len(done)} "
              f"DONE markers of {len(nodes)}): {r.stdout[-600:]} {r.stderr[-600:]}",
              file=sys.stderr)
        return None
    return dt


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1,10,30", help="comma-separated lab sizes")
    ap.add_argument("--runs", type=int, default=5, help="runs of ours (cold and warm)")
    ap.add_argument("--ansible-runs", type=int, default=3)
    ap.add_argument("--seq-runs", type=int, default=1, help="runs of the slow sequential baseline")
    ap.add_argument("--seq-sample", type=int, default=0,
                    help="walk only this many nodes sequentially and scale (0: all nodes)")
    ap.add_argument("--no-ansible", action="store_true")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--lab-root", default="/tmp", help="labs are made in <lab-root>/cfx-bench-N-*")
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    rows: dict[int, dict] = {}
    # the one-time imports (kubernetes, paramiko) are not part of any measured run
    import kubernetes.client  # noqa: F401
    import paramiko  # noqa: F401

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  cores={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}  runs={args.runs}", flush=True)
    for n in sizes:
        lab_dir = tempfile.mkdtemp(prefix=f"cfx-bench-{n}-", dir=args.lab_root)
        t0 = time.perf_counter()
        handle = cluster.up(lab_dir, nodes=n, faults="none")
        up_s = time.perf_counter() - t0
        try:
            nodes = handle.info["nodes"]
            ssh_config = str(handle.ssh_config)
            rt = build_runtime(lab_dir=lab_dir)
            snap = build_snapshot(rt.api, with_logs=False)
            peers = {x["name"]: snap.peer_pod_ips(x["name"]) for x in nodes}
            rt.close()
            if n > 1 and not all(peers.values()):
                raise SystemExit(f"no peer pod IPs found: {peers}")
            cpu = node_cpu(lab_dir, nodes[0]["name"], peers[nodes[0]["name"]])
            ours_cold(lab_dir, nodes)  # warm-up: first TLS, module-level caches
            tracemalloc.start()
            ours_cold(lab_dir, nodes)
            tm_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            CPU.clear()
            KIDS.clear()
            cold = [ours_cold(lab_dir, nodes) for _ in range(args.runs)]
            our_cpu, kids_cpu = median(CPU), median(KIDS)
            rt = build_runtime(lab_dir=lab_dir)
            ours_warm(rt, nodes)  # opens the connections
            WARM_CPU.clear()
            warm = [ours_warm(rt, nodes) for _ in range(args.runs)]
            warm_cpu = median(WARM_CPU)
            rt.close()
            floor = [ours_floor(lab_dir, nodes) for _ in range(args.runs)]
            rss = rss_mib()
            seq, seq_cmds, seq_fail = [], 0, 0
            for _ in range(args.seq_runs):
                s, seq_cmds, seq_fail = seq_ssh(ssh_config, nodes, peers,
                                                args.seq_sample if args.seq_sample < n else None)
                seq.append(s)
            if seq and seq_fail:
                raise SystemExit(f"seq-ssh: {seq_fail} of {seq_cmds} ssh runs failed to connect")
            ans: list[float] = []
            if not args.no_ansible:
                for _ in range(args.ansible_runs):
                    v = ansible(lab_dir, ssh_config, nodes, peers)
                    if v is None:
                        break
                    ans.append(v)
            r = rows[n] = {
                "nodes": n, "lab_up": up_s, "cold": median(cold), "warm": median(warm),
                "floor": median(floor), "seq": median(seq) if seq else None,
                "ansible": median(ans) if ans else None, "node_cpu": cpu, "our_cpu": our_cpu,
                "children_cpu": kids_cpu, "our_cpu_warm": warm_cpu, "cpu_runs": list(CPU),
                "warm_cpu_runs": list(WARM_CPU),
                "cold_runs": cold, "warm_runs": warm, "ansible_runs": ans, "seq_runs": seq,
                "seq_commands_per_run": seq_cmds,
                "seq_scaled": bool(args.seq_sample and args.seq_sample < n),
                "rss_mib": rss, "tracemalloc_peak_mib": tm_peak,
                "load": os.getloadavg()[0],
            }
            print(f"N={n:3d}  lab up {up_s:5.1f}s  node cpu {cpu:.2f}s  ours cold {fmt(r['cold'])}"
                  f" (our CPU {our_cpu:.2f}s + children {kids_cpu:.2f}s)"
                  f"  warm {fmt(r['warm'])} (our CPU {warm_cpu:.2f}s)  floor {fmt(r['floor'])}  seq-ssh {fmt(r['seq'])}"
                  f"{' (scaled from ' + str(args.seq_sample) + ' nodes)' if r['seq_scaled'] else ''}"
                  f" [{seq_cmds} ssh]  ansible {fmt(r['ansible'])}  RSS {rss:.0f} MiB  "
                  f"tracemalloc peak {tm_peak:.1f} MiB  load {r['load']:.1f}", flush=True)
        finally:
            cluster.down(lab_dir)
            shutil.rmtree(lab_dir, ignore_errors=True)
    one = rows.get(1) or rows[min(rows)]
    print("\nratios (medians):")
    for n, r in rows.items():
        # the floor: what any tool pays here, the larger of one round trip per node and the
        # facts scripts' CPU on the shared cores
        cpu_floor = n * r["node_cpu"] / os.cpu_count()
        floor = max(r["floor"], cpu_floor)
        line = (f"N={n:3d}  ours/floor {r['cold'] / floor:.2f} (floor max(transport "
                f"{r['floor']:.2f}s, node-cpu {cpu_floor:.2f}s))  our CPU/node "
                f"{r['our_cpu'] / n * 1000:.1f} ms (+ children {r['children_cpu'] / n * 1000:.1f} ms; "
                f"warm {r['our_cpu_warm'] / n * 1000:.1f} ms)  ours(N)/ours(1) cold "
                f"{r['cold'] / one['cold']:.2f}  warm {r['warm'] / one['warm']:.2f}")
        if r["seq"]:
            line += f"  ours/seq-ssh {r['cold'] / r['seq']:.3f}"
        if r["ansible"]:
            line += f"  ours/ansible {r['cold'] / r['ansible']:.3f}"
        print(line)
    print(f"\npeak RSS of this process: {rss_mib():.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
