"""The SSH handshake's deadline without a timer thread (transports/ssh.py, _Packetizer).

paramiko started a `threading.Timer` per connection for its handshake timeout and cancelled it
after every message; our packetizer keeps the deadline as a time, read where paramiko read the
timer's flag. Same answers at the same moments: never before the handshake starts, never after
it completed, and a server that goes silent after its banner still ends the handshake."""

from __future__ import annotations

import pathlib
import socket
import threading
import time
from collections.abc import Iterator

import paramiko
import pytest
from paramiko.packet import Packetizer

from clusterfix_tui.transports import ssh as S
from tests.test_ssh_transport import sshd, write_config  # noqa: F401 - the module's sshd fixture


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.settimeout(0.1)
    return a, b


def test_the_deadline_answers_as_paramikos_timer() -> None:
    a, b = _pair()
    try:
        ours = S._Packetizer(a)
        theirs = Packetizer(a)
        for p in (ours, theirs):
            assert p.handshake_timed_out() is False  # not started: never
            p.complete_handshake()  # completing before a start changes nothing (paramiko)
            assert p.handshake_timed_out() is False
        ours.start_handshake(0)
        theirs.start_handshake(0)
        time.sleep(0.05)  # paramiko's timer thread sets its flag
        assert ours.handshake_timed_out() is True
        assert theirs.handshake_timed_out() is True
        ours.start_handshake(600)  # a second start keeps the first deadline (as paramiko)
        theirs.start_handshake(600)
        assert ours.handshake_timed_out() is theirs.handshake_timed_out() is True
        ours.complete_handshake()
        theirs.complete_handshake()
        assert ours.handshake_timed_out() is theirs.handshake_timed_out() is False
        fresh = S._Packetizer(a)
        fresh.start_handshake(600)
        assert fresh.handshake_timed_out() is False  # started, not yet due
    finally:
        a.close()
        b.close()


@pytest.fixture
def banner_then_silence() -> Iterator[int]:
    """A server that sends an SSH banner and then never a KEXINIT (a hung sshd)."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []

    def serve() -> None:
        try:
            c, _ = listener.accept()
        except OSError:
            return
        conns.append(c)
        c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield listener.getsockname()[1]
    listener.close()
    for c in conns:
        c.close()


def test_a_server_silent_after_its_banner_ends_the_handshake(banner_then_silence: int) -> None:
    sock = socket.create_connection(("127.0.0.1", banner_then_silence))
    t = S._Transport(sock)
    t.handshake_timeout = 0.5
    try:
        # start_client's own wait is 60 s and, when it runs out, returns with the transport
        # still active; the handshake deadline ends it long before, as EOF in its thread
        with pytest.raises(EOFError):
            t.start_client(timeout=60)
        assert not t.is_active()
    finally:
        t.close()


def test_a_connection_starts_no_timer_thread(sshd, tmp_path: pathlib.Path) -> None:  # noqa: F811
    cfg, _known = write_config(sshd, tmp_path)
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(type(self).__name__)
        real_start(self)

    with S.SSHPool(cfg) as pool:
        threading.Thread.start = counting_start  # type: ignore[method-assign]
        try:
            pool("cfx-node")
        finally:
            threading.Thread.start = real_start  # type: ignore[method-assign]
        transport = pool.transport("cfx-node")
        assert isinstance(transport.packetizer, S._Packetizer)
        assert transport.packetizer._Packetizer__timer is None  # type: ignore[attr-defined]
        assert "Timer" not in started, started
        assert started == ["_Transport"], started  # the transport's own reader thread only
        assert transport.packetizer.handshake_timed_out() is False
        res = pool("cfx-node").run("echo ok", timeout=30)
        assert (res.exit_code, res.stdout) == (0, "ok\n")
        assert isinstance(transport, paramiko.Transport)
