"""The iptables step's alternative switch puts each alternative back as it was: ip6tables' own
state (auto, or manual on its value) is saved right before the change, not inferred from
iptables' (old code: iptables auto -> `--auto ip6tables`; iptables manual -> ip6tables set to
iptables' path with "ip6" in it, whatever ip6tables was). An ip6tables alternative that cannot be
read is left as it is. Run with the host's real update-alternatives in a private mount namespace
where /etc/alternatives, /var/lib/dpkg/alternatives, /var/log and /var/backups are copies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, snapshot
from test_fixes_worker_host import MountRunner

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.apply import apply_plan, rollback

STEP = get_step("iptables")
pytestmark = pytest.mark.skipif(
    shutil.which("update-alternatives") is None
    or not Path("/var/lib/dpkg/alternatives/ip6tables").exists(),
    reason="needs Debian's update-alternatives with iptables/ip6tables alternatives")


def _plan():
    f = finding("IPTABLES_BACKEND_CONFLICT", "node-3", "iptables", kube_proxy_backend="nft",
                other_backend="legacy", host_iptables="legacy",
                stale_chains={"nat": ["KUBE-SERVICES"]}, stale_rules={"nat": []},
                shadows_live_path=True, cosmetic=False, backend_evidence="nft",
                shadowing_rules=[])
    plan = STEP.plan(FakeDiagnosis([f], snapshot=snapshot()))
    (alt,) = [a for a in plan.actions if "update-alternatives --set iptables" in a.command]
    return plan, alt


def test_the_rollback_reads_ip6tables_state_from_its_own_record() -> None:
    _plan_, alt = _plan()
    assert "update-alternatives --query ip6tables" in alt.command
    assert "--set ip6tables /usr/sbin/ip6tables-legacy" not in alt.rollback.command


@pytest.fixture
def sandbox(tmp_path: Path):
    for src, name in (("/etc/alternatives", "etc-alt"), ("/var/lib/dpkg/alternatives", "admin")):
        subprocess.run(["cp", "-a", src, str(tmp_path / name)], check=True)
    for d in ("log", "backups"):
        (tmp_path / d).mkdir()
    name = new_netns()
    try:
        yield MountRunner(name, {"/etc/alternatives": str(tmp_path / "etc-alt"),
                                 "/var/lib/dpkg/alternatives": str(tmp_path / "admin"),
                                 "/var/log": str(tmp_path / "log"),
                                 "/var/backups": str(tmp_path / "backups")})
    finally:
        del_netns(name)


def _state(runner: MountRunner) -> str:
    r = runner.sh("for n in iptables ip6tables; do update-alternatives --query $n | "
                  "grep -E '^(Name|Status|Value):'; done")
    assert r.exit_code == 0, r.stderr
    return r.stdout


@pytest.mark.lab
@pytest.mark.parametrize("setup", [
    # iptables set by hand to legacy, ip6tables left on auto (old rollback: ip6tables manual legacy)
    "update-alternatives --set iptables /usr/sbin/iptables-legacy && "
    "update-alternatives --auto ip6tables",
    # both by hand, ip6tables on nft (old rollback: ip6tables-legacy)
    "update-alternatives --set iptables /usr/sbin/iptables-legacy && "
    "update-alternatives --set ip6tables /usr/sbin/ip6tables-nft",
])
def test_each_alternative_comes_back_as_it_was(sandbox: MountRunner, setup: str) -> None:
    assert sandbox.sh(setup).exit_code == 0
    before = _state(sandbox)
    plan, alt = _plan()
    out = apply_plan(plan, [alt.id], sandbox)
    assert out.status == "changed", out.to_dict()
    assert "Value: /usr/sbin/iptables-nft" in _state(sandbox)
    rb = rollback((plan, out), sandbox)
    assert rb.status == "changed", rb.to_dict()
    assert _state(sandbox) == before
