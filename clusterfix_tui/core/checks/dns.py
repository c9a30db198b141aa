"""Cluster DNS: is kube-dns serving? (docs/findings.md, DNS_*)

From the API only (core/dns.py read it into snapshot.dns): the kube-system/kube-dns Service with
no ready endpoint (every lookup in the cluster fails), DNS pods not Running and Ready (which, and
why), a DNS Deployment scaled to 0 (report-only). A cluster without any DNS add-on is no finding
(validation says "no cluster DNS found"); DNS that was not read is no finding either.
The DNS pods are not kube-proxy or flannel pods: POD_NOT_RUNNING (checks/pods.py) never covers
them, so each DNS pod is reported here once.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.dns import ClusterDNS
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import CLUSTER, Finding, FindingData
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_DNS = "https://kubernetes.io/docs/tasks/administer-cluster/dns-debugging-resolution/"
READS: dict[str, tuple[str, ...]] = {}  # API only
# waiting reasons a restart of the pod can clear (the container ran and exited); an image or
# spec problem comes back with the new pod
RESTARTABLE = frozenset({"CrashLoopBackOff", "Error", "RunContainerError"})


@dataclass(frozen=True, kw_only=True)
class DnsNoEndpointsData(FindingData, codes=("DNS_NO_ENDPOINTS",)):
    namespace: str = "kube-system"
    service: str = "kube-dns"
    cluster_ips: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    source: str | None = None  # "endpointslices" | "endpoints"
    node_local: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class DnsPodData(FindingData, codes=("DNS_POD_NOT_RUNNING",)):
    namespace: str = "kube-system"
    pod: str = ""
    deployment: str | None = None  # the Deployment that recreates it (None: not owned by one)
    replicas: int | None = None  # that Deployment's spec.replicas
    phase: str | None = None
    reason: str | None = None  # waiting reason, else the phase
    restart_count: int = 0
    last_message: str | None = None
    restartable: bool = False  # crash-looping and owned by a Deployment with replicas > 0


@dataclass(frozen=True, kw_only=True)
class DnsScaledToZeroData(FindingData, codes=("DNS_SCALED_TO_ZERO",)):
    namespace: str = "kube-system"
    deployment: str = ""
    command: str = ""  # what the owner would run (never run by this tool)


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    dns = getattr(snapshot, "dns", None)
    if not isinstance(dns, ClusterDNS) or not dns.service_read or not dns.found:
        return []
    out: list[Finding] = []
    deps = {d.name: d for d in dns.deployments}
    for d in dns.deployments:
        if d.replicas == 0:
            cmd = (f"kubectl -n {shlex.quote(d.namespace)} scale deployment "
                   f"{shlex.quote(d.name)} --replicas=2")
            out.append(Finding(
                code="DNS_SCALED_TO_ZERO", severity="warning", node=CLUSTER,
                title=f"DNS Deployment {d.ref} is scaled to 0 replicas",
                evidence=(f"deployment {d.ref}: spec.replicas=0, readyReplicas={d.ready}",),
                explanation=("No DNS pod runs, so no name in the cluster resolves. Scaling it back "
                             "up is the owner's decision (someone scaled it down; an autoscaler "
                             f"may own it): not done by this tool. To do it: {cmd}"),
                reference=REF_DNS, step=None,
                data=DnsScaledToZeroData(namespace=d.namespace, deployment=d.name, command=cmd),
            ))
    if dns.service_found and dns.serving is False:
        ev = [f"service {dns.label} (ClusterIP {', '.join(dns.cluster_ips) or '-'}): 0 ready "
              f"endpoints in its {dns.endpoints_source}"]
        if dns.not_ready_endpoints:
            ev.append(f"not ready: {', '.join(dns.not_ready_endpoints[:5])}")
        if dns.node_local:
            ev.append(f"NodeLocal DNSCache {', '.join(dns.node_local)} forwards cluster names to "
                      "these pods: it cannot answer them either")
        out.append(Finding(
            code="DNS_NO_ENDPOINTS", severity="error", node=CLUSTER,
            title=f"cluster DNS is down: Service {dns.label} has no ready endpoints",
            evidence=tuple(ev),
            explanation=("Every pod's resolv.conf points at this Service; with no ready "
                         "endpoint behind it every lookup in the cluster fails (pods report "
                         "'cannot resolve'). The DNS pods' findings say why they are not ready."),
            reference=REF_DNS, step=None,
            data=DnsNoEndpointsData(cluster_ips=list(dns.cluster_ips),
                                    not_ready=list(dns.not_ready_endpoints),
                                    source=dns.endpoints_source, node_local=list(dns.node_local)),
        ))
    for p in sorted(dns.pods, key=lambda p: (p.node or "", p.name)):
        f = _pod_finding(p, deps)
        if f is not None:
            out.append(f)
    return out


def _pod_finding(p: Any, deps: dict[str, Any]) -> Finding | None:
    if p.phase == "Running" and p.ready:
        return None
    if p.phase == "Succeeded":
        return None
    dep_name = p.owner_name.rsplit("-", 1)[0] if p.owner_kind == "ReplicaSet" and p.owner_name \
        and "-" in p.owner_name else None
    dep = deps.get(dep_name) if dep_name else None
    reason = p.waiting_reason or (p.phase if p.phase != "Running" else "not ready")
    crash = p.waiting_reason in RESTARTABLE or (
        p.waiting_reason is None and p.phase == "Running" and p.restart_count > 2)
    restartable = bool(crash and dep is not None and (dep.replicas or 0) > 0)
    ev = [f"{p.ref}: phase {p.phase}, ready {p.ready}, waiting {p.waiting_reason or '-'}, "
          f"restarts {p.restart_count}"]
    if p.last_termination_message or p.last_termination_reason:
        ev.append(f"last termination: {p.last_termination_reason or '-'}: "
                  f"{(p.last_termination_message or '').strip()[:300]}")
    if dep is not None:
        ev.append(f"owned by deployment {dep.ref} (replicas {dep.replicas}, ready {dep.ready})")
    why = ("It crashes: deleting it lets its Deployment start a fresh one (the pods step); if the "
           "cause is in its config (Corefile, a forward loop) it crashes again and its log says why."
           if restartable else
           "Restarting it would not help by itself (not crash-looping, or no Deployment recreates "
           "it): `kubectl -n kube-system describe pod` shows why it is not ready.")
    return Finding(
        code="DNS_POD_NOT_RUNNING", severity="error", node=p.node or CLUSTER,
        title=f"DNS pod {p.name} is {reason}" + (f" ({p.restart_count} restarts)"
                                                  if p.restart_count else ""),
        evidence=tuple(ev),
        explanation=f"A cluster DNS pod is not Running and Ready. {why}",
        reference=REF_DNS, step="pods",
        data=DnsPodData(namespace=p.namespace, pod=p.name, deployment=dep_name,
                        replicas=dep.replicas if dep is not None else None, phase=p.phase,
                        reason=reason, restart_count=p.restart_count,
                        last_message=p.last_termination_message, restartable=restartable),
    )
