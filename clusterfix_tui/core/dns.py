"""Cluster DNS as the API shows it: the kube-dns Service, its ready endpoints, the DNS pods and
the Deployments that run them (CoreDNS on kubeadm and k3s, kube-dns on older clusters).

Facts of the real add-ons this is written from: kubeadm and k3s install Deployment `coredns` in
kube-system whose pods carry `k8s-app=kube-dns`, behind Service kube-system/kube-dns (ClusterIP
10.96.0.10 on kubeadm, 10.43.0.10 on k3s) selecting `k8s-app=kube-dns`; RKE2's chart names them
`rke2-coredns-rke2-coredns`; NodeLocal DNSCache is a DaemonSet `node-local-dns` (169.254.20.10 on
every node) that forwards cluster names to the same pods. Only kube-system/kube-dns is read as the
Service: when it is absent that is said, no other Service is guessed.

`read_dns(api, pods, daemonsets)` never raises: what could not be read is in `errors`, and an API
object without the DNS reads (an older recording, a test double) gives None (not read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.ports import APIError

DNS_NAMESPACE = "kube-system"
DNS_SERVICE = "kube-dns"
DNS_LABEL = ("k8s-app", "kube-dns")
SLICE_LABEL = "kubernetes.io/service-name"
NODELOCAL_NAMES = ("node-local-dns", "nodelocaldns")


@dataclass(frozen=True)
class DnsDeployment:
    namespace: str
    name: str
    replicas: int | None  # spec.replicas (None: not set, the API defaults it to 1)
    ready: int  # status.readyReplicas

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ClusterDNS:
    """What the API says about cluster DNS. `service_read` False: the Service could not be read
    (nothing is concluded); `endpoints_source` None: endpoints not read."""

    service_read: bool = False
    service_found: bool = False
    cluster_ips: tuple[str, ...] = ()
    selector: dict[str, str] = field(default_factory=dict)
    pods: tuple[Any, ...] = ()  # core.snapshot.PodInfo of the DNS pods
    endpoints_source: str | None = None  # "endpointslices" | "endpoints" | None (not read)
    ready_endpoints: tuple[str, ...] = ()  # one per ready endpoint (its pod, else its address)
    not_ready_endpoints: tuple[str, ...] = ()
    deployments: tuple[DnsDeployment, ...] = ()
    deployments_read: bool = False
    node_local: tuple[str, ...] = ()  # "ns/name" of NodeLocal DNSCache DaemonSets
    errors: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        """Any DNS add-on at all: the Service, a DNS pod or a DNS Deployment."""
        return self.service_found or bool(self.pods) or bool(self.deployments)

    @property
    def label(self) -> str:
        return f"{DNS_NAMESPACE}/{DNS_SERVICE}"

    def summary(self) -> str:
        """One line for the validation and the snapshot summary."""
        if not self.service_read:
            return "cluster DNS: not read (" + "; ".join(self.errors)[:300] + ")"
        if not self.found:
            return (f"cluster DNS: no cluster DNS found (no Service {self.label}, no "
                    f"{DNS_LABEL[0]}={DNS_LABEL[1]} pods or Deployments in {DNS_NAMESPACE})")
        cache = f"; NodeLocal DNSCache {', '.join(self.node_local)}" if self.node_local else ""
        if not self.service_found:
            ok = sum(1 for p in self.pods if p.phase == "Running" and p.ready)
            return (f"cluster DNS: no Service {self.label} (another name is not guessed); "
                    f"{ok}/{len(self.pods)} DNS pods Running and Ready{cache}")
        if self.endpoints_source is None:
            return f"cluster DNS: {DNS_SERVICE} endpoints not read ({'; '.join(self.errors)[:300]})"
        n = len(self.ready_endpoints)
        if n == 0:
            extra = f", {len(self.not_ready_endpoints)} not ready" if self.not_ready_endpoints else ""
            return (f"cluster DNS: {DNS_SERVICE} has no ready endpoints{extra}: every lookup in "
                    f"the cluster fails{cache}")
        return f"cluster DNS: {DNS_SERVICE} has {n} ready endpoint{'s' if n != 1 else ''}{cache}"

    @property
    def serving(self) -> bool | None:
        """True/False when the API says whether kube-dns has ready endpoints; None otherwise."""
        if not (self.service_read and self.service_found and self.endpoints_source):
            return None
        return bool(self.ready_endpoints)


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _labels(obj: Any) -> dict[str, Any]:
    return _d(_d(_d(obj).get("metadata")).get("labels"))


def _matches(labels: dict[str, Any], selector: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _count(v: Any) -> int:
    """A count from the API (status.readyReplicas): an int, else 0 (int() of an odd value
    raised out of the snapshot and the whole diagnosis was lost)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _err(what: str, exc: BaseException) -> str:
    return f"{what}: {type(exc).__name__}: {exc}"[:300]


def _slice_endpoints(slices: list[Any]) -> tuple[list[str], list[str]]:
    """(ready, not ready) endpoints of EndpointSlices: `conditions.ready` unset counts as ready
    (discovery.k8s.io/v1: nil means unknown, consumers treat it as ready); one entry per pod
    (a dual-stack Service has a slice per family: the same pod is one endpoint)."""
    ready: dict[str, None] = {}
    not_ready: dict[str, None] = {}
    for s in slices:
        for ep in _l(_d(s).get("endpoints")):
            ep = _d(ep)
            addrs = [a for a in _l(ep.get("addresses")) if isinstance(a, str)]
            ref = _d(ep.get("targetRef"))
            key = f"{ref.get('namespace') or DNS_NAMESPACE}/{ref['name']}" if ref.get("name") \
                else (addrs[0] if addrs else "")
            if not key:
                continue
            if _d(ep.get("conditions")).get("ready") is False:
                not_ready[key] = None
            else:
                ready[key] = None
    return list(ready), [k for k in not_ready if k not in ready]


def _core_endpoints(eps: list[Any]) -> tuple[list[str], list[str]]:
    ready: dict[str, None] = {}
    not_ready: dict[str, None] = {}
    for ep in eps:
        if _d(_d(ep).get("metadata")).get("name") != DNS_SERVICE:
            continue
        for sub in _l(_d(ep).get("subsets")):
            for field_, out in (("addresses", ready), ("notReadyAddresses", not_ready)):
                for a in _l(_d(sub).get(field_)):
                    ref = _d(_d(a).get("targetRef"))
                    key = f"{ref.get('namespace') or DNS_NAMESPACE}/{ref['name']}" \
                        if ref.get("name") else str(_d(a).get("ip") or "")
                    if key:
                        out[key] = None
    return list(ready), [k for k in not_ready if k not in ready]


def read_dns(api: Any, pods: list[Any] | tuple[Any, ...],
             daemonsets: list[dict[str, Any]] | tuple[dict[str, Any], ...] | None = None
             ) -> ClusterDNS | None:
    """Read cluster DNS through `api` (the Service, its endpoints and kube-system's Deployments,
    three reads run side by side). `pods`: the snapshot's PodInfo of every pod;
    `daemonsets`: the snapshot's DaemonSet summaries (NodeLocal DNSCache). None when `api`
    has no DNS reads."""
    if not all(callable(getattr(api, m, None)) for m in
               ("get_service", "list_deployments", "list_endpointslices")):
        return None
    from clusterfix_tui.core.fanout import fan_out

    errors: list[str] = []

    def service() -> Any:
        return api.get_service(DNS_NAMESPACE, DNS_SERVICE)

    def endpoints() -> Any:
        try:
            return ("endpointslices",
                    api.list_endpointslices(DNS_NAMESPACE, f"{SLICE_LABEL}={DNS_SERVICE}"))
        except APIError as exc:
            if getattr(exc, "status", None) != 404:
                raise
        # EndpointSlices not served (an old server, a proxy that filters them): core Endpoints
        return ("endpoints", api.list_endpoints(DNS_NAMESPACE))

    def deployments() -> Any:
        return api.list_deployments(DNS_NAMESPACE)

    def guarded(job: tuple[str, Any]) -> tuple[bool, Any]:
        try:
            return True, job[1]()
        except Exception as exc:  # noqa: BLE001 - said in errors, never raised
            return False, _err(job[0], exc)

    jobs = [("get service kube-system/kube-dns", service),
            ("list kube-dns endpoints", endpoints),
            ("list deployments in kube-system", deployments)]
    (s_ok, svc), (e_ok, eps), (d_ok, deps) = fan_out(guarded, jobs, start=3, most=3,
                                                     name="cfx-dns")
    for ok, val in ((s_ok, svc), (e_ok, eps), (d_ok, deps)):
        if not ok:
            errors.append(str(val))
    svc = _d(svc) if s_ok else {}
    spec = _d(svc.get("spec"))
    selector = {str(k): str(v) for k, v in _d(spec.get("selector")).items()}
    cluster_ips = tuple(str(x) for x in _l(spec.get("clusterIPs")) if isinstance(x, str)) or \
        tuple(x for x in (spec.get("clusterIP"),) if isinstance(x, str) and x)

    wanted = [dict([DNS_LABEL])] + ([selector] if selector else [])
    dns_pods = tuple(p for p in pods if getattr(p, "namespace", None) == DNS_NAMESPACE
                     and not getattr(p, "mirror", False)
                     and any(_matches(dict(getattr(p, "labels", {}) or {}), w) for w in wanted))

    ready: list[str] = []
    not_ready: list[str] = []
    source = None
    if e_ok and s_ok and svc:
        source, items = eps
        items = _l(items)
        ready, not_ready = (_slice_endpoints(items) if source == "endpointslices"
                            else _core_endpoints(items))

    owners = {p.owner_name.rsplit("-", 1)[0] for p in dns_pods
              if getattr(p, "owner_kind", None) == "ReplicaSet" and p.owner_name
              and "-" in p.owner_name}
    found_deps: list[DnsDeployment] = []
    for d in _l(deps) if d_ok else []:
        d = _d(d)
        meta = _d(d.get("metadata"))
        dspec = _d(d.get("spec"))
        tpl_labels = _d(_d(_d(dspec.get("template")).get("metadata")).get("labels"))
        name = str(meta.get("name") or "")
        if not name or not (name in owners or any(_matches(tpl_labels, w) for w in wanted)):
            continue
        reps = dspec.get("replicas")
        found_deps.append(DnsDeployment(
            namespace=str(meta.get("namespace") or DNS_NAMESPACE), name=name,
            replicas=reps if isinstance(reps, int) and not isinstance(reps, bool) else None,
            ready=_count(_d(d.get("status")).get("readyReplicas"))))

    node_local = tuple(f"{d.get('namespace')}/{d.get('name')}" for d in daemonsets or ()
                       if d.get("name") in NODELOCAL_NAMES
                       or (d.get("labels") or {}).get("k8s-app") in NODELOCAL_NAMES)
    return ClusterDNS(
        service_read=s_ok, service_found=bool(svc), cluster_ips=cluster_ips, selector=selector,
        pods=dns_pods, endpoints_source=source, ready_endpoints=tuple(ready),
        not_ready_endpoints=tuple(not_ready), deployments=tuple(found_deps),
        deployments_read=d_ok, node_local=node_local, errors=tuple(errors))
