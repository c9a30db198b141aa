"""Cluster DNS read through the official kubernetes client (transports/kube.py) from the lab's API
emulator over real HTTPS (no monkeypatching of the client): the kube-dns Service, its
EndpointSlices (and the core Endpoints fallback when slices are not served), kube-system's
Deployments; then the check, the pods step's plan and the validation line on what was read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clusterfix_tui.core.checks import dns as dns_check
from clusterfix_tui.core.dns import read_dns
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.core.validate import _cluster_dns
from clusterfix_tui.lab import dns_addon
from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.transports.kube import KubeClusterAPI

TOKEN = "cfx-dns-token-5e2a"
NODES = [{"name": "node-1", "ip": "10.213.9.11", "pod_cidr": "10.244.0.0/24"},
         {"name": "node-2", "ip": "10.213.9.12", "pod_cidr": "10.244.1.0/24"}]


@pytest.fixture(scope="module")
def lab_api():
    api = LabAPI("127.0.0.1", tokens=[TOKEN], tls=True)
    api.start()
    yield api
    api.stop()


@pytest.fixture
def kube(lab_api: LabAPI, tmp_path: Path) -> KubeClusterAPI:
    for p in lab_api.list("v1/pods", "kube-system"):
        lab_api.delete("v1/pods", "kube-system", p["metadata"]["name"])
    for res, name in (("v1/services", "kube-dns"), ("v1/endpoints", "kube-dns"),
                      ("discovery.k8s.io/v1/endpointslices", "kube-dns-x7k2p"),
                      ("apps/v1/deployments", "coredns"), ("apps/v1/replicasets", "coredns-7db6d8ff4d")):
        try:
            lab_api.delete(res, "kube-system", name)
        except Exception:  # noqa: BLE001, S110 - not there
            pass
    path = tmp_path / "kubeconfig"
    lab_api.write_kubeconfig(path, TOKEN)
    return KubeClusterAPI(str(path))


def test_healthy_addon_two_ready_endpoints_no_finding(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    dns_addon.seed(lab_api, NODES)
    snap = build_snapshot(kube, with_logs=False)
    assert snap.dns is not None
    assert snap.dns.service_found and snap.dns.endpoints_source == "endpointslices"
    assert len(snap.dns.ready_endpoints) == 2
    assert [d.name for d in snap.dns.deployments] == ["coredns"]
    assert dns_check.check(snap, {}) == []
    r = _cluster_dns(kube, kube.list_pods())
    assert r is not None and r.passed
    assert r.detail == "cluster DNS: kube-dns has 2 ready endpoints"


def test_crashloop_read_checked_and_planned(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    dns_addon.seed(lab_api, NODES)
    dns_addon.set_state(lab_api, NODES, "crashloop")
    snap = build_snapshot(kube, with_logs=False)
    found = dns_check.check(snap, {})
    codes = sorted(f.code for f in found)
    assert codes == ["DNS_NO_ENDPOINTS", "DNS_POD_NOT_RUNNING", "DNS_POD_NOT_RUNNING"]
    pods = [f for f in found if f.code == "DNS_POD_NOT_RUNNING"]
    assert {f.node for f in pods} == {"node-1", "node-2"}
    assert all("CrashLoopBackOff" in f.title and f.data["restartable"] for f in pods)
    assert any("plugin/loop" in e for f in pods for e in f.evidence)
    r = _cluster_dns(kube, kube.list_pods())
    assert r is not None and not r.passed and r.fix_step == "pods"
    assert "no ready endpoints" in r.detail and "2 not ready" in r.detail

    from clusterfix_tui.core.fixes.pods import STEP

    class D:
        findings = found
        snapshot = snap
        extra: dict[str, Any] = {}

    plan = STEP.plan(D())
    deletes = [a for a in plan.actions if (a.api or {}).get("verb") == "delete_pod"]
    assert sorted(a.api["name"] for a in deletes) == sorted(f.data["pod"] for f in pods)
    assert all("recreated by its Deployment" in a.rollback_note for a in deletes)
    assert all(a.command.startswith("kubectl -n kube-system delete pod ") for a in deletes)


def test_scaled_to_zero_is_report_only(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    dns_addon.seed(lab_api, NODES)
    dns_addon.set_state(lab_api, NODES, "scaled-to-zero")
    snap = build_snapshot(kube, with_logs=False)
    found = dns_check.check(snap, {})
    assert sorted(f.code for f in found) == ["DNS_NO_ENDPOINTS", "DNS_SCALED_TO_ZERO"]
    zero = next(f for f in found if f.code == "DNS_SCALED_TO_ZERO")
    assert zero.step is None
    assert zero.data["command"] == "kubectl -n kube-system scale deployment coredns --replicas=2"


def test_deleted_pod_is_recreated_by_the_lab_deployment(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    dns_addon.seed(lab_api, NODES)
    dns_addon.set_state(lab_api, NODES, "crashloop")
    for p in dns_addon.dns_pods(lab_api):
        before = lab_api.get("v1/pods", "kube-system", p["metadata"]["name"])
        kube.delete_pod("kube-system", p["metadata"]["name"])
        dns_addon.on_pod_deleted(lab_api, NODES, "kube-system", p["metadata"]["name"], before)
    r = _cluster_dns(kube, kube.list_pods())
    assert r is not None and r.passed and r.detail.endswith("has 2 ready endpoints")


def test_no_dns_addon_is_an_info_line_not_an_error(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    snap = build_snapshot(kube, with_logs=False)
    assert snap.dns is not None and snap.dns.service_read and not snap.dns.found
    assert dns_check.check(snap, {}) == []
    r = _cluster_dns(kube, kube.list_pods())
    assert r is not None and r.passed
    assert r.detail.startswith("cluster DNS: no cluster DNS found")


def test_endpoints_fallback_when_slices_are_not_served(lab_api: LabAPI, kube: KubeClusterAPI) -> None:
    """A server without discovery.k8s.io/v1 answers 404 for the slices: the core Endpoints are
    read instead (the real client's 404, through the emulator's unserved-resource path)."""
    dns_addon.seed(lab_api, NODES)
    dns_addon.set_state(lab_api, NODES, "crashloop")
    served = lab_api._emulator._served
    key = next(k for k in served if "endpointslices" in str(k))
    saved = served.pop(key)
    try:
        dns = read_dns(kube, build_snapshot(kube, with_logs=False).pods)
    finally:
        served[key] = saved
    assert dns is not None and dns.endpoints_source == "endpoints"
    assert dns.ready_endpoints == () and len(dns.not_ready_endpoints) == 2
