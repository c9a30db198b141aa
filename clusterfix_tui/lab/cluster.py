"""Bring a lab up, look at it, take it down: the Python API behind `clusterfix-tui lab`.

    handle = up("/tmp/lab", nodes=3, faults="none")   # returns when the lab is ready
    handle.exec("node-2", "ip -br addr")               # inside the node, like SSH
    down("/tmp/lab")                                   # exactly what lab.json recorded

The lab runs in a detached daemon (clusterfix_tui.lab.daemon) that survives the caller; it writes
D/lab.json and answers requests on D/control.sock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clusterfix_tui.lab import nodes as N

MAX_NODES = 200
SHAPES = ("kubeadm", "k3s", "calico", "kube-proxy-free")
IP_FAMILIES = ("ipv4", "dual", "dual-v6-first")
BUILT = {(s, f) for s in SHAPES for f in IP_FAMILIES}  # (shape, ip family) pairs the daemon builds
DAEMON_MARKER = "clusterfix_tui.lab.daemon"


class LabError(RuntimeError):
    """A lab operation that cannot be done; the message is for the user as is."""


def _read_info(d: Path) -> dict | None:
    try:
        return json.loads((d / "lab.json").read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise LabError(f"{d / 'lab.json'} is not valid JSON ({e}); remove it by hand if no lab runs") from e


def _daemon_alive(info: dict) -> bool:
    pid = info.get("daemon_pid")
    return isinstance(pid, int) and N.pid_alive(pid) and DAEMON_MARKER in N.pid_cmdline(pid)


class LabHandle:
    """A running lab, seen from any process (tests, the CLI, fault injection)."""

    def __init__(self, lab_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(lab_dir).resolve()
        if _read_info(self.dir) is None:
            raise LabError(f"no lab in {self.dir}")

    @property
    def info(self) -> dict:
        info = _read_info(self.dir)
        if info is None:
            raise LabError(f"no lab in {self.dir}")
        return info

    kubeconfig = property(lambda self: self.dir / "kubeconfig")
    ssh_config = property(lambda self: self.dir / "ssh_config")
    known_hosts = property(lambda self: self.dir / "known_hosts")
    key = property(lambda self: self.dir / "id_ed25519")

    @property
    def nodes(self) -> list[dict]:
        return self.info["nodes"]

    def node(self, name: str) -> dict:
        for n in self.nodes:
            if n["name"] == name:
                return n
        raise LabError(f"no node {name!r} in the lab (nodes: {', '.join(n['name'] for n in self.nodes)})")

    def exec(self, node: str, sh_command: str, check: bool = True, timeout: float = 30,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command inside the node's mount, UTS and network namespaces (what an SSH
        session on the node sees), as root."""
        n = self.node(node)
        return N.node_exec(n["init_pid"], sh_command, check=check, timeout=timeout, input=input)

    def pod_exec(self, namespace: str, name: str, argv: list[str], check: bool = True,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run argv in a pod's network namespace (pods with their own netns only)."""
        pod = self.pod(namespace, name)
        if not pod.get("netns"):
            raise LabError(f"pod {namespace}/{name} uses the host network")
        return N.run(["nsenter", f"--net=/run/netns/{pod['netns']}", *argv], check=check, timeout=timeout)

    def pods(self, app: str | None = None) -> list[dict]:
        """Pods with their own netns (jellyfin, net-echo), each with its node name."""
        out = []
        for n in self.nodes:
            for p in n.get("pods", []):
                if app is None or p.get("app") == app:
                    out.append({**p, "node": n["name"]})
        return out

    def pod(self, namespace: str, name: str) -> dict:
        for p in self.pods():
            if p["namespace"] == namespace and p["name"] == name:
                return p
        raise LabError(f"no pod {namespace}/{name} with its own namespace in the lab")

    # -- requests to the daemon ------------------------------------------------------------------
    def request(self, op: str, timeout: float = 120, **kw: Any) -> Any:
        path = self.dir / "control.sock"
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                break
            except OSError as e:
                s.close()
                if time.monotonic() > deadline:
                    raise LabError(f"the lab daemon does not answer on {path}: {e}") from e
                time.sleep(0.1)
        with s:
            s.settimeout(timeout + 5)
            s.sendall(json.dumps({"op": op, "timeout": timeout, **kw}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        resp = json.loads(data or b"{}")
        if not resp.get("ok"):
            raise LabError(f"lab daemon: {op} failed: {resp.get('error')}")
        return resp.get("result")

    def stop_sshd(self, node: str) -> dict:
        """Kill the node's sshd (the node itself, its anchor and agents keep running)."""
        return self.request("stop_sshd", node=node)

    def start_sshd(self, node: str) -> dict:
        return self.request("start_sshd", node=node)

    def reboot_node(self, node: str) -> dict:
        """Reboot one node the way the lab can: its processes and namespaces are torn down by
        pid/name and rebuilt with the same name, address and host key; runtime state (sysctls,
        firewall rules, /run) is lost, files stay; its pods start again (daemon _op_reboot_node).
        Returns the anchor/sshd pids and netns inode before and after."""
        self.node(node)
        return self.request("reboot_node", node=node, timeout=180)

    def set_agent_state(self, node: str, agent: str, **state: Any) -> dict:
        """State the lab's agents honour on `node` for `agent` ("flannel" | "kube-proxy"):
        crashed=True [message=LOG TEXT, error=SHORT, backoff=SECONDS] puts its pod in
        CrashLoopBackOff (restartCount rising every `backoff` s, the message as its log) until the
        pod is deleted through the API (the new pod starts clean). No keyword: clear the state."""
        return self.request("set_agent_state", node=node, agent=agent, state=state)

    def restart_pod(self, node: str, app: str) -> dict:
        """Delete and recreate a pod the way `kubectl delete pod` does; app is a DaemonSet or
        Deployment name (kube-flannel-ds, kube-proxy, net-echo, jellyfin)."""
        return self.request("restart_pod", node=node, app=app)

    def reconcile(self) -> None:
        """Run one controller pass now (probes, back-offs, status) and wait for it."""
        self.request("reconcile")

    def record_fault(self, record: dict) -> None:
        self.request("record_fault", record=record)

    def inject(self, fault: str, node: str | None = None) -> Any:
        """Inject a fault from the catalog (clusterfix_tui.lab.faults); its record(s) go into
        lab.json "faults"."""
        from clusterfix_tui.lab import faults as F

        rec = F.inject(self, fault, node)
        recs = rec if isinstance(rec, list) else [rec]
        for r in recs:
            if isinstance(r, dict):
                self.record_fault(r)
            elif r is not None and hasattr(r, "to_dict"):
                self.record_fault(r.to_dict())
        return rec

    def down(self) -> dict:
        return down(self.dir)

    def __repr__(self) -> str:
        return f"LabHandle({str(self.dir)!r})"


def _parse_faults(faults: Any) -> list[Any]:
    if faults in (None, "", "none", [], ()):
        return []
    if isinstance(faults, str):
        if faults == "all":
            return ["all"]
        return [f.strip() for f in faults.split(",") if f.strip()]
    return list(faults)


def _plan_faults(names: list[Any], node_names: list[str], shape: str = "kubeadm",
                 family: str | None = None) -> list[tuple[str, str | None]]:
    """[(fault, node|None)]: "all" and bare names are spread by the fault catalog if it knows
    how (faults.plan), else over the workers round-robin."""
    from clusterfix_tui.lab import faults as F

    if hasattr(F, "plan"):
        return [tuple(x) for x in F.plan(names, node_names, shape, family)]  # type: ignore[misc]
    if names == ["all"]:
        catalog = getattr(F, "CATALOG", None) or getattr(F, "FAULTS", None) or {}
        names = list(catalog)
    workers = node_names[1:] or node_names
    out: list[tuple[str, str | None]] = []
    for i, item in enumerate(names):
        if isinstance(item, (tuple, list)):
            out.append((item[0], item[1]))
        elif ":" in str(item):
            f, n = str(item).split(":", 1)
            out.append((f, n))
        else:
            out.append((str(item), workers[i % len(workers)]))
    return out


def up(lab_dir: str | os.PathLike[str], nodes: int = 3, faults: Any = "none", *, tls: bool = True,
       timeout: float | None = None, shape: str = "kubeadm", ip_family: str = "ipv4",
       ssh_user: str | None = None, bastion: bool = False,
       host_ca: str | os.PathLike[str] | None = None,
       block_workstation_nodeports: bool = False) -> LabHandle:
    """Start a lab in a detached daemon and return when it is ready (with the faults injected).
    shape: kubeadm | k3s | calico | kube-proxy-free (docs/lab-shapes.md); ip_family: ipv4 | dual |
    dual-v6-first. host_ca: an SSH CA private key; every node's host key is certified by it for
    the node's address and name (docs/lab-shapes.md "Access"). block_workstation_nodeports: every
    node drops tcp NodePorts from this machine (lab.workstation; undo: its open_nodeports)."""
    if host_ca is not None:
        host_ca = str(Path(host_ca).resolve())
        if not Path(host_ca).is_file() or not Path(host_ca + ".pub").is_file():
            raise LabError(f"--host-ca needs a CA private key with its .pub next to it (got {host_ca})")
    if shape not in SHAPES:
        raise LabError(f"--shape must be one of {', '.join(SHAPES)} (got {shape!r})")
    if ip_family not in IP_FAMILIES:
        raise LabError(f"--ip-family must be one of {', '.join(IP_FAMILIES)} (got {ip_family!r})")
    if ssh_user is not None and (ssh_user == "root" or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", ssh_user)):
        raise LabError(f"--ssh-user must be a plain user name other than root (got {ssh_user!r})")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veths, iptables)")
    if not 1 <= int(nodes) <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
    d = Path(lab_dir).resolve()
    fault_names = _parse_faults(faults)
    if fault_names:
        try:  # unknown names, and names that do not apply to the shape, are refused before anything is built
            _plan_faults(fault_names, [f"node-{i}" for i in range(1, int(nodes) + 1)], shape, ip_family)
        except Exception as e:  # noqa: BLE001 - the catalog's own message is the user's answer
            raise LabError(f"--faults: {e}") from e
    if (shape, ip_family) not in BUILT:
        raise LabError(f"a {shape} lab with --ip-family {ip_family} is not built by this version "
                       f"(built: {', '.join(f'{s}/{f}' for s, f in sorted(BUILT))})")
    created_dir = not d.exists()
    d.mkdir(parents=True, exist_ok=True)
    lock = open(d / ".lab.lock", "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"a lab is being started or stopped in {d} right now") from None
        info = _read_info(d)
        if info is not None:
            if _daemon_alive(info):
                raise LabError(f"a lab is already up in {d} (lab {info.get('lab_id')}, daemon pid "
                               f"{info.get('daemon_pid')}): use it, or take it down first with "
                               f"`clusterfix-tui lab down --dir {d}`")
            raise LabError(f"{d} holds the remains of a lab whose daemon is gone (lab "
                           f"{info.get('lab_id')}): clean up with `clusterfix-tui lab down --dir {d}`")
        labid = secrets.token_hex(2)
        state_dir = N.LAB_STATE_ROOT / labid
        while state_dir.exists() or N.link_exists(f"cfx{labid}"):
            labid = secrets.token_hex(2)
            state_dir = N.LAB_STATE_ROOT / labid
        spec = {"lab_id": labid, "nodes": int(nodes), "state_dir": str(state_dir), "tls": tls,
                "created_dir": created_dir, "shape": shape, "ip_family": ip_family,
                "ssh_user": ssh_user, "bastion": bool(bastion), "host_ca": host_ca}
        (d / ".lab-spec.json").write_text(json.dumps(spec))
        with open(d / "daemon.log", "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", DAEMON_MARKER, "--dir", str(d)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd="/",
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        limit = timeout or (120 + 4 * int(nodes))  # 100 nodes took 155 s at load 60
        deadline = time.monotonic() + limit
        try:
            _wait_ready(d, proc, deadline, limit)
        except KeyboardInterrupt:  # Ctrl+C while it builds: leave nothing half-built behind
            proc.kill()  # first: it records everything in lab.json before creating it
            proc.wait()
            with contextlib.suppress(Exception):
                if (d / "lab.json").exists():
                    down(d, _locked=True)
            raise
        handle = LabHandle(d)
        if fault_names:
            for fault, node in _plan_faults(fault_names, [n["name"] for n in handle.nodes], shape, ip_family):
                try:
                    handle.inject(fault, node)
                except Exception as e:  # noqa: BLE001 - a half-faulted lab is worse than none
                    with contextlib.suppress(Exception):
                        down(d, _locked=True)
                    raise LabError(f"injecting fault {fault} on {node or 'its preferred node'} failed: "
                                   f"{type(e).__name__}: {e}; the lab was taken down") from e
        if block_workstation_nodeports:
            from clusterfix_tui.lab import workstation

            try:
                workstation.block_nodeports(handle)
            except Exception as e:  # noqa: BLE001 - a half-blocked lab is worse than none
                with contextlib.suppress(Exception):
                    down(d, _locked=True)
                raise LabError(f"blocking the workstation from NodePorts failed: {type(e).__name__}: "
                               f"{e}; the lab was taken down") from e
        return handle
    finally:
        with contextlib.suppress(Exception):
            fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _wait_ready(d: Path, proc: subprocess.Popen, deadline: float, limit: float) -> None:
    while True:
        info = _read_info(d)
        state = (info or {}).get("state")
        if state == "ready":
            break
        rc = proc.poll()
        if state == "failed" or rc is not None or time.monotonic() > deadline:
            err = (info or {}).get("error") or (
                f"daemon exited with {rc}" if rc is not None else f"not ready after {limit:.0f}s")
            tail = _tail(d / "daemon.log")
            with contextlib.suppress(Exception):
                if (d / "lab.json").exists():
                    down(d, _locked=True)
            raise LabError(f"the lab did not come up: {err}\n--- daemon.log (last lines) ---\n{tail}")
        time.sleep(0.05)


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no daemon.log)"


def _ours(pid: int | None, netns: str | None, marker: str | None = None) -> bool:
    """A recorded pid is still ours if it lives in the namespace we recorded for it (and its
    command line has the marker): pids get reused."""
    if not pid or not N.pid_alive(pid):
        return False
    if netns is not None:
        want = N.netns_inode(netns)
        if want is None or N.pid_netns_inode(pid) != want:
            return False
    return marker is None or marker in N.pid_cmdline(pid)


def down(lab_dir: str | os.PathLike[str], *, _locked: bool = False) -> dict:
    """Remove every process, namespace, link and file lab.json recorded, and nothing else."""
    d = Path(lab_dir).resolve()
    info = _read_info(d)
    if info is None:
        raise LabError(f"no lab in {d} (no lab.json): nothing to take down")
    lock = None
    if not _locked:
        lock = open(d / ".lab.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise LabError(f"a lab is being started or stopped in {d} right now") from None
    summary: dict[str, list] = {"pids": [], "netns": [], "links": [], "files": [], "left": []}
    try:
        # 1. the daemon (it stops writing lab.json), then read lab.json again: it is final now
        pid = info.get("daemon_pid")
        if pid and N.pid_alive(pid) and DAEMON_MARKER in N.pid_cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 8
            while N.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if N.pid_alive(pid):
                N.kill_pid(pid, marker=DAEMON_MARKER)
            summary["pids"].append(pid)
        info = _read_info(d) or info
        nodes = (info.get("nodes") or []) + ([info["bastion"]] if info.get("bastion") else [])
        # 2. pod servers, sshds, anchors: each only if still in the namespace we recorded
        victims: list[int] = []
        for n in nodes:
            for p in n.get("pods") or []:
                if _ours(p.get("pid"), p.get("netns"), "pod_server.py"):
                    victims.append(p["pid"])
            if _ours(n.get("sshd_pid"), n.get("netns"), "sshd"):
                victims.append(n["sshd_pid"])
            if _ours(n.get("init_pid"), n.get("netns")):
                victims.append(n["init_pid"])
        summary["pids"] += N.kill_pids(victims)
        # 3. whatever still runs inside our own namespaces (ssh sessions, commands run there)
        all_ns = list(info.get("pod_netns") or []) + [n["netns"] for n in nodes if n.get("netns")]
        summary["pids"] += N.kill_pids([pid for ns in all_ns for pid in N.netns_pids(ns)])
        # none of them may outlive `lab down`: wait until the kernel has finished them all
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(N.pid_alive(p) for p in summary["pids"]):
            time.sleep(0.05)
        summary["left"] = [p for p in summary["pids"] if N.pid_alive(p)]
        # 4. namespaces, then links (veths vanish with their namespace; the bridge is ours)
        for ns in all_ns:
            if N.delete_netns(ns):
                summary["netns"].append(ns)
        veths = [n["veth"] for n in nodes if n.get("veth")]
        deadline = time.monotonic() + 10
        while any(N.link_exists(v) for v in veths) and time.monotonic() < deadline:
            time.sleep(0.05)
        for v in veths:
            if N.delete_link(v):
                summary["links"].append(v)
        br = (info.get("bridge") or {}).get("name")
        if br and N.delete_link(br):
            summary["links"].append(br)
        # 5. files
        state_dir = info.get("state_dir")
        if state_dir and Path(state_dir).parent == N.LAB_STATE_ROOT and Path(state_dir).is_dir():
            shutil.rmtree(state_dir, ignore_errors=True)
            summary["files"].append(state_dir)
            with contextlib.suppress(OSError):  # the root, when no other lab uses it
                N.LAB_STATE_ROOT.rmdir()
        for f in info.get("files") or []:
            p = d / f
            if p.exists() or p.is_symlink():
                p.unlink()
                summary["files"].append(str(p))
        for f in (".lab-spec.json", "lab.json"):
            with contextlib.suppress(FileNotFoundError):
                (d / f).unlink()
        return summary
    finally:
        with contextlib.suppress(FileNotFoundError):
            (d / ".lab.lock").unlink()
        if lock is not None:
            lock.close()
        if info.get("created_dir"):
            with contextlib.suppress(OSError):
                d.rmdir()


def status(lab_dir: str | os.PathLike[str]) -> dict:
    """What runs in D: the lab's state, each node's processes and pods, the faults."""
    d = Path(lab_dir).resolve()
    info = _read_info(d)
    if info is None:
        return {"dir": str(d), "up": False, "state": "absent"}
    alive = _daemon_alive(info)
    nodes = []
    for n in info.get("nodes") or []:
        nodes.append({
            "name": n["name"], "role": n.get("role"), "ip": n.get("ip"), "netns": n.get("netns"),
            "pod_cidr": n.get("pod_cidr"), "anchor_alive": N.pid_alive(n.get("init_pid")),
            "sshd_alive": N.pid_alive(n.get("sshd_pid")), "netns_present": N.netns_exists(n.get("netns", "")),
            "pods": [{"namespace": p["namespace"], "name": p["name"], "ip": p.get("ip"),
                      "alive": N.pid_alive(p.get("pid"))} for p in n.get("pods") or []],
            "system_pods": n.get("system_pods", {}),
        })
    return {"dir": str(d), "up": alive and info.get("state") == "ready", "state": info.get("state"),
            "shape": info.get("shape", "kubeadm"), "ip_family": info.get("ip_family", "ipv4"),
            "daemon_alive": alive, "lab_id": info.get("lab_id"), "api": info.get("api"),
            "bridge": info.get("bridge"), "nodes": nodes, "faults": info.get("faults", []),
            "kubeconfig": str(d / "kubeconfig"), "ssh_config": str(d / "ssh_config")}
