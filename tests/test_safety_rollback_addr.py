"""Rollback fidelity of a removed address: put back as it was, broadcast included. The CNI bridge
plugin and flannel add their addresses through netlink, which sets the IPv4 broadcast; `ip addr
add X dev D` alone sets none, so the old rollback left cni0's address without its `brd`. Real
kernel, in a network namespace made for the test, through the engine's apply and rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns, snapshot
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes.apply import apply_plan, rollback
from clusterfix_tui.core.fixes.cni_bridge import STEP as CNI
from clusterfix_tui.core.fixes.step import addr_add_args

pytestmark = pytest.mark.lab  # needs root and network namespaces


@pytest.fixture
def netns():
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


def test_wrong_cni0_address_comes_back_with_its_broadcast(netns, tmp_path: Path) -> None:
    ns(netns, "ip link add cni0 type bridge && ip link set cni0 up && "
              "ip addr add 10.244.9.1/16 brd + dev cni0")
    before = ns(netns, "ip -o -4 addr show dev cni0")
    assert "brd 10.244.255.255" in before
    facts = NodeFacts(node="node-1", complete=True,
                      addrs=tuple(json.loads(ns(netns, "ip -j addr show"))))
    f = finding("CNI_BRIDGE_CONFLICT", "node-1", "cni_bridge", device="cni0",
                wrong_addresses=["10.244.9.1/16"], addresses=["10.244.9.1/16"],
                expected="10.244.1.1/24", pod_cidr="10.244.1.0/24")
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    (delete,) = [a for a in plan.actions if "ip addr del" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner)
    assert out.status == "changed", out.to_dict()
    assert "10.244.9.1" not in ns(netns, "ip -o -4 addr show dev cni0")
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    assert ns(netns, "ip -o -4 addr show dev cni0") == before


def test_addr_add_args_reads_the_address_as_the_facts_show_it() -> None:
    facts = NodeFacts(node="n", complete=True, addrs=({"ifname": "cni0", "addr_info": [
        {"family": "inet", "local": "10.244.9.1", "prefixlen": 16, "broadcast": "10.244.255.255",
         "scope": "global", "label": "cni0:x"}]},))
    assert addr_add_args(facts, "cni0", "10.244.9.1/16") == \
        "10.244.9.1/16 brd 10.244.255.255 label cni0:x"
    assert addr_add_args(facts, "cni0", "10.244.9.1/24") == "10.244.9.1/24"  # not that one
    assert addr_add_args(None, "cni0", "10.244.9.1/16; reboot") == "'10.244.9.1/16; reboot'"
