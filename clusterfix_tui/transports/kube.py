"""ClusterAPI over the official kubernetes client, returning plain JSON dicts.

Every call asks for the raw response (`_preload_content=False`) and json-decodes it, so the core
sees exactly what `kubectl get -o json` prints (camelCase keys, no client model objects). List
items get their `kind`/`apiVersion` filled in as kubectl does.

Errors are made for humans: KubeconfigError for a kubeconfig that is missing, malformed or has no
such context (the known contexts are listed); APIError for a server that cannot be reached (with
its URL and why), that refuses the credentials (401/403), or that refuses a call. Messages never
carry a token, a client key or a password; describe() gives context, server, user and cluster
names only.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from clusterfix_tui.core.ports import APIError, APIUnreachable, KubeconfigError

__all__ = ["APIError", "APIUnreachable", "KubeconfigError", "KubeClusterAPI",
           "default_kubeconfig_paths", "resolve_kubeconfig"]

REQUEST_TIMEOUT = (5, 15)  # (connect, read) seconds for every call
LIST_PAGE = 500
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


ADMIN_CONF = "/etc/kubernetes/admin.conf"  # kubeadm's admin kubeconfig on a control-plane node


def resolve_kubeconfig(explicit: str | None = None) -> tuple[list[str], str]:
    """The kubeconfig file(s) to use and where that choice came from, as kubectl would choose on
    a workstation, plus the control-plane default: --kubeconfig, then $KUBECONFIG, then
    ~/.kube/config, then /etc/kubernetes/admin.conf when it is readable (running on a kubeadm
    control-plane node as root). Returns (paths, source)."""
    if explicit:
        return [os.path.expanduser(explicit)], "--kubeconfig"
    env = os.environ.get("KUBECONFIG")
    if env:
        paths = [os.path.expanduser(p) for p in env.split(os.pathsep) if p]
        if paths:
            return paths, "KUBECONFIG"
    home = os.path.expanduser("~/.kube/config")
    if os.path.exists(home):
        return [home], "~/.kube/config"
    if os.access(ADMIN_CONF, os.R_OK):
        return [ADMIN_CONF], ADMIN_CONF
    return [home], "~/.kube/config"


def default_kubeconfig_paths() -> list[str]:
    return resolve_kubeconfig(None)[0]


def _safe_loader() -> Any:
    """yaml's SafeLoader, through libyaml when PyYAML was built with it (CSafeLoader: the same
    safe constructor and resolver, the scanning and parsing in C; a kubeconfig with embedded
    certificates took ~2.4 ms to read in Python, ~0.35 ms this way)."""
    import yaml

    return getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


def _load_kubeconfig(paths: list[str]) -> dict[str, Any]:
    """Merge kubeconfig files the way kubectl does for names (first one wins)."""
    import yaml

    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": [], "current-context": None}
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    existing = [p for p in paths if os.path.exists(p)]
    if not existing:
        where = " or ".join(paths)
        raise KubeconfigError(
            f"kubeconfig {where} does not exist (pass --kubeconfig, set KUBECONFIG, or use "
            f"--lab-dir)"
        )
    for path in existing:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.load(fh, Loader=_safe_loader())  # noqa: S506 - a safe loader
        except OSError as exc:
            raise KubeconfigError(f"kubeconfig {path} cannot be read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise KubeconfigError(f"kubeconfig {path} is not valid YAML{where}: {problem}") from exc
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {path} is not a kubeconfig (top level is "
                                  f"{type(doc).__name__}, expected a mapping)")
        for section in ("clusters", "users", "contexts"):
            entries = doc.get(section) or []
            if not isinstance(entries, list):
                raise KubeconfigError(f"kubeconfig {path}: '{section}' must be a list")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                    raise KubeconfigError(f"kubeconfig {path}: an entry in '{section}' has no name")
                if entry["name"] not in seen[section]:
                    seen[section].add(entry["name"])
                    merged[section].append(entry)
        if merged["current-context"] is None and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
    merged["paths"] = existing
    return merged


def _named(doc: dict[str, Any], section: str, name: str | None) -> dict[str, Any]:
    for entry in doc.get(section, []):
        if entry.get("name") == name:
            body = entry.get(section[:-1])
            return body if isinstance(body, dict) else {}
    return {}


def preload() -> None:
    """Import what a KubeClusterAPI uses to read (the client, its configuration and kubeconfig
    loader), so that runtime.build_runtime can count them in the start-up heap it freezes. The
    generated API classes are not imported here (see _Api)."""
    from kubernetes import client, config  # noqa: F401
    from kubernetes.client.exceptions import ApiException  # noqa: F401
    from kubernetes.config.config_exception import ConfigException  # noqa: F401

    client.ApiClient, client.Configuration  # noqa: B018 - the client's lazy attributes


# Every read this transport makes: generated method name -> (resource path, path parameters in
# the generated method's positional order), as in kubernetes.client.api.*_api.
_READS: dict[str, tuple[str, tuple[str, ...]]] = {
    "list_node": ("/api/v1/nodes", ()),
    "list_pod_for_all_namespaces": ("/api/v1/pods", ()),
    "list_namespaced_pod": ("/api/v1/namespaces/{namespace}/pods", ("namespace",)),
    "read_namespaced_config_map": ("/api/v1/namespaces/{namespace}/configmaps/{name}",
                                   ("name", "namespace")),
    "read_namespace": ("/api/v1/namespaces/{name}", ("name",)),
    "list_service_for_all_namespaces": ("/api/v1/services", ()),
    "list_namespaced_service": ("/api/v1/namespaces/{namespace}/services", ("namespace",)),
    "list_endpoints_for_all_namespaces": ("/api/v1/endpoints", ()),
    "list_namespaced_endpoints": ("/api/v1/namespaces/{namespace}/endpoints", ("namespace",)),
    "list_event_for_all_namespaces": ("/api/v1/events", ()),
    "list_namespaced_event": ("/api/v1/namespaces/{namespace}/events", ("namespace",)),
    "read_namespaced_pod_log": ("/api/v1/namespaces/{namespace}/pods/{name}/log",
                                ("name", "namespace")),
    "list_daemon_set_for_all_namespaces": ("/apis/apps/v1/daemonsets", ()),
    "list_namespaced_daemon_set": ("/apis/apps/v1/namespaces/{namespace}/daemonsets",
                                   ("namespace",)),
    "read_namespaced_deployment": ("/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                                   ("name", "namespace")),
    "get_code": ("/version/", ()),
    # cluster DNS (core/snapshot.py read_dns): the kube-dns Service, its EndpointSlices, the
    # Deployments of kube-system
    "read_namespaced_service": ("/api/v1/namespaces/{namespace}/services/{name}",
                                ("name", "namespace")),
    "list_namespaced_deployment": ("/apis/apps/v1/namespaces/{namespace}/deployments",
                                   ("namespace",)),
    "list_namespaced_endpoint_slice": (
        "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", ("namespace",)),
}


def _query_name(arg: str) -> str:
    """A generated method's keyword as its query parameter: tail_lines -> tailLines,
    _continue -> continue."""
    head, *rest = arg.lstrip("_").split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


class _Get:
    """One read, called like the generated method it stands for with _preload_content=False:
    the same request built by the same ApiClient (param_serialize: path quoting, query
    encoding, the configuration's auth settings and token hook; call_api: its REST client,
    TLS and timeouts), the raw urllib3 response returned, a non-2xx answer raised as the
    generated code raises it (ApiException.from_response)."""

    def __init__(self, api_client: Any, path: str, path_names: tuple[str, ...]):
        self.api_client = api_client
        self.path = path
        self.path_names = path_names

    def __call__(self, *args: Any, _preload_content: bool = False,
                 _request_timeout: Any = None, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        assert not _preload_content, "reads return the raw response"
        if len(args) > len(self.path_names):
            raise TypeError(f"{self.path}: too many positional arguments")
        path_params = dict(zip(self.path_names, args, strict=False))
        for name in self.path_names:
            if name in kwargs:
                path_params[name] = kwargs.pop(name)
            if not isinstance(path_params.get(name), str) or not path_params[name]:
                raise TypeError(f"{self.path}: {name} must be a non-empty string")
        query = [(_query_name(k), v) for k, v in kwargs.items() if v is not None]
        method, url, headers, body, post = self.api_client.param_serialize(
            method="GET", resource_path=self.path, path_params=path_params, query_params=query,
            header_params={"Accept": "application/json"}, body=None, post_params=[], files={},
            auth_settings=["BearerToken"], collection_formats={})
        resp = self.api_client.call_api(method, url, header_params=headers, body=body,
                                        post_params=post, _request_timeout=_request_timeout)
        if not 200 <= resp.status <= 299:
            resp.read()
            raise ApiException.from_response(http_resp=resp, body=None, data=None)
        return resp.response


class _Api:
    """kubernetes.client.CoreV1Api / AppsV1Api / VersionApi for this transport. Importing one
    of them builds ~280 pydantic models of the client (1.2-1.7 s of CPU here, in every process
    that reads the cluster) that we never use: every read returns raw JSON (`_preload_content`
    =False). So the reads (_READS) are made by _Get through the same ApiClient, and the
    generated class is imported and built only when a write (delete, patch) is first made."""

    def __init__(self, api_client: Any, class_name: str):
        self._api_client = api_client
        self._class_name = class_name
        self._generated: Any = None

    def __getattr__(self, name: str) -> Any:
        read = _READS.get(name)
        # a client older than the one _Get is written for (pyproject allows kubernetes>=30; its
        # ApiClient has no param_serialize): every call through the generated class, as before
        if read is not None and hasattr(self._api_client, "param_serialize"):
            fn: Any = _Get(self._api_client, *read)
        else:
            if self._generated is None:
                from kubernetes import client

                self._generated = getattr(client, self._class_name)(self._api_client)
            fn = getattr(self._generated, name)
        setattr(self, name, fn)
        return fn


class KubeClusterAPI:
    """The ClusterAPI of one kubeconfig context."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None,
                 *, request_timeout: Any = REQUEST_TIMEOUT, page_size: int = LIST_PAGE):
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        paths, self.kubeconfig_source = resolve_kubeconfig(kubeconfig)
        doc = _load_kubeconfig(paths)
        contexts = [c["name"] for c in doc["contexts"]]
        name = context or doc["current-context"]
        if not name:
            raise KubeconfigError(
                f"kubeconfig {', '.join(doc['paths'])} has no current-context; pass --context "
                f"(known: {', '.join(contexts) or 'none'})"
            )
        if name not in contexts:
            raise KubeconfigError(
                f"context {name!r} is not in kubeconfig {', '.join(doc['paths'])} "
                f"(known contexts: {', '.join(contexts) or 'none'})"
            )
        ctx = _named(doc, "contexts", name)
        self._context = name
        self._cluster = str(ctx.get("cluster", ""))
        self._user = str(ctx.get("user", ""))
        self._server = str(_named(doc, "clusters", self._cluster).get("server", ""))
        self.kubeconfig = ", ".join(doc["paths"])
        if not self._server:
            raise KubeconfigError(
                f"kubeconfig {self.kubeconfig}: context {name!r} names cluster "
                f"{self._cluster!r}, which has no server URL"
            )
        self._timeout = request_timeout
        self._page_size = page_size
        configuration = client.Configuration()
        configuration.retries = False  # fail fast: the caller reports, the user retries
        try:
            config.load_kube_config(
                config_file=os.pathsep.join(doc["paths"]),  # the client merges a list too
                context=name, client_configuration=configuration, persist_config=False,
            )
        except ConfigException as exc:
            raise KubeconfigError(f"kubeconfig {self.kubeconfig}, context {name!r}: "
                                  f"{_scrub(str(exc))}") from exc
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise KubeconfigError(f"kubeconfig {self.kubeconfig}, context {name!r} cannot be "
                                  f"used: {type(exc).__name__}: {_scrub(str(exc))}") from exc
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook = _TokenRefresh(configuration.refresh_api_key_hook)
        self._api_client = client.ApiClient(configuration)
        self.tls_shared = _share_tls_context(self._api_client, _named(doc, "clusters",
                                                                      self._cluster),
                                             _named(doc, "users", self._user))
        self._core = _Api(self._api_client, "CoreV1Api")
        self._apps = _Api(self._api_client, "AppsV1Api")
        self._version = _Api(self._api_client, "VersionApi")
        self._discovery = _Api(self._api_client, "DiscoveryV1Api")

    def __repr__(self) -> str:
        return f"KubeClusterAPI(context={self._context!r}, server={self._server!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; returns the decoded JSON (or text when raw=True)."""
        raw = kwargs.pop("_raw_text", False)
        not_found_ok = kwargs.pop("_not_found_ok", False)
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError, SSLError

        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
            data = resp.data
        except ApiException as exc:
            if exc.status == 404 and not_found_ok:
                return None
            if not exc.status:  # the REST layer wraps transport failures (TLS) as status 0
                reason = str(exc.reason or exc).strip().splitlines()
                raise self._unreachable(what, OSError(reason[-1] if reason else "")) from None
            raise self._api_error(what, exc) from None
        except MaxRetryError as exc:
            raise self._unreachable(what, exc.reason or exc) from None
        except (SSLError, HTTPError, OSError) as exc:
            raise self._unreachable(what, exc) from None
        if raw:
            return data.decode("utf-8", "replace")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise APIError(f"{what}: the API server at {self._server} answered with something "
                           f"that is not JSON ({exc})") from None

    def _unreachable(self, what: str, exc: BaseException) -> APIUnreachable:
        text = str(exc)
        if "refused" in text.lower():
            why = "connection refused"
        elif "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
            why = "timed out"
        elif "certificate" in text.lower() or "ssl" in type(exc).__name__.lower():
            why = f"TLS failed: {_scrub(text)[:200]}"
        elif "name or service not known" in text.lower() or "resolution" in text.lower():
            why = "cannot resolve the server name"
        else:
            why = _scrub(text)[:200] or type(exc).__name__
        return APIUnreachable(f"{what}: cannot reach the API server {self._server} "
                              f"(context {self._context!r}): {why}")

    def _api_error(self, what: str, exc: Any) -> APIError:
        status = exc.status
        message = ""
        try:
            body = json.loads(exc.body) if exc.body else {}
            message = body.get("message", "") if isinstance(body, dict) else ""
        except (ValueError, TypeError):
            message = ""
        message = _scrub(message or str(exc.reason or ""))
        if status == 401:
            text = (f"{what}: the API server {self._server} refused the credentials of user "
                    f"{self._user!r} in context {self._context!r} (401 Unauthorized)")
        elif status == 403:
            text = (f"{what}: user {self._user!r} is not allowed to do this (403 Forbidden): "
                    f"{message}")
        elif status == 404:
            text = f"{what}: not found (404): {message}"
        else:
            text = f"{what}: the API server answered {status} {exc.reason}: {message}"
        return APIError(text, status=status)

    def _list(self, what: str, fn: Any, kind: str, api_version: str, *args: Any,
              **kwargs: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page_args = dict(kwargs, limit=self._page_size)
            if token:
                page_args["_continue"] = token
            doc = self._call(what, fn, *args, **page_args)
            for item in doc.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                items.append(item)
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items

    # -- ClusterAPI --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"context": self._context, "server": self._server, "user": self._user,
                "cluster": self._cluster, "kubeconfig": self.kubeconfig,
                "kubeconfig_source": self.kubeconfig_source}

    def version(self) -> dict[str, Any]:
        return self._call("get server version", self._version.get_code)

    def list_nodes(self) -> list[dict[str, Any]]:
        return self._list("list nodes", self._core.list_node, "Node", "v1")

    def list_pods(self, namespace: str | None = None,
                  label_selector: str | None = None) -> list[dict[str, Any]]:
        kw = {"label_selector": label_selector} if label_selector else {}
        if namespace:
            return self._list(f"list pods in {namespace}", self._core.list_namespaced_pod,
                              "Pod", "v1", namespace, **kw)
        return self._list("list pods", self._core.list_pod_for_all_namespaces, "Pod", "v1", **kw)

    def list_daemonsets(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            return self._list(f"list daemonsets in {namespace}",
                              self._apps.list_namespaced_daemon_set, "DaemonSet", "apps/v1",
                              namespace)
        return self._list("list daemonsets", self._apps.list_daemon_set_for_all_namespaces,
                          "DaemonSet", "apps/v1")

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(f"get configmap {namespace}/{name}",
                          self._core.read_namespaced_config_map, name, namespace,
                          _not_found_ok=True)

    def get_namespace(self, name: str) -> dict[str, Any] | None:
        return self._call(f"get namespace {name}", self._core.read_namespace, name,
                          _not_found_ok=True)

    def list_services(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            return self._list(f"list services in {namespace}",
                              self._core.list_namespaced_service, "Service", "v1", namespace)
        return self._list("list services", self._core.list_service_for_all_namespaces,
                          "Service", "v1")

    def list_endpoints(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            return self._list(f"list endpoints in {namespace}",
                              self._core.list_namespaced_endpoints, "Endpoints", "v1", namespace)
        return self._list("list endpoints", self._core.list_endpoints_for_all_namespaces,
                          "Endpoints", "v1")

    def list_events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if namespace:
            return self._list(f"list events in {namespace}", self._core.list_namespaced_event,
                              "Event", "v1", namespace)
        return self._list("list events", self._core.list_event_for_all_namespaces, "Event", "v1")

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(f"get deployment {namespace}/{name}",
                          self._apps.read_namespaced_deployment, name, namespace,
                          _not_found_ok=True)

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(f"get service {namespace}/{name}",
                          self._core.read_namespaced_service, name, namespace,
                          _not_found_ok=True)

    def list_deployments(self, namespace: str) -> list[dict[str, Any]]:
        return self._list(f"list deployments in {namespace}",
                          self._apps.list_namespaced_deployment, "Deployment", "apps/v1",
                          namespace)

    def list_endpointslices(self, namespace: str,
                            label_selector: str | None = None) -> list[dict[str, Any]]:
        """discovery.k8s.io/v1 EndpointSlices; an APIError with status 404 when the server does
        not serve them (the caller falls back to core Endpoints)."""
        kw = {"label_selector": label_selector} if label_selector else {}
        return self._list(f"list endpointslices in {namespace}",
                          self._discovery.list_namespaced_endpoint_slice, "EndpointSlice",
                          "discovery.k8s.io/v1", namespace, **kw)

    def pod_log(self, namespace: str, name: str, container: str | None = None,
                tail_lines: int = 50, previous: bool = False) -> str:
        kw: dict[str, Any] = {"tail_lines": tail_lines}
        if container:
            kw["container"] = container
        if previous:
            kw["previous"] = True
        return self._call(f"get log of pod {namespace}/{name}",
                          self._core.read_namespaced_pod_log, name, namespace, _raw_text=True,
                          **kw)

    # -- writes ------------------------------------------------------------------------------
    def delete_pod(self, namespace: str, name: str) -> None:
        self._call(f"delete pod {namespace}/{name}", self._core.delete_namespaced_pod,
                   name, namespace)

    def restart_daemonset(self, namespace: str, name: str) -> None:
        """As `kubectl rollout restart daemonset/<name>`: a strategic-merge patch of the pod
        template's restartedAt annotation (RFC 3339), which makes the controller roll the pods."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
        self._call(f"restart daemonset {namespace}/{name}",
                   self._apps.patch_namespaced_daemon_set, name, namespace, patch,
                   _content_type="application/strategic-merge-patch+json")

    def patch_deployment(self, namespace: str, name: str,
                         patch: dict[str, Any]) -> dict[str, Any]:
        return self._call(f"patch deployment {namespace}/{name}",
                          self._apps.patch_namespaced_deployment, name, namespace, patch,
                          _content_type="application/strategic-merge-patch+json")

    def close(self) -> None:
        try:
            self._api_client.close()
        except Exception:  # noqa: BLE001 - closing pools at exit must not fail the session
            pass


class _Settings:
    """What the client's token hook writes, kept aside (the API key dict is the real one)."""

    api_key: dict[str, Any]
    written: dict[str, Any]

    def __init__(self, api_key: dict[str, Any]):
        object.__setattr__(self, "api_key", api_key)
        object.__setattr__(self, "written", {})

    def __setattr__(self, name: str, value: Any) -> None:
        self.written[name] = value


class _TokenRefresh:
    """The kubernetes client's hook for a token user, run before every request: it reloads an
    expired token (exec plugin, OIDC, a token file) and then copies the token and all the
    cluster settings (host, TLS files, proxy) into the configuration again; setting `host`
    re-reads the proxy environment each time (~0.15 ms of CPU a request here; the connection
    pool keeps the proxy it was built with anyway). Here the same hook runs and only what it
    changed is copied in: the token always (the same dict), a setting when it differs."""

    def __init__(self, hook: Any):
        self.hook = hook

    def __call__(self, configuration: Any) -> None:
        settings = _Settings(configuration.api_key)
        self.hook(settings)
        for name, value in settings.written.items():
            if name == "refresh_api_key_hook":  # the hook re-installs itself: it is this one
                continue
            if getattr(configuration, name, _Settings) != value:
                setattr(configuration, name, value)


def _share_tls_context(api_client: Any, cluster: dict[str, Any], user: dict[str, Any]) -> bool:
    """One TLS context for all of this API's connections, made once, instead of one per
    connection. urllib3 (under the kubernetes client) makes a new SSLContext for every
    connection it opens and loads the CA file and the client certificate and key into it
    again: ~2.4 of the ~6 ms of our CPU a new connection costs, and a diagnosis opens up to 8
    (the pod logs, core/fanout.py). Here the same context is made once, as urllib3 makes it
    (create_urllib3_context with the client's cert_reqs), with the same files loaded (or the
    system's CAs when the kubeconfig names none, as urllib3 does then), and handed to the
    pool manager; urllib3 still sets the verification mode and checks the host name on every
    connection as before (its own code path for a given context).

    Only when every TLS file is the client's own copy of data in the kubeconfig
    (certificate-authority-data, client-certificate-data, client-key-data: written once, never
    changed), the server's certificate is verified, no proxy is used and no exec plugin or
    auth provider may hand the client new certificates: a CA or client certificate read from a
    path (a kubelet's rotated client certificate) is read again on every connection as before.
    Anything unexpected (another client version, a file that does not load): nothing changes,
    and urllib3 reports the problem as before on the first request. True if shared."""
    import ssl

    import urllib3
    from urllib3.util import ssl_ as u3ssl

    rest = getattr(api_client, "rest_client", None)
    pm = getattr(rest, "pool_manager", None)
    kw = getattr(pm, "connection_pool_kw", None)
    if type(pm) is not urllib3.PoolManager or not isinstance(kw, dict):
        return False  # a proxy (ProxyManager, SOCKS) or a client that builds its pool otherwise
    if kw.get("ssl_context") is not None or kw.get("cert_reqs") != ssl.CERT_REQUIRED:
        return False
    if "exec" in user or "auth-provider" in user:
        return False
    if (cluster.get("certificate-authority") or user.get("client-certificate")
            or user.get("client-key")):
        return False  # read from a path: may be replaced on disk while we run
    known = {"cert_reqs", "ca_certs", "ca_cert_data", "cert_file", "key_file",
             "assert_hostname", "retries", "server_hostname", "socket_options", "maxsize"}
    if set(kw) - known:
        return False  # settings this was not written for
    ca_certs, ca_data = kw.get("ca_certs"), kw.get("ca_cert_data")
    cert_file, key_file = kw.get("cert_file"), kw.get("key_file")
    if bool(cert_file) != bool(user.get("client-certificate-data")) or \
            bool(key_file) != bool(user.get("client-key-data")) or \
            bool(ca_certs) != bool(cluster.get("certificate-authority-data")):
        return False
    try:
        if key_file and u3ssl._is_key_file_encrypted(key_file):
            return False  # urllib3 refuses it on every connection: leave that to it
        context = u3ssl.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        if ca_certs or ca_data:
            context.load_verify_locations(ca_certs, None, ca_data)
        else:
            context.load_default_certs()
        if cert_file:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ValueError, ssl.SSLError, AttributeError, TypeError):
        return False
    shared = {k: v for k, v in kw.items() if k not in ("ca_certs", "ca_cert_data")}
    shared["ssl_context"] = context
    shared.pop("cert_file", None)
    shared.pop("key_file", None)
    pm.connection_pool_kw = shared
    pm.clear()  # no pool was made yet: nothing is closed
    return True


def _scrub(text: str) -> str:
    """Drop anything that looks like a bearer token or key material from a message."""
    import re

    text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1<redacted>", text)
    text = re.sub(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", "<redacted key>", text,
                  flags=re.DOTALL)
    text = re.sub(r"(?i)((?:token|password|client-key-data)\W{1,3})[^\s,'\"]+", r"\1<redacted>",
                  text)
    return text
