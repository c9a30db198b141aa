"""The panels' pure helpers on the shapes the engine produces (core.facts / core.snapshot)."""

from __future__ import annotations

from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.parsers import parse_iptables_save
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo, PodInfo
from clusterfix_tui.ui import view as v

LEGACY = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X
-A KUBE-SERVICES -j KUBE-NODEPORTS
COMMIT
"""
NFT_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -j KUBE-NODEPORTS
COMMIT
"""
NFT_FILTER = """*filter
:FORWARD ACCEPT [0:0]
COMMIT
"""


def _facts() -> NodeFacts:
    return NodeFacts(
        node="node-2",
        sections={"ip_route": Section("ip_route", None, '[{"dst":"default"}]', "", 0)},
        host_iptables="nft",
        legacy=parse_iptables_save(LEGACY),
        nft_nat=parse_iptables_save(NFT_NAT),
        nft_filter=parse_iptables_save(NFT_FILTER),
        addrs=({"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.244.9.1",
                                                  "prefixlen": 24}]},
               {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1",
                                                "prefixlen": 8}]}),
        routes=({"dst": "10.244.2.0/24", "gateway": "10.244.2.0", "dev": "flannel.1",
                 "flags": ["onlink"]},),
    )


def test_nat_chains_per_backend_with_rule_counts_and_forward_policies() -> None:
    facts = _facts()
    assert v.nat_of(facts) == {"legacy": {"KUBE-SERVICES": 2, "KUBE-NODEPORTS": 0},
                               "nft": {"KUBE-SERVICES": 1}}
    assert v.forward_policies(facts) == {"legacy": "DROP", "nft": "ACCEPT"}
    assert v.iptables_mode(facts) == "nft"


def test_routes_addresses_and_the_pod_cidr() -> None:
    facts = _facts()
    assert v.routes_of(facts) == ["10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"]
    assert v.addresses_of(facts) == {"cni0": "10.244.9.1/24"}
    assert v.address_in_cidr("10.244.9.1/24", "10.244.2.0/24") is False
    assert v.address_in_cidr("10.244.2.1/24", "10.244.2.0/24") is True


def test_raw_output_names_the_command_that_produced_it() -> None:
    raw = v.raw_outputs(_facts())
    assert list(raw) == ["ip -j route show"]
    assert raw["ip -j route show"].startswith('[{"dst":"default"}]')
    assert "[exit 0]" in raw["ip -j route show"]


class _Diagnosis:
    def __init__(self, snapshot, facts, findings=()):
        self.snapshot = snapshot
        self.facts = facts
        self.findings = list(findings)


def test_nodes_and_pods_from_the_snapshot() -> None:
    node = NodeInfo(name="node-2", internal_ip="10.213.7.12", addresses=(), pod_cidr="10.244.1.0/24",
                    conditions={"Ready": {"status": "False"}}, annotations={},
                    labels={"node-role.kubernetes.io/worker": ""}, kubelet_version="v1.31.2")
    pod = PodInfo(namespace="kube-system", name="kube-proxy-7xk2p", node="node-2",
                  phase="Running", ready=False, restart_count=12,
                  waiting_reason="CrashLoopBackOff", waiting_message=None,
                  last_termination_message=None, last_termination_reason="Error",
                  container="kube-proxy", pod_ip=None, log_tail=("E1126 failed",))
    snap = ClusterSnapshot(nodes={"node-2": node}, pods=(pod,))
    diagnosis = _Diagnosis(snap, {"node-2": _facts()})
    assert v.node_rows(diagnosis, {"node-2": "connected"}) == [
        ("node-2", "worker", "False", "10.213.7.12", "10.244.1.0/24", "v1.31.2", "nft",
         "not read", "connected")]
    assert v.is_network_pod(pod)
    assert v.pod_row(pod) == ("kube-system/kube-proxy-7xk2p", "node-2", "CrashLoopBackOff",
                              "12", "CrashLoopBackOff")
    assert v.pod_log_text(diagnosis, "kube-system/kube-proxy-7xk2p") == "E1126 failed"
    by_key = v.pods_by_key(diagnosis)  # kept by the screen: a cursor move does not walk every pod
    assert v.pod_log_text(diagnosis, "kube-system/kube-proxy-7xk2p", by_key) == "E1126 failed"
    assert v.pod_log_text(diagnosis, "kube-system/nope", by_key) is None
