"""Diagnostics: findings, nodes, kube-proxy/flannel pods, routes and NAT chains per node."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import Reactive
from textual.widget import Widget
from textual.widgets import Input, Static, TabbedContent, TabPane, Tabs
from textual.widgets._tabs import Underline

from clusterfix_tui.core.model import CLUSTER
from clusterfix_tui.core.shape import shape_line
from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui import view as v
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import RawOutputScreen
from clusterfix_tui.ui.widgets.detail_pane import DetailPane
from clusterfix_tui.ui.widgets.paged_table import PagedTable

# each panel's table (the routes and NAT panels: their node lists)
_TABLES = {"findings": "#findings-table", "nodes": "#nodes-table", "pods": "#pods-table",
           "routes": "#routes-nodes", "nat": "#nat-nodes"}
CONFLICT_CODES = ("IPTABLES_BACKEND_CONFLICT", "KUBE_PROXY_INCOMPATIBLE_CHAIN", "FORWARD_DROP",
                  "KUBE_PROXY_NO_RULES", "KUBE_PROXY_SHADOWED")


OFF_SCREEN = 100_000  # cells to the right: where a hidden panel is laid out, never drawn
FILTER_BOX_PERCENT = 45  # the filter box's width, of the info line's (app.tcss #diag-filter)


class StackedPane(TabPane):
    """A panel that stays laid out while hidden, so that showing it is one layout pass.

    Textual's ContentSwitcher hides a TabPane with `display = False`: a hidden panel has no size,
    and its first showing lays the screen out three times (the panel's widgets get their sizes,
    which changes their virtual sizes, which shows their scrollbars). The diagnostics panels sit
    on layers of their own (one above the other, as if each were alone) and a hidden one is moved
    off the screen instead: laid out (sized) with the others, never drawn, never hit by the
    mouse, and none of its widgets takes the focus (`allow_focus_children`).
    """

    def __init__(self, title: str, *, id: str, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(title, id=id, classes=classes)
        self.styles.layer = id
        self._shown = True

    @property  # type: ignore[override]
    def display(self) -> bool:
        return bool(Widget.display.fget(self))  # type: ignore[attr-defined]

    @display.setter
    def display(self, new: bool | str) -> None:
        shown = new not in (False, "none")
        if shown == self._shown:
            return
        self._shown = shown
        self.styles.offset = (0, 0) if shown else (OFF_SCREEN, 0)

    @property
    def shown(self) -> bool:
        return self._shown

    def allow_focus_children(self) -> bool:
        return self._shown and super().allow_focus_children()


class FilterBox(Input):
    """The filter box (`/`): over the left of the info line, never a row of its own.

    Showing or hiding a row above the panels resizes every panel (Textual lays the whole screen
    out twice: once for the row, once more because the panels' sizes changed). The box sits on the
    info line instead (`position: absolute`, the info text moved right while it shows), and stays
    laid out while closed, moved off the screen like a hidden panel (`StackedPane`) and disabled
    (never focused): opening or closing it changes no widget's size.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._open = True
        self.close()

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self.disabled = False
        if not self._open:
            self._open = True
            self.styles.offset = (0, 0)

    def close(self) -> None:
        self.disabled = True
        if self._open:
            self._open = False
            self.styles.offset = (OFF_SCREEN, 0)


def _conntrack_style(cell: str) -> str:
    """The nodes panel's conntrack cell: red from 90% full (new flows are dropped at 100%),
    yellow from 75%, dim when not read."""
    if cell == "not read":
        return "dim"
    pct = cell.rpartition(" ")[2]
    if pct.endswith("%") and pct[:-1].isdigit():
        n = int(pct[:-1])
        return "bold red" if n >= 90 else "yellow" if n >= 75 else ""
    return ""


class DiagnosticsScreen(WizardScreen):
    CAN_GO_BACK = False
    # Textual's Screen repaints the whole screen on every focus change (its `focused` reactive):
    # at 1,000 nodes a repaint of every widget's lines (~6-30 ms) on each panel switch, `tab`
    # and filter key. The widgets whose looks change with the focus redraw themselves (their
    # :focus styles: Screen._update_focus_styles; the footer's keys: refresh_bindings).
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)
    HELP = """\
## Diagnostics
What the API and every node said, in panels: Findings (severity, evidence, the step that fixes
it), Nodes (with each node's conntrack fill: count/max, `not loaded`, `not read`), kube-proxy,
flannel and cluster DNS Pods (select one for its last log lines), Routes and NAT chains per node
(select the node on the left). The status line above says the cluster shape and cluster DNS
(kube-dns's ready endpoints, its Deployments).

Findings that share one cause across nodes (a node's VTEP stale on all its peers, the same
setting wrong everywhere) are one row naming the cause and counting the nodes (`▸ 29 nodes`);
`space` opens it into every node's own finding. Long tables and node lists show a page of 50
at a time: moving past the last row turns the page, `[` and `]` turn it at once.

Filter (`/`, then enter; `escape` clears): `node:node-7` (or a glob, `node:node-1*`),
`sev:error,critical`, `step:iptables` (`step:none`: reported only), any other word is looked for
in the node, code and title. It applies to every panel's nodes.

| key | what |
|---|---|
| `1`…`5` | switch panel |
| `space` | open / close a grouped finding |
| `/` · `escape` | filter · clear the filter |
| `[` `]` | previous / next page |
| `o` | raw command output of the selected node |
| `r` | diagnose again |
| `enter` on a finding / `p` | the repair plan |
| `t` | trace a flow into the selected node or finding's node (prefilled, editable; enter runs it) |
| `n` | the netfilter map of the selected node (every table, owner, hook, priority, policy) |
"""
    BINDINGS = [
        Binding("p", "plan", "Plan"),
        Binding("r", "refresh", "Refresh"),
        Binding("o", "raw", "Raw output"),
        Binding("1", "panel('findings')", "Findings", show=False),
        Binding("2", "panel('nodes')", "Nodes", show=False),
        Binding("3", "panel('pods')", "Pods", show=False),
        Binding("4", "panel('routes')", "Routes", show=False),
        Binding("5", "panel('nat')", "NAT", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("space", "expand", "Expand", show=False),
        Binding("right_square_bracket", "page(1)", "Next page", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("t", "trace", "Trace", show=False),
        Binding("n", "netfilter", "Netfilter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="diagnostics")
        self._findings: list[Any] = []  # every finding, in the panel's order
        self._groups: list[Any] = []  # the filtered findings grouped by cause (core/group.py)
        self._expanded: set[str] = set()  # keys of the groups shown opened
        self._filter = v.parse_filter("")
        self._node_rows: list[tuple[str, ...]] = []
        self._pods: list[Any] = []
        self._pod_where: list[tuple[str, str]] = []  # (key, node) of each pod, for the filter
        self._pods_by_key: dict[str, list[Any]] = {}  # v.pods_by_key, once per diagnosis
        self._stale: set[str] = set()  # panels not yet refilled since the filter changed
        self._cidrs: dict[str, str] = {}  # node -> podCIDR
        self._list_nodes: list[str] = []  # the routes and NAT panels' node lists, filtered
        self._route_node: str | None = None
        self._nat_node: str | None = None
        self._shown: Any = None
        self._info_shown: tuple[str, bool, int] = ("", False, 0)  # #table-info: text, shown, pad
        self._details: dict[str, tuple[str, tuple[Any, ...], str]] = {}  # pane id -> text shown

    def compose_body(self) -> ComposeResult:
        yield Static("Diagnosing…", id="diag-status")
        with Horizontal(id="table-bar") as bar:
            bar.display = False  # until there is a filter, a page to tell or the filter box
            yield Static("", id="table-info")
            # closed (off the line, disabled: never the screen's first focus) until `/`
            yield FilterBox(placeholder="node:NAME|GLOB sev:error step:NAME words (enter)",
                            id="diag-filter", compact=True)
        # each panel's widgets straight in its pane (its CSS lays them out, app.tcss): a wrapper
        # container was one more layer of lines to draw and cut on every panel switch
        with TabbedContent(id="panels", initial="findings"):
            with StackedPane("1 Findings", id="findings"):
                yield PagedTable(id="findings-table", noun="rows", zebra_stripes=True)
                yield DetailPane(id="finding-text", classes="detail")
            with StackedPane("2 Nodes", id="nodes"):
                yield PagedTable(id="nodes-table", noun="nodes", zebra_stripes=True)
            with StackedPane("3 Pods", id="pods"):
                yield PagedTable(id="pods-table", noun="pods", zebra_stripes=True)
                yield DetailPane("Select a pod for its last log lines.", id="pod-log",
                                 classes="detail")
            with StackedPane("4 Routes", id="routes", classes="node-panel"):
                yield PagedTable(id="routes-nodes", classes="node-list", noun="nodes")
                yield DetailPane(id="routes-text", classes="node-view")
            with StackedPane("5 NAT", id="nat", classes="node-panel"):
                yield PagedTable(id="nat-nodes", classes="node-list", noun="nodes")
                yield DetailPane(id="nat-text", classes="node-view")

    def on_mount(self) -> None:
        t = self.query_one("#findings-table", PagedTable)
        for label, key, width in (("sev", "sev", 8), ("node", "node", 8), ("step", "step", 17),
                                  ("finding", "title", None)):
            t.add_column(label, key=key, width=width)
        t = self.query_one("#nodes-table", PagedTable)
        for label in ("node", "roles", "Ready", "InternalIP", "podCIDR", "kubelet", "iptables",
                      "conntrack", "SSH"):
            t.add_column(label, key=label)
        t = self.query_one("#pods-table", PagedTable)
        for label in ("pod", "node", "status", "restarts", "reason"):
            t.add_column(label, key=label)
        for list_id in ("#routes-nodes", "#nat-nodes"):
            self.query_one(list_id, PagedTable).add_column("node", key="node")
        if self.wizard.state.diagnosis is not None:
            self._show(self.wizard.state.diagnosis)
        else:
            self._diagnose_cluster()

    def on_screen_resume(self) -> None:
        diagnosis = self.wizard.state.diagnosis
        if self.is_mounted and diagnosis is not None and diagnosis is not self._shown:
            self._show(diagnosis)

    # -- workers -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="diagnose",
          description="Diagnosing the cluster")
    def _diagnose_cluster(self) -> None:
        flow = self.wizard.flow
        first = self.wizard.state.diagnosis is None
        diagnosis = flow.diagnose(on_progress=lambda *a: self.post_message(
            m.DiagnosisProgressed(" ".join(str(x) for x in a))))
        self.post_message(m.DiagnosisFinished(diagnosis))
        if first:
            # the report's "before" validation column: what fails before anything is changed
            flow.validate_before()

    @work(thread=True, exclusive=True, exit_on_error=False, group="pod-log",
          description="Reading a pod's log")
    def _read_pod_log(self, namespace: str, name: str) -> None:
        api = getattr(self.wizard.session, "api", None)
        if api is None:
            text = "(no log lines recorded for this pod)"
        else:
            text = api.pod_log(namespace, name, tail_lines=20) or "(empty log)"
        self.post_message(m.PodLogLoaded(f"{namespace}/{name}", text))

    # -- messages ----------------------------------------------------------------------------
    def on_diagnosis_progressed(self, event: m.DiagnosisProgressed) -> None:
        self.query_one("#diag-status", Static).update(Text(f"Diagnosing… {event.text}",
                                                           style="dim"))

    def on_diagnosis_finished(self, event: m.DiagnosisFinished) -> None:
        self.wizard.set_diagnosis(event.diagnosis)
        self.query_one("#panels").loading = False
        self._show(event.diagnosis)

    def on_pod_log_loaded(self, event: m.PodLogLoaded) -> None:
        self._detail("#pod-log", self._pod_log_text(event.key, event.text))

    # -- rendering ---------------------------------------------------------------------------
    def _show(self, diagnosis: Any) -> None:
        self._shown = diagnosis
        findings = v.findings_of(diagnosis)
        self._findings = findings
        counts: dict[str, int] = {}
        for f in findings:
            counts[f.severity] = counts.get(f.severity, 0) + 1
        status = Text()
        if not findings:
            status.append("No problem found.", style="bold green")
        else:
            status.append(f"{len(findings)} findings: ", style="bold")
            for sev in ("critical", "error", "warning", "info"):
                if counts.get(sev):
                    status.append(f"{counts[sev]} {sev}  ", style=v.SEVERITY_STYLE[sev])
        node_errors = v.pick(diagnosis, "node_errors", default={}) or {}
        if node_errors:
            status.append("· not read: " + ", ".join(f"{n} ({e})" for n, e in node_errors.items()),
                          style="bold red")
        shape = shape_line(getattr(diagnosis, "shape", None))
        if shape:
            status.append("\n" + shape, style="dim")
        dns, dns_style = v.dns_line(diagnosis)
        if dns:
            status.append("\n" + dns, style=dns_style)
        self.query_one("#diag-status", Static).update(_no_control(status))
        ssh = {n: ("left-out" if n in self.wizard.state.left_out else c.state)
               for n, c in self.wizard.state.conns.items()}
        self._node_rows = v.node_rows(diagnosis, ssh)
        self._cidrs = {v.node_name(n): v.node_pod_cidr(n) for n in v.snapshot_nodes(diagnosis)}
        # pods: rows are made when their page shows (a 1,000-node cluster has 2,000 of them)
        self._pods = [p for p in v.snapshot_pods(diagnosis) if v.is_network_pod(p)]
        self._pods_by_key = v.pods_by_key(diagnosis)
        self._pod_where = [(v.pod_key(p), str(v.pick(p, "spec.nodeName", "node", default="")
                                               or "")) for p in self._pods]
        self._apply_filter(every_panel=True)
        # the hidden panels' column widths (every node, every pod) now, with the first screen,
        # rather than on the key that first shows them; a filter's subset reuses them
        for table in self.query(PagedTable):
            table.prepare()
        self._style_scrollbars()
        # what the first screen made lives as long as the diagnosis shown: out of the collector's
        # generations (a full collection walking it stalled a key by ~100 ms at 1,000 nodes)
        self.call_after_refresh(self.wizard.freeze_heap)

    def _style_scrollbars(self) -> None:
        """Style every scrollbar the panels' widgets can show, now: Textual creates and styles a
        scrollbar on its widget's first style update after the bar shows (the table's first
        focus, i.e. a panel's first visit), and its width then asks for one more layout pass."""
        apply = self.app.stylesheet.apply
        for widget in self.query("#panels DetailPane, #panels PagedTable"):
            for bar in (widget.vertical_scrollbar, widget.horizontal_scrollbar,
                        widget.scrollbar_corner):
                apply(bar)

    def _apply_filter(self, every_panel: bool = False) -> None:
        """Filter every panel's items from the diagnosis; fill the panel shown (one page), and
        the others when they show (`_fill_panel`): a key refills one panel, not five."""
        diagnosis, flt = self._shown, self._filter
        if diagnosis is None:
            return
        active = self.query_one("#panels", TabbedContent).active or "findings"
        self._stale = {"findings", "nodes", "pods", "routes", "nat"}
        findings = self._findings
        self._groups = v.finding_groups(findings, flt)
        kept = sum(len(g.findings) for g in self._groups)
        t = self.query_one("#findings-table", PagedTable)
        t.total_label = "" if flt.empty else f" (filter: {kept:,} of {len(findings):,} findings)"
        t.set_items(v.finding_rows(self._groups, self._expanded), self._finding_cells,
                    defer=active != "findings")

        rows = [r for r in self._node_rows if flt.node_ok(r[0]) and flt.words_ok(*r)] \
            if not flt.empty and (flt.nodes or flt.words) else self._node_rows
        t = self.query_one("#nodes-table", PagedTable)
        t.total_label = "" if len(rows) == len(self._node_rows) else \
            f" (filter: of {len(self._node_rows):,})"
        t.set_items(rows, self._node_cells, defer=active != "nodes")

        pods = self._pods
        if flt.nodes or flt.words:
            pods = [p for p, (key, node) in zip(pods, self._pod_where, strict=True)
                    if flt.node_ok(node) and flt.words_ok(key, node)]
        t = self.query_one("#pods-table", PagedTable)
        t.total_label = "" if len(pods) == len(self._pods) else \
            f" (filter: of {len(self._pods):,})"
        t.set_items(pods, self._pod_cells, defer=active != "pods")

        nodes = sorted(v.facts_of(diagnosis)) or sorted(self.wizard.state.conns)
        if flt.nodes or flt.words:
            nodes = [n for n in nodes if flt.node_ok(n) and flt.words_ok(n)]
        self._list_nodes = nodes
        for panel in ("routes", "nat"):
            self.query_one(f"#{panel}-nodes", PagedTable).set_items(nodes, _node_cell,
                                                                    defer=active != panel)
        if nodes:  # the node `t`, `n` and `o` fall back on, shown or not yet
            self._route_node = self._nat_node = nodes[0]
        # the shown panel; with the first screen the hidden ones too (StackedPane: laid out while
        # hidden, so filled in the same layout passes, and their first showing is one pass, not
        # three); after a filter they are filled when they show (filling four hidden panels
        # doubled the filter key's CPU)
        for panel in (active, *(sorted(self._stale - {active}) if every_panel else ())):
            self._fill_panel(panel)
        self._update_info()

    def _fill_panel(self, panel: str) -> None:
        """Bring `panel`'s widgets up to the filter, if `_apply_filter` left them for later."""
        if panel not in self._stale:
            return
        self._stale.discard(panel)
        if panel == "findings":
            self.query_one("#findings-table", PagedTable).flush()
            self._show_finding(self.query_one("#findings-table", PagedTable).cursor_row)
        elif panel in ("nodes", "pods"):
            self.query_one(f"#{panel}-table", PagedTable).flush()
        elif panel in ("routes", "nat"):
            self.query_one(f"#{panel}-nodes", PagedTable).flush()
            if self._list_nodes:
                (self._show_routes if panel == "routes" else self._show_nat)(self._list_nodes[0])

    def _finding_cells(self, row: v.FindingRow) -> tuple[str, list[Any]]:
        sev, node, step, title = v.finding_cells(row, self._expanded)
        style = v.SEVERITY_STYLE.get(sev, "")
        if row.member:
            return row.key, [Text(sev, style=style + " dim" if style else "dim"),
                             Text(node, style="dim"), step, title]
        return row.key, [Text(sev, style=style), Text(node, style="bold") if row.group.grouped
                         else node, step, title]

    @staticmethod
    def _node_cells(row: tuple[str, ...]) -> tuple[str, list[Any]]:
        cells: list[Any] = list(row)
        cells[2] = Text(row[2], style="green" if row[2] == "True" else "bold red")
        cells[7] = Text(row[7], style=_conntrack_style(row[7]))
        cells[8] = Text(row[8], style=v.SSH_STATE_STYLE.get(row[8], ""))
        return row[0], cells

    @staticmethod
    def _pod_cells(pod: Any) -> tuple[str, list[Any]]:
        row = v.pod_row(pod)
        bad = row[2] not in ("Running", "Succeeded") or row[4]
        return row[0], [row[0], row[1], Text(row[2], style="bold red" if bad else "green"),
                        Text(row[3], style="yellow" if row[3] not in ("0", "") else ""), row[4]]

    def _update_info(self) -> None:
        """The line above the panels: the filter and the page of the shown table. Shown while a
        filter is set or any panel's table has more than one page (hidden on a small cluster
        without a filter), or the filter box is open: the same for every panel, so that switching
        panels never shows or hides it (that would resize every panel: two more layout passes).
        Its text is moved right of the filter box while the box is open; a line of fixed size,
        so a new text is a repaint, not a layout pass."""
        bar = self.query_one("#table-bar")
        box = self.query_one("#diag-filter", FilterBox)
        panel = self.query_one("#panels", TabbedContent).active
        table = _TABLES.get(panel)
        told = not self._filter.empty or any(
            self.query_one(t, PagedTable).pages > 1 for t in _TABLES.values())
        parts = []
        if not self._filter.empty:
            parts.append(f"filter: {self._filter.summary()} (escape clears)")
        if table and told:
            parts.append(self.query_one(table, PagedTable).info)
        pad = 0
        if box.is_open:  # the box's width (laid out while closed), else its CSS width of the line
            pad = (box.outer_size.width or self.size.width * FILTER_BOX_PERCENT // 100) + 1
        state = (" · ".join(parts), told or box.is_open, pad)
        if state == self._info_shown:  # a key often leaves it as it was
            return
        self._info_shown = state
        self.query_one("#table-info", Static).update(Text(" " * pad + state[0], style="dim"),
                                                     layout=False)
        bar.display = state[1]

    def on_resize(self, event: events.Resize) -> None:
        if self.query_one("#diag-filter", FilterBox).is_open:  # the box's width changes
            self.call_after_refresh(self._update_info)

    def _show_finding(self, index: int) -> None:
        text = Text()
        t = self.query_one("#findings-table", PagedTable)
        row = t.items[t.start + index] if 0 <= t.start + index < len(t.items) else None
        if not self._findings:
            text.append("The checks found nothing to fix.", style="green")
        elif row is None:
            text.append("No finding matches the filter.", style="dim")
        elif row.group.grouped and not row.member:
            g = row.group
            _finding_head(text, g.code, g.severity, f"on {g.count} nodes", g.step, g.cause)
            text.append(f"nodes: {v.compact_nodes(g.nodes, 12)}  (space: every node's finding)\n",
                        style="dim")
            f = g.findings[0]
            _finding_body(text, f, evidence_from=f.node)
        else:
            f = row.finding
            _finding_head(text, f.code, f.severity, f"on {f.node}", f.step, f.title)
            _finding_body(text, f)
        self._detail("#finding-text", text)

    def _detail(self, widget_id: str, text: Text) -> None:
        """Show `text` in a detail pane, unless it shows it already (a key often asks for the
        same text twice: the panel filled, then its cursor's RowHighlighted). A DetailPane's new
        text is a redraw of the pane, not a layout pass."""
        _no_control(text)
        shown = (text.plain, tuple(text.spans), str(text.style))
        if self._details.get(widget_id) == shown:
            return
        self._details[widget_id] = shown
        self.query_one(widget_id, DetailPane).update(text)

    def _pod_log_text(self, key: str, log: str) -> Text:
        text = Text(f"{key}: last log lines\n", style="bold")
        for line in log.splitlines()[-20:]:
            style = "red" if line[:1] in ("E", "F") or "error" in line.lower() else ""
            text.append(line + "\n", style=style)
        return text

    def _show_routes(self, node: str) -> None:
        self._route_node = node
        diagnosis = self.wizard.state.diagnosis
        facts = v.facts_of(diagnosis).get(node)
        cidr = self._cidrs.get(node, "")
        bad = v.evidence_lines(self._findings, node)
        text = Text()
        text.append(f"{node}", style="bold")
        text.append(f"  podCIDR {cidr or '?'}\n")
        for iface, addr in v.addresses_of(facts).items():
            inside = v.address_in_cidr(addr, cidr) if cidr and iface == "cni0" else None
            if iface == "flannel.1" and cidr:
                inside = v.address_in_cidr(addr, cidr)
            style = "bold red" if inside is False else ("green" if inside else "")
            text.append(f"  {iface:<10} {addr}", style=style)
            if inside is False:
                text.append("  ← outside the podCIDR", style="bold red")
            text.append("\n")
        text.append("\n$ ip -4 route\n", style="bold")
        for line in v.routes_of(facts) or ["(no routes gathered)"]:
            anomalous = line.strip() in bad or any(line.strip() in b or b in line for b in bad
                                                  if len(b) > 12)
            text.append(f"{line}\n", style="bold red" if anomalous else "")
            if anomalous:
                text.append("  ↑ named in a finding\n", style="red")
        self._detail("#routes-text", text)

    def _show_nat(self, node: str) -> None:
        self._nat_node = node
        facts = v.facts_of(self.wizard.state.diagnosis).get(node)
        nat = v.nat_of(facts)
        text = Text()
        text.append(f"{node}", style="bold")
        text.append(f"  iptables in use: {v.iptables_mode(facts)}\n\n")
        chains = sorted({c for backend in nat.values() for c in backend})
        backends = sorted(nat)
        if chains:
            text.append(f"{'chain':<20}" + "".join(f"{b:>9}" for b in backends) + "\n",
                        style="bold underline")
            for chain in chains:
                text.append(f"{chain:<20}")
                for b in backends:
                    n = nat[b].get(chain)
                    text.append(f"{'-' if n is None else n:>9}")
                text.append("\n")
            both = [b for b in backends if nat[b]]
            if len(both) > 1:
                text.append(f"\nKUBE-* chains in {' and '.join(both)}: conflict\n", style="bold red")
        else:
            text.append("no KUBE-* chain readable in either backend\n", style="yellow")
        for why in v.nat_incompatible(facts):
            text.append(f"{why}\n", style="bold red")
        pol = v.forward_policies(facts)
        if pol:
            text.append("\nFORWARD policy: ", style="bold")
            text.append("  ".join(f"{k} {p}" for k, p in pol.items()) + "\n",
                        style="red" if "DROP" in pol.values() else "")
        for f in self._findings:
            if f.node == node and f.code in CONFLICT_CODES:
                text.append(f"\n{f.code}: ", style=v.SEVERITY_STYLE.get(f.severity, "bold"))
                text.append(f"{f.title}\n")
                if f.explanation:
                    text.append(f"{f.explanation}\n", style="italic")
        self._detail("#nat-text", text)

    # -- events ------------------------------------------------------------------------------
    @on(PagedTable.RowHighlighted, "#findings-table")
    def _finding_highlighted(self, event: PagedTable.RowHighlighted) -> None:
        self._show_finding(event.cursor_row)

    @on(PagedTable.Paged)
    def _paged(self, event: PagedTable.Paged) -> None:
        self._update_info()

    @on(TabbedContent.TabActivated, "#panels")
    def _panel_changed(self) -> None:
        self._fill_panel(self.query_one("#panels", TabbedContent).active)  # a tab clicked
        self._update_info()

    @on(Input.Submitted, "#diag-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        # the box closes (the info line names the filter applied); `/` opens it on that text
        self._filter = v.parse_filter(event.value)
        self._focus_panel()
        self.query_one("#diag-filter", FilterBox).close()
        self._apply_filter()

    @on(PagedTable.RowSelected, "#findings-table")
    def _finding_selected(self, event: PagedTable.RowSelected) -> None:
        self.action_plan()

    @on(PagedTable.RowHighlighted, "#pods-table")
    def _pod_highlighted(self, event: PagedTable.RowHighlighted) -> None:
        key = event.row_key
        if not key:
            return
        diagnosis = self.wizard.state.diagnosis
        log = v.pod_log_text(diagnosis, key,
                             self._pods_by_key if diagnosis is self._shown else None)
        if log is not None:
            self._detail("#pod-log", self._pod_log_text(key, log))
        else:
            ns, name = key.split("/", 1)
            self._detail("#pod-log", Text(f"Reading {key}'s log…", style="dim"))
            self._read_pod_log(ns, name)

    @on(PagedTable.RowHighlighted, "#routes-nodes")
    def _route_node_highlighted(self, event: PagedTable.RowHighlighted) -> None:
        self._show_routes(event.row_key)

    @on(PagedTable.RowHighlighted, "#nat-nodes")
    def _nat_node_highlighted(self, event: PagedTable.RowHighlighted) -> None:
        self._show_nat(event.row_key)

    # -- actions -----------------------------------------------------------------------------
    def action_panel(self, panel: str) -> None:
        # focus inside the panel being hidden would move to its next widget, and TabbedContent
        # would switch back to that panel: take the focus along to the new one
        inside = self.focused is not None and any(isinstance(a, TabPane)
                                                  for a in self.focused.ancestors)
        self._fill_panel(panel)  # before it shows: never a frame of the old rows
        self.query_one("#panels", TabbedContent).active = panel
        self._underline_now()
        if inside:
            self._focus_panel()
        self._update_info()

    def _underline_now(self) -> None:
        """Move the tab underline under the active tab now, in the frame that shows its panel.
        Textual's Tabs moves it after the next refresh (the tab's place may be unknown before a
        layout pass): a second repaint for every panel switch. The tabs' places never change
        here (fixed labels, laid out with the screen); Tabs' own move then finds it in place."""
        tabs = self.query_one("#panels ContentTabs", Tabs)
        tab = tabs.active_tab
        if tab is None or not tab.region or self.app.animation_level != "none":
            return  # not laid out yet, or animated: left to Tabs
        start, end = tab.virtual_region.shrink(tab.styles.gutter).column_span
        underline = tabs.query_one(Underline)
        underline.highlight_start, underline.highlight_end = start, end

    def _focus_panel(self) -> None:
        panel = self.query_one("#panels", TabbedContent).active
        widget = _TABLES.get(panel)
        if widget:
            self.query_one(widget).focus()

    def action_filter(self) -> None:
        box = self.query_one("#diag-filter", FilterBox)
        box.open()
        self._update_info()  # the line shown (if it was not) before the box takes the focus
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#diag-filter", FilterBox)
        had = not self._filter.empty or box.is_open
        if box.value:
            box.value = ""
        if had:
            self._focus_panel()
        box.close()
        if not self._filter.empty:
            self._filter = v.parse_filter("")
            self._apply_filter()
        else:
            self._update_info()

    def action_page(self, delta: int) -> None:
        """`[` / `]` turn the page of the panel's table, wherever the focus is."""
        panel = self.query_one("#panels", TabbedContent).active
        table = _TABLES.get(panel)
        if table:
            self.query_one(table, PagedTable).action_page(delta)

    def action_expand(self) -> None:
        """Open a grouped finding into every node's own finding, or close it again."""
        if self.query_one("#panels", TabbedContent).active != "findings":
            return
        t = self.query_one("#findings-table", PagedTable)
        row = t.item_at_cursor()
        if row is None or not row.group.grouped:
            return
        key = row.group.key
        if key in self._expanded:
            self._expanded.discard(key)
        else:
            self._expanded.add(key)
        rows = v.finding_rows(self._groups, self._expanded)
        at = next(i for i, r in enumerate(rows) if r.group.key == key and not r.member)
        t.set_items(rows, self._finding_cells, at=at)
        self._show_finding(t.cursor_row)
        self._update_info()

    def action_refresh(self) -> None:
        self.query_one("#diag-status", Static).update(Text("Diagnosing again…", style="dim"))
        self.query_one("#panels").loading = True
        self._diagnose_cluster()

    def action_plan(self) -> None:
        if self.wizard.state.diagnosis is None:
            self.notify("Wait for the diagnosis to finish", severity="warning")
            return
        self.wizard.open_plan()

    def _selected_node(self) -> str | None:
        panel = self.query_one("#panels", TabbedContent).active
        try:
            if panel == "findings":
                row = self.query_one("#findings-table", PagedTable).item_at_cursor()
                if row is not None:
                    node = row.finding.node
                    return None if node == CLUSTER else node
            elif panel in ("nodes", "pods"):
                t = self.query_one(f"#{panel}-table", PagedTable)
                row = t.get_row_at(t.cursor_row)
                return str(row[0] if panel == "nodes" else row[1])
            elif panel == "routes":
                return self._route_node
            elif panel == "nat":
                return self._nat_node
        except Exception:  # noqa: BLE001 - an empty table has no cursor row
            return None
        return None

    def action_trace(self) -> None:
        """The trace screen prefilled with the VXLAN flow into the selected node (docs/trace.md)."""
        from clusterfix_tui.core.trace import trace_for_finding
        from clusterfix_tui.ui.screens.trace import TraceScreen

        node = self._selected_node() or self._route_node
        flow = trace_for_finding(node or "", sorted(v.facts_of(self.wizard.state.diagnosis)))
        if flow is None:
            self.notify("Select a node (or a node's finding) first", severity="warning")
            return
        self.app.push_screen(TraceScreen(*flow, run=False, why=f"a flow into {node}"))

    def action_netfilter(self) -> None:
        from clusterfix_tui.ui.screens.netfilter import NetfilterScreen

        facts = v.facts_of(self.wizard.state.diagnosis)
        if not facts:
            self.notify("Wait for the diagnosis to finish", severity="warning")
            return
        self.app.push_screen(NetfilterScreen(facts, self._selected_node() or self._route_node))

    def action_raw(self) -> None:
        node = self._selected_node() or self._route_node
        if not node:
            self.notify("Select a node first", severity="warning")
            return
        facts = v.facts_of(self.wizard.state.diagnosis).get(node)
        outputs = {cmd: self.wizard.redact(text) for cmd, text in v.raw_outputs(facts).items()}
        self.app.push_screen(RawOutputScreen(node, outputs))

    def worker_failed(self, worker) -> None:
        if worker.group == "diagnose":
            self.query_one("#panels").loading = False
            self.query_one("#diag-status", Static).update(
                Text(f"Diagnosis failed: {worker.error}. Press r to retry.", style="bold red"))


def _finding_head(text: Text, code: str, severity: str, where: str, step: str | None,
                  title: str) -> None:
    text.append(code, style=v.SEVERITY_STYLE.get(severity, "bold"))
    text.append(f"  {where}  ")
    text.append(f"fixed by step: {step}" if step else "reported only (no step)",
                style="bold cyan" if step else "dim")
    text.append(f"\n{title}\n")


def _finding_body(text: Text, f: Any, evidence_from: str | None = None) -> None:
    """Explanation, evidence (of node `evidence_from`, when said) and reference of a finding."""
    if f.explanation:
        text.append(f"{f.explanation}\n", style="italic")
    if evidence_from and f.evidence:
        text.append(f"evidence on {evidence_from}:\n", style="dim")
    for line in f.evidence:
        text.append("  │ ", style="dim")
        text.append(f"{line}\n", style="yellow")
    reference = (f.reference or "").strip()
    if reference:  # never an empty "ref:" line
        text.append(f"ref: {reference}", style="dim")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _no_control(text: Text) -> Text:
    """`text` with every control character (an ESC of a name's escape sequence: Rich keeps it
    and the terminal would read it) shown as U+FFFD: the same length, so its styles stay put."""
    plain = text.plain
    if _CONTROL.search(plain):
        text.plain = _CONTROL.sub("\ufffd", plain)
    return text


def _node_cell(node: str) -> tuple[str, list[str]]:
    return node, [node]
