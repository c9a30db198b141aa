"""The lab's fault catalog: each fault breaks a running lab for real, the way the runbook's failures
break a kubeadm + flannel cluster.

Every fault is a small set of commands run inside one node (through ``LabHandle.exec``, i.e. what
an SSH session on the node sees), sometimes on that node's peers, sometimes followed by a pod
restart or an agent state through the lab controller. ``inject`` returns the record that goes into
lab.json ``faults``: ``{"name", "node", "physical", "detail"}``; ``detail`` says what was done, what
breaks and how an admin removes the root cause by hand. ``physical`` is False only when the kernel
or the node's state cannot make the breakage real; the detail then says why (nothing is faked).

What each fault does, why it is real and the exact error texts measured on this kernel are in
docs/lab-faults.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

FLANNEL_NETWORK = ipaddress.ip_network("10.244.0.0/16")
NODEPORT = 30096
JELLYFIN_PORT = 8096
CLUSTER_IP = "10.96.96.96"
FLANNEL_DS = "kube-flannel-ds"
KUBE_PROXY_DS = "kube-proxy"
# An endpoint address the lab never hands out (pod IPs cycle through .2 - .250 of a node's subnet).
STALE_HOST = 251
# Offset of the "old" flannel lease of a node (its subnet before a re-join) inside 10.244.0.0/16.
OLD_LEASE_OFFSET = 128
DEAD_API_HOST = 250  # a former control-plane address on the lab bridge that nobody holds


class FaultError(RuntimeError):
    """The fault cannot be injected on this lab (unknown name, unknown node, missing state)."""


class LabLike(Protocol):
    """What faults need from ``clusterfix_tui.lab.cluster.LabHandle``."""

    @property
    def info(self) -> dict: ...

    def exec(self, node: str, sh_command: str, check: bool = True, timeout: float = 30,
             input: str | None = None) -> Any: ...

    def set_agent_state(self, node: str, agent: str, **state: Any) -> dict: ...

    def restart_pod(self, node: str, app: str) -> dict: ...


@dataclass(frozen=True)
class Fault:
    """One entry of the catalog. ``prefers`` says where the fault breaks something visible:
    "jellyfin" (the node running the jellyfin pod), "other" (a node without it: its NodePort path
    goes cross-node), "worker" (a worker without jellyfin if there is one)."""

    name: str
    summary: str
    prefers: str
    apply: Callable[[LabLike, str], dict]

    def inject(self, handle: LabLike, node: str) -> dict:
        return self.apply(handle, node)


# -- lab facts -----------------------------------------------------------------------------------

def _nodes(handle: LabLike) -> list[dict]:
    return list(handle.info.get("nodes") or [])


def _node(handle: LabLike, name: str) -> dict:
    for n in _nodes(handle):
        if n["name"] == name:
            return n
    raise FaultError(f"no node {name!r} in the lab (nodes: {', '.join(n['name'] for n in _nodes(handle))})")


def _index(node: dict) -> int:
    if node.get("index"):
        return int(node["index"])
    m = re.search(r"(\d+)$", node["name"])
    return int(m.group(1)) if m else 1


def jellyfin_pod(handle: LabLike) -> tuple[str | None, dict | None]:
    """(node name, pod record) of the jellyfin pod from lab.json, or (None, None)."""
    for n in _nodes(handle):
        for p in n.get("pods") or []:
            if p.get("app") == "jellyfin" or str(p.get("name", "")).startswith("jellyfin-"):
                return n["name"], p
    return None, None


def jellyfin_node(handle: LabLike) -> str:
    node, _ = jellyfin_pod(handle)
    if node:
        return node
    names = [n["name"] for n in _nodes(handle)]
    return "node-2" if "node-2" in names else names[0]


def _record(name: str, node: str, physical: bool, detail: str) -> dict:
    return {"name": name, "node": node, "physical": bool(physical), "detail": detail}


def _run(handle: LabLike, node: str, script: str, *, check: bool = True, timeout: float = 30,
         input: str | None = None) -> Any:
    r = handle.exec(node, script, check=False, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise FaultError(f"on {node}: `{script.strip()[:200]}` failed ({r.returncode}): "
                         f"{(r.stderr or r.stdout).strip()[:500]}")
    return r


def kube_proxy_backend(handle: LabLike, node: str) -> str:
    """"nft" or "legacy": the backend holding kube-proxy's nat chains on node (without creating a
    legacy nat table: `iptables-legacy-save -t nat` would register one), else the backend the
    node's `iptables` alternative points at."""
    script = (
        "if nft list chain ip nat KUBE-SERVICES >/dev/null 2>&1; then echo nft; "
        "elif grep -qx nat /proc/net/ip_tables_names 2>/dev/null && "
        "iptables-legacy-save -t nat 2>/dev/null | grep -q '^:KUBE-SERVICES'; then echo legacy; "
        "else case \"$(readlink -f /etc/alternatives/iptables 2>/dev/null)\" in "
        "*legacy*) echo legacy;; *) echo nft;; esac; fi"
    )
    out = _run(handle, node, script).stdout.strip()
    return "legacy" if out == "legacy" else "nft"


def _other(backend: str) -> str:
    return "legacy" if backend == "nft" else "nft"


def _old_subnet(node: dict) -> ipaddress.IPv4Network:
    """The node's "previous lease": a /24 of 10.244.0.0/16 no node of a <=128-node lab uses."""
    k = (_index(node) - 1 + OLD_LEASE_OFFSET) % 256
    return ipaddress.IPv4Network(f"10.244.{k}.0/24")


def _bogus_mac(seed: str) -> str:
    """A locally administered unicast MAC (first octet 0e) derived from seed."""
    h = hashlib.sha256(seed.encode()).digest()
    return "0e:" + ":".join(f"{b:02x}" for b in h[:5])


# -- iptables faults -----------------------------------------------------------------------------

def _stale_nat_rules(stale_ep: str, nodeport: int) -> str:
    """kube-proxy's nat layout (as the lab's kube-proxy writes it) for jellyfin with a stale
    endpoint, plus the jumps from the built-in chains: what a node keeps in a backend kube-proxy
    used before it switched."""
    from clusterfix_tui.lab import agents as A

    try:
        from clusterfix_tui.lab.daemon import CLUSTER_IP as cluster_ip
    except Exception:  # noqa: BLE001 - the constant is all we need
        cluster_ip = CLUSTER_IP
    sp = A.ServicePort("media", "jellyfin", "http", "TCP", cluster_ip, JELLYFIN_PORT, nodeport,
                       JELLYFIN_PORT, [stale_ep])
    text = A.restore_text([sp])
    nat = text[text.index("*nat"):].rstrip("\n").splitlines()
    assert nat[-1] == "COMMIT"
    jumps = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ]
    return "\n".join(nat[:-1] + jumps + ["COMMIT"]) + "\n"


def _nat_hook_registered(handle: LabLike, node: str, backend: str) -> bool:
    if backend == "legacy":
        script = "grep -qx nat /proc/net/ip_tables_names 2>/dev/null && echo yes || echo no"
    else:
        script = "nft list table ip nat >/dev/null 2>&1 && echo yes || echo no"
    return _run(handle, node, script).stdout.strip() == "yes"


def inject_iptables_shadow(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    jf_node = _node(handle, jellyfin_node(handle))
    backend = kube_proxy_backend(handle, node)
    other = _other(backend)
    subnet = ipaddress.ip_network(jf_node["pod_cidr"])
    stale_ep = str(subnet.network_address + STALE_HOST)
    nodeport = int(handle.info.get("nodeport") or NODEPORT)
    registered_before = _nat_hook_registered(handle, node, other)
    rules = _stale_nat_rules(stale_ep, nodeport)
    _run(handle, node, f"iptables-{other}-restore --noflush -w 5", input=rules)
    # Measure which DNAT wins: a connection from the node to its own NodePort passes the same nat
    # hooks (OUTPUT instead of PREROUTING); its conntrack entry shows the address it was sent to.
    ip = shlex.quote(n["ip"])
    probe = _run(handle, node, f"conntrack -D -p tcp --orig-dst {ip} --dport {nodeport} >/dev/null 2>&1; "
                               f"curl -s -o /dev/null -m 1 http://{ip}:{nodeport}/; "
                               f"conntrack -L -p tcp --orig-dst {ip} --dport {nodeport} 2>/dev/null", check=False)
    if "dport=" in (probe.stdout or ""):
        registered_before = f"src={stale_ep} " not in probe.stdout
    fix = (f"iptables-{other}-save -t nat | grep KUBE- (see them), then remove every KUBE-* rule and chain "
           f"from iptables-{other} nat (e.g. the -D/-X lines of a restore file, or "
           f"`iptables-{other} -t nat -F` + `-X` of the KUBE-* chains); kube-proxy's own rules in "
           f"iptables-{backend} stay")
    if registered_before:
        return _record("iptables-shadow", node, False, (
            f"stale kube-proxy nat rules (NodePort {nodeport} and ClusterIP -> DNAT {stale_ep}:{JELLYFIN_PORT}, "
            f"a jellyfin endpoint that no longer exists) written into iptables-{other} on {node} ({n['ip']}), "
            f"while kube-proxy programs iptables-{backend}. NOT shadowing: the {other} nat hook of this node "
            f"was registered before kube-proxy's {backend} one, and of two nat hooks at the same priority the "
            f"one registered most recently decides the DNAT; a registered hook cannot be moved without "
            f"recreating the node's network namespace. Measured: a connection to the NodePort was still "
            f"DNATed by kube-proxy's live rules; the stale rules are cosmetic here. By hand: {fix}"))
    return _record("iptables-shadow", node, True, (
        f"stale kube-proxy nat rules (KUBE-SERVICES/KUBE-NODEPORTS/KUBE-EXT/KUBE-SVC/KUBE-SEP, NodePort "
        f"{nodeport} and ClusterIP {CLUSTER_IP}:{JELLYFIN_PORT} -> DNAT {stale_ep}:{JELLYFIN_PORT}, a jellyfin "
        f"endpoint that no longer exists) written into iptables-{other} on {node} ({n['ip']}), while "
        f"kube-proxy programs iptables-{backend}. The {other} nat hook was registered after kube-proxy's "
        f"{backend} one, so its DNAT wins (measured: the node's own connection to the NodePort was sent "
        f"to {stale_ep}, per conntrack): `curl http://{n['ip']}:{nodeport}/` times out "
        f"(connections are sent to {stale_ep}) although kube-proxy's live rules are correct. The "
        f"`iptables` tools of the node show only the {backend} rules plus \"# Warning: iptables-legacy "
        f"tables present\". By hand: {fix}"))


def _nft_nat_chains(handle: LabLike, node: str) -> dict[str, str]:
    """{chain name: body text} of nft `table ip nat` on node."""
    r = _run(handle, node, "nft list table ip nat 2>/dev/null", check=False)
    chains: dict[str, str] = {}
    for m in re.finditer(r"^\tchain (\S+) \{\n(.*?)^\t\}", r.stdout or "", re.MULTILINE | re.DOTALL):
        chains[m.group(1)] = m.group(2)
    return chains


FOREIGN_EXPR = "ct state new counter"


def inject_iptables_foreign_rule(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    if backend != "nft":
        return _record("iptables-foreign-rule", node, False, (
            f"not injected: kube-proxy on {node} uses iptables-legacy, whose tables `nft` cannot write; "
            "an nft-written rule in kube-proxy's nat chains needs kube-proxy on iptables-nft"))
    _, jf = jellyfin_pod(handle)
    chains = _nft_nat_chains(handle, node)
    seps = [c for c in chains if c.startswith("KUBE-SEP-")]
    target = None
    if jf:
        target = next((c for c in seps if f"dnat to {jf['ip']}:" in chains[c]), None)
    target = target or (seps[0] if seps else None)
    if target is None:
        raise FaultError(f"no KUBE-SEP-* chain in nft table ip nat on {node}: kube-proxy has no endpoint "
                         "programmed there (jellyfin not ready?)")
    _run(handle, node, f"nft add rule ip nat {shlex.quote(target)} {FOREIGN_EXPR}")
    chk = _run(handle, node, f"iptables-nft -w 5 -t nat -L {shlex.quote(target)} -n", check=False)
    err = next((line for line in (chk.stderr or "").splitlines() if "incompatible" in line), "")
    tbl = _run(handle, node, "iptables-nft -w 5 -t nat -L -n", check=False)
    terr = next((line for line in (tbl.stderr or "").splitlines() if "incompatible" in line), "")
    physical = chk.returncode != 0 and "is incompatible, use 'nft' tool" in err
    res = handle.restart_pod(node, KUBE_PROXY_DS)
    kp = ("crash-loops with that text in its log" if not (res or {}).get("running")
          else "is running (its sync did not see the rule)")
    return _record("iptables-foreign-rule", node, physical, (
        f"`nft add rule ip nat {target} {FOREIGN_EXPR}` on {node} ({n['ip']}): a rule written with nft "
        f"into kube-proxy's endpoint chain (the jellyfin endpoint), in an expression iptables-nft 1.8.9 "
        f"cannot translate back. `iptables -t nat -L {target} -n` exits {chk.returncode}: {err!r}; "
        f"`iptables -t nat -L -n` / `-S` exit {tbl.returncode}: {terr!r}; `iptables-save -t nat` prints "
        f"only \"# Table `nat' is incompatible, use 'nft' tool.\" (exit 0). The kube-proxy pod on {node} "
        f"was restarted: the lab's kube-proxy fails a sync whose iptables-save cannot be read back, so it "
        f"{kp} (and so will every resync there). Traffic still flows: the rule only counts and the "
        f"programmed rules stay. Measured here: iptables-nft-restore --noflush itself still succeeds and "
        f"would flush the chain it declares; a real kube-proxy of the same iptables version only loses its "
        f"stale-chain cleanup. By hand: `nft -a list chain ip nat {target}`, then `nft delete rule ip nat "
        f"{target} handle <N>` of the `ct state new` rule; then delete the kube-proxy pod on {node}"))


def inject_forward_drop(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    other = _other(backend)
    _run(handle, node, f"iptables-{other} -w 5 -t filter -P FORWARD DROP")
    return _record("forward-drop", node, True, (
        f"`iptables-{other} -P FORWARD DROP` on {node} ({n['ip']}) while kube-proxy and the node's "
        f"`iptables` use iptables-{backend}: a forwarded packet must pass the filter FORWARD chains of both "
        f"backends, so everything the node forwards is dropped: NodePort {NODEPORT} on {n['ip']} times out, "
        f"and so does pod traffic into/out of {node}'s pods and through it. `iptables -L FORWARD` on the node "
        f"shows policy ACCEPT. By hand: `iptables-{other} -P FORWARD ACCEPT`"))


FIREWALL_RULES = """*filter
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -p udp -m udp --dport 8472 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
COMMIT
"""


def inject_firewall_reject(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=FIREWALL_RULES)
    jf = jellyfin_node(handle)
    where = ("the jellyfin pod's node" if node == jf else f"not the jellyfin node ({jf}): only traffic "
             f"forwarded by {node} itself is rejected")
    return _record("firewall-reject", node, True, (
        f"the firewall of a RHEL-style node (iptables-services/firewalld defaults) appended to iptables-"
        f"{backend} filter on {node} ({n['ip']}, {where}): INPUT accepts established, icmp, lo, ssh and "
        f"flannel's udp/8472, then `-j REJECT --reject-with icmp-host-prohibited`; FORWARD ends with the same "
        f"REJECT. Real effect: connections forwarded into this node's pods that kube-proxy did not mark "
        f"(NodePort {NODEPORT} via the other nodes, pod-to-pod from other nodes) get an ICMP host-prohibited "
        f"back and the client sees \"No route to host\" (errno 113) at once. Not affected: NodePort "
        f"{NODEPORT} on {n['ip']} itself (kube-proxy's KUBE-FORWARD accepts its 0x4000-marked packets "
        f"first) and the readiness probe from the node to its own pod (OUTPUT is not filtered and the reply "
        f"is ESTABLISHED), so no probe event is produced. By hand: `iptables -D FORWARD -j REJECT "
        f"--reject-with icmp-host-prohibited` and `iptables -D INPUT -j REJECT --reject-with "
        f"icmp-host-prohibited` (or stop the firewall)"))


def _kube_chains_removal(save_text: str, table: str) -> str | None:
    """iptables-restore --noflush input that removes every KUBE-* chain of a table and the jumps to
    them from the built-in chains (what a reboot leaves when kube-proxy does not come back)."""
    chains = [line[1:].split(" ")[0] for line in save_text.splitlines() if line.startswith(":KUBE-")]
    chains = [c for c in chains if c not in ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")]
    if not chains:
        return None
    dels = []
    for line in save_text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "-A" and not parts[1].startswith("KUBE-") and " -j KUBE-" in line:
            target = line.rsplit(" -j ", 1)[1].split(" ")[0]
            if target in chains:
                dels.append("-D " + line[3:])
    out = [f"*{table}"] + [f":{c} - [0:0]" for c in chains] + dels + [f"-X {c}" for c in chains] + ["COMMIT"]
    return "\n".join(out) + "\n"


def _kube_proxy_outage_log(handle: LabLike, node: str) -> tuple[str, str]:
    from clusterfix_tui.lab.agents import klog

    url = str((handle.info.get("api") or {}).get("url") or "https://10.213.0.1:6443").rstrip("/")
    hostport = re.sub(r"^\w+://", "", url)
    err = f'Get "{url}/api/v1/nodes/{node}": dial tcp {hostport}: connect: connection refused'
    lines = [klog("I", "server_linux.go:66", '"Using iptables proxy"')]
    lines += [klog("E", "node.go:152", f'"Failed to retrieve node info" err="{err}"') for _ in range(3)]
    lines.append(klog("E", "server.go:558", f'"Error running ProxyServer" err="unable to get node IP: {err}"'))
    return "\n".join(lines) + "\n", err


def inject_kube_proxy_crashloop(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    removed = []
    for table in ("nat", "filter"):
        save = _run(handle, node, f"iptables-{backend}-save -t {table}").stdout
        if "incompatible" in save:
            raise FaultError(f"iptables-{backend}-save -t {table} on {node} is unreadable (a foreign nft rule?)")
        text = _kube_chains_removal(save, table)
        if text:
            _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=text)
            removed.append(table)
    left = _run(handle, node, f"iptables-{backend}-save -t nat | grep -c -- '-A KUBE-NODEPORTS' || true").stdout
    log_text, err = _kube_proxy_outage_log(handle, node)
    handle.set_agent_state(node, "kube-proxy", crashed=True, message=log_text, error=err, backoff=300)
    return _record("kube-proxy-crashloop", node, left.strip() in ("", "0"), (
        f"every KUBE-* chain and jump removed from iptables-{backend} {'/'.join(removed) or '(none found)'} on "
        f"{node} ({n['ip']}), as after a reboot where kube-proxy did not come back: NodePort {NODEPORT} on "
        f"{n['ip']} is refused (nothing DNATs it). The lab controller holds the node's kube-proxy pod in "
        f"CrashLoopBackOff with a 300 s back-off and the log of a kube-proxy that started during an API "
        f"outage ({err}); that pod state is the controller's (set_agent_state), the missing rules are real. "
        f"By hand: delete the kube-proxy pod on {node} through the API (kubectl -n kube-system delete pod "
        f"...): the new pod programs the rules again"))


# -- flannel / CNI faults ------------------------------------------------------------------------

def inject_cni_bridge_conflict(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    subnet = ipaddress.ip_network(n["pod_cidr"])
    gw = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    old = _old_subnet(n)
    wrong = f"{old.network_address + 1}/{old.prefixlen}"
    _run(handle, node, f"ip addr add {shlex.quote(wrong)} dev cni0 && "
                       f"ip addr del {shlex.quote(gw)} dev cni0")
    res = handle.restart_pod(node, FLANNEL_DS)
    pods = [p for p in (_node(handle, node).get("pods") or [])]
    return _record("cni-bridge-conflict", node, not bool((res or {}).get("running")), (
        f"cni0 on {node} ({n['ip']}) carries {wrong} (an old lease) instead of its podCIDR gateway {gw}: the "
        f"node lost its route to {subnet}, so its {len(pods)} pod(s) are unreachable (NodePort {NODEPORT} "
        f"to a pod there fails, pod-to-pod into {node} fails, the readiness probe from the node fails). The "
        f"flannel pod on {node} was restarted through the lab controller and crash-loops with flannel's "
        f"\"failed to set bridge addr: \\\"cni0\\\" already has an IP address different from {gw}\". By "
        f"hand: `ip addr del {wrong} dev cni0` (or `ip link delete cni0`), then delete the flannel pod on "
        f"{node}: it sets {gw} again"))


def inject_flannel_stale_vtep(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    peers = [p for p in _nodes(handle) if p["name"] != node]
    if not peers:
        return _record("flannel-stale-vtep", node, False,
                       f"not injected: {node} has no peers, so no node holds a VTEP entry for it")
    real = n.get("vtep_mac") or _run(handle, node, "cat /sys/class/net/flannel.1/address").stdout.strip()
    bogus = _bogus_mac(f"{handle.info.get('lab_id', '')}/{node}")
    vtep = str(ipaddress.ip_network(n["pod_cidr"]).network_address)
    script = (
        f"ip neigh replace {vtep} lladdr {bogus} dev flannel.1 nud permanent && "
        f"{{ bridge fdb del {real} dev flannel.1 dst {n['ip']} self 2>/dev/null || true; }} && "
        f"bridge fdb append {bogus} dev flannel.1 dst {n['ip']} self permanent"
    )
    for p in peers:
        _run(handle, p["name"], script)
    names = ", ".join(p["name"] for p in peers)
    return _record("flannel-stale-vtep", node, True, (
        f"{names} hold VTEP MAC {bogus} for {node} (neigh {vtep} lladdr {bogus} on flannel.1 and fdb {bogus} "
        f"dst {n['ip']}) instead of its real flannel.1 MAC {real} (the node annotation "
        f"flannel.alpha.coreos.com/backend-data still says {real}), as after {node} rebooted with a new VTEP: "
        f"{node}'s flannel.1 drops the frames, so cross-node traffic to {node}'s pods fails (pod-to-pod "
        f"from other nodes, NodePort {NODEPORT} on the other nodes when the endpoint is on {node}). By hand "
        f"on each peer: `ip neigh replace {vtep} lladdr {real} dev flannel.1 nud permanent`, `bridge fdb "
        f"del {bogus} dev flannel.1 dst {n['ip']} self`, `bridge fdb append {real} dev flannel.1 dst "
        f"{n['ip']} self permanent`; or delete the flannel pods on the peers (they reprogram from the "
        f"annotation)"))


def inject_flannel_stale_subnet(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    subnet = ipaddress.ip_network(n["pod_cidr"])
    cur = f"{subnet.network_address}/32"
    old = _old_subnet(n)
    old_addr = str(old.network_address)
    routes = json.loads(_run(handle, node, "ip -j -4 route show dev flannel.1").stdout or "[]")
    lines = [f"addr add {old_addr}/32 dev flannel.1", f"addr del {cur} dev flannel.1", f"addr add {cur} dev flannel.1"]
    for r in routes:
        if r.get("gateway") and r.get("dst"):
            lines.append(f"route replace {r['dst']} via {r['gateway']} dev flannel.1 onlink src {old_addr}")
    _run(handle, node, "ip -batch -", input="\n".join(lines) + "\n")
    env = (f"FLANNEL_NETWORK={FLANNEL_NETWORK}\nFLANNEL_SUBNET={old.network_address + 1}/{old.prefixlen}\n"
           "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    _run(handle, node, "mkdir -p /run/flannel && cat > /run/flannel/subnet.env", input=env)
    res = handle.restart_pod(node, FLANNEL_DS)
    return _record("flannel-stale-subnet", node, True, (
        f"flannel.1 on {node} ({n['ip']}) still carries its old lease {old_addr}/32 (primary) beside {cur}, "
        f"its {len(routes)} route(s) to the other nodes' subnets use src {old_addr}, and "
        f"/run/flannel/subnet.env says FLANNEL_SUBNET={old.network_address + 1}/24. Real effect: traffic the "
        f"node sends through flannel.1 leaves with source {old_addr}, which no other node routes back: "
        f"NodePort {NODEPORT} on {n['ip']} to an endpoint on another node times out (kube-proxy masquerades "
        f"to {old_addr}) and the node itself cannot reach remote pods; its own pods' traffic still works. "
        f"The flannel pod was restarted through the lab controller and "
        f"{'crash-loops' if not (res or {}).get('running') else 'is running (unexpected)'} with flannel's "
        f"\"link has incompatible addresses. Remove additional addresses and try again\". By hand: "
        f"`ip addr del {old_addr}/32 dev flannel.1` (or `ip link delete flannel.1`), then delete the "
        f"flannel pod on {node} (it rewrites subnet.env and the routes)"))


# -- node / host faults --------------------------------------------------------------------------

def inject_worker_kubeconfig(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    path = "/root/.kube/config"
    r = _run(handle, node, f"cat {path}", check=False)
    if r.returncode != 0 or not r.stdout.strip():
        raise FaultError(f"{node} has no {path} to break")
    cfg = yaml.safe_load(r.stdout)
    bridge = ipaddress.ip_network((handle.info.get("bridge") or {}).get("cidr") or "10.213.0.0/24")
    dead_host = str(bridge.network_address + DEAD_API_HOST)
    old_servers = []
    for c in cfg.get("clusters") or []:
        server = c.get("cluster", {}).get("server", "")
        old_servers.append(server)
        scheme = server.split("://", 1)[0] if "://" in server else "https"
        c["cluster"]["server"] = f"{scheme}://{dead_host}:6443"
    dead = f"{scheme}://{dead_host}:6443" if old_servers else ""
    _run(handle, node, f"umask 077 && cat > {path}.tmp && mv {path}.tmp {path}",
         input=yaml.safe_dump(cfg, sort_keys=False))
    role = n.get("role", "worker")
    return _record("worker-kubeconfig", node, True, (
        f"{path} on {node} ({n['ip']}, {role}) points at {dead} (a former control-plane address on the lab "
        f"bridge that nobody holds) instead of {', '.join(old_servers) or 'the lab API'}: kubectl on the node "
        f"fails (\"dial tcp {dead_host}:6443: connect: no route to host\" after ARP gives up, about 3 s). "
        f"The node's kubelet.conf is untouched (the node stays Ready). By hand: copy a good kubeconfig "
        f"(e.g. the control plane's /etc/kubernetes/admin.conf or the lab's kubeconfig) to {path}, "
        f"mode 600"))


def inject_ip_forward_off(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    _run(handle, node, "echo 0 > /proc/sys/net/ipv4/ip_forward")
    val = _run(handle, node, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip()
    return _record("ip-forward-off", node, val == "0", (
        f"net.ipv4.ip_forward=0 on {node} ({n['ip']}) (its own network namespace): the node no longer "
        f"routes: NodePort {NODEPORT} on {n['ip']} times out (DNATed packets are not forwarded), pods on "
        f"{node} cannot reach other nodes and are not reachable through it. By hand: `sysctl -w "
        f"net.ipv4.ip_forward=1` (and fix /etc/sysctl.d so it stays)"))


def inject_br_netfilter_off(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    knob = "/proc/sys/net/bridge/bridge-nf-call-iptables"
    r = _run(handle, node, f"test -w {knob} && echo 0 > {knob} && cat {knob}", check=False)
    if r.returncode != 0 or r.stdout.strip() != "0":
        return _record("br-netfilter-off", node, False, (
            f"not injected: {knob} does not exist or is not writable in {node}'s network namespace on this "
            f"kernel (br_netfilter missing), so bridge-nf-call-iptables cannot be turned off here"))
    return _record("br-netfilter-off", node, True, (
        f"net.bridge.bridge-nf-call-iptables=0 on {node} ({n['ip']}) (the knob is per network namespace on "
        f"this kernel): frames bridged on cni0 skip iptables and conntrack. Real effect: a pod on {node} that "
        f"connects to the jellyfin Service's ClusterIP {CLUSTER_IP}:{JELLYFIN_PORT} while the endpoint is on "
        f"the same node gets the reply straight over the bridge from the pod IP, un-NATed, and the "
        f"connection times out. Traffic that is routed (NodePort from outside, cross-node pods, the probe "
        f"from the node) is not affected. By hand: `sysctl -w net.bridge.bridge-nf-call-iptables=1` (and "
        f"`modprobe br_netfilter` + /etc/sysctl.d on a real node)"))


def _v6_node(handle: LabLike, node: str, name: str) -> dict:
    n = _node(handle, node)
    if lab_family(handle) not in DUAL_FAMILIES:
        raise FaultError(f"fault {name!r} needs a dual-stack lab (--ip-family dual or dual-v6-first): "
                         "an IPv4-only node carries no IPv6 pod traffic")
    return n


def inject_ipv6_forward_off(handle: LabLike, node: str) -> dict:
    n = _v6_node(handle, node, "ipv6-forward-off")
    knob = "/proc/sys/net/ipv6/conf/all/forwarding"
    _run(handle, node, f"echo 0 > {knob}")
    val = _run(handle, node, f"cat {knob}").stdout.strip()
    return _record("ipv6-forward-off", node, val == "0", (
        f"net.ipv6.conf.all.forwarding=0 on {node} ({n.get('ip6') or n['ip']}) (its own network namespace; "
        f"writing `all` turns forwarding off on every interface): the node no longer routes IPv6: the IPv6 "
        f"NodePort {NODEPORT} on {n.get('ip6')} and IPv6 pod traffic through {node} die, IPv4 keeps "
        f"working. By hand: `sysctl -w net.ipv6.conf.all.forwarding=1` (and /etc/sysctl.d so it stays)"))


def inject_br_netfilter_ip6_off(handle: LabLike, node: str) -> dict:
    _v6_node(handle, node, "br-netfilter-ip6-off")
    knob = "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
    r = _run(handle, node, f"test -w {knob} && echo 0 > {knob} && cat {knob}", check=False)
    if r.returncode != 0 or r.stdout.strip() != "0":
        return _record("br-netfilter-ip6-off", node, False, (
            f"not injected: {knob} does not exist or is not writable in {node}'s network namespace on this "
            f"kernel (br_netfilter missing)"))
    return _record("br-netfilter-ip6-off", node, True, (
        f"net.bridge.bridge-nf-call-ip6tables=0 on {node} (per network namespace on this kernel): IPv6 "
        f"frames bridged on cni0 skip ip6tables and conntrack, so a pod on {node} reaching an IPv6 "
        f"Service endpoint on the same node gets un-NATed replies straight over the bridge. IPv4 "
        f"(bridge-nf-call-iptables) is untouched. By hand: `sysctl -w net.bridge.bridge-nf-call-ip6tables=1`"))


# -- host firewall faults (issue 13) and their healthy look-alikes ---------------------------------

VXLAN_PORT = 8472


def _server_pod(handle: LabLike, node: str) -> tuple[str, int] | None:
    """(ip, port) of a pod with its own network namespace and a server on `node`."""
    for p in _node(handle, node).get("pods") or []:
        if p.get("ip") and p.get("port") and p.get("netns", True):
            return str(p["ip"]), int(p["port"])
    return None


def _cross_node(handle: LabLike, node: str) -> list[tuple[str, str, int]]:
    """From every peer: a TCP/HTTP request to a pod on `node` (through the VXLAN underlay and
    `node`'s firewall). [(peer, "ip:port", curl exit code)]: 0 = answered."""
    target = _server_pod(handle, node)
    if target is None:
        return []
    ip, port = target
    out = []
    for n in _nodes(handle):
        if n["name"] == node:
            continue
        r = _run(handle, n["name"], f"curl -s -m 3 -o /dev/null http://{ip}:{port}/", check=False)
        out.append((n["name"], f"{ip}:{port}", r.returncode))
    return out


def _all_cross_node(res: list[tuple[str, str, int]], *, answered: bool) -> bool:
    """The injection has its effect on the wire: every peer's request answered (a healthy
    look-alike) or none (a fault that cuts the node off); False when nothing could be measured."""
    return bool(res) and all((rc == 0) == answered for _, _, rc in res)


def _measured(res: list[tuple[str, str, int]]) -> str:
    if not res:
        return "no pod with a server on the node to measure with"
    return "; ".join(f"{peer} -> {tgt}: " + ("answered" if rc == 0 else
                                             "timed out" if rc == 28 else f"curl exit {rc}")
                     for peer, tgt, rc in res)


def inject_vxlan_blocked(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    rule = f"-A INPUT -p udp -m udp --dport {VXLAN_PORT} -j DROP"
    _run(handle, node, f"iptables-{backend} -w 5 -t filter " + " ".join(shlex.quote(t) for t in
                                                                       shlex.split(rule)))
    res = _cross_node(handle, node)
    physical = _all_cross_node(res, answered=False)
    return _record("vxlan-blocked", node, physical, (
        f"`iptables-{backend} {rule}` on {node} ({n['ip']}): flannel's VXLAN (udp/{VXLAN_PORT}) from the "
        f"peers is dropped on {node}'s INPUT, so nothing encapsulated reaches it: pods on {node} are "
        f"unreachable from other nodes and NodePorts routed through other nodes to {node}'s pods time out "
        f"(the most common flannel failure: a host firewall or security group on the underlay). "
        f"Measured after injection: {_measured(res)}. By hand: `iptables-{backend} -I INPUT -p udp "
        f"--dport {VXLAN_PORT} -j ACCEPT` (or delete the DROP)"))


INPUT_DROP_RULES = """*filter
:INPUT DROP [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""


def inject_input_drop(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=INPUT_DROP_RULES)
    res = _cross_node(handle, node)
    physical = _all_cross_node(res, answered=False)
    return _record("input-drop", node, physical, (
        f"a hardened host's INPUT on {node} ({n['ip']}) in iptables-{backend}: policy DROP with accepts for "
        f"established, lo, icmp and ssh (tcp/22) only; no accept for the kubelet (tcp/10250) or flannel's "
        f"VXLAN (udp/{VXLAN_PORT}): VXLAN from the peers dies on INPUT, so cross-node pod traffic into "
        f"{node} and NodePorts routed there fail; kubelet's API is closed. Measured after injection: "
        f"{_measured(res)}. By hand: `iptables-{backend} -I INPUT -p udp --dport {VXLAN_PORT} -j ACCEPT`, "
        f"the same for tcp/10250 (or `-P INPUT ACCEPT`)"))


def firewalld_ruleset(open_cluster: bool, pod_network: str = str(FLANNEL_NETWORK)) -> str:
    """An `inet firewalld` table laid out as firewalld (1.x/2.x, nftables backend) writes it for
    the default zone `public` (ssh, dhcpv6-client, cockpit): the base chains at priority filter +
    10 with policy accept, the zone dispatch chains, and the catch-all `reject with icmpx
    admin-prohibited` after them (firewalld's src/tests/features/policy_dispatch_*.at show this
    layout). `open_cluster`: the ports a Kubernetes node needs opened in zone public and the pod
    network as a source of zone trusted, as an admin following the kubeadm/flannel docs does."""
    allow_extra = ""
    trusted_in = trusted_fwd = trusted_fwd_egress = trusted_chains = ""
    if open_cluster:
        allow_extra = (f"\t\tudp dport {VXLAN_PORT} accept\n\t\ttcp dport 10250 accept\n"
                       "\t\ttcp dport 6443 accept\n\t\ttcp dport 30000-32767 accept\n")
        trusted_in = f"\t\tip saddr {pod_network} jump filter_IN_trusted_to_HOST\n"
        trusted_fwd = f"\t\tip saddr {pod_network} jump filter_FWD_trusted_dispatch_stage2\n"
        trusted_fwd_egress = f"\t\tip daddr {pod_network} jump filter_FWD_public_to_trusted\n"
        trusted_chains = (
            "\tchain filter_IN_trusted_to_HOST {\n\t\taccept\n\t}\n"
            "\tchain filter_FWD_trusted_dispatch_stage2 {\n\t\taccept\n\t}\n"
            "\tchain filter_FWD_public_to_trusted {\n\t\taccept\n\t}\n")
    v6 = ("::/96, ::ffff:0.0.0.0/96, 2002::/24, 2002:a00::/24, 2002:7f00::/24, 2002:a9fe::/32, "
          "2002:ac10::/28, 2002:c0a8::/32, 2002:e000::/19")
    return (
        "table inet firewalld {\n"
        "\tchain filter_INPUT {\n"
        "\t\ttype filter hook input priority filter + 10; policy accept;\n"
        "\t\tct state { established, related } accept\n\t\tct status dnat accept\n"
        "\t\tiifname \"lo\" accept\n\t\tct state invalid drop\n"
        "\t\tjump filter_INPUT_dispatch\n\t\treject with icmpx admin-prohibited\n\t}\n"
        "\tchain filter_FORWARD {\n"
        "\t\ttype filter hook forward priority filter + 10; policy accept;\n"
        "\t\tct state { established, related } accept\n\t\tct status dnat accept\n"
        "\t\tiifname \"lo\" accept\n\t\tct state invalid drop\n"
        f"\t\tip6 daddr {{ {v6} }} reject with icmpv6 addr-unreachable\n"
        "\t\tjump filter_FORWARD_dispatch\n\t\treject with icmpx admin-prohibited\n\t}\n"
        "\tchain filter_OUTPUT {\n"
        "\t\ttype filter hook output priority filter + 10; policy accept;\n"
        "\t\tct state { established, related } accept\n\t\toifname \"lo\" accept\n"
        f"\t\tip6 daddr {{ {v6} }} reject with icmpv6 addr-unreachable\n"
        "\t\tjump filter_OUTPUT_dispatch\n\t}\n"
        f"\tchain filter_INPUT_dispatch {{\n{trusted_in}\t\tjump filter_IN_public_to_HOST\n\t}}\n"
        "\tchain filter_IN_public_to_HOST {\n\t\tjump filter_IN_policy_allow-host-ipv6\n"
        "\t\tjump filter_IN_public\n\t\treject with icmpx admin-prohibited\n\t}\n"
        "\tchain filter_IN_policy_allow-host-ipv6 {\n"
        "\t\ticmpv6 type { nd-neighbor-advert, nd-neighbor-solicit, nd-router-advert, nd-redirect } accept\n"
        "\t}\n"
        "\tchain filter_IN_public {\n\t\tjump filter_IN_public_pre\n\t\tjump filter_IN_public_log\n"
        "\t\tjump filter_IN_public_deny\n\t\tjump filter_IN_public_allow\n\t\tjump filter_IN_public_post\n"
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept\n\t}\n"
        "\tchain filter_IN_public_pre {\n\t}\n\tchain filter_IN_public_log {\n\t}\n"
        "\tchain filter_IN_public_deny {\n\t}\n\tchain filter_IN_public_post {\n\t}\n"
        "\tchain filter_IN_public_allow {\n\t\ttcp dport 22 accept\n"
        "\t\tip6 daddr fe80::/64 udp dport 546 accept\n\t\ttcp dport 9090 accept\n"
        f"{allow_extra}\t}}\n"
        f"\tchain filter_FORWARD_dispatch {{\n{trusted_fwd}\t\tjump filter_FWD_public_dispatch_stage2\n\t}}\n"
        f"\tchain filter_FWD_public_dispatch_stage2 {{\n{trusted_fwd_egress}"
        "\t\tjump filter_FWD_public_to_public\n\t}\n"
        "\tchain filter_FWD_public_to_public {\n\t\tjump filter_FWD_public\n"
        "\t\treject with icmpx admin-prohibited\n\t}\n"
        "\tchain filter_FWD_public {\n\t}\n"
        "\tchain filter_OUTPUT_dispatch {\n\t\tjump filter_OUT_HOST_to_public\n\t}\n"
        "\tchain filter_OUT_HOST_to_public {\n\t\tjump filter_OUT_public\n\t\taccept\n\t}\n"
        "\tchain filter_OUT_public {\n\t}\n"
        f"{trusted_chains}"
        "}\n"
    )


def _inject_firewalld(handle: LabLike, node: str, open_cluster: bool) -> dict:
    n = _node(handle, node)
    name = "firewalld-open" if open_cluster else "firewalld"
    _run(handle, node, "nft -f -", input=firewalld_ruleset(open_cluster))
    res = _cross_node(handle, node)
    if open_cluster:
        physical = _all_cross_node(res, answered=True)
        return _record(name, node, physical, (
            f"a healthy look-alike: firewalld's `inet firewalld` table on {node} ({n['ip']}) with the "
            f"catch-all `reject with icmpx admin-prohibited` in INPUT and FORWARD, and the cluster opened "
            f"the way the kubeadm/flannel docs say: zone public allows udp/{VXLAN_PORT}, tcp/10250, tcp/6443 "
            f"and tcp/30000-32767, the pod network {FLANNEL_NETWORK} is a source of zone trusted. Nothing is "
            f"broken; a diagnosis must report nothing here and `fix --yes` must change nothing. Measured: "
            f"{_measured(res)}. Remove: `nft delete table inet firewalld`"))
    physical = _all_cross_node(res, answered=False)
    return _record(name, node, physical, (
        f"firewalld's `inet firewalld` table (nftables backend, default zone public: ssh, dhcpv6-client, "
        f"cockpit) on {node} ({n['ip']}) with none of the cluster's ports opened: after zone public's "
        f"accepts, INPUT and FORWARD end in `reject with icmpx admin-prohibited`. VXLAN (udp/{VXLAN_PORT}) "
        f"from the peers is rejected on INPUT, pod traffic forwarded by {node} is rejected, kubelet "
        f"(tcp/10250) and NodePorts are closed. Measured after injection: {_measured(res)}. By hand "
        f"(firewalld running): `firewall-cmd --permanent --add-port={VXLAN_PORT}/udp --add-port=10250/tcp "
        f"--add-port=30000-32767/tcp; firewall-cmd --permanent --zone=trusted --add-source={FLANNEL_NETWORK}; "
        f"firewall-cmd --reload`; here (no firewalld daemon): `nft insert rule inet firewalld filter_INPUT "
        f"udp dport {VXLAN_PORT} accept` and the like"))


def inject_firewalld(handle: LabLike, node: str) -> dict:
    return _inject_firewalld(handle, node, False)


def inject_firewalld_open(handle: LabLike, node: str) -> dict:
    return _inject_firewalld(handle, node, True)


def docker_rules(pod_network: str = str(FLANNEL_NETWORK)) -> str:
    """The filter chains dockerd (20.10-27) writes, FORWARD policy DROP, plus the admin's explicit
    accepts for the pod network in DOCKER-USER (docker's documented place for them)."""
    return (
        "*filter\n:FORWARD DROP [0:0]\n:DOCKER - [0:0]\n:DOCKER-ISOLATION-STAGE-1 - [0:0]\n"
        ":DOCKER-ISOLATION-STAGE-2 - [0:0]\n:DOCKER-USER - [0:0]\n"
        "-I FORWARD 1 -j DOCKER-USER\n"
        "-I FORWARD 2 -j DOCKER-ISOLATION-STAGE-1\n"
        "-I FORWARD 3 -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-I FORWARD 4 -o docker0 -j DOCKER\n"
        "-I FORWARD 5 -i docker0 ! -o docker0 -j ACCEPT\n"
        "-I FORWARD 6 -i docker0 -o docker0 -j ACCEPT\n"
        "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2\n"
        "-A DOCKER-ISOLATION-STAGE-1 -j RETURN\n"
        "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP\n"
        "-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n"
        f"-A DOCKER-USER -s {pod_network} -j ACCEPT\n"
        f"-A DOCKER-USER -d {pod_network} -j ACCEPT\n"
        "-A DOCKER-USER -j RETURN\n"
        "COMMIT\n"
    )


def inject_docker_host(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, "ip link show docker0 >/dev/null 2>&1 || { ip link add docker0 type bridge && "
                       "ip addr add 172.17.0.1/16 dev docker0 && ip link set docker0 up; }")
    _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=docker_rules())
    res = _cross_node(handle, node)
    physical = _all_cross_node(res, answered=True)
    return _record("docker-host", node, physical, (
        f"a healthy look-alike: {node} ({n['ip']}) as a node that also runs docker: a docker0 bridge "
        f"(172.17.0.1/16) and dockerd's filter chains in iptables-{backend} (FORWARD policy DROP, DOCKER-USER "
        f"first, DOCKER-ISOLATION-STAGE-1/2 dropping traffic between docker networks, DOCKER), with the "
        f"admin's explicit accepts for the pod network {FLANNEL_NETWORK} (source and destination) in "
        f"DOCKER-USER. Pod traffic flows; a diagnosis must report nothing here and `fix --yes` must change "
        f"nothing (flipping FORWARD to ACCEPT would remove docker's isolation). Measured: {_measured(res)}"))


def inject_underlay_blocked(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    dev = _run(handle, node, f"ip -o -4 addr show | awk '$4 ~ /^{re.escape(n['ip'])}\\// {{print $2; exit}}'"
               ).stdout.strip() or "eth0"
    _run(handle, node, "nft -f -", input=(
        "table netdev cfx_security_group {\n"
        f"\tchain ingress {{ type filter hook ingress device {dev} priority -500; policy accept;\n"
        f"\t\tudp dport {VXLAN_PORT} drop\n\t}}\n}}\n"))
    res = _cross_node(handle, node)
    physical = _all_cross_node(res, answered=False)
    return _record("underlay-blocked", node, physical, (
        f"flannel's VXLAN (udp/{VXLAN_PORT}) to {node} ({n['ip']}) dropped before the node's firewall sees "
        f"it, as a cloud security group or network ACL does: the lab has no cloud, so the drop is a netdev "
        f"ingress filter on {node}'s {dev} (table netdev cfx_security_group), which runs before netfilter's "
        f"IP hooks and which no iptables listing shows. Measured after injection: {_measured(res)}. Nothing "
        f"on the node's iptables/nft input/output path drops it: the fix is outside the node (open "
        f"udp/{VXLAN_PORT} between the nodes). By hand here: `nft delete table netdev cfx_security_group`"))


UNRELATED_REJECT_RULES = """*filter
-A INPUT -p tcp -m tcp --dport 3306 -j REJECT --reject-with icmp-host-prohibited
-A INPUT -s 203.0.113.0/24 -j DROP
-A OUTPUT -p tcp -m tcp --dport 25 -j REJECT --reject-with icmp-admin-prohibited
COMMIT
"""


def inject_unrelated_reject(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=UNRELATED_REJECT_RULES)
    res = _cross_node(handle, node)
    physical = _all_cross_node(res, answered=True)
    return _record("unrelated-reject", node, physical, (
        f"a healthy look-alike: rules in iptables-{backend} on {node} ({n['ip']}) for traffic the cluster "
        f"never sends: INPUT rejects tcp/3306 (MySQL) with icmp-host-prohibited and drops a blocklisted "
        f"range (203.0.113.0/24), OUTPUT rejects smtp (tcp/25). Nothing of the cluster is affected; a "
        f"diagnosis must report nothing here and `fix --yes` must change nothing. Measured: {_measured(res)}"))


# -- faultlink: link / route / overlay / sysctl / kubeconfig variants ---------------------------
# Named only (NOT_IN_ALL): each is a variant of a class the catalog above injects once.

def _other_peer(handle: LabLike, node: str) -> dict:
    """The peer whose pods `node` is cut off from: the jellyfin node when it is another one."""
    jf = jellyfin_node(handle)
    peers = [p for p in _nodes(handle) if p["name"] != node]
    if not peers:
        raise FaultError(f"{node} has no peer")
    return next((p for p in peers if p["name"] == jf), peers[0])


def inject_flannel_neigh_missing(handle: LabLike, node: str) -> dict:
    peer = _other_peer(handle, node)
    gw = str(ipaddress.ip_network(peer["pod_cidr"]).network_address)
    _run(handle, node, f"ip neigh del {shlex.quote(gw)} dev flannel.1")
    return _record("flannel-neigh-missing", node, True, (
        f"{node}'s permanent neighbour entry for {peer['name']}'s subnet address {gw} on flannel.1 is "
        f"deleted (its fdb entry stays): flannel.1 is nolearning and nobody answers ARP on it, so {node} "
        f"cannot send to {peer['name']}'s pods ({peer['pod_cidr']}): 'No route to host'. By hand: `ip neigh "
        f"replace {gw} lladdr <{peer['name']}'s VtepMAC> dev flannel.1 nud permanent`"))


def inject_cni0_wrong_prefix(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    subnet = ipaddress.ip_network(n["pod_cidr"])
    gw = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    wide = f"{subnet.network_address + 1}/{max(subnet.prefixlen - 8, 8)}"
    _run(handle, node, f"ip addr add {shlex.quote(wide)} dev cni0 && ip addr del {shlex.quote(gw)} dev cni0")
    res = handle.restart_pod(node, FLANNEL_DS)
    return _record("cni0-wrong-prefix", node, not bool((res or {}).get("running")), (
        f"cni0 on {node} carries its gateway as {wide} instead of {gw} (the right IP, a wrong prefix "
        f"length): the CNI bridge plugin compares 'IP/len' as text and refuses ('\"cni0\" already has "
        f"an IP address different from {gw}'); flannel there was restarted and crash-loops. By hand: "
        f"`ip addr add {gw} dev cni0; ip addr del {wide} dev cni0`"))


def inject_flannel_link_down(handle: LabLike, node: str) -> dict:
    _run(handle, node, "ip link set flannel.1 down")
    return _record("flannel-link-down", node, True, (
        f"flannel.1 on {node} is set down: the kernel dropped its routes to every other node's "
        f"podCIDR and its neighbour entries; {node} reaches no remote pod and no remote pod reaches "
        f"{node}'s. By hand: `ip link set flannel.1 up`, then re-add the routes and neighbour entries "
        f"(or restart flannel on {node})"))


def inject_cni0_down(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    _run(handle, node, "ip link set cni0 down")
    return _record("cni0-down", node, True, (
        f"cni0 on {node} is set down: the route to its podCIDR {n['pod_cidr']} is gone, its pods are "
        f"unreachable (NodePort {NODEPORT} to them, pod-to-pod into {node}). By hand: `ip link set cni0 up`"))


def inject_route_blackhole(handle: LabLike, node: str) -> dict:
    peer = _other_peer(handle, node)
    net = ipaddress.ip_network(peer["pod_cidr"])
    half = next(net.subnets(prefixlen_diff=1))
    _run(handle, node, f"ip route add blackhole {shlex.quote(str(half))}")
    return _record("route-blackhole", node, True, (
        f"`blackhole {half}` on {node}: more specific than flannel's route to {peer['name']}'s "
        f"{net}, so the pods of {peer['name']} in that half are unreachable from {node}; restarting "
        f"flannel does not remove it. By hand: `ip route del blackhole {half}`"))


def inject_cni0_forwarding_off(handle: LabLike, node: str) -> dict:
    _run(handle, node, "echo 0 > /proc/sys/net/ipv4/conf/cni0/forwarding")
    return _record("cni0-forwarding-off", node, True, (
        f"net.ipv4.conf.cni0.forwarding=0 on {node} (ip_forward stays 1): the kernel forwards nothing "
        f"that comes in on cni0, so {node}'s pods' replies and connections beyond the node die "
        f"(NodePort {NODEPORT} to them, pod-to-pod into {node}). By hand: `sysctl -w "
        f"net.ipv4.conf.cni0.forwarding=1`"))


def inject_vtep_recreated(handle: LabLike, node: str) -> dict:
    n = _node(handle, node)
    r = _run(handle, node, "cat /sys/class/net/flannel.1/address; ip -j -d link show flannel.1; "
                           "ip -j addr show dev flannel.1; ip -j route show dev flannel.1; "
                           "ip -j neigh show dev flannel.1; bridge -j fdb show dev flannel.1")
    lines = r.stdout.splitlines()
    old_mac = lines[0].strip()
    link, addrs, routes, neigh, fdb = (json.loads(x or "[]") for x in lines[1:6])
    info = (link[0].get("linkinfo") or {}).get("info_data") or {}
    mtu = link[0].get("mtu", 1450)
    new_mac = _bogus_mac(f"{handle.info.get('lab_id', '')}/{node}/vtep")
    batch = ["link del flannel.1",
             f"link add flannel.1 address {new_mac} type vxlan id {info.get('id', 1)} local {info.get('local', n['ip'])} "
             f"dev eth0 dstport {info.get('port', 8472)} nolearning",
             f"link set flannel.1 mtu {mtu}"]
    for a in (addrs[0].get("addr_info") if addrs else []) or []:
        if a.get("family") == "inet":
            batch.append(f"addr add {a['local']}/{a['prefixlen']} dev flannel.1")
    batch.append("link set flannel.1 up")
    for rt in routes:
        if rt.get("gateway"):
            batch.append(f"route replace {rt['dst']} via {rt['gateway']} dev flannel.1 onlink")
    for e in neigh:
        if e.get("lladdr"):
            batch.append(f"neigh replace {e['dst']} lladdr {e['lladdr']} dev flannel.1 nud permanent")
    _run(handle, node, "ip -batch -", input="\n".join(batch) + "\n")
    fdb_lines = [f"fdb append {e['mac']} dev flannel.1 dst {e['dst']} self permanent"
                 for e in fdb if e.get("dst") and e.get("mac")]
    if fdb_lines:
        _run(handle, node, "bridge -batch -", input="\n".join(fdb_lines) + "\n")
    return _record("vtep-recreated", node, True, (
        f"flannel.1 on {node} recreated with MAC {new_mac} (was {old_mac}; its address, routes, "
        f"neighbour and fdb entries re-added) while the node's annotation flannel.alpha.coreos.com/"
        f"backend-data still says {old_mac}: every peer sends {node}'s pods frames for {old_mac}, which "
        f"the device drops. By hand: restart flannel on {node} (it annotates the new MAC; the peers "
        f"reprogram)"))


def inject_cp_kubeconfig(handle: LabLike, node: str) -> dict:
    path = "/root/.kube/config"
    r = _run(handle, node, f"cat {path}", check=False)
    if r.returncode != 0 or not r.stdout.strip():
        raise FaultError(f"{node} has no {path} to break")
    cfg = yaml.safe_load(r.stdout)
    old, new = [], []
    for c in cfg.get("clusters") or []:
        server = c.get("cluster", {}).get("server", "")
        m = re.match(r"^(https?://[^/]+?)(?::(\d+))?(/.*)?$", server)
        if not m:
            continue
        port = int(m.group(2) or 443)
        c["cluster"]["server"] = f"{m.group(1)}:{port + 1 if port < 65535 else port - 1}{m.group(3) or ''}"
        old.append(server)
        new.append(c["cluster"]["server"])
    _run(handle, node, f"umask 077 && cat > {path}.tmp && mv {path}.tmp {path}",
         input=yaml.safe_dump(cfg, sort_keys=False))
    return _record("cp-kubeconfig", node, bool(old), (
        f"{path} on {node} points at {', '.join(new)} (a port nothing listens on) instead of "
        f"{', '.join(old)}: kubectl there fails (connection refused). By hand: set the server back"))


# -- faultnet: netfilter variants (kube-proxy's nat links, raw/mangle drops, a user chain) ---------
# Named only (NOT_IN_ALL): each is a variant of a class the catalog above injects once.

def _nodeport_from_peer(handle: LabLike, node: str) -> tuple[str, int] | None:
    """(peer, curl exit code) of a request from a peer to `node`'s NodePort (0 = answered)."""
    n = _node(handle, node)
    nodeport = int(handle.info.get("nodeport") or NODEPORT)
    peer = next((x["name"] for x in _nodes(handle) if x["name"] != node), None)
    if peer is None:
        return None
    r = _run(handle, peer, f"curl -s -m 3 -o /dev/null http://{shlex.quote(n['ip'])}:{nodeport}/",
             check=False)
    return peer, r.returncode


def _nodeport_measured(res: tuple[str, int] | None, node: str) -> str:
    if res is None:
        return "no peer to measure from"
    peer, rc = res
    return (f"{peer} -> {node}'s NodePort: " + ("answered" if rc == 0 else "timed out" if rc == 28
                                                 else f"curl exit {rc}"))


def inject_kube_proxy_jump_gone(handle: LabLike, node: str) -> dict:
    backend = kube_proxy_backend(handle, node)
    rule = '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    _run(handle, node, f"iptables-{backend} -w 5 -t nat -D PREROUTING {rule}")
    res = _nodeport_from_peer(handle, node)
    return _record("kube-proxy-jump-gone", node, res is not None and res[1] != 0, (
        f"`iptables-{backend} -t nat -D PREROUTING {rule}` on {node}: kube-proxy's chains all stay, "
        f"but nothing arriving at {node} is sent through KUBE-SERVICES any more, so its NodePorts "
        f"(and ClusterIPs of forwarded pod traffic) are not translated; kube-proxy runs and reports "
        f"healthy, and re-adds the jump only on a full sync (its start; from 1.28 otherwise once an "
        f"hour). Measured: {_nodeport_measured(res, node)}. By hand: restart kube-proxy on {node}"))


def inject_kube_proxy_nodeports_flushed(handle: LabLike, node: str) -> dict:
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, f"iptables-{backend} -w 5 -t nat -F KUBE-NODEPORTS")
    res = _nodeport_from_peer(handle, node)
    return _record("kube-proxy-nodeports-flushed", node, res is not None and res[1] != 0, (
        f"`iptables-{backend} -t nat -F KUBE-NODEPORTS` on {node}: the chain stays (empty), "
        f"KUBE-SERVICES still jumps to it, but no NodePort rule is left: every NodePort of {node} is "
        f"dead until kube-proxy's next sync that writes the chain. Measured: "
        f"{_nodeport_measured(res, node)}. By hand: restart kube-proxy on {node}"))


def inject_mangle_nodeport_drop(handle: LabLike, node: str) -> dict:
    backend = kube_proxy_backend(handle, node)
    rule = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j DROP"
    _run(handle, node, f"iptables-{backend} -w 5 -t mangle " + shlex.join(shlex.split(rule)))
    res = _nodeport_from_peer(handle, node)
    return _record("mangle-nodeport-drop", node, res is not None and res[1] != 0, (
        f"`iptables-{backend} -t mangle {rule}` on {node}: the NodePort range dropped in mangle "
        f"PREROUTING, before nat and filter: no ACCEPT in filter can let it through, and "
        f"`iptables -L` (filter) shows nothing. Measured: {_nodeport_measured(res, node)}. By hand: "
        f"`iptables-{backend} -t mangle -D PREROUTING -p tcp --dport 30000:32767 -j DROP`"))


def inject_raw_vxlan_drop(handle: LabLike, node: str) -> dict:
    rule = f"-A PREROUTING -p udp -m udp --dport {VXLAN_PORT} -j DROP"
    _run(handle, node, "iptables-legacy -w 5 -t raw " + shlex.join(shlex.split(rule)))
    res = _cross_node(handle, node)
    return _record("raw-vxlan-drop", node, _all_cross_node(res, answered=False), (
        f"`iptables-legacy -t raw {rule}` on {node} (an anti-DDoS rule in the raw table of the "
        f"backend the node's tools do not show: the kernel runs both): flannel's VXLAN from the peers "
        f"dies before conntrack and filter, so pods on {node} are unreachable from other nodes. "
        f"Measured: {_measured(res)}. By hand: `iptables-legacy -t raw -D PREROUTING -p udp --dport "
        f"{VXLAN_PORT} -j DROP`"))


def inject_forward_reject_chain(handle: LabLike, node: str) -> dict:
    backend = kube_proxy_backend(handle, node)
    net = str(FLANNEL_NETWORK)
    rules = ("*filter\n:HOST-FWD - [0:0]\n-A FORWARD -j HOST-FWD\n"
             f"-A HOST-FWD -d {net} -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n")
    _run(handle, node, f"iptables-{backend}-restore --noflush -w 5", input=rules)
    res = _cross_node(handle, node)
    return _record("forward-reject-chain", node, _all_cross_node(res, answered=False), (
        f"FORWARD jumps to an admin chain HOST-FWD in iptables-{backend} on {node} whose rule "
        f"`-d {net} -j REJECT --reject-with icmp-host-prohibited` rejects everything forwarded to "
        f"the pods: cross-node traffic to {node}'s pods gets \"No route to host\". Measured: "
        f"{_measured(res)}. By hand: `iptables-{backend} -D HOST-FWD -d {net} -j REJECT "
        f"--reject-with icmp-host-prohibited`"))


# -- the catalog ---------------------------------------------------------------------------------

FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("iptables-shadow", "stale KUBE-* DNAT rules in the backend kube-proxy does not use shadow the live "
          "NodePort path", "other", inject_iptables_shadow),
    Fault("iptables-foreign-rule", "an nft-written rule in kube-proxy's nat chain that iptables-nft cannot "
          "read back (\"chain ... is incompatible, use 'nft' tool\")", "other", inject_iptables_foreign_rule),
    Fault("forward-drop", "FORWARD policy DROP in the iptables backend kube-proxy does not use", "other",
          inject_forward_drop),
    Fault("cni-bridge-conflict", "cni0 carries an address outside the node's podCIDR; flannel crash-loops",
          "jellyfin", inject_cni_bridge_conflict),
    Fault("flannel-stale-vtep", "peers hold a wrong VTEP MAC for the node: cross-node traffic to its pods "
          "fails", "jellyfin", inject_flannel_stale_vtep),
    Fault("flannel-stale-subnet", "flannel.1 and its routes still carry an old subnet; flannel crash-loops "
          "with \"link has incompatible addresses\"", "other", inject_flannel_stale_subnet),
    Fault("kube-proxy-crashloop", "no NodePort rules on the node; kube-proxy stuck in CrashLoopBackOff",
          "other", inject_kube_proxy_crashloop),
    Fault("worker-kubeconfig", "a worker's /root/.kube/config points at a dead API address", "worker",
          inject_worker_kubeconfig),
    Fault("ip-forward-off", "net.ipv4.ip_forward=0 on the node", "other", inject_ip_forward_off),
    Fault("br-netfilter-off", "bridge-nf-call-iptables=0: same-node pod-to-ClusterIP breaks", "jellyfin",
          inject_br_netfilter_off),
    Fault("ipv6-forward-off", "net.ipv6.conf.all.forwarding=0 on a dual-stack node", "other",
          inject_ipv6_forward_off),
    Fault("br-netfilter-ip6-off", "bridge-nf-call-ip6tables=0 on a dual-stack node (IPv4 untouched)",
          "jellyfin", inject_br_netfilter_ip6_off),
    Fault("firewall-reject", "a firewalld-style REJECT --reject-with icmp-host-prohibited: clients see "
          "\"No route to host\"", "jellyfin", inject_firewall_reject),
    Fault("vxlan-blocked", "flannel's VXLAN (udp/8472) dropped on a node's INPUT: cross-node traffic to it "
          "dies", "jellyfin", inject_vxlan_blocked),
    Fault("input-drop", "INPUT policy DROP with no accept for the kubelet or flannel's VXLAN", "jellyfin",
          inject_input_drop),
    Fault("firewalld", "firewalld's inet table (zone public) with its catch-all reject and the cluster's "
          "ports not open", "jellyfin", inject_firewalld),
    Fault("underlay-blocked", "flannel's VXLAN to a node dropped outside its host firewall (a security group)",
          "jellyfin", inject_underlay_blocked),
    Fault("docker-host", "healthy look-alike: docker's FORWARD DROP, DOCKER-USER with explicit accepts",
          "jellyfin", inject_docker_host),
    Fault("firewalld-open", "healthy look-alike: firewalld's table with the cluster's ports open",
          "jellyfin", inject_firewalld_open),
    Fault("unrelated-reject", "healthy look-alike: rejects for traffic the cluster never sends", "jellyfin",
          inject_unrelated_reject),
    # faultlink: variants of the link / route / overlay / sysctl / kubeconfig classes (named only)
    Fault("flannel-neigh-missing", "a node's flannel.1 neighbour entry for a peer's subnet is gone: it "
          "cannot reach that peer's pods", "other", inject_flannel_neigh_missing),
    Fault("cni0-wrong-prefix", "cni0 carries its gateway with a wrong prefix length; flannel crash-loops",
          "jellyfin", inject_cni0_wrong_prefix),
    Fault("flannel-link-down", "flannel.1 set down: its routes and neighbour entries are gone", "other",
          inject_flannel_link_down),
    Fault("cni0-down", "cni0 set down: the node's pods are unreachable", "jellyfin", inject_cni0_down),
    Fault("route-blackhole", "a blackhole for half of a peer's podCIDR, more specific than flannel's "
          "route", "other", inject_route_blackhole),
    Fault("cni0-forwarding-off", "net.ipv4.conf.cni0.forwarding=0 with ip_forward=1", "jellyfin",
          inject_cni0_forwarding_off),
    Fault("vtep-recreated", "flannel.1 recreated with a new MAC, the node's annotation still the old one",
          "jellyfin", inject_vtep_recreated),
    Fault("cp-kubeconfig", "the control plane's /root/.kube/config points at a port nothing listens on",
          "other", inject_cp_kubeconfig),
    # faultnet: variants of the netfilter classes (named only)
    Fault("kube-proxy-jump-gone", "nat PREROUTING's jump to KUBE-SERVICES deleted while kube-proxy runs: "
          "the node's NodePorts are dead", "other", inject_kube_proxy_jump_gone),
    Fault("kube-proxy-nodeports-flushed", "kube-proxy's KUBE-NODEPORTS flushed while it runs: the node's "
          "NodePorts are dead", "other", inject_kube_proxy_nodeports_flushed),
    Fault("mangle-nodeport-drop", "the NodePort range dropped in mangle PREROUTING (before filter)", "other",
          inject_mangle_nodeport_drop),
    Fault("raw-vxlan-drop", "flannel's VXLAN dropped in iptables-legacy's raw PREROUTING", "jellyfin",
          inject_raw_vxlan_drop),
    Fault("forward-reject-chain", "FORWARD jumps to an admin chain rejecting traffic to the pods", "jellyfin",
          inject_forward_reject_chain),
)}
# Healthy look-alikes: nothing is broken, nothing may be reported or changed (not in --faults all).
LOOK_ALIKES = ("docker-host", "firewalld-open", "unrelated-reject")
# Not spread by `--faults all`: the look-alikes break nothing, and a node cut off from the VXLAN
# (or behind a closed firewall) would hide most other faults on it. Name them to inject them.
# IPv6-only faults: real on dual-stack labs only; `--faults all` adds them there (placement).
V6_ONLY = ("ipv6-forward-off", "br-netfilter-ip6-off")
DUAL_FAMILIES = ("dual", "dual-v6-first")
NOT_IN_ALL = (*LOOK_ALIKES, "vxlan-blocked", "input-drop", "firewalld", "underlay-blocked", *V6_ONLY)
# faultlink: its variants are injected by name only (tests/test_faultvar_link_lab.py)
FAULTLINK = ("flannel-neigh-missing", "cni0-wrong-prefix", "flannel-link-down", "cni0-down",
             "route-blackhole", "cni0-forwarding-off", "vtep-recreated", "cp-kubeconfig")
NOT_IN_ALL = (*NOT_IN_ALL, *FAULTLINK)
# faultnet: its variants are injected by name only (tests/test_faultvar_net_lab.py)
FAULTNET = ("kube-proxy-jump-gone", "kube-proxy-nodeports-flushed", "mangle-nodeport-drop",
            "raw-vxlan-drop", "forward-reject-chain")
NOT_IN_ALL = (*NOT_IN_ALL, *FAULTNET)
# conntrack: no catalog fault for a full conntrack table (CONNTRACK_TABLE_FULL), measured on this
# kernel (6.18): a lab node is a network namespace, where nf_conntrack_max is read-only (0444: the
# limit is global, written only from the initial namespace; `sysctl -w` there exits 0 and changes
# nothing), and nf_conntrack_count is the namespace's own. Shrinking the limit would change the
# host's (and every other lab's); filling 262144 entries in a namespace would take ~80 MB of the
# host's kernel memory and its shared hash table. The class is covered by unit tests on real
# output shapes (tests/test_conntrack.py) and, in a fresh namespace, tests/test_conntrack_netns.py
# (docs/lab-faults.md).

# -- which shapes each fault applies to ------------------------------------------------------------
# The lab's shapes (cluster.SHAPES): kubeadm (flannel DaemonSet + kube-proxy DaemonSet), k3s (flannel
# and kube-proxy embedded in the k3s binary: no pods for them), calico (calico-node, no bridge, no
# flannel; kube-proxy DaemonSet), kube-proxy-free (cilium-style, no kube-proxy, no bridge).
SHAPES = ("kubeadm", "k3s", "calico", "kube-proxy-free")
_HOST = frozenset(SHAPES)                                   # host-level: every node has them
_KUBE_PROXY = frozenset({"kubeadm", "k3s", "calico"})       # kube-proxy's KUBE-* rules exist
_KUBE_PROXY_POD = frozenset({"kubeadm", "calico"})          # ... and run as a restartable pod
_FLANNEL = frozenset({"kubeadm", "k3s"})                    # flannel.1, cni0, subnet.env
# A fault not listed here applies to the kubeadm shape only (what the catalog was built on): a new
# fault says where else it is real by adding itself here.
SHAPES_OF: dict[str, frozenset[str]] = {
    "iptables-shadow": _KUBE_PROXY,
    "iptables-foreign-rule": _KUBE_PROXY,
    "kube-proxy-crashloop": _KUBE_PROXY_POD,
    "forward-drop": _HOST,
    "ip-forward-off": _HOST,
    "firewall-reject": _HOST,
    "worker-kubeconfig": _HOST,
    "br-netfilter-off": _FLANNEL,   # needs pods on a Linux bridge (cni0); calico/cilium route veths
    "ipv6-forward-off": _HOST,      # (dual-stack labs only: V6_ONLY)
    "br-netfilter-ip6-off": _FLANNEL,
    "flannel-stale-vtep": _FLANNEL,
    "flannel-stale-subnet": _FLANNEL,
    "cni-bridge-conflict": _FLANNEL,
    # faultlink (cp-kubeconfig: kubeadm only, the k3s lab has no /root/.kube/config)
    **{name: _FLANNEL for name in FAULTLINK if name != "cp-kubeconfig"},
    # faultnet: kube-proxy's rules as a restartable pod (k3s: its embedded kube-proxy is restarted
    # with the k3s service, a note); the VXLAN drop needs flannel; the FORWARD reject names
    # flannel's pod network (kubeadm and k3s keep 10.244.0.0/16)
    "kube-proxy-jump-gone": _KUBE_PROXY_POD,
    "kube-proxy-nodeports-flushed": _KUBE_PROXY_POD,
    "mangle-nodeport-drop": _HOST,
    "raw-vxlan-drop": _FLANNEL,
    "forward-reject-chain": _FLANNEL,
}
WHY_NOT = {
    "kubeadm": "",
    "k3s": "k3s embeds flannel and kube-proxy in its own process (no kube-proxy pod to crash-loop)",
    "calico": "calico has no flannel.1, no cni0 bridge and no subnet.env",
    "kube-proxy-free": "a kube-proxy-free (cilium-style) cluster has no kube-proxy, no KUBE-* rules, no "
                       "flannel and no cni0 bridge",
}


# faultnet2: a foreign ACCEPT/RETURN ahead of kube-proxy's jump in nat PREROUTING (KUBE_PROXY_SHADOWED).
# kube-proxy keeps its jump (it checks it exists with -C and never moves it): the packets the rule
# matches are never DNATed on the node, and restarting kube-proxy changes nothing. Named only.

def _shadow_rule(handle: LabLike, node: str, name: str, rule: str, what: str) -> dict:
    backend = kube_proxy_backend(handle, node)
    _run(handle, node, f"iptables-{backend} -w 5 -t nat -I PREROUTING 1 " + shlex.join(shlex.split(rule)))
    res = _nodeport_from_peer(handle, node)
    return _record(name, node, res is not None and res[1] != 0, (
        f"`iptables-{backend} -t nat -I PREROUTING 1 {rule}` on {node}: {what} ahead of kube-proxy's "
        f"`-j KUBE-SERVICES`, so they are never DNATed there; kube-proxy keeps (and does not move) "
        f"its jump, a restart changes nothing. Measured: {_nodeport_measured(res, node)}. By hand: "
        f"`iptables-{backend} -t nat -D PREROUTING {rule}`"))


def inject_nat_nodeport_accept(handle: LabLike, node: str) -> dict:
    return _shadow_rule(handle, node, "nat-nodeport-accept", "-p tcp --dport 30000:32767 -j ACCEPT",
                        "the NodePort range (tcp) ACCEPTed in nat PREROUTING")


def inject_nat_source_return(handle: LabLike, node: str) -> dict:
    peer = next((x for x in _nodes(handle) if x["name"] != node), None)
    if peer is None:
        raise FaultError("nat-source-return needs a peer node")
    return _shadow_rule(handle, node, "nat-source-return", f"-s {peer['ip']}/32 -j RETURN",
                        f"everything from {peer['name']} ({peer['ip']}) RETURNed from nat PREROUTING "
                        "(the policy, ACCEPT)")


FAULTS.update({f.name: f for f in (
    Fault("nat-nodeport-accept", "the NodePort range ACCEPTed in nat PREROUTING ahead of kube-proxy's "
          "jump: the node's NodePorts are never DNATed", "other", inject_nat_nodeport_accept),
    Fault("nat-source-return", "a RETURN for a peer's address ahead of kube-proxy's jump in nat "
          "PREROUTING: that peer's Service traffic is never DNATed", "other", inject_nat_source_return),
)})
FAULTNET2 = ("nat-nodeport-accept", "nat-source-return")
NOT_IN_ALL = (*NOT_IN_ALL, *FAULTNET2)
SHAPES_OF.update({name: _KUBE_PROXY for name in FAULTNET2})  # kube-proxy's iptables rules exist
# end faultnet2

def lab_shape(handle: LabLike) -> str:
    return str(handle.info.get("shape") or "kubeadm")


def lab_family(handle: LabLike) -> str:
    return str(handle.info.get("ip_family") or "ipv4")


def all_for(shape: str, family: str = "ipv4") -> list[str]:
    """What `--faults all` injects on a lab of this shape and IP family."""
    extra = [f for f in V6_ONLY if family in DUAL_FAMILIES]
    return [f for f in applicable(shape) if f not in NOT_IN_ALL or f in extra]


def applies(name: str, shape: str) -> bool:
    return shape in SHAPES_OF.get(name, frozenset({"kubeadm"}))


def applicable(shape: str) -> list[str]:
    """The catalog's faults that are real on a lab of this shape, in spread order."""
    names = [f for f in SPREAD_ORDER if f in FAULTS] + [f for f in FAULTS if f not in SPREAD_ORDER]
    return [f for f in names if applies(f, shape)]


def check_applies(name: str, shape: str, family: str | None = None) -> None:
    """Refuse a fault that is not real on this lab (family None: not known yet, not checked)."""
    _fault(name)
    if family is not None and name in V6_ONLY and family not in DUAL_FAMILIES:
        raise FaultError(f"fault {name!r} needs a dual-stack lab (--ip-family dual or dual-v6-first), "
                         f"not {family}: an IPv4-only node carries no IPv6 pod traffic")
    if shape not in SHAPES:
        raise FaultError(f"unknown lab shape {shape!r} (shapes: {', '.join(SHAPES)})")
    if not applies(name, shape):
        where = ", ".join(s for s in SHAPES if applies(name, s))
        raise FaultError(f"fault {name!r} does not apply to a {shape} lab (it applies to: {where}; "
                         f"{WHY_NOT.get(shape, '')}); faults for {shape}: {', '.join(applicable(shape))}")


# Order used by spread_all: iptables faults first (they read kube-proxy's live rules, which the
# flannel faults can make kube-proxy rewrite), kube-proxy-crashloop after the foreign rule.
SPREAD_ORDER = [
    "iptables-foreign-rule", "iptables-shadow", "kube-proxy-crashloop", "forward-drop", "ip-forward-off",
    "firewall-reject", "br-netfilter-off", "ipv6-forward-off", "br-netfilter-ip6-off", "flannel-stale-vtep",
    "flannel-stale-subnet", "cni-bridge-conflict", "worker-kubeconfig",
]
# Faults that must not share a node (the second would erase or hide the first's state).
APART = {frozenset({"iptables-foreign-rule", "kube-proxy-crashloop"})}


def _candidates(handle: LabLike, fault: Fault) -> list[str]:
    names = [n["name"] for n in _nodes(handle)]
    if not names:
        raise FaultError("the lab has no nodes")
    jf = jellyfin_node(handle)
    others = [x for x in names if x != jf] or names
    if fault.prefers == "jellyfin":
        return [jf]
    if fault.prefers == "worker":
        roles = {n["name"]: n.get("role", "worker") for n in _nodes(handle)}
        workers = [x for x in others if roles.get(x) != "control-plane"]
        return workers or [x for x in names if roles.get(x) != "control-plane"] or names
    return others


def preferred_node(handle: LabLike, name: str) -> str:
    fault = _fault(name)
    cands = _candidates(handle, fault)
    # a single fault of the "other" kind goes to the last non-jellyfin node: a worker when possible
    return cands[-1] if fault.prefers == "other" else cands[0]


def _fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise FaultError(f"unknown fault {name!r}; the catalog: {', '.join(FAULTS)}") from None


def placement(handle: LabLike, names: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """[(fault, node)] for `--faults all` (or a list of names): each fault where it breaks something
    visible, the least loaded candidate node first, faults in APART kept on different nodes."""
    shape = lab_shape(handle)
    wanted = list(names) if names is not None else all_for(shape, lab_family(handle))
    for name in wanted:
        check_applies(name, shape)
    order = [f for f in SPREAD_ORDER if f in wanted] + [f for f in wanted if f not in SPREAD_ORDER]
    load: dict[str, list[str]] = {n["name"]: [] for n in _nodes(handle)}
    out = []
    for name in order:
        cands = _candidates(handle, _fault(name))
        ok = [c for c in cands if not any(frozenset({name, f}) in APART for f in load.get(c, []))] or cands
        node = min(ok, key=lambda c: (len(load.get(c, [])), ok.index(c)))
        load.setdefault(node, []).append(name)
        out.append((name, node))
    return out


def inject(handle: LabLike, name: str, node: str | None = None) -> dict | list[dict]:
    """Inject one fault (on `node`, or where it shows best). "all" spreads the whole catalog,
    "a,b,c" spreads those faults like "all" does (returns a list of records)."""
    if name == "all":
        return spread_all(handle)
    if "," in name:
        names = [x.strip() for x in name.split(",") if x.strip()]
        for x in names:
            check_applies(x, lab_shape(handle))
        if node is not None:
            return [FAULTS[x].inject(handle, node) for x in names]
        return spread_all(handle, names)
    fault = _fault(name)
    check_applies(name, lab_shape(handle))
    target = node or preferred_node(handle, name)
    _node(handle, target)
    return fault.inject(handle, target)


def spread_all(handle: LabLike, names: Iterable[str] | None = None) -> list[dict]:
    """Every fault of the catalog (or `names`), spread over the nodes (see placement); the records
    say where each went, what it breaks and which other fault on the same node hides part of it."""
    plan = placement(handle, names)
    by_node: dict[str, list[str]] = {}
    for name, node in plan:
        by_node.setdefault(node, []).append(name)
    records = []
    for name, node in plan:
        rec = FAULTS[name].inject(handle, node)
        mates = [f for f in by_node[node] if f != name]
        if mates:
            rec["detail"] += (f" [--faults all: shares {node} with {', '.join(mates)}; while those are present "
                              "part of this breakage can be hidden behind theirs]")
        records.append(rec)
    return records


def plan(names: list[Any], node_names: list[str], shape: str = "kubeadm",
         family: str | None = None) -> list[tuple[str, str | None]]:
    """For cluster.up: [(fault, node|None)]. "all" stays one item (inject spreads it over the faults
    that apply to the lab's shape, knowing where jellyfin runs); "name:node" pins a node; the bare
    names become one "a,b" item that inject spreads like "all". A named fault that does not apply to
    `shape` is refused (FaultError) before anything is built."""
    out: list[tuple[str, str | None]] = []
    bare: list[str] = []
    for item in names:
        if isinstance(item, (tuple, list)):
            out.append((str(item[0]), item[1]))
        elif str(item) == "all":
            out.append(("all", None))
        elif ":" in str(item):
            f, n = str(item).split(":", 1)
            check_applies(f, shape, family)
            if node_names and n not in node_names:
                raise FaultError(f"no node {n!r} in the lab (nodes: {', '.join(node_names)})")
            out.append((f, n))
        else:
            check_applies(str(item), shape, family)
            bare.append(str(item))
    if bare:
        out.insert(0, (",".join(bare), None))
    return out


# dns -------------------------------------------------------------------------------------------
# Cluster DNS faults, at the API level: the lab's DNS add-on is API objects only (lab/dns_addon.py:
# Deployment kube-system/coredns, its pods, Service kube-system/kube-dns with its Endpoints and
# EndpointSlice); no CoreDNS process answers queries in the lab, so these faults change what the
# API says (physical False), as the Deployment and endpoints controllers would show it.

def _dns_state(handle: LabLike, state: str) -> Any:
    request = getattr(handle, "request", None)
    if request is None:
        raise FaultError("the DNS faults need the lab daemon (LabHandle.request)")
    return request("dns-state", state=state)


def inject_dns_crashloop(handle: LabLike, node: str) -> dict:
    got = _dns_state(handle, "crashloop") or {}
    pods = ", ".join(got.get("pods") or []) or "(none)"
    return _record("dns-crashloop", node, False, (
        f"every CoreDNS pod of Deployment kube-system/coredns ({pods}) held in CrashLoopBackOff "
        "(6 restarts, last exit 1 with CoreDNS's plugin/loop FATAL line in its log), not Ready: "
        "Service kube-system/kube-dns has no ready endpoint (Endpoints notReadyAddresses, "
        "EndpointSlice conditions.ready false). API-level: the lab runs no CoreDNS, so no lookup "
        "is really made; the pod states are the lab controller's. By hand: kubectl -n kube-system "
        "delete pod <each coredns pod> (the Deployment recreates them, Running)"))


def inject_dns_scaled_to_zero(handle: LabLike, node: str) -> dict:
    got = _dns_state(handle, "scaled-to-zero") or {}
    return _record("dns-scaled-to-zero", node, False, (
        "Deployment kube-system/coredns scaled to 0 replicas and its pods "
        f"({', '.join(got.get('deleted') or []) or 'none'}) gone: Service kube-system/kube-dns has "
        "no endpoint at all. API-level (no CoreDNS runs in the lab). By hand: kubectl -n "
        "kube-system scale deployment coredns --replicas=2"))


DNS_FAULTS = ("dns-crashloop", "dns-scaled-to-zero")
FAULTS.update({f.name: f for f in (
    Fault("dns-crashloop", "every CoreDNS pod in CrashLoopBackOff: kube-dns has no ready endpoint "
          "(API-level)", "other", inject_dns_crashloop),
    Fault("dns-scaled-to-zero", "the coredns Deployment scaled to 0: kube-dns has no endpoint "
          "(API-level)", "other", inject_dns_scaled_to_zero),
)})
SHAPES_OF.update({name: _HOST for name in DNS_FAULTS})  # every lab shape seeds the DNS add-on
NOT_IN_ALL = (*NOT_IN_ALL, *DNS_FAULTS)  # named only (tests/test_dns_lab.py)
