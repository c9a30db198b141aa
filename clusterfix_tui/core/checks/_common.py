"""Helpers shared by the checks: pure, no I/O."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.parsers import IptablesSave, Table
from clusterfix_tui.core.snapshot import ClusterSnapshot

DEFAULT_POD_NETWORK = "10.244.0.0/16"

# The facts sections (core/facts.py) behind the node's iptables view: the saves of both backends
# and both families (kube-proxy's backend is decided from all of them, iptables-wrappers' rule),
# and what says which iptables the node runs. Each check module declares READS: finding code ->
# the sections it reads; when one of them was not read on a node (timed out, killed, cut off),
# that code is not checked there (checks.run_checks drops it, core.shape.not_checked says so).
IPTABLES_SECTIONS = ("iptables_version", "alternatives", "alternatives_link", "iptables_link",
                     "legacy_save", "nft_save_nat", "nft_save_filter", "nft_save_mangle",
                     "ip6_nft_save_mangle", "ip6_nft_save_nat", "ip6_nft_save_filter",
                     "ip6_legacy_save", "iptables_save", "ip6tables_save")


def find_line(text: str, *needles: str) -> str | None:
    """The first line of `text` containing every needle (for exact evidence lines)."""
    for line in (text or "").splitlines():
        if all(n in line for n in needles):
            return line.strip()
    return None


def in_net(ip: str | None, cidr: str | None) -> bool:
    i, c = str(ip), str(cidr)
    if len(i) <= 64 and len(c) <= 64:  # the same answers, parsed once per distinct text
        addr, net = _iface_ip(i), _net_of(c)
        return addr is not None and net is not None and addr in net
    try:
        return ipaddress.ip_interface(i).ip in ipaddress.ip_network(c, strict=False)
    except ValueError:
        return False


@functools.lru_cache(maxsize=8192)  # a node's addresses, every node's pod CIDR: the same texts
def _iface_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        return None


def net_of(cidr: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = str(cidr)  # first: node-supplied values may be anything (unhashable)
    if len(text) > 64:  # no CIDR is this long; never keep big strings in the cache
        return None
    return _net_of(text)


@functools.lru_cache(maxsize=8192)  # checks call it per node x peer x route (N^3 at N nodes)
def _net_of(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def pod_network(snapshot: Any, facts: NodeFacts | None = None) -> str:
    net = getattr(snapshot, "flannel_network", None)
    if not net and facts is not None and facts.subnet_env:
        net = facts.subnet_env.get("FLANNEL_NETWORK")
    return net or DEFAULT_POD_NETWORK


def pod_networks(snapshot: Any, facts: NodeFacts | None, version: int) -> list[str]:
    """The pod networks of one IP family, as precise as known: flannel's Network / IPv6Network
    (net-conf.json, subnet.env), else every node's podCIDR of that family. Only IPv4 falls back to
    flannel's default 10.244.0.0/16 when nothing at all is known (a snapshot without nodes)."""
    nets: list[str] = []
    fl = getattr(getattr(snapshot, "shape", None), "flannel", None)
    cands = [getattr(fl, "network", None), getattr(fl, "ipv6_network", None),
             getattr(snapshot, "flannel_network", None)]
    env = (facts.subnet_env or {}) if facts is not None else {}
    cands += [env.get("FLANNEL_NETWORK"), env.get("FLANNEL_IPV6_NETWORK")]
    for c in cands:
        vt = _version_text(c) if c else None
        if vt is not None and vt[0] == version and vt[1] not in nets:
            nets.append(vt[1])
    if nets:
        return nets
    # no flannel: kube-proxy's clusterCIDR (kubeadm's pod network) covers what the CNI's own IPAM
    # hands out (calico IP pools and cilium cluster-pool allocate outside the nodes' podCIDRs)
    for c in getattr(snapshot, "cluster_cidrs", ()) or ():
        vt = _version_text(c)
        if vt is not None and vt[0] == version and vt[1] not in nets:
            nets.append(vt[1])
    if nets:
        return nets
    # every node's podCIDR: the same answer for every node of the snapshot, read once (it was
    # read per node and check: N^2 at N nodes)
    memo = snapshot.derived if isinstance(snapshot, ClusterSnapshot) else {}
    key = ("pod_networks of the nodes", version)
    got = memo.get(key)
    if got is None:
        seen: dict[str, None] = {}
        for info in (getattr(snapshot, "nodes", {}) or {}).values():
            for c in getattr(info, "pod_cidrs", ()) or ((info.pod_cidr,) if info.pod_cidr else ()):
                vt = _version_text(c)
                if vt is not None and vt[0] == version:
                    seen.setdefault(vt[1], None)
        got = memo[key] = tuple(seen)
    nets.extend(got)
    if not nets and version == 4:
        nets.append(DEFAULT_POD_NETWORK)
    return nets


def _version_text(cidr: Any) -> tuple[int, str] | None:
    """(IP version, str(network)) of net_of(cidr), None when it is no network. pod_networks runs
    per node, family and check on the same few network texts (flannel's Network, the node's
    subnet.env): the string-keyed cache answers without hashing ipaddress objects."""
    text = str(cidr)
    if len(text) > 64:  # as net_of: never keep big strings in the cache
        return None
    return _version_text_of(text)


@functools.lru_cache(maxsize=8192)
def _version_text_of(text: str) -> tuple[int, str] | None:
    n = _net_of(text)
    return None if n is None else (n.version, _text(n))


@functools.lru_cache(maxsize=4096)
def _text(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """str(net), made once per network (pod_networks runs per node and check)."""
    return str(net)


def pod_families(snapshot: Any, node: str | None = None) -> tuple[int, ...]:
    """IP versions pod traffic uses (on `node`): from the shape, else the podCIDRs; IPv4 when
    nothing says otherwise."""
    shape = getattr(snapshot, "shape", None)
    if shape is not None and hasattr(shape, "families"):
        return tuple(shape.families(node))
    seen: list[int] = []
    for info in (getattr(snapshot, "nodes", {}) or {}).values():
        for c in getattr(info, "pod_cidrs", ()) or ((info.pod_cidr,) if info.pod_cidr else ()):
            n = net_of(c)
            if n is not None and n.version not in seen:
                seen.append(n.version)
    return tuple(seen) or (4,)


def count_rules(*saves: IptablesSave | None) -> int:
    """Lines starting with '-' (rules), as iptables-wrappers counts them."""
    return sum(len(t.rules) for s in saves if s is not None for t in s.tables.values())


def _derived(facts: Any, key: Any, make: Any) -> Any:
    """make(), once per NodeFacts (frozen: what is derived from its fields never changes); the
    checks ask for a node's backend and merged saves several times each. Anything else (a test's
    stand-in) is answered afresh."""
    if type(facts) is not NodeFacts:
        return make()
    memo = facts.__dict__.get("_derived")
    if memo is None:
        memo = facts.__dict__["_derived"] = {}
    got = memo.get(key)
    if got is None:
        got = memo[key] = make()
    return got


def detect_backend(facts: NodeFacts) -> tuple[str, str]:
    """Kube-proxy's backend (detect_backend_of), once per node's facts."""
    return _derived(facts, "detect_backend", lambda: detect_backend_of(facts))  # type: ignore[no-any-return]


def detect_backend_of(facts: NodeFacts) -> tuple[str, str]:
    """The backend kube-proxy (and kubelet) use, decided as kubernetes-sigs/iptables-wrappers
    does (iptables-wrapper-installer.sh / its Go successor): KUBE-IPTABLES-HINT or
    KUBE-KUBELET-CANARY in `ip(6)tables-nft-save -t mangle` -> nft; else either chain in the full
    `ip(6)tables-legacy-save` -> legacy; else count the rules (lines starting with '-') of both
    backends, iptables and ip6tables: legacy when it has MORE, else nft.
    On an iptables without -legacy/-nft variants (< 1.8): its one backend."""
    for label, save in (("iptables-nft-save -t mangle", facts.nft_mangle),
                        ("ip6tables-nft-save -t mangle", facts.ip6_nft_mangle)):
        if save is None:
            continue
        for chain in ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"):
            if save.has_chain(chain, "mangle"):
                return "nft", f"{chain} in {label}"
    for label, save in (("iptables-legacy-save", facts.legacy),
                        ("ip6tables-legacy-save", facts.ip6_legacy)):
        if save is None:
            continue
        for chain in ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"):
            if save.has_chain(chain):
                return "legacy", f"{chain} in {label}"
    if facts.legacy is None and facts.nft_nat is None and facts.nft_filter is None \
            and facts.plain_save is not None:
        b = single_backend(facts)
        return b, f"the node's only iptables ({_ver_text(facts)}) is {b}"
    legacy_n = count_rules(facts.legacy, facts.ip6_legacy)
    nft_n = count_rules(facts.nft_nat, facts.nft_filter, facts.nft_mangle, facts.ip6_nft_nat,
                        facts.ip6_nft_filter, facts.ip6_nft_mangle)
    if facts.legacy is None and legacy_n == 0 and nft_n == 0:
        return "nft", "no KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY in either backend (default nft)"
    if legacy_n > nft_n:
        return "legacy", (f"no KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY in either backend; "
                          f"legacy has more rules ({legacy_n} vs {nft_n} in nft), as "
                          "iptables-wrappers decides")
    return "nft", (f"no KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY in either backend; nft has as "
                   f"many or more rules ({nft_n} vs {legacy_n} in legacy), as iptables-wrappers "
                   "decides")


def _ver_text(facts: NodeFacts) -> str:
    v = facts.iptables_version
    return v.text if v is not None else "iptables, version unknown"


def single_backend(facts: NodeFacts) -> str:
    """The backend of an iptables without -legacy/-nft variants: < 1.8 is always legacy (x_tables);
    1.8+ says '(nf_tables)' or '(legacy)' in `iptables -V`."""
    v = facts.iptables_version
    if v is not None and v.tuple() and v.tuple() < (1, 8):
        return "legacy"
    if v is not None and v.backend in ("nft", "legacy"):
        return v.backend
    return "legacy"


def backend_saves(facts: NodeFacts, version: int = 4) -> dict[str, IptablesSave | None]:
    """backend -> one IptablesSave holding its nat and filter tables (nft: two saves merged).
    version 6: the ip6tables views. On an iptables without -legacy/-nft variants, its one
    `iptables-save` is the backend it runs. Made once per node's facts and version (a new dict
    each call: callers may change it; the saves are immutable)."""
    return dict(_derived(facts, ("backend_saves", version),
                         lambda: _backend_saves(facts, version)))


def _backend_saves(facts: NodeFacts, version: int) -> dict[str, IptablesSave | None]:
    if version == 6:
        if facts.ip6_legacy is None and facts.ip6_nft_nat is None and \
                facts.ip6_nft_filter is None and facts.plain_save6 is not None:
            # an ip6tables without -legacy/-nft variants (< 1.8, CentOS 7): its one save, as
            # for IPv4 (was: no IPv6 view at all, its FORWARD/INPUT rejects never seen)
            b = single_backend(facts)
            return {"legacy": facts.plain_save6 if b == "legacy" else None,
                    "nft": facts.plain_save6 if b == "nft" else None}
        return {"legacy": facts.ip6_legacy,
                "nft": _merge(facts.ip6_nft_nat, facts.ip6_nft_filter)}
    if facts.legacy is None and facts.nft_nat is None and facts.nft_filter is None \
            and facts.plain_save is not None:
        b = single_backend(facts)
        return {"legacy": facts.plain_save if b == "legacy" else None,
                "nft": facts.plain_save if b == "nft" else None}
    return {"legacy": facts.legacy, "nft": _merge(facts.nft_nat, facts.nft_filter)}


def _merge(*saves: IptablesSave | None) -> IptablesSave | None:
    nft_tables: dict[str, Table] = {}
    comments: list[str] = []
    incompatible: list[str] = []
    any_nft = False
    for s in saves:
        if s is None:
            continue
        any_nft = True
        nft_tables.update(s.tables)
        comments.extend(s.comments)
        incompatible.extend(s.incompatible_tables)
    return IptablesSave(nft_tables, tuple(comments), tuple(incompatible)) if any_nft else None


def plain_view(facts: NodeFacts, version: int = 4) -> bool:
    """The family's view is the one `ip(6)tables-save` of an iptables without -legacy/-nft
    variants (backend_saves)."""
    if version == 6:
        return facts.ip6_legacy is None and facts.ip6_nft_nat is None and \
            facts.ip6_nft_filter is None and facts.plain_save6 is not None
    return facts.legacy is None and facts.nft_nat is None and facts.nft_filter is None \
        and facts.plain_save is not None


def save_label(backend: str, table: str, version: int = 4, facts: NodeFacts | None = None) -> str:
    ip = "ip6tables" if version == 6 else "iptables"
    if facts is not None and version == 4 and facts.legacy is None and facts.nft_nat is None \
            and facts.plain_save is not None:
        return "iptables-save"
    if facts is not None and version == 6 and plain_view(facts, 6):
        return "ip6tables-save"
    return f"{ip}-legacy-save" if backend == "legacy" else f"{ip}-nft-save -t {table}"


def reachable_chains(table: Table, roots: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in table.chains]
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        for r in table.rules_in(c):
            if r.target and r.target in table.chains and r.target not in seen:
                todo.append(r.target)
    return seen


def pod_for(snapshot: Any, mapping_name: str, node: str) -> Any:
    pods = (getattr(snapshot, mapping_name, None) or {}).get(node) or []
    return pods[0] if pods else None
