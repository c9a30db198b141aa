"""The live log's line buffer: batching, bounding, back-pressure (no UI needed)."""

from __future__ import annotations

import threading

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


def _in_thread(fn) -> threading.Event:
    """Run fn in a thread; the event is set once it returned."""
    done = threading.Event()

    def run() -> None:
        fn()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done


def test_backpressure_waits_for_a_drain_and_gives_up_on_a_gone_ui() -> None:
    # No clock: the waits below are 600 s, so returning at all within the generous 120 s bound
    # means the drain (or the stalled UI) released the producer, not the timeout.
    buf = LineBuffer(high_water=10)
    for i in range(10):
        buf.feed("n", "stdout", str(i))
    released = _in_thread(lambda: buf.backpressure(timeout=600))
    assert not released.wait(0.2), "ahead of the UI by high_water lines: the producer waits"
    buf.drain()
    assert released.wait(120), "released by the drain"
    for i in range(10):
        buf.feed("n", "stdout", str(i))
    buf.backpressure(timeout=0.05)  # nobody drains: waits once, then the UI counts as gone

    def hundred_more() -> None:
        for _ in range(100):
            buf.backpressure(timeout=600)

    assert _in_thread(hundred_more).wait(120), "no more waiting once the UI stopped draining"
    buf.drain()  # a drain re-arms the waiting
    for i in range(10):
        buf.feed("n", "stdout", str(i))
    released = _in_thread(lambda: buf.backpressure(timeout=600))
    assert not released.wait(0.2), "waits again once the UI drains again"
    buf.drain()
    assert released.wait(120)


def test_clean_strips_escape_sequences_and_control_characters() -> None:
    assert clean("\x1b[31mred\x1b[0m\tx\r\x07") == "red     x"
    assert clean("plain") == "plain"
