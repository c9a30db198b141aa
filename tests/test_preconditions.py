"""Per-action preconditions: part of every shown plan, re-checked right before each action runs;
a target that changed is skipped with its reason, a goal that already holds is "already done"."""

from __future__ import annotations

import subprocess

from fix_helpers import FakeDiagnosis, finding, snapshot

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.engine import apply_plan, delete_pod_action
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CLUSTER, CommandResult, Plan


def _plans() -> list[Plan]:
    ipt = FakeDiagnosis([
        finding("IPTABLES_BACKEND_CONFLICT", "node-2", "iptables", kube_proxy_backend="nft",
                other_backend="legacy", host_iptables="legacy",
                stale_chains={"nat": ["KUBE-SERVICES"]}),
        finding("FORWARD_DROP", "node-2", "iptables", backend="legacy"),
        finding("FORWARD_DROP", "node-3", "iptables", backend="nft-native", family="inet",
                table="fw", chain="forward"),
        finding("KUBE_PROXY_INCOMPATIBLE_CHAIN", "node-1", "iptables", cause="foreign-nft-rule",
                foreign_rules=[{"family": "ip", "table": "nat", "chain": "KUBE-SEP-X",
                                "handle": 42, "text": "ct state new counter packets 3 bytes 9"}]),
    ], snapshot=snapshot())
    cni = FakeDiagnosis([
        finding("FLANNEL_STALE_VTEP", "node-1", "cni_bridge", peer_node="node-2",
                peer_ip="10.213.5.12", peer_subnet_gw="10.244.1.0", wrong_mac="de:ad:be:ef:0:2",
                expected_mac="aa:bb:cc:0:0:2", where=["fdb", "neigh"], device="flannel.1"),
        finding("FLANNEL_STALE_SUBNET", "node-1", "cni_bridge", device="flannel.1",
                pod_cidr="10.244.0.0/24", stale_addresses=["10.244.7.0/32"],
                subnet_env_stale=True, stale_routes=[{"dst": "10.244.9.0/24",
                                                      "gateway": "10.244.9.0",
                                                      "dev": "flannel.1"}]),
        finding("FLANNEL_MISSING_ROUTE", "node-2", "cni_bridge", missing=[{
            "peer_node": "node-3", "expected": "10.244.2.0/24 via 10.244.2.0 dev flannel.1 "
            "onlink"}]),
        finding("CNI_BRIDGE_CONFLICT", "node-2", "cni_bridge", device="cni0",
                wrong_addresses=["10.22.0.1/16"], pod_cidr="10.244.1.0/24"),
        finding("CNI_BRIDGE_CONFLICT", "node-3", "cni_bridge", device="cni0"),
        finding("CNI_STRAY_CONFLIST", "node-3", "cni_bridge", dir="/etc/cni/net.d",
                stray=["10-bridge.conf"]),
    ], snapshot=snapshot())
    probe = {"httpGet": {"path": "/", "port": 8096}, "periodSeconds": 5}
    pods = FakeDiagnosis([
        finding("KUBE_PROXY_CRASHLOOP", "node-3", "pods", pod="kube-proxy-node-3",
                namespace="kube-system", daemonset="kube-proxy"),
        finding("FLANNEL_CRASHLOOP", "node-1", "pods", pod="kube-flannel-ds-node-1",
                namespace="kube-flannel", daemonset="kube-flannel-ds"),
        finding("FLANNEL_CRASHLOOP", "node-2", "pods", pod="kube-flannel-ds-node-2",
                namespace="kube-flannel", daemonset="kube-flannel-ds"),
        finding("PROBE_NO_ROUTE", "node-2", "pods", namespace="media", deployment="jellyfin",
                container="jellyfin", probe=probe, pods=["media/jellyfin-abc-x"]),
    ], snapshot=snapshot())
    return [get_step("iptables").plan(ipt), get_step("cni_bridge").plan(cni),
            get_step("pods").plan(pods)]


def test_every_mutating_action_that_changes_state_carries_a_precondition():
    plans = _plans()
    for plan in plans:
        assert plan.actions, plan.notes
        for a in plan.actions:
            backup = (getattr(a, "change", None) or {}).get("what") == "backup"
            if a.mutating and not backup:
                assert a.precondition is not None, (plan.step, a.id, a.command)
    kinds = {a.precondition.api["check"] for p in plans for a in p.actions
             if a.precondition is not None and a.precondition.kind == "api"}
    assert kinds == {"pod_uid", "daemonset_exists", "deployment_probe"}


def test_shell_preconditions_are_valid_read_only_shell():
    mutating_words = (" -P ", " -D ", " -A ", "delete", " del ", "restore", " mv ", "replace",
                      "update-alternatives --set", " add ")
    n = 0
    for plan in _plans():
        for a in plan.actions:
            p = a.precondition
            if p is None or p.kind != "shell":
                continue
            n += 1
            r = subprocess.run(["sh", "-n", "-c", p.command], capture_output=True, text=True)
            assert r.returncode == 0, (a.id, p.command, r.stderr)
            assert not any(w in f" {p.command} " for w in mutating_words), p.command
            assert p.expect
    assert n >= 10


def test_nft_rule_check_compares_the_shown_text_without_counters():
    p = pre.nft_rule_at_handle("ip", "nat", "KUBE-SEP-X", 42, "ct state new counter")
    # the check, run against a fake `nft` printing a rule list, answers by its exit code
    def run(listing: str) -> int:
        script = ("nft() { printf '%s\\n' " + _sq(listing) + "; }; " + p.command)
        return subprocess.run(["bash", "-c", script], capture_output=True).returncode

    same = "table ip nat {\n\tchain KUBE-SEP-X {\n\t\tct state new counter packets 9 bytes 99 # handle 42\n\t}\n}"
    other = same.replace("ct state new", "ip saddr 1.2.3.4")
    gone = same.replace("# handle 42", "# handle 43")
    assert run(same) == 0
    assert run(other) == 4
    assert run(gone) == pre.EXIT_DONE


def _sq(text: str) -> str:
    import shlex

    return shlex.quote(text)


class _Shell:
    def __init__(self, answers):
        self.answers = answers
        self.ran = []

    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        self.ran.append(command)
        return self.answers.pop(0)


class _Runner:
    dry_run = False

    def __init__(self, result=None):
        self.ran = []
        self.result = result or CommandResult(0, "ok\n")

    def run_action(self, action, *, on_line=None):
        self.ran.append(action.id)
        return self.result


def _shell_plan() -> Plan:
    return get_step("cni_bridge").plan(FakeDiagnosis([
        finding("FLANNEL_STALE_SUBNET", "node-1", "cni_bridge", device="flannel.1",
                stale_addresses=["10.244.7.0/32", "10.244.8.0/32", "10.244.6.0/32"]),
    ], snapshot=snapshot()))


def test_changed_target_is_skipped_with_its_reason_and_done_goal_is_not_a_failure(tmp_path):
    plan = _shell_plan()
    dels = [a for a in plan.actions if a.precondition is not None and a.kind == "shell"]
    assert len(dels) == 3
    shell = _Shell([CommandResult(0, ""), CommandResult(3, "flannel.1 does not carry it\n"),
                    CommandResult(4, "something else now\n")])
    runner = _Runner()
    j = Journal(tmp_path / "j.jsonl")
    checker = pre.make_prechecker(None, lambda node, addr=None: shell)
    # only the three guarded deletes (the snapshot and the flannel restart are not approved)
    out = apply_plan(plan, [a.id for a in dels], runner, j, precheck=checker)
    by_id = {o.action_id: o for o in out.actions}
    assert runner.ran == [dels[0].id]  # never run blind
    assert by_id[dels[1].id].status == "already-done"
    assert by_id[dels[2].id].status == "skipped"
    assert "something else now" in by_id[dels[2].id].detail
    assert shell.ran == [a.precondition.command for a in dels]  # exactly the shown checks
    evs = Journal.read(tmp_path / "j.jsonl")
    checks = [e for e in evs if e["type"] == "precheck"]
    assert [e["state"] for e in checks] == ["holds", "already-done", "changed"]
    assert [e["command"] for e in checks] == [a.precondition.command for a in dels]
    assert {e["action_id"] for e in evs if e["type"] == "command_start"} == {dels[0].id}
    assert out.status == "changed"


def test_a_check_that_cannot_run_skips_the_action():
    plan = _shell_plan()
    a = next(a for a in plan.actions if a.precondition is not None)

    def shells(node, addr=None):
        raise OSError("connection reset")

    runner = _Runner()
    out = apply_plan(plan, [a.id], runner, None, precheck=pre.make_prechecker(None, shells))
    (o,) = [o for o in out.actions if o.action_id == a.id]
    assert o.status == "skipped" and "connection reset" in o.detail
    assert runner.ran == [] and out.status == "skipped"


class _PodAPI:
    def __init__(self, pods):
        self.pods = pods

    def list_pods(self, namespace=None, label_selector=None):
        return [p for p in self.pods if p["metadata"]["namespace"] == namespace]


def _pod(name, uid, deleting=False):
    meta = {"namespace": "kube-system", "name": name, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_pod_preconditions_pin_the_uid_and_a_replaced_or_gone_pod_is_already_done():
    a = delete_pod_action("pods:node-3:1", "node-3", "kube-system", "kube-proxy-x", why="w")
    plan = Plan(step="pods", title="t", actions=(a,))
    api = _PodAPI([_pod("kube-proxy-x", "uid-1")])
    pinned = pre.pin_pod_uids(plan, api)
    p = pinned.actions[0].precondition
    assert p.api["uid"] == "uid-1" and "kube-proxy-x" in p.command
    assert pre.check_api(api, p).state == "holds"
    assert pre.check_api(_PodAPI([_pod("kube-proxy-x", "uid-2")]), p).state == "already-done"
    assert pre.check_api(_PodAPI([_pod("kube-proxy-x", "uid-1", True)]), p).state == \
        "already-done"
    assert pre.check_api(_PodAPI([]), p).state == "already-done"


def test_delete_of_a_pod_that_is_gone_404_is_already_done():
    a = delete_pod_action("pods:node-3:1", "node-3", "kube-system", "kube-proxy-x", why="w")
    plan = Plan(step="pods", title="t", actions=(a,))
    runner = _Runner(CommandResult(1, "", "Error: delete pod kube-system/kube-proxy-x: "
                                      "not found (404): gone\n"))
    out = apply_plan(plan, [a.id], runner, None)
    assert out.actions[0].status == "already-done" and out.status == "unchanged"
    assert CLUSTER  # the module's names stay importable


def test_fdb_fix_is_done_only_when_the_wrong_entry_is_gone_too():
    """The stale VTEP MAC may sit beside the right one: that is not done yet."""
    cni = _plans()[1]
    a = next(a for a in cni.actions if "bridge fdb replace" in a.command)
    good = "aa:bb:cc:0:0:2 dst 10.213.5.12 self permanent"
    wrong = "de:ad:be:ef:0:2 dst 10.213.5.12 self permanent"

    def run(listing: str) -> int:
        script = "bridge() { printf '%s\\n' " + _sq(listing) + "; }; " + a.precondition.command
        return subprocess.run(["bash", "-c", script], capture_output=True).returncode

    assert run(good + "\n" + wrong) == 0
    assert run(wrong) == 0
    assert run(good) == pre.EXIT_DONE
