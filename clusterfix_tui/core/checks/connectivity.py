"""Nodes we could not read: transport failures and unreadable facts become findings."""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterfix_tui.core.model import Finding, FindingData
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



@dataclass(frozen=True, kw_only=True)
class ConnectionData(FindingData, codes=("SSH_UNREACHABLE", "SSH_AUTH_FAILED", "HOST_KEY_UNKNOWN",
                                          "HOST_KEY_CHANGED", "SUDO_PASSWORD_REQUIRED")):
    address: str | None = None
    error: str = ""
    error_type: str = ""
    # host key codes only: the key the node offers, and the known_hosts file at stake
    host: str | None = None
    key_type: str | None = None
    fingerprint: str | None = None
    known_hosts: str | None = None
    key_line: str | None = None  # HOST_KEY_UNKNOWN: the line an accept appends


@dataclass(frozen=True, kw_only=True)
class FactsUnreadableData(FindingData, codes=("FACTS_UNREADABLE",)):
    exit_code: int | None = None
    errors: list[str] = field(default_factory=list)
    raw: str = ""  # the first 4 KiB of what came back
    stderr: str = ""
    error: str | None = None

@dataclass(frozen=True, kw_only=True)
class NodeFactsTimeoutData(FindingData, codes=("NODE_FACTS_TIMEOUT",)):
    sections: list[str] = field(default_factory=list)  # the sections killed at their deadline
    commands: list[str] = field(default_factory=list)  # what each of them ran, same order
    timeout: int = 0  # the per-section deadline, seconds
    # the finding codes whose check reads one of these sections: not checked on this node
    # (no finding, no action from them; core.shape.not_checked() lists them with the reason)
    not_checked: list[str] = field(default_factory=list)


def facts_timeout_finding(node: str, sections: list[str], commands: list[str],
                          timeout: int) -> Finding:
    """A node whose facts partly hung: read, but these sections were killed at their deadline.
    Nothing is planned from it (step None): the checks that need the missing facts saw none."""
    from clusterfix_tui.core.checks import sections_read

    evidence = [f"{s}: `{c}` killed after {timeout}s" if c else f"{s}: killed after {timeout}s"
                for s, c in zip(sections, commands, strict=True)]
    names = {s.split(" ", 1)[0] for s in sections}
    skipped = [code for code, secs in sections_read().items() if names & set(secs)]
    if skipped:
        evidence.append("not checked on this node (they read these facts): " + ", ".join(skipped))
    return Finding(
        code="NODE_FACTS_TIMEOUT", severity="warning", node=node,
        title=f"{len(sections)} fact(s) hung on the node and were cut off: {', '.join(sections)}",
        evidence=tuple(evidence),
        explanation=("These commands did not finish within their deadline on the node (a held "
                     "xtables lock, a hung D-Bus or NFS path, a stuck kernel call): each was "
                     "killed, the rest of the node was read and checked. The checks that read "
                     "these facts are NOT checked on this node (no finding, no action: the "
                     "diagnosis lists them as 'not checked'); run the commands by hand there "
                     "to see why they hang."),
        reference="", step=None,
        data=NodeFactsTimeoutData(sections=list(sections), commands=list(commands),
                                  timeout=int(timeout), not_checked=skipped),
    )


def transport_finding(node: str, address: str | None, exc: BaseException) -> Finding:
    """A TransportError (or any failure opening the node's shell) as a finding: the error class
    says which code and title (core/ports.py)."""
    code, title = "SSH_UNREACHABLE", TransportError.finding_title
    if isinstance(exc, TransportError) and exc.code is not None and exc.code in EXPLAIN:
        code, title = exc.code, exc.finding_title
    key = exc.key if isinstance(exc, (HostKeyUnknown, HostKeyChanged)) else None
    data = ConnectionData(
        address=address, error=str(exc), error_type=type(exc).__name__,
        host=exc.host if isinstance(exc, HostKeyUnknown) else key.node if key else None,
        key_type=key.key_type if key else None, fingerprint=key.fingerprint if key else None,
        known_hosts=exc.known_hosts if isinstance(exc, (HostKeyUnknown, HostKeyChanged)) else None,
        key_line=exc.key_line if isinstance(exc, HostKeyUnknown) else None)
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
        data=FactsUnreadableData(exit_code=exit_code, errors=list(errors), raw=raw[:4096],
                                 stderr=stderr[-2048:], error=error),
    )
