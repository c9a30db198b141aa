"""The link / route / overlay / sysctl / kubeconfig variants of lab/faults.py's "# faultlink" block,
found and repaired on ONE real lab by the real CLI (`python3 -m clusterfix_tui`).

Three rounds, each: inject a few variants on different nodes, `diagnose --json` names each with its
code on its node, `fix --yes` repairs, `validate --json` is all green (NodePorts on every node,
pod-to-pod across nodes, flannel / kube-proxy pods, kubectl on the nodes), the state each variant
broke is back, and a re-diagnosis has none of the codes. The first round also checks that
`rollback` puts back exactly what the repair changed (the variants come back), then repairs again.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from faultvar_helpers import _codes, _diagnose, _fix, _inject, _roles, _sh, _validate
from lab_helpers import lab_fixture
from test_lab_shapes import cli, wait_nodeports

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3)


def _is_up(link_line: str) -> bool:
    return re.search(r"<([^>]*,)?UP[,>]", link_line) is not None


def _gw(lab, node: str) -> str:
    return str(ipaddress.ip_network(lab.node(node)["pod_cidr"]).network_address)


def test_round1_neighbour_blackhole_device_forwarding(lab, tmp_path: Path) -> None:
    jf, o1, o2 = _roles(lab)
    _inject(lab, "flannel-neigh-missing", o1)
    _inject(lab, "route-blackhole", o2)
    _inject(lab, "cni0-forwarding-off", jf)
    assert _validate(lab), "the variants break no traffic"
    found = _diagnose(lab)
    want = {("FLANNEL_STALE_VTEP", o1), ("FLANNEL_MISSING_ROUTE", o2), ("IP_FORWARD_OFF", jf)}
    assert want <= _codes(found), found
    neigh = next(f for f in found if f["code"] == "FLANNEL_STALE_VTEP" and f["node"] == o1)
    assert neigh["data"]["neigh_missing"] and neigh["data"]["peer_node"] == jf
    hole = next(f for f in found if f["code"] == "FLANNEL_MISSING_ROUTE" and f["node"] == o2)
    assert [s["route"].split()[0] for s in hole["data"]["shadowing"]] == ["blackhole"]

    journal = tmp_path / "j.jsonl"
    _fix(lab, journal)
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    assert "lladdr" in _sh(lab, o1, f"ip neigh show {_gw(lab, jf)} dev flannel.1")
    assert "blackhole" not in _sh(lab, o2, "ip route show type blackhole")
    assert _sh(lab, jf, "cat /proc/sys/net/ipv4/conf/cni0/forwarding").strip() == "1"
    assert not want & _codes(_diagnose(lab))

    # rollback puts back what the repair changed: the three variants are there again
    r = cli("rollback", "--lab-dir", str(lab.dir), "--journal", str(journal), "--yes")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "blackhole" in _sh(lab, o2, "ip route show type blackhole")
    assert _sh(lab, jf, "cat /proc/sys/net/ipv4/conf/cni0/forwarding").strip() == "0"
    assert "lladdr" not in _sh(lab, o1, f"ip neigh show {_gw(lab, jf)} dev flannel.1")
    _fix(lab, tmp_path / "j2.jsonl")
    assert not _validate(lab)


def test_round2_links_down_and_control_plane_kubeconfig(lab, tmp_path: Path) -> None:
    jf, o1, _ = _roles(lab)
    _inject(lab, "flannel-link-down", o1)
    _inject(lab, "cni0-down", jf)
    cp = next(n["name"] for n in lab.nodes if n.get("role") == "control-plane")
    _inject(lab, "cp-kubeconfig", cp)
    found = _diagnose(lab)
    want = {("FLANNEL_LINK_DOWN", o1), ("FLANNEL_LINK_DOWN", jf), ("WORKER_KUBECONFIG_BROKEN", cp)}
    assert want <= _codes(found), found
    _fix(lab, tmp_path / "j.jsonl")
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    assert _is_up(_sh(lab, o1, "ip -o link show flannel.1"))
    assert _is_up(_sh(lab, jf, "ip -o link show cni0"))
    assert _sh(lab, cp, "kubectl get nodes -o name --request-timeout=10s").count("node/") == 3
    assert not want & _codes(_diagnose(lab))


def test_round3_vtep_recreated_and_cni0_prefix(lab, tmp_path: Path) -> None:
    jf, o1, _ = _roles(lab)
    _inject(lab, "vtep-recreated", jf)
    _inject(lab, "cni0-wrong-prefix", o1)
    found = _diagnose(lab)
    want = {("FLANNEL_STALE_VTEP", jf), ("CNI_BRIDGE_CONFLICT", o1)}
    assert want <= _codes(found), found
    own = next(f for f in found if f["code"] == "FLANNEL_STALE_VTEP" and f["node"] == jf)
    assert own["data"]["self_mismatch"]
    _fix(lab, tmp_path / "j.jsonl")
    assert not _validate(lab)
    assert all(v == "200" for v in wait_nodeports(lab).values())
    net = ipaddress.ip_network(lab.node(o1)["pod_cidr"])
    addrs = _sh(lab, o1, "ip -4 -o addr show dev cni0")
    assert f" {net.network_address + 1}/{net.prefixlen} " in addrs, addrs
    assert addrs.count(" inet ") == 1, addrs
    assert not want & _codes(_diagnose(lab))
