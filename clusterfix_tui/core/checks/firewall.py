"""Host firewalls that drop cluster traffic: REJECT/DROP rules and INPUT/OUTPUT policies.

A rule or policy is a finding only when a flow the cluster needs reaches it (see
core/checks/firewall_path.py: flannel VXLAN in/out, kubelet, the API server, NodePorts, forwarded
pod traffic of every family), in iptables-legacy, iptables-nft or an nft-native table such as
firewalld's `inet firewalld`, with jumps followed. A reject for traffic the cluster never sends is
not a finding. The evidence names the flow each rule breaks; `data["accepts"]` are the narrow
ACCEPT rules that open exactly those flows ahead of the drop (what the host_network step inserts by
default); deleting the rule / flipping the policy is the opt-in alternative.

FORWARD policies are FORWARD_DROP's (core/checks/iptables.py); this check reports FORWARD rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core.checks._common import (
    IPTABLES_SECTIONS,
    backend_saves,
    plain_view,
    save_label,
)
from clusterfix_tui.core.checks.firewall_path import (
    DOCKER_NFT_FIX,
    DOCKER_NFT_TABLES,
    ClusterHosts,
    Flow,
    cluster_flows,
    node_hits,
    node_may_drop,
    underlay_ifaces,
)
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.snapshot import ClusterSnapshot

REF = "https://github.com/kubernetes/kubernetes/issues/101828"
REF_PORTS = "https://kubernetes.io/docs/reference/networking/ports-and-protocols/"
REF_FLANNEL = "https://github.com/flannel-io/flannel/blob/master/Documentation/troubleshooting.md#firewalls"
COMMENT = "clusterfix"
# finding code -> the facts sections it is decided from
_FW_READS = (*IPTABLES_SECTIONS, "nft_json", "firewalld", "ip_link", "ip_addr", "ip_route")
READS: dict[str, tuple[str, ...]] = {"FIREWALL_REJECT": _FW_READS, "FIREWALL_POLICY_DROP": _FW_READS}
# kept for callers that imported it: ICMP types a client sees as "no route to host"
HOST_UNREACH = {"icmp-host-prohibited", "icmp-host-unreachable", "icmp-net-prohibited",
                "icmp-net-unreachable", "icmp-admin-prohibited", "host-prohib", "host-prohibited",
                "admin-prohibited", "net-prohibited", "host-unreachable", "net-unreachable"}


@dataclass(frozen=True, kw_only=True)
class FirewallAcceptsData(FindingData):
    """What the host_network step opens for a firewall finding: the narrow ACCEPTs, one per
    (backend, family, table, chain, flow): {"backend": "legacy"|"nft"|"nft-native", "family",
    "table", "chain", "flow", "hook", "describe"} plus "spec" (iptables argv after the chain)
    or "expr" (nft rule tokens) and, for nft, "comment"."""

    accepts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class FirewallDropData(FirewallAcceptsData, codes=("FIREWALL_REJECT", "FIREWALL_POLICY_DROP")):
    # the dropping rules / policies: {"backend", "table", "chain", "base_chain", "hook", "kind"
    # ("rule"|"policy"), "verdict", "rule", "path", "flows", "match"} (+ nft "family", "handle",
    # "text", "json"; ip6tables "family": "ip6")
    rules: list[dict[str, Any]] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)  # the cluster flows dropped, by name
    firewalld: dict[str, Any] = field(default_factory=dict)  # firewalld_info(): running, zone...


def _comment(flow: Flow) -> str:
    return f"{COMMENT}: {flow.name}"


def iptables_accept_spec(flow: Flow) -> list[str]:
    """The narrow ACCEPT for a flow, as iptables argv after the chain (no -I/-A)."""
    spec: list[str] = []
    if flow.hook == "forward":
        if flow.accept_on == "saddr" and flow.saddrs:
            spec += ["-s", flow.saddrs[0]]
        elif flow.accept_on == "daddr" and flow.daddrs:
            spec += ["-d", flow.daddrs[0]]
    if flow.proto and flow.dports:
        lo, hi = flow.dports
        spec += ["-p", flow.proto, "-m", flow.proto, "--dport", str(lo) if lo == hi else f"{lo}:{hi}"]
    return [*spec, "-m", "comment", "--comment", _comment(flow), "-j", "ACCEPT"]


def nft_accept_expr(flow: Flow, family: str) -> list[str]:
    """The narrow accept as nft rule tokens (each one shell-quoted by the fix)."""
    expr: list[str] = []
    if flow.hook == "forward":
        fam = flow.family
        if flow.accept_on == "saddr" and flow.saddrs:
            expr += [fam, "saddr", flow.saddrs[0]]
        elif flow.accept_on == "daddr" and flow.daddrs:
            expr += [fam, "daddr", flow.daddrs[0]]
    if flow.proto and flow.dports:
        lo, hi = flow.dports
        expr += [flow.proto, "dport", str(lo) if lo == hi else f"{lo}-{hi}"]
    return [*expr, "accept", "comment", f'"{_comment(flow)}"']


_MATCH_ONLY_END = ("-j", "--jump", "-g", "--goto")


def early_accept_spec(flow: Flow, args: tuple[str, ...]) -> list[str] | None:
    """The ACCEPT for a flow a raw/mangle rule drops, to go right before that rule: the rule's
    own matches (what it drops) narrowed to the flow (its pod network side, its protocol and
    ports where the rule does not test them), so exactly the flow's packets the rule would drop
    are accepted and every other packet meets the table's rules as before (a CNI's marks in raw
    or mangle included). None when the rule's matches cannot be taken apart (a quote, an odd
    token): no accept is planned then."""
    matches: list[str] = []
    i = 0
    while i < len(args):
        t = args[i]
        if t in _MATCH_ONLY_END:
            break
        if t == "-m" and i + 1 < len(args) and args[i + 1] == "comment":
            i += 2
            continue
        if t == "--comment":
            i += 2
            continue
        matches.append(t)
        i += 1
    if any(not x or any(c in x for c in "\n\r\0") for x in matches):
        return None
    has = set(matches)
    extra: list[str] = []
    if flow.hook == "forward":
        if flow.accept_on == "saddr" and flow.saddrs and not has & {"-s", "--source", "--src"}:
            extra += ["-s", flow.saddrs[0]]
        elif flow.accept_on == "daddr" and flow.daddrs and \
                not has & {"-d", "--destination", "--dst"}:
            extra += ["-d", flow.daddrs[0]]
    ports = {"--dport", "--dports", "--destination-port", "--destination-ports"}
    if flow.proto and flow.dports:
        lo, hi = flow.dports
        rng = str(lo) if lo == hi else f"{lo}:{hi}"
        if not has & {"-p", "--protocol"}:
            extra += ["-p", flow.proto, "-m", flow.proto, "--dport", rng]
        elif not has & ports:
            k = next(j for j, x in enumerate(matches) if x in ("-p", "--protocol"))
            if k + 1 < len(matches) and matches[k + 1] == flow.proto and \
                    (k == 0 or matches[k - 1] != "!"):
                extra += ["-m", flow.proto, "--dport", rng]
    return [*matches, *extra, "-m", "comment", "--comment", _comment(flow), "-j", "ACCEPT"]


# chains of CNIs that enforce NetworkPolicy in the filter FORWARD path (calico's felix, kube-router,
# antrea, weave-npc); cilium enforces policy in eBPF (its CILIUM_FORWARD only accepts)
POLICY_CHAIN_PREFIXES = ("cali-", "KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-", "ANTREA-",
                         "WEAVE-NPC")


def _policy_chains(table: Any) -> list[str]:
    """The CNI policy chains FORWARD jumps to (directly: where the CNI hooks in)."""
    return sorted({r.target for r in table.rules_in("FORWARD")
                   if r.target and r.target.startswith(POLICY_CHAIN_PREFIXES)})


def _docker_user_first(table: Any) -> bool:
    rules = [r for r in table.rules if r.chain == "FORWARD"]
    return bool(rules) and rules[0].target == "DOCKER-USER" and "DOCKER-USER" in table.chains


def firewalld_info(f: NodeFacts, node_ip: str | None) -> dict[str, Any]:
    """{"running": bool|None, "zone": str|None}: firewalld as `firewall-cmd` reports it (the
    zone of the interface carrying the node's address, else the default zone)."""
    s = f.section("firewalld")
    if s is None or s.rc == 127:
        return {"running": None, "zone": None}
    lines = s.stdout.splitlines()
    running = s.rc == 0 and bool(lines) and lines[0].strip() == "running"
    zone = default = None
    under = set(underlay_ifaces(f, node_ip))
    cur = None
    for line in lines[1:]:
        if line.startswith("default-zone:"):
            default = line.split(":", 1)[1].strip() or None
        elif line and not line[0].isspace():
            cur = line.split()[0]
        elif cur and line.strip().startswith("interfaces:"):
            if under & set(line.split(":", 1)[1].split()):
                zone = zone or cur
    return {"running": running, "zone": zone or default}


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    nodes = snapshot.nodes
    hosts = ClusterHosts(nodes or {})
    for node, f in sorted(facts_by_node.items()):
        saves = backend_saves(f)
        saves6 = backend_saves(f, 6)
        if not node_may_drop(f, saves, saves6):
            continue  # no rule or policy there can drop a flow: no flows to build
        flows = cluster_flows(snapshot, node, f, hosts)
        hits = node_hits(f, flows, saves, saves6)
        if not hits:
            continue
        node_ip = getattr(nodes.get(node), "internal_ip", None)
        fw = firewalld_info(f, node_ip)
        by_code: dict[str, list[dict[str, Any]]] = {"FIREWALL_REJECT": [], "FIREWALL_POLICY_DROP": []}
        for h in hits:
            hit, flow = h["hit"], h["flow"]
            if hit.kind == "policy":
                if flow.hook == "forward" and h["table"] == "filter" or \
                        flow.hook == "forward" and h["backend"] == "nft-native":
                    continue  # FORWARD_DROP (checks/iptables.py) owns forward policies
                by_code["FIREWALL_POLICY_DROP"].append(h)
            else:
                by_code["FIREWALL_REJECT"].append(h)
        for code, hs in by_code.items():
            if hs:
                out.append(_finding(code, node, f, hs, {"ip": saves, "ip6": saves6}, fw))
    return out


def _where(h: dict[str, Any]) -> str:
    b = h["backend"]
    if b == "nft-native":
        return f"nft {h['family']} {h['table']}"
    return f"{'ip6tables' if h.get('family') == 'ip6' else 'iptables'}-{b} {h.get('table') or 'filter'}"


def _finding(code: str, node: str, f: NodeFacts, hs: list[dict[str, Any]],
             saves: dict[str, Any], fw: dict[str, Any]) -> Finding:
    rules: dict[tuple[Any, ...], dict[str, Any]] = {}
    accepts: dict[tuple[Any, ...], dict[str, Any]] = {}
    evidence: list[str] = []
    flows_hit: dict[str, str] = {}
    policy_chains: set[str] = set()
    blocklists: dict[tuple[str, str], tuple[str, list[str]]] = {}
    docker_tables: set[str] = set()
    for h in hs:
        hit, flow = h["hit"], h["flow"]
        b, table, fam = h["backend"], h["table"], h["family"]
        key = (b, table, fam, hit.chain, hit.rule, hit.handle)
        r = rules.get(key)
        if r is None:
            r = {"backend": b, "table": table, "chain": hit.chain, "base_chain": hit.base_chain,
                 "hook": flow.hook, "kind": hit.kind, "verdict": hit.verdict, "rule": hit.rule,
                 "path": list(hit.path), "flows": [], "match": hit.match}
            if b == "nft-native":
                r.update({"family": fam, "handle": hit.handle, "text": hit.rule,
                          "json": hit.json})
            elif fam == "ip6":
                r["family"] = "ip6"  # an ip6tables rule
            if h.get("from_nft"):
                # iptables-nft's raw table read from the nft ruleset: nft's text, not an
                # iptables spec (the opt-in deletion cannot take it: a note says so)
                r["from_nft"] = True
            rules[key] = r
        if flow.name not in [x["name"] for x in r["flows"]]:
            r["flows"].append(flow.to_dict())
        flows_hit[flow.name] = flow.describe
        if hit.blocklists and not (b in ("legacy", "nft") and table != "filter"
                                   and hit.kind == "rule"):
            # a drop of a set's addresses (a blocklist) comes first on this flow's path: the
            # accept at the top of the base chain would let the set's addresses in too
            for chain_, rule_, why_ in hit.blocklists:
                bl = blocklists.setdefault((chain_, rule_), (why_, []))
                if flow.describe not in bl[1]:
                    bl[1].append(flow.describe)
            continue
        # the narrow accept: at the top of the hook's base chain of the same table (DOCKER-USER
        # for forwarded traffic on docker hosts: docker jumps there first and keeps it on restart)
        chain = hit.base_chain
        if b in ("legacy", "nft"):
            views = saves.get(fam) or {}
            t = views[b].table("filter") if views.get(b) is not None else None
            if flow.hook == "forward" and table == "filter" and t is not None and \
                    _docker_user_first(t):
                chain = "DOCKER-USER"
            if flow.hook == "forward" and table == "filter" and t is not None:
                pol = _policy_chains(t)
                if pol:
                    # an ACCEPT ahead of the drop runs before the CNI's NetworkPolicy chains
                    # for that traffic: policy would no longer be enforced on this node
                    policy_chains.update(pol)
                    continue
            spec = iptables_accept_spec(flow)
            extra: dict[str, Any] = {}
            if table != "filter":
                # a raw/mangle drop is passed by an ACCEPT in that table (one in filter comes
                # too late): right before the dropping rule, matching what it drops of the
                # flow (early_accept_spec); a policy DROP: appended to the base chain (only
                # what reaches the policy). iptables-nft's raw read from the nft ruleset (no
                # iptables spec of the rule): none, a note says so.
                if h.get("from_nft") or (hit.kind == "rule" and not h.get("position")):
                    continue
                if hit.kind == "rule":
                    early = early_accept_spec(flow, tuple(h.get("args") or ()))
                    if early is None:
                        continue
                    spec, chain = early, hit.chain
                    extra = {"position": int(h["position"]), "before": hit.rule}
                else:
                    extra = {"append": True}
            akey: tuple[Any, ...] = (b, fam, table, chain, tuple(spec))
            accepts.setdefault(akey, {**extra, "backend": b, "table": table, "chain": chain,
                                      "spec": spec, "flow": flow.name, "hook": flow.hook,
                                      "describe": flow.describe, "family": fam})
        elif (fam, table) in DOCKER_NFT_TABLES:
            docker_tables.add(f"{fam} {table}")
        else:
            expr = nft_accept_expr(flow, fam)
            akey = (b, fam, table, chain, tuple(expr))
            accepts.setdefault(akey, {"backend": b, "family": fam, "table": table,
                                      "chain": chain, "expr": expr, "flow": flow.name,
                                      "hook": flow.hook, "describe": flow.describe,
                                      "comment": _comment(flow)})
    for r in rules.values():
        names = ", ".join(x["describe"] for x in r["flows"])
        where = _where({"backend": r["backend"], "family": r.get("family"), "table": r["table"]})
        path = " -> ".join(r["path"])
        what = r["rule"] if r["kind"] == "rule" else (
            f"chain {r['chain']} policy {r['verdict']}")
        label = ((save_label(r["backend"], r["table"]) if r.get("family") != "ip6" else
                  "ip6tables-save" if plain_view(f, 6) else f"ip6tables-{r['backend']}-save")
                 if r["backend"] in ("legacy", "nft") and not r.get("from_nft")
                 else "nft list ruleset")
        evidence.append(f"{label}: {what}  [{where}, {path}]  drops: {names}"
                        + ("" if r["match"] == "full" else " (part of it)"))
    if policy_chains:
        evidence.append("FORWARD runs the CNI's network policy chains ("
                        + ", ".join(sorted(policy_chains)[:4]) + "): an ACCEPT for forwarded pod "
                        "traffic ahead of the dropping rule would bypass them, so none is planned; "
                        "delete or narrow the rule (opt-in: delete it)")
    for (chain_, rule_), (why_, names_) in blocklists.items():
        evidence.append(f"{rule_}  [chain {chain_}] drops the addresses of a set ({why_}) "
                        f"before this: not blamed for {', '.join(names_)}, and no accept is "
                        "planned at the top of the chain (it would let those addresses in); "
                        "open the flow after that rule by hand, or opt in to deleting the drop")
    for dt in sorted(docker_tables):
        evidence.append(f"nft table {dt} is docker's own (its nftables firewall backend): "
                        + DOCKER_NFT_FIX)
    if fw.get("running"):
        evidence.append(f"firewalld is running (zone {fw.get('zone') or '?'})")
    policy = code == "FIREWALL_POLICY_DROP"
    title = (f"the firewall's default DROP policy drops {', '.join(sorted(flows_hit))}" if policy
             else f"a firewall rule drops cluster traffic: {', '.join(sorted(flows_hit))}")
    return Finding(
        code=code, severity="error", node=node, title=title, evidence=tuple(evidence),
        explanation=("This node's host firewall drops traffic Kubernetes needs ("
                     + "; ".join(flows_hit.values()) + "). Dropped VXLAN breaks every pod and "
                     "NodePort path through the node; a REJECT makes clients and probes see 'no "
                     "route to host'. Fix: ACCEPT exactly these flows ahead of the "
                     + ("policy" if policy else "rule") + " (the default; the firewall stays); "
                     "deleting the rule or flipping the policy is an opt-in alternative."),
        reference=REF_FLANNEL if {"vxlan-in", "vxlan-out", "vxlan6-in", "vxlan6-out"} & set(flows_hit)
        else REF_PORTS,
        step="host_network",
        data=FirewallDropData(rules=list(rules.values()), accepts=list(accepts.values()),
                              flows=sorted(flows_hit), firewalld=fw),
    )
