"""#17, the core at 5,000 nodes: `nft -j list ruleset` read lazily (parsers._parse_nft_json_lazy).

The tables and chains are read at once; each table's rule items after its first rule stay text
until a reader asks for that table (most of a kube-proxy node's JSON is iptables-nft's rules, which
the checks read from iptables-nft-save). The result must be exactly the full decode's, for every
reader (`.rules`, `rules_in`, `table_rules`, ==, repr), on nft's real output and on any other valid
JSON (other layouts go through the full decode); and a table whose kept text turns out unreadable
raises to its reader (a check then fails with an error) instead of reading as "no rules"."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from typing import Any

import pytest
from test_parsers_nft_fast import _recorded  # every recorded nft -j ruleset

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import NodeFacts


def _fields(rs: P.NftRuleset) -> tuple[Any, ...]:
    return rs.tables, rs.chains, rs.rules, rs.version, rs.errors


def _triples(rs: P.NftRuleset) -> set[tuple[str, str, str]]:
    got = {(r.family, r.table, r.chain) for r in rs.rules}
    got |= {(c.family, c.table, c.name) for c in rs.chains}
    return got | {("ip", "nope", "INPUT"), ("inet", "filter", "nope")}


def _same_as_full(text: str) -> P.NftRuleset:
    full = P._parse_nft_json_full(text.strip()) if text.strip() else P.NftRuleset()
    # each reader on a fresh parse: the per-table readers first (they decode one table)
    for fam, tab, ch in sorted(_triples(full)):
        assert P.parse_nft_json(text).rules_in(fam, tab, ch) == full.rules_in(fam, tab, ch)
        assert P.parse_nft_json(text).table_rules(fam, tab) == \
            [r for r in full.rules if (r.family, r.table) == (fam, tab)]
    lazy = P.parse_nft_json(text)
    for fam, tab, ch in sorted(_triples(full)):  # one parse, every table in turn, then .rules
        assert lazy.rules_in(fam, tab, ch) == full.rules_in(fam, tab, ch)
    assert _fields(lazy) == _fields(full)
    fresh = P.parse_nft_json(text)
    assert fresh == full and repr(P.parse_nft_json(text)) == repr(full)
    assert replace(P.parse_nft_json(text)) == full
    return lazy


def test_recorded_rulesets_read_lazily_and_the_same() -> None:
    texts = _recorded()
    assert len(texts) >= 30
    lazy_tables = 0
    for t in texts:
        _same_as_full(t)
        rs = P.parse_nft_json(t)
        pending = rs.__dict__.get("_pending")
        if pending is not None:
            lazy_tables += sum(1 for b in pending.blocks if b[2] is not None)
    # nft's own layout takes the lazy path: most tables' rules are left as text at parse time
    assert lazy_tables >= len(texts)


def test_one_table_read_leaves_the_others_undecoded() -> None:
    text = next(t for t in _recorded() if '"name": "nat"' in t and '"name": "filter"' in t)
    rs = P.parse_nft_json(text)
    pending = rs.__dict__["_pending"]
    assert rs.rules_in("ip", "filter", "FORWARD")
    state = {b[0]: b[2] is None for b in pending.blocks if b[0] is not None}
    assert state[("ip", "filter")] is True  # decoded
    assert state[("ip", "nat")] is False  # still text
    assert "rules" not in rs.__dict__
    full = P._parse_nft_json_full(text)
    assert rs.rules == full.rules and "_pending" not in rs.__dict__


def _doc(rnd: random.Random) -> dict[str, Any]:
    """A ruleset in nft's layout (table, chains, rules per table), with random deviations."""
    items: list[Any] = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}]
    tabs = [("ip", "filter"), ("ip", "nat"), ("inet", "fw"), ("ip6", "filter"), ("inet", 'we"ird\\')]
    for fam, tab in rnd.sample(tabs, rnd.randint(1, len(tabs))):
        items.append({"table": {"family": fam, "name": tab, "handle": rnd.randrange(9)}})
        chains = [f"C{i}" for i in range(rnd.randint(0, 4))]
        for c in chains:
            body: dict[str, Any] = {"family": fam, "table": tab, "name": c, "handle": 1}
            if rnd.random() < 0.4:
                body.update(type="filter", hook="input", prio=0, policy="drop")
            items.append({"chain": body})
        if rnd.random() < 0.3:
            items.append({"set": {"family": fam, "name": "s", "table": tab, "type": "ipv4_addr"}})
        for h in range(rnd.randint(0, 6)):
            expr: list[Any] = [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp",
                                                                             "field": "dport"}},
                                          "right": rnd.randrange(65536)}}, {"counter": None},
                               rnd.choice([{"accept": None}, {"drop": None},
                                           {"jump": {"target": rnd.choice(chains or ["x"])}}])]
            rule: dict[str, Any] = {"family": fam, "table": tab,
                                    "chain": rnd.choice(chains or ["x"]), "handle": h,
                                    "expr": expr}
            if rnd.random() < 0.2:
                rule["comment"] = rnd.choice(['a "quoted" {"table": {x}}', "}]", "plain"])
            items.append({"rule": rule})
    # deviations nft does not make; the result must still be the full decode's
    for _ in range(rnd.randint(0, 3)):
        kind = rnd.randrange(9)
        pos = rnd.randrange(1, len(items) + 1)
        if kind == 0:  # a chain after rules
            items.insert(pos, {"chain": {"family": "ip", "table": "filter", "name": "late",
                                         "handle": 9, "hook": "forward", "policy": "drop"}})
        elif kind == 1:  # a rule of another table inside a block
            items.insert(pos, {"rule": {"family": "ip6", "table": "other", "chain": "c",
                                        "handle": 1, "expr": [{"drop": None}]}})
        elif kind == 2:  # metainfo again
            items.insert(pos, {"metainfo": {"version": "9.9"}})
        elif kind == 3:  # junk items
            items.insert(pos, rnd.choice([1, "s", None, [], {"rule": 3}, {"x": {"table": {}}}]))
        elif kind == 4:  # a multi-key item
            items.insert(pos, {"rule": {"family": "ip", "table": "filter", "chain": "m",
                                        "expr": []}, "chain": {"family": "ip", "table": "filter",
                                                               "name": "m"}})
        elif kind == 5:  # an expression holding a "table" / "rule" object
            items.insert(pos, {"rule": {"family": "ip", "table": "filter", "chain": "C0",
                                        "handle": 5, "expr": [{"table": {"family": "ip"}},
                                                              {"rule": {"family": "ip"}}]}})
        elif kind == 6:  # a rule with its keys in another order
            items.insert(pos, {"rule": {"table": "filter", "family": "ip", "chain": "C0",
                                        "expr": [{"accept": None}]}})
        elif kind == 7:  # a table twice
            items.insert(pos, {"table": {"family": "ip", "name": "filter", "handle": 1}})
        else:  # a rule item without its table
            items.insert(pos, {"rule": {"family": "ip", "chain": "C0", "expr": []}})
    return {"nftables": items}


def test_any_valid_json_reads_the_same_as_the_full_decode() -> None:
    rnd = random.Random(1705)
    lazy_seen = 0
    for _ in range(400):
        doc = _doc(rnd)
        for text in (json.dumps(doc), json.dumps(doc, separators=(",", ":")),
                     json.dumps(doc, ensure_ascii=False), json.dumps(doc, indent=1)):
            _same_as_full(text)
            if "_pending" in P.parse_nft_json(text).__dict__:
                lazy_seen += 1
    assert lazy_seen > 300  # the lazy path was exercised, not only the full decode


@pytest.mark.parametrize("text", ["", "  ", "nope", "[]", '{"nftables": 3}', '{"nftables": []}',
                                  '{"nftables": [{"table": {"family": "ip", "name": "t"}}]}',
                                  '{"nftables": [{"table": {"family": "ip", "name": "t"}}, ]}',
                                  '{"nftables": [{"table": {"family": "ip", "name": "t"}}]} ',
                                  '{"nftables": [{"table": {}}, {"rule": {}}], "nftables": []}'])
def test_odd_documents_read_the_same(text: str) -> None:
    _same_as_full(text)


def _corrupt_nat(text: str) -> str:
    """One of the nat table's later rule items made invalid JSON, its brackets still balanced
    (what no screening short of decoding can see)."""
    i = text.index('{"rule": {"family": "ip", "table": "nat"')
    j = text.index('"expr": [', text.index('{"rule": {"family": "ip", "table": "nat"', i + 1))
    return text[:j] + '"expr" [' + text[j + len('"expr": ['):]


def test_an_unreadable_kept_table_raises_to_its_reader_and_the_check_says_so() -> None:
    from clusterfix_tui.core.checks import run_checks
    from clusterfix_tui.core.snapshot import ClusterSnapshot

    text = next(t for t in _recorded() if '"table": "nat"' in t and '"name": "filter"' in t)
    bad = _corrupt_nat(text)
    with pytest.raises(ValueError):
        json.loads(bad)
    assert "not JSON" in P._parse_nft_json_full(bad).errors[0]  # the full decode's answer
    rs = P.parse_nft_json(bad)
    assert rs.chains and not rs.errors  # read lazily: the bad item is in nat's kept text
    assert rs.rules_in("ip", "filter", "FORWARD") == P._parse_nft_json_full(text).rules_in(
        "ip", "filter", "FORWARD")  # another table reads fine
    with pytest.raises(P.NftRulesUnreadable):
        rs.rules_in("ip", "nat", "KUBE-SERVICES")
    with pytest.raises(P.NftRulesUnreadable):
        _ = P.parse_nft_json(bad).rules
    with pytest.raises(P.NftRulesUnreadable):
        P.parse_nft_json(bad).table_rules("ip", "nat")
    # brackets no longer balanced (an item cut short inside nat's rules): the same
    i = text.index('{"rule": {"family": "ip", "table": "nat"')
    j = text.index("}]}}", i)
    cut = text[:j] + text[j + 2:]
    with pytest.raises(ValueError):
        json.loads(cut)
    with pytest.raises(P.NftRulesUnreadable):
        P.parse_nft_json(cut).rules_in("ip", "nat", "PREROUTING")

    def reads_nat(snapshot: Any, facts: dict[str, NodeFacts]) -> list[Any]:
        return [r for f in facts.values() if f.nft_ruleset is not None
                for r in f.nft_ruleset.rules_in("ip", "nat", "PREROUTING")]

    facts = {"n1": NodeFacts(node="n1", complete=True, nft_ruleset=P.parse_nft_json(bad))}
    findings, errors = run_checks(ClusterSnapshot(), facts, [reads_nat])
    assert not findings and len(errors) == 1 and "NftRulesUnreadable" in errors[0]


def test_a_lazily_read_ruleset_is_not_changed_by_its_readers() -> None:
    text = next(t for t in _recorded() if '"name": "nat"' in t)
    rs = P.parse_nft_json(text)
    got = rs.rules_in("ip", "nat", "PREROUTING")
    got.append("mutated")  # type: ignore[arg-type]
    assert "mutated" not in rs.rules_in("ip", "nat", "PREROUTING")
    before = copy.deepcopy(P._parse_nft_json_full(text))
    assert rs == before
