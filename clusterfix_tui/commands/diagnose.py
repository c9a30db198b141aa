"""`clusterfix-tui diagnose`: one parallel look at the whole cluster.

Exit codes: 0 healthy, 1 findings (or a check that failed), 2 could not diagnose (no API, no
nodes, bad flags).
Progress goes to stderr as nodes answer; the report (human or --json) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from clusterfix_tui.commands._common import add_connection_flags

if TYPE_CHECKING:  # --help stays light: core.diagnose loads when the command runs
    from clusterfix_tui.core.diagnose import Diagnosis


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    parser.add_argument("--node", action="append", dest="nodes", metavar="NAME",
                        help="only read these nodes (repeatable; default: all)")
    parser.add_argument("--max-workers", type=int, default=32,
                        help="nodes read in parallel (default 32)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="findings that share one cause across nodes are one line (the "
                             "nodes counted); with --verbose every node's finding is listed "
                             "under it")
    parser.add_argument("--bundle", metavar="FILE",
                        help="diagnose from an evidence bundle (clusterfix-tui bundle), offline")


def _progress(quiet: bool):
    t0 = time.monotonic()

    def cb(event: str, node: str, detail: str) -> None:
        if quiet:
            return
        from clusterfix_tui.commands._common import terminal_safe

        node, detail = terminal_safe(str(node)), terminal_safe(str(detail))
        el = time.monotonic() - t0
        if event == "snapshot":
            print(f"[{el:5.1f}s] API: {detail}", file=sys.stderr, flush=True)
        elif event == "node-done":
            print(f"[{el:5.1f}s] {node}: facts read ({detail})", file=sys.stderr, flush=True)
        elif event == "node-error":
            print(f"[{el:5.1f}s] {node}: NOT read ({detail})", file=sys.stderr, flush=True)
        elif event == "checks":
            print(f"[{el:5.1f}s] checks: {detail}", file=sys.stderr, flush=True)

    return cb


def run(args: argparse.Namespace) -> int:
    try:
        from clusterfix_tui.runtime import build_replay_runtime, build_runtime, local_flags

        if args.bundle:
            rt = build_replay_runtime(args.bundle)
        else:
            rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                               ssh_config=args.ssh_config, lab_dir=args.lab_dir,
                               **local_flags(args))
    except Exception as exc:
        print(f"clusterfix-tui diagnose: cannot connect: {exc}", file=sys.stderr)
        return 2
    try:
        from clusterfix_tui.core.diagnose import diagnose

        try:
            diag = diagnose(rt.api, rt.shells, nodes=args.nodes, max_workers=max(1, args.max_workers),
                            on_progress=_progress(args.quiet or False))
        except Exception as exc:  # a bug; still no traceback for the user
            print(f"clusterfix-tui diagnose: could not diagnose: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 2
        reason = could_not_diagnose(diag)
        from clusterfix_tui.core.redact import redact, redact_obj

        # what nodes print (files, errors) can carry a credential: redacted like the journal
        if args.json:
            from clusterfix_tui.core.netfilter_map import netfilter_map

            doc = diag.to_dict()
            # every table of every backend per node, in hook order (docs/trace.md)
            doc["netfilter"] = {name: netfilter_map(f) for name, f in sorted(diag.facts.items())}
            json.dump(redact_obj(doc), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            sys.stdout.write(redact(render_text(diag, verbose=bool(getattr(args, "verbose", False)))))
        if reason:
            print(f"clusterfix-tui diagnose: could not diagnose: {reason}", file=sys.stderr)
            return 2
        return 0 if diag.healthy else 1
    finally:
        rt.close()  # Runtime.close() never raises


def could_not_diagnose(diag: Diagnosis) -> str | None:
    return diag.error


def render_text(diag: Diagnosis, verbose: bool = False) -> str:
    snap = diag.snapshot
    s = snap.summary()
    lines = []
    api = s.get("api") or {}
    lines.append(f"cluster: {api.get('context') or '?'} at {api.get('server') or '?'} "
                 f"(Kubernetes {s.get('version') or '?'}), {len(snap.nodes)} nodes, "
                 f"kube-proxy mode {s.get('kube_proxy_mode') or 'iptables (default)'}, "
                 f"flannel {s.get('flannel_network') or '?'} {s.get('flannel_backend') or ''}".rstrip())
    shape = getattr(diag, "shape", None)
    if shape is not None:
        from clusterfix_tui.core.shape import note_lines

        lines.extend(f"  {ln}" for ln in shape.lines() + note_lines(shape))
    if s.get("dns"):  # core/dns.py: kube-dns and its ready endpoints, or "no cluster DNS found"
        lines.append(f"  {s['dns']}")
    for e in snap.errors[:10]:
        lines.append(f"  API error: {e['what']}: {e['error']}")
    if len(snap.errors) > 10:
        lines.append(f"  ... and {len(snap.errors) - 10} more API errors")
    lines.append("")
    lines.append("nodes:")
    for name, info in snap.nodes.items():
        f = diag.facts.get(name)
        n = sum(1 for x in diag.findings if x.node == name)
        ready = {True: "Ready", False: "NotReady", None: "?"}[info.ready]
        if name in diag.node_errors:
            state = "NOT READ: " + diag.node_errors[name]
        elif f is None:
            state = "skipped"
        else:
            sm = f.summary()
            state = (f"read in {diag.node_durations.get(name, 0):.2f}s, iptables "
                     f"{sm['host_iptables'] or '?'}, kube-proxy backend {sm['kube_proxy_backend']}")
        lines.append(f"  {name:<16} {info.internal_ip or '-':<15} {info.pod_cidr or '-':<16} "
                     f"{ready:<8} {n} finding(s)  {state}")
    lines.append("")
    if diag.error:
        lines.append(f"COULD NOT DIAGNOSE: {diag.error}")
        return "\n".join(lines) + "\n"
    if diag.healthy:
        lines.append(f"no findings: the cluster looks healthy ({diag.duration:.1f}s)")
        return "\n".join(lines) + "\n"
    from clusterfix_tui.core.group import all_nodes_text, group_findings, nodes_text

    # one cause, one line: findings sharing a cause across nodes are one item (core/group.py)
    groups = group_findings(diag.findings)
    causes = "" if len(groups) == len(diag.findings) else f" from {len(groups)} cause(s)"
    if diag.findings:
        lines.append(f"{len(diag.findings)} finding(s){causes} ({diag.duration:.1f}s):")
    else:  # not healthy all the same: what a check that failed would have found is unknown
        lines.append(f"no findings, but not every check ran ({diag.duration:.1f}s): not known to be healthy")
    for g in groups:
        f = g.findings[0]
        lines.append("")
        if not g.grouped:
            lines.append(f"[{f.severity.upper()}] {f.code} on {f.node}: {f.title}")
        else:
            lines.append(f"[{g.severity.upper()}] {g.code}: {g.title}")
            lines.append(f"    nodes: {(all_nodes_text if verbose else nodes_text)(g.nodes)}")
            if g.cause != g.title:
                lines.append(f"    cause: {g.cause}")
            if f.evidence:
                lines.append(f"    evidence on {f.node}:")
        for ev in f.evidence:
            lines.append(f"    | {ev}")
        if f.explanation:
            lines.append(f"    {f.explanation}")
        tail = []
        if f.step:
            tail.append(f"repair step: {f.step}")
        if f.reference:
            tail.append(f"see {f.reference}")
        if tail:
            lines.append("    " + "; ".join(tail))
        if g.grouped and verbose:
            lines.append(f"    every node's finding ({len(g.findings)}):")
            for x in g.findings:
                lines.append(f"    - [{x.severity.upper()}] {x.code} on {x.node}: {x.title}")
                for ev in x.evidence:
                    lines.append(f"        | {ev}")
        elif g.grouped:
            lines.append("    (every node's finding: diagnose --verbose, or --json)")
    for e in diag.check_errors:
        # a check that raised: a bug, or one node's facts it could not read (garbled in transit,
        # a node printing what no tool prints): then the error names that node
        lines.append(f"check error (please report): {e}")
    return "\n".join(lines) + "\n"
