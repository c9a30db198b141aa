"""The sections' deadline from ONE watchdog (#17: a `timeout` process and its fork per section
were ~1 ms of a node's CPU each, ~27 sections). Where the node has `timeout` (and `sleep`), the
script starts one watchdog subshell; each section's command runs in the background of the
script's shell and is waited for; the watchdog, waking once a second, SIGKILLs a section's
process and everything under it once that section has run for the deadline (#14: a hung command
costs only its own section, rc 137 and "timed out", the next section still runs). It never kills
a process that is not the script's own child, and it ends with the script. Without `sleep`
every section runs under its own `timeout`, as before.

Run here with stand-in tools first on the script's PATH and a 1 s deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from clusterfix_tui.core import facts as F

NONCE = "watchdog0001"
DONE = f"printf '{F.MARK} %s DONE\\n' \"$N\""
REAL_TIMEOUT = subprocess.run(["sh", "-c", "command -v timeout"], capture_output=True, text=True).stdout.strip()


@pytest.fixture(autouse=True)
def _one_second(monkeypatch) -> None:
    monkeypatch.setattr(F, "SECTION_TIMEOUT", 1)


def _tool(d: Path, name: str, body: str) -> None:
    d.mkdir(exist_ok=True)
    (d / name).write_text("#!/bin/sh\n" + body)
    (d / name).chmod(0o755)


def _script(d: Path, lines: list[str], no_sleep: bool = False) -> str:
    prelude = dict(F.script_parts([], NONCE, skip=(F.KUBECTL_SECTION,)))["prelude"]
    prelude = prelude.replace("PATH=/usr/local/sbin:", f"PATH={d}:/usr/local/sbin:", 1)
    assert "timeout -s KILL 1" in prelude
    if no_sleep:  # a node without `sleep`: every section under its own `timeout`, as before
        assert prelude.count("command -v sleep ") == 1
        prelude = prelude.replace("command -v sleep ", "command -v cfx-no-such-sleep ")
    return "\n".join([prelude, *lines, DONE])


def _run(script: str, env: dict[str, str] | None = None) -> dict[str, F.Section]:
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors, (errors, r.stderr[-500:])
    return secs


def _counting_timeout(d: Path, log: Path) -> None:
    """A `timeout` first on PATH that notes each run, then is the real one."""
    _tool(d, "timeout", f'echo "$*" >>{log}\nexec {REAL_TIMEOUT} "$@"\n')


@pytest.mark.parametrize("no_sleep", [False, True], ids=["watchdog", "timeout-each"])
def test_a_hung_section_is_killed_with_its_children_and_the_next_one_runs(tmp_path, no_sleep) -> None:
    d = tmp_path / "bin"
    pidfile = tmp_path / "child.pid"
    _tool(d, "cfxtool-hang", f'sleep 600 & echo $! >{pidfile}\nprintf partial\nexec sleep 600\n')
    _tool(d, "cfxtool-ok", 'echo fine; echo note >&2\n')
    log = tmp_path / "timeouts"
    _counting_timeout(d, log)
    secs = _run(_script(d, [F._section_call("h", "cfxtool-hang", "cfxtool-hang"),
                            F._section_call("ok", "cfxtool-ok", "cfxtool-ok")], no_sleep))
    h = secs["h"]
    assert (h.rc, h.stdout, h.timed_out, h.unread_reason()) == (137, "partial", True, "timed out after 1s")
    assert (secs["ok"].rc, secs["ok"].stdout, secs["ok"].stderr) == (0, "fine\n", "note\n")
    child = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # the child holding stdout went too (reaped by init shortly after)
            os.kill(child, 0)
            time.sleep(0.1)
    runs = log.read_text().splitlines() if log.exists() else []
    # the watchdog: no `timeout` process for a section; without sleep: one each, as before
    assert runs == (["-s KILL 1 cfxtool-hang", "-s KILL 1 cfxtool-ok"] if no_sleep else [])


def test_each_section_has_its_own_deadline_not_a_shared_one(tmp_path) -> None:
    """Three sections of 0.7 s each under a 1 s deadline: 2.1 s in all, none killed."""
    d = tmp_path / "bin"
    _tool(d, "cfxtool-slow", 'sleep 0.7; echo "done $1"\n')
    secs = _run(_script(d, [F._section_call(f"s{i}", "cfxtool-slow", f"cfxtool-slow {i}") for i in range(3)]))
    assert [(secs[f"s{i}"].rc, secs[f"s{i}"].stdout) for i in range(3)] == [(0, f"done {i}\n") for i in range(3)]


def test_the_watchdog_ends_with_the_script(tmp_path) -> None:
    """Nothing the script started is left running once it has ended (the watchdog's subshell
    and its `sleep` carry the marker in their environment)."""
    d = tmp_path / "bin"
    _tool(d, "cfxtool-ok", "echo fine\n")
    mark = f"CFX_WD_TEST={F.new_nonce()}".encode()
    script = _script(d, [F._section_call("ok", "cfxtool-ok", "cfxtool-ok")])
    assert "cfx_wdog >/dev/null 2>&1 </dev/null &" in script
    secs = _run(script, env={"CFX_WD_TEST": mark.decode().split("=", 1)[1]})
    assert secs["ok"].rc == 0
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if mark in (p / "environ").read_bytes().split(b"\0"):
                    left.append(p.name)
            except OSError:
                pass
    assert left == []


def test_the_watchdog_kills_only_the_scripts_own_children(tmp_path) -> None:
    """cfx_killtree of a process that is not the script's child (what a pid could be once reused)
    does nothing; of the script's own child, it kills that child and its children."""
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        lines = [f"cfx_killtree {stranger.pid}",
                 f"sh -c 'sleep 600 & echo $! >{tmp_path}/gc; exec sleep 600' & cfx_c=$!",
                 f"while [ ! -s {tmp_path}/gc ]; do sleep 0.05; done",
                 'cfx_killtree "$cfx_c"; wait "$cfx_c"; echo "rc=$?" >' + str(tmp_path / "rc")]
        _run(_script(tmp_path / "bin", lines))
        assert stranger.poll() is None  # alive
        assert (tmp_path / "rc").read_text().strip() == "rc=137"
        gc = int((tmp_path / "gc").read_text())
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(gc, 0)
                time.sleep(0.1)
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


def test_a_hung_route_batch_is_killed_and_every_lookup_runs_alone(tmp_path) -> None:
    """The netlink batch (`ip -batch`, stdin from a file) under the watchdog: hung, it is killed
    at its deadline and each command runs alone, as when it does not add up."""
    d = tmp_path / "bin"
    real_ip = subprocess.run(["sh", "-c", "command -v ip"], capture_output=True, text=True).stdout.strip()
    if not real_ip:
        pytest.skip("no ip here")  # pragma: no cover
    _tool(d, "ip", f'case " $* " in *" -batch "*) exec sleep 600;; esac\nexec {real_ip} "$@"\n')
    parts = dict(F.script_parts(["127.0.0.1"], NONCE, skip=(F.KUBECTL_SECTION,)))
    secs = _run(_script(d, [parts["route_get + ip dumps"]]))
    rg = secs["route_get 127.0.0.1"]
    assert rg.rc == 0 and '"dst":"127.0.0.1"' in rg.stdout.replace(" ", ""), rg
    assert secs["ip_addr"].rc == 0 and secs["ip_route"].rc == 0


SHELLS = [s for s in ("dash", "bash") if __import__("shutil").which(s)] + \
    (["busybox sh"] if __import__("shutil").which("busybox") else [])


@pytest.mark.parametrize("shell", SHELLS)
def test_killed_and_crashed_sections_read_as_with_a_timeout_each(tmp_path, shell) -> None:
    """A section killed at its deadline, one whose tool dies of a signal, one that exits 130:
    the same exit status, stdout and stderr (the shell's own note on a killed command included:
    dash and busybox print "Killed", "Segmentation fault" into the section's stderr as they did
    for `timeout`; bash's note names a pid and a command line, taken out here)."""
    import re

    d = tmp_path / "bin"
    _tool(d, "cfxtool-hang", "printf partial\nexec sleep 600\n")
    _tool(d, "cfxtool-segv", "printf partial; echo msg >&2\nkill -SEGV $$\n")
    _tool(d, "cfxtool-130", "echo m >&2; exit 130\n")
    calls = [F._section_call(n, t, t) for n, t in (("h", "cfxtool-hang"), ("s", "cfxtool-segv"),
                                                     ("x", "cfxtool-130"))]
    got = []
    for no_sleep in (False, True):
        r = subprocess.run([*shell.split(), "-c", _script(d, calls, no_sleep)], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        secs, complete, errors = F.split_sections(r.stdout, NONCE)
        assert complete and not errors
        got.append({k: (v.rc, v.stdout, re.sub(r"line \d+: +\d+ (\w[\w ]*?) {2,}.*", r"\1", v.stderr))
                    for k, v in secs.items()})
    assert got[0] == got[1]
    assert got[0]["h"][0] == 137 and got[0]["s"][0] == 139 and got[0]["x"] == (130, "", "m\n")
    if shell != "bash":
        assert got[0]["h"][2] == "Killed\ncfx: timed out after 1s (killed)\n"
        assert got[0]["s"][2] == "msg\nSegmentation fault\n"


def test_a_section_after_a_long_kubectl_wait_still_has_its_deadline(tmp_path) -> None:
    """The watchdog stops while the script waits for a node kubectl still running and starts
    again after it: a hung section after that wait is still killed at its deadline."""
    d = tmp_path / "bin"
    real_sleep = subprocess.run(["sh", "-c", "command -v sleep"], capture_output=True, text=True).stdout.strip()
    _tool(d, "kubectl", f'{real_sleep} 1.5; echo "{{}}"\n')
    _tool(d, "cfxtool-hang", "printf partial\nexec sleep 600\n")
    parts = dict(F.script_parts([], NONCE, node_name="node-1"))
    prelude = parts["prelude"].replace("PATH=/usr/local/sbin:", f"PATH={d}:/usr/local/sbin:", 1)
    script = "\n".join([prelude, parts["files + kubectl"], F._section_call("h", "cfxtool-hang", "cfxtool-hang"),
                        DONE])
    assert 'cfx_wdstop; cfx_wdre=1' in script
    secs = _run(script)
    k = next(s for s in secs.values() if s.name == "kubectl_get_nodes")
    assert (k.rc, k.stdout) == (0, "{}\n")
    assert secs["h"].rc == 137 and secs["h"].timed_out
