"""The opt-in deletions and policy flips of the host firewall fix never touch what another daemon
owns: docker's nft tables (`ip`/`ip6 docker-bridges`, docker 29+ with "firewall-backend":
"nftables"), firewalld's table, kube-proxy's, calico's and flannel's nft tables, and the iptables
chains docker, kube-proxy, the CNIs, ufw, fail2ban, libvirt, podman or firewalld build: each
rewrites them (restart, reload, every sync), so the change comes back or the daemon and the fix
fight. Old code: such a rule was offered for deletion (opt-in) like an admin's."""

from __future__ import annotations

import pytest
from fix_helpers import FakeDiagnosis, finding

from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.core.fixes.host_network import STEP as HOST

FRAG = '"handle": 17, "expr": [{"drop": null}]'


def _nft(table: str, chain: str, family: str = "ip", kind: str = "rule") -> dict:
    return {"backend": "nft-native", "family": family, "table": table, "chain": chain,
            "handle": 17, "kind": kind, "text": "oifname \"docker0\" drop", "json": FRAG}


def _ipt(chain: str, rule: str, backend: str = "nft") -> dict:
    return {"backend": backend, "table": "filter", "chain": chain, "kind": "rule", "rule": rule}


def _plan(rule: dict):
    return HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-1", "host_network",
                                            rules=[rule])]))


@pytest.mark.parametrize("rule, owner", [
    (_nft("docker-bridges", "filter-FORWARD"), "docker"),
    (_nft("docker-bridges", "filter-FORWARD", family="ip6"), "docker"),
    (_nft("docker-bridges", "filter-FORWARD", kind="policy"), "docker"),
    (_nft("firewalld", "filter_INPUT", family="inet"), "firewalld"),
    (_nft("kube-proxy", "filter-input"), "kube-proxy"),
    (_nft("calico", "filter-cali-INPUT"), "calico"),
    (_nft("flannel-ipv4", "forward"), "flannel"),
    (_ipt("DOCKER-ISOLATION-STAGE-2", "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP"), "docker"),
    (_ipt("ufw-user-input", "-A ufw-user-input -p udp --dport 8472 -j DROP", "legacy"), "ufw"),
    (_ipt("KUBE-FIREWALL", "-A KUBE-FIREWALL -j DROP"), "kube-proxy"),
])
def test_a_daemons_own_rule_is_never_deleted(rule: dict, owner: str) -> None:
    plan = _plan(rule)
    assert not [a for a in plan.actions if is_opt_in(a)], [a.command for a in plan.actions]
    assert any(f"{owner}" in n and "never deleted or changed here" in n for n in plan.notes), \
        plan.notes


@pytest.mark.parametrize("rule", [
    _nft("filter", "input", family="inet"),  # a hand-written table
    _ipt("DOCKER-USER", "-A DOCKER-USER -p udp --dport 8472 -j DROP"),  # the admin's chain
    _ipt("INPUT", "-A INPUT -p udp -m udp --dport 8472 -j DROP"),
])
def test_the_admins_rule_is_still_offered_as_an_opt_in(rule: dict) -> None:
    (a,) = _plan(rule).actions
    assert is_opt_in(a) and ("nft delete rule" in a.command or " -D " in a.command)
