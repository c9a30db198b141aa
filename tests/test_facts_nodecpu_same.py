"""The facts script reads the same facts on the lab's other shapes as the script before the
node-CPU passes (tests/facts_script_v1.py: every section under its own `timeout`, through
`sh -c`, nothing batched, no watchdog): tests/test_facts_same.py compares them on a kubeadm IPv4
lab (healthy and all faults); here on a k3s lab (embedded flannel and kube-proxy, its own CNI
dirs) and on a dual-stack kubeadm lab (IPv6 routes, flannel-v6.1, ip6tables), with a digest of
every parsed section besides the section-by-section comparison (what legitimately moves between
two runs, dates, counters, timers, taken out as there)."""

from __future__ import annotations

import hashlib

import pytest
from lab_helpers import running_lab
from test_facts_same import NEW_SINCE_V1, _norm, _peers, _run, _same

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.checks.underlay import probe_result, probe_targets


def digest(facts: F.NodeFacts) -> str:
    """A digest of what parse_facts read: every section (name, argument, exit status, stdout,
    stderr; a VXLAN probe by its verdict), the route lookups, the parse errors and the summary."""
    h = hashlib.sha256()
    for key in sorted(facts.sections):
        s = facts.sections[key]
        if s.name in NEW_SINCE_V1:
            continue
        if s.name == "vxlan_probe":
            h.update(repr((key, probe_result(s))).encode())
            continue
        h.update(repr((key, s.rc, _norm(s.stdout), _norm(s.stderr))).encode())
    h.update(repr(sorted(facts.route_get.items())).encode())
    summary = {k: v for k, v in facts.summary().items() if k != "conntrack"}  # NEW_SINCE_V1
    h.update(repr((facts.parse_errors, summary)).encode())
    return h.hexdigest()


@pytest.fixture(scope="module", params=[("k3s", "ipv4"), ("kubeadm", "dual")], ids=["k3s", "dual-stack"])
def shape_lab(request, tmp_path_factory):
    shape, family = request.param
    with running_lab(tmp_path_factory, nodes=2, prefix=f"same-{shape}", shape=shape, ip_family=family,
                     timeout=240) as handle:
        yield handle


@pytest.mark.lab
def test_same_facts_as_the_old_script_on_other_shapes(shape_lab) -> None:
    import facts_script_v1 as OLD

    from clusterfix_tui.core.snapshot import build_snapshot
    from clusterfix_tui.runtime import build_runtime

    with build_runtime(lab_dir=str(shape_lab.dir)) as rt:
        snap = build_snapshot(rt.api, with_logs=False)
    compared = 0
    for n in shape_lab.nodes:
        node = n["name"]
        peers, probes = _peers(snap, node), probe_targets(snap, node)
        new = _run(shape_lab, node, F, peers, probes)
        for attempt in range(2):  # a lab just built may still settle between two runs: once more
            old = _run(shape_lab, node, OLD, peers, probes)
            try:
                compared += _same(node, peers, old, new)
                assert digest(old) == digest(new), node
                break
            except AssertionError:
                if attempt:
                    raise
                new = _run(shape_lab, node, F, peers, probes)
    assert compared > 2 * 40
