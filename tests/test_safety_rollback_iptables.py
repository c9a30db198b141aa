"""Rollback fidelity of the opt-in deletion of a firewall's iptables rule: the rule goes back in at
its number when the chain still reads around it as the plan saw it. The old rollback restored the
whole saved table (`iptables-restore -T filter < saved`), which also undid everything anyone else
(kube-proxy, docker, the admin) changed in that table since. Real iptables (legacy and nft) in a
network namespace made for the test, through the engine's own apply/rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes.apply import apply_plan, rollback
from clusterfix_tui.core.fixes.host_network import STEP as HOST

pytestmark = pytest.mark.lab  # needs root and network namespaces


@pytest.fixture
def netns():
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


def _save(name: str, backend: str) -> str:
    return ns(name, f"iptables-{backend}-save -t filter | grep -v '^#' | sed -E 's/\\[[0-9]+:[0-9]+\\]//'")


def _plan(name: str, backend: str):
    text = ns(name, f"iptables-{backend}-save")
    save = P.parse_iptables_save(text)
    reject = next(r.spec for r in save.table("filter").rules_in("INPUT") if "REJECT" in r.spec)
    facts = NodeFacts(node="node-1", complete=True,
                      **({"legacy": save} if backend == "legacy" else {"nft_filter": save}))
    f = finding("FIREWALL_REJECT", "node-1", "host_network", rules=[{
        "backend": backend, "table": "filter", "chain": "INPUT", "kind": "rule",
        "rule": reject}], accepts=[])
    plan = HOST.plan(FakeDiagnosis([f], facts={"node-1": facts}))
    (delete,) = [a for a in plan.actions if "opt-in" in a.id and " -D " in a.command]
    return plan, delete


RULES = ("-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp --dport 10250 -j REJECT",
         "-A INPUT -p tcp --dport 22 -j ACCEPT")


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_deleted_rule_goes_back_at_its_number_and_others_changes_stay(netns, tmp_path: Path,
                                                                      backend: str) -> None:
    for r in RULES:
        ns(netns, f"iptables-{backend} -t filter {r}")
    before = _save(netns, backend)
    plan, delete = _plan(netns, backend)
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner)
    assert out.status == "changed", out.to_dict()
    assert "REJECT" not in _save(netns, backend)
    # someone else's change in the same table meanwhile (another chain): it stays
    ns(netns, f"iptables-{backend} -t filter -A OUTPUT -p tcp --dport 9 -j DROP")
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    after = _save(netns, backend)
    want = [ln for ln in before.splitlines() if ln.startswith("-A INPUT")]
    assert [ln for ln in after.splitlines() if ln.startswith("-A INPUT")] == want
    assert "-A OUTPUT -p tcp -m tcp --dport 9 -j DROP" in after
    # run again: already there, nothing inserted twice
    rb2 = rollback((plan, out), runner)
    assert rb2.status in ("changed", "unchanged") and _save(netns, backend) == after


def test_chain_changed_around_its_place_inserts_nothing(netns, tmp_path: Path) -> None:
    for r in RULES:
        ns(netns, f"iptables-legacy -t filter {r}")
    plan, delete = _plan(netns, "legacy")
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner)
    assert out.status == "changed"
    ns(netns, "iptables-legacy -t filter -I INPUT 2 -s 192.0.2.1 -j DROP")  # a new rule there
    mid = _save(netns, "legacy")
    rb = rollback((plan, out), runner)
    assert rb.status != "changed"
    res = rb.actions[0].result
    assert res.exit_code == 4 and "by hand" in res.stderr and "restore" in res.stderr
    assert _save(netns, "legacy") == mid


NFT = """table inet fw {
	chain input {
		type filter hook input priority 0; policy accept;
		iif "lo" accept
		tcp dport 10250 reject
		tcp dport 22 accept
	}
	chain output {
		type filter hook output priority 0; policy accept;
	}
}
"""


def test_nft_rule_goes_back_at_its_place_and_others_changes_stay(netns, tmp_path: Path) -> None:
    """The same for a native nft firewall's rule (the old rollback flushed the table and loaded
    the saved copy: the other chain's new rule was lost)."""
    import json
    import shlex

    ns(netns, f"printf '%s' {shlex.quote(NFT)} | nft -f -")
    before = ns(netns, "nft list chain inet fw input")
    rs = P.parse_nft_json(ns(netns, "nft -j list ruleset"))
    h = next(r.handle for r in rs.rules_in("inet", "fw", "input") if "reject" in json.dumps(r.expr))
    facts = NodeFacts(node="node-1", complete=True, nft_ruleset=rs,
                      nft_table_text={"fw": ns(netns, "nft -a list table inet fw")})
    f = finding("FIREWALL_REJECT", "node-1", "host_network", rules=[{
        "backend": "nft-native", "family": "inet", "table": "fw", "chain": "input",
        "kind": "rule", "handle": h, "text": "tcp dport 10250 reject"}], accepts=[])
    plan = HOST.plan(FakeDiagnosis([f], facts={"node-1": facts}))
    (delete,) = [a for a in plan.actions if "nft delete rule" in a.command]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, [delete.id], runner)
    assert out.status == "changed", out.to_dict()
    assert "10250" not in ns(netns, "nft list chain inet fw input")
    ns(netns, "nft add rule inet fw output tcp dport 9 drop")  # someone else's, meanwhile
    rb = rollback((plan, out), runner)
    assert rb.status == "changed", rb.to_dict()
    assert ns(netns, "nft list chain inet fw input") == before
    assert "tcp dport 9 drop" in ns(netns, "nft list chain inet fw output")


def test_stale_chain_removal_rolls_back_to_the_table_right_before_it(netns, tmp_path) -> None:
    """Stale KUBE-* chains in iptables-legacy's filter table and a FORWARD DROP there: the plan
    first inserts the narrow ACCEPTs, then removes the KUBE-* lines. Its rollback (newest first)
    restores the table as it was right before the removal (ACCEPTs included), then deletes the
    ACCEPTs: every rollback action ok, the table back byte for byte. The old rollback restored
    the step's first backup (no ACCEPTs yet), so deleting them then failed ('Bad rule')."""
    from clusterfix_tui.core.fixes.iptables import STEP as IPT

    ns(netns, "iptables-legacy -P FORWARD DROP && iptables-legacy -N KUBE-FORWARD && "
              "iptables-legacy -A FORWARD -j KUBE-FORWARD && "
              "iptables-legacy -A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT")
    before = _save(netns, "legacy")
    drop = finding("FORWARD_DROP", "node-1", "iptables", backend="legacy", table="filter",
                   chain="FORWARD", policy="DROP", pod_network="10.244.0.0/16",
                   binary="iptables-legacy", kube_proxy_backend="nft", host_iptables="nft")
    stale = finding("IPTABLES_BACKEND_CONFLICT", "node-1", "iptables", kube_proxy_backend="nft",
                    other_backend="legacy", host_iptables="nft",
                    stale_chains={"filter": ["KUBE-FORWARD"]})
    plan = IPT.plan(FakeDiagnosis([drop, stale], snapshot={"pods": []}))
    ids = [a.id for a in plan.actions if a.kind == "shell" and not a.opt_in]
    kinds = [a.command for a in plan.actions if a.id in ids]
    assert any("-I FORWARD 1" in c for c in kinds) and any("-restore -T filter" in c for c in kinds)
    assert [i for i, c in enumerate(kinds) if "-I FORWARD 1" in c][0] < \
        [i for i, c in enumerate(kinds) if "-restore -T filter" in c][0]
    runner = MountRunner(netns, {"/var/backups": str(tmp_path)})
    out = apply_plan(plan, ids, runner)
    assert out.status == "changed", out.to_dict()
    assert "KUBE-FORWARD" not in _save(netns, "legacy")
    rb = rollback((plan, out), runner)
    assert {o.status for o in rb.actions} == {"ok"}, rb.to_dict()
    assert _save(netns, "legacy") == before
