"""Rollback fidelity: a foreign nft rule the iptables step deletes comes back AT ITS PLACE.

Order matters in a chain (a rule before a `return`, a `jump`, a `drop`): re-adding a deleted rule
at the end of its chain (what the rollback did before: `nft add rule ... <text>`) changes what the
chain does. Each case below runs the real nft in a network namespace made for the test: load a
chain, read it the way the node's facts do (`nft -j list ruleset`, `nft -a list table`), plan the
iptables step from a foreign-rule finding, run the planned delete and then its rollback, and
compare `nft list ruleset` before and after byte for byte (counters included: they are zero)."""

from __future__ import annotations

import json
import shlex

import pytest
from _env import require
from fix_helpers import FakeDiagnosis, del_netns, finding, is_root, new_netns, snapshot

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks.iptables import NftRuleRef
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes.iptables import STEP, nft_neighbours, nft_readd_command

CHAIN = "KUBE-SEP-TEST"
# a chain whose meaning depends on order: a rule before the `return`, duplicates, a jump
RULES = [
    "ip saddr 10.244.1.5 counter packets 0 bytes 0 jump KUBE-MARK-MASQ",
    "ct state new counter packets 0 bytes 0",
    "ip daddr 10.0.0.1 return",
    "ct state new counter packets 0 bytes 0",
    "meta l4proto tcp dnat to 10.244.1.5:8096",
]


def _load(name: str, rules: list[str]) -> None:
    body = "".join(f"\t\t{r}\n" for r in rules)
    text = ("table ip nat {\n\tchain KUBE-MARK-MASQ {\n\t}\n"
            f"\tchain {CHAIN} {{\n{body}\t}}\n}}\n")
    _sh(name, f"printf '%s' {shlex.quote(text)} | nft -f -")


def _sh(name: str, command: str, ok: bool = True) -> tuple[int, str, str]:
    import subprocess

    p = subprocess.run(["ip", "netns", "exec", name, "sh", "-c", command], capture_output=True,
                       text=True, timeout=30)
    if ok:
        assert p.returncode == 0, (command, p.stdout, p.stderr)
    return p.returncode, p.stdout, p.stderr


def _facts(name: str) -> NodeFacts:
    rs = P.parse_nft_json(_sh(name, "nft -j list ruleset")[1])
    table = _sh(name, "nft -a list table ip nat")[1]
    return NodeFacts(node="node-1", complete=True, nft_ruleset=rs,
                     nft_table_text={"nat": table})


def _handles(facts: NodeFacts) -> list[int]:
    return [r.handle for r in facts.nft_ruleset.rules_in("ip", "nat", CHAIN)]


def _plan(facts: NodeFacts, handles: list[int]):
    refs = [NftRuleRef("ip", "nat", CHAIN, h,
                       next(ln.strip() for ln in facts.nft_table_text["nat"].splitlines()
                            if ln.rstrip().endswith(f"# handle {h}")))
            for h in handles]
    f = finding("KUBE_PROXY_INCOMPATIBLE_CHAIN", "node-1", "iptables", cause="foreign-nft-rule",
                chains=[{"table": "nat", "chain": CHAIN}], host_iptables_version="1.8.9",
                kube_proxy_backend="nft", host_iptables="nft", foreign_rules=refs)
    plan = STEP.plan(FakeDiagnosis([f], facts={"node-1": facts}, snapshot=snapshot()))
    dels = [a for a in plan.actions if a.command.startswith("nft delete rule")]
    assert len(dels) == len(handles), plan.to_dict()
    return dels


@pytest.fixture
def netns():
    require(is_root(), "needs root (network namespaces)")
    require(_which("nft"), "needs nft")
    name = new_netns()
    try:
        yield name
    finally:
        del_netns(name)


def _which(b: str) -> bool:
    import shutil

    return shutil.which(b) is not None


# (which rules of RULES are foreign, by index) -> one case each: first, middle before the return,
# the second of two identical rules, last, two adjacent ones
CASES = {"first": [0], "before-return": [1], "second-duplicate": [3], "last": [4],
         "adjacent-pair": [1, 2], "all": [0, 1, 2, 3, 4]}


@pytest.mark.parametrize("case", list(CASES))
def test_deleted_rule_comes_back_at_its_place(netns, case):
    _load(netns, RULES)
    before = _sh(netns, "nft list ruleset")[1]
    facts = _facts(netns)
    dels = _plan(facts, [_handles(facts)[i] for i in CASES[case]])
    for a in dels:
        _sh(netns, a.command)
    assert _sh(netns, "nft list ruleset")[1] != before
    for a in reversed(dels):  # the engine rolls back newest first
        _sh(netns, a.rollback.command)
    assert _sh(netns, "nft list ruleset")[1] == before


def test_place_found_again_after_the_chain_is_rewritten(netns):
    """kube-proxy rewrites its chains (new handles): the neighbours are found by their text."""
    _load(netns, RULES)
    before = _sh(netns, "nft list ruleset")[1]
    facts = _facts(netns)
    (d,) = _plan(facts, [_handles(facts)[3]])
    _sh(netns, d.command)
    _sh(netns, f"nft flush chain ip nat {CHAIN}")
    _load(netns, RULES[:3] + RULES[4:])  # the same rules, written again: other handles
    _sh(netns, d.rollback.command)
    assert _sh(netns, "nft list ruleset")[1] == before


def test_rule_before_gone_then_inserted_before_the_one_after(netns):
    _load(netns, RULES)
    facts = _facts(netns)
    (d,) = _plan(facts, [_handles(facts)[1]])
    _sh(netns, d.command)
    h0 = _handles(_facts(netns))[0]
    _sh(netns, f"nft delete rule ip nat {CHAIN} handle {h0}")  # the rule before it goes too
    _sh(netns, d.rollback.command)
    got = [ln.strip() for ln in _sh(netns, f"nft list chain ip nat {CHAIN}")[1].splitlines()]
    want = [r for r in RULES[1:]]
    assert [g for g in got if g in want] == want


def test_both_neighbours_gone_adds_nothing_and_says_so(netns):
    """A guess is worse than nothing: no place to put it -> exit 4, the chain is untouched."""
    _load(netns, RULES)
    facts = _facts(netns)
    (d,) = _plan(facts, [_handles(facts)[2]])
    _sh(netns, d.command)
    _sh(netns, f"nft flush chain ip nat {CHAIN}")
    _sh(netns, f"nft add rule ip nat {CHAIN} ip daddr 192.0.2.9 drop")
    mid = _sh(netns, "nft list ruleset")[1]
    rc, _out, err = _sh(netns, d.rollback.command, ok=False)
    assert rc == 4 and "by hand" in err
    assert _sh(netns, "nft list ruleset")[1] == mid


def test_rollback_run_twice_adds_the_rule_once(netns):
    _load(netns, RULES)
    before = _sh(netns, "nft list ruleset")[1]
    facts = _facts(netns)
    (d,) = _plan(facts, [_handles(facts)[1]])
    _sh(netns, d.command)
    _sh(netns, d.rollback.command)
    rc, out, _ = _sh(netns, d.rollback.command)
    assert "already" in out
    assert _sh(netns, "nft list ruleset")[1] == before


def test_neighbours_read_from_the_facts():
    """Pure: the place of a rule as nft_neighbours reads it, and no automatic re-add without it."""
    doc = {"nftables": [
        {"table": {"family": "ip", "name": "nat", "handle": 1}},
        {"chain": {"family": "ip", "table": "nat", "name": CHAIN, "handle": 2}},
        *({"rule": {"family": "ip", "table": "nat", "chain": CHAIN, "handle": h,
                    "expr": [{"accept": None}]}} for h in (3, 4, 5)),
    ]}
    text = (f"table ip nat {{ # handle 1\n\tchain {CHAIN} {{ # handle 2\n"
            "\t\tip daddr 10.0.0.1 accept # handle 3\n\t\tct state new counter packets 4 bytes 9"
            " # handle 4\n\t\tip daddr 10.0.0.1 accept # handle 5\n\t}\n}\n")
    f = NodeFacts(node="n", complete=True, nft_ruleset=P.parse_nft_json(json.dumps(doc)),
                  nft_table_text={"nat": text})
    u, d, c = "ip daddr 10.0.0.1 accept", "ct state new counter", nft_neighbours
    assert c(f, "ip", "nat", CHAIN, 4) == ([(u, 2, False)], [(u, 2, False)], 1)
    assert c(f, "ip", "nat", CHAIN, 3) == ([None], [(d, 1, False)], 2)
    assert c(f, "ip", "nat", CHAIN, 5, frozenset({4, 5})) == ([(d, 1, True), (u, 2, False)],
                                                              [None], 2)
    assert c(f, "ip", "nat", CHAIN, 99) is None
    cmd = nft_readd_command("ip", "nat", CHAIN, d, c(f, "ip", "nat", CHAIN, 4), "/b")
    # both neighbours read alike: no anchor either side, nothing but the refusal
    assert "position" not in cmd and "exit 4" in cmd


def test_partial_rollback_of_two_adjacent_deletions(netns):
    """Two adjacent foreign rules planned, only the second deleted (the first not approved): its
    rollback finds the first one still there and puts it right after it, not after the rule the
    plan kept before both."""
    rules = ["ip daddr 10.0.0.1 return", "ip daddr 10.0.0.2 return", "ip daddr 10.0.0.3 return",
             "meta l4proto tcp dnat to 10.244.1.5:8096"]
    _load(netns, rules)
    before = _sh(netns, "nft list ruleset")[1]
    facts = _facts(netns)
    hs = _handles(facts)
    first, second = _plan(facts, [hs[1], hs[2]])
    _sh(netns, second.command)
    _sh(netns, second.rollback.command)
    assert _sh(netns, "nft list ruleset")[1] == before
