"""iptables / nftables: backend conflicts, FORWARD drops, "incompatible" chains, missing rules.

Facts of the field these rest on (LAB-FACTS.md and upstream):
- kube-proxy's backend is decided as kubernetes-sigs/iptables-wrappers does it
  (parsers.detect_kube_proxy_backend).
- Rules living only in the backend the host's `iptables` does not point at are cosmetic: the
  kernel evaluates both backends. What breaks traffic: FORWARD policy DROP in EITHER backend
  (a packet must pass both), stale DNAT reachable from nat PREROUTING/OUTPUT in the other backend
  (it can win over the live path), a native nft forward hook with policy drop.
- "chain ... is incompatible, use 'nft' tool" is what iptables-nft prints for rules it cannot map
  back: rules added with raw nft, or rules written by a newer iptables (kubernetes/kubernetes#112477).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks._common import (
    IPTABLES_SECTIONS,
    backend_saves,
    detect_backend,
    find_line,
    net_of,
    plain_view,
    pod_families,
    pod_for,
    pod_networks,
    reachable_chains,
    save_label,
)
from clusterfix_tui.core.checks.firewall_path import (
    DOCKER_NFT_FIX,
    DOCKER_NFT_TABLES,
    NONE,
    Flow,
    _match_ops,
    _nft_set_lookup,
    _set_gate,
    cluster_flows,
    compile_iptables_rule,
    iptables_nft_base_chain,
    nft_verdict,
)
from clusterfix_tui.core.checks.pods import ComponentPodData
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData, Severity
from clusterfix_tui.core.parsers import (
    NftRule,
    Table,
    legacy_tables_warning,
    nft_rule_statement,
    version_tuple,
)
from clusterfix_tui.core.shape import shape_of, why_not
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF_WRAPPERS = "https://github.com/kubernetes-sigs/iptables-wrappers"
REF_SKEW = "https://github.com/kubernetes/kubernetes/issues/112477"
REF_FORWARD = "https://kubernetes.io/docs/reference/networking/ports-and-protocols/"
REF_FLANNEL_FWD = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md"
REF_KUBE_PROXY = "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/"

# chains iptables-wrappers/kubelet leave as markers: not "stale rules" by themselves
# finding code -> the facts sections it is decided from (see _common.IPTABLES_SECTIONS)
READS: dict[str, tuple[str, ...]] = {
    "FORWARD_DROP": (*IPTABLES_SECTIONS, "nft_json", "ip_link", "ip_addr"),
    "IPTABLES_BACKEND_CONFLICT": (*IPTABLES_SECTIONS, "kube_proxy_mode"),
    "KUBE_PROXY_INCOMPATIBLE_CHAIN": (*IPTABLES_SECTIONS, "nft_json", "incompatible_chains",
                                      "nft_table_text"),
    # legacy_tables: not a section of its own, the kernel's iptables-legacy tables that
    # iptables-nft says exist when no iptables-legacy-save listed them (NodeFacts.unread_sections)
    "KUBE_PROXY_NO_RULES": (*IPTABLES_SECTIONS, "nft_json", "kube_proxy_healthz",
                            "kube_proxy_mode", "ip_vs", "legacy_tables"),
    # ip_addr: the node's addresses for a `-d` match on a NodePort; not read: such a rule is not judged
    "KUBE_PROXY_SHADOWED": (*IPTABLES_SECTIONS, "kube_proxy_mode"),
}
MARKER_CHAINS = {"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"}
# KUBE-* chains that are not kube-proxy's: kube-router's network policy controller (its own
# DaemonSet next to kube-proxy, or embedded in k3s/RKE2 beside the embedded kube-proxy) writes
# these, possibly with another iptables backend than kube-proxy's (kube-router#1069, k0s#5328).
# They are live policy, never kube-proxy's leftovers: not "stale", never removed.
NOT_KUBE_PROXY_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")


def kube_proxy_chain(name: str) -> bool:
    """A chain kube-proxy (or kubelet) writes: KUBE-*, not a marker, not kube-router's."""
    return name.startswith("KUBE-") and name not in MARKER_CHAINS and \
        not name.startswith(NOT_KUBE_PROXY_PREFIXES)
IPTABLES_NFT_TABLES = {"filter", "nat", "mangle", "raw", "security"}
# statements iptables-nft (1.8.x) never writes natively into its tables
NFT_ONLY = {"log", "limit", "reject", "dnat", "snat", "masquerade", "redirect", "queue", "quota",
            "notrack", "vmap", "set", "map", "ct", "synproxy", "flow", "tproxy", "fwd", "dup",
            "numgen", "objref"}
INCOMPAT_RE = re.compile(r"chain `([^']+)' in table `([^']+)' is incompatible")
# every other form iptables prints: "table `nat' is incompatible, use 'nft' tool" (1.8.9 without a
# chain), iptables-save's "# Table `nat' is incompatible, use 'nft' tool."
INCOMPAT_TABLE_RE = re.compile(r"[Tt]able `([^']+)' is incompatible")
# version skew visible in the save output itself (kubernetes/kubernetes#95409, #94754, #114537):
# a target revision the host's iptables does not know, or a DNAT it decodes into nonsense
UNSUPPORTED_REVISION = "[unsupported revision]"
MANGLED_DNAT_RE = re.compile(r"-j DNAT(?: --to-destination (?::0|0\.0\.0\.0:0)\b|\s*$)")
IPTABLES_VERSION_RE = re.compile(r"iptables v(\d+\.\d+(?:\.\d+)?)")


# Each code's data. Defaults only so a test can build the part it needs; the checks below fill
# every field.
@dataclass(frozen=True, kw_only=True)
class BackendConflictData(FindingData, codes=("IPTABLES_BACKEND_CONFLICT",)):
    kube_proxy_backend: str = ""  # "nft" | "legacy": the backend kube-proxy programs
    backend_evidence: str = ""  # why we think so
    host_iptables: str | None = None  # the node's `iptables` backend
    other_backend: str = ""  # the stale one
    # table -> KUBE-* chains left in the other backend
    stale_chains: dict[str, list[str]] = field(default_factory=dict)
    stale_rules: dict[str, list[str]] = field(default_factory=dict)  # table -> their rules
    shadows_live_path: bool = False
    # stale DNAT rules reachable from the nat hooks
    shadowing_rules: list[str] = field(default_factory=list)
    cosmetic: bool = False
    ip_version: int = 4  # 6: the ip6tables backends (ip6tables-legacy / ip6tables-nft)


@dataclass(frozen=True, kw_only=True)
class ForwardDropData(FindingData, codes=("FORWARD_DROP",)):
    backend: str = ""  # "legacy" | "nft" (an iptables backend) | "nft-native" (an nft base chain)
    table: str = ""
    chain: str = ""
    policy: str = ""
    pod_network: str = ""  # the first pod network of the family (what the ACCEPT is for)
    kube_proxy_backend: str = ""
    host_iptables: str | None = None
    family: str | None = None  # nft-native: the nft family of the chain
    pod_networks: list[str] = field(default_factory=list)
    ip_version: int = 4
    binary: str | None = None  # iptables backends: the binary that writes the ACCEPT
    accept_chain: str = "FORWARD"  # where the ACCEPT goes (DOCKER-USER on docker hosts)
    # drops of an address set's addresses (blocklists: fail2ban, crowdsec) on the forward path:
    # an accept at the top of the chain would run ahead of them, so none is planned
    blocklists: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NftRuleRef:
    """A rule in an nft table, by handle, with its `nft list` text."""

    family: str = ""
    table: str = ""
    chain: str = ""
    handle: int | None = None
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class IncompatibleChainData(FindingData, codes=("KUBE_PROXY_INCOMPATIBLE_CHAIN",)):
    cause: str = ""  # "foreign-nft-rule" | "version-skew" | "backend-mismatch" | "foreign-base-chain"
    chains: list[dict[str, str]] = field(default_factory=list)  # [{"table", "chain"}]
    host_iptables_version: str | None = None
    kube_proxy_iptables_version: str | None = None  # from kube-proxy's log, when it says
    kube_proxy_image: str | None = None
    kube_proxy_backend: str = ""
    host_iptables: str | None = None
    foreign_rules: list[NftRuleRef] = field(default_factory=list)
    recommend_backend_switch: bool = False
    writer_rules: int | None = None  # version-skew: rules written by an iptables binary
    source: str | None = None  # version-skew read from the save output: "save-output"
    rules: list[str] = field(default_factory=list)  # ... and its evidence lines

    def __post_init__(self) -> None:
        # a rule may come in its serialised shape (a journal, a test): one shape, the same keys
        rules = [r if isinstance(r, NftRuleRef) else NftRuleRef(**r) for r in self.foreign_rules]
        object.__setattr__(self, "foreign_rules", rules)


@dataclass(frozen=True, kw_only=True)
class NoRulesData(ComponentPodData, codes=("KUBE_PROXY_NO_RULES",)):
    backend: str = ""
    missing_chains: list[str] = field(default_factory=list)
    healthz: Any = None
    proxy_mode: str | None = None
    kube_proxy: str | None = None  # the shape's kube-proxy form


@dataclass(frozen=True, kw_only=True)
class ShadowedData(FindingData, codes=("KUBE_PROXY_SHADOWED",)):
    backend: str = ""  # kube-proxy's iptables backend: "legacy" | "nft"
    ip_version: int = 4
    builtin: str = ""  # PREROUTING | OUTPUT (nat)
    rule: str = ""  # the foreign rule ahead of kube-proxy's jump ("-A PREROUTING ...")
    via: str = ""  # the rule that ends the traversal (rule itself, or one in a chain it jumps to)
    jump: str = ""  # kube-proxy's own jump as the save prints it ("-A PREROUTING -m comment ...")
    services: list[str] = field(default_factory=list)  # the Service ports it shadows
    partial: bool = False  # only for some sources / interfaces
    binary: str = ""  # the binary that writes that backend ("iptables-nft", "ip6tables-legacy")
    jump_copies: int = 1  # how many rules of the chain read exactly `jump` (the rollback's base)


def kube_proxy_backend(facts: NodeFacts) -> tuple[str, str]:
    return detect_backend(facts)


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    shape = shape_of(snapshot)
    for node, facts in sorted(facts_by_node.items()):
        if why_not(shape, "IPTABLES_BACKEND_CONFLICT", node) is None:
            out.extend(backend_conflict(snapshot, node, facts))
            if 6 in pod_families(snapshot, node):  # ip6tables is read where IPv6 pod traffic flows
                out.extend(backend_conflict(snapshot, node, facts, 6))
        out.extend(forward_drop(snapshot, node, facts))
        if why_not(shape, "KUBE_PROXY_INCOMPATIBLE_CHAIN", node) is None:
            out.extend(incompatible_chain(snapshot, node, facts))
        if why_not(shape, "KUBE_PROXY_NO_RULES", node) is None:
            out.extend(no_rules(snapshot, node, facts))
        if why_not(shape, "KUBE_PROXY_SHADOWED", node) is None:
            out.extend(shadowed(snapshot, node, facts))
    return out


def _live_rules_elsewhere(facts: NodeFacts, live: str, version: int = 4) -> bool:
    """True when the backend named live has no KUBE-SERVICES in nat while the other one has:
    then the detection cannot be trusted to call the other backend's rules stale (they may be
    exactly what the running kube-proxy uses)."""
    saves = backend_saves(facts, version)
    other = "legacy" if live == "nft" else "nft"
    ls, os_ = saves.get(live), saves.get(other)
    if ls is not None and "nat" in ls.incompatible_tables:
        return False  # present but unreadable: KUBE_PROXY_INCOMPATIBLE_CHAIN says why
    lt = ls.table("nat") if ls is not None else None
    ot = os_.table("nat") if os_ is not None else None
    return (lt is None or "KUBE-SERVICES" not in lt.chains) and \
        ot is not None and "KUBE-SERVICES" in ot.chains


# -- IPTABLES_BACKEND_CONFLICT -------------------------------------------------------------------


def _stale_rules(table: Table) -> list[str]:
    kube = {c for c in table.chains if kube_proxy_chain(c)}
    return [r.spec for r in table.rules if r.chain in kube or (r.target in kube)]


def backend_conflict(snapshot: ClusterSnapshot, node: str, facts: NodeFacts,
                     version: int = 4) -> list[Finding]:
    """Stale KUBE-* chains in the backend kube-proxy does not use, per IP family: version 6 reads
    ip6tables-legacy-save / ip6tables-nft-save (kube-proxy writes ip6tables on an IPv6 or dual-stack
    node; the backend decision is the same one, iptables-wrappers decides once for both)."""
    live, why = kube_proxy_backend(facts)
    other = "legacy" if live == "nft" else "nft"
    save = backend_saves(facts, version)[other]
    if save is None:
        return []
    if _live_rules_elsewhere(facts, live, version):
        # never call stale what the live kube-proxy may be using (see no_rules): even with the
        # kubelet's hint chain in nft, a kube-proxy image without iptables-wrappers writes legacy.
        # When kube-proxy is down (crash-looping), the step that restarts it comes first; the
        # next pass sees its live rules and decides then.
        return []
    stale_chains: dict[str, list[str]] = {}
    stale_rules: dict[str, list[str]] = {}
    for tname in ("nat", "filter"):
        t = save.table(tname)
        if t is None:
            continue
        chains = sorted(c for c in t.chains if kube_proxy_chain(c))
        if chains:
            stale_chains[tname] = chains
            stale_rules[tname] = _stale_rules(t)
    if not stale_chains:
        return []
    shadowing: list[str] = []
    nat = save.table("nat")
    if nat is not None:
        reach = reachable_chains(nat, ("PREROUTING", "OUTPUT"))
        shadowing = [r.spec for r in nat.rules if r.chain in reach and r.target == "DNAT"]
    shadows = bool(shadowing)
    ip = "ip6tables" if version == 6 else "iptables"
    label = f"{ip}-legacy-save" if other == "legacy" else f"{ip}-nft-save"
    evidence = [f"kube-proxy uses the {live} backend ({why})"]
    if facts.host_iptables:
        evidence.append(f"the node's iptables runs the {facts.host_iptables} backend"
                        + (f" ({facts.iptables_version.text})" if facts.iptables_version else ""))
    for tname, chains in stale_chains.items():
        evidence.append(f"{label}: *{tname}: stale chains " + " ".join(chains[:12])
                        + (" ..." if len(chains) > 12 else ""))
    evidence.extend(f"{label}: {spec}" for spec in (shadowing or
                    [s for rules in stale_rules.values() for s in rules])[:10])
    if shadows:
        title = (f"stale KUBE-* DNAT rules in the {other} backend can shadow kube-proxy's "
                 f"{live} rules" + (" (IPv6, ip6tables)" if version == 6 else ""))
        expl = ("kube-proxy programs the " + live + " backend, but the " + other + " backend still "
                "holds KUBE-* nat rules reachable from PREROUTING/OUTPUT that DNAT: the kernel "
                "evaluates both backends' nat hooks, and the stale DNAT can win over the live one, "
                "sending NodePort/Service traffic to old endpoints. Remove the stale rules from the "
                + other + " backend (do not just flip update-alternatives).")
        severity: Severity = "error"
    else:
        title = (f"leftover KUBE-* chains in the {other} backend (cosmetic)"
                 + (" (IPv6, ip6tables)" if version == 6 else ""))
        expl = ("kube-proxy programs the " + live + " backend; the " + other + " backend holds "
                "leftover KUBE-* chains that no built-in nat chain reaches with a DNAT. They do not "
                "break traffic, but they confuse `iptables -L` users ('iptables-legacy tables "
                "present') and the runbook's checks. Removing them is safe.")
        severity = "warning"
    return [Finding(
        code="IPTABLES_BACKEND_CONFLICT", severity=severity, node=node, title=title,
        evidence=tuple(evidence), explanation=expl, reference=REF_WRAPPERS, step="iptables",
        data=BackendConflictData(
            kube_proxy_backend=live, backend_evidence=why, host_iptables=facts.host_iptables,
            other_backend=other, stale_chains=stale_chains, stale_rules=stale_rules,
            shadows_live_path=shadows, shadowing_rules=shadowing, cosmetic=not shadows,
            ip_version=version),
    )]


# -- FORWARD_DROP --------------------------------------------------------------------------------


def _covers(value: str | None, net: Any) -> bool:
    if value is None:
        return False
    n = net_of(value.lstrip("!"))
    return n is not None and net is not None and not value.startswith("!") and \
        n.version == net.version and net.subnet_of(n)  # type: ignore[arg-type]


def _only_comment(args: tuple[str, ...]) -> bool:
    """True for "-j ACCEPT" with nothing but a comment match."""
    rest = list(args)
    out = []
    i = 0
    while i < len(rest):
        if (rest[i] == "-m" and i + 1 < len(rest) and rest[i + 1] == "comment"
                or rest[i] == "--comment"
                or rest[i] in ("-j", "--jump") and i + 1 < len(rest)):
            i += 2
        else:
            out.append(rest[i])
            i += 1
    return not out


# interfaces pods sit behind, per CNI: an ACCEPT "-i IF" covers traffic from pods, "-o IF" to
# pods (cilium: lxc+/cilium_host/cilium_net; calico: cali+/vxlan.calico/tunl0; flannel: cni0,
# flannel.1; kube-router: kube-bridge; weave; antrea)
POD_IFACE_PREFIXES = ("cali", "lxc", "cilium_", "cni", "cbr", "flannel", "kube-bridge", "weave",
                      "vxlan.calico", "vxlan-v6.calico", "tunl", "antrea-", "genev", "ovn",
                      "wireguard.cali", "kube-ipvs")
# chains a CNI owns; a mark-based ACCEPT there is the CNI's policy verdict (calico: 0x10000 set by
# its policy chains, "Policy explicitly accepted packet.")
CNI_CHAIN_PREFIXES = ("cali-", "CILIUM_", "KUBE-ROUTER-", "KUBE-POD-FW-", "ANTREA-", "WEAVE-")
# comments a CNI puts on the rules it adds to the built-in chains (calico: "cali:<hash>")
CNI_COMMENT_PREFIXES = ("cali:", "cilium")


def _pod_iface(name: str | None) -> bool:
    if not name or name.startswith("!"):
        return False
    return name.rstrip("+*").startswith(POD_IFACE_PREFIXES) or name.startswith(POD_IFACE_PREFIXES)


def _iface_only(args: tuple[str, ...]) -> list[tuple[str, str, bool]] | None:
    """[(-i|-o, name, negated)] of a rule that matches on interfaces only (comments aside), else
    None."""
    out: list[tuple[str, str, bool]] = []
    neg = False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-j", "--jump"):
            break
        if a == "!":
            neg = True
            i += 1
            continue
        if a in ("-i", "-o", "--in-interface", "--out-interface") and i + 1 < len(args):
            out.append(("-i" if a in ("-i", "--in-interface") else "-o", args[i + 1], neg))
        elif not (a in ("-m", "--match") and i + 1 < len(args) and args[i + 1] == "comment"
                  or a == "--comment"):
            return None
        neg = False
        i += 2
    return out or None


def _rest(args: tuple[str, ...], skip: tuple[str, ...]) -> list[str]:
    """args without -j ACCEPT, comments and the options in `skip` (with their values)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-j", "--jump", "--comment") or a in skip:
            i += 2
            continue
        if a == "-m" and i + 1 < len(args) and args[i + 1] in ("comment",):
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _forward_accepts(table: Table, pod_nets: list[str]) -> tuple[bool, bool, bool, list[str]]:
    """(src covered, dst covered, unconditional, how) by ACCEPTs reachable from FORWARD: by
    address (-s/-d covering every pod network), by pod interface (-i/-o), or a CNI's mark-based
    policy ACCEPT."""
    nets = [n for n in (net_of(p) for p in pod_nets) if n is not None]
    reach = reachable_chains(table, ("FORWARD",))
    src_nets: set[str] = set()
    dst_nets: set[str] = set()
    src = dst = uncond = False
    how: list[str] = []
    # a CNI that ends all traffic into its pod interface itself (weave: `-o weave -j WEAVE-NPC`,
    # its policy chain, then `-o weave -j DROP`) and accepts what leaves it (`-i weave ! -o weave
    # -j ACCEPT`): no pod packet reaches the policy
    ends_into: set[str] = set()
    out_of: dict[str, str] = {}
    policed: set[tuple[str, str]] = set()  # (chain, DEV) of `-o DEV -j <the CNI's chain>`
    for r in table.rules:
        if r.chain not in reach:
            continue
        ifs = _iface_only(r.args) or []
        into = ifs[0][1] if len(ifs) == 1 and ifs[0][0] == "-o" and not ifs[0][2] else None
        if into and (r.target or "").startswith(CNI_CHAIN_PREFIXES):
            policed.add((r.chain, into))
        elif into and r.target in ("DROP", "REJECT") and (r.chain, into) in policed \
                and _pod_iface(into):
            ends_into.add(into)  # the CNI's policy chain, then -o DEV -j DROP: the rest
        elif r.target == "ACCEPT" and len(ifs) == 2 and ifs[0] == ("-i", ifs[0][1], False) \
                and ifs[1] == ("-o", ifs[0][1], True) and _pod_iface(ifs[0][1]):
            out_of[ifs[0][1]] = r.spec  # -i DEV ! -o DEV -j ACCEPT
    for dev in ends_into:
        dst = True
        how.append(f"-o {dev} -j DROP (the CNI ends traffic into {dev} itself)")
        if dev in out_of:
            src = True
            how.append(out_of[dev])
    for r in table.rules:
        if r.chain not in reach or r.target != "ACCEPT":
            continue
        s, d = r.opt("-s"), r.opt("-d")
        # by address only when nothing else narrows the rule: kube-proxy's "-s/-d <clusterCIDR>
        # -m conntrack --ctstate RELATED,ESTABLISHED" (its pod source/destination rules) or a
        # negated "! -s" accept no new pod connection
        plain = (s is not None or d is not None) and not _rest(r.args, ("-s", "-d"))
        for n in nets if plain else ():
            if _covers(s, n):
                src_nets.add(str(n))
            if _covers(d, n):
                dst_nets.add(str(n))
        if _only_comment(r.args):
            uncond = True
            how.append(r.spec)
            continue
        i_if, o_if = r.opt("-i"), r.opt("-o")
        if (_pod_iface(i_if) or _pod_iface(o_if)) and not _rest(r.args, ("-i", "-o", "-s", "-d")):
            src = src or _pod_iface(i_if)
            dst = dst or _pod_iface(o_if)
            how.append(r.spec)
            continue
        cni_chain = r.chain.startswith(CNI_CHAIN_PREFIXES) or any(
            str(x).startswith(CNI_COMMENT_PREFIXES) for x in r.args)
        if cni_chain and "--mark" in r.args and _rest(r.args, ("--mark",)) in (["-m", "mark"], []):
            src = dst = True
            how.append(r.spec)
    if nets and all(str(n) in src_nets for n in nets):
        src = True
    if nets and all(str(n) in dst_nets for n in nets):
        dst = True
    return src, dst, uncond, how


def _forward_accepts_pod_net(table: Table, pod_net: str) -> tuple[bool, bool, bool]:
    """(src covered, dst covered, unconditional accept) by ACCEPTs reachable from FORWARD."""
    src, dst, uncond, _ = _forward_accepts(table, [pod_net])
    return src, dst, uncond


_RAW_SECTION = {(4, "legacy"): "legacy_save", (4, "nft"): "nft_save_filter",
                (6, "legacy"): "ip6_legacy_save", (6, "nft"): "ip6_nft_save_filter"}


def forward_drop(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    out: list[Finding] = []
    live, _ = kube_proxy_backend(facts)
    fams = pod_families(snapshot, node)
    fam_of = {4: "ip", 6: "ip6"}
    for version in fams:
        nets = pod_networks(snapshot, facts, version)
        pod_net = ", ".join(nets)
        for backend, save in backend_saves(facts, version).items():
            t = save.table("filter") if save is not None else None
            if t is None or t.chains.get("FORWARD") != "DROP":
                continue
            src, dst, uncond, _how = _forward_accepts(t, nets)
            if uncond or (src and dst):
                continue
            raw = facts.raw(_RAW_SECTION[(version, backend)]) or \
                facts.raw("ip6tables_save" if version == 6 else "iptables_save")
            line = find_line(raw, ":FORWARD DROP") or ":FORWARD DROP"
            evidence = [f"{save_label(backend, 'filter', version, facts)}: {line}"]
            if not (src or dst):
                evidence.append(f"no ACCEPT for the pod network {pod_net} (by address, pod "
                                "interface or CNI policy mark) reachable from FORWARD")
            else:
                evidence.append(f"ACCEPT only for {'source' if src else 'destination'} {pod_net}")
            # where the narrow ACCEPTs go: DOCKER-USER when docker jumps there first
            first = [r.target for r in t.rules if r.chain == "FORWARD"][:1]
            found = _forward_finding(node, backend, version, nets, live, facts, evidence,
                                     "DOCKER-USER" if first == ["DOCKER-USER"] else "FORWARD")
            bl = _forward_blocklists(t, [fl for fl in cluster_flows(snapshot, node, facts)
                                         if fl.hook == "forward" and fl.family == fam_of[version]])
            if bl:
                found = dataclasses.replace(
                    found, evidence=found.evidence + tuple(
                        f"{r}  (drops the addresses of an ipset: an ACCEPT at the top of the "
                        "chain would let them reach the pods; none is planned)" for r in bl[:5]),
                    data=dataclasses.replace(found.data_as(ForwardDropData), blocklists=bl))
            out.append(found)
    rs = facts.nft_ruleset
    if rs is not None:
        pod_net = pod_networks(snapshot, facts, fams[0])[0] if pod_networks(snapshot, facts, fams[0]) \
            else ""
        for ch in rs.chains:
            if ch.hook != "forward" or (ch.policy or "").lower() != "drop":
                continue
            if iptables_nft_base_chain(ch):
                continue  # iptables-nft's own chain: judged above from iptables-nft-save
            rules = _nft_chain_rules(rs, ch.family, ch.table, ch.name)
            vers = [v for v in fams if ch.family in ("inet", "bridge", "netdev")
                    or (ch.family == "ip") == (v == 4)]
            if not vers or all(_nft_accepts_pod_net(rules, n) for v in vers
                               for n in pod_networks(snapshot, facts, v)):
                continue
            pod_net = ", ".join(n for v in vers for n in pod_networks(snapshot, facts, v))
            docker = (ch.family, ch.table) in DOCKER_NFT_TABLES
            bl = [r.render() for r in rules if _nft_set_lookup(r) is not None
                  and nft_verdict(r)[0] in ("drop", "reject", "jump", "goto")]
            out.append(Finding(
                code="FORWARD_DROP", severity="error", node=node,
                title=f"nft chain {ch.family} {ch.table} {ch.name} drops forwarded traffic",
                evidence=(f"nft list ruleset: table {ch.family} {ch.table} chain {ch.name}: "
                          f"type {ch.type} hook forward priority {ch.prio}; policy drop;",
                          f"no accept for the pod network {pod_net} in it",
                          *(f"{r}  (drops the addresses of a set: an accept at the top of the "
                            "chain would let them through; none is planned)" for r in bl[:5]),
                          *(("the table is docker's own (docker's nftables firewall backend: "
                             "dockerd sets this policy to drop when it enabled IP forwarding "
                             "itself); " + DOCKER_NFT_FIX,) if docker else ())),
                explanation=("A native nftables table (not one of iptables-nft's) hooks forward "
                             "with policy drop: every forwarded pod packet must also pass it."
                             + (" It is docker's: report only." if docker else "")),
                reference=REF_FLANNEL_FWD, step="host_network",
                data=ForwardDropData(
                    backend="nft-native", family=ch.family, table=ch.table, chain=ch.name,
                    policy="DROP", pod_network=pod_net, kube_proxy_backend=live,
                    host_iptables=facts.host_iptables, blocklists=bl),
            ))
    return out


def _forward_finding(node: str, backend: str, version: int, nets: list[str], live: str,
                     facts: NodeFacts, evidence: list[str], accept_chain: str = "FORWARD"
                     ) -> Finding:
    ip = "ip6tables" if version == 6 else "iptables"
    pod_net = nets[0] if nets else ""
    return Finding(
        code="FORWARD_DROP", severity="error", node=node,
        title=(f"FORWARD policy DROP in the {backend} backend drops pod traffic"
               + (" (IPv6, ip6tables)" if version == 6 else "")),
        evidence=tuple(evidence),
        explanation=("A forwarded packet must pass the filter FORWARD chain of BOTH iptables "
                     "backends. Here the " + backend + " backend drops it by policy with no "
                     "ACCEPT for the pod network, so cross-node pod traffic and NodePorts "
                     "forwarded to pods die on this node (whichever backend kube-proxy uses: "
                     + live + ")."),
        reference=REF_FLANNEL_FWD, step="iptables",
        data=ForwardDropData(
            backend=backend, table="filter", chain="FORWARD", policy="DROP",
            pod_network=pod_net, pod_networks=list(nets), kube_proxy_backend=live,
            host_iptables=facts.host_iptables, ip_version=version, accept_chain=accept_chain,
            binary=(ip if plain_view(facts, version) else f"{ip}-{backend}"
                    if facts.legacy is not None or facts.nft_nat is not None or version == 6
                    else ip)),
    )


def _forward_blocklists(t: Table, flows: list[Flow]) -> list[str]:
    """The rules reachable from FORWARD that drop (or jump for) an ipset's addresses
    (`-m set --match-set X src|dst`, not negated: fail2ban's, crowdsec's), where the rule and
    the drop behind it can match a forwarded cluster flow (`flows`). Docker 28's `-A FORWARD -m
    set --match-set docker-ext-bridges-v4 dst -j DOCKER` is not one: its DOCKER chain drops only
    `! -i docker0 -o docker0`, traffic into docker's own bridges, never the pods'."""
    out: list[str] = []
    seen, todo = {"FORWARD"}, ["FORWARD"]
    while todo:
        c = todo.pop()
        for r in t.rules_in(c):
            tgt = r.target or ""
            if tgt not in ("ACCEPT", "RETURN") and _set_gate(compile_iptables_rule(r.args)):
                if _may_drop_flows(t, r, flows):
                    out.append(r.spec)
            elif tgt in t.chains and tgt not in seen:
                seen.add(tgt)
                todo.append(tgt)
    return out


def _may_drop_flows(t: Table, rule: Any, flows: list[Flow], depth: int = 0) -> bool:
    """`rule` can match one of `flows` (its set lookup aside: not read, it may hold anything) and
    drops it, or jumps to a chain with a rule that does (followed 8 chains deep; deeper, or no
    flows to judge by: yes, as before)."""
    if not flows or depth > 8:
        return True
    ops = compile_iptables_rule(rule.args)
    live = [fl for fl in flows if _match_ops(ops, fl) != NONE]
    if not live:
        return False
    tgt = rule.target or ""
    if tgt not in t.chains:
        # DROP, REJECT, or a target not known here; not one that lets the packet go on (weave's
        # `-j WEAVE-NPC-EGRESS-ACCEPT` chain only MARKs: an allowlist, not a blocklist)
        return tgt not in _NON_DROPPING
    return any(_may_drop_flows(t, r, live, depth + 1) for r in t.rules_in(tgt)
               if (r.target or "") not in _NON_DROPPING)


# targets that never drop the packet: the verdict is ACCEPT/RETURN or the packet goes on
_NON_DROPPING = frozenset(("", "ACCEPT", "RETURN", "MARK", "CONNMARK", "LOG", "NFLOG", "ULOG",
                           "TRACE", "AUDIT", "SET", "CT", "NOTRACK", "CLASSIFY", "DSCP", "TOS",
                           "TCPMSS", "CHECKSUM", "TTL", "HL", "SECMARK", "CONNSECMARK"))


def _nft_chain_rules(rs: Any, family: str, table: str, chain: str) -> list[NftRule]:
    """The chain's rules and those of the chains it jumps/goes to unconditionally (a rule with
    no match: `jump forward-pods`), as the iptables side follows FORWARD's jumps: an accept there
    is reached by every packet the chain sees."""
    out: list[NftRule] = []
    seen: set[str] = set()
    todo = [chain]
    while todo and len(seen) < 64:
        c = todo.pop(0)
        if c in seen:
            continue
        seen.add(c)
        for r in rs.rules_in(family, table, c):
            out.append(r)
            st = set(r.statements())
            for k in ("jump", "goto"):
                if k in st and st <= {k, "counter"}:
                    tgt = next((e[k].get("target") for e in r.expr if isinstance(e, dict)
                                and isinstance(e.get(k), dict)), None)
                    if isinstance(tgt, str):
                        todo.append(tgt)
    return out


def _nft_accepts_pod_net(rules: list[NftRule], pod_net: str) -> bool:
    net = net_of(pod_net)
    src = dst = False
    for r in rules:
        st = r.statements()
        if "accept" not in st:
            continue
        # as FORWARD_DROP's iptables side: only a rule that matches nothing but addresses accepts
        # new pod connections by address ('ip saddr <pod net> ct state established,related
        # accept', 'ip saddr != <pod net> accept' or a rate limit accept no new pod flow)
        if not set(st) <= {"match", "counter", "accept"}:
            continue
        matches = [e["match"] for e in r.expr if isinstance(e, dict) and isinstance(e.get("match"), dict)]
        if not matches:
            return True
        fields = [_nft_addr_match(m) for m in matches]
        if not all(fields):
            continue
        for m, fld in zip(matches, fields, strict=True):
            right = m.get("right")
            if isinstance(right, dict) and "prefix" in right:
                right = f"{right['prefix'].get('addr')}/{right['prefix'].get('len')}"
            if fld and isinstance(right, str) and _covers(right, net):
                src = src or fld == "saddr"
                dst = dst or fld == "daddr"
    return src and dst


def _nft_addr_match(m: dict[str, Any]) -> str | None:
    """"saddr"/"daddr" for a plain `ip[6] saddr|daddr <addr or prefix>` match, else None."""
    left = m.get("left")
    pl = left.get("payload") if isinstance(left, dict) else None
    if m.get("op", "==") != "==" or not isinstance(pl, dict) or \
            pl.get("protocol") not in ("ip", "ip6"):
        return None
    field = pl.get("field")
    return field if field in ("saddr", "daddr") else None


# -- KUBE_PROXY_INCOMPATIBLE_CHAIN ----------------------------------------------------------------


# what a newer iptables-nft writes natively itself (no xt expression): seen in a real
# iptables v1.8.10 ruleset (tests/data/realworld/k3s-pi-*: `-m conntrack --ctstate INVALID -j DROP`
# listed by nft as `ct state invalid counter drop`, NFLOG as `log group`, `-m limit` as `limit rate`,
# REJECT as `reject`, MASQUERADE as `masquerade`). An older iptables on the host cannot read these
# back ("incompatible"), exactly as it cannot read the same expressions written with raw nft: the
# rule alone does not tell who wrote it.
NEWER_IPTABLES_NATIVE = {"log", "limit", "reject", "masquerade", "ct-match"}
# ... of which kube-proxy's iptables mode writes none in the nat table: its conntrack matches and
# REJECTs are in the filter table (KUBE-FORWARD, KUBE-SERVICES, the built-in chains' jumps), it
# logs and rate-limits nothing, and its one MASQUERADE is in KUBE-POSTROUTING. Such a statement
# in another kube-proxy nat chain (KUBE-SEP-*, KUBE-SVC-*, ...) was not written by kube-proxy,
# whatever iptables it runs: on a node whose kube-proxy's iptables version is not known (k3s's
# embedded kube-proxy logs none) it is still a foreign rule.
KUBE_PROXY_NEVER_IN_NAT = {"log", "limit", "reject", "ct-match"}


def _native_kinds(rule: NftRule) -> set[str]:
    """Why _rule_is_nft_native says so: the statement kinds ("ct-match" for a ct match, "set"
    for a set/map lookup, else the NFT_ONLY key)."""
    out: set[str] = set()
    for e in rule.expr:
        if not isinstance(e, dict):
            continue
        for k, v in e.items():
            if k in NFT_ONLY:
                out.add(k)
            if k == "match" and isinstance(v, dict):
                left = v.get("left")
                if isinstance(left, dict) and "ct" in left:
                    out.add("ct-match")
                if isinstance(left, dict) and ("set" in left or "map" in left) or \
                        isinstance(v.get("right"), dict) and "set" in v["right"]:
                    out.add("set")
    return out


def _maybe_newer_iptables(rule: NftRule, chain: str, kp_ver: str | None,
                          host_ver: str | None) -> bool:
    """True when a rule _rule_is_nft_native calls foreign may as well have been written by an
    iptables newer than the host's: its native statements are all ones a newer iptables-nft
    writes itself, and kube-proxy's iptables is not known to be as old as the host's (or the
    chain is not kube-proxy's, so its writer is unknown)."""
    kinds = _native_kinds(rule)
    if not kinds or not kinds <= NEWER_IPTABLES_NATIVE:
        return False
    if kube_proxy_chain(chain) and rule.table == "nat" and chain != "KUBE-POSTROUTING" and \
            kinds <= KUBE_PROXY_NEVER_IN_NAT:
        return False  # kube-proxy writes none of these in its nat chains, whatever its iptables
    if not kube_proxy_chain(chain) or kp_ver is None or host_ver is None:
        return True
    return version_tuple(kp_ver) > version_tuple(host_ver)


def _rule_is_nft_native(rule: NftRule) -> bool:
    if rule.has_xt:
        return False
    for e in rule.expr:
        if not isinstance(e, dict):
            continue
        for k, v in e.items():
            if k in NFT_ONLY:
                return True
            if k == "match" and isinstance(v, dict):
                left = v.get("left")
                if isinstance(left, dict) and ("ct" in left or "set" in left or "map" in left):
                    return True
                if isinstance(v.get("right"), dict) and "set" in v["right"]:
                    return True
    return False


def _log_incompatible(snapshot: ClusterSnapshot, node: str) -> list[tuple[str, str, str]]:
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    out: list[tuple[str, str, str]] = []
    if pod is None:
        return out
    for line in list(pod.log_tail) + list(pod.previous_log_tail) + [pod.last_termination_message or ""]:
        m = INCOMPAT_RE.search(line or "")
        if m:
            out.append((m.group(2), m.group(1), line.strip()))
            continue
        m = INCOMPAT_TABLE_RE.search(line or "")
        if m:
            out.append((m.group(1), "", line.strip()))
    return out


def kube_proxy_iptables_version(snapshot: ClusterSnapshot, node: str) -> str | None:
    """kube-proxy's own iptables version, when its log printed one ("iptables v1.8.7 ...")."""
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    if pod is None:
        return None
    for line in list(pod.log_tail) + list(pod.previous_log_tail) + [pod.last_termination_message or ""]:
        m = IPTABLES_VERSION_RE.search(line or "")
        if m:
            return m.group(1)
    return None


def _kube_proxy_image(snapshot: ClusterSnapshot, node: str) -> str | None:
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    images = getattr(pod, "images", ()) if pod is not None else ()
    return next((i for i in images if "kube-proxy" in i), images[0] if images else None)


def skew_in_save(facts: NodeFacts) -> list[str]:
    """Evidence lines of a version skew read from the save output itself."""
    out: list[str] = []
    for label, section in (("iptables-nft-save -t nat", "nft_save_nat"),
                           ("iptables-legacy-save", "legacy_save")):
        for line in facts.raw(section).splitlines():
            if not line.startswith("-A "):
                continue
            if UNSUPPORTED_REVISION in line or MANGLED_DNAT_RE.search(line.rstrip()):
                out.append(f"{label}: {line.strip()}")
    return out


def _foreign_v6(snapshot: ClusterSnapshot, node: str, facts: NodeFacts,
                kp_ver: str | None, host_ver: str | None) -> tuple[list[str], list[NftRuleRef]]:
    """IPv6: ip6tables-nft cannot read a table ("# Table `nat' is incompatible" in its save) and
    kube-proxy's ip6 chains there hold rules written with raw nft (the facts test only the IPv4
    chains one by one): (evidence, the foreign rules). kube-proxy's IPv6 proxier fails on the
    same table, so its IPv6 Services stop syncing."""
    if 6 not in pod_families(snapshot, node) or facts.nft_ruleset is None:
        return [], []
    evidence: list[str] = []
    foreign: list[NftRuleRef] = []
    for t, save in (("nat", facts.ip6_nft_nat), ("filter", facts.ip6_nft_filter)):
        if save is None or t not in save.incompatible_tables:
            continue
        evidence.append(f"ip6tables-nft-save -t {t}: "
                        + (find_line(facts.raw(f"ip6_nft_save_{t}"), "incompatible")
                           or "incompatible"))
        for c in sorted({c.name for c in facts.nft_ruleset.chains
                         if c.family == "ip6" and c.table == t and kube_proxy_chain(c.name)}):
            for r in facts.nft_ruleset.rules_in("ip6", t, c):
                if _rule_is_nft_native(r) and not _maybe_newer_iptables(r, c, kp_ver, host_ver):
                    text = nft_rule_statement(r) or r.render()
                    foreign.append(NftRuleRef(r.family, r.table, r.chain, r.handle, text))
    return evidence, foreign


def incompatible_chain(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    out = _incompatible_chain(snapshot, node, facts)
    host_ver = facts.iptables_version.version if facts.iptables_version else None
    ev6, foreign6 = _foreign_v6(snapshot, node, facts, kube_proxy_iptables_version(snapshot, node),
                                host_ver)
    if not foreign6:
        return out
    ev6 += [f"nft -a list table ip6 {r.table}: {r.text}" for r in foreign6[:10]]
    if out:
        f = out[0]
        d = f.data_as(IncompatibleChainData)
        if d.cause != "foreign-nft-rule":
            return out  # the IPv4 finding says what it is; the IPv6 rules stay in its evidence
        return [Finding(
            code=f.code, severity=f.severity, node=f.node, title=f.title,
            evidence=tuple(f.evidence) + tuple(ev6), explanation=f.explanation,
            reference=f.reference, step=f.step,
            data=dataclasses.replace(d, foreign_rules=[*d.foreign_rules, *foreign6],
                                     chains=[*d.chains, *({"table": r.table, "chain": r.chain}
                                                          for r in foreign6)]))]
    live, _ = kube_proxy_backend(facts)
    return [Finding(
        code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
        title=(f"rule(s) added with raw nft in ip6 {', '.join(sorted({r.chain for r in foreign6}))}"
               " make ip6tables-nft (and kube-proxy's IPv6 proxier) fail"),
        evidence=tuple(ev6),
        explanation=("ip6tables-nft reports the table as incompatible because kube-proxy's IPv6 "
                     "chains hold rules written with the nft tool using statements ip6tables "
                     "cannot map back. kube-proxy's IPv6 iptables-restore fails on them, so its "
                     "IPv6 Services stop syncing. Delete the foreign rule(s) by handle; no "
                     "backend switch is needed."),
        reference=REF_SKEW, step="iptables",
        data=IncompatibleChainData(
            cause="foreign-nft-rule",
            chains=[{"table": r.table, "chain": r.chain} for r in foreign6],
            host_iptables_version=host_ver,
            kube_proxy_iptables_version=kube_proxy_iptables_version(snapshot, node),
            kube_proxy_image=_kube_proxy_image(snapshot, node), kube_proxy_backend=live,
            host_iptables=facts.host_iptables, foreign_rules=foreign6),
    )]


def _incompatible_chain(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    live, _ = kube_proxy_backend(facts)
    host_ver = facts.iptables_version.version if facts.iptables_version else None
    chains = [(t, c) for t, cs in sorted(facts.incompatible_chains.items()) for c in cs]
    from_logs = _log_incompatible(snapshot, node)
    kp_ver = kube_proxy_iptables_version(snapshot, node)
    kp_image = _kube_proxy_image(snapshot, node)
    if not chains and not from_logs:
        skew = skew_in_save(facts)
        if not skew:
            return []
        host_text = facts.iptables_version.text if facts.iptables_version else "?"
        return [Finding(
            code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
            title=("iptables on the node cannot decode kube-proxy's rules (version skew): "
                   f"host iptables {host_ver or '?'}, kube-proxy's {kp_ver or kp_image or '?'}"),
            evidence=tuple(skew[:10]) + (
                f"host iptables {host_ver or '?'} ({host_text}); kube-proxy image "
                f"{kp_image or '?'}, its iptables {kp_ver or 'not in its log'}",),
            explanation=("The rules were written by an iptables whose encoding this host's iptables "
                         "cannot decode (a newer target revision): `iptables-save` shows "
                         "'[unsupported revision]' or DNAT rules without their destination, and a "
                         "save | restore round trip (backups, firewalls reloading) would destroy "
                         "them. The rules in the kernel work. Align the iptables versions (upgrade "
                         "the host's iptables to kube-proxy's, or use a kube-proxy image matching "
                         "the host); never switch backends for this."),
            reference=REF_SKEW, step="iptables",
            data=IncompatibleChainData(
                cause="version-skew", chains=[], host_iptables_version=host_ver,
                kube_proxy_iptables_version=kp_ver, kube_proxy_image=kp_image,
                kube_proxy_backend=live, host_iptables=facts.host_iptables,
                source="save-output", rules=skew),
        )]
    evidence: list[str] = []
    for t in sorted(facts.incompatible_chains):
        for line in (facts.incompatible_stderr.get(t) or "").splitlines():
            if "incompatible" in line:
                evidence.append(f"iptables-nft -t {t} -S: {line.strip()}")
    for t, save in (("nat", facts.nft_nat), ("filter", facts.nft_filter)):
        if save is not None and t in save.incompatible_tables:
            evidence.append(f"iptables-nft-save -t {t}: "
                            + (find_line(facts.raw(f"nft_save_{t}"), "incompatible") or "incompatible"))
    evidence.extend(f"kube-proxy log: {line}" for _, _, line in from_logs[:3])
    foreign: list[NftRuleRef] = []
    unsure: list[NftRuleRef] = []  # raw nft, or a newer iptables: never deleted
    iptables_written: list[NftRule] = []
    rs = facts.nft_ruleset
    # base chains added with nft to iptables-nft's own tables (`nft add chain ip filter input {
    # type filter hook input ...}`, as CIS hardening scripts do) and the chains they jump to:
    # an iptables-nft before 1.8.9 calls the whole table incompatible for them (1.8.9+ lists its
    # own chains and notes "contains incompatible base-chains"). Theirs, never kube-proxy's:
    # their rules are not "foreign rules" to delete (a CIS input chain's `ct state established
    # accept` under policy drop is what keeps the node reachable)
    native = _native_base_chains(rs, {t for t, _ in chains}) if rs is not None else {}
    if rs is not None:
        for t, c in chains:
            if c in native.get(t, ()):
                continue
            for r in rs.rules_in("ip", t, c):
                if _rule_is_nft_native(r):
                    text = _rule_text(facts, t, r)
                    ref = NftRuleRef(r.family, r.table, r.chain, r.handle, text)
                    if _maybe_newer_iptables(r, c, kp_ver, host_ver):
                        unsure.append(ref)
                    else:
                        foreign.append(ref)
                elif r.has_xt:
                    iptables_written.append(r)
    chain_list = [{"table": t, "chain": c} for t, c in chains] or \
        [{"table": t, "chain": c} for t, c, _ in from_logs if c]

    def data(cause: str, **extra: Any) -> IncompatibleChainData:
        return IncompatibleChainData(
            cause=cause, chains=chain_list, host_iptables_version=host_ver,
            kube_proxy_iptables_version=kp_ver, kube_proxy_image=kp_image,
            kube_proxy_backend=live, host_iptables=facts.host_iptables, foreign_rules=foreign,
            **extra)

    if foreign:
        evidence.extend(f"nft -a list table ip {r.table}: {r.text}" for r in foreign[:10])
        return [Finding(
            code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
            title=(f"rule(s) added with raw nft in {', '.join(sorted({r.chain for r in foreign}))}"
                   " make iptables-nft (and kube-proxy) fail"),
            evidence=tuple(evidence),
            explanation=("iptables-nft reports the chain as incompatible because it holds rules "
                         "written with the nft tool using statements iptables cannot map back "
                         "(no xt match/target, nft-only expressions). kube-proxy's iptables-restore "
                         "fails on the same chain, so its syncs fail. Delete the foreign rule(s) by "
                         "handle; no backend switch is needed."),
            reference=REF_SKEW, step="iptables", data=data("foreign-nft-rule"),
        )]
    versions = (f"host iptables {host_ver or '?'}; kube-proxy image {kp_image or '?'}, its "
                f"iptables {kp_ver or 'not in its log'}")
    bases = sorted(f"ip {t} {c}" for t, cs in native.items() for c in cs
                   if any(ch.table == t and ch.name == c and ch.hook for ch in rs.chains
                          if ch.family == "ip")) if rs is not None else []
    if chains and bases:
        evidence.append(f"nft base chain(s) {', '.join(bases)} were added with nft to a table "
                        "iptables-nft owns (iptables-nft did not create them)")
        evidence.append(versions)
        return [Finding(
            code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
            title=(f"nft base chain(s) {', '.join(bases)} in iptables-nft's own table make "
                   f"iptables-nft {host_ver or ''} call it incompatible (not a version skew)"),
            evidence=tuple(evidence),
            explanation=("Base chains created with the nft tool (a CIS hardening script's `nft add "
                         "chain ip filter input { type filter hook input ... }`) sit in a table "
                         "iptables-nft owns; an older iptables-nft then refuses the whole table "
                         "('table is incompatible', iptables-nft-save lists nothing of it; 1.8.9 "
                         "lists its own chains and notes the others), "
                         "and an iptables-restore of kube-proxy's rules into it can fail the same "
                         "way. It is not a version skew and not a backend mismatch. Move those "
                         "chains into a table of their own (`table inet <name>`: the kernel runs "
                         "every base chain of a hook, so they filter as before) or upgrade iptables "
                         "(1.8.9 reads such a table); reported only, nothing is changed."),
            reference=REF_SKEW, step="iptables", data=data("foreign-base-chain"),
        )]
    if chains:
        if unsure:
            evidence.append(
                f"host iptables {host_ver or '?'}; the unreadable rules use only statements a "
                "newer iptables-nft writes itself (ct state, limit, log, reject, masquerade): "
                "written by raw nft or by a newer iptables; kube-proxy's iptables version "
                f"({kp_ver or 'unknown'}) does not tell which, so nothing is deleted")
            evidence.extend(f"nft -a list table ip {r.table}: {r.text}" for r in unsure[:10])
        else:
            evidence.append(f"host iptables {host_ver or '?'}; the unreadable rules carry xt "
                            "expressions: written by an iptables, not by raw nft")
        evidence.append(versions)
        unsure_text = (
            " Some unreadable rules (in the evidence) use only expressions a newer iptables-nft "
            "writes natively: they may also have been added with raw nft. Nothing is deleted: "
            "if you added them, delete them by handle (`nft delete rule ip TABLE CHAIN handle N`);"
            " if kube-proxy (or kube-router) wrote them, align the versions.") if unsure else ""
        return [Finding(
            code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
            title=("iptables-nft on the node cannot read rules written by another iptables "
                   "version (version skew)" if not unsure else
                   "iptables-nft on the node cannot read rules written by a newer iptables or "
                   "by raw nft (not changed)"),
            evidence=tuple(evidence),
            explanation=("The chains were written by an iptables whose nft encoding this host's "
                         f"iptables {host_ver or ''} cannot decode (kube-proxy's image ships its own "
                         "iptables). This is a version skew, not a backend mismatch: switching "
                         "update-alternatives to legacy would split the rules over two backends and "
                         "break traffic. Align the iptables versions (upgrade the host's iptables "
                         "or use a kube-proxy image matching it); the rules themselves work."
                         + unsure_text),
            reference=REF_SKEW, step="iptables",
            data=data("version-skew", writer_rules=len(iptables_written),
                      rules=[r.text for r in unsure]),
        )]
    # only kube-proxy complains; the node's own iptables-nft reads every table
    if facts.host_iptables and facts.host_iptables != live:
        evidence.append(f"the node's iptables runs {facts.host_iptables}; kube-proxy uses {live}")
        return [Finding(
            code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
            title="kube-proxy and the node's iptables use different backends",
            evidence=tuple(evidence),
            explanation=("kube-proxy reports incompatible chains while the node's iptables-nft "
                         "reads every table: kube-proxy and the host tools disagree on the backend. "
                         "Point the node's iptables alternative at kube-proxy's backend and restart "
                         "kube-proxy."),
            reference=REF_WRAPPERS, step="iptables", data=data("backend-mismatch"),
        )]
    evidence.append(f"the node's iptables-nft {host_ver or '?'} reads every table: kube-proxy's "
                    "own iptables is the one that cannot")
    evidence.append(versions)
    return [Finding(
        code="KUBE_PROXY_INCOMPATIBLE_CHAIN", severity="error", node=node,
        title="kube-proxy's iptables cannot read rules written by the node's iptables (version skew)",
        evidence=tuple(evidence),
        explanation=("Same backend on both sides, but kube-proxy's bundled iptables is older than "
                     "what wrote the rules (e.g. the host's kubelet/firewall). Not a backend "
                     "problem: align the versions (kubernetes/kubernetes#112477)."),
        reference=REF_SKEW, step="iptables", data=data("version-skew"),
    )]


def _native_base_chains(rs: Any, tables: set[str]) -> dict[str, set[str]]:
    """table -> the base chains nft added to iptables-nft's `ip <table>` (any hook chain iptables
    did not make: iptables_nft_base_chain) and the chains reachable from them by jump/goto."""
    out: dict[str, set[str]] = {}
    for t in tables:
        todo = [c.name for c in rs.chains if c.family == "ip" and c.table == t and c.hook
                and not iptables_nft_base_chain(c)]
        seen: set[str] = set()
        while todo:
            c = todo.pop()
            if c in seen or len(seen) > 256:
                continue
            seen.add(c)
            for r in rs.rules_in("ip", t, c):
                for e in r.expr:
                    for k in ("jump", "goto"):
                        tgt = e.get(k) if isinstance(e, dict) else None
                        if isinstance(tgt, dict) and isinstance(tgt.get("target"), str):
                            todo.append(tgt["target"])
        if seen:
            out[t] = seen
    return out


def _rule_text(facts: NodeFacts, table: str, rule: NftRule) -> str:
    text = facts.nft_table_text.get(table) or ""
    for line in text.splitlines():
        if line.rstrip().endswith(f"# handle {rule.handle}") and "chain " not in line:
            return line.strip()
    # not listed by `nft -a list table`: nft's own text when it can be rendered exactly (then a
    # rollback can re-add it), else the readable form (the fix plans no deletion from that)
    return nft_rule_statement(rule) or rule.render()


# -- KUBE_PROXY_NO_RULES -------------------------------------------------------------------------


def no_rules(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    shape = shape_of(snapshot)
    mode = shape.proxy_mode(node) if shape is not None else snapshot.kube_proxy_mode
    if mode == "nftables" or facts.kube_proxy_mode == "nftables":
        return _no_nft_rules(snapshot, node, facts)
    if mode == "ipvs" or facts.kube_proxy_mode == "ipvs":
        return _no_ipvs_rules(snapshot, node, facts)
    if mode not in (None, "", "iptables"):
        return []
    if facts.kube_proxy_mode and facts.kube_proxy_mode not in ("iptables",):
        return []
    if shape is None and not (snapshot.kube_proxy_pods or facts.kube_proxy_mode
                              or snapshot.kube_proxy_config_found):
        return []  # no sign of any kube-proxy: nothing to expect rules from
    live, why = kube_proxy_backend(facts)
    save = backend_saves(facts)[live]
    if save is None:
        return []
    if _live_rules_elsewhere(facts, live):
        other = "legacy" if live == "nft" else "nft"
        why += (f"; but KUBE-SERVICES exists in the {other} backend only: kube-proxy may be "
                f"programming {other}")
    if "nat" in save.incompatible_tables:
        return []  # KUBE_PROXY_INCOMPATIBLE_CHAIN says why
    nat = save.table("nat")
    missing = [c for c in ("KUBE-SERVICES", "KUBE-NODEPORTS") if nat is None or c not in nat.chains]
    if nat is not None and "KUBE-SERVICES" in nat.chains and "KUBE-NODEPORTS" in missing and \
            not snapshot.nodeport_services:
        missing.remove("KUBE-NODEPORTS")  # no NodePort services: the chain may legitimately lack
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    if not missing:
        return _missing_jumps(snapshot, node, facts, live, why, pod, shape, mode)
    if live == "nft" and unlisted_legacy_tables(facts):
        # the kernel holds iptables-legacy tables this node could not list (no
        # iptables-legacy-save: RHEL 8/9): kube-proxy's chains may be there (a kube-proxy image
        # on legacy iptables). Not read: no "kube-proxy has no rules", no restart
        return []
    label = "iptables-legacy-save" if live == "legacy" else "iptables-nft-save -t nat"
    evidence = [f"{label}: no chain {', '.join(missing)} in *nat",
                *_kube_proxy_tail(facts, live, why, pod)]
    return [Finding(
        code="KUBE_PROXY_NO_RULES", severity="error", node=node,
        title="kube-proxy has programmed no Service/NodePort rules on this node",
        evidence=tuple(evidence),
        explanation=("kube-proxy (iptables mode) keeps KUBE-SERVICES and KUBE-NODEPORTS in the nat "
                     "table of its backend. Without them NodePorts and ClusterIPs do not work on "
                     "this node: kube-proxy is not running or cannot sync. Restart it and read its "
                     "log."),
        reference=REF_KUBE_PROXY, step="pods",
        data=_no_rules_data(snapshot, facts, pod, shape, live, facts.kube_proxy_mode or mode,
                            missing),
    )]


def unlisted_legacy_tables(facts: NodeFacts) -> str | None:
    """iptables-nft's warning that the kernel holds iptables-legacy tables, when the node's legacy
    view was not read (iptables-legacy-save absent or failed): the warning line, else None."""
    if facts.legacy is not None:
        return None
    for name in ("nft_save_nat", "nft_save_filter", "nft_save_mangle"):
        sec = facts.section(name)
        if sec is not None:
            line = legacy_tables_warning(f"{sec.stdout}\n{sec.stderr}")
            if line:
                return line
    return None


def _kube_proxy_tail(facts: NodeFacts, live: str, why: str, pod: Any) -> list[str]:
    """The evidence every iptables-mode KUBE_PROXY_NO_RULES ends with: kube-proxy's backend and
    why, its healthz answer, and (a static pod) why deleting its mirror pod restarts nothing."""
    tail = [f"kube-proxy backend {live} ({why})",
            "kube-proxy healthz (:10256): " + (facts.kube_proxy_healthz or "no answer")]
    if pod is not None and pod.mirror:
        tail.append(f"kube-proxy on this node is a static pod ({pod.ref}, a mirror pod): "
                    "deleting it restarts nothing")
    return tail


# kube-proxy's own links into its nat chains (proxier.go's iptablesJumpChains, unconditional since
# kube-proxy 1.0; re-added only on a full sync: at start, after a failed sync, once an hour from
# 1.28, or when its canary chain goes), and the chain ends it always writes.
NAT_JUMPS = (("PREROUTING", "KUBE-SERVICES"), ("OUTPUT", "KUBE-SERVICES"),
             ("POSTROUTING", "KUBE-POSTROUTING"))


def _nodeport_ports(snapshot: ClusterSnapshot, version: int) -> list[tuple[str, int]]:
    """[(ns/name, nodePort)] of the NodePort/LoadBalancer services with a ready endpoint of this IP
    family (kube-proxy writes their KUBE-NODEPORTS rule in that family's nat table whatever the
    externalTrafficPolicy: with endpoints anywhere the rule jumps to KUBE-EXT-*)."""
    out: list[tuple[str, int]] = []
    for svc in snapshot.nodeport_services:
        key = f"{svc.get('namespace')}/{svc.get('name')}"
        eps = snapshot.endpoints.get(key) or []
        nets = [net_of(str(ep).rsplit(":", 1)[0].strip("[]")) for ep in eps]
        if not any(n is not None and n.version == version for n in nets):
            continue
        for p in svc.get("ports") or []:
            try:
                out.append((key, int(p.get("nodePort"))))
            except (TypeError, ValueError):
                continue
    return out


def _link_gaps(nat: Table) -> list[str]:
    """What links kube-proxy's nat chains into the packet path, in iptables and ipvs mode alike:
    the jumps from the built-in chains, KUBE-POSTROUTING's MASQUERADE, KUBE-MARK-MASQ's MARK."""
    gaps: list[str] = []
    for builtin, chain in NAT_JUMPS:
        if chain not in nat.chains:
            gaps.append(f"chain {chain}")
        elif not any(r.target == chain for r in nat.rules_in(builtin)):
            gaps.append(f"-A {builtin} -j {chain}")
    if "KUBE-POSTROUTING" in nat.chains and \
            not any(r.target == "MASQUERADE" for r in nat.rules_in("KUBE-POSTROUTING")):
        gaps.append("-A KUBE-POSTROUTING -j MASQUERADE")
    if "KUBE-MARK-MASQ" in nat.chains and \
            not any(r.target == "MARK" for r in nat.rules_in("KUBE-MARK-MASQ")):
        gaps.append("-A KUBE-MARK-MASQ -j MARK")  # nothing marked: nothing masqueraded
    return gaps


def _ipvs_nat_gaps(snapshot: ClusterSnapshot, nat: Table) -> list[str]:
    """kube-proxy's ipvs proxier: IPVS itself DNATs (at LOCAL_IN, on the ClusterIPs bound to
    kube-ipvs0), its nat rules only mark for masquerade what needs it, and without that mark a
    NodePort or a node's own request to a ClusterIP answered by a pod on another node gets no
    reply (the pod answers the client directly, or a ClusterIP source). So: the same links as the
    iptables proxier (the jumps from PREROUTING/OUTPUT/POSTROUTING, KUBE-POSTROUTING's MASQUERADE,
    KUBE-MARK-MASQ's MARK), and with NodePort services, KUBE-SERVICES' jump to KUBE-NODE-PORT and
    KUBE-NODE-PORT's `-m set --match-set KUBE-NODE-PORT-<proto> dst -j KUBE-MARK-MASQ` (checked
    only when KUBE-NODE-PORT exists: older layouts differ). KUBE-SERVICES' own `-j ACCEPT` for
    the ClusterIP set is its way, never foreign here."""
    if "KUBE-SERVICES" not in nat.chains:
        return []
    gaps = _link_gaps(nat)
    if snapshot.nodeport_services and "KUBE-NODE-PORT" in nat.chains:
        if not any(r.target == "KUBE-NODE-PORT" for r in nat.rules_in("KUBE-SERVICES")):
            gaps.append("-A KUBE-SERVICES -j KUBE-NODE-PORT")
        if not any(r.target == "KUBE-MARK-MASQ" and "--match-set" in r.args
                   for r in nat.rules_in("KUBE-NODE-PORT")):
            gaps.append("-A KUBE-NODE-PORT -m set --match-set KUBE-NODE-PORT-* dst -j KUBE-MARK-MASQ")
    return gaps


def _nat_gaps(snapshot: ClusterSnapshot, nat: Table, version: int) -> list[str]:
    """What kube-proxy's iptables proxier always has in nat but this table lacks, although its
    chains are there: the jumps from the built-in chains, the KUBE-SERVICES -> KUBE-NODEPORTS
    jump, KUBE-POSTROUTING's MASQUERADE, a KUBE-NODEPORTS rule per NodePort with endpoints.
    Empty when kube-proxy has not written KUBE-SERVICES here at all (the chain check says so)."""
    if "KUBE-SERVICES" not in nat.chains:
        return []
    gaps = _link_gaps(nat)
    # a verdict kube-proxy never writes in its iptables-mode Service chains (an admin's `-I
    # KUBE-NODEPORTS ... -j RETURN`): the traffic it matches skips kube-proxy's DNAT. These chains
    # are declared (so flushed and rewritten) by every kube-proxy sync: its restart removes it
    for r in nat.rules:
        if r.target in ("RETURN", "ACCEPT", "DROP", "REJECT") and (
                r.chain in ("KUBE-SERVICES", "KUBE-NODEPORTS")
                or r.chain.startswith(("KUBE-SVC-", "KUBE-EXT-", "KUBE-SEP-"))):
            gaps.append(f"foreign {r.spec}")
    ports = _nodeport_ports(snapshot, version)
    if ports and "KUBE-NODEPORTS" in nat.chains:
        if not any(r.target == "KUBE-NODEPORTS" for r in nat.rules_in("KUBE-SERVICES")):
            gaps.append("-A KUBE-SERVICES -j KUBE-NODEPORTS")
        have = {r.opt("--dport") for r in nat.rules_in("KUBE-NODEPORTS")}
        for key, port in ports:
            if str(port) not in have:
                gaps.append(f"-A KUBE-NODEPORTS --dport {port} ({key})")
    return gaps


def _whole_nat_tables(snapshot: ClusterSnapshot, node: str, facts: NodeFacts,
                      live: str) -> Iterator[tuple[int, Table, str]]:
    """(IP version, nat table, its save's label) of the node's `live` backend, per family the node
    has (ip6tables with an IPv6 podCIDR), for the saves read whole only: a save cut before COMMIT
    or with a line not understood may lack exactly the rules looked for, never read as "gone"."""
    for version in (4, 6):
        if version == 6 and 6 not in pod_families(snapshot, node):
            continue
        save = backend_saves(facts, version).get(live)
        if save is None or "nat" in save.incompatible_tables or save.errors:
            continue
        nat = save.table("nat")
        if nat is not None:
            yield version, nat, save_label(live, "nat", version, facts)


def _missing_jumps(snapshot: ClusterSnapshot, node: str, facts: NodeFacts, live: str, why: str,
                   pod: Any, shape: Any, mode: str | None) -> list[Finding]:
    """kube-proxy's chains are there but part of what links them into the packet's path is gone
    (an admin's or a firewall's `iptables -t nat -D/-F`): NodePorts/ClusterIPs (a jump from
    PREROUTING/OUTPUT, KUBE-NODEPORTS' rules) or the masquerade of forwarded Service traffic
    (POSTROUTING -> KUBE-POSTROUTING -> MASQUERADE) are dead on this node while kube-proxy runs
    and reports healthy. Its next full sync puts them back (a restart forces one)."""
    evidence: list[str] = []
    missing: list[str] = []
    for version, nat, label in _whole_nat_tables(snapshot, node, facts, live):
        gaps = _nat_gaps(snapshot, nat, version)
        ip = "ip6tables" if version == 6 else "iptables"
        for g in gaps:
            missing.append(g if version == 4 else f"{g} (IPv6)")
            evidence.append(f"{label}: {g[len('foreign '):]} (a verdict kube-proxy never writes "
                            "there: the traffic it matches skips kube-proxy)"
                            if g.startswith("foreign ") else
                            f"{label}: no {g}" if not g.startswith("chain ") else
                            f"{label}: no {g} in *nat (KUBE-SERVICES is there)")
        if gaps and version == 6:
            evidence.append(f"({ip}: kube-proxy's IPv6 proxier)")
    if not missing:
        return []
    evidence.extend(_kube_proxy_tail(facts, live, why, pod))
    return [Finding(
        code="KUBE_PROXY_NO_RULES", severity="error", node=node,
        title="kube-proxy's Service/NodePort rules are cut off from the packet path on this node",
        evidence=tuple(evidence),
        explanation=("kube-proxy's chains are in its nat table, but rules it always writes are "
                     "gone (" + "; ".join(missing) + "): without the jumps from PREROUTING/OUTPUT "
                     "no ClusterIP or NodePort is translated on this node, without KUBE-NODEPORTS' "
                     "rule a NodePort is not, without KUBE-POSTROUTING's MASQUERADE a NodePort "
                     "routed to another node's pod gets no reply; a foreign RETURN/ACCEPT in its "
                     "Service chains sends what it matches past kube-proxy. kube-proxy re-adds "
                     "the jumps only on a full sync (at start; from 1.28 otherwise once an hour) "
                     "and rewrites its Service chains whole on every sync: restart it."),
        reference=REF_KUBE_PROXY, step="pods",
        data=_no_rules_data(snapshot, facts, pod, shape, live, facts.kube_proxy_mode or mode,
                            missing),
    )]


def _no_ipvs_rules(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    """kube-proxy in ipvs mode keeps an IPVS virtual server per Service port (/proc/net/ip_vs,
    what `ipvsadm -Ln` shows: every cluster has at least default/kubernetes), the kube-ipvs0 dummy
    link holding the ClusterIPs, and KUBE-SERVICES in the nat table of its iptables backend (the
    ipset matches). When /proc/net/ip_vs was not read, the virtual servers are not checked (a
    "could not read" note of the shape says so) and only the link and chain are."""
    from clusterfix_tui.core.shape import ipvs_virtual_servers

    missing: list[str] = []
    evidence: list[str] = []
    vs = ipvs_virtual_servers(facts)
    if vs == 0:
        sec = facts.section("ip_vs")
        gone = sec is not None and sec.rc != 0
        missing.append("IPVS virtual servers")
        evidence.append("/proc/net/ip_vs: " + ("missing (ip_vs not loaded)" if gone else
                                               "no virtual server (ipvsadm -Ln would list none)"))
    if facts.links and not any(str(x.get("ifname")) == "kube-ipvs0" for x in facts.links):
        missing.append("kube-ipvs0")
        evidence.append("ip link: no kube-ipvs0 (the dummy link holding the ClusterIPs)")
    live, why = kube_proxy_backend(facts)
    save = backend_saves(facts)[live]
    if save is not None and "nat" not in save.incompatible_tables:
        nat = save.table("nat")
        if nat is None or "KUBE-SERVICES" not in nat.chains:
            missing.append("KUBE-SERVICES")
            evidence.append(f"{'iptables-legacy-save' if live == 'legacy' else 'iptables-nft-save -t nat'}: "
                            f"no chain KUBE-SERVICES in *nat (kube-proxy backend {live}: {why})")
    links = not missing
    if links:  # all there: what links kube-proxy's nat chains into the packet path
        missing, evidence = _ipvs_link_gaps(snapshot, node, facts, live)
    if not missing:
        return []
    shape = shape_of(snapshot)
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    evidence.append("kube-proxy mode: ipvs")
    evidence.append("kube-proxy healthz (:10256): " + (facts.kube_proxy_healthz or "no answer"))
    if links:
        evidence.append(f"kube-proxy backend {live} ({why})")
        return [Finding(
            code="KUBE_PROXY_NO_RULES", severity="error", node=node,
            title="kube-proxy's (ipvs mode) masquerade links are cut off on this node",
            evidence=tuple(evidence),
            explanation=("kube-proxy in ipvs mode lets IPVS translate Services, but its nat rules "
                         "mark what must be masqueraded and it re-adds their links on every sync "
                         "(its iptablesJumpChain, prepended). Missing here: " + "; ".join(missing)
                         + ". Without them a NodePort, or a node's own request to a ClusterIP, "
                         "answered by a pod on another node is not masqueraded and gets no reply. "
                         "That they stay missing means kube-proxy is not syncing: restart it and "
                         "read its log."),
            reference=REF_KUBE_PROXY, step="pods",
            data=_no_rules_data(snapshot, facts, pod, shape, "ipvs", "ipvs", missing),
        )]
    return [Finding(
        code="KUBE_PROXY_NO_RULES", severity="error", node=node,
        title="kube-proxy (ipvs mode) has programmed no Services on this node",
        evidence=tuple(evidence),
        explanation=("kube-proxy in ipvs mode programs one IPVS virtual server per Service port, "
                     "binds the ClusterIPs to kube-ipvs0 and keeps KUBE-SERVICES in iptables nat. "
                     "Missing here: " + ", ".join(missing) + ". kube-proxy is not running, cannot "
                     "sync or lacks the ip_vs modules (IPVS_MODULES_MISSING). Restart it and read "
                     "its log."),
        reference=REF_KUBE_PROXY, step="pods",
        data=_no_rules_data(snapshot, facts, pod, shape, "ipvs", "ipvs", missing),
    )]


def _ipvs_link_gaps(snapshot: ClusterSnapshot, node: str, facts: NodeFacts,
                    live: str) -> tuple[list[str], list[str]]:
    """(missing, evidence) of _ipvs_nat_gaps per family of the node (ip6tables with an IPv6
    podCIDR); a save not read whole is never read as "gone"."""
    missing: list[str] = []
    evidence: list[str] = []
    for version, nat, label in _whole_nat_tables(snapshot, node, facts, live):
        for g in _ipvs_nat_gaps(snapshot, nat):
            missing.append(g if version == 4 else f"{g} (IPv6)")
            evidence.append(f"{label}: no {g} in *nat (KUBE-SERVICES is there)"
                            if g.startswith("chain ") else f"{label}: no {g}")
    return missing, evidence


def _no_rules_data(snapshot: ClusterSnapshot, facts: NodeFacts, pod: Any, shape: Any,
                   backend: str, proxy_mode: str | None,
                   missing: list[str]) -> NoRulesData:
    """KUBE_PROXY_NO_RULES's data, whichever mode kube-proxy programs."""
    return NoRulesData(
        backend=backend, missing_chains=missing, healthz=facts.kube_proxy_healthz,
        proxy_mode=proxy_mode, pod=pod.name if pod else None,
        namespace=pod.namespace if pod else "kube-system",
        daemonset=_kp_daemonset(snapshot, pod), static=bool(pod is not None and pod.mirror),
        component="kube_proxy", kube_proxy=shape.kube_proxy if shape is not None else None)


def _no_nft_rules(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    """kube-proxy in nftables mode keeps its own nft table `kube-proxy` (family ip, and ip6 for
    IPv6) whose `services` chain dispatches every Service (`ip daddr . meta l4proto . th dport
    vmap @service-ips`). Without it, Services and NodePorts are dead on the node."""
    rs = facts.nft_ruleset
    if rs is None:
        return []  # nft not readable: the shape's "could not read" says so
    have = {(c.family, c.table, c.name) for c in rs.chains}
    fams = pod_families(snapshot, node)
    missing = [f"table {fam} kube-proxy chain services" for v, fam in ((4, "ip"), (6, "ip6"))
               if v in fams and (fam, "kube-proxy", "services") not in have]
    if not missing:
        return []
    pod = pod_for(snapshot, "kube_proxy_pods", node)
    shape = shape_of(snapshot)
    evidence = [f"nft -j list ruleset: no {m}" for m in missing]
    evidence.append("kube-proxy mode nftables"
                    + (f" ({shape.kube_proxy_mode_source})" if shape is not None else ""))
    evidence.append("kube-proxy healthz (:10256): " + (facts.kube_proxy_healthz or "no answer"))
    return [Finding(
        code="KUBE_PROXY_NO_RULES", severity="error", node=node,
        title="kube-proxy (nftables mode) has programmed no Service rules on this node",
        evidence=tuple(evidence),
        explanation=("kube-proxy in nftables mode keeps its rules in the nft table 'kube-proxy' "
                     "(its 'services' chain matches every Service). Without it NodePorts and "
                     "ClusterIPs do not work on this node: kube-proxy is not running or cannot "
                     "sync. Restart it and read its log."),
        reference=REF_KUBE_PROXY, step="pods",
        data=_no_rules_data(snapshot, facts, pod, shape, "nftables", "nftables", missing),
    )]


def _kp_daemonset(snapshot: ClusterSnapshot, pod: Any) -> str | None:
    """The kube-proxy DaemonSet's name (None for static pods / no DaemonSet)."""
    if pod is not None and pod.mirror:
        return None
    shape = shape_of(snapshot)
    if shape is not None:
        return shape.kube_proxy_workload.name if shape.kube_proxy_workload else None
    return "kube-proxy"


# -- KUBE_PROXY_SHADOWED -------------------------------------------------------------------------


def shadowed(snapshot: ClusterSnapshot, node: str, facts: NodeFacts) -> list[Finding]:
    """A foreign ACCEPT/RETURN ahead of kube-proxy's jump in nat PREROUTING/OUTPUT of kube-proxy's
    own backend (core.checks.nat_shadow): the Service packets it matches are never DNATed here,
    and a kube-proxy restart does not help (it only checks its jump exists). iptables mode only
    (nftables mode: another base chain's accept does not stop kube-proxy's; ipvs: the nat jump
    only marks for masquerade)."""
    from clusterfix_tui.core.checks import nat_shadow

    shape = shape_of(snapshot)
    mode = shape.proxy_mode(node) if shape is not None else snapshot.kube_proxy_mode
    if (mode or facts.kube_proxy_mode or "iptables") != "iptables" or \
            (facts.kube_proxy_mode not in (None, "", "iptables")):
        return []
    if shape is None and not (snapshot.kube_proxy_pods or facts.kube_proxy_mode
                              or snapshot.kube_proxy_config_found):
        return []
    live, why = kube_proxy_backend(facts)
    out: list[Finding] = []
    for version in (4, 6):
        if version == 6 and 6 not in pod_families(snapshot, node):
            continue
        save = backend_saves(facts, version).get(live)
        if save is None or "nat" in save.incompatible_tables or save.errors:
            continue
        if _live_rules_elsewhere(facts, live, version):
            continue
        nat = save.table("nat")
        if nat is None:
            continue
        local = nat_shadow.node_addresses(facts, version)
        if local is not None and version == 4:
            local = [*local, "127.0.0.1"]
        label = save_label(live, "nat", version, facts)
        ip = "ip6tables" if version == 6 else "iptables"
        single = label in ("iptables-save", "ip6tables-save")
        for sh in nat_shadow.shadows(nat, local):
            # kube-proxy's own jump (its form), not a narrower one someone put to KUBE-SERVICES
            # (the walk stops at the first: a copy of that one would repair only its packets)
            jumps = [r for r in nat.rules_in(sh.builtin) if r.target == "KUBE-SERVICES"]
            jump = next((r.spec for r in jumps if nat_shadow.is_kube_proxy_jump(r.args)),
                        jumps[0].spec)
            copies = sum(1 for r in jumps if r.spec == jump)
            names = sorted({d.label for d in sh.dests})
            fam = " (IPv6)" if version == 6 else ""
            evidence = [f"{label}: {sh.rule.spec} (ahead of kube-proxy's {jump})"]
            if sh.via != sh.rule.spec:
                evidence.append(f"{label}: {sh.via} (where those packets end)")
            evidence.append("Service ports it takes past kube-proxy" + (" for some sources or "
                            "interfaces" if sh.partial else "") + ": " + ", ".join(names[:8])
                            + (f" (+{len(names) - 8})" if len(names) > 8 else ""))
            evidence.append(f"kube-proxy backend {live} ({why})")
            out.append(Finding(
                code="KUBE_PROXY_SHADOWED", severity="error", node=node,
                title=f"a rule ahead of kube-proxy's jump in nat {sh.builtin} takes Service "
                      f"traffic past kube-proxy{fam}",
                evidence=tuple(evidence),
                explanation=(f"In the nat table kube-proxy uses ({live} backend{fam}), "
                             f"`{sh.rule.spec}` comes before kube-proxy's jump to KUBE-SERVICES "
                             "and ends the nat traversal (ACCEPT, or RETURN in a built-in chain) "
                             "of the packets it matches: they are never DNATed to a Service's "
                             "pods on this node. kube-proxy only checks that its jump exists, it "
                             "never moves it: restarting kube-proxy does not help. The fix puts "
                             "kube-proxy's own jump (its exact text) again ahead of that rule; "
                             "the rule stays for every other packet."),
                reference=REF_KUBE_PROXY, step="iptables",
                data=ShadowedData(backend=live, ip_version=version, builtin=sh.builtin,
                                  rule=sh.rule.spec, via=sh.via, jump=jump, services=names,
                                  partial=sh.partial, jump_copies=copies,
                                  binary=ip if single else f"{ip}-{live}"),
            ))
    return out
