"""The lab's cluster shapes besides kubeadm: what k3s, calico and a kube-proxy-free (cilium-style)
cluster present on their nodes, built for real inside the node namespaces.

- k3s: flannel (vxlan) and kube-proxy run inside the k3s process: the same flannel.1 / cni0 /
  KUBE-* state as kubeadm, but no DaemonSets or pods for them, the CNI config and flannel's
  net-conf under /var/lib/rancher/k3s/agent/etc/, k3s node labels and annotations.
- calico: what calico-node (felix + BIRD, BGP without encapsulation) and the calico CNI plugin
  program: routed pods on cali* veths (no bridge), a /26 IPAM block per node with a `proto bird`
  blackhole route, `proto bird` routes to the peers' blocks over the underlay, felix's cali-*
  iptables chains (profile accepts by mark 0x10000) -- and kube-proxy as a DaemonSet.
- kube-proxy-free: a cilium-style agent with kube-proxy replacement: cilium_host/cilium_net,
  lxc* veths with endpoint routes, native routing to the peers' podCIDRs, the CILIUM_* chains
  with their interface-based FORWARD accepts. The eBPF service load-balancer cannot run here:
  the lab does its NodePort/ClusterIP translation with DNAT rules inside CILIUM_PRE_nat /
  CILIUM_OUTPUT_nat (comment "lab emulation of the bpf service load-balancer"), so a NodePort
  answers on every node without any KUBE-* rule.

Everything here is our own code; names, paths, chain names, comments and marks follow what the
real components show on nodes (docs/lab-shapes.md lists the sources).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass

from clusterfix_tui.lab import agents as A
from clusterfix_tui.lab import nodes as N

K3S_VERSION = "v1.32.0+k3s1"
K3S_CONTAINERD = "containerd://1.7.23-k3s2"
K3S_DATA = "/var/lib/rancher/k3s"
K3S_CNI_DIR = f"{K3S_DATA}/agent/etc/cni/net.d"
K3S_FLANNEL_CONF = f"{K3S_DATA}/agent/etc/flannel/net-conf.json"
CALICO_IMAGE = "docker.io/calico/node:v3.29.1"
CALICO_POOL = "192.168.0.0/16"  # CALICO_IPV4POOL_CIDR, and kubeadm's --pod-network-cidr
CALICO_BLOCK_PREFIX = 26
CILIUM_IMAGE = "quay.io/cilium/cilium:v1.16.5"
CILIUM_NETWORK = "10.244.0.0/16"  # ipam.mode=kubernetes: the nodes' podCIDRs
ACCEPT_MARK = "0x10000"
CALICO_POOL6 = "fd00:10:192::/56"  # dual stack: CALICO_IPV6POOL_CIDR (ULA), kubeadm's second podSubnet
CALICO_BLOCK6_PREFIX = 122
CALICO_GW6 = "fe80::ecee:eeff:feee:eeee"  # the link-local of calico's host veths (MAC ee:ee:ee:ee:ee:ee)
FLANNEL_IPV6_NETWORK = A.FLANNEL_IPV6_NETWORK


def pod_cidr(shape: str, i: int) -> str:
    """spec.podCIDR of node i (1-based) as kube-controller-manager allocates it."""
    if shape == "calico":
        return f"192.168.{i - 1}.0/24"
    return f"10.244.{i - 1}.0/24"


def cluster_cidr(shape: str) -> str:
    return CALICO_POOL if shape == "calico" else A.FLANNEL_NETWORK


def cluster_cidr6(shape: str) -> str:
    return CALICO_POOL6 if shape == "calico" else A.FLANNEL_IPV6_NETWORK


def pod_cidr6(shape: str, i: int) -> str:
    base = "fd00:10:192" if shape == "calico" else "fd00:10:244"
    return str(ipaddress.IPv6Network(f"{base}:{i - 1:x}::/64"))


def pod_block6(shape: str, i: int) -> str:
    """calico: a /122 IPv6 IPAM block per node (not the node's podCIDR); else the podCIDR."""
    if shape == "calico":
        net = ipaddress.IPv6Network("fd00:10:192:80::/64")
        return str(ipaddress.IPv6Network(f"{net.network_address + 64 * i}/{CALICO_BLOCK6_PREFIX}"))
    return pod_cidr6(shape, i)


def calico_block(i: int) -> str:
    """The /26 IPAM block calico gives node i: unrelated to its spec.podCIDR (calico IPAM ignores
    it), spread over the pool like real block affinities are."""
    third = (37 * i + 96) % 256
    fourth = 64 * (i % 4)
    return f"192.168.{third}.{fourth}/{CALICO_BLOCK_PREFIX}"


def pod_block(shape: str, i: int) -> str:
    """Where node i's pods get their addresses."""
    return calico_block(i) if shape == "calico" else pod_cidr(shape, i)


def first_pod_host(shape: str) -> int:
    """Host offset of the first pod address in the block (calico hands out the block from its
    first address; bridge and cilium shapes keep .1 for the gateway / cilium_host)."""
    return 0 if shape == "calico" else 2


def router_ip(block: str) -> str:
    return str(ipaddress.ip_network(block).network_address + 1)


def _h(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]  # noqa: S324 - a name, not security


def host_veth_name(shape: str, namespace: str, name: str) -> str:
    if shape == "calico":  # the calico CNI plugin: "cali" + hash of the workload endpoint
        return "cali" + _h(f"{namespace}.{name}", 11)
    if shape == "kube-proxy-free":  # cilium: "lxc" + hash of the endpoint
        return "lxc" + _h(f"{namespace}/{name}", 12)
    return f"veth{_h(f'{namespace}/{name}', 8)}"


# -- files on the nodes --------------------------------------------------------------------------

K3S_CONFLIST = json.dumps({
    "name": "cbr0", "cniVersion": "1.0.0",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "forceAddress": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ],
}, indent=2) + "\n"

K3S_NET_CONF = json.dumps({"Network": A.FLANNEL_NETWORK, "EnableIPv6": False, "EnableIPv4": True,
                           "IPv6Network": "::/0", "Backend": {"Type": "vxlan"}}, indent=1) + "\n"

CALICO_CONFLIST = json.dumps({
    "name": "k8s-pod-network", "cniVersion": "0.3.1",
    "plugins": [
        {"type": "calico", "log_level": "info", "log_file_path": "/var/log/calico/cni/cni.log",
         "datastore_type": "kubernetes", "nodename": "__NODENAME__", "mtu": 0,
         "ipam": {"type": "calico-ipam"}, "policy": {"type": "k8s"},
         "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ],
}, indent=2) + "\n"

CILIUM_CONFLIST = json.dumps({
    "cniVersion": "0.3.1", "name": "cilium",
    "plugins": [{"type": "cilium-cni", "enable-debug": False, "log-file": "/var/run/cilium/cilium-cni.log"}],
}, indent=2) + "\n"


def node_tree(shape: str, node_name: str, kubelet_conf: str, admin_conf: str | None) -> dict[str, tuple[str, int]]:
    """{path on the node: (content, mode)} of the shape's own files (node_init copies them into the
    node's /etc and /var/lib overlays)."""
    files: dict[str, tuple[str, int]] = {}
    if shape == "k3s":
        files[f"{K3S_CNI_DIR}/10-flannel.conflist"] = (K3S_CONFLIST, 0o600)
        files[K3S_FLANNEL_CONF] = (K3S_NET_CONF, 0o600)
        files[f"{K3S_DATA}/agent/kubelet.kubeconfig"] = (kubelet_conf, 0o600)
        files[f"{K3S_DATA}/agent/etc/k3s-agent-load-balancer.json"] = (
            json.dumps({"ServerURL": "", "ServerAddresses": []}) + "\n", 0o600)
        if admin_conf is not None:
            files["/etc/rancher/k3s/k3s.yaml"] = (admin_conf, 0o600)
            files[f"{K3S_DATA}/server/cred/admin.kubeconfig"] = (admin_conf, 0o600)
    elif shape == "calico":
        files["/etc/cni/net.d/10-calico.conflist"] = (CALICO_CONFLIST.replace("__NODENAME__", node_name), 0o644)
        files["/etc/cni/net.d/calico-kubeconfig"] = (kubelet_conf, 0o600)
    elif shape == "kube-proxy-free":
        files["/etc/cni/net.d/05-cilium.conflist"] = (CILIUM_CONFLIST, 0o644)
    return files


# -- k3s: the node's systemd units ----------------------------------------------------------------

def k3s_unit(role: str) -> str:
    """The unit k3s runs as on a node: `k3s` (k3s server) on servers, `k3s-agent` on agents."""
    return "k3s" if role == "control-plane" else "k3s-agent"


SYSTEMCTL_STUB = r"""#!__PYTHON__
# systemctl of clusterfix lab node __NODE__ (k3s shape), visible only inside this node's mount
# namespace (an overlay on /usr/local/sbin). It knows one unit, __UNIT__.service (k3s with its
# embedded flannel and kube-proxy, emulated by the lab daemon): `is-active` answers for it, and
# `restart` asks the lab daemon (its control socket) to restart that node's embedded flannel and
# kube-proxy, as restarting k3s does. Nothing here talks to the host's systemd.
import json
import socket
import sys

NODE, UNIT, SOCK = __NODE_J__, __UNIT_J__, __SOCK_J__


def unit_name(word):
    return word[:-len(".service")] if word.endswith(".service") else word


def ask(req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(150)
    s.connect(SOCK)
    s.sendall(json.dumps(req).encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data or b"{}")


def main(argv):
    opts = [a for a in argv if a.startswith("-")]
    words = [a for a in argv if not a.startswith("-")]
    quiet = "-q" in opts or "--quiet" in opts
    if not words:
        print("systemctl (clusterfix lab node): only is-active, status and restart are emulated", file=sys.stderr)
        return 1
    verb, units = words[0], [unit_name(u) for u in words[1:]]
    if verb == "is-active":
        states = ["active" if u == UNIT else "inactive" for u in units]
        if not quiet:
            print("\n".join(states))
        return 0 if units and all(s == "active" for s in states) else 3
    if verb == "status":
        if units != [UNIT]:
            print(f"Unit {units[0] if units else '?'}.service could not be found.", file=sys.stderr)
            return 4
        print(f"* {UNIT}.service - Lightweight Kubernetes\n     Active: active (running)")
        return 0
    if verb in ("restart", "try-restart", "reload-or-restart"):
        if units != [UNIT]:
            bad = next((u for u in units if u != UNIT), "?")
            print(f"Failed to restart {bad}.service: Unit {bad}.service not found.", file=sys.stderr)
            return 5
        try:
            resp = ask({"op": "restart_service", "node": NODE, "unit": UNIT, "timeout": 120})
        except (OSError, ValueError) as e:
            print(f"Job for {UNIT}.service failed: {e}", file=sys.stderr)
            return 1
        if not resp.get("ok"):
            print(f"Job for {UNIT}.service failed: {resp.get('error')}", file=sys.stderr)
            return 1
        return 0
    print(f"systemctl (clusterfix lab node): {verb} is not emulated", file=sys.stderr)
    return 1


sys.exit(main(sys.argv[1:]))
"""


def node_python() -> str:
    """A python3 the nodes can run: a system one (the lab's own interpreter may live under /root,
    which each node has its own of)."""
    import shutil
    import sys

    found = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")
    return found or sys.executable


def systemctl_stub(python: str, node: str, unit: str, control_sock: str) -> str:
    return (SYSTEMCTL_STUB.replace("__PYTHON__", python).replace("__NODE_J__", json.dumps(node))
            .replace("__UNIT_J__", json.dumps(unit)).replace("__SOCK_J__", json.dumps(control_sock))
            .replace("__NODE__", node).replace("__UNIT__", unit))


# -- routed pods (calico, cilium): no bridge, a /32 on the pod side, a host route per pod --------

def create_routed_pod(pod_netns: str, node_netns: str, host_veth: str, ip: str, gateway: str, *,
                      host_mac: str | None = None, static_gateway: bool = False, mtu: int = 1500,
                      ip6: str = "", gateway6: str = "") -> None:
    """The pod's eth0 carries ip/32 and a default route via `gateway` (calico: 169.254.1.1 answered
    by the host veth's MAC ee:ee:ee:ee:ee:ee; cilium: the cilium_host address). The node gets
    `<ip> dev <host_veth> scope link` (calico CNI / cilium endpoint routes)."""
    N.add_netns(pod_netns)
    lines = [f"link add {host_veth} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod_netns}"]
    if host_mac:
        lines.append(f"link set {host_veth} address {host_mac}")
    lines += [f"link set {host_veth} up", f"route replace {ip}/32 dev {host_veth} scope link"]
    N.ip_batch(node_netns, lines)
    N.run(["ip", "netns", "exec", node_netns, "sysctl", "-q", "-w",
           f"net.ipv4.conf.{host_veth}.proxy_arp=1", f"net.ipv4.conf.{host_veth}.forwarding=1"], check=False)
    pod = ["link set lo up", f"addr add {ip}/32 dev eth0", "link set eth0 up",
           f"route add {gateway} dev eth0 scope link", f"route add default via {gateway} dev eth0"]
    if static_gateway and host_mac:
        pod.append(f"neigh replace {gateway} lladdr {host_mac} dev eth0 nud permanent")
    if ip6:
        # IPv6 needs the host's answer to neighbour solicitations for the gateway; the lab puts the
        # entry the host would answer with (its veth's MAC) in the pod, as for 169.254.1.1
        N.ip_batch(node_netns, [f"route replace {ip6}/128 dev {host_veth}"])
        mac = host_mac or json.loads(N.run(["ip", "-j", "-n", node_netns, "link", "show", "dev", host_veth]).stdout)[0][
            "address"]
        if not gateway6.startswith("fe80:"):
            pod.append(f"route add {gateway6}/128 dev eth0")
        pod += [f"addr add {ip6}/128 dev eth0 nodad", f"neigh replace {gateway6} lladdr {mac} dev eth0 nud permanent",
                f"route add default via {gateway6} dev eth0"]
    N.ip_batch(pod_netns, pod)


# -- iptables helpers ----------------------------------------------------------------------------

def _feeders_script(mode: str, feeders: list[tuple[str, str, list[str], str]], binary: str = "iptables") -> str:
    """Make sure each (table, builtin chain, rule args, "I"|"A") jump exists once."""
    lines = ["set -u", f"ipt() {{ {binary}-{mode} -w 5 \"$@\"; }}"]
    for table, chain, args, where in feeders:
        rule = shlex.join(args)
        op = "-I" if where == "I" else "-A"
        pos = " 1" if where == "I" else ""
        lines.append(f"ipt -t {table} -C {chain} {rule} 2>/dev/null || ipt -t {table} {op} {chain}{pos} {rule} "
                     f"|| {{ echo 'cannot add to {table}/{chain}' >&2; exit 3; }}")
    return "\n".join(lines) + "\n"


def _restore(node: A.NodeCtx, mode: str, text: str, binary: str = "iptables") -> None:
    r = N.node_exec(node.init_pid, f"{binary}-{mode}-restore --noflush -w 5", check=False, timeout=30, input=text)
    if r.returncode != 0:
        raise N.NodeError(f"{binary}-{mode}-restore: {(r.stderr or r.stdout).strip()}")


def _feed(node: A.NodeCtx, mode: str, feeders: list[tuple[str, str, list[str], str]],
          binary: str = "iptables") -> None:
    r = N.node_exec(node.init_pid, _feeders_script(mode, feeders, binary), check=False, timeout=30)
    if r.returncode != 0:
        raise N.NodeError((r.stderr or r.stdout).strip())


def _q(text: str) -> str:
    return f'"{text}"' if " " in text or ">" in text else text


# -- calico (felix + BIRD) -----------------------------------------------------------------------

def cali_id(chain: str, i: int, rule: str) -> str:
    """felix's rule comment "cali:<16 chars>": a hash of the chain, position and rule."""
    digest = hashlib.sha224(f"{chain}\0{i}\0{rule}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:16]


def _cali_chain(chain: str, rules: list[str]) -> list[str]:
    return [f"-A {chain} -m comment --comment \"cali:{cali_id(chain, i, r)}\" {r}" for i, r in enumerate(rules)]


@dataclass
class Workload:
    namespace: str
    name: str
    ip: str
    veth: str


def felix_filter(workloads: list[Workload]) -> str:
    """felix's filter-table chains (iptables dataplane) for these local workload endpoints."""
    namespaces = sorted({w.namespace for w in workloads} | {"default"})
    chains = ["cali-FORWARD", "cali-INPUT", "cali-OUTPUT", "cali-cidr-block", "cali-from-hep-forward",
              "cali-from-host-endpoint", "cali-from-wl-dispatch", "cali-to-hep-forward",
              "cali-to-host-endpoint", "cali-to-wl-dispatch", "cali-wl-to-host"]
    chains += [f"cali-pri-kns.{ns}" for ns in namespaces] + [f"cali-pro-kns.{ns}" for ns in namespaces]
    for w in workloads:
        chains += [f"cali-tw-{w.veth}", f"cali-fw-{w.veth}"]
    out = ["*filter"] + [f":{c} - [0:0]" for c in chains]
    out += _cali_chain("cali-FORWARD", [
        "-j MARK --set-xmark 0x0/0xe0000",
        "-m mark --mark 0x0/0x10000 -j cali-from-hep-forward",
        "-i cali+ -j cali-from-wl-dispatch",
        "-o cali+ -j cali-to-wl-dispatch",
        "-j cali-to-hep-forward",
        "-j cali-cidr-block",
    ])
    out += _cali_chain("cali-INPUT", [
        "-i cali+ -g cali-wl-to-host",
        f"-m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} -j ACCEPT",
        "-j MARK --set-xmark 0x0/0xf0000",
        "-j cali-from-host-endpoint",
        f"-m comment --comment \"Host endpoint policy accepted packet.\" -m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} "
        "-j ACCEPT",
    ])
    out += _cali_chain("cali-OUTPUT", [
        f"-m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} -j ACCEPT",
        "-o cali+ -j RETURN",
        "-j MARK --set-xmark 0x0/0xf0000",
        "-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint",
        f"-m comment --comment \"Host endpoint policy accepted packet.\" -m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} "
        "-j ACCEPT",
    ])
    out += _cali_chain("cali-wl-to-host", [
        "-j cali-from-wl-dispatch",
        "-m comment --comment \"Configured DefaultEndpointToHostAction\" -j ACCEPT",
    ])
    out += _cali_chain("cali-from-wl-dispatch", [f"-i {w.veth} -g cali-fw-{w.veth}" for w in workloads]
                       + ["-m comment --comment \"Unknown interface\" -j DROP"])
    out += _cali_chain("cali-to-wl-dispatch", [f"-o {w.veth} -g cali-tw-{w.veth}" for w in workloads]
                       + ["-m comment --comment \"Unknown interface\" -j DROP"])
    for ns in namespaces:
        for kind in ("pri", "pro"):
            out += _cali_chain(f"cali-{kind}-kns.{ns}", [f"-j MARK --set-xmark {ACCEPT_MARK}/{ACCEPT_MARK}",
                                                         f"-m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} -j RETURN"])
    for w in workloads:
        for kind, prof in (("tw", "pri"), ("fw", "pro")):
            rules = ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                     "-m conntrack --ctstate INVALID -j DROP",
                     "-j MARK --set-xmark 0x0/0x30000"]
            if kind == "fw":
                rules += ["-p udp -m comment --comment \"Drop VXLAN encapped packets originating in workloads\" "
                          "-m multiport --dports 4789 -j DROP",
                          "-p 4 -m comment --comment \"Drop IPinIP encapped packets originating in workloads\" "
                          "-j DROP"]
            rules += [f"-j cali-{prof}-kns.{w.namespace}",
                      f"-m comment --comment \"Return if profile accepted\" -m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} "
                      "-j RETURN",
                      "-m comment --comment \"Drop if no profiles matched\" -j DROP"]
            out += _cali_chain(f"cali-{kind}-{w.veth}", rules)
    return "\n".join(out + ["COMMIT"]) + "\n"


def felix_nat_raw(pool: str) -> str:
    nat = ["*nat", ":cali-PREROUTING - [0:0]", ":cali-POSTROUTING - [0:0]", ":cali-OUTPUT - [0:0]",
           ":cali-nat-outgoing - [0:0]", ":cali-fip-dnat - [0:0]", ":cali-fip-snat - [0:0]"]
    nat += _cali_chain("cali-PREROUTING", ["-j cali-fip-dnat"])
    nat += _cali_chain("cali-POSTROUTING", ["-j cali-fip-snat", "-j cali-nat-outgoing"])
    nat += _cali_chain("cali-OUTPUT", ["-j cali-fip-dnat"])
    # felix matches ipsets (cali40masq-ipam-pools / cali40all-ipam-pools); this machine has no ipset
    # tool, so the lab writes the same condition with the pool CIDR.
    nat += _cali_chain("cali-nat-outgoing", [f"-s {pool} ! -d {pool} -j MASQUERADE --random-fully"])
    raw = ["*raw", ":cali-PREROUTING - [0:0]", ":cali-OUTPUT - [0:0]", ":cali-from-host-endpoint - [0:0]",
           ":cali-to-host-endpoint - [0:0]"]
    raw += _cali_chain("cali-PREROUTING", ["-j MARK --set-xmark 0x0/0xf0000",
                                           "-i cali+ -j MARK --set-xmark 0x40000/0x40000",
                                           "-m mark --mark 0x0/0x40000 -j cali-from-host-endpoint",
                                           f"-m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} -j ACCEPT"])
    raw += _cali_chain("cali-OUTPUT", ["-j MARK --set-xmark 0x0/0xf0000", "-j cali-to-host-endpoint",
                                       f"-m mark --mark {ACCEPT_MARK}/{ACCEPT_MARK} -j ACCEPT"])
    return "\n".join(nat + ["COMMIT"] + raw + ["COMMIT"]) + "\n"


def _cali_feeder(chain: str, target: str) -> list[str]:
    rule = f"-j {target}"
    return ["-m", "comment", "--comment", f"cali:{cali_id(chain, 0, rule)}", "-j", target]


CALICO_FEEDERS = [
    ("raw", "PREROUTING", _cali_feeder("PREROUTING", "cali-PREROUTING"), "I"),
    ("raw", "OUTPUT", _cali_feeder("OUTPUT", "cali-OUTPUT"), "I"),
    ("filter", "INPUT", _cali_feeder("INPUT", "cali-INPUT"), "I"),
    ("filter", "FORWARD", _cali_feeder("FORWARD", "cali-FORWARD"), "I"),
    ("filter", "OUTPUT", _cali_feeder("OUTPUT", "cali-OUTPUT"), "I"),
    ("nat", "PREROUTING", _cali_feeder("PREROUTING", "cali-PREROUTING"), "I"),
    ("nat", "OUTPUT", _cali_feeder("OUTPUT", "cali-OUTPUT"), "I"),
    ("nat", "POSTROUTING", _cali_feeder("POSTROUTING", "cali-POSTROUTING"), "I"),
    ("filter", "FORWARD", ["-m", "comment", "--comment", "cali:S93hcgKJrXEqnTfs", "-m", "comment", "--comment",
                           "Policy explicitly accepted packet.", "-m", "mark", "--mark",
                           f"{ACCEPT_MARK}/{ACCEPT_MARK}", "-j", "ACCEPT"], "A"),
    ("filter", "FORWARD", ["-m", "comment", "--comment", "cali:mp77cMpurHhyjLrM", "-j", "MARK", "--set-xmark",
                           f"{ACCEPT_MARK}/{ACCEPT_MARK}"], "A"),
]


def bird_route_lines(block: str, peers: list[tuple[str, str]]) -> list[str]:
    """BIRD's kernel protocol: a blackhole for the local block, a route per peer block via the
    peer's node address (BGP without encapsulation on one L2 segment)."""
    lines = [f"route replace blackhole {block} proto bird"]
    for peer_ip, peer_block in peers:
        lines.append(f"route replace {peer_block} via {peer_ip} dev eth0 proto bird")
    return lines


def calico_start(node: A.NodeCtx, block: str, peers: list[tuple[str, str]], workloads: list[Workload],
                 pool: str = CALICO_POOL, block6: str = "", peers6: list[tuple[str, str]] | None = None,
                 pool6: str = CALICO_POOL6) -> A.AgentResult:
    """calico-node starting (or resyncing) on a node: BIRD's routes, felix's chains."""
    log = [
        f"{A.klog('I', 'startup/startup.go:431', 'Early log level set to info')}",
        f"{A.klog('I', 'startup/startup.go:647', f'Using autodetected IPv4 address on interface eth0: {node.ip}/24')}",
        f"{A.klog('I', 'startup/startup.go:723', 'Node IPv4 changed, will check for conflicts')}",
        f"{A.klog('I', 'startup/startup.go:1113', f'Using IPv4 pool {pool} (block size {CALICO_BLOCK_PREFIX}, IPIP Never, VXLAN Never)')}",
    ]
    try:
        N.ip_batch(node.netns, bird_route_lines(block, peers))
        mode = A.detect_iptables_mode(node)
        _restore(node, mode, felix_filter(workloads) + felix_nat_raw(pool))
        _feed(node, mode, CALICO_FEEDERS)
        if block6:  # dual stack: BIRD's IPv6 routes and felix's ip6tables dataplane
            N.ip_batch(node.netns, bird_route_lines(block6, peers6 or []))
            _restore(node, mode, felix_filter(workloads) + felix_nat_raw(pool6), "ip6tables")
            _feed(node, mode, CALICO_FEEDERS, "ip6tables")
            log.append(A.klog("I", "felix/int_dataplane.go:1948", "Completed first update to IPv6 dataplane."))
        log.append(A.klog("I", "felix/int_dataplane.go:1948", f"Completed first update to dataplane. "
                          f"secsSinceStart={len(workloads) * 0.01 + 0.3:.3f} iptablesBackend=\"{mode}\""))
        log.append(A.klog("I", "bird", f"Started BGP sessions with {len(peers)} peers"))
        return A.AgentResult(True, "\n".join(log) + "\n", data={"mode": mode})
    except (N.NodeError, OSError) as e:
        log.append(A.klog("E", "felix/table.go:1262", f"Failed to execute iptables restore: {e}"))
        return A.AgentResult(False, "\n".join(log) + "\n", str(e))


# -- cilium-style, kube-proxy replacement -------------------------------------------------------

CILIUM_FEEDERS = [
    ("filter", "INPUT", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_INPUT", "-j", "CILIUM_INPUT"], "I"),
    ("filter", "FORWARD", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_FORWARD", "-j", "CILIUM_FORWARD"], "I"),
    ("filter", "OUTPUT", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_OUTPUT", "-j", "CILIUM_OUTPUT"], "I"),
    ("raw", "PREROUTING", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_PRE_raw", "-j", "CILIUM_PRE_raw"], "I"),
    ("raw", "OUTPUT", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_OUTPUT_raw", "-j", "CILIUM_OUTPUT_raw"], "I"),
    ("nat", "PREROUTING", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_PRE_nat", "-j", "CILIUM_PRE_nat"], "I"),
    ("nat", "OUTPUT", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_OUTPUT_nat", "-j", "CILIUM_OUTPUT_nat"], "I"),
    ("nat", "POSTROUTING", ["-m", "comment", "--comment", "cilium-feeder: CILIUM_POST_nat", "-j", "CILIUM_POST_nat"],
     "I"),
]

LB_COMMENT = "cilium: lab emulation of the bpf service load-balancer"


def cilium_rules(pod_cidr_: str, cluster: str, services: list[A.ServicePort]) -> str:
    """The CILIUM_* chains of one family (IPv6 when pod_cidr_ is IPv6)."""
    v6 = ":" in pod_cidr_
    h = "/128" if v6 else "/32"
    filt = ["*filter", ":CILIUM_INPUT - [0:0]", ":CILIUM_FORWARD - [0:0]", ":CILIUM_OUTPUT - [0:0]",
            '-A CILIUM_INPUT -m mark --mark 0x200/0xf00 -m comment --comment "cilium: ACCEPT for proxy traffic" -j ACCEPT',
            '-A CILIUM_FORWARD -o cilium_host -m comment --comment "cilium: any->cluster on cilium_host forward accept" '
            "-j ACCEPT",
            '-A CILIUM_FORWARD -i cilium_host -m comment --comment "cilium: cluster->any on cilium_host forward accept '
            '(nodeport)" -j ACCEPT',
            '-A CILIUM_FORWARD -i lxc+ -m comment --comment "cilium: cluster->any on lxc+ forward accept" -j ACCEPT',
            '-A CILIUM_FORWARD -i cilium_net -m comment --comment "cilium: cluster->any on cilium_net forward accept '
            '(nodeport)" -j ACCEPT',
            '-A CILIUM_FORWARD -o lxc+ -m comment --comment "cilium: any->cluster on lxc+ forward accept" -j ACCEPT',
            '-A CILIUM_OUTPUT -m mark --mark 0xa00/0xe00 -m comment --comment "cilium: ACCEPT for proxy traffic" '
            "-j ACCEPT",
            '-A CILIUM_OUTPUT -m mark --mark 0x800/0xe00 -m comment --comment "cilium: ACCEPT for l7 proxy upstream '
            'traffic" -j ACCEPT',
            "-A CILIUM_OUTPUT -m mark ! --mark 0xe00/0xf00 -m mark ! --mark 0xd00/0xf00 -m mark ! --mark 0xa00/0xe00 "
            "-m mark ! --mark 0x800/0xe00 -m mark ! --mark 0xf00/0xf00 -m comment --comment "
            '"cilium: host->any mark as from host" -j MARK --set-xmark 0xc00/0xf00',
            "COMMIT"]
    raw = ["*raw", ":CILIUM_PRE_raw - [0:0]", ":CILIUM_OUTPUT_raw - [0:0]",
           '-A CILIUM_PRE_raw -m mark --mark 0x200/0xf00 -m comment --comment "cilium: NOTRACK for proxy traffic" '
           "-j CT --notrack",
           '-A CILIUM_OUTPUT_raw -o lxc+ -m mark --mark 0xa00/0xfffffeff -m comment --comment "cilium: NOTRACK for '
           'proxy return traffic" -j CT --notrack',
           '-A CILIUM_OUTPUT_raw -o cilium_host -m mark --mark 0xa00/0xfffffeff -m comment --comment "cilium: '
           'NOTRACK for proxy return traffic" -j CT --notrack',
           "COMMIT"]
    nat = ["*nat", ":CILIUM_PRE_nat - [0:0]", ":CILIUM_OUTPUT_nat - [0:0]", ":CILIUM_POST_nat - [0:0]"]
    for sp in services:
        proto = sp.protocol.lower()
        n = len(sp.endpoints)
        for chain in ("CILIUM_PRE_nat", "CILIUM_OUTPUT_nat"):
            for i, ep in enumerate(sp.endpoints):
                prob = f" -m statistic --mode random --probability {1.0 / (n - i):.10f}" if i < n - 1 else ""
                label = f"{LB_COMMENT}: {sp.port_name_str}"
                dest = f"[{ep}]:{sp.target_port}" if v6 else f"{ep}:{sp.target_port}"
                nat.append(f"-A {chain} -d {sp.cluster_ip}{h} -p {proto} -m {proto} --dport {sp.port}{prob} "
                           f"-m comment --comment \"{label} ClusterIP\" -j DNAT --to-destination {dest}")
                nat.append(f"-A {chain} -m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {sp.node_port}{prob} "
                           f"-m comment --comment \"{label} NodePort\" -j DNAT --to-destination {dest}")
        nat.append(f"-A CILIUM_POST_nat -o eth0 -p {proto} -m conntrack --ctstate DNAT --ctorigdstport {sp.node_port} "
                   f"-m comment --comment \"{LB_COMMENT}: SNAT of NodePort traffic to a remote backend\" -j MASQUERADE")
    nat += [f'-A CILIUM_POST_nat -s {pod_cidr_} ! -d {cluster} ! -o cilium_+ -m comment --comment '
            '"cilium masquerade non-cluster" -j MASQUERADE',
            '-A CILIUM_POST_nat -m mark --mark 0xa00/0xe00 -m comment --comment "exclude proxy return traffic from '
            'masquerade" -j ACCEPT',
            "COMMIT"]
    return "\n".join(filt + raw + nat) + "\n"


def cilium_start(node: A.NodeCtx, peers: list[tuple[str, str]], services: list[A.ServicePort],
                 cluster: str = CILIUM_NETWORK, peers6: list[tuple[str, str]] | None = None,
                 services6: list[A.ServicePort] | None = None) -> A.AgentResult:
    """cilium-agent starting (or syncing its services) on a node: cilium_host/cilium_net, native
    routes to the peers' podCIDRs, the CILIUM_* chains with the lab's service translation."""
    router = router_ip(node.pod_cidr)
    log = [
        'level=info msg="Memory available for map entries" subsys=config',
        'level=info msg="Initializing daemon" subsys=daemon',
        'level=info msg="Kube-proxy replacement: true" subsys=daemon',
        f'level=info msg="Retrieved node information from kubernetes node" nodeName={node.name} subsys=daemon',
        f'level=info msg="  IPv4 allocation prefix: {node.pod_cidr}" subsys=daemon',
        f'level=info msg="  IPv4 native routing prefix: {cluster}" subsys=daemon',
        f'level=info msg="Router IP: {router}" subsys=daemon',
    ]
    try:
        have = N.run(["ip", "-n", node.netns, "link", "show", "dev", "cilium_host"], check=False).returncode == 0
        lines = []
        if not have:
            # the route via the router IP goes in before the address (the kernel refuses a local
            # address as a gateway), like cilium's own start-up order leaves it
            lines += ["link add cilium_host type veth peer name cilium_net",
                      "link set cilium_net up", "link set cilium_host up",
                      f"route replace {router} dev cilium_host scope link",
                      f"route replace {node.pod_cidr} via {router} dev cilium_host"]
        lines += [f"addr replace {router}/32 dev cilium_host"]
        for peer_ip, peer_cidr in peers:
            lines.append(f"route replace {peer_cidr} via {peer_ip} dev eth0")
        if node.pod_cidr6:  # dual stack: the IPv6 router address and routes, the same way
            router6 = router_ip(node.pod_cidr6)
            if not have:
                lines += [f"route replace {router6} dev cilium_host",
                          f"route replace {node.pod_cidr6} via {router6} dev cilium_host"]
            lines.append(f"addr replace {router6}/128 dev cilium_host nodad")
            for peer_ip6, peer_cidr6 in peers6 or []:
                lines.append(f"route replace {peer_cidr6} via {peer_ip6} dev eth0")
        N.ip_batch(node.netns, lines)
        mode = A.detect_iptables_mode(node)
        _restore(node, mode, cilium_rules(node.pod_cidr, cluster, services))
        _feed(node, mode, CILIUM_FEEDERS)
        if node.pod_cidr6:
            _restore(node, mode, cilium_rules(node.pod_cidr6, node.cluster_cidr6, services6 or []), "ip6tables")
            _feed(node, mode, CILIUM_FEEDERS, "ip6tables")
        eps = sum(len(s.endpoints) for s in services)
        log.append(f'level=info msg="Synced services" services={len(services)} backends={eps} subsys=service')
        log.append('level=info msg="Daemon initialization completed" subsys=daemon')
        return A.AgentResult(True, "\n".join(log) + "\n", data={"mode": mode})
    except (N.NodeError, OSError) as e:
        log.append(f'level=error msg="Error while initializing daemon" error="{e}" subsys=daemon')
        return A.AgentResult(False, "\n".join(log) + "\n", str(e))
