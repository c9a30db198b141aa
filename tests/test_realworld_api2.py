"""Real Kubernetes API objects, second sweep (tests/data/realworld/, rows of kind
"node-conditions-api2" in samples.json): node conditions through build_snapshot (the replay API
the diagnosis tests use) and the pods check."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from diag_fakes import ReplayAPI, load  # noqa: E402

from clusterfix_tui.core.checks.pods import check as pods_check  # noqa: E402
from clusterfix_tui.core.snapshot import build_snapshot  # noqa: E402

DATA = Path(__file__).parent / "data" / "realworld"
ALL = json.loads((DATA / "samples.json").read_text())
COND_SAMPLES = [s for s in ALL if s["kind"] == "node-conditions-api2"]


def cluster_with_conditions(conditions: list[dict[str, Any]], node: str = "node-1",
                            pods_not_ready: bool = True) -> Any:
    """SYNTHESISED WRAPPER: the healthy lab recording with `node`'s status.conditions replaced
    by the sample's (the types the sample has; the others kept); with pods_not_ready, the pods
    on that node carry Ready=False as the node lifecycle controller marks them (MarkPodsNotReady)
    once the kubelet stops posting."""
    rec = copy.deepcopy(load("healthy"))
    obj = next(n for n in rec["nodes"] if n["metadata"]["name"] == node)
    types = {c["type"] for c in conditions}
    obj["status"]["conditions"] = [c for c in obj["status"].get("conditions", [])
                                   if c.get("type") not in types] + copy.deepcopy(conditions)
    if pods_not_ready:
        for p in rec["pods"]:
            if p["spec"].get("nodeName") == node:
                for c in p["status"].get("conditions", []):
                    if c.get("type") == "Ready":
                        c["status"] = "False"
    return build_snapshot(ReplayAPI(rec), with_logs=False)


def check_node_conditions(s: dict[str, Any]) -> None:
    conds = yaml.safe_load((DATA / s["file"]).read_text())
    e = s["expect"]
    for pods_not_ready in (True, False):
        snap = cluster_with_conditions(conds, pods_not_ready=pods_not_ready)
        got = pods_check(snap, {})
        on_node = [f for f in got if f.node == "node-1"]
        assert sorted(f.code for f in on_node) == e["findings"], [(f.code, f.title) for f in on_node]
        assert [f for f in on_node if f.step] == [], "a step planned for a node whose kubelet is silent"
        nr = next(f for f in on_node if f.code == "NODE_NOT_READY")
        assert e["reason"] in nr.title
        assert any("not judged" in ev for ev in nr.evidence), nr.evidence
        # the other nodes are still judged
        assert [f for f in got if f.node != "node-1"] == []


@pytest.mark.parametrize("name", [s["file"] for s in COND_SAMPLES])
def test_node_conditions_sample(name):
    """Old code: POD_NOT_RUNNING for node-1's kube-proxy and flannel pods, step pods (a pod
    deleted on a node whose kubelet is silent stays Terminating: a restart that cannot work)."""
    check_node_conditions(next(s for s in COND_SAMPLES if s["file"] == name))


def test_ready_false_kubelet_posting_still_judges_pods():
    """Ready False written by a kubelet that is alive (KubeletNotReady: its status is current):
    the pods there are still judged as before."""
    conds = [{"type": "Ready", "status": "False", "reason": "KubeletNotReady",
              "message": "container runtime network not ready: NetworkReady=false "
                         "reason:NetworkPluginNotReady message:Network plugin returns error: "
                         "cni plugin not initialized"}]
    got = pods_check(cluster_with_conditions(conds), {})
    codes = sorted(f.code for f in got if f.node == "node-1")
    assert codes == ["NODE_NOT_READY", "POD_NOT_RUNNING", "POD_NOT_RUNNING"], codes
