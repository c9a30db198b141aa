"""#17, the core at 5,000 nodes: a flow's peer addresses are not copied per node.

`ClusterHosts.peers` / `of_family` gave every node an N-long tuple of the other nodes' addresses
(N^2 copies over a cluster: ~0.5 s at 5,000 nodes). They now give a `NetSet` reading the
cluster's one sorted tuple without the node's own index. It must read, compare, hash and print
exactly as the tuple the previous code built (kept verbatim below), and match rules the same."""

from __future__ import annotations

import bisect
import random
from types import SimpleNamespace
from typing import Any

from clusterfix_tui.core.checks import firewall_path as FP


def _without(items: tuple[str, ...], c: str) -> tuple[str, ...]:
    i = bisect.bisect_left(items, c)
    if i < len(items) and items[i] == c:
        return items[:i] + items[i + 1:]
    return items


def _old_peers(h: FP.ClusterHosts, node: str) -> tuple[str, ...]:
    """ClusterHosts.peers before #17's fifth pass: the items it built."""
    m = h.by_node.get(node)
    return _without(h.sorted, m) if m is not None else h.sorted


def _old_of_family(h: FP.ClusterHosts, node: str, fam: str, extras: list[str]) -> tuple[str, ...] | None:
    m = h.by_node.get(node)
    hosts = h.by_fam[fam]
    if m is not None and h.count.get(m) == 1 and h.fam[m] == fam:
        hosts = _without(hosts, m) + (m,)
    ext = tuple(c for c in dict.fromkeys(extras) if c not in h.count and FP._fam(c) == fam)
    got = hosts + ext
    return got or None


def _cluster(rnd: random.Random) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    for i in range(rnd.randint(0, 40)):
        kind = rnd.random()
        if kind < 0.6:
            ip: str | None = f"10.0.{rnd.randint(0, 3)}.{rnd.randint(1, 30)}"  # duplicates too
        elif kind < 0.85:
            ip = f"fd00::{rnd.randint(1, 40):x}"
        else:
            ip = None
        nodes[f"node-{i}"] = SimpleNamespace(internal_ip=ip)
    return nodes


def _same(got: Any, want: tuple[str, ...] | None) -> None:
    if want is None:
        assert got is None
        return
    assert tuple(got) == want and list(got) == list(want) and len(got) == len(want)
    assert got == want and want == got and not (got != want) and hash(got) == hash(want)
    assert repr(got) == repr(want) and bool(got) == bool(want)
    for k in range(-len(want), len(want)):
        assert got[k] == want[k]
    for sl in (slice(None, 3), slice(2, None), slice(None, None, -1), slice(1, -1, 2),
               slice(None, FP.MAX_FLOW_ADDRS)):
        assert got[sl] == want[sl]
    assert [c in got for c in want[:5]] == [True] * len(want[:5])


def test_peers_and_families_read_as_the_tuples_they_replace() -> None:
    rnd = random.Random(1705)
    netsets = 0
    for _ in range(300):
        nodes = _cluster(rnd)
        h = FP.ClusterHosts(nodes)
        for name in list(nodes) + ["not-a-node"]:
            p = h.peers(name)
            _same(p, _old_peers(h, name))
            netsets += isinstance(p, FP.NetSet)
            extras = rnd.sample(["10.244.0.0/16", "fd00:10:244::/56", "10.0.0.5/32",
                                 "10.96.0.0/12"], rnd.randint(0, 3))
            for fam in ("ip", "ip6"):
                _same(h.of_family(name, fam, extras), _old_of_family(h, name, fam, extras))
    assert netsets > 1000


def test_a_nodes_peers_share_the_clusters_tuple() -> None:
    nodes = {f"node-{i}": SimpleNamespace(internal_ip=f"10.1.{i >> 8}.{i & 255}")
             for i in range(2000)}
    h = FP.ClusterHosts(nodes)
    p = h.peers("node-7")
    fam = h.of_family("node-7", "ip", ["10.244.0.0/16"])
    assert isinstance(p, FP.NetSet) and isinstance(fam, FP.NetSet)
    assert p.base is h.sorted and fam.base is h.by_fam["ip"]  # no per-node copy
    assert len(p) == 1999 and "10.1.0.7/32" not in p and fam[-2:] == ("10.1.0.7/32", "10.244.0.0/16")


def test_flows_match_rules_and_serialise_as_before() -> None:
    """A node's flows against rules naming peers, pods and outsiders: the same answer from the
    NetSet and from the plain tuple of the same addresses (match_addr's other branch)."""
    rnd = random.Random(17)
    nodes = {f"node-{i}": SimpleNamespace(internal_ip=f"10.0.{i >> 8}.{i & 255}")
             for i in range(300)}
    h = FP.ClusterHosts(nodes)
    cidrs = ["10.0.0.0/24", "10.0.1.0/24", "10.0.0.0/16", "10.0.0.5/32", "192.168.0.0/16",
             "10.244.0.0/16", "0.0.0.0/0", "10.0.0.0/25"]
    for name in rnd.sample(list(nodes), 30):
        for got in (h.peers(name), h.of_family(name, "ip", ["10.244.0.0/16"])):
            assert got is not None
            plain = tuple(got)
            for _ in range(10):
                rule = rnd.sample(cidrs, rnd.randint(1, 3))
                assert FP.match_addr(got, "ip", rule) == FP.match_addr(plain, "ip", rule)
            flow = FP.Flow("kubelet", "input", "ip", "x", "tcp", (1, 1), got, None)
            ref = FP.Flow("kubelet", "input", "ip", "x", "tcp", (1, 1), plain, None)
            assert flow.to_dict() == ref.to_dict() and flow == ref and repr(flow) == repr(ref)
            assert flow.to_dict()["saddrs_total"] == len(plain)
