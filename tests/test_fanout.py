"""core/fanout.py: the API requests of a snapshot (the pod logs) in as few parallel connections
as keep the server busy. Every item once, results in order, the first error raised; `start`
threads while answers come back about as fast as we use them, more (up to `most`) while they
wait on the server. The clocks are the test's own: no timing here."""

from __future__ import annotations

import threading
import time

import pytest

from clusterfix_tui.core import fanout as FO
from clusterfix_tui.core.snapshot import build_snapshot


class _Clocks:
    """Per-thread fake wall and CPU clocks; a call advances them by (wall, cpu)."""

    def __init__(self) -> None:
        self.tl = threading.local()

    def wall(self) -> float:
        return getattr(self.tl, "wall", 0.0)

    def cpu(self) -> float:
        return getattr(self.tl, "cpu", 0.0)

    def spend(self, wall: float, cpu: float) -> None:
        self.tl.wall = self.wall() + wall
        self.tl.cpu = self.cpu() + cpu


def _run(items: int, wall: float, cpu: float, **kw):
    clocks = _Clocks()
    seen: list[str] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            seen.append(threading.current_thread().name)
        clocks.spend(wall, cpu)
        if wall > 0.01:
            time.sleep(0.002)  # (real time, so that the added threads find work left)
        return x * 10

    out = FO.fan_out(fn, list(range(items)), clocks=(clocks.wall, clocks.cpu), **kw)
    return out, seen


def test_every_item_once_in_order() -> None:
    out, seen = _run(100, 0.05, 0.001, most=8)
    assert out == [x * 10 for x in range(100)]
    assert len(seen) == 100
    assert FO.fan_out(lambda x: x, []) == []


def test_answers_as_fast_as_we_use_them_keep_the_first_threads() -> None:
    # 1 ms of CPU, 1.5 ms of wall: what waiting for the GIL behind one other thread explains
    out, seen = _run(200, 0.0015, 0.001, start=2, most=8)
    assert out == [x * 10 for x in range(200)]
    assert len(set(seen)) <= 2


def test_answers_that_wait_on_the_server_add_threads_up_to_most() -> None:
    _out, seen = _run(200, 0.030, 0.001, start=2, most=8)  # 29 ms spent waiting each
    assert len(set(seen)) == 8
    _out, seen = _run(200, 0.030, 0.001, start=2, most=3)
    assert len(set(seen)) == 3


def test_never_more_threads_than_items_or_most() -> None:
    _out, seen = _run(3, 0.5, 0.001, start=2, most=8)
    assert len(set(seen)) <= 3
    _out, seen = _run(50, 0.5, 0.001, start=4, most=1)
    assert len(set(seen)) == 1


def test_one_slow_answer_does_not_add_a_thread() -> None:
    clocks = _Clocks()
    seen: list[str] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            seen.append(threading.current_thread().name)
        clocks.spend(0.050 if x == 10 else 0.0012, 0.001)  # one hiccup among fast answers
        return x

    FO.fan_out(fn, list(range(12)), start=1, most=8, clocks=(clocks.wall, clocks.cpu))
    assert len(set(seen)) == 1
    FO.WINDOW  # noqa: B018 - (the window that averages it away)


def test_the_first_error_is_raised_after_the_threads_end() -> None:
    def fn(x: int) -> int:
        if x == 5:
            raise ValueError("boom")
        return x

    with pytest.raises(ValueError, match="boom"):
        FO.fan_out(fn, list(range(50)), most=4)
    assert not [t for t in threading.enumerate() if t.name.startswith("cfx-fanout")]


class _LogAPI:
    """Just enough of a ClusterAPI for build_snapshot's log phase: 12 flannel pods."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.calls = 0
        self.lock = threading.Lock()

    def describe(self):
        return {}

    def version(self):
        return {}

    def list_nodes(self):
        return [{"metadata": {"name": f"n{i}"}} for i in range(12)]

    def list_pods(self, ns, selector):
        if selector and "flannel" not in selector:
            return []
        return [{"metadata": {"namespace": "kube-flannel", "name": f"kube-flannel-ds-{i}",
                              "labels": {"app": "flannel"}},
                 "spec": {"nodeName": f"n{i}", "containers": [
                     {"name": "kube-flannel", "image": "flannel/flannel:v0.25"}]},
                 "status": {"podIP": f"10.0.0.{i}"}} for i in range(12)]

    def list_daemonsets(self, ns):
        return None

    def get_configmap(self, ns, name):
        return None

    def list_services(self, ns):
        return []

    def list_endpoints(self, ns):
        return []

    def list_events(self, ns):
        return []

    def pod_log(self, ns, name, container, tail_lines=None, previous=False):
        with self.lock:
            self.threads.add(threading.current_thread().name)
            self.calls += 1
        return f"log of {name}\n"


def test_build_snapshot_reads_every_log_through_the_fan_out() -> None:
    api = _LogAPI()
    snap = build_snapshot(api)
    pods = [p for ps in snap.flannel_pods.values() for p in ps]
    assert len(pods) == 12 and api.calls >= 12
    assert all(p.log_tail == (f"log of {p.name}",) for p in pods)
    assert api.threads and all(t.startswith("cfx-logs_") for t in api.threads)
    assert len(api.threads) <= 8
