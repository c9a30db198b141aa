"""The report model: `build_report(events)`, a JSON-ready dict (schema report_schema.json)
over the one journal replay (core/record.py), redacted again and optionally anonymized."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from clusterfix_tui.core.group import group_finding_dicts, plan_dict_rows
from clusterfix_tui.core.model import STEP_ORDER
from clusterfix_tui.core.nodestate import node_changes
from clusterfix_tui.core.record import _s, replay
from clusterfix_tui.core.redact import Anonymizer, redact_obj
from clusterfix_tui.core.report.advice import _still_failing
from clusterfix_tui.core.shape import summary_lines

SCHEMA_VERSION = "1.3"  # 1.1: finding_groups; 1.2: steps[].plan.entries; 1.3: dns_line, conntrack_line


VERDICT_TEXT = {
    "healthy": "HEALTHY: nothing needed fixing",
    "fixed": "FIXED: the problems found were repaired and validation passes",
    "partially-fixed": "PARTIALLY FIXED: some problems remain",
    "still-broken": "STILL BROKEN: validation still fails",
    "aborted": "ABORTED: the session was stopped before it finished",
    "incomplete": "INCOMPLETE: node(s) or check(s) were left out of the diagnosis, so the "
                  "cluster cannot be called healthy or fixed",
    "interrupted": "INTERRUPTED: the session died before it finished (no session_end in the journal)",
    "dry-run": "DRY RUN: nothing was changed",
    "unknown": "UNKNOWN: the journal does not say how the session ended",
}


def _prepare(events: Iterable[Any], anonymize: bool) -> tuple[list[dict[str, Any]], Anonymizer | None]:
    evs = [e for e in events if isinstance(e, dict)]
    evs = [redact_obj(e) for e in evs]
    anon = None
    if anonymize:
        anon = Anonymizer()
        anon.learn_events(evs)
        evs = [anon.obj(e) for e in evs]
    return evs, anon


def build_report(
    events: Sequence[dict[str, Any]],
    anonymize: bool = False,
    *,
    journal_problems: Sequence[str] = (),
    generated_at: str | None = None,
) -> dict[str, Any]:
    """The report model (JSON-ready dict, schema core/report_schema.json) from journal events."""
    from clusterfix_tui import __version__

    evs, anon = _prepare(events, anonymize)
    problems = [_s(p) for p in journal_problems]
    if anon is not None:
        problems = [anon.text(p) for p in redact_obj(problems)]

    rec = replay(evs)
    session, cluster, left_out = rec.session, rec.cluster, rec.left_out
    findings, validation, steps = rec.findings, rec.validation, rec.steps
    notes, errors, comparison = rec.notes, rec.errors, rec.comparison
    node_summaries, after_diagnosed = rec.node_summaries, rec.after_diagnosed
    verdict, verdict_raw = rec.verdict, rec.verdict_raw
    headline = VERDICT_TEXT.get(verdict, verdict.upper()) + rec.headline_suffix
    summary, summary_data = _summary_text(rec.summary_data), rec.summary_data
    if not isinstance(summary_data, (dict, list)):
        summary_data = None

    still = _still_failing(findings, validation, steps, after_diagnosed)

    stats = dict(rec.stats)
    stats["passes"] = rec.passes
    if not rec.saw_start:
        problems.append("the journal has no session_start event: cluster and session details unknown")
    for t, n in sorted(rec.unknown_types.items()):
        problems.append(f"{n} event(s) of unknown type {t!r} ignored")

    ran = {e["step"] for e in steps}
    for e in steps:
        if isinstance(e.get("plan"), dict):
            e["plan"]["entries"] = _plan_entries(e["plan"])
    shape_ev = next((e for e in evs if e.get("type") == "diagnosis"
                     and isinstance(e.get("shape"), dict)), None)
    shape = {k: v for k, v in (shape_ev or {}).get("shape", {}).items() if k != "nodes"} \
        if shape_ev else None
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at or _now(),
        "generator": f"clusterfix-tui {__version__}",
        "anonymized": bool(anonymize),
        "verdict": {"value": verdict, "from_journal": verdict_raw, "headline": headline,
                    "summary": summary, "summary_data": summary_data},
        "diagnosed_after": after_diagnosed,
        "session": session,
        "cluster": cluster,
        "nodes_left_out": left_out,
        "node_summaries": node_summaries if isinstance(node_summaries, dict) else {},
        "findings": findings,
        # one cause, one line (core/group.py): the same findings grouped by the cause they share
        # across nodes, every node's finding kept inside its group
        "finding_groups": {"before": group_finding_dicts(findings["before"]),
                           "after": group_finding_dicts(findings["after"])},
        "steps": steps,
        "steps_not_run": [s for s in STEP_ORDER if s not in ran],
        "validation": {"before": validation["before"], "after": validation["after"],
                       "comparison": comparison},
        "still_failing": still,
        "notes": notes,
        "errors": errors,
        # every trace run in the session (issue 15): flow, verdict, where it died, hop path
        "traces": rec.traces,
        "journal_problems": problems,
        "stats": stats,
        # each touched node's state before the first change and after the last (+ rollback),
        # every difference tied to the actions that explain it (core/nodestate.py)
        "node_changes": node_changes(evs),
        # the cluster shape the first diagnosis read (core/shape.py), without per-node names
        "shape": shape,
        "shape_lines": summary_lines(shape_ev.get("shape")) if shape_ev else [],
        "not_checked": [_s(x) for x in (shape_ev or {}).get("not_checked") or []
                        if isinstance(x, str)],
        # cluster DNS as the first diagnosis read it (core/dns.py's line); null: not journaled
        "dns_line": next((_s(e["dns"]) for e in evs if e.get("type") == "diagnosis"
                          and isinstance(e.get("dns"), str)), None),
        # every node's conntrack fill in one line (the fullest first); null: not journaled
        "conntrack_line": conntrack_line(node_summaries if isinstance(node_summaries, dict) else {}),
    }


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def conntrack_line(node_summaries: dict[str, Any], shown: int = 3) -> str | None:
    """The nodes' conntrack tables in one line: the `shown` fullest (count/max and percent), the
    nodes whose drop/early_drop counters are not zero, how many have nf_conntrack not loaded and
    how many were not read. None when no node summary says anything about conntrack (a journal
    from before it was read). One pass over the nodes: a 1,000-node report stays one line."""
    read: list[tuple[int, str, int, int]] = []
    dropping: list[str] = []
    not_loaded = not_read = 0
    for node, summary in node_summaries.items():
        facts = summary.get("facts") if isinstance(summary, dict) else None
        ct = facts.get("conntrack") if isinstance(facts, dict) else None
        if not isinstance(ct, dict):
            continue
        count, most = _int(ct.get("count")), _int(ct.get("max"))
        if ct.get("state") == "not-loaded":
            not_loaded += 1
        elif ct.get("state") != "read" or count is None or most is None:
            not_read += 1
        else:
            read.append((count * 100 // most if most else 0, _s(node), count, most))
            if (_int(ct.get("drop")) or 0) + (_int(ct.get("early_drop")) or 0) > 0:
                dropping.append(_s(node))
    if not (read or not_loaded or not_read):
        return None
    parts = []
    if read:
        read.sort(key=lambda r: (-r[0], -r[2], r[1]))
        parts.append(("fullest: " if len(read) > 1 else "") + ", ".join(
            f"{n} {c:,}/{m:,} ({p}%)" for p, n, c, m in read[:shown])
            + (f" (+{len(read) - shown} more read)" if len(read) > shown else ""))
    if dropping:
        dropping.sort()
        parts.append("drop counters not zero since boot on " + ", ".join(dropping[:shown])
                     + (f" +{len(dropping) - shown}" if len(dropping) > shown else ""))
    if not_loaded:
        parts.append(f"nf_conntrack not loaded on {not_loaded} node{'s' if not_loaded != 1 else ''}")
    if not_read:
        parts.append(f"not read on {not_read} node{'s' if not_read != 1 else ''}")
    return "; ".join(parts)


def _plan_entries(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A step's plan as the reports show it (one cause, one entry: core/group.py), by action id:
    [{"title" (null: actions of no grouped cause), "count" (nodes), "rows": [{"action_ids",
    "nodes"}]}], a row holding the actions identical but for their node. Every action of the
    plan is in exactly one row; the actions themselves stay in plan["actions"]."""
    return [{"title": e["title"], "count": e["count"],
             "rows": [{"action_ids": [str(a.get("id", "")) for a in r["actions"]],
                       "nodes": list(r["nodes"])} for r in e["rows"]]}
            for e in plan_dict_rows(plan)]


def _summary_text(value: Any) -> str:
    """session_end's summary in one readable line, whether it is a string or a mapping."""
    if value is None:
        return ""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}={_summary_value(b)}" for a, b in v.items()) or "none"
            else:
                v = _summary_value(v)
            parts.append(f"{str(k).replace('_', ' ')}: {v}")
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return ", ".join(_summary_value(v) for v in value) or "none"
    return _s(value)


def _summary_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_s(x) for x in v) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return _s(v)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
