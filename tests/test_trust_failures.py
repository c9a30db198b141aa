"""Failures halfway, on a real lab (issue 8, points 3 and 4).

A 3-node lab of its own for each test that breaks one (a shared one for the tests that only
read it); the session is the real one (RepairSession over build_runtime: real
SSH, the real HTTPS API), driven the way `fix` drives it. Failures are real:
- "sshd killed": the node's sshd listener AND its live session processes are SIGKILLed (the TCP
  connection the pool holds dies, like a node that crashes);
- a command held or hanging on ONE node: lab_helpers.Gate bind-mounts a directory over
  /usr/local/sbin in that node's private mount namespace, so a `sh` wrapper comes first on PATH and
  blocks the matching command at its start on a FIFO until the test releases it (the kill point is
  always hit; the host and the other nodes are untouched);
- the API server stopped: the lab's API lives inside the lab daemon (daemon.py has no op to stop
  or restart it, and LabAPI can only be started once), so the daemon process is SIGSTOPped (the
  API stops answering: requests time out) and SIGCONTed (it answers again);
- SSH auth failure: a copied ssh_config with a freshly generated (wrong) key for one node;
- host keys: a known_hosts without one node's key, with a different key for one node, and
  StrictHostKeyChecking accept-new / yes in --ssh-config.
Each test says what it injected; FAILURE_INJECTIONS counts them for the note.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from determinism import poll_until
from lab_helpers import Gate, pid_alive
from trust_helpers import cli

pytestmark = pytest.mark.lab
INJECTIONS: list[str] = []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Shared by the tests that only read it (they work on copies of ssh_config/known_hosts)."""
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=3, faults="none") as handle:
        yield handle
    print(f"\nTRUST-FAILURES: {len(INJECTIONS)} failure injections: {INJECTIONS}")


@pytest.fixture
def own_lab(tmp_path_factory):
    """A lab for one test that breaks it (kills sshd, injects a fault, freezes the API)."""
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=3, faults="none") as handle:
        yield handle


# ---- helpers --------------------------------------------------------------------------------

def kill_sshd(lab, node: str) -> None:
    """The node's sshd and every live SSH session process on it, SIGKILL."""
    INJECTIONS.append(f"sshd killed on {node}")
    lab.stop_sshd(node)
    netns = lab.node(node)["netns"]
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                          check=False).stdout
    for pid in pids.split():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "sshd" or comm.startswith("sshd"):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


FACTS = "cfx_s="  # in the facts loader (core.facts.loader_command): the diagnosis command
STEP = "/var/backups/clusterfix/"  # in a repair step's first command on a node (its backup)


def new_session(lab, tmp: Path, name: str, **kw):
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.session import RepairSession
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=lab.info["dir"], **kw)
    journal = Journal(tmp / f"{name}.jsonl")
    return rt, journal, RepairSession(rt.api, rt.shells, rt.runner, journal, mode="headless")


def forward_chain(lab, node: str) -> dict[str, list[str]]:
    """The filter FORWARD chain (`-S`: policy first, then the rules) in each backend."""
    out = {}
    for backend in ("legacy", "nft"):
        lines = lab.exec(node, f"iptables-{backend} -w 5 -S FORWARD").stdout.splitlines()
        assert lines and lines[0].startswith("-P FORWARD "), lines
        out[backend] = lines
    return out


def policies(chains: dict[str, list[str]]) -> dict[str, str]:
    return {b: lines[0].split()[2] for b, lines in chains.items()}


def events_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ---- sshd killed during diagnosis -----------------------------------------------------------

def test_sshd_killed_during_diagnosis(own_lab, tmp_path) -> None:
    lab = own_lab
    rt, _journal, s = new_session(lab, tmp_path, "diag")
    gate = Gate(lab, "node-3", tmp_path, FACTS)
    try:
        conns = s.connect()
        assert all(c.state == "connected" for c in conns), conns
        gate.__enter__()
        result: dict = {}
        t = threading.Thread(target=lambda: result.setdefault("d", s.diagnose("before")))
        t.start()
        gate.wait_started()  # node-3's facts script is held at its start now
        kill_sshd(lab, "node-3")
        gate.release(go=False)
        t.join(90)
        assert not t.is_alive(), "diagnosis hung after a node died"
        d = result["d"]
        assert set(d.facts) >= {"node-1", "node-2"}, "the other nodes were not diagnosed"
        assert d.facts.get("node-3") is None and "node-3" in d.node_errors, d.node_errors
        codes = {(f.code, f.node) for f in d.findings}
        assert [c for c, n in codes if n == "node-3"] == ["SSH_UNREACHABLE"], codes
        ev = [e for e in events_of(tmp_path / "diag.jsonl") if e["type"] == "diagnosis"]
        assert ev and any(f["node"] == "node-3" for f in ev[-1]["findings"])
    finally:
        rt.close()
        gate.close()
        lab.start_sshd("node-3")


# ---- sshd killed during a step: partial, precise journal/report, rollback --------------------

def test_sshd_killed_during_a_step_partial_then_rollback(own_lab, tmp_path) -> None:
    lab = own_lab
    for n in ("node-2", "node-3"):
        lab.inject("forward-drop", n)
    before = {n: forward_chain(lab, n) for n in ("node-2", "node-3")}
    # the fault: policy DROP in the backend kube-proxy does not use (legacy in the lab)
    assert all(policies(c) == {"legacy": "DROP", "nft": "ACCEPT"} for c in before.values()), before
    rt, journal, s = new_session(lab, tmp_path, "step")
    gate = Gate(lab, "node-3", tmp_path, STEP)
    try:
        s.connect()
        s.diagnose("before")
        plan = s.plan("iptables")
        by_node = {a.target for a in plan.actions}
        assert {"node-2", "node-3"} <= by_node, plan
        gate.__enter__()
        from clusterfix_tui.core.fixes.engine import default_approved

        lines: list[tuple[str, str, str]] = []

        def on_line(node, stream, line):
            lines.append((node, stream, line))

        def kill_when_node3_is_held():
            # node-3's first command is held at the gate: it cannot finish before the kill
            gate.wait_started()
            kill_sshd(lab, "node-3")
            gate.release(go=False)  # on the node, the held command exits without running

        killer = threading.Thread(target=kill_when_node3_is_held)
        killer.start()
        outcome = s.apply(plan, default_approved(plan), on_line=on_line, by="--yes")
        killer.join(30)
        assert not killer.is_alive()
        assert outcome.status == "partial", outcome
        st = {o.action_id: o.status for o in outcome.actions}
        approved = set(default_approved(plan))
        n2 = [o for o in outcome.actions if o.target == "node-2" and o.action_id in approved]
        n3 = [o for o in outcome.actions if o.target == "node-3" and o.action_id in approved]
        assert n2 and all(o.status == "ok" for o in n2), st
        assert n3[0].status == "failed" and all(o.status == "skipped" for o in n3[1:]), st
        assert "lost" in (n3[0].result.error or "") or "node-3" in (n3[0].result.error or ""), \
            n3[0].result
        # node-2: the legacy FORWARD chain now ACCEPTs the pod network at its top (the policy
        # stays DROP), nft's is untouched; node-3 (its command never ran) is as it was
        fixed = forward_chain(lab, "node-2")
        added = [ln for ln in fixed["legacy"] if ln not in before["node-2"]["legacy"]]
        assert added and all(ln.startswith("-A FORWARD ") and ln.endswith("-j ACCEPT")
                             for ln in added), fixed
        assert fixed["legacy"][1:1 + len(added)] == added  # at the top, before any other rule
        assert policies(fixed) == policies(before["node-2"])
        assert fixed["nft"] == before["node-2"]["nft"]
        assert forward_chain(lab, "node-3") == before["node-3"]
        # the journal says exactly what ran where
        ev = events_of(tmp_path / "step.jsonl")
        starts = [(e["node"], e["action_id"]) for e in ev if e["type"] == "command_start"]
        ends = {e["action_id"]: e for e in ev if e["type"] == "command_end"}
        assert [a for n, a in starts if n == "node-3"] == [n3[0].action_id], starts
        assert ends[n3[0].action_id]["exit_code"] is None and ends[n3[0].action_id]["error"]
        assert all(ends[o.action_id]["exit_code"] == 0 for o in n2 if o.result is not None)
        step_end = [e for e in ev if e["type"] == "step_end"][-1]
        assert step_end["outcome"]["status"] == "partial"
        # the report says it too
        from clusterfix_tui.core.report import render

        md = render(ev, "md") if callable(render) else ""
        assert "partial" in md and "node-3" in md and n3[0].action_id in md, md[:3000]
        # rollback of what did run: node-2's ACCEPTs are removed again
        rb = s.rollback("iptables")
        undone = {o.action_id: (o.target, o.status) for o in rb.actions}
        assert undone and all(t == "node-2" and st == "ok" for t, st in undone.values()), undone
        assert rb.status == "changed", rb
        assert forward_chain(lab, "node-2") == before["node-2"]
        # the node comes back and is usable again
        gate.close()
        lab.start_sshd("node-3")
        INJECTIONS.append("node-3 comes back (start_sshd)")
        d = s.diagnose("after")
        assert "node-3" in d.facts and d.facts["node-3"] is not None, d.node_errors
        assert any(f.code == "FORWARD_DROP" and f.node == "node-3" for f in d.findings)
    finally:
        rt.close()
        gate.close()
        lab.start_sshd("node-3")
        for n in ("node-2", "node-3"):
            lab.exec(n, "iptables-legacy -P FORWARD ACCEPT; iptables-nft -P FORWARD ACCEPT",
                     check=False)


# ---- a command that hangs --------------------------------------------------------------------

def test_a_hanging_command_times_out_and_the_step_says_so(own_lab, tmp_path) -> None:
    lab = own_lab
    lab.inject("forward-drop", "node-2")
    rt, _journal, s = new_session(lab, tmp_path, "hang")
    gate = Gate(lab, "node-2", tmp_path, STEP)
    try:
        s.connect()
        s.diagnose("before")
        plan = s.plan("iptables")
        gate.__enter__()  # never released: the step's first command on node-2 hangs
        INJECTIONS.append("the iptables step's first command hangs on node-2")
        # the same plan, with a short timeout (60 s by default) so the test stays fast
        plan = dataclasses.replace(plan, actions=tuple(
            dataclasses.replace(a, timeout=3.0) for a in plan.actions))
        from clusterfix_tui.core.fixes.engine import default_approved

        outcome = s.apply(plan, default_approved(plan), by="--yes")
        first = next(o for o in outcome.actions if o.target == "node-2")
        assert first.status == "failed" and first.result.timed_out, first
        assert outcome.status == "failed", outcome
        assert "failed" in outcome.message, outcome.message
        ev = [e for e in events_of(tmp_path / "hang.jsonl") if e["type"] == "command_end"]
        assert ev[0]["timed_out"] is True
        held = gate.pids()
        assert len(held) == 1, held  # the command the step timed out on
        # the node's own `timeout -s KILL` (deadline + 2 s) ends the command, nobody else does
        poll_until(lambda: not pid_alive(held[0]), 30, "the hung command to be killed on node-2")
    finally:
        rt.close()
        gate.close()
        lab.exec("node-2", "iptables-legacy -P FORWARD ACCEPT; iptables-nft -P FORWARD ACCEPT",
                 check=False)


# ---- the API server stops answering during a step, then comes back -------------------------

def test_api_server_frozen_during_a_step_then_back(own_lab, tmp_path) -> None:
    """The pods step's only action is an API call (delete the crash-looping kube-proxy pod)."""
    lab = own_lab
    lab.set_agent_state("node-2", "kube-proxy", crashed=True, message="boom", backoff=2)
    rt, _journal, s = new_session(lab, tmp_path, "api")
    pid = lab.info["daemon_pid"]
    try:
        s.connect()
        def pods_plan():
            s.diagnose("before")
            p = s.plan("pods")
            return p if p.actions else None

        plan = poll_until(pods_plan, 60, "the crash-looping kube-proxy to be diagnosed", every=1)
        from clusterfix_tui.core.fixes.engine import default_approved

        os.kill(pid, signal.SIGSTOP)
        INJECTIONS.append("API server stopped (daemon SIGSTOP) during the pods step")
        try:
            plan_short = dataclasses.replace(plan, actions=tuple(
                dataclasses.replace(a, timeout=5.0) for a in plan.actions))
            got: dict = {}
            t = threading.Thread(target=lambda: got.setdefault(
                "o", s.apply(plan_short, default_approved(plan_short), by="--yes")))
            t.start()
            t.join(120)  # a deadline, not a speed check: without a timeout it never returns
            assert not t.is_alive(), "the step hung on a frozen API server"
            outcome = got["o"]
        finally:
            os.kill(pid, signal.SIGCONT)
            INJECTIONS.append("API server back (SIGCONT)")
        # the API action's precondition (an API read) timed out, so it was not run, and the
        # outcome names the timeout, without a traceback
        assert outcome.actions and all(o.status == "skipped" for o in outcome.actions), outcome
        assert outcome.status == "skipped", outcome
        said = " ".join(f"{o.detail} {o.result.error if o.result else ''}"
                        for o in outcome.actions)
        assert "timed out" in said and "Traceback" not in said, said
        ev = events_of(tmp_path / "api.jsonl")
        # journaled: the precheck that could not reach the API, and no command that ran
        pre = [e for e in ev if e["type"] == "precheck" and e.get("step") == "pods"]
        assert pre and "timed out" in pre[0]["detail"] and pre[0]["state"] != "holds", pre
        assert not [e for e in ev if e["type"] == "command_start" and e.get("step") == "pods"]
        # once the API answers again the session works again. NB: the delete the client gave up
        # on was still in the frozen server's socket buffer and may have been applied on SIGCONT:
        # a timed-out API write is "unknown", not "did not happen" (see the trust note).
        def answers():
            d = s.diagnose("before")
            return d if not d.error and not d.snapshot.errors else None

        poll_until(answers, 60, "the API server to answer again", every=0.5)
        plan = s.plan("pods")
        if plan.actions:
            outcome = s.apply(plan, default_approved(plan), by="--yes")
            assert any(o.status == "ok" for o in outcome.actions), outcome
    finally:
        os.kill(pid, signal.SIGCONT)
        rt.close()
        lab.set_agent_state("node-2", "kube-proxy")


# ---- SSH auth failure and host keys, through the CLI ----------------------------------------

def _copy_ssh_config(lab, tmp: Path, extra: dict[str, list[str]] | None = None,
                     known_hosts: Path | None = None) -> Path:
    d = Path(lab.info["dir"])
    text = (d / "ssh_config").read_text()
    if known_hosts is not None:
        text = text.replace(str(d / "known_hosts"), str(known_hosts))
    out = []
    host = None
    for line in text.splitlines():
        s = line.strip()
        if s.lower().startswith("host "):
            host = s.split(None, 1)[1]
        out.append(line)
        if s.lower().startswith("host ") and extra and host in extra:
            out.extend("  " + x for x in extra[host])
    p = tmp / "ssh_config"
    p.write_text("\n".join(out) + "\n")
    return p


def _diagnose_json(lab, cfg: Path):
    p = cli("diagnose", "--lab-dir", lab.info["dir"], "--ssh-config", str(cfg), "--json", "-q")
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    return p, json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}


def test_ssh_auth_failure_leaves_the_node_out(lab, tmp_path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "wrong")],
                   check=True)
    cfg = _copy_ssh_config(lab, tmp_path, {"node-2": [f"IdentityFile {tmp_path / 'wrong'}",
                                                      "IdentitiesOnly yes"]})
    text = cfg.read_text()
    # the first IdentityFile wins in OpenSSH: make the wrong key the only one for node-2
    lines, host = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.lower().startswith("host "):
            host = s.split(None, 1)[1]
        if host == "node-2" and s.lower().startswith("identityfile") and "wrong" not in s:
            continue
        lines.append(line)
    cfg.write_text("\n".join(lines) + "\n")
    INJECTIONS.append("wrong SSH key for node-2")
    p, d = _diagnose_json(lab, cfg)
    assert p.returncode == 1
    codes = {(f["code"], f["node"]) for f in d["findings"]}
    assert ("SSH_AUTH_FAILED", "node-2") in codes, codes
    # the other nodes were read (their facts are there), only node-2 is out
    assert {n for n, v in d["nodes"].items() if v["read"]} == {"node-1", "node-3"}, d["nodes"]
    f = cli("fix", "--dry-run", "--no-validate", "--lab-dir", lab.info["dir"], "--ssh-config",
            str(cfg), "--journal", str(tmp_path / "j.jsonl"))
    assert "Traceback" not in f.stderr
    ev = events_of(tmp_path / "j.jsonl")
    left = [e for e in ev if e["type"] == "node_left_out"]
    assert [e["node"] for e in left] == ["node-2"] and "auth" in left[0]["reason"], left


def test_unknown_host_key_is_left_out_with_its_fingerprint(lab, tmp_path) -> None:
    d = Path(lab.info["dir"])
    kh = tmp_path / "known_hosts"
    node3_ip = lab.node("node-3")["ip"]
    kept = [ln for ln in (d / "known_hosts").read_text().splitlines()
            if not (ln.split(" ", 1)[0] in ("node-3", node3_ip)
                    or node3_ip in ln.split(" ", 1)[0].split(","))]
    kh.write_text("\n".join(kept) + "\n")
    INJECTIONS.append("node-3's host key unknown")
    cfg = _copy_ssh_config(lab, tmp_path, known_hosts=kh)
    _p, diag = _diagnose_json(lab, cfg)
    hk = [f for f in diag["findings"] if f["code"] == "HOST_KEY_UNKNOWN"]
    assert [f["node"] for f in hk] == ["node-3"], diag["findings"]
    fp = subprocess.run(["ssh-keygen", "-lf", str(Path(lab.node("node-3").get("node_dir", d))
                                                  / "ssh_host_ed25519_key.pub")],
                        capture_output=True, text=True, check=False).stdout.split()
    said = json.dumps(hk[0])
    assert "SHA256:" in said, said
    if len(fp) > 1:
        assert fp[1] in said, (fp, said)
    assert kh.read_text() == "\n".join(kept) + "\n", "known_hosts was changed without consent"
    # headless fix leaves it out (journaled), the others go on
    f = cli("fix", "--dry-run", "--no-validate", "--lab-dir", lab.info["dir"], "--ssh-config",
            str(cfg), "--journal", str(tmp_path / "j.jsonl"))
    assert "Traceback" not in f.stderr, f.stderr[-3000:]
    ev = events_of(tmp_path / "j.jsonl")
    assert [e["node"] for e in ev if e["type"] == "node_left_out"] == ["node-3"]
    assert any(e["type"] == "diagnosis" for e in ev)
    assert kh.read_text() == "\n".join(kept) + "\n"
    # StrictHostKeyChecking yes: still refused; accept-new: accepted and recorded
    cfg_yes = _copy_ssh_config(lab, tmp_path, {"node-3": ["StrictHostKeyChecking yes"]},
                               known_hosts=kh)
    _p, diag = _diagnose_json(lab, cfg_yes)
    assert any(f["code"] == "HOST_KEY_UNKNOWN" and f["node"] == "node-3" for f in diag["findings"])
    cfg_new = _copy_ssh_config(lab, tmp_path, {"node-3": ["StrictHostKeyChecking accept-new"]},
                               known_hosts=kh)
    _p, diag = _diagnose_json(lab, cfg_new)
    assert not any(f["code"].startswith("HOST_KEY") for f in diag["findings"]), diag["findings"]
    assert len(kh.read_text().splitlines()) == len(kept) + 1


def test_changed_host_key_is_refused_naming_the_line(lab, tmp_path) -> None:
    d = Path(lab.info["dir"])
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
                   check=True)
    other = (tmp_path / "other.pub").read_text().split()
    lines = (d / "known_hosts").read_text().splitlines()
    node2_ip = lab.node("node-2")["ip"]
    idx = None
    for i, ln in enumerate(lines):
        names = ln.split(" ", 1)[0].split(",")
        if ("node-2" in names or node2_ip in names) and "ed25519" in ln:
            lines[i] = f"{ln.split(' ', 1)[0]} {other[0]} {other[1]}"
            idx = i + 1
    assert idx is not None
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(lines) + "\n")
    INJECTIONS.append("node-2's host key changed")
    for strict in (None, "no"):  # "no" would silently accept an UNKNOWN key, never a changed one
        cfg = _copy_ssh_config(lab, tmp_path, {"node-2": [f"StrictHostKeyChecking {strict}"]}
                               if strict else None, known_hosts=kh)
        _p, diag = _diagnose_json(lab, cfg)
        hk = [f for f in diag["findings"] if f["code"] == "HOST_KEY_CHANGED"]
        assert [f["node"] for f in hk] == ["node-2"], (strict, diag["findings"])
        said = json.dumps(hk[0])
        assert str(kh) in said and f"line {idx}" in said, said
        assert kh.read_text() == "\n".join(lines) + "\n", "known_hosts was rewritten"


# ---- a node whose facts output is garbage or cut (issue 8, point 2, end to end) --------------

# the facts loader (core.facts.loader_command: the script comes on stdin) gets MODE instead
FAKE_SH = """#!/bin/dash
case "$*" in
  *cfx_s=*) ;;
  *) exec /bin/sh "$@" ;;
esac
MODE
"""
GARBAGE = ("cat >/dev/null; printf 'Welcome to node-1!\\n\\377\\376 not facts @@CFX zz BEGIN x\\n'; "
           "head -c 1500 /dev/urandom | od -An -tx1 | head -20; exit 0")
CUT = "/bin/sh \"$@\" | head -c 2500; exit 0"


@pytest.mark.parametrize("mode", ["garbage", "cut"])
def test_facts_garbage_is_a_finding_with_the_raw_text(mode, own_lab, tmp_path) -> None:
    lab = own_lab
    d = tmp_path / "fakesh"
    d.mkdir()
    (d / "sh").write_text(FAKE_SH.replace("MODE", GARBAGE if mode == "garbage" else CUT))
    (d / "sh").chmod(0o755)
    lab.exec("node-1", f"mount --bind {d} /usr/local/sbin")
    INJECTIONS.append(f"facts output {mode} on node-1")
    rt, _journal, s = new_session(lab, tmp_path, f"facts-{mode}")
    try:
        s.connect()
        diag = s.diagnose("before")
        fu = [f for f in diag.findings if f.code == "FACTS_UNREADABLE"]
        assert [f.node for f in fu] == ["node-1"], [(f.code, f.node) for f in diag.findings]
        raw = fu[0].data.get("raw") or ""
        if mode == "garbage":
            assert "Welcome to node-1" in raw, raw[:500]
        else:
            assert raw and len(raw) <= 4096
        assert {"node-2", "node-3"} <= {n for n, f in diag.facts.items() if f is not None}
        ev = [e for e in events_of(tmp_path / f"facts-{mode}.jsonl") if e["type"] == "diagnosis"]
        assert any(f["code"] == "FACTS_UNREADABLE" for f in ev[-1]["findings"])
        if mode == "garbage":  # and through the CLI, as an admin sees it
            p = cli("diagnose", "--lab-dir", lab.info["dir"], "-q")
            assert "Traceback" not in p.stderr and p.returncode == 1, p.stderr[-2000:]
            assert "FACTS_UNREADABLE" in p.stdout or "could not be read" in p.stdout, \
                p.stdout[-2000:]
    finally:
        rt.close()
        lab.exec("node-1", "umount /usr/local/sbin", check=False)


def test_unknown_host_key_accepted_in_the_session(lab, tmp_path) -> None:
    """The wizard's path: connect says host-key-unknown with the fingerprint; nothing is written
    until accept_host_key(), which records exactly that key and connects."""
    d = Path(lab.info["dir"])
    kh = tmp_path / "known_hosts"
    node3_ip = lab.node("node-3")["ip"]
    kept = [ln for ln in (d / "known_hosts").read_text().splitlines()
            if not any(x in ("node-3", node3_ip) for x in ln.split(" ", 1)[0].split(","))]
    kh.write_text("\n".join(kept) + "\n")
    cfg = _copy_ssh_config(lab, tmp_path, known_hosts=kh)
    INJECTIONS.append("node-3's host key unknown (session accept)")
    rt, journal, s = new_session(lab, tmp_path, "accept", ssh_config=str(cfg))
    try:
        conns = {c.node: c for c in s.connect()}
        c3 = conns["node-3"]
        assert c3.state == "host-key-unknown" and "SHA256:" in (c3.host_key or ""), c3
        assert all(conns[n].state == "connected" for n in ("node-1", "node-2"))
        assert kh.read_text() == "\n".join(kept) + "\n"
        c3 = s.accept_host_key("node-3")
        assert c3.state == "connected", c3
        added = kh.read_text().splitlines()[len(kept):]
        assert len(added) == 1 and added[0].split()[1] == "ssh-ed25519", added
        notes = [e for e in journal.events if e["type"] == "note" and "accepted" in e["text"]]
        assert notes and "SHA256:" in notes[0]["text"]
    finally:
        rt.close()
