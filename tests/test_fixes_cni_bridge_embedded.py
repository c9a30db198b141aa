"""The cni_bridge step on k3s/RKE2 (flannel embedded in the distribution's service): the restart of
flannel is a restart of the node's k3s/RKE2 unit, chosen from what the node runs (`systemctl
is-active`, read with the facts), never from the node's name or role; nothing found -> no action
and a clear note."""

from __future__ import annotations

import pytest
from fix_helpers import FakeDiagnosis, finding

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import check_rollbacks
from clusterfix_tui.core.shape import (
    UNIT_ORDER,
    ClusterShape,
    FlannelShape,
    NodeShape,
    embedded_service_unit,
    service_unit_states,
)

STEP = get_step("cni_bridge")
NODE = "node-2"


def _facts(states: list[str] | None, *, rc: int | None = None, stderr: str = "") -> dict[str, NodeFacts]:
    sections = {}
    if states is not None:
        out = "".join(f"{s}\n" for s in states)
        sections["service_units"] = Section("service_units", None, out, stderr,
                                            rc if rc is not None else (0 if set(states) == {"active"} else 3))
    elif rc is not None:
        sections["service_units"] = Section("service_units", None, "", stderr, rc)
    return {NODE: NodeFacts(node=NODE, sections=sections, complete=True)}


def _states(active: set[str]) -> list[str]:
    return ["active" if u in active else "inactive" for u in UNIT_ORDER]


def _shape(dist: str = "k3s") -> ClusterShape:
    return ClusterShape(
        distribution=dist, cni="flannel", kube_proxy="embedded",
        flannel=FlannelShape(deployment="embedded", backend="vxlan", distribution=dist),
        nodes={NODE: NodeShape(name=NODE, pod_cidrs=("10.244.1.0/24",), ip_family="ipv4",
                               distribution=dist)})


def _findings():
    return [
        finding("CNI_BRIDGE_CONFLICT", NODE, "cni_bridge", device="cni0", wrong_addresses=["10.244.9.1/24"],
                expected="10.244.1.1/24", pod_cidr="10.244.1.0/24", flannel_pod=None, namespace=None),
        finding("FLANNEL_STALE_SUBNET", NODE, "cni_bridge", device="flannel.1", pod_cidr="10.244.1.0/24",
                expected_address="10.244.1.0/32", stale_addresses=["10.244.9.0/32"],
                subnet_env={"FLANNEL_SUBNET": "10.244.9.1/24"}, subnet_env_stale=True, stale_routes=[]),
    ]


def _diag(dist: str, facts: dict[str, NodeFacts]) -> FakeDiagnosis:
    d = FakeDiagnosis(_findings(), facts=facts, snapshot={"pods": []})
    d.shape = _shape(dist)  # type: ignore[attr-defined]
    return d


@pytest.mark.parametrize("dist,unit", [("k3s", "k3s"), ("k3s", "k3s-agent"), ("rke2", "rke2-server"),
                                       ("rke2", "rke2-agent")])
def test_the_active_unit_is_restarted_shown_exactly_then_flannel_is_verified(dist, unit):
    plan = STEP.plan(_diag(dist, _facts(_states({unit}))))
    cmds = [a.command for a in plan.actions]
    restart = [a for a in plan.actions if a.command.startswith("systemctl restart")]
    assert [a.command for a in restart] == [f"systemctl restart {unit}"], cmds
    r = restart[0]
    assert r.mutating and r.target == NODE and r.kind == "shell"
    assert r.rollback is None and "not rolled back" in r.rollback_note and unit in r.rollback_note
    assert "containerd shims" in r.why and "keep running" in r.why
    assert r.precondition is not None and f"systemctl is-active --quiet {unit}" in r.precondition.command
    # what only the restart recreates is removed first, and the embedded flannel checked after it
    i = plan.actions.index(r)
    before = " ".join(cmds[:i])
    assert "ip addr del 10.244.9.1/24 dev cni0" in before and "/run/flannel/subnet.env" in before
    verify = plan.actions[i + 1]
    assert verify.mutating is False and verify is plan.actions[-1]
    assert "grep -qxF FLANNEL_SUBNET=10.244.1.1/24 /run/flannel/subnet.env" in verify.command
    assert "ip -o addr show dev flannel.1 up" in verify.command and "' 10.244.1.0/32 '" in verify.command
    assert not any(a.kind == "api" for a in plan.actions)  # no flannel pod: nothing to delete
    assert check_rollbacks(plan) == []
    assert any(n.startswith("WARNING") and NODE in n for n in plan.notes)


@pytest.mark.parametrize("dist,facts,why", [
    ("k3s", _facts(_states(set())), "no k3s service is active on the node"),
    ("rke2", _facts(_states(set())), "no rke2 service is active on the node"),
    ("k3s", _facts(_states({"rke2-agent"})), "no k3s service is active"),  # another distribution's unit
    ("k3s", _facts(_states({"k3s", "k3s-agent"})), "more than one service is active"),
    ("k3s", _facts(None), "could not be read"),  # facts without the section
    ("k3s", _facts(None, rc=127, stderr="cfx: systemctl: command not found\n"), "command not found"),
    ("k3s", _facts(None, rc=1, stderr="System has not been booted with systemd as init system (PID 1).\n"),
     "not been booted with systemd"),
])
def test_no_unit_found_means_no_restart_no_removal_and_a_clear_note(dist, facts, why):
    plan = STEP.plan(_diag(dist, facts))
    assert plan.actions == (), [a.command for a in plan.actions]
    note = next(n for n in plan.notes if n.startswith(f"{NODE}: flannel is embedded"))
    assert "Not planned" in note and why in note, note
    assert "CNI_BRIDGE_CONFLICT" in note and "FLANNEL_STALE_SUBNET" in note
    agents = "k3s-agent" if dist == "k3s" else "rke2-agent"
    assert f"systemctl restart {agents}" in note


def test_unit_states_are_read_per_unit_in_order():
    f = _facts(["inactive", "active", "inactive", "unknown"])[NODE]
    assert service_unit_states(f) == {"k3s": "inactive", "k3s-agent": "active", "rke2-server": "inactive",
                                      "rke2-agent": "unknown"}
    assert embedded_service_unit(f, "k3s") == ("k3s-agent", embedded_service_unit(f, "k3s")[1])
    assert embedded_service_unit(f, "rke2")[0] is None
    short = _facts(["active"])[NODE]  # not one state per unit: not trusted
    assert service_unit_states(short) is None and embedded_service_unit(short, "k3s")[0] is None


def test_the_facts_script_asks_systemctl_about_exactly_these_units():
    assert tuple(F.SERVICE_UNITS) == UNIT_ORDER
    assert "systemctl is-active k3s k3s-agent rke2-server rke2-agent" in F.build_facts_script()
    assert F.section_command("service_units") == "systemctl is-active k3s k3s-agent rke2-server rke2-agent"
