"""validate_cluster_communication: is the cluster's networking working now?

Checks (each failure names the step that most likely fixes it):
  node-ready          every node Ready                                   -> cni_bridge / host_network
  kube-proxy-pod      a kube-proxy pod Running and Ready on every node   -> pods
  flannel-pod         a flannel pod Running and Ready on every node      -> pods
  nodeport            every NodePort service answers on every node IP    -> iptables
                      (real TCP/HTTP from the workstation, short timeout, through a Prober)
  pod-to-pod          from each node: `ip route get` and a TCP connect to a pod on another node
                                                                         -> cni_bridge
  worker-kubectl      `kubectl get nodes` works on each worker that has kubectl
                                                                         -> worker_kubeconfig
The core does no I/O of its own: the API and the nodes go through ClusterAPI / NodeShell, and
the workstation's TCP/HTTP through a `Prober` (a stdlib one is in commands/validate.py).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable
from typing import Any

from clusterfix_tui.core.model import CLUSTER, CheckResult
from clusterfix_tui.core.ports import ClusterAPI, Prober, ShellFactory
from clusterfix_tui.core.snapshot import ClusterSnapshot

COMPONENTS = {
    "kube-proxy-pod": ("k8s-app=kube-proxy", "kube-proxy"),
    "flannel-pod": ("app=flannel", "flannel"),
}
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")




def _node_ip(node: dict[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or ():
        if a.get("type") == "InternalIP":
            return a.get("address")
    return None


def _ready(obj: dict[str, Any]) -> tuple[bool, str]:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c.get("status") == "True", c.get("message") or c.get("reason") or ""
    return False, "no Ready condition"


def _pod_ok(pod: dict[str, Any]) -> tuple[bool, str]:
    status = pod.get("status") or {}
    phase = status.get("phase", "?")
    ready, _ = _ready(pod)
    reasons = [str(r) for cs in status.get("containerStatuses") or ()
               if (r := ((cs.get("state") or {}).get("waiting") or {}).get("reason"))]
    words = f"{phase}" + (f" ({', '.join(reasons)})" if reasons else "") + \
        ("" if ready else ", not Ready")
    return phase == "Running" and ready and not pod.get("metadata", {}).get(
        "deletionTimestamp"), words


def _is_control_plane(node: dict[str, Any]) -> bool:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return any(k in labels for k in CONTROL_PLANE_LABELS)


def _q(v: Any) -> str:
    import shlex

    return shlex.quote(str(v))


def validate(
    api: ClusterAPI,
    shells: ShellFactory,
    snapshot: ClusterSnapshot | None = None,
    on_check: Callable[[CheckResult], None] | None = None,
    *,
    prober: Prober | None = None,
    skip_nodes: Iterable[str] = (),
    timeout: float = 3.0,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    skip = set(skip_nodes)

    def emit(r: CheckResult) -> None:
        results.append(r)
        if on_check is not None:
            try:
                on_check(r)
            except Exception:  # noqa: BLE001, S110
                pass

    try:
        # a node left out (no SSH) still gets every check that needs no shell on it: Ready, its
        # pods, its NodePorts from here; the shell checks say they could not run
        nodes = list(api.list_nodes())
    except Exception as exc:  # noqa: BLE001
        emit(CheckResult("api", CLUSTER, False, f"cannot list nodes: {exc}", None))
        return results
    names = [n["metadata"]["name"] for n in nodes]
    ips = {n["metadata"]["name"]: _node_ip(n) for n in nodes}

    # 1. nodes Ready
    for n in nodes:
        ok, msg = _ready(n)
        emit(CheckResult("node-ready", n["metadata"]["name"], ok,
                         "Ready" if ok else f"not Ready: {msg}", None if ok else "cni_bridge"))

    # 2. kube-proxy / flannel pods
    all_pods: list[dict[str, Any]] = []
    try:
        all_pods = api.list_pods()
    except Exception as exc:  # noqa: BLE001
        emit(CheckResult("pods", CLUSTER, False, f"cannot list pods: {exc}", None))
    for check, (selector, label) in COMPONENTS.items():
        key, _, value = selector.partition("=")
        pods = [p for p in all_pods
                if ((p.get("metadata") or {}).get("labels") or {}).get(key) == value]
        for name in names:
            mine = [p for p in pods if (p.get("spec") or {}).get("nodeName") == name]
            good = [p for p in mine if _pod_ok(p)[0]]
            if good:
                emit(CheckResult(check, name, True, f"{good[0]['metadata']['name']} Running, Ready"))
            elif mine:
                words = "; ".join(f"{p['metadata']['name']}: {_pod_ok(p)[1]}" for p in mine)
                emit(CheckResult(check, name, False, words, "pods"))
            else:
                emit(CheckResult(check, name, False, f"no {label} pod on this node", "pods"))

    # 3. NodePort services from the workstation
    try:
        services = api.list_services()
    except Exception as exc:  # noqa: BLE001
        services = []
        emit(CheckResult("nodeport", CLUSTER, False, f"cannot list services: {exc}", None))
    nodeports = []
    for s in services:
        if (s.get("spec") or {}).get("type") not in ("NodePort", "LoadBalancer"):
            continue
        for port in (s.get("spec") or {}).get("ports") or ():
            if port.get("nodePort") and port.get("protocol", "TCP") == "TCP":
                svc = f"{s['metadata'].get('namespace', 'default')}/{s['metadata']['name']}"
                nodeports.append((svc, int(port["nodePort"])))
    if nodeports and prober is None:
        emit(CheckResult("nodeport", CLUSTER, False, "no prober: NodePorts not checked", None))
    elif nodeports:
        jobs = [(svc, port, name, ips[name]) for svc, port in nodeports for name in names
                if ips.get(name)]

        def probe(job: tuple[str, int, str, str]) -> CheckResult:
            svc, port, name, ip = job
            status, detail = prober.http(f"http://{ip}:{port}/", timeout)  # type: ignore[union-attr]
            ok = status is not None
            return CheckResult(
                "nodeport", f"{svc}@{name}", ok,
                f"http://{ip}:{port}/ -> HTTP {status}" if ok
                else f"http://{ip}:{port}/ did not answer: {detail}",
                None if ok else "iptables")

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(jobs) or 1)) as ex:
            for r in ex.map(probe, jobs):
                emit(r)

    # 4. pod-to-pod across nodes and 5. worker kubectl, over each node's shell
    targets = _pod_targets(all_pods, names)

    def node_checks(name: str) -> list[CheckResult]:
        out: list[CheckResult] = []
        try:
            shell = shells(name, ips.get(name))
        except Exception as exc:  # noqa: BLE001
            return [CheckResult("pod-to-pod", name, False, f"no shell: {exc}", None)]
        # a ring: node i tries the pod of the next node that has one, so every node is a target
        other = next((t for t in targets if t[0] > name), None) or next(
            (t for t in targets if t[0] != name), None)
        if other is None:
            if len(names) > 1:
                out.append(CheckResult("pod-to-pod", name, False,
                                       "no Running pod with a port on another node to try", None))
        else:
            _, pod, ip, port = other
            # the IP and port go to bash as arguments: never into the script's text
            cmd = (f"ip route get {_q(ip)} && "
                   f"timeout {int(timeout) + 1} bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' cfx "
                   f"{_q(ip)} {_q(port)}")
            r = shell.run(cmd, timeout=timeout + 5)
            route = r.stdout.strip().splitlines()[0] if r.stdout.strip() else ""
            ok = r.ok
            detail = (f"{pod} {ip}:{port} reachable; route: {route}" if ok else
                      f"{pod} {ip}:{port} NOT reachable (exit {r.exit_code}); route: "
                      f"{route or '-'} {r.stderr.strip()[-200:]}")
            # the route is flannel's: the packet is dropped on the way (FORWARD DROP, stale
            # rules), else the route itself is wrong
            step = "iptables" if " dev flannel.1" in route else "cni_bridge"
            out.append(CheckResult("pod-to-pod", f"{name}->{pod}", ok, detail,
                                   None if ok else step))
        node = next(n for n in nodes if n["metadata"]["name"] == name)
        if not _is_control_plane(node):
            r = shell.run("command -v kubectl >/dev/null 2>&1 || exit 127; "
                          "kubectl get nodes --request-timeout=5s -o name", timeout=15)
            if r.exit_code != 127:
                out.append(CheckResult(
                    "worker-kubectl", name, r.ok,
                    "kubectl get nodes works" if r.ok else
                    f"kubectl get nodes failed: {(r.stderr or r.error or '').strip()[-300:]}",
                    None if r.ok else "worker_kubeconfig"))
        return out

    for name in names:
        if name in skip:
            emit(CheckResult("node-shell", name, False, "not reached over SSH in this session: "
                             "pod-to-pod and worker kubectl were not checked on it", None))
    reached = [n for n in names if n not in skip]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(reached) or 1)) as ex:
        for rs in ex.map(node_checks, reached):
            for r in rs:
                emit(r)
    return results


def _pod_targets(pods: list[dict[str, Any]], nodes: list[str]) -> list[tuple[str, str, str, int]]:
    """(node, ns/name, podIP, port) of Running, Ready pods with a container port, not on the host
    network, one per node (application pods preferred over system ones)."""
    best: dict[str, tuple[int, tuple[str, str, str, int]]] = {}
    for p in pods:
        spec = p.get("spec") or {}
        status = p.get("status") or {}
        if spec.get("hostNetwork") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        node = spec.get("nodeName")
        if node not in nodes:
            continue
        port = None
        for c in spec.get("containers") or ():
            for cp in c.get("ports") or ():
                if cp.get("containerPort") and cp.get("protocol", "TCP") == "TCP":
                    port = int(cp["containerPort"])
                    break
            if port:
                break
        if not port:
            continue
        ns = (p.get("metadata") or {}).get("namespace", "default")
        rank = 0 if ns not in ("kube-system", "kube-flannel") else 1
        item = (node, f"{ns}/{p['metadata']['name']}", status["podIP"], port)
        if node not in best or rank < best[node][0]:
            best[node] = (rank, item)
    return [v[1] for _, v in sorted(best.items())]


def failed(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.passed]
