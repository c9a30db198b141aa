"""fix_cni_bridge_conflict: clear what contradicts flannel's view of a node, then let flannel redo it.

For each node with a CNI/flannel finding the plan:
  1. snapshots `ip -d link`, `ip addr`, `ip route`, `ip neigh`, the flannel.1 fdb and the conflist
     directory into the journal (a read-only action whose output is journaled) and creates the
     backup directory for moved files;
  2. removes what is stale: a cni0 / flannel.1 whose address disagrees with the node's podCIDR
     (the device is deleted: NO automatic rollback, flannel / the bridge plugin recreate it),
     routes to subnets the node no longer owns (rollback re-adds each route exactly), fdb / neigh
     entries whose VTEP MAC disagrees with the peer's backend-data annotation (rollback re-adds
     them), stray conflists (moved aside, not deleted; rollback moves them back);
  3. adds routes flannel should have for current nodes and does not (rollback deletes them);
  4. restarts the flannel pod on the affected nodes only. WARNING: pods on those nodes lose
     networking until flannel recreates the bridge.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from clusterfix_tui.core.checks._common import in_net
from clusterfix_tui.core.checks.cni import BridgeConflictData, LinkDownData, StrayConflistData
from clusterfix_tui.core.checks.flannel import MissingRouteData, StaleSubnetData, StaleVtepData
from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.engine import (
    FixAction,
    action_id,
    backup_dir,
    flannel_pod,
    node_backup_dir,
    q,
)
from clusterfix_tui.core.fixes.step import addr_add_args
from clusterfix_tui.core.model import Action, Finding, Plan
from clusterfix_tui.core.parsers import render_route
from clusterfix_tui.core.shape import (
    SERVICE_UNITS,
    embedded_service_unit,
    scoped_findings,
    shape_of,
    sole_control_plane,
)

CODES = (
    "CNI_BRIDGE_CONFLICT",
    "CNI_STRAY_CONFLIST",
    "FLANNEL_STALE_VTEP",
    "FLANNEL_STALE_SUBNET",
    "FLANNEL_MISSING_ROUTE",
    "FLANNEL_LINK_DOWN",
)
CNI_DIR = "/etc/cni/net.d"
WARNING = ("restarting flannel on {nodes}: pods on those nodes lose pod networking until flannel "
           "recreates the bridge and routes (seconds, normally); run in a maintenance window")


# route flags `ip route` can set; the others (linkdown, dead, offload, trap...) are the
# kernel's report of the route's state, not attributes
_ROUTE_FLAGS = ("onlink", "pervasive")
# the `ip -j route` keys _route_spec puts back (plus the product's own "reason", "cidr",
# "subnet"); any other key (encap, expires, a cross-family "via" object, realms, tos...) is an
# attribute it would lose: such a route is not deleted or replaced ("cannot be restored exactly")
_ROUTE_KEYS = frozenset(("dst", "cidr", "subnet", "type", "nhid", "gateway", "via", "dev", "table",
                         "protocol", "scope", "prefsrc", "metric", "pref", "metrics", "flags",
                         "nexthops", "reason"))
_NEXTHOP_KEYS = frozenset(("gateway", "dev", "weight", "flags"))


def route_not_exact(r: dict[str, Any] | str) -> str | None:
    """Why the route (`ip -j route` JSON) cannot be put back exactly from its JSON by `ip route
    add`, None when it can: an attribute _route_spec does not carry, a nexthop (of a multipath
    route) with one, a metric that is not a plain number (a locked mtu)."""
    if isinstance(r, str):
        return None
    extra = sorted(set(r) - _ROUTE_KEYS)
    if extra:
        return f"it has attributes this tool does not restore: {', '.join(extra)}"
    if r.get("via") is not None and not isinstance(r.get("via"), str):
        return "its gateway is of another address family"
    for m in r.get("metrics") or ():
        for key, value in (m.items() if isinstance(m, dict) else (("?", m),)):
            if not isinstance(value, int) or isinstance(value, bool):
                return f"its route metric {key} is {value!r}, not a plain number"
    nexthops = r.get("nexthops")
    if nexthops is not None:
        if r.get("nhid") is None and (not isinstance(nexthops, list) or not nexthops):
            return "its nexthops are not a list"
        for nh in nexthops if r.get("nhid") is None else ():
            if not isinstance(nh, dict) or set(nh) - _NEXTHOP_KEYS or not nh.get("dev"):
                return f"a nexthop has attributes this tool does not restore: {nh!r}"
    return None


def _route_spec(r: dict[str, Any] | str, default_dev: str | None = "flannel.1") -> str | None:
    """`ip route` arguments for a route given as `ip -j route` JSON or as text: every attribute
    the kernel shows and `ip route` can set (type, table, proto, scope, src, metric, pref, the
    route metrics such as mtu, onlink; a multipath route's nexthops with their weights and
    onlink; a nexthop object's id), so a route deleted and re-added from this spec is the route
    it was. `ip -j` leaves out the defaults (proto boot, scope global, table main, type unicast);
    an IPv4 route is given `scope global` explicitly because `ip route` would otherwise give a
    route without gateway scope link. A route using a nexthop object (`nhid`) is given by its id
    only: the kernel also shows the object's gateway and device, but refuses a route given both
    ("Nexthop specification and nexthop id are mutually exclusive"). None for a route whose JSON
    does not carry all it is (route_not_exact)."""
    if isinstance(r, str):
        return r.strip() or None
    if route_not_exact(r) is not None:
        return None
    dst = r.get("dst") or r.get("cidr") or r.get("subnet")
    if not dst:
        return None
    parts = []
    rtype = r.get("type")
    if rtype and rtype != "unicast":
        parts.append(q(str(rtype)))
    parts.append(q(str(dst)))
    nexthops = r.get("nexthops") if r.get("nhid") is None else None
    gw = r.get("gateway") or r.get("via")
    if r.get("nhid") is not None:
        parts += ["nhid", q(str(r["nhid"]))]
    elif not nexthops:
        if gw:
            parts += ["via", q(str(gw))]
        dev = r.get("dev") or default_dev
        if dev:
            parts += ["dev", q(str(dev))]
    table = r.get("table")
    if table and table != "main":
        parts += ["table", q(str(table))]
    if r.get("protocol"):
        parts += ["proto", q(str(r["protocol"]))]
    ipv6 = ":" in str(dst) or ":" in str(gw or "") or r.get("pref") is not None
    scope = r.get("scope") or (None if ipv6 else "global")  # IPv6 routes have no scope
    if scope:
        parts += ["scope", q(str(scope))]
    if r.get("prefsrc"):
        parts += ["src", q(str(r["prefsrc"]))]
    if r.get("metric") is not None:
        parts += ["metric", q(str(r["metric"]))]
    if r.get("pref"):
        parts += ["pref", q(str(r["pref"]))]
    for m in r.get("metrics") or ():
        for key, value in (m.items() if isinstance(m, dict) else ()):
            parts += [q(str(key)), q(str(value))]
    flags = r.get("flags") or []
    for flag in _ROUTE_FLAGS:
        if r.get(flag) or flag in flags:
            parts.append(flag)
    for nh in nexthops or ():
        parts.append("nexthop")
        if nh.get("gateway"):
            parts += ["via", q(str(nh["gateway"]))]
        parts += ["dev", q(str(nh["dev"]))]
        if nh.get("weight") is not None:
            parts += ["weight", q(str(nh["weight"]))]
        parts += [flag for flag in _ROUTE_FLAGS if flag in (nh.get("flags") or ())]
    return " ".join(parts)


def _ipv6(prefix: Any) -> bool:
    """An IPv6 prefix (a value that is not an IP prefix at all: no)."""
    try:
        return ipaddress.ip_network(str(prefix), strict=False).version == 6
    except ValueError:
        return False


def _route_needs_restart(mr: MissingRouteData) -> bool:
    """A wrong `ip route get` is repaired by a flannel restart, unless a shadowing route (which
    a restart would not remove; its own action deletes it) explains it; a missing device is."""
    if not mr.link_present:
        return True
    shadow_peers = {sh.get("peer_node") for sh in mr.shadowing if isinstance(sh, dict)}
    return any(not (isinstance(w, dict) and w.get("peer_node") in shadow_peers)
               for w in mr.wrong_route_get)


def _gateway_kept(bc: BridgeConflictData, wrong: str) -> bool:
    """The podCIDR gateway of `wrong`'s family is on the bridge (or added before it goes)."""
    for d in [bc.to_dict(), *bc.other_families]:
        if wrong in (d.get("wrong_addresses") or ()):
            exp = str(d.get("expected") or "")
            return bool(exp) and (exp in (d.get("addresses") or ()) or any(
                in_net(w, str(d.get("pod_cidr") or "")) for w in d.get("wrong_addresses") or ()))
    return False


def _addr_info(facts: Any, dev: str) -> list[dict[str, Any]] | None:
    """`dev`'s addr_info as the node's facts (`ip -j addr`) show it; None: not shown."""
    for link in getattr(facts, "addrs", None) or ():
        if isinstance(link, dict) and link.get("ifname") == dev:
            return [a for a in link.get("addr_info") or () if isinstance(a, dict)]
    return None


def secondaries_of(facts: Any, dev: str, cidr: str) -> list[str] | None:
    """The IPv4 secondary addresses the kernel drops with the primary `cidr` on `dev` (same
    prefix length, same network; net.ipv4.conf.DEV.promote_secondaries=1 promotes one instead,
    which the rollback could not undo either: the re-added address would become a secondary).
    [] for an IPv6 address, a secondary, or a primary without any; None when the facts do not
    show `cidr` on `dev`."""
    try:
        iface = ipaddress.ip_interface(str(cidr))
    except ValueError:
        return None
    if iface.version != 4:
        return []
    info = _addr_info(facts, dev)
    me = next((a for a in info or () if a.get("family") == "inet"
               and a.get("local") == str(iface.ip) and str(a.get("prefixlen")) == str(
                   iface.network.prefixlen)), None)
    if me is None:
        return None
    if me.get("secondary"):
        return []
    out = []
    for a in info or ():
        if a.get("family") != "inet" or not a.get("secondary") or \
                str(a.get("prefixlen")) != str(iface.network.prefixlen):
            continue
        if in_net(str(a.get("local")), str(iface.network)):
            out.append(f"{a.get('local')}/{a.get('prefixlen')}")
    return out


def addr_del_command(addr: str, dev: str) -> str:
    """`ip addr del` of `addr` when `dev` still carries it. An IPv4 primary address that still
    has secondaries in its network when the action runs is not removed (the kernel would drop
    them too, or promote one): the action fails and says so. The plan removes the secondaries
    it removes before their primary, so the rollback (in reverse) puts the primary back first."""
    present = f"ip -o addr show dev {q(dev)} | grep -qF {q(' ' + addr + ' ')}"
    guard = ""
    try:
        iface = ipaddress.ip_interface(addr)
    except ValueError:
        iface = None
    if iface is not None and iface.version == 4:
        msg = (f"clusterfix: {addr} is the primary address of {iface.network} on {dev} and "
               "secondaries are still there: removing it would drop them (or promote one); "
               "not removed, re-run diagnose")
        guard = (f"if ip -o -4 addr show dev {q(dev)} | grep -F {q(' ' + addr + ' ')} | "
                 f"grep -qvw secondary && ip -o -4 addr show dev {q(dev)} to "
                 f"{q(str(iface.network))} secondary | grep -qF {q('/' + str(iface.network.prefixlen) + ' ')}; "
                 f"then echo {q(msg)} >&2; exit 4; fi; ")
    return f"{guard}if {present}; then ip addr del {q(addr)} dev {q(dev)}; fi"


def _secondaries_first(facts: Any, dev: str, addrs: list[str], node: str,
                       notes: list[str]) -> list[str]:
    """`addrs` to remove from `dev`, each secondary before its primary; a primary whose
    secondaries are not all removed too is left out (said in a note): removing it would drop
    them, and its rollback would not bring them back."""
    keep: list[str] = []
    for a in addrs:
        sec = secondaries_of(facts, dev, a) or []
        lost = [x for x in sec if x not in addrs]
        if lost:
            notes.append(f"{node}: {a} on {dev} is not removed: it is the primary address of its "
                         f"network and the kernel would drop its secondaries with it "
                         f"({', '.join(lost)}; unless promote_secondaries, which a rollback cannot "
                         "undo either); remove them by hand if they are wrong too")
            continue
        keep.append(a)
    secondary = {a for b in keep for a in secondaries_of(facts, dev, b) or ()}
    return sorted(keep, key=lambda a: a not in secondary)


def _addr_present(addr: str, dev: str) -> Any:
    return pre.exists_else_done(
        f"ip -o addr show dev {q(dev)} 2>/dev/null | grep -qF {q(' ' + addr + ' ')}",
        f"{dev} still carries {addr}", f"{dev} does not carry {addr} any more")


def _route_there(expected: str) -> Any:
    """The route flannel should have is still missing (there already = done)."""
    tokens = expected.split()
    if not tokens:  # nothing recognisable to check: never "holds", so the action never runs
        return pre.shell(f"echo {q('no route given to check')}; exit 1", "a route to add")
    dst, rest = tokens[0], tokens[1:]
    wanted = []
    for key in ("via", "dev"):
        if key in rest and rest.index(key) + 1 < len(rest):
            wanted.append(f"{key} {rest[rest.index(key) + 1]}")
    ip = "ip -6" if ":" in dst else "ip"  # `ip route show` lists IPv4 only without -6
    test = f"r=$({ip} route show to exact {q(dst)} 2>/dev/null) && [ -n \"$r\" ]" + "".join(
        f" && printf '%s\\n' \"$r\" | grep -qF {q(w)}" for w in wanted)
    return pre.absent_else_done(test, f"the route {expected} is still missing",
                                f"the route {expected} is there already")


SUBNET_ENV = "/run/flannel/subnet.env"  # where flannel writes it, embedded in k3s/RKE2 too


def _node_distribution(diagnosis: Any, node: str) -> str | None:
    shape = shape_of(diagnosis)
    ns = shape.nodes.get(node) if shape is not None else None
    return ns.distribution if ns is not None and ns.distribution in SERVICE_UNITS else None


def _expected_flannel(diagnosis: Any, node: str, findings: list[Finding],
                      fl: Any) -> list[tuple[str, str, str]]:
    """(subnet.env line, vxlan device, its address) flannel writes for each of the node's
    podCIDRs (a family flannel runs with: EnableIPv4 / EnableIPv6)."""
    shape = shape_of(diagnosis)
    ns = shape.nodes.get(node) if shape is not None else None
    cidrs = list(ns.pod_cidrs) if ns is not None else []
    if not cidrs:
        for f in findings:
            c = (f.data or {}).get("pod_cidr") if isinstance(f.data, dict) else getattr(f.data, "pod_cidr", None)
            if c and c not in cidrs:
                cidrs.append(str(c))
    out = []
    for c in cidrs:
        try:
            net = ipaddress.ip_network(str(c), strict=False)
        except ValueError:
            continue
        if net.version == 4 and getattr(fl, "enable_ipv4", True):
            out.append((f"FLANNEL_SUBNET={net.network_address + 1}/{net.prefixlen}", "flannel.1",
                        f"{net.network_address}/32"))
        elif net.version == 6 and getattr(fl, "enable_ipv6", False):
            out.append((f"FLANNEL_IPV6_SUBNET={net.network_address + 1}/{net.prefixlen}",
                        "flannel-v6.1", f"{net.network_address}/128"))
    return out


def restart_service_action(id_: str, node: str, unit: str, *,
                           finding_codes: tuple[str, ...] = (),
                           component: str = "flannel", only_control_plane: bool = False) -> FixAction:
    """Restart the k3s/RKE2 unit that runs the node's embedded flannel (and kube-proxy): the
    counterpart of deleting the flannel (or kube-proxy) pod where it is a DaemonSet, with the
    same rollback semantics (a restart has nothing to put back). `component`: "flannel" or
    "kube-proxy", the one the restart is for (the why says what it redoes)."""
    server = unit in ("k3s", "rke2-server")
    if component == "kube-proxy":
        redo = ("restarts its embedded kube-proxy, which programs its Service rules (KUBE-* "
                "chains) again from the API")
    else:
        redo = (f"restarts its embedded flannel, which rewrites {SUBNET_ENV} and sets up "
                "flannel.1 and cni0 from the node's podCIDR again")
    return FixAction(
        id=id_, target=node, kind="shell", timeout=180.0,
        command=f"systemctl restart {q(unit)}",
        why=f"{component} runs inside {unit} on this node (no {component} pod to restart): "
            f"restarting {unit} {redo}. Restarting k3s/RKE2 does not kill "
            "running pods: their containers belong to the containerd shims, which survive the "
            "restart, and keep running",
        finding_codes=finding_codes,
        risk=(f"kubelet, kube-proxy and flannel inside {unit} are down for the seconds the restart "
              f"takes; pods on {node} lose pod networking until flannel has recreated the bridge "
              "and routes" + ("; on this server the API server (and embedded etcd) restart too"
                               if server else "")
              + (f". {node} is the cluster's only control-plane node: the Kubernetes API is "
                 f"unreachable for everyone (kubectl, controllers, this session's next reads) "
                 f"until {unit} is back" if server and only_control_plane else "")),
        rollback_note=f"a restarted service is not rolled back: systemd starts the same {unit} "
                      "with the same configuration (like a restarted flannel pod, nothing to put "
                      f"back); if it does not come back: `journalctl -u {unit}`, "
                      f"`systemctl start {unit}`",
        change={"what": f"service {unit}", "before": "active", "after": "restarted"},
        precondition=pre.shell(
            f"if systemctl is-active --quiet {q(unit)}; then exit 0; fi; "
            f"echo {q(f'{unit} is not active on the node (any more): not restarted')}; exit 1",
            f"{unit} is active"),
    )


def verify_embedded_flannel_action(id_: str, node: str, unit: str,
                                   expected: list[tuple[str, str, str]], *,
                                   finding_codes: tuple[str, ...] = ()) -> FixAction:
    """Read-only: wait (up to a minute) for the embedded flannel restarted with `unit` to have
    rewritten subnet.env and brought its vxlan device up with the node's address."""
    tests = [f"grep -qxF {q(line)} {q(SUBNET_ENV)} 2>/dev/null && "
             f"ip -o addr show dev {q(dev)} up 2>/dev/null | grep -qF {q(' ' + addr + ' ')}"
             for line, dev, addr in expected]
    if not tests:  # nothing known to compare with: at least a subnet.env and an up flannel.1
        tests = [f"[ -s {q(SUBNET_ENV)} ] && ip -o link show dev flannel.1 up 2>/dev/null | grep -q ."]
    what = "; ".join(f"{line} in {SUBNET_ENV}, {dev} up with {addr}" for line, dev, addr in expected) \
        or f"{SUBNET_ENV} written, flannel.1 up"
    shows = " ".join(sorted({q(dev) for _, dev, _ in expected} or {"flannel.1"}))
    return FixAction(
        id=id_, target=node, kind="shell", mutating=False, timeout=90.0,
        command=(f"i=0; until {{ {' && '.join(tests)}; }}; do i=$((i+1)); "
                 "if [ \"$i\" -ge 60 ]; then "
                 f"echo {q(f'embedded flannel did not come back after restarting {unit}: expected {what}')}; "
                 f"cat {q(SUBNET_ENV)} 2>&1; for d in {shows}; do ip addr show dev \"$d\" 2>&1; done; "
                 "exit 1; fi; sleep 1; done; "
                 f"echo {q(f'embedded flannel is back: {what}')}"),
        why=f"check that the flannel embedded in {unit} came back: {what}",
        finding_codes=finding_codes,
        risk="none (reads)",
    )


class CniBridgeStep:
    name = "cni_bridge"
    title = "CNI bridge and flannel state"
    runbook_helper = "fix_cni_bridge_conflict.sh"

    # acts only where its findings apply: flannel (vxlan for the FLANNEL_* codes); on any other
    # CNI it offers nothing (core.shape.SCOPES), and never touches another CNI's devices
    applies_to = CODES

    def plan(self, diagnosis: Any) -> Plan:
        findings, scope_notes = scoped_findings(diagnosis, engine.findings_for(diagnosis, CODES))
        shape = shape_of(diagnosis)
        if shape is not None and shape.cni != "flannel":
            scope_notes.insert(0, f"CNI repair is not offered: the CNI is "
                                  f"{shape.cni_detail or shape.cni} (this step repairs flannel only)")
        if not findings:
            plan = engine.nothing_to_do(
                self, "no CNI / flannel findings: bridges, routes, VTEP entries and conflists "
                "agree with the nodes' podCIDRs")
            if scope_notes:
                plan = Plan(step=plan.step, title=plan.title, findings=plan.findings,
                            actions=plan.actions, notes=tuple(plan.notes) + tuple(scope_notes))
            return plan
        stamp = engine.plan_stamp()
        bdir = backup_dir(self.name, stamp)
        by_node: dict[str, list[Finding]] = {}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        actions: list[Action] = []
        notes: list[str] = []
        restart_nodes: list[str] = []
        for node in sorted(by_node):
            acts, nn, restart = self._plan_node(diagnosis, node, by_node[node], node_backup_dir(bdir, node))
            actions.extend(acts)
            notes.extend(nn)
            if restart:
                restart_nodes.append(node)
        if restart_nodes:
            notes.insert(0, "WARNING: " + WARNING.format(nodes=", ".join(restart_nodes)))
        notes.extend(scope_notes)
        return Plan(step=self.name, title=self.title, findings=tuple(findings),
                    actions=tuple(actions), notes=tuple(notes))

    def _plan_node(
        self, diagnosis: Any, node: str, findings: list[Finding], nbdir: str
    ) -> tuple[list[Action], list[str], bool]:
        actions: list[Action] = []
        notes: list[str] = []
        n = 0
        seen: set[str] = set()

        def add(key: str, **kw: Any) -> None:
            nonlocal n
            if key in seen:
                return
            seen.add(key)
            n += 1
            actions.append(FixAction(id=action_id(self.name, node, n), target=node, **kw))

        def rb(cmd: str, why: str) -> Action:
            return Action(id=action_id(self.name, node, n + 1) + ":rollback", target=node,
                          kind="shell", command=cmd, why=why)

        def add_neigh(gw: str, mac: str, dev: str, code: str, why: str) -> None:
            """The permanent neighbour entry flannel writes for a peer (its subnet address ->
            its VtepMAC), added where it is missing."""
            add(
                f"neigh-{gw}",
                kind="shell",
                command=f"ip neigh replace {q(gw)} lladdr {q(mac)} dev {q(dev)} nud permanent",
                why=why,
                finding_codes=(code,),
                risk="none: the entry becomes what flannel itself would write",
                rollback=rb(f"ip neigh del {q(gw)} dev {q(dev)}",
                            "remove the added neighbour entry"),
                change={"what": f"neigh {gw} on {dev}", "before": "missing", "after": mac},
                precondition=pre.absent_else_done(
                    f"ip neigh show {q(gw)} dev {q(dev)} 2>/dev/null | grep -qiF "
                    f"{q(f'lladdr {mac} ')}",
                    f"the neighbour entry for {gw} does not hold {mac} yet",
                    f"the neighbour entry for {gw} holds {mac} already"),
            )

        codes = tuple(sorted({f.code for f in findings}))

        def facts_of(name: str) -> Any:  # an address's rollback: its attributes as read
            return (getattr(diagnosis, "facts", None) or {}).get(name)

        fl = getattr(shape_of(diagnosis), "flannel", None)
        service_unit: str | None = None
        if fl is not None and fl.deployment == "embedded":
            # flannel runs inside k3s/RKE2: no pod to restart; restarting flannel means restarting
            # the node's k3s/RKE2 service. It is planned only when the node said which unit it
            # runs (`systemctl is-active`, in the facts); otherwise only what needs no restart
            # (fdb/neigh entries, missing routes) is planned and the rest is said, not done.
            needs_restart = [f for f in findings if f.code in ("CNI_BRIDGE_CONFLICT",
                                                               "FLANNEL_STALE_SUBNET")
                             or (f.code == "FLANNEL_MISSING_ROUTE"
                                 and _route_needs_restart(f.data_as(MissingRouteData)))
                             or (f.code == "FLANNEL_STALE_VTEP"
                                 and f.data_as(StaleVtepData).self_mismatch)]
            if needs_restart:
                dist = _node_distribution(diagnosis, node) or fl.distribution
                facts = (getattr(diagnosis, "facts", None) or {}).get(node)
                service_unit, how = embedded_service_unit(facts, dist)
                if service_unit is None:
                    servers, agents = SERVICE_UNITS.get(dist or "", ("k3s", "k3s-agent"))
                    notes.append(
                        f"{node}: flannel is embedded in {dist or 'the distribution'}: "
                        f"{', '.join(sorted({f.code for f in needs_restart}))} need(s) flannel "
                        f"restarted, which means restarting the node's {dist or 'k3s/RKE2'} service "
                        f"by hand (`systemctl restart {agents}` on agents, `systemctl restart "
                        f"{servers}` on servers; running pods keep running). Not planned: {how}; "
                        "nothing is removed that only a flannel restart would recreate.")
                    findings = [f for f in findings if f not in needs_restart]
            if not findings:
                return [], notes, False
        add(
            "snapshot",
            kind="shell",
            mutating=False,
            command=(
                f"mkdir -p -m 700 {q(nbdir)}; "
                "echo '### ip -d link'; ip -d link show; echo '### ip addr'; ip addr show; "
                "echo '### ip route'; ip route show; echo '### ip -6 route'; ip -6 route show; "
                "echo '### ip neigh'; ip neigh show; "
                "echo '### bridge fdb flannel.1'; bridge fdb show dev flannel.1 2>&1; "
                "echo '### bridge fdb flannel-v6.1'; bridge fdb show dev flannel-v6.1 2>&1; "
                f"echo '### {CNI_DIR}'; ls -la {q(CNI_DIR)} 2>&1; "
                f"for f in {q(CNI_DIR)}/*; do [ -f \"$f\" ] && echo \"### $f\" && cat \"$f\"; "
                "done; true"
            ),
            why="record the node's links, addresses, routes, VTEP entries and CNI configs in "
                "the journal before changing them; create the backup directory for moved files",
            finding_codes=codes,
            risk="none (reads; creates an empty backup directory)",
        )
        restart = False
        flannel_from_data: tuple[str, str] | None = None
        # a device set down first: the routes and entries the other findings re-add need it up
        findings = sorted(findings, key=lambda x: x.code != "FLANNEL_LINK_DOWN")
        for f in findings:
            fd = f.data
            if f.code == "FLANNEL_LINK_DOWN":
                for dev in f.data_as(LinkDownData).devices:
                    up_test = f"ip -o link show dev {q(dev)} | grep -qE '<([^>]*,)?UP[,>]'"
                    add(
                        f"link-up-{dev}",
                        kind="shell",
                        command=f"ip link set {q(dev)} up",
                        why=f"{dev} is set down: the kernel dropped every route through it"
                            + (" (the node's pods are cut off)" if dev == "cni0" else
                               " (the other nodes' pods are unreachable from here)"),
                        finding_codes=(f.code,),
                        risk="none: the device comes back as flannel set it up",
                        rollback=rb(f"ip link set {q(dev)} down", f"set {dev} down again"),
                        change={"what": f"link {dev}", "before": "down", "after": "up"},
                        precondition=pre.absent_else_done(
                            up_test, f"{dev} is still down", f"{dev} is up already"),
                    )
                continue
            if isinstance(fd, (BridgeConflictData, StaleSubnetData)) and fd.flannel_pod \
                    and flannel_from_data is None:
                flannel_from_data = (fd.namespace, fd.flannel_pod)
            if f.code == "CNI_BRIDGE_CONFLICT":
                bc = f.data_as(BridgeConflictData)
                dev = bc.device or "cni0"
                wrong_list = list(bc.wrong_addresses)
                if wrong_list:
                    # A wrong address that is the gateway's own IP with another prefix length
                    # (10.244.1.1/16 for 10.244.1.0/24): deleting it takes the pods' gateway
                    # away, so the right one is added first (an address with another prefix
                    # length is a separate primary address: both coexist until the wrong one
                    # goes), as the bridge plugin would set it on an empty cni0.
                    for fam_data in [bc.to_dict(), *bc.other_families]:
                        exp = str(fam_data.get("expected") or "")
                        cidr = str(fam_data.get("pod_cidr") or "")
                        if not exp or exp in (fam_data.get("addresses") or ()):
                            continue
                        if not any(in_net(w, cidr) for w in fam_data.get("wrong_addresses") or ()):
                            continue
                        add(
                            f"add-addr-{exp}-{dev}",
                            kind="shell",
                            command=f"ip addr add {q(exp)} dev {q(dev)}",
                            why=f"{dev} carries the gateway's IP with another prefix length, not "
                                f"{exp} (the podCIDR {cidr}'s gateway): the right address is "
                                "added before the wrong one is removed, so the pods keep their "
                                "gateway",
                            finding_codes=(f.code,),
                            risk="none: the address the CNI bridge plugin gives the bridge",
                            rollback=rb(f"ip addr del {q(exp)} dev {q(dev)}",
                                        f"remove {exp} from {dev}"),
                            change={"what": f"address {exp} on {dev}", "before": "missing",
                                    "after": "present"},
                            precondition=pre.absent_else_done(
                                f"ip -o addr show dev {q(dev)} | grep -qF {q(' ' + exp + ' ')}",
                                f"{dev} does not carry {exp} yet", f"{dev} carries {exp} already"),
                        )
                    # Remove the wrong address(es), keep the bridge: the pods' veths stay
                    # attached, and flannel (restarted below) puts the podCIDR gateway back.
                    for wrong in _secondaries_first(facts_of(node), dev, wrong_list, node, notes):
                        add(
                            f"del-addr-{wrong}-{dev}",
                            kind="shell",
                            command=addr_del_command(wrong, dev),
                            why=f"{dev} carries {wrong} but the node's podCIDR is "
                                f"{(bc.pod_cidr or '?')} (gateway {(bc.expected or '?')}): "
                                "flannel fails with 'already has an IP address different from'. "
                                "The address is removed rather than the bridge deleted, so pods "
                                "stay attached to it",
                            finding_codes=(f.code,),
                            risk=(f"pods on {node} stay unreachable until flannel sets "
                                  f"{(bc.expected or 'the gateway')} (restart below); pods that "
                                  f"got addresses from {wrong} must be recreated")
                            if not _gateway_kept(bc, wrong) else
                            (f"none for pods in the podCIDR (the gateway stays on {dev}); pods "
                             f"that got addresses from {wrong} must be recreated"),
                            rollback=rb(f"ip addr add {addr_add_args(facts_of(node), dev, wrong)} "
                                        f"dev {q(dev)}",
                                        f"put {wrong} back on {dev}"),
                            change={"what": f"address {wrong} on {dev}", "before": "present",
                                    "after": f"deleted (flannel sets {(bc.expected or '?')})"},
                            precondition=_addr_present(wrong, dev),
                        )
                else:
                    add(
                        f"del-link-{dev}",
                        kind="shell",
                        command=f"if ip link show dev {q(dev)} >/dev/null 2>&1; then "
                                f"ip link set {q(dev)} down && ip link delete {q(dev)}; fi",
                        why=f"{dev} disagrees with the node's podCIDR {(bc.pod_cidr or '?')}",
                        finding_codes=(f.code,),
                        risk=f"pods on {node} lose networking until flannel recreates {dev} and "
                             "they are recreated",
                        rollback_note=f"{dev} cannot be put back: flannel (and the CNI bridge "
                                      "plugin) recreate it with the right address; its state "
                                      "before is in the snapshot in the journal",
                        change={"what": f"link {dev}", "before": "present",
                                "after": "deleted (recreated by flannel)"},
                        precondition=pre.exists_else_done(
                            f"ip link show dev {q(dev)} >/dev/null 2>&1",
                            f"link {dev} still exists", f"link {dev} is gone already"),
                    )
                restart = True
            elif f.code == "CNI_STRAY_CONFLIST":
                sc = f.data_as(StrayConflistData)
                cdir = sc.dir or CNI_DIR
                for path in list(sc.stray) + list(sc.unparseable):
                    if not path:
                        continue
                    if "/" not in path:
                        path = f"{cdir}/{path}"
                    base = path.rsplit("/", 1)[-1]
                    dest = f"{nbdir}/{base}"
                    add(
                        f"mv-{path}",
                        kind="shell",
                        command=f"mkdir -p -m 700 {q(nbdir)} && mv -f -- {q(path)} {q(dest)}",
                        why=f"{path} sorts before flannel's conflist "
                            f"({sc.get('flannel_file') or 'none'}) or cannot be parsed: the "
                            "container runtime uses the first file by name",
                        finding_codes=(f.code,),
                        risk="pods created from now on use flannel's conflist",
                        rollback=rb(f"mv -f -- {q(dest)} {q(path)}", f"put {path} back"),
                        change={"what": f"file {path}", "before": "present",
                                "after": f"moved to {dest}"},
                        precondition=pre.exists_else_done(
                            f"[ -e {q(path)} ]", f"{path} is still there",
                            f"{path} is gone already"),
                    )
            elif f.code == "FLANNEL_STALE_SUBNET":
                ss = f.data_as(StaleSubnetData)
                dev = ss.device or "flannel.1"
                for r in ss.stale_routes:
                    spec = _route_spec(r)
                    dst = r.get("dst") if isinstance(r, dict) else None
                    why_not = route_not_exact(r)
                    if why_not is not None:
                        notes.append(f"{node}: the stale route {render_route(r)} is not deleted: "
                                     f"it cannot be restored exactly ({why_not}); remove it by "
                                     "hand if it is not wanted")
                        continue
                    if not spec or not dst:
                        continue
                    rdev = r.get("dev") or dev
                    # `ip route show` lists IPv4 routes only unless given -6: an IPv6 stale
                    # route (flannel-v6.1) was never seen, so never deleted, and called done
                    ip = "ip -6" if _ipv6(dst) else "ip"
                    add(
                        f"del-route-{spec}",
                        kind="shell",
                        command=f"if {ip} route show to exact {q(dst)} dev {q(rdev)} | grep -q .; "
                                f"then {ip} route del {spec}; fi",
                        why="a route to a subnet no current node owns sends pod traffic to a "
                            "VTEP that is gone",
                        finding_codes=(f.code,),
                        risk="none for current nodes' subnets",
                        rollback=rb(f"{ip} route replace {spec}", "re-add the route"),
                        change={"what": f"route {spec}", "before": "present", "after": "deleted"},
                        precondition=pre.exists_else_done(
                            f"{ip} route show to exact {q(dst)} dev {q(rdev)} | grep -q .",
                            f"the route to {dst} via {rdev} is still there",
                            f"no route to {dst} via {rdev} any more"),
                    )
                for addr in _secondaries_first(facts_of(node), dev, list(ss.stale_addresses), node,
                                               notes):
                    add(
                        f"del-addr-{addr}-{dev}",
                        kind="shell",
                        command=addr_del_command(addr, dev),
                        why=f"{dev} still carries {addr}, from a subnet this node no longer owns "
                            f"(podCIDR {(ss.pod_cidr or '?')}): flannel fails with 'link has "
                            "incompatible addresses'",
                        finding_codes=(f.code,),
                        risk="none for the node's current subnet",
                        rollback=rb(f"ip addr add {addr_add_args(facts_of(node), dev, addr)} "
                                    f"dev {q(dev)}",
                                    f"put {addr} back on {dev}"),
                        change={"what": f"address {addr} on {dev}", "before": "present",
                                "after": "deleted"},
                        precondition=_addr_present(addr, dev),
                    )
                if ss.subnet_env_stale:
                    src = "/run/flannel/subnet.env"
                    dest = f"{nbdir}/subnet.env"
                    add(
                        "mv-subnet-env",
                        kind="shell",
                        command=f"mkdir -p -m 700 {q(nbdir)} && mv -f -- {q(src)} {q(dest)}",
                        why=f"{src} names a subnet the node no longer owns; flannel rewrites it "
                            "on restart",
                        finding_codes=(f.code,),
                        risk="the CNI plugin cannot set up new pods until flannel rewrites it",
                        rollback=rb(f"mv -f -- {q(dest)} {q(src)}", f"put the old {src} back"),
                        change={"what": f"file {src}", "before": str(ss.subnet_env),
                                "after": "moved aside (flannel rewrites it)"},
                        precondition=pre.exists_else_done(
                            f"[ -e {q(src)} ]", f"{src} is still there", f"{src} is gone already"),
                    )
                restart = True
            elif f.code == "FLANNEL_STALE_VTEP":
                sv = f.data_as(StaleVtepData)
                dev = sv.device or "flannel.1"
                wrong_mac, good_mac = sv.wrong_mac, sv.expected_mac
                peer_ip, gw = sv.peer_ip, sv.peer_subnet_gw
                where = sv.where or ["fdb", "neigh"]
                if sv.self_mismatch:
                    # the node's own device changed MAC: flannel re-annotates it on restart
                    # and the peers reprogram their entries from the annotation
                    restart = True
                    continue
                if good_mac and peer_ip and sv.wrong_dsts and not sv.wrong_macs:
                    # the right MAC sent to another underlay IP: each wrong remote goes, the
                    # peer's is added; the rollback puts the wrong remotes back exactly
                    dels = " ".join(f"{{ bridge fdb del {q(good_mac)} dev {q(dev)} dst {q(d)} self "
                                    "|| true; };" for d in sv.wrong_dsts)
                    back = " && ".join(f"bridge fdb append {q(good_mac)} dev {q(dev)} dst {q(d)} "
                                       "self permanent" for d in sv.wrong_dsts)
                    add(
                        f"fdb-dst-{peer_ip}",
                        kind="shell",
                        command=(f"{dels} bridge fdb append {q(good_mac)} dev {q(dev)} "
                                 f"dst {q(peer_ip)} self permanent"),
                        why=f"the fdb sends {(sv.peer_node or '?')}'s VTEP MAC {good_mac} to "
                            f"{', '.join(sv.wrong_dsts)}, not to its address {peer_ip}",
                        finding_codes=(f.code,),
                        risk="none: the entry becomes what flannel itself would write",
                        rollback=rb(f"{{ bridge fdb del {q(good_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                    f"self || true; }}; {back}",
                                    "put the old fdb entries back"),
                        change={"what": f"fdb entry for {good_mac} on {dev}",
                                "before": ", ".join(sv.wrong_dsts), "after": peer_ip},
                        precondition=pre.absent_else_done(
                            f"fdb=$(bridge fdb show dev {q(dev)} 2>/dev/null) && "
                            f"printf '%s\\n' \"$fdb\" | grep -qiF {q(f'{good_mac} dst {peer_ip} ')}"
                            + "".join(f" && ! printf '%s\\n' \"$fdb\" | grep -qiF "
                                      f"{q(f'{good_mac} dst {d} ')}" for d in sv.wrong_dsts),
                            f"{good_mac} is not yet sent only to {peer_ip}",
                            f"{good_mac} is sent only to {peer_ip} already"),
                    )
                    if sv.neigh_missing and gw:
                        add_neigh(gw, good_mac, dev, f.code,
                                  f"no neighbour entry for {gw} on {dev}")
                    continue
                if good_mac and not wrong_mac and (sv.fdb_missing or sv.neigh_missing):
                    # entries missing, none wrong: add what flannel writes for the peer
                    if sv.fdb_missing and peer_ip:
                        add(
                            f"fdb-{peer_ip}",
                            kind="shell",
                            command=(f"bridge fdb append {q(good_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                     "self permanent"),
                            why=f"no fdb entry sends {(sv.peer_node or peer_ip)}'s VTEP MAC "
                                f"{good_mac} to {peer_ip}: vxlan frames to its pods have no "
                                "destination",
                            finding_codes=(f.code,),
                            risk="none: the entry becomes what flannel itself would write",
                            rollback=rb(f"bridge fdb del {q(good_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                        "self", "remove the added fdb entry"),
                            change={"what": f"fdb entry for {peer_ip} on {dev}", "before": "missing",
                                    "after": good_mac},
                            precondition=pre.absent_else_done(
                                f"bridge fdb show dev {q(dev)} 2>/dev/null | grep -qiF "
                                f"{q(f'{good_mac} dst {peer_ip} ')}",
                                f"no fdb entry {good_mac} dst {peer_ip} yet",
                                f"the fdb entry {good_mac} dst {peer_ip} is there already"),
                        )
                    if sv.neigh_missing and gw:
                        add_neigh(gw, good_mac, dev, f.code,
                                  f"no neighbour entry for {gw} ({(sv.peer_node or '?')}'s subnet) "
                                  f"on {dev}: the inner destination MAC {good_mac} is never "
                                  "resolved")
                    continue
                if not (wrong_mac and good_mac):
                    notes.append(f"{node}: FLANNEL_STALE_VTEP without MACs in its data")
                    continue
                if "fdb" in where and peer_ip:
                    add(
                        f"fdb-{peer_ip}",
                        kind="shell",
                        command=(f"{{ bridge fdb del {q(wrong_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                 "|| true; } && "
                                 f"bridge fdb replace {q(good_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                 "self permanent"),
                        why=f"the fdb entry for {(sv.peer_node or peer_ip)} ({peer_ip}) holds "
                            f"VTEP MAC {wrong_mac}; the peer's backend-data says {good_mac}",
                        finding_codes=(f.code,),
                        risk="none: the entry becomes what flannel itself would write",
                        rollback=rb(f"{{ bridge fdb del {q(good_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                    "|| true; } && "
                                    f"bridge fdb append {q(wrong_mac)} dev {q(dev)} dst {q(peer_ip)} "
                                    "self permanent", "put the old fdb entry back"),
                        change={"what": f"fdb entry for {peer_ip} on {dev}", "before": wrong_mac,
                                "after": good_mac},
                        # done only when the good_mac entry is there AND the wrong_mac one gone
                        precondition=pre.absent_else_done(
                            f"fdb=$(bridge fdb show dev {q(dev)} 2>/dev/null) && "
                            f"printf '%s\\n' \"$fdb\" | grep -qiF {q(f'{good_mac} dst {peer_ip} ')} "
                            f"&& ! printf '%s\\n' \"$fdb\" | grep -qiF "
                            f"{q(f'{wrong_mac} dst {peer_ip} ')}",
                            f"the fdb entries for {peer_ip} are not yet only {good_mac}",
                            f"the fdb entry for {peer_ip} holds {good_mac} already, {wrong_mac} is gone"),
                    )
                if "neigh" in where and gw:
                    add(
                        f"neigh-{gw}",
                        kind="shell",
                        command=(f"ip neigh replace {q(gw)} lladdr {q(good_mac)} dev {q(dev)} "
                                 "nud permanent"),
                        why=f"the neighbour entry for {gw} ({(sv.peer_node or '?')}'s subnet) "
                            f"holds VTEP MAC {wrong_mac}; the peer's backend-data says {good_mac}",
                        finding_codes=(f.code,),
                        risk="none: the entry becomes what flannel itself would write",
                        rollback=rb(f"ip neigh replace {q(gw)} lladdr {q(wrong_mac)} dev {q(dev)} "
                                    "nud permanent", "put the old neighbour entry back"),
                        change={"what": f"neigh {gw} on {dev}", "before": wrong_mac, "after": good_mac},
                        precondition=pre.absent_else_done(
                            f"ip neigh show {q(gw)} dev {q(dev)} 2>/dev/null | grep -qiF "
                            f"{q(f'lladdr {good_mac} ')}",
                            f"the neighbour entry for {gw} does not hold {good_mac} yet",
                            f"the neighbour entry for {gw} holds {good_mac} already"),
                    )
            elif f.code == "FLANNEL_MISSING_ROUTE":
                mr = f.data_as(MissingRouteData)
                if not mr.link_present:
                    # no device to route through: only flannel recreates it (with its routes)
                    notes.append(f"{node}: {mr.device} does not exist: no route is added through "
                                 "it; flannel is restarted to recreate it")
                    restart = True
                    continue
                for sh in mr.shadowing:
                    sj = sh.get("json") if isinstance(sh, dict) else None
                    if not isinstance(sj, dict):
                        continue
                    r = sj
                    spec = _route_spec(r, default_dev=None)
                    dst = str(r.get("dst") or "")
                    why_not = route_not_exact(r)
                    if why_not is not None:
                        notes.append(f"{node}: the shadowing route {sh.get('route')} is not "
                                     f"deleted: it cannot be restored exactly ({why_not}); "
                                     "remove it by hand")
                        continue
                    if not spec or not dst:
                        continue
                    ip = "ip -6" if ":" in dst else "ip"
                    sel = f"{ip} route show to exact {q(dst)}"
                    if r.get("type") not in (None, "", "unicast"):
                        sel += f" type {q(str(r['type']))}"
                    if r.get("gateway"):
                        sel += f" via {q(str(r['gateway']))}"
                    if r.get("dev"):
                        sel += f" dev {q(str(r['dev']))}"
                    add(
                        f"del-shadow-{spec}",
                        kind="shell",
                        command=f"if {sel} | grep -q .; then {ip} route del {spec}; fi",
                        why=f"{sh.get('route')} is inside {sh.get('peer_node')}'s podCIDR "
                            f"{sh.get('pod_cidr')} and more specific than flannel's route, so it "
                            "wins: that part of the subnet is cut off whatever flannel writes",
                        finding_codes=(f.code,),
                        risk=f"traffic to {dst} follows flannel's route again",
                        rollback=rb(f"{ip} route add {spec}", f"re-add {sh.get('route')}"),
                        change={"what": f"route {sh.get('route')}", "before": "present",
                                "after": "deleted"},
                        precondition=pre.exists_else_done(
                            f"{sel} | grep -q .", f"{sh.get('route')} is still there",
                            f"{sh.get('route')} is gone already"),
                    )
                for m in mr.missing:
                    expected = m.get("expected") if isinstance(m, dict) else str(m)
                    if not expected:
                        continue
                    spec = " ".join(q(tok) for tok in str(expected).split())
                    actual = [str(x) for x in (m.get("actual") or ())] if isinstance(m, dict) \
                        else []
                    command, rollback = f"ip route replace {spec}", rb(
                        f"ip route del {spec}", "remove the added route")
                    if actual:
                        # `replace` overwrites the route the node has to that subnet (a host-gw
                        # leftover, a blackhole): it is saved first and put back on rollback
                        dst = str(expected).split()[0]
                        ip = "ip -6" if ":" in dst else "ip"
                        # saved as netlink messages (`ip route save`): `ip route restore`
                        # puts back every attribute, a multipath route's nexthops included (the
                        # text of `ip route show` spreads those over lines). A route using a
                        # nexthop object cannot be restored so (the kernel refuses its id given
                        # with the gateway it dumps): the action refuses to replace it.
                        saved = f"{nbdir}/route-{re.sub(r'[^0-9A-Za-z.]+', '_', dst)}.rtsave"
                        nhobj = (f"clusterfix: a route to {dst} uses a nexthop object (nhid): it "
                                 "cannot be restored exactly; not replaced (remove it by hand)")
                        command = (f"if {ip} route show to exact {q(dst)} | grep -qw nhid; then "
                                   f"echo {q(nhobj)} >&2; exit 4; fi; "
                                   f"mkdir -p -m 700 {q(nbdir)} && {{ [ -e {q(saved)} ] || "
                                   f"{{ {ip} route save to exact {q(dst)} > {q(saved + '.tmp')} && "
                                   f"mv -f -- {q(saved + '.tmp')} {q(saved)}; }}; }} && "
                                   f"ip route replace {spec}")
                        rollback = rb(
                            f"ip route del {spec}; {ip} route restore < {q(saved)}",
                            "remove the added route and put back the route(s) it replaced "
                            f"({'; '.join(actual)}) exactly as saved before")
                    add(
                        f"add-route-{spec}",
                        kind="shell",
                        command=command,
                        why=f"flannel's route to {m.get('peer_node', '?') if isinstance(m, dict) else '?'}'s "
                            "pod subnet is missing: pods here cannot reach pods there"
                            + (f" (it replaces: {'; '.join(actual)})" if actual else ""),
                        finding_codes=(f.code,),
                        risk="none" if not actual else "the route(s) it replaces stop applying",
                        rollback=rollback,
                        change={"what": f"route {expected}",
                                "before": "; ".join(actual) if actual else "missing",
                                "after": "present"},
                        precondition=_route_there(str(expected)),
                    )
                if _route_needs_restart(mr):
                    restart = True
        if restart and service_unit is not None:
            n += 1
            actions.append(restart_service_action(
                action_id(self.name, node, n), node, service_unit, finding_codes=codes,
                only_control_plane=sole_control_plane(diagnosis, node)))
            n += 1
            actions.append(verify_embedded_flannel_action(
                action_id(self.name, node, n), node, service_unit,
                _expected_flannel(diagnosis, node, findings, fl), finding_codes=codes))
        elif restart:
            pod = flannel_pod(diagnosis, node) or flannel_from_data
            if pod is not None:
                n += 1
                actions.append(engine.delete_pod_action(
                    action_id(self.name, node, n), node, pod[0], pod[1],
                    why="restart flannel on this node so it recreates its device, routes and "
                        "VTEP entries from the cluster's state",
                    finding_codes=codes,
                    risk=f"pods on {node} lose networking until flannel has recreated the "
                         "bridge and routes",
                ))
            else:
                notes.append(f"{node}: no flannel pod found on this node to restart")
        return actions, notes, restart


STEP = CniBridgeStep()
