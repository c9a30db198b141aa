"""Which ssh config files `ssh -G` reads for us: a config the user names (--ssh-config) alone,
as `ssh -F FILE` does; otherwise what plain `ssh node-1` reads: ~/.ssh/config and then the
system's /etc/ssh/ssh_config (and what it Includes: /etc/ssh/ssh_config.d/*.conf on Debian, where
sites put ProxyJump, User or IdentityFile for their fleet). Passing `-F ~/.ssh/config` when the
user named nothing made OpenSSH skip the system file: another host, user or hop than the admin's
own `ssh` would take."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from clusterfix_tui.transports.ssh import _OpenSSHConfig, make_config

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


def _argv_of_g(monkeypatch: pytest.MonkeyPatch, cfg: _OpenSSHConfig, host: str) -> list[str]:
    seen: list[list[str]] = []
    real = subprocess.run

    def run(argv, *a, **k):  # type: ignore[no-untyped-def]
        if list(argv[:2]) == [cfg.ssh, "-G"]:
            seen.append(list(argv))
        return real(argv, *a, **k)

    monkeypatch.setattr(subprocess, "run", run)
    cfg._g(host)
    assert len(seen) == 1
    return seen[0]


def _home_with_config(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / ".ssh").mkdir()
    user = tmp_path / ".ssh" / "config"
    user.write_text("Host node-1\n  Port 2222\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    return user


def test_with_no_config_named_ssh_reads_the_users_and_the_systems(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = _home_with_config(tmp_path, monkeypatch)
    cfg = make_config(None, 5.0)
    assert isinstance(cfg, _OpenSSHConfig)
    assert cfg.path == str(user)  # still read for has_host and the shared runs
    assert "-F" not in _argv_of_g(monkeypatch, cfg, "node-1")
    files = [p for p, _system in cfg._files()]
    assert files[0] == str(user)
    if os.path.exists("/etc/ssh/ssh_config"):
        assert ("/etc/ssh/ssh_config", True) in cfg._files()


def test_a_config_the_user_names_is_read_alone(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _home_with_config(tmp_path, monkeypatch)
    named = tmp_path / "fleet.conf"
    named.write_text("Host node-*\n  User ops\n")
    cfg = make_config(str(named), 5.0)
    assert isinstance(cfg, _OpenSSHConfig)
    argv = _argv_of_g(monkeypatch, cfg, "node-1")
    assert argv[argv.index("-F") + 1] == str(named)
    assert cfg._files() == [(str(named), False)]
    assert cfg._g("node-1")["user"] == ["ops"]
