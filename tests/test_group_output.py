"""One cause, one line in the plain-text CLI output: `diagnose` (text), `fix`'s findings before
repair and its printed plans. With fakes only (the 30-node mesh of tests/test_group.py)."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

from test_group import _mesh

from clusterfix_tui.commands import fix as fix_cmd
from clusterfix_tui.commands._common import print_plan
from clusterfix_tui.commands.diagnose import render_text
from clusterfix_tui.core.checks.flannel import check as flannel_check
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.group import fold_actions, nodes_text
from clusterfix_tui.core.model import Action, Precondition


def _diag(n: int = 30, stale: int = 2) -> Diagnosis:
    snap, facts = _mesh(n, stale=stale)
    return Diagnosis(snapshot=snap, facts=facts, findings=flannel_check(snap, facts))


def _finding_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "FLANNEL_STALE_VTEP" in ln]


def test_diagnose_text_of_a_30_node_stale_vtep_is_one_line():
    d = _diag()
    assert len(d.findings) == 29
    text = render_text(d)
    (line,) = _finding_lines(text)
    assert line.startswith("[ERROR] FLANNEL_STALE_VTEP: stale VTEP MAC for node-2 on 29 nodes")
    assert "29 finding(s) from 1 cause(s)" in text
    assert "nodes: node-1, node-3, node-4, node-5, node-6, ... (29)" in text
    # the evidence of one node is shown, said whose
    assert "evidence on node-1:" in text and "| bridge fdb show dev flannel.1:" in text


def test_diagnose_verbose_lists_every_nodes_finding_under_its_group():
    d = _diag()
    text = render_text(d, verbose=True)
    lines = _finding_lines(text)
    assert len(lines) == 1 + 29
    assert {re.search(r" on (node-\d+):", ln).group(1) for ln in lines[1:]} == \
        {f.node for f in d.findings}
    assert "nodes: " + ", ".join(f"node-{i}" for i in range(1, 31) if i != 2) in text


def test_diagnose_text_of_findings_without_a_shared_cause_is_unchanged():
    d = _diag(n=2, stale=2)  # one finding: no group, the line as before
    (f,) = d.findings
    text = render_text(d)
    assert f"[ERROR] FLANNEL_STALE_VTEP on {f.node}: {f.title}" in text
    assert "cause(s)" not in text and "--verbose" not in text


def test_fix_prints_the_findings_before_repair_one_line_per_cause(capsys):
    d = _diag()
    fix_cmd._print_findings(d.findings, verbose=False)
    out = capsys.readouterr().out
    assert len(_finding_lines(out)) == 1 and "29 finding(s) from 1 cause(s) before repair" in out
    fix_cmd._print_findings(d.findings, verbose=True)
    assert len(_finding_lines(capsys.readouterr().out)) == 30


def _blocks(text: str) -> list[tuple[list[str], str, str]]:
    """(nodes, command, block text) of every action block print_plan printed."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"  \[([^\]]+)\] on (each of (\d+) nodes|(\S+)) ", lines[i])
        if not m:
            i += 1
            continue
        block = [lines[i]]
        i += 1
        nodes_txt = ""
        while i < len(lines) and lines[i].startswith("      ") and not lines[i].startswith(
                "      $ "):
            nodes_txt += " " + lines[i].strip().removeprefix("on:")
            block.append(lines[i])
            i += 1
        cmd = lines[i].removeprefix("      $ ")
        block.append(lines[i])
        i += 1
        while i < len(lines) and lines[i].startswith("      "):
            block.append(lines[i])
            i += 1
        if m.group(3):
            nodes = [n.strip() for n in nodes_txt.split(",")]
            assert len(nodes) == int(m.group(3))
        else:
            nodes = [m.group(4)]
        out.append((nodes, cmd, "\n".join(block)))
    return out


def test_the_printed_plan_groups_the_cause_and_shows_every_command_where_it_runs():
    d = _diag()
    plan = get_step("cni_bridge").plan(d)
    assert len(plan.actions) >= 3 * 29
    buf = io.StringIO()
    print_plan(plan, buf)
    text = buf.getvalue()
    assert len(_finding_lines(text)) == 1
    # one entry for the one cause, naming it and counting the nodes
    (entry,) = [ln for ln in text.splitlines() if ln.startswith("  -- ")]
    assert "stale VTEP MAC for node-2 on 29 nodes" in entry
    assert f"{len(plan.actions)} action(s) on 29 node(s)" in entry
    blocks = _blocks(text)
    shown = Counter((n, cmd) for nodes, cmd, _ in blocks for n in nodes)
    # every action that will run is shown with its exact command on its node, once
    assert shown == Counter((a.target, a.command) for a in plan.actions)
    assert len(blocks) < len(plan.actions)  # identical commands printed once
    for a in plan.actions:
        (block,) = [b for nodes, cmd, b in blocks if a.target in nodes and cmd == a.command]
        if a.rollback is not None:
            assert f"rollback: $ {a.rollback.command}" in block
        if a.precondition is not None:
            assert f"$ {a.precondition.command}" in block
        if a.why:
            assert f"why: {a.why}" in block


def test_the_verbose_plan_prints_each_action_on_its_own():
    d = _diag(n=6)
    plan = get_step("cni_bridge").plan(d)
    buf = io.StringIO()
    print_plan(plan, buf, verbose=True)
    blocks = _blocks(buf.getvalue())
    assert sorted((nodes[0], cmd) for nodes, cmd, _ in blocks) == \
        sorted((a.target, a.command) for a in plan.actions)
    assert all(len(nodes) == 1 for nodes, _, _ in blocks)
    assert sum(1 for ln in buf.getvalue().splitlines() if ln.startswith("      - finding ")) == 5


def _a(id_, target, command, why="w", rollback=None, pre=None):
    return Action(id=id_, target=target, kind="shell", command=command, why=why,
                  rollback=rollback, precondition=pre)


def test_fold_only_what_is_identical_but_for_the_node():
    rb = _a("s:x:r", "x", "undo")
    acts = [_a("s:n1:1", "n1", "c"), _a("s:n2:1", "n2", "c"), _a("s:n1:2", "n1", "c"),
            _a("s:n3:1", "n3", "c", why="other"), _a("s:n4:1", "n4", "c", rollback=rb),
            _a("s:n5:1", "n5", "c", pre=Precondition(kind="shell", command="check")),
            _a("s:n6:4", "n6", "c")]
    folds = fold_actions(acts)
    # same command twice on n1 runs twice: shown twice; a different why, rollback or check
    # is shown on its own
    assert [f.ids for f in folds] == [["s:n1:1", "s:n2:1", "s:n6:4"], ["s:n1:2"], ["s:n3:1"],
                                      ["s:n4:1"], ["s:n5:1"]]
    assert sorted(a.id for f in folds for a in f.actions) == sorted(a.id for a in acts)
    assert folds[0].ids_text() == "s:n1:1, s:n2:1, s:n6:4"
    assert fold_actions(acts[:2])[0].ids_text() == "s:NODE:1"
    assert nodes_text([f"node-{i}" for i in (10, 2, 1, 3, 4, 5, 6)]) == \
        "node-1, node-2, node-3, node-4, node-5, ... (7)"


def _planned_journal(tmp_path: Path):
    """The cni_bridge plan of the 30-node mesh, journaled by a dry run: (plan, journal events)."""
    from clusterfix_tui.core import report
    from clusterfix_tui.core.journal import Journal

    d = _diag()
    plan = get_step("cni_bridge").plan(d)
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.write("session_start", session_id="s", tool_version="0", user="u", host="h",
                mode="headless", dry_run=True, cluster={"context": "c"})
        j.write("diagnosis", phase="before", findings=[f.to_dict() for f in d.findings])
        j.write("plan", step=plan.step, plan=plan.to_dict())
        j.write("session_end", verdict="dry-run")
    events, _ = report.load_journal(path)
    return plan, events


def test_the_report_shows_the_plan_as_entries_with_every_command_on_every_node(tmp_path):
    from clusterfix_tui.core import report

    plan, events = _planned_journal(tmp_path)
    md = report.render(events, "md")
    plan_md = md[md.index("Plan as shown:"):]
    assert plan_md.count("- **stale VTEP MAC for node-2 on 29 nodes") == 1
    # every action: its exact command on its node (a folded row names each node)
    runs: Counter = Counter()
    for ln in plan_md.splitlines():
        m = re.match(r"\s*- `[^`]+` on (each of \d+ nodes \((.*)\)|`([^`]+)`): `(.*)`$", ln)
        if m:
            nodes = re.findall(r"`([^`]+)`", m.group(2)) if m.group(2) else [m.group(3)]
            runs.update((n, m.group(4)) for n in nodes)
    assert runs == Counter((a.target, a.command) for a in plan.actions)
    assert sum(1 for ln in plan_md.splitlines() if re.match(r"\s*- `cni_bridge:", ln)) < \
        len(plan.actions)
    html = report.render(events, "html")
    assert html.count("stale VTEP MAC for node-2 on 29 nodes") == 2  # the finding, the entry
    for a in plan.actions:
        assert a.command.replace("&", "&amp;").replace("'", "&#x27;").replace(
            "<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") in html


def test_validation_prints_every_failure_and_folds_the_passes_of_one_kind():
    from clusterfix_tui.commands._common import print_checks
    from clusterfix_tui.core.model import CheckResult

    rs = [CheckResult("node-ready", f"node-{i}", True, "Ready") for i in range(1, 31)]
    rs += [CheckResult("nodeport", f"web@node-{i}", i != 2, "10.0.0.1:30080", "iptables")
           for i in range(1, 31)]
    buf = io.StringIO()
    print_checks(rs, buf)
    lines = buf.getvalue().splitlines()
    assert [ln for ln in lines if ln.startswith("FAIL")] == [
        "FAIL  nodeport        web@node-2                     10.0.0.1:30080  [fix: iptables]"]
    passes = [ln for ln in lines if ln.startswith("PASS")]
    assert len(passes) == 2 and "30 targets" in passes[0] and "29 targets" in passes[1]
    assert "node-1, node-2, node-3, node-4, node-5, ... (30)" in passes[0]
    assert lines[-1] == "59/60 checks passed"
    buf = io.StringIO()
    print_checks(rs, buf, verbose=True)
    assert len(buf.getvalue().splitlines()) == 61


def test_an_action_that_also_answers_a_finding_of_no_group_is_an_entry_of_its_own():
    from types import SimpleNamespace

    from clusterfix_tui.core.group import group_findings, plan_entries
    from clusterfix_tui.core.model import Finding

    def f(code, node, title):
        return Finding(code=code, severity="error", node=node, title=title, step="cni_bridge")

    findings = [f("X_OFF", f"n{i}", "x is off") for i in (1, 2, 3)]
    findings.append(f("SUBNET", "n1", "stale subnet"))
    acts = [_a("s:n1:1", "n1", "fix x"), _a("s:n2:1", "n2", "fix x"), _a("s:n3:1", "n3", "fix x"),
            _a("s:n1:2", "n1", "restart")]
    acts = [SimpleNamespace(**{**a.__dict__, "finding_codes": codes}) for a, codes in
            zip(acts, [("X_OFF",), ("X_OFF",), ("X_OFF",), ("X_OFF", "SUBNET")], strict=True)]
    entries = plan_entries(SimpleNamespace(actions=acts), group_findings(findings))
    assert [(e["group"] is not None, e["action_ids"]) for e in entries] == [
        (True, ["s:n1:1", "s:n2:1", "s:n3:1"]), (False, ["s:n1:2"])]


def test_identical_commands_with_ids_of_different_numbers_list_every_id():
    from clusterfix_tui.core.model import Plan

    plan = Plan("s", "t", actions=(_a("s:n1:1", "n1", "other"), _a("s:n1:2", "n1", "c"),
                                   _a("s:n2:1", "n2", "c")))
    buf = io.StringIO()
    print_plan(plan, buf)
    assert "  [s:n1:2, s:n2:1] on each of 2 nodes (shell)" in buf.getvalue()
    assert Counter((n, c) for nodes, c, _ in _blocks(buf.getvalue()) for n in nodes) == \
        Counter({("n1", "other"): 1, ("n1", "c"): 1, ("n2", "c"): 1})


def test_the_report_json_keeps_the_plan_entries_with_every_action_id_once(tmp_path):
    import json

    import jsonschema

    from clusterfix_tui.core import report

    plan, events = _planned_journal(tmp_path)
    model = json.loads(report.render(events, "json"))
    schema = json.loads((Path(report.__file__).with_name("report_schema.json")).read_text())
    jsonschema.validate(model, schema)
    (step,) = [s for s in model["steps"] if s["step"] == "cni_bridge"]
    entries = step["plan"]["entries"]
    assert [a["id"] for a in step["plan"]["actions"]] == [a.id for a in plan.actions]
    ids = [i for e in entries for r in e["rows"] for i in r["action_ids"]]
    assert Counter(ids) == Counter(a.id for a in plan.actions)  # every action once, none added
    (grouped,) = [e for e in entries if e["title"] and "stale VTEP MAC for node-2" in e["title"]]
    assert grouped["count"] == 29
    target = {a.id: a.target for a in plan.actions}
    command = {a.id: a.command for a in plan.actions}
    for e in entries:
        for r in e["rows"]:
            assert sorted(r["nodes"]) == sorted(target[i] for i in r["action_ids"])
            assert len({command[i] for i in r["action_ids"]}) == 1  # a row: one command
    assert len(ids) > sum(len(e["rows"]) for e in entries)  # identical commands are one row
