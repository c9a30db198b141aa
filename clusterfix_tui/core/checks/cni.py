"""CNI on the node: cni0 bridge address vs podCIDR, stray config files in /etc/cni/net.d."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks._common import in_net, pod_for
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.parsers import cni_plugin_types, ipv4_addrs, link_by_name
from clusterfix_tui.core.shape import FLANNEL_ANNOTATION_PREFIX, shape_of, why_not
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_BRIDGE = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"
REF_CNI = "https://www.cni.dev/docs/spec/#section-1-network-configuration-format"
CNI_DIR = "/etc/cni/net.d"
# finding code -> the facts sections it is decided from
READS: dict[str, tuple[str, ...]] = {
    "CNI_BRIDGE_CONFLICT": ("ip_addr", "ip_link", "subnet_env", "cni_conf"),
    "CNI_STRAY_CONFLIST": ("cni_conf",),
    "FLANNEL_LINK_DOWN": ("ip_link",),
}
CNI_EXT = (".conf", ".conflist", ".json")



# Each code's data (defaults only so a test can build the part it needs; the checks fill them).
@dataclass(frozen=True, kw_only=True)
class BridgeConflictData(FindingData, codes=("CNI_BRIDGE_CONFLICT",)):
    device: str = "cni0"
    wrong_addresses: list[str] = field(default_factory=list)  # every family's, merged
    addresses: list[str] = field(default_factory=list)
    expected: str = ""  # the gateway address flannel gives the bridge
    pod_cidr: str = ""
    flannel_pod: str | None = None
    namespace: str = "kube-flannel"
    ip_version: int = 4
    other_families: list[dict[str, Any]] = field(default_factory=list)  # the other family's data


@dataclass(frozen=True, kw_only=True)
class LinkDownData(FindingData, codes=("FLANNEL_LINK_DOWN",)):
    devices: list[str] = field(default_factory=list)  # administratively down, in order
    flags: dict[str, list[str]] = field(default_factory=dict)  # device -> `ip -j link` flags


@dataclass(frozen=True, kw_only=True)
class StrayConflistData(FindingData, codes=("CNI_STRAY_CONFLIST",)):
    files: list[str] = field(default_factory=list)
    active: str = ""  # the config the runtime uses (the first in order)
    flannel_file: str | None = None
    stray: list[str] = field(default_factory=list)
    unparseable: list[str] = field(default_factory=list)
    dir: str = "/etc/cni/net.d"

def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    shape = shape_of(snapshot)
    if why_not(shape, "CNI_BRIDGE_CONFLICT") is not None:
        return []  # not flannel: cni0 and the conflist order are another CNI's business
    nodes = snapshot.nodes
    for node, f in sorted(facts_by_node.items()):
        info = nodes.get(node)
        cidrs: dict[int, str] = {}
        for v in (4, 6):
            c = info.pod_cidr_for(v) if info is not None and hasattr(info, "pod_cidr_for") else None
            if c is None and info is not None and v == 4 and info.pod_cidr and \
                    not hasattr(info, "pod_cidr_for"):
                c = info.pod_cidr
            if c:
                cidrs[v] = c
        for v, key in ((4, "FLANNEL_SUBNET"), (6, "FLANNEL_IPV6_SUBNET")):
            if v not in cidrs and f.subnet_env and f.subnet_env.get(key) and \
                    _valid_iface(f.subnet_env[key]):
                cidrs[v] = str(ipaddress.ip_interface(f.subnet_env[key]).network)
        found = [x for v, c in sorted(cidrs.items()) if not _flannel_own_subnet(info, f, c, v)
                 for x in _bridge(snapshot, node, f, c, v)]
        if len(found) > 1:  # one finding per node: the repair (delete cni0) is one action
            first = found[0]
            data = first.data_as(BridgeConflictData)
            merged = dataclasses.replace(
                data, other_families=[x.data_as(BridgeConflictData).to_dict() for x in found[1:]],
                wrong_addresses=[a for x in found
                                 for a in x.data_as(BridgeConflictData).wrong_addresses])
            found = [dataclasses.replace(first, data=merged)]
        out.extend(found)
        out.extend(_link_down(snapshot, node, f))
        out.extend(_conflist(node, f))
    return out


def _flannel_own_subnet(info: Any, f: NodeFacts, cidr: str, version: int) -> bool:
    """cni0 carries exactly the gateway of subnet.env's subnet, that subnet is not the node's
    podCIDR, and the node has none of the annotations flannel's kube subnet manager writes
    (flannel.alpha.coreos.com/*): flannel leases its subnets itself (etcd mode, or
    --kube-subnet-mgr off), so the podCIDR is not what cni0 should carry and deleting cni0
    would be wrong. With those annotations a subnet.env off the podCIDR is stale
    (FLANNEL_STALE_SUBNET) and cni0 on it a conflict, as before."""
    key = "FLANNEL_SUBNET" if version == 4 else "FLANNEL_IPV6_SUBNET"
    env = (f.subnet_env or {}).get(key)
    if not env or not _valid_iface(env):
        return False
    if any(str(k).startswith(FLANNEL_ANNOTATION_PREFIX)
           for k in (getattr(info, "annotations", None) or {})):
        return False
    iface = ipaddress.ip_interface(env)
    if iface.network == ipaddress.ip_network(cidr, strict=False):
        return False
    addrs = _addrs(f.addrs, "cni0", version)
    return bool(addrs) and all(_same_iface(a, iface) for a in addrs)


def _same_iface(a: str, iface: Any) -> bool:
    try:
        return ipaddress.ip_interface(a) == iface
    except ValueError:
        return False


def _link_down(snapshot: ClusterSnapshot, node: str, f: NodeFacts) -> list[Finding]:
    """flannel's devices set administratively down (`ip link set DEV down`: no UP flag). The
    kernel then drops every route through them (and flannel.1's neighbour entries): cni0 down
    cuts the node's pods off, flannel.1 down cuts the node off the other nodes' pods. Judged on
    the admin flag only: cni0 without ports (no pods yet) is UP with NO-CARRIER, not down."""
    shape = shape_of(snapshot)
    vxlan = bool(getattr(shape, "flannel_vxlan", True)) if shape is not None else True
    devs = ["cni0"] + (["flannel.1", "flannel-v6.1"] if vxlan else [])
    down: list[str] = []
    flags: dict[str, list[str]] = {}
    for dev in devs:
        link = link_by_name(f.links, dev)
        if link is None:
            continue
        fl = [str(x) for x in (link.get("flags") or ()) if isinstance(x, str)]
        if not isinstance(link.get("flags"), list) or "UP" in fl:
            continue
        down.append(dev)
        flags[dev] = fl
    if not down:
        return []
    return [Finding(
        code="FLANNEL_LINK_DOWN", severity="error", node=node,
        title=f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} down",
        evidence=tuple(f"ip -j link: {d} <{','.join(flags[d])}> (no UP flag: set down)"
                       for d in down),
        explanation=("A device flannel's pod network runs on is administratively down: the "
                     "kernel removed every route through it. cni0 down: the node's pods are "
                     "unreachable (their subnet's route is gone); flannel.1 down: the routes, "
                     "neighbour entries and vxlan traffic to every other node's pods are gone. "
                     "Set the device up (the routes and entries flannel writes are re-added "
                     "with it)."),
        reference=REF_BRIDGE, step="cni_bridge",
        data=LinkDownData(devices=down, flags=flags),
    )]


def _prefixlen(a: str) -> int | None:
    try:
        return ipaddress.ip_interface(a).network.prefixlen if "/" in a else None
    except ValueError:
        return None


def _valid_iface(s: str) -> bool:
    try:
        ipaddress.ip_interface(s)
        return True
    except ValueError:
        return False


def _addrs(addrs: Any, ifname: str, version: int) -> list[str]:
    if version == 4:
        return ipv4_addrs(addrs, ifname)
    out = []
    for link in addrs or ():
        if not isinstance(link, dict) or link.get("ifname") != ifname:
            continue
        for a in link.get("addr_info") or ():
            if isinstance(a, dict) and a.get("family") == "inet6" and a.get("local") and \
                    a.get("scope") != "link" and not str(a.get("local")).lower().startswith("fe80"):
                out.append(f"{a.get('local')}/{a.get('prefixlen', 128)}")
    return out


def _bridge(snapshot: ClusterSnapshot, node: str, f: NodeFacts, cidr: str, version: int = 4) -> list[Finding]:
    addrs = _addrs(f.addrs, "cni0", version)
    net = ipaddress.ip_network(cidr, strict=False)
    # outside the podCIDR, or inside it with another prefix length (10.244.1.1/16 for
    # 10.244.1.0/24): the CNI bridge plugin compares "IP/prefix" as text and refuses both with
    # '"cni0" already has an IP address different from 10.244.1.1/24' (plugins bridge.go
    # ensureAddr: any other IPv4 address; an IPv6 one that overlaps the gateway's subnet)
    wrong = [a for a in addrs if not in_net(a, cidr) or _prefixlen(a) not in (None, net.prefixlen)]
    if not wrong:
        return []
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
        title=(f"cni0 carries {', '.join(wrong)}, outside the node's podCIDR {cidr}"
               if all(not in_net(a, cidr) for a in wrong) else
               f"cni0 carries {', '.join(wrong)}, not the node's podCIDR gateway {expected}"),
        evidence=tuple(evidence),
        explanation=("flannel sets cni0's address from the node's subnet; when cni0 already "
                     "carries another one (an old podCIDR, another CNI) flannel fails with "
                     "'failed to set bridge addr: \"cni0\" already has an IP address different "
                     "from ...' and pods on this node get no network. Delete cni0 and restart "
                     "flannel on this node."),
        reference=REF_BRIDGE, step="cni_bridge",
        data=BridgeConflictData(
            device="cni0", wrong_addresses=wrong, addresses=addrs, expected=expected,
            pod_cidr=cidr, flannel_pod=pod.name if pod else None,
            namespace=pod.namespace if pod else "kube-flannel", ip_version=version),
    )]


def delegates_to_flannel(conf: dict[str, Any] | None, flannel_file: str | None) -> bool:
    """A multus config (thin: "delegates" holding flannel's conflist; thick: "multus-shim" with
    "clusterNetwork" naming flannel's file or network) that puts pods on flannel first."""
    if not isinstance(conf, dict):
        return False
    types = cni_plugin_types(conf)
    if not any(t in ("multus", "multus-shim") for t in types):
        return False
    for d in conf.get("delegates") or []:
        if isinstance(d, dict) and "flannel" in cni_plugin_types(d):
            return True
    cn = str(conf.get("clusterNetwork") or "")
    if cn:
        base = flannel_file.rsplit("/", 1)[-1] if flannel_file else ""
        return "flannel" in cn or (bool(base) and cn.rsplit("/", 1)[-1] == base) or cn == "cbr0"
    # no delegates, no clusterNetwork: multus uses the first other config in the dir (flannel's
    # when nothing else precedes it)
    return not conf.get("delegates")


def _conflist(node: str, f: NodeFacts) -> list[Finding]:
    if not f.cni_files:
        return []
    dirs: dict[str, list[str]] = {}
    for p in f.cni_files:
        if p.endswith(CNI_EXT):
            dirs.setdefault(p.rsplit("/", 1)[0], []).append(p)
    out: list[Finding] = []
    for d in sorted(dirs):
        out.extend(_conflist_dir(node, f, d, sorted(dirs[d])))
    return out


def _conflist_dir(node: str, f: NodeFacts, cni_dir: str, names: list[str]) -> list[Finding]:
    flannel = next((p for p in names if "flannel" in cni_plugin_types(f.cni_configs.get(p))), None)
    unparseable = [p for p in names if f.cni_configs.get(p) is None]
    if flannel is None:
        return []  # not a flannel node, or flannel not installed yet: nothing to compare with
    others = [p for p in names if p < flannel and p != flannel]
    stray = [p for p in others if not delegates_to_flannel(f.cni_configs.get(p), flannel)]
    # (a multus front that delegates to flannel is the active config on purpose: not stray)
    bad_before = [p for p in unparseable if p < flannel]
    if not stray and not bad_before:
        return []
    evidence = [f"ls {cni_dir}: " + " ".join(n.rsplit('/', 1)[-1] for n in names)]
    for p in stray:
        conf = f.cni_configs.get(p)
        types = ",".join(cni_plugin_types(conf)) or "unparseable"
        evidence.append(f"{p}: name={(conf or {}).get('name', '?')} type={types} sorts before {flannel}")
    return [Finding(
        code="CNI_STRAY_CONFLIST", severity="warning", node=node,
        title=f"{stray[0].rsplit('/', 1)[-1]} in {cni_dir} takes precedence over flannel's config",
        evidence=tuple(evidence),
        explanation=("The container runtime uses the first network config in /etc/cni/net.d in "
                     "lexicographic order; a stray bridge/other CNI config sorting before "
                     "flannel's gives new pods addresses on the wrong network (and can put a "
                     "foreign address on cni0). Move it away."),
        reference=REF_CNI, step="cni_bridge",
        data=StrayConflistData(files=names, active=names[0], flannel_file=flannel, stray=stray,
                               unparseable=unparseable, dir=cni_dir),
    )]
