"""trust3: values from the Kubernetes API that the code landed since 7eddf53 read (kube-proxy's
config.conf as YAML, the node OS label that skips a node, the init containers' exit codes) taken
hostile: a wrong type, an odd label, JSON's 1e999, a ConfigMap of a MiB. Each reads as "not read"
or as the node it is, never as a default that plans something, and never raises."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from diag_fakes import ReplayAPI, ReplayShells, load  # noqa: E402

from clusterfix_tui.core import snapshot as S  # noqa: E402


def cm(text: str) -> dict[str, Any]:
    return {"data": {"config.conf": text}}


@pytest.mark.parametrize("text", ["mode: [ipvs]\n", "mode: 1\n", "mode: {a: b}\n",
                                  '{"kind": "KubeProxyConfiguration", "mode": ["nftables"]}'])
def test_a_mode_that_is_no_string_is_not_read_never_the_default(text):
    """kube-proxy refuses such a config; old code read it as "" (the default: iptables mode) and
    the iptables checks concluded on that."""
    assert S.parse_kube_proxy_mode(cm(text)) is None


def test_absent_or_null_mode_is_still_the_default():
    assert S.parse_kube_proxy_mode(cm("kind: KubeProxyConfiguration\n")) == ""
    assert S.parse_kube_proxy_mode(cm("kind: KubeProxyConfiguration\nmode: null\n")) == ""
    assert S.parse_kube_proxy_mode(cm("kind: KubeProxyConfiguration\nmode:\n")) == ""


def test_a_huge_config_conf_is_not_parsed_as_yaml(monkeypatch):
    """A ConfigMap may hold ~1 MiB: PyYAML (pure Python) takes ~4 s per MiB, twice per diagnosis
    (mode and clusterCIDR). Above the bound the text is read by its lines only (old code: parsed
    whole, each time)."""
    import yaml

    sizes: list[int] = []
    real = yaml.safe_load

    def counting(text: Any, *a: Any, **kw: Any) -> Any:
        sizes.append(len(text))
        return real(text, *a, **kw)

    monkeypatch.setattr(yaml, "safe_load", counting)
    big = "mode: ipvs\nclusterCIDR: 10.244.0.0/16\n" + "".join(f"k{i}: v{i}\n" for i in range(60_000))
    assert len(big) > S.KUBE_PROXY_CONFIG_YAML_MAX
    assert S.parse_kube_proxy_mode(cm(big)) == "ipvs"
    assert S.parse_cluster_cidrs(cm(big)) == ("10.244.0.0/16",)
    assert sizes == []
    # nesting PyYAML recurses into (1.3 s per call to its RecursionError at 64 KiB)
    deep = "mode: ipvs\nx: " + "[" * 60_000 + "\n"
    assert len(deep) < S.KUBE_PROXY_CONFIG_YAML_MAX
    assert S.parse_kube_proxy_mode(cm(deep)) == "ipvs" and sizes == []
    # a real-sized one still is YAML
    assert S.parse_kube_proxy_mode(cm('{"mode": "ipvs"}')) == "ipvs" and sizes == [16]


def test_an_alias_bomb_or_deep_nesting_reads_without_raising():
    lol = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9))
    assert S.parse_kube_proxy_mode(cm(lol + "mode: ipvs\n")) == "ipvs"
    assert S.parse_kube_proxy_mode(cm(lol + "mode: *j\n")) is None  # a list of 9^10: no mode
    deep = "mode: ipvs\nx: " + "[" * 3000 + "]" * 3000 + "\n"
    assert S.parse_kube_proxy_mode(cm(deep)) == "ipvs"  # RecursionError: read by its lines


def _node(labels: dict[str, str]) -> S.NodeInfo:
    return S.node_info({"metadata": {"name": "n1", "labels": labels}, "spec": {}, "status": {}})


@pytest.mark.parametrize("labels", [{"kubernetes.io/os": ""}, {"kubernetes.io/os": " "},
                                    {"kubernetes.io/os": "Linux"}, {"beta.kubernetes.io/os": "linux "},
                                    {"kubernetes.io/os": "", "beta.kubernetes.io/os": "linux"}])
def test_a_linux_node_with_an_odd_os_label_is_no_other_os(labels):
    """A label that names no OS, or linux written another way, leaves the node a Linux node (it
    is read; its DaemonSet pods are expected). Old code: any value but exactly "linux" skipped it."""
    assert _node(labels).other_os is False


@pytest.mark.parametrize("labels,os_", [({}, None), ({"kubernetes.io/os": "windows"}, "windows"),
                                        ({"kubernetes.io/os": "", "beta.kubernetes.io/os": "windows"},
                                         "windows"),
                                        ({"kubernetes.io/os": "linux", "beta.kubernetes.io/os": "windows"},
                                         "linux")])
def test_the_os_label_read(labels, os_):
    assert _node(labels).os == os_
    assert _node(labels).other_os is (os_ == "windows")


def test_diagnose_reads_a_node_whose_os_label_is_empty():
    """diagnose() opens its shell (the facts script runs) on a node labelled kubernetes.io/os=""
    and writes no other-OS note; old code skipped it as a Windows node: no facts, no finding."""
    from clusterfix_tui.core.diagnose import diagnose

    rec = copy.deepcopy(load("healthy"))
    node = next(n for n in rec["nodes"] if n["metadata"]["name"] == "node-2")
    node["metadata"].setdefault("labels", {})["kubernetes.io/os"] = ""
    shells = ReplayShells(rec)
    d = diagnose(ReplayAPI(rec), shells)
    assert sorted(shells.opened) == ["node-1", "node-2", "node-3"]
    assert not [x for x in d.not_checked if "node-2" in (x.get("nodes") or []) and not x.get("codes")]


def test_an_init_container_exit_code_of_1e999_does_not_raise():
    """JSON's 1e999 is float('inf') in Python: int() of it raised OverflowError out of
    build_snapshot (the init-container reading added since 7eddf53), losing the whole diagnosis."""
    status = json.loads('{"phase": "Pending", "containerStatuses": [{"name": "kube-flannel", "ready": false, '
                        '"restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}], '
                        '"initContainerStatuses": [{"name": "install-cni", "ready": false, '
                        '"restartCount": 1e999, "state": {"terminated": {"exitCode": 1e999}}}]}')
    pod = {"metadata": {"name": "kube-flannel-ds-x", "namespace": "kube-flannel"},
           "spec": {"nodeName": "n1", "containers": [{"name": "kube-flannel"}]}, "status": status}
    info = S.pod_info(pod)
    assert info.name == "kube-flannel-ds-x"


@pytest.mark.parametrize("values", [5, "linux", {"linux": 1}, True])
def test_a_node_affinity_whose_values_are_no_list_does_not_lose_the_pods_check(values):
    """A DaemonSet's required node affinity with `values` that is no list (a recorded bundle, a
    proxy; the API server's schema says []string): the term is not evaluated (no "missing pod"
    finding on that DaemonSet's nodes) and the pods check still runs: a crashlooping kube-proxy
    pod on node-1 is still found. Old code: `values: 5` raised TypeError out of the pods check
    (every pod finding lost, a check error)."""
    from clusterfix_tui.core.checks import run_checks

    rec = copy.deepcopy(load("healthy"))
    for ds in rec["daemonsets"]["kube-flannel"]:
        ds["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In",
                                       "values": values}]}]}}}
    # node-3's flannel pod gone: a finding only if the (unevaluable) term were taken to match
    rec["pods"] = [p for p in rec["pods"] if not (p["metadata"]["name"].startswith("kube-flannel")
                                                  and p["spec"].get("nodeName") == "node-3")]
    kp = next(p for p in rec["pods"] if p["metadata"]["name"].startswith("kube-proxy")
              and p["spec"].get("nodeName") == "node-1")
    kp["status"]["phase"] = "Running"
    for cs in kp["status"]["containerStatuses"]:
        cs.update(ready=False, restartCount=7, state={"waiting": {"reason": "CrashLoopBackOff"}})
    snap = S.build_snapshot(ReplayAPI(rec), with_logs=False)
    findings, errors = run_checks(snap, {})
    assert errors == []
    got = sorted((f.code, f.node) for f in findings if f.code in ("KUBE_PROXY_CRASHLOOP", "POD_NOT_RUNNING"))
    assert got == [("KUBE_PROXY_CRASHLOOP", "node-1")]
