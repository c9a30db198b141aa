"""Validation that scales (core/validate.py NodePort part), with real sockets on loopback.

Nodes are API objects whose InternalIP is a loopback address: 127.0.0.1 has a real HTTP server on
the NodePort, 127.0.0.2.. have nothing listening (connection refused, at once). The workstation
prober is the real StdlibProber, except in the "cut off" test where a prober that never gets an
answer stands for a firewall between the workstation and the nodes; the node's shell is then a
real LocalShell whose bash connects to the loopback port.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from clusterfix_tui.core.validate import validate
from clusterfix_tui.transports.local import LocalShell
from clusterfix_tui.transports.probe import StdlibProber


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _node(name, ip):
    return {"metadata": {"name": name, "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                       "conditions": [{"type": "Ready", "status": "True"}]}}


class API:
    def __init__(self, nodes, services, endpoints=()):
        self.nodes, self.services, self.endpoints = nodes, services, list(endpoints)
        self.calls = []

    def list_nodes(self):
        return self.nodes

    def list_pods(self, namespace=None, label_selector=None):
        return []

    def list_services(self, namespace=None):
        return self.services

    def list_endpoints(self, namespace=None):
        self.calls.append("list_endpoints")
        return self.endpoints


def _svc(name, port, local=False, ns="default"):
    spec = {"type": "NodePort", "ports": [{"port": 80, "nodePort": port, "protocol": "TCP"},
                                          {"port": 81, "nodePort": port + 1, "protocol": "TCP"}]}
    if local:
        spec["externalTrafficPolicy"] = "Local"
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def _nodes(n):
    # node-1 is 127.0.0.1 (the server listens there); the others refuse
    return [_node(f"node-{i}", f"127.0.0.{i}") for i in range(1, n + 1)]


def _np(results):
    return {r.target: r for r in results if r.name == "nodeport"}


def _shells(node, address=None):
    return LocalShell(node, shell="/bin/bash")


def test_one_port_per_service_sampled_nodes_and_all_nodes_for_the_focus(server):
    api = API(_nodes(12), [_svc("web", server), _svc("other", server)])
    res = validate(api, _shells, prober=StdlibProber(), focus=["web"], sample=3, timeout=2)
    np = _np(res)
    web = {t for t in np if t.startswith("default/web@")}
    other = {t for t in np if t.startswith("default/other@")}
    assert len(web) == 12 and len(other) == 3  # every node for the focus, 3 sampled for the rest
    assert np["default/web@node-1"].passed and "HTTP 200" in np["default/web@node-1"].detail
    assert not np["default/web@node-2"].passed and np["default/web@node-2"].fix_step == "iptables"
    assert all(str(server + 1) not in r.detail for r in np.values())  # one port per service
    scope = [r for r in res if r.name == "nodeport-scope"]
    assert len(scope) == 1 and "sampled" in scope[0].detail and "9 service/node pairs not " \
        "probed" in scope[0].detail and "every node for web" in scope[0].detail


def test_external_traffic_policy_local_only_nodes_with_endpoints(server):
    eps = [{"metadata": {"name": "loc", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.244.0.5", "nodeName": "node-1"}]}]}]
    api = API(_nodes(4), [_svc("loc", server, local=True)], eps)
    res = validate(api, _shells, prober=StdlibProber(), timeout=2)
    np = _np(res)
    assert set(np) == {"default/loc@node-1"} and np["default/loc@node-1"].passed
    scope = next(r for r in res if r.name == "nodeport-scope")
    assert "3 service/node pairs of externalTrafficPolicy: Local" in scope.detail
    assert not [r for r in res if not r.passed and r.name.startswith("nodeport")]


class Firewalled:
    """A workstation whose packets to the nodes are dropped: nothing ever answers."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def http(self, url, timeout):
        with self.lock:
            self.calls += 1
        return None, "TimeoutError: timed out"

    def tcp(self, host, port, timeout):
        return False, "TimeoutError: timed out"


def test_workstation_cut_off_from_nodeports_detected_once_then_probed_from_a_node(server):
    prober = Firewalled()
    api = API(_nodes(6), [_svc("web", server), _svc("b", server), _svc("c", server)])
    res = validate(api, _shells, prober=prober, timeout=2)
    path = [r for r in res if r.name == "nodeport-path"]
    assert len(path) == 1 and "this workstation cannot reach NodePorts" in path[0].detail
    assert prober.calls <= 3  # the canary only: not one wait per service x node
    np = _np(res)
    assert len(np) == 18
    # from the node (real bash /dev/tcp on loopback): node-1's port answers, the others refuse
    assert all(np[f"{s}@node-1"].passed for s in ("default/web", "default/b", "default/c"))
    assert all("from node-1" in r.detail for r in np.values())
    assert not np["default/web@node-2"].passed and np["default/web@node-2"].fix_step == "iptables"


class Hanging:
    """A listener that accepts and never answers: every HTTP probe waits its whole timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(200)
        self.port = self.sock.getsockname()[1]


def test_global_deadline_reports_what_was_not_probed():
    h = Hanging()
    try:
        api = API([_node(f"node-{i}", "127.0.0.1") for i in range(1, 5)],
                  [_svc(f"s{i}", h.port) for i in range(3)])
        res = validate(api, _shells, prober=StdlibProber(), timeout=3, deadline=0.5)
        np = _np(res)
        assert len(np) == 12
        late = [r for r in np.values() if "deadline passed" in r.detail]
        assert late and all(not r.passed and r.fix_step is None for r in late)
    finally:
        h.sock.close()


class _StuckShell:
    """A node whose every command hangs until released (or its own timeout)."""

    def __init__(self, release: threading.Event, fast: set[str], name: str):
        self.release, self.fast, self.name = release, fast, name

    def run(self, command, *, timeout=60.0, **kw):
        from clusterfix_tui.core.ports import CommandResult

        if self.name in self.fast:
            return CommandResult(0, "10.244.1.5 dev flannel.1 src 10.244.0.0\n")
        self.release.wait(timeout)
        return CommandResult(None, timed_out=True, error="released")


def _echo_pod(node, ip):
    return {"metadata": {"name": f"echo-{node}", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip}}


def test_node_checks_share_one_deadline_and_what_missed_it_is_said_not_waited_for():
    release = threading.Event()
    api = API(_nodes(6), [])
    api.list_pods = lambda namespace=None, label_selector=None: [
        _echo_pod(f"node-{i}", f"10.244.{i}.5") for i in range(1, 7)]
    fast = {"node-1", "node-2"}
    try:
        res = validate(api, lambda n, a=None: _StuckShell(release, fast, n), timeout=3,
                       node_deadline=0.5)
    finally:
        release.set()
    p2p = {r.target.split("->")[0]: r for r in res if r.name == "pod-to-pod"}
    kube = {r.target: r for r in res if r.name == "worker-kubectl"}
    assert set(p2p) == {f"node-{i}" for i in range(1, 7)}
    assert p2p["node-1"].passed and p2p["node-2"].passed
    for i in range(3, 7):
        r = p2p[f"node-{i}"]
        assert not r.passed and "not checked: the 0.5s deadline" in r.detail and r.fix_step is None
        assert not kube[f"node-{i}"].passed and "deadline" in kube[f"node-{i}"].detail
    # every node's results in the order the checks were started: node by node
    order = [r.target.split("->")[0] for r in res if r.name in ("pod-to-pod", "worker-kubectl")]
    assert order == sorted(order, key=lambda t: int(t.split("-")[1]))


class _CountingShell:
    """A real LocalShell that counts the commands run through it and says when one started."""

    def __init__(self, started: threading.Event, counter: list[str], name: str):
        self.inner = LocalShell(name, shell="/bin/bash")
        self.started, self.counter = started, counter

    def run(self, command, **kw):
        self.counter.append(command)
        self.started.set()
        return self.inner.run(command, **kw)


class _WaitsForTheNode(Firewalled):
    """A firewalled workstation whose HTTP probes hang until a node's shell has been asked (or
    their timeout): was the node's probe run started while the canaries still waited here?"""

    def __init__(self, node_started: threading.Event, tcp_called: threading.Event):
        super().__init__()
        self.node_started, self.tcp_called = node_started, tcp_called
        self.seen_node = []
        self.seen_tcp = []

    def http(self, url, timeout):
        self.seen_tcp.append(self.tcp_called.wait(timeout))
        self.seen_node.append(self.node_started.wait(timeout))
        return super().http(url, timeout)

    def tcp(self, host, port, timeout):
        self.tcp_called.set()
        return super().tcp(host, port, timeout)


def test_cut_off_workstation_the_node_probes_start_while_the_canaries_wait_and_run_once(server):
    """The TCP reach check runs alongside the HTTP canaries (not after them), and once it has
    failed everywhere the node's probes start while the canaries still wait; the canaries and
    the rest go to the node in one command (<= NODE_BATCH probes), not the canaries first and
    then everything again. Same results as before: every probe from the node."""
    node_started, tcp_called = threading.Event(), threading.Event()
    prober = _WaitsForTheNode(node_started, tcp_called)
    commands: list[str] = []
    api = API(_nodes(6), [_svc("web", server), _svc("b", server), _svc("c", server)])
    res = validate(api, lambda n, a=None: _CountingShell(node_started, commands, n),
                   prober=prober, timeout=2)
    assert all(prober.seen_tcp) and len(prober.seen_tcp) == 3
    assert all(prober.seen_node)  # the node was asked while the canaries were still waiting
    nodeport_cmds = [c for c in commands if "cfx-np" in c]
    assert len(nodeport_cmds) == 1  # one command for all 18 probes
    assert prober.calls <= 3
    path = [r for r in res if r.name == "nodeport-path"]
    assert len(path) == 1 and "this workstation cannot reach NodePorts: none of 3 answered from " \
        "here, 1 answered from node-1" in path[0].detail
    np = _np(res)
    assert len(np) == 18 and all("from node-1" in r.detail for r in np.values())
    assert all(np[f"{s}@node-1"].passed for s in ("default/web", "default/b", "default/c"))
    assert not np["default/web@node-2"].passed
    # emitted in the jobs' order: service by service, node by node
    order = [r.target for r in res if r.name == "nodeport"]
    assert order == [f"default/{s}@node-{i}" for s in ("web", "b", "c") for i in range(1, 7)]


class _OneSlowCanary:
    """node-2's HTTP probe hangs until another probe of the rest has started (or its timeout);
    node-1 answers at once: do the other probes wait for the slowest canary?"""

    def __init__(self):
        self.rest_started = threading.Event()
        self.slow_saw_rest = []
        self.inner = StdlibProber()

    def http(self, url, timeout):
        host = url.split("//", 1)[1].split(":", 1)[0]
        if host == "127.0.0.2" and "/other" not in url:
            self.slow_saw_rest.append(self.rest_started.wait(timeout))
            return None, "TimeoutError: timed out"
        if host not in ("127.0.0.1", "127.0.0.3"):
            self.rest_started.set()
        return self.inner.http(url, timeout)

    def tcp(self, host, port, timeout):
        return self.inner.tcp(host, port, timeout)


def test_the_rest_of_the_probes_start_once_one_canary_answered(server):
    prober = _OneSlowCanary()
    api = API(_nodes(5), [_svc("web", server)])
    res = validate(api, _shells, prober=prober, timeout=2)
    assert prober.slow_saw_rest == [True]  # the rest did not wait for the slow canary
    np = _np(res)
    assert len(np) == 5 and np["default/web@node-1"].passed
    assert not np["default/web@node-2"].passed and "did not answer" in np["default/web@node-2"].detail
    assert not [r for r in res if r.name == "nodeport-path"]  # this workstation reaches them
    order = [r.target for r in res if r.name == "nodeport"]
    assert order == [f"default/web@node-{i}" for i in range(1, 6)]
