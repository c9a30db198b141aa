"""Host networking: ip_forward, bridge-nf-call-iptables / br_netfilter, IPVS modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.shape import ipvs_virtual_servers
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_FORWARD = ("https://kubernetes.io/docs/setup/production-environment/container-runtimes/"
               "#prerequisite-ipv4-forwarding-optional")
REF_BR_NETFILTER = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"
REF_IPVS = "https://kubernetes.io/docs/reference/networking/virtual-ips/#proxy-mode-ipvs"
# finding code -> the facts sections it is decided from
READS: dict[str, tuple[str, ...]] = {
    "IP_FORWARD_OFF": ("sysctl",),
    "BR_NETFILTER_OFF": ("sysctl",),
    "IPV6_FORWARD_OFF": ("sysctl", "ip6_route"),
    "BR_NETFILTER_IP6_OFF": ("sysctl",),
    "IPVS_MODULES_MISSING": ("proc_modules", "sys_module", "lib_modules", "kube_proxy_mode", "ip_vs"),
}
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")
IPV6_FORWARD = "net.ipv6.conf.all.forwarding"
# per-device IPv4 forwarding of the pod network's devices (facts.SYSCTLS): the kernel forwards a
# packet only when forwarding is on for the device it came in on (ip_route_input_slow)
DEVICE_FORWARD = {"cni0": "net.ipv4.conf.cni0.forwarding",
                  "flannel.1": "net.ipv4.conf.flannel/1.forwarding"}
BRIDGE_NF6 = "net.bridge.bridge-nf-call-ip6tables"


@dataclass(frozen=True, kw_only=True)
class SysctlData(FindingData, codes=("IP_FORWARD_OFF", "BR_NETFILTER_OFF", "IPV6_FORWARD_OFF",
                                     "BR_NETFILTER_IP6_OFF")):
    sysctl: str = ""
    value: str | None = None  # None: the sysctl does not exist (br_netfilter not loaded)
    module_loaded: bool | None = None  # BR_NETFILTER_OFF / BR_NETFILTER_IP6_OFF only
    ip_version: int = 4
    pod_cidrs: list[str] = field(default_factory=list)  # IPv6 codes: the node's IPv6 podCIDRs
    # IPV6_FORWARD_OFF: interfaces whose IPv6 default route came from router advertisements
    # (`proto ra`): with forwarding on, the kernel ignores RAs unless accept_ra=2
    ra_interfaces: list[str] = field(default_factory=list)
    # IP_FORWARD_OFF with ip_forward on: the devices whose own forwarding is 0, and their
    # sysctl keys (net.ipv4.conf.DEV.forwarding, "/" for a "." in DEV), in the same order
    interfaces: list[str] = field(default_factory=list)
    sysctls: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class IpvsModulesData(FindingData, codes=("IPVS_MODULES_MISSING",)):
    mode: str = "ipvs"
    missing: list[str] = field(default_factory=list)
    modules_known: bool = False
    lib_modules: bool = False  # /lib/modules/$(uname -r) exists (modprobe can work)

def _v6_pod_cidrs(snapshot: ClusterSnapshot, node: str) -> list[str]:
    """The node's IPv6 podCIDRs (the node carries IPv6 pod traffic exactly when it has one)."""
    info = (getattr(snapshot, "nodes", None) or {}).get(node)
    cidrs = list(getattr(info, "pod_cidrs", ()) or ()) if info is not None else []
    if not cidrs and info is not None and getattr(info, "pod_cidr", None):
        cidrs = [info.pod_cidr]
    return [c for c in cidrs if ":" in str(c)]


def ipv6_checks(snapshot: ClusterSnapshot, node: str, f: NodeFacts) -> list[Finding]:
    """IPv6 forwarding and bridge-nf-call-ip6tables, on a node with an IPv6 podCIDR only (an
    IPv4-only node may keep IPv6 forwarding off: nothing of the cluster's is routed over it)."""
    v6 = _v6_pod_cidrs(snapshot, node)
    if not v6:
        return []
    out: list[Finding] = []
    if f.sysctls.get(IPV6_FORWARD) == "0":
        ra = sorted({str(r.get("dev")) for r in f.routes6
                     if isinstance(r, dict) and r.get("dst") == "default" and r.get("protocol") == "ra"
                     and r.get("dev")})
        ev_ra = tuple(f"ip -6 route: default via router advertisement on {d} (kept with accept_ra=2)"
                      for d in ra)
        out.append(Finding(
            code="IPV6_FORWARD_OFF", severity="critical", node=node,
            title="IPv6 forwarding is off: the node routes no IPv6 pod or NodePort traffic",
            evidence=("/proc/sys/net/ipv6/conf/all/forwarding: 0",
                      f"IPv6 podCIDR of the node: {', '.join(v6)}", *ev_ra),
            explanation=("The node has an IPv6 podCIDR (dual-stack or IPv6 cluster). With "
                         "net.ipv6.conf.all.forwarding=0 the kernel drops every IPv6 packet it "
                         "would forward: IPv6 traffic between pods on different nodes and IPv6 "
                         "NodePorts DNATed to pods die here, while IPv4 keeps working."),
            reference=REF_FORWARD, step="host_network",
            data=SysctlData(sysctl=IPV6_FORWARD, value="0", ip_version=6, pod_cidrs=v6,
                            ra_interfaces=ra),
        ))
    if f.sysctls.get(BRIDGE_NF6) == "0":
        # missing (None) means br_netfilter is not loaded: BR_NETFILTER_OFF covers it (loading
        # the module turns both bridge-nf-call-iptables and -ip6tables on)
        out.append(Finding(
            code="BR_NETFILTER_IP6_OFF", severity="error", node=node,
            title="bridge-nf-call-ip6tables is off: bridged IPv6 pod traffic skips ip6tables",
            evidence=("/proc/sys/net/bridge/bridge-nf-call-ip6tables: 0",
                      f"IPv6 podCIDR of the node: {', '.join(v6)}"),
            explanation=("IPv6 pod-to-pod traffic on the pod bridge and IPv6 Service replies "
                         "between pods on the same node must traverse ip6tables (kube-proxy's "
                         "IPv6 DNAT/SNAT). With bridge-nf-call-ip6tables=0 they bypass it."),
            reference=REF_BR_NETFILTER, step="host_network",
            data=SysctlData(sysctl=BRIDGE_NF6, value="0", module_loaded=True, ip_version=6,
                            pod_cidrs=v6),
        ))
    return out


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    for node, f in sorted(facts_by_node.items()):
        out.extend(ipv6_checks(snapshot, node, f))
    for node, f in sorted(facts_by_node.items()):
        if "net.ipv4.ip_forward" in f.sysctls and f.sysctls["net.ipv4.ip_forward"] == "0":
            out.append(Finding(
                code="IP_FORWARD_OFF", severity="critical", node=node,
                title="IPv4 forwarding is off: the node routes no pod or NodePort traffic",
                evidence=("/proc/sys/net/ipv4/ip_forward: 0",),
                explanation=("With net.ipv4.ip_forward=0 the kernel drops every packet it would "
                             "forward: traffic between cni0, flannel.1 and eth0 (cross-node pods, "
                             "NodePorts DNATed to pods) dies on this node."),
                reference=REF_FORWARD, step="host_network",
                data=SysctlData(sysctl="net.ipv4.ip_forward", value="0"),
            ))
        elif f.sysctls.get("net.ipv4.ip_forward") == "1":
            off = [(dev, key) for dev, key in DEVICE_FORWARD.items() if f.sysctls.get(key) == "0"]
            if off:
                devs = [d for d, _ in off]
                out.append(Finding(
                    code="IP_FORWARD_OFF", severity="critical", node=node,
                    title=f"IPv4 forwarding is off on {', '.join(devs)}: pod traffic coming in "
                          "there is not routed",
                    evidence=tuple(f"/proc/sys/net/ipv4/conf/{d}/forwarding: 0" for d in devs)
                    + ("/proc/sys/net/ipv4/ip_forward: 1",),
                    explanation=("net.ipv4.ip_forward is 1, but the kernel forwards a packet only "
                                 "when forwarding is on for the device it came in on: with it "
                                 "off on cni0 the node's pods reach nothing beyond the node "
                                 "(replies to NodePorts and other nodes included); off on "
                                 "flannel.1, nothing from other nodes reaches the node's pods."),
                    reference=REF_FORWARD, step="host_network",
                    data=SysctlData(sysctl=off[0][1], value="0", interfaces=devs,
                                    sysctls=[k for _, k in off]),
                ))
        key = "net.bridge.bridge-nf-call-iptables"
        if key in f.sysctls:
            val = f.sysctls[key]
            if val is None or val == "0":
                # /proc/sys/net/bridge exists exactly when br_netfilter is loaded (or built in)
                loaded = val is not None
                ev = (f"/proc/sys/net/bridge/bridge-nf-call-iptables: {val}",) if val is not None \
                    else ("/proc/sys/net/bridge/bridge-nf-call-iptables: missing "
                          "(br_netfilter not loaded)",)
                out.append(Finding(
                    code="BR_NETFILTER_OFF", severity="error", node=node,
                    title=("bridge-nf-call-iptables is off: bridged pod traffic skips iptables"
                           if val is not None else "br_netfilter is not loaded"),
                    evidence=ev,
                    explanation=("Pod-to-pod traffic on cni0 and Service replies between pods on "
                                 "the same node must traverse iptables (kube-proxy's DNAT/SNAT). "
                                 "flannel requires br_netfilter with bridge-nf-call-iptables=1; "
                                 "kubeadm stopped checking it in v1.30."),
                    reference=REF_BR_NETFILTER, step="host_network",
                    data=SysctlData(sysctl=key, value=val, module_loaded=loaded),
                ))
    mode = (snapshot.kube_proxy_mode or "")
    for node, f in sorted(facts_by_node.items()):
        if (f.kube_proxy_mode or mode) != "ipvs" or f.modules is None:
            continue
        missing = [m for m in IPVS_MODULES if f.modules.has(m) is False]
        if missing and (ipvs_virtual_servers(f) or 0) > 0:
            # kube-proxy programs IPVS here: what it uses is loaded (kube-proxy >= 1.27 checks no
            # modules, kubernetes#114669, and the kernel loads the scheduler in use on demand;
            # an older one would not have started in ipvs mode without them)
            continue
        if missing:
            out.append(Finding(
                code="IPVS_MODULES_MISSING", severity="warning", node=node,
                title="kube-proxy runs in ipvs mode but IPVS kernel modules are not loaded",
                evidence=("kube-proxy mode: ipvs", f"not loaded: {' '.join(missing)}"),
                explanation="kube-proxy's ipvs mode needs the ip_vs modules; without them it fails.",
                reference=REF_IPVS, step="host_network",
                data=IpvsModulesData(mode="ipvs", missing=missing,
                                     modules_known=f.modules.source is not None,
                                     lib_modules=f.modules.lib_modules),
            ))
    return out
