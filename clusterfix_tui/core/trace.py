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
    """What one node's trace rule marks: TCP SYNs to daddr:dport (from saddr when known)."""

    daddr: str
    dport: int
    saddr: str | None = None

    def nft(self) -> str:
        fam = "ip6" if ":" in self.daddr else "ip"
        src = f"{fam} saddr {self.saddr} " if self.saddr else ""
        return (f"{src}{fam} daddr {self.daddr} tcp dport {int(self.dport)} "
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
        if n.needs_forwarding and n.forwarding.strip() == "0" and n.hops:
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
    seen = [n for n in nodes if n.hops]
    missing = [n for n in nodes if not n.hops]
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
    kind: str  # nodeport | pod
    description: str
    dst_ip: str
    dst_port: int
    path: tuple[PathNode, ...]
    probe_node: str | None = None  # None: from the workstation
    probe_command: str = ""


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
              cancel: threading.Event | None = None) -> dict[str, Any]:
    """Set up the trace tables (journaled), read the nodes, send the probe, read the traces,
    ALWAYS remove the tables (journaled rollback), then assemble the verdict."""
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
    res = verdict(list(nts.values()), connected, probe_detail)
    res.update(flow=flow.kind, description=flow.description, trace_id=trace_id,
               table=f"inet {table_name(trace_id)}",
               nodes=[{"node": n.node, "role": n.role, "route": n.route,
                       "ip_forward": n.forwarding, "error": n.error} for n in nts.values()])
    return res
