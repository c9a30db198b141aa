"""KUBE_PROXY_SHADOWED on ONE real lab by the real CLI (`python3 -m clusterfix_tui`): lab/faults.py's
"# faultnet2" block puts a foreign ACCEPT (the NodePort range) and a foreign RETURN (one peer's
address) ahead of kube-proxy's jump in nat PREROUTING on two nodes. `diagnose --json` names each
with its code on its node (before: silent, kube-proxy's chains and jumps all there), `fix --yes`
puts kube-proxy's jump right before each rule (the rules stay), `validate --json` is all green and
every NodePort answers; `rollback` removes exactly the inserted jumps (the nat table is as the
fault left it, the finding is back), and a second fix repairs again."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultvar_helpers import _codes, _diagnose, _fix, _inject, _roles, _sh, _validate
from lab_helpers import lab_fixture
from test_lab_shapes import cli, wait_nodeports

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3)

JUMP = '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'


def _prerouting(lab, node: str) -> list[str]:
    from clusterfix_tui.lab import faults as F

    b = F.kube_proxy_backend(lab, node)
    return [x for x in _sh(lab, node, f"iptables-{b} -t nat -S PREROUTING").splitlines()
            if x.startswith("-A ")]


def test_shadowing_rules_found_fixed_validated_and_rolled_back(lab, tmp_path: Path) -> None:
    _jf, o1, o2 = _roles(lab)
    _inject(lab, "nat-nodeport-accept", o1)
    _inject(lab, "nat-source-return", o2)
    broken = {o1: _prerouting(lab, o1), o2: _prerouting(lab, o2)}
    assert broken[o1][0] == "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT", broken
    assert broken[o2][0].endswith("-j RETURN") and broken[o2][0].startswith("-A PREROUTING -s ")

    found = _diagnose(lab)
    want = {("KUBE_PROXY_SHADOWED", o1), ("KUBE_PROXY_SHADOWED", o2)}
    assert want <= _codes(found), found
    by = {f["node"]: f["data"] for f in found if f["code"] == "KUBE_PROXY_SHADOWED"}
    assert by[o1]["rule"] == broken[o1][0] and not by[o1]["partial"]
    assert by[o2]["rule"] == broken[o2][0] and by[o2]["partial"]
    assert by[o1]["jump"] == JUMP and by[o1]["builtin"] == "PREROUTING"
    # a kube-proxy restart would not help: the tool does not plan one for it
    assert not any(f["code"] == "KUBE_PROXY_NO_RULES" for f in found if f["node"] in (o1, o2))

    journal = tmp_path / "j.jsonl"
    out = _fix(lab, journal)
    assert "restart_daemonset" not in out
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    for node in (o1, o2):  # kube-proxy's jump right before the rule, which stays
        rules = _prerouting(lab, node)
        assert rules[:2] == [JUMP, broken[node][0]], rules
    assert not want & _codes(_diagnose(lab))

    r = cli("rollback", "--lab-dir", str(lab.dir), "--journal", str(journal), "--yes")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    for node in (o1, o2):
        assert _prerouting(lab, node) == broken[node]
    assert want <= _codes(_diagnose(lab))
    _fix(lab, tmp_path / "j2.jsonl")
    assert not _validate(lab)
