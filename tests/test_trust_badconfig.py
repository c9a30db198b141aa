"""Bad configuration gets a clear message and a documented exit code, never a traceback (issue 8,
point 6).

Documented exit codes (commands/diagnose.py, fix.py, validate.py): 0 healthy / all passed,
1 findings / checks failed, 2 could not diagnose / validate / connect. Every case runs the real
CLI as a subprocess (what an admin runs) and asserts: the exit code, no "Traceback" on stderr, and
one stderr line starting with "clusterfix-tui <command>:" that names the thing that is wrong.

Cases: missing kubeconfig, malformed kubeconfig, unknown context, unreachable API server (a
closed loopback port), an ssh_config that does not exist and one whose hosts point at a closed
port, a cluster with no nodes (a real API server with nothing in it), and on a real lab: a cluster
without flannel, kube-proxy in ipvs mode, kube-proxy in nftables mode.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from trust_helpers import cli

COMMANDS = (("diagnose", ()), ("fix", ("--dry-run", "--no-validate")), ("validate", ()))


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_cmd(cmd: str, extra: tuple[str, ...], *args: str, tmp: Path, timeout: float = 90):
    full = [cmd, *extra, *args]
    if cmd == "fix":
        full += ["--journal", str(tmp / f"j-{cmd}.jsonl")]
    return cli(*full, timeout=timeout)


def assert_clean(p, cmd: str, codes: tuple[int, ...], *mentions: str) -> str:
    err = p.stderr
    assert "Traceback" not in err and "Traceback" not in p.stdout, err[-3000:]
    assert p.returncode in codes, (p.returncode, err[-2000:], p.stdout[-1000:])
    lines = [ln for ln in err.splitlines() if ln.startswith(f"clusterfix-tui {cmd}:")]
    assert lines, f"no 'clusterfix-tui {cmd}:' message on stderr:\n{err[-2000:]}"
    msg = lines[-1]
    for m in mentions:
        assert m.lower() in msg.lower(), f"{m!r} not in {msg!r}"
    return msg


def write_kubeconfig(path: Path, server: str, token: str = "t0k", context: str = "ctx") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "current-context": context}))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_missing_kubeconfig(cmd, extra, tmp_path) -> None:
    p = run_cmd(cmd, extra, "--kubeconfig", str(tmp_path / "nope.yaml"), tmp=tmp_path)
    assert_clean(p, cmd, (2,), "nope.yaml")


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_malformed_kubeconfig(cmd, extra, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nclusters: [ {name: c, cluster: {server: \n  - ::: [\n")
    p = run_cmd(cmd, extra, "--kubeconfig", str(bad), tmp=tmp_path)
    assert_clean(p, cmd, (2,), "bad.yaml")


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_kubeconfig_that_is_not_a_kubeconfig(cmd, extra, tmp_path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- just\n- a list\n")
    p = run_cmd(cmd, extra, "--kubeconfig", str(bad), tmp=tmp_path)
    assert_clean(p, cmd, (2,))


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_unknown_context(cmd, extra, tmp_path) -> None:
    kc = write_kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{closed_port()}")
    p = run_cmd(cmd, extra, "--kubeconfig", str(kc), "--context", "no-such-ctx", tmp=tmp_path)
    assert_clean(p, cmd, (2,), "no-such-ctx")


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_unreachable_api_server(cmd, extra, tmp_path) -> None:
    port = closed_port()
    kc = write_kubeconfig(tmp_path / "kc", f"https://127.0.0.1:{port}")
    p = run_cmd(cmd, extra, "--kubeconfig", str(kc), tmp=tmp_path)
    assert_clean(p, cmd, (2,), str(port))


# ---- a real API server with nothing in it ----------------------------------------------------

@pytest.fixture(scope="module")
def empty_api(tmp_path_factory):
    from clusterfix_tui.lab.api import LabAPI

    api = LabAPI(tokens=["empty-token"])
    api.start()
    d = tmp_path_factory.mktemp("empty")
    api.write_kubeconfig(d / "kubeconfig", "empty-token")
    yield d / "kubeconfig"
    api.stop()


@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_cluster_with_no_nodes(cmd, extra, empty_api, tmp_path) -> None:
    p = run_cmd(cmd, extra, "--kubeconfig", str(empty_api), tmp=tmp_path)
    assert_clean(p, cmd, (2,), "no nodes")


# ---- on a real lab ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=2, faults="none") as handle:
        yield handle


@pytest.fixture
def own_lab(tmp_path_factory):
    """For a test that changes the cluster (ConfigMaps, DaemonSets): no other test sees it."""
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=2, faults="none") as handle:
        yield handle


def _ssh_config_nowhere(lab, tmp_path: Path) -> Path:
    port = closed_port()
    lines = []
    for n in lab.info["nodes"]:
        lines += [f"Host {n['name']}", "  HostName 127.0.0.1", f"  Port {port}",
                  f"  IdentityFile {lab.info['dir']}/id_ed25519",
                  f"  UserKnownHostsFile {lab.info['dir']}/known_hosts", "  User root",
                  "  ConnectTimeout 2", ""]
    p = tmp_path / "ssh_config"
    p.write_text("\n".join(lines))
    return p


@pytest.mark.lab
@pytest.mark.parametrize("cmd,extra", COMMANDS)
def test_ssh_config_file_missing(cmd, extra, lab, tmp_path) -> None:
    p = run_cmd(cmd, extra, "--lab-dir", lab.info["dir"], "--ssh-config",
                str(tmp_path / "no_ssh_config"), tmp=tmp_path)
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    # a missing file is either refused up front (2) or the nodes are unreachable findings
    assert p.returncode in (1, 2), (p.returncode, p.stderr[-2000:])
    if p.returncode == 2:
        assert_clean(p, cmd, (2,))


@pytest.mark.lab
def test_ssh_config_pointing_nowhere(lab, tmp_path) -> None:
    cfg = str(_ssh_config_nowhere(lab, tmp_path))
    d = cli("diagnose", "--lab-dir", lab.info["dir"], "--ssh-config", cfg, "--json", "-q")
    assert "Traceback" not in d.stderr, d.stderr[-3000:]
    assert d.returncode == 1, (d.returncode, d.stderr[-2000:])  # findings: nodes unreachable
    import json

    codes = {(f["code"], f["node"]) for f in json.loads(d.stdout)["findings"]}
    for n in lab.info["nodes"]:
        assert ("SSH_UNREACHABLE", n["name"]) in codes, codes
    f = cli("fix", "--dry-run", "--lab-dir", lab.info["dir"], "--ssh-config", cfg,
            "--journal", str(tmp_path / "j.jsonl"))
    assert_clean(f, "fix", (2,), "ssh")
    v = cli("validate", "--lab-dir", lab.info["dir"], "--ssh-config", cfg)
    assert "Traceback" not in v.stderr, v.stderr[-3000:]
    assert v.returncode in (1, 2)


def _client(lab):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=f"{lab.info['dir']}/kubeconfig"))


def _apps(lab):
    from kubernetes import client, config

    return client.AppsV1Api(config.new_client_from_config(config_file=f"{lab.info['dir']}/kubeconfig"))


def _all_three(lab, tmp_path: Path) -> dict[str, object]:
    out = {}
    for cmd, extra in COMMANDS:
        p = run_cmd(cmd, extra, "--lab-dir", lab.info["dir"], tmp=tmp_path, timeout=150)
        assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr[-3000:]
        assert p.returncode in (0, 1), (cmd, p.returncode, p.stderr[-2000:])
        out[cmd] = p
    return out


@pytest.mark.lab
@pytest.mark.parametrize("mode", ["ipvs", "nftables"])
def test_kube_proxy_in_other_modes(mode, own_lab, tmp_path) -> None:
    lab = own_lab
    core = _client(lab)
    cm = core.read_namespaced_config_map("kube-proxy", "kube-system")
    original = cm.data["config.conf"]
    assert "mode: iptables" in original
    cm.data["config.conf"] = original.replace("mode: iptables", f"mode: {mode}")
    core.replace_namespaced_config_map("kube-proxy", "kube-system", cm)
    try:
        out = _all_three(lab, tmp_path)
        said = out["diagnose"].stdout + out["diagnose"].stderr
        assert mode in said, f"diagnose does not say kube-proxy runs in {mode} mode:\n{said[-2000:]}"
    finally:
        cm = core.read_namespaced_config_map("kube-proxy", "kube-system")
        cm.data["config.conf"] = original
        core.replace_namespaced_config_map("kube-proxy", "kube-system", cm)


@pytest.mark.lab
def test_cluster_without_flannel(own_lab, tmp_path) -> None:
    """Removes flannel's DaemonSet, ConfigMap and pods from the API (of a lab of its own)."""
    lab = own_lab
    core, apps = _client(lab), _apps(lab)
    import json

    apps.delete_namespaced_daemon_set("kube-flannel-ds", "kube-flannel", _preload_content=False)
    core.delete_namespaced_config_map("kube-flannel-cfg", "kube-flannel", _preload_content=False)
    pods = json.loads(core.list_namespaced_pod("kube-flannel", _preload_content=False).data)
    for p in pods["items"]:
        core.delete_namespaced_pod(p["metadata"]["name"], "kube-flannel", _preload_content=False)
    out = _all_three(lab, tmp_path)
    said = (out["diagnose"].stdout + out["diagnose"].stderr).lower()
    assert "flannel" in said, said[-2000:]
