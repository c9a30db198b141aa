"""Who a session talked to, for the journal, and whether a later `rollback` talks to the same.

The cluster is identified by its API server, the kubeconfig context and the UID of the
kube-system Namespace (created once per cluster; a rebuilt or other cluster has another UID even
behind the same address). A node is identified by the address and user used, the host key its
sshd presented, and its boot identity:

- `boot_id` (/proc/sys/kernel/random/boot_id): new on every kernel boot. On a real node this is
  what says "rebooted".
- `boot_scope`: the inode numbers of the network and mount namespaces the node's commands run in
  (/proc/self/ns/net, /proc/self/ns/mnt). On a real host these are the initial namespaces, whose
  inode numbers are fixed constants of the kernel: they never differ between sessions, so they
  add no false alarm. Where a "node" is a set of namespaces on a shared kernel (the lab, a
  node-in-container), boot_id is the host's and never changes when the node restarts; new
  namespaces do, so a restarted node is seen there too.

The boot identity compared is `boot_id` + `boot_scope`. Pure: no I/O of its own; the shell and
the API are passed in.

A rollback undoes changes made in the boot the journal recorded. What a change left on disk (a
file outside /run, /proc, /sys, /dev, /tmp) is still there after a reboot; a runtime change (a
sysctl written with `sysctl -w`, a loaded module, an iptables rule, a route, a link) is not: the
node's state now comes from its boot configuration and what ran since, and putting back the value
of the earlier boot could break it again. So the rollback of a change that does not survive a
reboot carries a same-boot precondition (`guard_boot_bound`): checked right before it runs, on a
node whose boot identity differs it answers "changed" and the action is skipped with that reason
(what `rollback --force` relies on). An action whose kind of change is unknown counts as runtime:
skipped rather than run blind.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from clusterfix_tui.core.model import Action, Plan, Precondition

IDENTITY_SCRIPT = (
    "echo boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); "
    "echo net=$(readlink /proc/self/ns/net 2>/dev/null); "
    "echo mnt=$(readlink /proc/self/ns/mnt 2>/dev/null)"
)


def cluster_identity(api: Any) -> dict[str, Any]:
    """server, context and kube_system_uid (with `error` when one could not be read)."""
    out: dict[str, Any] = {}
    try:
        desc = dict(api.describe() or {})
        out["server"] = desc.get("server")
        out["context"] = desc.get("context")
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"describe: {exc}"
    try:
        ns = api.get_namespace("kube-system") or {}
        out["kube_system_uid"] = (ns.get("metadata") or {}).get("uid")
    except Exception as exc:  # noqa: BLE001
        out["kube_system_uid"] = None
        out["error"] = f"kube-system namespace: {exc}"
    return out


def node_identity(shells: Any, shell: Any, node: str, address: str | None) -> dict[str, Any]:
    """Address, user, host key and boot identity of a connected node."""
    out: dict[str, Any] = {"node": node, "address": address}
    if getattr(shell, "transport", "ssh") == "local":
        out.update(transport="local", host_key="local", user="local")
    else:
        ident = getattr(shells, "node_identity", None)
        if callable(ident):
            try:
                out.update(ident(node))
            except Exception as exc:  # noqa: BLE001
                out["error"] = f"connection identity: {exc}"
    try:
        res = shell.run(IDENTITY_SCRIPT, timeout=15)
        vals = dict(line.split("=", 1) for line in (res.stdout or "").splitlines() if "=" in line)
        out["boot_id"] = vals.get("boot_id", "").strip() or None
        scope = [f"{k}:{vals.get(k, '').strip()}" for k in ("net", "mnt") if vals.get(k, "").strip()]
        out["boot_scope"] = " ".join(scope) or None
    except Exception as exc:  # noqa: BLE001
        out["boot_id"] = out["boot_scope"] = None
        out["error"] = f"boot identity: {exc}"
    return out


def recorded(events: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, dict]]:
    """The cluster identity and the first identity of each node recorded in a journal."""
    cluster: dict[str, Any] | None = None
    nodes: dict[str, dict[str, Any]] = {}
    for ev in events:
        t = ev.get("type") or ev.get("event")
        if t == "cluster_identity" and cluster is None:
            cluster = dict(ev.get("identity") or {})
        elif t == "node_identity":
            ident = dict(ev.get("identity") or {})
            nodes.setdefault(str(ident.get("node")), ident)
    return cluster, nodes


def _same(label: str, then: Any, now: Any, out: list[str]) -> None:
    if then and then != now:
        out.append(f"{label}: journal {then}, now {now or 'unknown'}")


def differences(then_cluster: dict[str, Any] | None, now_cluster: dict[str, Any] | None,
                then_nodes: dict[str, dict], now_nodes: dict[str, dict]) -> list[str]:
    """What differs between the journal's identities and the ones seen now (empty: the same).
    A value the journal did not record is not compared; one it recorded must match."""
    out: list[str] = []
    if then_cluster:
        now_c = now_cluster or {}
        _same("cluster API server", then_cluster.get("server"), now_c.get("server"), out)
        _same("cluster kube-system namespace UID (another cluster)",
              then_cluster.get("kube_system_uid"), now_c.get("kube_system_uid"), out)
    for node, then in sorted(then_nodes.items()):
        now = now_nodes.get(node)
        if now is None:
            continue  # not reached now: each action's own command fails and says so
        _same(f"node {node} host key (changed key)", then.get("host_key"), now.get("host_key"),
              out)
        _same(f"node {node} boot_id (rebooted)", then.get("boot_id"), now.get("boot_id"), out)
        _same(f"node {node} namespaces (rebooted: the node restarted)", then.get("boot_scope"),
              now.get("boot_scope"), out)
    return out


_VOLATILE = ("/run/", "/proc/", "/sys/", "/dev/", "/tmp/", "/var/run/")


def survives_reboot(action: Any) -> bool:
    """Whether what a (forward) action changed is kept on disk across a reboot: its `change`
    names a file ("/etc/...", "file /etc/...") outside tmpfs/kernel paths. Anything else (a
    sysctl, module, rule, route, link, pod) or unknown: no."""
    change = getattr(action, "change", None) or {}
    what = str(change.get("what") or "").strip()
    if what.startswith("file "):
        what = what[5:].strip()
    return what.startswith("/") and not what.startswith(_VOLATILE) and ".." not in what


def boot_token(ident: dict[str, Any]) -> str | None:
    """boot_id and boot_scope as one string, as BOOT_TOKEN_SCRIPT prints it (None: not recorded)."""
    if not ident.get("boot_id") or not ident.get("boot_scope"):
        return None
    return f"{ident['boot_id']} {ident['boot_scope']}"


# prints what boot_token() gives for node_identity(): boot_id, then "net:X mnt:Y" (empty ones left out)
BOOT_TOKEN_SCRIPT = (
    'b=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null); '
    'n=$(readlink /proc/self/ns/net 2>/dev/null); m=$(readlink /proc/self/ns/mnt 2>/dev/null); '
    's=""; [ -n "$n" ] && s="net:$n"; [ -n "$m" ] && s="${s:+$s }mnt:$m"; now="$b $s"'
)


def same_boot_precondition(node: str, ident: dict[str, Any], rest: Precondition | None = None
                           ) -> Precondition | None:
    """Holds while the node is still in the boot the journal recorded (then `rest`, if any,
    decides); a new boot identity is "changed" (exit 4), with the reason."""
    token = boot_token(ident)
    if token is None:
        return rest
    q = shlex.quote
    said = (q(f"{node} rebooted since this change was made (boot identity then {token}, now ")
            + '"$now"' + q("): the runtime state it changed did not survive the reboot; "
                           "not rolled back"))
    script = (f"{BOOT_TOKEN_SCRIPT}; if [ \"$now\" != {q(token)} ]; then "
              f"echo {said}; exit 4; fi; " + (rest.command if rest is not None else "exit 0"))
    expect = f"{node} is still in the boot the journal recorded"
    if rest is not None and rest.kind == "shell":
        return dataclasses.replace(rest, command=script, expect=f"{expect}; {rest.expect}")
    if rest is not None:  # an API check cannot be combined with a shell one: keep it as is
        return rest
    return Precondition(kind="shell", command=script, expect=expect)


def guard_boot_bound(plan: Plan, forward_of: dict[str, Action],
                     then_nodes: dict[str, dict[str, Any]]) -> Plan:
    """The rollback plan with a same-boot precondition on every shell action, on a node whose
    boot identity the journal recorded, that undoes a change which does not survive a reboot.
    forward_of: rollback action id -> the forward action it undoes."""
    out: list[Action] = []
    changed = False
    for a in plan.actions:
        fwd = forward_of.get(a.id)
        ident = then_nodes.get(a.target)
        if a.kind == "shell" and ident and (fwd is None or not survives_reboot(fwd)):
            pre = same_boot_precondition(a.target, ident, a.precondition)
            if pre is not a.precondition:
                a = dataclasses.replace(a, precondition=pre)
                changed = True
        out.append(a)
    return dataclasses.replace(plan, actions=tuple(out)) if changed else plan
