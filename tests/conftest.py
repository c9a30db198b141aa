"""Shared test set-up.

Lab tests (marked `lab`) need root and network namespaces. Outside CI they skip with the reason when
the machine cannot build a lab; in CI (CI=true) a lab test that cannot run is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root"
    for tool in ("ip", "sshd", "iptables-legacy", "iptables-nft", "nft", "nsenter"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
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


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is None:
        return
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"lab test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)
