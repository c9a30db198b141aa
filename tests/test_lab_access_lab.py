"""`lab up --ssh-user ops --bastion --faults all` (issue #14 item 8): every node is reached as
`ops` (NOPASSWD sudo, never root) through the bastion (whose user has no sudo), and `diagnose`
reads every node and finds the faults. The nodes' own sshd logs are the proof: every accepted
login is `ops` from the bastion's address. One lab, built once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lab_helpers import FAULT_FINDINGS, running_lab

REPO = str(Path(__file__).resolve().parents[1])

# fault -> the finding it gives on its node (as tests/test_diagnose_lab.py CASES; "peers": on
# the other nodes)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory, prefix="access", nodes=3, faults="all", ssh_user="ops", bastion=True, timeout=240) as handle:
        yield handle


def _ssh(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(lab.dir / "ssh_config"), "-o", "BatchMode=yes",
                           *args], capture_output=True, text=True, timeout=60)


def _accepted(lab, node_dir: str) -> list[tuple[str, str]]:
    text = (Path(node_dir) / "sshd.log").read_text(errors="replace")
    return re.findall(r"Accepted \S+ for (\S+) from (\S+) port", text)


@pytest.mark.lab
def test_lab_access_as_user_through_bastion_only(lab) -> None:
    b = lab.info["bastion"]
    assert lab.info["ssh_user"] == "ops" and b["user"] == "ops"
    cfg = (lab.dir / "ssh_config").read_text()
    for n in lab.nodes:
        block = cfg.split(f"Host {n['name']}\n", 1)[1].split("\nHost ", 1)[0]
        assert "User ops" in block and "ProxyJump bastion" in block, block
        sshd = (Path(n["node_dir"]) / "sshd_config").read_text()
        assert "PermitRootLogin no" in sshd and f"AllowUsers ops@{b['ip']}" in sshd
    r = _ssh(lab, "node-1", "id -un; sudo -n id -u")
    assert r.returncode == 0 and r.stdout.split() == ["ops", "0"], r.stderr
    # the bastion's user has no sudo; a direct login and a root login are refused
    assert _ssh(lab, "bastion", "sudo -n true").returncode != 0
    assert _ssh(lab, "-o", "ProxyJump=none", "node-1", "true").returncode == 255
    assert _ssh(lab, "-l", "root", "node-1", "true").returncode == 255


@pytest.mark.lab
def test_diagnose_reads_every_node_as_ops_through_the_bastion_and_finds_the_faults(
        lab, tmp_path) -> None:
    b = lab.info["bastion"]
    before = {n["name"]: len(_accepted(lab, n["node_dir"])) for n in lab.nodes}
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "diagnose", "--json",
                        "--lab-dir", str(lab.dir)], capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path), env=env)
    out = json.loads(r.stdout)
    assert not out.get("node_errors"), out.get("node_errors")
    got = {(f["code"], f["node"]) for f in out["findings"]}
    assert not [c for c in got if c[0].startswith("SSH_") or c[0].startswith("SUDO")], got
    names = {n["name"] for n in lab.nodes}
    checked = 0
    placed = {r["name"]: r["node"] for r in lab.info["faults"]}
    for rec in lab.info["faults"]:
        if rec["name"] not in FAULT_FINDINGS:
            continue
        if rec["name"] == "iptables-shadow" and placed.get("kube-proxy-crashloop") == rec["node"]:
            # docs/lab-faults.md: with kube-proxy's chains gone (crashloop on the same node) the
            # legacy shadow conflicts with nothing; it shows once kube-proxy runs again (fix)
            continue
        code, where = FAULT_FINDINGS[rec["name"]]
        want = {rec["node"]} if where == "node" else names - {rec["node"]}
        assert any((code, n) in got for n in want), (rec["name"], rec["node"], sorted(got))
        checked += 1
    assert checked >= 10, lab.info["faults"]
    # the nodes' sshd logs: every login of this diagnosis is ops, from the bastion
    for n in lab.nodes:
        new = _accepted(lab, n["node_dir"])[before[n["name"]]:]
        assert new, f"{n['name']}: no login seen in its sshd log"
        assert all(who == ("ops", b["ip"]) for who in new), (n["name"], new)
    for n in lab.nodes:
        assert not [w for w in _accepted(lab, n["node_dir"]) if w[0] == "root"]


@pytest.mark.lab
def test_fix_yes_is_green_as_ops_through_the_bastion(lab, tmp_path) -> None:
    """Runs after the diagnosis test (same lab): every repair runs under `sudo -n` as ops,
    through the bastion; the sshd logs still show no other login."""
    b = lab.info["bastion"]
    journal = tmp_path / "j.jsonl"
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--lab-dir",
                        str(lab.dir), "--journal", str(journal)], capture_output=True, text=True,
                       timeout=900, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    events = [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
    end = events[-1]
    assert end["type"] == "session_end" and end["verdict"] in ("fixed", "healthy"), end
    validation = [e for e in events if e["type"] == "validation"][-1]
    assert validation["results"] and all(x["passed"] for x in validation["results"])
    ids = {e["identity"]["node"]: e["identity"] for e in events if e["type"] == "node_identity"}
    assert {n: (i["user"], i["jump"]) for n, i in ids.items()} == {
        n["name"]: ("ops", ["bastion"]) for n in lab.nodes}
    for n in lab.nodes:
        logins = _accepted(lab, n["node_dir"])
        assert logins and all(who == ("ops", b["ip"]) for who in logins), (n["name"], logins)
