"""The lab daemon: builds the nodes, hosts the lab API and runs the controller until `lab down`.

Started detached by cluster.up() as `python -m clusterfix_tui.lab.daemon --dir D`. It is the only
writer of D/lab.json. Every namespace, link and process is written into lab.json *before* it is
created, so `lab down` can remove exactly what exists even if the daemon died half-way.

The controller is one thread working through a queue: API hooks (pod deleted, DaemonSet rollout
restart, Deployment patched) and control-socket requests are queued; every ~2 s it reconciles
(kubelet's readiness probes, crash-loop back-offs, node readiness, pod status, lab.json).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterfix_tui.lab import agents as A
from clusterfix_tui.lab import nodes as N
from clusterfix_tui.lab import shapes as S

log = logging.getLogger("clusterfix_tui.lab.daemon")

KUBE_VERSION = "v1.32.0"
FLANNEL_IMAGE = "docker.io/flannel/flannel:v0.26.1"
KUBE_PROXY_IMAGE = f"registry.k8s.io/kube-proxy:{KUBE_VERSION}"
ECHO_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
JELLYFIN_IMAGE = "docker.io/jellyfin/jellyfin:10.10.3"
NODEPORT = 30096
JELLYFIN_PORT = 8096
ECHO_PORT = 8080
CLUSTER_IP = "10.96.96.96"
CLUSTER_IP6 = "fd00:10:96::96"  # dual-stack labs: the Service's IPv6 ClusterIP (ULA)
TICK = 2.0
ECHO_LABEL = "clusterfix-lab/net-echo"
ECHO_ALL_MAX = 10
BACKOFF_START = 10.0
BACKOFF_MAX = 300.0

FLANNEL = ("kube-flannel", "kube-flannel-ds", "kube-flannel")  # namespace, DaemonSet, container
KUBE_PROXY = ("kube-system", "kube-proxy", "kube-proxy")
ECHO = ("default", "net-echo", "net-echo")
JELLYFIN = ("media", "jellyfin", "jellyfin")
CALICO = ("kube-system", "calico-node", "calico-node")
CILIUM = ("kube-system", "cilium", "cilium-agent")
AGENT_OF = {"kube-flannel-ds": "flannel", "kube-proxy": "kube-proxy", "calico-node": "calico", "cilium": "cilium"}
APP_OF = {v: k for k, v in AGENT_OF.items()}
KINDS = {k[1]: k for k in (FLANNEL, KUBE_PROXY, ECHO, JELLYFIN, CALICO, CILIUM)}
IMAGES = {FLANNEL: FLANNEL_IMAGE, KUBE_PROXY: KUBE_PROXY_IMAGE, ECHO: ECHO_IMAGE, JELLYFIN: JELLYFIN_IMAGE,
          CALICO: S.CALICO_IMAGE, CILIUM: S.CILIUM_IMAGE}
POD_LABELS = {"kube-flannel-ds": {"app": "flannel", "k8s-app": "flannel", "tier": "node"},
              "kube-proxy": {"k8s-app": "kube-proxy"}, "net-echo": {"app": "net-echo"},
              "jellyfin": {"app": "jellyfin"}, "calico-node": {"k8s-app": "calico-node"},
              "cilium": {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent",
                         "app.kubernetes.io/part-of": "cilium"}}


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        os.fchmod(fh.fileno(), mode)
        json.dump(data, fh, indent=1)
        fh.write("\n")
    tmp.replace(path)


@dataclass
class Pod:
    """The controller's record of one pod; the API object is rendered from it."""

    namespace: str
    name: str
    app: str  # DaemonSet / Deployment name
    node: str
    container: str
    image: str
    host_network: bool
    ip: str = ""
    netns: str = ""
    veth: str = ""
    pid: int | None = None
    port: int | None = None
    created: str = field(default_factory=now_iso)
    started: str = ""
    restart_count: int = 0
    running: bool = False  # container running (not waiting in CrashLoopBackOff)
    ready: bool = False
    ever_ready: bool = False
    last_error: str = ""
    last_exit: dict = field(default_factory=dict)
    backoff: float = BACKOFF_START
    next_retry: float = 0.0
    probe_error: str = ""
    probe: dict | None = None
    template_hash: str = ""
    sandbox_error: str = ""
    proc: Any = None  # subprocess.Popen of the pod server
    embedded: bool = False  # k3s: flannel/kube-proxy run inside k3s, no pod in the API

    ip6: str = ""

    def to_info(self) -> dict:
        d = {"namespace": self.namespace, "name": self.name, "app": self.app, "ip": self.ip,
             "netns": self.netns or None, "pid": self.pid, "port": self.port}
        if self.ip6:
            d["ip6"] = self.ip6
        return d


class Lab:
    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir
        self.spec = json.loads((lab_dir / ".lab-spec.json").read_text())
        self.labid: str = self.spec["lab_id"]
        self.n_nodes: int = int(self.spec["nodes"])
        self.shape: str = str(self.spec.get("shape") or "kubeadm")
        self.ip_family: str = str(self.spec.get("ip_family") or "ipv4")
        self.dual = self.ip_family in ("dual", "dual-v6-first")
        self.v6_first = self.ip_family == "dual-v6-first"
        self.state_dir = Path(self.spec["state_dir"])
        # `lab up --ssh-user NAME` / `--bastion` (docs/lab-shapes.md "Access"); default: root, direct
        self.ssh_user: str | None = self.spec.get("ssh_user") or None
        self.with_bastion = bool(self.spec.get("bastion"))
        # `lab up --host-ca CA_KEY`: every node's host key certified by that CA (not the bastion's)
        self.host_ca: str | None = self.spec.get("host_ca") or None
        self.info: dict[str, Any] = {}
        self.api: Any = None
        self.admin_token = secrets.token_urlsafe(24)
        self.node_tokens: dict[str, str] = {}
        self.procs: dict[int, Any] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.agent_state: dict[tuple[str, str], dict] = {}
        self.ctx: dict[str, A.NodeCtx] = {}
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.pod_seq = 0
        self.next_ip: dict[str, int] = {}
        self.endpoints: list[str] = []
        self.lock = threading.RLock()
        self.dirty = False
        self.jellyfin_template = ""

    # -- lab.json --------------------------------------------------------------------------------
    def save(self) -> None:
        with self.lock:
            for n in self.info.get("nodes", []):
                n["pods"] = [p.to_info() for p in self.pods.values() if p.node == n["name"] and p.netns]
                n["system_pods"] = {AGENT_OF[p.app]: f"{p.namespace}/{p.name}" for p in self.pods.values()
                                    if p.node == n["name"] and p.app in AGENT_OF and not p.embedded}
            self.info["agent_state"] = {f"{k[0]}/{k[1]}": v for k, v in self.agent_state.items()}
            write_json(self.dir / "lab.json", self.info)
            self.dirty = False

    # -- bring-up --------------------------------------------------------------------------------
    def build(self) -> None:
        t0 = time.monotonic()
        labid = self.labid
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.info = {
            "version": 1, "lab_id": labid, "dir": str(self.dir), "state": "starting",
            "daemon_pid": os.getpid(), "state_dir": str(self.state_dir),
            "shape": self.shape, "ip_family": self.ip_family,
            "created_dir": bool(self.spec.get("created_dir")), "created": now_iso(),
            "flannel_network": A.FLANNEL_NETWORK, "nodeport": NODEPORT,
            "bridge": None, "api": None, "nodes": [], "pod_netns": [], "faults": [],
            "files": ["lab.json", "kubeconfig", "ssh_config", "known_hosts", "id_ed25519", "id_ed25519.pub",
                      "daemon.log", "control.sock", ".lab-spec.json"],
        }
        self.save()
        bridge = f"cfx{labid}"
        with N.subnet_lock():
            log.info("subnet lock taken at %.2fs", time.monotonic() - t0)
            t1 = time.monotonic()
            used = N.used_bridge_subnets()
            log.info("used subnets scanned in %.2fs", time.monotonic() - t1)
            k = N.pick_bridge_subnet(used)
            log.info("subnet 10.213.%d.0/24 picked at %.2fs", k, time.monotonic() - t0)
            self.info["bridge"] = {"name": bridge, "cidr": f"10.213.{k}.0/24", "address": f"10.213.{k}.1"}
            self.save()
            N.create_bridge(bridge, f"10.213.{k}.1")
            if self.dual:
                self.info["bridge"]["address6"] = f"fd00:213:{k}::1"
                N.ip_batch(None, [f"addr add fd00:213:{k}::1/64 dev {bridge} nodad"])
        br_ip = f"10.213.{k}.1"
        log.info("bridge %s at %.2fs", bridge, time.monotonic() - t0)

        # nodes: names first (recorded), then the API (it needs tokens per node)
        node_infos: list[dict[str, Any]] = []
        for i in range(1, self.n_nodes + 1):
            name = f"node-{i}"
            self.node_tokens[name] = secrets.token_urlsafe(24)
            node_infos.append({
                "name": name, "index": i, "netns": f"cfx-{labid}-node-{i}", "veth": f"cfx{labid}n{i}",
                "ip": f"10.213.{k}.{10 + i}", "pod_cidr": S.pod_cidr(self.shape, i),
                "pod_block": S.pod_block(self.shape, i),
                **(self._dual_fields(k, i) if self.dual else {}),
                "role": "control-plane" if i == 1 else "worker",
                "node_dir": str(self.state_dir / name), "init_pid": None, "sshd_pid": None,
                "vtep_mac": None, "pods": [],
            })
        self.info["nodes"] = node_infos
        self.save()

        from clusterfix_tui.lab.api import LabAPI

        self.api = LabAPI(host=br_ip, port=0, tokens=[self.admin_token, *self.node_tokens.values()],
                          tls=bool(self.spec.get("tls")), state_dir=str(self.state_dir / "api"))
        self.api.on_pod_deleted = lambda ns, name, pod: self.submit(self._hook_pod_deleted, ns, name, pod)
        self.api.on_daemonset_restarted = lambda ns, name: self.submit(self._hook_ds_restarted, ns, name)
        self.api.on_deployment_patched = lambda ns, name, obj: self.submit(self._hook_deploy_patched, ns, name, obj)
        self.api.start()
        self.info["api"] = {"url": self.api.url, "tls": bool(self.spec.get("tls"))}
        self.save()
        self.api.write_kubeconfig(self.dir / "kubeconfig", self.admin_token)
        log.info("API %s at %.2fs", self.api.url, time.monotonic() - t0)

        # client key, node dirs (host keys, sshd_config, kubeconfigs)
        pub = N.keygen(self.dir / "id_ed25519", f"clusterfix-lab-{labid}")
        os.chmod(self.dir / "id_ed25519", 0o600)
        authorized = self.state_dir / "authorized_keys"
        authorized.write_text(pub + "\n")
        os.chmod(authorized, 0o600)
        known = []
        bastion: dict[str, Any] | None = None
        if self.with_bastion:
            bastion = {"name": "bastion", "netns": f"cfx-{labid}-bastion", "veth": f"cfx{labid}b",
                       "ip": f"10.213.{k}.250", "node_dir": str(self.state_dir / "bastion"),
                       "user": self.ssh_user or "jump", "init_pid": None, "sshd_pid": None}
            self.info["bastion"] = bastion
            self.save()
            b_pub = N.prepare_node_dir(Path(bastion["node_dir"]), name="bastion", labid=labid,
                                       ip=bastion["ip"], authorized_keys=f"{N.USER_KEYS_DIR}/%u",
                                       ssh_user=bastion["user"])
            known.append(f"bastion,{bastion['ip']} {' '.join(b_pub.split()[:2])}")
        if self.ssh_user:
            self.info["ssh_user"] = self.ssh_user
        if self.host_ca:
            self.info["host_ca"] = self.host_ca

        def prep(n: dict) -> str:
            nd = Path(n["node_dir"])
            host_pub = N.prepare_node_dir(
                nd, name=n["name"], labid=labid, ip=n["ip"],
                authorized_keys=f"{N.USER_KEYS_DIR}/%u" if self.ssh_user else authorized,
                ssh_user=self.ssh_user, allow_from=bastion["ip"] if bastion else None,
                host_ca=self.host_ca)
            token = self.admin_token if n["role"] == "control-plane" else self.node_tokens[n["name"]]
            self.api.write_kubeconfig(nd / "files" / "kubelet.conf", self.node_tokens[n["name"]],
                                      user=f"system:node:{n['name']}", context=f"system:node:{n['name']}@kubernetes")
            self.api.write_kubeconfig(nd / "root" / ".kube" / "config", token)
            if n["role"] == "control-plane":
                self.api.write_kubeconfig(nd / "files" / "admin.conf", self.admin_token,
                                          user="kubernetes-admin", context="kubernetes-admin@kubernetes")
            if self.shape == "kubeadm":
                (nd / "files" / "10-flannel.conflist").write_text(CONFLIST)
            else:
                self._shape_files(n, nd)
            return host_pub

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            pubs = list(pool.map(prep, node_infos))
        for n, host_pub in zip(node_infos, pubs, strict=True):
            known.append(f"{n['name']},{n['ip']} {' '.join(host_pub.split()[:2])}")
        (self.dir / "known_hosts").write_text("\n".join(known) + "\n")
        ssh_lines = [f"# clusterfix-tui lab {labid}: ssh -F {self.dir / 'ssh_config'} node-1\n"]
        hosts = [(n["name"], n["ip"], self.ssh_user or "root", "bastion" if bastion else None)
                 for n in node_infos]
        if bastion:
            hosts.insert(0, ("bastion", bastion["ip"], bastion["user"], None))
        for name, ip, user, jump in hosts:
            ssh_lines.append(
                f"Host {name}\n  HostName {ip}\n  User {user}\n  IdentityFile {self.dir / 'id_ed25519'}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.dir / 'known_hosts'}\n"
                f"  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
                + (f"  ProxyJump {jump}\n" if jump else "") + "\n")
        (self.dir / "ssh_config").write_text("".join(ssh_lines))
        log.info("node files ready at %.2fs", time.monotonic() - t0)

        # namespaces and veths
        for n in node_infos:
            N.add_netns(n["netns"])
        lines = []
        for n in node_infos:
            lines += [f"link add {n['veth']} type veth peer name eth0 netns {n['netns']}",
                      f"link set {n['veth']} master {bridge}", f"link set {n['veth']} up"]
        N.ip_batch(None, lines)
        for n in node_infos:
            N.ip_batch(n["netns"], ["link set lo up", f"addr add {n['ip']}/24 dev eth0", "link set eth0 up"]
                       + ([f"addr add {n['ip6']}/64 dev eth0 nodad"] if self.dual else []))
        if bastion:
            N.add_netns(bastion["netns"])
            N.ip_batch(None, [f"link add {bastion['veth']} type veth peer name eth0 netns {bastion['netns']}",
                              f"link set {bastion['veth']} master {bridge}", f"link set {bastion['veth']} up"])
            N.ip_batch(bastion["netns"], ["link set lo up", f"addr add {bastion['ip']}/24 dev eth0",
                                          "link set eth0 up"])

        log.info("namespaces and veths at %.2fs", time.monotonic() - t0)
        # anchors, then sshd inside each node
        anchors = {}
        for n in node_infos:
            p = N.start_anchor(n["netns"], n["name"], Path(n["node_dir"]))
            self.procs[p.pid] = p
            n["init_pid"] = p.pid
            anchors[n["name"]] = p
        self.save()
        for n in node_infos:
            N.wait_anchor(anchors[n["name"]], Path(n["node_dir"]), timeout=30 + self.n_nodes)
            self.ctx[n["name"]] = A.NodeCtx(name=n["name"], index=n["index"], netns=n["netns"], ip=n["ip"],
                                            pod_cidr=n["pod_cidr"], init_pid=n["init_pid"],
                                            node_dir=Path(n["node_dir"]), pod_block=n["pod_block"],
                                            cluster_cidr=S.cluster_cidr(self.shape), shape=self.shape,
                                            ip6=n.get("ip6", ""), pod_cidr6=n.get("pod_cidr6", ""),
                                            cluster_cidr6=S.cluster_cidr6(self.shape) if self.dual else "",
                                            pod_block6=n.get("pod_block6", ""))
            self.next_ip[n["name"]] = S.first_pod_host(self.shape)
        log.info("anchors ready at %.2fs", time.monotonic() - t0)
        if self.dual:  # what a dual-stack node has: IPv6 forwarding, and kubelet's ip6tables hint chains
            for n in node_infos:
                N.node_exec(n["init_pid"], "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding; "
                            "ip6tables -w 5 -t mangle -N KUBE-IPTABLES-HINT 2>/dev/null; "
                            "ip6tables -w 5 -t mangle -N KUBE-KUBELET-CANARY 2>/dev/null; true")
        if self.ssh_user or bastion:
            self._login_users(node_infos, bastion, pub)
        for n in node_infos + ([bastion] if bastion else []):
            self._start_sshd(n)
        self.save()
        for n in node_infos + ([bastion] if bastion else []):
            N.wait_tcp(n["ip"], 22, timeout=15, proc=self.procs.get(n["sshd_pid"]))
        log.info("nodes up in %.2fs", time.monotonic() - t0)

        # API objects: namespaces, nodes, workloads
        self._seed_objects()

        if self.shape in ("calico", "kube-proxy-free"):
            self._build_routed(t0)
            return
        # flannel on every node: local side first (VTEP MACs), then the mesh in one go
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = dict(zip(self.ctx, pool.map(lambda c: A.flannel_start(c, None), self.ctx.values()),
                               strict=True))
        for name, res in results.items():
            if not res.ok:
                raise RuntimeError(f"flannel on {name} failed at bring-up: {res.error}")
            self._annotate_vtep(name, res.data["vtep_mac"], res.data.get("vtep_mac6", ""))
        node_objs = self.api.list("v1/nodes")

        def mesh(c: A.NodeCtx) -> None:
            A.program_peers(c, A.peers_from_nodes(node_objs, c.name))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(mesh, self.ctx.values()))
        for name, res in results.items():
            pod = self._new_pod(FLANNEL, name, host_network=True)
            self._set_running(pod, res.log)
        log.info("flannel up in %.2fs", time.monotonic() - t0)

        self._start_app_pods()
        log.info("pods up at %.2fs", time.monotonic() - t0)

        # kube-proxy on every node
        self._start_kube_proxies()
        self._finish(t0)

    def _build_routed(self, t0: float) -> None:
        """calico / kube-proxy-free: the CNI agent's routes and chains first, then the pods (routed
        veths), then the agent's sync with the workloads (felix) or the services (cilium), and
        kube-proxy where the shape has one."""
        kind = CALICO if self.shape == "calico" else CILIUM
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = dict(zip(self.ctx, pool.map(self._network_agent, self.ctx.values()),
                               strict=True))
        for name, res in results.items():
            if not res.ok:
                raise RuntimeError(f"{kind[1]} on {name} failed at bring-up: {res.error}")
            self._set_running(self._new_pod(kind, name, host_network=True), res.log)
        log.info("%s up in %.2fs", kind[1], time.monotonic() - t0)
        self._start_app_pods()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(self._network_agent, self.ctx.values()))
        log.info("pods up at %.2fs", time.monotonic() - t0)
        if self.shape == "calico":
            self._start_kube_proxies()
        self._finish(t0)

    def _routed_peers(self, me: str) -> list[tuple[str, str]]:
        """(node IP, pod block) of the other nodes: what BIRD learns over BGP (calico) or cilium
        reads from the Node objects (auto-direct-node-routes)."""
        return [(n["ip"], n["pod_block"]) for n in self.info["nodes"] if n["name"] != me]

    def _workloads(self, node: str) -> list[S.Workload]:
        return [S.Workload(p.namespace, p.name, p.ip, p.veth) for p in self.pods.values()
                if p.node == node and p.netns and p.veth and p.ip]

    def _network_agent(self, ctx: A.NodeCtx) -> A.AgentResult:
        """One start/sync of the node's calico-node or cilium agent."""
        peers6 = [(n["ip6"], n["pod_block6"]) for n in self.info["nodes"] if n["name"] != ctx.name and n.get("ip6")]
        if self.shape == "calico":
            return S.calico_start(ctx, ctx.pod_block, self._routed_peers(ctx.name), self._workloads(ctx.name),
                                  block6=ctx.pod_block6, peers6=peers6)
        return S.cilium_start(ctx, self._routed_peers(ctx.name), self._services(), peers6=peers6,
                              services6=self._services6())

    def _network_sync(self, node: str) -> None:
        """felix reprograms its endpoint chains when a local workload comes or goes; cilium
        resyncs. A crash-looping agent does not."""
        if self.shape not in ("calico", "kube-proxy-free"):
            return
        app = CALICO[1] if self.shape == "calico" else CILIUM[1]
        agent = next((p for p in self.pods.values() if p.node == node and p.app == app), None)
        if agent is None or not agent.running:
            return
        res = self._network_agent(self.ctx[node])
        if not res.ok:
            self._crash(agent, res.log, res.error)

    def _shape_files(self, n: dict, nd: Path) -> None:
        """files/tree/...: the shape's own files, copied into the node's overlays by node_init."""
        kubelet = (nd / "files" / "kubelet.conf").read_text()
        admin = (nd / "files" / "admin.conf").read_text() if n["role"] == "control-plane" else None
        tree = S.node_tree(self.shape, n["name"], kubelet, admin)
        if self.shape == "k3s" and self.dual:
            tree[S.K3S_FLANNEL_CONF] = (S.K3S_NET_CONF.replace('"EnableIPv6": false', '"EnableIPv6": true').replace(
                '"IPv6Network": "::/0"', f'"IPv6Network": "{A.FLANNEL_IPV6_NETWORK}"'), 0o600)
        for path, (text, mode) in tree.items():
            f = nd / "files" / "tree" / path.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text)
            os.chmod(f, mode)
        if self.shape == "k3s":
            # k3s has no /etc/kubernetes: its kubeconfigs live under /etc/rancher and /var/lib/rancher
            for name in ("kubelet.conf", "admin.conf"):
                (nd / "files" / name).unlink(missing_ok=True)
            for sub in ("varlib-upper", "varlib-work"):
                (nd / sub).mkdir(parents=True, exist_ok=True)
            # the node's systemctl (k3s / k3s-agent): node_init overlays it on /usr/local/sbin,
            # inside the node's mount namespace only
            (nd / "sbin-work").mkdir(parents=True, exist_ok=True)
            (nd / "sbin-upper").mkdir(parents=True, exist_ok=True)
            stub = nd / "sbin-upper" / "systemctl"
            stub.write_text(S.systemctl_stub(S.node_python(), n["name"], S.k3s_unit(n["role"]),
                                             str(self.dir / "control.sock")))
            os.chmod(stub, 0o755)

    def _start_app_pods(self) -> None:
        """Pods with their own namespaces: net-echo everywhere, jellyfin on the first worker."""
        for name in self.echo_nodes():
            self._start_netns_pod(self._new_pod(ECHO, name, host_network=False, port=ECHO_PORT))
        jf_node = "node-2" if self.n_nodes >= 2 else "node-1"
        jf = self._new_pod(JELLYFIN, jf_node, host_network=False, port=JELLYFIN_PORT)
        jf.probe = JELLYFIN_PROBE
        self._start_netns_pod(jf)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self._probe(jf)
            if jf.ready:
                break
            time.sleep(0.05)
        self._update_endpoints(resync=False)

    def _start_kube_proxies(self) -> None:
        services = self._services()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            kp = dict(zip(self.ctx, pool.map(lambda c: A.kube_proxy_sync(c, services, first=True,
                                                                         services6=self._services6()),
                                              self.ctx.values()), strict=True))
        for name, res in kp.items():
            pod = self._new_pod(KUBE_PROXY, name, host_network=True)
            if res.ok:
                self._set_running(pod, res.log)
            else:
                self._crash(pod, res.log, res.error)

    def _finish(self, t0: float) -> None:
        for each in self.pods.values():
            self._render(each)
        self._update_workload_status()
        self.info["state"] = "ready"
        self.info["ready_seconds"] = round(time.monotonic() - t0, 2)
        self.save()
        log.info("lab %s (%s) ready in %.2fs", self.labid, self.shape, time.monotonic() - t0)

    def echo_nodes(self) -> list[str]:
        """Nodes that run a net-echo pod: all of them up to ECHO_ALL_MAX nodes; in bigger labs the
        control plane, the jellyfin node and the last node (each pod is a namespace the kernel must
        build and tear down: 30 more namespaces cost seconds)."""
        names = [f"node-{i}" for i in range(1, self.n_nodes + 1)]
        if self.n_nodes <= ECHO_ALL_MAX:
            return names
        return [names[0], names[1], names[-1]]

    def _login_users(self, nodes: list[dict], bastion: dict | None, pub: str) -> None:
        """--ssh-user: the user on every node, with NOPASSWD sudo. --bastion: the jump host (its
        own mount/UTS namespaces like a node) and its user, without sudo."""
        if self.ssh_user:
            for n in nodes:
                N.add_login_user(n["init_pid"], self.ssh_user, pub, sudo=True)
        if bastion:
            p = N.start_anchor(bastion["netns"], "bastion", Path(bastion["node_dir"]))
            self.procs[p.pid] = p
            bastion["init_pid"] = p.pid
            self.save()
            N.wait_anchor(p, Path(bastion["node_dir"]), timeout=30)
            N.add_login_user(bastion["init_pid"], bastion["user"], pub, sudo=False)

    def _start_sshd(self, n: dict) -> None:
        p = N.start_sshd(n["init_pid"], Path(n["node_dir"]))
        self.procs[p.pid] = p
        n["sshd_pid"] = p.pid

    # -- API objects -----------------------------------------------------------------------------
    def _seed_objects(self) -> None:
        api = self.api
        namespaces = ["default", "kube-system", "media", "kube-public", "kube-node-lease"]
        if self.shape == "kubeadm":
            namespaces.insert(2, "kube-flannel")
        for ns in namespaces:
            with contextlib.suppress(Exception):
                api.put("v1/namespaces", None, ns, {"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                                                    "status": {"phase": "Active"}})
        kernel = os.uname().release
        for n in self.info["nodes"]:
            labels = {"kubernetes.io/hostname": n["name"], "kubernetes.io/os": "linux",
                      "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                      "beta.kubernetes.io/arch": "amd64"}
            if n["name"] in self.echo_nodes():
                labels[ECHO_LABEL] = "true"
            spec: dict[str, Any] = {"podCIDR": n["pod_cidr"], "podCIDRs": [n["pod_cidr"]]}
            if self.dual:
                spec = {"podCIDR": n["pod_cidrs"][0], "podCIDRs": list(n["pod_cidrs"])}
            if n["role"] == "control-plane":
                labels["node-role.kubernetes.io/control-plane"] = ""
                labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
                spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
            annotations = {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
            node_info = {"kubeletVersion": KUBE_VERSION, "kubeProxyVersion": KUBE_VERSION,
                         "containerRuntimeVersion": "containerd://1.7.24"}
            self._shape_node_meta(n, labels, annotations, spec, node_info)
            api.put("v1/nodes", None, n["name"], {
                "metadata": {"name": n["name"], "labels": labels, "annotations": annotations},
                "spec": spec,
                "status": {
                    "addresses": [{"type": "InternalIP", "address": a} for a in n.get("ips") or [n["ip"]]]
                    + [{"type": "Hostname", "address": n["name"]}],
                    "conditions": _node_conditions(True),
                    "capacity": {"cpu": "2", "memory": "4015668Ki", "pods": "110", "ephemeral-storage": "30787492Ki"},
                    "allocatable": {"cpu": "2", "memory": "3913268Ki", "pods": "110", "ephemeral-storage": "28373752335"},
                    "nodeInfo": {"kubeletVersion": node_info["kubeletVersion"],
                                 "kubeProxyVersion": node_info["kubeProxyVersion"],
                                 "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": kernel,
                                 "containerRuntimeVersion": node_info["containerRuntimeVersion"],
                                 "architecture": "amd64",
                                 "operatingSystem": "linux", "machineID": secrets.token_hex(16),
                                 "systemUUID": secrets.token_hex(16), "bootID": secrets.token_hex(16)},
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                }})
        if self.shape in ("kubeadm", "calico"):
            api.put("v1/configmaps", "kube-system", "kube-proxy", {
                "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"app": "kube-proxy"}},
                "data": {"config.conf": KUBE_PROXY_CONF.replace(
                    A.FLANNEL_NETWORK, S.cluster_cidr(self.shape) + (f",{S.cluster_cidr6(self.shape)}" if self.dual else "")),
                         "kubeconfig.conf": KUBE_PROXY_KUBECONFIG}})
        if self.shape == "kubeadm":
            api.put("v1/configmaps", "kube-flannel", "kube-flannel-cfg", {
                "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel",
                             "labels": {"app": "flannel", "k8s-app": "flannel", "tier": "node"}},
                "data": {"cni-conf.json": CONFLIST, "net-conf.json": NET_CONF_DUAL if self.dual else NET_CONF}})
        if self.shape == "calico":
            api.put("v1/configmaps", "kube-system", "calico-config", {
                "metadata": {"name": "calico-config", "namespace": "kube-system"},
                "data": {"calico_backend": "bird", "typha_service_name": "none", "veth_mtu": "0",
                         "cni_network_config": S.CALICO_CONFLIST.replace("__NODENAME__", "__KUBERNETES_NODE_NAME__")}})
        if self.shape == "kube-proxy-free":
            api.put("v1/configmaps", "kube-system", "cilium-config", {
                "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                "data": {"kube-proxy-replacement": "true", "routing-mode": "native",
                         "auto-direct-node-routes": "true", "ipv4-native-routing-cidr": S.CILIUM_NETWORK,
                         "ipam": "kubernetes", "enable-endpoint-routes": "true", "enable-ipv4": "true",
                         "enable-ipv6": "false", "cluster-name": "default", "enable-ipv4-masquerade": "true",
                         "bpf-lb-sock": "false", "cni-exclusive": "true"}})
        workloads = [
            (FLANNEL, FLANNEL_IMAGE, {"app": "flannel", "k8s-app": "flannel", "tier": "node"},
             {"hostNetwork": True, "command": ["/opt/bin/flanneld", "--ip-masq", "--kube-subnet-mgr"]}),
            (KUBE_PROXY, KUBE_PROXY_IMAGE, {"k8s-app": "kube-proxy"},
             {"hostNetwork": True, "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                                               "--hostname-override=$(NODE_NAME)"]}),
            (CALICO, S.CALICO_IMAGE, {"k8s-app": "calico-node"}, {"hostNetwork": True}),
            (CILIUM, S.CILIUM_IMAGE, {"k8s-app": "cilium"},
             {"hostNetwork": True, "command": ["cilium-agent", "--config-dir=/tmp/cilium/config-map"]}),
            (ECHO, ECHO_IMAGE, {"app": "net-echo"},
             {"command": ["/agnhost", "netexec", f"--http-port={ECHO_PORT}"], "port": ECHO_PORT,
              "nodeSelector": {ECHO_LABEL: "true"}}),
        ]
        present = {"kubeadm": {FLANNEL, KUBE_PROXY}, "k3s": set(), "calico": {CALICO, KUBE_PROXY},
                   "kube-proxy-free": {CILIUM}}[self.shape] | {ECHO}
        for (ns, name, container), image, labels, extra in [w for w in workloads if w[0] in present]:
            api.put("apps/v1/daemonsets", ns, name, {
                "metadata": {"name": name, "namespace": ns, "labels": labels, "generation": 1,
                             "annotations": {"deprecated.daemonset.template.generation": "1"}},
                "spec": {"selector": {"matchLabels": labels},
                         "updateStrategy": {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                         "template": _template(labels, container, image, extra)},
                "status": {}})
        jl = {"app": "jellyfin"}
        api.put("apps/v1/deployments", "media", "jellyfin", {
            "metadata": {"name": "jellyfin", "namespace": "media", "labels": jl, "generation": 1,
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": jl},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": _template(jl, "jellyfin", JELLYFIN_IMAGE,
                                           {"port": JELLYFIN_PORT, "probe": JELLYFIN_PROBE})},
            "status": {}})
        dep = api.get("apps/v1/deployments", "media", "jellyfin") or {}
        self.jellyfin_template = json.dumps((dep.get("spec") or {}).get("template") or {}, sort_keys=True)
        api.put("v1/services", "media", "jellyfin", {
            "metadata": {"name": "jellyfin", "namespace": "media", "labels": jl},
            "spec": {"type": "NodePort", "selector": jl, "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                     "externalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     **(self._dual_service() if self.dual else {}),
                     "sessionAffinity": "None",
                     "ports": [{"name": "http", "protocol": "TCP", "port": JELLYFIN_PORT,
                                "targetPort": JELLYFIN_PORT, "nodePort": NODEPORT}]},
            "status": {"loadBalancer": {}}})
        api.put("v1/services", "default", "kubernetes", {
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                     "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}]},
            "status": {"loadBalancer": {}}})
        from clusterfix_tui.lab import dns_addon

        dns_addon.seed(api, self.info["nodes"])

    def _shape_node_meta(self, n: dict, labels: dict, annotations: dict, spec: dict, node_info: dict) -> None:
        """What k3s, calico-node and cilium put on a Node object besides kubelet's defaults."""
        if self.shape == "k3s":
            annotations.pop("kubeadm.alpha.kubernetes.io/cri-socket", None)
            labels["node.kubernetes.io/instance-type"] = "k3s"
            labels["beta.kubernetes.io/instance-type"] = "k3s"
            if n["role"] == "control-plane":
                labels["node-role.kubernetes.io/control-plane"] = "true"
                labels["node-role.kubernetes.io/master"] = "true"
                spec.pop("taints", None)  # k3s servers schedule workloads
                labels.pop("node.kubernetes.io/exclude-from-external-load-balancers", None)
                args = ["server"]
            else:
                args = ["agent", "--server", f"https://{self.info['nodes'][0]['ip']}:6443", "--token", "********"]
            annotations.update({
                "k3s.io/hostname": n["name"], "k3s.io/internal-ip": n["ip"],
                "k3s.io/node-args": json.dumps(args), "k3s.io/node-env": "{}",
                "k3s.io/node-config-hash": secrets.token_hex(16).upper()[:52],
                "alpha.kubernetes.io/provided-node-ip": n["ip"]})
            spec["providerID"] = f"k3s://{n['name']}"
            node_info.update(kubeletVersion=S.K3S_VERSION, kubeProxyVersion=S.K3S_VERSION,
                             containerRuntimeVersion=S.K3S_CONTAINERD)
        elif self.shape == "calico":
            annotations["projectcalico.org/IPv4Address"] = f"{n['ip']}/24"
            if self.dual:
                annotations["projectcalico.org/IPv6Address"] = f"{n['ip6']}/64"
        elif self.shape == "kube-proxy-free":
            router = S.router_ip(n["pod_cidr"])
            annotations["network.cilium.io/ipv4-cilium-host"] = router
            annotations["network.cilium.io/ipv4-pod-cidr"] = n["pod_cidr"]
            if self.dual:
                annotations["network.cilium.io/ipv6-cilium-host"] = S.router_ip(n["pod_cidr6"])
                annotations["network.cilium.io/ipv6-pod-cidr"] = n["pod_cidr6"]
            annotations["network.cilium.io/ipv4-health-ip"] = str(ipaddress.ip_address(router) + 252)
            node_info["kubeProxyVersion"] = ""

    def _annotate_vtep(self, node: str, mac: str, mac6: str = "") -> None:
        ip = self.ctx[node].ip

        def fn(obj: dict) -> None:
            ann = obj.setdefault("metadata", {}).setdefault("annotations", {})
            ann[A.BACKEND_DATA] = json.dumps({"VNI": A.VXLAN_ID, "VtepMAC": mac}, separators=(",", ":"))
            ann[A.BACKEND_TYPE] = "vxlan"
            ann[A.KUBE_SUBNET_MGR] = "true"
            ann[A.PUBLIC_IP] = ip
            if mac6:
                ann[A.BACKEND_V6_DATA] = json.dumps({"VNI": A.VXLAN_ID, "VtepMAC": mac6}, separators=(",", ":"))
                ann[A.PUBLIC_IPV6] = self.ctx[node].ip6

        self.api.mutate("v1/nodes", None, node, fn)
        for n in self.info["nodes"]:
            if n["name"] == node:
                n["vtep_mac"] = mac
                if mac6:
                    n["vtep_mac6"] = mac6

    def _dual_fields(self, k: int, i: int) -> dict:
        """A dual-stack node: its IPv6 address on the lab bridge and IPv6 podCIDR (ULA fd00::/8
        ranges, only inside the lab), and both lists in the cluster's family order."""
        ip6, cidr6 = f"fd00:213:{k}::{10 + i}", S.pod_cidr6(self.shape, i)
        ip4, cidr4 = f"10.213.{k}.{10 + i}", S.pod_cidr(self.shape, i)
        order = (lambda a, b: [b, a]) if self.v6_first else (lambda a, b: [a, b])
        return {"ip6": ip6, "pod_cidr6": cidr6, "pod_block6": S.pod_block6(self.shape, i),
                "ips": order(ip4, ip6), "pod_cidrs": order(cidr4, cidr6)}

    # -- pods ------------------------------------------------------------------------------------
    def _new_pod(self, kind: tuple[str, str, str], node: str, *, host_network: bool, port: int | None = None) -> Pod:
        ns, app, container = kind
        image = IMAGES[kind]
        embedded = self.shape == "k3s" and kind in (FLANNEL, KUBE_PROXY)
        if kind == JELLYFIN:
            name = f"jellyfin-{self._rs_hash()}-{N.random_suffix()}"
        elif embedded:  # no pod: the k3s process on the node runs it
            name = f"k3s-{AGENT_OF[app]}-{node}"
            image = f"k3s {S.K3S_VERSION}"
        else:
            name = f"{app}-{N.random_suffix()}"
        pod = Pod(namespace=ns, name=name, app=app, node=node, container=container, image=image,
                  host_network=host_network, port=port, embedded=embedded)
        if host_network:
            pod.ip = self.ctx[node].ip
        self.pods[(ns, name)] = pod
        return pod

    def _rs_hash(self) -> str:
        if "rs_hash" not in self.info:
            self.info["rs_hash"] = "".join(N.random_suffix(10))
        return self.info["rs_hash"]

    def _start_netns_pod(self, pod: Pod) -> bool:
        """kubelet + CNI: create the pod sandbox (netns, veth on cni0, IP) and start its process.
        When the CNI plugins refuse (cni0 conflict, no subnet.env), the pod stays
        ContainerCreating with kubelet's FailedCreatePodSandBox event; reconcile retries."""
        ctx = self.ctx[pod.node]
        routed = self.shape in ("calico", "kube-proxy-free")
        try:
            err = "" if routed else A.cni_add_check(ctx)
        except N.NodeError as e:
            err = f'plugin type="bridge" failed (add): {e}'
        if err:
            self._sandbox_failed(pod, err)
            return False
        pod.sandbox_error = ""
        self.pod_seq += 1
        pod.netns = f"cfx-{self.labid}-p-{self.pod_seq}"
        pod.veth = S.host_veth_name(self.shape, pod.namespace, pod.name) if routed else f"veth{secrets.token_hex(4)}"
        host = self.next_ip[pod.node]
        first, last = S.first_pod_host(self.shape), min(250, ctx.block.num_addresses - 2)
        self.next_ip[pod.node] = host + 1 if host < last else first
        pod.ip = str(ctx.block.network_address + host)
        pod.ip6 = str(ipaddress.IPv6Network(ctx.pod_block6 or ctx.pod_cidr6).network_address + host) \
            if ctx.pod_cidr6 else ""
        with self.lock:
            self.info["pod_netns"].append(pod.netns)
        self.save()
        try:
            if self.shape == "calico":  # the calico CNI plugin
                S.create_routed_pod(pod.netns, ctx.netns, pod.veth, pod.ip, "169.254.1.1",
                                    host_mac="ee:ee:ee:ee:ee:ee", static_gateway=True,
                                    ip6=pod.ip6, gateway6=S.CALICO_GW6)
            elif routed:  # cilium-cni with endpoint routes
                S.create_routed_pod(pod.netns, ctx.netns, pod.veth, pod.ip, S.router_ip(ctx.pod_cidr),
                                    ip6=pod.ip6, gateway6=S.router_ip(ctx.pod_cidr6) if pod.ip6 else "")
            else:
                N.create_pod_netns(pod.netns, ctx.netns, pod.veth, pod.ip, ctx.subnet.prefixlen, ctx.gateway)
                if pod.ip6:
                    N.ip_batch(pod.netns, [f"addr add {pod.ip6}/{ctx.subnet6.prefixlen} dev eth0 nodad",
                                           f"route add default via {ctx.gateway6} dev eth0"])
        except N.NodeError as e:
            self._stop_netns_pod(pod)
            pod.netns = pod.veth = pod.ip = pod.ip6 = ""
            self._sandbox_failed(pod, f'plugin type="bridge" failed (add): {e}')
            return False
        proc = N.start_pod_server(pod.netns, pod.port or 80, pod.name, Path(ctx.node_dir) / f"pod-{pod.name}.log",
                                  dual=bool(pod.ip6))
        self.procs[proc.pid] = proc
        pod.proc = proc
        pod.pid = proc.pid
        if not N.wait_listening_in_netns(pod.netns, pod.port or 80):
            log.warning("pod %s/%s: server not listening after 5s", pod.namespace, pod.name)
        pod.running = True
        pod.started = now_iso()
        pod.ready = pod.probe is None
        pod.ever_ready = pod.ready
        self.save()
        self.api.set_pod_log(pod.namespace, pod.name, _app_log(pod))
        self._network_sync(pod.node)
        return True

    def _sandbox_failed(self, pod: Pod, err: str) -> None:
        pod.sandbox_error = err
        pod.running = pod.ready = False
        pod.netns = pod.ip = pod.ip6 = ""
        log.warning("pod %s/%s on %s: sandbox not created: %s", pod.namespace, pod.name, pod.node, err)
        if self.info.get("state") == "ready":
            self._render(pod)
            obj = self.api.get("v1/pods", pod.namespace, pod.name) or {}
            involved = {"kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                        "uid": obj.get("metadata", {}).get("uid")}
            self.api.add_event(pod.namespace, involved, "FailedCreatePodSandBox",
                               "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup "
                               f'network for sandbox "{secrets.token_hex(32)}": {err}', "Warning", host=pod.node)

    def _stop_netns_pod(self, pod: Pod) -> None:
        if pod.pid:
            N.kill_pid(pod.pid, marker="pod_server.py")
            self.procs.pop(pod.pid, None)
        if pod.netns:
            N.delete_netns(pod.netns)
            with self.lock:
                if pod.netns in self.info["pod_netns"]:
                    self.info["pod_netns"].remove(pod.netns)
            self._network_sync(pod.node)

    def _set_running(self, pod: Pod, text: str) -> None:
        pod.running = True
        pod.ready = True
        pod.ever_ready = True
        pod.last_error = ""
        pod.started = now_iso()
        pod.backoff = BACKOFF_START
        self._write_log(pod, text)

    def _crash(self, pod: Pod, text: str, error: str, backoff: float | None = None) -> None:
        """The container exited 1: CrashLoopBackOff, restartCount up, Warning event."""
        first = not pod.last_error and pod.restart_count == 0 and not pod.started
        log.warning("pod %s/%s on %s: container failed: %s", pod.namespace, pod.name, pod.node,
                    error.splitlines()[-1] if error else "?")
        pod.running = False
        pod.ready = False
        pod.last_error = error
        pod.last_exit = {"exitCode": 1, "reason": "Error", "startedAt": pod.started or now_iso(),
                         "finishedAt": now_iso(), "containerID": f"containerd://{secrets.token_hex(32)}"}
        if not first:
            pod.restart_count += 1
        if backoff is not None:
            pod.backoff = backoff
        pod.next_retry = time.monotonic() + pod.backoff
        pod.backoff = min(pod.backoff * 2, BACKOFF_MAX)
        self._write_log(pod, text)
        self._render(pod)
        if pod.embedded:
            return
        obj = self.api.get("v1/pods", pod.namespace, pod.name) or {}
        involved = {"kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                    "uid": obj.get("metadata", {}).get("uid"), "fieldPath": f"spec.containers{{{pod.container}}}"}
        self.api.add_event(pod.namespace, involved, "BackOff",
                           f"Back-off restarting failed container {pod.container} in pod "
                           f"{pod.name}_{pod.namespace}({involved.get('uid') or ''})", "Warning", host=pod.node)

    def _write_log(self, pod: Pod, text: str) -> None:
        prev = getattr(pod, "_log", None)
        pod._log = text  # type: ignore[attr-defined]
        if pod.embedded:  # k3s logs its embedded flannel / kube-proxy in its own log
            with contextlib.suppress(OSError), open(self.ctx[pod.node].node_dir / "log" / "k3s.log", "a") as fh:
                fh.write("".join(f"{line}\n" for line in text.splitlines()))
            return
        self.api.set_pod_log(pod.namespace, pod.name, text, prev)

    def _render(self, pod: Pod) -> None:
        """Write the pod's API object from the controller's record."""
        if pod.embedded:
            return
        ds = pod.app in ("kube-flannel-ds", "kube-proxy", "net-echo", "calico-node", "cilium")
        labels = POD_LABELS[pod.app].copy()
        if ds:
            labels["controller-revision-hash"] = "6b9c8f7d5f"
            labels["pod-template-generation"] = "1"
            owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": pod.app, "controller": True,
                     "blockOwnerDeletion": True}
        else:
            labels["pod-template-hash"] = self._rs_hash()
            owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"jellyfin-{self._rs_hash()}",
                     "controller": True, "blockOwnerDeletion": True}
        container: dict[str, Any] = {"name": pod.container, "image": pod.image, "imagePullPolicy": "IfNotPresent"}
        if pod.port:
            container["ports"] = [{"containerPort": pod.port, "protocol": "TCP",
                                   **({"name": "http"} if pod.app == "jellyfin" else {})}]
        if pod.probe:
            container["readinessProbe"] = pod.probe
        spec: dict[str, Any] = {"nodeName": pod.node, "containers": [container], "restartPolicy": "Always",
                                "schedulerName": "default-scheduler", "serviceAccountName": "default",
                                "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
        if pod.host_network:
            spec["hostNetwork"] = True
            spec["priorityClassName"] = "system-node-critical"
        if ds:
            spec["tolerations"] = [{"operator": "Exists"}]
        if pod.sandbox_error:
            state = {"waiting": {"reason": "ContainerCreating"}}
        elif pod.running:
            state = {"running": {"startedAt": pod.started or now_iso()}}
        else:
            state = {"waiting": {"reason": "CrashLoopBackOff",
                                 "message": f"back-off {int(min(pod.backoff / 2, BACKOFF_MAX))}s restarting failed "
                                            f"container={pod.container} pod={pod.name}_{pod.namespace}"}}
        cs = {"name": pod.container, "image": pod.image, "imageID": pod.image + "@sha256:" + "0" * 64,
              "ready": pod.ready, "started": pod.running, "restartCount": pod.restart_count, "state": state,
              "lastState": {"terminated": pod.last_exit} if pod.last_exit else {},
              "containerID": f"containerd://{pod.name}"}
        t = now_iso()
        ready = "True" if pod.ready else "False"
        conditions = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": pod.created},
            {"type": "Initialized", "status": "True", "lastTransitionTime": pod.created},
            {"type": "Ready", "status": ready, "lastTransitionTime": t,
             **({} if pod.ready else {"reason": "ContainersNotReady",
                                      "message": f"containers with unready status: [{pod.container}]"})},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": t,
             **({} if pod.ready else {"reason": "ContainersNotReady",
                                      "message": f"containers with unready status: [{pod.container}]"})},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": pod.created},
        ]
        if pod.host_network and pod.app in AGENT_OF:
            spec["serviceAccountName"] = {"calico-node": "calico-node", "cilium": "cilium"}.get(pod.app, pod.app)
        status: dict[str, Any] = {
            "phase": "Pending" if pod.sandbox_error else "Running", "hostIP": self.ctx[pod.node].ip,
            "hostIPs": [{"ip": x} for x in self._node_info(pod.node).get("ips") or [self.ctx[pod.node].ip]],
            "startTime": pod.created, "qosClass": "Burstable",
            "conditions": conditions, "containerStatuses": [cs]}
        if pod.ip:
            status["podIP"] = pod.ip
            status["podIPs"] = [{"ip": pod.ip}]
            if pod.ip6:
                ips = [pod.ip6, pod.ip] if self.v6_first else [pod.ip, pod.ip6]
                status["podIP"] = ips[0]
                status["podIPs"] = [{"ip": x} for x in ips]
            if pod.host_network and self.dual:
                ips = list(self._node_info(pod.node).get("ips") or [pod.ip])
                status["podIP"] = ips[0]
                status["podIPs"] = [{"ip": x} for x in ips]
        if pod.sandbox_error:
            conditions[0]["status"] = "False"
        obj = {"metadata": {"name": pod.name, "namespace": pod.namespace, "labels": labels,
                            "ownerReferences": [owner]},
               "spec": spec, "status": status}
        existing = self.api.get("v1/pods", pod.namespace, pod.name)
        if existing is None:
            obj["metadata"]["creationTimestamp"] = pod.created
            self.api.put("v1/pods", pod.namespace, pod.name, obj)
        else:
            def fn(o: dict) -> None:
                o["spec"] = spec
                o["status"] = status
                o.setdefault("metadata", {})["labels"] = labels
            self.api.mutate("v1/pods", pod.namespace, pod.name, fn)

    def _dual_service(self) -> dict:
        fams, ips = ["IPv4", "IPv6"], [CLUSTER_IP, CLUSTER_IP6]
        if self.v6_first:
            fams, ips = fams[::-1], ips[::-1]
        return {"ipFamilies": fams, "ipFamilyPolicy": "RequireDualStack", "clusterIP": ips[0], "clusterIPs": ips}

    def _services6(self) -> list[A.ServicePort] | None:
        if not self.dual:
            return None
        eps = sorted(p.ip6 for p in self.pods.values() if p.app == "jellyfin" and p.ready and p.running and p.ip6)
        return [A.ServicePort("media", "jellyfin", "http", "TCP", CLUSTER_IP6, JELLYFIN_PORT, NODEPORT,
                              JELLYFIN_PORT, eps)]

    def _services(self) -> list[A.ServicePort]:
        return [A.ServicePort("media", "jellyfin", "http", "TCP", CLUSTER_IP, JELLYFIN_PORT, NODEPORT,
                              JELLYFIN_PORT, list(self.endpoints))]

    def _update_endpoints(self, *, resync: bool = True) -> None:
        eps = sorted(p.ip for p in self.pods.values() if p.app == "jellyfin" and p.ready and p.running)
        not_ready = sorted(p.ip for p in self.pods.values() if p.app == "jellyfin" and not p.ready and p.ip)
        changed = eps != self.endpoints or self.api.get("v1/endpoints", "media", "jellyfin") is None
        self.endpoints = eps
        if not changed:
            return
        subset: dict[str, Any] = {"ports": [{"name": "http", "port": JELLYFIN_PORT, "protocol": "TCP"}]}
        if eps:
            subset["addresses"] = [self._ep_addr(ip) for ip in eps]
        if not_ready:
            subset["notReadyAddresses"] = [self._ep_addr(ip) for ip in not_ready]
        self.api.put("v1/endpoints", "media", "jellyfin", {
            "metadata": {"name": "jellyfin", "namespace": "media", "labels": {"app": "jellyfin"}},
            "subsets": [subset] if (eps or not_ready) else []})
        if resync:
            self._resync_kube_proxies()

    def _ep_addr(self, ip: str) -> dict:
        pod = next((p for p in self.pods.values() if p.ip == ip and p.app == "jellyfin"), None)
        d: dict[str, Any] = {"ip": ip}
        if pod:
            d["nodeName"] = pod.node
            d["targetRef"] = {"kind": "Pod", "name": pod.name, "namespace": pod.namespace}
        return d

    def _resync_kube_proxies(self) -> None:
        if self.shape == "kube-proxy-free":  # cilium's service load-balancer follows the endpoints
            for p in [p for p in self.pods.values() if p.app == CILIUM[1]]:
                self._network_sync(p.node)
            return
        services = self._services()
        targets = [p for p in self.pods.values() if p.app == "kube-proxy" and p.running
                   and not self.agent_state.get((p.node, "kube-proxy"), {}).get("crashed")]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda p: A.kube_proxy_sync(self.ctx[p.node], services, first=False,
                                                                services6=self._services6()), targets))
        for p, res in zip(targets, results, strict=True):
            if not res.ok:
                self._crash(p, res.log, res.error)
            else:
                lines = (getattr(p, "_log", "") + res.log).splitlines()[-200:]
                p._log = "\n".join(lines) + "\n"  # type: ignore[attr-defined]
                self.api.set_pod_log(p.namespace, p.name, p._log)  # type: ignore[attr-defined]

    # -- agents ----------------------------------------------------------------------------------
    def _run_agent(self, pod: Pod, *, first: bool = True) -> None:
        """(Re)start a system pod's container: run its agent on the node, or stay crashed."""
        agent = AGENT_OF[pod.app]
        state = self.agent_state.get((pod.node, agent), {})
        if state.get("crashed"):
            text = state.get("message") or ""
            self._crash(pod, text if text.endswith("\n") else text + "\n", state.get("error") or "crashed",
                        backoff=float(state.get("backoff", BACKOFF_MAX)))
            return
        ctx = self.ctx[pod.node]
        if agent in ("calico", "cilium"):
            res = self._network_agent(ctx)
            if res.ok:
                self._set_running(pod, res.log)
            else:
                self._crash(pod, res.log, res.error)
            self._render(pod)
            return
        if agent == "flannel":
            before = self._node_info(pod.node).get("vtep_mac")
            res = A.flannel_start(ctx, A.peers_from_nodes(self.api.list("v1/nodes"), pod.node))
            if res.ok:
                mac = res.data["vtep_mac"]
                self._set_running(pod, res.log)
                if mac != before or res.data.get("vtep_mac6", "") != self._node_info(pod.node).get("vtep_mac6", ""):
                    self._annotate_vtep(pod.node, mac, res.data.get("vtep_mac6", ""))
                    # the other nodes' flanneld watch Node objects and reprogram this peer
                    peers = A.peers_from_nodes(self.api.list("v1/nodes"), "")
                    me = [p for p in peers if p.name == pod.node]
                    for other in self.pods.values():
                        if other.app == "kube-flannel-ds" and other.running and other.node != pod.node:
                            with contextlib.suppress(Exception):
                                A.program_peers(self.ctx[other.node], me)
            else:
                self._crash(pod, res.log, res.error)
        else:
            res = A.kube_proxy_sync(ctx, self._services(), first=first, services6=self._services6())
            if res.ok:
                self._set_running(pod, res.log)
            else:
                self._crash(pod, res.log, res.error)
        self._render(pod)

    def _node_info(self, node: str) -> dict:
        return next(n for n in self.info["nodes"] if n["name"] == node)

    def _replace_pod(self, pod: Pod) -> Pod:
        """What the DaemonSet/ReplicaSet controller does when a pod goes away: a new pod, new name,
        same node, then kubelet starts it."""
        self.pods.pop((pod.namespace, pod.name), None)
        kind = KINDS[pod.app]
        if pod.netns:
            self._stop_netns_pod(pod)
        # a new pod gets a fresh container: the crash state of the old one goes with it
        self.agent_state.pop((pod.node, AGENT_OF.get(pod.app, "")), None)
        new = self._new_pod(kind, pod.node, host_network=pod.host_network, port=pod.port)
        if pod.app in AGENT_OF:
            self._run_agent(new)
        else:
            if pod.app == "jellyfin":
                new.probe = self._jellyfin_probe()
            if self._start_netns_pod(new):
                self._render(new)
                if new.probe:
                    self._probe(new)
        self._update_endpoints()
        self._update_workload_status()
        self.save()
        return new

    def _jellyfin_probe(self) -> dict | None:
        d = self.api.get("apps/v1/deployments", "media", "jellyfin") or {}
        containers = d.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
        return containers[0].get("readinessProbe")

    # -- hooks (run on the controller thread) ----------------------------------------------------
    def _hook_pod_deleted(self, ns: str, name: str, before: dict | None = None) -> None:
        pod = self.pods.get((ns, name))
        if pod is None:
            from clusterfix_tui.lab import dns_addon

            dns_addon.on_pod_deleted(self.api, self.info["nodes"], ns, name, before)
            return
        log.info("pod %s/%s deleted through the API: replacing it on %s", ns, name, pod.node)
        self._replace_pod(pod)

    def _hook_ds_restarted(self, ns: str, name: str) -> None:
        olds = [p for p in self.pods.values() if p.namespace == ns and p.app == name]
        log.info("rollout restart of %s/%s: %d pods", ns, name, len(olds))
        for pod in olds:
            with contextlib.suppress(Exception):
                self.api.delete("v1/pods", pod.namespace, pod.name)
            self._replace_pod(pod)

    def _hook_deploy_patched(self, ns: str, name: str, obj: dict) -> None:
        """A changed pod template (probe edited, `kubectl rollout restart`) rolls the pods, like
        the Deployment controller does through a new ReplicaSet."""
        if (ns, name) != ("media", "jellyfin"):
            return
        template = json.dumps(((obj.get("spec") or {}).get("template") or {}), sort_keys=True)
        if template == self.jellyfin_template:
            return
        self.jellyfin_template = template
        self.info["rs_hash"] = N.random_suffix(10)
        for pod in [p for p in self.pods.values() if p.app == "jellyfin"]:
            log.info("jellyfin pod template changed: rolling %s", pod.name)
            with contextlib.suppress(Exception):
                self.api.delete("v1/pods", pod.namespace, pod.name)
            self._replace_pod(pod)
        self._update_workload_status()
        self.save()

    # -- reconcile -------------------------------------------------------------------------------
    def _probe(self, pod: Pod) -> None:
        probe = pod.probe or {}
        was = pod.ready
        if not pod.running:
            ok, err = False, ""
        elif "httpGet" in probe:
            hg = probe["httpGet"]
            port = hg.get("port", pod.port)
            port = pod.port if isinstance(port, str) else int(port)
            ok, err = A.http_probe(self.ctx[pod.node], pod.ip, int(port or 80), hg.get("path", "/"),
                                   timeout=float(probe.get("timeoutSeconds", 1)))
        elif "exec" in probe:
            ok, err = A.exec_probe(pod.netns, list(probe["exec"].get("command") or []))
        elif "tcpSocket" in probe:
            st, err = N.http_get_in_netns(f"/run/netns/{self.ctx[pod.node].netns}", pod.ip, pod.port or 80)
            ok = st is not None
        else:
            ok, err = True, ""
        pod.ready = ok
        pod.ever_ready = pod.ever_ready or ok
        pod.probe_error = err
        if not ok and err and self.api is not None and self.info.get("state") == "ready":
            obj = self.api.get("v1/pods", pod.namespace, pod.name) or {}
            involved = {"kind": "Pod", "name": pod.name, "namespace": pod.namespace,
                        "uid": obj.get("metadata", {}).get("uid"),
                        "fieldPath": f"spec.containers{{{pod.container}}}"}
            self.api.add_event(pod.namespace, involved, "Unhealthy", f"Readiness probe failed: {err}",
                               "Warning", host=pod.node)
        if was != pod.ready:
            self._render(pod)
            self.dirty = True

    def reconcile(self) -> None:
        now = time.monotonic()
        # nodes: Ready while the anchor lives
        for n in self.info["nodes"]:
            alive = N.pid_alive(n["init_pid"])
            if n.get("ready") != alive:
                n["ready"] = alive
                self.api.mutate("v1/nodes", None, n["name"],
                                lambda o, a=alive: o.setdefault("status", {}).__setitem__("conditions", _node_conditions(a)))
                self.dirty = True
            sp = n.get("sshd_pid")
            if sp and sp in self.procs and self.procs[sp].poll() is not None:
                self.procs.pop(sp, None)
        # crash-looping system pods: kubelet restarts them after their back-off
        for pod in list(self.pods.values()):
            if pod.app in AGENT_OF and not pod.running and now >= pod.next_retry:
                self._run_agent(pod, first=True)
                self.dirty = True
        # pods whose sandbox the CNI plugins refused: kubelet keeps trying
        for pod in list(self.pods.values()):
            if pod.sandbox_error and now >= pod.next_retry:
                pod.next_retry = now + 5
                if self._start_netns_pod(pod):
                    self._render(pod)
                    if pod.probe:
                        self._probe(pod)
                self.dirty = True
        # pod servers that died: kubelet restarts the container
        for pod in list(self.pods.values()):
            if pod.netns and pod.proc is not None and pod.proc.poll() is not None:
                self.procs.pop(pod.proc.pid, None)
                pod.restart_count += 1
                pod.last_exit = {"exitCode": pod.proc.returncode or 137, "reason": "Error",
                                 "startedAt": pod.started, "finishedAt": now_iso()}
                ctx = self.ctx[pod.node]
                proc = N.start_pod_server(pod.netns, pod.port or 80, pod.name, ctx.node_dir / f"pod-{pod.name}.log",
                                          dual=bool(pod.ip6))
                self.procs[proc.pid] = proc
                pod.proc, pod.pid, pod.started = proc, proc.pid, now_iso()
                self._render(pod)
                self.dirty = True
        # readiness probes
        for pod in list(self.pods.values()):
            if pod.probe:
                self._probe(pod)
        self._update_endpoints()
        self._update_workload_status()
        if self.dirty:
            self.save()

    def _update_workload_status(self) -> None:
        for ns, name, _c in (FLANNEL, KUBE_PROXY, ECHO, CALICO, CILIUM):
            pods = [p for p in self.pods.values() if p.app == name]
            ready = sum(1 for p in pods if p.ready)
            st = {"currentNumberScheduled": len(pods), "desiredNumberScheduled": len(pods),
                  "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                  "updatedNumberScheduled": len(pods)}
            if len(pods) - ready:
                st["numberUnavailable"] = len(pods) - ready

            def fn(o: dict, st: dict = st) -> None:
                st["observedGeneration"] = o.get("metadata", {}).get("generation", 1)
                if o.get("status") != st:
                    o["status"] = st
            self._mutate_if_changed("apps/v1/daemonsets", ns, name, fn)
        pods = [p for p in self.pods.values() if p.app == "jellyfin"]
        ready = sum(1 for p in pods if p.ready)

        def dfn(o: dict) -> None:
            gen = o.get("metadata", {}).get("generation", 1)
            st = {"observedGeneration": gen, "replicas": len(pods), "updatedReplicas": len(pods),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "conditions": [{"type": "Available", "status": "True" if ready else "False",
                                  "reason": "MinimumReplicasAvailable" if ready else "MinimumReplicasUnavailable",
                                  "message": "Deployment has minimum availability." if ready
                                  else "Deployment does not have minimum availability."},
                                 {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                                  "message": f'ReplicaSet "jellyfin-{self._rs_hash()}" has successfully progressed.'}]}
            if len(pods) - ready:
                st["unavailableReplicas"] = len(pods) - ready
            old = dict(o.get("status") or {})
            if {k: v for k, v in old.items() if k != "conditions"} != {k: v for k, v in st.items() if k != "conditions"}:
                o["status"] = st
        self._mutate_if_changed("apps/v1/deployments", "media", "jellyfin", dfn)

    def _mutate_if_changed(self, resource: str, ns: str | None, name: str, fn: Callable[[dict], None]) -> None:
        """mutate() only when fn changes something: every write is a new resourceVersion and a
        watch event, and the reconcile loop runs every 2 s."""
        current = self.api.get(resource, ns, name)
        if current is None:
            return
        trial = json.loads(json.dumps(current))
        fn(trial)
        if trial != current:
            self.api.mutate(resource, ns, name, fn)

    # -- control requests ------------------------------------------------------------------------
    def submit(self, fn: Callable, *args: Any) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.queue.put((fn, args, fut))
        return fut

    def handle_request(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "state": self.info.get("state")}
        fn = getattr(self, f"_op_{str(op).replace('-', '_')}", None)
        if fn is None:
            return {"ok": False, "error": f"unknown op {op!r}"}
        fut = self.submit(fn, req)
        try:
            return {"ok": True, "result": fut.result(timeout=float(req.get("timeout", 120)))}
        except Exception as e:  # noqa: BLE001 - reported to the client
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def _op_reconcile(self, req: dict) -> dict:
        self.reconcile()
        return {}

    def _op_stop_sshd(self, req: dict) -> dict:
        n = self._node_info(req["node"])
        pid = n.get("sshd_pid")
        killed = N.kill_pid(pid, marker="sshd_config")
        if pid in self.procs:
            with contextlib.suppress(Exception):
                self.procs.pop(pid).wait(timeout=5)
        n["sshd_pid"] = None
        self.save()
        return {"killed": killed, "pid": pid}

    def _op_start_sshd(self, req: dict) -> dict:
        n = self._node_info(req["node"])
        if n.get("sshd_pid") and N.pid_alive(n["sshd_pid"]):
            return {"pid": n["sshd_pid"], "started": False}
        self._start_sshd(n)
        self.save()
        N.wait_tcp(n["ip"], 22, timeout=15, proc=self.procs.get(n["sshd_pid"]))
        return {"pid": n["sshd_pid"], "started": True}

    def _op_reboot_node(self, req: dict) -> dict:
        """`lab reboot-node`: what a reboot does to one node. Its pods' processes and sandboxes,
        its sshd, its anchor and whatever else runs in its namespaces are stopped by recorded
        pid/name; its network namespace is deleted (its veth goes with it) and rebuilt with the
        same name, address and veth; a new anchor gives it new mount and UTS namespaces and runs
        node_init.sh (its boot configuration) again. What lives on disk stays (the node dir: /etc
        overlay, /root, /var/log, /var/backups, the sshd host key); runtime state is lost: sysctls
        are the new namespace's plus what node_init sets, the firewall is empty, /run is a fresh
        tmpfs. Then, as after a real boot, kubelet restarts the node's pods: the network agent
        (flannel/calico/cilium) and kube-proxy reprogram the node, the app pods get new sandboxes."""
        n = self._node_info(req["node"])
        name = n["name"]
        before = {"init_pid": n.get("init_pid"), "sshd_pid": n.get("sshd_pid"),
                  "netns_inode": N.netns_inode(n["netns"])}
        on_node = [p for p in self.pods.values() if p.node == name]
        app_pods = [p for p in on_node if p.app not in AGENT_OF]
        for pod in app_pods:  # kubelet's containers and sandboxes die with the node
            if pod.netns or pod.pid:
                self._stop_netns_pod(pod)
            pod.netns = pod.veth = ""
            pod.pid, pod.proc = None, None
            pod.running = pod.ready = False
        # The kernel hands out the lowest free namespace inode number: the rebuilt node would
        # often get its old numbers back, and a reboot be invisible to whoever compares them (a
        # real reboot gives a new boot_id). This daemon holds the old net and mount namespaces
        # open until the new ones exist (fds: the kernel drops them if the daemon dies); the old
        # mount namespace's overlays are unmounted first so the new anchor can mount them again.
        held: list[int] = []
        old_pid = n.get("init_pid")
        if old_pid and N.pid_alive(old_pid):
            for kind in ("net", "mnt"):
                with contextlib.suppress(OSError):
                    held.append(os.open(f"/proc/{old_pid}/ns/{kind}", os.O_RDONLY))
            N.node_exec(old_pid, "umount -l /etc; umount -l /usr/local/sbin; "
                        "umount -l /var/lib/dpkg/alternatives; "
                        "umount -l /var/lib; true", check=False, timeout=15)
        try:
            return self._reboot_rebuild(n, on_node, app_pods, before)
        finally:
            for fd in held:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _reboot_rebuild(self, n: dict, on_node: list[Pod], app_pods: list[Pod], before: dict) -> dict:
        name = n["name"]
        mac = ""  # the NIC keeps its MAC across a reboot (and the neighbours' ARP caches stay right)
        with contextlib.suppress(Exception):
            mac = N.ip_json(n["netns"], "link", "show", "dev", "eth0")[0].get("address") or ""
        if n.get("sshd_pid"):
            N.kill_pid(n["sshd_pid"], marker="sshd_config")
            self.procs.pop(n["sshd_pid"], None)
        if n.get("init_pid"):
            N.kill_pid(n["init_pid"])
            self.procs.pop(n["init_pid"], None)
        N.kill_pids(N.netns_pids(n["netns"]))  # ssh sessions, commands still running there
        n["sshd_pid"] = n["init_pid"] = None
        self.save()
        N.delete_link(n["veth"])  # both ends: the old namespace is still held open
        N.delete_netns(n["netns"])
        nd = Path(n["node_dir"])
        for f in (nd / "run-flannel").glob("*"):  # /run/flannel is on tmpfs on a real node
            with contextlib.suppress(OSError):
                f.unlink()
        # the same node comes back: same netns name, veth, addresses
        bridge = self.info["bridge"]["name"]
        N.add_netns(n["netns"])
        N.ip_batch(None, [f"link add {n['veth']} type veth peer name eth0 netns {n['netns']}",
                          f"link set {n['veth']} master {bridge}", f"link set {n['veth']} up"])
        N.ip_batch(n["netns"], (["link set eth0 address " + mac] if mac else [])
                   + ["link set lo up", f"addr add {n['ip']}/24 dev eth0", "link set eth0 up"]
                   + ([f"addr add {n['ip6']}/64 dev eth0 nodad"] if self.dual else []))
        p = N.start_anchor(n["netns"], name, nd)
        self.procs[p.pid] = p
        n["init_pid"] = p.pid
        self.ctx[name].init_pid = p.pid
        self.save()
        N.wait_anchor(p, nd, timeout=30)
        if self.dual:
            N.node_exec(n["init_pid"], "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding; "
                        "ip6tables -w 5 -t mangle -N KUBE-IPTABLES-HINT 2>/dev/null; "
                        "ip6tables -w 5 -t mangle -N KUBE-KUBELET-CANARY 2>/dev/null; true")
        if self.ssh_user:  # its authorized key lives in /run (tmpfs): what provisioning restores
            N.add_login_user(n["init_pid"], self.ssh_user, (self.dir / "id_ed25519.pub").read_text().strip(),
                             sudo=True)
        self._start_sshd(n)
        self.save()
        N.wait_tcp(n["ip"], 22, timeout=15, proc=self.procs.get(n["sshd_pid"]))
        # kubelet: the system pods' containers start again (restartCount up), then the app pods
        for pod in on_node:
            pod.restart_count += 1
        for pod in [p for p in on_node if p.app in AGENT_OF]:
            self._run_agent(pod)
        for pod in app_pods:
            if self._start_netns_pod(pod):
                self._render(pod)
                if pod.probe:
                    self._probe(pod)
        self._update_endpoints()
        self._update_workload_status()
        self.save()
        return {"node": name, "before": before,
                "after": {"init_pid": n["init_pid"], "sshd_pid": n["sshd_pid"],
                          "netns_inode": N.netns_inode(n["netns"])}}

    def _op_set_agent_state(self, req: dict) -> dict:
        node, agent, state = req["node"], req["agent"], dict(req.get("state") or {})
        self._node_info(node)
        if agent not in APP_OF:
            raise ValueError(f"unknown agent {agent!r} ({' | '.join(APP_OF)})")
        if state:
            self.agent_state[(node, agent)] = state
        else:
            self.agent_state.pop((node, agent), None)
        app = APP_OF[agent]
        pod = next((p for p in self.pods.values() if p.node == node and p.app == app), None)
        if pod is not None and state.get("crashed"):
            text = state.get("message") or ""
            self._crash(pod, text if text.endswith("\n") else text + "\n", state.get("error") or "crashed",
                        backoff=float(state.get("backoff", BACKOFF_MAX)))
        self.save()
        return {"pod": pod.name if pod else None}

    def _op_restart_pod(self, req: dict) -> dict:
        """Restart a system/app pod like `kubectl delete pod` would (a new pod on the same node)."""
        node, app = req["node"], req["app"]
        app = {"flannel": "kube-flannel-ds", "kube-flannel": "kube-flannel-ds", "calico": "calico-node",
               "cilium-agent": "cilium"}.get(app, app)
        pod = next((p for p in self.pods.values() if p.node == node and p.app == app), None)
        if pod is None:
            raise ValueError(f"no {app} pod on {node}")
        with contextlib.suppress(Exception):
            self.api.delete("v1/pods", pod.namespace, pod.name)
        new = self._replace_pod(pod)
        self.save()
        return {"old": pod.name, "new": new.name, "running": new.running}

    def _op_restart_service(self, req: dict) -> dict:
        """`systemctl restart k3s-agent` (k3s on servers) on a k3s node, from the node's systemctl
        stub: k3s restarts, and with it the flannel and kube-proxy it embeds (they start again
        and resync); the pods keep running (their containers are not k3s's)."""
        node, unit = req["node"], str(req.get("unit") or "").removesuffix(".service")
        n = self._node_info(node)
        if self.shape != "k3s" or unit != S.k3s_unit(n["role"]):
            raise ValueError(f"Unit {unit}.service not found on {node}")
        with contextlib.suppress(OSError), open(self.ctx[node].node_dir / "log" / "k3s.log", "a") as fh:
            fh.write(f'time="{now_iso()}" level=info msg="Starting {unit.replace("-", " ")} {S.K3S_VERSION}"\n')
        restarted = []
        for pod in [p for p in self.pods.values() if p.node == node and p.embedded]:
            new = self._replace_pod(pod)
            restarted.append({"agent": AGENT_OF[pod.app], "running": new.running})
        log.info("systemctl restart %s on %s: %s", unit, node, restarted)
        self.save()
        return {"unit": unit, "restarted": restarted}

    def _op_record_fault(self, req: dict) -> dict:
        rec = dict(req["record"])
        with self.lock:
            self.info["faults"].append(rec)
        self.save()
        return {}

    def _op_forget_fault(self, req: dict) -> dict:
        """Drop the records named req["name"] (a cluster-wide knob undone: lab.workstation)."""
        with self.lock:
            before = len(self.info["faults"])
            self.info["faults"] = [f for f in self.info["faults"] if f.get("name") != req["name"]]
            gone = before - len(self.info["faults"])
        self.save()
        return {"forgotten": gone}

    def _op_dns_state(self, req: dict) -> dict:
        """The cluster DNS add-on's API objects put in a state (lab/dns_addon.py, # dns faults)."""
        from clusterfix_tui.lab import dns_addon

        return dns_addon.set_state(self.api, self.info["nodes"], str(req["state"]))

    def _op_add_event(self, req: dict) -> dict:
        self.api.add_event(req["namespace"], req["involved"], req["reason"], req["message"],
                           req.get("type", "Warning"))
        return {}

    # -- loops -----------------------------------------------------------------------------------
    def controller_loop(self) -> None:
        next_tick = time.monotonic() + TICK
        while not self.stop.is_set():
            timeout = max(0.0, next_tick - time.monotonic())
            try:
                fn, args, fut = self.queue.get(timeout=timeout)
            except queue.Empty:
                next_tick = time.monotonic() + TICK
                try:
                    self.reconcile()
                except Exception:  # noqa: BLE001 - keep the controller alive, say why
                    log.exception("reconcile failed")
                continue
            try:
                fut.set_result(fn(*args))
            except Exception as e:  # noqa: BLE001
                log.exception("controller task %s failed", getattr(fn, "__name__", fn))
                fut.set_exception(e)

    def serve_control(self) -> None:
        path = self.dir / "control.sock"
        path.unlink(missing_ok=True)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            srv.bind(str(path))
        finally:
            os.umask(old)
        srv.listen(16)
        srv.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()
        srv.close()

    def _serve_conn(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                req = json.loads(data or b"{}")
                resp = self.handle_request(req)
            except Exception as e:  # noqa: BLE001
                resp = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            conn.sendall(json.dumps(resp).encode() + b"\n")


def _node_conditions(ready: bool) -> list[dict]:
    t = now_iso()
    conds = [{"type": c, "status": "False", "reason": f"KubeletHas{r}", "message": m,
              "lastHeartbeatTime": t, "lastTransitionTime": t}
             for c, r, m in (("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
                             ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                             ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"))]
    if ready:
        conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t})
    else:
        conds.append({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                      "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": t,
                      "lastTransitionTime": t})
    return conds


def _template(labels: dict, container: str, image: str, extra: dict) -> dict:
    c: dict[str, Any] = {"name": container, "image": image, "imagePullPolicy": "IfNotPresent"}
    if extra.get("command"):
        c["command"] = extra["command"]
    if extra.get("port"):
        c["ports"] = [{"containerPort": extra["port"], "protocol": "TCP",
                       **({"name": "http"} if container == "jellyfin" else {})}]
    if extra.get("probe"):
        c["readinessProbe"] = extra["probe"]
    spec: dict[str, Any] = {"containers": [c], "restartPolicy": "Always"}
    if extra.get("nodeSelector"):
        spec["nodeSelector"] = dict(extra["nodeSelector"])
    if extra.get("hostNetwork"):
        spec["hostNetwork"] = True
        spec["priorityClassName"] = "system-node-critical"
        spec["tolerations"] = [{"operator": "Exists"}]
    elif container != "jellyfin":
        spec["tolerations"] = [{"operator": "Exists"}]
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


def _app_log(pod: Pod) -> str:
    if pod.app == "jellyfin":
        return (f"[{now_iso()}] [INF] [1] Main: Jellyfin version: 10.10.3\n"
                f"[{now_iso()}] [INF] [1] Main: Kestrel listening on 0.0.0.0:{pod.port}\n"
                f"[{now_iso()}] [INF] [1] Main: Startup complete\n")
    return f"netexec: Started HTTP server on port {pod.port}\n"


JELLYFIN_PROBE = {"httpGet": {"path": "/", "port": JELLYFIN_PORT, "scheme": "HTTP"},
                  "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
                  "successThreshold": 1, "failureThreshold": 3}

CONFLIST = json.dumps({
    "name": "cbr0", "cniVersion": "0.3.1",
    "plugins": [{"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
                {"type": "portmap", "capabilities": {"portMappings": True}}],
}, indent=2) + "\n"

NET_CONF_DUAL = json.dumps({"Network": A.FLANNEL_NETWORK, "EnableIPv6": True,
                            "IPv6Network": A.FLANNEL_IPV6_NETWORK, "EnableNFTables": False,
                            "Backend": {"Type": "vxlan"}}, indent=2) + "\n"

NET_CONF = json.dumps({"Network": A.FLANNEL_NETWORK, "EnableNFTables": False,
                       "Backend": {"Type": "vxlan"}}, indent=2) + "\n"

KUBE_PROXY_CONF = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16
iptables:
  masqueradeAll: false
  masqueradeBit: 14
  minSyncPeriod: 1s
  syncPeriod: 30s
kind: KubeProxyConfiguration
mode: iptables
nodePortAddresses: null
"""

KUBE_PROXY_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
    server: https://10.96.0.1:443
  name: default
contexts:
- context:
    cluster: default
    namespace: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clusterfix_tui.lab.daemon")
    ap.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    lab_dir = Path(args.dir).resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    lab = Lab(lab_dir)
    signal.signal(signal.SIGTERM, lambda *_: lab.stop.set())
    signal.signal(signal.SIGINT, lambda *_: lab.stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=lab.serve_control, name="lab-control", daemon=True).start()
    try:
        lab.build()
    except BaseException as e:  # noqa: BLE001 - recorded for up(), which tears down
        log.error("lab bring-up failed: %s\n%s", e, traceback.format_exc())
        lab.info["state"] = "failed"
        lab.info["error"] = f"{type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            lab.save()
        with contextlib.suppress(Exception):
            if lab.api is not None:
                lab.api.stop()
        return 1
    ctl = threading.Thread(target=lab.controller_loop, name="lab-controller", daemon=True)
    ctl.start()
    while not lab.stop.is_set():
        lab.stop.wait(1.0)
    # `lab down` removes everything from lab.json (written atomically): nothing to wind down here.
    log.info("lab daemon exits")
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
