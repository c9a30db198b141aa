"""The conntrack table (CONNTRACK_TABLE_FULL): the facts section, its parse over several kernels'
/proc/net/stat/nf_conntrack and `conntrack -S`, the check's error/warning/nothing, and the
host_network plan that raises nf_conntrack_max (N's rule, the saved-value rollback, runtime only).

The lab cannot make this fault real: its nodes are network namespaces, where nf_conntrack_max is
read-only (the limit is global; only the initial namespace writes it) and the count is the
namespace's own (docs/lab-faults.md). So the class is covered here on real output shapes."""

from __future__ import annotations

import subprocess

import pytest
from conntrack_samples import (
    CONNTRACK_S_144,
    CONNTRACK_S_147,
    HEADERS,
    framed,
    full_table_output,
    grep_output,
    stat_file,
)
from diag_fakes import LAB_NONCE, ReplayAPI, load

from clusterfix_tui.core import facts as F
from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import conntrack as C
from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.fixes import conntrack as CF
from clusterfix_tui.core.fixes.host_network import STEP as HOST_STEP
from clusterfix_tui.core.snapshot import build_snapshot

N = "abc123"


def _facts(out: str, err: str = "", rc: int = 0, stats: str | None = None) -> F.NodeFacts:
    text = framed(N, "conntrack", out, err, rc)
    if stats is not None:
        text += framed(N, "conntrack_stats", stats)
    return F.parse_facts("node-1", text + f"@@CFX {N} DONE\n", N)


def _findings(out: str, err: str = "", rc: int = 0, stats: str | None = None):
    return C.check(None, {"node-1": _facts(out, err, rc, stats)})  # type: ignore[arg-type]


# -- the facts section ---------------------------------------------------------------------------

def test_the_script_reads_conntrack_with_one_grep_and_never_the_table() -> None:
    s = F.build_facts_script([], nonce=N)
    assert ("cfx_x conntrack grep grep -H . /proc/sys/net/netfilter/nf_conntrack_count "
            "/proc/sys/net/netfilter/nf_conntrack_max /proc/sys/net/netfilter/nf_conntrack_buckets "
            "/proc/net/stat/nf_conntrack /sys/devices/system/cpu/online") in s
    # `conntrack -S` only where the stat file is missing and ctnetlink is loaded already (a run
    # otherwise makes the kernel load nf_conntrack_netlink, and nf_conntrack with it)
    line = next(ln for ln in s.splitlines() if "conntrack_stats" in ln)
    assert line.startswith("if [ ! -e /proc/net/stat/nf_conntrack ] && [ -e /proc/sys/net/netfilter/"
                           "nf_conntrack_max ] && [ -d /sys/module/nf_conntrack_netlink ]")
    assert "cfx_x conntrack_stats conntrack conntrack -S" in line
    assert "/proc/net/nf_conntrack" not in s and "conntrack -L" not in s
    assert F.section_command("conntrack") is not None


@pytest.mark.parametrize("kernel", sorted(HEADERS))
def test_stat_file_of_every_kernel_is_summed_by_its_header(kernel: str) -> None:
    rows = [{"drop": 3, "early_drop": 0x1f0, "insert_failed": 1, "found": 9},
            {"drop": 0x10, "early_drop": 2}, {}, {"insert_failed": 4}]
    got = P.parse_conntrack_stat(stat_file(HEADERS[kernel], 0x3ffe1, rows))
    assert got is not None
    assert (got["drop"], got["early_drop"], got["insert_failed"], got["found"]) == (19, 0x1f2, 5, 9)
    assert got["entries"] == 0x3ffe1  # a total on every row: not summed
    assert set(got) == set(HEADERS[kernel].split())


@pytest.mark.parametrize("bad", ["", "garbage\n", HEADERS["6.x"] + "\n",
                                 HEADERS["6.x"] + "\n00000001 zz\n",
                                 HEADERS["5.x"] + "\n" + " ".join(["0000000g"] * 17) + "\n"])
def test_stat_file_of_another_shape_is_not_read(bad: str) -> None:
    assert P.parse_conntrack_stat(bad) is None


def test_conntrack_s_of_old_and_new_tools() -> None:
    old = P.parse_conntrack_s(CONNTRACK_S_144)
    new = P.parse_conntrack_s(CONNTRACK_S_147)
    assert old is not None and (old["drop"], old["early_drop"], old["insert_failed"]) == (22, 440, 4)
    assert new is not None and (new["drop"], new["early_drop"], new["insert_failed"]) == (0, 0, 2)
    assert "cpu" not in old and new["clash_resolve"] == 5
    assert P.parse_conntrack_s("conntrack v1.4.7 (conntrack-tools): Operation not permitted\n") is None


def test_parse_facts_reads_count_max_buckets_cpus_and_counters() -> None:
    out, err = grep_output(1234, 262144, 65536, stat_file(HEADERS["6.x"], 1234, [{"drop": 1}, {}]),
                           cpus="0-3,6,8-9")
    ct = _facts(out, err).conntrack
    assert ct is not None and ct.state == "read"
    assert (ct.count, ct.max, ct.buckets, ct.cpus) == (1234, 262144, 65536, 7)
    assert ct.counters["drop"] == 1 and ct.counters_source == P.CONNTRACK_STAT


def test_without_the_stat_file_the_counters_come_from_conntrack_s() -> None:
    out, err = grep_output(10, 131072, 32768, None)
    ct = _facts(out, err, 2, stats=CONNTRACK_S_144).conntrack
    assert ct is not None and ct.state == "read" and ct.counters_source == "conntrack -S"
    assert ct.counters["early_drop"] == 440
    ct = _facts(out, err, 2).conntrack  # neither: counters not read, the fill still is
    assert ct is not None and ct.state == "read" and ct.counters == {} and ct.counters_source is None


def test_no_nf_conntrack_module_is_not_loaded_not_an_error() -> None:
    out, err = grep_output(None, None, None, None)
    f = _facts(out, err, 2)
    assert f.conntrack is not None and f.conntrack.state == "not-loaded"
    assert f.unread_sections() == {} and f.parse_errors == ()
    assert C.check(None, {"node-1": f}) == []  # type: ignore[arg-type]


def test_unreadable_or_killed_is_not_read_and_gives_no_finding() -> None:
    err = (f"grep: {P.CONNTRACK_COUNT}: Permission denied\ngrep: {P.CONNTRACK_MAX}: Permission denied")
    f = _facts(f"{P.CPU_ONLINE}:0-1\n", err, 2)
    assert f.conntrack is not None and f.conntrack.state == "not-read"
    assert "nf_conntrack_count" in f.conntrack.why
    killed = _facts(f"{P.CONNTRACK_COUNT}:262144\n", F.TIMED_OUT_MARK + " 10s (killed)", 137)
    assert killed.conntrack is not None and killed.conntrack.state == "not-read"
    assert "conntrack" in killed.unread_sections()
    assert C.check(None, {"node-1": f, "node-2": killed}) == []  # type: ignore[arg-type]


# -- the check -----------------------------------------------------------------------------------

def test_full_table_is_an_error_with_its_evidence() -> None:
    rows = [{"drop": 40, "early_drop": 1200, "insert_failed": 2}, {"drop": 12}]
    (f,) = _findings(*grep_output(262100, 262144, 65536, stat_file(HEADERS["3.10-4.x"],
                                                                      262100, rows)))
    assert f.code == "CONNTRACK_TABLE_FULL" and f.severity == "error" and f.step == "host_network"
    d = f.data_as(C.ConntrackData)
    assert d.full and (d.count, d.max, d.buckets, d.cpus, d.percent) == (262100, 262144, 65536, 4, 99)
    assert d.counters == {"drop": 52, "early_drop": 1200, "insert_failed": 2}
    assert f"{P.CONNTRACK_MAX}: 262144 (99% used)" in f.evidence
    assert any("drop=52 early_drop=1200 insert_failed=2" in e for e in f.evidence)
    assert "table full, dropping packet" in f.explanation and "95%" in f.explanation


@pytest.mark.parametrize("count,full", [(124518, False), (124519, True), (131072, True), (140000, True)])
def test_the_threshold_is_95_percent_of_max(count: int, full: bool) -> None:
    got = _findings(*grep_output(count, 131072, 32768, stat_file(HEADERS["5.x"], count, [{}])))
    assert [f.severity for f in got] == (["error"] if full else [])


def test_drops_since_boot_with_room_now_is_a_warning_never_the_cause() -> None:
    rows = [{"drop": 0, "early_drop": 7}]
    (f,) = _findings(*grep_output(5000, 262144, 65536, stat_file(HEADERS["6.x"], 5000, rows)))
    assert f.severity == "warning" and f.step is None and not f.data_as(C.ConntrackData).full
    assert "since boot" in f.explanation and "not the cause" in f.explanation
    assert "1% now" in f.title or "at 1%" in f.title


def test_insert_failed_alone_or_max_zero_or_a_quiet_table_gives_nothing() -> None:
    quiet = stat_file(HEADERS["6.x"], 100, [{"insert_failed": 30, "found": 5}])
    assert _findings(*grep_output(100, 262144, 65536, quiet)) == []
    assert _findings(*grep_output(100, 0, 65536, quiet)) == []  # 0: no limit at all
    assert _findings(*grep_output(0, 262144, 262144, stat_file(HEADERS["6.x"], 0, [{}, {}]))) == []


def test_a_recorded_healthy_lab_node_with_a_full_table_gives_only_that_finding() -> None:
    rec = load("healthy")
    snap = build_snapshot(ReplayAPI(rec))
    facts = {n: F.parse_facts(n, out, LAB_NONCE) for n, out in rec["facts"].items()}
    facts["node-2"] = F.parse_facts("node-2", full_table_output(rec["facts"]["node-2"], LAB_NONCE), LAB_NONCE)
    findings, errors = run_checks(snap, facts)
    assert errors == [] and [(f.code, f.node, f.severity) for f in findings] == \
        [("CONNTRACK_TABLE_FULL", "node-2", "error")]


# -- the plan ------------------------------------------------------------------------------------

def _plan(count: int, cmax: int, cpus: str | None, rows: list[dict[str, int]] | None = None):
    out, err = grep_output(count, cmax, 65536, stat_file(HEADERS["6.x"], count, rows or [{}]), cpus=cpus)
    facts = {"node-1": _facts(out, err)}
    findings = C.check(None, facts)  # type: ignore[arg-type]
    d = Diagnosis(snapshot=None, facts=facts, findings=findings)  # type: ignore[arg-type]
    return HOST_STEP.plan(d)


def test_n_is_kube_proxys_default_or_twice_the_count() -> None:
    assert CF.target_max(131072, 8) == 262144  # 32768 x 8 = 262144 = 2 x 131072
    assert CF.target_max(65536, 16) == 524288  # kube-proxy's 32768 x 16 wins
    assert CF.target_max(65536, None) == 131072  # CPUs not read: its minimum
    assert CF.target_max(300001, 2) == 600064  # 2 x count, rounded up to 1024


def test_plan_raises_max_saving_the_old_value_and_restoring_it_exactly() -> None:
    plan = _plan(131000, 131072, "0-1")
    (a,) = plan.actions
    assert a.target == "node-1" and a.finding_codes == ("CONNTRACK_TABLE_FULL",)
    assert "sysctl -w net.netfilter.nf_conntrack_max=262144" in a.command
    # the value it replaces is read in the same command, before the write, once
    save = a.command.index("cat /proc/sys/net/netfilter/nf_conntrack_max >")
    assert save < a.command.index("sysctl -w") and "[ -e " in a.command[:save]
    assert '[ "$(cat /proc/sys/net/netfilter/nf_conntrack_max)" = 262144 ]' in a.command  # read back
    assert a.rollback is not None and 'sysctl -w "net.netfilter.nf_conntrack_max=$v"' in a.rollback.command
    assert CF.saved_path("X") in CF.restore_command("X", 262144)
    assert a.change == {"what": "net.netfilter.nf_conntrack_max", "before": "131072", "after": "262144"}
    assert "max(32768 x CPUs, 131072) = 131072 (2 CPUs)" in a.why and "2 x the current count = 262000" in a.why
    assert "kube-proxy writes nf_conntrack_max again" in a.risk and "/etc/sysctl.d" in a.risk
    assert "runtime only" in " ".join(plan.notes)
    assert a.precondition is not None and "-w /proc/sys/net/netfilter/nf_conntrack_max" in a.precondition.command


def test_the_warning_plans_nothing() -> None:
    plan = _plan(10, 262144, "0-3", [{"early_drop": 3}])
    assert plan.actions == ()


def _sh(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script, *args], capture_output=True, text=True, timeout=30)


def test_precondition_and_commands_are_valid_shell() -> None:
    a = _plan(131000, 131072, "0-1").actions[0]
    for cmd in (a.command, a.rollback.command, a.precondition.command,  # type: ignore[union-attr]
                a.rollback.precondition.command):  # type: ignore[union-attr]
        r = subprocess.run(["sh", "-n", "-c", cmd], capture_output=True, text=True)
        assert r.returncode == 0, (cmd, r.stderr)


def test_rollback_without_a_saved_value_changes_nothing(tmp_path) -> None:
    r = _sh(CF.restore_command(str(tmp_path / "none"), 262144))
    assert r.returncode == 0 and "nothing saved" in r.stdout
    bad = tmp_path / "b"
    bad.mkdir()
    (bad / "nf_conntrack_max").write_text("12; reboot\n")
    r = _sh(CF.restore_command(str(bad), 262144))
    assert r.returncode == 1 and "not a number" in r.stderr


def test_outputs_recorded_before_the_section_existed_give_no_conntrack_and_no_finding() -> None:
    rec = load("healthy")
    facts = {n: F.parse_facts(n, out, LAB_NONCE) for n, out in rec["facts"].items()}
    assert all(f.conntrack is None for f in facts.values())
    assert C.check(build_snapshot(ReplayAPI(rec)), facts) == []


def test_a_journaled_finding_plans_the_same_action() -> None:
    """A finding read back from a journal or a bundle (a plain dict) plans what the live one did."""
    from clusterfix_tui.core.model import Finding

    out, err = grep_output(131000, 131072, 65536, stat_file(HEADERS["6.x"], 131000, [{}]), cpus="0-1")
    (live,) = C.check(None, {"node-1": _facts(out, err)})  # type: ignore[arg-type]
    back = Finding(**{**live.__dict__, "data": live.data.to_dict()})  # type: ignore[union-attr]
    assert back.data_as(C.ConntrackData) == live.data

    def plan(f: Finding):
        d = Diagnosis(snapshot=None, facts={}, findings=[f])  # type: ignore[arg-type]
        return [(a.command, a.rollback.command if a.rollback else None) for a in HOST_STEP.plan(d).actions]

    assert plan(back) == plan(live) and len(plan(live)) == 1


@pytest.mark.parametrize("text", ["", "\n", ":", "x:y\n" * 3, P.CONNTRACK_MAX + ":-1\n",
                                  P.CONNTRACK_COUNT + ":12\n" + P.CONNTRACK_COUNT + ":13\n",
                                  P.CONNTRACK_STAT + ":entries\n" + P.CONNTRACK_STAT + ":\n",
                                  P.CPU_ONLINE + ":3-1\n", P.CPU_ONLINE + ":,\n"])
def test_odd_answers_never_raise_and_never_read_as_a_table(text: str) -> None:
    ct = P.parse_conntrack(text, "")
    assert ct.state == "not-read"
    assert ct.cpus is None


def test_node_state_keeps_the_limit_and_drops_the_count_and_counters() -> None:
    """Before/after a repair (core/nodestate.py) the conntrack section is the limit: the count
    and counters move on an untouched node; the raise's command explains a changed limit."""
    from clusterfix_tui.core import nodestate

    def state(count: int, cmax: int, drop: int) -> dict[str, str]:
        out, err = grep_output(count, cmax, 65536, stat_file(HEADERS["6.x"], count, [{"drop": drop}, {}]))
        return nodestate.capture(_facts(out, err))

    a, b = state(100, 131072, 0), state(120000, 131072, 9)
    assert a == b and a["conntrack"] == (f"{P.CONNTRACK_MAX}:131072\n{P.CONNTRACK_BUCKETS}:65536\n"
                                         f"{P.CPU_ONLINE}:0-3\n")
    assert state(100, 262144, 0) != a
    assert nodestate._explains("conntrack", CF.raise_command(262144, "/b"))
    assert nodestate._explains("conntrack", CF.restore_command("/b", 262144))
