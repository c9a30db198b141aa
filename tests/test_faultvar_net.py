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


# -- drops in raw / mangle (before the filter table is asked) ----------------------------------------
# kubeadm lab (iptables-nft); injected by hand:
#   node-1: iptables-nft -t mangle -A PREROUTING -p tcp --dport 30000:32767 -j DROP   (NodePorts dead)
#   node-2: iptables-nft -t raw -A PREROUTING -p tcp --dport 10250 -j DROP            (kubelet dead),
#           plus firewalld's reverse-path drop `-t raw -A PREROUTING -m rpfilter --invert -j DROP`
#           in iptables-legacy and ip6tables-legacy (healthy: cluster traffic passes the test)
#   node-3: iptables-legacy -t raw -A PREROUTING -p udp --dport 8472 -j DROP            (VXLAN dead)
# The old code walked the filter table only: node-1 and node-2 had no finding at all, node-3's
# VXLAN drop was blamed on "outside the nodes" (a security group).


@pytest.fixture(scope="module")
def early():
    return _replay("raw-mangle-drops")


def test_raw_and_mangle_drops_are_firewall_findings(early) -> None:
    assert _codes(early) == [("FIREWALL_REJECT", "node-1"), ("FIREWALL_REJECT", "node-2"),
                             ("FIREWALL_REJECT", "node-3")]
    by = {f.node: f for f in early.findings}
    where = {n: {(r["backend"], r["table"], r["chain"], r["rule"]) for r in f.data.rules}
             for n, f in by.items()}
    assert where["node-1"] == {("nft", "mangle", "PREROUTING",
                                "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP")}
    assert where["node-3"] == {("legacy", "raw", "PREROUTING",
                                "-A PREROUTING -p udp -m udp --dport 8472 -j DROP")}
    # iptables-nft's raw table is read from the nft ruleset (no iptables-nft-save -t raw)
    assert [(b, t, c) for b, t, c, _ in where["node-2"]] == [("nft", "raw", "PREROUTING")]
    assert "vxlan-in" in by["node-3"].data.flows and "kubelet" in by["node-2"].data.flows
    # the rpfilter drop is not one (node-2's only rule is the tcp/10250 one)
    assert not any("rpfilter" in r for *_, r in where["node-2"])


def test_raw_and_mangle_accepts_go_right_before_the_drop(early) -> None:
    acts = {a.target: [] for a in _actions(early, "host_network")}
    for a in _actions(early, "host_network"):
        acts[a.target].append(a)
    assert sorted(acts) == ["node-1", "node-3"]  # node-2: nft raw, report-only
    n1 = acts["node-1"]
    assert all(" -t mangle " in a.command and "CFX_RULE='-A PREROUTING -p tcp -m tcp --dport "
               "30000:32767 -j DROP'" in a.command for a in n1)
    # what the drop drops, narrowed to the flow: never wider than the drop rule
    assert any("-I PREROUTING \"$n\" -p tcp -m tcp --dport 30000:32767 -s 10.244.0.0/16 -m comment "
               "--comment 'clusterfix: pods-forward' -j ACCEPT" in a.command for a in n1)
    assert all(a.rollback.command.startswith("iptables-nft -w 5 -t mangle -D PREROUTING -p tcp")
               for a in n1)
    n3 = acts["node-3"]
    assert any(a.command.startswith("iptables-legacy -w 5 -t raw -C PREROUTING -p udp -m udp "
                                    "--dport 8472 -m comment --comment 'clusterfix: vxlan-in' -j ACCEPT")
               for a in n3)
    notes = get_step("host_network").plan(early).notes
    assert any("node-2: iptables-nft's raw table drops cluster traffic" in n for n in notes)
    # no accept in filter for a drop that happens before filter
    assert not any(" -t filter " in a.command for a in (*n1, *n3))


def _table(text: str):
    from clusterfix_tui.core.parsers import parse_iptables_save
    return parse_iptables_save(text)


def _flow(name: str):
    from clusterfix_tui.core.checks.firewall_path import Flow
    if name == "pods-forward":
        return Flow("pods-forward", "forward", "ip", "pods", None, None, ("10.244.0.0/16",),
                    ("10.213.0.0/24", "10.244.0.0/16"), ("cni0",), ("eth0",), accept_on="saddr")
    return Flow("nodeport", "input", "ip", "NodePorts", "tcp", (30000, 32767), ("10.213.0.0/24",),
                ("10.213.0.12/32",), ("eth0",), None)


def test_an_accept_of_the_drop_narrowed_to_the_flow_covers_it() -> None:
    from clusterfix_tui.core.checks.firewall_path import evaluate_iptables
    drop = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP\n"
    t = _table("*mangle\n:PREROUTING ACCEPT [0:0]\n"
               "-A PREROUTING -s 10.244.0.0/16 -p tcp -m tcp --dport 30000:32767 -m comment "
               "--comment \"clusterfix: pods-forward\" -j ACCEPT\n" + drop + "COMMIT\n").table("mangle")
    assert evaluate_iptables(t, "PREROUTING", _flow("pods-forward")) is None
    # the nodeport flow is not covered by that accept (its sources are not all pods)
    assert evaluate_iptables(t, "PREROUTING", _flow("nodeport")) is not None
    # an accept narrower than the flow on another test does not cover
    t2 = _table("*mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -s 10.244.1.0/24 -p tcp -m tcp "
                "--dport 30000:32767 -j ACCEPT\n" + drop + "COMMIT\n").table("mangle")
    assert evaluate_iptables(t2, "PREROUTING", _flow("pods-forward")) is not None


def test_rpfilter_invert_drop_is_not_a_cluster_drop() -> None:
    from clusterfix_tui.core.checks.firewall_path import evaluate_iptables
    t = _table("*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m rpfilter --invert -j DROP\n"
               "COMMIT\n").table("raw")
    assert evaluate_iptables(t, "PREROUTING", _flow("nodeport")) is None


# -- dual stack: ip6tables and an inet table ----------------------------------------------------------
# kubeadm lab, --ip-family dual; injected by hand:
#   node-3: ip6tables-nft -P FORWARD DROP; ip6tables-nft -A INPUT -p udp --dport 8472 -j REJECT
#           --reject-with icmp6-adm-prohibited   (flannel-v6.1's VXLAN runs over IPv6: IPv6 pod
#           traffic into node-3 dies)
#   node-2: table inet filter { input: tcp dport 10250 reject with icmpx type admin-prohibited;
#           forward: ip6 daddr fd00:10:244::/56 drop }
# The old code had no IPv6 VXLAN flow (its VXLAN flows were the InternalIP's family only): the
# ip6tables REJECT of udp/8472 was no finding.


@pytest.fixture(scope="module")
def dual():
    return _replay("dual-v6-netfilter")


def test_ipv6_vxlan_reject_is_a_firewall_finding(dual) -> None:
    fw = {f.node: f for f in dual.findings if f.code == "FIREWALL_REJECT"}
    assert sorted(fw) == ["node-2", "node-3"]
    assert fw["node-3"].data.flows == ["vxlan6-in"]
    assert [r["rule"] for r in fw["node-3"].data.rules] == [
        "-A INPUT -p udp -m udp --dport 8472 -j REJECT --reject-with icmp6-adm-prohibited"]
    flow = fw["node-3"].data.rules[0]["flows"][0]
    assert flow["family"] == "ip6" and flow["saddrs"] == ["fd00:213:193::11/128", "fd00:213:193::12/128"]
    acts = [a for a in _actions(dual, "host_network") if a.target == "node-3"]
    assert [a.command.split(" || ")[0] for a in acts] == [
        "ip6tables-nft -w 5 -t filter -C INPUT -p udp -m udp --dport 8472 -m comment --comment "
        "'clusterfix: vxlan6-in' -j ACCEPT 2>/dev/null"]


def test_dual_stack_forward_drop_and_inet_table_keep_their_findings(dual) -> None:
    fd = [f for f in dual.findings if f.code == "FORWARD_DROP"]
    assert [(f.node, f.data.ip_version, f.data.binary) for f in fd] == [("node-3", 6, "ip6tables-nft")]
    fw = {f.node: f for f in dual.findings if f.code == "FIREWALL_REJECT"}
    assert sorted(fw["node-2"].data.flows) == ["kubelet", "pods-forward", "to-pods-forward"]
    assert {r["backend"] for r in fw["node-2"].data.rules} == {"nft-native"}


# -- a raw nft rule in kube-proxy's ip6 nat chain -----------------------------------------------------
# kubeadm lab, --ip-family dual; injected by hand on node-2: `nft add rule ip6 nat KUBE-SERVICES ct
# state new counter` (ip6tables-nft-save -t nat: "# Table `nat' is incompatible"; kube-proxy's IPv6
# proxier fails on it). node-1 also has `nft add rule ip nat KUBE-NODEPORTS tcp dport 30096 limit
# rate 10/second counter`, which iptables-nft 1.8.9 reads back (-m limit): no finding.
# The old code tested the IPv4 chains only: no finding on node-2.


def test_foreign_nft_rule_in_ip6_nat_is_deleted_by_handle() -> None:
    d = _replay("dual-ip6-foreign-nft")
    ic = [f for f in d.findings if f.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN"]
    assert [f.node for f in ic] == ["node-2"]
    data = ic[0].data
    assert data.cause == "foreign-nft-rule"
    assert [(r.family, r.table, r.chain, r.text) for r in data.foreign_rules] == [
        ("ip6", "nat", "KUBE-SERVICES", "ct state new counter")]
    cmds = [a.command for a in _actions(d, "iptables") if a.target == "node-2"]
    assert any(c.startswith("nft delete rule ip6 nat KUBE-SERVICES handle ") for c in cmds)
    assert not any("update-alternatives" in c for c in cmds)


# -- calico: the real pod network, calico's policy accept, its policy chains --------------------------
# calico lab (pod network 192.168.0.0/16 from kube-proxy's clusterCIDR); injected by hand:
#   node-1: kube-proxy-jump-gone (catalog) and `iptables-nft -A FORWARD -j REJECT --reject-with
#           icmp-host-prohibited` AFTER felix's "Policy explicitly accepted packet." mark ACCEPT
#           (healthy: calico accepts the pod traffic its policy allows before it; measured)
#   node-2: `iptables-nft -I FORWARD 1 -d 192.168.0.0/16 -j REJECT` (before calico's cali-FORWARD)
#   node-3: mangle-nodeport-drop (catalog)
# The old code walked calico's forwarded pod flows with flannel's default 10.244.0.0/16: node-2's
# REJECT of the real pod network was no finding, node-1's trailing REJECT was one (calico's mark
# ACCEPT not understood), and the accepts it planned opened 10.244.0.0/16.


@pytest.fixture(scope="module")
def calico():
    return _replay("calico-netfilter")


def test_calico_pod_network_and_policy_accept(calico) -> None:
    assert _codes(calico) == [("FIREWALL_REJECT", "node-2"), ("FIREWALL_REJECT", "node-3"),
                              ("KUBE_PROXY_NO_RULES", "node-1")]
    by = {f.node: f for f in calico.findings if f.code == "FIREWALL_REJECT"}
    assert sorted(by["node-2"].data.flows) == ["pods-forward", "to-pods-forward"]
    flows = by["node-2"].data.rules[0]["flows"]
    assert {tuple(x["saddrs"] or ()) for x in flows if x["name"] == "pods-forward"} == {
        ("192.168.0.0/16",)}
    acts = _actions(calico, "host_network")
    # mangle accepts narrowed to calico's pod network, never flannel's default
    assert any("-s 192.168.0.0/16" in a.command for a in acts if a.target == "node-3")
    assert not any("10.244.0.0/16" in a.command for a in acts)


def test_no_accept_ahead_of_calicos_policy_chains(calico) -> None:
    f = next(f for f in calico.findings if f.code == "FIREWALL_REJECT" and f.node == "node-2")
    assert f.data.accepts == []
    assert any("network policy chains (cali-FORWARD)" in e for e in f.evidence)
    plan = get_step("host_network").plan(calico)
    assert not [a for a in plan.actions if a.target == "node-2" and not a.opt_in]
    assert [a for a in plan.actions if a.target == "node-2" and a.opt_in]  # delete it: opt-in


def test_nat_gaps_of_a_whole_kube_proxy_table() -> None:
    """kube-proxy's nat table as iptables-save prints it (the lab's, which is kube-proxy's layout):
    whole, nothing is missing; each link removed is named."""
    from clusterfix_tui.core.checks.iptables import _nat_gaps
    from clusterfix_tui.core.parsers import parse_iptables_save
    from clusterfix_tui.core.snapshot import ClusterSnapshot

    d = _replay("kube-proxy-nat-gaps")
    whole = d.facts["node-2"].nft_nat.table("nat")  # node-2: only its KUBE-NODEPORTS was flushed
    snap = ClusterSnapshot()  # no NodePort service: the per-port check is not made
    assert _nat_gaps(snap, whole, 4) == []
    text = "\n".join(["*nat", *(f":{c} {p or '-'} [0:0]" for c, p in whole.chains.items()),
                      *(r.spec for r in whole.rules if r.chain != "KUBE-MARK-MASQ"), "COMMIT", ""])
    no_mark = parse_iptables_save(text).table("nat")
    assert _nat_gaps(snap, no_mark, 4) == ["-A KUBE-MARK-MASQ -j MARK"]


def test_a_foreign_verdict_in_kube_proxys_service_chains_is_a_gap() -> None:
    """`iptables -t nat -I KUBE-NODEPORTS -p tcp --dport 30096 -j RETURN`: the NodePort skips
    kube-proxy's DNAT; kube-proxy's next sync (its restart) flushes and rewrites the chain."""
    from clusterfix_tui.core.checks.iptables import _nat_gaps
    from clusterfix_tui.core.parsers import parse_iptables_save
    from clusterfix_tui.core.snapshot import ClusterSnapshot

    d = _replay("kube-proxy-nat-gaps")
    whole = d.facts["node-2"].nft_nat.table("nat")
    ret = "-A KUBE-NODEPORTS -p tcp -m tcp --dport 30096 -j RETURN"
    lines = [f":{c} {p or '-'} [0:0]" for c, p in whole.chains.items()]
    text = "\n".join(["*nat", *lines, ret, *(r.spec for r in whole.rules), "COMMIT", ""])
    t = parse_iptables_save(text).table("nat")
    assert _nat_gaps(ClusterSnapshot(), t, 4) == [f"foreign {ret}"]
    # kube-proxy's own RETURN (KUBE-POSTROUTING's unmarked packets) is not one
    assert any(r.target == "RETURN" and r.chain == "KUBE-POSTROUTING" for r in whole.rules)
