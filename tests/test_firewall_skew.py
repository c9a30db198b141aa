"""Issue 13, item 5: an iptables version skew is recognised from the save output itself and from
every form of the incompatibility message; the finding names both iptables versions and the
repair recommends aligning versions, never switching backends. Save lines are the forms quoted in
kubernetes/kubernetes#95409 / #94754 ([unsupported revision]) and #114537 (mangled DNAT)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import iptables
from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.snapshot import ClusterSnapshot, PodInfo

NAT_HEAD = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-AAA - [0:0]\n"
            "-A PREROUTING -j KUBE-SERVICES\n"
            "-A KUBE-SEP-AAA -s 10.99.99.27/32 -j KUBE-MARK-MASQ\n")
SKEWED = {
    "unsupported-revision": "-A KUBE-SEP-AAA -p tcp -m tcp -j DNAT [unsupported revision]",
    "unsupported-revision-comment": ('-A KUBE-SEP-AAA -p tcp -m comment --comment '
                                     '"default/kubernetes:https" -m tcp -j DNAT [unsupported revision]'),
    "mangled-dnat": ('-A KUBE-SEP-AAA -p tcp -m comment --comment "ns/svc:http" -m tcp -j DNAT '
                     '--to-destination :0 --persistent --to-destination :0 --persistent '
                     '--to-destination 0.0.0.0:0'),
}


def _facts(nat_rule: str) -> NodeFacts:
    text = NAT_HEAD + nat_rule + "\nCOMMIT\n"
    return NodeFacts(node="node-1", complete=True,
                     sections={"nft_save_nat": Section("nft_save_nat", None, text, "", 0)},
                     nft_nat=P.parse_iptables_save(text),
                     iptables_version=P.parse_iptables_version("iptables v1.8.4 (nf_tables)"))


def _kube_proxy(log: list[str]) -> ClusterSnapshot:
    pod = PodInfo("kube-system", "kube-proxy-x", "node-1", "Running", True, 0, None, None, None,
                  None, "kube-proxy", "10.0.0.1", {"k8s-app": "kube-proxy"}, tuple(log),
                  images=("registry.k8s.io/kube-proxy:v1.27.3",))
    return ClusterSnapshot(kube_proxy_pods={"node-1": [pod]})


@pytest.mark.parametrize("form", list(SKEWED))
def test_skew_from_the_save_output(form: str) -> None:
    snap = _kube_proxy(["I0101 server.go: Using iptables Proxier", "iptables v1.8.7 (nf_tables)"])
    (f,) = iptables.incompatible_chain(snap, "node-1", _facts(SKEWED[form]))
    assert f.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN"
    d = f.data
    assert d["cause"] == "version-skew" and d["source"] == "save-output"
    assert d["recommend_backend_switch"] is False
    assert d["host_iptables_version"] == "1.8.4" and d["kube_proxy_iptables_version"] == "1.8.7"
    assert d["kube_proxy_image"] == "registry.k8s.io/kube-proxy:v1.27.3"
    assert any(SKEWED[form] in e for e in f.evidence)
    assert "1.8.4" in f.title and "1.8.7" in f.title
    # the repair: report and recommend aligning versions; no action, no backend switch
    plan = get_step("iptables").plan(SimpleNamespace(findings=[f], facts={}, snapshot=snap))
    assert plan.actions == ()
    assert any("align the iptables versions" in n for n in plan.notes)
    assert not any("update-alternatives" in n or "legacy" in n.split("align")[0] for n in plan.notes)


def test_a_normal_dnat_is_not_a_skew() -> None:
    ok = "-A KUBE-SEP-AAA -p tcp -m tcp -j DNAT --to-destination 10.99.99.27:9153"
    assert iptables.incompatible_chain(_kube_proxy([]), "node-1", _facts(ok)) == []


@pytest.mark.parametrize("line", [
    "E0101 proxier.go: Failed to execute iptables-restore: exit status 1 (iptables v1.8.7 (nf_tables): "
    "chain `KUBE-SEP-X' in table `nat' is incompatible, use 'nft' tool.)",
    "iptables v1.8.9 (nf_tables): table `nat' is incompatible, use 'nft' tool.",
    "# Table `nat' is incompatible, use 'nft' tool.",
])
def test_every_form_of_the_incompatibility_message(line: str) -> None:
    snap = _kube_proxy([line])
    ok = "-A KUBE-SEP-AAA -p tcp -m tcp -j DNAT --to-destination 10.99.99.27:9153"
    (f,) = iptables.incompatible_chain(snap, "node-1", _facts(ok))
    assert f.data["cause"] in ("version-skew", "backend-mismatch")
    assert f.data["recommend_backend_switch"] is False
    assert any(line.strip() in e for e in f.evidence)
    assert any("host iptables 1.8.4" in e for e in f.evidence)
