#!/usr/bin/env python3
"""Benchmark: the CPU one facts script costs ON A NODE (issue #17 item 2), old against new.

"old" is the script as it was before the node-CPU pass (tests/facts_script_v1.py, kept verbatim);
"new" is core/facts.py's. Both ask for the same facts (tests/test_facts_same.py compares them).
Each run executes the script inside a lab node (its mount, UTS and network namespaces, as its
sshd does; no SSH in the figure), `sh FILE` as the loader runs it, and reads the CPU (user +
sys) of the script and every process it started from getrusage (microseconds). With --at-once K,
K copies run at the same time on the node (what N nodes of a lab on the same cores do): the CPU
per copy. Peers are the route lookups (`ip -j route get`)
one node makes, one per peer node: the first is the real pod IP of each other lab node, the rest
synthetic addresses inside the other nodes' podCIDRs (they route like real pods' addresses).
The VXLAN probes are the lab's (every peer's flannel.1, at most 8, as diagnose() sends them).

Prints, per peer count: median CPU of old and new over --runs runs (alternated), the ratio, and
the load average. --profile also prints where one script's CPU goes, part by part (the label of
each part is core/facts.script_parts'), as the mean over --profile-runs runs (`times` counts in
10 ms ticks: one run says little, the mean over many does).

Not part of the test suite. Run as root (the lab needs network namespaces):

    python3 bench/bench_node_cpu.py --peers 1,30,100 --runs 7 --profile
    python3 bench/bench_node_cpu.py --peers 1 --at-once 1,10,30   # the same script, K at once
    python3 bench/bench_node_cpu.py --lab-dir /tmp/some-lab     # an existing lab, left up
    python3 bench/bench_node_cpu.py --old-code /path/to/other/checkout   # "old" = its facts.py
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.checks.underlay import probe_targets
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.lab import cluster
from clusterfix_tui.lab import nodes as N

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
try:
    import facts_script_v1 as OLD  # the script before the node-CPU pass
except ImportError:  # pragma: no cover - a checkout without tests/
    OLD = None

TIMES = re.compile(r"(\d+)m([\d.]+)s")


def _secs(text: str) -> list[float]:
    return [int(m) * 60 + float(s) for m, s in TIMES.findall(text)]


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# run inside the node: the script (stdin) K times at once, `sh FILE` each (as the loader runs it);
# prints the CPU seconds per run (getrusage of the children: microseconds, not `times`' 10 ms
# ticks), then the first run's stdout
_RUNNER = r"""
import os, resource, subprocess, sys, tempfile
k = int(sys.argv[1])
fd, path = tempfile.mkstemp(prefix="cfx-bench-")
os.write(fd, sys.stdin.buffer.read()); os.close(fd)
outs = [tempfile.TemporaryFile() for _ in range(k)]
a = resource.getrusage(resource.RUSAGE_CHILDREN)
ps = [subprocess.Popen(["sh", path], stdin=subprocess.DEVNULL, stdout=o, stderr=subprocess.DEVNULL)
      for o in outs]
for p in ps:
    p.wait()
b = resource.getrusage(resource.RUSAGE_CHILDREN)
os.unlink(path)
cpu = (b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime) / k
outs[0].seek(0)
sys.stdout.write(f"{cpu:.6f}\n" + outs[0].read().decode("utf-8", "replace"))
"""


def run_on_node(init_pid: int, script: str, at_once: int = 1) -> tuple[float, str]:
    """CPU seconds (user + sys of the script and every process it started) per run, with
    `at_once` copies of the script running at the same time on the node, and one run's stdout."""
    r = N.node_exec(init_pid, "exec python3 -c " + shlex.quote(_RUNNER) + f" {int(at_once)}",
                    input=script, timeout=600)
    cpu, out = r.stdout.split("\n", 1)
    return float(cpu), out


def peer_addresses(lab: cluster.LabHandle, me: str, count: int) -> tuple[list[str], list[str]]:
    """`count` addresses the node would look up: each other node's first pod IP, then synthetic
    hosts inside the other nodes' podCIDRs (round robin)."""
    from clusterfix_tui.runtime import build_runtime

    with build_runtime(lab_dir=str(lab.dir)) as rt:
        snap = build_snapshot(rt.api)
    real = [ip for n, ips in sorted(snap.pod_ips_by_node().items()) if n != me for ip in sorted(ips)[:1]]
    cidrs = [ipaddress.ip_network(i.pod_cidr) for n, i in sorted(snap.nodes.items())
             if n != me and getattr(i, "pod_cidr", None)]
    out = list(real[:count])
    for host in range(254, 1, -1):  # distinct hosts of the peers' podCIDRs (they route like pods)
        for net in cidrs:
            addr = str(net.network_address + host)
            if len(out) < count and addr not in out and ipaddress.ip_address(addr) in net:
                out.append(addr)
    if len(out) < count:
        raise SystemExit(f"{count} peers: the other nodes' podCIDRs hold only {len(out)} hosts "
                         "(a bigger lab, or fewer peers)")
    return out, probe_targets(snap, me)


def profile(init_pid: int, parts: list[tuple[str, str]], runs: int) -> list[tuple[str, float]]:
    """Mean CPU per part: `times` (the shell and its children) after each part. The background
    work is waited for where it starts, so its CPU lands on its own line: the node's kubectl
    (started in the prelude) and the VXLAN probes (pings)."""
    mark = 'cfx_T() { times >>"$T/../cfx-prof-$N"; echo "@@T $1" >>"$T/../cfx-prof-$N"; }'
    body = [parts[0][1], mark, "cfx_T prelude"]
    if "kubectl get nodes" in parts[0][1]:
        body += ['[ -n "$cfx_kpid" ] && wait "$cfx_kpid"', "cfx_T 'kubectl get nodes (background)'"]
    for label, text in parts[1:]:
        body.append(text)
        if label == "vxlan_probe start":
            # (the probes' jobs only where the script says which: its watchdog is a job too)
            body += ["if command -v cfx_waitbg >/dev/null 2>&1; then cfx_waitbg; else wait; fi",
                     "cfx_T 'vxlan probes (background pings)'"]
        else:
            body.append(f"cfx_T {shlex.quote(label)}")
    # the sections' watchdog (one subshell and a `sleep 1` a second), where the script has one
    body += ["if command -v cfx_wdstop >/dev/null 2>&1; then cfx_wdstop; fi", "cfx_T 'section watchdog'"]
    script = "\n".join(body)
    nonce = F.script_nonce(script)
    acc: dict[str, list[float]] = {}
    for _ in range(runs):
        wrapper = (f'rm -f /tmp/cfx-prof-{nonce}; sh -c {shlex.quote(script)} >/dev/null 2>&1 </dev/null; '
                   f'cat /tmp/cfx-prof-{nonce}; rm -f /tmp/cfx-prof-{nonce}')
        out = N.node_exec(init_pid, wrapper, timeout=300).stdout
        last = 0.0
        for chunk, label in re.findall(r"((?:.*\n){2})@@T (.*)\n", out):
            tot = sum(_secs(chunk))
            acc.setdefault(label, []).append(tot - last)
            last = tot
    return [(k, statistics.mean(v)) for k, v in acc.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default="1,30,100")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--nodes", type=int, default=3, help="lab size when the bench brings one up")
    ap.add_argument("--lab-dir", default=None, help="use this running lab (left up)")
    ap.add_argument("--node", default="node-1")
    ap.add_argument("--at-once", default="1",
                    help="how many copies of the script run at the same time on the node (CPU per "
                         "copy; several: 1,10,30)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-runs", type=int, default=20)
    ap.add_argument("--old-code", default=None,
                    help="a checkout whose clusterfix_tui/core/facts.py is \"old\" (default: "
                         "tests/facts_script_v1.py)")
    args = ap.parse_args()
    global OLD
    if args.old_code:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "cfx_old_facts", Path(args.old_code) / "clusterfix_tui" / "core" / "facts.py")
        assert spec is not None and spec.loader is not None
        OLD = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = OLD  # (its dataclasses look their module up)
        spec.loader.exec_module(OLD)
    if os.geteuid() != 0:
        raise SystemExit("run as root (the lab needs network namespaces)")
    own = args.lab_dir is None
    lab_dir = args.lab_dir or tempfile.mkdtemp(prefix="cfx-nodecpu-")
    lab = cluster.up(lab_dir, nodes=args.nodes, faults="none") if own else cluster.LabHandle(lab_dir)
    try:
        pid = lab.node(args.node)["init_pid"]
        counts = [int(x) for x in args.peers.split(",") if x]
        print(f"node {args.node} of a {len(lab.nodes)}-node lab; load {load()}; runs {args.runs}")
        print(f"{'peers':>5} {'at once':>7} {'old cpu':>9} {'new cpu':>9} {'new/old':>7}  load")
        for count in counts:
            peers, probes = peer_addresses(lab, args.node, count)
            for k in [int(x) for x in args.at_once.split(",") if x]:
                res: dict[str, list[float]] = {"old": [], "new": []}
                for _ in range(args.runs):
                    for tag, mod in (("old", OLD), ("new", F)):
                        if mod is None:
                            continue
                        nonce = F.new_nonce()
                        cpu, out = run_on_node(pid, mod.build_facts_script(peers, nonce=nonce,
                                                                           vxlan_probes=probes), k)
                        facts = F.parse_facts(args.node, out, nonce)
                        if not facts.complete or len(facts.route_get) != len(peers):
                            raise SystemExit(f"{tag}: incomplete facts ({facts.parse_errors[:3]})")
                        res[tag].append(cpu)
                old = statistics.median(res["old"]) if res["old"] else float("nan")
                new = statistics.median(res["new"])
                print(f"{count:5d} {k:7d} {old:8.4f}s {new:8.4f}s {new / old:7.2f}  {load()}   "
                      f"(old {sorted(round(x, 3) for x in res['old'])}, "
                      f"new {sorted(round(x, 3) for x in res['new'])})", flush=True)
        if args.profile:
            peers, probes = peer_addresses(lab, args.node, counts[0] if counts else 2)
            for tag, mod in (("old", OLD), ("new", F)):
                if mod is None:
                    continue
                parts = mod.script_parts(peers, None, (), probes)
                rows = profile(pid, parts, args.profile_runs)
                total = sum(v for _k, v in rows)
                print(f"\n{tag}: CPU per part, mean of {args.profile_runs} runs, {len(peers)} peers, "
                      f"{len(probes)} probes (total {total * 1000:.0f} ms; load {load()})")
                for k, v in sorted(rows, key=lambda kv: -kv[1]):
                    if v >= 0.0005:
                        print(f"  {v * 1000:7.1f} ms  {k}")
    finally:
        if own:
            cluster.down(lab_dir)


if __name__ == "__main__":
    main()
