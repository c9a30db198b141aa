"""The lab's object store: kmock's ObjectsArray behind one lock, with the metadata a real API keeps.

Both the HTTP handlers (loop thread) and the lab controller (its own threads) write here, so every
operation is a short critical section with no awaits and no callbacks into user code except
`mutate`'s function. Each write takes the next cluster-wide resourceVersion and reports a watch event
through `on_change`, still under the lock, so events are reported in resourceVersion order.

Serving reads (#17: in an N-node lab every node's kubectl and our snapshot's list calls are served
here, on the same cores as the nodes): a stored object is never changed in place (every write
stores a new dict), so the HTTP handlers read stored objects without copying them (`refs`,
`ref`) and serialise each one once per version (`encode`, keyed by the object itself: a new
version is a new dict); objects are indexed by resource (no walk over every object of every
kind per request), and a `metadata.name=X` field selector is a lookup. The Python API (`get`,
`list`) still hands out deep copies.
"""

from __future__ import annotations

import copy
import datetime
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from typing import Any

import kmock

from clusterfix_tui.lab import api_selectors
from clusterfix_tui.lab.api_patch import apply_patch, bad_request

Obj = dict[str, Any]
# on_change(type, resource, object, resourceVersion): type is ADDED, MODIFIED or DELETED.
ChangeListener = Callable[[str, kmock.resource, Obj, int], None]

NAMESPACES = kmock.resource("v1/namespaces")


def _rk(res: kmock.resource) -> tuple[Any, ...]:
    """A resource as a plain tuple (kmock's resource compares through runtime protocol checks)."""
    return (res.group, res.version, res.plural)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(resource: kmock.resource, name: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404, reason="NotFound", message=f'{resource.plural} "{name}" not found',
        details={"name": name, "kind": resource.plural},
    )


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else str(resource.version)


class ObjectStore:
    def __init__(self, resources: kmock.ResourcesArray, objects: kmock.ObjectsArray) -> None:
        self.resources = resources
        self.objects = objects
        self.on_change: ChangeListener | None = None
        self.lock = threading.RLock()
        self._rv = 0
        # resource -> {(namespace or None, name): the stored object}; the same objects as in
        # `objects` (kmock's array, which keeps every version), for reads
        self._index: dict[tuple[Any, ...], dict[tuple[str | None, str], Obj]] = {}
        self._namespaced: dict[tuple[Any, ...], bool] = {}
        # (resource, namespace, name) -> (the stored object, its JSON): valid while that object is
        # the stored one (compared by identity: a write stores a new dict)
        self._encoded: dict[tuple[Any, ...], tuple[Obj, bytes]] = {}

    # -- addressing ------------------------------------------------------------------------------
    def resource(self, spec: str | kmock.resource) -> kmock.resource:
        """Parse "v1/pods" / "apps/v1/daemonsets"; refuse resources the lab does not serve."""
        res = spec if isinstance(spec, kmock.resource) else kmock.resource(spec)
        if res not in self.resources:
            raise ValueError(f"the lab API does not serve {spec!r}")
        return res

    def namespaced(self, res: kmock.resource) -> bool:
        rk = _rk(res)
        value = self._namespaced.get(rk)
        if value is None:  # (the served resources are fixed when the store is made)
            value = self._namespaced[rk] = bool(self.resources[res].namespaced)
        return value

    def _key(self, res: kmock.resource, ns: str | None, name: str) -> tuple[Any, str | None, str]:
        return (res, ns if self.namespaced(res) else None, name)

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    # -- reads -----------------------------------------------------------------------------------
    def get(self, res: kmock.resource, ns: str | None, name: str) -> Obj | None:
        with self.lock:
            obj = self.ref(res, ns, name)
            return None if obj is None else copy.deepcopy(obj)

    def ref(self, res: kmock.resource, ns: str | None, name: str) -> Obj | None:
        """The stored object itself (never change it: it is what every reader sees)."""
        return self._index.get(_rk(res), {}).get((ns if self.namespaced(res) else None, name))

    def list(
        self, res: kmock.resource, ns: str | None = None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching objects sorted by namespace/name (etcd order), and the current resourceVersion."""
        items, rv = self.refs(res, ns, label_selector=label_selector, field_selector=field_selector)
        return [copy.deepcopy(obj) for obj in items], rv

    def refs(
        self, res: kmock.resource, ns: str | None = None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        """list() without the copies: the stored objects themselves (never change them)."""
        labels = api_selectors.label_selector(label_selector)
        fields = api_selectors.field_selector(field_selector)
        name = api_selectors.name_equals(field_selector)
        with self.lock:
            objs = self._index.get(_rk(res), {})
            candidates: Any
            if name is not None and (ns is not None or not self.namespaced(res)):
                obj = objs.get((ns, name))  # (a cluster-wide object is keyed with None)
                candidates = () if obj is None else (obj,)
            elif name is not None:
                candidates = [obj for (_, n), obj in objs.items() if n == name]
            elif ns is None:
                candidates = objs.values()
            else:
                candidates = [obj for (n, _), obj in objs.items() if n == ns]
            items = [obj for obj in candidates if labels(obj) and fields(obj)]
            rv = self._rv
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    def encode(self, res: kmock.resource, obj: Obj) -> bytes:
        """json.dumps(obj, separators=(",", ":")) of a stored object (from ref/refs), made once per
        version of the object."""
        meta = obj["metadata"]
        key = (_rk(res), meta.get("namespace"), meta["name"])
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        data = json.dumps(obj, separators=(",", ":")).encode()
        self._encoded[key] = (obj, data)
        return data

    # -- writes ----------------------------------------------------------------------------------
    def put(self, res: kmock.resource, ns: str | None, name: str, obj: Obj) -> Obj:
        """Create or overwrite; an overwrite keeps uid and creationTimestamp unless obj sets them."""
        with self.lock:
            old = self.get(res, ns, name)
            return self._write(res, ns, name, copy.deepcopy(obj), old)

    def create(self, res: kmock.resource, ns: str | None, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name")
        if not name:
            raise bad_request("name or generateName is required")
        with self.lock:
            if self.get(res, ns, name) is not None:
                raise kmock.KubernetesError(
                    status=409, reason="AlreadyExists",
                    message=f'{res.plural} "{name}" already exists',
                    details={"name": name, "kind": res.plural},
                )
            meta.pop("uid", None)
            meta.pop("resourceVersion", None)
            return self._write(res, ns, name, copy.deepcopy(obj), None)

    def replace(
        self, res: kmock.resource, ns: str | None, name: str, obj: Obj, *, status_only: bool = False,
    ) -> tuple[Obj, Obj]:
        """PUT: optimistic concurrency on metadata.resourceVersion; returns (before, after)."""
        with self.lock:
            old = self._existing(res, ns, name)
            sent_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise kmock.KubernetesError(
                    status=409, reason="Conflict",
                    message=f'Operation cannot be fulfilled on {res.plural} "{name}": the object has '
                            f"been modified; please apply your changes to the latest version and try "
                            f"again",
                    details={"name": name, "kind": res.plural},
                )
            new = self._split_status(res, old, copy.deepcopy(obj), status_only)
            return old, self._write(res, ns, name, new, old)

    def patch(
        self, res: kmock.resource, ns: str | None, name: str, patch: Any, content_type: str,
        *, status_only: bool = False,
    ) -> tuple[Obj, Obj]:
        with self.lock:
            old = self._existing(res, ns, name)
            new = self._split_status(res, old, apply_patch(old, patch, content_type), status_only)
            return old, self._write(res, ns, name, new, old)

    def mutate(self, res: kmock.resource, ns: str | None, name: str, fn: Callable[[Obj], None]) -> Obj | None:
        with self.lock:
            old = self.get(res, ns, name)
            if old is None:
                return None
            new = copy.deepcopy(old)
            fn(new)
            return self._write(res, ns, name, new, old)

    def delete(self, res: kmock.resource, ns: str | None, name: str) -> Obj | None:
        key = self._key(res, ns, name)
        with self.lock:
            stored = self._index.get(_rk(res), {}).pop(key[1:], None)
            if stored is None:
                return None
            obj = copy.deepcopy(stored)
            del self.objects[key]
            self._encoded.pop((_rk(res), key[1], name), None)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._notify("DELETED", res, obj)
            return obj

    def _split_status(self, res: kmock.resource, old: Obj, new: Obj, status_only: bool) -> Obj:
        """As the API server does for kinds with a status subresource: writes to the object
        leave .status alone, writes to /status change nothing else."""
        if status_only:
            return dict(copy.deepcopy(old), status=new.get("status", {}))
        if "status" in self.resources[res].subresources:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        return new

    def _existing(self, res: kmock.resource, ns: str | None, name: str) -> Obj:
        old = self.get(res, ns, name)
        if old is None:
            raise not_found(res, name)
        return old

    def _write(self, res: kmock.resource, ns: str | None, name: str, obj: Obj, old: Obj | None) -> Obj:
        """Fill the server-owned fields, store, report. Caller holds the lock; obj is ours."""
        namespaced = self.namespaced(res)
        if namespaced and not ns:
            raise bad_request(f"{res.plural} are namespaced: a namespace is required")
        info = self.resources[res]
        obj["apiVersion"] = api_version(res)
        obj["kind"] = info.kind or str(res.plural).capitalize()
        meta = obj.setdefault("metadata", {})
        meta["name"] = name
        if namespaced:
            meta["namespace"] = ns
            self._ensure_namespace(str(ns))
        else:
            meta.pop("namespace", None)
        old_meta = (old or {}).get("metadata", {})
        meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old_meta.get("creationTimestamp") or now_iso())
        generation = int(old_meta.get("generation", 0) or 0)
        if old is None or obj.get("spec") != old.get("spec"):
            generation += 1
        meta["generation"] = generation
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = self._key(res, ns, name)
        self.objects[key] = obj
        self._index.setdefault(_rk(res), {})[key[1:]] = obj
        self._notify("ADDED" if old is None else "MODIFIED", res, obj)
        return copy.deepcopy(obj)

    def _ensure_namespace(self, ns: str) -> None:
        if NAMESPACES in self.resources and (None, ns) not in self._index.get(_rk(NAMESPACES), {}):
            self._write(NAMESPACES, None, ns, {"spec": {"finalizers": ["kubernetes"]},
                                               "status": {"phase": "Active"}}, None)

    def _notify(self, kind: str, res: kmock.resource, obj: Obj) -> None:
        if self.on_change is not None:
            self.on_change(kind, res, copy.deepcopy(obj), self._rv)
