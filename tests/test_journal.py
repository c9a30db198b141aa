"""The journal: append-only, one line per event, 0600, redacted, tolerant of a torn last line."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from clusterfix_tui.core.journal import Journal


def test_events_are_numbered_lines_and_file_is_0600(tmp_path):
    path = tmp_path / "j" / "session.jsonl"
    old = os.umask(0)
    try:
        with Journal(path) as j:
            j.write("session_start", session_id="s1", dry_run=False)
            j.write("note", text="hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    evs = [json.loads(line) for line in lines]
    assert [e["seq"] for e in evs] == [1, 2]
    assert [e["type"] for e in evs] == ["session_start", "note"]
    assert evs[0]["ts"].endswith("Z")


def test_secrets_are_redacted_before_they_reach_the_disk(tmp_path):
    path = tmp_path / "s.jsonl"
    secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.abcdef123456"
    with Journal(path) as j:
        j.write("command_end", stdout=f"Authorization: Bearer {secret}\n", token=secret)
    raw = path.read_text()
    assert secret not in raw


def test_read_tolerates_a_torn_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    with Journal(path) as j:
        j.write("note", text="a")
        j.write("note", text="b")
    with open(path, "a") as fh:
        fh.write('{"seq": 3, "ts": "x", "type": "comm')  # killed mid-write
    evs = Journal.read(path)
    assert [e["text"] for e in evs] == ["a", "b"]


def test_reopening_continues_the_sequence(tmp_path):
    path = tmp_path / "c.jsonl"
    with Journal(path) as j:
        j.write("note", text="a")
    with Journal(path) as j:
        ev = j.write("note", text="b")
    assert ev["seq"] == 2
    assert len(Journal.read(path)) == 2


def test_each_event_is_on_disk_before_write_returns(tmp_path):
    """A child writes one event then is SIGKILLed: the event is there."""
    path = tmp_path / "k.jsonl"
    code = (
        "import os, signal\n"
        "from clusterfix_tui.core.journal import Journal\n"
        f"j = Journal({str(path)!r})\n"
        "j.write('command_start', step='iptables', action_id='a1', node='n', command='sleep 9')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)  # noqa: PLW1510
    assert r.returncode == -9
    evs = Journal.read(path)
    assert [e["type"] for e in evs] == ["command_start"]
    assert evs[0]["command"] == "sleep 9"
