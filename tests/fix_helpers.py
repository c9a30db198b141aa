"""Shared fakes for the repair-step tests: a diagnosis, a netns shell runner."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks import data_for
from clusterfix_tui.core.model import CommandResult, Finding


@dataclass
class FakeDiagnosis:
    findings: list[Finding]
    facts: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None


def pod(ns: str, name: str, node: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def snapshot(nodes=("node-1", "node-2", "node-3")) -> dict[str, Any]:
    pods = []
    for n in nodes:
        pods.append(pod("kube-system", f"kube-proxy-{n}", n, {"k8s-app": "kube-proxy"}))
        pods.append(pod("kube-flannel", f"kube-flannel-ds-{n}", n, {"app": "flannel"}))
    return {"pods": pods}


def finding(code: str, node: str, step: str, **data: Any) -> Finding:
    return Finding(code=code, severity="error", node=node, title=code.lower(), step=step,
                   data=data_for(code, **data))


class NetnsRunner:
    """Runs shell actions inside network namespaces (one per node name), each command in a
    private mount namespace where BACKUP_ROOT is a per-test directory: nothing on the host is
    touched. API actions are recorded only."""

    dry_run = False

    def __init__(self, netns_by_node: dict[str, str], backup_dir: str) -> None:
        self.netns = netns_by_node
        self.backup_dir = backup_dir
        self.api_calls: list[dict[str, Any]] = []
        self.ran: list[str] = []

    def run_action(self, action: Any, *, on_line=None) -> CommandResult:
        self.ran.append(action.id)
        if action.kind == "api":
            self.api_calls.append(dict(action.api or {}))
            return CommandResult(exit_code=0, stdout="ok\n")
        return self.sh(action.target, action.command)

    def sh(self, node: str, command: str, timeout: float = 30) -> CommandResult:
        wrapper = ('mkdir -p /var/backups && mount --bind "$1" /var/backups && '
                   'exec sh -c "$2"')
        argv = ["ip", "netns", "exec", self.netns[node], "unshare", "--mount",
                "--propagation", "private", "sh", "-c", wrapper, "x", self.backup_dir, command]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)  # noqa: PLW1510
        return CommandResult(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def new_netns() -> str:
    name = f"cfx-fixt-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)  # noqa: PLW1510


def ns(name: str, command: str) -> str:
    p = subprocess.run(["ip", "netns", "exec", name, "sh", "-c", command], capture_output=True,  # noqa: PLW1510
                       text=True, timeout=30)
    assert p.returncode == 0, (command, p.stderr)
    return p.stdout


def is_root() -> bool:
    return os.geteuid() == 0
