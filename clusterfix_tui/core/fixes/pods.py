"""fix_remaining_pod_issues: restart crash-looping kube-proxy / flannel pods, wait, report the rest.

One node needs it: delete that node's pod (its DaemonSet recreates it). Several nodes: one
DaemonSet rollout restart (as `kubectl rollout restart` does it). After the actions run,
`after_apply()` waits for the DaemonSets' pods to be Running and Ready on every node (with a
timeout and progress lines) and reports pods still failing with the last lines of their logs.

The runbook's temporary workaround for readiness probes failing with "no route to host" (an exec
probe on 127.0.0.1) is offered only as an explicit opt-in action, never approved by default; it
records the original probe (its rollback puts it back) and the session reverts it by itself once
validation passes. It hides the network problem; it does not fix it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from clusterfix_tui.core.checks.pods import ComponentPodData, ProbeNoRouteData
from clusterfix_tui.core.fixes import engine, preconditions
from clusterfix_tui.core.fixes.engine import FixAction, action_id, opt_in_id, q
from clusterfix_tui.core.fixes.step import free_action_id
from clusterfix_tui.core.model import CLUSTER, Action, Finding, Plan, StepOutcome
from clusterfix_tui.core.shape import scoped_findings, shape_of, sole_control_plane

CRASH_CODES = {"KUBE_PROXY_CRASHLOOP": "kube_proxy", "FLANNEL_CRASHLOOP": "flannel",
               "KUBE_PROXY_NO_RULES": "kube_proxy"}
PROBE_CODE = "PROBE_NO_ROUTE"
NOT_RUNNING = "POD_NOT_RUNNING"
# a pod stuck for a reason its restart does not change: the image cannot be pulled, the container
# cannot be created from its spec, or the scheduler does not place it (Pending with no container
# state). Deleting it gives the same pod back: the plan says what to look at instead.
NO_RESTART_REASONS = {
    "ImagePullBackOff": "its image cannot be pulled (name, tag, registry access or credentials)",
    "ErrImagePull": "its image cannot be pulled (name, tag, registry access or credentials)",
    "InvalidImageName": "its image name is invalid",
    "ErrImageNeverPull": "its image is not on the node and the pull policy is Never",
    "CreateContainerConfigError": "its container spec refers to something missing (a ConfigMap, "
                                  "Secret or key)",
    "CreateContainerError": "the runtime cannot create its container from the spec",
    "Pending": "the scheduler has not placed it (taints, resources, node selector)",
}


def _no_restart_reason(f: Finding) -> str | None:
    if f.code != NOT_RUNNING:
        return None
    return NO_RESTART_REASONS.get(str(f.data_as(ComponentPodData).reason or ""))
DNS_CODE = "DNS_POD_NOT_RUNNING"  # core/fixes/dns.py plans those
CODES = (*CRASH_CODES, NOT_RUNNING, PROBE_CODE, DNS_CODE)
DEFAULT_DS = {"kube_proxy": ("kube-system", "kube-proxy"), "flannel": ("kube-flannel", "kube-flannel-ds")}
LABELS = {"kube_proxy": "k8s-app=kube-proxy", "flannel": "app=flannel"}
WAIT_TIMEOUT = 120.0


def _ds_of(diagnosis: Any, component: str, findings: list[Finding]) -> tuple[str, str]:
    shape = shape_of(diagnosis)
    if shape is not None:  # the DaemonSet that owns the pods (found by image/labels, any namespace)
        ref = shape.kube_proxy_workload if component == "kube_proxy" else (
            shape.flannel.daemonset if shape.flannel is not None else None)
        if ref is not None:
            return ref.namespace, ref.name
    for f in findings:
        d = f.data_as(ComponentPodData)
        if d.namespace and d.daemonset:
            return d.namespace, d.daemonset
    pod = None
    for f in findings:
        pod = engine.node_pod(diagnosis, component, f.node)
        if pod:
            break
    if pod:
        return pod[0], DEFAULT_DS[component][1]
    return DEFAULT_DS[component]


def _component_of(f: Finding) -> str | None:
    return f.data_as(ComponentPodData).component or CRASH_CODES.get(f.code)


def _exec_probe(original: dict[str, Any], port: Any) -> dict[str, Any]:
    check = (f"nc -z 127.0.0.1 {int(port)} 2>/dev/null || "
             f"wget -q -T 2 -O /dev/null http://127.0.0.1:{int(port)}/ 2>/dev/null || "
             f"curl -fsS -m 2 -o /dev/null http://127.0.0.1:{int(port)}/")
    probe: dict[str, Any] = {k: original[k] for k in (
        "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
        "failureThreshold") if k in original}
    probe.update({"exec": {"command": ["/bin/sh", "-c", check]},
                  "httpGet": None, "tcpSocket": None, "grpc": None})
    return probe


def _probe_port(probe: dict[str, Any]) -> Any:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        h = probe.get(handler) or {}
        if h.get("port") is not None:
            return h["port"]
    return None


class PodsStep:
    name = "pods"
    title = "Remaining pod issues (kube-proxy, flannel, probes)"
    runbook_helper = "fix_remaining_pod_issues.sh"

    # pods only through their owner (a DaemonSet, by its UID); mirror pods of static pods are
    # never deleted; embedded components (k3s) have no pods: said, not done
    applies_to = CODES

    def plan(self, diagnosis: Any) -> Plan:
        findings, scope_notes = scoped_findings(diagnosis, engine.findings_for(diagnosis, CODES))
        if not findings:
            plan = engine.nothing_to_do(
                self, "no crash-looping kube-proxy / flannel pods and no probe failures")
            if scope_notes:
                plan = Plan(step=plan.step, title=plan.title, findings=plan.findings,
                            actions=plan.actions, notes=tuple(plan.notes) + tuple(scope_notes))
            return plan
        actions: list[Action] = []
        notes: list[str] = list(scope_notes)
        n_cluster = 0
        restarted: set[str] = set()  # nodes whose k3s/RKE2 unit is restarted for kube-proxy
        shape = shape_of(diagnosis)
        for component in ("kube_proxy", "flannel"):
            fs = [f for f in findings if CRASH_CODES.get(f.code) == component
                  or (f.code == NOT_RUNNING and _component_of(f) == component
                      and f.data_as(ComponentPodData).pod)]
            for f in [f for f in fs if _no_restart_reason(f)]:
                d = f.data_as(ComponentPodData)
                notes.append(f"{f.node}: {d.namespace}/{d.pod} is {d.reason}: "
                             f"{_no_restart_reason(f)}; restarting it gives the same pod back, "
                             f"so it is not restarted: fix its DaemonSet"
                             + (f" {d.daemonset}" if d.daemonset else "")
                             + " (kubectl describe pod shows the event)")
            fs = [f for f in fs if not _no_restart_reason(f)]
            # static (mirror) pods: deleting the API copy restarts nothing
            static = [f for f in fs if _is_static(diagnosis, component, f)]
            fs = [f for f in fs if f not in static]
            for f in static:
                a = self._static_restart(diagnosis, f, len(actions) + 1)
                if a is not None and a.id not in {x.id for x in actions}:
                    actions.append(a)
                elif a is None:
                    notes.append(_static_note(diagnosis, f))
            form = (shape.kube_proxy if component == "kube_proxy" else
                    (shape.flannel.deployment if shape is not None and shape.flannel else None)) \
                if shape is not None else None
            if fs and form == "embedded":
                for f in fs:
                    got = _embedded_restart(diagnosis, f, {x.id for x in actions}) \
                        if component == "kube_proxy" and f.code == "KUBE_PROXY_NO_RULES" else None
                    if got is not None and f.node not in restarted:
                        restarted.add(f.node)  # one restart of the node's unit per session
                        actions.extend(got)
                        continue
                    if got is not None:
                        continue
                    notes.append(f"{f.node}: {component.replace('_', '-')} is embedded in "
                                 f"{shape.distribution if shape else 'the distribution'}: no pod "
                                 "to restart; restart the k3s / rke2 service on the node"
                                 + _unit_why(diagnosis, f))
                fs = []
            for f in findings:
                if f.code == NOT_RUNNING and _component_of(f) == component \
                        and not f.data_as(ComponentPodData).pod:
                    notes.append(f"{f.node}: no {component.replace('_', '-')} pod at all "
                                 f"({f.data_as(ComponentPodData).reason or 'missing'}); restarting "
                                 "cannot help: check the DaemonSet's nodeSelector/tolerations")
            if not fs:
                continue
            nodes = sorted({f.node for f in fs})
            ns, ds = _ds_of(diagnosis, component, fs)
            label = component.replace("_", "-")
            has_ds = shape is None or (
                shape.kube_proxy == "daemonset" if component == "kube_proxy" else
                (shape.flannel is not None and shape.flannel.daemonset is not None))
            if (len(nodes) > 1 or CLUSTER in nodes) and has_ds:
                n_cluster += 1
                actions.append(engine.restart_daemonset_action(
                    action_id(self.name, CLUSTER, n_cluster), ns, ds,
                    why=f"{label} is crash-looping on {', '.join(nodes)}: restart the "
                        "DaemonSet's pods (rollout restart, node by node)",
                    finding_codes=tuple(sorted({f.code for f in fs})),
                ))
            else:
                node = nodes[0]
                pod = _owned_pod(diagnosis, component, node, fs[0].data_as(ComponentPodData))
                if pod is None:
                    notes.append(f"{node}: no {label} pod owned by its DaemonSet found to restart")
                    continue
                actions.append(engine.delete_pod_action(
                    action_id(self.name, node, 1 if component == "kube_proxy" else 2),
                    node, pod[0], pod[1],
                    why=f"{label} is crash-looping on {node}: delete its pod so the "
                        "DaemonSet starts a fresh one",
                    finding_codes=tuple(sorted({f.code for f in fs})),
                ))
        from clusterfix_tui.core.fixes import dns as dns_fix

        dns_actions, dns_notes = dns_fix.plan_actions(self.name, findings, {x.id for x in actions})
        actions.extend(dns_actions)
        notes.extend(dns_notes)
        for f in [f for f in findings if f.code == PROBE_CODE]:
            a = self._probe_workaround(f, (getattr(diagnosis, "extra", None) or {}).get(
                self.name))
            if a is None:
                notes.append(f"{f.node}: probe failures ({f.title}) but the finding does not "
                             "name the deployment, container and probe: no workaround offered")
                continue
            if a.id in {x.id for x in actions}:
                continue
            actions.append(a)
            api = a.api or {}
            notes.append(
                "OPT-IN WORKAROUND offered (not selected by default): switch the readiness probe "
                f"of {api.get('namespace')}/{api.get('name')} to an exec check on 127.0.0.1. It hides "
                "the network problem; the tool reverts it once validation passes.")
        if not actions and not notes:
            notes.append("nothing to restart")
        return Plan(step=self.name, title=self.title, findings=tuple(findings),
                    actions=tuple(actions), notes=tuple(notes))

    def _static_restart(self, diagnosis: Any, f: Finding, n: int) -> FixAction | None:
        """kube-proxy as a static pod on a kubeadm node with crictl: stop its container (the
        kubelet starts it again, as for any static pod). Otherwise None (a note says how)."""
        shape = shape_of(diagnosis)
        ns = shape.nodes.get(f.node) if shape is not None else None
        facts = (getattr(diagnosis, "facts", None) or {}).get(f.node)
        if ns is None or ns.distribution != "kubeadm" or facts is None or \
                "crictl" not in (getattr(facts, "binaries", None) or {}) or \
                _component_of(f) != "kube_proxy":
            return None
        return FixAction(
            id=action_id(self.name, f.node, 3), target=f.node, kind="shell",
            command=("ids=$(crictl ps -q --name '^kube-proxy$') && [ -n \"$ids\" ] && "
                     "crictl stop $ids"),
            why=f"kube-proxy on {f.node} is a static pod (mirror pod "
                f"{f.data_as(ComponentPodData).namespace}/{f.data_as(ComponentPodData).pod}): "
                "deleting the "
                "mirror restarts nothing; stopping its container makes the kubelet start it again",
            finding_codes=(f.code,),
            risk="kube-proxy on this node restarts; Services keep working from the existing rules",
            rollback_note="a restarted container is not rolled back: the kubelet restarts it",
            change={"what": f"static kube-proxy container on {f.node}", "before": "running",
                    "after": "restarted by the kubelet"},
        )

    def gather(self, api: Any, diagnosis: Any) -> dict[str, Any]:
        """Read-only look-ups plan() needs beyond the diagnosis (the session calls it before
        plan()): for each pod of a PROBE_NO_ROUTE finding, its Deployment, container and
        current readiness probe. Returns {"probe_targets": {"ns/pod": {...}}}."""
        targets: dict[str, Any] = {}
        for f in engine.findings_for(diagnosis, (PROBE_CODE,)):
            for ref in f.data_as(ProbeNoRouteData).pods:
                if ref in targets or "/" not in str(ref):
                    continue
                ns, name = str(ref).split("/", 1)
                try:
                    pod = next((p for p in api.list_pods(ns)
                                if (p.get("metadata") or {}).get("name") == name), None)
                    if pod is None:
                        continue
                    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
                    rs = next((o.get("name") for o in owners if o.get("kind") == "ReplicaSet"),
                              None)
                    if not rs or "-" not in rs:
                        continue
                    deploy = rs.rsplit("-", 1)[0]
                    dep = api.get_deployment(ns, deploy)
                except Exception:  # noqa: BLE001, S112
                    continue
                containers = (((dep or {}).get("spec") or {}).get("template") or {}).get(
                    "spec", {}).get("containers") or []
                for c in containers:
                    if isinstance(c.get("readinessProbe"), dict):
                        targets[ref] = {"namespace": ns, "deployment": deploy,
                                        "container": c.get("name"), "probe": c["readinessProbe"]}
                        break
        return {"probe_targets": targets}

    def _probe_workaround(self, f: Finding, extra: dict[str, Any] | None = None
                          ) -> FixAction | None:
        d = f.data_as(ProbeNoRouteData)
        ns, deploy, container, probe = d.namespace, d.deployment, d.container, d.probe
        for ref in d.pods:  # gather() read what the finding could not name
            t = ((extra or {}).get("probe_targets") or {}).get(ref)
            if t:
                ns = ns or t.get("namespace")
                deploy = deploy or t.get("deployment")
                container = container or t.get("container")
                probe = probe or t.get("probe")
                break
        if not (ns and deploy and container and isinstance(probe, dict)):
            return None
        port = _probe_port(probe)
        if port is None or not re.fullmatch(r"[0-9]{1,5}", str(port)):
            return None
        new = _exec_probe(probe, port)
        restore = dict(probe)
        restore.setdefault("exec", None)
        patch = {"spec": {"template": {"spec": {"containers": [
            {"name": container, "readinessProbe": new}]}}}}
        undo = {"spec": {"template": {"spec": {"containers": [
            {"name": container, "readinessProbe": restore}]}}}}
        import json

        def kubectl(p: dict[str, Any]) -> str:
            return (f"kubectl -n {q(ns)} patch deployment {q(deploy)} --type strategic "
                    f"-p {q(json.dumps(p, separators=(',', ':')))}")

        return FixAction(
            id=opt_in_id(self.name, CLUSTER, f"probe-{deploy}"),
            target=CLUSTER, kind="api", command=kubectl(patch),
            api={"verb": "patch_deployment", "namespace": ns, "name": deploy, "patch": patch},
            why=f"readiness probes of {ns}/{deploy} fail with 'no route to host' while the node "
                "network is repaired; an exec probe on 127.0.0.1 lets the pod become Ready",
            finding_codes=(f.code,),
            risk="TEMPORARY WORKAROUND: hides the network problem from Kubernetes; the pod is "
                 "restarted with the new probe",
            rollback=Action(
                id=opt_in_id(self.name, CLUSTER, f"probe-{deploy}") + ":rollback",
                target=CLUSTER, kind="api", command=kubectl(undo),
                api={"verb": "patch_deployment", "namespace": ns, "name": deploy, "patch": undo},
                why="restore the original readiness probe",
            ),
            change={"what": f"readiness probe of {ns}/{deploy} container {container}",
                    "before": probe, "after": new},
            opt_in=True,
            revert_after_validation=True,
            precondition=preconditions.deployment_probe(ns, deploy, container, probe, new),
        )

    # -- after the actions ran -------------------------------------------------------------

    def after_apply(
        self, plan: Plan, outcome: StepOutcome, api: Any, *,
        on_line: Callable[[str, str, str], None] | None = None,
        cancel: threading.Event | None = None, dry_run: bool = False,
        timeout: float = WAIT_TIMEOUT, poll: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> StepOutcome:
        """Wait for the restarted components' pods; add still-failing pods (with the last lines
        of their logs) to the outcome's message."""
        if dry_run or not any(o.status == "ok" for o in outcome.actions):
            return outcome
        components = set()
        for a in plan.actions:
            if not a.mutating or a.command.startswith("systemctl "):
                continue  # an embedded kube-proxy (k3s/RKE2 unit): no pods to wait for
            codes = set(a.finding_codes)
            for code, comp in CRASH_CODES.items():
                if code in codes:
                    components.add(comp)
            if NOT_RUNNING in codes and a.api:
                name = str(a.api.get("name", ""))
                components.add("kube_proxy" if "kube-proxy" in name else "flannel")
        if not components:
            return outcome
        failing = wait_for_components(api, sorted(components), timeout=timeout, poll=poll,
                                      on_line=on_line, cancel=cancel, sleep=sleep)
        if not failing:
            return StepOutcome(step=outcome.step, status=outcome.status, actions=outcome.actions,
                               changes=outcome.changes,
                               message=outcome.message + "; all restarted pods Running and Ready")
        lines = []
        for p in failing:
            lines.append(f"{p['namespace']}/{p['name']} on {p.get('node')}: {p['state']}")
            lines.extend("    " + ln for ln in p.get("log_tail", [])[-5:])
        status = "partial" if outcome.status == "changed" else outcome.status
        return StepOutcome(step=outcome.step, status=status,  # type: ignore[arg-type]
                           actions=outcome.actions, changes=outcome.changes,
                           message=outcome.message + "; still failing after "
                           f"{int(timeout)}s:\n" + "\n".join(lines))


def pod_state(pod: dict[str, Any]) -> tuple[bool, str]:
    """(running-and-ready, words) of a pod JSON dict."""
    status = pod.get("status") or {}
    phase = status.get("phase", "?")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or ())
    reasons = []
    for cs in status.get("containerStatuses") or ():
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            reasons.append(waiting["reason"])
    words = phase + (f" ({', '.join(reasons)})" if reasons else "") + ("" if ready else ", not Ready")
    return phase == "Running" and ready, words


def component_pods_live(api: Any, comp: str) -> list[dict[str, Any]]:
    """The component's pods as the API has them now: those owned (by UID) by the DaemonSet(s)
    running it, in any namespace, plus (kube-proxy) static mirror pods running its image. Only an
    API that cannot list DaemonSets falls back to the well-known label."""
    from clusterfix_tui.core.shape import classify_daemonset, component_of_images, is_mirror_pod

    want = "kube-proxy" if comp == "kube_proxy" else "flannel"
    try:
        dss = [d for d in (api.list_daemonsets(None) or []) if isinstance(d, dict)]
    except Exception:  # noqa: BLE001 - an API without DaemonSets: the label below
        dss = []
    owners = [d for d in dss if want in classify_daemonset(d)]
    out: list[dict[str, Any]] = []
    for d in owners:
        meta = d.get("metadata") or {}
        ns, name, uid = meta.get("namespace"), meta.get("name"), meta.get("uid")
        for p in api.list_pods(ns) or []:
            pm = p.get("metadata") or {}
            for o in pm.get("ownerReferences") or []:
                if o.get("kind") == "DaemonSet" and (o.get("uid") == uid if o.get("uid") and uid
                                                     else o.get("name") == name):
                    out.append(p)
                    break
    if comp == "kube_proxy" and hasattr(api, "list_daemonsets"):
        for p in api.list_pods(None) or []:
            pm = p.get("metadata") or {}
            cs = (p.get("spec") or {}).get("containers") or []
            if is_mirror_pod(pm) and want in component_of_images(
                    [str(c.get("image") or "") for c in cs], [str(c.get("name") or "") for c in cs]):
                out.append(p)
    if not owners and not out:
        return list(api.list_pods(None, LABELS[comp]) or [])
    return out


FIRST_POLL = 0.5  # seconds before the first re-check of restarted pods (then up to `poll`)


def wait_for_components(
    api: Any, components: list[str], *, timeout: float = WAIT_TIMEOUT, poll: float = 2.0,
    on_line: Callable[[str, str, str], None] | None = None,
    cancel: threading.Event | None = None, sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Poll until every node has a Running+Ready pod of each component, or the timeout.
    Returns the pods still failing (with their last log lines). The first re-checks come
    sooner (FIRST_POLL, growing by half each time up to `poll`): a restarted pod is often
    Ready within a second, and waiting a whole `poll` for it kept every repair waiting; a
    sleep never runs past the deadline (the last check is made at it)."""
    deadline = time.monotonic() + timeout
    interval = min(FIRST_POLL, poll)
    bad: list[dict[str, Any]] = []
    while True:
        nodes = [n["metadata"]["name"] for n in api.list_nodes()]
        bad = []
        total = ready_n = 0
        for comp in components:
            pods = component_pods_live(api, comp)
            by_node: dict[str, list[dict[str, Any]]] = {}
            for p in pods:
                if (p.get("metadata") or {}).get("deletionTimestamp"):
                    continue
                by_node.setdefault((p.get("spec") or {}).get("nodeName", ""), []).append(p)
            for node in nodes:
                total += 1
                ps = by_node.get(node, [])
                ok_pods = [p for p in ps if pod_state(p)[0]]
                if ok_pods:
                    ready_n += 1
                    continue
                if not ps:
                    bad.append({"namespace": "?", "name": f"({comp} pod missing)", "node": node,
                                "state": "no pod", "pod": None})
                for p in ps:
                    bad.append({"namespace": p["metadata"].get("namespace", ""),
                                "name": p["metadata"]["name"], "node": node,
                                "state": pod_state(p)[1], "pod": p})
        if on_line is not None:
            on_line(CLUSTER, "stdout",
                    f"waiting for {', '.join(components)}: {ready_n}/{total} Running and Ready")
        if not bad or time.monotonic() >= deadline or (cancel is not None and cancel.is_set()):
            break
        sleep(max(0.0, min(interval, deadline - time.monotonic())))
        interval = min(poll, interval * 1.5)
    for b in bad:
        if b.get("pod") is None:
            continue
        try:
            log = api.pod_log(b["namespace"], b["name"], tail_lines=20) or ""
        except Exception as exc:  # noqa: BLE001
            log = f"(no log: {exc})"
        b["log_tail"] = log.splitlines()[-20:]
        b.pop("pod", None)
    for b in bad:
        b.pop("pod", None)
    return bad


def _is_static(diagnosis: Any, component: str, f: Finding) -> bool:
    d = f.data_as(ComponentPodData)
    if d.static:
        return True
    snap = getattr(diagnosis, "snapshot", None)
    for p in (getattr(snap, f"{component}_pods", None) or {}).get(f.node, []) or []:
        if getattr(p, "mirror", False) and (not d.pod or p.name == d.pod):
            return True
    return False


def _owned_pod(diagnosis: Any, component: str, node: str, data: ComponentPodData
               ) -> tuple[str, str] | None:
    """(namespace, name) of the component's pod on `node` as the snapshot found it through its
    DaemonSet's ownerReference; never a mirror pod, never a pod merely named like it."""
    snap = getattr(diagnosis, "snapshot", None)
    pods = (getattr(snap, f"{component}_pods", None) or {}).get(node, []) if snap is not None else []
    if pods:
        want = data.pod
        for p in pods:
            if getattr(p, "mirror", False):
                continue
            if want is None or p.name == want:
                return p.namespace, p.name
        return None
    if snap is not None and hasattr(snap, "daemonsets"):
        return None  # a real snapshot found no owned pod: do not guess by name
    # test doubles without a snapshot of pods: the finding's own pod
    if data.pod:
        return data.namespace or DEFAULT_DS[component][0], data.pod
    return engine.node_pod(diagnosis, component, node)


def _static_note(diagnosis: Any, f: Finding) -> str:
    shape = shape_of(diagnosis)
    ns = shape.nodes.get(f.node) if shape is not None else None
    d = f.data_as(ComponentPodData)
    where = ("/var/lib/rancher/rke2/agent/pod-manifests/kube-proxy.yaml"
             if ns is not None and ns.distribution == "rke2"
             else "/etc/kubernetes/manifests/kube-proxy.yaml")
    return (f"{f.node}: {d.namespace}/{d.pod} is the mirror of a static pod: "
            "deleting it restarts nothing, so it is not deleted. Restart it on the node: "
            f"`crictl stop` its container (the kubelet restarts it), or move {where} out of the "
            "manifests directory and back")


STEP = PodsStep()


def _unit_why(diagnosis: Any, f: Finding) -> str:
    from clusterfix_tui.core.fixes.iptables import _embedded_kube_proxy_unit

    unit, how = _embedded_kube_proxy_unit(diagnosis, f.node)
    return f" ({how})" if unit is None and how else ""


def _embedded_restart(diagnosis: Any, f: Finding, taken: set[str]) -> list[FixAction] | None:
    """KUBE_PROXY_NO_RULES where kube-proxy runs inside k3s/RKE2 (no pod): restart the one unit
    the node runs (read with the facts: `systemctl is-active`, never guessed), then a read-only
    check that kube-proxy's rules are back. Restarting k3s does not stop running pods (docs.k3s.io
    "Stopping K3s": the containers keep running, only k3s-killall.sh stops them). None when the
    unit is not known (a note says why)."""
    from clusterfix_tui.core.checks.iptables import NoRulesData
    from clusterfix_tui.core.fixes.cni_bridge import restart_service_action
    from clusterfix_tui.core.fixes.iptables import _embedded_kube_proxy_unit

    unit, _how = _embedded_kube_proxy_unit(diagnosis, f.node)
    if unit is None:
        return None
    d = f.data_as(NoRulesData)
    restart = restart_service_action(free_action_id("pods", f.node, 10, taken), f.node, unit,
                                     finding_codes=(f.code,), component="kube-proxy",
                                     only_control_plane=sole_control_plane(diagnosis, f.node))
    tests = _rules_back_tests(d)
    if tests and restart.precondition is not None:
        # the precondition re-checks what the restart is for: rules written back meanwhile
        # (kube-proxy's own re-sync, or an earlier step restarted the same unit) = done, and the
        # unit is not restarted a second time
        what = ", ".join(d.missing_chains or ["KUBE-SERVICES"])
        restart = dataclasses.replace(restart, precondition=preconditions.shell(
            f"if {{ {' && '.join(tests)}; }}; then "
            f"echo {q(f'kube-proxy rules are there (again): {what}: not restarted')}; "
            f"exit {preconditions.EXIT_DONE}; fi; " + restart.precondition.command,
            f"{unit} is active and kube-proxy's rules are still missing: {what}"))
    check = verify_kube_proxy_rules(free_action_id("pods", f.node, 10, taken), f.node, unit, d,
                                    finding_codes=(f.code,))
    return [restart, check] if check is not None else [restart]


def _rules_back_tests(d: Any) -> list[str]:
    """Read-only shell tests, all true once kube-proxy has written back what the finding missed
    (iptables mode: its chains and jumps in its backend's nat table; nftables mode: its table's
    services chain); [] for a mode not checked here."""
    tests: list[str] = []
    mode = d.proxy_mode or ""
    if d.backend in ("legacy", "nft") and mode in ("", "iptables"):
        save = (f"{{ iptables-{d.backend}-save -t nat 2>/dev/null || iptables-save -t nat; }}")
        for m in d.missing_chains or ["KUBE-SERVICES"]:
            if m.endswith(" (IPv6)"):
                continue  # ip6tables: not read back here (the next diagnose does)
            m = m.removeprefix("chain ")
            if re.fullmatch(r"KUBE-[A-Z0-9-]+", m):
                tests.append(f"{save} | grep -q -e {q('^:' + m + ' ')}")
            elif (j := re.fullmatch(r"-A (PREROUTING|OUTPUT|POSTROUTING) -j (KUBE-[A-Z0-9-]+)", m)):
                tests.append(f"{save} | grep -qE -e {q('^-A ' + j[1] + ' .*-j ' + j[2] + '$')}")
        if not tests:  # what it missed is not a chain or a jump: at least its main chain
            tests.append(f"{save} | grep -q -e {q('^:KUBE-SERVICES ')}")
    elif d.backend == "nftables":
        tests.append("nft list chain ip kube-proxy services >/dev/null 2>&1")
    return tests


def verify_kube_proxy_rules(id_: str, node: str, unit: str, d: Any, *,
                            finding_codes: tuple[str, ...] = ()) -> FixAction | None:
    """Read-only: wait (up to 90 s) for the rules kube-proxy restarted with `unit` writes again:
    iptables mode, the chains and jumps the finding missed in its backend's nat table; nftables
    mode, its `kube-proxy` table's services chain. None for a mode not checked here."""
    tests = _rules_back_tests(d)
    if not tests:
        return None
    what = ", ".join(d.missing_chains or ["KUBE-SERVICES"])
    return FixAction(
        id=id_, target=node, kind="shell", mutating=False, timeout=120.0,
        command=(f"i=0; until {{ {' && '.join(tests)}; }}; do i=$((i+1)); "
                 "if [ \"$i\" -ge 90 ]; then "
                 f"echo {q(f'kube-proxy in {unit} has not written its rules back: {what}')}; "
                 "exit 1; fi; sleep 1; done; "
                 f"echo {q(f'kube-proxy in {unit} wrote its rules back: {what}')}"),
        why=f"check that the kube-proxy embedded in {unit} wrote back what was missing: {what}",
        finding_codes=finding_codes,
        risk="none (reads only)",
        rollback_note="reads only: nothing to roll back",
        change={"what": f"kube-proxy rules on {node}", "before": "missing", "after": "checked"},
    )
