"""Many small requests to one server, in as few parallel connections as keep it busy.

Each thread of a request pool holds its own connection to the API server (HTTP/1.1: one request
at a time per connection), and each new connection costs a TLS handshake: ~3-4 ms of our CPU,
more than the request it carries (~0.5-1 ms). A fixed pool of 8 opened 8 connections on every
diagnosis, even against an API server that answers within a millisecond, where two keep our
process busy (the work is GIL-bound). Against a distant server (tens of milliseconds per answer)
parallel requests are what hides the latency.

So `fan_out` starts with `start` threads and adds one (up to `most`) whenever the requests
answered last (a thread's first answer, which may carry the set-up of its connection, left out)
waited, each of WINDOW answers in a row since the last change, longer than MIN_WAIT and longer
than its own CPU time times the threads running: more than waiting for
the GIL behind the others could explain, so the time went to the network or the server, and
another connection in flight shortens the whole. One slow answer (a scheduling hiccup) does not
add a thread; a near server keeps `start` connections, a distant one reaches `most` within the
first answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_WAIT = 0.002  # seconds a request must wait (beyond its CPU) before another thread is added
WINDOW = 2  # slow answers in a row before a thread is added


def fan_out(fn: Callable[[T], R], items: Sequence[T], *, start: int = 2, most: int = 8,
            name: str = "cfx-fanout",
            clocks: tuple[Callable[[], float], Callable[[], float]] = (time.monotonic,
                                                                      time.thread_time),
            ) -> list[R]:
    """[fn(item) for item in items], computed by 1..`most` threads (see the module). The first
    exception fn raised is raised here once every thread has ended. `clocks`: (wall, this
    thread's CPU), for tests."""
    n = len(items)
    if n == 0:
        return []
    most = max(1, min(most, n))
    wall, cpu = clocks
    results: list[R | None] = [None] * n
    errors: list[BaseException] = []
    lock = threading.Lock()
    threads: list[threading.Thread] = []
    row = [0]  # slow answers in a row since the last thread was added
    nxt = 0

    def spawn() -> None:  # with `lock` held
        t = threading.Thread(target=work, name=f"{name}_{len(threads)}", daemon=True)
        threads.append(t)
        t.start()

    def work() -> None:
        nonlocal nxt
        first = True  # a thread's first answer may carry its connection's set-up: not counted
        while True:
            with lock:
                if nxt >= n or errors:
                    return
                i = nxt
                nxt += 1
            w0, c0 = wall(), cpu()
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                with lock:
                    errors.append(exc)
                return
            spent = cpu() - c0
            waited = (wall() - w0) - spent
            if first:
                first = False
                continue
            with lock:
                # answers in a row that waited longer than the GIL explains (one fast answer
                # starts the count again: a single slow answer, a scheduling hiccup, never adds
                # a thread, whatever the answers before it)
                slow = waited > MIN_WAIT and waited > spent * len(threads)
                row[0] = row[0] + 1 if slow else 0
                if row[0] >= WINDOW and len(threads) < most and nxt < n:
                    spawn()
                    row[0] = 0  # judge the new number of threads afresh

    with lock:
        for _ in range(max(1, min(start, most))):
            spawn()
    i = 0
    while True:
        with lock:
            if i >= len(threads):
                break
            t = threads[i]
        t.join()  # a thread adds others only while it runs: all are listed once it ended
        i += 1
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
