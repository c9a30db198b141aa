"""The worker_kubeconfig and host_network steps: plans from findings (exact commands, rollbacks,
hostile values), and their commands applied and rolled back for real inside network namespaces
with private mounts (nothing on the host is touched)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.fixes.engine import (
    apply_plan,
    check_rollbacks,
    default_approved,
    is_opt_in,
    rollback,
)
from clusterfix_tui.core.fixes.host_network import rule_argv
from clusterfix_tui.core.fixes.worker_kubeconfig import valid_server
from clusterfix_tui.core.journal import Journal
from clusterfix_tui.core.model import CommandResult, Plan

sys.path.insert(0, os.path.dirname(__file__))
from _env import require_tool  # noqa: E402
from determinism import poll_until  # noqa: E402
from fix_helpers import FakeDiagnosis, del_netns, finding, new_netns, ns, snapshot  # noqa: E402

WORKER = get_step("worker_kubeconfig")
HOST = get_step("host_network")
SERVER = "https://10.213.5.1:6443"


def wk(node: str = "node-2", **data: Any) -> Any:
    base: dict[str, Any] = {
        "reason": "wrong-server", "files": {"/root/.kube/config": "https://10.213.5.99:6443"},
        "kubectl_rc": 1, "kubectl_error": "Unable to connect to the server",
        "expected_server": SERVER, "source_candidates": ["/etc/kubernetes/kubelet.conf"],
        "target": "/root/.kube/config",
    }
    base.update(data)
    return finding("WORKER_KUBECONFIG_BROKEN", node, "worker_kubeconfig", **base)


def by_suffix(plan: Plan) -> dict[str, Any]:
    return {a.id.split(":", 2)[2]: a for a in plan.actions}


def argv(command: str) -> list[str]:
    """The words a POSIX shell sees, with ; && | > as their own tokens."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


# ---------------------------------------------------------------------------------------------
# worker_kubeconfig: plans


def test_worker_nothing_to_do() -> None:
    plan = WORKER.plan(FakeDiagnosis([]))
    assert plan.nothing_to_do and plan.notes


def test_worker_wrong_server_backup_rewrite_verify() -> None:
    plan = WORKER.plan(FakeDiagnosis([wk()]))
    acts = by_suffix(plan)
    assert list(acts) == ["1", "2", "3"]
    backup, write, verify = acts["1"], acts["2"], acts["3"]
    assert "cp -p -- /root/.kube/config" in backup.command and backup.rollback_note
    # the rewrite keeps the file's own credentials: it edits only `server:` lines, in place
    assert "CFX_SERVER=https://10.213.5.1:6443 awk" in write.command
    assert "/etc/kubernetes/admin.conf" not in write.command
    assert "chmod 600 /root/.kube/config.cfx-new" in write.command
    assert write.command.endswith("mv -f -- /root/.kube/config.cfx-new /root/.kube/config")
    assert write.rollback is not None and "cp -p --" in write.rollback.command
    assert write.change == {"what": "/root/.kube/config: server",
                            "before": "https://10.213.5.99:6443", "after": SERVER}
    assert verify.mutating is False
    assert argv(verify.command) == ["kubectl", "--kubeconfig", "/root/.kube/config", "get",
                                    "nodes", "-o", "name", "--request-timeout=10s"]
    assert check_rollbacks(plan) == []
    assert default_approved(plan) == [a.id for a in plan.actions]


def test_worker_missing_copies_the_nodes_own_kubeconfig() -> None:
    f = wk(reason="missing", files={"/etc/kubernetes/kubelet.conf": SERVER},
           source_candidates=["/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf"])
    plan = WORKER.plan(FakeDiagnosis([f]))
    write = by_suffix(plan)["2"]
    assert " /etc/kubernetes/kubelet.conf > /root/.kube/config.cfx-new" in write.command
    assert "mkdir -p -m 700 /root/.kube" in write.command
    assert write.change["before"] == "missing"
    # admin.conf exists on this node: offered, but only as an opt-in with the warning
    opt = [a for a in plan.actions if is_opt_in(a)]
    assert len(opt) == 1 and "/etc/kubernetes/admin.conf" in opt[0].command
    assert opt[0].id not in default_approved(plan)
    assert "credential sprawl" in opt[0].risk and opt[0].rollback is not None
    assert any("WARNING" in n and "cluster-admin" in n for n in plan.notes)
    assert not any("admin.conf" in a.command for a in plan.actions if not is_opt_in(a))


def test_backups_are_per_node() -> None:
    plan = WORKER.plan(FakeDiagnosis([wk(node="node-2"), wk(node="node-3")]))
    assert "-worker_kubeconfig/node-2 " in plan.actions[0].command
    assert "-worker_kubeconfig/node-3 " in plan.actions[3].command
    plan = HOST.plan(FakeDiagnosis([finding("IP_FORWARD_OFF", n, "host_network", value="0")
                                    for n in ("node-1", "node-2", "../x")]))
    dirs = {a.target: a.command.split("mkdir -p -m 700 ")[1].split(" ")[0]
            for a in plan.actions if "mkdir -p -m 700" in a.command}
    assert dirs["node-1"].endswith("-host_network/node-1")
    assert dirs["node-2"].endswith("-host_network/node-2")
    assert dirs["../x"].endswith("-host_network/.._x")


def test_worker_no_admin_conf_no_opt_in() -> None:
    plan = WORKER.plan(FakeDiagnosis([wk()]))
    assert not any(is_opt_in(a) for a in plan.actions)
    assert "admin.conf" not in repr(plan.to_dict())


def test_worker_unknown_server_or_no_source_plans_nothing_and_says_why() -> None:
    plan = WORKER.plan(FakeDiagnosis([wk(expected_server=None)]))
    assert plan.actions == () and any("unknown" in n for n in plan.notes)
    plan = WORKER.plan(FakeDiagnosis([wk(reason="missing", files={}, source_candidates=[])]))
    assert plan.actions == () and any("no kubeconfig of the node's own" in n for n in plan.notes)
    plan = WORKER.plan(FakeDiagnosis([wk(reason="kubectl-fails",
                                         files={"/root/.kube/config": SERVER})]))
    assert plan.actions == () and any("credentials" in n for n in plan.notes)


@pytest.mark.parametrize("server", ["https://x;reboot", "https://a b", "http://$(id):1",
                                    "file:///etc/passwd", "https://h\n:6443"])
def test_worker_refuses_a_server_that_is_not_a_plain_url(server: str) -> None:
    assert not valid_server(server)
    plan = WORKER.plan(FakeDiagnosis([wk(expected_server=server)]))
    assert plan.actions == ()
    assert any("not a plain" in n for n in plan.notes)


def test_worker_hostile_paths_stay_single_arguments() -> None:
    target = "/root/.kube/my config;$(touch /tmp/pwned)`id`'\""
    source = "/etc/kubernetes/kube let's.conf"
    f = wk(reason="missing", files={}, target=target, source_candidates=[source],
           expected_server="https://[fd00::1]:6443")
    plan = WORKER.plan(FakeDiagnosis([f]))
    write = by_suffix(plan)["2"]
    tokens = argv(write.command)
    assert source in tokens and target + ".cfx-new" in tokens and target in tokens
    assert "CFX_SERVER=https://[fd00::1]:6443" in tokens
    assert tokens[tokens.index("chmod") + 1:tokens.index("chmod") + 3] == ["600", target + ".cfx-new"]
    for a in plan.actions:
        argv(a.command)  # every command parses
        if a.rollback:
            assert target in argv(a.rollback.command)


# ---------------------------------------------------------------------------------------------
# host_network: plans


def test_host_nothing_to_do() -> None:
    assert HOST.plan(FakeDiagnosis([])).nothing_to_do


def test_ip_forward_set_now_and_persisted_with_rollbacks() -> None:
    plan = HOST.plan(FakeDiagnosis([finding("IP_FORWARD_OFF", "node-2", "host_network",
                                            sysctl="net.ipv4.ip_forward", value="0")]))
    acts = by_suffix(plan)
    # the devices' own values saved first (the kernel copies ip_forward to every device), put
    # back by the rollback (tests/test_safety_rollback_sysctl.py runs both in a netns)
    assert argv(acts["1"].command)[-3:] == ["sysctl", "-w", "net.ipv4.ip_forward=1"]
    assert argv(acts["1"].rollback.command)[:3] == ["sysctl", "-w", "net.ipv4.ip_forward=0"]
    persist = acts["2"]
    assert "/etc/sysctl.d/99-clusterfix-kubernetes.conf" in persist.command
    assert "'net.ipv4.ip_forward = 1'" in persist.command
    assert "rm -f -- /etc/sysctl.d/99-clusterfix-kubernetes.conf" in persist.rollback.command
    assert check_rollbacks(plan) == []
    assert {a.target for a in plan.actions} == {"node-2"}


def test_br_netfilter_module_and_sysctl() -> None:
    plan = HOST.plan(FakeDiagnosis([finding("BR_NETFILTER_OFF", "node-1", "host_network",
                                            sysctl="net.bridge.bridge-nf-call-iptables",
                                            value=None, module_loaded=False)]))
    cmds = [a.command for a in plan.actions]
    assert cmds[0] == "modprobe br_netfilter"
    assert plan.actions[0].rollback.command == "modprobe -r br_netfilter"
    assert cmds[1] == "sysctl -w net.bridge.bridge-nf-call-iptables=1"
    assert "printf '%s\\n' br_netfilter" in cmds[3]
    assert "/etc/modules-load.d/clusterfix-kubernetes.conf" in cmds[3]
    assert check_rollbacks(plan) == []
    # loaded module, value 0: no modprobe, the rollback puts 0 back
    plan = HOST.plan(FakeDiagnosis([finding("BR_NETFILTER_OFF", "node-1", "host_network",
                                            value="0", module_loaded=True)]))
    assert not any("modprobe br_netfilter" == a.command for a in plan.actions)
    assert plan.actions[0].rollback.command == "sysctl -w net.bridge.bridge-nf-call-iptables=0"


def test_firewall_reject_narrow_accept_by_default_delete_opt_in() -> None:
    rules = [{"backend": "legacy", "table": "filter", "chain": "INPUT",
              "rule": "-A INPUT -j REJECT --reject-with icmp-host-prohibited"},
             {"backend": "nft", "table": "filter", "chain": "FORWARD",
              "rule": "-A FORWARD -j REJECT --reject-with icmp-host-prohibited"}]
    accepts = [{"backend": "legacy", "table": "filter", "chain": "INPUT", "flow": "kubelet",
                "hook": "input", "spec": ["-p", "tcp", "-m", "tcp", "--dport", "10250", "-m",
                                          "comment", "--comment", "clusterfix: kubelet", "-j",
                                          "ACCEPT"]}]
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-3", "host_network",
                                            rules=rules, accepts=accepts)],
                                   snapshot={"flannel_network": "10.244.0.0/16"}))
    default = [a for a in plan.actions if not is_opt_in(a)]
    assert len(default) == 1  # the narrow accept, nothing else
    assert "-I INPUT 1 -p tcp -m tcp --dport 10250" in default[0].command
    assert " -D " not in default[0].command.split("||")[-1]
    assert default[0].rollback.command == (
        "iptables-legacy -w 5 -t filter -D INPUT -p tcp -m tcp --dport 10250 -m comment "
        "--comment 'clusterfix: kubelet' -j ACCEPT")
    # deleting the REJECT rules is the opt-in alternative (table saved first, restore as rollback)
    opt = [a for a in plan.actions if is_opt_in(a)]
    assert len(opt) == 2 and not {a.id for a in opt} & set(default_approved(plan))
    assert "iptables-legacy-save -t filter >" in opt[0].command and "[ -e " in opt[0].command
    assert opt[0].command.endswith(
        "iptables-legacy -w 5 -t filter -D INPUT -j REJECT --reject-with icmp-host-prohibited")
    assert "iptables-legacy-restore -w 5 -T filter <" in opt[0].rollback.command
    assert "iptables-nft -w 5 -t filter -D FORWARD" in opt[1].command
    assert check_rollbacks(plan) == []


def test_firewall_findings_read_back_with_dict_data_plan_the_same() -> None:
    """FIREWALL_* / VXLAN_UNDERLAY_BLOCKED data is typed; a finding from a journal or bundle
    (its data a plain dict, maybe with keys this version does not know) plans the same."""
    from clusterfix_tui.core.checks.firewall import FirewallDropData
    from clusterfix_tui.core.checks.underlay import UnderlayBlockedData
    from clusterfix_tui.core.model import Finding

    accepts = [{"backend": "legacy", "table": "filter", "chain": "INPUT", "flow": "vxlan-in",
                "hook": "input", "spec": ["-p", "udp", "-m", "udp", "--dport", "8472", "-m",
                                          "comment", "--comment", "clusterfix: vxlan-in", "-j",
                                          "ACCEPT"]}]
    typed = [finding("FIREWALL_REJECT", "node-1", "host_network", accepts=accepts, rules=[{
                 "backend": "legacy", "table": "filter", "chain": "INPUT", "kind": "rule",
                 "rule": "-A INPUT -p udp -m udp --dport 8472 -j REJECT"}],
                 flows=["vxlan-in"], firewalld={}),
             finding("VXLAN_UNDERLAY_BLOCKED", "node-2", "host_network", port=4789,
                     where="outside", accepts=[])]
    assert isinstance(typed[0].data, FirewallDropData)
    assert isinstance(typed[1].data, UnderlayBlockedData)

    def read_back(f: Finding) -> Finding:
        d = f.to_dict()
        return Finding(code=d["code"], severity=d["severity"], node=d["node"], title=d["title"],
                       step=d["step"], data={**d["data"], "a_newer_key": 1})

    plans = [HOST.plan(FakeDiagnosis(fs, snapshot={"flannel_network": "10.244.0.0/16"}))
             for fs in (typed, [read_back(f) for f in typed])]
    assert [a.to_dict() for a in plans[0].actions] == [a.to_dict() for a in plans[1].actions]
    assert any("--dport 8472" in a.command for a in plans[0].actions)
    assert plans[0].notes == plans[1].notes
    assert any("udp/4789" in n and "node-2" in n for n in plans[0].notes), plans[0].notes


def test_firewall_nft_native_rule_by_handle() -> None:
    frag = '"handle": 42, "expr": [{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]'
    rules = [{"backend": "nft-native", "family": "inet", "table": "filter",
              "chain": "input", "handle": 42, "text": "reject with icmpx admin-prohibited",
              "json": frag}]
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-1", "host_network",
                                            rules=rules)]))
    (a,) = plan.actions
    assert is_opt_in(a)  # never a default
    # the handle is re-read at apply time: it must still hold the diagnosed rule
    assert a.command.startswith("nft -j -a list chain inet filter input | grep -q -F -e ")
    assert shlex.quote(frag) in a.command
    assert "nft list table inet filter >" in a.command
    assert a.command.endswith("nft delete rule inet filter input handle 42")
    assert "flush table %s %s" in a.rollback.command and "| nft -f -" in a.rollback.command
    # in firewalld's own table: never deleted (firewalld rebuilds it), said in a note (safety2)
    owned = [dict(rules[0], table="firewalld", chain="filter_INPUT")]
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-1", "host_network",
                                            rules=owned)]))
    assert plan.actions == () and any("firewalld's own nft table" in n for n in plan.notes)


def test_firewall_hostile_rule_specs() -> None:
    hostile = '-A INPUT -m comment --comment "x; rm -rf / $(id) `id`" -j REJECT'
    rules = [{"backend": "legacy", "table": "filter", "chain": "INPUT", "rule": hostile},
             {"backend": "legacy", "table": "filter", "chain": "INPUT",
              "rule": '-A INPUT -j REJECT "unbalanced'},
             {"backend": "legacy", "table": "filter", "chain": "INPUT",
              "rule": "-I INPUT -j REJECT; reboot"},
             {"backend": "legacy", "table": "filter;reboot", "chain": "INPUT",
              "rule": "-A INPUT -j REJECT"},
             {"backend": "nft-native", "family": "inet", "table": "t", "chain": "c",
              "handle": "7; reboot"}]
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-1", "host_network",
                                            rules=rules)]))
    deletes = [a for a in plan.actions if " -D " in a.command]
    assert len(deletes) == 1 and is_opt_in(deletes[0])
    assert argv(deletes[0].command.rsplit(" && ", 1)[-1]) == [
        "iptables-legacy", "-w", "5", "-t", "filter", "-D", "INPUT", "-m", "comment",
        "--comment", "x; rm -rf / $(id) `id`", "-j", "REJECT"]
    assert len(plan.notes) >= 4  # each refused rule is reported, not silently dropped
    assert not any("reboot" in a.command for a in plan.actions)
    assert rule_argv(hostile, "-D")[0] == "-D"


def test_ipvs_modules_modprobe_persist_and_kube_proxy_restart() -> None:
    f = finding("IPVS_MODULES_MISSING", "node-2", "host_network", mode="ipvs",
                missing=["ip_vs", "ip_vs_rr", "ip_vs; reboot"], modules_known=True)
    plan = HOST.plan(FakeDiagnosis([f], snapshot=snapshot()))
    assert argv(plan.actions[0].command) == ["modprobe", "-a", "ip_vs", "ip_vs_rr"]
    assert argv(plan.actions[0].rollback.command) == ["modprobe", "-r", "-a", "ip_vs", "ip_vs_rr"]
    assert "printf '%s\\n' ip_vs ip_vs_rr" in plan.actions[1].command
    assert plan.actions[-1].api == {"verb": "delete_pod", "namespace": "kube-system",
                                    "name": "kube-proxy-node-2"}
    assert any("not plain names" in n for n in plan.notes)
    assert not any("reboot" in a.command for a in plan.actions)
    assert check_rollbacks(plan) == []


# ---------------------------------------------------------------------------------------------
# for real, in network namespaces with private mounts


class MountRunner:
    """Shell actions inside a netns, each in a private mount namespace where the given host
    directories are bind-mounted over their mount points (/var/backups, /etc/sysctl.d, ...)."""

    dry_run = False

    def __init__(self, netns: str, binds: dict[str, str]) -> None:
        self.netns = netns
        self.binds = binds  # mount point -> host dir
        self.ran: list[str] = []

    def run_action(self, action: Any, *, on_line: Any = None) -> CommandResult:
        self.ran.append(action.id)
        if action.kind == "api":
            return CommandResult(exit_code=0, stdout="ok\n")
        return self.sh(action.command)

    def sh(self, command: str) -> CommandResult:
        mounts = " && ".join(f"mount --bind {shlex.quote(src)} {shlex.quote(dst)}"
                             for dst, src in self.binds.items())
        wrapper = f"{mounts} && exec sh -c \"$1\""
        p = subprocess.run(["ip", "netns", "exec", self.netns, "unshare", "--mount",
                            "--propagation", "private", "sh", "-c", wrapper, "x", command],
                           capture_output=True, text=True, timeout=60)
        return CommandResult(p.returncode, p.stdout, p.stderr)


# root and network namespaces: the `lab` marker skips (or fails, in CI) where they are missing
needs_root = pytest.mark.lab


@pytest.fixture
def netns() -> Any:
    name = new_netns()
    ns(name, "ip link set lo up")
    yield name
    del_netns(name)


def _dirs(tmp_path: Path, *names: str) -> dict[str, Path]:
    out = {}
    for n in names:
        p = tmp_path / n
        p.mkdir(parents=True)
        out[n] = p
    return out


@needs_root
def test_host_network_apply_and_rollback_in_a_netns(netns: str, tmp_path: Path) -> None:
    d = _dirs(tmp_path, "backups", "sysctl.d", "modules-load.d")
    (d["sysctl.d"] / "99-clusterfix-kubernetes.conf").write_text("vm.swappiness = 10\n")
    has_bridge = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")
    ns(netns, "sysctl -qw net.ipv4.ip_forward=0")
    if has_bridge:
        ns(netns, "sysctl -qw net.bridge.bridge-nf-call-iptables=0")
    ns(netns, "iptables-legacy -A INPUT -p tcp --dport 22 -j ACCEPT && "
              "iptables-legacy -A INPUT -j REJECT --reject-with icmp-host-prohibited")
    before_rules = ns(netns, "iptables-legacy-save -t filter | grep -v '^#'")
    findings = [
        finding("IP_FORWARD_OFF", "node-1", "host_network", sysctl="net.ipv4.ip_forward",
                value="0"),
        finding("FIREWALL_REJECT", "node-1", "host_network", rules=[{
            "backend": "legacy", "table": "filter", "chain": "INPUT",
            "rule": "-A INPUT -j REJECT --reject-with icmp-host-prohibited"}],
            accepts=[{"backend": "legacy", "table": "filter", "chain": "INPUT", "flow": "kubelet",
                "hook": "input", "spec": ["-p", "tcp", "-m", "tcp", "--dport", "10250", "-m",
                                          "comment", "--comment", "clusterfix: kubelet", "-j",
                                          "ACCEPT"]}]),
    ]
    if has_bridge:
        findings.append(finding("BR_NETFILTER_OFF", "node-1", "host_network", value="0",
                                module_loaded=True))
    plan = HOST.plan(FakeDiagnosis(findings, snapshot={"flannel_network": "10.244.0.0/16"}))
    runner = MountRunner(netns, {"/var/backups": str(d["backups"]),
                                 "/etc/sysctl.d": str(d["sysctl.d"]),
                                 "/etc/modules-load.d": str(d["modules-load.d"])})
    outcome = apply_plan(plan, default_approved(plan), runner)
    assert outcome.status == "changed", [(a.action_id, a.result) for a in outcome.actions]
    assert ns(netns, "cat /proc/sys/net/ipv4/ip_forward").strip() == "1"
    if has_bridge:
        assert ns(netns, "cat /proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "1"
    saved = ns(netns, "iptables-legacy-save -t filter")
    assert "REJECT" in saved and "--dport 10250" in saved  # the reject stays, kubelet accepted
    assert saved.index("--dport 10250") < saved.index("REJECT")
    dropin = (d["sysctl.d"] / "99-clusterfix-kubernetes.conf").read_text()
    assert "vm.swappiness = 10" in dropin and "net.ipv4.ip_forward = 1" in dropin

    # applying the same plan again changes nothing more (the backup keeps the first copy)
    again = apply_plan(plan, default_approved(plan), runner)
    assert again.status == "changed"
    assert (d["sysctl.d"] / "99-clusterfix-kubernetes.conf").read_text() == dropin

    rb = rollback((plan, outcome), runner)
    assert rb.status == "changed", [(a.action_id, a.result) for a in rb.actions]
    assert ns(netns, "cat /proc/sys/net/ipv4/ip_forward").strip() == "0"
    if has_bridge:
        assert ns(netns, "cat /proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "0"
    assert ns(netns, "iptables-legacy-save -t filter | grep -v '^#'") == before_rules
    assert (d["sysctl.d"] / "99-clusterfix-kubernetes.conf").read_text() == "vm.swappiness = 10\n"
    if has_bridge:  # the modules drop-in did not exist before: gone again
        assert not (d["modules-load.d"] / "clusterfix-kubernetes.conf").exists()


@needs_root
def test_firewall_narrow_accepts_apply_and_rollback(netns: str, tmp_path: Path) -> None:
    d = _dirs(tmp_path, "backups")
    ns(netns, "iptables-legacy -A INPUT -j REJECT --reject-with icmp-host-prohibited")
    before = ns(netns, "iptables-legacy-save -t filter | grep -v '^#'")
    vx = {"backend": "legacy", "table": "filter", "chain": "INPUT", "flow": "vxlan-in",
          "hook": "input", "spec": ["-p", "udp", "-m", "udp", "--dport", "8472", "-m", "comment",
                                    "--comment", "clusterfix: vxlan-in", "-j", "ACCEPT"]}
    plan = HOST.plan(FakeDiagnosis(
        [finding("FIREWALL_REJECT", "node-1", "host_network", rules=[{
            "backend": "legacy", "table": "filter", "chain": "INPUT",
            "rule": "-A INPUT -j REJECT --reject-with icmp-host-prohibited"}],
            accepts=[vx, {"backend": "legacy", "table": "filter", "chain": "INPUT", "flow": "kubelet",
                "hook": "input", "spec": ["-p", "tcp", "-m", "tcp", "--dport", "10250", "-m",
                                          "comment", "--comment", "clusterfix: kubelet", "-j",
                                          "ACCEPT"]}])],
        snapshot={"flannel_network": "10.244.0.0/16"}))
    runner = MountRunner(netns, {"/var/backups": str(d["backups"])})
    outcome = apply_plan(plan, default_approved(plan), runner)
    assert outcome.status == "changed"
    rules = ns(netns, "iptables-legacy -S INPUT")
    assert "--dport 8472" in rules and "--dport 10250" in rules and "REJECT" in rules
    assert rules.index("--dport 8472") < rules.index("REJECT")
    assert "30000" not in rules  # only the flows in the finding
    again = apply_plan(plan, default_approved(plan), runner)  # idempotent: no duplicates
    assert again.status == "changed"
    assert ns(netns, "iptables-legacy -S INPUT").count("--dport 8472") == 1
    rollback((plan, outcome), runner)
    assert ns(netns, "iptables-legacy-save -t filter | grep -v '^#'") == before


@needs_root
def test_nft_native_reject_delete_and_restore(netns: str, tmp_path: Path) -> None:
    d = _dirs(tmp_path, "backups")
    ns(netns, "nft add table inet fw && nft add chain inet fw input "
              "'{ type filter hook input priority 0; policy accept; }' && "
              "nft add rule inet fw input tcp dport 22 accept && "
              "nft add rule inet fw input reject with icmpx admin-prohibited")
    listing = ns(netns, "nft -a list table inet fw")
    handle = next(line.rsplit("# handle ", 1)[1].strip() for line in listing.splitlines()
                  if "reject" in line)
    before = ns(netns, "nft list table inet fw")
    plan = HOST.plan(FakeDiagnosis([finding("FIREWALL_REJECT", "node-1", "host_network", rules=[{
        "backend": "nft-native", "family": "inet", "table": "fw", "chain": "input",
        "handle": int(handle), "text": "reject with icmpx admin-prohibited",
        "json": f'"handle": {handle}, "expr": [{{"reject": {{"type": "icmpx", '
                f'"expr": "admin-prohibited"}}}}]'}])]))
    runner = MountRunner(netns, {"/var/backups": str(d["backups"])})
    assert default_approved(plan) == []  # deleting the reject is opt-in only
    outcome = apply_plan(plan, [a.id for a in plan.actions], runner)
    assert outcome.status == "changed", [(a.action_id, a.result) for a in outcome.actions]
    assert "reject" not in ns(netns, "nft list table inet fw")
    rb = rollback((plan, outcome), runner)
    assert rb.status == "changed", [(a.action_id, a.result) for a in rb.actions]
    assert ns(netns, "nft list table inet fw") == before


FAKE_API = r'''
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
R = {
 "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
 "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
 "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
   {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
    "verbs": ["get", "list"]}]},
 "/api/v1/nodes": {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [
   {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "node-1"}}]},
}
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = R.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404); self.end_headers(); return
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

WORKER_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: http://127.0.0.1:1
  name: kubernetes
contexts:
- context: {cluster: kubernetes, user: "system:node:node-2"}
  name: default
current-context: default
users:
- name: "system:node:node-2"
  user: {token: worker-own-token}
"""


@needs_root
def test_worker_kubeconfig_apply_verify_and_rollback(netns: str, tmp_path: Path) -> None:
    require_tool("kubectl")  # the plan's verify action runs the node's kubectl (from PATH)
    d = _dirs(tmp_path, "backups", "mnt/root/.kube")
    cfg = d["mnt/root/.kube"] / "config"
    cfg.write_text(WORKER_KUBECONFIG.replace("certificate-authority-data: Q0EtREFUQQ==\n    ", ""))
    os.chmod(cfg, 0o644)
    original = cfg.read_bytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", FAKE_API,
                            str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60  # a deadline, not a speed check
        while time.monotonic() < deadline:
            if subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c",
                               f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        target = "/mnt/root/.kube/config"
        server = f"http://127.0.0.1:{port}"
        plan = WORKER.plan(FakeDiagnosis([wk(node="node-2", target=target,
                                             files={target: "http://127.0.0.1:1"},
                                             expected_server=server)]))
        runner = MountRunner(netns, {"/var/backups": str(d["backups"]), "/mnt": str(tmp_path / "mnt")})
        outcome = apply_plan(plan, default_approved(plan), runner)
        assert outcome.status == "changed", [(a.action_id, a.result) for a in outcome.actions]
        verify = outcome.actions[-1]
        assert verify.status == "ok" and "node/node-1" in verify.result.stdout
        text = cfg.read_text()
        assert f"server: {server}" in text and "http://127.0.0.1:1\n" not in text
        assert "token: worker-own-token" in text  # the worker's own credentials are kept
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
        rb = rollback((plan, outcome), runner)
        assert rb.status == "changed"
        assert cfg.read_bytes() == original
        assert stat.S_IMODE(cfg.stat().st_mode) == 0o644
    finally:
        srv.terminate()
        srv.wait(timeout=10)


@needs_root
def test_worker_kubeconfig_missing_then_rollback_removes_it(netns: str, tmp_path: Path) -> None:
    d = _dirs(tmp_path, "backups", "mnt/etc/kubernetes")
    (d["mnt/etc/kubernetes"] / "kubelet.conf").write_text(WORKER_KUBECONFIG)
    target = "/mnt/root/.kube/config"
    plan = WORKER.plan(FakeDiagnosis([wk(reason="missing", target=target, files={},
                                         source_candidates=["/mnt/etc/kubernetes/kubelet.conf"],
                                         expected_server=SERVER)]))
    # the plan's source path is the node's own kubeconfig at a non-default place
    plan = Plan(step=plan.step, title=plan.title, findings=plan.findings,
                actions=tuple(a for a in plan.actions if a.mutating), notes=plan.notes)
    runner = MountRunner(netns, {"/var/backups": str(d["backups"]), "/mnt": str(tmp_path / "mnt")})
    outcome = apply_plan(plan, default_approved(plan), runner)
    assert outcome.status == "changed", [(a.action_id, a.result) for a in outcome.actions]
    written = tmp_path / "mnt/root/.kube/config"
    assert f"server: {SERVER}" in written.read_text()
    assert "certificate-authority-data: Q0EtREFUQQ==" in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    rollback((plan, outcome), runner)
    assert not written.exists()


# ---------------------------------------------------------------------------------------------
# on the lab: both steps through the real CLI (SSH to the nodes), then `rollback`

LAB_STATE = {
    "sysctl": "cat /proc/sys/net/ipv4/ip_forward; "
              "cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>&1",
    "filter-legacy": "iptables-legacy-save -t filter 2>&1 | grep -v -e '^#' -e KUBE- "
                     "| sed -E 's/\\[[0-9]+:[0-9]+\\]//'",
    "filter-nft": "iptables-nft-save -t filter 2>&1 | grep -v -e '^#' -e KUBE- "
                  "| sed -E 's/\\[[0-9]+:[0-9]+\\]//'",
    "files": "for f in /etc/sysctl.d/* /etc/modules-load.d/* /root/.kube/config; do "
             "[ -e \"$f\" ] && stat -c '%n %a' \"$f\" && md5sum \"$f\"; done 2>&1",
}


def _lab_state(lab: Any) -> dict[str, dict[str, str]]:
    return {n["name"]: {k: lab.exec(n["name"], cmd, check=False).stdout
                        for k, cmd in LAB_STATE.items()} for n in lab.nodes}


@pytest.mark.lab
def test_lab_fix_and_rollback_worker_kubeconfig_and_host_network(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from lab_helpers import running_lab

    faults = "ip-forward-off,br-netfilter-off,firewall-reject,worker-kubeconfig"
    cli = [sys.executable, "-m", "clusterfix_tui"]
    with running_lab(tmp_path_factory, nodes=3, faults=faults) as lab:
        # the state once two reads a second apart agree (the freshly broken lab settles)
        reads = [_lab_state(lab)]

        def settled() -> bool:
            reads.append(_lab_state(lab))
            return reads[-1] == reads[-2]

        poll_until(settled, 30, "the lab state to settle", every=1)
        before = reads[-1]
        journal = tmp_path / "j.jsonl"
        r = subprocess.run([*cli, "fix", "--yes", "--step", "worker_kubeconfig", "--step",
                            "host_network", "--lab-dir", str(lab.dir), "--journal", str(journal),
                            "--no-validate"], capture_output=True, text=True, timeout=300,
                           check=False)
        ends = {e["step"]: e["outcome"]["status"] for e in Journal.read(journal)
                if e["type"] == "step_end"}
        assert ends == {"worker_kubeconfig": "changed", "host_network": "changed"}, (
            ends, r.stdout[-3000:], r.stderr[-2000:])
        fixed = _lab_state(lab)
        changed = {(n, k) for n in before for k in before[n] if before[n][k] != fixed[n][k]}
        # every fault was repaired on its node: sysctls, firewall, the worker's kubeconfig
        assert any(k == "sysctl" for _, k in changed), r.stdout
        assert any(k.startswith("filter-") for _, k in changed), r.stdout
        assert any(k == "files" for _, k in changed), r.stdout
        for n in lab.nodes:
            assert fixed[n["name"]]["sysctl"].split() == ["1", "1"], (n["name"], r.stdout)
            both = fixed[n["name"]]["filter-legacy"] + fixed[n["name"]]["filter-nft"]
            # the firewall stays: its REJECTs are still there, the cluster flows accepted first
            assert before[n["name"]]["filter-nft"].count("REJECT") == \
                fixed[n["name"]]["filter-nft"].count("REJECT"), n["name"]
            if "REJECT" in both:
                assert "clusterfix: pods-forward" in both and "clusterfix: kubelet" in both
        worker = [n["name"] for n in lab.nodes if n["role"] != "control-plane"]
        ok = [lab.exec(w, "kubectl get nodes -o name --request-timeout=5s", check=False)
              for w in worker]
        assert all(x.returncode == 0 for x in ok), [x.stderr for x in ok]
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        assert {e["step"] for e in events if e["type"] == "command_start"} == {
            "worker_kubeconfig", "host_network"}

        rb = subprocess.run([*cli, "rollback", "--journal", str(journal), "--yes", "--lab-dir",
                             str(lab.dir)], capture_output=True, text=True, timeout=300,
                            check=False)
        assert rb.returncode == 0, rb.stdout + rb.stderr
        after = _lab_state(lab)
        diffs = [f"{n}/{k}:\n{before[n][k]}\n---\n{after[n][k]}"
                 for n in before for k in before[n] if before[n][k] != after[n][k]]
        assert diffs == [], "\n".join(diffs)


def test_commands_survive_journal_redaction_unchanged() -> None:
    """`rollback --journal` rebuilds actions from the (redacted) journal: a command redaction
    would alter must never be planned."""
    from clusterfix_tui.core.redact import redact

    diag = FakeDiagnosis([
        wk(reason="missing", files={}, source_candidates=["/etc/kubernetes/kubelet.conf",
                                                           "/etc/kubernetes/admin.conf"]),
        wk(node="node-3"),
        finding("IP_FORWARD_OFF", "node-1", "host_network", value="0"),
        finding("BR_NETFILTER_OFF", "node-1", "host_network", value=None, module_loaded=False),
        finding("FIREWALL_REJECT", "node-2", "host_network", rules=[
            {"backend": "legacy", "table": "filter", "chain": "INPUT",
             "rule": "-A INPUT -j REJECT --reject-with icmp-host-prohibited"},
            {"backend": "nft-native", "family": "inet", "table": "fw", "chain": "input",
             "handle": 9}]),
        finding("IPVS_MODULES_MISSING", "node-3", "host_network", missing=["ip_vs"]),
    ], snapshot=snapshot() | {"flannel_network": "10.244.0.0/16"})
    for step in (WORKER, HOST):
        plan = step.plan(diag)
        assert plan.actions
        for a in plan.actions:
            assert redact(a.command) == a.command, a.command
            if a.rollback is not None:
                assert redact(a.rollback.command) == a.rollback.command
