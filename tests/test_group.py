"""One cause, one line (core/group.py): grouping findings that share a cause across nodes."""

from __future__ import annotations

import json

from diag_fakes import ReplayAPI, ReplayShells, load

from clusterfix_tui.core.checks.flannel import check as flannel_check
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.core.facts import NodeFacts, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.group import group_finding_dicts, group_findings, plan_entries
from clusterfix_tui.core.model import CLUSTER, Finding
from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo


def _mesh(n: int, stale: int) -> tuple[object, dict[str, NodeFacts]]:
    """n flannel vxlan nodes, every table complete, node `stale`'s VTEP stale on every peer."""
    def mac(i): return "02:00:00:%02x:%02x:01" % (i >> 8, i & 255)
    def ip(i): return f"172.16.{i >> 8}.{i & 255}"
    def cidr(i): return f"10.{i >> 8}.{i & 255}.0/24"
    nodes = {f"node-{i}": NodeInfo(
        name=f"node-{i}", internal_ip=ip(i), addresses=(), pod_cidr=cidr(i), conditions={},
        annotations={"flannel.alpha.coreos.com/backend-data": json.dumps({"VtepMAC": mac(i)}),
                     "flannel.alpha.coreos.com/public-ip": ip(i)},
        labels={}, kubelet_version=None) for i in range(1, n + 1)}

    snap = ClusterSnapshot(nodes=nodes, flannel_backend="vxlan")
    ok = Section("x", None, "", "", 0)
    facts = {}
    for i in range(1, n + 1):
        peers = [j for j in range(1, n + 1) if j != i]
        m = {j: ("02:ee:ee:ee:ee:ee" if j == stale else mac(j)) for j in peers}
        facts[f"node-{i}"] = NodeFacts(
            node=f"node-{i}", sections={"fdb_flannel": ok, "ip_route": ok}, complete=True,
            links=({"ifname": "flannel.1"},),
            fdb_flannel=tuple({"mac": m[j], "dst": ip(j)} for j in peers),
            neigh_flannel=tuple({"dst": cidr(j).split("/")[0], "lladdr": m[j]} for j in peers),
            routes=tuple({"dst": cidr(j), "gateway": cidr(j).split("/")[0], "dev": "flannel.1"}
                         for j in peers))
    return snap, facts


def test_stale_vtep_of_one_node_on_every_peer_is_one_group():
    snap, facts = _mesh(30, stale=2)
    findings = flannel_check(snap, facts)
    assert len(findings) == 29 and all(f.code == "FLANNEL_STALE_VTEP" for f in findings)
    groups = group_findings(findings)
    assert len(groups) == 1
    g = groups[0]
    assert g.count == 29 and g.grouped and "node-2" not in g.nodes
    assert g.title.startswith("stale VTEP MAC for node-2 on 29 nodes")
    assert "02:ee:ee:ee:ee:ee" in g.cause
    assert list(g.findings) == findings  # every node's finding, unchanged, in order
    d = g.to_dict()
    assert d["count"] == 29 and len(d["findings"]) == 29


def _f(code, node, title, **data):
    return Finding(code=code, severity="error", node=node, title=title, step="iptables", data=data)


def test_same_setting_everywhere_groups_and_different_causes_do_not():
    fs = [_f("FORWARD_DROP", f"node-{i}", "FORWARD policy DROP in the legacy backend drops pod "
             "traffic") for i in (1, 2, 3)]
    fs.append(_f("FORWARD_DROP", "node-4", "FORWARD policy DROP in the nft backend drops pod traffic"))
    fs.append(_f("IP_FORWARD_OFF", "node-1", "net.ipv4.ip_forward is 0 on node-1"))
    fs.append(_f("IP_FORWARD_OFF", "node-2", "net.ipv4.ip_forward is 0 on node-2"))
    fs.append(_f("API_THING", CLUSTER, "one"))
    fs.append(_f("API_THING", CLUSTER, "two"))
    gs = group_findings(fs)
    assert [(g.code, g.count) for g in gs] == [("FORWARD_DROP", 3), ("FORWARD_DROP", 1),
                                              ("IP_FORWARD_OFF", 2), ("API_THING", 1),
                                              ("API_THING", 1)]
    assert gs[0].title.endswith("(on 3 nodes)") and not gs[1].grouped
    assert gs[2].nodes == ("node-1", "node-2")
    assert sorted(id(f) for g in gs for f in g.findings) == sorted(id(f) for f in fs)
    assert [g["count"] for g in group_finding_dicts([f.to_dict() for f in fs])] == [3, 1, 2, 1, 1]


def test_vtep_findings_of_two_peers_on_one_node_stay_apart_and_plan_entries_follow():
    rec = load("flannel-stale-vtep")
    diag = diagnose(ReplayAPI(rec), ReplayShells(rec))
    vtep = [f for f in diag.findings if f.code == "FLANNEL_STALE_VTEP"]
    assert vtep, [f.code for f in diag.findings]
    groups = group_findings(diag.findings)
    assert sum(len(g.findings) for g in groups) == len(diag.findings)
    plan = get_step("cni_bridge").plan(diag)
    entries = plan_entries(plan, groups)
    ids = [i for e in entries for i in e["action_ids"]]
    assert sorted(ids) == sorted(a.id for a in plan.actions)  # nothing dropped, nothing twice
    peers = {f.data["peer_node"] for f in vtep}
    for e in entries:
        if e["group"] is not None:
            assert any(p in e["title"] for p in peers)
            assert e["count"] == len(e["nodes"]) >= 2


def test_diagnose_json_keeps_every_finding_inside_its_group():
    rec = load("flannel-stale-vtep")
    doc = diagnose(ReplayAPI(rec), ReplayShells(rec)).to_dict()
    inside = [f for g in doc["groups"] for f in g["findings"]]
    assert sorted(json.dumps(f, sort_keys=True, default=str) for f in inside) == \
        sorted(json.dumps(f, sort_keys=True, default=str) for f in doc["findings"])
    assert all(g["count"] == len(set(g["nodes"])) for g in doc["groups"])
