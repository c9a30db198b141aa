"""The two ActionRunners and the runtime that picks one: real commands, a real API server.

TransportRunner runs shell actions through LocalShell (subprocess) and api actions against the
lab's API server over HTTPS; DryRunRunner is shown to touch neither.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import socket
import subprocess
import sys
import time

import pytest

from clusterfix_tui.core.model import CLUSTER, Action
from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.runtime import LabDirError, build_runtime
from clusterfix_tui.transports.base import NodeShell
from clusterfix_tui.transports.dryrun import NOT_RUN, DryRunRunner, is_not_run
from clusterfix_tui.transports.kube import KubeClusterAPI, KubeconfigError
from clusterfix_tui.transports.local import (
    LocalShell,
    NodeShells,
    local_links_routes,
    local_shells,
)
from clusterfix_tui.transports.runner import TransportRunner
from clusterfix_tui.transports.ssh import SSHPool

TOKEN = "cfx-runner-token-31b7"


@pytest.fixture(scope="module")
def lab_api():
    api = LabAPI("127.0.0.1", tokens=[TOKEN], tls=True)
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def kubeconfig(lab_api: LabAPI, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("runner") / "kubeconfig"
    lab_api.write_kubeconfig(path, TOKEN)
    return str(path)


@pytest.fixture
def objects(lab_api: LabAPI):
    lab_api.put("v1/pods", "kube-system", "kube-proxy-abc", {
        "metadata": {"name": "kube-proxy-abc", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "kube-proxy", "image": "k"}]}})
    lab_api.put("apps/v1/daemonsets", "kube-system", "kube-proxy", {
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                 "template": {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                              "spec": {"containers": [{"name": "kube-proxy", "image": "k"}]}}}})
    lab_api.put("apps/v1/deployments", "default", "jellyfin", {
        "metadata": {"name": "jellyfin", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "jellyfin"}},
                 "template": {"metadata": {"labels": {"app": "jellyfin"}},
                              "spec": {"containers": [{"name": "jf", "image": "jf"}]}}}})
    return lab_api


def shell_action(command: str, *, target: str = "node-1", timeout: float = 10.0) -> Action:
    return Action(id=f"test:{target}:1", target=target, kind="shell", command=command,
                  timeout=timeout)


def api_action(verb: str, namespace: str, name: str, **extra: object) -> Action:
    return Action(id=f"test:{CLUSTER}:{verb}", target=CLUSTER, kind="api",
                  command=f"kubectl ... {verb} {namespace}/{name}",
                  api={"verb": verb, "namespace": namespace, "name": name, **extra})


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_records_and_runs_nothing(tmp_path: pathlib.Path, kubeconfig: str,
                                          objects: LabAPI) -> None:
    canary = tmp_path / "created-by-the-action"
    runner = DryRunRunner()  # it is given no API and no shells: it cannot touch either
    assert runner.dry_run is True
    lines: list = []
    actions = [
        shell_action(f"touch {shlex.quote(str(canary))}"),
        api_action("delete_pod", "kube-system", "kube-proxy-abc"),
        api_action("restart_daemonset", "kube-system", "kube-proxy"),
    ]
    results = [runner.run_action(a, on_line=lambda s, ln: lines.append((s, ln))) for a in actions]
    assert runner.recorded == actions
    assert all(is_not_run(r) and r == NOT_RUN for r in results)
    assert all(r.exit_code is None and r.error is None and not r.timed_out and not r.ok
               for r in results)
    assert not canary.exists()
    assert objects.get("v1/pods", "kube-system", "kube-proxy-abc") is not None
    ds = objects.get("apps/v1/daemonsets", "kube-system", "kube-proxy")
    assert "annotations" not in ds["spec"]["template"]["metadata"]
    assert lines == []


def test_real_results_are_never_mistaken_for_dry_run() -> None:
    shell = LocalShell()
    assert not is_not_run(shell.run("true"))
    assert not is_not_run(shell.run("exit 1"))
    assert not is_not_run(shell.run("sleep 5", timeout=0.2))


# --- the real runner ---------------------------------------------------------------------------


def test_transport_runner_runs_shell_actions(tmp_path: pathlib.Path) -> None:
    made = tmp_path / "made by the runner"
    runner = TransportRunner(None, local_shells)
    assert runner.dry_run is False
    lines: list = []
    res = runner.run_action(
        shell_action(f"echo start; touch {shlex.quote(str(made))}; echo warn >&2; exit 0"),
        on_line=lambda s, ln: lines.append((s, ln)))
    assert res.ok and made.exists()
    assert lines == [("stdout", "start"), ("stderr", "warn")]
    failed = runner.run_action(shell_action("echo nope >&2; exit 4"))
    assert failed.exit_code == 4 and failed.stderr == "nope\n" and failed.error is None
    # the action's timeout reaches the shell, which kills the command at it: a 600 s sleep
    # returns timed out (well within the generous 120 s bound; its speed is not measured here)
    given: list[float] = []

    class Recording(LocalShell):
        def run(self, command: str, *, timeout: float = 60.0, **kw):  # type: ignore[override]
            given.append(timeout)
            return super().run(command, timeout=timeout, **kw)

    slow = TransportRunner(None, Recording).run_action(shell_action("sleep 600", timeout=0.3))
    assert given == [0.3]
    assert slow.timed_out and slow.exit_code is None and slow.duration < 120


def test_transport_runner_turns_node_failures_into_results(tmp_path: pathlib.Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host node-9\n  HostName 127.0.0.1\n  Port {port}\n")
    with SSHPool(str(cfg)) as pool:
        res = TransportRunner(None, pool).run_action(shell_action("true", target="node-9"))
    assert res.exit_code is None and "node-9" in res.error and "refused" in res.error


def test_transport_runner_api_actions_like_kubectl(kubeconfig: str, objects: LabAPI) -> None:
    runner = TransportRunner(KubeClusterAPI(kubeconfig), None)
    lines: list = []
    res = runner.run_action(api_action("delete_pod", "kube-system", "kube-proxy-abc"),
                            on_line=lambda s, ln: lines.append((s, ln)))
    assert res.ok and res.stdout == 'pod "kube-proxy-abc" deleted\n'
    assert lines == [("stdout", 'pod "kube-proxy-abc" deleted')]
    assert objects.get("v1/pods", "kube-system", "kube-proxy-abc") is None

    res = runner.run_action(api_action("restart_daemonset", "kube-system", "kube-proxy"))
    assert res.ok and res.stdout == "daemonset.apps/kube-proxy restarted\n"
    ds = objects.get("apps/v1/daemonsets", "kube-system", "kube-proxy")
    assert "kubectl.kubernetes.io/restartedAt" in ds["spec"]["template"]["metadata"]["annotations"]

    res = runner.run_action(api_action("patch_deployment", "default", "jellyfin",
                                       patch={"spec": {"replicas": 2}}))
    assert res.ok and res.stdout == "deployment.apps/jellyfin patched\n"
    assert objects.get("apps/v1/deployments", "default", "jellyfin")["spec"]["replicas"] == 2

    missing = runner.run_action(api_action("delete_pod", "kube-system", "kube-proxy-abc"))
    assert missing.exit_code == 1 and "404" in missing.stderr and missing.error is None
    unknown = runner.run_action(api_action("drain_node", "default", "x"))
    assert unknown.exit_code == 1 and "unknown API verb" in unknown.stderr


def test_transport_runner_unreachable_api_is_an_error(tmp_path: pathlib.Path,
                                                      kubeconfig: str) -> None:
    import yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "dead"
    dead.write_text(yaml.safe_dump(doc))
    res = TransportRunner(KubeClusterAPI(str(dead)), None).run_action(
        api_action("delete_pod", "kube-system", "x"))
    assert res.exit_code is None and "cannot reach the API server" in res.error
    assert TOKEN not in res.error


# --- local shell and netlink facts -------------------------------------------------------------


def test_local_shell_is_a_node_shell_with_stdin() -> None:
    shell = LocalShell("here")
    assert isinstance(shell, NodeShell) and shell.node == "here"
    res = shell.run("tr a-z A-Z", stdin=b"hello\nworld")
    assert res.ok and res.stdout == "HELLO\nWORLD"


def test_local_shell_timeout_kills_the_process_group() -> None:
    marker = f"29.{os.getpid()}"
    res = LocalShell().run(f"sleep {marker} & sleep {marker}; wait", timeout=0.5)
    assert res.timed_out and res.exit_code is None
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    assert left.returncode == 1, "children of a timed-out command survived"


def test_local_links_routes_on_this_machine() -> None:
    # other labs add and remove links here concurrently: the exact comparison is the netns test
    facts = local_links_routes()
    lo = next(x for x in facts["links"] if x["ifname"] == "lo")
    assert lo["flags"][0] == "LOOPBACK" and "UP" in lo["flags"]
    lo_addr = next(a for a in facts["addresses"] if a["ifname"] == "lo")
    assert {"family": "inet", "local": "127.0.0.1", "prefixlen": 8}.items() <= (
        lo_addr["addr_info"][0].items())
    assert all(isinstance(r["dst"], str) for r in facts["routes"])


@pytest.mark.lab
def test_local_links_routes_equal_ip_json_in_a_flannel_like_netns() -> None:
    import json
    import uuid

    ns = f"cfxt-{uuid.uuid4().hex[:8]}"
    setup = [
        "link add v0 type veth peer name v1", "link set v0 up", "link set lo up",
        "link add flannel.1 type vxlan id 1 dstport 8472 nolearning", "link set flannel.1 up",
        "addr add 10.244.1.0/32 dev flannel.1", "addr add 10.99.0.1/24 dev v0",
        "link add cni0 type bridge", "link set v1 master cni0",
        "route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
        "route add blackhole 10.97.0.0/16",
    ]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in setup:
            subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)
        facts = local_links_routes(ns)

        def ip_json(*what: str) -> list:
            return json.loads(subprocess.run(["ip", "-n", ns, "-j", *what], check=True,
                                             capture_output=True, text=True).stdout)

        assert facts["routes"] == ip_json("route")
        assert sorted((x["ifname"], tuple(x["flags"]), x.get("master"), x["mtu"])
                      for x in facts["links"]) == sorted(
            (x["ifname"], tuple(x["flags"]), x.get("master"), x["mtu"]) for x in ip_json("link"))
        vxlan = next(x for x in facts["links"] if x["ifname"] == "flannel.1")
        assert vxlan["linkinfo"]["info_kind"] == "vxlan"
        assert vxlan["linkinfo"]["info_data"]["id"] == 1
        assert vxlan["linkinfo"]["info_data"]["learning"] is False
        flannel_addrs = next(a for a in facts["addresses"] if a["ifname"] == "flannel.1")
        assert [(a["local"], a["prefixlen"]) for a in flannel_addrs["addr_info"]
                if a["family"] == "inet"] == [("10.244.1.0", 32)]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


# --- runtime -----------------------------------------------------------------------------------


def test_build_runtime_from_a_lab_dir(tmp_path: pathlib.Path, lab_api: LabAPI) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    lab_api.write_kubeconfig(lab / "kubeconfig", TOKEN)
    (lab / "ssh_config").write_text("Host node-1\n  HostName 127.0.0.1\n")
    rt = build_runtime(lab_dir=str(lab))
    try:
        assert rt.dry_run is False and isinstance(rt.runner, TransportRunner)
        assert rt.runner.api is rt.api and rt.runner.shells is rt.shells
        assert rt.kubeconfig == str(lab / "kubeconfig")
        assert rt.ssh_config == str(lab / "ssh_config")
        # the node this runs on goes local, every other node through the SSH pool
        assert isinstance(rt.shells, NodeShells) and isinstance(rt.shells.ssh, SSHPool)
        assert hasattr(rt.shells, "accept_host_key")
        assert rt.api.list_nodes() == []
        assert rt.api.describe()["server"] == lab_api.url
    finally:
        rt.close()
    with build_runtime(lab_dir=str(lab), dry_run=True) as dry:
        assert dry.dry_run is True and isinstance(dry.runner, DryRunRunner)
    # explicit flags win over the lab's files
    other = tmp_path / "other-kubeconfig"
    lab_api.write_kubeconfig(other, TOKEN, context="other")
    with build_runtime(kubeconfig=str(other), lab_dir=str(lab)) as rt2:
        assert rt2.api.describe()["context"] == "other"


def test_build_runtime_bad_flags_are_clear(tmp_path: pathlib.Path) -> None:
    with pytest.raises(LabDirError, match="does not exist"):
        build_runtime(lab_dir=str(tmp_path / "no-lab"))
    (tmp_path / "empty-lab").mkdir()
    with pytest.raises(KubeconfigError, match="does not exist"):
        build_runtime(lab_dir=str(tmp_path / "empty-lab"))


def test_runtime_import_stays_light() -> None:
    code = ("import sys, clusterfix_tui.runtime, clusterfix_tui.transports.runner, "
            "clusterfix_tui.transports.dryrun, clusterfix_tui.transports.kube\n"
            "print(','.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('paramiko', 'kubernetes', 'pyroute2'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- on a real lab: SSH to netns nodes, the lab's API over HTTPS ------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    from conftest import require_lab

    require_lab()
    from clusterfix_tui.lab import cluster

    handle = cluster.up(tmp_path_factory.mktemp("lab") / "lab", nodes=2)
    yield handle
    cluster.down(handle.dir)


@pytest.mark.lab
def test_runtime_on_a_lab_runs_actions_and_survives_a_node_going_away(lab) -> None:
    marker = f"/run/cfx-runner-{os.getpid()}"
    with build_runtime(lab_dir=str(lab.dir)) as rt:
        nodes = {n["metadata"]["name"]: n for n in rt.api.list_nodes()}
        assert sorted(nodes) == ["node-1", "node-2"]
        shell = rt.shells("node-2")
        assert shell.run("hostname", timeout=10).stdout.strip() == "node-2"
        res = rt.runner.run_action(shell_action(f"touch {marker} && echo made", target="node-2"))
        assert res.ok and res.stdout == "made\n"
        assert lab.exec("node-2", f"test -e {marker}", check=False).returncode == 0
        proxy = rt.api.list_pods("kube-system", "k8s-app=kube-proxy")
        victim = next(p for p in proxy if p["spec"].get("nodeName") == "node-2")
        deleted = rt.runner.run_action(api_action("delete_pod", "kube-system",
                                                  victim["metadata"]["name"]))
        assert deleted.ok, deleted

        # dry-run on the same lab: nothing reaches the node
        with build_runtime(lab_dir=str(lab.dir), dry_run=True) as dry:
            dry.runner.run_action(shell_action(f"rm -f {marker}", target="node-2"))
        assert lab.exec("node-2", f"test -e {marker}", check=False).returncode == 0

        # the node's sshd dies mid-session, its sessions with it: an error for that node only
        sshd_pid = lab.node("node-2")["sshd_pid"]
        sessions = subprocess.run(["pgrep", "-P", str(sshd_pid)], capture_output=True,
                                  text=True, check=False).stdout.split()
        assert sessions, "no per-connection sshd for our session"
        lab.stop_sshd("node-2")
        for pid in sessions:  # exact pids: the children of node-2's sshd listener
            os.kill(int(pid), 9)
        try:
            lost = rt.runner.run_action(shell_action("true", target="node-2"))
            assert lost.exit_code is None and "node-2" in (lost.error or ""), lost
            assert rt.runner.run_action(shell_action("true", target="node-1")).ok
        finally:
            lab.start_sshd("node-2")
        # ...and comes back: the pool reconnects on the next command
        deadline = time.monotonic() + 120  # a deadline, not a speed check
        while True:
            back = rt.runner.run_action(shell_action(f"rm {marker} && echo gone", target="node-2"))
            if back.ok or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert back.ok and back.stdout == "gone\n", back
        assert rt.shells.connection_count("node-2") == 2
