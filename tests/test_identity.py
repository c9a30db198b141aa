"""Identity in the journal (issue #14 item 5), without a lab: what is recorded and compared."""

from __future__ import annotations

from clusterfix_tui.core import identity as ident
from clusterfix_tui.core.ports import CommandResult


class _API:
    def __init__(self, uid: str | None, server: str = "https://10.0.0.1:6443") -> None:
        self.uid, self.server = uid, server

    def describe(self) -> dict:
        return {"server": self.server, "context": "ctx"}

    def get_namespace(self, name: str) -> dict | None:
        assert name == "kube-system"
        return None if self.uid is None else {"metadata": {"name": name, "uid": self.uid}}


class _Shell:
    transport = "ssh"

    def __init__(self, out: str) -> None:
        self.out = out
        self.ran: list[str] = []

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self.ran.append(command)
        return CommandResult(0, self.out)


class _Pool:
    def node_identity(self, node: str) -> dict:
        return {"transport": "ssh", "address": "10.0.0.2", "port": 22, "user": "ops",
                "host_key": "ssh-ed25519 SHA256:abc"}


def test_cluster_identity_reads_server_context_and_kube_system_uid() -> None:
    got = ident.cluster_identity(_API("u-1"))
    assert got == {"server": "https://10.0.0.1:6443", "context": "ctx", "kube_system_uid": "u-1"}


def test_node_identity_reads_boot_id_namespaces_and_connection() -> None:
    sh = _Shell("boot_id=b-1\nnet=net:[4026531840]\nmnt=mnt:[4026531841]\n")
    got = ident.node_identity(_Pool(), sh, "n1", "10.0.0.2")
    assert got["boot_id"] == "b-1" and got["user"] == "ops"
    assert got["boot_scope"] == "net:net:[4026531840] mnt:mnt:[4026531841]"
    assert got["host_key"] == "ssh-ed25519 SHA256:abc"
    assert "/proc/sys/kernel/random/boot_id" in sh.ran[0]


def test_local_node_identity_says_local() -> None:
    sh = _Shell("boot_id=b-1\n")
    sh.transport = "local"
    got = ident.node_identity(_Pool(), sh, "n1", None)
    assert got["transport"] == "local" and got["host_key"] == "local" and got["boot_id"] == "b-1"


def _journal(uid: str, boot: str, key: str) -> list[dict]:
    return [{"type": "cluster_identity", "identity": ident.cluster_identity(_API(uid))},
            {"type": "node_identity", "identity": {"node": "n1", "boot_id": boot,
                                                   "boot_scope": "net:1", "host_key": key}}]


def test_same_identity_has_no_differences() -> None:
    c, n = ident.recorded(_journal("u-1", "b-1", "k1"))
    now_c = ident.cluster_identity(_API("u-1"))
    assert ident.differences(c, now_c, n, {"n1": dict(n["n1"])}) == []


def test_other_cluster_rebooted_node_and_changed_key_are_each_named() -> None:
    c, n = ident.recorded(_journal("u-1", "b-1", "k1"))
    diff = ident.differences(c, ident.cluster_identity(_API("u-2")), n,
                             {"n1": {"boot_id": "b-2", "boot_scope": "net:1", "host_key": "k2"}})
    text = "\n".join(diff)
    assert len(diff) == 3
    assert "kube-system namespace UID" in text and "u-1" in text and "u-2" in text
    assert "boot_id (rebooted)" in text and "host key" in text
    restarted = ident.differences(c, ident.cluster_identity(_API("u-1")), n,
                                  {"n1": {"boot_id": "b-1", "boot_scope": "net:9",
                                          "host_key": "k1"}})
    assert restarted == ["node n1 namespaces (rebooted: the node restarted): journal net:1, now net:9"]


def test_a_journal_without_identity_compares_nothing() -> None:
    assert ident.recorded([{"type": "session_start"}]) == (None, {})
    assert ident.differences(None, None, {}, {}) == []


def _local_token() -> str:
    import os

    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    return f"{boot} net:{os.readlink('/proc/self/ns/net')} mnt:{os.readlink('/proc/self/ns/mnt')}"


def _sh(script: str):
    import subprocess

    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


def test_runtime_changes_do_not_survive_a_reboot_files_do() -> None:
    from clusterfix_tui.core.fixes.step import FixAction

    def fa(what: str | None) -> FixAction:
        return FixAction(id="s:n1:1", target="n1", kind="shell", command="x",
                         change=None if what is None else {"what": what})

    assert ident.survives_reboot(fa("/etc/sysctl.d/99-clusterfix-kubernetes.conf"))
    assert ident.survives_reboot(fa("file /etc/kubernetes/kubelet.conf"))
    for what in ("net.ipv4.ip_forward", "module br_netfilter", "file /run/flannel/subnet.env",
                 "nft inet filter input", "/proc/sys/net/ipv4/ip_forward", None):
        assert not ident.survives_reboot(fa(what)), what


def test_the_rollback_of_a_runtime_change_is_guarded_by_the_boot_it_was_made_in() -> None:
    from clusterfix_tui.core.fixes import engine
    from clusterfix_tui.core.fixes.step import FixAction
    from clusterfix_tui.core.model import Action

    def fwd(n: int, what: str) -> FixAction:
        return FixAction(id=f"s:n1:{n}", target="n1", kind="shell", command=f"do {n}",
                         change={"what": what},
                         rollback=Action(id=f"s:n1:{n}:rollback", target="n1", kind="shell",
                                         command=f"undo {n}"))

    ran = [engine.RanAction("s", fwd(1, "net.ipv4.ip_forward"), True),
           engine.RanAction("s", fwd(2, "/etc/sysctl.d/99-x.conf"), True)]
    plan, mapping = engine.rollback_plan(ran)
    forward = {ra.action.id: ra.action for ra in ran}
    boot, scope = _local_token().split(" ", 1)
    same = {"n1": {"node": "n1", "boot_id": boot, "boot_scope": scope}}
    guarded = ident.guard_boot_bound(plan, {r: forward[f] for r, f in mapping.items()}, same)
    pre = {a.id: a.precondition for a in guarded.actions}
    assert pre["s:n1:2:rollback"] is None  # a file: restored whatever the boot
    check = pre["s:n1:1:rollback"]
    assert check is not None and check.kind == "shell"
    assert _sh(check.command).returncode == 0  # the same boot: it holds
    other = {"n1": {"node": "n1", "boot_id": "0000", "boot_scope": scope}}
    check = ident.guard_boot_bound(plan, {r: forward[f] for r, f in mapping.items()},
                                   other).actions[-1].precondition
    r = _sh(check.command)
    assert r.returncode == 4 and "n1 rebooted since this change was made" in r.stdout
    assert f"now {boot} net:" in r.stdout
    # no boot identity recorded: nothing to compare, the plan is unchanged
    assert ident.guard_boot_bound(plan, {}, {"n1": {"node": "n1"}}) is plan
