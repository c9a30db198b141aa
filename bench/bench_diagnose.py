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

Where the wall time goes on this machine: next to our CPU, the CPU the lab spent during our cold
and warm runs, from /proc/PID/stat of the pids lab.json records (utime+stime, and cutime+cstime
for what they reaped), read before each run and again when diagnose returns (connections still
open): "sshd" is every node's sshd (the listener, each connection's [priv] process, the pre-auth
child it reaped, and the session process's own CPU); "node scripts" is what the session processes
ran and reaped (the facts script with everything it started, kubectl included) plus any other
process still alive under an sshd; "lab daemon" is the lab daemon's own CPU (its API emulator,
answering our snapshot and the nodes' kubectl, and its controller's periodic reconcile). Our CPU
excludes the time these readings take.

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
LAB_COLD: list[dict[str, float]] = []  # the lab's CPU during each cold run (LabCPU.delta)
LAB_WARM: list[dict[str, float]] = []  # ... each warm run
HZ = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[float, float, str] | None:
    """(own CPU, reaped children's CPU) in seconds and the command line of a live pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return None
    f = text[text.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / HZ, (int(f[13]) + int(f[14])) / HZ, cmd


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        pass
    return out


class LabCPU:
    """The CPU the lab's processes spent, by kind, from the pids lab.json records."""

    def __init__(self, lab_dir: str):
        info = json.loads((Path(lab_dir) / "lab.json").read_text())
        self.daemon = int(info["daemon_pid"])
        self.listeners = [int(n["sshd_pid"]) for n in info["nodes"] if n.get("sshd_pid")]

    def sample(self) -> dict[int, tuple[str, float, float]]:
        """pid -> (kind, own, reaped) of the daemon, the sshd listeners and all under them."""
        out: dict[int, tuple[str, float, float]] = {}
        d = _proc_stat(self.daemon)
        if d:
            out[self.daemon] = ("daemon", d[0], d[1])
        todo = list(self.listeners)
        while todo:
            pid = todo.pop()
            st = _proc_stat(pid)
            if st is None:
                continue
            own, reaped, cmd = st
            if not cmd.startswith("sshd"):
                kind = "other"  # a command still running under a session
            elif "@notty" in cmd or "@pts" in cmd:
                kind = "session"  # runs the commands: what it reaped are the node's scripts
            else:
                kind = "sshd"
            out[pid] = (kind, own, reaped)
            todo += _children(pid)
        return out

    @staticmethod
    def delta(a: dict[int, tuple[str, float, float]], b: dict[int, tuple[str, float, float]]
              ) -> dict[str, float]:
        """{"sshd", "node", "daemon"} seconds spent between samples a and b."""
        out = {"sshd": 0.0, "node": 0.0, "daemon": 0.0}
        for pid, (kind, own, reaped) in b.items():
            _k, own0, reaped0 = a.get(pid, (kind, 0.0, 0.0))
            d_own, d_reaped = own - own0, reaped - reaped0
            if kind == "daemon":
                out["daemon"] += d_own
            elif kind == "session":
                out["sshd"] += d_own
                out["node"] += d_reaped
            elif kind == "other":
                out["node"] += d_own + d_reaped
            else:
                out["sshd"] += d_own + d_reaped
        for pid, (_kind, own, reaped) in a.items():
            if pid not in b:  # gone (a connection closed): what it had is now in the reaped CPU
                out["sshd"] -= own + reaped  # of an sshd above it, and was counted before
        return out


def lab_cpu_fields(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: median([r[k] for r in runs]) for k in ("sshd", "node", "daemon")}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def ours_cold(lab_dir: str, nodes: list[dict], lab: LabCPU | None = None) -> float:
    before = lab.sample() if lab else {}
    c0 = time.process_time()
    k0 = children_cpu()
    t0 = time.perf_counter()
    rt = build_runtime(lab_dir=lab_dir)
    sampling = 0.0
    try:
        diag = diagnose(rt.api, rt.shells)
        dt = time.perf_counter() - t0
        if lab:  # the sessions are still open: their reaped children are the node's scripts
            s0 = time.process_time()
            LAB_COLD.append(LabCPU.delta(before, lab.sample()))
            sampling = time.process_time() - s0
    finally:
        rt.close()
    CPU.append(time.process_time() - c0 - sampling)
    KIDS.append(children_cpu() - k0)
    check(diag, nodes)
    return dt


def ours_warm(rt, nodes: list[dict], lab: LabCPU | None = None) -> float:
    before = lab.sample() if lab else {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    diag = diagnose(rt.api, rt.shells)
    dt = time.perf_counter() - t0
    WARM_CPU.append(time.process_time() - c0)
    if lab:
        LAB_WARM.append(LabCPU.delta(before, lab.sample()))
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


def node_cpu(lab_dir: str, node: str, peers: list[str], probes: list[str] = ()) -> float:
    """CPU seconds (user+sys of the script and its children) of one facts script on a node: the
    script diagnose() sends it (its peers, its VXLAN probes, its own name), median of 3 runs."""
    rt = build_runtime(lab_dir=lab_dir)
    runs = []
    try:
        for _ in range(3):
            script = F.build_facts_script(peers, vxlan_probes=probes, node_name=node)
            res = rt.shells(node).run(f"sh -c {shlex.quote(script)} >/dev/null 2>&1; times")
            # `times`: shell user/sys, then children user/sys
            vals = re.findall(r"(\d+)m([\d.]+)s", res.stdout)
            runs.append(sum(int(m) * 60 + float(s) for m, s in vals))
    finally:
        rt.close()
    return statistics.median(runs)


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
            from clusterfix_tui.core.checks.underlay import probe_targets

            first = nodes[0]["name"]
            cpu = node_cpu(lab_dir, first, peers[first], probe_targets(snap, first))
            ours_cold(lab_dir, nodes)  # warm-up: first TLS, module-level caches
            tracemalloc.start()
            ours_cold(lab_dir, nodes)
            tm_peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            CPU.clear()
            KIDS.clear()
            LAB_COLD.clear()
            LAB_WARM.clear()
            labcpu = LabCPU(lab_dir)
            cold = [ours_cold(lab_dir, nodes, labcpu) for _ in range(args.runs)]
            our_cpu, kids_cpu = median(CPU), median(KIDS)
            rt = build_runtime(lab_dir=lab_dir)
            ours_warm(rt, nodes)  # opens the connections
            WARM_CPU.clear()
            warm = [ours_warm(rt, nodes, labcpu) for _ in range(args.runs)]
            warm_cpu = median(WARM_CPU)
            rt.close()
            lab_cold, lab_warm = lab_cpu_fields(LAB_COLD), lab_cpu_fields(LAB_WARM)
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
                "lab_cpu_cold": lab_cold, "lab_cpu_warm": lab_warm,
                "lab_cpu_cold_runs": list(LAB_COLD), "lab_cpu_warm_runs": list(LAB_WARM),
            }
            print(f"N={n:3d}  lab up {up_s:5.1f}s  node cpu {cpu:.2f}s  ours cold {fmt(r['cold'])}"
                  f" (our CPU {our_cpu:.2f}s + children {kids_cpu:.2f}s)"
                  f"  warm {fmt(r['warm'])} (our CPU {warm_cpu:.2f}s)  floor {fmt(r['floor'])}  seq-ssh {fmt(r['seq'])}"
                  f"{' (scaled from ' + str(args.seq_sample) + ' nodes)' if r['seq_scaled'] else ''}"
                  f" [{seq_cmds} ssh]  ansible {fmt(r['ansible'])}  RSS {rss:.0f} MiB  "
                  f"tracemalloc peak {tm_peak:.1f} MiB  load {r['load']:.1f}", flush=True)
            for label, lc, ours, w in (("cold", lab_cold, our_cpu + kids_cpu, r["cold"]),
                                       ("warm", lab_warm, warm_cpu, r["warm"])):
                print(f"       {label}: wall {w:.3f}s; CPU: ours {ours:.2f}s  node scripts "
                      f"{lc['node']:.2f}s  sshd {lc['sshd']:.2f}s  lab daemon (API emulator) "
                      f"{lc['daemon']:.2f}s  sum {ours + sum(lc.values()):.2f}s = "
                      f"{(ours + sum(lc.values())) / (os.cpu_count() or 1):.2f}s on "
                      f"{os.cpu_count()} cores", flush=True)
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
    print("\nCPU during ours, seconds (medians): ours (+ children) | node scripts | sshd | "
          "lab daemon (API emulator) | all / cores, against the wall time")
    cores = os.cpu_count() or 1
    for n, r in rows.items():
        for label in ("cold", "warm"):
            lc = r[f"lab_cpu_{label}"]
            ours = r["our_cpu"] + r["children_cpu"] if label == "cold" else r["our_cpu_warm"]
            total = ours + sum(lc.values())
            print(f"N={n:3d} {label}  ours {ours:6.2f}  node {lc['node']:6.2f}  sshd "
                  f"{lc['sshd']:6.2f}  daemon {lc['daemon']:6.2f}  all/cores {total / cores:6.2f}"
                  f"  wall {r[label]:6.2f}")
    print(f"\npeak RSS of this process: {rss_mib():.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
