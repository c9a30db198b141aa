"""The real ActionRunner: shell actions on their node's shell, api actions on the ClusterAPI.

It never raises for a node or API problem: a TransportError becomes CommandResult(error=...).
For api actions the result mirrors kubectl:
- success: exit_code 0 and the one line kubectl prints (`pod "x" deleted`,
  `daemonset.apps/x restarted`, `deployment.apps/x patched`), also sent to on_line;
- the API refused the call (403, 404, 422...): exit_code 1, the message in stderr;
- the API could not be reached: exit_code None and error (the call may not have happened).
"""

from __future__ import annotations

import time

from clusterfix_tui.core.model import Action
from clusterfix_tui.core.ports import (
    APIError,
    APIUnreachable,
    ClusterAPI,
    CommandResult,
    LineCallback,
    ShellFactory,
    TransportError,
)

API_VERBS = ("delete_pod", "restart_daemonset", "patch_deployment")


class TransportRunner:
    """ActionRunner with dry_run=False."""

    dry_run = False

    def __init__(self, api: ClusterAPI | None, shells: ShellFactory | None):
        self.api = api
        self.shells = shells

    def run_action(self, action: Action, *, on_line: LineCallback | None = None) -> CommandResult:
        start = time.monotonic()
        try:
            if action.kind == "shell":
                return self._shell(action, on_line)
            if action.kind == "api":
                return self._api(action, on_line, start)
            return CommandResult(exit_code=None, error=f"unknown action kind {action.kind!r}")
        except TransportError as exc:
            return CommandResult(exit_code=None, duration=time.monotonic() - start,
                                 error=str(exc) or type(exc).__name__)

    def _shell(self, action: Action, on_line: LineCallback | None) -> CommandResult:
        if self.shells is None:
            return CommandResult(exit_code=None, error="no node shells in this session")
        shell = self.shells(action.target)
        return shell.run(action.command, timeout=action.timeout, on_line=on_line)

    def _api(self, action: Action, on_line: LineCallback | None, start: float) -> CommandResult:
        spec = dict(action.api or {})
        verb = spec.get("verb")
        if self.api is None:
            return CommandResult(exit_code=None, error="no Kubernetes API in this session")
        if verb not in API_VERBS:
            return CommandResult(exit_code=1, stderr=f"error: unknown API verb {verb!r}\n",
                                 duration=time.monotonic() - start)
        ns, name = spec.get("namespace"), spec.get("name")
        if not ns or not name:
            return CommandResult(exit_code=1, stderr=f"error: {verb} needs namespace and name\n",
                                 duration=time.monotonic() - start)
        try:
            if verb == "delete_pod":
                self.api.delete_pod(ns, name)
                line = f'pod "{name}" deleted'
            elif verb == "restart_daemonset":
                self.api.restart_daemonset(ns, name)
                line = f"daemonset.apps/{name} restarted"
            else:
                patch = spec.get("patch")
                if not isinstance(patch, dict):
                    return CommandResult(exit_code=1, stderr="error: patch_deployment needs a "
                                         "'patch' mapping\n", duration=time.monotonic() - start)
                self.api.patch_deployment(ns, name, patch)
                line = f"deployment.apps/{name} patched"
        except APIError as exc:
            if isinstance(exc, APIUnreachable):
                return CommandResult(exit_code=None, duration=time.monotonic() - start,
                                     error=str(exc))
            if on_line is not None:
                on_line("stderr", f"Error: {exc}")
            return CommandResult(exit_code=1, stderr=f"Error: {exc}\n",
                                 duration=time.monotonic() - start)
        if on_line is not None:
            on_line("stdout", line)
        return CommandResult(exit_code=0, stdout=line + "\n", duration=time.monotonic() - start)
