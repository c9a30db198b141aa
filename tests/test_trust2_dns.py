"""trust2: cluster DNS reads (core/dns.py) on odd API values: the snapshot never raises (a
recorded bundle, a proxy or an aggregated API can hand back what the server's schema forbids)."""

from __future__ import annotations

import pytest
from test_dns_check import _snap, kubeadm

from clusterfix_tui.core.checks import dns as dns_check


@pytest.mark.parametrize("ready", ["two", "1.5", "", [1], {"n": 1}, -3])
def test_an_odd_ready_replicas_never_raises_out_of_the_snapshot(ready) -> None:
    api = kubeadm(crash=(1,))
    api.deps[0]["status"]["readyReplicas"] = ready
    snap = _snap(api)  # raised ValueError / TypeError for "two", "1.5", [1]
    (dep,) = snap.dns.deployments
    assert dep.ready == 0
    # the crash-looping pod is still found and its restart still planned from the rest
    assert [f.code for f in dns_check.check(snap, {})] == ["DNS_POD_NOT_RUNNING"]
