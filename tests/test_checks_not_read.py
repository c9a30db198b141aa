"""A facts section that was not read on a node (timed out, killed, cut off) never becomes a
finding there: the checks that read it say "not checked" instead (issue #14, safety gap).

Each case takes a recorded lab output and rewrites ONE section of one node two ways: as the
script prints it when that section ran and answered (rc 0, or the tool's own failure), and as it
prints it when the section's deadline killed it (same stdout, the script's mark, rc 137). The
answer gives the finding; the kill gives no finding, no planned action on that node, and a
not-checked note naming the section."""

from __future__ import annotations

import re

import pytest
from diag_fakes import ReplayAPI, ReplayShells, load

from clusterfix_tui.core.checks import sections_read
from clusterfix_tui.core.diagnose import Diagnosis, diagnose
from clusterfix_tui.core.facts import _SECTIONS, SECTION_TIMEOUT, SHAPE_SECTIONS, Section
from clusterfix_tui.core.fixes import get_step
from clusterfix_tui.core.model import STEP_ORDER

KILLED = f"cfx: timed out after {SECTION_TIMEOUT}s (killed)"


def rewrite(out: str, name: str, stdout: str | None, stderr: str, rc: int) -> str:
    """`out` with section `name` printed as stdout/stderr/rc (stdout None: keep the recorded)."""
    pat = re.compile(rf"(BEGIN {name}\n)(.*?)(\n@@CFX \S+ ERR {name}\n)(.*?)"
                     rf"(\n@@CFX \S+ END {name} rc=)(-?\d+)", re.S)
    new, n = pat.subn(lambda m: f"{m.group(1)}{m.group(2) if stdout is None else stdout}"
                                f"{m.group(3)}{stderr}{m.group(5)}{rc}", out, count=1)
    assert n == 1, name
    return new


def run(rec_name: str, node: str, name: str | None = None, stdout: str | None = None,
        stderr: str = "", rc: int = 0) -> Diagnosis:
    rec = load(rec_name)
    outputs = {} if name is None else {node: rewrite(rec["facts"][node], name, stdout, stderr, rc)}
    return diagnose(ReplayAPI(rec), ReplayShells(rec, outputs=outputs))


def planned_on(d: Diagnosis, node: str) -> list[str]:
    """The mutating commands planned on the node, or for it from its facts (an API action from
    an API-only finding, e.g. deleting a crash-looping pod the API shows, is not from its facts)."""
    reads = sections_read()
    return [a.command for step in STEP_ORDER for a in get_step(step).plan(d).actions
            if a.target == node and a.mutating
            and (a.kind == "shell" or any(c in reads for c in a.finding_codes))]


# (check module, recording, node, section, the section's real answer (stdout, stderr, rc) or
#  None for the recording as it is, the code that answer gives)
CASES = [
    # no nat table read -> "kube-proxy programmed nothing" -> restart kube-proxy
    ("iptables", "healthy", "node-2", "nft_save_nat", ("", "", 0), "KUBE_PROXY_NO_RULES"),
    # a sysctl section cut short -> IP_FORWARD_OFF -> sysctl -w
    ("host", "healthy", "node-2", "sysctl",
     ("net.ipv4.ip_forward=0\nnet.bridge.bridge-nf-call-iptables=1\n", "", 0), "IP_FORWARD_OFF"),
    # no routes read -> FLANNEL_MISSING_ROUTE -> ip route replace
    ("flannel", "healthy", "node-2", "ip_route", ("[]", "", 0), "FLANNEL_MISSING_ROUTE"),
    # flannel's subnet.env not read: the bridge conflict is not judged
    ("cni", "cni-bridge-conflict", "node-2", "subnet_env", None, "CNI_BRIDGE_CONFLICT"),
    # the filter table not read: which rule rejects, and where to open, is unknown
    ("firewall", "firewall-reject", "node-2", "nft_save_filter", None, "FIREWALL_REJECT"),
    # the node's own nftables ruleset not read: the underlay verdict is not drawn there
    ("underlay", "underlay-blocked", "node-2", "nft_json", None, "VXLAN_UNDERLAY_BLOCKED"),
    # one backend's save not read: kube-proxy's backend (and the FORWARD policy) is unknown
    ("iptables", "forward-drop", "node-3", "legacy_save", None, "FORWARD_DROP"),
]


@pytest.mark.parametrize("module,rec,node,section,answer,code", CASES,
                         ids=[f"{c[0]}-{c[5]}-{c[3]}" for c in CASES])
def test_a_section_not_read_gives_no_finding_and_a_not_checked_note(
        module: str, rec: str, node: str, section: str,
        answer: tuple[str, str, int] | None, code: str) -> None:
    assert section in sections_read()[code], (code, section)
    # the section ran and answered: the finding (and a repair planned on the node)
    real = run(rec, node, section, *answer) if answer else run(rec, node)
    assert [f.node for f in real.findings if f.code == code] == [node], real.findings
    if code not in ("VXLAN_UNDERLAY_BLOCKED", "WORKER_KUBECONFIG_BROKEN"):
        assert planned_on(real, node), code  # what a false finding would do
    # the same output, but the section was killed at its deadline
    stdout = answer[0] if answer else None
    d = run(rec, node, section, stdout, KILLED, 137)
    assert d.facts[node].section(section).timed_out
    # on that node: the timeout, and only findings no node fact decides (API-side: pods, nodes)
    on_node = [f.code for f in d.findings if f.node == node]
    assert "NODE_FACTS_TIMEOUT" in on_node
    assert [c for c in on_node if c in sections_read()] == [], d.findings
    assert not planned_on(d, node)
    notes = [g for g in d.not_checked if code in g["codes"] and node in g["nodes"]]
    assert len(notes) == 1 and f"{section} timed out after {SECTION_TIMEOUT}s" in notes[0]["why"]
    assert any(ln.startswith("not checked: ") and code in ln and section in ln and node in ln
               for ln in d.to_dict()["notes"])
    from clusterfix_tui.core.shape import shape_line

    assert shape_line(d.shape).endswith(f"not checked: facts not read on {node}")  # diagnostics
    assert shape_line(real.shape) and "not checked" not in shape_line(real.shape)
    assert d.to_dict()["shape"]["nodes"][node]["not_read"] == {
        section: f"timed out after {SECTION_TIMEOUT}s"}
    # the other nodes are checked as before
    others = sorted((f.code, f.node) for f in real.findings if f.node != node)
    assert sorted((f.code, f.node) for f in d.findings if f.node != node) == others


@pytest.mark.parametrize("rc,stderr", [(143, ""), (9 + 128, "")])
def test_a_section_killed_by_any_signal_is_not_read(rc: int, stderr: str) -> None:
    d = run("healthy", "node-2", "nft_save_nat", "", stderr, rc)
    assert not [f for f in d.findings if f.code == "KUBE_PROXY_NO_RULES"]
    assert any("nft_save_nat killed" in g["why"] for g in d.not_checked)


def test_a_failed_route_listing_is_not_an_empty_table() -> None:
    """`ip -j route` that failed (netlink refused, no `ip`) listed nothing: not read."""
    d = run("healthy", "node-2", "ip_route", "", "RTNETLINK answers: Operation not permitted", 2)
    assert not [f for f in d.findings if f.node == "node-2"]
    (g,) = [g for g in d.not_checked if "FLANNEL_MISSING_ROUTE" in g["codes"]]
    assert "ip_route failed (rc 2: RTNETLINK answers" in g["why"] and g["nodes"] == ["node-2"]


def test_the_node_kubectl_past_its_own_timeout_is_an_answer() -> None:
    """The node's kubectl runs under its own `timeout 8` (rc 124, no kill mark): an API server it
    cannot reach looks exactly like that (the worker-kubeconfig recording), so it is read."""
    err = 'dial tcp 10.99.0.1:6443: connect: no route to host'
    d = run("healthy", "node-2", "kubectl_get_nodes", "", err, 124)
    assert [(f.code, f.node) for f in d.findings] == [("WORKER_KUBECONFIG_BROKEN", "node-2")]
    killed = run("healthy", "node-2", "kubectl_get_nodes", "", "", 137)  # SIGKILLed (OOM)
    assert [f.code for f in killed.findings] == []
    assert any("kubectl_get_nodes killed (signal 9)" in ln for ln in killed.to_dict()["notes"])


@pytest.mark.parametrize("rc,stdout,stderr,unread", [
    (0, "", "", None),                      # ran, printed nothing: a real empty answer
    (127, "", "cfx: nft: command not found", None),  # the tool is not there: an answer
    (1, "", "cat: /run/flannel/subnet.env: No such file", None),  # the file is not there
    (137, "", KILLED, f"timed out after {SECTION_TIMEOUT}s"),
    (137, "", "", "killed (signal 9)"),
    (None, "partial", "", "cut off (no END marker)"),
])
def test_section_answer_or_not_read(rc: int | None, stdout: str, stderr: str,
                                    unread: str | None) -> None:
    assert Section("subnet_env", None, stdout, stderr, rc).unread_reason() == unread


def test_every_declared_section_is_one_the_script_prints() -> None:
    printed = {n for n, _ in _SECTIONS + SHAPE_SECTIONS} | {
        "sysctl", "cni_conf", "kubeconfig", "kubectl_get_nodes", "incompatible_chains",
        "nft_table_text", "iptables_save", "ip6tables_save", "route_get", "vxlan_probe",
        "flannel_conf", "binaries", "paths",
        # no section: iptables-nft's warning of unlisted iptables-legacy tables (NodeFacts.unread_sections)
        "legacy_tables"}
    declared = {s for secs in sections_read().values() for s in secs}
    assert declared <= printed, declared - printed
    # every code a node's facts decide is declared (API-only and connectivity codes are not)
    assert {"FORWARD_DROP", "IPTABLES_BACKEND_CONFLICT", "KUBE_PROXY_INCOMPATIBLE_CHAIN",
            "KUBE_PROXY_NO_RULES", "FIREWALL_REJECT", "FIREWALL_POLICY_DROP", "IP_FORWARD_OFF",
            "BR_NETFILTER_OFF", "IPV6_FORWARD_OFF", "BR_NETFILTER_IP6_OFF", "IPVS_MODULES_MISSING",
            "CNI_BRIDGE_CONFLICT", "CNI_STRAY_CONFLIST", "FLANNEL_STALE_VTEP",
            "FLANNEL_MISSING_ROUTE", "FLANNEL_STALE_SUBNET", "WORKER_KUBECONFIG_BROKEN",
            "VXLAN_UNDERLAY_BLOCKED"} <= set(sections_read())
