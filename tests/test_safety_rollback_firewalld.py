"""Rollback fidelity of a firewalld zone change: the fix opens the flow in the runtime and the
permanent config; the rollback removed it from both, so a port the admin had opened permanently
(not reloaded yet: the runtime lacked it, which is why the flow was dropped) was gone from the
permanent config after the rollback. Now the fix records whether it added the permanent entry and
the rollback removes only that. A stand-in `firewall-cmd` (a shell script keeping the runtime and
permanent zones in files, first on PATH) runs the planned commands as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_firewall_paths import HOST, Section, _diag, _facts, _fw_findings

from clusterfix_tui.core.fixes.engine import is_opt_in

FAKE = r"""#!/bin/sh
perm=; zone=public; op=; item=
for a in "$@"; do
  case "$a" in
    --permanent) perm=1 ;;
    --zone=*) zone=${a#--zone=} ;;
    --add-*|--remove-*|--query-*) op=${a%%=*}; item=${a#*=} ;;
  esac
done
if [ -n "$perm" ]; then f="$FAKE_FW/permanent"; else f="$FAKE_FW/runtime"; fi
touch "$f"
case "$op" in
  --add-*) grep -qx "$zone $item" "$f" && { echo "Warning: ALREADY_ENABLED" >&2; exit 0; }
           echo "$zone $item" >> "$f" ;;
  --remove-*) grep -vx "$zone $item" "$f" > "$f.n"; mv "$f.n" "$f" ;;
  --query-*) grep -qx "$zone $item" "$f" && { echo yes; exit 0; }; echo no; exit 1 ;;
esac
echo success
"""


@pytest.mark.parametrize("admin_permanent", [True, False])
def test_rollback_keeps_the_admins_permanent_entry(tmp_path: Path, admin_permanent: bool) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "firewall-cmd").write_text(FAKE)
    os.chmod(bindir / "firewall-cmd", 0o755)
    state = tmp_path / "fw"
    state.mkdir()
    (state / "runtime").write_text("")
    (state / "permanent").write_text("work 8472/udp\n" if admin_permanent else "")
    before = {f: (state / f).read_text() for f in ("runtime", "permanent")}

    extra = {"firewalld": Section("firewalld", None, "running\ndefault-zone: public\n"
                                  "internal\n  interfaces: eth1\nwork\n  interfaces: eth0\n",
                                  "", 0)}
    facts = {"node-2": _facts("firewalld", extra=extra)}
    plan = HOST.plan(_diag(_fw_findings(facts), facts))
    (act,) = [a for a in plan.actions if not is_opt_in(a)
              and a.command.startswith("firewall-cmd --zone=work --add-port=8472/udp")]
    dirs = re.findall(r"mkdir -p -m 700 (/var/backups/clusterfix/\S+)", act.command)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_FW": str(state)}

    def run(cmd: str) -> None:
        for d in dirs:
            cmd = cmd.replace(d, str(tmp_path / "backup"))
        assert "/var/backups" not in cmd
        subprocess.run(["sh", "-c", cmd], check=True, env=env, capture_output=True, timeout=30)

    run(act.command)
    assert "work 8472/udp" in (state / "runtime").read_text()
    assert "work 8472/udp" in (state / "permanent").read_text()
    run(act.rollback.command)
    assert {f: (state / f).read_text() for f in ("runtime", "permanent")} == before
