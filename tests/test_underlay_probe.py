"""Issue 13, item 4: the VXLAN underlay probe's results, and which node a blocked underlay is
reported on (the probes are real `ping`/`curl` outputs as the facts script frames them)."""

from __future__ import annotations

from clusterfix_tui.core.checks import underlay
from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

NODES = {"node-1": ("10.213.0.11", "10.244.0.0/24"), "node-2": ("10.213.0.12", "10.244.1.0/24"),
         "node-3": ("10.213.0.13", "10.244.2.0/24")}
OK = ("probe: curl tcp/10250\ncurl: (7) Failed to connect to 10.244.1.0 port 10250 after 0 ms: "
      "Couldn't connect to server: Connection refused", 7)
SILENT = ("probe: curl tcp/10250\ncurl: (28) Connection timed out after 3001 milliseconds", 28)
REJECTED = ("probe: curl tcp/10250\ncurl: (7) Failed to connect to 10.244.1.0 port 10250 after "
            "1 ms: Couldn't connect to server: No route to host", 7)
PING_OK = ("probe: ping\nPING 10.244.1.0 (10.244.1.0) 56(84) bytes of data.\n64 bytes from "
           "10.244.1.0: icmp_seq=1 ttl=64 time=0.1 ms", 0)
PING_LOST = ("probe: ping\nPING 10.244.1.0 (10.244.1.0) 56(84) bytes of data.\n\n--- 10.244.1.0 "
             "ping statistics ---\n2 packets transmitted, 0 received, 100% packet loss", 1)


def _snap() -> ClusterSnapshot:
    return ClusterSnapshot(flannel_backend="vxlan", nodes={
        n: NodeInfo(n, ip, (), cidr, {"Ready": {"status": "True"}}, {}, {}, "v1.30")
        for n, (ip, cidr) in NODES.items()})


def _facts(results: dict[tuple[str, str], tuple[str, int]]) -> dict[str, NodeFacts]:
    out = {}
    for n in NODES:
        secs = {}
        for (a, b), (text, rc) in results.items():
            if a == n:
                gw = NODES[b][1].split("/")[0]
                secs[f"vxlan_probe {gw}"] = Section("vxlan_probe", gw, text, "", rc)
        out[n] = NodeFacts(node=n, complete=True, sections=secs)
    return out


def _all(result, **over) -> dict[tuple[str, str], tuple[str, int]]:
    return {(a, b): over.get(f"{a}>{b}", result) for a in NODES for b in NODES if a != b}


def test_probe_targets_are_the_peers_flannel_addresses() -> None:
    assert underlay.probe_targets(_snap(), "node-2") == ["10.244.0.0", "10.244.2.0"]


def test_probe_results() -> None:
    sec = lambda t: Section("vxlan_probe", "x", t[0], "", t[1])  # noqa: E731
    assert underlay.probe_result(sec(OK)) == "ok"
    assert underlay.probe_result(sec(SILENT)) == "no-answer"
    assert underlay.probe_result(sec(REJECTED)) == "rejected"
    assert underlay.probe_result(sec(PING_OK)) == "ok"
    assert underlay.probe_result(sec(PING_LOST)) == "no-answer"


def test_healthy_and_rejected_are_not_an_underlay_fault() -> None:
    assert underlay.check(_snap(), _facts(_all(OK))) == []
    # an ICMP error from the peer's firewall came back through the tunnel: the underlay works
    assert underlay.check(_snap(), _facts(_all(OK, **{"node-1>node-2": REJECTED}))) == []


def test_a_cut_off_node_is_named_and_the_drop_is_outside_when_no_firewall_drops() -> None:
    res = _all(OK, **{"node-1>node-2": SILENT, "node-3>node-2": SILENT,
                      "node-2>node-1": SILENT, "node-2>node-3": SILENT})
    (f,) = underlay.check(_snap(), _facts(res))
    assert f.code == "VXLAN_UNDERLAY_BLOCKED" and f.node == "node-2"
    assert isinstance(f.data, underlay.UnderlayBlockedData) and f.data.port == 8472
    assert f.data["where"] == "outside" and f.data["accepts"] == []
    assert {tuple(p) for p in f.data["pairs"]} == {("node-1", "node-2"), ("node-3", "node-2"),
                                                    ("node-2", "node-1"), ("node-2", "node-3")}
    assert any("security group" in e for e in f.evidence)


def test_a_single_failing_pair_is_reported_on_its_destination() -> None:
    (f,) = underlay.check(_snap(), _facts(_all(OK, **{"node-3>node-1": SILENT})))
    assert f.node == "node-1" and f.data["pairs"] == [["node-3", "node-1"]]


def test_no_probe_for_other_backends() -> None:
    snap = ClusterSnapshot(flannel_backend="host-gw", nodes=_snap().nodes)
    assert underlay.probe_targets(snap, "node-1") == []
    assert underlay.check(snap, _facts(_all(SILENT))) == []


def test_big_clusters_probe_a_ring_of_peers() -> None:
    nodes = {f"n{i:02d}": NodeInfo(f"n{i:02d}", f"10.0.0.{i}", (), f"10.244.{i}.0/24",
                                   {"Ready": {"status": "True"}}, {}, {}, "v1.30")
             for i in range(1, 31)}
    snap = ClusterSnapshot(flannel_backend="vxlan", nodes=nodes)
    t = underlay.probe_targets(snap, "n30")
    assert len(t) == underlay.MAX_PROBES and t[0] == "10.244.1.0"  # wraps around
    incoming = sum("10.244.5.0" in underlay.probe_targets(snap, n) for n in nodes)
    assert incoming == underlay.MAX_PROBES
