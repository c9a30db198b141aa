"""The architecture, enforced by tools in the test command (docs/architecture.md, "Layers"):
the import-linter contracts in pyproject.toml, ruff, and mypy on core and transports. Each runs
in a subprocess on this checkout; a missing tool is a failure, not a skip (setup.sh --test
installs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_layer_contracts_hold() -> None:
    r = _run("-c", "import sys; from importlinter.cli import lint_imports_command as c; "
                   "sys.argv = ['lint-imports', '--no-cache']; c()")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout and " kept" in r.stdout


def test_ruff_is_clean() -> None:
    r = _run("-m", "ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_mypy_is_clean_on_core_and_transports() -> None:
    r = _run("-m", "mypy")  # files and options: [tool.mypy] in pyproject.toml
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "Success" in r.stdout
