"""The iptables step: plans from findings, and its commands on real iptables in a netns."""

from __future__ import annotations

import shlex

import pytest
from fix_helpers import FakeDiagnosis, NetnsRunner, del_netns, finding, new_netns, ns, snapshot

from clusterfix_tui.core.checks.iptables import NftRuleRef
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import (
    apply_plan,
    check_rollbacks,
    default_approved,
    is_opt_in,
    node_backup_dir,
    rollback,
)

STEP = get_step("iptables")


def conflict(node="node-2", other="legacy", live="nft", host="nft"):
    return finding("IPTABLES_BACKEND_CONFLICT", node, "iptables", kube_proxy_backend=live,
                   other_backend=other, host_iptables=host,
                   stale_chains={"nat": ["KUBE-SERVICES", "KUBE-NODEPORTS"]},
                   stale_rules={"nat": ["-A PREROUTING -j KUBE-SERVICES"]},
                   shadows_live_path=True, cosmetic=False,
                   backend_evidence="its pods' iptables is nft",
                   shadowing_rules=["-A KUBE-SERVICES -j KUBE-SVC-X"])


def test_no_findings_is_nothing_to_do():
    plan = STEP.plan(FakeDiagnosis(findings=[], snapshot=snapshot()))
    assert plan.nothing_to_do and plan.notes


def test_plan_backs_up_first_removes_stale_chains_and_restarts_only_affected_node():
    d = FakeDiagnosis([conflict("node-2"),
                       finding("FORWARD_DROP", "node-2", "iptables", backend="legacy",
                               table="filter", chain="FORWARD", policy="DROP",
                               pod_network="10.244.0.0/16", kube_proxy_backend="nft",
                               host_iptables="nft")],
                      snapshot=snapshot())
    plan = STEP.plan(d)
    ids = [a.id for a in plan.actions]
    assert all(a.target == "node-2" for a in plan.actions)
    first = plan.actions[0]
    assert "iptables-legacy-save >" in first.command and "iptables-nft-save >" in first.command
    assert "/var/backups/clusterfix/" in first.command
    cmds = [a.command for a in plan.actions]
    assert any("iptables-legacy-restore -T nat" in c for c in cmds)
    # FORWARD DROP: the policy flip is an opt-in, never approved by default (issue 13)
    flip = [a for a in plan.actions if a.command == "iptables-legacy -w 5 -P FORWARD ACCEPT"]
    assert len(flip) == 1 and is_opt_in(flip[0]) and flip[0].id not in default_approved(plan)
    restart = plan.actions[-1]
    assert restart.kind == "api" and restart.api == {
        "verb": "delete_pod", "namespace": "kube-system", "name": "kube-proxy-node-2"}
    assert check_rollbacks(plan) == []
    assert len(set(ids)) == len(ids)
    # the nft backend kube-proxy uses is never rewritten
    assert not any("iptables-nft-restore" in c for c in cmds)


def test_alternative_is_aligned_with_rollback_to_previous():
    d = FakeDiagnosis([conflict("node-3", other="legacy", live="nft", host="legacy")],
                      snapshot=snapshot())
    plan = STEP.plan(d)
    alt = [a for a in plan.actions if "update-alternatives" in a.command]
    assert len(alt) == 1
    assert "--set iptables /usr/sbin/iptables-nft" in alt[0].command
    assert "--set iptables /usr/sbin/iptables-legacy" in alt[0].rollback.command


def test_version_skew_is_reported_only():
    d = FakeDiagnosis([finding("KUBE_PROXY_INCOMPATIBLE_CHAIN", "node-1", "iptables",
                               cause="version-skew", recommend_backend_switch=False,
                               host_iptables_version="1.8.7", chains=[], kube_proxy_backend="nft",
                               host_iptables="nft")], snapshot=snapshot())
    plan = STEP.plan(d)
    assert plan.actions == ()
    assert any("1.8.7" in n and "skew" in n for n in plan.notes)


def test_foreign_nft_rule_deleted_by_handle_without_facts_has_a_manual_rollback():
    d = FakeDiagnosis([finding(
        "KUBE_PROXY_INCOMPATIBLE_CHAIN", "node-1", "iptables", cause="foreign-nft-rule",
        chains=[{"table": "nat", "chain": "KUBE-SERVICES"}], host_iptables_version="1.8.9",
        kube_proxy_backend="nft", host_iptables="nft",
        foreign_rules=[NftRuleRef("ip", "nat", "KUBE-SERVICES", 42,
                                  "ip daddr 10.96.0.99 counter accept")])], snapshot=snapshot())
    plan = STEP.plan(d)
    dels = [a for a in plan.actions if "nft delete rule" in a.command]
    assert dels[0].command == "nft delete rule ip nat KUBE-SERVICES handle 42"
    # no facts: the rule's place in its chain is unknown, so no automatic re-add (at a guessed
    # place it could change what the chain does); the note says how to put it back
    assert dels[0].rollback is None and "by hand" in dels[0].rollback_note
    assert plan.actions[-1].api["name"] == "kube-proxy-node-1"


def test_hostile_node_name_is_quoted():
    evil = "n'; rm -rf / #"
    d = FakeDiagnosis([conflict(evil)], snapshot=snapshot((evil,)))
    plan = STEP.plan(d)
    shells = [a for a in plan.actions if a.kind == "shell"]
    assert shells
    for a in shells:
        toks = shlex.split(a.command)
        assert "rm" not in toks and "-rf" not in toks, a.command
        # the name arrives as (part of) one word: verbatim, or made path-safe in a backup path
        safe = node_backup_dir("", evil).lstrip("/")
        assert any(evil in t or safe in t for t in toks), a.command


def _state(name: str) -> dict[str, str]:
    return {
        "legacy": ns(name, "iptables-legacy-save | grep -v '^#'"),
        "nft": ns(name, "iptables-nft-save | grep -v '^#'"),
    }


@pytest.mark.lab
def test_commands_on_real_iptables_remove_stale_and_rollback_restores(tmp_path):
    name = new_netns()
    try:
        # kube-proxy lives in nft; legacy holds stale KUBE chains and a FORWARD DROP
        ns(name, "iptables-nft -t nat -N KUBE-SERVICES && "
                 "iptables-nft -t nat -A PREROUTING -j KUBE-SERVICES && "
                 "iptables-nft -t mangle -N KUBE-IPTABLES-HINT")
        ns(name, "iptables-legacy -t nat -N KUBE-SERVICES && "
                 "iptables-legacy -t nat -N KUBE-SEP-X && "
                 "iptables-legacy -t nat -A KUBE-SERVICES -p tcp --dport 30096 -j KUBE-SEP-X && "
                 "iptables-legacy -t nat -A KUBE-SEP-X -p tcp -j DNAT --to-destination 10.9.9.9:80 && "
                 "iptables-legacy -t nat -A PREROUTING -j KUBE-SERVICES && "
                 "iptables-legacy -t nat -A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE && "
                 "iptables-legacy -P FORWARD DROP")
        before = _state(name)
        d = FakeDiagnosis([
            conflict("node-2"),
            finding("FORWARD_DROP", "node-2", "iptables", backend="legacy", table="filter",
                    chain="FORWARD", policy="DROP", pod_network="10.244.0.0/16",
                    kube_proxy_backend="nft", host_iptables="nft"),
        ], snapshot=snapshot())
        plan = STEP.plan(d)
        runner = NetnsRunner({"node-2": name}, str(tmp_path))
        out = apply_plan(plan, default_approved(plan), runner)
        assert out.status == "changed", [(o.action_id, o.result) for o in out.actions]
        after = _state(name)
        assert "KUBE-" not in after["legacy"]
        assert "-A POSTROUTING -s 10.1.0.0/16 -j MASQUERADE" in after["legacy"]  # kept
        # the DROP policy stays; the pod network is accepted ahead of it
        assert ":FORWARD DROP" in after["legacy"]
        assert "-A FORWARD -s 10.244.0.0/16 -m comment --comment \"clusterfix: pods-forward\" " \
               "-j ACCEPT" in after["legacy"]
        assert "-A FORWARD -d 10.244.0.0/16 -m comment --comment \"clusterfix: to-pods-forward\" " \
               "-j ACCEPT" in after["legacy"]
        assert after["nft"] == before["nft"]  # the live backend is untouched
        assert runner.api_calls == [{"verb": "delete_pod", "namespace": "kube-system",
                                     "name": "kube-proxy-node-2"}]
        backups = list(tmp_path.glob("clusterfix/*/node-2/legacy.rules"))
        assert backups and "KUBE-SEP-X" in backups[0].read_text()
        # rollback: back to the pre-fix state in both backends
        rb = rollback((plan, out), runner)
        assert rb.status == "changed", rb
        assert _state(name) == before
        # idempotent: applying again on a fixed node with the same plan changes nothing harmful
    finally:
        del_netns(name)
