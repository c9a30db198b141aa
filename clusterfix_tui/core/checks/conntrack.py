"""The conntrack table: full now (error), or packets dropped for want of room since boot (warning).

A full table is the classic "random" cluster networking failure: the kernel logs
`nf_conntrack: table full, dropping packet` and drops the FIRST packet of every new connection
it cannot track (new connections to Services, NodePorts, DNS fail or retry; established ones keep
working). The kernel compares the count of its network namespace with nf_conntrack_max when a
connection is created: over it, it evicts one not-yet-assured entry (early_drop) or, when none
can go, drops the packet (drop). Facts: core/facts.py's `conntrack` section (parsers.Conntrack).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.model import Finding, FindingData
from clusterfix_tui.core.snapshot import ClusterSnapshot

CODE = "CONNTRACK_TABLE_FULL"
REF = "https://docs.kernel.org/networking/nf_conntrack-sysctl.html"
READS: dict[str, tuple[str, ...]] = {CODE: ("conntrack", "conntrack_stats")}
# The count is read once, at one instant; short connections (a TCP one stays 120 s in TIME_WAIT)
# move it by thousands a second on a busy node. At 95% of the limit the next burst reaches it:
# the table counts as full there (at 100% every new connection is already being refused).
FULL_PERCENT = 95
# kube-proxy's conntrack defaults (KubeProxyConntrackConfiguration): nf_conntrack_max =
# max(maxPerCore x CPUs, min), written at its start (even when lower than the current value)
KUBE_PROXY_MAX_PER_CORE = 32768
KUBE_PROXY_MIN = 131072


def kube_proxy_default_max(cpus: int | None) -> int:
    """What kube-proxy's defaults set nf_conntrack_max to on a node with `cpus` CPUs (its
    minimum when the CPU count is not known)."""
    return max(KUBE_PROXY_MAX_PER_CORE * cpus, KUBE_PROXY_MIN) if cpus else KUBE_PROXY_MIN


@dataclass(frozen=True, kw_only=True)
class ConntrackData(FindingData, codes=(CODE,)):
    full: bool = False  # count within FULL_PERCENT of max now (error); False: counters only
    count: int = 0
    max: int = 0
    buckets: int | None = None
    cpus: int | None = None  # online CPUs (kube-proxy sizes the table by them)
    percent: int = 0  # count / max, rounded down
    threshold_percent: int = FULL_PERCENT
    # since boot (or since nf_conntrack was loaded), summed over CPUs: drop, early_drop, insert_failed
    counters: dict[str, int] = field(default_factory=dict)
    counters_source: str | None = None


def _evidence(ct: P.Conntrack, percent: int, counters: dict[str, int]) -> tuple[str, ...]:
    ev = [f"{P.CONNTRACK_COUNT}: {ct.count}",
          f"{P.CONNTRACK_MAX}: {ct.max} ({percent}% used)"]
    if ct.buckets is not None:
        ev.append(f"{P.CONNTRACK_BUCKETS}: {ct.buckets}")
    if counters:
        ev.append(f"since boot, summed over CPUs ({ct.counters_source}): "
                  + " ".join(f"{k}={v}" for k, v in counters.items()))
    else:
        ev.append("drop/early_drop/insert_failed counters: not read "
                  f"(no {P.CONNTRACK_STAT}, no `conntrack -S`)")
    return tuple(ev)


def check(snapshot: ClusterSnapshot, facts_by_node: dict[str, NodeFacts]) -> list[Finding]:
    out: list[Finding] = []
    for node, f in sorted(facts_by_node.items()):
        ct = f.conntrack
        # not loaded (nothing tracked), not read, or no limit (max 0: the kernel never refuses)
        if ct is None or ct.state != "read" or ct.count is None or not ct.max:
            continue
        percent = ct.count * 100 // ct.max
        full = ct.count * 100 >= FULL_PERCENT * ct.max
        counters = {k: ct.counters[k] for k in P.CONNTRACK_COUNTERS if k in ct.counters}
        dropped = counters.get("drop", 0) + counters.get("early_drop", 0)
        if not full and not dropped:
            continue
        data = ConntrackData(full=full, count=ct.count, max=ct.max, buckets=ct.buckets, cpus=ct.cpus,
                             percent=percent, counters=counters, counters_source=ct.counters_source)
        if full:
            out.append(Finding(
                code=CODE, severity="error", node=node,
                title=f"conntrack table is full ({ct.count} of {ct.max} entries): new connections "
                      "are dropped",
                evidence=_evidence(ct, percent, counters),
                explanation=(
                    f"The node tracks {ct.count} connections and nf_conntrack_max is {ct.max} "
                    f"(at or above {FULL_PERCENT}%: the count is read once and moves by thousands "
                    "a second, so the next burst reaches the limit). At the limit the kernel drops "
                    "the first packet of every new connection it cannot track (kernel log "
                    "\"nf_conntrack: table full, dropping packet\"): new connections to Services, "
                    "NodePorts and DNS fail at random while established ones keep working. "
                    "Raising nf_conntrack_max makes room now; what fills the table (a connection "
                    "flood, a client opening connections without reuse, long timeouts) is for you "
                    "to look at."),
                reference=REF, step="host_network", data=data,
            ))
        else:
            out.append(Finding(
                code=CODE, severity="warning", node=node,
                title=f"conntrack dropped packets or evicted entries since boot "
                      f"(drop={counters.get('drop', 0)}, early_drop={counters.get('early_drop', 0)}); "
                      f"the table is at {percent}% now",
                evidence=_evidence(ct, percent, counters),
                explanation=(
                    "These counters count since boot (or since nf_conntrack was loaded), not "
                    f"now: the table is at {percent}% of its limit at this moment. early_drop "
                    "counts entries evicted because the table was full; drop counts packets "
                    "dropped because no entry could be made (table full, or, kernel 5.6+, a "
                    "conntrack insert race that could not be resolved: insert_failed then rises "
                    "too). The table was full at some time, which may explain failures seen "
                    "then; on its own this is not the cause of a failure now. Nothing is changed "
                    "for it: watch the counters (a rising drop means it fills again)."),
                reference=REF, step=None, data=data,
            ))
    return out
