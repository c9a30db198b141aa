"""Issue 13 on a real lab, through the CLI (real SSH, real netfilter in the node namespaces):
each host-firewall fault is found on its node with the flow it breaks, `fix --yes` makes
validation green by ADDING accepts (the drop rules and policies stay), rollback removes exactly
what was added; each healthy look-alike gives no finding and `fix --yes` changes nothing (both
iptables backends and the nft ruleset compared before and after)."""

from __future__ import annotations

import json
import re

import pytest
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


def _state(lab, node: str) -> dict[str, str]:
    out = {}
    for k, cmd in STATE.items():
        text = _COUNTERS.sub("", lab.exec(node, cmd, check=False).stdout)
        out[k] = "\n".join(ln for ln in text.splitlines() if not _LIVE.search(ln))
    return out


def _diagnose(lab) -> list[dict]:
    r = cli("diagnose", "--lab-dir", str(lab.dir), "--json", timeout=180)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout)["findings"]


def _fix(lab, journal) -> str:
    r = cli("fix", "--yes", "--lab-dir", str(lab.dir), "--journal", str(journal), "--wait", "20",
            timeout=400)
    return r.stdout + r.stderr


def _healthy_now(lab) -> None:
    found = _diagnose(lab)
    assert found == [], [(f["code"], f["node"], f["evidence"]) for f in found]


# fault -> (code, flows that must be named, what proves the firewall is still there)
FAULTS = {
    "vxlan-blocked": ("FIREWALL_REJECT", {"vxlan-in"},
                      ("nft", "-A INPUT -p udp -m udp --dport 8472 -j DROP")),
    "input-drop": ("FIREWALL_POLICY_DROP", {"vxlan-in", "kubelet"}, ("nft", ":INPUT DROP")),
    "firewalld": ("FIREWALL_REJECT", {"vxlan-in", "kubelet", "pods-forward", "to-pods-forward"},
                  ("ruleset", "reject with icmpx admin-prohibited")),
}
UNDO = {
    "vxlan-blocked": "iptables-nft -D INPUT -p udp -m udp --dport 8472 -j DROP",
    "input-drop": ("iptables-nft -P INPUT ACCEPT && "
                   "iptables-nft -D INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT && "
                   "iptables-nft -D INPUT -i lo -j ACCEPT && iptables-nft -D INPUT -p icmp -j ACCEPT && "
                   "iptables-nft -D INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
    "firewalld": "nft delete table inet firewalld",
    "firewalld-open": "nft delete table inet firewalld",
    "unrelated-reject": (
        "iptables-nft -D INPUT -p tcp -m tcp --dport 3306 -j REJECT --reject-with icmp-host-prohibited && "
        "iptables-nft -D INPUT -s 203.0.113.0/24 -j DROP && "
        "iptables-nft -D OUTPUT -p tcp -m tcp --dport 25 -j REJECT --reject-with icmp-admin-prohibited"),
    "docker-host": ("iptables-nft -D FORWARD -j DOCKER-USER && "
                    "iptables-nft -D FORWARD -j DOCKER-ISOLATION-STAGE-1 && "
                    "iptables-nft -D FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT && "
                    "iptables-nft -D FORWARD -o docker0 -j DOCKER && "
                    "iptables-nft -D FORWARD -i docker0 ! -o docker0 -j ACCEPT && "
                    "iptables-nft -D FORWARD -i docker0 -o docker0 -j ACCEPT && "
                    "for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do "
                    "iptables-nft -F $c && iptables-nft -X $c; done && iptables-nft -P FORWARD ACCEPT && "
                    "ip link del docker0"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_found_fixed_by_accepts_and_rolled_back_exactly(fault, lab, tmp_path):
    from clusterfix_tui.lab import faults as F

    code, flows, (where, still) = FAULTS[fault]
    _healthy_now(lab)
    node = F.preferred_node(lab, fault)
    rec = lab.inject(fault, node)
    assert rec["physical"], rec["detail"]  # the fault really breaks cross-node traffic
    try:
        broken = _state(lab, node)
        found = _diagnose(lab)
        assert {(f["code"], f["node"]) for f in found} == {(code, node)}, found
        (f,) = found
        assert flows <= set(f["data"]["flows"]), f["data"]["flows"]
        assert any("flannel VXLAN from the peers (udp/8472)" in e for e in f["evidence"])

        journal = tmp_path / "fix.jsonl"
        out = _fix(lab, journal)
        assert "verdict: fixed" in out, out[-4000:]
        assert "checks passed" in out and "FAIL " not in out, out[-4000:]
        fixed = _state(lab, node)
        assert still in fixed[where], fixed[where]  # the firewall's drop is still there
        assert "clusterfix: vxlan-in" in fixed["nft"] + fixed["ruleset"]
        # only additions: every line of the broken state is still there
        for k in STATE:
            missing = set(broken[k].splitlines()) - set(fixed[k].splitlines())
            assert not missing, (k, missing)

        r = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(lab.dir))
        assert r.returncode == 0, r.stdout + r.stderr
        assert _state(lab, node) == broken  # exactly what was added is gone
    finally:
        lab.exec(node, UNDO[fault])


@pytest.mark.parametrize("look_alike", ["docker-host", "firewalld-open", "unrelated-reject"])
def test_look_alike_is_no_finding_and_fix_changes_nothing(look_alike, lab, tmp_path):
    from clusterfix_tui.lab import faults as F

    _healthy_now(lab)
    node = F.preferred_node(lab, look_alike)
    rec = lab.inject(look_alike, node)
    assert rec["physical"], rec["detail"]  # traffic really flows through it
    try:
        before = {n["name"]: _state(lab, n["name"]) for n in lab.nodes}
        assert _diagnose(lab) == []
        journal = tmp_path / "fix.jsonl"
        out = _fix(lab, journal)
        after = {n["name"]: _state(lab, n["name"]) for n in lab.nodes}
        assert after == before, out[-3000:]
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        assert not [e for e in events if e["type"] == "command_start"]
    finally:
        lab.exec(node, UNDO[look_alike])


def test_underlay_blocked_outside_the_firewall_is_found_by_the_probe(lab, tmp_path):
    """udp/8472 dropped before netfilter's IP hooks (the lab's stand-in for a security group):
    no iptables/nft rule shows it; only the active probe through flannel.1 finds it, on the node
    every probe to and from fails, and says the fix is outside the node."""
    from clusterfix_tui.lab import faults as F

    _healthy_now(lab)
    node = F.preferred_node(lab, "underlay-blocked")
    rec = lab.inject("underlay-blocked", node)
    assert rec["physical"], rec["detail"]
    try:
        found = _diagnose(lab)
        assert [(f["code"], f["node"]) for f in found] == [("VXLAN_UNDERLAY_BLOCKED", node)], found
        (f,) = found
        assert f["data"]["where"] == "outside" and f["data"]["accepts"] == []
        peers = {n["name"] for n in lab.nodes} - {node}
        assert {tuple(p) for p in f["data"]["pairs"]} == (
            {(p, node) for p in peers} | {(node, p) for p in peers})
        assert any("security group" in e for e in f["evidence"])
        _record_scenario("underlay-blocked", lab, [("VXLAN_UNDERLAY_BLOCKED", node)])
        before = _state(lab, node)
        out = _fix(lab, tmp_path / "fix.jsonl")
        assert "outside the nodes' host firewalls" in out, out[-3000:]
        assert _state(lab, node) == before  # nothing on the node to change
    finally:
        lab.exec(node, "nft delete table netdev cfx_security_group")


def _record_scenario(name: str, lab, expected) -> None:
    """With CFX_CAPTURE=1: tests/data/lab/<name>.json as test_diagnose_lab records it, with the
    facts read WITH the underlay probes (what diagnose runs)."""
    import os

    if not os.environ.get("CFX_CAPTURE"):
        return
    from test_diagnose_lab import DATA, _capture

    from clusterfix_tui.core.checks.underlay import probe_targets
    from clusterfix_tui.core.facts import build_facts_script
    from clusterfix_tui.core.snapshot import build_snapshot
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(lab.dir))
    try:
        _capture(name, rt, lab, expected=expected)
        path = DATA.parent / "lab" / f"{name}.json"
        rec = json.loads(path.read_text())
        snap = build_snapshot(rt.api, with_logs=False)
        for n in lab.nodes:
            script = build_facts_script(rec["peer_ips"][n["name"]], nonce="labnonce0001",
                                        vxlan_probes=probe_targets(snap, n["name"]))
            rec["facts"][n["name"]] = rt.shells(n["name"]).run(script, timeout=60).stdout
        path.write_text(json.dumps(rec, indent=1, sort_keys=True))
    finally:
        rt.close()


class _Tunnel:
    """A TCP relay on 127.0.0.1 to the lab API: the workstation reaching the API the way an SSH
    tunnel does (127.0.0.1:LOCAL), an address the nodes cannot use."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.up = (host, port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.up, timeout=10)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.sock.close()


def test_worker_kubeconfig_gets_the_clusters_address_not_the_workstations_tunnel(lab, tmp_path):
    import yaml

    from clusterfix_tui.lab import faults as F

    cfg = yaml.safe_load((lab.dir / "kubeconfig").read_text())
    upstream = cfg["clusters"][0]["cluster"]["server"]
    host, port = upstream.split("://", 1)[1].rsplit(":", 1)
    tunnel = _Tunnel(host, int(port))
    cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{tunnel.port}"
    tunnel_cfg = tmp_path / "tunnel.kubeconfig"
    tunnel_cfg.write_text(yaml.safe_dump(cfg))
    tunnel_cfg.chmod(0o600)
    node = F.preferred_node(lab, "worker-kubeconfig")
    workers = [n["name"] for n in lab.nodes if n["role"] != "control-plane"]
    md5 = "md5sum /root/.kube/config"
    lab.exec(node, "cp -p /root/.kube/config /root/.kube/config.cfxtest")
    try:
        others = {w: lab.exec(w, md5).stdout for w in workers if w != node}
        lab.inject("worker-kubeconfig", node)
        dead = lab.exec(node, "grep server: /root/.kube/config").stdout.split()[-1]
        journal = tmp_path / "fix.jsonl"
        r = cli("fix", "--yes", "--step", "worker_kubeconfig", "--lab-dir", str(lab.dir),
                "--kubeconfig", str(tunnel_cfg), "--journal", str(journal), "--no-validate")
        out = r.stdout + r.stderr
        assert r.returncode in (0, 1), out[-3000:]
        now = lab.exec(node, "grep server: /root/.kube/config").stdout.split()[-1]
        kubelet = lab.exec(node, "grep server: /etc/kubernetes/kubelet.conf").stdout.split()[-1]
        assert now == kubelet == upstream, out[-3000:]  # the node's view, not 127.0.0.1
        assert "127.0.0.1" not in now
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        checks = [e for e in events if e["type"] == "precheck" and "--server" in e["command"]]
        # checked on the node first: the dead server fails there, the new one answers
        assert checks and checks[0]["state"] == "holds", checks
        assert lab.exec(node, "kubectl get nodes -o name --request-timeout=5s",
                        check=False).returncode == 0
        # the workers whose kubeconfig works from their node were not touched
        assert {w: lab.exec(w, md5).stdout for w in others} == others
        rb = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(lab.dir),
                 "--kubeconfig", str(tunnel_cfg))
        assert rb.returncode == 0, rb.stdout + rb.stderr
        assert lab.exec(node, "grep server: /root/.kube/config").stdout.split()[-1] == dead
    finally:
        tunnel.close()
        lab.exec(node, "mv -f /root/.kube/config.cfxtest /root/.kube/config")
