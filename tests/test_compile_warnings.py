"""Every source file compiles without a warning: an invalid escape in a string (a
DeprecationWarning in Python 3.11, a SyntaxWarning from 3.12) means the text is not what it
reads as (lab/nodes.py once sent `\\$` to the shell through an f-string by luck)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("clusterfix_tui", "tests", "bench", "scripts")
                 for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def test_there_are_sources():
    assert len(SOURCES) > 50 and ROOT / "clusterfix_tui" / "lab" / "nodes.py" in SOURCES


def test_every_source_compiles_without_warnings() -> None:
    bad = []
    for path in SOURCES:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # DeprecationWarning / SyntaxWarning become errors
            try:
                compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
            except (SyntaxError, Warning) as exc:
                bad.append(f"{path.relative_to(ROOT)}: {type(exc).__name__}: {exc}")
    assert bad == []


def test_an_invalid_escape_is_caught() -> None:
    with warnings.catch_warnings(), pytest.raises((DeprecationWarning, SyntaxWarning, SyntaxError)):
        warnings.simplefilter("error")
        compile('x = f"""grep -q " $(hostname)\\$" /etc/hosts"""\n', "<t>", "exec",
                dont_inherit=True)
