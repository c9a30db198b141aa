"""flannel vxlan on each node, compared with the API's view of every node.

NORMAL (not findings): flannel.1 carries the node subnet's network address as a /32
(10.244.1.0/32), and every remote subnet is routed `10.244.Y.0/24 via 10.244.Y.0 dev flannel.1
onlink` (flannel's backend/vxlan does this on purpose; the runbook's note reads them as oddities).
Faults: addresses/routes/subnet.env for a subnet the node no longer owns, routes missing for
current nodes, fdb/neigh VTEP MACs that disagree with the peers' backend-data annotation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks._common import in_net, net_of, pod_for
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.parsers import link_by_name, render_route
from clusterfix_tui.core.shape import shape_of, why_not
from clusterfix_tui.core.snapshot import ClusterSnapshot

DEV = "flannel.1"
# finding code -> the facts sections it is decided from
READS: dict[str, tuple[str, ...]] = {
    "FLANNEL_STALE_VTEP": ("ip_link", "ip_neigh_flannel", "fdb_flannel", "ip6_neigh_flannel",
                           "fdb_flannel6"),
    "FLANNEL_MISSING_ROUTE": ("ip_link", "ip_route", "ip6_route", "route_get"),
    "FLANNEL_STALE_SUBNET": ("ip_link", "ip_addr", "subnet_env"),
    "FLANNEL_MTU_MISMATCH": ("ip_link", "ip_addr", "subnet_env"),
}
# bytes VXLAN adds around a pod's packet: inner Ethernet 14 + VXLAN 8 + UDP 8 + outer IP header
VXLAN_OVERHEAD = {4: 50, 6: 70}
DEV6 = "flannel-v6.1"


@dataclass(frozen=True)
class Fam:
    """One IP family of flannel's vxlan: its device, annotations, route/neigh/fdb views."""
    version: int
    dev: str
    vtep_annotation: str
    public_ip_annotation: str
    env_subnet: str

    def cidr(self, n: Any) -> str | None:
        if hasattr(n, "pod_cidr_for"):
            return n.pod_cidr_for(self.version)
        c = getattr(n, "pod_cidr", None)
        v = net_of(c) if c else None
        return c if v is not None and v.version == self.version else None

    def gateway(self, n: Any) -> str | None:
        c = net_of(self.cidr(n)) if self.cidr(n) else None
        return str(c.network_address) if c is not None else None

    def vtep_mac(self, n: Any) -> str | None:
        if self.version == 4:
            return n.vtep_mac
        raw = (n.annotations or {}).get(self.vtep_annotation)
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            return None
        mac = data.get("VtepMAC") if isinstance(data, dict) else None
        return mac.lower() if isinstance(mac, str) else None

    def public_ip(self, n: Any) -> str | None:
        if self.version == 4:
            return n.public_ip
        ip = (n.annotations or {}).get(self.public_ip_annotation)
        if ip:
            return ip
        for a in n.addresses or ():
            if a.get("type") == "InternalIP" and ":" in str(a.get("address") or ""):
                return str(a.get("address"))
        return None

    def routes(self, f: NodeFacts) -> tuple[dict[str, Any], ...]:
        return f.routes if self.version == 4 else f.routes6

    def route_section(self, f: NodeFacts) -> Any:
        return f.section("ip_route" if self.version == 4 else "ip6_route")

    def neigh(self, f: NodeFacts) -> tuple[dict[str, Any], ...]:
        return f.neigh_flannel if self.version == 4 else f.neigh_flannel6

    def fdb(self, f: NodeFacts) -> tuple[dict[str, Any], ...]:
        return f.fdb_flannel if self.version == 4 else f.fdb_flannel6

    def fdb_section(self, f: NodeFacts) -> Any:
        return f.section("fdb_flannel" if self.version == 4 else "fdb_flannel6")

    def addrs(self, f: NodeFacts) -> list[str]:
        fam = "inet" if self.version == 4 else "inet6"
        out = []
        for link in f.addrs or ():
            if not isinstance(link, dict) or link.get("ifname") != self.dev:
                continue
            for a in link.get("addr_info") or ():
                if isinstance(a, dict) and a.get("family") == fam and a.get("local") and \
                        not (fam == "inet6" and str(a.get("scope")) == "link"):
                    out.append(f"{a.get('local')}/{a.get('prefixlen', 32 if fam == 'inet' else 128)}")
        return out


V4 = Fam(4, DEV, "flannel.alpha.coreos.com/backend-data", "flannel.alpha.coreos.com/public-ip",
         "FLANNEL_SUBNET")
V6 = Fam(6, DEV6, "flannel.alpha.coreos.com/backend-v6-data",
         "flannel.alpha.coreos.com/public-ipv6", "FLANNEL_IPV6_SUBNET")


def families(snapshot: ClusterSnapshot, me: Any) -> list[Fam]:
    """The flannel families of a node: its podCIDRs' families that flannel runs (EnableIPv4 /
    EnableIPv6 of net-conf.json when known)."""
    fl = getattr(shape_of(snapshot), "flannel", None)
    out = []
    for fam in (V4, V6):
        if fam.cidr(me) is None:
            continue
        if fl is not None and fam.version == 4 and not fl.enable_ipv4 and fl.enable_ipv6:
            continue
        if fl is not None and fam.version == 6 and not fl.enable_ipv6 and fl.ipv6_network is None \
                and fl.network is not None:
            # net-conf.json read, IPv6 not enabled: flannel does not route IPv6 pods
            continue
        out.append(fam)
    return out
REF_VXLAN = "https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md#vxlan"
REF_TROUBLE = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"


def _is_vxlan(snapshot: ClusterSnapshot) -> bool:
    backend = (snapshot.flannel_backend or "vxlan").lower()
    return backend == "vxlan"



# Each code's data (defaults only so a test can build the part it needs; the checks fill them).
@dataclass(frozen=True, kw_only=True)
class FlannelFamilies(FindingData):
    """A per-node flannel finding; IPv4 and IPv6 findings of one node merge into one."""

    device: str = "flannel.1"
    ip_version: int = 4
    families: list[int] = field(default_factory=list)  # set when families were merged
    other_families: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class StaleVtepData(FindingData, codes=("FLANNEL_STALE_VTEP",)):
    peer_node: str = ""
    peer_ip: str | None = None
    peer_subnet_gw: str | None = None
    wrong_mac: str | None = None
    wrong_macs: list[str] = field(default_factory=list)
    expected_mac: str | None = None
    where: list[str] = field(default_factory=list)  # "fdb", "neigh"
    fdb_missing: bool = False
    # fdb entries of the right MAC sending it to another underlay IP than the peer's
    wrong_dsts: list[str] = field(default_factory=list)
    neigh_missing: bool = False  # no neighbour entry for the peer's subnet address
    # the node's own device MAC differs from its own annotation (peer_node = the node itself,
    # wrong_mac = the annotated MAC, expected_mac = the device's): fixed by a flannel restart
    self_mismatch: bool = False
    fdb_entries: list[str] = field(default_factory=list)
    neigh_entries: list[str] = field(default_factory=list)
    device: str = "flannel.1"
    ip_version: int = 4


@dataclass(frozen=True, kw_only=True)
class StaleSubnetData(FlannelFamilies, codes=("FLANNEL_STALE_SUBNET",)):
    pod_cidr: str | None = None
    expected_address: str = ""
    stale_addresses: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    link_present: bool = False
    subnet_env: dict[str, str] | None = None
    subnet_env_stale: bool = False
    stale_routes: list[dict[str, Any]] = field(default_factory=list)
    flannel_pod: str | None = None
    namespace: str = "kube-flannel"
    env_key: str = "FLANNEL_SUBNET"


@dataclass(frozen=True, kw_only=True)
class MissingRouteData(FlannelFamilies, codes=("FLANNEL_MISSING_ROUTE",)):
    missing: list[dict[str, Any]] = field(default_factory=list)  # {expected, actual, peer_node..}
    wrong_route_get: list[dict[str, Any]] = field(default_factory=list)
    direct_routing: bool = False
    # False: the vxlan device itself does not exist (deleted): no route can be added through
    # it; only a flannel restart recreates it (and then its routes and entries)
    link_present: bool = True
    # routes more specific than a current node's podCIDR that flannel did not write:
    # {"peer_node", "pod_cidr", "dst", "route" (rendered), "json" (`ip -j route` object)}
    shadowing: list[dict[str, Any]] = field(default_factory=list)

def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    if not _is_vxlan(snapshot):
        return []
    shape = shape_of(snapshot)
    if why_not(shape, "FLANNEL_MISSING_ROUTE") is not None:
        return []  # not flannel vxlan: core.shape.not_checked() says so
    fl = getattr(shape, "flannel", None)
    direct = bool(getattr(fl, "direct_routing", False))
    nodes = snapshot.nodes
    # what every node is compared with is computed once per family (not once per node x peer),
    # and each node's tables are indexed once: the checks were N^3 at N nodes, they are now
    # linear in the size of the tables (bench/bench_core.py, "mesh")
    peers = {fam.version: _Peers(nodes, fam) for fam in (V4, V6)}
    out: list[Finding] = []
    for node, f in sorted(facts_by_node.items()):
        me = nodes.get(node)
        if me is None or not me.pod_cidr:
            continue
        for fam in families(snapshot, me):
            p = peers[fam.version]
            out.extend(_stale_vtep(snapshot, node, f, nodes, fam, p, direct))
            if _leases_own_subnet(me, f, fam):
                continue  # flannel's subnets are not the podCIDRs here: nothing to compare
            out.extend(_stale_subnet(snapshot, node, f, nodes, fam, p))
            out.extend(_missing_routes(node, f, nodes, fam, direct, p))
            out.extend(_mtu(snapshot, node, f, fam))
    return _merge_per_node(out)


def _leases_own_subnet(me: Any, f: NodeFacts, fam: Fam) -> bool:
    """subnet.env's subnet of the family is not the node's podCIDR and the node has none of the
    annotations flannel's kube subnet manager writes (flannel.alpha.coreos.com/*): flannel leases
    its subnets itself (etcd mode, --kube-subnet-mgr off), so its addresses and routes are not
    judged against the podCIDRs (deleting them, or adding podCIDR routes, would be wrong)."""
    env = (f.subnet_env or {}).get(fam.env_subnet)
    cidr = fam.cidr(me)
    if not env or not cidr or in_net(env, cidr):
        return False
    return not any(str(k).startswith("flannel.alpha.coreos.com/")
                   for k in (getattr(me, "annotations", None) or {}))


class _Peers:
    """The API's view of every node for one family, computed once per check run."""

    def __init__(self, nodes: dict[str, Any], fam: Fam) -> None:
        by_name = sorted(nodes.values(), key=lambda n: n.name)
        cidrs = {id(n): fam.cidr(n) for n in nodes.values()}
        # (peer, VtepMAC lowercased, public IP, subnet gateway) of the peers with a VTEP MAC
        self.vteps = [(p, str(fam.vtep_mac(p)).lower(), fam.public_ip(p), fam.gateway(p))
                      for p in by_name if fam.vtep_mac(p) and cidrs[id(p)] is not None]
        # (peer, its podCIDR normalised, gateway, public IP) of the peers with a valid podCIDR
        self.subnets = [(p, str(net_of(cidrs[id(p)])), fam.gateway(p), fam.public_ip(p))
                        for p in by_name if cidrs[id(p)] and net_of(cidrs[id(p)]) is not None]
        self.owned = {str(net_of(c)) for n in nodes.values() for c in (cidrs[id(n)],)
                      if c and net_of(c)}
        # the first node (in the snapshot's order) whose podCIDR holds an IP: one dict per
        # (IP version, prefix length) instead of a scan of every node per IP
        self._cidrs: dict[tuple[int, int], dict[Any, tuple[int, Any]]] = {}
        for i, n in enumerate(nodes.values()):
            c = cidrs[id(n)]
            if not c:
                continue
            try:
                net = ipaddress.ip_network(str(c), strict=False)
            except ValueError:
                continue
            self._cidrs.setdefault((net.version, net.prefixlen), {}).setdefault(net, (i, n))

    def owner_of(self, ip: Any) -> Any:
        """The node whose podCIDR holds `ip` (what in_net() over every node answered)."""
        try:
            addr = ipaddress.ip_interface(str(ip)).ip
        except ValueError:
            return None
        best: tuple[int, Any] | None = None
        for (version, plen), nets in self._cidrs.items():
            if version != addr.version:
                continue
            hit = nets.get(ipaddress.ip_network((addr, plen), strict=False))
            if hit is not None and (best is None or hit[0] < best[0]):
                best = hit
        return best[1] if best else None


def _index(entries: Any, key: Any) -> dict[Any, list[dict[str, Any]]]:
    """entries by key, in order; node-supplied JSON: only keys that can equal a str (or None)."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for e in entries:
        k = key(e)
        if k is None or isinstance(k, str):
            out.setdefault(k, []).append(e)
    return out


_MERGED_PER_NODE = frozenset({"FLANNEL_STALE_SUBNET", "FLANNEL_MISSING_ROUTE"})


def _merge_per_node(findings: list[Finding]) -> list[Finding]:
    """One FLANNEL_STALE_SUBNET / FLANNEL_MISSING_ROUTE per node (families merged: the repair
    restarts flannel once); FLANNEL_STALE_VTEP stays one per peer and family, and
    FLANNEL_MTU_MISMATCH one per device (its data is the device's, not a family list: merging a
    dual-stack node's two made the whole check fail for that node)."""
    out: list[Finding] = []
    seen: dict[tuple[str, str], Finding] = {}
    where: dict[tuple[str, str], int] = {}  # key -> index in out (no out.index(): quadratic)
    for f in findings:
        key = (f.code, f.node)
        merged_code = f.code in _MERGED_PER_NODE
        if not merged_code or key not in seen:
            if merged_code:
                seen[key] = f
                where[key] = len(out)
            out.append(f)
            continue
        first = seen[key]
        d0, d1 = first.data_as(FlannelFamilies), f.data_as(FlannelFamilies)
        data = dataclasses.replace(
            d0, families=[*(d0.families or [d0.ip_version]), d1.ip_version],
            other_families=[*d0.other_families, d1.to_dict()])
        merged = Finding(code=first.code, severity=first.severity, node=first.node,
                         title=first.title + "; " + f.title, evidence=first.evidence + f.evidence,
                         explanation=first.explanation, reference=first.reference,
                         step=first.step, data=data)
        out[where[key]] = merged
        seen[key] = merged
    return out


def _stale_vtep(snapshot: ClusterSnapshot, node: str, f: NodeFacts, nodes: dict[str, Any],
                fam: Fam = V4, peers: _Peers | None = None, direct: bool = False) -> list[Finding]:
    out: list[Finding] = []
    DEV = fam.dev  # noqa: N806 - the device of this family
    peers = peers or _Peers(nodes, fam)
    neigh_by_dst = _index(fam.neigh(f), lambda e: e.get("dst"))
    fdb_by_mac = _index(fam.fdb(f), lambda e: str(e.get("mac", "")).lower())
    fdb_by_dst = _index(fam.fdb(f), lambda e: e.get("dst"))
    fdb_sec = fam.fdb_section(f)
    link_there = link_by_name(f.links, DEV) is not None
    fdb_read = bool(fdb_sec is not None and fdb_sec.ok and link_there)
    neigh_sec = f.section("ip_neigh_flannel" if fam.version == 4 else "ip6_neigh_flannel")
    neigh_read = bool(neigh_sec is not None and neigh_sec.ok and link_there)
    # DirectRouting: a peer routed via its own IP gets no neigh/fdb entry from flannel
    direct_via = {str(r.get("gateway")) for r in fam.routes(f)
                  if isinstance(r, dict) and r.get("gateway") and r.get("dev") != DEV} \
        if direct else set()
    me = nodes.get(node)
    own = str(fam.vtep_mac(me) or "").lower() if me is not None else ""
    link = link_by_name(f.links, DEV)
    have = str((link or {}).get("address") or "").lower()
    if own and have and have != own and fdb_read:
        # flannel.1 was recreated (a new MAC) while the annotation, which every peer programs
        # its entries from, still names the old one: the peers' frames for this node's pods
        # carry a MAC this device drops
        others = [p for p, *_ in peers.vteps if p.name != node]
        out.append(Finding(
            code="FLANNEL_STALE_VTEP", severity="error", node=node,
            title=f"{DEV} has MAC {have} but this node's annotation says {own}",
            evidence=(f"ip -j link: {DEV} link/ether {have}",
                      f"{node} annotation {fam.vtep_annotation}: VtepMAC {own}"),
            explanation=(f"{DEV} on {node} was recreated with a new MAC while the node's "
                         f"annotation still names the old one. Every peer "
                         f"({', '.join(p.name for p in others) or 'none'}) programs its "
                         f"neighbour and fdb entries from that annotation, so their vxlan frames "
                         f"for {node}'s pods carry a MAC {DEV} drops. Restart flannel on {node}: "
                         "it annotates the device's MAC and the peers reprogram their entries."),
            reference=REF_VXLAN, step="cni_bridge",
            data=StaleVtepData(
                peer_node=node, peer_ip=fam.public_ip(me), peer_subnet_gw=fam.gateway(me),
                wrong_mac=own, wrong_macs=[own], expected_mac=have, where=["annotation"],
                self_mismatch=True, device=DEV, ip_version=fam.version),
        ))
    for peer, want, peer_ip, gw in peers.vteps:
        if peer.name == node:
            continue
        if direct and peer_ip and str(peer_ip) in direct_via:
            continue  # routed directly, not through the VTEP
        # what the kernel uses: the neighbour entry of the peer's subnet address (inner dst MAC)
        # and the fdb entry of that MAC (outer dst IP). fdb entries of other MACs towards the peer
        # are leftovers: harmless alone, cleaned up with a real fault.
        neigh_bad = [e for e in (neigh_by_dst.get(gw, ()) if gw else ())
                     if e.get("lladdr") and str(e.get("lladdr")).lower() != want]
        fdb_want = fdb_by_mac.get(want, [])
        fdb_wrong_dst = [e for e in fdb_want if e.get("dst") and e.get("dst") != peer_ip]
        fdb_missing = fdb_read and not any(e.get("dst") == peer_ip for e in fdb_want)
        # no neighbour entry (with a MAC) for the peer's subnet address: flannel writes it
        # permanent; without it the kernel cannot resolve the inner destination MAC (flannel.1
        # is nolearning, nobody answers ARP on it) and every packet to the peer's pods is lost
        neigh_missing = bool(neigh_read and gw and not any(
            e.get("lladdr") for e in neigh_by_dst.get(gw, ())))
        fdb_stale = [e for e in (fdb_by_dst.get(peer_ip, ()) if peer_ip is None
                                 or isinstance(peer_ip, str) else ())
                     if str(e.get("mac", "")).lower() not in (want, "00:00:00:00:00:00")]
        if not neigh_bad and not fdb_wrong_dst and not fdb_missing and not neigh_missing:
            continue
        fdb_bad = fdb_stale + fdb_wrong_dst
        wrong_dsts = sorted({str(e.get("dst")) for e in fdb_wrong_dst})
        wrong = sorted({str(e.get("mac", "")).lower() for e in fdb_stale} |
                       {str(e.get("lladdr", "")).lower() for e in neigh_bad})
        fdb_lines = [f"{e.get('mac')} dev {DEV} dst {e.get('dst')} "
                     + " ".join(e.get("flags") or []) + (f" {e.get('state')}" if e.get("state") else "")
                     for e in fdb_bad]
        neigh_lines = [f"{e.get('dst')} dev {DEV} lladdr {e.get('lladdr')} "
                       + " ".join(e.get("state") or []) for e in neigh_bad]
        evidence = [f"bridge fdb show dev {DEV}: {ln.strip()}" for ln in fdb_lines]
        if fdb_missing:
            evidence.append(f"bridge fdb show dev {DEV}: no entry {want} dst {peer_ip}")
        evidence += [f"ip neigh show dev {DEV}: {ln.strip()}" for ln in neigh_lines]
        if neigh_missing:
            evidence.append(f"ip neigh show dev {DEV}: no entry {gw} lladdr {want}")
        evidence.append(f"{peer.name} annotation {fam.vtep_annotation}: VtepMAC {want}")
        out.append(Finding(
            code="FLANNEL_STALE_VTEP", severity="error", node=node,
            title=(f"stale VTEP MAC for {peer.name}: {', '.join(wrong)} instead of {want}" if wrong
                   else f"fdb sends {peer.name}'s VTEP MAC {want} to {', '.join(wrong_dsts)} "
                        f"instead of {peer_ip}" if wrong_dsts
                   else f"no {' or '.join(w for w, m in (('fdb', fdb_missing), ('neighbour', neigh_missing)) if m)}"
                        f" entry for {peer.name}'s VTEP MAC {want}"),
            evidence=tuple(evidence),
            explanation=((f"{node} sends vxlan traffic for {peer.name}'s pods ({fam.cidr(peer)}) "
                          f"to a MAC that is no longer {peer.name}'s flannel.1 (as after a reboot "
                          "recreated it): cross-node traffic to those pods is lost. Replace the "
                          "fdb/neigh entries with the annotated VtepMAC (or restart flannel here).")
                         if wrong else
                         (f"flannel writes a permanent neighbour entry (the peer's subnet address "
                          f"-> its VtepMAC) and an fdb entry (VtepMAC -> its public IP) on {DEV} "
                          f"for every peer; {DEV} learns nothing by itself (nolearning), so "
                          f"without them {node} cannot send vxlan traffic to {peer.name}'s pods "
                          f"({fam.cidr(peer)}). Add the entries from the annotated VtepMAC (or "
                          "restart flannel here).")),
            reference=REF_VXLAN, step="cni_bridge",
            data=StaleVtepData(
                peer_node=peer.name, peer_ip=peer_ip, peer_subnet_gw=gw,
                wrong_mac=(str(neigh_bad[0].get("lladdr")).lower() if neigh_bad
                           else wrong[0] if wrong else None), wrong_macs=wrong,
                expected_mac=want,
                where=[w for w, bad in (("fdb", fdb_bad or fdb_missing),
                                        ("neigh", neigh_bad or neigh_missing)) if bad],
                fdb_missing=fdb_missing, neigh_missing=neigh_missing, wrong_dsts=wrong_dsts,
                fdb_entries=fdb_lines, neigh_entries=neigh_lines,
                device=DEV, ip_version=fam.version),
        ))
    return out


@dataclass(frozen=True, kw_only=True)
class MtuData(FindingData, codes=("FLANNEL_MTU_MISMATCH",)):
    device: str = "flannel.1"
    mtu: int | None = None  # the vxlan device's
    underlay: str | None = None  # the device VXLAN leaves by
    underlay_mtu: int | None = None
    max_mtu: int | None = None  # underlay_mtu - the VXLAN overhead
    bridge_mtu: int | None = None  # cni0's
    pod_mtu: int | None = None  # the largest MTU of cni0's ports (the pods' veths)
    subnet_env_mtu: int | None = None  # FLANNEL_MTU (what new pods get)
    problems: list[str] = field(default_factory=list)  # "underlay", "pods", "subnet-env"


def _mtu(snapshot: ClusterSnapshot, node: str, f: NodeFacts, fam: Fam) -> list[Finding]:
    """Report only: flannel gives flannel.1 the underlay's MTU minus the VXLAN overhead and writes
    it to subnet.env as FLANNEL_MTU (the pods' MTU). A vxlan device larger than that makes the
    outer packets of big inner ones larger than the underlay carries (fragmented or dropped:
    small packets pass, big ones across nodes die); pods (cni0's ports) or FLANNEL_MTU larger
    than the vxlan device send packets it must refuse or fragment."""
    link = link_by_name(f.links, fam.dev)
    if link is None or not isinstance(link.get("mtu"), int):
        return []
    mtu = int(link["mtu"])
    info = ((link.get("linkinfo") or {}).get("info_data") or {}) \
        if isinstance(link.get("linkinfo"), dict) else {}
    under_name = info.get("link") if isinstance(info, dict) else None
    # the VTEP's own address: iproute2 names an IPv6 one "local6" (ip/iplink_vxlan.c)
    vtep = (info.get("local") or info.get("local6")) if isinstance(info, dict) else None
    if not under_name and vtep:
        for a in f.addrs or ():
            if isinstance(a, dict) and any(isinstance(x, dict) and x.get("local") == vtep
                                           for x in a.get("addr_info") or ()):
                under_name = a.get("ifname")
                break
    under = link_by_name(f.links, str(under_name)) if under_name else None
    under_mtu = under.get("mtu") if isinstance(under, dict) and isinstance(under.get("mtu"), int) \
        else None
    max_mtu = under_mtu - VXLAN_OVERHEAD[fam.version] if under_mtu else None
    bridge = link_by_name(f.links, "cni0")
    bridge_mtu = bridge.get("mtu") if isinstance(bridge, dict) and isinstance(bridge.get("mtu"), int) \
        else None
    ports = [int(x["mtu"]) for x in f.links or () if isinstance(x, dict)
             and x.get("master") == "cni0" and isinstance(x.get("mtu"), int)]
    pod_mtu = max(ports) if ports else None
    env_raw = (f.subnet_env or {}).get("FLANNEL_MTU") if fam.version == 4 else None
    env_mtu = int(env_raw) if isinstance(env_raw, str) and env_raw.isdigit() else None
    problems, evidence = [], []
    if max_mtu is not None and mtu > max_mtu:
        problems.append("underlay")
        evidence.append(f"ip -d link: {fam.dev} mtu {mtu}, vxlan over {under_name} mtu {under_mtu}: "
                        f"at most {max_mtu} fits ({VXLAN_OVERHEAD[fam.version]} bytes of VXLAN)")
    if fam.version == 4 and pod_mtu is not None and pod_mtu > mtu:
        problems.append("pods")
        evidence.append(f"ip -d link: cni0's ports (the pods' veths) mtu up to {pod_mtu} > "
                        f"{fam.dev} mtu {mtu}")
    if env_mtu is not None and env_mtu > mtu:
        problems.append("subnet-env")
        evidence.append(f"/run/flannel/subnet.env: FLANNEL_MTU={env_mtu} > {fam.dev} mtu {mtu} "
                        "(the MTU new pods get)")
    if not problems:
        return []
    return [Finding(
        code="FLANNEL_MTU_MISMATCH", severity="warning", node=node,
        title=(f"{fam.dev} MTU {mtu} does not fit the underlay ({under_name} {under_mtu})"
               if "underlay" in problems else f"pods' MTU larger than {fam.dev}'s ({mtu})"),
        evidence=tuple(evidence),
        explanation=("Small packets pass, big ones between nodes are fragmented or dropped (TCP "
                     "sessions hang after the handshake, large responses never arrive). flannel "
                     "sets the vxlan device's MTU from the underlay at start (minus the VXLAN "
                     "header) and writes it as FLANNEL_MTU for new pods: correct the MTU that was "
                     "set by hand (or net-conf.json's MTU), restart flannel on the node, and "
                     "recreate the pods created with the larger MTU. Not changed by this tool: "
                     "which MTU the underlay really carries is not visible from the node."),
        reference=REF_TROUBLE, step=None,
        data=MtuData(device=fam.dev, mtu=mtu, underlay=str(under_name) if under_name else None,
                     underlay_mtu=under_mtu, max_mtu=max_mtu, bridge_mtu=bridge_mtu,
                     pod_mtu=pod_mtu, subnet_env_mtu=env_mtu, problems=problems),
    )]


def _stale_subnet(snapshot: ClusterSnapshot, node: str, f: NodeFacts, nodes: dict[str, Any],
                  fam: Fam = V4, peers: _Peers | None = None) -> list[Finding]:
    DEV = fam.dev  # noqa: N806
    me = nodes[node]
    cidr = fam.cidr(me)
    gw = fam.gateway(me)
    expected = f"{gw}/{32 if fam.version == 4 else 128}"
    link = link_by_name(f.links, DEV)
    addrs = fam.addrs(f)
    stale_addrs = [a for a in addrs if not in_net(a, cidr)]
    env = f.subnet_env
    env_sub = (env or {}).get(fam.env_subnet)
    env_stale = bool(env_sub) and not in_net(env_sub, cidr)
    owned = (peers or _Peers(nodes, fam)).owned
    stale_routes = []
    for r in fam.routes(f):
        if r.get("dev") != DEV:
            continue
        dst = r.get("dst")
        n = net_of(dst)
        if n is None:
            continue
        if fam.version == 6 and (n.is_link_local or (
                r.get("protocol") == "kernel" and cidr and in_net(str(n.network_address), cidr))):
            # the kernel's own IPv6 routes on flannel-v6.1: fe80::/64 and the prefix route of
            # the device's own address (the node's subnet address /128): normal, not stale
            continue
        if str(n) not in owned:
            stale_routes.append(r | {"reason": "subnet not owned by any node"})
        elif r.get("prefsrc") and not in_net(r.get("prefsrc"), cidr):
            stale_routes.append(r | {"reason": f"source {r.get('prefsrc')} outside {cidr}"})
    if not stale_addrs and not env_stale and not stale_routes:
        return []
    evidence = [f"ip -j addr: {DEV} inet {a}" for a in stale_addrs]
    if env_stale:
        evidence.append(f"/run/flannel/subnet.env: {fam.env_subnet}={env_sub}")
    evidence += [f"ip -j route: {render_route(r)} ({r['reason']})" for r in stale_routes]
    evidence.append(f"node {node} podCIDR: {cidr} ({DEV} should carry {expected})")
    pod = pod_for(snapshot, "flannel_pods", node)
    if pod is not None:
        for line in list(pod.log_tail) + list(pod.previous_log_tail):
            if "incompatible addresses" in line:
                evidence.append(f"{pod.name} log: {line.strip()}")
                break
    what = []
    if stale_addrs:
        what.append(f"{DEV} carries {', '.join(stale_addrs)}")
    if env_stale:
        what.append(f"subnet.env says {env_sub}")
    if stale_routes:
        what.append(f"{len(stale_routes)} stale route(s) via {DEV}")
    return [Finding(
        code="FLANNEL_STALE_SUBNET", severity="error", node=node,
        title=f"flannel state for a subnet this node no longer owns ({'; '.join(what)})",
        evidence=tuple(evidence),
        explanation=(f"The node's podCIDR is {cidr}, but flannel's device/lease/routes still hold "
                     "an old subnet; flanneld then fails with 'link has incompatible addresses' "
                     "and traffic for the old subnet is misrouted. Remove the stale address, "
                     "routes and subnet.env and restart flannel on the node."),
        reference=REF_TROUBLE, step="cni_bridge",
        data=StaleSubnetData(
            device=DEV, pod_cidr=cidr, expected_address=expected, stale_addresses=stale_addrs,
            addresses=addrs, link_present=link is not None, subnet_env=env,
            subnet_env_stale=env_stale,
            # every attribute `ip -j route` showed (proto, scope, src, metric, table, pref,
            # metrics, flags...): the repair's rollback re-adds the route exactly from these
            stale_routes=[dict(r) | {"flags": r.get("flags") or []} for r in stale_routes],
            flannel_pod=pod.name if pod else None,
            namespace=pod.namespace if pod else "kube-flannel", ip_version=fam.version,
            env_key=fam.env_subnet),
    )]


def _missing_routes(node: str, f: NodeFacts, nodes: dict[str, Any], fam: Fam = V4,
                    direct: bool = False, peers: _Peers | None = None) -> list[Finding]:
    DEV = fam.dev  # noqa: N806
    sec = fam.route_section(f)
    if sec is None or not sec.ok:
        return []  # no route table read: nothing to conclude
    peers = peers or _Peers(nodes, fam)
    by_net = _index(fam.routes(f), lambda r: str(net_of(r.get("dst")) or ""))
    missing = []
    for peer, want, gw, peer_ip in peers.subnets:
        if peer.name == node:
            continue
        mine = by_net.get(want, ())
        # DirectRouting: a peer on the same L2 network is routed via its own IP, not flannel.1
        ok = any((r.get("dev") == DEV and r.get("gateway") == gw) or
                 (direct and peer_ip and r.get("gateway") == peer_ip) for r in mine)
        if not ok:
            missing.append({"peer_node": peer.name, "pod_cidr": want,
                            "expected": f"{want} via {gw} dev {DEV} onlink",
                            "direct_routing_alternative": (f"{want} via {peer_ip}"
                                                           if direct and peer_ip else None),
                            "actual": [render_route(r) for r in mine]})
    # a more specific route inside a current node's podCIDR (a blackhole / unreachable /
    # prohibit, or one via another device or gateway) wins over flannel's route by longest
    # prefix: part of that subnet is cut off whatever flannel writes (a flannel restart does not
    # remove it). Flannel writes none: its routes are whole podCIDRs (and the node's own subnet
    # is cni0's connected route).
    shadowing = []
    cidr_nets = [(peer, net_of(want), gw) for peer, want, gw, _ in peers.subnets]
    for rt in fam.routes(f):
        if not isinstance(rt, dict):
            continue
        n = net_of(rt.get("dst"))
        if n is None or rt.get("table") not in (None, "main") or rt.get("protocol") == "kernel":
            # (the kernel's own routes follow the devices' addresses: flannel-v6.1's /128,
            # cni0's prefix; a wrong address is CNI_BRIDGE_CONFLICT's / FLANNEL_STALE_SUBNET's)
            continue
        for peer, pnet, gw in cidr_nets:
            if pnet is None or n.version != pnet.version or n.prefixlen <= pnet.prefixlen \
                    or not n.subnet_of(pnet):  # type: ignore[arg-type]
                continue
            if peer.name == node:
                if rt.get("type") in (None, "unicast") and not rt.get("gateway") \
                        and rt.get("dev") != DEV:
                    # the node's own pods, reached on a device of this node: cni0, or each
                    # pod's own veth where the CNI plugin routes pods (canal/rke2-canal: calico's
                    # plugin writes '10.244.1.5 dev cali... scope link' for every pod; the ptp
                    # plugin likewise). Deleting these would cut every pod of the node off.
                    continue
            elif rt.get("dev") == DEV and rt.get("gateway") == gw:
                continue
            shadowing.append({"peer_node": peer.name, "pod_cidr": str(pnet), "dst": str(n),
                              "route": render_route(rt), "json": dict(rt)})
            break
    wrong_get = []
    for ip, r in sorted(f.route_get.items()):
        n_ip = net_of(ip)
        if n_ip is None or n_ip.version != fam.version:
            continue
        owner_n = peers.owner_of(ip)
        owner = owner_n.name if owner_n is not None else None
        if owner is None or owner == node:
            continue
        if direct and r is not None and r.get("gateway") and r.get("gateway") == fam.public_ip(owner_n):
            continue
        if r is None or r.get("dev") != DEV:
            wrong_get.append({"ip": ip, "peer_node": owner, "dev": (r or {}).get("dev"),
                              "gateway": (r or {}).get("gateway"),
                              "route": render_route(r) if r else "unreachable"})
    if not missing and not wrong_get and not shadowing:
        return []
    link_sec = f.section("ip_link")
    link_present = not (link_sec is not None and link_sec.ok and link_by_name(f.links, DEV) is None)
    evidence = [] if link_present else [f"ip -j link: no {DEV} (the vxlan device does not exist)"]
    for m in missing:
        evidence.append(f"ip {'-6 ' if fam.version == 6 else ''}-j route: no {m['expected']}"
                        + (f" (found: {'; '.join(m['actual'])})" if m["actual"] else ""))
    for sh in shadowing:
        evidence.append(f"ip {'-6 ' if fam.version == 6 else ''}-j route: {sh['route']} "
                        f"(inside {sh['peer_node']}'s podCIDR {sh['pod_cidr']}: more specific "
                        "than flannel's route)")
    for w in wrong_get:
        evidence.append(f"ip route get {w['ip']} ({w['peer_node']}'s pod): {w['route']}")
    return [Finding(
        code="FLANNEL_MISSING_ROUTE", severity="error", node=node,
        title=(("" if link_present else f"{DEV} does not exist: ")
               + "no flannel route to " + ", ".join(sorted({m["peer_node"] for m in missing} |
                                                           {w["peer_node"] for w in wrong_get} |
                                                           {x["peer_node"] for x in shadowing}))),
        evidence=tuple(evidence),
        explanation=("flannel (vxlan) routes every other node's podCIDR 'via <its network "
                     "address> dev flannel.1 onlink'. Without that route pods on this node cannot "
                     "reach those nodes' pods. Restart flannel on this node so it reprograms "
                     "them."),
        reference=REF_VXLAN, step="cni_bridge",
        data=MissingRouteData(missing=missing, wrong_route_get=wrong_get, device=DEV,
                              ip_version=fam.version, direct_routing=direct,
                              link_present=link_present, shadowing=shadowing),
    )]
