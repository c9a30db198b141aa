"""Which faults of the lab's catalog apply to which lab shape (no lab needed: the catalog's rules)."""

from __future__ import annotations

import pytest

from clusterfix_tui.lab import cluster
from clusterfix_tui.lab import faults as F


class FakeLab:
    def __init__(self, shape: str) -> None:
        self.info = {"shape": shape, "nodes": [
            {"name": "node-1", "role": "control-plane", "pods": []},
            {"name": "node-2", "role": "worker", "pods": [{"app": "jellyfin", "name": "jellyfin-x"}]},
            {"name": "node-3", "role": "worker", "pods": []}]}


def test_kubeadm_keeps_the_whole_catalog():
    assert set(F.applicable("kubeadm")) == set(F.FAULTS)


@pytest.mark.parametrize("shape", ["calico", "kube-proxy-free"])
def test_no_flannel_fault_outside_flannel_shapes(shape):
    names = F.applicable(shape)
    assert not [n for n in names if "flannel" in n or n in ("cni-bridge-conflict", "br-netfilter-off")]
    for host_level in ("ip-forward-off", "forward-drop", "firewall-reject"):
        assert host_level in names


def test_no_kube_proxy_fault_on_kube_proxy_free():
    names = F.applicable("kube-proxy-free")
    assert not [n for n in names if n.startswith(("iptables-shadow", "iptables-foreign", "kube-proxy"))]


def test_k3s_has_flannel_faults_but_no_kube_proxy_pod():
    names = F.applicable("k3s")
    assert "flannel-stale-subnet" in names and "cni-bridge-conflict" in names
    assert "kube-proxy-crashloop" not in names


@pytest.mark.parametrize("shape", F.SHAPES)
def test_all_places_only_applicable_faults(shape):
    placed = F.placement(FakeLab(shape))
    assert [name for name, _node in placed] and all(F.applies(name, shape) for name, _ in placed)
    assert {name for name, _ in placed} == set(F.applicable(shape)) - set(F.NOT_IN_ALL)


def test_inapplicable_named_fault_is_refused_with_the_reason():
    with pytest.raises(F.FaultError) as e:
        F.plan(["flannel-stale-vtep"], ["node-1", "node-2"], "calico")
    msg = str(e.value)
    assert "does not apply to a calico lab" in msg and "kubeadm, k3s" in msg and "no flannel.1" in msg
    with pytest.raises(F.FaultError):
        F.plan(["kube-proxy-crashloop:node-2"], ["node-1", "node-2"], "kube-proxy-free")
    with pytest.raises(F.FaultError):
        F.inject(FakeLab("kube-proxy-free"), "iptables-shadow")
    # applicable ones plan fine
    assert F.plan(["forward-drop", "ip-forward-off:node-1"], ["node-1", "node-2"], "calico")


def test_lab_up_refuses_before_building(tmp_path):
    with pytest.raises(cluster.LabError, match="does not apply to a kube-proxy-free lab"):
        cluster.up(tmp_path / "lab", nodes=2, faults="iptables-shadow", shape="kube-proxy-free")  # noqa: E501
    with pytest.raises(cluster.LabError, match="--shape must be one of"):
        cluster.up(tmp_path / "lab", nodes=2, shape="rke9")
    with pytest.raises(cluster.LabError, match="--ip-family must be one of"):
        cluster.up(tmp_path / "lab", nodes=2, ip_family="ipv6-only")
    assert not (tmp_path / "lab").exists()


def test_cli_refuses_an_inapplicable_fault_before_building(tmp_path):
    import os
    import subprocess
    import sys

    d = tmp_path / "lab"
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "lab", "up", "--dir", str(d), "--shape", "calico",
                        "--ip-family", "dual", "--faults", "flannel-stale-vtep"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"}, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "does not apply to a calico lab" in r.stderr and "no flannel.1" in r.stderr
    assert not d.exists()
    bad = subprocess.run([sys.executable, "-m", "clusterfix_tui", "lab", "up", "--dir", str(d), "--shape", "rke2"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "invalid choice: 'rke2'" in bad.stderr
