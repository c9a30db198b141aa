"""A real `conntrack -S` (tests/data/realworld/aks-5.15-conntrack-S.txt: an AKS node, kernel 5.15,
without /proc/net/stat/nf_conntrack, early_drop in the millions since boot) through the facts
parse and the check: the counters are summed from it, and with room in the table now the finding
is the since-boot warning, never the error and never a plan."""

from __future__ import annotations

from typing import Any

from conntrack_samples import framed, grep_output

from clusterfix_tui.core import facts as F
from clusterfix_tui.core.checks import conntrack as C
from tests.test_realworld import BY_FILE, text

N = "rw0conntrack"


def check_conntrack_s(s: dict[str, Any]) -> None:
    exp = s["expect"]
    out, err = grep_output(3000, 262144, 65536, None, cpus="0-1")  # SYNTHESISED: the sysctls around it
    output = (framed(N, "conntrack", out, err, 2) + framed(N, "conntrack_stats", text(s["file"]))
              + f"@@CFX {N} DONE\n")
    f = F.parse_facts("aks-node", output, N)
    ct = f.conntrack
    assert ct is not None and ct.state == "read" and ct.counters_source == exp["source"]
    assert (ct.counters["drop"], ct.counters["early_drop"], ct.counters["insert_failed"]) == \
        (exp["drop"], exp["early_drop"], exp["insert_failed"])
    (finding,) = C.check(None, {"aks-node": f})  # type: ignore[arg-type]
    assert (finding.severity, finding.step) == (exp["severity"], exp["step"])
    assert not finding.data_as(C.ConntrackData).full


def test_the_aks_sample() -> None:
    check_conntrack_s(BY_FILE["aks-5.15-conntrack-S.txt"])
