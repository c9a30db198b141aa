"""Nodes we could not read: transport failures and unreadable facts become findings."""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core.model import Finding
from clusterfix_tui.core.ports import HostKeyChanged, HostKeyUnknown, TransportError

REF_SSH = "https://man.openbsd.org/ssh_config"
EXPLAIN = {
    "SSH_UNREACHABLE": "No TCP connection to the node's sshd (down, firewalled, wrong address). "
                       "Nothing on this node was diagnosed.",
    "SSH_AUTH_FAILED": "sshd answered but refused the key/agent identities offered. Check User and "
                       "IdentityFile in the SSH config.",
    "HOST_KEY_UNKNOWN": "The host key is not in known_hosts. Verify the fingerprint out of band, "
                        "then accept it (the wizard offers to).",
    "HOST_KEY_CHANGED": "The host key differs from known_hosts: either the node was reinstalled or "
                        "someone is in the middle. Never accepted automatically: check it and fix "
                        "known_hosts by hand.",
    "SUDO_PASSWORD_REQUIRED": "The SSH user is not root and `sudo -n` needs a password: allow "
                              "passwordless sudo for it, or connect as root.",
}


def transport_finding(node: str, address: str | None, exc: BaseException) -> Finding:
    """A TransportError (or any failure opening the node's shell) as a finding: the error class
    says which code and title (core/ports.py)."""
    code, title = "SSH_UNREACHABLE", TransportError.finding_title
    if isinstance(exc, TransportError) and exc.code is not None and exc.code in EXPLAIN:
        code, title = exc.code, exc.finding_title
    data: dict[str, Any] = {"address": address, "error": str(exc),
                            "error_type": type(exc).__name__}
    if isinstance(exc, HostKeyUnknown):
        data.update(host=exc.host, key_type=exc.key_type, fingerprint=exc.fingerprint,
                    known_hosts=exc.known_hosts, key_line=exc.key_line)
    elif isinstance(exc, HostKeyChanged):
        if exc.key is not None:
            data.update(host=exc.key.node, key_type=exc.key.key_type,
                        fingerprint=exc.key.fingerprint)
        if exc.known_hosts is not None:
            data["known_hosts"] = exc.known_hosts
    evidence = [f"{type(exc).__name__}: {exc}"]
    if address:
        evidence.append(f"address: {address}")
    return Finding(code=code, severity="critical", node=node, title=title,
                   evidence=tuple(evidence), explanation=EXPLAIN[code], reference=REF_SSH,
                   step=None, data=data)


def unreadable_finding(node: str, *, exit_code: int | None, errors: list[str] | tuple[str, ...],
                       raw: str, stderr: str = "", error: str | None = None) -> Finding:
    evidence = [f"facts script exit {exit_code}" + (f": {error}" if error else "")]
    evidence += list(errors)[:5]
    if stderr.strip():
        evidence.append("stderr: " + stderr.strip().splitlines()[-1][:300])
    return Finding(
        code="FACTS_UNREADABLE", severity="error", node=node,
        title="the node answered, but its facts could not be read",
        evidence=tuple(evidence),
        explanation=("The facts script ran over SSH but its output was cut or malformed (timeout, "
                     "shell without the needed tools, or output mangled by a login banner). The "
                     "node's checks were skipped; the raw text is kept."),
        reference="", step=None,
        data={"exit_code": exit_code, "errors": list(errors), "raw": raw[:4096],
              "stderr": stderr[-2048:], "error": error},
    )
