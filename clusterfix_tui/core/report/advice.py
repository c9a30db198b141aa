"""What to do next about what still fails: the runbook's own advice, keyed by step."""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core.model import SEVERITY_ORDER

# The runbook's own advice (shared/seed/fix_cluster_communication.md), keyed by step.
_STEP_ADVICE = {
    "iptables": [
        "Run the iptables step: `clusterfix-tui fix --step iptables`.",
        "If kube-proxy still cannot program rules, restore the earlier iptables alternative "
        "(`clusterfix-tui rollback --journal JOURNAL --step iptables`) and check which backend "
        "kube-proxy uses.",
    ],
    "cni_bridge": [
        "Run the CNI bridge step: `clusterfix-tui fix --step cni_bridge`.",
        "If route corruption persists: remove the stale flannel.1 interface and restart flannel on "
        "the node, or reboot the node (risk: pods on that node lose networking meanwhile).",
    ],
    "pods": [
        "Restart the DaemonSet: `kubectl -n kube-system rollout restart daemonset kube-flannel-ds` "
        "(or kube-proxy); risk: a short loss of pod networking on every node.",
        "Temporary workaround only: switch the readiness/startup probe to an exec check on "
        "127.0.0.1 so kubelet marks the pod Ready. It hides the network problem; revert it once "
        "validation passes.",
    ],
    "worker_kubeconfig": [
        "Run the worker kubeconfig step: `clusterfix-tui fix --step worker_kubeconfig`.",
    ],
    "host_network": [
        "Run the host networking step: `clusterfix-tui fix --step host_network`.",
    ],
}


# Per finding code: the narrow fix the step applies by default, and the opt-in beside it.
_CODE_ADVICE = {
    "FIREWALL_REJECT": [
        "Default (narrow): the host_network step inserts ACCEPT rules for exactly the cluster "
        "flows the rule drops (named in the evidence), ahead of it; the rule stays. Opt-in "
        "alternative: delete the rule (`--opt-in` its delete action), which opens everything it "
        "blocked.",
    ],
    "FIREWALL_POLICY_DROP": [
        "Default (narrow): ACCEPT rules for exactly the cluster flows the DROP policy drops; the "
        "policy stays DROP. Opt-in alternative: set the chain's policy to ACCEPT (the host "
        "firewall's default-deny is gone).",
    ],
    "FORWARD_DROP": [
        "Default (narrow): ACCEPT the pod network (source and destination) at the top of FORWARD "
        "(DOCKER-USER on docker hosts); the DROP policy stays. Opt-in alternative: FORWARD policy "
        "ACCEPT (removes docker's isolation; dockerd sets DROP again on restart).",
    ],
    "VXLAN_UNDERLAY_BLOCKED": [
        "Open flannel's VXLAN port (udp/8472 unless net-conf.json says otherwise) between the "
        "nodes: on the node whose firewall drops it (the host_network step's narrow ACCEPT), or "
        "in the cloud security group / network ACL when no node drops it.",
    ],
    "WORKER_KUBECONFIG_BROKEN": [
        "The worker's kubeconfig gets the cluster's own API address (the node's kubelet.conf), "
        "never the workstation's, and only after the node shows the old one fails and the new one "
        "answers; copying admin.conf is an opt-in (credential sprawl).",
    ],
    "KUBE_PROXY_SHADOWED": [
        "Default (narrow): the iptables step puts kube-proxy's own jump to KUBE-SERVICES right "
        "before the rule that takes Service traffic past it; the rule stays for everything else. "
        "Opt-in alternative: delete that rule. Restarting kube-proxy does not help (it never "
        "moves its jump).",
    ],
    "KUBE_PROXY_INCOMPATIBLE_CHAIN": [
        "For a version skew: align the host's iptables with kube-proxy's (upgrade the host "
        "package or use a matching kube-proxy image); do not switch iptables backends.",
    ],
}


_PORT_FORWARD = (
    "Temporary access while node networking is broken: `kubectl port-forward pod/<pod-name> "
    "8096:8096` reaches a pod directly."
)


_REBOOT = "Last resort: reboot the affected node(s) (running pods restart)."


def _advice(step: str | None, name: str = "", detail: str = "") -> list[str]:
    out = list(_STEP_ADVICE.get(step or "", [])) + list(_CODE_ADVICE.get(name, []))
    low = f"{name} {detail}".lower()
    if any(k in low for k in ("nodeport", "pod-to-pod", "service", "no route")):
        out.append(_PORT_FORWARD)
    if "no route to host" in low and not any("exec check" in a for a in out):
        out.append(_STEP_ADVICE["pods"][1])
    if "ready" in low and "node" in low:
        out.append(_REBOOT)
    if not out:
        out.append("Re-run `clusterfix-tui diagnose` and read the evidence; " + _REBOOT[0].lower()
                   + _REBOOT[1:])
    return out


def _still_failing(
    findings: dict[str, list[dict[str, Any]]],
    validation: dict[str, list[dict[str, Any]] | None],
    steps: list[dict[str, Any]],
    after_diagnosed: bool,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last_val = validation["after"] if validation["after"] is not None else validation["before"]
    for r in last_val or ():
        if not r["passed"]:
            out.append({"kind": "check", "what": r["name"], "target": r["target"],
                        "detail": r["detail"], "fix_step": r["fix_step"],
                        "next_actions": _advice(r["fix_step"], r["name"], r["detail"])})
    if after_diagnosed:
        remaining = findings["after"]
    elif validation["after"] is None:
        # no second diagnosis: a finding stands unless its step changed something
        changed = {e["step"] for e in steps if e["status"] == "changed" and e["kind"] == "repair"}
        remaining = [f for f in findings["before"] if f["step"] not in changed]
    else:
        remaining = []
    for f in sorted(remaining, key=lambda f: SEVERITY_ORDER.get(f["severity"], 9)):
        if f["severity"] == "info":
            continue
        out.append({"kind": "finding", "what": f["code"], "target": f["node"],
                    "detail": f["title"], "fix_step": f["step"],
                    "next_actions": _advice(f["step"], f["code"], f["title"])})
    for e in steps:
        if e["status"] in ("failed", "partial", "interrupted"):
            out.append({"kind": "step", "what": e["step"], "target": "",
                        "detail": f"step {e['status']}",
                        "fix_step": e["step"],
                        "next_actions": [_step_failed_advice(e)]})
    return out


def _step_failed_advice(e: dict[str, Any]) -> str:
    rb = f"`clusterfix-tui rollback --journal JOURNAL --step {e['step']}`"
    if e["status"] == "interrupted":
        return ("Check the node(s) of the INTERRUPTED command by hand (it may or may not have "
                f"completed), then roll back what ran with {rb} or re-run the step.")
    return (f"Read the failed command's output above; roll back what ran with {rb} or re-run "
            "the step once the cause is fixed.")
