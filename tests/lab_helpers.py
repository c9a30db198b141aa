"""Shared lab set-up for tests: one real lab per test module, torn down after it.

    from lab_helpers import lab_fixture                # tests/ is on sys.path under pytest
    lab = lab_fixture(nodes=3, faults="none")          # a module-scoped pytest fixture named `lab`

    def test_something(lab):                           # lab is a clusterfix_tui.lab.cluster.LabHandle
        lab.exec("node-2", "ip -br addr")

or, for a fixture of your own: `with running_lab(tmp_path_factory, nodes=3) as lab: ...`.
The teardown checks that `lab down` removed the lab's namespaces and bridge.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Iterator

import pytest
from determinism import poll_until

# lab fault -> (the finding code it shows as, where: on the faulted node, or on its peers)
FAULT_FINDINGS: dict[str, tuple[str, str]] = {
    "iptables-shadow": ("IPTABLES_BACKEND_CONFLICT", "node"),
    "iptables-foreign-rule": ("KUBE_PROXY_INCOMPATIBLE_CHAIN", "node"),
    "forward-drop": ("FORWARD_DROP", "node"),
    "firewall-reject": ("FIREWALL_REJECT", "node"),
    "kube-proxy-crashloop": ("KUBE_PROXY_CRASHLOOP", "node"),
    "cni-bridge-conflict": ("CNI_BRIDGE_CONFLICT", "node"),
    "flannel-stale-vtep": ("FLANNEL_STALE_VTEP", "peers"),
    "flannel-stale-subnet": ("FLANNEL_STALE_SUBNET", "node"),
    "worker-kubeconfig": ("WORKER_KUBECONFIG_BROKEN", "node"),
    "ip-forward-off": ("IP_FORWARD_OFF", "node"),
    "br-netfilter-off": ("BR_NETFILTER_OFF", "node"),
    "ipv6-forward-off": ("IPV6_FORWARD_OFF", "node"),
    "br-netfilter-ip6-off": ("BR_NETFILTER_IP6_OFF", "node"),
}


@contextlib.contextmanager
def running_lab(tmp_path_factory: pytest.TempPathFactory, nodes: int = 3, faults: object = "none",
                prefix: str = "lab", **options: object) -> Iterator:
    """A lab (cluster.up with `options`: ssh_user, bastion, host_ca, timeout...) torn down on
    exit, and checked gone: none of its namespaces (nodes and bastion) is left."""
    from clusterfix_tui.lab import cluster

    d = tmp_path_factory.mktemp(prefix) / "lab"
    handle = cluster.up(d, nodes=nodes, faults=faults, **options)  # type: ignore[arg-type]
    info = handle.info
    try:
        yield handle
    finally:
        cluster.down(d)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        ours = [n["netns"] for n in info["nodes"]]
        if info.get("bastion"):
            ours.append(info["bastion"]["netns"])
        assert not any(ns in left.split() for ns in ours), f"lab down left namespaces: {left}"


def lab_fixture(nodes: int = 3, faults: object = "none", scope: str = "module", name: str = "lab"):
    """A pytest fixture (default: module-scoped, named `lab`) yielding a LabHandle."""

    @pytest.fixture(scope=scope, name=name)
    def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
        with running_lab(tmp_path_factory, nodes=nodes, faults=faults) as handle:
            yield handle

    return _lab


class Gate:
    """A kill point that is always hit: on `node`, every shell command whose text contains
    `match` (from the `hold_from`-th such command on) blocks at its start until the test
    releases it.

    A directory bind-mounted over /usr/local/sbin in the node's private mount namespace puts a
    `sh` first on PATH (the SSH transport runs `timeout -s KILL N sh -c COMMAND`); for a matching
    COMMAND it records its pid in `started`, then reads a verdict from a FIFO: "go" runs the real
    /bin/sh, anything else exits 111 without running the command. The host and the other nodes
    are untouched. Use as a context manager; leaving it aborts whatever still waits and unmounts.
    """

    def __init__(self, lab, node: str, tmp, match: str, hold_from: int = 1) -> None:
        from pathlib import Path

        self.lab, self.node = lab, node
        self.dir = Path(tmp) / f"gate-{node}-{os.getpid()}-{id(self):x}"
        (self.dir / "bin").mkdir(parents=True)
        self.fifo = self.dir / "gate"
        os.mkfifo(self.fifo)
        self.started = self.dir / "started"
        self.started.touch()
        w = self.dir / "bin" / "sh"
        w.write_text(
            "#!/bin/sh\n"
            # the transport's outer shell (it reports its pid, then execs `timeout ... sh -c`)
            # passes: the gate holds the command itself, under the node's own timeout
            'case "$*" in *@@CFXPID*|*"exec timeout "*) exec /bin/sh "$@" ;; esac\n'
            f'case "$*" in *{shlex.quote(match)}*) ;; *) exec /bin/sh "$@" ;; esac\n'
            # the first hold_from - 1 matching commands pass (counted in `passed`)
            f"passed={shlex.quote(str(self.dir / 'passed'))}\n"
            f'if [ "$(cat "$passed" 2>/dev/null | wc -l)" -lt {int(hold_from) - 1} ]; then\n'
            '    echo $$ >> "$passed"; exec /bin/sh "$@"\n'
            "fi\n"
            f"echo $$ >> {shlex.quote(str(self.started))}\n"
            f"read verdict < {shlex.quote(str(self.fifo))}\n"
            '[ "$verdict" = go ] || exit 111\n'
            'exec /bin/sh "$@"\n')
        w.chmod(0o755)
        self._fd: int | None = None
        self.mounted = False

    def __enter__(self) -> "Gate":
        self.lab.exec(self.node, f"mount --bind {self.dir / 'bin'} /usr/local/sbin")
        self.mounted = True
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [int(x) for x in self.started.read_text().split()]

    def wait_started(self, timeout: float = 120) -> int:
        """The pid of the first command that reached the gate (it is blocked there now)."""
        return poll_until(lambda: self.pids()[:1], timeout, f"a command at the gate on "
                          f"{self.node}")[0]

    def release(self, go: bool = False, n: int = 64) -> None:
        """Let waiting (and later) commands through (go) or make them exit 111 (abort)."""
        if self._fd is None:  # held open until close(): a reader arriving later still reads
            self._fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        os.write(self._fd, (b"go\n" if go else b"abort\n") * n)

    def close(self) -> None:
        # a held command keeps the wrapper open (umount would be "busy"): abort them first
        if self.pids():
            self.release(go=False)
            poll_until(lambda: not any(pid_alive(p) for p in self.pids()), 30,
                       "the gated commands to end")
        if self.mounted:
            self.lab.exec(self.node, "umount /usr/local/sbin || umount -l /usr/local/sbin")
            self.mounted = False
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as ended)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
