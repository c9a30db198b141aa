"""flannel vxlan on each node, compared with the API's view of every node.

NORMAL (not findings): flannel.1 carries the node subnet's network address as a /32
(10.244.1.0/32), and every remote subnet is routed `10.244.Y.0/24 via 10.244.Y.0 dev flannel.1
onlink` (flannel's backend/vxlan does this on purpose; the runbook's note reads them as oddities).
Faults: addresses/routes/subnet.env for a subnet the node no longer owns, routes missing for
current nodes, fdb/neigh VTEP MACs that disagree with the peers' backend-data annotation.
"""

from __future__ import annotations

from typing import Any

from clusterfix_tui.core.checks._common import in_net, net_of, pod_for
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding
from clusterfix_tui.core.parsers import ipv4_addrs, link_by_name, render_route

DEV = "flannel.1"
REF_VXLAN = "https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md#vxlan"
REF_TROUBLE = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"


def _is_vxlan(snapshot: Any) -> bool:
    backend = (getattr(snapshot, "flannel_backend", None) or "vxlan").lower()
    return backend == "vxlan"


def check(snapshot: Any, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    if not _is_vxlan(snapshot):
        return []
    nodes = getattr(snapshot, "nodes", {}) or {}
    out: list[Finding] = []
    for node, f in sorted(facts_by_node.items()):
        me = nodes.get(node)
        if me is None or not me.pod_cidr:
            continue
        out.extend(_stale_vtep(snapshot, node, f, nodes))
        out.extend(_stale_subnet(snapshot, node, f, nodes))
        out.extend(_missing_routes(node, f, nodes))
    return out


def _stale_vtep(snapshot: Any, node: str, f: NodeFacts, nodes: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for peer in sorted(nodes.values(), key=lambda n: n.name):
        if peer.name == node or not peer.vtep_mac:
            continue
        want = peer.vtep_mac.lower()
        peer_ip = peer.public_ip
        gw = peer.flannel_gateway
        # what the kernel uses: the neighbour entry of the peer's subnet address (inner dst MAC)
        # and the fdb entry of that MAC (outer dst IP). fdb entries of other MACs towards the peer
        # are leftovers: harmless alone, cleaned up with a real fault.
        neigh_bad = [e for e in f.neigh_flannel
                     if gw and e.get("dst") == gw and e.get("lladdr")
                     and str(e.get("lladdr")).lower() != want]
        fdb_want = [e for e in f.fdb_flannel if str(e.get("mac", "")).lower() == want]
        fdb_wrong_dst = [e for e in fdb_want if e.get("dst") and e.get("dst") != peer_ip]
        fdb_sec = f.section("fdb_flannel")
        fdb_missing = bool(fdb_sec is not None and fdb_sec.ok
                           and link_by_name(f.links, DEV) is not None
                           and not any(e.get("dst") == peer_ip for e in fdb_want))
        fdb_stale = [e for e in f.fdb_flannel
                     if e.get("dst") == peer_ip and str(e.get("mac", "")).lower() not in (want, "00:00:00:00:00:00")]
        if not neigh_bad and not fdb_wrong_dst and not fdb_missing:
            continue
        fdb_bad = fdb_stale + fdb_wrong_dst
        wrong = sorted({str(e.get("mac", "")).lower() for e in fdb_bad} |
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
        evidence.append(f"{peer.name} annotation flannel.alpha.coreos.com/backend-data: "
                        f"VtepMAC {want}")
        out.append(Finding(
            code="FLANNEL_STALE_VTEP", severity="error", node=node,
            title=(f"stale VTEP MAC for {peer.name}: {', '.join(wrong)} instead of {want}" if wrong
                   else f"no fdb entry for {peer.name}'s VTEP MAC {want}"),
            evidence=tuple(evidence),
            explanation=(f"{node} sends vxlan traffic for {peer.name}'s pods ({peer.pod_cidr}) "
                         f"to a MAC that is no longer {peer.name}'s flannel.1 (as after a reboot "
                         "recreated it): cross-node traffic to those pods is lost. Replace the "
                         "fdb/neigh entries with the annotated VtepMAC (or restart flannel here)."),
            reference=REF_VXLAN, step="cni_bridge",
            data={"peer_node": peer.name, "peer_ip": peer_ip, "peer_subnet_gw": gw,
                  "wrong_mac": (str(neigh_bad[0].get("lladdr")).lower() if neigh_bad
                                else wrong[0] if wrong else None), "wrong_macs": wrong,
                  "expected_mac": want,
                  "where": [w for w, bad in (("fdb", fdb_bad or fdb_missing), ("neigh", neigh_bad)) if bad],
                  "fdb_missing": fdb_missing,
                  "fdb_entries": fdb_lines, "neigh_entries": neigh_lines, "device": DEV},
        ))
    return out


def _stale_subnet(snapshot: Any, node: str, f: NodeFacts, nodes: dict[str, Any]) -> list[Finding]:
    me = nodes[node]
    cidr = me.pod_cidr
    gw = me.flannel_gateway
    expected = f"{gw}/32"
    link = link_by_name(f.links, DEV)
    addrs = ipv4_addrs(f.addrs, DEV)
    stale_addrs = [a for a in addrs if not in_net(a, cidr)]
    env = f.subnet_env
    env_sub = (env or {}).get("FLANNEL_SUBNET")
    env_stale = bool(env_sub) and not in_net(env_sub, cidr)
    owned = {str(net_of(n.pod_cidr)) for n in nodes.values() if n.pod_cidr and net_of(n.pod_cidr)}
    stale_routes = []
    for r in f.routes:
        if r.get("dev") != DEV:
            continue
        dst = r.get("dst")
        n = net_of(dst)
        if n is None:
            continue
        if str(n) not in owned:
            stale_routes.append(r | {"reason": "subnet not owned by any node"})
        elif r.get("prefsrc") and not in_net(r.get("prefsrc"), cidr):
            stale_routes.append(r | {"reason": f"source {r.get('prefsrc')} outside {cidr}"})
    if not stale_addrs and not env_stale and not stale_routes:
        return []
    evidence = [f"ip -j addr: {DEV} inet {a}" for a in stale_addrs]
    if env_stale:
        evidence.append(f"/run/flannel/subnet.env: FLANNEL_SUBNET={env_sub}")
    evidence += [f"ip -j route: {render_route(r)} ({r['reason']})" for r in stale_routes]
    evidence.append(f"node {node} podCIDR: {cidr} (flannel.1 should carry {expected})")
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
        data={"device": DEV, "pod_cidr": cidr, "expected_address": expected,
              "stale_addresses": stale_addrs, "addresses": addrs, "link_present": link is not None,
              "subnet_env": env, "subnet_env_stale": env_stale,
              "stale_routes": [{"dst": r.get("dst"), "gateway": r.get("gateway"),
                                "dev": r.get("dev"), "flags": r.get("flags") or [],
                                "prefsrc": r.get("prefsrc"), "reason": r.get("reason")}
                               for r in stale_routes],
              "flannel_pod": pod.name if pod else None,
              "namespace": pod.namespace if pod else "kube-flannel"},
    )]


def _missing_routes(node: str, f: NodeFacts, nodes: dict[str, Any]) -> list[Finding]:
    sec = f.section("ip_route")
    if sec is None or not sec.ok:
        return []  # no route table read: nothing to conclude
    missing = []
    for peer in sorted(nodes.values(), key=lambda n: n.name):
        if peer.name == node or not peer.pod_cidr or net_of(peer.pod_cidr) is None:
            continue
        want = str(net_of(peer.pod_cidr))
        gw = peer.flannel_gateway
        ok = any(str(net_of(r.get("dst")) or "") == want and r.get("dev") == DEV and
                 r.get("gateway") == gw for r in f.routes)
        if not ok:
            missing.append({"peer_node": peer.name, "pod_cidr": want,
                            "expected": f"{want} via {gw} dev {DEV} onlink",
                            "actual": [render_route(r) for r in f.routes
                                       if str(net_of(r.get("dst")) or "") == want]})
    wrong_get = []
    for ip, r in sorted(f.route_get.items()):
        owner = next((n.name for n in nodes.values() if n.pod_cidr and in_net(ip, n.pod_cidr)), None)
        if owner is None or owner == node:
            continue
        if r is None or r.get("dev") != DEV:
            wrong_get.append({"ip": ip, "peer_node": owner, "dev": (r or {}).get("dev"),
                              "gateway": (r or {}).get("gateway"),
                              "route": render_route(r) if r else "unreachable"})
    if not missing and not wrong_get:
        return []
    evidence = []
    for m in missing:
        evidence.append(f"ip -j route: no {m['expected']}"
                        + (f" (found: {'; '.join(m['actual'])})" if m["actual"] else ""))
    for w in wrong_get:
        evidence.append(f"ip route get {w['ip']} ({w['peer_node']}'s pod): {w['route']}")
    return [Finding(
        code="FLANNEL_MISSING_ROUTE", severity="error", node=node,
        title=("no flannel route to " + ", ".join(sorted({m["peer_node"] for m in missing} |
                                                          {w["peer_node"] for w in wrong_get}))),
        evidence=tuple(evidence),
        explanation=("flannel (vxlan) routes every other node's podCIDR 'via <its network "
                     "address> dev flannel.1 onlink'. Without that route pods on this node cannot "
                     "reach those nodes' pods. Restart flannel on this node so it reprograms "
                     "them."),
        reference=REF_VXLAN, step="cni_bridge",
        data={"missing": missing, "wrong_route_get": wrong_get, "device": DEV},
    )]
