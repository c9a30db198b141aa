"""Lab nodes as Linux network namespaces: the bridge, veths, anchors, sshd and pod namespaces.

Plain functions over names and paths; every name that goes into a command is passed as an argv
item (no shell), or shlex-quoted when a shell is unavoidable. Nothing here finds things by
pattern: callers pass exact names and pids they recorded.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import json
import os
import random
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

LAB_STATE_ROOT = Path("/var/lib/clusterfix-lab")
BRIDGE_NET = "10.213.{k}.0/24"
HERE = Path(__file__).resolve().parent
NODE_INIT = HERE / "node_init.sh"
POD_SERVER = HERE / "pod_server.py"
SSHD = "/usr/sbin/sshd"


class NodeError(RuntimeError):
    pass


def run(
    argv: list[str], *, input: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        argv, input=input, capture_output=True, text=True, timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and r.returncode != 0:
        raise NodeError(f"{shlex.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def ip_batch(netns: str | None, lines: Iterable[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run many `ip` commands in one process (`ip -batch`), optionally inside a named netns."""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    text = "\n".join(lines) + "\n"
    return run(argv, input=text, check=check, timeout=60)


def ip_json(netns: str | None, *args: str) -> list[dict]:
    argv = ["ip", "-j"] + (["-n", netns] if netns else []) + list(args)
    out = run(argv).stdout.strip()
    return json.loads(out) if out else []


# -- the lab bridge ------------------------------------------------------------------------------

@contextlib.contextmanager
def subnet_lock(timeout: float = 120.0):
    """Serialise bridge subnet choice between labs started at the same time on this machine.

    An abstract unix socket is the lock: bound by one process at a time, released by the kernel
    when its holder exits, and no file is left behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind("\0clusterfix-lab-subnet-lock")
            break
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                sock.close()
                raise NodeError(f"cannot take the lab subnet lock: {e}") from e
            time.sleep(0.02)
    try:
        yield
    finally:
        sock.close()


def used_bridge_subnets() -> set[int]:
    """Third octets K for which something on this machine already uses 10.213.K.0/24."""
    lab16 = ipaddress.ip_network("10.213.0.0/16")
    used: set[int] = set()
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for link in ip_json(None, "-4", "addr", "show"):
        for a in link.get("addr_info", []):
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(f"{a['local']}/{a.get('prefixlen', 32)}", strict=False))
    for r in ip_json(None, "-4", "route", "show", "table", "all"):
        dst = r.get("dst", "")
        if dst in ("default", "") or not dst[0].isdigit():
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    for net in nets:
        if not net.overlaps(lab16):
            continue
        if net.prefixlen <= 16:
            return set(range(256))
        for k in range(256):
            if net.overlaps(ipaddress.ip_network(BRIDGE_NET.format(k=k))):
                used.add(k)
    return used


def pick_bridge_subnet(used: set[int] | None = None) -> int:
    """Call with subnet_lock() held, and create the bridge before releasing it."""
    used = used_bridge_subnets() if used is None else used
    free = [k for k in range(1, 255) if k not in used]
    if not free:
        raise NodeError("no free 10.213.K.0/24 subnet for the lab bridge on this machine")
    return random.choice(free)


def create_bridge(name: str, address: str, prefix: int = 24) -> None:
    ip_batch(None, [
        f"link add {name} type bridge",
        f"link set {name} type bridge stp_state 0 forward_delay 0",
        f"addr add {address}/{prefix} dev {name}",
        f"link set {name} up",
    ])
    # The host's own firewall stays out of the lab's bridged traffic (when br_netfilter is loaded
    # on the host, bridged frames would otherwise cross the host's iptables FORWARD chain).
    ip_batch(None, [f"link set {name} type bridge nf_call_iptables 0 nf_call_ip6tables 0 "
                    "nf_call_arptables 0"], check=False)


def link_exists(name: str, netns: str | None = None) -> bool:
    if netns is None and "/" not in name and name not in (".", ".."):
        return os.path.exists(f"/sys/class/net/{name}")  # this process lives in the root netns
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return run(argv, check=False).returncode == 0


def delete_link(name: str) -> bool:
    if not link_exists(name):
        return False
    run(["ip", "link", "del", "dev", name], check=False)
    return True


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def add_netns(name: str) -> None:
    run(["ip", "netns", "add", name])


def delete_netns(name: str) -> bool:
    if not netns_exists(name):
        return False
    run(["ip", "netns", "del", name], check=False)
    return True


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


# -- processes -----------------------------------------------------------------------------------

def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def pid_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pid_netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def kill_pid(pid: int | None, *, marker: str | None = None, timeout: float = 3.0) -> bool:
    """SIGTERM then SIGKILL one recorded pid; `marker` must appear in its cmdline (pid reuse)."""
    if not pid or not pid_alive(pid):
        return False
    if marker and marker not in pid_cmdline(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.02)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)
    return True


def kill_pids(pids: list[int], timeout: float = 3.0) -> list[int]:
    """SIGTERM all, wait for all, SIGKILL what is left; returns the pids signalled."""
    sent = []
    for pid in dict.fromkeys(pids):
        if pid and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                sent.append(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in sent):
        for p in sent:
            _reap(p)
        time.sleep(0.02)
    for p in sent:
        if pid_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    # a killed process is gone only once the kernel has torn it down (its memory, and for a node's
    # anchor the node's whole mount namespace): with a hundred nodes on a loaded machine that
    # takes seconds, so the wait grows with the number of processes
    deadline = time.monotonic() + max(5.0, 0.1 * len(sent))
    while time.monotonic() < deadline and any(pid_alive(p) for p in sent):
        for p in sent:
            _reap(p)
        time.sleep(0.02)
    return sent


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def spawn(argv: list[str], log_path: Path | None = None) -> subprocess.Popen:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


# -- node files ----------------------------------------------------------------------------------

def keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at path / path.pub; returns the public key line."""
    for p in (path, path.with_name(path.name + ".pub")):
        if p.exists():
            p.unlink()
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


SSHD_CONFIG = """\
# sshd of lab node {name} (clusterfix-tui lab {labid})
Port 22
ListenAddress {ip}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def prepare_node_dir(node_dir: Path, *, name: str, labid: str, ip: str, authorized_keys: Path | str,
                     ssh_user: str | None = None, allow_from: str | None = None,
                     host_ca: str | None = None) -> str:
    """Create the per-node dirs the anchor mounts, the host key and sshd_config; returns the host
    public key line.

    ssh_user (`lab up --ssh-user`, `--bastion`): only that user may log in (AllowUsers), root
    never (PermitRootLogin no); authorized_keys is then a path inside the node (/run/...), as
    sshd reads it as that user. allow_from (`--bastion`): logins are accepted only from that
    address (AllowUsers USER@ADDR): a direct connection from anywhere else is refused at auth and
    logged, so "no node reached directly" is what the node's sshd log shows.

    host_ca (`lab up --host-ca CA_KEY`): the new host key is signed by that CA private key for the
    principals `ip,name` and sshd serves the certificate (HostCertificate), so a client that
    trusts only `@cert-authority * CA_PUB` accepts the node."""
    for sub in ("run-flannel", "alt-upper", "alt-work", "log", "backups", "root", "etc-upper", "etc-work",
                "files"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(node_dir / "root", 0o700)
    host_key = node_dir / "ssh_host_ed25519_key"
    pub = keygen(host_key, f"root@{name}")
    text = SSHD_CONFIG.format(name=name, labid=labid, ip=ip, host_key=host_key,
                              authorized_keys=authorized_keys)
    if host_ca:
        run(["ssh-keygen", "-q", "-s", str(host_ca), "-I", f"cfx-lab-{labid}-{name}", "-h", "-n",
             f"{ip},{name}", "-V", "-5m:+30d", f"{host_key}.pub"])
        text = text.replace(f"HostKey {host_key}\n",
                            f"HostKey {host_key}\nHostCertificate {host_key}-cert.pub\n")
    if ssh_user:
        text = text.replace("PermitRootLogin prohibit-password", "PermitRootLogin no")
    if ssh_user or allow_from:
        text += f"AllowUsers {ssh_user or 'root'}{'@' + allow_from if allow_from else ''}\n"
    (node_dir / "sshd_config").write_text(text)
    return pub


USER_KEYS_DIR = "/run/cfx-keys"  # in the node's own /run (tmpfs): authorized keys per user


def add_login_user(init_pid: int, user: str, pubkey: str, *, sudo: bool) -> None:
    """Inside a node's own /etc overlay (the host's files are never written): a login user
    with its authorized key under USER_KEYS_DIR and, when `sudo`, a NOPASSWD sudoers rule; the
    node's hostname resolves (sudo looks it up). Written directly, not with useradd (which may
    touch host paths such as /var/mail)."""
    import shlex

    q = shlex.quote
    script = f"""
set -e
U={q(user)}
if ! grep -q "^$U:" /etc/passwd; then
    uid=$(awk -F: '$3>=2000 && $3<60000 {{print $3}}' /etc/passwd /etc/group | sort -n | tail -1)
    uid=$(( ${{uid:-1999}} + 1 ))
    echo "$U:x:$uid:$uid:clusterfix lab:/run/home/$U:/bin/sh" >> /etc/passwd
    echo "$U:x:$uid:" >> /etc/group
    echo "$U:*:19000:0:99999:7:::" >> /etc/shadow
fi
mkdir -p /run/home/$U {USER_KEYS_DIR}
chown "$U:" /run/home/$U
chmod 755 {USER_KEYS_DIR}
printf '%s\\n' {q(pubkey)} > {USER_KEYS_DIR}/$U
chmod 644 {USER_KEYS_DIR}/$U
grep -q " $(hostname)\\$" /etc/hosts || echo "127.0.1.1 $(hostname)" >> /etc/hosts
"""
    if sudo:
        script += """
echo "$U ALL=(ALL:ALL) NOPASSWD: ALL" > /etc/sudoers.d/cfx-lab-$U
chmod 440 /etc/sudoers.d/cfx-lab-$U
"""
    node_exec(init_pid, script)


def start_anchor(netns: str, hostname: str, node_dir: Path) -> subprocess.Popen:
    """`ip netns exec NS unshare --mount --uts --propagation private sh node_init.sh ...`: the
    process execs down to `sleep infinity`, so its pid is the node's init_pid."""
    (node_dir / "ready").unlink(missing_ok=True)
    return spawn(
        ["ip", "netns", "exec", netns, "unshare", "--mount", "--uts", "--propagation", "private",
         "sh", str(NODE_INIT), hostname, str(node_dir)],
        node_dir / "anchor.log",
    )


def wait_anchor(proc: subprocess.Popen, node_dir: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not (node_dir / "ready").exists():
        if proc.poll() is not None:
            log = (node_dir / "anchor.log").read_text(errors="replace")[-2000:]
            raise NodeError(f"node anchor exited ({proc.returncode}): {log}")
        if time.monotonic() > deadline:
            raise NodeError(f"node anchor in {node_dir} not ready after {timeout}s")
        time.sleep(0.02)


def nsenter_argv(init_pid: int) -> list[str]:
    """Enter a node like its sshd does: mount, UTS and network namespaces of its anchor."""
    return ["nsenter", "-t", str(init_pid), "-m", "-u", "-n"]


def start_sshd(init_pid: int, node_dir: Path) -> subprocess.Popen:
    return spawn(
        nsenter_argv(init_pid) + [SSHD, "-D", "-e", "-f", str(node_dir / "sshd_config")],
        node_dir / "sshd.log",
    )


def wait_tcp(ip: str, port: int, timeout: float = 10, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NodeError(f"process for {ip}:{port} exited ({proc.returncode})")
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError as e:
            last = e
            time.sleep(0.03)
    raise NodeError(f"{ip}:{port} not listening after {timeout}s: {last}")


def node_exec(init_pid: int, script: str, *, check: bool = True, timeout: float = 30,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a shell script inside a node's namespaces (what an SSH session on the node sees)."""
    argv = nsenter_argv(init_pid) + ["sh", "-c", "cd /root 2>/dev/null || cd /\n" + script]
    r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, cwd="/",
                       stdin=None if input is not None else subprocess.DEVNULL,
                       env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "HOME": "/root", "LANG": "C.UTF-8"})
    if check and r.returncode != 0:
        raise subprocess.CalledProcessError(r.returncode, argv, r.stdout, r.stderr)
    return r


# -- pods ----------------------------------------------------------------------------------------

def create_pod_netns(pod_netns: str, node_netns: str, host_veth: str, ip: str, prefix: int,
                     gateway: str, mtu: int = 1450) -> None:
    """A pod: its own netns, eth0 = one end of a veth whose other end is on the node's cni0."""
    add_netns(pod_netns)
    ip_batch(node_netns, [
        f"link add {host_veth} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod_netns}",
        f"link set {host_veth} master cni0",
        f"link set {host_veth} up",
    ])
    ip_batch(pod_netns, [
        "link set lo up",
        f"addr add {ip}/{prefix} dev eth0",
        "link set eth0 up",
        f"route add default via {gateway} dev eth0",
    ])


def start_pod_server(pod_netns: str, port: int, name: str, log_path: Path, dual: bool = False) -> subprocess.Popen:
    # nsenter --net only (no mount namespace copy: a copy of /run/netns would pin other namespaces)
    return spawn(
        ["nsenter", f"--net=/run/netns/{pod_netns}", sys.executable, "-I", "-S", str(POD_SERVER),
         "--port", str(port), "--name", name] + (["--dual"] if dual else []),
        log_path,
    )


# -- in-namespace TCP/HTTP from this process (readiness probes) ----------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _in_netns(netns_path: str, fn):
    """Run fn() in a fresh thread switched into a network namespace (setns is per thread)."""
    box: dict = {}

    def target() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, os.strerror(e))
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def http_get_in_netns(netns_path: str, ip: str, port: int, path: str = "/",
                      timeout: float = 1.0) -> tuple[int | None, str]:
    """(status, "") on an answer, (None, Go-like error text) otherwise, like kubelet's prober."""
    url = f"http://{ip}:{port}{path}"

    def get() -> tuple[int | None, str]:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            try:
                s.connect((ip, port))
            except TimeoutError:
                return None, (f'Get "{url}": context deadline exceeded '
                              "(Client.Timeout exceeded while awaiting headers)")
            except OSError as e:
                text = os.strerror(e.errno).lower() if e.errno else str(e)
                return None, f'Get "{url}": dial tcp {ip}:{port}: connect: {text}'
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.32\r\n"
                      "Connection: close\r\n\r\n".encode())
            data = b""
            try:
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except TimeoutError:
                return None, (f'Get "{url}": context deadline exceeded '
                              "(Client.Timeout exceeded while awaiting headers)")
            except OSError as e:
                return None, f'Get "{url}": read tcp: {os.strerror(e.errno or errno.EIO).lower()}'
            try:
                return int(data.split(b" ", 2)[1]), ""
            except (IndexError, ValueError):
                return None, f'Get "{url}": EOF'
        finally:
            s.close()

    return _in_netns(netns_path, get)


def wait_listening_in_netns(netns: str, port: int, timeout: float = 5.0) -> bool:
    """Wait until something accepts on 127.0.0.1:port inside a pod's netns (the container started)."""
    def attempt() -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    return bool(_in_netns(f"/run/netns/{netns}", attempt))


def random_suffix(n: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names
    return "".join(secrets.choice(alphabet) for _ in range(n))
