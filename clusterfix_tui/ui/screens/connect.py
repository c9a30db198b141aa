"""Preflight: the cluster's API, then every node's SSH state filling in live."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Static

from clusterfix_tui.ui import messages as m
from clusterfix_tui.ui.screens.base import WizardScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal
from clusterfix_tui.ui.view import SSH_STATE_STYLE, pick

FAILED_STATES = ("auth-failed", "unreachable", "host-key-changed", "sudo-password", "error")


class ConnectScreen(WizardScreen):
    CAN_GO_BACK = False
    HELP = """\
## Connect
The wizard checks the Kubernetes API, then opens SSH to every node in parallel.
A node with an unknown host key asks you to accept (adds it to the known_hosts in use) or
refuse (the node is left out). Continue once at least one node is connected; the nodes left
out are named in the report.

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
        self._host_key_queue: list[str] = []
        self._asking = False
        self._connect_done = False

    def compose_body(self) -> ComposeResult:
        with Vertical(id="connect-body"):
            yield Static("Reading the kubeconfig…", id="cluster-info", classes="panel")
            table: DataTable = DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
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
          description="Accepting a host key")
    def _accept_host_key(self, node: str) -> None:
        self.post_message(m.NodeConnected(self.wizard.flow.accept_host_key(node)))

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
        if conn.state == "host-key-unknown" and conn.node not in self._host_key_queue:
            self._host_key_queue.append(conn.node)
            self._ask_next_host_key()
        self._update_continue()

    def on_connect_finished(self, event: m.ConnectFinished) -> None:
        self._connect_done = True
        for conn in event.conns:
            if conn.node not in self.wizard.state.conns or \
                    self.wizard.state.conns[conn.node].state == "pending":
                self.wizard.state.conns[conn.node] = conn
                self._show_conn(conn)
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
            and not self._host_key_queue
        self.query_one("#continue", Button).disabled = not ready
        conns = self.wizard.state.conns.values()
        counts: dict[str, int] = {}
        for c in conns:
            counts[c.state] = counts.get(c.state, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        status = self.query_one("#connect-status", Static)
        if not self._connect_done:
            status.update(Text(f"Connecting… {summary}", style="dim"))
        elif ready:
            status.update(Text(f"{summary}. Press c to continue.", style="green"))
        elif self._host_key_queue or self._asking:
            status.update(Text(f"{summary}. Answer the host key question.", style="yellow"))
        else:
            status.update(Text(f"{summary}. No node answers: fix SSH and press r to retry.",
                               style="bold red"))
        self.refresh_bindings()

    def _ask_next_host_key(self) -> None:
        if self._asking or not self._host_key_queue:
            return
        node = self._host_key_queue[0]
        conn = self.wizard.state.conns[node]
        key = conn.host_key
        if isinstance(key, str):  # RepairSession gives "ssh-ed25519 SHA256:..."
            key_type, _, fingerprint = key.partition(" ")
        else:
            key_type = pick(key, "key_type", default="?")
            fingerprint = pick(key, "fingerprint", default="?")
        body = Text()
        body.append(f"{node} ({conn.address}) presented a host key that is not in known_hosts.\n\n")
        body.append("key type     ", style="bold")
        body.append(f"{key_type or '?'}\n")
        body.append("fingerprint  ", style="bold")
        body.append(f"{fingerprint or '?'}\n\n", style="bold yellow")
        body.append("Compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the node.\n"
                    "Accept adds it to the known_hosts in use; refuse leaves the node out.")
        self._asking = True

        def answered(accepted: bool | None) -> None:
            self._asking = False
            self._host_key_queue.remove(node)
            if accepted:
                self.wizard.log_event(f"{node}: host key accepted by the user", "green")
                self._accept_host_key(node)
            else:
                self._leave_out_nodes({node: "host key refused by the user"})
            self._update_continue()
            self._ask_next_host_key()

        self.app.push_screen(
            ConfirmationModal(f"Unknown host key: {node}", body, yes="Accept", no="Refuse",
                              id=f"host-key-{node}"),
            answered,
        )

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
        self.wizard.state.conns.clear()
        self.query_one("#nodes", DataTable).clear()
        self._update_continue()
        self._connect_cluster()

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.app.action_quit_wizard()  # type: ignore[attr-defined]

    def worker_failed(self, worker) -> None:
        if worker.group == "connect":
            self._connect_done = True
            self.query_one("#cluster-info", Static).update(
                Text(f"Cannot reach the cluster: {worker.error}", style="bold red"))
            self._update_continue()
