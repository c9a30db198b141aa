"""Issue 13, item 3: a worker's kubeconfig is judged from the node and repaired to the cluster's
own API address (kubelet.conf, cluster-info, the kubernetes endpoints), never the workstation's;
the write runs only when, on the node, the current server fails and the new one answers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

from clusterfix_tui.core.checks import kubeconfig
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import default_approved
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

STEP = get_step("worker_kubeconfig")
GOOD = "https://10.0.0.10:6443"  # the control plane's address on the node network
TUNNEL = "https://127.0.0.1:16443"  # what the workstation uses (an SSH tunnel)
DEAD = "https://10.0.0.250:6443"


def _snap(tunnel: str = TUNNEL) -> ClusterSnapshot:
    def n(name: str, ip: str, cp: bool) -> NodeInfo:
        return NodeInfo(name, ip, (), None, {"Ready": {"status": "True"}}, {},
                        {"node-role.kubernetes.io/control-plane": ""} if cp else {}, "v1.30")
    return ClusterSnapshot(api={"server": tunnel, "context": "tunnel"},
                           nodes={"cp": n("cp", "10.0.0.10", True),
                                  "w1": n("w1", "10.0.0.11", False),
                                  "w2": n("w2", "10.0.0.12", False)})


def _facts(node: str, user: str | None, rc: int, kubelet: str | None = GOOD) -> NodeFacts:
    files = {}
    if kubelet:
        files["/etc/kubernetes/kubelet.conf"] = kubelet
    if user:
        files["/root/.kube/config"] = user
    return NodeFacts(node=node, complete=True, kubeconfigs=files, kubectl_rc=rc,
                     kubectl_error=None if rc == 0 else "dial tcp: connect: no route to host")


def test_a_worker_whose_kubeconfig_works_from_the_node_is_never_rewritten() -> None:
    # the workstation reaches the API through a tunnel; w1 uses the internal address: fine
    facts = {"w1": _facts("w1", GOOD, 0), "w2": _facts("w2", GOOD, 0)}
    assert kubeconfig.check(_snap(), facts) == []
    # even a server that differs from every other view is left alone when it works from the node
    facts = {"w1": _facts("w1", "https://lb.internal:6443", 0)}
    assert kubeconfig.check(_snap(), facts) == []
    diag = SimpleNamespace(findings=[], facts=facts, snapshot=_snap())
    assert STEP.plan(diag).actions == ()


def test_a_dead_server_is_rewritten_to_the_clusters_own_address_not_the_workstations() -> None:
    facts = {"w1": _facts("w1", DEAD, 1), "w2": _facts("w2", GOOD, 0)}
    (f,) = kubeconfig.check(_snap(), facts)
    assert f.node == "w1" and f.data["reason"] == "wrong-server"
    assert f.data["expected_server"] == GOOD
    assert f.data["server_candidates"][0] == {"server": GOOD,
                                              "source": "w1:/etc/kubernetes/kubelet.conf"}
    assert TUNNEL not in str(f.data) and TUNNEL not in " ".join(f.evidence)
    plan = STEP.plan(SimpleNamespace(findings=[f], facts=facts, snapshot=_snap()))
    write = next(a for a in plan.actions if a.change and a.change.get("after") == GOOD)
    assert write.id in default_approved(plan)
    assert TUNNEL not in write.command and "CFX_SERVER=https://10.0.0.10:6443" in write.command
    pre = write.precondition
    assert pre is not None and pre.kind == "shell"
    assert "--server https://10.0.0.10:6443" in pre.command
    assert "kubectl --kubeconfig /root/.kube/config get --raw /version" in pre.command


def test_without_kubelet_conf_the_api_published_address_is_used() -> None:
    facts = {"w1": _facts("w1", DEAD, 1, kubelet=None)}
    (f,) = kubeconfig.check(_snap(), facts)
    assert f.data["expected_server"] is None and f.data["reason"] == "kubectl-fails"

    class API:
        def get_configmap(self, ns, name):
            assert (ns, name) == ("kube-public", "cluster-info")
            return {"data": {"kubeconfig": "clusters:\n- cluster:\n    server: https://10.0.0.10:6443\n"
                                           "  name: ''\n"}}

        def list_endpoints(self, ns):
            return [{"metadata": {"name": "kubernetes"},
                     "subsets": [{"addresses": [{"ip": "10.0.0.10"}], "ports": [{"port": 6443}]}]}]

    diag = SimpleNamespace(findings=[f], facts=facts, snapshot=_snap())
    extra = STEP.gather(API(), diag)
    assert [s["server"] for s in extra["servers"]] == [GOOD, GOOD]


def _fake_kubectl(tmp: Path, answering: set[str], configs: dict[str, str]) -> dict[str, str]:
    """A kubectl on PATH that answers /version when the server it would use is in `answering`
    (the server of --kubeconfig's file, or --server)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(
        "#!/bin/sh\ncfg=; srv=\nwhile [ $# -gt 0 ]; do case \"$1\" in\n"
        "--kubeconfig) cfg=$2; shift;; --server) srv=$2; shift;; esac; shift; done\n"
        "[ -n \"$srv\" ] || srv=$(sed -n 's/^ *server: *//p' \"$cfg\" 2>/dev/null)\n"
        f"case \" {' '.join(sorted(answering))} \" in *\" $srv \"*) echo ok; exit 0;; esac\n"
        "exit 1\n")
    (bin_dir / "kubectl").chmod(0o755)
    for path, server in configs.items():
        (tmp / path).write_text(f"clusters:\n- cluster:\n    server: {server}\n")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _run_pre(pre, tmp: Path, env: dict[str, str]) -> int:
    return subprocess.run(["sh", "-c", pre.command], cwd=tmp, env=env, capture_output=True,
                          timeout=30, check=False).returncode


def test_the_precondition_checks_both_servers_from_the_node(tmp_path: Path) -> None:
    from clusterfix_tui.core.fixes.worker_kubeconfig import verify_server_precondition

    pre = verify_server_precondition("config", GOOD, "config", missing=False)
    cases = [({GOOD}, DEAD, 0),          # current fails, the new one answers: write
             ({GOOD, DEAD}, DEAD, 3),    # current answers (from the node): already fine
             (set(), DEAD, 4)]           # neither answers from the node: never written
    for i, (answering, current, want) in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        env = _fake_kubectl(d, answering, {"config": current})
        assert _run_pre(pre, d, env) == want, (answering, current)
    # missing file, written from kubelet.conf: the new server is checked with the node's creds
    pre = verify_server_precondition("kubelet.conf", GOOD, "missing-config", missing=True)
    d = tmp_path / "m"
    d.mkdir()
    env = _fake_kubectl(d, {GOOD}, {"kubelet.conf": DEAD})
    assert _run_pre(pre, d, env) == 0
    env = _fake_kubectl_none(d)
    assert _run_pre(pre, d, env) == 4  # no kubectl: cannot check, so nothing is written


def _fake_kubectl_none(d: Path) -> dict[str, str]:
    empty = d / "empty-bin"
    empty.mkdir()
    for tool in ("sh", "sed", "cat"):
        src = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                             text=True, check=False).stdout.strip()
        if src:
            (empty / tool).symlink_to(src)
    return {"PATH": str(empty)}
