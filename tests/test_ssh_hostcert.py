"""`@cert-authority` and `@revoked` in known_hosts (#14 item 1), against real OpenSSH sshds on
127.0.0.1 that serve a CA-signed host certificate (test_ssh_transport's Sshd, HostCertificate).

paramiko negotiates certificate host keys but checks nothing in them (paramiko issues #771,
#2277): the pool has OpenSSH's `ssh-keygen -L` load the certificate the server presented on this
very connection (the CA signature is verified on load) and checks the signing CA, the principals
and the validity itself (transports/ssh.py verify_host_certificate)."""

from __future__ import annotations

import base64
import pathlib
import subprocess

import pytest
from _env import require, require_tool
from test_ssh_transport import Sshd, _keygen

from clusterfix_tui.transports.base import HostKeyChanged, HostKeyUnknown
from clusterfix_tui.transports.ssh import (
    KnownHostEntry,
    SSHPool,
    lookup_known_host,
    verify_host_certificate,
)


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> dict[str, pathlib.Path]:
    require_tool("ssh-keygen")
    d = tmp_path_factory.mktemp("ca")
    out = {}
    for name in ("ca", "other_ca"):
        _keygen(d / name)
        out[name] = d / name
    return out


@pytest.fixture(scope="module")
def servers(tmp_path_factory, ca):
    """good: names 127.0.0.1 and cfx-node, valid now; wrong_name: names another host; expired."""
    import os

    require(os.geteuid() == 0, "needs root to run an OpenSSH sshd")
    require_tool("sshd")
    made = {
        "good": Sshd(tmp_path_factory.mktemp("good"), host_ca=ca["ca"],
                     principals="127.0.0.1,cfx-node"),
        "wrong_name": Sshd(tmp_path_factory.mktemp("wrong"), host_ca=ca["ca"],
                           principals="db-1.example"),
        "expired": Sshd(tmp_path_factory.mktemp("expired"), host_ca=ca["ca"],
                        validity="-2h:-1h"),
    }
    yield made
    for s in made.values():
        s.stop()


def _pub(path: pathlib.Path) -> str:
    return " ".join(pathlib.Path(f"{path}.pub").read_text().split()[:2])


def _pool(sshd: Sshd, tmp: pathlib.Path, known: str) -> tuple[SSHPool, pathlib.Path]:
    known_hosts = tmp / f"known_hosts-{sshd.port}"
    known_hosts.write_text(known)
    cfg = tmp / f"ssh_config-{sshd.port}"
    cfg.write_text(f"Host *\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
                   f"  IdentityFile {sshd.client_key}\n  IdentitiesOnly yes\n"
                   f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                   f"  StrictHostKeyChecking yes\n")
    return SSHPool(str(cfg), connect_timeout=10), known_hosts


def _ca_line(sshd: Sshd, ca_key: pathlib.Path, marker: str = "@cert-authority") -> str:
    return f"{marker} [127.0.0.1]:{sshd.port},cfx-* {_pub(ca_key)}\n"


def test_a_host_certificate_signed_by_a_trusted_ca_is_accepted(servers, ca, tmp_path) -> None:
    sshd = servers["good"]
    known = _ca_line(sshd, ca["ca"])
    pool, known_hosts = _pool(sshd, tmp_path, known)
    with pool:
        res = pool("cfx-node").run("echo certified")
        assert res.ok and res.stdout == "certified\n"
        assert pool.transport("cfx-node").host_key_type.endswith("-cert-v01@openssh.com")
    assert known_hosts.read_text() == known  # trusted through the CA: nothing appended


def test_a_certificate_from_another_ca_is_refused(servers, ca, tmp_path) -> None:
    sshd = servers["good"]
    pool, known_hosts = _pool(sshd, tmp_path, _ca_line(sshd, ca["other_ca"]))
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("cfx-node")
    assert "no @cert-authority line" in str(err.value) and "NOT accepted" in str(err.value)
    assert sshd.keygen_fingerprint() in str(err.value)


def test_a_certificate_for_another_host_is_refused(servers, ca, tmp_path) -> None:
    sshd = servers["wrong_name"]
    pool, _ = _pool(sshd, tmp_path, _ca_line(sshd, ca["ca"]))
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("cfx-node")
    assert "principals (db-1.example) do not name 127.0.0.1" in str(err.value)


def test_an_expired_certificate_is_refused(servers, ca, tmp_path) -> None:
    sshd = servers["expired"]
    pool, _ = _pool(sshd, tmp_path, _ca_line(sshd, ca["ca"]))
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("cfx-node")
    assert "not valid now" in str(err.value)


def test_a_revoked_ca_is_refused(servers, ca, tmp_path) -> None:
    sshd = servers["good"]
    known = _ca_line(sshd, ca["ca"]) + f"@revoked * {_pub(ca['ca'])}\n"
    pool, _ = _pool(sshd, tmp_path, known)
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("cfx-node")
    assert "@revoked" in str(err.value)


def test_a_revoked_host_key_is_refused_even_with_a_valid_certificate(servers, ca,
                                                                     tmp_path) -> None:
    sshd = servers["good"]
    known = _ca_line(sshd, ca["ca"]) + f"@revoked [127.0.0.1]:{sshd.port} {_pub(sshd.host_key)}\n"
    pool, _ = _pool(sshd, tmp_path, known)
    with pool, pytest.raises(HostKeyChanged) as err:
        pool("cfx-node")
    assert "REVOKED" in str(err.value)


def test_without_a_ca_line_the_plain_key_is_judged_as_before(servers, tmp_path) -> None:
    sshd = servers["good"]
    pool, _ = _pool(sshd, tmp_path, "")
    with pool, pytest.raises(HostKeyUnknown) as err:
        pool("cfx-node")
    assert err.value.fingerprint == sshd.keygen_fingerprint()
    assert err.value.key_line == sshd.known_line()  # the plain key, never the certificate
    pool, _ = _pool(sshd, tmp_path, sshd.known_line() + "\n")
    with pool:
        assert pool("cfx-node").run("true").ok


def test_a_tampered_certificate_does_not_load(servers, ca) -> None:
    sshd = servers["good"]
    cert_type, b64 = pathlib.Path(f"{sshd.host_key}-cert.pub").read_text().split()[:2]
    blob = bytearray(base64.b64decode(b64))
    cas = [KnownHostEntry("known_hosts", 1, *_pub(ca["ca"]).split(), marker="@cert-authority")]
    assert verify_host_certificate(cert_type, b64, ["127.0.0.1"], cas, []) is None
    blob[-5] ^= 0x01  # inside the CA's signature
    why = verify_host_certificate(cert_type, base64.b64encode(bytes(blob)).decode(),
                                  ["127.0.0.1"], cas, [])
    assert why is not None and "does not load" in why


def test_lookup_returns_ca_and_revoked_lines_marked(tmp_path, ca) -> None:
    kh = tmp_path / "kh"
    kh.write_text(f"@cert-authority *.prod,10.0.* {_pub(ca['ca'])}\n"
                  f"@revoked 10.0.0.9 {_pub(ca['other_ca'])}\n"
                  f"10.0.0.9 {_pub(ca['other_ca'])}\n")
    got = [(e.marker, e.line_no) for e in lookup_known_host([str(kh)], "10.0.0.9")]
    assert got == [("@cert-authority", 1), ("@revoked", 2), ("", 3)]
    assert lookup_known_host([str(kh)], "db.staging") == []
    out = subprocess.run(["ssh-keygen", "-F", "10.0.0.9", "-f", str(kh)], capture_output=True,
                         text=True).stdout
    assert "found: line 1" in out and "found: line 3" in out  # OpenSSH matches the same lines
