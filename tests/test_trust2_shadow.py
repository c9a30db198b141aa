"""trust2: KUBE_PROXY_SHADOWED's plan (core/fixes/kube_proxy_jump.py), reviewed as a hostile
reviewer would: what is copied into `iptables -I` must be kube-proxy's own jump and nothing else,
and hostile rule texts from a save must reach iptables as exactly the argv shown, never the shell.

The commands are run for real (sh) against a fake `iptables-nft` on PATH that prints a chain as
`iptables -S` does and records the argv of every change."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from test_faultvar_net2 import JUMP, _facts, _nat_text, _shadowed, _with_nat

from clusterfix_tui.core.checks.iptables import ShadowedData
from clusterfix_tui.core.fixes import get_step, kube_proxy_jump

ACCEPT = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"


def test_a_narrower_jump_to_kube_services_is_not_taken_for_kube_proxys() -> None:
    """Someone's `-s NET -j KUBE-SERVICES` between the shadowing rule and kube-proxy's jump was
    taken as kube-proxy's jump (the first rule to KUBE-SERVICES): the fix copied it ahead of the
    ACCEPT, which repairs Service traffic from NET only, while the plan said 'kube-proxy's own
    jump (its exact text)'. kube-proxy's own is copied now."""
    facts = _facts()
    narrow = "-A PREROUTING -s 10.1.0.0/16 -j KUBE-SERVICES"
    (f,) = _shadowed(_with_nat(facts, _nat_text(facts, ACCEPT, narrow)))
    assert f.data.jump == JUMP, f.data.jump
    plan = get_step("iptables").plan(_Diag([f], {"a": facts}))
    (ins,) = [a for a in plan.actions if " -I PREROUTING " in a.command]
    inserted = ins.command.split(" -I PREROUTING ")[1]
    assert "'kubernetes service portals'" in inserted and "10.1.0.0/16" not in inserted


class _Diag:
    def __init__(self, findings, facts) -> None:
        self.findings, self.facts, self.snapshot, self.extra = findings, facts, None, {}


@pytest.mark.parametrize("jump", [
    "-A PREROUTING -s 10.1.0.0/16 -j KUBE-SERVICES",
    "-A PREROUTING -m comment --comment x -j DROP -j KUBE-SERVICES",
    "-A PREROUTING -m mark --mark 0x1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    "-A PREROUTING -m comment --comment a --comment b -j KUBE-SERVICES",
])
def test_only_kube_proxys_form_of_the_jump_is_ever_inserted(jump: str) -> None:
    d = ShadowedData(backend="nft", ip_version=4, builtin="PREROUTING", rule=ACCEPT, via=ACCEPT,
                     jump=jump, services=["default/x"], binary="iptables-nft")
    assert kube_proxy_jump.jump_ahead(d, "-w", "iptables:a:1", "a") is None


# -- hostile texts, run for real against a fake iptables-nft -----------------------------------

FAKE = r"""#!/bin/sh
# -w / -t nat come first; the chain listing is the file; changes are recorded, one argv a line
while [ "$1" = -w ] || [ "$1" = -t ]; do [ "$1" = -t ] && shift; shift; done
case "$1" in
  -S) cat "$CFX_CHAIN" ;;
  -I|-D) for a in "$@"; do printf '%s\037' "$a"; done >> "$CFX_LOG"; printf '\n' >> "$CFX_LOG" ;;
  -C) exit 1 ;;
  *) exit 2 ;;
esac
"""

HOSTILE = ["$(touch {c})", "`touch {c}`", "x'; touch {c}; '", "a\\\" ; touch {c} ; \\\"",
           "é😀\u202e;touch {c}", "A" * 2000 + "$(touch {c})", "-j DROP", "--", "*"]


def _save_quoted(value: str) -> str:
    """A comment as iptables-save prints it: in double quotes, `\\` and `"` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fake_iptables(tmp_path):
    """(run(script), logged(), chain file): sh with a fake iptables-nft on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "iptables-nft").write_text(FAKE)
    (bindir / "iptables-nft").chmod(0o755)
    chain, log = tmp_path / "chain", tmp_path / "log"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "CFX_CHAIN": str(chain), "CFX_LOG": str(log)}

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                              timeout=30, check=False)

    def logged() -> list[list[str]]:
        text = log.read_text() if log.exists() else ""
        return [ln.split("\037")[:-1] for ln in text.splitlines() if ln]

    return run, logged, chain


def test_rollback_never_removes_a_copy_of_the_jump_that_was_there_before(tmp_path) -> None:
    """A chain that held kube-proxy's jump twice already (an admin's `iptables-restore --noflush`
    of a saved ruleset) when the plan read it: the rollback removed a copy whenever it saw two,
    so one of the node's own copies went even when the action had inserted nothing (it failed,
    or found the rule gone). It now removes one only past the copies the plan saw."""
    facts = _facts()
    text = _nat_text(facts, ACCEPT).replace(JUMP, f"{JUMP}\n{JUMP}", 1)
    (f,) = _shadowed(_with_nat(facts, text))
    assert f.data.jump == JUMP and f.data.jump_copies == 2
    fields = kube_proxy_jump.jump_ahead(f.data, "-w", "iptables:a:1", "a")
    assert fields is not None
    run, logged, chain = _fake_iptables(tmp_path)
    rb = fields["rollback"]
    chain.write_text(f"-P PREROUTING ACCEPT\n{ACCEPT}\n{JUMP}\n{JUMP}\n")  # nothing inserted
    assert run(rb.precondition.command).returncode == 3  # done: nothing of ours to remove
    assert run(rb.command).returncode == 0 and logged() == []
    chain.write_text(f"-P PREROUTING ACCEPT\n{JUMP}\n{ACCEPT}\n{JUMP}\n{JUMP}\n")  # inserted
    assert run(rb.precondition.command).returncode == 0
    assert run(rb.command).returncode == 0 and logged() == [["-D", "PREROUTING", *shlex.split(JUMP)[2:]]]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_rule_and_jump_texts_reach_iptables_as_exactly_their_argv(tmp_path, i: int) -> None:
    canary = tmp_path / "canary"
    value = HOSTILE[i].format(c=canary)
    rule = f"-A PREROUTING -m comment --comment {_save_quoted(value)} -j ACCEPT"
    jump = f"-A PREROUTING -m comment --comment {_save_quoted(value + 'k')} -j KUBE-SERVICES"
    d = ShadowedData(backend="nft", ip_version=4, builtin="PREROUTING", rule=rule, via=rule,
                     jump=jump, services=["default/x"], binary="iptables-nft")
    fields = kube_proxy_jump.jump_ahead(d, "-w", "iptables:a:1", "a")
    assert fields is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "iptables-nft").write_text(FAKE)
    (bindir / "iptables-nft").chmod(0o755)
    chain, log = tmp_path / "chain", tmp_path / "log"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "CFX_CHAIN": str(chain), "CFX_LOG": str(log)}

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                              timeout=30, check=False)

    def logged() -> list[list[str]]:
        text = log.read_text() if log.exists() else ""
        return [ln.split("\037")[:-1] for ln in text.splitlines() if ln]

    chain.write_text(f"-P PREROUTING ACCEPT\n{rule}\n{jump}\n")
    assert run(fields["precondition"].command).returncode == 0
    r = run(fields["command"])
    assert r.returncode == 0, r.stderr
    body = shlex.split(jump)[2:]
    assert logged() == [["-I", "PREROUTING", "1", *body]]
    assert body[3] == value + "k"  # the comment arrived whole, as the save printed it
    # the rollback, with the copy in place, deletes exactly that text (the first copy)
    chain.write_text(f"-P PREROUTING ACCEPT\n{jump}\n{rule}\n{jump}\n")
    rb = fields["rollback"]
    assert run(rb.precondition.command).returncode == 0
    assert run(rb.command).returncode == 0
    assert logged()[1] == ["-D", "PREROUTING", *body]
    # with kube-proxy's own jump alone, the rollback removes nothing
    chain.write_text(f"-P PREROUTING ACCEPT\n{rule}\n{jump}\n")
    assert run(rb.command).returncode == 0 and len(logged()) == 2
    assert not canary.exists() and not os.path.exists(str(canary))


def test_two_rules_shadowing_one_chain_get_two_opt_in_ids() -> None:
    """Two foreign ACCEPTs ahead of kube-proxy's jump in PREROUTING are two findings, each with
    an opt-in 'delete this rule': both were `iptables:a:opt-in-delete-shadow-4-prerouting`
    (selecting one selected both; the journal and the rollback took them as one)."""
    from test_faultvar_net2 import _Diag as Diag

    facts = _facts()
    other = "-A PREROUTING -d 10.96.0.0/12 -j ACCEPT"
    bad = _with_nat(facts, _nat_text(facts, ACCEPT, other))
    fs = _shadowed(bad)
    assert len(fs) == 2
    plan = get_step("iptables").plan(Diag(fs, bad))
    ids = [a.id for a in plan.actions] + [a.rollback.id for a in plan.actions if a.rollback]
    assert len(ids) == len(set(ids)), ids
    opts = [a for a in plan.actions if a.opt_in]
    assert sorted(a.command.split(" -D PREROUTING ")[1] for a in opts) == sorted(
        r.split(" ", 2)[2] for r in (ACCEPT, other))


@pytest.mark.parametrize("backend,binary", [("nft; touch /tmp/x", ""), ("$(id)", "iptables-$(id)"),
                                            ("legacy", "/tmp/iptables")])
def test_an_unknown_backend_or_binary_never_reaches_the_command(backend: str, binary: str) -> None:
    """The iptables binary is put in the command unquoted (it is a command name): a finding read
    back from a journal with any other backend or binary made it shell text; now no action."""
    d = ShadowedData(backend=backend, ip_version=4, builtin="PREROUTING", rule=ACCEPT, via=ACCEPT,
                     jump=JUMP, services=["default/x"], binary=binary)
    got = kube_proxy_jump.jump_ahead(d, "-w 5", "iptables:a:1", "a")
    if backend == "legacy":  # a binary that is not one of the known names: the backend's own
        assert got is not None and got["command"].count("iptables-legacy -w 5 -t nat") == 2
        assert "/tmp/iptables" not in got["command"]
    else:
        assert got is None
        assert kube_proxy_jump.delete_rule(d, "-w 5", "x", "a", (1, None, None), "b") is None
