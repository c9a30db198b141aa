"""Command-line entry point.

argparse rather than click/typer: it is in the standard library, so `clusterfix-tui --help` stays
fast and imports nothing heavy (no kubernetes, textual or paramiko). Each sub-command lives in
`clusterfix_tui/commands/<name>.py` with two functions, `configure(parser)` and `run(args) -> int`;
the module is imported only when its command runs (configure() must stay import-light too).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under clusterfix_tui.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tui": ("tui", "start the interactive wizard (the default)"),
    "diagnose": ("diagnose", "gather facts from the API and every node, print findings"),
    "fix": ("fix", "run the runbook's repair steps headless (--dry-run or --yes)"),
    "validate": ("validate", "check nodes Ready, key pods Running, NodePort reachable"),
    "rollback": ("rollback", "undo what a session did, newest first, from its journal"),
    "report": ("report", "render a session report from a journal"),
    "bundle": ("bundle", "save a diagnosis's evidence in one file (replay with diagnose --bundle); "
                         "bundle diff A B"),
    "trace": ("trace", "follow one probe packet (nodeport NODE | pod NS/POD NS/POD | vxlan NODE "
                       "NODE | api NODE) and name the rule or route where it dies"),
    "lab": ("lab", "a disposable broken cluster on this machine (up | down | status)"),
}


def build_parser() -> argparse.ArgumentParser:
    from clusterfix_tui import __version__

    parser = argparse.ArgumentParser(
        prog="clusterfix-tui",
        description="Diagnose and repair Kubernetes cluster networking, one approved step at a time.",
    )
    parser.add_argument("--version", action="version", version=f"clusterfix-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _module(module).configure(p)
    return parser


def _module(name: str):
    return importlib.import_module(f"clusterfix_tui.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The wizard is the default command: `clusterfix-tui [--kubeconfig K] ...` means `tui ...`.
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "tui")
    args = build_parser().parse_args(argv)
    try:
        return int(_module(COMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
