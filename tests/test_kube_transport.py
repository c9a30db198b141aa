"""KubeClusterAPI over real HTTPS: the lab's API server (kmock-based, its own CA) on 127.0.0.1.

Nothing is patched: the official client talks to the server over TCP. The 403 and "never answers"
cases use tiny stdlib servers on loopback, the unreachable case a closed loopback port.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
import yaml
from _env import require_tool

from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.transports.base import APIError, ClusterAPI
from clusterfix_tui.transports.kube import APIUnreachable, KubeClusterAPI, KubeconfigError

TOKEN = "cfx-test-token-7f3a9c1d2e"


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A loopback port bound but never listening: connecting to it is refused, and no other
    process (another xdist worker) can take it while the test uses it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def lab_api():
    api = LabAPI("127.0.0.1", tokens=[TOKEN], tls=True)  # kubectl sends no token over http
    api.start()
    for i, cidr in ((1, "10.244.0.0/24"), (2, "10.244.1.0/24"), (3, "10.244.2.0/24")):
        api.put("v1/nodes", None, f"node-{i}", {
            "metadata": {"name": f"node-{i}", "labels": {"kubernetes.io/hostname": f"node-{i}"},
                         "annotations": {"flannel.alpha.coreos.com/public-ip": f"10.0.0.{i}"}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.0.{i}"}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
        })
        api.put("v1/pods", "kube-system", f"kube-proxy-{i}", {
            "metadata": {"name": f"kube-proxy-{i}", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-proxy"}},
            "spec": {"nodeName": f"node-{i}",
                     "containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.31"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "kube-proxy", "ready": i != 2, "restartCount": 7 if i == 2 else 0,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}} if i == 2 else
                 {"running": {}}}]},
        })
    api.put("v1/pods", "default", "jellyfin-0", {
        "metadata": {"name": "jellyfin-0", "namespace": "default", "labels": {"app": "jellyfin"}},
        "spec": {"nodeName": "node-2", "containers": [{"name": "jellyfin", "image": "jf"}]},
        "status": {"phase": "Running", "podIP": "10.244.1.5"},
    })
    template = {"metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {"containers": [{"name": "kube-proxy", "image": "kube-proxy:v1.31"}]}}
    api.put("apps/v1/daemonsets", "kube-system", "kube-proxy", {
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}}, "template": template},
    })
    api.put("apps/v1/daemonsets", "kube-flannel", "kube-flannel-ds", {
        "metadata": {"name": "kube-flannel-ds", "namespace": "kube-flannel"},
        "spec": {"selector": {"matchLabels": {"app": "flannel"}},
                 "template": {"metadata": {"labels": {"app": "flannel"}},
                              "spec": {"containers": [{"name": "kube-flannel", "image": "f"}]}}},
    })
    api.put("v1/configmaps", "kube-system", "kube-proxy", {
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "mode: iptables\n"},
    })
    api.put("apps/v1/deployments", "default", "jellyfin", {
        "metadata": {"name": "jellyfin", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "jellyfin"}},
                 "template": {"metadata": {"labels": {"app": "jellyfin"}},
                              "spec": {"containers": [{"name": "jellyfin", "image": "jf",
                                                       "readinessProbe": {"tcpSocket": {
                                                           "port": 8096}}}]}}},
    })
    api.put("v1/services", "default", "jellyfin", {
        "metadata": {"name": "jellyfin", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "jellyfin"},
                 "ports": [{"port": 8096, "targetPort": 8096, "nodePort": 30096}]},
    })
    api.put("v1/endpoints", "default", "jellyfin", {
        "metadata": {"name": "jellyfin", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 8096}]}],
    })
    api.add_event("default", {"kind": "Pod", "name": "jellyfin-0"}, "Unhealthy",
                  "Readiness probe failed: dial tcp 10.244.1.5:8096: connect: no route to host")
    api.set_pod_log("kube-system", "kube-proxy-2", "".join(f"line {n}\n" for n in range(1, 101)),
                    previous="Error: chain KUBE-SERVICES is incompatible, use 'nft' tool\n")
    yield api
    api.stop()


@pytest.fixture(scope="module")
def kubeconfig(lab_api: LabAPI, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("kube") / "kubeconfig"
    lab_api.write_kubeconfig(path, TOKEN)
    return str(path)


@pytest.fixture(scope="module")
def kube(kubeconfig: str) -> KubeClusterAPI:
    return KubeClusterAPI(kubeconfig)


def names(items: list[dict]) -> list[str]:
    return sorted(i["metadata"]["name"] for i in items)


# ---------------------------------------------------------------------------------------------


def test_it_is_a_cluster_api_and_describes_without_secrets(kube: KubeClusterAPI,
                                                           lab_api: LabAPI) -> None:
    assert isinstance(kube, ClusterAPI)
    info = kube.describe()
    assert info == {"context": "clusterfix-lab", "server": lab_api.url, "user": "lab-admin",
                    "cluster": "clusterfix-lab", "kubeconfig": kube.kubeconfig,
                    "kubeconfig_source": "--kubeconfig"}
    assert TOKEN not in json.dumps(info) and TOKEN not in repr(kube)


def test_version(kube: KubeClusterAPI) -> None:
    v = kube.version()
    assert v["major"] == "1" and v["gitVersion"].startswith("v1.")


def test_nodes_are_camelcase_dicts(kube: KubeClusterAPI) -> None:
    nodes = kube.list_nodes()
    assert names(nodes) == ["node-1", "node-2", "node-3"]
    n2 = next(n for n in nodes if n["metadata"]["name"] == "node-2")
    assert n2["kind"] == "Node" and n2["apiVersion"] == "v1"
    assert n2["spec"]["podCIDR"] == "10.244.1.0/24"
    assert n2["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"}]
    assert isinstance(n2, dict) and "creationTimestamp" in n2["metadata"]


def test_lists_follow_continue_pages(kubeconfig: str) -> None:
    small_pages = KubeClusterAPI(kubeconfig, page_size=2)
    assert names(small_pages.list_nodes()) == ["node-1", "node-2", "node-3"]
    assert len(small_pages.list_pods()) == 4


def test_pods_by_namespace_and_labels(kube: KubeClusterAPI) -> None:
    assert names(kube.list_pods()) == ["jellyfin-0", "kube-proxy-1", "kube-proxy-2",
                                       "kube-proxy-3"]
    assert names(kube.list_pods("default")) == ["jellyfin-0"]
    assert names(kube.list_pods("kube-system", "k8s-app=kube-proxy")) == [
        "kube-proxy-1", "kube-proxy-2", "kube-proxy-3"]
    assert names(kube.list_pods(label_selector="app=jellyfin")) == ["jellyfin-0"]
    assert kube.list_pods("kube-system", "app=jellyfin") == []
    crash = next(p for p in kube.list_pods("kube-system") if p["metadata"]["name"].endswith("2"))
    status = crash["status"]["containerStatuses"][0]
    assert status["restartCount"] == 7
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"


def test_daemonsets_configmaps_services_endpoints_events_deployments(kube: KubeClusterAPI) -> None:
    assert names(kube.list_daemonsets()) == ["kube-flannel-ds", "kube-proxy"]
    assert names(kube.list_daemonsets("kube-flannel")) == ["kube-flannel-ds"]
    assert kube.list_daemonsets("kube-flannel")[0]["kind"] == "DaemonSet"
    cm = kube.get_configmap("kube-system", "kube-proxy")
    assert cm is not None and cm["data"]["config.conf"] == "mode: iptables\n"
    assert kube.get_configmap("kube-system", "no-such-map") is None
    svc = kube.list_services("default")
    assert svc[0]["spec"]["ports"][0]["nodePort"] == 30096 and svc[0]["spec"]["type"] == "NodePort"
    assert names(kube.list_services()) == ["jellyfin"]
    eps = kube.list_endpoints("default")
    assert eps[0]["subsets"][0]["addresses"][0]["ip"] == "10.244.1.5"
    assert names(kube.list_endpoints()) == ["jellyfin"]
    events = kube.list_events()
    assert any("no route to host" in e["message"] and e["involvedObject"]["name"] == "jellyfin-0"
               and e["type"] == "Warning" for e in events)
    assert kube.list_events("kube-system") == []
    dep = kube.get_deployment("default", "jellyfin")
    assert dep is not None and dep["spec"]["replicas"] == 1
    assert kube.get_deployment("default", "nope") is None


def test_pod_log_tail_and_previous(kube: KubeClusterAPI) -> None:
    assert kube.pod_log("kube-system", "kube-proxy-2", tail_lines=3) == (
        "line 98\nline 99\nline 100\n")
    assert "incompatible" in kube.pod_log("kube-system", "kube-proxy-2", "kube-proxy",
                                          previous=True)


def test_delete_pod(kube: KubeClusterAPI, lab_api: LabAPI) -> None:
    lab_api.put("v1/pods", "default", "doomed", {
        "metadata": {"name": "doomed", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}})
    kube.delete_pod("default", "doomed")
    assert lab_api.get("v1/pods", "default", "doomed") is None
    with pytest.raises(APIError) as info:
        kube.delete_pod("default", "doomed")
    assert info.value.status == 404 and "doomed" in str(info.value)


def test_restart_daemonset_like_kubectl(kube: KubeClusterAPI, lab_api: LabAPI) -> None:
    fired = threading.Event()
    lab_api.on_daemonset_restarted = lambda ns, name: fired.set()
    try:
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        kube.restart_daemonset("kube-system", "kube-proxy")
        after = datetime.datetime.now(datetime.UTC)
        ds = lab_api.get("apps/v1/daemonsets", "kube-system", "kube-proxy")
        stamp = ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
        when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
        assert before <= when <= after  # stamped during the call
        # the strategic merge kept the rest of the template
        assert ds["spec"]["template"]["metadata"]["labels"] == {"k8s-app": "kube-proxy"}
        assert fired.wait(120), "the API server did not see a rollout restart"
    finally:
        lab_api.on_daemonset_restarted = None
    with pytest.raises(APIError, match="404"):
        kube.restart_daemonset("kube-system", "no-such-ds")


def test_patch_deployment(kube: KubeClusterAPI, lab_api: LabAPI) -> None:
    out = kube.patch_deployment("default", "jellyfin", {"metadata": {"labels": {"cfx": "yes"}}})
    assert out["metadata"]["labels"]["cfx"] == "yes" and out["kind"] == "Deployment"
    assert lab_api.get("apps/v1/deployments", "default", "jellyfin")["metadata"]["labels"] == {
        "cfx": "yes"}


def test_same_json_as_kubectl(kube: KubeClusterAPI, kubeconfig: str,
                              tmp_path: pathlib.Path) -> None:
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "--cache-dir", str(tmp_path), "get", "nodes",
         "-o", "json"], capture_output=True, text=True, timeout=30, check=True)
    by_kubectl = {n["metadata"]["name"]: n for n in json.loads(out.stdout)["items"]}
    by_us = {n["metadata"]["name"]: n for n in kube.list_nodes()}
    assert by_us == by_kubectl


# --- bad configuration: each a clear error ---------------------------------------------------


def test_missing_kubeconfig(tmp_path: pathlib.Path) -> None:
    with pytest.raises(KubeconfigError, match="does not exist") as info:
        KubeClusterAPI(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)


def test_default_kubeconfig_from_env(kubeconfig: str, tmp_path: pathlib.Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}{os.pathsep}{kubeconfig}")
    assert KubeClusterAPI().describe()["context"] == "clusterfix-lab"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubeconfigError, match="does not exist"):
        KubeClusterAPI()


def test_kubeconfig_list_merges_contexts(kubeconfig: str, lab_api: LabAPI,
                                         tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    second = tmp_path / "second"
    lab_api.write_kubeconfig(second, TOKEN, cluster="c2", user="u2", context="second-ctx")
    monkeypatch.setenv("KUBECONFIG", f"{kubeconfig}{os.pathsep}{second}")
    api = KubeClusterAPI(context="second-ctx")
    assert api.describe() == {"context": "second-ctx", "server": lab_api.url, "user": "u2",
                              "cluster": "c2", "kubeconfig": f"{kubeconfig}, {second}",
                              "kubeconfig_source": "KUBECONFIG"}
    assert names(api.list_nodes()) == ["node-1", "node-2", "node-3"]
    assert KubeClusterAPI().describe()["context"] == "clusterfix-lab"  # first file's current


@pytest.mark.parametrize("text, expect", [
    ("clusters: [\n  - name: x\n users: {", "not valid YAML (line"),
    ("- just\n- a list\n", "not a kubeconfig"),
    ("clusters: 5\n", "'clusters' must be a list"),
    ("apiVersion: v1\nkind: Config\n", "has no current-context"),
])
def test_malformed_kubeconfig(tmp_path: pathlib.Path, text: str, expect: str) -> None:
    path = tmp_path / "bad"
    path.write_text(text)
    with pytest.raises(KubeconfigError) as info:
        KubeClusterAPI(str(path))
    assert expect in str(info.value) and str(path) in str(info.value)


def test_unknown_context_lists_known_ones(kubeconfig: str) -> None:
    with pytest.raises(KubeconfigError) as info:
        KubeClusterAPI(kubeconfig, context="prod-east")
    assert "'prod-east'" in str(info.value) and "known contexts: clusterfix-lab" in str(info.value)


def test_unreachable_server_names_the_url(kubeconfig: str, tmp_path: pathlib.Path) -> None:
    doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    with _refusing_port() as port:
        doc["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
        path = tmp_path / "dead"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(APIUnreachable) as info:
            KubeClusterAPI(str(path)).list_nodes()
    msg = str(info.value)
    assert f"http://127.0.0.1:{port}" in msg and "connection refused" in msg
    assert TOKEN not in msg


def test_a_failed_request_is_not_retried(kubeconfig: str, tmp_path: pathlib.Path) -> None:
    # fail fast, the user retries: one connection per call, not the client's default 3 retries
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:  # accepts and hangs up before answering
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
        doc["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
        path = tmp_path / "hangs-up"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(APIUnreachable):
            KubeClusterAPI(str(path)).list_nodes()
    finally:
        stop.set()
        server.join(120)
        listener.close()
    assert len(accepted) == 1


def test_untrusted_certificate_is_a_tls_error(kubeconfig: str, tmp_path: pathlib.Path) -> None:
    doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]  # system CAs only
    path = tmp_path / "noca"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(APIUnreachable, match="TLS failed") as info:
        KubeClusterAPI(str(path)).list_nodes()
    assert doc["clusters"][0]["cluster"]["server"] in str(info.value)


def test_server_that_never_answers_times_out(kubeconfig: str, tmp_path: pathlib.Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    try:
        doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
        doc["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
        path = tmp_path / "silent"
        path.write_text(yaml.safe_dump(doc))
        api = KubeClusterAPI(str(path), request_timeout=(1, 1))
        raised: list[BaseException] = []

        def call() -> None:
            try:
                api.version()
            except BaseException as exc:  # noqa: B036 - handed to the test thread
                raised.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(120)  # a deadline, not a speed check: without a timeout it never returns
        assert not caller.is_alive(), "the call waited for a server that never answers"
    finally:
        listener.close()
    assert len(raised) == 1 and isinstance(raised[0], APIUnreachable), raised
    assert "timed out" in str(raised[0])
    # the configured read timeout (not the 15 s default) is what reached urllib3's socket
    causes = []
    exc: BaseException | None = raised[0]
    while exc is not None:
        causes.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("read timeout=1)" in c for c in causes), causes


def test_wrong_token_is_401_without_the_token(kubeconfig: str, lab_api: LabAPI,
                                              tmp_path: pathlib.Path) -> None:
    path = tmp_path / "wrong"
    lab_api.write_kubeconfig(path, "not-the-token-5e5e5e")
    with pytest.raises(APIError) as info:
        KubeClusterAPI(str(path)).list_nodes()
    assert info.value.status == 401 and "401" in str(info.value)
    assert "not-the-token-5e5e5e" not in str(info.value)


class _Forbidden(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": 'nodes is forbidden: User "viewer" cannot list resource '
                                      '"nodes" in API group "" at the cluster scope',
                           "reason": "Forbidden", "code": 403}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_forbidden_is_403_with_the_servers_reason(kubeconfig: str, tmp_path: pathlib.Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidden)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        doc = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
        doc["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{server.server_address[1]}"
        path = tmp_path / "forbidden"
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(APIError) as info:
            KubeClusterAPI(str(path)).list_nodes()
        assert info.value.status == 403
        assert "403 Forbidden" in str(info.value) and 'User "viewer" cannot list' in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
