"""The ports between the core and the transports: protocols, the values that cross them, and the
errors they raise. Pure: importing this imports no paramiko, kubernetes or textual.

Transports (ssh.py, local.py, kube.py, runner.py, dryrun.py, probe.py) implement the protocols and
raise the errors below; the core and the UI catch them with `isinstance` and read what they need
(finding code, title, connection state, host key) from the class, never from its name. A test
fake is a plain class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from clusterfix_tui.core.model import Action

# on_line(stream, line): stream is "stdout" or "stderr"; line has no trailing newline.
LineCallback = Callable[[str, str], None]

ConnState = Literal[
    "pending", "connected", "auth-failed", "unreachable", "host-key-unknown",
    "host-key-changed", "sudo-password", "error",
]
CONN_STATES: tuple[ConnState, ...] = (
    "pending", "connected", "auth-failed", "unreachable", "host-key-unknown",
    "host-key-changed", "sudo-password", "error",
)


# -- values ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommandResult:
    """What one command did. exit_code is None when it never finished (timeout, lost connection)."""

    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    error: str | None = None  # transport-level failure, in words

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostKey:
    """A node's SSH host key as the user is asked to judge it (`ssh-keygen -lf` style)."""

    key_type: str  # "ssh-ed25519"
    fingerprint: str  # "SHA256:..."
    node: str
    address: str | None = None

    def __str__(self) -> str:
        return f"{self.key_type} {self.fingerprint}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- errors ------------------------------------------------------------------------------------

class TransportError(Exception):
    """A node or the API could not be reached or used. str(e) is a message for humans.

    Each class says what it means: `code` (the finding code a node that raised it gets, None when
    it is not about one node), `title` (a short heading for humans) and `conn_state` (the
    connection state it puts a node in).
    """

    code: ClassVar[str | None] = "SSH_UNREACHABLE"
    title: ClassVar[str] = "Connection failed"
    finding_title: ClassVar[str] = "the node's shell could not be opened"
    conn_state: ClassVar[ConnState] = "error"


class NodeUnreachable(TransportError):
    """TCP connect failed, timed out, or the connection dropped."""

    code = "SSH_UNREACHABLE"
    title = "Node unreachable"
    finding_title = "SSH to the node failed: unreachable"
    conn_state = "unreachable"


class ConnectTimeout(NodeUnreachable):
    """The node did not answer in time (TCP connect, SSH banner or handshake). A command that
    outlives its timeout is not an error: NodeShell.run returns CommandResult(timed_out=True)."""

    title = "Node did not answer in time"


class AuthFailed(TransportError):
    """The node answered but refused our credentials."""

    code = "SSH_AUTH_FAILED"
    title = "SSH authentication failed"
    finding_title = "SSH refused our credentials"
    conn_state = "auth-failed"


class HostKeyUnknown(TransportError):
    """The node's host key is not in known_hosts. The UI may offer to accept it."""

    code = "HOST_KEY_UNKNOWN"
    title = "Unknown host key"
    finding_title = "the node's SSH host key is not known"
    conn_state = "host-key-unknown"

    def __init__(self, host: str, key_type: str, fingerprint: str, known_hosts: str,
                 key_line: str, *, node: str | None = None, address: str | None = None,
                 note: str | None = None):
        super().__init__(
            f"host key for {host} is not known ({key_type} {fingerprint}); "
            f"not in {known_hosts}" + (f"; {note}" if note else "")
        )
        self.host = host  # the name known_hosts knows it by ("node-1" or "node-1 (alias)")
        self.key = HostKey(key_type, fingerprint, node or host, address)
        self.known_hosts = known_hosts  # file an accepted key is added to
        self.key_line = key_line  # the known_hosts line to append on accept

    @property
    def key_type(self) -> str:
        return self.key.key_type

    @property
    def fingerprint(self) -> str:
        return self.key.fingerprint


class HostKeyChanged(TransportError):
    """The node's host key differs from known_hosts (or is revoked): refused, always."""

    code = "HOST_KEY_CHANGED"
    title = "Host key CHANGED (refused)"
    finding_title = "the node's SSH host key CHANGED: refused"
    conn_state = "host-key-changed"

    def __init__(self, message: str, *, key: HostKey | None = None,
                 known_hosts: str | None = None, line_no: int | None = None):
        super().__init__(message)
        self.key = key  # what the node offers now
        self.known_hosts = known_hosts  # the file holding the old key
        self.line_no = line_no  # and its line


class SudoPasswordRequired(TransportError):
    """A non-root user's `sudo -n` needs a password."""

    code = "SUDO_PASSWORD_REQUIRED"
    title = "sudo needs a password"
    finding_title = "sudo on the node needs a password"
    conn_state = "sudo-password"


class KubeconfigError(TransportError):
    """The kubeconfig is missing, unreadable, malformed, or lacks the asked-for context."""

    code = None
    title = "Unusable kubeconfig"


class APIError(TransportError):
    """The Kubernetes API failed or refused a call. `status` is the HTTP status (None: no
    answer). API failures are the diagnosis' error, not a node finding: `code` is None."""

    code = None
    title = "Kubernetes API error"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class APIUnreachable(APIError):
    """The API server did not answer (connection refused, timeout, TLS failure, DNS)."""

    title = "Kubernetes API unreachable"


def conn_state(exc: BaseException) -> ConnState:
    """The connection state a failure to open a node's shell puts the node in."""
    return exc.conn_state if isinstance(exc, TransportError) else "error"


def host_key(exc: BaseException) -> HostKey | None:
    """The host key a HostKeyUnknown / HostKeyChanged is about, else None."""
    return exc.key if isinstance(exc, (HostKeyUnknown, HostKeyChanged)) else None


# -- protocols ---------------------------------------------------------------------------------

@runtime_checkable
class NodeShell(Protocol):
    """A shell on one node. run() never raises for a non-zero exit or a command timeout (see
    CommandResult); it raises TransportError subclasses only when the node cannot be used at all
    (connect, auth, host key, sudo)."""

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
class NetlinkShell(NodeShell, Protocol):
    """A NodeShell on the machine the tool runs on (transports/local.py): links, addresses and
    routes come from netlink, as facts sections (shaped like `ip -j` output), not from `ip`."""

    def netlink_sections(self) -> dict[str, str]: ...


@runtime_checkable
class ClusterAPI(Protocol):
    """The Kubernetes API as plain JSON dicts (camelCase, as `kubectl get -o json` prints them).
    Raises APIError (APIUnreachable when the server did not answer)."""

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
    def get_namespace(self, name: str) -> dict[str, Any] | None:
        """The Namespace object (None when absent): its metadata.uid identifies the cluster."""
    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def list_events(self, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    # cluster DNS (core/snapshot.py read_dns); an API object without them: DNS is not read
    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def list_deployments(self, namespace: str) -> list[dict[str, Any]]: ...
    def list_endpointslices(self, namespace: str,
                            label_selector: str | None = None) -> list[dict[str, Any]]:
        """discovery.k8s.io/v1; APIError(status=404) when the server does not serve them."""
        ...

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


class ShellPool(ShellFactory, Protocol):
    """The ShellFactory a session gets (transports.ssh.SSHPool): also trusts a host key the user
    accepted, and closes every connection."""

    def accept_host_key(self, exc: HostKeyUnknown) -> None: ...
    def close(self) -> None: ...


class ActionRunner(Protocol):
    """Runs one approved core.model.Action: shell actions on their node, api actions on the
    ClusterAPI. Never raises for a node or API problem (a TransportError becomes
    CommandResult(error=...)). The dry-run runner (transports/dryrun.py) records and runs nothing;
    which runner a session gets is decided once, in clusterfix_tui/runtime.py."""

    dry_run: bool

    def run_action(self, action: Action, *, on_line: LineCallback | None = None) -> CommandResult: ...


class Prober(Protocol):
    """TCP/HTTP probes from the workstation (validation's NodePort check). Never raises."""

    def http(self, url: str, timeout: float) -> tuple[int | None, str]:
        """(HTTP status or None when there was no HTTP answer, detail)."""
        ...

    def tcp(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        """(connected, detail)."""
        ...
