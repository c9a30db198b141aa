"""diagnose(): the API snapshot, then the facts script on every node in parallel (one round trip
each), then the checks. A node that cannot be read is a finding, never an abort."""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from clusterfix_tui.core.checks import run_checks, sort_findings
from clusterfix_tui.core.checks.connectivity import (
    facts_timeout_finding,
    transport_finding,
    unreadable_finding,
)
from clusterfix_tui.core.checks.underlay import probe_ring, probe_targets
from clusterfix_tui.core.facts import (
    SECTION_TIMEOUT,
    NodeFacts,
    build_facts_script,
    loader_command,
    new_nonce,
    parse_facts,
    section_command,
)
from clusterfix_tui.core.model import SEVERITY_ORDER, Finding
from clusterfix_tui.core.ports import (
    ClusterAPI,
    NetlinkShell,
    NodeUnreachable,
    ShellFactory,
    SudoPasswordRequired,
)
from clusterfix_tui.core.shape import detect_shape, not_checked, note_lines
from clusterfix_tui.core.snapshot import ClusterSnapshot, build_snapshot

FACTS_TIMEOUT = 60.0
# on_progress(event, node, detail): event in "snapshot", "node-start", "node-done",
# "node-error", "checks"
ProgressCallback = Callable[[str, str, str], None]


@dataclass
class Diagnosis:
    snapshot: ClusterSnapshot
    facts: dict[str, NodeFacts] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    node_errors: dict[str, str] = field(default_factory=dict)  # node -> why it was not read
    duration: float = 0.0
    node_durations: dict[str, float] = field(default_factory=dict)
    snapshot_duration: float = 0.0
    check_errors: list[str] = field(default_factory=list)
    skipped_nodes: list[str] = field(default_factory=list)
    error: str | None = None  # set when the cluster could not be diagnosed at all
    shape: Any = None  # core.shape.ClusterShape (also on snapshot.shape)
    not_checked: list[dict[str, Any]] = field(default_factory=list)  # core.shape.not_checked()
    # facts sections this diagnosis did not read on any node, and why (a re-diagnosis made to
    # plan a step that does not read them, core/flow.py): the codes that read them are not
    # checked here (in not_checked), never "healthy"
    sections_left_out: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        # a check that raised found nothing, and that is not "healthy" either
        return (not self.findings and self.error is None and not self.sections_left_out
                and not self.check_errors)

    def findings_for(self, node: str) -> list[Finding]:
        return [f for f in self.findings if f.node == node]

    def to_dict(self) -> dict[str, Any]:
        from clusterfix_tui.core.group import group_findings

        snap = self.snapshot
        per_node = _counts_by_node(self.findings)  # one pass, not one per node (5,000 nodes)
        nodes: dict[str, Any] = {}
        for name in snap.nodes:
            f = self.facts.get(name)
            nodes[name] = {
                "read": f is not None,
                "error": self.node_errors.get(name),
                "duration": round(self.node_durations.get(name, 0.0), 3),
                "findings": per_node.get(name, 0),
                "facts": f.summary() if f is not None else None,
            }
        worst = min((SEVERITY_ORDER.get(f.severity, 9) for f in self.findings), default=None)
        return {
            "healthy": self.healthy,
            "error": self.error,
            "duration": round(self.duration, 3),
            "snapshot_duration": round(self.snapshot_duration, 3),
            "cluster": snap.summary(),
            "nodes": nodes,
            "skipped_nodes": list(self.skipped_nodes),
            "findings": [f.to_dict() for f in self.findings],
            # one cause, one line: findings sharing a cause across nodes, each node's finding
            # kept inside its group (core/group.py); a group of one is the finding alone
            "groups": [g.to_dict() for g in group_findings(self.findings)],
            "finding_counts": _counts(self.findings),
            "worst_severity": next((k for k, v in SEVERITY_ORDER.items() if v == worst), None),
            "check_errors": list(self.check_errors),
            "api_errors": list(snap.errors),
            "shape": self.shape.summary() if self.shape is not None else None,
            "not_checked": [dict(x) for x in self.not_checked],
            "notes": note_lines(self.shape),
            "sections_left_out": dict(self.sections_left_out),
        }


_FREEZE_LOCK = threading.Lock()
_freeze_depth = 0
_saved_threshold: tuple[int, int, int] | None = None
_NO_FULL = 1 << 30  # gc threshold2 while a diagnosis runs: no automatic full collection
# gc.get_freeze_count() right after freeze_startup_heap(); None: no start-up freeze is in place
# (never made, or undone because someone froze more on top of it: the wizard, see below)
_startup_frozen: int | None = None
_startup_done = False  # freeze_startup_heap() ran (it freezes once per process, never again)
_freeze_pending = False  # freeze_late_imports() asked while a diagnosis ran: done at its end


def freeze_startup_heap() -> bool:
    """Move the objects alive now (the imported modules: paramiko, kubernetes, the core) into
    the collector's permanent generation, once per process; True if it froze.

    Called by runtime.build_runtime() after its imports, before anything is contacted. Those
    objects (~60k-140k) live as long as the process; without this every full collection (the
    one at the end of each diagnosis included) walks all of them again. young generations are
    collected first (recent garbage, e.g. the command line's parser, is freed, not frozen). Not
    done with the collector disabled or while a diagnosis runs."""
    global _startup_frozen, _startup_done
    with _FREEZE_LOCK:
        if _startup_done or _freeze_depth or not gc.isenabled():
            return False
        _startup_done = True
        gc.collect(1)
        gc.freeze()
        _startup_frozen = gc.get_freeze_count()
        return True


def freeze_late_imports() -> bool:
    """Add what a late import made (headless `fix` imports the client's generated API classes,
    ~80k objects, in a thread while its first diagnosis waits on the nodes) to the start-up
    freeze, so that the full collection ending each later diagnosis does not walk them again
    (~70 ms each). True if it froze now.

    Only while the start-up freeze is in effect (freeze_startup_heap made it and nobody froze
    on top of it since; else whoever froze more manages it, as before) and the collector is
    enabled. With no diagnosis running: one full collection (nothing dead gets frozen), then
    everything alive is frozen. While a diagnosis runs nothing is frozen: it is done when the
    outermost one ends, right after its own full collection. What the caller holds then (the
    diagnosis just made) is frozen with the modules; a diagnosis is acyclic data, freed by
    reference counting when dropped, frozen or not."""
    global _freeze_pending
    with _FREEZE_LOCK:
        if _startup_frozen is None or not gc.isenabled():
            return False
        if _freeze_depth:
            _freeze_pending = True
            return False
        gc.collect()
        _extend_startup_freeze()
        return True


def _extend_startup_freeze() -> None:
    """With _FREEZE_LOCK held, no diagnosis running, right after a full collection."""
    global _startup_frozen, _freeze_pending
    _freeze_pending = False
    gc.freeze()
    _startup_frozen = gc.get_freeze_count()


def _young_only() -> None:
    """keep(): nothing to do; what a node's facts made ages into the old generation, which no
    automatic collection walks while the diagnosis runs (facts_kept_frozen)."""


@contextlib.contextmanager
def facts_kept_frozen() -> Iterator[Callable[[], None]]:
    """The cyclic garbage collector during a diagnosis's bulk phase: every node's facts parsed and
    kept, then the checks. Yields `keep()`, to call once a node's parsed facts are stored (kept
    for the core's callers; it does nothing now).

    The parsed facts are acyclic data that only grows while a diagnosis runs and lives as long as
    the Diagnosis; each automatic full collection walks all of it (and the whole heap), and at
    5,000 nodes those walks were a third to a half of the parse. So while the phase runs no
    automatic full collection is started (gc threshold2 raised; the young generations are
    collected as usual, so short-lived garbage cycles that transports and other threads make
    are freed as they go), and nothing is frozen. On leaving (finally, errors included) the
    thresholds are restored and one full collection runs, here in the diagnosing thread (not in
    the wizard's UI thread, where the next allocation would otherwise run it): every garbage
    cycle made meanwhile (a closed connection's) is freed, nothing the diagnosis made is left
    frozen.

    That collection walks what is not frozen: with the start-up heap frozen
    (freeze_startup_heap, in build_runtime) that is what the process made since start-up, not
    the ~60k-140k objects of its imported modules. If the permanent generation holds more than
    that start-up freeze (someone froze on top of it: the wizard freezes the heap after each
    diagnosis, ui.app.freeze_heap), everything is unfrozen first, as before, so a cycle that
    died inside what was frozen is freed too; the start-up freeze is then given up for the
    process. Nested or concurrent uses share one depth counter; the outermost exit does this.
    A collector the caller disabled stays disabled and untouched."""
    global _freeze_depth, _saved_threshold, _startup_frozen
    with _FREEZE_LOCK:
        _freeze_depth += 1
        if _freeze_depth == 1:
            _saved_threshold = None
            if gc.isenabled():
                t0, t1, t2 = gc.get_threshold()
                _saved_threshold = (t0, t1, t2)
                gc.set_threshold(t0, t1, _NO_FULL)
    try:
        yield _young_only
    finally:
        with _FREEZE_LOCK:
            _freeze_depth -= 1
            last = _freeze_depth == 0
            collect = False
            if last and _saved_threshold is not None:
                t0, t1, t2 = _saved_threshold
                now = gc.get_threshold()
                if now == (t0, t1, _NO_FULL):  # unless someone set other thresholds meanwhile
                    gc.set_threshold(t0, t1, t2)
                _saved_threshold = None
                collect = gc.isenabled()
                frozen = gc.get_freeze_count()
                if frozen and (_startup_frozen is None or frozen > _startup_frozen):
                    gc.unfreeze()
                    _startup_frozen = None
                elif _startup_frozen is not None:
                    # frozen objects that died left the count: a freeze made later shows as growth
                    _startup_frozen = frozen
        if collect:
            gc.collect()
            with _FREEZE_LOCK:
                if (_freeze_pending and not _freeze_depth and _startup_frozen is not None
                        and gc.isenabled()):
                    _extend_startup_freeze()


def _counts_by_node(findings: list[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f.node] = out.get(f.node, 0) + 1
    return out


def _counts(findings: list[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f.code] = out.get(f.code, 0) + 1
    return out


def _notify(cb: ProgressCallback | None, lock: threading.Lock, *args: str) -> None:
    if cb is None:
        return
    with lock:
        try:
            cb(*args)
        except Exception:
            pass  # a broken progress display must not break the diagnosis


def read_node(shells: ShellFactory, node: str, address: str | None, peer_ips: list[str],
              timeout: float = FACTS_TIMEOUT, vxlan_probes: list[str] | None = None,
              leave_out: Iterable[str] = (),
              ) -> tuple[NodeFacts | None, Finding | None, float]:
    """Run the facts script on one node: (facts, finding-if-unreadable, seconds)."""
    t0 = time.monotonic()
    nonce = new_nonce()
    extra: dict[str, str] | None = None
    try:
        shell = shells(node, address)
        if isinstance(shell, NetlinkShell):  # the local node: links, addresses, routes
            try:
                extra = shell.netlink_sections()
            except Exception:  # noqa: BLE001 - fall back to the script's `ip -j`
                extra = None
        script = build_facts_script(peer_ips, nonce=nonce,
                                    skip=frozenset(extra or ()) | frozenset(leave_out),
                                    vxlan_probes=vxlan_probes or (), node_name=node)
        # the script on stdin: its size (it grows with the peers) never meets ARG_MAX
        res = shell.run(loader_command(nonce), timeout=timeout, stdin=script.encode())
    except Exception as exc:  # TransportError subclasses, or anything the transport raised
        return None, transport_finding(node, address, exc), time.monotonic() - t0
    dt = time.monotonic() - t0
    facts = parse_facts(node, res.stdout or "", nonce, extra_sections=extra)
    if res.error and not facts.sections:
        # the transport lost the node mid-way with nothing read: say it as such
        return None, transport_finding(node, address, NodeUnreachable(res.error)), dt
    if not facts.complete or not facts.sections:
        stderr = res.stderr or ""
        if "password is required" in stderr or "a terminal is required" in stderr:
            return None, transport_finding(
                node, address, SudoPasswordRequired(stderr.strip()[:300])), dt
        return facts, unreadable_finding(
            node, exit_code=res.exit_code, errors=list(facts.parse_errors), raw=res.stdout or "",
            stderr=stderr, error=res.error or ("timed out" if res.timed_out else None)), dt
    return facts, None, dt


OTHER_OS_WHY = "node-side facts not read on nodes labelled another OS than linux (kubernetes.io/os: "


def diagnose(
    api: ClusterAPI,
    shells: ShellFactory,
    *,
    nodes: Iterable[str] | None = None,
    max_workers: int = 32,
    on_progress: ProgressCallback | None = None,
    skip_nodes: Iterable[str] = (),
    facts_timeout: float = FACTS_TIMEOUT,
    leave_out_sections: dict[str, str] | None = None,
) -> Diagnosis:
    """`leave_out_sections`: {facts section: why} not to read on any node this time (only
    sections build_facts_script can skip); the codes that read them are not checked (their
    findings dropped, said in not_checked), and the diagnosis is never `healthy`."""
    t0 = time.monotonic()
    left_out = dict(leave_out_sections or {})
    lock = threading.Lock()
    snapshot = build_snapshot(api)
    snapshot_duration = time.monotonic() - t0
    _notify(on_progress, lock, "snapshot", "", f"{len(snapshot.nodes)} nodes, "
            f"{len(snapshot.errors)} API errors")
    api_err = next((e for e in snapshot.errors if e.get("what") == "list_nodes"), None)
    skip = set(skip_nodes or ())
    wanted = list(nodes) if nodes is not None else list(snapshot.nodes)
    targets = [n for n in wanted if n not in skip]
    diag = Diagnosis(snapshot=snapshot, skipped_nodes=sorted(skip & set(wanted)),
                     snapshot_duration=snapshot_duration, sections_left_out=left_out)
    if api_err is not None:
        diag.error = f"the Kubernetes API did not list nodes: {api_err['error']}"
    elif not snapshot.nodes:
        diag.error = "the cluster has no nodes"
    unknown = [n for n in targets if n not in snapshot.nodes]
    if unknown and api_err is None:
        diag.node_errors.update({n: "not a node of this cluster" for n in unknown})
        targets = [n for n in targets if n in snapshot.nodes]
    # a node labelled another OS (Windows): the facts script is a Linux shell script, not run there
    other_os = [n for n in targets if n in snapshot.nodes and snapshot.nodes[n].other_os]
    if other_os:
        targets = [n for n in targets if n not in other_os]
        diag.not_checked.append({"codes": [], "nodes": other_os, "why": OTHER_OS_WHY + ", ".join(
            f"{n}={snapshot.nodes[n].os}" for n in other_os) + ")"})
    unreadable: list[Finding] = []
    # snapshot.peer_pod_ips(node), with the pods scanned once for all nodes (not once per node)
    first_ip = {n: sorted(ips)[:1] for n, ips in snapshot.pod_ips_by_node().items()}

    ring = probe_ring(snapshot)  # sorted once, not once per node

    def peer_ips(node: str) -> list[str]:
        return [ip for other, ips in first_ip.items() if other != node for ip in ips]

    def one(node: str) -> tuple[str, NodeFacts | None, Finding | None, float]:
        info = snapshot.nodes.get(node)
        _notify(on_progress, lock, "node-start", node, "")
        facts, finding, dt = read_node(shells, node, info.internal_ip if info else None,
                                       peer_ips(node), facts_timeout,
                                       vxlan_probes=[] if "vxlan_probe" in left_out
                                       else probe_targets(snapshot, node, ring),
                                       leave_out=left_out)
        return node, facts, finding, dt

    with facts_kept_frozen() as keep:
        _read_and_check(diag, snapshot, targets, one, keep, unreadable, lock, on_progress,
                        max_workers)
    if left_out:
        _not_checked_left_out(diag, left_out)
    diag.duration = time.monotonic() - t0
    _notify(on_progress, lock, "checks", "", f"{len(diag.findings)} findings")
    return diag


def _not_checked_left_out(diag: Diagnosis, left_out: dict[str, str]) -> None:
    """The codes reading a section this diagnosis left out are not checked: a finding of theirs
    (decided without it) is dropped, and not_checked says which, and why."""
    from clusterfix_tui.core.checks import sections_read

    for sec, why in sorted(left_out.items()):
        codes = sorted(c for c, secs in sections_read().items() if sec in secs)
        diag.findings = [f for f in diag.findings if f.code not in codes]
        diag.not_checked.append({"codes": codes, "nodes": [],
                                 "why": f"facts section {sec} not read in this diagnosis: {why}"})


def _read_and_check(diag: Diagnosis, snapshot: ClusterSnapshot, targets: list[str],
                    one: Callable[[str], tuple[str, NodeFacts | None, Finding | None, float]],
                    keep: Callable[[], None], unreadable: list[Finding], lock: threading.Lock,
                    on_progress: ProgressCallback | None, max_workers: int) -> None:
    """diagnose()'s bulk phase: every node read and parsed (no automatic full collection
    meanwhile: facts_kept_frozen), then the cluster's shape and the checks."""
    if targets:
        workers = max(1, min(max_workers, len(targets)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix="cfx-facts") as ex:
            futs = {ex.submit(one, n): n for n in targets}
            for fut in concurrent.futures.as_completed(futs):
                node = futs[fut]
                try:
                    node, facts, finding, dt = fut.result()
                except Exception as exc:  # a bug in parsing: still a finding, not an abort
                    facts, finding, dt = None, unreadable_finding(
                        node, exit_code=None, errors=[f"{type(exc).__name__}: {exc}"], raw=""), 0.0
                diag.node_durations[node] = dt
                if facts is not None and finding is None:
                    diag.facts[node] = facts
                    hung = facts.timed_out_sections()
                    if hung:  # read, but some facts were cut off at their deadline: say so
                        unreadable.append(facts_timeout_finding(
                            node, hung, [section_command(h.split(" ", 1)[0]) or "" for h in hung],
                            SECTION_TIMEOUT))
                    _notify(on_progress, lock, "node-done", node,
                            f"{dt:.2f}s" + (f", timed out: {', '.join(hung)}" if hung else ""))
                else:
                    if facts is not None:
                        diag.facts[node] = facts  # raw text kept, checks skip it
                    assert finding is not None
                    unreadable.append(finding)
                    diag.node_errors[node] = f"{finding.code}: {finding.evidence[0] if finding.evidence else ''}"
                    _notify(on_progress, lock, "node-error", node, finding.code)
                keep()
    readable = {n: f for n, f in diag.facts.items() if n not in diag.node_errors}
    try:
        shape = detect_shape(snapshot, readable)
    except Exception as exc:  # a bug in shape reading: diagnose as before, say it
        shape = None
        diag.check_errors.append(f"core.shape.detect_shape: {type(exc).__name__}: {exc}")
    if shape is not None:
        snapshot = replace(snapshot, shape=shape)
        diag.snapshot = snapshot
        diag.shape = shape
        diag.not_checked = not_checked(shape) + [x for x in diag.not_checked
                                                 if str(x.get("why")).startswith(OTHER_OS_WHY)]
    findings, errors = run_checks(snapshot, readable)
    # API-side findings about nodes we could not read stay (they come from the API, not the node)
    diag.findings = sort_findings(unreadable + findings)
    diag.check_errors = diag.check_errors + errors
