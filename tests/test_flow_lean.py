"""Lean re-diagnoses between steps (#17, time to repair): a re-diagnosis made only to plan a step
leaves out the facts sections only other steps read (each check module's ONLY_FOR: the nodes'
own kubectl, read only by the kubeconfig check and the worker_kubeconfig step), and a section
left out is never read as empty or healthy:
- the facts script without the node's kubectl starts no kubectl and prints no section for it
  (not even "command not found", which the check reads as "no kubectl there");
- diagnose() leaving it out: no kubeconfig finding, but not `healthy`, the codes that read it
  in not_checked, the section named in sections_left_out;
- a step that reads it is never planned from such a diagnosis (build_plan refuses; the flow
  re-reads first); the re-diagnosis before cni_bridge leaves it out, the one before
  worker_kubeconfig, the one deciding the next pass and the "after" one read it;
- the journal's diagnosis event and a note say which re-diagnosis left what out and why;
- the wizard's flow (lean_rediagnosis off) reads everything every time;
- nothing but the declared steps reads the section (the ONLY_FOR declaration is true).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from diag_fakes import ReplayAPI, ReplayShells, load

from clusterfix_tui.core import diagnose as D
from clusterfix_tui.core import facts as F
from clusterfix_tui.core.flow import RepairFlow
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.session import RepairSession

KUBECTL = "kubectl_get_nodes"
NONCE = "leannonce0001"
_KUBECTL_SECTION = re.compile(r"^@@CFX \S+ BEGIN kubectl_get_nodes\n.*?^@@CFX \S+ END "
                              r"kubectl_get_nodes rc=\d+\n", re.M | re.S)


def test_what_only_some_steps_read():
    from clusterfix_tui.core.session import sections_only_for

    assert sections_only_for() == {KUBECTL: ("worker_kubeconfig",),
                                   "vxlan_probe": ("pods", "host_network")}


# the step of every code that folds into, or is read from, a section in ONLY_FOR (from the
# check modules: a new code or fold relation must be added here, and the test then decides)
_STEP_OF = {"WORKER_KUBECONFIG_BROKEN": "worker_kubeconfig",
            "VXLAN_UNDERLAY_BLOCKED": "host_network",
            "PROBE_NO_ROUTE": "pods"}  # checks/pods.py: Finding(code="PROBE_NO_ROUTE", step="pods")


def test_only_for_holds_every_step_a_left_out_section_can_change_the_plan_of():
    """A section may be left out for step S only if no finding S plans from depends on it: the
    codes reading it are other steps', and no symptom of theirs (which, with them not checked,
    would stand alone instead of folded) is S's."""
    from clusterfix_tui.core.checks import CLUSTER_SYMPTOM_OF, SYMPTOM_OF, sections_read
    from clusterfix_tui.core.session import sections_only_for

    folds = {**{k: set(v) for k, v in SYMPTOM_OF.items()}}
    for k, v in CLUSTER_SYMPTOM_OF.items():
        folds.setdefault(k, set()).update(v)
    for sec, steps in sections_only_for().items():
        readers = {c for c, secs in sections_read().items() if sec in secs}
        assert readers, sec
        symptoms = {x for x, roots in folds.items() if roots & readers}
        for code in readers | symptoms:
            assert code in _STEP_OF, f"{code} (reads or folds into a reader of {sec}): its step?"
            assert _STEP_OF[code] in steps, (sec, code, _STEP_OF[code])
    # and the table's PROBE_NO_ROUTE entry is what the check says
    src = (Path(__file__).parents[1] / "clusterfix_tui/core/checks/pods.py").read_text()
    i = src.index('code="PROBE_NO_ROUTE"')
    assert 'step="pods"' in src[i:src.index("data=", i)]


def _run(parts: list[tuple[str, str]], trace: bool = False) -> tuple[dict[str, F.Section], str]:
    keep = [t for label, t in parts if label in ("prelude", "files + kubectl")]
    script = "\n".join([*keep, f"printf '{F.MARK} %s DONE\\n' \"$N\""])
    r = subprocess.run(["sh", "-x", "-c", script] if trace else ["sh", "-c", script],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors, (errors, r.stderr[-500:])
    return secs, r.stderr


def test_the_script_without_the_nodes_kubectl_runs_none_and_prints_no_section():
    full, _ = _run(F.script_parts([], NONCE, node_name="node-1"))
    assert KUBECTL in full  # run (or "command not found"): a section either way
    lean, trace = _run(F.script_parts([], NONCE, skip=frozenset({KUBECTL}), node_name="node-1"),
                       trace=True)
    assert KUBECTL not in lean
    assert "kubectl get" not in trace and "command -v kubectl" not in trace
    # everything else the two parts print is still there
    assert set(full) - {KUBECTL} == set(lean)


def test_a_diagnosis_without_the_vxlan_probes_runs_none_and_checks_no_underlay():
    rec = load("underlay-blocked")
    full = D.diagnose(ReplayAPI(rec), ReplayShells(rec))
    assert "VXLAN_UNDERLAY_BLOCKED" in {f.code for f in full.findings}
    shells = ReplayShells(rec)
    lean = D.diagnose(ReplayAPI(rec), shells, leave_out_sections={"vxlan_probe": "test"})
    assert all("vxlan_probe start" not in s and "cfx_probe" not in s
               for sh in shells.opened.values() for s in sh.scripts)
    assert "VXLAN_UNDERLAY_BLOCKED" not in {f.code for f in lean.findings}
    assert not lean.healthy
    (nc,) = [g for g in lean.not_checked if "vxlan_probe" in g["why"]]
    assert nc["codes"] == ["VXLAN_UNDERLAY_BLOCKED"]


def _lean_shells(rec):
    """ReplayShells whose node leaves the kubectl section out when the script did not run it
    (as a real node does: the recorded output has it)."""

    class Shells(ReplayShells):
        def __call__(self, node, address=None):
            sh = super().__call__(node, address)
            run = sh.run

            def lean_run(command, *, timeout=60.0, on_line=None, stdin=None):
                res = run(command, timeout=timeout, on_line=on_line, stdin=stdin)
                if stdin is not None and b"kubectl_get_nodes" not in stdin:
                    from dataclasses import replace

                    res = replace(res, stdout=_KUBECTL_SECTION.sub("", res.stdout))
                return res

            sh.run = lean_run
            return sh

    return Shells(rec)


def test_a_diagnosis_without_the_nodes_kubectl_is_never_kubeconfig_healthy():
    rec = load("worker-kubeconfig")
    full = D.diagnose(ReplayAPI(rec), _lean_shells(rec))
    assert [f.code for f in full.findings] == ["WORKER_KUBECONFIG_BROKEN"]
    assert not full.sections_left_out and not full.healthy

    shells = _lean_shells(rec)
    lean = D.diagnose(ReplayAPI(rec), shells,
                      leave_out_sections={KUBECTL: "made to plan step cni_bridge"})
    assert all(KUBECTL not in s for sh in shells.opened.values() for s in sh.scripts)
    assert all(KUBECTL not in f.sections for f in lean.facts.values())
    assert all("vxlan_probe" in s for sh in shells.opened.values() for s in sh.scripts)
    assert lean.findings == []  # not checked, and said so: never "healthy"
    assert not lean.healthy and lean.to_dict()["healthy"] is False
    assert lean.sections_left_out == {KUBECTL: "made to plan step cni_bridge"}
    assert lean.to_dict()["sections_left_out"] == lean.sections_left_out
    (nc,) = [g for g in lean.not_checked if KUBECTL in g["why"]]
    assert "WORKER_KUBECONFIG_BROKEN" in nc["codes"] and "cni_bridge" in nc["why"]


class _Recording:
    """diagnose() as is, each call's leave_out_sections recorded."""

    def __init__(self, monkeypatch):
        self.calls: list[dict[str, str] | None] = []
        real = D.diagnose

        def diagnose(api, shells, *, on_progress=None, skip_nodes=(), leave_out_sections=None):
            self.calls.append(leave_out_sections)
            kw = {"leave_out_sections": leave_out_sections} if leave_out_sections else {}
            return real(api, shells, on_progress=on_progress, skip_nodes=skip_nodes, **kw)

        monkeypatch.setattr(D, "diagnose", diagnose)


def _flow(tmp_path, monkeypatch, lean=True):
    rec = load("worker-kubeconfig")
    calls = _Recording(monkeypatch)
    j = Journal(tmp_path / "j.jsonl")
    s = RepairSession(ReplayAPI(rec), _lean_shells(rec), None, j)
    return RepairFlow(s, lean_rediagnosis=lean), calls, j


def _stale(flow):
    # a change the flow knows of (what an apply that ran a command does): plans are stale
    flow.leave_out("node-1", "test: makes the last diagnosis stale")


def test_rediagnosis_for_cni_bridge_leaves_out_the_nodes_kubectl_for_worker_kubeconfig_not(
        tmp_path, monkeypatch):
    flow, calls, j = _flow(tmp_path, monkeypatch)
    flow.diagnose()
    assert calls.calls == [None]
    _stale(flow)
    flow.plan_for_approval("cni_bridge")
    assert len(calls.calls) == 2 and set(calls.calls[1] or {}) == {KUBECTL, "vxlan_probe"}
    assert "made to plan step cni_bridge" in calls.calls[1][KUBECTL]
    assert "last read by the diagnosis of pass 1 at" in calls.calls[1][KUBECTL]
    assert flow.diagnosis.sections_left_out
    # the journal says which re-diagnosis left what out, and why
    ev = [e for e in j.events if e["type"] == "diagnosis"][-1]
    assert ev["phase"] == "refresh" and KUBECTL in ev["sections_left_out"]
    assert any(e["type"] == "note" and KUBECTL in e["text"] and "cni_bridge" in e["text"]
               for e in j.events)
    # iptables reads neither: planned from the same diagnosis, nothing read again
    flow.plan_for_approval("iptables")
    assert len(calls.calls) == 2
    # nothing changed since, but pods reads the probes (its PROBE_NO_ROUTE folds into them)
    flow.plan_for_approval("pods")
    assert len(calls.calls) == 3 and set(calls.calls[2] or {}) == {KUBECTL}
    # and worker_kubeconfig reads the node's kubectl: read again
    plan = flow.plan_for_approval("worker_kubeconfig")
    assert len(calls.calls) == 4 and set(calls.calls[3] or {}) == {"vxlan_probe"}
    assert KUBECTL not in flow.diagnosis.sections_left_out
    assert not plan.nothing_to_do and {a.target for a in plan.actions} == {"node-3"}


def test_a_step_reading_a_left_out_section_is_never_planned_from_that_diagnosis(tmp_path,
                                                                                monkeypatch):
    flow, calls, _ = _flow(tmp_path, monkeypatch)
    flow.diagnose()
    _stale(flow)
    flow.plan_for_approval("iptables")
    assert flow.diagnosis.sections_left_out
    with pytest.raises(RuntimeError, match="worker_kubeconfig reads kubectl_get_nodes"):
        flow.session.build_plan("worker_kubeconfig")
    # the flow's preview (the plan screen, the next pass's decision) reads it first
    plan = flow.preview("worker_kubeconfig")
    assert calls.calls[-1] is None and not plan.nothing_to_do


def test_the_next_pass_and_the_verdict_are_decided_from_diagnoses_that_read_everything(
        tmp_path, monkeypatch):
    flow, calls, j = _flow(tmp_path, monkeypatch)
    flow.diagnose()
    _stale(flow)
    flow.plan_for_approval("host_network")
    assert KUBECTL in (calls.calls[-1] or {})
    n = len(calls.calls)
    assert "worker_kubeconfig" in flow._wanted_steps()  # node-3's kubectl still fails
    assert calls.calls[n:] == [None]
    # the "after" diagnosis (the verdict's) never re-uses a diagnosis that left a section out
    _stale(flow)
    flow.plan_for_approval("pods")
    assert flow.diagnosis.sections_left_out
    flow._changes_at_diagnosis = flow._changes  # as if nothing changed since that diagnosis
    flow._mutations = 1  # something ran in the session
    flow.session.validation_and_state = lambda on_check=None: ([], None)
    flow.validate()
    after = [e for e in j.events if e["type"] == "diagnosis"][-1]
    assert after["phase"] == "after" and "sections_left_out" not in after
    assert calls.calls[-1] is None
    assert any(f["code"] == "WORKER_KUBECONFIG_BROKEN" for f in after["findings"])


def test_the_wizards_flow_reads_everything_every_time(tmp_path, monkeypatch):
    flow, calls, _ = _flow(tmp_path, monkeypatch, lean=False)
    flow.diagnose()
    for step in ("iptables", "cni_bridge", "pods", "host_network"):
        _stale(flow)
        flow.plan_for_approval(step)
    assert calls.calls == [None] * 5


def test_headless_fix_asks_for_lean_rediagnoses():
    src = (Path(__file__).parents[1] / "clusterfix_tui/commands/fix.py").read_text()
    assert "lean_rediagnosis=True" in src


# every reader of the node's kubectl fact: the parser, the check and the step declared in
# ONLY_FOR, and what only shows or bundles facts (never decides anything from them)
_READERS = {
    "clusterfix_tui/core/facts.py",  # reads it into NodeFacts
    "clusterfix_tui/core/checks/kubeconfig.py",  # ONLY_FOR: worker_kubeconfig
    "clusterfix_tui/core/fixes/worker_kubeconfig.py",
    "clusterfix_tui/core/bundle.py",  # a support bundle's volatile sections (diagnose --bundle)
}


_PROBE_READERS = {
    "clusterfix_tui/core/facts.py",  # the probes in the script
    "clusterfix_tui/core/diagnose.py",  # which peers each node probes (or none: left out)
    "clusterfix_tui/core/checks/underlay.py",  # ONLY_FOR: pods, host_network
    "clusterfix_tui/core/checks/__init__.py",  # the folds (test above: pods)
    "clusterfix_tui/core/fixes/host_network.py",
    "clusterfix_tui/core/report/advice.py",  # what the report advises for the code
}


@pytest.mark.parametrize("pattern, allowed", [
    (r"kubectl_rc|kubectl_error|kubectl_get_nodes|KUBECTL_SECTION", _READERS),
    (r"vxlan_probe|VXLAN_UNDERLAY_BLOCKED|UnderlayBlocked", _PROBE_READERS),
])
def test_nothing_else_reads_a_section_read_only_for_some_steps(pattern, allowed):
    root = Path(__file__).parents[1]
    pat = re.compile(pattern)
    readers = {str(p.relative_to(root)) for p in (root / "clusterfix_tui").rglob("*.py")
               if pat.search(p.read_text())}
    assert readers <= allowed, readers - allowed


@pytest.mark.parametrize("module, warmed", [("clusterfix_tui.transports.kube", True),
                                            ("diag_fakes", False)])
def test_headless_fix_imports_the_api_writers_alongside_only_for_the_kube_transport(module,
                                                                                   warmed):
    """(time to repair) The generated API classes a write needs are imported in a thread while
    the diagnosis waits on the nodes; an API that is not the Kubernetes client's is left alone."""
    import sys

    code = ("import sys, threading\n"
            "from clusterfix_tui.commands.fix import _warm_api_writes\n"
            f"API = type('API', (), {{'__module__': {module!r}}})\n"
            "_warm_api_writes(API())\n"
            "for t in threading.enumerate():\n"
            "    if t.name == 'cfx-warm-api-writes': t.join()\n"
            "print('kubernetes.client.api.core_v1_api' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip() == str(warmed)
