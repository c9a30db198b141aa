"""Shared helpers for the trust tests (tests/test_trust_*.py).

- `argv(cmd)`: a shell command as shlex sees it, with the shell's operators (; & | < > ( ))
  split out as their own tokens, so an unquoted `;` in a value cannot hide inside a word.
- `active_meta(cmd)`: the shell metacharacters the shell would ACT on (outside single quotes;
  `$` and backticks inside double quotes too), in order. Two commands that differ only in a quoted
  value have the same sequence; an unquoted `$(..)`, backtick, `;`, glob or redirection shows up.
- `cli(...)`: run `python -m clusterfix_tui ...` as a subprocess (what an admin runs).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# unquoted characters the shell acts on (whitespace is covered by the argv comparison)
_ACTIVE = set("$`;&|<>()*?[#~{}\n!")
_ACTIVE_IN_DQ = set("$`")


def argv(cmd: str) -> list[str]:
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


def active_meta(cmd: str) -> list[str]:
    out: list[str] = []
    state: str | None = None
    i = 0
    while i < len(cmd):
        ch = cmd[i]
        if state is None:
            if ch == "'":
                state = "'"
            elif ch == '"':
                state = '"'
            elif ch == "\\":
                i += 1  # the next character is literal
            elif ch in _ACTIVE:
                out.append(ch)
        elif state == "'":
            if ch == "'":
                state = None
        else:  # double quotes
            if ch == '"':
                state = None
            elif ch == "\\":
                i += 1
            elif ch in _ACTIVE_IN_DQ:
                out.append(ch)
        i += 1
    return out


def cli(*args: str, timeout: float = 120, env: dict | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.setdefault("PYTHONPATH", str(REPO))
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("KUBECONFIG", None)
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=str(REPO), input=input,
                          check=False)
