"""Real node outputs, fourth pass: blocklist sets (crowdsec's nft sets, fail2ban's ipsets) in the
cluster's flow path. A drop of a set's addresses is blamed for a cluster flow only when the set is
read and holds cluster addresses; and no accept is planned at the top of a chain ahead of such a
drop (it would let the blocklisted addresses in)."""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import firewall
from clusterfix_tui.core.checks import firewall_path as fp
from clusterfix_tui.core.facts import NodeFacts
from tests.test_realworld import (
    BY_FILE,
    _Diag,
    _ds,
    _snapshot,
    _with_shape,
    facts_with,
    text,
)

IP_A, IP_B = "10.0.0.11", "10.0.0.12"


def _nodes() -> list[dict[str, Any]]:
    return [{"metadata": {"name": n}, "spec": {"podCIDR": c},
             "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
            for n, c, a in (("node-a", "10.244.0.0/24", IP_A), ("node-b", "10.244.1.0/24", IP_B))]


def _flannel_node(**kw: Any) -> tuple[Any, NodeFacts]:
    """SYNTHESISED: a two-node flannel cluster (10.244.0.0/16), node-a 10.0.0.11 on eth0."""
    f = facts_with(subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": IP_A,
                                                            "prefixlen": 24}]}], **kw)
    snap = _with_shape(_snapshot(_nodes(), (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                       {"node-a": f})
    return snap, f


def _plan(findings: list[Any], f: NodeFacts, snap: Any) -> tuple[Any, set[str]]:
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks, default_approved

    plan = get_step("host_network").plan(_Diag(findings, {"node-a": f}, snap))
    assert check_rollbacks(plan) == []
    return plan, set(default_approved(plan))


def _crowdsec(json_text: str) -> tuple[Any, NodeFacts, list[Any]]:
    rs = P.parse_nft_json(json_text)
    assert not rs.errors
    snap, f = _flannel_node(nft_ruleset=rs)
    return snap, f, firewall.check(snap, {"node-a": f})


def test_crowdsec_blocklist_set_is_read_and_not_blamed():
    """A host firewall keeping crowdsec's blocklists in its own input chain (policy drop; the
    sets' elements are in `nft -j`): the set holds no cluster address, so its drop is not blamed:
    the input policy drop is the finding, and no accept is planned at the top of the chain (it
    would run ahead of the blocklist); the evidence names the set. Old code: FIREWALL_REJECT on
    `ip saddr @crowdsec-blacklists drop` (a set lookup was 'part of every flow') and the
    default plan inserted the port accepts ahead of it."""
    s = BY_FILE["crowdsec-nft-inet-input-policy-drop.nft.json"]
    snap, f, xs = _crowdsec(text(s["file"]))
    assert [x.code for x in xs] == s["expect"]["findings"], [(x.code, x.evidence) for x in xs]
    (x,) = xs
    assert sorted(x.data.flows) == s["expect"]["flows"]
    assert x.data.accepts == []
    assert any("@crowdsec-blacklists" in ev and "no cluster address in it" in ev
               for ev in x.evidence), x.evidence
    plan, approved = _plan(xs, f, snap)
    assert not [a.command for a in plan.actions if a.id in approved
                and "nft insert rule" in a.command]
    assert ("inet", "yunpanel", "crowdsec-blacklists", ("198.51.100.10", "203.0.113.50")) in \
        f.nft_ruleset.sets


def test_crowdsec_blocklist_holding_a_peer_is_blamed():
    """The same ruleset with a peer node's address banned (SYNTHESISED: 203.0.113.50 replaced by
    node-b's 10.0.0.12): the set's drop now takes part of the cluster's flows from that peer: it
    is the finding (FIREWALL_REJECT), as any drop of cluster addresses."""
    s = BY_FILE["crowdsec-nft-inet-input-policy-drop.nft.json"]
    snap, f, xs = _crowdsec(text(s["file"]).replace("203.0.113.50", IP_B))
    rej = [x for x in xs if x.code == "FIREWALL_REJECT"]
    assert rej and any("ip saddr @crowdsec-blacklists drop" in r["rule"]
                       for r in rej[0].data.rules), [(x.code, x.evidence) for x in xs]


def _ipt_node(rules: list[str], policy: str = "DROP") -> tuple[Any, NodeFacts, list[Any]]:
    save = "\n".join(["*filter", f":INPUT {policy} [0:0]", ":FORWARD ACCEPT [0:0]",
                      ":OUTPUT ACCEPT [0:0]", *rules, "COMMIT", ""])
    snap, f = _flannel_node(
        plain_save=P.parse_iptables_save(save),
        iptables_version=P.parse_iptables_version("iptables v1.8.7 (legacy)"),
        binaries={"iptables": "/sbin/iptables", "iptables-save": "/sbin/iptables-save"})
    return snap, f, firewall.check(snap, {"node-a": f})


def _command_rule(name: str) -> str:
    """The quoted `iptables -I INPUT [1] ...` command as an iptables-save line."""
    words = text(name).split()
    k = words.index("-I")
    rest = words[k + 2:]
    if rest and rest[0].isdigit():
        rest = rest[1:]
    return "-A INPUT " + " ".join(rest)


def test_fail2ban_ipset_drop_is_not_blamed_and_nothing_goes_ahead_of_it():
    """fail2ban's ipset drop first in INPUT (its elements are not read: no ipset listing), INPUT
    policy DROP with ssh allowed (SYNTHESISED wrapper). Not blamed (old code: FIREWALL_REJECT on
    it, `-m set --match-set` being an unknown option, i.e. part of every flow); the policy is
    the finding and no ACCEPT is planned at the top of INPUT, ahead of the ban list."""
    for name in ("fail2ban-ipset-global-drop-command.txt",
                 "nixos-fail2ban-banned-whitelist-command.txt"):
        s = BY_FILE[name]
        snap, f, xs = _ipt_node([_command_rule(name), "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"])
        assert [x.code for x in xs] == s["expect"]["findings"], [(x.code, x.evidence) for x in xs]
        assert xs[0].data.accepts == []
        assert any("elements are not read" in ev for ev in xs[0].evidence), xs[0].evidence
        plan, approved = _plan(xs, f, snap)
        assert not [a.command for a in plan.actions if a.id in approved
                    and " -I INPUT" in a.command], [a.command for a in plan.actions]
        # the same rule alone, INPUT policy ACCEPT: nothing at all (old code: FIREWALL_REJECT)
        _, _, xs = _ipt_node([_command_rule(name)], "ACCEPT")
        assert xs == [], [(x.code, x.evidence) for x in xs]


def test_set_lookups_against_cluster_flows():
    """The matcher: a lookup in an ipset (not read) or an nft set not read is PARTIAL (an
    accept behind it never passes a flow); an nft set whose elements are read decides by them.
    The walk does not blame a drop behind an unread lookup (a blocklist) and keeps it as one."""
    kubelet = fp.Flow("kubelet", "input", "ip", "kubelet", "tcp", (10250, 10250),
                      (f"{IP_B}/32",), (f"{IP_A}/32",), ("eth0",), None)

    def ipt(spec: str) -> int:
        return fp.match_iptables_rule(P.Rule("filter", "INPUT", spec, "DROP",
                                             tuple(spec.split())), kubelet)
    assert ipt("-m set --match-set f2b-x src -j DROP") == fp.PARTIAL
    assert ipt("-m set ! --match-set trusted src -j DROP") == fp.PARTIAL
    assert ipt("-p udp -m set --match-set f2b-x src -j DROP") == fp.NONE
    m = {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@bl"}
    assert fp.match_nft_expr(m, kubelet) == fp.PARTIAL  # not read
    assert fp.match_nft_expr(m, kubelet, {"bl": ("203.0.113.0/24",)}) == fp.NONE
    assert fp.match_nft_expr(m, kubelet, {"bl": (IP_B,)}) == fp.FULL
    assert fp.match_nft_expr(m, kubelet, {"bl": ()}) == fp.NONE
    assert fp.match_nft_expr(dict(m, op="!="), kubelet) == fp.PARTIAL


def check_blocklist(s: dict[str, Any]) -> None:
    """test_realworld's per-sample entry point for this file's samples."""
    if s["file"].endswith(".nft.json"):
        test_crowdsec_blocklist_set_is_read_and_not_blamed()
        test_crowdsec_blocklist_holding_a_peer_is_blamed()
    else:
        test_fail2ban_ipset_drop_is_not_blamed_and_nothing_goes_ahead_of_it()


def test_walk_keeps_blocklists_and_blames_allowlists():
    """evaluate_iptables: a DROP behind `--match-set X src` (in the rule, or in the chain a
    set-gated jump leads to: fail2ban's older f2b-<jail> chains) is not the hit but is kept in
    Hit.blocklists; `! --match-set` (drop what an allowlist lacks) is the hit (SYNTHESISED
    tables of the quoted rules' forms)."""
    kubelet = fp.Flow("kubelet", "input", "ip", "kubelet", "tcp", (10250, 10250),
                      (f"{IP_B}/32",), (f"{IP_A}/32",), ("eth0",), None)
    t = P.parse_iptables_save(
        "*filter\n:INPUT DROP [0:0]\n:f2b-sshd - [0:0]\n"
        "-A INPUT -m set --match-set f2b-sshd src -j f2b-sshd\n"
        "-A INPUT -m set --match-set f2b-global src -j DROP\n"
        "-A f2b-sshd -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n").table("filter")
    hit = fp.evaluate_iptables(t, "INPUT", kubelet)
    assert hit is not None and hit.kind == "policy"
    assert [b[1] for b in hit.blocklists] == [
        "-A f2b-sshd -j REJECT --reject-with icmp-port-unreachable",
        "-A INPUT -m set --match-set f2b-global src -j DROP"]
    t = P.parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n"
        "-A INPUT -m set ! --match-set trusted src -j DROP\nCOMMIT\n").table("filter")
    hit = fp.evaluate_iptables(t, "INPUT", kubelet)
    assert hit is not None and hit.kind == "rule" and hit.blocklists == ()


def _docker_nft(policy: str) -> tuple[Any, NodeFacts, list[Any]]:
    from clusterfix_tui.core.checks import run_checks

    raw = text("moby-nftables-new-daemon-docker-bridges.nft.json")
    if policy == "drop":
        # moby's doc: "For IPv4, the policy is `drop` if the sysctl net.ipv4.ip_forward was
        # not set to '1', and the daemon set it itself" (SYNTHESISED: that policy)
        raw = raw.replace('"hook": "forward", "prio": 0, "policy": "accept"',
                          '"hook": "forward", "prio": 0, "policy": "drop"')
        assert '"policy": "drop"' in raw
    snap, f = _flannel_node(nft_ruleset=P.parse_nft_json(raw))
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == []
    return snap, f, findings


def check_docker_nft(s: dict[str, Any]) -> None:
    test_docker_nftables_backend_table_is_dockers()


def test_docker_nftables_backend_table_is_dockers():
    """Docker 29's nftables firewall backend (`table ip docker-bridges`, moby's generated doc of a
    new daemon, made into JSON by the real nft): as published (filter-FORWARD policy accept)
    nothing is found on a flannel node; with the policy dockerd sets when it enabled IP
    forwarding itself (drop), FORWARD_DROP says the table is docker's and how to fix it, and no
    step plans anything into docker's table (dockerd rewrites it; there is no DOCKER-USER
    there). Old code: `nft insert rule ip docker-bridges filter-FORWARD ... accept` by default,
    and the opt-in policy flip in docker's chain."""
    from clusterfix_tui.core.fixes import get_step

    _, _, xs = _docker_nft("accept")
    assert [x.code for x in xs if x.code.startswith(("FORWARD_", "FIREWALL_"))] == []
    snap, f, xs = _docker_nft("drop")
    fwd = [x for x in xs if x.code == "FORWARD_DROP"]
    assert len(fwd) == 1 and "docker-bridges" in fwd[0].title, [(x.code, x.title) for x in xs]
    assert any("ip-forward-no-drop" in ev for ev in fwd[0].evidence), fwd[0].evidence
    for step in ("iptables", "host_network"):
        plan = get_step(step).plan(_Diag(xs, {"node-a": f}, snap))
        assert not [a.command for a in plan.actions if "docker-bridges" in a.command], \
            [a.command for a in plan.actions]
    plan = get_step("iptables").plan(_Diag(xs, {"node-a": f}, snap))
    assert any("docker's own table" in n for n in plan.notes), plan.notes


def test_unknown_cni_gets_no_vxlan_flows_without_flannel_1():
    """A cluster whose CNI is not known (no DaemonSet recognised, no flannel annotations: EKS,
    AKS or GKE with a CNI outside the cluster's DaemonSets, SYNTHESISED two nodes): flannel's
    VXLAN flows are not assumed (old code: an unknown CNI was taken for flannel, so udp/8472
    accepts were planned on clusters that never use VXLAN); with a flannel.1 VXLAN device on
    the node (flanneld run under systemd) they are. The DaemonSets of the Amazon VPC CNI and
    Azure CNS are recognised (their samples), ovn-kubernetes by its DaemonSet's name/label and
    GKE Dataplane V2 by anetd's name."""
    from clusterfix_tui.core.checks.firewall_path import cluster_flows
    from clusterfix_tui.core.shape import classify_daemonset

    snap = _with_shape(_snapshot(_nodes(), ()), {})
    assert snap.shape.cni == "unknown"
    names = {fl.name for fl in cluster_flows(snap, "node-a", facts_with())}
    assert names == {"kubelet", "nodeport", "pods-forward", "to-pods-forward"}, names
    f = facts_with(links=({"ifname": "flannel.1", "linkinfo": {"info_kind": "vxlan",
                                                               "info_data": {"port": 8472}}},))
    assert {"vxlan-in", "vxlan-out"} <= {fl.name for fl in cluster_flows(snap, "node-a", f)}
    # INPUT policy DROP on such a node: no VXLAN accept planned
    snap2, f2, xs = _ipt_node(["-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"])
    snap2 = _with_shape(_snapshot(_nodes(), ()), {"node-a": f2})
    xs = firewall.check(snap2, {"node-a": f2})
    assert [x.code for x in xs] == ["FIREWALL_POLICY_DROP"]
    assert "vxlan-in" not in xs[0].data.flows and not [
        a for a in xs[0].data.accepts if "8472" in " ".join(a.get("spec") or ())]
    ovn = {"metadata": {"name": "ovnkube-node", "namespace": "ovn-kubernetes",
                        "labels": {"app": "ovnkube-node", "component": "ovn"}}}
    assert classify_daemonset(ovn) == {"ovn-kubernetes"}
    assert classify_daemonset({"metadata": {"name": "anetd", "namespace": "kube-system"}}) == \
        {"gke-dataplane-v2"}


def test_cis_base_chains_under_iptables_1_8_7_are_not_a_version_skew():
    """The CIS sample (base chains input/forward/output added with nft to iptables-nft's `ip
    filter`, with their `ct state established,related accept` and `iif lo accept`) on a node
    whose iptables is 1.8.7 (SYNTHESISED: its answer to `iptables-nft -t filter -S` and to each
    chain, `table `filter' is incompatible, use 'nft' tool.`, and a kube-proxy DaemonSet).
    KUBE_PROXY_INCOMPATIBLE_CHAIN says what it is (nft base chains in iptables-nft's table, cause
    foreign-base-chain), report only: the CIS chains' rules are never 'foreign rules' to delete.
    Old code: 'version skew' (cause version-skew), the CIS rules listed as unsure."""
    from clusterfix_tui.core.checks import run_checks
    from clusterfix_tui.core.checks.iptables import IncompatibleChainData
    from clusterfix_tui.core.fixes import get_step

    e = BY_FILE["cis-nftables-base-chains.nft.json"]["expect"]
    rs = P.parse_nft_json(text(e["json"]))
    chains = tuple(c.name for c in rs.chains if c.family == "ip" and c.table == "filter")
    err = "iptables v1.8.7 (nf_tables): table `filter' is incompatible, use 'nft' tool.\n"
    f = facts_with(nft_filter=P.parse_iptables_save(text(e["save"])), nft_ruleset=rs,
                   iptables_version=P.parse_iptables_version("iptables v1.8.7 (nf_tables)"),
                   binaries={b: f"/usr/sbin/{b}" for b in (
                       "iptables", "iptables-save", "iptables-nft", "iptables-nft-save", "nft")},
                   subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"},
                   incompatible_chains={"filter": chains},
                   incompatible_stderr={"filter": err * len(chains)},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": IP_A,
                                                            "prefixlen": 24}]}])
    snap = _with_shape(_snapshot(_nodes(), (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),
                                            _ds("kube-system", "kube-proxy", ["kube-proxy"]))),
                       {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == []
    (x,) = [x for x in findings if x.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN"]
    d = x.data_as(IncompatibleChainData)
    assert d.cause == "foreign-base-chain" and d.foreign_rules == [], (d.cause, x.title)
    assert "ip filter input" in x.title and "not a version skew" in x.title, x.title
    plan = get_step("iptables").plan(_Diag(findings, {"node-a": f}, snap))
    assert not [a.command for a in plan.actions if "nft delete rule" in a.command]
    assert any("base chains added with nft" in n for n in plan.notes), plan.notes


def test_flannel_leasing_its_own_subnet_is_no_bridge_conflict():
    """flannel without its kube subnet manager (etcd mode, as the binary installs of the corpus
    run it): subnet.env is flannel's sample (FLANNEL_SUBNET=10.1.74.1/24) and cni0 carries that
    gateway, while the node's podCIDR (allocated by kube-controller-manager) is 10.244.0.0/24
    and the node has no flannel.alpha.coreos.com/* annotation (SYNTHESISED node and cni0).
    flannel decides the subnet there: no CNI_BRIDGE_CONFLICT, so cni0 is not deleted (old code:
    conflict, cni0 deleted by default). With the kube subnet manager's annotations the same
    subnet.env is stale and cni0 on it still a conflict."""
    from clusterfix_tui.core.checks import cni

    env = P.parse_env_file(text("flannel-sample_subnet.env"))
    assert env["FLANNEL_SUBNET"] == "10.1.74.1/24"
    f = facts_with(subnet_env=env, addrs=[
        {"ifname": "eth0", "addr_info": [{"family": "inet", "local": IP_A, "prefixlen": 24}]},
        {"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.1.74.1",
                                          "prefixlen": 24}]}])
    ds = (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)
    snap = _with_shape(_snapshot(_nodes(), ds), {"node-a": f})
    assert [x for x in cni.check(snap, {"node-a": f}) if x.code == "CNI_BRIDGE_CONFLICT"] == []
    nodes = _nodes()
    for n in nodes:
        n["metadata"]["annotations"] = {"flannel.alpha.coreos.com/kube-subnet-manager": "true"}
    snap = _with_shape(_snapshot(nodes, ds), {"node-a": f})
    assert [x.code for x in cni.check(snap, {"node-a": f})] == ["CNI_BRIDGE_CONFLICT"]
    # a cni0 address other than subnet.env's gateway stays a conflict without annotations too
    f2 = facts_with(subnet_env=env, addrs=[{"ifname": "cni0", "addr_info": [
        {"family": "inet", "local": "10.1.99.1", "prefixlen": 24}]}])
    snap = _with_shape(_snapshot(_nodes(), ds), {"node-a": f2})
    assert [x.code for x in cni.check(snap, {"node-a": f2})] == ["CNI_BRIDGE_CONFLICT"]


def test_forward_drop_accepts_never_go_ahead_of_a_blocklist():
    """FORWARD policy DROP with fail2ban's ipset drop in FORWARD (the quoted rule, SYNTHESISED
    placement; as fail2ban setups put it in DOCKER-USER/FORWARD for published containers):
    FORWARD_DROP stays, its evidence names the blocklist, and the default plan inserts no
    `-s/-d <pod network> -j ACCEPT` at the top of FORWARD (it would let banned addresses reach
    the pods); the policy flip stays an opt-in. Old code: both accepts at FORWARD's top."""
    from clusterfix_tui.core.checks.iptables import ForwardDropData, forward_drop
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import default_approved

    rule = _command_rule("fail2ban-ipset-global-drop-command.txt").replace("-A INPUT", "-A FORWARD")
    save = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]",
                      ":OUTPUT ACCEPT [0:0]", rule, "COMMIT", ""])
    snap, f = _flannel_node(
        plain_save=P.parse_iptables_save(save),
        iptables_version=P.parse_iptables_version("iptables v1.8.7 (legacy)"),
        binaries={"iptables": "/sbin/iptables", "iptables-save": "/sbin/iptables-save"})
    xs = forward_drop(snap, "node-a", f)
    assert [x.code for x in xs] == ["FORWARD_DROP"]
    assert xs[0].data_as(ForwardDropData).blocklists == [rule]
    plan = get_step("iptables").plan(_Diag(xs, {"node-a": f}, snap))
    approved = set(default_approved(plan))
    assert not [a.command for a in plan.actions if a.id in approved and "ACCEPT" in a.command
                and "-P FORWARD" not in a.command], [a.command for a in plan.actions]
    assert [a for a in plan.actions if a.opt_in and "-P FORWARD ACCEPT" in a.command]
    assert any("blocklist" in n for n in plan.notes), plan.notes


def test_flannel_leasing_its_own_subnet_is_not_judged_against_podcidrs():
    """The same etcd-mode node (subnet.env: flannel's sample, 10.1.74.1/24; podCIDR 10.244.0.0/24;
    no flannel.alpha.coreos.com/* annotation; SYNTHESISED flannel.1 on 10.1.74.0/32 and a route
    to a peer's lease 10.1.15.0/24): FLANNEL_STALE_SUBNET and FLANNEL_MISSING_ROUTE are not
    judged against the podCIDRs (old code: subnet.env and flannel.1 'stale', the peer's lease
    route 'not owned by any node', podCIDR routes 'missing'); with the kube subnet manager's
    annotations the same subnet.env is stale."""
    from clusterfix_tui.core.checks import flannel

    env = P.parse_env_file(text("flannel-sample_subnet.env"))
    f = facts_with(
        subnet_env=env,
        links=({"ifname": "flannel.1", "flags": ["UP"], "address": "aa:bb:cc:dd:ee:01",
                "linkinfo": {"info_kind": "vxlan", "info_data": {"port": 8472}}},),
        addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": IP_A, "prefixlen": 24}]},
               {"ifname": "flannel.1", "addr_info": [{"family": "inet", "local": "10.1.74.0",
                                                      "prefixlen": 32}]}],
        routes=({"dst": "10.1.15.0/24", "gateway": "10.1.15.0", "dev": "flannel.1",
                 "flags": ["onlink"]},))
    ds = (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)
    snap = _with_shape(_snapshot(_nodes(), ds), {"node-a": f})
    got = [x.code for x in flannel.check(snap, {"node-a": f})]
    assert not {"FLANNEL_STALE_SUBNET", "FLANNEL_MISSING_ROUTE"} & set(got), got
    nodes = _nodes()
    for n in nodes:
        n["metadata"]["annotations"] = {"flannel.alpha.coreos.com/kube-subnet-manager": "true"}
    snap = _with_shape(_snapshot(nodes, ds), {"node-a": f})
    assert "FLANNEL_STALE_SUBNET" in [x.code for x in flannel.check(snap, {"node-a": f})]
