"""build_facts_script names every other node's pod IP in each node's script; the IP texts are
parsed once per process (core/facts.py _ip_text, cached) and the fixed sections' lines made
once (_section_call): the scripts are what they were, each node's with its own peers, and
anything that is not an IP is refused every time."""

from __future__ import annotations

import ipaddress

import pytest

from clusterfix_tui.core import facts as F


def _routes(script: str) -> str:
    return next(line for line in script.splitlines() if line.startswith("printf 'route get"))


def test_each_node_gets_its_own_peers_in_canonical_form() -> None:
    a = F.build_facts_script(["10.244.1.5", " 10.244.2.5 "], nonce="n1", node_name="node-1")
    b = F.build_facts_script(["10.244.0.5", "2001:DB8:0:0::0001"], nonce="n1", node_name="node-2")
    again = F.build_facts_script(["10.244.1.5", " 10.244.2.5 "], nonce="n1", node_name="node-1")
    assert _routes(a) == "printf 'route get %s\\n' 10.244.1.5 10.244.2.5 >>\"$T/rq\""
    assert _routes(b) == "printf 'route get %s\\n' 10.244.0.5 2001:db8::1 >>\"$T/rq\""
    assert again == a


@pytest.mark.parametrize("bad", ["10.244.1.300", "node-2", "10.244.1.5; rm -rf /", ""])
def test_not_an_ip_is_refused_every_time(bad: str) -> None:
    for _ in range(3):
        with pytest.raises(ValueError):
            F.build_facts_script(["10.244.1.5", bad], nonce="n1")
        with pytest.raises(ValueError):
            F.build_facts_script([], nonce="n1", vxlan_probes=[bad])


def test_the_same_text_as_parsing_each_address() -> None:
    peers = [f"10.{i >> 8}.{i & 255}.7" for i in range(300)] + ["fd00::a", "FD00:0::B"]
    for ip in peers:
        assert F._ip_text(ip) == str(ipaddress.ip_address(ip))
    script = F.build_facts_script(peers, nonce="n2", vxlan_probes=peers[:2])
    assert " ".join(str(ipaddress.ip_address(p)) for p in peers) in script
