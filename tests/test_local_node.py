"""Running on a cluster node (issue #19): that node is read and repaired through the local
transport (LocalNodeShell + netlink), every other node over SSH.

The lab tests run the real CLI inside a lab node's mount, UTS and network namespaces (what a
shell on that node sees: its hostname, its addresses, its iptables), with PYTHONPATH pointing at
this checkout."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.transports.local import (
    LocalIdentity,
    LocalNodeShell,
    NodeShells,
    local_addresses,
    local_links_routes,
)

REPO = str(Path(__file__).resolve().parents[1])


# -- who is local: pure rules --------------------------------------------------------------------


def test_identity_needs_more_than_one_weak_hint() -> None:
    me = LocalIdentity(hostname="node-1.example.org", addresses={"10.0.0.11", "127.0.0.1"},
                       machine_id="aaa")
    assert me.matches("node-1", "10.0.0.11")  # short hostname and address
    assert me.matches("node-1.example.org", "10.0.0.11")
    assert me.matches("node-1", None)  # no InternalIP known: the hostname decides
    # an address alone can be a coincidence (same private range behind a bastion): not enough
    assert me.matches("worker-7", "10.0.0.11") is None
    assert me.matches("worker-7", "10.0.0.11", machine_id="aaa")  # ... unless the machine-id agrees
    # the hostname alone while the node's address is elsewhere: not this machine
    assert me.matches("node-1", "10.0.0.99") is None
    # a machine-id that differs always wins
    assert me.matches("node-1", "10.0.0.11", machine_id="bbb") is None


class _Pool:
    def __init__(self) -> None:
        self.asked: list[str] = []
        self.closed = False

    def __call__(self, node: str, address: str | None = None) -> str:
        self.asked.append(node)
        return f"ssh:{node}"

    def accept_host_key(self, exc: object) -> str:
        return "accepted"

    def close(self) -> None:
        self.closed = True


def test_netlink_reads_work_inside_a_running_event_loop() -> None:
    """The wizard recognises the local node from its own thread, which runs an event loop:
    pyroute2 0.9's synchronous API refuses there, and the addresses came back empty (no local node
    ever recognised, silently)."""
    import asyncio

    # other tests' labs add and remove links on this machine meanwhile: compare what stays
    # (loopback, and the links/addresses present both before and after the read in the loop)
    before = local_addresses()
    links_before = {link["ifname"] for link in local_links_routes()["links"]}
    assert "127.0.0.1" in before and "lo" in links_before

    async def inside() -> tuple[set[str], set[str]]:
        return local_addresses(), {link["ifname"] for link in local_links_routes()["links"]}

    addresses, links = asyncio.run(inside())
    stayed = before & local_addresses()
    links_stayed = links_before & {link["ifname"] for link in local_links_routes()["links"]}
    assert "127.0.0.1" in addresses and "lo" in links
    assert stayed <= addresses and links_stayed <= links


def test_node_shells_route_the_local_node_and_delegate_the_rest() -> None:
    pool = _Pool()
    me = LocalIdentity(hostname="node-2", addresses={"10.0.0.12"}, machine_id="")
    shells = NodeShells(pool, identity=me)
    assert shells("node-1", "10.0.0.11") == "ssh:node-1"
    local = shells("node-2", "10.0.0.12")
    assert isinstance(local, LocalNodeShell) and local.node == "node-2"
    assert shells("node-2", "10.0.0.12") is local  # one per node
    assert shells.local_node == "node-2" and "hostname" in shells.local_reason
    assert shells.transport_of("node-2") == "local" and shells.transport_of("node-1") == "ssh"
    assert pool.asked == ["node-1"]
    assert shells.accept_host_key(object()) == "accepted"
    shells.close()
    assert pool.closed


def test_no_local_and_forced_local() -> None:
    me = LocalIdentity(hostname="node-2", addresses={"10.0.0.12"}, machine_id="")
    never = NodeShells(_Pool(), local_node="", identity=me)
    assert never("node-2", "10.0.0.12") == "ssh:node-2" and never.local_node is None
    forced = NodeShells(_Pool(), local_node="node-3", identity=me)
    assert isinstance(forced("node-3", "10.9.9.9"), LocalNodeShell)
    assert forced("node-2", "10.0.0.12") == "ssh:node-2"


def test_local_shell_goes_through_sudo_when_not_root(tmp_path: Path) -> None:
    # a fake sudo on PATH records its argv: the command must arrive as `sudo -n timeout ... sh -c`
    fake = tmp_path / "sudo"
    log = tmp_path / "argv"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(log))}\nshift\nexec \"$@\"\n")
    fake.chmod(0o755)
    shell = LocalNodeShell("node-1", sudo=True)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{tmp_path}:{old}"
    try:
        res = shell.run("echo 'a b'", timeout=5)
    finally:
        os.environ["PATH"] = old
    assert res.ok and res.stdout == "a b\n"
    argv = log.read_text().splitlines()
    assert argv[:4] == ["-n", "timeout", "-s", "KILL"] and argv[5:] == ["sh", "-c", "echo 'a b'"]


def test_local_shell_reports_a_sudo_password_prompt(tmp_path: Path) -> None:
    fake = tmp_path / "sudo"
    fake.write_text("#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n")
    fake.chmod(0o755)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{tmp_path}:{old}"
    try:
        res = LocalNodeShell("node-1", sudo=True).run("true", timeout=5)
    finally:
        os.environ["PATH"] = old
    assert not res.ok and "password" in (res.error or "")


def test_kubeconfig_default_on_a_control_plane_node(tmp_path: Path, monkeypatch) -> None:
    from clusterfix_tui.transports import kube

    admin = tmp_path / "admin.conf"
    admin.write_text("x")
    monkeypatch.setattr(kube, "ADMIN_CONF", str(admin))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kube.resolve_kubeconfig(None) == ([str(admin)], str(admin))
    (tmp_path / "home" / ".kube").mkdir(parents=True)
    (tmp_path / "home" / ".kube" / "config").write_text("y")
    assert kube.resolve_kubeconfig(None)[1] == "~/.kube/config"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "k1"))
    assert kube.resolve_kubeconfig(None) == ([str(tmp_path / "k1")], "KUBECONFIG")
    assert kube.resolve_kubeconfig("/x/y")[1] == "--kubeconfig"


# -- on a lab node ---------------------------------------------------------------------------------

lab = lab_fixture(nodes=3, faults="none")


def _python_home() -> str | None:
    """The top directory of this interpreter when it lives under /root (pyenv): a lab node has
    its own /root, so the test shows it to the tool's process (only) by a bind mount."""
    exe = os.path.realpath(sys.executable)
    if not exe.startswith("/root/"):
        return None
    return "/root/" + exe.split("/")[2]


def _on_node(lab, node: str, args: str, timeout: float = 240):
    """The CLI run inside `node` (its mount, UTS and network namespaces), as an admin sitting at
    that node would run it."""
    cli = (f"cd / && PYTHONPATH={shlex.quote(REPO)} {shlex.quote(sys.executable)} "
           f"-m clusterfix_tui {args} --lab-dir {shlex.quote(str(lab.dir))}")
    home = _python_home()
    if home is not None:
        # a private mount namespace on top of the node's: the node itself never sees this mount
        # (a plain bind of / shows the root filesystem without the node's mounts over /root)
        q = shlex.quote(home)
        cli = (f"mkdir -p {q} && exec unshare --mount --propagation private sh -c "
               + shlex.quote(f"t=$(mktemp -d) && mount --bind / \"$t\" && "
                             f"mount --bind \"$t\"{q} {q} && umount \"$t\" && rmdir \"$t\" && {cli}"))
    return lab.exec(node, cli, check=False, timeout=timeout)


def _sshd_log(lab, node: str) -> str:
    return (Path(lab.info["state_dir"]) / node / "sshd.log").read_text(errors="replace")


def _accepted(log: str) -> int:
    return sum(1 for line in log.splitlines() if "Accepted " in line)


@pytest.mark.lab
def test_diagnose_on_a_node_reads_it_without_ssh(lab) -> None:
    before = {n: _accepted(_sshd_log(lab, n)) for n in ("node-1", "node-2", "node-3")}
    r = _on_node(lab, "node-1", "diagnose --json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert all(n["read"] for n in out["nodes"].values()), out["nodes"]
    after = {n: _accepted(_sshd_log(lab, n)) for n in before}
    assert after["node-1"] == before["node-1"], "the local node was reached over SSH"
    assert after["node-2"] > before["node-2"] and after["node-3"] > before["node-3"]


@pytest.mark.lab
def test_fix_on_a_node_whose_sshd_is_down(lab) -> None:
    lab.inject("ip-forward-off", "node-1")
    lab.inject("ip-forward-off", "node-3")
    lab.stop_sshd("node-1")
    try:
        # --no-local proves which path is used: over SSH, node-1 cannot be read
        r = _on_node(lab, "node-1", "diagnose --json --no-local")
        out = json.loads(r.stdout)
        codes = {(f["code"], f["node"]) for f in out["findings"]}
        assert ("SSH_UNREACHABLE", "node-1") in codes, codes
        assert ("IP_FORWARD_OFF", "node-3") in codes

        r = _on_node(lab, "node-1", "diagnose --json")
        out = json.loads(r.stdout)
        codes = {(f["code"], f["node"]) for f in out["findings"]}
        assert r.returncode == 1 and {("IP_FORWARD_OFF", "node-1"),
                                      ("IP_FORWARD_OFF", "node-3")} <= codes, codes
        assert not any(c.startswith("SSH_") for c, _ in codes), codes

        r = _on_node(lab, "node-1", "fix --yes --journal /root/j.jsonl --wait 60")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        for node in ("node-1", "node-3"):
            fwd = lab.exec(node, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip()
            assert fwd == "1", f"{node}: ip_forward {fwd}"
        journal = [json.loads(x) for x in
                   lab.exec("node-1", "cat /root/j.jsonl").stdout.splitlines() if x.strip()]
        ran = {e["node"] for e in journal if e["type"] == "command_start"}
        assert {"node-1", "node-3"} <= ran
    finally:
        lab.start_sshd("node-1")


# -- a node left out never makes a session healthy or fixed ---------------------------------------


def test_verdict_is_incomplete_when_a_node_was_left_out() -> None:
    from clusterfix_tui.core.record import replay, verdict_of

    def events(left_out: bool) -> list[dict]:
        evs = [{"seq": 1, "type": "session_start", "session_id": "s", "mode": "headless",
                "cluster": {"context": "c", "server": "https://x", "version": "v",
                            "node_count": 2}},
               {"seq": 2, "type": "diagnosis", "phase": "before", "findings": [], "nodes": {}}]
        if left_out:
            evs.append({"seq": 3, "type": "node_left_out", "node": "node-2",
                        "reason": "unreachable: connection refused"})
        evs.append({"seq": 4, "type": "validation", "phase": "after", "results": [
            {"name": "node-ready", "target": "node-1", "passed": True, "detail": "Ready",
             "fix_step": None}]})
        return evs

    assert verdict_of(replay(events(False))) == "healthy"
    rec = replay(events(True))
    assert verdict_of(rec) == "incomplete"
    assert rec.summary()["nodes_not_diagnosed"] == ["node-2"]
    assert verdict_of(rec, aborted=True) == "aborted"


lab_left_out = lab_fixture(nodes=3, faults="none", name="lab_left_out")


@pytest.mark.lab
def test_fix_with_an_unreachable_broken_node_is_incomplete(lab_left_out, tmp_path: Path) -> None:
    import subprocess

    lab = lab_left_out
    lab.inject("ip-forward-off", "node-2")
    lab.stop_sshd("node-2")
    journal = tmp_path / "j.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--lab-dir", str(lab.dir),
         "--no-local", "--journal", str(journal), "--wait", "10"],
        capture_output=True, text=True, timeout=400, cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 3, r.stdout[-3000:] + r.stderr[-3000:]
    assert "INCOMPLETE: 1 node(s) not diagnosed: node-2" in r.stderr
    evs = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    end = [e for e in evs if e["type"] == "session_end"][-1]
    assert end["verdict"] == "incomplete" and end["summary"]["nodes_not_diagnosed"] == ["node-2"]
    after = [e for e in evs if e["type"] == "validation" and e["phase"] == "after"][-1]["results"]
    mine = {r["name"]: r for r in after if r["target"] == "node-2"
            or r["target"].endswith("@node-2")}
    # the checks that need no SSH still ran for the left-out node, and say what is broken
    assert mine["node-ready"]["passed"] is True
    assert mine["nodeport"]["passed"] is False, mine
    assert mine["node-shell"]["passed"] is False
    # nothing ran on the node the session could not see
    assert not any(e["type"] == "command_start" and e["node"] == "node-2" for e in evs)
