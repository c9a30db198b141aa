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
    assert restarted == ["node n1 namespaces (node restarted): journal net:1, now net:9"]


def test_a_journal_without_identity_compares_nothing() -> None:
    assert ident.recorded([{"type": "session_start"}]) == (None, {})
    assert ident.differences(None, None, {}, {}) == []
