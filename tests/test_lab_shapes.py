"""The lab's other shapes, for real: k3s (embedded flannel + kube-proxy), calico (routed cali*
veths, BIRD routes, felix chains, kube-proxy DaemonSet) and kube-proxy-free (cilium-style chains
doing the NodePort). Each shape is built once for this module (a module-scoped parametrized
fixture: pytest runs all tests of one shape before building the next), then taken down by the last
test, which checks nothing is left.

What is asserted is what a real cluster of that shape shows on its nodes (over SSH) and in its API,
plus real traffic: the NodePort on every node, pod-to-pod across nodes. Then the tool itself:
`diagnose --json` on the healthy shape has no finding and names the shape, `fix --yes` changes
nothing on any node; then each fault that applies to the shape, alone: found on the right node,
repaired by hand back to healthy (and the ones that do not apply are refused).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_diagnose_lab import CASES, _diag, _summary, _wait_healthy

pytestmark = pytest.mark.lab

SHAPES = ["k3s", "calico", "kube-proxy-free"]


@pytest.fixture(scope="module", params=SHAPES)
def shape_lab(request, tmp_path_factory):
    from clusterfix_tui.lab import cluster

    d = tmp_path_factory.mktemp(f"lab-{request.param}") / "lab"
    handle = cluster.up(d, nodes=3, shape=request.param, timeout=240)
    handle.shape = request.param
    handle.recorded = handle.info  # for the down test: what was started
    try:
        yield handle
    finally:
        if (d / "lab.json").exists():
            cluster.down(d)


# -- helpers -----------------------------------------------------------------------------------

def ssh(lab, node: str, command: str) -> subprocess.CompletedProcess[str]:
    """A command on the node over real SSH (host key checked)."""
    return subprocess.run(["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", node, command],
                          capture_output=True, text=True, timeout=30, check=False)


def kjson(lab, tmp: Path, *args: str) -> dict:
    r = subprocess.run(["kubectl", "--kubeconfig", str(lab.kubeconfig), "--cache-dir", str(tmp / "kc"), *args,
                        "-o", "json"], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(r.stdout)


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"}, check=False)


def nodeport_answers(lab) -> dict[str, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    out = {}
    for n in lab.nodes:
        try:
            with opener.open(f"http://{n['ip']}:{lab.info['nodeport']}/", timeout=3) as r:
                out[n["name"]] = str(r.status)
        except Exception as e:  # noqa: BLE001 - the text goes into the assertion message
            out[n["name"]] = f"{type(e).__name__}: {e}"
    return out


def wait_nodeports(lab, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        res = nodeport_answers(lab)
        if all(v == "200" for v in res.values()) or time.monotonic() > deadline:
            return res
        time.sleep(1)


# -- real traffic --------------------------------------------------------------------------------

def test_nodeport_answers_on_every_node(shape_lab):
    res = wait_nodeports(shape_lab)
    assert all(v == "200" for v in res.values()), res


def test_pod_to_pod_across_nodes(shape_lab):
    pods = shape_lab.pods()
    echo = [p for p in pods if p["app"] == "net-echo"]
    jf = [p for p in pods if p["app"] == "jellyfin"]
    assert len({p["node"] for p in echo}) == 3 and jf
    tried = 0
    for src in echo:
        for dst, port in [(p, 8080) for p in echo] + [(p, 8096) for p in jf]:
            if dst["node"] == src["node"]:
                continue
            r = shape_lab.pod_exec(src["namespace"], src["name"],
                                   ["curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                                    f"http://{dst['ip']}:{port}/"], check=False)
            assert r.stdout == "200", f"{src['node']} {src['ip']} -> {dst['node']} {dst['ip']}:{port}: " \
                                      f"{r.stdout} {r.stderr}"
            tried += 1
    assert tried >= 6


# -- what the shape looks like on the nodes (over SSH) and in the API ----------------------------

def test_shape_facts_on_the_nodes(shape_lab):
    lab, shape = shape_lab, shape_lab.shape
    for n in lab.nodes:
        node = n["name"]
        links = ssh(lab, node, "ip -o link show")
        assert links.returncode == 0, links.stderr
        names = re.findall(r"^\d+: ([^:@]+)", links.stdout, re.M)
        routes = ssh(lab, node, "ip route show").stdout
        ipt = ssh(lab, node, "iptables-nft-save; iptables-legacy-save").stdout
        if shape == "k3s":
            r = ssh(lab, node, "cat /var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist "
                               "/var/lib/rancher/k3s/agent/etc/flannel/net-conf.json /run/flannel/subnet.env; "
                               "ls /etc/cni/net.d/ /etc/kubernetes/")
            assert '"type": "flannel"' in r.stdout and '"Type": "vxlan"' in r.stdout, r.stdout + r.stderr
            assert f"FLANNEL_SUBNET={n['pod_cidr'].replace('.0/24', '.1/24')}" in r.stdout
            assert "10-flannel.conflist" not in r.stdout.split("FLANNEL_IPMASQ")[-1]  # not in /etc/cni/net.d
            assert "flannel.1" in names and "cni0" in names
            assert "-A KUBE-SERVICES" in ipt and "KUBE-NODEPORTS" in ipt  # embedded kube-proxy programs them
            if n["role"] == "control-plane":
                assert ssh(lab, node, "test -s /etc/rancher/k3s/k3s.yaml").returncode == 0
        elif shape == "calico":
            assert "flannel.1" not in names and "cni0" not in names
            cali = [x for x in names if x.startswith("cali")]
            assert cali and all(len(x) == 15 for x in cali), names
            bird = [ln for ln in routes.splitlines() if "proto bird" in ln]
            assert any(ln.startswith(f"blackhole {n['pod_block']}") for ln in bird), routes
            peers = [m for m in lab.nodes if m["name"] != node]
            for m in peers:
                assert f"{m['pod_block']} via {m['ip']} dev eth0 proto bird" in routes, routes
            assert re.search(r"-A FORWARD .*Policy explicitly accepted packet.*--mark 0x10000/0x10000 -j ACCEPT", ipt)
            assert "-A FORWARD -m comment --comment \"cali:" in ipt and ":cali-FORWARD" in ipt
            assert "-A KUBE-SERVICES" in ipt  # kube-proxy runs as a DaemonSet on calico
            assert ssh(lab, node, "test -f /etc/cni/net.d/10-calico.conflist").returncode == 0
        else:
            assert "flannel.1" not in names and "cni0" not in names
            assert "cilium_host" in names and "cilium_net" in names
            assert [x for x in names if x.startswith("lxc")], names
            assert "KUBE-SERVICES" not in ipt and "KUBE-NODEPORTS" not in ipt, "kube-proxy rules on a kube-proxy-free node"
            for rule in ('-A CILIUM_FORWARD -o cilium_host -m comment --comment "cilium: any->cluster on cilium_host '
                         'forward accept" -j ACCEPT',
                         '-A CILIUM_FORWARD -i lxc+ -m comment --comment "cilium: cluster->any on lxc+ forward accept"'
                         ' -j ACCEPT',
                         '-A FORWARD -m comment --comment "cilium-feeder: CILIUM_FORWARD" -j CILIUM_FORWARD'):
                assert rule in ipt, ipt
            assert re.search(rf"-A CILIUM_PRE_nat .*--dport {lab.info['nodeport']} .*-j DNAT", ipt), ipt
            for m in lab.nodes:
                if m["name"] != node:
                    assert f"{m['pod_cidr']} via {m['ip']} dev eth0" in routes, routes


def test_shape_facts_in_the_api(shape_lab, tmp_path):
    lab, shape = shape_lab, shape_lab.shape
    ds = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in kjson(lab, tmp_path, "get", "ds", "-A")["items"]}
    cms = {(c["metadata"]["namespace"], c["metadata"]["name"])
           for c in kjson(lab, tmp_path, "get", "configmaps", "-A")["items"]}
    pods = kjson(lab, tmp_path, "get", "pods", "-A")["items"]
    nodes = kjson(lab, tmp_path, "get", "nodes")["items"]
    names = {d[1] for d in ds}
    assert "kube-flannel-ds" not in names and ("kube-flannel", "kube-flannel-cfg") not in cms
    if shape == "k3s":
        assert "kube-proxy" not in names and not [p for p in pods if "flannel" in p["metadata"]["name"]
                                                  or "kube-proxy" in p["metadata"]["name"]]
        for node in nodes:
            md = node["metadata"]
            assert md["labels"]["node.kubernetes.io/instance-type"] == "k3s"
            assert json.loads(md["annotations"]["k3s.io/node-args"])[0] in ("server", "agent")
            assert json.loads(md["annotations"]["flannel.alpha.coreos.com/backend-data"])["VtepMAC"]
            assert node["status"]["nodeInfo"]["kubeletVersion"].endswith("+k3s1")
    elif shape == "calico":
        assert ("kube-system", "calico-node") in ds and ("kube-system", "kube-proxy") in ds
        calico = [p for p in pods if p["metadata"]["labels"].get("k8s-app") == "calico-node"]
        assert len(calico) == 3 and all(p["metadata"]["ownerReferences"][0]["name"] == "calico-node" for p in calico)
        for node in nodes:
            assert "flannel.alpha.coreos.com/backend-data" not in (node["metadata"].get("annotations") or {})
    else:
        assert ("kube-system", "cilium") in ds and "kube-proxy" not in names
        assert ("kube-system", "kube-proxy") not in cms
        assert not [p for p in pods if "kube-proxy" in p["metadata"]["name"]]


# -- the tool on a healthy shape -----------------------------------------------------------------

EXPECTED_SHAPE = {
    "k3s": {"cni": "flannel", "kube_proxy": "embedded"},
    "calico": {"cni": "calico", "kube_proxy": "daemonset"},
    "kube-proxy-free": {"cni": "cilium", "kube_proxy": "absent"},
}


def test_diagnose_healthy_shape_has_no_finding_and_names_the_shape(shape_lab):
    wait_nodeports(shape_lab)
    r = cli("diagnose", "--lab-dir", str(shape_lab.dir), "--json", "-q")
    out = json.loads(r.stdout)
    assert out["findings"] == [], [(f["code"], f.get("node"), f.get("title")) for f in out["findings"]]
    shape = out["shape"]
    for key, want in EXPECTED_SHAPE[shape_lab.shape].items():
        assert shape[key] == want, shape
    if shape_lab.shape == "k3s":
        assert shape["flannel"]["deployment"] == "embedded" and shape["flannel"]["backend"] == "vxlan", shape


STATE_COMMANDS = {
    "iptables-legacy": "iptables-legacy-save 2>&1 | grep -v '^#'",
    "iptables-nft": "iptables-nft-save 2>&1 | grep -v '^#'",
    "ip6tables": "ip6tables-legacy-save 2>&1 | grep -v '^#'; ip6tables-nft-save 2>&1 | grep -v '^#'",
    "nft": "nft list ruleset 2>&1",
    "alternative": "readlink -f /etc/alternatives/iptables",
    "links": "ip -o link show | sed -E 's/ qlen [0-9]+//' | sort",
    "addresses": "ip -o addr show | sed -E 's/ (valid_lft|preferred_lft) [a-z0-9]+//g' | sort",
    "routes": "ip route show table all | sort; ip -6 route show table all | sort",
    "neigh-permanent": "ip neigh show nud permanent | sort",
    "sysctls": "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables",
    "files": "ls -la --time-style=+ /etc/cni/net.d /var/lib/rancher/k3s/agent/etc/cni/net.d 2>&1; "
             "cat /run/flannel/subnet.env 2>&1; md5sum /etc/cni/net.d/* /root/.kube/config "
             "/var/lib/rancher/k3s/agent/etc/cni/net.d/* 2>&1",
}
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")


def node_state(lab) -> dict[str, dict[str, str]]:
    return {n["name"]: {k: _COUNTERS.sub("", lab.exec(n["name"], c, check=False).stdout)
                        for k, c in STATE_COMMANDS.items()} for n in lab.nodes}


def settled_state(lab, timeout: float = 40) -> dict[str, dict[str, str]]:
    """The state once two reads 2 s apart agree (fresh links still get their IPv6 link-local
    addresses and routes for a moment)."""
    prev = node_state(lab)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2)
        cur = node_state(lab)
        if cur == prev:
            return cur
        prev = cur
    return prev


@pytest.fixture(scope="module")
def fixed(shape_lab, tmp_path_factory):
    """One `fix --yes` on the healthy shape: (state before, state after, the run, journal events)."""
    wait_nodeports(shape_lab)
    before = settled_state(shape_lab)
    journal = tmp_path_factory.mktemp("fix") / "j.jsonl"
    r = cli("fix", "--yes", "--lab-dir", str(shape_lab.dir), "--journal", str(journal), "--wait", "20")
    after = node_state(shape_lab)
    events = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    return before, after, r, events


def test_fix_yes_changes_nothing_on_a_healthy_shape(fixed):
    before, after, r, events = fixed
    assert events, r.stdout + r.stderr
    changed = [f"{node}/{k}:\n--- before\n{v}\n--- after\n{after[node][k]}"
               for node, st in before.items() for k, v in st.items() if v != after[node][k]]
    assert changed == [], "\n".join(changed)[:6000]
    assert not [e for e in events if e["type"] == "command_start"], r.stdout


def test_fix_yes_on_a_healthy_shape_validates_healthy(fixed):
    _before, _after, r, events = fixed
    assert r.returncode == 0, r.stdout + r.stderr
    assert events[-1]["type"] == "session_end" and events[-1]["verdict"] == "healthy"


# -- the faults that apply to the shape, one at a time -------------------------------------------
# (after the healthy-shape tests: a repaired fault can leave harmless traces, e.g. an empty legacy
# nat table stays registered after iptables-shadow)

@pytest.fixture(scope="module")
def runtime(shape_lab):
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(shape_lab.dir))
    yield rt
    rt.close()


@pytest.mark.parametrize("fault", sorted(CASES))
def test_each_applicable_fault_gives_its_finding_on_the_right_node(shape_lab, runtime, fault):
    """A fault that applies: real, found on the right node and nothing else, then repaired by hand
    back to healthy (test_diagnose_lab's table and repairs). One that does not: refused."""
    from clusterfix_tui.lab import faults as F

    lab = shape_lab
    if not F.applies(fault, lab.shape):
        with pytest.raises(F.FaultError, match=f"does not apply to a {lab.shape} lab"):
            lab.inject(fault)
        return
    code, where, restore = CASES[fault]
    before = _wait_healthy(runtime, lab)
    assert before.healthy, f"{lab.shape} lab not healthy before {fault}: {_summary(before)}"
    node = F.preferred_node(lab, fault)
    if fault == "worker-kubeconfig":
        lab.exec(node, "cp /root/.kube/config /root/.kube/config.cfxtest")
    rec = lab.inject(fault, node)
    rec = rec[0] if isinstance(rec, list) else rec
    assert rec["physical"] is True, rec
    lab.reconcile()
    d = _diag(runtime)
    try:
        expected = {node} if where == "node" else {n["name"] for n in lab.nodes} - {node}
        got = _summary(d)
        assert got == sorted((code, n) for n in expected), (
            f"{fault} on {node} of a {lab.shape} lab: expected {code} on {sorted(expected)}, got {got}\n"
            + "\n".join(f"{f.code} {f.node}: {f.evidence}" for f in d.findings))
    finally:
        restore(lab, node, rec, d, runtime)
        after = _wait_healthy(runtime, lab)
        assert after.healthy, f"after restoring {fault}: {_summary(after)}"


# -- k3s: the node's own systemctl ---------------------------------------------------------------

UNITS = "k3s k3s-agent rke2-server rke2-agent"


def test_k3s_nodes_have_their_own_systemctl_that_restarts_embedded_flannel(shape_lab):
    """k3s nodes: `systemctl` (inside the node's mount namespace only) knows the node's unit (k3s on
    the server, k3s-agent on agents) and its restart really restarts the embedded flannel (subnet.env
    rewritten, flannel.1 readdressed). Other shapes' nodes have no such stub."""
    if shape_lab.shape != "k3s":
        for n in shape_lab.nodes:
            r = ssh(shape_lab, n["name"], "test -e /usr/local/sbin/systemctl && echo stub || echo none")
            assert r.stdout.strip() == "none", (n["name"], r.stdout, r.stderr)
        return
    assert not Path("/usr/local/sbin/systemctl").exists()  # the host never sees the stub
    for n in shape_lab.nodes:
        r = ssh(shape_lab, n["name"], f"systemctl is-active {UNITS}; echo rc=$?")
        want = "active inactive" if n["role"] == "control-plane" else "inactive active"
        assert r.stdout.split() == [*want.split(), "inactive", "inactive", "rc=3"], (n["name"], r.stdout, r.stderr)
    agent = next(n for n in shape_lab.nodes if n["role"] != "control-plane")
    r = ssh(shape_lab, agent["name"], "systemctl restart k3s; echo rc=$?")
    assert r.stdout.split()[-1] == "rc=5" and "k3s.service not found" in r.stderr, (r.stdout, r.stderr)
    net = agent["pod_cidr"].split("/")[0]
    gw = net.rsplit(".", 1)[0] + ".1"
    # break what only flannel rewrites, then restart the node's unit: flannel puts it back
    r = ssh(shape_lab, agent["name"],
            "mv /run/flannel/subnet.env /root/subnet.env.test && ip addr flush dev flannel.1 && "
            "! grep -qs FLANNEL_SUBNET /run/flannel/subnet.env && systemctl restart k3s-agent; echo rc=$?; "
            "rm -f /root/subnet.env.test; cat /run/flannel/subnet.env; ip -o addr show dev flannel.1")
    assert "rc=0" in r.stdout, (r.stdout, r.stderr)
    assert f"FLANNEL_SUBNET={gw}/24" in r.stdout and f" {net}/32 " in r.stdout, r.stdout
    res = wait_nodeports(shape_lab, timeout=30)
    assert all(x == "200" for x in res.values()), res


# -- down: nothing left --------------------------------------------------------------------------

def test_zz_down_leaves_no_namespace_process_or_link(shape_lab):
    from clusterfix_tui.lab import cluster
    from clusterfix_tui.lab import nodes as N

    info = shape_lab.info
    pids = [info["daemon_pid"]] + [n[k] for n in info["nodes"] for k in ("init_pid", "sshd_pid") if n.get(k)]
    pids += [p["pid"] for n in info["nodes"] for p in n.get("pods") or [] if p.get("pid")]
    netns = [n["netns"] for n in info["nodes"]] + list(info.get("pod_netns") or [])
    assert all(N.pid_alive(p) for p in pids) and all(N.netns_exists(x) for x in netns)
    cluster.down(shape_lab.dir)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert not [x for x in netns if x in listed]
    assert not [p for p in pids if N.pid_alive(p)]
    assert not N.link_exists(info["bridge"]["name"])
    assert not Path(info["state_dir"]).exists()
