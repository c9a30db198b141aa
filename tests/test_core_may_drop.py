"""#17, the core at 5,000 nodes (seventh pass): the firewall check answers a node whose filter
tables cannot drop anything without building its flows or matching a rule.

`firewall_path.may_drop(table, base)` is False only when no DROP/REJECT outside the CNIs' own
chains is reachable from the built-in chain and its policy is not DROP; `node_may_drop` is False
only when no filter view and no native nft base chain may drop. Both must never be False where
the walk they skip finds a hit: checked on every recorded table and node, and on random tables
(chains jumping to chains, DROP/REJECT in own and other chains, DROP policies) against flows of
every kind. No timing here: bench/bench_core.py prints the figures."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from diag_fakes import LAB_NONCE, ReplayAPI, load, scenarios
from test_core_scale_exact import DATA, _all_outputs, _flows

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import firewall
from clusterfix_tui.core.checks import firewall_path as FP
from clusterfix_tui.core.checks._common import backend_saves
from clusterfix_tui.core.facts import parse_facts, split_sections
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import build_snapshot

BASES = ("INPUT", "FORWARD", "OUTPUT")


def _tables_of_recorded_rules() -> list[P.Table]:
    """Every filter table in the recorded node outputs and tests/data/facts."""
    texts = [p.read_text() for p in (DATA / "facts").glob("*.out")]
    for out in _all_outputs():
        texts.extend(s.stdout for k, s in split_sections(out, LAB_NONCE)[0].items() if "save" in k)
    tables = []
    for text in texts:
        t = P.parse_iptables_save(text).table("filter")
        if t is not None:
            tables.append(t)
    return tables


def _random_table(rnd: random.Random) -> P.Table:
    names = ["X", "Y", "Z", "KUBE-FW", "FLANNEL-FWD", "DOCKER-USER"]
    chains: dict[str, str | None] = {b: rnd.choice(["ACCEPT", "ACCEPT", "DROP", "drop"])
                                     for b in BASES}
    chains.update({c: None for c in names if rnd.random() < 0.8})
    targets = ["ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "MARK", *chains]
    matches = ["", "-p tcp", "-p udp --dport 8472", "-s 10.213.0.11/32", "-i eth0", "! -i eth0",
               "-m conntrack --ctstate NEW", "-m conntrack --ctstate INVALID", "-d 10.244.1.0/24",
               "-m addrtype --dst-type LOCAL", "-o cni0"]
    rules = []
    for _ in range(rnd.randint(0, 14)):
        ch = rnd.choice(list(chains))
        tgt = rnd.choice(targets)
        jump = rnd.choice(["-j", "-j", "-g"])
        spec = f"-A {ch} {rnd.choice(matches)} {jump} {tgt}".replace("  ", " ")
        args = tuple(spec.split()[2:])
        rules.append(P.Rule("filter", ch, spec, tgt, args))
    return P.Table("filter", chains, tuple(rules))


def _check_table(t: P.Table, flows: list[FP.Flow]) -> tuple[int, int]:
    """(bases answered False, hits seen) on table t: a False must mean no hit for any flow."""
    skipped = hits = 0
    for base in BASES:
        if base not in t.chains:
            continue
        got = [FP.evaluate_iptables(t, base, fl) for fl in flows if FP.BUILTIN[fl.hook] == base]
        hits += sum(h is not None for h in got)
        if not FP.may_drop(t, base):
            skipped += 1
            assert got == [None] * len(got), (base, t)
    return skipped, hits


def test_may_drop_is_false_only_where_no_flow_meets_a_drop() -> None:
    flows = _flows()
    tables = _tables_of_recorded_rules()
    assert len(tables) > 20
    rnd = random.Random(1707)
    tables += [_random_table(rnd) for _ in range(3000)]
    skipped = hits = 0
    for t in tables:
        s, h = _check_table(t, flows)
        skipped, hits = skipped + s, hits + h
    # both kinds are exercised: tables answered without a walk, and walks that find drops
    assert skipped > 1000 and hits > 1000


def test_a_drop_behind_jumps_or_a_drop_policy_is_seen() -> None:
    text = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            ":KUBE-FORWARD - [0:0]\n:A - [0:0]\n:B - [0:0]\n"
            "-A FORWARD -j KUBE-FORWARD\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
            "-A KUBE-FORWARD -j A\n-A A -g B\n-A B -p udp --dport 8472 -j REJECT\nCOMMIT\n")
    t = P.parse_iptables_save(text).table("filter")
    assert t is not None
    assert FP.may_drop(t, "FORWARD")  # REJECT two jumps down, through an own chain
    assert not FP.may_drop(t, "INPUT") and not FP.may_drop(t, "OUTPUT")
    t2 = dataclasses.replace(t, chains={**t.chains, "OUTPUT": "DROP"})
    assert FP.may_drop(t2, "OUTPUT")  # the policy alone
    only_own = P.parse_iptables_save(text.replace("-A A -g B\n", "")).table("filter")
    assert only_own is not None and not FP.may_drop(only_own, "FORWARD")


def _cluster(scenario: str) -> tuple[Any, dict[str, Any]]:
    rec = load(scenario)
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    facts = {k: parse_facts(k, v, LAB_NONCE) for k, v in rec["facts"].items()}
    return dataclasses.replace(snap, shape=detect_shape(snap, facts)), facts


@pytest.mark.parametrize("scenario", scenarios())
def test_node_may_drop_is_false_only_where_node_hits_is_empty(scenario: str) -> None:
    snap, facts = _cluster(scenario)
    hosts = FP.ClusterHosts(snap.nodes)
    for node, f in facts.items():
        saves, saves6 = backend_saves(f), backend_saves(f, 6)
        if not FP.node_may_drop(f, saves, saves6):
            flows = FP.cluster_flows(snap, node, f, hosts) + _flows()
            assert FP.node_hits(f, flows, saves, saves6) == []


def test_a_healthy_node_is_checked_without_flows_or_rule_matching(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The firewall check on nodes whose tables cannot drop: no flows built, no rule's tokens
    compiled; on the firewall-reject scenario the faulty node still is (and is found)."""
    calls: dict[str, int] = {"flows": 0, "compile": 0}
    real_flows, real_compile = FP.cluster_flows, FP.compile_iptables_rule

    def flows(*a: Any, **k: Any) -> Any:
        calls["flows"] += 1
        return real_flows(*a, **k)

    def compile_(args: tuple[str, ...]) -> Any:
        calls["compile"] += 1
        return real_compile(args)

    monkeypatch.setattr(firewall, "cluster_flows", flows)
    monkeypatch.setattr(FP, "compile_iptables_rule", compile_)
    snap, facts = _cluster("healthy")
    assert firewall.check(snap, facts) == []
    assert calls == {"flows": 0, "compile": 0}
    snap, facts = _cluster("firewall-reject")
    found = firewall.check(snap, facts)
    assert {f.code for f in found} & {"FIREWALL_REJECT", "FIREWALL_POLICY_DROP"}
    assert 1 <= calls["flows"] < len(facts) + 1 and calls["compile"] > 0
