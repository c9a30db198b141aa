"""KUBE_PROXY_SHADOWED: a foreign ACCEPT/RETURN ahead of kube-proxy's jump in nat PREROUTING/OUTPUT
(silent before: kube-proxy's chains and jumps are all there). On a real node capture
(tests/data/facts/node-a-healthy.out: kube-proxy on iptables-nft, NodePort 30096, ClusterIP
10.96.200.10:8096) with the rule put in the save as `iptables -S` prints it, on both backends and
IPv6; then the plan built from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from diag_fakes import FACTS_DATA, SCRATCH_NONCE

from clusterfix_tui.core.checks import iptables
from clusterfix_tui.core.checks.nat_shadow import matches, service_dests, shadows
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.parsers import parse_iptables_save
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

JUMP = '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
OJUMP = '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'


def _facts():
    return parse_facts("a", (FACTS_DATA / "node-a-healthy.out").read_text(), SCRATCH_NONCE)


def _nat_text(facts, *ahead: str, v6: bool = False) -> str:
    """The node's nat save with `ahead` lines put right before kube-proxy's jumps."""
    text = "\n".join(r.spec for r in facts.nft_nat.tables["nat"].rules)
    chains = "\n".join(f":{c} {p or '-'} [0:0]" for c, p in facts.nft_nat.tables["nat"].chains.items())
    body = [x for x in text.splitlines()]
    out: list[str] = []
    for line in body:
        if line in (JUMP, OJUMP):
            out.extend(a for a in ahead if a.split()[1] == line.split()[1] and a not in out)
        out.append(line)
    extra = "\n".join(f":{c} - [0:0]" for c in {a.split()[1] for a in ahead} - {"PREROUTING", "OUTPUT"})
    text = "\n".join(x for x in out if x.split()[1] in ("PREROUTING", "OUTPUT") or
                     x.split()[1].startswith("KUBE-") or x.startswith("-A FOO"))
    if v6:
        text = text.replace("10.96.200.10/32", "fd00:96::10/128")
    return f"*nat\n{chains}\n{extra}\n{text}\nCOMMIT\n"


def _with_nat(facts, nat_text: str, backend: str = "nft", v6: bool = False):
    save = parse_iptables_save(nat_text)
    if v6:
        return dataclasses.replace(facts, ip6_nft_nat=save if backend == "nft" else None,
                                   ip6_legacy=save if backend == "legacy" else None)
    if backend == "legacy":  # kube-proxy's rules all in legacy: the live backend is legacy
        return dataclasses.replace(facts, legacy=save, nft_nat=None, nft_filter=None,
                                   nft_mangle=None)
    return dataclasses.replace(facts, nft_nat=save)


SNAP = ClusterSnapshot(kube_proxy_config_found=True)


def _node(name: str, *cidrs: str) -> NodeInfo:
    return NodeInfo(name=name, internal_ip=None, addresses=(), pod_cidr=cidrs[0], conditions={},
                    annotations={}, labels={}, kubelet_version=None, pod_cidrs=cidrs)


def _shadowed(facts, snap=SNAP):
    return [f for f in iptables.check(snap, {"a": facts}) if f.code == "KUBE_PROXY_SHADOWED"]


# -- the check ------------------------------------------------------------------------------------


def test_the_healthy_node_has_no_shadow() -> None:
    assert _shadowed(_facts()) == []


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_an_accept_for_the_nodeport_range_ahead_of_the_jump(backend: str) -> None:
    facts = _facts()
    rule = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"
    (f,) = _shadowed(_with_nat(facts, _nat_text(facts, rule), backend))
    d = f.data
    assert (d.backend, d.builtin, d.rule, d.jump, d.ip_version) == (backend, "PREROUTING", rule, JUMP, 4)
    assert d.services == ["default/jellyfin"] and not d.partial  # the NodePort, not the ClusterIP
    assert d.binary == f"iptables-{backend}" and f.step == "iptables" and f.severity == "error"
    assert any(rule in e and "ahead of kube-proxy's" in e for e in f.evidence)


def test_a_return_for_a_source_range_shadows_some_of_every_service() -> None:
    facts = _facts()
    rule = "-A PREROUTING -s 192.168.0.0/16 -j RETURN"
    (f,) = _shadowed(_with_nat(facts, _nat_text(facts, rule)))
    assert f.data.partial and sorted(f.data.services) == ["default/jellyfin",
                                                          "default/jellyfin cluster IP"]


def test_a_chain_that_accepts_in_output() -> None:
    facts = _facts()
    text = _nat_text(facts, "-A OUTPUT -j FOO").replace(
        "COMMIT", "-A FOO -p tcp -m tcp --dport 8096 -j ACCEPT\nCOMMIT")
    (f,) = _shadowed(_with_nat(facts, text))
    assert (f.data.builtin, f.data.rule, f.data.via) == ("OUTPUT", "-A OUTPUT -j FOO",
                                                         "-A FOO -p tcp -m tcp --dport 8096 -j ACCEPT")
    assert f.data.services == ["default/jellyfin cluster IP"]


@pytest.mark.parametrize("rule", [
    "-A PREROUTING -p tcp -m tcp --dport 22 -j ACCEPT",  # nothing kube-proxy serves
    "-A PREROUTING -p udp -j ACCEPT",  # the services are tcp
    "-A PREROUTING -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",  # nat sees NEW only
    "-A PREROUTING -m mark --mark 0x1 -j ACCEPT",  # a match not understood: not judged
    "-A PREROUTING -j FOO",  # a chain that only RETURNs
])
def test_rules_that_shadow_nothing_are_silent(rule: str) -> None:
    facts = _facts()
    text = _nat_text(facts, rule).replace("COMMIT", "-A FOO -j RETURN\nCOMMIT")
    assert _shadowed(_with_nat(facts, text)) == []


def test_the_same_rule_in_the_other_backend_is_silent() -> None:
    """The kernel runs every nat hook entry (legacy's and nft's tables) until one maps the
    connection: an ACCEPT in the backend kube-proxy does not use stops nothing of its rules."""
    facts = _facts()
    other = parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\n"
                                "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT\nCOMMIT\n")
    assert _shadowed(dataclasses.replace(facts, legacy=other)) == []


def test_ipv6_on_a_node_with_an_ipv6_podcidr() -> None:
    facts = _facts()
    rule = "-A PREROUTING -d fd00:96::/64 -j ACCEPT"
    f6 = _with_nat(facts, _nat_text(facts, rule, v6=True), v6=True)
    snap = ClusterSnapshot(kube_proxy_config_found=True,
                           nodes={"a": _node("a", "10.244.0.0/24", "fd00:10:244::/64")})
    (f,) = _shadowed(f6, snap)
    assert f.data.ip_version == 6 and f.data.binary == "ip6tables-nft"
    assert f.data.services == ["default/jellyfin cluster IP"] and "(IPv6)" in f.title
    # an IPv4-only node: ip6tables is not read for it
    assert _shadowed(f6) == []


def test_not_in_nftables_or_ipvs_mode() -> None:
    facts = _facts()
    bad = _with_nat(facts, _nat_text(facts, "-A PREROUTING -j ACCEPT"))
    assert len(_shadowed(bad)) == 1
    for mode in ("nftables", "ipvs"):
        assert iptables.shadowed(ClusterSnapshot(kube_proxy_config_found=True),
                                 "a", dataclasses.replace(bad, kube_proxy_mode=mode)) == []


def test_matches_per_destination() -> None:
    nat = _facts().nft_nat.tables["nat"]
    by = {d.label: d for d in service_dests(nat)}
    node_port, cluster_ip = by["default/jellyfin"], by["default/jellyfin cluster IP"]
    r = parse_iptables_save("*nat\n-A PREROUTING ! -d 10.96.0.0/12 -j ACCEPT\n"
                            "-A PREROUTING -m multiport -p tcp --dports 80,30090:30100 -j RETURN\n"
                            "-A PREROUTING -m addrtype --dst-type LOCAL -j ACCEPT\nCOMMIT\n"
                            ).table("nat").rules
    assert matches(r[0], cluster_ip, None) == "none"
    assert matches(r[1], node_port, ["10.0.0.1"]) == "all"
    assert matches(r[1], cluster_ip, None) == "none"
    assert matches(r[2], node_port, None) == "all" and matches(r[2], cluster_ip, None) == "none"
    assert shadows(nat, None) == []


# -- the plan ------------------------------------------------------------------------------------


class _Diag:
    def __init__(self, findings, facts):
        self.findings = findings
        self.facts = {"a": facts}
        self.snapshot = SNAP
        self.shape = None


def test_plan_reinserts_kube_proxys_jump_ahead_and_rolls_back_only_the_copy() -> None:
    facts = _facts()
    rule = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"
    bad = _with_nat(facts, _nat_text(facts, rule))
    (f,) = _shadowed(bad)
    plan = get_step("iptables").plan(_Diag([f], bad))
    acts = [a for a in plan.actions if not a.opt_in]
    assert len(acts) == 2  # the backup, then the insert
    a = acts[1]
    assert "iptables-nft -w 5 -t nat -S PREROUTING" in a.command
    assert ("iptables-nft -w 5 -t nat -I PREROUTING \"$n\" -m comment --comment "
            "'kubernetes service portals' -j KUBE-SERVICES") in a.command
    assert a.precondition is not None and a.rollback is not None and a.rollback.target == "a"
    assert "-gt 1 ]" in a.rollback.command and "-D PREROUTING -m comment" in a.rollback.command
    (opt,) = [a for a in plan.actions if a.opt_in]
    assert opt.command == "iptables-nft -w 5 -t nat -D PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"
    assert opt.rollback is not None and "-I PREROUTING 1" in opt.rollback.command
    # kube-proxy is not restarted for it (its restart does not move its jump)
    assert not [x for x in plan.actions if x.api]


# -- k3s: KUBE_PROXY_NO_RULES where kube-proxy is embedded (no pod) ------------------------------
# k3s runs kube-proxy inside the k3s (server) / k3s-agent (agent) process; restarting that unit
# does not stop running pods (docs.k3s.io "Stopping K3s": the containers keep running, only
# k3s-killall.sh stops them). Before: only a note "restart the k3s / rke2 service".


def _k3s_diag(active, missing=("KUBE-SERVICES", "KUBE-NODEPORTS"), node="node-2"):
    from fix_helpers import FakeDiagnosis, finding

    from clusterfix_tui.core.facts import NodeFacts, Section
    from clusterfix_tui.core.shape import UNIT_ORDER, ClusterShape, NodeShape

    sections = {}
    if active is not None:
        out = "".join(("active" if u in active else "inactive") + "\n" for u in UNIT_ORDER)
        sections["service_units"] = Section("service_units", None, out, "", 0 if active else 3)
    f = finding("KUBE_PROXY_NO_RULES", node, "pods", backend="nft", missing_chains=list(missing),
                proxy_mode="iptables", component="kube_proxy", kube_proxy="embedded")
    d = FakeDiagnosis([f], facts={node: NodeFacts(node=node, sections=sections, complete=True)},
                      snapshot={"pods": []})
    d.shape = ClusterShape(distribution="k3s", cni="flannel", kube_proxy="embedded",
                           nodes={node: NodeShape(name=node, pod_cidrs=("10.42.1.0/24",),
                                                  ip_family="ipv4", distribution="k3s",
                                                  kube_proxy="embedded")})
    return d


@pytest.mark.parametrize("unit", ["k3s", "k3s-agent"])
def test_k3s_no_rules_restarts_the_nodes_unit_then_checks_the_rules(unit: str) -> None:
    from clusterfix_tui.core.fixes.engine import check_rollbacks, default_approved

    plan = get_step("pods").plan(_k3s_diag({unit}))
    restart, check = plan.actions
    assert restart.command == f"systemctl restart {unit}" and restart.target == "node-2"
    assert restart.id in default_approved(plan)  # the fix itself, approved with the step
    assert restart.rollback is None and "not rolled back" in restart.rollback_note
    assert f"systemctl is-active --quiet {unit}" in restart.precondition.command
    assert "does not kill running pods" in restart.why
    assert not check.mutating and "iptables-nft-save -t nat" in check.command
    assert "'^:KUBE-SERVICES '" in check.command and "'^:KUBE-NODEPORTS '" in check.command
    assert check_rollbacks(plan) == []
    assert not any("restart the k3s / rke2 service" in n for n in plan.notes)


def test_k3s_missing_jump_is_checked_back_by_its_text() -> None:
    plan = get_step("pods").plan(_k3s_diag({"k3s"}, missing=("-A PREROUTING -j KUBE-SERVICES",)))
    (_restart, check) = plan.actions
    assert "'^-A PREROUTING .*-j KUBE-SERVICES$'" in check.command


@pytest.mark.parametrize("active,why", [(set(), "no k3s service is active"),
                                        ({"k3s", "k3s-agent"}, "more than one"),
                                        (None, "could not be read")])
def test_k3s_unit_unknown_keeps_the_note(active, why: str) -> None:
    plan = get_step("pods").plan(_k3s_diag(active))
    assert plan.actions == ()
    (note,) = [n for n in plan.notes if "restart the k3s / rke2 service" in n]
    assert why in note


# -- ipvs mode: what links kube-proxy's nat chains into the packet path ---------------------------
# A real ipvs-mode nat table (tests/data/realworld/k8s-ipvs-calico-nat.save: calico, NodePort
# nginx-basic 80:31195). kube-proxy's ipvs proxier re-ensures its jumps (prepended) on every sync, so
# a link that stays missing means kube-proxy does not sync: the same fix as in iptables mode
# (restart it). Before: ipvs mode checked the virtual servers, kube-ipvs0 and KUBE-SERVICES only.

REAL = Path(__file__).parent / "data" / "realworld"
NGINX = {"namespace": "default", "name": "nginx-basic", "ports": [{"port": 80, "nodePort": 31195}]}


def _ipvs_facts(save_text: str, v6: str | None = None):
    from clusterfix_tui.core.facts import NodeFacts, Section

    ip_vs = ("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
             "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\nTCP  0A600001:01BB rr\n")
    return NodeFacts(node="a", complete=True, kube_proxy_mode="ipvs",
                     legacy=parse_iptables_save(save_text),
                     ip6_legacy=parse_iptables_save(v6) if v6 else None,
                     links=({"ifname": "eth0"}, {"ifname": "kube-ipvs0"}),
                     sections={"ip_vs": Section("ip_vs", None, ip_vs, "", 0)})


def _ipvs_snap(nodeports=(NGINX,), *cidrs: str):
    return ClusterSnapshot(kube_proxy_mode="ipvs", kube_proxy_config_found=True,
                           nodeport_services=tuple(nodeports),
                           nodes={"a": _node("a", *(cidrs or ("192.168.185.0/24",)))})


def _without(line_start: str) -> str:
    text = (REAL / "k8s-ipvs-calico-nat.save").read_text()
    out = [ln for ln in text.splitlines() if not ln.startswith(line_start)]
    assert len(out) == len(text.splitlines()) - 1
    return "\n".join(out) + "\n"


def _no_rules(snap, facts):
    return [f for f in iptables.check(snap, {"a": facts}) if f.code == "KUBE_PROXY_NO_RULES"]


def test_ipvs_real_table_whole_is_healthy() -> None:
    facts = _ipvs_facts((REAL / "k8s-ipvs-calico-nat.save").read_text())
    assert _no_rules(_ipvs_snap(), facts) == []  # its `-j ACCEPT` in KUBE-SERVICES is its own


def test_ipvs_prerouting_jump_gone() -> None:
    facts = _ipvs_facts(_without('-A PREROUTING -m comment --comment "kubernetes service portals"'))
    (f,) = _no_rules(_ipvs_snap(), facts)
    assert f.data.missing_chains == ["-A PREROUTING -j KUBE-SERVICES"]
    assert (f.data.backend, f.data.proxy_mode, f.step) == ("ipvs", "ipvs", "pods")
    assert "masquerade" in f.title and "iptables-legacy-save: no -A PREROUTING -j KUBE-SERVICES" in f.evidence


def test_ipvs_node_port_link_gone_matters_only_with_nodeports() -> None:
    facts = _ipvs_facts(_without("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT"))
    (f,) = _no_rules(_ipvs_snap(), facts)
    assert f.data.missing_chains == ["-A KUBE-SERVICES -j KUBE-NODE-PORT"]
    assert _no_rules(_ipvs_snap(()), facts) == []  # no NodePort service: nothing to mark
    facts = _ipvs_facts(_without("-A KUBE-NODE-PORT -p tcp"))
    (f,) = _no_rules(_ipvs_snap(), facts)
    assert f.data.missing_chains == [
        "-A KUBE-NODE-PORT -m set --match-set KUBE-NODE-PORT-* dst -j KUBE-MARK-MASQ"]


def test_ipvs_masquerade_gone_and_ipv6() -> None:
    facts = _ipvs_facts(_without('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic'))
    # the hairpin MASQUERADE (KUBE-LOOP-BACK) is still there: not the masquerade of marked traffic,
    # but a MASQUERADE of KUBE-POSTROUTING all the same: not claimed missing (no guess)
    assert _no_rules(_ipvs_snap(), facts) == []
    v6 = _without('-A OUTPUT -m comment --comment "kubernetes service portals"')
    facts = _ipvs_facts((REAL / "k8s-ipvs-calico-nat.save").read_text(), v6=v6)
    (f,) = _no_rules(_ipvs_snap((NGINX,), "192.168.185.0/24", "fd00:185::/64"), facts)
    assert f.data.missing_chains == ["-A OUTPUT -j KUBE-SERVICES (IPv6)"]


def test_ipvs_gap_is_the_pods_steps_restart() -> None:
    facts = _ipvs_facts(_without('-A PREROUTING -m comment --comment "kubernetes service portals"'))
    (f,) = _no_rules(_ipvs_snap(), facts)
    plan = get_step("pods").plan(_Diag([f], facts))
    # the pods step takes it as any KUBE_PROXY_NO_RULES: a restart of the node's kube-proxy pod
    # (this diagnosis has none to name: said, nothing else done; nothing written in iptables)
    assert plan.actions == () and plan.notes == ("a: no kube-proxy pod owned by its DaemonSet found "
                                                 "to restart",)
    assert [a for a in get_step("iptables").plan(_Diag([f], facts)).actions] == []


# firewalld's nat layout with its iptables backend (CentOS 7: firewalld 0.6, `iptables-save -t nat`):
# its zone chains are entered with -g from PREROUTING_ZONES, itself entered with -j from PREROUTING:
# their end returns to PREROUTING (not its policy), so nothing is shadowed even ahead of the jump
FIREWALLD_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:PREROUTING_direct - [0:0]
:PREROUTING_ZONES_SOURCE - [0:0]
:PREROUTING_ZONES - [0:0]
:PRE_public - [0:0]
:PRE_public_log - [0:0]
:PRE_public_deny - [0:0]
:PRE_public_allow - [0:0]
-A PREROUTING -j PREROUTING_direct
-A PREROUTING -j PREROUTING_ZONES_SOURCE
-A PREROUTING -j PREROUTING_ZONES
-A PREROUTING_ZONES -i eth0 -g PRE_public
-A PREROUTING_ZONES -g PRE_public
-A PRE_public -j PRE_public_log
-A PRE_public -j PRE_public_deny
-A PRE_public -j PRE_public_allow
"""


def test_firewalld_zone_chains_entered_with_goto_shadow_nothing() -> None:
    facts = _facts()
    kube = _nat_text(facts).split("\n", 1)[1]  # kube-proxy's chains and rules, after "*nat"
    kube = "\n".join(x for x in kube.splitlines() if not x.startswith(":PREROUTING ")
                     and not x.startswith(":OUTPUT ") and not x.startswith(":INPUT ")
                     and not x.startswith(":POSTROUTING "))
    text = FIREWALLD_NAT + kube
    assert _shadowed(_with_nat(facts, text)) == []
    # the same zone chain entered with -g from PREROUTING itself: its end is PREROUTING's policy
    direct = text.replace("-A PREROUTING -j PREROUTING_ZONES\n", "-A PREROUTING -g PRE_public\n")
    (f,) = _shadowed(_with_nat(facts, direct))
    assert f.data.rule == "-A PREROUTING -g PRE_public" and "the end of PRE_public" in f.data.via


def test_an_accept_after_a_chain_that_comes_back_is_seen() -> None:
    facts = _facts()
    text = _nat_text(facts, "-A PREROUTING -j FOO",
                     "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT").replace(
        "COMMIT", "-A FOO -i docker0 -j RETURN\nCOMMIT")
    (f,) = _shadowed(_with_nat(facts, text))
    assert f.data.rule == "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"


def test_k3s_restart_does_not_wait_for_kube_proxy_pods_that_do_not_exist() -> None:
    """Found on a k3s lab: after `systemctl restart k3s-agent` the step waited 120 s for kube-proxy
    pods (there are none: it is embedded) and called the step partial."""
    from clusterfix_tui.core.model import ActionOutcome, StepOutcome

    plan = get_step("pods").plan(_k3s_diag({"k3s-agent"}))
    out = StepOutcome(step="pods", status="changed", message="2 ok", actions=tuple(
        ActionOutcome(action_id=a.id, target=a.target, command=a.command, result=None, status="ok")
        for a in plan.actions))

    class NoAPI:
        def __getattr__(self, name):
            raise AssertionError(f"the API was asked ({name}): there are no pods to wait for")

    final = get_step("pods").after_apply(plan, out, NoAPI(), timeout=0.05, poll=0.01,
                                         sleep=lambda s: None)
    assert final == out


def test_an_accept_in_another_nft_base_chain_at_the_nat_hook_is_no_shadow() -> None:
    """`table ip foo { chain pre { type nat hook prerouting priority -110; tcp dport 30000-32767
    accept } }`: the nat core runs every nat hook entry until one maps the connection
    (nf_nat_inet_fn), so iptables-nft's PREROUTING, kube-proxy's jump included, still runs."""
    import json

    from clusterfix_tui.core.parsers import parse_nft_json

    rs = parse_nft_json(json.dumps({"nftables": [
        {"table": {"family": "ip", "name": "foo", "handle": 1}},
        {"chain": {"family": "ip", "table": "foo", "name": "pre", "handle": 1, "type": "nat",
                   "hook": "prerouting", "prio": -110, "policy": "accept"}},
        {"rule": {"family": "ip", "table": "foo", "chain": "pre", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                       "right": {"range": [30000, 32767]}}}, {"accept": None}]}}]}))
    facts = dataclasses.replace(_facts(), nft_ruleset=rs)
    assert _shadowed(facts) == []
