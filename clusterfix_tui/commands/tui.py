"""`clusterfix-tui [tui]`: the interactive wizard.

textual, kubernetes and paramiko are imported only in run() (and the transports only inside the
wizard's first worker), so `clusterfix-tui --help` stays light and the first screen paints before
any connection is attempted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import tempfile
from typing import Any

from clusterfix_tui.commands._common import add_connection_flags


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="change nothing: mutating commands are recorded, not run")
    parser.add_argument("--lab", action="store_true",
                        help="build a 3-node lab with every fault in a temporary directory, run "
                             "the wizard on it, tear it down on exit (needs root)")
    parser.add_argument("--bundle", metavar="FILE",
                        help="open an evidence bundle (clusterfix-tui bundle) read-only: the "
                             "diagnostics and the plans as they would be, nothing applied")
    parser.add_argument("--journal", metavar="PATH",
                        help="journal file (default: ./clusterfix-session-<time>.jsonl)")


def _default_journal() -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.abspath(f"clusterfix-session-{stamp}.jsonl")


def _build_lab() -> str:
    from clusterfix_tui.lab import cluster

    lab_dir = tempfile.mkdtemp(prefix="clusterfix-lab-")
    print(f"clusterfix-tui: building a lab with faults in {lab_dir} …", file=sys.stderr, flush=True)
    try:
        cluster.up(lab_dir, nodes=3, faults="all")
    except BaseException:
        _teardown_lab(lab_dir)
        raise
    return lab_dir


def _teardown_lab(lab_dir: str) -> None:
    from clusterfix_tui.lab import cluster

    print(f"clusterfix-tui: tearing the lab down ({lab_dir})", file=sys.stderr, flush=True)
    try:
        cluster.down(lab_dir)
    except Exception as exc:  # noqa: BLE001 - report, and still remove the directory
        print(f"clusterfix-tui: lab teardown: {exc}", file=sys.stderr)
    shutil.rmtree(lab_dir, ignore_errors=True)


def make_session_factory(args: argparse.Namespace, lab_dir: str | None, journal_path: str,
                         runtimes: list[Any]):
    """A callable the wizard runs in its first worker thread: transports, journal, session."""

    def factory() -> Any:
        from clusterfix_tui.core.journal import Journal
        from clusterfix_tui.core.session import RepairSession
        from clusterfix_tui.runtime import build_replay_runtime, build_runtime, local_flags

        if getattr(args, "bundle", None):  # offline evidence: dry-run, no network
            runtime = build_replay_runtime(args.bundle)
        else:
            runtime = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                                    ssh_config=args.ssh_config, lab_dir=lab_dir,
                                    dry_run=args.dry_run,
                                    **local_flags(args))
        runtimes.append(runtime)
        return RepairSession(runtime.api, runtime.shells, runtime.runner, Journal(journal_path),
                             mode="interactive", dry_run=runtime.dry_run, prober=runtime.prober)

    return factory


def run(args: argparse.Namespace) -> int:
    lab_dir = args.lab_dir
    built_lab: str | None = None
    runtimes: list[Any] = []
    app = None
    try:
        if args.lab:
            try:
                built_lab = lab_dir = _build_lab()
            except Exception as exc:  # noqa: BLE001 - a message, not a traceback
                print(f"clusterfix-tui: cannot build the lab: {exc}", file=sys.stderr)
                return 2
        journal_path = os.path.abspath(args.journal) if args.journal else _default_journal()

        from clusterfix_tui.ui.app import ClusterfixApp

        app = ClusterfixApp(
            session_factory=make_session_factory(args, lab_dir, journal_path, runtimes),
            dry_run=bool(args.dry_run or args.bundle), journal_path=journal_path,
        )
        rc = app.run()
        if app.session is not None and app.state.verdict is None:
            try:
                app.session.finish(aborted=True)  # quit before the summary: journal it
            except Exception as exc:  # noqa: BLE001
                print(f"clusterfix-tui: could not close the journal: {exc}", file=sys.stderr)
        if os.path.exists(journal_path):
            print(f"clusterfix-tui: journal {journal_path}", file=sys.stderr)
        if app.state.verdict:
            print(f"clusterfix-tui: verdict {app.state.verdict}", file=sys.stderr)
        for path in app.state.exported:
            print(f"clusterfix-tui: report {path}", file=sys.stderr)
        return int(rc or 0)
    finally:
        for runtime in runtimes:
            runtime.close()
        if built_lab:
            _teardown_lab(built_lab)
