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


def test_raise_then_rollback_put_back_the_exact_value(tmp_path) -> None:
    """The success path, run for real: in a private mount and network namespace a plain file is
    bind-mounted over nf_conntrack_max (the real one there is read-only; the host's is never
    reached), so the real `sysctl -w` writes it. The action saves the old value once, writes N,
    reads it back; a second run keeps the first saved value; the precondition is then "done";
    the rollback writes the saved value back exactly."""
    if _host_max() is None:
        pytest.skip("nf_conntrack is not loaded on this machine")
    require_tool("sysctl")
    fake, bdir = tmp_path / "nf_conntrack_max", tmp_path / "backup"
    fake.write_text("65536\n")
    new = CF.target_max(65000, 2)  # 131072: kube-proxy's minimum
    pre = CF.precondition(new)
    host_before = _host_max()
    script = (f"mount --bind {fake} {P.CONNTRACK_MAX} || exit 90\n"
              f"({pre.command}); echo \"pre1=$?\"\n"
              f"({CF.raise_command(new, str(bdir))}); echo \"raise1=$?\"\n"
              f"({CF.raise_command(new, str(bdir))}); echo \"raise2=$?\"\n"
              f"({pre.command}); echo \"pre2=$?\"\n"
              f"({CF.restore_command(str(bdir), new)}); echo \"restore=$?\"\n"
              f"echo \"after=$(cat {P.CONNTRACK_MAX})\"\n")
    r = subprocess.run([require_tool("unshare"), "--net", "--mount", "--propagation", "private",
                        "sh", "-c", script], capture_output=True, text=True, timeout=60)
    out = r.stdout
    assert r.returncode == 0, (out, r.stderr)
    for want in ("pre1=0", "raise1=0", "raise2=0", f"nf_conntrack_max is {new} already", "pre2=3",
                 "restore=0", "after=65536"):
        assert want in out, (want, out, r.stderr)
    assert (bdir / "nf_conntrack_max").read_text().strip() == "65536"  # the first value, kept
    assert _host_max() == host_before  # the host's limit never moved
    assert fake.read_text().strip() == "65536"
