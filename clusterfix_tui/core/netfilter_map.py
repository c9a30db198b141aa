"""The netfilter map of a node (issue 15, item 3): every table in every family and backend
(nft-native, iptables-nft, iptables-legacy; IPv4 and IPv6) with its guessed owner, its base
chains (hook, priority, policy) and its rule count, in hook order, so an admin sees who filters
the node's traffic and in what order. Pure: built from the NodeFacts diagnose already read
(`nft -j list ruleset`, `iptables-legacy-save`, `ip6tables-legacy-save`); no I/O."""

from __future__ import annotations

import re
from typing import Any

IPTABLES_TABLES = ("raw", "mangle", "nat", "filter", "security")
# the fixed priorities of iptables' built-in chains (netfilter's NF_IP_PRI_*)
LEGACY_PRIO = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
LEGACY_HOOK = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward",
               "OUTPUT": "output", "POSTROUTING": "postrouting"}
HOOK_ORDER = ("ingress", "prerouting", "input", "forward", "output", "postrouting")

# (pattern on table/chain names and comments, owner), first match wins
OWNERS: tuple[tuple[str, str], ...] = (
    (r"^cfx_trace_", "clusterfix trace"),
    # kube-router's network policy chains (its own DaemonSet, or embedded in k3s/RKE2) are not
    # kube-proxy's: KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* and its rules' comments
    (r"^KUBE-ROUTER|^KUBE-POD-FW-|^KUBE-NWPLCY-|kube-router", "kube-router"),
    (r"^KUBE-|^kube-proxy$|kubernetes", "kube-proxy"),
    (r"^FLANNEL|flannel", "flannel"),
    (r"^cali-|calico", "calico"),
    (r"^CILIUM|cilium", "cilium"),
    (r"^DOCKER|docker", "docker"),
    (r"^firewalld$|_public|^filter_|^nat_|^mangle_", "firewalld"),
    (r"^f2b-|fail2ban", "fail2ban"),
    (r"^ufw-", "ufw"),
    # weave-npc's WEAVE-NPC*/WEAVE-* chains, antrea's ANTREA-* chains
    (r"^WEAVE-|^WEAVE$", "weave"),
    (r"^ANTREA-|^antrea", "antrea"),
    (r"^LIBVIRT|libvirt", "libvirt"),
)


def guess_owner(names: list[str]) -> str:
    votes: dict[str, int] = {}
    for n in names:
        for pat, owner in OWNERS:
            if re.search(pat, n or "", 0 if owner in ("kube-proxy", "kube-router") else re.IGNORECASE):
                votes[owner] = votes.get(owner, 0) + 1
                break
    if not votes:
        return "unknown"
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _legacy_prio(table: str, chain: str) -> int:
    if table == "nat":
        return -100 if chain in ("PREROUTING", "OUTPUT") else 100
    return LEGACY_PRIO.get(table, 0)


def _is_iptables_nft(family: str, table: str, chains: list[Any]) -> bool:
    return family in ("ip", "ip6") and table in IPTABLES_TABLES and all(
        c.hook is None or c.name.upper() == c.name for c in chains)


def netfilter_map(facts: Any) -> list[dict[str, Any]]:
    """One entry per table: backend, family, table, owner, base chains, rules; ordered by the
    first hook and priority of its base chains."""
    out: list[dict[str, Any]] = []
    rs = getattr(facts, "nft_ruleset", None)
    if rs is not None:
        for family, table in rs.tables:
            chains = [c for c in rs.chains if c.family == family and c.table == table]
            rules = [r for r in rs.rules if r.family == family and r.table == table]
            names = [table] + [c.name for c in chains] + [r.comment or "" for r in rules]
            out.append({
                "backend": "iptables-nft" if _is_iptables_nft(family, table, chains) else "nft",
                "family": family, "table": table, "owner": guess_owner(names),
                "chains": [{"chain": c.name, "hook": c.hook, "priority": c.prio,
                            "policy": c.policy, "rules": len(rs.rules_in(family, table, c.name))}
                           for c in chains if c.hook],
                "chain_count": len(chains), "rules": len(rules)})
    for attr, family in (("legacy", "ip"), ("ip6_legacy", "ip6")):
        save = getattr(facts, attr, None)
        if save is not None:
            out.extend(_save_entries(save, family, "iptables-legacy"))
    # iptables-legacy tables the kernel holds but no iptables-legacy-save listed (RHEL 8/9 ship
    # none): iptables-nft's warning says they exist; what they hold was not read
    for attr, family, version in (("legacy", "ip", 4), ("ip6_legacy", "ip6", 6)):
        warned = None if getattr(facts, attr, None) is not None else _legacy_warning(facts, version)
        if warned:
            out.append({"backend": "iptables-legacy", "family": family, "table": "(not listed)",
                        "owner": "unknown", "chains": [], "chain_count": 0, "rules": 0,
                        "not_read": f"{warned.lstrip('# ')} (no {family}tables-legacy-save listed them)"})
    # `iptables-save` of an iptables without -legacy/-nft variants (1.4.21 on CentOS 7, 1.6.x on
    # Ubuntu 18.04: the facts' plain_save): its tables are legacy unless it says nf_tables, and
    # then they are the nft ruleset's own ip/ip6 tables (listed above when that was read)
    for attr, family in (("plain_save", "ip"), ("plain_save6", "ip6")):
        save = getattr(facts, attr, None)
        if save is None:
            continue
        backend = _plain_backend(facts, save)
        if backend == "iptables-nft" and rs is not None:
            continue
        out.extend(_save_entries(save, family, backend))

    def order(e: dict[str, Any]) -> tuple[int, float]:
        hooks = [(HOOK_ORDER.index(c["hook"]) if c["hook"] in HOOK_ORDER else 9,
                  _num(c["priority"])) for c in e["chains"]]
        return min(hooks) if hooks else (10, 0.0)
    return sorted(out, key=order)


def _legacy_warning(facts: Any, version: int) -> str | None:
    """iptables-nft's "iptables-legacy tables present" line in the facts' nft saves (stdout or
    stderr) of that IP version, else None."""
    from clusterfix_tui.core.parsers import legacy_tables_warning

    names = (("nft_save_nat", "nft_save_filter", "nft_save_mangle") if version == 4 else
             ("ip6_nft_save_nat", "ip6_nft_save_filter", "ip6_nft_save_mangle"))
    sections = getattr(facts, "sections", None) or {}
    for name in names:
        sec = sections.get(name)
        if sec is not None:
            line = legacy_tables_warning(f"{sec.stdout}\n{sec.stderr}", version)
            if line:
                return line
    return None


def _plain_backend(facts: Any, save: Any) -> str:
    """The backend of a plain `iptables-save`: its header ('# Generated by iptables-save v1.8.4
    (nf_tables) ...'), else `iptables -V`; an iptables before 1.8 says neither: legacy."""
    if any("(nf_tables)" in c for c in getattr(save, "comments", ()) or ()):
        return "iptables-nft"
    version = getattr(facts, "iptables_version", None)
    return "iptables-nft" if getattr(version, "backend", None) == "nft" else "iptables-legacy"


def _save_entries(save: Any, family: str, backend: str) -> list[dict[str, Any]]:
    """The map's entries of one iptables-save (every table but an empty, all-ACCEPT one)."""
    out: list[dict[str, Any]] = []
    for tname, t in save.tables.items():
        names = list(t.chains)
        base = [c for c in t.chains if c in LEGACY_HOOK]
        if not t.rules and all((t.chains.get(c) or "ACCEPT") == "ACCEPT" for c in base) \
                and len(t.chains) == len(base):
            continue  # an empty legacy table (present since something loaded it) filters nothing
        out.append({
            "backend": backend, "family": family, "table": tname,
            "owner": guess_owner(names + [r.opt("--comment") or "" for r in t.rules]),
            "chains": [{"chain": c, "hook": LEGACY_HOOK[c], "priority": _legacy_prio(tname, c),
                        "policy": (t.chains.get(c) or "").lower() or None,
                        "rules": len(t.rules_in(c))} for c in base],
            "chain_count": len(t.chains), "rules": len(t.rules)})
    return out


_NAMED_PRIO = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
               "srcnat": 100}


def _num(p: Any) -> float:
    if isinstance(p, (int, float)):
        return float(p)
    if isinstance(p, str):
        m = re.fullmatch(r"\s*([a-z]+)?\s*([+-]\s*\d+)?\s*", p)
        if m:
            base = _NAMED_PRIO.get(m.group(1) or "", 0)
            return float(base + int((m.group(2) or "0").replace(" ", "")))
        try:
            return float(p)
        except ValueError:
            return 0.0
    if isinstance(p, dict):  # nft -j may give {"...": n}
        return next((_num(v) for v in p.values()), 0.0)
    return 0.0
