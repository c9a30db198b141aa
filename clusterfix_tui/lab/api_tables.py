"""Server-side printing: meta.k8s.io/v1 Tables with the columns kube-apiserver's printers emit.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints whatever
columns come back (priority 0 always, priority 1 with `-o wide`), so these functions decide what
`kubectl get` shows. Column sets and cell formats follow pkg/printers/internalversion/printers.go.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Column = tuple[str, str, int]  # name, type, priority
Row = list[Any]

TABLE_MEDIA = "application/json;as=Table;v=v1;g=meta.k8s.io"


def wants_table(accept: str | None) -> bool:
    return accept is not None and "as=Table" in accept


def parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


class _Printer:
    """Cells are computed at request time so AGE and LAST SEEN are current."""

    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def since(self, value: str | None) -> str:
        when = parse_time(value)
        return "<unknown>" if when is None else human_duration((self.now - when).total_seconds())

    def age(self, obj: Obj) -> str:
        return self.since(obj.get("metadata", {}).get("creationTimestamp"))


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _or_none(value: Any) -> Any:
    return value if value not in (None, "", []) else "<none>"


def _selector_from_set(labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def _label_selector(selector: Obj | None) -> str:
    """metav1.FormatLabelSelector."""
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator", ""), expr.get("key", ""), expr.get("values") or []
        if op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
    return ",".join(parts) or "<none>"


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


# -- per-resource printers ----------------------------------------------------------------------
NODE_COLUMNS: list[Column] = [
    ("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
    ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
    ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1),
]


def node_row(p: _Printer, node: Obj) -> Row:
    status = node.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    states = ["Ready" if ready == "True" else "NotReady" if ready is not None else "Unknown"]
    if node.get("spec", {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    labels = node.get("metadata", {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and k.split("/", 1)[1])
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        _name(node), ",".join(states), ",".join(roles) or "<none>", p.age(node),
        info.get("kubeletVersion", ""), addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>", info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>",
    ]


POD_COLUMNS: list[Column] = [
    ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0),
    ("Restarts", "string", 0), ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1),
    ("Nominated Node", "string", 1), ("Readiness Gates", "string", 1),
]


def pod_status_reason(pod: Obj) -> str:
    """The STATUS column: phase, overridden by container waiting/terminated reasons."""
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase") or "Unknown"
    init_statuses = status.get("initContainerStatuses") or []
    init_total = len(pod.get("spec", {}).get("initContainers") or [])
    for i, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{init_total}"
        return reason
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            reason = (f"Signal:{terminated['signal']}" if terminated.get("signal")
                      else f"ExitCode:{terminated.get('exitCode')}")
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
    if reason == "Completed" and has_running:
        reason = "Running"
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def pod_row(p: _Printer, pod: Obj) -> Row:
    status = pod.get("status", {})
    statuses = status.get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers") or [])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0) or 0) for cs in statuses)
    last_restart = max((
        t for cs in statuses
        if (t := parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")))
    ), default=None)
    restarts_cell = str(restarts)
    if restarts and last_restart is not None:
        restarts_cell += f" ({human_duration((p.now - last_restart).total_seconds())} ago)"
    gates = pod.get("spec", {}).get("readinessGates") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_cell = "<none>" if not gates else (
        f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}")
    return [
        _name(pod), f"{ready}/{total}", pod_status_reason(pod), restarts_cell, p.age(pod),
        status.get("podIP") or "<none>", pod.get("spec", {}).get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>", gates_cell,
    ]


DAEMONSET_COLUMNS: list[Column] = [
    ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0),
    ("Ready", "integer", 0), ("Up-to-date", "integer", 0), ("Available", "integer", 0),
    ("Node Selector", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
    ("Images", "string", 1), ("Selector", "string", 1),
]


def daemonset_row(p: _Printer, ds: Obj) -> Row:
    status, spec = ds.get("status", {}), ds.get("spec", {})
    template = spec.get("template", {}).get("spec", {})
    names, images = _containers(template)
    return [
        _name(ds), status.get("desiredNumberScheduled", 0), status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0), status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0), _selector_from_set(template.get("nodeSelector")),
        p.age(ds), names, images, _label_selector(spec.get("selector")),
    ]


DEPLOYMENT_COLUMNS: list[Column] = [
    ("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "string", 0),
    ("Available", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
    ("Images", "string", 1), ("Selector", "string", 1),
]


def deployment_row(p: _Printer, deploy: Obj) -> Row:
    status, spec = deploy.get("status", {}), deploy.get("spec", {})
    names, images = _containers(spec.get("template", {}).get("spec", {}))
    return [
        _name(deploy), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0), status.get("availableReplicas", 0), p.age(deploy),
        names, images, _label_selector(spec.get("selector")),
    ]


CONFIGMAP_COLUMNS: list[Column] = [("Name", "string", 0), ("Data", "string", 0), ("Age", "string", 0)]


def configmap_row(p: _Printer, cm: Obj) -> Row:
    return [_name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), p.age(cm)]


SERVICE_COLUMNS: list[Column] = [
    ("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
    ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
    ("Selector", "string", 1),
]


def service_row(p: _Printer, svc: Obj) -> Row:
    spec = svc.get("spec", {})
    svc_type = spec.get("type") or "ClusterIP"
    external = list(spec.get("externalIPs") or [])
    if svc_type == "LoadBalancer":
        ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
        external += [i.get("ip") or i.get("hostname") for i in ingress]
        external_cell = ",".join(external) or "<pending>"
    elif svc_type == "ExternalName":
        external_cell = spec.get("externalName") or "<none>"
    else:
        external_cell = ",".join(external) or "<none>"
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol", "TCP")
        node_port = port.get("nodePort")
        ports.append(f"{port.get('port')}:{node_port}/{protocol}" if node_port
                     else f"{port.get('port')}/{protocol}")
    return [
        _name(svc), svc_type, spec.get("clusterIP") or "<none>", external_cell,
        ",".join(ports) or "<none>", p.age(svc), _selector_from_set(spec.get("selector")),
    ]


ENDPOINTS_COLUMNS: list[Column] = [("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)]


def endpoints_row(p: _Printer, ep: Obj) -> Row:
    pairs = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for address in subset.get("addresses") or []:
            for port in ports:
                ip = address.get("ip", "")
                pairs.append(f"{ip}:{port['port']}" if "port" in port else ip)
    cell = ",".join(pairs[:3]) or "<none>"
    if len(pairs) > 3:
        cell += f" + {len(pairs) - 3} more..."
    return [_name(ep), cell, p.age(ep)]


EVENT_COLUMNS: list[Column] = [
    ("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
    ("Object", "string", 0), ("Subobject", "string", 1), ("Source", "string", 1),
    ("Message", "string", 0), ("First Seen", "string", 1), ("Count", "string", 1),
    ("Name", "string", 1),
]


def event_row(p: _Printer, ev: Obj) -> Row:
    first = ev.get("firstTimestamp") or ev.get("eventTime") or ev.get("metadata", {}).get(
        "creationTimestamp")
    last = ev.get("lastTimestamp") or ev.get("eventTime") or first
    count = int(ev.get("count") or 1)
    last_seen = p.since(last)
    if count > 1:
        last_seen = f"{last_seen} (x{count} over {p.since(first)})"
    involved = ev.get("involvedObject") or {}
    source = ev.get("source") or {}
    source_cell = ", ".join(x for x in (source.get("component"), source.get("host")) if x) or (
        ev.get("reportingComponent") or "")
    return [
        last_seen, ev.get("type", ""), ev.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        involved.get("fieldPath", ""), source_cell, str(ev.get("message", "")).strip(),
        p.since(first), count, _name(ev),
    ]


NAMESPACE_COLUMNS: list[Column] = [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)]


def namespace_row(p: _Printer, ns: Obj) -> Row:
    return [_name(ns), ns.get("status", {}).get("phase", "Active"), p.age(ns)]


DEFAULT_COLUMNS: list[Column] = [("Name", "string", 0), ("Age", "string", 0)]


def default_row(p: _Printer, obj: Obj) -> Row:
    return [_name(obj), p.age(obj)]


PRINTERS: dict[str, tuple[list[Column], Callable[[_Printer, Obj], Row]]] = {
    "nodes": (NODE_COLUMNS, node_row),
    "pods": (POD_COLUMNS, pod_row),
    "daemonsets": (DAEMONSET_COLUMNS, daemonset_row),
    "deployments": (DEPLOYMENT_COLUMNS, deployment_row),
    "configmaps": (CONFIGMAP_COLUMNS, configmap_row),
    "services": (SERVICE_COLUMNS, service_row),
    "endpoints": (ENDPOINTS_COLUMNS, endpoints_row),
    "events": (EVENT_COLUMNS, event_row),
    "namespaces": (NAMESPACE_COLUMNS, namespace_row),
}


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata", {})}


def table(
    plural: str, objs: list[Obj], *, resource_version: str = "", include_object: str = "Metadata",
    now: datetime.datetime | None = None,
) -> Obj:
    """A meta.k8s.io/v1 Table; includeObject is None | Metadata (the default) | Object."""
    columns, row = PRINTERS.get(plural, (DEFAULT_COLUMNS, default_row))
    printer = _Printer(now or datetime.datetime.now(datetime.UTC))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": name, "type": kind, "format": "name" if name == "Name" else "",
             "description": name, "priority": priority}
            for name, kind, priority in columns
        ],
        "rows": [{"cells": row(printer, obj), "object": _row_object(obj, include_object)}
                 for obj in objs],
    }
