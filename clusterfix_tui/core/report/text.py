"""Text helpers the renderings share: control characters made visible, output folding, the
short forms of durations, exit codes, values and passes."""

from __future__ import annotations

import json
import re
from typing import Any

from clusterfix_tui.core.record import _s

# output folding in md / html (the JSON keeps everything)
FOLD_HEAD = 12


FOLD_TAIL = 12


FOLD_MAX_LINE = 400


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
