"""Firewall REJECT rules that make clients and probes see "no route to host"."""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core.checks._common import backend_saves, reachable_chains, save_label
from clusterfix_tui.core.checks.iptables import IPTABLES_NFT_TABLES
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding

REF = "https://github.com/kubernetes/kubernetes/issues/101828"
# ICMP types that a client sees as EHOSTUNREACH ("no route to host") or ENETUNREACH
HOST_UNREACH = {"icmp-host-prohibited", "icmp-host-unreachable", "icmp-net-prohibited",
                "icmp-net-unreachable", "icmp-admin-prohibited", "host-prohib", "host-prohibited",
                "admin-prohibited", "net-prohibited", "host-unreachable", "net-unreachable"}


def check(snapshot: Any, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    for node, f in sorted(facts_by_node.items()):
        rules: list[dict[str, Any]] = []
        evidence: list[str] = []
        for backend, save in backend_saves(f).items():
            t = save.table("filter") if save is not None else None
            if t is None:
                continue
            reach = reachable_chains(t, ("INPUT", "FORWARD"))
            for r in t.rules:
                if r.chain in reach and r.target == "REJECT" and \
                        (r.opt("--reject-with") or "") in HOST_UNREACH:
                    rules.append({"backend": backend, "table": "filter", "chain": r.chain,
                                  "rule": r.spec})
                    evidence.append(f"{save_label(backend, 'filter')}: {r.spec}")
        rs = f.nft_ruleset
        if rs is not None:
            hooked = {(c.family, c.table, c.name) for c in rs.chains if c.hook in ("input", "forward")}
            for nr in rs.rules:
                if nr.family in ("ip", "ip6") and nr.table in IPTABLES_NFT_TABLES:
                    continue
                if (nr.family, nr.table, nr.chain) not in hooked:
                    continue
                for e in nr.expr:
                    rej = e.get("reject") if isinstance(e, dict) else None
                    if isinstance(rej, dict) and str(rej.get("expr", "")) in HOST_UNREACH:
                        text = nr.render()
                        rules.append({"backend": "nft-native", "family": nr.family,
                                      "table": nr.table, "chain": nr.chain, "handle": nr.handle,
                                      "text": text, "rule": text})
                        evidence.append(f"nft list ruleset: {text}")
        if rules:
            out.append(Finding(
                code="FIREWALL_REJECT", severity="error", node=node,
                title="a firewall REJECT rule answers 'no route to host'",
                evidence=tuple(evidence),
                explanation=("A firewalld-style REJECT --reject-with icmp-host-prohibited in the "
                             "INPUT/FORWARD path answers with ICMP host-prohibited: clients and "
                             "kubelet probes see 'no route to host' although routes are fine. "
                             "Remove the rule (or open the Kubernetes ports/pod network)."),
                reference=REF, step="host_network", data={"rules": rules},
            ))
    return out
