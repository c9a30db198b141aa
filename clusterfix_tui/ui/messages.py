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
    def __init__(self, diagnosis: Any, at: int | None = None) -> None:
        super().__init__()
        self.diagnosis = diagnosis
        self.at = at  # the wizard's change count when the diagnosis started


class PodLogLoaded(Message):
    def __init__(self, key: str, text: str) -> None:
        super().__init__()
        self.key = key
        self.text = text


class PlansBuilt(Message):
    """Plans built; `diagnosis` is set when they were built from a fresh diagnosis; `at` is the
    wizard's change count when the work started (what the plans are fresh for)."""

    def __init__(self, plans: dict[str, Any], diagnosis: Any = None,
                 at: int | None = None) -> None:
        super().__init__()
        self.plans = plans
        self.diagnosis = diagnosis
        self.at = at


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
