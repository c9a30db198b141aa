"""#17, the core at 5,000 nodes: a quoted iptables-save rule's tokens are read when asked.

kube-proxy's rules carry quoted comments; tokenizing them was most of an iptables-save parse,
and the checks read a nat table's chains, targets and specs only (tokens only for the filter
rules a flow's walk reaches). `parsers._quoted_rule_head` reads the chain and the target without
tokenizing, and `Rule.args` tokenizes the spec on first read. Every Rule must be the one the
reference parser (shlex per rule, tests/test_parsers_fast.py) makes: same fields, ==, hash,
repr; a line whose chain or target is not a plain word is tokenized at once, as before."""

from __future__ import annotations

import random

from test_parsers_fast import RECORDED, _reference_parse

from clusterfix_tui.core import parsers as P


def _same(text: str) -> P.IptablesSave:
    got, ref = P.parse_iptables_save(text), _reference_parse(text)
    for name, t in ref.tables.items():
        g = got.tables[name]
        assert list(g.chains.items()) == list(t.chains.items())
        for a, b in zip(g.rules, t.rules, strict=True):
            assert (a.table, a.chain, a.spec, a.target) == (b.table, b.chain, b.spec, b.target)
    # the whole result, tokens included (read through Rule.args), on a fresh parse
    fresh = P.parse_iptables_save(text)
    assert fresh == ref and repr(fresh) == repr(ref)
    for t in P.parse_iptables_save(text).tables.values():
        for r, rr in zip(t.rules, ref.tables[t.name].rules, strict=True):
            assert hash(r) == hash(rr) and r.opt("--comment") == rr.opt("--comment")
    assert got.errors == ref.errors
    return got


_WORDS = ["-A", "-I", "X", "KUBE-SVC-1", "-j", "-g", "--jump", "--goto", "ACCEPT", "DNAT", "-m",
          "comment", "--comment", "-s", "10.0.0.0/8", "!", "1", "''", '""', "-j\t", "x"]
_QUOTED = ['"a b"', '"-j DROP"', "'it s'", '"x"', '""', "''", '"say -g Y"', '"a"b', 'a"b c"',
           "'-j'", '"-j"', "'q'r"]


def _line(rnd: random.Random) -> str:
    parts = [rnd.choice(["-A", "-A", "-I"])]
    for _ in range(rnd.randint(0, 9)):
        parts.append(rnd.choice(_QUOTED) if rnd.random() < 0.3 else rnd.choice(_WORDS))
    sep = [rnd.choice([" ", " ", " ", "  ", "\t", ""]) for _ in parts]
    return "".join(p + s for p, s in zip(parts, sep, strict=True)).rstrip(" ") + \
        rnd.choice(["", "", "\r", " "])


def test_random_quoted_rules_read_as_the_reference_parser_reads_them() -> None:
    rnd = random.Random(1705)
    lazy = 0
    for _ in range(300):
        lines = [_line(rnd) for _ in range(20)]
        text = "*nat\n:PREROUTING ACCEPT [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n"
        got = _same(text)
        lazy += sum("args" not in vars(r) for r in P.parse_iptables_save(text).tables["nat"].rules)
        del got
    assert lazy > 50  # the lazy path was taken, not only the eager one


def test_recorded_tables_read_the_same_and_kube_proxy_rules_are_not_tokenized() -> None:
    untouched = 0
    for _label, text in RECORDED:
        _same(text)
        for t in P.parse_iptables_save(text).tables.values():
            untouched += sum("args" not in vars(r) for r in t.rules)
    assert untouched > 200


def test_a_comment_that_looks_like_a_jump_is_not_the_target() -> None:
    text = ("*filter\n:X - [0:0]\n"
            '-A X -m comment --comment "-j DROP" -j ACCEPT\n'
            '-A X -m comment --comment "x" -j DNAT --to-destination 10.0.0.1 -g Y\n'
            '-A X -j ACCEPT -m comment --comment "then -j DROP"\n'
            '-A X -m comment --comment "x"-j DROP\n'
            "COMMIT\n")
    rules = _same(text).tables["filter"].rules
    assert [r.target for r in rules] == ["ACCEPT", "Y", "ACCEPT", None]
    assert "args" not in vars(rules[0]) and "args" not in vars(rules[1])
    assert "args" in vars(rules[2]) and "args" in vars(rules[3])  # tokenized at once
    assert rules[0].args[-2:] == ("-j", "ACCEPT") and "args" in vars(rules[0])
