"""Rollback fidelity of a replaced file: /root/.kube/config is often a symlink to
/etc/kubernetes/admin.conf (so kubeadm's certificate renewals reach it). The worker_kubeconfig fix
writes a file in its place (atomically: a mv over the link); the old backup copied the link's
target's content and the rollback wrote that back as a plain file: the link was gone for good
(and a dangling link was "absent", so the rollback deleted it). The rollback now puts the link
back, pointing where it pointed. Real sh, coreutils/busybox-compatible commands, in a temp dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from clusterfix_tui.core.fixes.worker_kubeconfig import (
    backup_file_command,
    restore_file_command,
    write_kubeconfig_command,
)


def _sh(cmd: str) -> None:
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("dangling", [False, True])
def test_symlinked_kubeconfig_comes_back_as_the_link(tmp_path: Path, dangling: bool) -> None:
    admin = tmp_path / "admin.conf"
    if not dangling:
        admin.write_text("apiVersion: v1\nclusters: []\n")
    link = tmp_path / "kube" / "config"
    link.parent.mkdir()
    os.symlink("../admin.conf", link)
    src = tmp_path / "kubelet.conf"
    src.write_text("apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n")
    bdir = str(tmp_path / "backup")
    _sh(backup_file_command(str(link), bdir) + " && "
        + write_kubeconfig_command(str(src), str(link), "https://10.0.0.9:6443"))
    assert not link.is_symlink() and "10.0.0.9" in link.read_text()
    _sh(restore_file_command(str(link), bdir))
    assert link.is_symlink() and os.readlink(link) == "../admin.conf"
    if not dangling:
        assert admin.read_text() == "apiVersion: v1\nclusters: []\n"


def test_plain_file_and_absent_file_as_before(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("old\n")
    os.chmod(path, 0o640)
    bdir = str(tmp_path / "b")
    _sh(backup_file_command(str(path), bdir) + " && echo new > " + str(path))
    _sh(restore_file_command(str(path), bdir))
    assert path.read_text() == "old\n" and (path.stat().st_mode & 0o777) == 0o640
    gone = tmp_path / "none"
    _sh(backup_file_command(str(gone), bdir) + " && echo x > " + str(gone))
    _sh(restore_file_command(str(gone), bdir))
    assert not gone.exists()
