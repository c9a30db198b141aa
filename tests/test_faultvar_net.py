"""Netfilter fault variants recorded on the lab (tests/data/faultvar/*.tgz: `clusterfix-tui bundle`
of a lab with the variant injected by hand), replayed offline: the finding, its evidence and the
plan built from it. Each bundle says in its test what was injected."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterfix_tui.core import bundle as B
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.transports.replay import ReplayAPI, ReplayShells

DATA = Path(__file__).parent / "data" / "faultvar"


def _replay(name: str):
    b = B.read(DATA / f"{name}.tgz")
    return diagnose(ReplayAPI(b), ReplayShells(b))


def _codes(d) -> list[tuple[str, str]]:
    return sorted((f.code, f.node) for f in d.findings)


def _actions(d, step: str) -> list:
    return [a for a in get_step(step).plan(d).actions if not a.opt_in]


# -- kube-proxy's nat rules partly gone while kube-proxy runs ---------------------------------------
# kubeadm lab, kube-proxy on iptables-nft; injected by hand:
#   node-3: iptables-nft -t nat -D PREROUTING ... -j KUBE-SERVICES   (NodePort 30096 on node-3 dead)
#   node-2: iptables-nft -t nat -F KUBE-NODEPORTS                     (NodePort 30096 on node-2 dead)
#   node-1: iptables-nft -t nat -D KUBE-POSTROUTING ... -j MASQUERADE --random-fully, and
#           iptables-nft -t nat -D OUTPUT ... -j KUBE-SERVICES
# The chains all stay, so the old check (chains KUBE-SERVICES/KUBE-NODEPORTS present) was silent.


@pytest.fixture(scope="module")
def nat_gaps():
    return _replay("kube-proxy-nat-gaps")


def test_missing_nat_jumps_are_kube_proxy_no_rules(nat_gaps) -> None:
    assert _codes(nat_gaps) == [("KUBE_PROXY_NO_RULES", "node-1"), ("KUBE_PROXY_NO_RULES", "node-2"),
                                ("KUBE_PROXY_NO_RULES", "node-3")]
    by = {f.node: f for f in nat_gaps.findings}
    assert by["node-3"].data.missing_chains == ["-A PREROUTING -j KUBE-SERVICES"]
    assert by["node-2"].data.missing_chains == ["-A KUBE-NODEPORTS --dport 30096 (media/jellyfin)"]
    assert by["node-1"].data.missing_chains == ["-A OUTPUT -j KUBE-SERVICES",
                                                "-A KUBE-POSTROUTING -j MASQUERADE"]
    assert "iptables-nft-save -t nat: no -A PREROUTING -j KUBE-SERVICES" in by["node-3"].evidence


def test_missing_nat_jumps_restart_kube_proxy(nat_gaps) -> None:
    acts = _actions(nat_gaps, "pods")
    # three nodes: the DaemonSet's pods are restarted (a restart is kube-proxy's full sync)
    assert [a.api for a in acts] == [{"verb": "restart_daemonset", "namespace": "kube-system",
                                      "name": "kube-proxy"}]
    # nothing in iptables is touched for it (kube-proxy owns those rules)
    assert not [a for a in _actions(nat_gaps, "iptables")]
    assert not [a for a in _actions(nat_gaps, "host_network")]
