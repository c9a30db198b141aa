"""Real Kubernetes API objects (tests/data/realworld/, rows of kind "describe-node-api" in
samples.json) through build_snapshot (the replay API the diagnosis tests use) and the pods check."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from diag_fakes import ReplayAPI, load  # noqa: E402

from clusterfix_tui.core.checks.pods import check as pods_check  # noqa: E402
from clusterfix_tui.core.snapshot import build_snapshot  # noqa: E402

DATA = Path(__file__).parent / "data" / "realworld"
SAMPLES = [s for s in json.loads((DATA / "samples.json").read_text()) if s["kind"] == "describe-node-api"]


def node_from_describe(text: str) -> dict[str, Any]:
    """SYNTHESISED WRAPPER: the Node object a `kubectl describe node` excerpt shows (its name and
    labels; Ready True, an InternalIP from the documentation range)."""
    name, labels, in_labels = "", {}, False
    for ln in text.splitlines():
        if ln.startswith("Name:"):
            name = ln.split(":", 1)[1].strip()
        if ln.startswith("Labels:"):
            in_labels, ln = True, ln[len("Labels:"):]
        elif ln[:1].strip():
            in_labels = False
        if in_labels and "=" in ln:
            k, v = ln.strip().split("=", 1)
            labels[k] = v
    return {"metadata": {"name": name, "labels": labels}, "spec": {},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.50"}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def flannel_daemonset() -> dict[str, Any]:
    """flannel's own manifest's DaemonSet (its nodeAffinity: kubernetes.io/os In [linux])."""
    docs = yaml.safe_load_all((DATA / "flannel-kube-flannel.yml").read_text())
    return next(d for d in docs if isinstance(d, dict) and d.get("kind") == "DaemonSet")


def cluster_with(node: dict[str, Any], real_flannel_ds: bool) -> Any:
    """The healthy lab recording (3 Linux nodes, kube-proxy and flannel DaemonSets) plus the node;
    with real_flannel_ds, flannel's DaemonSet carries the placement of flannel's real manifest."""
    rec = copy.deepcopy(load("healthy"))
    rec["nodes"].append(node)
    if real_flannel_ds:
        spec = flannel_daemonset()["spec"]["template"]["spec"]
        for ds in rec["daemonsets"].get("kube-flannel", []):
            ds["spec"]["template"]["spec"]["affinity"] = copy.deepcopy(spec["affinity"])
    return build_snapshot(ReplayAPI(rec), with_logs=False)


def check_describe_node_api(s: dict[str, Any]) -> None:
    node = node_from_describe((DATA / s["file"]).read_text())
    e = s["expect"]
    assert node["metadata"]["name"] == e["name"]
    snap = cluster_with(node, real_flannel_ds=True)
    codes = sorted(f.code for f in pods_check(snap, {}) if f.node == e["name"])
    assert codes == e["findings"]


@pytest.mark.parametrize("name", [s["file"] for s in SAMPLES])
def test_describe_node_sample(name):
    check_describe_node_api(next(s for s in SAMPLES if s["file"] == name))


def test_windows_node_no_missing_linux_pod_even_without_placement():
    """A Windows node (real labels) in a cluster whose DaemonSets carry no nodeSelector: still no
    'no kube-proxy/flannel pod on this node' (the pods step would restart pods for it).
    Old code: two POD_NOT_RUNNING findings with step 'pods'."""
    node = node_from_describe((DATA / "aks-engine-4176-describe-windows-node-excerpt.txt").read_text())
    snap = cluster_with(node, real_flannel_ds=False)
    assert [f.code for f in pods_check(snap, {}) if f.node == "6837k8s00000000"] == []


def test_linux_node_outside_flannel_affinity():
    """A Linux node with only the pre-1.14 beta.kubernetes.io/os label: flannel's manifest's
    required affinity (kubernetes.io/os In [linux]) does not select it, so no flannel pod is
    expected there; kube-proxy (no selector in the recording) still is."""
    node = node_from_describe((DATA / "kubespray-2588-describe-windows-node-excerpt.txt").read_text())
    node["metadata"]["labels"]["beta.kubernetes.io/os"] = "linux"
    snap = cluster_with(node, real_flannel_ds=True)
    assert snap.daemonsets and any(d.get("node_affinity") for d in snap.daemonsets)
    found = [(f.code, f.title) for f in pods_check(snap, {}) if f.node == "win-ah6pqb767nf"]
    assert found == [("POD_NOT_RUNNING", "no kube-proxy pod on this node")]


def test_linux_node_selected_still_reported():
    """The same node with kubernetes.io/os=linux: the missing flannel pod is reported."""
    node = node_from_describe((DATA / "kubespray-2588-describe-windows-node-excerpt.txt").read_text())
    node["metadata"]["labels"]["kubernetes.io/os"] = "linux"
    snap = cluster_with(node, real_flannel_ds=True)
    codes = sorted(f.title for f in pods_check(snap, {}) if f.node == "win-ah6pqb767nf")
    assert codes == ["no flannel pod on this node", "no kube-proxy pod on this node"]


POD_SAMPLES = [s for s in json.loads((DATA / "samples.json").read_text()) if s["kind"] == "pod-api"]


def cluster_with_old_pod(sample: str, component: str, node: str = "node-1") -> tuple[Any, str]:
    """SYNTHESISED WRAPPER: the healthy recording, plus a second pod of the component's DaemonSet
    on `node` (a copy of the one serving there) carrying the sample: its status (an Evicted pod)
    or its metadata's deletion fields (a Terminating pod, containers no longer ready)."""
    rec = copy.deepcopy(load("healthy"))
    serving = next(p for p in rec["pods"] if p["metadata"]["name"].startswith(component)
                   and p["spec"].get("nodeName") == node)
    old = copy.deepcopy(serving)
    old["metadata"]["name"] += "-old"
    doc = yaml.safe_load((DATA / sample).read_text())
    if "status" in doc:
        old["status"] = doc["status"]
    for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
        if k in doc.get("metadata", {}):
            old["metadata"][k] = doc["metadata"][k]
            for c in old["status"].get("conditions") or []:
                if c.get("type") == "Ready":
                    c["status"] = "False"
            for cs in old["status"].get("containerStatuses") or []:
                cs["ready"] = False
    rec["pods"].append(old)
    return build_snapshot(ReplayAPI(rec), with_logs=False), old["metadata"]["name"]


def check_pod_api(s: dict[str, Any]) -> None:
    e = s["expect"]
    for component in ("kube-proxy", "kube-flannel"):
        snap, old = cluster_with_old_pod(s["file"], component)
        pods = [p for ps in (snap.kube_proxy_pods, snap.flannel_pods) for p in ps.get("node-1", [])
                if p.name == old]
        assert len(pods) == 1 and pods[0].deleting == e["deleting"] and pods[0].phase == e["phase"]
        assert [f.code for f in pods_check(snap, {}) if f.node == "node-1"] == e["findings_beside_serving"]


@pytest.mark.parametrize("name", [s["file"] for s in POD_SAMPLES])
def test_pod_sample(name):
    check_pod_api(next(s for s in POD_SAMPLES if s["file"] == name))


def test_evicted_pod_alone_still_reported():
    """The evicted pod is the node's only kube-proxy pod: POD_NOT_RUNNING (nothing serves)."""
    rec = copy.deepcopy(load("healthy"))
    kp = next(p for p in rec["pods"] if p["metadata"]["name"].startswith("kube-proxy")
              and p["spec"].get("nodeName") == "node-1")
    kp["status"] = yaml.safe_load((DATA / "k8s-48632-evicted-pod-status.yaml").read_text())["status"]
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    found = [f for f in pods_check(snap, {}) if f.node == "node-1"]
    assert [f.code for f in found] == ["POD_NOT_RUNNING"] and found[0].data.phase == "Failed"


def test_windows_node_gets_no_linux_facts_script():
    """diagnose() opens no shell on a node labelled kubernetes.io/os=windows (the facts script is
    a Linux shell script) and says so in not_checked; old code ran it there and reported
    FACTS_UNREADABLE (error) for the node."""
    from diag_fakes import ReplayShells

    from clusterfix_tui.core.diagnose import diagnose

    rec = copy.deepcopy(load("healthy"))
    name = "6837k8s00000000"
    rec["nodes"].append(node_from_describe((DATA / "aks-engine-4176-describe-windows-node-excerpt.txt").read_text()))
    shells = ReplayShells(rec, outputs={name: "'#' is not recognized as an internal or external command,\r\n"})
    d = diagnose(ReplayAPI(rec), shells)
    assert name not in shells.opened and sorted(shells.opened) == ["node-1", "node-2", "node-3"]
    assert [f.code for f in d.findings if f.node == name] == []
    notes = [x for x in d.not_checked if name in x["nodes"] and not x["codes"]]
    assert len(notes) == 1 and f"{name}=windows" in notes[0]["why"]


def test_v6_first_dual_stack_flannel_gateway_is_ipv4():
    """k3s#8794's node s1 (dual-stack, --cluster-cidr fda5:8888:9999:311::0/64,10.3.128.0/17:
    IPv6 first). SYNTHESISED: spec.podCIDRs as kube-controller-manager allocates them from those
    node-args (IPv6 /80 first, IPv4 /24), for s1 and a peer s2. flannel.1's address (the vxlan
    probe's target) is the IPv4 subnet's; old code: the IPv6 podCIDR's network address, so no
    peer was probed over the underlay."""
    from test_realworld import node_from_text

    from clusterfix_tui.core.checks.underlay import probe_targets
    from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info

    raw = (DATA / "k3s-8794-dualstack-v6-first-node-excerpt.yaml").read_text()
    assert '"--cluster-cidr","fda5:8888:9999:311::0/64,10.3.128.0/17"' in raw
    nodes = {}
    for i, name in enumerate(("s1", "s2")):
        obj = node_from_text(raw)
        obj["metadata"]["name"] = name
        cidrs = [f"fda5:8888:9999:311:0:{i}::/80", f"10.3.{128 + i}.0/24"]
        obj["spec"] = {"podCIDR": cidrs[0], "podCIDRs": cidrs}
        nodes[name] = node_info(obj)
    assert nodes["s2"].flannel_gateway == "10.3.129.0"
    snap = ClusterSnapshot(nodes=nodes, flannel_backend="vxlan")
    assert probe_targets(snap, "s1") == ["10.3.129.0"]


def test_init_container_crashloop_is_the_pods_crash():
    """flannel#2069: kube-flannel-ds-42k6p in Init:CrashLoopBackOff, 9 restarts, its init container
    install-cni-plugin logging "exec /bin/cp: exec format error". SYNTHESISED: the status kubelet
    reports for that line (phase Pending, install-cni-plugin waiting CrashLoopBackOff with 9
    restarts, kube-flannel waiting PodInitializing) on node-1's flannel pod of the healthy
    recording, the log as its log. FLANNEL_CRASHLOOP on install-cni-plugin with its log; old
    code: POD_NOT_RUNNING 'Pending' reason PodInitializing, the failing container unnamed."""
    raw = (DATA / "flannel-2069-init-crashloop-excerpt.txt").read_text().splitlines()
    row = raw[-1].split()
    name, status, restarts = row[1], row[3], int(row[4])
    assert status == "Init:CrashLoopBackOff"
    rec = copy.deepcopy(load("healthy"))
    pod = next(p for p in rec["pods"] if p["metadata"]["name"].startswith("kube-flannel")
               and p["spec"].get("nodeName") == "node-1")
    pod["status"]["phase"] = "Pending"
    for c in pod["status"].get("conditions") or []:
        if c.get("type") in ("Ready", "ContainersReady", "Initialized"):
            c["status"] = "False"
    for cs in pod["status"]["containerStatuses"]:
        cs.update(ready=False, restartCount=0, state={"waiting": {"reason": "PodInitializing"}})
        cs.pop("lastState", None)
    pod["status"]["initContainerStatuses"] = [
        {"name": "install-cni-plugin", "ready": False, "restartCount": restarts,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}]
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    found = [f for f in pods_check(snap, {}) if f.node == "node-1"]
    assert [f.code for f in found] == ["FLANNEL_CRASHLOOP"], [(f.code, f.title) for f in found]
    assert found[0].data.container == "install-cni-plugin" and found[0].data.restart_count == restarts
    assert name.startswith("kube-flannel-ds-")


def _tainted(taints: list[dict[str, str]], flannel_tolerations: Any = None) -> list[str]:
    """A Linux node (real labels of kubespray#2588's excerpt, kubernetes.io/os=linux) with
    `taints`, in the healthy recording whose kube-proxy DaemonSet tolerates everything (kubeadm's
    `operator: Exists`) and whose flannel DaemonSet carries flannel's real manifest's placement
    and, unless given, its tolerations (NoSchedule only): the titles of its pod findings."""
    node = node_from_describe((DATA / "kubespray-2588-describe-windows-node-excerpt.txt").read_text())
    node["metadata"]["labels"]["kubernetes.io/os"] = "linux"
    node["spec"]["taints"] = taints
    rec = copy.deepcopy(load("healthy"))
    rec["nodes"].append(node)
    real = flannel_daemonset()["spec"]["template"]["spec"]
    for ds in rec["daemonsets"]["kube-flannel"]:
        ds["spec"]["template"]["spec"]["tolerations"] = copy.deepcopy(
            real["tolerations"] if flannel_tolerations is None else flannel_tolerations)
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    return sorted(f.title for f in pods_check(snap, {}) if f.node == "win-ah6pqb767nf")


def test_a_taint_the_daemonset_does_not_tolerate_expects_no_pod():
    """flannel's real manifest tolerates NoSchedule taints only: on a node tainted NoExecute
    (a dedicated node pool) its DaemonSet places no pod, so none is missing there (old code: 'no
    flannel pod on this node', an error with step pods); kube-proxy (tolerates all) still is."""
    got = _tainted([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}])
    assert got == ["no kube-proxy pod on this node"]


def test_taints_tolerated_or_added_by_the_controller_still_expect_the_pod():
    # NoSchedule: tolerated by flannel's `operator: Exists, effect: NoSchedule`; unreachable
    # NoExecute: every DaemonSet pod tolerates it (the controller adds it); PreferNoSchedule:
    # never keeps a DaemonSet pod away
    both = ["no flannel pod on this node", "no kube-proxy pod on this node"]
    assert _tainted([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]) == both
    assert _tainted([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}],
                    flannel_tolerations=[]) == both
    assert _tainted([{"key": "x", "value": "y", "effect": "PreferNoSchedule"}],
                    flannel_tolerations=[]) == both
    # a DaemonSet without tolerations on a control-plane node tainted NoSchedule: no pod there
    assert _tainted([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                    flannel_tolerations=[]) == ["no kube-proxy pod on this node"]
    # Equal needs the value: dedicated=gpu tolerated, dedicated=db not
    tol = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}]
    assert _tainted([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}], tol) == both
    assert _tainted([{"key": "dedicated", "value": "db", "effect": "NoExecute"}], tol) == \
        ["no kube-proxy pod on this node"]


def test_kube_proxy_config_is_read_as_yaml():
    """config.conf is a KubeProxyConfiguration in YAML (JSON is YAML too): read by its `mode:`
    line, a config written as JSON was taken for the default (iptables) mode, and a comment after
    the value was part of the mode; clusterCIDR likewise."""
    from clusterfix_tui.core.snapshot import parse_cluster_cidrs, parse_kube_proxy_mode

    def cm(text: str) -> dict[str, Any]:
        return {"data": {"config.conf": text}}

    as_json = json.dumps({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                          "kind": "KubeProxyConfiguration", "mode": "ipvs",
                          "clusterCIDR": "10.244.0.0/16,fd00:10:244::/56"}, indent=2)
    assert parse_kube_proxy_mode(cm(as_json)) == "ipvs"
    assert parse_cluster_cidrs(cm(as_json)) == ("10.244.0.0/16", "fd00:10:244::/56")
    commented = "kind: KubeProxyConfiguration\nmode: \"nftables\"  # since 1.31\nclusterCIDR: 10.42.0.0/16 # pods\n"
    assert parse_kube_proxy_mode(cm(commented)) == "nftables"
    assert parse_cluster_cidrs(cm(commented)) == ("10.42.0.0/16",)
    # kubeadm's default: mode "" (iptables on Linux); no YAML mapping: its lines, as before
    assert parse_kube_proxy_mode(cm('kind: KubeProxyConfiguration\nmode: ""\n')) == ""
    assert parse_kube_proxy_mode(cm("mode: ipvs\n\tbroken: [\n")) == "ipvs"
