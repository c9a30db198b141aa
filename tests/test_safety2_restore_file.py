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


def test_a_backup_cut_short_is_never_taken_for_the_saved_file(tmp_path: Path) -> None:
    # a cp that fails half way (disk full: it leaves what it wrote) made the next run keep that
    # partial copy as "the pre-fix file" (saved once), and the rollback put it back
    path, bdir, fake = tmp_path / "config", tmp_path / "backup", tmp_path / "bin"
    path.write_text("apiVersion: v1\nclusters: [a, b, c]\n")
    fake.mkdir()
    (fake / "cp").write_text('#!/bin/sh\neval "last=\\${$#}"\nprintf apiVer > "$last"\nexit 1\n')
    (fake / "cp").chmod(0o755)
    cmd = backup_file_command(str(path), str(bdir))
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.returncode != 0
    _sh(cmd)  # the retry, with a working cp
    path.write_text("the fix's file\n")
    _sh(restore_file_command(str(path), str(bdir)))
    assert path.read_text() == "apiVersion: v1\nclusters: [a, b, c]\n"


def test_a_symlink_is_recorded_whole(tmp_path: Path) -> None:
    path, bdir = tmp_path / "config", tmp_path / "backup"
    os.symlink("/etc/kubernetes/admin.conf", path)
    _sh(backup_file_command(str(path), str(bdir)))
    path.unlink()
    path.write_text("the fix's file\n")
    _sh(restore_file_command(str(path), str(bdir)))
    assert os.readlink(path) == "/etc/kubernetes/admin.conf"
    assert not list(bdir.glob("*.tmp"))
