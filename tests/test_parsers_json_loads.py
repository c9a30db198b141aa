"""#17, the core at 5,000 nodes: `parsers.json_loads` (orjson where installed, json otherwise)
reads every node's JSON (`ip -j`, `bridge -j`, `nft -j`, CNI confs) into exactly what json.loads
reads: the same values of the same types in the same order, or the same error message (it goes
into parse_errors). And parse_facts gives the same NodeFacts with or without orjson.
No timing here: bench/bench_core.py prints the figures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from diag_fakes import LAB_NONCE, load, scenarios
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterfix_tui.core import facts as F
from clusterfix_tui.core import parsers as P

DATA = Path(__file__).parent / "data"


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types, dict keys in the same order (-0.0 is not 0.0, nan is nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def _both(text: str) -> tuple[Any, Any]:
    """(json.loads, json_loads) of text: the value, or ("error", type, message)."""
    out = []
    for fn in (json.loads, P.json_loads):
        try:
            out.append(fn(text))
        except ValueError as exc:
            out.append(("error", type(exc).__name__, str(exc)))
    return out[0], out[1]


def _recorded_outputs() -> list[tuple[str, str]]:
    outs = [(LAB_NONCE, o) for sc in scenarios() for o in load(sc)["facts"].values()]
    for p in sorted((DATA / "facts").glob("*.out")):
        text = p.read_text()
        outs.append((text.split(" ", 2)[1], text))
    return outs


def test_the_fast_decoder_is_in_use_here() -> None:
    # the figures in bench/ assume it; pyproject.toml installs it
    assert P._orjson is not None


def test_every_recorded_json_section_decodes_the_same() -> None:
    n = 0
    for nonce, out in _recorded_outputs():
        sections, _, _ = F.split_sections(out, nonce)
        for sec in sections.values():
            text = sec.stdout.strip()
            if not text or text[0] not in "[{":
                continue
            a, b = _both(text)
            assert _same(a, b), sec.name
            n += 1
    assert n > 100


@pytest.mark.parametrize("text", [
    "NaN", "[Infinity, -Infinity]", "1e400", "-1e400", "[1.5e308, 2e308]",  # json-only values
    "18446744073709551615", "18446744073709551616", "-9223372036854775808",
    "-9223372036854775809", "123456789012345678901234567890",  # beyond 64 bits: orjson 3.8 floats
    '{"handle": 123456789012345678901}', '["1234567890123456789012"]',  # a long run in a string
    '"\\ud800"', '["\\udc00x"]', '"\\ud83d\\ude00"',  # lone and paired surrogate escapes
    "-0", "-0.0", "0.1", "5e-324", "2.2250738585072011e-308", "1E2", "9007199254740993",
    '{"a": 1, "b": 2, "a": 3}',  # duplicate keys: the last value, the first position
    "\ufeff[1]", "[1,]", "[01]", "", "   ", "[1] x", '{"a" 1}', "[\"\x01\"]", "'a'",  # errors
    '["caf\u00e9", "\u65e5\u672c", "\\u00e9"]', ' \t\r\n[1]\n ', "[[[[[]]]]]",
])
def test_edge_cases_decode_the_same(text: str) -> None:
    a, b = _both(text)
    assert _same(a, b), (text, a, b)


def test_a_lone_surrogate_in_the_text_itself() -> None:
    text = '["a\ud800b"]'  # not encodable: json reads it
    a, b = _both(text)
    assert _same(a, b)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=5),
    max_leaves=25)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json_values, st.booleans())
def test_generated_json_decodes_the_same(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    a, b = _both(text)
    assert _same(a, b), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-+.eE[]{},:\" ntrufalsNIiy\\", max_size=30))
def test_arbitrary_text_decodes_or_fails_the_same(text: str) -> None:
    a, b = _both(text)
    assert _same(a, b), text


def test_parse_facts_the_same_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    outs = _recorded_outputs()
    fast = [F.parse_facts("n", out, nonce) for nonce, out in outs]
    monkeypatch.setattr(P, "_orjson", None)
    slow = [F.parse_facts("n", out, nonce) for nonce, out in outs]
    for a, b in zip(fast, slow, strict=True):
        assert a == b
        assert a.parse_errors == b.parse_errors
        if a.nft_ruleset is not None:  # the lazily decoded tables too
            assert a.nft_ruleset.rules == b.nft_ruleset.rules  # type: ignore[union-attr]
