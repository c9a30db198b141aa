"""The lab API's read path (#17: the emulator serves every node's kubectl on the lab's own cores):
lists and gets are served from the stored objects without copies, each object serialised once per
version, and a `metadata.name=X` field selector is a lookup. What a client sees must not change:
the same bytes as serialising the whole body, the same objects as a scan with the selectors, a
new version after every write, and nothing a Python caller does to what it got reaches the store.
No root, no network namespace: a LabAPI on 127.0.0.1 without TLS (plain HTTP, token header)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from clusterfix_tui.lab import api_selectors
from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.lab.api_emulator import _json_list

TOKEN = "lab-reads-token"


@pytest.fixture
def api():
    a = LabAPI(tokens=[TOKEN])
    a.start()
    try:
        for i in range(1, 6):
            a.put("v1/nodes", None, f"node-{i}", {"metadata": {"labels": {"n": str(i % 2)}},
                                                  "spec": {"podCIDR": f"10.244.{i}.0/24"}})
            for ns in ("default", "kube-system"):
                a.put("v1/pods", ns, f"p-{i}", {"spec": {"nodeName": f"node-{i}", "containers": [{"name": "c"}]},
                                                "metadata": {"labels": {"app": "x"}}})
        # a pod named like a node: a name selector over pods must find it in each namespace
        a.put("v1/pods", "default", "node-1", {"spec": {"nodeName": "node-2"}})
        a.put("v1/pods", "kube-system", "node-1", {"spec": {"nodeName": "node-3"}})
        yield a
    finally:
        a.stop()


def _get(api: LabAPI, path: str, **params: str) -> tuple[int, bytes]:
    url = api.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _scan(api: LabAPI, resource: str, ns: str | None, fs: str | None, ls: str | None = None) -> list[str]:
    """What a walk over every stored object (kmock's own array) with the API server's selector
    semantics returns: "namespace/name", in etcd order."""
    store = api._store
    res = store.resource(resource)
    fields, labels = api_selectors.field_selector(fs), api_selectors.label_selector(ls)
    out = []
    for (r, obj_ns, _), obj in store.objects.items():
        o = obj.raw
        if r == res and not obj.deleted and (ns is None or obj_ns == ns) and fields(o) and labels(o):
            out.append((o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return [f"{a}/{b}" for a, b in sorted(out)]


def test_list_body_is_the_bytes_of_the_whole_body() -> None:
    items = [{"metadata": {"name": "a", "x": [1, 2, {"é": "\u2603"}]}}, {"metadata": {"name": "b"}}]
    head = {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "7", "continue": "e30="}}
    encoded = [json.dumps(o, separators=(",", ":")).encode() for o in items]
    want = json.dumps({**head, "items": items}, separators=(",", ":")).encode()
    assert _json_list(head, encoded).body == want
    assert _json_list(head, []).body == json.dumps({**head, "items": []}, separators=(",", ":")).encode()


@pytest.mark.parametrize("resource,path,ns,fs,ls", [
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-3", None),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name==node-3", None),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-9", None),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-3", "n=0"),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-3", "n=1"),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name!=node-3", None),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-3,spec.podCIDR=10.244.3.0/24", None),
    ("v1/nodes", "/api/v1/nodes", None, "metadata.name=node-3,spec.podCIDR=x", None),
    ("v1/nodes", "/api/v1/nodes", None, None, "n=1"),
    ("v1/pods", "/api/v1/pods", None, "metadata.name=node-1", None),
    ("v1/pods", "/api/v1/namespaces/default/pods", "default", "metadata.name=node-1", None),
    ("v1/pods", "/api/v1/namespaces/kube-system/pods", "kube-system", "metadata.name=p-2", None),
    ("v1/pods", "/api/v1/namespaces/nope/pods", "nope", "metadata.name=p-2", None),
    ("v1/pods", "/api/v1/pods", None, "spec.nodeName=node-2", None),
    ("v1/pods", "/api/v1/namespaces/default/pods", "default", None, None),
])
def test_selectors_find_what_a_scan_finds(api, resource, path, ns, fs, ls) -> None:
    params = {k: v for k, v in (("fieldSelector", fs), ("labelSelector", ls)) if v}
    status, body = _get(api, path, **params)
    assert status == 200, body
    doc = json.loads(body)
    got = [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in doc["items"]]
    assert got == _scan(api, resource, ns, fs, ls)
    assert doc["metadata"]["resourceVersion"] == str(api._store.resource_version)
    # the Python API agrees
    assert [f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
            for o in api.list(resource, ns, field_selector=fs, label_selector=ls)] == got


def test_a_name_selector_on_a_cluster_wide_kind_in_a_namespace_finds_nothing(api) -> None:
    assert api.list("v1/nodes", "default", field_selector="metadata.name=node-1") == []
    assert api.list("v1/nodes", "default") == []


def test_a_write_is_seen_by_the_next_read(api) -> None:
    path = "/api/v1/nodes"
    one = json.loads(_get(api, path, fieldSelector="metadata.name=node-2")[1])["items"][0]
    api.mutate("v1/nodes", None, "node-2", lambda o: o["spec"].update(podCIDR="10.99.0.0/24"))
    two = json.loads(_get(api, path, fieldSelector="metadata.name=node-2")[1])["items"][0]
    assert one["spec"]["podCIDR"] == "10.244.2.0/24" and two["spec"]["podCIDR"] == "10.99.0.0/24"
    assert int(two["metadata"]["resourceVersion"]) > int(one["metadata"]["resourceVersion"])
    got = json.loads(_get(api, "/api/v1/nodes/node-2")[1])
    assert got == two
    api.delete("v1/nodes", None, "node-2")
    assert json.loads(_get(api, path, fieldSelector="metadata.name=node-2")[1])["items"] == []
    assert _get(api, "/api/v1/nodes/node-2")[0] == 404
    api.put("v1/nodes", None, "node-2", {"spec": {"podCIDR": "10.1.0.0/24"}})
    again = json.loads(_get(api, "/api/v1/nodes/node-2")[1])
    assert again["spec"] == {"podCIDR": "10.1.0.0/24"} and "labels" not in again["metadata"]


def test_what_a_python_caller_changes_never_reaches_the_store(api) -> None:
    got = api.get("v1/nodes", None, "node-1")
    got["spec"]["podCIDR"] = "changed"
    listed = api.list("v1/nodes")
    listed[0]["metadata"]["name"] = "changed"
    served = json.loads(_get(api, "/api/v1/nodes/node-1")[1])
    assert served["spec"]["podCIDR"] == "10.244.1.0/24"
    assert [o["metadata"]["name"] for o in api.list("v1/nodes")][0] == "node-1"


def test_name_equals_only_for_one_positive_name_term() -> None:
    f = api_selectors.name_equals
    assert f("metadata.name=a") == "a" and f("metadata.name==a") == "a" and f(" metadata.name = a ") == "a"
    for sel in (None, "", "metadata.name!=a", "metadata.name=a,spec.x=b", "spec.nodeName=a",
                "metadata.namespace=a"):
        assert f(sel) is None, sel
