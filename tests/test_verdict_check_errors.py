"""A session whose last diagnosis had a check that failed never ends "healthy" or "fixed": its
verdict is "incomplete" (headless fix exits 3), and the journal, the report and the summary say
which checks failed (the check error names the node whose facts the check could not read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fix_helpers import FakeDiagnosis, snapshot
from test_session import API, Shells, _ExitRunner

from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.record import replay, verdict_of
from clusterfix_tui.core.report import build_report
from clusterfix_tui.core.session import RepairSession

ERR = "iptables: NftRulesUnreadable: table ip filter: rule item unreadable (node 'node-2')"


def _events(before_errors: list[str] | None, after_errors: list[str] | None = None,
            after: bool = False) -> list[dict[str, Any]]:
    evs: list[dict[str, Any]] = [
        {"seq": 1, "type": "session_start", "session_id": "s", "mode": "headless",
         "cluster": {"context": "c", "server": "https://x", "version": "v", "node_count": 2}},
        {"seq": 2, "type": "diagnosis", "phase": "before", "findings": [], "nodes": {},
         **({"check_errors": before_errors} if before_errors is not None else {})}]
    if after:
        evs.append({"seq": 5, "type": "diagnosis", "phase": "after", "findings": [], "nodes": {},
                    **({"check_errors": after_errors} if after_errors is not None else {})})
    evs.append({"seq": 6, "type": "validation", "phase": "after", "results": [
        {"name": "node-ready", "target": "node-1", "passed": True, "detail": "Ready",
         "fix_step": None}]})
    return evs


def test_a_failed_check_in_the_only_diagnosis_is_incomplete() -> None:
    assert verdict_of(replay(_events(None))) == "healthy"
    assert verdict_of(replay(_events([]))) == "healthy"
    rec = replay(_events([ERR]))
    assert verdict_of(rec) == "incomplete"
    assert rec.summary()["checks_failed_in_diagnosis"] == [ERR]
    assert verdict_of(rec, aborted=True) == "aborted"


def test_the_diagnosis_after_repair_is_the_one_the_verdict_rests_on() -> None:
    # failed before, whole after: the cluster was seen whole at the end
    assert verdict_of(replay(_events([ERR], [], after=True))) == "healthy"
    # whole before, a check failed after: not known to be healthy at the end
    rec = replay(_events([], [ERR], after=True))
    assert verdict_of(rec) == "incomplete"
    assert rec.checks_not_run() == [ERR]


def test_a_diagnosis_error_counts_as_not_seen_whole() -> None:
    evs = _events(None)
    evs[1]["error"] = "API unreachable"
    rec = replay(evs)
    assert verdict_of(rec) == "incomplete"
    assert rec.checks_not_run() == ["the diagnosis failed: API unreachable"]


def test_odd_check_errors_in_a_journal_are_tolerated() -> None:
    evs = _events(None)
    evs[1]["check_errors"] = "not a list"
    assert verdict_of(replay(evs)) == "healthy"
    evs[1]["check_errors"] = [None, "", 7]
    assert replay(evs).checks_not_run() == ["7"]


class _Facts:
    def summary(self) -> dict[str, Any]:
        return {}


@dataclass
class _DiagWithErrors(FakeDiagnosis):
    check_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.facts = {"node-1": _Facts(), "node-2": _Facts()}  # the nodes the journal names


def test_session_journals_check_errors_and_ends_incomplete(tmp_path, monkeypatch) -> None:
    from clusterfix_tui.core import validate as V
    from clusterfix_tui.core.model import CheckResult

    path = tmp_path / "j.jsonl"
    s = RepairSession(API(), Shells(), _ExitRunner(), Journal(path))
    monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                        lambda *a, **k: _DiagWithErrors([], snapshot=snapshot(),
                                                        check_errors=[ERR]))
    s.diagnose("before")
    monkeypatch.setattr(V, "validate", lambda *a, **k: [CheckResult("node-ready", "node-1", True)])
    s.validate("after")
    assert s.finish() == "incomplete"
    evs = Journal.read(path)
    diag = [e for e in evs if e["type"] == "diagnosis"][0]
    assert diag["check_errors"] == [ERR]
    errors = [e for e in evs if e["type"] == "error" and e.get("where") == "diagnose"]
    assert len(errors) == 1 and ERR in errors[0]["message"]
    end = [e for e in evs if e["type"] == "session_end"][-1]
    assert end["summary"]["checks_failed_in_diagnosis"] == [ERR]

    report = build_report(evs)
    assert report["verdict"]["value"] == "incomplete"
    assert report["verdict"]["headline"].startswith("INCOMPLETE")
    assert any(ERR in e["message"] for e in report["errors"])
    anon = build_report(evs, anonymize=True)
    assert "node-2" not in str(anon["errors"]) and "node-2" not in str(anon["verdict"])


def test_session_without_check_errors_writes_no_field(tmp_path, monkeypatch) -> None:
    path = tmp_path / "j.jsonl"
    s = RepairSession(API(), Shells(), _ExitRunner(), Journal(path))
    monkeypatch.setattr("clusterfix_tui.core.diagnose.diagnose",
                        lambda *a, **k: _DiagWithErrors([], snapshot=snapshot()))
    s.diagnose("before")
    diag = [e for e in Journal.read(path) if e["type"] == "diagnosis"][0]
    assert "check_errors" not in diag
    assert not [e for e in Journal.read(path) if e["type"] == "error"]
