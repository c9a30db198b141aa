"""`clusterfix-tui trace nodeport NODE [--port P]` / `trace pod NS/POD NS/POD` /
`trace vxlan NODE NODE [--port P]` / `trace api NODE` [--json].

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
    vx = sub.add_parser("vxlan", help="node A -> node B over flannel's VXLAN port (UDP)")
    vx.add_argument("src")
    vx.add_argument("dst")
    vx.add_argument("--port", type=int,
                    help="the VXLAN port (default: flannel.1's dstport on A, else 8472)")
    api = sub.add_parser("api", help="NODE -> the API server address its kubelet uses")
    api.add_argument("node")
    for p in (np, pod, vx, api):
        add_connection_flags(p)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--journal", metavar="PATH",
                       help="journal file (default: ./clusterfix-trace-<time>.jsonl)")


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


def flow_args(args: argparse.Namespace) -> tuple[Any, ...]:
    if args.flow == "nodeport":
        return (args.node, args.port)
    if args.flow == "api":
        return (args.node,)
    return (args.src, args.dst, args.port)


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.trace import TraceError, build_flow, run_trace

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
            flow = build_flow(args.flow, flow_args(args), rt.api, rt.shells)
        except TraceError as exc:
            print(f"clusterfix-tui trace: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001
            print(f"clusterfix-tui trace: Kubernetes API or SSH: {exc}", file=sys.stderr)
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
        journal.close()
    finally:
        rt.close()
    if args.json:
        json.dump({k: res[k] for k in ("verdict", "where", "hops", "flow", "description",
                                       "trace_id", "table", "nodes", "legacy_untraced", "notes",
                                       "probe", "underlay") if k in res}, sys.stdout, indent=2)
        print()
    else:
        print_result(res)
    return 0 if res["verdict"] == "delivered" else 1
