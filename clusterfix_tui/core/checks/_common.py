"""Helpers shared by the checks: pure, no I/O."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.parsers import IptablesSave, Table

DEFAULT_POD_NETWORK = "10.244.0.0/16"


def find_line(text: str, *needles: str) -> str | None:
    """The first line of `text` containing every needle (for exact evidence lines)."""
    for line in (text or "").splitlines():
        if all(n in line for n in needles):
            return line.strip()
    return None


def in_net(ip: str | None, cidr: str | None) -> bool:
    try:
        return ipaddress.ip_interface(str(ip)).ip in ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return False


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


def backend_saves(facts: NodeFacts) -> dict[str, IptablesSave | None]:
    """backend -> one IptablesSave holding its nat and filter tables (nft: two saves merged)."""
    nft_tables: dict[str, Table] = {}
    comments: list[str] = []
    incompatible: list[str] = []
    any_nft = False
    for s in (facts.nft_nat, facts.nft_filter):
        if s is None:
            continue
        any_nft = True
        nft_tables.update(s.tables)
        comments.extend(s.comments)
        incompatible.extend(s.incompatible_tables)
    nft = IptablesSave(nft_tables, tuple(comments), tuple(incompatible)) if any_nft else None
    return {"legacy": facts.legacy, "nft": nft}


def save_label(backend: str, table: str) -> str:
    return "iptables-legacy-save" if backend == "legacy" else f"iptables-nft-save -t {table}"


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
