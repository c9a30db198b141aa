#!/usr/bin/env python3
"""Benchmark: what the lab's API emulator (clusterfix_tui/lab/api.py) costs per request (#17).

In an N-node lab run the N nodes' `kubectl` requests and our snapshot's list calls are served by
the lab's Python emulator on the same cores as everything else (on a real cluster the API server
runs elsewhere). This bench measures that cost apart: a LabAPI in this process (TLS, bearer
tokens, as the lab runs it) holding a copy of a running lab's objects (nodes, pods, services,
endpoints, daemonsets, ...), replicated and renamed up to --nodes nodes; then

- node request: one `kubectl get --raw /api/v1/nodes?fieldSelector=metadata.name=NODE` per node
  (the facts script's, each its own process and TLS connection), 16 at a time;
- snapshot: our build_snapshot() over the official client (its list calls, pod logs).

Prints the emulator's own CPU (its loop thread's CPU clock: nothing of the clients) per request
and per snapshot, medians of --runs, with the load. --profile prints the loop thread's top
functions by CPU (yappi, cpu clock) over the runs.

    python3 bench/bench_lab_api.py --lab-dir /tmp/some-lab --nodes 30,100 --runs 5 [--profile]
"""

from __future__ import annotations

import argparse
import copy
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from clusterfix_tui.lab import cluster
from clusterfix_tui.lab.api import LabAPI

KINDS = ("v1/nodes", "v1/namespaces", "v1/pods", "v1/services", "v1/endpoints", "v1/configmaps",
         "v1/serviceaccounts", "apps/v1/daemonsets", "apps/v1/deployments", "apps/v1/replicasets")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def lab_objects(lab_dir: str) -> dict[str, list[dict[str, Any]]]:
    import json

    kubeconfig = str(Path(lab_dir) / "kubeconfig")
    out = {}
    for kind in KINDS:
        group, _, plural = kind.rpartition("/")
        path = f"/api/{group}/{plural}" if "/" not in group else f"/apis/{group}/{plural}"
        r = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "get", "--raw", path],
                           capture_output=True, text=True, check=True, timeout=60)
        out[kind] = json.loads(r.stdout)["items"]
    return out


def replicate(objs: dict[str, list[dict[str, Any]]], nodes: int) -> dict[str, list[dict[str, Any]]]:
    """The lab's objects, nodes beyond the lab's own copied from them round robin (renamed, with
    their pods)."""
    base = sorted(o["metadata"]["name"] for o in objs["v1/nodes"])
    out = {k: [copy.deepcopy(o) for o in v] for k, v in objs.items()}
    by_name = {o["metadata"]["name"]: o for o in objs["v1/nodes"]}
    for i in range(len(base) + 1, nodes + 1):
        src = base[(i - 1) % len(base)]
        name = f"node-{i}"
        node = copy.deepcopy(by_name[src])
        node["metadata"]["name"] = name
        node["metadata"].setdefault("labels", {})["kubernetes.io/hostname"] = name
        out["v1/nodes"].append(node)
        for pod in objs["v1/pods"]:
            if (pod.get("spec") or {}).get("nodeName") == src:
                p = copy.deepcopy(pod)
                p["metadata"]["name"] = f"{pod['metadata']['name']}-{name}"
                p["spec"]["nodeName"] = name
                out["v1/pods"].append(p)
    return out


def thread_cpu(api: LabAPI) -> float:
    assert api._thread is not None and api._thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(api._thread.ident))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-dir", required=True, help="a running lab whose objects are copied")
    ap.add_argument("--nodes", default="30,100")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    lab = cluster.LabHandle(args.lab_dir)
    objs = lab_objects(str(lab.dir))
    print(f"objects of {args.lab_dir}: " + ", ".join(f"{k.rsplit('/', 1)[1]} {len(v)}" for k, v in objs.items())
          + f"; load {load()}")
    for count in [int(x) for x in args.nodes.split(",") if x]:
        token = secrets.token_hex(16)
        with tempfile.TemporaryDirectory(prefix="cfx-apibench-") as tmp:
            api = LabAPI(tokens=[token], tls=True, state_dir=tmp)
            api.start()
            try:
                for kind, items in replicate(objs, count).items():
                    for o in items:
                        meta = o["metadata"]
                        o = {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
                        api.put(kind, meta.get("namespace"), meta["name"], o)
                kubeconfig = str(Path(tmp) / "kubeconfig")
                api.write_kubeconfig(kubeconfig, token)
                names = [f"node-{i}" for i in range(1, count + 1)]
                if args.profile:
                    import yappi

                    yappi.set_clock_type("cpu")
                    yappi.start(builtins=False, profile_threads=True)
                req, snap = [], []
                for _ in range(args.runs):
                    c0 = thread_cpu(api)
                    bad = 0
                    for k in range(0, count, 16):  # 16 at a time (a 2-core machine: no handshake timeouts)
                        procs = [subprocess.Popen(
                            ["kubectl", "--kubeconfig", kubeconfig, "get", "--raw",
                             "/api/v1/nodes?fieldSelector=" + urllib.parse.quote(f"metadata.name={n}", safe=""),
                             "--request-timeout=20s"], stdout=subprocess.DEVNULL) for n in names[k:k + 16]]
                        bad += sum(1 for p in procs if p.wait() != 0)
                    if bad:
                        raise SystemExit(f"{bad} kubectl requests failed")
                    req.append((thread_cpu(api) - c0) / count)
                    from clusterfix_tui.core.snapshot import build_snapshot
                    from clusterfix_tui.transports.kube import KubeClusterAPI

                    kapi = KubeClusterAPI(kubeconfig)
                    c0 = thread_cpu(api)
                    s = build_snapshot(kapi)
                    snap.append(thread_cpu(api) - c0)
                    if len(s.nodes) != count:
                        raise SystemExit(f"snapshot saw {len(s.nodes)} nodes, not {count}")
                print(f"{count:4d} nodes: emulator CPU per node request {statistics.median(req) * 1000:6.2f} ms "
                      f"(x{count}: {statistics.median(req) * count:.3f} s), per snapshot "
                      f"{statistics.median(snap) * 1000:6.1f} ms ({statistics.median(snap) / count * 1000:.2f} ms "
                      f"a node); medians of {args.runs}; load {load()}")
                if args.profile:
                    yappi.stop()
                    th = api._thread
                    assert th is not None
                    ctx = [t.id for t in yappi.get_thread_stats() if t.tid in (th.ident, th.native_id)]
                    stats = yappi.get_func_stats(filter={"ctx_id": ctx[0]}) if ctx else yappi.get_func_stats()
                    rows = sorted(((f.ttot, f.tsub, f.ncall, f"{f.name} {Path(f.module).name}:{f.lineno}")
                                   for f in stats), reverse=True)
                    print(f"  profile (yappi, cpu clock, the loop thread{'' if ctx else ' NOT FOUND: all threads'}):")
                    for ttot, tsub, ncall, name in rows[:45]:
                        print(f"    {ttot * 1000:8.1f} ms tot {tsub * 1000:8.1f} ms own {ncall:7d}x  {name[-100:]}")
                    yappi.clear_stats()
            finally:
                api.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
