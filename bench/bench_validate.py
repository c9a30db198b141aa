#!/usr/bin/env python3
"""Benchmark: `clusterfix-tui validate` on a big lab, with the workstation cut off from NodePorts
and not, and the lab's own bring-up and teardown at that size.

For each N in --nodes (one lab at a time, in <lab-root>/val100-bench-N):
  lab up      `python3 -m clusterfix_tui lab up --nodes N` (a subprocess): wall, CPU of it and the
              daemon it starts (its own CPU from /proc), then the lab's processes (daemon + every
              pid in its namespaces) and their summed RSS
  validate    `python3 -m clusterfix_tui validate --json --lab-dir D` (a subprocess, as a user
              runs it): wall, its CPU (user+sys of the child), the time its first result and its
              nodeport-path line were printed, the number of NodePort probes from here and from
              a node, the nodeport-scope / nodeport-path lines, checks passed/failed. Blocked =
              `lab.workstation.block_nodeports` (every node drops tcp 30000-32767 from this
              machine); open = the undo. --runs runs each, medians.
  lab down    wall; then `ip netns list` must hold none of the lab's namespaces and none of its
              recorded pids may run (a leak is printed as LEAK and the exit code is 1)
--cycles K repeats up/down K times per N before the validate runs (reliability).
Load averages are printed on every line: on a shared machine wall time is not CPU time.

Not part of the test suite. Run as root:

    python3 bench/bench_validate.py --nodes 30,100 --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from clusterfix_tui.lab import cluster, workstation
from clusterfix_tui.lab import nodes as N

CLK = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> float:
    """utime+stime of a running process and its waited-for children (/proc/PID/stat)."""
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in f[11:15]) / CLK
    except OSError:
        return 0.0


def rss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def lab_pids(info: dict) -> list[int]:
    pids = {info["daemon_pid"]}
    for ns in [n["netns"] for n in info["nodes"]] + list(info.get("pod_netns") or []):
        pids.update(N.netns_pids(ns))
    return sorted(p for p in pids if N.pid_alive(p))


def recorded_pids(info: dict) -> list[int]:
    out = [info.get("daemon_pid")]
    for n in info.get("nodes") or []:
        out += [n.get("init_pid"), n.get("sshd_pid")] + [p.get("pid") for p in n.get("pods") or []]
    return [p for p in out if p]


def lab_up(d: Path, n: int) -> dict:
    t0, c0 = time.monotonic(), children_cpu()
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "lab", "up", "--nodes", str(n),
                        "--dir", str(d)], capture_output=True, text=True)
    wall, cpu = time.monotonic() - t0, children_cpu() - c0
    if r.returncode != 0:
        return {"ok": False, "wall": wall, "error": (r.stderr or r.stdout)[-3000:]}
    info = cluster.LabHandle(d).info
    pids = lab_pids(info)
    return {"ok": True, "wall": wall, "cpu": cpu, "daemon_cpu": proc_cpu(info["daemon_pid"]),
            "ready_seconds": info.get("ready_seconds"), "procs": len(pids),
            "rss_mib": sum(rss_kib(p) for p in pids) / 1024,
            "daemon_rss_mib": rss_kib(info["daemon_pid"]) / 1024, "info": info}


def lab_down(d: Path, info: dict) -> dict:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "lab", "down", "--dir", str(d)],
                       capture_output=True, text=True)
    wall = time.monotonic() - t0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    ours = {n["netns"] for n in info["nodes"]} | set(info.get("pod_netns") or [])
    left_ns = sorted(ours & set(listed))
    left_pids = [p for p in recorded_pids(info) if N.pid_alive(p)]
    left_links = [v for v in [n.get("veth") for n in info["nodes"]] + [info["bridge"]["name"]]
                  if v and N.link_exists(v)]
    return {"ok": r.returncode == 0 and not left_ns and not left_pids and not left_links,
            "wall": wall, "left_netns": left_ns, "left_pids": left_pids, "left_links": left_links,
            "out": (r.stdout + r.stderr).strip()[-500:]}


def lab_cpu(info: dict) -> tuple[float, float]:
    """(the lab daemon's CPU: the API emulator and controller, the nodes' sshd CPU with every
    session and command they ran and reaped) so far."""
    return (proc_cpu(info["daemon_pid"]),
            sum(proc_cpu(n["sshd_pid"]) for n in info["nodes"] if n.get("sshd_pid")))


def validate(d: Path, info: dict, timeout: float = 300) -> dict:
    """One `validate --json` run; the progress lines on stderr are timed as they come."""
    l0 = lab_cpu(info)
    t0, c0 = time.monotonic(), children_cpu()
    p = subprocess.Popen([sys.executable, "-m", "clusterfix_tui", "validate", "--json", "--lab-dir",
                          str(d)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}
    lines: list[str] = []

    def read_err() -> None:
        for line in p.stderr:  # type: ignore[union-attr]
            lines.append(line)
            t = time.monotonic() - t0
            marks.setdefault("first result", t)
            if "nodeport-path" in line:
                marks.setdefault("nodeport-path", t)
            if " nodeport " in line:
                marks.setdefault("first nodeport", t)
                marks["last nodeport"] = t

    # stderr in a thread, stdout here (communicate() would read stderr too: a race that hangs)
    th = threading.Thread(target=read_err, daemon=True)
    th.start()
    out = p.stdout.read()  # type: ignore[union-attr]
    p.wait(timeout)
    th.join(5)
    wall, cpu = time.monotonic() - t0, children_cpu() - c0
    time.sleep(0.5)  # the nodes' sessions end and are reaped
    l1 = lab_cpu(info)
    daemon_cpu, nodes_cpu = l1[0] - l0[0], l1[1] - l0[1]
    try:
        doc = json.loads(out)
    except ValueError:
        return {"ok": False, "wall": wall, "cpu": cpu, "rc": p.returncode,
                "error": "".join(lines)[-2000:]}
    res = doc["results"]
    nodeport = [r for r in res if r["name"] == "nodeport" and r["target"] != "cluster"]
    from_node = [r for r in nodeport if re.search(r" from node-\S+: ", r["detail"])]
    here = len(nodeport) - len(from_node)
    path = [r["detail"] for r in res if r["name"] == "nodeport-path"]
    m = re.search(r"none of (\d+) answered from here", path[0]) if path else None
    canary = int(m.group(1)) if m else 0
    return {"ok": True, "rc": p.returncode, "wall": wall, "cpu": cpu, "marks": marks,
            "daemon_cpu": daemon_cpu, "nodes_cpu": nodes_cpu,
            "checks": len(res), "failed": sum(not r["passed"] for r in res),
            "failed_names": sorted({r["name"] for r in res if not r["passed"]}),
            "failures": [f"{r['name']} {r['target']}: {r['detail'][:200]}"
                         for r in res if not r["passed"]],
            "probes_here": here + canary, "probes_here_tcp_max": canary,
            "probes_node": len(from_node), "nodeport_ok": sum(r["passed"] for r in nodeport),
            "scope": [r["detail"] for r in res if r["name"] == "nodeport-scope"], "path": path,
            "late": sum("deadline" in r["detail"] and "passed" in r["detail"] for r in res)}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="30,100", help="comma-separated lab sizes")
    ap.add_argument("--runs", type=int, default=2, help="validate runs per case")
    ap.add_argument("--cycles", type=int, default=1, help="lab up/down cycles per size")
    ap.add_argument("--lab-root", default="/tmp")
    ap.add_argument("--cases", default="open,blocked", help="comma-separated: open, blocked (default: both of them)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (the lab)", file=sys.stderr)
        return 2
    print(f"# bench_validate  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  "
          f"cores={os.cpu_count()}  load={load()}", flush=True)
    failures = 0
    report: list[dict] = []
    for n in [int(x) for x in args.nodes.split(",") if x.strip()]:
        d = Path(args.lab_root) / f"val100-bench-{n}"
        ups: list[dict] = []
        for cycle in range(args.cycles):
            up = lab_up(d, n)
            ups.append(up)
            if not up["ok"]:
                failures += 1
                print(f"N={n} cycle {cycle + 1}: lab up FAILED after {up['wall']:.1f}s load={load()}"
                      f"\n{up['error']}", flush=True)
                break
            print(f"N={n} cycle {cycle + 1}: lab up {up['wall']:.1f}s wall (daemon ready "
                  f"{up['ready_seconds']}s), CPU {up['cpu']:.1f}s (lab up) + {up['daemon_cpu']:.1f}s "
                  f"(daemon); {up['procs']} processes, RSS {up['rss_mib']:.0f} MiB (daemon "
                  f"{up['daemon_rss_mib']:.0f} MiB)  load={load()}", flush=True)
            if cycle + 1 < args.cycles:
                dn = lab_down(d, up["info"])
                failures += not dn["ok"]
                print(f"N={n} cycle {cycle + 1}: lab down {dn['wall']:.1f}s "
                      + ("clean" if dn["ok"] else f"LEAK netns={dn['left_netns']} pids="
                         f"{dn['left_pids']} links={dn['left_links']} {dn['out']}")
                      + f"  load={load()}", flush=True)
        if not ups or not ups[-1]["ok"]:
            continue
        info = ups[-1]["info"]
        handle = cluster.LabHandle(d)
        try:
            for case in [c for c in args.cases.split(",") if c]:
                if case == "blocked":
                    t0 = time.monotonic()
                    rec = workstation.block_nodeports(handle)
                    print(f"N={n}: workstation blocked from NodePorts in {time.monotonic() - t0:.1f}s "
                          f"(physical={rec['physical']})", flush=True)
                runs = [validate(d, info) for _ in range(args.runs)]
                for i, v in enumerate(runs):
                    if not v["ok"]:
                        failures += 1
                        print(f"N={n} {case} run {i + 1}: validate FAILED rc={v['rc']} "
                              f"{v['wall']:.1f}s\n{v['error']}", flush=True)
                        continue
                    mk = " ".join(f"{k}@{t:.1f}s" for k, t in v["marks"].items())
                    print(f"N={n} {case} run {i + 1}: wall {v['wall']:.1f}s CPU {v['cpu']:.2f}s "
                          f"(lab API/daemon {v['daemon_cpu']:.2f}s, nodes {v['nodes_cpu']:.2f}s) "
                          f"rc={v['rc']} checks={v['checks']} failed={v['failed']} "
                          f"{v['failed_names']} probes here={v['probes_here']} (+<= "
                          f"{v['probes_here_tcp_max']} tcp) from-node={v['probes_node']} "
                          f"nodeport ok={v['nodeport_ok']} late={v['late']} [{mk}] load={load()}",
                          flush=True)
                    for line in v["scope"] + v["path"]:
                        print(f"    {line}")
                    for line in v["failures"][:5]:
                        print(f"    FAILED {line}")
                good = [v for v in runs if v["ok"]]
                print(f"N={n} {case}: median wall {med([v['wall'] for v in good]):.1f}s, CPU "
                      f"{med([v['cpu'] for v in good]):.2f}s over {len(good)} runs", flush=True)
                report.append({"nodes": n, "case": case, "runs": runs,
                               "up": {k: v for k, v in ups[-1].items() if k != "info"}})
                if case == "blocked":
                    workstation.open_nodeports(handle)
        finally:
            dn = lab_down(d, info)
            failures += not dn["ok"]
            print(f"N={n}: lab down {dn['wall']:.1f}s "
                  + ("clean (no namespace, pid or link left)" if dn["ok"] else
                     f"LEAK netns={dn['left_netns']} pids={dn['left_pids']} "
                     f"links={dn['left_links']} {dn['out']}") + f"  load={load()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
