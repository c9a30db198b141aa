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


# -- kubeconfigs (checks/kubeconfig.py, fixes/worker_kubeconfig.py) -------------------------------
KC_SAMPLES = [s for s in ALL if s["kind"] == "kubeconfig-api2"]


def _kc_facts(node: str, user: str | None, rc: int, kubelet: str | None) -> Any:
    from clusterfix_tui.core.facts import NodeFacts

    files = {}
    if kubelet:
        files["/etc/kubernetes/kubelet.conf"] = kubelet
    if user:
        files["/root/.kube/config"] = user
    return NodeFacts(node=node, complete=True, kubeconfigs=files, kubectl_rc=rc,
                     kubectl_error=None if rc == 0 else "dial tcp: connect: no route to host")


def _kc_snap() -> Any:
    from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

    def n(name: str, ip: str) -> NodeInfo:
        return NodeInfo(name, ip, (), None, {"Ready": {"status": "True"}}, {}, {}, "v1.30")
    return ClusterSnapshot(api={"server": "https://127.0.0.1:16443"},
                           nodes={"w1": n("w1", "10.0.0.11", ), "w2": n("w2", "10.0.0.12")})


def _server_lines(text: str) -> str:
    """What the facts script sends of a kubeconfig: its `server:` lines only (core/facts.py)."""
    import re

    return "\n".join(ln for ln in text.splitlines()
                     if re.match(r"^\s*-?\s*server:", ln))


def check_kubeconfig_api2(s: dict[str, Any], tmp_path: Path) -> None:
    import os
    import subprocess

    from clusterfix_tui.core import parsers as P
    from clusterfix_tui.core.checks import kubeconfig
    from clusterfix_tui.core.fixes import get_step

    text = (DATA / s["file"]).read_text()
    e = s["expect"]
    user = P.parse_kubeconfig_server(_server_lines(text))
    assert user == e["first_server"]
    good = "https://10.0.0.10:6443"
    facts = {"w1": _kc_facts("w1", user, 1, good), "w2": _kc_facts("w2", good, 0, good)}
    (f,) = kubeconfig.check(_kc_snap(), facts)
    assert f.data["reason"] == "wrong-server"
    step = get_step("worker_kubeconfig")
    from types import SimpleNamespace

    plan = step.plan(SimpleNamespace(findings=[f], facts=facts, snapshot=_kc_snap()))
    write = next(a for a in plan.actions if a.change and a.change.get("after") == good)
    # run the precondition on a copy of the sample, with a kubectl that fails for the file's own
    # server and answers for the --server override (what the precondition probes)
    cfg = tmp_path / "config"
    cfg.write_text(text)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubectl = bindir / "kubectl"
    kubectl.write_text('#!/bin/sh\ncase "$*" in *--server*) exit 0;; esac\nexit 1\n')
    kubectl.chmod(0o755)
    script = write.precondition.command.replace("/root/.kube/config", str(cfg))
    env = dict(os.environ, PATH=f"{bindir}:{os.environ.get('PATH', '')}")
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=20)
    assert res.returncode == e["precondition_exit"], (res.returncode, res.stdout, res.stderr)
    assert e["precondition_says"] in res.stdout
    # a one-cluster file (its first cluster only) still passes the same precondition
    one = text.split("- cluster:\n    insecure-skip-tls-verify")[0] + "contexts: []\n"
    cfg.write_text(one)
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=20)
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)


@pytest.mark.parametrize("name", [s["file"] for s in KC_SAMPLES])
def test_kubeconfig_sample(name, tmp_path):
    """Old code: the precondition passes (exit 0) and the write sets EVERY `server:` of the
    file, the other cluster's included, to this cluster's address."""
    check_kubeconfig_api2(next(s for s in KC_SAMPLES if s["file"] == name), tmp_path)


def check_kubeconfig_api2_tmp(s: dict[str, Any]) -> None:
    """check_kubeconfig_api2 in a temporary directory of its own (tests/test_realworld.py)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cfx-realapi2-") as d:
        check_kubeconfig_api2(s, Path(d))


# -- canal (shape.py scope) ------------------------------------------------------------------------
def _canal_case() -> tuple[Any, dict[str, Any]]:
    """SYNTHESISED WRAPPER: a canal cluster (calico's canal.yaml, real) with one node n1 whose
    /etc/cni/net.d holds canal's conflist (canal-config's cni_network_config as install-cni
    writes it: its placeholders filled) and a leftover of flannel's (kube-flannel.yml's
    cni-conf.json, real), e.g. after a flannel -> canal migration."""
    from dataclasses import replace

    from clusterfix_tui.core import parsers as P
    from clusterfix_tui.core.facts import NodeFacts
    from clusterfix_tui.core.shape import classify_daemonset, detect_shape
    from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info

    canal = [d for d in yaml.safe_load_all((DATA / "calico-canal-configmap-daemonset.yaml").read_text())
             if isinstance(d, dict)]
    flannel = [d for d in yaml.safe_load_all((DATA / "flannel-kube-flannel.yml").read_text())
               if isinstance(d, dict)]
    cm = next(d for d in canal if d.get("kind") == "ConfigMap")
    ds = next(d for d in canal if d.get("kind") == "DaemonSet")
    canal_conf = (cm["data"]["cni_network_config"].replace("__KUBERNETES_NODE_NAME__", "n1")
                  .replace("__CNI_MTU__", "1450")
                  .replace("__KUBECONFIG_FILEPATH__", "/etc/cni/net.d/calico-kubeconfig"))
    fl_cm = next(d for d in flannel if d.get("kind") == "ConfigMap")
    flannel_conf = fl_cm["data"]["cni-conf.json"]
    files = {"/etc/cni/net.d/10-canal.conflist": canal_conf,
             "/etc/cni/net.d/10-flannel.conflist": flannel_conf}
    facts = {"n1": NodeFacts(node="n1", complete=True, cni_files=files,
                             cni_configs={p: P.parse_cni_conf(t)[0] for p, t in files.items()})}
    n1 = node_info({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.11"}]}})
    snap = ClusterSnapshot(nodes={"n1": n1}, daemonsets=({
        "namespace": ds["metadata"]["namespace"], "name": ds["metadata"]["name"], "uid": "uid-canal",
        "labels": {}, "components": sorted(classify_daemonset(ds)), "configmaps": []},),
        flannel_net_conf=json.loads(cm["data"]["net-conf.json"]), flannel_configmap="kube-system/canal-config")
    snap = replace(snap, shape=detect_shape(snap, facts))
    return snap, facts


def test_canal_own_conflist_is_not_stray_beside_a_flannel_leftover():
    """Old code: CNI_STRAY_CONFLIST naming canal's own 10-canal.conflist (it sorts before
    10-flannel.conflist), step cni: the cluster's live CNI config moved away."""
    from clusterfix_tui.core.checks import cni
    from clusterfix_tui.core.shape import why_not

    snap, facts = _canal_case()
    assert snap.shape.cni_detail.startswith("flannel via canal"), snap.shape.cni_detail
    assert [(f.code, f.title) for f in cni.check(snap, facts)] == []
    for code in ("CNI_STRAY_CONFLIST", "CNI_BRIDGE_CONFLICT"):
        assert "canal" in (why_not(snap.shape, code, "n1") or ""), code
    # flannel's VXLAN between the nodes is canal's too: still checked
    assert why_not(snap.shape, "FLANNEL_MISSING_ROUTE", "n1") is None
