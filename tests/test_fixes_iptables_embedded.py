"""The iptables step where kube-proxy is embedded in k3s/RKE2 (no kube-proxy pod): the restart that
makes kube-proxy re-sync is a restart of the node's one active k3s/RKE2 unit, read from the node
(`systemctl is-active`), never guessed from its name or role; no such unit -> no restart, a note."""

from __future__ import annotations

import pytest
from fix_helpers import FakeDiagnosis, finding

from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import check_rollbacks, default_approved, is_opt_in
from clusterfix_tui.core.shape import UNIT_ORDER, ClusterShape, NodeShape

STEP = get_step("iptables")
NODE = "node-2"


def _conflict():
    return finding("IPTABLES_BACKEND_CONFLICT", NODE, "iptables", kube_proxy_backend="nft",
                   other_backend="legacy", host_iptables="nft",
                   stale_chains={"nat": ["KUBE-SERVICES"]},
                   stale_rules={"nat": ["-A PREROUTING -j KUBE-SERVICES"]},
                   shadows_live_path=True, cosmetic=False,
                   backend_evidence="its pods' iptables is nft",
                   shadowing_rules=["-A KUBE-SERVICES -j KUBE-SVC-X"])


def _diag(active: set[str] | None, *, dist: str | None = "k3s", node_kp: str = "embedded"):
    sections = {}
    if active is not None:
        out = "".join(("active" if u in active else "inactive") + "\n" for u in UNIT_ORDER)
        sections["service_units"] = Section("service_units", None, out, "", 0 if active else 3)
    d = FakeDiagnosis([_conflict()], facts={NODE: NodeFacts(node=NODE, sections=sections,
                                                            complete=True)},
                      snapshot={"pods": []})
    d.shape = ClusterShape(  # type: ignore[attr-defined]
        distribution=dist or "unknown", cni="flannel", kube_proxy="embedded",
        nodes={NODE: NodeShape(name=NODE, pod_cidrs=("10.42.1.0/24",), ip_family="ipv4",
                               distribution=dist, kube_proxy=node_kp)})
    return d


@pytest.mark.parametrize("dist,unit", [("k3s", "k3s"), ("k3s", "k3s-agent"),
                                       ("rke2", "rke2-agent")])
def test_embedded_kube_proxy_restart_is_offered_through_the_active_unit_as_an_opt_in(dist, unit):
    plan = STEP.plan(_diag({unit}, dist=dist))
    restart = [a for a in plan.actions if a.command.startswith("systemctl restart")]
    assert [a.command for a in restart] == [f"systemctl restart {unit}"]
    r = restart[0]
    assert r.target == NODE and r.mutating and r == plan.actions[-1]  # after the rule changes
    assert "kube-proxy runs inside" in r.why and "Service rules" in r.why
    # restarting k3s/RKE2 restarts kubelet and flannel too: offered, never approved by default
    assert is_opt_in(r) and r.id not in default_approved(plan) and "Opt-in" in r.why
    assert r.precondition is not None and f"systemctl is-active --quiet {unit}" in r.precondition.command
    assert r.rollback is None and "not rolled back" in r.rollback_note
    assert not any(a.kind == "api" for a in plan.actions)  # no pod to delete
    assert check_rollbacks(plan) == []
    assert not any("no kube-proxy pod found" in n for n in plan.notes)


@pytest.mark.parametrize("active,why", [
    (set(), "no k3s service is active"),
    ({"k3s", "k3s-agent"}, "more than one service is active"),
    (None, "could not be read"),
])
def test_no_single_active_unit_means_no_restart_and_a_note(active, why):
    plan = STEP.plan(_diag(active))
    assert not any(a.command.startswith("systemctl") for a in plan.actions)
    note = [n for n in plan.notes if "no kube-proxy pod found" in n]
    assert note and why in note[0], plan.notes


def test_kube_proxy_outside_a_pod_but_not_k3s_is_never_restarted_through_a_unit():
    # something answers :10249 on a kubeadm node (a kube-proxy binary under its own unit we do
    # not know): no unit is guessed
    plan = STEP.plan(_diag({"k3s"}, dist="kubeadm"))
    assert not any(a.command.startswith("systemctl") for a in plan.actions)
    assert any("no kube-proxy pod found" in n for n in plan.notes)
