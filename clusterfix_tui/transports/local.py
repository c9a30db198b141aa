"""NodeShell for the machine the tool runs on, and its links/addresses/routes via netlink.

LocalShell runs `sh -c <command>` in its own process group with the same semantics as the SSH
shell: stdout/stderr lines streamed to on_line as they arrive, a timeout kills the whole process
group and returns timed_out=True, a non-zero exit is a result, not an exception.

local_links_routes() reads links, addresses and routes with pyroute2 (no `ip` binary needed) and
returns them shaped like `ip -j link`, `ip -j addr` and `ip -j route` (main table) print them, so
the same core parsers read both.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from clusterfix_tui.core.ports import CommandResult, LineCallback
from clusterfix_tui.transports.limits import MAX_OUTPUT, OUTPUT_TOO_LARGE

_T = TypeVar("_T")


class LocalShell:
    """NodeShell over subprocess on this machine."""

    max_output: int = MAX_OUTPUT  # bytes one command may send (limits.MAX_OUTPUT)

    def __init__(self, node: str = "localhost", *, shell: str = "/bin/sh",
                 interrupt: threading.Event | None = None):
        self.node = node
        self.shell = shell
        self.interrupt = interrupt or threading.Event()  # set: kill what runs, start nothing

    def __repr__(self) -> str:
        return f"LocalShell({self.node!r})"

    def run(self, command: str, *, timeout: float = 60.0, on_line: LineCallback | None = None,
            stdin: bytes | None = None) -> CommandResult:
        start = time.monotonic()
        if self.interrupt.is_set():
            return CommandResult(exit_code=None, error=INTERRUPTED + " before it started")
        try:
            proc = subprocess.Popen(
                [self.shell, "-c", command],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(exit_code=None, error=f"{self.node}: cannot start {self.shell}: "
                                 f"{exc.strerror}")
        if stdin:
            threading.Thread(target=_feed, args=(proc, stdin), daemon=True).start()
        bufs = {"stdout": bytearray(), "stderr": bytearray()}
        pending = {"stdout": b"", "stderr": b""}
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        deadline = start + timeout
        timed_out = interrupted = too_large = False
        open_streams = 2
        try:
            while open_streams:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                if self.interrupt.is_set():
                    interrupted = True
                    break
                if too_large:
                    break
                for key, _ in sel.select(min(remaining, 0.25)):
                    stream = key.data
                    data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not data:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    bufs[stream] += data
                    if len(bufs["stdout"]) + len(bufs["stderr"]) > self.max_output:
                        too_large = True  # a broken command: stop reading, kill it (below)
                        break
                    if on_line is not None:
                        pending[stream] += data
                        *lines, pending[stream] = pending[stream].split(b"\n")
                        for line in lines:
                            on_line(stream, line.decode("utf-8", "replace"))
        finally:
            sel.close()
        if too_large:
            return _stopped(proc, bufs, start, OUTPUT_TOO_LARGE.format(
                mib=f"{self.max_output / 2**20:g}") + "; its process group was killed")
        if interrupted:
            return _stopped(proc, bufs, start, f"{INTERRUPTED}: its process group was killed")
        if timed_out:
            _kill_group(proc)
        else:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:  # streams closed, process lingers
                timed_out = True
                _kill_group(proc)
        for stream in ("stdout", "stderr"):
            if on_line is not None and pending[stream]:
                on_line(stream, pending[stream].decode("utf-8", "replace"))
        proc.stdout.close()
        proc.stderr.close()
        return CommandResult(
            exit_code=None if timed_out else proc.returncode,
            stdout=bufs["stdout"].decode("utf-8", "replace"),
            stderr=bufs["stderr"].decode("utf-8", "replace"),
            duration=time.monotonic() - start,
            timed_out=timed_out,
        )

    def close(self) -> None:
        """Nothing is kept open between commands."""


INTERRUPTED = "interrupted by the user"


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:
        pass


def _stopped(proc: subprocess.Popen[bytes], bufs: dict[str, bytearray], start: float,
             error: str) -> CommandResult:
    """A command stopped before its end (output over the cap, the user's interrupt): its process
    group killed, its pipes closed, what it printed so far kept, `error` saying why."""
    _kill_group(proc)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    return CommandResult(
        exit_code=None, stdout=bufs["stdout"].decode("utf-8", "replace"),
        stderr=bufs["stderr"].decode("utf-8", "replace"), duration=time.monotonic() - start,
        error=error)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def local_shells(node: str, address: str | None = None) -> LocalShell:
    """A ShellFactory for when every "node" is this machine (tests, single-node use)."""
    return LocalShell(node)


# ------------------------------------------------------------------------------------------------
# links, addresses, routes via netlink, shaped like `ip -j`

# in the order `ip` prints them (iproute2 print_link_flags)
_IFF = (
    (0x8, "LOOPBACK"), (0x2, "BROADCAST"), (0x10, "POINTOPOINT"), (0x1000, "MULTICAST"),
    (0x80, "NOARP"), (0x200, "ALLMULTI"), (0x100, "PROMISC"), (0x400, "MASTER"), (0x800, "SLAVE"),
    (0x1, "UP"), (0x10000, "LOWER_UP"), (0x20000, "DORMANT"), (0x40000, "ECHO"),
)
IFF_UP, IFF_RUNNING = 0x1, 0x40
_PROTO = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp"}
_SCOPE = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
_ROUTE_TYPE = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole",
               7: "unreachable", 8: "prohibit"}
_FAMILY = {2: "inet", 10: "inet6"}
MAIN_TABLE = 254


def _flag_names(flags: int, lower_down: bool = False) -> list[str]:
    names = ["NO-CARRIER"] if flags & IFF_UP and not flags & IFF_RUNNING else []
    names += [name for bit, name in _IFF if flags & bit]
    if flags & IFF_UP and lower_down:
        names.append("M-DOWN")
    return names


_RTNH = ((1, "dead"), (4, "onlink"), (2, "pervasive"), (8, "offload"), (16, "linkdown"),
         (32, "unresolved"))


def _off_the_loop(fn: Callable[[], _T]) -> _T:
    """Run a pyroute2 call where its synchronous API works: pyroute2 0.9 builds its sockets on
    asyncio and refuses ("This event loop is already running") in a thread that runs an event loop
    (the wizard's own thread, a pilot test). There the call goes to a short-lived thread."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn).result()


def local_links_routes(netns: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"links": ip -j link, "addresses": ip -j addr, "routes": ip -j route} of this machine
    (or of the named network namespace), as plain dicts."""
    return _off_the_loop(lambda: _local_links_routes(netns))


def _local_links_routes(netns: str | None) -> dict[str, list[dict[str, Any]]]:
    from pyroute2 import IPRoute

    kwargs = {"netns": netns} if netns else {}
    with IPRoute(**kwargs) as ipr:
        raw_links = list(ipr.get_links())
        raw_addrs = list(ipr.get_addr())
        raw_routes = list(ipr.get_routes(table=MAIN_TABLE))
    names = {msg["index"]: msg.get("ifname") for msg in raw_links}
    flags = {msg["index"]: msg["flags"] for msg in raw_links}
    links = []
    for msg in raw_links:
        lower = msg.get("link")  # IFLA_LINK: a veth's peer, a vlan's parent (same netns only)
        in_this_ns = msg.get_attr("IFLA_LINK_NETNSID") is None
        lower_down = bool(lower) and in_this_ns and lower in flags and not flags[lower] & IFF_UP
        link: dict[str, Any] = {
            "ifindex": msg["index"],
            "ifname": msg.get("ifname"),
            "flags": _flag_names(msg["flags"], lower_down),
            "mtu": msg.get("mtu"),
            "operstate": msg.get("operstate"),
            "address": msg.get("address"),
        }
        master = msg.get("master")
        if master:
            link["master"] = names.get(master, master)
        info = msg.get("linkinfo")
        if info is not None:
            kind = info.get("kind")
            if kind:
                link["linkinfo"] = {"info_kind": kind}
                data = info.get("data")
                if kind == "vxlan" and data is not None:
                    link["linkinfo"]["info_data"] = {
                        "id": data.get("vxlan_id"), "local": data.get("vxlan_local"),
                        "port": data.get("vxlan_port"), "learning": bool(data.get("vxlan_learning")),
                    }
        links.append(link)
    addresses: dict[int, dict[str, Any]] = {}
    for msg in raw_addrs:
        entry = addresses.setdefault(msg["index"], {
            "ifindex": msg["index"], "ifname": names.get(msg["index"]), "addr_info": []})
        entry["addr_info"].append({
            "family": _FAMILY.get(msg["family"], str(msg["family"])),
            "local": msg.get("address"),
            "prefixlen": msg["prefixlen"],
            "scope": _SCOPE.get(msg["scope"], str(msg["scope"])),
            "label": msg.get("label"),
        })
    routes = []
    for msg in raw_routes:
        if msg["family"] != 2:
            continue
        dst = msg.get("dst")
        route: dict[str, Any] = {}
        if msg["type"] != 1:  # `ip -j route` leaves out the defaults: unicast, boot, global
            route["type"] = _ROUTE_TYPE.get(msg["type"], str(msg["type"]))
        route["dst"] = (f"{dst}/{msg['dst_len']}" if dst and msg["dst_len"] != 32
                        else (dst or "default"))
        if msg.get("gateway"):
            route["gateway"] = msg.get("gateway")
        oif = msg.get("oif")
        if oif:
            route["dev"] = names.get(oif, str(oif))
        if msg["proto"] != 3:
            route["protocol"] = _PROTO.get(msg["proto"], str(msg["proto"]))
        if msg["scope"] != 0:
            route["scope"] = _SCOPE.get(msg["scope"], str(msg["scope"]))
        if msg.get("prefsrc"):
            route["prefsrc"] = msg.get("prefsrc")
        route["flags"] = [name for bit, name in _RTNH if msg["flags"] & bit]
        routes.append(route)
    return {"links": links, "addresses": list(addresses.values()), "routes": routes}


# ------------------------------------------------------------------------------------------------
# the node the tool runs on: read and repaired without SSH

NETLINK_SECTIONS = ("ip_link", "ip_addr", "ip_route")


class LocalNodeShell(LocalShell):
    """The NodeShell of the cluster node this process runs on.

    Commands run through `sh -c` here, under `sudo -n` (with the same remote-side `timeout -s KILL`
    wrapper the SSH shell uses) when this process is not root, so a local action has exactly the
    rules of a remote one. `netlink_sections()` gives the facts script's link/address/route
    sections from netlink (pyroute2), so reading this node needs no `ip` binary."""

    transport = "local"

    def __init__(self, node: str, *, sudo: bool | None = None) -> None:
        super().__init__(node)
        self.sudo = (os.geteuid() != 0) if sudo is None else sudo

    def __repr__(self) -> str:
        return f"LocalNodeShell({self.node!r}{', sudo' if self.sudo else ''})"

    def run(self, command: str, *, timeout: float = 60.0, on_line: LineCallback | None = None,
            stdin: bytes | None = None) -> CommandResult:
        if self.sudo:
            import shlex

            # the same wrapper as over SSH: sudo -n never prompts; timeout kills as root
            command = (f"sudo -n timeout -s KILL {int(timeout) + 5} sh -c "
                       f"{shlex.quote(command)}")
        res = super().run(command, timeout=timeout, on_line=on_line, stdin=stdin)
        if self.sudo and res.exit_code == 1 and _sudo_refused(res.stderr):
            return CommandResult(exit_code=res.exit_code, stdout=res.stdout, stderr=res.stderr,
                                 duration=res.duration,
                                 error=f"{self.node} (local): sudo -n needs a password; run as "
                                       f"root or allow NOPASSWD sudo")
        return res

    def netlink_sections(self) -> dict[str, str]:
        """{"ip_link": json, "ip_addr": json, "ip_route": json}, shaped as `ip -j` prints them."""
        import json

        data = local_links_routes()
        return {"ip_link": json.dumps(data["links"]), "ip_addr": json.dumps(data["addresses"]),
                "ip_route": json.dumps(data["routes"])}


def _sudo_refused(stderr: str) -> bool:
    first = [ln for ln in (stderr or "").splitlines() if ln.startswith("sudo:")]
    return any("password is required" in ln or "a terminal is required" in ln for ln in first)


def local_addresses() -> set[str]:
    """Every address configured on this machine's interfaces (this network namespace)."""
    def read() -> set[str]:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return {str(m.get("address")) for m in ipr.get_addr() if m.get("address")}

    try:
        return _off_the_loop(read)
    except Exception:  # noqa: BLE001 - no netlink (e.g. not Linux): no address matches
        return set()


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


class LocalIdentity:
    """Who this machine is, to recognise it among the cluster's nodes."""

    def __init__(self, hostname: str | None = None, addresses: set[str] | None = None,
                 machine_id: str | None = None) -> None:
        import socket

        self.hostname = hostname if hostname is not None else socket.gethostname()
        self._addresses = addresses
        self.machine_id = machine_id if machine_id is not None else _read("/etc/machine-id")

    @property
    def addresses(self) -> set[str]:
        """This machine's addresses, read (netlink, pyroute2) on first use only: matches() needs
        them only for a node whose name or machine-id is this machine's, so a workstation that
        is no node never imports pyroute2 (~0.15 s of CPU) or dumps its addresses."""
        if self._addresses is None:
            self._addresses = local_addresses()
        return self._addresses

    def names(self) -> set[str]:
        h = self.hostname or ""
        return {x.lower() for x in (h, h.split(".")[0]) if x}

    def matches(self, node: str, address: str | None, machine_id: str | None = None) -> str | None:
        """Why `node` is this machine, or None. A wrong "local" would run a node's repair on the
        wrong machine, so one weak hint is never enough: the hostname must match too when the
        address does, or the node's machine-id (status.nodeInfo.machineID) must. A known
        machine-id that differs always means "not this machine"."""
        if machine_id and self.machine_id and machine_id != self.machine_id:
            return None
        name_hit = node.lower() in self.names() or node.lower().split(".")[0] in self.names()
        id_hit = bool(machine_id) and machine_id == self.machine_id
        # every answer below needs name_hit or id_hit: without either the addresses are not read
        addr_hit = (name_hit or id_hit) and bool(address) and address in self.addresses
        if name_hit and (addr_hit or not address):
            return f"hostname {self.hostname}" + (f" and address {address}" if addr_hit else "")
        if addr_hit and id_hit:
            return f"address {address} and machine-id"
        if name_hit and id_hit:
            return f"hostname {self.hostname} and machine-id"
        return None


class NodeShells:
    """The ShellFactory of a session: the node this process runs on through LocalNodeShell, every
    other node through the SSH pool. Everything else (accept_host_key, close, ...) is the pool's.

    local_node: "" = never local (--no-local); a name = exactly that node (--local-node);
    None = recognise it (LocalIdentity.matches) among the nodes asked for."""

    def __init__(self, ssh: Any, *, local_node: str | None = None,
                 identity: LocalIdentity | None = None,
                 machine_ids: dict[str, str] | None = None) -> None:
        self.ssh = ssh
        self._forced = local_node
        self._identity = identity
        self._machine_ids = machine_ids or {}
        self._lock = threading.Lock()
        self._local: dict[str, LocalNodeShell] = {}
        self._interrupt = threading.Event()
        self.local_node: str | None = local_node or None
        self.local_reason: str = "--local-node" if local_node else ""

    def set_machine_ids(self, ids: dict[str, str]) -> None:
        """Node name -> status.nodeInfo.machineID, from the API (a stronger identity check)."""
        self._machine_ids = dict(ids)

    def is_local(self, node: str, address: str | None = None) -> bool:
        if self._forced is not None:
            return bool(self._forced) and node == self._forced
        with self._lock:
            if self.local_node is not None:
                return node == self.local_node
            if self._identity is None:
                self._identity = LocalIdentity()
            why = self._identity.matches(node, address, self._machine_ids.get(node))
            if why:
                self.local_node, self.local_reason = node, why
            return bool(why)

    def interrupt(self) -> None:
        """Ctrl+C / SIGTERM: kill what runs on every node (local and SSH), start nothing new."""
        self._interrupt.set()
        stop = getattr(self.ssh, "interrupt", None)
        if callable(stop):
            stop()

    def transport_of(self, node: str) -> str:
        return "local" if node == self.local_node else "ssh"

    def __call__(self, node: str, address: str | None = None) -> Any:
        if self.is_local(node, address):
            with self._lock:
                shell = self._local.get(node)
                if shell is None:
                    shell = self._local[node] = LocalNodeShell(node)
                    shell.interrupt = self._interrupt
            return shell
        return self.ssh(node, address)

    def close(self) -> None:
        self.ssh.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ssh, name)
