"""Trace: follow one probe packet through the nodes on its path and name where it died.

Mechanism (docs/trace.md):
- on every node of the path, a temporary nftables table `inet cfx_trace_<id>` with two chains at
  the earliest hooks (prerouting and output, priority -500, policy accept) holding one rule that
  sets `meta nftrace set 1` for exactly the probe's flow (destination address, TCP destination
  port, SYN only); it marks, it never accepts, drops or rewrites anything. Each table is a
  journaled Action whose rollback is `nft delete table inet cfx_trace_<id>`;
- `timeout N nft -a monitor trace` read over the node's shell while the probe runs: every nftables
  rule the packet met (nft-native tables and iptables-nft, which are nftables tables), with its
  handle and verdict;
- iptables-legacy tables are not seen by nft trace: their packet counters
  (`iptables-legacy-save -c`) before and after the probe name a DROP/REJECT rule or a DROP policy
  whose counter moved (other traffic can move a counter too: said in the result);
- routing: `ip route get` for the destination and `net.ipv4.ip_forward` on each path node.

Everything here is pure (parsers, action builders, the verdict) except `run_trace`, which drives
the ports it is given (NodeShell, Prober, an ActionRunner) and nothing else.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.model import Action, Plan

STEP = "trace"
TABLE_PREFIX = "cfx_trace_"
VERDICTS = ("delivered", "dropped", "rejected", "no-route", "lost")
MONITOR_SECONDS = 5
PROBE_SECONDS = 3


def q(v: Any) -> str:
    return shlex.quote(str(v))


def table_name(trace_id: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{1,16}", trace_id):
        raise ValueError(f"bad trace id {trace_id!r}")
    return TABLE_PREFIX + trace_id


@dataclass(frozen=True)
class Match:
    """What one node's trace rule marks: TCP SYNs to daddr:dport (from saddr when known), or,
    for proto "udp", UDP datagrams to daddr:dport of exactly `length` bytes (UDP header included:
    the probe's own size, which real VXLAN traffic, >= 50 bytes, never has)."""

    daddr: str
    dport: int
    saddr: str | None = None
    proto: str = "tcp"
    length: int | None = None

    def nft(self) -> str:
        fam = "ip6" if ":" in self.daddr else "ip"
        src = f"{fam} saddr {ipaddress.ip_address(self.saddr)} " if self.saddr else ""
        dst = ipaddress.ip_address(self.daddr)
        if self.proto == "udp":
            size = f" udp length {int(self.length)}" if self.length else ""
            return f"{src}{fam} daddr {dst} udp dport {int(self.dport)}{size} meta nftrace set 1"
        return (f"{src}{fam} daddr {dst} tcp dport {int(self.dport)} "
                f"tcp flags & (syn | ack) == syn meta nftrace set 1")


def nft_script(trace_id: str, matches: Sequence[Match], output: bool = False) -> str:
    """One atomic nft transaction: the table, its prerouting chain (and, on the node the probe
    leaves from, its output chain) and one marking rule per match."""
    t = table_name(trace_id)
    parts = [f"add table inet {t}"]
    hooks = (("pre", "prerouting"), ("out", "output")) if output else (("pre", "prerouting"),)
    for chain, hook in hooks:
        parts.append(f"add chain inet {t} {chain} {{ type filter hook {hook} priority -500 ; "
                     f"policy accept ; }}")
        for m in matches:
            parts.append(f"add rule inet {t} {chain} {m.nft()}")
    return " ; ".join(parts)


def remove_command(trace_id: str) -> str:
    """Idempotent: succeeds when the table is gone already."""
    t = table_name(trace_id)
    return f"nft delete table inet {t} 2>/dev/null || ! nft list table inet {t} >/dev/null 2>&1"


def setup_action(node: str, trace_id: str, matches: Sequence[Match], n: int,
                 output: bool = False) -> Action:
    t = table_name(trace_id)
    rb = Action(id=f"{STEP}:{node}:{n}:rollback", target=node, kind="shell",
                command=remove_command(trace_id), why=f"remove the trace table {t}", timeout=20.0)
    return Action(
        id=f"{STEP}:{node}:{n}", target=node, kind="shell",
        command=f"nft {q(nft_script(trace_id, matches, output))}",
        why=f"mark the probe's packets for `nft monitor trace` (table inet {t}: accept policy, "
            f"one `meta nftrace set 1` rule per flow; no verdict changes)",
        risk="none: the chains only mark packets; removed at the end of the trace",
        timeout=20.0, rollback=rb)


def setup_plan(trace_id: str, per_node: dict[str, list[Match]], probe_node: str | None = None
               ) -> Plan:
    actions = tuple(setup_action(node, trace_id, ms, i + 1, output=node == probe_node)
                    for i, (node, ms) in enumerate(sorted(per_node.items())))
    return Plan(step=STEP, title=f"Trace tables {table_name(trace_id)}", actions=actions)


# ---------------------------------------------------------------- nft monitor trace parsing

_LINE = re.compile(r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) "
                   r"(?P<rest>.*)$")
_HANDLE = re.compile(r"\s*# handle (\d+)")
_VERDICT = re.compile(r"\s*\(verdict (?P<v>[^)]*)\)\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+\s*")


@dataclass(frozen=True)
class Hop:
    node: str
    trace_id: str
    family: str
    table: str
    chain: str
    kind: str  # packet | rule | verdict | policy | unknown
    rule: str = ""
    handle: int | None = None
    verdict: str = ""  # accept, drop, continue, jump X, return ...
    packet: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "trace_id": self.trace_id, "family": self.family,
                "table": self.table, "chain": self.chain, "kind": self.kind, "rule": self.rule,
                "handle": self.handle, "verdict": self.verdict,
                **({"packet": self.packet} if self.packet else {})}


def parse_monitor(node: str, text: str, own_table: str | None = None) -> list[Hop]:
    """`nft -a monitor trace` output -> hops, in order; our own marking table left out."""
    hops: list[Hop] = []
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            continue
        fam, table, chain, rest = m["family"], m["table"], m["chain"], m["rest"].strip()
        if own_table and table == own_table:
            continue
        if rest.startswith("packet:"):
            hops.append(Hop(node, m["id"], fam, table, chain, "packet",
                            packet=rest[len("packet:"):].strip()))
        elif rest.startswith("rule "):
            body = rest[5:]
            verdict = ""
            vm = _VERDICT.search(body)
            if vm:
                verdict = vm["v"].strip()
                body = body[:vm.start()]
            handle = None
            hm = _HANDLE.search(body)
            if hm:
                handle = int(hm.group(1))
                body = body[:hm.start()] + body[hm.end():]
            body = re.sub(r"\s+", " ", _COUNTER.sub("", body)).strip()
            hops.append(Hop(node, m["id"], fam, table, chain, "rule", rule=body, handle=handle,
                            verdict=verdict))
        elif rest.startswith("policy ") or rest.startswith("verdict "):
            kind, _, v = rest.partition(" ")
            hops.append(Hop(node, m["id"], fam, table, chain, kind, verdict=v.strip()))
        else:
            hops.append(Hop(node, m["id"], fam, table, chain, "unknown", rule=rest))
    return hops


def own_sightings(text: str, own_table: str) -> list[str]:
    """The chains of our own marking table that saw the probe ("pre": it arrived at the node,
    "out": the node sent it), in order: this says a packet reached a node even when no other
    nftables table is there to trace it (a node whose firewall is all iptables-legacy)."""
    seen: list[str] = []
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if m and m["table"] == own_table and m["chain"] not in seen:
            seen.append(m["chain"])
    return seen


def _is_reject(text: str) -> bool:
    return "reject" in text.lower()


def nft_death(hops: Sequence[Hop]) -> Hop | None:
    """The first hop whose verdict ended the packet (a drop/reject rule or a drop policy)."""
    for h in hops:
        v = h.verdict.split(" ")[0] if h.verdict else ""
        if v == "drop" or (h.kind == "rule" and _is_reject(h.rule) and v in ("drop", "")):
            return h
    return None


# ---------------------------------------------------------------- iptables-legacy counters

LEGACY_SAVE = "iptables-legacy-save -c 2>/dev/null"
_CHAIN_LINE = re.compile(r"^:(?P<chain>\S+) (?P<policy>\S+) \[(?P<p>\d+):(?P<b>\d+)\]")
_RULE_LINE = re.compile(r"^\[(?P<p>\d+):(?P<b>\d+)\] (?P<rule>-A (?P<chain>\S+) .*)$")


def legacy_counters(text: str) -> dict[tuple[str, str, int], tuple[int, str]]:
    """(table, chain, n) -> (packets, text): n = 0 is the chain's policy, n >= 1 its n-th rule."""
    out: dict[tuple[str, str, int], tuple[int, str]] = {}
    table = ""
    nth: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif (m := _CHAIN_LINE.match(line)) and m["policy"] != "-":
            out[(table, m["chain"], 0)] = (int(m["p"]), f"policy {m['policy']}")
        elif m := _RULE_LINE.match(line):
            k = (table, m["chain"])
            nth[k] = nth.get(k, 0) + 1
            out[(table, m["chain"], nth[k])] = (int(m["p"]), m["rule"])
    return out


def legacy_chains_in_use(text: str) -> list[str]:
    """table/chain of legacy chains with rules or a non-ACCEPT policy: what nft trace cannot see."""
    seen: list[str] = []
    for (table, chain, n), (_, rule) in legacy_counters(text).items():
        if (n > 0 or rule != "policy ACCEPT") and f"{table}/{chain}" not in seen:
            seen.append(f"{table}/{chain}")
    return seen


def legacy_death(before: str, after: str) -> dict[str, Any] | None:
    """The legacy DROP/REJECT rule (or DROP policy) whose packet counter moved."""
    b, a = legacy_counters(before), legacy_counters(after)
    for key, (pkts, text) in a.items():
        moved = pkts - b.get(key, (pkts, ""))[0]
        if moved <= 0:
            continue
        is_policy = key[2] == 0
        if (is_policy and text == "policy DROP") or (
                not is_policy and re.search(r"-j (DROP|REJECT)\b", text)):
            return {"table": f"iptables-legacy {key[0]}", "chain": key[1], "rule": text,
                    "handle": None, "moved": moved,
                    "verdict": "rejected" if "REJECT" in text else "dropped"}
    return None


def legacy_moved(before: str, after: str) -> list[dict[str, Any]]:
    """Every legacy rule (or policy) whose packet counter moved during the probe, in order."""
    b, a = legacy_counters(before), legacy_counters(after)
    out = []
    for key, (pkts, text) in a.items():
        moved = pkts - b.get(key, (pkts, ""))[0]
        if moved > 0:
            out.append({"table": f"iptables-legacy {key[0]}", "chain": key[1], "rule": text,
                        "moved": moved})
    return out


# ---------------------------------------------------------------- the verdict


@dataclass
class NodeTrace:
    node: str
    role: str  # entry | source | destination | path
    hops: list[Hop] = field(default_factory=list)
    legacy_before: str = ""
    legacy_after: str = ""
    route: str = ""  # `ip route get` of the destination on this node
    route_ok: bool = True
    forwarding: str = ""  # net.ipv4.ip_forward
    needs_forwarding: bool = False
    error: str = ""
    macs: dict[str, str] = field(default_factory=dict)  # device -> MAC
    neigh: dict[tuple[str, str], str] = field(default_factory=dict)  # (address, dev) -> lladdr
    marked: list[str] = field(default_factory=list)  # own_sightings: "pre" arrived, "out" sent

    def saw(self) -> bool:
        return bool(self.hops or self.marked)


def verdict(nodes: Sequence[NodeTrace], connected: bool | None, probe_detail: str = ""
            ) -> dict[str, Any]:
    """{verdict, where, hops, legacy_untraced, notes} from what each path node saw."""
    hops = [h.to_dict() for n in nodes for h in _dedup(n.hops)]
    untraced = {n.node: legacy_chains_in_use(n.legacy_before) for n in nodes
                if legacy_chains_in_use(n.legacy_before)}
    notes: list[str] = []
    if untraced:
        notes.append("iptables-legacy chains are not traced by nft; their counters were compared "
                     "before/after the probe instead: " + "; ".join(
                         f"{k}: {', '.join(v)}" for k, v in untraced.items()))
    result: dict[str, Any] = {"hops": hops, "legacy_untraced": untraced, "notes": notes,
                              "probe": probe_detail}
    for n in nodes:
        d = nft_death(n.hops)
        if d is not None:
            text = d.rule or f"policy {d.verdict}"
            result.update(verdict="rejected" if _is_reject(text) else "dropped",
                          where={"node": n.node, "table": f"{d.family} {d.table}",
                                 "chain": d.chain, "rule": text, "handle": d.handle})
            return result
    for n in nodes:
        if n.legacy_before and n.legacy_after:
            ld = legacy_death(n.legacy_before, n.legacy_after)
            if ld is not None:
                notes.append(f"named by an iptables-legacy counter that moved by {ld['moved']} "
                             f"packet(s) during the probe (other traffic can move it too)")
                result.update(verdict=ld["verdict"], where={
                    "node": n.node, "table": ld["table"], "chain": ld["chain"],
                    "rule": ld["rule"], "handle": None})
                return result
    if connected:
        last = nodes[-1].node if nodes else None
        result.update(verdict="delivered", where={"node": last, "table": None, "chain": None,
                                                  "rule": None, "handle": None})
        return result
    for n in nodes:
        if not n.route_ok:
            result.update(verdict="no-route", where={"node": n.node, "table": None,
                                                     "chain": "routing", "rule": n.route or
                                                     "ip route get failed", "handle": None})
            return result
        if n.needs_forwarding and n.forwarding.strip() == "0" and n.saw():
            result.update(verdict="no-route", where={
                "node": n.node, "table": None, "chain": "routing",
                "rule": "net.ipv4.ip_forward = 0 (the node does not forward; the packet "
                        "entered prerouting and was never routed on)", "handle": None})
            return result
    for n in nodes:
        # a DNAT in iptables-legacy (invisible to nft trace) sent the probe somewhere else
        for mv in legacy_moved(n.legacy_before, n.legacy_after) if n.legacy_after else ():
            to = re.search(r"--to-destination (\S+)", mv["rule"])
            if to and "-j DNAT" in mv["rule"]:
                notes.append(f"iptables-legacy rewrote the destination to {to.group(1)} on "
                             f"{n.node} (counter moved by {mv['moved']}); nft trace cannot see it")
                result.update(verdict="lost", where={
                    "node": n.node, "table": mv["table"], "chain": mv["chain"],
                    "rule": mv["rule"], "handle": None})
                return result
    seen = [n for n in nodes if n.saw()]
    missing = [n for n in nodes if not n.saw()]
    if seen and missing and (stale := stale_neighbour(seen[-1], missing[0])):
        result.update(verdict="lost", where={"node": seen[-1].node, "table": None,
                                             "chain": "neighbour", "rule": stale, "handle": None})
        return result
    if seen and missing:
        result.update(verdict="lost", where={
            "node": missing[0].node, "table": None, "chain": None,
            "rule": f"sent from {seen[-1].node} and never arrived at {missing[0].node}",
            "handle": None})
    else:
        result.update(verdict="lost", where={
            "node": seen[-1].node if seen else None, "table": None, "chain": None,
            "rule": "no rule dropped it that trace can see, and it did not arrive"
            if seen else "no path node saw the probe", "handle": None})
    return result


def stale_neighbour(sender: NodeTrace, receiver: NodeTrace) -> str:
    """The sender routes the packet via a gateway on device D whose neighbour entry (for a
    vxlan device: the VTEP MAC) is not the MAC of the receiver's D: a stale neighbour/VTEP."""
    m = re.search(r"\bvia (\S+) dev (\S+)", sender.route)
    if not m:
        return ""
    gw, dev = m.group(1), m.group(2)
    lladdr = sender.neigh.get((gw, dev), "")
    theirs = receiver.macs.get(dev, "")
    if lladdr and theirs and lladdr.lower() != theirs.lower():
        return (f"{sender.node} sends to {gw} on {dev} with neighbour lladdr {lladdr}, but "
                f"{receiver.node}'s {dev} has MAC {theirs}: a stale neighbour/VTEP entry on "
                f"{sender.node} (`ip neigh show {gw} dev {dev}`, `bridge fdb show dev {dev}`)")
    return ""


def parse_links(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F:]{17}", parts[1]):
            out[parts[0]] = parts[1]
    return out


def parse_neigh(text: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+) dev (\S+) lladdr (\S+)", line.strip())
        if m:
            out[(m.group(1), m.group(2))] = m.group(3)
    return out


def _dedup(hops: Sequence[Hop]) -> list[Hop]:
    """Retransmitted SYNs repeat the same path under new trace ids: keep the first of each."""
    by_id: dict[str, list[Hop]] = {}
    for h in hops:
        by_id.setdefault(h.trace_id, []).append(h)
    out: list[Hop] = []
    seen: set[tuple[Any, ...]] = set()
    for hs in by_id.values():
        key = tuple((h.table, h.chain, h.kind, h.rule, h.verdict) for h in hs)
        if key in seen:
            continue
        seen.add(key)
        out.extend(hs)
    return out


# ---------------------------------------------------------------- the flows


@dataclass(frozen=True)
class PathNode:
    node: str
    address: str | None
    role: str
    matches: tuple[Match, ...]
    route_to: str  # the destination `ip route get` is asked about on this node
    needs_forwarding: bool


@dataclass(frozen=True)
class Flow:
    kind: str  # nodeport | pod | vxlan | api
    description: str
    dst_ip: str
    dst_port: int
    path: tuple[PathNode, ...]
    probe_node: str | None = None  # None: from the workstation
    probe_command: str = ""
    # a UDP probe has no answer: it is delivered when the last path node saw it arrive (its
    # prerouting marking chain) and no rule on the way dropped it
    delivered_on_arrival: bool = False


def probe_shell_command(ip: str, port: int, seconds: int = PROBE_SECONDS,
                        src_ip: str | None = None) -> str:
    """A TCP connect from the node; from the pod's network namespace when one holding `src_ip`
    is found under /run/netns (containerd/cri-o), else from the node itself. Values are arguments,
    never script text."""
    inner = f"timeout {int(seconds)} bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' cfx {q(ip)} {q(port)}"
    if not src_ip:
        return inner
    return ("ns=; for f in /run/netns/*; do [ -e \"$f\" ] || continue; n=${f##*/}; "
            f"ip -n \"$n\" -o addr 2>/dev/null | grep -qF \" \"{q(str(src_ip) + '/')} && ns=$n && break; done; "
            "if [ -n \"$ns\" ]; then echo \"probe from netns $ns\" >&2; "
            f"ip netns exec \"$ns\" {inner}; else echo 'probe from the node (no netns holds the "
            f"pod address)' >&2; {inner}; fi")


UDP_PROBE_PAYLOAD = "clusterfix-trace-probe.."  # 24 bytes: udp length 32, below any VXLAN frame
UDP_PROBE_LENGTH = 8 + len(UDP_PROBE_PAYLOAD)
DEFAULT_VXLAN_PORT = 8472  # flannel's default (the Linux kernel's); IANA's is 4789


def udp_probe_command(ip: str, port: int, count: int = 3) -> str:
    """`count` UDP datagrams of UDP_PROBE_PAYLOAD to ip:port from the node (bash's /dev/udp: one
    write, one datagram). Exit 0 when they were sent; a UDP probe has no answer to wait for."""
    return (f"timeout {PROBE_SECONDS + 2} bash -c 'exec 3>\"/dev/udp/$1/$2\" || exit 1; "
            f"for i in $(seq {int(count)}); do printf %s \"$3\" >&3; sleep 0.3; done' cfx "
            f"{q(ip)} {q(port)} {q(UDP_PROBE_PAYLOAD)}")


# ---------------------------------------------------------------- what a node says about itself

# the kubelet's kubeconfig, where the distributions put it (kubeadm, kubeadm/legacy, k3s, rke2,
# kops/EKS-style); only its `server:` line is read (never a credential)
KUBELET_KUBECONFIGS = ("/etc/kubernetes/kubelet.conf", "/etc/kubernetes/kubelet.kubeconfig",
                       "/var/lib/kubelet/kubeconfig",
                       "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
                       "/var/lib/rancher/rke2/agent/kubelet.kubeconfig")


def node_info_command(vxlan_dev: str = "flannel.1") -> str:
    """Read-only: the first kubelet kubeconfig's `server:` line (@@server PATH LINE) and the vxlan
    device's dstport (@@vxlan ...)."""
    files = " ".join(q(f) for f in KUBELET_KUBECONFIGS)
    return (f"for f in {files}; do [ -r \"$f\" ] || continue; "
            "l=$(grep -m1 -E '^[[:space:]]*-?[[:space:]]*server:' \"$f\") && "
            "{ echo \"@@server $f $l\"; break; }; done; "
            f"echo \"@@vxlan $(ip -d link show {q(vxlan_dev)} 2>/dev/null | "
            "grep -o 'dstport [0-9]*' | head -1)\"")


def parse_node_info(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"server": None, "server_source": None, "vxlan_port": None}
    for line in text.splitlines():
        if line.startswith("@@server "):
            _, src, rest = line.split(" ", 2)
            m = re.match(r"^\s*-?\s*server:\s*['\"]?([^'\"\s]+)", rest)
            if m:
                out["server"], out["server_source"] = m.group(1), src
        elif line.startswith("@@vxlan "):
            m = re.search(r"dstport (\d+)", line)
            if m and int(m.group(1)) > 0:
                out["vxlan_port"] = int(m.group(1))
    return out


def split_server(url: str) -> tuple[str, int]:
    """https://HOST:PORT/path -> (HOST, PORT); [v6] brackets removed; 443 when no port."""
    m = re.match(r"^(?:https?://)?(\[[0-9A-Fa-f:.]+\]|[^:/]+)(?::(\d+))?", url.strip())
    if not m:
        raise TraceError(f"cannot read an API server address from {url!r}")
    host = m.group(1).strip("[]")
    return host, int(m.group(2) or 443)


# ---------------------------------------------------------------- flows from the API


class TraceError(Exception):
    pass


def _node_ip(node: dict[str, Any]) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or ():
        if a.get("type") == "InternalIP":
            return a.get("address")
    return None


def _pod_node(ip: str, nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> str | None:
    for p in pods:
        if (p.get("status") or {}).get("podIP") == ip:
            return (p.get("spec") or {}).get("nodeName")
    for n in nodes:
        for cidr in [(n.get("spec") or {}).get("podCIDR")] + list(
                (n.get("spec") or {}).get("podCIDRs") or []):
            try:
                if cidr and ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False):
                    return n["metadata"]["name"]
            except ValueError:
                continue
    return None


def nodeport_flow(api: Any, node: str, port: int | None) -> Flow:
    """workstation -> NodeIP:NodePort of `node` (the first TCP NodePort service, or the one on
    `port`); the path: the node, then every node holding an endpoint."""
    nodes = list(api.list_nodes())
    by = {n["metadata"]["name"]: n for n in nodes}
    if node not in by:
        raise TraceError(f"no node {node!r} (nodes: {', '.join(sorted(by))})")
    ip = _node_ip(by[node])
    if not ip:
        raise TraceError(f"node {node} has no InternalIP")
    chosen = None
    for s in sorted(api.list_services(), key=lambda s: (s["metadata"].get("namespace", ""),
                                                        s["metadata"]["name"])):
        for p in (s.get("spec") or {}).get("ports") or ():
            if p.get("nodePort") and p.get("protocol", "TCP") == "TCP" and (
                    port is None or int(p["nodePort"]) == port):
                chosen = (s, p)
                break
        if chosen:
            break
    if chosen is None:
        raise TraceError(f"no TCP NodePort service{f' on port {port}' if port else ''}")
    svc, sport = chosen
    np_port = int(sport["nodePort"])
    ns, name = svc["metadata"].get("namespace", "default"), svc["metadata"]["name"]
    eps: list[tuple[str, int, str | None]] = []
    pods = list(api.list_pods())
    for e in api.list_endpoints(ns):
        if e["metadata"]["name"] != name:
            continue
        for sub in e.get("subsets") or ():
            ports = sub.get("ports") or ()
            pnum = next((int(p["port"]) for p in ports if p.get("name") == sport.get("name")),
                        int(ports[0]["port"]) if ports else None)
            if pnum is None:
                continue
            for a in sub.get("addresses") or ():
                eps.append((a["ip"], pnum, a.get("nodeName") or _pod_node(a["ip"], nodes, pods)))
    entry_matches = [Match(ip, np_port)] + [Match(e[0], e[1]) for e in eps]
    route_to = eps[0][0] if eps else ip
    path = [PathNode(node, ip, "entry", tuple(entry_matches), route_to, bool(eps))]
    for n in sorted({e[2] for e in eps if e[2] and e[2] != node}):
        ms = tuple(Match(e[0], e[1]) for e in eps if e[2] == n)
        path.append(PathNode(n, _node_ip(by[n]), "destination", ms, ms[0].daddr, True))
    desc = (f"workstation -> {node} {ip}:{np_port} (service {ns}/{name}; endpoints "
            f"{', '.join(f'{e[0]}:{e[1]}@{e[2]}' for e in eps) or 'none'})")
    return Flow("nodeport", desc, ip, np_port, tuple(path))


def pod_flow(api: Any, src: str, dst: str, port: int | None) -> Flow:
    """pod `src` -> pod `dst` (NS/POD): the probe leaves from src's node (its netns when found)."""
    nodes = list(api.list_nodes())
    by = {n["metadata"]["name"]: n for n in nodes}
    pods = list(api.list_pods())

    def find(ref: str) -> dict[str, Any]:
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        for p in pods:
            m = p.get("metadata") or {}
            if m.get("name") == name and m.get("namespace", "default") == ns:
                return p
        raise TraceError(f"no pod {ns}/{name}")

    a, b = find(src), find(dst)
    a_ip, b_ip = (a.get("status") or {}).get("podIP"), (b.get("status") or {}).get("podIP")
    a_node, b_node = (a.get("spec") or {}).get("nodeName"), (b.get("spec") or {}).get("nodeName")
    if not (a_ip and b_ip and a_node and b_node):
        raise TraceError("both pods need an IP and a node")
    if port is None:
        port = next((int(cp["containerPort"]) for c in (b.get("spec") or {}).get("containers") or ()
                     for cp in c.get("ports") or () if cp.get("containerPort")), None)
    if port is None:
        raise TraceError(f"pod {dst} declares no containerPort: give --port")
    m = Match(b_ip, port)
    path = [PathNode(a_node, _node_ip(by[a_node]) if a_node in by else None, "source", (m,),
                     b_ip, False)]
    if b_node != a_node:
        path.append(PathNode(b_node, _node_ip(by[b_node]) if b_node in by else None,
                             "destination", (m,), b_ip, True))
    return Flow("pod", f"{src} ({a_ip}@{a_node}) -> {dst} {b_ip}:{port}@{b_node}", b_ip, port,
                tuple(path), probe_node=a_node,
                probe_command=probe_shell_command(b_ip, port, src_ip=a_ip))


def _node_by(api: Any, name: str) -> tuple[dict[str, dict[str, Any]], str]:
    by = {n["metadata"]["name"]: n for n in api.list_nodes()}
    if name not in by:
        raise TraceError(f"no node {name!r} (nodes: {', '.join(sorted(by))})")
    ip = _node_ip(by[name])
    if not ip:
        raise TraceError(f"node {name} has no InternalIP")
    return by, ip


def vxlan_flow(api: Any, src: str, dst: str, port: int | None = None) -> Flow:
    """node `src` -> node `dst` over flannel's VXLAN port (UDP, underlay InternalIP to InternalIP):
    the probe is UDP_PROBE_PAYLOAD sent from src's own network namespace; src marks it in output,
    dst in prerouting; delivered when dst saw it arrive and nothing dropped it."""
    by, s_ip = _node_by(api, src)
    _, d_ip = _node_by(api, dst)
    if src == dst:
        raise TraceError("trace vxlan needs two different nodes")
    port = int(port or DEFAULT_VXLAN_PORT)
    m = Match(d_ip, port, saddr=s_ip, proto="udp", length=UDP_PROBE_LENGTH)
    path = (PathNode(src, s_ip, "source", (m,), d_ip, False),
            PathNode(dst, d_ip, "destination", (m,), d_ip, False))
    return Flow("vxlan", f"{src} {s_ip} -> {dst} {d_ip}:{port}/udp (VXLAN underlay)", d_ip, port,
                path, probe_node=src, probe_command=udp_probe_command(d_ip, port),
                delivered_on_arrival=True)


def api_flow(api: Any, node: str, server: str, source: str = "") -> Flow:
    """node -> the API server address its kubelet uses (`server`, from its kubeconfig, a URL):
    a TCP connect from the node itself. When that address is another node's InternalIP, that node
    is on the path too."""
    by, ip = _node_by(api, node)
    host, port = split_server(server)
    try:
        dst = str(ipaddress.ip_address(host))
    except ValueError as exc:
        raise TraceError(f"the API server {host!r} is a name: resolve it on {node} first") from exc
    m = Match(dst, port)
    path = [PathNode(node, ip, "source", (m,), dst, False)]
    owner = next((n for n, o in sorted(by.items()) if _node_ip(o) == dst), None)
    if owner and owner != node:
        path.append(PathNode(owner, dst, "destination", (m,), dst, False))
    via = f" (from {source})" if source else ""
    return Flow("api", f"{node} {ip} -> API server {dst}:{port}{via}", dst, port, tuple(path),
                probe_node=node, probe_command=probe_shell_command(dst, port))


def node_pod_flow(api: Any, node: str, dst: str, port: int | None) -> Flow:
    """node -> pod (NS/POD, or a pod name in any namespace): the validation's pod-to-pod check,
    a TCP connect from the node itself to the pod's IP:port."""
    by, ip = _node_by(api, node)
    ns, _, name = dst.rpartition("/")
    pod = next((p for p in api.list_pods() if (p.get("metadata") or {}).get("name") == name
                and (not ns or (p.get("metadata") or {}).get("namespace", "default") == ns)),
               None)
    if pod is None:
        raise TraceError(f"no pod {dst}")
    b_ip, b_node = (pod.get("status") or {}).get("podIP"), (pod.get("spec") or {}).get("nodeName")
    if not (b_ip and b_node):
        raise TraceError(f"pod {dst} has no IP or node")
    if port is None:
        port = next((int(cp["containerPort"]) for c in (pod.get("spec") or {}).get("containers")
                     or () for cp in c.get("ports") or () if cp.get("containerPort")), None)
    if port is None:
        raise TraceError(f"pod {dst} declares no containerPort: give a port")
    m = Match(b_ip, int(port))
    path = [PathNode(node, ip, "source", (m,), b_ip, False)]
    if b_node != node:
        path.append(PathNode(b_node, _node_ip(by[b_node]) if b_node in by else None,
                             "destination", (m,), b_ip, True))
    return Flow("node-pod", f"{node} {ip} -> pod {name} {b_ip}:{port}@{b_node}", b_ip, int(port),
                tuple(path), probe_node=node, probe_command=probe_shell_command(b_ip, int(port)))


def trace_for_check(name: str, target: str, detail: str) -> tuple[str, tuple[Any, ...]] | None:
    """The trace of a validation check (core/validate.py's names and targets), or None when no
    packet flow stands behind it: nodeport SVC@NODE -> nodeport NODE PORT; pod-to-pod NODE->POD
    -> node-pod NODE POD PORT; node-ready NODE and worker-kubectl NODE -> api NODE."""
    if name == "nodeport" and "@" in target:
        port = re.search(r":(\d+)/", detail or "")
        return "nodeport", (target.rsplit("@", 1)[1], int(port.group(1)) if port else None)
    if name == "pod-to-pod" and "->" in target:
        node, pod = target.split("->", 1)
        port = re.search(r"^\S+ \S+?:(\d+)\b", detail or "")
        return "node-pod", (node, pod, int(port.group(1)) if port else None)
    if name in ("node-ready", "worker-kubectl") and target:
        return "api", (target,)
    return None


def trace_for_finding(node: str, nodes: Sequence[str]) -> tuple[str, tuple[Any, ...]] | None:
    """A finding on a node: the VXLAN path into it from a peer (the flow most node-level faults
    break: firewall, forwarding, flannel), to be edited before it runs."""
    peers = [n for n in nodes if n != node]
    if node not in nodes or not peers:
        return None
    return "vxlan", (peers[0], node)


FLOW_USAGE = ("nodeport NODE [PORT] | pod NS/POD NS/POD [PORT] | vxlan NODE NODE [PORT] | "
              "api NODE | node-pod NODE POD [PORT]")
_ARITY = {"nodeport": 1, "pod": 2, "vxlan": 2, "api": 1, "node-pod": 2}


def flow_text(kind: str, args: Sequence[Any]) -> str:
    """The one-line form of a flow (what the trace screen's field holds)."""
    return " ".join([kind] + [str(a) for a in args if a is not None])


def parse_flow_text(text: str) -> tuple[str, tuple[Any, ...]]:
    """`KIND ARG... [PORT]` -> (kind, args) as build_flow takes them; TraceError when malformed."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise TraceError(f"cannot read {text!r}: {exc}") from None
    if not words or words[0] not in _ARITY:
        raise TraceError(f"a flow is one of: {FLOW_USAGE}")
    kind, rest = words[0], words[1:]
    n = _ARITY[kind]
    port: int | None = None
    if len(rest) == n + 1 and kind != "api" and rest[-1].isdigit():
        port = int(rest.pop())
    if len(rest) != n:
        raise TraceError(f"a flow is one of: {FLOW_USAGE}")
    return kind, tuple(rest) + ((port,) if kind != "api" else ())


def resolve_command(host: str) -> str:
    return f"getent ahosts {q(host)} 2>/dev/null | awk 'NR==1 {{print $1}}'"


def build_flow(kind: str, args: Sequence[Any], api: Any,
               shells: Callable[[str, str | None], Any]) -> Flow:
    """The flow of `trace KIND ARGS...` (nodeport NODE [PORT] | pod A B [PORT] | vxlan A B [PORT]
    | api NODE | node-pod NODE POD [PORT]): vxlan and api first read the source node (one read-only command: the vxlan
    device's dstport, the kubelet kubeconfig's `server:` line)."""
    a = list(args) + [None] * 3
    if kind == "nodeport":
        return nodeport_flow(api, a[0], a[1])
    if kind == "pod":
        return pod_flow(api, a[0], a[1], a[2])
    if kind == "node-pod":
        return node_pod_flow(api, a[0], a[1], a[2])
    if kind not in ("vxlan", "api"):
        raise TraceError(f"unknown flow {kind!r}")
    _, ip = _node_by(api, a[0])
    shell = shells(a[0], ip)
    info = parse_node_info(shell.run(node_info_command(), timeout=20).stdout)
    if kind == "vxlan":
        return vxlan_flow(api, a[0], a[1], a[2] or info["vxlan_port"])
    if not info["server"]:
        raise TraceError(f"no kubelet kubeconfig with a server: line on {a[0]} (looked at "
                         f"{', '.join(KUBELET_KUBECONFIGS)})")
    host, port = split_server(info["server"])
    try:
        ipaddress.ip_address(host)
        server = info["server"]
    except ValueError:
        addr = shell.run(resolve_command(host), timeout=20).stdout.strip()
        if not addr:
            raise TraceError(f"{a[0]} cannot resolve the API server name {host!r}") from None
        server = f"{'[' + addr + ']' if ':' in addr else addr}:{port}"
    return api_flow(api, a[0], server, f"{info['server_source']}: {info['server']}")


# ---------------------------------------------------------------- running it


ActionRunner = Any
Journal = Any


def read_node(shell: Any, pn: PathNode, nt: NodeTrace | None = None) -> str:
    """One round trip: returns the legacy save; fills `nt` (route, ip_forward, MACs, neighbours)
    when given."""
    cmd = (f"{LEGACY_SAVE}; echo '@@route'; ip route get {q(pn.route_to)} 2>&1; echo \"@@rc $?\"; "
           "echo '@@fwd'; cat /proc/sys/net/ipv4/ip_forward 2>/dev/null; echo '@@links'; "
           "for d in /sys/class/net/*; do echo \"${d##*/} $(cat \"$d/address\" 2>/dev/null)\"; done; "
           "echo '@@neigh'; ip neigh show 2>/dev/null")
    r = shell.run(cmd, timeout=20)
    legacy, _, rest = r.stdout.partition("@@route\n")
    route, _, rest = rest.partition("@@rc ")
    rc, _, rest = rest.partition("@@fwd\n")
    fwd, _, rest = rest.partition("@@links\n")
    links, _, neigh = rest.partition("@@neigh\n")
    if nt is not None:
        nt.route, nt.route_ok = " ".join(route.split()), rc.strip().splitlines()[0:1] == ["0"]
        nt.forwarding, nt.macs, nt.neigh = fwd.strip(), parse_links(links), parse_neigh(neigh)
    return legacy


def run_trace(flow: Flow, shells: Callable[[str, str | None], Any], runner: ActionRunner,
              journal: Journal | None, prober: Any, trace_id: str,
              on_line: Callable[[str], None] | None = None,
              cancel: threading.Event | None = None, underlay: bool = True) -> dict[str, Any]:
    """Set up the trace tables (journaled), read the nodes, send the probe, read the traces,
    ALWAYS remove the tables (journaled rollback), then assemble the verdict. When the packet
    was sent from one path node over a VXLAN device and never arrived at the next, the
    encapsulating datagram is traced too (`underlay`, a `trace vxlan` between the two)."""
    from clusterfix_tui.core.fixes.apply import (
        RanAction,
        apply_plan,
        ran_from_outcome,
        rollback_plan,
    )

    say = on_line or (lambda s: None)
    per_node = {pn.node: list(pn.matches) for pn in flow.path}
    plan = setup_plan(trace_id, per_node, flow.probe_node)
    if journal is not None:
        journal.write("plan", step=STEP, plan=plan.to_dict())
        journal.write("decision", step=STEP, decision="approved",
                      action_ids=[a.id for a in plan.actions], by="trace")
    outcome = None
    nts = {pn.node: NodeTrace(pn.node, pn.role, needs_forwarding=pn.needs_forwarding)
           for pn in flow.path}
    connected: bool | None = None
    probe_detail = ""
    try:
        outcome = apply_plan(plan, [a.id for a in plan.actions], runner, journal)
        for o in outcome.actions:
            if o.status != "ok":
                nts[o.target].error = f"trace table not set up: {o.status} " + (
                    (o.result.stderr or o.result.error or "").strip()[-200:] if o.result else "")
                say(f"{o.target}: {nts[o.target].error}")
        pool: dict[str, Any] = {pn.node: shells(pn.node, pn.address) for pn in flow.path}
        for pn in flow.path:
            nt = nts[pn.node]
            nt.legacy_before = read_node(pool[pn.node], pn, nt)
        monitors: dict[str, str] = {}

        def monitor(pn: PathNode) -> None:
            # a second shell: the monitor must not share a channel with the probe
            r = shells(pn.node, pn.address).run(
                f"timeout {MONITOR_SECONDS} nft -a monitor trace 2>&1", timeout=MONITOR_SECONDS + 15)
            monitors[pn.node] = r.stdout
        threads = [threading.Thread(target=monitor, args=(pn,), daemon=True) for pn in flow.path]
        for t in threads:
            t.start()
        time.sleep(1.5)  # let every monitor subscribe before the probe leaves
        say(f"probe: {flow.description}")
        if flow.probe_node is None:
            connected, probe_detail = prober.tcp(flow.dst_ip, flow.dst_port, float(PROBE_SECONDS))
        else:
            r = pool[flow.probe_node].run(flow.probe_command, timeout=PROBE_SECONDS + 15)
            connected = r.ok
            probe_detail = (f"from {flow.probe_node}: exit {r.exit_code} "
                            f"{(r.stderr or r.error or '').strip()[-300:]}").strip()
        for t in threads:
            t.join(MONITOR_SECONDS + 20)
        for pn in flow.path:
            nt = nts[pn.node]
            nt.hops = parse_monitor(pn.node, monitors.get(pn.node, ""), table_name(trace_id))
            nt.marked = own_sightings(monitors.get(pn.node, ""), table_name(trace_id))
            nt.legacy_after = read_node(pool[pn.node], pn)
    finally:
        # every table is removed, whatever happened (the removal is idempotent): also when an
        # interrupt came while the set-up ran
        ran = ran_from_outcome(plan, outcome) if outcome is not None else []
        ran_ids = {r.action.id for r in ran}
        ran += [RanAction(STEP, a, None) for a in plan.actions if a.id not in ran_ids]
        if True:
            rb, _ = rollback_plan(ran, STEP)
            if rb.actions:
                rbo = apply_plan(rb, [a.id for a in rb.actions], runner, journal)
                for o in rbo.actions:
                    if o.status not in ("ok", "already-done"):
                        say(f"{o.target}: REMOVING THE TRACE TABLE FAILED ({o.status}): run "
                            f"`{o.command}` there, or `clusterfix-tui rollback --journal ...`")
    if flow.delivered_on_arrival and connected:
        # sent: delivered only when the last node saw it arrive (and, below, nothing dropped it)
        connected = "pre" in nts[flow.path[-1].node].marked
    res = verdict(list(nts.values()), connected, probe_detail)
    if underlay and not flow.delivered_on_arrival:
        _follow_underlay(flow, nts, res, shells, runner, journal, trace_id, say)
    res.update(flow=flow.kind, description=flow.description, trace_id=trace_id,
               table=f"inet {table_name(trace_id)}",
               nodes=[{"node": n.node, "role": n.role, "route": n.route,
                       "ip_forward": n.forwarding, "error": n.error, "seen": n.marked}
                      for n in nts.values()])
    if journal is not None and underlay:
        journal.write("trace", **journal_event(res))
    return res


def hop_path(res: dict[str, Any], limit: int = 60) -> list[str]:
    """The verdict path, one line a hop: `node: family table chain #handle: rule -> verdict`
    (packet hops left out; at most `limit` lines, the last one saying how many were cut)."""
    lines = []
    for h in res.get("hops") or ():
        if h.get("kind") == "packet":
            continue
        hd = f" #{h['handle']}" if h.get("handle") is not None else ""
        lines.append(f"{h['node']}: {h['family']} {h['table']} {h['chain']}{hd}: "
                     f"{h.get('rule') or h.get('kind')} -> {h.get('verdict') or '-'}")
    if len(lines) > limit:
        lines = lines[:limit - 1] + [f"... {len(lines) - limit + 1} more hop(s)"]
    return lines


def journal_event(res: dict[str, Any]) -> dict[str, Any]:
    """The `trace` journal event's fields (core/record.py replays it into the report's
    "traces"): the flow, its verdict, where it died and the hop path."""
    return {"flow": res.get("flow"), "description": res.get("description"),
            "trace_id": res.get("trace_id"), "verdict": res.get("verdict"),
            "where": res.get("where"), "path": hop_path(res), "notes": res.get("notes") or [],
            "underlay": (res.get("underlay") or {}).get("verdict")}


def _follow_underlay(flow: Flow, nts: dict[str, NodeTrace], res: dict[str, Any],
                     shells: Callable[[str, str | None], Any], runner: ActionRunner,
                     journal: Journal | None, trace_id: str, say: Callable[[str], None]) -> None:
    """Lost between path nodes A and B, A routing it over device D: when D is a VXLAN device,
    trace A -> B on D's UDP port (a second, separately journaled set of trace tables) and let
    the place the datagram died speak for the inner packet."""
    if res.get("verdict") != "lost" or not str((res.get("where") or {}).get("rule") or ""
                                                   ).startswith("sent from "):
        return
    order = [nts[pn.node] for pn in flow.path]
    seen = [n for n in order if n.saw()]
    missing = [n for n in order if not n.saw()]
    if not seen or not missing:
        return
    a, b = seen[-1], missing[0]
    pa = next(pn for pn in flow.path if pn.node == a.node)
    pb = next(pn for pn in flow.path if pn.node == b.node)
    dev = re.search(r"\bdev (\S+)", a.route)
    if not (dev and pa.address and pb.address):
        return
    info = parse_node_info(shells(a.node, pa.address).run(
        node_info_command(dev.group(1)), timeout=20).stdout)
    if not info["vxlan_port"]:
        return
    port = info["vxlan_port"]
    m = Match(pb.address, port, saddr=pa.address, proto="udp", length=UDP_PROBE_LENGTH)
    sub_flow = Flow("vxlan", f"{a.node} {pa.address} -> {b.node} {pb.address}:{port}/udp "
                    f"(the VXLAN datagram carrying it over {dev.group(1)})", pb.address, port,
                    (PathNode(a.node, pa.address, "source", (m,), pb.address, False),
                     PathNode(b.node, pb.address, "destination", (m,), pb.address, False)),
                    probe_node=a.node, probe_command=udp_probe_command(pb.address, port),
                    delivered_on_arrival=True)
    say(f"lost between {a.node} and {b.node}: tracing the underlay, {sub_flow.description}")
    sub = run_trace(sub_flow, shells, runner, journal, None, trace_id[:15] + "u", say,
                    underlay=False)
    res["underlay"] = {k: sub[k] for k in ("verdict", "where", "description", "trace_id",
                                          "table", "probe")}
    res["hops"] = list(res["hops"]) + list(sub["hops"])
    res["notes"] = list(res["notes"]) + list(sub["notes"])
    w = sub["where"]
    if sub["verdict"] in ("dropped", "rejected", "no-route"):
        res["verdict"], res["where"] = sub["verdict"], w
        res["notes"].append(
            f"the packet left {a.node} over {dev.group(1)} (VXLAN udp/{port}) and never arrived "
            f"at {b.node}: the VXLAN datagram {a.node} -> {b.node} was {sub['verdict']} at "
            f"{w.get('node')} {w.get('table') or ''} {w.get('chain') or ''}".rstrip())
    elif sub["verdict"] == "lost":
        res["notes"].append(
            f"the VXLAN datagram {a.node} -> {b.node} (udp/{port}) never arrived either: it is "
            f"dropped between the nodes (a security group, a network ACL, an underlay "
            f"firewall) or by a netdev ingress filter on {b.node}")
    else:
        res["notes"].append(
            f"VXLAN datagrams {a.node} -> {b.node} (udp/{port}) arrive: the inner packet was "
            f"lost in the encapsulation itself (the VTEP/FDB entries for {b.node} on {a.node}, "
            f"{dev.group(1)} on {b.node})")
