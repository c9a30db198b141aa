"""What flanneld, kube-proxy and kubelet's prober do on a lab node, for real, inside its namespaces.

The controller (daemon.py) calls these when a pod (re)starts; they touch only the node's own
network namespace / mount namespace and report back an AgentResult (ok, log text, error). They do
not talk to the API: the controller turns results into pod status, logs and events.

Error texts are the real components' texts, so what the wizard reads in `kubectl logs` is what an
admin would read on a real cluster.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clusterfix_tui.lab import nodes as N

FLANNEL_NETWORK = "10.244.0.0/16"
FLANNEL_IPV6_NETWORK = "fd00:10:244::/56"  # ULA: only inside the lab's namespaces
FLANNEL_MTU = 1450
VXLAN_ID = 1
VXLAN_PORT = 8472
BACKEND_DATA = "flannel.alpha.coreos.com/backend-data"
BACKEND_TYPE = "flannel.alpha.coreos.com/backend-type"
PUBLIC_IP = "flannel.alpha.coreos.com/public-ip"
BACKEND_V6_DATA = "flannel.alpha.coreos.com/backend-v6-data"
PUBLIC_IPV6 = "flannel.alpha.coreos.com/public-ipv6"
KUBE_SUBNET_MGR = "flannel.alpha.coreos.com/kube-subnet-manager"
MAC_RE = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass
class NodeCtx:
    """What an agent needs to know about its node."""

    name: str
    index: int  # 1-based
    netns: str
    ip: str
    pod_cidr: str
    init_pid: int
    node_dir: Path
    pod_block: str = ""  # where its pods get addresses (calico: its IPAM block); "" = pod_cidr
    cluster_cidr: str = FLANNEL_NETWORK  # kube-proxy's clusterCIDR
    shape: str = "kubeadm"
    ip6: str = ""  # dual-stack labs: the node's IPv6 address and podCIDR
    pod_cidr6: str = ""
    cluster_cidr6: str = ""
    pod_block6: str = ""  # calico: its IPv6 IPAM block; "" = pod_cidr6

    @property
    def subnet6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.pod_cidr6)

    @property
    def gateway6(self) -> str:
        return str(self.subnet6.network_address + 1)

    @property
    def block(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_block or self.pod_cidr)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.pod_cidr)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def vtep_address(self) -> str:
        return str(self.subnet.network_address)


@dataclass
class Peer:
    """A remote node as flannel sees it through the API (its annotations and podCIDR)."""

    name: str
    public_ip: str
    pod_cidr: str
    vtep_mac: str
    public_ip6: str = ""
    pod_cidr6: str = ""
    vtep_mac6: str = ""


@dataclass
class AgentResult:
    ok: bool
    log: str
    error: str = ""
    data: dict = field(default_factory=dict)


def klog(level: str, where: str, msg: str) -> str:
    """One line in klog's format (what flannel and kube-proxy print)."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{level}{now:%m%d %H:%M:%S.%f}       1 {where}] {msg}"


def peers_from_nodes(node_objs: list[dict], me: str) -> list[Peer]:
    peers = []
    for obj in node_objs:
        name = obj.get("metadata", {}).get("name", "")
        if name == me:
            continue
        ann = obj.get("metadata", {}).get("annotations") or {}
        try:
            mac = json.loads(ann.get(BACKEND_DATA, "{}")).get("VtepMAC", "")
        except ValueError:
            mac = ""
        spec = obj.get("spec", {})
        cidr = spec.get("podCIDR", "")
        if ":" in str(cidr):  # dual stack, IPv6 first: the IPv4 podCIDR is the other entry
            cidr = next((c for c in spec.get("podCIDRs") or [] if ":" not in str(c)), "")
        ip = ann.get(PUBLIC_IP, "")
        # these values go into `ip -batch` / `bridge -batch` lines: only well-formed ones pass
        if not (isinstance(mac, str) and MAC_RE.fullmatch(mac)):
            continue
        try:
            cidr = str(ipaddress.IPv4Network(cidr))
            ip = str(ipaddress.IPv4Address(ip))
        except (ValueError, TypeError):
            continue
        peer = Peer(name=name, public_ip=ip, pod_cidr=cidr, vtep_mac=mac.lower())
        try:  # dual stack: the IPv6 podCIDR and flannel's v6 annotations, when all are well-formed
            mac6 = json.loads(ann.get(BACKEND_V6_DATA, "{}")).get("VtepMAC", "")
            cidrs6 = [c for c in obj.get("spec", {}).get("podCIDRs") or [] if ":" in str(c)]
            if cidrs6 and isinstance(mac6, str) and MAC_RE.fullmatch(mac6):
                peer.pod_cidr6 = str(ipaddress.IPv6Network(cidrs6[0]))
                peer.public_ip6 = str(ipaddress.IPv6Address(ann.get(PUBLIC_IPV6, "")))
                peer.vtep_mac6 = mac6.lower()
        except (ValueError, TypeError):
            peer.pod_cidr6 = peer.public_ip6 = peer.vtep_mac6 = ""
        peers.append(peer)
    return peers


# -- flannel -------------------------------------------------------------------------------------

def subnet_env(node: NodeCtx) -> str:
    v6 = ""
    if node.pod_cidr6:
        v6 = (f"FLANNEL_IPV6_NETWORK={FLANNEL_IPV6_NETWORK}\n"
              f"FLANNEL_IPV6_SUBNET={node.gateway6}/{node.subnet6.prefixlen}\n")
    return (f"FLANNEL_NETWORK={FLANNEL_NETWORK}\nFLANNEL_SUBNET={node.gateway}/{node.subnet.prefixlen}\n"
            f"{v6}FLANNEL_MTU={FLANNEL_MTU}\nFLANNEL_IPMASQ=true\n")


def _addrs(netns: str, dev: str) -> list[str] | None:
    """IPv4 addresses (a.b.c.d/len) of dev in netns, or None when dev does not exist."""
    r = N.run(["ip", "-j", "-n", netns, "-4", "addr", "show", "dev", dev], check=False)
    if r.returncode != 0:
        return None
    out = json.loads(r.stdout or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", [])]


def _link_mac(netns: str, dev: str) -> str | None:
    r = N.run(["ip", "-j", "-n", netns, "link", "show", "dev", dev], check=False)
    if r.returncode != 0:
        return None
    out = json.loads(r.stdout or "[]")
    return out[0].get("address") if out else None


def flannel_peer_lines(peers: list[Peer]) -> tuple[list[str], list[str]]:
    """(ip -batch lines, bridge -batch lines) that program flannel's vxlan state for peers,
    exactly as flannel's backend/vxlan does: an onlink route via the peer subnet's network
    address, a permanent neighbour entry for that address with the peer's VTEP MAC, and an fdb
    entry sending that MAC to the peer's public IP."""
    ip_lines, fdb_lines = [], []
    for p in peers:
        net = ipaddress.ip_network(p.pod_cidr)
        vtep = str(net.network_address)
        ip_lines.append(f"neigh replace {vtep} lladdr {p.vtep_mac} dev flannel.1 nud permanent")
        ip_lines.append(f"route replace {net} via {vtep} dev flannel.1 onlink")
        fdb_lines.append(f"fdb replace {p.vtep_mac} dev flannel.1 dst {p.public_ip} self permanent")
        if p.pod_cidr6 and p.vtep_mac6 and p.public_ip6:  # flannel-v6.1, the same way
            net6 = ipaddress.ip_network(p.pod_cidr6)
            vtep6 = str(net6.network_address)
            ip_lines.append(f"neigh replace {vtep6} lladdr {p.vtep_mac6} dev flannel-v6.1 nud permanent")
            ip_lines.append(f"route replace {net6} via {vtep6} dev flannel-v6.1 onlink")
            fdb_lines.append(f"fdb replace {p.vtep_mac6} dev flannel-v6.1 dst {p.public_ip6} self permanent")
    return ip_lines, fdb_lines


def program_peers(node: NodeCtx, peers: list[Peer]) -> None:
    ip_lines, fdb_lines = flannel_peer_lines(peers)
    if fdb_lines:
        N.run(["bridge", "-n", node.netns, "-batch", "-"], input="\n".join(fdb_lines) + "\n")
    if ip_lines:
        N.ip_batch(node.netns, ip_lines)


def flannel_start(node: NodeCtx, peers: list[Peer] | None) -> AgentResult:
    """flanneld --ip-masq --kube-subnet-mgr starting on node. peers=None: set up the local side
    only (the initial bring-up programs the mesh afterwards in one go)."""
    log = [
        klog("I", "main.go:212", "CLI flags config: {etcdEndpoints:http://127.0.0.1:4001,http://127.0.0.1:2379 "
             "etcdPrefix:/coreos.com/network kubeSubnetMgr:true ipMasq:true iface:[] ifaceRegex:[] "
             "subnetFile:/run/flannel/subnet.env}"),
        klog("I", "kube.go:139", "Waiting 10m0s for node controller to sync"),
        klog("I", "kube.go:469", "Starting kube subnet manager"),
        klog("I", "kube.go:146", "Node controller sync successful"),
        klog("I", "main.go:231", f"Created subnet manager: Kubernetes Subnet Manager - {node.name}"),
        klog("I", "main.go:234", "Installing signal handlers"),
        klog("I", "main.go:452", "Found network config - Backend type: vxlan"),
        klog("I", "match.go:211", "Determining IP address of default interface"),
        klog("I", "match.go:264", f"Using interface with name eth0 and address {node.ip}"),
        klog("I", "match.go:286", f"Defaulting external address to interface address ({node.ip})"),
        klog("I", "vxlan.go:141", f"VXLAN config: VNI={VXLAN_ID} Port={VXLAN_PORT} GBP=false Learning=false "
             "DirectRouting=false"),
    ]

    def fail(where: str, err: str) -> AgentResult:
        log.append(klog("E", where, err))
        return AgentResult(False, "\n".join(log) + "\n", err)

    try:
        (node.node_dir / "run-flannel").mkdir(parents=True, exist_ok=True)
        tmp = node.node_dir / "run-flannel" / ".subnet.env.tmp"
        tmp.write_text(subnet_env(node))
        tmp.replace(node.node_dir / "run-flannel" / "subnet.env")

        addrs = _addrs(node.netns, "flannel.1")
        if addrs is None:
            N.ip_batch(node.netns, [
                f"link add flannel.1 type vxlan id {VXLAN_ID} local {node.ip} dev eth0 "
                f"dstport {VXLAN_PORT} nolearning",
                f"link set flannel.1 mtu {FLANNEL_MTU}",
            ])
            addrs = []
        want = f"{node.vtep_address}/32"
        # flannel's ip.EnsureV4AddressOnLink: more than one address is the user's doing -> error;
        # one wrong address is replaced (a changed lease); none -> add.
        if len(addrs) > 1:
            return fail("main.go:359", "Error registering network: failed to configure interface flannel.1: "
                        "failed to ensure address of interface flannel.1: link has incompatible "
                        "addresses. Remove additional addresses and try again")
        lines = []
        if addrs and addrs[0] != want:
            lines.append(f"addr del {addrs[0]} dev flannel.1")
        if addrs != [want]:
            lines.append(f"addr add {want} dev flannel.1")
        lines.append("link set flannel.1 up")
        N.ip_batch(node.netns, lines)
        mac = _link_mac(node.netns, "flannel.1") or ""
        mac6 = _flannel_v6_local(node) if node.pod_cidr6 else ""
        log.append(klog("I", "kube.go:636", f"List of node({node.name}) annotations: "
                        f"map[string]string{{\"{BACKEND_DATA}\":\"{{\\\"VNI\\\":1,\\\"VtepMAC\\\":\\\"{mac}\\\"}}\", "
                        f"\"{BACKEND_TYPE}\":\"vxlan\", \"{KUBE_SUBNET_MGR}\":\"true\", \"{PUBLIC_IP}\":\"{node.ip}\"}}"))
        log.append(klog("I", "main.go:357", f"Current network or subnet ({FLANNEL_NETWORK}, {node.pod_cidr}) is "
                        "not equal to previous one (0.0.0.0/0, 0.0.0.0/0), trying to recycle old iptables rules"))
        log.append(klog("I", "main.go:477", "Wrote subnet file to /run/flannel/subnet.env"))
        log.append(klog("I", "main.go:481", "Running backend."))
        log.append(klog("I", "vxlan_network.go:65", "watching for new subnet leases"))

        if peers is not None:
            program_peers(node, peers)
            for p in peers:
                log.append(klog("I", "vxlan_network.go:100",
                                f"Received Subnet Event with VxLan: BackendType: vxlan, PublicIP: {p.public_ip}, "
                                f"PublicIPv6: (nil), BackendData: {{\"VNI\":1,\"VtepMAC\":\"{p.vtep_mac}\"}}, "
                                f"BackendV6Data: (nil)"))

        # The CNI bridge: created with the podCIDR gateway, or refused when it already carries
        # another address (the bridge plugin's own check and text).
        cni = _addrs(node.netns, "cni0")
        if cni is None and node.pod_cidr6:
            N.ip_batch(node.netns, ["link add cni0 type bridge", f"link set cni0 mtu {FLANNEL_MTU}",
                                    f"addr add {node.gateway}/{node.subnet.prefixlen} dev cni0",
                                    f"addr add {node.gateway6}/{node.subnet6.prefixlen} dev cni0 nodad",
                                    "link set cni0 up"])
            cni = _addrs(node.netns, "cni0")
        if cni is None:
            N.ip_batch(node.netns, [
                "link add cni0 type bridge",
                f"link set cni0 mtu {FLANNEL_MTU}",
                f"addr add {node.gateway}/{node.subnet.prefixlen} dev cni0",
                "link set cni0 up",
            ])
        else:
            gw = f"{node.gateway}/{node.subnet.prefixlen}"
            others = [a for a in cni if a != gw]
            if others:
                return fail("main.go:359", f'failed to set bridge addr: "cni0" already has an IP address '
                            f"different from {gw}")
            if not cni:
                N.ip_batch(node.netns, [f"addr add {gw} dev cni0", "link set cni0 up"])
        if node.pod_cidr6:
            _ensure_v6_addr(node, "cni0", f"{node.gateway6}/{node.subnet6.prefixlen}")
        log.append(klog("I", "main.go:502", "Waiting for all goroutines to exit"))
        return AgentResult(True, "\n".join(log) + "\n", data={"vtep_mac": mac, "vtep_mac6": mac6})
    except (N.NodeError, OSError, ValueError) as e:
        return fail("main.go:340", f"Error registering network: {e}")


def _addrs6(netns: str, dev: str) -> list[str] | None:
    r = N.run(["ip", "-j", "-n", netns, "-6", "addr", "show", "dev", dev, "scope", "global"], check=False)
    if r.returncode != 0:
        return None
    out = json.loads(r.stdout or "[]")
    return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link.get("addr_info", []) if "local" in a]


def _ensure_v6_addr(node: NodeCtx, dev: str, want: str) -> None:
    have = _addrs6(node.netns, dev) or []
    if want not in have:
        N.ip_batch(node.netns, [f"addr add {want} dev {dev} nodad"])


def _flannel_v6_local(node: NodeCtx) -> str:
    """flannel's IPv6 side of the vxlan backend: flannel-v6.1 (same VNI and port, local = the
    node's IPv6 address) carrying the subnet's network address as a /128."""
    if _addrs6(node.netns, "flannel-v6.1") is None:
        N.ip_batch(node.netns, [
            f"link add flannel-v6.1 type vxlan id {VXLAN_ID} local {node.ip6} dev eth0 dstport {VXLAN_PORT} nolearning",
            f"link set flannel-v6.1 mtu {FLANNEL_MTU - 20}",
        ])
    want = f"{node.subnet6.network_address}/128"
    have = _addrs6(node.netns, "flannel-v6.1") or []
    lines = [f"addr del {a} dev flannel-v6.1" for a in have if a != want]
    if want not in have:
        lines.append(f"addr add {want} dev flannel-v6.1 nodad")
    lines.append("link set flannel-v6.1 up")
    N.ip_batch(node.netns, lines)
    return _link_mac(node.netns, "flannel-v6.1") or ""


# -- the CNI plugins (flannel -> bridge) on pod sandbox creation ---------------------------------

def cni_add_check(node: NodeCtx) -> str:
    """What the flannel CNI plugin and its delegate, the bridge plugin, do before a pod gets its
    veth: read /run/flannel/subnet.env, make sure cni0 exists and carries the gateway. Returns ""
    when a pod can be wired, else the plugin's error text (kubelet's FailedCreatePodSandBox)."""
    env = node.node_dir / "run-flannel" / "subnet.env"
    if not env.exists():
        return ('plugin type="flannel" failed (add): loadFlannelSubnetEnv failed: open '
                "/run/flannel/subnet.env: no such file or directory")
    gw = f"{node.gateway}/{node.subnet.prefixlen}"
    cni = _addrs(node.netns, "cni0")
    if cni is None:  # the bridge plugin creates the bridge with the gateway address
        N.ip_batch(node.netns, ["link add cni0 type bridge", f"link set cni0 mtu {FLANNEL_MTU}",
                                f"addr add {gw} dev cni0", "link set cni0 up"])
        if node.pod_cidr6:
            _ensure_v6_addr(node, "cni0", f"{node.gateway6}/{node.subnet6.prefixlen}")
        return ""
    if any(a != gw for a in cni):
        return ('plugin type="flannel" failed (add): failed to delegate add: failed to set bridge addr: '
                f'"cni0" already has an IP address different from {gw}')
    if not cni:
        N.ip_batch(node.netns, [f"addr add {gw} dev cni0", "link set cni0 up"])
    else:
        N.ip_batch(node.netns, ["link set cni0 up"])
    if node.pod_cidr6:
        _ensure_v6_addr(node, "cni0", f"{node.gateway6}/{node.subnet6.prefixlen}")
    return ""


# -- kube-proxy ----------------------------------------------------------------------------------

DETECT_MODE = r"""
# kubernetes-sigs/iptables-wrappers: iptables-wrapper-installer.sh's detection, verbatim in logic.
nft_kubelet_rules=$( (iptables-nft-save -t mangle || true; ip6tables-nft-save -t mangle || true) 2>/dev/null | grep -E '^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)' | wc -l)
if [ "${nft_kubelet_rules}" -ne 0 ]; then
    mode=nft
else
    legacy_kubelet_rules=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -E '^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)' | wc -l)
    if [ "${legacy_kubelet_rules}" -ne 0 ]; then
        mode=legacy
    else
        num_legacy_lines=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep '^-' | wc -l)
        num_nft_lines=$( (timeout 5 sh -c "iptables-nft-save; ip6tables-nft-save" || true) 2>/dev/null | grep '^-' | wc -l)
        if [ "${num_legacy_lines}" -gt "${num_nft_lines}" ]; then
            mode=legacy
        else
            mode=nft
        fi
    fi
fi
echo "$mode"
"""


def detect_iptables_mode(node: NodeCtx) -> str:
    out = N.node_exec(node.init_pid, DETECT_MODE, check=False, timeout=20).stdout.strip()
    return out if out in ("nft", "legacy") else "nft"


@dataclass
class ServicePort:
    namespace: str
    name: str
    port_name: str
    protocol: str  # "TCP"
    cluster_ip: str
    port: int
    node_port: int
    target_port: int
    endpoints: list[str]  # ready pod IPs

    @property
    def port_name_str(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def svc_chain(sp: ServicePort) -> str:
    return "KUBE-SVC-" + _hash16(sp.port_name_str + sp.protocol.lower())


def ext_chain(sp: ServicePort) -> str:
    return "KUBE-EXT-" + _hash16(sp.port_name_str + sp.protocol.lower())


def sep_chain(sp: ServicePort, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash16(sp.port_name_str + sp.protocol.lower() + endpoint)


def _q(text: str) -> str:
    """Quote a comment for iptables-restore the way kube-proxy does."""
    return f'"{text}"' if " " in text else text


# (table, builtin chain, kube chain, comment, extra match args)
JUMPS = [
    ("filter", "INPUT", "KUBE-NODEPORTS", "kubernetes health check service ports", []),
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules", []),
    ("filter", "FORWARD", "KUBE-SERVICES", "kubernetes service portals", ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals",
     ["-m", "conntrack", "--ctstate", "NEW"]),
    ("filter", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", ["-m", "conntrack", "--ctstate", "NEW"]),
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals", []),
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", []),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules", []),
]

FILTER_CHAINS = ["KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-SERVICES",
                 "KUBE-PROXY-FIREWALL"]
NAT_CHAINS = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]


def restore_text(services: list[ServicePort], stale_nat_chains: Sequence[str] = (),
                 cluster_cidr: str = FLANNEL_NETWORK) -> str:
    """The iptables-restore input kube-proxy's iptables proxier writes for these services."""
    filt = ["*filter"] + [f":{c} - [0:0]" for c in FILTER_CHAINS]
    filt_rules: list[str] = []
    nat = ["*nat"] + [f":{c} - [0:0]" for c in NAT_CHAINS]
    nat_rules: list[str] = []
    nat_tail: list[str] = []
    for sp in services:
        v6 = ":" in sp.cluster_ip  # the IPv6 proxier of a dual-stack kube-proxy (ip6tables)
        h = "/128" if v6 else "/32"
        unreach = "icmp6-port-unreachable" if v6 else "icmp-port-unreachable"
        svc, ext = svc_chain(sp), ext_chain(sp)
        label = sp.port_name_str
        proto = sp.protocol.lower()
        if not sp.endpoints:
            filt_rules += [
                f"-A KUBE-SERVICES -m comment --comment {_q(label + ' has no endpoints')} -d {sp.cluster_ip}{h} "
                f"-p {proto} -m {proto} --dport {sp.port} -j REJECT --reject-with {unreach}",
                f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {_q(label + ' has no endpoints')} -m addrtype "
                f"--dst-type LOCAL -p {proto} -m {proto} --dport {sp.node_port} -j REJECT "
                f"--reject-with {unreach}",
            ]
            continue
        nat.append(f":{svc} - [0:0]")
        nat.append(f":{ext} - [0:0]")
        nat_rules.append(f"-A KUBE-SERVICES -m comment --comment {_q(label + ' cluster IP')} -d {sp.cluster_ip}{h} "
                         f"-p {proto} -m {proto} --dport {sp.port} -j {svc}")
        nat_tail.append(f"-A KUBE-NODEPORTS -m comment --comment {_q(label)} -p {proto} -m {proto} "
                        f"--dport {sp.node_port} -j {ext}")
        nat_rules.append(f"-A {ext} -m comment --comment "
                         f"{_q('masquerade traffic for ' + label + ' external destinations')} -j KUBE-MARK-MASQ")
        nat_rules.append(f"-A {ext} -j {svc}")
        nat_rules.append(f"-A {svc} -m comment --comment {_q(label + ' cluster IP')} ! -s {cluster_cidr} "
                         f"-d {sp.cluster_ip}{h} -p {proto} -m {proto} --dport {sp.port} -j KUBE-MARK-MASQ")
        n = len(sp.endpoints)
        for i, ep_ip in enumerate(sp.endpoints):
            ep = f"[{ep_ip}]:{sp.target_port}" if v6 else f"{ep_ip}:{sp.target_port}"
            sep = sep_chain(sp, ep)
            nat.append(f":{sep} - [0:0]")
            prob = f" -m statistic --mode random --probability {1.0 / (n - i):.10f}" if i < n - 1 else ""
            nat_rules.append(f"-A {svc} -m comment --comment {_q(label + ' -> ' + ep)}{prob} -j {sep}")
            nat_rules.append(f"-A {sep} -m comment --comment {_q(label)} -s {ep_ip}{h} -j KUBE-MARK-MASQ")
            nat_rules.append(f"-A {sep} -m comment --comment {_q(label)} -p {proto} -m {proto} "
                             f"-j DNAT --to-destination {ep}")
    live = {line[1:].split(" ")[0] for line in nat if line.startswith(":")}
    stale_x: list[str] = []
    for c in stale_nat_chains:
        if c not in live:
            nat.append(f":{c} - [0:0]")
            stale_x.append(f"-X {c}")
    filt_rules += [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    nat_rules += [
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
    ]
    nat_rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                     'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return "\n".join(filt + filt_rules + ["COMMIT"] + nat + nat_rules + nat_tail + stale_x + ["COMMIT"]) + "\n"


def _ensure_script(mode: str, binary: str = "iptables") -> str:
    ipt = f"{binary}-{mode}"
    lines = [
        "set -u",
        f"ipt() {{ {ipt} -w 5 \"$@\"; }}",
    ]
    for table, chain in {(t, c) for t, _b, c, _m, _x in JUMPS}:
        lines.append(f"ipt -t {table} -N {chain} 2>/dev/null || true")
    for table, builtin, chain, comment, extra in JUMPS:
        rule = shlex.join([*extra, "-m", "comment", "--comment", comment, "-j", chain])
        lines.append(
            f"if ! ipt -t {table} -C {builtin} {rule} 2>/dev/null; then "
            f"err=$(ipt -t {table} -I {builtin} {rule} 2>&1) || {{ "
            f"printf 'JUMPFAIL\\t{table}\\t{builtin}\\t{chain}\\t%s\\n' \"$err\"; exit 3; }}; fi")
    return "\n".join(lines) + "\n"


def _incompatible_chain_error(node: NodeCtx, mode: str, services: list[ServicePort]) -> str:
    """iptables' own message for the first KUBE-* nat chain it cannot read, e.g. "iptables v1.8.9
    (nf_tables): chain `KUBE-SEP-...' in table `nat' is incompatible, use 'nft' tool."."""
    chains = list(NAT_CHAINS)
    for sp in services:
        chains += [svc_chain(sp), ext_chain(sp)] + [sep_chain(sp, f"{ip}:{sp.target_port}") for ip in sp.endpoints]
    listed = N.node_exec(node.init_pid, "nft list table ip nat 2>/dev/null | sed -n 's/^\\tchain \\(KUBE-[^ ]*\\) {/\\1/p'",
                         check=False, timeout=20).stdout.split()
    for c in listed:
        if c not in chains:
            chains.append(c)
    script = "; ".join(f"e=$(iptables-{mode} -w 5 -t nat -S {shlex.quote(c)} 2>&1 >/dev/null) || "
                       f"{{ printf '%s\\n' \"$e\"; exit 1; }}" for c in chains)
    out = N.node_exec(node.init_pid, script, check=False, timeout=30)
    if out.returncode == 0:
        return ""
    return "\n".join(line for line in out.stdout.splitlines() if not line.startswith("# Warning")).strip()


def _sync_v6(node: NodeCtx, mode: str, services6: list[ServicePort]) -> str:
    """The IPv6 proxier of a dual-stack kube-proxy: the same chains through ip6tables. Returns
    "" or the error text."""
    r = N.node_exec(node.init_pid, _ensure_script(mode, "ip6tables"), check=False, timeout=30)
    if r.returncode != 0:
        return (r.stdout + r.stderr).strip()
    save = N.node_exec(node.init_pid, f"ip6tables-{mode}-save -t nat", check=False, timeout=20)
    if save.returncode != 0 or "incompatible" in save.stdout + save.stderr:
        return (save.stderr or save.stdout).strip()
    stale = [line[1:].split(" ")[0] for line in save.stdout.splitlines()
             if line.startswith((":KUBE-SVC-", ":KUBE-SEP-", ":KUBE-EXT-"))]
    text = restore_text(services6, stale, node.cluster_cidr6)
    rr = N.node_exec(node.init_pid, f"ip6tables-{mode}-restore --noflush -w 5", check=False, timeout=30, input=text)
    return "" if rr.returncode == 0 else (rr.stderr or rr.stdout).strip()


def kube_proxy_sync(node: NodeCtx, services: list[ServicePort], *, first: bool,
                    services6: list[ServicePort] | None = None) -> AgentResult:
    """One kube-proxy (iptables mode) start/sync on node: detect the backend like
    iptables-wrappers, ensure the jump rules, then iptables-restore --noflush the KUBE-* chains."""
    log: list[str] = []
    if first:
        log += [
            klog("I", "server_linux.go:66", '"Using iptables proxy"'),
            klog("I", "server.go:698", f'"Successfully retrieved node IP(s)" IPs=["{node.ip}"]'),
            klog("I", "server.go:234", '"kube-proxy running in dual-stack mode" primary ipFamily="IPv4"'
                 if node.ip6 else '"kube-proxy running in single-stack mode" ipFamily="IPv4"'),
            klog("I", "server_linux.go:170", '"Using iptables Proxier"'),
        ]
    try:
        mode = detect_iptables_mode(node)
        if first:
            log.append(klog("I", "proxier.go:246", f'"Setting route_localnet=1 to allow node-ports on localhost; '
                            f'to change this either disable iptables.localhostNodePorts (--iptables-localhost-nodeports) '
                            f'or set nodePortAddresses (--nodeport-addresses) to filter loopback addresses" '
                            f'ipFamily="IPv4" iptablesMode="{mode}"'))
            log.append(klog("I", "server.go:483", '"Version info" version="v1.32.0"'))
            log.append(klog("I", "config.go:199", '"Starting service config controller"'))
            log.append(klog("I", "config.go:105", '"Starting endpoint slice config controller"'))
        r = N.node_exec(node.init_pid, _ensure_script(mode), check=False, timeout=30)
        if r.returncode != 0:
            parts = (r.stdout.strip().split("\t") + [""] * 5)[:5]
            if parts[0] == "JUMPFAIL":
                _, table, builtin, chain, err = parts
                err = (err + "\n" + r.stderr).strip()
            else:
                table, builtin, chain, err = "nat", "PREROUTING", "KUBE-SERVICES", (r.stdout + r.stderr).strip()
            msg = (f'"Failed to ensure chain jumps" err=<\n\terror appending rule: exit status 1: {err}\n > '
                   f'table="{table}" srcChain="{builtin}" dstChain="{chain}"')
            log.append(klog("E", "proxier.go:1137", msg))
            log.append(klog("E", "server.go:556", f'"Error running ProxyServer" err="{err}"'))
            return AgentResult(False, "\n".join(log) + "\n", err, {"mode": mode})
        # Existing KUBE-SVC/SEP/EXT chains, so stale ones are deleted like kube-proxy does. A nat
        # table iptables cannot read back (rules written with raw nft, or by a newer iptables)
        # makes the sync fail, with the chain iptables names.
        save = N.node_exec(node.init_pid, f"iptables-{mode}-save -t nat", check=False, timeout=20)
        stale: list[str] = []
        if save.returncode != 0 or "incompatible" in save.stdout + save.stderr:
            err = _incompatible_chain_error(node, mode, services) or "\n".join(
                line for line in (save.stderr or save.stdout).splitlines() if not line.startswith("# Warning")).strip()
            log.append(klog("E", "proxier.go:1181", f'"Failed to execute iptables-save" err=<\n\texit status 1: '
                            f"{err}\n >"))
            log.append(klog("E", "proxier.go:1564", f'"Failed to execute iptables-restore" err=<\n\texit status 1: '
                            f"{err}\n >"))
            log.append(klog("E", "server.go:556", f'"Error running ProxyServer" err="{err}"'))
            return AgentResult(False, "\n".join(log) + "\n", err, {"mode": mode})
        for line in save.stdout.splitlines():
            if line.startswith((":KUBE-SVC-", ":KUBE-SEP-", ":KUBE-EXT-")):
                stale.append(line[1:].split(" ")[0])
        text = restore_text(services, stale, node.cluster_cidr)
        rr = N.node_exec(node.init_pid, f"iptables-{mode}-restore --noflush -w 5", check=False,
                         timeout=30, input=text)
        if rr.returncode != 0:
            err = (rr.stderr or rr.stdout).strip()
            log.append(klog("E", "proxier.go:1564", f'"Failed to execute iptables-restore" err=<\n\texit status '
                            f"{rr.returncode}: {err}\n >"))
            log.append(klog("I", "proxier.go:1567", '"Closing local ports after iptables-restore failure"'))
            log.append(klog("E", "server.go:556", f'"Error running ProxyServer" err="iptables-restore failed: {err}"'))
            return AgentResult(False, "\n".join(log) + "\n", err, {"mode": mode})
        n_eps = sum(len(s.endpoints) for s in services)
        log.append(klog("I", "proxier.go:803", f'"SyncProxyRules complete" elapsed="12ms" mode="{mode}" '
                        f'services={len(services)} endpoints={n_eps}'))
        if services6 is not None and node.ip6:
            err6 = _sync_v6(node, mode, services6)
            if err6:
                log.append(klog("E", "proxier.go:1564", f'"Failed to execute iptables-restore" ipFamily="IPv6" '
                                f'err=<\n\texit status 1: {err6}\n >'))
                return AgentResult(False, "\n".join(log) + "\n", err6, {"mode": mode})
            log.append(klog("I", "proxier.go:803", f'"SyncProxyRules complete" ipFamily="IPv6" elapsed="9ms" '
                            f'services={len(services6)} endpoints={sum(len(s.endpoints) for s in services6)}'))
        return AgentResult(True, "\n".join(log) + "\n", data={"mode": mode})
    except (N.NodeError, OSError) as e:
        log.append(klog("E", "server.go:556", f'"Error running ProxyServer" err="{e}"'))
        return AgentResult(False, "\n".join(log) + "\n", str(e))


# -- kubelet's prober ----------------------------------------------------------------------------

def http_probe(node: NodeCtx, ip: str, port: int, path: str = "/", timeout: float = 1.0) -> tuple[bool, str]:
    """An httpGet readiness probe, run from the pod's node network namespace like kubelet does."""
    status, err = N.http_get_in_netns(f"/run/netns/{node.netns}", ip, port, path, timeout)
    if status is None:
        return False, err
    if 200 <= status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {status}"


def exec_probe(pod_netns: str, command: list[str], timeout: float = 2.0) -> tuple[bool, str]:
    """An exec probe: the command runs in the pod's network namespace."""
    if not command:
        return False, "exec probe without a command"
    try:
        r = N.run(["nsenter", f"--net=/run/netns/{pod_netns}", *command], check=False, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - a probe failure, whatever it is
        return False, f"command {command!r} failed: {e}"
    if r.returncode == 0:
        return True, ""
    return False, (r.stdout + r.stderr).strip() or f"command exited with {r.returncode}"
