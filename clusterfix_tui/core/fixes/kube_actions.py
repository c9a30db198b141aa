"""Kubernetes pod actions shared by the steps: which pod of a component runs on a node, and the
API actions that delete a pod or restart a DaemonSet (each with its precondition)."""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core.fixes import preconditions as _pre
from clusterfix_tui.core.fixes.step import FixAction, q

KUBE_PROXY = ("kube-system", "kube-proxy")  # (namespace, daemonset)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _pod_fields(pod: Any) -> tuple[str | None, str | None, str | None]:
    """(namespace, name, node) of a pod given as a k8s JSON dict or a snapshot object."""
    meta = _get(pod, "metadata")
    if isinstance(meta, dict):
        spec = _get(pod, "spec") or {}
        return meta.get("namespace"), meta.get("name"), spec.get("nodeName")
    return _get(pod, "namespace"), _get(pod, "name"), _get(pod, "node") or _get(pod, "node_name")


def component_pods(diagnosis: Any, component: str) -> list[Any]:
    """Pods of "kube_proxy" or "flannel" from the snapshot, whatever its container shape."""
    snap = getattr(diagnosis, "snapshot", None)
    if snap is None:
        return []
    for attr in (f"{component}_pods", f"{component.replace('_', '')}_pods"):
        v = _get(snap, attr)
        if v:
            if isinstance(v, dict):
                out: list[Any] = []
                for item in v.values():
                    out.extend(item if isinstance(item, (list, tuple)) else [item])
                return out
            return list(v)
    pods = _get(snap, "pods") or []
    key = "kube-proxy" if component == "kube_proxy" else "flannel"
    return [p for p in pods if key in (_pod_fields(p)[1] or "")]


# node -> (namespace, name) of a component's first pod there, per pod source (the snapshot's
# container): built once, not one scan of every pod per node asked about (quadratic in a plan).
# Keyed by the source's id; the entry holds the source itself so the id cannot be reused.
_POD_INDEX: dict[tuple[int, int, str], tuple[Any, dict[Any, tuple[str, str]]]] = {}
_POD_INDEX_MAX = 8


def _pod_source(diagnosis: Any, component: str) -> Any:
    snap = getattr(diagnosis, "snapshot", None)
    if snap is None:
        return None
    for attr in (f"{component}_pods", f"{component.replace('_', '')}_pods"):
        v = _get(snap, attr)
        if v:
            return v
    return _get(snap, "pods") or None


def node_pods_index(diagnosis: Any, component: str) -> dict[Any, tuple[str, str]]:
    """{node: (namespace, name)} of the component's pods, the first one per node (as a scan in
    component_pods() order finds it)."""
    src = _pod_source(diagnosis, component)
    if src is None:
        return {}
    size = len(src) if hasattr(src, "__len__") else -1
    key = (id(src), size, component)
    hit = _POD_INDEX.get(key)
    if hit is not None and hit[0] is src:
        return hit[1]
    idx: dict[Any, tuple[str, str]] = {}
    for pod in component_pods(diagnosis, component):
        ns, name, pnode = _pod_fields(pod)
        if name and pnode not in idx:
            idx[pnode] = (ns or "kube-system", name)
    if len(_POD_INDEX) >= _POD_INDEX_MAX:
        _POD_INDEX.pop(next(iter(_POD_INDEX)))
    _POD_INDEX[key] = (src, idx)
    return idx


def node_pod(diagnosis: Any, component: str, node: str) -> tuple[str, str] | None:
    """(namespace, name) of the component's pod on `node`, or None."""
    return node_pods_index(diagnosis, component).get(node)


def kube_proxy_pod(diagnosis: Any, node: str) -> tuple[str, str] | None:
    return node_pod(diagnosis, "kube_proxy", node)


def flannel_pod(diagnosis: Any, node: str) -> tuple[str, str] | None:
    return node_pod(diagnosis, "flannel", node)


def delete_pod_action(
    id_: str, node: str, namespace: str, name: str, *, why: str,
    finding_codes: tuple[str, ...] = (), risk: str = "",
) -> FixAction:
    return FixAction(
        id=id_, target=node, kind="api",
        command=f"kubectl -n {q(namespace)} delete pod {q(name)}",
        api={"verb": "delete_pod", "namespace": namespace, "name": name},
        why=why, finding_codes=finding_codes,
        risk=risk or "the pod restarts; its DaemonSet recreates it on this node within seconds",
        rollback_note="a restarted pod is not rolled back: the DaemonSet recreates it",
        change={"what": f"pod {namespace}/{name}", "before": "running", "after": "recreated"},
        precondition=_pre.pod_uid(namespace, name),
    )


def restart_daemonset_action(
    id_: str, namespace: str, name: str, *, why: str, finding_codes: tuple[str, ...] = (),
    risk: str = "",
) -> FixAction:
    from clusterfix_tui.core.model import CLUSTER as _C

    return FixAction(
        id=id_, target=_C, kind="api",
        command=f"kubectl -n {q(namespace)} rollout restart daemonset {q(name)}",
        api={"verb": "restart_daemonset", "namespace": namespace, "name": name},
        why=why, finding_codes=finding_codes,
        risk=risk or "every pod of the DaemonSet restarts, node by node",
        rollback_note="a rollout restart is not rolled back (it only restarts the same spec)",
        change={"what": f"daemonset {namespace}/{name}", "before": "running",
                "after": "restarted"},
        precondition=_pre.daemonset_exists(namespace, name),
    )
