"""The pods step's cluster DNS part: delete crash-looping DNS pods so their Deployment recreates them.

Only a DNS pod that crashes (CrashLoopBackOff / Error) and that a Deployment with replicas > 0
owns is deleted, through the same delete-pod action (and uid precondition) the kube-proxy and
flannel restarts use. A pod stuck on its image or spec, one no Deployment recreates, and a
Deployment scaled to 0 are said in notes, never acted on: scaling is the owner's decision.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clusterfix_tui.core.checks.dns import DnsPodData
from clusterfix_tui.core.fixes.kube_actions import delete_pod_action
from clusterfix_tui.core.fixes.step import FixAction, free_action_id
from clusterfix_tui.core.model import Finding

CODE = "DNS_POD_NOT_RUNNING"
FIRST_ID = 10  # action numbers per node: kube-proxy 1, flannel 2, static kube-proxy 3


def plan_actions(step: str, findings: list[Finding], taken: set[str] | None = None
                 ) -> tuple[list[FixAction], list[str]]:
    """(actions, notes) for the DNS_POD_NOT_RUNNING findings among `findings`; `taken`: the ids
    the step's other actions use (a DNS action never shares one)."""
    actions: list[FixAction] = []
    notes: list[str] = []
    taken = set(taken or ())
    seen: set[tuple[str, str, str]] = set()
    for f in sorted((f for f in findings if f.code == CODE), key=lambda f: (f.node, f.title)):
        d = f.data_as(DnsPodData)
        if not d.pod:
            continue
        if not d.restartable:
            notes.append(_why_not(f.node, d))
            continue
        if (f.node, d.namespace, d.pod) in seen:
            continue  # one pod, one delete
        seen.add((f.node, d.namespace, d.pod))
        a = delete_pod_action(
            free_action_id(step, f.node, FIRST_ID, taken), f.node, d.namespace, d.pod,
            why=f"DNS pod {d.namespace}/{d.pod} is {d.reason} ({d.restart_count} restarts): "
                f"delete it so its Deployment {d.deployment} starts a fresh one",
            finding_codes=(CODE,),
            risk=(f"this DNS pod stops; the other replicas of {d.deployment} keep answering, and "
                  "the Deployment recreates it (maybe on another node) within seconds"),
        )
        actions.append(dataclasses.replace(
            a, rollback_note=f"not rolled back: the pod is recreated by its Deployment "
                             f"{d.namespace}/{d.deployment}",
            change={"what": f"pod {d.namespace}/{d.pod}", "before": str(d.reason),
                    "after": f"recreated by its Deployment {d.deployment}"}))
    return actions, notes


def _why_not(node: str, d: Any) -> str:
    if d.deployment is None:
        return (f"{node}: DNS pod {d.namespace}/{d.pod} is {d.reason} but no Deployment owns it: "
                "deleting it would not bring it back, so it is not deleted")
    if not d.replicas:
        return (f"{node}: DNS pod {d.namespace}/{d.pod}: its Deployment {d.deployment} has no "
                "replicas: not deleted")
    return (f"{node}: DNS pod {d.namespace}/{d.pod} is {d.reason}: a new pod would be the same "
            f"(not a crash); not deleted: `kubectl -n {d.namespace} describe pod {d.pod}` says why")
