"""The cluster's shape: which CNI, how flannel and kube-proxy run, IP families, iptables per node.

Read once per diagnosis (core/diagnose.py): the API side from the snapshot (DaemonSets in every
namespace, mirror pods, ConfigMaps, node annotations/labels/podCIDRs), the node side from the facts
(binaries, ip6 routes, proxyMode on :10249, runtime sockets). Pure: no I/O here.

Then every finding code has a SCOPE: the shapes it applies to (`why_not(shape, code, node)` is None
when it applies, else the reason). Outside its scope a check produces no finding and a step no
action; `not_checked(shape)` lists what was left out and why, for the JSON and the diagnostics.

Shape words (stable, used in --json and the journal):
- cni: "flannel" | "calico" | "cilium" | "kube-router" | "other" | "unknown"
- flannel.deployment: "daemonset" | "embedded" (k3s/RKE2 run flannel inside their own process)
- flannel.backend: "vxlan" | "host-gw" | "wireguard" | "udp" | "ipip" | other string | None
- kube_proxy: "daemonset" | "static" (mirror pods) | "embedded" (k3s) | "absent" | "unknown"
- kube_proxy_mode: "iptables" | "ipvs" | "nftables" | "kernelspace" | None
- ip_family: "ipv4" | "ipv6" | "dual" (v4 first) | "dual-v6-first" | "mixed" | "unknown"
- node iptables: "both" (1.8+, -legacy and -nft) | "nft-only" | "legacy-only" |
  "single" (an iptables without -legacy/-nft variants: < 1.8) | "none" | "unknown"
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

# -- workload classification ----------------------------------------------------------------------

K3S_ANNOTATIONS = ("k3s.io/node-args", "k3s.io/hostname", "k3s.io/internal-ip", "k3s.io/node-config-hash")
RKE2_ANNOTATIONS = ("rke2.io/node-args", "rke2.io/hostname", "rke2.io/internal-ip",
                    "rke2.io/node-config-hash")
FLANNEL_ANNOTATION_PREFIX = "flannel.alpha.coreos.com/"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def image_name(image: str) -> str:
    """'docker.io/flannel/flannel:v0.26.1@sha256:..' -> 'flannel/flannel' (repo path, no registry
    host, no tag/digest)."""
    img = str(image or "").split("@", 1)[0]
    parts = img.split("/")
    last = parts[-1].split(":", 1)[0]
    parts[-1] = last
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts).lower()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _containers(obj: dict[str, Any], template: bool) -> list[dict[str, Any]]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    if template:
        spec = _dict(_dict(spec.get("template")).get("spec"))
    cs = spec.get("containers")
    return [c for c in cs if isinstance(c, dict)] if isinstance(cs, list) else []


# CNIs recognised by their DaemonSet (shape cni "other": none of flannel's checks or flows)
OTHER_CNIS = ("weave", "antrea", "kube-ovn", "aws-vpc-cni", "azure-cni", "ovn-kubernetes",
              "gke-dataplane-v2")


def component_of_images(images: list[str], names: list[str]) -> set[str]:
    """What a workload runs, from its (non-init) container images and names."""
    out: set[str] = set()
    for img, cname in zip(images, names, strict=False):
        n = image_name(img)
        base = n.rsplit("/", 1)[-1]
        if base == "kube-proxy" or base.endswith("-kube-proxy") or cname == "kube-proxy" and \
                ("kube-proxy" in n or "hardened-kubernetes" in n or "kubernetes" in n):
            out.add("kube-proxy")
        if (base == "flannel" or base.endswith("-flannel") or base.endswith("flanneld")) \
                and "cni-plugin" not in base:
            out.add("flannel")
        if "calico" in n and (base == "node" or base.endswith("calico-node")):
            out.add("calico")
        if base in ("cilium", "cilium-agent") or (n.startswith("cilium/") and base == "cilium"):
            out.add("cilium")
        if base == "kube-router":
            out.add("kube-router")
        if base in ("weave-kube", "weave-npc"):
            out.add("weave")
        # antrea/antrea-ubuntu (one image, < v1.15), antrea/antrea-agent-ubuntu and -ubi (v1.15+)
        if base in ("antrea-ubuntu", "antrea") or base.startswith("antrea-agent"):
            out.add("antrea")
        if base in ("kube-ovn",):
            out.add("kube-ovn")
        # CNIs of managed and other clusters that never use flannel's VXLAN: the Amazon VPC CNI
        # (aws-node: amazon-k8s-cni), Azure's CNS (azure-cns), ovn-kubernetes (ovn-kube-*)
        if base == "amazon-k8s-cni":
            out.add("aws-vpc-cni")
        if base == "azure-cns":
            out.add("azure-cni")
        if base.startswith("ovn-kube"):
            out.add("ovn-kubernetes")
        if "multus" in base:
            out.add("multus")
    return out


def classify_daemonset(ds: dict[str, Any]) -> set[str]:
    """Components a DaemonSet runs: 'flannel', 'calico', 'cilium', 'kube-proxy', 'kube-router',
    'multus', ... From its containers' images, then its k8s-app/app label (exact words only:
    a 'kube-proxy-exporter' is not kube-proxy)."""
    cs = _containers(ds, template=True)
    out = component_of_images([str(c.get("image") or "") for c in cs],
                              [str(c.get("name") or "") for c in cs])
    meta = _dict(ds.get("metadata"))
    labels = _dict(meta.get("labels"))
    for key in ("k8s-app", "app", "app.kubernetes.io/name"):
        v = str(labels.get(key) or "")
        if v in ("kube-proxy",):
            out.add("kube-proxy")
        elif v == "flannel":
            out.add("flannel")
        elif v == "calico-node":
            out.add("calico")
        elif v in ("cilium", "cilium-agent"):
            out.add("cilium")
        elif v == "kube-router":
            out.add("kube-router")
        elif v == "aws-node":
            out.add("aws-vpc-cni")
        elif v == "azure-cns":
            out.add("azure-cni")
        elif v == "ovnkube-node":
            out.add("ovn-kubernetes")
    name = str(meta.get("name") or "")
    if name == "ovnkube-node":
        out.add("ovn-kubernetes")
    if name == "anetd":  # GKE Dataplane V2's agent
        out.add("gke-dataplane-v2")
    if str(meta.get("name") or "") in ("canal", "rke2-canal") and "flannel" in out:
        out.add("canal")
    return out


def is_mirror_pod(meta: dict[str, Any]) -> bool:
    """A static pod's API copy: annotation kubernetes.io/config.mirror, or owned by a Node.
    Deleting it restarts nothing (the kubelet recreates the copy from its manifest)."""
    ann = _dict(meta.get("annotations"))
    if MIRROR_ANNOTATION in ann:
        return True
    owners = meta.get("ownerReferences")
    owners = owners if isinstance(owners, list) else []
    return any(isinstance(o, dict) and o.get("kind") == "Node" for o in owners)


# -- the shape ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadRef:
    kind: str  # "DaemonSet"
    namespace: str
    name: str
    uid: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class FlannelShape:
    deployment: str  # "daemonset" | "embedded"
    daemonset: WorkloadRef | None = None
    configmap: str | None = None  # "ns/name" the net-conf.json came from
    network: str | None = None
    ipv6_network: str | None = None
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    backend: str | None = None  # lower-case Backend.Type
    vxlan_port: int | None = None  # None: flannel's default (8472)
    vni: int | None = None
    direct_routing: bool = False
    distribution: str | None = None  # "k3s" | "rke2" when embedded
    source: str = ""  # where the backend was read

    @property
    def vxlan(self) -> bool:
        return (self.backend or "vxlan") == "vxlan"


@dataclass(frozen=True)
class NodeShape:
    name: str
    pod_cidrs: tuple[str, ...] = ()
    ip_family: str = "unknown"
    iptables: str = "unknown"
    iptables_version: str | None = None
    iptables_detail: str = ""
    container_runtime: str | None = None  # status.nodeInfo.containerRuntimeVersion
    docker: bool | None = None
    distribution: str | None = None  # "k3s" | "rke2" | "kubeadm" | None
    kube_proxy: str | None = None  # per node: "pod" | "static" | "embedded" | "answers" | None
    kube_proxy_mode: str | None = None  # from the node's :10249/proxyMode
    unreadable: tuple[str, ...] = ()  # what could not be read on this node (and why)
    # facts sections that did not come back complete (timed out, killed, cut off): (name, why);
    # every check that reads one of them is not checked on this node (why_not says so)
    not_read: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClusterShape:
    distribution: str = "unknown"  # "kubeadm" | "k3s" | "rke2" | "mixed" | "unknown"
    cni: str = "unknown"
    cni_detail: str = ""
    cni_workloads: tuple[str, ...] = ()  # "calico-system/calico-node", ...
    multus: bool = False
    flannel: FlannelShape | None = None
    kube_proxy: str = "unknown"
    kube_proxy_workload: WorkloadRef | None = None
    kube_proxy_mode: str | None = None
    kube_proxy_mode_source: str = ""
    ip_family: str = "unknown"
    nodes: dict[str, NodeShape] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()

    # -- questions the checks and steps ask ----------------------------------------------------
    @property
    def flannel_vxlan(self) -> bool:
        return self.cni == "flannel" and self.flannel is not None and self.flannel.vxlan

    def kube_proxy_present(self, node: str | None = None) -> bool:
        if node is not None:
            ns = self.nodes.get(node)
            if ns is not None and ns.kube_proxy:
                return True
        return self.kube_proxy in ("daemonset", "static", "embedded")

    def proxy_mode(self, node: str | None = None) -> str | None:
        ns = self.nodes.get(node) if node else None
        mode = (ns.kube_proxy_mode if ns else None) or self.kube_proxy_mode
        return mode

    def families(self, node: str | None = None) -> tuple[int, ...]:
        """IP versions pods use (on `node`, else anywhere), in podCIDR order."""
        seen: list[int] = []
        nodes = [self.nodes[node]] if node in self.nodes else list(self.nodes.values())
        for n in nodes:
            for c in n.pod_cidrs:
                v = _version(c)
                if v and v not in seen:
                    seen.append(v)
        return tuple(seen) or (4,)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def summary(self) -> dict[str, Any]:
        """Short form for --json's "shape" key and the journal's diagnosis event."""
        fl = self.flannel
        return {
            "distribution": self.distribution,
            "cni": self.cni, "cni_detail": self.cni_detail, "multus": self.multus,
            "flannel": None if fl is None else {
                "deployment": fl.deployment,
                "daemonset": fl.daemonset.ref if fl.daemonset else None,
                "backend": fl.backend, "vxlan_port": fl.vxlan_port,
                "direct_routing": fl.direct_routing, "network": fl.network,
                "ipv6_network": fl.ipv6_network, "source": fl.source},
            "kube_proxy": self.kube_proxy,
            "kube_proxy_workload": self.kube_proxy_workload.ref if self.kube_proxy_workload else None,
            "kube_proxy_mode": self.kube_proxy_mode,
            "kube_proxy_mode_source": self.kube_proxy_mode_source,
            "ip_family": self.ip_family,
            "nodes": {n: {"ip_family": s.ip_family, "pod_cidrs": list(s.pod_cidrs),
                          "iptables": s.iptables, "iptables_version": s.iptables_version,
                          "container_runtime": s.container_runtime, "docker": s.docker,
                          "distribution": s.distribution, "kube_proxy": s.kube_proxy,
                          "kube_proxy_mode": s.kube_proxy_mode,
                          "unreadable": list(s.unreadable),
                          "not_read": dict(s.not_read)}
                      for n, s in sorted(self.nodes.items())},
            "cni_repair_offered": self.cni == "flannel",
            "evidence": list(self.evidence),
        }

    def lines(self) -> list[str]:
        """Human lines for the connect/diagnostics screens and the report."""
        return summary_lines(self.summary())


def shape_line(shape: ClusterShape | None) -> str:
    """The shape in one line (the diagnostics screen's status), e.g. "flannel vxlan · kube-proxy
    daemonset iptables · kubeadm · ipv4 · iptables nft"."""
    if shape is None:
        return ""
    cni = shape.cni + (f" {shape.flannel.backend}" if shape.flannel is not None
                       and shape.flannel.backend and shape.cni in ("flannel", "canal") else "")
    if shape.flannel is not None and shape.flannel.deployment == "embedded":
        cni += " (embedded)"
    form = "" if shape.kube_proxy == "daemonset" else f" {shape.kube_proxy}"
    proxy = f"kube-proxy{form}" + (f" {shape.kube_proxy_mode}" if shape.kube_proxy_mode else "")
    kinds = sorted({n.iptables for n in shape.nodes.values() if n.iptables})
    parts = [cni, proxy, shape.distribution, shape.ip_family]
    if kinds:
        parts.append("iptables " + "/".join(kinds))
    unread = sorted(n for n, ns in shape.nodes.items() if ns.not_read)
    if unread:  # some checks skipped there (not_checked() says which and why)
        parts.append("not checked: facts not read on " + ", ".join(unread[:3])
                     + (f" +{len(unread) - 3}" if len(unread) > 3 else ""))
    return "shape: " + " · ".join(p for p in parts if p and p != "unknown")


def summary_lines(d: dict[str, Any] | None) -> list[str]:
    """The shape's human lines from its summary() dict (as the journal keeps it), so the report
    and the UI say the same thing the diagnosis said."""
    if not isinstance(d, dict):
        return []

    def g(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else None

    out = []
    fl = g(d, "flannel")
    cni = str(g(d, "cni_detail") or g(d, "cni") or "unknown")
    if isinstance(fl, dict):
        be = str(fl.get("backend") or "vxlan (default)")
        if fl.get("backend") == "vxlan" and (fl.get("direct_routing") or fl.get("vxlan_port")):
            be += (", DirectRouting" if fl.get("direct_routing") else "") + \
                (f", port {fl.get('vxlan_port')}" if fl.get("vxlan_port") else "")
        cni += f"; backend {be}"
    out.append(f"CNI: {cni}" + (" (+ multus)" if g(d, "multus") else ""))
    if g(d, "cni") != "flannel":
        out.append("CNI repair is not offered for this CNI (flannel only); host-level checks run")
    kp = str(g(d, "kube_proxy") or "unknown")
    if g(d, "kube_proxy_workload"):
        kp += f" ({g(d, 'kube_proxy_workload')})"
    src = g(d, "kube_proxy_mode_source")
    out.append(f"kube-proxy: {kp}, mode {g(d, 'kube_proxy_mode') or 'unknown'}"
               + (f" ({src})" if src else ""))
    out.append(f"distribution: {g(d, 'distribution') or 'unknown'}; "
               f"IP family: {g(d, 'ip_family') or 'unknown'}")
    nodes = g(d, "nodes")
    nodes = list(nodes.values()) if isinstance(nodes, dict) else []
    ipt = sorted({f"{g(n, 'iptables')}" + (f" {g(n, 'iptables_version')}" if g(n, "iptables_version")
                                            else "") for n in nodes})
    rt = sorted({str(g(n, "container_runtime") or "?").split(":", 1)[0]
                 + ("+docker" if g(n, "docker") else "") for n in nodes})
    out.append(f"iptables: {', '.join(ipt) or '?'}; runtime: {', '.join(rt) or '?'}")
    return out


def _version(cidr: str) -> int | None:
    return _version_of(str(cidr))


@functools.lru_cache(maxsize=4096)  # every node's podCIDRs and addresses: parsed once per text
def _version_of(text: str) -> int | None:
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return None


def family_word(cidrs: tuple[str, ...] | list[str]) -> str:
    vs = [v for v in (_version(c) for c in cidrs) if v]
    if not vs:
        return "unknown"
    if set(vs) == {4}:
        return "ipv4"
    if set(vs) == {6}:
        return "ipv6"
    return "dual" if vs[0] == 4 else "dual-v6-first"


# -- reading it -----------------------------------------------------------------------------------


def parse_net_conf(text: str | None) -> dict[str, Any] | None:
    try:
        conf = json.loads(str(text or ""))
    except ValueError:
        return None
    return conf if isinstance(conf, dict) else None


def _ci(d: Any) -> dict[str, Any]:
    """A JSON object with lower-cased keys: flannel reads net-conf.json with Go's
    case-insensitive field matching ("DirectRouting", "Directrouting", "directRouting" and
    "network" all work there, and all occur in real configs)."""
    return {str(k).lower(): v for k, v in d.items()} if isinstance(d, dict) else {}


def flannel_from_net_conf(conf: dict[str, Any] | None, **kw: Any) -> FlannelShape:
    conf = _ci(conf)
    be = _ci(conf.get("backend"))
    btype = be.get("type")

    def _int(v: Any) -> int | None:
        try:
            return int(v) if v not in (None, "", 0, "0") else None
        except (TypeError, ValueError):
            return None

    return FlannelShape(
        network=conf.get("network") if isinstance(conf.get("network"), str) else None,
        ipv6_network=conf.get("ipv6network") if isinstance(conf.get("ipv6network"), str) else None,
        enable_ipv4=conf.get("enableipv4", True) is not False,
        enable_ipv6=conf.get("enableipv6") is True,
        backend=str(btype).lower() if btype else None,
        vxlan_port=_int(be.get("port")), vni=_int(be.get("vni")),
        direct_routing=be.get("directrouting") is True, **kw)


def node_distribution(info: Any) -> str | None:
    ann = getattr(info, "annotations", {}) or {}
    labels = getattr(info, "labels", {}) or {}
    ver = str(getattr(info, "kubelet_version", "") or "")
    if "+rke2" in ver or any(a in ann for a in RKE2_ANNOTATIONS) or \
            labels.get("node.kubernetes.io/instance-type") == "rke2":
        return "rke2"
    if "+k3s" in ver or any(a in ann for a in K3S_ANNOTATIONS) or \
            labels.get("node.kubernetes.io/instance-type") == "k3s":
        return "k3s"
    if "kubeadm.alpha.kubernetes.io/cri-socket" in ann or \
            any(k.startswith("node-role.kubernetes.io/") for k in labels):
        return "kubeadm"
    return None


def _node_args(info: Any) -> list[str]:
    ann = getattr(info, "annotations", {}) or {}
    for key in ("k3s.io/node-args", "rke2.io/node-args"):
        raw = ann.get(key)
        if raw:
            try:
                v = json.loads(raw)
            except ValueError:
                return raw.split()
            return [str(x) for x in v] if isinstance(v, list) else []
    return []


def _arg_values(args: list[str], name: str) -> list[str]:
    """Every value of --name (--name=value or --name value), in order. k3s's node-args is a JSON
    list of words: its command line with /etc/rancher/k3s/config.yaml and config.yaml.d/*.yaml
    merged in (k3s nodeconfig.getNodeArgs: configfilearg.MustParse(os.Args[1:]), each
    `--name=value` split in two), so a `kube-proxy-arg:` list there is one `--kube-proxy-arg`
    pair per item, and the command line's own come after the file's."""
    out: list[str] = []
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(name + "="):
            out.append(a.split("=", 1)[1])
    return out


def _arg_value(args: list[str], name: str) -> str | None:
    """The value of a single-valued --name: the last one given (k3s, like any flag parser, takes
    the last; the command line's come after config.yaml's)."""
    vals = _arg_values(args, name)
    return vals[-1] if vals else None


def _component_arg(args: list[str], flag: str, name: str) -> str | None:
    """The value k3s passes to a component for `name` through a repeatable `flag`
    (`--kube-proxy-arg proxy-mode=ipvs`, `--kube-proxy-arg=--proxy-mode=ipvs`): the last one."""
    val = None
    for v in _arg_values(args, flag):
        key, sep, rest = v.lstrip("-").partition("=")
        if sep and key == name:
            val = rest
    return val


def _has_flag(args: list[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") and a.split("=", 1)[1] not in ("false", "0")
               for a in args)


MODE_LOG = re.compile(r"Using (iptables|ipvs|nftables|kernelspace|userspace) [Pp]rox", re.I)


def _ds_ref(ds: dict[str, Any]) -> WorkloadRef:
    m = _dict(ds.get("metadata")) or ds
    return WorkloadRef("DaemonSet", str(m.get("namespace") or ds.get("namespace") or ""),
                       str(m.get("name") or ds.get("name") or ""),
                       (m.get("uid") or ds.get("uid")) or None)


def detect_shape(snapshot: Any, facts_by_node: dict[str, Any] | None = None) -> ClusterShape:
    """The shape from a ClusterSnapshot (any object with its attributes) and the nodes' facts.
    Never raises on odd input; what it could not tell stays "unknown"."""
    facts_by_node = facts_by_node or {}
    evidence: list[str] = []
    nodes = getattr(snapshot, "nodes", {}) or {}
    daemonsets = list(getattr(snapshot, "daemonsets", ()) or ())

    # DaemonSets by role
    roles: dict[str, list[dict[str, Any]]] = {}
    for ds in daemonsets:
        comps = ds.get("components")
        if comps is None:
            comps = classify_daemonset(ds.get("object") or {"metadata": {
                "name": ds.get("name"), "namespace": ds.get("namespace"),
                "labels": ds.get("labels") or {}}})
        for c in comps:
            roles.setdefault(c, []).append(ds)

    # distribution
    dists = {n: node_distribution(info) for n, info in nodes.items()}
    dset = {d for d in dists.values() if d}
    distribution = (dset.pop() if len(dset) == 1 else "mixed") if dset else "unknown"
    if distribution == "unknown" and roles.get("kube-proxy"):
        distribution = "kubeadm"

    # CNI
    cni, detail, workloads = "unknown", "", []
    flannel: FlannelShape | None = None
    net_conf = getattr(snapshot, "flannel_net_conf", None)
    cm_ref = getattr(snapshot, "flannel_configmap", None)
    if roles.get("cilium"):
        cni = "cilium"
    elif roles.get("calico") and not roles.get("flannel"):
        cni = "calico"
    elif roles.get("flannel"):
        cni = "flannel"
    elif roles.get("kube-router"):
        cni = "kube-router"
    elif any(roles.get(k) for k in OTHER_CNIS):
        cni = "other"
    if cni in roles or (cni == "other"):
        key = cni if cni in roles else next(k for k in OTHER_CNIS if roles.get(k))
        workloads = [f"{d.get('namespace')}/{d.get('name')}" for d in roles[key]]
        detail = f"{key} (DaemonSet {', '.join(workloads)})"
        if key == "flannel" and any("canal" in (d.get("components") or ()) for d in roles[key]):
            detail = f"flannel via canal (DaemonSet {', '.join(workloads)}; calico for policy)"
        evidence.append(f"DaemonSet(s) {', '.join(workloads)} run {key}")
    if cni == "flannel":
        ds = roles["flannel"][0]
        flannel = flannel_from_net_conf(net_conf, deployment="daemonset", daemonset=_ds_ref(ds),
                                        configmap=cm_ref,
                                        source=f"ConfigMap {cm_ref} net-conf.json" if cm_ref
                                        else "no net-conf.json found (flannel defaults: vxlan)")
    elif cni == "unknown":
        # flannel embedded in k3s / RKE2: no DaemonSet, the nodes carry flannel's annotations
        fl_nodes = [n for n, info in nodes.items()
                    if any(k.startswith(FLANNEL_ANNOTATION_PREFIX) for k in (info.annotations or {}))]
        emb = [n for n in fl_nodes if dists.get(n) in ("k3s", "rke2")]
        disabled = [n for n in emb if (_arg_value(_node_args(nodes[n]), "--flannel-backend") or "")
                    == "none"]
        if emb and not disabled:
            cni = "flannel"
            dist = dists.get(emb[0])
            info = nodes[emb[0]]
            btype = (info.annotations or {}).get("flannel.alpha.coreos.com/backend-type")
            arg_backend = _arg_value(_node_args(info), "--flannel-backend")
            conf = None
            for n in emb:
                f = facts_by_node.get(n)
                for _p, text in sorted((getattr(f, "flannel_confs", None) or {}).items()):
                    conf = parse_net_conf(text)
                    if conf:
                        break
                if conf:
                    break
            if conf:
                flannel = flannel_from_net_conf(conf, deployment="embedded", distribution=dist,
                                                source=f"{dist} net-conf.json on the node")
            else:
                be = arg_backend or btype or "vxlan"
                be = {"wireguard-native": "wireguard", "extension": "wireguard"}.get(be, be)
                flannel = FlannelShape(deployment="embedded", distribution=dist,
                                       backend=be.lower(),
                                       source=("--flannel-backend in node-args" if arg_backend else
                                               "node annotation flannel.alpha.coreos.com/backend-type"
                                               if btype else f"{dist} default (vxlan)"))
            detail = f"flannel embedded in {dist}"
            evidence.append(f"nodes {', '.join(sorted(emb))}: {dist} with flannel annotations, no "
                            "flannel DaemonSet")
        elif fl_nodes:
            evidence.append(f"nodes {', '.join(sorted(fl_nodes))} carry flannel annotations but no "
                            "flannel runs as a DaemonSet nor embedded (leftovers of a migration?)")
    if roles.get("multus"):
        evidence.append("multus DaemonSet present (meta-plugin: delegates to the CNI)")

    # kube-proxy
    kp, kp_ref = "unknown", None
    kp_ds = roles.get("kube-proxy") or []
    mirror_kp = [p for p in getattr(snapshot, "kube_proxy_static_pods", ()) or ()]
    if kp_ds:
        kp, kp_ref = "daemonset", _ds_ref(kp_ds[0])
        evidence.append(f"kube-proxy runs as DaemonSet {kp_ref.ref}")
    elif mirror_kp:
        kp = "static"
        evidence.append("kube-proxy runs as static pods (mirror pods "
                        + ", ".join(sorted(p.ref for p in mirror_kp)[:3]) + ")")
    else:
        k3s_nodes = [n for n, d in dists.items() if d == "k3s"]
        if k3s_nodes:
            off = [n for n in k3s_nodes if _has_flag(_node_args(nodes[n]), "--disable-kube-proxy")]
            kp = "absent" if len(off) == len(k3s_nodes) else "embedded"
            evidence.append("k3s runs kube-proxy in its own process" if kp == "embedded"
                            else "k3s started with --disable-kube-proxy")
        elif cni == "cilium" or nodes:
            kp = "absent"
    answers = [n for n, f in facts_by_node.items() if getattr(f, "kube_proxy_mode", None)]
    if kp == "absent" and answers:
        kp = "embedded"  # something answers :10249/proxyMode on the node: a kube-proxy runs there
        evidence.append(f"kube-proxy answers :10249/proxyMode on {', '.join(sorted(answers))} "
                        "but no kube-proxy pod exists (a host process)")

    # kube-proxy mode: ConfigMap, k3s args, the node's :10249, the logs
    mode, msrc = None, ""
    cm_mode = getattr(snapshot, "kube_proxy_mode", None)
    if getattr(snapshot, "kube_proxy_config_found", False) and cm_mode is not None:
        mode, msrc = (cm_mode or "iptables"), ("ConfigMap kube-proxy config.conf" +
                                                ("" if cm_mode else " (mode empty: iptables)"))
    node_modes = {n: str(getattr(f, "kube_proxy_mode", "") or "").strip().lower()
                  for n, f in facts_by_node.items()}
    node_modes = {n: m for n, m in node_modes.items()
                  if m in ("iptables", "ipvs", "nftables", "kernelspace", "userspace")}
    if node_modes:
        vals = sorted(set(node_modes.values()))
        if mode is None or len(vals) == 1 and vals[0] != mode:
            mode, msrc = vals[0], ":10249/proxyMode on the nodes"
    if mode is None:
        for info in nodes.values():
            v = _component_arg(_node_args(info), "--kube-proxy-arg", "proxy-mode")
            if v:
                mode, msrc = v.strip().lower(), "k3s --kube-proxy-arg"
                break
    if mode is None:
        for pods in (getattr(snapshot, "kube_proxy_pods", {}) or {}).values():
            for p in pods:
                for line in list(p.log_tail) + list(p.previous_log_tail):
                    m = MODE_LOG.search(line)
                    if m:
                        mode, msrc = m.group(1).lower(), f"log of {p.ref}"
                        break
                if mode:
                    break
            if mode:
                break
    if mode is None and kp in ("daemonset", "static", "embedded"):
        mode, msrc = "iptables", "default (no ConfigMap, no answer on :10249)"

    # nodes
    node_shapes: dict[str, NodeShape] = {}
    kp_pods = getattr(snapshot, "kube_proxy_pods", {}) or {}
    for name, info in nodes.items():
        cidrs = tuple(getattr(info, "pod_cidrs", ()) or ((info.pod_cidr,) if info.pod_cidr else ()))
        f = facts_by_node.get(name)
        ipt, ver, detail_i, unread = node_iptables(f)
        rt = getattr(info, "container_runtime", None)
        docker = None
        if f is not None and (getattr(f, "binaries", None) or getattr(f, "paths", None)):
            docker = "docker" in f.binaries or any("docker.sock" in p for p in f.paths)
        node_kp = None
        pods = kp_pods.get(name) or []
        if pods:
            node_kp = "static" if any(getattr(p, "mirror", False) for p in pods) else "pod"
        elif kp == "embedded":
            node_kp = "embedded"
        elif f is not None and getattr(f, "kube_proxy_mode", None):
            node_kp = "answers"
        nmode = node_modes.get(name) or mode
        if f is not None and nmode == "ipvs":
            vs = ipvs_virtual_servers(f)
            if vs is None:
                unread.append("IPVS virtual servers: /proc/net/ip_vs was not read (kube-proxy's ipvs "
                              "state is not checked on this node)")
        node_shapes[name] = NodeShape(
            name=name, pod_cidrs=cidrs, ip_family=family_word(cidrs), iptables=ipt,
            iptables_version=ver, iptables_detail=detail_i, container_runtime=rt, docker=docker,
            distribution=dists.get(name), kube_proxy=node_kp,
            kube_proxy_mode=node_modes.get(name), unreadable=tuple(unread),
            not_read=tuple(sorted(f.unread_sections().items()))
            if f is not None and hasattr(f, "unread_sections") else ())
    fams = {s.ip_family for s in node_shapes.values() if s.ip_family != "unknown"}
    ip_family = fams.pop() if len(fams) == 1 else ("mixed" if fams else "unknown")

    return ClusterShape(
        distribution=distribution, cni=cni, cni_detail=detail or cni, cni_workloads=tuple(workloads),
        multus=bool(roles.get("multus")), flannel=flannel, kube_proxy=kp,
        kube_proxy_workload=kp_ref, kube_proxy_mode=mode, kube_proxy_mode_source=msrc,
        ip_family=ip_family, nodes=node_shapes, evidence=tuple(evidence))


def ipvs_virtual_servers(f: Any) -> int | None:
    """How many IPVS virtual servers /proc/net/ip_vs lists on the node: 0 when the file is
    missing (ip_vs not loaded: nothing can be programmed), None when it was not read at all."""
    sec = f.section("ip_vs") if hasattr(f, "section") else None
    if sec is None:
        return None
    if sec.rc != 0:
        return 0 if "No such file" in (sec.stderr or "") else None
    return sum(1 for ln in (sec.stdout or "").splitlines()
               if ln.split()[:1] and ln.split()[0] in ("TCP", "UDP", "SCTP", "FWM"))


def node_iptables(f: Any) -> tuple[str, str | None, str, list[str]]:
    """(kind, version, detail, unreadable) of a node's iptables from its facts."""
    if f is None:
        return "unknown", None, "node not read", []
    ver_obj = getattr(f, "iptables_version", None)
    ver = getattr(ver_obj, "version", None)
    bins = getattr(f, "binaries", None) or {}
    sections = getattr(f, "sections", {}) or {}

    def ok(name: str) -> bool | None:
        s = sections.get(name)
        if s is None:
            return None
        return s.rc != 127

    if bins:
        legacy = "iptables-legacy-save" in bins or "iptables-legacy" in bins
        nft = "iptables-nft-save" in bins or "iptables-nft" in bins
        plain = "iptables" in bins or "iptables-save" in bins
    else:  # facts from before the binaries section: judge by the sections' rc
        legacy = bool(ok("legacy_save"))
        nft = bool(ok("nft_save_nat"))
        plain = bool(ok("iptables_version")) or ok("iptables_save") is True
    unread: list[str] = []
    if legacy and nft:
        kind = "both"
    elif nft:
        kind = "nft-only"
        unread.append("no iptables-legacy: the legacy backend could not be read")
    elif legacy:
        kind = "legacy-only"
        unread.append("no iptables-nft: the nft backend's iptables view could not be read")
    elif plain:
        kind = "single"
        unread.append(f"iptables {ver or '?'} has no -legacy/-nft variants: read with its own "
                      "iptables-save only; the backend split and kube-proxy's backend cannot be "
                      "told")
        s = sections.get("iptables_save")
        if s is not None and s.rc not in (0,):
            unread.append(f"iptables-save failed (rc {s.rc}): {(s.stderr or '').strip()[:200]}")
    else:
        kind = "none"
        unread.append("no iptables binary on the node")
    detail = (getattr(ver_obj, "text", None) or "") + f" [{kind}]"
    return kind, ver, detail.strip(), unread


# -- applicability --------------------------------------------------------------------------------

FLANNEL_VXLAN_CODES = ("FLANNEL_STALE_VTEP", "FLANNEL_MISSING_ROUTE", "FLANNEL_STALE_SUBNET",
                       "FLANNEL_MTU_MISMATCH")
FLANNEL_CODES = ("CNI_BRIDGE_CONFLICT", "CNI_STRAY_CONFLIST", "FLANNEL_CRASHLOOP")
KUBE_PROXY_IPTABLES_CODES = ("KUBE_PROXY_NO_RULES",)
KUBE_PROXY_CODES = ("KUBE_PROXY_CRASHLOOP", "KUBE_PROXY_INCOMPATIBLE_CHAIN",
                    "IPTABLES_BACKEND_CONFLICT")

# What each code needs (the declaration docs/findings.md documents). Codes not listed apply to
# every shape (host-level, API-level and connectivity findings).
SCOPES: dict[str, str] = {
    "FLANNEL_STALE_VTEP": "flannel with the vxlan backend",
    "FLANNEL_MISSING_ROUTE": "flannel with the vxlan backend",
    "FLANNEL_STALE_SUBNET": "flannel with the vxlan backend",
    "FLANNEL_MTU_MISMATCH": "flannel with the vxlan backend",
    "CNI_BRIDGE_CONFLICT": "flannel (its cni0 bridge)",
    "CNI_STRAY_CONFLIST": "flannel (its conflist in the CNI dir)",
    "FLANNEL_LINK_DOWN": "flannel (its cni0 bridge; flannel.1 / flannel-v6.1 with vxlan)",
    "FLANNEL_CRASHLOOP": "flannel running as a DaemonSet",
    "KUBE_PROXY_CRASHLOOP": "kube-proxy running as pods (DaemonSet or static)",
    "KUBE_PROXY_NO_RULES": "kube-proxy present, in iptables, nftables or ipvs mode",
    "KUBE_PROXY_INCOMPATIBLE_CHAIN": "kube-proxy present (iptables/ipvs mode) and iptables-nft on the node",
    "IPTABLES_BACKEND_CONFLICT": "kube-proxy present (iptables/ipvs mode) and both iptables backends on the node",
    "IPVS_MODULES_MISSING": "kube-proxy in ipvs mode",
    "KUBE_PROXY_SHADOWED": "kube-proxy present, in iptables mode",
    "BR_NETFILTER_OFF": "a CNI that bridges pods (flannel, kube-router, other/unknown); not calico or cilium",
    "IPV6_FORWARD_OFF": "nodes with an IPv6 podCIDR (IPv6 pod traffic)",
    "BR_NETFILTER_IP6_OFF": "a CNI that bridges pods, on nodes with an IPv6 podCIDR",
}


def why_not(shape: ClusterShape | None, code: str, node: str | None = None,
            data: dict[str, Any] | None = None) -> str | None:
    """None when `code` applies to this shape (on `node`) and can be checked there, else why
    not: out of its scope, or a facts section its check reads was not read on the node."""
    why = _out_of_scope(shape, code, node)
    if why is None and shape is not None and node is not None:
        ns = shape.nodes.get(node)
        if ns is not None and ns.not_read:
            why = not_read_why(code, ns)
    return why


def not_read_why(code: str, ns: NodeShape) -> str | None:
    """Why `code` is not checked on this node because of its facts: the sections its check
    reads (checks.sections_read) that did not come back complete; None when all did."""
    from clusterfix_tui.core.checks import not_read

    missing = not_read(code, dict(ns.not_read))
    if not missing:
        return None
    return "; ".join(f"{s} {why}" for s, why in missing) + " (its facts were not read)"


def _out_of_scope(shape: ClusterShape | None, code: str, node: str | None) -> str | None:
    if shape is None or code not in SCOPES:
        return None
    ns = shape.nodes.get(node) if node else None
    if code in FLANNEL_VXLAN_CODES or code in ("CNI_BRIDGE_CONFLICT", "CNI_STRAY_CONFLIST",
                                                 "FLANNEL_LINK_DOWN"):
        if shape.cni != "flannel":
            return f"the CNI is {shape.cni_detail or shape.cni}, not flannel"
        if code in ("CNI_BRIDGE_CONFLICT", "CNI_STRAY_CONFLIST") and \
                shape.cni_detail.startswith("flannel via canal"):
            # canal: calico's CNI plugin wires the pods from its own 10-canal.conflist (routed
            # cali* veths, no cni0); flannel's conflist and bridge are not in use, and a leftover
            # 10-flannel.conflist would make canal's own config look "stray" before it
            return ("the CNI is canal: calico's CNI plugin and its 10-canal.conflist, no flannel "
                    "bridge or conflist in use")
        if code in FLANNEL_VXLAN_CODES and not shape.flannel_vxlan:
            return (f"flannel runs the {shape.flannel.backend if shape.flannel else '?'} backend, "
                    "not vxlan")
        return None
    if code == "FLANNEL_CRASHLOOP":
        if shape.cni != "flannel":
            return f"the CNI is {shape.cni_detail or shape.cni}, not flannel"
        if shape.flannel is not None and shape.flannel.deployment != "daemonset":
            return f"flannel is embedded in {shape.flannel.distribution or 'the distribution'}: no pods"
        return None
    if code == "KUBE_PROXY_CRASHLOOP":
        if shape.kube_proxy not in ("daemonset", "static"):
            return f"kube-proxy is {shape.kube_proxy}: no kube-proxy pods"
        return None
    if code in ("KUBE_PROXY_NO_RULES", "KUBE_PROXY_INCOMPATIBLE_CHAIN", "IPTABLES_BACKEND_CONFLICT",
                "IPVS_MODULES_MISSING", "KUBE_PROXY_SHADOWED"):
        if not shape.kube_proxy_present(node):
            return f"kube-proxy is {shape.kube_proxy}" + (
                " (a kube-proxy replacement handles Services)" if shape.cni in ("cilium", "kube-router")
                else "")
        mode = shape.proxy_mode(node)
        if code == "IPVS_MODULES_MISSING":
            return None if mode == "ipvs" else f"kube-proxy mode is {mode or 'unknown'}, not ipvs"
        if code == "KUBE_PROXY_SHADOWED":
            return None if mode in ("iptables", None) else f"kube-proxy mode is {mode}, not iptables"
        if code == "KUBE_PROXY_NO_RULES" and mode not in ("iptables", "nftables", "ipvs", None):
            return f"kube-proxy mode is {mode}: its rules are not checked"
        if code != "KUBE_PROXY_NO_RULES" and mode not in ("iptables", "ipvs", None):
            return f"kube-proxy mode is {mode}: it programs no iptables rules"
        if ns is not None:
            if code == "IPTABLES_BACKEND_CONFLICT" and ns.iptables not in ("both", "unknown"):
                return f"iptables on the node is {ns.iptables}: one backend only"
            if code == "KUBE_PROXY_INCOMPATIBLE_CHAIN" and ns.iptables in ("legacy-only", "single", "none"):
                return f"iptables on the node is {ns.iptables}: no iptables-nft"
        return None
    if code in ("BR_NETFILTER_OFF", "BR_NETFILTER_IP6_OFF"):
        if shape.cni in ("calico", "cilium"):
            return f"the CNI is {shape.cni}: routed pod interfaces, no Linux bridge to filter"
        if shape.cni == "flannel" and shape.cni_detail.startswith("flannel via canal"):
            # canal: calico's CNI plugin wires the pods (cali* veths, routed), flannel only
            # carries the traffic between nodes (its canal-config cni_network_config: "calico")
            return "the CNI is canal: calico's routed pod interfaces, no Linux bridge to filter"
        if code == "BR_NETFILTER_IP6_OFF":
            return _no_v6(shape, node)
        return None
    if code == "IPV6_FORWARD_OFF":
        return _no_v6(shape, node)
    return None


def _no_v6(shape: ClusterShape, node: str | None) -> str | None:
    """None when pods on `node` (any node when None) have an IPv6 podCIDR, else why not."""
    if 6 in shape.families(node):
        return None
    return "no IPv6 podCIDR on the node (no IPv6 pod traffic)" if node else "no IPv6 podCIDR"


def not_checked(shape: ClusterShape | None) -> list[dict[str, Any]]:
    """What was not checked on this shape and why: [{"codes", "why", "nodes"}], one per reason."""
    if shape is None:
        return []
    groups: dict[str, dict[str, Any]] = {}
    # membership by set (a list scan per code x node was quadratic in the nodes)
    seen: dict[str, tuple[set[str], set[str]]] = {}
    names: list[str | None] = [*sorted(shape.nodes)] or [None]
    for code in SCOPES:
        for node in names:
            why = _out_of_scope(shape, code, node)
            if why is None:
                continue
            g = groups.setdefault(why, {"codes": [], "why": why, "nodes": []})
            codes, nodes = seen.setdefault(why, (set(), set()))
            if code not in codes:
                codes.add(code)
                g["codes"].append(code)
            if node and node not in nodes:
                nodes.add(node)
                g["nodes"].append(node)
    out = list(groups.values())
    if shape.cni != "flannel":
        out.append({"codes": [], "nodes": [],
                    "why": f"CNI repair is not offered: the CNI is {shape.cni_detail or shape.cni} "
                           "(only flannel's state is repaired); host-level checks still run"})
    for n, ns in sorted(shape.nodes.items()):
        for u in ns.unreadable:
            out.append({"codes": [], "nodes": [n], "why": f"could not read: {u}"})
    # checks whose facts did not come back complete on a node (a section that timed out):
    # no finding there, whatever the empty view would have said
    if any(ns.not_read for ns in shape.nodes.values()):
        from clusterfix_tui.core.checks import sections_read

        read_groups: dict[str, dict[str, Any]] = {}
        for n, ns in sorted(shape.nodes.items()):
            if not ns.not_read:
                continue
            for code in sections_read():
                if _out_of_scope(shape, code, n) is not None:
                    continue  # already listed above with its scope reason
                why = not_read_why(code, ns)
                if why is None:
                    continue
                g = read_groups.setdefault(why, {"codes": [], "why": why, "nodes": []})
                if code not in g["codes"]:
                    g["codes"].append(code)
                if n not in g["nodes"]:
                    g["nodes"].append(n)
        out.extend(read_groups.values())
    return out


def note_lines(shape: ClusterShape | None) -> list[str]:
    out = []
    for g in not_checked(shape):
        codes = (", ".join(g["codes"]) + ": ") if g["codes"] else ""
        nodes = g["nodes"]
        where = f" (on {', '.join(nodes)})" if nodes and len(nodes) < len(shape.nodes if shape else ()) else ""
        out.append(f"not checked: {codes}{g['why']}{where}")
    return out


def shape_of(obj: Any) -> ClusterShape | None:
    """The shape carried by a diagnosis or a snapshot (None when there is none)."""
    s = getattr(obj, "shape", None)
    if isinstance(s, ClusterShape):
        return s
    snap = getattr(obj, "snapshot", None)
    s = getattr(snap, "shape", None)
    return s if isinstance(s, ClusterShape) else None


def scoped_findings(diagnosis: Any, findings: list[Any]) -> tuple[list[Any], list[str]]:
    """A step's view of its findings: those inside their shape scope, and a note for each one
    left out (a step never acts outside the shapes its findings apply to)."""
    shape = shape_of(diagnosis)
    kept, notes = [], []
    for f in findings:
        why = why_not(shape, f.code, f.node, getattr(f, "data", None))
        if why is None:
            kept.append(f)
        else:
            notes.append(f"{f.node}: {f.code} not acted on: {why}")
    return kept, notes


# -- the service that runs embedded flannel / kube-proxy on a node ---------------------------------

# distribution -> its units (server, agent); the names core/facts.py asks `systemctl is-active` about
SERVICE_UNITS = {"k3s": ("k3s", "k3s-agent"), "rke2": ("rke2-server", "rke2-agent")}
UNIT_ORDER = ("k3s", "k3s-agent", "rke2-server", "rke2-agent")  # = core.facts.SERVICE_UNITS


def service_unit_states(f: Any) -> dict[str, str] | None:
    """{unit: state} from the node's `systemctl is-active k3s k3s-agent rke2-server rke2-agent`
    (one state per unit, in that order); None when it was not read or did not answer per unit
    (no systemctl, no systemd, timed out, facts from before this section)."""
    sec = f.section("service_units") if f is not None and hasattr(f, "section") else None
    if sec is None or sec.rc is None or sec.missing_tool or sec.timed_out:
        return None
    states = [ln.strip() for ln in sec.stdout.splitlines() if ln.strip()]
    if len(states) != len(UNIT_ORDER) or any(" " in s for s in states):
        return None
    return dict(zip(UNIT_ORDER, states, strict=True))


def embedded_service_unit(f: Any, distribution: str | None) -> tuple[str | None, str]:
    """(the systemd unit that runs the node's embedded flannel, why) -- chosen from what the node
    runs (`systemctl is-active`), never from its name or role. None, with the reason, when the
    states were not read, when no unit of the distribution is active, or when more than one is."""
    candidates = SERVICE_UNITS.get(distribution or "") or UNIT_ORDER
    words = ", ".join(candidates)
    states = service_unit_states(f)
    if states is None:
        sec = f.section("service_units") if f is not None and hasattr(f, "section") else None
        how = "not read" if sec is None else (
            (sec.stderr or sec.stdout).strip().splitlines()[-1:] or [f"rc={sec.rc}"])[0]
        return None, (f"which of {words} runs on the node could not be read "
                      f"(`systemctl is-active`: {how})")
    active = [u for u in candidates if states.get(u) == "active"]
    seen = ", ".join(f"{u} {states.get(u, '?')}" for u in candidates)
    if len(active) == 1:
        return active[0], f"`systemctl is-active`: {seen}"
    if not active:
        return None, f"no {distribution or 'k3s/RKE2'} service is active on the node ({seen})"
    return None, f"more than one service is active on the node ({seen}): which one runs flannel is unclear"


CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


def sole_control_plane(diagnosis: Any, node: str) -> bool:
    """`node` is the cluster's only control-plane node as the API's node labels show it (k3s and
    RKE2 label their servers node-role.kubernetes.io/control-plane and master): restarting its
    k3s/RKE2 server unit takes the Kubernetes API down for everyone. False when not known."""
    snap = getattr(diagnosis, "snapshot", None)
    nodes = getattr(snap, "nodes", None)
    if not isinstance(nodes, dict) or node not in nodes:
        return False

    def cp(info: Any) -> bool:
        labels = getattr(info, "labels", None) or {}
        return any(k in labels for k in CONTROL_PLANE_LABELS)

    return cp(nodes[node]) and sum(1 for info in nodes.values() if cp(info)) == 1


def node_iptables_kind(diagnosis: Any, node: str) -> str:
    """The node's iptables kind from the diagnosis' shape ("unknown" without one)."""
    shape = shape_of(diagnosis)
    ns = shape.nodes.get(node) if shape is not None else None
    return ns.iptables if ns is not None else "unknown"
