"""The core must never import the UI, SSH or Kubernetes libraries (DESIGN.md's one rule)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import clusterfix_tui.core

FORBIDDEN = ("textual", "paramiko", "kubernetes")


def _core_modules() -> list[str]:
    names = ["clusterfix_tui.transports.base"]
    for info in pkgutil.walk_packages(clusterfix_tui.core.__path__, "clusterfix_tui.core."):
        names.append(info.name)
    return names


def test_core_imports_no_ui_ssh_or_kubernetes() -> None:
    modules = _core_modules()
    assert len(modules) > 1
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from clusterfix_tui import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r})\n"
        "sys.stderr.write(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "diagnose" in out.stdout
    assert out.stderr.strip() == "", f"--help imported: {out.stderr.strip()}"
