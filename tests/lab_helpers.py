"""Shared lab set-up for tests: one real lab per test module, torn down after it.

    from lab_helpers import lab_fixture                # tests/ is on sys.path under pytest
    lab = lab_fixture(nodes=3, faults="none")          # a module-scoped pytest fixture named `lab`

    def test_something(lab):                           # lab is a clusterfix_tui.lab.cluster.LabHandle
        lab.exec("node-2", "ip -br addr")

or, for a fixture of your own: `with running_lab(tmp_path_factory, nodes=3) as lab: ...`.
The teardown checks that `lab down` removed the lab's namespaces and bridge.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def running_lab(tmp_path_factory: pytest.TempPathFactory, nodes: int = 3, faults: object = "none") -> Iterator:
    from clusterfix_tui.lab import cluster

    d = tmp_path_factory.mktemp("lab") / "lab"
    handle = cluster.up(d, nodes=nodes, faults=faults)
    info = handle.info
    try:
        yield handle
    finally:
        cluster.down(d)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        ours = [n["netns"] for n in info["nodes"]]
        assert not any(ns in left.split() for ns in ours), f"lab down left namespaces: {left}"


def lab_fixture(nodes: int = 3, faults: object = "none", scope: str = "module", name: str = "lab"):
    """A pytest fixture (default: module-scoped, named `lab`) yielding a LabHandle."""

    @pytest.fixture(scope=scope, name=name)
    def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
        with running_lab(tmp_path_factory, nodes=nodes, faults=faults) as handle:
            yield handle

    return _lab
