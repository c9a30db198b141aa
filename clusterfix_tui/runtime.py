"""The one place that builds transports from the command-line flags.

Every command and the wizard call `build_runtime(...)` and get a `Runtime`: the ClusterAPI, the
SSH pool (the ShellFactory that reuses one connection per node), the Prober (TCP/HTTP from this
machine), and the ActionRunner, which is the dry-run runner when dry_run=True (chosen here, once;
nothing else checks a flag). paramiko and kubernetes are imported inside build_runtime, so
importing this module stays light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Self

from clusterfix_tui.core.ports import ActionRunner, ClusterAPI, Prober, TransportError


class LabDirError(TransportError):
    """--lab-dir does not hold a lab."""

    code = None
    title = "No lab in that directory"


@dataclass
class Runtime:
    api: ClusterAPI
    shells: Any  # transports.local.NodeShells over the SSH pool: ShellFactory + accept_host_key()
    runner: ActionRunner
    dry_run: bool
    prober: Prober  # TCP/HTTP from this machine (validation's NodePort check)
    kubeconfig: str | None = None
    ssh_config: str | None = None
    lab_dir: str | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for part in (self.shells, self.api):
            closer = getattr(part, "close", None)
            if closer is not None:
                try:
                    closer()
                except Exception:  # noqa: BLE001 - closing must not mask the command's result
                    pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lab_paths(lab_dir: str) -> tuple[str, str]:
    """(kubeconfig, ssh_config) of a lab built by `clusterfix-tui lab up --dir D`."""
    lab_dir = os.path.abspath(os.path.expanduser(lab_dir))
    if not os.path.isdir(lab_dir):
        raise LabDirError(f"lab directory {lab_dir} does not exist (run `clusterfix-tui lab up "
                          f"--dir {lab_dir}` first)")
    return os.path.join(lab_dir, "kubeconfig"), os.path.join(lab_dir, "ssh_config")


def build_runtime(
    kubeconfig: str | None = None,
    context: str | None = None,
    ssh_config: str | None = None,
    lab_dir: str | None = None,
    dry_run: bool = False,
    *,
    local_node: str | None = None,
    no_local: bool = False,
    accept_host_keys: str | None = None,
    connect_timeout: float = 5.0,
    command_timeout: float = 60.0,
) -> Runtime:
    """Raises KubeconfigError / TransportError with a message for humans when the flags point at
    nothing usable. Nothing is contacted yet: the API on first call, a node on first pool(node).

    The node this process runs on (found by LocalIdentity, or named by `local_node`) is reached
    through the local transport instead of SSH; `no_local` makes every node go over SSH."""
    from clusterfix_tui.transports.dryrun import DryRunRunner
    from clusterfix_tui.transports.kube import KubeClusterAPI
    from clusterfix_tui.transports.local import NodeShells
    from clusterfix_tui.transports.probe import StdlibProber
    from clusterfix_tui.transports.runner import TransportRunner
    from clusterfix_tui.transports.ssh import SSHPool, read_expected_host_keys

    freeze_startup_heap()
    if lab_dir:
        lab_kubeconfig, lab_ssh_config = lab_paths(lab_dir)
        kubeconfig = kubeconfig or lab_kubeconfig
        ssh_config = ssh_config or lab_ssh_config
    api = KubeClusterAPI(kubeconfig, context)
    expected = read_expected_host_keys(accept_host_keys) if accept_host_keys else None
    pool = SSHPool(ssh_config, connect_timeout=connect_timeout, command_timeout=command_timeout,
                   expected_host_keys=expected)
    shells = NodeShells(pool, local_node="" if no_local else local_node)
    runner: ActionRunner = DryRunRunner() if dry_run else TransportRunner(api, shells)
    return Runtime(api=api, shells=shells, runner=runner, dry_run=dry_run,
                   prober=StdlibProber(),
                   kubeconfig=getattr(api, "kubeconfig", kubeconfig), ssh_config=pool.ssh_config,
                   lab_dir=os.path.abspath(lab_dir) if lab_dir else None)


def freeze_startup_heap() -> bool:
    """Once per process, before the first runtime is built: import what every diagnosis uses
    (the kubernetes client's API classes, the core's checks) and move everything alive into the
    garbage collector's permanent generation (core.diagnose.freeze_startup_heap), so that the
    full collection at the end of each diagnosis walks what the process made since, not the
    ~140k objects of its modules. True if it froze now."""
    from clusterfix_tui.core.checks import all_checks
    from clusterfix_tui.core.diagnose import freeze_startup_heap as freeze
    from clusterfix_tui.transports.kube import preload

    preload()
    all_checks()  # imports every check module
    return freeze()


def local_flags(args: Any) -> dict[str, Any]:
    """build_runtime's keyword arguments from the shared connection flags of a parsed command
    line beyond the kubeconfig/ssh/lab ones: --local-node, --no-local, --accept-host-keys."""
    return {"local_node": getattr(args, "local_node", None) or None,
            "no_local": bool(getattr(args, "no_local", False)),
            "accept_host_keys": getattr(args, "accept_host_keys", None) or None}


def build_replay_runtime(bundle_path: str) -> Runtime:
    """A Runtime over an evidence bundle (core/bundle.py): the API and the nodes answer what they
    answered when it was taken, actions are dry-run, probes touch no network. Raises BundleError."""
    from clusterfix_tui.core.bundle import read
    from clusterfix_tui.transports.dryrun import DryRunRunner
    from clusterfix_tui.transports.replay import OfflineProber, ReplayAPI, ReplayShells

    bundle = read(bundle_path)
    return Runtime(api=ReplayAPI(bundle), shells=ReplayShells(bundle), runner=DryRunRunner(),
                   dry_run=True, prober=OfflineProber(), kubeconfig=None, ssh_config=None,
                   lab_dir=None)
