"""Which of kube-proxy's Service packets a rule ahead of its jump in nat PREROUTING/OUTPUT ends.

kube-proxy (iptables mode) links its Service rules into the nat table with one jump from each of
PREROUTING and OUTPUT (`-m comment --comment "kubernetes service portals" -j KUBE-SERVICES`). It
checks that jump exists (`iptables -C`) and appends it when it does not; it never moves it. A rule
ahead of it in the same chain of the same table whose verdict is ACCEPT (or RETURN, which in a
built-in chain applies the chain's policy, ACCEPT in nat) ends the nat traversal of the packets it
matches: they never reach KUBE-SERVICES, so they are never DNATed on this node, and a kube-proxy
restart changes nothing (the jump is still there). The same rule in the other iptables backend or
an `accept` in another nft base chain at the nat hook does not: the kernel's nat core
(net/netfilter/nf_nat_core.c, nf_nat_inet_fn) runs every nat hook entry in priority order until
one sets up a mapping; an ACCEPT only ends its own table's chain.

A packet is one of kube-proxy's Service destinations read from its own rules: (ClusterIP /
external IP, protocol, port) from KUBE-SERVICES, (a local address, protocol, nodePort) from
KUBE-NODEPORTS. A rule is evaluated against each: "all" (every such packet), "some" (only some
sources, interfaces or source ports), "none", or None (a match this module does not understand:
the rule is not judged, never a guess).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.checks._common import net_of
from clusterfix_tui.core.parsers import Rule, Table

PROTO_NUM = {"6": "tcp", "17": "udp", "132": "sctp"}
# kube-proxy's Service chains a KUBE-SERVICES rule sends a Service's packets to
SERVICE_TARGETS = ("KUBE-SVC-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-", "KUBE-SVL-")
# targets that let the packet go on to the next rule
NON_TERMINAL = {"MARK", "CONNMARK", "LOG", "NFLOG", "KUBE-MARK-MASQ", "KUBE-MARK-DROP", "TRACE",
                "NOTRACK", "CT"}
VERDICTS = ("ACCEPT", "RETURN")
MAX_DEPTH = 8


@dataclass(frozen=True)
class Dest:
    """One of kube-proxy's Service destinations: `addr` None = a local address (a NodePort)."""

    addr: str | None
    proto: str
    port: int
    label: str


@dataclass(frozen=True)
class Shadow:
    builtin: str  # PREROUTING | OUTPUT
    rule: Rule  # the rule in the built-in chain ahead of kube-proxy's jump
    via: str  # the rule that ends the traversal (the same rule, or one in a chain it jumps to)
    dests: tuple[Dest, ...]
    partial: bool  # only some sources / interfaces of those destinations


def is_kube_proxy_jump(args: tuple[str, ...] | list[str]) -> bool:
    """The form kube-proxy writes its jump from PREROUTING/OUTPUT in (pkg/proxy/iptables:
    `-m comment --comment "kubernetes service portals" -j KUBE-SERVICES`; no comment with
    --masquerade-all=false on very old versions): no match but the comment. Any other rule
    jumping to KUBE-SERVICES (`-s NET -j KUBE-SERVICES`, `-g KUBE-SERVICES`) is someone else's."""
    a = tuple(args)
    return a == ("-j", "KUBE-SERVICES") or (
        len(a) == 6 and a[:3] == ("-m", "comment", "--comment") and a[4:] == ("-j", "KUBE-SERVICES"))


def service_dests(nat: Table) -> list[Dest]:
    """kube-proxy's Service destinations, from its own KUBE-SERVICES and KUBE-NODEPORTS rules."""
    out: dict[tuple[str | None, str, int], Dest] = {}
    for chain, local in (("KUBE-SERVICES", False), ("KUBE-NODEPORTS", True)):
        for r in nat.rules_in(chain):
            if not (r.target or "").startswith(SERVICE_TARGETS):
                continue
            proto, port = r.opt("-p"), r.opt("--dport")
            addr = None if local else (r.opt("-d") or "").split("/")[0]
            if not proto or not port or not (port.isascii() and port.isdigit()) or (not local and not addr):
                continue
            if "!" in r.args:
                continue
            label = r.opt("--comment") or f"{addr or 'node'}:{port}/{proto}"
            out.setdefault((addr, proto.lower(), int(port)),
                           Dest(addr, proto.lower(), int(port), label))
    return list(out.values())


def _ports(spec: str) -> list[tuple[int, int]] | None:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        try:
            a = int(lo) if lo else 0
            b = int(hi) if hi else (65535 if _ == ":" else a)
        except ValueError:
            return None
        out.append((a, b))
    return out


def _net(spec: str) -> Any:
    return net_of(spec if "/" in spec else spec + ("/128" if ":" in spec else "/32"))


def _addr_in(addr: str, net: Any) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return bool(ip.version == net.version and ip in net)


# one match of a rule, read once per rule: (kind, negated, value)
Match = tuple[str, bool, Any]


@functools.lru_cache(maxsize=4096)
def _prepared(args: tuple[str, ...]) -> tuple[Match, ...] | None:
    """A rule's matches, read once (a rule is asked about every Service destination): None when
    one is not understood."""
    out: list[Match] = []
    i = 0
    while i < len(args):
        tok = args[i]
        neg = False
        if tok == "!":
            neg, i = True, i + 1
            if i >= len(args):
                return None
            tok = args[i]
        val = args[i + 1] if i + 1 < len(args) else None
        if tok in ("-j", "-g", "--jump", "--goto"):
            break  # the target's own options follow: not matches
        if tok in ("-m", "--match"):
            if val not in ("tcp", "udp", "sctp", "comment", "multiport", "addrtype", "conntrack",
                           "state"):
                return None
        elif val is None:
            return None
        elif tok in ("-p", "--protocol"):
            out.append(("proto", neg, PROTO_NUM.get(val, val.lower())))
        elif tok in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ranges = _ports(val)
            if ranges is None:
                return None
            out.append(("ports", neg, tuple(ranges)))
        elif tok in ("-d", "--destination"):
            net = _net(val)
            if net is None:
                return None
            out.append(("daddr", neg, net))
        elif tok == "--dst-type":
            types = val.upper().split(",")
            if any(t not in ("LOCAL", "UNICAST") for t in types):
                return None
            out.append(("dsttype", neg, tuple(types)))
        elif tok in ("-s", "--source", "-i", "--in-interface", "-o", "--out-interface", "--sport",
                     "--source-port", "--sports", "--source-ports", "--src-type"):
            # a client's address, interface or port ("not these" too): some of the packets
            out.append(("some", False, None))
        elif tok in ("--ctstate", "--state"):
            states = val.upper().split(",")
            if any(x not in ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED") for x in states):
                return None
            out.append(("ctstate", neg, tuple(states)))
        elif tok != "--comment":
            return None
        i += 2
    return tuple(out)


_NOT_YET: Any = object()


def matches(rule: Rule, dest: Dest, local: list[str] | None,
            cache: dict[int, Any] | None = None) -> str | None:
    """How much of `dest`'s traffic `rule`'s matches take: "all", "some", "none", or None when
    a match is not understood. `local`: the node's addresses (None when not read)."""
    # cache: id(rule) -> its prepared matches, one walk's (its table and rules live as long)
    prepared = cache.get(id(rule), _NOT_YET) if cache is not None else _NOT_YET
    if prepared is _NOT_YET:
        prepared = _prepared(tuple(rule.args))
        if cache is not None:
            cache[id(rule)] = prepared
    if prepared is None:
        return None
    some = False
    for kind, neg, val in prepared:
        if kind == "some":
            some = True
            continue
        if kind == "proto":
            hit = val in ("all", "0") or val == dest.proto
        elif kind == "ports":
            hit = any(a <= dest.port <= b for a, b in val)
        elif kind == "daddr":
            if dest.addr is not None:
                hit = _addr_in(dest.addr, val)
            else:
                if local is None:
                    return None
                inside = [x for x in local if _addr_in(x, val) != neg]
                if not inside:
                    return "none"
                some = some or len(inside) < len(local)
                continue
        elif kind == "dsttype":
            hit = "UNICAST" in val or ("LOCAL" in val) == (dest.addr is None)
        else:  # ctstate: the nat table sees a connection's first packet only
            hit = "NEW" in val
        if hit == neg:
            return "none"
    return "some" if some else "all"


def _chain_verdict(nat: Table, chain: str, dest: Dest, local: list[str] | None, end_is_policy: bool,
                   depth: int, cache: dict[int, Any] | None = None) -> tuple[str, str, bool] | None:
    """What a user chain does with `dest`'s packets: ("shadow", rule, partial) when it ACCEPTs
    them, or RETURNs / ends while `end_is_policy` (entered with -g from the built-in chain, or
    with -g from a chain so entered: its end is the built-in chain's policy, ACCEPT in nat);
    ("return", "", _) when they come back to the chain that called it; ("done", "", _) when
    something else ends them (a DNAT: not this question); None when not judged. A -j from a user
    chain returns into it; a -g returns where that chain would (iptables-extensions: --goto)."""
    if depth > MAX_DEPTH or chain not in nat.chains or chain.startswith("KUBE-"):
        return None
    partial = False  # some of the packets left the chain already (a RETURN for some sources)
    for r in nat.rules_in(chain):
        m = matches(r, dest, local, cache)
        if m is None:
            return None
        if m == "none":
            continue
        t = r.target or ""
        if t == "ACCEPT" or (t == "RETURN" and end_is_policy):
            return "shadow", r.spec, partial or m == "some"
        if t == "RETURN":
            if m == "all":
                return ("return", "", False) if not partial else None
            partial = True
            continue
        if t in NON_TERMINAL or not t:
            continue
        if t in nat.chains and nat.chains[t] is None:
            goto = "-g" in r.args or "--goto" in r.args
            sub = _chain_verdict(nat, t, dest, local, end_is_policy and goto, depth + 1, cache)
            if sub is None:
                return None
            if sub[0] == "shadow":
                return sub[0], sub[1], sub[2] or partial or m == "some"
            if goto or sub[0] == "done":  # this chain is done for those packets
                if m == "all":
                    return (sub[0], "", False) if not partial else None
                partial = True
            continue
        # DNAT, REDIRECT, MASQUERADE, DROP...: someone else's verdict, not a shadow
        return ("done", "", False) if m == "all" and not partial else None
    if end_is_policy:
        return "shadow", f"(the end of {chain}, entered with -g: the policy)", partial
    return "return", "", False


def shadows(nat: Table, local: list[str] | None) -> list[Shadow]:
    """The rules ahead of kube-proxy's jump in nat PREROUTING/OUTPUT that end the traversal of
    some of its Service destinations' packets (ACCEPT/RETURN there, or a chain they jump to that
    ACCEPTs them). Nothing when the chain's policy is not ACCEPT or kube-proxy's jump is not there
    (another check's business)."""
    out: list[Shadow] = []
    cache: dict[int, Any] = {}
    ahead = False
    for builtin in ("PREROUTING", "OUTPUT"):
        rules = nat.rules_in(builtin)
        ahead = ahead or bool(rules and rules[0].target != "KUBE-SERVICES")
    if not ahead:  # kube-proxy prepends its jumps: nothing ahead of them is the usual case
        return out
    dests = service_dests(nat)
    if not dests:
        return out
    for builtin in ("PREROUTING", "OUTPUT"):
        rules = nat.rules_in(builtin)
        if nat.chains.get(builtin) not in ("ACCEPT", None) or \
                not any(r.target == "KUBE-SERVICES" for r in rules):
            continue
        open_: dict[Dest, bool] = {d: True for d in dests}
        hits: dict[int, tuple[Rule, str, list[Dest], bool]] = {}
        for idx, r in enumerate(rules):
            if r.target == "KUBE-SERVICES":
                break
            for d in [d for d, o in open_.items() if o]:
                m = matches(r, d, local, cache)
                if m is None:
                    open_[d] = False  # not judged from here on
                    continue
                if m == "none":
                    continue
                t = r.target or ""
                verdict: tuple[str, str, bool] | None
                if t in VERDICTS:
                    verdict = ("shadow", r.spec, m == "some")
                elif t in NON_TERMINAL or not t:
                    continue
                elif t in nat.chains and nat.chains[t] is None:
                    sub = _chain_verdict(nat, t, d, local, "-g" in r.args or "--goto" in r.args, 1,
                                         cache)
                    verdict = None if sub is None else (sub[0], sub[1], sub[2] or m == "some")
                else:
                    verdict = ("done", "", False)
                if verdict is None:
                    open_[d] = False
                    continue
                if verdict[0] == "return":
                    continue  # back in the built-in chain: on to its next rule
                if verdict[0] == "done":
                    if m == "all":
                        open_[d] = False
                    continue
                hit = hits.setdefault(idx, (r, verdict[1], [], True))
                hit[2].append(d)
                hits[idx] = (r, hit[1], hit[2], hit[3] and verdict[2])
                if not verdict[2]:
                    open_[d] = False
        for _idx, (r, via, ds, partial) in sorted(hits.items()):
            out.append(Shadow(builtin, r, via, tuple(ds), partial))
    return out


def node_addresses(facts: Any, version: int) -> list[str] | None:
    """The node's own addresses of that family (`ip -j addr`), None when not read."""
    addrs = getattr(facts, "addrs", None)
    if not addrs:
        return None
    fam = "inet6" if version == 6 else "inet"
    out = [str(a.get("local")) for link in addrs for a in (link.get("addr_info") or [])
           if isinstance(a, dict) and a.get("family") == fam and a.get("local")]
    return out or None
