"""#17 (seventh pass): NodeFacts fields parsed on their first read (facts._OnFirstRead).

`modules` (read by the ipvs check and the plans) and `alternatives` (read by the plans, and by
parse_facts itself only when `iptables -V` names no backend) are kept as their parser and text
until read. Every reader must see exactly what the eager parse gave (value, ==, repr, replace,
pickle, threads), on every recorded node output; the parse itself must not run them."""

from __future__ import annotations

import dataclasses
import pickle
import threading
from typing import Any

import pytest
from diag_fakes import FACTS_DATA, LAB_NONCE, load, scenarios

from clusterfix_tui.core import facts as F
from clusterfix_tui.core import parsers as P


def _outputs() -> list[tuple[str, str]]:
    out = [(k, v) for s in scenarios() for k, v in sorted(load(s)["facts"].items())]
    for p in sorted(FACTS_DATA.glob("*.out")):
        txt = p.read_text()
        nonce = txt.split(" ", 2)[1] if txt.startswith("@@CFX ") else LAB_NONCE
        out.append((p.stem, txt.replace(nonce, LAB_NONCE)))
    return out


OUTPUTS = _outputs()


def _eager(node: str, text: str) -> tuple[P.Modules, P.Alternatives | None]:
    secs = F.split_sections(text, LAB_NONCE)[0]

    def ok(name: str) -> str | None:
        s = secs.get(name)
        return s.stdout if s is not None and s.rc == 0 else None

    lib = secs.get("lib_modules")
    alt = ok("alternatives")
    return (P.parse_modules(ok("proc_modules"), ok("sys_module"), lib is not None and lib.rc == 0),
            P.parse_alternatives(alt) if alt is not None else None)


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"modules": 0, "alternatives": 0}
    real_m, real_a = P.parse_modules, P.parse_alternatives

    def m(*a: Any) -> Any:
        calls["modules"] += 1
        return real_m(*a)

    def al(*a: Any) -> Any:
        calls["alternatives"] += 1
        return real_a(*a)

    monkeypatch.setattr(P, "parse_modules", m)
    monkeypatch.setattr(P, "parse_alternatives", al)
    return calls


def test_every_reader_sees_the_eager_values() -> None:
    assert len(OUTPUTS) > 30
    lazy_alts = 0
    for node, text in OUTPUTS:
        modules, alts = _eager(node, text)
        f = F.parse_facts(node, text, LAB_NONCE)
        lazy_alts += "_src_alternatives" in vars(f)
        eager = dataclasses.replace(F.parse_facts(node, text, LAB_NONCE))  # every field read
        assert "_src_modules" not in vars(eager)
        assert repr(F.parse_facts(node, text, LAB_NONCE)) == repr(eager)
        assert F.parse_facts(node, text, LAB_NONCE) == eager
        back = pickle.loads(pickle.dumps(F.parse_facts(node, text, LAB_NONCE)))
        assert back == eager and back.modules == modules
        assert f.modules == modules and f.alternatives == alts
        assert f.modules is f.modules  # parsed once, kept
        assert f == eager and f.summary() == eager.summary()
    assert lazy_alts > 20


def test_the_parse_does_not_run_them(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    node, text = next((n, t) for n, t in OUTPUTS if "alternatives" in t)
    f = F.parse_facts(node, text, LAB_NONCE)
    assert f.iptables_version is not None and f.iptables_version.backend
    assert calls == {"modules": 0, "alternatives": 0}
    assert f.host_iptables == f.iptables_version.backend
    f.modules, f.modules, f.alternatives, f.alternatives  # noqa: B018
    assert calls == {"modules": 1, "alternatives": 1}


def test_without_a_backend_from_iptables_v_the_alternatives_decide_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    node, text = next((n, t) for n, t in OUTPUTS if "(nf_tables)" in t and "alternatives" in t)
    odd = text.replace("(nf_tables)", "(something else)")
    calls = _counting(monkeypatch)
    f = F.parse_facts(node, odd, LAB_NONCE)
    assert f.iptables_version is not None and f.iptables_version.backend is None
    assert calls["alternatives"] == 1 and "_src_alternatives" not in vars(f)
    alts = _eager(node, odd)[1]
    assert f.alternatives == alts
    assert f.host_iptables == P.host_iptables_backend(
        f.iptables_version, alts, f.raw("alternatives_link") or f.raw("iptables_link") or None)


def _read_both(f: F.NodeFacts, got: list[Any]) -> None:
    got.append((f.modules, f.alternatives))


def test_threads_reading_at_once_see_one_value() -> None:
    node, text = OUTPUTS[0]
    for _ in range(20):
        f = F.parse_facts(node, text, LAB_NONCE)
        got: list[Any] = []
        ts = [threading.Thread(target=_read_both, args=(f, got)) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(got) == 4 and all(g == got[0] for g in got)
        assert got[0][0] == _eager(node, text)[0]


def test_made_by_hand_they_are_plain_fields() -> None:
    m = P.Modules(frozenset({"ip_vs"}), "proc_modules", True)
    f = F.NodeFacts(node="n", modules=m)
    assert f.modules is m and F.NodeFacts(node="n").alternatives is None
    assert dataclasses.replace(f, node="m").modules is m
