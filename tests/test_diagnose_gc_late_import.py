"""What a late import makes joins the start-up freeze (core.diagnose.freeze_late_imports):
headless `fix` imports the client's generated API classes (~80k objects) in a thread while its
first diagnosis runs; left unfrozen, the full collection ending every later diagnosis walked
them again. Frozen at once when no diagnosis runs, else when the running one ends (after its
own full collection: nothing dead is frozen, a cycle the diagnosis made and dropped is freed);
never when the start-up freeze is not in effect. No timing here (bench/bench_our_cpu.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from diag_fakes import ReplayAPI, ReplayShells, load
from test_diagnose_gc import _fresh_collector  # noqa: F401 - the same autouse fixture here

from clusterfix_tui.core import diagnose as D


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _Made:
    """An object the collector tracks (a dict of plain values alone would not be)."""

    def __init__(self, i: int) -> None:
        self.i = i


def _tracked_ids() -> set[int]:
    return {id(o) for o in gc.get_objects()}  # every generation but the permanent (frozen) one


def test_a_late_import_is_frozen_at_once_when_no_diagnosis_runs() -> None:
    assert D.freeze_startup_heap() is True
    before = gc.get_freeze_count()
    late = [_Made(i) for i in range(500)]  # what an import made after the start-up freeze
    assert id(late) in _tracked_ids()
    assert D.freeze_late_imports() is True
    assert id(late) not in _tracked_ids()
    assert gc.get_freeze_count() >= before + 500
    assert before + 500 <= gc.get_freeze_count() <= D._startup_frozen  # (frozen objects may die)
    rec = load("forward-drop")
    diag = D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert diag.facts
    # the diagnosis's final collection neither unfroze nor walked it: it is start-up heap now
    assert id(late) not in _tracked_ids()
    assert D._startup_frozen is not None


def test_during_a_diagnosis_it_waits_for_its_end() -> None:
    assert D.freeze_startup_heap() is True
    refs: list[weakref.ref] = []
    with D.facts_kept_frozen():
        late = [_Made(i) for i in range(500)]
        assert D.freeze_late_imports() is False  # nothing frozen while the diagnosis runs
        assert id(late) in _tracked_ids()
        c = _Cycle()
        refs.append(weakref.ref(c))
        del c  # garbage the diagnosis made: freed by its final collection, never frozen
        assert D._freeze_pending is True
    assert refs[0]() is None
    assert id(late) not in _tracked_ids()
    assert D._freeze_pending is False
    assert D._startup_frozen is not None and 0 < gc.get_freeze_count() <= D._startup_frozen


def test_nothing_is_frozen_without_the_start_up_freeze() -> None:
    late = [_Made(i) for i in range(50)]
    assert D.freeze_late_imports() is False  # no start-up freeze: not ours to manage
    assert gc.get_freeze_count() == 0 and id(late) in _tracked_ids()
    assert D.freeze_startup_heap() is True
    held = [_Made(i) for i in range(50)]
    gc.freeze()  # someone froze on top (the wizard): the next diagnosis gives ours up
    assert id(held) not in _tracked_ids()
    with D.facts_kept_frozen():
        pass
    assert D._startup_frozen is None
    more = [_Made(i) for i in range(50)]
    assert D.freeze_late_imports() is False
    assert id(more) in _tracked_ids()


def test_a_disabled_collector_is_left_alone() -> None:
    assert D.freeze_startup_heap() is True
    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        late = [_Made(i) for i in range(50)]
        assert D.freeze_late_imports() is False
        assert gc.get_freeze_count() == frozen and id(late) in _tracked_ids()
    finally:
        gc.enable()


def test_headless_fixs_import_thread_freezes_what_it_imported() -> None:
    code = (
        "import gc, sys, threading\n"
        "from clusterfix_tui.runtime import freeze_startup_heap\n"
        "assert freeze_startup_heap()\n"
        "from clusterfix_tui.commands.fix import _warm_api_writes\n"
        "API = type('API', (), {'__module__': 'clusterfix_tui.transports.kube'})\n"
        "before = gc.get_freeze_count()\n"
        "_warm_api_writes(API())\n"
        "for t in threading.enumerate():\n"
        "    if t.name == 'cfx-warm-api-writes': t.join()\n"
        "from kubernetes.client import CoreV1Api\n"
        "ids = {id(o) for o in gc.get_objects()}\n"
        "print(id(CoreV1Api) not in ids, id(CoreV1Api.list_node) not in ids,"
        " gc.get_freeze_count() - before > 10000)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.split() == ["True", "True", "True"], r.stdout
