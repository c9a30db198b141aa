"""core/validate.py with fakes: each failed check names the step that likely fixes it."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from clusterfix_tui.commands.validate import junit_xml
from clusterfix_tui.core.model import CommandResult
from clusterfix_tui.core.validate import validate


def node(name, ready=True, cp=False):
    labels = {"node-role.kubernetes.io/control-plane": ""} if cp else {}
    return {"metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.0.{name[-1]}"}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "KubeletNotReady"}]}}


def pod(ns, name, node_, labels, ready=True, ip=None, port=None):
    spec = {"nodeName": node_, "containers": [{"name": "c", "ports": [
        {"containerPort": port, "protocol": "TCP"}] if port else []}]}
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}, "spec": spec,
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class API:
    def list_nodes(self):
        return [node("node-1", cp=True), node("node-2"), node("node-3", ready=False)]

    def list_pods(self, namespace=None, label_selector=None):
        out = []
        for n in ("node-1", "node-2", "node-3"):
            out.append(pod("kube-system", f"kube-proxy-{n}", n, {"k8s-app": "kube-proxy"},
                           ready=(n != "node-2")))
            if n != "node-3":
                out.append(pod("kube-flannel", f"flannel-{n}", n, {"app": "flannel"}))
            out.append(pod("default", f"echo-{n}", n, {"app": "echo"}, ip=f"10.244.{n[-1]}.2",
                           port=8080))
        return out

    def list_services(self, namespace=None):
        return [{"metadata": {"namespace": "media", "name": "jf"},
                 "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30096}]}}]


class Shell:
    def __init__(self, name):
        self.node = name

    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        if command.startswith("ip route get"):
            if self.node == "node-2":  # its packets are dropped on the way
                return CommandResult(124, "10.244.3.2 via 10.244.3.0 dev flannel.1 onlink\n")
            return CommandResult(0, "10.244.x.2 via 10.244.x.0 dev flannel.1 onlink\n")
        if "kubectl" in command:
            return CommandResult(1, "", "dial tcp 10.0.0.250:6443: no route to host")
        return CommandResult(0, "")

    def close(self):
        pass


class Prober:
    def http(self, url, timeout):
        return (200, "ok") if "10.0.0.1:" in url else (None, "timed out")

    def tcp(self, host, port, timeout):
        return False, "no"


def test_checks_and_the_steps_they_point_at():
    seen = []
    res = validate(API(), lambda n, a=None: Shell(n), None, on_check=seen.append,
                   prober=Prober())
    assert seen == res
    by = {(r.name, r.target): r for r in res}
    assert by[("node-ready", "node-3")].passed is False
    assert by[("kube-proxy-pod", "node-2")].fix_step == "pods"
    assert by[("flannel-pod", "node-3")].passed is False
    assert by[("nodeport", "media/jf@node-1")].passed is True
    assert by[("nodeport", "media/jf@node-2")].fix_step == "iptables"
    p2p = [r for r in res if r.name == "pod-to-pod"]
    assert {r.target.split("->")[0] for r in p2p} == {"node-1", "node-2", "node-3"}
    assert [r.fix_step for r in p2p if not r.passed] == ["iptables"]
    wk = [r for r in res if r.name == "worker-kubectl"]
    assert {r.target for r in wk} == {"node-2", "node-3"}  # not the control plane
    assert all(r.fix_step == "worker_kubeconfig" for r in wk)
    xml = ET.fromstring(junit_xml(res))
    assert int(xml.get("failures")) == sum(1 for r in res if not r.passed)
    assert "clusterfix-tui fix --step" in ET.tostring(xml, encoding="unicode")


def test_without_a_prober_nodeports_are_reported_unchecked():
    res = validate(API(), lambda n, a=None: Shell(n), None, prober=None)
    np = [r for r in res if r.name == "nodeport"]
    assert len(np) == 1 and not np[0].passed and "not checked" in np[0].detail
