"""parse_nft_json's fast path for one-key rule and chain items against the previous parser, kept
here verbatim: the same NftRuleset on every recorded `nft -j list ruleset` (lab scenarios, the
firewall rulesets) and on items with every odd type a value can have in JSON."""

from __future__ import annotations

import json
import random
from typing import Any

from diag_fakes import LAB_DATA, LAB_NONCE, load, scenarios

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import split_sections


def _old_parse_nft_json(text: str) -> P.NftRuleset:
    _s, _i = P._s, P._i
    errors: list[str] = []
    text = (text or "").strip()
    if not text:
        return P.NftRuleset(errors=())
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return P.NftRuleset(errors=(f"not JSON: {exc}",))
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return P.NftRuleset(errors=("no 'nftables' list",))
    tables: list[tuple[str, str]] = []
    chains: list[P.NftChain] = []
    rules: list[P.NftRule] = []
    version = None
    for it in items:
        if not isinstance(it, dict):
            continue
        if isinstance(it.get("metainfo"), dict):
            version = _s(it["metainfo"].get("version"))
        t = it.get("table")
        if isinstance(t, dict):
            tables.append((_s(t.get("family")) or "", _s(t.get("name")) or ""))
        c = it.get("chain")
        if isinstance(c, dict):
            chains.append(P.NftChain(_s(c.get("family")) or "", _s(c.get("table")) or "",
                                     _s(c.get("name")) or "", _i(c.get("handle")), _s(c.get("type")),
                                     _s(c.get("hook")), c.get("prio"), _s(c.get("policy"))))
        r = it.get("rule")
        if isinstance(r, dict):
            expr = r.get("expr")
            rules.append(P.NftRule(_s(r.get("family")) or "", _s(r.get("table")) or "",
                                   _s(r.get("chain")) or "", _i(r.get("handle")),
                                   tuple(expr) if isinstance(expr, list) else (),
                                   _s(r.get("comment"))))
    return P.NftRuleset(tuple(tables), tuple(chains), tuple(rules), version, tuple(errors))


def _same(text: str) -> None:
    new, old = P.parse_nft_json(text), _old_parse_nft_json(text)
    assert new == old
    # equal values of the same types (1 == 1.0 == True would hide a changed type)
    for a, b in zip(new.rules + new.chains, old.rules + old.chains, strict=True):  # type: ignore[operator]
        assert [type(getattr(a, f)) for f in a.__dataclass_fields__] == \
            [type(getattr(b, f)) for f in b.__dataclass_fields__]


def _recorded() -> list[str]:
    out = []
    for s in scenarios():
        for text in load(s)["facts"].values():
            sec = split_sections(text, LAB_NONCE)[0].get("nft_json")
            if sec is not None:
                out.append(sec.stdout)
    for p in sorted((LAB_DATA.parent / "firewall").glob("*.json")):
        d = json.loads(p.read_text())
        if isinstance(d.get("nft_json"), str):
            out.append(d["nft_json"])
    return out


def test_every_recorded_ruleset_parses_the_same() -> None:
    texts = _recorded()
    assert len(texts) >= 30
    rules = 0
    for t in texts:
        _same(t)
        rules += len(P.parse_nft_json(t).rules)
    assert rules > 500


ODD: list[Any] = ["", "x", 0, 7, -1, 2.5, True, False, None, [], {}, [1], {"a": 1}]


def test_odd_types_and_shapes_parse_the_same() -> None:
    rnd = random.Random(1717)
    for _ in range(300):
        items: list[Any] = []
        for _k in range(rnd.randrange(1, 8)):
            kind = rnd.choice(["rule", "chain", "table", "metainfo", "multi", "junk"])
            body = {f: rnd.choice(ODD) for f in ("family", "table", "chain", "name", "handle",
                                                  "expr", "comment", "type", "hook", "prio",
                                                  "policy", "version") if rnd.random() < 0.8}
            if rnd.random() < 0.5:
                body.update(family="ip", table="filter", chain="FORWARD", name="FORWARD",
                            handle=rnd.randrange(100), expr=[{"accept": None}])
            if kind == "multi":
                items.append({"rule": dict(body), "chain": dict(body), "table": dict(body)})
            elif kind == "junk":
                items.append(rnd.choice([1, "s", None, [body], {"rule": 3}, {"chain": [body]}]))
            else:
                items.append({kind: body})
        _same(json.dumps({"nftables": items}))
    for text in ("", "  ", "nope", "[]", '{"nftables": 3}', '{"nftables": []}'):
        _same(text)
