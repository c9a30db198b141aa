"""Two per-connection costs cut in transports/ssh.py, with the same behaviour:
- _glob: a pattern without `*`/`?` is compared as text, other patterns' regexes built once;
  same answers as the regex built on every call (OpenSSH patterns: `*`, `?`, the rest literal);
- an SSH_MSG_DEBUG from the server is formatted and logged only when paramiko's DEBUG log is on."""

from __future__ import annotations

import logging
import re

import paramiko
import pytest

from clusterfix_tui.transports import ssh as S


def _old_glob(pattern: str, name: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


PATTERNS = ["node-1", "node-*", "*", "?", "node-?", "[10.0.0.1]:2222", "10.0.0.*", "*.example.org",
            "a.b", "a*b?c", "", "node-1\n", "[*]:22", "n.de-1", "*-1"]
NAMES = ["node-1", "node-10", "node-", "nodex1", "n", "", "[10.0.0.1]:2222", "10.0.0.17",
         "host.example.org", "a.b", "axb", "aXXbYc", "node-1\n", "[x]:22", "n.de-1", "node\n-1"]


def test_glob_answers_as_before() -> None:
    for p in PATTERNS:
        for n in NAMES:
            assert S._glob(p, n) == _old_glob(p, n), (p, n)


class _Sock:
    def settimeout(self, _t: float) -> None:
        pass


def _debug_message(text: bytes) -> paramiko.Message:
    m = paramiko.Message()
    m.add_boolean(False)
    m.add_string(text)
    m.add_string(b"")
    return paramiko.Message(m.asbytes())


def test_server_debug_messages_are_logged_only_when_debug_is_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[bytes] = []
    real = paramiko.util.safe_string

    def counting(s: bytes) -> bytes:
        calls.append(s)
        return real(s)

    monkeypatch.setattr(paramiko.util, "safe_string", counting)
    t = S._Transport.__new__(S._Transport)  # no socket, no thread: only the message handler
    t.logger = logging.getLogger("paramiko.transport.test")
    t._parse_debug(_debug_message(b"key options: restrict"))
    assert calls == []
    with caplog.at_level(logging.DEBUG, logger="paramiko.transport.test"):
        t._parse_debug(_debug_message(b"key options: restrict"))
    assert calls == [b"key options: restrict"]
    assert "Debug msg: " in caplog.text and "restrict" in caplog.text


def test_local_user_is_getpass_getuser(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    for env in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(env, raising=False)
    assert S._local_user() == getpass.getuser()  # from the password database
    monkeypatch.setenv("USERNAME", "from-username")
    assert S._local_user() == getpass.getuser() == "from-username"
    monkeypatch.setenv("LOGNAME", "from-logname")
    assert S._local_user() == getpass.getuser() == "from-logname"


def test_filter_algorithm_as_paramiko() -> None:
    for disabled in (None, {"ciphers": ["aes128-ctr"], "kex": ["diffie-hellman-group14-sha256"]}):
        ours = S._Transport.__new__(S._Transport)
        theirs = paramiko.Transport.__new__(paramiko.Transport)
        for t in (ours, theirs):
            t.disabled_algorithms = disabled or {}
        for kind in ("ciphers", "macs", "keys", "kex", "compression", "pubkeys"):
            assert ours._filter_algorithm(kind) == theirs._filter_algorithm(kind)
        assert ours.preferred_ciphers == theirs.preferred_ciphers
    assert "aes128-ctr" not in ours.preferred_ciphers
