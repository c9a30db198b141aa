"""trust2: the pods step's new k3s/RKE2 unit restart (KUBE_PROXY_NO_RULES, embedded kube-proxy) and
DNS pod deletes, reviewed for what a root tool on a production node must never do: two actions
with one id (approved, run, journaled and rolled back as one), and a restart of the node's whole
k3s unit (kubelet, flannel, on a server the API server and etcd) when its reason is gone."""

from __future__ import annotations

import os
import subprocess

import pytest
from fix_helpers import finding
from test_faultvar_net2 import _k3s_diag

from clusterfix_tui.core.fixes import get_step


def _dns_finding(node: str, pod: str) -> object:
    return finding("DNS_POD_NOT_RUNNING", node, "pods", namespace="kube-system", pod=pod,
                   deployment="coredns", replicas=2, reason="CrashLoopBackOff",
                   restart_count=7, restartable=True)


def test_k3s_unit_restart_and_dns_pod_delete_on_one_node_have_distinct_ids() -> None:
    """k3s ships CoreDNS (k8s-app=kube-dns): a k3s node with kube-proxy's rules gone and a
    crash-looping CoreDNS pod got `pods:node-2:10` twice (the unit restart and the pod delete)."""
    d = _k3s_diag({"k3s"})
    d.findings += [_dns_finding("node-2", "coredns-6799fbcd5-abcde"),
                   _dns_finding("node-2", "coredns-6799fbcd5-fghij")]
    plan = get_step("pods").plan(d)
    ids = [a.id for a in plan.actions]
    assert len(ids) == len(set(ids)) == 4, ids
    kinds = sorted((a.kind, a.command.split()[0] if a.kind == "shell" else a.api["verb"])
                   for a in plan.actions)
    assert kinds == [("api", "delete_pod"), ("api", "delete_pod"), ("shell", "i=0;"), ("shell", "systemctl")]


def _run(script: str, tmp: str, *, active: bool, nat: str) -> subprocess.CompletedProcess:
    """Run a precondition script against fake systemctl / iptables-nft-save on PATH."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    with open(os.path.join(tmp, "nat.save"), "w") as fh:
        fh.write(nat)
    fakes = {"systemctl": f"#!/bin/sh\nexit {0 if active else 3}\n",
             "iptables-nft-save": f"#!/bin/sh\ncat {tmp}/nat.save\n",
             "iptables-save": f"#!/bin/sh\ncat {tmp}/nat.save\n"}
    for name, body in fakes.items():
        path = os.path.join(bindir, name)
        with open(path, "w") as fh:
            fh.write(body)
        os.chmod(path, 0o755)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=20,
                          env={"PATH": f"{bindir}:/usr/bin:/bin"}, check=False)


NAT_BACK = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n"
            "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
            "COMMIT\n")
NAT_GONE = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"


@pytest.mark.parametrize("nat,active,rc", [(NAT_GONE, True, 0), (NAT_BACK, True, 3),
                                           (NAT_GONE, False, 1)])
def test_k3s_restart_precondition_rechecks_that_the_rules_are_still_missing(
        tmp_path, nat: str, active: bool, rc: int) -> None:
    """Between plan and run kube-proxy may have re-synced on its own, or an earlier step
    (cni_bridge, for the embedded flannel) restarted the same unit: its rules are back, and
    restarting k3s again (its API server and etcd on a server) would be a second outage for
    nothing. The precondition now says 'done' (3) then; still missing and active: holds (0)."""
    restart = get_step("pods").plan(_k3s_diag({"k3s"})).actions[0]
    assert restart.command == "systemctl restart k3s"
    got = _run(restart.precondition.command, str(tmp_path), active=active, nat=nat)
    assert got.returncode == rc, (got.stdout, got.stderr)


def _labelled(*control_planes: str):
    from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

    def info(name: str) -> NodeInfo:
        labels = {"node-role.kubernetes.io/control-plane": "true",
                  "node-role.kubernetes.io/master": "true"} if name in control_planes else {}
        return NodeInfo(name=name, internal_ip=None, addresses=(), pod_cidr=None, conditions={},
                        annotations={}, labels=labels, kubelet_version=None)

    return ClusterSnapshot(nodes={n: info(n) for n in ("node-1", "node-2", "node-3")})


@pytest.mark.parametrize("servers,said", [(("node-2",), True), (("node-2", "node-1"), False),
                                          ((), False)])
def test_restarting_the_only_k3s_server_says_the_api_goes_down(servers, said: bool) -> None:
    """`systemctl restart k3s` on a single-server cluster takes the Kubernetes API down for
    everyone (and the session's own next reads): the risk shown before approval says so."""
    d = _k3s_diag({"k3s"})
    d.snapshot = _labelled(*servers)
    restart = get_step("pods").plan(d).actions[0]
    assert restart.command == "systemctl restart k3s"
    assert ("only control-plane node" in restart.risk) is said, restart.risk
    assert "the API server (and embedded etcd) restart too" in restart.risk
