"""kmock's KubernetesEmulator, extended until the official client and kubectl work against it.

kmock 0.8 parses the URL into resource/namespace/name/subresource, serves discovery and renders
Kubernetes Status errors; this subclass adds what kubectl and the client need on top (see
docs in LAB-FACTS "No real kube-apiserver"): bearer tokens, selectors, PUT, the three PATCH types,
pods/log as text/plain, server-side Tables, watches as JSON lines with resourceVersion resume,
uid/resourceVersion/creationTimestamp, and a corrected core discovery (groupVersion "v1").
Everything runs on the event loop thread; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import functools
import json
import logging
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import parsing, rendering

from clusterfix_tui.lab import api_selectors, api_tables
from clusterfix_tui.lab.api_patch import apply_patch, bad_request
from clusterfix_tui.lab.api_store import Obj, ObjectStore, api_version, not_found

log = logging.getLogger(__name__)

SERVER_VERSION = {
    "major": "1", "minor": "31", "gitVersion": "v1.31.2",
    "gitCommit": "5864a4677267e6adeae276ad85882a8714d69d9d", "gitTreeState": "clean",
    "buildDate": "2024-10-22T20:28:14Z", "goVersion": "go1.22.8", "compiler": "gc",
    "platform": "linux/amd64",
}

# What the lab serves, with kmock's bundled discovery data (kinds, short names, verbs) for each.
SERVED_RESOURCES = (
    "v1/pods", "v1/nodes", "v1/namespaces", "v1/services", "v1/endpoints", "v1/configmaps",
    "v1/events", "v1/secrets", "v1/serviceaccounts",
    "apps/v1/daemonsets", "apps/v1/deployments", "apps/v1/replicasets", "apps/v1/statefulsets",
    "discovery.k8s.io/v1/endpointslices",
)


def _proto_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are < 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


# kubectl apply/create/replace -f download the OpenAPI v2 document (protobuf only) for client-side
# validation and fail without one; with a document that defines no kinds they skip validation,
# as they do for any kind the document lacks. openapi_v2.Document: swagger=1, info=2 {title=1,
# version=2}.
OPENAPI_V2 = _proto_field(1, b"2.0") + _proto_field(
    2, _proto_field(1, b"Kubernetes") + _proto_field(2, SERVER_VERSION["gitVersion"].encode()))
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
SERVED_SUBRESOURCES = frozenset({
    "pods/status", "pods/log", "pods/eviction", "nodes/status", "namespaces/status",
    "services/status", "daemonsets/status", "deployments/status", "deployments/scale",
    "replicasets/status", "replicasets/scale", "statefulsets/status", "statefulsets/scale",
})
PODS = kmock.resource("v1/pods")
WATCH_HISTORY = 4096  # events kept for watches resuming from a resourceVersion

# on_write(verb, resource, namespace, name, before, after): an API client changed an object.
WriteListener = Callable[[str, kmock.resource, "str | None", str, "Obj | None", "Obj | None"], None]


def _status(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or {})


def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status,
        content_type="application/json",
    )


def _json_list(head: dict[str, Any], items: list[bytes]) -> aiohttp.web.Response:
    """_json(dict(head, items=[...])) from the items' JSON (each made once per object version):
    the same bytes json.dumps gives for the whole body."""
    text = json.dumps(head, separators=(",", ":")).encode()
    return aiohttp.web.Response(
        body=b"".join((text[:-1], b',"items":[', b",".join(items), b"]}")),
        content_type="application/json")


@dataclasses.dataclass(eq=False)
class _Watcher:
    resource: kmock.resource
    matches: Callable[[Obj], bool]
    since_rv: int = 0
    queue: asyncio.Queue[tuple[str, Obj, int] | None] = dataclasses.field(
        default_factory=asyncio.Queue)


@functools.cache
def _bundled_resources() -> kmock.ResourcesArray:
    bundled = kmock.ResourcesArray()
    with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources.read_binary
        warnings.simplefilter("ignore", DeprecationWarning)
        bundled.load_bundled()
    return bundled


class PodLogs:
    """Log text per pod, current and previous container; set from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str], tuple[str, str | None]] = {}

    def set(self, namespace: str, name: str, text: str, previous: str | None = None) -> None:
        with self._lock:
            self._logs[namespace, name] = (text, previous)

    def get(self, namespace: str, name: str) -> tuple[str, str | None]:
        with self._lock:
            return self._logs.get((namespace, name), ("", None))


class LabEmulator(kmock.KubernetesEmulator):
    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__()
        bundled = _bundled_resources()
        for spec in SERVED_RESOURCES:
            self.resources[spec] = bundled[spec]
        self.tokens = frozenset(tokens)
        # what is served, by (group, version, plural): looked up per request without kmock's
        # resource parsing
        self._served = {_rk(res): self.resources[res] for res in self.resources}
        self.store = ObjectStore(self.resources, self.objects)
        self.store.on_change = self._on_store_change
        self.logs = PodLogs()
        self.on_write: WriteListener | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._watchers: set[_Watcher] = set()
        self._history: collections.deque[tuple[int, str, kmock.resource, Obj]] = collections.deque()
        self._history_floor = 0  # history holds every event after this resourceVersion

    # -- plumbing ----------------------------------------------------------------------------
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's RawHandler.__call__ without its per-request recording (a lab runs for hours,
        kmock keeps every request for test assertions) and with a path parser that knows the
        namespaces resource itself (kmock 0.8 fails on /api/v1/namespaces)."""
        try:
            request = await _parse_request(raw_request)
        except Exception as e:  # noqa: BLE001 -- every failure becomes a Status for the client
            return await self._render_error(e)
        # kmock's DSL only matches requests that are recorded on the root; forget them after.
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:  # noqa: BLE001 -- every failure becomes a Status for the client
            return await self._render_error(e)
        finally:
            for recorded in (self._requests, *(payload._requests for payload in self._payloads)):
                with contextlib.suppress(ValueError):
                    recorded.remove(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if not isinstance(exc, kmock.KubernetesError):
            log.error("lab API: unexpected error", exc_info=exc)
            return await super()._render_error(exc)  # a 500 Status with the traceback
        if isinstance(exc, kmock.KubernetesNotFoundError):  # kmock's own 404s (unknown URLs)
            exc = _status(404, "NotFound", "the server could not find the requested resource")
        # kmock puts a traceback into details when they are empty; clients print details.
        return _json({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": exc.message, "reason": exc.reason, "details": exc.details or {},
            "code": exc.status,
        }, status=exc.status)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        if raw.path in UNAUTHENTICATED_PATHS:
            return aiohttp.web.Response(text="ok")
        if raw.path.rstrip("/") == "/version":  # the Python client asks for /version/
            return _json(SERVER_VERSION)
        if self.tokens:
            scheme, _, token = raw.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self.tokens:
                raise _status(401, "Unauthorized", "Unauthorized")
        if raw.path == "/openapi/v2":
            return aiohttp.web.Response(body=OPENAPI_V2, content_type="application/octet-stream")
        if request.resource is not None and request.resource.plural:
            return await self._serve_resource(request, raw)
        # Discovery: kmock's DSL fallbacks (skipping the emulator's own object bookkeeping,
        # which the store replaces).
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    # -- discovery ---------------------------------------------------------------------------
    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        doc = await super()._serve_version(request)
        assert isinstance(doc, dict)
        doc["groupVersion"] = doc["groupVersion"].lstrip("/")  # kmock says "/v1" for the core group
        served = []
        for entry in doc["resources"]:
            if "/" in entry["name"]:
                if entry["name"] not in SERVED_SUBRESOURCES:
                    continue  # exec, attach, portforward, proxy...: not served, not advertised
                entry["shortNames"], entry["categories"] = [], []
            entry["verbs"] = sorted(entry["verbs"])
            served.append(entry)
        doc["resources"] = sorted(served, key=lambda entry: entry["name"])
        return doc

    # -- resources ---------------------------------------------------------------------------
    async def _serve_resource(
        self, request: rendering.Request, raw: aiohttp.web.BaseRequest,
    ) -> aiohttp.web.StreamResponse:
        res = request.resource
        assert res is not None
        if _rk(res) not in self._served:
            raise _status(404, "NotFound", "the server could not find the requested resource")
        ns, name, sub = request.namespace, request.name, request.subresource
        if ns is not None and not self.store.namespaced(res):
            raise _status(404, "NotFound", "the server could not find the requested resource")
        method = raw.method
        params = raw.query
        if sub is not None and f"{res.plural}/{sub}" not in SERVED_SUBRESOURCES:
            raise _status(404, "NotFound", "the server could not find the requested resource")

        if method == "GET" and params.get("watch") in ("1", "true", "True"):
            return await self._watch(raw, res, ns, name)
        if method == "GET" and sub == "log":
            return self._pod_log(raw, ns or "default", str(name))
        if sub == "scale" and name is not None:
            return self._scale(request, raw, res, ns, name)
        if method == "POST" and sub == "eviction" and name is not None:
            self._delete(res, ns, name)  # no disruption budgets in the lab: evicting is deleting
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Success", "code": 201}, status=201)
        if method == "GET" and name is None:
            return self._list(raw, res, ns)
        if method == "GET" and name is not None:
            return self._get(raw, res, ns, name)
        if method == "POST" and name is None:
            return self._create(request, res, ns)
        if method == "PUT" and name is not None:
            return self._replace(request, res, ns, name, status_only=sub == "status")
        if method == "PATCH" and name is not None:
            return self._patch(request, raw, res, ns, name, status_only=sub == "status")
        if method == "DELETE" and name is not None:
            return self._delete(res, ns, name)
        if method == "DELETE":
            return self._delete_collection(raw, res, ns)
        raise _status(405, "MethodNotAllowed", f"the server does not allow this method on {res.plural}")

    def _list(self, raw: aiohttp.web.BaseRequest, res: kmock.resource, ns: str | None) -> aiohttp.web.Response:
        params = raw.query
        # the stored objects themselves (no copies): serialised here, never changed
        items, rv = self.store.refs(
            res, ns, label_selector=params.get("labelSelector"),
            field_selector=params.get("fieldSelector"),
        )
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        items, token = _page(items, params.get("limit"), params.get("continue"))
        if token:
            meta["continue"] = token
        if api_tables.wants_table(raw.headers.get("Accept")):
            body = api_tables.table(
                str(res.plural), items, resource_version=str(rv),
                include_object=params.get("includeObject", "Metadata"),
            )
            body["metadata"] = meta
            return _json(body)
        kind = self._served[_rk(res)].kind or str(res.plural).capitalize()
        return _json_list({"kind": f"{kind}List", "apiVersion": api_version(res), "metadata": meta},
                          [self.store.encode(res, obj) for obj in items])

    def _get(self, raw: aiohttp.web.BaseRequest, res: kmock.resource, ns: str | None, name: str) -> aiohttp.web.Response:
        obj = self.store.ref(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        if api_tables.wants_table(raw.headers.get("Accept")):
            return _json(api_tables.table(
                str(res.plural), [obj], resource_version=obj["metadata"]["resourceVersion"],
                include_object=raw.query.get("includeObject", "Metadata"),
            ))
        return aiohttp.web.Response(body=self.store.encode(res, obj), content_type="application/json")

    def _create(self, request: rendering.Request, res: kmock.resource, ns: str | None) -> aiohttp.web.Response:
        body = _body(request, dict)
        obj = self.store.create(res, ns, body)
        meta = obj["metadata"]
        self._wrote("create", res, meta.get("namespace"), meta["name"], None, obj)
        return _json(obj, status=201)

    def _replace(self, request: rendering.Request, res: kmock.resource, ns: str | None, name: str,
                 *, status_only: bool) -> aiohttp.web.Response:
        body = _body(request, dict)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise bad_request(f"the name of the object ({body_name}) does not match the name on "
                              f"the URL ({name})")
        before, after = self.store.replace(res, ns, name, body, status_only=status_only)
        self._wrote("update", res, ns, name, before, after)
        return _json(after)

    def _patch(self, request: rendering.Request, raw: aiohttp.web.BaseRequest, res: kmock.resource,
               ns: str | None, name: str, *, status_only: bool) -> aiohttp.web.Response:
        patch = _body(request, (dict, list))
        before, after = self.store.patch(
            res, ns, name, patch, raw.headers.get("Content-Type", ""), status_only=status_only)
        self._wrote("patch", res, ns, name, before, after)
        return _json(after)

    def _delete(self, res: kmock.resource, ns: str | None, name: str) -> aiohttp.web.Response:
        obj = self.store.delete(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        self._wrote("delete", res, ns, name, obj, None)
        return _json(obj)

    def _delete_collection(self, raw: aiohttp.web.BaseRequest, res: kmock.resource, ns: str | None) -> aiohttp.web.Response:
        items, _ = self.store.list(res, ns, label_selector=raw.query.get("labelSelector"),
                                    field_selector=raw.query.get("fieldSelector"))
        deleted = []
        for item in items:
            meta = item["metadata"]
            obj = self.store.delete(res, meta.get("namespace"), meta["name"])
            if obj is not None:
                deleted.append(obj)
                self._wrote("delete", res, meta.get("namespace"), meta["name"], obj, None)
        kind = self.resources[res].kind or str(res.plural).capitalize()
        return _json({"kind": f"{kind}List", "apiVersion": api_version(res),
                      "metadata": {"resourceVersion": str(self.store.resource_version)},
                      "items": deleted})

    def _scale(self, request: rendering.Request, raw: aiohttp.web.BaseRequest, res: kmock.resource,
               ns: str | None, name: str) -> aiohttp.web.Response:
        """autoscaling/v1 Scale over spec.replicas (what `kubectl scale` reads and patches)."""
        if raw.method == "GET":
            obj = self.store.get(res, ns, name)
            if obj is None:
                raise not_found(res, name)
            return _json(_scale_of(obj))
        if raw.method not in ("PUT", "PATCH"):
            raise _status(405, "MethodNotAllowed", "the server does not allow this method on scale")
        body = _body(request, (dict, list))
        content_type = raw.headers.get("Content-Type", "")

        def set_replicas(obj: Obj) -> None:
            scale = _scale_of(obj)
            scale = (body if raw.method == "PUT" else apply_patch(scale, body, content_type))
            obj.setdefault("spec", {})["replicas"] = int((scale.get("spec") or {}).get("replicas", 0))

        with self.store.lock:
            before = self.store.get(res, ns, name)
            after = self.store.mutate(res, ns, name, set_replicas)
        if after is None:
            raise not_found(res, name)
        self._wrote("update", res, ns, name, before, after)
        return _json(_scale_of(after))

    def _wrote(self, verb: str, res: kmock.resource, ns: str | None, name: str,
               before: Obj | None, after: Obj | None) -> None:
        if self.on_write is not None:
            self.on_write(verb, res, ns, name, before, after)

    # -- pods/log ----------------------------------------------------------------------------
    def _pod_log(self, raw: aiohttp.web.BaseRequest, ns: str, name: str) -> aiohttp.web.Response:
        pods = PODS
        pod = self.store.ref(pods, ns, name)  # (read only)
        if pod is None:
            raise not_found(pods, name)
        params = raw.query
        containers = [c.get("name") for c in pod.get("spec", {}).get("containers") or []]
        container = params.get("container") or (containers[0] if containers else "")
        if params.get("container") and container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        text, previous = self.logs.get(ns, name)
        if params.get("previous") in ("true", "1", "True"):
            if previous is None:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" '
                                  f"not found")
            text = previous
        if params.get("tailLines") is not None:
            tail = _int_param(params, "tailLines")
            lines = text.splitlines(keepends=True)
            text = "".join(lines[len(lines) - tail:]) if tail > 0 else ""
        if params.get("limitBytes") is not None:
            text = text.encode()[:_int_param(params, "limitBytes")].decode(errors="ignore")
        return aiohttp.web.Response(text=text, content_type="text/plain")

    # -- watches -----------------------------------------------------------------------------
    def _on_store_change(self, kind: str, res: kmock.resource, obj: Obj, rv: int) -> None:
        """Called under the store lock from any thread; publishing happens on the loop."""
        loop = self.loop
        if loop is None or loop.is_closed():
            self._history_floor = rv  # nobody can be watching; a resume from before must relist
            return
        try:
            loop.call_soon_threadsafe(self._publish, kind, res, obj, rv)
        except RuntimeError:  # the loop closed in between
            self._history_floor = rv

    def _publish(self, kind: str, res: kmock.resource, obj: Obj, rv: int) -> None:
        if len(self._history) >= WATCH_HISTORY:
            self._history_floor = self._history.popleft()[0]
        self._history.append((rv, kind, res, obj))
        for watcher in self._watchers:
            if watcher.resource == res and rv > watcher.since_rv and watcher.matches(obj):
                watcher.queue.put_nowait((kind, obj, rv))

    def close_watches(self) -> None:
        """End every open watch stream (on shutdown); call on the loop."""
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    async def _watch(self, raw: aiohttp.web.BaseRequest, res: kmock.resource, ns: str | None,
                     name: str | None) -> aiohttp.web.StreamResponse:
        params = raw.query
        labels = api_selectors.label_selector(params.get("labelSelector"))
        fields = api_selectors.field_selector(params.get("fieldSelector"))

        def matches(obj: Obj) -> bool:
            meta = obj.get("metadata", {})
            return ((ns is None or meta.get("namespace") == ns)
                    and (name is None or meta.get("name") == name) and labels(obj) and fields(obj))

        # Validate before the 200 goes out: after that, errors can only be ERROR events.
        start = _int_value(params.get("resourceVersion") or "0", "resourceVersion")
        timeout = _int_param(params, "timeoutSeconds") if params.get("timeoutSeconds") else None
        as_table = api_tables.wants_table(raw.headers.get("Accept"))
        include = params.get("includeObject", "Metadata")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)

        # Register, then take the starting state, with no await in between: every later event
        # reaches the queue, and since_rv drops the ones the starting state already contains.
        watcher = _Watcher(res, matches)
        self._watchers.add(watcher)
        try:
            if start == 0:  # no resourceVersion: the current state as ADDED, then changes
                items, watcher.since_rv = self.store.list(res, ns)
                initial = [("ADDED", obj) for obj in items if matches(obj)]
            else:
                watcher.since_rv = start
                if start < self._history_floor:
                    gone = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "Expired", "code": 410,
                            "message": f"too old resource version: {start} "
                                       f"({self._history_floor})"}
                    await response.write(_line("ERROR", gone))
                    return response
                initial = [(kind, obj) for rv, kind, r, obj in self._history
                           if r == res and rv > start and matches(obj)]
            for kind, obj in initial:
                await response.write(self._event(kind, res, obj, as_table, include))
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:
                    break
                kind, obj, _ = event
                await response.write(self._event(kind, res, obj, as_table, include))
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
        finally:
            self._watchers.discard(watcher)
        return response

    def _event(self, kind: str, res: kmock.resource, obj: Obj, as_table: bool, include: str) -> bytes:
        if as_table:
            table = api_tables.table(str(res.plural), [obj], include_object=include,
                                     resource_version=obj["metadata"].get("resourceVersion", ""))
            return _line(kind, table)
        return _line(kind, obj)


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    # /api/v1/namespaces[/{name}[/status|/finalize]] is the namespaces resource, not a namespace.
    if parts[0] == "api" and len(parts) in (3, 4, 5) and parts[2] == "namespaces" and (
            len(parts) < 5 or parts[4] in ("status", "finalize")):
        return parsing.ParsedPath(
            group="", version=parts[1], plural="namespaces",
            name=parts[3] if len(parts) > 3 else None, subresource=parts[4] if len(parts) > 4 else None,
        )
    return parsing.parse_path(path)


async def _parse_request(raw: aiohttp.web.BaseRequest) -> rendering.Request:
    """A kmock Request (what its DSL filters and discovery handlers read); the body stays raw."""
    body = await raw.read()
    k8s = _parse_path(raw.path)
    resource = None if k8s.group is None else _resource(k8s.group, k8s.version, k8s.plural)
    return rendering.Request(
        raw_request=raw, url=raw.url, method=raw.method, params=dict(raw.query),
        headers=dict(raw.headers), body=body, text=body.decode(errors="replace"),
        action=parsing.guess_k8s(k8s, kmock.method(raw.method), dict(raw.query)),
        resource=resource, namespace=k8s.namespace, name=k8s.name, subresource=k8s.subresource,
    )


@functools.lru_cache(maxsize=512)
def _resource(group: str, version: str | None, plural: str | None) -> kmock.resource:
    """kmock.resource of a URL's parts, made once (it is immutable; making one runs runtime
    protocol checks, a noticeable part of a small request)."""
    return kmock.resource(group=group, version=version, plural=plural)


def _rk(res: kmock.resource) -> tuple[Any, ...]:
    return (res.group, res.version, res.plural)


def _scale_of(obj: Obj) -> Obj:
    meta = obj["metadata"]
    selector = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in
                                        sorted((selector.get("matchLabels") or {}).items()))},
    }


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _body(request: rendering.Request, types: type | tuple[type, ...]) -> Any:
    try:
        body = json.loads(request.body or b"null")
    except ValueError as e:
        raise bad_request(f"the request body is not JSON: {e}") from None
    if not isinstance(body, types):
        raise bad_request("the request body has the wrong JSON type")
    return body


def _int_value(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{name} must be an integer, not {value!r}") from None


def _int_param(params: Any, name: str) -> int:
    return _int_value(str(params.get(name)), name)


def _page(items: list[Obj], limit: str | None, token: str | None) -> tuple[list[Obj], str]:
    """limit/continue: the token is the namespace/name of the last item served."""
    if token:
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
        except ValueError:
            raise _status(410, "Expired", "the provided continue parameter is too old") from None
        items = [o for o in items
                 if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
    size = _int_value(limit, "limit") if limit else 0
    if size <= 0 or len(items) <= size:
        return items, ""
    last = items[size - 1]["metadata"]
    token = base64.urlsafe_b64encode(
        json.dumps([last.get("namespace", ""), last["name"]]).encode()).decode()
    return items[:size], token
