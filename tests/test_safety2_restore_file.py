"""A file's rollback puts the saved copy back AT its path, never through a symlink made there
since the fix (old code: `cp -p saved path` followed the link and overwrote the file it points
at, e.g. /root/.kube/config turned into a link to /etc/kubernetes/admin.conf). Real shell, files
in a temporary directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from clusterfix_tui.core.fixes.worker_kubeconfig import backup_file_command, restore_file_command


def _sh(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True, capture_output=True, text=True)


def test_the_saved_copy_replaces_a_symlink_made_since(tmp_path: Path) -> None:
    path, other, bdir = tmp_path / "config", tmp_path / "admin.conf", tmp_path / "backup"
    path.write_text("before\n")
    other.write_text("someone else's file\n")
    _sh(backup_file_command(str(path), str(bdir)))
    path.unlink()
    os.symlink(other, path)  # changed since the fix
    _sh(restore_file_command(str(path), str(bdir)))
    assert not path.is_symlink() and path.read_text() == "before\n"
    assert other.read_text() == "someone else's file\n"
    assert not list(tmp_path.glob("*.cfx-restore"))


def test_a_plain_file_comes_back_with_its_mode(tmp_path: Path) -> None:
    path, bdir = tmp_path / "sysctl.conf", tmp_path / "backup"
    path.write_text("net.ipv4.ip_forward = 0\n")
    path.chmod(0o640)
    _sh(backup_file_command(str(path), str(bdir)))
    path.write_text("net.ipv4.ip_forward = 1\n")
    _sh(restore_file_command(str(path), str(bdir)))
    assert path.read_text() == "net.ipv4.ip_forward = 0\n" and (path.stat().st_mode & 0o777) == 0o640
