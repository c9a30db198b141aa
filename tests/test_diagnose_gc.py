"""diagnose()'s policy for the cyclic garbage collector (core.diagnose.facts_kept_frozen and
freeze_startup_heap): the start-up heap (imported modules) frozen once and left frozen by a
diagnosis, no automatic full collection while a diagnosis runs, one full collection at its end
that frees every garbage cycle the diagnosis made, nothing the diagnosis made left frozen, and
the wizard's freeze on top undone as before. No timing here (bench/bench_our_cpu.py)."""

from __future__ import annotations

import gc
import weakref

import pytest
from diag_fakes import ReplayAPI, ReplayShells, load

from clusterfix_tui.core import diagnose as D


@pytest.fixture(autouse=True)
def _fresh_collector(monkeypatch: pytest.MonkeyPatch):
    gc.unfreeze()
    was = gc.isenabled()
    threshold = gc.get_threshold()
    gc.enable()
    monkeypatch.setattr(D, "_startup_done", False)
    monkeypatch.setattr(D, "_startup_frozen", None)
    monkeypatch.setattr(D, "_freeze_pending", False)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if not was:
        gc.disable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}  # every generation but the permanent (frozen) one


def _to_old_generation() -> None:
    gc.collect(0)
    gc.collect(1)  # survivors of a generation-1 collection go to the oldest generation


class _CycleShells(ReplayShells):
    """Each node's shell leaves a garbage cycle in the oldest generation (as a closed
    connection's transport would), and records the collector's thresholds while it runs."""

    def __init__(self, rec: dict) -> None:
        super().__init__(rec)
        self.refs: list[weakref.ref] = []
        self.thresholds: list[tuple[int, int, int]] = []

    def __call__(self, node, address=None):
        c = _Cycle()
        self.refs.append(weakref.ref(c))
        _to_old_generation()
        del c
        self.thresholds.append(gc.get_threshold())
        return super().__call__(node, address)


def test_the_start_up_heap_stays_frozen_across_a_diagnosis() -> None:
    module_level = [{"imported": i} for i in range(50)]  # alive before the start-up freeze
    assert D.freeze_startup_heap() is True
    frozen = gc.get_freeze_count()
    assert frozen > 0 and id(module_level) not in _tracked_ids()
    rec = load("forward-drop")
    diag = D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert diag.facts
    # the diagnosis's final collection did not unfreeze (and so did not walk) the start-up heap
    assert id(module_level) not in _tracked_ids()
    assert 0 < gc.get_freeze_count() <= frozen
    assert D._startup_frozen is not None
    assert D.freeze_startup_heap() is False  # once per process


def test_nothing_the_diagnosis_made_stays_frozen() -> None:
    D.freeze_startup_heap()
    frozen = gc.get_freeze_count()
    rec = load("forward-drop")
    diag = D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert gc.get_freeze_count() <= frozen
    tracked = _tracked_ids()
    made = [diag, diag.facts, diag.findings, diag.snapshot.nodes]
    made += [f for f in diag.facts.values() if gc.is_tracked(f)]
    made += [f.sections for f in diag.facts.values()]
    assert all(id(o) in tracked for o in made)


def test_a_garbage_cycle_made_during_the_diagnosis_is_freed_at_its_end() -> None:
    D.freeze_startup_heap()
    rec = load("forward-drop")
    shells = _CycleShells(rec)
    threshold = gc.get_threshold()
    diag = D.diagnose(ReplayAPI(rec), shells)
    assert diag.facts and len(shells.refs) == len(diag.facts)
    # while the nodes were read no automatic full collection could start ...
    assert all(t[2] == D._NO_FULL for t in shells.thresholds)
    # ... and the one on leaving freed every cycle, from the oldest generation too
    assert all(r() is None for r in shells.refs)
    assert gc.get_threshold() == threshold


def test_without_a_start_up_freeze_the_cycles_are_freed_too() -> None:
    rec = load("healthy")
    shells = _CycleShells(rec)
    D.diagnose(ReplayAPI(rec), shells)
    assert shells.refs and all(r() is None for r in shells.refs)
    assert gc.get_freeze_count() == 0


def test_a_freeze_on_top_of_the_start_up_one_is_undone_as_before() -> None:
    """The wizard freezes the whole heap after each diagnosis (ui.app.freeze_heap): the next
    diagnosis unfreezes everything and frees what died inside it (as before the start-up
    freeze existed); the start-up freeze is given up for the process."""
    D.freeze_startup_heap()
    conn = _Cycle()  # alive at the wizard's freeze (a connection still open)
    ref = weakref.ref(conn)
    gc.freeze()
    del conn  # closed later: garbage inside the permanent generation
    gc.collect()
    assert ref() is not None
    rec = load("healthy")
    D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert ref() is None
    assert gc.get_freeze_count() == 0
    assert D._startup_frozen is None


def test_errors_restore_the_collector_and_keep_the_start_up_freeze(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug in the checks")

    D.freeze_startup_heap()
    threshold = gc.get_threshold()
    monkeypatch.setattr(D, "run_checks", broken)
    rec = load("healthy")
    with pytest.raises(RuntimeError):
        D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() > 0
    assert D._freeze_depth == 0


def test_nested_uses_restore_once_by_the_outermost() -> None:
    threshold = gc.get_threshold()
    with D.facts_kept_frozen() as keep:
        keep()
        with D.facts_kept_frozen() as inner:
            inner()
        assert gc.get_threshold()[2] == D._NO_FULL  # the inner exit leaves the outer's setting
    assert gc.get_threshold() == threshold
    assert D._freeze_depth == 0


def test_a_disabled_collector_is_left_alone() -> None:
    gc.disable()
    try:
        threshold = gc.get_threshold()
        assert D.freeze_startup_heap() is False
        with D.facts_kept_frozen() as keep:
            keep()
            assert gc.get_threshold() == threshold
            assert gc.get_freeze_count() == 0
        assert not gc.isenabled()
        assert gc.get_threshold() == threshold
    finally:
        gc.enable()


def test_no_start_up_freeze_while_a_diagnosis_runs() -> None:
    with D.facts_kept_frozen():
        assert D.freeze_startup_heap() is False
        assert gc.get_freeze_count() == 0
    assert D.freeze_startup_heap() is True


def test_build_runtime_freezes_the_clients_modules_once() -> None:
    """runtime.freeze_startup_heap imports what a diagnosis uses first (the kubernetes client
    and its kubeconfig loader, the check modules), then freezes: they are part of the frozen
    start-up heap."""
    from clusterfix_tui import runtime

    assert runtime.freeze_startup_heap() is True
    import sys

    mods = [sys.modules["kubernetes.client.api_client"], sys.modules["kubernetes.config"],
            sys.modules["clusterfix_tui.core.checks.flannel"]]
    tracked = _tracked_ids()
    assert all(id(m.__dict__) not in tracked for m in mods)
    assert runtime.freeze_startup_heap() is False
