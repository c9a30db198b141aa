"""The dry-run ActionRunner: records every action it is given and runs nothing.

No shell is opened and no API call is made: `run_action` appends the action to `.recorded` and
returns the NOT-RUN result. The convention the step engine can rely on:

    CommandResult(exit_code=None, stdout="", stderr="", duration=0.0, timed_out=False, error=None)

A real runner never returns that combination: a command that ran has an exit code, and one that
did not finish says why (timed_out=True or an error). `is_not_run(result)` tests for it. A dry-run
result is therefore never `.ok`: the engine must look at `runner.dry_run` (or `is_not_run`) and
report the action as "dry-run", not as failed.

Which runner a session gets is decided once, in clusterfix_tui/runtime.py; the session's reads
(diagnosis, validation) go through the real API and shells in both modes, and never through here.
"""

from __future__ import annotations

import threading

from clusterfix_tui.core.model import Action
from clusterfix_tui.core.ports import CommandResult, LineCallback

NOT_RUN = CommandResult(exit_code=None, stdout="", stderr="", duration=0.0, timed_out=False,
                        error=None)


def is_not_run(result: CommandResult) -> bool:
    """True for the dry-run runner's result: nothing ran, nothing failed."""
    return result == NOT_RUN


class DryRunRunner:
    """ActionRunner with dry_run=True."""

    dry_run = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recorded: list[Action] = []

    def run_action(self, action: Action, *, on_line: LineCallback | None = None) -> CommandResult:
        with self._lock:
            self.recorded.append(action)
        return NOT_RUN
