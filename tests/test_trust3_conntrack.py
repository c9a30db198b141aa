"""trust3: the conntrack values a node prints (since 7eddf53 also journaled in NodeFacts.summary()
and shown in the report's conntrack line) taken hostile: thousands of digits. Python 3.11 refuses
int() of more than 4,300 decimal digits (and str()/json.dumps() of such an int): parse_conntrack
"never raises", and the summary stays JSON. A value over 64 bits is no kernel value: not read."""

from __future__ import annotations

import json

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import _conntrack_summary

BIG = "9" * 5000


def grep_out(count: str = "1200", most: str = "262144", cpus: str = "0-3") -> str:
    return "\n".join([f"{P.CONNTRACK_COUNT}:{count}", f"{P.CONNTRACK_MAX}:{most}",
                      f"{P.CPU_ONLINE}:{cpus}"])


@pytest.mark.parametrize("kw", [{"count": BIG}, {"most": BIG}, {"count": "9" * 21}])
def test_a_count_or_max_of_thousands_of_digits_is_not_read(kw):
    ct = P.parse_conntrack(grep_out(**kw))
    assert ct.state == "not-read"
    json.dumps(_conntrack_summary(ct))


def test_a_cpu_list_of_thousands_of_digits_is_not_read():
    assert P.parse_cpu_list(f"0-{BIG}") is None
    ct = P.parse_conntrack(grep_out(cpus=f"0-{BIG}"))
    assert ct.state == "read" and ct.cpus is None


def test_conntrack_s_of_thousands_of_digits_is_not_read():
    assert P.parse_conntrack_s(f"cpu=0 found={BIG} invalid=0\n") is None
    assert P.parse_conntrack_s("cpu=0 found=3 invalid=0\n") == {"found": 3, "invalid": 0}


def test_a_stat_row_of_thousands_of_hex_digits_is_not_read():
    """int(x, 16) takes any length, but the sum is journaled: json.dumps() of an int of over
    4,300 decimal digits raises (old code: the summary could not be journaled)."""
    stat = "entries  searched drop\n" + f"{'f' * 5000} 00000000 00000001\n"
    assert P.parse_conntrack_stat(stat) is None
    ct = P.parse_conntrack(grep_out() + "\n" + "\n".join(
        f"{P.CONNTRACK_STAT}:{ln}" for ln in stat.splitlines()))
    assert ct.state == "read" and ct.counters == {}
    json.dumps(_conntrack_summary(ct))
    real = "entries  searched drop\n0000004a  00000000 00000002\n0000004a  00000000 00000001\n"
    assert P.parse_conntrack_stat(real) == {"entries": 0x4a, "searched": 0, "drop": 3}
