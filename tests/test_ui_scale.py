"""The wizard at scale (#17 items 5 and 6): grouped findings (one cause, one line) in the findings
panel, the plan screen and the report; paged tables and the filter on a 200-node diagnosis.

The diagnoses are the recorded lab scenarios replicated and renamed, read by the real parsers and
checks (tests/scale_fakes.py). No timing here: bench/bench_ui_scale.py measures the keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scale_fakes import big_diagnosis, show_diagnosis, vtep_diagnosis
from textual.widgets import Static
from ui_fakes import make_app, settle

from clusterfix_tui.core import report
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.group import group_findings
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.plan import PlanScreen
from clusterfix_tui.ui.widgets.detail_pane import DetailPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable


@pytest.fixture(scope="module")
def vtep30():
    return vtep_diagnosis(30, stale=2)


@pytest.fixture(scope="module")
def big200():
    return big_diagnosis(200)


def _cells(table: PagedTable, row: int) -> list[str]:
    return [str(c) for c in table.get_row_at(row)]


# -- pure: rows, filter, pages ------------------------------------------------------------------


def test_one_stale_vtep_on_29_peers_is_one_row(vtep30) -> None:
    findings = v.findings_of(vtep30)
    assert len(findings) == 29
    rows = v.finding_rows(v.finding_groups(findings))
    assert len(rows) == 1
    sev, node, step, title = v.finding_cells(rows[0])
    assert (sev, node, step) == ("error", "▸ 29 nodes", "cni_bridge")
    assert title.startswith("stale VTEP MAC for node-2 on 29 nodes")
    opened = v.finding_rows(v.finding_groups(findings), [rows[0].group.key])
    assert len(opened) == 30 and all(r.member for r in opened[1:])
    assert sorted(r.finding.node for r in opened[1:]) == sorted(f"node-{i}" for i in range(1, 31)
                                                                if i != 2)
    assert v.finding_cells(opened[0], [rows[0].group.key])[1] == "▾ 29 nodes"


def test_filter_words_and_kinds() -> None:
    flt = v.parse_filter("node:node-1* sev:error,critical step:iptables drop")
    assert flt.nodes == ("node-1*",) and flt.severities == ("error", "critical")
    assert flt.steps == ("iptables",) and flt.words == ("drop",)
    assert flt.node_ok("node-17") and not flt.node_ok("node-2")
    exact = v.parse_filter("node:node-1")
    assert exact.node_ok("node-1") and not exact.node_ok("node-10")
    assert v.parse_filter("step:none").finding_ok(
        type("F", (), {"severity": "info", "step": None, "node": "n", "code": "C", "title": "t"}))
    assert v.parse_filter("").empty
    assert v.page_bounds(250, 0, 100) == (0, 3, 0, 100)
    assert v.page_bounds(250, 7, 100) == (2, 3, 200, 250)
    assert v.page_bounds(0, 0, 100) == (0, 1, 0, 0)
    assert v.compact_nodes(["a", "b", "c"]) == "a, b, c"
    assert v.compact_nodes([f"n{i}" for i in range(10)]) == "10 nodes: n0, n1, n2, +7"


# -- the wizard ---------------------------------------------------------------------------------


async def test_a_grouped_finding_opens_and_closes(tmp_path: Path, vtep30) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, vtep30)
        t = screen.query_one("#findings-table", PagedTable)
        assert t.row_count == 1
        assert _cells(t, 0)[1] == "▸ 29 nodes"
        detail = str(screen.query_one("#finding-text", DetailPane).render())
        assert "on 29 nodes" in detail and "node-2's VTEP MAC is stale" in detail
        t.focus()
        await pilot.press("space")
        await pilot.pause()
        assert t.row_count == 30
        assert _cells(t, 0)[1] == "▾ 29 nodes"
        assert [_cells(t, i)[1] for i in range(1, 30)] == \
            [f"└ {f.node}" for f in vtep30.findings]
        await pilot.press("down", "down")
        await pilot.pause()
        detail = str(screen.query_one("#finding-text", DetailPane).render())
        node = vtep30.findings[1].node
        assert f"on {node}" in detail and "stale VTEP MAC for node-2" in detail
        await pilot.press("up", "up", "space")
        await pilot.pause()
        assert t.row_count == 1


async def test_200_nodes_page_and_filter(tmp_path: Path, big200) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 34)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, big200)
        await pilot.press("2")
        await pilot.pause()
        nodes = screen.query_one("#nodes-table", PagedTable)
        p = v.PAGE_SIZE
        pages = -(-200 // p)
        assert len(nodes.items) == 200 and nodes.row_count == p and nodes.pages == pages > 1
        info = str(screen.query_one("#table-info", Static).render())
        assert f"nodes 1-{p} of 200" in info and f"page 1/{pages}" in info
        assert _cells(nodes, 0)[0] == "node-1"
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert nodes.page == 1 and _cells(nodes, 0)[0] == f"node-{p + 1}"
        assert f"nodes {p + 1}-{min(200, 2 * p)} of 200" in \
            str(screen.query_one("#table-info", Static).render())
        nodes.focus()
        await pilot.press("up")  # past the page's first row: the page before, on its last row
        await pilot.pause()
        assert nodes.page == 0 and nodes.item_at_cursor()[0] == f"node-{p}"
        await pilot.press("down")
        await pilot.pause()
        assert nodes.page == 1 and nodes.item_at_cursor()[0] == f"node-{p + 1}"

        # the routes panel's node list holds a page too, and turns it
        await pilot.press("4")
        await pilot.pause()
        ol = screen.query_one("#routes-nodes", PagedTable)
        assert ol.row_count == p and ol.pages == pages
        assert f"nodes 1-{p} of 200" in str(screen.query_one("#table-info", Static).render())
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert ol.page == 1 and _cells(ol, 0)[0] in {n for n in big200.facts}
        assert f"nodes {p + 1}-" in str(screen.query_one("#table-info", Static).render())
        text = str(screen.query_one("#routes-text", DetailPane).render())
        assert text.startswith(_cells(ol, 0)[0])  # the page's first node's routes
        await pilot.press("2")
        await pilot.pause()

        # filter by node (a glob): the nodes, pods and route lists follow
        await pilot.press("slash", *"node:node-17*", "enter")
        await pilot.pause()
        names = [r[0] for r in nodes.items]
        assert names == ["node-17"] + [f"node-17{i}" for i in range(10)]
        assert nodes.pages == 1
        pods = screen.query_one("#pods-table", PagedTable)
        assert pods.items and {v.pod_row(p)[1] for p in pods.items} <= set(names)
        # the hidden panels are refilled when they show, not on the key that applied the filter
        assert pods.pending is not None
        assert ol.pending is not None  # the routes list too: refilled when it shows
        await pilot.press("3")
        await pilot.pause()
        assert pods.pending is None and pods.row_count == min(len(pods.items), p)
        assert {str(pods.get_row_at(i)[1]) for i in range(pods.row_count)} <= set(names)
        await pilot.press("4")
        await pilot.pause()
        assert [_cells(ol, i)[0] for i in range(ol.row_count)] == names
        await pilot.press("2")
        await pilot.pause()

        # findings: by severity and by step, grouped among what is kept
        await pilot.press("escape", "1")
        await pilot.pause()
        findings = screen.query_one("#findings-table", PagedTable)
        everything = len(findings.items)
        assert everything == len(group_findings(v.findings_of(big200)))
        assert any(r.group.count > 3 for r in findings.items)  # one fault on many nodes
        step = next(f.step for f in big200.findings if f.step)
        await pilot.press("slash", *f"step:{step} sev:error,critical", "enter")
        await pilot.pause()
        kept = [f for r in findings.items for f in r.group.findings]
        want = [f for f in big200.findings if f.step == step
                and f.severity in ("error", "critical")]
        assert sorted(map(id, kept)) == sorted(map(id, want)) and 0 < len(findings.items)
        assert len(findings.items) < everything
        info = str(screen.query_one("#table-info", Static).render())
        assert f"filter: step:{step} sev:error,critical" in info
        await pilot.press("escape")
        await pilot.pause()
        assert len(findings.items) == everything
        # the nodes and pods have pages: the line stays, naming the findings panel's rows (it is
        # the same for every panel, so that switching panels never shows or hides it)
        info = screen.query_one("#table-info", Static)
        assert info.display
        assert str(info.render()).strip() == f"{everything:,} rows"


async def test_plan_screen_plans_a_group_as_one_entry(tmp_path: Path, vtep30) -> None:
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await show_diagnosis(pilot, vtep30)
        await pilot.press("p")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, PlanScreen)
        plan = get_step("cni_bridge").plan(vtep30)
        assert len({a.target for a in plan.actions}) == 29
        app.state.plans["cni_bridge"] = plan
        screen.refresh_steps()
        screen._summarise("cni_bridge")
        await pilot.pause()
        text = str(screen.query_one("#step-summary-text", Static).render())
        assert text.count("stale VTEP MAC for node-2 on 29 nodes") == 2  # the finding, the entry
        assert "planned as 1 entry for" in text
        cells = [str(c) for c in screen.query_one("#steps").get_row_at(1)]
        assert cells[1] == "cni_bridge" and cells[5].startswith("29 nodes: ")


def test_report_keeps_every_finding_inside_its_group(tmp_path: Path, vtep30) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.write("session_start", session_id="s", tool_version="0", user="u", host="h",
                mode="headless", dry_run=False, cluster={"context": "c"})
        j.write("diagnosis", phase="before", findings=[f.to_dict() for f in vtep30.findings])
        j.write("session_end", verdict="still-broken")
    events, _ = report.load_journal(path)
    model = report.build_report(events)
    groups = model["finding_groups"]["before"]
    assert len(groups) == 1 and groups[0]["count"] == 29 and groups[0]["grouped"]
    assert groups[0]["findings"] == model["findings"]["before"]
    assert json.loads(report.render_json(model))["finding_groups"]["after"] == []
    md = report.render(events, "md")
    assert md.count("stale VTEP MAC for node-2 on 29 nodes") == 1
    assert md.count("`FLANNEL_STALE_VTEP` on `node-") == 29  # every node's finding, under it
    html = report.render(events, "html")
    assert html.count("<details>") == 1 and html.count("FLANNEL_STALE_VTEP</code> on <code>") == 29
