"""The session report, rendered from journal events only (never from UI state).

A report can be produced for any journal, including one whose process was killed mid-step: a
`command_start` without its `command_end` is shown as INTERRUPTED. `build_report(events)` is the
JSON model (schema: core/report_schema.json, docs/report-schema.md); `render(events, fmt)` turns
it into Markdown, self-contained HTML, JSON or JUnit XML. Every event passes through
core.redact.redact_obj first (again: the journal already redacted it, this is the second wall),
and `anonymize=True` replaces node names, IPs and cluster names with stable placeholders.

Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from typing import Any

from clusterfix_tui.core.model import SEVERITY_ORDER, STEP_ORDER
from clusterfix_tui.core.redact import Anonymizer, redact_obj

SCHEMA_VERSION = "1.0"
FORMATS: tuple[str, ...] = ("md", "html", "json", "junit")
_EXTENSIONS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json",
               ".xml": "junit", ".junit": "junit"}

# output folding in md / html (the JSON keeps everything)
FOLD_HEAD = 12
FOLD_TAIL = 12
FOLD_MAX_LINE = 400

VERDICT_TEXT = {
    "healthy": "HEALTHY: nothing needed fixing",
    "fixed": "FIXED: the problems found were repaired and validation passes",
    "partially-fixed": "PARTIALLY FIXED: some problems remain",
    "still-broken": "STILL BROKEN: validation still fails",
    "aborted": "ABORTED: the session was stopped before it finished",
    "incomplete": "INCOMPLETE: node(s) were not diagnosed, so the cluster cannot be called "
                  "healthy or fixed",
    "interrupted": "INTERRUPTED: the session died before it finished (no session_end in the journal)",
    "dry-run": "DRY RUN: nothing was changed",
    "unknown": "UNKNOWN: the journal does not say how the session ended",
}

from clusterfix_tui.core.record import STEP_TITLES  # noqa: E402,F401

# The runbook's own advice (shared/seed/fix_cluster_communication.md), keyed by step.
_STEP_ADVICE = {
    "iptables": [
        "Run the iptables step: `clusterfix-tui fix --step iptables`.",
        "If kube-proxy still cannot program rules, restore the earlier iptables alternative "
        "(`clusterfix-tui rollback --journal JOURNAL --step iptables`) and check which backend "
        "kube-proxy uses.",
    ],
    "cni_bridge": [
        "Run the CNI bridge step: `clusterfix-tui fix --step cni_bridge`.",
        "If route corruption persists: remove the stale flannel.1 interface and restart flannel on "
        "the node, or reboot the node (risk: pods on that node lose networking meanwhile).",
    ],
    "pods": [
        "Restart the DaemonSet: `kubectl -n kube-system rollout restart daemonset kube-flannel-ds` "
        "(or kube-proxy); risk: a short loss of pod networking on every node.",
        "Temporary workaround only: switch the readiness/startup probe to an exec check on "
        "127.0.0.1 so kubelet marks the pod Ready. It hides the network problem; revert it once "
        "validation passes.",
    ],
    "worker_kubeconfig": [
        "Run the worker kubeconfig step: `clusterfix-tui fix --step worker_kubeconfig`.",
    ],
    "host_network": [
        "Run the host networking step: `clusterfix-tui fix --step host_network`.",
    ],
}
_PORT_FORWARD = (
    "Temporary access while node networking is broken: `kubectl port-forward pod/<pod-name> "
    "8096:8096` reaches a pod directly."
)
_REBOOT = "Last resort: reboot the affected node(s) (running pods restart)."


# ---------------------------------------------------------------------------------------------
# the model


from clusterfix_tui.core.record import (  # noqa: E402 - the one journal replay
    _s,
    replay,
)


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
        "steps": steps,
        "steps_not_run": [s for s in STEP_ORDER if s not in ran],
        "validation": {"before": validation["before"], "after": validation["after"],
                       "comparison": comparison},
        "still_failing": still,
        "notes": notes,
        "errors": errors,
        "journal_problems": problems,
        "stats": stats,
    }


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


def _advice(step: str | None, name: str = "", detail: str = "") -> list[str]:
    out = list(_STEP_ADVICE.get(step or "", []))
    low = f"{name} {detail}".lower()
    if any(k in low for k in ("nodeport", "pod-to-pod", "service", "no route")):
        out.append(_PORT_FORWARD)
    if "no route to host" in low and not any("exec check" in a for a in out):
        out.append(_STEP_ADVICE["pods"][1])
    if "ready" in low and "node" in low:
        out.append(_REBOOT)
    if not out:
        out.append("Re-run `clusterfix-tui diagnose` and read the evidence; " + _REBOOT[0].lower()
                   + _REBOOT[1:])
    return out


def _still_failing(
    findings: dict[str, list[dict[str, Any]]],
    validation: dict[str, list[dict[str, Any]] | None],
    steps: list[dict[str, Any]],
    after_diagnosed: bool,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    last_val = validation["after"] if validation["after"] is not None else validation["before"]
    for r in last_val or ():
        if not r["passed"]:
            out.append({"kind": "check", "what": r["name"], "target": r["target"],
                        "detail": r["detail"], "fix_step": r["fix_step"],
                        "next_actions": _advice(r["fix_step"], r["name"], r["detail"])})
    if after_diagnosed:
        remaining = findings["after"]
    elif validation["after"] is None:
        # no second diagnosis: a finding stands unless its step changed something
        changed = {e["step"] for e in steps if e["status"] == "changed" and e["kind"] == "repair"}
        remaining = [f for f in findings["before"] if f["step"] not in changed]
    else:
        remaining = []
    for f in sorted(remaining, key=lambda f: SEVERITY_ORDER.get(f["severity"], 9)):
        if f["severity"] == "info":
            continue
        out.append({"kind": "finding", "what": f["code"], "target": f["node"],
                    "detail": f["title"], "fix_step": f["step"],
                    "next_actions": _advice(f["step"], f["code"], f["title"])})
    for e in steps:
        if e["status"] in ("failed", "partial", "interrupted"):
            out.append({"kind": "step", "what": e["step"], "target": "",
                        "detail": f"step {e['status']}",
                        "fix_step": e["step"],
                        "next_actions": [_step_failed_advice(e)]})
    return out


def _step_failed_advice(e: dict[str, Any]) -> str:
    rb = f"`clusterfix-tui rollback --journal JOURNAL --step {e['step']}`"
    if e["status"] == "interrupted":
        return ("Check the node(s) of the INTERRUPTED command by hand (it may or may not have "
                f"completed), then roll back what ran with {rb} or re-run the step.")
    return (f"Read the failed command's output above; roll back what ran with {rb} or re-run "
            "the step once the cause is fixed.")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# shared text helpers

_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """Control characters (ANSI escapes included) made visible: a report never drives a terminal."""
    return _CTRL.sub(lambda m: "\\x%02x" % ord(m.group(0)), text)


def _oneline(text: Any) -> str:
    s = _s(text).replace("\r\n", "\n").replace("\n", "\\n").replace("\t", " ")
    return _visible(s)


def fold(text: str, head: int = FOLD_HEAD, tail: int = FOLD_TAIL,
         max_line: int = FOLD_MAX_LINE) -> tuple[str, int]:
    """(folded text, number of lines hidden). Long lines are cut too."""
    lines = _visible(text.replace("\r\n", "\n")).rstrip("\n").split("\n")
    cut = []
    for ln in lines:
        if len(ln) > max_line:
            ln = ln[:max_line] + f" [... {len(ln) - max_line} more characters]"
        cut.append(ln)
    if len(cut) <= head + tail + 1:
        return "\n".join(cut), 0
    hidden = len(cut) - head - tail
    mid = f"[... {hidden} lines folded: the full output is in the JSON report ...]"
    return "\n".join(cut[:head] + [mid] + cut[-tail:]), hidden


def _dur(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def _exit(c: dict[str, Any]) -> str:
    if c["state"] == "interrupted":
        return "INTERRUPTED (no end recorded)"
    if c["timed_out"]:
        return "timed out"
    if c["exit_code"] is None:
        return "no exit code" + (f": {c['error']}" if c["error"] else "")
    return f"exit {c['exit_code']}"


def _yesno(v: bool | None) -> str:
    return "-" if v is None else ("PASS" if v else "FAIL")


def _mode(session: dict[str, Any]) -> str:
    mode = session["mode"] or "unknown"
    return mode + (", dry-run" if session["dry_run"] else "")


def _value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def md_text(text: Any) -> str:
    """Inline prose: one line, Markdown/HTML metacharacters escaped (raw HTML never passes)."""
    return _MD_SPECIAL.sub(r"\\\1", _oneline(text))


def md_code(text: Any, table: bool = False) -> str:
    """An inline code span that holds any value (backticks included), on one line. In a GFM
    table cell a pipe must be escaped even inside a code span."""
    s = _oneline(text)
    if table:
        s = s.replace("|", "\\|")
    if not s:
        return "` `"
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or run else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_block(text: str, lang: str = "") -> str:
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, run + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _md_cell(text: Any) -> str:
    return md_text(text) or " "


def render_markdown(report: dict[str, Any]) -> str:
    r = report
    L: list[str] = []
    s, cl, v = r["session"], r["cluster"], r["verdict"]
    L.append("# clusterfix-tui session report")
    L.append("")
    L.append(f"**Verdict: {md_text(v['headline'])}**")
    if v["summary"]:
        L.append("")
        L.append(f"> {md_text(v['summary'])}")
    st = r["stats"]
    L.append("")
    L.append(
        f"{st['commands']} command(s): {st['ok']} ok, {st['failed']} failed, "
        f"{st['interrupted']} interrupted, {st['dry_run']} dry-run, {st['rollbacks']} rollback; "
        f"{st['findings_before']} finding(s) before, {len(r['still_failing'])} item(s) still failing; "
        f"{_passes_text(st)}."
    )
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| Cluster | context {md_code(cl['context'] or '?', True)}, API server "
             f"{md_code(cl['server'] or '?', True)} |")
    L.append(f"| Kubernetes | {_md_cell(cl['version'] or '?')}, "
             f"{cl['node_count'] if cl['node_count'] is not None else '?'} node(s) |")
    if cl.get("local_node"):
        L.append(f"| Local node | {md_code(cl['local_node'], True)} (the tool ran on it: read and "
                 f"repaired without SSH) |")
    L.append(f"| Run by | {md_code(s['user'] or '?', True)} on {md_code(s['host'] or '?', True)} |")
    L.append(f"| When | {_md_cell(s['started_at'] or '?')} to "
             f"{_md_cell(s['ended_at'] or 'no end recorded')} |")
    L.append(f"| Tool | clusterfix-tui {_md_cell(s['tool_version'] or '?')} |")
    L.append(f"| Mode | {_md_cell(_mode(s))} |")
    L.append(f"| Session | {md_code(s['session_id'] or '?', True)} |")
    if r["anonymized"]:
        L.append("| Anonymized | node names, IPs and cluster names replaced by placeholders |")
    for p in r["journal_problems"]:
        L.append("")
        L.append(f"> **Journal problem:** {md_text(p)}")

    L.append("")
    L.append("## Nodes left out")
    L.append("")
    if r["nodes_left_out"]:
        for n in r["nodes_left_out"]:
            L.append(f"- {md_code(n['node'])}: {md_text(n['reason'])}")
    else:
        L.append("None: every node took part.")

    L.append("")
    L.append(f"## Findings before repair ({len(r['findings']['before'])})")
    L.append("")
    _md_findings(L, r["findings"]["before"])

    L.append("")
    L.append("## Repair steps")
    for i, e in enumerate(r["steps"], 1):
        _md_step(L, i, e)
    if r["steps_not_run"]:
        L.append("")
        L.append("Not part of this session: " + ", ".join(md_code(x) for x in r["steps_not_run"]))

    L.append("")
    L.append("## Validation: before and after")
    L.append("")
    comp = r["validation"]["comparison"]
    if comp:
        L.append("| Check | Target | Before | After | Detail |")
        L.append("|---|---|---|---|---|")
        for row in comp:
            detail = row["detail_after"] if row["after"] is not None else row["detail_before"]
            L.append(f"| {_md_cell(row['name'])} | {_md_cell(row['target'])} | "
                     f"{_yesno(row['before'])} | {_yesno(row['after'])} | {_md_cell(detail)} |")
    else:
        L.append("No validation was recorded.")
    if r["diagnosed_after"]:
        L.append("")
        L.append(f"### Findings after repair ({len(r['findings']['after'])})")
        L.append("")
        _md_findings(L, r["findings"]["after"])

    L.append("")
    L.append("## What still fails")
    L.append("")
    if r["still_failing"]:
        for item in r["still_failing"]:
            tgt = f" on {md_code(item['target'])}" if item["target"] else ""
            L.append(f"- **{md_text(item['what'])}**{tgt}: {md_text(item['detail'])}")
            for a in item["next_actions"]:
                L.append(f"  - Next: {_md_advice(a)}")
    else:
        L.append("Nothing: every recorded check passes.")

    if r["notes"] or r["errors"]:
        L.append("")
        L.append("## Notes and errors")
        L.append("")
        for n in r["errors"]:
            where = f" ({md_text(n['where'])})" if n["where"] else ""
            L.append(f"- **ERROR**{where}: {md_text(n['message'])}")
        for n in r["notes"]:
            L.append(f"- {md_text(n['text'])}")
    L.append("")
    L.append(f"---\nGenerated by {md_text(r['generator'])} at {md_text(r['generated_at'])}, "
             f"report schema {r['schema_version']}.")
    return "\n".join(L) + "\n"


def _md_advice(text: str) -> str:
    """Advice is our own text with `code` spans: escape everything outside the spans."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1 else md_text(p)
                   for p in parts)


def _md_findings(L: list[str], findings: list[dict[str, Any]]) -> None:
    if not findings:
        L.append("No findings.")
        return
    for f in sorted(findings, key=lambda f: SEVERITY_ORDER.get(f["severity"], 9)):
        step = f" (step {md_code(f['step'])})" if f["step"] else ""
        L.append(f"- **{md_text(f['severity'].upper())}** {md_code(f['code'])} on "
                 f"{md_code(f['node'])}: {md_text(f['title'])}{step}")
        if f["explanation"]:
            L.append(f"  {md_text(f['explanation'])}")
        if f["evidence"]:
            L.append("")
            for ln in md_block(fold("\n".join(f["evidence"]))[0]).split("\n"):
                L.append("  " + ln)
            L.append("")


def _pass_of(e: dict[str, Any]) -> str:
    return f" (pass {e['pass_no']})" if e.get("pass_no", 1) > 1 else ""


def _passes_text(st: dict[str, Any]) -> str:
    n = st.get("passes", 0)
    return f"{n} repair pass{'es' if n != 1 else ''}" + (
        f", {st['already_done']} action(s) already done" if st.get("already_done") else "") + (
        f", {st['precheck_skipped']} skipped by their precondition"
        if st.get("precheck_skipped") else "")


def _not_run(e: dict[str, Any]) -> list[dict[str, Any]]:
    """Actions the engine did not run for a reason worth reading (already done, state changed)."""
    return [a for a in e.get("action_results") or ()
            if a["status"] in ("already-done", "skipped") and a["detail"]
            and a["detail"] != "not approved"]


def _md_step(L: list[str], i: int, e: dict[str, Any]) -> None:
    status = e["status"].upper()
    kind = " (rollback)" if e["kind"] == "rollback" else ""
    L.append("")
    L.append(f"### {i}. {md_text(e['step'])}{kind}{_pass_of(e)}: {status}")
    L.append("")
    L.append(f"_{md_text(e['title'])}_")
    if e["interrupted"]:
        L.append("")
        L.append("> **INTERRUPTED:** this step started and the session ended before it finished; "
                 "a command marked INTERRUPTED may or may not have completed on its node.")
    d = e["decision"]
    L.append("")
    if d:
        by = f" by {md_text(d['by'])}" if d["by"] else ""
        ids = f" ({len(d['action_ids'])} action(s))" if d["action_ids"] else ""
        L.append(f"Decision: **{md_text(d['decision'])}**{by}{ids}")
    else:
        L.append("Decision: none recorded")
    if e["outcome_message"]:
        L.append(f"Outcome: {md_text(e['outcome_message'])}")
    if e["rollback_status"]:
        L.append(f"Rolled back later: **{md_text(e['rollback_status'])}**")
    for a in _not_run(e):
        L.append(f"- `{md_text(a['action_id'])}` {md_text(a['status'])}: {md_text(a['detail'])}")
    p = e["plan"]
    if p:
        L.append("")
        L.append("Plan as shown:")
        L.append("")
        if not p["actions"]:
            L.append("- nothing to do")
        ran = {c["action_id"] for c in e["commands"] if not c["rollback"]}
        for a in p["actions"]:
            opt = " (opt-in)" if a["opt_in"] else ""
            shown = ("ran, see Commands below" if a["id"] in ran
                     else md_code(a["command"]) + " (not run)" if d else md_code(a["command"]))
            L.append(f"- {md_code(a['id'])} on {md_code(a['target'])}{opt}: {shown}")
            if a["why"]:
                L.append(f"  - why: {md_text(a['why'])}")
            if a["risk"]:
                L.append(f"  - risk: {md_text(a['risk'])}")
            if a["rollback_command"]:
                L.append(f"  - rollback: {md_code(a['rollback_command'])}")
            elif a["rollback_note"]:
                L.append(f"  - rollback: {md_text(a['rollback_note'])}")
        for n in p["notes"]:
            L.append(f"- note: {md_text(n)}")
    if e["commands"]:
        L.append("")
        L.append("Commands:")
        for c in e["commands"]:
            L.append("")
            tag = " [rollback]" if c["rollback"] else ""
            tag += " [dry-run]" if c["dry_run"] else ""
            mark = "**INTERRUPTED**" if c["state"] == "interrupted" else md_text(_exit(c))
            L.append(f"- {md_code(c['node'])}{tag}: {mark}, {_dur(c['duration'])}, "
                     f"{md_code(c['action_id'])}")
            body = "$ " + _visible(c["command"])
            for stream in ("stdout", "stderr"):
                if c[stream]:
                    text, hidden = fold(c[stream])
                    body += ("\n" if stream == "stdout" else "\n[stderr]\n") + text
            if c["error"]:
                body += "\n[error] " + _oneline(c["error"])
            for ln in md_block(body, "console").split("\n"):
                L.append("  " + ln)
    if e["changes"]:
        L.append("")
        L.append("Changes:")
        L.append("")
        L.append("| Node | What | Before | After |")
        L.append("|---|---|---|---|")
        for ch in e["changes"]:
            L.append(f"| {_md_cell(ch['node'])} | {_md_cell(ch['what'])} | "
                     f"{_md_cell(_value(ch['before']))} | {_md_cell(_value(ch['after']))} |")


# ---------------------------------------------------------------------------------------------
# HTML (one file: inline CSS, no script, nothing fetched)

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:70em;padding:0 1em;color:#1b1b1b;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
h3{margin-bottom:.3em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
pre{background:#f6f8fa;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;
word-break:break-all}
.verdict{font-size:1.25em;font-weight:bold;padding:.5em .8em;border-radius:4px;border:2px solid}
.v-healthy,.v-fixed{background:#e6f4ea;border-color:#2e7d32}
.v-partially-fixed,.v-dry-run,.v-unknown{background:#fff8e1;border-color:#f9a825}
.v-still-broken,.v-aborted,.v-interrupted{background:#fdecea;border-color:#c62828}
.pass{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.interrupted{background:#fdecea;border-left:4px solid #c62828;padding:.3em .6em}
.muted{color:#666}.step{page-break-inside:avoid}
@media print{body{margin:0;max-width:none}pre{border:0;font-size:.8em}}
"""


def _h(value: Any) -> str:
    return html.escape(_visible(_s(value)), quote=True)


def render_html(report: dict[str, Any]) -> str:
    r = report
    s, cl, v = r["session"], r["cluster"], r["verdict"]
    o: list[str] = []
    w = o.append
    w("<!DOCTYPE html>")
    w('<html lang="en"><head><meta charset="utf-8">')
    w(f"<title>clusterfix-tui report: {_h(cl['context'] or 'cluster')}</title>")
    w(f"<style>{_CSS}</style></head><body>")
    w("<h1>clusterfix-tui session report</h1>")
    vclass = re.sub(r"[^a-z-]", "", v["value"]) or "unknown"
    w(f'<p class="verdict v-{vclass}">Verdict: {_h(v["headline"])}</p>')
    if v["summary"]:
        w(f"<p>{_h(v['summary'])}</p>")
    st = r["stats"]
    w(f"<p>{st['commands']} command(s): {st['ok']} ok, {st['failed']} failed, "
      f"{st['interrupted']} interrupted, {st['dry_run']} dry-run, {st['rollbacks']} rollback; "
      f"{st['findings_before']} finding(s) before, {len(r['still_failing'])} item(s) still failing; "
      f"{_h(_passes_text(st))}.</p>")
    w("<table>")
    rows = [
        ("Cluster context", cl["context"] or "?"), ("API server", cl["server"] or "?"),
        ("Kubernetes", cl["version"] or "?"),
        ("Nodes", cl["node_count"] if cl["node_count"] is not None else "?"),
        *([("Local node", f"{cl['local_node']} (the tool ran on it: read and repaired "
                          "without SSH)")] if cl.get("local_node") else []),
        ("Run by", f"{s['user'] or '?'} on {s['host'] or '?'}"),
        ("When", f"{s['started_at'] or '?'} to {s['ended_at'] or 'no end recorded'}"),
        ("Tool", f"clusterfix-tui {s['tool_version'] or '?'}"), ("Mode", _mode(s)),
        ("Session", s["session_id"] or "?"),
    ]
    if r["anonymized"]:
        rows.append(("Anonymized", "node names, IPs and cluster names replaced by placeholders"))
    for k, val in rows:
        w(f"<tr><th>{_h(k)}</th><td>{_h(val)}</td></tr>")
    w("</table>")
    for p in r["journal_problems"]:
        w(f'<p class="interrupted">Journal problem: {_h(p)}</p>')

    w("<h2>Nodes left out</h2>")
    if r["nodes_left_out"]:
        w("<ul>" + "".join(f"<li><code>{_h(n['node'])}</code>: {_h(n['reason'])}</li>"
                           for n in r["nodes_left_out"]) + "</ul>")
    else:
        w("<p>None: every node took part.</p>")

    w(f"<h2>Findings before repair ({len(r['findings']['before'])})</h2>")
    _html_findings(w, r["findings"]["before"])

    w("<h2>Repair steps</h2>")
    for i, e in enumerate(r["steps"], 1):
        _html_step(w, i, e)
    if r["steps_not_run"]:
        w("<p class=\"muted\">Not part of this session: "
          + ", ".join(f"<code>{_h(x)}</code>" for x in r["steps_not_run"]) + "</p>")

    w("<h2>Validation: before and after</h2>")
    comp = r["validation"]["comparison"]
    if comp:
        w("<table><tr><th>Check</th><th>Target</th><th>Before</th><th>After</th>"
          "<th>Detail before</th><th>Detail after</th></tr>")
        for row in comp:
            w("<tr>" + f"<td>{_h(row['name'])}</td><td>{_h(row['target'])}</td>"
              + _html_pass(row["before"]) + _html_pass(row["after"])
              + f"<td>{_h(row['detail_before'])}</td><td>{_h(row['detail_after'])}</td></tr>")
        w("</table>")
    else:
        w("<p>No validation was recorded.</p>")
    if r["diagnosed_after"]:
        w(f"<h3>Findings after repair ({len(r['findings']['after'])})</h3>")
        _html_findings(w, r["findings"]["after"])

    w("<h2>What still fails</h2>")
    if r["still_failing"]:
        w("<ul>")
        for item in r["still_failing"]:
            tgt = f" on <code>{_h(item['target'])}</code>" if item["target"] else ""
            w(f"<li><b>{_h(item['what'])}</b>{tgt}: {_h(item['detail'])}<ul>"
              + "".join(f"<li>Next: {_h(a)}</li>" for a in item["next_actions"]) + "</ul></li>")
        w("</ul>")
    else:
        w("<p>Nothing: every recorded check passes.</p>")
    if r["notes"] or r["errors"]:
        w("<h2>Notes and errors</h2><ul>")
        for n in r["errors"]:
            where = f" ({_h(n['where'])})" if n["where"] else ""
            w(f"<li><b class=\"fail\">ERROR</b>{where}: {_h(n['message'])}</li>")
        for n in r["notes"]:
            w(f"<li>{_h(n['text'])}</li>")
        w("</ul>")
    w(f"<p class=\"muted\">Generated by {_h(r['generator'])} at {_h(r['generated_at'])}, "
      f"report schema {_h(r['schema_version'])}.</p>")
    w("</body></html>")
    return "\n".join(o) + "\n"


def _html_pass(v: bool | None) -> str:
    if v is None:
        return '<td class="muted">-</td>'
    return '<td class="pass">PASS</td>' if v else '<td class="fail">FAIL</td>'


def _html_findings(w: Any, findings: list[dict[str, Any]]) -> None:
    if not findings:
        w("<p>No findings.</p>")
        return
    w("<ul>")
    for f in sorted(findings, key=lambda f: SEVERITY_ORDER.get(f["severity"], 9)):
        step = f" (step <code>{_h(f['step'])}</code>)" if f["step"] else ""
        w(f"<li><b>{_h(f['severity'].upper())}</b> <code>{_h(f['code'])}</code> on "
          f"<code>{_h(f['node'])}</code>: {_h(f['title'])}{step}")
        if f["explanation"]:
            w(f"<br>{_h(f['explanation'])}")
        if f["evidence"]:
            w(f"<pre>{_h(fold(chr(10).join(f['evidence']))[0])}</pre>")
        w("</li>")
    w("</ul>")


def _html_step(w: Any, i: int, e: dict[str, Any]) -> None:
    kind = " (rollback)" if e["kind"] == "rollback" else ""
    w(f'<div class="step"><h3>{i}. {_h(e["step"])}{kind}{_h(_pass_of(e))}: '
      f'{_h(e["status"].upper())}</h3>')
    for a in _not_run(e):
        w(f"<p>{_h(a['action_id'])} {_h(a['status'])}: {_h(a['detail'])}</p>")
    w(f"<p class=\"muted\">{_h(e['title'])}</p>")
    if e["interrupted"]:
        w('<p class="interrupted"><b>INTERRUPTED:</b> this step started and the session ended '
          "before it finished; a command marked INTERRUPTED may or may not have completed on its "
          "node.</p>")
    d = e["decision"]
    if d:
        by = f" by {_h(d['by'])}" if d["by"] else ""
        w(f"<p>Decision: <b>{_h(d['decision'])}</b>{by} ({len(d['action_ids'])} action(s))</p>")
    else:
        w("<p>Decision: none recorded</p>")
    if e["outcome_message"]:
        w(f"<p>Outcome: {_h(e['outcome_message'])}</p>")
    if e["rollback_status"]:
        w(f"<p>Rolled back later: <b>{_h(e['rollback_status'])}</b></p>")
    p = e["plan"]
    if p:
        w("<p>Plan as shown:</p><table><tr><th>Action</th><th>Node</th><th>Command</th>"
          "<th>Why / risk</th><th>Rollback</th></tr>")
        for a in p["actions"]:
            rb = (f"<code>{_h(a['rollback_command'])}</code>" if a["rollback_command"]
                  else _h(a["rollback_note"]))
            why = _h(a["why"]) + (f"<br><i>risk:</i> {_h(a['risk'])}" if a["risk"] else "")
            opt = " (opt-in)" if a["opt_in"] else ""
            w(f"<tr><td><code>{_h(a['id'])}</code>{opt}</td><td><code>{_h(a['target'])}</code></td>"
              f"<td><code>{_h(a['command'])}</code></td><td>{why}</td><td>{rb}</td></tr>")
        if not p["actions"]:
            w('<tr><td colspan="5">nothing to do</td></tr>')
        w("</table>")
        if p["notes"]:
            w("<ul>" + "".join(f"<li>note: {_h(n)}</li>" for n in p["notes"]) + "</ul>")
    if e["commands"]:
        w("<p>Commands:</p>")
        for c in e["commands"]:
            tag = " [rollback]" if c["rollback"] else ""
            tag += " [dry-run]" if c["dry_run"] else ""
            cls = ' class="interrupted"' if c["state"] == "interrupted" else ""
            status = "<b>INTERRUPTED</b>" if c["state"] == "interrupted" else _h(_exit(c))
            w(f"<p{cls}><code>{_h(c['node'])}</code>{_h(tag)}: {status}, {_dur(c['duration'])}, "
              f"<code>{_h(c['action_id'])}</code></p>")
            body = "$ " + c["command"]
            for stream in ("stdout", "stderr"):
                if c[stream]:
                    body += ("\n" if stream == "stdout" else "\n[stderr]\n") + fold(c[stream])[0]
            if c["error"]:
                body += "\n[error] " + c["error"]
            w(f"<pre>{_h(body)}</pre>")
    if e["changes"]:
        w("<p>Changes:</p><table><tr><th>Node</th><th>What</th><th>Before</th><th>After</th></tr>")
        for ch in e["changes"]:
            w(f"<tr><td>{_h(ch['node'])}</td><td>{_h(ch['what'])}</td>"
              f"<td><code>{_h(_value(ch['before']))}</code></td>"
              f"<td><code>{_h(_value(ch['after']))}</code></td></tr>")
        w("</table>")
    w("</div>")


# ---------------------------------------------------------------------------------------------
# JUnit XML (validation results, one testsuite per phase, like popeye / cilium connectivity test)

_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text XML 1.0 can carry: characters it forbids become visible escapes."""
    return _XML_BAD.sub(lambda m: "\\x%02x" % ord(m.group(0)), _s(value))


def render_junit(report: dict[str, Any]) -> str:
    r = report
    root = ET.Element("testsuites", name="clusterfix-tui")
    total = failures = 0
    ctx = r["cluster"]["context"] or "cluster"
    for phase in ("before", "after"):
        results = r["validation"][phase]
        if results is None:
            continue
        suite = ET.SubElement(root, "testsuite", name=_x(f"validation-{phase}"))
        n_fail = 0
        for c in results:
            tc = ET.SubElement(suite, "testcase", classname=_x(f"clusterfix.validation.{phase}"),
                               name=_x(f"{c['name']} [{c['target']}]"), time="0")
            if not c["passed"]:
                n_fail += 1
                detail = c["detail"] or "failed"
                msg = detail.splitlines()[0] if detail.strip() else "failed"
                body = detail + (f"\nlikely fix: clusterfix-tui fix --step {c['fix_step']}"
                                 if c["fix_step"] else "")
                fe = ET.SubElement(tc, "failure", message=_x(msg[:500]), type=_x(c["name"]))
                fe.text = _x(body)
        suite.set("tests", str(len(results)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("hostname", _x(ctx))
        total += len(results)
        failures += n_fail
    # the session itself: an interrupted or never-validated session must not look green in CI
    suite = ET.SubElement(root, "testsuite", name="session")
    tc = ET.SubElement(suite, "testcase", classname="clusterfix.session", name="session completed",
                       time="0")
    s_fail = 0
    if r["verdict"]["value"] in ("interrupted", "aborted", "unknown"):
        s_fail = 1
        ET.SubElement(tc, "failure", message=_x(r["verdict"]["headline"]), type="session")
    suite.set("tests", "1")
    suite.set("failures", str(s_fail))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    root.set("tests", str(total + 1))
    root.set("failures", str(failures + s_fail))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---------------------------------------------------------------------------------------------
# entry points


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


_RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json,
              "junit": render_junit}


def render(events: Sequence[dict[str, Any]], fmt: str = "md", anonymize: bool = False,
           **kwargs: Any) -> str:
    """Render journal events as `fmt` (md | html | json | junit)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown report format {fmt!r} (one of: {', '.join(FORMATS)})")
    return _RENDERERS[fmt](build_report(events, anonymize=anonymize, **kwargs))


def format_for_path(path: str, default: str = "md") -> str:
    return _EXTENSIONS.get(os.path.splitext(path)[1].lower(), default)


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` with mode 0600 (also when the file already existed)."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        data = text.encode("utf-8")
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def write_report(events: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                 fmt: str | None = None, anonymize: bool = False) -> str:
    """Render and write a report (mode 0600); the format follows the extension unless given.
    Returns the format written. For the wizard's export and `fix --report PATH`."""
    fmt = fmt or format_for_path(os.fspath(path))
    write_private(path, render(events, fmt, anonymize=anonymize))
    return fmt


def default_report_name(events: Sequence[dict[str, Any]], when: _dt.datetime | None = None,
                        ext: str = "md") -> str:
    """clusterfix-report-<cluster>-<timestamp>.<ext> (the wizard's default export name)."""
    context = ""
    for ev in events:
        if isinstance(ev, dict) and ev.get("type") == "session_start":
            cl: dict[str, Any] = ev["cluster"] if isinstance(ev.get("cluster"), dict) else {}
            context = _s(cl.get("context"))
            break
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", context).strip(".-")[:60] or "cluster"
    when = when or _dt.datetime.now(_dt.UTC)
    return f"clusterfix-report-{safe}-{when.strftime('%Y%m%dT%H%M%SZ')}.{ext}"


class JournalError(Exception):
    """A journal that cannot be turned into a report (missing, empty, not JSON lines)."""


def load_journal(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(events, problems). A torn last line (a process killed mid-write) is tolerated and noted;
    garbled lines elsewhere are noted; no usable event at all raises JournalError."""
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise JournalError(f"journal not found: {p}") from None
    except IsADirectoryError:
        raise JournalError(f"journal is a directory, not a file: {p}") from None
    except OSError as exc:
        raise JournalError(f"cannot read journal {p}: {exc.strerror or exc}") from None
    lines = raw.split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise JournalError(f"journal is empty: {p}")
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    bad: list[int] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            ev = None
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            if n == len(lines) and events:
                problems.append(f"the journal's last line ({n}) is incomplete (the process was "
                                "probably killed while writing it); it was ignored")
            else:
                bad.append(n)
            continue
        events.append(ev)
    if not events:
        raise JournalError(f"not a clusterfix-tui journal (no JSON event lines): {p}")
    if bad:
        shown = ", ".join(str(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        problems.append(f"{len(bad)} journal line(s) are not valid events and were ignored: "
                        f"line {shown}")
    return events, problems
