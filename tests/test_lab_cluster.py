"""The lab itself: real namespaces, real sshd, real kubectl over HTTPS, real NodePort traffic.

One 3-node lab is shared by the tests that only read it (module-scoped); a test that changes a lab
(deletes pods, breaks cni0, stops sshd, ...) gets one of its own, so no test depends on another.
A second, small lab is built and taken down by the CLI to prove `lab down` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from lab_helpers import lab_fixture

lab = lab_fixture(nodes=3, faults="none")  # read by the tests that only look
fresh_lab = lab_fixture(nodes=3, faults="none", scope="function", name="fresh_lab")  # to change


def kubectl(lab, *args: str, check: bool = True, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(lab.kubeconfig), "--cache-dir", str(tmp / "kcache"), *args],
        capture_output=True, text=True, timeout=30, check=check)


def kjson(lab, tmp: Path, *args: str) -> dict:
    return json.loads(kubectl(lab, *args, "-o", "json", tmp=tmp).stdout)


def curl(url: str, timeout: float = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "-m", str(timeout), url], check=False, capture_output=True, text=True,
                          timeout=timeout + 5)


def wait_for(fn, timeout: float = 20, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


def system_pod(lab, tmp: Path, namespace: str, selector: str, node: str) -> dict:
    """The one pod of a DaemonSet on node (waiting out the moment a replaced pod is not yet listed)."""
    mine: list = []
    deadline = time.monotonic() + 120  # a deadline, not a speed check
    while time.monotonic() < deadline:
        pods = kjson(lab, tmp, "-n", namespace, "get", "pods", "-l", selector)["items"]
        mine = [p for p in pods if p["spec"]["nodeName"] == node]
        if len(mine) == 1:
            return mine[0]
        time.sleep(0.2)
    raise AssertionError(f"not one {selector} pod on {node}: {[p['metadata']['name'] for p in mine]}")


# -- healthy lab: read-only checks ---------------------------------------------------------------

@pytest.mark.lab
def test_kubectl_lists_ready_nodes_with_ips(lab, tmp_path):
    out = kubectl(lab, "get", "nodes", "-o", "wide", tmp=tmp_path).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["node-1", "node-2", "node-3"]
    assert all(r[1] == "Ready" for r in rows), out
    ips = {n["name"]: n["ip"] for n in lab.info["nodes"]}
    for r in rows:
        assert ips[r[0]] in r, out
    assert "control-plane" in rows[0]


@pytest.mark.lab
def test_ssh_with_host_key_checking(lab, tmp_path):
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "node-2", "hostname; id -u"],
                       check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["node-2", "0"]
    # a known_hosts with another key for the node must make ssh refuse
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    ip = lab.node("node-2")["ip"]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"node-2,{ip} {' '.join(Path(str(other) + '.pub').read_text().split()[:2])}\n")
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={wrong}",
                        "node-2", "true"], check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr or "Host key verification failed" in r.stderr
    # and an empty one too (StrictHostKeyChecking yes: unknown host is refused)
    wrong.write_text("")
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={wrong}",
                        "node-2", "true"], check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "Host key verification failed" in r.stderr


@pytest.mark.lab
def test_ssh_key_only_root_login(lab):
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                        "-o", "IdentityFile=/dev/null", "-o", "PreferredAuthentications=password,keyboard-interactive",
                        "node-3", "true"], check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0 and "Permission denied" in r.stderr


@pytest.mark.lab
def test_nodeport_answers_on_every_node(lab):
    jf = lab.pods("jellyfin")
    assert len(jf) == 1 and jf[0]["node"] == "node-2"
    for n in lab.info["nodes"]:
        r = curl(f"http://{n['ip']}:30096/")
        assert r.returncode == 0, (n["name"], r.stderr)
        assert r.stdout.startswith(jf[0]["name"]), r.stdout


@pytest.mark.lab
def test_pod_to_pod_across_nodes(lab):
    echo = {p["node"]: p for p in lab.pods("net-echo")}
    assert set(echo) == {"node-1", "node-2", "node-3"}
    src = echo["node-1"]
    for dst in (echo["node-3"], lab.pods("jellyfin")[0]):
        port = dst["port"]
        r = lab.pod_exec(src["namespace"], src["name"], ["curl", "-sS", "-m", "3", f"http://{dst['ip']}:{port}/"],
                         check=False)
        assert r.returncode == 0, r.stderr
        # pod-to-pod is not masqueraded: the server sees the source pod's own IP
        assert r.stdout.strip().endswith(f"from {src['ip']}"), r.stdout


@pytest.mark.lab
def test_flannel_normal_layout(lab, tmp_path):
    nodes = {n["metadata"]["name"]: n for n in kjson(lab, tmp_path, "get", "nodes")["items"]}
    for name, obj in nodes.items():
        info = lab.node(name)
        net = obj["spec"]["podCIDR"].split("/")[0]
        assert obj["spec"]["podCIDR"] == info["pod_cidr"]
        ann = obj["metadata"]["annotations"]
        assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
        assert ann["flannel.alpha.coreos.com/public-ip"] == info["ip"]
        data = json.loads(ann["flannel.alpha.coreos.com/backend-data"])
        addr = json.loads(lab.exec(name, "ip -j -d addr show dev flannel.1").stdout)[0]
        assert data == {"VNI": 1, "VtepMAC": addr["address"]}
        assert [(a["local"], a["prefixlen"]) for a in addr["addr_info"] if a["family"] == "inet"] == [(net, 32)]
        vx = addr["linkinfo"]["info_data"]
        assert vx["id"] == 1 and vx["port"] == 8472 and vx["local"] == info["ip"] and not vx.get("learning")
        routes = lab.exec(name, "ip route show dev flannel.1").stdout
        fdb = lab.exec(name, "bridge fdb show dev flannel.1").stdout
        neigh = lab.exec(name, "ip neigh show dev flannel.1").stdout
        for peer, pobj in nodes.items():
            if peer == name:
                continue
            pnet = pobj["spec"]["podCIDR"].split("/")[0]
            pmac = json.loads(pobj["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
            assert f"{pobj['spec']['podCIDR']} via {pnet} onlink" in routes, routes
            assert f"{pmac} dst {lab.node(peer)['ip']} self permanent" in fdb, fdb
            assert f"{pnet} lladdr {pmac} PERMANENT" in neigh, neigh
        env = lab.exec(name, "cat /run/flannel/subnet.env").stdout
        gw = net.rsplit(".", 1)[0] + ".1"
        assert f"FLANNEL_SUBNET={gw}/24" in env and "FLANNEL_NETWORK=10.244.0.0/16" in env
        assert f"{gw}/24" in lab.exec(name, "ip -4 -br addr show dev cni0").stdout
        assert "flannel" in lab.exec(name, "cat /etc/cni/net.d/10-flannel.conflist").stdout


@pytest.mark.lab
def test_node_is_its_own_machine(lab):
    assert lab.exec("node-3", "hostname").stdout.strip() == "node-3"
    assert lab.exec("node-3", "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert lab.exec("node-3", "readlink /etc/alternatives/iptables").stdout.strip() == "/usr/sbin/iptables-nft"
    assert "KUBE-IPTABLES-HINT" in lab.exec("node-3", "iptables-nft-save -t mangle").stdout
    nat = lab.exec("node-3", "iptables-nft-save -t nat").stdout
    for chain in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"):
        assert f":{chain} " in nat
    assert "--dport 30096 -j KUBE-EXT-" in nat and "-j DNAT --to-destination" in nat
    # the worker's kubectl talks to the lab API with the node's own credentials
    r = lab.exec("node-3", "kubectl get nodes --no-headers", check=False, timeout=30)
    assert r.returncode == 0 and r.stdout.count(" Ready") == 3, r.stderr
    assert lab.exec("node-3", "test -s /etc/kubernetes/kubelet.conf && echo ok").stdout.strip() == "ok"
    # the host's /etc is untouched by the node's writes
    lab.exec("node-3", "echo lab > /etc/cfx-lab-probe")
    assert not os.path.exists("/etc/cfx-lab-probe")
    # nor are its backups (the repair steps write them under /var/backups on the node)
    lab.exec("node-3", "mkdir -p /var/backups/cfx-lab-probe")
    assert not os.path.exists("/var/backups/cfx-lab-probe")


@pytest.mark.lab
def test_pod_logs_and_status_through_kubectl(lab, tmp_path):
    kp = system_pod(lab, tmp_path, "kube-system", "k8s-app=kube-proxy", "node-1")
    out = kubectl(lab, "-n", "kube-system", "logs", kp["metadata"]["name"], tmp=tmp_path).stdout
    assert '"SyncProxyRules complete"' in out and 'mode="nft"' in out
    assert kp["status"]["phase"] == "Running" and kp["status"]["containerStatuses"][0]["ready"]


# -- agents: they react to API actions and to the nodes' real state ------------------------------

@pytest.mark.lab
def test_deleting_flannel_pod_recreates_it_running(fresh_lab, tmp_path):
    lab = fresh_lab
    old = system_pod(lab, tmp_path, "kube-flannel", "app=flannel", "node-3")
    kubectl(lab, "-n", "kube-flannel", "delete", "pod", old["metadata"]["name"], tmp=tmp_path)

    def new_running():
        p = system_pod(lab, tmp_path, "kube-flannel", "app=flannel", "node-3")
        return p if p["metadata"]["name"] != old["metadata"]["name"] and p["status"]["containerStatuses"][0]["ready"] else None
    new = wait_for(new_running, 15)
    assert new, "no new Running flannel pod on node-3"
    assert "Running backend." in kubectl(lab, "-n", "kube-flannel", "logs", new["metadata"]["name"], tmp=tmp_path).stdout
    assert curl(f"http://{lab.node('node-3')['ip']}:30096/").returncode == 0


@pytest.mark.lab
def test_recreated_vtep_reaches_the_peers(fresh_lab, tmp_path):
    """`ip link delete flannel.1` + restarting flannel (the runbook's remedy): a new VTEP MAC,
    published in the node annotation, and the running peers' flanneld reprogram their fdb/neigh."""
    lab = fresh_lab
    node = "node-3"
    old_mac = lab.exec(node, "cat /sys/class/net/flannel.1/address").stdout.strip()
    lab.exec(node, "ip link delete flannel.1")
    echo = {p["node"]: p for p in lab.pods("net-echo")}
    src, dst = echo["node-1"], echo[node]
    probe = ["curl", "-sS", "-m", "2", f"http://{dst['ip']}:{dst['port']}/"]
    assert lab.pod_exec(src["namespace"], src["name"], probe, check=False).returncode != 0
    old = system_pod(lab, tmp_path, "kube-flannel", "app=flannel", node)
    kubectl(lab, "-n", "kube-flannel", "delete", "pod", old["metadata"]["name"], tmp=tmp_path)

    def new_mac():
        obj = kjson(lab, tmp_path, "get", "node", node)
        mac = json.loads(obj["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
        return mac if mac != old_mac else None
    mac = wait_for(new_mac, 15)
    assert mac and mac == lab.exec(node, "cat /sys/class/net/flannel.1/address").stdout.strip()
    assert f"{mac} dst {lab.node(node)['ip']} self permanent" in lab.exec("node-1", "bridge fdb show dev flannel.1").stdout
    assert wait_for(lambda: lab.pod_exec(src["namespace"], src["name"], probe, check=False).returncode == 0, 10)


@pytest.mark.lab
def test_flannel_crashloops_on_cni0_conflict_and_recovers(fresh_lab, tmp_path):
    lab = fresh_lab
    node = "node-3"
    lab.exec(node, "ip addr add 10.99.0.1/24 dev cni0")
    try:
        old = system_pod(lab, tmp_path, "kube-flannel", "app=flannel", node)
        kubectl(lab, "-n", "kube-flannel", "delete", "pod", old["metadata"]["name"], tmp=tmp_path)

        def crashing():
            p = system_pod(lab, tmp_path, "kube-flannel", "app=flannel", node)
            st = p["status"]["containerStatuses"][0]
            waiting = st["state"].get("waiting") or {}
            return p if waiting.get("reason") == "CrashLoopBackOff" else None
        pod = wait_for(crashing, 15)
        assert pod, "flannel pod did not crash-loop"
        name = pod["metadata"]["name"]
        logs = kubectl(lab, "-n", "kube-flannel", "logs", name, tmp=tmp_path).stdout
        assert 'failed to set bridge addr: "cni0" already has an IP address different from 10.244.2.1/24' in logs
        # kubelet keeps restarting it with a back-off: restartCount rises while the cause stays
        rc = wait_for(lambda: system_pod(lab, tmp_path, "kube-flannel", "app=flannel", node)["status"]
                      ["containerStatuses"][0]["restartCount"] >= 1, 25, 1)
        assert rc, "restartCount did not rise"
        events = kubectl(lab, "-n", "kube-flannel", "get", "events", tmp=tmp_path).stdout
        assert "BackOff" in events and name in events
    finally:
        lab.exec(node, "ip addr del 10.99.0.1/24 dev cni0", check=False)
    # root cause removed by hand, pod restarted through the API -> Running again
    kubectl(lab, "-n", "kube-flannel", "delete", "pod", name, tmp=tmp_path)
    ok = wait_for(lambda: system_pod(lab, tmp_path, "kube-flannel", "app=flannel", node)["status"]
                  ["containerStatuses"][0]["ready"], 15)
    assert ok


@pytest.mark.lab
def test_pod_sandbox_waits_for_a_sane_cni0(fresh_lab, tmp_path):
    """A pod (re)created on a node whose cni0 carries a foreign address stays ContainerCreating with
    kubelet's FailedCreatePodSandBox event; deleting cni0 (the runbook's remedy) lets the bridge
    plugin recreate it with the gateway, and the pod starts."""
    lab = fresh_lab
    node = "node-3"
    echo = next(p for p in lab.pods("net-echo") if p["node"] == node)
    lab.exec(node, "ip addr add 10.99.0.1/24 dev cni0")
    kubectl(lab, "-n", "default", "delete", "pod", echo["name"], tmp=tmp_path)

    def pending():
        pods = [p for p in kjson(lab, tmp_path, "-n", "default", "get", "pods", "-l", "app=net-echo")["items"]
                if p["spec"]["nodeName"] == node]
        if len(pods) == 1 and pods[0]["status"]["phase"] == "Pending":
            return pods[0]
        return None
    pod = wait_for(pending, 15)
    assert pod, "the new net-echo pod did not stay Pending"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    events = kubectl(lab, "-n", "default", "get", "events", tmp=tmp_path).stdout
    assert "FailedCreatePodSandBox" in events and 'already has an IP address different from 10.244.2.1/24' in events
    lab.exec(node, "ip link delete cni0")
    started = wait_for(lambda: [p for p in lab.pods("net-echo") if p["node"] == node and p["name"] != echo["name"]],
                       20)
    assert started, "the pod did not start once cni0 was gone"
    assert "10.244.2.1/24" in lab.exec(node, "ip -4 -br addr show dev cni0").stdout
    src = next(p for p in lab.pods("net-echo") if p["node"] == "node-1")
    probe = ["curl", "-sS", "-m", "3", f"http://{started[0]['ip']}:8080/"]
    assert wait_for(lambda: lab.pod_exec(src["namespace"], src["name"], probe, check=False).returncode == 0, 10)


@pytest.mark.lab
def test_readiness_probe_follows_real_reachability(fresh_lab, tmp_path):
    lab = fresh_lab
    jf = lab.pods("jellyfin")[0]
    node = jf["node"]
    rule = f"OUTPUT -d {jf['ip']}/32 -p tcp --dport 8096 -j REJECT --reject-with icmp-host-prohibited"
    lab.exec(node, f"iptables -I {rule}")
    try:
        def not_ready():
            p = kjson(lab, tmp_path, "-n", "media", "get", "pod", jf["name"])
            return not p["status"]["containerStatuses"][0]["ready"]
        assert wait_for(not_ready, 15), "jellyfin stayed Ready behind a REJECT rule"
        events = kubectl(lab, "-n", "media", "get", "events", tmp=tmp_path).stdout
        assert (f'Readiness probe failed: Get "http://{jf["ip"]}:8096/": dial tcp {jf["ip"]}:8096: '
                "connect: no route to host") in events, events
        ep = kjson(lab, tmp_path, "-n", "media", "get", "endpoints", "jellyfin")
        assert not any(s.get("addresses") for s in ep.get("subsets") or [])
    finally:
        lab.exec(node, f"iptables -D {rule}", check=False)

    def ready_again():
        p = kjson(lab, tmp_path, "-n", "media", "get", "pod", jf["name"])
        return p["status"]["containerStatuses"][0]["ready"]
    assert wait_for(ready_again, 15)
    assert wait_for(lambda: curl(f"http://{lab.node('node-1')['ip']}:30096/").returncode == 0, 10)


@pytest.mark.lab
def test_deleting_and_rolling_jellyfin_moves_the_endpoint(fresh_lab, tmp_path):
    lab = fresh_lab
    old = lab.pods("jellyfin")[0]
    kubectl(lab, "-n", "media", "delete", "pod", old["name"], tmp=tmp_path)

    def replaced():
        pods = lab.pods("jellyfin")
        return pods if len(pods) == 1 and pods[0]["name"] != old["name"] else None
    new = wait_for(replaced, 15)
    assert new, "jellyfin pod not recreated"
    new = new[0]
    assert new["node"] == old["node"] and new["ip"] != old["ip"]
    assert old["netns"] not in subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout.split()

    def served_by_new():
        r = curl(f"http://{lab.node('node-3')['ip']}:30096/")
        return r.returncode == 0 and r.stdout.startswith(new["name"])
    assert wait_for(served_by_new, 15), "NodePort does not reach the new pod"
    ep = kjson(lab, tmp_path, "-n", "media", "get", "endpoints", "jellyfin")
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == [new["ip"]]
    # kubectl rollout restart: a new pod again (new ReplicaSet hash)
    kubectl(lab, "-n", "media", "rollout", "restart", "deployment/jellyfin", tmp=tmp_path)
    rolled = wait_for(lambda: [p for p in lab.pods("jellyfin") if p["name"] != new["name"]], 15)
    assert rolled and rolled[0]["name"].split("-")[1] != new["name"].split("-")[1]
    assert wait_for(lambda: curl(f"http://{lab.node('node-1')['ip']}:30096/").stdout.startswith(rolled[0]["name"]), 15)


@pytest.mark.lab
def test_killed_pod_process_is_restarted_like_a_container(fresh_lab, tmp_path):
    lab = fresh_lab
    pod = next(p for p in lab.pods("net-echo") if p["node"] == "node-2")
    os.kill(pod["pid"], 9)

    def restarted():
        obj = kjson(lab, tmp_path, "-n", "default", "get", "pod", pod["name"])
        st = obj["status"]["containerStatuses"][0]
        return st if st["restartCount"] == 1 and st["lastState"].get("terminated") else None
    st = wait_for(restarted, 15)
    assert st, "restartCount did not rise after the pod's process died"
    new_pid = lab.pod("default", pod["name"])["pid"]
    assert new_pid != pod["pid"]
    src = next(p for p in lab.pods("net-echo") if p["node"] == "node-1")

    def answers():  # the restarted server may take a moment to listen, as a real container does
        r = lab.pod_exec(src["namespace"], src["name"], ["curl", "-sS", "-m", "3", f"http://{pod['ip']}:8080/"],
                         check=False)
        return r if r.returncode == 0 and r.stdout.startswith(pod["name"]) else None
    assert wait_for(answers, 10), "the restarted pod does not serve"


@pytest.mark.lab
def test_agent_state_crashed_kube_proxy_until_pod_deleted(fresh_lab, tmp_path):
    lab = fresh_lab
    node = "node-3"
    lab.set_agent_state(node, "kube-proxy", crashed=True, backoff=300,
                        message='E1126 10:00:00.000000       1 server.go:556] "Error running ProxyServer" '
                                'err="lab: API outage"')
    pod = system_pod(lab, tmp_path, "kube-system", "k8s-app=kube-proxy", node)
    st = pod["status"]["containerStatuses"][0]
    assert st["state"]["waiting"]["reason"] == "CrashLoopBackOff" and not st["ready"]
    assert "API outage" in kubectl(lab, "-n", "kube-system", "logs", pod["metadata"]["name"], tmp=tmp_path).stdout
    kubectl(lab, "-n", "kube-system", "delete", "pod", pod["metadata"]["name"], tmp=tmp_path)
    ok = wait_for(lambda: system_pod(lab, tmp_path, "kube-system", "k8s-app=kube-proxy", node)["status"]
                  ["containerStatuses"][0]["ready"], 15)
    assert ok


@pytest.mark.lab
def test_sshd_can_be_stopped_and_started_without_losing_the_node(fresh_lab):
    lab = fresh_lab
    node = "node-2"
    before = lab.node(node)["init_pid"]
    lab.stop_sshd(node)
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", node, "true"],
                       check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert lab.exec(node, "hostname").stdout.strip() == node  # the node itself lives on
    lab.start_sshd(node)
    r = subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", node, "true"],
                       check=False, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert lab.node(node)["init_pid"] == before


@pytest.mark.lab
def test_rollout_restart_restarts_all_kube_proxy_pods(fresh_lab, tmp_path):
    lab = fresh_lab
    before = {p["metadata"]["name"] for p in kjson(lab, tmp_path, "-n", "kube-system", "get", "pods",
                                                     "-l", "k8s-app=kube-proxy")["items"]}
    kubectl(lab, "-n", "kube-system", "rollout", "restart", "ds/kube-proxy", tmp=tmp_path)

    def all_new_ready():
        items = kjson(lab, tmp_path, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy")["items"]
        names = {p["metadata"]["name"] for p in items}
        return len(items) == 3 and not names & before and all(
            p["status"]["containerStatuses"][0]["ready"] for p in items)
    assert wait_for(all_new_ready, 20)
    for n in lab.info["nodes"]:
        assert curl(f"http://{n['ip']}:30096/").returncode == 0


# -- the CLI: up twice, down, down twice; nothing left behind ------------------------------------

def _host_state() -> tuple[str, str, str]:
    return (subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout,
            subprocess.run(["ip", "-o", "link"], check=False, capture_output=True, text=True).stdout,
            Path("/proc/mounts").read_text())


@pytest.mark.lab
def test_cli_up_twice_down_twice_leaves_nothing(tmp_path):
    d = tmp_path / "lab"
    cli = ["clusterfix-tui", "lab"]
    r = subprocess.run([*cli, "up", "--nodes", "2", "--dir", str(d)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lab down" in r.stdout and "ssh -F" in r.stdout
    info = json.loads((d / "lab.json").read_text())
    for f in ("kubeconfig", "ssh_config", "known_hosts", "id_ed25519", "lab.json"):
        assert (d / f).exists(), f
    assert (d / "ssh_config").read_text().count("StrictHostKeyChecking yes") == 2

    r2 = subprocess.run([*cli, "up", "--nodes", "2", "--dir", str(d)], check=False, capture_output=True, text=True, timeout=60)
    assert r2.returncode == 1 and "already up" in r2.stderr and "Traceback" not in r2.stderr

    st = subprocess.run([*cli, "status", "--dir", str(d), "--json"], check=False, capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and json.loads(st.stdout)["up"] is True

    pids = [info["daemon_pid"]] + [n["init_pid"] for n in info["nodes"]] + [n["sshd_pid"] for n in info["nodes"]]
    pids += [p["pid"] for n in info["nodes"] for p in n["pods"]]
    names = [n["netns"] for n in info["nodes"]] + [p["netns"] for n in info["nodes"] for p in n["pods"]]
    links = [info["bridge"]["name"]] + [n["veth"] for n in info["nodes"]]
    state_dir = info["state_dir"]

    # even with its daemon gone (killed), `lab down` removes everything lab.json recorded
    os.kill(info["daemon_pid"], 9)
    assert wait_for(lambda: not os.path.exists(f"/proc/{info['daemon_pid']}") or
                    Path(f"/proc/{info['daemon_pid']}/stat").read_text().split()[2] == "Z", 10)
    st = subprocess.run([*cli, "status", "--dir", str(d)], check=False, capture_output=True, text=True, timeout=30)
    assert st.returncode == 1 and "daemon not running" in st.stdout

    r3 = subprocess.run([*cli, "down", "--dir", str(d)], check=False, capture_output=True, text=True, timeout=120)
    assert r3.returncode == 0, r3.stderr
    netns, link, mounts = _host_state()
    for ns in names:
        assert ns not in netns.split() and f"/run/netns/{ns}" not in mounts
    for ln in links:
        assert f" {ln}:" not in link and f" {ln}@" not in link
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert state_dir not in mounts and not os.path.exists(state_dir)
    assert not d.exists() or not any(d.iterdir())

    r4 = subprocess.run([*cli, "down", "--dir", str(d)], check=False, capture_output=True, text=True, timeout=30)
    assert r4.returncode == 1 and "no lab" in r4.stderr and "Traceback" not in r4.stderr


# -- pure parts (no lab needed) ------------------------------------------------------------------

def test_kube_proxy_chain_names_match_kube_proxy():
    """The hashes of kube-proxy's own unit tests (pkg/proxy/iptables/proxier_test.go)."""
    from clusterfix_tui.lab import agents as A

    sp = A.ServicePort("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, 3001, 80, ["10.180.0.1"])
    assert A.svc_chain(sp) == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert A.ext_chain(sp) == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert A.sep_chain(sp, "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    text = A.restore_text([sp])
    assert "-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -p tcp -m tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O" in text
    assert "-j DNAT --to-destination 10.180.0.1:80" in text
    assert text.count("COMMIT") == 2
    empty = A.restore_text([A.ServicePort("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, 3001, 80, [])],
                           ["KUBE-SEP-SXIVWICOYRO3J4NJ"])
    assert '"ns1/svc1:p80 has no endpoints"' in empty and "-X KUBE-SEP-SXIVWICOYRO3J4NJ" in empty


def test_peers_from_annotations_reject_malformed_values():
    from clusterfix_tui.lab import agents as A

    def node(name, mac, ip, cidr):
        return {"metadata": {"name": name, "annotations": {
            A.BACKEND_DATA: json.dumps({"VNI": 1, "VtepMAC": mac}), A.PUBLIC_IP: ip}}, "spec": {"podCIDR": cidr}}
    objs = [node("node-1", "aa:bb:cc:dd:ee:01", "10.213.7.11", "10.244.0.0/24"),
            node("node-2", "aa:bb:cc:dd:ee:02\nlink del eth0", "10.213.7.12", "10.244.1.0/24"),
            node("node-3", "aa:bb:cc:dd:ee:03", "10.213.7.13; reboot", "10.244.2.0/24"),
            node("node-4", "AA:BB:CC:DD:EE:04", "10.213.7.14", "10.244.3.0/24")]
    peers = A.peers_from_nodes(objs, "node-1")
    assert [(p.name, p.vtep_mac) for p in peers] == [("node-4", "aa:bb:cc:dd:ee:04")]
    ip_lines, fdb = A.flannel_peer_lines(peers)
    assert ip_lines == ["neigh replace 10.244.3.0 lladdr aa:bb:cc:dd:ee:04 dev flannel.1 nud permanent",
                        "route replace 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink"]
    assert fdb == ["fdb replace aa:bb:cc:dd:ee:04 dev flannel.1 dst 10.213.7.14 self permanent"]


# -- 30 nodes (the time is printed as a figure, never asserted) ----------------------------------

@pytest.mark.lab
def test_30_nodes_come_up_and_down_cleanly(tmp_path):
    from clusterfix_tui.lab import cluster

    d = tmp_path / "lab30"
    t0 = time.monotonic()
    h = cluster.up(d, nodes=30)
    t_up = time.monotonic() - t0
    try:
        info = h.info
        answered = sum(curl(f"http://{n['ip']}:30096/").returncode == 0 for n in info["nodes"])
        ready = kubectl(h, "get", "nodes", "--no-headers", tmp=tmp_path).stdout.count(" Ready ")
    finally:
        t1 = time.monotonic()
        cluster.down(d)
        t_down = time.monotonic() - t1
    print(f"\n30 nodes: up {t_up:.1f}s (daemon ready in {info.get('ready_seconds')}s), down {t_down:.1f}s, "
          f"{ready} Ready, NodePort answered on {answered}/30")
    assert ready == 30 and answered == 30
    # and down left nothing of it behind
    left_ns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                 check=True).stdout.split())
    assert not left_ns & {n["netns"] for n in info["nodes"]}
    assert subprocess.run(["ip", "link", "show", info["bridge"]["name"]], capture_output=True,
                          check=False).returncode != 0
    from clusterfix_tui.lab.nodes import pid_alive  # a killed pid may linger as a zombie of pid 1

    assert not [n["name"] for n in info["nodes"] if pid_alive(n["init_pid"]) or pid_alive(n["sshd_pid"])]
