"""#17, the core at 5,000 nodes: a node's kube-proxy backend and merged iptables views are made
once per NodeFacts (the checks asked for them 4 and 7 times a node), with the same answers as
made afresh, and a caller changing what it got does not change what the next one gets."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from diag_fakes import LAB_NONCE, load, scenarios

from clusterfix_tui.core.checks import _common as C
from clusterfix_tui.core.facts import parse_facts


def _all_facts() -> list[Any]:
    return [parse_facts(n, out, LAB_NONCE) for s in scenarios() for n, out in load(s)["facts"].items()]


def test_same_answers_as_made_afresh() -> None:
    for f in _all_facts():
        for _ in range(2):
            assert C.detect_backend(f) == C.detect_backend_of(f)
            for v in (4, 6):
                assert C.backend_saves(f, v) == C._backend_saves(f, v)
        assert replace(f) == f  # the memo is not a field: equality and copies are unchanged


def test_made_once_per_facts_and_callers_cannot_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    f = _all_facts()[0]
    calls: list[str] = []
    real_d, real_s = C.detect_backend_of, C._backend_saves
    monkeypatch.setattr(C, "detect_backend_of", lambda x: calls.append("d") or real_d(x))
    monkeypatch.setattr(C, "_backend_saves", lambda x, v: calls.append(f"s{v}") or real_s(x, v))
    fresh = replace(f)  # no memo yet
    for _ in range(5):
        C.detect_backend(fresh)
        got = C.backend_saves(fresh)
        got["legacy"] = None  # a caller changing its dict
        got.clear()
        C.backend_saves(fresh, 6)
    assert sorted(calls) == ["d", "s4", "s6"]
    assert C.backend_saves(fresh) == real_s(f, 4)
    stand_in = SimpleNamespace(**{k: getattr(f, k) for k in f.__dataclass_fields__})
    C.detect_backend(stand_in)  # type: ignore[arg-type]
    C.detect_backend(stand_in)  # type: ignore[arg-type]
    assert calls.count("d") == 3  # not a NodeFacts: answered afresh each time
