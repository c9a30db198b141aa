"""Every fault that applies to a lab shape, all at once, found and repaired by the real CLI.

One lab per case (shape, IP family), built with `--faults all` (the catalog spreads only the faults
that apply to the shape, lab/faults.py SHAPES_OF). Then, through `python3 -m clusterfix_tui`:
`diagnose --json` finds each injected fault on the node it was injected on; `fix --dry-run` plans
(and changes nothing); `fix --yes` repairs; `validate --json` is green and the NodePort answers on
every node. On calico no flannel action is ever planned and on kube-proxy-free neither a flannel nor
a kube-proxy action, in any plan (dry-run and the real run; every command text and action id, the
rollbacks included, read back from the journals).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from lab_helpers import FAULT_FINDINGS
from test_lab_shapes import cli, wait_nodeports

from clusterfix_tui.core.journal import Journal

pytestmark = pytest.mark.lab

CASES = [("k3s", "ipv4"), ("calico", "ipv4"), ("kube-proxy-free", "ipv4"), ("kubeadm", "dual-v6-first")]


# A fault another fault on the same node hides until that one is repaired: kube-proxy-crashloop
# removes kube-proxy's live rules, so the only KUBE-SERVICES left is the stale copy in the other
# backend, which the check never calls stale (it may be what a kube-proxy without
# iptables-wrappers uses). `fix --yes` restarts kube-proxy first; its next pass finds the shadow.
HIDDEN_BY = {"iptables-shadow": {"kube-proxy-crashloop"}}

# What a flannel or a kube-proxy action looks like in a plan, whatever step plans it.
FLANNEL_WORDS = re.compile(r"flannel|subnet\.env|\bcni0\b|FLANNEL", re.I)
KUBE_PROXY_WORDS = re.compile(r"kube-proxy|kube_proxy|\bKUBE-(SERVICES|NODEPORTS|SVC|SEP|POSTROUTING|MARK|FORWARD|"
                              r"PROXY|EXTERNAL|FIREWALL|KUBELET-CANARY|PROXY-CANARY)")
FORBIDDEN = {"calico": [FLANNEL_WORDS], "kube-proxy-free": [FLANNEL_WORDS, KUBE_PROXY_WORDS],
             "k3s": [], "kubeadm": []}


@pytest.fixture(scope="module", params=CASES, ids=[f"{s}-{f}" for s, f in CASES])
def faulted_lab(request, tmp_path_factory):
    from clusterfix_tui.lab import cluster

    shape, family = request.param
    d = tmp_path_factory.mktemp(f"fixlab-{shape}-{family}") / "lab"
    handle = cluster.up(d, nodes=3, shape=shape, ip_family=family, faults="all", timeout=300)
    handle.shape, handle.family = shape, family
    try:
        yield handle
    finally:
        if (d / "lab.json").exists():
            cluster.down(d)


def _injected(lab) -> list[dict]:
    return list(lab.info.get("faults") or [])


def _plans(journal: Path) -> list[dict]:
    return [e for e in Journal.read(journal) if e["type"] == "plan"]


def _action_texts(plan: dict) -> list[tuple[str, str]]:
    """(action id, command) of every action of a journaled plan, rollbacks included."""
    out = []
    for a in plan.get("actions") or []:
        out.append((str(a.get("id")), str(a.get("command") or "") + " " + json.dumps(a.get("api") or {})))
        rb = a.get("rollback")
        if isinstance(rb, dict):
            out.append((str(rb.get("id")), str(rb.get("command") or "") + " " + json.dumps(rb.get("api") or {})))
    return out


def _forbidden_actions(shape: str, plans: list[dict]) -> list[str]:
    bad = []
    for ev in plans:
        for aid, text in _action_texts(ev["plan"]):
            for rx in FORBIDDEN[shape]:
                if rx.search(aid) or rx.search(text):
                    bad.append(f"{ev['step']}: {aid}: {text[:300]}")
    return bad


def test_faults_applied_are_the_shape_ones(faulted_lab):
    from clusterfix_tui.lab import faults as F

    names = [r["name"] for r in _injected(faulted_lab)]
    want = F.all_for(faulted_lab.shape, faulted_lab.family)
    if faulted_lab.family != "ipv4":
        assert set(F.V6_ONLY) & set(F.applicable(faulted_lab.shape)) <= set(names), names
    assert sorted(names) == sorted(want), names
    assert all(r["physical"] for r in _injected(faulted_lab) if r["name"] != "iptables-foreign-rule"), \
        [r["detail"] for r in _injected(faulted_lab) if not r["physical"]]


def _found(findings: list[dict]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for f in findings:
        found.add((f["code"], f.get("node")))
        for s in (f.get("data") or {}).get("symptoms") or []:  # folded into a root cause
            found.add((s.get("code"), s.get("node")))
    return found


def _missing(lab, found: set[tuple[str, str]], skip_hidden: bool) -> list[tuple[str, str, str]]:
    nodes = [n["name"] for n in lab.nodes]
    by_node: dict[str, set[str]] = {}
    for rec in _injected(lab):
        by_node.setdefault(rec["node"], set()).add(rec["name"])
    missing = []
    for rec in _injected(lab):
        if rec["name"] == "iptables-foreign-rule" and not rec["physical"]:
            continue  # the machine's iptables-nft accepts the rule: nothing to find (see the detail)
        if skip_hidden and HIDDEN_BY.get(rec["name"], set()) & by_node[rec["node"]]:
            continue
        code, where = FAULT_FINDINGS[rec["name"]]
        want = [rec["node"]] if where == "node" else [n for n in nodes if n != rec["node"]]
        missing += [(rec["name"], code, n) for n in want if (code, n) not in found]
    return missing


def test_diagnose_finds_each_fault_on_its_node(faulted_lab):
    r = cli("diagnose", "--lab-dir", str(faulted_lab.dir), "--json", "-q")
    out = json.loads(r.stdout)
    found = _found(out["findings"])
    assert not _missing(faulted_lab, found, skip_hidden=True), sorted(found)
    assert out["shape"]["cni"] == {"k3s": "flannel", "kubeadm": "flannel", "calico": "calico",
                                   "kube-proxy-free": "cilium"}[faulted_lab.shape], out["shape"]


def test_dry_run_plans_no_action_outside_the_shape(faulted_lab, tmp_path):
    journal = tmp_path / "dry.jsonl"
    r = cli("fix", "--dry-run", "--lab-dir", str(faulted_lab.dir), "--journal", str(journal), "--no-validate")
    assert r.returncode in (0, 1), r.stdout[-4000:] + r.stderr[-2000:]
    plans = _plans(journal)
    assert [p for p in plans if p["plan"].get("actions")], r.stdout[-4000:]
    assert _forbidden_actions(faulted_lab.shape, plans) == []


def test_fix_yes_repairs_everything_and_validates_green(faulted_lab, tmp_path):
    journal = tmp_path / "fix.jsonl"
    r = cli("fix", "--yes", "--lab-dir", str(faulted_lab.dir), "--journal", str(journal), "--wait", "90",
            timeout=600)
    plans = _plans(journal)
    assert _forbidden_actions(faulted_lab.shape, plans) == []
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    # every fault was found on its node in one of the passes (a hidden one once its mate is fixed)
    found = _found([f for p in plans for f in p["plan"].get("findings") or []])
    assert not _missing(faulted_lab, found, skip_hidden=False), sorted(found)
    v = cli("validate", "--json", "--lab-dir", str(faulted_lab.dir))
    doc = json.loads(v.stdout)
    assert v.returncode == 0 and doc["passed"], [x for x in doc["results"] if not x["passed"]]
    res = wait_nodeports(faulted_lab, timeout=30)
    assert all(x == "200" for x in res.values()), res
    after = json.loads(cli("diagnose", "--lab-dir", str(faulted_lab.dir), "--json", "-q").stdout)
    assert after["findings"] == [], [(f["code"], f.get("node"), f["title"]) for f in after["findings"]]
