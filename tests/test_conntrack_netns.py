"""The conntrack facts and the nf_conntrack_max action run for real in a fresh network namespace
(`unshare --net`): what a lab node (and a kind/netns node) is. There the count is the
namespace's own (0 in a new one) and nf_conntrack_max is read-only (global, written only from the
initial namespace): the facts read it, no finding comes out, and the action refuses to pass
silently (procps' `sysctl -w` exits 0 there although the kernel kept the old value). Nothing here
can change the host's limit: the namespace cannot write it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _env import require_tool

from clusterfix_tui.core import facts as F
from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import conntrack as C
from clusterfix_tui.core.fixes import conntrack as CF

pytestmark = pytest.mark.lab  # root and namespaces: skipped locally / failed in CI when missing


def _in_netns(script: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("unshare"), "--net", "sh", "-c", script], input=stdin,
                          capture_output=True, text=True, timeout=120)


def _host_max() -> int | None:
    try:
        return int(Path(P.CONNTRACK_MAX).read_text().strip())
    except (OSError, ValueError):
        return None


def test_facts_in_a_fresh_namespace_read_the_table_and_find_nothing() -> None:
    if _host_max() is None:
        pytest.skip("nf_conntrack is not loaded on this machine")
    nonce = F.new_nonce()
    r = _in_netns("sh", stdin=F.build_facts_script([], nonce=nonce))
    f = F.parse_facts("x", r.stdout, nonce)
    assert f.complete, (f.parse_errors, r.stderr[-500:])
    ct = f.conntrack
    assert ct is not None and ct.state == "read", (ct, f.section("conntrack"))
    assert ct.count == 0 and ct.max == _host_max() and ct.cpus and ct.cpus >= 1
    assert "conntrack" not in f.unread_sections()
    if Path(P.CONNTRACK_STAT).exists():
        assert ct.counters_source == P.CONNTRACK_STAT and "drop" in ct.counters
    assert C.check(None, {"x": f}) == []  # type: ignore[arg-type]


def test_the_action_fails_where_the_kernel_keeps_the_old_limit(tmp_path) -> None:
    before = _host_max()
    if before is None:
        pytest.skip("nf_conntrack is not loaded on this machine")
    new = before + 1024
    bdir = tmp_path / "backup"
    pre = CF.precondition(new)
    r = _in_netns(pre.command)
    assert r.returncode == 1 and "read-only here" in r.stdout, (r.stdout, r.stderr)
    r = _in_netns(CF.raise_command(new, str(bdir)))
    assert r.returncode == 1 and f"is not {new} after the write" in r.stderr, (r.stdout, r.stderr)
    assert (bdir / "nf_conntrack_max").read_text().strip() == str(before)  # saved before the write
    assert _host_max() == before  # the namespace could not change the host's limit
