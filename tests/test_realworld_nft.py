"""Native nft tables and rules on real node shapes: FORWARD_DROP's nft side (an accept counts for
the pod network by address only when addresses are all it matches) and the nft rule text the
iptables step renders for a rule's rollback and precondition (nft must take it back)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

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


# -- nft rule text for a rollback / precondition -------------------------------------------------

LISTINGS = {  # real `nft list ruleset` excerpts (samples.json) and their nft -j form
    "k3s-pi-nft-ip-filter-KUBE-FORWARD-excerpt.nft": "k3s-pi-nft-ip-filter-KUBE-FORWARD-excerpt.nft.json",
    "k3s-pi-nft-netbird-tables-excerpt.nft": "k3s-pi-nft-netbird-tables-excerpt.nft.json",
}


def _listed_rules(name: str) -> list[str]:
    """The rule lines of an `nft list` text, counters as a bare `counter` (what the iptables
    step's precondition compares)."""
    out, in_chain = [], False
    for ln in (x.strip() for x in (DATA / name).read_text().splitlines()):
        if ln.startswith("chain "):
            in_chain = True
        elif ln == "}":
            in_chain = False
        elif in_chain and ln and not (ln.startswith("type ") and " hook " in ln):
            out.append(re.sub(r"counter packets \d+ bytes \d+", "counter", ln))
    return out


def _flags_sorted(text: str) -> str:
    return re.sub(r"(ct state )(\S+)", lambda m: m[1] + ",".join(sorted(m[2].split(","))), text)


def test_rendered_nft_rules_are_nft_listing_text():
    """Every rule nft_rule_statement renders reads exactly as nft itself lists it (the real
    listings); what it cannot render exactly is None, never a guess. The old render printed
    'ct state in invalid' and '& { meta mark, 16384 } 16384' (nft refuses both)."""
    rendered = 0
    for listing, js in LISTINGS.items():
        rs = P.parse_nft_json((DATA / js).read_text())
        lines = _listed_rules(listing)
        assert len(lines) == len(rs.rules)
        for r, line in zip(rs.rules, lines, strict=True):
            got = P.nft_rule_statement(r)
            # ct state flags: nft 1.0.9 (the k3s listing) printed them in the rule's order, 1.0.6
            # (its JSON) in bit order: the same rule
            assert got is None or _flags_sorted(got) == _flags_sorted(line), (got, line)
            rendered += got is not None
            assert got is None or P.render_nft_rule(r) == \
                f"{r.family} {r.table} {r.chain}: {got} # handle {r.handle}"
    assert rendered == 3 + 15


def _foreign_plan(rs: P.NftRuleset, chain: str = "KUBE-FORWARD") -> tuple[Any, Any]:
    """kube-proxy's iptables known to be the host's (its log names it): nft-native rules in its
    chain are foreign, to be deleted by handle; `nft -a list table` NOT read (no text of it)."""
    from test_realworld import _Diag

    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.snapshot import PodInfo

    host = "iptables v1.8.7 (nf_tables)"
    f = NodeFacts(node="node-a", complete=True, nft_ruleset=rs,
                  incompatible_chains={"filter": (chain,)},
                  iptables_version=P.parse_iptables_version(host),
                  nft_mangle=P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"))
    pod = PodInfo("kube-system", "kube-proxy-a", "node-a", "Running", True, 0, None, None, None,
                  None, "kube-proxy", None, log_tail=(f"I1201 Using {host}",))
    snap = ClusterSnapshot(kube_proxy_pods={"node-a": [pod]})
    (x,) = iptables.incompatible_chain(snap, "node-a", f)
    assert x.data.cause == "foreign-nft-rule" and f.nft_table_text == {}
    return x, get_step("iptables").plan(_Diag([x], {"node-a": f}, {"pods": []}))


def test_foreign_rule_rollback_is_the_rule_nft_listed():
    """Old code: the rollback re-added 'ip filter KUBE-FORWARD: ct state in invalid counter drop'
    (nft refuses it) and the precondition compared the handle's line with that text."""
    rs = P.parse_nft_json((DATA / "k3s-pi-nft-ip-filter-KUBE-FORWARD-excerpt.nft.json").read_text())
    _x, plan = _foreign_plan(rs)
    lines = _listed_rules("k3s-pi-nft-ip-filter-KUBE-FORWARD-excerpt.nft")
    dels = [a for a in plan.actions if "nft delete rule" in a.command]
    # the nft-native ones (ct state; the meta mark match is what iptables-nft writes itself)
    assert [a.command.split()[-1] for a in dels] == ["2", "4"]
    for a, line in zip(dels, [lines[0], lines[2]], strict=True):
        line = {"ct state related,established counter accept":
                "ct state established,related counter accept"}.get(line, line)  # as nft 1.0.6
        assert a.rollback is not None
        # re-added at its place (tests/test_safety_rollback_order.py runs it with the real nft)
        assert f"rule ip filter KUBE-FORWARD {shlex.quote(line)}" in a.rollback.command
        assert shlex.quote(line) in a.precondition.command


def test_foreign_rule_not_rendered_exactly_is_not_deleted():
    """A foreign rule nft_rule_statement cannot render (a `ct mark set`, NetBird's real rule moved
    into kube-proxy's chain) and no `nft -a list table` text: no deletion is planned (the old
    code planned one whose rollback and precondition carried the readable, non-nft form)."""
    doc = json.loads((DATA / "k3s-pi-nft-netbird-tables-excerpt.nft.json").read_text())
    items = doc["nftables"]
    ours = [i for i in items if "rule" in i and i["rule"]["handle"] == 16]
    assert ours and "mangle" in json.dumps(ours[0]["rule"]["expr"])
    rule = dict(ours[0]["rule"], family="ip", table="filter", chain="KUBE-FORWARD", handle=7)
    new = [items[0], {"table": {"family": "ip", "name": "filter", "handle": 1}},
           {"chain": {"family": "ip", "table": "filter", "name": "KUBE-FORWARD", "handle": 1}},
           {"rule": rule}]
    rs = P.parse_nft_json(json.dumps({"nftables": new}))
    assert len(rs.rules) == 1 and P.nft_rule_statement(rs.rules[0]) is None
    x, plan = _foreign_plan(rs)
    assert [r.handle for r in x.data.foreign_rules] == [7]
    assert not [a for a in plan.actions if "nft delete rule" in a.command]
    assert any("not planned" in n and "handle 7" in n for n in plan.notes)


def _same_rule(a: dict[str, Any]) -> str:
    """A rule's expressions, counters zeroed, ct state flags in bit order (nft -j's own)."""
    expr = json.loads(json.dumps(a["expr"]))
    for e in expr:
        if "counter" in e:
            e["counter"] = {"packets": 0, "bytes": 0}
    return json.dumps([a["family"], a["table"], a["chain"], expr, a.get("comment")], sort_keys=True)


@pytest.mark.lab
def test_rendered_rules_are_taken_back_by_the_real_nft(tmp_path):
    """The real nft, in a network namespace made for the test: each real listing is loaded, its
    chains emptied, and every rule nft_rule_statement renders is re-added with the iptables step's
    own rollback command (`nft add rule FAMILY TABLE CHAIN <text>`): nft takes each one and lists
    the same rule (same JSON expressions) as before."""
    from fix_helpers import del_netns, new_netns, ns

    # + Alpine's default ruleset file: `ct state { established, related }` (an anonymous set)
    # next to `ct state invalid` (flags)
    both = {**LISTINGS, "alpine-aports-nftables.nft": "alpine-aports-nftables.nft.json"}
    for listing, js in both.items():
        rs = P.parse_nft_json((DATA / js).read_text())
        want = [r for r in json.loads((DATA / js).read_text())["nftables"] if "rule" in r]
        name = new_netns()
        try:
            src = (DATA / listing).read_text()
            if not re.search(r"^table ", src, re.M):  # a chain excerpt: in its table (as derived)
                src = "table ip filter {\n" + src + "}\n"
            (tmp_path / listing).write_text(src)
            ns(name, f"nft -f {shlex.quote(str(tmp_path / listing))}")
            for fam, tab, ch in dict.fromkeys((r.family, r.table, r.chain) for r in rs.rules):
                ns(name, f"nft flush chain {fam} {tab} {shlex.quote(ch)}")
            readded = []
            for r, w in zip(rs.rules, want, strict=True):
                text = P.nft_rule_statement(r)
                if text is None:
                    continue
                ns(name, f"nft add rule {shlex.quote(r.family)} {shlex.quote(r.table)} "
                         f"{shlex.quote(r.chain)} {shlex.quote(text)}")
                readded.append(w["rule"])
            got = [r["rule"] for r in json.loads(ns(name, "nft -j list ruleset"))["nftables"]
                   if "rule" in r]
            assert [_same_rule(x) for x in got] == [_same_rule(x) for x in readded]
        finally:
            del_netns(name)


# the pod accepts in a chain the forward chain jumps to unconditionally (SYNTHESISED, the real nft:
# `nft -f` of this text in an empty network namespace, then `nft -j list ruleset`, nftables 1.0.6)
JUMP_TO_POD_ACCEPTS = """table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		jump forward-pods
	}
	chain forward-pods {
		ip saddr 10.244.0.0/16 accept
		ip daddr 10.244.0.0/16 accept
	}
}
"""
JUMP_TO_POD_ACCEPTS_JSON = (
    '{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schem'
    'a_version":1}},{"table":{"family":"inet","name":"filter","handle":1}},{"chain":{"family"'
    ':"inet","table":"filter","name":"forward","handle":1,"type":"filter","hook":"forward","p'
    'rio":0,"policy":"drop"}},{"chain":{"family":"inet","table":"filter","name":"forward-pods'
    '","handle":2}},{"rule":{"family":"inet","table":"filter","chain":"forward","handle":3,"e'
    'xpr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established","related"'
    ']}},{"accept":null}]}},{"rule":{"family":"inet","table":"filter","chain":"forward","hand'
    'le":4,"expr":[{"jump":{"target":"forward-pods"}}]}},{"rule":{"family":"inet","table":"fi'
    'lter","chain":"forward-pods","handle":5,"expr":[{"match":{"op":"==","left":{"payload":{"'
    'protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"a'
    'ccept":null}]}},{"rule":{"family":"inet","table":"filter","chain":"forward-pods","handle'
    '":6,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"ri'
    'ght":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"accept":null}]}}]}'
)


def test_nft_forward_drop_follows_an_unconditional_jump():
    """Old code: only the base chain's own rules were read, so accepts for the pod network in a
    chain it jumps to were missed (FORWARD_DROP on a healthy node, accepts planned); a
    conditional jump is not followed (its accepts see only part of the traffic)."""
    rs = P.parse_nft_json(JUMP_TO_POD_ACCEPTS_JSON)
    assert not rs.errors and len(rs.rules) == 4
    assert _forward_drop(rs) == []
    doc = json.loads(JUMP_TO_POD_ACCEPTS_JSON)
    for i in doc["nftables"]:
        if "rule" in i and any("jump" in e for e in i["rule"]["expr"]):
            i["rule"]["expr"].insert(0, {"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                                   "right": "cni0"}})
    (x,) = _forward_drop(P.parse_nft_json(json.dumps(doc)))
    assert x.code == "FORWARD_DROP"


# calico's nftables dataplane as felix lays it out (projectcalico/calico felix/nftables/table.go:
# one `table ip calico` per family, base chains filter-INPUT/filter-FORWARD/..., every chain of a
# layer named <layer>-<iptables name>: filter-cali-INPUT, filter-cali-fh-<iface> for a host
# endpoint's policy); SYNTHESISED with that layout (no public listing of one was found), the JSON
# printed by the real `nft -j list ruleset` (nftables v1.0.6) after `nft -f` of it
CALICO_NFT_JSON = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "calico", "handle": 1}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-cali-INPUT", "handle": 2}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-cali-from-host-endpoint", "handle": 3}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-cali-fh-eth0", "handle": 4}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-FORWARD", "handle": 5, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "calico", "name": "filter-cali-FORWARD", "handle": 6}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-INPUT", "handle": 7, "expr": [{"jump": {"target": "filter-cali-INPUT"}}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-cali-INPUT", "handle": 8, "expr": [{"jump": {"target": "filter-cali-from-host-endpoint"}}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-cali-from-host-endpoint", "handle": 9, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"goto": {"target": "filter-cali-fh-eth0"}}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-cali-fh-eth0", "handle": 10, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 65536]}, "right": 65536}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-cali-fh-eth0", "handle": 11, "expr": [{"drop": null}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-FORWARD", "handle": 12, "expr": [{"jump": {"target": "filter-cali-FORWARD"}}]}}, {"rule": {"family": "ip", "table": "calico", "chain": "filter-cali-FORWARD", "handle": 13, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"drop": null}]}}]}'


def test_calico_nftables_dataplane_table_is_calicos_own():
    """A host endpoint policy's drop in calico's own nft table is calico's verdict, as its
    cali-* chains' drops are in iptables mode: no FIREWALL_* finding, nothing planned in felix's
    table (which felix rewrites). Old code: FIREWALL_REJECT on filter-cali-fh-eth0's drop and an
    accept inserted into calico's chain."""
    from test_realworld import _ds, _snapshot, _with_shape, facts_with

    from clusterfix_tui.core.checks import firewall

    rs = P.parse_nft_json(CALICO_NFT_JSON)
    assert not rs.errors and ("ip", "calico") in rs.tables
    f = facts_with(nft_ruleset=rs, addrs=[{"ifname": "eth0", "addr_info": [
        {"family": "inet", "local": "10.0.0.11", "prefixlen": 24}]}])
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "192.168.0.0/24", "10.0.0.11"),
                             ("node-b", "192.168.1.0/24", "10.0.0.12"))]
    snap = _with_shape(_snapshot(nodes, (_ds("calico-system", "calico-node", ["calico"]),)),
                       {"node-a": f})
    assert snap.shape.cni == "calico"
    assert firewall.check(snap, {"node-a": f}) == []
