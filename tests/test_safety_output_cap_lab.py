"""A hostile or broken node's output, over the real SSH transport to a lab node (nothing patched):
past the per-command cap (ssh.MAX_OUTPUT) the reader stops, closes the channel, kills the command
and returns what it read with an error saying so (never a complete, never an empty answer); the
pool goes on. A session's diagnose reports such a node's facts as not read, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.runtime import lab_paths
from clusterfix_tui.transports.ssh import MAX_OUTPUT, SSHPool

pytestmark = pytest.mark.lab
lab = lab_fixture(nodes=1, faults="none")
MIB = 2**20


def _pool(lab, **kw) -> SSHPool:
    return SSHPool(lab_paths(str(lab.dir))[1], command_timeout=120, **kw)


def test_output_past_the_cap_is_not_read_and_the_pool_goes_on(lab) -> None:
    node = lab.nodes[0]["name"]
    with _pool(lab, max_output=MIB) as pool:
        shell = pool(node)
        res = shell.run("head -c 3M /dev/zero | tr '\\0' x; echo END", timeout=120)
        assert res.exit_code is None and not res.ok and not res.timed_out
        assert res.error is not None and res.error.startswith("output larger than 1 MiB")
        assert len(res.stdout) + len(res.stderr) == MIB + 1 and "END" not in res.stdout
        # stderr counts too; a command that never stops is stopped (not left to its deadline)
        res = shell.run("yes error >&2", timeout=120)
        assert res.exit_code is None and not res.timed_out
        assert "output larger than 1 MiB" in (res.error or "")
        assert "killed" in (res.error or "") or "already gone" in (res.error or "")
        # streamed lines: the same cap; a 1 MiB line reaches on_line cut
        lines: list[str] = []
        res = shell.run("head -c 900K /dev/zero | tr '\\0' y; echo; echo small",
                        timeout=120, on_line=lambda s, ln: lines.append(ln))
        assert res.ok and len(res.stdout) == 900 * 1024 + 7
        assert lines[-1] == "small" and len(lines) == 2
        assert len(lines[0]) < 70 * 1024 and lines[0].endswith("bytes]")
        ok = shell.run("echo still here", timeout=60)
        assert ok.ok and ok.stdout == "still here\n"
        # just under the cap is read whole
        res = shell.run(f"head -c {MIB - 4096} /dev/zero | tr '\\0' z", timeout=120)
        assert res.ok and len(res.stdout) == MIB - 4096


def test_default_cap() -> None:
    """The pool's default is MAX_OUTPUT (128 MiB). Reading it over the wire costs ~15 s of our CPU
    (bench figure, 46 s wall at load 9), so the tests above lower it; the code path is the same."""
    assert SSHPool(None).max_output == MAX_OUTPUT == 128 * MIB


def test_diagnose_reports_a_node_whose_facts_are_too_large(lab, tmp_path: Path) -> None:
    """The facts script's output past the cap: the node's facts are reported not read, with the
    reason, in the finding, the journal and the report (the rest of the session goes on)."""
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.session import RepairSession
    from clusterfix_tui.runtime import build_runtime

    node = lab.nodes[0]["name"]
    rt = build_runtime(lab_dir=str(lab.dir), no_local=True)
    try:
        rt.shells.ssh.max_output = 4096  # the lab node's facts are larger than this
        s = RepairSession(rt.api, rt.shells, rt.runner, Journal(tmp_path / "j.jsonl"),
                          prober=rt.prober)
        s.connect()
        d = s.diagnose("before")
        mine = [f for f in d.findings if f.node == node and f.code == "FACTS_UNREADABLE"]
        assert mine, [(f.node, f.code) for f in d.findings]
        assert any("output larger than 0.00390625 MiB" in e for e in mine[0].evidence), \
            mine[0].evidence
    finally:
        rt.close()
    text = (tmp_path / "j.jsonl").read_text()
    assert "output larger than 0.00390625 MiB" in text
    events = [json.loads(x) for x in text.splitlines()]
    assert any(e.get("type") == "diagnosis" or "findings" in e for e in events)
