"""Issue 15 on a real lab, through the CLI (real SSH, real nftables tracing in the node
namespaces): for catalog faults that block a flow and for two faults no check knows (injected
with raw commands), `trace` names the node and the rule (or the route); after every trace, both
iptables backends and the nft ruleset on every node are what they were before (counters aside),
also after a trace killed with SIGKILL and then `rollback --journal`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from determinism import poll_until
from lab_helpers import lab_fixture
from test_repair_lab import cli

pytestmark = pytest.mark.lab

# every test here breaks its lab (a fault, a trace killed mid-way) and mends it: each gets one of
# its own (a lab is up in seconds), so no test depends on another's repair and the tests spread
# over the xdist workers (tests/conftest.py)
lab = lab_fixture(nodes=3, faults="none", scope="function")
STATE = {
    "legacy": "iptables-legacy-save 2>&1 | grep -v '^#'",
    "nft": "iptables-nft-save 2>&1 | grep -v '^#'",
    "ruleset": "nft list ruleset 2>&1",
}
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")
# kube-proxy rewrites its service/endpoint rules by itself when readiness changes
_LIVE = re.compile(r"KUBE-(SVC|SEP|EXT|FW)-|has no endpoints|dnat to|\breject\b.*KUBE|"
                   r"KUBE-SERVICES.*-d |KUBE-EXTERNAL-SERVICES -[dp] ")


def _state(lab) -> dict[str, str]:
    out = {}
    for n in lab.nodes:
        for k, cmd in STATE.items():
            text = _COUNTERS.sub("", lab.exec(n["name"], cmd, check=False).stdout)
            out[f"{n['name']}/{k}"] = "\n".join(
                ln for ln in text.splitlines() if not _LIVE.search(ln))
    return out


def _nodes(lab) -> tuple[str, str]:
    """(a node without the jellyfin pod, the jellyfin pod's node)."""
    jf = next(n["name"] for n in lab.nodes for p in n["pods"] if p.get("app") == "jellyfin")
    entry = next(n["name"] for n in lab.nodes if n["name"] != jf)
    return entry, jf


def traced(lab, tmp_path, *args: str) -> dict:
    """Run `trace ... --json`, assert every node's netfilter state is unchanged by it."""
    before = _state(lab)
    r = cli("trace", *args, "--lab-dir", str(lab.dir), "--json",
            "--journal", str(tmp_path / "trace.jsonl"), timeout=180)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    after = _state(lab)
    for k in before:
        assert after[k] == before[k], f"trace changed {k}"
    assert "cfx_trace_" not in "".join(after.values())
    return json.loads(r.stdout)


def test_healthy_nodeport_delivered(lab, tmp_path):
    entry, jf = _nodes(lab)
    res = traced(lab, tmp_path, "nodeport", entry)
    assert res["verdict"] == "delivered", res
    # the path: the entry node DNATs to the pod and forwards it; the pod's node receives it
    assert any(h["node"] == entry and "dnat to" in h["rule"] for h in res["hops"])
    assert any(h["node"] == jf and h["kind"] == "packet" for h in res["hops"])


def test_forward_drop_named_by_legacy_counter(lab, tmp_path):
    entry, _ = _nodes(lab)
    lab.inject("forward-drop", entry)
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
        # the netfilter map of `diagnose --json` shows who filters the node, legacy included
        r = cli("diagnose", "--lab-dir", str(lab.dir), "--json", timeout=180)
        assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
        nf = {(e["backend"], e["family"], e["table"]): e
              for e in json.loads(r.stdout)["netfilter"][entry]}
    finally:
        lab.exec(entry, "iptables-legacy -P FORWARD ACCEPT")
    assert res["verdict"] == "dropped", res
    assert res["where"]["node"] == entry
    assert res["where"]["table"] == "iptables-legacy filter"
    assert (res["where"]["chain"], res["where"]["rule"]) == ("FORWARD", "policy DROP")
    assert "filter/FORWARD" in res["legacy_untraced"][entry]
    assert {"chain": "FORWARD", "hook": "forward", "priority": 0, "policy": "drop",
            "rules": 0} in nf[("iptables-legacy", "ip", "filter")]["chains"]
    assert nf[("iptables-nft", "ip", "nat")]["owner"] == "kube-proxy"


def test_firewall_reject_named_on_pod_node(lab, tmp_path):
    from clusterfix_tui.lab.faults import FIREWALL_RULES

    entry, jf = _nodes(lab)
    lab.inject("firewall-reject", jf)
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
    finally:
        for line in FIREWALL_RULES.splitlines():
            if line.startswith("-A "):
                lab.exec(jf, f"iptables-nft -D {line[3:]}")
    assert res["verdict"] == "rejected", res
    w = res["where"]
    assert (w["node"], w["table"], w["chain"]) == (jf, "ip filter", "FORWARD")
    assert "reject" in w["rule"] and isinstance(w["handle"], int)


def test_ip_forward_off_is_no_route(lab, tmp_path):
    entry, _ = _nodes(lab)
    lab.inject("ip-forward-off", entry)
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
    finally:
        lab.exec(entry, "sysctl -qw net.ipv4.ip_forward=1")
    assert res["verdict"] == "no-route", res
    assert res["where"]["node"] == entry and "ip_forward = 0" in res["where"]["rule"]


def test_unknown_reject_in_user_chain_from_forward(lab, tmp_path):
    """A vendor chain jumped to from FORWARD (iptables-nft) rejecting the NodePort by its
    original destination port: no check knows it."""
    entry, _ = _nodes(lab)
    port = int(lab.info.get("nodeport") or 30096)
    lab.exec(entry, "iptables-nft -N CFX-VENDOR && iptables-nft -A CFX-VENDOR -p tcp -m conntrack "
             f"--ctorigdstport {port} -j REJECT && iptables-nft -I FORWARD 1 -j CFX-VENDOR")
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
    finally:
        lab.exec(entry, "iptables-nft -D FORWARD -j CFX-VENDOR; iptables-nft -F CFX-VENDOR; "
                 "iptables-nft -X CFX-VENDOR")
    assert res["verdict"] == "rejected", res
    w = res["where"]
    assert (w["node"], w["table"], w["chain"]) == (entry, "ip filter", "CFX-VENDOR")
    assert str(port) in w["rule"] and "reject" in w["rule"]


def test_unknown_output_drop_on_pod_flow(lab, tmp_path):
    """An nft-native table dropping, in the output hook, what a node sends to the jellyfin pod:
    `trace pod` from a pod on that node names it."""
    entry, jf = _nodes(lab)
    src = next(p for n in lab.nodes if n["name"] == entry for p in n["pods"])
    dst = next(p for n in lab.nodes if n["name"] == jf for p in n["pods"]
               if p.get("app") == "jellyfin")
    lab.exec(entry, "nft add table inet cfxvendor && nft add chain inet cfxvendor out "
             "'{ type filter hook output priority 0; }' && nft add rule inet cfxvendor out "
             f"ip daddr {dst['ip']} tcp dport {dst['port']} drop")
    try:
        res = traced(lab, tmp_path, "pod", f"{src['namespace']}/{src['name']}",
                     f"{dst['namespace']}/{dst['name']}")
    finally:
        lab.exec(entry, "nft delete table inet cfxvendor")
    assert res["verdict"] == "dropped", res
    w = res["where"]
    assert (w["node"], w["table"], w["chain"]) == (entry, "inet cfxvendor", "out")
    assert "drop" in w["rule"] and isinstance(w["handle"], int)


def _start_trace(lab, entry: str, journal) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterfix_tui", "trace", "nodeport", entry, "--lab-dir",
         str(lab.dir), "--journal", str(journal)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})

    def tables_up() -> bool:
        if not journal.exists():
            return False
        evs = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        return sum(1 for e in evs if e.get("type") == "command_end" and not e.get("rollback")) >= 2
    try:
        poll_until(tables_up, 120, "the trace tables to be set up")
    except BaseException:
        proc.kill()
        proc.wait(30)
        raise
    return proc


def test_sigterm_removes_the_tables_itself(lab, tmp_path):
    entry, jf = _nodes(lab)
    before = _state(lab)
    journal = tmp_path / "term.jsonl"
    proc = _start_trace(lab, entry, journal)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == 130
    after = _state(lab)
    for k in before:
        assert after[k] == before[k], f"{k} differs after SIGTERM"
    r = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(lab.dir))
    assert r.returncode == 0 and "nothing to roll back" in r.stdout, r.stdout


def test_sigkill_then_rollback_leaves_nodes_as_before(lab, tmp_path):
    entry, jf = _nodes(lab)
    before = _state(lab)
    journal = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterfix_tui", "trace", "nodeport", entry, "--lab-dir",
         str(lab.dir), "--journal", str(journal)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    try:
        def tables_up() -> bool:
            if not journal.exists():
                return False
            ends = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
            return sum(1 for e in ends if e.get("type") == "command_end"
                       and not e.get("rollback")) >= 2
        poll_until(tables_up, 120, "the trace tables to be set up")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    left = [n for n in (entry, jf) if "cfx_trace_" in lab.exec(n, "nft list tables").stdout]
    assert left, "the killed trace had left its tables (the test must be able to fail)"
    r = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(lab.dir))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cfx_trace_" in r.stdout  # the rollback plan listed the trace tables
    after = _state(lab)
    for k in before:
        assert after[k] == before[k], f"{k} differs after SIGKILL + rollback"


def test_flannel_stale_vtep_names_the_neighbour(lab, tmp_path):
    entry, jf = _nodes(lab)
    n = next(x for x in lab.nodes if x["name"] == jf)
    gw = str(n["pod_cidr"]).split("/")[0]
    real = lab.exec(jf, "cat /sys/class/net/flannel.1/address").stdout.strip()
    rec = lab.inject("flannel-stale-vtep", jf)
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
    finally:
        for peer in (x["name"] for x in lab.nodes if x["name"] != jf):
            bogus = lab.exec(peer, f"ip neigh show {gw} dev flannel.1").stdout.split()
            bogus_mac = bogus[bogus.index("lladdr") + 1] if "lladdr" in bogus else ""
            if bogus_mac and bogus_mac != real:
                lab.exec(peer, f"bridge fdb del {bogus_mac} dev flannel.1 dst {n['ip']} self",
                         check=False)
            lab.exec(peer, f"ip neigh replace {gw} lladdr {real} dev flannel.1 nud permanent; "
                     f"bridge fdb append {real} dev flannel.1 dst {n['ip']} self permanent",
                     check=False)
    assert rec["physical"], rec
    assert res["verdict"] == "lost", res
    w = res["where"]
    assert (w["node"], w["chain"]) == (entry, "neighbour") and real in w["rule"], w


def test_iptables_shadow_names_the_legacy_dnat(lab, tmp_path):
    entry, _ = _nodes(lab)
    rec = lab.inject("iptables-shadow", entry)
    try:
        res = traced(lab, tmp_path, "nodeport", entry)
    finally:
        chains = [ln.split()[0][1:] for ln in lab.exec(entry, "iptables-legacy-save -t nat").stdout
                  .splitlines() if ln.startswith(":KUBE-")]
        lab.exec(entry, "iptables-legacy -t nat -F; " + "; ".join(
            f"iptables-legacy -t nat -X {c}" for c in chains))
    if not rec["physical"]:
        pytest.fail(f"the shadow was not physical here: {rec['detail']}")
    assert res["verdict"] == "lost", res
    w = res["where"]
    assert (w["node"], w["table"]) == (entry, "iptables-legacy nat"), w
    assert "-j DNAT --to-destination" in w["rule"] and "10.244.1.251" in w["rule"], w


# -- node -> node over the VXLAN port, node -> API server; the firewall faults (issue 13) ----------

def _peer(lab, node: str) -> str:
    return next(n["name"] for n in lab.nodes if n["name"] != node)


def _settled(lab) -> None:
    """Run the lab's controller until kube-proxy's rules stop changing (a fault that makes a
    pod unready changes them by itself: that is not the trace's doing)."""
    last = {"state": None}

    def same() -> bool:
        lab.reconcile()
        now = _state(lab)
        ok, last["state"] = now == last["state"], now
        return ok
    poll_until(same, 120, "kube-proxy's rules to settle", every=1)


def _pod_ref(lab, node: str, app: str | None = None) -> tuple[str, dict]:
    p = next(p for n in lab.nodes if n["name"] == node for p in n["pods"]
             if app is None or p.get("app") == app)
    return f"{p['namespace']}/{p['name']}", p


def test_vxlan_and_api_delivered_when_healthy(lab, tmp_path):
    entry, jf = _nodes(lab)
    res = traced(lab, tmp_path, "vxlan", entry, jf)
    assert res["verdict"] == "delivered", res
    assert res["flow"] == "vxlan" and ":8472/udp" in res["description"]
    seen = {n["node"]: n["seen"] for n in res["nodes"]}
    assert "out" in seen[entry] and "pre" in seen[jf], seen  # sent by one, arrived at the other
    res = traced(lab, tmp_path, "api", jf)
    assert res["verdict"] == "delivered", res
    assert "kubelet" in res["description"] and res["nodes"][0]["node"] == jf


def test_vxlan_blocked_names_the_input_rule(lab, tmp_path):
    from clusterfix_tui.lab.faults import kube_proxy_backend

    entry, jf = _nodes(lab)
    backend = kube_proxy_backend(lab, jf)
    rec = lab.inject("vxlan-blocked", jf)
    try:
        res = traced(lab, tmp_path, "vxlan", entry, jf)
    finally:
        lab.exec(jf, f"iptables-{backend} -D INPUT -p udp -m udp --dport 8472 -j DROP")
    assert rec["physical"], rec
    assert res["verdict"] == "dropped", res
    w = res["where"]
    assert (w["node"], w["chain"]) == (jf, "INPUT"), w
    assert "8472" in w["rule"] and ("drop" in w["rule"] or "DROP" in w["rule"]), w


def test_input_drop_names_the_policy(lab, tmp_path):
    from clusterfix_tui.lab.faults import INPUT_DROP_RULES, kube_proxy_backend

    entry, jf = _nodes(lab)
    backend = kube_proxy_backend(lab, jf)
    rec = lab.inject("input-drop", jf)
    try:
        res = traced(lab, tmp_path, "vxlan", entry, jf)
    finally:
        lab.exec(jf, f"iptables-{backend} -P INPUT ACCEPT; " + "; ".join(
            f"iptables-{backend} -D {ln[3:]}" for ln in INPUT_DROP_RULES.splitlines()
            if ln.startswith("-A ")))
    assert rec["physical"], rec
    assert res["verdict"] == "dropped", res
    w = res["where"]
    assert (w["node"], w["chain"]) == (jf, "INPUT") and w["rule"].lower() == "policy drop", w


def test_firewalld_named_through_the_underlay_of_a_pod_flow(lab, tmp_path):
    """pod -> pod across nodes dies in the destination's firewalld table: the inner packet is
    'sent and never arrived', the VXLAN datagram carrying it names firewalld's reject."""
    entry, jf = _nodes(lab)
    src, _ = _pod_ref(lab, entry)
    dst, _ = _pod_ref(lab, jf, "jellyfin")
    rec = lab.inject("firewalld", jf)
    try:
        res = traced(lab, tmp_path, "pod", src, dst)
        vx = traced(lab, tmp_path, "vxlan", entry, jf)
    finally:
        lab.exec(jf, "nft delete table inet firewalld")
    assert rec["physical"], rec
    for r in (res, vx):
        assert r["verdict"] == "rejected", r
        w = r["where"]
        assert (w["node"], w["table"]) == (jf, "inet firewalld"), w
        assert "reject" in w["rule"] and isinstance(w["handle"], int), w
    assert res["underlay"]["verdict"] == "rejected" and "8472/udp" in res["underlay"]["description"]


def test_underlay_blocked_is_sent_and_never_arrived(lab, tmp_path):
    entry, jf = _nodes(lab)
    rec = lab.inject("underlay-blocked", jf)
    try:
        res = traced(lab, tmp_path, "vxlan", entry, jf)
    finally:
        lab.exec(jf, "nft delete table netdev cfx_security_group")
    assert rec["physical"], rec
    assert res["verdict"] == "lost", res
    assert res["where"]["node"] == jf
    assert res["where"]["rule"] == f"sent from {entry} and never arrived at {jf}", res["where"]


def test_cni_bridge_conflict_is_no_route_on_the_pod_node(lab, tmp_path):
    import ipaddress

    entry, jf = _nodes(lab)
    src, _ = _pod_ref(lab, entry)
    dst, _ = _pod_ref(lab, jf, "jellyfin")
    n = next(x for x in lab.nodes if x["name"] == jf)
    subnet = ipaddress.ip_network(n["pod_cidr"])
    gw = f"{subnet.network_address + 1}/{subnet.prefixlen}"
    rec = lab.inject("cni-bridge-conflict", jf)
    try:
        _settled(lab)
        res = traced(lab, tmp_path, "pod", src, dst)
    finally:
        wrong = [ln.split()[1] for ln in lab.exec(jf, "ip -4 -o addr show dev cni0").stdout
                 .splitlines() if "inet " in ln and ln.split()[3] != gw]
        lab.exec(jf, f"ip addr replace {gw} dev cni0; " + "; ".join(
            f"ip addr del {w} dev cni0" for w in wrong) if wrong else f"ip addr replace {gw} dev cni0",
            check=False)
        lab.restart_pod(jf, "kube-flannel-ds")
    assert rec["physical"], rec
    assert res["verdict"] == "no-route", res
    w = res["where"]
    assert (w["node"], w["chain"]) == (jf, "routing"), w
    assert "unreachable" in w["rule"].lower(), w


def test_unknown_output_drop_to_the_api_server(lab, tmp_path):
    """An nft-native table dropping what a node sends to the API server's port: no check knows
    it; `trace api` names it."""
    entry, _ = _nodes(lab)
    conf = lab.exec(entry, "grep -m1 'server:' /etc/kubernetes/kubelet.conf").stdout
    port = int(re.search(r":(\d+)\s*$", conf.strip()).group(1))
    lab.exec(entry, "nft add table inet cfxegress && nft add chain inet cfxegress out "
             "'{ type filter hook output priority 0; }' && nft add rule inet cfxegress out "
             f"tcp dport {port} drop")
    try:
        res = traced(lab, tmp_path, "api", entry)
    finally:
        lab.exec(entry, "nft delete table inet cfxegress")
    assert res["verdict"] == "dropped", res
    w = res["where"]
    assert (w["node"], w["table"], w["chain"]) == (entry, "inet cfxegress", "out"), w
    assert str(port) in w["rule"] and isinstance(w["handle"], int)
