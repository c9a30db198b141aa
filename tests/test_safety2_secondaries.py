"""Removing a primary IPv4 address drops its secondaries (same network, same prefix length)
unless net.ipv4.conf.DEV.promote_secondaries=1 (which promotes one: then the re-added address
becomes a secondary). Checked in a network namespace (Linux 6.x): `ip addr del 10.244.9.1/16 dev
cni0` with 10.244.9.7/16 as its secondary leaves neither. Old code: the cni0 wrong-address and
flannel.1 stale-address actions deleted the primary, its secondaries went with it, and the
rollback put back the primary only. Now a secondary that is removed too goes first (the rollback
puts the primary back before it); a primary whose secondaries would be lost is not planned (a
note says why), and the action itself refuses when secondaries appeared since the diagnosis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns, snapshot
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes.apply import apply_plan, rollback
from clusterfix_tui.core.fixes.cni_bridge import STEP as CNI


def _facts(addr_info: list[dict]) -> NodeFacts:
    return NodeFacts(node="node-1", complete=True, addrs=({"ifname": "cni0", "addr_info": addr_info},))


def _inet(local: str, plen: int, secondary: bool = False) -> dict:
    return {"family": "inet", "local": local, "prefixlen": plen, "scope": "global",
            "label": "cni0", **({"secondary": True} if secondary else {})}


def _conflict(wrong: list[str], addresses: list[str]):
    return finding("CNI_BRIDGE_CONFLICT", "node-1", "cni_bridge", device="cni0",
                   wrong_addresses=wrong, addresses=addresses, expected="10.244.1.1/24",
                   pod_cidr="10.244.1.0/24")


def test_a_primary_whose_secondary_stays_is_not_removed() -> None:
    facts = _facts([_inet("10.244.1.1", 24), _inet("10.244.9.1", 24),
                    _inet("10.244.9.7", 24, secondary=True)])
    f = _conflict(["10.244.9.1/24"], ["10.244.1.1/24", "10.244.9.1/24", "10.244.9.7/24"])
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    assert not [a for a in plan.actions if "ip addr del 10.244.9.1/24" in a.command]
    assert any("10.244.9.7/24" in n and "drop its secondaries" in n for n in plan.notes), plan.notes


def test_a_removed_secondary_goes_before_its_primary() -> None:
    facts = _facts([_inet("10.244.9.1", 16), _inet("10.244.9.7", 16, secondary=True)])
    f = _conflict(["10.244.9.1/16", "10.244.9.7/16"], ["10.244.9.1/16", "10.244.9.7/16"])
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    dels = [a.command for a in plan.actions if "ip addr del" in a.command]
    assert [c.rsplit("ip addr del ", 1)[1].split()[0] for c in dels] == \
        ["10.244.9.7/16", "10.244.9.1/16"]


@pytest.fixture
def netns():
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


@pytest.mark.lab
def test_primary_and_secondary_come_back_as_they_were(netns, tmp_path: Path) -> None:
    ns(netns, "ip link add cni0 type bridge && ip link set cni0 up && "
              "ip addr add 10.244.9.1/16 brd + dev cni0 && ip addr add 10.244.9.7/16 brd + dev cni0")
    before = ns(netns, "ip -o -4 addr show dev cni0")
    assert "secondary" in before
    facts = NodeFacts(node="node-1", complete=True,
                      addrs=tuple(json.loads(ns(netns, "ip -j addr show"))))
    f = _conflict(["10.244.9.1/16", "10.244.9.7/16"], ["10.244.9.1/16", "10.244.9.7/16"])
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    ids = [a.id for a in plan.actions if "ip addr del" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, ids, runner)
    assert out.status == "changed", out.to_dict()
    assert "10.244.9." not in ns(netns, "ip -o -4 addr show dev cni0")
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    assert ns(netns, "ip -o -4 addr show dev cni0") == before


@pytest.mark.lab
def test_a_secondary_added_after_the_diagnosis_stops_the_action(netns, tmp_path: Path) -> None:
    ns(netns, "ip link add cni0 type bridge && ip link set cni0 up && "
              "ip addr add 10.244.9.1/16 dev cni0")
    facts = NodeFacts(node="node-1", complete=True,
                      addrs=tuple(json.loads(ns(netns, "ip -j addr show"))))
    f = _conflict(["10.244.9.1/16"], ["10.244.9.1/16"])
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    (delete,) = [a for a in plan.actions if "ip addr del" in a.command]
    ns(netns, "ip addr add 10.244.9.7/16 dev cni0")  # between the plan and the run
    before = ns(netns, "ip -o -4 addr show dev cni0")
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner)
    assert out.status == "failed", out.to_dict()
    assert "secondaries are still there" in json.dumps(out.to_dict())
    assert ns(netns, "ip -o -4 addr show dev cni0") == before
    rollback((plan, out), runner)  # a failed action's rollback runs too: it changes nothing here
    assert ns(netns, "ip -o -4 addr show dev cni0") == before


def test_a_stale_flannel_address_with_a_secondary_that_stays_is_not_removed() -> None:
    facts = NodeFacts(node="node-1", complete=True, addrs=({"ifname": "flannel.1", "addr_info": [
        _inet("10.244.1.0", 32), _inet("10.244.5.0", 24), _inet("10.244.5.9", 24, secondary=True)]},))
    f = finding("FLANNEL_STALE_SUBNET", "node-1", "cni_bridge", device="flannel.1",
                pod_cidr="10.244.1.0/24", stale_addresses=["10.244.5.0/24"])
    plan = CNI.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    assert not [a for a in plan.actions if "ip addr del" in a.command]
    assert any("10.244.5.9/24" in n for n in plan.notes), plan.notes
