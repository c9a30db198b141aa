"""validate_cluster_communication: is the cluster's networking working now?

Checks (each failure names the step that most likely fixes it):
  node-ready          every node Ready                                   -> cni_bridge / host_network
  kube-proxy-pod      the pods of the networking DaemonSets the cluster runs, Running and
  flannel-pod         Ready on every node (kube-proxy, flannel, and cni-pod for calico,
  cni-pod             cilium, kube-router; found by what they run, pods by owner; static
                      kube-proxy by its mirror pods; nothing for what a distribution embeds,
                      e.g. k3s's flannel and kube-proxy)                 -> pods
  cluster-dns         kube-system/kube-dns has ready endpoints (the API's EndpointSlices, else
                      Endpoints); "no cluster DNS found" passes (nothing to serve)  -> pods
  nodeport            every NodePort service answers on the node IPs     -> iptables
                      (real TCP/HTTP from the workstation through a Prober, in parallel under
                      one deadline; one port per service; every node for the services the user
                      named (`focus`), up to `sample` nodes for the others, and the scope says
                      so; externalTrafficPolicy: Local services only on nodes with endpoints;
                      when nothing answers the workstation but a node reaches them, the
                      workstation is said to be cut off from NodePorts, once, and the probes
                      run from that node over its shell)
  pod-to-pod          from each node: `ip route get` and a TCP connect to a pod on another node
                                                                         -> cni_bridge
  worker-kubectl      kubectl lists nodes on each worker that has kubectl (its own Node only,
                      one request: `kubectl get --raw /api/v1/nodes?fieldSelector=metadata.name=
                      NODE`: the same kubeconfig, credentials and RBAC as `kubectl get nodes`,
                      not every Node object on every worker, which at N workers is N^2 objects
                      from the API server, and no API discovery retried against a dead address)
                                                                         -> worker_kubeconfig
The core does no I/O of its own: the API and the nodes go through ClusterAPI / NodeShell, and
the workstation's TCP/HTTP through a `Prober` (a stdlib one is in commands/validate.py).
"""

from __future__ import annotations

import concurrent.futures
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from clusterfix_tui.core.facts import kubectl_get
from clusterfix_tui.core.model import CLUSTER, CheckResult
from clusterfix_tui.core.ports import ClusterAPI, Prober, ShellFactory
from clusterfix_tui.core.snapshot import ClusterSnapshot

NODEPORT_SAMPLE = 8  # nodes probed per service the user did not name
NODEPORT_DEADLINE = 20.0  # seconds for every NodePort probe together
NODEPORT_WORKERS = 32
NODE_BATCH = 48  # probes run at once from one node's shell
NODE_WORKERS = 32  # nodes checked at once over their shells (as many as diagnose reads)
NODE_DEADLINE = 25.0  # seconds for every pod-to-pod and worker kubectl check together

COMPONENTS = {
    "kube-proxy-pod": ("k8s-app=kube-proxy", "kube-proxy"),
    "flannel-pod": ("app=flannel", "flannel"),
}
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")




# the cluster's own networking components, as DaemonSets run them, and the check that says so
_COMPONENT_CHECKS = (("kube-proxy", "kube-proxy-pod"), ("flannel", "flannel-pod"),
                     ("calico", "cni-pod"), ("cilium", "cni-pod"), ("kube-router", "cni-pod"))


def _key_pod_sets(api: ClusterAPI, all_pods: list[dict[str, Any]]
                  ) -> list[tuple[str, str, list[dict[str, Any]], bool]]:
    """(check name, label, pods, every node must run one) for the networking components this
    cluster really runs: kube-proxy and the CNI's DaemonSets found by what they run (in any
    namespace, their pods by owner), static kube-proxy mirror pods; nothing for a component the
    cluster does not have (k3s embeds flannel and kube-proxy; cilium can replace kube-proxy).
    When the API lists no DaemonSets at all, the kubeadm labels are the fallback."""
    from clusterfix_tui.core.shape import classify_daemonset, is_mirror_pod

    try:
        daemonsets = list(api.list_daemonsets(None) or [])
    except Exception:  # noqa: BLE001 - an API that cannot list them: the label fallback
        daemonsets = []
    if not daemonsets:
        out = []
        for check, (selector, label) in COMPONENTS.items():
            key, _, value = selector.partition("=")
            pods = [p for p in all_pods
                    if ((p.get("metadata") or {}).get("labels") or {}).get(key) == value]
            out.append((check, label, pods, True))
        return out

    def owned_by(pod: dict[str, Any], ds: dict[str, Any]) -> bool:
        meta, dmeta = pod.get("metadata") or {}, ds.get("metadata") or {}
        if meta.get("namespace") != dmeta.get("namespace"):
            return False
        for o in meta.get("ownerReferences") or ():
            if not isinstance(o, dict) or o.get("kind") != "DaemonSet":
                continue
            if o.get("uid") and dmeta.get("uid"):
                if o["uid"] == dmeta["uid"]:
                    return True
            elif o.get("name") == dmeta.get("name"):
                return True
        return False

    out = []
    for ds in daemonsets:
        comps = classify_daemonset(ds)
        hit = next(((c, check) for c, check in _COMPONENT_CHECKS if c in comps), None)
        if hit is None:
            continue
        pods = [p for p in all_pods if owned_by(p, ds)]
        tpl = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
        every = not tpl.get("nodeSelector") and not tpl.get("affinity")
        meta = ds.get("metadata") or {}
        out.append((hit[1], f"{meta.get('namespace')}/{meta.get('name')}", pods, every))
    if not any(check == "kube-proxy-pod" for check, *_ in out):
        mirrors = [p for p in all_pods if is_mirror_pod(p.get("metadata") or {})
                   and str((p.get("metadata") or {}).get("name", "")).startswith("kube-proxy")]
        if mirrors:  # a static kube-proxy (kubelet manifest): its mirror pods say how it runs
            out.append(("kube-proxy-pod", "kube-proxy (static)", mirrors, False))
    return out


def _cluster_dns(api: ClusterAPI, all_pods: list[dict[str, Any]]) -> CheckResult | None:
    """One line: "cluster DNS: kube-dns has N ready endpoints", or why not. None when the API
    has no DNS reads (a test double, an older recording)."""
    from clusterfix_tui.core.dns import read_dns
    from clusterfix_tui.core.snapshot import pod_info

    try:
        pods = [pod_info(p) for p in all_pods
                if isinstance(p, dict) and (p.get("metadata") or {}).get("namespace")
                == "kube-system"]
        dns = read_dns(api, pods)
    except Exception as exc:  # noqa: BLE001 - validation reports, never raises
        return CheckResult("cluster-dns", CLUSTER, False, f"cluster DNS: not read: {exc}", None)
    if dns is None:
        return None
    if not dns.service_read or (dns.service_found and dns.serving is None):
        return CheckResult("cluster-dns", CLUSTER, False, dns.summary(), None)
    if dns.serving is False:
        return CheckResult("cluster-dns", CLUSTER, False, dns.summary(), "pods")
    if not dns.service_found and dns.found:  # DNS pods without kube-system/kube-dns (RKE2...)
        ok = bool(dns.pods) and all(p.phase == "Running" and p.ready for p in dns.pods)
        return CheckResult("cluster-dns", CLUSTER, ok, dns.summary(), None if ok else "pods")
    return CheckResult("cluster-dns", CLUSTER, True, dns.summary())


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
    focus: Iterable[str] = (),
    sample: int = NODEPORT_SAMPLE,
    deadline: float = NODEPORT_DEADLINE,
    node_deadline: float = NODE_DEADLINE,
) -> list[CheckResult]:
    t_start = time.monotonic()
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
    for check, label, pods, every_node in _key_pod_sets(api, all_pods):
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            by_node.setdefault(str((p.get("spec") or {}).get("nodeName") or ""), []).append(p)
        for name in names:
            mine = by_node.get(name, [])
            if not mine and not every_node:
                continue  # a DaemonSet with a node selector: not every node runs one
            good = [p for p in mine if _pod_ok(p)[0]]
            if good:
                emit(CheckResult(check, name, True, f"{good[0]['metadata']['name']} Running, Ready"))
            elif mine:
                words = "; ".join(f"{p['metadata']['name']}: {_pod_ok(p)[1]}" for p in mine)
                emit(CheckResult(check, name, False, words, "pods"))
            else:
                emit(CheckResult(check, name, False, f"no {label} pod on this node", "pods"))

    # cluster DNS: does kube-dns have ready endpoints (core/dns.py)
    # (a cluster without nodes has nothing to validate: no line, as for every other check)
    dns_result = _cluster_dns(api, all_pods) if names else None
    if dns_result is not None:
        emit(dns_result)

    # 4. pod-to-pod across nodes and 5. worker kubectl, over each node's shell: started before
    # the NodePort probes and run alongside them (and the two checks of a node alongside each
    # other), each on its own channel; their results are emitted after the NodePorts', in the
    # same order as when they ran one after the other
    by_name = {n["metadata"]["name"]: n for n in nodes}
    targets = _pod_targets(all_pods, names)

    def pod_check(name: str) -> list[CheckResult]:
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
        return out

    def kubectl_check(name: str) -> list[CheckResult]:
        if _is_control_plane(by_name[name]):
            return []
        try:
            shell = shells(name, ips.get(name))
        except Exception:  # noqa: BLE001 - pod_check reports the missing shell
            return []
        # its own Node in one request, as the facts ask (core.facts.kubectl_get): no API
        # discovery first, which against a dead API address is retried, each try its timeout
        r = shell.run("command -v kubectl >/dev/null 2>&1 || exit 127; "
                      f"kubectl {kubectl_get(name)} --request-timeout=5s >/dev/null", timeout=15)
        if r.exit_code == 127:
            return []
        return [CheckResult(
            "worker-kubectl", name, r.ok,
            "kubectl get nodes works" if r.ok else
            f"kubectl get nodes failed: {(r.stderr or r.error or '').strip()[-300:]}",
            None if r.ok else "worker_kubeconfig")]

    reached = [n for n in names if n not in skip]
    workers = min(NODE_WORKERS, 2 * len(reached) or 1)
    t_nodes = t_start + node_deadline
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                               thread_name_prefix="cfx-validate-node")
    try:
        futs = [(n, ex.submit(pod_check, n), ex.submit(kubectl_check, n)) for n in reached]

        # 3. NodePort services from the workstation
        try:
            services = api.list_services()
        except Exception as exc:  # noqa: BLE001
            services = []
            emit(CheckResult("nodeport", CLUSTER, False, f"cannot list services: {exc}", None))
        if services:
            _nodeports(api, shells, services, names, ips, skip, emit, prober=prober, timeout=timeout,
                       focus=set(focus), sample=sample, deadline=deadline)

        for name in names:
            if name in skip:
                emit(CheckResult("node-shell", name, False, "not reached over SSH in this session: "
                                 "pod-to-pod and worker kubectl were not checked on it", None))
        # every node check is bounded by one deadline: what has not answered by then is said
        # so (never waited for); the command goes on under its own timeout
        concurrent.futures.wait([f for _, *fs in futs for f in fs],
                                timeout=max(0.0, t_nodes - time.monotonic()))
        for name, pod_f, kubectl_f in futs:
            for check, f in (("pod-to-pod", pod_f), ("worker-kubectl", kubectl_f)):
                if f.done() and not f.cancelled() and f.exception() is None:
                    for r in f.result():
                        emit(r)
                elif check == "pod-to-pod" or not _is_control_plane(by_name[name]):
                    why = (f"failed: {f.exception()!r}" if f.done() and not f.cancelled()
                           and f.exception() is not None else
                           f"not checked: the {node_deadline:g}s deadline of the node checks "
                           "passed")
                    emit(CheckResult(check, name, False, why, None))
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
    return results


def _nodeport_services(services: list[dict[str, Any]]) -> list[tuple[str, int, bool]]:
    """(ns/name, its first TCP nodePort, externalTrafficPolicy is Local) of NodePort services."""
    out = []
    for s in services:
        spec = s.get("spec") or {}
        if spec.get("type") not in ("NodePort", "LoadBalancer"):
            continue
        port = next((int(p["nodePort"]) for p in spec.get("ports") or ()
                     if p.get("nodePort") and p.get("protocol", "TCP") == "TCP"), None)
        if port is None:
            continue
        meta = s.get("metadata") or {}
        svc = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        out.append((svc, port, spec.get("externalTrafficPolicy") == "Local"))
    return out


def _endpoint_nodes(endpoints: list[dict[str, Any]]) -> dict[str, set[str]]:
    """ns/name -> the nodes holding a ready endpoint of the service."""
    out: dict[str, set[str]] = {}
    for ep in endpoints:
        meta = ep.get("metadata") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        for sub in ep.get("subsets") or ():
            for a in sub.get("addresses") or ():
                if a.get("nodeName"):
                    out.setdefault(key, set()).add(a["nodeName"])
    return out


def _sample(names: list[str], k: int, salt: str) -> list[str]:
    """k of `names`, evenly spread, starting at a place that depends on the service (so that
    the services together cover every node); all of them when there are k or fewer."""
    if k <= 0 or len(names) <= k:
        return list(names)
    start = zlib.crc32(salt.encode()) % len(names)
    return [names[(start + i * len(names) // k) % len(names)] for i in range(k)]


def _nodeports(api: Any, shells: Any, services: list[dict[str, Any]], names: list[str],
               ips: dict[str, str | None], skip: set[str], emit: Callable[[CheckResult], None],
               *, prober: Prober | None, timeout: float, focus: set[str], sample: int,
               deadline: float) -> None:
    svcs = _nodeport_services(services)
    if not svcs:
        return
    if prober is None:
        emit(CheckResult("nodeport", CLUSTER, False, "no prober: NodePorts not checked", None))
        return
    t_end = time.monotonic() + deadline
    local_nodes: dict[str, set[str]] = {}
    if any(local for _, _, local in svcs):
        try:
            local_nodes = _endpoint_nodes(list(api.list_endpoints()))
        except Exception as exc:  # noqa: BLE001
            emit(CheckResult("nodeport", CLUSTER, False, f"cannot list endpoints: {exc}", None))
    with_ip = [n for n in names if ips.get(n)]
    jobs: list[tuple[str, int, str, str]] = []
    sampled = not_local = 0
    no_endpoints: list[str] = []
    for svc, port, local in svcs:
        cands = with_ip
        if local:
            # externalTrafficPolicy: Local: only nodes with an endpoint answer, by design
            have = local_nodes.get(svc, set())
            cands = [n for n in with_ip if n in have]
            not_local += len(with_ip) - len(cands)
            if not cands:
                no_endpoints.append(svc)
                continue
        named = svc in focus or svc.split("/", 1)[-1] in focus
        chosen = cands if named else _sample(cands, sample, svc)
        sampled += len(cands) - len(chosen)
        jobs.extend((svc, port, n, str(ips[n])) for n in chosen)
    words = [f"{len(jobs)} NodePort probes ({len(svcs)} services, one port each)"]
    if focus:
        words.append(f"every node for {', '.join(sorted(focus))}")
    if sampled:
        words.append(f"up to {sample} sampled nodes for the other services ({sampled} "
                     "service/node pairs not probed)")
    if not_local:
        words.append(f"{not_local} service/node pairs of externalTrafficPolicy: Local services "
                     "skipped (nodes without endpoints do not answer, by design)")
    if no_endpoints:
        words.append(f"no endpoints at all (Local): {', '.join(no_endpoints[:5])}"
                     + (" ..." if len(no_endpoints) > 5 else ""))
    emit(CheckResult("nodeport-scope", CLUSTER, True, "; ".join(words)))
    if not jobs:
        return

    def from_here(job: tuple[str, int, str, str]) -> CheckResult:
        svc, port, name, ip = job
        status, detail = prober.http(f"http://{ip}:{port}/", timeout)  # type: ignore[union-attr]
        ok = status is not None
        return CheckResult(
            "nodeport", f"{svc}@{name}", ok,
            f"http://{ip}:{port}/ -> HTTP {status}" if ok
            else f"http://{ip}:{port}/ did not answer: {detail}",
            None if ok else "iptables")

    # 1. can this workstation reach NodePorts at all? a few probes on different nodes first
    canary: list[tuple[str, int, str, str]] = []
    for j in jobs:
        if j[2] not in {c[2] for c in canary}:
            canary.append(j)
        if len(canary) == 3:
            break
    canary_ids = {id(j) for j in canary}
    rest = [j for j in jobs if id(j) not in canary_ids]
    # what a node would probe for us if this workstation cannot: the canaries first (their
    # answers there say why), then the others, in NODE_BATCH commands
    node_jobs = canary + rest
    batches = [node_jobs[i:i + NODE_BATCH] for i in range(0, len(node_jobs), NODE_BATCH)]
    reached = [n for n in names if n not in skip]

    def first_batch_from_a_node() -> tuple[str, list[CheckResult]] | None:
        for name in reached:
            try:
                shell = shells(name, ips.get(name))
            except Exception:  # noqa: BLE001
                continue
            there = _from_node(shell, name, batches[0], timeout, t_end)
            if there is not None:
                return name, there
            # no shell that runs: try the next node
        return None

    # Everything that decides the path runs at once under the one deadline: the HTTP canaries;
    # a TCP connect to the same ports (does the path get through at all? then the NodePorts
    # themselves are what fails); and, once every TCP connect has failed (nothing gets through
    # from here, most likely), the first batch of probes from a node, so that the answer from
    # inside the cluster is not started only after the canaries' own timeouts. The rest of the
    # probes from here start as soon as one canary or TCP connect got through (not after the
    # slowest canary). Nothing is decided before its evidence is in: "cut off" still needs
    # every canary to have failed from here.
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(NODEPORT_WORKERS, len(jobs)), thread_name_prefix="cfx-nodeport")
    side = concurrent.futures.ThreadPoolExecutor(
        max_workers=len(canary) + 1, thread_name_prefix="cfx-nodeport-path")
    try:
        canary_f: list[concurrent.futures.Future[Any]] = [
            pool.submit(from_here, j) for j in canary]
        tcp_timeout = min(timeout, 1.0)
        tcp_f: list[concurrent.futures.Future[Any]] = [
            side.submit(prober.tcp, j[3], j[1], tcp_timeout) for j in canary]
        node_f: concurrent.futures.Future[Any] | None = None

        def passed(f: concurrent.futures.Future[Any], tcp: bool) -> bool:
            if not f.done() or f.cancelled() or f.exception() is not None:
                return False
            return bool(f.result()[0]) if tcp else bool(f.result().passed)

        reach = False
        while True:
            if any(passed(f, False) for f in canary_f) or any(passed(f, True) for f in tcp_f):
                reach = True
                break
            if node_f is None and batches and all(f.done() for f in tcp_f):
                node_f = side.submit(first_batch_from_a_node)
            pending: list[concurrent.futures.Future[Any]] = [
                f for f in [*canary_f, *tcp_f] if not f.done()]
            left = t_end - time.monotonic()
            if not pending or left <= 0:
                break
            concurrent.futures.wait(pending, timeout=left,
                                    return_when=concurrent.futures.FIRST_COMPLETED)
        if reach:
            rest_f = [pool.submit(from_here, j) for j in rest]
            concurrent.futures.wait(canary_f + rest_f,
                                    timeout=max(0.0, t_end - time.monotonic()))
            got = {id(j): (f.result() if f.done() and not f.cancelled()
                           and f.exception() is None else _late(j, deadline))
                   for j, f in zip(canary + rest, canary_f + rest_f, strict=True)}
            for j in jobs:
                emit(got[id(j)])
            return
        # 2. nothing answered here: ask a node (its shell) whether the same NodePorts answer
        if node_f is None:
            node_f = side.submit(first_batch_from_a_node)
        concurrent.futures.wait([node_f], timeout=max(0.0, t_end - time.monotonic() + 2.0))
        first = (node_f.result() if node_f.done() and not node_f.cancelled()
                 and node_f.exception() is None else None)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        side.shutdown(wait=False, cancel_futures=True)
    if first is None:
        # no node's shell could run them: every probe from here after all, as it answers
        done = {id(j): f.result() if f.done() and not f.cancelled() and f.exception() is None
                else _late(j, deadline) for j, f in zip(canary, canary_f, strict=True)}
        done.update({id(j): r for j, r in zip(rest, _run_parallel(from_here, rest, t_end,
                                                                  deadline), strict=True)})
        for j in jobs:
            emit(done[id(j)])
        return
    via, there = first
    answered = sum(r.passed for r in there[:len(canary)])
    if answered:
        emit(CheckResult(
            "nodeport-path", CLUSTER, True,
            f"this workstation cannot reach NodePorts: none of {len(canary)} answered "
            f"from here, {answered} answered from {via}; every NodePort probe runs from "
            f"{via} instead (a firewall between here and the nodes, not a cluster fault)"))
    else:
        emit(CheckResult(
            "nodeport-path", CLUSTER, True,
            f"no NodePort answered from this workstation nor from {via}; the probes run "
            f"from {via} (inside the cluster)"))
    shell = shells(via, ips.get(via))
    out: dict[int, CheckResult] = {id(j): r for j, r in zip(batches[0], there, strict=True)}
    for batch in batches[1:]:
        got_b = _from_node(shell, via, batch, timeout, t_end) if time.monotonic() < t_end \
            else None
        out.update({id(j): r for j, r in zip(
            batch, got_b if got_b is not None else [_late(j, deadline) for j in batch],
            strict=True)})
    for j in jobs:
        emit(out[id(j)])


def _late(job: tuple[str, int, str, str], deadline: float) -> CheckResult:
    svc, port, name, ip = job
    return CheckResult("nodeport", f"{svc}@{name}", False,
                       f"{ip}:{port} not probed: the {deadline:.0f}s NodePort deadline passed",
                       None)


def _run_parallel(fn: Callable[[Any], CheckResult], jobs: list[Any], t_end: float,
                  deadline: float) -> list[CheckResult]:
    """fn over jobs on NODEPORT_WORKERS threads; what has not finished by t_end is reported as
    not probed (never waited for)."""
    if not jobs:
        return []
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=min(NODEPORT_WORKERS, len(jobs)),
                                               thread_name_prefix="cfx-nodeport")
    futs = [ex.submit(fn, j) for j in jobs]
    concurrent.futures.wait(futs, timeout=max(0.0, t_end - time.monotonic()))
    ex.shutdown(wait=False, cancel_futures=True)
    out = []
    for j, f in zip(jobs, futs, strict=False):
        if f.done() and not f.cancelled() and f.exception() is None:
            out.append(f.result())
        else:
            out.append(_late(j, deadline))
    return out


def _from_node(shell: Any, via: str, jobs: list[tuple[str, int, str, str]], timeout: float,
               t_end: float) -> list[CheckResult] | None:
    """TCP connects to every job's ip:port from one node, all at once; None if the node's shell
    could not run them at all."""
    t = max(1, int(timeout))
    lines = []
    for i, (_, port, _, ip) in enumerate(jobs):
        # the IP and port go to bash as arguments: never into the inner script's text
        lines.append(f"( timeout {t} bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' cfx {_q(ip)} {_q(port)} "
                     f">/dev/null 2>&1; echo \"cfx-np {i} $?\" ) &")
    cmd = "\n".join(lines + ["wait"])
    try:
        r = shell.run(cmd, timeout=max(2.0, min(t + 10.0, t_end - time.monotonic() + 2.0)))
    except Exception:  # noqa: BLE001
        return None
    rcs: dict[int, int] = {}
    for line in (r.stdout or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "cfx-np" and parts[1].isdigit() and parts[2].isdigit():
            rcs[int(parts[1])] = int(parts[2])
    if not rcs:
        return None
    out = []
    for i, (svc, port, name, ip) in enumerate(jobs):
        rc = rcs.get(i)
        ok = rc == 0
        why = ("connected" if ok else "timed out" if rc == 124 else
               "no result" if rc is None else f"refused or unreachable (exit {rc})")
        out.append(CheckResult("nodeport", f"{svc}@{name}", ok, f"{ip}:{port} from {via}: {why}",
                               None if ok else "iptables"))
    return out


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
