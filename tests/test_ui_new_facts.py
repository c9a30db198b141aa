"""What the engine learnt this session, shown on the REAL diagnostics screen: each node's conntrack
fill in the nodes panel (count/max and how full, "not loaded", "not read"), cluster DNS in the
status line (kube-dns's ready endpoints, its Deployments) and the DNS pods in the pods panel.

The diagnosis is the recorded lab cluster (scale_fakes.synthetic_cluster) read by the real code
(build_snapshot, parse_facts, run_checks); its nodes' conntrack facts and the cluster DNS reads
are the real types (parsers.Conntrack, core.dns.ClusterDNS) set on it, with a hostile Deployment
name: node and API values are never Rich markup.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from diag_fakes import LAB_NONCE, ReplayAPI
from scale_fakes import show_diagnosis, synthetic_cluster
from textual.widgets import Static
from ui_fakes import make_app, settle

from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.dns import ClusterDNS, DnsDeployment
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.parsers import Conntrack
from clusterfix_tui.core.shape import detect_shape
from clusterfix_tui.core.snapshot import PodInfo, build_snapshot
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.widgets.paged_table import PagedTable

MARKUP = "[red]x[/]"


def _dns_pod(node: str, ready: bool) -> PodInfo:
    return PodInfo(namespace="kube-system", name=f"coredns-7db6d8ff4d-{node[-1]}", node=node,
                   phase="Running", ready=ready, restart_count=0, waiting_reason=None,
                   waiting_message=None, last_termination_message=None,
                   last_termination_reason=None, container="coredns", pod_ip=None,
                   labels={"k8s-app": "kube-dns"})


def _diagnosis(conntrack: dict[str, Conntrack], dns: ClusterDNS) -> Diagnosis:
    rec, outputs = synthetic_cluster(3)
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    facts = {node: parse_facts(node, out, LAB_NONCE) for node, out in outputs.items()}
    facts = {node: dataclasses.replace(f, conntrack=conntrack.get(node)) for node, f in facts.items()}
    snap = dataclasses.replace(snap, dns=dns, pods=snap.pods + dns.pods)
    snap = dataclasses.replace(snap, shape=detect_shape(snap, facts))
    findings, errors = run_checks(snap, facts)
    return Diagnosis(snapshot=snap, facts=facts, findings=findings, check_errors=list(errors),
                     shape=snap.shape)


def _table_text(table: PagedTable) -> str:
    return "\n".join("".join(seg.text for seg in table.render_line(y))
                     for y in range(table.size.height))


CONNTRACK = {"node-1": Conntrack("read", count=245_000, max=262_144, buckets=65_536),
             "node-2": Conntrack("not-loaded")}  # node-3: the section not in its output


def test_conntrack_cell() -> None:
    facts = _one_node_facts()
    assert v.conntrack_cell(None) == "not read"  # no facts from the node

    def cell(ct: Conntrack | None) -> str:
        return v.conntrack_cell(dataclasses.replace(facts, conntrack=ct))

    assert cell(None) == "not read"  # the section not in the output
    assert cell(Conntrack("not-read", why="nf_conntrack_max: no value")) == "not read"
    assert cell(Conntrack("not-loaded")) == "not loaded"
    assert cell(Conntrack("read", count=10, max=0)) == "10/0"
    assert cell(Conntrack("read", count=245_000, max=262_144)) == "245,000/262,144 93%"


def test_dns_line() -> None:
    """The status line's DNS sentence, for each state the API can be in; one line of an
    80-column screen when no DNS add-on is found."""
    class D:
        def __init__(self, dns: ClusterDNS | None) -> None:
            self.snapshot = dataclasses.replace(build_snapshot(ReplayAPI(synthetic_cluster(1)[0]),
                                                               with_logs=False), dns=dns)

    assert v.dns_line(D(None)) == ("", "")  # a journal or API without the DNS reads
    line, style = v.dns_line(D(ClusterDNS(service_read=False, errors=("services: 403 Forbidden",))))
    assert line == "cluster DNS: not read (services: 403 Forbidden)" and style == "yellow"
    line, style = v.dns_line(D(ClusterDNS(service_read=True)))
    assert line.startswith("cluster DNS: none found") and len(line) <= 78 and style == "yellow"
    line, style = v.dns_line(D(ClusterDNS(service_read=True, service_found=True,
                                          endpoints_source="endpoints", ready_endpoints=("a", "b"),
                                          deployments=(DnsDeployment("kube-system", "coredns", None, 1),),
                                          deployments_read=True)))
    assert line == "cluster DNS: kube-dns has 2 ready endpoints; kube-system/coredns 1/1 ready"
    assert style == "dim"
    line, style = v.dns_line(D(ClusterDNS(service_read=True, service_found=True,
                                          endpoints_source="endpoints")))
    assert "no ready endpoints" in line and style == "bold red"


def _one_node_facts():
    _, outputs = synthetic_cluster(1)
    node, out = next(iter(outputs.items()))
    return parse_facts(node, out, LAB_NONCE)


@pytest.mark.parametrize("serving", [False, True])
async def test_conntrack_fill_dns_state_and_dns_pods_are_shown(tmp_path: Path, serving: bool) -> None:
    pods = (_dns_pod("node-1", serving), _dns_pod("node-2", False))
    dns = ClusterDNS(service_read=True, service_found=True, cluster_ips=("10.96.0.10",),
                     selector={"k8s-app": "kube-dns"}, pods=pods, endpoints_source="endpointslices",
                     ready_endpoints=(f"kube-system/{pods[0].name}",) if serving else (),
                     not_ready_endpoints=tuple(f"kube-system/{p.name}" for p in pods[int(serving):]),
                     deployments=(DnsDeployment("kube-system", MARKUP, 2, int(serving)),),
                     deployments_read=True)
    diagnosis = _diagnosis(CONNTRACK, dns)
    app, _ = make_app(tmp_path, host_key_nodes=())
    async with app.run_test(size=(140, 45)) as pilot:
        await settle(pilot)
        screen = await show_diagnosis(pilot, diagnosis)
        await pilot.pause()
        status = screen.query_one("#diag-status", Static)
        text = str(status.render())
        if serving:
            assert "cluster DNS: kube-dns has 1 ready endpoint" in text, text
        else:
            assert "cluster DNS: kube-dns has no ready endpoints, 2 not ready" in text, text
        # a Deployment's name from the API is shown as the characters it is, not read as markup
        assert f"kube-system/{MARKUP} {int(serving)}/2 ready" in text, text
        assert status.size.height == 3  # findings, shape, DNS: all three shown

        await pilot.press("2")
        await pilot.pause()
        nodes = screen.query_one("#nodes-table", PagedTable)
        assert "conntrack" in _table_text(nodes)
        rows = {str(nodes.get_row_at(i)[0]): [str(c) for c in nodes.get_row_at(i)]
                for i in range(nodes.row_count)}
        assert "245,000/262,144 93%" in rows["node-1"]
        assert "not loaded" in rows["node-2"]
        assert "not read" in rows["node-3"]

        await pilot.press("3")
        await pilot.pause()
        table = screen.query_one("#pods-table", PagedTable)
        shown = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert {f"kube-system/{p.name}" for p in pods} <= set(shown), shown
