"""The netfilter variants of lab/faults.py's "# faultnet" block, found and repaired on ONE real lab
by the real CLI (`python3 -m clusterfix_tui`).

Two rounds, each: inject variants on different nodes, `diagnose --json` names each with its code on
its node, `fix --yes` repairs, `validate --json` is all green (NodePorts on every node, pod-to-pod
across nodes), the state each variant broke works again, and a re-diagnosis has none of the codes.
The first round also checks that `rollback` puts back exactly what the repair changed in the
tables (the mangle drop is again unanswered; kube-proxy's restarts are not rolled back), then
repairs again. On the code before these variants were handled, round 1's diagnosis named none of
its three variants and round 2's VXLAN drop was "outside the nodes".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faultvar_helpers import _codes, _diagnose, _fix, _inject, _roles, _sh, _validate
from lab_helpers import lab_fixture
from test_lab_shapes import cli, wait_nodeports

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3)


def _finding(found: list[dict], code: str, node: str) -> dict:
    return next(f for f in found if f["code"] == code and f["node"] == node)


def test_round1_kube_proxy_links_gone_and_mangle_drop(lab, tmp_path: Path) -> None:
    jf, o1, o2 = _roles(lab)
    _inject(lab, "kube-proxy-jump-gone", o1)
    _inject(lab, "kube-proxy-nodeports-flushed", o2)
    _inject(lab, "mangle-nodeport-drop", jf)
    found = _diagnose(lab)
    want = {("KUBE_PROXY_NO_RULES", o1), ("KUBE_PROXY_NO_RULES", o2), ("FIREWALL_REJECT", jf)}
    assert want <= _codes(found), found
    assert _finding(found, "KUBE_PROXY_NO_RULES", o1)["data"]["missing_chains"] == [
        "-A PREROUTING -j KUBE-SERVICES"]
    assert _finding(found, "KUBE_PROXY_NO_RULES", o2)["data"]["missing_chains"][0].startswith(
        "-A KUBE-NODEPORTS --dport ")
    mangle = _finding(found, "FIREWALL_REJECT", jf)["data"]["rules"]
    assert {(r["table"], r["chain"]) for r in mangle} == {("mangle", "PREROUTING")}

    journal = tmp_path / "j.jsonl"
    _fix(lab, journal)
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    assert "-j KUBE-SERVICES" in _sh(lab, o1, "iptables-nft -t nat -S PREROUTING")
    assert "--dport" in _sh(lab, o2, "iptables-nft -t nat -S KUBE-NODEPORTS")
    # the mangle drop stays; an accept for exactly the NodePort range sits right before it
    rules = _sh(lab, jf, "iptables-nft -t mangle -S PREROUTING").splitlines()
    drop = rules.index("-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP")
    before = [x for x in rules[1:drop]]
    assert before and all("clusterfix: " in x and x.endswith("-j ACCEPT") for x in before), rules
    assert any("clusterfix: nodeport" in x for x in before)
    # each accept is no wider than the drop: the NodePort range, tcp
    assert all("-p tcp -m tcp --dport 30000:32767" in x for x in before)
    assert "clusterfix" not in _sh(lab, jf, "iptables-nft -t filter -S")  # nothing in filter
    assert not want & _codes(_diagnose(lab))

    # rollback removes exactly the accepts: the mangle table is as the fault left it
    r = cli("rollback", "--lab-dir", str(lab.dir), "--journal", str(journal), "--yes")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert _sh(lab, jf, "iptables-nft -t mangle -S PREROUTING").splitlines() == [
        "-P PREROUTING ACCEPT", "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP"]
    assert ("FIREWALL_REJECT", jf) in _codes(_diagnose(lab))
    _fix(lab, tmp_path / "j2.jsonl")
    assert not _validate(lab)


def test_round2_raw_vxlan_drop_and_forward_reject_chain(lab, tmp_path: Path) -> None:
    jf, o1, _ = _roles(lab)
    _inject(lab, "raw-vxlan-drop", jf)
    _inject(lab, "forward-reject-chain", o1)
    found = _diagnose(lab)
    want = {("FIREWALL_REJECT", jf), ("FIREWALL_REJECT", o1)}
    assert want <= _codes(found), found
    assert not any(f["code"] == "VXLAN_UNDERLAY_BLOCKED" for f in found)  # folded: not "outside"
    raw = _finding(found, "FIREWALL_REJECT", jf)["data"]
    assert "vxlan-in" in raw["flows"]
    assert {(r["backend"], r["table"]) for r in raw["rules"]} == {("legacy", "raw")}
    fwd = _finding(found, "FIREWALL_REJECT", o1)["data"]
    assert {r["chain"] for r in fwd["rules"]} == {"HOST-FWD"}
    _fix(lab, tmp_path / "j.jsonl")
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    assert "clusterfix: vxlan-in" in _sh(lab, jf, "iptables-legacy -t raw -S PREROUTING")
    assert not want & _codes(_diagnose(lab))
