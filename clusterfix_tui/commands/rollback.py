"""`clusterfix-tui rollback --journal PATH [--step NAME] [--yes] [--dry-run]`.

Undoes what a session did, newest first, from its journal: every forward command that started
(including one whose process died while it ran) and has not been rolled back yet. Actions with no
automatic rollback are listed with their manual instructions. The rollback is appended to the same
journal. Exit code: 0 rolled back (or nothing to do), 1 some rollback failed, 2 could not run.
"""

from __future__ import annotations

import argparse
import sys

from clusterfix_tui.commands._common import add_connection_flags, terminal_safe


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--journal", required=True, metavar="PATH", help="the session's journal")
    parser.add_argument("--step", metavar="NAME", help="roll back only this step")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--yes", action="store_true", help="do not ask")
    mode.add_argument("--dry-run", action="store_true", help="print, change nothing")
    parser.add_argument("--force", action="store_true",
                        help="roll back even when the cluster or a node is not the one the "
                             "journal recorded (another cluster, a rebooted node, a changed "
                             "host key); each action's precondition is still re-checked")


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.commands._common import ask, print_plan
    from clusterfix_tui.core.fixes import engine
    from clusterfix_tui.core.fixes.preconditions import make_prechecker
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.record import ran_actions

    try:
        events = Journal.read(args.journal)
    except OSError as exc:
        print(f"clusterfix-tui rollback: cannot read {args.journal}: {exc}", file=sys.stderr)
        return 2
    from clusterfix_tui.core import identity as ident

    ran = ran_actions(events, args.step)
    plan, mapping = engine.rollback_plan(ran, args.step)
    # a runtime change is only undone in the boot it was made in (core/identity.py)
    forward = {ra.action.id: ra.action for ra in ran}
    plan = ident.guard_boot_bound(plan, {rid: forward[fid] for rid, fid in mapping.items()
                                         if fid in forward}, ident.recorded(events)[1])
    print_plan(plan, sys.stdout)  # exactly what runs below: the same plan object goes to apply_plan
    unfinished = [ra.action.id for ra in ran if ra.finished_ok is None]
    if unfinished:
        print(f"  note: never finished (the session died while they ran): "
              f"{', '.join(unfinished)}")
    if plan.nothing_to_do:
        print("nothing to roll back")
        return 0
    try:
        from clusterfix_tui.runtime import build_runtime, local_flags

        rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                           ssh_config=args.ssh_config, lab_dir=args.lab_dir,
                           dry_run=bool(args.dry_run),
                           **local_flags(args))
    except Exception as exc:  # noqa: BLE001
        print(f"clusterfix-tui rollback: cannot connect: {exc}", file=sys.stderr)
        return 2
    differs = _identity_differences(events, plan, rt)
    if differs:
        print("  the cluster or nodes are not the ones this journal was written against:")
        for line in differs:
            print(f"    - {line}")
        if not getattr(args, "force", False):
            print("rollback refused: not the same cluster/nodes (use --force to roll back "
                  "anyway; each action's precondition is re-checked before it runs)")
            rt.close()
            return 2
        print("  --force: rolling back anyway; each action's precondition decides")
    if not (args.yes or args.dry_run) and \
            ask(f"run these {len(plan.actions)} rollback action(s)? [y/n] ") != "y":
        print("not rolled back")
        rt.close()
        return 1
    journal = Journal(args.journal)
    try:
        journal.write("note", text=f"rollback requested from the command line"
                      f"{' for step ' + args.step if args.step else ''}"
                      f"{' (dry run)' if args.dry_run else ''}")
        if differs:
            journal.write("note", text="rollback with --force despite identity differences: "
                          + "; ".join(differs), identity_differences=differs)
        journal.write("plan", step=plan.step, plan=plan.to_dict(), rollback=True)
        approved = [a.id for a in plan.actions]
        journal.write("decision", step=plan.step, decision="dry-run" if args.dry_run
                      else "approved", action_ids=approved,
                      by="--yes" if args.yes else ("--dry-run" if args.dry_run else "user"),
                      rollback=True)

        from clusterfix_tui.core.redact import LineRedactor

        redact_line = LineRedactor()

        def on_line(node: str, stream: str, line: str) -> None:
            print(f"    [{node}]{' !' if stream == 'stderr' else ''} "
                  f"{terminal_safe(redact_line(line, (node, stream)))}", flush=True)

        outcome = engine.apply_plan(plan, approved, rt.runner, journal, on_line, None,
                                    precheck=make_prechecker(rt.api, rt.shells))
        if not args.dry_run:
            _capture_after(events, plan, rt, journal)
    finally:
        rt.close()
        journal.close()
    print(terminal_safe(f"rollback: {outcome.status}: {outcome.message}"))
    return 0 if outcome.status in ("changed", "unchanged", "dry-run") else 1


def _capture_after(events: list, plan: object, rt: object, journal: object) -> None:
    """The state of the nodes the rollback touched, after it: the report compares it with the
    session's "before" (core/nodestate.py); an empty diff means the node is back."""
    from clusterfix_tui.core import nodestate

    captured = nodestate.captured_before(events)
    nodes = {a.target for a in getattr(plan, "actions", ()) if a.kind == "shell"
             and a.target in captured}
    if nodes:
        nodestate.journal_state(journal, "after", rt.shells,  # type: ignore[attr-defined]
                                {n: None for n in nodes})


def _identity_differences(events: list, plan: object, rt: object) -> list[str]:
    """Compare the identities the journal recorded (cluster, and each node the plan touches)
    with what is reached now (core/identity.py). Empty when the journal recorded none."""
    from clusterfix_tui.core import identity as ident
    from clusterfix_tui.core.model import CLUSTER
    from clusterfix_tui.core.ports import HostKeyChanged, HostKeyUnknown

    then_cluster, then_nodes = ident.recorded(events)
    if then_cluster is None and not then_nodes:
        return []
    targets = {a.target for a in getattr(plan, "actions", ()) if a.target != CLUSTER}
    then_nodes = {n: v for n, v in then_nodes.items() if n in targets}
    now_cluster = ident.cluster_identity(rt.api) if then_cluster is not None else None
    now_nodes: dict[str, dict] = {}
    for node, then in then_nodes.items():
        try:
            shell = rt.shells(node, then.get("address"))
            now_nodes[node] = ident.node_identity(rt.shells, shell, node, then.get("address"))
        except (HostKeyChanged, HostKeyUnknown) as exc:
            now_nodes[node] = {"host_key": f"not trusted now: {exc}"}
        except Exception as exc:  # noqa: BLE001 - an unreachable node fails its own actions
            print(f"  note: {node}: cannot check its identity: {exc}")
    return ident.differences(then_cluster, now_cluster, then_nodes, now_nodes)
