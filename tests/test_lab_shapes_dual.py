"""Dual-stack labs, for real: IPv6 ULA node addresses and podCIDRs (fd00::/8, only inside the
lab's namespaces), flannel's flannel-v6.1 vxlan, ip -6 routes, a dual-stack kube-proxy writing
ip6tables, and the API's Node objects with podCIDRs and InternalIPs in the cluster's family order.

Every shape with both dual families, each lab built once for the module. The per-shape IPv6
facts: flannel-v6.1 routes (kubeadm, k3s), `proto bird` IPv6 block routes and felix's ip6tables
chains (calico), native IPv6 routes and the CILIUM_* ip6tables chains doing the NodePort
(kube-proxy-free).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from test_lab_shapes import cli, kjson, node_state, settled_state, ssh

pytestmark = pytest.mark.lab

CASES = [(s, f) for s in ("kubeadm", "k3s", "calico", "kube-proxy-free") for f in ("dual", "dual-v6-first")]
FLANNEL = ("kubeadm", "k3s")


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{f}" for s, f in CASES])
def dual_lab(request, tmp_path_factory):
    from clusterfix_tui.lab import cluster

    shape, family = request.param
    d = tmp_path_factory.mktemp(f"lab-{shape}-{family}") / "lab"
    handle = cluster.up(d, nodes=3, shape=shape, ip_family=family, timeout=240)
    handle.shape, handle.family = shape, family
    try:
        yield handle
    finally:
        if (d / "lab.json").exists():
            cluster.down(d)


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as r:
            return str(r.status)
    except Exception as e:  # noqa: BLE001 - goes into the assertion message
        return f"{type(e).__name__}: {e}"


def test_nodeport_answers_on_every_node_on_both_families(dual_lab):
    port = dual_lab.info["nodeport"]
    res = {}
    for n in dual_lab.nodes:
        res[(n["name"], "v4")] = _get(f"http://{n['ip']}:{port}/")
        res[(n["name"], "v6")] = _get(f"http://[{n['ip6']}]:{port}/")
    assert all(v == "200" for v in res.values()), res


def test_pod_to_pod_across_nodes_over_ipv6(dual_lab):
    echo = [p for p in dual_lab.pods() if p["app"] == "net-echo"]
    jf = [p for p in dual_lab.pods() if p["app"] == "jellyfin"]
    tried = 0
    for src in echo:
        for dst, port in [(p, 8080) for p in echo] + [(p, 8096) for p in jf]:
            if dst["node"] == src["node"]:
                continue
            r = dual_lab.pod_exec(src["namespace"], src["name"],
                                  ["curl", "-g", "-sS", "-m", "3", f"http://[{dst['ip6']}]:{port}/"], check=False)
            assert r.returncode == 0 and r.stdout.startswith(dst["name"]), \
                f"{src['ip6']} -> {dst['node']} [{dst['ip6']}]:{port}: {r.stdout} {r.stderr}"
            assert f"from {src['ip6']}" in r.stdout  # no NAT between pods
            tried += 1
    assert tried >= 6


def test_ipv6_ranges_are_ula_and_the_api_orders_families(dual_lab, tmp_path: Path):
    ula = ipaddress.ip_network("fd00::/8")
    v6_first = dual_lab.family == "dual-v6-first"
    for node in kjson(dual_lab, tmp_path, "get", "nodes")["items"]:
        cidrs = node["spec"]["podCIDRs"]
        ips = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert len(cidrs) == 2 and len(ips) == 2
        fams = [":" in c for c in cidrs]
        assert fams == ([True, False] if v6_first else [False, True]), cidrs
        assert [":" in a for a in ips] == fams, ips
        assert node["spec"]["podCIDR"] == cidrs[0]
        for x in [c for c in cidrs if ":" in c] + [a for a in ips if ":" in a]:
            assert ipaddress.ip_network(x).subnet_of(ula), x
        ann = node["metadata"]["annotations"]
        if dual_lab.shape in FLANNEL:
            assert ipaddress.ip_address(ann["flannel.alpha.coreos.com/public-ipv6"]) in ula
            assert json.loads(ann["flannel.alpha.coreos.com/backend-v6-data"])["VtepMAC"]
    svc = kjson(dual_lab, tmp_path, "-n", "media", "get", "service", "jellyfin")
    assert svc["spec"]["ipFamilies"] == (["IPv6", "IPv4"] if v6_first else ["IPv4", "IPv6"])
    assert [":" in x for x in svc["spec"]["clusterIPs"]] == [v6_first, not v6_first]


def test_ipv6_routes_and_ip6tables_on_the_nodes(dual_lab):
    shape = dual_lab.shape
    for n in dual_lab.nodes:
        r = ssh(dual_lab, n["name"], "ip -6 route show; ip6tables-save; cat /run/flannel/subnet.env 2>/dev/null; true")
        assert r.returncode == 0, r.stderr
        out = r.stdout
        for m in dual_lab.nodes:
            if m["name"] == n["name"]:
                continue
            if shape in FLANNEL:
                net = ipaddress.ip_network(m["pod_cidr6"])
                assert f"{net} via {net.network_address} dev flannel-v6.1" in out, out
            elif shape == "calico":
                assert f"{m['pod_block6']} via {m['ip6']} dev eth0 proto bird" in out, out
            else:
                assert f"{m['pod_cidr6']} via {m['ip6']} dev eth0" in out, out
        assert "DNAT --to-destination [fd00:" in out
        if shape == "kube-proxy-free":
            assert "KUBE-NODEPORTS" not in out and "-A CILIUM_PRE_nat" in out and "--dport 30096" in out
        else:
            assert "-A KUBE-NODEPORTS" in out and "--dport 30096" in out
        if shape in FLANNEL:
            assert f"FLANNEL_IPV6_SUBNET={ipaddress.ip_network(n['pod_cidr6']).network_address + 1}/64" in out
        if shape == "calico":
            assert f"blackhole {n['pod_block6']}" in out and ":cali-FORWARD" in out
            assert "Policy explicitly accepted packet." in out


def test_diagnose_reports_the_family_and_no_finding(dual_lab):
    out = json.loads(cli("diagnose", "--lab-dir", str(dual_lab.dir), "--json", "-q").stdout)
    assert out["shape"]["ip_family"] == dual_lab.family
    assert out["findings"] == [], [(f["code"], f.get("node"), f.get("title")) for f in out["findings"]]


def test_fix_yes_changes_nothing_on_a_healthy_dual_stack_lab(dual_lab, tmp_path: Path):
    """Both families' state (ip6tables, ip -6 routes and addresses included) is the same after
    `fix --yes` on a healthy dual-stack lab, and no command ran."""
    before = settled_state(dual_lab)
    journal = tmp_path / "j.jsonl"
    r = cli("fix", "--yes", "--lab-dir", str(dual_lab.dir), "--journal", str(journal), "--wait", "20")
    after = node_state(dual_lab)
    changed = [f"{node}/{k}:\n--- before\n{v}\n--- after\n{after[node][k]}"
               for node, st in before.items() for k, v in st.items() if v != after[node][k]]
    assert changed == [], "\n".join(changed)[:6000]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert not [e for e in events if e["type"] == "command_start"], r.stdout


def test_zz_down_leaves_nothing(dual_lab):
    from clusterfix_tui.lab import cluster
    from clusterfix_tui.lab import nodes as N

    info = dual_lab.info
    pids = [info["daemon_pid"]] + [n["init_pid"] for n in info["nodes"]] + [n["sshd_pid"] for n in info["nodes"]]
    netns = [n["netns"] for n in info["nodes"]] + list(info.get("pod_netns") or [])
    cluster.down(dual_lab.dir)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert not [x for x in netns if x in listed]
    assert not [p for p in pids if N.pid_alive(p)]
    assert not N.link_exists(info["bridge"]["name"])
