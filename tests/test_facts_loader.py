"""The facts loader (core.facts.loader_command): the script comes on stdin, runs from a private
temp directory, its output leaves the node in 32 KiB blocks when the node's dd can (so our SSH
reader handles a few packets instead of one per marker/section write, #17), byte for byte and
with the script's exit status; without such a dd, straight out as before."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from clusterfix_tui.core.facts import loader_command

# many small writes, like the facts script's markers and sections
SCRIPT = ("i=0; while [ $i -lt 3000 ]; do printf '@@CFX n1 BEGIN s%s\\nline %s\\n' $i $i; "
          "i=$((i+1)); done; printf 'no newline at the end'; exit 3")


def _expected() -> bytes:
    return subprocess.run(["sh", "-c", SCRIPT], capture_output=True).stdout


def _loader(env: dict[str, str] | None = None, strace_to: Path | None = None):
    argv = ["dash", "-c", loader_command("n1")]
    if strace_to is not None:
        argv = ["strace", "-f", "-qq", "-e", "trace=write", "-o", str(strace_to), *argv]
    return subprocess.run(argv, input=SCRIPT.encode(), capture_output=True, env=env, timeout=60)


@pytest.mark.skipif(shutil.which("dash") is None, reason="dash is the /bin/sh of Debian nodes")
def test_same_bytes_and_exit_status_in_blocks() -> None:
    want = _expected()
    assert len(want) > 60_000
    r = _loader()
    assert (r.returncode, r.stdout, r.stderr) == (3, want, b"")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace counts the writes")
def test_the_output_leaves_in_a_few_large_writes(tmp_path) -> None:
    trace = tmp_path / "writes"
    r = _loader(strace_to=trace)
    assert r.returncode == 3 and r.stdout == _expected()
    # the writes to the loader's own stdout (what sshd turns into packets): dd's blocks
    # (the size asked for; strace -f may split a call over two lines: "<unfinished ...>")
    sizes = [int(m) for m in re.findall(r'write\(1, ".*?"(?:\.\.\.)?, (\d+)', trace.read_text())]
    big = [s for s in sizes if s >= 32768]
    # the script's own ~6,000 printf writes go to the pipe (also fd 1 of sh): dd's output is
    # the few 32 KiB writes plus a remainder; the total through dd is the whole output
    assert len(big) >= len(r.stdout) // 32768, sizes[-10:]


def test_without_a_dd_that_can_it_goes_straight_out(tmp_path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dd").write_text("#!/bin/sh\nexit 1\n")  # a dd without iflag=fullblock
    (bindir / "dd").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    r = _loader(env=env)
    assert (r.returncode, r.stdout) == (3, _expected())


def test_nothing_is_left_behind_and_no_fixed_name_is_used(tmp_path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    r = _loader(env=env)
    assert r.returncode == 3
    assert list(tmp_path.iterdir()) == []  # the private directory and its files are gone
    cmd = loader_command("n1")
    assert "mktemp -d" in cmd and 'mkdir "$cfx_s" || exit 97' in cmd
