"""Typed, past-tense messages that thread workers post to screens.

Workers never touch widgets: they call the blocking session, then `post_message` one of these
(post_message is thread-safe). Handlers run on the UI thread and update widgets.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message


class ClusterInfoLoaded(Message):
    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self.info = info


class NodeConnected(Message):
    """One node's SSH state is known (connected, auth-failed, host-key-unknown, ...)."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn


class ConnectFinished(Message):
    def __init__(self, conns: list[Any]) -> None:
        super().__init__()
        self.conns = conns


class NodesLeftOut(Message):
    def __init__(self, nodes: dict[str, str]) -> None:
        super().__init__()
        self.nodes = nodes


class DiagnosisProgressed(Message):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class DiagnosisFinished(Message):
    def __init__(self, diagnosis: Any) -> None:
        super().__init__()
        self.diagnosis = diagnosis


class PodLogLoaded(Message):
    def __init__(self, key: str, text: str) -> None:
        super().__init__()
        self.key = key
        self.text = text


class PlansBuilt(Message):
    """Plans built (previews, or one plan put up for approval); `diagnosis` is the flow's
    diagnosis they were built from (it re-diagnoses when the cluster changed)."""

    def __init__(self, plans: dict[str, Any], diagnosis: Any = None,
                 approval: bool = False) -> None:
        super().__init__()
        self.plans = plans
        self.diagnosis = diagnosis
        self.approval = approval


class StepLinesLogged(Message):
    """Lines are waiting in the log pane's buffer (one message per batch, not per line)."""


class StepFinished(Message):
    def __init__(self, step: str, outcome: Any, *, rollback: bool = False) -> None:
        super().__init__()
        self.step = step
        self.outcome = outcome
        self.rollback = rollback


class CheckCompleted(Message):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class ValidationFinished(Message):
    def __init__(self, results: list[Any]) -> None:
        super().__init__()
        self.results = results


class SessionFinished(Message):
    def __init__(self, verdict: str) -> None:
        super().__init__()
        self.verdict = verdict


class ReportExported(Message):
    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = paths


class RolloutProgressed(Message):
    """A step waits for restarted pods: `ready` of `total` Running and Ready."""

    def __init__(self, what: str, ready: int, total: int) -> None:
        super().__init__()
        self.what = what
        self.ready = ready
        self.total = total


class RollbackPlanned(Message):
    """The rollback of a step as a plan: exactly what Undo will run, in order."""

    def __init__(self, step: str, plan: Any) -> None:
        super().__init__()
        self.step = step
        self.plan = plan


class PlanStale(Message):
    """flow.apply() refused a plan built before the cluster last changed."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__()
        self.step = step
        self.reason = reason


class SettleWaited(Message):
    """The flow waits for the cluster to settle: checks still failing, seconds left."""

    def __init__(self, failing: list[Any], left: float) -> None:
        super().__init__()
        self.failing = failing
        self.left = left


class PassPlanned(Message):
    """After a pass: the steps another pass would act on ([] = converged)."""

    def __init__(self, steps: list[str], diagnosis: Any) -> None:
        super().__init__()
        self.steps = steps
        self.diagnosis = diagnosis


class PassStarted(Message):
    def __init__(self, pass_no: int) -> None:
        super().__init__()
        self.pass_no = pass_no


class RecordReplayed(Message):
    """The session replayed from its journal (core.record.SessionRecord) and its verdict."""

    def __init__(self, record: Any, verdict: str | None) -> None:
        super().__init__()
        self.record = record
        self.verdict = verdict
