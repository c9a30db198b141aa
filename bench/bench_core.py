#!/usr/bin/env python3
"""Benchmark: the pure core (parse + checks + grouping + plans) at 1,000 and 5,000 nodes, and a
35,000-rule kube-proxy nat table in both iptables backends (a stale copy in the other one).

No lab, no network: everything is built from the recorded node outputs in tests/data/lab (real
facts-script output of lab nodes), replicated and renamed.

  cluster N   an N-node cluster: the API objects of the recorded healthy lab (nodes, kube-proxy
              and flannel pods) replicated N times and renamed node-1..node-N; every node's facts
              output is one recorded node output (cycling through every recorded scenario, so
              ~2/3 of the nodes carry one of the recorded faults), its hostname renamed. Timed:
              build_snapshot, parse_facts of every node, run_checks, group_findings, every step's
              plan(), the --json dict; the parse and the checks under the collector policy
              diagnose() applies (core.diagnose.facts_kept_frozen: no automatic full
              collection while the facts are read and checked, one at the end). Wall time
              and CPU time per phase. flannel's backend is host-gw here: the vxlan peer checks
              compare every node with every peer, and a node's flannel tables hold one entry per
              peer, so their INPUT is N^2 by nature (25 million fdb entries at 5,000 nodes); they
              are measured on their own by `mesh`.
  mesh N      the flannel vxlan peer checks on N nodes whose route/fdb/neigh tables hold every
              peer (N-1 entries each, one node's VTEP stale everywhere): the cost per table entry
              must stay flat as N grows.
  table R     an iptables-save nat table of R rules shaped like kube-proxy's (services with 3
              endpoints, comments with spaces and quotes, NodePorts), given to a node as the live
              nft table AND as a stale legacy copy: parse per backend, and the iptables checks.

Prints figures only (nothing is asserted):

    python3 bench/bench_core.py --nodes 1000,5000 --mesh 100,200,400 --rules 35000 --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from diag_fakes import LAB_NONCE, ReplayAPI, load, scenarios  # noqa: E402

from clusterfix_tui.core import parsers as P  # noqa: E402
from clusterfix_tui.core.checks import iptables as iptables_checks  # noqa: E402
from clusterfix_tui.core.checks import run_checks  # noqa: E402
from clusterfix_tui.core.checks.flannel import check as flannel_check  # noqa: E402
from clusterfix_tui.core.diagnose import Diagnosis  # noqa: E402

try:  # the collector's bulk-phase policy, as diagnose() applies it
    from clusterfix_tui.core.diagnose import facts_kept_frozen  # noqa: E402
except ImportError:  # before it existed: no policy
    import contextlib

    @contextlib.contextmanager  # type: ignore[no-redef]
    def facts_kept_frozen() -> Any:
        yield lambda: None
from clusterfix_tui.core.facts import parse_facts  # noqa: E402
from clusterfix_tui.core.fixes import all_steps  # noqa: E402
from clusterfix_tui.core.shape import detect_shape  # noqa: E402
from clusterfix_tui.core.snapshot import ClusterSnapshot, build_snapshot  # noqa: E402

try:
    from clusterfix_tui.core.group import group_findings  # noqa: E402
except ImportError:  # before the grouping module existed
    group_findings = None  # type: ignore[assignment]


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# -- cluster N ---------------------------------------------------------------------------------


def _rename(obj: Any, old: str, new: str) -> Any:
    return json.loads(json.dumps(obj).replace(f'"{old}"', f'"{new}"'))


def synthetic_cluster(n: int, backend: str = "host-gw") -> tuple[dict[str, Any], dict[str, str]]:
    """(API recording, node -> facts output) of an n-node cluster built from the recordings."""
    base = load("healthy")
    rec = dict(base)
    cfg = json.loads(json.dumps(base["configmaps"]))
    key = "kube-flannel/kube-flannel-cfg"
    net = json.loads(cfg[key]["data"]["net-conf.json"])
    net["Backend"]["Type"] = backend
    cfg[key]["data"]["net-conf.json"] = json.dumps(net)
    rec["configmaps"] = cfg
    proto_nodes = {nd["metadata"]["name"]: nd for nd in base["nodes"]}
    proto_pods = [p for p in base["pods"]
                  if (p.get("metadata") or {}).get("namespace") in ("kube-system", "kube-flannel")
                  and (p.get("spec") or {}).get("nodeName") in proto_nodes]
    outputs_by = [(s, k, load(s)["facts"][k]) for s in scenarios() for k in sorted(proto_nodes)]
    nodes, pods, facts = [], [], {}
    proto_names = sorted(proto_nodes)
    for i in range(1, n + 1):
        name = f"node-{i}"
        scen, proto, out = outputs_by[(i - 1) % len(outputs_by)]
        nd = _rename(proto_nodes[proto], proto, name)
        nodes.append(nd)
        for p in proto_pods:
            if p["spec"]["nodeName"] == proto:
                q = _rename(p, proto, name)
                q["metadata"]["name"] = f"{p['metadata']['name']}-{i}"
                pods.append(q)
        facts[name] = out.replace(f"\n{proto}\n", f"\n{name}\n", 1)
    del proto_names
    rec["nodes"] = nodes
    rec["pods"] = pods + [p for p in base["pods"] if p not in proto_pods
                          and (p.get("metadata") or {}).get("namespace") not in
                          ("kube-system", "kube-flannel")]
    rec["logs"] = {}  # build_snapshot(with_logs=False): no pod logs
    return rec, facts


def bench_cluster(n: int, runs: int) -> dict[str, Any]:
    rec, outputs = synthetic_cluster(n)
    steps = all_steps()
    res: dict[str, list[float]] = {k: [] for k in
                                   ("snapshot", "parse", "checks", "group", "plans", "json", "total", "cpu")}
    info: dict[str, Any] = {}
    for _ in range(runs):
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        snap = build_snapshot(ReplayAPI(rec), with_logs=False)
        t1 = time.perf_counter()
        c1 = time.process_time()
        # as diagnose() does: each node's facts parsed and kept (frozen for the collector), then
        # the cluster's shape from the snapshot and the facts, then the checks
        with facts_kept_frozen() as keep:
            facts = {}
            for node, out in outputs.items():
                facts[node] = parse_facts(node, out, LAB_NONCE)
                keep()
            t2 = time.perf_counter()
            c2 = time.process_time()
            snap = dataclasses.replace(snap, shape=detect_shape(snap, facts))
            findings, errors = run_checks(snap, facts)
            c_gc = time.process_time()
        # leaving facts_kept_frozen: thresholds restored and one full collection (timed apart)
        t3 = time.perf_counter()
        c3 = time.process_time()
        groups = group_findings(findings) if group_findings else []
        t4 = time.perf_counter()
        diag = Diagnosis(snapshot=snap, facts=facts, findings=findings, shape=snap.shape)
        plans = []
        for st in steps:
            plans.append(st.plan(diag))
        t5 = time.perf_counter()
        c5 = time.process_time()
        doc = diag.to_dict()
        t6 = time.perf_counter()
        c6 = time.process_time()
        res["cpu"].append(c6 - c0)
        for k, v in (("cpu_snapshot", c1 - c0), ("cpu_parse", c2 - c1), ("cpu_checks", c3 - c2),
                     ("cpu_final_gc", c3 - c_gc), ("cpu_plans", c5 - c3), ("cpu_json", c6 - c5)):
            res.setdefault(k, []).append(v)
        for k, v in (("snapshot", t1 - t0), ("parse", t2 - t1), ("checks", t3 - t2),
                     ("group", t4 - t3), ("plans", t5 - t4), ("json", t6 - t5),
                     ("total", t6 - t0)):
            res[k].append(v)
        info = {"findings": len(findings), "groups": len(groups), "check_errors": errors[:3],
                "actions": sum(len(p.actions) for p in plans), "json_findings": len(doc["findings"])}
        # what the full collection walks: objects the collector tracks, per node (not timed)
        info["tracked_per_node"] = len(gc.get_objects()) / max(1, n)
        del facts, findings, diag, plans, doc, snap
    return {"nodes": n, "load": _load_avg(), **{k: _median(v) for k, v in res.items()}, **info}


# -- mesh N (flannel vxlan, full peer tables) ------------------------------------------------------


def mesh_cluster(n: int, stale: int = 2) -> tuple[Any, dict[str, Any]]:
    """(snapshot-like, node -> NodeFacts) of n flannel vxlan nodes whose tables hold every peer;
    node `stale`'s VTEP MAC is stale on every peer (a reboot recreated its flannel.1)."""
    from clusterfix_tui.core.facts import NodeFacts, Section
    from clusterfix_tui.core.snapshot import NodeInfo

    def mac(i: int) -> str:
        return "02:%02x:%02x:%02x:00:01" % (i >> 16 & 255, i >> 8 & 255, i & 255)

    def ip(i: int) -> str:
        return f"172.16.{i >> 8}.{i & 255}"

    def cidr(i: int) -> str:
        return f"10.{i >> 8}.{i & 255}.0/24"

    nodes = {}
    for i in range(1, n + 1):
        ann = {"flannel.alpha.coreos.com/backend-data": json.dumps({"VNI": 1, "VtepMAC": mac(i)}),
               "flannel.alpha.coreos.com/public-ip": ip(i)}
        nodes[f"node-{i}"] = NodeInfo(name=f"node-{i}", internal_ip=ip(i), addresses=(),
                                      pod_cidr=cidr(i), conditions={}, annotations=ann,
                                      labels={}, kubelet_version=None)
    Snap = ClusterSnapshot(nodes=nodes, flannel_backend="vxlan")
    ok = Section("x", None, "", "", 0)
    facts = {}
    for i in range(1, n + 1):
        fdb, neigh, routes = [], [], []
        for j in range(1, n + 1):
            if j == i:
                continue
            m = "02:ff:ff:ff:ff:02" if j == stale else mac(j)
            fdb.append({"mac": m, "dst": ip(j), "flags": ["self", "permanent"]})
            gw = cidr(j).split("/")[0]
            neigh.append({"dst": gw, "dev": "flannel.1", "lladdr": m, "state": ["PERMANENT"]})
            routes.append({"dst": cidr(j), "gateway": gw, "dev": "flannel.1", "flags": ["onlink"]})
        links = ({"ifname": "flannel.1"},)
        facts[f"node-{i}"] = NodeFacts(
            node=f"node-{i}", sections={"fdb_flannel": ok, "ip_route": ok}, complete=True,
            links=links, fdb_flannel=tuple(fdb), neigh_flannel=tuple(neigh), routes=tuple(routes))
    return Snap, facts


def bench_mesh(n: int, runs: int) -> dict[str, Any]:
    Snap, facts = mesh_cluster(n)
    entries = 3 * n * (n - 1)
    times, gtimes, mcpu = [], [], []
    found = grouped = 0
    for _ in range(runs):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fs = flannel_check(Snap, facts)
        t1 = time.perf_counter()
        mcpu.append(time.process_time() - c0)
        gs = group_findings(fs) if group_findings else []
        t2 = time.perf_counter()
        times.append(t1 - t0)
        gtimes.append(t2 - t1)
        found, grouped = len(fs), len(gs)
    t = _median(times)
    return {"nodes": n, "entries": entries, "checks": t, "group": _median(gtimes),
            "cpu": _median(mcpu),
            "us_per_entry": t / entries * 1e6, "findings": found, "groups": grouped,
            "load": _load_avg()}


# -- table R -------------------------------------------------------------------------------------


def kube_proxy_nat(rules: int, pod_net: str = "10.244.0.0/16") -> str:
    """An iptables-save *nat of about `rules` rules in kube-proxy's shapes (iptables mode)."""
    out = ["# Generated by iptables-nft-save v1.8.9 (nf_tables) on Mon Nov 30 05:00:00 2026",
           "*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-NODEPORTS - [0:0]",
           ":KUBE-POSTROUTING - [0:0]", ":KUBE-SERVICES - [0:0]"]
    body = ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
            '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
            "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
            '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
            "-j MASQUERADE --random-fully"]
    chains: list[str] = []
    s = 0
    while len(body) < rules - 40:
        s += 1
        ns, name = f"ns-{s % 97}", f"svc-{s}"
        h = f"{s:016X}"
        svc, ext = f"KUBE-SVC-{h}", f"KUBE-EXT-{h}"
        cip = f"10.96.{s >> 8 & 255}.{s & 255}"
        # some comments carry quotes and backslashes (service names cannot, port names and
        # annotations in other tools' rules can): the parser must keep them exact
        cmt = f'{ns}/{name}:http' if s % 50 else f'{ns}/{name}:say \\"hi\\" it\'s'
        chains += [svc]
        body.append(f'-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment "{cmt} cluster IP" '
                    f"-m tcp --dport 80 -j {svc}")
        body.append(f'-A {svc} ! -s {pod_net} -d {cip}/32 -p tcp -m comment --comment "{cmt} '
                    f'cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ')
        if s % 3 == 0:
            chains.append(ext)
            body.append(f'-A KUBE-NODEPORTS -p tcp -m comment --comment "{cmt}" -m tcp '
                        f"--dport {30000 + s % 2768} -j {ext}")
            body.append(f'-A {ext} -m comment --comment "masquerade traffic for {cmt} external '
                        f'destinations" -j KUBE-MARK-MASQ')
            body.append(f"-A {ext} -j {svc}")
        eps = 3
        for e in range(eps):
            sep = f"KUBE-SEP-{s:012X}{e:04X}"
            pip = f"10.244.{(s * 3 + e) >> 8 & 255}.{(s * 3 + e) & 255}"
            chains.append(sep)
            prob = f" -m statistic --mode random --probability {1 / (eps - e):.11f}" \
                if e < eps - 1 else ""
            body.append(f'-A {svc} -m comment --comment "{cmt} -> {pip}:8080"{prob} -j {sep}')
            body.append(f'-A {sep} -s {pip}/32 -m comment --comment "{cmt}" -j KUBE-MARK-MASQ')
            body.append(f'-A {sep} -p tcp -m comment --comment "{cmt}" -m tcp -j DNAT '
                        f"--to-destination {pip}:8080")
    body.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this '
                'must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    out += [f":{c} - [0:0]" for c in chains] + body + ["COMMIT", "# Completed on Mon Nov 30"]
    return "\n".join(out) + "\n"


def bench_table(rules: int, runs: int) -> dict[str, Any]:
    from clusterfix_tui.core.facts import NodeFacts

    nat = kube_proxy_nat(rules)
    legacy_text = nat.replace("iptables-nft-save v1.8.9 (nf_tables)", "iptables-save v1.8.9 (legacy)")
    filt = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" \
        "-A FORWARD -s 10.244.0.0/16 -j ACCEPT\n-A FORWARD -d 10.244.0.0/16 -j ACCEPT\nCOMMIT\n"
    mangle = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
    pn, pl, ck = [], [], []
    cpu: list[tuple[float, float, float]] = []
    n_rules = 0
    findings: list[Any] = []
    for _ in range(runs):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        nft_nat = P.parse_iptables_save(nat)
        t1, c1 = time.perf_counter(), time.process_time()
        legacy = P.parse_iptables_save(legacy_text + filt)
        t2, c2 = time.perf_counter(), time.process_time()
        facts = NodeFacts(node="node-1", complete=True, legacy=legacy, nft_nat=nft_nat,
                          nft_filter=P.parse_iptables_save(filt),
                          nft_mangle=P.parse_iptables_save(mangle))
        Snap = ClusterSnapshot(kube_proxy_mode="iptables", nodeport_services=({"name": "x"},),
                               flannel_network="10.244.0.0/16")

        t3, c3 = time.perf_counter(), time.process_time()
        findings = iptables_checks.check(Snap, {"node-1": facts})
        t4, c4 = time.perf_counter(), time.process_time()
        cpu.append((c1 - c0, c2 - c1, c4 - c3))
        pn.append(t1 - t0)
        pl.append(t2 - t1)
        ck.append(t4 - t3)
        n_rules = len(nft_nat.tables["nat"].rules)
    return {"rules": n_rules, "bytes": len(nat), "parse_nft": _median(pn),
            "parse_legacy": _median(pl), "checks": _median(ck),
            "cpu_parse_nft": _median([c[0] for c in cpu]),
            "cpu_parse_legacy": _median([c[1] for c in cpu]),
            "cpu_checks": _median([c[2] for c in cpu]),
            "findings": [(f.code, f.severity, len(f.data.get("shadowing_rules") or ()))
                         for f in findings], "load": _load_avg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="1000,5000")
    ap.add_argument("--mesh", default="100,200,400")
    ap.add_argument("--rules", default="35000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    out: dict[str, Any] = {"cluster": [], "mesh": [], "table": []}
    for r in [int(x) for x in a.rules.split(",") if x]:
        row = bench_table(r, a.runs)
        out["table"].append(row)
        print(f"table {row['rules']} rules ({row['bytes'] / 1e6:.1f} MB): parse nft "
              f"{row['parse_nft']:.3f} s, parse legacy {row['parse_legacy']:.3f} s, iptables checks "
              f"{row['checks']:.3f} s (CPU {row['cpu_parse_nft']:.3f} / {row['cpu_parse_legacy']:.3f}"
              f" / {row['cpu_checks']:.3f} s); findings {row['findings']} (load {row['load']:.1f})",
              flush=True)
    for n in [int(x) for x in a.mesh.split(",") if x]:
        row = bench_mesh(n, a.runs)
        out["mesh"].append(row)
        print(f"mesh {n} nodes ({row['entries']} table entries): flannel checks {row['checks']:.3f} s "
              f"(CPU {row['cpu']:.3f} s) "
              f"({row['us_per_entry']:.2f} us/entry), group {row['group']:.3f} s; "
              f"{row['findings']} findings -> {row['groups']} rows (load {row['load']:.1f})",
              flush=True)
    for n in [int(x) for x in a.nodes.split(",") if x]:
        row = bench_cluster(n, a.runs)
        out["cluster"].append(row)
        print(f"cluster {n} nodes: total {row['total']:.3f} s = snapshot {row['snapshot']:.3f} + "
              f"parse {row['parse']:.3f} + checks {row['checks']:.3f} + group {row['group']:.3f} + "
              f"plans {row['plans']:.3f} + json {row['json']:.3f} (CPU {row['cpu']:.3f} s = "
              f"snapshot {row['cpu_snapshot']:.3f} + parse {row['cpu_parse']:.3f} + shape and "
              f"checks {row['cpu_checks']:.3f} (of which the final full collection "
              f"{row['cpu_final_gc']:.3f}) + group and plans {row['cpu_plans']:.3f} + json "
              f"{row['cpu_json']:.3f}); {row['tracked_per_node']:.0f} tracked objects per node; "
              f"{row['findings']} findings, "
              f"{row['groups']} rows, {row['actions']} actions, check errors {row['check_errors']} "
              f"(load {row['load']:.1f})", flush=True)
    if len(out["cluster"]) >= 2:
        a0, a1 = out["cluster"][0], out["cluster"][-1]
        print(f"ratio time({a1['nodes']})/time({a0['nodes']}) = {a1['total'] / a0['total']:.2f} "
              f"wall, {a1['cpu'] / a0['cpu']:.2f} CPU (nodes x{a1['nodes'] / a0['nodes']:.0f})")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
