"""The report as one self-contained HTML file: inline CSS, no script, nothing fetched."""

from __future__ import annotations

import html
import re
from typing import Any

from clusterfix_tui.core.group import plan_dict_rows
from clusterfix_tui.core.model import SEVERITY_ORDER
from clusterfix_tui.core.record import _s
from clusterfix_tui.core.report.text import (
    _dur,
    _exit,
    _mode,
    _not_run,
    _pass_of,
    _passes_text,
    _value,
    _visible,
    fold,
)

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
        *([("Cluster shape", "; ".join(r["shape_lines"]))] if r.get("shape_lines") else []),
        *([("Cluster DNS", r["dns_line"])] if r.get("dns_line") else []),
        *([("Conntrack", r["conntrack_line"])] if r.get("conntrack_line") else []),
        *([("Not checked", "; ".join(r["not_checked"]))] if r.get("not_checked") else []),
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
    _html_findings(w, r["findings"]["before"], (r.get("finding_groups") or {}).get("before"))

    w("<h2>Repair steps</h2>")
    for i, e in enumerate(r["steps"], 1):
        _html_step(w, i, e)
    if r["steps_not_run"]:
        w("<p class=\"muted\">Not part of this session: "
          + ", ".join(f"<code>{_h(x)}</code>" for x in r["steps_not_run"]) + "</p>")

    if r.get("node_changes"):
        w("<h2>Node state: before the first change, after the last</h2>")
        for n in r["node_changes"]:
            w(f"<h3><code>{_h(n['node'])}</code></h3>")
            if n.get("error"):
                w(f"<p class=\"muted\">state not compared: {_h(n['error'])}</p>")
            if not n["sections"] and not n.get("error"):
                w("<p>No difference: the node is as it was before the session.</p>")
            for sec in n["sections"]:
                who = (", ".join(f"<code>{_h(a)}</code>" for a in sec["actions"])
                       if sec["actions"] else "<strong>changed during the session by something "
                       "else</strong> (no action of this session explains it)")
                w(f"<p>{_h(sec['what'])} (<code>{_h(sec['section'])}</code>): {who}</p>")
                w(f"<pre>{_h(chr(10).join(sec['diff']))}</pre>")

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
        _html_findings(w, r["findings"]["after"], (r.get("finding_groups") or {}).get("after"))

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
    if r.get("traces"):
        from clusterfix_tui.core.report.markdown import trace_where

        w("<h2>Traces</h2><ul>")
        for tr in r["traces"]:
            w(f"<li><b>{_h(tr['verdict'].upper())}</b> {_h(tr['flow'])}: {_h(tr['description'])}"
              f"<br>where: {_h(trace_where(tr['where']))}"
              + (f"<br>underlay (VXLAN) trace: {_h(tr['underlay'])}" if tr.get("underlay") else "")
              + "".join(f"<br>note: {_h(n)}" for n in tr["notes"])
              + (f"<pre>{_h(chr(10).join(tr['path']))}</pre>" if tr["path"] else "") + "</li>")
        w("</ul>")
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


def _html_finding(w: Any, f: dict[str, Any], explain: bool = True) -> None:
    step = f" (step <code>{_h(f['step'])}</code>)" if f["step"] else ""
    w(f"<li><b>{_h(f['severity'].upper())}</b> <code>{_h(f['code'])}</code> on "
      f"<code>{_h(f['node'])}</code>: {_h(f['title'])}{step}")
    if f["explanation"] and explain:
        w(f"<br>{_h(f['explanation'])}")
    if f["evidence"]:
        w(f"<pre>{_h(fold(chr(10).join(f['evidence']))[0])}</pre>")
    w("</li>")


def _html_findings(w: Any, findings: list[dict[str, Any]],
                   groups: list[dict[str, Any]] | None = None) -> None:
    """One line per cause (see markdown._md_findings); a group's nodes fold open (<details>)."""
    if not findings:
        w("<p>No findings.</p>")
        return
    if not isinstance(groups, list):
        groups = [{"grouped": False, "findings": [f]} for f in findings]
    w("<ul>")
    for g in sorted(groups, key=lambda g: SEVERITY_ORDER.get(g["findings"][0]["severity"], 9)):
        if not g["grouped"]:
            _html_finding(w, g["findings"][0])
            continue
        step = f" (step <code>{_h(g['step'])}</code>)" if g["step"] else ""
        first = g["findings"][0]
        w(f"<li><b>{_h(g['severity'].upper())}</b> <code>{_h(g['code'])}</code> on "
          f"{int(g['count'])} nodes: {_h(g['title'])}{step}<br>{_h(g['cause'])}")
        if first["explanation"]:
            w(f"<br>{_h(first['explanation'])} (as on <code>{_h(first['node'])}</code>)")
        w(f"<details><summary>every node's finding ({len(g['findings'])})</summary><ul>")
        for f in g["findings"]:
            _html_finding(w, f, explain=False)
        w("</ul></details></li>")
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
        # one cause, one entry; identical actions once with every node (see markdown._md_step)
        for entry in plan_dict_rows(p):
            if entry["title"] is not None:
                w(f'<tr><th colspan="5">{_h(entry["title"])}: {entry["actions"]} action(s) on '
                  f'{entry["count"]} node(s)</th></tr>')
            for row in entry["rows"]:
                a = row["actions"][0]
                rb = (f"<code>{_h(a['rollback_command'])}</code>" if a["rollback_command"]
                      else _h(a["rollback_note"]))
                why = _h(a["why"]) + (f"<br><i>risk:</i> {_h(a['risk'])}" if a["risk"] else "")
                opt = " (opt-in)" if a["opt_in"] else ""
                nodes = ", ".join(f"<code>{_h(n)}</code>" for n in row["nodes"])
                if len(row["nodes"]) > 1:
                    nodes = f"each of {len(row['nodes'])} nodes: {nodes}"
                w(f"<tr><td><code>{_h(row['ids'])}</code>{opt}</td><td>{nodes}</td>"
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
