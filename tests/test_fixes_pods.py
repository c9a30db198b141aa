"""The pods step: delete one pod or roll a DaemonSet, wait with progress, report what still fails."""

from __future__ import annotations

from typing import ClassVar

from fix_helpers import FakeDiagnosis, finding, snapshot

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import apply_plan, check_rollbacks, default_approved
from clusterfix_tui.core.fixes.pods import wait_for_components
from clusterfix_tui.core.model import CLUSTER, CommandResult

STEP = get_step("pods")


def crash(node, comp="kube-proxy"):
    if comp == "kube-proxy":
        return finding("KUBE_PROXY_CRASHLOOP", node, "pods", namespace="kube-system",
                       pod=f"kube-proxy-{node}", container="kube-proxy", daemonset="kube-proxy")
    return finding("FLANNEL_CRASHLOOP", node, "pods", namespace="kube-flannel",
                   pod=f"kube-flannel-ds-{node}", container="kube-flannel",
                   daemonset="kube-flannel-ds")


def test_one_node_deletes_its_pod():
    plan = STEP.plan(FakeDiagnosis([crash("node-2")], snapshot=snapshot()))
    assert [a.api for a in plan.actions] == [
        {"verb": "delete_pod", "namespace": "kube-system", "name": "kube-proxy-node-2"}]
    assert plan.actions[0].target == "node-2"
    assert check_rollbacks(plan) == []


def test_several_nodes_roll_the_daemonset():
    plan = STEP.plan(FakeDiagnosis([crash("node-2", "flannel"), crash("node-3", "flannel")],
                                   snapshot=snapshot()))
    assert [a.api for a in plan.actions] == [
        {"verb": "restart_daemonset", "namespace": "kube-flannel", "name": "kube-flannel-ds"}]
    assert plan.actions[0].target == CLUSTER


def test_probe_workaround_is_opt_in_and_reverts_after_validation():
    probe = {"httpGet": {"path": "/health", "port": 8096}, "periodSeconds": 5}
    f = finding("PROBE_NO_ROUTE", "node-2", "pods", namespace="media", deployment="jellyfin",
                container="jellyfin", probe=probe, pods=["media/jellyfin-abc-x"])
    plan = STEP.plan(FakeDiagnosis([f], snapshot=snapshot()))
    assert len(plan.actions) == 1
    a = plan.actions[0]
    assert default_approved(plan) == []
    assert a.opt_in and a.revert_after_validation
    assert a.rollback.api["patch"]["spec"]["template"]["spec"]["containers"][0][
        "readinessProbe"]["httpGet"] == probe["httpGet"]
    new = a.api["patch"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert "127.0.0.1" in " ".join(new["exec"]["command"]) and new["httpGet"] is None
    assert any("OPT-IN" in n for n in plan.notes)


class FakeAPI:
    """Pods become Ready after `ready_after` polls; node-3's flannel never does."""

    def __init__(self, ready_after=2):
        self.polls = 0
        self.ready_after = ready_after

    def list_nodes(self):
        return [{"metadata": {"name": n}} for n in ("node-1", "node-2", "node-3")]

    def list_pods(self, namespace=None, label_selector=None):
        if label_selector.startswith("k8s-app=kube-proxy"):
            self.polls += 1
        pods = []
        for n in ("node-1", "node-2", "node-3"):
            comp = "kube-proxy" if "kube-proxy" in label_selector else "flannel"
            ok = self.polls >= self.ready_after and not (comp == "flannel" and n == "node-3")
            pods.append({
                "metadata": {"namespace": "kube-system", "name": f"{comp}-{n}"},
                "spec": {"nodeName": n},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True" if ok else "False"}],
                    "containerStatuses": [] if ok else [
                        {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
            })
        return pods

    def pod_log(self, namespace, name, container=None, tail_lines=50, previous=False):
        return "line1\nE1126 failed to set bridge addr\n"


def test_wait_reports_progress_and_still_failing_pods_with_logs():
    api = FakeAPI()
    lines = []
    bad = wait_for_components(api, ["kube_proxy", "flannel"], timeout=0.05, poll=0.01,
                              on_line=lambda n, s, line: lines.append(line), sleep=lambda s: None)
    assert [b["name"] for b in bad] == ["flannel-node-3"]
    assert "failed to set bridge addr" in "\n".join(bad[0]["log_tail"])
    assert any("Running and Ready" in line for line in lines)


def test_after_apply_marks_partial_when_pods_still_fail():
    plan = STEP.plan(FakeDiagnosis([crash("node-3", "flannel")], snapshot=snapshot()))

    class R:
        dry_run = False

        def run_action(self, action, *, on_line=None):
            return CommandResult(0, "deleted\n")

    out = apply_plan(plan, default_approved(plan), R())
    assert out.status == "changed"
    final = STEP.after_apply(plan, out, FakeAPI(), timeout=0.05, poll=0.01, sleep=lambda s: None)
    assert final.status == "partial"
    assert "flannel-node-3" in final.message and "failed to set bridge addr" in final.message


class ProbeAPI:
    PROBE: ClassVar[dict] = {"httpGet": {"path": "/health", "port": 8096}, "timeoutSeconds": 1}

    def list_pods(self, namespace=None, label_selector=None):
        return [{"metadata": {"namespace": "media", "name": "jellyfin-7f9c-abcde",
                              "ownerReferences": [{"kind": "ReplicaSet", "name": "jellyfin-7f9c"}]}}]

    def get_deployment(self, namespace, name):
        assert (namespace, name) == ("media", "jellyfin")
        return {"spec": {"template": {"spec": {"containers": [
            {"name": "jellyfin", "image": "x", "readinessProbe": self.PROBE}]}}}}


def test_gather_finds_the_deployment_and_its_probe_for_the_workaround():
    f = finding("PROBE_NO_ROUTE", "node-2", "pods", events=[], pods=["media/jellyfin-7f9c-abcde"],
                probe_ip="10.244.1.5")
    d = FakeDiagnosis([f], snapshot=snapshot())
    extra = STEP.gather(ProbeAPI(), d)
    assert extra["probe_targets"]["media/jellyfin-7f9c-abcde"]["deployment"] == "jellyfin"
    d.extra = {"pods": extra}
    plan = STEP.plan(d)
    (a,) = plan.actions
    assert a.api["name"] == "jellyfin" and a.api["namespace"] == "media"
    assert a.change["before"] == ProbeAPI.PROBE
    assert "kubectl -n media patch deployment jellyfin --type strategic -p " in a.command


def _as_read_back(f, **extra_keys):
    """The finding as a journal or a bundle gives it back: its data a plain dict (plus keys an
    older or newer version wrote that this one's data class does not have)."""
    from clusterfix_tui.core.model import Finding

    d = f.to_dict()
    return Finding(code=d["code"], severity=d["severity"], node=d["node"], title=d["title"],
                   step=d["step"], data={**d["data"], **extra_keys})


def test_findings_read_back_with_dict_data_plan_the_same_as_typed_ones():
    from clusterfix_tui.core.checks.pods import ComponentPodData, ProbeNoRouteData

    probe = {"httpGet": {"path": "/health", "port": 8096}, "periodSeconds": 5}
    typed = [crash("node-2"), crash("node-3", "flannel"),
             finding("PROBE_NO_ROUTE", "node-2", "pods", namespace="media", deployment="jellyfin",
                     container="jellyfin", probe=probe, pods=["media/jellyfin-abc-x"])]
    old = [_as_read_back(f, an_old_key="ignored") for f in typed]
    assert all(isinstance(f.data, dict) for f in old)
    # data_as rebuilds the code's class from the dict (unknown keys left out), both ways equal
    assert old[0].data_as(ComponentPodData) == typed[0].data
    assert old[2].data_as(ProbeNoRouteData) == typed[2].data
    plans = [STEP.plan(FakeDiagnosis(fs, snapshot=snapshot())) for fs in (typed, old)]
    assert plans[0].actions and [a.to_dict() for a in plans[1].actions] == \
        [a.to_dict() for a in plans[0].actions]


def test_data_as_still_refuses_what_is_neither_its_class_nor_a_dict():
    import pytest

    from clusterfix_tui.core.checks.pods import ComponentPodData, ProbeNoRouteData
    from clusterfix_tui.core.model import Finding

    f = crash("node-2")
    with pytest.raises(TypeError):
        f.data_as(ProbeNoRouteData)  # typed, but another code's class
    with pytest.raises(TypeError):
        Finding(code="KUBE_PROXY_CRASHLOOP", severity="error", node="n", title="t",
                data=["not", "a", "dict"]).data_as(ComponentPodData)


def test_wait_rechecks_soon_at_first_then_less_often_never_past_poll():
    """A restarted pod is often Ready within a second: the first re-check does not wait a whole
    `poll`; the waits grow up to `poll` and no further; the same deadline."""
    api = FakeAPI(ready_after=6)
    sleeps: list[float] = []
    bad = wait_for_components(api, ["kube_proxy"], timeout=60, poll=2.0,
                              sleep=sleeps.append)
    assert bad == []
    assert len(sleeps) == 5  # ready at the 6th check, as before
    assert sleeps[0] < 2.0 and sleeps == sorted(sleeps) and max(sleeps) <= 2.0
    assert sleeps[-1] == 2.0
