"""Rollback fidelity of the forwarding sysctls: writing net.ipv4.ip_forward (or
net.ipv6.conf.all.forwarding) makes the kernel copy the value to every device and to `default`
(inet_forward_change / addrconf_fixup_forwarding), so "set it back to 0" also zeroes a device whose
own forwarding was 1 (an admin's per-device setting). The planned action saves each device's value
first; its rollback puts them back. Real kernel, in a network namespace made for the test: the
values read after the rollback are the ones read before (the old rollback left dummy0 at 0)."""

from __future__ import annotations

import pytest
from _env import require
from fix_helpers import FakeDiagnosis, del_netns, finding, is_root, new_netns, ns

from clusterfix_tui.core.fixes.host_network import STEP as HOST


@pytest.fixture
def netns():
    require(is_root(), "needs root (network namespaces)")
    name = new_netns()
    try:
        ns(name, "ip link add dummy0 type veth peer name dummy1")
        yield name
    finally:
        del_netns(name)


def _values(name: str, conf: str) -> str:
    return ns(name, f"grep -H . {conf}/*/forwarding")


@pytest.mark.parametrize("code,key,conf,extra", [
    ("IP_FORWARD_OFF", "net.ipv4.ip_forward", "/proc/sys/net/ipv4/conf", {}),
    ("IPV6_FORWARD_OFF", "net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf",
     {"ip_version": 6, "pod_cidrs": ["fd00:10:244::/56"]}),
])
def test_forwarding_rollback_restores_each_device(netns, tmp_path, code, key, conf, extra):
    # all off, but dummy0 and `default` forward on their own (an admin's per-device setting)
    ns(netns, f"sysctl -qw {key}=0 && echo 1 > {conf}/dummy0/forwarding && "
              f"echo 1 > {conf}/default/forwarding")
    before = _values(netns, conf)
    assert f"{conf}/dummy0/forwarding:1" in before
    plan = HOST.plan(FakeDiagnosis([finding(code, "node-1", "host_network", sysctl=key,
                                            value="0", **extra)]))
    (act,) = [a for a in plan.actions if a.command.endswith(f"sysctl -w {key}=1")]
    # the plan's backup directory, moved under tmp_path (the host's /var is not touched)
    import re

    dirs = re.findall(r"mkdir -p -m 700 (/var/backups/clusterfix/\S+)", act.command)
    bdir = str(tmp_path / "b")

    def run(c: str) -> None:
        for d in dirs:
            c = c.replace(d, bdir)
        ns(netns, c)

    run(act.command)
    assert f"{conf}/dummy1/forwarding:1" in _values(netns, conf)  # the kernel copied it
    run(act.rollback.command)
    assert _values(netns, conf) == before
    run(act.rollback.command)  # twice: the same
    assert _values(netns, conf) == before
