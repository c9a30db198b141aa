"""IPv6 host prerequisites (IPV6_FORWARD_OFF, BR_NETFILTER_IP6_OFF), the ip6tables backend
conflict and kube-proxy's ipvs state: each check fails where it should, stays silent where the
node carries no IPv6 pod traffic or the shape has no bridge, and its fix is planned with rollbacks
and applied / rolled back for real in a network namespace."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from diag_fakes import LAB_NONCE, ReplayAPI, load

from clusterfix_tui.core.checks import host
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import apply_plan, check_rollbacks, default_approved, rollback
from clusterfix_tui.core.shape import ClusterShape, NodeShape, why_not
from clusterfix_tui.core.snapshot import build_snapshot

sys.path.insert(0, os.path.dirname(__file__))
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns  # noqa: E402

HOST = get_step("host_network")
V6 = "fd00:10:244:2::/64"


def _healthy():
    rec = load("healthy")
    snap = build_snapshot(ReplayAPI(rec))
    facts = {n: parse_facts(n, out, LAB_NONCE) for n, out in rec["facts"].items()}
    return snap, facts


def _with_v6(snap, node: str):
    info = snap.nodes[node]
    nodes = dict(snap.nodes)
    nodes[node] = dataclasses.replace(info, pod_cidrs=(*(info.pod_cidrs or (info.pod_cidr,)), V6))
    return dataclasses.replace(snap, nodes=nodes)


def _sysctls(facts, node: str, **values: str | None):
    keys = {"fwd6": "net.ipv6.conf.all.forwarding", "nf6": "net.bridge.bridge-nf-call-ip6tables"}
    f = facts[node]
    return {**facts, node: dataclasses.replace(f, sysctls=f.sysctls | {keys[k]: v for k, v in values.items()})}


def test_ipv6_forwarding_off_is_found_only_where_pods_use_ipv6():
    snap, facts = _healthy()
    node = sorted(facts)[1]
    off = _sysctls(facts, node, fwd6="0")
    # an IPv4-only cluster may keep IPv6 forwarding off: nothing of the cluster's is routed over it
    assert [f for f in host.check(snap, off) if f.code == "IPV6_FORWARD_OFF"] == []
    (f,) = [x for x in host.check(_with_v6(snap, node), off) if x.code == "IPV6_FORWARD_OFF"]
    assert f.node == node and f.severity == "critical" and f.step == "host_network"
    assert f.data["sysctl"] == "net.ipv6.conf.all.forwarding" and f.data["value"] == "0"
    assert f.data["ip_version"] == 6 and f.data["pod_cidrs"] == [V6] and f.data["ra_interfaces"] == []
    # forwarding on: nothing
    on = _sysctls(facts, node, fwd6="1")
    assert [x for x in host.check(_with_v6(snap, node), on) if x.code.startswith("IPV6")] == []


def test_ipv6_forwarding_off_names_the_interfaces_with_a_router_advertised_default_route():
    snap, facts = _healthy()
    node = sorted(facts)[0]
    off = _sysctls(facts, node, fwd6="0")
    ra = {"dst": "default", "gateway": "fe80::1", "dev": "eth0", "protocol": "ra", "metric": 1024}
    static = {"dst": "default", "gateway": "fd00::1", "dev": "eth1", "protocol": "static"}
    off[node] = dataclasses.replace(off[node], routes6=(ra, static))
    (f,) = [x for x in host.check(_with_v6(snap, node), off) if x.code == "IPV6_FORWARD_OFF"]
    assert f.data["ra_interfaces"] == ["eth0"]
    assert any("router advertisement on eth0" in e for e in f.evidence)


def test_bridge_nf_call_ip6tables_off_is_found_and_missing_is_br_netfilter_off():
    snap, facts = _healthy()
    node = sorted(facts)[2]
    v6 = _with_v6(snap, node)
    (f,) = [x for x in host.check(v6, _sysctls(facts, node, nf6="0")) if x.code == "BR_NETFILTER_IP6_OFF"]
    assert f.node == node and f.data["sysctl"] == "net.bridge.bridge-nf-call-ip6tables" and f.data["value"] == "0"
    assert [x for x in host.check(snap, _sysctls(facts, node, nf6="0")) if x.code == "BR_NETFILTER_IP6_OFF"] == []
    # no /proc/sys/net/bridge: br_netfilter is not loaded, BR_NETFILTER_OFF (its modprobe) covers both
    gone = _sysctls(facts, node, nf6=None)
    gone[node] = dataclasses.replace(gone[node], sysctls=gone[node].sysctls
                                     | {"net.bridge.bridge-nf-call-iptables": None})
    codes = [x.code for x in host.check(v6, gone) if x.node == node]
    assert "BR_NETFILTER_OFF" in codes and "BR_NETFILTER_IP6_OFF" not in codes


def _shape(cni: str, cidrs: tuple[str, ...]) -> ClusterShape:
    return ClusterShape(cni=cni, nodes={"n1": NodeShape(name="n1", pod_cidrs=cidrs)})


def test_scopes_of_the_ipv6_codes():
    dual = ("10.244.1.0/24", V6)
    assert why_not(_shape("flannel", dual), "IPV6_FORWARD_OFF", "n1") is None
    assert why_not(_shape("calico", dual), "IPV6_FORWARD_OFF", "n1") is None
    assert "no IPv6 podCIDR" in why_not(_shape("flannel", ("10.244.1.0/24",)), "IPV6_FORWARD_OFF", "n1")
    assert why_not(_shape("flannel", dual), "BR_NETFILTER_IP6_OFF", "n1") is None
    assert "routed pod interfaces" in why_not(_shape("calico", dual), "BR_NETFILTER_IP6_OFF", "n1")
    assert "routed pod interfaces" in why_not(_shape("cilium", dual), "BR_NETFILTER_IP6_OFF", "n1")


def argv(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def test_plan_ipv6_forwarding_keeps_router_advertisements_and_has_rollbacks():
    plan = HOST.plan(FakeDiagnosis([
        finding("IPV6_FORWARD_OFF", "node-2", "host_network", sysctl="net.ipv6.conf.all.forwarding",
                value="0", ip_version=6, pod_cidrs=[V6], ra_interfaces=["eth0", "bad;name"]),
        finding("BR_NETFILTER_IP6_OFF", "node-2", "host_network", sysctl="net.bridge.bridge-nf-call-ip6tables",
                value="0", module_loaded=True, ip_version=6, pod_cidrs=[V6])]))
    cmds = [a.command for a in plan.actions]
    ra = next(i for i, c in enumerate(cmds) if "accept_ra" in c)
    fwd = next(i for i, c in enumerate(cmds)
               if c.endswith("&& sysctl -w net.ipv6.conf.all.forwarding=1"))
    assert ra < fwd  # accept_ra=2 before forwarding goes on
    assert argv(cmds[ra])[-3:] == ["sysctl", "-w", "net.ipv6.conf.eth0.accept_ra=2"]
    assert "sysctl -w net.bridge.bridge-nf-call-ip6tables=1" in cmds
    assert argv(plan.actions[fwd].rollback.command)[:3] == ["sysctl", "-w",
                                                            "net.ipv6.conf.all.forwarding=0"]
    assert not any("bad;name" in c for c in cmds) and any("bad;name" in n for n in plan.notes)
    persist = next(c for c in cmds if "99-clusterfix-kubernetes.conf" in c and "printf" in c)
    for line in ("net.ipv6.conf.all.forwarding = 1", "net.bridge.bridge-nf-call-ip6tables = 1",
                 "net.ipv6.conf.eth0.accept_ra = 2"):
        assert shlex.quote(line) in persist
    assert check_rollbacks(plan) == []
    assert {a.target for a in plan.actions} == {"node-2"}


def test_plan_acts_on_no_ipv6_finding_outside_its_scope():
    shape = _shape("calico", ("192.168.1.0/24", V6))
    shape = dataclasses.replace(shape, nodes={"node-2": NodeShape(name="node-2", pod_cidrs=("192.168.1.0/24", V6))})
    snap = type("S", (), {"shape": shape, "flannel_network": None})()
    plan = HOST.plan(FakeDiagnosis([finding("BR_NETFILTER_IP6_OFF", "node-2", "host_network",
                                            value="0", module_loaded=True)], snapshot=snap))
    assert plan.actions == () and any("not acted on" in n for n in plan.notes)


class MountRunner:
    def __init__(self, netns: str, binds: dict[str, str]) -> None:
        self.netns, self.binds = netns, binds

    def run_action(self, action: Any, *, on_line: Any = None):
        import subprocess

        from clusterfix_tui.core.model import CommandResult

        mounts = " && ".join(f"mount --bind {shlex.quote(src)} {shlex.quote(dst)}" for dst, src in self.binds.items())
        p = subprocess.run(["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
                            "sh", "-c", f"{mounts} && exec sh -c \"$1\"", "x", action.command],
                           capture_output=True, text=True, timeout=60)
        return CommandResult(p.returncode, p.stdout, p.stderr)


@pytest.mark.lab
def test_ipv6_fixes_apply_and_roll_back_in_a_netns(tmp_path: Path):
    netns = new_netns()
    try:
        ns(netns, "ip link set lo up && ip link add cfxra0 type veth peer name cfxra1 && ip link set cfxra0 up")
        ns(netns, "sysctl -qw net.ipv6.conf.all.forwarding=0 && sysctl -qw net.ipv6.conf.cfxra0.accept_ra=1")
        has_bridge = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
        if has_bridge:
            ns(netns, "sysctl -qw net.bridge.bridge-nf-call-ip6tables=0")
        findings = [finding("IPV6_FORWARD_OFF", "node-1", "host_network", sysctl="net.ipv6.conf.all.forwarding",
                            value="0", ip_version=6, pod_cidrs=[V6], ra_interfaces=["cfxra0"])]
        if has_bridge:
            findings.append(finding("BR_NETFILTER_IP6_OFF", "node-1", "host_network", value="0",
                                    module_loaded=True, ip_version=6, pod_cidrs=[V6]))
        plan = HOST.plan(FakeDiagnosis(findings))
        dirs = {n: tmp_path / n for n in ("backups", "sysctl.d", "modules-load.d")}
        for p in dirs.values():
            p.mkdir()
        runner = MountRunner(netns, {"/var/backups": str(dirs["backups"]), "/etc/sysctl.d": str(dirs["sysctl.d"]),
                                     "/etc/modules-load.d": str(dirs["modules-load.d"])})
        outcome = apply_plan(plan, default_approved(plan), runner)
        assert outcome.status == "changed", [(a.action_id, a.result) for a in outcome.actions]
        assert ns(netns, "cat /proc/sys/net/ipv6/conf/all/forwarding").strip() == "1"
        assert ns(netns, "cat /proc/sys/net/ipv6/conf/cfxra0/accept_ra").strip() == "2"
        if has_bridge:
            assert ns(netns, "cat /proc/sys/net/bridge/bridge-nf-call-ip6tables").strip() == "1"
        dropin = (dirs["sysctl.d"] / "99-clusterfix-kubernetes.conf").read_text()
        assert "net.ipv6.conf.all.forwarding = 1" in dropin and "net.ipv6.conf.cfxra0.accept_ra = 2" in dropin
        rb = rollback((plan, outcome), runner)
        assert rb.status == "changed", [(a.action_id, a.result) for a in rb.actions]
        assert ns(netns, "cat /proc/sys/net/ipv6/conf/all/forwarding").strip() == "0"
        assert ns(netns, "cat /proc/sys/net/ipv6/conf/cfxra0/accept_ra").strip() == "1"
        if has_bridge:
            assert ns(netns, "cat /proc/sys/net/bridge/bridge-nf-call-ip6tables").strip() == "0"
        assert not (dirs["sysctl.d"] / "99-clusterfix-kubernetes.conf").exists()
    finally:
        del_netns(netns)


# -- ip6tables: the backend conflict, per family -------------------------------------------------

LIVE6 = ("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
         "-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\nCOMMIT\n")
STALE6 = ("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n"
          "-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d fd00:96::10/128 -p tcp --dport 80 -j KUBE-SVC-X\n"
          "-A KUBE-SVC-X -p tcp -j DNAT --to-destination [fd00:10:244:2::fb]:8096\nCOMMIT\n")


def _ip6_facts(facts, node: str, v4_too: bool = False):
    from clusterfix_tui.core import parsers as P

    f = facts[node]
    hint = P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")
    kw: dict[str, Any] = {"ip6_nft_nat": P.parse_iptables_save(LIVE6), "ip6_legacy": P.parse_iptables_save(STALE6),
                          "ip6_nft_mangle": hint}
    return {**facts, node: dataclasses.replace(f, **kw)}


def test_ip6tables_backend_conflict_is_found_per_family_and_only_where_ipv6_flows():
    from clusterfix_tui.core.checks import iptables

    snap, facts = _healthy()
    node = sorted(facts)[1]
    six = _ip6_facts(facts, node)
    assert [f for f in iptables.check(snap, six) if f.code == "IPTABLES_BACKEND_CONFLICT"] == []  # IPv4-only
    found = [f for f in iptables.check(_with_v6(snap, node), six) if f.code == "IPTABLES_BACKEND_CONFLICT"]
    (f,) = found
    assert f.node == node and f.data["ip_version"] == 6 and f.data["other_backend"] == "legacy"
    assert f.data["shadows_live_path"] and f.severity == "error" and "ip6tables" in f.title
    assert f.data["stale_chains"] == {"nat": ["KUBE-SERVICES", "KUBE-SVC-X"]}
    assert any(e.startswith("ip6tables-legacy-save: *nat") for e in f.evidence)
    # the IPv4 view of the same node stays healthy: no IPv4 finding came with it
    assert all(x.data["ip_version"] == 6 for x in found)


def test_ip6tables_conflict_plan_uses_ip6tables_and_restores_from_its_own_backup():
    from clusterfix_tui.core.checks.iptables import BackendConflictData

    step = get_step("iptables")
    d = BackendConflictData(kube_proxy_backend="nft", backend_evidence="KUBE-IPTABLES-HINT in ip6tables-nft-save",
                            host_iptables="nft", other_backend="legacy",
                            stale_chains={"nat": ["KUBE-SERVICES"]}, stale_rules={"nat": ["-A PREROUTING -j KUBE-SERVICES"]},
                            shadows_live_path=True, ip_version=6)
    from clusterfix_tui.core.model import Finding

    plan = step.plan(FakeDiagnosis([Finding(code="IPTABLES_BACKEND_CONFLICT", severity="error", node="node-1",
                                            title="t", step="iptables", data=d)]))
    (rm,) = [a for a in plan.actions if "-restore -T" in a.command]
    assert "grep -qx nat /proc/net/ip6_tables_names" in rm.command
    assert "ip6tables-legacy-save -t nat" in rm.command and "ip6tables-legacy-restore -T nat" in rm.command
    assert "iptables-legacy-restore" not in rm.command.replace("ip6tables-legacy-restore", "")
    # the table as it was right before, saved by the action itself (its own ip6 file); nothing
    # restored when the action never got past that save
    import re
    m = re.fullmatch(r"if \[ -e (\S+/ip6-legacy-nat\.before) \]; then "
                     r"ip6tables-legacy-restore -T nat < (\S+); else echo .*; fi",
                     rm.rollback.command)
    assert m and m.group(1) == m.group(2), rm.rollback.command
    assert "ip6tables-legacy-save -t nat > " in rm.command and "/ip6-legacy-nat.before" in rm.command
    backup = plan.actions[0].command
    assert "ip6tables-legacy-save > " in backup and "/ip6-legacy.rules" in backup
    assert check_rollbacks(plan) == []


# -- kube-proxy in ipvs mode: its virtual servers, kube-ipvs0, KUBE-SERVICES ---------------------

IP_VS = ("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
         "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
         "TCP  0A600001:01BB rr\n  -> 0AD50501:192B      Masq    1      0          0\n")


def _ipvs_facts(facts, node: str, ip_vs: tuple[str, str, int] | None, ipvs_link: bool = True):
    from clusterfix_tui.core.facts import Section

    f = facts[node]
    sections = dict(f.sections)
    sections.pop("ip_vs", None)
    if ip_vs is not None:
        sections["ip_vs"] = Section("ip_vs", None, ip_vs[0], ip_vs[1], ip_vs[2])
    links = tuple(x for x in f.links if x.get("ifname") != "kube-ipvs0")
    if ipvs_link:
        links += ({"ifname": "kube-ipvs0", "link_type": "ether", "linkinfo": {"info_kind": "dummy"}},)
    return {**facts, node: dataclasses.replace(f, sections=sections, links=links)}


def test_ipvs_mode_missing_virtual_servers_is_found_and_healthy_ipvs_is_not():
    from clusterfix_tui.core.checks import iptables

    snap, facts = _healthy()
    ipvs = dataclasses.replace(snap, kube_proxy_mode="ipvs")
    node = sorted(facts)[1]

    def codes(fs):
        return [(x.code, x.node, list(x.data["missing_chains"])) for x in iptables.check(ipvs, fs)
                if x.code == "KUBE_PROXY_NO_RULES" and x.node == node]

    assert codes(_ipvs_facts(facts, node, (IP_VS, "", 0))) == []
    empty = IP_VS.split("TCP")[0]
    assert codes(_ipvs_facts(facts, node, (empty, "", 0))) == [("KUBE_PROXY_NO_RULES", node, ["IPVS virtual servers"])]
    gone = _ipvs_facts(facts, node, ("", "cat: /proc/net/ip_vs: No such file or directory\n", 1), ipvs_link=False)
    (f,) = [x for x in iptables.check(ipvs, gone) if x.code == "KUBE_PROXY_NO_RULES" and x.node == node]
    assert f.data["missing_chains"] == ["IPVS virtual servers", "kube-ipvs0"] and f.data["proxy_mode"] == "ipvs"
    assert "/proc/net/ip_vs: missing (ip_vs not loaded)" in f.evidence and f.step == "pods"
    # not read at all (an older facts script): the virtual servers are not checked, the link still is
    assert codes(_ipvs_facts(facts, node, None)) == []
    assert codes(_ipvs_facts(facts, node, None, ipvs_link=False)) == [("KUBE_PROXY_NO_RULES", node, ["kube-ipvs0"])]


def test_ipvs_state_not_read_is_a_not_checked_note_of_the_shape():
    from clusterfix_tui.core.shape import detect_shape, note_lines

    snap, facts = _healthy()
    ipvs = dataclasses.replace(snap, kube_proxy_mode="ipvs")
    node = sorted(facts)[0]
    unread = _ipvs_facts(facts, node, None)
    shape = detect_shape(ipvs, unread)
    assert any("/proc/net/ip_vs was not read" in u for u in shape.nodes[node].unreadable)
    assert any("could not read: IPVS virtual servers" in ln and node in ln for ln in note_lines(shape))
    read = detect_shape(ipvs, _ipvs_facts(facts, node, (IP_VS, "", 0)))
    assert not any("ip_vs" in u for u in read.nodes[node].unreadable)
    # iptables mode: nothing to say about IPVS
    assert not any("ip_vs" in u for n in detect_shape(snap, unread).nodes.values() for u in n.unreadable)
