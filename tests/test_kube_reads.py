"""KubeClusterAPI's reads go through the client's ApiClient without the generated API classes
(CoreV1Api, AppsV1Api, VersionApi: importing them builds ~280 pydantic models, 1.2-1.7 s of CPU
per process): every read must send exactly the request the generated method sends (method, URL
with path quoting and query encoding, headers with the auth settings), and a write still goes
through the generated class, imported on first use. The answers themselves are checked against
the lab API server in tests/test_kube_transport.py (same JSON as kubectl, errors, TLS, token)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

from clusterfix_tui.transports import kube as K

REPO = str(pathlib.Path(__file__).resolve().parents[1])


def _kubeconfig(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "sekret-token"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return str(path)


def _same_query_order(sent: tuple) -> tuple:
    url = sent[1]
    path, _, query = url.partition("?")
    return (sent[0], path, sorted(query.split("&")) if query else [], *sent[2:])


class _Sent(Exception):
    pass


# (method, positional args, keyword args) as kube.py calls them
CALLS = [
    ("list_node", (), {"limit": 500}),
    ("list_node", (), {"limit": 500, "_continue": "abc/=+"}),
    ("list_pod_for_all_namespaces", (), {"limit": 500, "label_selector": "app=x,tier in (a,b)"}),
    ("list_namespaced_pod", ("kube-system",), {"limit": 10, "label_selector": "k8s-app=kube-dns"}),
    ("read_namespaced_config_map", ("kube-proxy", "kube-system"), {}),
    ("read_namespace", ("kube-flannel",), {}),
    ("list_service_for_all_namespaces", (), {"limit": 500}),
    ("list_namespaced_service", ("default",), {"limit": 500}),
    ("list_endpoints_for_all_namespaces", (), {"limit": 500}),
    ("list_namespaced_endpoints", ("default",), {"limit": 500}),
    ("list_event_for_all_namespaces", (), {"limit": 500}),
    ("list_namespaced_event", ("default",), {"limit": 500}),
    ("read_namespaced_pod_log", ("kube-flannel-ds-x y", "kube-flannel"),
     {"tail_lines": 50, "container": "kube-flannel", "previous": True}),
    ("read_namespaced_pod_log", ("p/../q", "ns"), {"tail_lines": 50}),
    ("list_daemon_set_for_all_namespaces", (), {"limit": 500}),
    ("list_namespaced_daemon_set", ("kube-system",), {"limit": 500}),
    ("read_namespaced_deployment", ("coredns", "kube-system"), {}),
    ("get_code", (), {}),
    ("read_namespaced_service", ("kube-dns", "kube-system"), {}),
    ("list_namespaced_deployment", ("kube-system",), {"limit": 500}),
    ("list_namespaced_endpoint_slice", ("kube-system",),
     {"limit": 500, "label_selector": "kubernetes.io/service-name=kube-dns"}),
]


def test_every_read_sends_the_generated_methods_request(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client

    api = K.KubeClusterAPI(_kubeconfig(tmp_path))
    sent: list[tuple] = []

    def capture(method, url, header_params=None, body=None, post_params=None,
                _request_timeout=None):
        sent.append((method, url, dict(header_params or {}), body, post_params, _request_timeout))
        raise _Sent

    monkeypatch.setattr(api._api_client, "call_api", capture)
    generated = {"CoreV1Api": client.CoreV1Api(api._api_client),
                 "AppsV1Api": client.AppsV1Api(api._api_client),
                 "VersionApi": client.VersionApi(api._api_client),
                 "DiscoveryV1Api": client.DiscoveryV1Api(api._api_client)}
    ours = {"CoreV1Api": api._core, "AppsV1Api": api._apps, "VersionApi": api._version,
            "DiscoveryV1Api": api._discovery}
    assert set(K._READS) == {name for name, _a, _k in CALLS}
    for name, args, kwargs in CALLS:
        cls = next(c for c, g in generated.items() if hasattr(g, name))
        for api_obj in (generated[cls], ours[cls]):
            with pytest.raises(_Sent):
                getattr(api_obj, name)(*args, _preload_content=False,
                                       _request_timeout=(5, 15), **kwargs)
        theirs, mine = (_same_query_order(x) for x in sent[-2:])
        assert mine == theirs, name  # the query's pieces, each encoded alike, in any order
        assert mine[3]["authorization"] == "Bearer sekret-token"


def test_a_non_2xx_answer_raises_as_the_generated_code_does() -> None:
    from kubernetes.client.exceptions import ApiException

    class Resp:
        status, reason, data = 404, "Not Found", b'{"message": "nope"}'
        headers: dict = {}
        response = None

        def read(self) -> bytes:
            return self.data

        def getheaders(self) -> dict:
            return {}

    class Client:
        def param_serialize(self, **kw):
            return "GET", "https://x" + kw["resource_path"], {}, None, []

        def call_api(self, *a, **kw):
            return Resp()

    with pytest.raises(ApiException) as err:
        K._Get(Client(), "/api/v1/namespaces/{name}", ("name",))("x")
    assert err.value.status == 404 and "nope" in str(err.value.body)
    with pytest.raises(TypeError):
        K._Get(Client(), "/api/v1/namespaces/{name}", ("name",))("")  # never an empty name


def test_reading_never_imports_the_generated_classes_and_a_write_does(
        tmp_path: pathlib.Path) -> None:
    code = f"""
import json, sys
from clusterfix_tui.transports.kube import KubeClusterAPI
api = KubeClusterAPI({_kubeconfig(tmp_path)!r})
for name in ("list_node", "read_namespaced_pod_log", "list_namespaced_daemon_set"):
    getattr(api._core if "daemon" not in name else api._apps, name)
before = "kubernetes.client.api.core_v1_api" in sys.modules
api._core.delete_namespaced_pod
print(json.dumps([before, "kubernetes.client.api.core_v1_api" in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, True]


def test_a_client_without_param_serialize_reads_through_the_generated_class() -> None:
    """pyproject allows kubernetes>=30, whose ApiClient predates param_serialize: there every
    read is the generated method itself (as before _Get), never an AttributeError mid-diagnosis."""

    class OldClient:  # an ApiClient of the older generator: no param_serialize
        pass

    class Generated:
        def __init__(self, api_client: object) -> None:
            self.api_client = api_client

        def list_node(self, **kw: object) -> tuple:
            return ("generated", kw)

    api = K._Api(OldClient(), "CoreV1Api")
    api._generated = Generated(api._api_client)
    assert api.list_node(limit=5) == ("generated", {"limit": 5})

    class NewClient(OldClient):
        def param_serialize(self, **kw: object) -> None:
            raise _Sent(kw)

    assert isinstance(K._Api(NewClient(), "CoreV1Api").list_node, K._Get)
