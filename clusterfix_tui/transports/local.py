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
from typing import Any

from clusterfix_tui.core.ports import CommandResult, LineCallback


class LocalShell:
    """NodeShell over subprocess on this machine."""

    def __init__(self, node: str = "localhost", *, shell: str = "/bin/sh"):
        self.node = node
        self.shell = shell

    def __repr__(self) -> str:
        return f"LocalShell({self.node!r})"

    def run(self, command: str, *, timeout: float = 60.0, on_line: LineCallback | None = None,
            stdin: bytes | None = None) -> CommandResult:
        start = time.monotonic()
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
        timed_out = False
        open_streams = 2
        try:
            while open_streams:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(min(remaining, 0.5)):
                    stream = key.data
                    data = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
                    if not data:
                        sel.unregister(key.fileobj)
                        open_streams -= 1
                        continue
                    bufs[stream] += data
                    if on_line is not None:
                        pending[stream] += data
                        *lines, pending[stream] = pending[stream].split(b"\n")
                        for line in lines:
                            on_line(stream, line.decode("utf-8", "replace"))
        finally:
            sel.close()
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


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:
        pass


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


def local_links_routes(netns: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """{"links": ip -j link, "addresses": ip -j addr, "routes": ip -j route} of this machine
    (or of the named network namespace), as plain dicts."""
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
