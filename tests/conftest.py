"""Shared test set-up.

Every environment-dependent test goes through one function, `_env.require` (see tests/_env.py):
outside CI a test that cannot run here skips with the reason; under CI=true it fails. Lab tests
(marked `lab`: root and network namespaces) and tests marked with `_env.needs(check)` are checked
here before they run. Under CI=true any other skip or xfail is reported as a failure as well, so a
green CI run has run every test.
"""

from __future__ import annotations

import os
import re
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
    config.addinivalue_line("markers", "xdist_group(name): run with the other tests of the group "
                            "on one pytest-xdist worker (--dist loadgroup; set by conftest)")


def _xdist_group(item: pytest.Item) -> str:
    """Which tests must run on one pytest-xdist worker, in file order (their group's name).

    A test that uses a fixture of module (or wider) scope defined by the tests (a shared lab, a
    runtime on it) runs with the rest of its module, split per parameter of such a fixture: each
    shape of test_lab_shapes*.py is built once, on one worker, and the shapes run side by side. A
    lab test that uses none (it builds its own lab) is a group of its own, free to run on any
    worker; every other test stays with its module (a module may count on its own order).
    xdist takes the text after the last "@" of a test id as its group when no "]" follows it."""
    group = item.nodeid.split("::", 1)[0]
    info = getattr(item, "_fixtureinfo", None)  # a test function's; other items have none
    defs = info.name2fixturedefs if info is not None else {}
    shared = [name for name in item.fixturenames if name in defs and defs[name][-1].baseid
              and defs[name][-1].scope != "function"]
    if not shared and item.get_closest_marker("lab") is not None:
        group = item.nodeid
    callspec = getattr(item, "callspec", None)
    if shared and callspec is not None:
        keys = [f"{name}={callspec.params[name]}" for name in sorted(callspec.params)
                if name in shared]
        if keys:
            group += "(" + ",".join(keys) + ")"
    return re.sub(r"[\[\]@]", "_", group)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test gets its xdist group here, before any collection_modifyitems hook (xdist's own
    turns the marks into group names there): scripts/test.sh runs `-n N --dist loadgroup`."""
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


@pytest.hookimpl(trylast=True)  # after pytest has put the tests of one fixture parameter together
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The lab groups first, the biggest first (they are the long ones; the short unit modules
    then fill the workers' gaps: scripts/test.sh passes --no-loadscope-reorder so that xdist keeps
    this order). The order inside a group is kept (the sort is stable)."""
    def group(it: pytest.Item) -> str:
        mark = it.get_closest_marker("xdist_group")
        return str(mark.args[0]) if mark is not None and mark.args else ""

    size: dict[str, int] = {}
    for it in items:
        size[group(it)] = size.get(group(it), 0) + 1
    lab_groups = {group(it) for it in items if it.get_closest_marker("lab") is not None}
    items.sort(key=lambda it: (0, -size[group(it)]) if group(it) in lab_groups else (1, 0))


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
