"""`clusterfix-tui trace nodeport NODE [--port P]` / `trace pod NS/POD NS/POD` [--json].

Follows one probe through the nodes on its path with nftables tracing and names where it died
(docs/trace.md). Adds one table `inet cfx_trace_<id>` per path node (journaled, rolled back at the
end, also on Ctrl+C / SIGTERM / SIGHUP; after a SIGKILL, `clusterfix-tui rollback --journal J`
removes it). Exit code: 0 delivered, 1 not delivered (the verdict says where), 2 could not trace.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import secrets
import signal
import sys
from typing import Any

from clusterfix_tui.commands._common import add_connection_flags


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="flow", metavar="FLOW", required=True)
    np = sub.add_parser("nodeport", help="workstation -> NodeIP:NodePort of NODE")
    np.add_argument("node")
    np.add_argument("--port", type=int, help="the NodePort (default: the first NodePort service's)")
    pod = sub.add_parser("pod", help="pod A -> pod B (NS/POD NS/POD)")
    pod.add_argument("src")
    pod.add_argument("dst")
    pod.add_argument("--port", type=int, help="pod B's port (default: its first containerPort)")
    for p in (np, pod):
        add_connection_flags(p)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--journal", metavar="PATH",
                       help="journal file (default: ./clusterfix-trace-<time>.jsonl)")


class TraceError(Exception):
    pass


def _node_ip(node: dict[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or ():
        if a.get("type") == "InternalIP":
            return a.get("address")
    return None


def _pod_node(ip: str, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> str | None:
    import ipaddress

    for p in pods:
        if (p.get("status") or {}).get("podIP") == ip:
            return (p.get("spec") or {}).get("nodeName")
    for n in nodes:
        for cidr in [(n.get("spec") or {}).get("podCIDR")] + list(
                (n.get("spec") or {}).get("podCIDRs") or []):
            try:
                if cidr and ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False):
                    return n["metadata"]["name"]
            except ValueError:
                continue
    return None


def build_nodeport_flow(api: Any, node: str, port: int | None) -> Any:
    from clusterfix_tui.core.trace import Flow, Match, PathNode

    nodes = list(api.list_nodes())
    by = {n["metadata"]["name"]: n for n in nodes}
    if node not in by:
        raise TraceError(f"no node {node!r} (nodes: {', '.join(sorted(by))})")
    ip = _node_ip(by[node])
    if not ip:
        raise TraceError(f"node {node} has no InternalIP")
    chosen = None
    for s in sorted(api.list_services(), key=lambda s: (s["metadata"].get("namespace", ""),
                                                        s["metadata"]["name"])):
        for p in (s.get("spec") or {}).get("ports") or ():
            if p.get("nodePort") and p.get("protocol", "TCP") == "TCP" and (
                    port is None or int(p["nodePort"]) == port):
                chosen = (s, p)
                break
        if chosen:
            break
    if chosen is None:
        raise TraceError(f"no TCP NodePort service{f' on port {port}' if port else ''}")
    svc, sport = chosen
    np_port = int(sport["nodePort"])
    ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
    eps: list[tuple[str, int, str | None]] = []
    pods = list(api.list_pods())
    for e in api.list_endpoints(ns):
        if e["metadata"]["name"] != name:
            continue
        for sub in e.get("subsets") or ():
            ports = sub.get("ports") or ()
            pnum = next((int(p["port"]) for p in ports if p.get("name") == sport.get("name")),
                        int(ports[0]["port"]) if ports else None)
            if pnum is None:
                continue
            for a in sub.get("addresses") or ():
                eps.append((a["ip"], pnum, a.get("nodeName") or _pod_node(a["ip"], nodes, pods)))
    entry_matches = [Match(ip, np_port)] + [Match(e[0], e[1]) for e in eps]
    route_to = eps[0][0] if eps else ip
    path = [PathNode(node, ip, "entry", tuple(entry_matches), route_to, bool(eps))]
    for n in sorted({e[2] for e in eps if e[2] and e[2] != node}):
        ms = tuple(Match(e[0], e[1]) for e in eps if e[2] == n)
        path.append(PathNode(n, _node_ip(by[n]), "destination", ms, ms[0].daddr, True))
    desc = (f"workstation -> {node} {ip}:{np_port} (service {ns}/{name}; endpoints "
            f"{', '.join(f'{e[0]}:{e[1]}@{e[2]}' for e in eps) or 'none'})")
    return Flow("nodeport", desc, ip, np_port, tuple(path))


def build_pod_flow(api: Any, src: str, dst: str, port: int | None) -> Any:
    from clusterfix_tui.core.trace import Flow, Match, PathNode, probe_shell_command

    nodes = list(api.list_nodes())
    by = {n["metadata"]["name"]: n for n in nodes}
    pods = list(api.list_pods())

    def find(ref: str) -> dict[str, Any]:
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        for p in pods:
            m = p.get("metadata") or {}
            if m.get("name") == name and m.get("namespace", "default") == ns:
                return p
        raise TraceError(f"no pod {ns}/{name}")

    a, b = find(src), find(dst)
    a_ip, b_ip = (a.get("status") or {}).get("podIP"), (b.get("status") or {}).get("podIP")
    a_node, b_node = (a.get("spec") or {}).get("nodeName"), (b.get("spec") or {}).get("nodeName")
    if not (a_ip and b_ip and a_node and b_node):
        raise TraceError("both pods need an IP and a node")
    if port is None:
        port = next((int(cp["containerPort"]) for c in (b.get("spec") or {}).get("containers") or ()
                     for cp in c.get("ports") or () if cp.get("containerPort")), None)
    if port is None:
        raise TraceError(f"pod {dst} declares no containerPort: give --port")
    m = Match(b_ip, port)
    path = [PathNode(a_node, _node_ip(by[a_node]) if a_node in by else None, "source", (m,),
                     b_ip, False)]
    if b_node != a_node:
        path.append(PathNode(b_node, _node_ip(by[b_node]) if b_node in by else None,
                             "destination", (m,), b_ip, True))
    return Flow("pod", f"{src} ({a_ip}@{a_node}) -> {dst} {b_ip}:{port}@{b_node}", b_ip, port,
                tuple(path), probe_node=a_node,
                probe_command=probe_shell_command(b_ip, port, src_ip=a_ip))


def print_result(res: dict[str, Any]) -> None:
    from clusterfix_tui.commands._common import out

    out(f"trace {res['description']}")
    last = None
    for h in res["hops"]:
        if h["kind"] == "packet":
            continue
        if h["node"] != last:
            out(f"  [{h['node']}]")
            last = h["node"]
        what = h["rule"] or h["kind"]
        hd = f" #{h['handle']}" if h["handle"] is not None else ""
        out(f"    {h['family']} {h['table']} {h['chain']}{hd}: {what} -> {h['verdict']}")
    for n in res["nodes"]:
        out(f"  {n['node']} ({n['role']}): route: {n['route'] or '-'}; ip_forward={n['ip_forward']}"
            + (f"; {n['error']}" if n["error"] else ""))
    for note in res["notes"]:
        out(f"  note: {note}")
    if res.get("probe"):
        out(f"  probe: {res['probe']}")
    w = res["where"]
    loc = " ".join(str(x) for x in (w.get("table"), w.get("chain")) if x)
    hd = f" (handle {w['handle']})" if w.get("handle") is not None else ""
    out(f"verdict: {res['verdict'].upper()} at {w.get('node')}{': ' + loc if loc else ''}"
        f"{': ' + w['rule'] if w.get('rule') else ''}{hd}")


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.trace import run_trace

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    journal_path = args.journal or os.path.abspath(f"clusterfix-trace-{stamp}.jsonl")
    try:
        from clusterfix_tui.runtime import build_runtime, local_flags

        rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                           ssh_config=args.ssh_config, lab_dir=args.lab_dir, dry_run=False,
                           **local_flags(args))
    except Exception as exc:  # noqa: BLE001
        print(f"clusterfix-tui trace: cannot connect: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            flow = (build_nodeport_flow(rt.api, args.node, args.port) if args.flow == "nodeport"
                    else build_pod_flow(rt.api, args.src, args.dst, args.port))
        except TraceError as exc:
            print(f"clusterfix-tui trace: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001
            print(f"clusterfix-tui trace: Kubernetes API: {exc}", file=sys.stderr)
            return 2
        journal = Journal(journal_path)
        print(f"journal: {journal_path}", file=sys.stderr)
        journal.write("note", text=f"trace {flow.description}")
        hit = {"n": 0}

        def on_signal(signum: int, _frame: Any) -> None:
            hit["n"] += 1
            if hit["n"] == 1:  # the first one interrupts; the clean-up then runs to its end
                raise KeyboardInterrupt(f"signal {signum}")
            print("clusterfix-tui trace: removing the trace tables, please wait", file=sys.stderr)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM,
                                                          signal.SIGHUP)}
        try:
            res = run_trace(flow, rt.shells, rt.runner, journal, rt.prober,
                            secrets.token_hex(4),
                            on_line=lambda s: print(f"  {s}", file=sys.stderr))
        except KeyboardInterrupt:
            journal.write("note", text="trace interrupted; trace tables removed")
            print("clusterfix-tui trace: interrupted (trace tables removed)", file=sys.stderr)
            return 130
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        journal.write("note", text=f"trace verdict: {res['verdict']} at {res['where']}")
        journal.close()
    finally:
        rt.close()
    if args.json:
        json.dump({k: res[k] for k in ("verdict", "where", "hops", "flow", "description",
                                       "trace_id", "table", "nodes", "legacy_untraced", "notes",
                                       "probe")}, sys.stdout, indent=2)
        print()
    else:
        print_result(res)
    return 0 if res["verdict"] == "delivered" else 1
