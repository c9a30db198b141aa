"""What the command modules share: the connection flags and the terminal helpers (printing with
redaction, asking y/s/n, printing a plan or validation results). Import-light: `--help` loads it.
Commands import this, never `clusterfix_tui.cli` (the entry point imports the commands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every command that talks to a cluster shares."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else "
                        "~/.kube/config, else /etc/kubernetes/admin.conf when readable)")
    parser.add_argument("--context", help="kubeconfig context (default: the current context)")
    parser.add_argument("--ssh-config", help="OpenSSH client config (default: ~/.ssh/config)")
    parser.add_argument(
        "--lab-dir",
        help="use the lab in this directory (its kubeconfig and ssh_config) unless given explicitly",
    )
    parser.add_argument("--accept-host-keys", metavar="FILE",
                        help="host keys verified out of band: lines 'NODE [KEYTYPE] SHA256:...'; "
                             "an unknown key listed there is trusted (added to known_hosts), any "
                             "other unknown key is refused; a changed key always is")
    local = parser.add_mutually_exclusive_group()
    local.add_argument("--local-node", metavar="NAME",
                       help="this machine is node NAME: read and repair it locally, not over SSH "
                            "(default: recognised by hostname and address)")
    local.add_argument("--no-local", action="store_true",
                       help="reach every node over SSH, even the one this runs on")


def out(text: str = "", file: TextIO | None = None) -> None:
    from clusterfix_tui.core.redact import redact

    print(redact(text), file=file or sys.stdout, flush=True)


_say = out  # for functions whose `out` parameter is the stream


def print_plan(plan: Any, dest: TextIO = sys.stdout) -> None:
    from clusterfix_tui.core.fixes.engine import is_opt_in

    out(f"\n=== step {plan.step}: {plan.title}", dest)
    for f in plan.findings:
        out(f"  finding {f.code} on {f.node}: {f.title}", dest)
    for note in plan.notes:
        out(f"  note: {note}", dest)
    if plan.nothing_to_do:
        out("  nothing to do", dest)
        return
    for a in plan.actions:
        tag = " [OPT-IN, not selected by default]" if is_opt_in(a) else ""
        ro = "" if a.mutating else " (read-only)"
        out(f"  [{a.id}] on {a.target} ({a.kind}){ro}{tag}", dest)
        out(f"      $ {a.command}", dest)
        if a.why:
            out(f"      why: {a.why}", dest)
        if a.risk:
            out(f"      risk: {a.risk}", dest)
        pre = a.precondition
        if pre is not None:  # re-checked right before the action runs
            out(f"      check first ({pre.kind}): $ {pre.command}", dest)
        if a.rollback is not None:
            out(f"      rollback: $ {a.rollback.command}", dest)
        elif a.mutating and a.rollback_note:
            out(f"      rollback: none automatic: {a.rollback_note}", dest)


def ask(question: str, inp: TextIO | None = None, out: TextIO | None = None) -> str:
    """Ask on the terminal; returns "y", "s" or "n". EOF counts as 'n' (stop)."""
    inp = inp or sys.stdin
    out = out or sys.stdout
    while True:
        out.write(question)
        out.flush()
        line = inp.readline()
        if not line:
            return "n"
        a = line.strip().lower()
        if a in ("y", "yes"):
            return "y"
        if a in ("s", "skip"):
            return "s"
        if a in ("n", "no", "q", "quit"):
            return "n"
        out.write("  answer y (run), s (skip this step) or n (stop here)\n")


def print_checks(results: list[Any], out: TextIO = sys.stdout) -> None:
    """Validation results, one line each, then the count (validate and fix print the same)."""
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        hint = f"  [fix: {r.fix_step}]" if (not r.passed and r.fix_step) else ""
        _say(f"{mark}  {r.name:<15} {r.target:<30} {r.detail}{hint}", out)  # redacted
    bad = sum(1 for r in results if not r.passed)
    _say(f"{len(results) - bad}/{len(results)} checks passed", out)
