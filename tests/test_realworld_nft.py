"""Native nft tables and rules on real node shapes: FORWARD_DROP's nft side (an accept counts for
the pod network by address only when addresses are all it matches) and the nft rule text the
iptables step renders for a rule's rollback and precondition (nft must take it back)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import iptables
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info

DATA = Path(__file__).parent / "data" / "realworld"

# kube-proxy's KUBE-FORWARD pod source/destination rules (tests/data/realworld/
# centos7-binary-k8s-KUBE-FORWARD-rules.txt: '-s/-d <clusterCIDR> -m conntrack --ctstate
# RELATED,ESTABLISHED -j ACCEPT') written natively in an inet filter forward chain with policy drop,
# a negated source accept and a rate-limited accept. SYNTHESISED text, its JSON made by the real
# nft: `nft -f` in an empty network namespace, then `nft -j list ruleset` (nftables v1.0.6).
NARROW_ACCEPTS = """table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ip saddr 10.244.0.0/16 ct state related,established counter accept
		ip daddr 10.244.0.0/16 ct state related,established counter accept
		ip saddr != 10.244.0.0/16 accept
		ip daddr 10.244.0.0/16 limit rate 10/second accept
	}
}
"""
NARROW_ACCEPTS_JSON = (
    '{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schem'
    'a_version":1}},{"table":{"family":"inet","name":"filter","handle":1}},{"chain":{"family"'
    ':"inet","table":"filter","name":"forward","handle":1,"type":"filter","hook":"forward","p'
    'rio":0,"policy":"drop"}},{"rule":{"family":"inet","table":"filter","chain":"forward","ha'
    'ndle":2,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}}'
    ',"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"match":{"op":"in","left":{"ct":{"'
    'key":"state"}},"right":["established","related"]}},{"counter":{"packets":0,"bytes":0}},{'
    '"accept":null}]}},{"rule":{"family":"inet","table":"filter","chain":"forward","handle":3'
    ',"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right'
    '":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"match":{"op":"in","left":{"ct":{"key":"s'
    'tate"}},"right":["established","related"]}},{"counter":{"packets":0,"bytes":0}},{"accept'
    '":null}]}},{"rule":{"family":"inet","table":"filter","chain":"forward","handle":4,"expr"'
    ':[{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"pre'
    'fix":{"addr":"10.244.0.0","len":16}}}},{"accept":null}]}},{"rule":{"family":"inet","tabl'
    'e":"filter","chain":"forward","handle":5,"expr":[{"match":{"op":"==","left":{"payload":{'
    '"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"'
    'limit":{"rate":10,"burst":5,"per":"second"}},{"accept":null}]}}]}'
)


def _node(name: str, cidr: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {
                "k3s.io/node-args": '["server"]',
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/public-ip": ip}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def _forward_drop(rs: P.NftRuleset) -> list[Any]:
    f = NodeFacts(node="node-a", complete=True, nft_ruleset=rs,
                  subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"})
    nodes = [_node("node-a", "10.244.0.0/24", "10.0.0.11"),
             _node("node-b", "10.244.1.0/24", "10.0.0.12")]
    snap = ClusterSnapshot(nodes={n.name: n for n in map(node_info, nodes)})
    snap = replace(snap, shape=detect_shape(snap, {"node-a": f}))
    return iptables.forward_drop(snap, "node-a", f)


def test_nft_forward_drop_narrow_accepts_do_not_cover_the_pod_network():
    """Old code: the conntrack-only source/destination accepts (and the negated one) counted as
    accepting the pod network: a forward policy drop called healthy."""
    rs = P.parse_nft_json(json.dumps(json.loads(NARROW_ACCEPTS_JSON)))
    assert not rs.errors and len(rs.rules) == 4
    (x,) = _forward_drop(rs)
    assert x.code == "FORWARD_DROP" and x.data.backend == "nft-native"
    assert (x.data.family, x.data.table, x.data.chain) == ("inet", "filter", "forward")


def test_nft_forward_drop_plain_address_accepts_cover_it():
    """The same chain with the plain address accepts (what the iptables step inserts): healthy."""
    doc = json.loads(NARROW_ACCEPTS_JSON)
    rules = [i for i in doc["nftables"] if "rule" in i]
    plain = []
    for r in rules[:2]:
        rule = json.loads(json.dumps(r))
        rule["rule"]["expr"] = [e for e in rule["rule"]["expr"]
                                if not ("match" in e and "ct" in e["match"]["left"])]
        plain.append(rule)
    doc["nftables"] = [i for i in doc["nftables"] if "rule" not in i] + plain
    rs = P.parse_nft_json(json.dumps(doc))
    assert len(rs.rules) == 2
    assert _forward_drop(rs) == []
