"""Rollback fidelity of a route the cni_bridge step deletes or replaces, for routes whose JSON is
more than dst/gateway/dev: a multipath route (`"nexthops"`) and a route using a nexthop object
(`"nhid"`). Old code: a multipath route's spec had no nexthop (the rollback re-added another
route, or failed), a route with `nhid` was re-added as `nhid N via G dev D`, which the kernel
refuses ("Nexthop specification and nexthop id are mutually exclusive"), and a replaced route was
saved as `ip route show` text, re-read line by line (a multipath route spans several lines).
Real kernel, in a network namespace made for the test, through the engine's apply and rollback."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns, snapshot
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.apply import apply_plan, rollback
from clusterfix_tui.core.fixes.cni_bridge import STEP as CNI
from clusterfix_tui.core.fixes.cni_bridge import _route_spec, route_not_exact

# `ip -j route` of iproute2 6.1 on Linux 6.x, read in a namespace (see the setup below)
MULTIPATH = {"dst": "10.244.3.0/24", "protocol": "static", "metric": 50, "flags": [],
             "nexthops": [{"gateway": "10.0.0.2", "dev": "d0", "weight": 3, "flags": []},
                          {"gateway": "10.1.0.2", "dev": "d1", "weight": 1, "flags": ["onlink"]}]}
NHID = {"dst": "10.244.5.0/24", "nhid": 5, "gateway": "10.0.0.2", "dev": "flannel.1",
        "metric": 7, "flags": []}
SETUP = ("ip link add d0 type veth peer name p0 && ip link add d1 type veth peer name p1 && "
         "ip link add flannel.1 type veth peer name f1 && "
         "for d in d0 p0 d1 p1 flannel.1 f1; do ip link set $d up; done && "
         "ip addr add 10.0.0.1/24 dev d0 && ip addr add 10.1.0.1/24 dev d1 && "
         "ip addr add 10.244.1.0/32 dev flannel.1")


def test_a_multipath_route_is_given_with_every_nexthop() -> None:
    assert _route_spec(MULTIPATH, default_dev=None) == (
        "10.244.3.0/24 proto static scope global metric 50 nexthop via 10.0.0.2 dev d0 weight 3 "
        "nexthop via 10.1.0.2 dev d1 weight 1 onlink")


def test_a_route_with_a_nexthop_object_is_given_by_its_id_only() -> None:
    assert _route_spec(NHID) == "10.244.5.0/24 nhid 5 scope global metric 7"


@pytest.mark.parametrize("route", [
    dict(MULTIPATH, encap={"type": "mpls"}),
    dict(MULTIPATH, nexthops=[{"gateway": "10.0.0.2", "dev": "d0", "weight": 1, "encap": "x"}]),
    {"dst": "10.244.4.0/24", "gateway": "10.0.0.9", "dev": "d0", "metrics": [
        {"mtu": {"lock": True, "value": 1400}}]},
    {"dst": "10.244.4.0/24", "dev": "d0", "via": {"family": "inet6", "host": "fe80::1"}},
    {"dst": "fd00::/64", "dev": "d0", "expires": "297sec"},
])
def test_a_route_with_attributes_not_restored_is_not_deleted(route) -> None:
    """Old code: deleted, and the rollback re-added a route without those attributes."""
    assert route_not_exact(route) is not None and _route_spec(route, None) is None
    f = finding("FLANNEL_MISSING_ROUTE", "node-1", "cni_bridge", device="flannel.1",
                link_present=True, missing=[], wrong_route_get=[],
                shadowing=[{"peer_node": "node-2", "pod_cidr": "10.244.0.0/16",
                            "dst": route["dst"], "route": route["dst"], "json": route}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    assert not [a for a in plan.actions if "route del" in a.command]
    assert any("cannot be restored exactly" in n for n in plan.notes), plan.notes


@pytest.fixture
def netns():
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


def _apply_and_roll_back(netns: str, plan, ids: list[str], tmp_path: Path) -> tuple[str, str]:
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, ids, runner)
    assert out.status == "changed", out.to_dict()
    during = ns(netns, "ip route show")
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    return during, ns(netns, "ip route show")


@pytest.mark.lab
def test_a_stale_route_using_a_nexthop_object_comes_back(netns, tmp_path: Path) -> None:
    ns(netns, SETUP + " && ip nexthop add id 5 via 10.244.5.0 dev flannel.1 onlink && "
                      "ip route add 10.244.5.0/24 nhid 5 metric 7")
    before = ns(netns, "ip route show")
    (route,) = json.loads(ns(netns, "ip -j route show to exact 10.244.5.0/24"))
    f = finding("FLANNEL_STALE_SUBNET", "node-1", "cni_bridge", device="flannel.1",
                pod_cidr="10.244.1.0/24", stale_routes=[route | {"reason": "not owned"}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (delete,) = [a for a in plan.actions if "route del" in a.command]
    during, after = _apply_and_roll_back(netns, plan, [delete.id], tmp_path)
    assert "10.244.5.0/24" not in during
    assert after == before


@pytest.mark.lab
def test_a_shadowing_multipath_route_comes_back_with_all_its_nexthops(netns, tmp_path) -> None:
    ns(netns, SETUP + " && ip route add 10.244.3.0/25 proto static metric 50 nexthop via "
                      "10.0.0.2 dev d0 weight 3 nexthop via 10.1.0.2 dev d1 onlink")
    before = ns(netns, "ip route show")
    (route,) = json.loads(ns(netns, "ip -j route show to exact 10.244.3.0/25"))
    assert route.get("nexthops")
    f = finding("FLANNEL_MISSING_ROUTE", "node-1", "cni_bridge", device="flannel.1",
                link_present=True, missing=[], wrong_route_get=[],
                shadowing=[{"peer_node": "node-2", "pod_cidr": "10.244.3.0/24",
                            "dst": "10.244.3.0/25", "route": "10.244.3.0/25", "json": route}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (delete,) = [a for a in plan.actions if "route del" in a.command]
    during, after = _apply_and_roll_back(netns, plan, [delete.id], tmp_path)
    assert "10.244.3.0/25" not in during
    assert after == before


@pytest.mark.lab
def test_a_replaced_multipath_route_comes_back_exactly(netns, tmp_path: Path) -> None:
    ns(netns, SETUP + " && ip route add 10.244.2.0/24 proto static mtu 1400 nexthop via 10.0.0.2 "
                      "dev d0 weight 2 nexthop via 10.1.0.2 dev d1")
    before = ns(netns, "ip route show")
    f = finding("FLANNEL_MISSING_ROUTE", "node-1", "cni_bridge", device="flannel.1",
                link_present=True, wrong_route_get=[], shadowing=[],
                missing=[{"peer_node": "node-2", "pod_cidr": "10.244.2.0/24",
                          "expected": "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
                          "actual": ["10.244.2.0/24"]}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (replace,) = [a for a in plan.actions if "route replace" in a.command]
    during, after = _apply_and_roll_back(netns, plan, [replace.id], tmp_path)
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1" in during
    assert after == before


@pytest.mark.lab
def test_a_route_using_a_nexthop_object_is_not_replaced(netns, tmp_path: Path) -> None:
    """Its nexthop object's id cannot be given back with the gateway the kernel dumps: the
    action refuses, the route stays (old code: replaced, and its rollback failed)."""
    ns(netns, SETUP + " && ip nexthop add id 9 via 10.0.0.2 dev d0 && "
                      "ip route add 10.244.2.0/24 nhid 9")
    before = ns(netns, "ip route show")
    f = finding("FLANNEL_MISSING_ROUTE", "node-1", "cni_bridge", device="flannel.1",
                link_present=True, wrong_route_get=[], shadowing=[],
                missing=[{"peer_node": "node-2", "pod_cidr": "10.244.2.0/24",
                          "expected": "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
                          "actual": ["10.244.2.0/24 via 10.0.0.2 dev d0"]}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (replace,) = [a for a in plan.actions if "route replace" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [replace.id], runner)
    assert out.status == "failed", out.to_dict()
    assert "cannot be restored exactly" in json.dumps(out.to_dict())
    assert ns(netns, "ip route show") == before
    rollback((plan, out), runner)  # a failed action's rollback runs too: it changes nothing here
    assert ns(netns, "ip route show") == before


@pytest.mark.lab
def test_a_stale_ipv6_route_is_seen_deleted_and_put_back(netns, tmp_path: Path) -> None:
    """`ip route show to exact <IPv6 prefix>` lists nothing without -6: the old action and its
    precondition never saw a stale route on flannel-v6.1 (never deleted, and called done)."""
    ns(netns, "ip link add flannel-v6.1 type veth peer name f6 && ip link set flannel-v6.1 up && "
              "ip link set f6 up && ip -6 addr add fd00:10:244:1::/128 dev flannel-v6.1 nodad && "
              "ip -6 route add fd00:10:244:5::/64 via fd00:10:244:5:: dev flannel-v6.1 onlink")
    before = ns(netns, "ip -6 route show")
    (route,) = json.loads(ns(netns, "ip -6 -j route show to exact fd00:10:244:5::/64"))
    f = finding("FLANNEL_STALE_SUBNET", "node-1", "cni_bridge", device="flannel-v6.1",
                pod_cidr="fd00:10:244:1::/64", stale_routes=[route | {"reason": "not owned"}])
    plan = CNI.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (delete,) = [a for a in plan.actions if "route del" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner,
                     precheck=pre.make_prechecker(None, lambda node, addr=None: SimpleNamespace(
                         run=lambda command, timeout=None: runner.sh(command))))
    assert out.status == "changed", out.to_dict()
    assert "fd00:10:244:5::/64" not in ns(netns, "ip -6 route show")
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    assert ns(netns, "ip -6 route show") == before
