"""Issue 13: a firewall rule or policy is a finding only when cluster traffic reaches it; the default
fix accepts exactly the flows hit. Rulesets in tests/data/firewall/ are real `nft -j list ruleset`
/ `iptables-*-save` output captured in scratch network namespaces from the lab faults' own rules
(plus kube-proxy's and flannel's FORWARD chains)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import firewall, run_checks
from clusterfix_tui.core.checks.firewall_path import (
    FULL,
    NONE,
    PARTIAL,
    Flow,
    cluster_flows,
    evaluate_iptables,
    match_iptables_rule,
)
from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import default_approved, is_opt_in
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

DATA = Path(__file__).parent / "data" / "firewall"
IPS = {"node-1": "10.213.0.11", "node-2": "10.213.0.12", "node-3": "10.213.0.13"}
HOST = get_step("host_network")
FIREWALL_CODES = {"FIREWALL_REJECT", "FIREWALL_POLICY_DROP", "FORWARD_DROP", "VXLAN_UNDERLAY_BLOCKED"}


def _fw_findings(facts: dict[str, NodeFacts]) -> list[Any]:
    """The firewall-related findings of a full check run (the facts here hold no kube-proxy,
    so the kube-proxy checks have their own say, which is not this file's subject)."""
    findings, errors = run_checks(_snapshot(), facts)
    assert errors == []
    return [f for f in findings if f.code in FIREWALL_CODES]


def _snapshot() -> ClusterSnapshot:
    nodes = {}
    for i, (n, ip) in enumerate(IPS.items()):
        labels = {"node-role.kubernetes.io/control-plane": ""} if n == "node-1" else {}
        nodes[n] = NodeInfo(n, ip, (), f"10.244.{i}.0/24", {"Ready": {"status": "True"}}, {},
                            labels, "v1.30.0")
    return ClusterSnapshot(nodes=nodes, flannel_network="10.244.0.0/16", flannel_backend="vxlan")


def _facts(name: str, node: str = "node-2", extra: dict[str, Section] | None = None) -> NodeFacts:
    d = json.loads((DATA / f"{name}.json").read_text())
    addrs = ({"ifname": "eth0", "addr_info": [{"family": "inet", "local": IPS[node],
                                                "prefixlen": 24}]},
             {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]})
    return NodeFacts(node=node, complete=True, sections=dict(extra or {}),
                     legacy=P.parse_iptables_save(d["legacy_save"]) if d["legacy_save"] else None,
                     nft_filter=P.parse_iptables_save(d["nft_save_filter"]),
                     nft_ruleset=P.parse_nft_json(d["nft_json"]), addrs=addrs)


def _diag(findings: list[Any], facts: dict[str, NodeFacts]) -> Any:
    return SimpleNamespace(findings=findings, facts=facts, snapshot=_snapshot())


# -- relevance -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["docker-host", "firewalld-open", "unrelated-reject"])
def test_look_alikes_are_not_findings(name: str) -> None:
    facts = {"node-2": _facts(name)}
    findings = _fw_findings(facts)
    assert [f.code for f in findings] == []
    plan = HOST.plan(_diag(findings, facts))
    assert plan.actions == ()


def test_vxlan_blocked_names_the_flow_and_accepts_only_it() -> None:
    (f,) = firewall.check(_snapshot(), {"node-2": _facts("vxlan-blocked")})
    assert f.code == "FIREWALL_REJECT" and f.node == "node-2"
    assert isinstance(f.data, firewall.FirewallDropData) and f.data.flows == ["vxlan-in"]
    assert f.data["flows"] == ["vxlan-in"]
    assert "flannel VXLAN from the peers (udp/8472)" in f.evidence[0]
    assert "-A INPUT -p udp -m udp --dport 8472 -j DROP" in f.evidence[0]
    (acc,) = f.data["accepts"]
    assert acc["chain"] == "INPUT" and acc["backend"] == "nft"
    assert acc["spec"][:6] == ["-p", "udp", "-m", "udp", "--dport", "8472"]


def test_input_policy_drop_is_a_policy_finding_with_the_flows_it_drops() -> None:
    (f,) = firewall.check(_snapshot(), {"node-2": _facts("input-drop")})
    assert f.code == "FIREWALL_POLICY_DROP" and isinstance(f.data, firewall.FirewallDropData)
    assert set(f.data["flows"]) == {"vxlan-in", "kubelet", "nodeport"}  # node-2: no API server
    (rule,) = f.data["rules"]
    assert rule["kind"] == "policy" and rule["chain"] == "INPUT"
    # the API server flow is judged on the control plane only
    (g,) = firewall.check(_snapshot(), {"node-1": _facts("input-drop", "node-1")})
    assert "apiserver" in g.data["flows"]


def test_firewalld_catch_all_reject_through_the_zone_chains() -> None:
    findings = firewall.check(_snapshot(), {"node-2": _facts("firewalld")})
    (f,) = findings
    assert f.code == "FIREWALL_REJECT"
    assert set(f.data["flows"]) == {"vxlan-in", "kubelet", "nodeport", "pods-forward",
                                    "to-pods-forward"}
    by_chain = {r["chain"]: r for r in f.data["rules"]}
    # INPUT: the zone's reject (reached through the dispatch chains), FORWARD: public_to_public's
    assert by_chain["filter_IN_public_to_HOST"]["path"] == [
        "filter_INPUT", "filter_INPUT_dispatch", "filter_IN_public_to_HOST"]
    assert "filter_FWD_public_to_public" in by_chain
    assert all(r["backend"] == "nft-native" and r["family"] == "inet" and r["table"] == "firewalld"
               and isinstance(r["handle"], int) and r["json"].startswith('"handle": ')
               for r in f.data["rules"])
    accepts = {(a["chain"], " ".join(a["expr"])) for a in f.data["accepts"]}
    assert ("filter_INPUT", 'udp dport 8472 accept comment "clusterfix: vxlan-in"') in accepts
    assert ("filter_FORWARD", 'ip saddr 10.244.0.0/16 accept comment "clusterfix: pods-forward"') \
        in accepts
    assert ("filter_FORWARD", 'ip daddr 10.244.0.0/16 accept comment "clusterfix: to-pods-forward"') \
        in accepts
    assert len(accepts) == 5


def test_docker_forward_drop_with_flannels_accepts_is_fine() -> None:
    facts = {"node-2": _facts("docker-host-no-accepts")}
    # kube-proxy's / flannel's chains are followed: FLANNEL-FWD accepts the pod network, so
    # even docker's FORWARD DROP is fine here: nothing to do
    assert _fw_findings(facts) == []


def test_unknown_criteria_never_make_a_flow_accepted() -> None:
    flow = Flow("vxlan-in", "input", "ip", "vxlan", "udp", (8472, 8472), ("10.213.0.11/32",),
                ("10.213.0.12/32",), ("eth0",), None)
    t = P.parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n"
        "-A INPUT -p udp -m set --match-set allowed src -j ACCEPT\n"
        "-A INPUT -p udp --dport 8472 -j REJECT\nCOMMIT\n").table("filter")
    assert match_iptables_rule(t.rules[0], flow) == PARTIAL
    hit = evaluate_iptables(t, "INPUT", flow)
    assert hit is not None and hit.rule == "-A INPUT -p udp --dport 8472 -j REJECT"
    t2 = P.parse_iptables_save(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -i eth0 -p udp -m udp --dport 8400:8500 -j ACCEPT\n"
        "COMMIT\n").table("filter")
    assert match_iptables_rule(t2.rules[0], flow) == FULL
    assert evaluate_iptables(t2, "INPUT", flow) is None
    other = Flow("kubelet", "input", "ip", "k", "tcp", (10250, 10250), None, None, ("eth0",))
    assert match_iptables_rule(t2.rules[0], other) == NONE


def test_kube_proxy_own_rejects_are_never_findings() -> None:
    snap = _snapshot()
    f = _facts("vxlan-blocked")
    t = P.parse_iptables_save(
        "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n"
        "-A INPUT -m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES\n"
        "-A KUBE-EXTERNAL-SERVICES -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 31000 "
        "-j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n")
    f2 = NodeFacts(node="node-2", complete=True, nft_filter=t, addrs=f.addrs)
    assert firewall.check(snap, {"node-2": f2}) == []


# -- the fix ---------------------------------------------------------------------------------------

def test_fix_plans_narrow_accepts_by_default_and_deletion_as_opt_in() -> None:
    facts = {"node-2": _facts("firewalld")}
    findings = _fw_findings(facts)
    plan = HOST.plan(_diag(findings, facts))
    default = [a for a in plan.actions if a.id in default_approved(plan)]
    assert default and all("nft insert rule inet firewalld" in a.command for a in default)
    assert not any("delete" in a.command for a in default)
    for a in default:  # rollback finds the rule by its exact text at rollback time
        assert "nft -a list chain inet firewalld" in a.rollback.command
        assert "nft delete rule inet firewalld" in a.rollback.command
        assert a.precondition is not None and a.precondition.kind == "shell"
    # firewalld's own table: its rules are never deleted (firewalld rebuilds the table), the
    # plan says so (safety2; was: opt-in deletions in inet firewalld)
    assert not [a for a in plan.actions if is_opt_in(a)]
    assert any("firewalld's own nft table inet firewalld" in n for n in plan.notes), plan.notes
    # (an nft rule's deletion elsewhere, its handle re-read first: test_fixes_worker_host.py
    # test_firewall_nft_native_rule_by_handle)


def test_fix_uses_a_zone_change_when_firewalld_runs() -> None:
    extra = {"firewalld": Section("firewalld", None, "running\ndefault-zone: public\n"
                                  "internal\n  interfaces: eth1\nwork\n  interfaces: eth0\n",
                                  "", 0)}
    facts = {"node-2": _facts("firewalld", extra=extra)}
    findings = _fw_findings(facts)
    plan = HOST.plan(_diag(findings, facts))
    cmds = [a.command for a in plan.actions if not is_opt_in(a)]
    # the zone of the interface the traffic arrives on (eth0 carries the node's address)
    assert any(c.startswith("firewall-cmd --zone=work --add-port=8472/udp && ")
               and "firewall-cmd --permanent --zone=work --add-port=8472/udp" in c for c in cmds)
    assert any("--zone=trusted --add-source=10.244.0.0/16" in c for c in cmds)
    assert not any(c.startswith("nft ") for c in cmds)


def test_cluster_flows_use_the_kernels_vxlan_port() -> None:
    f = _facts("vxlan-blocked")
    links = ({"ifname": "flannel.1", "linkinfo": {"info_kind": "vxlan",
                                                  "info_data": {"port": 4789, "link": "eth0"}}},)
    f = NodeFacts(node="node-2", complete=True, nft_filter=f.nft_filter, addrs=f.addrs,
                  links=links)
    flows = {fl.name: fl for fl in cluster_flows(_snapshot(), "node-2", f)}
    assert flows["vxlan-in"].dports == (4789, 4789)
    # 8472 is not the cluster's port here: its DROP is not a finding
    assert firewall.check(_snapshot(), {"node-2": f}) == []


def test_report_advice_names_the_narrow_fix_and_the_opt_in() -> None:
    from clusterfix_tui.core.report.advice import _advice

    for code in ("FIREWALL_REJECT", "FIREWALL_POLICY_DROP", "FORWARD_DROP"):
        text = " ".join(_advice("host_network", code, "a firewall rule drops cluster traffic"))
        assert "Default (narrow)" in text and "Opt-in alternative" in text, code
    text = " ".join(_advice("host_network", "VXLAN_UNDERLAY_BLOCKED", ""))
    assert "security group" in text


def test_docker_forward_drop_gets_pod_accepts_in_docker_user_policy_flip_opt_in() -> None:
    d = json.loads((DATA / "docker-host-no-accepts.json").read_text())
    text = "\n".join(ln for ln in d["nft_save_filter"].splitlines() if "FLANNEL-FWD" not in ln)
    base = _facts("docker-host-no-accepts")
    f = NodeFacts(node="node-2", complete=True, nft_filter=P.parse_iptables_save(text),
                  nft_ruleset=base.nft_ruleset, addrs=base.addrs,
                  sections={"nft_save_filter": Section("nft_save_filter", None, text, "", 0)})
    (fd,) = [x for x in _fw_findings({"node-2": f}) if x.code == "FORWARD_DROP"]
    assert fd.data["accept_chain"] == "DOCKER-USER"
    plan = get_step("iptables").plan(_diag([fd], {"node-2": f}))
    default = [a for a in plan.actions if a.id in default_approved(plan)]
    inserts = [a.command for a in default if " -I DOCKER-USER 1 " in a.command]
    assert len(inserts) == 2 and any("-s 10.244.0.0/16" in c for c in inserts)
    assert not any("-P FORWARD ACCEPT" in a.command for a in default)
    flip = [a for a in plan.actions if "-P FORWARD ACCEPT" in a.command]
    assert len(flip) == 1 and is_opt_in(flip[0])


def test_nft_native_forward_drop_gets_pod_accepts_policy_opt_in() -> None:
    from clusterfix_tui.core.checks import data_for
    from clusterfix_tui.core.model import Finding

    fd = Finding("FORWARD_DROP", "error", "node-2", "t", step="host_network", data=data_for(
        "FORWARD_DROP", backend="nft-native", family="inet", table="fw", chain="forward",
        policy="DROP", pod_network="10.244.0.0/16, fd00:10:244::/56"))
    plan = get_step("iptables").plan(_diag([fd], {}))
    default = [a for a in plan.actions if a.id in default_approved(plan)]
    ins = [a.command for a in default if "nft insert rule inet fw forward" in a.command]
    assert len(ins) == 4  # saddr and daddr, both families
    assert any("ip6 saddr fd00:10:244::/56 accept" in c for c in ins)
    assert all(a.rollback and "nft delete rule inet fw forward" in a.rollback.command
               for a in default if "nft insert" in a.command)
    assert not any("policy accept" in a.command for a in default)
    assert any("policy accept" in a.command and is_opt_in(a) for a in plan.actions)


def test_ipv6_pod_traffic_is_judged_in_ip6tables_and_accepted_there() -> None:
    v6 = P.parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                               "-A FORWARD -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n")
    base = _facts("unrelated-reject")
    f = NodeFacts(node="node-2", complete=True, nft_filter=base.nft_filter, addrs=base.addrs,
                  ip6_nft_filter=v6, subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16",
                                                 "FLANNEL_IPV6_NETWORK": "fd00:10:244::/56"})
    (fr,) = firewall.check(_snapshot(), {"node-2": f})
    assert {r.get("family") for r in fr.data["rules"]} == {"ip6"}
    assert "ip6tables-nft-save" in fr.evidence[0]
    plan = HOST.plan(_diag([fr], {"node-2": f}))
    default = [a.command for a in plan.actions if a.id in default_approved(plan)]
    assert any(c.startswith("ip6tables-nft -w 5 -t filter -C FORWARD -s fd00:10:244::/56")
               for c in default), default
    assert not any(c.startswith("iptables-") for c in default)


def test_input_drop_plan_accepts_by_default_policy_flip_is_opt_in() -> None:
    facts = {"node-2": _facts("input-drop")}
    findings = _fw_findings(facts)
    plan = HOST.plan(_diag(findings, facts))
    default = [a for a in plan.actions if a.id in default_approved(plan)]
    assert len(default) == 3 and all(" -I INPUT 1 " in a.command for a in default)
    (flip,) = [a for a in plan.actions if "-P INPUT ACCEPT" in a.command]
    assert is_opt_in(flip) and flip.rollback.command.endswith("-P INPUT DROP")
    assert "grep -qx -- '-P INPUT DROP'" in flip.precondition.command
