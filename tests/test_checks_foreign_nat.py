"""A raw nft rule in one of kube-proxy's nat chains: deleted by handle (a foreign rule) even when
kube-proxy's own iptables version is not known (k3s's embedded kube-proxy logs none), as long as
its statements are ones kube-proxy never writes in the nat table (ct matches, log, limit,
reject); a statement kube-proxy may write natively through a newer iptables (its KUBE-FORWARD
conntrack matches, its KUBE-POSTROUTING masquerade) stays report-only without that version."""

from __future__ import annotations

from clusterfix_tui.core.checks.iptables import _maybe_newer_iptables
from clusterfix_tui.core.parsers import NftRule

CT_NEW = ({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
          {"counter": {"packets": 0, "bytes": 0}})
MASQ = ({"masquerade": {"flags": "random-fully"}},)


def _rule(table: str, chain: str, expr: tuple) -> NftRule:
    return NftRule("ip", table, chain, 27, expr)


def test_a_ct_match_in_a_kube_proxy_nat_chain_is_foreign_without_kube_proxys_version() -> None:
    r = _rule("nat", "KUBE-SEP-U2BV666ENZFNYNHG", CT_NEW)
    assert not _maybe_newer_iptables(r, r.chain, None, "1.8.9")
    assert not _maybe_newer_iptables(r, r.chain, None, None)


def test_what_kube_proxy_may_write_natively_stays_unsure_without_its_version() -> None:
    fwd = _rule("filter", "KUBE-FORWARD", CT_NEW)
    assert _maybe_newer_iptables(fwd, fwd.chain, None, "1.8.9")
    post = _rule("nat", "KUBE-POSTROUTING", MASQ)
    assert _maybe_newer_iptables(post, post.chain, None, "1.8.9")
    sep_masq = _rule("nat", "KUBE-SEP-X", MASQ)  # masquerade: kube-proxy's own statement
    assert _maybe_newer_iptables(sep_masq, sep_masq.chain, None, "1.8.9")
    # a chain that is not kube-proxy's: its writer is unknown
    other = _rule("nat", "CUSTOM-CHAIN", CT_NEW)
    assert _maybe_newer_iptables(other, other.chain, None, "1.8.9")


def test_known_versions_decide_as_before() -> None:
    fwd = _rule("filter", "KUBE-FORWARD", CT_NEW)
    assert _maybe_newer_iptables(fwd, fwd.chain, "1.8.10", "1.8.9")
    assert not _maybe_newer_iptables(fwd, fwd.chain, "1.8.9", "1.8.9")
