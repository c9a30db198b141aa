"""Trace (issue 15): follow one probe through the nodes on its path and show where it died.

Opened from the validation screen (`t` on a failed check: it runs at once), from a finding or a
diagnostics panel (`t`: the flow field is prefilled, enter runs it). The trace runs in a thread
worker over the session's API, shells, runner, journal and prober (core/trace.py): its temporary
nft marking tables are journaled actions, always removed at the end (docs/trace.md)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.widgets.live_table import LiveTable

VERDICT_STYLE = {"delivered": "bold green", "dropped": "bold red", "rejected": "bold red",
                 "no-route": "bold red", "lost": "bold yellow"}


class TraceFinished(Message):
    def __init__(self, result: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


class TraceScreen(WizardScreen):
    HELP = """\
## Trace
One probe packet, followed through the nodes on its path with nftables tracing (a temporary
table `inet cfx_trace_<id>` per node that only marks the probe's packets; removed at the end).
The verdict names the node and the rule (table, chain, handle), the route or the neighbour where
it died; iptables-legacy chains are judged by their counters (nft trace cannot see them).

The field holds the flow: `nodeport NODE [PORT]`, `pod NS/POD NS/POD [PORT]`,
`vxlan NODE NODE [PORT]`, `api NODE`, `node-pod NODE POD [PORT]`; edit it and press enter.

| key | what |
|---|---|
| `enter` (in the field) | trace this flow |
| `r` | trace again |
| `escape` | back |
"""
    BINDINGS = [Binding("r", "retrace", "Trace again")]

    def __init__(self, kind: str, args: tuple[Any, ...],
                 tracer: Callable[[], dict[str, Any]] | None = None, run: bool = True,
                 why: str = "") -> None:
        super().__init__(id="trace")
        self.kind, self.args = kind, args
        self._tracer = tracer
        self._tracing = False
        self._run_at_once = run
        self._why = why

    def compose_body(self) -> ComposeResult:
        from clusterfix_tui.core.trace import flow_text

        yield Input(flow_text(self.kind, self.args), id="trace-flow", compact=True)
        yield Static("", id="trace-verdict")
        table: DataTable = LiveTable(id="hops", cursor_type="row", zebra_stripes=True)
        table.border_title = "hops"
        yield table
        yield Static("", id="trace-notes")

    def on_mount(self) -> None:
        t = self.query_one("#hops", DataTable)
        for key, width in (("node", 8), ("table", 14), ("chain", 22), ("handle", 6),
                           ("rule", None), ("verdict", 12)):
            t.add_column(key, key=key, width=width)
        if self._run_at_once:
            t.focus()  # keys (r, escape) act on the screen, not typed into the field
            self.action_retrace()
        else:
            text = Text()
            if self._why:
                text.append(self._why + "\n", style="yellow")
            text.append("Enter traces this flow (a temporary nft table per node that only marks "
                        "the probe; removed at the end). Edit the flow first if you like.",
                        style="dim")
            self.query_one("#trace-verdict", Static).update(text)
            self.query_one("#trace-flow", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from clusterfix_tui.core.trace import TraceError, parse_flow_text

        if event.input.id != "trace-flow" or self._tracing:
            return
        try:
            self.kind, self.args = parse_flow_text(event.value)
        except TraceError as exc:
            self.query_one("#trace-verdict", Static).update(Text(str(exc), style="bold red"))
            return
        self.query_one("#hops", DataTable).focus()
        self.action_retrace()

    def action_retrace(self) -> None:
        if self._tracing:
            return
        self._tracing = True
        self.query_one("#hops", DataTable).clear()
        self.query_one("#trace-verdict", Static).update(
            Text(f"Tracing {self.kind} {' '.join(str(a) for a in self.args if a)}…", style="dim"))
        self._trace()

    def _do_trace(self) -> dict[str, Any]:
        if self._tracer is not None:
            return self._tracer()
        from clusterfix_tui.core import trace as T

        s = self.wizard.session
        flow = T.build_flow(self.kind, self.args, s.api, s.shells)
        return T.run_trace(flow, s.shells, s.runner, getattr(s, "journal", None),
                           getattr(s, "prober", None), secrets.token_hex(4))

    @work(thread=True, exclusive=True, exit_on_error=False, group="trace",
          description="Tracing")
    def _trace(self) -> None:
        try:
            self.post_message(TraceFinished(self._do_trace()))
        except Exception as exc:  # noqa: BLE001 - shown on the screen
            self.post_message(TraceFinished(None, f"{type(exc).__name__}: {exc}"))

    def on_trace_finished(self, event: TraceFinished) -> None:
        self._tracing = False
        head = self.query_one("#trace-verdict", Static)
        if event.result is None:
            head.update(Text(f"Trace could not run: {event.error}. r: retry", style="bold red"))
            return
        res = event.result
        w = res.get("where") or {}
        line = Text()
        line.append(str(res["verdict"]).upper(), style=VERDICT_STYLE.get(res["verdict"], "bold"))
        loc = " ".join(str(x) for x in (w.get("table"), w.get("chain")) if x)
        line.append(f" at {w.get('node')}" + (f" · {loc}" if loc else ""))
        if w.get("handle") is not None:
            line.append(f" · handle {w['handle']}")
        if w.get("rule"):
            line.append(f"\n{w['rule']}", style="yellow")
        line.append(f"\n{res.get('description', '')}", style="dim")
        head.update(line)
        t = self.query_one("#hops", DataTable)
        for i, h in enumerate(x for x in res.get("hops", ()) if x.get("kind") != "packet"):
            bad = h.get("verdict", "").startswith("drop")
            t.add_row(h["node"], f"{h['family']} {h['table']}", h["chain"],
                      "" if h.get("handle") is None else str(h["handle"]),
                      h.get("rule") or h.get("kind", ""),
                      Text(h.get("verdict", ""), style="bold red" if bad else ""), key=str(i))
        under = res.get("underlay")
        notes = ([f"underlay (VXLAN) trace: {under['verdict']}"] if under else []) + list(
            res.get("notes") or ()) + [
            f"{n['node']} ({n['role']}): route {n.get('route') or '-'}"
            for n in res.get("nodes") or ()]
        self.query_one("#trace-notes", Static).update(Text("\n".join(notes), style="dim"))

    def worker_failed(self, worker) -> None:
        if worker.group == "trace":
            self._tracing = False
