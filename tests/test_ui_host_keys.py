"""Host keys at scale in the wizard (#14 item 3): every unknown key of a connect round on ONE
screen (node, address, key type, SHA256 fingerprint), accepted all, some or none; changed keys
are never offered. On the recorded session (tests/ui_fakes.py: the real RepairSession, the real
HostKeyUnknown / HostKeyChanged with real ed25519/ECDSA keys from tests/data/host_keys.known).
The same screen over real sshd: tests/test_ui_host_keys_lab.py."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static
from ui_fakes import HOST_KEYS, make_app, settle

from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import ConfirmationModal, HostKeysModal

ALL = ("node-1", "node-2", "node-3")


def _rows(modal: HostKeysModal) -> list[tuple[str, str, str]]:
    table = modal.query_one("#host-keys-table", DataTable)
    out = []
    for i in range(table.row_count):
        _, host, key = (str(c) for c in table.get_row_at(i))
        out.append((host.splitlines()[0], key.splitlines()[0], key.splitlines()[1]))
    return out


async def _tick(pilot, modal: HostKeysModal, host: str) -> None:
    table = modal.query_one("#host-keys-table", DataTable)
    row = [k.host for k in modal.keys].index(host)
    table.move_cursor(row=row)
    await pilot.press("space")
    await pilot.pause()


async def test_unknown_keys_of_every_node_on_one_screen_accept_some(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=ALL)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, HostKeysModal), "one screen for all the unknown keys"
        assert sorted(_rows(modal)) == sorted((n, HOST_KEYS[n][0], HOST_KEYS[n][1]) for n in ALL)
        addresses = {k.host: k.address for k in modal.keys}
        assert all(addresses[n].startswith(str(app.state.conns[n].address)) for n in ALL)
        assert not modal.selected  # nothing is trusted without a decision
        await _tick(pilot, modal, "node-1")
        await _tick(pilot, modal, "node-3")
        await _tick(pilot, modal, "node-3")  # untick
        await _tick(pilot, modal, "node-3")  # and tick again
        assert "2 of 3 ticked" in str(modal.query_one("#host-keys-status", Static).render())
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen), "asked once, not once per node"
        assert session.accepted == {"node-1", "node-3"}
        assert session.fake_shells.known_hosts == [HOST_KEYS["node-1"][2], HOST_KEYS["node-3"][2]]
        assert session.left_out == {"node-2": "host key refused by the user"}
        assert {n: c.state for n, c in app.state.conns.items()} == {
            "node-1": "connected", "node-2": "host-key-unknown", "node-3": "connected"}
        notes = [e["text"] for e in session.events() if e["type"] == "note"]
        assert any("host key of node-1 accepted" in t and HOST_KEYS["node-1"][1] in t
                   for t in notes), notes
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, DiagnosticsScreen)
        assert set(app.state.diagnosis.facts) == {"node-1", "node-3"}


async def test_accept_all_and_refuse_all(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=ALL)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HostKeysModal)
        await pilot.press("a")
        await settle(pilot)
        assert session.accepted == set(ALL) and not session.left_out
        assert all(c.state == "connected" for c in app.state.conns.values())
    (tmp_path / "none").mkdir()
    app, session = make_app(tmp_path / "none", host_key_nodes=ALL)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HostKeysModal)
        await pilot.press("n")
        await settle(pilot)
        assert not session.accepted and not session.fake_shells.known_hosts
        assert set(session.left_out) == set(ALL)
        assert isinstance(app.screen, ConnectScreen)
        assert app.screen.query_one("#continue").disabled


async def test_a_jump_host_key_is_one_row_then_the_nodes_own_keys(tmp_path: Path) -> None:
    """Nodes behind one bastion whose key is unknown: one row for the bastion (accepted once,
    appended once); then the nodes' own unknown keys, on a second screen."""
    app, session = make_app(tmp_path, host_key_nodes=("node-2", "node-3"), via_bastion=ALL)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, HostKeysModal)
        assert [(k.host, k.address, k.key_type, k.fingerprint, set(k.nodes))
                for k in modal.keys] == [("bastion", "10.99.0.1:22", HOST_KEYS["bastion"][0],
                                          HOST_KEYS["bastion"][1], set(ALL))]
        assert "jump host of 3 nodes" in str(
            modal.query_one("#host-keys-table", DataTable).get_row_at(0)[1])
        await pilot.press("a")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, HostKeysModal), "the nodes' own keys, asked after the bastion's"
        assert sorted(k.host for k in modal.keys) == ["node-2", "node-3"]
        assert session.fake_shells.known_hosts == [HOST_KEYS["bastion"][2]]
        await _tick(pilot, modal, "node-2")
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ConnectScreen)
        assert session.fake_shells.known_hosts == [HOST_KEYS["bastion"][2],
                                                   HOST_KEYS["node-2"][2]]
        assert session.left_out == {"node-3": "host key refused by the user"}
        assert app.state.conns["node-1"].state == "connected"


async def test_a_changed_key_is_never_offered(tmp_path: Path) -> None:
    app, session = make_app(tmp_path, host_key_nodes=("node-1", "node-3"),
                            changed_key_nodes=("node-2",))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, HostKeysModal)
        assert sorted(k.host for k in modal.keys) == ["node-1", "node-3"]
        assert "node-2" in str(modal.query_one("#host-keys-changed", Static).render())
        await pilot.press("a")
        await settle(pilot)
        assert not isinstance(app.screen, (HostKeysModal, ConfirmationModal))
        assert session.accepted == {"node-1", "node-3"}
        assert app.state.conns["node-2"].state == "host-key-changed"
        await pilot.press("c")
        await settle(pilot)
        assert session.left_out["node-2"].startswith("SSH host-key-changed")
