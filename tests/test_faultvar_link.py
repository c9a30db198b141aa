"""Link / route / overlay / sysctl fault variants beyond the lab catalog's one instance of each
class, from facts recorded on the lab with the variant injected by hand (tests/data/faultlink/*.tgz,
written by `clusterfix-tui bundle`): each is diagnosed offline and its repair plan built, as
`fix` would on the real cluster."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from clusterfix_tui.core import bundle as B
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.core.fixes.cni_bridge import STEP as CNI_STEP
from clusterfix_tui.core.fixes.engine import is_opt_in
from clusterfix_tui.transports.replay import ReplayAPI, ReplayShells

DATA = Path(__file__).parent / "data" / "faultlink"


@functools.lru_cache(maxsize=None)
def _diag(name: str) -> Any:
    b = B.read(DATA / f"{name}.tgz")
    return diagnose(ReplayAPI(b), ReplayShells(b))


def _found(d: Any, code: str, node: str) -> list[Any]:
    return [f for f in d.findings if f.code == code and f.node == node]


def _commands(plan: Any, node: str) -> list[str]:
    return [a.command for a in plan.actions if a.target == node and a.mutating]


# -- recorded: node-2's neighbour entry for node-3's subnet deleted, node-3's cni0 carrying its
# gateway as /16 instead of /24, node-1's cni0 carrying an extra foreign /24 beside its gateway ---
REC1 = "neigh-missing-cni0-prefix-extra"


def test_missing_neighbour_entry_of_a_peer_is_found() -> None:
    # node-2 cannot reach node-3's pods (measured: "No route to host" from node-2 to 10.244.2.2)
    d = _diag(REC1)
    f = _found(d, "FLANNEL_STALE_VTEP", "node-2")
    assert len(f) == 1, [x.code + "@" + x.node for x in d.findings]
    data = f[0].data
    assert data["peer_node"] == "node-3" and data["neigh_missing"] is True
    assert data["fdb_missing"] is False and data["where"] == ["neigh"]
    assert any("no entry 10.244.2.0 lladdr" in e for e in f[0].evidence)
    # the other peers' entries on node-2, and every other node's, are fine
    assert not [x for x in d.findings if x.code == "FLANNEL_STALE_VTEP" and x.node != "node-2"]


def test_missing_neighbour_entry_is_added_with_a_rollback_that_removes_it() -> None:
    d = _diag(REC1)
    plan = CNI_STEP.plan(d)
    cmds = _commands(plan, "node-2")
    mac = _found(d, "FLANNEL_STALE_VTEP", "node-2")[0].data["expected_mac"]
    assert cmds == [f"ip neigh replace 10.244.2.0 lladdr {mac} dev flannel.1 nud permanent"]
    act = next(a for a in plan.actions if a.target == "node-2" and a.mutating)
    assert act.rollback is not None and act.rollback.command == "ip neigh del 10.244.2.0 dev flannel.1"
    assert act.precondition is not None and "lladdr" in act.precondition.command
    # no flannel restart is needed for an entry we can write as flannel does
    assert not any("delete pod" in c for c in cmds)


def test_cni0_gateway_with_a_wrong_prefix_length_is_a_bridge_conflict() -> None:
    # the bridge plugin compares "IP/len" as text: 10.244.2.1/16 refuses every new pod
    d = _diag(REC1)
    f = _found(d, "CNI_BRIDGE_CONFLICT", "node-3")
    assert len(f) == 1
    assert f[0].data["wrong_addresses"] == ["10.244.2.1/16"]
    assert f[0].data["expected"] == "10.244.2.1/24"


def test_wrong_prefix_gateway_is_replaced_add_first_then_delete() -> None:
    d = _diag(REC1)
    plan = CNI_STEP.plan(d)
    cmds = _commands(plan, "node-3")
    add = cmds.index("ip addr add 10.244.2.1/24 dev cni0")
    dele = next(i for i, c in enumerate(cmds) if "ip addr del 10.244.2.1/16 dev cni0" in c)
    assert add < dele, cmds
    acts = [a for a in plan.actions if a.target == "node-3" and a.mutating]
    assert acts[add].rollback.command == "ip addr del 10.244.2.1/24 dev cni0"
    assert acts[dele].rollback.command == "ip addr add 10.244.2.1/16 dev cni0"


def test_extra_foreign_address_beside_the_gateway_is_removed_alone() -> None:
    d = _diag(REC1)
    f = _found(d, "CNI_BRIDGE_CONFLICT", "node-1")
    assert f and f[0].data["wrong_addresses"] == ["10.244.99.1/24"]
    plan = CNI_STEP.plan(d)
    cmds = _commands(plan, "node-1")
    # the gateway stays: nothing is added, the bridge is not deleted
    assert not any("ip addr add" in c for c in cmds)
    assert not any("link delete" in c for c in cmds)
    assert any("ip addr del 10.244.99.1/24 dev cni0" in c for c in cmds)


# -- recorded: node-1's fdb entry for node-2's VTEP deleted, flannel.1 down on node-2 (its routes
# and neighbour entries went with it), cni0 down on node-3 (its podCIDR route went with it) ------
REC2 = "fdb-missing-flannel-down-cni0-down"


def test_missing_fdb_entry_is_added_not_left_as_a_note() -> None:
    # before: found (fdb_missing) but planned as "FLANNEL_STALE_VTEP without MACs in its data"
    d = _diag(REC2)
    f = _found(d, "FLANNEL_STALE_VTEP", "node-1")
    assert len(f) == 1 and f[0].data["fdb_missing"] is True and f[0].data["peer_node"] == "node-2"
    mac, peer_ip = f[0].data["expected_mac"], f[0].data["peer_ip"]
    plan = CNI_STEP.plan(d)
    assert _commands(plan, "node-1") == [
        f"bridge fdb append {mac} dev flannel.1 dst {peer_ip} self permanent"]
    act = next(a for a in plan.actions if a.target == "node-1" and a.mutating)
    assert act.rollback.command == f"bridge fdb del {mac} dev flannel.1 dst {peer_ip} self"
    assert not any("without MACs" in n for n in plan.notes)


def test_flannel_and_bridge_devices_set_down_are_found() -> None:
    # before: flannel.1 down showed only as missing routes / neighbour entries (whose re-adding
    # fails on a down device: "Network is down"), cni0 down as nothing at all while the node's
    # pods were cut off
    d = _diag(REC2)
    f2 = _found(d, "FLANNEL_LINK_DOWN", "node-2")
    f3 = _found(d, "FLANNEL_LINK_DOWN", "node-3")
    assert len(f2) == 1 and f2[0].data["devices"] == ["flannel.1"]
    assert len(f3) == 1 and f3[0].data["devices"] == ["cni0"]
    assert not _found(d, "FLANNEL_LINK_DOWN", "node-1")


def test_a_device_set_down_is_set_up_before_its_routes_and_entries_are_re_added() -> None:
    d = _diag(REC2)
    plan = CNI_STEP.plan(d)
    cmds = _commands(plan, "node-2")
    assert cmds[0] == "ip link set flannel.1 up", cmds
    assert any(c.startswith("ip route replace 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink")
               for c in cmds[1:])
    assert any(c.startswith("ip neigh replace 10.244.2.0 lladdr") for c in cmds[1:])
    up = next(a for a in plan.actions if a.target == "node-2" and a.mutating)
    assert up.rollback.command == "ip link set flannel.1 down"
    assert _commands(plan, "node-3") == ["ip link set cni0 up"]


def test_link_down_is_judged_on_the_admin_flag_only() -> None:
    # cni0 on a node without pods is UP with NO-CARRIER (operstate DOWN): not a finding
    import dataclasses

    from clusterfix_tui.core.checks import cni

    d = _diag(REC2)
    facts = d.facts["node-1"]
    links = [dict(x) for x in facts.links]
    for x in links:
        if x.get("ifname") == "cni0":
            x["flags"] = ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]
            x["operstate"] = "DOWN"
    f1 = dataclasses.replace(facts, links=tuple(links))
    assert not [f for f in cni.check(d.snapshot, {"node-1": f1}) if f.code == "FLANNEL_LINK_DOWN"]


# -- recorded: flannel.1 deleted on node-2; flannel.1 recreated by hand on node-3 with a new MAC
# (its address, routes, neighbour and fdb entries re-added) while its annotation names the old one
REC3 = "flannel-deleted-vtep-recreated"


def test_deleted_flannel_device_restarts_flannel_instead_of_routing_through_nothing() -> None:
    # before: `ip route replace ... dev flannel.1 onlink` per peer (fails: no such device)
    d = _diag(REC3)
    f = _found(d, "FLANNEL_MISSING_ROUTE", "node-2")
    assert len(f) == 1 and f[0].data["link_present"] is False
    plan = CNI_STEP.plan(d)
    cmds = _commands(plan, "node-2")
    assert not any("ip route" in c for c in cmds), cmds
    assert any(a.target == "node-2" and a.kind == "api" for a in plan.actions)  # flannel pod
    assert any("flannel.1 does not exist" in n for n in plan.notes)


def test_own_vtep_mac_differing_from_the_annotation_is_found_on_the_node() -> None:
    # before: nothing (the peers' entries agree with the stale annotation) while every peer's
    # traffic to node-3's pods was dropped
    d = _diag(REC3)
    f = _found(d, "FLANNEL_STALE_VTEP", "node-3")
    assert len(f) == 1 and f[0].data["self_mismatch"] is True
    assert f[0].data["peer_node"] == "node-3"
    assert f[0].data["wrong_mac"] != f[0].data["expected_mac"]
    plan = CNI_STEP.plan(d)
    # the fix is a flannel restart on node-3 only (it re-annotates the device's MAC)
    assert not any(c.startswith(("bridge fdb", "ip neigh")) for c in _commands(plan, "node-3"))
    assert any(a.target == "node-3" and a.kind == "api" for a in plan.actions)
    assert not [a for a in plan.actions if a.target == "node-1"]


# -- recorded: ip_forward 1, but net.ipv4.conf.cni0.forwarding=0 on node-2 (measured: every
# NodePort to its pod and pod-to-pod into node-2 timed out) and flannel.1's forwarding 0 on node-3
REC4 = "device-forwarding-off"


def test_forwarding_off_on_a_pod_network_device_is_ip_forward_off() -> None:
    # before: rc 0, "healthy"
    d = _diag(REC4)
    f2 = _found(d, "IP_FORWARD_OFF", "node-2")
    f3 = _found(d, "IP_FORWARD_OFF", "node-3")
    assert len(f2) == 1 and f2[0].data["interfaces"] == ["cni0"]
    assert f2[0].data["sysctls"] == ["net.ipv4.conf.cni0.forwarding"]
    assert len(f3) == 1 and f3[0].data["sysctls"] == ["net.ipv4.conf.flannel/1.forwarding"]
    assert not _found(d, "IP_FORWARD_OFF", "node-1")


def test_device_forwarding_is_set_at_runtime_and_not_persisted() -> None:
    from clusterfix_tui.core.fixes.host_network import STEP as HOST_STEP

    plan = HOST_STEP.plan(_diag(REC4))
    assert _commands(plan, "node-2") == ["sysctl -w net.ipv4.conf.cni0.forwarding=1"]
    assert _commands(plan, "node-3") == ["sysctl -w net.ipv4.conf.flannel/1.forwarding=1"]
    a = next(a for a in plan.actions if a.target == "node-2" and a.mutating)
    # the rollback sets 0 back on the device the fix changed only (its ifindex from the facts)
    idx = next(x["ifindex"] for x in _diag(REC4).facts["node-2"].links if x.get("ifname") == "cni0")
    assert a.rollback.command == (f'if [ "$(cat /sys/class/net/cni0/ifindex 2>/dev/null)" = {idx} ]; '
                                  "then sysctl -w net.ipv4.conf.cni0.forwarding=0; else echo 'cni0 is "
                                  f"not the device this session changed (its ifindex was {idx}): left "
                                  "as it is'; fi")
    # ip_forward itself is on: it is neither written nor persisted
    assert not any("ip_forward" in c or "sysctl.d" in c for c in _commands(plan, "node-2"))


# -- recorded: node-1 `blackhole 10.244.1.0/25` (half of node-2's podCIDR); node-3 a rogue
# `10.244.0.0/26 via <lab bridge> dev eth0` inside node-1's podCIDR and node-2's route replaced by
# `unreachable 10.244.1.0/24` -------------------------------------------------------------------
REC5 = "routes-shadowed"


def test_more_specific_route_inside_a_peer_podcidr_is_named() -> None:
    d = _diag(REC5)
    f1 = _found(d, "FLANNEL_MISSING_ROUTE", "node-1")
    assert len(f1) == 1
    assert [s["route"] for s in f1[0].data["shadowing"]] == ["blackhole 10.244.1.0/25"]
    f3 = _found(d, "FLANNEL_MISSING_ROUTE", "node-3")
    assert [s["dst"] for s in f3[0].data["shadowing"]] == ["10.244.0.0/26"]
    assert [m["actual"] for m in f3[0].data["missing"]] == [["unreachable 10.244.1.0/24"]]


def test_shadowing_route_is_deleted_not_papered_over_by_a_flannel_restart() -> None:
    # before: node-1's plan was only a flannel restart, which leaves the blackhole in place
    d = _diag(REC5)
    plan = CNI_STEP.plan(d)
    c1 = _commands(plan, "node-1")
    assert c1 == ["if ip route show to exact 10.244.1.0/25 type blackhole | grep -q .; "
                  "then ip route del blackhole 10.244.1.0/25 scope global; fi"], c1
    a1 = next(a for a in plan.actions if a.target == "node-1" and a.mutating)
    assert a1.rollback.command == "ip route add blackhole 10.244.1.0/25 scope global"
    assert not any(a.target == "node-1" and a.kind == "api" for a in plan.actions)
    c3 = _commands(plan, "node-3")
    assert any("ip route del 10.244.0.0/26 via " in c and " dev eth0" in c for c in c3)
    assert any("ip route replace 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink" in c
               for c in c3)


# -- recorded: the control plane's /root/.kube/config on a wrong port, node-2's server a host name
# that does not resolve, node-3's /root/.kube/config missing -------------------------------------
REC6 = "kubeconfig-cp-port-unresolvable-missing"
# -- recorded: node-2's server on a wrong port, node-3's CA data another CA's (x509 unknown
# authority with the right server) --------------------------------------------------------------
REC7 = "kubeconfig-wrong-ca-wrong-port"


def test_control_plane_kubeconfig_that_exists_and_fails_is_found_and_rewritten() -> None:
    # before: control-plane nodes were never checked
    from clusterfix_tui.core.fixes.worker_kubeconfig import STEP as KC_STEP

    d = _diag(REC6)
    f = _found(d, "WORKER_KUBECONFIG_BROKEN", "node-1")
    assert len(f) == 1 and f[0].data["control_plane"] is True
    assert f[0].data["reason"] == "wrong-server" and "control-plane" in f[0].title
    plan = KC_STEP.plan(d)
    cmds = _commands(plan, "node-1")
    server = f[0].data["expected_server"]
    write = next(a for a in plan.actions if a.target == "node-1" and a.mutating
                 and "CFX_SERVER=" in a.command and not is_opt_in(a))
    assert f"CFX_SERVER={server} " in write.command and write.precondition is not None
    assert any(is_opt_in(a) and "admin.conf" in a.command
               for a in plan.actions if a.target == "node-1")
    assert cmds  # backup + write (+ the opt-in)
    # the unresolvable host name and the missing file on the workers are still found
    assert _found(d, "WORKER_KUBECONFIG_BROKEN", "node-2")[0].data["reason"] == "wrong-server"
    assert _found(d, "WORKER_KUBECONFIG_BROKEN", "node-3")[0].data["reason"] == "missing"


def test_control_plane_without_a_root_kubeconfig_is_not_a_finding() -> None:
    import dataclasses

    from clusterfix_tui.core.checks import kubeconfig

    d = _diag(REC6)
    f1 = d.facts["node-1"]
    cfgs = {k: v for k, v in f1.kubeconfigs.items() if k != "/root/.kube/config"}
    f1 = dataclasses.replace(f1, kubeconfigs=cfgs)
    assert not kubeconfig.check(d.snapshot, {"node-1": f1})


def test_wrong_ca_with_the_right_server_offers_the_nodes_own_kubeconfig_as_opt_in() -> None:
    from clusterfix_tui.core.fixes.worker_kubeconfig import STEP as KC_STEP

    d = _diag(REC7)
    f = _found(d, "WORKER_KUBECONFIG_BROKEN", "node-3")
    assert f and f[0].data["reason"] == "kubectl-fails"
    plan = KC_STEP.plan(d)
    acts = [a for a in plan.actions if a.target == "node-3"]
    assert acts and all(is_opt_in(a) for a in acts)  # nothing by default
    own = next(a for a in acts if "own-kubeconfig" in a.id)
    assert "/etc/kubernetes/kubelet.conf" in own.command and own.precondition is not None
    assert own.rollback is not None


# -- recorded on a dual-stack lab: flannel-v6.1 down on node-1, node-2 `blackhole
# fd00:10:244::/65` (half of node-1's IPv6 podCIDR), node-3's IPv6 neighbour entry for node-2's
# subnet deleted --------------------------------------------------------------------------------
REC8 = "dual-v6-link-down-neigh-blackhole"


def test_ipv6_variants_are_found_per_family() -> None:
    d = _diag(REC8)
    assert _found(d, "FLANNEL_LINK_DOWN", "node-1")[0].data["devices"] == ["flannel-v6.1"]
    n3 = _found(d, "FLANNEL_STALE_VTEP", "node-3")
    assert len(n3) == 1 and n3[0].data["device"] == "flannel-v6.1" and n3[0].data["neigh_missing"]
    sh = _found(d, "FLANNEL_MISSING_ROUTE", "node-2")[0].data["shadowing"]
    assert [s["dst"] for s in sh] == ["fd00:10:244::/65"]


def test_the_kernels_own_ipv6_routes_are_never_shadowing() -> None:
    # flannel-v6.1 carries its subnet address as /128: the kernel's `fd00:10:244:1:: dev
    # flannel-v6.1 proto kernel` route lies inside the node's own podCIDR and is normal
    d = _diag(REC8)
    for f in d.findings:
        if f.code == "FLANNEL_MISSING_ROUTE":
            assert all(s["json"].get("protocol") != "kernel" for s in f.data["shadowing"]), f.evidence
    assert not _found(d, "FLANNEL_MISSING_ROUTE", "node-3")
    plan = CNI_STEP.plan(d)
    assert _commands(plan, "node-2") == [
        "if ip -6 route show to exact fd00:10:244::/65 type blackhole dev lo | grep -q .; "
        "then ip -6 route del blackhole fd00:10:244::/65 dev lo metric 1024 pref medium; fi"]


# -- pods stuck for a reason a restart does not change ------------------------------------------

def _not_running(node: str, reason: str, comp: str = "kube-proxy") -> Any:
    from fix_helpers import finding

    ns, ds = ("kube-system", "kube-proxy") if comp == "kube-proxy" else ("kube-flannel", "kube-flannel-ds")
    return finding("POD_NOT_RUNNING", node, "pods", namespace=ns, pod=f"{ds}-{node}", phase="Pending",
                   reason=reason, daemonset=ds,
                   component="kube_proxy" if comp == "kube-proxy" else "flannel")


def test_image_pull_and_unschedulable_pods_are_not_restarted_but_explained() -> None:
    # before: `kubectl delete pod` (the DaemonSet recreates the same pod, stuck the same way)
    from fix_helpers import FakeDiagnosis, snapshot

    from clusterfix_tui.core.fixes import get_step

    step = get_step("pods")
    for reason, words in (("ImagePullBackOff", "image cannot be pulled"),
                          ("ErrImagePull", "image cannot be pulled"),
                          ("CreateContainerConfigError", "ConfigMap"),
                          ("Pending", "scheduler")):
        plan = step.plan(FakeDiagnosis([_not_running("node-2", reason)], snapshot=snapshot()))
        assert plan.actions == (), (reason, [a.api for a in plan.actions])
        assert any(reason in n and words in n for n in plan.notes), plan.notes
    # a pod that is not ready for another reason is still restarted
    plan = step.plan(FakeDiagnosis([_not_running("node-2", "ContainersNotReady")],
                                   snapshot=snapshot()))
    assert [a.api["verb"] for a in plan.actions] == ["delete_pod"]


# -- recorded: node-1 a pod's MTU raised to 1500 (flannel.1 1450), node-2's underlay eth0 lowered
# to 1400 (flannel.1 stays 1450), node-3's subnet.env FLANNEL_MTU=1500 ---------------------------
REC9 = "mtu"


def test_mtu_mismatches_are_reported_and_nothing_is_planned() -> None:
    d = _diag(REC9)
    n2 = _found(d, "FLANNEL_MTU_MISMATCH", "node-2")
    assert len(n2) == 1 and n2[0].data["problems"] == ["underlay"]
    assert (n2[0].data["mtu"], n2[0].data["underlay"], n2[0].data["underlay_mtu"],
            n2[0].data["max_mtu"]) == (1450, "eth0", 1400, 1350)
    assert _found(d, "FLANNEL_MTU_MISMATCH", "node-1")[0].data["problems"] == ["pods"]
    assert _found(d, "FLANNEL_MTU_MISMATCH", "node-3")[0].data["problems"] == ["subnet-env"]
    assert all(f.step is None and f.severity == "warning"
               for f in d.findings if f.code == "FLANNEL_MTU_MISMATCH")
    # report only: no step plans anything for it
    from clusterfix_tui.core.fixes import get_step

    for name in ("cni_bridge", "host_network", "pods"):
        plan = get_step(name).plan(d)
        assert not [a for a in plan.actions if "FLANNEL_MTU_MISMATCH" in (a.finding_codes or ())]


def test_a_healthy_mtu_is_no_finding() -> None:
    for rec in (REC1, REC2, REC5):
        assert not [f for f in _diag(rec).findings if f.code == "FLANNEL_MTU_MISMATCH"]


# -- sysctl persistence: a file read after the drop-in at boot sets the value back ----------------

def test_persisting_names_each_later_sysctl_file_that_wins_at_boot(tmp_path: Path) -> None:
    # measured on the lab: /etc/sysctl.conf (Debian's /etc/sysctl.d/99-sysctl.conf link sorts
    # after 99-clusterfix-kubernetes.conf) with net.ipv4.ip_forward = 0: fix --yes printed both
    import subprocess

    from clusterfix_tui.core.fixes import host_network as H

    cmd = H.persist_sysctl_command({"net.ipv4.ip_forward": "1"}, "/var/backups/x")
    assert cmd.endswith(H.overridden_at_boot_command({"net.ipv4.ip_forward": "1"}))
    conf = tmp_path / "99-sysctl.conf"
    conf.write_text("# net.ipv4.ip_forward = 0 (a comment)\nnet.ipv4.ip_forward = 0\n"
                    " net.bridge.bridge-nf-call-iptables=1\n-net.ipv4.ip_forward=0\n")
    out = subprocess.run(["awk", "-v", "want=net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1",
                          "-v", f"drop={H.SYSCTL_DROPIN}", H._AWK_OVERRIDE, str(conf)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(out) == 2 and all(f"{conf} sets net.ipv4.ip_forward = 0" in x for x in out), out
    # the scan never fails the action
    assert H.overridden_at_boot_command({"net.ipv4.ip_forward": "1"}).endswith("done; true; }")


# -- recorded on a k3s lab: node-1's fdb entry for node-3's VTEP MAC sent to a wrong underlay IP --
REC10 = "k3s-fdb-wrong-dst"


def test_fdb_entry_to_a_wrong_underlay_ip_is_named_and_its_rollback_restores_it() -> None:
    # before: titled "stale VTEP MAC X instead of X", and the rollback appended X dst <peer IP>
    # (the repaired state) instead of the wrong destination it replaced
    d = _diag(REC10)
    f = _found(d, "FLANNEL_STALE_VTEP", "node-1")
    assert len(f) == 1
    mac, peer_ip = f[0].data["expected_mac"], f[0].data["peer_ip"]
    assert f[0].data["wrong_dsts"] == ["10.213.60.99"] and f[0].data["wrong_macs"] == []
    assert f"to 10.213.60.99 instead of {peer_ip}" in f[0].title
    plan = CNI_STEP.plan(d)
    act = next(a for a in plan.actions if a.target == "node-1" and a.mutating)
    assert act.command == (f"{{ bridge fdb del {mac} dev flannel.1 dst 10.213.60.99 self || true; }}; "
                           f"bridge fdb append {mac} dev flannel.1 dst {peer_ip} self permanent")
    assert act.rollback.command.endswith(
        f"bridge fdb append {mac} dev flannel.1 dst 10.213.60.99 self permanent")
    # k3s: nothing here needs flannel restarted, so the k3s service is not restarted
    assert not any("systemctl restart" in (a.command or "") for a in plan.actions)


def test_own_pods_routes_on_their_veths_are_never_shadowing() -> None:
    """canal (rke2's default CNI) and the ptp plugin route each pod of the node to its own veth
    ('10.244.1.5 dev cali... scope link', /32 inside the node's podCIDR): those are the pods'
    routes, never deleted as shadowing (before: every such route was planned for deletion, which
    cuts every pod of the node off). A blackhole, or a route via a gateway or through the vxlan
    device, inside the node's own podCIDR still is."""
    import dataclasses

    from clusterfix_tui.core.checks import flannel

    d = _diag(REC5)
    f = d.facts["node-2"]
    pods = ({"dst": "10.244.1.5", "dev": "cali7d1e0a5c4b2", "scope": "link", "flags": []},
            {"dst": "10.244.1.6", "dev": "veth0a1b2c3d", "scope": "link", "flags": []})
    facts = dict(d.facts, **{"node-2": dataclasses.replace(f, routes=f.routes + pods)})
    found = [x for x in flannel.check(d.snapshot, facts)
             if x.code == "FLANNEL_MISSING_ROUTE" and x.node == "node-2"]
    assert not any(s["peer_node"] == "node-2" for x in found for s in x.data["shadowing"]), \
        [x.evidence for x in found]
    rogue = ({"dst": "10.244.1.128/25", "type": "blackhole", "flags": []},
             {"dst": "10.244.1.64/26", "dev": "flannel.1", "gateway": "10.244.0.0",
              "flags": ["onlink"]})
    facts["node-2"] = dataclasses.replace(f, routes=f.routes + pods + rogue)
    found = [x for x in flannel.check(d.snapshot, facts)
             if x.code == "FLANNEL_MISSING_ROUTE" and x.node == "node-2"]
    assert sorted(s["dst"] for x in found for s in x.data["shadowing"]
                  if s["peer_node"] == "node-2") == ["10.244.1.128/25", "10.244.1.64/26"]


def test_an_ipv6_vtep_without_a_link_finds_its_underlay_by_local6() -> None:
    # iproute2 prints an IPv6 VTEP's address as "local6" (ip/iplink_vxlan.c); flannel-v6.1 made
    # without `dev` has no "link": its underlay is the device holding that address. Read as
    # "local" only, the underlay was not found and an MTU too big for it was silent. And a
    # dual-stack node whose two vxlan devices both outgrow the underlay failed the whole flannel
    # check for the node (the two MTU findings were merged as family data they do not carry):
    # its other flannel findings were lost with it.
    import copy
    import dataclasses

    from clusterfix_tui.core.checks import run_checks

    d = _diag("dual-v6-link-down-neigh-blackhole")
    node = "node-3"
    links = copy.deepcopy(list(d.facts[node].links or ()))
    v6 = next(x for x in links if x.get("ifname") == "flannel-v6.1")
    info = v6["linkinfo"]["info_data"]
    assert info.pop("link") == "eth0" and info.get("local6") and "local" not in info
    next(x for x in links if x.get("ifname") == "eth0")["mtu"] = 1400  # < 1450 + 50, 1430 + 70
    facts = dict(d.facts, **{node: dataclasses.replace(d.facts[node], links=links)})
    findings, errors = run_checks(d.snapshot, facts)
    assert errors == []
    got = {f.data.device: f.data for f in findings
           if f.code == "FLANNEL_MTU_MISMATCH" and f.node == node}
    assert set(got) == {"flannel.1", "flannel-v6.1"}, got
    assert (got["flannel-v6.1"].underlay, got["flannel-v6.1"].max_mtu) == ("eth0", 1330)
    assert got["flannel-v6.1"].problems == ["underlay"]


def test_a_dual_stack_node_with_both_vxlan_mtus_too_big_keeps_its_flannel_check() -> None:
    # the recorded devices as they are (flannel-v6.1 has its "link"): both families' MTU
    # findings on one node made flannel's check raise for the node (check error, every other
    # flannel finding of the node lost); each device is now its own finding
    import copy
    import dataclasses

    from clusterfix_tui.core.checks import run_checks

    d = _diag("dual-v6-link-down-neigh-blackhole")
    node = "node-3"
    links = copy.deepcopy(list(d.facts[node].links or ()))
    next(x for x in links if x.get("ifname") == "eth0")["mtu"] = 1400
    facts = dict(d.facts, **{node: dataclasses.replace(d.facts[node], links=links)})
    findings, errors = run_checks(d.snapshot, facts)
    assert errors == []
    assert sorted(f.data.device for f in findings
                  if f.code == "FLANNEL_MTU_MISMATCH" and f.node == node) == ["flannel-v6.1", "flannel.1"]
    before = {(f.code, f.node) for f in d.findings if f.code.startswith("FLANNEL_")
              and f.code != "FLANNEL_MTU_MISMATCH"}
    assert before <= {(f.code, f.node) for f in findings}
