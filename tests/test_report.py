"""core/report.py and `clusterfix-tui report`: complete, honest, safe to share, well-formed."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from clusterfix_tui.core import report
from clusterfix_tui.core.redact import redact

sys.path.insert(0, os.path.dirname(__file__))
from report_fixtures import (
    CONTEXT,
    HOSTILE,
    IPS,
    NODES,
    SECRETS,
    dry_run_session,
    full_session,
    write_jsonl,
)

SCHEMA = json.loads(
    (Path(report.__file__).with_name("report_schema.json")).read_text(encoding="utf-8")
)
ALL_JOURNALS = {
    "killed": full_session(),
    "complete": full_session(kill_in=None),
    "dry-run": dry_run_session(),
}


def _commands(events: list[dict[str, Any]]) -> list[str]:
    return [e["command"] for e in events if e["type"] == "command_start"]


# ---------------------------------------------------------------------------------------------
# completeness


@pytest.mark.parametrize("name", list(ALL_JOURNALS))
def test_every_command_appears_in_markdown_and_json(name: str) -> None:
    events = ALL_JOURNALS[name]
    md = report.render(events, "md")
    model = json.loads(report.render(events, "json"))
    json_cmds = [c["command"] for s in model["steps"] for c in s["commands"]]
    assert json_cmds and len(json_cmds) == len(_commands(events))
    for cmd in _commands(events):
        shown = redact(cmd)
        assert "$ " + shown in md, cmd
        assert shown in json_cmds, cmd


def test_full_output_kept_in_json_folded_in_markdown() -> None:
    events = full_session()
    model = report.build_report(events)
    out = model["steps"][0]["commands"][0]["stdout"]
    assert "line 199 of the saved rules" in out and "line 100 of the saved rules" in out
    md = report.render(events, "md")
    assert "line 199 of the saved rules" in md  # the tail is shown
    assert "line 100 of the saved rules" not in md  # the middle is folded ...
    assert re.search(r"\[\.\.\. \d+ lines folded", md)  # ... and says so


def test_report_contents_cluster_mode_left_out_decisions() -> None:
    md = report.render(full_session(kill_in=None), "md")
    assert md.splitlines()[2].startswith("**Verdict: PARTIALLY FIXED")  # verdict at the top
    for needle in (CONTEXT, "https://10.213.5.1:6443", "v1.30.2", "4 node(s)", "headless",
                   "`node-3`: ssh: connection refused", "IPTABLES_BACKEND_CONFLICT",
                   "Decision: **approved**",
                   "Decision: **skipped**", "exit 1", "0.42s", "| nodeport | node-2 | FAIL | FAIL |",
                   "kubectl port-forward", "Changes:", "https://10.213.5.99:6443"):
        assert needle in md, needle
    dry = report.render(dry_run_session(), "md")
    assert "Decision: **dry-run**" in dry and "headless, dry-run" in dry and "[dry-run]" in dry
    model = report.build_report(dry_run_session())
    assert model["steps"][0]["commands"][0]["state"] == "dry-run"
    assert model["steps"][0]["status"] == "dry-run"
    assert model["stats"]["failed"] == 0 and model["stats"]["dry_run"] == 1


def test_validation_side_by_side_and_still_failing() -> None:
    model = report.build_report(full_session(kill_in=None))
    rows = {(r["name"], r["target"]): r for r in model["validation"]["comparison"]}
    assert rows[("nodeport", "node-2")]["before"] is False
    assert rows[("nodeport", "node-2")]["after"] is False
    assert rows[("worker-kubectl", HOSTILE)]["before"] is False
    assert rows[("worker-kubectl", HOSTILE)]["after"] is True
    failing = [(s["kind"], s["what"]) for s in model["still_failing"]]
    assert ("check", "nodeport") in failing
    assert ("check", "worker-kubectl") not in failing
    assert ("step", "iptables") in failing  # the partial step
    nodeport = next(s for s in model["still_failing"] if s["what"] == "nodeport")
    assert any("clusterfix-tui fix --step iptables" in a for a in nodeport["next_actions"])


def test_sigkill_interrupted_step_is_marked() -> None:
    model = report.build_report(full_session())
    assert model["verdict"]["value"] == "interrupted"
    pods = next(s for s in model["steps"] if s["step"] == "pods")
    assert pods["interrupted"] and pods["status"] == "interrupted"
    assert pods["commands"][0]["state"] == "interrupted"
    assert pods["commands"][0]["exit_code"] is None
    md = report.render(full_session(), "md")
    assert "### 3. pods: INTERRUPTED" in md and "**INTERRUPTED**" in md
    html_text = report.render(full_session(), "html")
    assert "INTERRUPTED" in html_text
    # the other steps keep their real outcome
    assert next(s for s in model["steps"] if s["step"] == "iptables")["status"] == "partial"
    assert next(s for s in model["steps"] if s["step"] == "cni_bridge")["status"] == "skipped"


def test_real_process_killed_mid_command_still_reports(tmp_path: Path) -> None:
    """The real Journal, a real SIGKILL between command_start and command_end."""
    journal = tmp_path / "session.jsonl"
    code = textwrap.dedent(
        f"""
        import os, signal
        from clusterfix_tui.core.journal import Journal
        j = Journal({str(journal)!r})
        j.write("session_start", session_id="k1", tool_version="0.1.0", user="root", host="h",
                mode="headless", dry_run=False,
                cluster={{"context": "lab", "server": "https://10.0.0.1:6443", "version": "v1.30",
                          "node_count": 2}})
        j.write("plan", step="iptables", plan={{"step": "iptables", "title": "t", "actions": []}})
        j.write("decision", step="iptables", decision="approved", action_ids=["iptables:node-2:1"],
                by="--yes")
        j.write("command_start", step="iptables", action_id="iptables:node-2:1", node="node-2",
                command="iptables-legacy -t nat -F KUBE-SERVICES", kind="shell", rollback=False)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    r = subprocess.run(
        [sys.executable, "-m", "clusterfix_tui", "report", "--journal", str(journal)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "INTERRUPTED" in r.stdout
    assert "$ iptables-legacy -t nat -F KUBE-SERVICES" in r.stdout


def test_report_from_the_engine_journal(tmp_path: Path) -> None:
    """Events exactly as core/fixes/engine.py and core/journal.py write them."""
    from clusterfix_tui.core.fixes.engine import apply_plan, rollback
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.model import Action, CommandResult, Plan

    class Runner:
        dry_run = False

        def run_action(self, action: Any, *, on_line: Any = None) -> CommandResult:
            if "fail" in action.command:
                return CommandResult(exit_code=3, stderr="boom", duration=0.1)
            return CommandResult(exit_code=0, stdout=f"ran {action.command}", duration=0.2)

    rb = Action(id="host_network:node-2:1:rb", target="node-2", kind="shell",
                command="sysctl -w net.ipv4.ip_forward=0")
    plan = Plan(step="host_network", title="Host networking", actions=(
        Action(id="host_network:node-2:1", target="node-2", kind="shell",
               command="sysctl -w net.ipv4.ip_forward=1", rollback=rb),
        Action(id="host_network:node-3:1", target="node-3", kind="shell",
               command="modprobe fail_module", rollback_note="modprobe -r by hand"),
    ))
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.write("session_start", session_id="e1", tool_version="0.1.0", user="u", host="h",
                mode="interactive", dry_run=False,
                cluster={"context": "c", "server": "s", "version": "v", "node_count": 3})
        j.write("plan", step=plan.step, plan=plan.to_dict())
        j.write("decision", step=plan.step, decision="approved",
                action_ids=[a.id for a in plan.actions], by="user")
        outcome = apply_plan(plan, [a.id for a in plan.actions], Runner(), j)
        rollback((plan, outcome), Runner(), j)
        j.write("session_end", verdict="still-broken", summary="")
    events = report.load_journal(path)[0]
    model = report.build_report(events)
    jsonschema.validate(model, SCHEMA)
    repair = [s for s in model["steps"] if s["kind"] == "repair"]
    rolled = [s for s in model["steps"] if s["kind"] == "rollback"]
    assert [c["state"] for c in repair[0]["commands"]] == ["ok", "failed"]
    assert repair[0]["status"] == "partial"
    assert repair[0]["rollback_status"] == "rolled back"
    assert rolled and rolled[0]["commands"][0]["command"] == "sysctl -w net.ipv4.ip_forward=0"
    assert rolled[0]["commands"][0]["rollback"] is True
    md = report.render(events, "md")
    for cmd in ("sysctl -w net.ipv4.ip_forward=1", "modprobe fail_module",
                "sysctl -w net.ipv4.ip_forward=0"):
        assert "$ " + cmd in md
    assert "Rolled back later: **rolled back**" in md


def test_session_wide_rollback_from_events_marks_each_step(tmp_path: Path) -> None:
    """`clusterfix-tui rollback --journal` undoes several steps at once (plan step "session")."""
    from clusterfix_tui.core.fixes.engine import apply_plan, rollback
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.model import Action, CommandResult, Plan

    class Runner:
        dry_run = False

        def run_action(self, action: Any, *, on_line: Any = None) -> CommandResult:
            return CommandResult(exit_code=0, duration=0.1)

    def plan(step: str, node: str) -> Plan:
        rb = Action(id=f"{step}:{node}:1:rollback", target=node, kind="shell",
                    command=f"undo-{step}")
        return Plan(step=step, title=step, actions=(
            Action(id=f"{step}:{node}:1", target=node, kind="shell", command=f"do-{step}",
                   rollback=rb),))

    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        for p in (plan("iptables", "node-1"), plan("host_network", "node-2")):
            j.write("plan", step=p.step, plan=p.to_dict())
            j.write("decision", step=p.step, decision="approved",
                    action_ids=[a.id for a in p.actions], by="--yes")
            apply_plan(p, [a.id for a in p.actions], Runner(), j)
        rollback(Journal.read(path), Runner(), j)
    model = report.build_report(report.load_journal(path)[0])
    jsonschema.validate(model, SCHEMA)
    by = {(s["step"], s["kind"]): s for s in model["steps"]}
    assert by[("iptables", "repair")]["rollback_status"] == "rolled back"
    assert by[("host_network", "repair")]["rollback_status"] == "rolled back"
    session = by[("session", "rollback")]
    assert [c["command"] for c in session["commands"]] == ["undo-host_network", "undo-iptables"]
    assert all(c["rollback"] and c["state"] == "ok" for c in session["commands"])


# ---------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("name", list(ALL_JOURNALS))
@pytest.mark.parametrize("anonymize", [False, True])
def test_json_validates_against_the_schema(name: str, anonymize: bool) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    model = json.loads(report.render(ALL_JOURNALS[name], "json", anonymize=anonymize))
    assert model["schema_version"] == report.SCHEMA_VERSION
    jsonschema.Draft202012Validator(SCHEMA).validate(model)


def test_empty_and_odd_journals_still_render() -> None:
    odd = [{"type": "command_end", "step": "pods", "action_id": "x", "node": "n", "exit_code": "?"},
           {"type": "mystery"}, {"type": "diagnosis", "findings": ["not a dict"]}]
    for events in ([], odd):
        for fmt in report.FORMATS:
            assert report.render(events, fmt)
        jsonschema.validate(report.build_report(events), SCHEMA)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table",
                "tr", "th", "td", "ul", "li", "code", "pre", "b", "i", "br", "div"}


@pytest.mark.parametrize("name", list(ALL_JOURNALS))
def test_html_is_self_contained_and_escaped(name: str) -> None:
    text = report.render(ALL_JOURNALS[name], "html")
    p = _Collect()
    p.feed(text)
    p.close()
    assert set(p.tags) <= ALLOWED_TAGS, set(p.tags) - ALLOWED_TAGS  # no script, img, link, iframe
    for attr, value in p.attrs:
        assert attr not in ("src", "href", "srcset", "action", "formaction", "background")
        assert not attr.startswith("on")
        assert "//" not in (value or "")
    assert "url(" not in p.style and "@import" not in p.style and "//" not in p.style
    assert not re.search(r"<[^>]+(?:src|href)\s*=", text, re.IGNORECASE)


def test_hostile_node_name_cannot_inject_markup() -> None:
    events = full_session()
    html_text = report.render(events, "html")
    assert "<script" not in html_text.lower()
    assert "&lt;script&gt;" in html_text  # it is shown, escaped
    md = report.render(events, "md")
    # outside code spans and fenced blocks no raw HTML is left for a renderer to interpret
    no_code = re.sub(r"(?s)(`{3,})console\n.*?\n\1|(`{3,})\n.*?\n\2", "", md)
    no_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", no_code)
    assert "\\<script\\>" in no_code  # shown, escaped
    assert re.search(r"(?<!\\)<", no_code) is None
    # a hostile newline never breaks a Markdown line
    assert "|\nnode" not in md


def test_control_characters_never_reach_the_terminal() -> None:
    events = full_session(kill_in=None)
    end = next(e for e in events if e["type"] == "command_end")
    end["stdout"] = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m ok"
    val = next(e for e in events if e["type"] == "validation")
    val["results"][1]["detail"] = "bad \x00\x1b[2J\x0c bytes"
    for fmt in ("md", "html", "junit"):
        out = report.render(events, fmt)
        assert "\x1b" not in out and "\x07" not in out and "\x00" not in out, fmt
    ET.fromstring(report.render(events, "junit"))  # XML 1.0 cannot carry them: still parses


def test_junit_counts_and_parses() -> None:
    root = ET.fromstring(report.render(full_session(kill_in=None), "junit"))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"validation-before", "validation-after", "session"}
    assert suites["validation-before"].get("tests") == "3"
    assert suites["validation-before"].get("failures") == "2"
    assert len(suites["validation-before"].findall("testcase/failure")) == 2
    assert suites["validation-after"].get("failures") == "1"
    assert suites["session"].get("failures") == "0"
    assert root.get("tests") == "7" and root.get("failures") == "3"
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert f"worker-kubectl [{HOSTILE}]" in names  # escaped by ElementTree, read back intact
    fail = suites["validation-after"].find("testcase/failure")
    assert fail is not None and "connection refused" in (fail.text or "")


def test_junit_marks_an_interrupted_session_as_failed() -> None:
    root = ET.fromstring(report.render(full_session(), "junit"))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert "validation-after" not in suites
    assert suites["session"].get("failures") == "1"


# ---------------------------------------------------------------------------------------------
# safety: redaction and anonymisation


@pytest.mark.parametrize("fmt", report.FORMATS)
@pytest.mark.parametrize("anonymize", [False, True])
def test_no_secret_in_any_format(fmt: str, anonymize: bool) -> None:
    for events in ALL_JOURNALS.values():
        out = report.render(events, fmt, anonymize=anonymize)
        for secret in SECRETS:
            assert secret not in out, (fmt, secret[:20])
            assert secret[:24] not in out
    assert "REDACTED" in report.render(full_session(), fmt)


@pytest.mark.parametrize("fmt", report.FORMATS)
def test_anonymize_removes_names_ips_and_cluster(fmt: str) -> None:
    out = report.render(full_session(kill_in=None), fmt, anonymize=True)
    unescaped = out.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    for name in NODES:
        assert not re.search(re.escape(name) + r"(?!\d)", out), name
    assert "evil" not in unescaped
    for ip in IPS + ("10.213.5.1", "10.213.5.99"):
        assert ip not in out, ip
    assert CONTEXT not in out and "admin-laptop" not in out
    assert re.search(r"node-[a-z]\b", out) and re.search(r"ip-\d+", out)


def test_anonymize_is_stable() -> None:
    a = report.build_report(full_session(kill_in=None), anonymize=True, generated_at="t")
    b = report.build_report(full_session(kill_in=None), anonymize=True, generated_at="t")
    assert a == b
    # the same node gets the same placeholder in every section
    left_out = a["nodes_left_out"][0]["node"]
    assert left_out.startswith("node-")
    iptables_node = a["steps"][0]["commands"][0]["node"]
    assert a["findings"]["before"][0]["node"] == iptables_node
    assert any(r["target"] == iptables_node for r in a["validation"]["comparison"])


# ---------------------------------------------------------------------------------------------
# the command


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", "report", *args],
                          capture_output=True, text=True)


def test_cli_writes_each_format_with_mode_0600(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    write_jsonl(journal, full_session(kill_in=None))
    for fmt, name in (("md", "r.md"), ("html", "r.html"), ("json", "r.json"), ("junit", "r.xml")):
        out = tmp_path / name
        out.write_text("old, world-readable")
        os.chmod(out, 0o644)
        r = _cli("--journal", str(journal), "--format", fmt, "-o", str(out), "--anonymize")
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert "node-1" not in out.read_text()
    r = _cli("--journal", str(journal), "-o", str(tmp_path / "by-ext.json"))
    assert r.returncode == 0 and json.loads((tmp_path / "by-ext.json").read_text())
    r = _cli("--journal", str(journal))
    assert r.returncode == 0 and r.stdout.startswith("# clusterfix-tui session report")


def test_cli_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    write_jsonl(journal, full_session(), torn='{"seq": 99, "type": "command_e')
    r = _cli("--journal", str(journal), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "incomplete" in r.stderr
    model = json.loads(r.stdout)
    assert any("incomplete" in p for p in model["journal_problems"])


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("", "empty"), ("\n\n", "empty"), ("this is not json\n{{{\n", "not a"),
     ('[1, 2]\n"x"\n', "not a")],
)
def test_cli_clear_errors(tmp_path: Path, content: str | None, message: str) -> None:
    journal = tmp_path / "j.jsonl"
    if content is not None:
        journal.write_text(content)
    r = _cli("--journal", str(journal))
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_default_report_name() -> None:
    import datetime as dt

    when = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.UTC)
    events = [{"type": "session_start", "cluster": {"context": "admin@prod/eu west"}}]
    assert report.default_report_name(events, when) == (
        "clusterfix-report-admin-prod-eu-west-20261126T100000Z.md")


def test_structured_summary_and_empty_after_diagnosis() -> None:
    events = full_session(kill_in=None)
    end = events[-1]
    end["summary"] = {"findings_before": 3, "steps": {"iptables": "partial"}, "checks_failed": []}
    events.insert(-1, dict(events[-2], seq=999, type="diagnosis", phase="after", findings=[]))
    model = report.build_report(events)
    jsonschema.validate(model, SCHEMA)
    assert model["verdict"]["summary"] == (
        "findings before: 3; steps: iptables=partial; checks failed: none")
    assert model["verdict"]["summary_data"]["findings_before"] == 3
    assert model["diagnosed_after"] is True
    # an empty second diagnosis is authoritative: no finding is still failing
    assert not [s for s in model["still_failing"] if s["kind"] == "finding"]
    assert "### Findings after repair (0)" in report.render(events, "md")
