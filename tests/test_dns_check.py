"""Cluster DNS (core/dns.py, checks/dns.py, fixes/dns.py, the validation line) on API objects as
real clusters have them: kubeadm (CoreDNS Deployment `coredns`, Service kube-dns 10.96.0.10,
EndpointSlices), k3s (`coredns` from rancher/mirrored-coredns-coredns, Service kube-dns 10.43.0.10,
one replica), RKE2 (`rke2-coredns-rke2-coredns`: no kube-system/kube-dns Service), a cluster
without any DNS add-on, NodeLocal DNSCache (DaemonSet node-local-dns) in front of kube-dns, and a
server without EndpointSlices. Objects follow the upstream manifests (kubernetes/kubernetes
cluster/addons/dns/coredns, k3s manifests/coredns.yaml, the rke2-coredns chart)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from clusterfix_tui.core.checks import dns as dns_check
from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.dns import read_dns
from clusterfix_tui.core.fixes import dns as dns_fix
from clusterfix_tui.core.ports import APIError
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.core.validate import _cluster_dns

KUBEADM_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
K3S_IMAGE = "rancher/mirrored-coredns-coredns:1.12.0"


def _node(name: str, ip: str, cidr: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def _pod(name: str, node: str, ip: str, *, image: str = KUBEADM_IMAGE, rs: str = "coredns-7db6d8ff4d",
         labels: dict[str, str] | None = None, state: str = "running", restarts: int = 0,
         reason: str = "CrashLoopBackOff", message: str = "") -> dict[str, Any]:
    ready = state == "running"
    cs: dict[str, Any] = {"name": "coredns", "image": image, "ready": ready, "restartCount": restarts,
                          "state": {"running": {"startedAt": "2024-11-05T09:12:44Z"}} if ready
                          else {"waiting": {"reason": reason}}}
    if message:
        cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}
    phase = "Pending" if reason in ("ImagePullBackOff", "Pending") and not ready else "Running"
    return {"metadata": {"name": name, "namespace": "kube-system", "uid": f"uid-{name}",
                         "labels": labels or {"k8s-app": "kube-dns", **({"pod-template-hash": rs.rsplit("-", 1)[1]} if rs else {})},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                              "controller": True, "uid": f"uid-{rs}"}] if rs else []},
            "spec": {"nodeName": node, "containers": [{"name": "coredns", "image": image, "ports": [
                {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}]}]},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [cs]}}


def _service(ip: str, name: str = "kube-dns", selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "selector": selector or {"k8s-app": "kube-dns"},
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                               {"name": "metrics", "port": 9153, "protocol": "TCP"}]}}


def _slice(pods: list[dict[str, Any]], *, family: str = "IPv4", name: str = "kube-dns-5xq8r",
           ready_unset: bool = False) -> dict[str, Any]:
    eps = []
    for p in pods:
        ok = p["status"]["conditions"][0]["status"] == "True"
        ep = {"addresses": [p["status"]["podIP"] if family == "IPv4" else "fd00:10:244::a"],
              "nodeName": p["spec"]["nodeName"],
              "targetRef": {"kind": "Pod", "namespace": "kube-system", "name": p["metadata"]["name"]}}
        if not ready_unset:
            ep["conditions"] = {"ready": ok, "serving": ok, "terminating": False}
        eps.append(ep)
    return {"metadata": {"name": name, "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": family, "endpoints": eps,
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}


def _deployment(name: str, replicas: int, ready: int, image: str = KUBEADM_IMAGE) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                     "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                  "spec": {"containers": [{"name": "coredns", "image": image}]}}},
            "status": {"replicas": replicas, "readyReplicas": ready} if ready else {"replicas": replicas}}


class FakeAPI:
    """A ClusterAPI answering with fixed objects; slices=None: the server does not serve them
    (404, as the real client raises it: APIError status 404)."""

    def __init__(self, *, nodes, pods=(), service=None, slices=(), endpoints=(), deployments=(),
                 daemonsets=(), slice_error: Exception | None = None) -> None:
        self.nodes, self.pods, self.service = list(nodes), list(pods), service
        self.slices, self.eps, self.deps = slices, list(endpoints), list(deployments)
        self.ds = list(daemonsets)
        self.slice_error = slice_error

    def describe(self): return {"context": "test"}
    def version(self): return {"gitVersion": "v1.31.2"}
    def list_nodes(self): return self.nodes

    def list_pods(self, namespace=None, label_selector=None):
        return [p for p in self.pods if namespace in (None, p["metadata"]["namespace"])]

    def list_daemonsets(self, namespace=None): return self.ds
    def get_configmap(self, namespace, name): return None
    def list_services(self, namespace=None): return [self.service] if self.service else []
    def list_events(self, namespace=None): return []
    def pod_log(self, *a, **k): return ""

    def list_endpoints(self, namespace=None): return self.eps

    def get_service(self, namespace, name):
        return self.service if self.service and self.service["metadata"]["name"] == name else None

    def list_deployments(self, namespace): return self.deps

    def list_endpointslices(self, namespace, label_selector=None):
        if self.slice_error is not None:
            raise self.slice_error
        if self.slices is None:
            raise APIError("list endpointslices in kube-system: not found (404): the server could "
                           "not find the requested resource", status=404)
        return self.slices


NODES = [_node("cp-1", "192.168.56.10", "10.244.0.0/24"), _node("worker-1", "192.168.56.11", "10.244.1.0/24")]
LOOP = ('[FATAL] plugin/loop: Loop (127.0.0.1:41580 -> :53) detected for zone ".", see '
        'https://coredns.io/plugins/loop#troubleshooting.')


def kubeadm(*, crash: tuple[int, ...] = (), replicas: int = 2, **kw: Any) -> FakeAPI:
    pods = [_pod("coredns-7db6d8ff4d-2xkqz", "cp-1", "10.244.0.2"),
            _pod("coredns-7db6d8ff4d-9wm4c", "cp-1", "10.244.0.3")]
    for i in crash:
        pods[i] = _pod(pods[i]["metadata"]["name"], "cp-1", pods[i]["status"]["podIP"], state="waiting",
                       restarts=7, message=LOOP)
    pods = pods[:replicas]
    ready = sum(1 for p in pods if p["status"]["conditions"][0]["status"] == "True")
    args: dict[str, Any] = dict(nodes=NODES, pods=pods, service=_service("10.96.0.10"), slices=[_slice(pods)],
                                deployments=[_deployment("coredns", replicas, ready)])
    args.update(kw)
    return FakeAPI(**args)


def _snap(api: FakeAPI):
    return build_snapshot(api, with_logs=False)


def test_kubeadm_healthy_two_endpoints_no_finding() -> None:
    api = kubeadm()
    snap = _snap(api)
    assert snap.dns.ready_endpoints == ("kube-system/coredns-7db6d8ff4d-2xkqz",
                                        "kube-system/coredns-7db6d8ff4d-9wm4c")
    assert dns_check.check(snap, {}) == []
    assert _cluster_dns(api, api.list_pods()).detail == "cluster DNS: kube-dns has 2 ready endpoints"
    assert snap.summary()["dns"] == "cluster DNS: kube-dns has 2 ready endpoints"


def test_kubeadm_one_pod_crashing_is_one_finding_still_serving() -> None:
    api = kubeadm(crash=(1,))
    snap = _snap(api)
    found = dns_check.check(snap, {})
    assert [(f.code, f.node) for f in found] == [("DNS_POD_NOT_RUNNING", "cp-1")]
    f = found[0]
    assert f.data.pod == "coredns-7db6d8ff4d-9wm4c" and f.data.deployment == "coredns"
    assert f.data.restartable and f.data.restart_count == 7 and "plugin/loop" in f.evidence[1]
    r = _cluster_dns(api, api.list_pods())
    assert r.passed and r.detail == "cluster DNS: kube-dns has 1 ready endpoint"
    actions, notes = dns_fix.plan_actions("pods", found)
    assert [a.command for a in actions] == ["kubectl -n kube-system delete pod coredns-7db6d8ff4d-9wm4c"]
    assert actions[0].id == "pods:cp-1:10" and actions[0].precondition is not None
    assert actions[0].rollback is None and "recreated by its Deployment" in actions[0].rollback_note
    assert notes == []


def test_kubeadm_all_crashing_no_endpoints_error_and_each_pod_once() -> None:
    api = kubeadm(crash=(0, 1))
    snap = _snap(api)
    findings, errors = run_checks(snap, {})
    assert errors == []
    pods = [f.data["pod"] for f in findings if f.code in ("DNS_POD_NOT_RUNNING", "POD_NOT_RUNNING")]
    assert sorted(pods) == ["coredns-7db6d8ff4d-2xkqz", "coredns-7db6d8ff4d-9wm4c"]  # once each
    no_ep = [f for f in findings if f.code == "DNS_NO_ENDPOINTS"]
    assert len(no_ep) == 1 and no_ep[0].severity == "error" and no_ep[0].step is None
    assert no_ep[0].data.not_ready == ["kube-system/coredns-7db6d8ff4d-2xkqz",
                                       "kube-system/coredns-7db6d8ff4d-9wm4c"]
    r = _cluster_dns(api, api.list_pods())
    assert not r.passed and r.fix_step == "pods"
    assert r.detail == ("cluster DNS: kube-dns has no ready endpoints, 2 not ready: every lookup in "
                        "the cluster fails")
    actions, _ = dns_fix.plan_actions("pods", findings)
    assert [a.id for a in actions] == ["pods:cp-1:10", "pods:cp-1:11"]


def test_pods_step_plans_the_dns_restart_beside_its_own() -> None:
    from clusterfix_tui.core.fixes.pods import STEP

    snap = _snap(kubeadm(crash=(0,)))
    findings, _ = run_checks(snap, {})

    class D:
        pass

    d = D()
    d.findings, d.snapshot, d.extra = findings, snap, {}
    plan = STEP.plan(d)
    assert [a.command for a in plan.actions] == ["kubectl -n kube-system delete pod coredns-7db6d8ff4d-2xkqz"]
    assert all(a.mutating for a in plan.actions)


def test_scaled_to_zero_report_only_with_the_command() -> None:
    api = kubeadm(replicas=0)
    found = dns_check.check(_snap(api), {})
    assert sorted(f.code for f in found) == ["DNS_NO_ENDPOINTS", "DNS_SCALED_TO_ZERO"]
    z = next(f for f in found if f.code == "DNS_SCALED_TO_ZERO")
    assert z.step is None and z.severity == "warning"
    assert z.data.command == "kubectl -n kube-system scale deployment coredns --replicas=2"
    assert dns_fix.plan_actions("pods", found) == ([], [])


def test_image_pull_and_unowned_pods_are_noted_not_deleted() -> None:
    pods = [_pod("coredns-7db6d8ff4d-2xkqz", "cp-1", "10.244.0.2", state="waiting", reason="ImagePullBackOff"),
            _pod("coredns-static", "worker-1", "10.244.1.9", state="waiting", restarts=9, rs="")]
    api = kubeadm(pods=pods, slices=[_slice(pods)])
    found = dns_check.check(_snap(api), {})
    pod_f = sorted((f for f in found if f.code == "DNS_POD_NOT_RUNNING"), key=lambda f: f.node)
    assert [(f.node, f.data.restartable) for f in pod_f] == [("cp-1", False), ("worker-1", False)]
    actions, notes = dns_fix.plan_actions("pods", found)
    assert actions == [] and len(notes) == 2
    assert any("no Deployment owns it" in n for n in notes)
    assert any("ImagePullBackOff" in n for n in notes)


def test_k3s_single_replica_crashloop() -> None:
    pod = _pod("coredns-ccb96694c-lb7sd", "k3s-server", "10.42.0.4", image=K3S_IMAGE, rs="coredns-ccb96694c",
               state="waiting", restarts=12, message=LOOP)
    api = FakeAPI(nodes=[_node("k3s-server", "10.0.0.5", "10.42.0.0/24")], pods=[pod],
                  service=_service("10.43.0.10"), slices=[_slice([pod])],
                  deployments=[_deployment("coredns", 1, 0, K3S_IMAGE)])
    snap = _snap(api)
    found = dns_check.check(snap, {})
    assert sorted((f.code, f.node) for f in found) == [("DNS_NO_ENDPOINTS", "cluster"),
                                                      ("DNS_POD_NOT_RUNNING", "k3s-server")]
    assert "10.43.0.10" in next(f for f in found if f.code == "DNS_NO_ENDPOINTS").evidence[0]
    actions, _ = dns_fix.plan_actions("pods", found)
    assert [a.command for a in actions] == ["kubectl -n kube-system delete pod coredns-ccb96694c-lb7sd"]


def test_no_dns_addon_is_no_finding_and_an_info_line() -> None:
    api = FakeAPI(nodes=NODES, pods=[], service=None, slices=[],
                  deployments=[{"metadata": {"name": "metrics-server", "namespace": "kube-system"},
                                "spec": {"replicas": 1, "template": {"metadata": {"labels": {
                                    "k8s-app": "metrics-server"}}}}}])
    snap = _snap(api)
    assert snap.dns.service_read and not snap.dns.found
    assert dns_check.check(snap, {}) == []
    # the info line of `diagnose` (text and --json "cluster.dns")
    assert snap.summary()["dns"].startswith("cluster DNS: no cluster DNS found (no Service kube-system/kube-dns")
    r = _cluster_dns(api, api.list_pods())
    assert r.passed and r.detail.startswith("cluster DNS: no cluster DNS found")


def test_rke2_no_kube_dns_service_is_said_not_guessed() -> None:
    pods = [_pod("rke2-coredns-rke2-coredns-864fbd7785-6bq8d", "cp-1", "10.42.0.5",
                 rs="rke2-coredns-rke2-coredns-864fbd7785")]
    api = FakeAPI(nodes=NODES, pods=pods, service=None, slices=[],
                  deployments=[_deployment("rke2-coredns-rke2-coredns", 2, 1)])
    api.service = None
    snap = _snap(api)
    assert not snap.dns.service_found and len(snap.dns.pods) == 1
    assert dns_check.check(snap, {}) == []  # no Service read: no "no endpoints" guessed
    r = _cluster_dns(api, api.list_pods())
    assert r.passed and "no Service kube-system/kube-dns (another name is not guessed)" in r.detail


def test_nodelocal_dnscache_is_named_when_kube_dns_is_down() -> None:
    nodelocal = {"metadata": {"name": "node-local-dns", "namespace": "kube-system",
                              "labels": {"k8s-app": "node-local-dns"}},
                 "spec": {"template": {"spec": {"hostNetwork": True, "containers": [
                     {"name": "node-cache", "image": "registry.k8s.io/dns/k8s-dns-node-cache:1.23.1",
                      "args": ["-localip", "169.254.20.10,10.96.0.10", "-upstreamsvc", "kube-dns-upstream"]}]}}},
                 "status": {"desiredNumberScheduled": 2, "numberReady": 2}}
    healthy = kubeadm(daemonsets=[nodelocal])
    snap = _snap(healthy)
    assert snap.dns.node_local == ("kube-system/node-local-dns",)
    assert dns_check.check(snap, {}) == []
    assert _cluster_dns(healthy, healthy.list_pods()).passed
    down = kubeadm(crash=(0, 1), daemonsets=[nodelocal])
    f = next(f for f in dns_check.check(_snap(down), {}) if f.code == "DNS_NO_ENDPOINTS")
    assert f.data.node_local == ["kube-system/node-local-dns"]
    assert any("NodeLocal DNSCache kube-system/node-local-dns" in e for e in f.evidence)


def test_dual_stack_slices_count_each_pod_once_and_unset_ready_is_ready() -> None:
    api = kubeadm()
    api.slices = [_slice(api.pods, ready_unset=True),
                  _slice(api.pods, family="IPv6", name="kube-dns-v6x2", ready_unset=True)]
    dns = read_dns(api, _snap(api).pods)
    assert len(dns.ready_endpoints) == 2 and dns.not_ready_endpoints == ()


def test_endpoints_when_slices_are_not_served() -> None:
    api = kubeadm(crash=(0, 1))
    pods = api.pods
    api.slices = None
    api.eps = [{"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "subsets": [{"notReadyAddresses": [
                    {"ip": p["status"]["podIP"], "targetRef": {"kind": "Pod", "namespace": "kube-system",
                                                               "name": p["metadata"]["name"]}} for p in pods],
                             "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}]},
               {"metadata": {"name": "kube-controller-manager", "namespace": "kube-system"}, "subsets": []}]
    snap = _snap(api)
    assert snap.dns.endpoints_source == "endpoints"
    assert any(f.code == "DNS_NO_ENDPOINTS" for f in dns_check.check(snap, {}))


@pytest.mark.parametrize("exc", [APIError("list endpointslices: 403 Forbidden", status=403),
                                 TimeoutError("read timed out")])
def test_endpoints_not_read_is_no_finding_and_a_failed_line(exc: Exception) -> None:
    api = kubeadm(crash=(0, 1), slice_error=exc)
    snap = _snap(api)
    assert snap.dns.endpoints_source is None and snap.dns.errors
    assert not [f for f in dns_check.check(snap, {}) if f.code == "DNS_NO_ENDPOINTS"]
    r = _cluster_dns(api, api.list_pods())
    assert not r.passed and r.fix_step is None and "endpoints not read" in r.detail


def test_api_without_dns_reads_is_not_read() -> None:
    class Old(FakeAPI):
        get_service = None  # type: ignore[assignment]

    api = Old(nodes=NODES)
    assert _snap(api).dns is None
    assert _cluster_dns(api, []) is None


def test_pods_of_another_namespace_or_label_are_not_dns_pods() -> None:
    api = kubeadm()
    other = copy.deepcopy(api.pods[0])
    other["metadata"].update(name="coredns-lookalike", namespace="monitoring")
    app = _pod("my-dns-cache-1", "worker-1", "10.244.1.7", labels={"app": "dns-cache"}, state="waiting")
    api.pods += [other, app]
    assert {p.name for p in _snap(api).dns.pods} == {"coredns-7db6d8ff4d-2xkqz", "coredns-7db6d8ff4d-9wm4c"}


def test_dns_pod_on_a_node_with_a_broken_bridge_folds_into_that_root_cause() -> None:
    from clusterfix_tui.core.checks import fold_symptoms
    from clusterfix_tui.core.model import Finding

    snap = _snap(kubeadm(crash=(0,)))
    (pod,) = dns_check.check(snap, {})
    root = Finding(code="CNI_BRIDGE_CONFLICT", severity="error", node="cp-1", title="cni0 foreign",
                   evidence=("x",), explanation="x", reference="x", step="cni_bridge", data={})
    other = dataclasses.replace(root, node="worker-1")
    assert [f.code for f in fold_symptoms([pod, other])] == ["DNS_POD_NOT_RUNNING", "CNI_BRIDGE_CONFLICT"]
    kept = fold_symptoms([pod, root])
    assert [f.code for f in kept] == ["CNI_BRIDGE_CONFLICT"]
    assert kept[0].data["symptoms"][0]["code"] == "DNS_POD_NOT_RUNNING"
