"""Compatibility names: the ports now live in clusterfix_tui/core/ports.py (imported by core and
transports alike). New code imports from there."""

from clusterfix_tui.core.ports import (
    ActionRunner,
    APIError,
    APIUnreachable,
    AuthFailed,
    ClusterAPI,
    CommandResult,
    ConnectTimeout,
    HostKey,
    HostKeyChanged,
    HostKeyUnknown,
    KubeconfigError,
    LineCallback,
    NodeShell,
    NodeUnreachable,
    Prober,
    ShellFactory,
    ShellPool,
    SudoPasswordRequired,
    TransportError,
)

__all__ = [
    "APIError", "APIUnreachable", "ActionRunner", "AuthFailed", "ClusterAPI", "CommandResult",
    "ConnectTimeout", "HostKey", "HostKeyChanged", "HostKeyUnknown", "KubeconfigError",
    "LineCallback", "NodeShell", "NodeUnreachable", "Prober", "ShellFactory", "ShellPool",
    "SudoPasswordRequired", "TransportError",
]
