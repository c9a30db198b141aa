"""The cni_bridge step: plans from findings, and its commands on real links in a netns."""

from __future__ import annotations

import json

import pytest
from fix_helpers import FakeDiagnosis, NetnsRunner, del_netns, finding, new_netns, ns, snapshot

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import apply_plan, check_rollbacks, default_approved, rollback

STEP = get_step("cni_bridge")
GOOD_MAC = "aa:bb:cc:00:00:02"
WRONG_MAC = "de:ad:be:ef:00:02"


def vtep(node="node-1"):
    return finding("FLANNEL_STALE_VTEP", node, "cni_bridge", peer_node="node-2",
                   peer_ip="10.213.5.12", peer_subnet_gw="10.244.1.0", wrong_mac=WRONG_MAC,
                   expected_mac=GOOD_MAC, where=["fdb", "neigh"], device="flannel.1")


STALE_ROUTE = {"dst": "10.244.9.0/24", "gateway": "10.244.9.0", "dev": "flannel.1",
               "flags": ["onlink"]}


def stale_subnet(node="node-1", routes=(STALE_ROUTE,)):
    return finding("FLANNEL_STALE_SUBNET", node, "cni_bridge", device="flannel.1",
                   pod_cidr="10.244.0.0/24", expected_address="10.244.0.0/32",
                   stale_addresses=["10.244.7.0/32"], subnet_env=None, subnet_env_stale=False,
                   stale_routes=list(routes),
                   flannel_pod="kube-flannel-ds-node-1", namespace="kube-flannel")


def missing(node="node-1"):
    return finding("FLANNEL_MISSING_ROUTE", node, "cni_bridge", missing=[{
        "peer_node": "node-3", "pod_cidr": "10.244.2.0/24",
        "expected": "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink"}], wrong_route_get=[])


def test_nothing_to_do():
    assert STEP.plan(FakeDiagnosis([], snapshot=snapshot())).nothing_to_do


def test_bridge_conflict_without_addresses_deletes_the_device_with_a_rollback_note():
    d = FakeDiagnosis([finding("CNI_BRIDGE_CONFLICT", "node-2", "cni_bridge", device="cni0",
                               pod_cidr="10.244.1.0/24")], snapshot=snapshot())
    plan = STEP.plan(d)
    dele = [a for a in plan.actions if "ip link delete cni0" in a.command]
    assert dele and dele[0].rollback is None and "recreate" in dele[0].rollback_note
    assert check_rollbacks(plan) == []


def test_bridge_conflict_removes_the_wrong_address_warns_and_restarts_flannel_there_only():
    d = FakeDiagnosis([finding("CNI_BRIDGE_CONFLICT", "node-2", "cni_bridge", device="cni0",
                               wrong_addresses=["10.244.9.1/24"], expected="10.244.1.1/24",
                               pod_cidr="10.244.1.0/24", flannel_pod=None,
                               namespace="kube-flannel")], snapshot=snapshot())
    plan = STEP.plan(d)
    assert plan.actions[0].mutating is False and "ip -d link show" in plan.actions[0].command
    dele = [a for a in plan.actions if "ip addr del 10.244.9.1/24 dev cni0" in a.command]
    assert dele and dele[0].rollback.command == "ip addr add 10.244.9.1/24 dev cni0"
    assert not any("ip link delete" in a.command for a in plan.actions)  # pods stay attached
    assert plan.actions[-1].api == {"verb": "delete_pod", "namespace": "kube-flannel",
                                    "name": "kube-flannel-ds-node-2"}
    assert any(n.startswith("WARNING") and "node-2" in n for n in plan.notes)
    assert check_rollbacks(plan) == []
    assert {a.target for a in plan.actions} == {"node-2"}


def test_stray_conflist_is_moved_aside_with_rollback():
    d = FakeDiagnosis([finding("CNI_STRAY_CONFLIST", "node-3", "cni_bridge",
                               files=["05-evil.conf", "10-flannel.conflist"],
                               active="05-evil.conf", flannel_file="10-flannel.conflist",
                               stray=["/etc/cni/net.d/05-evil.conf"], unparseable=[],
                               dir="/etc/cni/net.d")], snapshot=snapshot())
    plan = STEP.plan(d)
    mv = [a for a in plan.actions if " mv " in f" {a.command} "]
    assert len(mv) == 1
    assert "/etc/cni/net.d/05-evil.conf" in mv[0].command
    assert mv[0].rollback.command.startswith("mv -f -- /var/backups/clusterfix/")
    assert not any(a.kind == "api" for a in plan.actions)  # no flannel restart needed


def _links(name):
    return {
        "addr": ns(name, "ip -o addr show dev flannel.1"),
        "route": ns(name, "ip route show"),
        "fdb": ns(name, "bridge fdb show dev flannel.1 | grep dst || true"),
        "neigh": ns(name, "ip neigh show dev flannel.1"),
    }


@pytest.mark.lab
def test_commands_on_real_links_fix_and_rollback_restores(tmp_path):
    name = new_netns()
    try:
        ns(name, "ip link add eth0 type veth peer name eth0p && ip addr add 10.213.5.11/24 dev eth0 && "
                 "ip link set eth0 up && "
                 "ip link add flannel.1 type vxlan id 1 local 10.213.5.11 dstport 8472 nolearning && "
                 "ip addr add 10.244.0.0/32 dev flannel.1 && ip addr add 10.244.7.0/32 dev flannel.1 && "
                 # no duplicate address detection: the link-local address is final at once
                 # (a "tentative" flag clearing between two reads is not the fix's doing)
                 "echo 0 > /proc/sys/net/ipv6/conf/flannel.1/accept_dad && "
                 "ip link set flannel.1 up && "
                 # a stale route with every attribute a rollback must give back: its source is
                 # the stale address (deleting that address makes the kernel drop it too)
                 "ip route add 10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink "
                 "src 10.244.7.0 proto static metric 20 mtu 1400 && "
                 "ip route add 10.244.8.0/24 dev flannel.1 scope global && "
                 f"bridge fdb append {WRONG_MAC} dev flannel.1 dst 10.213.5.12 self permanent && "
                 f"ip neigh replace 10.244.1.0 lladdr {WRONG_MAC} dev flannel.1 nud permanent")
        before = _links(name)
        # the finding's routes as the check takes them: `ip -j route` entries, every attribute
        stale = [r for r in json.loads(ns(name, "ip -j route show dev flannel.1"))
                 if r["dst"] in ("10.244.9.0/24", "10.244.8.0/24")]
        assert len(stale) == 2 and any(r.get("prefsrc") == "10.244.7.0" for r in stale), stale
        stale = [r | {"dev": "flannel.1"} for r in stale]
        d = FakeDiagnosis([vtep(), stale_subnet(routes=stale), missing()], snapshot=snapshot())
        plan = STEP.plan(d)
        runner = NetnsRunner({"node-1": name}, str(tmp_path))
        out = apply_plan(plan, default_approved(plan), runner)
        assert out.status == "changed", [(o.action_id, o.result) for o in out.actions]
        after = _links(name)
        assert "10.244.7.0" not in after["addr"] and "10.244.0.0/32" in after["addr"]
        assert "10.244.9.0/24" not in after["route"] and "10.244.8.0/24" not in after["route"]
        assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in after["route"]
        assert GOOD_MAC in after["fdb"] and WRONG_MAC not in after["fdb"]
        assert GOOD_MAC in after["neigh"]
        assert runner.api_calls == [{"verb": "delete_pod", "namespace": "kube-flannel",
                                     "name": "kube-flannel-ds-node-1"}]
        # the snapshot action's output (journaled) has the state before
        snap = out.actions[0].result.stdout
        assert "### ip route" in snap and "10.244.9.0/24" in snap
        rb = rollback((plan, out), runner)
        assert rb.status == "changed", rb
        # the routes come back exactly: proto, scope, src, metric, mtu, onlink
        assert _links(name) == before
        assert "10.244.9.0/24 via 10.244.9.0 dev flannel.1 proto static src 10.244.7.0 metric 20 " \
            "onlink mtu 1400" in before["route"], before["route"]
    finally:
        del_netns(name)
