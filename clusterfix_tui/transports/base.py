"""The two ports the core talks through. Pure: importing this must not import paramiko or kubernetes.

Transports (ssh.py, local.py, kube.py, dryrun.py) implement these; the core and the tests only
depend on the protocols, so a fake is a plain class.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from clusterfix_tui.core.model import CommandResult

# on_line(stream, line): stream is "stdout" or "stderr"; line has no trailing newline.
LineCallback = Callable[[str, str], None]


class TransportError(Exception):
    """A node or the API could not be reached or used. str(e) is a message for humans."""


class NodeUnreachable(TransportError):
    """TCP connect failed, timed out, or the connection dropped."""


class AuthFailed(TransportError):
    """The node answered but refused our credentials."""


class HostKeyUnknown(TransportError):
    """The node's host key is not in known_hosts. The UI may offer to accept it."""

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str, key_line: str):
        super().__init__(
            f"host key for {host} is not known ({key_type} {fingerprint}); "
            f"not in {known_hosts}"
        )
        self.host = host
        self.key_type = key_type
        self.fingerprint = fingerprint  # "SHA256:..."
        self.known_hosts = known_hosts  # file an accepted key is added to
        self.key_line = key_line  # the known_hosts line to append on accept


class HostKeyChanged(TransportError):
    """The node's host key differs from known_hosts: refused, always."""


class SudoPasswordRequired(TransportError):
    """A non-root user's `sudo -n` needs a password."""


class APIError(TransportError):
    """The Kubernetes API failed or refused a call."""


@runtime_checkable
class NodeShell(Protocol):
    """A shell on one node. run() never raises for a non-zero exit; it raises TransportError
    subclasses only when the node cannot be used at all (connect/auth/host key)."""

    node: str

    def run(
        self,
        command: str,
        *,
        timeout: float = 60.0,
        on_line: LineCallback | None = None,
        stdin: bytes | None = None,
    ) -> CommandResult: ...

    def close(self) -> None: ...


@runtime_checkable
class ClusterAPI(Protocol):
    """The Kubernetes API as plain JSON dicts (camelCase, as `kubectl get -o json` prints them)."""

    def describe(self) -> dict[str, Any]:
        """{"context": ..., "server": ..., "user": ...} for the report; never credentials."""
        ...

    def version(self) -> dict[str, Any]: ...
    def list_nodes(self) -> list[dict[str, Any]]: ...
    def list_pods(
        self, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...
    def list_daemonsets(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def list_events(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def pod_log(
        self, namespace: str, name: str, container: str | None = None, tail_lines: int = 50,
        previous: bool = False,
    ) -> str: ...
    # writes the repair steps need
    def delete_pod(self, namespace: str, name: str) -> None: ...
    def restart_daemonset(self, namespace: str, name: str) -> None:
        """As `kubectl rollout restart`: patch spec.template.metadata.annotations
        kubectl.kubernetes.io/restartedAt = now (RFC 3339)."""
        ...

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...


class ShellFactory(Protocol):
    """Gives the (reused) shell of a node. `address` is the node's InternalIP, used when the SSH
    config has no Host entry for the node name. Raises TransportError subclasses."""

    def __call__(self, node: str, address: str | None = None) -> NodeShell: ...


class ActionRunner(Protocol):
    """Runs one approved core.model.Action: shell actions on their node, api actions on the
    ClusterAPI. The dry-run runner (transports/dryrun.py) records and runs nothing; which runner a
    session gets is decided once, in clusterfix_tui/runtime.py."""

    dry_run: bool

    def run_action(self, action: Any, *, on_line: LineCallback | None = None) -> CommandResult: ...
