"""Issue 5's "done when", on a real lab with every fault: a headless session killed mid-step
(SIGKILL) and a second one run to the end both yield reports in every format that are complete,
valid, self-contained and free of the lab kubeconfig's secrets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from determinism import poll_until
from lab_helpers import Gate, running_lab

from clusterfix_tui.core import report
from clusterfix_tui.core.redact import redact

pytestmark = pytest.mark.lab

SCHEMA = json.loads(Path(report.__file__).with_name("report_schema.json").read_text())
CLI = [sys.executable, "-m", "clusterfix_tui"]


def _events(path: Path) -> list[dict[str, Any]]:
    return report.load_journal(path)[0]


def _secrets(lab_dir: Path) -> list[str]:
    kc = yaml.safe_load((lab_dir / "kubeconfig").read_text())
    out = []
    for u in kc.get("users") or ():
        for k, v in (u.get("user") or {}).items():
            if isinstance(v, str) and k in ("token", "client-key-data", "client-certificate-data",
                                            "password"):
                out.append(v)
    for c in kc.get("clusters") or ():
        ca = (c.get("cluster") or {}).get("certificate-authority-data")
        if ca:
            out.append(ca)
    assert out, "the lab kubeconfig has no credential to look for"
    return out


def _reports(journal: Path, out: Path, anonymize: bool = False) -> dict[str, str]:
    texts = {}
    for fmt in report.FORMATS:
        dest = out / f"{journal.stem}{'-anon' if anonymize else ''}.{fmt}"
        args = [*CLI, "report", "--journal", str(journal), "--format", fmt, "-o", str(dest)]
        r = subprocess.run(args + (["--anonymize"] if anonymize else []), capture_output=True,
                           text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert (dest.stat().st_mode & 0o777) == 0o600
        texts[fmt] = dest.read_text()
    return texts


def _check_formats(events: list[dict[str, Any]], texts: dict[str, str], secrets: list[str],
                   commands: bool = True) -> None:
    model = json.loads(texts["json"])
    jsonschema.validate(model, SCHEMA)
    json_cmds = [c["command"] for s in model["steps"] for c in s["commands"]]
    assert len(json_cmds) == sum(1 for e in events if e["type"] == "command_start")
    for ev in events:
        if commands and ev["type"] == "command_start":
            assert "$ " + redact(ev["command"]) in texts["md"], ev["command"]
            assert redact(ev["command"]) in json_cmds
    tags: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append(tag)
            for k, v in attrs:
                assert k not in ("src", "href") and "//" not in (v or "")

    P().feed(texts["html"])
    assert "script" not in tags and "link" not in tags and "img" not in tags
    ET.fromstring(texts["junit"])
    for fmt, text in texts.items():
        for secret in secrets:
            assert secret not in text, fmt
            assert secret[:16] not in text, fmt


def _last_event(journal: Path) -> dict[str, Any] | None:
    """The journal's last complete event, None before there is one."""
    if not journal.exists():
        return None
    lines = journal.read_bytes().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:  # a line being written
        return None


def test_lab_session_killed_then_completed_reports(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("report-lab")
    with running_lab(tmp_path_factory, nodes=3, faults="all") as lab:
        lab_dir = Path(lab.info["dir"])
        secrets = _secrets(lab_dir)

        # 1. a headless session, SIGKILLed while a command runs: every node's first repair
        # command is held at a gate (FIFO), so the kill always lands while one is running
        killed = work / "killed.jsonl"
        gates = [Gate(lab, n["name"], work, "/var/backups/clusterfix/") for n in lab.info["nodes"]]
        with contextlib.ExitStack() as stack:
            for g in gates:
                stack.enter_context(g)
            proc = subprocess.Popen([*CLI, "fix", "--lab-dir", str(lab_dir), "--yes",
                                     "--journal", str(killed), "--no-validate"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                held = poll_until(lambda: [g for g in gates if g.pids()] or proc.poll() is not None,
                                  300, "a repair command to reach a gate")
                assert proc.poll() is None, "the session ended before any repair command ran"
                assert held
                last = poll_until(lambda: _last_event(killed), 30, "the journal's command_start")
                assert last["type"] == "command_start", last
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        events = _events(killed)
        starts = {(e["step"], e["action_id"]) for e in events if e["type"] == "command_start"}
        ends = {(e["step"], e["action_id"]) for e in events if e["type"] == "command_end"}
        assert starts - ends, "no command was left running by the kill"
        texts = _reports(killed, work)
        _check_formats(events, texts, secrets)
        model = json.loads(texts["json"])
        assert model["verdict"]["value"] == "interrupted"
        assert any(s["interrupted"] for s in model["steps"])
        assert "INTERRUPTED" in texts["md"] and "INTERRUPTED" in texts["html"]
        suites = {s.get("name"): s for s in ET.fromstring(texts["junit"]).iter("testsuite")}
        assert suites["session"].get("failures") == "1"

        # 2. a second session, to the end, with validation
        done = work / "done.jsonl"
        r = subprocess.run([*CLI, "fix", "--lab-dir", str(lab_dir), "--yes", "--journal",
                            str(done), "--report", str(work / "from-fix.md")],
                           capture_output=True, text=True, timeout=600, check=False)
        events = _events(done)
        texts = _reports(done, work)
        _check_formats(events, texts, secrets)
        model = json.loads(texts["json"])
        assert model["session"]["complete"] and model["validation"]["after"] is not None
        assert model["verdict"]["from_journal"] in ("fixed", "healthy", "partially-fixed",
                                                    "still-broken"), r.stderr
        assert (work / "from-fix.md").read_text().startswith("# clusterfix-tui session report")

        # 3. anonymised: no node name, lab IP or context left
        anon = _reports(done, work, anonymize=True)
        _check_formats(events, anon, secrets, commands=False)  # anonymised commands differ
        ctx = yaml.safe_load((lab_dir / "kubeconfig").read_text())["current-context"]
        for text in anon.values():
            for node in lab.info["nodes"]:
                assert node["ip"] not in text
                assert not re.search(re_node(node["name"]), text), node["name"]
            assert ctx not in text


def re_node(name: str) -> str:
    return r"(?<![A-Za-z0-9])" + re.escape(name) + r"(?![A-Za-z0-9])"
