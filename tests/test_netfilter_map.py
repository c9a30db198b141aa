"""core/netfilter_map.py: every table of every backend with owner, base chains and rule count,
in hook order (built from what diagnose already reads)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.netfilter_map import guess_owner, netfilter_map


def _nft(*items):
    return json.dumps({"nftables": [{"metainfo": {"version": "1.0.6"}}, *items]})


def _t(f, n):
    return {"table": {"family": f, "name": n, "handle": 1}}


def _c(f, t, n, hook=None, prio=None, policy=None, typ="filter"):
    c = {"family": f, "table": t, "name": n, "handle": 1}
    if hook:
        c.update(type=typ, hook=hook, prio=prio, policy=policy)
    return {"chain": c}


def _r(f, t, c, h, comment=None):
    r = {"family": f, "table": t, "chain": c, "handle": h, "expr": [{"accept": None}]}
    if comment:
        r["comment"] = comment
    return {"rule": r}


RULESET = _nft(
    _t("ip", "nat"), _c("ip", "nat", "PREROUTING", "prerouting", -100, "accept", "nat"),
    _c("ip", "nat", "KUBE-SERVICES"), _r("ip", "nat", "PREROUTING", 4),
    _r("ip", "nat", "KUBE-SERVICES", 5),
    _t("inet", "firewalld"), _c("inet", "firewalld", "filter_INPUT", "input", 10, "accept"),
    _r("inet", "firewalld", "filter_INPUT", 7),
    _t("inet", "vendorfw"), _c("inet", "vendorfw", "out", "output", 0, "accept"),
    _r("inet", "vendorfw", "out", 2),
    _t("ip", "filter"), _c("ip", "filter", "FORWARD", "forward", 0, "drop"),
    _c("ip", "filter", "FLANNEL-FWD"), _r("ip", "filter", "FLANNEL-FWD", 3, "flanneld forward"),
)
LEGACY = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
"""


def test_map_backends_owners_hooks_and_order():
    facts = SimpleNamespace(nft_ruleset=P.parse_nft_json(RULESET),
                            legacy=P.parse_iptables_save(LEGACY), ip6_legacy=None)
    m = netfilter_map(facts)
    by = {(e["backend"], e["family"], e["table"]): e for e in m}
    nat = by[("iptables-nft", "ip", "nat")]
    assert nat["owner"] == "kube-proxy" and nat["rules"] == 2 and nat["chain_count"] == 2
    assert nat["chains"] == [{"chain": "PREROUTING", "hook": "prerouting", "priority": -100,
                              "policy": "accept", "rules": 1}]
    assert by[("nft", "inet", "firewalld")]["owner"] == "firewalld"
    assert by[("nft", "inet", "vendorfw")]["owner"] == "unknown"
    assert by[("iptables-nft", "ip", "filter")]["owner"] == "flannel"
    legacy = by[("iptables-legacy", "ip", "filter")]
    assert {"chain": "FORWARD", "hook": "forward", "priority": 0, "policy": "drop",
            "rules": 0} in legacy["chains"]
    # an empty legacy table with ACCEPT policies filters nothing: left out
    assert ("iptables-legacy", "ip", "nat") not in by
    # in hook order: prerouting before input before forward before output
    order = [(e["backend"], e["table"]) for e in m]
    assert order.index(("iptables-nft", "nat")) < order.index(("nft", "firewalld"))
    # legacy filter's first hook is input at priority 0, firewalld's input chain is at 10
    assert order.index(("iptables-legacy", "filter")) < order.index(("nft", "firewalld"))
    assert order.index(("nft", "firewalld")) < order.index(("nft", "vendorfw"))


def test_owner_guess():
    assert guess_owner(["cfx_trace_ab12", "pre"]) == "clusterfix trace"
    assert guess_owner(["filter", "DOCKER-USER", "DOCKER"]) == "docker"
    assert guess_owner(["filter", "cali-FORWARD"]) == "calico"
    assert guess_owner(["mytable", "mychain"]) == "unknown"
    assert netfilter_map(SimpleNamespace(nft_ruleset=None, legacy=None, ip6_legacy=None)) == []
