"""The one way a test says "this machine cannot run me".

    from _env import require, needs, which

    require(shutil.which("kubectl"), "kubectl is not installed")   # at run time, in a test/fixture
    pytestmark = needs(sshd_missing_reason)                       # a marker: fn() -> reason | None
    KUBECTL = which("kubectl")                                     # a binary's path, never hard-coded

Outside CI a missing requirement skips the test with its reason. Under CI=true it FAILS the test:
CI installs everything (scripts/setup.sh --test), so a test that cannot run there is a broken
install, never a pass. The `lab` marker goes through the same function (conftest.py), and under
CI any other skip or xfail is turned into a failure too (conftest.pytest_runtest_makereport).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: object, reason: str) -> None:
    """Skip (locally) or fail (CI=true) the running test unless `ok` is truthy."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def needs(check: Callable[[], str | None]) -> pytest.MarkDecorator:
    """A marker: before the test runs, `check()` is called; a reason string means missing."""
    return pytest.mark.needs_env(check)


def which(tool: str) -> str | None:
    """A binary's path: PATH first, then the sbin directories a non-login root shell may lack."""
    found = shutil.which(tool)
    if found:
        return found
    return shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin")


def require_tool(tool: str) -> str:
    """The path of `tool`, or skip/fail (see require) when it is not installed."""
    path = which(tool)
    require(path, f"{tool} is not installed (bash scripts/setup.sh --test installs it)")
    assert path is not None
    return path
