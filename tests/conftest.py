"""Shared test set-up.

Every environment-dependent test goes through one function, `_env.require` (see tests/_env.py):
outside CI a test that cannot run here skips with the reason; under CI=true it fails. Lab tests
(marked `lab`: root and network namespaces) and tests marked with `_env.needs(check)` are checked
here before they run. Under CI=true any other skip or xfail is reported as a failure as well, so a
green CI run has run every test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from _env import IN_CI, require, which
from determinism import frozen_plan_stamp


def _lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    for tool in ("ip", "sshd", "iptables-legacy", "iptables-nft", "nft", "nsenter"):
        if not which(tool):
            return f"lab tests need {tool}"
    probe = "cfx-probe-%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


_REASON: list[str | None] = []


def lab_unavailable_reason() -> str | None:
    if not _REASON:
        _REASON.append(_lab_unavailable_reason())
    return _REASON[0]


def require_lab() -> None:
    """For a fixture that builds a lab: skip locally / fail in CI when no lab can be built."""
    reason = lab_unavailable_reason()
    require(reason is None, reason or "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_env(check): check() -> reason | None; "
                            "skipped outside CI when a reason is returned, a failure in CI")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        require_lab()
    for mark in item.iter_markers("needs_env"):
        reason = mark.args[0]()
        require(reason is None, reason or "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not IN_CI:
        return
    rep = outcome.get_result()
    if rep.skipped:
        why = getattr(rep, "wasxfail", None)
        what = f"xfailed ({why})" if why is not None else f"skipped ({rep.longrepr})"
        rep.outcome = "failed"
        rep.longrepr = f"under CI=true no test may be skipped or xfailed: {item.nodeid} {what}"
        if hasattr(rep, "wasxfail"):
            del rep.wasxfail


@pytest.fixture
def frozen_stamp() -> Iterator[str]:
    """Freeze engine.plan_stamp() (the backup directory's time stamp) for one test, so plans built
    in it compare equal whatever the wall clock does between them (tests/determinism.py)."""
    with frozen_plan_stamp() as stamp:
        yield stamp
