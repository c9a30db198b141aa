"""A recorded, fake RepairSession for deterministic UI tests, snapshots and screenshot fallback.

It has the same blocking methods as clusterfix_tui.core.session.RepairSession (docs/architecture.md,
"The session") and returns data recorded from a 3-node lab with faults. It journals the same event
types to a JSONL file so that the report export works on it. It can be told to be slow: a method
named in `gates` blocks until its threading.Event is set (deterministic, no sleeps in tests), and
`lines_per_action` makes apply() stream as many lines as a test wants.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clusterfix_tui.core.model import (
    CLUSTER,
    Action,
    ActionOutcome,
    CheckResult,
    CommandResult,
    Finding,
    Plan,
    StepOutcome,
)

NODES = [
    ("node-1", "10.213.7.11", "10.244.0.0/24", "control-plane"),
    ("node-2", "10.213.7.12", "10.244.1.0/24", "worker"),
    ("node-3", "10.213.7.13", "10.244.2.0/24", "worker"),
]


@dataclass
class HostKey:
    key_type: str
    fingerprint: str


@dataclass
class NodeConn:
    node: str
    address: str
    state: str
    detail: str = ""
    host_key: HostKey | None = None


@dataclass
class Snapshot:
    nodes: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    pod_logs: dict[str, str] = field(default_factory=dict)


@dataclass
class Diagnosis:
    phase: str
    snapshot: Snapshot
    facts: dict[str, dict[str, Any]]
    findings: list[Finding]


def _node(name: str, ip: str, cidr: str, role: str, ready: bool) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": cidr},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "addresses": [{"type": "InternalIP", "address": ip}],
            "nodeInfo": {"kubeletVersion": "v1.30.2"},
        },
    }


def _pod(ns: str, name: str, node: str, phase: str, restarts: int = 0, reason: str = "",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}} if not reason else {"waiting": {"reason": reason}}
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": {"nodeName": node},
        "status": {"phase": phase, "containerStatuses": [
            {"name": name.split("-")[0], "restartCount": restarts, "state": state}]},
    }


FINDINGS: list[Finding] = [
    Finding(
        "IPTABLES_BACKEND_CONFLICT", "critical", "node-2",
        "KUBE-* chains in both iptables-legacy and iptables-nft; kube-proxy uses nft",
        evidence=("iptables-legacy-save -t nat: 14 KUBE-* chains, 38 rules",
                  "iptables-nft-save -t nat: 12 KUBE-* chains, 31 rules",
                  "update-alternatives: iptables -> /usr/sbin/iptables-legacy"),
        explanation="Stale legacy rules shadow the ones kube-proxy writes with nft: NodePort "
                    "traffic hits the legacy KUBE-SERVICES first.",
        reference="https://github.com/kubernetes/kubernetes/issues/82361",
        step="iptables", data={"shadowing": True},
    ),
    Finding(
        "KUBE_PROXY_CRASHLOOP", "error", "node-2",
        "kube-proxy-7xk2p is in CrashLoopBackOff (12 restarts)",
        evidence=("kube-system/kube-proxy-7xk2p CrashLoopBackOff restarts=12",
                  "chain `KUBE-SEP' in table `nat' is incompatible, use 'nft' tool"),
        explanation="kube-proxy cannot program its chains while the legacy ones are in the way.",
        step="pods",
    ),
    Finding(
        "CNI_BRIDGE_CONFLICT", "error", "node-3",
        "cni0 has 10.244.9.1/24, outside the node's podCIDR 10.244.2.0/24",
        evidence=("cni0: inet 10.244.9.1/24", "podCIDR: 10.244.2.0/24"),
        explanation="A stale cni0 from an earlier podCIDR makes new pods fail to attach.",
        step="cni_bridge",
    ),
    Finding(
        "FLANNEL_STALE_VTEP", "warning", "node-3",
        "flannel.1 has 10.244.2.0/32 but the route to 10.244.1.0/24 uses a stale gateway",
        evidence=("10.244.1.0/24 via 10.244.9.0 dev flannel.1 onlink",),
        step="cni_bridge",
    ),
    Finding(
        "WORKER_KUBECONFIG_BROKEN", "warning", "node-3",
        "/etc/kubernetes/kubelet.conf points at https://10.0.0.99:6443 (unreachable)",
        evidence=("server: https://10.0.0.99:6443",),
        step="worker_kubeconfig",
    ),
    Finding(
        "IP_FORWARD_OFF", "error", "node-2", "net.ipv4.ip_forward = 0",
        evidence=("net.ipv4.ip_forward = 0",),
        explanation="The node does not forward pod traffic.",
        step="host_network",
    ),
    Finding(
        "PROBE_NO_ROUTE", "info", CLUSTER,
        "jellyfin readiness probe fails: no route to host",
        evidence=("Readiness probe failed: dial tcp 10.244.1.5:8096: connect: no route to host",),
        explanation="A symptom; the steps above address its causes.",
    ),
]

STEP_ACTIONS: dict[str, list[tuple[str, str, str, str]]] = {
    # step -> [(node, command, why, rollback command)]
    "iptables": [
        ("node-2", "iptables-legacy-save -t nat > /var/lib/clusterfix/nat.legacy.bak && "
                   "iptables-legacy -t nat -F && iptables-legacy -t nat -X",
         "remove the stale legacy KUBE-* chains that shadow kube-proxy's nft rules",
         "iptables-legacy-restore < /var/lib/clusterfix/nat.legacy.bak"),
        ("node-2", "update-alternatives --set iptables /usr/sbin/iptables-nft",
         "make the host iptables use the backend kube-proxy uses",
         "update-alternatives --set iptables /usr/sbin/iptables-legacy"),
    ],
    "cni_bridge": [
        ("node-3", "ip link set cni0 down && ip link delete cni0",
         "delete the cni0 bridge with an address outside the podCIDR", ""),
        ("node-3", "ip link delete flannel.1", "let flannel recreate its VTEP", ""),
    ],
    "pods": [
        (CLUSTER, "kubectl -n kube-system delete pod kube-proxy-7xk2p",
         "restart the crashlooping kube-proxy on node-2", ""),
    ],
    "worker_kubeconfig": [
        ("node-3", "sed -i 's#https://10.0.0.99:6443#https://10.213.7.11:6443#' "
                   "/etc/kubernetes/kubelet.conf",
         "point the kubelet at the API server", "cp /var/lib/clusterfix/kubelet.conf.bak "
                                               "/etc/kubernetes/kubelet.conf"),
    ],
    "host_network": [
        ("node-2", "sysctl -w net.ipv4.ip_forward=1", "forward pod traffic",
         "sysctl -w net.ipv4.ip_forward=0"),
    ],
}

CHECKS = [
    ("node-ready", "node-1", None),
    ("node-ready", "node-2", None),
    ("node-ready", "node-3", "worker_kubeconfig"),
    ("kube-proxy-running", "node-2", "pods"),
    ("flannel-running", "node-3", "cni_bridge"),
    ("nat-rules-single-backend", "node-2", "iptables"),
    ("ip-forward", "node-2", "host_network"),
    ("nodeport", "jellyfin:30096", "iptables"),
    ("pod-to-pod", "node-2->node-3", "cni_bridge"),
]


def _facts(name: str) -> dict[str, Any]:
    base = {
        "node-1": {"cni0": "10.244.0.1/24", "flannel.1": "10.244.0.0/32"},
        "node-2": {"cni0": "10.244.1.1/24", "flannel.1": "10.244.1.0/32"},
        "node-3": {"cni0": "10.244.9.1/24", "flannel.1": "10.244.2.0/32"},
    }[name]
    routes = [
        "default via 10.213.7.1 dev eth0",
        "10.213.7.0/24 dev eth0 proto kernel scope link src 10.213.7.1%s" % name[-1],
    ]
    for other, _ip, cidr, _role in NODES:
        if other == name:
            routes.append(f"{cidr} dev cni0 proto kernel scope link src {base['cni0'].split('/')[0]}")
        elif name == "node-3" and other == "node-2":
            routes.append("10.244.1.0/24 via 10.244.9.0 dev flannel.1 onlink")
        else:
            routes.append(f"{cidr} via {cidr.split('/')[0]} dev flannel.1 onlink")
    legacy = {"KUBE-SERVICES": 9, "KUBE-NODEPORTS": 4, "KUBE-POSTROUTING": 2} if name == "node-2" \
        else {}
    nft = {"KUBE-SERVICES": 9, "KUBE-NODEPORTS": 4, "KUBE-POSTROUTING": 2, "KUBE-MARK-MASQ": 1}
    return {
        "iptables_mode": "legacy" if name == "node-2" else "nft",
        "routes": routes,
        "addresses": base,
        "nat_chains": {"legacy": legacy, "nft": nft},
        "forward_policy": {"legacy": "ACCEPT", "nft": "DROP" if name == "node-2" else "ACCEPT"},
        "raw": {
            "ip -4 route": "\n".join(routes),
            "ip -4 -o addr": "\n".join(f"{k}: inet {v}" for k, v in base.items()),
            "iptables-nft-save -t nat | grep -c KUBE": str(sum(nft.values())),
            "iptables-legacy-save -t nat | grep -c KUBE": str(sum(legacy.values())),
            "sysctl net.ipv4.ip_forward": "net.ipv4.ip_forward = %d" % (0 if name == "node-2" else 1),
        },
    }


class FakeSession:
    """Same methods as RepairSession; recorded data; journals to `journal_path` (JSONL)."""

    def __init__(
        self,
        journal_path: str | Path | None = None,
        *,
        dry_run: bool = False,
        host_key_nodes: tuple[str, ...] = ("node-3",),
        unreachable: tuple[str, ...] = (),
        gates: dict[str, threading.Event] | None = None,
        lines_per_action: int = 3,
        line_delay: float = 0.0,
        stream_gate: threading.Event | None = None,
        errors: dict[str, BaseException] | None = None,
    ) -> None:
        self.journal_path = Path(journal_path) if journal_path else None
        self.dry_run = dry_run
        self.host_key_nodes = host_key_nodes
        self.unreachable = unreachable
        self.gates = gates or {}
        self.errors = dict(errors or {})  # method name -> exception it raises (once)
        self.lines_per_action = lines_per_action
        self.line_delay = line_delay
        self.stream_gate = stream_gate  # apply() waits on it after its first action's lines
        self.streaming = threading.Event()  # set once apply() has streamed its first lines
        self.applied: set[str] = set()
        self.skipped: set[str] = set()
        self.calls: list[str] = []
        self.accepted: set[str] = set()
        self.left_out: dict[str, str] = {}
        self._seq = 0
        self._lock = threading.Lock()
        self._journal("session_start", session_id="fake0001", tool_version="0.1.0",
                      user="admin", host="laptop", mode="interactive", dry_run=dry_run,
                      cluster=self.cluster_info(record=False))

    # -- journal -------------------------------------------------------------------------------
    def _journal(self, type_: str, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            event = {"seq": self._seq, "ts": "2026-11-26T23:40:%02dZ" % (self._seq % 60),
                     "type": type_, **fields}
            if self.journal_path:
                with self.journal_path.open("a") as fh:
                    fh.write(json.dumps(event) + "\n")

    def _gate(self, name: str) -> None:
        self.calls.append(name)
        error = self.errors.pop(name, None)
        if error is not None:
            raise error
        gate = self.gates.get(name)
        if gate is not None and not gate.wait(30):
            raise TimeoutError(f"fake {name} gate never opened")

    # -- the session ---------------------------------------------------------------------------
    def cluster_info(self, record: bool = True) -> dict[str, Any]:
        if record:
            self._gate("cluster_info")
        return {"context": "lab-k3f9", "server": "http://10.213.7.1:6443",
                "version": "v1.30.2", "node_count": len(NODES)}

    def connect(self, on_node: Callable[[Any], None] | None = None) -> list[NodeConn]:
        self._gate("connect")
        conns = []
        for name, ip, _cidr, _role in NODES:
            if name in self.unreachable:
                conn = NodeConn(name, ip, "unreachable", "connect timed out after 10s")
            elif name in self.host_key_nodes and name not in self.accepted:
                conn = NodeConn(name, ip, "host-key-unknown", "not in lab/known_hosts",
                                HostKey("ssh-ed25519",
                                        "SHA256:q3Vb1lX0u0GZr6mJ7kq1tq8k3m2o9wYf5lq3i8Jk2aE"))
            else:
                conn = NodeConn(name, ip, "connected", "root@%s:22" % ip)
            conns.append(conn)
            if on_node:
                on_node(conn)
        return conns

    def accept_host_key(self, node: str) -> NodeConn:
        self._gate("accept_host_key")
        self.accepted.add(node)
        ip = dict((n, i) for n, i, _c, _r in NODES)[node]
        self._journal("note", text=f"host key of {node} accepted")
        return NodeConn(node, ip, "connected", "root@%s:22" % ip)

    def leave_out(self, node: str, reason: str) -> None:
        self.left_out[node] = reason
        self._journal("node_left_out", node=node, reason=reason)

    def _open_findings(self) -> list[Finding]:
        return [f for f in FINDINGS if f.step is None or f.step not in self.applied]

    def diagnose(self, phase: str = "before", on_progress: Callable[..., None] | None = None
                 ) -> Diagnosis:
        self._gate("diagnose")
        live = [n for n, *_ in NODES if n not in self.left_out]
        for name in live:
            if on_progress:
                on_progress(f"facts gathered from {name}")
        findings = [f for f in self._open_findings() if f.node == CLUSTER or f.node in live]
        crash = "pods" not in self.applied
        pods = [
            _pod("kube-system", f"kube-proxy-{s}", n, "Running",
                 12 if (n == "node-2" and crash) else 0,
                 "CrashLoopBackOff" if (n == "node-2" and crash) else "",
                 {"k8s-app": "kube-proxy"})
            for s, n in (("4hx9d", "node-1"), ("7xk2p", "node-2"), ("b2m8q", "node-3"))
        ] + [
            _pod("kube-flannel", f"kube-flannel-ds-{s}", n, "Running",
                 3 if n == "node-3" and "cni_bridge" not in self.applied else 0,
                 labels={"app": "flannel"})
            for s, n in (("p6w2r", "node-1"), ("zq4tn", "node-2"), ("c8v1k", "node-3"))
        ] + [_pod("default", "jellyfin-5d8f7c9b6-wl2xq", "node-2", "Running")]
        nodes = [_node(n, ip, cidr, role, not (n == "node-3" and
                                               "worker_kubeconfig" not in self.applied))
                 for n, ip, cidr, role in NODES]
        logs = {
            "kube-system/kube-proxy-7xk2p": "I1126 23:38:01 server.go:865] Version: v1.30.2\n"
            "E1126 23:38:02 proxier.go:1544] Failed to execute iptables-restore: chain "
            "`KUBE-SEP' in table `nat' is incompatible, use 'nft' tool\n"
            "F1126 23:38:02 server.go:489] failed to run Kubernetes Proxy",
        }
        diag = Diagnosis(phase, Snapshot(nodes, pods, logs), {n: _facts(n) for n in live},
                         findings)
        self._journal("diagnosis", phase=phase, findings=[f.to_dict() for f in findings],
                      nodes={n: {"ssh": "connected"} for n in live})
        return diag

    def plan(self, step: str) -> Plan:
        self._gate("plan")
        findings = tuple(f for f in self._open_findings() if f.step == step
                         and (f.node == CLUSTER or f.node not in self.left_out))
        actions = []
        if findings:
            for i, (node, cmd, why, rb) in enumerate(STEP_ACTIONS[step], 1):
                if node in self.left_out:
                    continue
                rollback = Action(f"{step}:{node}:{i}:rb", node, "shell", rb, mutating=True) \
                    if rb else None
                actions.append(Action(
                    f"{step}:{node}:{i}", node, "api" if node == CLUSTER else "shell", cmd,
                    why=why, finding_codes=tuple(f.code for f in findings if f.node in (node,)),
                    risk="pod networking on the node blips for a few seconds",
                    rollback=rollback,
                    rollback_note="" if rb else "recreated by flannel/kubelet; reboot the node "
                                                "if it is not",
                ))
        plan = Plan(step, step.replace("_", " "), findings, tuple(actions),
                    notes=("Run in a maintenance window: DaemonSets restart.",) if actions else ())
        self._journal("plan", step=step, plan=plan.to_dict())
        return plan

    def apply(self, plan: Plan, approved_ids: list[str] | tuple[str, ...],
              on_line: Callable[[str, str, str], None] | None = None,
              cancel: threading.Event | None = None) -> StepOutcome:
        self._gate("apply")
        self._journal("decision", step=plan.step, decision="approved",
                      action_ids=list(approved_ids), by="user")
        outcomes = []
        cancelled = False
        for action in plan.actions:
            if action.id not in approved_ids:
                outcomes.append(ActionOutcome(action.id, action.target, action.command, None,
                                              "skipped"))
                continue
            if cancel is not None and cancel.is_set():
                cancelled = True
                outcomes.append(ActionOutcome(action.id, action.target, action.command, None,
                                              "cancelled"))
                continue
            self._journal("command_start", step=plan.step, action_id=action.id,
                          node=action.target, command=action.command, kind=action.kind,
                          rollback=False)
            if on_line:
                on_line(action.target, "command", f"$ {action.command}")
                for i in range(self.lines_per_action):
                    if self.line_delay:
                        time.sleep(self.line_delay)
                    on_line(action.target, "stdout", f"{action.id}: line {i + 1}")
                self.streaming.set()
                if self.stream_gate is not None and not self.stream_gate.wait(30):
                    raise TimeoutError("fake stream gate never opened")
            result = CommandResult(0, duration=0.1)
            self._journal("command_end", step=plan.step, action_id=action.id,
                          node=action.target, exit_code=0, duration=0.1, stdout="", stderr="",
                          timed_out=False, error=None)
            outcomes.append(ActionOutcome(action.id, action.target, action.command, result,
                                          "dry-run" if self.dry_run else "ok"))
        if cancelled:
            status = "cancelled"
        elif self.dry_run:
            status = "dry-run"
        else:
            status = "changed"
            self.applied.add(plan.step)
        outcome = StepOutcome(
            plan.step, status, tuple(outcomes),
            changes=tuple({"node": a.target, "what": a.why, "before": "", "after": ""}
                          for a in plan.actions if a.id in approved_ids and not cancelled),
            message=f"{len(outcomes)} action(s)")
        self._journal("step_end", step=plan.step, outcome=outcome.to_dict())
        return outcome

    def skip(self, plan: Plan, reason: str = "") -> StepOutcome:
        self.calls.append("skip")
        self.skipped.add(plan.step)
        self._journal("decision", step=plan.step, decision="skipped", action_ids=[], by="user")
        outcome = StepOutcome(plan.step, "skipped", message=reason or "skipped by the user")
        self._journal("step_end", step=plan.step, outcome=outcome.to_dict())
        return outcome

    def rollback(self, step: str, on_line: Callable[[str, str, str], None] | None = None,
                 cancel: threading.Event | None = None) -> StepOutcome:
        self._gate("rollback")
        outs = []
        for node, _cmd, _why, rb in STEP_ACTIONS[step]:
            if not rb:
                continue
            if on_line:
                on_line(node, "command", f"$ {rb}")
            outs.append(ActionOutcome(f"{step}:{node}:rb", node, rb, CommandResult(0), "ok"))
        self.applied.discard(step)
        outcome = StepOutcome(step, "changed", tuple(outs), message="rolled back")
        self._journal("step_end", step=step, outcome=outcome.to_dict())
        return outcome

    def validate(self, phase: str = "after", on_check: Callable[[CheckResult], None] | None = None
                 ) -> list[CheckResult]:
        self._gate("validate")
        results = []
        for name, target, fix in CHECKS:
            ok = fix is None or fix in self.applied
            detail = "ok" if ok else f"failing: see step {fix}"
            result = CheckResult(name, target, ok, detail, None if ok else fix)
            results.append(result)
            if on_check:
                on_check(result)
        self._journal("validation", phase=phase, results=[r.to_dict() for r in results])
        return results

    def finish(self) -> str:
        self.calls.append("finish")
        verdict = "fixed" if set(STEP_ACTIONS) <= self.applied else (
            "partially-fixed" if self.applied else "still-broken")
        self._journal("session_end", verdict=verdict, summary={
            "steps": sorted(self.applied), "skipped": sorted(self.skipped)})
        return verdict


FROZEN_NOW = datetime(2026, 11, 26, 23, 40, 0)


def make_app(tmp_path: Path, *, dry_run: bool = False, frozen: bool = True,
             **fake: Any) -> tuple[Any, FakeSession]:
    """A wizard on a fake session; frozen clock and date so that screens are deterministic."""
    from clusterfix_tui.ui.app import ClusterfixApp

    journal = tmp_path / "journal.jsonl"
    session = FakeSession(journal, dry_run=dry_run, **fake)
    app = ClusterfixApp(
        session, dry_run=dry_run, journal_path=journal,
        clock=(lambda: 0.0) if frozen else None, now=(lambda: FROZEN_NOW) if frozen else None,
        report_dir=tmp_path,
    )
    return app, session


async def settle(pilot: Any, rounds: int = 3) -> None:
    """Wait until no worker runs and the messages they posted are handled (no sleeps)."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
