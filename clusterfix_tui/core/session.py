"""RepairSession: the one flow both the wizard and the headless `fix` drive (docs/architecture.md).

Blocking methods; the UI calls them from thread workers. Everything the session learns or does
goes into the journal: session_start (on the first call), node_left_out, diagnosis, plan,
decision, command_start/command_end, step_end, validation, note, error, session_end.
"""

from __future__ import annotations

import concurrent.futures
import getpass
import inspect
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.model import CheckResult, Plan, StepOutcome
from clusterfix_tui.core.ports import HostKeyUnknown, conn_state, host_key

NodeLineCallback = Callable[[str, str, str], None]

CONN_STATES = (
    "pending", "connected", "auth-failed", "unreachable", "host-key-unknown",
    "host-key-changed", "sudo-password", "error",
)


@dataclass(frozen=True)
class NodeConn:
    node: str
    address: str | None
    state: str  # one of CONN_STATES
    detail: str = ""
    host_key: str | None = None  # "ssh-ed25519 SHA256:..." when state is host-key-unknown/changed
    transport: str = "ssh"  # "local": the node this runs on, read without SSH
    # whose key host_key is (host-key-unknown): the node itself, or the jump host it goes through
    key_host: str | None = None
    key_address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "address": self.address, "state": self.state,
                "detail": self.detail, "host_key": self.host_key, "transport": self.transport}


def _internal_ip(node: dict[str, Any]) -> str | None:
    for addr in (node.get("status") or {}).get("addresses") or ():
        if addr.get("type") == "InternalIP":
            return addr.get("address")
    return None


def _conn_state(exc: BaseException) -> tuple[str, str | None]:
    key = host_key(exc) if isinstance(exc, HostKeyUnknown) else None
    return conn_state(exc), (str(key) if key is not None else None)


def _key_owner(exc: BaseException) -> tuple[str | None, str | None]:
    """(host, address) whose unknown key `exc` is about: the node's or a jump host's."""
    key = host_key(exc) if isinstance(exc, HostKeyUnknown) else None
    return (key.node, key.address) if key is not None else (None, None)


def _call_with_supported(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call fn with only the keyword arguments its signature accepts (the diagnose and validate
    entry points grow parameters independently)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(*args, **kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(*args, **kwargs)
    return fn(*args, **{k: v for k, v in kwargs.items() if k in params})


def sections_only_for() -> dict[str, tuple[str, ...]]:
    """facts section -> the only steps that read it (each check module's ONLY_FOR): what a
    re-diagnosis made to plan another step may leave out."""
    from clusterfix_tui.core.checks import _check_modules

    out: dict[str, tuple[str, ...]] = {}
    for mod in _check_modules():
        for sec, steps in getattr(mod, "ONLY_FOR", {}).items():
            out[sec] = tuple(dict.fromkeys(out.get(sec, ()) + tuple(steps)))
    return out


def unread_for(diagnosis: Any, step: str | None) -> dict[str, str]:
    """The sections `diagnosis` left out that `step` reads (None: the whole diagnosis, every
    step and the verdict): {section: why}. Empty = the diagnosis is enough for it."""
    left = dict(getattr(diagnosis, "sections_left_out", None) or {})
    if not left:
        return {}
    only = sections_only_for()
    return {sec: why for sec, why in left.items()
            if step is None or sec not in only or step in only[sec]}


class RepairSession:
    def __init__(
        self,
        api: Any,
        shells: Any,
        runner: Any,
        journal: Any,
        *,
        mode: str = "headless",
        dry_run: bool = False,
        prober: Any = None,
    ) -> None:
        self.api = api
        self.shells = shells
        self.runner = runner
        self.journal = journal
        self.mode = mode
        self.dry_run = bool(dry_run or getattr(runner, "dry_run", False))
        self.prober = prober
        self.session_id = uuid.uuid4().hex[:12]
        self.conns: dict[str, NodeConn] = {}
        self.left_out: dict[str, str] = {}
        self.diagnosis: Any = None
        self.before: Any = None  # the first diagnosis
        self.plans: dict[str, Plan] = {}
        self.outcomes: dict[str, StepOutcome] = {}
        self.validation: list[CheckResult] | None = None
        self._host_key_errors: dict[str, BaseException] = {}
        self._started = False
        self._finished: str | None = None
        self._state_before: set[str] = set()  # nodes whose "before" node_state is journaled
        # how many times the session ran something on the cluster (applies, rollbacks,
        # validations); the facts of a diagnosis read at the current count still describe the
        # nodes, so the "before" state is captured from them instead of read again
        self._runs = 0
        self._facts_read: tuple[Any, int] | None = None  # (diagnosis, self._runs when read)
        # the "after" node state read alongside the "after" validation: (self._runs then, state)
        self._after_read: tuple[int, dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._cluster: dict[str, Any] | None = None
        self.pass_no = 1  # the repair pass (core/flow.py converges in passes)
        from clusterfix_tui.core.fixes.preconditions import make_prechecker

        self.precheck = make_prechecker(api, shells)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        from clusterfix_tui import __version__

        try:
            cluster = self.cluster_info()
        except Exception as exc:  # the API may be down: still journal the start  # noqa: BLE001
            cluster = {"error": str(exc)}
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001
            user = "?"
        self.journal.write(
            "session_start", session_id=self.session_id, tool_version=__version__, user=user,
            host=socket.gethostname(), mode=self.mode, dry_run=self.dry_run, cluster=cluster,
        )
        from clusterfix_tui.core.identity import cluster_identity

        # who this session talks to: `rollback` compares it before replaying (core/identity.py)
        self.journal.write("cluster_identity", identity=cluster_identity(self.api))

    def cluster_info(self) -> dict[str, Any]:
        if self._cluster is not None:
            return self._cluster
        desc = dict(self.api.describe() or {})
        info: dict[str, Any] = {"context": desc.get("context"), "server": desc.get("server")}
        try:
            v = self.api.version() or {}
            info["version"] = v.get("gitVersion") or v.get("git_version") or str(v)
        except Exception as exc:  # noqa: BLE001
            info["version"] = None
            info["version_error"] = str(exc)
        info["node_count"] = len(self.api.list_nodes())
        if desc.get("kubeconfig"):
            info["kubeconfig"] = desc.get("kubeconfig")
            info["kubeconfig_source"] = desc.get("kubeconfig_source")
        self._cluster = info
        return info

    # -- connections ---------------------------------------------------------------------------

    def connect(self, on_node: Callable[[NodeConn], None] | None = None) -> list[NodeConn]:
        """API check, then SSH to every node in parallel; on_node(NodeConn) as each completes."""
        self._start()
        try:
            nodes = self.api.list_nodes()
        except Exception as exc:
            self.journal.write("error", message=f"Kubernetes API: {exc}", where="connect")
            raise
        targets = [(n["metadata"]["name"], _internal_ip(n)) for n in nodes]
        for name, addr in targets:
            self.conns[name] = NodeConn(name, addr, "pending")

        def one(name: str, addr: str | None) -> NodeConn:
            return self._connect_one(name, addr)

        results: list[NodeConn] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, max(1, len(targets)))) as ex:
            futs = [ex.submit(one, n, a) for n, a in targets]
            for fut in concurrent.futures.as_completed(futs):
                conn = fut.result()
                self.conns[conn.node] = conn
                results.append(conn)
                if on_node is not None:
                    try:
                        on_node(conn)
                    except Exception:  # noqa: BLE001, S110
                        pass
        for conn in results:
            if conn.state != "connected":
                self.journal.write("note", text=f"node {conn.node}: {conn.state}: {conn.detail}")
        order = {n: i for i, (n, _) in enumerate(targets)}
        return sorted(results, key=lambda c: order.get(c.node, 0))

    def _connect_one(self, name: str, addr: str | None) -> NodeConn:
        try:
            shell = self.shells(name, addr)
            res = shell.run("true", timeout=15)
            if not res.ok:
                detail = res.error or res.stderr.strip() or f"exit {res.exit_code}"
                state = "sudo-password" if "password" in detail.lower() else "error"
                return NodeConn(name, addr, state, detail)
            self._host_key_errors.pop(name, None)
            transport = getattr(shell, "transport", "ssh")
            if transport == "local":
                why = getattr(self.shells, "local_reason", "") or ""
                self.journal.write("note", text=f"node {name} is the machine this runs on: read "
                                   f"and repaired locally, not over SSH ({why or 'local'})",
                                   local_node=name)
            from clusterfix_tui.core.identity import node_identity

            self.journal.write("node_identity", identity=node_identity(self.shells, shell, name,
                                                                       addr))
            return NodeConn(name, addr, "connected", "", transport=transport)
        except Exception as exc:  # noqa: BLE001
            state, key = _conn_state(exc)
            if state == "host-key-unknown":
                self._host_key_errors[name] = exc
            key_host, key_address = _key_owner(exc)
            return NodeConn(name, addr, state, str(exc), key, key_host=key_host,
                            key_address=key_address)

    def accept_host_key(self, node: str) -> NodeConn:
        self._start()
        exc = self._host_key_errors.get(node)
        if exc is None:
            raise ValueError(f"no unknown host key pending for {node}")
        self.shells.accept_host_key(exc)
        self.journal.write(
            "note", text=f"host key of {node} accepted by the user: "
            f"{getattr(exc, 'key_type', '')} {getattr(exc, 'fingerprint', '')}",
        )
        prev = self.conns.get(node)
        conn = self._connect_one(node, prev.address if prev else None)
        self.conns[node] = conn
        return conn

    def leave_out(self, node: str, reason: str) -> None:
        self._start()
        self.left_out[node] = reason
        self.journal.write("node_left_out", node=node, reason=reason)

    # -- diagnosis and plans -------------------------------------------------------------------

    def diagnose(self, phase: str = "before", on_progress: Callable[..., None] | None = None) -> Any:
        self._start()
        from clusterfix_tui.core import diagnose as _diag

        skip = sorted(self.left_out)
        diagnosis = _call_with_supported(
            _diag.diagnose, self.api, self.shells, on_progress=on_progress,
            exclude=skip, leave_out=skip, skip_nodes=skip,
        )
        self.diagnosis = diagnosis
        self._facts_read = (diagnosis, self._runs)
        if self.before is None:
            self.before = diagnosis
        self.journal_diagnosis(diagnosis, phase)
        return diagnosis

    def refresh(self, on_progress: Callable[..., None] | None = None,
                leave_out: dict[str, str] | None = None) -> Any:
        """Re-diagnose after a step changed the cluster (pods recreated, rules rewritten), before
        re-planning. Journaled as a `diagnosis` with phase "refresh" (the "before" diagnosis of
        the journal stays the first one). `leave_out`: {facts section: why} not read this time
        (core/flow.py: only when the step it is made for does not read them); the journal's
        diagnosis event and a note say which, and why."""
        return self.adopt_refresh(*self.read_refresh(on_progress, leave_out=leave_out))

    def read_refresh(self, on_progress: Callable[..., None] | None = None,
                     leave_out: dict[str, str] | None = None) -> tuple[Any, int]:
        """A re-diagnosis read, not yet the session's: (diagnosis, self.runs when its read
        began). adopt_refresh() makes it the session's diagnosis and journals it; a read that is
        not adopted leaves no trace (RepairFlow drops one read while the cluster was still
        settling)."""
        self._start()
        from clusterfix_tui.core import diagnose as _diag

        runs = self._runs
        skip = sorted(self.left_out)
        extra: dict[str, Any] = {"leave_out_sections": dict(leave_out)} if leave_out else {}
        diagnosis = _call_with_supported(
            _diag.diagnose, self.api, self.shells, on_progress=on_progress,
            exclude=skip, leave_out=skip, skip_nodes=skip, **extra,
        )
        if leave_out and getattr(diagnosis, "sections_left_out", None) != dict(leave_out):
            # a diagnose() that cannot leave sections out read them all: say nothing was left out
            # only when that is what happened; anything else is a bug, never a silent gap
            if getattr(diagnosis, "sections_left_out", None):
                raise RuntimeError("the diagnosis left out other sections than asked")
        return diagnosis, runs

    def adopt_refresh(self, diagnosis: Any, runs: int) -> Any:
        """Make a read_refresh() diagnosis the session's (its facts current when nothing has
        run since its read began) and journal it as a "refresh" diagnosis."""
        self.diagnosis = diagnosis
        self._facts_read = (diagnosis, runs)
        self.journal_diagnosis(diagnosis, "refresh")
        return diagnosis

    def journal_diagnosis(self, diagnosis: Any, phase: str) -> None:
        left = dict(getattr(diagnosis, "sections_left_out", None) or {})
        self.journal.write(
            "diagnosis", phase=phase, pass_no=self.pass_no,
            findings=[f.to_dict() for f in diagnosis.findings],
            nodes=_node_summaries(diagnosis),
            error=getattr(diagnosis, "error", None),
            node_errors=dict(getattr(diagnosis, "node_errors", {}) or {}),
            **_shape_fields(diagnosis),
            **_dns_field(diagnosis),
            **({"sections_left_out": left} if left else {}),
            **({"check_errors": list(diagnosis.check_errors)}
               if getattr(diagnosis, "check_errors", None) else {}),
        )
        errs = list(getattr(diagnosis, "check_errors", None) or ())
        if errs:  # the report's errors say it, and the verdict cannot be healthy or fixed
            shown = "; ".join(errs[:10]) + (f"; and {len(errs) - 10} more" if len(errs) > 10 else "")
            self.journal.write("error", where="diagnose", message=(
                f"the {phase} diagnosis (pass {self.pass_no}): {len(errs)} check(s) failed, so "
                f"what it found is not all there was to find: {shown}"))
        for sec, why in sorted(left.items()):  # the report shows notes: say it there too
            self.journal.write("note", text=f"the {phase} diagnosis (pass {self.pass_no}) did not "
                               f"read {sec} on any node: {why}", sections_left_out=[sec])

    def build_plan(self, step: str) -> Plan:
        """The plan of `step` from the last diagnosis (its read-only look-ups done, the pods it
        would delete pinned by uid). Not journaled: a preview."""
        self._start()
        if self.diagnosis is None:
            raise RuntimeError("diagnose() before plan()")
        from clusterfix_tui.core.fixes import get_step
        from clusterfix_tui.core.fixes.preconditions import pin_pod_uids

        unread = unread_for(self.diagnosis, step)
        if unread:  # never plan from facts that were not read (core/flow.py re-reads first)
            raise RuntimeError(f"step {step} reads {', '.join(sorted(unread))}, which the last "
                               "diagnosis did not read: re-diagnose before planning it")
        step_obj = get_step(step)
        view = _WithoutLeftOut(self.diagnosis, set(self.left_out))
        gather = getattr(step_obj, "gather", None)
        if callable(gather):  # read-only look-ups the pure plan() needs (e.g. a Deployment)
            try:
                view.extra[step] = gather(self.api, view)
            except Exception as exc:  # noqa: BLE001
                self.journal.write("error", message=f"{step}: look-up failed: {exc}", where=step)
        return pin_pod_uids(step_obj.plan(view), self.api)

    def show_plan(self, plan: Plan) -> Plan:
        """Journal `plan` as put in front of the user for a decision, exactly as shown."""
        self._start()
        self.plans[plan.step] = plan
        self.journal.write("plan", step=plan.step, plan=plan.to_dict(), pass_no=self.pass_no)
        for note in plan.notes:
            self.journal.write("note", text=f"{plan.step}: {note}")
        return plan

    def plan(self, step: str, preview: bool = False) -> Plan:
        """The plan of `step` from the last diagnosis; journaled as shown for approval unless
        `preview` (looking at a plan is not deciding on it)."""
        plan = self.build_plan(step)
        return plan if preview else self.show_plan(plan)

    def apply(
        self,
        plan: Plan,
        approved_ids: list[str] | tuple[str, ...],
        on_line: NodeLineCallback | None = None,
        cancel: threading.Event | None = None,
        by: str = "user",
    ) -> StepOutcome:
        self._start()
        shown = self.plans.get(plan.step)
        if shown is None or shown.to_dict() != plan.to_dict():
            # what runs must be what was shown: journal the plan as it is about to run
            self.show_plan(plan)
        decision = "dry-run" if self.dry_run else "approved"
        self.journal.write("decision", step=plan.step, decision=decision,
                           action_ids=list(approved_ids), by=by, pass_no=self.pass_no)
        refused = self._identity_refusal(plan, approved_ids)
        if refused is not None:
            return refused
        post = None
        try:
            from clusterfix_tui.core.fixes import get_step

            step_obj = get_step(plan.step)
        except (KeyError, ImportError, AttributeError):
            step_obj = None
        after = getattr(step_obj, "after_apply", None)
        if callable(after):
            def post(outcome: StepOutcome) -> StepOutcome:
                return after(plan, outcome, self.api, on_line=on_line, cancel=cancel,
                             dry_run=self.dry_run)
        if not self.dry_run:  # the state of each node before the session's first change on it
            approved = set(approved_ids)
            self.capture_state("before", {a.target for a in plan.actions if a.id in approved
                                          and a.kind == "shell" and a.mutating})
        outcome: StepOutcome | None = None
        try:
            outcome = engine.apply_plan(plan, approved_ids, self.runner, self.journal, on_line,
                                        cancel, post=post, precheck=self.precheck,
                                        step_end={"pass_no": self.pass_no})
        finally:
            self._ran(outcome)
        self.outcomes[plan.step] = outcome
        return outcome

    def identity_differences(self, nodes: set[str]) -> list[str]:
        """What differs between the identities journaled at connect (the cluster; each of
        `nodes`: host key, boot_id, namespaces) and the ones read now (core/identity.py).
        A node not reachable now is not compared (its commands fail on their own)."""
        from clusterfix_tui.core import identity as ident

        then_cluster, then_nodes = ident.recorded(list(self.journal.events))
        then = {n: then_nodes[n] for n in nodes if n in then_nodes}

        def read(node: str) -> dict[str, Any] | None:
            was = then[node]
            try:
                shell = self.shells(node, was.get("address"))
                return ident.node_identity(self.shells, shell, node, was.get("address"))
            except Exception:  # noqa: BLE001
                return None

        # every node (one round trip each) and the cluster (the API) read at once, not in turn
        remote = sorted(n for n, was in then.items() if was.get("transport") != "local")
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, min(16, len(remote) + 1)),
                thread_name_prefix="cfx-identity") as ex:
            cluster_f = ex.submit(ident.cluster_identity, self.api) if then_cluster else None
            read_f = {n: ex.submit(read, n) for n in remote}
            now = {n: got for n, f in read_f.items() if (got := f.result()) is not None}
            now_cluster = cluster_f.result() if cluster_f is not None else None
        if now_cluster is not None and not now_cluster.get("kube_system_uid"):
            # the API does not answer now: that is not another cluster. The cluster is not
            # compared (as a node not reached now is not); the nodes still are, by host key and
            # boot, and an API action's own precondition reads the API and is skipped if it
            # cannot (a wrong cluster can only be told by an API that answers)
            self.journal.write("note", text="cluster identity not confirmed before this step: "
                               + str(now_cluster.get("error") or "the API did not answer"))
            then_cluster = now_cluster = None
        return ident.differences(then_cluster, now_cluster, then, now)

    def _identity_refusal(self, plan: Any, approved_ids: Any) -> StepOutcome | None:
        """Before anything of `plan` runs (again): the cluster and the nodes it touches must be
        the ones this session identified at connect. Else the apply is refused (journaled, the
        step failed, nothing run) and says what differs: a rebooted or replaced node may no
        longer hold the state the plan was built from."""
        if self.dry_run:
            return None
        approved = set(approved_ids)
        nodes = {a.target for a in plan.actions if a.id in approved and a.kind == "shell"}
        differs = self.identity_differences(nodes)
        if not differs:
            return None
        message = ("refused: the cluster or a node is not the one this session connected to "
                   "(" + "; ".join(differs) + "). Nothing ran; start a new session.")
        self.journal.write("error", message=f"{plan.step}: {message}", where=plan.step,
                           identity_differences=differs)
        outcome = StepOutcome(step=plan.step, status="failed", message=message)
        self.outcomes[plan.step] = outcome
        self.journal.write("step_end", step=plan.step, outcome=outcome.to_dict(),
                           pass_no=self.pass_no)
        return outcome

    def _ran(self, outcome: StepOutcome | None = None) -> None:
        """Something that can change the cluster ran: the last diagnosis's facts are no longer
        current. An apply whose outcome shows that no command started (every action skipped,
        cancelled before it ran, or found already done by its precondition, which only reads)
        changed nothing; any other outcome, or none (the apply raised), counts."""
        if self.dry_run:
            return
        if outcome is not None and not any(o.status in ("ok", "failed")
                                           for o in outcome.actions):
            return
        self._runs += 1

    def fresh_facts(self) -> dict[str, Any]:
        """The last diagnosis's NodeFacts (readable nodes) when nothing has run since it read
        them in this session; {} otherwise."""
        read = self._facts_read
        if read is None or read[0] is not self.diagnosis or read[1] != self._runs:
            return {}
        errors = getattr(self.diagnosis, "node_errors", {}) or {}
        return {n: f for n, f in (getattr(self.diagnosis, "facts", {}) or {}).items()
                if n not in errors}

    def capture_state(self, phase: str, nodes: set[str] | None = None) -> None:
        """Journal `node_state` (core/nodestate.py) for `nodes`: "before" once per node, before
        the session's first change there (from the diagnosis's facts when nothing has run
        since they were read, else read again); "after" for every node captured before (at
        the end), always read again: alongside the "after" validation when nothing has run
        since that read (validate()), else now."""
        from clusterfix_tui.core import nodestate

        if phase == "before":
            wanted = {n for n in (nodes or ()) if n not in self._state_before}
        else:
            wanted = set(self._state_before)
        if not wanted:
            return
        addrs = {n: (self.conns[n].address if n in self.conns else None) for n in wanted}
        after = self._after_read
        got = nodestate.journal_state(
            self.journal, phase, self.shells, addrs,
            known=self.fresh_facts() if phase == "before" else None,
            read_now=after[1] if phase == "after" and after is not None
            and after[0] == self._runs else None)
        if phase == "before":
            self._state_before.update(got)

    def skip(self, plan: Plan, reason: str = "", by: str = "user") -> StepOutcome:
        self._start()
        self.journal.write("decision", step=plan.step, decision="skipped", action_ids=[], by=by,
                           reason=reason, pass_no=self.pass_no)
        outcome = StepOutcome(step=plan.step, status="skipped",
                              message=reason or "skipped by the user")
        self.outcomes[plan.step] = outcome
        self.journal.write("step_end", step=plan.step, outcome=outcome.to_dict(),
                           pass_no=self.pass_no)
        return outcome

    def plan_rollback(self, step: str | None = None) -> engine.RollbackPlan:
        """The rollback of what this session ran for `step` (None: everything), newest first,
        replayed from the journal; journaled as shown for approval. Run it with apply_rollback:
        what it shows is what runs."""
        self._start()
        from clusterfix_tui.core.record import ran_actions

        plan, _ = engine.rollback_plan(ran_actions(list(self.journal.events), step), step)
        self.journal.write("plan", step=plan.step, plan=plan.to_dict(), rollback=True,
                           pass_no=self.pass_no)
        for n in plan.notes:
            self.journal.write("note", text=f"rollback {plan.step}: {n}")
        return plan

    def apply_rollback(
        self, plan: engine.RollbackPlan, approved_ids: list[str] | tuple[str, ...] | None = None,
        on_line: NodeLineCallback | None = None, cancel: threading.Event | None = None,
        by: str = "user",
    ) -> StepOutcome:
        """Run a rollback plan through the one apply path, journaled with its decision."""
        self._start()
        approved = list(approved_ids) if approved_ids is not None else [a.id for a in
                                                                       plan.actions]
        self.journal.write("decision", step=plan.step,
                           decision="dry-run" if self.dry_run else "approved",
                           action_ids=approved, by=by, rollback=True, pass_no=self.pass_no)
        refused = self._identity_refusal(plan, approved)
        if refused is not None:
            return refused
        outcome: StepOutcome | None = None
        try:
            # each rollback action's own precondition too (an ACCEPT never inserted is not
            # there to delete: already done, not a failed rollback), as the CLI's rollback does
            outcome = engine.apply_plan(plan, approved, self.runner, self.journal, on_line,
                                        cancel, step_end={"pass_no": self.pass_no},
                                        precheck=self.precheck)
        finally:
            self._ran(outcome)
        return outcome

    def rollback(
        self, step: str, on_line: NodeLineCallback | None = None,
        cancel: threading.Event | None = None, by: str = "user",
    ) -> StepOutcome:
        """Undo what this session ran for `step`, newest first: plan_rollback + apply_rollback."""
        return self.apply_rollback(self.plan_rollback(step), None, on_line, cancel, by=by)

    # -- validation and the end ----------------------------------------------------------------

    def validate(
        self, phase: str = "after", on_check: Callable[[CheckResult], None] | None = None
    ) -> list[CheckResult]:
        if phase != "after":
            return self.record_validation(phase, self.validation_results(on_check=on_check))
        return self.record_after(*self.validation_and_state(on_check=on_check))

    @property
    def runs(self) -> int:
        """How many applies/rollbacks that started a command this session has run."""
        return self._runs

    def validation_and_state(self, on_check: Callable[[CheckResult], None] | None = None
                             ) -> tuple[list[CheckResult], tuple[int, dict[str, Any]] | None]:
        """The "after" validation's results and, when this session changed nodes, their state
        read alongside it (both only read), as (self.runs then, state). Not journaled:
        record_after() journals both (the state at finish(), unless something ran since: then
        it is read again)."""
        if self.dry_run or not self._state_before:
            return self.validation_results(on_check=on_check), None
        from clusterfix_tui.core import nodestate

        runs = self._runs
        addrs = {n: (self.conns[n].address if n in self.conns else None)
                 for n in self._state_before}
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="cfx-state-after") as ex:
            state = ex.submit(nodestate.capture_nodes, self.shells, addrs)
            try:
                results = self.validation_results(on_check=on_check)
            finally:
                concurrent.futures.wait([state])
        return results, ((runs, state.result()) if state.exception() is None else None)

    def record_after(self, results: list[CheckResult],
                     state: tuple[int, dict[str, Any]] | None) -> list[CheckResult]:
        """Journal the "after" validation (validation_and_state()); keep the state read with it
        for finish()."""
        if state is not None:
            self._after_read = state
        return self.record_validation("after", results)

    def validation_results(self, on_check: Callable[[CheckResult], None] | None = None
                           ) -> list[CheckResult]:
        """Run the validation (core/validate.py), not journaled: record_validation() journals
        it. It only reads (the API, TCP connects from here, `ip route get`, a TCP connect and
        `kubectl get nodes` on the nodes): it does not make the last diagnosis's facts stale,
        so it may run alongside a diagnosis (RepairFlow.diagnose_and_validate_before)."""
        self._start()
        from clusterfix_tui.core import validate as _val

        snapshot = getattr(self.diagnosis, "snapshot", None)
        return list(_val.validate(
            self.api, self.shells, snapshot, on_check=on_check, prober=self.prober,
            skip_nodes=sorted(self.left_out),
        ))

    def record_validation(self, phase: str, results: list[CheckResult]) -> list[CheckResult]:
        """Journal a validation's results for `phase` ("before"/"after"); after a passing
        "after" validation, the temporary workarounds are reverted."""
        self._start()
        self.validation = list(results)
        self.journal.write("validation", phase=phase, results=[r.to_dict() for r in results])
        if phase == "after" and results and all(r.passed for r in results):
            self._revert_workarounds()
        return self.validation

    def validate_quiet(self) -> list[CheckResult]:
        """One validation that is not journaled (the retries while the cluster settles)."""
        from clusterfix_tui.core import validate as _val

        return list(_val.validate(self.api, self.shells, None, prober=self.prober,
                                  skip_nodes=sorted(self.left_out)))

    def _revert_workarounds(self) -> None:
        """Workarounds (e.g. the probe exec check) are undone once the real fix is validated,
        through the same rollback plan and apply path as any rollback."""
        from clusterfix_tui.core.record import ran_actions

        events = list(getattr(self.journal, "events", ()))
        ran = [ra for ra in ran_actions(events)
               if getattr(ra.action, "revert_after_validation", False) and ra.finished_ok]
        if not ran:
            return
        self.journal.write("note", text="validation passed: reverting the temporary workaround(s) "
                           + ", ".join(ra.action.id for ra in ran))
        for step in sorted({ra.step for ra in ran}):
            plan, _ = engine.rollback_plan([ra for ra in ran if ra.step == step], step)
            self.journal.write("plan", step=plan.step, plan=plan.to_dict(), rollback=True,
                               pass_no=self.pass_no)
            self.apply_rollback(plan, None, by="validation passed")

    def finish(self, aborted: bool = False) -> str:
        """Journal session_end. The verdict and the summary come from the journal's replay
        (core/record.py), the same record the report and the summary screen show."""
        self._start()
        if self._finished is not None:
            return self._finished
        from clusterfix_tui.core.record import replay, verdict_of

        if not self.dry_run and self._state_before:
            self.capture_state("after")  # after the session's last change
        record = replay(list(self.journal.events))
        verdict = verdict_of(record, aborted=aborted)
        summary = record.summary()
        summary["nodes_left_out"] = dict(self.left_out)
        summary["dry_run"] = self.dry_run
        self.journal.write("session_end", verdict=verdict, summary=summary)
        self._finished = verdict
        return verdict


class _WithoutLeftOut:
    """The diagnosis as a step sees it: findings on left-out nodes are not planned for."""

    def __init__(self, diagnosis: Any, left_out: set[str]) -> None:
        self._d = diagnosis
        self.findings = [f for f in diagnosis.findings if f.node not in left_out]
        facts = getattr(diagnosis, "facts", {}) or {}
        self.facts = {n: v for n, v in facts.items() if n not in left_out}
        self.snapshot = getattr(diagnosis, "snapshot", None)
        self.left_out = left_out
        self.extra: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._d, name)


def _node_summaries(diagnosis: Any) -> dict[str, Any]:
    to_dict = getattr(diagnosis, "to_dict", None)
    if callable(to_dict):
        try:
            nodes = to_dict().get("nodes")
            if isinstance(nodes, dict):
                return nodes
        except Exception:  # noqa: BLE001, S110 - fall back to the plain summary below
            pass
    out: dict[str, Any] = {}
    for name, facts in (getattr(diagnosis, "facts", {}) or {}).items():
        summary = getattr(facts, "summary", None)
        if callable(summary):
            try:
                out[name] = summary()
                continue
            except Exception:  # noqa: BLE001, S110
                pass
        out[name] = {"findings": sum(1 for f in diagnosis.findings if f.node == name)}
    return out


def _dns_field(diagnosis: Any) -> dict[str, Any]:
    """Cluster DNS as the API said it (core/dns.py's one line), for the journal and the report."""
    dns = getattr(getattr(diagnosis, "snapshot", None), "dns", None)
    summary = getattr(dns, "summary", None)
    return {"dns": summary()} if callable(summary) else {}


def _shape_fields(diagnosis: Any) -> dict[str, Any]:
    """The cluster shape and what was not checked on it (core/shape.py), for the journal."""
    shape = getattr(diagnosis, "shape", None)
    if shape is None:
        return {}
    from clusterfix_tui.core.shape import note_lines

    return {"shape": shape.summary(), "not_checked": note_lines(shape)}
