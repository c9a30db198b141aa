"""`clusterfix-tui bundle`: the evidence of one diagnosis in one file, and `bundle diff A B`.

    clusterfix-tui bundle [-o FILE] [--anonymize] [connection flags]
    clusterfix-tui bundle diff A B [--json]

Taking a bundle runs the ordinary diagnosis while recording every API read and every node's
facts output (core/bundle.py), then replays the bundle at once and says whether the replay gives
the same findings (it should; redaction that touched a value a check reads would show here).
`diagnose --bundle FILE` and `clusterfix-tui --bundle FILE` replay it later, offline.

Exit codes: 0 written (diff: no differences), 1 written but the replay differs (diff: there are
differences), 2 could not.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time

from clusterfix_tui.commands._common import add_connection_flags


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("action", nargs="?", choices=["diff"],
                        help="diff: compare two bundles (findings and node state)")
    parser.add_argument("files", nargs="*", metavar="BUNDLE", help="with diff: the two bundles")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write it (default: ./clusterfix-<time>.cfxbundle.tgz)")
    parser.add_argument("--anonymize", action="store_true",
                        help="replace node names, addresses, cluster and user names consistently "
                             "(for sharing; an anonymized bundle is for reading, not replay)")
    parser.add_argument("--json", action="store_true", help="with diff: print the diff as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    if args.action == "diff":
        return _diff(args)
    if args.files:
        print("clusterfix-tui bundle: unexpected arguments (did you mean `bundle diff A B`?)",
              file=sys.stderr)
        return 2
    return _take(args)


def _diff(args: argparse.Namespace) -> int:
    from clusterfix_tui.core.bundle import BundleError, diff, read, render_diff

    if len(args.files) != 2:
        print("clusterfix-tui bundle diff: give two bundles: bundle diff A B", file=sys.stderr)
        return 2
    try:
        a, b = read(args.files[0]), read(args.files[1])
    except BundleError as exc:
        print(f"clusterfix-tui bundle diff: {exc}", file=sys.stderr)
        return 2
    d = diff(a, b)
    if args.json:
        json.dump(d, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_diff(d))
    return 1 if (d["findings_appeared"] or d["findings_gone"] or d["nodes"]) else 0


def _take(args: argparse.Namespace) -> int:
    from clusterfix_tui import __version__
    from clusterfix_tui.commands.diagnose import _progress
    from clusterfix_tui.core import bundle as B
    from clusterfix_tui.core.diagnose import diagnose
    from clusterfix_tui.runtime import build_runtime, local_flags
    from clusterfix_tui.transports.replay import (
        RecordingAPI,
        RecordingShells,
        ReplayAPI,
        ReplayShells,
    )

    out = args.output or os.path.abspath(
        f"clusterfix-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%SZ')}{B.SUFFIX}")
    try:
        rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                           ssh_config=args.ssh_config, lab_dir=args.lab_dir,
                           **local_flags(args))
    except Exception as exc:  # noqa: BLE001
        print(f"clusterfix-tui bundle: cannot connect: {exc}", file=sys.stderr)
        return 2
    try:
        api, shells = RecordingAPI(rt.api), RecordingShells(rt.shells)
        t0 = time.monotonic()
        try:
            api.describe()
            api.version()
        except Exception:  # noqa: BLE001 - recorded; the diagnosis says what it means
            pass
        diag = diagnose(api, shells, on_progress=_progress(args.quiet))
        live = diag.to_dict()
        bundle = B.build(api.calls, shells.nodes, live, tool_version=__version__,
                         anonymize=args.anonymize)
        B.write(bundle, out)
        took = time.monotonic() - t0
    except Exception as exc:  # noqa: BLE001
        print(f"clusterfix-tui bundle: could not take the bundle: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    finally:
        rt.close()
    print(f"bundle: {out} ({os.path.getsize(out)} bytes, {len(bundle.nodes)} node(s), "
          f"{len(live['findings'])} finding(s), {took:.1f}s)")
    if args.anonymize:
        return 0
    # the proof that it travels: replay it now and compare
    replayed = diagnose(ReplayAPI(B.read(out)), ReplayShells(B.read(out)))
    diffs = B.same_findings(bundle.findings, [f.to_dict() for f in replayed.findings])
    if diffs:
        print("bundle: WARNING: replaying it does not give the same findings:", file=sys.stderr)
        for line in diffs[:20]:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("bundle: replayed offline: the same findings")
    return 0
