"""The cluster shape (core/shape.py) read from API objects shaped like real clusters', and what
it changes: pods only through their owner, mirror pods never deleted, no flannel/kube-proxy
finding or action outside their shapes, per-family checks, iptables-wrappers' backend rule."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.checks._common import detect_backend
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes.cni_bridge import STEP as CNI_STEP
from clusterfix_tui.core.fixes.pods import STEP as PODS_STEP
from clusterfix_tui.core.model import Finding
from clusterfix_tui.core.shape import classify_daemonset, detect_shape, not_checked, note_lines
from clusterfix_tui.core.snapshot import build_snapshot


def ds(ns: str, name: str, image: str, labels: dict[str, str], uid: str,
       volumes: list[str] = ()) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "uid": uid, "labels": labels},
            "spec": {"template": {"spec": {
                "containers": [{"name": name.split("-")[0], "image": image}],
                "volumes": [{"name": v, "configMap": {"name": v}} for v in volumes]}}},
            "status": {"desiredNumberScheduled": 2, "numberReady": 2}}


def pod(ns: str, name: str, node: str, image: str, owner: dict[str, Any] | None = None,
        annotations: dict[str, str] | None = None, waiting: str | None = None) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {"metadata": {"namespace": ns, "name": name, "annotations": annotations or {},
                         "ownerReferences": [owner] if owner else []},
            "spec": {"nodeName": node, "hostNetwork": True,
                     "containers": [{"name": "kube-proxy" if "kube-proxy" in image else "c",
                                     "image": image}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "kube-proxy" if "kube-proxy" in image else "c", "ready": not waiting,
                 "restartCount": 7 if waiting else 0, "state": state}]}}


def node(name: str, cidrs: list[str], ann: dict[str, str] | None = None,
         labels: dict[str, str] | None = None, version: str = "v1.30.2") -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": ann or {}, "labels": labels or {}},
            "spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": version,
                                    "containerRuntimeVersion": "containerd://1.7.13"}}}


class API:
    def __init__(self, nodes, pods, dss, cms=None):
        self.nodes, self.pods, self.dss, self.cms = nodes, pods, dss, cms or {}

    def describe(self):
        return {"context": "t"}

    def version(self):
        return {"gitVersion": "v1.30.2"}

    def list_nodes(self):
        return self.nodes

    def list_pods(self, namespace=None, label_selector=None):
        return [p for p in self.pods if namespace in (None, p["metadata"]["namespace"])]

    def list_daemonsets(self, namespace=None):
        return [d for d in self.dss if namespace in (None, d["metadata"]["namespace"])]

    def get_configmap(self, namespace, name):
        return self.cms.get(f"{namespace}/{name}")

    def list_services(self, namespace=None):
        return []

    def list_endpoints(self, namespace=None):
        return []

    def list_events(self, namespace=None):
        return []

    def pod_log(self, *a, **k):
        return ""


KP_IMG = "registry.k8s.io/kube-proxy:v1.30.2"
FL_IMG = "ghcr.io/flannel-io/flannel:v0.26.1"


def test_kube_proxy_exporter_is_not_kube_proxy_and_its_pods_are_never_kube_proxys():
    exporter = ds("monitoring", "kube-proxy-exporter", "quay.io/prometheus/node-exporter:v1",
                  {"k8s-app": "kube-proxy-exporter"}, "u-exp")
    kp = ds("kube-system", "kube-proxy", KP_IMG, {"k8s-app": "kube-proxy"}, "u-kp")
    assert classify_daemonset(exporter) == set() and classify_daemonset(kp) == {"kube-proxy"}
    pods = [pod("monitoring", "kube-proxy-exporter-abcde", "n1", "quay.io/prometheus/node-exporter:v1",
                {"kind": "DaemonSet", "name": "kube-proxy-exporter", "uid": "u-exp", "controller": True},
                waiting="CrashLoopBackOff"),
            # a pod claiming the right name but owned by ANOTHER DaemonSet uid (an old one)
            pod("kube-system", "kube-proxy-old", "n1", KP_IMG,
                {"kind": "DaemonSet", "name": "kube-proxy", "uid": "u-gone", "controller": True}),
            pod("kube-system", "kube-proxy-x1", "n1", KP_IMG,
                {"kind": "DaemonSet", "name": "kube-proxy", "uid": "u-kp", "controller": True})]
    snap = build_snapshot(API([node("n1", ["10.244.0.0/24"])], pods, [exporter, kp]),
                          with_logs=False)
    assert [p.ref for p in snap.kube_proxy_pods["n1"]] == ["kube-system/kube-proxy-x1"]
    shape = detect_shape(snap, {})
    assert shape.kube_proxy == "daemonset" and shape.kube_proxy_workload.ref == "kube-system/kube-proxy"
    findings, _ = run_checks(replace(snap, shape=shape), {})
    assert not any("exporter" in json.dumps(f.data) for f in findings)


def test_flannel_daemonset_in_any_namespace_by_image_and_its_configmap_by_volume():
    fl = ds("networking", "flannel", FL_IMG, {"app": "my-flannel"}, "u-fl", volumes=["flannel-cfg"])
    cms = {"networking/flannel-cfg": {"data": {"net-conf.json": json.dumps(
        {"Network": "10.50.0.0/16", "Backend": {"Type": "vxlan", "Port": 4789,
                                                "DirectRouting": True}})}}}
    pods = [pod("networking", "flannel-q1", "n1", FL_IMG,
                {"kind": "DaemonSet", "name": "flannel", "uid": "u-fl", "controller": True})]
    snap = build_snapshot(API([node("n1", ["10.50.1.0/24"])], pods, [fl], cms), with_logs=False)
    shape = detect_shape(snap, {})
    assert shape.cni == "flannel" and shape.flannel.daemonset.ref == "networking/flannel"
    assert (shape.flannel.backend, shape.flannel.vxlan_port, shape.flannel.direct_routing) == \
        ("vxlan", 4789, True)
    assert snap.flannel_configmap == "networking/flannel-cfg"
    assert [p.name for p in snap.flannel_pods["n1"]] == ["flannel-q1"]
    assert "DirectRouting" in shape.lines()[0] and "port 4789" in shape.lines()[0]


def _kp_crash(node_name: str, pod_name: str, static: bool) -> Finding:
    return Finding(code="KUBE_PROXY_CRASHLOOP", severity="error", node=node_name, title="t",
                   evidence=(), explanation="", reference="", step="pods",
                   data={"namespace": "kube-system", "pod": pod_name, "daemonset": None,
                         "static": static, "component": "kube_proxy"})


class Diag:
    def __init__(self, snap, findings, facts=None):
        self.snapshot, self.findings, self.facts = snap, findings, facts or {}
        self.shape = snap.shape
        self.extra = {}


def test_static_kube_proxy_mirror_pod_is_never_deleted():
    mirror = pod("kube-system", "kube-proxy-n1", "n1", KP_IMG,
                 {"kind": "Node", "name": "n1", "uid": "node-uid", "controller": True},
                 {"kubernetes.io/config.mirror": "df7cc47f8477b6b1226d7d23a904867b"},
                 waiting="CrashLoopBackOff")
    snap = build_snapshot(API([node("n1", ["10.244.0.0/24"],
                                    labels={"node-role.kubernetes.io/control-plane": ""})],
                              [mirror], []), with_logs=False)
    shape = detect_shape(snap, {})
    assert shape.kube_proxy == "static"
    snap = replace(snap, shape=shape)
    findings, _ = run_checks(snap, {})
    (f,) = [x for x in findings if x.code == "KUBE_PROXY_CRASHLOOP"]
    assert f.data["static"] is True and f.data["daemonset"] is None
    plan = PODS_STEP.plan(Diag(snap, findings))
    assert not any(a.api and a.api.get("verb") in ("delete_pod", "restart_daemonset")
                   for a in plan.actions)
    assert any("mirror of a static pod" in n for n in plan.notes)
    # with crictl on a kubeadm node: the node-local restart instead (never the API delete)
    facts = {"n1": NodeFacts(node="n1", binaries={"crictl": "/usr/bin/crictl"})}
    plan = PODS_STEP.plan(Diag(snap, findings, facts))
    (a,) = plan.actions
    assert a.kind == "shell" and "crictl stop" in a.command and a.target == "n1"


def test_calico_cluster_no_flannel_finding_no_cni_action_and_says_why():
    calico = ds("calico-system", "calico-node", "docker.io/calico/node:v3.27.0",
                {"k8s-app": "calico-node"}, "u-cal")
    kp = ds("kube-system", "kube-proxy", KP_IMG, {"k8s-app": "kube-proxy"}, "u-kp")
    # a node migrated from flannel: leftover annotation; its podCIDR is not routed via flannel.1
    nodes = [node("n1", ["192.168.0.0/24"], {"flannel.alpha.coreos.com/backend-data":
                                              '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}'}),
             node("n2", ["192.168.1.0/24"], {"flannel.alpha.coreos.com/backend-data":
                                              '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}'})]
    snap = build_snapshot(API(nodes, [], [calico, kp]), with_logs=False)
    route_sec = {"ip_route": P.parse_json_list("[]")}
    from clusterfix_tui.core.facts import Section

    facts = {n: NodeFacts(node=n, complete=True,
                          sections={"ip_route": Section("ip_route", None, "[]", "", 0)},
                          links=({"ifname": "flannel.1"},),
                          addrs=({"ifname": "cni0", "addr_info": [
                              {"family": "inet", "local": "10.244.7.1", "prefixlen": 24}]},),
                          sysctls={"net.bridge.bridge-nf-call-iptables": "0"})
             for n in ("n1", "n2")}
    assert route_sec
    shape = detect_shape(snap, facts)
    assert shape.cni == "calico"
    snap = replace(snap, shape=shape)
    findings, errors = run_checks(snap, facts)
    assert errors == []
    codes = {f.code for f in findings}
    assert not codes & {"FLANNEL_MISSING_ROUTE", "CNI_BRIDGE_CONFLICT", "FLANNEL_STALE_VTEP",
                        "BR_NETFILTER_OFF", "KUBE_PROXY_NO_RULES"}, codes
    plan = CNI_STEP.plan(Diag(snap, findings))
    assert plan.actions == () and any("CNI repair is not offered" in n for n in plan.notes)
    lines = note_lines(shape)
    assert any("FLANNEL_MISSING_ROUTE" in ln and "calico" in ln for ln in lines)
    assert any(g["why"].startswith("CNI repair is not offered") for g in not_checked(shape))


def test_kube_proxy_free_cilium_no_kube_proxy_finding_or_action():
    cil = ds("kube-system", "cilium", "quay.io/cilium/cilium:v1.15.1", {"k8s-app": "cilium"}, "u-c")
    snap = build_snapshot(API([node("n1", ["10.0.0.0/24"])], [], [cil]), with_logs=False)
    empty_nat = P.parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    facts = {"n1": NodeFacts(node="n1", complete=True, nft_nat=empty_nat)}
    shape = detect_shape(snap, facts)
    assert (shape.cni, shape.kube_proxy) == ("cilium", "absent")
    findings, _ = run_checks(replace(snap, shape=shape), facts)
    assert not [f for f in findings if f.code.startswith("KUBE_PROXY")]
    assert any("KUBE_PROXY_NO_RULES" in ln for ln in note_lines(shape))


def test_ipv6_first_dual_stack_flannel_healthy_node_is_healthy_and_v6_route_loss_is_found():
    fl = ds("kube-flannel", "kube-flannel-ds", FL_IMG, {"app": "flannel"}, "u-fl")
    cms = {"kube-flannel/kube-flannel-cfg": {"data": {"net-conf.json": json.dumps(
        {"Network": "10.244.0.0/16", "IPv6Network": "fd00:10:244::/56", "EnableIPv6": True,
         "Backend": {"Type": "vxlan"}})}}}
    nodes = [node("n1", ["fd00:10:244::/64", "10.244.0.0/24"]),
             node("n2", ["fd00:10:244:1::/64", "10.244.1.0/24"])]
    snap = build_snapshot(API(nodes, [], [fl], cms), with_logs=False)
    from clusterfix_tui.core.facts import Section

    def facts(v6_routes: list[dict[str, Any]]) -> NodeFacts:
        return NodeFacts(
            node="n1", complete=True,
            sections={"ip_route": Section("ip_route", None, "[]", "", 0),
                      "ip6_route": Section("ip6_route", None, "[]", "", 0)},
            addrs=({"ifname": "cni0", "addr_info": [
                {"family": "inet", "local": "10.244.0.1", "prefixlen": 24},
                {"family": "inet6", "local": "fd00:10:244::1", "prefixlen": 64},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
                   {"ifname": "flannel.1", "addr_info": [
                       {"family": "inet", "local": "10.244.0.0", "prefixlen": 32}]},
                   {"ifname": "flannel-v6.1", "addr_info": [
                       {"family": "inet6", "local": "fd00:10:244::", "prefixlen": 128}]}),
            routes=({"dst": "10.244.1.0/24", "gateway": "10.244.1.0", "dev": "flannel.1",
                     "flags": ["onlink"]},),
            routes6=tuple(v6_routes),
            subnet_env={"FLANNEL_SUBNET": "10.244.0.1/24", "FLANNEL_IPV6_SUBNET": "fd00:10:244::1/64"})

    good = [{"dst": "fd00:10:244:1::/64", "gateway": "fd00:10:244:1::", "dev": "flannel-v6.1",
             "flags": ["onlink"]}]
    shape = detect_shape(snap, {"n1": facts(good)})
    assert shape.ip_family == "dual-v6-first" and shape.nodes["n1"].ip_family == "dual-v6-first"
    s2 = replace(snap, shape=shape)
    findings, _ = run_checks(s2, {"n1": facts(good)})
    assert findings == [], [(f.code, f.title) for f in findings]
    findings, _ = run_checks(s2, {"n1": facts([])})
    (f,) = findings
    assert f.code == "FLANNEL_MISSING_ROUTE" and f.data["ip_version"] == 6
    assert f.data["missing"][0]["expected"] == "fd00:10:244:1::/64 via fd00:10:244:1:: dev flannel-v6.1 onlink"


def test_backend_rule_count_fallback_and_hint_chains():
    legacy = P.parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n" + "".join(
        f"-A INPUT -s 10.0.0.{i}/32 -j ACCEPT\n" for i in range(5)) + "COMMIT\n")
    nft = P.parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n")
    f = NodeFacts(node="n", legacy=legacy, nft_filter=nft)
    assert detect_backend(f)[0] == "legacy" and "more rules (5 vs 1" in detect_backend(f)[1]
    f = NodeFacts(node="n", legacy=nft, nft_filter=legacy)
    assert detect_backend(f)[0] == "nft"
    hint = P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")
    f = NodeFacts(node="n", legacy=legacy, nft_filter=nft, nft_mangle=hint)
    assert detect_backend(f) == ("nft", "KUBE-IPTABLES-HINT in iptables-nft-save -t mangle")


def test_stale_rules_are_never_the_ones_kube_proxy_uses():
    """The hint says nft, but only legacy holds KUBE-SERVICES: not called stale."""
    from clusterfix_tui.core.checks.iptables import backend_conflict

    hint = P.parse_iptables_save("*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n")
    legacy = P.parse_iptables_save(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
        "-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n")
    nft_nat = P.parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    f = NodeFacts(node="n", legacy=legacy, nft_nat=nft_nat, nft_mangle=hint)
    from clusterfix_tui.core.snapshot import ClusterSnapshot

    assert backend_conflict(ClusterSnapshot(), "n", f) == []


def test_waiting_for_restarted_pods_follows_the_owner_not_the_label():
    from clusterfix_tui.core.fixes.pods import component_pods_live

    canal = ds("kube-system", "rke2-canal", "rancher/hardened-flannel:v0.25.1", {"k8s-app": "canal"},
               "u-canal")
    pods = [pod("kube-system", "rke2-canal-abcde", "n1", "rancher/hardened-flannel:v0.25.1",
                {"kind": "DaemonSet", "name": "rke2-canal", "uid": "u-canal", "controller": True}),
            pod("kube-system", "flannel-lookalike", "n1", "busybox",
                {"kind": "DaemonSet", "name": "rke2-canal", "uid": "u-other", "controller": True}),
            pod("kube-system", "kube-proxy-n1", "n1", KP_IMG,
                {"kind": "Node", "name": "n1", "uid": "x", "controller": True},
                {"kubernetes.io/config.mirror": "abc"})]
    api = API([node("n1", ["10.42.0.0/24"])], pods, [canal])
    assert [p["metadata"]["name"] for p in component_pods_live(api, "flannel")] == ["rke2-canal-abcde"]
    assert [p["metadata"]["name"] for p in component_pods_live(api, "kube_proxy")] == ["kube-proxy-n1"]


def test_kube_proxy_nftables_mode_rules_checked_in_its_own_table():
    from clusterfix_tui.core.checks.iptables import no_rules

    kp = ds("kube-system", "kube-proxy", KP_IMG, {"k8s-app": "kube-proxy"}, "u-kp")
    cms = {"kube-system/kube-proxy": {"data": {"config.conf": "kind: KubeProxyConfiguration\nmode: nftables\n"}}}
    snap = build_snapshot(API([node("n1", ["10.244.0.0/24"])], [], [kp], cms), with_logs=False)
    with_table = P.NftRuleset(tables=(("ip", "kube-proxy"),),
                              chains=(P.NftChain("ip", "kube-proxy", "services", 3),))
    for rs, want in ((with_table, []), (P.NftRuleset(), ["table ip kube-proxy chain services"])):
        facts = {"n1": NodeFacts(node="n1", complete=True, nft_ruleset=rs)}
        shape = detect_shape(snap, facts)
        assert shape.kube_proxy_mode == "nftables"
        got = no_rules(replace(snap, shape=shape), "n1", facts["n1"])
        assert [m for f in got for m in f.data["missing_chains"]] == want


def test_the_report_shows_the_shape_and_what_was_not_checked_without_node_names():
    from pathlib import Path

    import jsonschema

    from clusterfix_tui.core.report import build_report, render
    from clusterfix_tui.core.report.model import SCHEMA_VERSION  # noqa: F401

    cal = ds("calico-system", "calico-node", "docker.io/calico/node:v3.27.0",
             {"k8s-app": "calico-node"}, "u-cal")
    snap = build_snapshot(API([node("secret-node-7", ["192.168.0.0/24"])], [], [cal]),
                          with_logs=False)
    shape = detect_shape(snap, {})
    events = [{"seq": 1, "ts": "2026-11-30T05:00:00Z", "type": "diagnosis", "phase": "before",
               "findings": [], "nodes": {}, "shape": shape.summary(),
               "not_checked": note_lines(shape)}]
    model = build_report(events)
    schema = json.loads((Path(__file__).parent.parent / "clusterfix_tui" / "core" / "report"
                         / "report_schema.json").read_text())
    jsonschema.validate(model, schema)
    assert model["shape"]["cni"] == "calico" and "nodes" not in model["shape"]
    assert model["shape_lines"][0].startswith("CNI: calico")
    md = render(events, "md")
    assert "Cluster shape" in md and "CNI repair is not offered" in md
    assert "FLANNEL_MISSING_ROUTE" in md
    anon = render(events, "md", anonymize=True)
    assert "secret-node-7" not in anon


def test_shape_line_names_cni_proxy_distribution_and_families() -> None:
    from clusterfix_tui.core.shape import ClusterShape, FlannelShape, NodeShape, shape_line

    s = ClusterShape(distribution="k3s", cni="flannel", kube_proxy="embedded",
                     kube_proxy_mode="iptables", ip_family="dual-v6-first",
                     flannel=FlannelShape(deployment="embedded", backend="vxlan"),
                     nodes={"a": NodeShape("a", iptables="nft")})
    assert shape_line(s) == ("shape: flannel vxlan (embedded) · kube-proxy embedded iptables · "
                             "k3s · dual-v6-first · iptables nft")
    assert shape_line(None) == ""
