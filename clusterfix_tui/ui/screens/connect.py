"""Preflight: the cluster's API, then every node's SSH state filling in live."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Static

from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import HostKeysModal, UnknownHostKey
from clusterfix_tui.ui.view import SSH_STATE_STYLE, pick
from clusterfix_tui.ui.widgets.live_table import LiveTable

FAILED_STATES = ("auth-failed", "unreachable", "host-key-changed", "sudo-password", "error")
ACCEPT_WORKERS = 16  # nodes reconnected at once after their keys were accepted


class HostKeysAccepted(Message):
    """Every node of an accepted batch of host keys has reconnected (or failed)."""


def _key_parts(conn) -> tuple[str, str]:
    key = conn.host_key
    if isinstance(key, str):  # RepairSession gives "ssh-ed25519 SHA256:..."
        key_type, _, fingerprint = key.partition(" ")
        return key_type or "?", fingerprint or "?"
    return pick(key, "key_type", default="?") or "?", pick(key, "fingerprint", default="?") or "?"


def unknown_host_keys(conns) -> list[UnknownHostKey]:
    """The unknown keys of `conns` (host-key-unknown NodeConns), one per key: nodes behind the
    same jump host whose key is unknown share one row; a node's own key is its own row."""
    rows: dict[tuple[str, str, str], dict] = {}
    for conn in conns:
        key_type, fingerprint = _key_parts(conn)
        host = getattr(conn, "key_host", None) or conn.node
        address = getattr(conn, "key_address", None) or str(conn.address or "")
        row = rows.setdefault((host, key_type, fingerprint),
                              {"address": address, "nodes": []})
        row["nodes"].append(conn.node)
    return sorted((UnknownHostKey(host=h, address=r["address"], key_type=t, fingerprint=f,
                                  nodes=tuple(sorted(r["nodes"])))
                   for (h, t, f), r in rows.items()),
                  key=lambda k: (k.host, k.key_type, k.fingerprint))


class ConnectScreen(WizardScreen):
    CAN_GO_BACK = False
    HELP = """\
## Connect
The wizard checks the Kubernetes API, then opens SSH to every node in parallel.
Once every node has answered, the unknown host keys of all nodes show on ONE screen (node,
address, key type, SHA256 fingerprint): accept all (`a`), the ones you tick (`space`, then `y`)
or none (`n`). An accepted key is added to the known_hosts in use; a node whose key is refused
is left out. A CHANGED key is never offered: that node is refused. Continue once at least one
node is connected; the nodes left out are named in the report.

| key | what |
|---|---|
| `enter` / `c` | continue to diagnostics |
| `r` | retry the connections |
"""
    BINDINGS = [
        Binding("c", "continue", "Continue"),
        Binding("r", "retry", "Retry"),
    ]

    def __init__(self) -> None:
        super().__init__(id="connect")
        self._unknown: dict[str, object] = {}  # node -> its NodeConn, key not yet asked
        self._asked: set[tuple[str, str]] = set()  # (node, key) put to the user already
        self._asking = False
        self._accepting = False
        self._connect_done = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="connect-body"):
            yield Static("Reading the kubeconfig…", id="cluster-info", classes="panel")
            # a row per node as it connects: LiveTable draws them at their measured widths
            table: DataTable = LiveTable(id="nodes", cursor_type="row", zebra_stripes=True)
            table.border_title = "nodes over SSH"
            yield table
            yield Static("", id="connect-status")
            with Horizontal(classes="buttons"):
                yield Button("Continue \\[c]", id="continue", variant="primary", disabled=True,
                             compact=True)
                yield Button("Retry \\[r]", id="retry", compact=True)
                yield Button("Quit \\[q]", id="quit", compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#nodes", DataTable)
        table.add_column("node", key="node", width=12)
        table.add_column("address", key="address", width=15)
        table.add_column("SSH", key="state", width=17)
        table.add_column("detail", key="detail")
        self._connect_cluster()

    # -- worker ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="connect",
          description="Connecting to the cluster")
    def _connect_cluster(self) -> None:
        flow = self.wizard.ensure_session()
        self.post_message(m.ClusterInfoLoaded(flow.cluster_info()))
        conns = flow.connect(on_node=lambda conn: self.post_message(m.NodeConnected(conn)))
        self.post_message(m.ConnectFinished(list(conns)))

    @work(thread=True, exclusive=False, exit_on_error=False, group="host-key",
          description="Accepting host keys")
    def _accept_host_keys(self, nodes: list[str]) -> None:
        import concurrent.futures

        flow = self.wizard.flow
        try:
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(1, min(ACCEPT_WORKERS, len(nodes)))) as ex:
                for conn in ex.map(flow.accept_host_key, nodes):
                    self.post_message(m.NodeConnected(conn))
        finally:
            self.post_message(HostKeysAccepted())

    @work(thread=True, exclusive=True, exit_on_error=False, group="leave-out",
          description="Leaving nodes out")
    def _leave_out_nodes(self, nodes: dict[str, str]) -> None:
        for node, reason in nodes.items():
            self.wizard.flow.leave_out(node, reason)
        self.post_message(m.NodesLeftOut(nodes))

    # -- messages ----------------------------------------------------------------------------
    def on_cluster_info_loaded(self, event: m.ClusterInfoLoaded) -> None:
        self.wizard.set_cluster_info(event.info)
        info = event.info
        text = Text()
        for label, key in (("context", "context"), ("API server", "server"),
                           ("version", "version"), ("nodes", "node_count")):
            text.append(f"{label:>11}  ", style="bold")
            text.append(f"{info.get(key, '?')}\n")
        if info.get("kubeconfig"):
            text.append(f"{'kubeconfig':>11}  ", style="bold")
            text.append(f"{info['kubeconfig']} (from {info.get('kubeconfig_source') or '?'})\n")
        text.append(f"{'API':>11}  ", style="bold")
        text.append("reachable", style="bold green")
        self.query_one("#cluster-info", Static).update(text)
        self.wizard.log_event(f"API {info.get('server')} reachable, version {info.get('version')}")

    def on_node_connected(self, event: m.NodeConnected) -> None:
        conn = event.conn
        self.wizard.state.conns[conn.node] = conn
        self._show_conn(conn)
        self.wizard.log_event(f"{conn.node}: SSH {conn.state} {conn.detail}".rstrip())
        if conn.state == "host-key-unknown" and (conn.node, str(conn.host_key)) not in self._asked:
            self._unknown[conn.node] = conn
        else:
            self._unknown.pop(conn.node, None)
        self._ask_host_keys()
        self._update_continue()

    def on_connect_finished(self, event: m.ConnectFinished) -> None:
        self._connect_done = True
        for conn in event.conns:
            if conn.node not in self.wizard.state.conns or \
                    self.wizard.state.conns[conn.node].state == "pending":
                self.wizard.state.conns[conn.node] = conn
                self._show_conn(conn)
        self._ask_host_keys()
        self._update_continue()

    def on_host_keys_accepted(self, event: HostKeysAccepted) -> None:
        self._accepting = False
        self._ask_host_keys()  # e.g. the nodes' own keys, now that their jump host's is known
        self._update_continue()

    def on_nodes_left_out(self, event: m.NodesLeftOut) -> None:
        self.wizard.state.left_out.update(event.nodes)
        for node, reason in event.nodes.items():
            self.wizard.log_event(f"{node} left out: {reason}", "yellow")
        if getattr(self, "_continuing", False):
            self.wizard.start_diagnostics()

    # -- helpers -----------------------------------------------------------------------------
    def _show_conn(self, conn) -> None:
        table = self.query_one("#nodes", DataTable)
        state = "left-out" if conn.node in self.wizard.state.left_out else conn.state
        detail = str(conn.detail or "")
        if getattr(conn, "transport", "ssh") == "local" and state == "connected":
            state, detail = "local", detail or "this machine: read and repaired without SSH"
        cells = (conn.node, str(conn.address or ""), Text(state, style=SSH_STATE_STYLE.get(state, "")),
                 detail)
        if conn.node in table.rows:
            for key, value in zip(("node", "address", "state", "detail"), cells, strict=False):
                table.update_cell(conn.node, key, value)
        else:
            table.add_row(*cells, key=conn.node)

    def _connected(self) -> list[str]:
        return [n for n, c in self.wizard.state.conns.items()
                if c.state == "connected" and n not in self.wizard.state.left_out]

    def _update_continue(self) -> None:
        ready = self._connect_done and bool(self._connected()) and not self._asking \
            and not self._unknown and not self._accepting
        self.query_one("#continue", Button).disabled = not ready
        conns = self.wizard.state.conns.values()
        counts: dict[str, int] = {}
        for c in conns:
            counts[c.state] = counts.get(c.state, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        status = self.query_one("#connect-status", Static)
        if not self._connect_done:
            later = (f"; {len(self._unknown)} unknown host key(s), asked together once every "
                     f"node has answered" if self._unknown else "")
            status.update(Text(f"Connecting… {summary}{later}", style="dim"))
        elif ready:
            status.update(Text(f"{summary}. Press c to continue.", style="green"))
        elif self._accepting:
            status.update(Text(f"{summary}. Reconnecting with the accepted keys…", style="dim"))
        elif self._unknown or self._asking:
            status.update(Text(f"{summary}. Answer the host keys question.", style="yellow"))
        else:
            status.update(Text(f"{summary}. No node answers: fix SSH and press r to retry.",
                               style="bold red"))
        self.refresh_bindings()

    def _ask_host_keys(self) -> None:
        """One screen for every unknown key, once every node has answered (and no accepted batch
        is still reconnecting): not one dialog per node."""
        if self._asking or self._accepting or not self._connect_done or not self._unknown:
            return
        conns = list(self._unknown.values())
        self._unknown.clear()
        for conn in conns:
            self._asked.add((conn.node, str(conn.host_key)))
        keys = unknown_host_keys(conns)
        state = self.wizard.state
        changed = tuple(sorted(n for n, c in state.conns.items()
                               if c.state == "host-key-changed" and n not in state.left_out))
        self._asking = True

        def answered(accepted: list[str] | None) -> None:
            self._asking = False
            chosen = set(accepted or ())
            take = [n for k in keys if k.row_key in chosen for n in k.nodes]
            refuse = {n: "host key refused by the user" for k in keys
                      if k.row_key not in chosen for n in k.nodes}
            for k in keys:  # (a refused node's "left out" line says it is refused)
                if k.row_key in chosen:
                    self.wizard.log_event(
                        f"{k.host}: host key accepted by the user"
                        + (f" (jump host of {', '.join(k.nodes)})" if k.is_jump_host else ""),
                        "green")
            if refuse:
                self._leave_out_nodes(refuse)
            if take:
                self._accepting = True
                self._accept_host_keys(take)
            self._update_continue()

        self.app.push_screen(HostKeysModal(keys, changed=changed), answered)

    # -- actions -----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "continue":
            return None if self.query_one("#continue", Button).disabled else True
        return super().check_action(action, parameters)

    @on(Button.Pressed, "#continue")
    def action_continue(self) -> None:
        if self.query_one("#continue", Button).disabled:
            return
        state = self.wizard.state
        out = {n: f"SSH {c.state}: {c.detail}".rstrip(": ") for n, c in state.conns.items()
               if c.state != "connected" and n not in state.left_out}
        self._continuing = True
        if out:
            self._leave_out_nodes(out)
        else:
            self.wizard.start_diagnostics()

    @on(Button.Pressed, "#retry")
    def action_retry(self) -> None:
        self._connect_done = False
        self._unknown.clear()
        self._asked.clear()
        self.wizard.state.conns.clear()
        self.query_one("#nodes", DataTable).clear()
        self._update_continue()
        self._connect_cluster()

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.app.action_quit_wizard()  # type: ignore[attr-defined]

    def worker_failed(self, worker) -> None:
        if worker.group == "host-key":
            self._accepting = False
            self.wizard.log_event(f"accepting host keys failed: {worker.error}", "red")
            self._update_continue()
        if worker.group == "connect":
            self._connect_done = True
            self.query_one("#cluster-info", Static).update(
                Text(f"Cannot reach the cluster: {worker.error}", style="bold red"))
            self._update_continue()
