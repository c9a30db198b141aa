"""`clusterfix-tui report --journal PATH [--format md|html|json|junit] [-o FILE] [--anonymize]`.

Renders a session report from a journal (never from UI state), so a session that crashed or was
killed still gets one. Standard output when no -o; a file is written with mode 0600.
Exit codes: 0 written, 2 the journal is missing / empty / not a journal, or the output cannot be
written.
"""

from __future__ import annotations

import argparse
import os
import sys

FORMATS = ("md", "html", "json", "junit")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--journal", required=True, metavar="PATH",
                        help="the session journal (JSON lines) to report on")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="md (default; or from -o's extension), html, json or junit")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the report to FILE (mode 0600) instead of standard output")
    parser.add_argument("--anonymize", action="store_true",
                        help="replace node names, IPs and cluster names with stable placeholders")


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.core import report

    try:
        events, problems = report.load_journal(args.journal)
    except report.JournalError as exc:
        print(f"clusterfix-tui report: {exc}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"clusterfix-tui report: warning: {p}", file=sys.stderr)
    fmt = args.format or (report.format_for_path(args.output) if args.output else "md")
    text = report.render(events, fmt, anonymize=args.anonymize, journal_problems=problems)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        report.write_private(args.output, text)
    except OSError as exc:
        print(f"clusterfix-tui report: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"report written: {os.path.abspath(args.output)} ({fmt})", file=sys.stderr)
    return 0
