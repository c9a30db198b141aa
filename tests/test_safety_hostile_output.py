"""A hostile or broken node's bytes: escape sequences, carriage returns, NUL bytes, invalid UTF-8
(decoded with U+FFFD by the transports) and a 1 MB single line. What the command line prints
never drives the admin's terminal (the wizard's log pane and the reports already made control
characters visible); the facts parser takes them without raising and keeps the rest."""

from __future__ import annotations

import io

from diag_fakes import FACTS_DATA, SCRATCH_NONCE

from clusterfix_tui.commands._common import out, print_plan
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.model import Action, Plan

HOSTILE = "ok\x1b]0;owned\x07\x1b[2J\x1b[1A\rERASED\x00\x9b31m\ufffd end"


def _no_control(text: str) -> None:
    bad = [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7f <= ord(c) <= 0x9f]
    assert not bad, repr(text)


def test_cli_output_never_carries_control_characters() -> None:
    buf = io.StringIO()
    out(f"    [node-1] {HOSTILE}", buf)
    _no_control(buf.getvalue())
    assert "\\x1b]0;owned" in buf.getvalue() and "ERASED" in buf.getvalue()


def test_plan_with_a_node_derived_rule_text_prints_it_visibly() -> None:
    """A plan's command may carry text read from a node (a foreign nft rule's text)."""
    a = Action(id="iptables:n:1", target="n", kind="shell",
               command=f"nft delete rule ip nat X handle 4 # {HOSTILE}", why=HOSTILE)
    buf = io.StringIO()
    print_plan(Plan(step="iptables", title="t", actions=(a,)), buf)
    _no_control(buf.getvalue())
    assert "\\x1b[2J" in buf.getvalue()


def test_diagnose_progress_line_never_carries_control_characters(capsys) -> None:
    from clusterfix_tui.commands.diagnose import _progress

    cb = _progress(False)
    cb("node-error", "node\x1b[2J", f"lost: {HOSTILE}")
    _no_control(capsys.readouterr().err)


def test_facts_with_hostile_bytes_parse_without_raising() -> None:
    """Every section of a real capture corrupted the same way (escapes, NUL, U+FFFD, and a 1 MB
    line without a newline in the middle of the iptables save): parse_facts never raises, the
    sections are still read, the parse problems are in parse_errors, never an exception."""
    text = (FACTS_DATA / "node-a-healthy.out").read_text()
    big = "A" * (1 << 20)
    lines = []
    for ln in text.splitlines():
        lines.append(ln)
        if ln.startswith(("-A ", ":", "default", "{")):
            lines.append(HOSTILE)
        if ln.startswith("-A ") and big:
            lines.append(big)
            big = ""
    f = parse_facts("node-a", "\n".join(lines) + "\n", SCRATCH_NONCE)
    clean = parse_facts("node-a", text, SCRATCH_NONCE)
    assert set(f.sections) == set(clean.sections) and f.complete == clean.complete


def test_local_transport_caps_a_commands_output() -> None:
    """The local node's transport (this machine, no SSH) has the same cap: past it the command
    is killed and its output is never read as complete."""
    from clusterfix_tui.transports.limits import MAX_OUTPUT
    from clusterfix_tui.transports.local import LocalShell

    assert LocalShell.max_output == MAX_OUTPUT == 128 * 2**20
    sh = LocalShell("me")
    sh.max_output = 2**20
    res = sh.run("head -c 3000000 /dev/zero; echo END", timeout=60)
    assert res.exit_code is None and not res.ok and "END" not in res.stdout
    assert (res.error or "").startswith("output larger than 1 MiB")
    res = sh.run("yes", timeout=60)  # never ends by itself: stopped at the cap, not the deadline
    assert res.exit_code is None and not res.timed_out and "output larger" in (res.error or "")
    assert sh.run("echo ok", timeout=60).stdout == "ok\n"


def test_wizard_results_row_never_reads_a_command_as_markup() -> None:
    """The step screen's results table: a command carrying a node's text (a foreign nft rule's
    comment) with "[/x]" made Textual's DataTable raise MarkupError (a str cell is markup), and
    "[bold]" restyled it; an ESC reached the screen. The row's command is now a plain Text."""
    from textual.widgets._data_table import default_cell_formatter

    from clusterfix_tui.core.model import ActionOutcome, CommandResult
    from clusterfix_tui.ui.screens.step import outcome_row

    cmd = f"nft add rule ip nat X ct state new comment '[/x] [bold]b {HOSTILE}'"
    row = outcome_row(ActionOutcome(action_id="a", target="node-1", status="ok", command=cmd,
                                    result=CommandResult(0, "")))
    cells = [default_cell_formatter(c) for c in row]  # raised MarkupError on the old row
    shown = cells[-1].plain
    assert "[/x] [bold]b" in shown and not cells[-1].spans
    _no_control(shown)
