"""Plain data shared by every layer. No I/O, no third-party imports.

Everything here is a frozen dataclass with a `to_dict()` so that the journal, the report and
`--json` outputs serialise the same objects the UI shows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

# CommandResult lives with the ports; re-exported here for the modules that import it from model
from clusterfix_tui.core.ports import CommandResult as CommandResult

Severity = Literal["critical", "error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "error": 1, "warning": 2, "info": 3}

# The runbook's helpers, in the runbook's order, as step names (see core/fixes/).
STEP_ORDER: tuple[str, ...] = (
    "iptables",  # fix_iptables_compatibility.sh
    "cni_bridge",  # fix_cni_bridge_conflict.sh
    "pods",  # fix_remaining_pod_issues.sh
    "worker_kubeconfig",  # fix_worker_kubectl_config.sh
    "host_network",  # troubleshooting section: ip_forward, br_netfilter, firewall REJECT
)
# validate_cluster_communication.sh is core/validate.py, run after the steps.

CLUSTER = "cluster"  # target of actions and findings that are not about one node


def _plain(value: Any) -> Any:
    if isinstance(value, FindingData):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


FINDING_DATA: dict[str, type[FindingData]] = {}  # finding code -> its data class


@dataclass(frozen=True, kw_only=True)
class FindingData:
    """A finding code's data, typed: each check module defines one frozen dataclass per code (or
    family of codes) next to the check that fills it, and the fix steps read its attributes.
    Subclasses name their codes (`class ForwardDrop(FindingData, codes=("FORWARD_DROP",))`).
    to_dict() is the plain dict the journal, the report and --json carry (as before)."""

    # root-cause findings carry the symptom findings folded into them (checks.fold_symptoms)
    symptoms: list[dict[str, Any]] = field(default_factory=list)

    def __init_subclass__(cls, codes: tuple[str, ...] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for code in codes:
            FINDING_DATA[code] = cls

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if not out["symptoms"]:
            del out["symptoms"]
        return out

    # Read-only views of the serialised shape (what --json and the journal show), for readers
    # outside core that take the JSON's word for it (tests, the UI). Steps use attributes.
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    @classmethod
    def from_dict(cls: type[D], values: dict[str, Any]) -> D:
        """The data back from its to_dict() form (a journal, a bundle, an older version's
        output): keys the class does not have (any more) are left out, missing ones take the
        class's defaults; a field's own types rebuild themselves (__post_init__)."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in values.items() if k in names})


D = TypeVar("D", bound=FindingData)


@dataclass(frozen=True)
class Finding(_Serialisable):
    """One problem, on one node (or the cluster), with the lines that prove it."""

    code: str  # stable, e.g. "IPTABLES_BACKEND_CONFLICT"
    severity: Severity
    node: str  # node name, or CLUSTER
    title: str  # one line
    evidence: tuple[str, ...] = ()  # the exact lines that prove it
    explanation: str = ""  # short why, for humans
    reference: str = ""  # upstream doc or issue it rests on
    step: str | None = None  # the STEP_ORDER name that addresses it, if any
    # the code's FindingData, as its check fills it; a plain dict for a finding read back from a
    # journal or a bundle (data_as() rebuilds the class from it)
    data: FindingData | dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def data_as(self, cls: type[D]) -> D:
        """The data as the class its check fills. A plain dict (a finding read back from a
        journal or a bundle, possibly an older version's) is rebuilt as the code's own data
        class when that is a `cls` (else as `cls`), keys it does not know left out; anything
        else is a TypeError (a bug)."""
        if isinstance(self.data, cls):
            return self.data
        if isinstance(self.data, dict):
            own = FINDING_DATA.get(self.code)
            target = own if own is not None and issubclass(own, cls) else cls
            try:
                return target.from_dict(self.data)  # type: ignore[return-value]
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{self.code} on {self.node}: its data cannot be read as "
                                f"{target.__name__}: {exc}") from exc
        raise TypeError(f"{self.code} on {self.node}: data is {type(self.data).__name__}, "
                        f"not {cls.__name__}")


# What a precondition check found right before its action was to run (core/fixes/preconditions.py).
PRECHECK_HOLDS = "holds"  # the state is as the plan saw it: run the action
PRECHECK_DONE = "already-done"  # the action's goal already holds: nothing to run, not a failure
PRECHECK_CHANGED = "changed"  # the state is neither: skip the action, say why
PRECHECK_UNKNOWN = "unknown"  # the check itself could not run: skip (never run blind)


@dataclass(frozen=True)
class Precondition(_Serialisable):
    """A read-only check re-run right before its action, part of the plan as shown.

    kind "shell": `command` runs on the action's node; exit 0 = holds, exit 3 = the goal already
    holds (already done), any other exit = the state changed (its output says how).
    kind "api": `api` names a read ({"check": "pod_uid", "namespace", "name", "uid"} ...);
    `command` is its human rendering. `expect` says in words what must hold.
    """

    kind: Literal["shell", "api"]
    command: str
    expect: str = ""
    api: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    timeout: float = 20.0


@dataclass(frozen=True)
class Action(_Serialisable):
    """One mutating (or reading) thing a step will do, exactly as shown to the user.

    kind "shell": `command` is the exact shell command run on node `target`.
    kind "api": `api` names a ClusterAPI write ({"verb": "delete_pod", "namespace": ..., "name": ...});
    `command` is its human rendering (the kubectl equivalent).
    """

    id: str  # unique within a plan, stable: "<step>:<node>:<n>"
    target: str  # node name or CLUSTER
    kind: Literal["shell", "api"]
    command: str
    why: str = ""
    finding_codes: tuple[str, ...] = ()
    risk: str = ""
    mutating: bool = True
    timeout: float = 60.0
    api: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    rollback: Action | None = None  # automatic rollback, when one exists
    rollback_note: str = ""  # manual rollback instructions when there is no automatic one
    # re-checked on the node (or API) right before the action runs; None: runs as shown
    precondition: Precondition | None = field(default=None, hash=False, compare=False)


@dataclass(frozen=True)
class Plan(_Serialisable):
    """What a step would do, built from findings and facts, with no side effects."""

    step: str
    title: str
    findings: tuple[Finding, ...] = ()
    actions: tuple[Action, ...] = ()
    notes: tuple[str, ...] = ()  # risks, warnings, "reported only" items (e.g. version skew)

    @property
    def nothing_to_do(self) -> bool:
        return not self.actions


@dataclass(frozen=True)
class ActionOutcome(_Serialisable):
    action_id: str
    target: str
    command: str
    result: CommandResult | None  # None: not run (cancelled, dry-run, earlier failure on the node)
    status: Literal["ok", "failed", "skipped", "dry-run", "cancelled", "already-done"]
    detail: str = ""  # why it was skipped / already done (a precondition's answer)


@dataclass(frozen=True)
class StepOutcome(_Serialisable):
    step: str
    status: Literal["changed", "unchanged", "partial", "failed", "skipped", "dry-run", "cancelled"]
    actions: tuple[ActionOutcome, ...] = ()
    changes: tuple[dict[str, Any], ...] = ()  # {"node":..., "what":..., "before":..., "after":...}
    message: str = ""


@dataclass(frozen=True)
class CheckResult(_Serialisable):
    """One validation check (validate_cluster_communication)."""

    name: str  # e.g. "node-ready", "nodeport", "pod-to-pod"
    target: str  # node name, service, or CLUSTER
    passed: bool
    detail: str = ""
    fix_step: str | None = None  # the step that likely fixes a failure
