"""Validation with the workstation cut off from NodePorts, on a real lab (issue #17 item 4).

`lab.workstation.block_nodeports` makes every node drop tcp 30000-32767 coming from this machine
(a netdev ingress filter inside each node's namespace: a firewall between here and the nodes).
One 12-node lab is shared by the tests (more than ECHO_ALL_MAX, so it has the big lab's shape:
net-echo pods on three nodes only, and more nodes than the NodePort sample). The block is
undone after each test that sets it.
"""

from __future__ import annotations

import threading

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.core.validate import NODEPORT_SAMPLE, validate
from clusterfix_tui.lab import workstation
from clusterfix_tui.runtime import build_runtime

pytestmark = pytest.mark.lab

NODES = 12
lab = lab_fixture(nodes=NODES)


def _connect_here(ip: str, port: int, timeout: float = 2.0) -> str:
    return workstation._connect(ip, port, timeout)  # the lab's own connect from here


def _connect_from(lab, node: str, ip: str, port: int) -> int:
    return lab.exec(node, "timeout 3 bash -c 'exec 3<>\"/dev/tcp/$1/$2\"' cfx " f"{ip} {port}",
                    check=False).returncode


@pytest.fixture()
def blocked(lab):
    workstation.block_nodeports(lab)
    try:
        yield lab
    finally:
        workstation.open_nodeports(lab)


def test_the_knob_blocks_nodeports_from_here_only_and_its_undo_opens_them(lab):
    port = int(lab.info["nodeport"])
    first, last = lab.nodes[0], lab.nodes[-1]
    assert _connect_here(last["ip"], port) == "connected"  # open before
    rec = workstation.block_nodeports(lab)
    try:
        assert rec["physical"], rec["detail"]
        assert [f["name"] for f in lab.info["faults"]].count(workstation.NAME) == 1
        for n in (first, last):
            assert _connect_here(n["ip"], port) == "timed out"  # dropped, not refused
        # the nodes still reach each other's NodePorts, and SSH from here still passes
        assert _connect_from(lab, first["name"], last["ip"], port) == 0
        assert _connect_from(lab, last["name"], first["ip"], port) == 0
        assert _connect_here(last["ip"], 22) == "connected"
        workstation.block_nodeports(lab)  # twice: still one filter, one record
        assert [f["name"] for f in lab.info["faults"]].count(workstation.NAME) == 1
        assert lab.exec(last["name"], f"nft list table netdev {workstation.TABLE}").stdout.count(
            "drop") == 1
    finally:
        workstation.open_nodeports(lab)
    assert _connect_here(last["ip"], port) == "connected"
    assert workstation.NAME not in [f["name"] for f in lab.info["faults"]]
    assert lab.exec(last["name"], f"nft list table netdev {workstation.TABLE}",
                    check=False).returncode != 0


class CountingProber:
    """The runtime's real prober, counted: how many probes left this workstation."""

    def __init__(self, inner):
        self.inner, self.http_calls, self.tcp_calls = inner, 0, 0
        self.lock = threading.Lock()

    def http(self, url, timeout):
        with self.lock:
            self.http_calls += 1
        return self.inner.http(url, timeout)

    def tcp(self, host, port, timeout):
        with self.lock:
            self.tcp_calls += 1
        return self.inner.tcp(host, port, timeout)


def _validate(lab):
    rt = build_runtime(lab_dir=str(lab.dir))
    prober = CountingProber(rt.prober)
    try:
        return validate(rt.api, rt.shells, None, prober=prober, timeout=3.0), prober
    finally:
        rt.close()


def test_validate_with_the_workstation_blocked_says_so_once_and_probes_from_a_node(blocked):
    res, prober = _validate(blocked)
    path = [r for r in res if r.name == "nodeport-path"]
    assert len(path) == 1, [r.detail for r in path]
    assert "this workstation cannot reach NodePorts" in path[0].detail
    via = path[0].detail.rsplit("every NodePort probe runs from ", 1)[1].split()[0]
    assert prober.http_calls <= 3 and prober.tcp_calls <= 3  # the canary only
    np = [r for r in res if r.name == "nodeport" and r.target != "cluster"]
    assert np and len(np) <= NODEPORT_SAMPLE < NODES  # one port, sampled nodes, said so
    assert all(f" from {via}: connected" in r.detail and r.passed for r in np), \
        [r.detail for r in np if not r.passed]
    scope = [r for r in res if r.name == "nodeport-scope"]
    assert len(scope) == 1 and "sampled" in scope[0].detail
    # nothing else is blamed on the cluster: the lab is healthy
    assert [r for r in res if not r.passed] == []
    assert {r.target for r in res if r.name == "node-ready"} == {n["name"] for n in blocked.nodes}


def test_validate_with_the_workstation_open_probes_from_here(lab):
    res, prober = _validate(lab)
    assert not [r for r in res if r.name == "nodeport-path"]
    np = [r for r in res if r.name == "nodeport" and r.target != "cluster"]
    assert np and all(r.passed and "-> HTTP " in r.detail for r in np)
    assert prober.http_calls == len(np)
    assert [r for r in res if not r.passed] == []


def test_no_node_holds_a_mount_of_any_network_namespace(lab):
    """node_init unmounts its copy of /run/netns/* (one umount for all): a node that kept one
    would pin that namespace (another node's, another lab's) after `lab down` deleted it."""
    for n in lab.nodes:
        mounts = open(f"/proc/{n['init_pid']}/mounts").read().splitlines()
        assert not [m for m in mounts if m.split()[1].startswith("/run/netns/")], n["name"]
