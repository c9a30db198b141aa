"""ClusterSnapshot: what the Kubernetes API says, gathered once, as plain data.

Every API call is wrapped: a failure becomes an entry in `errors` ({"what", "error"}), never an
exception, so a half-broken API still yields a diagnosis of what could be read.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.fanout import fan_out
from clusterfix_tui.core.shape import classify_daemonset, component_of_images, is_mirror_pod

KUBE_PROXY_SELECTOR = "k8s-app=kube-proxy"
FLANNEL_SELECTOR = "app=flannel"
SYSTEM_NAMESPACES = ("kube-system", "kube-flannel")
VTEP_ANNOTATION = "flannel.alpha.coreos.com/backend-data"
PUBLIC_IP_ANNOTATION = "flannel.alpha.coreos.com/public-ip"
OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")
LOG_TAIL = 30
# config.conf of ConfigMap kube-proxy parsed as YAML up to this size (real ones: 1-3 KiB)
KUBE_PROXY_CONFIG_YAML_MAX = 64 * 1024


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    node: str | None
    phase: str | None
    ready: bool
    restart_count: int
    waiting_reason: str | None
    waiting_message: str | None
    last_termination_message: str | None
    last_termination_reason: str | None
    container: str | None
    pod_ip: str | None
    labels: dict[str, str] = field(default_factory=dict)
    log_tail: tuple[str, ...] = ()
    previous_log_tail: tuple[str, ...] = ()
    owner_kind: str | None = None
    owner_name: str | None = None
    readiness_probes: dict[str, Any] = field(default_factory=dict)  # container -> readinessProbe
    host_network: bool = False
    owner_uid: str | None = None  # the controller ownerReference's uid
    mirror: bool = False  # a static pod's mirror (kubernetes.io/config.mirror / owner kind Node)
    images: tuple[str, ...] = ()
    deleting: bool = False  # metadata.deletionTimestamp set (Terminating)

    @property
    def crash_looping(self) -> bool:
        return self.waiting_reason == "CrashLoopBackOff"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NodeInfo:
    name: str
    internal_ip: str | None
    addresses: tuple[dict[str, Any], ...]
    pod_cidr: str | None
    conditions: dict[str, dict[str, Any]]  # type -> {status, reason, message}
    annotations: dict[str, str]
    labels: dict[str, str]
    kubelet_version: str | None
    pod_cidrs: tuple[str, ...] = ()  # spec.podCIDRs in order (dual stack: both families)
    container_runtime: str | None = None  # status.nodeInfo.containerRuntimeVersion
    # spec.taints: {key, value, effect} each (strings; a missing one "")
    taints: tuple[dict[str, str], ...] = ()

    def pod_cidr_for(self, version: int) -> str | None:
        """The podCIDR of one IP family (4 or 6), whatever the order of podCIDRs."""
        for c, v in self._cidr_versions:
            if v == version:
                return c
        return None

    @functools.cached_property
    def _cidr_versions(self) -> tuple[tuple[str, int], ...]:
        """(podCIDR, IP version) of each valid podCIDR in order, read once per node (the checks
        ask per family and per check)."""
        out = []
        for c in self.pod_cidrs or ((self.pod_cidr,) if self.pod_cidr else ()):
            try:
                out.append((c, ipaddress.ip_network(c, strict=False).version))
            except ValueError:
                continue
        return tuple(out)

    def gateway_for(self, version: int) -> str | None:
        """flannel's per-family subnet network address (flannel.1 / flannel-v6.1 and onlink gw)."""
        try:
            return str(ipaddress.ip_network(self.pod_cidr_for(version) or "", strict=False)
                       .network_address)
        except ValueError:
            return None

    @property
    def ready(self) -> bool | None:
        c = self.conditions.get("Ready")
        return None if c is None else c.get("status") == "True"

    @property
    def os(self) -> str | None:
        """The node's OS label (kubernetes.io/os, else the older beta.kubernetes.io/os): "linux",
        "windows", or None when unlabelled."""
        return next((self.labels[k] for k in OS_LABELS
                     if isinstance(self.labels.get(k), str) and self.labels[k].strip()), None)

    @property
    def other_os(self) -> bool:
        """Labelled an OS other than Linux (a Windows node): no Linux command runs there. Read
        as the kubelet writes it (GOOS: lower case); a label that names no OS (empty, blank) or
        writes linux another way ("Linux", " linux") is no other OS: the node is read."""
        os_ = self.os
        if not isinstance(os_, str):
            return False
        norm = os_.strip().lower()
        return bool(norm) and norm != "linux"

    @property
    def is_control_plane(self) -> bool:
        return any(k in self.labels for k in ("node-role.kubernetes.io/control-plane",
                                              "node-role.kubernetes.io/master"))

    @property
    def vtep_mac(self) -> str | None:
        raw = self.annotations.get(VTEP_ANNOTATION)
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        mac = data.get("VtepMAC") if isinstance(data, dict) else None
        return mac.lower() if isinstance(mac, str) else None

    @property
    def public_ip(self) -> str | None:
        return self.annotations.get(PUBLIC_IP_ANNOTATION) or self.internal_ip

    @property
    def flannel_gateway(self) -> str | None:
        """The subnet's network address: flannel.1's /32 and the peers' onlink gateway. flannel.1
        is the IPv4 device: on a dual-stack node listing its IPv6 podCIDR first (k3s/kubeadm
        --cluster-cidr v6,v4) it is the IPv4 podCIDR's, not spec.podCIDR's (IPv6 there); a node
        without an IPv4 podCIDR keeps spec.podCIDR's."""
        v4 = self.gateway_for(4)
        if v4 is not None:
            return v4
        try:
            return str(ipaddress.ip_network(self.pod_cidr or "", strict=False).network_address)
        except ValueError:
            return None


@dataclass(frozen=True)
class ClusterSnapshot:
    api: dict[str, Any] = field(default_factory=dict)  # describe(): context, server, user
    version: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    kube_proxy_pods: dict[str, list[PodInfo]] = field(default_factory=dict)  # node -> pods
    flannel_pods: dict[str, list[PodInfo]] = field(default_factory=dict)
    pods: tuple[PodInfo, ...] = ()  # every pod (for pod IPs per node, probe targets)
    kube_proxy_mode: str | None = None  # from ConfigMap kube-proxy config.conf ("" means default)
    kube_proxy_config_found: bool = False
    # kube-proxy's clusterCIDR (config.conf), comma-split: the pod IP range(s) of the cluster as
    # kubeadm configured it (--pod-network-cidr), also where the CNI's own IPAM (calico IP pools,
    # cilium cluster-pool) hands out pod IPs outside the nodes' podCIDRs
    cluster_cidrs: tuple[str, ...] = ()
    flannel_network: str | None = None
    flannel_backend: str | None = None
    flannel_config_found: bool = False
    nodeport_services: tuple[dict[str, Any], ...] = ()  # {namespace, name, ports: [{port, nodePort, ...}]}
    endpoints: dict[str, list[str]] = field(default_factory=dict)  # ns/name -> ["ip:port"]
    warning_events: tuple[dict[str, Any], ...] = ()
    daemonsets: tuple[dict[str, Any], ...] = ()  # {namespace, name, desired, ready, uid, labels,
    #   components (core.shape.classify_daemonset), configmaps (volume ConfigMap names),
    #   node_selector (the pod template's nodeSelector), node_affinity (its required
    #   nodeSelectorTerms, None: none), tolerations ({key, operator, value, effect}),
    #   host_network}
    errors: tuple[dict[str, str], ...] = ()
    flannel_net_conf: dict[str, Any] | None = None  # the parsed net-conf.json
    flannel_configmap: str | None = None  # "ns/name" it came from
    kube_proxy_static_pods: tuple[PodInfo, ...] = ()  # mirror pods of a static kube-proxy
    shape: Any = None  # core.shape.ClusterShape, set by diagnose() once the nodes are read
    dns: Any = None  # core.dns.ClusterDNS (None: not read, an API without the DNS reads)

    def node_names(self) -> list[str]:
        return list(self.nodes)

    def pod_ips_by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in self.pods:
            if p.node and p.pod_ip and p.node in self.nodes and not p.host_network \
                    and p.phase == "Running":
                cidr = self.nodes[p.node].pod_cidr
                if cidr and _in_cidr(p.pod_ip, cidr):
                    out.setdefault(p.node, []).append(p.pod_ip)
        return out

    def peer_pod_ips(self, node: str, per_peer: int = 1) -> list[str]:
        """One pod IP (pod network, not hostNetwork) on every other node, for `ip route get`."""
        out: list[str] = []
        for other, ips in self.pod_ips_by_node().items():
            if other != node:
                out.extend(sorted(ips)[:per_peer])
        return out

    def node_for_ip(self, ip: str) -> str | None:
        for n in self.nodes.values():
            if n.pod_cidr and _in_cidr(ip, n.pod_cidr):
                return n.name
            if n.internal_ip == ip:
                return n.name
        return None

    @functools.cached_property
    def derived(self) -> dict[Any, Any]:
        """What the checks derive from the whole snapshot, kept once per snapshot instead of per
        node (a snapshot's nodes do not change once built). Not a field: not in ==, repr or
        to_dict()."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        from clusterfix_tui.core.model import _plain

        d = _plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                    if f.name != "shape"})
        d["nodes"] = {k: _plain(v) | {"ready": v.ready, "vtep_mac": v.vtep_mac}
                      for k, v in self.nodes.items()}
        return d

    def summary(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "version": self.version.get("gitVersion") if isinstance(self.version, dict) else None,
            "nodes": {n.name: {"ready": n.ready, "internal_ip": n.internal_ip,
                               "pod_cidr": n.pod_cidr, "control_plane": n.is_control_plane}
                      for n in self.nodes.values()},
            "kube_proxy_mode": self.kube_proxy_mode,
            "flannel_network": self.flannel_network,
            "flannel_backend": self.flannel_backend,
            "nodeport_services": [f"{s['namespace']}/{s['name']}" for s in self.nodeport_services],
            "warning_events": len(self.warning_events),
            "errors": list(self.errors),
            **({"dns": self.dns.summary()} if self.dns is not None else {}),
        }


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _d(v: Any) -> dict[str, Any]:
    """v if it is a dict, else {}: API objects from a broken server must not crash diagnostics."""
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _i(v: Any) -> int:
    try:
        return int(v) if not isinstance(v, bool) else 0
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's 1e999 is inf
        return 0


def _strmap(v: Any) -> dict[str, str]:
    return {str(k): str(x) for k, x in _d(v).items() if isinstance(x, (str, int, float, bool))}


def _meta(obj: Any) -> dict[str, Any]:
    return _d(_d(obj).get("metadata"))


def node_info(obj: dict[str, Any]) -> NodeInfo:
    meta = _meta(obj)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    addrs = tuple(a for a in _l(status.get("addresses")) if isinstance(a, dict))
    internal = next((_s(a.get("address")) for a in addrs if a.get("type") == "InternalIP"), None)
    conds = {}
    for c in _l(status.get("conditions")):
        if isinstance(c, dict) and isinstance(c.get("type"), str):
            conds[c["type"]] = {"status": c.get("status"), "reason": c.get("reason"),
                                "message": c.get("message")}
    cidrs = [c for c in _l(spec.get("podCIDRs")) if isinstance(c, str)]
    return NodeInfo(
        name=_s(meta.get("name")) or "", internal_ip=internal, addresses=addrs,
        pod_cidr=_s(spec.get("podCIDR")) or (cidrs[0] if cidrs else None),
        conditions=conds, annotations=_strmap(meta.get("annotations")),
        labels=_strmap(meta.get("labels")),
        kubelet_version=_s(_d(status.get("nodeInfo")).get("kubeletVersion")),
        pod_cidrs=tuple(cidrs) or tuple(c for c in (_s(spec.get("podCIDR")),) if c),
        container_runtime=_s(_d(status.get("nodeInfo")).get("containerRuntimeVersion")),
        taints=tuple({k: _s(t.get(k)) or "" for k in ("key", "value", "effect")}
                     for t in _l(spec.get("taints")) if isinstance(t, dict)),
    )


def _container_status(obj: dict[str, Any], container_hint: str | None) -> dict[str, Any]:
    """The container status a PodInfo describes: the hinted container's, else the worst one."""
    statuses = [x for x in _l(_d(obj.get("status")).get("containerStatuses")) if isinstance(x, dict)]
    cs: dict[str, Any] = {}
    if container_hint:
        cs = next((x for x in statuses if x.get("name") == container_hint), {})
    if not cs and statuses:
        # the worst container: waiting first, then most restarts
        cs = sorted(statuses, key=lambda x: (not _d(_d(x.get("state")).get("waiting")),
                                             -_i(x.get("restartCount"))))[0]
    # the pod is still initializing (Init:CrashLoopBackOff, Init:Error): the init container
    # that is failing is what describes it, not the main one waiting in PodInitializing
    if not cs or _d(_d(cs.get("state")).get("waiting")).get("reason") == "PodInitializing":
        inits = [x for x in _l(_d(obj.get("status")).get("initContainerStatuses")) if isinstance(x, dict)]
        failing = next((x for x in inits if not x.get("ready") and (
            _d(_d(x.get("state")).get("waiting")).get("reason") not in (None, "PodInitializing")
            or _i(_d(_d(x.get("state")).get("terminated")).get("exitCode")) != 0)), None)
        if failing is not None:
            cs = failing
    return cs


def pod_info(obj: dict[str, Any], container_hint: str | None = None,
             cs: dict[str, Any] | None = None) -> PodInfo:
    """`cs`: the status _container_status(obj, container_hint) gives, when the caller has it."""
    meta = _meta(obj)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    statuses = [x for x in _l(status.get("containerStatuses")) if isinstance(x, dict)]
    if cs is None:
        cs = _container_status(obj, container_hint)
    state = _d(cs.get("state"))
    waiting = _d(state.get("waiting"))
    term = _d(_d(cs.get("lastState")).get("terminated")) or _d(state.get("terminated"))
    owners = [o for o in _l(meta.get("ownerReferences")) if isinstance(o, dict)]
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
    ready = bool(statuses) and all(bool(x.get("ready")) for x in statuses)
    for c in _l(status.get("conditions")):
        if isinstance(c, dict) and c.get("type") == "Ready":
            ready = c.get("status") == "True"
    containers = [c for c in _l(spec.get("containers")) if isinstance(c, dict)]
    return PodInfo(
        namespace=_s(meta.get("namespace")) or "", name=_s(meta.get("name")) or "",
        node=_s(spec.get("nodeName")), phase=_s(status.get("phase")), ready=ready,
        restart_count=_i(cs.get("restartCount")),
        waiting_reason=_s(waiting.get("reason")), waiting_message=_s(waiting.get("message")),
        last_termination_message=_s(term.get("message")),
        last_termination_reason=_s(term.get("reason")),
        container=_s(cs.get("name")) or (_s(containers[0].get("name")) if containers else None),
        pod_ip=_s(status.get("podIP")), labels=_strmap(meta.get("labels")),
        owner_kind=_s(owner.get("kind")), owner_name=_s(owner.get("name")),
        readiness_probes={str(c.get("name")): c["readinessProbe"] for c in containers
                          if isinstance(c.get("readinessProbe"), dict)},
        host_network=spec.get("hostNetwork") is True,
        owner_uid=_s(owner.get("uid")),
        mirror=is_mirror_pod(meta),
        images=tuple(str(c.get("image") or "") for c in containers),
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _kube_proxy_config(cm: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """config.conf of ConfigMap kube-proxy: (its text, the KubeProxyConfiguration it holds as a
    mapping, None when it is not one: YAML, or JSON, which is YAML too, that does not parse)."""
    data = _d(_d(cm).get("data"))
    text = str(data.get("config.conf") or data.get("config") or "")
    if len(text) > KUBE_PROXY_CONFIG_YAML_MAX or text.count("[") + text.count("{") > 256:
        # PyYAML (pure Python) takes ~4 s per MiB, twice per diagnosis (mode, clusterCIDR), and
        # recurses per nesting level (64 KiB of '[': 1.3 s to its RecursionError): a config.conf
        # is a few KiB with a handful of [] / {}; anything else is read by its lines only
        return text, None
    try:
        import yaml

        doc = yaml.safe_load(text) if text.strip() else None
    except Exception:  # noqa: BLE001 - a ConfigMap's text: not YAML = read by lines below
        doc = None
    return text, doc if isinstance(doc, dict) else None


def parse_kube_proxy_mode(cm: dict[str, Any] | None) -> str | None:
    """The `mode` of config.conf in ConfigMap kube-proxy ("" = default, iptables on Linux), read
    as YAML (a comment after the value, quotes, a config written as JSON); text that is no YAML
    mapping: its `mode:` line."""
    text, doc = _kube_proxy_config(cm)
    if doc is not None:
        mode = doc.get("mode")
        if mode is None:
            return ""  # absent or `mode:` / `mode: null`: the default
        # a mode that is no string (`mode: [ipvs]`, `mode: 1`) is no mode kube-proxy runs in:
        # not read (None), never the default iptables mode
        return mode.strip() if isinstance(mode, str) else None
    for line in text.splitlines():
        m = re.match(r"^mode:\s*(.*?)\s*$", line)
        if m:
            return m.group(1).strip("'\"")
    return ""


def parse_cluster_cidrs(cm: dict[str, Any] | None) -> tuple[str, ...]:
    """`clusterCIDR` of config.conf in ConfigMap kube-proxy, as a tuple of valid CIDRs (YAML as
    for the mode; else its `clusterCIDR:` line)."""
    text, doc = _kube_proxy_config(cm)
    value: str | None = None
    if doc is not None:
        v = doc.get("clusterCIDR")
        value = v if isinstance(v, str) else None
    else:
        for line in text.splitlines():
            m = re.match(r"^clusterCIDR:\s*(.*?)\s*$", line)
            if m:
                value = m.group(1).strip("'\"")
                break
    if value is None:
        return ()
    out = []
    for part in value.split(","):
        try:
            out.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError:
            continue
    return tuple(out)


def parse_flannel_net_conf(cm: dict[str, Any] | None) -> tuple[str | None, str | None]:
    data = _d(_d(cm).get("data"))
    try:
        conf = json.loads(str(data.get("net-conf.json") or ""))
    except ValueError:
        return None, None
    if not isinstance(conf, dict):
        return None, None
    # flannel (Go) matches the keys case-insensitively: "network", "Network", "backend", ...
    low = {str(k).lower(): v for k, v in conf.items()}
    be = {str(k).lower(): v for k, v in _d(low.get("backend")).items()}
    return _s(low.get("network")), _s(be.get("type"))


def build_snapshot(api: Any, *, with_logs: bool = True, log_workers: int = 8) -> ClusterSnapshot:
    """Read everything diagnostics need from the API. Never raises."""
    errors: list[dict[str, str]] = []
    lock = threading.Lock()

    def call(what: str, fn: Callable[..., Any], default: Any) -> Any:
        try:
            res = fn()
            return default if res is None else res
        except Exception as exc:
            with lock:
                errors.append({"what": what, "error": f"{type(exc).__name__}: {exc}"[:500]})
            return default

    api_desc = call("describe", api.describe, {})
    version = call("version", api.version, {})
    nodes_raw = call("list_nodes", api.list_nodes, None)
    if nodes_raw is None:  # no API: nothing else will answer either
        return ClusterSnapshot(api=dict(api_desc) if isinstance(api_desc, dict) else {},
                               version=dict(version) if isinstance(version, dict) else {},
                               errors=tuple(errors))
    nodes = {}
    for obj in _l(nodes_raw):
        if isinstance(obj, dict):
            n = node_info(obj)
            if n.name:
                nodes[n.name] = n

    all_pods: list[PodInfo] = []
    raw_pods = [o for o in _l(call("list_pods", lambda: api.list_pods(None, None), []))
                if isinstance(o, dict)]
    # id(raw pod) -> (its PodInfo without a container hint, the status it describes): a pod
    # described again for a hint that picks the same container status is the same PodInfo
    # (frozen), not a second walk of the same object (every kube-proxy and flannel pod)
    plain: dict[int, tuple[PodInfo, dict[str, Any]]] = {}
    for obj in raw_pods:
        status0 = _container_status(obj, None)
        p = pod_info(obj, None, status0)
        plain[id(obj)] = (p, status0)
        all_pods.append(p)

    def pod_info_hinted(obj: dict[str, Any], hint: str | None) -> PodInfo:
        status = _container_status(obj, hint)
        known = plain.get(id(obj))
        if known is not None and (known[1] is status or not (known[1] or status)):
            return known[0]
        return pod_info(obj, hint, status)

    # DaemonSets in every namespace, classified by what they run (core/shape.py)
    ds_raw = call("list_daemonsets", lambda: api.list_daemonsets(None), None)
    ds_listed = ds_raw is not None
    ds_objs = [d for d in _l(ds_raw) if isinstance(d, dict)]
    if not ds_objs:  # an API (or a recording) that only answers per namespace
        for ns in SYSTEM_NAMESPACES:
            got = call(f"list_daemonsets {ns}", lambda ns=ns: api.list_daemonsets(ns), None)
            ds_listed = ds_listed or got is not None
            ds_objs.extend(d for d in _l(got) if isinstance(d, dict))
    daemonsets: list[dict[str, Any]] = []
    seen_ds: set[str] = set()
    for ds in ds_objs:
        m = _meta(ds)
        key = f"{m.get('namespace')}/{m.get('name')}"
        if key in seen_ds:
            continue
        seen_ds.add(key)
        st = _d(ds.get("status"))
        vols = _l(_d(_d(_d(ds.get("spec")).get("template")).get("spec")).get("volumes"))
        pod_spec = _d(_d(_d(ds.get("spec")).get("template")).get("spec"))
        required = _d(_d(_d(pod_spec.get("affinity")).get("nodeAffinity"))
                      .get("requiredDuringSchedulingIgnoredDuringExecution"))
        daemonsets.append({"namespace": _s(m.get("namespace")), "name": _s(m.get("name")),
                           "desired": st.get("desiredNumberScheduled"),
                           "ready": st.get("numberReady"), "uid": _s(m.get("uid")),
                           "labels": _strmap(m.get("labels")),
                           "components": sorted(classify_daemonset(ds)),
                           "configmaps": [str(_d(v.get("configMap")).get("name"))
                                          for v in vols if isinstance(v, dict)
                                          and _d(v.get("configMap")).get("name")],
                           "node_selector": _strmap(pod_spec.get("nodeSelector")),
                           "node_affinity": (_l(required.get("nodeSelectorTerms"))
                                             if "nodeSelectorTerms" in required else None),
                           "tolerations": [{k: _s(t.get(k)) or "" for k in
                                            ("key", "operator", "value", "effect")}
                                           for t in _l(pod_spec.get("tolerations"))
                                           if isinstance(t, dict)],
                           "host_network": pod_spec.get("hostNetwork") is True})

    def owned_pods(component: str, container: str) -> dict[str, list[PodInfo]] | None:
        """Pods of the DaemonSet(s) running `component`, through their ownerReferences: the
        DaemonSet's UID (or, when the reference carries none, its kind+name in its namespace).
        Never by pod name, never in another namespace. None: no such DaemonSet."""
        owners = [d for d in daemonsets if component in d["components"]]
        if not owners:
            return None
        out: dict[str, list[PodInfo]] = {}
        for obj in raw_pods:
            meta = _meta(obj)
            refs = [o for o in _l(meta.get("ownerReferences")) if isinstance(o, dict)]
            ok = False
            for d in owners:
                for o in refs:
                    if o.get("kind") != "DaemonSet" or meta.get("namespace") != d["namespace"]:
                        continue
                    if o.get("uid") and d.get("uid"):
                        ok = o.get("uid") == d["uid"]
                    else:
                        ok = o.get("name") == d["name"]
                    if ok:
                        break
                if ok:
                    break
            if not ok:
                continue
            hint = _container_for(obj, component) or container
            p = pod_info_hinted(obj, hint)
            out.setdefault(p.node or "", []).append(p)
        return out

    def system_pods(selector: str, container: str | None) -> dict[str, list[PodInfo]]:
        out: dict[str, list[PodInfo]] = {}
        seen: set[str] = set()
        for ns in SYSTEM_NAMESPACES:
            for obj in _l(call(f"list_pods {ns} {selector}",
                               lambda ns=ns: api.list_pods(ns, selector), [])):
                if not isinstance(obj, dict):
                    continue
                p = pod_info(obj, container)
                if p.ref in seen:
                    continue
                seen.add(p.ref)
                out.setdefault(p.node or "", []).append(p)
        return out

    # static kube-proxy (kubeadm variants, RKE2): mirror pods running the kube-proxy image
    static_kp: list[PodInfo] = []
    for obj in raw_pods:
        meta = _meta(obj)
        if not is_mirror_pod(meta):
            continue
        cs = [c for c in _l(_d(obj.get("spec")).get("containers")) if isinstance(c, dict)]
        if "kube-proxy" in component_of_images([str(c.get("image") or "") for c in cs],
                                               [str(c.get("name") or "") for c in cs]):
            static_kp.append(pod_info_hinted(obj, _container_for(obj, "kube-proxy")))
    if ds_listed:
        kube_proxy = owned_pods("kube-proxy", "kube-proxy") or {}
        for p in static_kp:
            kube_proxy.setdefault(p.node or "", []).append(p)
        flannel = owned_pods("flannel", "kube-flannel") or {}
    else:  # DaemonSets could not be listed: the well-known labels in the system namespaces
        kube_proxy = system_pods(KUBE_PROXY_SELECTOR, "kube-proxy")
        flannel = system_pods(FLANNEL_SELECTOR, "kube-flannel")
    if with_logs:
        # one log request per pod (two when it restarted): in parallel, a few at a time
        todo = [(group, node_name, i) for group in (kube_proxy, flannel)
                for node_name, plist in group.items() for i in range(len(plist))]
        # as few connections as keep the API server busy (each costs a TLS handshake): 2, more
        # (up to log_workers) only while answers come back slower than we use them (fan_out)
        got = fan_out(lambda t: _with_logs(api, t[0][t[1]][t[2]], call), todo,
                      most=log_workers, name="cfx-logs")
        for (g, k, i), p in zip(todo, got, strict=True):
            g[k][i] = p

    # the ConfigMaps the DaemonSets mount (any namespace), else the well-known names
    kp_cands = [(d["namespace"], c) for d in daemonsets if "kube-proxy" in d["components"]
                for c in d["configmaps"]] + [("kube-system", "kube-proxy")]
    kp_cm: dict[str, Any] = {}
    for ns, name in dict.fromkeys(kp_cands):
        kp_cm = _d(call(f"configmap {ns}/{name}", lambda ns=ns, name=name:
                        api.get_configmap(ns, name), None))
        if kp_cm and _d(kp_cm.get("data")):
            break
    fl_cands = [(d["namespace"], c) for d in daemonsets if "flannel" in d["components"]
                for c in d["configmaps"]] + [(ns, "kube-flannel-cfg") for ns in SYSTEM_NAMESPACES]
    fl_cm = {}
    fl_ref = None
    for ns, name in dict.fromkeys(fl_cands):
        got = _d(call(f"configmap {ns}/{name}", lambda ns=ns, name=name:
                      api.get_configmap(ns, name), None))
        if got and "net-conf.json" in _d(got.get("data")):
            fl_cm, fl_ref = got, f"{ns}/{name}"
            break
    network, backend = parse_flannel_net_conf(fl_cm)
    try:
        net_conf = json.loads(str(_d(fl_cm.get("data")).get("net-conf.json") or "")) if fl_cm else None
    except ValueError:
        net_conf = None

    services = []
    for svc in _l(call("list_services", lambda: api.list_services(None), [])):
        spec = _d(_d(svc).get("spec"))
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        ports = [p for p in _l(spec.get("ports")) if isinstance(p, dict) and p.get("nodePort")]
        if ports:
            m = _meta(svc)
            services.append({"namespace": _s(m.get("namespace")), "name": _s(m.get("name")),
                             "ports": ports, "selector": _d(spec.get("selector")),
                             "clusterIP": _s(spec.get("clusterIP"))})
    endpoints: dict[str, list[str]] = {}
    wanted = {f"{x['namespace']}/{x['name']}" for x in services}
    if wanted:
        for ep in _l(call("list_endpoints", lambda: api.list_endpoints(None), [])):
            m = _meta(ep)
            key = f"{m.get('namespace')}/{m.get('name')}"
            if key not in wanted:
                continue
            addrs = []
            for sub in _l(_d(ep).get("subsets")):
                for a in _l(_d(sub).get("addresses")):
                    for p in _l(_d(sub).get("ports")) or [{}]:
                        addrs.append(f"{_d(a).get('ip')}:{_d(p).get('port', '')}")
            endpoints[key] = addrs

    events = []
    for ev in _l(call("list_events", lambda: api.list_events(None), [])):
        ev = _d(ev)
        if ev.get("type") != "Warning":
            continue
        obj = _d(ev.get("involvedObject")) or _d(ev.get("regarding"))
        events.append({
            "namespace": _s(_meta(ev).get("namespace")) or _s(obj.get("namespace")),
            "object": f"{obj.get('kind', '')}/{obj.get('name', '')}",
            "kind": _s(obj.get("kind")), "name": _s(obj.get("name")),
            "reason": _s(ev.get("reason")),
            "message": _s(ev.get("message")) or _s(ev.get("note")) or "",
            "count": _i(ev.get("count")) or 1,
            "last": ev.get("lastTimestamp") or ev.get("eventTime"),
        })

    from clusterfix_tui.core.dns import read_dns

    dns = read_dns(api, all_pods, daemonsets)
    return ClusterSnapshot(
        api=dict(api_desc) if isinstance(api_desc, dict) else {},
        version=dict(version) if isinstance(version, dict) else {},
        dns=dns, nodes=nodes, kube_proxy_pods=kube_proxy, flannel_pods=flannel, pods=tuple(all_pods),
        kube_proxy_mode=parse_kube_proxy_mode(kp_cm) if kp_cm else None,
        kube_proxy_config_found=bool(kp_cm),
        cluster_cidrs=parse_cluster_cidrs(kp_cm) if kp_cm else (),
        flannel_network=network, flannel_backend=backend, flannel_config_found=bool(fl_cm),
        nodeport_services=tuple(services), endpoints=endpoints,
        warning_events=tuple(events), daemonsets=tuple(daemonsets), errors=tuple(errors),
        flannel_net_conf=net_conf if isinstance(net_conf, dict) else None,
        flannel_configmap=fl_ref, kube_proxy_static_pods=tuple(static_kp),
    )


def _container_for(obj: dict[str, Any], component: str) -> str | None:
    """The name of the pod's container that runs `component` (by image), if any."""
    for c in _l(_d(obj.get("spec")).get("containers")):
        if isinstance(c, dict) and component in component_of_images(
                [str(c.get("image") or "")], [str(c.get("name") or "")]):
            return _s(c.get("name"))
    return None


def _with_logs(api: Any, p: PodInfo, call: Callable[..., Any]) -> PodInfo:
    from dataclasses import replace

    cur = call(f"pod_log {p.ref}", lambda: api.pod_log(p.namespace, p.name, p.container,
                                                       tail_lines=LOG_TAIL), "")
    prev: Any = ""
    if p.restart_count > 0 or p.crash_looping:
        # the previous instance's log is often absent: not an error worth recording
        try:
            prev = api.pod_log(p.namespace, p.name, p.container, tail_lines=LOG_TAIL, previous=True)
        except Exception:
            prev = ""
    return replace(p, log_tail=tuple(str(cur or "").splitlines()[-LOG_TAIL:]),
                   previous_log_tail=tuple(str(prev or "").splitlines()[-LOG_TAIL:]))
