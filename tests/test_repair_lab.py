"""The repair engine on a real lab: fix --dry-run / --yes, idempotence, rollback, SIGKILL.

Each module-scoped lab is driven through the real CLI in a subprocess (real SSH to the netns
nodes, real HTTP to the lab API); node state is read back through LabHandle.exec.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from clusterfix_tui.core.journal import Journal


@contextlib.contextmanager
def running_lab(tmp_path_factory, nodes: int = 3, faults: object = "none"):
    """lab_helpers.running_lab with a longer start-up limit: the machine is shared and lab
    start-ups queue on the bridge-subnet lock."""
    from clusterfix_tui.lab import cluster

    d = tmp_path_factory.mktemp("lab") / "lab"
    handle = cluster.up(d, nodes=nodes, faults=faults, timeout=240)
    try:
        yield handle
    finally:
        cluster.down(d)

pytestmark = pytest.mark.lab

# what "the node's state" means for the before/after comparisons
STATE_COMMANDS = {
    "iptables-legacy": "iptables-legacy-save 2>&1 | grep -v '^#'",
    "iptables-nft": "iptables-nft-save 2>&1 | grep -v '^#'",
    "nft": "nft list ruleset 2>&1",
    "alternative": "readlink -f /etc/alternatives/iptables; "
                   "update-alternatives --query iptables 2>&1 | grep -E '^(Status|Value):'",
    "links": "ip -d -o link show | sed -E 's/ (qlen|numtxqueues|numrxqueues|gso_max_size|"
             "gso_max_segs|tso_max_size|tso_max_segs|gro_max_size|gso_ipv4_max_size|"
             "gro_ipv4_max_size) [0-9]+//g' | sort",
    "addresses": "ip -4 -o addr show | sed -E 's/ (valid_lft|preferred_lft) [a-z0-9]+//g' | sort",
    "routes": "ip -4 route show table all | sort",
    "neigh-permanent": "ip neigh show nud permanent | sort",
    "fdb": "bridge fdb show dev flannel.1 2>/dev/null | sort",
    "files": "ls -la --time-style=+ /etc/cni/net.d 2>&1; cat /run/flannel/subnet.env 2>&1; "
             "md5sum /etc/cni/net.d/* /root/.kube/config 2>&1",
}
# counters and bridge timers change by themselves; they are not state
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+|\S+_timer +[\d.]+")


# kube-proxy (the lab's, like the real one) rewrites its service/endpoint rules in its own backend
# (nft in the lab) whenever an endpoint turns ready or unready, which a broken lab's readiness
# probes do on their own; with live=True those lines are left out of the live backend's state.
_ENDPOINT_RULES = re.compile(r"KUBE-(SVC|SEP|EXT|FW)-|has no endpoints|dnat to|\breject\b")


def _live_filter(text: str) -> str:
    keep = [ln for ln in text.splitlines()
            if ln.strip() not in ("", "}") and not _ENDPOINT_RULES.search(ln)]
    return "\n".join(keep)


def node_state(lab, node: str, live: bool = False) -> dict[str, str]:
    out = {}
    for key, cmd in STATE_COMMANDS.items():
        r = lab.exec(node, cmd, check=False)
        text = _COUNTERS.sub("", r.stdout)
        if live and key in ("iptables-nft", "nft"):
            text = _live_filter(text)
        out[key] = text
    return out


def cluster_state(lab, live: bool = False) -> dict[str, dict[str, str]]:
    return {n["name"]: node_state(lab, n["name"], live) for n in lab.nodes}


def settled_state(lab, live: bool = False, timeout: float = 30) -> dict[str, dict[str, str]]:
    """The state once two reads 2 s apart agree (a freshly broken lab is still restarting
    pods and links)."""
    prev = cluster_state(lab, live)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2)
        cur = cluster_state(lab, live)
        if cur == prev:
            return cur
        prev = cur
    return prev


def diff(a: dict, b: dict) -> list[str]:
    out = []
    for node, state in a.items():
        for key, value in state.items():
            if value != b[node][key]:
                out.append(f"{node}/{key}:\n--- before\n{value}\n--- after\n{b[node][key]}")
    return out


def cli(*args: str, timeout: float = 240, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,  # noqa: PLW1510
                          text=True, timeout=timeout, input=input,
                          env={**os.environ, "NO_COLOR": "1"})


def nodeport_answers(lab) -> dict[str, bool]:
    port = int(lab.info.get("nodeport") or 30096)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    res = {}
    for n in lab.nodes:
        try:
            with opener.open(f"http://{n['ip']}:{port}/", timeout=3) as r:
                res[n["name"]] = r.status < 500
        except Exception:  # noqa: BLE001
            res[n["name"]] = False
    return res


# -- a healthy lab: fix --yes changes nothing ---------------------------------------------------

@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    with running_lab(tmp_path_factory, nodes=3, faults="none") as lab:
        yield lab


def test_healthy_lab_fix_yes_changes_nothing(healthy, tmp_path):
    before = settled_state(healthy)
    journal = tmp_path / "j.jsonl"
    r = cli("fix", "--yes", "--lab-dir", str(healthy.dir), "--journal", str(journal),
            "--wait", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    after = cluster_state(healthy)
    d = diff(before, after)
    assert d == [], "\n".join(d)[:6000]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    assert not [e for e in events if e["type"] == "command_start"]
    assert events[-1]["type"] == "session_end" and events[-1]["verdict"] == "healthy"


def test_probe_workaround_is_opt_in_and_reverted_after_validation(healthy, tmp_path):
    """The runbook's probe workaround through the real API: offered only as an opt-in, the
    original probe recorded, and put back by the session once validation passes."""
    from fix_helpers import FakeDiagnosis

    from clusterfix_tui.core.fixes.engine import default_approved, is_opt_in
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.model import Finding
    from clusterfix_tui.core.session import RepairSession
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=str(healthy.dir))
    try:
        def probe():
            dep = rt.api.get_deployment("media", "jellyfin")
            return dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]

        original = probe()
        jf = rt.api.list_pods("media")[0]
        finding = Finding(code="PROBE_NO_ROUTE", severity="warning", node=jf["spec"]["nodeName"],
                          title="probe: no route to host", step="pods",
                          data={"events": [], "pods": [f"media/{jf['metadata']['name']}"]})
        s = RepairSession(rt.api, rt.shells, rt.runner, Journal(tmp_path / "p.jsonl"),
                           prober=rt.prober)
        s.diagnosis = s.before = FakeDiagnosis([finding])
        plan = s.plan("pods")
        (action,) = plan.actions
        assert is_opt_in(action) and default_approved(plan) == []
        assert action.change["before"] == original
        out = s.apply(plan, [action.id])
        assert out.status == "changed", out
        assert "exec" in probe() and "httpGet" not in probe()
        deadline = time.monotonic() + 60
        while True:  # the jellyfin pod rolls with the exec probe and becomes Ready
            results = s.validate("after")
            if all(r.passed for r in results) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert all(r.passed for r in results), [r for r in results if not r.passed]
        assert probe() == original  # reverted by the session once validation passed
        notes = [e["text"] for e in s.journal.events if e["type"] == "note"]
        assert any("reverting the temporary workaround" in n for n in notes)
    finally:
        rt.close()


# -- the lab with every fault: dry-run, then fix --yes -------------------------------------------

@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    with running_lab(tmp_path_factory, nodes=3, faults="all") as lab:
        yield lab


def test_dry_run_prints_commands_and_changes_nothing(broken, tmp_path):
    before = settled_state(broken, live=True)
    journal = tmp_path / "dry.jsonl"
    r = cli("fix", "--dry-run", "--lab-dir", str(broken.dir), "--journal", str(journal),
            "--no-validate")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "$ iptables-" in r.stdout or "$ ip " in r.stdout, r.stdout
    assert "dry run" in r.stdout.lower()
    after = cluster_state(broken, live=True)
    d = diff(before, after)
    assert d == [], "\n".join(d)[:6000]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    decisions = [e for e in events if e["type"] == "decision" and e["action_ids"]]
    assert decisions and all(e["decision"] == "dry-run" for e in decisions)
    assert all(e.get("dry_run") for e in events if e["type"] == "command_start")


def test_fix_yes_repairs_every_fault_and_validates_green(broken, tmp_path):
    journal = tmp_path / "fix.jsonl"
    r = cli("fix", "--yes", "--lab-dir", str(broken.dir), "--journal", str(journal),
            "--wait", "90", timeout=400)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    # validation ran before the repair too (the report's side-by-side table), and it failed then
    events = Journal.read(journal)
    before = [e for e in events if e["type"] == "validation" and e["phase"] == "before"]
    assert len(before) == 1 and not all(x["passed"] for x in before[0]["results"])
    v = cli("validate", "--json", "--lab-dir", str(broken.dir))
    assert v.returncode == 0, v.stdout
    doc = json.loads(v.stdout)
    assert doc["passed"] and all(x["passed"] for x in doc["results"])
    assert all(nodeport_answers(broken).values()), nodeport_answers(broken)


# -- rollback: each step with an automatic rollback puts the node back -----------------------

ROLLBACK_CASES = {
    # step -> faults (on the nodes the catalog prefers)
    "iptables": "iptables-shadow,forward-drop",
    "cni_bridge": "flannel-stale-vtep",
}


@pytest.fixture(scope="module")
def rollback_lab(tmp_path_factory):
    with running_lab(tmp_path_factory, nodes=3,
                     faults=",".join(ROLLBACK_CASES.values())) as lab:
        yield lab


@pytest.mark.parametrize("step", list(ROLLBACK_CASES))
def test_step_rollback_restores_pre_fix_state(rollback_lab, step, tmp_path):
    lab = rollback_lab
    if step == "iptables":
        # the node with stale rules also has its `iptables` pointing at the other backend: the
        # fix aligns the alternative, the rollback must put the previous one back
        node = next(f["node"] for f in lab.info["faults"] if f["name"] == "iptables-shadow")
        lab.exec(node, "update-alternatives --set iptables /usr/sbin/iptables-legacy && "
                       "update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy")
    before = settled_state(lab, live=True)
    journal = tmp_path / f"{step}.jsonl"
    r = cli("fix", "--yes", "--step", step, "--lab-dir", str(lab.dir), "--journal", str(journal),
            "--no-validate")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    starts = [e for e in events if e["type"] == "command_start" and e["kind"] == "shell"]
    assert starts, f"{step} planned nothing on the faulted lab:\n{r.stdout}"
    if step == "iptables":
        assert any("update-alternatives --set iptables /usr/sbin/iptables-nft" in e["command"]
                   for e in starts), r.stdout
    assert diff(before, cluster_state(lab, live=True)) != []  # the fix changed something
    time.sleep(1.0)  # let the restarted pods' agents settle before the rollback
    rb = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(lab.dir))
    assert rb.returncode == 0, rb.stdout + rb.stderr
    after = cluster_state(lab, live=True)
    # backups stay on the node by design; everything else is back
    d = diff(before, after)
    assert d == [], "\n".join(d)[:6000]


# -- SIGKILL mid-step: the journal still names every command started ------------------------

@pytest.fixture(scope="module")
def kill_lab(tmp_path_factory):
    with running_lab(tmp_path_factory, nodes=3,
                     faults="iptables-shadow,forward-drop,kube-proxy-crashloop") as lab:
        yield lab


def test_sigkill_mid_step_leaves_a_journal_naming_every_started_command(kill_lab, tmp_path):
    journal = tmp_path / "kill.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--step", "iptables",
         "--lab-dir", str(kill_lab.dir), "--journal", str(journal), "--no-validate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists():
                text = journal.read_text()
                lines = [json.loads(x) for x in text.splitlines() if x.strip().endswith("}")]
                starts = [e for e in lines if e["type"] == "command_start"]
                # kill while the second command runs (its start written, no end yet)
                if len(starts) >= 2 and lines[-1]["type"] == "command_start":
                    proc.send_signal(signal.SIGKILL)
                    killed_at = starts[-1]["action_id"]
                    break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait(timeout=10)
    assert killed_at is not None, "the fix finished before it could be killed"
    from clusterfix_tui.core.journal import Journal

    events = Journal.read(journal)
    starts = {e["action_id"]: e for e in events if e["type"] == "command_start"}
    ends = {e["action_id"]: e for e in events if e["type"] == "command_end"}
    assert killed_at in starts
    assert set(ends) <= set(starts)
    for ev in starts.values():
        assert ev["command"] and ev["node"]
    # what ran on the node is named: the backup command's directory exists on that node
    backup = next(e for e in starts.values() if "iptables-legacy-save >" in e["command"])
    bdir = re.search(r"mkdir -p -m 700 (\S+)", backup["command"]).group(1)
    assert kill_lab.exec(backup["node"], f"test -d {bdir}", check=False).returncode == 0
    # and the journal is enough to undo it, the unfinished command included
    rb = cli("rollback", "--journal", str(journal), "--yes", "--lab-dir", str(kill_lab.dir))
    assert rb.returncode == 0, rb.stdout + rb.stderr


def test_pods_step_restarts_the_crash_looping_kube_proxy_and_waits(kill_lab, tmp_path):
    node = next(f["node"] for f in kill_lab.info["faults"] if f["name"] == "kube-proxy-crashloop")
    journal = tmp_path / "pods.jsonl"
    r = cli("fix", "--yes", "--step", "pods", "--lab-dir", str(kill_lab.dir),
            "--journal", str(journal), "--no-validate")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    from clusterfix_tui.core.journal import Journal

    events = Journal.read(journal)
    starts = [e for e in events if e["type"] == "command_start"]
    assert [(e["kind"], e["node"]) for e in starts] == [("api", node)], r.stdout
    assert starts[0]["action"]["api"]["verb"] == "delete_pod"
    end = next(e for e in events if e["type"] == "step_end" and e["step"] == "pods")
    assert end["outcome"]["status"] == "changed", end
    assert "Running and Ready" in end["outcome"]["message"]
    # the new kube-proxy programmed the NodePort rules on that node again
    nat = kill_lab.exec(node, "iptables-nft-save -t nat", check=False)  # the lab's kube-proxy: nft
    assert "-A KUBE-NODEPORTS" in nat.stdout
