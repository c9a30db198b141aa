"""`clusterfix-tui fix`: the runbook, headless.

diagnose -> each step in the runbook's order (or only the named ones): print the plan (the exact
commands per node, why, risk, rollback), ask y / s / n on the terminal unless --yes (so it works
over plain ssh), run with streamed output -> wait -> validate -> summary.
--dry-run prints and journals the plans and changes nothing (the runtime's dry-run runner).

Exit code: 0 the cluster validates healthy at the end, 1 still failing (or a dry run of a broken
cluster), 2 could not run, 3 incomplete: a node was left out (not reached over SSH) or a check
failed in the last diagnosis, so the session cannot call the cluster healthy or fixed whatever it
did elsewhere, 130 stopped by
Ctrl+C / SIGTERM / SIGHUP (the running command is killed on its node, the journal ends with
session_end "aborted"; a second Ctrl+C exits at once).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import signal
import sys
import threading
from typing import Any

from clusterfix_tui.commands._common import (
    add_connection_flags,
    ask,
    finding_group_lines,
    print_plan,
)
from clusterfix_tui.commands._common import out as _out


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--step", action="append", metavar="NAME", default=None,
                        help="run only this step (repeatable): iptables, cni_bridge, pods, "
                             "worker_kubeconfig, host_network")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print and journal the plans, change nothing")
    mode.add_argument("--yes", action="store_true",
                      help="approve every step's default actions without asking")
    parser.add_argument("--opt-in", action="append", metavar="ACTION_ID", default=[],
                        help="also approve this opt-in action (e.g. the probe workaround); "
                             "STEP:NODE:KIND as printed for many nodes approves it on each; "
                             "'all' approves every opt-in action")
    parser.add_argument("--journal", metavar="PATH",
                        help="journal file (default: ./clusterfix-session-<time>.jsonl)")
    parser.add_argument("--report", metavar="PATH",
                        help="write a session report (format from the extension: .md .html "
                             ".json .xml)")
    parser.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="how long validation retries before it reports failure (default 60)")
    parser.add_argument("--no-validate", action="store_true", help="skip the final validation")
    parser.add_argument("--max-passes", type=int, default=3, metavar="N",
                        help="after the steps, re-diagnose and run another pass for the steps "
                             "that still have something to do, up to N passes in all "
                             "(default 3; never repeats an action that failed)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="list every node's finding and every action on its own (by "
                             "default findings sharing one cause across nodes are one line and "
                             "identical commands are printed once with every node they run on)")


def _default_journal_path() -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return os.path.abspath(f"clusterfix-session-{stamp}.jsonl")


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.model import STEP_ORDER

    steps = args.step or list(STEP_ORDER)
    unknown = [s for s in steps if s not in STEP_ORDER]
    if unknown:
        _out(f"clusterfix-tui fix: unknown step(s) {', '.join(unknown)}; steps: "
             f"{', '.join(STEP_ORDER)}", sys.stderr)
        return 2
    journal_path = args.journal or _default_journal_path()
    try:
        journal = Journal(journal_path)
    except OSError as exc:
        _out(f"clusterfix-tui fix: cannot write the journal {journal_path}: {exc}", sys.stderr)
        return 2
    _out(f"journal: {journal_path}", sys.stderr)
    try:
        from clusterfix_tui.runtime import build_runtime, local_flags

        rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                           ssh_config=args.ssh_config, lab_dir=args.lab_dir,
                           dry_run=bool(args.dry_run),
                           **local_flags(args))
    except Exception as exc:  # noqa: BLE001
        journal.write("error", message=f"cannot build the runtime: {exc}", where="fix")
        journal.close()
        _out(f"clusterfix-tui fix: cannot connect: {exc}", sys.stderr)
        return 2
    cancel = args.cancel = threading.Event()
    previous = _stop_on_signals(cancel, rt)
    try:
        return _run(args, rt, journal, steps)
    except KeyboardInterrupt:  # the second Ctrl+C: out at once, the journal still closed
        try:
            journal.write("note", text="second interrupt: exited at once")
            if not any(e.get("type") == "session_end" for e in journal.events):
                from clusterfix_tui.core.record import replay

                journal.write("session_end", verdict="aborted",
                              summary=replay(list(journal.events)).summary())
        except Exception:  # noqa: BLE001, S110 - exiting at once matters more
            pass
        _out("interrupted twice: exited at once", sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            rt.close()
        finally:
            journal.close()
        if args.report:
            _write_report(journal_path, args.report)


EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


def _stop_on_signals(cancel: threading.Event, rt: Any) -> dict[int, Any]:
    """Ctrl+C, SIGTERM, SIGHUP: stop after the running command, which is killed on its node
    (its command_end says so), then step_end and session_end "aborted" are journaled. A
    second Ctrl+C exits at once (KeyboardInterrupt). Returns the handlers to restore."""

    def on_signal(signum: int, _frame: Any) -> None:
        if cancel.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        cancel.set()
        stop = getattr(rt.shells, "interrupt", None)
        if callable(stop):
            stop()
        name = signal.Signals(signum).name
        os.write(2, f"\n{name}: stopping; the running command is killed on its node (Ctrl+C "
                    f"again to exit at once)\n".encode())

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (tests driving run() in a thread)
            break
    return previous


def _interrupted(args: argparse.Namespace) -> bool:
    cancel = getattr(args, "cancel", None)
    return bool(cancel is not None and cancel.is_set())


def _run(args: argparse.Namespace, rt: Any, journal: Any, steps: list[str]) -> int:
    """A printer and prompter over core.flow.RepairFlow: every rule (when to re-diagnose,
    re-plan, converge, validate) is the flow's."""
    from clusterfix_tui.commands._common import print_checks as print_human
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.flow import RepairFlow
    from clusterfix_tui.core.session import RepairSession

    session = RepairSession(rt.api, rt.shells, rt.runner, journal, mode="headless",
                            dry_run=bool(args.dry_run), prober=rt.prober)
    if not args.dry_run:
        _warm_api_writes(rt.api)
    # headless, no one looks at the diagnoses made between steps: each one reads what the step
    # it is made for reads (the wizard shows every diagnosis it makes: it reads everything)
    flow = RepairFlow(session, steps=steps, max_passes=args.max_passes,
                      settle_timeout=args.wait, lean_rediagnosis=True)
    try:
        info = flow.cluster_info()
    except Exception as exc:  # noqa: BLE001
        session._start()
        journal.write("error", message=f"Kubernetes API: {exc}", where="fix")
        flow.finish(aborted=True)
        _out(f"clusterfix-tui fix: the Kubernetes API does not answer: {exc}", sys.stderr)
        return 2
    _out(f"cluster: {info.get('context')} {info.get('server')} {info.get('version')} "
         f"({info.get('node_count')} nodes){'  [DRY RUN]' if args.dry_run else ''}")

    conns = flow.connect(
        on_node=lambda c: _out(f"  {c.node:<20} {c.state}{': ' + c.detail if c.detail else ''}",
                               sys.stderr))
    if not conns:
        flow.finish(aborted=True)
        _out("clusterfix-tui fix: the cluster has no nodes", sys.stderr)
        return 2
    for c in flow.leave_out_unconnected():
        _out(f"left out {c.node}: {c.state} ({c.detail})", sys.stderr)
    if not any(c.state == "connected" for c in conns):
        flow.finish(aborted=True)
        _out("clusterfix-tui fix: no node could be reached over SSH", sys.stderr)
        return 2

    before = None
    try:
        if args.no_validate:
            diag = flow.diagnose()
        else:
            # the "before" column of the report's validation table (what fails before anything
            # runs), read alongside the diagnosis: both only read
            diag, before = flow.diagnose_and_validate_before(
                cancel=getattr(args, "cancel", None))
    except Exception as exc:  # noqa: BLE001
        journal.write("error", message=f"diagnosis failed: {exc}", where="diagnose")
        flow.finish(aborted=True)
        _out(f"clusterfix-tui fix: diagnosis failed: {exc}", sys.stderr)
        return 2
    if _interrupted(args):
        verdict = flow.finish(aborted=True)
        _out(f"\nstopped by a signal; verdict: {verdict}", sys.stderr)
        return EXIT_INTERRUPTED
    if getattr(diag, "error", None):
        flow.finish(aborted=True)
        _out(f"clusterfix-tui fix: could not diagnose: {diag.error}", sys.stderr)
        return 2
    _print_findings(diag.findings, bool(getattr(args, "verbose", False)))
    if before is not None:
        failed = [r for r in before if not r.passed]
        _out(f"validation before repair: {len(before) - len(failed)}/{len(before)} checks pass"
             + (": failing " + ", ".join(sorted({f"{r.name}@{r.target}" for r in failed}))
                if failed else ""))

    from clusterfix_tui.core.redact import LineRedactor

    redact_line = LineRedactor()  # node output is a secret's way to the terminal

    def on_line(node: str, stream: str, line: str) -> None:
        _out(f"    [{node}]{' !' if stream == 'stderr' else ''} {redact_line(line, (node, stream))}")

    def on_wait(failing: list[Any], left: float) -> None:
        bad = [f"{r.name}@{r.target}" for r in failing]
        _out(f"  waiting ({int(left)}s left): {len(bad)} check(s) failing: {', '.join(bad[:4])}"
             f"{' ...' if len(bad) > 4 else ''}", sys.stderr)

    for name in steps:
        try:
            get_step(name)
        except ImportError:
            journal.write("note", text=f"step {name} is not available in this build")
            _out(f"\n=== step {name}: not available in this build", sys.stderr)
    stopped = False
    while True:
        if flow.pass_no > 1:
            _out(f"\n##### pass {flow.pass_no}: {', '.join(flow.pass_steps())}")
        for name in flow.pass_steps():
            stopped = _one_step(args, flow, journal, name, on_line, stopped)
            if _interrupted(args):
                stopped = True
        if stopped:
            break
        more = flow.next_pass(on_wait=on_wait, cancel=args.cancel,
                              validate_alongside=not args.no_validate)
        if not more:
            break

    if _interrupted(args):
        verdict = flow.finish(aborted=True)
        _out(f"\nstopped by a signal; verdict: {verdict} (undo what ran: clusterfix-tui rollback "
             f"--journal JOURNAL)", sys.stderr)
        return EXIT_INTERRUPTED
    if stopped:
        verdict = flow.finish(aborted=True)
        _out(f"\nstopped by the user; verdict: {verdict}")
        return 1
    if args.no_validate:
        verdict = flow.finish()
        _out(f"\nverdict: {verdict} (validation skipped)")
        _say_incomplete(flow)
        return EXIT_INCOMPLETE if verdict == "incomplete" else (
            0 if verdict in ("healthy", "fixed") else 1)

    _out("\nvalidating ...")
    results = flow.validate(on_wait=on_wait, cancel=args.cancel)
    if _interrupted(args):
        verdict = flow.finish(aborted=True)
        _out(f"\nstopped by a signal during validation; verdict: {verdict}", sys.stderr)
        return EXIT_INTERRUPTED
    print_human(results, verbose=bool(getattr(args, "verbose", False)))
    verdict = flow.finish()
    record = flow.record()
    passes = record.passes
    _out(f"\nverdict: {verdict} after {passes} pass{'es' if passes != 1 else ''}")
    for n, entries in record.passes_steps().items():
        _out(f"  pass {n}: " + ", ".join(f"{e['step']}={e['status']}" for e in entries))
    _say_incomplete(flow)
    if verdict == "incomplete":
        return EXIT_INCOMPLETE
    return 0 if results and all(r.passed for r in results) else 1


EXIT_INCOMPLETE = 3


def _warm_api_writes(api: Any) -> None:
    """The Kubernetes client's generated API classes are imported only when the first write is
    made (transports/kube.py: ~1.2 s of CPU, ~280 models, that reads never need). A repair's
    first write comes seconds later, after the diagnosis, which mostly waits on the nodes: the
    import runs in a thread meanwhile, so the first write does not wait for it (the import
    lock makes a write that comes first wait for the import, as it would have run it). Only
    imports: nothing is read or written; a failure leaves it to the first write, as before.
    What the import made (~80k objects) joins the start-up freeze (core.diagnose.
    freeze_late_imports: at once, or when the diagnosis running then ends), so the full
    collection ending each later diagnosis does not walk it again."""
    if not type(api).__module__.endswith("transports.kube"):
        return

    def warm() -> None:
        try:
            from kubernetes.client import AppsV1Api, CoreV1Api  # noqa: F401
        except Exception:  # noqa: BLE001, S110 - the first write imports it (and says why)
            return
        from clusterfix_tui.core.diagnose import freeze_late_imports

        freeze_late_imports()

    threading.Thread(target=warm, name="cfx-warm-api-writes").start()


def _print_findings(findings: list[Any], verbose: bool) -> None:
    """The findings before repair, one line per cause (core/group.py)."""
    from clusterfix_tui.core.group import group_findings

    groups = group_findings(findings)
    causes = "" if len(groups) == len(findings) else f" from {len(groups)} cause(s)"
    _out(f"\n{len(findings)} finding(s){causes} before repair:")

    def line(x: Any, where: str) -> str:
        return (f"[{x.severity}] {x.code}{' ' + where if where else ''}: {x.title}"
                + (f"  (step {x.step})" if x.step else ""))

    for ln in finding_group_lines(groups, verbose, line=line):
        _out(ln)


def _say_incomplete(flow: Any) -> None:
    record = flow.record()
    missing = record.not_diagnosed()
    if missing:
        _out(f"INCOMPLETE: {len(missing)} node(s) not diagnosed: {', '.join(missing)}; the "
             "verdict cannot cover them (their API and NodePort checks are in the validation)",
             sys.stderr)
    failed = record.checks_not_run()
    if failed:
        _out(f"INCOMPLETE: {len(failed)} check(s) failed in the last diagnosis, so what it found "
             "is not all there was to find:", sys.stderr)
        for e in failed[:20]:
            _out(f"  check error: {e}", sys.stderr)
        if len(failed) > 20:
            _out(f"  ... and {len(failed) - 20} more (all in the journal and the report)", sys.stderr)


def _one_step(args: argparse.Namespace, flow: Any, journal: Any, name: str,
              on_line: Any, stopped: bool) -> bool:
    """Plan one step for approval, print it, ask, run it. Returns whether the user stopped."""
    from clusterfix_tui.core.fixes import get_step

    try:
        get_step(name)
    except ImportError:
        return stopped
    try:
        plan = flow.plan_for_approval(name)
    except Exception as exc:  # noqa: BLE001 - a step that cannot plan must not end the session
        journal.write("error", message=f"could not plan step {name}: {exc}", where=name)
        _out(f"\n=== step {name}: could not plan it: {exc}", sys.stderr)
        return stopped
    if stopped or _interrupted(args):
        flow.skip(plan, "the run was stopped earlier")
        return True
    print_plan(plan, verbose=bool(getattr(args, "verbose", False)))
    if plan.nothing_to_do:
        flow.skip(plan, "nothing to do")
        return False
    approved = flow.approvable_ids(plan, args.opt_in)
    if args.dry_run:
        by = "--dry-run"
    elif args.yes:
        by = "--yes"
    else:
        answer = ask(f"run step {name} ({len(approved)} action(s))? [y/s/n] ")
        if answer == "s":
            flow.skip(plan, "skipped by the user")
            return False
        if answer == "n":
            flow.skip(plan, "the user stopped the run")
            return True
        by = "user"
    if not approved:
        flow.skip(plan, "only opt-in actions, none selected")
        return False
    _out(f"--- running {name}{' (dry run: nothing is changed)' if args.dry_run else ''}")
    outcome = flow.apply(plan, approved, on_line=on_line, by=by,
                         cancel=getattr(args, "cancel", None))
    _out(f"--- {name}: {outcome.status}: {outcome.message}")
    for o in outcome.actions:
        if o.status == "failed" and o.result is not None:
            _out(f"    {o.action_id} failed: exit {o.result.exit_code} "
                 f"{(o.result.error or o.result.stderr or '').strip()[-300:]}")
        elif o.status == "already-done" or (o.status == "skipped" and o.detail
                                             and o.detail != "not approved"):
            _out(f"    {o.action_id} {o.status}: {o.detail}")
    return False


def _write_report(journal_path: str, report_path: str) -> None:
    try:
        from clusterfix_tui.core import report as _report
        from clusterfix_tui.core.journal import Journal
    except ImportError:
        _out("report: core/report.py is not available; no report written", sys.stderr)
        return
    try:
        fmt = _report.format_for_path(report_path) if hasattr(_report, "format_for_path") \
            else "md"
        text = _report.render(Journal.read(journal_path), fmt)
        if hasattr(_report, "write_private"):
            _report.write_private(report_path, text)
        else:
            fd = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        _out(f"report: {report_path}", sys.stderr)
    except Exception as exc:  # noqa: BLE001
        _out(f"report: could not render {report_path}: {exc}", sys.stderr)
