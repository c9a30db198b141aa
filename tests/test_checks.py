"""Checks on real recorded data: the lab's API answers and its nodes' facts output per fault
(tests/data/lab/*.json) and scratch-namespace captures (tests/data/facts/*.out)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from conntrack_samples import full_table_output
from diag_fakes import (
    FACTS_DATA,
    LAB_NONCE,
    SCRATCH_NONCE,
    ReplayAPI,
    ReplayShells,
    load,
    scenarios,
)

from clusterfix_tui.core.checks import (
    all_checks,
    cni,
    conntrack,
    dns,
    firewall,
    flannel,
    fold_symptoms,
    host,
    iptables,
    kubeconfig,
    pods,
    run_checks,
    underlay,
)
from clusterfix_tui.core.checks.connectivity import transport_finding
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.model import CLUSTER, STEP_ORDER, Finding
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo, build_snapshot
from clusterfix_tui.transports import base as T

KNOWN_CODES = {
    "IPTABLES_BACKEND_CONFLICT", "FORWARD_DROP", "KUBE_PROXY_INCOMPATIBLE_CHAIN",
    "KUBE_PROXY_CRASHLOOP", "KUBE_PROXY_NO_RULES", "CNI_BRIDGE_CONFLICT", "CNI_STRAY_CONFLIST",
    "FLANNEL_STALE_VTEP", "FLANNEL_STALE_SUBNET", "FLANNEL_MISSING_ROUTE", "FLANNEL_CRASHLOOP",
    "WORKER_KUBECONFIG_BROKEN", "IP_FORWARD_OFF", "BR_NETFILTER_OFF", "FIREWALL_REJECT",
    "FIREWALL_POLICY_DROP", "VXLAN_UNDERLAY_BLOCKED",
    "IPVS_MODULES_MISSING", "PROBE_NO_ROUTE", "NODE_NOT_READY", "POD_NOT_RUNNING",
    "SSH_UNREACHABLE", "SSH_AUTH_FAILED", "HOST_KEY_UNKNOWN", "HOST_KEY_CHANGED",
    "SUDO_PASSWORD_REQUIRED", "FACTS_UNREADABLE", "NODE_FACTS_TIMEOUT", "CONNTRACK_TABLE_FULL",
    "DNS_NO_ENDPOINTS", "DNS_POD_NOT_RUNNING", "DNS_SCALED_TO_ZERO",
}
# report-only codes: no step acts on them (docs/findings.md)
REPORT_ONLY = {"NODE_NOT_READY", "DNS_NO_ENDPOINTS", "DNS_SCALED_TO_ZERO"}


def _lab(name: str):
    rec = load(name)
    snap = build_snapshot(ReplayAPI(rec))
    facts = {n: parse_facts(n, out, LAB_NONCE) for n, out in rec["facts"].items()}
    return rec, snap, facts


# -- whole scenarios recorded on the lab ---------------------------------------------------------

def test_recordings_exist_for_healthy_and_every_fault():
    have = set(scenarios())
    assert "healthy" in have
    assert {"iptables-shadow", "iptables-foreign-rule", "forward-drop", "cni-bridge-conflict",
            "flannel-stale-vtep", "flannel-stale-subnet", "kube-proxy-crashloop",
            "worker-kubeconfig", "ip-forward-off", "br-netfilter-off", "firewall-reject"} <= have


@pytest.mark.parametrize("name", scenarios())
def test_recorded_scenario_gives_exactly_its_findings(name):
    rec, snap, facts = _lab(name)
    assert not snap.errors
    for f in facts.values():
        assert f.complete and not f.parse_errors, f.parse_errors
    findings, errors = run_checks(snap, facts)
    assert errors == []
    got = sorted((f.code, f.node) for f in findings)
    assert got == sorted(tuple(e) for e in rec["expected"])
    for f in findings:
        assert f.code in KNOWN_CODES
        assert f.step in STEP_ORDER or (f.step is None and f.code in REPORT_ONLY)
        assert f.evidence and f.title and f.reference and f.explanation


def test_healthy_flannel_layout_is_not_a_finding():
    """flannel.1 = subnet network address /32, and `via 10.244.Y.0 dev flannel.1 onlink`."""
    _, snap, facts = _lab("healthy")
    for name, f in facts.items():
        net = snap.nodes[name].pod_cidr.split("/")[0]
        assert f"{net}/32" in [f"{a['local']}/{a['prefixlen']}" for link in f.addrs
                               if link["ifname"] == "flannel.1" for a in link["addr_info"]]
        onlink = [r for r in f.routes if r.get("dev") == "flannel.1"]
        assert onlink and all("onlink" in r["flags"] and r["gateway"] == r["dst"].split("/")[0]
                              for r in onlink)
    assert flannel.check(snap, facts) == []


def test_shadow_data_for_the_repair_step():
    _, snap, facts = _lab("iptables-shadow")
    (f,) = iptables.check(snap, facts)
    assert f.code == "IPTABLES_BACKEND_CONFLICT" and f.severity == "error"
    assert f.data["kube_proxy_backend"] == "nft" and f.data["other_backend"] == "legacy"
    assert "KUBE-SERVICES" in f.data["stale_chains"]["nat"]
    assert f.data["shadows_live_path"] and not f.data["cosmetic"]
    assert all(r.startswith("-A ") and "DNAT" in r for r in f.data["shadowing_rules"])
    assert any("KUBE-IPTABLES-HINT" in e for e in f.evidence)


def test_stale_rules_without_reachable_dnat_are_cosmetic():
    _, snap, facts = _lab("iptables-shadow")
    node = next(n for n, f in facts.items() if f.legacy and f.legacy.kube_chains())
    f = facts[node]
    nat = f.legacy.tables["nat"]
    cut = dataclasses.replace(nat, rules=tuple(r for r in nat.rules if r.chain not in ("PREROUTING", "OUTPUT")))
    legacy = dataclasses.replace(f.legacy, tables=f.legacy.tables | {"nat": cut})
    (x,) = iptables.backend_conflict(snap, node, dataclasses.replace(f, legacy=legacy))
    assert x.severity == "warning" and x.data["cosmetic"] and x.data["shadowing_rules"] == []


def test_foreign_rule_cause_and_handles():
    _, snap, facts = _lab("iptables-foreign-rule")
    (f,) = [x for x in iptables.check(snap, facts) if x.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN"]
    assert f.data["cause"] == "foreign-nft-rule" and f.data["recommend_backend_switch"] is False
    (r,) = f.data["foreign_rules"]
    assert r["family"] == "ip" and r["table"] == "nat" and r["chain"].startswith("KUBE-SEP-")
    assert isinstance(r["handle"], int) and "ct state new" in r["text"]
    assert any("is incompatible, use 'nft' tool" in e for e in f.evidence)


def test_version_skew_is_never_a_backend_switch():
    """Unreadable rules that carry xt expressions were written by an iptables: version skew."""
    _, snap, facts = _lab("iptables-foreign-rule")
    node = next(n for n, f in facts.items() if f.incompatible_chains)
    f = facts[node]
    rs = f.nft_ruleset
    chain = f.incompatible_chains["nat"][0]
    # drop the raw-nft rule, keep the iptables-written ones: what a newer iptables leaves behind
    kept = tuple(r for r in rs.rules if not (r.chain == chain and not r.has_xt and
                                             iptables._rule_is_nft_native(r)))
    assert len(kept) < len(rs.rules)
    skew = dataclasses.replace(f, nft_ruleset=dataclasses.replace(rs, rules=kept))
    (x,) = iptables.incompatible_chain(snap, node, skew)
    assert x.data["cause"] == "version-skew"
    assert x.data["recommend_backend_switch"] is False and x.data["foreign_rules"] == []
    assert "112477" in x.reference
    assert "not a backend mismatch" in x.explanation


def test_backend_mismatch_from_kube_proxy_logs_only():
    _, snap, facts = _lab("healthy")
    node = "node-2"
    pod = snap.kube_proxy_pods[node][0]
    line = ('E1126 00:00:00.000000 1 proxier.go:1564] "Failed to execute iptables-restore" '
            "err=\"iptables v1.8.9 (nf_tables): chain `KUBE-SEP-XYZ' in table `nat' is "
            "incompatible, use 'nft' tool.\"")
    pods_ = dict(snap.kube_proxy_pods) | {node: [dataclasses.replace(pod, log_tail=(line,))]}
    snap2 = dataclasses.replace(snap, kube_proxy_pods=pods_)
    f = facts[node]
    # host tools on legacy, kube-proxy on nft (hint chain present)
    legacy_host = dataclasses.replace(f, host_iptables="legacy")
    (x,) = iptables.incompatible_chain(snap2, node, legacy_host)
    assert x.data["cause"] == "backend-mismatch"
    assert x.data["chains"] == [{"table": "nat", "chain": "KUBE-SEP-XYZ"}]
    # same backend everywhere: kube-proxy's own iptables is the older one -> version skew
    (y,) = iptables.incompatible_chain(snap2, node, f)
    assert y.data["cause"] == "version-skew" and y.data["recommend_backend_switch"] is False


def test_forward_drop_in_other_backend():
    _, snap, facts = _lab("forward-drop")
    (f,) = [x for x in iptables.check(snap, facts) if x.code == "FORWARD_DROP"]
    assert f.data["backend"] == "legacy" and f.data["kube_proxy_backend"] == "nft"
    assert any(":FORWARD DROP" in e for e in f.evidence)


def test_forward_drop_with_flannel_accepts_is_fine():
    f = parse_facts("a", (FACTS_DATA / "node-a-healthy.out").read_text(), SCRATCH_NONCE)
    filt = f.nft_filter.tables["filter"]
    dropped = dataclasses.replace(filt, chains=filt.chains | {"FORWARD": "DROP"})
    f2 = dataclasses.replace(f, nft_filter=dataclasses.replace(f.nft_filter, tables={"filter": dropped}))
    assert iptables.forward_drop(ClusterSnapshot(), "a", f2) == []  # FLANNEL-FWD accepts -s and -d
    no_accept = dataclasses.replace(dropped, rules=tuple(r for r in dropped.rules if r.chain != "FLANNEL-FWD"))
    f3 = dataclasses.replace(f, nft_filter=dataclasses.replace(f.nft_filter, tables={"filter": no_accept}))
    (x,) = iptables.forward_drop(ClusterSnapshot(), "a", f3)
    assert x.data["backend"] == "nft"


def test_firewall_reject_rules_listed_for_removal():
    _, snap, facts = _lab("firewall-reject")
    (f,) = firewall.check(snap, facts)
    chains = {r["chain"] for r in f.data["rules"]}
    assert chains == {"INPUT", "FORWARD"}
    assert all(r["rule"].startswith("-A ") and r["backend"] == "nft" for r in f.data["rules"])


def test_crashloop_folds_no_rules_and_carries_the_log():
    _, snap, facts = _lab("kube-proxy-crashloop")
    findings, _ = run_checks(snap, facts)
    (f,) = findings
    assert f.code == "KUBE_PROXY_CRASHLOOP" and f.data["reason"] == "CrashLoopBackOff"
    assert f.data["pod"] and f.data["namespace"] == "kube-system" and f.data["daemonset"] == "kube-proxy"
    assert any("Error running ProxyServer" in ln for ln in f.data["log_tail"])
    assert [s["code"] for s in f.data["symptoms"]] == ["KUBE_PROXY_NO_RULES"]
    raw = iptables.check(snap, facts) + pods.check(snap, facts)
    assert {x.code for x in raw} == {"KUBE_PROXY_CRASHLOOP", "KUBE_PROXY_NO_RULES"}


def test_cni_bridge_conflict_data():
    _, snap, facts = _lab("cni-bridge-conflict")
    (f,) = cni.check(snap, facts)
    node = snap.nodes[f.node]
    assert f.data["pod_cidr"] == node.pod_cidr
    assert f.data["expected"] == node.pod_cidr.replace(".0/24", ".1/24")
    assert f.data["wrong_addresses"] and all(a not in f.data["expected"] for a in f.data["wrong_addresses"])
    assert f.data["flannel_pod"]
    findings, _ = run_checks(snap, facts)
    assert "FLANNEL_CRASHLOOP" in [s["code"] for s in findings[0].data.get("symptoms", [])]


def test_stale_vtep_names_peer_and_macs():
    _, snap, facts = _lab("flannel-stale-vtep")
    found = flannel.check(snap, facts)
    assert {f.node for f in found} == {"node-1", "node-3"}
    for f in found:
        peer = snap.nodes[f.data["peer_node"]]
        assert f.data["expected_mac"] == peer.vtep_mac and f.data["wrong_mac"] != peer.vtep_mac
        assert "neigh" in f.data["where"] and f.data["peer_ip"] == peer.internal_ip
        assert f.data["peer_subnet_gw"] == peer.pod_cidr.split("/")[0]


def test_stale_vtep_from_scratch_namespaces():
    a = parse_facts("node-a", (FACTS_DATA / "node-a-healthy.out").read_text(), SCRATCH_NONCE)
    b = parse_facts("node-b", (FACTS_DATA / "node-b-faults.out").read_text(), SCRATCH_NONCE)
    mac_a = (FACTS_DATA / "vtep-a.txt").read_text().strip()
    mac_b = (FACTS_DATA / "vtep-b.txt").read_text().strip()
    snap = ClusterSnapshot(nodes={
        "node-a": _node("node-a", "10.213.250.11", "10.244.0.0/24", mac_a),
        "node-b": _node("node-b", "10.213.250.12", "10.244.1.0/24", mac_b),
    }, flannel_network="10.244.0.0/16", flannel_backend="vxlan")
    found = flannel.check(snap, {"node-a": a, "node-b": b})
    assert [(f.code, f.node, f.data["peer_node"]) for f in found] == [("FLANNEL_STALE_VTEP", "node-b", "node-a")]
    assert found[0].data["wrong_mac"] == "aa:bb:cc:dd:ee:01"
    assert found[0].data["expected_mac"] == mac_a.lower()


def _node(name, ip, cidr, mac):
    import json

    return NodeInfo(name=name, internal_ip=ip, addresses=({"type": "InternalIP", "address": ip},),
                    pod_cidr=cidr, conditions={"Ready": {"status": "True"}},
                    annotations={"flannel.alpha.coreos.com/backend-data": json.dumps({"VtepMAC": mac}),
                                 "flannel.alpha.coreos.com/public-ip": ip},
                    labels={}, kubelet_version="v1.31.2")


def test_stale_subnet_data():
    _, snap, facts = _lab("flannel-stale-subnet")
    (f,) = [x for x in flannel.check(snap, facts) if x.code == "FLANNEL_STALE_SUBNET"]
    cidr = snap.nodes[f.node].pod_cidr
    assert f.data["expected_address"] == cidr.replace("/24", "/32")
    assert f.data["stale_addresses"] and f.data["stale_routes"]
    assert all(r["prefsrc"] and r["dev"] == "flannel.1" for r in f.data["stale_routes"])


def test_missing_route_when_a_peer_route_is_gone():
    _, snap, facts = _lab("healthy")
    f = facts["node-1"]
    gone = "10.244.1.0/24"
    f2 = dataclasses.replace(f, routes=tuple(r for r in f.routes if r.get("dst") != gone),
                             route_get={ip: (None if ip.startswith("10.244.1.") else r)
                                        for ip, r in f.route_get.items()})
    (x,) = flannel.check(snap, {"node-1": f2})
    assert x.code == "FLANNEL_MISSING_ROUTE"
    assert x.data["missing"][0]["expected"] == "10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink"
    assert [w["peer_node"] for w in x.data["wrong_route_get"]] == ["node-2"]


def test_worker_kubeconfig_wrong_server():
    _, snap, facts = _lab("worker-kubeconfig")
    (f,) = kubeconfig.check(snap, facts)
    assert f.data["reason"] == "wrong-server" and f.data["kubectl_rc"] not in (0, None)
    assert f.data["expected_server"] == snap.api["server"]
    assert f.data["files"]["/root/.kube/config"] != snap.api["server"]
    assert "/etc/kubernetes/kubelet.conf" in f.data["source_candidates"]


def test_kubeconfig_evidence_has_servers_only():
    for name in scenarios():
        rec = load(name)
        for out in rec["facts"].values():
            assert "certificate-authority-data" not in out and "client-key-data" not in out
            assert "token:" not in out


def test_sysctl_findings():
    _, snap, facts = _lab("ip-forward-off")
    assert [(f.code, f.data["value"]) for f in host.check(snap, facts)] == [("IP_FORWARD_OFF", "0")]
    _, snap, facts = _lab("br-netfilter-off")
    (f,) = host.check(snap, facts)
    assert f.code == "BR_NETFILTER_OFF" and f.data["value"] == "0" and f.data["module_loaded"] is True
    # no /proc/sys/net/bridge at all: br_netfilter not loaded
    n = next(iter(facts))
    f2 = dataclasses.replace(facts[n], sysctls=facts[n].sysctls | {"net.bridge.bridge-nf-call-iptables": None})
    (x,) = [y for y in host.check(snap, {n: f2}) if y.code == "BR_NETFILTER_OFF"]
    assert x.data["module_loaded"] is False


def test_ipvs_modules_missing_only_in_ipvs_mode():
    _, snap, facts = _lab("healthy")
    assert host.check(snap, facts) == []
    ipvs = dataclasses.replace(snap, kube_proxy_mode="ipvs")
    found = host.check(ipvs, facts)
    # this kernel shows modules through /sys/module only: absent names there are "unknown"
    for f in found:
        assert f.code == "IPVS_MODULES_MISSING" and f.data["missing"]


def test_stray_conflist_scratch():
    b = parse_facts("node-b", (FACTS_DATA / "node-b-faults.out").read_text(), SCRATCH_NONCE)
    (f,) = [x for x in cni.check(ClusterSnapshot(), {"node-b": b}) if x.code == "CNI_STRAY_CONFLIST"]
    assert f.data["stray"] == ["/etc/cni/net.d/05-bridge.conf"]
    assert f.data["flannel_file"] == "/etc/cni/net.d/10-flannel.conflist"
    assert f.data["unparseable"] == ["/etc/cni/net.d/99-broken.conflist"]


def test_scratch_faults_node_b_all_found():
    b = parse_facts("node-b", (FACTS_DATA / "node-b-faults.out").read_text(), SCRATCH_NONCE)
    findings, errors = run_checks(ClusterSnapshot(), {"node-b": b})
    assert errors == []
    codes = {f.code for f in findings}
    assert {"IPTABLES_BACKEND_CONFLICT", "FORWARD_DROP", "KUBE_PROXY_INCOMPATIBLE_CHAIN",
            "FIREWALL_REJECT", "IP_FORWARD_OFF", "CNI_STRAY_CONFLIST"} <= codes


def test_probe_no_route_event_and_folding():
    _, snap, facts = _lab("healthy")
    jf = next(p for p in snap.pods if p.name.startswith("jellyfin"))
    ev = {"namespace": jf.namespace, "object": f"Pod/{jf.name}", "kind": "Pod", "name": jf.name,
          "reason": "Unhealthy", "count": 4,
          "message": f'Readiness probe failed: Get "http://{jf.pod_ip}:8096/health": dial tcp '
                     f"{jf.pod_ip}:8096: connect: no route to host"}
    snap2 = dataclasses.replace(snap, warning_events=(ev,))
    (f,) = pods.check(snap2, facts)
    assert f.code == "PROBE_NO_ROUTE" and f.node == jf.node and f.data["probe_ip"] == jf.pod_ip
    assert f.data["deployment"] == "jellyfin" and f.data["container"] and isinstance(f.data["probe"], dict)
    reject = Finding("FIREWALL_REJECT", "error", "node-3", "t")
    kept = fold_symptoms([f, reject])
    assert kept == [reject] and reject.data["symptoms"][0]["code"] == "PROBE_NO_ROUTE"


def test_node_not_ready_and_missing_pod():
    _, snap, facts = _lab("healthy")
    n2 = snap.nodes["node-2"]
    bad = dataclasses.replace(n2, conditions={"Ready": {"status": "False", "reason": "KubeletNotReady",
                                                        "message": "network plugin not ready"}})
    snap2 = dataclasses.replace(snap, nodes=snap.nodes | {"node-2": bad},
                                flannel_pods={k: v for k, v in snap.flannel_pods.items() if k != "node-3"})
    got = sorted((f.code, f.node) for f in pods.check(snap2, facts))
    assert got == [("NODE_NOT_READY", "node-2"), ("POD_NOT_RUNNING", "node-3")]


@pytest.mark.parametrize("exc,code", [
    (T.NodeUnreachable("timed out"), "SSH_UNREACHABLE"),
    (T.AuthFailed("denied"), "SSH_AUTH_FAILED"),
    (T.HostKeyUnknown("node-3", "ssh-ed25519", "SHA256:abc", "/k", "node-3 ssh-ed25519 AAAA"), "HOST_KEY_UNKNOWN"),
    (T.HostKeyChanged("changed"), "HOST_KEY_CHANGED"),
    (T.SudoPasswordRequired("sudo: a password is required"), "SUDO_PASSWORD_REQUIRED"),
    (T.TransportError("weird"), "SSH_UNREACHABLE"),
])
def test_transport_errors_become_findings(exc, code):
    f = transport_finding("node-3", "10.0.0.3", exc)
    assert f.code == code and f.node == "node-3" and f.severity == "critical" and f.step is None
    assert f.data["address"] == "10.0.0.3" and str(exc) in f.evidence[0]
    if code == "HOST_KEY_UNKNOWN":
        assert f.data["fingerprint"] == "SHA256:abc" and f.data["key_line"].startswith("node-3 ")


# -- diagnose() orchestration on replayed transports ---------------------------------------------

def test_diagnose_replayed_fault_and_unreachable_nodes():
    rec = load("flannel-stale-vtep")
    errors = {"node-3": T.HostKeyChanged("node-3: host key changed")}
    shells = ReplayShells(rec, errors=errors)
    events = []
    d = diagnose(ReplayAPI(rec), shells, on_progress=lambda *a: events.append(a))
    got = sorted((f.code, f.node) for f in d.findings)
    assert got == [("FLANNEL_STALE_VTEP", "node-1"), ("HOST_KEY_CHANGED", "node-3")]
    assert set(d.facts) == {"node-1", "node-2"} and set(d.node_errors) == {"node-3"}
    # one round trip per node, sent to the node's InternalIP, with its peers' pod IPs
    assert all(len(s.scripts) == 1 for s in shells.opened.values())
    assert shells.addresses["node-1"] == d.snapshot.nodes["node-1"].internal_ip
    script = shells.opened["node-1"].scripts[0]
    peers = d.snapshot.peer_pod_ips("node-1")
    assert peers
    for ip in peers:  # every peer looked up (one `ip -batch`, each answer its own section)
        assert f"{ip.encode().hex()} {ip}" in script, ip
    kinds = [e[0] for e in events]
    assert kinds[0] == "snapshot" and kinds[-1] == "checks" and kinds.count("node-done") == 2
    doc = d.to_dict()
    assert doc["nodes"]["node-3"]["read"] is False and doc["finding_counts"]["HOST_KEY_CHANGED"] == 1
    import json

    json.dumps(doc)  # serialisable as is


def test_diagnose_truncated_output_is_facts_unreadable_with_raw_kept():
    rec = load("healthy")
    cut = rec["facts"]["node-2"][:5000]
    d = diagnose(ReplayAPI(rec), ReplayShells(rec, outputs={"node-2": cut}))
    (f,) = d.findings
    assert f.code == "FACTS_UNREADABLE" and f.node == "node-2"
    nonce = f.data["raw"].split()[1]
    assert f.data["raw"] == cut.replace("labnonce0001", nonce)[:4096]
    # the sections that did arrive are kept, raw, in the diagnosis
    assert d.facts["node-2"].section("id_u").stdout == "0\n" and "node-2" in d.node_errors
    assert any("DONE" in e or "ends inside" in e for e in f.data["errors"])


def test_diagnose_a_hung_section_is_node_facts_timeout_and_the_node_is_still_read():
    """node-2's recorded output, with its `iptables -V` section as the script prints a section
    its deadline killed (rc 137 and the script's own mark): the node is read, checked, and has
    a NODE_FACTS_TIMEOUT naming the section; nothing is planned from it."""
    import re

    from clusterfix_tui.core.checks.connectivity import NodeFactsTimeoutData
    from clusterfix_tui.core.facts import SECTION_TIMEOUT
    from clusterfix_tui.core.fixes import get_step

    rec = load("healthy")
    out = rec["facts"]["node-2"]
    hung, n = re.subn(
        r"(BEGIN iptables_version\n).*?(\n@@CFX \S+ ERR iptables_version\n).*?"
        r"(\n@@CFX \S+ END iptables_version rc=)\d+",
        lambda m: f"{m.group(1)}{m.group(2)}cfx: timed out after {SECTION_TIMEOUT}s (killed)"
                  f"{m.group(3)}137", out, flags=re.S)
    assert n == 1
    d = diagnose(ReplayAPI(rec), ReplayShells(rec, outputs={"node-2": hung}))
    (f,) = d.findings
    assert (f.code, f.node, f.severity, f.step) == ("NODE_FACTS_TIMEOUT", "node-2", "warning", None)
    assert isinstance(f.data, NodeFactsTimeoutData)
    assert f.data.sections == ["iptables_version"] and f.data.commands == ["iptables -V"]
    assert f.data.timeout == SECTION_TIMEOUT and "iptables -V" in f.evidence[0]
    assert set(d.facts) == {"node-1", "node-2", "node-3"} and not d.node_errors
    assert d.to_dict()["finding_counts"] == {"NODE_FACTS_TIMEOUT": 1}
    for step in STEP_ORDER:
        assert not get_step(step).plan(d).actions, step

    # a hang in a section a fault-detecting check needs: node-2's nat table (kube-proxy's rules).
    # Printed empty by a section that RAN, it is KUBE_PROXY_NO_RULES and a kube-proxy restart is
    # planned; killed at its deadline, it is no finding, no action, and "not checked" instead.
    def nat(err: str, rc: int) -> str:
        new, k = re.subn(r"(BEGIN nft_save_nat\n).*?(\n@@CFX \S+ ERR nft_save_nat\n).*?"
                         r"(\n@@CFX \S+ END nft_save_nat rc=)\d+",
                         lambda m: f"{m.group(1)}{m.group(2)}{err}{m.group(3)}{rc}", out, flags=re.S)
        assert k == 1
        return new

    empty = diagnose(ReplayAPI(rec), ReplayShells(rec, outputs={"node-2": nat("", 0)}))
    assert [(f.code, f.node) for f in empty.findings] == [("KUBE_PROXY_NO_RULES", "node-2")]
    assert any(get_step(s).plan(empty).actions for s in STEP_ORDER)
    d = diagnose(ReplayAPI(rec), ReplayShells(rec, outputs={
        "node-2": nat(f"cfx: timed out after {SECTION_TIMEOUT}s (killed)", 137)}))
    assert [(f.code, f.node) for f in d.findings] == [("NODE_FACTS_TIMEOUT", "node-2")]
    for step in STEP_ORDER:
        assert not get_step(step).plan(d).actions, step
    (g,) = [g for g in d.not_checked if "KUBE_PROXY_NO_RULES" in g["codes"]]
    assert g["nodes"] == ["node-2"] and g["why"].startswith("nft_save_nat timed out after")
    (t,) = d.findings
    assert "KUBE_PROXY_NO_RULES" in t.data.not_checked and "IP_FORWARD_OFF" not in t.data.not_checked
    assert any(e.startswith("not checked on this node") and "KUBE_PROXY_NO_RULES" in e
               for e in t.evidence)


def test_diagnose_api_failure_is_recorded_not_raised():
    rec = load("healthy")
    d = diagnose(ReplayAPI(rec, fail={"list_events", "pod_log"}), ReplayShells(rec))
    assert d.healthy
    assert {e["what"].split()[0] for e in d.snapshot.errors} >= {"list_events", "pod_log"}


def test_diagnose_skip_nodes():
    rec = load("healthy")
    d = diagnose(ReplayAPI(rec), ReplayShells(rec), skip_nodes=["node-2"])
    assert set(d.facts) == {"node-1", "node-3"} and d.skipped_nodes == ["node-2"]


def test_every_check_can_fail(monkeypatch):
    """Removing any check module loses its scenario's finding (no check is dead weight)."""
    expected_by_check = {
        iptables.check: "iptables-shadow", firewall.check: "firewall-reject",
        host.check: "ip-forward-off", cni.check: "cni-bridge-conflict",
        flannel.check: "flannel-stale-vtep", pods.check: "kube-proxy-crashloop",
        kubeconfig.check: "worker-kubeconfig", underlay.check: "underlay-blocked",
        conntrack.check: "conntrack-full",
        dns.check: "dns-crashloop",
    }
    assert set(expected_by_check) == set(all_checks())
    for check, scenario in expected_by_check.items():
        if scenario == "conntrack-full":  # the lab cannot fill a table: the healthy recording, one
            rec, snap, facts = _lab("healthy")  # node's conntrack section full (conntrack_samples)
            facts["node-2"] = parse_facts("node-2", full_table_output(rec["facts"]["node-2"], LAB_NONCE),
                                          LAB_NONCE)
            rec = {"expected": [["CONNTRACK_TABLE_FULL", "node-2"]]}
        else:
            rec, snap, facts = _lab(scenario)
        without = [c for c in all_checks() if c is not check]
        findings, _ = run_checks(snap, facts, without)
        assert sorted((f.code, f.node) for f in findings) != sorted(tuple(e) for e in rec["expected"])


def test_a_raising_check_is_reported_not_fatal():
    def broken(snapshot, facts):
        raise KeyError("boom")

    _, snap, facts = _lab("ip-forward-off")
    findings, errors = run_checks(snap, facts, [broken, host.check])
    assert [f.code for f in findings] == ["IP_FORWARD_OFF"] and "boom" in errors[0]


def test_cluster_constant_for_unplaced_probe():
    snap = ClusterSnapshot(warning_events=({"namespace": "x", "name": "p", "object": "Pod/p",
                                            "reason": "Unhealthy", "count": 1,
                                            "message": "probe failed: no route to host"},))
    (f,) = pods.check(snap, {})
    assert f.node == CLUSTER


def test_recordings_unchanged_by_checks():
    rec, snap, facts = _lab("iptables-shadow")
    before = copy.deepcopy(rec)
    run_checks(snap, facts)
    assert rec == before


def test_diagnose_without_nodes_list_is_not_healthy():
    rec = load("healthy")
    api = ReplayAPI(rec, fail={"list_nodes"})
    d = diagnose(api, ReplayShells(rec))
    assert not d.healthy and "did not list nodes" in d.error and d.facts == {}
    assert "list_pods" not in api.calls  # nothing else asked of a dead API
    assert d.to_dict()["error"] == d.error


# -- the command -----------------------------------------------------------------------------------

def _cli(*args, timeout=60):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "clusterfix_tui", "diagnose", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_command_exit_2_when_the_api_is_down(tmp_path):
    import json

    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: 'https://127.0.0.1:1', "
        "insecure-skip-tls-verify: true}\n  name: dead\ncontexts:\n- context: {cluster: dead, user: u}\n"
        "  name: dead\ncurrent-context: dead\nusers:\n- name: u\n  user: {token: not-a-secret}\n")
    ssh = tmp_path / "ssh_config"
    ssh.write_text("")
    r = _cli("--kubeconfig", str(kc), "--ssh-config", str(ssh))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "could not diagnose" in r.stderr and "COULD NOT DIAGNOSE" in r.stdout
    r = _cli("--kubeconfig", str(kc), "--ssh-config", str(ssh), "--json", "-q")
    assert r.returncode == 2 and json.loads(r.stdout)["healthy"] is False
    assert "not-a-secret" not in r.stdout + r.stderr


def test_command_exit_2_on_bad_flags(tmp_path):
    r = _cli("--kubeconfig", str(tmp_path / "nope"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope" in r.stderr


def test_human_rendering_of_findings():
    from clusterfix_tui.commands.diagnose import render_text

    rec = load("forward-drop")
    d = diagnose(ReplayAPI(rec), ReplayShells(rec))
    text = render_text(d)
    (f,) = d.findings
    assert f"[ERROR] FORWARD_DROP on {f.node}" in text and "repair step: iptables" in text
    assert all(f"| {e}" in text for e in f.evidence)
    assert text.count("Ready") >= 3
