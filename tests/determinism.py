"""Time in tests: a frozen plan stamp, and polls with a deadline instead of sleeps.

    with frozen_plan_stamp():                       # engine.plan_stamp() returns FROZEN_STAMP
        a, b = step.plan(d1), step.plan(d2)         # two plans, one backup path

    poll_until(lambda: not pid_alive(pid), 10, "the command to die")   # returns the truthy value
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

FROZEN_STAMP = "20260102T030405Z"
T = TypeVar("T")


@contextlib.contextmanager
def frozen_plan_stamp(stamp: str = FROZEN_STAMP) -> Iterator[str]:
    """Every step reads `engine.plan_stamp()` once per plan; inside this block it is `stamp`."""
    from clusterfix_tui.core.fixes import engine

    real = engine.plan_stamp
    engine.plan_stamp = lambda now=None: stamp  # type: ignore[assignment]
    try:
        yield stamp
    finally:
        engine.plan_stamp = real  # type: ignore[assignment]


def poll_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Call `check` until it returns something truthy (returned) or `timeout` seconds pass
    (AssertionError naming `what`). The deadline bounds a wait; it asserts nothing about speed."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {got!r})")
        time.sleep(every)
