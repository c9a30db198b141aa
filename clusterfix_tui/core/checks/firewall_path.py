"""Which cluster flows a node's firewall drops: the packet path, evaluated rule by rule.

Pure, no I/O. A *flow* is a class of packets the cluster needs (flannel's VXLAN from the peers,
kubelet, the API server, NodePorts, forwarded pod traffic), with what is known about it: hook,
family, protocol, destination ports, source/destination networks, interfaces, conntrack state
(NEW: the first packet of a connection, which is what a firewall decides on).

`evaluate_iptables(table, flow)` / `evaluate_nft(ruleset, chain, flow)` walk the base chain of the
flow's hook in order, following jumps/gotos, and match every rule's criteria against the flow three
ways: the rule matches every packet of the flow ("full"), some ("partial"), or none. An ACCEPT that
matches fully ends the walk (the flow passes); a DROP/REJECT that matches at all is a hit (some of
the flow dies there); the end of a base chain applies its policy. Criteria this module does not
understand are "partial": enough to flag a DROP/REJECT, never enough to call a flow accepted (a
false "blocked" is shown with the rule; a false "open" would hide the fault).

kube-proxy's, flannel's and other CNI's own chains (KUBE-*, FLANNEL-*, ...) are followed for their
ACCEPTs but their DROP/REJECTs are theirs by design (no-endpoint rejects, INVALID drops): never
a finding.
"""

from __future__ import annotations

import bisect
import collections
import ipaddress
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.checks._common import _net_of
from clusterfix_tui.core.parsers import NftChain, NftRule, NftRuleset, Rule, Table

FULL, PARTIAL, NONE = 2, 1, 0
OWN_CHAIN_PREFIXES = ("KUBE-", "FLANNEL-", "CILIUM", "cali-", "WEAVE", "ANTREA")
# native nft tables the cluster's own components write whole (every chain theirs): kube-proxy's
# nftables mode (`table ip kube-proxy` / `ip6 kube-proxy`: its cluster-ips-check rejects traffic to
# invalid ClusterIP ports and drops unallocated ClusterIPs, by design; it rewrites the table on
# every sync) and flannel's nftables mode (`flannel-ipv4` / `flannel-ipv6`); calico's nftables
# dataplane (`ip calico` / `ip6 calico`: felix's one table per family, its chains named
# <layer>-cali-*, the nft form of the cali-* chains; felix rewrites it)
OWN_NFT_TABLES = {("ip", "kube-proxy"), ("ip6", "kube-proxy"), ("ip", "flannel-ipv4"),
                  ("ip6", "flannel-ipv6"), ("ip", "calico"), ("ip6", "calico")}
# docker's own nft tables (docker 29+ with "firewall-backend": "nftables": `table ip|ip6
# docker-bridges`, moby's nftables firewaller): dockerd rewrites them (and sets filter-FORWARD's
# policy to drop when it enabled IP forwarding itself); there is no DOCKER-USER in them. Nothing
# is ever planned into them (their drops are still found, as docker's iptables chains' are)
DOCKER_NFT_TABLES = {("ip", "docker-bridges"), ("ip6", "docker-bridges")}
DOCKER_NFT_FIX = ("dockerd rewrites it on restart, so nothing is planned there: set "
                  "\"ip-forward-no-drop\": true in /etc/docker/daemon.json and restart docker "
                  "(its filter-FORWARD policy then stays accept), or accept the flow there by hand")
UNKNOWN_IF = "?"  # an interface whose name is not known
NODEPORT_RANGE = (30000, 32767)
DEFAULT_VXLAN_PORT = 8472
KUBELET_PORT = 10250
DEFAULT_API_PORT = 6443
# iptables-nft's own tables (judged from iptables-nft-save, not from the nft JSON)
IPTABLES_NFT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
_MAX_STEPS = 20000
MAX_FLOW_ADDRS = 64  # addresses of one flow kept in a finding's data


@dataclass(frozen=True)
class Flow:
    name: str  # "vxlan-in", "kubelet", "pods-forward", ...
    hook: str  # "input" | "forward" | "output"
    family: str  # "ip" | "ip6"
    describe: str  # for humans: "flannel VXLAN from the peers (udp/8472)"
    proto: str | None = None  # "tcp" | "udp" | None (any)
    dports: tuple[int, int] | None = None
    saddrs: Sequence[str] | None = None  # CIDRs (a tuple, or a NetSet); None: any source
    daddrs: Sequence[str] | None = None
    iifs: tuple[str, ...] | None = None  # possible input interfaces; None: any
    oifs: tuple[str, ...] | None = None
    dnat: bool = False  # the packet was DNATed (ct status dnat)
    accept_on: str = ""  # forward flows: the side the narrow ACCEPT matches ("saddr"/"daddr")

    def ports_text(self) -> str:
        if self.dports is None:
            return ""
        lo, hi = self.dports
        return f"{self.proto}/{lo}" if lo == hi else f"{self.proto}/{lo}-{hi}"

    def to_dict(self) -> dict[str, Any]:
        """For a finding's data. An address list longer than MAX_FLOW_ADDRS (every peer of a big
        cluster, in every node's finding: N^2 in the JSON and the journal) keeps its first
        MAX_FLOW_ADDRS entries and says how many there were ("saddrs_total")."""
        out: dict[str, Any] = {"name": self.name, "hook": self.hook, "family": self.family,
                               "describe": self.describe, "proto": self.proto,
                               "dports": list(self.dports) if self.dports else None}
        for key, val in (("saddrs", self.saddrs), ("daddrs", self.daddrs)):
            if val is None:
                out[key] = None
            elif len(val) > MAX_FLOW_ADDRS:
                out[key] = list(val[:MAX_FLOW_ADDRS])
                out[f"{key}_total"] = len(val)
            else:
                out[key] = list(val)
        return out


@dataclass(frozen=True)
class Hit:
    """Where a flow dies: a rule (spec/text) or a chain's policy."""

    kind: str  # "rule" | "policy"
    chain: str  # the chain holding the rule (or the base chain for a policy)
    base_chain: str  # the hook's base chain the walk started from
    verdict: str  # "DROP" | "REJECT"
    rule: str = ""  # iptables-save spec, or rendered nft rule
    handle: int | None = None  # nft rule handle
    path: tuple[str, ...] = ()  # chains walked to get there
    match: str = "full"  # "full" | "partial"
    json: str = ""  # nft: the rule's JSON as `nft -j -a list` prints it (from "handle" on)
    # drops of a set's addresses (blocklists: fail2ban's ipsets, crowdsec's nft sets) the flow
    # passed before this one, not blamed (see _OP_SET): an accept at the top of the base chain
    # would run ahead of them and let the set's addresses in: (chain, rule, why) each
    blocklists: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chain": self.chain, "base_chain": self.base_chain,
                "verdict": self.verdict, "rule": self.rule, "handle": self.handle,
                "path": list(self.path), "match": self.match}


# -- the cluster's flows -------------------------------------------------------------------------


def _net(c: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = str(c).strip()
    if len(text) <= 64:
        return _net_of(text)  # parsed once per distinct text (every node's rules repeat them)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _fam(cidr: str) -> str:
    n = _net(cidr)
    return "ip6" if n is not None and n.version == 6 else "ip"


def underlay_ifaces(facts: Any, node_ip: str | None) -> tuple[str, ...]:
    """The interface(s) carrying the node's address (where VXLAN and node traffic arrive)."""
    out: list[str] = []
    for link in getattr(facts, "addrs", ()) or ():
        if not isinstance(link, dict):
            continue
        for a in link.get("addr_info") or ():
            if isinstance(a, dict) and node_ip and a.get("local") == node_ip and link.get("ifname"):
                out.append(str(link["ifname"]))
    if not out:
        for link in getattr(facts, "links", ()) or ():
            if isinstance(link, dict) and link.get("ifname") == "flannel.1":
                data = ((link.get("linkinfo") or {}).get("info_data") or {})
                if isinstance(data, dict) and isinstance(data.get("link"), str):
                    out.append(data["link"])
    return tuple(dict.fromkeys(out)) or (UNKNOWN_IF,)


def vxlan_port(facts: Any, snapshot: Any = None) -> int:
    """flannel.1's UDP port as the node's kernel has it, else the cluster's net-conf, else 8472."""
    for link in getattr(facts, "links", ()) or ():
        if isinstance(link, dict) and link.get("ifname") == "flannel.1":
            data = ((link.get("linkinfo") or {}).get("info_data") or {})
            port = data.get("port") if isinstance(data, dict) else None
            if isinstance(port, int) and 0 < port < 65536:
                return port
    fl = getattr(getattr(snapshot, "shape", None), "flannel", None)
    port = getattr(fl, "vxlan_port", None)
    if isinstance(port, int) and 0 < port < 65536:
        return port
    return DEFAULT_VXLAN_PORT


def api_port(facts: Any) -> int:
    """The API server port of the cluster's own view (the node's kubelet.conf), else 6443."""
    for path in ("/etc/kubernetes/kubelet.conf", "/etc/kubernetes/admin.conf"):
        server = (getattr(facts, "kubeconfigs", {}) or {}).get(path)
        if server and "://" in server:
            hostport = server.split("://", 1)[1].split("/", 1)[0]
            if hostport.rsplit(":", 1)[-1].isdigit() and not hostport.endswith("]"):
                return int(hostport.rsplit(":", 1)[-1])
            return 443
    return DEFAULT_API_PORT


def pod_networks(snapshot: Any, facts: Any) -> list[str]:
    """Every family's pod network, as the FORWARD_DROP check reads it (checks._common.pod_networks:
    flannel's Network / IPv6Network, else kube-proxy's clusterCIDR, else the nodes' podCIDRs),
    the nodes' podCIDRs collapsed into the fewest networks covering exactly them. Was: flannel's
    only, else 10.244.0.0/16, so on a calico or cilium cluster the forwarded pod flows were
    flannel's default network: a FORWARD reject of the real pod network was never reached, and
    the planned accepts opened 10.244.0.0/16."""
    from clusterfix_tui.core.checks._common import pod_networks as by_family

    out: list[str] = []
    for v in (4, 6):
        nets = [n for n in (_net(c) for c in by_family(snapshot, facts, v)) if n is not None]
        if len(nets) > 1:
            nets = list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]
        out.extend(str(n) for n in nets if str(n) not in out)
    return out


class NetSet(Sequence[str]):
    """A flow's addresses (a sequence of CIDR strings that reads, compares, hashes and prints as
    the tuple it stands for) drawn from the cluster's node addresses: it also carries the
    cluster's `ClusterHosts` index so that `match_addr` tests a rule's networks against every node
    address with bisections instead of one `subnet_of` per node (that was node x peers per rule:
    quadratic over a cluster). Its items are not copied per node (every node's peers were an
    N-long tuple, N^2 over a cluster): `base` is the cluster's sorted tuple, shared, read
    without its index `skip` (the node itself) and followed by `tail`.

    `versions`: the IP versions of the host addresses it holds (every node address of those
    versions), `excluded`: one (version, int) host left out (the node itself, for "the peers"),
    `extras`: members that are not node addresses (the pod networks, ...)."""

    __slots__ = ("base", "skip", "tail", "hosts", "versions", "excluded", "extras", "_n")

    def __init__(self, base: tuple[str, ...], skip: int | None, tail: tuple[str, ...],
                 hosts: ClusterHosts, versions: tuple[int, ...],
                 excluded: tuple[int, int] | None = None, extras: tuple[str, ...] = ()) -> None:
        self.base, self.skip, self.tail = base, skip, tail
        self.hosts, self.versions, self.excluded, self.extras = hosts, versions, excluded, extras
        self._n = len(base) - (skip is not None) + len(tail)

    def __len__(self) -> int:
        return self._n

    def _at(self, k: int) -> str:
        nb = len(self.base) - (self.skip is not None)
        if k < nb:
            return self.base[k + 1 if self.skip is not None and k >= self.skip else k]
        return self.tail[k - nb]

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return tuple(self._at(i) for i in range(*k.indices(self._n)))
        k = k.__index__()
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError("NetSet index out of range")
        return self._at(k)

    def __iter__(self) -> Iterator[str]:
        if self.skip is None:
            return itertools.chain(self.base, self.tail)
        return itertools.chain(itertools.islice(self.base, self.skip),
                               itertools.islice(self.base, self.skip + 1, None), self.tail)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, NetSet)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))

    def match(self, rnets: list[Any]) -> int:
        ext = [n for n in (_net(c) for c in self.extras) if n is not None]
        total = covered = 0
        for v in self.versions:
            addrs = self.hosts.ints[v]
            merged: list[list[int]] = []
            for lo, hi in sorted((int(rn.network_address), int(rn.broadcast_address))
                                 for rn in rnets if rn.version == v):
                if merged and lo <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            n_v = len(addrs)
            cov = sum(bisect.bisect_right(addrs, hi) - bisect.bisect_left(addrs, lo)
                      for lo, hi in merged)
            if self.excluded is not None and self.excluded[0] == v:
                x = self.excluded[1]
                n_v -= 1
                if any(lo <= x <= hi for lo, hi in merged):
                    cov -= 1
            total += n_v
            covered += cov
        if total == 0 and not ext:
            return PARTIAL
        if covered == total and all(any(fn.version == rn.version and fn.subnet_of(rn)  # type: ignore[arg-type]
                                        for rn in rnets) for fn in ext):
            return FULL
        some = covered > 0 or any(fn.version == rn.version and fn.overlaps(rn)  # type: ignore[arg-type]
                                  for fn in ext for rn in rnets)
        return PARTIAL if some else NONE


class ClusterHosts:
    """Every node's address as a host CIDR, indexed once per check run (not once per node)."""

    def __init__(self, nodes: dict[str, Any]) -> None:
        # node -> its flannel IPv6 underlay address (/128) or None; made on first use
        self.v6_underlay: dict[str, str | None] | None = None
        self.by_node: dict[str, str] = {}
        for name, n in nodes.items():
            ip = getattr(n, "internal_ip", None)
            if ip:
                self.by_node[name] = f"{ip}/{128 if ':' in ip else 32}"
        self.sorted: tuple[str, ...] = tuple(sorted(self.by_node.values()))
        self.count: dict[str, int] = {}
        for c in self.sorted:
            self.count[c] = self.count.get(c, 0) + 1
        self.uniq: tuple[str, ...] = tuple(self.count)  # sorted (dicts keep insertion order)
        self.fam: dict[str, str] = {}
        self.host: dict[str, tuple[int, int] | None] = {}  # cidr -> (version, int) of a host net
        net_count: dict[tuple[int, int], int] = {}
        ints: dict[int, set[int]] = {4: set(), 6: set()}
        self.nonhost: list[str] = []
        for c in self.uniq:
            n = _net(c)
            self.fam[c] = "ip6" if n is not None and n.version == 6 else "ip"
            key = None
            if n is not None:
                if n.prefixlen == n.max_prefixlen:
                    key = (n.version, int(n.network_address))
                    ints[n.version].add(key[1])
                    net_count[key] = net_count.get(key, 0) + self.count[c]
                else:
                    self.nonhost.append(c)
            self.host[c] = key
        self.net_count = net_count
        self.ints: dict[int, list[int]] = {v: sorted(x) for v, x in ints.items()}
        self.by_fam: dict[str, tuple[str, ...]] = {
            f: tuple(c for c in self.uniq if self.fam[c] == f) for f in ("ip", "ip6")}

    @staticmethod
    def _without(items: tuple[str, ...], c: str) -> tuple[str, ...]:
        i = bisect.bisect_left(items, c)
        if i < len(items) and items[i] == c:
            return items[:i] + items[i + 1:]
        return items

    @staticmethod
    def _index(items: tuple[str, ...], c: str | None) -> int | None:
        """Where _without(items, c) leaves one out (None: nothing left out)."""
        if c is None:
            return None
        i = bisect.bisect_left(items, c)
        return i if i < len(items) and items[i] == c else None

    def peers(self, node: str) -> Sequence[str]:
        """Every other node's address, sorted (duplicates kept, as the nodes have them)."""
        m = self.by_node.get(node)
        if self.nonhost:  # not a host network (cannot happen with an IP): no index
            return self._without(self.sorted, m) if m is not None else self.sorted
        ex = None
        key = self.host.get(m) if m is not None else None
        if key is not None and self.net_count.get(key, 0) == 1:
            ex = key
        return NetSet(self.sorted, self._index(self.sorted, m), (), self, (4, 6), ex)

    def members(self, node: str, extras: list[str]) -> tuple[str, ...]:
        """tuple(dict.fromkeys((*peers, *mine, *extras))): the peers (deduplicated), the node
        itself, then the extras that are not node addresses."""
        m = self.by_node.get(node)
        if m is not None and self.count.get(m) == 1:
            base = self._without(self.uniq, m) + (m,)
        else:
            base = self.uniq
        ext = tuple(c for c in dict.fromkeys(extras) if c not in self.count)
        return base + ext

    def of_family(self, node: str, fam: str, extras: list[str]) -> Sequence[str] | None:
        """The members of one family, in members() order (None when there is none)."""
        m = self.by_node.get(node)
        hosts = self.by_fam[fam]
        skip: int | None = None
        mine: tuple[str, ...] = ()
        if m is not None and self.count.get(m) == 1 and self.fam[m] == fam:
            skip, mine = self._index(hosts, m), (m,)
        ext = tuple(c for c in dict.fromkeys(extras) if c not in self.count and _fam(c) == fam)
        if len(hosts) - (skip is not None) + len(mine) + len(ext) == 0:
            return None
        if self.nonhost:
            return (self._without(hosts, mine[0]) if mine else hosts) + mine + ext
        return NetSet(hosts, skip, mine + ext, self, (6,) if fam == "ip6" else (4,), None, ext)


PUBLIC_IPV6 = "flannel.alpha.coreos.com/public-ipv6"
V6_BACKEND = "flannel.alpha.coreos.com/backend-v6-data"


def _underlay6(n: Any) -> str | None:
    """A node's IPv6 underlay address for flannel's IPv6 VXLAN (flannel-v6.1): its public-ipv6
    annotation, else its IPv6 InternalIP, when flannel runs IPv6 on it (the annotations)."""
    ann = getattr(n, "annotations", None) or {}
    if PUBLIC_IPV6 not in ann and V6_BACKEND not in ann:
        return None
    ip = ann.get(PUBLIC_IPV6)
    if not ip:
        ip = next((str(a.get("address")) for a in getattr(n, "addresses", ()) or ()
                   if isinstance(a, dict) and a.get("type") == "InternalIP"
                   and ":" in str(a.get("address") or "")), None)
    n6 = _net(ip) if ip else None
    return f"{n6.network_address}/128" if n6 is not None and n6.version == 6 else None


def _vxlan6_flows(nodes: dict[str, Any], node: str, facts: Any, hosts: ClusterHosts,
                  port: int) -> list[Flow]:
    """flannel's IPv6 VXLAN (dual stack: flannel-v6.1 encapsulates to the peers' IPv6 underlay
    addresses, udp/<port> over IPv6): what ip6tables / an inet table must let through."""
    cache = hosts.v6_underlay
    if cache is None:
        cache = hosts.v6_underlay = {name: _underlay6(n) for name, n in nodes.items()}
    mine = cache.get(node)
    if mine is None:
        return []
    peers = tuple(sorted(c for name, c in cache.items() if c is not None and name != node))
    if not peers:
        return []
    under = underlay_ifaces(facts, mine.split("/")[0])
    return [Flow("vxlan6-in", "input", "ip6", f"flannel IPv6 VXLAN from the peers (udp/{port})",
                 "udp", (port, port), peers, (mine,), under, None),
            Flow("vxlan6-out", "output", "ip6", f"flannel IPv6 VXLAN to the peers (udp/{port})",
                 "udp", (port, port), (mine,), peers, None, under)]


def cluster_flows(snapshot: Any, node: str, facts: Any,
                  hosts: ClusterHosts | None = None) -> list[Flow]:
    """The flows `node` must let through. `hosts`: the cluster's ClusterHosts, built once by a
    caller that asks for many nodes (built here otherwise)."""
    nodes = getattr(snapshot, "nodes", {}) or {}
    if hosts is None:
        hosts = ClusterHosts(nodes)
    me = nodes.get(node)
    my_ip = getattr(me, "internal_ip", None)
    peers = hosts.peers(node)
    mine = (f"{my_ip}/{128 if ':' in my_ip else 32}",) if my_ip else None
    under = underlay_ifaces(facts, my_ip)
    port = vxlan_port(facts, snapshot)
    aport = api_port(facts)
    fam = _fam(my_ip) if my_ip else "ip"
    flows: list[Flow] = []
    shape = getattr(snapshot, "shape", None)
    if shape is not None:
        # an unknown CNI: flannel's VXLAN only where the node has flannel.1 (flanneld run
        # outside the cluster, e.g. under systemd); never on a CNI not known to use it
        vxlan = bool(shape.flannel_vxlan) or shape.cni == "unknown" and any(
            isinstance(x, dict) and x.get("ifname") == "flannel.1"
            for x in getattr(facts, "links", ()) or ())
    else:
        vxlan = (getattr(snapshot, "flannel_backend", None) or "vxlan").lower() == "vxlan"
    if vxlan and len(nodes) != 1:
        flows.append(Flow("vxlan-in", "input", fam, f"flannel VXLAN from the peers (udp/{port})",
                          "udp", (port, port), peers or None, mine, under, None))
        flows.append(Flow("vxlan-out", "output", fam, f"flannel VXLAN to the peers (udp/{port})",
                          "udp", (port, port), mine, peers or None, None, under))
        flows.extend(_vxlan6_flows(nodes, node, facts, hosts, port))
    pods = pod_networks(snapshot, facts)
    # cluster traffic comes from the cluster: the nodes and the pods (a blocklist for some
    # outside range is the admin's business, not a finding)
    # members: tuple(dict.fromkeys((*peers, *mine, *pods))); of(fam): its members of one family
    of_cache: dict[str, Sequence[str] | None] = {}

    def of(fam_: str) -> Sequence[str] | None:
        if fam_ not in of_cache:
            of_cache[fam_] = hosts.of_family(node, fam_, pods)
        return of_cache[fam_]

    flows.append(Flow("kubelet", "input", fam, f"the kubelet API (tcp/{KUBELET_PORT})", "tcp",
                      (KUBELET_PORT, KUBELET_PORT), of(fam), mine, (*under, "cni0"), None))
    if me is None or getattr(me, "is_control_plane", False):
        flows.append(Flow("apiserver", "input", fam, f"the API server (tcp/{aport})", "tcp",
                          (aport, aport), of(fam), mine, (*under, "cni0"), None))
    lo, hi = NODEPORT_RANGE
    flows.append(Flow("nodeport", "input", fam, f"NodePorts (tcp/{lo}-{hi})", "tcp", (lo, hi),
                      of(fam), mine, (*under, "cni0"), None))
    pod_side = ("cni0", "flannel.1")
    for cidr in pods:
        f = _fam(cidr)
        flows.append(Flow("pods-forward", "forward", f, f"forwarded pod traffic from {cidr}",
                          None, None, (cidr,), of(f), pod_side, (*pod_side, *under),
                          accept_on="saddr"))
        flows.append(Flow("to-pods-forward", "forward", f, f"forwarded traffic to pods in {cidr}",
                          None, None, of(f), (cidr,), (*pod_side, *under), pod_side,
                          accept_on="daddr"))
    return flows


# -- three-way matching --------------------------------------------------------------------------


def _and(*vals: int) -> int:
    return min(vals) if vals else FULL


def _not(v: int) -> int:
    return FULL - v if v != PARTIAL else PARTIAL


def match_addr(flow_nets: Sequence[str] | None, family: str, rule_cidrs: list[str]) -> int:
    if flow_nets is None:
        return PARTIAL
    rnets = [n for n in (_net(c) for c in rule_cidrs) if n is not None]
    if not rnets:
        return PARTIAL
    if isinstance(flow_nets, NetSet):
        return flow_nets.match(rnets)
    fnets = [n for n in (_net(c) for c in flow_nets) if n is not None]
    if not fnets:
        return PARTIAL
    full = all(any(fn.version == rn.version and fn.subnet_of(rn) for rn in rnets)  # type: ignore[arg-type]
               for fn in fnets)
    if full:
        return FULL
    some = any(fn.version == rn.version and fn.overlaps(rn) for fn in fnets for rn in rnets)  # type: ignore[arg-type]
    return PARTIAL if some else NONE


def _port_ranges(text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for part in str(text).split(","):
        part = part.strip()
        a, sep, b = part.partition(":") if ":" in part else part.partition("-")
        try:
            lo = int(a) if a else 0
            hi = int(b) if sep and b else (65535 if sep else lo)
        except ValueError:
            return []
        out.append((min(lo, hi), max(lo, hi)))
    return out


def match_ports(flow_ports: tuple[int, int] | None, ranges: list[tuple[int, int]]) -> int:
    if flow_ports is None or not ranges:
        return PARTIAL
    lo, hi = flow_ports
    covered = 0
    for a, b in ranges:
        x, y = max(a, lo), min(b, hi)
        if x <= y:
            covered += y - x + 1
    total = hi - lo + 1
    return FULL if covered >= total else PARTIAL if covered else NONE


def match_iface(flow_ifs: tuple[str, ...] | None, names: list[str]) -> int:
    if flow_ifs is None or not names:
        return PARTIAL
    res: list[bool | None] = []
    for f in flow_ifs:
        if f == UNKNOWN_IF:
            res.append(None)
            continue
        res.append(any(f == n or (n.endswith("+") and f.startswith(n[:-1])) or
                       (n.endswith("*") and f.startswith(n[:-1])) for n in names))
    if all(r is True for r in res):
        return FULL
    if all(r is False for r in res):
        return NONE
    return PARTIAL


def match_proto(flow: Flow, proto: str) -> int:
    p = proto.lower()
    if p in ("all", "0"):
        return FULL
    if flow.proto is None:
        return PARTIAL
    names = {"tcp": ("tcp", "6"), "udp": ("udp", "17")}.get(flow.proto, (flow.proto,))
    return FULL if p in names else NONE


def match_ctstate(flow: Flow, states: list[str]) -> int:
    return _ctstate(flow, {x.strip().lower() for x in states})


def _ctstate(flow: Flow, states: set[str]) -> int:
    """match_ctstate for states already lower-cased (a compiled rule's operand)."""
    if flow.dnat and "dnat" in states:
        return FULL
    return FULL if "new" in states else NONE


# address types a destination can have (iptables -m addrtype --dst-type, nft `fib daddr type`)
# that no cluster flow's packets have: every flow here is unicast by construction (VXLAN to a
# peer, TCP to the node's own address, forwarded pod traffic), so a broadcast/multicast test
# (ufw's ufw-not-local and ufw-after-input, firewalld's) never matches one
_NOT_UNICAST_TYPES = frozenset(("broadcast", "multicast", "anycast", "blackhole", "unreachable",
                                "prohibit", "throw", "nat", "xresolve"))


def match_dst_type(flow: Flow, types: Any) -> int:
    """A destination address type test (`types`: the type words; None: not understood) for one
    flow: LOCAL is every input flow's destination (the node's own address) and no forwarded
    flow's; the non-unicast types are no flow's; anything else (UNICAST, an output flow's LOCAL,
    an unknown word) is PARTIAL."""
    if not types:
        return PARTIAL
    ts = {str(t).lower() for t in types}
    if ts <= _NOT_UNICAST_TYPES:
        return NONE
    if ts <= _NOT_UNICAST_TYPES | {"local"}:
        return FULL if flow.hook == "input" else NONE if flow.hook == "forward" else PARTIAL
    return PARTIAL


# -- iptables ------------------------------------------------------------------------------------


def match_iptables_rule(rule: Rule, flow: Flow) -> int:
    return _match_ops(compile_iptables_rule(rule.args), flow)


# what a rule's matches test, read once per rule (`compile_iptables_rule`), then answered per flow
(_OP_PROTO, _OP_SADDR, _OP_DADDR, _OP_IIF, _OP_OIF, _OP_DPORT, _OP_CTSTATE, _OP_CTSTATUS,
 _OP_LOCAL, _OP_SYN, _OP_PARTIAL, _OP_RPF_FAIL, _OP_NEVER, _OP_SET) = range(14)
# match modules that only match packets carrying an IPv6 extension header no cluster flow has:
# rt (a Routing header; ufw6's "-m rt --rt-type 0 -j DROP" drops RH0, deprecated by RFC 5095)
_NEVER_MODULES = frozenset(("rt",))
_OPS_OF: dict[str, int] = {
    **dict.fromkeys(("-p", "--protocol"), _OP_PROTO),
    **dict.fromkeys(("-s", "--source", "--src"), _OP_SADDR),
    **dict.fromkeys(("-d", "--destination", "--dst"), _OP_DADDR),
    **dict.fromkeys(("-i", "--in-interface"), _OP_IIF),
    **dict.fromkeys(("-o", "--out-interface"), _OP_OIF),
    **dict.fromkeys(("--dport", "--destination-port", "--dports", "--destination-ports"), _OP_DPORT),
    **dict.fromkeys(("--state", "--ctstate"), _OP_CTSTATE),
    "--ctstatus": _OP_CTSTATUS, "--dst-type": _OP_LOCAL, "--syn": _OP_SYN,
}
_IGNORED = frozenset(("-m", "--match", "--comment"))

Ops = tuple[tuple[int, Any, bool], ...]


def compile_iptables_rule(args: tuple[str, ...]) -> Ops:
    """A rule's matches as (kind, operand, negated), in order: the tokens are read here once,
    and `_match_ops` answers each flow from them exactly as reading the tokens per flow did
    (-m/--comment and stray words test nothing; an unknown option is PARTIAL; "!" negates the
    next test; the first -j/-g ends the matches)."""
    toks = args
    n = len(toks)
    ops: list[tuple[int, Any, bool]] = []
    # --limit-iface-in/out: the type is looked up on one interface only (not understood here)
    limited = "--limit-iface-in" in toks or "--limit-iface-out" in toks
    # -m rpfilter: the reverse-path test; a cluster flow comes in on the interface its source is
    # routed through, so it passes: `--invert` (fails the test: firewalld's raw PREROUTING drop)
    # matches none of it, the plain test all of it; its other options test nothing more
    rpf = "rpfilter" in toks
    neg = False
    i = 0
    while i < n:
        t = toks[i]
        if t in ("-j", "--jump", "-g", "--goto"):
            break
        if t == "!":
            neg = True
            i += 1
            continue
        val = toks[i + 1] if i + 1 < n else ""
        step = 2
        kind = _OPS_OF.get(t)
        operand: Any = None
        if t in _IGNORED:
            kind = None
            if t in ("-m", "--match") and val in _NEVER_MODULES:
                # whatever its options say (negated or not), the rule needs that header
                kind = _OP_NEVER
        elif t == "--match-set" and i + 2 < n and \
                toks[i + 2].split(",")[0] in ("src", "dst"):
            # -m set --match-set NAME src|dst[,...]: the first flag says which address of the
            # packet is looked up in the ipset (whose elements are not read: _OP_SET)
            kind, operand, step = _OP_SET, (val, toks[i + 2]), 3
        elif rpf and t in ("--invert", "--loose", "--validmark", "--accept-local"):
            kind = _OP_RPF_FAIL if t == "--invert" else None
            step = 1
        elif kind == _OP_PROTO:
            operand = val
        elif kind in (_OP_SADDR, _OP_DADDR):
            operand = val.split(",")
        elif kind in (_OP_IIF, _OP_OIF):
            operand = [val]
        elif kind == _OP_DPORT:
            operand = _port_ranges(val)
        elif kind == _OP_CTSTATE:
            operand = {x.strip().lower() for x in val.split(",")}
        elif kind == _OP_CTSTATUS:
            operand = {x.lower() for x in val.split(",")}
        elif kind == _OP_LOCAL:
            operand = None if limited else [x for x in val.split(",") if x]
        elif kind == _OP_SYN:
            step = 1
        elif t.startswith("-"):
            kind = _OP_PARTIAL
            if not val or val.startswith("-") or val == "!":
                step = 1
        else:
            step = 1
        if kind is not None:
            ops.append((kind, operand, neg))
        neg = False
        i += step
    return tuple(ops)


def _match_ops(ops: Ops, flow: Flow) -> int:
    """FULL / PARTIAL / NONE of a compiled rule's matches for one flow (min over its tests)."""
    out = FULL
    for kind, operand, neg in ops:
        if kind == _OP_SADDR:
            v = match_addr(flow.saddrs, flow.family, operand)
        elif kind == _OP_DADDR:
            v = match_addr(flow.daddrs, flow.family, operand)
        elif kind == _OP_PROTO:
            v = match_proto(flow, operand)
        elif kind == _OP_IIF:
            v = match_iface(flow.iifs, operand)
        elif kind == _OP_OIF:
            v = match_iface(flow.oifs, operand)
        elif kind == _OP_DPORT:
            v = match_ports(flow.dports, operand)
        elif kind == _OP_CTSTATE:
            v = _ctstate(flow, operand)
        elif kind == _OP_CTSTATUS:
            v = FULL if (flow.dnat and "dnat" in operand) else NONE if not flow.dnat and \
                operand <= {"dnat"} else PARTIAL
        elif kind == _OP_LOCAL:
            v = match_dst_type(flow, operand)
        elif kind == _OP_SYN:
            v = FULL if flow.proto == "tcp" else NONE
        elif kind == _OP_NEVER:
            v = NONE
        elif kind == _OP_RPF_FAIL:
            v = NONE
        else:  # _OP_SET too: an ipset's elements are not read (see _set_gate)

            v = PARTIAL
        if neg:
            v = _not(v)
        if v < out:
            out = v
    return out


def _set_gate(ops: Ops) -> str | None:
    """The ipset a rule looks an address up in (`-m set --match-set NAME src|dst`, not negated),
    else None. Its elements are not read (no ipset listing): the lookup is PARTIAL for every
    flow, but a DROP/REJECT behind it (in the rule, or in the chain it jumps to) drops the
    set's addresses: a blocklist (fail2ban's f2b-*, crowdsec's, an admin's), not blamed for the
    cluster's flows (Hit.blocklists). `! --match-set` (every address not in an allowlist) is a
    drop like any other."""
    for k, operand, neg in ops:
        if k == _OP_SET and not neg:
            return str(operand[0])
    return None


def _own_chain(chain: str) -> bool:
    return chain.startswith(OWN_CHAIN_PREFIXES)


def _index(table: Table) -> dict[str, list[Rule]]:
    by: dict[str, list[Rule]] = {}
    for r in table.rules:
        by.setdefault(r.chain, []).append(r)
    return by


def may_drop(table: Table, base: str, index: dict[str, list[Rule]] | None = None) -> bool:
    """False only when `evaluate_iptables(table, base, flow)` is None for every flow: no
    DROP/REJECT outside the CNIs' own chains is reachable from `base` through its jumps/gotos
    (every rule's target is followed when it names a chain of the table: a superset of what a
    walk can reach), and the base chain's policy is not DROP. Reads the rules' chains and
    targets only (not their tokens): a node whose firewall holds no such rule (kube-proxy's
    DROPs are in KUBE-* chains) is answered without matching any rule against any flow."""
    if (table.chains.get(base) or "").upper() == "DROP":
        return True
    by = index if index is not None else _index(table)
    chains = table.chains
    seen = {base}
    todo = [base]
    while todo:
        chain = todo.pop()
        own = _own_chain(chain)
        for r in by.get(chain, ()):
            tgt = r.target or ""
            if tgt in ("DROP", "REJECT"):
                if not own:
                    return True
            elif tgt in chains and tgt not in seen:
                seen.add(tgt)
                todo.append(tgt)
    return False


def _match_tokens(args: tuple[str, ...]) -> list[str]:
    """A rule's match tokens: everything before -j/-g, comments left out."""
    out: list[str] = []
    i = 0
    while i < len(args):
        t = args[i]
        if t in ("-j", "--jump", "-g", "--goto"):
            break
        if t == "-m" and i + 1 < len(args) and args[i + 1] == "comment" or t == "--comment":
            i += 2
            continue
        out.append(t)
        i += 1
    return out


CNI_CHAIN_PREFIXES = ("cali-", "CILIUM_", "KUBE-ROUTER-", "KUBE-POD-FW-", "ANTREA-", "WEAVE-")
CNI_COMMENT_PREFIXES = ("cali:", "cilium")


def _cni_mark_accept(r: Rule, chain: str) -> bool:
    """A CNI's mark-based policy ACCEPT of forwarded pod traffic (calico's "Policy explicitly
    accepted packet." `-m mark --mark 0x10000/0x10000 -j ACCEPT` at the end of FORWARD, cilium's
    in CILIUM_FORWARD): the CNI marks the pod traffic its policy allows, so for pod flows it is
    the accept (as FORWARD_DROP reads it, checks/iptables._forward_accepts). Its only test is
    the mark, in a CNI chain or carrying the CNI's comment."""
    if not (chain.startswith(CNI_CHAIN_PREFIXES)
            or any(str(x).startswith(CNI_COMMENT_PREFIXES) for x in r.args)):
        return False
    t = _match_tokens(r.args)
    return len(t) == 4 and t[:3] == ["-m", "mark", "--mark"]


def _accept_covers(accept: Rule, drop: Rule, flow: Flow) -> bool:
    """True when an earlier ACCEPT of the same chain takes every packet of the flow the drop
    would take: its matches are the drop's matches (token for token, in any order) plus tests
    the whole flow passes (e.g. the drop's `-p tcp --dport 30000:32767` and `-s <pod network>`
    for forwarded pod traffic: the narrow accept put right before a drop)."""
    need = collections.Counter(_match_tokens(drop.args))
    have = collections.Counter(_match_tokens(accept.args))
    if need - have:
        return False
    extra: list[str] = []  # the accept's other tests, in its order
    for t in _match_tokens(accept.args):
        if need[t] > 0:
            need[t] -= 1
        else:
            extra.append(t)
    return not extra or _match_ops(compile_iptables_rule(tuple(extra)), flow) == FULL


def evaluate_iptables(table: Table, base: str, flow: Flow,
                      index: dict[str, list[Rule]] | None = None,
                      compiled: dict[int, Ops] | None = None) -> Hit | None:
    """The first DROP/REJECT the flow meets from built-in chain `base` (None: it passes).
    `compiled`: id(rule) -> its compiled matches, shared by the calls for one table's flows (the
    rules must outlive it: they are the table's)."""
    by = index if index is not None else _index(table)
    comp = compiled if compiled is not None else {}
    steps = [0]
    passed: list[tuple[str, str, str]] = []  # set-gated drops the flow passed (Hit.blocklists)

    def walk(chain: str, path: tuple[str, ...], depth: int,
             gate: str | None = None) -> tuple[str, Hit | None]:
        """("accept"|"return"|"hit"|"continue", hit). `gate`: the ipset the jump here looked
        the address up in (its drops are a blocklist's)."""
        if depth > 64:
            return "continue", None
        partial_accepts: list[Rule] = []  # ACCEPTs of this chain that matched part of the flow
        for r in by.get(chain, ()):
            steps[0] += 1
            if steps[0] > _MAX_STEPS:
                return "continue", None
            ops = comp.get(id(r))
            if ops is None:
                ops = comp[id(r)] = compile_iptables_rule(r.args)
            m = _match_ops(ops, flow)
            if m == NONE:
                continue
            tgt = r.target or ""
            if tgt == "ACCEPT" and m != FULL and flow.hook == "forward" and _cni_mark_accept(r, chain):
                m = FULL  # the CNI's policy verdict for the pod traffic it marked
            if tgt == "ACCEPT":
                if m == FULL:
                    return "accept", None
                partial_accepts.append(r)
            elif tgt in ("DROP", "REJECT"):
                if _own_chain(chain):
                    continue
                if any(_accept_covers(a, r, flow) for a in partial_accepts):
                    continue
                g = gate or _set_gate(ops)
                if g is not None:
                    passed.append((chain, r.spec, f"ipset {g}: its elements are not read"))
                    continue
                return "hit", Hit("rule", chain, base, tgt, r.spec, None, (*path, chain),
                                  "full" if m == FULL else "partial",
                                  blocklists=tuple(passed))
            elif tgt == "RETURN":
                if m == FULL:
                    return "return", None
            elif tgt in table.chains and tgt not in path and tgt != chain:
                res, hit = walk(tgt, (*path, chain), depth + 1, gate or _set_gate(ops))
                if res == "hit":
                    return res, hit
                if res == "accept" and m == FULL:
                    return res, None
                goto = "-g" in r.args or "--goto" in r.args
                if goto and m == FULL:
                    return "return", None
        return "continue", None

    res, hit = walk(base, (), 0)
    if res == "hit":
        return hit
    if res == "accept":
        return None
    if (table.chains.get(base) or "").upper() == "DROP":
        return Hit("policy", base, base, "DROP", f"-P {base} DROP", None, (base,), "full",
                   blocklists=tuple(passed))
    return None


# -- nft -----------------------------------------------------------------------------------------


def _nft_values(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"]) if isinstance(right["set"], list) else [right["set"]]
    if isinstance(right, list):
        return list(right)
    return [right]


def _nft_ranges(right: Any) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in _nft_values(right):
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out.append((v, v))
        elif isinstance(v, dict) and isinstance(v.get("range"), list) and len(v["range"]) == 2:
            a, b = v["range"]
            if isinstance(a, int) and isinstance(b, int):
                out.append((min(a, b), max(a, b)))
        elif isinstance(v, str) and v.isdigit():
            out.append((int(v), int(v)))
        else:
            return []
    return out


def _nft_cidrs(right: Any) -> list[str]:
    out: list[str] = []
    for v in _nft_values(right):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict) and isinstance(v.get("prefix"), dict):
            out.append(f"{v['prefix'].get('addr')}/{v['prefix'].get('len')}")
        elif isinstance(v, dict) and isinstance(v.get("range"), list):
            return []
        else:
            return []
    return out


def match_nft_expr(m: dict[str, Any], flow: Flow,
                   sets: dict[str, tuple[str, ...] | None] | None = None) -> int:
    """`sets`: the table's named address sets (name -> elements, None: not read). A lookup in a
    set (`ip saddr @blocklist`) matches by the set's elements when they are read, else PARTIAL
    (evaluate_nft does not blame a drop behind a lookup it could not read: a blocklist)."""
    op = str(m.get("op", "=="))
    left, right = m.get("left"), m.get("right")
    neg = op == "!="
    if op not in ("==", "!=", "in"):
        return PARTIAL
    v = PARTIAL
    if isinstance(left, dict) and isinstance(left.get("payload"), dict):
        p = left["payload"]
        proto, fld = str(p.get("protocol", "")), str(p.get("field", ""))
        if proto in ("tcp", "udp") and fld in ("dport", "sport"):
            pm = match_proto(flow, proto)
            if neg:  # "tcp dport != X" still requires tcp
                return _and(pm, _not(match_ports(flow.dports, _nft_ranges(right))
                                     if fld == "dport" else PARTIAL))
            return _and(pm, match_ports(flow.dports, _nft_ranges(right)) if fld == "dport"
                        else PARTIAL)
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
            if proto != flow.family:
                return NONE
            nets = flow.saddrs if fld == "saddr" else flow.daddrs
            if isinstance(right, str) and right.startswith("@"):
                elems = (sets or {}).get(right[1:])
                if elems is None:
                    return PARTIAL
                v = match_addr(nets, flow.family, list(elems)) if elems else NONE
            else:
                v = match_addr(nets, flow.family, _nft_cidrs(right))
        elif proto in ("icmp", "icmpv6", "ip6", "ip"):
            if proto in ("ip", "icmp") and flow.family != "ip":
                return NONE
            if proto in ("ip6", "icmpv6") and flow.family != "ip6":
                return NONE
            v = PARTIAL if flow.proto is None else NONE if proto.startswith("icmp") else PARTIAL
        else:
            v = PARTIAL
    elif isinstance(left, dict) and isinstance(left.get("meta"), dict):
        key = str(left["meta"].get("key", ""))
        vals = [str(x) for x in _nft_values(right)]
        if key in ("l4proto", "protocol") and key == "l4proto":
            res = [match_proto(flow, x) for x in vals]
            v = FULL if FULL in res else PARTIAL if PARTIAL in res else NONE
        elif key in ("iifname", "iif"):
            v = match_iface(flow.iifs, vals)
        elif key in ("oifname", "oif"):
            v = match_iface(flow.oifs, vals)
        elif key == "nfproto":
            want = "ipv6" if flow.family == "ip6" else "ipv4"
            v = FULL if want in vals else NONE
        else:
            v = PARTIAL
    elif isinstance(left, dict) and isinstance(left.get("ct"), dict):
        key = str(left["ct"].get("key", ""))
        vals = [str(x) for x in _nft_values(right)]
        if key == "state":
            v = match_ctstate(flow, vals)
        elif key == "status":
            v = FULL if (flow.dnat and "dnat" in vals) else NONE if vals == ["dnat"] else PARTIAL
        else:
            v = PARTIAL
    elif isinstance(left, dict) and "fib" in left:
        fib = left["fib"] if isinstance(left["fib"], dict) else {}
        v = PARTIAL
        if fib.get("result") == "type" and fib.get("flags") in ("daddr", ["daddr"]):
            v = match_dst_type(flow, [str(x) for x in _nft_values(right)] or None)
    return _not(v) if neg else v


_VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "queue", "continue")


def nft_verdict(rule: NftRule) -> tuple[str | None, str | None]:
    for e in rule.expr:
        if not isinstance(e, dict):
            continue
        for k in _VERDICTS:
            if k in e:
                tgt = e[k].get("target") if isinstance(e[k], dict) else None
                return k, (str(tgt) if tgt is not None else None)
    return None, None


def match_nft_rule(rule: NftRule, flow: Flow,
                   sets: dict[str, tuple[str, ...] | None] | None = None) -> int:
    res: list[int] = []
    for e in rule.expr:
        if not isinstance(e, dict) or not e:
            continue
        if isinstance(e.get("match"), dict):
            res.append(match_nft_expr(e["match"], flow, sets))
        elif "xt" in e or "vmap" in e:
            res.append(PARTIAL)
    return _and(*res)


def _nft_set_lookup(rule: NftRule) -> str | None:
    """The name of the first address set the rule looks up (`ip saddr @x`, not `!=`), else None."""
    for e in rule.expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or str(m.get("op", "==")) not in ("==", "in"):
            continue
        left, right = m.get("left"), m.get("right")
        if isinstance(right, str) and right.startswith("@") and isinstance(left, dict) and \
                isinstance(left.get("payload"), dict) and \
                left["payload"].get("field") in ("saddr", "daddr"):
            return right[1:]
    return None


def nft_applies(chain: NftChain, flow: Flow) -> bool:
    if chain.family == "inet":
        return True
    return chain.family == flow.family


def evaluate_nft(rs: NftRuleset, base: NftChain, flow: Flow,
                 index: dict[tuple[str, str, str], list[NftRule]] | None = None) -> Hit | None:
    by = index if index is not None else nft_index(rs)
    fam, tab = base.family, base.table
    own_table = (fam, tab) in OWN_NFT_TABLES
    names = {c.name for c in rs.chains if c.family == fam and c.table == tab}
    sets = {n: el for f_, t_, n, el in getattr(rs, "sets", ()) if f_ == fam and t_ == tab}
    steps = [0]
    passed: list[tuple[str, str, str]] = []  # set-gated drops the flow passed (Hit.blocklists)

    def walk(chain: str, path: tuple[str, ...], depth: int,
             gate: str | None = None) -> tuple[str, Hit | None]:
        if depth > 64:
            return "continue", None
        for r in by.get((fam, tab, chain), ()):
            steps[0] += 1
            if steps[0] > _MAX_STEPS:
                return "continue", None
            verdict, tgt = nft_verdict(r)
            if verdict is None:
                continue
            m = match_nft_rule(r, flow, sets)
            name = _nft_set_lookup(r) if verdict in ("drop", "reject", "jump", "goto") else None
            if m == NONE:
                if name is not None and verdict in ("drop", "reject") and \
                        not (_own_chain(chain) or own_table) and \
                        sets.get(name) is not None and match_nft_rule(r, flow) != NONE:
                    # the set is read and holds none of the flow's addresses: a blocklist
                    passed.append((chain, r.render(), f"set @{name}: no cluster address in it"))
                continue
            if verdict == "accept":
                if m == FULL:
                    return "accept", None
            elif verdict in ("drop", "reject"):
                if _own_chain(chain) or own_table:
                    continue
                g = gate or (name if name is not None and sets.get(name) is None else None)
                if g is not None:
                    passed.append((chain, r.render(), f"set @{g}: its elements are not read"))
                    continue
                return "hit", Hit("rule", chain, base.name, verdict.upper(), r.render(), r.handle,
                                  (*path, chain), "full" if m == FULL else "partial",
                                  nft_rule_json(r), tuple(passed))
            elif verdict == "return":
                if m == FULL:
                    return "return", None
            elif verdict in ("jump", "goto") and tgt in names and tgt not in path and tgt != chain:
                res, hit = walk(tgt, (*path, chain), depth + 1, gate or (
                    name if name is not None and sets.get(name) is None else None))
                if res == "hit":
                    return res, hit
                if res == "accept" and m == FULL:
                    return res, None
                if verdict == "goto" and m == FULL:
                    return "return", None
        return "continue", None

    res, hit = walk(base.name, (), 0)
    if res == "hit":
        return hit
    if res == "accept":
        return None
    if (base.policy or "").lower() == "drop":
        return Hit("policy", base.name, base.name, "DROP", "policy drop", None, (base.name,), "full",
                   blocklists=tuple(passed))
    return None


def nft_rule_json(r: NftRule) -> str:
    """The tail of the rule's object in `nft -j -a list ...` (nft prints it with json.dumps'
    default separators), from its handle on: what a delete re-reads before it trusts the handle."""
    if r.handle is None:
        return ""
    comment = f'"comment": {json.dumps(r.comment)}, ' if r.comment else ""
    return f'"handle": {r.handle}, {comment}"expr": {json.dumps(list(r.expr))}'


def nft_index(rs: NftRuleset) -> dict[tuple[str, str, str], list[NftRule]]:
    by: dict[tuple[str, str, str], list[NftRule]] = {}
    for r in rs.rules:
        by.setdefault((r.family, r.table, r.chain), []).append(r)
    return by


# the base chains iptables-nft makes in its tables (it names them as iptables' built-in chains)
IPTABLES_BASE_CHAINS = frozenset(("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"))


def iptables_nft_base_chain(c: NftChain) -> bool:
    """A base chain iptables-nft made and iptables-nft-save lists (judged from that save). Any
    other base chain in its tables (`nft add chain ip filter forward { type filter hook forward
    ...; policy drop; }`, as CIS hardening scripts add) is one iptables-nft-save never shows
    (1.8.9+ only says "# Table `filter' contains incompatible base-chains"): read from nft."""
    return c.family in ("ip", "ip6") and c.table in IPTABLES_NFT_TABLES and \
        c.name in IPTABLES_BASE_CHAINS


def native_base_chains(rs: NftRuleset, hook: str) -> list[NftChain]:
    """Base chains on `hook` of type filter that iptables-nft-save does not list: those of
    nft-native tables, and nft-native base chains added to iptables-nft's tables."""
    return [c for c in rs.chains if c.hook == hook and (c.type or "filter") == "filter"
            and not iptables_nft_base_chain(c)]


BUILTIN = {"input": "INPUT", "forward": "FORWARD", "output": "OUTPUT"}
# the built-in chains of raw and mangle each flow passes (netfilter's order: raw PREROUTING,
# mangle PREROUTING, then by the routing decision mangle INPUT / FORWARD; locally sent: raw and
# mangle OUTPUT; out: mangle POSTROUTING): a DROP there (an anti-DDoS rule, a mangle chain's
# policy DROP) kills the flow before filter is asked, and no ACCEPT in filter lets it through
EARLY_CHAINS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw": {"input": ("PREROUTING",), "forward": ("PREROUTING",), "output": ("OUTPUT",)},
    "mangle": {"input": ("PREROUTING", "INPUT"), "forward": ("PREROUTING", "FORWARD", "POSTROUTING"),
               "output": ("OUTPUT", "POSTROUTING")},
}
NFT_HOOK_OF = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
               "OUTPUT": "output", "POSTROUTING": "postrouting"}


def early_tables(facts: Any, family: str, views: dict[str, Any]) -> list[tuple[str, Table]]:
    """(backend, table) of the raw and mangle tables read for the family: the legacy (or single)
    backend's full save holds them; iptables-nft's mangle is its own save (`-t mangle`), its raw
    is not saved (read from the nft ruleset: nft_early_chains)."""
    out: list[tuple[str, Table]] = []
    for backend, save in views.items():
        if save is None:
            continue
        for tname in ("raw", "mangle"):
            t = save.table(tname)
            if t is None and backend == "nft" and tname == "mangle":
                m = getattr(facts, "ip6_nft_mangle" if family == "ip6" else "nft_mangle", None)
                t = m.table("mangle") if m is not None else None
            if t is not None:
                out.append((backend, t))
    return out


def nft_early_chains(facts: Any, family: str, views: dict[str, Any]) -> list[NftChain]:
    """iptables-nft's raw base chains of the family, from the nft ruleset (when the nft backend
    is read and its raw table is not in its saves)."""
    rs = getattr(facts, "nft_ruleset", None)
    nft = views.get("nft")
    if rs is None or nft is None or nft.table("raw") is not None:
        return []
    return [c for c in rs.chains if c.family == family and c.table == "raw" and c.hook]


def node_may_drop(facts: Any, saves: dict[str, Any], saves6: dict[str, Any] | None = None) -> bool:
    """False only when `node_hits(facts, flows, saves, saves6)` is empty whatever the flows:
    no filter table of `saves`/`saves6` may drop from a built-in chain (may_drop), and the nft
    ruleset has no native base chain on a hook a flow can take. Then the node's flows need not
    be built at all (most nodes of a healthy cluster)."""
    for views in (saves, saves6 or {}):
        for save in views.values():
            t = save.table("filter") if save is not None else None
            if t is None:
                continue
            idx = _index(t)
            if any(b in t.chains and may_drop(t, b, idx) for b in BUILTIN.values()):
                return True
    for family, views in (("ip", saves), ("ip6", saves6 or {})):
        for _b, t in early_tables(facts, family, views):
            idx = _index(t)
            if any(c in t.chains and may_drop(t, c, idx)
                   for c in {c for cs in EARLY_CHAINS[t.name].values() for c in cs}):
                return True
        if nft_early_chains(facts, family, views):
            return True
    rs = getattr(facts, "nft_ruleset", None)
    return rs is not None and any(native_base_chains(rs, hook) for hook in BUILTIN)


def node_hits(facts: Any, flows: list[Flow], saves: dict[str, Any],
              saves6: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every (flow, where) the node's firewall drops: dicts with backend, table, family, chain,
    flow (Flow), hit (Hit). `saves` are the iptables views, `saves6` the ip6tables ones."""
    out: list[dict[str, Any]] = []
    for family, views in (("ip", saves), ("ip6", saves6 or {})):
        for backend, save in views.items():
            t = save.table("filter") if save is not None else None
            if t is None:
                continue
            idx = _index(t)
            comp: dict[int, Ops] = {}
            can: dict[str, bool] = {}  # base chain -> may_drop
            for fl in flows:
                if fl.family != family:
                    continue
                base = BUILTIN[fl.hook]
                if base not in t.chains:
                    continue
                if base not in can:
                    can[base] = may_drop(t, base, idx)
                if not can[base]:
                    continue  # no flow can meet a DROP/REJECT there
                hit = evaluate_iptables(t, base, fl, idx, comp)
                if hit is not None:
                    out.append({"backend": backend, "table": "filter", "family": family,
                                "flow": fl, "hit": hit})
    for family, views in (("ip", saves), ("ip6", saves6 or {})):
        out.extend(_early_hits(facts, family, views, [fl for fl in flows if fl.family == family]))
    rs = getattr(facts, "nft_ruleset", None)
    if rs is not None:
        # the walk from a base chain stays in its table: only the native tables walked are
        # indexed (a lazily parsed ruleset decodes their rules alone, not iptables-nft's)
        nidx: dict[tuple[str, str, str], list[NftRule]] = {}
        indexed: set[tuple[str, str]] = set()
        for fl in flows:
            for ch in native_base_chains(rs, fl.hook):
                if not nft_applies(ch, fl):
                    continue
                if (ch.family, ch.table) not in indexed:
                    indexed.add((ch.family, ch.table))
                    for r in rs.table_rules(ch.family, ch.table):
                        nidx.setdefault((r.family, r.table, r.chain), []).append(r)
                hit = evaluate_nft(rs, ch, fl, nidx)
                if hit is not None:
                    out.append({"backend": "nft-native", "table": ch.table, "family": ch.family,
                                "flow": fl, "hit": hit, "prio": ch.prio})
    return out


def _early_hits(facts: Any, family: str, views: dict[str, Any],
                flows: list[Flow]) -> list[dict[str, Any]]:
    """The flows a raw or mangle table drops (EARLY_CHAINS), as node_hits' dicts with that
    table's name: each flow's first drop in netfilter's order (raw before mangle)."""
    out: list[dict[str, Any]] = []
    if not flows:
        return out
    done: set[tuple[str, str]] = set()  # (backend, flow name): its first drop only
    tables = early_tables(facts, family, views)
    tables.sort(key=lambda bt: 0 if bt[1].name == "raw" else 1)
    for backend, t in tables:
        idx = _index(t)
        comp: dict[int, Ops] = {}
        for fl in flows:
            if (backend, fl.name) in done:
                continue
            for base in EARLY_CHAINS[t.name].get(fl.hook, ()):
                if base not in t.chains or not may_drop(t, base, idx):
                    continue
                hit = evaluate_iptables(t, base, fl, idx, comp)
                if hit is not None:
                    done.add((backend, fl.name))
                    h: dict[str, Any] = {"backend": backend, "table": t.name, "family": family,
                                         "flow": fl, "hit": hit}
                    if hit.kind == "rule":
                        # where the rule is (1-based, as `iptables -S CHAIN` lists it after its
                        # -N/-P line) and its matches: the accept goes right before it
                        rules = idx.get(hit.chain, [])
                        pos = next((i for i, r in enumerate(rules) if r.spec == hit.rule), None)
                        if pos is not None:
                            h["position"] = pos + 1
                            h["args"] = rules[pos].args
                    out.append(h)
                    break
    chains = nft_early_chains(facts, family, views)
    if chains:
        rs = facts.nft_ruleset
        nidx: dict[tuple[str, str, str], list[NftRule]] = {}
        for r in rs.table_rules(family, "raw"):
            nidx.setdefault((r.family, r.table, r.chain), []).append(r)
        by_hook = {c.hook: c for c in chains}
        for fl in flows:
            if ("nft", fl.name) in done:
                continue
            for base in EARLY_CHAINS["raw"].get(fl.hook, ()):
                ch = by_hook.get(NFT_HOOK_OF[base])
                if ch is None:
                    continue
                hit = evaluate_nft(rs, ch, fl, nidx)
                if hit is not None:
                    done.add(("nft", fl.name))
                    # iptables-nft's own table: reported and opened with iptables-nft, never
                    # written with nft (that would make it unreadable to iptables-nft)
                    out.append({"backend": "nft", "table": "raw", "family": family, "flow": fl,
                                "hit": Hit(hit.kind, hit.chain, hit.base_chain, hit.verdict,
                                           hit.rule, None, hit.path, hit.match),
                                "from_nft": True})
                    break
    return out
