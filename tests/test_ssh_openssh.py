"""SSH as production has it (issue #14 item 1): the ssh config resolved by OpenSSH itself
(`ssh -G`: Include, Match), ProxyCommand, bastion hops without sudo, IdentitiesOnly with the
agent's copy of an encrypted key. Against a real sshd on loopback (test_ssh_transport's)."""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest
from test_ssh_transport import _keygen, sshd, throwaway_user, write_config  # noqa: F401

from clusterfix_tui.core.ports import AuthFailed
from clusterfix_tui.transports.ssh import SSHPool, expand_proxy_command, make_config

pytestmark = pytest.mark.usefixtures("_no_agent_here")


@pytest.fixture
def _no_agent_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def test_include_match_and_proxycommand(sshd, tmp_path: pathlib.Path) -> None:  # noqa: F811
    base, known = write_config(sshd, tmp_path)
    # a jump config for the OpenSSH client that the ProxyCommand runs (`ssh -W`, as admins do)
    jump_cfg = tmp_path / "jump_config"
    jump_cfg.write_text(f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
                        f"  IdentityFile {sshd.client_key}\n  IdentitiesOnly yes\n"
                        f"  UserKnownHostsFile {known}\n  GlobalKnownHostsFile /dev/null\n"
                        "  StrictHostKeyChecking yes\n  BatchMode yes\n")
    included = tmp_path / "nodes.conf"
    included.write_text(
        "Match host node-a,node-b\n  HostName 127.0.0.1\n"
        f"  ProxyCommand ssh -F {jump_cfg} -W %h:%p bastion\n")
    cfg = tmp_path / "main_config"
    cfg.write_text(f"Include {included}\n" + pathlib.Path(base).read_text())
    before = sshd.accepted()
    with SSHPool(str(cfg)) as pool:
        spec = pool.spec_for("node-a")
        assert spec.proxy_command and "-W %h:%p bastion" in spec.proxy_command
        assert spec.hostname == "127.0.0.1" and spec.port == sshd.port  # from `Host *` after it
        for node in ("node-a", "node-b"):
            assert pool(node).run("echo via-proxy", timeout=10).stdout == "via-proxy\n"
        # each node: the bastion (ssh -W) and then the node through it
        assert sshd.accepted() - before == 4
        # a name the config says nothing specific about is reached by the address given
        assert not pool._config.has_host("worker-9") and pool._config.has_host("node-a")


def test_proxy_command_tokens() -> None:
    cfg = make_config(None, 5.0)
    spec = cfg.resolve("node-1", "node-1", user="ops", port=2222, hostname="10.0.0.7")
    assert expand_proxy_command("nc %h %p # %r %n 100%%", spec) == \
        "nc 10.0.0.7 2222 # ops node-1 100%"


def test_a_bastion_user_without_sudo_only_carries_the_connection(
        sshd, tmp_path: pathlib.Path, throwaway_user) -> None:  # noqa: F811
    name, _sudoers = throwaway_user  # no sudoers entry at all: this user cannot sudo
    extra = (f"Host behind\n  HostName localhost\n  HostKeyAlias 127.0.0.1\n"
             f"  ProxyJump {name}@127.0.0.1:{sshd.port}\n")
    cfg, _ = write_config(sshd, tmp_path, extra=extra)
    with SSHPool(cfg) as pool:
        # the node (as root) is reached through the hop; the hop was never asked to sudo
        assert pool("behind").run("id -u", timeout=10).stdout == "0\n"
    # that same user as the *node's* user is refused: it cannot sudo
    extra = f"Host as-bastion-user\n  HostName 127.0.0.1\n  User {name}\n"
    cfg, _ = write_config(sshd, tmp_path, extra=extra)
    with SSHPool(cfg) as pool, pytest.raises(Exception, match="sudo"):
        pool("as-bastion-user")


def test_identities_only_uses_the_agents_copy_of_an_encrypted_key(
        sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    key = tmp_path / "enc_ed25519"
    _keygen(key)
    authorized = sshd.pubdir / "authorized_keys"
    authorized.write_text(authorized.read_text() + pathlib.Path(f"{key}.pub").read_text())
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a deadline, not a speed check
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        subprocess.run(["ssh-add", "-q", str(sshd.wrong_key)], env=env, check=True,
                       capture_output=True)
        # now the file on disk is encrypted: only the agent can sign with it
        subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "a passphrase", "-f", str(key)],
                       check=True, capture_output=True)
        cfg, _ = write_config(sshd, tmp_path, key=key)  # IdentitiesOnly yes, IdentityFile key
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SSHPool(cfg) as pool:
            assert pool("cfx-node").run("echo ok", timeout=10).stdout == "ok\n"
        # the agent's other key is never offered under IdentitiesOnly: with the file's key
        # gone from the agent, nothing else is tried
        subprocess.run(["ssh-add", "-q", "-d", f"{key}.pub"], env=env, check=True,
                       capture_output=True)
        with SSHPool(cfg) as pool, pytest.raises(AuthFailed) as info:
            pool("cfx-node")
        assert "agent key 1" not in str(info.value) and "encrypted" in str(info.value)
    finally:
        agent.kill()
        agent.wait(5)


def test_accept_host_keys_file_pins_expected_fingerprints(
        sshd, tmp_path: pathlib.Path) -> None:  # noqa: F811
    from clusterfix_tui.core.ports import HostKeyChanged, HostKeyUnknown
    from clusterfix_tui.core.ports import TransportError as TE
    from clusterfix_tui.transports.ssh import read_expected_host_keys

    pins = tmp_path / "pins"
    pins.write_text(f"# verified by phone\ncfx-node ssh-ed25519 {sshd.keygen_fingerprint()}\n")
    expected = read_expected_host_keys(str(pins))
    cfg, known = write_config(sshd, tmp_path, known="")
    with SSHPool(cfg, expected_host_keys=expected) as pool:
        assert pool("cfx-node").run("echo pinned", timeout=5).stdout == "pinned\n"
    assert known.read_text() == sshd.known_line() + "\n"  # trusted from now on
    # a fingerprint that is not the one expected: refused, nothing written
    wrong = {"cfx-node": {"SHA256:" + "A" * 43}}
    cfg, known = write_config(sshd, tmp_path, known="")
    with SSHPool(cfg, expected_host_keys=wrong) as pool, pytest.raises(HostKeyUnknown,
                                                                       match="NOT the"):
        pool("cfx-node")
    assert known.read_text() == ""
    # a changed key stays refused whatever the pins say
    other = pathlib.Path(f"{sshd.other_host_key}.pub").read_text().split()
    cfg, known = write_config(sshd, tmp_path,
                              known=f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with SSHPool(cfg, expected_host_keys=expected) as pool, pytest.raises(HostKeyChanged):
        pool("cfx-node")
    bad = tmp_path / "bad"
    bad.write_text("cfx-node md5:aa:bb\n")
    with pytest.raises(TE, match="line 1"):
        read_expected_host_keys(str(bad))
