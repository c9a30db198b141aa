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

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "address": self.address, "state": self.state,
                "detail": self.detail, "host_key": self.host_key}


def _internal_ip(node: dict[str, Any]) -> str | None:
    for addr in (node.get("status") or {}).get("addresses") or ():
        if addr.get("type") == "InternalIP":
            return addr.get("address")
    return None


def _conn_state(exc: BaseException) -> tuple[str, str | None]:
    key = host_key(exc) if isinstance(exc, HostKeyUnknown) else None
    return conn_state(exc), (str(key) if key is not None else None)


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
        self._lock = threading.Lock()
        self._cluster: dict[str, Any] | None = None

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
            return NodeConn(name, addr, "connected", "")
        except Exception as exc:  # noqa: BLE001
            state, key = _conn_state(exc)
            if state == "host-key-unknown":
                self._host_key_errors[name] = exc
            return NodeConn(name, addr, state, str(exc), key)

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
        if self.before is None:
            self.before = diagnosis
        self.journal.write(
            "diagnosis", phase=phase,
            findings=[f.to_dict() for f in diagnosis.findings],
            nodes=_node_summaries(diagnosis),
            error=getattr(diagnosis, "error", None),
            node_errors=dict(getattr(diagnosis, "node_errors", {}) or {}),
            **_shape_fields(diagnosis),
        )
        return diagnosis

    def refresh(self, on_progress: Callable[..., None] | None = None) -> Any:
        """Re-diagnose before planning a later step (earlier steps changed the cluster: pods
        were recreated, rules rewritten). The "before" diagnosis of the journal stays the first
        one; the refreshed findings are journaled with each plan (Plan.findings) and a note."""
        self._start()
        from clusterfix_tui.core import diagnose as _diag

        skip = sorted(self.left_out)
        diagnosis = _call_with_supported(
            _diag.diagnose, self.api, self.shells, on_progress=on_progress,
            exclude=skip, leave_out=skip, skip_nodes=skip,
        )
        self.diagnosis = diagnosis
        self.journal.write("note", text=f"re-diagnosed: {len(diagnosis.findings)} finding(s): "
                           + ", ".join(f"{f.code}@{f.node}" for f in diagnosis.findings))
        return diagnosis

    def plan(self, step: str) -> Plan:
        """A pure preview of `step` from the last diagnosis; journaled exactly as shown."""
        self._start()
        if self.diagnosis is None:
            raise RuntimeError("diagnose() before plan()")
        from clusterfix_tui.core.fixes import get_step

        step_obj = get_step(step)
        view = _WithoutLeftOut(self.diagnosis, set(self.left_out))
        gather = getattr(step_obj, "gather", None)
        if callable(gather):  # read-only look-ups the pure plan() needs (e.g. a Deployment)
            try:
                view.extra[step] = gather(self.api, view)
            except Exception as exc:  # noqa: BLE001
                self.journal.write("error", message=f"{step}: look-up failed: {exc}", where=step)
        plan = step_obj.plan(view)
        self.plans[step] = plan
        self.journal.write("plan", step=step, plan=plan.to_dict())
        for note in plan.notes:
            self.journal.write("note", text=f"{step}: {note}")
        return plan

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
            self.plans[plan.step] = plan
            self.journal.write("plan", step=plan.step, plan=plan.to_dict())
        decision = "dry-run" if self.dry_run else "approved"
        self.journal.write("decision", step=plan.step, decision=decision,
                           action_ids=list(approved_ids), by=by)
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
        outcome = engine.apply_plan(plan, approved_ids, self.runner, self.journal, on_line,
                                    cancel, post=post)
        self.outcomes[plan.step] = outcome
        return outcome

    def skip(self, plan: Plan, reason: str = "", by: str = "user") -> StepOutcome:
        self._start()
        self.journal.write("decision", step=plan.step, decision="skipped", action_ids=[], by=by,
                           reason=reason)
        outcome = StepOutcome(step=plan.step, status="skipped",
                              message=reason or "skipped by the user")
        self.outcomes[plan.step] = outcome
        self.journal.write("step_end", step=plan.step, outcome=outcome.to_dict())
        return outcome

    def rollback(
        self, step: str, on_line: NodeLineCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> StepOutcome:
        """Undo what this session ran for `step`, newest first (from the journal's own record)."""
        self._start()
        events = list(getattr(self.journal, "events", ()))
        outcome = engine.rollback(events, self.runner, self.journal, on_line, cancel, step=step)
        return outcome

    # -- validation and the end ----------------------------------------------------------------

    def validate(
        self, phase: str = "after", on_check: Callable[[CheckResult], None] | None = None
    ) -> list[CheckResult]:
        self._start()
        from clusterfix_tui.core import validate as _val

        snapshot = getattr(self.diagnosis, "snapshot", None)
        results = _val.validate(
            self.api, self.shells, snapshot, on_check=on_check, prober=self.prober,
            skip_nodes=sorted(self.left_out),
        )
        self.validation = list(results)
        self.journal.write("validation", phase=phase, results=[r.to_dict() for r in results])
        if phase == "after" and results and all(r.passed for r in results):
            self._revert_workarounds()
        return self.validation

    def _revert_workarounds(self) -> None:
        """Workarounds (e.g. the probe exec check) are undone once the real fix is validated."""
        events = list(getattr(self.journal, "events", ()))
        ran = [ra for ra in engine.ran_from_events(events)
               if getattr(ra.action, "revert_after_validation", False) and ra.finished_ok]
        if not ran:
            return
        self.journal.write("note", text="validation passed: reverting the temporary workaround(s) "
                           + ", ".join(ra.action.id for ra in ran))
        for step in sorted({ra.step for ra in ran}):
            subset = [ra for ra in ran if ra.step == step]
            engine.rollback_ran(subset, self.runner, self.journal, step=step)

    def finish(self, aborted: bool = False) -> str:
        self._start()
        if self._finished is not None:
            return self._finished
        findings_before = len(getattr(self.before, "findings", ()) or ())
        changed = any(o.status in ("changed", "partial") for o in self.outcomes.values())
        val = self.validation
        if aborted:
            verdict = "aborted"
        elif val is None:
            verdict = "healthy" if self.before is not None and findings_before == 0 else (
                "aborted" if self.before is None else "still-broken")
        elif all(r.passed for r in val):
            verdict = "fixed" if (changed or findings_before) else "healthy"
        elif changed:
            verdict = "partially-fixed"
        else:
            verdict = "still-broken"
        summary = {
            "findings_before": findings_before,
            "steps": {s: o.status for s, o in self.outcomes.items()},
            "checks_failed": [f"{r.name}@{r.target}" for r in (val or ()) if not r.passed],
            "checks_passed": sum(1 for r in (val or ()) if r.passed),
            "nodes_left_out": dict(self.left_out),
            "dry_run": self.dry_run,
        }
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


def _shape_fields(diagnosis: Any) -> dict[str, Any]:
    """The cluster shape and what was not checked on it (core/shape.py), for the journal."""
    shape = getattr(diagnosis, "shape", None)
    if shape is None:
        return {}
    from clusterfix_tui.core.shape import note_lines

    return {"shape": shape.summary(), "not_checked": note_lines(shape)}
