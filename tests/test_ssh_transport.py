"""SSHPool / SSHNodeShell against a real OpenSSH sshd started by this module on 127.0.0.1.

Nothing is patched: paramiko talks to sshd over TCP. The sshd runs as root with its own host key,
key-only auth and its log on stderr (-e) in a file, which the reuse tests count connections in.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from collections.abc import Iterator

import paramiko
import pytest
from _env import require, require_tool

from clusterfix_tui.transports import ssh as ssh_module
from clusterfix_tui.transports.base import (
    AuthFailed,
    HostKeyChanged,
    HostKeyUnknown,
    NodeUnreachable,
    SudoPasswordRequired,
    TransportError,
)
from clusterfix_tui.transports.ssh import (
    REMOTE_KILL_GRACE,
    SSHPool,
    is_sudo_password_prompt,
    wire_command,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
    """A port free a moment ago, for sshd (which binds it itself: Sshd retries another one when
    some other process took it in between)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _refusing_port() -> Iterator[int]:
    """A loopback port bound but never listening: connecting to it is refused, and no other
    process (another xdist worker) can take it while the test uses it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _keygen(path: pathlib.Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)


class Sshd:
    def __init__(self, root: pathlib.Path, *, host_ca: pathlib.Path | None = None,
                 principals: str = "127.0.0.1", validity: str = "-5m:+1h"):
        """host_ca: also serve a host certificate of the host key, signed by that CA key
        (`ssh-keygen -s CA -h -n principals -V validity`), as sshd's HostCertificate."""
        self.root = root
        self.port = 0
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        self.wrong_key = root / "wrong_ed25519"
        self.other_host_key = root / "other_host_ed25519"
        for key in (self.host_key, self.client_key, self.wrong_key, self.other_host_key):
            _keygen(key)
        # a world-readable place: sshd reads authorized_keys as the user (the sudo test's too)
        self.pubdir = pathlib.Path(tempfile.mkdtemp(prefix="cfx-sshd-"))
        self.pubdir.chmod(0o755)
        authorized = self.pubdir / "authorized_keys"
        authorized.write_text(pathlib.Path(f"{self.client_key}.pub").read_text())
        authorized.chmod(0o644)
        self.log = root / "sshd.log"
        self.config = root / "sshd_config"
        cert = ""
        if host_ca is not None:
            subprocess.run(["ssh-keygen", "-q", "-s", str(host_ca), "-I", "cfx-test-host", "-h",
                            "-n", principals, "-V", validity, f"{self.host_key}.pub"], check=True)
            cert = f"HostCertificate {self.host_key}-cert.pub\n"
        self._config_text = (
            "ListenAddress 127.0.0.1\nHostKey {host_key}\n{cert}"
            "PidFile none\nUsePAM no\nStrictModes no\nUseDNS no\n"
            "AuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding yes\n"
            "MaxStartups 100:30:200\nLogLevel VERBOSE\n"
        ).format(host_key=self.host_key, cert=cert, authorized=authorized)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        for _ in range(5):  # the port was free a moment ago; another process may take it first
            if self._start():
                return
        raise RuntimeError(f"sshd found no free port: {self.log.read_text()}")

    def _start(self) -> bool:
        """Start sshd on a fresh port; False when that port was taken meanwhile."""
        self.port = _free_port()
        self.config.write_text(f"Port {self.port}\n{self._config_text}")
        self.proc = subprocess.Popen(
            [require_tool("sshd"), "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),
        )
        # listening when its log says so (a connect could reach whoever else has the port)
        ready = f"Server listening on 127.0.0.1 port {self.port}"
        deadline = time.monotonic() + 120  # a deadline, not a speed check
        while time.monotonic() < deadline:
            if ready in self.log.read_text(errors="replace"):
                return True
            if self.proc.poll() is not None:
                log = self.log.read_text(errors="replace")
                if "Address already in use" in log:
                    return False
                raise RuntimeError(f"sshd exited: {log}")
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("sshd did not listen")

    def accepted(self) -> int:
        """How many connections sshd authenticated so far."""
        return self.log.read_text(errors="replace").count("Accepted publickey for ")

    def known_line(self) -> str:
        key_type, b64 = pathlib.Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {b64}"

    def keygen_fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", f"{self.host_key}.pub"], check=True,
                             capture_output=True, text=True).stdout
        return out.split()[1]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)
        shutil.rmtree(self.pubdir, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    # sshd runs as root here (its own host key, any user's login for the sudo test)
    require(os.geteuid() == 0, "needs root to run an OpenSSH sshd")
    require_tool("sshd")
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests decide which keys exist; an agent of whoever runs them must not help or hinder.
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def write_config(sshd: Sshd, tmp: pathlib.Path, *, strict: str = "yes", known: str | None = "ok",
                 key: pathlib.Path | None = None, extra: str = "") -> tuple[str, pathlib.Path]:
    known_hosts = tmp / f"known_hosts-{uuid.uuid4().hex[:6]}"
    if known == "ok":
        known_hosts.write_text(sshd.known_line() + "\n")
    elif known is not None:
        known_hosts.write_text(known)
    cfg = tmp / f"ssh_config-{uuid.uuid4().hex[:6]}"
    cfg.write_text(
        f"{extra}"
        "Host cfx-node\n  HostName 127.0.0.1\n"
        f"Host *\n  Port {sshd.port}\n  User root\n  IdentityFile {key or sshd.client_key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
        f"  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking {strict}\n"
    )
    return str(cfg), known_hosts


# ---------------------------------------------------------------------------------------------


def test_run_streams_lines_in_order_with_exit_codes(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    with SSHPool(cfg) as pool:
        shell = pool("cfx-node")
        # each line is only printed once the previous one has reached on_line (it drops a flag
        # file the command waits for): lines that were not streamed as they arrived would
        # leave the command waiting until its (generous) timeout
        flags = tmp_path / "flags"
        flags.mkdir()
        seen: list[tuple[str, str]] = []

        def on_line(stream: str, line: str) -> None:
            seen.append((stream, line))
            (flags / line).touch()

        def after(line: str) -> str:
            flag = shlex.quote(str(flags / line))
            return f"while [ ! -e {flag} ]; do sleep 0.05; done"

        res = shell.run(
            f"echo one; {after('one')}; echo two >&2; {after('two')}; printf 'three\\nfour'; "
            f"{after('three')}; exit 3",
            timeout=120, on_line=on_line,
        )
        assert seen == [("stdout", "one"), ("stderr", "two"), ("stdout", "three"),
                        ("stdout", "four")]
        assert res.exit_code == 3 and not res.ok and not res.timed_out and res.error is None
        assert res.stdout == "one\nthree\nfour" and res.stderr == "two\n"

        assert shell.run("true").exit_code == 0
        assert shell.run("exit 42").exit_code == 42
        got = shell.run("cat; echo done", stdin=b"from stdin\n", timeout=60)
        assert got.ok and got.stdout == "from stdin\ndone\n"
        # not a login shell, not a tty
        tty = shell.run("tty; echo $0", timeout=60)
        assert "not a tty" in tty.stdout


def test_timeout_returns_promptly_and_kills_the_command(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    marker = f"600.{os.getpid()}{threading.get_ident() % 1000}"
    with SSHPool(cfg) as pool:
        shell = pool("cfx-node")
        remote: list[str] = []

        def on_line(stream: str, line: str) -> None:  # the command runs: how was it started?
            remote.append(subprocess.run(["pgrep", "-af", f"sleep {marker}"], text=True,
                                         capture_output=True, check=False).stdout)

        res = shell.run(f"echo started; sleep {marker}", timeout=1.0, on_line=on_line)
        assert res.timed_out and res.exit_code is None and not res.ok
        assert res.stdout == "started\n"
        # it returned at the timeout, not after the command's 600 s sleep (the bound is only a
        # deadline; its speed is bench/'s job), and the node's own kill timer got the 1 s too
        assert res.duration < 120, res.duration
        assert f"timeout -s KILL {1 + REMOTE_KILL_GRACE} " in remote[0], remote
        # the node's own `timeout` killed the command's process group: no sleep left behind
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
            if left.returncode == 1:
                break
            time.sleep(0.1)
        assert left.returncode == 1, "remote sleep survived the timeout"
        # the connection is still good after a timeout
        assert shell.run("echo after", timeout=60).stdout == "after\n"


def _count_selects(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every select() our SSH reader makes is appended to the returned list."""
    selects: list[float] = []
    real = ssh_module.select.select

    def counting(*args: object) -> object:
        selects.append(1.0)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ssh_module, "select", types.SimpleNamespace(select=counting))
    return selects


def test_the_reader_waits_for_the_exit_status_without_spinning(
        sshd: Sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once EOF came, paramiko keeps a channel's fileno() readable for good: a reader that
    select()s on it until the exit status arrives turns in a busy loop (it burnt our CPU for as
    long as a loaded node took to reap the command). Here the command closes its output at once
    and exits a second later."""
    cfg, _ = write_config(sshd, tmp_path)
    selects = _count_selects(monkeypatch)
    with SSHPool(cfg) as pool:
        pool("cfx-node")
        conn = pool._connection("cfx-node")
        res = ssh_module._exec(conn, "echo out; exec >&- 2>&-; sleep 1; exit 3", timeout=60)
    assert res.exit_code == 3 and res.stdout == "out\n", res
    assert len(selects) < 25, f"{len(selects)} select() calls for one command: a busy loop"


def test_without_a_line_callback_the_reader_wakes_for_the_end_not_for_every_piece(
        sshd: Sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A facts script writes its output in many small pieces (one SSH packet each): a caller
    that wants only the result (no on_line) is woken by the exit status, not by every piece,
    and still gets every byte, in order, on both streams."""
    cfg, _ = write_config(sshd, tmp_path)
    selects = _count_selects(monkeypatch)
    command = ("i=0; while [ $i -lt 40 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); "
               "sleep 0.02; done; exit 5")
    with SSHPool(cfg) as pool:
        res = pool("cfx-node").run(command, timeout=60)
        assert res.exit_code == 5, res
        assert res.stdout == "".join(f"out-{i}\n" for i in range(40))
        assert res.stderr == "".join(f"err-{i}\n" for i in range(40))
        assert len(selects) < 10, f"{len(selects)} wake-ups for one command"
        # with a callback, every line still reaches it as it comes (and in order)
        seen: list[tuple[str, str]] = []
        res = pool("cfx-node").run(command, timeout=60,
                                   on_line=lambda stream, line: seen.append((stream, line)))
        assert [x for x in seen if x[0] == "stdout"] == [("stdout", f"out-{i}") for i in range(40)]
        assert len(selects) >= 40


def test_an_aead_cipher_is_negotiated_and_the_reader_thread_idles(
        sshd: Sshd, tmp_path: pathlib.Path) -> None:
    """AES-GCM first (OpenSSH offers it by default): no per-packet HMAC and pure-Python MAC
    compare in our process; paramiko's other ciphers stay offered after it, none added. The
    transport's reader thread polls its socket once a second, not ten times."""
    cfg, _ = write_config(sshd, tmp_path)
    with SSHPool(cfg) as pool:
        transport = pool.transport("cfx-node")
        assert transport.local_cipher == transport.remote_cipher == "aes128-gcm@openssh.com"
        offered = transport.get_security_options().ciphers
        assert set(offered) == set(paramiko.Transport._preferred_ciphers)
        assert transport.sock.gettimeout() == 1.0
        assert pool("cfx-node").run("echo ok").stdout == "ok\n"


def test_connection_reused_for_many_commands(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    before = sshd.accepted()
    with SSHPool(cfg) as pool:
        transport = pool.transport("cfx-node")
        for i in range(20):
            assert pool("cfx-node").run(f"echo {i}", timeout=60).stdout == f"{i}\n"
        assert pool.transport("cfx-node") is transport
        assert pool.connection_count("cfx-node") == 1
    assert sshd.accepted() - before == 1


def test_parallel_callers_connect_once(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    before = sshd.accepted()
    results: list = []
    errors: list = []
    barrier = threading.Barrier(16)

    def work(pool: SSHPool) -> None:
        try:
            barrier.wait()
            results.append(pool("cfx-node").run("echo $PPID; sleep 0.2", timeout=60))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    with SSHPool(cfg) as pool:
        threads = [threading.Thread(target=work, args=(pool,)) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(results) == 16 and all(r.ok for r in results)
        assert pool.connection_count("cfx-node") == 1
    assert sshd.accepted() - before == 1


def test_unknown_host_key_then_accept(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, known = write_config(sshd, tmp_path, known="")
    with SSHPool(cfg) as pool:
        with pytest.raises(HostKeyUnknown) as info:
            pool("cfx-node")
        exc = info.value
        assert exc.fingerprint == sshd.keygen_fingerprint()  # exactly what ssh-keygen -lf says
        assert exc.key_type == "ssh-ed25519"
        assert exc.known_hosts == str(known)
        assert exc.key_line == sshd.known_line()
        assert exc.fingerprint in str(exc)
        assert known.read_text() == ""  # nothing trusted behind the user's back
        pool.accept_host_key(exc)
        assert known.read_text() == sshd.known_line() + "\n"
        assert pool("cfx-node").run("echo in", timeout=60).stdout == "in\n"


def test_changed_host_key_is_refused_and_names_the_line(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    other_type, other_b64 = pathlib.Path(f"{sshd.other_host_key}.pub").read_text().split()[:2]
    stale = (f"# managed by hand\nunrelated.example ssh-ed25519 {other_b64}\n"
             f"[127.0.0.1]:{sshd.port} {other_type} {other_b64}\n")
    for strict in ("yes", "accept-new", "no"):
        cfg, known = write_config(sshd, tmp_path, known=stale, strict=strict)
        with SSHPool(cfg) as pool:
            with pytest.raises(HostKeyChanged) as info:
                pool("cfx-node")
            msg = str(info.value)
            assert f"{known} line 3" in msg, msg
            assert (info.value.known_hosts, info.value.line_no) == (str(known), 3)
            assert sshd.keygen_fingerprint() in msg  # the key the server offers now
        assert known.read_text() == stale  # never rewritten


def test_revoked_host_key_is_refused(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    key_type, b64 = pathlib.Path(f"{sshd.host_key}.pub").read_text().split()[:2]
    known_text = f"{sshd.known_line()}\n@revoked * {key_type} {b64}\n"
    cfg, known = write_config(sshd, tmp_path, known=known_text)
    with SSHPool(cfg) as pool, pytest.raises(HostKeyChanged, match="REVOKED") as info:
        pool("cfx-node")
    assert f"{known} line 2" in str(info.value)


def test_hashed_known_hosts_entry_is_honoured(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, known = write_config(sshd, tmp_path)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    with SSHPool(cfg) as pool:
        assert pool("cfx-node").run("echo hashed", timeout=60).ok


@pytest.mark.parametrize("strict", ["accept-new", "no", "off"])
def test_strict_host_key_checking_accept_new(sshd: Sshd, tmp_path: pathlib.Path,
                                             strict: str) -> None:
    cfg, known = write_config(sshd, tmp_path, known=None, strict=strict)
    assert not known.exists()
    with SSHPool(cfg) as pool:
        assert pool("cfx-node").run("echo ok", timeout=60).ok
    assert known.read_text() == sshd.known_line() + "\n"
    assert (known.stat().st_mode & 0o777) == 0o600


def test_auth_through_the_ssh_agent(sshd: Sshd, tmp_path: pathlib.Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a deadline, not a speed check
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True,
                       capture_output=True)
        known = tmp_path / "known_agent"
        known.write_text(sshd.known_line() + "\n")
        cfg = tmp_path / "agent_config"  # no IdentityFile: only the agent holds the key
        cfg.write_text(f"Host via-agent\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
                       f"  User root\n  UserKnownHostsFile {known}\n")
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* of whoever runs the tests
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SSHPool(str(cfg)) as pool:
            assert pool("via-agent").run("echo agent", timeout=60).stdout == "agent\n"
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with SSHPool(str(cfg)) as pool, pytest.raises(AuthFailed, match="no keys"):
            pool("via-agent")
    finally:
        agent.kill()
        agent.wait(5)


def test_wrong_client_key_is_auth_failed(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path, key=sshd.wrong_key)
    with SSHPool(cfg) as pool, pytest.raises(AuthFailed) as info:
        pool("cfx-node")
    msg = str(info.value)
    assert f"root@127.0.0.1:{sshd.port}" in msg and str(sshd.wrong_key) in msg
    assert "BEGIN OPENSSH PRIVATE KEY" not in msg


def test_closed_port_is_unreachable_at_once(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    # a refused connection is the answer: no waiting for ConnectTimeout (600 s here) and no
    # retrying until it passes; 120 s is a deadline, not a speed check
    raised: list[BaseException] = []
    with _refusing_port() as port:
        cfg = tmp_path / "closed_config"
        cfg.write_text(f"Host dead\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile "
                       f"{sshd.client_key}\n  ConnectTimeout 600\n")

        def connect() -> None:
            try:
                with SSHPool(str(cfg)) as pool:
                    pool("dead")
            except BaseException as exc:  # noqa: B036 - handed to the test thread
                raised.append(exc)

        caller = threading.Thread(target=connect, daemon=True)
        caller.start()
        caller.join(120)
        assert not caller.is_alive(), "a refused connection waited for the connect timeout"
    assert len(raised) == 1 and isinstance(raised[0], NodeUnreachable), raised
    msg = str(raised[0])
    assert f"127.0.0.1:{port}" in msg and "refused" in msg
    assert msg.startswith("dead:")


def test_a_port_that_never_speaks_ssh_times_out_quietly(tmp_path: pathlib.Path) -> None:
    # In a fresh interpreter (pytest's log capture would hide stray stderr): nothing but our own
    # exception may come out, or it would be printed over the wizard's screen.
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never sends a banner
    try:
        cfg = tmp_path / "silent_config"
        cfg.write_text(f"Host silent\n  HostName 127.0.0.1\n  Port {listener.getsockname()[1]}\n"
                       "  ConnectTimeout 1\n")
        code = (
            "import sys, time\n"
            "from clusterfix_tui.transports.ssh import SSHPool\n"
            "from clusterfix_tui.transports.base import NodeUnreachable\n"
            "try:\n"
            f"    SSHPool({str(cfg)!r}, connect_timeout=600)('silent')\n"
            "except NodeUnreachable as e:\n"
            "    print(e)\n"
            "time.sleep(0.5)\n"
        )
        # the pool's own default here is 600 s: only the config's 1 s ends it within the
        # subprocess deadline (120 s, a deadline, not a speed check)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, check=True, cwd=REPO)
    finally:
        listener.close()
    msg = out.stdout
    assert "handshake" in msg and "within 1s" in msg, msg  # ConnectTimeout from the config
    assert out.stderr == ""


def test_missing_ssh_config_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TransportError, match="does not exist"):
        SSHPool(str(tmp_path / "nowhere"))


def test_node_name_alias_wins_else_the_address(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    with SSHPool(cfg) as pool:
        # cfx-node has a Host entry: its HostName is used, not the (unroutable) address given
        assert pool("cfx-node", address="192.0.2.1").run("true", timeout=60).ok
        # worker-9 has none: the InternalIP given is used, with the Host * defaults
        spec = pool.spec_for("worker-9")
        assert spec.hostname == "worker-9"
        assert pool("worker-9", address="127.0.0.1").run("true", timeout=60).ok
        assert pool.spec_for("worker-9").hostname == "127.0.0.1"
        # later calls by name alone keep the address
        assert pool("worker-9").run("echo again", timeout=60).stdout == "again\n"


def test_proxyjump_through_a_direct_tcpip_channel(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    # one sshd plays jump host and target: the target is named "localhost" (its known_hosts
    # entry is 127.0.0.1's, by HostKeyAlias), since OpenSSH refuses a ProxyJump to the very
    # host:port it is jumping to ("jumphost loop")
    extra = (f"Host behind\n  HostName localhost\n  HostKeyAlias 127.0.0.1\n"
             f"  ProxyJump cfx-node\n"
             f"Host behind2\n  HostName localhost\n  HostKeyAlias 127.0.0.1\n"
             f"  ProxyJump root@127.0.0.1:{sshd.port}\n")
    cfg, _ = write_config(sshd, tmp_path, extra=extra)
    before = sshd.accepted()
    with SSHPool(cfg) as pool:
        res = pool("behind").run("echo $SSH_CONNECTION", timeout=60)
        assert res.ok, res
        # the target's transport runs over a channel of the jump host's connection
        sock = pool.transport("behind").sock
        assert isinstance(sock, paramiko.Channel)
        assert sshd.accepted() - before == 2  # the jump host, then the target through it
        assert pool("behind2").run("true", timeout=60).ok
        assert sshd.accepted() - before == 4


def test_proxyjump_with_an_unknown_jump_host_key(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    extra = ("Host jump\n  HostName localhost\n  HostKeyAlias the-jump-host\n"
             "Host behind\n  HostName 127.0.0.1\n  ProxyJump jump\n")
    cfg, known = write_config(sshd, tmp_path, extra=extra)  # the target's key is known
    with SSHPool(cfg) as pool:
        with pytest.raises(HostKeyUnknown) as info:
            pool("behind")
        assert "the-jump-host" in str(info.value)  # the key to accept is the jump host's
        assert info.value.fingerprint == sshd.keygen_fingerprint()
        pool.accept_host_key(info.value)
        assert pool("behind").run("true", timeout=60).ok
    assert known.read_text().splitlines()[-1].startswith("[the-jump-host]:")


def test_proxyjump_to_a_dead_jump_host_names_it(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    with _refusing_port() as port:
        extra = f"Host behind\n  HostName 127.0.0.1\n  ProxyJump root@127.0.0.1:{port}\n"
        cfg, _ = write_config(sshd, tmp_path, extra=extra)
        with SSHPool(cfg) as pool, pytest.raises(NodeUnreachable) as info:
            pool("behind")
    assert "ProxyJump" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def _connection_children(sshd: Sshd) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(sshd.proc.pid)], capture_output=True, text=True,
                         check=False)
    return [int(p) for p in out.stdout.split()]


def test_dropped_connection_is_an_error_then_reconnects(sshd: Sshd, tmp_path: pathlib.Path) -> None:
    cfg, _ = write_config(sshd, tmp_path)
    with SSHPool(cfg) as pool:
        shell = pool("cfx-node")
        assert shell.run("true", timeout=60).ok
        holder: list = []
        t = threading.Thread(target=lambda: holder.append(shell.run("sleep 20", timeout=30)))
        t.start()
        time.sleep(0.5)
        for pid in _connection_children(sshd):  # the per-connection sshd processes
            os.kill(pid, 9)
        t.join(120)  # a deadline, not a speed check
        assert not t.is_alive()
        res = holder[0]
        assert res.exit_code is None and res.error and "lost" in res.error, res
        again = shell.run("echo back", timeout=60)
        assert again.stdout == "back\n"
        assert pool.connection_count("cfx-node") == 2


def test_wire_command_quotes_the_command() -> None:
    nasty = "echo 'a' \"b\"; $(touch /x) `id` \n next \u00e9"

    def outer(timeout: str) -> str:
        return f'printf "@@CFXPID %s\\n" "$$" >&2; exec {timeout}sh -c "$1"'

    # the command is one argument of its own ("$1"), never re-parsed by the outer shell
    assert shlex.split(wire_command(nasty, user="root", timeout=None)) == [
        "sh", "-c", outer(""), "cfx", nasty]
    assert shlex.split(wire_command(nasty, user="root", timeout=9.5)) == [
        "sh", "-c", outer("timeout -s KILL 11 "), "cfx", nasty]
    assert shlex.split(wire_command(nasty, user="admin", timeout=60)) == [
        "sudo", "-n", "sh", "-c", outer("timeout -s KILL 62 "), "cfx", nasty]
    # and it really runs as given, with the pid line first on stderr
    r = subprocess.run(["sh", "-c", wire_command("printf '%s|' \"$0\" x 'y z'", user="root",
                                                 timeout=5)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == "sh|x|y z|" and r.stderr.startswith("@@CFXPID ")


@pytest.fixture
def throwaway_user(sshd: Sshd):
    for tool in ("sudo", "useradd", "usermod", "userdel"):
        require_tool(tool)
    name = f"cfx{uuid.uuid4().hex[:8]}"
    sudoers = pathlib.Path(f"/etc/sudoers.d/cfx_test_{name}")
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", name], check=True)
    try:
        # "*" is not a locked password (a "!" would make sshd refuse the account without PAM)
        subprocess.run(["usermod", "-p", "*", name], check=True)
        yield name, sudoers
    finally:
        sudoers.unlink(missing_ok=True)
        # sshd's session process for the user may outlive the pool by a moment
        deadline = time.monotonic() + 5
        while subprocess.run(["userdel", name], capture_output=True, check=False).returncode:
            if time.monotonic() > deadline:
                subprocess.run(["pkill", "-KILL", "-u", name], check=False)  # only our user
                time.sleep(0.2)
                subprocess.run(["userdel", name], check=True)
                break
            time.sleep(0.1)


def test_non_root_user_runs_through_sudo(sshd: Sshd, tmp_path: pathlib.Path,
                                         throwaway_user) -> None:
    name, sudoers = throwaway_user
    extra = f"Host as-user\n  HostName 127.0.0.1\n  User {name}\n"
    cfg, _ = write_config(sshd, tmp_path, extra=extra)

    # sudo needs a password: a distinct error, and the real sudo text is what we detect
    sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
    os.chmod(sudoers, 0o440)
    with SSHPool(cfg) as pool:
        with pytest.raises(SudoPasswordRequired) as info:
            pool("as-user")
        assert name in str(info.value)

    # NOPASSWD: commands run as root through sudo -n sh -c
    sudoers.write_text(f"{name} ALL=(ALL) NOPASSWD: ALL\n")
    with SSHPool(cfg) as pool:
        shell = pool("as-user")
        res = shell.run("id -u; echo \"it's $((1+1))\"", timeout=60)
        assert res.stdout == "0\nit's 2\n", res
        # sudo access revoked mid-session: the next command reports it
        sudoers.write_text(f"{name} ALL=(ALL) ALL\n")
        with pytest.raises(SudoPasswordRequired):
            shell.run("true", timeout=60)


def test_sudo_password_detection_on_real_messages() -> None:
    assert is_sudo_password_prompt(1, "sudo: a password is required\n")
    assert is_sudo_password_prompt(1, "sudo: a terminal is required to read the password; "
                                      "either use the -S option to read from standard input\n")
    assert not is_sudo_password_prompt(0, "sudo: a password is required\n")
    assert not is_sudo_password_prompt(1, "grep: a password is required: No such file\n")


def test_no_auto_add_policy_anywhere() -> None:
    offenders = []
    for path in (REPO / "clusterfix_tui").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".sh", ".tcss", ".json", ".md", ".txt"):
            text = path.read_text(errors="replace")
            if re.search(r"AutoAddPolicy|WarningPolicy", text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"host keys must always be verified: {offenders}"


def _count_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait of our SSH reader (ssh._wait) is appended to the returned list."""
    waits: list[float] = []
    real = ssh_module._wait

    def counting(*args: object, **kw: object) -> None:
        waits.append(1.0)
        real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ssh_module, "_wait", counting)
    return waits


def test_a_reader_waiting_for_the_end_is_woken_by_it_not_polled(
        sshd: Sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a line callback the reader sleeps until the exit status (or the close, the
    interrupt, the deadline), draining the channel at most once a WAIT_SLICE: a command that
    runs 3 s costs a few wake-ups, not one every quarter second (12+)."""
    cfg, _ = write_config(sshd, tmp_path)
    waits = _count_waits(monkeypatch)
    with SSHPool(cfg) as pool:
        res = pool("cfx-node").run("echo begun; sleep 3; echo done; exit 4", timeout=60)
    assert res.exit_code == 4 and res.stdout == "begun\ndone\n", res
    assert len(waits) <= 3 / ssh_module.WAIT_SLICE + 3, f"{len(waits)} wake-ups in 3 s"


def test_more_output_than_the_window_is_drained_while_waiting(
        sshd: Sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader sleeps through the output, not past a full window: a node that sends more
    than the channel's window before it exits gets it drained each WAIT_SLICE (else it would
    wait for window space until the deadline)."""
    cfg, _ = write_config(sshd, tmp_path)
    monkeypatch.setattr(ssh_module, "SESSION_WINDOW", 2**16)
    monkeypatch.setattr(ssh_module, "WAIT_SLICE", 0.05)
    with SSHPool(cfg) as pool:
        res = pool("cfx-node").run("head -c 1000000 /dev/zero | tr '\\0' x; exit 6", timeout=120)
    assert res.exit_code == 6 and not res.timed_out, res
    assert res.stdout == "x" * 1_000_000


def test_an_interrupt_wakes_a_reader_that_waits_for_the_end(
        sshd: Sshd, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's interrupt sets the wake event of every command waiting on it: with waits of
    up to a minute between drains, an interrupted `sleep` still returns as interrupted, its
    process group killed on the node, long before the slice or the deadline."""
    cfg, _ = write_config(sshd, tmp_path)
    monkeypatch.setattr(ssh_module, "WAIT_SLICE", 60.0)
    marker = f"700.{os.getpid()}{threading.get_ident() % 1000}"
    with SSHPool(cfg) as pool:
        shell = pool("cfx-node")
        got: list = []
        t = threading.Thread(target=lambda: got.append(shell.run(f"sleep {marker}", timeout=600)))
        t.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and subprocess.run(
                ["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False).returncode:
            time.sleep(0.05)
        time.sleep(0.3)  # the reader is in its wait by now
        pool.interrupt()
        t.join(45)  # a deadline for the test, not a speed bound: the slice is 60 s
        assert not t.is_alive(), "the interrupt did not wake the reader"
    res = got[0]
    assert res.exit_code is None and ssh_module.INTERRUPTED in (res.error or ""), res
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    for _ in range(100):
        if left.returncode == 1:
            break
        time.sleep(0.1)
        left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False)
    assert left.returncode == 1, "the interrupted command survived on the node"
