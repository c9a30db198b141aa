"""Host networking prerequisites the runbook's troubleshooting section and its sources name.

Per node, from the findings (docs/findings.md):
- IP_FORWARD_OFF: `sysctl -w net.ipv4.ip_forward=1` now (rollback: the previous value) and a
  drop-in in /etc/sysctl.d so it survives a reboot (rollback: the previous file, or none);
- BR_NETFILTER_OFF: `modprobe br_netfilter` when it is not loaded (rollback: `modprobe -r`),
  `sysctl -w net.bridge.bridge-nf-call-iptables=1` (rollback: the previous value), persisted in
  /etc/modules-load.d and /etc/sysctl.d;
- FIREWALL_REJECT: save the affected tables first, then delete each REJECT rule (iptables
  `-D` with the rule's own spec, or `nft delete rule ... handle H`); rollback restores the saved
  table. Opt-in alternative that keeps the firewall: insert ACCEPT rules for the pod network,
  flannel's VXLAN (UDP 8472), the kubelet (TCP 10250) and the NodePort range (TCP 30000-32767);
- IPVS_MODULES_MISSING: `modprobe` the missing ip_vs modules (rollback: `modprobe -r`), persist
  them in /etc/modules-load.d, and restart the node's kube-proxy pod so it uses them.
Every value in a command passes through shlex.quote; rule specs are split with shlex and each
token quoted, so a hostile rule text cannot become shell syntax.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes.engine import (
    FixAction,
    action_id,
    backup_dir,
    delete_pod_action,
    kube_proxy_pod,
    node_backup_dir,
    opt_in_id,
    q,
)
from clusterfix_tui.core.fixes.worker_kubeconfig import backup_file_command, restore_file_command
from clusterfix_tui.core.model import Action, Finding, Plan

CODES = ("IP_FORWARD_OFF", "BR_NETFILTER_OFF", "FIREWALL_REJECT", "IPVS_MODULES_MISSING")
IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
SYSCTL_DROPIN = "/etc/sysctl.d/99-clusterfix-kubernetes.conf"
MODULES_DROPIN = "/etc/modules-load.d/clusterfix-kubernetes.conf"
NODEPORT_RANGE = "30000:32767"
FLANNEL_VXLAN_PORT = "8472"
KUBELET_PORT = "10250"
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")
_MODULE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BACKENDS = ("legacy", "nft")


def _value(v: Any, default: str) -> str:
    """A previous sysctl value we can put back: digits only."""
    s = str(v).strip() if v is not None else ""
    return s if s.isdigit() else default


def sysctl_set(key: str, value: str) -> str:
    return f"sysctl -w {q(f'{key}={value}')}"


def persist_sysctl_command(settings: dict[str, str], bdir: str) -> str:
    """Back up the drop-in once, then (re)write it: our keys replaced, other lines kept."""
    bad = [k for k in settings if not re.match(r"^[a-z0-9._-]+$", k)]
    if bad:
        raise ValueError(f"not sysctl names: {bad!r}")
    keys = "|".join(k.replace(".", "\\.") for k in settings)  # sysctl names: [a-z0-9._-]
    keep = f"^[[:space:]]*({keys})[[:space:]]*="
    lines = " ".join(q(f"{k} = {v}") for k, v in settings.items())
    tmp = SYSCTL_DROPIN + ".cfx-new"
    return (
        f"{backup_file_command(SYSCTL_DROPIN, bdir)} && mkdir -p /etc/sysctl.d && "
        f"{{ grep -v -E {q(keep)} {q(SYSCTL_DROPIN)} 2>/dev/null; printf '%s\\n' {lines}; }} "
        f"> {q(tmp)} && chmod 644 {q(tmp)} && mv -f -- {q(tmp)} {q(SYSCTL_DROPIN)}"
    )


def persist_modules_command(modules: list[str], bdir: str) -> str:
    drop = " ".join(f"-e {q(m)}" for m in modules)
    lines = " ".join(q(m) for m in modules)
    tmp = MODULES_DROPIN + ".cfx-new"
    return (
        f"{backup_file_command(MODULES_DROPIN, bdir)} && mkdir -p /etc/modules-load.d && "
        f"{{ grep -v -x -F {drop} {q(MODULES_DROPIN)} 2>/dev/null; printf '%s\\n' {lines}; }} "
        f"> {q(tmp)} && chmod 644 {q(tmp)} && mv -f -- {q(tmp)} {q(MODULES_DROPIN)}"
    )


def rule_argv(spec: str, op: str) -> list[str] | None:
    """An iptables-save rule spec ("-A CHAIN ...") as the argv of `op` ("-D" / "-I") on it.
    None when it is not a plain `-A CHAIN ...` rule (unbalanced quotes, other command)."""
    try:
        tokens = shlex.split(spec)
    except ValueError:
        return None
    if len(tokens) < 3 or tokens[0] != "-A" or not _NAME_RE.match(tokens[1]):
        return None
    return [op, *tokens[1:]]


def _pod_network(diagnosis: Any) -> str | None:
    snap = getattr(diagnosis, "snapshot", None)
    v = snap.get("flannel_network") if isinstance(snap, dict) else getattr(snap, "flannel_network", None)
    if v:
        return str(v)
    for f in getattr(diagnosis, "findings", ()) or ():
        pn = (f.data or {}).get("pod_network")
        if pn:
            return str(pn)
    return None


class HostNetworkStep:
    name = "host_network"
    title = "Host networking: ip_forward, br_netfilter, firewall REJECT, ipvs modules"
    runbook_helper = "troubleshooting section (no helper script)"

    def plan(self, diagnosis: Any) -> Plan:
        findings = engine.findings_for(diagnosis, CODES)
        if not findings:
            return engine.nothing_to_do(
                self, "ip_forward and bridge-nf-call-iptables are on, no firewall REJECT rule, "
                      "ipvs modules present where kube-proxy needs them")
        bdir = backup_dir(self.name, engine.plan_stamp())
        pod_net = _pod_network(diagnosis)
        by_node: dict[str, list[Finding]] = {}
        for f in findings:
            by_node.setdefault(f.node, []).append(f)
        actions: list[Action] = []
        notes: list[str] = []
        for node in sorted(by_node):
            a, n = self._plan_node(diagnosis, node, by_node[node], node_backup_dir(bdir, node),
                                   pod_net)
            actions.extend(a)
            notes.extend(n)
        return Plan(step=self.name, title=self.title, findings=tuple(findings),
                    actions=tuple(actions), notes=tuple(notes))

    def _plan_node(self, diagnosis: Any, node: str, findings: list[Finding], bdir: str,
                   pod_net: str | None) -> tuple[list[Action], list[str]]:
        actions: list[Action] = []
        notes: list[str] = []
        n = 0

        def nid() -> str:
            nonlocal n
            n += 1
            return action_id(self.name, node, n)

        def rb(suffix: str, command: str, why: str) -> Action:
            return Action(id=f"{self.name}:{node}:{n}:rollback{suffix}", target=node,
                          kind="shell", command=command, why=why)

        sysctls: dict[str, str] = {}
        modules: list[str] = []
        codes_persist: set[str] = set()
        restart_kube_proxy = False
        firewall: list[tuple[Finding, dict[str, Any]]] = []

        for f in findings:
            d = f.data or {}
            if f.code == "IP_FORWARD_OFF":
                prev = _value(d.get("value"), "0")
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell", command=sysctl_set(IP_FORWARD, "1"),
                    why="IPv4 forwarding is off: the node drops pod traffic it should route",
                    finding_codes=(f.code,), risk="the node routes packets between interfaces "
                    "(what every Kubernetes node needs)",
                    rollback=rb("", sysctl_set(IP_FORWARD, prev), f"put {IP_FORWARD} back to {prev}"),
                    change={"what": IP_FORWARD, "before": prev, "after": "1"},
                ))
                sysctls[IP_FORWARD] = "1"
                codes_persist.add(f.code)
            elif f.code == "BR_NETFILTER_OFF":
                loaded = d.get("module_loaded")
                prev_raw = d.get("value")
                if loaded is False or prev_raw is None:
                    actions.append(FixAction(
                        id=nid(), target=node, kind="shell", command="modprobe br_netfilter",
                        why="br_netfilter is not loaded: bridged pod traffic bypasses iptables "
                            "(Services and NodePorts break for pods on the same node)",
                        finding_codes=(f.code,), risk="bridged traffic now passes iptables",
                        rollback=rb("", "modprobe -r br_netfilter", "unload br_netfilter again"),
                        change={"what": "module br_netfilter", "before": "not loaded",
                                "after": "loaded"},
                    ))
                    modules.append("br_netfilter")
                prev = _value(prev_raw, "0")
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell", command=sysctl_set(BRIDGE_NF, "1"),
                    why="bridge-nf-call-iptables is off: flannel and kube-proxy need bridged "
                        "traffic to traverse iptables",
                    finding_codes=(f.code,), risk="bridged traffic passes iptables",
                    rollback=rb("", sysctl_set(BRIDGE_NF, prev), f"put {BRIDGE_NF} back to {prev}")
                    if prev_raw is not None else None,
                    rollback_note="" if prev_raw is not None else
                    "the setting goes away with br_netfilter (rolled back by its modprobe -r)",
                    change={"what": BRIDGE_NF, "before": prev_raw, "after": "1"},
                ))
                if "br_netfilter" not in modules:
                    modules.append("br_netfilter")
                sysctls[BRIDGE_NF] = "1"
                codes_persist.add(f.code)
            elif f.code == "FIREWALL_REJECT":
                for r in d.get("rules") or ():
                    if isinstance(r, dict):
                        firewall.append((f, r))
            elif f.code == "IPVS_MODULES_MISSING":
                missing = [str(m) for m in (d.get("missing") or IPVS_MODULES)]
                bad = [m for m in missing if not _MODULE_RE.match(m)]
                missing = [m for m in missing if _MODULE_RE.match(m)]
                if bad:
                    notes.append(f"{node}: ignored module names that are not plain names: {bad!r}")
                if not missing:
                    continue
                mods = " ".join(q(m) for m in missing)
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell", command=f"modprobe -a {mods}",
                    why=f"kube-proxy runs in {d.get('mode') or 'ipvs'} mode but these modules are "
                        f"not loaded: {', '.join(missing)}",
                    finding_codes=(f.code,), risk="none beyond loading kernel modules",
                    rollback=rb("", f"modprobe -r -a {mods}", "unload the modules again"),
                    change={"what": "ipvs modules", "before": "not loaded",
                            "after": ", ".join(missing)},
                ))
                modules.extend(m for m in missing if m not in modules)
                codes_persist.add(f.code)
                restart_kube_proxy = True

        restore_sysctl = restore_file_command(SYSCTL_DROPIN, bdir)
        restore_modules = restore_file_command(MODULES_DROPIN, bdir)
        if sysctls:
            actions.append(FixAction(
                id=nid(), target=node, kind="shell", command=persist_sysctl_command(sysctls, bdir),
                why=f"persist {', '.join(sysctls)} across reboots in {SYSCTL_DROPIN}",
                finding_codes=tuple(sorted(c for c in codes_persist if c != "IPVS_MODULES_MISSING")),
                risk="a later file in /etc/sysctl.d or /etc/sysctl.conf that sets these back "
                     "to 0 still wins at boot",
                rollback=rb("", restore_sysctl, f"restore {SYSCTL_DROPIN} as it was (or remove it)"),
                change={"what": SYSCTL_DROPIN, "before": None,
                        "after": "; ".join(f"{k} = {v}" for k, v in sysctls.items())},
            ))
        if modules:
            actions.append(FixAction(
                id=nid(), target=node, kind="shell", command=persist_modules_command(modules, bdir),
                why=f"load {', '.join(modules)} at boot ({MODULES_DROPIN})",
                finding_codes=tuple(sorted(codes_persist)),
                risk="none beyond loading kernel modules at boot",
                rollback=rb("", restore_modules, f"restore {MODULES_DROPIN} as it was (or remove it)"),
                change={"what": MODULES_DROPIN, "before": None, "after": ", ".join(modules)},
            ))

        if firewall:
            a, nts = self._firewall(node, firewall, bdir, pod_net, nid, rb)
            actions.extend(a)
            notes.extend(nts)

        if restart_kube_proxy:
            pod = kube_proxy_pod(diagnosis, node)
            if pod is None:
                notes.append(f"{node}: restart kube-proxy on this node after loading the ipvs "
                             "modules (its pod was not found in the snapshot)")
            else:
                actions.append(delete_pod_action(
                    nid(), node, pod[0], pod[1],
                    why="kube-proxy picks the ipvs modules up when it starts",
                    finding_codes=("IPVS_MODULES_MISSING",),
                ))
        return actions, notes

    def _firewall(self, node: str, rules: list[tuple[Finding, dict[str, Any]]], bdir: str,
                  pod_net: str | None, nid: Any, rb: Any) -> tuple[list[Action], list[str]]:
        actions: list[Action] = []
        notes: list[str] = []
        saved: set[tuple[str, ...]] = set()
        accept_chains: list[tuple[str, str]] = []  # (backend, chain) for the opt-in alternative

        def save_action(key: tuple[str, ...], dump: str, path: str, what: str) -> None:
            """Save once: a re-run of the same plan must not overwrite the pre-fix copy."""
            if key in saved:
                return
            saved.add(key)
            tmp = path + ".tmp"
            actions.append(FixAction(
                id=nid(), target=node, kind="shell",
                command=f"mkdir -p -m 700 {q(bdir)} && {{ [ -e {q(path)} ] || "
                        f"{{ {dump} > {q(tmp)} && mv -f -- {q(tmp)} {q(path)}; }}; }}",
                why=f"save {what} before removing the REJECT rule (the rollback restores it)",
                finding_codes=("FIREWALL_REJECT",), risk="none (writes the backup only)",
                rollback_note=f"the backup in {bdir} is kept; remove it by hand when no longer needed",
                change={"what": "backup", "before": None, "after": bdir},
            ))

        for f, r in rules:
            backend = str(r.get("backend") or "")
            table = str(r.get("table") or "filter")
            chain = str(r.get("chain") or "")
            if backend in _BACKENDS:
                if not _NAME_RE.match(table):
                    notes.append(f"{node}: REJECT rule in an odd table name {table!r}; not planned")
                    continue
                argv = rule_argv(str(r.get("rule") or ""), "-D")
                if argv is None or (chain and argv[1] != chain):
                    notes.append(f"{node}: cannot parse the REJECT rule {r.get('rule')!r}; "
                                 "remove it by hand")
                    continue
                saved_file = f"{bdir}/firewall-{backend}-{table}.rules"
                save_action((backend, table), f"iptables-{backend}-save -t {q(table)}",
                            saved_file, f"the {backend} {table} table")
                cmd = f"iptables-{backend} -w 5 -t {q(table)} " + " ".join(q(t) for t in argv)
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell", command=cmd,
                    why=f"this REJECT rule in {backend} {table} {argv[1]} turns pod, probe and "
                        "NodePort traffic into 'no route to host'",
                    finding_codes=(f.code,),
                    risk="the node no longer rejects that traffic: review your firewall policy "
                         "(the opt-in alternative keeps the rule and opens only what Kubernetes "
                         "needs)",
                    rollback=rb("", f"iptables-{backend}-restore -w 5 -T {q(table)} < {q(saved_file)}",
                                f"restore the saved {backend} {table} table"),
                    change={"what": f"{backend} {table} {argv[1]}", "before": r.get("rule"),
                            "after": "removed"},
                ))
                if table == "filter" and (backend, argv[1]) not in accept_chains:
                    accept_chains.append((backend, argv[1]))
            elif backend == "nft-native" or r.get("handle") is not None:
                fam, tab, ch = (str(r.get("family") or "inet"), str(r.get("table") or ""),
                                str(r.get("chain") or ""))
                handle = str(r.get("handle") or "")
                if not (fam in ("ip", "ip6", "inet", "arp", "bridge", "netdev")
                        and _NAME_RE.match(tab) and _NAME_RE.match(ch) and handle.isdigit()):
                    notes.append(f"{node}: nft REJECT rule {r.get('text')!r} lacks a usable "
                                 "family/table/chain/handle; remove it by hand")
                    continue
                saved_file = f"{bdir}/firewall-nft-{fam}-{tab}.nft"
                save_action(("nft", fam, tab), f"nft list table {q(fam)} {q(tab)}", saved_file,
                            f"the nft table {fam} {tab}")
                restore = (f"{{ printf 'flush table %s %s\\n' {q(fam)} {q(tab)}; cat {q(saved_file)}; }}"
                           " | nft -f -")
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell",
                    command=f"nft delete rule {q(fam)} {q(tab)} {q(ch)} handle {q(handle)}",
                    why=f"this reject rule in nft {fam} {tab} {ch} turns pod, probe and NodePort "
                        "traffic into 'no route to host'",
                    finding_codes=(f.code,),
                    risk="the node no longer rejects that traffic: review your firewall policy",
                    rollback=rb("", restore, f"restore the saved nft table {fam} {tab} (atomically)"),
                    change={"what": f"nft {fam} {tab} {ch}", "before": r.get("text"),
                            "after": "removed"},
                ))
            else:
                notes.append(f"{node}: REJECT rule with unknown backend {backend!r}; not planned")

        # opt-in alternative: keep the REJECT rule, accept what Kubernetes needs before it
        if accept_chains:
            if not pod_net:
                notes.append(f"{node}: the pod network is unknown, so the keep-the-firewall "
                             "alternative (ACCEPT rules before the REJECT) is not offered")
            else:
                specs = [
                    ["-s", pod_net, "-j", "ACCEPT"],
                    ["-d", pod_net, "-j", "ACCEPT"],
                    ["-p", "udp", "--dport", FLANNEL_VXLAN_PORT, "-j", "ACCEPT"],
                    ["-p", "tcp", "--dport", KUBELET_PORT, "-j", "ACCEPT"],
                    ["-p", "tcp", "--dport", NODEPORT_RANGE, "-j", "ACCEPT"],
                ]
                for backend, chain in accept_chains:
                    for i, spec in enumerate(specs, 1):
                        full = [*spec[:-2], "-m", "comment", "--comment", "clusterfix", *spec[-2:]]
                        ins = " ".join(q(t) for t in ["-I", chain, "1", *full])
                        dele = " ".join(q(t) for t in ["-D", chain, *full])
                        actions.append(FixAction(
                            id=opt_in_id(self.name, node, f"accept-{backend}-{chain}-{i}"),
                            target=node, kind="shell",
                            command=f"iptables-{backend} -w 5 -t filter {ins}",
                            why=f"(opt-in alternative to deleting the REJECT rule) accept "
                                f"{' '.join(spec[:-2])} in {backend} filter {chain}",
                            finding_codes=("FIREWALL_REJECT",),
                            risk="opens this traffic ahead of your firewall's REJECT",
                            rollback=Action(
                                id=opt_in_id(self.name, node, f"accept-{backend}-{chain}-{i}")
                                + ":rollback", target=node, kind="shell",
                                command=f"iptables-{backend} -w 5 -t filter {dele}",
                                why="remove the inserted ACCEPT rule"),
                            opt_in=True,
                            change={"what": f"{backend} filter {chain}", "before": None,
                                    "after": " ".join(full)},
                        ))
                notes.append(f"{node}: to keep the firewall instead of deleting its REJECT rule, "
                             "approve the opt-in ACCEPT actions (pod network "
                             f"{pod_net}, UDP {FLANNEL_VXLAN_PORT}, TCP {KUBELET_PORT}, TCP "
                             f"{NODEPORT_RANGE.replace(':', '-')}) and leave the delete unapproved")
        return actions, notes


STEP = HostNetworkStep()
