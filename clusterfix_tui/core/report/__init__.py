"""The session report, rendered from journal events only (never from UI state).

A report can be produced for any journal, including one whose process was killed mid-step: a
`command_start` without its `command_end` is shown as INTERRUPTED. The package, one module per
reason to change:
- model.py: `build_report(events)`, the JSON model (schema: report/report_schema.json,
  docs/report-schema.md) over the one journal replay (core/record.py);
- advice.py: the runbook's next actions for what still fails;
- text.py: folding and escaping shared by the renderings;
- markdown.py, html.py (self-contained), junit.py: the renderings; JSON is the model itself.
Every event passes through core.redact.redact_obj first (again: the journal already redacted it,
this is the second wall), and `anonymize=True` replaces node names, IPs and cluster names with
stable placeholders. Public API: render, format_for_path, write_private, write_report,
load_journal, JournalError, build_report. Standard library only.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from clusterfix_tui.core.record import _s
from clusterfix_tui.core.report.html import render_html
from clusterfix_tui.core.report.junit import render_junit
from clusterfix_tui.core.report.markdown import md_block, md_code, md_text, render_markdown
from clusterfix_tui.core.report.model import SCHEMA_VERSION, VERDICT_TEXT, build_report
from clusterfix_tui.core.report.text import fold

__all__ = [
    "FORMATS", "SCHEMA_VERSION", "VERDICT_TEXT", "JournalError", "build_report",
    "default_report_name", "fold", "format_for_path", "load_journal", "md_block", "md_code",
    "md_text", "render", "render_html", "render_json", "render_junit", "render_markdown",
    "write_private", "write_report",
]

FORMATS: tuple[str, ...] = ("md", "html", "json", "junit")

_EXTENSIONS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".json": "json",
               ".xml": "junit", ".junit": "junit"}

def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"

_RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "md": render_markdown, "html": render_html, "json": render_json, "junit": render_junit,
}

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
