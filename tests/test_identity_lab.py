"""Identity in the journal (issue #14 item 5) over real sshd: a `fix` on lab A journals the
cluster (server, context, kube-system UID) and each node (address, user, boot_id, namespaces,
host key); `rollback` of that journal against lab B (another cluster) refuses and says what
differs, with --force it proceeds; against lab A itself it runs. A node rebooted since the fix
(`clusterfix-tui lab reboot-node`: new namespaces, same address and host key) makes `rollback`
refuse; with --force the file the fix wrote is restored and the runtime sysctl, which the reboot
already reset, is not put back (its same-boot precondition says why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lab_helpers import lab_fixture

REPO = str(Path(__file__).resolve().parents[1])

lab_a = lab_fixture(nodes=2, faults="none", name="lab_a")
lab_b = lab_fixture(nodes=2, faults="none", name="lab_b")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,
                          text=True, timeout=300, cwd=str(cwd), env=env)


def _events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _fwd(lab, node: str) -> str:
    return lab.exec(node, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip()


@pytest.mark.lab
def test_rollback_refuses_another_cluster_and_force_proceeds(lab_a, lab_b, tmp_path) -> None:
    journal = tmp_path / "j.jsonl"
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=0")
    r = _cli("fix", "--yes", "--no-validate", "--step", "host_network", "--lab-dir",
             str(lab_a.dir), "--journal", str(journal), cwd=tmp_path)
    assert _fwd(lab_a, "node-1") == "1", r.stdout[-2000:] + r.stderr[-2000:]
    evs = _events(journal)
    cluster = [e["identity"] for e in evs if e["type"] == "cluster_identity"]
    assert len(cluster) == 1 and cluster[0]["kube_system_uid"] and cluster[0]["server"]
    nodes = {e["identity"]["node"]: e["identity"] for e in evs if e["type"] == "node_identity"}
    assert set(nodes) == {"node-1", "node-2"}
    for n in nodes.values():
        assert n["user"] == "root" and n["address"] and n["boot_id"] and n["boot_scope"]
        assert n["host_key"].split()[1].startswith("SHA256:")
    ran = [e for e in evs if e["type"] == "command_start" and e["node"] == "node-1"]
    assert ran, "the fix ran nothing on node-1"

    # lab B: another cluster (its own kube-system UID, node namespaces and host keys)
    r = _cli("rollback", "--yes", "--journal", str(journal), "--lab-dir", str(lab_b.dir),
             cwd=tmp_path)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "rollback refused" in r.stdout
    assert "kube-system namespace UID" in r.stdout and cluster[0]["kube_system_uid"] in r.stdout
    assert "node node-1 host key" in r.stdout and "node node-1 namespaces" in r.stdout
    assert _fwd(lab_b, "node-1") == "1"  # nothing ran on B
    assert not any(e["type"] == "command_start" and e.get("rollback") for e in _events(journal))

    # --force: it proceeds through the apply path (each action's precondition, if any, decides)
    r = _cli("rollback", "--yes", "--force", "--journal", str(journal), "--lab-dir",
             str(lab_b.dir), cwd=tmp_path)
    assert "--force: rolling back anyway" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    evs = _events(journal)
    assert any(e["type"] == "note" and e.get("identity_differences") for e in evs)
    assert any(e["type"] == "command_start" and e.get("rollback") for e in evs)
    lab_b.exec("node-1", "sysctl -qw net.ipv4.ip_forward=1")

    # the cluster the journal was written on: no refusal, the rollback runs
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=1")
    fresh = tmp_path / "a.jsonl"
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=0")
    r = _cli("fix", "--yes", "--no-validate", "--step", "host_network", "--lab-dir",
             str(lab_a.dir), "--journal", str(fresh), cwd=tmp_path)
    assert _fwd(lab_a, "node-1") == "1", r.stdout[-2000:] + r.stderr[-2000:]
    r = _cli("rollback", "--yes", "--journal", str(fresh), "--lab-dir", str(lab_a.dir),
             cwd=tmp_path)
    assert r.returncode == 0 and "refused" not in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert _fwd(lab_a, "node-1") == "0"
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=1")


@pytest.mark.lab
def test_rollback_refuses_a_node_whose_host_key_changed(lab_a, tmp_path) -> None:
    """The node was reinstalled (new host key) and the admin trusted the new key in known_hosts:
    SSH connects, but it is not the machine the journal's session changed."""
    from clusterfix_tui.lab import nodes as N

    journal = tmp_path / "j.jsonl"
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=0")
    r = _cli("fix", "--yes", "--no-validate", "--step", "host_network", "--lab-dir",
             str(lab_a.dir), "--journal", str(journal), cwd=tmp_path)
    assert _fwd(lab_a, "node-1") == "1", r.stdout[-2000:] + r.stderr[-2000:]
    node = lab_a.node("node-1")
    lab_a.stop_sshd("node-1")
    new_pub = N.keygen(Path(node["node_dir"]) / "ssh_host_ed25519_key", "root@node-1")
    kh = Path(lab_a.dir) / "known_hosts"
    kh.write_text("".join(
        (f"{line.split(' ', 1)[0]} {' '.join(new_pub.split()[:2])}\n"
         if line.split(",")[0] == "node-1" else line + "\n")
        for line in kh.read_text().splitlines()))
    lab_a.start_sshd("node-1")
    r = _cli("rollback", "--yes", "--journal", str(journal), "--lab-dir", str(lab_a.dir),
             cwd=tmp_path)
    assert r.returncode == 2 and "rollback refused" in r.stdout, r.stdout[-2000:] + r.stderr
    assert "node node-1 host key (changed key)" in r.stdout
    assert "kube-system" not in r.stdout  # the same cluster
    assert _fwd(lab_a, "node-1") == "1"
    r = _cli("rollback", "--yes", "--force", "--journal", str(journal), "--lab-dir",
             str(lab_a.dir), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert _fwd(lab_a, "node-1") == "0"
    lab_a.exec("node-1", "sysctl -qw net.ipv4.ip_forward=1")


DROPIN = "/etc/sysctl.d/99-clusterfix-kubernetes.conf"


@pytest.mark.lab
def test_rollback_refuses_a_rebooted_node_and_force_skips_its_runtime_changes(lab_a, tmp_path
                                                                             ) -> None:
    journal = tmp_path / "j.jsonl"
    lab_a.inject("ip-forward-off", "node-2")
    assert _fwd(lab_a, "node-2") == "0"
    r = _cli("fix", "--yes", "--no-validate", "--step", "host_network", "--lab-dir",
             str(lab_a.dir), "--journal", str(journal), cwd=tmp_path)
    assert _fwd(lab_a, "node-2") == "1", r.stdout[-2000:] + r.stderr[-2000:]
    assert "net.ipv4.ip_forward = 1" in lab_a.exec("node-2", f"cat {DROPIN}").stdout
    evs = _events(journal)
    then = next(e["identity"] for e in evs if e["type"] == "node_identity"
                and e["identity"]["node"] == "node-2")
    fwd = {e["command"]: e["action_id"] for e in evs
           if e["type"] == "command_start" and e["node"] == "node-2" and not e.get("rollback")}
    # the runtime sysctl action (it saves each device's forwarding first since 7bfb094)
    sysctl_id = next(i for c, i in fwd.items()
                     if "sysctl -w net.ipv4.ip_forward=1" in c and DROPIN not in c)
    dropin_id = next(i for c, i in fwd.items() if DROPIN in c)

    # the reboot: new namespaces and processes, same address and host key; /run is emptied,
    # files on disk stay, the sysctl comes back as the node's boot configuration sets it
    lab_a.exec("node-2", "touch /run/cfx-before-reboot")
    old_pid = lab_a.node("node-2")["init_pid"]
    r = _cli("lab", "reboot-node", "node-2", "--dir", str(lab_a.dir), cwd=tmp_path)
    assert r.returncode == 0 and "node-2 rebooted" in r.stdout, r.stdout + r.stderr
    assert lab_a.node("node-2")["init_pid"] != old_pid
    now = lab_a.exec("node-2", "readlink /proc/self/ns/net /proc/self/ns/mnt; "
                     "ls /run/cfx-before-reboot 2>&1; cat " + DROPIN).stdout
    for ns in then["boot_scope"].split():
        assert ns.split(":", 1)[1] not in now, (then, now)
    assert "No such file" in now and "net.ipv4.ip_forward = 1" in now
    assert _fwd(lab_a, "node-2") == "1"

    r = _cli("rollback", "--yes", "--journal", str(journal), "--lab-dir", str(lab_a.dir),
             cwd=tmp_path)
    assert r.returncode == 2 and "rollback refused" in r.stdout, r.stdout[-3000:] + r.stderr
    assert "node node-2 namespaces (rebooted" in r.stdout
    assert "host key" not in r.stdout and "kube-system" not in r.stdout  # same node, cluster
    assert not any(e["type"] == "command_start" and e.get("rollback") for e in _events(journal))
    assert "net.ipv4.ip_forward = 1" in lab_a.exec("node-2", f"cat {DROPIN}").stdout

    r = _cli("rollback", "--yes", "--force", "--journal", str(journal), "--lab-dir",
             str(lab_a.dir), cwd=tmp_path)
    assert r.returncode == 0 and "--force: rolling back anyway" in r.stdout, \
        r.stdout[-3000:] + r.stderr[-2000:]
    evs = _events(journal)
    rb = {e["rollback_of"]: e for e in evs if e["type"] == "command_start" and e.get("rollback")}
    # the drop-in the fix wrote is a file: restored (removed: there was none before)
    assert dropin_id in rb
    end = next(e for e in evs if e["type"] == "command_end" and e.get("rollback")
               and e["action_id"] == rb[dropin_id]["action_id"])
    assert end["exit_code"] == 0
    assert lab_a.exec("node-2", f"test -e {DROPIN}", check=False).returncode == 1
    # `sysctl -w` was runtime state of the earlier boot: its rollback (back to 0) is not run
    assert sysctl_id not in rb
    checks = [e for e in evs if e["type"] == "precheck" and e["action_id"].startswith(sysctl_id)
              and e["action_id"] != sysctl_id]
    assert len(checks) == 1 and checks[0]["state"] == "changed", checks
    assert "node-2 rebooted since this change was made" in checks[0]["detail"]
    assert f"then {then['boot_id']} {then['boot_scope']}" in checks[0]["detail"]
    assert f"{checks[0]['action_id']}=skipped" in r.stdout
    assert _fwd(lab_a, "node-2") == "1"
