"""The lab's Kubernetes API (clusterfix_tui.lab.api) against the official client and kubectl.

One TLS server per module on 127.0.0.1; no root needed. kubectl is found on PATH (scripts/setup.sh
--test installs it); without it the kubectl tests skip locally and fail in CI (tests/_env.py). Note: kubectl never sends a bearer token over plain http
(kubernetes/kubectl#744), so the server under test runs with TLS, as the lab does.
"""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _env import require_tool
from kubernetes import client, config, watch

from clusterfix_tui.lab.api import LabAPI

TOKEN = "lab-token-for-tests"
NOW = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 150))


def node(name: str, ip: str, ready: bool, role: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if role:
        labels[f"node-role.kubernetes.io/{role}"] = ""
    return {
        "metadata": {"labels": labels},
        "spec": {"podCIDR": f"10.244.{ip.rsplit('.', 1)[1]}.0/24"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "reason": "KubeletReady" if ready else "KubeletNotReady"}],
            "addresses": [{"type": "InternalIP", "address": ip},
                          {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "nodeInfo": {
                "kubeletVersion": "v1.31.2", "kubeProxyVersion": "v1.31.2",
                "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-28-amd64",
                "containerRuntimeVersion": "containerd://1.7.24", "architecture": "amd64",
                "operatingSystem": "linux", "bootID": "b", "machineID": "m", "systemUUID": "s",
            },
        },
    }


def pod(node_name: str, labels: dict[str, str], *, ip: str, crash: bool = False,
        image: str = "registry.k8s.io/kube-proxy:v1.31.2") -> dict[str, Any]:
    state: dict[str, Any] = ({"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 5m0s restarting failed container"}}
                             if crash else {"running": {"startedAt": NOW}})
    status: dict[str, Any] = {"name": "main", "ready": not crash, "restartCount": 7 if crash else 0,
                              "image": image, "imageID": "", "state": state}
    if crash:
        status["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": NOW}}
    return {
        "metadata": {"labels": labels},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": image}]},
        "status": {"phase": "Running", "podIP": ip, "hostIP": ip, "containerStatuses": [status]},
    }


def daemonset(app: str, image: str) -> dict[str, Any]:
    return {
        "spec": {"selector": {"matchLabels": {"k8s-app": app}},
                 "template": {"metadata": {"labels": {"k8s-app": app}},
                              "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                       "containers": [{"name": app, "image": image}]}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                   "updatedNumberScheduled": 2, "numberAvailable": 1, "numberMisscheduled": 0},
    }


class Hooks:
    """Records hook calls (and the thread they ran in) for assertions."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], str]] = []
        self.changed = threading.Condition()

    def record(self, name: str) -> Callable[..., None]:
        def hook(*args: Any) -> None:
            with self.changed:
                self.calls.append((name, args, threading.current_thread().name))
                self.changed.notify_all()
        return hook

    def wait_for(self, name: str, *args: Any, where: Callable[[tuple[Any, ...]], bool] = bool,
                 timeout: float = 5.0) -> tuple[Any, ...]:
        """The first call of hook `name` whose arguments start with args and satisfy where."""
        def found() -> tuple[Any, ...] | None:
            return next((c for c in self.calls
                         if c[0] == name and c[1][:len(args)] == args and where(c[1])), None)

        with self.changed:
            self.changed.wait_for(found, timeout)
            call = found()
        assert call is not None, f"hook {name}{args} not called; calls: {self.calls}"
        return call


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-api")


@pytest.fixture(scope="module")
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture(scope="module")
def lab_api(lab_dir: Path, hooks: Hooks) -> Iterator[LabAPI]:
    api = LabAPI(host="127.0.0.1", tokens=[TOKEN], tls=True, state_dir=str(lab_dir / "state"))
    api.put("v1/nodes", None, "cp-1", node("cp-1", "10.213.5.2", True, "control-plane"))
    api.put("v1/nodes", None, "worker-1", node("worker-1", "10.213.5.3", False))
    api.put("v1/pods", "kube-system", "kube-proxy-aaaaa",
            pod("worker-1", {"k8s-app": "kube-proxy"}, ip="10.213.5.3", crash=True))
    api.put("v1/pods", "kube-system", "kube-proxy-bbbbb",
            pod("cp-1", {"k8s-app": "kube-proxy"}, ip="10.213.5.2"))
    api.put("v1/pods", "kube-system", "kube-flannel-ds-ccccc",
            pod("cp-1", {"app": "flannel"}, ip="10.213.5.2", image="flannel/flannel:v0.26.1"))
    api.put("v1/pods", "default", "web-1", pod("worker-1", {"app": "web"}, ip="10.244.3.5"))
    api.put("apps/v1/daemonsets", "kube-system", "kube-proxy",
            daemonset("kube-proxy", "registry.k8s.io/kube-proxy:v1.31.2"))
    api.put("apps/v1/daemonsets", "kube-system", "kube-flannel-ds",
            daemonset("flannel", "flannel/flannel:v0.26.1"))
    api.put("apps/v1/deployments", "default", "web", {
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                                       "ports": [{"containerPort": 8096}]},
                                                      {"name": "sidecar", "image": "busybox"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    })
    api.put("v1/configmaps", "kube-system", "kube-proxy",
            {"data": {"config.conf": "mode: iptables\n", "kubeconfig.conf": "apiVersion: v1\n"}})
    api.put("v1/services", "default", "web", {
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.50", "selector": {"app": "web"},
                 "ports": [{"port": 8096, "targetPort": 8096, "nodePort": 30096,
                            "protocol": "TCP"}]}})
    api.put("v1/endpoints", "default", "web", {
        "subsets": [{"addresses": [{"ip": "10.244.3.5"}], "ports": [{"port": 8096}]}]})
    involved = {"kind": "Pod", "name": "kube-proxy-aaaaa", "namespace": "kube-system"}
    api.add_event("kube-system", involved, "BackOff", "Back-off restarting failed container")
    api.add_event("kube-system", involved, "BackOff", "Back-off restarting failed container")
    api.add_event("default", {"kind": "Pod", "name": "web-1"}, "Pulled", "Image pulled", "Normal")
    api.set_pod_log("kube-system", "kube-proxy-aaaaa",
                    "".join(f"I1126 line {i}\n" for i in range(1, 51)),
                    previous="E1126 iptables-restore: line 3 failed\n")
    api.on_pod_deleted = hooks.record("pod_deleted")
    api.on_daemonset_restarted = hooks.record("daemonset_restarted")
    api.on_deployment_patched = hooks.record("deployment_patched")
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def kubeconfig(lab_api: LabAPI, lab_dir: Path) -> Path:
    path = lab_dir / "kubeconfig"
    lab_api.write_kubeconfig(path, TOKEN)
    return path


@pytest.fixture(scope="module")
def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(str(kubeconfig))


@pytest.fixture(scope="module")
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture(scope="module")
def kubectl(kubeconfig: Path, lab_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    kubectl_bin = require_tool("kubectl")

    def run(*args: str, config_path: Path = kubeconfig, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_bin, "--kubeconfig", str(config_path), "--cache-dir", str(lab_dir / "kcache"), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
        if check:
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    return run


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def row(output: str, first: str) -> list[str]:
    line = next(line for line in output.splitlines() if first in line.split())
    return line.split()


# -- auth, discovery, TLS -------------------------------------------------------------------------
def _https_get(lab_api: LabAPI, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    assert lab_api.ca_pem is not None
    context = ssl.create_default_context(cadata=lab_api.ca_pem.decode())
    request = urllib.request.Request(lab_api.url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_requests_without_a_known_token_get_401(lab_api: LabAPI) -> None:
    assert _https_get(lab_api, "/api/v1/pods", None)[0] == 401
    status, body = _https_get(lab_api, "/api/v1/pods", "wrong")
    assert (status, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    assert _https_get(lab_api, "/api/v1/pods", TOKEN)[0] == 200


def test_the_client_gets_401_with_a_wrong_token(lab_api: LabAPI, lab_dir: Path) -> None:
    path = lab_dir / "bad-kubeconfig"
    lab_api.write_kubeconfig(path, "not-the-token")
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(config.new_client_from_config(str(path))).list_node()
    assert err.value.status == 401


def test_kubeconfig_is_private_and_carries_the_lab_ca(lab_api: LabAPI, kubeconfig: Path) -> None:
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert lab_api.url.startswith("https://127.0.0.1:")
    text = kubeconfig.read_text()
    assert "certificate-authority-data" in text and TOKEN in text


def test_lab_ca_is_reused_from_the_state_dir(lab_api: LabAPI, lab_dir: Path) -> None:
    second = LabAPI(tls=True, state_dir=str(lab_dir / "state"))
    second.start()
    try:
        assert second.ca_pem == lab_api.ca_pem
    finally:
        second.stop()


def test_discovery_and_version(lab_api: LabAPI, core: client.CoreV1Api, api_client: client.ApiClient) -> None:
    _, core_resources = _https_get(lab_api, "/api/v1", TOKEN)
    assert core_resources["groupVersion"] == "v1"
    names = {r["name"]: r for r in core_resources["resources"]}
    assert names["pods"]["namespaced"] is True and names["nodes"]["namespaced"] is False
    assert "pods/log" in names and "po" in names["pods"]["shortNames"]
    _, groups = _https_get(lab_api, "/apis", TOKEN)
    assert "apps" in {g["name"] for g in groups["groups"]}
    _, apps_resources = _https_get(lab_api, "/apis/apps/v1", TOKEN)
    assert apps_resources["groupVersion"] == "apps/v1"
    assert client.VersionApi(api_client).get_code().git_version == "v1.31.2"


def test_http_without_tls_serves_the_python_client(lab_dir: Path) -> None:
    plain = LabAPI(tokens=[TOKEN])
    plain.put("v1/nodes", None, "n1", node("n1", "10.213.9.2", True))
    plain.start()
    try:
        assert plain.url.startswith("http://") and plain.ca_pem is None
        plain.write_kubeconfig(lab_dir / "plain-kubeconfig", TOKEN)
        nodes = client.CoreV1Api(config.new_client_from_config(
            str(lab_dir / "plain-kubeconfig"))).list_node()
        assert [n.metadata.name for n in nodes.items] == ["n1"]
    finally:
        plain.stop()


# -- the official client --------------------------------------------------------------------------
def test_client_lists_pods_with_selectors(core: client.CoreV1Api) -> None:
    def names(result: Any) -> list[str]:
        return [p.metadata.name for p in result.items]

    assert names(core.list_pod_for_all_namespaces()) == [
        "web-1", "kube-flannel-ds-ccccc", "kube-proxy-aaaaa", "kube-proxy-bbbbb"]
    assert names(core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-proxy")) == [
        "kube-proxy-aaaaa", "kube-proxy-bbbbb"]
    assert names(core.list_pod_for_all_namespaces(field_selector="spec.nodeName=worker-1")) == [
        "web-1", "kube-proxy-aaaaa"]
    assert names(core.list_namespaced_pod(
        "kube-system", field_selector="metadata.name=kube-proxy-bbbbb")) == ["kube-proxy-bbbbb"]
    assert names(core.list_namespaced_pod(
        "kube-system", label_selector="k8s-app in (kube-proxy,x),k8s-app!=y",
        field_selector="spec.nodeName=cp-1")) == ["kube-proxy-bbbbb"]
    crashing = core.read_namespaced_pod("kube-proxy-aaaaa", "kube-system")
    assert crashing.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert crashing.metadata.uid and crashing.metadata.resource_version
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod("nope", "kube-system")
    assert err.value.status == 404


def test_client_lists_every_resource_the_tool_reads(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    assert [n.metadata.name for n in core.list_node().items] == ["cp-1", "worker-1"]
    assert [d.metadata.name for d in apps.list_namespaced_daemon_set("kube-system").items] == [
        "kube-flannel-ds", "kube-proxy"]
    assert len(apps.list_daemon_set_for_all_namespaces().items) == 2
    assert [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items] == ["web"]
    assert core.read_namespaced_config_map("kube-proxy", "kube-system").data["config.conf"] == (
        "mode: iptables\n")
    assert [c.metadata.name for c in core.list_config_map_for_all_namespaces().items] == ["kube-proxy"]
    assert core.list_namespaced_service("default").items[0].spec.ports[0].node_port == 30096
    assert core.list_service_for_all_namespaces().items[0].metadata.name == "web"
    assert core.read_namespaced_endpoints("web", "default").subsets[0].addresses[0].ip == "10.244.3.5"
    assert len(core.list_endpoints_for_all_namespaces().items) == 1
    events = core.list_event_for_all_namespaces().items
    assert {(e.reason, e.count) for e in events} == {("BackOff", 2), ("Pulled", 1)}
    backoff = core.list_namespaced_event("kube-system").items
    assert [(e.involved_object.name, e.type) for e in backoff] == [("kube-proxy-aaaaa", "Warning")]
    assert {ns.metadata.name for ns in core.list_namespace().items} >= {"default", "kube-system"}


def test_client_reads_pod_logs_with_tail_and_previous(core: client.CoreV1Api) -> None:
    assert core.read_namespaced_pod_log("kube-proxy-aaaaa", "kube-system", tail_lines=2) == (
        "I1126 line 49\nI1126 line 50\n")
    assert core.read_namespaced_pod_log("kube-proxy-aaaaa", "kube-system").count("\n") == 50
    assert "iptables-restore" in core.read_namespaced_pod_log(
        "kube-proxy-aaaaa", "kube-system", previous=True)
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log("kube-proxy-bbbbb", "kube-system", previous=True)
    assert err.value.status == 400


def test_client_patch_restart_fires_the_daemonset_hook(apps: client.AppsV1Api, hooks: Hooks) -> None:
    apps.patch_namespaced_daemon_set("kube-flannel-ds", "kube-system",
                                     {"metadata": {"labels": {"touched": "yes"}}})
    restarted = apps.patch_namespaced_daemon_set("kube-flannel-ds", "kube-system", {
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-11-26T10:00:00Z"}}}}})
    assert restarted.metadata.labels["touched"] == "yes"
    assert restarted.spec.template.spec.containers[0].image == "flannel/flannel:v0.26.1"
    hooks.wait_for("daemonset_restarted", "kube-system", "kube-flannel-ds")
    # Hooks run one at a time in API order: the label patch, had it fired, would be recorded first.
    assert [c[1] for c in hooks.calls if c[1][1:2] == ("kube-flannel-ds",)] == [
        ("kube-system", "kube-flannel-ds")]


def test_client_patches_and_replaces_a_deployment(apps: client.AppsV1Api, hooks: Hooks) -> None:
    before = apps.read_namespaced_deployment("web", "default")
    # A strategic merge patch (the client's choice for a dict) merges containers by name.
    patched = apps.patch_namespaced_deployment("web", "default", {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})
    web, sidecar = patched.spec.template.spec.containers
    assert (web.image, web.ports[0].container_port, sidecar.name) == ("nginx:1.28", 8096, "sidecar")
    assert patched.metadata.generation == before.metadata.generation + 1
    assert int(patched.metadata.resource_version) > int(before.metadata.resource_version)
    _, (_, _, obj), _ = hooks.wait_for("deployment_patched", "default", "web")
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    # A JSON patch (a list body), then PUT with optimistic concurrency.
    patched = apps.patch_namespaced_deployment("web", "default", [
        {"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert patched.spec.replicas == 2
    patched.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("web", "default", patched)
    assert replaced.spec.replicas == 3 and replaced.metadata.uid == before.metadata.uid
    with pytest.raises(client.ApiException) as err:
        apps.replace_namespaced_deployment("web", "default", patched)  # stale resourceVersion
    assert err.value.status == 409


def test_client_delete_pod_fires_the_hook_off_the_loop_thread(
    core: client.CoreV1Api, lab_api: LabAPI, hooks: Hooks,
) -> None:
    lab_api.put("v1/pods", "kube-system", "kube-proxy-ddddd",
                pod("cp-1", {"k8s-app": "kube-proxy"}, ip="10.213.5.2"))
    seen_from_hook: list[list[str]] = []

    def recreate(ns: str, name: str, deleted: dict[str, Any]) -> None:
        # The synchronous client, called from the hook, must not deadlock the server.
        seen_from_hook.append([p.metadata.name for p in core.list_namespaced_pod(
            ns, field_selector=f"metadata.name={name}").items])
        hooks.record("pod_deleted")(ns, name, deleted)

    lab_api.on_pod_deleted = recreate
    try:
        deleted = core.delete_namespaced_pod("kube-proxy-ddddd", "kube-system")
        assert deleted.metadata.name == "kube-proxy-ddddd"
        _, (_, _, obj), thread = hooks.wait_for("pod_deleted", "kube-system", "kube-proxy-ddddd")
    finally:
        lab_api.on_pod_deleted = hooks.record("pod_deleted")
    assert obj["spec"]["nodeName"] == "cp-1"
    assert thread.startswith("lab-api-hook") and seen_from_hook == [[]]
    assert lab_api.get("v1/pods", "kube-system", "kube-proxy-ddddd") is None


def test_client_delete_collection_fires_the_hook_per_pod(
    core: client.CoreV1Api, lab_api: LabAPI, hooks: Hooks,
) -> None:
    for name in ("batch-1", "batch-2"):
        lab_api.put("v1/pods", "default", name, pod("cp-1", {"batch": "yes"}, ip="10.244.0.7"))
    core.delete_collection_namespaced_pod("default", label_selector="batch=yes")
    hooks.wait_for("pod_deleted", "default", "batch-1")
    hooks.wait_for("pod_deleted", "default", "batch-2")
    assert [p["metadata"]["name"] for p in lab_api.list("v1/pods", "default")] == ["web-1"]


def test_client_writes_keep_status_and_status_writes_keep_the_rest(
    core: client.CoreV1Api, lab_api: LabAPI,
) -> None:
    lab_api.put("v1/pods", "default", "status-probe", pod("cp-1", {"app": "probe"}, ip="10.244.0.8"))
    core.patch_namespaced_pod("status-probe", "default", {
        "metadata": {"labels": {"seen": "yes"}}, "status": {"phase": "Failed"}})
    core.patch_namespaced_pod_status("status-probe", "default", {
        "metadata": {"labels": {"ignored": "yes"}}, "status": {"phase": "Succeeded"}})
    probe = lab_api.get("v1/pods", "default", "status-probe")
    assert probe is not None and probe["status"]["phase"] == "Succeeded"
    assert probe["metadata"]["labels"] == {"app": "probe", "seen": "yes"}
    lab_api.delete("v1/pods", "default", "status-probe")


def test_client_eviction_deletes_the_pod_and_fires_the_hook(
    core: client.CoreV1Api, lab_api: LabAPI, hooks: Hooks,
) -> None:
    lab_api.put("v1/pods", "default", "evict-me", pod("cp-1", {"app": "probe"}, ip="10.244.0.8"))
    core.create_namespaced_pod_eviction("evict-me", "default", client.V1Eviction(
        metadata=client.V1ObjectMeta(name="evict-me", namespace="default")))
    hooks.wait_for("pod_deleted", "default", "evict-me")
    assert lab_api.get("v1/pods", "default", "evict-me") is None


def test_watch_refuses_bad_and_expired_resource_versions(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as err:
        next(iter(watch.Watch().stream(core.list_node, resource_version="soon", timeout_seconds=1)))
    assert err.value.status == 400
    # The module's objects were seeded before start(): their events were never kept.
    with pytest.raises(client.ApiException) as err:
        next(iter(watch.Watch().stream(core.list_node, resource_version="1", timeout_seconds=1)))
    assert err.value.status == 410


def test_client_watch_sees_changes_from_the_lab_controller(core: client.CoreV1Api, lab_api: LabAPI) -> None:
    listing = core.list_namespaced_pod("default")
    events: list[tuple[str, str, str]] = []

    def watch_pods() -> None:
        for event in watch.Watch().stream(
                core.list_namespaced_pod, "default", resource_version=listing.metadata.resource_version,
                timeout_seconds=3):
            events.append((event["type"], event["object"].metadata.name,
                           event["object"].status.phase))
            if len(events) == 2:
                break

    watcher = threading.Thread(target=watch_pods)
    watcher.start()
    time.sleep(0.3)
    lab_api.mutate("v1/pods", "default", "web-1", lambda p: p["status"].update(phase="Failed"))
    lab_api.put("v1/pods", "default", "web-2", pod("cp-1", {"app": "web"}, ip="10.244.0.9"))
    watcher.join(timeout=5)
    assert events == [("MODIFIED", "web-1", "Failed"), ("ADDED", "web-2", "Running")]
    lab_api.delete("v1/pods", "default", "web-2")
    lab_api.mutate("v1/pods", "default", "web-1", lambda p: p["status"].update(phase="Running"))


# -- the store the lab controller uses ------------------------------------------------------------
def test_store_fills_and_keeps_server_metadata(lab_api: LabAPI) -> None:
    created = lab_api.put("v1/configmaps", "default", "probe", {"data": {"a": "1"}})
    meta = created["metadata"]
    assert (created["apiVersion"], created["kind"], meta["namespace"]) == ("v1", "ConfigMap", "default")
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    updated = lab_api.put("v1/configmaps", "default", "probe", {"data": {"a": "2"}})
    assert updated["metadata"]["uid"] == meta["uid"]
    assert int(updated["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    mutated = lab_api.mutate("v1/configmaps", "default", "probe", lambda o: o["data"].update(b="3"))
    assert mutated is not None and mutated["data"] == {"a": "2", "b": "3"}
    assert lab_api.get("v1/configmaps", "default", "probe") == mutated
    assert [o["metadata"]["name"] for o in lab_api.list("v1/configmaps", "default")] == ["probe"]
    lab_api.delete("v1/configmaps", "default", "probe")
    assert lab_api.get("v1/configmaps", "default", "probe") is None
    assert lab_api.mutate("v1/configmaps", "default", "probe", lambda o: None) is None
    with pytest.raises(ValueError):
        lab_api.put("v1/widgets", None, "x", {})


# -- kubectl ----------------------------------------------------------------------------------------
def test_kubectl_get_nodes_wide(kubectl: Callable[..., Any]) -> None:
    out = kubectl("get", "nodes", "-o", "wide").stdout
    assert header(out) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP",
                           "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert row(out, "cp-1")[:3] == ["cp-1", "Ready", "control-plane"]
    assert row(out, "worker-1")[1:3] == ["NotReady", "<none>"]
    assert "10.213.5.3" in row(out, "worker-1") and "containerd://1.7.24" in out
    assert "Debian GNU/Linux 12 (bookworm)" in out


def test_kubectl_get_pods_all_namespaces_wide(kubectl: Callable[..., Any]) -> None:
    out = kubectl("get", "pods", "-A", "-o", "wide").stdout
    assert header(out) == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                           "NOMINATED", "NODE", "READINESS", "GATES"]
    crash = row(out, "kube-proxy-aaaaa")
    assert crash[:5] == ["kube-system", "kube-proxy-aaaaa", "0/1", "CrashLoopBackOff", "7"]
    assert "worker-1" in crash and "10.213.5.3" in crash
    assert row(out, "kube-proxy-bbbbb")[2:4] == ["1/1", "Running"]


def test_kubectl_get_daemonsets_configmaps_services_deployments(kubectl: Callable[..., Any]) -> None:
    ds = kubectl("get", "ds", "-n", "kube-system").stdout
    assert header(ds) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE",
                          "SELECTOR", "AGE"]
    assert row(ds, "kube-proxy")[:7] == ["kube-proxy", "2", "2", "1", "2", "1", "kubernetes.io/os=linux"]
    cm = kubectl("get", "cm", "-n", "kube-system").stdout
    assert header(cm) == ["NAME", "DATA", "AGE"] and row(cm, "kube-proxy")[1] == "2"
    svc = kubectl("get", "svc").stdout
    assert header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert row(svc, "web")[:5] == ["web", "NodePort", "10.96.0.50", "<none>", "8096:30096/TCP"]
    deploy = kubectl("get", "deploy").stdout
    assert header(deploy) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row(deploy, "web")[0] == "web"


def test_kubectl_scale_goes_through_the_scale_subresource(kubectl: Callable[..., Any],
                                                          lab_api: LabAPI, hooks: Hooks) -> None:
    assert "deployment.apps/web scaled" in kubectl("scale", "deploy", "web", "--replicas=4").stdout
    deploy = lab_api.get("apps/v1/deployments", "default", "web")
    assert deploy is not None and deploy["spec"]["replicas"] == 4
    hooks.wait_for("deployment_patched", "default", "web",
                   where=lambda args: args[2]["spec"]["replicas"] == 4)


def test_kubectl_get_events_all_namespaces(kubectl: Callable[..., Any]) -> None:
    out = kubectl("get", "events", "-A").stdout
    assert header(out) == ["NAMESPACE", "LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    line = next(line for line in out.splitlines() if "BackOff" in line)
    assert "(x2 over" in line and "pod/kube-proxy-aaaaa" in line and "Warning" in line
    assert "Back-off restarting failed container" in line


def test_kubectl_get_nodes_json(kubectl: Callable[..., Any]) -> None:
    doc = json.loads(kubectl("get", "nodes", "-o", "json").stdout)
    assert [n["metadata"]["name"] for n in doc["items"]] == ["cp-1", "worker-1"]
    assert doc["items"][0]["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.2"


def test_kubectl_logs_tail(kubectl: Callable[..., Any]) -> None:
    out = kubectl("logs", "kube-proxy-aaaaa", "-n", "kube-system", "--tail=3").stdout
    assert out == "I1126 line 48\nI1126 line 49\nI1126 line 50\n"
    previous = kubectl("logs", "kube-proxy-aaaaa", "-n", "kube-system", "--previous").stdout
    assert "iptables-restore" in previous


def test_kubectl_rollout_restart_fires_the_hook(kubectl: Callable[..., Any], lab_api: LabAPI,
                                                hooks: Hooks) -> None:
    out = kubectl("-n", "kube-system", "rollout", "restart", "ds/kube-proxy").stdout
    assert "daemonset.apps/kube-proxy restarted" in out
    hooks.wait_for("daemonset_restarted", "kube-system", "kube-proxy")
    ds = lab_api.get("apps/v1/daemonsets", "kube-system", "kube-proxy")
    assert ds is not None
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"].endswith("kube-proxy:v1.31.2")


def test_kubectl_delete_pod_waits_and_fires_the_hook(kubectl: Callable[..., Any], lab_api: LabAPI,
                                                     hooks: Hooks) -> None:
    lab_api.put("v1/pods", "kube-system", "kube-proxy-eeeee",
                pod("worker-1", {"k8s-app": "kube-proxy"}, ip="10.213.5.3"))
    out = kubectl("delete", "pod", "kube-proxy-eeeee", "-n", "kube-system").stdout
    assert 'pod "kube-proxy-eeeee" deleted' in out
    hooks.wait_for("pod_deleted", "kube-system", "kube-proxy-eeeee")
    assert lab_api.get("v1/pods", "kube-system", "kube-proxy-eeeee") is None
    gone = kubectl("get", "pod", "kube-proxy-eeeee", "-n", "kube-system", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_kubectl_describe_pod_shows_its_events(kubectl: Callable[..., Any]) -> None:
    # kubectl matches events by involvedObject.uid, which add_event fills from the stored pod.
    out = kubectl("describe", "pod", "kube-proxy-aaaaa", "-n", "kube-system").stdout
    events = out[out.index("Events:"):]
    assert "BackOff" in events and "Back-off restarting failed container" in events
    assert "CrashLoopBackOff" in out and "Restart Count:  7" in out


def test_kubectl_apply_validates_against_the_stub_openapi(kubectl: Callable[..., Any],
                                                          lab_dir: Path, lab_api: LabAPI) -> None:
    manifest = lab_dir / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n"
                        "  namespace: default\ndata:\n  mode: iptables\n")
    assert "configmap/applied created" in kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(manifest.read_text().replace("iptables", "nftables"))
    assert "configmap/applied configured" in kubectl("apply", "-f", str(manifest)).stdout
    applied = lab_api.get("v1/configmaps", "default", "applied")
    assert applied is not None and applied["data"] == {"mode": "nftables"}
    lab_api.delete("v1/configmaps", "default", "applied")


def test_kubectl_with_a_wrong_token_is_refused(kubectl: Callable[..., Any], lab_api: LabAPI,
                                               lab_dir: Path) -> None:
    path = lab_dir / "wrong-token-kubeconfig"
    lab_api.write_kubeconfig(path, "not-the-token")
    result = kubectl("get", "nodes", config_path=path, check=False)
    assert result.returncode != 0 and "Unauthorized" in result.stderr

