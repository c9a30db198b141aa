"""kubectl on worker nodes (the runbook's fix_worker_kubectl_config.sh).

A worker's kubeconfig is broken when kubectl fails to list nodes ON THAT NODE (or there is none;
the facts ask for the node's own Node in one request: core.facts.kubectl_get).
Which API address it should use comes from the cluster's own view, never from the workstation's
kubeconfig (often a tunnel, a proxy path or a public load balancer the node cannot use): the
node's kubelet.conf (the node is Ready, so kubelet reaches it from there), the other nodes'
kubelet.conf, the kube-public/cluster-info ConfigMap and the `kubernetes` Service endpoints
(`snapshot.cluster_info_server` / the `default/kubernetes` endpoints, when read). The repair step
verifies on the node, right before writing, that the current server fails and the new one answers
(with the node's CA).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF = "https://kubernetes.io/docs/tasks/access-application-cluster/configure-access-multiple-clusters/"
TARGET = "/root/.kube/config"
# finding code -> the facts sections it is decided from
READS: dict[str, tuple[str, ...]] = {"WORKER_KUBECONFIG_BROKEN": ("kubeconfig", "kubectl_get_nodes")}
# facts section -> the only steps whose check and plan read it: no other check, plan or flow
# decision does (tests/test_flow_lean.py holds every reader of it to that). A re-diagnosis made
# only to plan another step may leave it out (core/flow.py): the node's kubectl is the slowest
# fact, and against a dead API address it waits for the node's ARP/TCP timeout (~3 s).
ONLY_FOR: dict[str, tuple[str, ...]] = {"kubectl_get_nodes": ("worker_kubeconfig",)}
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
# the kubelet's own kubeconfig per distribution: kubeadm, k3s, RKE2 (k3s/RKE2 agents reach the API
# through their client-side load balancer, e.g. https://127.0.0.1:6444, which works on that node)
KUBELET_CONFS = (KUBELET_CONF, "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
                 "/var/lib/rancher/rke2/agent/kubelet.kubeconfig")
SOURCES = ("/etc/kubernetes/admin.conf", *KUBELET_CONFS)


def kubelet_server(f: NodeFacts) -> tuple[str | None, str]:
    """(server, path) of the node's kubelet kubeconfig, the first distribution path it has."""
    for p in KUBELET_CONFS:
        v = f.kubeconfigs.get(p)
        if v:
            return v, p
    return None, KUBELET_CONF



@dataclass(frozen=True, kw_only=True)
class KubeconfigData(FindingData, codes=("WORKER_KUBECONFIG_BROKEN",)):
    reason: str = ""  # "missing" | "wrong-server" | "kubectl-fails"
    files: dict[str, Any] = field(default_factory=dict)  # path -> its server: line(s)
    kubectl_rc: int | None = None
    kubectl_error: str | None = None
    expected_server: str | None = None  # the cluster's own API address
    server_candidates: list[dict[str, str]] = field(default_factory=list)  # {"server", "source"}
    source_candidates: list[str] = field(default_factory=list)  # kubeconfigs to copy from
    target: str = ""  # the kubeconfig kubectl reads
    # a control-plane node: judged only when its /root/.kube/config exists (many are run with
    # KUBECONFIG=/etc/kubernetes/admin.conf or as another user: no file there is no fault)
    control_plane: bool = False

def endpoint_url(ep: str) -> str | None:
    """"10.0.0.1:6443" / "fd00::1:6443" / "[fd00::1]:6443" -> an https URL."""
    host, sep, port = ep.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    host = host.strip("[]")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class KubeletServers:
    """Every node's kubelet.conf `server:`, counted once for all nodes: server -> [count, the
    first two nodes holding it]. `others(node)` is what a Counter of every *other* node's
    server gives by most_common() (count first, then first seen), without a scan per node."""

    def __init__(self, facts_by_node: dict[str, NodeFacts]) -> None:
        self.seen: dict[str, list[Any]] = {}
        for i, (n, f) in enumerate(facts_by_node.items()):
            v, _p = kubelet_server(f)
            if not v or "//127.0.0.1:" in v or "//[::1]:" in v:  # a node-local address: not for others
                continue
            e = self.seen.setdefault(v, [0, []])
            e[0] += 1
            if len(e[1]) < 2:
                e[1].append((i, n))

    def others(self, node: str) -> list[str]:
        ranked = []
        for v, (count, firsts) in self.seen.items():
            mine = firsts[0][1] == node
            if mine:
                count -= 1
            if count <= 0:
                continue
            ranked.append((-count, firsts[1][0] if mine else firsts[0][0], v))
        return [v for _, _, v in sorted(ranked)]


def server_candidates(snapshot: Any, facts_by_node: dict[str, NodeFacts], node: str,
                      servers: KubeletServers | None = None) -> list[dict[str, str]]:
    """The API addresses the cluster itself uses, best first: [{"server", "source"}].
    `servers`: KubeletServers(facts_by_node), built once by a caller asking for many nodes."""
    out: list[dict[str, str]] = []

    def add(server: Any, source: str) -> None:
        if isinstance(server, str) and server.startswith("https://") and \
                server not in [c["server"] for c in out]:
            out.append({"server": server, "source": source})

    own = facts_by_node.get(node)
    if own is not None:
        v, path = kubelet_server(own)
        add(v, f"{node}:{path}")
    for server in (servers or KubeletServers(facts_by_node)).others(node):
        add(server, "the kubelet kubeconfig of the other nodes")
    add(getattr(snapshot, "cluster_info_server", None), "kube-public/cluster-info")
    for ep in (getattr(snapshot, "endpoints", {}) or {}).get("default/kubernetes") or ():
        add(endpoint_url(str(ep)), "the kubernetes Service endpoints")
    return out


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    nodes = snapshot.nodes
    servers: KubeletServers | None = None
    for node, f in sorted(facts_by_node.items()):
        info = nodes.get(node)
        cp = bool(info is not None and info.is_control_plane)
        rc = f.kubectl_rc
        user_cfg = f.kubeconfigs.get(TARGET)
        has_user_cfg = TARGET in f.kubeconfigs
        if cp and not has_user_cfg:
            continue  # the control plane's root may well use admin.conf directly
        if rc == 0 or rc == 127 or rc is None:
            continue  # works from the node (whatever the workstation uses), or no kubectl there
        if servers is None:
            servers = KubeletServers(facts_by_node)
        cands = server_candidates(snapshot, facts_by_node, node, servers)
        expected = cands[0]["server"] if cands else None
        if not has_user_cfg and not any(p.startswith("/etc/kubernetes/") for p in f.kubeconfigs):
            reason = "missing"
        elif not has_user_cfg:
            reason = "missing"
        elif user_cfg not in [c["server"] for c in cands] and cands:
            reason = "wrong-server"
        else:
            reason = "kubectl-fails"
        evidence = []
        if rc not in (None, 127):
            evidence.append(f"kubectl on the node (list nodes): exit {rc}"
                            + (f": {f.kubectl_error}" if f.kubectl_error else
                               " (timed out)" if rc == 124 else ""))
        for path, server in sorted(f.kubeconfigs.items()):
            evidence.append(f"{path}: server: {server}")
        if not has_user_cfg:
            evidence.append(f"{TARGET}: missing")
        if expected:
            evidence.append(f"the cluster's own API address: {expected} ({cands[0]['source']})")
        out.append(Finding(
            code="WORKER_KUBECONFIG_BROKEN", severity="error", node=node,
            title={"missing": "kubectl on this worker has no kubeconfig",
                   "wrong-server": f"kubectl on this worker points at {user_cfg}",
                   "kubectl-fails": "kubectl on this worker cannot reach the API"}[reason]
            .replace("this worker", "this control-plane node" if cp else "this worker"),
            evidence=tuple(evidence),
            explanation=("The runbook expects kubectl to work on workers (for its per-node "
                         "checks): ~/.kube/config must exist and point at the live API server."),
            reference=REF, step="worker_kubeconfig",
            data=KubeconfigData(
                reason=reason, files=dict(f.kubeconfigs), kubectl_rc=rc,
                kubectl_error=f.kubectl_error, expected_server=expected, server_candidates=cands,
                source_candidates=[p for p in SOURCES if p in f.kubeconfigs], target=TARGET,
                control_plane=cp),
        ))
    return out
