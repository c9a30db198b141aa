"""Ctrl+C / SIGTERM in a headless `fix` (issue #14 item 6): the running command is killed on its
node, the journal gets command_end (interrupted), step_end and session_end "aborted", and
`rollback` undoes what ran. A real lab; the slow command is made deterministic by a `sysctl`
wrapper, in one node's mount namespace only, that records its pid and blocks on `-w`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab_helpers import lab_fixture, pid_alive

REPO = str(Path(__file__).resolve().parents[1])

lab = lab_fixture(nodes=2, faults="none")


def _ip_forward(lab, node: str) -> str:
    return lab.exec(node, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip()


def _alive(pid: int) -> bool:
    """Still running: a zombie (killed, its parent not yet done reaping it, which on a busy
    machine can take a while) has ended (lab_helpers.pid_alive)."""
    return pid_alive(pid)


@pytest.mark.lab
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_fix_kills_the_remote_command_and_rollback_undoes(
        lab, tmp_path: Path, sig: signal.Signals) -> None:
    state = Path(lab.info["state_dir"]) / "node-2"
    pidfile = state / f"hang-{sig.name}.pid"
    pidfile.unlink(missing_ok=True)
    real = state / "sysctl.real"
    wrapper = state / "sysctl-wrapper"
    lab.exec("node-2", f"cp \"$(command -v sysctl)\" {real}")
    wrapper.write_text("#!/bin/sh\n"
                       f"case \"$*\" in *-w*) echo $$ > {pidfile}; exec sleep 600 ;; esac\n"
                       f"exec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    for node in ("node-1", "node-2"):
        lab.exec(node, "sysctl -qw net.ipv4.ip_forward=0")
    lab.exec("node-2", f"mount --bind {wrapper} \"$(command -v sysctl)\"")
    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "PYTHONPATH": REPO}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--no-validate",
             "--step", "host_network", "--lab-dir", str(lab.dir), "--journal", str(journal)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), env=env)
        deadline = time.monotonic() + 180
        while not pidfile.exists():  # node-2's `sysctl -w` is running (and blocked)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the slow command never started"
            time.sleep(0.1)
        hung = int(pidfile.read_text())
        assert _alive(hung)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out[-2000:] + err[-2000:]
        deadline = time.monotonic() + 30  # bounds the wait; asserts nothing about speed
        while _alive(hung) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(hung), "the remote command survived the interrupt"
        evs = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        assert evs[-1]["type"] == "session_end" and evs[-1]["verdict"] == "aborted"
        starts = [e for e in evs if e["type"] == "command_start" and not e.get("rollback")]
        ends = {e["action_id"]: e for e in evs if e["type"] == "command_end"}
        assert starts and all(s["action_id"] in ends for s in starts)  # none left open
        killed = [ends[s["action_id"]] for s in starts if s["node"] == "node-2"]
        assert killed and "interrupted" in (killed[-1]["error"] or "")
        assert any(e["type"] == "step_end" and e["step"] == "host_network" for e in evs)
    finally:
        lab.exec("node-2", "umount \"$(command -v sysctl)\"", check=False)
    # what ran is undone; node-2's killed command changed nothing
    ran_on_1 = any(s["node"] == "node-1" and ends[s["action_id"]]["exit_code"] == 0
                   for s in starts)
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "rollback", "--yes",
                        "--journal", str(journal), "--lab-dir", str(lab.dir)],
                       capture_output=True, text=True, timeout=180, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert _ip_forward(lab, "node-1") == "0" and _ip_forward(lab, "node-2") == "0"
    if ran_on_1:
        assert any(e["type"] == "command_start" and e.get("rollback") and e["node"] == "node-1"
                   for e in (json.loads(x) for x in journal.read_text().splitlines()
                             if x.strip()))
    for node in ("node-1", "node-2"):
        lab.exec(node, "sysctl -qw net.ipv4.ip_forward=1")
