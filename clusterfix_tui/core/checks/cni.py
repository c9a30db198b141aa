"""CNI on the node: cni0 bridge address vs podCIDR, stray config files in /etc/cni/net.d."""

from __future__ import annotations

import ipaddress
from typing import Any

from clusterfix_tui.core.checks._common import in_net, pod_for
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding
from clusterfix_tui.core.parsers import cni_plugin_types, ipv4_addrs

REF_BRIDGE = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"
REF_CNI = "https://www.cni.dev/docs/spec/#section-1-network-configuration-format"
CNI_DIR = "/etc/cni/net.d"
CNI_EXT = (".conf", ".conflist", ".json")


def check(snapshot: Any, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    nodes = getattr(snapshot, "nodes", {}) or {}
    for node, f in sorted(facts_by_node.items()):
        info = nodes.get(node)
        cidr = info.pod_cidr if info else None
        if not cidr and f.subnet_env and f.subnet_env.get("FLANNEL_SUBNET"):
            cidr = str(ipaddress.ip_interface(f.subnet_env["FLANNEL_SUBNET"]).network) \
                if _valid_iface(f.subnet_env["FLANNEL_SUBNET"]) else None
        if cidr:
            out.extend(_bridge(snapshot, node, f, cidr))
        out.extend(_conflist(node, f))
    return out


def _valid_iface(s: str) -> bool:
    try:
        ipaddress.ip_interface(s)
        return True
    except ValueError:
        return False


def _bridge(snapshot: Any, node: str, f: NodeFacts, cidr: str) -> list[Finding]:
    addrs = ipv4_addrs(f.addrs, "cni0")
    wrong = [a for a in addrs if not in_net(a, cidr)]
    if not wrong:
        return []
    net = ipaddress.ip_network(cidr, strict=False)
    expected = f"{net.network_address + 1}/{net.prefixlen}"
    pod = pod_for(snapshot, "flannel_pods", node)
    evidence = [f"ip -j addr: cni0 inet {a}" for a in wrong] + [f"node podCIDR: {cidr}"]
    if pod is not None:
        for line in list(pod.log_tail) + list(pod.previous_log_tail):
            if "already has an IP address different from" in line:
                evidence.append(f"{pod.name} log: {line.strip()}")
                break
    return [Finding(
        code="CNI_BRIDGE_CONFLICT", severity="error", node=node,
        title=f"cni0 carries {', '.join(wrong)}, outside the node's podCIDR {cidr}",
        evidence=tuple(evidence),
        explanation=("flannel sets cni0's address from the node's subnet; when cni0 already "
                     "carries another one (an old podCIDR, another CNI) flannel fails with "
                     "'failed to set bridge addr: \"cni0\" already has an IP address different "
                     "from ...' and pods on this node get no network. Delete cni0 and restart "
                     "flannel on this node."),
        reference=REF_BRIDGE, step="cni_bridge",
        data={"device": "cni0", "wrong_addresses": wrong, "addresses": addrs,
              "expected": expected, "pod_cidr": cidr,
              "flannel_pod": pod.name if pod else None,
              "namespace": pod.namespace if pod else "kube-flannel"},
    )]


def _conflist(node: str, f: NodeFacts) -> list[Finding]:
    if not f.cni_files:
        return []
    names = sorted(p for p in f.cni_files if p.endswith(CNI_EXT))
    flannel = next((p for p in names if "flannel" in cni_plugin_types(f.cni_configs.get(p))), None)
    unparseable = [p for p in names if f.cni_configs.get(p) is None]
    if flannel is None:
        return []  # not a flannel node, or flannel not installed yet: nothing to compare with
    stray = [p for p in names if p < flannel and p != flannel]
    bad_before = [p for p in unparseable if p < flannel]
    if not stray and not bad_before:
        return []
    evidence = [f"ls {CNI_DIR}: " + " ".join(n.rsplit('/', 1)[-1] for n in names)]
    for p in stray:
        conf = f.cni_configs.get(p)
        types = ",".join(cni_plugin_types(conf)) or "unparseable"
        evidence.append(f"{p}: name={(conf or {}).get('name', '?')} type={types} sorts before {flannel}")
    return [Finding(
        code="CNI_STRAY_CONFLIST", severity="warning", node=node,
        title=f"{stray[0].rsplit('/', 1)[-1]} in {CNI_DIR} takes precedence over flannel's config",
        evidence=tuple(evidence),
        explanation=("The container runtime uses the first network config in /etc/cni/net.d in "
                     "lexicographic order; a stray bridge/other CNI config sorting before "
                     "flannel's gives new pods addresses on the wrong network (and can put a "
                     "foreign address on cni0). Move it away."),
        reference=REF_CNI, step="cni_bridge",
        data={"files": names, "active": names[0], "flannel_file": flannel, "stray": stray,
              "unparseable": unparseable, "dir": CNI_DIR},
    )]
