"""Hostile node and pod names on the REAL diagnostics screen (#17 item 5): Rich markup, a link,
control characters and a very long name are shown as the characters they are, never read as
markup or sent to the terminal as control codes, and nothing crashes.

The diagnosis is the recorded lab cluster (bench_core.synthetic_cluster) with its nodes and pods
renamed, read by the real code (build_snapshot, parse_facts, run_checks), shown by the real
wizard (the recorded fake session of tests/ui_fakes.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from diag_fakes import LAB_NONCE, ReplayAPI
from scale_fakes import show_diagnosis, synthetic_cluster
from textual.widgets import Static
from ui_fakes import make_app, settle

from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import build_snapshot
from clusterfix_tui.ui.widgets.detail_pane import DetailPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable

MARKUP = "[red]x[/]"
LINK = "[link=https://evil.example]click[/link]"
CONTROL = "evil\x1b[31mred\x07bell"
LONG = "n" + "o" * 298 + "de"
HOSTILE = {"node-1": MARKUP, "node-2": LINK, "node-3": CONTROL, "node-4": LONG}


@pytest.fixture(scope="module")
def hostile():
    rec, outputs = synthetic_cluster(4)
    text = json.dumps(rec)
    for old, new in HOSTILE.items():
        text = text.replace(json.dumps(old), json.dumps(new))
        # the pods' names end in the node's number: give them the hostile name too
        text = text.replace(f'-{old.split("-")[1]}"', "-" + json.dumps(new)[1:])
    rec = json.loads(text)
    facts_out = {HOSTILE[k]: v.replace(f"\n{k}\n", f"\n{HOSTILE[k]}\n", 1)
                 for k, v in outputs.items()}
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    facts = {node: parse_facts(node, out, LAB_NONCE) for node, out in facts_out.items()}
    snap = dataclasses.replace(snap, shape=detect_shape(snap, facts))
    findings, errors = run_checks(snap, facts)
    return Diagnosis(snapshot=snap, facts=facts, findings=findings, check_errors=list(errors),
                     shape=snap.shape)


def _table_text(table: PagedTable) -> str:
    return "\n".join("".join(seg.text for seg in table.render_line(y))
                     for y in range(table.size.height))


def _assert_clean(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, repr(text[:200])


async def test_hostile_names_are_shown_literally(tmp_path: Path, hostile) -> None:
    names = {n for n in hostile.facts}
    assert names == set(HOSTILE.values())  # the renaming reached the facts
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, hostile)
        await pilot.pause()
        seen = ""
        for key, table_id in (("2", "#nodes-table"), ("3", "#pods-table"),
                              ("4", "#routes-nodes"), ("5", "#nat-nodes"),
                              ("1", "#findings-table")):
            await pilot.press(key)
            await pilot.pause()
            table = screen.query_one(table_id, PagedTable)
            for _ in range(table.row_count):
                text = _table_text(table)
                _assert_clean(text)
                seen += text
                await pilot.press("down")
                await pilot.pause()
            for static in screen.query("Static, DetailPane"):  # the labels and detail panes
                shown = str(static.render())
                _assert_clean(shown)
                seen += shown
            svg = app.export_screenshot()
            _assert_clean(svg)
            assert "evil.example" not in svg or LINK in svg.replace("&#160;", " ")
        # shown as typed: the markup and the link as text, the control characters dropped
        assert MARKUP in seen and LINK in seen
        assert "evilredbell" in seen  # the tables drop the escape sequence with its ESC
        assert "noooo" in seen  # the long name, cut with an ellipsis in the tables
        nodes = screen.query_one("#nodes-table", PagedTable)
        # (the recorded fake session's own node-1..3 are listed too: its SSH connections)
        assert names <= {str(nodes.get_row_at(i)[0]) for i in range(nodes.row_count)}
        # the routes and NAT panes name the selected node literally
        await pilot.press("4")
        await pilot.pause()
        routes = screen.query_one("#routes-nodes", PagedTable)
        routes.focus()
        for _ in range(routes.row_count):
            node = routes.item_at_cursor()
            shown = str(screen.query_one("#routes-text", DetailPane).render())
            # the detail panes show a control character as U+FFFD (their styles stay put)
            assert shown.startswith(node.replace("\x1b", "\ufffd").replace("\x07", ""))
            await pilot.press("down")
            await pilot.pause()
        # a filter word with markup in it finds the name that has it, read as text
        await pilot.press("2", "slash", *"[link=", "enter")
        await pilot.pause()
        assert [str(nodes.get_row_at(i)[0]) for i in range(nodes.row_count)] == [LINK]
        info = str(screen.query_one("#table-info", Static).render())
        assert "[link=" in info
