"""Big recorded diagnoses for the wizard's scale tests and bench/bench_ui_scale.py.

`big_diagnosis(n)`: the recorded lab scenarios in tests/data/lab (the API objects of the healthy
recording and every recorded node's facts-script output), replicated and renamed node-1..node-n
(bench/bench_core.py's `synthetic_cluster`), then read by the real code: build_snapshot,
parse_facts, detect_shape, run_checks, into a real Diagnosis. ~2/3 of the nodes carry one of the
recorded faults, so the same fault on hundreds of nodes groups into one row.

`vtep_diagnosis(n, stale)`: n flannel vxlan nodes whose tables hold every peer, node `stale`'s
VTEP MAC stale on all of them (bench_core's `mesh_cluster`), checked by the real flannel check:
n-1 findings, one cause.

`diagnosis_app(diagnosis, tmp)`: the wizard (the recorded fake session of ui_fakes) showing
that diagnosis on its diagnostics screen, as after a diagnosis finished (no I/O).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from bench_core import mesh_cluster, synthetic_cluster  # noqa: E402
from diag_fakes import LAB_NONCE, ReplayAPI  # noqa: E402

from clusterfix_tui.core.checks import run_checks  # noqa: E402
from clusterfix_tui.core.checks.flannel import check as flannel_check  # noqa: E402
from clusterfix_tui.core.diagnose import Diagnosis  # noqa: E402
from clusterfix_tui.core.facts import parse_facts  # noqa: E402
from clusterfix_tui.core.shape import detect_shape  # noqa: E402
from clusterfix_tui.core.snapshot import build_snapshot  # noqa: E402


def big_diagnosis(n: int) -> Diagnosis:
    rec, outputs = synthetic_cluster(n)
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    facts = {node: parse_facts(node, out, LAB_NONCE) for node, out in outputs.items()}
    snap = dataclasses.replace(snap, shape=detect_shape(snap, facts))
    findings, errors = run_checks(snap, facts)
    return Diagnosis(snapshot=snap, facts=facts, findings=findings, check_errors=list(errors),
                     shape=snap.shape)


def vtep_diagnosis(n: int, stale: int = 2) -> Diagnosis:
    snap, facts = mesh_cluster(n, stale=stale)
    return Diagnosis(snapshot=snap, facts=facts, findings=flannel_check(snap, facts))


def diagnosis_app(diagnosis: Diagnosis, tmp_path: Path) -> Any:
    """A wizard that shows `diagnosis` once started (see `show_diagnosis`)."""
    from ui_fakes import make_app

    app, _ = make_app(tmp_path)
    return app


async def show_diagnosis(pilot: Any, diagnosis: Diagnosis) -> Any:
    """Open the diagnostics screen on `diagnosis`, as the wizard does when one arrives."""
    from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen

    app = pilot.app
    app.set_diagnosis(diagnosis)
    screen = DiagnosticsScreen()
    await app.switch_screen(screen)
    await pilot.pause()
    return screen
