"""One replay of a session journal: `replay(events) -> SessionRecord`.

The report (core/report.py), `rollback` (what ran and is not rolled back yet), the wizard's
summary screen and the session's own verdict all read the journal through this one replay, so
they can never disagree on what ran, what failed, how many passes there were or the verdict.
Events are taken as they are (the caller redacts / anonymizes first when it renders them).

Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clusterfix_tui.core.model import STEP_ORDER

if TYPE_CHECKING:
    from clusterfix_tui.core.fixes.engine import RanAction

STEP_TITLES = {
    "iptables": "iptables / nftables compatibility (fix_iptables_compatibility.sh)",
    "cni_bridge": "CNI bridge conflict (fix_cni_bridge_conflict.sh)",
    "pods": "Remaining pod issues (fix_remaining_pod_issues.sh)",
    "worker_kubeconfig": "Worker kubeconfig (fix_worker_kubectl_config.sh)",
    "host_network": "Host networking: ip_forward, br_netfilter, firewall, ipvs",
}
CHANGED = ("changed", "partial")
FAILED = ("failed", "partial", "interrupted")

def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _step_rank(step: str) -> int:
    return STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER)


def _finding(f: Any) -> dict[str, Any]:
    f = f if isinstance(f, dict) else {"title": _s(f)}
    return {
        "code": _s(f.get("code")) or "UNKNOWN",
        "severity": _s(f.get("severity")) or "info",
        "node": _s(f.get("node")),
        "title": _s(f.get("title")),
        "evidence": [_s(e) for e in (f.get("evidence") or ())],
        "explanation": _s(f.get("explanation")),
        "reference": _s(f.get("reference")),
        "step": f.get("step") if isinstance(f.get("step"), str) else None,
        "data": f.get("data") if isinstance(f.get("data"), dict) else {},
    }


def _check(r: Any) -> dict[str, Any]:
    r = r if isinstance(r, dict) else {}
    return {
        "name": _s(r.get("name")) or "check",
        "target": _s(r.get("target")),
        "passed": bool(r.get("passed")),
        "detail": _s(r.get("detail")),
        "fix_step": r.get("fix_step") if isinstance(r.get("fix_step"), str) else None,
    }


def _action(a: Any) -> dict[str, Any]:
    a = a if isinstance(a, dict) else {}
    rb = a.get("rollback")
    return {
        "id": _s(a.get("id")),
        "target": _s(a.get("target")),
        "kind": _s(a.get("kind")) or "shell",
        "command": _s(a.get("command")),
        "why": _s(a.get("why")),
        "risk": _s(a.get("risk")),
        "mutating": bool(a.get("mutating", True)),
        "finding_codes": [_s(c) for c in (a.get("finding_codes") or ())],
        "rollback_command": _s(rb.get("command")) if isinstance(rb, dict) else None,
        "rollback_note": _s(a.get("rollback_note")),
        "opt_in": bool(a.get("opt_in", False)),
        "precondition": _s((a.get("precondition") or {}).get("command"))
        if isinstance(a.get("precondition"), dict) else None,
    }


def _plan(p: Any) -> dict[str, Any]:
    p = p if isinstance(p, dict) else {}
    return {
        "title": _s(p.get("title")),
        "findings": [_finding(f) for f in (p.get("findings") or ())],
        "actions": [_action(a) for a in (p.get("actions") or ())],
        "notes": [_s(n) for n in (p.get("notes") or ())],
    }


def _new_step(step: str, rollback: bool = False) -> dict[str, Any]:
    return {
        "step": step,
        "title": STEP_TITLES.get(step, step),
        "kind": "rollback" if rollback else "repair",
        "plan": None,
        "decision": None,
        "status": "not-run",
        "interrupted": False,
        "commands": [],
        "changes": [],
        "outcome_message": "",
        "rollback_status": None,
        "pass_no": 1,
        "action_results": [],
    }




@dataclass
class SessionRecord:
    """What a session did, replayed from its journal. `steps` are the report's step entries
    (dicts, schema core/report_schema.json "step"), in runbook order, one per plan put up for a
    decision (so a step run in two passes has two entries, each with its pass_no)."""

    session: dict[str, Any]
    cluster: dict[str, Any]
    left_out: list[dict[str, str]]
    findings: dict[str, list[dict[str, Any]]]  # "before" / "after"
    node_summaries: dict[str, Any]
    validation: dict[str, list[dict[str, Any]] | None]  # "before" / "after"
    comparison: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    diagnoses: list[dict[str, Any]]
    prechecks: list[dict[str, Any]]
    verdict: str  # from session_end, or "interrupted" / "unknown"
    verdict_raw: str | None
    headline_suffix: str
    summary_data: Any
    after_diagnosed: bool
    saw_start: bool
    unknown_types: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    traces: list[dict[str, Any]] = field(default_factory=list)  # `trace` events (issue 15)
    # "before" / "after": the checks that failed in that phase's (last) diagnosis, and the
    # diagnosis's own error: what it found is not all there was to find (core/checks run_checks)
    check_errors: dict[str, list[str]] = field(default_factory=lambda: {"before": [], "after": []})

    # -- views every front end uses ------------------------------------------------------------

    @property
    def repairs(self) -> list[dict[str, Any]]:
        return [e for e in self.steps if e["kind"] == "repair"]

    @property
    def passes(self) -> int:
        """How many repair passes ran (a pass counts once a step of it was decided on)."""
        decided = [e["pass_no"] for e in self.repairs if e["decision"] is not None]
        return max(decided, default=0)

    def passes_steps(self) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        for e in self.repairs:
            if e["decision"] is not None:
                out.setdefault(e["pass_no"], []).append(e)
        return dict(sorted(out.items()))

    def step_status(self) -> dict[str, str]:
        """Each step's final status: its last decided repair entry (the latest pass)."""
        out: dict[str, str] = {}
        for e in sorted(self.repairs, key=lambda e: (e["pass_no"], _step_rank(e["step"]))):
            if e["decision"] is not None or e["status"] not in ("planned", "not-run"):
                out[e["step"]] = e["status"]
        return {s: out[s] for s in sorted(out, key=_step_rank)}

    def counts(self) -> dict[str, int]:
        """Steps by final status, and actions by what happened to them (all passes)."""
        c: dict[str, int] = {}
        for st in self.step_status().values():
            c[f"steps_{st}"] = c.get(f"steps_{st}", 0) + 1
        for e in self.repairs:
            for a in e["action_results"]:
                k = f"actions_{a['status']}"
                c[k] = c.get(k, 0) + 1
        return dict(sorted(c.items()))

    def changed_any(self) -> bool:
        return any(e["status"] in CHANGED for e in self.repairs)

    def summary(self) -> dict[str, Any]:
        """session_end's summary (and the summary screen's numbers)."""
        val = self.validation["after"]
        return {
            "findings_before": len(self.findings["before"]),
            "findings_after": len(self.findings["after"]) if self.after_diagnosed else None,
            "passes": self.passes,
            "steps": self.step_status(),
            "counts": self.counts(),
            "checks_failed": [f"{r['name']}@{r['target']}" for r in (val or ()) if not r["passed"]],
            "checks_passed": sum(1 for r in (val or ()) if r["passed"]),
            "nodes_not_diagnosed": self.not_diagnosed(),
            "checks_failed_in_diagnosis": self.checks_not_run(),
        }

    def not_diagnosed(self) -> list[str]:
        """Nodes left out of the session (not reached over SSH, or left out by the user): what
        the session says about the cluster does not cover them."""
        return sorted({e["node"] for e in self.left_out if e.get("node")})

    def checks_not_run(self) -> list[str]:
        """The checks (and the diagnosis error) that failed in the diagnosis the verdict rests
        on: the one after repair if there was one, else the one before. What it found is not
        all there was to find, so the session cannot call the cluster healthy or fixed."""
        return list(self.check_errors["after" if self.after_diagnosed else "before"])


def verdict_of(record: SessionRecord, aborted: bool = False) -> str:
    """The verdict of a session about to end, from its record. A session that left a node out,
    or whose last diagnosis had a check that failed, is "incomplete" whatever it did elsewhere:
    it never calls a cluster healthy or fixed that it did not see whole (record.summary() says
    which nodes and which checks)."""
    if aborted:
        return "aborted"
    verdict = _verdict_of_what_was_seen(record)
    if (record.not_diagnosed() or record.checks_not_run()) and verdict != "aborted":
        return "incomplete"
    return verdict


def _verdict_of_what_was_seen(record: SessionRecord) -> str:
    before = record.findings["before"]
    if not record.diagnoses and record.validation["after"] is None:
        return "aborted"  # never got as far as a diagnosis
    statuses = record.step_status()
    changed = record.changed_any()
    failed = any(s in FAILED for s in statuses.values())
    val = record.validation["after"]
    remaining = [f for f in record.findings["after"] if f.get("step")] \
        if record.after_diagnosed else []
    if val is None:  # nothing validated: nothing can be claimed fixed
        return "still-broken" if before else "healthy"
    if all(r["passed"] for r in val):
        if not before and not changed:
            return "healthy"
        if failed or remaining:
            return "partially-fixed"
        return "fixed"
    return "partially-fixed" if changed else "still-broken"


def replay(events: Sequence[dict[str, Any]]) -> SessionRecord:
    """Replay journal events into a SessionRecord (torn or odd events are tolerated)."""
    evs = [e for e in events if isinstance(e, dict)]
    session: dict[str, Any] = {
        "session_id": "", "tool_version": "", "user": "", "host": "", "mode": "",
        "dry_run": False, "started_at": None, "ended_at": None, "complete": False,
    }
    cluster: dict[str, Any] = {"context": "", "server": "", "version": "", "node_count": None}
    left_out: list[dict[str, str]] = []
    findings: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    check_errors: dict[str, list[str]] = {"before": [], "after": []}
    node_summaries: dict[str, Any] = {}
    validation: dict[str, list[dict[str, Any]] | None] = {"before": None, "after": None}
    notes: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}  # step name -> its current entry
    open_cmds: dict[tuple[str, str, str], Any] = {}
    verdict_raw: str | None = None
    summary_data: Any = None
    after_diagnosed = False
    saw_start = False
    unknown_types: dict[str, int] = {}
    traces: list[dict[str, Any]] = []
    diagnoses: list[dict[str, Any]] = []
    prechecks: list[dict[str, Any]] = []

    last_repair: dict[str, dict[str, Any]] = {}
    rollback_targets: dict[int, dict[str, Any]] = {}  # id(rollback command) -> repair entry

    def entry_for(step: str, rollback: bool = False) -> dict[str, Any]:
        e = latest.get(step)
        if e is None:
            e = _new_step(step, rollback)
            steps.append(e)
            latest[step] = e
        if e["kind"] == "repair":
            last_repair[step] = e
        return e

    for ev in evs:
        t = ev.get("type")
        ts = ev.get("ts")
        if t == "session_start":
            saw_start = True
            for k in ("session_id", "tool_version", "user", "host", "mode"):
                session[k] = _s(ev.get(k))
            session["dry_run"] = bool(ev.get("dry_run"))
            session["started_at"] = _s(ts) or None
            cl = ev["cluster"] if isinstance(ev.get("cluster"), dict) else {}
            cluster = {
                "context": _s(cl.get("context")),
                "server": _s(cl.get("server")),
                "version": _s(cl.get("version")),
                "node_count": _int_or_none(cl.get("node_count")),
            }
        elif t in ("cluster_identity", "node_identity"):
            pass  # who the session talked to: read by `rollback` (core/identity.py)
        elif t == "node_left_out":
            left_out.append({"node": _s(ev.get("node")), "reason": _s(ev.get("reason"))})
        elif t == "diagnosis":
            diagnoses.append({"phase": _s(ev.get("phase")) or "before",
                              "pass_no": _int_or_none(ev.get("pass_no")) or 1,
                              "findings": len(ev.get("findings") or ()), "at": _s(ts) or None})
            if ev.get("phase") not in (None, "before", "after"):
                continue  # a re-diagnosis between steps or passes
            phase = "after" if ev.get("phase") == "after" else "before"
            findings[phase] = [_finding(f) for f in (ev.get("findings") or ())]
            check_errors[phase] = _check_errors(ev)
            after_diagnosed = after_diagnosed or phase == "after"
            if phase == "before" and isinstance(ev.get("nodes"), dict):
                node_summaries = ev["nodes"]
        elif t == "plan":
            if ev.get("preview"):
                continue  # looked at, not put up for a decision
            step = _s(ev.get("step")) or "unknown"
            rollback = bool(ev.get("rollback"))
            cur = latest.get(step)
            # a plan shown again before any decision replaces the earlier one (last one shown wins)
            if cur is None or cur["decision"] is not None or cur["commands"] or (
                cur["kind"] == "rollback") != rollback or cur["status"] not in ("planned", "not-run"):
                cur = _new_step(step, rollback)
                steps.append(cur)
                latest[step] = cur
            if not rollback:
                last_repair[step] = cur
            cur["pass_no"] = _int_or_none(ev.get("pass_no")) or 1
            cur["plan"] = _plan(ev.get("plan"))
            if cur["plan"]["title"]:
                cur["title"] = cur["plan"]["title"]
            cur["status"] = "planned"
        elif t == "decision":
            cur = entry_for(_s(ev.get("step")) or "unknown")
            decision = _s(ev.get("decision")) or "unknown"
            cur["decision"] = {
                "decision": decision,
                "by": _s(ev.get("by")),
                "action_ids": [_s(a) for a in (ev.get("action_ids") or ())],
                "at": _s(ts) or None,
            }
            if cur["status"] in ("planned", "not-run"):
                cur["status"] = "skipped" if decision == "skipped" else "running"
        elif t == "command_start":
            step = _s(ev.get("step")) or "unknown"
            rollback = bool(ev.get("rollback"))
            cur = entry_for(step, rollback)
            cmd: dict[str, Any] | None = {
                "action_id": _s(ev.get("action_id")),
                "node": _s(ev.get("node")),
                "kind": _s(ev.get("kind")) or "shell",
                "command": _s(ev.get("command")),
                "rollback": rollback,
                "dry_run": bool(ev.get("dry_run")),
                "started_at": _s(ts) or None,
                "ended_at": None,
                "state": "interrupted",
                "exit_code": None,
                "duration": None,
                "timed_out": False,
                "error": None,
                "stdout": "",
                "stderr": "",
            }
            cur["commands"].append(cmd)
            if cur["status"] in ("planned", "not-run", "running"):
                cur["status"] = "running"
            open_cmds[(step, _s(ev.get("action_id")), _s(ev.get("node")))] = cmd
            if rollback and ev.get("rollback_of"):
                # "<step>:<node>:<n>": the repair entry this rollback undoes (also when the
                # rollback runs as a multi-step "session" rollback)
                fwd_step = _s(ev.get("rollback_of")).split(":", 1)[0]
                undone = last_repair.get(fwd_step)
                if undone is not None and undone is not cur:
                    rollback_targets[id(cmd)] = undone
                    if undone["rollback_status"] is None:
                        undone["rollback_status"] = "rollback interrupted"
        elif t == "command_end":
            step = _s(ev.get("step")) or "unknown"
            key = (step, _s(ev.get("action_id")), _s(ev.get("node")))
            cmd = open_cmds.pop(key, None)
            if cmd is None:  # an end without its start: keep what it says
                cur = entry_for(step, bool(ev.get("rollback")))
                cmd = {
                    "action_id": key[1], "node": key[2], "kind": "shell",
                    "command": "(command_start missing from the journal)",
                    "rollback": bool(ev.get("rollback")), "dry_run": False,
                    "started_at": None, "ended_at": None, "state": "failed", "exit_code": None,
                    "duration": None, "timed_out": False, "error": None, "stdout": "", "stderr": "",
                }
                cur["commands"].append(cmd)
            code = _int_or_none(ev.get("exit_code"))
            cmd.update(
                ended_at=_s(ts) or None,
                exit_code=code,
                duration=_num(ev.get("duration")),
                timed_out=bool(ev.get("timed_out")),
                error=_s(ev.get("error")) or None,
                stdout=_s(ev.get("stdout")),
                stderr=_s(ev.get("stderr")),
            )
            undone = rollback_targets.get(id(cmd))
            if undone is not None:
                ok = code == 0 and not ev.get("error") and not ev.get("timed_out")
                if not ok:
                    undone["rollback_status"] = "rollback failed"
                elif undone["rollback_status"] in (None, "rollback interrupted"):
                    undone["rollback_status"] = "rolled back"
            if cmd["dry_run"] and code is None and not cmd["error"] and not cmd["timed_out"]:
                cmd["state"] = "dry-run"  # the dry-run runner's "not run" result
            elif code == 0 and not cmd["timed_out"] and not cmd["error"]:
                cmd["state"] = "ok"
            elif cmd["timed_out"]:
                cmd["state"] = "timed-out"
            else:
                cmd["state"] = "failed"
        elif t == "step_end":
            step = _s(ev.get("step")) or "unknown"
            cur = entry_for(step, bool(ev.get("rollback")))
            out: dict[str, Any] = ev["outcome"] if isinstance(ev.get("outcome"), dict) else {}
            status = _s(out.get("status")) or "unknown"
            if ev.get("rollback"):
                repair = last_repair.get(step)
                if repair is not None and repair is not cur and repair["rollback_status"] is None:
                    repair["rollback_status"] = status
            if ev.get("rollback") and cur["kind"] == "repair":
                cur["rollback_status"] = status
            else:
                cur["status"] = status
                cur["pass_no"] = _int_or_none(ev.get("pass_no")) or cur["pass_no"]
                cur["action_results"] = [
                    {"action_id": _s(a.get("action_id")), "target": _s(a.get("target")),
                     "status": _s(a.get("status")), "detail": _s(a.get("detail"))}
                    for a in (out.get("actions") or ()) if isinstance(a, dict)]
                cur["outcome_message"] = _s(out.get("message"))
                cur["changes"] = [
                    {"node": _s(c.get("node")), "what": _s(c.get("what")),
                     "before": c.get("before"), "after": c.get("after"),
                     "action_id": _s(c.get("action_id"))}
                    for c in (out.get("changes") or ()) if isinstance(c, dict)
                ]
        elif t == "validation":
            phase = "after" if ev.get("phase") == "after" else "before"
            validation[phase] = [_check(r) for r in (ev.get("results") or ())]
        elif t == "note":
            notes.append({"at": _s(ts) or None, "text": _s(ev.get("text"))})
            if ev.get("local_node"):  # the node this ran on: read without SSH
                cluster["local_node"] = _s(ev.get("local_node"))
        elif t == "trace":
            traces.append(_trace(ev, ts))
        elif t == "error":
            errors.append({"at": _s(ts) or None, "message": _s(ev.get("message")),
                           "where": _s(ev.get("where"))})
        elif t == "session_end":
            verdict_raw = _s(ev.get("verdict")) or "unknown"
            raw_summary = ev.get("summary")
            summary_data = raw_summary
            session["ended_at"] = _s(ts) or None
            session["complete"] = True
        elif t == "precheck":
            prechecks.append({"step": _s(ev.get("step")), "action_id": _s(ev.get("action_id")),
                              "node": _s(ev.get("node")), "command": _s(ev.get("command")),
                              "state": _s(ev.get("state")), "detail": _s(ev.get("detail"))})
        elif t == "node_state":
            pass  # state before/after a change: core/nodestate.node_changes reads these
        else:
            unknown_types[_s(t)] = unknown_types.get(_s(t), 0) + 1

    # interrupted commands / steps
    interrupted_cmds = []
    for e in steps:
        for c in e["commands"]:
            if c["state"] == "interrupted":
                e["interrupted"] = True
                interrupted_cmds.append((e["step"], c))
        if e["status"] == "running" and not session["complete"]:
            e["interrupted"] = True
        if e["interrupted"]:
            e["status"] = "interrupted"
        elif e["status"] == "running":  # decided and ran, but no step_end (session went on)
            e["status"] = "unknown"
    steps.sort(key=lambda e: _step_rank(e["step"]))  # stable: appearance order within a step

    # verdict
    if verdict_raw is None:
        verdict = "interrupted" if evs else "unknown"
    else:
        verdict = verdict_raw
    if interrupted_cmds and verdict not in ("interrupted", "aborted"):
        verdict = "interrupted"
    headline_suffix = ""
    if interrupted_cmds:
        step, c = interrupted_cmds[-1]
        headline_suffix = (
            f" (step {step}: command {c['action_id']} on {c['node']} started and never finished)"
        )

    # validation side by side
    comparison = []
    index: dict[tuple[str, str], dict[str, Any]] = {}
    for phase in ("before", "after"):
        for r in validation[phase] or ():
            vkey = (r["name"], r["target"])
            row = index.get(vkey)
            if row is None:
                row = {"name": r["name"], "target": r["target"], "before": None, "after": None,
                       "detail_before": "", "detail_after": "", "fix_step": r["fix_step"]}
                index[vkey] = row
                comparison.append(row)
            row[phase] = r["passed"]
            row["detail_" + phase] = r["detail"]
            row["fix_step"] = row["fix_step"] or r["fix_step"]

    commands = [c for e in steps for c in e["commands"]]
    results = [a for e in steps if e["kind"] == "repair" for a in e["action_results"]]
    stats = {
        "commands": len(commands),
        "ok": sum(1 for c in commands if c["state"] == "ok"),
        "failed": sum(1 for c in commands if c["state"] in ("failed", "timed-out")),
        "interrupted": sum(1 for c in commands if c["state"] == "interrupted"),
        "dry_run": sum(1 for c in commands if c["state"] == "dry-run"),
        "rollbacks": sum(1 for c in commands if c["rollback"]),
        "already_done": sum(1 for a in results if a["status"] == "already-done"),
        "precheck_skipped": sum(1 for p in prechecks if p["state"] not in ("holds",
                                                                           "already-done")),
        "findings_before": len(findings["before"]),
        "findings_after": len(findings["after"]),
    }

    return SessionRecord(
        session=session, cluster=cluster, left_out=left_out, findings=findings,
        node_summaries=node_summaries if isinstance(node_summaries, dict) else {},
        validation=validation, comparison=comparison, notes=notes, errors=errors, steps=steps,
        diagnoses=diagnoses, prechecks=prechecks, verdict=verdict, verdict_raw=verdict_raw,
        headline_suffix=headline_suffix, summary_data=summary_data,
        after_diagnosed=after_diagnosed, saw_start=saw_start, unknown_types=unknown_types,
        stats=stats, traces=traces, check_errors=check_errors,
    )


def _check_errors(ev: dict[str, Any]) -> list[str]:
    """A diagnosis event's failed checks, and its own error (the cluster not diagnosed at all)."""
    raw = ev.get("check_errors")
    errs = [_s(e) for e in raw if _s(e)] if isinstance(raw, list) else []
    if _s(ev.get("error")):
        errs.insert(0, f"the diagnosis failed: {_s(ev.get('error'))}")
    return errs


def _trace(ev: dict[str, Any], ts: Any) -> dict[str, Any]:
    raw = ev.get("where")
    w: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {"at": _s(ts) or None, "flow": _s(ev.get("flow")),
            "description": _s(ev.get("description")), "trace_id": _s(ev.get("trace_id")),
            "verdict": _s(ev.get("verdict")) or "unknown",
            "where": {k: (None if w.get(k) is None else
                          w[k] if k == "handle" and isinstance(w[k], int) else _s(w[k]))
                      for k in ("node", "table", "chain", "rule", "handle")},
            "path": [_s(x) for x in ev.get("path") or () if x is not None],
            "notes": [_s(x) for x in ev.get("notes") or () if x is not None],
            "underlay": _s(ev.get("underlay")) or None}


def ran_actions(events: Sequence[dict[str, Any]], step: str | None = None) -> list[RanAction]:
    """Forward actions that started (and were not dry-run), in start order, minus those already
    rolled back successfully by a later rollback in the same journal: what a rollback plan undoes
    (newest first, engine.rollback_plan)."""
    from clusterfix_tui.core.fixes.engine import RanAction, action_from_dict

    started: dict[str, RanAction] = {}
    order: list[str] = []
    ends: dict[str, dict[str, Any]] = {}
    rolled_back: set[str] = set()
    pending_rb: dict[str, str] = {}  # rollback action id -> forward id
    for ev in events:
        t = ev.get("type")
        if t == "command_start":
            if ev.get("dry_run"):
                continue
            if ev.get("rollback"):
                if ev.get("rollback_of"):
                    pending_rb[ev["action_id"]] = ev["rollback_of"]
                continue
            if step is not None and ev.get("step") != step:
                continue
            ad = ev.get("action")
            if not isinstance(ad, dict):
                continue
            key = f"{ev.get('step')}|{ev['action_id']}|{ev.get('seq')}"
            started[key] = RanAction(ev.get("step", ""), action_from_dict(ad), None)
            order.append(key)
        elif t == "command_end":
            if ev.get("rollback"):
                fwd = pending_rb.get(ev.get("action_id", ""))
                if fwd and ev.get("exit_code") == 0 and not ev.get("error"):
                    rolled_back.add(fwd)
                continue
            # attach to the latest start of the same action id
            for key in reversed(order):
                if key.split("|")[1] == ev.get("action_id") and key not in ends:
                    ends[key] = ev
                    ra = started[key]
                    ok = ev.get("exit_code") == 0 and not ev.get("error") and not ev.get("timed_out")
                    started[key] = RanAction(ra.step, ra.action, ok)
                    break
    result = []
    for key in order:
        ra = started[key]
        if ra.action.id in rolled_back:
            continue
        result.append(ra)
    return result
