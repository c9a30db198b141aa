"""`@cert-authority` against a lab node's sshd (#14 item 1): a second sshd inside node-2's
namespaces serves node-2's own host key with a host certificate signed by a test CA; the pool,
with a known_hosts that holds only the CA, reaches node-2 over the lab network and runs a
command; a revoked CA or a certificate for another name is refused. The sshd is started by pid
file and stopped by that pid; the lab is torn down by its fixture."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from determinism import poll_until
from lab_helpers import lab_fixture

from clusterfix_tui.transports.base import HostKeyChanged
from clusterfix_tui.transports.ssh import SSHPool

pytestmark = pytest.mark.lab
PORT = 2222

lab = lab_fixture(nodes=2, faults="none")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)


@pytest.fixture
def cert_sshd(lab, tmp_path: Path):
    """node-2's host key, certified by a fresh CA for node-2's address, on port 2222."""
    node = lab.node("node-2")
    node_dir = Path(lab.info["state_dir"]) / "node-2"
    key = tmp_path / "host_key"
    shutil.copy(node_dir / "ssh_host_ed25519_key", key)
    shutil.copy(node_dir / "ssh_host_ed25519_key.pub", f"{key}.pub")
    key.chmod(0o600)

    def sign(ca: Path, principals: str) -> Path:
        subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "cfx-lab-host", "-h", "-n",
                        principals, "-V", "-5m:+1h", f"{key}.pub"], check=True)
        return Path(f"{key}-cert.pub")

    ca = tmp_path / "ca"
    _keygen(ca)
    started: list[int] = []

    def start(principals: str) -> None:
        cert = sign(ca, principals)
        pidfile = tmp_path / "sshd.pid"
        cfg = tmp_path / "sshd_config"
        text = (node_dir / "sshd_config").read_text().replace("Port 22\n", f"Port {PORT}\n")
        text = text.replace(f"HostKey {node_dir / 'ssh_host_ed25519_key'}\n",
                            f"HostKey {key}\nHostCertificate {cert}\n")
        text = text.replace("PidFile none\n", f"PidFile {pidfile}\n")
        cfg.write_text(text)
        lab.exec("node-2", f"$(command -v sshd) -f {cfg} -E {tmp_path / 'sshd.log'}")
        pid = int(poll_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10,
                             "the certified sshd's pid file"))
        started.append(pid)

    def stop() -> None:
        while started:
            pid = started.pop()
            try:  # (no PID namespace on lab nodes: the pid file holds the host's pid)
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ProcessLookupError):
                pass

    yield {"ip": node["ip"], "ca": ca, "start": start, "stop": stop}
    stop()


def _pool(lab, tmp_path: Path, known: str) -> tuple[SSHPool, Path]:
    kh = tmp_path / "known_hosts"
    kh.write_text(known)
    cfg = tmp_path / "ssh_config"
    ip = lab.node("node-2")["ip"]
    cfg.write_text(f"Host node-2\n  HostName {ip}\n  Port {PORT}\n  User root\n"
                   f"  IdentityFile {lab.dir / 'id_ed25519'}\n  IdentitiesOnly yes\n"
                   f"  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n"
                   f"  StrictHostKeyChecking yes\n")
    return SSHPool(str(cfg), connect_timeout=10), kh


def _ca_pub(ca: Path) -> str:
    return " ".join(Path(f"{ca}.pub").read_text().split()[:2])


def test_a_lab_node_with_a_ca_signed_host_key_is_reached_through_the_ca(lab, cert_sshd,
                                                                        tmp_path) -> None:
    ip = cert_sshd["ip"]
    cert_sshd["start"](ip)
    known = f"@cert-authority [{ip}]:{PORT} {_ca_pub(cert_sshd['ca'])}\n"
    pool, kh = _pool(lab, tmp_path, known)
    with pool:
        res = pool("node-2").run("hostname")
        assert res.ok and res.stdout.strip() == "node-2", res
        assert pool.transport("node-2").host_key_type.endswith("-cert-v01@openssh.com")
    assert kh.read_text() == known  # trusted through the CA: nothing appended

    revoked = known + f"@revoked * {_ca_pub(cert_sshd['ca'])}\n"
    pool, _ = _pool(lab, tmp_path, revoked)
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("node-2")
    assert "@revoked" in str(err.value)


def test_a_lab_node_certified_for_another_name_is_refused(lab, cert_sshd, tmp_path) -> None:
    cert_sshd["start"]("node-9.example")
    ip = cert_sshd["ip"]
    pool, _ = _pool(lab, tmp_path, f"@cert-authority [{ip}]:{PORT} {_ca_pub(cert_sshd['ca'])}\n")
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("node-2")
    assert f"do not name {ip}" in str(err.value)
