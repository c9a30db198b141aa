"""The report carries what the engine learnt this session: cluster DNS as the first diagnosis read
it and every node's conntrack fill, journaled by the real session (RepairSession.journal_diagnosis)
and rendered by the real report (Markdown, HTML, JSON against its schema); a hostile Deployment
name stays text; a journal without them renders as before (no row, null)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
from diag_fakes import LAB_NONCE, ReplayAPI
from scale_fakes import synthetic_cluster
from ui_fakes import FakeSession

from clusterfix_tui.core import report
from clusterfix_tui.core.diagnose import Diagnosis
from clusterfix_tui.core.dns import ClusterDNS, DnsDeployment
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.parsers import Conntrack
from clusterfix_tui.core.report.model import conntrack_line
from clusterfix_tui.core.snapshot import build_snapshot

SCHEMA = json.loads(Path(report.__file__).with_name("report_schema.json").read_text("utf-8"))
HOSTILE = "<script>alert(1)</script>|[red]x[/]"


def _journal(tmp_path: Path, dns: ClusterDNS | None = None) -> list[dict]:
    rec, outputs = synthetic_cluster(4)
    snap = build_snapshot(ReplayAPI(rec), with_logs=False)
    cts = {"node-1": Conntrack("read", count=245_000, max=262_144, buckets=65_536,
                               counters={"drop": 12, "early_drop": 3, "insert_failed": 0}),
           "node-2": Conntrack("read", count=1_200, max=131_072, buckets=32_768,
                               counters={"drop": 0, "early_drop": 0}),
           "node-3": Conntrack("not-loaded")}  # node-4: the section not in its output
    facts = {n: dataclasses.replace(parse_facts(n, out, LAB_NONCE), conntrack=cts.get(n))
             for n, out in outputs.items()}
    dns = dns or ClusterDNS(service_read=True, service_found=True, cluster_ips=("10.96.0.10",),
                     endpoints_source="endpointslices", not_ready_endpoints=("kube-system/a",),
                     deployments=(DnsDeployment("kube-system", HOSTILE, 2, 0),),
                     deployments_read=True)
    diagnosis = Diagnosis(snapshot=dataclasses.replace(snap, dns=dns), facts=facts, findings=[])
    journal = tmp_path / "journal.jsonl"
    session = FakeSession(journal, frozen=True)
    session._start()
    session.journal_diagnosis(diagnosis, "before")
    session.journal.close() if hasattr(session.journal, "close") else None
    events, _ = report.load_journal(journal)
    return events


def test_dns_and_conntrack_reach_the_report(tmp_path: Path) -> None:
    events = _journal(tmp_path)
    model = report.build_report(events)
    jsonschema.validate(model, SCHEMA)
    assert model["dns_line"] == ("cluster DNS: kube-dns has no ready endpoints, 1 not ready: "
                                 "every lookup in the cluster fails")
    assert model["conntrack_line"] == (
        "fullest: node-1 245,000/262,144 (93%), node-2 1,200/131,072 (0%); drop counters not "
        "zero since boot on node-1; nf_conntrack not loaded on 1 node; not read on 1 node")
    assert model["node_summaries"]["node-1"]["facts"]["conntrack"] == {
        "state": "read", "count": 245_000, "max": 262_144, "buckets": 65_536,
        "drop": 12, "early_drop": 3, "insert_failed": 0}
    md = report.render(events, "md")
    assert f"| Cluster DNS | {report.md_text(model['dns_line'])} |" in md
    assert "| Conntrack | fullest: node-1 245,000/262,144 (93%)" in md
    html = report.render(events, "html")
    assert "<th>Cluster DNS</th><td>cluster DNS: kube-dns has no ready endpoints" in html
    assert "<th>Conntrack</th><td>fullest: node-1 245,000/262,144 (93%)" in html

    anon = report.build_report(events, anonymize=True)  # the node names replaced there too
    assert anon["conntrack_line"].startswith("fullest: node-a 245,000/262,144 (93%)")
    assert "node-1" not in anon["conntrack_line"]


def test_an_api_error_in_the_dns_line_stays_text(tmp_path: Path) -> None:
    """An API error (its text from the server) in the DNS line: escaped in HTML, its '|' no
    column in the Markdown table."""
    events = _journal(tmp_path, ClusterDNS(service_read=False, errors=(f"services: {HOSTILE}",)))
    model = report.build_report(events)
    assert model["dns_line"] == f"cluster DNS: not read (services: {HOSTILE})"
    html = report.render(events, "html")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = report.render(events, "md")
    row = next(ln for ln in md.splitlines() if ln.startswith("| Cluster DNS |"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 3, row  # the row's own three bars only


def test_conntrack_line_scales_and_reads_hostile_summaries() -> None:
    nodes = {f"node-{i}": {"facts": {"conntrack": {"state": "read", "count": i, "max": 1000}}}
             for i in range(1000)}
    nodes["x"] = {"facts": {"conntrack": {"state": "read", "count": "9", "max": -1}}}  # not ints
    nodes["y"] = {"facts": "garbled"}
    nodes["z"] = {"facts": {"conntrack": {"state": "read", "count": True, "max": 10}}}
    line = conntrack_line(nodes)
    assert line == ("fullest: node-999 999/1,000 (99%), node-998 998/1,000 (99%), node-997 "
                    "997/1,000 (99%) (+997 more read); not read on 2 nodes")
    assert conntrack_line({"a": {"facts": {"links": 3}}}) is None  # a journal from before
    assert conntrack_line({"a": {"facts": {"conntrack": {"state": "read", "count": 5,
                                                         "max": 0}}}}) == "a 5/0 (0%)"


def test_a_journal_without_them_renders_as_before(tmp_path: Path) -> None:
    events = [e for e in _journal(tmp_path)]
    for e in events:
        e.pop("dns", None)
        for s in (e.get("nodes") or {}).values():
            (s.get("facts") or {}).pop("conntrack", None)
    model = report.build_report(events)
    jsonschema.validate(model, SCHEMA)
    assert model["dns_line"] is None and model["conntrack_line"] is None
    md = report.render(events, "md")
    assert "| Cluster DNS |" not in md and "| Conntrack |" not in md
