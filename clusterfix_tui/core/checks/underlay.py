"""The VXLAN underlay between the nodes: an active probe from every node to every peer.

The facts script probes each peer's flannel.1 address (`facts.build_facts_script(vxlan_probes=)`,
targets from `probe_targets`): the packet goes through this node's vxlan device, encapsulated to
the peer's udp/<flannel port>, and the answer comes back the same way. ping when the node has it,
else a TCP connect with curl to tcp/10250 (a refusal from the peer's kernel proves the path too).

A node every probe to and from which fails is cut off (the common case: udp/8472 dropped on its
INPUT by a host firewall or a cloud security group; OUTPUT is possible too). Which of the two, and
which rule or policy, is read from the node's own firewall (core/checks/firewall_path.py) on the
VXLAN flows; when no firewall on the nodes drops them, the drop is outside the nodes (security
group, network ACL, MTU) and the finding says so, with no repair step.

Its step is host_network, which accepts the VXLAN on the node that drops it, or, when the drop is
outside the nodes, changes nothing and says where to open the port.
VXLAN_UNDERLAY_BLOCKED is folded into the node's FIREWALL_REJECT / FIREWALL_POLICY_DROP when that
explains it (one fault, one finding; core/checks/__init__.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks._common import IPTABLES_SECTIONS, backend_saves
from clusterfix_tui.core.checks.firewall import (
    FirewallAcceptsData,
    iptables_accept_spec,
    nft_accept_expr,
)
from clusterfix_tui.core.checks.firewall_path import (
    ClusterHosts,
    cluster_flows,
    node_hits,
    vxlan_port,
)
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding

REF = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md#firewalls"


@dataclass(frozen=True, kw_only=True)
class UnderlayBlockedData(FirewallAcceptsData, codes=("VXLAN_UNDERLAY_BLOCKED",)):
    """`accepts`: the narrow VXLAN ACCEPTs on this node when its own firewall drops the flow
    (empty when the drop is on a peer or outside the nodes: nothing to change here)."""

    pairs: list[list[str]] = field(default_factory=list)  # [from, to] probed
    results: dict[str, Any] = field(default_factory=dict)  # "a->b": the probe's result
    port: int = 8472  # flannel's VXLAN udp port
    # "<node> INPUT|OUTPUT" of the first drop found on the nodes' firewalls, else "outside"
    where: str = "outside"
    # the drops found on the nodes' firewalls: {"node", "hook", "backend", "table", "chain",
    # "rule", "kind", "flow"}
    drops: list[dict[str, Any]] = field(default_factory=list)


def _vxlan_backend(snapshot: Any) -> bool:
    shape = getattr(snapshot, "shape", None)
    if shape is not None and getattr(shape, "cni", "unknown") != "unknown":
        return bool(shape.flannel_vxlan)
    return (getattr(snapshot, "flannel_backend", None) or "vxlan").lower() == "vxlan"


# finding code -> the facts sections it is decided from (the probes, and the node's own firewall)
READS: dict[str, tuple[str, ...]] = {
    "VXLAN_UNDERLAY_BLOCKED": ("vxlan_probe", *IPTABLES_SECTIONS, "nft_json", "ip_link", "ip_addr"),
}
# facts section -> the only steps that read it (core/flow.py may leave it out of a re-diagnosis
# made to plan another step: a probe into a broken overlay waits for its timeout, ~2-3 s).
# host_network acts on VXLAN_UNDERLAY_BLOCKED; pods because its PROBE_NO_ROUTE is folded into
# VXLAN_UNDERLAY_BLOCKED (checks.CLUSTER_SYMPTOM_OF): without the probe, it could stand alone
# and be planned. For the other steps it is only a symptom folded into their findings (evidence,
# no action reads it).
ONLY_FOR: dict[str, tuple[str, ...]] = {"vxlan_probe": ("pods", "host_network")}
MAX_PROBES = 8  # per node: on big clusters each node probes the next 8 (every node gets 8 in)


def probe_ring(snapshot: Any) -> tuple[list[str], dict[str, int]]:
    """(node names sorted, name -> position): probe_targets' ring, built once for all nodes."""
    names = sorted(getattr(snapshot, "nodes", {}) or {})
    return names, {n: i for i, n in enumerate(names)}


def probe_targets(snapshot: Any, node: str,
                  ring: tuple[list[str], dict[str, int]] | None = None) -> list[str]:
    """Peers' flannel.1 (IPv4) addresses (a podCIDR's network address): every peer on small
    clusters; on big ones the MAX_PROBES that follow this node in name order (a ring), so every
    node is still probed from MAX_PROBES peers and probes as many, without N^2 probes.
    `ring`: probe_ring(snapshot), when the caller asks for many nodes (a sort per node else)."""
    if not _vxlan_backend(snapshot):
        return []
    names, pos = ring if ring is not None else probe_ring(snapshot)
    if node in pos and len(names) - 1 > MAX_PROBES:
        i = pos[node]
        peers = [names[(i + k) % len(names)] for k in range(1, MAX_PROBES + 1)]
    else:
        peers = [n for n in names if n != node]
    out = []
    for name in peers:
        gw = getattr(snapshot.nodes[name], "flannel_gateway", None)
        try:
            if gw and ipaddress.ip_address(gw).version == 4:
                out.append(gw)
        except ValueError:
            continue
    return out


def probe_result(section: Any) -> str:
    """"ok" | "no-answer" | "rejected" | "unknown" for one vxlan_probe section."""
    text = (section.stdout or "") + "\n" + (section.stderr or "")
    if "probe: ping" in text:
        if section.rc == 0:
            return "ok"
        if "prohibited" in text or "Unreachable" in text:
            return "rejected"
        return "no-answer" if section.rc == 1 else "unknown"
    if "probe: curl" in text:
        if section.rc in (0, 52, 56, 35, 22):  # connected: HTTP answer, empty reply, TLS
            return "ok"
        if section.rc == 7 and "refused" in text:
            return "ok"  # the peer's kernel answered (RST): the underlay works
        if section.rc == 7 and ("No route" in text or "unreachable" in text):
            return "rejected"
        if section.rc == 28:
            return "no-answer"
    return "unknown"


def _probes(snapshot: Any, facts_by_node: dict[str, NodeFacts]) -> dict[tuple[str, str], str]:
    """(from node, to node) -> result."""
    by_gw = {getattr(i, "flannel_gateway", None): n
             for n, i in (getattr(snapshot, "nodes", {}) or {}).items()}
    out: dict[tuple[str, str], str] = {}
    for node, f in facts_by_node.items():
        for s in f.sections.values():
            if s.name == "vxlan_probe" and s.arg and by_gw.get(s.arg):
                out[(node, by_gw[s.arg])] = probe_result(s)
    return out


def check(snapshot: Any, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    if not _vxlan_backend(snapshot):
        return []
    probes = _probes(snapshot, facts_by_node)
    if not probes:
        return []
    nodes = sorted({a for a, _ in probes} | {b for _, b in probes})
    # "rejected": an ICMP error came back through the tunnel (the peer's own firewall rejected
    # the inner packet, flannel.1's neighbours are permanent so it is not a local ARP failure):
    # the underlay carried it both ways. Only silence is an underlay failure.
    failed = {k for k, v in probes.items() if v == "no-answer"}
    if not failed:
        return []
    out: list[Finding] = []
    explained: set[tuple[str, str]] = set()
    # each node's probes, indexed once (a scan of every probe per node was quadratic)
    by_node: dict[str, list[tuple[str, str]]] = {}
    for k in probes:
        for x in dict.fromkeys(k):
            by_node.setdefault(x, []).append(k)
    ok_total = sum(1 for k in probes if k not in failed)
    hosts = ClusterHosts(getattr(snapshot, "nodes", {}) or {})
    # a node all of whose probed pairs fail (both ways) is cut off
    for n in nodes:
        pairs = by_node.get(n, [])
        bad = [k for k in pairs if k in failed]
        # a probe that worked between two other nodes
        others_ok = ok_total - (len(pairs) - len(bad)) > 0 or len(nodes) == 2
        if not pairs or len(bad) != len(pairs) or not others_ok:
            continue
        explained.update(bad)
        out.append(_finding(snapshot, facts_by_node, n, bad, probes, hosts))
    for k in sorted(failed - explained):
        explained.add(k)
        out.append(_finding(snapshot, facts_by_node, k[1], [k], probes, hosts))
    return out


def _finding(snapshot: Any, facts_by_node: dict[str, NodeFacts], node: str,
             pairs: list[tuple[str, str]], probes: dict[tuple[str, str], str],
             hosts: ClusterHosts | None = None) -> Finding:
    evidence = []
    infos = getattr(snapshot, "nodes", {}) or {}
    f = facts_by_node.get(node)
    port = vxlan_port(f, snapshot) if f is not None else 8472
    for a, b in sorted(pairs):
        gw = getattr(infos.get(b), "flannel_gateway", "?")
        evidence.append(f"probe {a} -> {b} ({gw} through flannel.1, udp/{port} underneath): "
                        f"{probes[(a, b)]}")
    drops: list[dict[str, Any]] = []
    accepts: list[dict[str, Any]] = []
    where = "outside"
    # which node's firewall drops the VXLAN: this one (in or out), else a peer's OUTPUT
    candidates = [node] + sorted({a for a, b in pairs if b == node} | {b for a, b in pairs
                                                                      if a == node} - {node})
    for cand in candidates:
        cf = facts_by_node.get(cand)
        if cf is None:
            continue
        flows = [fl for fl in cluster_flows(snapshot, cand, cf, hosts) if fl.name.startswith("vxlan-")]
        saves = backend_saves(cf)
        for h in node_hits(cf, flows, saves):
            hit, flow = h["hit"], h["flow"]
            what = hit.rule if hit.kind == "rule" else f"chain {hit.chain} policy {hit.verdict}"
            label = (f"nft {h['family']} {h['table']}" if h["backend"] == "nft-native"
                     else f"iptables-{h['backend']} {h['table']}")
            hook = "INPUT" if flow.hook == "input" else "OUTPUT"
            evidence.append(f"{cand} {hook}: {label}: {what} drops {flow.describe}")
            drops.append({"node": cand, "hook": hook, "backend": h["backend"],
                          "table": h["table"], "chain": hit.chain, "rule": hit.rule,
                          "kind": hit.kind, "flow": flow.name})
            if cand == node:
                if h["backend"] == "nft-native":
                    accepts.append({"backend": "nft-native", "family": h["family"],
                                    "table": h["table"], "chain": hit.base_chain,
                                    "expr": nft_accept_expr(flow, h["family"]),
                                    "flow": flow.name, "hook": flow.hook,
                                    "describe": flow.describe})
                else:
                    accepts.append({"backend": h["backend"], "table": h["table"],
                                    "chain": hit.base_chain, "spec": iptables_accept_spec(flow),
                                    "flow": flow.name, "hook": flow.hook,
                                    "describe": flow.describe})
        if drops:
            where = f"{drops[0]['node']} {drops[0]['hook']}"
            break
    if not drops:
        evidence.append(f"no host firewall on the nodes drops udp/{port}: the underlay itself "
                        "(a cloud security group / network ACL, a switch, or the MTU) drops it")
    return Finding(
        code="VXLAN_UNDERLAY_BLOCKED", severity="error", node=node,
        title=(f"flannel's VXLAN to and from {node} does not get through"
               + (f" (dropped by {where})" if drops else " (outside the nodes)")),
        evidence=tuple(evidence),
        explanation=("Every pod packet between nodes travels inside VXLAN (udp/"
                     f"{port}) on the node network. Here it does not arrive: cross-node pod "
                     "traffic and NodePorts routed through another node to this node's pods "
                     "time out, while everything on one node works."
                     + ("" if drops else " Open udp/" + str(port) + " between the nodes in the "
                        "cloud security group / network ACL.")),
        reference=REF, step="host_network",
        data=UnderlayBlockedData(
            pairs=[list(p) for p in sorted(pairs)],
            results={f"{a}->{b}": probes[(a, b)] for a, b in pairs},
            port=port, where=where, drops=drops, accepts=accepts),
    )
