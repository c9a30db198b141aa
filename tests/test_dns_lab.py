"""Cluster DNS on ONE real lab, through the real CLI (`python3 -m clusterfix_tui`) and the lab's API
emulator over the wire (no monkeypatching of the kubernetes client).

The healthy lab has the kubeadm DNS add-on (coredns Deployment, kube-dns Service and endpoints)
and no DNS finding; validation says "cluster DNS: kube-dns has 2 ready endpoints". dns-crashloop
(API-level: docs/lab-faults.md) gives DNS_NO_ENDPOINTS and one DNS_POD_NOT_RUNNING per pod;
`fix --yes` deletes exactly those pods (their Deployment recreates them) and validation passes;
the report carries the DNS line. dns-scaled-to-zero is report-only: `fix --yes` changes nothing
and validation still fails on the DNS line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faultvar_helpers import _codes, _diagnose
from lab_helpers import lab_fixture
from test_lab_shapes import cli

pytestmark = pytest.mark.lab

lab = lab_fixture(nodes=3)

DNS_CODES = {"DNS_NO_ENDPOINTS", "DNS_POD_NOT_RUNNING", "DNS_SCALED_TO_ZERO"}


def _dns_line(lab) -> dict:
    r = cli("validate", "--lab-dir", str(lab.dir), "--json")
    return next(x for x in json.loads(r.stdout)["results"] if x["name"] == "cluster-dns")


def _inject(lab, name: str) -> dict:
    rec = lab.inject(name)  # recorded in lab.json faults
    assert isinstance(rec, dict) and rec["physical"] is False, rec  # API-level, said so
    return rec


def test_healthy_lab_has_dns_and_no_dns_finding(lab) -> None:
    found = _diagnose(lab)
    assert not [f for f in found if f["code"] in DNS_CODES], found
    line = _dns_line(lab)
    assert line["passed"] and line["detail"] == "cluster DNS: kube-dns has 2 ready endpoints"
    text = cli("diagnose", "--lab-dir", str(lab.dir)).stdout
    assert "\n  cluster DNS: kube-dns has 2 ready endpoints\n" in text, text[-3000:]


def test_crashloop_found_fixed_by_deleting_the_pods_and_reported(lab, tmp_path: Path) -> None:
    _inject(lab, "dns-crashloop")
    found = _diagnose(lab)
    pods = sorted((f["data"]["pod"], f["node"]) for f in found if f["code"] == "DNS_POD_NOT_RUNNING")
    assert ("DNS_NO_ENDPOINTS", "cluster") in _codes(found)
    assert len(pods) == 2 and {n for _, n in pods} == {"node-1", "node-2"}, found
    line = _dns_line(lab)
    assert not line["passed"] and line["fix_step"] == "pods"
    assert "kube-dns has no ready endpoints, 2 not ready" in line["detail"]

    journal = tmp_path / "j.jsonl"
    r = cli("fix", "--lab-dir", str(lab.dir), "--yes", "--journal", str(journal), timeout=400)
    assert r.returncode == 0 and "verdict: fixed" in r.stdout, (r.stdout[-4000:], r.stderr[-2000:])
    events = [json.loads(x) for x in journal.read_text().splitlines()]
    ran = [e for e in events if e["type"] == "command_start"]
    assert sorted(e["command"] for e in ran) == sorted(
        f"kubectl -n kube-system delete pod {p}" for p, _ in pods)
    plan = next(e["plan"] for e in events if e["type"] == "plan" and e["step"] == "pods")
    assert all("recreated by its Deployment" in a["rollback_note"] for a in plan["actions"])
    assert _dns_line(lab)["passed"]
    assert not [f for f in _diagnose(lab) if f["code"] in DNS_CODES]

    rep = cli("report", "--journal", str(journal), "--format", "md")
    assert rep.returncode == 0, rep.stderr[-2000:]
    # the validation table: the DNS line failed before the repair and passes after it
    assert "| cluster-dns | cluster | FAIL | PASS | cluster DNS: kube-dns has 2 ready endpoints |" \
        in rep.stdout, rep.stdout
    assert "rollback: not rolled back: the pod is recreated by its Deployment kube-system/coredns" \
        in rep.stdout


def test_scaled_to_zero_is_report_only(lab, tmp_path: Path) -> None:
    _inject(lab, "dns-scaled-to-zero")
    found = _diagnose(lab)
    zero = [f for f in found if f["code"] == "DNS_SCALED_TO_ZERO"]
    assert len(zero) == 1 and zero[0]["step"] is None
    assert zero[0]["data"]["command"] == "kubectl -n kube-system scale deployment coredns --replicas=2"
    assert ("DNS_NO_ENDPOINTS", "cluster") in _codes(found)
    assert not [f for f in found if f["code"] == "DNS_POD_NOT_RUNNING"]

    journal = tmp_path / "j.jsonl"
    r = cli("fix", "--lab-dir", str(lab.dir), "--yes", "--journal", str(journal), timeout=400)
    events = [json.loads(x) for x in journal.read_text().splitlines()]
    assert not [e for e in events if e["type"] == "command_start"], r.stdout[-3000:]
    line = _dns_line(lab)
    assert not line["passed"] and "no ready endpoints" in line["detail"]
