"""The repair engine on a real lab: fix --dry-run / --yes, idempotence, rollback, SIGKILL.

Every test that changes a lab has a lab of its own (a lab starts in seconds): no test depends on
what another did, or on the order they run in. They drive the real CLI in a subprocess or the
real RepairSession (real SSH to the netns nodes, real HTTPS to the lab API); node state is read
back through LabHandle.exec and compared before/after.
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
from determinism import poll_until
from lab_helpers import Gate

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
    # kubectl's own cache under /root/.kube is not state
    "files": "ls -la --time-style=+ /etc/cni/net.d 2>&1; "
             "stat -c '%n %a %U %s' /root/.kube/config /etc/kubernetes/*.conf 2>&1; "
             "cat /run/flannel/subnet.env 2>&1; "
             "md5sum /etc/cni/net.d/* /root/.kube/config /etc/kubernetes/*.conf 2>&1",
    "sysctls": "sysctl net.ipv4.ip_forward net.ipv4.conf.all.forwarding 2>&1",
}
# counters and bridge timers change by themselves; they are not state
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+|\S+_timer +[\d.]+")


# kube-proxy (the lab's, like the real one) rewrites its service/endpoint rules in its own backend
# (nft in the lab) whenever an endpoint turns ready or unready, which a broken lab's readiness
# probes do on their own; with live=True those lines are left out of the live backend's state.
_ENDPOINT_RULES = re.compile(r"KUBE-(SVC|SEP|EXT|FW)-|has no endpoints|dnat to|dport.*\breject\b|"
                             r"jump KUBE-MARK-MASQ")


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

@pytest.fixture
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

    from clusterfix_tui.core.checks import data_for
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
                          data=data_for("PROBE_NO_ROUTE", events=[],
                                        pods=[f"media/{jf['metadata']['name']}"]))
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
        # the jellyfin pod rolls with the exec probe and becomes Ready
        poll_until(lambda: all(r.passed for r in s.validate("after")), 60,
                   "validation to pass with the workaround", every=2)
        assert probe() == original  # reverted by the session once validation passed
        notes = [e["text"] for e in s.journal.events if e["type"] == "note"]
        assert any("reverting the temporary workaround" in n for n in notes)
    finally:
        rt.close()


# -- the lab with every fault: dry-run, then fix --yes -------------------------------------------

@pytest.fixture
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


# -- rollback: every action that has one, on a lab of its own, with the node state diffed ------

STRAY = '{"cniVersion": "0.3.1", "name": "stray", "plugins": [{"type": "bridge", "bridge": "cni0"}]}'


def _plant_stray_conflist(lab) -> str:
    """A stray bridge config sorting before flannel's (a leftover of another CNI)."""
    node = "node-2"
    lab.exec(node, f"printf '%s\\n' '{STRAY}' > /etc/cni/net.d/05-stray.conflist")
    return node


# case -> (step, fault injected at lab start or None, hand-made fault or None)
ROLLBACKS = {
    "iptables-forward-drop": ("iptables", "forward-drop", None),
    "iptables-shadow-and-alternative": ("iptables", "iptables-shadow", "alternative"),
    "iptables-foreign-nft-rule": ("iptables", "iptables-foreign-rule", None),
    "cni_bridge-cni0-address": ("cni_bridge", "cni-bridge-conflict", None),
    "cni_bridge-stray-conflist": ("cni_bridge", None, _plant_stray_conflist),
    "cni_bridge-stale-vtep": ("cni_bridge", "flannel-stale-vtep", None),
    "cni_bridge-stale-subnet": ("cni_bridge", "flannel-stale-subnet", None),
    "host_network-ip-forward-off": ("host_network", "ip-forward-off", None),
    "host_network-firewall-reject": ("host_network", "firewall-reject", None),
    "worker_kubeconfig": ("worker_kubeconfig", "worker-kubeconfig", None),
}


def _converged(lab, want: dict, timeout: float = 60) -> list[str]:
    """Poll until the cluster state equals `want` (restarted agents settle); the last diff."""
    last: list[list[str]] = [[]]

    def same() -> bool:
        last[0] = diff(want, cluster_state(lab, live=True))
        return not last[0]

    try:
        poll_until(same, timeout, "the node state to settle", every=1)
    except AssertionError:
        pass
    return last[0]


@pytest.mark.parametrize("case", list(ROLLBACKS))
def test_rollback_of_every_action_restores_the_node(case, tmp_path_factory, tmp_path):
    """Fault -> the step's plan -> apply (status "changed", every approved action ok, the node
    state differs) -> rollback (status "changed", every rollback ok) -> the node state is what
    it was before the fix, in both iptables backends, the nft ruleset, links, addresses,
    routes, neighbours, files and sysctls."""
    from clusterfix_tui.core.fixes.engine import default_approved
    from clusterfix_tui.core.session import RepairSession
    from clusterfix_tui.runtime import build_runtime

    step, fault, by_hand = ROLLBACKS[case]
    if step == "worker_kubeconfig":
        from _env import require_tool

        require_tool("kubectl")  # the step verifies the repaired file with the node's kubectl
    with running_lab(tmp_path_factory, nodes=3, faults=fault or "none") as lab:
        node = next((f["node"] for f in lab.info["faults"] if f["name"] == fault), None)
        if by_hand == "alternative":
            # the node with stale rules also has its `iptables` pointing at the other backend:
            # the fix aligns the alternative, the rollback must put the previous one back
            lab.exec(node, "update-alternatives --set iptables /usr/sbin/iptables-legacy && "
                           "update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy")
        elif by_hand is not None:
            node = by_hand(lab)
        assert node
        before = settled_state(lab, live=True)
        rt = build_runtime(lab_dir=str(lab.dir))
        try:
            s = RepairSession(rt.api, rt.shells, rt.runner, Journal(tmp_path / "j.jsonl"),
                              prober=rt.prober)
            s.connect()
            s.diagnose("before")
            plan = s.plan(step)
            # the node actions; an API action (an agent's pod restarted) has no rollback, and what the
            # restarted agent then does is the cluster's, not the fix's, to undo
            approved = [i for i in default_approved(plan)
                        if next(a for a in plan.actions if a.id == i).kind != "api"]
            undoable = [a for a in plan.actions
                        if a.mutating and a.rollback is not None and a.id in approved]
            assert undoable, (case, plan.to_dict())
            out = s.apply(plan, approved, by="--yes")
            assert out.status == "changed", (case, out.to_dict())
            ran = {o.action_id: o.status for o in out.actions if o.action_id in approved}
            assert set(ran.values()) == {"ok"}, ran
            mid = cluster_state(lab, live=True)
            assert diff(before, mid), "the fix changed nothing on any node"
            rb = s.rollback(step)
            assert rb.status == "changed", (case, rb.to_dict())
            undone = {o.action_id: o.status for o in rb.actions}
            assert undone and set(undone.values()) == {"ok"}, undone
            assert len(undone) == sum(1 for a in plan.actions
                                      if a.rollback is not None and a.id in ran), undone
        finally:
            rt.close()
        # routes included, every attribute `ip route show table all` prints (proto, scope, src,
        # metric, onlink): the stale-subnet rollback re-adds the routes whose source was the
        # stale address exactly as they were
        left = _converged(lab, before)
        # backups stay on the node by design (not in the compared state); everything else is back
        assert left == [], "\n".join(left)[:6000]


# -- SIGKILL mid-step: the journal still names every command started ------------------------

@pytest.fixture
def kill_lab(tmp_path_factory):
    with running_lab(tmp_path_factory, nodes=3,
                     faults="iptables-shadow,forward-drop,kube-proxy-crashloop") as lab:
        yield lab


def _last_line(journal) -> dict | None:
    if not journal.exists():
        return None
    lines = journal.read_bytes().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def test_sigkill_mid_step_leaves_a_journal_naming_every_started_command(kill_lab, tmp_path):
    journal = tmp_path / "kill.jsonl"
    # each node's second repair command is held at a gate: the kill lands while it runs
    gates = [Gate(kill_lab, n["name"], tmp_path, "/var/backups/clusterfix/", hold_from=2)
             for n in kill_lab.nodes]
    with contextlib.ExitStack() as stack:
        for g in gates:
            stack.enter_context(g)
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--step", "iptables",
             "--lab-dir", str(kill_lab.dir), "--journal", str(journal), "--no-validate"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            poll_until(lambda: any(g.pids() for g in gates) or proc.poll() is not None, 120,
                       "a second repair command to reach a gate")
            assert proc.poll() is None, "the fix finished before it could be killed"
            held = [g for g in gates if g.pids()]
            last = poll_until(lambda: _last_line(journal), 30, "the journal's last event")
            assert last["type"] == "command_start", last
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    killed_at = last["action_id"]
    assert last["node"] in {g.node for g in held}  # the journal names the node it ran on
    events = Journal.read(journal)
    starts = {e["action_id"]: e for e in events if e["type"] == "command_start"}
    ends = {e["action_id"]: e for e in events if e["type"] == "command_end"}
    assert killed_at in starts and killed_at not in ends
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


# -- Ctrl+C (SIGINT) to a headless fix: the journal stays valid and says the run was aborted ----

def test_sigint_mid_step_leaves_a_valid_journal(tmp_path_factory, tmp_path):
    from clusterfix_tui.core import report

    journal = tmp_path / "int.jsonl"
    with running_lab(tmp_path_factory, nodes=3, faults="forward-drop") as lab:
        node = next(f["node"] for f in lab.info["faults"] if f["name"] == "forward-drop")
        with Gate(lab, node, tmp_path, "/var/backups/clusterfix/") as gate:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clusterfix_tui", "fix", "--yes", "--lab-dir",
                 str(lab.dir), "--journal", str(journal), "--no-validate"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "NO_COLOR": "1"})
            try:
                poll_until(lambda: gate.pids() or proc.poll() is not None, 120,
                           "the step's first command to reach the gate")
                assert proc.poll() is None, "the fix ended before its first command"
                last = poll_until(lambda: _last_line(journal), 30, "the journal")
                assert last["type"] == "command_start", last
                proc.send_signal(signal.SIGINT)  # what Ctrl+C in the terminal sends
                gate.release(go=False)  # the held command ends (exit 111) without running
                out, err = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
        events, problems = report.load_journal(journal)
        assert problems == [], problems  # every line parses
        assert "Traceback" not in err, err[-3000:]
        assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
        starts = {e["action_id"]: e for e in events if e["type"] == "command_start"}
        assert last["action_id"] in starts and starts[last["action_id"]]["node"] == node
        # the report renders from it (every format)
        for fmt in report.FORMATS:
            assert report.render(events, fmt)
        # NOT YET (reported to the lead, fix.py is the flow helper's): after Ctrl+C the journal
        # should also end the running command (command_end) and the session (session_end,
        # verdict "aborted"); today both are missing and the report says "interrupted".
