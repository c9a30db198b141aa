"""Rollback fidelity on a real lab: a foreign nft rule in the MIDDLE of kube-proxy's endpoint chain
(before its DNAT) -> `fix --yes --step iptables` (deletes it, restarts kube-proxy, which rewrites
its chains: new handles) -> `rollback --yes` -> the chain reads exactly as before (byte for byte,
counters aside), and so do both iptables backends' saves. The old rollback appended the rule at
the end of the chain (after the DNAT: a rule that never runs)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from determinism import poll_until
from lab_helpers import lab_fixture

REPO = str(Path(__file__).resolve().parents[1])
pytestmark = pytest.mark.lab
lab = lab_fixture(nodes=2, faults="none")
_COUNTERS = re.compile(r"\[\d+:\d+\]|(?<=counter) packets \d+ bytes \d+")
NODE = "node-2"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,
                          text=True, timeout=400, cwd=str(cwd),
                          env={**os.environ, "PYTHONPATH": REPO, "NO_COLOR": "1"})


def _sep_chain(lab) -> tuple[str, int]:
    """A KUBE-SEP chain of kube-proxy on NODE with two rules, and the handle of its second."""
    text = lab.exec(NODE, "nft -a list table ip nat").stdout
    for m in re.finditer(r"^\tchain (KUBE-SEP-\S+) \{.*?\n(.*?)^\t\}", text, re.M | re.S):
        hs = re.findall(r"# handle (\d+)$", m.group(2), re.M)
        if len(hs) == 2 and "dnat to" in m.group(2):
            return m.group(1), int(hs[1])
    raise AssertionError(f"no KUBE-SEP chain with two rules on {NODE}:\n{text}")


def _state(lab, chain: str) -> dict[str, str]:
    return {
        "chain": _COUNTERS.sub("", lab.exec(NODE, f"nft list chain ip nat {chain}").stdout),
        "legacy": _COUNTERS.sub("", lab.exec(NODE, "iptables-legacy-save | grep -v '^#'; true").stdout),
        "nft-save-filter": _COUNTERS.sub("", lab.exec(
            NODE, "iptables-nft-save -t filter | grep -v '^#'; true").stdout),
    }


def test_foreign_rule_rolled_back_to_its_place_in_kube_proxys_chain(lab, tmp_path):
    poll_until(lambda: _sep_chain_or_none(lab), 120, "kube-proxy's endpoint chains", every=2)
    chain, dnat = _sep_chain(lab)
    clean = _state(lab, chain)
    lab.exec(NODE, f"nft insert rule ip nat {shlex.quote(chain)} position {dnat} "
                   "ct state new counter")
    before = _state(lab, chain)
    body = [ln.strip() for ln in before["chain"].splitlines()]
    assert body.index("ct state new counter") < next(i for i, ln in enumerate(body)
                                                      if "dnat to" in ln)
    journal = tmp_path / "j.jsonl"
    r = _cli("fix", "--yes", "--step", "iptables", "--no-validate", "--lab-dir", str(lab.dir),
             "--journal", str(journal), cwd=tmp_path)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "nft delete rule ip nat" in r.stdout, r.stdout
    mid = _state(lab, chain)
    assert mid["chain"] == clean["chain"], mid["chain"]  # deleted (kube-proxy's rules stay)
    r = _cli("rollback", "--yes", "--journal", str(journal), "--lab-dir", str(lab.dir),
             cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    after = _state(lab, chain)
    assert after == before, (before, after)


def _sep_chain_or_none(lab) -> bool:
    try:
        _sep_chain(lab)
        return True
    except AssertionError:
        return False
