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

from typing import Any

from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes.engine import FixAction, action_id, backup_dir, flannel_pod, q
from clusterfix_tui.core.model import Action, Finding, Plan

CODES = (
    "CNI_BRIDGE_CONFLICT",
    "CNI_STRAY_CONFLIST",
    "FLANNEL_STALE_VTEP",
    "FLANNEL_STALE_SUBNET",
    "FLANNEL_MISSING_ROUTE",
)
CNI_DIR = "/etc/cni/net.d"
WARNING = ("restarting flannel on {nodes}: pods on those nodes lose pod networking until flannel "
           "recreates the bridge and routes (seconds, normally); run in a maintenance window")


def _list(d: dict[str, Any], *keys: str) -> list[Any]:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (list, tuple)) and v:
            return list(v)
        if isinstance(v, (str, dict)) and v:
            return [v]
    return []


def _route_spec(r: dict[str, Any] | str) -> str | None:
    """`ip route` arguments for a route given as `ip -j route` JSON or as text."""
    if isinstance(r, str):
        return r.strip() or None
    dst = r.get("dst") or r.get("cidr") or r.get("subnet")
    if not dst:
        return None
    parts = [q(dst)]
    gw = r.get("gateway") or r.get("via")
    if gw:
        parts += ["via", q(gw)]
    dev = r.get("dev") or "flannel.1"
    parts += ["dev", q(dev)]
    flags = r.get("flags") or []
    if r.get("onlink") or "onlink" in flags:
        parts.append("onlink")
    return " ".join(parts)


class CniBridgeStep:
    name = "cni_bridge"
    title = "CNI bridge and flannel state"
    runbook_helper = "fix_cni_bridge_conflict.sh"

    def plan(self, diagnosis: Any) -> Plan:
        findings = engine.findings_for(diagnosis, CODES)
        if not findings:
            return engine.nothing_to_do(
                self, "no CNI / flannel findings: bridges, routes, VTEP entries and conflists "
                "agree with the nodes' podCIDRs")
        stamp = engine.plan_stamp()
        bdir = backup_dir(self.name, stamp)
        by_node: dict[str, list[Finding]] = {}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        actions: list[Action] = []
        notes: list[str] = []
        restart_nodes: list[str] = []
        for node in sorted(by_node):
            acts, nn, restart = self._plan_node(diagnosis, node, by_node[node], f"{bdir}/{node}")
            actions.extend(acts)
            notes.extend(nn)
            if restart:
                restart_nodes.append(node)
        if restart_nodes:
            notes.insert(0, "WARNING: " + WARNING.format(nodes=", ".join(restart_nodes)))
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

        codes = tuple(sorted({f.code for f in findings}))
        add(
            "snapshot",
            kind="shell",
            mutating=False,
            command=(
                f"mkdir -p -m 700 {q(nbdir)}; "
                "echo '### ip -d link'; ip -d link show; echo '### ip addr'; ip addr show; "
                "echo '### ip route'; ip route show; echo '### ip neigh'; ip neigh show; "
                "echo '### bridge fdb flannel.1'; bridge fdb show dev flannel.1 2>&1; "
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
        for f in findings:
            d = f.data or {}
            if f.code == "CNI_BRIDGE_CONFLICT":
                devices = _list(d, "devices", "device") or ["cni0"]
                for dev in devices:
                    dev = dev.get("name") if isinstance(dev, dict) else dev
                    add(
                        f"del-link-{dev}",
                        kind="shell",
                        command=f"if ip link show dev {q(dev)} >/dev/null 2>&1; then "
                                f"ip link delete {q(dev)}; fi",
                        why=f"{dev} carries {d.get('address', 'an address')} but the node's "
                            f"podCIDR is {d.get('pod_cidr', d.get('podCIDR', '?'))}: new pods "
                            "get addresses from the wrong subnet (or fail to start)",
                        finding_codes=(f.code,),
                        risk=f"pods on {node} lose networking until flannel recreates {dev}",
                        rollback_note=f"{dev} cannot be put back: flannel (and the CNI bridge "
                                      "plugin) recreate it with the right address; its state "
                                      "before is in the snapshot in the journal",
                        change={"what": f"link {dev}", "before": d.get("address"),
                                "after": "deleted (recreated by flannel)"},
                    )
                    restart = True
            elif f.code == "CNI_STRAY_CONFLIST":
                for path in _list(d, "paths", "files", "path", "file"):
                    path = path.get("path") if isinstance(path, dict) else path
                    if not path:
                        continue
                    if "/" not in path:
                        path = f"{CNI_DIR}/{path}"
                    base = path.rsplit("/", 1)[-1]
                    dest = f"{nbdir}/{base}"
                    add(
                        f"mv-{path}",
                        kind="shell",
                        command=f"mkdir -p -m 700 {q(nbdir)} && mv -f -- {q(path)} {q(dest)}",
                        why=f"{path} sorts before flannel's conflist, so the container runtime "
                            "uses it instead of flannel's",
                        finding_codes=(f.code,),
                        risk="pods created from now on use flannel's conflist",
                        rollback=rb(f"mv -f -- {q(dest)} {q(path)}", f"put {path} back"),
                        change={"what": f"file {path}", "before": "present",
                                "after": f"moved to {dest}"},
                    )
            elif f.code == "FLANNEL_STALE_SUBNET":
                for r in _list(d, "routes", "stale_routes", "route"):
                    spec = _route_spec(r)
                    if not spec:
                        continue
                    add(
                        f"del-route-{spec}",
                        kind="shell",
                        command=f"ip route del {spec}",
                        why="a route for a subnet no current node owns sends pod traffic to a "
                            "VTEP that is gone",
                        finding_codes=(f.code,),
                        risk="none for current nodes' subnets",
                        rollback=rb(f"ip route replace {spec}", "re-add the route"),
                        change={"what": f"route {spec}", "before": "present", "after": "deleted"},
                    )
                for a in _list(d, "addresses", "stale_addresses", "address"):
                    if isinstance(a, dict):
                        addr = a.get("address") or a.get("local")
                        if addr and a.get("prefixlen") is not None and "/" not in str(addr):
                            addr = f"{addr}/{a['prefixlen']}"
                        dev = a.get("dev") or "flannel.1"
                    else:
                        addr, dev = str(a), d.get("device", "flannel.1")
                    if not addr:
                        continue
                    add(
                        f"del-addr-{addr}-{dev}",
                        kind="shell",
                        command=f"ip addr del {q(addr)} dev {q(dev)}",
                        why=f"{dev} still carries {addr} from a subnet this node no longer owns",
                        finding_codes=(f.code,),
                        risk="none",
                        rollback=rb(f"ip addr add {q(addr)} dev {q(dev)}",
                                    f"put {addr} back on {dev}"),
                        change={"what": f"address {addr} on {dev}", "before": "present",
                                "after": "deleted"},
                    )
                restart = True
            elif f.code == "FLANNEL_STALE_VTEP":
                for e in _list(d, "entries", "stale", "fdb", "neigh"):
                    if not isinstance(e, dict):
                        continue
                    kind = e.get("kind") or e.get("type") or ("neigh" if e.get("lladdr") else "fdb")
                    mac = e.get("mac") or e.get("lladdr")
                    ip = e.get("dst") or e.get("ip")
                    dev = e.get("dev") or "flannel.1"
                    if not mac or not ip:
                        continue
                    if kind == "neigh":
                        add(
                            f"neigh-{ip}-{mac}",
                            kind="shell",
                            command=f"ip neigh del {q(ip)} dev {q(dev)}",
                            why=f"neighbour {ip} on {dev} has MAC {mac}, not the peer's VTEP "
                                "MAC from its backend-data annotation",
                            finding_codes=(f.code,),
                            risk="traffic to that peer's pods stops until flannel re-adds the "
                                 "entry (restart below)",
                            rollback=rb(f"ip neigh replace {q(ip)} lladdr {q(mac)} dev {q(dev)} "
                                        "nud permanent", "re-add the old neighbour entry"),
                            change={"what": f"neigh {ip} on {dev}", "before": mac,
                                    "after": "deleted (flannel re-adds the right MAC)"},
                        )
                    else:
                        add(
                            f"fdb-{ip}-{mac}",
                            kind="shell",
                            command=f"bridge fdb del {q(mac)} dev {q(dev)} dst {q(ip)}",
                            why=f"fdb entry {mac} -> {ip} on {dev} disagrees with the peers' "
                                "backend-data annotations",
                            finding_codes=(f.code,),
                            risk="traffic to that peer's pods stops until flannel re-adds the "
                                 "entry (restart below)",
                            rollback=rb(f"bridge fdb append {q(mac)} dev {q(dev)} dst {q(ip)}",
                                        "re-add the old fdb entry"),
                            change={"what": f"fdb {mac} on {dev}", "before": ip,
                                    "after": "deleted (flannel re-adds the right one)"},
                        )
                restart = True
            elif f.code == "FLANNEL_MISSING_ROUTE":
                for r in _list(d, "routes", "missing", "missing_routes", "route"):
                    spec = _route_spec(r)
                    if not spec:
                        continue
                    add(
                        f"add-route-{spec}",
                        kind="shell",
                        command=f"ip route replace {spec}",
                        why="flannel's route to a current node's pod subnet is missing: pods "
                            "here cannot reach pods there",
                        finding_codes=(f.code,),
                        risk="none",
                        rollback=rb(f"ip route del {spec}", "remove the added route"),
                        change={"what": f"route {spec}", "before": "missing", "after": "present"},
                    )
                restart = True
        if restart:
            pod = flannel_pod(diagnosis, node)
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
