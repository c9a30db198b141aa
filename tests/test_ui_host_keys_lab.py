"""The wizard's host-key screen over real sshd (#14 item 3): a lab reached as `ops` through a
bastion, with a known_hosts that knows none of the keys (and holds a wrong key for node-2).
The bastion's key is one row for all three nodes; once accepted, the nodes' own keys are asked
on one screen, node-2's changed key is refused, and only what the user accepted is appended."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest
from lab_helpers import running_lab
from textual.widgets import DataTable, Static
from ui_fakes import settle

from clusterfix_tui.commands.tui import make_session_factory
from clusterfix_tui.ui.app import ClusterfixApp
from clusterfix_tui.ui.screens.connect import ConnectScreen
from clusterfix_tui.ui.screens.diagnostics import DiagnosticsScreen
from clusterfix_tui.ui.screens.modals import HostKeysModal

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory, prefix="hostkeys", nodes=3, faults="none", ssh_user="ops", bastion=True, timeout=240) as handle:
        yield handle


def _lab_keys(lab) -> dict[str, tuple[str, str, str]]:
    """host -> (key type, `ssh-keygen -lf` fingerprint, "type base64") from the lab's own
    known_hosts (what the lab's sshds were given)."""
    out = {}
    for line in (lab.dir / "known_hosts").read_text().splitlines():
        names, key_type, blob = line.split()[:3]
        fp = subprocess.run(["ssh-keygen", "-lf", "-"], input=f"{key_type} {blob}\n",
                            capture_output=True, text=True, check=True).stdout.split()[1]
        out[names.split(",")[0]] = (key_type, fp, f"{key_type} {blob}")
    return out


async def test_host_keys_of_a_bastion_and_its_nodes_over_real_sshd(lab, tmp_path: Path) -> None:
    keys = _lab_keys(lab)
    known = tmp_path / "known_hosts"
    node2_ip = lab.node("node-2")["ip"]
    # node-2 is recorded with node-1's key: the key node-2 offers is a CHANGED key
    known.write_text(f"{node2_ip} {keys['node-1'][2]}\n")
    config = tmp_path / "ssh_config"
    config.write_text((lab.dir / "ssh_config").read_text().replace(
        str(lab.dir / "known_hosts"), str(known)))
    args = argparse.Namespace(kubeconfig=None, context=None, ssh_config=str(config),
                              dry_run=False, no_local=True)
    runtimes: list = []
    app = ClusterfixApp(session_factory=make_session_factory(args, str(lab.dir),
                                                             str(tmp_path / "j.jsonl"), runtimes),
                        journal_path=tmp_path / "j.jsonl", report_dir=tmp_path)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, HostKeysModal), app.state.conns
            assert [(k.host, k.key_type, k.fingerprint, set(k.nodes)) for k in modal.keys] == [
                ("bastion", keys["bastion"][0], keys["bastion"][1], {"node-1", "node-2", "node-3"})]
            assert modal.keys[0].address == f"{lab.info['bastion']['ip']}:22"
            await pilot.press("a")
            await settle(pilot)

            modal = app.screen
            assert isinstance(modal, HostKeysModal), app.state.conns
            rows = {k.host: (k.address, k.key_type, k.fingerprint) for k in modal.keys}
            assert rows == {n: (f"{lab.node(n)['ip']}:22", keys[n][0], keys[n][1])
                            for n in ("node-1", "node-3")}
            assert "node-2" in str(modal.query_one("#host-keys-changed", Static).render())
            table = modal.query_one("#host-keys-table", DataTable)
            table.move_cursor(row=[k.host for k in modal.keys].index("node-3"))
            await pilot.press("space")
            await pilot.press("y")
            await settle(pilot)

            assert isinstance(app.screen, ConnectScreen)
            states = {n: c.state for n, c in app.state.conns.items()}
            assert states == {"node-1": "host-key-unknown", "node-2": "host-key-changed",
                              "node-3": "connected"}, app.state.conns
            assert app.state.left_out == {"node-1": "host key refused by the user"}
            lines = known.read_text().splitlines()
            assert lines == [f"{node2_ip} {keys['node-1'][2]}",
                             f"{lab.info['bastion']['ip']} {keys['bastion'][2]}",
                             f"{lab.node('node-3')['ip']} {keys['node-3'][2]}"], lines
            await pilot.press("c")
            await settle(pilot)
            assert isinstance(app.screen, DiagnosticsScreen)
            assert set(app.state.diagnosis.facts) == {"node-3"}
    finally:
        for runtime in runtimes:
            runtime.close()
