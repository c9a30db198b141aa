"""Host networking prerequisites the runbook's troubleshooting section and its sources name.

Per node, from the findings (docs/findings.md):
- IP_FORWARD_OFF: `sysctl -w net.ipv4.ip_forward=1` now (rollback: the previous value) and a
  drop-in in /etc/sysctl.d so it survives a reboot (rollback: the previous file, or none);
- BR_NETFILTER_OFF: `modprobe br_netfilter` when it is not loaded (rollback: `modprobe -r`),
  `sysctl -w net.bridge.bridge-nf-call-iptables=1` (rollback: the previous value), persisted in
  /etc/modules-load.d and /etc/sysctl.d;
- IPV6_FORWARD_OFF (a node with an IPv6 podCIDR): `sysctl -w net.ipv6.conf.all.forwarding=1`
  (rollback: the previous value), persisted; an interface whose IPv6 default route came from a
  router advertisement first gets accept_ra=2 (rollback: the saved value), or the node would
  stop accepting RAs and lose that route;
- BR_NETFILTER_IP6_OFF: `sysctl -w net.bridge.bridge-nf-call-ip6tables=1` (rollback: the previous
  value), persisted;
- FIREWALL_REJECT / FIREWALL_POLICY_DROP / VXLAN_UNDERLAY_BLOCKED: insert ACCEPT rules for
  exactly the cluster flows the firewall drops (`data["accepts"]`), at the top of the same
  backend/table's base chain (DOCKER-USER for forwarded traffic on docker hosts), the dropping rule
  and policy staying; rollback deletes each by its exact spec (iptables -D) or by the handle of its
  exact text re-read at rollback time (nft). When firewalld runs: a zone change
  (`firewall-cmd --add-port` / trusted `--add-source`, runtime + permanent) instead, since
  firewalld owns its table. Opt-in alternatives: delete the rule (table saved first; an nft handle
  is re-checked against the diagnosed rule's JSON before deleting) or set the policy to ACCEPT;
- IPVS_MODULES_MISSING: `modprobe` the missing ip_vs modules (rollback: `modprobe -r`), persist
  them in /etc/modules-load.d, and restart the node's kube-proxy pod so it uses them.
Every value in a command passes through shlex.quote; rule specs are split with shlex and each
token quoted, so a hostile rule text cannot become shell syntax.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from clusterfix_tui.core.checks.firewall import FirewallAcceptsData, FirewallDropData
from clusterfix_tui.core.checks.host import IpvsModulesData, SysctlData
from clusterfix_tui.core.checks.underlay import UnderlayBlockedData
from clusterfix_tui.core.fixes import conntrack as conntrack_fix
from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes import preconditions as pre
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
from clusterfix_tui.core.shape import scoped_findings

FIREWALL_CODES = ("FIREWALL_REJECT", "FIREWALL_POLICY_DROP", "VXLAN_UNDERLAY_BLOCKED")
CODES = ("IP_FORWARD_OFF", "BR_NETFILTER_OFF", "IPV6_FORWARD_OFF", "BR_NETFILTER_IP6_OFF",
         *FIREWALL_CODES, "IPVS_MODULES_MISSING", *conntrack_fix.CODES)
IP_FORWARD = "net.ipv4.ip_forward"
BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"
IPV6_FORWARD = "net.ipv6.conf.all.forwarding"
BRIDGE_NF6 = "net.bridge.bridge-nf-call-ip6tables"
# interface names usable in a sysctl key as they are (a "." would be written "/" there)
_IFACE_RE = re.compile(r"^[a-z0-9_-]{1,15}$")
SYSCTL_DROPIN = "/etc/sysctl.d/99-clusterfix-kubernetes.conf"
MODULES_DROPIN = "/etc/modules-load.d/clusterfix-kubernetes.conf"
NODEPORT_RANGE = "30000:32767"
FLANNEL_VXLAN_PORT = "8472"
KUBELET_PORT = "10250"
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")
_MODULE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_BACKENDS = ("legacy", "nft")


def _sysctl_not_one(key: str) -> Any:
    """Preconditions: the setting is still off (already 1 = done, nothing to roll back)."""
    from clusterfix_tui.core.fixes import preconditions as pre

    return pre.absent_else_done(f'[ "$(sysctl -n {q(key)} 2>/dev/null)" = 1 ]',
                                f"{key} is not 1 yet", f"{key} is 1 already")


def device_ifindex(facts: Any, dev: str) -> int | None:
    """The ifindex of `dev` as the node's facts (`ip -j link` / `ip -j addr`) show it."""
    for link in (getattr(facts, "links", None) or ()) + (getattr(facts, "addrs", None) or ()):
        if isinstance(link, dict) and link.get("ifname") == dev:
            i = link.get("ifindex")
            return i if isinstance(i, int) and not isinstance(i, bool) else None
    return None


def _on_the_same_device(dev: str, ifindex: int | None, command: str) -> str:
    """A per-device rollback runs on the device the fix changed only: renamed or re-created
    since (another ifindex: flannel re-creates cni0 and flannel.1), the name is another device's,
    whose setting this session never changed: left as it is, and said."""
    if ifindex is None:
        return command
    gone = (f"{dev} is not the device this session changed (its ifindex was {ifindex}): "
            "left as it is")
    return (f"if [ \"$(cat {q('/sys/class/net/' + dev + '/ifindex')} 2>/dev/null)\" = {ifindex} ]; "
            f"then {command}; else echo {q(gone)}; fi")


def _device_sysctl_not(key: str, value: str, dev: str, ifindex: int | None) -> Any:
    """Preconditions of a per-device sysctl: `dev` is still the device the diagnosis read (same
    ifindex: renamed or re-created since, the name may now be another device's: changed, not
    run) and `key` is not `value` yet (already `value` = done)."""
    from clusterfix_tui.core.fixes import preconditions as pre

    same = ""
    if ifindex is not None:
        moved = f"{dev} is not the device the diagnosis read (its ifindex was {ifindex}); re-run diagnose"
        same = (f"[ \"$(cat {q('/sys/class/net/' + dev + '/ifindex')} 2>/dev/null)\" = "
                f"{ifindex} ] || {{ echo {q(moved)}; exit 4; }}; ")
    return pre.shell(f"{same}if [ \"$(sysctl -n {q(key)} 2>/dev/null)\" = {q(value)} ]; then "
                     f"echo {q(f'{key} is {value} already')}; exit {pre.EXIT_DONE}; fi; exit 0",
                     f"{key} is not {value} yet" + (f" on {dev} (ifindex {ifindex})"
                                                     if ifindex is not None else ""))


def _modules_not_loaded(modules: list[str]) -> Any:
    from clusterfix_tui.core.fixes import preconditions as pre

    test = " && ".join(f"[ -d {q('/sys/module/' + m)} ]" for m in modules)
    return pre.absent_else_done(test, f"not loaded yet: {', '.join(modules)}",
                                f"loaded already: {', '.join(modules)}")


def _value(v: Any, default: str) -> str:
    """A previous sysctl value we can put back: digits only."""
    s = str(v).strip() if v is not None else ""
    return s if s.isdigit() else default


def sysctl_set(key: str, value: str) -> str:
    return f"sysctl -w {q(f'{key}={value}')}"


# the keys whose write the kernel copies to every device and to `default` (IPv4:
# inet_forward_change; IPv6: addrconf_fixup_forwarding): setting them, and setting them back,
# overwrites each device's own forwarding value
_PROPAGATING = {IP_FORWARD: "/proc/sys/net/ipv4/conf", IPV6_FORWARD: "/proc/sys/net/ipv6/conf"}


def forwarding_saved(key: str, bdir: str) -> str:
    return f"{bdir}/{key}.devices"


def save_forwarding_command(key: str, bdir: str) -> str:
    """Before `key` is set: each device's (and `default`'s) own forwarding value, once
    ("path value" lines), for the rollback to put back after the kernel overwrote them all."""
    saved = forwarding_saved(key, bdir)
    conf = _PROPAGATING[key]
    return (f"mkdir -p -m 700 {q(bdir)} && {{ [ -e {q(saved)} ] || {{ for p in {conf}/*/forwarding; "
            f"do case \"$p\" in {conf}/all/*) continue;; esac; "
            "printf '%s %s\\n' \"$p\" \"$(cat \"$p\")\"; done > "
            f"{q(saved + '.tmp')} && mv -f -- {q(saved + '.tmp')} {q(saved)}; }}; }}")


def restore_forwarding_command(key: str, prev: str, bdir: str) -> str:
    """`key` back to `prev` (which the kernel copies to every device), then each device's own
    value as saved before the fix (a device gone since is left alone)."""
    saved = forwarding_saved(key, bdir)
    return (f"{sysctl_set(key, prev)} && if [ -e {q(saved)} ]; then while read -r p v; do "
            "[ \"$(cat \"$p\" 2>/dev/null)\" = \"$v\" ] || { printf '%s\\n' \"$v\" > \"$p\"; } "
            f"2>/dev/null || true; done < {q(saved)}; fi")


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
        f"> {q(tmp)} && chmod 644 {q(tmp)} && mv -f -- {q(tmp)} {q(SYSCTL_DROPIN)} && "
        + overridden_at_boot_command(settings)
    )


# read by systemd-sysctl and `sysctl --system` in file-name order (then /etc/sysctl.conf, last, by
# procps; Debian links it as /etc/sysctl.d/99-sysctl.conf, which sorts after our drop-in)
SYSCTL_DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d",
               "/lib/sysctl.d")
_AWK_OVERRIDE = (
    'BEGIN { n = split(want, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); '
    'w[kv[1]] = kv[2] } } '
    '/^[[:space:]]*[#;]/ { next } '
    '/=/ { k = $0; sub(/=.*/, "", k); gsub(/[[:space:]]/, "", k); sub(/^-/, "", k); '
    'if (!(k in w)) next; v = $0; sub(/^[^=]*=/, "", v); gsub(/[[:space:]]/, "", v); '
    'if (v != w[k]) print "clusterfix: WARNING: " FILENAME " sets " k " = " v " and is read after " '
    'drop ": at boot it wins (the setting does not survive a reboot until that line changes)" }')


def overridden_at_boot_command(settings: dict[str, str]) -> str:
    """Read-only, after the drop-in is written: every sysctl file read after it at boot that sets
    one of `settings` to another value is named on stdout (it wins at boot: the
    runtime value holds until the next reboot). Always exits 0: the files are the admin's."""
    drop = SYSCTL_DROPIN.rsplit("/", 1)[-1]
    want = " ".join(f"{k}={v}" for k, v in settings.items())
    globs = " ".join(f"{d}/*.conf" for d in SYSCTL_DIRS)
    return (
        f"{{ for f in {globs} /etc/sysctl.conf; do [ -f \"$f\" ] || continue; "
        f"case \"$f\" in /etc/sysctl.conf) ;; *) expr \"${{f##*/}}\" \\> {q(drop)} >/dev/null || continue;; "
        "esac; printf '%s\\n' \"$f\"; done | while IFS= read -r f; do "
        f"awk -v want={q(want)} -v drop={q(SYSCTL_DROPIN)} {q(_AWK_OVERRIDE)} \"$f\" 2>/dev/null; "
        "done; true; }"
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


# nft tables another daemon owns: it rewrites them (on restart, reload or every sync), so a rule
# deleted or a policy flipped there comes back, or the daemon and the fix fight over it
_OWNED_NFT_TABLES = {
    "firewalld": "firewalld",
    "docker-bridges": "docker (its nftables firewall backend)",
    "kube-proxy": "kube-proxy (nftables mode)",
    "calico": "calico (felix's nftables dataplane)",
    "flannel-ipv4": "flannel (nftables mode)",
    "flannel-ipv6": "flannel (nftables mode)",
    "netavark": "podman (netavark)",
    "libvirt_network": "libvirt",
    "kube-network-policies": "kube-network-policies",
}
# iptables chains another daemon owns (prefix -> owner); DOCKER-USER and CNI-ADMIN are the admin's
# chains those daemons leave alone
_OWNED_CHAIN_PREFIXES = (
    ("DOCKER", "docker"), ("KUBE-", "kube-proxy / kube-router"), ("cali-", "calico"),
    ("CILIUM", "cilium"), ("FLANNEL", "flannel"), ("ANTREA-", "antrea"), ("WEAVE-", "weave"),
    ("ufw-", "ufw"), ("ufw6-", "ufw"), ("f2b-", "fail2ban"), ("LIBVIRT_", "libvirt"),
    ("NETAVARK", "podman (netavark)"), ("CNI-", "a CNI plugin (portmap / firewall)"),
    ("IN_", "firewalld"), ("FWD_", "firewalld"), ("FWDI_", "firewalld"), ("FWDO_", "firewalld"),
    ("INPUT_ZONES", "firewalld"), ("FORWARD_IN_ZONES", "firewalld"),
    ("FORWARD_OUT_ZONES", "firewalld"), ("INPUT_direct", "firewalld"),
    ("FORWARD_direct", "firewalld"), ("OUTPUT_direct", "firewalld"),
)
_ADMIN_CHAINS = ("DOCKER-USER", "CNI-ADMIN")


def daemon_owner(backend: str, table: str, chain: str) -> str | None:
    """The daemon that owns the nft table (nft-native) or the iptables chain a rule/policy is in,
    None when none is known to: the opt-in deletions and policy flips never touch what a daemon
    owns (see docs/findings.md)."""
    if backend in _BACKENDS:
        if chain in _ADMIN_CHAINS:
            return None
        return next((who for prefix, who in _OWNED_CHAIN_PREFIXES if chain.startswith(prefix)),
                    None)
    return _OWNED_NFT_TABLES.get(table)


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
        findings, scope_notes = scoped_findings(diagnosis, engine.findings_for(diagnosis, CODES))
        if not findings:
            if scope_notes:
                return Plan(step=self.name, title=self.title, actions=(), notes=tuple(scope_notes))
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
                    actions=tuple(actions), notes=tuple(scope_notes + notes))

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

        node_facts = (getattr(diagnosis, "facts", None) or {}).get(node)
        sysctls: dict[str, str] = {}
        modules: list[str] = []
        codes_persist: set[str] = set()

        def sysctl_on(f: Finding, key: str, prev: str, why: str, risk: str) -> None:
            """Set `key` to 1 now (undone by its previous value) and persist it. A key the
            kernel copies to every device: the devices' own values are saved first and put
            back by the rollback."""
            command, undo = sysctl_set(key, "1"), sysctl_set(key, prev)
            if key in _PROPAGATING:
                command = f"{save_forwarding_command(key, bdir)} && {command}"
                undo = restore_forwarding_command(key, prev, bdir)
            actions.append(FixAction(
                id=nid(), target=node, kind="shell", command=command, why=why,
                finding_codes=(f.code,), risk=risk,
                rollback=rb("", undo, f"put {key} back to {prev}"
                            + (" and each device's own forwarding as it was"
                               if key in _PROPAGATING else "")),
                change={"what": key, "before": prev, "after": "1"},
                precondition=_sysctl_not_one(key),
            ))
            sysctls[key] = "1"
            codes_persist.add(f.code)
        restart_kube_proxy = False
        firewall: list[tuple[Finding, FirewallAcceptsData]] = []

        for f in findings:
            if f.code == "IP_FORWARD_OFF" and f.data_as(SysctlData).interfaces:
                # per device: runtime only (the device inherits net.ipv4.conf.default.forwarding
                # when it is created, 1 once ip_forward is; a sysctl.d line for a device that
                # does not exist at boot does nothing)
                for dev, key in zip(f.data_as(SysctlData).interfaces,
                                    f.data_as(SysctlData).sysctls, strict=False):
                    if not re.match(r"^net\.ipv4\.conf\.[A-Za-z0-9_/-]{1,15}\.forwarding$", key):
                        notes.append(f"{node}: {key}: not a device forwarding key, left alone")
                        continue
                    actions.append(FixAction(
                        id=nid(), target=node, kind="shell", command=sysctl_set(key, "1"),
                        why=f"forwarding is off on {dev}: packets coming in on {dev} are "
                            "not routed (the kernel checks the input device's setting)",
                        finding_codes=(f.code,),
                        risk="the node routes packets coming in on this device (as on its others)",
                        rollback=rb("", _on_the_same_device(dev, device_ifindex(node_facts, dev),
                                                            sysctl_set(key, "0")),
                                    f"put {key} back to 0"),
                        change={"what": key, "before": "0", "after": "1"},
                        precondition=_device_sysctl_not(key, "1", dev,
                                                        device_ifindex(node_facts, dev)),
                    ))
            elif f.code == "IP_FORWARD_OFF":
                sysctl_on(f, IP_FORWARD, _value(f.data_as(SysctlData).value, "0"),
                          why="IPv4 forwarding is off: the node drops pod traffic it should route",
                          risk="the node routes packets between interfaces (what every Kubernetes "
                               "node needs)")
            elif f.code == "BR_NETFILTER_OFF":
                sd = f.data_as(SysctlData)
                loaded, prev_raw = sd.module_loaded, sd.value
                if loaded is False or prev_raw is None:
                    actions.append(FixAction(
                        id=nid(), target=node, kind="shell", command="modprobe br_netfilter",
                        why="br_netfilter is not loaded: bridged pod traffic bypasses iptables "
                            "(Services and NodePorts break for pods on the same node)",
                        finding_codes=(f.code,), risk="bridged traffic now passes iptables",
                        rollback=rb("", "modprobe -r br_netfilter", "unload br_netfilter again"),
                        change={"what": "module br_netfilter", "before": "not loaded",
                                "after": "loaded"},
                        precondition=_modules_not_loaded(["br_netfilter"]),
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
                    precondition=_sysctl_not_one(BRIDGE_NF),
                ))
                if "br_netfilter" not in modules:
                    modules.append("br_netfilter")
                sysctls[BRIDGE_NF] = "1"
                codes_persist.add(f.code)
            elif f.code == "IPV6_FORWARD_OFF":
                sd = f.data_as(SysctlData)
                prev = _value(sd.value, "0")
                for dev in sd.ra_interfaces:
                    if not _IFACE_RE.match(dev):
                        notes.append(f"{node}: interface name {dev!r} is not a plain name; its "
                                     "accept_ra is not changed (set it to 2 by hand)")
                        continue
                    key = f"net.ipv6.conf.{dev}.accept_ra"
                    saved = f"{bdir}/accept_ra.{dev}"
                    actions.append(FixAction(
                        id=nid(), target=node, kind="shell",
                        # saved once: a second run (a retry) would save the 2 it set
                        command=(f"mkdir -p -m 700 {q(bdir)} && {{ [ -s {q(saved)} ] || "
                                 f"{{ sysctl -n {q(key)} > {q(saved + '.tmp')} && "
                                 f"mv -f -- {q(saved + '.tmp')} {q(saved)}; }}; }} && "
                                 f"{sysctl_set(key, '2')}"),
                        why=f"the IPv6 default route on {dev} comes from router advertisements; "
                            "with forwarding on the kernel ignores them unless accept_ra=2 (the "
                            "node would lose its IPv6 default route when it expires)",
                        finding_codes=(f.code,), risk="none: RAs keep being accepted as now",
                        rollback=rb("", _on_the_same_device(
                            dev, device_ifindex(node_facts, dev),
                            f"{sysctl_set(key, '')}\"$(cat {q(saved)})\""),
                                    f"put {key} back to its saved value"),
                        change={"what": key, "before": None, "after": "2"},
                        precondition=_device_sysctl_not(key, "2", dev,
                                                        device_ifindex(node_facts, dev)),
                    ))
                    sysctls[key] = "2"
                sysctl_on(f, IPV6_FORWARD, prev,
                          why="IPv6 forwarding is off on a node with an IPv6 podCIDR: it drops the "
                              "IPv6 pod and NodePort traffic it should route",
                          risk="the node routes IPv6 packets between interfaces (what a dual-stack "
                               "or IPv6 Kubernetes node needs); interfaces with accept_ra=1 stop "
                               "accepting router advertisements")
            elif f.code == "BR_NETFILTER_IP6_OFF":
                sysctl_on(f, BRIDGE_NF6, _value(f.data_as(SysctlData).value, "0"),
                          why="bridge-nf-call-ip6tables is off: bridged IPv6 pod traffic skips "
                              "ip6tables (kube-proxy's IPv6 Service rules)",
                          risk="bridged IPv6 traffic passes ip6tables")
            elif f.code in FIREWALL_CODES:
                firewall.append((f, f.data_as(UnderlayBlockedData
                                              if f.code == "VXLAN_UNDERLAY_BLOCKED"
                                              else FirewallDropData)))
            elif f.code in conntrack_fix.CODES:  # core/fixes/conntrack.py
                a, nts = conntrack_fix.plan_finding(node, f, bdir, nid, rb)
                actions.extend(a)
                notes.extend(nts)
            elif f.code == "IPVS_MODULES_MISSING":
                ipvs = f.data_as(IpvsModulesData)
                missing = [str(m) for m in (ipvs.missing or IPVS_MODULES)]
                bad = [m for m in missing if not _MODULE_RE.match(m)]
                missing = [m for m in missing if _MODULE_RE.match(m)]
                if bad:
                    notes.append(f"{node}: ignored module names that are not plain names: {bad!r}")
                if not missing:
                    continue
                mods = " ".join(q(m) for m in missing)
                actions.append(FixAction(
                    id=nid(), target=node, kind="shell", command=f"modprobe -a {mods}",
                    why=f"kube-proxy runs in {ipvs.mode} mode but these modules are "
                        f"not loaded: {', '.join(missing)}",
                    finding_codes=(f.code,), risk="none beyond loading kernel modules",
                    rollback=rb("", f"modprobe -r -a {mods}", "unload the modules again"),
                    change={"what": "ipvs modules", "before": "not loaded",
                            "after": ", ".join(missing)},
                    precondition=_modules_not_loaded(missing),
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
                     "to 0 still wins at boot: the action names each such file (a WARNING line "
                     "in its output) and leaves it alone",
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
            from clusterfix_tui.core.fixes.iptables import iptables_restore_wait, iptables_wait
            from clusterfix_tui.core.shape import node_iptables_kind

            facts = diagnosis.facts.get(node) if isinstance(diagnosis.facts, dict) else None
            # an iptables without -legacy/-nft variants (< 1.8, CentOS 7's 1.4.21) has one
            # `iptables`; its wait flag as kube-proxy gives it (1.4.21 takes no seconds)
            # one planner per node and plan: the node's facts and backup dir never sit on the
            # step (a module-level singleton another plan may be using at the same time)
            planner = _NodeFirewall(self.name, (node_iptables_kind(diagnosis, node) == "single",
                                                iptables_wait(facts), iptables_restore_wait(facts)),
                                    facts, bdir)
            a, nts = planner._firewall(node, firewall, bdir, nid, rb)
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


class _NodeFirewall:
    """The firewall part of one node's plan, made for that node and plan only (HostNetworkStep
    is a module-level singleton: what it planned with must not be shared between plans)."""

    def __init__(self, name: str, ipt: tuple[bool, str, str], facts: Any, bdir: str) -> None:
        self.name = name
        # (one plain `iptables`, its wait flag, iptables-restore's) of the node
        self._ipt = ipt
        self._facts = facts  # the opt-in deletions' rollbacks: each rule's place
        self._bdir = bdir  # firewalld: which permanent changes the fix made

    def _firewall(self, node: str, items: list[tuple[Finding, FirewallAcceptsData]], bdir: str,
                  nid: Any, rb: Any) -> tuple[list[Action], list[str]]:
        """Default: ACCEPT exactly the cluster flows the firewall drops, ahead of the drop, in the
        same backend/table (firewalld: a zone change when firewalld runs). Opt-in alternatives:
        delete the rule / set the policy to ACCEPT."""
        actions: list[Action] = []
        notes: list[str] = []
        accepts: dict[str, tuple[Finding, dict[str, Any]]] = {}
        rules: dict[str, tuple[Finding, dict[str, Any]]] = {}
        fw_running, fw_zone = False, None
        for f, d in items:
            drop = d if isinstance(d, FirewallDropData) else None
            fw = drop.firewalld if drop is not None else {}
            fw = fw if isinstance(fw, dict) else {}
            if fw.get("running"):
                fw_running = True
                fw_zone = fw_zone or fw.get("zone")
            for a in d.accepts:
                if isinstance(a, dict):
                    accepts.setdefault(repr(sorted((k, str(v)) for k, v in a.items()
                                                   if k not in ("describe",))), (f, a))
            for r in (drop.rules if drop is not None else ()):
                if isinstance(r, dict):
                    rules.setdefault(repr(sorted((k, str(v)) for k, v in r.items()
                                                 if k in ("backend", "family", "table", "chain",
                                                          "rule", "handle", "kind"))), (f, r))
        done: set[str] = set()
        for f, a in accepts.values():
            act = self._accept_action(node, f, a, fw_running, fw_zone or "public", nid, rb, notes)
            if act is not None and act.command not in done:
                done.add(act.command)
                actions.append(act)
        for _f, d in items:
            if isinstance(d, UnderlayBlockedData) and not d.accepts:
                notes.append(f"{node}: flannel's VXLAN (udp/{d.port}) to/from this node "
                             "is dropped outside the nodes' host firewalls (a cloud security group, "
                             "a network ACL, the MTU): nothing to change on the node; open the port "
                             "between the nodes there")
        # iptables-nft's raw table is read from the nft ruleset only (its rules in nft's text,
        # no iptables spec): said, never changed
        nft_raw = {k: v for k, v in rules.items() if v[1].get("from_nft")}
        for _f, r in nft_raw.values():
            ipt = "ip6tables" if r.get("family") == "ip6" else "iptables"
            notes.append(f"{node}: iptables-nft's {r.get('table')} table drops cluster traffic "
                         f"({r.get('rule')}, chain {r.get('chain')}): read from the nft ruleset "
                         "only, so no exact iptables rule is known and nothing is planned; "
                         f"see it with `{ipt}-nft -t {r.get('table')} -S {r.get('chain')}` and "
                         f"remove or narrow it by hand")
        rules = {k: v for k, v in rules.items() if k not in nft_raw}
        if rules and not accepts:
            notes.append(f"{node}: no narrow ACCEPT is known for these firewall rules; only the "
                         "opt-in alternatives (delete the rule / accept by policy) are offered")
        opt = self._opt_in_removals(node, list(rules.values()), bdir, notes)
        actions.extend(opt)
        if accepts:
            flows = sorted({str(a.get("flow")) for _, a in accepts.values()})
            notes.append(f"{node}: the firewall stays; only the cluster flows it drops are "
                         f"accepted ({', '.join(flows)}). Opt-in alternative: delete the "
                         "dropping rule / set the policy to ACCEPT (opens everything else too)")
        return actions, notes

    def _binary(self, ipt: str, backend: str) -> str:
        from clusterfix_tui.core.fixes.iptables import iptables_tool

        return iptables_tool(ipt, backend, self._ipt[0])

    def _tool(self, ipt: str, backend: str, table: str) -> str:
        return " ".join(x for x in (self._binary(ipt, backend), self._ipt[1], f"-t {q(table)}")
                        if x)

    def _accept_action(self, node: str, f: Finding, a: dict[str, Any], fw_running: bool,
                       zone: str, nid: Any, rb: Any, notes: list[str]) -> Action | None:
        backend = str(a.get("backend") or "")
        table, chain = str(a.get("table") or ""), str(a.get("chain") or "")
        flow = str(a.get("flow") or "")
        what = str(a.get("describe") or flow)
        if not (_NAME_RE.match(table) and _NAME_RE.match(chain)):
            notes.append(f"{node}: accept for {flow} in an odd table/chain {table!r}/{chain!r}; "
                         "not planned")
            return None
        if backend == "nft-native" and table == "firewalld" and fw_running:
            return self._firewalld_action(node, f, a, zone, nid, rb, notes)
        if backend in _BACKENDS:
            spec = [str(t) for t in (a.get("spec") or ())]
            if not spec or spec[-2:] != ["-j", "ACCEPT"]:
                notes.append(f"{node}: accept for {flow} has no usable rule spec; not planned")
                return None
            ipt = "ip6tables" if a.get("family") == "ip6" else "iptables"
            tool = self._tool(ipt, backend, table)
            body = " ".join(q(t) for t in spec)
            ident = nid()
            if table != "filter":
                return self._early_accept(node, f, a, tool, body, spec, ident, rb)
            return FixAction(
                id=ident, target=node, kind="shell",
                command=(f"{tool} -C {q(chain)} {body} 2>/dev/null || "
                         f"{tool} -I {q(chain)} 1 {body}"),
                why=f"the firewall drops {what}: accept exactly that at the top of "
                    f"{backend} {table} {chain}, ahead of the dropping rule/policy "
                    f"(which stays)",
                finding_codes=(f.code,),
                risk=f"opens {what} on this node, nothing else",
                rollback=rb("", f"{tool} -D {q(chain)} {body}",
                            f"remove the ACCEPT for {flow} again (by its exact spec)"),
                precondition=pre.absent_else_done(
                    f"{tool} -C {q(chain)} {body} 2>/dev/null",
                    f"no ACCEPT for {flow} in {backend} {table} {chain} yet",
                    f"the ACCEPT for {flow} is in {backend} {table} {chain} already"),
                change={"what": f"{backend} {table} {chain}", "before": None,
                        "after": "-I " + chain + " 1 " + " ".join(spec)},
            )
        if backend == "nft-native":
            fam = str(a.get("family") or "")
            expr = [str(t) for t in (a.get("expr") or ())]
            if fam not in ("ip", "ip6", "inet") or not expr or "accept" not in expr:
                notes.append(f"{node}: nft accept for {flow} lacks family/expression; not planned")
                return None
            ref = f"{q(fam)} {q(table)} {q(chain)}"
            # as `nft list` prints it: a host prefix without its /32 (/128)
            want = " ".join(re.sub(r"/(?:32|128)$", "", t)
                            if re.fullmatch(r"[0-9a-fA-F:.]+/\d+", t) else t for t in expr)
            handles = (f"nft -a list chain {ref} | CFX_WANT={q(want)} awk "
                       + q('{ l = $0; sub(/^[ \t]+/, "", l); n = split(l, p, " # handle "); '
                           'if (n == 2 && p[1] == ENVIRON["CFX_WANT"]) print p[2] }'))
            ident = nid()
            return FixAction(
                id=ident, target=node, kind="shell",
                command=(f"if [ -n \"$({handles})\" ]; then :; else "
                         f"nft insert rule {ref} {' '.join(q(t) for t in expr)}; fi"),
                why=f"the firewall drops {what}: accept exactly that at the top of nft {fam} "
                    f"{table} {chain}, ahead of the dropping rule/policy (which stays)",
                finding_codes=(f.code,),
                risk=f"opens {what} on this node, nothing else"
                     + (" (firewalld is not running: its table is as it left it; a firewalld "
                        "start/reload rebuilds the table without this rule)"
                        if table == "firewalld" else ""),
                rollback=rb("", f"hs=$({handles}); [ -n \"$hs\" ] || echo "
                                f"{q('clusterfix: the accept is not there (already removed)')} >&2; "
                                f"for h in $hs; do nft delete rule {ref} handle \"$h\"; done",
                            f"delete the inserted accept for {flow}: its handle is re-read at "
                            "rollback time from its exact text"),
                precondition=pre.absent_else_done(
                    f"[ -n \"$({handles})\" ]",
                    f"no accept for {flow} in nft {fam} {table} {chain} yet",
                    f"the accept for {flow} is in nft {fam} {table} {chain} already"),
                change={"what": f"nft {fam} {table} {chain}", "before": None, "after": want},
            )
        notes.append(f"{node}: accept for {flow} in unknown backend {backend!r}; not planned")
        return None

    def _early_accept(self, node: str, f: Finding, a: dict[str, Any], tool: str, body: str,
                      spec: list[str], ident: str, rb: Any) -> Action | None:
        """The accept for a flow a raw/mangle table drops: right before the dropping rule (at
        its position, which must still hold that exact rule: `iptables -S CHAIN` lists the
        chain's -P/-N line first), matching what that rule drops of the flow; for a policy
        DROP, appended to the base chain. Rollback: -D by the exact spec."""
        table, chain = str(a.get("table")), str(a.get("chain"))
        flow, what = str(a.get("flow") or ""), str(a.get("describe") or a.get("flow") or "")
        backend = str(a.get("backend"))
        if a.get("append"):
            command = f"{tool} -C {q(chain)} {body} 2>/dev/null || {tool} -A {q(chain)} {body}"
            where = f"at the end of {backend} {table} {chain}, ahead of its DROP policy"
            after = "-A " + chain + " " + " ".join(spec)
        else:
            before = str(a.get("before") or "")
            if not before or "\n" in before:
                return None
            # the dropping rule's place is found when the action runs (an accept planned
            # before this one moved it down): its first line in `-S CHAIN`, less the -P/-N line
            find = (f"{tool} -S {q(chain)} | CFX_RULE={q(before)} awk "
                    + q('$0 == ENVIRON["CFX_RULE"] { print NR - 1; exit }'))
            command = (f"{tool} -C {q(chain)} {body} 2>/dev/null || {{ n=$({find}); "
                       f"[ -n \"$n\" ] && [ \"$n\" -ge 1 ] || {{ echo "
                       f"{q(f'the dropping rule is no longer in {table} {chain}; not inserted')} >&2; "
                       f"exit 4; }}; {tool} -I {q(chain)} \"$n\" {body}; }}")
            where = (f"right before the dropping rule of {backend} {table} {chain} "
                     f"({before}), matching only what it drops of that flow")
            after = f"-I {chain} <before: {before}> " + " ".join(spec)
        return FixAction(
            id=ident, target=node, kind="shell", command=command,
            why=f"the {table} table drops {what} before the filter table is asked: accept it "
                f"{where} (the dropping rule/policy stays)",
            finding_codes=(f.code,),
            risk=f"opens {what} in {table} on this node, nothing else; every other packet meets "
                 f"the {table} rules as before",
            rollback=rb("", f"{tool} -D {q(chain)} {body}",
                        f"remove the ACCEPT for {flow} again (by its exact spec)"),
            precondition=pre.absent_else_done(
                f"{tool} -C {q(chain)} {body} 2>/dev/null",
                f"no ACCEPT for {flow} in {backend} {table} {chain} yet",
                f"the ACCEPT for {flow} is in {backend} {table} {chain} already"),
            change={"what": f"{backend} {table} {chain}", "before": None, "after": after},
        )

    def _firewalld_action(self, node: str, f: Finding, a: dict[str, Any], zone: str, nid: Any,
                          rb: Any, notes: list[str]) -> Action | None:
        """firewalld runs: change its zone (runtime + permanent), never its table behind its back
        (a reload would drop a raw nft rule, and firewalld owns the table)."""
        flow, hook = str(a.get("flow") or ""), str(a.get("hook") or "")
        what = str(a.get("describe") or flow)
        if not _NAME_RE.match(zone):
            notes.append(f"{node}: firewalld zone {zone!r} is not a plain name; not planned")
            return None
        expr = [str(t) for t in (a.get("expr") or ())]
        if hook == "input" and "dport" in expr:
            i = expr.index("dport")
            proto, port = expr[i - 1], expr[i + 1]
            if proto not in ("tcp", "udp") or not re.fullmatch(r"\d{1,5}(-\d{1,5})?", port):
                return None
            arg, z = f"--add-port={port}/{proto}", zone
        elif hook == "forward" and ("saddr" in expr or "daddr" in expr):
            i = expr.index("saddr") if "saddr" in expr else expr.index("daddr")
            cidr = expr[i + 1]
            if not re.fullmatch(r"[0-9a-fA-F:./]{3,64}", cidr):
                return None
            arg, z = f"--add-source={cidr}", "trusted"
        else:
            notes.append(f"{node}: firewalld drops {what}; open it with a firewalld policy "
                         "(not planned)")
            return None
        undo = arg.replace("--add-", "--remove-")
        query = arg.replace("--add-", "--query-")
        # the permanent config may hold it already (an admin's, not reloaded): added only when
        # missing, and a marker says so; the rollback removes from the permanent config only
        # what the fix added there (it removed the admin's entry too)
        marker = (f"{self._bdir}/firewalld-{re.sub(r'[^0-9A-Za-z.]+', '_', z + arg)}"
                  ".permanent-added")
        return FixAction(
            id=nid(), target=node, kind="shell",
            command=(f"firewall-cmd --zone={q(z)} {q(arg)} && "
                     f"if firewall-cmd --permanent --zone={q(z)} {q(query)} >/dev/null 2>&1; "
                     f"then :; else firewall-cmd --permanent --zone={q(z)} {q(arg)} && "
                     f"mkdir -p -m 700 {q(self._bdir)} && : > {q(marker)}; fi"),
            why=f"firewalld drops {what}: open exactly that in zone {z} (runtime and permanent; "
                "firewalld owns its nft table and would drop a raw rule on its next reload)",
            finding_codes=(f.code,),
            risk=f"zone {z} accepts {what}",
            rollback=rb("", f"firewall-cmd --zone={q(z)} {q(undo)}; "
                            f"if [ -e {q(marker)} ]; then firewall-cmd --permanent "
                            f"--zone={q(z)} {q(undo)} && rm -f -- {q(marker)}; fi",
                        f"remove {arg[6:]} from zone {z} again (from the permanent config "
                        "only when the fix added it there)"),
            change={"what": f"firewalld zone {z}", "before": None, "after": arg},
            precondition=pre.absent_else_done(
                f"firewall-cmd --zone={q(z)} {q(arg.replace('--add-', '--query-'))} "
                ">/dev/null 2>&1",
                f"zone {z} does not have {arg[6:]} yet", f"zone {z} has {arg[6:]} already"),
        )

    def _reinsert(self, ident: str, orb: Any, tool: str, backend: str, r: dict[str, Any],
                  table: str, chain: str, restore: str) -> Action:
        """The rollback of an opt-in iptables rule deletion: the rule inserted again at its
        number, when the chain still reads around it as the plan saw it (iptables.py
        iptables_reinsert_command); the rule's place not known from the facts: the saved table
        restored whole (which also undoes whatever else changed in that table since)."""
        from clusterfix_tui.core.fixes.iptables import (
            iptables_reinsert_command,
            iptables_rule_place,
        )

        spec = str(r.get("rule") or "")
        place = iptables_rule_place(self._facts, backend, r.get("family"), table, chain, spec)
        if place is None:
            return orb(ident, restore, f"restore the saved {backend} {table} table")
        return orb(ident, iptables_reinsert_command(tool, chain, spec, place, restore),
                   f"insert the rule again at its place ({chain} rule {place[0]}), when the "
                   "chain still reads around it as the plan saw it")

    def _nft_readd(self, ident: str, orb: Any, fam: str, tab: str, ch: str, handle: int,
                   restore: str, saved: str) -> Action:
        """The rollback of an opt-in nft rule deletion: the rule re-added at its place in the
        chain, found again by its neighbours' texts (iptables.py nft_readd_command); its text or
        place not known exactly: the saved table restored whole (which also undoes whatever
        else changed in that table since)."""
        from clusterfix_tui.core.fixes.iptables import (
            nft_neighbours,
            nft_readd_command,
            nft_rule_text,
        )

        text = nft_rule_text(self._facts, fam, tab, ch, handle)
        place = nft_neighbours(self._facts, fam, tab, ch, handle) if text else None
        if text is None or place is None:
            return orb(ident, restore, f"restore the saved nft table {fam} {tab} (atomically)")
        return orb(ident, nft_readd_command(fam, tab, ch, text, place, saved),
                   "re-add the rule at its place in the chain (after the rule that was before "
                   "it, else before the one after it, found again by their text)")

    def _opt_in_removals(self, node: str, rules: list[tuple[Finding, dict[str, Any]]],
                         bdir: str, notes: list[str]) -> list[Action]:
        """Opt-in alternatives: delete each dropping rule / set each dropping policy to ACCEPT."""
        actions: list[Action] = []
        n = 0

        def oid(name: str) -> str:
            nonlocal n
            n += 1
            return opt_in_id(self.name, node, f"{name}-{n}")

        def orb(ident: str, command: str, why: str) -> Action:
            return Action(id=ident + ":rollback", target=node, kind="shell", command=command,
                          why=why)

        for f, r in rules:
            backend = str(r.get("backend") or "")
            table = str(r.get("table") or "filter")
            chain = str(r.get("chain") or "")
            kind = str(r.get("kind") or "rule")
            owner = daemon_owner(backend, table, chain)
            if owner is not None:
                what = (f"the {chain} policy" if kind == "policy"
                        else repr(str(r.get("rule") or r.get("text") or "")))
                notes.append(f"{node}: {what} is in {owner}'s own "
                             + (f"chain {chain}" if backend in _BACKENDS else
                                f"nft table {r.get('family') or '?'} {table}")
                             + f": it is never deleted or changed here ({owner} re-creates it or "
                             f"fights the change); change it through {owner}'s configuration")
                continue
            if backend in _BACKENDS:
                if not _NAME_RE.match(table) or (chain and not _NAME_RE.match(chain)):
                    notes.append(f"{node}: rule in an odd table/chain {table!r}/{chain!r}; "
                                 "not planned")
                    continue
                ipt = "ip6tables" if r.get("family") == "ip6" else "iptables"
                tool = self._tool(ipt, backend, table)
                binary = self._binary(ipt, backend)
                if kind == "policy":
                    ident = oid(f"policy-{backend}-{chain}")
                    actions.append(FixAction(
                        id=ident, target=node, kind="shell", command=f"{tool} -P {q(chain)} ACCEPT",
                        why=f"(opt-in alternative to the narrow ACCEPTs) set the {backend} "
                            f"{table} {chain} policy to ACCEPT",
                        finding_codes=(f.code,), opt_in=True,
                        risk=f"{chain} no longer drops anything by default: the host firewall's "
                             "default-deny is gone",
                        rollback=orb(ident, f"{tool} -P {q(chain)} DROP",
                                     f"put the {chain} policy back to DROP"),
                        change={"what": f"{backend} {table} {chain} policy", "before": "DROP",
                                "after": "ACCEPT"},
                        precondition=pre.exists_else_done(
                            f"{tool} -S {q(chain)} 2>/dev/null | grep -qx -- "
                            f"{q(f'-P {chain} DROP')}",
                            f"the {chain} policy is still DROP", f"the {chain} policy is not DROP"),
                    ))
                    continue
                argv = rule_argv(str(r.get("rule") or ""), "-D")
                if argv is None or (chain and argv[1] != chain):
                    notes.append(f"{node}: cannot parse the rule {r.get('rule')!r}; remove it by "
                                 "hand if you want it gone")
                    continue
                saved = f"{bdir}/firewall-{ipt}-{backend}-{table}.rules"
                tmp = saved + ".tmp"
                ident = oid(f"delete-{backend}-{argv[1]}")
                actions.append(FixAction(
                    id=ident, target=node, kind="shell",
                    command=(f"mkdir -p -m 700 {q(bdir)} && {{ [ -e {q(saved)} ] || "
                             f"{{ {binary}-save -t {q(table)} > {q(tmp)} && "
                             f"mv -f -- {q(tmp)} {q(saved)}; }}; }} && "
                             f"{tool} " + " ".join(q(t) for t in argv)),
                    why=f"(opt-in alternative to the narrow ACCEPTs) delete this rule from "
                        f"{backend} {table} {argv[1]} (the table is saved first)",
                    finding_codes=(f.code,), opt_in=True,
                    risk="the node no longer drops that traffic at all, cluster or not: review "
                         "your firewall policy",
                    rollback=self._reinsert(ident, orb, tool, backend, r, table, argv[1],
                                            " ".join(x for x in (f"{binary}-restore",
                                                                 self._ipt[2]) if x)
                                            + f" -T {q(table)} < {q(saved)}"),
                    change={"what": f"{backend} {table} {argv[1]}", "before": r.get("rule"),
                            "after": "removed"},
                    precondition=pre.exists_else_done(
                        f"{tool} " + " ".join(q(t) for t in ["-C", *argv[1:]]) + " 2>/dev/null",
                        f"the rule is still in {backend} {table} {argv[1]}",
                        "the rule is gone already"),
                ))
            elif backend == "nft-native" or r.get("handle") is not None:
                fam, tab = str(r.get("family") or "inet"), str(r.get("table") or "")
                ch = str(r.get("chain") or "")
                if not (fam in ("ip", "ip6", "inet", "arp", "bridge", "netdev")
                        and _NAME_RE.match(tab) and _NAME_RE.match(ch)):
                    notes.append(f"{node}: nft rule {r.get('text')!r} lacks a usable "
                                 "family/table/chain; not planned")
                    continue
                ref = f"{q(fam)} {q(tab)} {q(ch)}"
                if kind == "policy":
                    ident = oid(f"policy-nft-{ch}")
                    actions.append(FixAction(
                        id=ident, target=node, kind="shell",
                        command=f"nft chain {ref} '{{ policy accept; }}'",
                        why=f"(opt-in alternative to the narrow accepts) set the policy of nft "
                            f"{fam} {tab} {ch} to accept",
                        finding_codes=(f.code,), opt_in=True,
                        risk="that chain no longer drops anything by default",
                        rollback=orb(ident, f"nft chain {ref} '{{ policy drop; }}'",
                                     "put the chain's policy back to drop"),
                        change={"what": f"nft {fam} {tab} {ch} policy", "before": "drop",
                                "after": "accept"},
                        # re-read when it runs: a policy already accept is left (and its
                        # rollback, which would set drop, never runs)
                        precondition=pre.exists_else_done(
                            f"nft -j list chain {ref} 2>/dev/null | grep -Eq "
                            + q('"policy": ?"drop"'),
                            f"the policy of nft {fam} {tab} {ch} is still drop",
                            f"the policy of nft {fam} {tab} {ch} is not drop"),
                    ))
                    continue
                handle = str(r.get("handle") or "")
                if not handle.isdigit():
                    notes.append(f"{node}: nft rule {r.get('text')!r} has no usable handle; "
                                 "remove it by hand if you want it gone")
                    continue
                saved = f"{bdir}/firewall-nft-{fam}-{tab}.nft"
                tmp = saved + ".tmp"
                frag = str(r.get("json") or "")
                # the handle is re-read at apply time: the rule must still be the one diagnosed
                moved = (f"clusterfix: handle {handle} in {fam} {tab} {ch} is no longer the "
                         "diagnosed rule; re-run diagnose")
                guard = (f"nft -j -a list chain {ref} | grep -q -F -e {q(frag)} || "
                         f"{{ echo {q(moved)} >&2; exit 4; }}; " if frag else "")
                restore = (f"{{ printf 'flush table %s %s\\n' {q(fam)} {q(tab)}; cat {q(saved)}; }}"
                           " | nft -f -")
                ident = oid(f"delete-nft-{ch}")
                actions.append(FixAction(
                    id=ident, target=node, kind="shell",
                    command=(f"{guard}mkdir -p -m 700 {q(bdir)} && {{ [ -e {q(saved)} ] || "
                             f"{{ nft list table {q(fam)} {q(tab)} > {q(tmp)} && "
                             f"mv -f -- {q(tmp)} {q(saved)}; }}; }} && "
                             f"nft delete rule {ref} handle {q(handle)}"),
                    why=f"(opt-in alternative to the narrow accepts) delete this rule from nft "
                        f"{fam} {tab} {ch} (the table is saved first)",
                    finding_codes=(f.code,), opt_in=True,
                    risk="the node no longer drops that traffic at all: review your firewall "
                         "policy",
                    rollback=self._nft_readd(ident, orb, fam, tab, ch, int(handle), restore,
                                             saved),
                    change={"what": f"nft {fam} {tab} {ch}", "before": r.get("text"),
                            "after": "removed"},
                    precondition=pre.shell(
                        f"nft -a list chain {ref} 2>/dev/null | grep -q -E "
                        f"{q(f'# handle {handle}$')} || {{ echo {q('the rule is gone already')}; "
                        f"exit 3; }}; " + (f"nft -j -a list chain {ref} | grep -q -F -e {q(frag)} "
                                           f"&& exit 0; echo {q(moved)}; exit 4" if frag
                                           else "exit 0"),
                        f"handle {handle} of nft {fam} {tab} {ch} still holds the diagnosed rule"),
                ))
            else:
                notes.append(f"{node}: rule with unknown backend {backend!r}; not planned")
        return actions


STEP = HostNetworkStep()
