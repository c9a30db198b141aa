"""fix_worker_kubectl_config: make `kubectl get nodes` work on a worker without spreading admin keys.

For each node with WORKER_KUBECONFIG_BROKEN (docs/findings.md) the plan:
  1. backs up the worker's kubeconfig (`data.target`, default /root/.kube/config) into the
     step's backup directory, or records that it did not exist;
  2. writes the corrected kubeconfig, mode 600, atomically (temp file + mv):
     - "wrong-server": the same file with every `server:` set to the cluster's own API address
       (`data.expected_server`: the node's kubelet.conf, the other nodes' kubelet.conf, else what
       gather() reads from kube-public/cluster-info and the kubernetes Service endpoints; NEVER
       the workstation's kubeconfig server, often a tunnel, proxy path or public load balancer);
       the worker's own credentials are kept. Its precondition, run on the node right before the
       write, checks that the current server fails from the node AND the new one answers from the
       node with the node's CA (kubectl --server override): otherwise nothing is written;
     - "missing": a copy of the worker's own kubeconfig (kubelet.conf, from
       `data.source_candidates`) with the server set the same way;
  3. verifies `kubectl --kubeconfig TARGET get nodes` on the worker (read-only).
Rollback restores the backup (or removes the file when there was none).
Copying admin.conf (a cluster superuser credential) is never planned by default: it is an opt-in
action, with a warning about credential sprawl, and only when admin.conf is already on that node
(actions run on one node; the tool does not carry admin keys between nodes).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from clusterfix_tui.core.checks.kubeconfig import KubeconfigData
from clusterfix_tui.core.fixes import engine
from clusterfix_tui.core.fixes import preconditions as _pre
from clusterfix_tui.core.fixes.engine import (
    FixAction,
    action_id,
    backup_dir,
    node_backup_dir,
    opt_in_id,
    q,
)
from clusterfix_tui.core.model import Action, Finding, Plan, Precondition

CODES = ("WORKER_KUBECONFIG_BROKEN",)
DEFAULT_TARGET = "/root/.kube/config"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
# the worker's own credentials, best first (kubeadm: kubelet.conf is the node's identity)
OWN_SOURCES = ("/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/kubeconfig",
               "/etc/kubernetes/node.conf", "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
               "/var/lib/rancher/rke2/agent/kubelet.kubeconfig")
# an API server URL we are willing to write into a file: scheme, host (name, IPv4, [IPv6]), port,
# optional path. Anything else is refused (it is quoted either way; this is about correctness).
_SERVER_RE = re.compile(r"^https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/[\w./~-]*)?$")
# kubectl's errors that say the file's CA or client credentials are the problem (the server
# answered): only then is the node's own kubeconfig offered in its place
_CREDENTIAL_ERROR = re.compile(r"x509:|certificate|Unauthorized|must be logged in|forbidden",
                               re.IGNORECASE)
SPRAWL_WARNING = (
    "WARNING: copying admin.conf puts cluster-admin credentials (a superuser that can do anything "
    "in the cluster) on {node}: anyone with root there becomes cluster admin, and the key cannot "
    "be revoked short of rotating the cluster's admin certificate. Prefer the worker's own "
    "kubeconfig; use this only if you accept that credential sprawl."
)
# keep the `server:` prefix (indentation, list dash) and put the new URL after it; the URL comes
# in through the environment so awk never interprets it
_AWK_SET_SERVER = (
    '{ if (match($0, /^[ \\t]*-?[ \\t]*server:/)) print substr($0, 1, RLENGTH) " " '
    'ENVIRON["CFX_SERVER"]; else print }'
)


def valid_server(url: Any) -> bool:
    return isinstance(url, str) and bool(_SERVER_RE.match(url))


def _valid_path(path: Any) -> bool:
    return (isinstance(path, str) and path.startswith("/") and "\n" not in path
            and "\x00" not in path and posixpath.normpath(path) == path)


def _expected_server(diagnosis: Any, data: KubeconfigData, node: str = "") -> str | None:
    """The API address from the cluster's own view (docs/findings.md WORKER_KUBECONFIG_BROKEN):
    the finding's `expected_server` / `server_candidates` (the nodes' kubelet.conf), else what
    gather() read from kube-public/cluster-info and the kubernetes Service endpoints. Never the
    workstation's kubeconfig server (a tunnel, a proxy path or a public load balancer)."""
    if data.expected_server:
        return data.expected_server
    for c in data.server_candidates:
        if c.get("server"):
            return c["server"]
    extra = (getattr(diagnosis, "extra", None) or {}).get("worker_kubeconfig") or {}
    for c in extra.get("servers") or ():
        if isinstance(c, dict) and c.get("server"):
            return str(c["server"])
    return None


def one_server_script(target: str) -> str:
    """Shell: exit 4 when `target` names more than one distinct `server:` (a kubeconfig of several
    clusters, e.g. kubernetes.io's config-demo: the diagnosis read its first server only, kubectl
    uses its current-context's, and every `server:` of it would be rewritten)."""
    return (f"if [ \"$(grep -E '^[[:space:]]*-?[[:space:]]*server:' -- {q(target)} 2>/dev/null | "
            "sed -e 's/^[^:]*:[[:space:]]*//' -e 's/[[:space:]]*$//' | sort -u | wc -l)\" -gt 1 ]; "
            f"then echo {q(target + ' names several clusters (server: lines): not rewritten')}; "
            "exit 4; fi; ")


def verify_server_precondition(config: str, server: str, target: str, missing: bool,
                               one_server: bool = False) -> Precondition:
    """Read-only, on the node, right before the write: the worker's current server fails from
    the node (or the file is still missing) AND `server` answers from the node, TLS checked with
    the CA and credentials of `config` (kubectl's --server override). Exit 0 = write; 3 = the
    current file works already (nothing to do); 4 = the new server does not answer from here
    (or, with one_server, `target` names several clusters: its servers are not all rewritten)."""
    probe = "get --raw /version --request-timeout=5s >/dev/null 2>&1"
    first = (f"if [ -e {q(target)} ]; then echo {q(target + ' exists now')}; exit 4; fi; "
             if missing else
             f"if kubectl --kubeconfig {q(target)} {probe}; then "
             f"echo {q(target + ' answers from this node: not rewritten')}; exit 3; fi; ")
    script = (
        (one_server_script(target) if one_server else "")
        + "if ! command -v kubectl >/dev/null 2>&1; then "
        "echo 'no kubectl on the node: the servers cannot be checked from here'; exit 4; fi; "
        + first
        + f"if kubectl --kubeconfig {q(config)} --server {q(server)} {probe}; then exit 0; fi; "
        f"echo {q(server + ' does not answer from this node (TLS with the node CA): not written')}; "
        "exit 4")
    return _pre.shell(script, f"{'the file is missing' if missing else target + ' fails'} on the "
                      f"node and {server} answers from the node")


def backup_name(path: str) -> str:
    """The file name a path is backed up under (flat, inside the backup dir)."""
    return path.strip("/").replace("/", "_") or "root"


def backup_file_command(path: str, bdir: str) -> str:
    """Save `path` into bdir once (a re-run keeps the first, pre-fix copy); record its absence.
    A symlink (/root/.kube/config -> /etc/kubernetes/admin.conf, a common setup; the fix writes
    a file in its place) is recorded as the link it is (`.symlink`: its target as written).
    Each record is written beside its name and renamed into place: a copy cut short (disk full,
    a killed session) is never taken for the saved file by the next run, which copies again."""
    saved = f"{bdir}/{backup_name(path)}"
    link, tmp = saved + ".symlink", saved + ".tmp"
    return (
        f"mkdir -p -m 700 {q(bdir)} && "
        f"if [ -e {q(saved)} ] || [ -e {q(saved + '.absent')} ] || "
        f"[ -e {q(link)} ]; then :; "
        f"elif [ -L {q(path)} ]; then readlink -- {q(path)} > {q(tmp)} && "
        f"mv -f -- {q(tmp)} {q(link)}; "
        f"elif [ -e {q(path)} ]; then cp -p -- {q(path)} {q(tmp)} && mv -f -- {q(tmp)} {q(saved)}; "
        f"else : > {q(saved + '.absent')}; fi"
    )


def restore_file_command(path: str, bdir: str) -> str:
    """Put `path` back as it was before the fix: the symlink it was, the saved copy (renamed into
    place: a symlink at `path` is replaced, not followed), or no file if there was none."""
    saved = f"{bdir}/{backup_name(path)}"
    return (
        f"if [ -e {q(saved + '.symlink')} ]; then "
        f"cfx_t=$(cat -- {q(saved + '.symlink')}) && ln -sfn -- \"$cfx_t\" {q(path)}; "
        # copied next to it, then renamed over it: a symlink made at `path` since the fix is
        # replaced, never written through (cp would overwrite the file it points at), and an
        # interrupted restore leaves no half-written file
        f"elif [ -e {q(saved)} ]; then cp -p -- {q(saved)} {q(path + '.cfx-restore')} && "
        f"mv -f -- {q(path + '.cfx-restore')} {q(path)}; "
        f"elif [ -e {q(saved + '.absent')} ]; then rm -f -- {q(path)}; "
        f"else echo {q('clusterfix: no backup of ' + path + ' in ' + bdir)} >&2; false; fi"
    )


def write_kubeconfig_command(source: str, target: str, server: str | None) -> str:
    """Copy `source` to `target` (same file allowed) with mode 600, every `server:` set to
    `server` (when given), atomically."""
    tmp = target + ".cfx-new"
    parent = posixpath.dirname(target) or "/"
    if server is None:
        body = f"cp -- {q(source)} {q(tmp)}"
    else:
        body = f"CFX_SERVER={q(server)} awk {q(_AWK_SET_SERVER)} {q(source)} > {q(tmp)}"
    return (
        f"umask 077 && mkdir -p -m 700 {q(parent)} && {body} && chmod 600 {q(tmp)} && "
        f"mv -f -- {q(tmp)} {q(target)}"
    )


def verify_command(target: str) -> str:
    return f"kubectl --kubeconfig {q(target)} get nodes -o name --request-timeout=10s"


class WorkerKubeconfigStep:
    name = "worker_kubeconfig"
    title = "Worker kubeconfig"
    runbook_helper = "fix_worker_kubectl_config.sh"

    def gather(self, api: Any, diagnosis: Any) -> dict[str, Any]:
        """Read-only: the API address the cluster publishes for its own members
        (kube-public/cluster-info's kubeconfig, the default/kubernetes endpoints), for a finding
        whose nodes had no kubelet.conf to tell. Returns {"servers": [{"server", "source"}]}."""
        if not engine.findings_for(diagnosis, CODES):
            return {}
        servers: list[dict[str, str]] = []
        try:
            cm = api.get_configmap("kube-public", "cluster-info") or {}
            import yaml

            doc = yaml.safe_load(str((cm.get("data") or {}).get("kubeconfig") or "")) or {}
            for c in doc.get("clusters") or ():
                url = ((c or {}).get("cluster") or {}).get("server")
                if valid_server(url):
                    servers.append({"server": str(url), "source": "kube-public/cluster-info"})
        except Exception:  # noqa: BLE001 - an unreadable ConfigMap is just not a source
            pass
        try:
            from clusterfix_tui.core.checks.kubeconfig import endpoint_url

            for ep in api.list_endpoints("default"):
                if (ep.get("metadata") or {}).get("name") != "kubernetes":
                    continue
                for sub in ep.get("subsets") or ():
                    for a in sub.get("addresses") or ():
                        for p in sub.get("ports") or ():
                            url = endpoint_url(f"{a.get('ip')}:{p.get('port')}")
                            if url and valid_server(url):
                                servers.append({"server": url,
                                                "source": "the kubernetes Service endpoints"})
        except Exception:  # noqa: BLE001
            pass
        return {"servers": servers}

    def plan(self, diagnosis: Any) -> Plan:
        findings = engine.findings_for(diagnosis, CODES)
        if not findings:
            return engine.nothing_to_do(self, "kubectl works on every node that was checked")
        bdir = backup_dir(self.name, engine.plan_stamp())
        actions: list[Action] = []
        notes: list[str] = []
        for f in sorted(findings, key=lambda f: f.node):
            a, n = self._plan_node(diagnosis, f, node_backup_dir(bdir, f.node))
            actions.extend(a)
            notes.extend(n)
        return Plan(step=self.name, title=self.title, findings=tuple(findings),
                    actions=tuple(actions), notes=tuple(notes))

    def _plan_node(self, diagnosis: Any, f: Finding, bdir: str) -> tuple[list[Action], list[str]]:
        node, d = f.node, f.data_as(KubeconfigData)
        reason = d.reason
        target = d.target or DEFAULT_TARGET
        files: dict[str, Any] = d.files
        candidates = [c for c in d.source_candidates if _valid_path(c)]
        server = _expected_server(diagnosis, d, node)
        notes: list[str] = []
        actions: list[Action] = []
        if not _valid_path(target):
            return [], [(f"{node}: kubeconfig target {target!r} is not a plain absolute path; "
                         "nothing planned")]
        if server is not None and not valid_server(server):
            notes.append(f"{node}: the cluster's API address {server!r} is not a plain "
                         "http(s) URL; it is not written anywhere")
            server = None

        n = 0

        def nid() -> str:
            nonlocal n
            n += 1
            return action_id(self.name, node, n)

        restore = Action(id=f"{self.name}:{node}:restore", target=node, kind="shell",
                         command=restore_file_command(target, bdir),
                         why=f"put {target} back as it was before the fix")
        backup = FixAction(
            id=nid(), target=node, kind="shell", command=backup_file_command(target, bdir),
            why=f"save {target} (or record that it does not exist) before writing it",
            finding_codes=CODES, risk="none (writes the backup only)",
            rollback_note=f"the backup in {bdir} is kept; remove it by hand when no longer needed",
            change={"what": "backup", "before": None, "after": bdir},
        )
        own = next((c for c in OWN_SOURCES if c in candidates),
                   next((c for c in candidates if c not in (ADMIN_CONF, target)), None))
        current = files.get(target)
        write: FixAction | None = None
        if reason == "wrong-server" or (reason != "missing" and target in files and current
                                        and server and current != server):
            if server is None:
                notes.append(f"{node}: {target} points at {current or 'a wrong server'} but the "
                             "cluster's own API address is unknown (no kubelet.conf, cluster-info "
                             "or kubernetes endpoints); nothing written")
            else:
                write = FixAction(
                    id="", target=node, kind="shell",
                    command=write_kubeconfig_command(target, target, server),
                    why=f"{target} points at {current or 'a wrong server'}, which fails from "
                        f"{node}; set its server to {server} (the cluster's own address, checked "
                        "to answer from the node first), keeping the worker's own credentials",
                    finding_codes=CODES, risk="kubectl on this node talks to the new server",
                    rollback=restore,
                    change={"what": f"{target}: server", "before": current, "after": server},
                    precondition=verify_server_precondition(target, server, target, False,
                                                            one_server=True),
                )
        elif reason == "missing" or target not in files:
            if own is None:
                notes.append(f"{node}: no kubeconfig of the node's own (e.g. "
                             f"{OWN_SOURCES[0]}) to start from; {target} not written")
            else:
                write = FixAction(
                    id="", target=node, kind="shell",
                    command=write_kubeconfig_command(own, target, server),
                    why=f"{target} is missing: write it from the node's own kubeconfig {own}"
                        + (f" with the server set to {server}" if server else ""),
                    finding_codes=CODES,
                    risk=f"root's kubectl on this node acts with {own}'s (the node's) identity",
                    rollback=restore,
                    change={"what": target, "before": "missing",
                            "after": f"copy of {own}" + (f", server {server}" if server else "")},
                    precondition=(verify_server_precondition(own, server, target, True)
                                  if server else _pre.shell(
                        f"if [ -e {q(target)} ]; then echo {q(target + ' exists now')}; exit 4; "
                        "fi; exit 0", f"{target} is still missing")),
                )
        else:
            err = d.kubectl_error or f"exit {d.kubectl_rc}"
            notes.append(f"{node}: {target} already points at the right server but kubectl fails "
                         f"({err}): check its credentials (an expired client certificate?); "
                         "nothing planned by default")
            if own is not None and own != target and server is not None and \
                    _CREDENTIAL_ERROR.search(err):
                # its CA or client certificate is wrong (x509, expired, Unauthorized): the
                # node's own kubeconfig (kubelet's, rotated by kubelet) may be written instead,
                # an opt-in: it replaces the user's credentials with the node's identity
                actions.append(FixAction(
                    id=opt_in_id(self.name, node, "own-kubeconfig"), target=node, kind="shell",
                    command=backup_file_command(target, bdir) + " && "
                    + write_kubeconfig_command(own, target, server),
                    why=f"(opt-in) {target} fails with the right server ({err}): write it from "
                        f"the node's own kubeconfig {own} (server {server}), checked first to "
                        "answer from the node with that file's CA and credentials",
                    finding_codes=CODES,
                    risk=f"root's kubectl on this node acts with {own}'s (the node's) identity "
                         f"instead of the credentials in {target} (kept in the backup, put back "
                         "on rollback)",
                    rollback=restore, opt_in=True,
                    change={"what": target, "before": current,
                            "after": f"copy of {own}, server {server}"},
                    precondition=verify_server_precondition(own, server, target, False),
                ))
                notes.append(f"{node}: opt-in: write {target} from the node's own kubeconfig "
                             f"{own} (off by default: it replaces the credentials in {target})")

        if write is not None:
            actions.append(backup)
            actions.append(FixAction(**{**_fields(write), "id": nid()}))
            actions.append(Action(
                id=nid(), target=node, kind="shell", command=verify_command(target),
                why="check that kubectl works on the worker now", finding_codes=CODES,
                mutating=False, timeout=30.0,
            ))

        if ADMIN_CONF in candidates and target != ADMIN_CONF:
            # carries its own (idempotent) backup: it may be the only action approved
            actions.append(FixAction(
                id=opt_in_id(self.name, node, "admin-conf"), target=node, kind="shell",
                command=backup_file_command(target, bdir) + " && "
                + write_kubeconfig_command(ADMIN_CONF, target, None),
                why=f"(opt-in) use the cluster-admin kubeconfig {ADMIN_CONF} as {target}",
                finding_codes=CODES, risk=SPRAWL_WARNING.format(node=node),
                rollback=restore, opt_in=True,
                change={"what": target, "before": current, "after": f"copy of {ADMIN_CONF}"},
            ))
            notes.append((f"{node} is a control-plane node and holds {ADMIN_CONF} already: "
                          f"copying it to {target} (what kubeadm's instructions do) gives root's "
                          "kubectl cluster-admin there; spreads no key to another machine"
                          if d.control_plane else SPRAWL_WARNING.format(node=node))
                         + " (opt-in action, off by default)")
        return actions, notes


def _fields(action: FixAction) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(action, f.name) for f in dataclasses.fields(action)}


STEP = WorkerKubeconfigStep()
