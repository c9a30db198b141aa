"""Issue 17: nothing quadratic in the core. No timing here (speed is bench/bench_core.py's): each
test counts the calls of a helper that a per-node scan of every node or pod would call N^2 times,
at two cluster sizes, and requires the count to grow like N (a quadratic helper coming back makes
the count at 4x the nodes ~16x, not ~4x)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import firewall
from clusterfix_tui.core.checks import firewall_path as FP
from clusterfix_tui.core.checks import kubeconfig as KC
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes import kube_actions
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo, PodInfo

# a host firewall whose rules name addresses (so every rule is matched against the flows'
# address sets: the peers, the cluster members) and end in a REJECT of the VXLAN
FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 192.168.0.0/16 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 10.1.0.0/17 -p udp -m udp --dport 8472 -j ACCEPT
-A INPUT -d 10.1.0.0/16 -p tcp -m tcp --dport 10250 -j ACCEPT
-A INPUT -p udp -m udp --dport 8472 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def _ip(i: int) -> str:
    return f"10.1.{i & 255}.{(i >> 8) + 1}"  # node-128..255 are outside 10.1.0.0/17


def _cluster(n: int) -> tuple[ClusterSnapshot, dict[str, NodeFacts]]:
    nodes = {f"node-{i}": NodeInfo(name=f"node-{i}", internal_ip=_ip(i), addresses=(),
                                   pod_cidr=f"10.244.{i}.0/24", conditions={}, annotations={},
                                   labels={}, kubelet_version=None)
             for i in range(1, n + 1)}
    snap = ClusterSnapshot(nodes=nodes, flannel_backend="vxlan", flannel_network="10.244.0.0/16")
    filt = P.parse_iptables_save(FILTER)
    facts = {name: NodeFacts(node=name, complete=True, nft_filter=filt) for name in nodes}
    return snap, facts


def _count_net(monkeypatch: pytest.MonkeyPatch, n: int) -> tuple[int, int]:
    calls = [0]
    real = FP._net

    def counting(c: Any) -> Any:
        calls[0] += 1
        return real(c)

    monkeypatch.setattr(FP, "_net", counting)
    snap, facts = _cluster(n)
    found = firewall.check(snap, facts)
    monkeypatch.setattr(FP, "_net", real)
    return calls[0], len(found)


def test_firewall_check_parses_addresses_linearly(monkeypatch: pytest.MonkeyPatch) -> None:
    small, found_small = _count_net(monkeypatch, 40)
    big, found_big = _count_net(monkeypatch, 160)
    # the rules really were matched: at 160 nodes some peers are outside the ACCEPT's
    # 10.1.0.0/17, so the VXLAN reaches the REJECT on every node; at 40 it never does
    assert found_small == 0 and found_big == 160
    assert big <= 4 * small * 1.25, (small, big)


def test_cluster_flows_matches_the_node_addresses_it_holds() -> None:
    snap, facts = _cluster(200)  # node-128.. are outside 10.1.0.0/17
    flows = {fl.name: fl for fl in FP.cluster_flows(snap, "node-1", facts["node-1"])}
    peers = flows["vxlan-in"].saddrs
    assert peers is not None and len(peers) == 199 and f"{_ip(1)}/32" not in peers
    assert FP.match_addr(peers, "ip", ["10.1.0.0/16"]) == FP.FULL
    assert FP.match_addr(peers, "ip", ["10.1.0.0/17"]) == FP.PARTIAL
    assert FP.match_addr(peers, "ip", [f"{_ip(1)}/32"]) == FP.NONE  # the node itself is no peer
    assert FP.match_addr(peers, "ip", [f"{_ip(2)}/32"]) == FP.PARTIAL
    assert FP.match_addr(peers, "ip", ["10.1.0.0/17", "10.1.0.128/25", "10.1.0.0/24"]) == FP.PARTIAL
    assert FP.match_addr(peers, "ip", ["10.1.0.0/17", "10.1.0.0/24"]) == FP.PARTIAL
    assert FP.match_addr(peers, "ip", ["10.1.0.0/17", "10.1.0.0/18", "10.1.128.0/17"]) == FP.FULL
    members = flows["kubelet"].saddrs
    assert members is not None and f"{_ip(1)}/32" in members and "10.244.0.0/16" in members
    # the pod network is a member too: a rule for the nodes only matches part of the flow
    assert FP.match_addr(members, "ip", ["10.1.0.0/16"]) == FP.PARTIAL
    assert FP.match_addr(members, "ip", ["10.0.0.0/8"]) == FP.FULL
    assert FP.match_addr(members, "ip", ["fd00::/8"]) == FP.NONE


def test_node_pod_scans_the_pods_once() -> None:
    def plan_all(n: int) -> int:
        calls = [0]
        real = kube_actions._pod_fields

        def counting(pod: Any) -> Any:
            calls[0] += 1
            return real(pod)

        kube_actions._pod_fields = counting  # type: ignore[assignment]
        try:
            pods = {f"node-{i}": [PodInfo(
                        namespace="kube-system", name=f"kube-proxy-{i}", node=f"node-{i}",
                        phase="Running", ready=True, restart_count=0, waiting_reason=None,
                        waiting_message=None, last_termination_message=None,
                        last_termination_reason=None, container=None, pod_ip=None)]
                    for i in range(1, n + 1)}
            diag = SimpleNamespace(snapshot=ClusterSnapshot(kube_proxy_pods=pods))
            for i in range(1, n + 1):
                assert kube_actions.kube_proxy_pod(diag, f"node-{i}") == \
                    ("kube-system", f"kube-proxy-{i}")
            assert kube_actions.kube_proxy_pod(diag, "node-x") is None
        finally:
            kube_actions._pod_fields = real  # type: ignore[assignment]
        return calls[0]

    small, big = plan_all(50), plan_all(200)
    assert big <= 4 * small * 1.25, (small, big)


def test_kubeconfig_candidates_count_the_servers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built = [0]
    real = KC.KubeletServers.__init__

    def counting(self: Any, facts_by_node: Any) -> None:
        built[0] += 1
        real(self, facts_by_node)

    monkeypatch.setattr(KC.KubeletServers, "__init__", counting)
    snap, _ = _cluster(30)
    good = "https://10.1.0.1:6443"
    facts = {n: NodeFacts(node=n, complete=True, kubectl_rc=1,
                          kubeconfigs={KC.KUBELET_CONF: good, KC.TARGET: "https://nowhere:6443"})
             for n in snap.nodes}
    found = KC.check(snap, facts)
    assert len(found) == 30 and built[0] == 1
    assert all(f.data.expected_server == good if not isinstance(f.data, dict)
               else f.data["expected_server"] == good for f in found)


def test_a_findings_flow_keeps_a_bounded_address_list() -> None:
    """Every node's firewall finding names the flows it breaks; the peers' list in it is bounded
    (N nodes x N peers in the JSON and the journal otherwise), and says how long it was."""
    snap, facts = _cluster(160)
    found = firewall.check(snap, facts)
    data = found[0].data
    rules = data.rules if not isinstance(data, dict) else data["rules"]
    flows = [fl for r in rules for fl in r["flows"] if fl["name"] == "vxlan-in"]
    assert flows and len(flows[0]["saddrs"]) == FP.MAX_FLOW_ADDRS
    assert flows[0]["saddrs_total"] == 159
    small = FP.Flow("x", "input", "ip", "x", saddrs=("10.0.0.1/32",)).to_dict()
    assert small["saddrs"] == ["10.0.0.1/32"] and "saddrs_total" not in small
