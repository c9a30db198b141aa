"""Real node outputs, fifth pass: `ip -j route` of routes iproute2 prints without a top-level
gateway and device, from iproute2's own commit messages (and their `ip -j` form, DERIVED by
running the commits' commands in a network namespace):

- a multipath route (`"nexthops": [...]`, iproute2 5.4+; before 5.4 the same route printed text
  inside the JSON, which is not read);
- a route through a nexthop object (`"nhid": N`, shown WITH the object's gateway and device).

A flannel node's route to a peer's pod subnet of either kind is what FLANNEL_MISSING_ROUTE's
repair replaces or deletes. The evidence and the action's "before" must name the route as it is
(old code: '198.51.100.0/24' for a multipath route: its paths hidden; a nhid route without its
nhid). The plan's commands and rollbacks (cni_bridge, 20b0a62) are run on these real routes in a
network namespace: the routing table comes back exactly."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import check_rollbacks
from clusterfix_tui.core.shape import why_not
from tests.test_realworld import BY_FILE, _Diag, _ds, _route_facts, _snapshot, _with_shape, text

sys.path.insert(0, str(Path(__file__).parent))

NODE_A = ("node-a", "10.244.0.0/24", "10.0.0.11", "aa:bb:cc:00:00:01")


def _flannel_cluster(answer: str, peer: list[str]) -> tuple[Any, Any, list[Any]]:
    """SYNTHESISED: a flannel vxlan cluster of node-a and the sample's peer (its podCIDR holds
    the sample's route), node-a's `ip -j route show` answer = the sample's text (rc 0)."""
    ann = {"flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": name, "annotations": dict(ann, **{
                 "flannel.alpha.coreos.com/public-ip": ip,
                 "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"%s"}' % mac})},
              "spec": {"podCIDR": cidr},
              "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
             for name, cidr, ip, mac in (NODE_A, tuple(peer))]
    f = _route_facts("node-a", answer)
    snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                       {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == []
    return snap, f, findings


def _route_plan(s: dict[str, Any], peer: list[str]) -> tuple[Any, Any]:
    snap, f, findings = _flannel_cluster(text(s["file"]), peer)
    assert "ip_route" not in f.unread_sections()
    (x,) = [x for x in findings if x.code == "FLANNEL_MISSING_ROUTE"]
    plan = get_step("cni_bridge").plan(_Diag([x], {"node-a": f}, snap))
    assert check_rollbacks(plan) == []
    return x, plan


def _actions(plan: Any) -> tuple[list[Any], list[Any]]:
    """(the shadowing routes' deletions, flannel's route replacements) of a plan."""
    return ([a for a in plan.actions if "route del" in a.command and "then" in a.command],
            [a for a in plan.actions if "ip route replace" in a.command])


def check_route_r5(s: dict[str, Any]) -> None:
    e = s["expect"]
    if "not_read" in e:  # iproute2 before 5.4: text inside the JSON of a multipath route
        snap, f, findings = _flannel_cluster(text(s["file"]), e["peer"])
        assert f.routes == () and e["not_read"] in f.unread_sections()["ip_route"]
        assert not [x for x in findings if x.code == "FLANNEL_MISSING_ROUTE"]
        why = why_not(snap.shape, "FLANNEL_MISSING_ROUTE", "node-a")
        assert why is not None and e["not_read"] in why, why
        return
    if "commands" in e:  # the commit's commands and `ip route` text: the JSON row's route
        raw = text(s["file"])
        for cmd in e["commands"]:
            assert cmd in raw, cmd
        shown = re.sub(r"\s+", " ", raw.split(e["route_text_after"], 1)[1]).strip()
        assert shown.endswith(e["route"]), (shown, e["route"])
        return
    for peer, want in e["plans"].items():
        x, plan = _route_plan(s, ["node-b", peer, "10.0.0.12", "aa:bb:cc:00:00:02"])
        dels, reps = _actions(plan)
        if "shadow" in want:
            assert [sh["route"] for sh in x.data.shadowing] == [want["shadow"]]
            assert any(want["shadow"] in ev for ev in x.evidence), x.evidence
            (d,) = dels
            assert d.command.endswith(f"then ip route del {want['spec']}; fi"), d.command
            assert d.rollback.command == f"ip route add {want['spec']}"
        if "actual" in want:
            assert [m["actual"] for m in x.data.missing] == [[want["actual"]]]
            (r,) = reps
            assert r.change["before"] == want["actual"]
            assert "ip route save" in r.command and "ip route restore" in r.rollback.command
            if " nhid " in want["actual"]:  # not restorable exactly: the replace refuses it
                assert "grep -qw nhid" in r.command and "exit 4" in r.command


@pytest.mark.parametrize("name", sorted(n for n, s in BY_FILE.items() if s["kind"] == "route-r5"))
def test_route_sample(name):
    """Each sample: multipath (iproute2 4f73cd7, 0ea0699) and nexthop-object (12387e2) routes
    named as `ip route` shows them in FLANNEL_MISSING_ROUTE's evidence and the replace's
    "before" (old code: '36.0.0.13', '198.51.100.0/24': the paths the repair deletes or replaces
    were not shown; '10.100.1.0/24 via 10.99.1.2 dev veth1': the nexthop object not named);
    deleted and re-added with their paths / their id only."""
    check_route_r5(BY_FILE[name])


def test_nhid_route_spec_has_no_gateway_or_device():
    """`ip -j route` (nexthop_compat_mode on, the default) shows a nhid route's object's gateway
    and device; the spec given to `ip route del/add` names the id only (since 20b0a62; before:
    `nhid 1 via 10.99.1.2 dev veth1`: 'Nexthop specification and nexthop id are mutually
    exclusive'). The real sample, as coverage."""
    from clusterfix_tui.core.fixes.cni_bridge import _route_spec

    (r,) = [r for r in _route_facts("node-a", text("iproute2-12387e2-nhid-route.ip-j-route.json")).routes
            if r.get("nhid") is not None]
    spec = _route_spec(r, default_dev=None)
    assert spec == "10.100.1.0/24 nhid 1 scope global"


# -- on a real routing table (a network namespace made for the test) -------------------------------


def _ns_run(name: str, command: str) -> str:
    from fix_helpers import ns

    return ns(name, command)


def _apply_and_roll_back(tmp_path: Any, setup: str, actions: list[Any],
                         refuse: int = 0) -> tuple[str, str, str]:
    """Run `setup`, then each action's command, then the rollbacks of those that ran, in reverse,
    in a fresh network namespace; (routes before, routes after the commands, routes after the
    rollbacks). `refuse`: an exit code an action may stop with, having changed nothing."""
    from fix_helpers import del_netns, new_netns

    name = new_netns()
    try:
        _ns_run(name, "ip link set lo up && " + setup + " && ip link add flannel.1 type veth peer name fpeer && "
                      "ip link set flannel.1 up && ip link set fpeer up")
        before = _ns_run(name, "ip route show; ip nexthop show")
        done = []
        for a in actions:
            bdir = re.search(r"mkdir -p -m 700 (\S+)", a.command)
            cmd, rb = a.command, a.rollback.command
            if bdir:
                cmd = cmd.replace(bdir.group(1), shlex.quote(str(tmp_path / "b")))
                rb = rb.replace(bdir.group(1), shlex.quote(str(tmp_path / "b")))
            p = subprocess.run(["ip", "netns", "exec", name, "sh", "-c", cmd], capture_output=True,
                               text=True)
            assert p.returncode in (0, refuse), (cmd, p.returncode, p.stderr)
            if p.returncode == 0:
                done.append(rb)
        during = _ns_run(name, "ip route show; ip nexthop show")
        for rb in reversed(done):
            _ns_run(name, rb)
        return before, during, _ns_run(name, "ip route show; ip nexthop show")
    finally:
        del_netns(name)


def _veth(dev: str) -> str:
    return f"ip link add {dev} type veth peer name {dev}p && ip link set {dev} up && ip link set {dev}p up"


@pytest.mark.lab
def test_multipath_and_nhid_routes_come_back_on_rollback(tmp_path):
    """The routes of the three commits, made by the commits' own commands (dummy devices as veth
    pairs; the nexthop's veth1 given 10.99.1.1/24, SYNTHESISED), then the plan's commands and
    their rollbacks: the routing table (and the nexthop objects) are back exactly as before."""
    # 0ea0699: flannel's route replaces the multipath route to the peer's podCIDR
    _x, plan = _route_plan(BY_FILE["iproute2-0ea0699-multipath-route.ip-j-route.json"],
                           ["node-b", "198.51.100.0/24", "10.0.0.12", "aa:bb:cc:00:00:02"])
    setup = (f"{_veth('dummy1')} && {_veth('dummy2')} && ip address add 192.0.2.1/28 dev dummy1 && "
             "ip address add 192.0.2.17/28 dev dummy2 && ip route add 198.51.100.0/24 "
             "nexthop via 192.0.2.2 dev dummy1 nexthop via 192.0.2.18 dev dummy2")
    before, during, after = _apply_and_roll_back(tmp_path / "mp", setup, _actions(plan)[1])
    assert "198.51.100.0/24 via 198.51.100.0 dev flannel.1 onlink" in during
    assert after == before and "nexthop via 192.0.2.18 dev dummy2 weight 1" in after
    # 12387e2: the nhid route replaced (peer 10.100.1.0/24), then deleted as shadowing (10.100.0.0/16)
    setup = (f"{_veth('veth1')} && ip address add 10.99.1.1/24 dev veth1 && "
             "ip nexthop add id 1 via 10.99.1.2 dev veth1 && ip route add 10.100.1.0/24 nhid 1")
    for cidr, pick in (("10.100.1.0/24", 1), ("10.100.0.0/16", 0)):
        _x, plan = _route_plan(BY_FILE["iproute2-12387e2-nhid-route.ip-j-route.json"],
                               ["node-b", cidr, "10.0.0.12", "aa:bb:cc:00:00:02"])
        acts = _actions(plan)[pick]
        assert acts
        before, during, after = _apply_and_roll_back(tmp_path / f"nh{pick}", setup, acts, refuse=4)
        # replaced: refused (a nhid route cannot be saved and restored exactly): untouched
        assert (during == before) == (pick == 1)
        assert after == before and "10.100.1.0/24 nhid 1 via 10.99.1.2" in after
    # 4f73cd7: the multipath host route inside the peer's podCIDR 36.0.0.0/24, deleted
    _x, plan = _route_plan(BY_FILE["iproute2-4f73cd7-ip-j-route-multipath.json.txt"],
                           ["node-b", "36.0.0.0/24", "10.0.0.12", "aa:bb:cc:00:00:02"])
    setup = (f"{_veth('uplink-1')} && {_veth('uplink-2')} && "
             "ip route add 36.0.0.13 proto bgp metric 20 nexthop via 169.254.0.1 dev uplink-1 "
             "weight 1 onlink nexthop via 169.254.0.1 dev uplink-2 weight 1 onlink")
    before, during, after = _apply_and_roll_back(tmp_path / "bgp", setup, _actions(plan)[0])
    assert "36.0.0.13" not in during and after == before and "dev uplink-2 weight 1 onlink" in after



# -- docker 28's filter table (moby's iptablesdoc) on a flannel node --------------------------------


def check_docker_s_r5(s: dict[str, Any]) -> None:
    """dockerd 28's filter table for a new daemon (`iptables -S`, moby's iptablesdoc, generated by
    its integration test from the real iptables) as a flannel node's nft backend (SYNTHESISED:
    node-a 10.0.0.11 on eth0 and a peer, iptables 1.8.10 nf_tables, an empty legacy backend).
    As published (FORWARD policy ACCEPT): nothing. With the policy DROP dockerd sets when it
    enabled IP forwarding itself (as the doc says): FORWARD_DROP, and the default plan accepts
    the pod network at the top of DOCKER-USER, as for older dockers. Docker 28's `-A FORWARD -m
    set --match-set docker-ext-bridges-v4 dst -j DOCKER` is no blocklist: DOCKER drops only
    `! -i docker0 -o docker0`, never a pod flow (old code: listed as an ipset drop, so no accept
    was planned: only the opt-in policy flip, the pods stayed cut off by default)."""
    from clusterfix_tui.core import parsers as P
    from clusterfix_tui.core.fixes.engine import default_approved
    from tests.test_realworld import facts_with, iptables_s_to_save

    e = s["expect"]
    ip = "10.0.0.11"
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "10.244.0.0/24", ip), ("node-b", "10.244.1.0/24", "10.0.0.12"))]
    raw = text(s["file"])
    for policy, want in (("ACCEPT", e["findings_as_published"]), ("DROP", e["findings_policy_drop"])):
        save = P.parse_iptables_save(iptables_s_to_save(raw.replace("-P FORWARD ACCEPT",
                                                                    f"-P FORWARD {policy}")))
        assert not save.errors
        f = facts_with(nft_filter=save, legacy=P.parse_iptables_save(""),
                       iptables_version=P.parse_iptables_version("iptables v1.8.10 (nf_tables)"),
                       binaries={b: f"/usr/sbin/{b}" for b in (
                           "iptables", "iptables-save", "iptables-legacy", "iptables-legacy-save",
                           "iptables-nft", "iptables-nft-save")},
                       subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"},
                       addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip,
                                                                "prefixlen": 24}]}])
        snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                           {"node-a": f})
        findings, errors = run_checks(snap, {"node-a": f})
        assert errors == [] and sorted(x.code for x in findings) == want, \
            [(x.code, x.evidence) for x in findings]
        if not want:
            continue
        (x,) = findings
        assert x.data.blocklists == [] and not [ev for ev in x.evidence if "ipset" in ev], x.evidence
        plan = get_step(x.step).plan(_Diag(findings, {"node-a": f}, snap))
        assert check_rollbacks(plan) == []
        approved = set(default_approved(plan))
        planned = [a.command for a in plan.actions if a.id in approved and "-I DOCKER-USER 1" in a.command]
        assert [c.split(" -I DOCKER-USER 1 ")[1].split(" -m ")[0] for c in planned] == e["accepts"]


@pytest.mark.parametrize("name", sorted(n for n, s in BY_FILE.items() if s["kind"] == "docker-S-r5"))
def test_docker_28_filter_table(name):
    check_docker_s_r5(BY_FILE[name])


# -- weave net (kubeadm 1.11, iptables 1.6.0) ------------------------------------------------------


def check_weave_save_r5(s: dict[str, Any]) -> None:
    """A weave node's filter table (iptables-save v1.6.0, kubeadm 1.11.5, docker 18.06) as the
    node's only iptables (SYNTHESISED: the node master 192.168.50.101 on enp0s8 with podCIDR
    10.200.0.0/24, a peer, the weave-net DaemonSet). Weave's ipset names (`weave-;rGq...$3]6!N`)
    are read whole. As published (FORWARD policy ACCEPT) and with the policy DROP docker >= 1.13
    sets: nothing. Weave ends all traffic into its bridge itself (`-o weave -j WEAVE-NPC`, then
    `-o weave -j DROP`) and accepts what leaves it (`-i weave ! -o weave -j ACCEPT`): no pod
    packet reaches the policy; its namespace allowlists (`--match-set weave-... src -j
    WEAVE-NPC-EGRESS-ACCEPT`, a chain that only MARKs) are no blocklist. Old code: FORWARD_DROP,
    with the three allowlist rules named as ipset drops (an accept at the top of FORWARD, which
    would bypass weave's NetworkPolicy chains, was kept out only by that misreading)."""
    from clusterfix_tui.core import parsers as P
    from clusterfix_tui.core.checks.iptables import _forward_blocklists
    from tests.test_realworld import facts_with

    e = s["expect"]
    ip = "192.168.50.101"
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("master", "10.200.0.0/24", ip), ("node1", "10.200.1.0/24", "192.168.50.102"))]
    raw = text(s["file"])
    for policy in ("ACCEPT", "DROP"):
        save = P.parse_iptables_save(raw.replace(":FORWARD ACCEPT [0:0]", f":FORWARD {policy} [0:0]"))
        assert not save.errors
        sets = [r.args[r.args.index("--match-set") + 1] for r in save.table("filter").rules
                if "--match-set" in r.args]
        assert sets[0] == e["first_set"] and len(sets) == 9
        f = facts_with(legacy=save, iptables_version=P.parse_iptables_version("iptables v1.6.0"),
                       binaries={b: f"/sbin/{b}" for b in ("iptables", "iptables-save")},
                       addrs=[{"ifname": "enp0s8", "addr_info": [{"family": "inet", "local": ip,
                                                                  "prefixlen": 24}]}])
        snap = _with_shape(_snapshot(nodes, (_ds("kube-system", "weave-net", ["weave"]),)),
                           {"master": f})
        assert snap.shape.cni == "other" and "weave" in snap.shape.cni_detail
        findings, errors = run_checks(snap, {"master": f})
        assert errors == [] and [x.code for x in findings] == e["findings"], \
            [(x.code, x.evidence) for x in findings]
        from clusterfix_tui.core.checks.firewall_path import cluster_flows

        flows = [fl for fl in cluster_flows(snap, "master", f) if fl.hook == "forward"]
        assert _forward_blocklists(save.table("filter"), flows) == []


@pytest.mark.parametrize("name", sorted(n for n, s in BY_FILE.items() if s["kind"] == "weave-save-r5"))
def test_weave_filter_table(name):
    check_weave_save_r5(BY_FILE[name])
