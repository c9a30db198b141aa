"""What is re-checked between the plan and the run, and what a retry keeps (safety2):
- the opt-in nft policy flip (`policy accept`) had no precondition: run on a chain whose policy
  was already accept, it "changed" it and its rollback then set drop (a state the node never
  had). Now the policy is re-read when it runs: not drop = done, nothing to roll back.
- the accept_ra=2 action saved the interface's accept_ra every time it ran: a second run (a
  retry) saved the 2 the first had set, and the rollback put 2 back. Now saved once.
Real nft and sysctl in a network namespace made for the test."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.apply import apply_plan, rollback
from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.core.fixes.host_network import STEP as HOST

pytestmark = pytest.mark.lab  # needs root and network namespaces


@pytest.fixture
def netns():
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


def _policy_plan():
    rule = {"backend": "nft-native", "family": "inet", "table": "filter", "chain": "input",
            "kind": "policy", "verdict": "drop"}
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_POLICY_DROP", "node-1", "host_network",
                                            rules=[rule])]))
    (flip,) = [a for a in plan.actions if is_opt_in(a)]
    return plan, flip


@pytest.mark.parametrize("policy, status", [("drop", "changed"), ("accept", "unchanged")])
def test_the_nft_policy_flip_rereads_the_policy(netns, tmp_path: Path, policy: str,
                                                status: str) -> None:
    ns(netns, "nft add table inet filter && nft add chain inet filter input "
              f"'{{ type filter hook input priority 0; policy {policy}; }}'")
    plan, flip = _policy_plan()
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    shells = SimpleNamespace(run=lambda command, timeout=None: runner.sh(command))
    out = apply_plan(plan, [flip.id], runner,
                     precheck=pre.make_prechecker(None, lambda node, addr=None: shells))
    assert out.status == status, out.to_dict()
    rollback((plan, out), runner)
    assert f"policy {policy};" in ns(netns, "nft list chain inet filter input")


def test_accept_ra_survives_a_retry(netns, tmp_path: Path) -> None:
    ns(netns, "ip link add eth0 type veth peer name p0 && sysctl -qw net.ipv6.conf.eth0.accept_ra=1")
    f = finding("IPV6_FORWARD_OFF", "node-1", "host_network", value="0",
                sysctls=["net.ipv6.conf.all.forwarding"], ra_interfaces=["eth0"])
    plan = HOST.plan(FakeDiagnosis([f]))
    (ra,) = [a for a in plan.actions if "sysctl -n net.ipv6.conf.eth0.accept_ra" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    for _ in range(2):  # the action, then a retry of it
        r = runner.sh(ra.command)
        assert r.exit_code == 0, r.stderr
    assert ns(netns, "sysctl -n net.ipv6.conf.eth0.accept_ra").strip() == "2"
    r = runner.sh(ra.rollback.command)
    assert r.exit_code == 0, r.stderr
    assert ns(netns, "sysctl -n net.ipv6.conf.eth0.accept_ra").strip() == "1"


def _forwarding_plan(netns: str):
    from clusterfix_tui.core.facts import NodeFacts

    facts = NodeFacts(node="node-1", complete=True,
                      links=tuple(json.loads(ns(netns, "ip -j link show"))))
    f = finding("IP_FORWARD_OFF", "node-1", "host_network", value="1", interfaces=["eth1"],
                sysctls=["net.ipv4.conf.eth1.forwarding"])
    plan = HOST.plan(FakeDiagnosis([f], facts={"node-1": facts}))
    (a,) = [a for a in plan.actions if "net.ipv4.conf.eth1.forwarding=1" in a.command]
    return plan, a


@pytest.mark.parametrize("recreated, status, after", [(False, "changed", "1"),
                                                      (True, "skipped", "0")])
def test_a_device_sysctl_runs_only_on_the_device_the_diagnosis_read(
        netns, tmp_path: Path, recreated: bool, status: str, after: str) -> None:
    """Old code: a device re-created (or renamed) under the same name since the diagnosis got
    the setting meant for the one that was read."""
    ns(netns, "ip link add eth1 type veth peer name p1 && sysctl -qw net.ipv4.conf.eth1.forwarding=0")
    plan, a = _forwarding_plan(netns)
    if recreated:
        ns(netns, "ip link add tmp0 type veth peer name tmp1 && ip link del eth1 && "
                  "ip link add eth1 type veth peer name p1 && "
                  "sysctl -qw net.ipv4.conf.eth1.forwarding=0")
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    shells = SimpleNamespace(run=lambda command, timeout=None: runner.sh(command))
    out = apply_plan(plan, [a.id], runner,
                     precheck=pre.make_prechecker(None, lambda node, addr=None: shells))
    assert out.status == status, out.to_dict()
    assert ns(netns, "sysctl -n net.ipv4.conf.eth1.forwarding").strip() == after


def test_a_per_device_rollback_leaves_a_device_re_created_since_alone() -> None:
    # flannel re-creates cni0 / flannel.1: the rollback of "forwarding=1 on cni0" set 0 on the
    # NEW device (whose setting this session never changed), cutting the node's pods off again.
    # Real sysctls in a network namespace of this test's own.
    import subprocess
    import uuid

    from clusterfix_tui.core.fixes.host_network import _on_the_same_device, sysctl_set

    ns = f"cfx-rb-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def sh(cmd: str) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], check=True,
                                  capture_output=True, text=True).stdout

        sh("ip link add cfx0 type bridge && sysctl -qw net.ipv4.conf.cfx0.forwarding=0")
        idx = int(sh("cat /sys/class/net/cfx0/ifindex"))
        key = "net.ipv4.conf.cfx0.forwarding"
        rollback = _on_the_same_device("cfx0", idx, sysctl_set(key, "0"))
        sh(sysctl_set(key, "1"))  # the fix
        # re-created since, by its owner, with forwarding on
        sh("ip link del cfx0 && sysctl -qw net.ipv4.conf.default.forwarding=1 && "
           "ip link add cfx0 type bridge")
        assert int(sh("cat /sys/class/net/cfx0/ifindex")) != idx
        out = sh(rollback)
        assert "not the device this session changed" in out
        assert sh(f"sysctl -n {key}").strip() == "1"
        # the same device: the rollback does put 0 back
        idx2 = int(sh("cat /sys/class/net/cfx0/ifindex"))
        sh(_on_the_same_device("cfx0", idx2, sysctl_set(key, "0")))
        assert sh(f"sysctl -n {key}").strip() == "0"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
