"""Pods and nodes as the API sees them: crash loops, pods not running, NotReady nodes, probes
failing with "no route to host"."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import CLUSTER, Finding, FindingData
from clusterfix_tui.core.shape import shape_of, why_not
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_DEBUG = "https://kubernetes.io/docs/tasks/debug/debug-application/debug-pods/"
REF_NODE = "https://kubernetes.io/docs/concepts/architecture/nodes/#condition"
REF_PROBE = "https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/"
# finding code -> the facts sections it is decided from: none (the API only)
READS: dict[str, tuple[str, ...]] = {}
CRASH_REASONS = {"CrashLoopBackOff", "Error", "RunContainerError", "CreateContainerError",
                 "CreateContainerConfigError"}
COMPONENTS = (("kube_proxy_pods", "KUBE_PROXY_CRASHLOOP", "kube-proxy", "kube-system", "kube-proxy"),
              ("flannel_pods", "FLANNEL_CRASHLOOP", "kube-flannel-ds", "kube-flannel", "flannel"))
NO_ROUTE = re.compile(r"no route to host", re.IGNORECASE)
IP_RE = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b")


# Each code's data (defaults only so a test can build the part it needs; the checks fill them).
@dataclass(frozen=True, kw_only=True)
class NodeNotReadyData(FindingData, codes=("NODE_NOT_READY",)):
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ComponentPodData(FindingData):
    """The kube-proxy or flannel pod a finding is about (what the pods step restarts)."""

    namespace: str = ""
    pod: str | None = None  # None: the node has no such pod at all
    daemonset: str | None = None  # its owner; None for a static (mirror) pod
    static: bool = False
    component: str = ""  # "kube_proxy" | "flannel"
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class CrashLoopData(ComponentPodData, codes=("KUBE_PROXY_CRASHLOOP", "FLANNEL_CRASHLOOP")):
    container: str | None = None
    restart_count: int = 0
    last_message: str | None = None
    log_tail: list[str] = field(default_factory=list)
    previous_log_tail: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class PodNotRunningData(ComponentPodData, codes=("POD_NOT_RUNNING",)):
    phase: str | None = None


@dataclass(frozen=True, kw_only=True)
class ProbeNoRouteData(FindingData, codes=("PROBE_NO_ROUTE",)):
    events: list[dict[str, Any]] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)  # "ns/name"
    probe_ip: str | None = None
    namespace: str = ""
    pod: str | None = None
    deployment: str | None = None
    container: str | None = None
    probe: dict[str, Any] | None = None  # the container's readinessProbe


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    nodes = snapshot.nodes
    stale: set[str] = set()  # nodes whose kubelet stopped posting: their pods' status is stale
    for name, info in sorted(nodes.items()):
        ready = info.conditions.get("Ready")
        if ready is not None and ready.get("status") != "True":
            ev = [f"condition Ready={ready.get('status')} reason={ready.get('reason')} "
                  f"message={ready.get('message')}"]
            if ready.get("status") != "False":
                # Ready Unknown (NodeStatusUnknown, "Kubelet stopped posting node status."): the
                # node controller wrote it, the kubelet is silent. Its pods' status is what the
                # kubelet last posted (or the controller's Ready=False): not read, and deleting
                # a pod there leaves it Terminating until the kubelet answers (no restart planned)
                stale.add(name)
                ev.append("the kubelet is not posting status: the kube-proxy/flannel pods on "
                          "this node are not judged (their status is stale) and none is restarted")
            out.append(Finding(
                code="NODE_NOT_READY", severity="error", node=name,
                title=f"node is NotReady ({ready.get('reason') or ready.get('status')})",
                evidence=tuple(ev),
                explanation="kubelet reports the node not Ready; pods there are not scheduled or served.",
                reference=REF_NODE, step=None,
                data=NodeNotReadyData(conditions=dict(info.conditions)),
            ))
    shape = shape_of(snapshot)
    for attr, code, ds, default_ns, label in COMPONENTS:
        if why_not(shape, code) is not None:
            continue  # no such pods on this shape (embedded, absent, another CNI)
        ref = _workload(shape, attr)
        if ref is not None:
            ds, default_ns = ref.name, ref.namespace
        by_node = getattr(snapshot, attr, {}) or {}
        present = any(by_node.values())
        for name in sorted(nodes):
            if name in stale:
                continue
            pods = by_node.get(name) or []
            if not pods:
                if present and _expects_pod(snapshot, default_ns, ds, nodes[name]):
                    out.append(Finding(
                        code="POD_NOT_RUNNING", severity="error", node=name,
                        title=f"no {label} pod on this node",
                        evidence=(f"{label} pods exist on other nodes, none has spec.nodeName={name}",),
                        explanation=f"Every node needs its {label} DaemonSet pod.",
                        reference=REF_DEBUG, step="pods",
                        data=PodNotRunningData(namespace=default_ns, pod=None, phase=None,
                                               reason="missing", daemonset=ds,
                                               component=_comp(code)),
                    ))
                continue
            serving = any(p.phase == "Running" and p.ready and not p.deleting for p in pods)
            for p in pods:
                if serving and (p.deleting or p.phase in ("Failed", "Succeeded")):
                    continue  # a finished (Evicted) or Terminating pod beside the one serving
                out.extend(_pod_findings(p, code, None if p.mirror else ds, label))
    out.extend(_probe_no_route(snapshot))
    return out


def _expects_pod(snapshot: ClusterSnapshot, namespace: str, name: str, node: Any) -> bool:
    """Whether the node should run a pod of the (Linux) DaemonSet namespace/name: not on a node
    labelled another OS (Windows nodes run no Linux kube-proxy/flannel pod), and not on a node its
    nodeSelector or required node affinity leaves out or whose taints it does not tolerate. An
    expression it cannot evaluate: False (no "missing pod" finding rather than a wrong one)."""
    labels = getattr(node, "labels", {}) or {}
    if node.other_os:
        return False
    ds = next((d for d in snapshot.daemonsets
               if d.get("namespace") == namespace and d.get("name") == name), None)
    if ds is None:
        return True
    if any(labels.get(k) != v for k, v in (ds.get("node_selector") or {}).items()):
        return False
    if not _tolerates(ds, getattr(node, "taints", ()) or ()):
        return False
    terms = ds.get("node_affinity")
    if terms is None:
        return True
    return any(_term_matches(t, labels) for t in terms)


# the tolerations the DaemonSet controller adds to every DaemonSet pod (kubernetes
# pkg/controller/daemon/util AddOrUpdateDaemonPodTolerations): (key, effect); the last one only
# for pods on the host's network (kube-proxy's and flannel's are)
_DS_TOLERATIONS = (("node.kubernetes.io/not-ready", "NoExecute"),
                   ("node.kubernetes.io/unreachable", "NoExecute"),
                   ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                   ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                   ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                   ("node.kubernetes.io/unschedulable", "NoSchedule"))
_DS_HOST_NETWORK_TOLERATION = ("node.kubernetes.io/network-unavailable", "NoSchedule")


def _tolerates(ds: dict[str, Any], taints: Any) -> bool:
    """Whether the DaemonSet's pods tolerate every NoSchedule/NoExecute taint of the node (the
    controller places no pod on a node whose such taint it does not tolerate: then no pod is
    missing there). PreferNoSchedule never keeps a DaemonSet pod away."""
    tols = list(ds.get("tolerations") or [])
    auto = _DS_TOLERATIONS + ((_DS_HOST_NETWORK_TOLERATION,) if ds.get("host_network") else ())
    for t in taints:
        effect = str(t.get("effect") or "")
        if effect not in ("NoSchedule", "NoExecute"):
            continue
        key, value = str(t.get("key") or ""), str(t.get("value") or "")
        if (key, effect) in auto:
            continue
        if not any(_toleration_matches(tol, key, value, effect) for tol in tols):
            return False
    return True


def _toleration_matches(tol: dict[str, str], key: str, value: str, effect: str) -> bool:
    """A pod toleration against one taint (core/v1 Toleration.ToleratesTaint): the effect empty
    or equal; operator Exists (an empty key: every taint) or Equal (the default) with the key and
    value equal."""
    if tol.get("effect") and tol.get("effect") != effect:
        return False
    op = tol.get("operator") or "Equal"
    if op == "Exists":
        return not tol.get("key") or tol.get("key") == key
    return op == "Equal" and tol.get("key") == key and (tol.get("value") or "") == value


def _term_matches(term: Any, labels: dict[str, str]) -> bool:
    """One nodeSelectorTerm (its matchExpressions ANDed); matchFields or an unknown operator:
    False (not evaluated)."""
    if not isinstance(term, dict) or term.get("matchFields"):
        return False
    exprs = term.get("matchExpressions") or []
    if not exprs:
        return False  # an empty term matches no node
    for e in exprs:
        if not isinstance(e, dict):
            return False
        key, op = str(e.get("key") or ""), e.get("operator")
        raw = e.get("values")
        if raw is not None and not isinstance(raw, list):
            return False  # the API's values are a list of strings: anything else is not evaluated
        values = [str(v) for v in raw or []]
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            return False
        if not ok:
            return False
    return True


def _comp(code: str) -> str:
    return "kube_proxy" if code.startswith("KUBE_PROXY") else "flannel"


def _workload(shape: Any, attr: str) -> Any:
    """The DaemonSet (core.shape.WorkloadRef) that owns the component's pods, if known."""
    if shape is None:
        return None
    if attr == "kube_proxy_pods":
        return shape.kube_proxy_workload
    fl = shape.flannel
    return fl.daemonset if fl is not None else None


def _pod_findings(p: Any, code: str, ds: str | None, label: str) -> list[Finding]:
    node = p.node or CLUSTER
    crash = p.waiting_reason in CRASH_REASONS or (p.waiting_reason is None and p.phase == "Running"
                                                  and not p.ready and p.restart_count > 2)
    if crash:
        evidence = [f"{p.ref}: waiting {p.waiting_reason or '-'}, restarts {p.restart_count}"]
        if p.last_termination_message:
            evidence.append(f"last termination: {p.last_termination_message.strip()[:300]}")
        # a crash-looping container's current log is its last failed run (what `kubectl logs`
        # shows); --previous is the run before
        tail = list(p.log_tail or p.previous_log_tail)
        errs = [ln for ln in tail if ln[:1] in ("E", "F") or "error" in ln.lower()]
        evidence.extend(f"log: {ln.strip()}" for ln in (errs or tail)[-3:])
        return [Finding(
            code=code, severity="error", node=node,
            title=f"{label} pod {p.name} is crash-looping ({p.restart_count} restarts)",
            evidence=tuple(evidence),
            explanation=(f"The {label} container keeps exiting; its last log lines say why. "
                         "Fix the cause on the node, then restart the pod."),
            reference=REF_DEBUG, step="pods",
            data=CrashLoopData(
                namespace=p.namespace, pod=p.name, container=p.container,
                restart_count=p.restart_count, reason=p.waiting_reason,
                last_message=p.last_termination_message, log_tail=tail[-20:],
                previous_log_tail=list(p.previous_log_tail)[-20:], daemonset=ds,
                static=p.mirror, component=_comp(code)),
        )]
    if p.phase != "Running" or not p.ready:
        return [Finding(
            code="POD_NOT_RUNNING", severity="error", node=node,
            title=f"{label} pod {p.name} is {p.phase or 'unknown'}"
                  + ("" if p.ready else ", not ready"),
            evidence=(f"{p.ref}: phase {p.phase}, ready {p.ready}, waiting {p.waiting_reason}, "
                      f"restarts {p.restart_count}",),
            explanation=f"The node's {label} pod is not running and ready.",
            reference=REF_DEBUG, step="pods",
            data=PodNotRunningData(
                namespace=p.namespace, pod=p.name, phase=p.phase,
                reason=p.waiting_reason or p.phase, daemonset=ds, static=p.mirror,
                component=_comp(code)),
        )]
    return []


def _probe_no_route(snapshot: ClusterSnapshot) -> list[Finding]:
    events = [e for e in snapshot.warning_events
              if NO_ROUTE.search(str(e.get("message") or ""))]
    if not events:
        return []
    pods = {(p.namespace, p.name): p for p in snapshot.pods}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        groups.setdefault((str(e.get("namespace") or ""), str(e.get("name") or e.get("object"))), []).append(e)
    out = []
    for (ns, name), evs in sorted(groups.items()):
        pod = pods.get((ns, name))
        m = IP_RE.search(str(evs[-1].get("message") or ""))
        ip = m.group(1) if m else None
        node = pod.node if pod and pod.node else (snapshot.node_for_ip(ip) if ip else None)
        deployment = None
        if pod is not None and pod.owner_kind == "ReplicaSet" and pod.owner_name:
            deployment = pod.owner_name.rsplit("-", 1)[0]
        container, probe = (None, None)
        if pod is not None and pod.readiness_probes:
            container, probe = next(iter(pod.readiness_probes.items()))
        out.append(Finding(
            code="PROBE_NO_ROUTE", severity="warning", node=node or CLUSTER,
            title=f"probes of {ns}/{name} fail with 'no route to host'",
            evidence=tuple(f"event {e.get('reason')} {e.get('object')} (x{e.get('count')}): "
                           f"{str(e.get('message')).strip()[:300]}" for e in evs[-3:]),
            explanation=("kubelet cannot reach the pod: 'no route to host' comes from an ICMP "
                         "host-unreachable/prohibited answer (a firewall REJECT) or a missing "
                         "route/neighbour on the path. The cause is on the node; the runbook's "
                         "exec-probe workaround only hides it."),
            reference=REF_PROBE, step="pods",
            data=ProbeNoRouteData(
                events=[{"namespace": e.get("namespace"), "object": e.get("object"),
                         "reason": e.get("reason"), "message": e.get("message"),
                         "count": e.get("count")} for e in evs],
                pods=[f"{ns}/{name}"], probe_ip=ip, namespace=ns, pod=name,
                deployment=deployment, container=container, probe=probe),
        ))
    return out
