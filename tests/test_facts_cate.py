"""A section's stderr (and kube-proxy's two short answers, a probe's few lines) printed by the
shell itself (cfx_cate: its first 16 lines with `read`, the rest by `cat` from where `read`
stopped), not by a `cat` process each (~1.5 ms of a node's CPU a section with stderr, #17): byte
for byte what `cat` prints, in sh (dash), busybox sh and bash, except a NUL byte, which the
shell's `read` drops (no tool's message has one)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from clusterfix_tui.core import facts as F

CASES = {
    "empty": b"",
    "one line": b"ip: Cannot find device \"flannel-v6.1\"\n",
    "no newline at the end": b"ok",
    "lines, the last without newline": b"a\nb\n c \nlast",
    "blank lines": b"\n\n\nx\n\n",
    "backslashes, quotes, CR, tabs": b"a\\nb \\\\ 'q' \"d\" $HOME `x`\r\n\tt\\\n",
    "%s and dashes": b"-n\n-e %s %d %%\n--\n",
    "not UTF-8": bytes(range(1, 256)) + b"\n",
    "16 lines": b"".join(b"line %d\n" % i for i in range(16)),
    "17 lines": b"".join(b"line %d\n" % i for i in range(17)),
    "many lines, the last without newline": b"".join(b"l%d\n" % i for i in range(500)) + b"end",
    "a long line": b"x" * 20000 + b"\n",
}
SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)] + (["busybox sh"] if shutil.which("busybox") else [])


def _cate_fn() -> str:
    prelude = F.script_parts([], "cate0001")[0][1]
    start = prelude.index("cfx_cate() {")
    end = prelude.index("\n}\n", start) + 3
    return prelude[start:end]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("name", list(CASES))
def test_cfx_cate_prints_what_cat_prints(tmp_path, shell, name) -> None:
    f = tmp_path / "e"
    f.write_bytes(CASES[name])
    script = _cate_fn() + 'cfx_cate "$1"\n'
    r = subprocess.run([*shell.split(), "-c", script, "sh", str(f)], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stderr == b""
    assert r.stdout == subprocess.run(["cat", str(f)], capture_output=True).stdout


def test_a_nul_byte_is_what_differs(tmp_path) -> None:
    f = tmp_path / "e"
    f.write_bytes(b"a\0b\n")
    r = subprocess.run(["sh", "-c", _cate_fn() + 'cfx_cate "$1"\n', "sh", str(f)], capture_output=True)
    assert r.stdout == b"ab\n"


def test_stderr_files_go_through_the_shell_and_outputs_through_cat() -> None:
    s = F.build_facts_script(["10.244.1.5"], vxlan_probes=["10.244.1.0"], node_name="n")
    assert 'cat "$T/e"' not in s and 'cat "$T/ke"' not in s
    assert 'cfx_cate "$T/e"' in s and 'cfx_cate "$T/ke"' in s
    # what a file, a table or a node object holds (any size) is still printed by `cat`
    assert 'cat "$T/o"' in s and 'cat "$T/ko"' in s and 'cat "$T/rs"' in s
