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
"""

from __future__ import annotations

from typing import Any

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
        _same(f"node {node} namespaces (node restarted)", then.get("boot_scope"),
              now.get("boot_scope"), out)
    return out
