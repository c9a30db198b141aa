"""`clusterfix-tui tui` as a whole (commands/tui.run, the README's headline command): the wizard
built the way the command builds it, on the replayed lab session (tests/ui_fakes.py), run headless.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from ui_fakes import FakeSession, settle

from clusterfix_tui.commands import tui
from clusterfix_tui.ui.app import ClusterfixApp
from clusterfix_tui.ui.screens.connect import ConnectScreen


def _args(journal: Path, *extra: str) -> argparse.Namespace:
    """The command's own flags, parsed as the CLI parses them."""
    parser = argparse.ArgumentParser()
    tui.configure(parser)
    return parser.parse_args(["--journal", str(journal), *extra])


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch):
    """tui.run() with the replayed lab session instead of the transports, and App.run() headless
    driven by `keys` (pressed once the first screen has settled)."""
    sessions: list[FakeSession] = []
    apps: list[ClusterfixApp] = []

    def fake_factory(args, lab_dir, journal_path, runtimes):
        def factory() -> FakeSession:
            session = FakeSession(journal_path, host_key_nodes=())
            sessions.append(session)
            return session

        return factory

    def drive(*keys: str):
        real_run = ClusterfixApp.run

        def run(self: ClusterfixApp, **kw: Any):
            apps.append(self)

            async def pilot(p) -> None:
                await settle(p)
                assert isinstance(p.app.screen, ConnectScreen)
                for key in keys:
                    await p.press(key)
                    await settle(p)

            return real_run(self, headless=True, size=(80, 24), auto_pilot=pilot)

        monkeypatch.setattr(tui, "make_session_factory", fake_factory)
        monkeypatch.setattr(ClusterfixApp, "run", run)
        return sessions, apps

    return drive


def test_quit_early_journals_an_aborted_session(tmp_path: Path, headless, capsys) -> None:
    journal = tmp_path / "session.jsonl"
    sessions, apps = headless("q")
    rc = tui.run(_args(journal))
    assert rc == 0
    assert len(sessions) == 1 and apps[0].session is sessions[0], "the factory's session ran"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert events[0]["type"] == "session_start" and events[0]["mode"] == "interactive"
    ends = [e for e in events if e["type"] == "session_end"]
    assert [e["verdict"] for e in ends] == ["aborted"]
    err = capsys.readouterr().err
    assert f"journal {journal}" in err
    assert "verdict" not in err  # no summary was reached: nothing claims a verdict on screen


def test_quit_after_diagnosis_is_aborted_too(tmp_path: Path, headless) -> None:
    journal = tmp_path / "session.jsonl"
    sessions, apps = headless("c", "q")
    assert tui.run(_args(journal)) == 0
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    types = [e["type"] for e in events]
    assert "diagnosis" in types, "the wizard diagnosed before the quit"
    assert [e["verdict"] for e in events if e["type"] == "session_end"] == ["aborted"]
