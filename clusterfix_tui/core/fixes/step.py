"""The step interface: what core/fixes/<step>.py modules implement, and the helpers they share.

THE STEP INTERFACE (what core/fixes/<step>.py modules implement)
-----------------------------------------------------------------
A step is an object (usually a module-level instance of a small class) with:

    name: str            # a core.model.STEP_ORDER name, e.g. "iptables"
    title: str           # one line for humans, e.g. "iptables / nftables compatibility"
    runbook_helper: str  # the runbook helper it replaces, e.g. "fix_iptables_compatibility.sh"
    def plan(self, diagnosis) -> Plan

`plan()` is PURE: it reads `diagnosis.findings` (core.model.Finding, use `finding.data`, see
docs/findings.md), `diagnosis.facts` (dict node -> NodeFacts) and `diagnosis.snapshot`, and returns
a `core.model.Plan`. It never runs anything. Nothing to do -> a Plan with no actions and `notes`
saying why (e.g. "no IPTABLES_* findings"). Reported-only problems (e.g. version skew) go in notes.

Each `Action` in the plan:
  - id: `action_id(step, target, n)` -> "<step>:<target>:<n>", unique within the plan; opt-in
    actions (never approved by default, e.g. the probe workaround) come from `opt_in_id(...)`.
  - target: the node name for shell actions AND for api actions about one node (e.g. deleting the
    kube-proxy pod of node-2 targets "node-2", so it is skipped when node-2's cleanup failed);
    core.model.CLUSTER for cluster-wide api actions.
  - command: the exact shell command (every value passed through shlex.quote; use `q()`), or for
    kind "api" the kubectl rendering of `api` ({"verb": "delete_pod"|"restart_daemonset"|
    "patch_deployment", ...}).
  - mutating=True for anything that changes state; rollback=Action(...) with the exact command
    that undoes it, or rollback_note="why none is possible / what to do by hand".
    `check_rollbacks(plan)` returns the mutating actions that have neither (tests assert it is []).
  - Backups go to `backup_dir(step, stamp)` on the node, created by the step's first action on
    that node; `stamp` comes from `plan_stamp()` (read once per plan: the plan shows the exact path).
Extra per-action data for the report (before/after, opt-in, revert-after-validation) is carried by
`FixAction`, a subclass of Action with three more fields; plain Actions work everywhere too.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import (
    CLUSTER,
    Action,
    Finding,
    Plan,
    Precondition,
)
from clusterfix_tui.core.snapshot import ClusterSnapshot

BACKUP_ROOT = "/var/backups/clusterfix"
OPT_IN_PREFIX = "opt-in"


class Diagnosis(Protocol):
    """What steps read (core/diagnose.py builds the real one)."""

    findings: Sequence[Finding]
    facts: dict[str, NodeFacts]
    snapshot: ClusterSnapshot | None


class Step(Protocol):
    name: str
    title: str
    runbook_helper: str

    def plan(self, diagnosis: Diagnosis) -> Plan: ...

    # Optional: `gather(api, diagnosis) -> dict`, read-only ClusterAPI look-ups the pure plan()
    # needs beyond the diagnosis; the session calls it first and passes the result to plan() as
    # `diagnosis.extra[step.name]`. Optional: `after_apply(plan, outcome, api, *, on_line,
    # cancel, dry_run) -> StepOutcome` (e.g. wait for a rollout), run before step_end is journaled.


@dataclass(frozen=True)
class FixAction(Action):
    """An Action with what the report and the session need beyond core.model.Action.

    change: {"what": ..., "before": ..., "after": ...} the state this action changes, as the plan
        knew it (from the diagnosis); copied into StepOutcome.changes when the action succeeds.
    opt_in: never approved by default (`default_approved`), e.g. the readiness-probe workaround.
    revert_after_validation: the session runs its rollback once validation passes (workarounds).
    """

    change: dict[str, Any] | None = dataclasses.field(default=None, hash=False, compare=False)
    opt_in: bool = False
    revert_after_validation: bool = False


# ---------------------------------------------------------------------------------------------
# helpers for step authors


def addr_add_args(facts: Any, dev: str, cidr: str) -> str:
    """`ip addr add` arguments that put the address `cidr` back on `dev` as the node's facts
    (`ip -j addr`) show it: its broadcast (the CNI bridge plugin and flannel set one through
    netlink; `ip addr add` alone sets none), scope, label and noprefixroute. Just the address
    when the facts do not show it. Every value quoted."""
    local, _, plen = str(cidr).partition("/")
    info = None
    for link in getattr(facts, "addrs", None) or ():
        if isinstance(link, dict) and link.get("ifname") == dev:
            info = next((a for a in link.get("addr_info") or () if isinstance(a, dict)
                         and a.get("local") == local and str(a.get("prefixlen")) == plen), None)
            break
    out = [q(cidr)]
    if info is None:
        return out[0]
    if info.get("broadcast"):
        out += ["brd", q(info["broadcast"])]
    if info.get("scope") and info.get("scope") != "global":
        out += ["scope", q(info["scope"])]
    if info.get("label") and info.get("label") != dev:
        out += ["label", q(info["label"])]
    if info.get("noprefixroute"):
        out.append("noprefixroute")
    return " ".join(out)


def q(value: Any) -> str:
    """shlex.quote for any value (node names, pod names, paths, addresses)."""
    return shlex.quote(str(value))


def action_id(step: str, target: str, n: int) -> str:
    return f"{step}:{target}:{n}"


def free_action_id(step: str, node: str, start: int, taken: set[str]) -> str:
    """The first `step:node:N` (N >= start) not in `taken`, which it joins: the pods step numbers
    actions of different kinds on one node (kube-proxy, flannel, a k3s unit, DNS pods), and two
    actions with one id would be approved, run and rolled back as one."""
    n = start
    while action_id(step, node, n) in taken:
        n += 1
    taken.add(action_id(step, node, n))
    return action_id(step, node, n)


def opt_in_id(step: str, target: str, name: str) -> str:
    return f"{step}:{target}:{OPT_IN_PREFIX}-{name}"


def is_opt_in(action: Action) -> bool:
    return bool(getattr(action, "opt_in", False)) or action.id.rsplit(":", 1)[-1].startswith(
        OPT_IN_PREFIX
    )


def default_approved(plan: Plan) -> list[str]:
    """The ids `--yes` (and the wizard's default selection) approve: everything but opt-ins."""
    return [a.id for a in plan.actions if not is_opt_in(a)]


def plan_stamp(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def backup_dir(step: str, stamp: str) -> str:
    return f"{BACKUP_ROOT}/{stamp}-{step}"


def node_backup_dir(step_dir: str, node: str) -> str:
    """One directory per node inside the step's backup dir: /var/backups may be shared (the lab's
    nodes share the host's), and one node's backup must never stand in for another's."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node)
    return f"{step_dir}/{'_' if safe in ('', '.', '..') else safe}"


def nothing_to_do(step: Any, why: str, findings: Iterable[Finding] = ()) -> Plan:
    return Plan(step=step.name, title=step.title, findings=tuple(findings), actions=(), notes=(why,))


def findings_for(diagnosis: Any, codes: Iterable[str]) -> list[Finding]:
    wanted = set(codes)
    return [f for f in getattr(diagnosis, "findings", ()) or () if f.code in wanted]


def check_rollbacks(plan: Plan) -> list[str]:
    """Ids of mutating actions with neither a rollback nor a rollback_note (must be empty)."""
    return [a.id for a in plan.actions if a.mutating and a.rollback is None and not a.rollback_note]


def action_from_dict(d: dict[str, Any]) -> Action:
    """Rebuild an Action (FixAction) from its to_dict() form, e.g. out of a journal."""
    rb = d.get("rollback")
    extra = {k: d[k] for k in ("change", "opt_in", "revert_after_validation") if k in d}
    cls = FixAction if extra else Action
    return cls(  # type: ignore[call-arg]
        id=d["id"],
        target=d["target"],
        kind=d.get("kind", "shell"),
        command=d.get("command", ""),
        why=d.get("why", ""),
        finding_codes=tuple(d.get("finding_codes") or ()),
        risk=d.get("risk", ""),
        mutating=bool(d.get("mutating", True)),
        timeout=float(d.get("timeout", 60.0)),
        api=d.get("api"),
        rollback=action_from_dict(rb) if isinstance(rb, dict) else None,
        rollback_note=d.get("rollback_note", ""),
        precondition=precondition_from_dict(d.get("precondition")),
        **extra,
    )


def precondition_from_dict(d: Any) -> Precondition | None:
    if not isinstance(d, dict) or not d.get("command"):
        return None
    return Precondition(kind=d.get("kind", "shell"), command=str(d["command"]),
                        expect=str(d.get("expect") or ""), api=d.get("api"),
                        timeout=float(d.get("timeout", 20.0)))


def plan_from_dict(d: dict[str, Any]) -> Plan:
    from clusterfix_tui.core.model import Finding as _F

    findings = []
    for f in d.get("findings") or ():
        try:
            findings.append(
                _F(
                    code=f["code"], severity=f.get("severity", "info"), node=f.get("node", CLUSTER),
                    title=f.get("title", ""), evidence=tuple(f.get("evidence") or ()),
                    explanation=f.get("explanation", ""), reference=f.get("reference", ""),
                    step=f.get("step"), data=dict(f.get("data") or {}),
                )
            )
        except (KeyError, TypeError):
            continue
    return Plan(
        step=d["step"],
        title=d.get("title", d["step"]),
        findings=tuple(findings),
        actions=tuple(action_from_dict(a) for a in d.get("actions") or ()),
        notes=tuple(d.get("notes") or ()),
    )


