"""LocalIdentity reads this machine's addresses (netlink through pyroute2: ~0.15 s of CPU for the
import alone) only when a node's name or machine-id is this machine's: every other answer is
"not this machine" whatever the addresses are. Same answers as reading them up front."""

from __future__ import annotations

import pytest

from clusterfix_tui.transports import local as L


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def fake() -> set[str]:
        calls.append(1)
        return {"10.0.0.11", "127.0.0.1"}

    monkeypatch.setattr(L, "local_addresses", fake)
    return calls


def test_other_nodes_never_read_the_addresses(reads: list[int]) -> None:
    me = L.LocalIdentity(hostname="workstation.example.org", machine_id="aaa")
    for i in range(50):
        assert me.matches(f"node-{i}", "10.0.0.11") is None  # an address alone is not enough
        assert me.matches(f"node-{i}", "10.0.0.11", machine_id="bbb") is None
        assert me.matches(f"node-{i}", None) is None
    assert reads == []


def test_a_node_named_like_this_machine_reads_them_once(reads: list[int]) -> None:
    me = L.LocalIdentity(hostname="node-1.example.org", machine_id="aaa")
    assert me.matches("node-1", "10.0.0.11")
    assert me.matches("node-1", "10.0.0.99") is None  # the name alone, address elsewhere
    assert me.matches("worker-7", "10.0.0.11", machine_id="aaa")  # machine-id and address
    assert reads == [1]


def test_same_answers_as_reading_the_addresses_up_front(reads: list[int]) -> None:
    addresses = {"10.0.0.11", "127.0.0.1"}
    eager = L.LocalIdentity(hostname="node-1.example.org", addresses=addresses, machine_id="aaa")
    lazy = L.LocalIdentity(hostname="node-1.example.org", machine_id="aaa")
    for node in ("node-1", "node-1.example.org", "NODE-1", "worker-7", "node-10"):
        for address in ("10.0.0.11", "10.0.0.99", None):
            for mid in (None, "aaa", "bbb"):
                assert lazy.matches(node, address, mid) == eager.matches(node, address, mid)
    assert lazy.addresses == addresses
