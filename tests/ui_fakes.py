"""The wizard's test session: the real RepairSession on recorded lab data, faked at the transports.

Nothing here builds a shape production never produces. The cluster a test sees is made of the
lab recordings in tests/data/lab (what the lab's API answered and what every node's facts script
printed over SSH): the healthy recording, overlaid with one recorded fault per repair step until
that step's actions ran. The real RepairSession diagnoses it (the real facts parsers, checks,
NodeFacts, NodeInfo/PodInfo), plans it (the real fix steps), journals it (the real Journal),
validates it (the real validate.py and its check names) and computes the verdict. Only the
transports are fakes:

- `ReplayCluster` answers the API reads from the composite recording of its current state;
- `ReplayShells` hands each node's recorded facts back, answers the validation commands from the
  state, and raises the real `HostKeyUnknown` for the nodes told to, until `accept_host_key`,
  with real host keys (tests/data/host_keys.known: ed25519 keys made by ssh-keygen as the lab
  makes its nodes' keys; their fingerprints computed as `ssh-keygen -lf` does); nodes told to
  go through a jump host first raise the jump host's unknown key, until it is accepted;
- `FakeRunner` records the approved actions, streams lines for them and, as a real cluster
  would, makes a step's fault go away once its actions ran (and come back on rollback);
- `FakeProber` answers the NodePort probes from the state.

The session can be told to be slow: a method named in `gates` blocks until its threading.Event is
set (deterministic, no sleeps in tests); `errors` makes a method raise once.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from determinism import frozen_plan_stamp
from diag_fakes import LAB_NONCE, ReplayAPI, load

from clusterfix_tui.core.facts import script_nonce
from clusterfix_tui.core.identity import IDENTITY_SCRIPT
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CommandResult
from clusterfix_tui.core.session import RepairSession
from clusterfix_tui.transports.base import (
    HostKey,
    HostKeyChanged,
    HostKeyUnknown,
    NodeUnreachable,
)
from clusterfix_tui.transports.dryrun import NOT_RUN

# step -> (recorded scenario, {node: facts sections that carry the fault}, API keys that carry it)
FAULTS: dict[str, tuple[str, dict[str, tuple[str, ...]], tuple[str, ...]]] = {
    "iptables": ("iptables-foreign-rule",
                 {"node-3": ("legacy_save", "nft_save_nat", "nft_save_filter", "nft_json",
                             "incompatible_chains", "nft_table_text")}, ()),
    "cni_bridge": ("cni-bridge-conflict", {"node-2": ("ip_addr", "ip_route")}, ()),
    "pods": ("kube-proxy-crashloop", {}, ("pods", "logs", "events", "daemonsets")),
    "worker_kubeconfig": ("worker-kubeconfig", {"node-3": ("kubeconfig", "kubectl_get_nodes")},
                          ()),
    "host_network": ("br-netfilter-off", {"node-2": ("sysctl",)}, ()),
}
NODES = ("node-1", "node-2", "node-3")
HOST_KEYS_FILE = Path(__file__).parent / "data" / "host_keys.known"


def _recorded_host_keys() -> dict[str, tuple[str, str, str]]:
    """host -> (key type, SHA256 fingerprint, known_hosts line) of the recorded real keys."""
    out: dict[str, tuple[str, str, str]] = {}
    for line in HOST_KEYS_FILE.read_text().splitlines():
        host, key_type, blob = line.split()[:3]
        digest = hashlib.sha256(base64.b64decode(blob)).digest()
        out[host] = (key_type, "SHA256:" + base64.b64encode(digest).decode().rstrip("="), line)
    return out


HOST_KEYS = _recorded_host_keys()
HOST_KEY_FINGERPRINT = HOST_KEYS["node-3"][1]  # the node the default session asks about
FROZEN_STAMP = "20261126T234000Z"
FROZEN_NOW = datetime(2026, 11, 26, 23, 40, 0)

_SECTION = re.compile(r"(?=@@CFX " + re.escape(LAB_NONCE) + r" BEGIN )")


def _sections(output: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _SECTION.split(output):
        if part:
            # keyed by name and argument: a node has several `kubeconfig <path>` sections
            m = re.match(r"@@CFX \S+ BEGIN (\S+(?: [0-9a-f]+)?)\n", part)
            out[m.group(1) if m else "_preamble"] = part
    return out


class ReplayCluster:
    """The recorded lab: healthy, plus the fault of every step not `fixed` yet."""

    def __init__(self, faults: tuple[str, ...] = tuple(FAULTS)) -> None:
        self.faults = tuple(faults)
        self.fixed: set[str] = set()
        self.recreated: dict[str, str] = {}  # "ns/name" of a deleted pod -> its successor's name
        # node -> boot_id its identity script prints (None: the script prints nothing, as before)
        self.boot_ids: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._cache: dict[Any, dict[str, Any]] = {}
        self._healthy = load("healthy")
        self._scenarios = {FAULTS[s][0]: load(FAULTS[s][0]) for s in self.faults}

    def broken(self) -> list[str]:
        with self._lock:
            return [s for s in self.faults if s not in self.fixed]

    def recording(self) -> dict[str, Any]:
        broken = self.broken()
        with self._lock:
            key = (frozenset(broken), tuple(sorted(self.recreated.items())))
            if key not in self._cache:
                rec = copy.deepcopy(self._healthy)
                facts = {n: _sections(o) for n, o in rec["facts"].items()}
                for step in broken:
                    scenario, nodes, api_keys = FAULTS[step]
                    src = self._scenarios[scenario]
                    for node, names in nodes.items():
                        theirs = _sections(src["facts"][node])
                        for name in names:
                            for key in [k for k in theirs if k.split(" ")[0] == name]:
                                facts[node][key] = theirs[key]
                    for k in api_keys:
                        rec[k] = copy.deepcopy(src[k])
                rec["facts"] = {n: "".join(s.values()) for n, s in facts.items()}
                if "iptables" in broken:
                    self._kube_proxy_sync_fails(rec)
                self._recreate_pods(rec)
                self._cache[key] = rec
            return self._cache[key]

    def _kube_proxy_sync_fails(self, rec: dict[str, Any]) -> None:
        """The iptables fault as kube-proxy lives it: each sync fails on the chain iptables
        cannot read, and its log says so with its iptables' version (the recorded fault's
        "Failed to execute iptables-restore" block, added to node-3's kube-proxy's log whatever
        pod runs there: the healthy one, or the crash-looping one of the pods fault)."""
        src = self._scenarios[FAULTS["iptables"][0]]
        lines = next(v for k, v in src["logs"].items()
                     if "kube-proxy" in k and "incompatible" in v).splitlines()
        start = next(i for i, ln in enumerate(lines) if "Failed to execute iptables-restore" in ln)
        block = lines[start:start + 3]
        for node in FAULTS["iptables"][1]:
            pod = next(p["metadata"]["name"] for p in rec["pods"]
                       if p["metadata"]["name"].startswith("kube-proxy-")
                       and p.get("spec", {}).get("nodeName") == node)
            key = f"kube-system/{pod}/current"
            rec["logs"][key] = rec["logs"].get(key, "").rstrip("\n") + "\n" + "\n".join(block) + "\n"

    def _recreate_pods(self, rec: dict[str, Any]) -> None:
        """A deleted pod is replaced by its DaemonSet: same spec, new name."""
        for pod in rec["pods"]:
            meta = pod["metadata"]
            key = f"{meta.get('namespace')}/{meta['name']}"
            while key in self.recreated:
                meta["name"] = self.recreated[key]
                key = f"{meta.get('namespace')}/{meta['name']}"
        for log_key in list(rec["logs"]):
            ns, name, which = log_key.split("/")
            new = self.recreated.get(f"{ns}/{name}")
            if new is not None:
                rec["logs"][f"{ns}/{new}/{which}"] = rec["logs"].pop(log_key)

    def pod_exists(self, namespace: str, name: str) -> bool:
        return any(p["metadata"].get("namespace") == namespace and p["metadata"]["name"] == name
                   for p in self.recording()["pods"])

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            n = sum(1 for k in self.recreated if k.startswith(f"{namespace}/")) + 1
            self.recreated[f"{namespace}/{name}"] = f"{name.rsplit('-', 1)[0]}-r{n:04d}"
    def fix(self, step: str) -> None:
        with self._lock:
            self.fixed.add(step)

    def unfix(self, step: str) -> None:
        with self._lock:
            self.fixed.discard(step)


class ReplayClusterAPI(ReplayAPI):
    """The recorded API answers of the cluster's current state (read-only: writes go through
    the FakeRunner, as actions)."""

    def __init__(self, cluster: ReplayCluster) -> None:
        self.cluster = cluster
        self.fail: set[str] = set()
        self.calls: list[str] = []

    @property
    def rec(self) -> dict[str, Any]:  # type: ignore[override]
        return self.cluster.recording()

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get_deployment")
        return None


class ReplayNodeShell:
    def __init__(self, cluster: ReplayCluster, node: str) -> None:
        self.cluster = cluster
        self.node = node

    def run(self, command: str, *, timeout: float = 60.0, on_line: Any = None,
            stdin: Any = None) -> CommandResult:
        broken = set(self.cluster.broken())
        try:
            nonce = script_nonce(command)
        except ValueError:
            nonce = None
        if nonce is not None:  # the facts script: what this node printed in the recordings
            output = self.cluster.recording()["facts"][self.node]
            return CommandResult(0, stdout=output.replace(LAB_NONCE, nonce))
        if command == IDENTITY_SCRIPT and self.cluster.boot_ids is not None:
            # what a node prints for core/identity.py (a new boot_id: the node rebooted)
            return CommandResult(0, stdout=f"boot_id={self.cluster.boot_ids[self.node]}\n"
                                 "net=net:[4026531840]\nmnt=mnt:[4026531841]\n")
        if "/dev/tcp/" in command:  # validation: pod-to-pod from this node
            if "cni_bridge" in broken:
                return CommandResult(1, stdout="10.244.2.2 dev cni0 src 10.244.9.1 uid 0\n",
                                     stderr="connect: No route to host")
            if broken & {"iptables", "host_network"}:
                return CommandResult(1, stdout="10.244.2.2 via 10.244.2.0 dev flannel.1 src "
                                     "10.244.1.0 uid 0\n", stderr="connect: timed out")
            return CommandResult(0, stdout="10.244.2.2 via 10.244.2.0 dev flannel.1 src "
                                 "10.244.1.0 uid 0\n")
        if "kubectl get" in command and "nodes" in command:  # validation: kubectl on a worker
            if "worker_kubeconfig" in broken and self.node == "node-3":
                return CommandResult(1, stderr="error: You must be logged in to the server "
                                     "(Unauthorized)")
            return CommandResult(0, stdout="node/node-1\nnode/node-2\nnode/node-3\n")
        return CommandResult(0)

    def close(self) -> None:
        pass


class ReplayShells:
    """A ShellFactory: host keys unknown for `host_key_nodes` until accepted, `unreachable`
    nodes raise the real transport errors."""

    def __init__(self, cluster: ReplayCluster, host_key_nodes: tuple[str, ...] = (),
                 unreachable: tuple[str, ...] = (), via_bastion: tuple[str, ...] = (),
                 changed_key_nodes: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.changed_key_nodes = changed_key_nodes  # offer another node's key than known_hosts
        self.host_key_nodes = host_key_nodes
        self.unreachable = unreachable
        self.via_bastion = via_bastion  # reached through "bastion", whose key is not known yet
        self.accepted: set[str] = set()
        self.known_hosts: list[str] = []  # the lines accept_host_key appended, in order

    def __call__(self, node: str, address: str | None = None) -> ReplayNodeShell:
        if node in self.unreachable:
            raise NodeUnreachable(f"{node} ({address}): connect timed out after 10s")
        if node in self.via_bastion and "bastion" not in self.accepted:
            key_type, fp, line = HOST_KEYS["bastion"]
            raise HostKeyUnknown("bastion", key_type, fp, "lab/known_hosts", line,
                                 node="bastion", address="10.99.0.1:22")
        if node in self.changed_key_nodes:
            key_type, fp, _ = HOST_KEYS["node-1" if node != "node-1" else "node-2"]
            raise HostKeyChanged(
                f"{node}: HOST KEY CHANGED for {node}: the server now offers {key_type} {fp}, "
                f"but lab/known_hosts line 2 holds a different key. Refused.",
                key=HostKey(key_type, fp, node, address), known_hosts="lab/known_hosts",
                line_no=2)
        if node in self.host_key_nodes and node not in self.accepted:
            key_type, fp, line = HOST_KEYS[node]
            raise HostKeyUnknown(node, key_type, fp, "lab/known_hosts", line, node=node,
                                 address=f"{address}:22" if address else None)
        return ReplayNodeShell(self.cluster, node)

    def accept_host_key(self, exc: HostKeyUnknown) -> None:
        if exc.key_line not in self.known_hosts:  # as the SSH pool: a line is appended once
            self.known_hosts.append(exc.key_line)
        self.accepted.add(exc.host)


class FakeRunner:
    """Runs nothing: records each approved action, streams lines for it, and changes the
    replayed cluster as the action would (a step's fault is gone once its forward actions ran,
    back once its rollback ran)."""

    def __init__(self, cluster: ReplayCluster, *, dry_run: bool = False,
                 lines_per_action: int = 3, line_delay: float = 0.0,
                 stream_gate: threading.Event | None = None,
                 fail_actions: tuple[str, ...] = ()) -> None:
        self.cluster = cluster
        self.fail_actions = set(fail_actions)
        self.dry_run = dry_run
        self.lines_per_action = lines_per_action
        self.line_delay = line_delay
        self.stream_gate = stream_gate
        self.streaming = threading.Event()
        self.ran: list[Any] = []
        self.rollback_ids: set[str] = set()

    def run_action(self, action: Any, *, on_line: Any = None) -> CommandResult:
        self.ran.append(action)
        if self.dry_run:
            return NOT_RUN
        if on_line is not None:
            for i in range(self.lines_per_action):
                if self.line_delay:
                    time.sleep(self.line_delay)
                on_line("stdout", f"{action.id}: line {i + 1}")
            self.streaming.set()
            if self.stream_gate is not None and not self.stream_gate.wait(30):
                raise TimeoutError("fake stream gate never opened")
        if action.id in self.fail_actions:  # told to fail: the cluster stays as it is
            return CommandResult(1, stderr=f"{action.id}: failed (as the test asked)\n",
                                 duration=0.1)
        api = action.api or {}
        if action.kind == "api" and api.get("verb") == "delete_pod":
            ns, name = api.get("namespace", ""), api.get("name", "")
            if not self.cluster.pod_exists(ns, name):
                return CommandResult(1, stderr=f"delete pod {ns}/{name}: not found (404)\n",
                                     duration=0.1)
            self.cluster.delete_pod(ns, name)
        step = action.id.split(":", 1)[0]
        if action.mutating and step in FAULTS:
            if action.id in self.rollback_ids:
                self.cluster.unfix(step)
            else:
                self.cluster.fix(step)
        return CommandResult(0, stdout="", duration=0.1)


class FakeProber:
    def __init__(self, cluster: ReplayCluster) -> None:
        self.cluster = cluster

    def http(self, url: str, timeout: float) -> tuple[int | None, str]:
        if set(self.cluster.broken()) & {"iptables", "pods"}:
            return None, "timed out"
        return 200, "OK"

    def tcp(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        return not (set(self.cluster.broken()) & {"iptables", "pods"}), ""


class FakeSession(RepairSession):
    """The real RepairSession on the replayed cluster, with test hooks (gates, errors, calls)."""

    def __init__(
        self,
        journal_path: str | Path | None = None,
        *,
        dry_run: bool = False,
        host_key_nodes: tuple[str, ...] = ("node-3",),
        unreachable: tuple[str, ...] = (),
        via_bastion: tuple[str, ...] = (),
        changed_key_nodes: tuple[str, ...] = (),
        gates: dict[str, threading.Event] | None = None,
        lines_per_action: int = 3,
        line_delay: float = 0.0,
        stream_gate: threading.Event | None = None,
        errors: dict[str, BaseException] | None = None,
        faults: tuple[str, ...] = tuple(FAULTS),
        frozen: bool = True,
        fail_actions: tuple[str, ...] = (),
    ) -> None:
        self.cluster = ReplayCluster(faults)
        self.journal_path = Path(journal_path) if journal_path else None
        self.fake_shells = ReplayShells(self.cluster, host_key_nodes, unreachable, via_bastion,
                                        changed_key_nodes)
        self.fake_runner = FakeRunner(self.cluster, dry_run=dry_run,
                                      lines_per_action=lines_per_action, line_delay=line_delay,
                                      stream_gate=stream_gate, fail_actions=fail_actions)
        super().__init__(ReplayClusterAPI(self.cluster), self.fake_shells, self.fake_runner,
                         Journal(self.journal_path), mode="interactive", dry_run=dry_run,
                         prober=FakeProber(self.cluster))
        self.gates = gates or {}
        self.errors = dict(errors or {})
        self.frozen = frozen
        self.calls: list[str] = []
        self.skipped: set[str] = set()
        self.streaming = self.fake_runner.streaming

    # -- what tests look at ----------------------------------------------------------------
    @property
    def applied(self) -> set[str]:
        """The steps whose fault the replayed cluster no longer has."""
        return set(self.cluster.fixed)

    @property
    def accepted(self) -> set[str]:
        return set(self.fake_shells.accepted)

    def events(self) -> list[dict[str, Any]]:
        return list(self.journal.events)

    # -- hooks -----------------------------------------------------------------------------
    def _gate(self, name: str) -> None:
        self.calls.append(name)
        error = self.errors.pop(name, None)
        if error is not None:
            raise error
        gate = self.gates.get(name)
        if gate is not None and not gate.wait(30):
            raise TimeoutError(f"fake {name} gate never opened")

    def cluster_info(self) -> dict[str, Any]:
        if self._cluster is None:
            self._gate("cluster_info")
        return super().cluster_info()

    def connect(self, on_node: Any = None) -> Any:
        """The real connect() (the nodes in parallel); the answers are handed on in name order,
        so that screens and the session log are the same on every run."""
        self._gate("connect")
        conns = super().connect(None)
        if on_node is not None:
            for conn in sorted(conns, key=lambda c: c.node):
                on_node(conn)
        return conns

    def accept_host_key(self, node: str) -> Any:
        self._gate("accept_host_key")
        return super().accept_host_key(node)

    def diagnose(self, phase: str = "before", on_progress: Any = None) -> Any:
        self._gate("diagnose")
        return super().diagnose(phase, on_progress)

    def refresh(self, on_progress: Any = None) -> Any:
        self._gate("diagnose")
        return super().refresh(on_progress)

    def build_plan(self, step: str) -> Any:
        self._gate("plan")
        if not self.frozen:
            plan = super().build_plan(step)
        else:
            # the backup paths in a plan carry the time it was built: freeze it for snapshots
            with frozen_plan_stamp(FROZEN_STAMP):
                plan = super().build_plan(step)
        for a in plan.actions:
            if a.rollback is not None:
                self.fake_runner.rollback_ids.add(a.rollback.id)
        return plan

    def apply(self, plan: Any, approved_ids: Any, on_line: Any = None, cancel: Any = None,
              by: str = "user") -> Any:
        self._gate("apply")
        return super().apply(plan, approved_ids, on_line, cancel, by)

    def skip(self, plan: Any, reason: str = "", by: str = "user") -> Any:
        self.calls.append("skip")
        self.skipped.add(plan.step)
        return super().skip(plan, reason, by)

    def apply_rollback(self, plan: Any, approved_ids: Any = None, on_line: Any = None,
                       cancel: Any = None, by: str = "user") -> Any:
        self._gate("rollback")
        return super().apply_rollback(plan, approved_ids, on_line, cancel, by)

    def validate(self, phase: str = "after", on_check: Any = None) -> Any:
        self._gate("validate")
        return super().validate(phase, on_check)

    def finish(self, aborted: bool = False) -> str:  # noqa: D102
        self.calls.append("finish")
        return super().finish(aborted)


def make_app(tmp_path: Path, *, dry_run: bool = False, frozen: bool = True,
             **fake: Any) -> tuple[Any, FakeSession]:
    """A wizard on the replayed lab; frozen clock, date and plan stamp so that screens are
    deterministic."""
    from clusterfix_tui.core.flow import RepairFlow
    from clusterfix_tui.ui.app import ClusterfixApp

    journal = tmp_path / "journal.jsonl"
    session = FakeSession(journal, dry_run=dry_run, frozen=frozen, **fake)
    app = ClusterfixApp(
        session, dry_run=dry_run, journal_path=journal,
        # the replayed cluster is as settled as it will get at once: no settle wait
        flow_factory=lambda s: RepairFlow(s, settle_timeout=0.0, sleep=lambda _s: None),
        clock=(lambda: 0.0) if frozen else None, now=(lambda: FROZEN_NOW) if frozen else None,
        report_dir=tmp_path,
    )
    return app, session


async def settle(pilot: Any, rounds: int = 3) -> None:
    """Wait until no worker runs and the messages they posted are handled (no sleeps)."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
