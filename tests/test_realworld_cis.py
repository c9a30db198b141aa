"""The CIS sample's plan run for real: a network namespace made for the test gets flannel's
iptables-nft FORWARD rules and the CIS script's native base chains in `table ip filter` (the
quoted commands), the planned accepts go in, the rollbacks take them out: the ruleset is back
exactly as it was."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

DATA = Path(__file__).parent / "data" / "realworld"
FLANNEL_FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
"""


@pytest.mark.lab
def test_cis_plan_applies_and_rolls_back_on_real_nft(tmp_path):
    from fix_helpers import del_netns, new_netns, ns
    from test_realworld import BY_FILE, _Diag, cis_node

    from clusterfix_tui.core.checks import run_checks
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import default_approved

    snap, f = cis_node(BY_FILE["cis-nftables-base-chains.nft.json"])
    findings, _ = run_checks(snap, {"node-a": f})
    name = new_netns()
    try:
        (tmp_path / "f.rules").write_text(FLANNEL_FILTER)
        ns(name, f"iptables-nft-restore < {shlex.quote(str(tmp_path / 'f.rules'))} && "
                 "log_action() { :; } && "
                 f". {shlex.quote(str(DATA / 'cis-nftables-base-chains-commands.sh'))}")
        before = ns(name, "nft list ruleset 2>/dev/null")
        assert "chain forward" in before and "policy drop" in before
        done = []
        for step in ("host_network", "iptables"):
            plan = get_step(step).plan(_Diag(findings, {"node-a": f}, snap))
            approved = set(default_approved(plan))
            for a in plan.actions:
                if a.id not in approved:
                    continue
                cmd = a.command
                m = re.search(r"mkdir -p -m 700 (\S+)", cmd)
                if m:
                    cmd = cmd.replace(m.group(1), shlex.quote(str(tmp_path / step)))
                ns(name, cmd)
                done.append(a)
        during = ns(name, "nft list ruleset 2>/dev/null")
        for want in ('udp dport 8472 accept comment "clusterfix: vxlan-in"',
                     'ip saddr 10.244.0.0/16 accept comment "clusterfix: pods-forward"'):
            assert want in during, during
        for a in reversed(done):
            if a.rollback is not None and "nft" in a.rollback.command:
                ns(name, a.rollback.command)
        assert ns(name, "nft list ruleset 2>/dev/null") == before
    finally:
        del_netns(name)
