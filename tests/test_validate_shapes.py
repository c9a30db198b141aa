"""Validation checks the networking pods the cluster really runs (issue #12): DaemonSets found
by what they run, pods by owner; nothing for what a distribution embeds."""

from __future__ import annotations

from clusterfix_tui.core.validate import validate


def _ds(ns: str, name: str, image: str, uid: str) -> dict:
    return {"metadata": {"namespace": ns, "name": name, "uid": uid},
            "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}


def _pod(ns: str, name: str, node: str, owner: tuple[str, str] | None, ready: bool = True,
         reason: str | None = None) -> dict:
    meta: dict = {"namespace": ns, "name": name}
    if owner:
        meta["ownerReferences"] = [{"kind": "DaemonSet", "name": owner[0], "uid": owner[1]}]
    status: dict = {"phase": "Running" if ready else "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if reason:
        status["containerStatuses"] = [{"state": {"waiting": {"reason": reason}}}]
    return {"metadata": meta, "spec": {"nodeName": node}, "status": status}


class API:
    def __init__(self, daemonsets: list, pods: list) -> None:
        self.daemonsets, self.pods = daemonsets, pods

    def list_nodes(self):
        return [{"metadata": {"name": n, "labels": {}},
                 "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
                for n in ("n1", "n2")]

    def list_pods(self, namespace=None, label_selector=None):
        return self.pods

    def list_daemonsets(self, namespace=None):
        return self.daemonsets

    def list_services(self, namespace=None):
        return []


def _shells(node, address=None):
    raise ConnectionError("no shells in this test")


def _pod_checks(api) -> dict:
    return {(r.name, r.target): r for r in validate(api, _shells, None)
            if r.name in ("kube-proxy-pod", "flannel-pod", "cni-pod")}


def test_k3s_embeds_flannel_and_kube_proxy_no_pod_is_required() -> None:
    api = API([_ds("kube-system", "svclb-traefik", "rancher/klipper-lb:v0.4", "u1")], [])
    assert _pod_checks(api) == {}


def test_calico_and_kube_proxy_pods_by_owner_and_an_exporter_is_not_kube_proxy() -> None:
    dss = [_ds("calico-system", "calico-node", "docker.io/calico/node:v3.27.0", "c"),
           _ds("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.29.0", "k"),
           _ds("monitoring", "kube-proxy-exporter", "quay.io/x/exporter:1", "e")]
    pods = [_pod("calico-system", "calico-node-a", "n1", ("calico-node", "c")),
            _pod("calico-system", "calico-node-b", "n2", ("calico-node", "c"), ready=False,
                 reason="CrashLoopBackOff"),
            _pod("kube-system", "kube-proxy-a", "n1", ("kube-proxy", "k")),
            _pod("kube-system", "kube-proxy-b", "n2", ("kube-proxy", "k")),
            _pod("monitoring", "kube-proxy-exporter-x", "n1", ("kube-proxy-exporter", "e"),
                 ready=False)]
    got = _pod_checks(API(dss, pods))
    assert set(got) == {("cni-pod", "n1"), ("cni-pod", "n2"), ("kube-proxy-pod", "n1"),
                        ("kube-proxy-pod", "n2")}
    assert got[("cni-pod", "n1")].passed and not got[("cni-pod", "n2")].passed
    assert "CrashLoopBackOff" in got[("cni-pod", "n2")].detail
    assert got[("kube-proxy-pod", "n1")].passed and got[("kube-proxy-pod", "n2")].passed
    assert not any(r.name == "flannel-pod" for r in got.values())


def test_a_missing_pod_of_a_daemonset_that_runs_everywhere_fails() -> None:
    dss = [_ds("kube-flannel", "kube-flannel-ds", "ghcr.io/flannel-io/flannel:v0.25.1", "f")]
    pods = [_pod("kube-flannel", "kube-flannel-ds-a", "n1", ("kube-flannel-ds", "f"))]
    got = _pod_checks(API(dss, pods))
    assert got[("flannel-pod", "n1")].passed and not got[("flannel-pod", "n2")].passed
