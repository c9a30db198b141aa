"""The facts script's incompatible-table part (run only where `iptables-nft -S` refuses a table
that nft holds): every tool in it runs under its own deadline (#14). A tool killed at it makes
that table's incompatible_chains section "timed out" (rc 137: not read, so
KUBE_PROXY_INCOMPATIBLE_CHAIN is not checked on the node), never a list of chains that a
repair would act on, and it costs its deadline, not the node's whole facts read. Run here with
stand-in `iptables-nft` and `nft` first on the script's PATH and a 1 s deadline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.checks import not_read

NONCE = "incompat0001"
DONE = f"printf '{F.MARK} %s DONE\\n' \"$N\""
NFT_NAT = """table ip nat { # handle 3
\tchain KUBE-SERVICES { # handle 1
\t\tmeta l4proto tcp ip daddr 10.96.0.1 counter packets 0 bytes 0 jump KUBE-SVC-NPX # handle 9
\t}
\tchain KUBE-SEP-ZXCVB { # handle 2
\t\tcounter packets 0 bytes 0 xt target "DNAT" # handle 10
\t}
}
"""


def _tools(d: Path, hang: str) -> None:
    """iptables-nft: refuses the nat table and its chain KUBE-SEP-ZXCVB; nft: prints NFT_NAT.
    `hang` names the call that sleeps instead: "table" (iptables-nft -t nat -S), "nft", "chain"
    (iptables-nft -S KUBE-SEP-ZXCVB) or "" (none)."""
    (d / "nft.out").write_text(NFT_NAT)
    ipt = f"""#!/bin/sh
t=; c=
while [ $# -gt 0 ]; do case $1 in -t) t=$2; shift 2;; -S) shift; c=${{1:-}}; [ $# -gt 0 ] && shift;; *) shift;; esac; done
[ "$t" = nat ] || exit 0
if [ -z "$c" ]; then [ "{hang}" = table ] && exec sleep 30
  echo "iptables v1.8.7 (nf_tables): table \\`nat' is incompatible, use 'nft' tool." >&2; exit 1; fi
if [ "$c" = KUBE-SEP-ZXCVB ]; then [ "{hang}" = chain ] && exec sleep 30
  echo "iptables v1.8.7 (nf_tables): chain \\`$c' in table \\`nat' is incompatible, use 'nft' tool." >&2; exit 1; fi
exit 0
"""
    nft = f"""#!/bin/sh
[ "{hang}" = nft ] && exec sleep 30
case "$*" in *"table ip nat"*) cat {d / 'nft.out'};; *) echo "Error: No such file or directory" >&2; exit 1;; esac
"""
    for name, text in (("iptables-nft", ipt), ("nft", nft)):
        (d / name).write_text(text)
        (d / name).chmod(0o755)


def _run(d: Path) -> dict[str, F.Section]:
    parts = dict(F.script_parts([], NONCE))
    prelude = parts["prelude"].replace("PATH=/usr/local/sbin:", f"PATH={d}:/usr/local/sbin:", 1)
    prelude = prelude.replace(f"timeout -s KILL {int(F.SECTION_TIMEOUT)}", "timeout -s KILL 1")
    assert "timeout -s KILL 1" in prelude
    script = "\n".join([prelude, parts["incompatible"], DONE])
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=25,
                       stdin=subprocess.DEVNULL)
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors, (errors, r.stderr[-500:])
    return secs


def test_an_incompatible_chain_is_listed_with_its_nft_rules(tmp_path: Path) -> None:
    _tools(tmp_path, hang="")
    secs = _run(tmp_path)
    inc = secs["incompatible_chains nat"]
    assert inc.rc == 0 and inc.stdout.split() == ["KUBE-SEP-ZXCVB"]
    assert "is incompatible" in inc.stderr
    text = secs["nft_table_text nat"]
    assert text.rc == 0 and text.stdout.strip() == NFT_NAT.strip()
    assert "incompatible_chains filter" not in secs  # filter is compatible: not read


@pytest.mark.parametrize("hang", ["table", "nft", "chain"])
def test_a_hung_tool_times_the_table_out_and_lists_no_chain(tmp_path: Path, hang: str) -> None:
    _tools(tmp_path, hang=hang)
    secs = _run(tmp_path)  # hangs until its timeout (a failure) on a tool without deadline
    inc = secs["incompatible_chains nat"]
    assert inc.rc == 137 and inc.timed_out, (inc.rc, inc.stderr)
    assert inc.unread_reason() == f"timed out after {F.SECTION_TIMEOUT}s"
    assert "nft_table_text nat" not in secs  # not read: no half a table to act on
    # the check that reads it is not checked on the node (never "no incompatible chain")
    assert not_read("KUBE_PROXY_INCOMPATIBLE_CHAIN", {inc.name: inc.unread_reason() or ""})
