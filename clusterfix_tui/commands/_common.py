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


def terminal_safe(text: str) -> str:
    """`text` as the terminal gets it: control characters other than newline and tab made
    visible (\\x1b ...): a node's output (an ANSI/OSC escape sequence, a carriage return that
    overwrites the line before it, NUL bytes) never drives the admin's terminal."""
    from clusterfix_tui.core.report.text import _visible

    return _visible(text)


def out(text: str = "", file: TextIO | None = None) -> None:
    from clusterfix_tui.core.redact import redact

    print(terminal_safe(redact(text)), file=file or sys.stdout, flush=True)


_say = out  # for functions whose `out` parameter is the stream


def finding_group_lines(groups: Any, verbose: bool = False, indent: str = "  ",
                        line: Any = None) -> list[str]:
    """One line per cause: a group of findings sharing one cause across nodes is one line naming
    the cause and counting the nodes (listed, abbreviated), each node's own finding under it
    with `verbose`. `line(finding_or_group, where)` renders the one line (where: "on NODE", or
    "" for a group: its title counts the nodes)."""
    from clusterfix_tui.core.group import all_nodes_text, nodes_text

    if line is None:
        def line(x: Any, where: str) -> str:
            return f"finding {x.code}{' ' + where if where else ''}: {x.title}"
    out_lines: list[str] = []
    for g in groups:
        if not g.grouped:
            f = g.findings[0]
            out_lines.append(f"{indent}{line(f, f'on {f.node}')}")
            continue
        out_lines.append(f"{indent}{line(g, '')}")
        if verbose:
            out_lines.append(f"{indent}    nodes: {all_nodes_text(g.nodes)}")
            for f in g.findings:
                out_lines.append(f"{indent}    - {line(f, f'on {f.node}')}")
        else:
            out_lines.append(f"{indent}    nodes: {nodes_text(g.nodes)} (every node's finding: "
                             f"--verbose)")
    return out_lines


def _wrap_nodes(label: str, nodes: list[str], indent: str) -> list[str]:
    import textwrap

    return textwrap.wrap(", ".join(nodes), width=100, initial_indent=f"{indent}{label}",
                         subsequent_indent=indent + " " * len(label), break_on_hyphens=False)


def _print_action(fold: Any, dest: TextIO) -> None:
    """One action, or identical actions on several nodes shown once with every node they run on:
    the command, why, risk, check and rollback are byte-identical across those nodes."""
    from clusterfix_tui.core.fixes.engine import is_opt_in
    from clusterfix_tui.core.group import sorted_nodes

    a = fold.first
    tag = " [OPT-IN, not selected by default]" if is_opt_in(a) else ""
    ro = "" if a.mutating else " (read-only)"
    if len(fold.actions) == 1:
        out(f"  [{a.id}] on {a.target} ({a.kind}){ro}{tag}", dest)
    else:
        n = len(fold.actions)
        out(f"  [{fold.ids_text()}] on each of {n} nodes ({a.kind}){ro}{tag}", dest)
        for ln in _wrap_nodes("on: ", sorted_nodes(fold.nodes), "      "):
            out(ln, dest)
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


def print_plan(plan: Any, dest: TextIO = sys.stdout, verbose: bool = False) -> None:
    """A step's plan: its findings one line per cause, then its actions as the plan's entries
    (core.group.plan_entries: the actions repairing one grouped cause are one entry). Every
    action that can run is printed with its exact command; actions identical but for their node
    are printed once with every node they run on (`verbose`: each action on its own)."""
    from clusterfix_tui.core.group import FoldedAction, fold_actions, group_findings, plan_entries

    out(f"\n=== step {plan.step}: {plan.title}", dest)
    groups = group_findings(plan.findings)
    for ln in finding_group_lines(groups, verbose):
        out(ln, dest)
    for note in plan.notes:
        out(f"  note: {note}", dest)
    if plan.nothing_to_do:
        out("  nothing to do", dest)
        return
    by_id = {a.id: a for a in plan.actions}
    entries = plan_entries(plan, groups)

    def show(actions: list[Any]) -> None:
        folds = [FoldedAction((a,)) for a in actions] if verbose else fold_actions(actions)
        for fold in folds:
            _print_action(fold, dest)

    loose: list[Any] = []  # consecutive actions of no grouped cause, folded together
    shown = 0
    grouped = False

    def show_loose() -> None:
        if loose and grouped:  # after a group's entry: say these are not part of it
            out(f"  -- other action(s): {len(loose)}", dest)
        show(loose)

    for e in entries:
        acts = [by_id[i] for i in e["action_ids"]]
        shown += len(acts)
        if e["group"] is None:
            loose.extend(acts)
            continue
        show_loose()
        loose = []
        grouped = True
        out(f"  -- {e['title']}: {len(acts)} action(s) on {e['count']} node(s)", dest)
        show(acts)
    show_loose()
    if shown != len(plan.actions):  # plan_entries lists every action once; never print less
        show([a for a in plan.actions if a.id not in {i for e in entries for i in e["action_ids"]}])


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


def print_checks(results: list[Any], out: TextIO = sys.stdout, verbose: bool = False) -> None:
    """Validation results, then the count (validate and fix print the same). One line per
    failing check; passing checks of one kind on many targets are one line, their targets
    counted (`verbose`: one line per check). A failing check is never folded into a pass."""
    from clusterfix_tui.core.group import nodes_text

    def line(r: Any) -> str:
        mark = "PASS" if r.passed else "FAIL"
        hint = f"  [fix: {r.fix_step}]" if (not r.passed and r.fix_step) else ""
        return f"{mark}  {r.name:<15} {r.target:<30} {r.detail}{hint}"

    passed: dict[str, list[Any]] = {}
    order: list[Any] = []  # a failing result, or the name of a kind of passing check
    for r in results:
        if r.passed and not verbose:
            if r.name not in passed:
                passed[r.name] = []
                order.append(r.name)
            passed[r.name].append(r)
        else:
            order.append(r)
    for item in order:
        if not isinstance(item, str):
            _say(line(item), out)  # redacted
            continue
        rs = passed[item]
        if len(rs) == 1:
            _say(line(rs[0]), out)
        else:
            _say(f"PASS  {item:<15} {f'{len(rs)} targets':<30} "
                 f"{nodes_text([r.target for r in rs])} (each: --verbose)", out)
    bad = sum(1 for r in results if not r.passed)
    _say(f"{len(results) - bad}/{len(results)} checks passed", out)
