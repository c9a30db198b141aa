"""SSH to the nodes with paramiko: one verified, authenticated connection per node, reused.

Why not `paramiko.SSHClient`: it hides the known_hosts line of a changed key, cannot tell
"unknown" from "changed" without its policy hooks, and does not do ProxyJump. We drive
`paramiko.Transport` directly:

- the OpenSSH client config is honoured (Host, HostName, User, Port, IdentityFile, IdentitiesOnly,
  ProxyJump, UserKnownHostsFile, GlobalKnownHostsFile, StrictHostKeyChecking, HostKeyAlias,
  ConnectTimeout); a node name is looked up as a Host alias when the config has a non-wildcard
  entry for it, else its InternalIP is used;
- host keys are ALWAYS verified against known_hosts (plain and hashed entries, `[host]:port`):
  an unknown key raises HostKeyUnknown (with the ssh-keygen style SHA256 fingerprint and the line
  to append on accept) unless StrictHostKeyChecking is accept-new/no/off, and a changed key raises
  HostKeyChanged naming the file and line of the old key, whatever the config says; `@revoked`
  keys (and CAs) are refused; a host that only a `@cert-authority` line vouches for is asked for
  its host certificate, which OpenSSH's `ssh-keygen -L` loads (CA signature verified) and we
  check (trusted CA, principal, validity): paramiko itself checks nothing in a host certificate;
- auth: identity files (the config's, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa), then the
  ssh-agent; never passwords;
- a command is sent as `timeout -s KILL <t+2> sh -c '<command>'` (see wire_command), and a
  non-root user's as `sudo -n timeout ... sh -c '<command>'`; sudo wanting a password raises
  SudoPasswordRequired;
- each command is one exec channel on the shared connection (no login shell, no pty); stdout and
  stderr lines are streamed as they arrive; at the timeout the channel is closed and the result
  says timed_out=True, and the node's own `timeout` kills the command's process group.
"""

from __future__ import annotations

import base64
import binascii
import copy
import errno
import functools
import glob
import hashlib
import hmac
import logging
import os
import re
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import paramiko
from paramiko.packet import Packetizer

from clusterfix_tui.core.ports import (
    AuthFailed,
    CommandResult,
    ConnectTimeout,
    HostKey,
    HostKeyChanged,
    HostKeyUnknown,
    LineCallback,
    NodeUnreachable,
    SudoPasswordRequired,
    TransportError,
)
from clusterfix_tui.transports import load_deferred
from clusterfix_tui.transports.limits import MAX_OUTPUT, OUTPUT_TOO_LARGE

# paramiko's transport threads log failures (e.g. "Error reading SSH protocol banner"); with no
# handler configured Python would print them on stderr, over the wizard's screen. Our callers get
# the same failures as exceptions; an application that configures logging still sees them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
# OpenSSH's default MaxSessions is 10: never open more channels than that on one connection.
MAX_CHANNELS_PER_CONNECTION = 8
SUDO_PASSWORD_MARKERS = ("a password is required", "a terminal is required to read the password")
KEEPALIVE_SECONDS = 15
# AEAD first (OpenSSH's defaults, as secure as the CTR+HMAC pairs paramiko prefers): one
# authenticated decryption per packet in C, where CTR+HMAC runs an HMAC and paramiko's pure-Python
# constant-time MAC compare on every packet. The rest of paramiko's list follows, unchanged.
# A command's channel may hold this much output we have not read yet (paramiko's default is
# 2 MiB): a reader that drains it once a second (WAIT_SLICE) never slows a node's output below
# 64 MiB/s. Only what the node sends is buffered (and all of it is kept anyway).
SESSION_WINDOW = 64 * 2**20
# A reader waiting for a command's end wakes at least this often (to drain the channel), and at
# once for its exit status, its channel's close, the pool's interrupt or the deadline. A reader
# that streams lines (on_line) polls the channel every STREAM_SLICE for output.
WAIT_SLICE = 1.0
STREAM_SLICE = 0.25
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class _Packetizer(Packetizer):
    """paramiko's Packetizer with the handshake deadline kept as a time, not as a thread.

    paramiko starts a `threading.Timer` per connection for the handshake timeout (a thread
    created and torn down for every node, ~0.1-0.5 ms of our CPU each) and cancels it again
    after every message it handles (an Event set and a lock each time, for as long as the
    connection lives). The deadline is only ever read where paramiko reads the timer's flag
    (`handshake_timed_out`, in its read loop, on every read and every idle wake of the socket),
    so comparing the clock there gives the same answer at the same moments: before
    `start_handshake` never timed out, after `complete_handshake` never again, in between
    timed out once `timeout` seconds have passed since the (first) start."""

    _handshake_deadline: float | None = None
    _handshake_done = False

    def start_handshake(self, timeout: float) -> None:
        if self._handshake_deadline is None:  # like paramiko: the first start counts
            self._handshake_deadline = time.monotonic() + float(timeout)

    def handshake_timed_out(self) -> bool:
        if self._handshake_deadline is None or self._handshake_done:
            return False
        return time.monotonic() >= self._handshake_deadline

    def complete_handshake(self) -> None:
        if self._handshake_deadline is not None:
            self._handshake_done = True


class _Transport(paramiko.Transport):
    """paramiko's Transport with its reader thread waking once a second when idle, not ten times
    (its socket timeout only serves to notice a close: every open connection cost ~1 ms of our
    CPU per second doing nothing). Keepalives (15 s) and handshake deadlines are unaffected
    beyond that second of granularity. Its packetizer keeps the handshake deadline without a
    timer thread (_Packetizer)."""

    _active_check_timeout = 1.0

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # the same object and state, with the three handshake methods above (no thread started
        # yet: paramiko starts its timer only when the transport thread begins the handshake)
        self.packetizer.__class__ = _Packetizer

    def _filter_algorithm(self, type_: str) -> tuple[str, ...]:
        """paramiko's preferred_* lists without the algorithms disabled_algorithms names: the
        same tuple, built only when something is disabled (asked ~16 times per handshake)."""
        if (self.disabled_algorithms or {}).get(type_):
            return tuple(super()._filter_algorithm(type_))  # type: ignore[misc]
        return tuple(getattr(self, f"_preferred_{type_}"))

    def _parse_debug(self, m: paramiko.Message) -> None:
        """SSH_MSG_DEBUG (sshd sends one per authorized_keys line with options, e.g. `from=` or
        `restrict`): paramiko formats it byte by byte in Python only to log it at DEBUG, which
        is off unless an application turned it on. Nothing is read from it either way."""
        if self.logger.isEnabledFor(logging.DEBUG):
            super()._parse_debug(m)  # type: ignore[misc]
REMOTE_KILL_GRACE = 2  # seconds after our deadline before the node kills a timed-out command


def fingerprint(key: paramiko.PKey) -> str:
    """The fingerprint as `ssh-keygen -lf` prints it: SHA256:<base64 without padding>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name a host is recorded under in known_hosts ("[host]:port" off port 22)."""
    return host if port == 22 else f"[{host}]:{port}"


def wire_command(command: str, *, user: str, timeout: float | None) -> str:
    """What is sent on the exec channel for `command`.

    A remote `timeout -s KILL` (coreutils and busybox both have it) kills the command's whole
    process group shortly after our own deadline: closing an SSH channel without a pty does not
    stop a command that never writes, and sshd only honours "signal" requests for unprivileged
    sessions. Non-root users go through `sudo -n` first, so the kill happens as root.

    The outer `sh` first prints its pid (PID_MARKER, on stderr; the reader strips it) and then
    execs `timeout`, which leads its own process group with that pid: an interrupted session
    kills exactly that group (`kill -KILL -- -PID`, see kill_command), nothing found by pattern.
    The command itself is one argument ("$1"), quoted once.
    """
    limit = (f"timeout -s KILL {int(timeout) + REMOTE_KILL_GRACE} "
             if timeout is not None and timeout > 0 else "")
    script = f'printf "{PID_MARKER} %s\\n" "$$" >&2; exec {limit}sh -c "$1"'
    inner = f"sh -c {shlex.quote(script)} cfx {shlex.quote(command)}"
    return inner if user == "root" else "sudo -n " + inner


PID_MARKER = "@@CFXPID"


def kill_command(pid: int, *, user: str) -> str:
    """Kill the process group a wire command started (its pid is the group's id)."""
    pid = int(pid)
    cmd = f"kill -KILL -- -{pid} 2>/dev/null || kill -KILL {pid}"
    return cmd if user == "root" else f"sudo -n sh -c {shlex.quote(cmd)}"


def is_sudo_password_prompt(exit_code: int | None, stderr: str) -> bool:
    """True when `sudo -n` refused because it needs a password (sudo's own words, 1.8 - 1.9)."""
    if exit_code == 0:
        return False
    first = [ln for ln in stderr.splitlines() if ln.startswith("sudo:")]
    return any(marker in ln for ln in first for marker in SUDO_PASSWORD_MARKERS)


# --------------------------------------------------------------------------------------------
# known_hosts


@dataclass(frozen=True)
class KnownHostEntry:
    path: str
    line_no: int  # 1-based
    key_type: str
    key_b64: str
    marker: str = ""  # "", "@revoked" or "@cert-authority"


def _host_pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            _, _, salt_b64, hash_b64 = pattern.split("|", 3)
            salt = base64.b64decode(salt_b64)
            want = base64.b64decode(hash_b64)
        except (ValueError, binascii.Error):
            return False
        got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(got, want)
    return _glob(pattern.lower(), name.lower())


def _glob(pattern: str, name: str) -> bool:
    """OpenSSH patterns: only `*` and `?` are special (a `[host]:port` is literal)."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == name
    return _glob_regex(pattern).fullmatch(name) is not None


@functools.lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A pattern's regex, built once (every host is matched against every Host line of the ssh
    config and of known_hosts)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL)


def _hosts_field_matches(hosts_field: str, name: str) -> bool:
    matched = False
    for pattern in hosts_field.split(","):
        if not pattern:
            continue
        if pattern.startswith("!"):
            if _host_pattern_matches(pattern[1:], name):
                return False
        elif _host_pattern_matches(pattern, name):
            matched = True
    return matched


def _parse_known_hosts(path: str, lines: list[str]) -> list[tuple[str, KnownHostEntry]]:
    """(hosts field, entry) for every usable line of one known_hosts file, in file order."""
    out: list[tuple[str, KnownHostEntry]] = []
    for no, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        marker = ""
        if parts[0].startswith("@"):
            marker, parts = parts[0], parts[1:]
            if marker not in ("@revoked", "@cert-authority"):
                continue
        if len(parts) < 3:
            continue
        out.append((parts[0], KnownHostEntry(path, no, parts[1], parts[2], marker)))
    return out


def lookup_known_host(paths: list[str], name: str) -> list[KnownHostEntry]:
    """Every known_hosts entry for `name`, in file order. @revoked and @cert-authority entries
    come back marked (a CA line trusts host certificates it signed: verify_host_certificate).
    Reads the files on every call; a pool uses KnownHosts, which reads each file once."""
    found: list[KnownHostEntry] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        found.extend(e for hosts, e in _parse_known_hosts(path, lines)
                     if _hosts_field_matches(hosts, name))
    return found


class _KnownHostsFile:
    """One parsed known_hosts file. Entries whose hosts field is only plain names (the usual
    `name,ip key` lines) are indexed by name; the others (hashed `|1|`, wildcards, negations)
    are matched one by one, exactly as lookup_known_host does."""

    def __init__(self, path: str, lines: list[str]):
        self.by_name: dict[str, list[int]] = {}
        self.scan: list[int] = []  # entries that need _hosts_field_matches
        self.entries: list[tuple[str, KnownHostEntry]] = _parse_known_hosts(path, lines)
        for i, (hosts, _e) in enumerate(self.entries):
            patterns = [p for p in hosts.split(",") if p]
            if any(p.startswith(("!", "|")) or "*" in p or "?" in p for p in patterns):
                self.scan.append(i)
                continue
            for p in dict.fromkeys(p.lower() for p in patterns):
                self.by_name.setdefault(p, []).append(i)

    def lookup(self, name: str) -> list[KnownHostEntry]:
        hits = set(self.by_name.get(name.lower(), ()))
        hits.update(i for i in self.scan if _hosts_field_matches(self.entries[i][0], name))
        return [self.entries[i][1] for i in sorted(hits)]


class KnownHosts:
    """known_hosts files parsed once (per process: PROCESS_KNOWN_HOSTS), not once per connection
    (with 1,000 nodes in one file, re-reading and matching every line for every node was
    quadratic).

    A lookup always answers what the file holds now: a file whose stat (device, inode, size,
    mtime, ctime) changed is read again (an accepted key appended, `ssh-keygen -R`), and so is
    one modified less than RACY_SECONDS before it was last read, whose bytes are then compared
    with the parsed ones (a same-size edit within one tick of the file system's clock leaves the
    stat unchanged: git's "racily clean" index entries)."""

    RACY_SECONDS = 2.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> (stat stamp, stamp trusted alone, bytes, parsed)
        self._files: dict[str, tuple[tuple[int, ...], bool, bytes, _KnownHostsFile]] = {}

    @staticmethod
    def _stamp(st: os.stat_result) -> tuple[int, ...]:
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _file(self, path: str) -> _KnownHostsFile | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        with self._lock:
            hit = self._files.get(path)
        if hit is not None and hit[1] and hit[0] == self._stamp(st):
            return hit[3]
        try:
            with open(path, "rb") as fh:
                now = time.time()
                st = os.fstat(fh.fileno())
                data = fh.read()
        except OSError:
            return None
        trusted = now - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > self.RACY_SECONDS
        if hit is not None and hit[2] == data:
            parsed = hit[3]
        else:
            text = data.decode("utf-8", errors="replace")
            parsed = _KnownHostsFile(path, text.splitlines())
        with self._lock:
            self._files[path] = (self._stamp(st), trusted, data, parsed)
        return parsed

    def lookup(self, paths: list[str], name: str) -> list[KnownHostEntry]:
        """lookup_known_host(paths, name), from the parsed files."""
        found: list[KnownHostEntry] = []
        for path in paths:
            parsed = self._file(path)
            if parsed is not None:
                found.extend(parsed.lookup(name))
        return found


# Every pool of this process reads known_hosts through this one cache: a runtime built again
# (the wizard reconnecting, a command's second runtime) does not parse a 1,000-line file again.
# Public data only; each lookup still answers what the file holds now (KnownHosts).
PROCESS_KNOWN_HOSTS = KnownHosts()

_RSA_FAMILY = ("ssh-rsa", "rsa-sha2-256", "rsa-sha2-512")
CERT_SUFFIX = "-cert-v01@openssh.com"
# the key types whose OpenSSH certificates paramiko (3.2+) can negotiate as a host key
_CERT_CAPABLE = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256")


def _keygen_fingerprint(key_type: str, key_b64: str) -> str | None:
    try:
        blob = base64.b64decode(key_b64)
    except (ValueError, binascii.Error):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _parse_cert_time(text: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()  # ssh-keygen -L prints local time
    except ValueError:
        return None


def verify_host_certificate(cert_type: str, cert_b64: str, names: list[str],
                            cas: list[KnownHostEntry], revoked: list[KnownHostEntry],
                            *, now: float | None = None) -> str | None:
    """Check an OpenSSH host certificate the way `ssh` does for a `@cert-authority` line: None
    when it is valid, else why not.

    paramiko negotiates certificate host keys but never checks them (no CA signature, principal
    or validity check: paramiko issues #771 and #2277), so OpenSSH's own `ssh-keygen -L` reads the
    certificate: it refuses to load one whose CA signature does not verify, and prints the signing
    CA, the principals and the validity interval, which are checked here: a host certificate,
    signed by a CA trusted for this host and not @revoked, naming the host among its principals
    (an empty list names every host, as in OpenSSH), valid now."""
    import shutil
    import subprocess
    import tempfile

    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        return ("paramiko cannot verify host certificates and ssh-keygen (OpenSSH) is not "
                "installed to do it")
    with tempfile.TemporaryDirectory(prefix="cfx-hostcert-") as tmp:
        path = os.path.join(tmp, "host-cert.pub")
        with open(path, "w", encoding="ascii") as fh:
            fh.write(f"{cert_type} {cert_b64}\n")
        try:
            r = subprocess.run([keygen, "-L", "-f", path], capture_output=True, text=True,
                               timeout=15, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"ssh-keygen -L could not read the certificate: {exc}"
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return f"the certificate does not load (its CA signature does not verify?): {why}"
    fields: dict[str, str] = {}
    principals: list[str] = []
    in_principals = False
    for raw in r.stdout.splitlines()[1:]:
        line = raw.strip()
        key, sep, value = line.partition(":")
        if sep and key in ("Type", "Public key", "Signing CA", "Key ID", "Serial", "Valid",
                           "Principals", "Critical Options", "Extensions"):
            fields[key] = value.strip()
            in_principals = key == "Principals"
            continue
        if in_principals and line:
            principals.append(line)
    if not fields.get("Type", "").endswith("host certificate"):
        return f"not a host certificate ({fields.get('Type', '?')})"
    signer = fields.get("Signing CA", "").split()
    signer_fp = signer[1] if len(signer) >= 2 else ""
    trusted = {_keygen_fingerprint(e.key_type, e.key_b64) for e in cas}
    bad = {_keygen_fingerprint(e.key_type, e.key_b64) for e in revoked}
    if signer_fp in bad:
        return f"its signing CA {signer_fp} is @revoked"
    if signer_fp not in trusted:
        return (f"signed by {signer_fp or '?'}, which no @cert-authority line for "
                f"{names[0]} trusts")
    if principals and principals != ["(none)"] and not set(principals) & set(names):
        return f"its principals ({', '.join(principals)}) do not name {' or '.join(names)}"
    valid = fields.get("Valid", "")
    when = time.time() if now is None else now
    if valid != "forever":
        start = end = None
        m = re.fullmatch(r"from (\S+) to (\S+)", valid)
        if m:
            start, end = _parse_cert_time(m.group(1)), _parse_cert_time(m.group(2))
        elif valid.startswith("after "):
            start = _parse_cert_time(valid[6:])
        elif valid.startswith("before "):
            end = _parse_cert_time(valid[7:])
        else:
            return f"its validity ({valid!r}) cannot be read"
        if (start is not None and when < start) or (end is not None and when >= end):
            return f"it is not valid now (valid {valid})"
    return None


def _same_family(a: str, b: str) -> bool:
    return a == b or (a in _RSA_FAMILY and b in _RSA_FAMILY)


# --------------------------------------------------------------------------------------------
# config


def _public_blob(private_path: str) -> str | None:
    """The base64 public key of an identity file, from its `.pub` (an encrypted private key's
    public half is readable without the passphrase)."""
    try:
        with open(private_path + ".pub", encoding="utf-8") as fh:
            parts = fh.read().split()
    except OSError:
        return None
    return parts[1] if len(parts) >= 2 else None


@dataclass
class HostSpec:
    """What one connection needs, resolved from the ssh config."""

    name: str  # what the user calls it: node name or jump spec
    hostname: str
    port: int
    user: str
    identity_files: list[str]
    identities_only: bool
    known_hosts: list[str]  # user files; the first one gets accepted keys
    global_known_hosts: list[str]
    strict: str  # "yes" | "ask" | "accept-new" | "no"
    host_key_alias: str | None
    connect_timeout: float
    jump: list[str] = field(default_factory=list)  # ProxyJump hops, first hop first
    proxy_command: str | None = None  # ProxyCommand (tokens not yet expanded)
    certificate_files: list[str] = field(default_factory=list)  # CertificateFile
    server_alive_interval: int | None = None  # ServerAliveInterval (seconds)
    identities_configured: bool = True  # False: identity_files are OpenSSH's defaults

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def known_name(self) -> str:
        return known_hosts_name(self.host_key_alias or self.hostname, self.port)


def _local_user() -> str:
    """getpass.getuser(), with its password-database fallback looked up once per uid (it ran
    ~4 times per connection, 0.1 ms each)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        user = os.environ.get(name)
        if user:
            return user
    return _user_of_uid(os.getuid())


@functools.lru_cache(maxsize=8)
def _user_of_uid(uid: int) -> str:
    import pwd

    return pwd.getpwuid(uid)[0]


def _expand_path(path: str, spec_user: str, hostname: str) -> str:
    home = os.path.expanduser("~")
    out = path.replace("%d", home).replace("%u", _local_user())
    out = out.replace("%r", spec_user).replace("%h", hostname).replace("%%", "%")
    return os.path.expanduser(out)


def _parse_jump(value: str) -> tuple[str | None, str, int | None]:
    """user@host:port (or ssh://user@host:port) -> (user, host, port)."""
    value = value.removeprefix("ssh://")
    user = None
    if "@" in value:
        user, value = value.rsplit("@", 1)
    port = None
    if value.startswith("["):  # [v6addr]:port
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return user, host, port
    if value.count(":") == 1:
        host, _, p = value.partition(":")
        if p.isdigit():
            return user, host, int(p)
    return user, value, port


# -- sharing `ssh -G` between hosts the config cannot tell apart --------------------------------
# `ssh -G` costs ~7 ms of CPU per host (OpenSSH's start-up, whatever the config says). When the
# config files that ssh reads (and everything they Include) have no Match, no Canonicalize*, no
# %-token or ${ENV} anywhere, OpenSSH's result for a host is a function of the sequence of config
# lines that apply to it (the lines of the Host blocks whose patterns it matches) and of its name.
# Hosts whose sequences are equal, up to the HostName values, are resolved by running `ssh -G` for
# two of them and checking that the two outputs differ exactly where the name or the HostName
# goes; every other host of that group gets the same output with its own name and HostName. Any
# other config, name or outcome: `ssh -G` per host, as before.
_CLEAN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CLEAN_HOSTNAME = re.compile(r"[a-z0-9][a-z0-9._:-]*")
_CONF_LINE = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)(?:\s*=\s*|\s+)(.*?)\s*")
_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH


class _Unshareable(Exception):
    """The config files cannot be read as plain Host blocks: resolve every host by itself."""


def _conf_entries(path: str, *, system: bool, depth: int = 0) -> list[tuple[Any, ...]]:
    """One config file as ("host", [(negated, pattern)]), ("opt", keyword, text, value) and
    ("include", [entries of each included file]) entries, in file order."""
    if depth > _INCLUDE_DEPTH:
        raise _Unshareable("Include nested too deep")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unshareable(f"{path}: {exc}") from exc
    out: list[tuple[Any, ...]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "%" in line or "$" in line:
            raise _Unshareable("a %-token or ${ENV}")
        m = _CONF_LINE.fullmatch(line)
        if m is None:
            raise _Unshareable(f"line {line!r}")
        kw, value = m.group(1).lower(), m.group(2)
        if kw == "match" or kw.startswith("canonical"):
            raise _Unshareable(kw)
        if kw in ("host", "include"):
            if '"' in value or "'" in value or "\\" in value:
                raise _Unshareable(f"quoted {kw}")
            args = value.split()
            for i, a in enumerate(args):
                if a.startswith("#"):
                    args = args[:i]
                    break
            if not args:
                raise _Unshareable(f"empty {kw}")
            if kw == "host":
                pats = [(a.startswith("!"), a[1:] if a.startswith("!") else a) for a in args]
                if any(not p or p != p.lower() for _neg, p in pats):
                    raise _Unshareable("a Host pattern with capitals")
                out.append(("host", pats))
                continue
            files: list[list[tuple[Any, ...]]] = []
            for a in args:
                a = os.path.expanduser(a)
                if not os.path.isabs(a):
                    a = os.path.join("/etc/ssh" if system else os.path.expanduser("~/.ssh"), a)
                for inc in sorted(glob.glob(a)):
                    files.append(_conf_entries(inc, system=system, depth=depth + 1))
            out.append(("include", files))
            continue
        out.append(("opt", kw, line, value))
    return out


def _applied(entries: list[tuple[Any, ...]], name: str, seq: list[str],
             hostnames: list[str]) -> None:
    """OpenSSH's readconf for `name`: the lines that apply (HostName values set aside)."""
    active = True
    for e in entries:
        if e[0] == "host":
            active = False
            for negated, pattern in e[1]:
                if _glob(pattern, name):
                    if negated:
                        active = False
                        break
                    active = True
        elif not active:
            continue
        elif e[0] == "include":
            for sub in e[1]:  # each included file starts active and leaves it as it was
                seq.append("\0include")  # (equal sequences: equal in every file, any order)
                _applied(sub, name, seq, hostnames)
                seq.append("\0end")
        elif e[1] == "hostname":
            seq.append("hostname")
            hostnames.append(e[3])
        else:
            seq.append(e[2])


class _Group:
    """Hosts that share one config line sequence: two samples, then everyone else."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, str, dict[str, list[str]]]] = []  # (name, hostname, opts)
        self.names: dict[str, threading.Event] = {}  # the two samples: set when resolved
        self.done = threading.Event()
        self.template: tuple[dict[str, list[str]], set[str]] | None = None

    def verify(self) -> None:
        """Sets the template when the two samples differ exactly where names go."""
        (a, ha, oa), (b, hb, ob) = self.samples[:2]
        if a == b or oa.get("hostname") != [ha] or ob.get("hostname") != [hb] or set(oa) != set(ob):
            return
        named = set()
        for k in oa:
            if k != "hostname" and oa[k] != ob[k]:
                if oa[k] != [a] or ob[k] != [b]:
                    return
                named.add(k)
        self.template = (oa, named)

    def build(self, name: str, hostname: str) -> dict[str, list[str]]:
        assert self.template is not None
        base, named = self.template
        out = dict(base)  # the value lists are shared: nothing changes a resolved host's lists
        out["hostname"] = [hostname]
        for k in named:
            out[k] = [name]
        return out


class _Config:
    def __init__(self, path: str | None, connect_timeout: float):
        self.connect_timeout = connect_timeout
        self.explicit = path is not None
        if path is None:
            default = os.path.expanduser("~/.ssh/config")
            path = default if os.path.exists(default) else None
        self.path = path
        if path is None:
            self.config = paramiko.SSHConfig()
            return
        if not os.path.isfile(path):
            raise TransportError(f"ssh config {path} does not exist (or is not a file)")
        try:
            self.config = paramiko.SSHConfig.from_path(path)
        except (OSError, paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
            raise TransportError(f"ssh config {path} cannot be read: {exc}") from exc

    def has_host(self, name: str) -> bool:
        """Whether a Host entry other than a bare wildcard matches `name`."""
        for entry in getattr(self.config, "_config", []):
            patterns = [p for p in entry.get("host", []) if p]
            if not patterns or all(p == "*" for p in patterns):
                continue
            positive = [p for p in patterns if not p.startswith("!")]
            if any(_glob(p[1:], name) for p in patterns if p.startswith("!")):
                continue
            if any(p != "*" and _glob(p, name) for p in positive):
                return True
        return False

    def resolve(self, name: str, lookup: str, *, user: str | None = None,
                port: int | None = None, hostname: str | None = None) -> HostSpec:
        load_deferred("invoke")  # paramiko's lookup runs `Match exec` with it (transports/)
        opts = self.config.lookup(lookup)
        host = hostname or opts.get("hostname", lookup)
        spec_user = user or opts.get("user") or _local_user()
        try:
            spec_port = port or int(opts.get("port", 22))
        except ValueError as exc:
            raise TransportError(f"{name}: bad Port in ssh config: {opts.get('port')!r}") from exc
        raw_identities: str | list[str] = opts.get("identityfile") or []
        if isinstance(raw_identities, str):
            raw_identities = [raw_identities]
        identities = [_expand_path(p, spec_user, host) for p in raw_identities]
        known = opts.get("userknownhostsfile")
        known_list = (
            [_expand_path(p, spec_user, host) for p in known.split()]
            if known else [os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS]
        )
        global_known = opts.get("globalknownhostsfile")
        global_list = (
            [_expand_path(p, spec_user, host) for p in global_known.split()]
            if global_known else list(DEFAULT_GLOBAL_KNOWN_HOSTS)
        )
        strict = str(opts.get("stricthostkeychecking", "ask")).lower()
        if strict in ("off",):
            strict = "no"
        if strict in ("on", "true"):
            strict = "yes"
        timeout = self.connect_timeout
        if "connecttimeout" in opts:
            try:
                timeout = float(opts["connecttimeout"])
            except ValueError:
                pass
        jump_value = opts.get("proxyjump")
        jumps = [] if not jump_value or jump_value == "none" else jump_value.split(",")
        return HostSpec(
            name=name,
            hostname=host,
            port=spec_port,
            user=spec_user,
            identity_files=identities,
            identities_only=str(opts.get("identitiesonly", "no")).lower() == "yes",
            known_hosts=known_list,
            global_known_hosts=global_list,
            strict=strict,
            host_key_alias=opts.get("hostkeyalias"),
            connect_timeout=timeout,
            jump=[j.strip() for j in jumps if j.strip()],
        )

    def resolve_jump(self, hop: str) -> HostSpec:
        user, host, port = _parse_jump(hop)
        spec = self.resolve(hop, host, user=user, port=port)
        return spec


class _OpenSSHConfig(_Config):
    """The ssh config as OpenSSH itself reads it: every host is resolved by `ssh -G`, so Include,
    Match (host, user, exec, ...), canonicalisation, token expansion and the system-wide
    /etc/ssh/ssh_config are exactly what `ssh` would use. Used whenever the OpenSSH client is
    installed (the paramiko parser above is the fallback): an admin's `ssh node-1` and this tool
    then reach the same host, as the same user, through the same hops. Hosts that the config
    files cannot tell apart (same lines apply, up to HostName; no Match, tokens or
    canonicalisation anywhere) share two `ssh -G` runs, checked against each other (see _Group)."""

    def __init__(self, path: str | None, connect_timeout: float, ssh: str):
        super().__init__(path, connect_timeout)
        self.ssh = ssh
        self._cache: dict[tuple[str, str | None, int | None], dict[str, list[str]]] = {}
        self._lock = threading.Lock()
        self._sentinel = f"cfx-no-such-host-{os.getpid()}.invalid"
        self._any_host: dict[str, list[str]] | None = None  # what the config says of any host
        self._has: dict[str, bool] = {}
        self.runs = 0  # `ssh -G` processes started
        self._entries: list[list[tuple[Any, ...]]] | None = None  # None: not read yet
        self._shareable: bool | None = None
        self._groups: dict[tuple[Any, ...], _Group] = {}

    def _files(self) -> list[tuple[str, bool]]:
        """The config files `ssh -G` reads here: (path, system-wide?). Only a config the user
        named is read alone (`ssh -F`); else, as plain `ssh`, ~/.ssh/config then the system's."""
        if self.explicit and self.path is not None:
            return [(self.path, False)]
        out = [(os.path.expanduser("~/.ssh/config"), False), ("/etc/ssh/ssh_config", True)]
        return [(p, system) for p, system in out if os.path.exists(p)]

    def _share_key(self, lookup: str, user: str | None, port: int | None
                   ) -> tuple[tuple[Any, ...], str] | None:
        """(group key, the host's HostName) when `lookup` may share `ssh -G` with others."""
        with self._lock:
            if self._shareable is None:
                try:
                    self._entries = [_conf_entries(p, system=s) for p, s in self._files()]
                    self._shareable = True
                except _Unshareable:
                    self._shareable = False
            if not self._shareable or self._entries is None:
                return None
        if not _CLEAN_NAME.fullmatch(lookup):
            return None
        seq: list[str] = []
        hostnames: list[str] = []
        for entries in self._entries:
            _applied(entries, lookup, seq, hostnames)
        hostname = hostnames[0] if hostnames else lookup
        if not _CLEAN_HOSTNAME.fullmatch(hostname):
            return None
        return (tuple(seq), user, port), hostname

    def _g(self, lookup: str, user: str | None = None, port: int | None = None
           ) -> dict[str, list[str]]:
        key = (lookup, user, port)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        shared = self._share_key(lookup, user, port)
        if shared is None:
            opts = self._run_g(lookup, user, port)
        else:
            gkey, hostname = shared
            with self._lock:
                group = self._groups.setdefault(gkey, _Group())
                running = group.names.get(lookup)  # this very name is a sample under way
                sample = running is None and len(group.names) < 2
                if sample:
                    running = group.names[lookup] = threading.Event()
            if not sample and running is not None:
                running.wait()
                with self._lock:
                    hit = self._cache.get(key)
                opts = hit if hit is not None else self._run_g(lookup, user, port)
            elif sample:
                assert running is not None
                try:
                    opts = self._run_g(lookup, user, port)
                except BaseException:
                    group.done.set()  # the others resolve by themselves
                    running.set()
                    raise
                with self._lock:
                    self._cache[key] = opts
                    group.samples.append((lookup, hostname, opts))
                    if len(group.samples) == 2:
                        group.verify()
                        group.done.set()
                running.set()
            else:
                group.done.wait()
                if group.template is not None:
                    opts = group.build(lookup, hostname)
                else:
                    opts = self._run_g(lookup, user, port)
        with self._lock:
            self._cache[key] = opts
        return opts

    def _run_g(self, lookup: str, user: str | None = None, port: int | None = None
               ) -> dict[str, list[str]]:
        import subprocess

        with self._lock:
            self.runs += 1
        argv = [self.ssh, "-G"]
        if self.explicit and self.path is not None:  # else what plain `ssh` reads: ~/.ssh/config
            argv += ["-F", self.path]                # and /etc/ssh/ssh_config (-F skips it)
        if user:
            argv += ["-l", user]
        if port:
            argv += ["-p", str(port)]
        argv += ["--", lookup]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=15,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TransportError(f"ssh -G {lookup}: {exc}") from exc
        if r.returncode != 0:
            why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
            raise TransportError(f"ssh config{' ' + self.path if self.path else ''}: {why}")
        opts: dict[str, list[str]] = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition(" ")
            if k:
                opts.setdefault(k.lower(), []).append(v.strip())
        return opts

    def has_host(self, name: str) -> bool:
        """Whether the config says anything about `name` that it does not say about any host
        (a Host or Match entry beyond the wildcard)."""
        with self._lock:
            hit = self._has.get(name)
        if hit is not None:
            return hit

        def norm(opts: dict[str, list[str]], host: str) -> dict[str, list[str]]:
            return {k: [x.replace(host, "%h") for x in v] for k, v in opts.items()}

        def differs(opts: dict[str, list[str]], host: str, other: dict[str, list[str]]) -> bool:
            """norm(opts, host) != other, stopping at the first difference."""
            if opts.keys() != other.keys():
                return True
            for k, v in opts.items():
                w = other[k]
                if len(v) != len(w) or any(x.replace(host, "%h") != y
                                           for x, y in zip(v, w, strict=True)):
                    return True
            return False

        mine = self._g(name)
        if self._any_host is None:
            self._any_host = norm(self._g(self._sentinel), self._sentinel)
        answer = differs(mine, name, self._any_host)
        with self._lock:
            self._has[name] = answer
        return answer

    def resolve(self, name: str, lookup: str, *, user: str | None = None,
                port: int | None = None, hostname: str | None = None) -> HostSpec:
        o = self._g(lookup, user, port)
        d = self._g(self._sentinel)

        def one(k: str, default: str | None = None) -> str | None:
            v = o.get(k)
            return v[0] if v else default

        host = hostname or one("hostname", lookup) or lookup
        spec_user = one("user") or _local_user()
        try:
            spec_port = int(one("port", "22") or 22)
        except ValueError as exc:
            raise TransportError(f"{name}: bad Port in ssh config: {one('port')!r}") from exc
        identities = [_expand_path(p, spec_user, host) for p in o.get("identityfile", [])]
        configured = o.get("identityfile", []) != d.get("identityfile", [])
        known = (one("userknownhostsfile") or "").split()
        global_known = (one("globalknownhostsfile") or "").split()
        strict = {"true": "yes", "false": "no"}.get(one("stricthostkeychecking", "ask") or "ask",
                                                    one("stricthostkeychecking", "ask") or "ask")
        timeout = self.connect_timeout
        ct = one("connecttimeout")
        if ct and ct != "none":
            try:
                timeout = float(ct)
            except ValueError:
                pass
        jump_value = one("proxyjump")
        jumps = [] if not jump_value or jump_value == "none" else jump_value.split(",")
        proxy = one("proxycommand")
        alive = one("serveraliveinterval")
        return HostSpec(
            name=name, hostname=host, port=spec_port, user=spec_user,
            identity_files=identities,
            identities_only=(one("identitiesonly", "no") or "no").lower() == "yes",
            known_hosts=[_expand_path(p, spec_user, host) for p in known] or
            [os.path.expanduser(p) for p in DEFAULT_KNOWN_HOSTS],
            global_known_hosts=[_expand_path(p, spec_user, host) for p in global_known] or
            list(DEFAULT_GLOBAL_KNOWN_HOSTS),
            strict=strict, host_key_alias=one("hostkeyalias"), connect_timeout=timeout,
            jump=[j.strip() for j in jumps if j.strip()],
            proxy_command=None if not proxy or proxy == "none" else proxy,
            certificate_files=[_expand_path(p, spec_user, host)
                               for p in o.get("certificatefile", [])],
            server_alive_interval=int(alive) if alive and alive.isdigit() and int(alive) else None,
            identities_configured=configured,
        )


def make_config(path: str | None, connect_timeout: float) -> _Config:
    """OpenSSH's own resolution (`ssh -G`) when the client is installed, else paramiko's parser
    (Host, HostName, User, Port, IdentityFile, ProxyJump ... without Include/Match)."""
    import shutil

    ssh = shutil.which("ssh")
    if ssh and os.environ.get("CLUSTERFIX_SSH_G", "1") != "0":
        return _OpenSSHConfig(path, connect_timeout, ssh)
    return _Config(path, connect_timeout)


def expand_proxy_command(command: str, spec: HostSpec) -> str:
    """OpenSSH's ProxyCommand tokens: %h host, %p port, %r user, %n the name as given, %%."""
    out, i = [], 0
    while i < len(command):
        c = command[i]
        if c == "%" and i + 1 < len(command):
            t = command[i + 1]
            out.append({"h": spec.hostname, "p": str(spec.port), "r": spec.user,
                        "n": spec.name, "%": "%"}.get(t, "%" + t))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# connections


class _Interrupt(threading.Event):
    """A pool's interrupt flag. Setting it also wakes every command of the pool that waits for
    its end (_exec registers a wake event here while it waits), so the interrupt is acted on at
    once, not at the waiter's next poll."""

    def __init__(self) -> None:
        super().__init__()
        self._wakes: set[threading.Event] = set()
        self._wakes_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._wakes_lock:
            wakes = list(self._wakes)
        for wake in wakes:
            wake.set()

    def watch(self, wake: threading.Event) -> None:
        with self._wakes_lock:
            self._wakes.add(wake)
        if self.is_set():  # set before we were registered
            wake.set()

    def unwatch(self, wake: threading.Event) -> None:
        with self._wakes_lock:
            self._wakes.discard(wake)


class _StatusEvent(threading.Event):
    """A channel's status_event (paramiko sets it when the exit status comes and when the
    channel closes, and waits on it in recv_exit_status) that also sets `wake`: what our reader
    waits on, which the pool's interrupt sets too. An Event like paramiko's own, swapped in
    before the command is sent (no exit status can come before that; a close is carried over)."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


def _watch_status(chan: paramiko.Channel) -> threading.Event:
    """Swap a _StatusEvent into a channel not yet started; returns its wake event."""
    wake = threading.Event()
    status = _StatusEvent(wake)
    with chan.lock:  # paramiko sets status_event on a close with this lock held
        if chan.closed or chan.status_event.is_set():
            status.set()
        chan.status_event = status
    return wake


class _Conn:
    """One authenticated transport plus what was learned connecting it."""

    def __init__(self, spec: HostSpec, transport: paramiko.Transport, connect_ms: float,
                 interrupt: threading.Event | None = None):
        self.spec = spec
        self.transport = transport
        self.connect_ms = connect_ms
        self.channels = threading.BoundedSemaphore(MAX_CHANNELS_PER_CONNECTION)
        self.interrupt = interrupt if interrupt is not None else _Interrupt()

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - closing a dead transport may raise anything
            pass


class _Slot:
    """Pool entry for one key: a lock held while connecting so concurrent callers connect once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: _Conn | None = None
        self.address: str | None = None
        self.connects = 0


class SSHPool:
    """ShellFactory over SSH: `pool(node, address)` gives the node's reused shell.

    A node keeps the address given on first use, so later `pool(node)` calls (e.g. from the
    action runner, which knows only node names) reach the same host.
    """

    def __init__(self, ssh_config: str | None = None, *, connect_timeout: float = 5.0,
                 command_timeout: float = 60.0,
                 expected_host_keys: dict[str, set[str]] | None = None,
                 max_output: int = MAX_OUTPUT):
        """expected_host_keys: node name (or host) -> SHA256 fingerprints the admin verified out
        of band (`--accept-host-keys FILE`): an unknown key with one of them is added to
        known_hosts; any other unknown key is still refused; a changed key always is."""
        self._expected_keys = dict(expected_host_keys or {})
        self._config = make_config(ssh_config, connect_timeout)
        self.ssh_config = self._config.path
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_output = max_output  # bytes one command may send (MAX_OUTPUT)
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._shells: dict[str, SSHNodeShell] = {}
        self._known_lock = threading.Lock()
        self._known_hosts = PROCESS_KNOWN_HOSTS  # parsed once per process (stat-checked on use)
        self._identities: dict[str, tuple[bytes, paramiko.PKey]] = {}  # path -> (bytes, key)
        self._closed = False
        self._interrupt = _Interrupt()

    def interrupt(self) -> None:
        """Stop: every running command's remote process group is killed (its command returns
        an "interrupted" error) and no new command starts. For Ctrl+C / SIGTERM in `fix`."""
        self._interrupt.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    # -- ShellFactory
    def __call__(self, node: str, address: str | None = None) -> SSHNodeShell:
        slot = self._slot(node)
        if address:
            slot.address = address
        self._connection(node)  # connect now: the caller learns connect/auth/host-key problems
        with self._lock:
            shell = self._shells.get(node)
            if shell is None:
                shell = self._shells[node] = SSHNodeShell(self, node)
            return shell

    def spec_for(self, node: str) -> HostSpec:
        """The resolved connection parameters of a node (for reports and the UI)."""
        slot = self._slot(node)
        if self._config.has_host(node) or not slot.address:
            return self._config.resolve(node, node)
        return self._config.resolve(node, slot.address)

    def node_identity(self, node: str) -> dict[str, Any]:
        """Who we reached for `node` (for the journal's node identity): the address and user
        used, the jump hosts, and the host key the server presented on this connection."""
        conn = self._connection(node)
        key = conn.transport.get_remote_server_key()
        return {"transport": "ssh", "address": conn.spec.hostname, "port": conn.spec.port,
                "user": conn.spec.user, "jump": list(conn.spec.jump),
                "host_key": f"{key.get_name()} {fingerprint(key)}"}

    def connection_count(self, node: str) -> int:
        """How many times the pool connected to `node` (reuse makes this 1)."""
        return self._slot(node).connects

    def transport(self, node: str) -> paramiko.Transport:
        return self._connection(node).transport

    def accept_host_key(self, exc: HostKeyUnknown) -> None:
        """Trust the key the user saw (exc.fingerprint): append exc.key_line to exc.known_hosts."""
        self._append_known_host(exc.known_hosts, exc.key_line)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            slots = list(self._slots.values())
            self._slots.clear()
            self._shells.clear()
        for slot in slots:
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals
    def _slot(self, key: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            return slot

    def _connection(self, node: str) -> _Conn:
        if self._closed:
            raise TransportError("the SSH pool is closed")
        slot = self._slot(node)
        conn = slot.conn
        if conn is not None and conn.alive:
            return conn
        with slot.lock:
            if slot.conn is not None and slot.conn.alive:
                return slot.conn
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
            spec = self.spec_for(node)
            slot.conn = self._connect(spec)
            slot.connects += 1
            return slot.conn

    def _jump_connection(self, hops: list[str]) -> _Conn:
        """The connection to the last of `hops`, itself reached through the earlier ones."""
        key = "\x00jump:" + ",".join(hops)
        slot = self._slot(key)
        conn = slot.conn
        if conn is not None and conn.alive:
            return conn
        with slot.lock:
            if slot.conn is not None and slot.conn.alive:
                return slot.conn
            spec = self._config.resolve_jump(hops[-1])
            spec.jump = hops[:-1]
            spec.proxy_command = None  # a hop is reached through the hops before it
            slot.conn = self._connect(spec, hop=True)
            slot.connects += 1
            return slot.conn

    def _open_socket(self, spec: HostSpec) -> Any:
        where = f"{spec.name}: cannot connect to {spec.address}"
        if spec.proxy_command and not spec.jump:
            command = expand_proxy_command(spec.proxy_command, spec)
            try:  # (SSM, IAP, cloudflared, `ssh -W`): its stdin/stdout are the connection
                return paramiko.ProxyCommand(command)
            except (paramiko.SSHException, OSError) as exc:
                raise NodeUnreachable(f"{where}: ProxyCommand {command!r} failed: {exc}") from exc
        if spec.jump:
            try:
                jump = self._jump_connection(spec.jump)
            except HostKeyUnknown:
                raise  # about the jump host, which is what the user must accept
            except TransportError as exc:
                raise type(exc)(f"{spec.name}: via ProxyJump {','.join(spec.jump)}: {exc}") from exc
            try:
                return jump.transport.open_channel(
                    "direct-tcpip", (spec.hostname, spec.port), ("127.0.0.1", 0),
                    timeout=spec.connect_timeout,
                )
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise NodeUnreachable(
                    f"{where} through jump host {jump.spec.name} ({jump.spec.address}): "
                    f"{exc or type(exc).__name__}"
                ) from exc
        try:
            sock = socket.create_connection((spec.hostname, spec.port),
                                            timeout=spec.connect_timeout)
            # small request/response exchanges: without this, Nagle + delayed ACK add ~40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except socket.gaierror as exc:
            raise NodeUnreachable(f"{where}: cannot resolve {spec.hostname}: {exc.strerror}") from exc
        except TimeoutError as exc:
            raise ConnectTimeout(f"{where}: timed out after {spec.connect_timeout:g}s") from exc
        except ConnectionRefusedError as exc:
            raise NodeUnreachable(f"{where}: connection refused (no sshd listening?)") from exc
        except OSError as exc:
            why = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            raise NodeUnreachable(f"{where}: {why}") from exc

    def _connect(self, spec: HostSpec, *, hop: bool = False) -> _Conn:
        """hop=True: a ProxyJump host. It only carries the connection, so it gets no sudo check
        (a bastion's user normally has no sudo, and needs none)."""
        start = time.monotonic()
        sock = self._open_socket(spec)
        transport = _Transport(sock)
        try:
            self._prefer_known_key_types(transport, spec)
            opts = transport.get_security_options()
            offered = list(opts.ciphers)
            opts.ciphers = tuple([c for c in PREFERRED_CIPHERS if c in offered]
                                 + [c for c in offered if c not in PREFERRED_CIPHERS])
            transport.banner_timeout = spec.connect_timeout
            transport.auth_timeout = max(spec.connect_timeout, 10.0)
            try:
                transport.start_client(timeout=spec.connect_timeout)
                server_key = transport.get_remote_server_key()  # raises if not negotiated
            except (paramiko.SSHException, EOFError, OSError) as exc:
                why = str(exc) or type(exc).__name__
                if "No existing session" in why or "protocol banner" in why:
                    why = f"no SSH handshake within {spec.connect_timeout:g}s (is it an sshd?)"
                raise NodeUnreachable(
                    f"{spec.name}: SSH handshake with {spec.address} failed: {why}"
                ) from exc
            self._verify_host_key(spec, server_key, transport.host_key_type)
            self._authenticate(spec, transport)
            transport.set_keepalive(spec.server_alive_interval or KEEPALIVE_SECONDS)
        except BaseException:
            transport.close()
            raise
        conn = _Conn(spec, transport, (time.monotonic() - start) * 1000, self._interrupt)
        if spec.user != "root" and not hop:
            self._check_sudo(conn)
        return conn

    def _all_known_hosts(self, spec: HostSpec) -> list[str]:
        return spec.known_hosts + spec.global_known_hosts

    def _prefer_known_key_types(self, transport: paramiko.Transport, spec: HostSpec) -> None:
        """Like OpenSSH, ask first for the key types we already know for this host, so a host
        with several keys is checked against the one we have (not reported as unknown)."""
        found = self._known_hosts.lookup(self._all_known_hosts(spec), spec.known_name)
        entries = [e for e in found if not e.marker]
        opts = transport.get_security_options()
        current = list(opts.key_types)
        if not entries and any(e.marker == "@cert-authority" for e in found):
            # only a CA vouches for this host: ask for its certificate first (as `ssh` does)
            certs = [t + CERT_SUFFIX for t in current if t in _CERT_CAPABLE]
            opts.key_types = tuple(certs + current)
            return
        if not entries:
            return
        known: list[str] = []
        for entry in entries:
            family = _RSA_FAMILY if entry.key_type in _RSA_FAMILY else (entry.key_type,)
            known.extend(t for t in current if t in family and t not in known)
        if known:
            opts.key_types = tuple(known + [t for t in current if t not in known])

    def _verify_host_key(self, spec: HostSpec, key: paramiko.PKey,
                         negotiated: str | None = None) -> None:
        name = spec.known_name
        key_type = key.get_name()
        key_b64 = key.get_base64()
        entries = self._known_hosts.lookup(self._all_known_hosts(spec), name)
        if negotiated and negotiated.endswith(CERT_SUFFIX) and key.public_blob is not None:
            if self._host_certificate_trusted(spec, key, negotiated, entries):
                return
            key_type = key_type.removesuffix(CERT_SUFFIX)
        for revoked in (e for e in entries if e.marker == "@revoked" and e.key_b64 == key_b64):
            raise HostKeyChanged(
                f"{spec.name}: the host key of {name} ({spec.address}), {key_type} "
                f"{fingerprint(key)}, is REVOKED by {revoked.path} line {revoked.line_no}. Refused.",
                key=HostKey(key_type, fingerprint(key), spec.name, spec.address),
                known_hosts=revoked.path, line_no=revoked.line_no,
            )
        entries = [e for e in entries if not e.marker]
        if any(_same_family(e.key_type, key_type) and e.key_b64 == key_b64 for e in entries):
            return
        changed = [e for e in entries if _same_family(e.key_type, key_type)]
        if changed:
            old = changed[0]
            raise HostKeyChanged(
                f"{spec.name}: HOST KEY CHANGED for {name} ({spec.address}): the server now "
                f"offers {key_type} {fingerprint(key)}, but {old.path} line {old.line_no} holds "
                f"a different key. Refused: this may be a man-in-the-middle. If the node was "
                f"reinstalled, remove that line (ssh-keygen -R {shlex.quote(name)} "
                f"-f {shlex.quote(old.path)}) and connect again.",
                key=HostKey(key_type, fingerprint(key), spec.name, spec.address),
                known_hosts=old.path, line_no=old.line_no,
            )
        target = spec.known_hosts[0]
        line = f"{name} {key_type} {key_b64}"
        if spec.strict in ("accept-new", "no"):
            self._append_known_host(target, line)
            return
        expected = self._expected_keys.get(spec.name) or self._expected_keys.get(spec.hostname)
        if expected:
            if fingerprint(key) in expected:  # pinned out of band (--accept-host-keys)
                self._append_known_host(target, line)
                return
            raise HostKeyUnknown(
                name if name == spec.name else f"{spec.name} ({name})", key_type,
                fingerprint(key), target, line, node=spec.name, address=spec.address,
                note=f"NOT the fingerprint expected for it ({', '.join(sorted(expected))}): "
                     f"not accepted")
        raise HostKeyUnknown(name if name == spec.name else f"{spec.name} ({name})",
                             key_type, fingerprint(key), target, line,
                             node=spec.name, address=spec.address)

    def _host_certificate_trusted(self, spec: HostSpec, key: paramiko.PKey, negotiated: str,
                                  entries: list[KnownHostEntry]) -> bool:
        """The server presented a host certificate. True: a @cert-authority line for this host
        vouches for it (checked by verify_host_certificate). False: no CA line names this host,
        so its plain key is judged against known_hosts as usual. A CA line with a certificate
        that does not pass is refused, whatever else known_hosts holds for the host."""
        cas = [e for e in entries if e.marker == "@cert-authority"]
        if not cas:
            return False
        blob = key.public_blob
        assert blob is not None
        host = spec.host_key_alias or spec.hostname
        revoked = [e for e in entries if e.marker == "@revoked"]
        if any(e.key_b64 == key.get_base64() for e in revoked):
            return False  # the plain key's @revoked line refuses it below
        why = verify_host_certificate(blob.key_type, base64.b64encode(blob.key_blob).decode(),
                                      [host], cas, revoked)
        if why is None:
            return True
        raise HostKeyChanged(
            f"{spec.name}: the host certificate of {spec.known_name} ({spec.address}), "
            f"{negotiated} for {key.get_name().removesuffix(CERT_SUFFIX)} {fingerprint(key)}, is "
            f"NOT accepted: {why}. Refused ({cas[0].path} line {cas[0].line_no} trusts a "
            f"certificate authority for this host).",
            key=HostKey(negotiated, fingerprint(key), spec.name, spec.address),
            known_hosts=cas[0].path, line_no=cas[0].line_no,
        )

    def _append_known_host(self, path: str, line: str) -> None:
        if path == os.devnull:
            return
        with self._known_lock:
            directory = os.path.dirname(path)
            if directory:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            needs_newline = False
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as fh:
                    if line.strip().encode() in (ln.strip() for ln in fh.read().splitlines()):
                        return  # already there (several nodes behind one newly accepted jump host)
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(("\n" if needs_newline else "") + line.rstrip("\n") + "\n")

    def _authenticate(self, spec: HostSpec, transport: paramiko.Transport) -> None:
        tried: list[str] = []
        notes: list[str] = []
        files = spec.identity_files or [
            os.path.expanduser(p) for p in DEFAULT_IDENTITIES
            if os.path.exists(os.path.expanduser(p))
        ]
        wanted_blobs: set[str] = set()  # public keys of the configured files (IdentitiesOnly)
        for path in files:
            if not os.path.exists(path):
                if spec.identity_files and spec.identities_configured:
                    notes.append(f"{path} does not exist")
                continue
            pub = _public_blob(path)
            if pub:
                wanted_blobs.add(pub)
            try:
                key = self._identity(path)
            except (paramiko.PasswordRequiredException, TypeError):
                # (cryptography raises TypeError for an encrypted OpenSSH-format key)
                notes.append(f"{path} is encrypted (its agent copy is used when loaded)")
                continue
            except (paramiko.SSHException, OSError, ValueError) as exc:
                notes.append(f"{path} unreadable: {type(exc).__name__}")
                continue
            wanted_blobs.add(key.get_base64())
            self._load_certificate(spec, path, key, notes)
            tried.append(path + (" (with certificate)" if key.public_blob else ""))
            if self._try_key(spec, transport, key):
                return
        agent = None
        try:
            agent = paramiko.Agent()
            agent_keys = agent.get_keys()
        except (paramiko.SSHException, OSError):
            agent_keys = ()
        try:
            for i, key in enumerate(agent_keys):
                # IdentitiesOnly: the agent still signs for the configured files' keys (an
                # encrypted IdentityFile is used through its agent copy), never for others
                if spec.identities_only and key.get_base64() not in wanted_blobs:
                    continue
                tried.append(f"agent key {i + 1} ({key.get_name()})")
                if self._try_key(spec, transport, key):
                    return
        finally:
            if agent is not None:
                agent.close()
        what = ", ".join(tried) if tried else "no keys (no identity file, no ssh-agent keys)"
        extra = f"; {'; '.join(notes)}" if notes else ""
        raise AuthFailed(
            f"{spec.name}: {spec.user}@{spec.address} refused our public keys (tried: {what}{extra})"
        )

    def _identity(self, path: str) -> paramiko.PKey:
        """The private key in `path`, loaded once per pool for as long as the file's bytes stay
        the same: loading an RSA key makes the cryptography library check it (~0.13 s of CPU
        for 3072 bits, twice per load), which per connection was minutes at 1,000 nodes. Each
        caller gets its own copy, so the certificate _load_certificate attaches to it (read
        afresh every time: short-lived certificates get renewed) stays with that connection."""
        with open(path, "rb") as fh:
            data = fh.read()
        with self._known_lock:
            hit = self._identities.get(path)
        if hit is None or hit[0] != data:
            hit = (data, paramiko.PKey.from_path(path))
            with self._known_lock:
                self._identities[path] = hit
        key = copy.copy(hit[1])
        key.public_blob = None
        return key

    @staticmethod
    def _load_certificate(spec: HostSpec, path: str, key: paramiko.PKey, notes: list[str]) -> None:
        """A user certificate for this key: CertificateFile entries, else `<file>-cert.pub`
        (OpenSSH's default). The first one whose public key is this key's is attached."""
        for cert in [*spec.certificate_files, path + "-cert.pub"]:
            if not os.path.exists(cert):
                continue
            try:
                key.load_certificate(cert)
                return
            except (ValueError, OSError, paramiko.SSHException):
                continue  # another key's certificate: try the next

    @staticmethod
    def _try_key(spec: HostSpec, transport: paramiko.Transport, key: paramiko.PKey) -> bool:
        try:
            transport.auth_publickey(spec.user, key)
        except paramiko.BadAuthenticationType as exc:
            raise AuthFailed(
                f"{spec.name}: {spec.user}@{spec.address} does not accept public keys "
                f"(allowed: {', '.join(exc.allowed_types) or 'none'})"
            ) from exc
        except paramiko.AuthenticationException:
            return False
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NodeUnreachable(
                f"{spec.name}: connection to {spec.address} lost during authentication: {exc}"
            ) from exc
        return transport.is_authenticated()

    def _check_sudo(self, conn: _Conn) -> None:
        result = _exec(conn, "sudo -n true", timeout=conn.spec.connect_timeout + 5)
        if is_sudo_password_prompt(result.exit_code, result.stderr):
            conn.close()
            raise SudoPasswordRequired(
                f"{conn.spec.name}: user {conn.spec.user} needs a password for sudo; run as root "
                f"or allow NOPASSWD sudo for {conn.spec.user} on this node"
            )
        if result.exit_code != 0:
            conn.close()
            why = (result.stderr.strip() or result.error or "").splitlines()[:1]
            raise AuthFailed(
                f"{conn.spec.name}: {conn.spec.user} cannot use sudo -n: "
                f"{why[0] if why else f'exit {result.exit_code}'}"
            )


# --------------------------------------------------------------------------------------------
# one command on one channel


# a line streamed to on_line longer than this is passed on cut (the whole output is still kept)
LINE_CAP = 64 * 1024


class _Lines:
    def __init__(self, stream: str, on_line: LineCallback | None, pid_marker: bool = False):
        self.stream = stream
        self.on_line = on_line
        self.raw = bytearray()
        self.pending = b""
        self.pid: int | None = None
        self._head: bytes | None = b"" if pid_marker else None  # until the marker line is seen
        self.skip_line = False

    def feed(self, data: bytes) -> None:
        if self._head is not None:  # the wire command's first stderr line: its pid
            self._head += data
            marker = PID_MARKER.encode() + b" "
            if b"\n" not in self._head and len(self._head) < 64 and marker.startswith(
                    self._head[:len(marker)]):
                return
            first, sep, rest = self._head.partition(b"\n")
            self._head = None
            if sep and first.startswith(marker) and first[len(marker):].strip().isdigit():
                self.pid = int(first[len(marker):].strip())
                data = rest
            else:
                data = first + sep + rest
            if not data:
                return
        self.raw += data
        if self.on_line is None:
            return
        if len(self.pending) > LINE_CAP:  # one line this long is not a line anyone reads
            self.on_line(self.stream, self.pending[:LINE_CAP].decode("utf-8", "replace")
                         + f" [... line cut at {LINE_CAP} bytes]")
            self.pending = b""
            self.skip_line = True
        if self.skip_line:  # the rest of a cut line is not passed on
            head, sep, data = data.partition(b"\n")
            if not sep:
                return
            self.skip_line = False
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            self.on_line(self.stream, line.decode("utf-8", "replace").rstrip("\r"))

    def finish(self) -> str:
        if self._head:  # ended before a whole first line: it was output, not the marker
            head, self._head = self._head, None
            self.feed(head)
        if self.on_line is not None and self.pending:
            self.on_line(self.stream, self.pending.decode("utf-8", "replace").rstrip("\r"))
            self.pending = b""
        return self.raw.decode("utf-8", "replace")


def _exec(conn: _Conn, command: str, *, timeout: float, on_line: LineCallback | None = None,
          stdin: bytes | None = None, pid_marker: bool = False,
          max_output: int = MAX_OUTPUT) -> CommandResult:
    start = time.monotonic()
    deadline = start + timeout
    out, err = _Lines("stdout", on_line), _Lines("stderr", on_line, pid_marker)
    if conn.interrupt.is_set():
        return CommandResult(exit_code=None, error=INTERRUPTED + " before it started")

    def result(**kw: Any) -> CommandResult:
        return CommandResult(stdout=out.finish(), stderr=err.finish(),
                             duration=time.monotonic() - start, **kw)

    if not conn.channels.acquire(timeout=max(timeout, 0.001)):
        return result(exit_code=None, timed_out=True,
                      error="timed out waiting for a free SSH channel")
    try:
        try:
            chan = conn.transport.open_session(window_size=SESSION_WINDOW,
                                               timeout=min(timeout, 10.0))
            wake = _watch_status(chan)
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if "administratively prohibited" not in str(exc):
                conn.close()  # a session that cannot be opened is a dead connection: reconnect
            return result(exit_code=None,
                          error=f"{conn.spec.name}: cannot start the command: "
                                f"{exc or type(exc).__name__}")
        watch = getattr(conn.interrupt, "watch", None)
        if watch is not None:
            watch(wake)
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            def room() -> int:  # read at most one byte past the cap: then we know
                return min(65536, max_output + 1 - len(out.raw) - len(err.raw))

            while True:
                while chan.recv_ready() and room() > 0:
                    out.feed(chan.recv(room()))
                while chan.recv_stderr_ready() and room() > 0:
                    err.feed(chan.recv_stderr(room()))
                if room() <= 0:
                    # a hostile or broken node: stop reading, close the channel, kill the
                    # command on the node; what was read is returned, never as complete
                    if err.pid is None and chan.recv_stderr_ready():  # its pid, to kill it
                        err.feed(chan.recv_stderr(256))
                    chan.close()
                    killed = _kill_remote(conn, err.pid)
                    mib = max_output / 2**20
                    return result(exit_code=None, error=OUTPUT_TOO_LARGE.format(
                        mib=f"{mib:g}") + f"; {killed}")
                finished = chan.exit_status_ready() and chan.eof_received
                if (finished and not (chan.recv_ready() or chan.recv_stderr_ready())) or (
                    chan.closed or not conn.transport.is_active()
                ):
                    while chan.recv_ready() and room() > 0:
                        out.feed(chan.recv(room()))
                    while chan.recv_stderr_ready() and room() > 0:
                        err.feed(chan.recv_stderr(room()))
                    if room() <= 0:  # the last of it came now
                        return result(exit_code=None, error=OUTPUT_TOO_LARGE.format(
                            mib=f"{max_output / 2**20:g}") + "; the command had ended")
                    # paramiko leaves -1 when no exit-status came (lost connection, exit-signal)
                    status = chan.recv_exit_status() if chan.exit_status_ready() else -1
                    if status >= 0:
                        return result(exit_code=status)
                    if not conn.transport.is_active():
                        return result(exit_code=None,
                                      error=f"{conn.spec.name}: connection to "
                                            f"{conn.spec.address} lost while the command ran")
                    return result(exit_code=None,
                                  error=f"{conn.spec.name}: the command ended without an exit "
                                        f"status (killed by a signal?)")
                if conn.interrupt.is_set():
                    killed = _kill_remote(conn, err.pid)
                    return result(exit_code=None, error=f"{INTERRUPTED}: {killed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return result(exit_code=None, timed_out=True,
                                  error=None)
                _wait(chan, remaining, streaming=on_line is not None, wake=wake)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            return result(exit_code=None,
                          error=f"{conn.spec.name}: connection to {conn.spec.address} "
                                f"lost while the command ran: {exc or type(exc).__name__}")
        finally:
            unwatch = getattr(conn.interrupt, "unwatch", None)
            if unwatch is not None:
                unwatch(wake)
            try:
                chan.close()
            except Exception:  # noqa: BLE001
                pass
    finally:
        conn.channels.release()


INTERRUPTED = "interrupted by the user"


def _wait(chan: paramiko.Channel, seconds: float, *, streaming: bool = True,
          wake: threading.Event | None = None) -> None:
    """Sleep until the channel has something for us, or for `seconds` at most (and at most
    WAIT_SLICE / STREAM_SLICE: see below).

    streaming (a caller wants each line as it comes): wake on any output, polling every
    STREAM_SLICE. Otherwise wake only for the exit status (or the channel's close) and read
    everything then: a facts script writes its output in ~150 small pieces, each its own SSH
    packet, and waking this thread for each cost ~0.3 ms of our CPU (the pieces wait in
    paramiko's buffer instead; the channel's window, SESSION_WINDOW, is large enough for any
    output in WAIT_SLICE). `wake` (_watch_status): set by the exit status, the close and the
    pool's interrupt, so this waits up to WAIT_SLICE, not a quarter second: a reader polled
    4 times a second for as long as its node's script ran (~16 wake-ups and ~1 ms of our CPU
    per node when 30 scripts took 4 s), and an interrupt is now seen at once.

    Once EOF came, paramiko keeps the channel's fileno() readable for good, so a select()
    would return at once until the exit status arrives (a busy loop that burnt our CPU for as
    long as the node took to reap the command): from then on, wait on the exit status itself.
    An exit status before EOF (the output still coming) is waited out with select()."""
    if chan.eof_received or not (streaming or chan.status_event.is_set()):
        if wake is not None:
            wake.wait(max(0.0, min(seconds, WAIT_SLICE)))
            wake.clear()  # the caller reads the channel's state next: nothing set is missed
        else:  # set by the exit status and by the channel's close
            chan.status_event.wait(max(0.0, min(seconds, STREAM_SLICE)))
    else:
        select.select([chan], [], [], max(0.0, min(seconds, STREAM_SLICE)))


def _kill_remote(conn: _Conn, pid: int | None) -> str:
    """Kill an interrupted command's process group on the node, over a channel of its own."""
    if pid is None:
        return "its process id never came back; the node's own timeout kills it"
    try:
        chan = conn.transport.open_session(timeout=5.0)
        try:
            chan.exec_command(kill_command(pid, user=conn.spec.user))
            chan.shutdown_write()
            deadline = time.monotonic() + 5
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                _wait(chan, 0.2)
            rc = chan.recv_exit_status() if chan.exit_status_ready() else None
        finally:
            chan.close()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        return f"could not kill process group {pid} on the node: {exc}"
    if rc == 0:
        return f"the command's process group {pid} was killed on the node"
    return f"kill of process group {pid} on the node returned {rc} (already gone?)"


class SSHNodeShell:
    """NodeShell for one node; every run() uses the pool's connection (reconnecting if lost)."""

    def __init__(self, pool: SSHPool, node: str):
        self.pool = pool
        self.node = node

    def __repr__(self) -> str:
        return f"SSHNodeShell({self.node!r})"

    def run(self, command: str, *, timeout: float | None = None,
            on_line: LineCallback | None = None, stdin: bytes | None = None) -> CommandResult:
        conn = self.pool._connection(self.node)  # raises TransportError if it cannot connect
        limit = self.pool.command_timeout if timeout is None else timeout
        wire = wire_command(command, user=conn.spec.user, timeout=limit)
        res = _exec(conn, wire, timeout=limit, on_line=on_line, stdin=stdin, pid_marker=True,
                    max_output=self.pool.max_output)
        if res.error is not None and not conn.alive:
            conn.close()  # the next run() reconnects
        if conn.spec.user != "root" and is_sudo_password_prompt(res.exit_code, res.stderr):
            raise SudoPasswordRequired(
                f"{self.node}: user {conn.spec.user} needs a password for sudo"
            )
        return res

    def close(self) -> None:
        """Shells share the pool's connection; closing the pool closes it."""


def read_expected_host_keys(path: str) -> dict[str, set[str]]:
    """`--accept-host-keys FILE`: one key a line, `NODE [KEYTYPE] SHA256:...` (`#` comments).
    Raises TransportError for a line that is not that (a typo must not pin nothing silently)."""
    out: dict[str, set[str]] = {}
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise TransportError(f"--accept-host-keys {path}: {exc.strerror or exc}") from exc
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        fp = parts[-1]
        if len(parts) not in (2, 3) or not fp.startswith("SHA256:") or len(fp) < 20:
            raise TransportError(f"--accept-host-keys {path} line {n}: expected "
                                 f"'NODE [KEYTYPE] SHA256:...', got {raw.strip()[:80]!r}")
        out.setdefault(parts[0], set()).add(fp)
    return out
