"""Every fault of the lab's catalog breaks traffic (or a pod, or kubectl) for real, and the lab's
agents recover once the root cause is removed by hand and the pod is restarted through the API.

Each per-fault test has a 3-node lab of its own (node-1 control plane, node-2 runs jellyfin,
node-3 a worker); it injects one fault, shows the breakage from outside (HTTP from the root
namespace to the NodePort, from pod namespaces, `iptables`/`kubectl` inside the node like SSH, pod
status and logs through the official kubernetes client), removes the cause by hand, restarts the
affected pod through the API and shows traffic flowing again. A second lab comes up with
`--faults all`.
"""

from __future__ import annotations

import json
import shlex
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

NODEPORT = 30096
CLUSTER_IP = "10.96.96.96"


# -- helpers -------------------------------------------------------------------------------------

def http_get(ip: str, port: int = NODEPORT, timeout: float = 2.0) -> tuple[bool, str]:
    """(answered 2xx, error text) for GET http://ip:port/ from the root namespace."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=timeout) as r:
            return 200 <= r.status < 300, ""
    except urllib.error.URLError as e:
        return False, str(e.reason)
    except OSError as e:
        return False, str(e)


def wait_for(fn: Callable[[], object], timeout: float = 30.0, step: float = 0.5, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last={last!r}")


class Api:
    """The official kubernetes client on the lab's kubeconfig. Responses are read as JSON
    (_preload_content=False): the lab's pods carry ownerReferences without uid, which the client's
    model classes reject."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    def pods(self, namespace: str, selector: str, node: str) -> list[dict]:
        r = self.core.list_namespaced_pod(namespace, label_selector=selector,
                                          field_selector=f"spec.nodeName={node}", _preload_content=False)
        return [p for p in json.loads(r.data)["items"] if p["spec"].get("nodeName") == node]

    def pod(self, namespace: str, selector: str, node: str) -> dict:
        pods = self.pods(namespace, selector, node)
        assert len(pods) == 1, pods
        return pods[0]

    def log(self, namespace: str, name: str) -> str:
        return self.core.read_namespaced_pod_log(name, namespace)

    def delete(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_pod(name, namespace, _preload_content=False)

    def restart(self, namespace: str, selector: str, node: str, timeout: float = 30) -> dict:
        """`kubectl delete pod` the pod on node, wait for its replacement to run."""
        old = self.pod(namespace, selector, node)["metadata"]["name"]
        self.delete(namespace, old)

        def new_running() -> dict | None:
            for p in self.pods(namespace, selector, node):
                if p["metadata"]["name"] != old and running(p):
                    return p
            return None

        return wait_for(new_running, timeout, what=f"a new running {selector} pod on {node}")  # type: ignore[return-value]


def running(pod: dict) -> bool:
    cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
    return "running" in (cs.get("state") or {})


def waiting_reason(pod: dict) -> str:
    cs = (pod.get("status", {}).get("containerStatuses") or [{}])[0]
    return ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")


KUBE_PROXY = ("kube-system", "k8s-app=kube-proxy")
FLANNEL = ("kube-flannel", "app=flannel")


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A lab per test: each test breaks it (and no test may depend on another's repair)."""
    from clusterfix_tui.lab import cluster

    d = tmp_path_factory.mktemp("faults-lab") / "lab"
    handle = cluster.up(d, nodes=3, faults="none", timeout=180)
    try:
        yield handle
    finally:
        cluster.down(d)


@pytest.fixture
def api(lab) -> Api:
    return Api(lab.kubeconfig)


@pytest.fixture
def ips(lab) -> dict[str, str]:
    return {n["name"]: n["ip"] for n in lab.nodes}


@pytest.fixture
def healthy(lab, ips) -> dict[str, str]:
    """The lab is healthy before the test: every node answers on the NodePort."""
    for name, ip in ips.items():
        wait_for(lambda ip=ip: http_get(ip)[0], 30, what=f"NodePort on {name} ({ip}) answering")
    return ips


def jellyfin(lab) -> dict:
    pods = lab.pods("jellyfin")
    assert len(pods) == 1
    return pods[0]


def echo_pod(lab, node: str) -> dict:
    return next(p for p in lab.pods("net-echo") if p["node"] == node)


def pod_curl(lab, pod: dict, url: str, timeout: float = 2) -> tuple[int, str]:
    r = lab.pod_exec(pod["namespace"], pod["name"], ["curl", "-sS", "-m", str(timeout), "-o", "/dev/null", url],
                     check=False, timeout=timeout + 5)
    return r.returncode, r.stderr.strip()


def sh(lab, node: str, cmd: str, timeout: float = 30):
    return lab.exec(node, cmd, check=False, timeout=timeout)


# -- one test per fault --------------------------------------------------------------------------

@pytest.mark.lab
def test_iptables_shadow(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "iptables-shadow")
    node = rec["node"]
    assert node != jellyfin(lab)["node"] and rec["physical"] is True
    assert "iptables-legacy" in rec["detail"]
    ok, err = http_get(healthy[node])
    # the legacy DNAT sends it to a pod IP nobody has: the client's 2 s timeout, or the ICMP host
    # unreachable of the failed ARP on the pod's node (~3 s, first on a busy machine); not refused
    assert not ok and ("timed out" in err or "No route to host" in err), err
    assert all(http_get(ip)[0] for n, ip in healthy.items() if n != node)
    # what the node's tools say: only the nft rules, plus the legacy warning
    r = sh(lab, node, "iptables-save -t nat")
    assert "iptables-legacy tables present" in r.stderr
    assert "10.244.1.251" in sh(lab, node, "iptables-legacy-save -t nat").stdout

    # by hand: drop every KUBE-* rule and chain from the legacy nat table
    sh(lab, node, "iptables-legacy -t nat -F && iptables-legacy-save -t nat | sed -n 's/^:\\(KUBE-[^ ]*\\).*/\\1/p' "
                  "| while read c; do iptables-legacy -t nat -X \"$c\"; done")
    assert "KUBE-" not in sh(lab, node, "iptables-legacy-save -t nat").stdout
    api.restart(*KUBE_PROXY, node)
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort back after the fix")


@pytest.mark.lab
def test_iptables_shadow_is_cosmetic_when_the_other_hook_is_older(lab, api, healthy):
    """The other side of the kernel fact: when the legacy nat hook was registered before
    kube-proxy's nft one, the same stale rules do not win; the fault says physical: false."""
    from clusterfix_tui.lab import faults as F

    node = "node-1"
    # register legacy nat first, then re-create kube-proxy's nft nat table (same rules)
    r = sh(lab, node, "iptables-legacy -t nat -S >/dev/null && iptables-nft-save -t nat > /run/cfx-nat.save "
                      "&& nft delete table ip nat && iptables-nft-restore < /run/cfx-nat.save && rm /run/cfx-nat.save")
    assert r.returncode == 0, r.stderr
    assert http_get(healthy[node])[0]
    rec = F.inject(lab, "iptables-shadow", node)
    assert rec["physical"] is False and "cosmetic" in rec["detail"]
    assert http_get(healthy[node])[0]  # still answers: kube-proxy's nft DNAT runs first
    sh(lab, node, "iptables-legacy -t nat -F && iptables-legacy-save -t nat | sed -n 's/^:\\(KUBE-[^ ]*\\).*/\\1/p' "
                  "| while read c; do iptables-legacy -t nat -X \"$c\"; done")
    assert "KUBE-" not in sh(lab, node, "iptables-legacy-save -t nat").stdout


@pytest.mark.lab
def test_iptables_foreign_rule(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "iptables-foreign-rule")
    node = rec["node"]
    assert rec["physical"] is True
    chain = rec["detail"].split("nft add rule ip nat ", 1)[1].split(" ", 1)[0]
    assert chain.startswith("KUBE-SEP-")
    r = sh(lab, node, f"iptables -t nat -L {chain} -n")
    assert r.returncode != 0
    assert f"chain `{chain}' in table `nat' is incompatible, use 'nft' tool." in r.stderr
    r = sh(lab, node, "iptables -t nat -L -n")
    assert r.returncode != 0 and "table `nat' is incompatible, use 'nft' tool." in r.stderr
    assert "# Table `nat' is incompatible, use 'nft' tool." in sh(lab, node, "iptables-save -t nat").stdout
    # kube-proxy there was restarted by the fault: its sync cannot read the nat table back
    pod = api.pod(*KUBE_PROXY, node)
    assert waiting_reason(pod) == "CrashLoopBackOff"
    assert f"chain `{chain}' in table `nat' is incompatible, use 'nft' tool." in api.log(
        "kube-system", pod["metadata"]["name"])
    assert http_get(healthy[node])[0]  # the rules already programmed still work

    # by hand: find the nft-only rule by its handle and delete it
    listing = sh(lab, node, f"nft -a list chain ip nat {chain}").stdout
    line = next(x for x in listing.splitlines() if "ct state new" in x)
    handle_no = line.rsplit("# handle ", 1)[1].strip()
    assert sh(lab, node, f"nft delete rule ip nat {chain} handle {handle_no}").returncode == 0
    assert sh(lab, node, "iptables -t nat -L -n").returncode == 0
    api.restart(*KUBE_PROXY, node)
    assert sh(lab, node, f"iptables -t nat -S {chain}").returncode == 0
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort after the fix")


@pytest.mark.lab
def test_forward_drop(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "forward-drop")
    node = rec["node"]
    assert rec["physical"] is True
    ok, err = http_get(healthy[node])
    assert not ok and "timed out" in err, err
    # what `iptables` (nft) on the node shows: policy ACCEPT; the DROP is in the other backend
    assert "-P FORWARD ACCEPT" in sh(lab, node, "iptables -S FORWARD").stdout
    assert "-P FORWARD DROP" in sh(lab, node, "iptables-legacy -S FORWARD").stdout

    sh(lab, node, "iptables-legacy -P FORWARD ACCEPT")
    api.restart(*KUBE_PROXY, node)
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort after the fix")


@pytest.mark.lab
def test_kube_proxy_crashloop(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "kube-proxy-crashloop")
    node = rec["node"]
    assert rec["physical"] is True
    ok, err = http_get(healthy[node])
    assert not ok and "refused" in err.lower(), err
    assert "KUBE-NODEPORTS" not in sh(lab, node, "iptables-save -t nat").stdout
    pod = api.pod(*KUBE_PROXY, node)
    assert waiting_reason(pod) == "CrashLoopBackOff"
    assert "Failed to retrieve node info" in api.log("kube-system", pod["metadata"]["name"])
    # the controller keeps it down (back-off) until the pod is replaced
    lab.reconcile()
    assert not http_get(healthy[node], timeout=1)[0]

    api.restart(*KUBE_PROXY, node)
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort after kube-proxy restarted")


@pytest.mark.lab
def test_ip_forward_off(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "ip-forward-off")
    node = rec["node"]
    assert rec["physical"] is True
    ok, err = http_get(healthy[node])
    assert not ok and "timed out" in err, err
    assert sh(lab, node, "sysctl -n net.ipv4.ip_forward").stdout.strip() == "0"

    sh(lab, node, "sysctl -w net.ipv4.ip_forward=1")
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort after ip_forward=1")


@pytest.mark.lab
def test_worker_kubeconfig(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, "worker-kubeconfig")
    node = rec["node"]
    assert lab.node(node)["role"] == "worker" and rec["physical"] is True
    r = sh(lab, node, "kubectl --request-timeout=8s get nodes", timeout=30)
    assert r.returncode != 0
    assert "no route to host" in r.stderr or "i/o timeout" in r.stderr, r.stderr

    # by hand: a good kubeconfig (the lab's admin kubeconfig; its server is the bridge address)
    good = Path(lab.kubeconfig).read_text()
    lab.exec(node, "umask 077 && cat > /root/.kube/config", input=good)
    r = sh(lab, node, "kubectl --request-timeout=8s get nodes -o name", timeout=30)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["node/node-1", "node/node-2", "node/node-3"]


@pytest.mark.lab
def test_firewall_reject(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    jf = jellyfin(lab)
    rec = F.inject(lab, "firewall-reject")
    node = rec["node"]
    assert node == jf["node"] and rec["physical"] is True
    other = next(n for n in healthy if n != node)
    ok, err = http_get(healthy[other])
    assert not ok and "No route to host" in err, err
    rc, err = pod_curl(lab, echo_pod(lab, other), f"http://{jf['ip']}:8096/")
    assert rc == 7, (rc, err)
    # kube-proxy's KUBE-FORWARD accepts its own marked NodePort traffic before the REJECT
    assert http_get(healthy[node])[0]

    for chain in ("INPUT", "FORWARD"):
        sh(lab, node, f"iptables -D {chain} -j REJECT --reject-with icmp-host-prohibited")
    wait_for(lambda: http_get(healthy[other])[0], 20, what="NodePort via another node after the fix")
    assert pod_curl(lab, echo_pod(lab, other), f"http://{jf['ip']}:8096/")[0] == 0


@pytest.mark.lab
def test_br_netfilter_off(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    jf = jellyfin(lab)
    client = echo_pod(lab, jf["node"])
    url = f"http://{CLUSTER_IP}:8096/"
    assert pod_curl(lab, client, url)[0] == 0  # works before
    rec = F.inject(lab, "br-netfilter-off")
    node = rec["node"]
    assert node == jf["node"] and rec["physical"] is True
    rc, err = pod_curl(lab, client, url)
    assert rc == 28, (rc, err)  # the un-NATed reply is dropped by the client: timeout
    # routed paths are not affected
    assert all(http_get(ip)[0] for ip in healthy.values())

    sh(lab, node, "sysctl -w net.bridge.bridge-nf-call-iptables=1")
    wait_for(lambda: pod_curl(lab, client, url)[0] == 0, 15, what="same-node ClusterIP after the fix")


@pytest.mark.lab
def test_flannel_stale_vtep(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    jf = jellyfin(lab)
    rec = F.inject(lab, "flannel-stale-vtep")
    node = rec["node"]
    assert node == jf["node"] and rec["physical"] is True
    peers = [n for n in healthy if n != node]
    for p in peers:
        ok, err = http_get(healthy[p])
        assert not ok and "timed out" in err, (p, err)
        assert pod_curl(lab, echo_pod(lab, p), f"http://{jf['ip']}:8096/")[0] != 0
    assert http_get(healthy[node])[0]  # the endpoint's own node is fine

    # by hand on the peers: drop the stale neighbour and fdb entries, restart their flannel
    real = lab.node(node)["vtep_mac"]
    vtep = lab.node(node)["pod_cidr"].split("/")[0]
    for p in peers:
        fdb = sh(lab, p, "bridge fdb show dev flannel.1").stdout
        for line in fdb.splitlines():
            mac = line.split()[0]
            if f"dst {lab.node(node)['ip']} " in line + " " and mac != real:
                sh(lab, p, f"bridge fdb del {mac} dev flannel.1 dst {lab.node(node)['ip']} self")
        sh(lab, p, f"ip neigh del {vtep} dev flannel.1")
        api.restart(*FLANNEL, p)
    for p in peers:
        wait_for(lambda p=p: http_get(healthy[p])[0], 20, what=f"NodePort on {p} after the fix")
        assert f"{vtep} lladdr {real}" in sh(lab, p, "ip neigh show dev flannel.1").stdout


@pytest.mark.lab
def test_flannel_stale_subnet(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    jf = jellyfin(lab)
    rec = F.inject(lab, "flannel-stale-subnet")
    node = rec["node"]
    assert node != jf["node"] and rec["physical"] is True
    pod = api.pod(*FLANNEL, node)
    assert waiting_reason(pod) == "CrashLoopBackOff"
    text = api.log("kube-flannel", pod["metadata"]["name"])
    assert "link has incompatible addresses. Remove additional addresses and try again" in text
    ok, err = http_get(healthy[node])
    assert not ok and "timed out" in err, err
    assert sh(lab, node, f"curl -sS -m 2 -o /dev/null http://{jf['ip']}:8096/").returncode != 0

    old = next(a for a in sh(lab, node, "ip -4 -o addr show dev flannel.1").stdout.split()
               if a.endswith("/32") and not a.startswith(lab.node(node)["pod_cidr"].split("/")[0] + "/"))
    sh(lab, node, f"ip addr del {shlex.quote(old)} dev flannel.1")
    api.restart(*FLANNEL, node)
    wait_for(lambda: http_get(healthy[node])[0], 20, what="NodePort after the fix")
    assert sh(lab, node, f"curl -sS -m 2 -o /dev/null http://{jf['ip']}:8096/").returncode == 0


@pytest.mark.lab
def test_cni_bridge_conflict(lab, api, healthy):
    from clusterfix_tui.lab import faults as F

    jf = jellyfin(lab)
    rec = F.inject(lab, "cni-bridge-conflict")
    node = rec["node"]
    assert node == jf["node"] and rec["physical"] is True
    pod = api.pod(*FLANNEL, node)
    assert waiting_reason(pod) == "CrashLoopBackOff"
    gw = lab.node(node)["pod_cidr"].replace(".0/24", ".1/24")
    assert (f'failed to set bridge addr: "cni0" already has an IP address different from {gw}'
            in api.log("kube-flannel", pod["metadata"]["name"]))
    for name, ip in healthy.items():
        assert not http_get(ip, timeout=1.5)[0], name

    wrong = next(a for a in sh(lab, node, "ip -4 -o addr show dev cni0").stdout.split() if "/" in a and a != gw)
    sh(lab, node, f"ip addr del {shlex.quote(wrong)} dev cni0")
    api.restart(*FLANNEL, node)
    assert gw in sh(lab, node, "ip -4 -o addr show dev cni0").stdout
    for name, ip in healthy.items():
        wait_for(lambda ip=ip: http_get(ip)[0], 30, what=f"NodePort on {name} after the fix")


@pytest.mark.lab
def test_a_list_of_faults_is_spread_and_recorded(lab, api, healthy):
    """What `lab up --faults forward-drop,ip-forward-off` does after bring-up: handle.inject with the
    catalog's plan; both records land in lab.json, on different nodes."""
    from clusterfix_tui.lab import cluster
    from clusterfix_tui.lab import faults as F

    before = len(lab.info["faults"])
    for fault, node in F.plan(["forward-drop", "ip-forward-off"], [n["name"] for n in lab.nodes]):
        lab.inject(fault, node)
    recs = lab.info["faults"][before:]
    assert sorted(r["name"] for r in recs) == ["forward-drop", "ip-forward-off"]
    where = {r["name"]: r["node"] for r in recs}
    assert where["forward-drop"] != where["ip-forward-off"]
    assert jellyfin(lab)["node"] not in where.values()
    for node in where.values():
        assert not http_get(healthy[node])[0]
    assert [r["name"] for r in cluster.status(lab.dir)["faults"][before:]] == [r["name"] for r in recs]

    sh(lab, where["forward-drop"], "iptables-legacy -P FORWARD ACCEPT")
    sh(lab, where["ip-forward-off"], "sysctl -w net.ipv4.ip_forward=1")
    for node in where.values():
        wait_for(lambda node=node: http_get(healthy[node])[0], 20, what=f"NodePort on {node} after the fixes")


# -- --faults all --------------------------------------------------------------------------------

@pytest.mark.lab
def test_faults_all_spread(tmp_path):
    from clusterfix_tui.lab import cluster
    from clusterfix_tui.lab import faults as F

    d = tmp_path / "lab"
    handle = cluster.up(d, nodes=3, faults="all", timeout=180)
    try:
        recs = handle.info["faults"]
        assert sorted(r["name"] for r in recs) == sorted(set(F.FAULTS) - set(F.NOT_IN_ALL))
        nodes = {n["name"] for n in handle.nodes}
        assert all(r["node"] in nodes and r["detail"] for r in recs)
        assert all(r["physical"] is True for r in recs), [r for r in recs if not r["physical"]]
        where = {r["name"]: r["node"] for r in recs}
        jf = jellyfin(handle)["node"]
        for name in ("cni-bridge-conflict", "flannel-stale-vtep", "br-netfilter-off", "firewall-reject"):
            assert where[name] == jf
        assert where["iptables-foreign-rule"] != where["kube-proxy-crashloop"]
        assert handle.node(where["worker-kubeconfig"])["role"] == "worker"
        # every node's NodePort is broken
        for n in handle.nodes:
            assert not http_get(n["ip"], timeout=1.5)[0], n["name"]
    finally:
        cluster.down(d)


# -- pure: placement and the rule-removal builder (no lab needed) --------------------------------

class FakeLab:
    """Just lab.json: what placement reads."""

    def __init__(self, n: int, jellyfin_on: str = "node-2") -> None:
        self.info = {"nodes": [
            {"name": f"node-{i}", "index": i, "role": "control-plane" if i == 1 else "worker",
             "ip": f"10.213.9.{10 + i}", "pod_cidr": f"10.244.{i - 1}.0/24",
             "pods": ([{"app": "jellyfin", "name": "jellyfin-x-y", "ip": f"10.244.{i - 1}.3"}]
                      if f"node-{i}" == jellyfin_on else [])}
            for i in range(1, n + 1)]}


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_placement_covers_the_catalog(n):
    from clusterfix_tui.lab import faults as F

    lab = FakeLab(n, jellyfin_on="node-2" if n > 1 else "node-1")
    where = dict(F.placement(lab))
    assert sorted(where) == sorted(set(F.FAULTS) - set(F.NOT_IN_ALL))
    jf = "node-2" if n > 1 else "node-1"
    for name, fault in F.FAULTS.items():
        if name in F.NOT_IN_ALL:
            continue
        if fault.prefers == "jellyfin":
            assert where[name] == jf
        elif fault.prefers == "worker":
            assert where[name] != "node-1" or n == 1  # a worker, jellyfin's if it is the only one
        elif n > 1:
            assert where[name] != jf, name
    if n >= 3:
        assert where["iptables-foreign-rule"] != where["kube-proxy-crashloop"]
        assert where["worker-kubeconfig"] != "node-1"
        loads = [list(where.values()).count(f"node-{i}") for i in range(1, n + 1) if f"node-{i}" != jf]
        assert max(loads) - min(loads) <= 1


def test_plan_for_lab_up():
    from clusterfix_tui.lab import faults as F

    assert F.plan(["all"], ["node-1", "node-2"]) == [("all", None)]
    assert F.plan(["forward-drop", "ip-forward-off:node-1", "iptables-shadow"], ["node-1", "node-2"]) == [
        ("forward-drop,iptables-shadow", None), ("ip-forward-off", "node-1")]
    with pytest.raises(F.FaultError, match="unknown fault 'nope'"):
        F.plan(["nope"], ["node-1"])
    with pytest.raises(F.FaultError, match="unknown fault"):
        F.inject(FakeLab(3), "no-such-fault")


# `iptables-save -t nat` of a lab node (nft backend), captured from a healthy 2-node lab.
LAB_NAT_SAVE = """\
# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 23:50:41 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-EW7OYBPJWT2ILZI6 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-U2BV666ENZFNYNHG - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-EW7OYBPJWT2ILZI6 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-EW7OYBPJWT2ILZI6 -m comment --comment "masquerade traffic for media/jellyfin:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-EW7OYBPJWT2ILZI6 -j KUBE-SVC-EW7OYBPJWT2ILZI6
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "media/jellyfin:http" -m tcp --dport 30096 -j KUBE-EXT-EW7OYBPJWT2ILZI6
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-U2BV666ENZFNYNHG -s 10.244.1.3/32 -m comment --comment "media/jellyfin:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-U2BV666ENZFNYNHG -p tcp -m comment --comment "media/jellyfin:http" -m tcp -j DNAT --to-destination 10.244.1.3:8096
-A KUBE-SERVICES -d 10.96.96.96/32 -p tcp -m comment --comment "media/jellyfin:http cluster IP" -m tcp --dport 8096 -j KUBE-SVC-EW7OYBPJWT2ILZI6
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-EW7OYBPJWT2ILZI6 ! -s 10.244.0.0/16 -d 10.96.96.96/32 -p tcp -m comment --comment "media/jellyfin:http cluster IP" -m tcp --dport 8096 -j KUBE-MARK-MASQ
-A KUBE-SVC-EW7OYBPJWT2ILZI6 -m comment --comment "media/jellyfin:http -> 10.244.1.3:8096" -j KUBE-SEP-U2BV666ENZFNYNHG
COMMIT
# Completed on Thu Nov 26 23:50:41 2026
"""


def test_kube_chains_removal_on_captured_save():
    from clusterfix_tui.lab import faults as F

    text = F._kube_chains_removal(LAB_NAT_SAVE, "nat")
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    chains = [x[1:].split()[0] for x in lines if x.startswith(":")]
    assert len(chains) == 7 and all(c.startswith("KUBE-") for c in chains)
    assert [x for x in lines if x.startswith("-X ")] == [f"-X {c}" for c in chains]
    assert [x for x in lines if x.startswith("-D ")] == [
        '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-D OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-D POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    ]
    # declarations (which flush) come before the deletions, as iptables-restore requires
    assert max(i for i, x in enumerate(lines) if x.startswith(":")) < min(
        i for i, x in enumerate(lines) if x.startswith(("-D ", "-X ")))
    assert F._kube_chains_removal("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", "nat") is None
