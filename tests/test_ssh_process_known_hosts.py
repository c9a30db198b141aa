"""known_hosts is parsed once per process (transports/ssh.py, PROCESS_KNOWN_HOSTS): a second
pool (a runtime built again) reuses the parsed file, and every pool still answers what the file
holds now: a changed key is refused, a removed line is gone."""

from __future__ import annotations

import pathlib

import pytest

from clusterfix_tui.core.ports import HostKeyChanged, HostKeyUnknown
from clusterfix_tui.transports import ssh as S
from tests.test_ssh_transport import sshd, write_config  # noqa: F401 - the module's sshd fixture

OTHER_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIMz9cL3Ye5fWq9eXCD5M1hH0pTjqsbkY5K2q8nJ3Xk3A"


def test_pools_share_one_parsed_known_hosts(sshd, tmp_path: pathlib.Path) -> None:  # noqa: F811
    cfg, known = write_config(sshd, tmp_path)
    with S.SSHPool(cfg) as first:
        assert first._known_hosts is S.PROCESS_KNOWN_HOSTS
        assert first("cfx-node").run("true", timeout=30).exit_code == 0
        parsed = S.PROCESS_KNOWN_HOSTS._files[str(known)][3]
    with S.SSHPool(cfg) as second:
        assert second._known_hosts is S.PROCESS_KNOWN_HOSTS
        assert second("cfx-node").run("true", timeout=30).exit_code == 0
        # the same parsed file, not read again (its stat did not change)
        assert S.PROCESS_KNOWN_HOSTS._files[str(known)][3] is parsed


def test_a_shared_parse_still_sees_the_file_change(sshd, tmp_path: pathlib.Path) -> None:  # noqa: F811
    cfg, known = write_config(sshd, tmp_path)
    with S.SSHPool(cfg) as pool:
        pool("cfx-node")
    # the host's key line replaced by another key of the same type: a changed key, refused
    kind = sshd.known_line().split()[1]
    known.write_text(f"{sshd.known_line().split()[0]} {kind} {OTHER_KEY}\n")
    with S.SSHPool(cfg) as pool, pytest.raises(HostKeyChanged):
        pool("cfx-node")
    known.write_text("")  # removed: unknown, refused (StrictHostKeyChecking yes)
    with S.SSHPool(cfg) as pool, pytest.raises(HostKeyUnknown):
        pool("cfx-node")
