"""What the faultvar lab tests (tests/test_faultvar_net_lab.py, test_faultvar_link_lab.py) share:
the real CLI against a lab (diagnose, fix --yes, validate), a command on a node, the lab's roles
and a catalog fault injected that must have broken something on the wire."""

from __future__ import annotations

import json
from pathlib import Path

from test_lab_shapes import cli


def _diagnose(lab) -> list[dict]:
    r = cli("diagnose", "--lab-dir", str(lab.dir), "--json", "-q")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return json.loads(r.stdout)["findings"]


def _codes(findings: list[dict]) -> set[tuple[str, str]]:
    return {(f["code"], f["node"]) for f in findings}


def _fix(lab, journal: Path) -> str:
    r = cli("fix", "--lab-dir", str(lab.dir), "--yes", "--journal", str(journal), timeout=400)
    assert r.returncode == 0 and "verdict: fixed" in r.stdout, (r.stdout[-4000:], r.stderr[-2000:])
    return r.stdout


def _validate(lab) -> list[dict]:
    r = cli("validate", "--lab-dir", str(lab.dir), "--json")
    return [x for x in json.loads(r.stdout)["results"] if not x["passed"]]


def _sh(lab, node: str, cmd: str) -> str:
    return lab.exec(node, cmd, check=False).stdout


def _roles(lab) -> tuple[str, str, str]:
    from clusterfix_tui.lab import faults as F

    jf = F.jellyfin_node(lab)
    others = sorted(n["name"] for n in lab.nodes if n["name"] != jf)
    return jf, others[0], others[1]


def _inject(lab, name: str, node: str) -> dict:
    from clusterfix_tui.lab import faults as F

    rec = F.inject(lab, name, node)
    assert isinstance(rec, dict) and rec["physical"], rec
    return rec
