"""Real node outputs, sixth pass: what the old tools, kube-router, cilium and calico nodes print,
through the parsers, the netfilter map (core/netfilter_map.py) and the checks. The samples live
in tests/data/realworld/ (README.md and samples.json say where each comes from)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks.iptables import NOT_KUBE_PROXY_PREFIXES
from clusterfix_tui.core.netfilter_map import guess_owner, netfilter_map
from tests.test_realworld import text

# -- the netfilter map --------------------------------------------------------------------------


def _map(**kw):
    facts = dict(nft_ruleset=None, legacy=None, ip6_legacy=None, plain_save=None, plain_save6=None,
                 iptables_version=None)
    facts.update(kw)
    return netfilter_map(SimpleNamespace(**facts))


@pytest.mark.parametrize("name, version, table, policy, owner", [
    # CentOS 7: iptables 1.4.21, one `iptables-save` (no -legacy/-nft variants)
    ("centos7-binary-k8s-ipvs-docker-filter.save", None, "filter", "drop", "kube-proxy"),
    # Ubuntu 18.04-era iptables 1.6.0 (weave on kubeadm 1.11)
    ("weave-kubeadm-1.11-iptables-1.6.0-filter.save", None, "filter", "accept", "kube-proxy"),
    # the same text from an iptables 1.8 built with one backend that says legacy
    ("kube-router-1069-filter.save", "iptables v1.8.2", "filter", "drop", "docker"),
])
def test_plain_iptables_save_is_in_the_map(name, version, table, policy, owner):
    """An iptables without -legacy/-nft variants (iptables < 1.8: CentOS 7, Ubuntu 18.04) is read
    as the facts' plain_save: its tables are in the map, as legacy (old code: the map of such a
    node was empty, as if nothing filtered its traffic)."""
    save = P.parse_iptables_save(text(name))
    m = _map(plain_save=save, iptables_version=P.parse_iptables_version(version or ""))
    (e,) = [e for e in m if e["table"] == table]
    assert (e["backend"], e["family"], e["owner"]) == ("iptables-legacy", "ip", owner)
    assert {c["chain"]: c["policy"] for c in e["chains"]}["FORWARD"] == policy
    assert e["rules"] == len(save.tables[table].rules) > 0
    # the ip6tables-save of such a node, too (CentOS iptables-services)
    six = P.parse_iptables_save(text("centos-iptables-services-ip6tables.save"))
    (e6,) = _map(plain_save6=six)
    assert (e6["backend"], e6["family"], e6["table"]) == ("iptables-legacy", "ip6", "filter")


def test_plain_save_of_nf_tables_is_not_listed_twice():
    """A plain `iptables-save` whose header says nf_tables (k3s-pi's, iptables 1.8.10) shows the
    nft ruleset's own ip tables: listed once, from the ruleset when that was read; from the save,
    as iptables-nft, when it was not."""
    save = P.parse_iptables_save(text("k3s-pi-netpol-iptables-nft-excerpt.save"))
    assert {e["backend"] for e in _map(plain_save=save)} == {"iptables-nft"}
    empty = P.parse_nft_json('{"nftables": [{"metainfo": {"version": "1.0.9"}}]}')
    assert _map(plain_save=save, nft_ruleset=empty) == []


def test_kube_router_chains_are_not_kube_proxys():
    """kube-router's policy chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* and its rules'
    'KUBE-ROUTER rule ...' / 'kube-router netpol' comments) of the real k3s sample (kube-router
    netpol embedded in k3s) are kube-router's (old code: kube-proxy's, by their KUBE- prefix)."""
    save = P.parse_iptables_save(text("k3s-pi-netpol-iptables-nft-excerpt.save"))
    t = save.tables["filter"]
    theirs = [c for c in t.chains if c.startswith(NOT_KUBE_PROXY_PREFIXES)]
    comments = [r.opt("--comment") for r in t.rules
                if "kube-router" in (r.opt("--comment") or "").lower()]
    assert len(theirs) == 15 and comments
    assert guess_owner(theirs) == "kube-router"
    assert {guess_owner([c]) for c in comments} == {"kube-router"}
    # kube-proxy's own chains stay kube-proxy's
    assert guess_owner(["KUBE-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS"]) == "kube-proxy"
    (e,) = [e for e in _map(plain_save=save) if e["table"] == "filter"]
    assert e["owner"] == "kube-router"
