"""Record a diagnosis as it happens, and replay it later without a cluster (core/bundle.py).

RecordingAPI / RecordingShells wrap the real ClusterAPI and ShellFactory: every read goes
through, and what it answered (or raised) is kept. ReplayAPI / ReplayShells answer from a Bundle:
the same calls get the same answers, the facts script gets the recorded output with this run's
nonce, and a node that could not be reached raises the same kind of error. Nothing in a replay
touches a network: OfflineProber answers every probe with "not probed". Writes are refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from clusterfix_tui.core import ports
from clusterfix_tui.core.bundle import Bundle, NodeCapture, call_key
from clusterfix_tui.core.facts import script_nonce
from clusterfix_tui.core.model import CommandResult

READS = ("describe", "version", "list_nodes", "list_pods", "list_daemonsets", "get_configmap",
         "get_namespace", "list_services", "list_endpoints", "list_events", "get_deployment", "pod_log",
         "get_service", "list_deployments", "list_endpointslices")


def _error_record(exc: BaseException) -> dict[str, Any]:
    rec: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ports.HostKeyUnknown):
        rec.update(host=exc.host, key_type=exc.key_type, fingerprint=exc.fingerprint,
                   known_hosts=exc.known_hosts, key_line=exc.key_line)
    elif isinstance(exc, ports.HostKeyChanged):
        if exc.key is not None:
            rec.update(key_type=exc.key.key_type, fingerprint=exc.key.fingerprint,
                       key_node=exc.key.node, key_address=exc.key.address)
        rec.update(known_hosts=exc.known_hosts, line_no=exc.line_no)
    return rec


def _raise_recorded(err: dict[str, Any], default: type[Exception]) -> None:
    """Raise the recorded error again as the ports class of that name (its kind and words are
    what the findings are made of), else as `default`."""
    cls = getattr(ports, str(err.get("type")), None)
    msg = str(err.get("message") or "")
    if cls is ports.HostKeyUnknown:
        raise ports.HostKeyUnknown(str(err.get("host")), str(err.get("key_type")),
                                   str(err.get("fingerprint")), str(err.get("known_hosts")),
                                   str(err.get("key_line")))
    if cls is ports.HostKeyChanged:
        key = None
        if err.get("fingerprint"):
            key = ports.HostKey(str(err.get("key_type")), str(err.get("fingerprint")),
                                str(err.get("key_node")), err.get("key_address"))
        raise ports.HostKeyChanged(msg, key=key, known_hosts=err.get("known_hosts"),
                                   line_no=err.get("line_no"))
    if isinstance(cls, type) and issubclass(cls, ports.TransportError):
        raise cls(msg)
    raise default(msg)


class RecordingAPI:
    """A ClusterAPI that records every read (answer or error) of the API it wraps."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self._lock = threading.Lock()
        self.calls: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._api, name)
        if name not in READS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            key = call_key(name, args, kwargs)
            try:
                value = target(*args, **kwargs)
            except Exception as exc:
                with self._lock:
                    self.calls[key] = {"error": _error_record(exc)}
                raise
            with self._lock:
                self.calls[key] = {"ok": value}
            return value

        return call


class _RecordingShell:
    def __init__(self, inner: Any, cap: NodeCapture) -> None:
        self._inner = inner
        self._cap = cap
        self.node = cap.node
        self.transport = getattr(inner, "transport", "ssh")
        cap.transport = self.transport

    def run(self, command: str, **kw: Any) -> CommandResult:
        try:
            nonce: str | None = script_nonce(command)
        except ValueError:
            nonce = None
        t0 = time.monotonic()
        try:
            res = self._inner.run(command, **kw)
        except Exception as exc:
            if nonce is not None:
                self._cap.transport_error = _error_record(exc)
            raise
        if nonce is not None:  # the facts script: its output is the evidence
            c = self._cap
            c.nonce, c.stdout, c.stderr = nonce, res.stdout, res.stderr
            c.exit_code, c.timed_out, c.error = res.exit_code, res.timed_out, res.error
            c.duration = round(time.monotonic() - t0, 3)
        return res

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != "netlink_sections":
            return attr

        def sections() -> dict[str, str]:
            got = attr()
            self._cap.extra_sections = dict(got)
            return got

        return sections


class RecordingShells:
    """A ShellFactory that records, per node, the facts script's output or the error."""

    def __init__(self, shells: Any) -> None:
        self._shells = shells
        self._lock = threading.Lock()
        self.nodes: dict[str, NodeCapture] = {}

    def __call__(self, node: str, address: str | None = None) -> Any:
        with self._lock:
            cap = self.nodes.setdefault(node, NodeCapture(node=node, address=address))
        try:
            inner = self._shells(node, address)
        except Exception as exc:
            cap.transport_error = _error_record(exc)
            raise
        return _RecordingShell(inner, cap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shells, name)


class ReplayAPI:
    """A ClusterAPI answering from a bundle. A read the bundle does not hold raises APIError."""

    def __init__(self, bundle: Bundle) -> None:
        self._calls = bundle.api

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in READS:
            if name in ("delete_pod", "restart_daemonset", "patch_deployment"):
                def refuse(*args: Any, **kwargs: Any) -> Any:
                    raise ports.APIError(f"{name}: a bundle is read-only evidence")
                return refuse
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            rec = self._calls.get(call_key(name, args, kwargs))
            if rec is None:
                raise ports.APIError(f"{call_key(name, args, kwargs)}: not in the bundle")
            if "error" in rec:
                _raise_recorded(rec["error"], ports.APIError)
            return rec.get("ok")

        return call

    def close(self) -> None:
        """Nothing to close."""


class ReplayShell:
    transport = "replay"

    def __init__(self, cap: NodeCapture) -> None:
        self.node = cap.node
        self._cap = cap
        if cap.extra_sections is not None:
            self.netlink_sections = lambda: dict(cap.extra_sections or {})

    def run(self, command: str, *, timeout: float = 60.0, on_line: Any = None,
            stdin: bytes | None = None) -> CommandResult:
        c = self._cap
        if command == "true":  # the session's connection check: the node was read, or not
            if c.transport_error is not None:
                _raise_recorded(c.transport_error, ports.NodeUnreachable)
            return CommandResult(exit_code=0)
        try:
            nonce = script_nonce(command)
        except ValueError:
            return CommandResult(exit_code=None, error=f"{self.node}: offline bundle: only the "
                                 "facts script's recorded output can be replayed")
        if c.transport_error is not None:
            _raise_recorded(c.transport_error, ports.NodeUnreachable)
        out = c.stdout.replace(c.nonce, nonce) if c.nonce else c.stdout
        return CommandResult(exit_code=c.exit_code, stdout=out, stderr=c.stderr,
                             duration=c.duration, timed_out=c.timed_out, error=c.error)

    def close(self) -> None:
        """Nothing to close."""


class ReplayShells:
    """A ShellFactory over a bundle's node captures; a node the bundle did not read is
    unreachable."""

    def __init__(self, bundle: Bundle) -> None:
        self._nodes = bundle.nodes

    def __call__(self, node: str, address: str | None = None) -> ReplayShell:
        cap = self._nodes.get(node)
        if cap is None:
            raise ports.NodeUnreachable(f"{node}: not in the bundle")
        if cap.transport_error is not None and cap.nonce is None:
            _raise_recorded(cap.transport_error, ports.NodeUnreachable)
        return ReplayShell(cap)

    def accept_host_key(self, exc: Any) -> None:
        raise ports.TransportError("a bundle is replayed offline: no host key to accept")

    def close(self) -> None:
        """Nothing to close."""


class OfflineProber:
    """Validation from a bundle: nothing is probed (no network)."""

    def http(self, url: str, timeout: float) -> tuple[int | None, str]:
        return None, "offline bundle: not probed"

    def tcp(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        return False, "offline bundle: not probed"
