"""Sections under ONE deadline (cfx_batch, issue #17's node CPU): the facts script's sections that
run a tool share one GNU `timeout` (it kills the whole process group it leads) instead of one
each. What each section reads must not change, and #14's guarantee must hold: a hung command
costs only its own section, reported "timed out after Ns" by its own deadline, its children
killed, the sections after it still read. Without GNU timeout every section runs alone, as
before. And the VXLAN probes of a node without ping: one curl for all of them, the same
sections as one curl each."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

from clusterfix_tui.core import facts as F

NONCE = "batch0001"
DONE = f"printf '{F.MARK} %s DONE\\n' \"$N\""


def _tool(tmp_path: Path, name: str, body: str) -> None:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    (d / name).write_text("#!/bin/sh\n" + body)
    (d / name).chmod(0o755)


def _run(tmp_path: Path, body: list[str], *, first_path: str = "", trace: bool = False,
         timeout: int = 60) -> tuple[dict[str, F.Section], str]:
    prelude = F.script_parts([], NONCE)[0][1]
    if first_path:  # a directory searched before the system ones (the script puts those first)
        prelude = prelude.replace("PATH=/usr/local/sbin:", f"PATH={first_path}:/usr/local/sbin:", 1)
    script = "\n".join([prelude, *body, DONE])
    env = {**os.environ, "PATH": f"{os.environ['PATH']}:{tmp_path / 'bin'}"}
    r = subprocess.run(["sh", "-x", "-c", script] if trace else ["sh", "-c", script],
                       capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors, (errors, r.stderr[-800:])
    return secs, r.stderr


def _batch(lines: list[str]) -> str:
    import shlex

    return "cfx_batch " + " ".join(shlex.quote(ln) for ln in lines)


def _tools(tmp_path: Path) -> list[str]:
    _tool(tmp_path, "cfxtool-a", 'printf "out %s|" "$@"; printf "no newline"; echo "warn: $1" >&2; exit 3\n')
    _tool(tmp_path, "cfxtool-b", 'printf "line\\n\\n"\n')
    _tool(tmp_path, "cfxtool-c", 'cat /nonexistent/cfx\n')
    return [F._section_call("a", "cfxtool-a", "cfxtool-a x --y=1 /p/q:r"),
            F._section_call("b", "cfxtool-b", "cfxtool-b"),
            F._section_call("missing", "cfxtool-missing", "cfxtool-missing -j"),
            F._section_call("c", "cfxtool-c", "cfxtool-c"),
            F._section_call("shell", "cfxtool-b", "cfxtool-b | tr n N && echo \"$(echo ok)\""),
            # a line of shell with a builtin branch, as the iptables_link section is
            'if command -v cfxtool-b >"$T/c" 2>/dev/null && IFS= read -r cfx_p <"$T/c"; '
            'then cfx_x which cfxtool-b printf "%s\\n" "$cfx_p"; else cfx_put which none; fi']


def _key(s: F.Section) -> tuple[str, str, int | None]:
    return s.stdout, s.stderr, s.rc


def test_a_batch_gives_what_each_section_alone_gives(tmp_path) -> None:
    lines = _tools(tmp_path)
    alone, _ = _run(tmp_path, lines)
    batched, trace = _run(tmp_path, [_batch(lines)], trace=True)
    assert sorted(alone) == sorted(batched) == sorted(["a", "b", "missing", "c", "shell", "which"])
    for name in alone:
        assert _key(batched[name]) == _key(alone[name]), name
    assert _key(alone["a"]) == ("out x|out --y=1|out /p/q:r|no newline", "warn: x\n", 3)
    assert alone["missing"].rc == 127 and alone["shell"].stdout == "liNe\n\nok\n"
    assert alone["which"].stdout.endswith("/bin/cfxtool-b\n")
    # one deadline for all (this machine has GNU timeout); no `timeout` per section unless the
    # batch ran out of its time (a machine this loaded: the rest then ran alone, as above)
    assert f"timeout -s KILL {F.SECTION_TIMEOUT // 2} sh -c" in trace
    if "+ shift 6\n" in trace:  # the batch finished all 6
        assert f"timeout -s KILL {F.SECTION_TIMEOUT} cfxtool" not in trace


def test_the_facts_script_runs_its_tools_in_one_batch() -> None:
    parts = dict(F.script_parts(["10.244.1.5"], NONCE, vxlan_probes=["10.244.1.0"]))
    (label,) = [k for k in parts if k.startswith("sections (one deadline")]
    text = parts[label]
    for name, _cmd in F._SECTIONS + F.SHAPE_SECTIONS:
        if name in F._BUILTIN_READ or name.startswith("kube_proxy"):
            assert f"cfx_x {name} " not in text, name  # read by the shell / one curl: elsewhere
        else:
            assert re.search(rf"cfx_(x|sh) {name} ", text), name
    r = subprocess.run(["sh", "-n"], input=F.build_facts_script(["10.244.1.5"]), text=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr


def _dead(pid: int) -> bool:
    for _ in range(50):  # reaped by init shortly after its group was killed
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_hung_command_in_a_batch_costs_its_section_only(tmp_path, monkeypatch) -> None:
    """The batch's deadline kills the batch (and the hung tool's child); the sections it finished
    are printed as they were read; the hung one runs again alone under its own deadline (so it
    is reported timed out by that deadline, with what it printed), the next ones alone too."""
    monkeypatch.setattr(F, "SECTION_TIMEOUT", 1)
    pids, runs = tmp_path / "pids", tmp_path / "runs"
    _tool(tmp_path, "cfxtool-once", f'echo x >>{runs}\nprintf "read once"\n')
    _tool(tmp_path, "cfxtool-hang", f'sleep 600 & echo $! >>{pids}\nprintf partial\nexec sleep 600\n')
    _tool(tmp_path, "cfxtool-b", 'printf "after\\n"\n')
    lines = [F._section_call("once", "cfxtool-once", "cfxtool-once"),
             F._section_call("h", "cfxtool-hang", "cfxtool-hang"),
             F._section_call("after", "cfxtool-b", "cfxtool-b"),
             F._section_call("missing", "cfxtool-missing", "cfxtool-missing")]
    secs, _ = _run(tmp_path, [_batch(lines)], timeout=30)
    assert _key(secs["once"]) == ("read once", "", 0)
    assert runs.read_text() == "x\n"  # finished in the batch: not run again
    h = secs["h"]
    assert h.rc == 137 and h.timed_out and h.unread_reason() == "timed out after 1s"
    assert h.stdout == "partial"
    assert _key(secs["after"]) == ("after\n", "", 0) and secs["missing"].rc == 127
    children = [int(x) for x in pids.read_text().split()]
    assert len(children) == 2  # the batch's run, and its own run alone
    assert all(_dead(p) for p in children), children


def _busybox_timeout(tmp_path: Path) -> str | None:
    bb = subprocess.run(["sh", "-c", "command -v busybox"], capture_output=True, text=True).stdout.strip()
    if not bb:
        return None
    d = tmp_path / "bb"
    d.mkdir()
    (d / "timeout").symlink_to(bb)
    return str(d)


def test_without_gnu_timeout_each_section_runs_alone_as_before(tmp_path, monkeypatch) -> None:
    """A `timeout` that kills only its child (busybox's) cannot guard a batch: a hung tool would
    outlive it. Then every section runs alone under its own deadline, as before the batch."""
    monkeypatch.setattr(F, "SECTION_TIMEOUT", 1)
    first = _busybox_timeout(tmp_path)
    if first is None:
        # no busybox here: a `timeout` that is not GNU's, made for the test
        first = str(tmp_path / "fake")
        Path(first).mkdir()
        (Path(first) / "timeout").write_text('#!/bin/sh\n[ "$1" = --version ] && '
                                              '{ echo "timeout (not GNU) 1.0"; exit 0; }\n'
                                              'exec /usr/bin/timeout "$@"\n')
        (Path(first) / "timeout").chmod(0o755)
    lines = _tools(tmp_path)
    alone, _ = _run(tmp_path, lines)
    _tool(tmp_path, "cfxtool-hang", "printf partial\nexec sleep 600\n")
    lines.append(F._section_call("h", "cfxtool-hang", "cfxtool-hang"))
    secs, trace = _run(tmp_path, [_batch(lines)], first_path=first, trace=True, timeout=30)
    for tool in ("cfxtool-a", "cfxtool-b", "cfxtool-c", "cfxtool-hang"):  # each under its own
        assert f"timeout -s KILL 1 {tool}" in trace, tool
    for name in alone:
        assert _key(secs[name]) == _key(alone[name]), name
    assert secs["h"].timed_out and secs["h"].stdout == "partial"


# -- the VXLAN probes of a node without ping: one curl ------------------------------------------

def _server(ip: str, port: int, mode: str) -> socket.socket:
    s = socket.socket()
    s.bind((ip, port))
    s.listen(16)

    def serve() -> None:
        held = []
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            if mode == "http":
                c.recv(4096)
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                c.close()
            else:  # accepts and never answers: curl's -m 3 ends it (exit 28)
                held.append(c)

    threading.Thread(target=serve, daemon=True).start()
    return s


def _probe_sections(mod, probes: list[str], port: int, first_path: str = "") -> dict:
    nonce = F.new_nonce()
    script = mod.build_facts_script([], nonce=nonce, vxlan_probes=probes)
    # as on a node without ping (the lab's), whatever this machine has; the probes' port 10250
    # moved to a free loopback one
    script = script.replace("command -v ping", "command -v cfx-no-such-ping").replace(":10250/", f":{port}/")
    if first_path:
        script = script.replace("PATH=/usr/local/sbin:", f"PATH={first_path}:/usr/local/sbin:", 1)
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    facts = F.parse_facts("n", r.stdout, nonce)
    assert facts.complete, facts.parse_errors
    return {s.arg: (s.rc, re.sub(r"after \d+ (ms|milliseconds)", "after N ms", s.stdout), s.stderr)
            for s in facts.sections.values() if s.name == "vxlan_probe"}


def test_one_curl_for_all_probes_gives_each_probe_its_own_section(tmp_path) -> None:
    import facts_script_v1 as OLD

    http = _server("127.0.0.1", 0, "http")  # answers (an HTTP error is an answer: exit 0)
    port = http.getsockname()[1]
    mute = _server("127.0.0.2", port, "mute")  # never answers (exit 28)
    try:
        # 127.0.0.3: nothing listens (refused, 7); ::1 is not bracketed in the probes' URL (3)
        probes = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"]
        old = _probe_sections(OLD, probes, port)
        new = _probe_sections(F, probes, port)
        assert new == old
        assert sorted(rc for rc, _o, _e in new.values()) == [0, 3, 7, 28]
        # a curl without -Z/-w's fields (older than 7.75): each probe alone, the same sections
        fake = tmp_path / "oldcurl"
        fake.mkdir()
        real = subprocess.run(["sh", "-c", "command -v curl"], capture_output=True, text=True).stdout.strip()
        (fake / "curl").write_text('#!/bin/sh\ncase " $* " in *" -Z "*) echo "curl: option -Z: is unknown" >&2; '
                                   f'exit 2;; esac\nexec {real} "$@"\n')
        (fake / "curl").chmod(0o755)
        assert _probe_sections(F, probes, port, first_path=str(fake)) == old
    finally:
        http.close()
        mute.close()


def test_the_node_kubectl_runs_on_one_p_with_fewer_collections() -> None:
    """One short request: Go's runtime on one P, its first collection later (GOGC=400: a heap
    still bounded); the request itself is test_facts_kubectl_scope's."""
    s = F.build_facts_script(["10.244.1.5"], node_name="node-1").replace("\\\n", " ")
    (line,) = [ln for ln in s.splitlines() if " kubectl " in ln and "--request-timeout" in ln]
    assert line.split("kubectl", 1)[0].split() == ["HOME=${HOME:-/root}", "GOMAXPROCS=1", "GOGC=400", "$cfx_to"]
