"""kubectl on worker nodes (the runbook's fix_worker_kubectl_config.sh)."""

from __future__ import annotations

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF = "https://kubernetes.io/docs/tasks/access-application-cluster/configure-access-multiple-clusters/"
TARGET = "/root/.kube/config"
SOURCES = ("/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf")


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    nodes = snapshot.nodes
    expected = (snapshot.api).get("server")
    for node, f in sorted(facts_by_node.items()):
        info = nodes.get(node)
        if info is not None and info.is_control_plane:
            continue
        rc = f.kubectl_rc
        user_cfg = f.kubeconfigs.get(TARGET)
        has_user_cfg = TARGET in f.kubeconfigs
        if rc == 0:
            continue
        if rc == 127 or rc is None:
            # no kubectl on the node: only a kubeconfig that points elsewhere is worth saying
            if not (has_user_cfg and expected and user_cfg and user_cfg != expected):
                continue
        if not has_user_cfg and not any(p.startswith("/etc/kubernetes/") for p in f.kubeconfigs):
            reason = "missing"
        elif has_user_cfg and expected and user_cfg != expected:
            reason = "wrong-server"
        else:
            reason = "kubectl-fails"
        evidence = []
        if rc not in (None, 127):
            evidence.append(f"kubectl get nodes: exit {rc}"
                            + (f": {f.kubectl_error}" if f.kubectl_error else
                               " (timed out)" if rc == 124 else ""))
        for path, server in sorted(f.kubeconfigs.items()):
            evidence.append(f"{path}: server: {server}")
        if not has_user_cfg:
            evidence.append(f"{TARGET}: missing")
        if expected:
            evidence.append(f"the API server in use: {expected}")
        out.append(Finding(
            code="WORKER_KUBECONFIG_BROKEN", severity="error", node=node,
            title={"missing": "kubectl on this worker has no kubeconfig",
                   "wrong-server": f"kubectl on this worker points at {user_cfg}",
                   "kubectl-fails": "kubectl on this worker cannot reach the API"}[reason],
            evidence=tuple(evidence),
            explanation=("The runbook expects kubectl to work on workers (for its per-node "
                         "checks): ~/.kube/config must exist and point at the live API server."),
            reference=REF, step="worker_kubeconfig",
            data={"reason": reason, "files": dict(f.kubeconfigs), "kubectl_rc": rc,
                  "kubectl_error": f.kubectl_error, "expected_server": expected,
                  "source_candidates": [p for p in SOURCES if p in f.kubeconfigs],
                  "target": TARGET},
        ))
    return out
