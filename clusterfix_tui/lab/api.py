"""The lab's Kubernetes API server: kmock's emulator on a real socket, plus a store for the lab.

The official client and kubectl talk to it over HTTP(S) with a bearer token; the lab controller
changes objects directly through the thread-safe `put`/`mutate`/... methods, and learns about what
API clients did through the `on_*` hooks.

Serving: kmock's own `kmock.Server` takes no SSL context (its aiohttp RawTestServer only gets one
through `start_server(ssl=...)`, which `Server.__aenter__` never passes) and it patches aiohttp's
resolver process-wide, which must be undone in LIFO order across servers. The emulator is an
aiohttp raw handler, so it is served here with aiohttp's ServerRunner and a SockSite instead,
which takes the SSL context directly.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import yaml

from clusterfix_tui.lab.api_emulator import LabEmulator
from clusterfix_tui.lab.api_store import Obj, api_version, now_iso

log = logging.getLogger(__name__)

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
EVENTS = kmock.resource("v1/events")


def _restarted_at(obj: Obj | None) -> str | None:
    template = ((obj or {}).get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)


def write_private_file(path: str | os.PathLike[str], data: str) -> None:
    """Write atomically with mode 0600 (a kubeconfig holds a token)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LabAPI:
    """A Kubernetes API server for the lab, running its asyncio loop in a daemon thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tokens: Iterable[str] = (),
        tls: bool = False, state_dir: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.state_dir = state_dir
        self.url = ""
        self.ca_pem: bytes | None = None
        # Hooks: called in a worker thread, one at a time in API order, after the store changed.
        self.on_pod_deleted: Callable[[str, str, dict[str, Any]], None] | None = None
        self.on_daemonset_restarted: Callable[[str, str], None] | None = None
        self.on_deployment_patched: Callable[[str, str, dict[str, Any]], None] | None = None
        self._emulator = LabEmulator(tokens)
        self._emulator.on_write = self._on_write
        self._store = self._emulator.store
        self._hooks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lab-api-hook")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start serving; returns once the socket listens (raises if it cannot)."""
        if self._thread is not None:
            raise RuntimeError("LabAPI.start() can be called once")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name=f"lab-api-{self.host}", daemon=True)
        self._thread.start()
        started.result(timeout=30)

    def stop(self) -> None:
        """Close watches and connections, stop the loop thread; idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is threading.current_thread():
            raise RuntimeError("LabAPI.stop() called from its own loop thread")
        if thread is not None and loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout=15)
        self._hooks.shutdown(wait=False, cancel_futures=True)

    def _run(self, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as e:
            if not started.done():
                started.set_exception(e)
            else:
                log.exception("lab API loop failed")
        finally:
            loop.close()

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        ssl_context = self._tls_context() if self.tls else None
        sock = socket.create_server((self.host, self.port),
                                    family=socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if ssl_context else 'http'}://{host}:{self.port}"
        await self._emulator.__aenter__()
        self._emulator.loop = self._loop
        server = aiohttp.web.Server(self._emulator, handler_cancellation=True)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await aiohttp.web.SockSite(runner, sock, ssl_context=ssl_context).start()
            started.set_result(None)
            await self._stopping.wait()
        finally:
            self._emulator.close_watches()
            await runner.cleanup()
            self._emulator.loop = None
            await self._emulator.__aexit__(None, None, None)

    def _tls_context(self) -> ssl.SSLContext:
        from clusterfix_tui.lab import api_tls  # cryptography only when TLS is asked for

        if self.state_dir is not None:
            context, self.ca_pem = api_tls.server_context(Path(self.state_dir) / "api-pki", [self.host])
            return context
        with tempfile.TemporaryDirectory(prefix="clusterfix-lab-pki-") as tmp:
            context, self.ca_pem = api_tls.server_context(Path(tmp), [self.host])
            return context

    def write_kubeconfig(
        self, path: str | os.PathLike[str], token: str, *, cluster: str = "clusterfix-lab",
        user: str = "lab-admin", context: str = "clusterfix-lab", server: str | None = None,
    ) -> None:
        """A kubeconfig for this server with a bearer token (and the lab CA under TLS); mode 0600."""
        server = server or self.url
        if not server:
            raise RuntimeError("start() the lab API first, or pass server=")
        cluster_entry: dict[str, Any] = {"server": server}
        if self.ca_pem is not None:
            cluster_entry["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": cluster, "cluster": cluster_entry}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
            "current-context": context,
        }
        write_private_file(path, yaml.safe_dump(doc, sort_keys=False))

    # -- object store (any thread but the loop's) --------------------------------------------------
    def put(self, resource: str, namespace: str | None, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or overwrite; fills apiVersion, kind, uid, resourceVersion, creationTimestamp."""
        return self._store.put(self._store.resource(resource), namespace, name, obj)

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._store.get(self._store.resource(resource), namespace, name)

    def list(
        self, resource: str, namespace: str | None = None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        items, _ = self._store.list(self._store.resource(resource), namespace,
                                    label_selector=label_selector, field_selector=field_selector)
        return items

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Remove the object (watchers see DELETED); no hook fires, it is the lab's own doing."""
        self._store.delete(self._store.resource(resource), namespace, name)

    def mutate(
        self, resource: str, namespace: str | None, name: str, fn: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any] | None:
        """Atomic read-modify-write; fn edits the object in place and must not call the API."""
        return self._store.mutate(self._store.resource(resource), namespace, name, fn)

    def set_pod_log(self, namespace: str, name: str, text: str, previous: str | None = None) -> None:
        """What GET pods/{name}/log serves (previous: the last terminated container's log)."""
        self._emulator.logs.set(namespace, name, text, previous)

    def add_event(
        self, namespace: str, involved: dict[str, Any], reason: str, message: str,
        type: str = "Warning", *, component: str = "kubelet", host: str | None = None,
    ) -> dict[str, Any]:
        """Record an Event as the kubelet does: a repeat of reason+message bumps count."""
        now = now_iso()
        target = {"kind": involved["kind"], "name": involved["name"],
                  "namespace": involved.get("namespace", namespace)}
        for optional in ("apiVersion", "uid", "fieldPath", "resourceVersion"):
            if involved.get(optional):
                target[optional] = involved[optional]
        with self._store.lock:
            self._complete_reference(target)
            for event in self._store.list(EVENTS, namespace)[0]:
                seen = event.get("involvedObject") or {}
                if (event.get("reason") == reason and event.get("message") == message
                        and all(seen.get(k) == target[k] for k in ("kind", "name", "namespace"))):
                    event["count"] = int(event.get("count") or 1) + 1
                    event["lastTimestamp"] = now
                    meta = event["metadata"]
                    return self._store.put(EVENTS, namespace, meta["name"], event)
            name = f"{involved['name']}.{secrets.token_hex(8)}"
            return self._store.put(EVENTS, namespace, name, {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": target, "reason": reason, "message": message, "type": type,
                "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "source": {"component": component, **({"host": host} if host else {})},
                "reportingComponent": component, "reportingInstance": host or "",
            })

    def _complete_reference(self, target: dict[str, Any]) -> None:
        """apiVersion and uid of the involved object: `kubectl describe` matches events by uid
        (a Node's events carry the node name as uid, as the kubelet writes them)."""
        resources = self._store.resources
        res = next((r for r in resources if resources[r].kind == target["kind"]), None)
        if res is None:
            target.setdefault("apiVersion", "v1")
            return
        target.setdefault("apiVersion", api_version(res))
        if target["kind"] == "Node":
            target.pop("namespace", None)
            target.setdefault("uid", target["name"])
        elif "uid" not in target:
            obj = self._store.get(res, target.get("namespace"), target["name"])
            if obj is not None:
                target["uid"] = obj["metadata"]["uid"]

    # -- hooks -----------------------------------------------------------------------------------
    def _on_write(self, verb: str, res: kmock.resource, ns: str | None, name: str,
                  before: Obj | None, after: Obj | None) -> None:
        """Runs on the loop: decide which hooks an API write triggers, run them elsewhere."""
        if res.plural == "pods" and verb == "delete" and before is not None:
            self._call(self.on_pod_deleted, ns, name, before)
        elif res.plural == "daemonsets" and after is not None and verb in ("patch", "update"):
            if _restarted_at(after) and _restarted_at(after) != _restarted_at(before):
                self._call(self.on_daemonset_restarted, ns, name)
        elif res.plural == "deployments" and after is not None and verb in ("patch", "update"):
            self._call(self.on_deployment_patched, ns, name, after)

    def _call(self, hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return

        def run() -> None:
            try:
                hook(*args)
            except Exception:
                log.exception("lab API hook %s failed", getattr(hook, "__name__", hook))

        with contextlib.suppress(RuntimeError):  # stopped: no more hooks
            self._hooks.submit(run)
