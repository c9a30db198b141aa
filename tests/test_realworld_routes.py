"""FLANNEL_MISSING_ROUTE where the node has another route to the peer's pod subnet (a host-gw
leftover after a move to vxlan, a blackhole): `ip route replace` overwrites it, so its rollback
must put that route back, not only delete the added one."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info

sys.path.insert(0, str(Path(__file__).parent))

# the node's routes to the peer's pod subnet before the repair (SYNTHESISED: flannel's host-gw
# route left behind, `ip -j route` as iproute2 prints it)
OLD_ROUTE = {"dst": "10.244.1.0/24", "gateway": "10.0.0.12", "dev": "eth0", "protocol": "static",
             "flags": []}


def _plan(tmp_nbdir: str | None = None) -> tuple[Any, Any]:
    from test_realworld import _Diag

    from clusterfix_tui.core.fixes import get_step

    n = "N0NCE"
    routes = [OLD_ROUTE, {"dst": "10.244.0.0/24", "dev": "cni0", "protocol": "kernel",
                          "scope": "link", "prefsrc": "10.244.0.1", "flags": []}]
    out = (f"@@CFX {n} BEGIN ip_route\n{json.dumps(routes)}\n@@CFX {n} ERR ip_route\n\n"
           f"@@CFX {n} END ip_route rc=0\n")
    f = parse_facts("node-a", out, n)
    ann = {"flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": name, "annotations": dict(ann, **{
                 "flannel.alpha.coreos.com/public-ip": ip,
                 "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"%s"}' % mac})},
              "spec": {"podCIDR": cidr}, "status": {"addresses": [{"type": "InternalIP",
                                                                   "address": ip}]}}
             for name, cidr, ip, mac in (("node-a", "10.244.0.0/24", "10.0.0.11", "aa:bb:cc:00:00:01"),
                                         ("node-b", "10.244.1.0/24", "10.0.0.12", "aa:bb:cc:00:00:02"))]
    snap = ClusterSnapshot(nodes={x.name: x for x in map(node_info, nodes)}, daemonsets=(
        {"namespace": "kube-flannel", "name": "kube-flannel-ds", "uid": "u", "labels": {},
         "components": ["flannel"], "configmaps": []},))
    snap = replace(snap, shape=detect_shape(snap, {"node-a": f}))
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == []
    (x,) = [x for x in findings if x.code == "FLANNEL_MISSING_ROUTE"]
    plan = get_step("cni_bridge").plan(_Diag([x], {"node-a": f}, snap))
    (a,) = [a for a in plan.actions if "ip route replace" in a.command]
    return x, a


def test_replaced_route_is_saved_and_put_back_by_the_rollback():
    """Old code: the rollback was only `ip route del <the added route>`: the host-gw route the
    replace overwrote was lost."""
    x, a = _plan()
    assert x.data.missing[0]["actual"] == ["10.244.1.0/24 via 10.0.0.12 dev eth0"]
    assert re.search(r"ip route save to exact 10\.244\.1\.0/24 > \S+ &&", a.command)
    assert "ip route restore <" in a.rollback.command
    assert a.change["before"] == "10.244.1.0/24 via 10.0.0.12 dev eth0"


@pytest.mark.lab
def test_replace_and_rollback_on_a_real_routing_table(tmp_path):
    """In a network namespace made for the test: the planned command replaces the host-gw route
    with flannel's, the rollback puts the node's routes back exactly as they were."""
    from fix_helpers import del_netns, new_netns, ns

    _x, a = _plan()
    bdir = re.search(r"mkdir -p -m 700 (\S+)", a.command).group(1)
    cmd = a.command.replace(bdir, shlex.quote(str(tmp_path / "b")))
    rb = a.rollback.command.replace(bdir, shlex.quote(str(tmp_path / "b")))
    name = new_netns()
    try:
        ns(name, "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && "
                 "ip link set peer0 up && ip addr add 10.0.0.11/24 dev eth0 && "
                 "ip link add flannel.1 type veth peer name fpeer && ip link set flannel.1 up && "
                 "ip link set fpeer up && "
                 "ip route add 10.244.1.0/24 via 10.0.0.12 dev eth0 proto static")
        before = ns(name, "ip route show")
        ns(name, cmd)
        during = ns(name, "ip route show to exact 10.244.1.0/24")
        assert "dev flannel.1" in during and "via 10.244.1.0" in during
        ns(name, rb)
        assert ns(name, "ip route show") == before
    finally:
        del_netns(name)


@pytest.mark.lab
def test_ipv6_route_precondition_sees_the_route(tmp_path):
    """`ip route show to exact <IPv6 prefix>` prints nothing without -6 (IPv4 only): the
    precondition of an IPv6 flannel route never saw it there (old code); now it says done."""
    from fix_helpers import del_netns, new_netns, ns

    from clusterfix_tui.core.fixes.cni_bridge import _route_there
    from clusterfix_tui.core.fixes.preconditions import EXIT_DONE

    want = "fd00:10:244:1::/64 via fd00::12 dev eth0"
    pre = _route_there(want)
    name = new_netns()
    try:
        ns(name, "ip link add eth0 type veth peer name peer0 && ip link set eth0 up && "
                 "ip link set peer0 up && ip addr add fd00::11/64 dev eth0 nodad && "
                 f"ip -6 route add {want}")
        p = subprocess.run(["ip", "netns", "exec", name, "sh", "-c", pre.command],
                           capture_output=True, text=True)
        assert p.returncode == EXIT_DONE and "already" in p.stdout, (p.returncode, p.stdout)
    finally:
        del_netns(name)


def test_a_blackhole_route_is_shown_as_one():
    """`ip -j route` gives a non-unicast route's kind in "type" (calico's `blackhole
    10.244.1.0/26 proto bird`): the evidence and the plan name it (old code: '10.244.1.0/26',
    read as an ordinary route)."""
    from clusterfix_tui.core.parsers import render_route

    r = {"type": "blackhole", "dst": "10.244.1.0/26", "protocol": "bird", "flags": []}
    assert render_route(r) == "blackhole 10.244.1.0/26"
    assert render_route(OLD_ROUTE) == "10.244.1.0/24 via 10.0.0.12 dev eth0"
