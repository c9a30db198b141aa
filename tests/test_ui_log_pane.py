"""The live log's line buffer: batching, bounding, back-pressure (no UI needed)."""

from __future__ import annotations

import threading
import time

from clusterfix_tui.ui.widgets.log_pane import LineBuffer, clean


def test_one_signal_per_batch_and_bounded_batches() -> None:
    buf = LineBuffer(batch_limit=100, high_water=10**9)
    signals = sum(buf.feed("node-1", "stdout", f"line {i}") for i in range(10_000))
    assert signals == 1, "one StepLinesLogged per batch, not per line"
    lines, dropped = buf.drain()
    assert len(lines) == 100 and dropped == 9_900
    assert lines[-1] == ("node-1", "stdout", "line 9999"), "the newest lines are kept"
    assert buf.feed("node-2", "command", "$ true") is True, "a drain re-arms the signal"
    total, per_node, commands = buf.snapshot_counts()
    assert total == 10_001 and per_node == {"node-1": 10_000, "node-2": 1}
    assert commands == {"node-2": 1}


def test_backpressure_waits_for_a_drain_and_gives_up_on_a_gone_ui() -> None:
    buf = LineBuffer(high_water=10)
    for i in range(10):
        buf.feed("n", "stdout", str(i))
    threading.Timer(0.05, buf.drain).start()
    started = time.monotonic()
    buf.backpressure(timeout=5)
    assert time.monotonic() - started < 4, "released by the drain"
    for i in range(10):
        buf.feed("n", "stdout", str(i))
    buf.backpressure(timeout=0.05)  # nobody drains: waits once
    started = time.monotonic()
    for _ in range(100):
        buf.backpressure(timeout=0.05)
    assert time.monotonic() - started < 0.05, "no more waiting once the UI stopped draining"


def test_clean_strips_escape_sequences_and_control_characters() -> None:
    assert clean("\x1b[31mred\x1b[0m\tx\r\x07") == "red     x"
    assert clean("plain") == "plain"
