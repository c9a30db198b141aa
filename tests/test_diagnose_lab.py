"""Diagnostics against the real lab: over SSH (paramiko, real sshd per node) and HTTPS (the lab API).

One shared 3-node lab: each catalog fault is injected alone, diagnosed, then its root cause is
removed by hand (what the fault's record says an admin would do) and the lab must diagnose healthy
again before the next one. Nothing is patched: the transports are the product's own
(clusterfix_tui.runtime.build_runtime).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _env import require
from lab_helpers import lab_fixture

from clusterfix_tui.core.diagnose import diagnose

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3, faults="none")
DATA = Path(__file__).parent / "data" / "facts"


@pytest.fixture(scope="module")
def runtime(lab):
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(lab.dir))
    yield rt
    rt.close()


# tests that break a lab (faults, sshd, known_hosts) get one of their own; `lab` is only read
fresh_lab = lab_fixture(nodes=3, faults="none", scope="function", name="fresh_lab")


@pytest.fixture
def fresh_runtime(fresh_lab):
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(fresh_lab.dir))
    yield rt
    rt.close()


def _diag(runtime):
    return diagnose(runtime.api, runtime.shells)


def _summary(d) -> list[tuple[str, str]]:
    return sorted((f.code, f.node) for f in d.findings)


def _wait_healthy(runtime, lab, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        lab.reconcile()
        d = _diag(runtime)
        if d.healthy or time.monotonic() > deadline:
            return d
        time.sleep(1.0)


def test_healthy_lab_cli_json_has_no_findings(lab):
    r = subprocess.run(
        [sys.executable, "-m", "clusterfix_tui", "diagnose", "--lab-dir", str(lab.dir), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert doc["findings"] == [] and doc["healthy"] is True
    assert set(doc["nodes"]) == {"node-1", "node-2", "node-3"}
    for name, n in doc["nodes"].items():
        assert n["read"] and n["facts"]["complete"], name
        assert n["facts"]["kube_proxy_backend"] in ("nft", "legacy")
    # progress went to stderr as the nodes answered
    assert "node-1: facts read" in r.stderr and "checks:" in r.stderr
    # the human rendering says healthy and exits 0 too
    r2 = subprocess.run(
        [sys.executable, "-m", "clusterfix_tui", "diagnose", "--lab-dir", str(lab.dir), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert r2.returncode == 0 and "no findings" in r2.stdout


def test_healthy_lab_facts_show_normal_flannel_layout(runtime, lab):
    """flannel.1 with its subnet's network address as /32 and onlink routes via 10.244.Y.0 are
    present in the healthy lab, and are not findings."""
    d = _diag(runtime)
    assert d.healthy, [(f.code, f.node, f.evidence) for f in d.findings]
    for n in lab.nodes:
        f = d.facts[n["name"]]
        net = n["pod_cidr"].split("/")[0]
        addrs = [a for link in f.addrs if link.get("ifname") == "flannel.1"
                 for a in link.get("addr_info", [])]
        assert any(a["local"] == net and a["prefixlen"] == 32 for a in addrs)
        onlink = [r for r in f.routes if r.get("dev") == "flannel.1" and "onlink" in (r.get("flags") or [])]
        assert len(onlink) == len(lab.nodes) - 1
    # keep what the lab really says, for the unit tests (CFX_CAPTURE=1)
    _capture("healthy", runtime, lab)


def _capture(name: str, runtime, lab, expected=()) -> None:
    """Record the API's answers and every node's facts output as tests/data/lab/<name>.json."""
    if not os.environ.get("CFX_CAPTURE"):
        return
    from clusterfix_tui.core.facts import build_facts_script
    from clusterfix_tui.core.snapshot import (
        FLANNEL_SELECTOR,
        KUBE_PROXY_SELECTOR,
        SYSTEM_NAMESPACES,
    )

    api = runtime.api
    rec = {"describe": api.describe(), "version": api.version(), "nodes": api.list_nodes(),
           "pods": api.list_pods(None, None), "services": api.list_services(None),
           "endpoints": api.list_endpoints(None), "events": api.list_events(None),
           "daemonsets": {ns: api.list_daemonsets(ns) for ns in SYSTEM_NAMESPACES},
           "configmaps": {}, "logs": {}, "facts": {}, "peer_ips": {},
           "expected": [list(e) for e in expected]}
    if hasattr(api, "list_endpointslices"):  # cluster DNS (core/dns.py)
        rec["dns"] = {"service": api.get_service("kube-system", "kube-dns"),
                      "deployments": api.list_deployments("kube-system"),
                      "endpointslices": api.list_endpointslices(
                          "kube-system", "kubernetes.io/service-name=kube-dns")}
    for ns in SYSTEM_NAMESPACES:
        for cm in ("kube-proxy", "kube-flannel-cfg"):
            got = api.get_configmap(ns, cm)
            if got:
                rec["configmaps"][f"{ns}/{cm}"] = got
        for sel in (KUBE_PROXY_SELECTOR, FLANNEL_SELECTOR):
            for p in api.list_pods(ns, sel):
                m = p["metadata"]
                for prev in (False, True):
                    try:
                        text = api.pod_log(m["namespace"], m["name"], None, tail_lines=30, previous=prev)
                    except Exception:
                        continue
                    rec["logs"][f"{m['namespace']}/{m['name']}/{'previous' if prev else 'current'}"] = text
    from clusterfix_tui.core.snapshot import build_snapshot

    snap = build_snapshot(api, with_logs=False)
    for n in lab.nodes:
        peers = snap.peer_pod_ips(n["name"])
        rec["peer_ips"][n["name"]] = peers
        script = build_facts_script(peers, nonce="labnonce0001")
        rec["facts"][n["name"]] = runtime.shells(n["name"]).run(script, timeout=60).stdout
    (DATA.parent / "lab").mkdir(exist_ok=True)
    (DATA.parent / "lab" / f"{name}.json").write_text(json.dumps(rec, indent=1, sort_keys=True))


# -- one fault at a time -------------------------------------------------------------------------

def _backend(lab, node):
    from clusterfix_tui.lab import faults as F

    return F.kube_proxy_backend(lab, node)


def _restore_shadow(lab, node, rec, d, runtime):
    other = "legacy" if _backend(lab, node) == "nft" else "nft"
    lab.exec(node, f"iptables-{other} -w 5 -t nat -F && iptables-{other} -w 5 -t nat -X")


def _restore_foreign(lab, node, rec, d, runtime):
    f = next(f for f in d.findings if f.code == "KUBE_PROXY_INCOMPATIBLE_CHAIN")
    for r in f.data["foreign_rules"]:
        lab.exec(node, "nft delete rule ip nat " + shlex.quote(r["chain"]) + f" handle {int(r['handle'])}")


def _restore_forward(lab, node, rec, d, runtime):
    other = "legacy" if _backend(lab, node) == "nft" else "nft"
    lab.exec(node, f"iptables-{other} -w 5 -P FORWARD ACCEPT")


def _restore_reject(lab, node, rec, d, runtime):
    b = _backend(lab, node)
    for chain in ("INPUT", "FORWARD"):
        lab.exec(node, f"iptables-{b} -w 5 -D {chain} -j REJECT --reject-with icmp-host-prohibited")


def _restore_kube_proxy(lab, node, rec, d, runtime):
    f = next(f for f in d.findings if f.code == "KUBE_PROXY_CRASHLOOP")
    runtime.api.delete_pod(f.data["namespace"], f.data["pod"])


def _restore_bridge(lab, node, rec, d, runtime):
    f = next(f for f in d.findings if f.code == "CNI_BRIDGE_CONFLICT")
    for a in f.data["wrong_addresses"]:
        lab.exec(node, f"ip addr del {shlex.quote(a)} dev cni0")
    lab.restart_pod(node, "kube-flannel-ds")


def _restore_vtep(lab, node, rec, d, runtime):
    for f in d.findings:
        if f.code == "FLANNEL_STALE_VTEP":
            lab.restart_pod(f.node, "kube-flannel-ds")


def _restore_subnet(lab, node, rec, d, runtime):
    f = next(f for f in d.findings if f.code == "FLANNEL_STALE_SUBNET")
    for a in f.data["stale_addresses"]:
        lab.exec(node, f"ip addr del {shlex.quote(a)} dev flannel.1")
    lab.restart_pod(node, "kube-flannel-ds")


def _restore_kubeconfig(lab, node, rec, d, runtime):
    lab.exec(node, "cp /root/.kube/config.cfxtest /root/.kube/config")


def _restore_sysctl(path):
    def restore(lab, node, rec, d, runtime):
        lab.exec(node, f"echo 1 > {path}")
    return restore


# fault -> (expected code, where: "node" = the faulted node, "peers" = every other node, restore)
CASES = {
    "iptables-shadow": ("IPTABLES_BACKEND_CONFLICT", "node", _restore_shadow),
    "iptables-foreign-rule": ("KUBE_PROXY_INCOMPATIBLE_CHAIN", "node", _restore_foreign),
    "forward-drop": ("FORWARD_DROP", "node", _restore_forward),
    "firewall-reject": ("FIREWALL_REJECT", "node", _restore_reject),
    "kube-proxy-crashloop": ("KUBE_PROXY_CRASHLOOP", "node", _restore_kube_proxy),
    "cni-bridge-conflict": ("CNI_BRIDGE_CONFLICT", "node", _restore_bridge),
    "flannel-stale-vtep": ("FLANNEL_STALE_VTEP", "peers", _restore_vtep),
    "flannel-stale-subnet": ("FLANNEL_STALE_SUBNET", "node", _restore_subnet),
    "worker-kubeconfig": ("WORKER_KUBECONFIG_BROKEN", "node", _restore_kubeconfig),
    "ip-forward-off": ("IP_FORWARD_OFF", "node", _restore_sysctl("/proc/sys/net/ipv4/ip_forward")),
    "br-netfilter-off": ("BR_NETFILTER_OFF", "node",
                         _restore_sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables")),
}


@pytest.mark.parametrize("fault", list(CASES))
def test_each_fault_gives_its_finding_on_the_right_node_and_nothing_else(fault, fresh_lab,
                                                                        fresh_runtime):
    lab, runtime = fresh_lab, fresh_runtime
    from clusterfix_tui.lab import faults as F

    code, where, restore = CASES[fault]
    before = _wait_healthy(runtime, lab)
    assert before.healthy, f"lab not healthy before {fault}: {_summary(before)}"
    node = F.preferred_node(lab, fault)
    if fault == "worker-kubeconfig":
        lab.exec(node, "cp /root/.kube/config /root/.kube/config.cfxtest")
    rec = lab.inject(fault, node)
    rec = rec[0] if isinstance(rec, list) else rec
    if fault == "iptables-foreign-rule":  # needs an iptables-nft that refuses nft-only rules
        require(rec.get("physical", True), f"fault not physical on this machine: {rec.get('detail')}")
    lab.reconcile()
    d = _diag(runtime)
    try:
        expected_nodes = {node} if where == "node" else {n["name"] for n in lab.nodes} - {node}
        got = _summary(d)
        assert got == sorted((code, n) for n in expected_nodes), (
            f"{fault} on {node}: expected {code} on {sorted(expected_nodes)}, got {got}\n"
            + "\n".join(f"{f.code} {f.node}: {f.evidence}" for f in d.findings))
        for f in d.findings:
            assert f.evidence and all(isinstance(e, str) and e for e in f.evidence)
            assert f.step and f.reference and f.title
        _fault_specifics(fault, node, d)
        _capture(fault, runtime, lab, expected=[(code, n) for n in sorted(expected_nodes)])
    finally:
        restore(lab, node, rec, d, runtime)
        after = _wait_healthy(runtime, lab)
        assert after.healthy, f"after restoring {fault}: {_summary(after)}"


def _fault_specifics(fault: str, node: str, d) -> None:
    f = d.findings[0]
    if fault == "iptables-shadow":
        assert f.data["other_backend"] != f.data["kube_proxy_backend"]
        assert f.data["stale_chains"].get("nat")
        assert f.data["shadowing_rules"] and f.data["shadows_live_path"] is True
    elif fault == "iptables-foreign-rule":
        assert f.data["cause"] == "foreign-nft-rule"
        assert f.data["recommend_backend_switch"] is False
        assert f.data["foreign_rules"] and all(isinstance(r["handle"], int) for r in f.data["foreign_rules"])
        assert any("ct state new" in r["text"] for r in f.data["foreign_rules"])
    elif fault == "forward-drop":
        assert f.data["backend"] != f.data["kube_proxy_backend"] and f.data["policy"] == "DROP"
    elif fault == "firewall-reject":
        assert any("icmp-host-prohibited" in r["rule"] for r in f.data["rules"])
    elif fault == "kube-proxy-crashloop":
        assert f.data["reason"] == "CrashLoopBackOff"
        assert any(s["code"] == "KUBE_PROXY_NO_RULES" for s in f.data.get("symptoms", []))
    elif fault == "cni-bridge-conflict":
        assert f.data["wrong_addresses"] and f.data["expected"].endswith(".1/24")
    elif fault == "flannel-stale-vtep":
        assert all(x.data["peer_node"] == node for x in d.findings)
        assert all(x.data["wrong_mac"] != x.data["expected_mac"] for x in d.findings)
    elif fault == "flannel-stale-subnet":
        assert f.data["stale_addresses"] and f.data["expected_address"].endswith(".0/32")
        assert any(s["code"] == "FLANNEL_CRASHLOOP" for s in f.data.get("symptoms", []))
    elif fault == "worker-kubeconfig":
        assert f.data["reason"] == "wrong-server" and f.data["kubectl_rc"] != 0
    elif fault == "ip-forward-off" or fault == "br-netfilter-off":
        assert f.data["value"] == "0"


# -- nodes we cannot read ------------------------------------------------------------------------

def test_sshd_stopped_and_wrong_host_key_are_findings_others_diagnosed(fresh_lab):
    lab = fresh_lab
    from clusterfix_tui.runtime import build_runtime

    kh = Path(lab.known_hosts)
    original = kh.read_text()
    keydir = Path(lab.dir) / "cfxtest-otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keydir)], check=True)
    other_key = (keydir.with_suffix(".pub")).read_text().split()[:2]
    lines = []
    for line in original.splitlines():
        if line.split(" ", 1)[0].split(",")[0] == "node-3":
            hosts = line.split(" ", 1)[0]
            line = f"{hosts} {other_key[0]} {other_key[1]}"
        lines.append(line)
    lab.stop_sshd("node-2")
    kh.write_text("\n".join(lines) + "\n")
    rt = build_runtime(lab_dir=str(lab.dir))  # fresh pool: no connection reused from before
    try:
        d = diagnose(rt.api, rt.shells)
        got = {(f.code, f.node) for f in d.findings}
        assert ("SSH_UNREACHABLE", "node-2") in got, got
        assert ("HOST_KEY_CHANGED", "node-3") in got, got
        assert "node-1" in d.facts and d.facts["node-1"].complete
        assert not any(f.node == "node-1" for f in d.findings), got
        assert set(d.node_errors) == {"node-2", "node-3"}
        assert {c for c, _ in got} <= {"SSH_UNREACHABLE", "HOST_KEY_CHANGED"}, got
    finally:
        rt.close()
        kh.write_text(original)
        lab.start_sshd("node-2")
        for p in (keydir, keydir.with_suffix(".pub")):
            p.unlink(missing_ok=True)


def test_unknown_host_key_is_a_finding_with_its_fingerprint(fresh_lab):
    lab = fresh_lab
    from clusterfix_tui.runtime import build_runtime

    kh = Path(lab.known_hosts)
    original = kh.read_text()
    kh.write_text("".join(line + "\n" for line in original.splitlines()
                          if line.split(" ", 1)[0].split(",")[0] != "node-1"))
    rt = build_runtime(lab_dir=str(lab.dir))
    try:
        d = diagnose(rt.api, rt.shells)
        assert sorted((f.code, f.node) for f in d.findings) == [("HOST_KEY_UNKNOWN", "node-1")]
        (f,) = d.findings
        assert f.data["fingerprint"].startswith("SHA256:") and f.data["key_type"]
        assert f.data["key_line"] and f.data["fingerprint"] in f.evidence[0]
        assert set(d.facts) == {"node-2", "node-3"}
    finally:
        rt.close()
        kh.write_text(original)
