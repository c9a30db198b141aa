"""The report as Markdown (GitHub flavoured): every value escaped, raw HTML never passes."""

from __future__ import annotations

import re
from typing import Any

from clusterfix_tui.core.group import plan_dict_rows
from clusterfix_tui.core.model import SEVERITY_ORDER
from clusterfix_tui.core.report.text import (
    _dur,
    _exit,
    _mode,
    _not_run,
    _oneline,
    _pass_of,
    _passes_text,
    _value,
    _visible,
    _yesno,
    fold,
)

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


def trace_where(w: dict[str, Any]) -> str:
    """A trace's `where` in one line: node · table chain · handle N · rule."""
    loc = " ".join(str(x) for x in (w.get("table"), w.get("chain")) if x)
    parts = [str(w.get("node") or "-")] + ([loc] if loc else []) + (
        [f"handle {w['handle']}"] if w.get("handle") is not None else []) + (
        [str(w["rule"])] if w.get("rule") else [])
    return " · ".join(parts)


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
    if r.get("shape_lines"):
        L.append(f"| Cluster shape | {'<br>'.join(md_text(x) for x in r['shape_lines'])} |")
    if r.get("dns_line"):
        L.append(f"| Cluster DNS | {md_text(r['dns_line'])} |")
    if r.get("conntrack_line"):
        L.append(f"| Conntrack | {md_text(r['conntrack_line'])} |")
    if r.get("not_checked"):
        L.append(f"| Not checked | {'<br>'.join(md_text(x) for x in r['not_checked'])} |")
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
    _md_findings(L, r["findings"]["before"], _groups(r, "before"))

    L.append("")
    L.append("## Repair steps")
    for i, e in enumerate(r["steps"], 1):
        _md_step(L, i, e)
    if r["steps_not_run"]:
        L.append("")
        L.append("Not part of this session: " + ", ".join(md_code(x) for x in r["steps_not_run"]))

    if r.get("node_changes"):
        L.append("")
        L.append("## Node state: before the first change, after the last")
        for n in r["node_changes"]:
            L.append("")
            L.append(f"### {md_code(n['node'])}")
            if n.get("error"):
                L.append(f"- state not compared: {md_text(n['error'])}")
            if not n["sections"] and not n.get("error"):
                L.append("- no difference: the node is as it was before the session")
            for sec in n["sections"]:
                who = (", ".join(md_code(a) for a in sec["actions"]) if sec["actions"] else
                       "**changed during the session by something else** (no action of this "
                       "session explains it)")
                L.append(f"- {md_text(sec['what'])} ({md_code(sec['section'])}): {who}")
                L.append(md_block("\n".join(sec["diff"]), "diff"))

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
        _md_findings(L, r["findings"]["after"], _groups(r, "after"))

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

    if r.get("traces"):
        L.append("")
        L.append("## Traces")
        L.append("")
        for tr in r["traces"]:
            L.append(f"- **{md_text(tr['verdict'].upper())}** {md_text(tr['flow'])}: "
                     f"{md_text(tr['description'])}")
            L.append(f"  - where: {md_text(trace_where(tr['where']))}")
            if tr.get("underlay"):
                L.append(f"  - underlay (VXLAN) trace: {md_text(tr['underlay'])}")
            for n in tr["notes"]:
                L.append(f"  - note: {md_text(n)}")
            if tr["path"]:
                L.append("")
                L.append(md_block("\n".join(tr["path"])))
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


def _groups(r: dict[str, Any], phase: str) -> list[dict[str, Any]] | None:
    groups = (r.get("finding_groups") or {}).get(phase)
    return groups if isinstance(groups, list) else None


def _md_finding(L: list[str], f: dict[str, Any], indent: str = "") -> None:
    step = f" (step {md_code(f['step'])})" if f["step"] else ""
    L.append(f"{indent}- **{md_text(f['severity'].upper())}** {md_code(f['code'])} on "
             f"{md_code(f['node'])}: {md_text(f['title'])}{step}")
    if f["explanation"] and not indent:
        L.append(f"  {md_text(f['explanation'])}")
    if f["evidence"]:
        L.append("")
        for ln in md_block(fold("\n".join(f["evidence"]))[0]).split("\n"):
            L.append(indent + "  " + ln)
        L.append("")


def _md_findings(L: list[str], findings: list[dict[str, Any]],
                 groups: list[dict[str, Any]] | None = None) -> None:
    """One line per cause: a group of findings sharing one cause across nodes is one item naming
    the cause and counting the nodes, every node's own finding (with its evidence) under it."""
    if not findings:
        L.append("No findings.")
        return
    if groups is None:
        groups = [{"grouped": False, "findings": [f]} for f in findings]
    for g in sorted(groups, key=lambda g: SEVERITY_ORDER.get(g["findings"][0]["severity"], 9)):
        if not g["grouped"]:
            _md_finding(L, g["findings"][0])
            continue
        step = f" (step {md_code(g['step'])})" if g["step"] else ""
        L.append(f"- **{md_text(g['severity'].upper())}** {md_code(g['code'])} on "
                 f"{g['count']} nodes: {md_text(g['title'])}{step}")
        L.append(f"  {md_text(g['cause'])}")
        first = g["findings"][0]
        if first["explanation"]:
            L.append(f"  {md_text(first['explanation'])} (as on {md_code(first['node'])})")
        L.append("")
        L.append(f"  Every node's finding ({len(g['findings'])}):")
        L.append("")
        for f in g["findings"]:
            _md_finding(L, f, indent="  ")


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
        # one cause, one entry: the actions repairing a cause shared by many nodes under one
        # item; actions identical but for their node once, with every node (core/group.py)
        for entry in plan_dict_rows(p, same=lambda a: a["id"] in ran):
            ind = ""
            if entry["title"] is not None:
                L.append(f"- **{md_text(entry['title'])}**: {entry['actions']} action(s) on "
                         f"{entry['count']} node(s)")
                ind = "  "
            for row in entry["rows"]:
                a = row["actions"][0]
                opt = " (opt-in)" if a["opt_in"] else ""
                shown = ("ran, see Commands below" if a["id"] in ran
                         else md_code(a["command"]) + " (not run)" if d else md_code(a["command"]))
                where = md_code(a["target"]) if len(row["actions"]) == 1 else (
                    f"each of {len(row['nodes'])} nodes ("
                    + ", ".join(md_code(n) for n in row["nodes"]) + ")")
                L.append(f"{ind}- {md_code(row['ids'])} on {where}{opt}: {shown}")
                if a["why"]:
                    L.append(f"{ind}  - why: {md_text(a['why'])}")
                if a["risk"]:
                    L.append(f"{ind}  - risk: {md_text(a['risk'])}")
                if a["rollback_command"]:
                    L.append(f"{ind}  - rollback: {md_code(a['rollback_command'])}")
                elif a["rollback_note"]:
                    L.append(f"{ind}  - rollback: {md_text(a['rollback_note'])}")
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
