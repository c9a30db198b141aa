"""Host networking: ip_forward, bridge-nf-call-iptables / br_netfilter, IPVS modules."""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_FORWARD = ("https://kubernetes.io/docs/setup/production-environment/container-runtimes/"
               "#prerequisite-ipv4-forwarding-optional")
REF_BR_NETFILTER = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"
REF_IPVS = "https://kubernetes.io/docs/reference/networking/virtual-ips/#proxy-mode-ipvs"
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh")



@dataclass(frozen=True, kw_only=True)
class SysctlData(FindingData, codes=("IP_FORWARD_OFF", "BR_NETFILTER_OFF")):
    sysctl: str = ""
    value: str | None = None  # None: the sysctl does not exist (br_netfilter not loaded)
    module_loaded: bool | None = None  # BR_NETFILTER_OFF only


@dataclass(frozen=True, kw_only=True)
class IpvsModulesData(FindingData, codes=("IPVS_MODULES_MISSING",)):
    mode: str = "ipvs"
    missing: list[str] = field(default_factory=list)
    modules_known: bool = False
    lib_modules: bool = False  # /lib/modules/$(uname -r) exists (modprobe can work)

def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
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
