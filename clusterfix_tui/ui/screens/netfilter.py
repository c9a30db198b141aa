"""The netfilter map (issue 15): who filters each node's traffic and in what order.

Opened from the diagnostics screen (`n`, on the selected node). One row per base chain of every
table in every family and backend (iptables-legacy, iptables-nft, nft-native tables), ordered by
hook and priority, with the table's guessed owner (kube-proxy, flannel, firewalld, docker, ...),
the chain's policy and rule count. The data is core/netfilter_map.py's, built from what the
diagnosis already read (the same as `diagnose --json`'s `netfilter`): no command is run."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, OptionList, Static

from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.widgets.live_table import LiveTable

HOOKS = ("ingress", "prerouting", "input", "forward", "output", "postrouting")
BACKEND = {"iptables-legacy": "legacy", "iptables-nft": "ipt-nft", "nft": "nft"}


def map_rows(entries: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(hook, priority, backend (legacy | ipt-nft | nft), family table, owner, chain, policy,
    rules) per base chain, in packet order (hook, then priority); a table without base chains
    last."""
    rows: list[tuple[Any, ...]] = []
    for e in entries:
        for c in e.get("chains") or ():
            hook = str(c.get("hook") or "")
            rows.append((HOOKS.index(hook) if hook in HOOKS else 9, _prio(c.get("priority")),
                         hook, str(c.get("priority")), BACKEND.get(e["backend"], e["backend"]),
                         f"{e['family']} {e['table']}", e.get("owner") or "unknown",
                         str(c.get("chain")), str(c.get("policy") or "-"), str(c.get("rules"))))
        if not e.get("chains"):
            unread = bool(e.get("not_read"))  # present but not listed: nothing known of its chains
            rows.append((10, 0.0, "-", "-", BACKEND.get(e["backend"], e["backend"]),
                         f"{e['family']} {e['table']}",
                         e.get("owner") or "unknown",
                         "(not read)" if unread else f"({e.get('chain_count', 0)} chains)", "-",
                         "?" if unread else str(e.get("rules", 0))))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [tuple(r[2:]) for r in rows]


def _prio(p: Any) -> float:
    from clusterfix_tui.core.netfilter_map import _num

    return _num(p)


class NetfilterScreen(WizardScreen):
    HELP = """\
## Netfilter map
Every table on the node, in every family and backend (legacy: iptables-legacy, ipt-nft:
iptables-nft, nft: native nftables tables),
one row per base chain in the order a packet meets them (hook, then priority), with the owner
guessed from table, chain names and rule comments. Read from what the diagnosis gathered: nothing
is run. Select a node on the left.

| key | what |
|---|---|
| `escape` | back |
"""

    def __init__(self, facts_by_node: dict[str, Any], node: str | None = None) -> None:
        super().__init__(id="netfilter")
        self._facts = facts_by_node
        self._node = node if node in facts_by_node else next(iter(sorted(facts_by_node)), None)

    def compose_body(self) -> ComposeResult:
        yield Static("", id="netfilter-status")
        with Horizontal(id="netfilter-body"):
            yield OptionList(*sorted(self._facts), id="netfilter-nodes")
            table: DataTable = LiveTable(id="netfilter-table", cursor_type="row",
                                         zebra_stripes=True)
            table.border_title = "netfilter map"
            yield table

    def on_mount(self) -> None:
        t = self.query_one("#netfilter-table", DataTable)
        for key, width in (("hook", 11), ("prio", 5), ("backend", 7), ("table", 12),
                           ("owner", 10), ("chain", 14), ("policy", 6), ("rules", 5)):
            t.add_column(key, key=key, width=width)
        options = self.query_one("#netfilter-nodes", OptionList)
        options.styles.width = 12
        if self._node is not None:
            options.highlighted = sorted(self._facts).index(self._node)
            self._show(self._node)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(str(event.option.prompt))

    def _show(self, node: str) -> None:
        from clusterfix_tui.core.netfilter_map import netfilter_map

        self._node = node
        entries = netfilter_map(self._facts.get(node))
        t = self.query_one("#netfilter-table", DataTable)
        t.clear()
        for i, row in enumerate(map_rows(entries)):
            policy = row[6]
            t.add_row(*row[:6], Text(policy, style="bold red" if policy == "drop" else ""),
                      row[7], key=str(i))
        owners = sorted({e.get("owner") or "unknown" for e in entries})
        backends = sorted({e["backend"] for e in entries})
        self.query_one("#netfilter-status", Static).update(Text(
            f"{node}: {len(entries)} table(s) in {', '.join(backends) or 'no backend'}; "
            f"owners: {', '.join(owners) or '-'}", style="bold"))
