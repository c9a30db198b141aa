"""diagnose()'s policy for the cyclic garbage collector (core.diagnose.facts_kept_frozen): each
node's parsed facts are frozen once kept, young garbage is still collected, and nothing stays
frozen after the diagnosis, whatever happened in it. No timing here (bench/bench_core.py)."""

from __future__ import annotations

import gc

import pytest
from diag_fakes import ReplayAPI, ReplayShells, load

from clusterfix_tui.core import diagnose as D


@pytest.fixture(autouse=True)
def _nothing_frozen():
    gc.unfreeze()
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    if not was:
        gc.disable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_keep_freezes_what_is_alive_and_frees_young_cycles_first() -> None:
    import weakref

    with D.facts_kept_frozen() as keep:
        kept = [{"node": i} for i in range(100)]
        dead = _Cycle()
        ref = weakref.ref(dead)
        del dead
        before = gc.get_freeze_count()
        keep()
        assert ref() is None  # the garbage cycle was collected, not frozen
        assert gc.get_freeze_count() > before
        assert not gc.is_tracked(kept) or gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0


def test_a_cycle_that_dies_after_its_freeze_is_freed_on_leaving() -> None:
    import weakref

    with D.facts_kept_frozen() as keep:
        conn = _Cycle()  # alive at the freeze (a connection still open)
        ref = weakref.ref(conn)
        keep()
        del conn  # closed later: garbage inside the permanent generation
        gc.collect()
        assert ref() is not None  # frozen: the collector does not see it while the phase runs
    assert ref() is None  # unfrozen and collected on leaving: not leaked


def test_unfrozen_on_errors_and_once_by_the_outermost_of_nested_uses() -> None:
    with pytest.raises(RuntimeError):
        with D.facts_kept_frozen() as keep:
            keep()
            with D.facts_kept_frozen() as inner:
                inner()
            assert gc.get_freeze_count() > 0  # the inner exit leaves the outer's freeze
            raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0
    assert D._freeze_depth == 0


def test_a_disabled_collector_is_left_alone() -> None:
    gc.disable()
    try:
        with D.facts_kept_frozen() as keep:
            keep()
            assert gc.get_freeze_count() == 0
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_diagnose_keeps_each_node_and_leaves_nothing_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[int] = []
    real = D._keep_frozen

    def counting() -> None:
        kept.append(1)
        real()

    monkeypatch.setattr(D, "_keep_frozen", counting)
    rec = load("forward-drop")
    diag = D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert diag.facts and len(kept) == len(diag.facts)
    assert gc.get_freeze_count() == 0
    assert D._freeze_depth == 0


def test_diagnose_unfreezes_when_the_checks_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug in the checks")

    monkeypatch.setattr(D, "run_checks", broken)
    rec = load("healthy")
    with pytest.raises(RuntimeError):
        D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert gc.get_freeze_count() == 0
    assert D._freeze_depth == 0
