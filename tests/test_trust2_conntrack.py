"""trust2: the conntrack facts and the nf_conntrack_max raise, reviewed against hostile node output
and a node that moves between plan and rollback.

- A /proc or /sys value with a non-ASCII digit ('²' passes str.isdigit(), int() refuses it) made
  the parsers raise instead of reading "not read"; the same in a save's `--dport` for
  KUBE_PROXY_SHADOWED.
- Values the kernel cannot hold (nf_conntrack_max is an int sysctl) planned a write of a number
  past INT_MAX.
- The rollback wrote the saved value back whatever the limit had become: kube-proxy writes its own
  at its start (maxPerCore x CPUs), and the rollback then lowered it under kube-proxy's feet.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _env import require_tool
from conntrack_samples import CONNTRACK_S_147, grep_output
from test_conntrack import _plan

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import nat_shadow
from clusterfix_tui.core.fixes import conntrack as CF

SUP2 = "\u00b2"  # '²': str.isdigit() is True, int() raises
ARABIC = "\u0661\u0662"  # '١٢': str.isdigit() and int() both take it (12)


@pytest.mark.parametrize("count,cmax,cpus", [(SUP2, 131072, "0-3"), (100, SUP2, "0-3"),
                                             (ARABIC, 131072, "0-3"), (100, 131072, f"0-{SUP2}"),
                                             (100, 131072, f"{ARABIC}-3")])
def test_non_ascii_digits_in_proc_files_are_not_read_and_never_raise(count, cmax, cpus) -> None:
    out, err = grep_output(count, cmax, 65536, None, cpus=cpus)  # type: ignore[arg-type]
    ct = P.parse_conntrack(out, err)
    if count in (SUP2, ARABIC) or cmax in (SUP2, ARABIC):
        assert ct.state == "not-read"
    else:
        assert ct.state == "read" and ct.cpus is None  # the CPU list is not read


@pytest.mark.parametrize("value", [SUP2, ARABIC])
def test_non_ascii_digits_in_conntrack_s_are_not_read(value: str) -> None:
    out, err = grep_output(100, 131072, 65536, None)
    ct = P.parse_conntrack(out, err, CONNTRACK_S_147.replace("drop=0", f"drop={value}", 1))
    assert ct.state == "read" and ct.counters == {} and ct.counters_source is None


def test_non_ascii_hex_in_the_stat_file_is_not_read() -> None:
    stat = "entries  searched found\n" + f"0000000{ARABIC}  00000000 00000000\n"
    assert P.parse_conntrack_stat(stat) is None


def test_a_service_port_with_a_non_ascii_digit_is_no_destination_and_never_raises() -> None:
    nat = P.parse_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n"
        "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"default/k\" -m tcp "
        f"--dport 44{SUP2} -j KUBE-SVC-X\n"
        "-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-X\nCOMMIT\n"
    ).table("nat")
    assert nat is not None
    assert [(d.addr, d.port) for d in nat_shadow.service_dests(nat)] == [("10.96.0.10", 53)]


def test_a_limit_past_what_the_kernel_takes_is_not_planned() -> None:
    """nf_conntrack_max is an int sysctl: a node 'reading' 2^31-1 entries of 2^31-1 made a plan
    to write 4294967296 (the kernel refuses it; the plan showed a number that cannot be real)."""
    big = 2**31 - 1
    plan = _plan(big, big, "0-3")
    assert plan.actions == ()
    assert any("more than the kernel takes" in n for n in plan.notes), plan.notes
    assert _plan(131000, 131072, "0-3").actions  # a real full table still gets its raise


def _unshare(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("unshare"), "--net", "--mount", "--propagation", "private",
                           "sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.mark.lab  # root and namespaces, as tests/test_conntrack_netns.py
def test_rollback_leaves_a_limit_kube_proxy_wrote_meanwhile(tmp_path) -> None:
    """Raise (65536 -> 131072), then kube-proxy restarts and writes its own 262144; the rollback
    must not lower it back to 65536 (a table that filled to 200000 would drop again): its
    precondition says 'changed' (1) and the command itself refuses. Without that change the
    rollback holds (0) and restores 65536 exactly. Run for real on a plain file bind-mounted over
    nf_conntrack_max in a private mount + network namespace (the host's limit is never reached)."""
    if not Path(P.CONNTRACK_MAX).exists():
        pytest.skip("nf_conntrack is not loaded on this machine")
    require_tool("sysctl")
    new = CF.target_max(65000, 2)  # 131072
    plan = _plan(65000, 65536, "0-1")
    (a,) = plan.actions
    assert a.rollback is not None and a.rollback.precondition is not None
    for kube_proxy, want_pre, want_rb, after in (("262144", "pre=1", "rb=1", "262144"),
                                                 ("", "pre=0", "rb=0", "65536")):
        fake, bdir = tmp_path / f"max{kube_proxy}", tmp_path / f"b{kube_proxy}"
        fake.write_text("65536\n")
        touch = f"echo {kube_proxy} > {P.CONNTRACK_MAX}\n" if kube_proxy else ""
        script = (f"mount --bind {fake} {P.CONNTRACK_MAX} || exit 90\n"
                  f"({CF.raise_command(new, str(bdir))}); echo \"raise=$?\"\n" + touch
                  + f"({CF.restore_precondition(str(bdir), new).command}); echo \"pre=$?\"\n"
                  f"({CF.restore_command(str(bdir), new)}); echo \"rb=$?\"\n"
                  f"echo \"after=$(cat {P.CONNTRACK_MAX})\"\n")
        r = _unshare(script)
        assert r.returncode == 0, (r.stdout, r.stderr)
        for want in ("raise=0", want_pre, want_rb, f"after={after}"):
            assert want in r.stdout, (want, r.stdout, r.stderr)
        # the plan's own rollback is these commands for its backup dir
        assert a.rollback.command.count(f"= {new} ]") == 1
