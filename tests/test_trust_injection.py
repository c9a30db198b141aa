"""Hostile input never becomes a command (issue 8, point 1).

Every repair step's plan is built twice from the same scenario: once with harmless placeholders in
every value that can reach a command (node names, addresses, podCIDRs, pod/namespace names, paths,
MACs, chain/table names, rule texts, routes, the alternative path read from the node, the
ConfigMap's pod network), once with adversarial values (quotes, `;`, `$()`, backticks, newlines,
NUL, unicode, very long strings). The INTENDED argv of a command is the placeholder command's argv
with each placeholder replaced by the hostile value; the test asserts the hostile command parses
(shlex, with shell operators split out) to exactly that argv, that the shell would act on exactly the
same metacharacters (nothing from a value is live), that api actions carry the values verbatim, and
that actions only ever disappear (a value refused), never appear.

The lab test then runs plans built from hostile values through real SSH on a lab node and shows that
a canary file an injection would create stays absent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from determinism import frozen_plan_stamp
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from trust_helpers import active_meta, argv

from clusterfix_tui.core.checks import data_for
from clusterfix_tui.core.checks.iptables import NftRuleRef
from clusterfix_tui.core.fixes import all_steps, get_step
from clusterfix_tui.core.fixes import iptables as iptables_step
from clusterfix_tui.core.model import Action, Finding, Plan
from clusterfix_tui.core.snapshot import ClusterSnapshot, PodInfo

# One name per run, the same in every pytest-xdist worker (it is in test ids: the workers must
# collect the same tests): xdist gives its workers the run's uid; alone, a fresh one.
CANARY = "/tmp/cfx-canary-" + (os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex)[:8]
ATOMS = [
    "'", '"', ";", "&&", "||", "|", ">", ">>", "<", "&", "(", ")", "{", "}", "\n", "\r", "\t", " ",
    "\x00", "\\", "$", "$(touch " + CANARY + ")", "`touch " + CANARY + "`", "$HOME", "${IFS}",
    "'; touch " + CANARY + "; '", '"; touch ' + CANARY + '; "', "\ntouch " + CANARY + "\n",
    "*", "?", "[a-z]", "#", "~", "!", "-rf", "--", "-", "é", "ü", "\u202e", "\u200b", "😀",
    "\u2028", "\x85", "%s%n", "..", "/", "'\"'\"'", "\\'", "$'\\x27'",
]
LONG = st.builds(lambda a, n: a * n, st.sampled_from(["A", "'", ";", "$(x)", "é", " "]),
                 st.integers(300, 2500))
HOSTILE = st.one_of(
    st.lists(st.one_of(st.sampled_from(ATOMS), st.text(max_size=4)), min_size=1, max_size=8)
    .map("".join),
    st.text(min_size=1, max_size=24),
    LONG,
).filter(lambda s: bool(s) and "zq" not in s and "iptables-" not in s)

# per step and in total: what the properties actually checked (printed with -s)
COUNTS: dict[str, dict[str, int]] = {
    "total": {"plans": 0, "values": 0, "commands": 0, "rejected_actions": 0}}


def PH(k: str) -> str:
    return f"zq{k}zq"


def podinfo(ns: str, name: str, node: str, labels: dict[str, str]) -> PodInfo:
    return PodInfo(namespace=ns, name=name, node=node, phase="Running", ready=False,
                   restart_count=3, waiting_reason="CrashLoopBackOff", waiting_message=None,
                   last_termination_message=None, last_termination_reason=None,
                   container="c", pod_ip=None, labels=labels)


@dataclass
class Diag:
    findings: list[Finding]
    facts: dict[str, Any] = field(default_factory=dict)
    snapshot: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def F(code: str, node: str, **data: Any) -> Finding:
    return Finding(code=code, severity="error", node=node, title=code, data=data_for(code, **data))


# ---- scenarios: values -> diagnosis; each key is a value that can reach a command -------------
# split-mode keys: the value is a route spec the step splits on whitespace by design (each word
# quoted); everything else must arrive as (part of) ONE argument.

def sc_iptables(v: dict[str, str]) -> Diag:
    n1, n2 = v["node_a"], v["node_b"]

    class Alt:
        value = "/usr/sbin/" + v["alt_path"]
        status = "manual"

    class Facts:  # a node whose iptables saves were not read (only its alternative was)
        alternatives = Alt()
        legacy = nft_nat = nft_filter = plain_save = None
        ip6_legacy = ip6_nft_nat = ip6_nft_filter = plain_save6 = None

    findings = [
        F("IPTABLES_BACKEND_CONFLICT", n1, kube_proxy_backend="nft", host_iptables="legacy",
          other_backend="legacy", stale_chains={v["table"]: ["KUBE-SERVICES"]}),
        F("FORWARD_DROP", n1, backend="nft-native", family=v["family"], table=v["nft_table"],
          chain=v["chain"]),
        F("FORWARD_DROP", n2, backend="legacy"),
        F("KUBE_PROXY_INCOMPATIBLE_CHAIN", n2, cause="foreign-nft-rule",
          foreign_rules=[NftRuleRef(v["family2"], v["nft_table2"], v["chain2"], 17,
                                    "ip saddr 10.0.0.1 " + v["rule_text"] + " accept")]),
        F("KUBE_PROXY_INCOMPATIBLE_CHAIN", n2, cause="version-skew",
          host_iptables_version=v["version"]),
    ]
    snap = ClusterSnapshot(kube_proxy_pods={
        n1: [podinfo(v["kp_ns"], v["kp_pod_a"], n1, {"k8s-app": "kube-proxy"})],
        n2: [podinfo(v["kp_ns"], v["kp_pod_b"], n2, {"k8s-app": "kube-proxy"})]})
    return Diag(findings, facts={n1: Facts()}, snapshot=snap)


def sc_cni(v: dict[str, str]) -> Diag:
    n1, n2 = v["node_a"], v["node_b"]
    findings = [
        F("CNI_BRIDGE_CONFLICT", n1, device=v["dev"], wrong_addresses=[v["addr"]],
          pod_cidr=v["cidr"], expected=v["gw"]),
        F("CNI_BRIDGE_CONFLICT", n2, device=v["dev2"], pod_cidr=v["cidr"]),
        F("CNI_STRAY_CONFLIST", n1, dir="/etc/cni/" + v["dir"], stray=[v["fname"]],
          flannel_file=v["fname2"]),
        F("FLANNEL_STALE_SUBNET", n1, device=v["vdev"],
          stale_routes=[{"dst": v["route_dst"], "gateway": v["route_gw"], "dev": v["route_dev"],
                         "flags": ["onlink"]}],
          stale_addresses=[v["addr2"]], subnet_env_stale=True, subnet_env=v["subnet_env"]),
        F("FLANNEL_STALE_VTEP", n2, device=v["vdev2"], wrong_mac=v["mac1"], expected_mac=v["mac2"],
          peer_ip=v["peer_ip"], peer_subnet_gw=v["peer_gw"], peer_node=v["node_a"]),
        F("FLANNEL_MISSING_ROUTE", n2, missing=[{"expected": v["route_spec"],
                                                  "peer_node": v["node_a"]}]),
    ]
    snap = ClusterSnapshot(flannel_pods={
        n1: [podinfo(v["fl_ns"], v["fl_pod_a"], n1, {"app": "flannel"})],
        n2: [podinfo(v["fl_ns"], v["fl_pod_b"], n2, {"app": "flannel"})]})
    return Diag(findings, snapshot=snap)


def sc_host(v: dict[str, str]) -> Diag:
    n1, n2 = v["node_a"], v["node_b"]
    findings = [
        F("IP_FORWARD_OFF", n1, value=v["sysval"]),
        F("BR_NETFILTER_OFF", n1, module_loaded=False, value=v["sysval2"]),
        F("FIREWALL_REJECT", n1, rules=[
            {"backend": "legacy", "table": "filter", "chain": "INPUT",
             "rule": "-A INPUT -m comment --comment " + shlex.quote(v["comment"])
                     + " -j REJECT --reject-with icmp-host-prohibited"},
            {"backend": "nft-native", "family": "inet", "table": v["nft_table"],
             "chain": v["chain"], "handle": 12, "text": v["rule_text"]},
            {"backend": "nft", "table": v["ipt_table"], "chain": "FORWARD",
             "rule": "-A FORWARD -j REJECT"},
        ]),
        F("IPVS_MODULES_MISSING", n2, missing=["ip_vs", v["module"]], mode=v["mode"]),
        # a per-device sysctl (the device name from the node's sysctl output): its own
        # forwarding; the device's ifindex pins precondition and rollback to it. (accept_ra=2 is
        # not swept here: a refused device leaves its line out of the sysctl.d file's text, which
        # this checker cannot tell from a changed structure; its name is checked by _IFACE_RE)
        F("IP_FORWARD_OFF", n2, value="1", interfaces=[v["fwd_dev"]],
          sysctls=[f"net.ipv4.conf.{v['fwd_dev']}.forwarding"]),
    ]
    snap = ClusterSnapshot(flannel_network=v["pod_network"], kube_proxy_pods={
        n2: [podinfo(v["kp_ns"], v["kp_pod"], n2, {"k8s-app": "kube-proxy"})]})

    from clusterfix_tui.core.facts import NodeFacts

    # the node's links as `ip -j link` shows them (real facts: every step reads them as such)
    links = NodeFacts(node=n2, links=({"ifname": v["fwd_dev"], "ifindex": 7},))
    return Diag(findings, facts={n2: links}, snapshot=snap)


def sc_pods(v: dict[str, str]) -> Diag:
    n1, n2, n3 = v["node_a"], v["node_b"], v["node_c"]
    findings = [
        F("KUBE_PROXY_CRASHLOOP", n1, pod=v["kp_pod"], namespace=v["kp_ns"],
          daemonset="kube-proxy"),
        F("FLANNEL_CRASHLOOP", n2, namespace=v["fl_ns"], daemonset=v["fl_ds"] + "flannel"),
        F("FLANNEL_CRASHLOOP", n3, namespace=v["fl_ns"], daemonset=v["fl_ds"] + "flannel"),
        F("PROBE_NO_ROUTE", n1, namespace=v["app_ns"], deployment=v["deploy"],
          container=v["container"], probe={"httpGet": {"port": 8096, "path": v["probe_path"]},
                                           "periodSeconds": 5}),
        # cluster DNS (core/fixes/dns.py): names from the API reach a delete_pod api action
        F("DNS_POD_NOT_RUNNING", n3, namespace=v["dns_ns"], pod=v["dns_pod"],
          deployment=v["dns_deploy"], replicas=2, reason="CrashLoopBackOff", restart_count=9,
          restartable=True),
    ]
    return Diag(findings, snapshot=ClusterSnapshot())


def sc_kubeconfig(v: dict[str, str]) -> Diag:
    n1, n2, n3 = v["node_a"], v["node_b"], v["node_c"]
    findings = [
        F("WORKER_KUBECONFIG_BROKEN", n1, reason="wrong-server", target="/root/" + v["fname"],
          files={"/root/" + v["fname"]: v["current"]}, expected_server="https://" + v["server"],
          source_candidates=["/etc/kubernetes/kubelet.conf"]),
        F("WORKER_KUBECONFIG_BROKEN", n2, reason="missing", target="/root/.kube/" + v["fname2"],
          expected_server="https://10.0.0.1:6443",
          source_candidates=["/etc/" + v["fname3"], "/etc/kubernetes/admin.conf"]),
        F("WORKER_KUBECONFIG_BROKEN", n3, reason="kubectl-fails", target="/root/.kube/config",
          kubectl_error=v["err"], expected_server="https://10.0.0.1:6443",
          files={"/root/.kube/config": "https://10.0.0.1:6443"}),
    ]
    return Diag(findings, snapshot=ClusterSnapshot())


SCENARIOS: dict[str, tuple[Callable[[dict[str, str]], Diag], tuple[str, ...], set[str]]] = {
    "iptables": (sc_iptables, ("node_a", "node_b", "alt_path", "table", "family", "nft_table",
                               "chain", "family2", "nft_table2", "chain2", "rule_text", "version",
                               "kp_ns", "kp_pod_a", "kp_pod_b"), set()),
    "cni_bridge": (sc_cni, ("node_a", "node_b", "dev", "addr", "cidr", "gw", "dev2", "dir",
                            "fname", "fname2", "vdev", "route_dst", "route_gw", "route_dev",
                            "addr2", "subnet_env", "vdev2", "mac1", "mac2", "peer_ip", "peer_gw",
                            "route_spec", "fl_ns", "fl_pod_a", "fl_pod_b"), {"route_spec"}),
    "host_network": (sc_host, ("node_a", "node_b", "sysval", "sysval2", "comment",
                               "nft_table", "chain", "rule_text", "ipt_table", "module",
                               "mode", "pod_network", "kp_ns", "kp_pod", "fwd_dev"),
                     set()),
    "pods": (sc_pods, ("node_a", "node_b", "node_c", "kp_pod", "kp_ns", "fl_ns", "fl_ds",
                       "app_ns", "deploy", "container", "probe_path", "dns_ns", "dns_pod",
                       "dns_deploy"), set()),
    "worker_kubeconfig": (sc_kubeconfig, ("node_a", "node_b", "node_c", "fname", "current",
                                          "server", "fname2", "fname3", "err"), set()),
}
# values that cannot reach a command whatever they hold (digits-only sysctl values, refused
# names): a hostile value there is replaced by the step's own default, so their placeholder is
# never in a command either
# list members a step may refuse one by one (validated names): the command then lacks that argument
SANITISED_NODE_DIRS = {"host_network", "worker_kubeconfig", "iptables", "cni_bridge"}  # all steps (engine.node_backup_dir)
DROPPABLE = {"host_network": {"module"}}
SLASHLESS = {"fname", "fname2", "fname3", "dir"}  # a file name in a directory listing has no "/"
# literal tokens a step adds or leaves out by the address family of a value (a route re-added
# from its spec gets `scope global` on IPv4 only: a ":" in the destination or gateway makes it
# IPv6); their presence is structure the value chose, never text the value put in
FAMILY_TOKENS = {"cni_bridge": (("scope", "global"),)}


def _without(tokens: list[str], pair: tuple[str, ...]) -> list[str]:
    out, i, n = [], 0, len(pair)
    while i < len(tokens):
        if tuple(tokens[i:i + n]) == pair:
            i += n
            continue
        out.append(tokens[i])
        i += 1
    return out


def _all_actions(plan: Plan) -> dict[str, Action]:
    out: dict[str, Action] = {}
    for a in plan.actions:
        out[a.id] = a
        if a.rollback is not None:
            out[a.rollback.id] = a.rollback
    return out


def _subst(text: str, ph: dict[str, str], values: dict[str, str]) -> str:
    for k, p in ph.items():
        text = text.replace(p, values[k])
    return text


def _subst_tree(obj: Any, ph: dict[str, str], values: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return _subst(obj, ph, values)
    if isinstance(obj, dict):
        return {_subst_tree(k, ph, values): _subst_tree(x, ph, values) for k, x in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_subst_tree(x, ph, values) for x in obj]
    return obj


def _json_token(tok: str) -> Any:
    if not tok.startswith("{"):
        return None
    try:
        return json.loads(tok)
    except ValueError:
        return None


def _norm_argv(tokens: list[str]) -> list[str]:
    out = []
    for t in tokens:
        j = _json_token(t)
        out.append(json.dumps(j, sort_keys=True) if j is not None else t)
    return out


def _sanitised(node: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", node)
    return "_" if safe in ("", ".", "..") else safe


def _expected_argv(cmd: str, ph: dict[str, str], values: dict[str, str],
                   split_keys: set[str], drop: set[str] = frozenset(),
                   step_name: str = "") -> list[str]:
    out: list[str] = []
    for tok in argv(cmd):
        if any(tok == ph[k] for k in drop):
            if out and out[-1] == "-e":  # `grep -e NAME` pairs of the persisted module list
                out.pop()
            continue
        j = _json_token(tok)
        if j is not None:  # a JSON argument (kubectl patch -p): compare the decoded data
            out.append(json.dumps(_subst_tree(j, ph, values), sort_keys=True))
            continue
        expanded = False
        for k in split_keys:
            if tok == ph[k]:
                out.extend(values[k].split())
                expanded = True
        if not expanded:
            if step_name in SANITISED_NODE_DIRS:
                # these steps put the node's backups under a sanitised copy of its name
                for k, p in ph.items():
                    if k.startswith("node_"):
                        tok = tok.replace(f"-{step_name}/{p}",
                                          f"-{step_name}/{_sanitised(values[k])}")
            out.append(_subst(tok, ph, values))
    return out


def check_step(step_name: str, values: dict[str, str]) -> None:
    build, keys, split_keys = SCENARIOS[step_name]
    drop_keys = DROPPABLE.get(step_name, set())
    step = get_step(step_name)
    ph = {k: PH(k) for k in keys}
    # one stamp for both plans: their backup paths may only differ by the values in them
    with frozen_plan_stamp():
        safe_plan = step.plan(build(ph))
        hostile_plan = step.plan(build(values))
    assert isinstance(hostile_plan, Plan)
    safe = list(_all_actions(safe_plan).values())
    hostile = _all_actions(hostile_plan)
    assert len(hostile) <= len(safe), "hostile values made new actions appear"
    counts = COUNTS.setdefault(step_name, dict.fromkeys(COUNTS["total"], 0))
    for c in (counts, COUNTS["total"]):
        c["plans"] += 1
        c["values"] += len(keys)
        c["rejected_actions"] += len(safe) - len(hostile)
    # the intended form of every safe action with the hostile values in place
    intended = []
    for s in safe:
        wants = [_expected_argv(s.command, ph, values, split_keys, step_name=step_name)]
        if drop_keys:  # a list member the step refused (e.g. a module name)
            wants.append(_expected_argv(s.command, ph, values, split_keys, drop_keys,
                                        step_name=step_name))
        for pair in FAMILY_TOKENS.get(step_name, ()):  # set by the address family a value has
            wants += [_without(w, pair) for w in wants]
        intended.append((s, _subst(s.target, ph, values), wants, active_meta(s.command)))
    used: set[int] = set()
    for hid, h in hostile.items():
        counts["commands"] += 1
        COUNTS["total"]["commands"] += 1
        got = _norm_argv(argv(h.command))
        meta = active_meta(h.command)
        match = None
        for i, (s, target, wants, _smeta) in enumerate(intended):
            if i in used or s.kind != h.kind or target != h.target:
                continue
            if got in wants:
                match = i
                break
        assert match is not None, (
            f"{hid}: the command does not parse to any intended argv (a value changed the "
            f"command's structure or went to the wrong node)\nhostile: {h.command[:800]!r}\n"
            f"argv: {got[:40]!r}")
        used.add(match)
        s, _target, _wants, smeta = intended[match]
        assert meta == smeta, f"{hid}: a value put live shell syntax in: {h.command[:800]!r}"
        if h.kind == "api":
            assert h.api == _subst_tree(s.api, ph, values), "api action lost or changed a value"
    # placeholders never leak into commands of the hostile plan (all were substituted)
    for h in hostile.values():
        assert "zq" not in h.command, h.command[:300]


def _values(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, str]]:
    def fix(k: str, s: str) -> str:
        if k in ("sysval", "sysval2") and s.strip().isdigit():
            return s + "x"  # a digits-only previous value is used as is (harmless: digits)
        return s.replace("/", "_") if k in SLASHLESS else s
    return st.fixed_dictionaries({k: HOSTILE.map(lambda s, k=k: fix(k, s)) for k in keys})


HYP = settings(max_examples=int(os.environ.get("CFX_TRUST_EXAMPLES", "60")), deadline=None,
               phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                      HealthCheck.data_too_large])


def test_every_step_has_a_scenario() -> None:
    """A new step module must get a hostile scenario here before it ships."""
    names = {s.name for s in all_steps()}
    assert names == set(SCENARIOS), f"steps without a hostile scenario: {names - set(SCENARIOS)}"


@pytest.mark.parametrize("step_name", sorted(SCENARIOS))
def test_safe_scenario_reaches_commands(step_name: str) -> None:
    """The scenario really drives values into commands (else the property proves nothing)."""
    build, keys, _ = SCENARIOS[step_name]
    ph = {k: PH(k) for k in keys}
    plan = get_step(step_name).plan(build(ph))
    text = "\n".join(f"{a.command} {a.target} {a.api}" for a in _all_actions(plan).values())
    reached = {k for k, p in ph.items() if p in text}
    assert len(reached) >= len(keys) // 2, (step_name, sorted(set(keys) - reached))
    assert any(a.kind == "shell" for a in plan.actions) or step_name == "pods"


def _check_property(step_name: str) -> None:
    """Run the hostile-values property for one step, then assert it really ran: enough plans
    were built and compared, and they had commands (no order between tests, no shared tally)."""
    before = dict(COUNTS.get(step_name) or dict.fromkeys(COUNTS["total"], 0))

    @HYP
    @given(values=_values(SCENARIOS[step_name][1]))
    def prop(values: dict[str, str]) -> None:
        assume(len(set(values.values())) == len(values))
        check_step(step_name, values)

    prop()
    now = COUNTS[step_name]
    ran = {k: now[k] - before[k] for k in now}
    print(f"\nTRUST-INJECTION {step_name}: {ran}")
    assert ran["plans"] >= min(10, HYP.max_examples), ran
    assert ran["commands"] > ran["plans"], ran


def test_iptables_plan_quotes_hostile_values() -> None:
    _check_property("iptables")


def test_cni_bridge_plan_quotes_hostile_values() -> None:
    _check_property("cni_bridge")


def test_host_network_plan_quotes_hostile_values() -> None:
    _check_property("host_network")


def test_pods_plan_quotes_hostile_values() -> None:
    _check_property("pods")


def test_worker_kubeconfig_plan_quotes_hostile_values() -> None:
    _check_property("worker_kubeconfig")


def test_plans_compare_whatever_the_clock_does() -> None:
    """The comparison is immune to the wall clock: with a plan stamp that ticks on every call
    (as a second boundary between the safe and the hostile plan would), check_step still holds,
    and the stamp it froze is the one in the backup paths."""
    from clusterfix_tui.core.fixes import engine

    ticks = iter(range(10**6))
    real = engine.plan_stamp
    engine.plan_stamp = lambda now=None: f"20260101T0000{next(ticks) % 60:02d}Z"  # type: ignore
    try:
        for name, (_build, keys, _split) in SCENARIOS.items():
            values = {k: f"v{i};$(x)'" for i, k in enumerate(keys)}
            for k in values:
                if k in SLASHLESS:
                    values[k] = values[k].replace("/", "_")
            check_step(name, values)
        build, keys, _ = SCENARIOS["worker_kubeconfig"]
        with frozen_plan_stamp() as stamp:
            plan = get_step("worker_kubeconfig").plan(build({k: PH(k) for k in keys}))
        assert any(stamp in a.command for a in plan.actions), [a.command for a in plan.actions]
    finally:
        engine.plan_stamp = real  # type: ignore[assignment]


# ---- the checker itself must catch an unquoted value (no test that cannot fail) -------------

def test_checker_catches_unquoted_values() -> None:
    ph = {"x": PH("x")}
    for bad in ("a;touch /tmp/x", "$(id)", "`id`", "a b", "x'y", "*", "a\nb", "#"):
        safe_cmd = f"ip link show dev {PH('x')} && true"
        unquoted = f"ip link show dev {bad} && true"
        quoted = f"ip link show dev {shlex.quote(bad)} && true"
        want = _expected_argv(safe_cmd, ph, {"x": bad}, set())
        assert argv(quoted) == want and active_meta(quoted) == active_meta(safe_cmd)
        try:
            caught = argv(unquoted) != want or active_meta(unquoted) != active_meta(safe_cmd)
        except ValueError:  # unbalanced quote: not the intended argv either
            caught = True
        assert caught, bad
    # double quotes are not enough
    dq = 'echo "$(touch /tmp/x)"'
    assert active_meta(dq) != active_meta("echo 'zq'")


def test_rule_text_transform_is_only_cosmetic() -> None:
    """The iptables step rewrites nft rule text (handle comment, counters) before quoting it."""
    assert iptables_step._rule_text("ip saddr 1.2.3.4 counter packets 3 bytes 9 accept # handle 7") \
        == "ip saddr 1.2.3.4 counter accept"


# ---- the same values through real SSH on a lab node -----------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=2, faults="none") as handle:
        yield handle


NASTY_FOR_LAB = [
    "x'; touch " + CANARY + "; echo '",
    'x"; touch ' + CANARY + '; echo "',
    "$(touch " + CANARY + ")",
    "`touch " + CANARY + "`",
    "x\ntouch " + CANARY + "\n",
    "x && touch " + CANARY + " | x > " + CANARY,
    "$'\\x27'; touch " + CANARY,
    "é😀\u202e;touch " + CANARY,
    "A" * 3000 + "$(touch " + CANARY + ")",
]


@pytest.mark.lab
def test_hostile_plans_run_on_a_lab_node_create_no_canary(lab, tmp_path) -> None:
    """Plans (and their rollbacks) built from hostile values run over real SSH on node-1: every
    command fails or does nothing harmful, and the canary file an injection would create is
    never there (checked on the host after every command, and inside the node per value)."""
    from clusterfix_tui.runtime import build_runtime

    rt = build_runtime(lab_dir=lab.info["dir"])
    node = "node-1"
    # the hostile values stay in everything but the node name (that routes the command)
    ran = 0
    try:
        for nasty in NASTY_FOR_LAB:
            for name, (build, keys, _split) in SCENARIOS.items():
                vals = {k: f"{nasty}{k}" for k in keys}
                for nk in ("node_a", "node_b", "node_c"):
                    if nk in vals:
                        vals[nk] = node
                plan = get_step(name).plan(build(vals))
                shell = [a for a in _all_actions(plan).values() if a.kind == "shell"]
                for a in shell:
                    # kernel-wide state (modules, bridge sysctls) is not the lab node's own
                    if "modprobe" in a.command or "bridge-nf" in a.command:
                        continue
                    rt.shells(node).run(a.command, timeout=15)
                    ran += 1
                    # the node's /tmp is the host's (the lab mounts its own /etc, /run, /root)
                    assert not os.path.exists(CANARY), (
                        f"injection: {a.command[:400]!r} created {CANARY}")
            assert not lab.exec(node, f"test -e {CANARY} && echo yes || true").stdout.strip()
        assert not os.path.exists(CANARY)
        # NUL: the value cannot reach the node (the command string cannot carry it past sh -c)
        rt.shells(node).run("echo " + shlex.quote("a\x00; touch " + CANARY), timeout=10)
        assert not lab.exec(node, f"test -e {CANARY} && echo yes || true").stdout.strip()
    finally:
        rt.close()
        lab.exec(node, f"rm -f {CANARY}", check=False)
    print(f"\nTRUST-INJECTION-LAB: {ran} hostile commands run over SSH, canary absent")
    assert ran > 40


# ---- hostile numbers: a plan is refused politely, never an exception -------------------------

@pytest.mark.parametrize("value", ["12; rm -rf /", "²", "١٢", "0x1f", "-1", "", "1e3", "9" * 400])
def test_plan_never_raises_on_hostile_numbers(value: str) -> None:
    """nft rule handles (read from the node) and probe ports (read from the API) are numbers
    the steps turn into ints: anything else must be refused (a note), not crash the session."""
    ipt = Diag([F("KUBE_PROXY_INCOMPATIBLE_CHAIN", "n1", cause="foreign-nft-rule",
                  foreign_rules=[NftRuleRef("ip", "nat", "KUBE-SERVICES", value,
                                            "ip daddr 1.2.3.4 accept")])],
               snapshot=ClusterSnapshot())
    pods = Diag([F("PROBE_NO_ROUTE", "n1", namespace="a", deployment="b", container="c",
                   probe={"httpGet": {"port": value}})], snapshot=ClusterSnapshot())
    for name, d in (("iptables", ipt), ("pods", pods)):
        plan = get_step(name).plan(d)
        for a in _all_actions(plan).values():
            assert value not in a.command or value.isascii() and value.isdigit(), a.command


# ---- validation: values from the API (pod IPs, ports) reach node shells too ------------------

class _FakeAPI:
    def __init__(self, pod_ip: str) -> None:
        self.pod_ip = pod_ip

    def list_nodes(self):
        return [{"metadata": {"name": n, "labels": {}},
                 "status": {"addresses": [{"type": "InternalIP", "address": f"10.9.9.{i}"}],
                            "conditions": [{"type": "Ready", "status": "True"}]}}
                for i, n in enumerate(("node-1", "node-2"), 1)]

    def list_pods(self):
        return [{"metadata": {"namespace": "media", "name": "jellyfin-x"},
                 "spec": {"nodeName": "node-2", "containers": [{"ports": [
                     {"containerPort": 8096}]}]},
                 "status": {"phase": "Running", "podIP": self.pod_ip}}]

    def list_services(self):
        return []


def _validation_commands(pod_ip: str) -> list[str]:
    from clusterfix_tui.core.model import CommandResult
    from clusterfix_tui.core.validate import validate

    seen: list[str] = []

    class Shell:
        def run(self, command, timeout=None, on_line=None):
            seen.append(command)
            return CommandResult(exit_code=1, stderr="not run")

    validate(_FakeAPI(pod_ip), lambda node, address=None: Shell(), None, prober=None, timeout=1)
    return [c for c in seen if "ip route get" in c]


@pytest.mark.parametrize("pod_ip", ["1.2.3.4;touch " + CANARY, "$(touch " + CANARY + ")",
                                    "`touch " + CANARY + "`", "1.2.3.4/8096 x'\"y"])
def test_validation_quotes_api_values_at_every_shell_level(pod_ip: str) -> None:
    """The pod-to-pod check runs `bash -c SCRIPT` on a node: a pod IP from the API must stay
    data in the outer shell AND in that inner script (the `ip route get` guard in front is not
    what should stop it)."""
    ph = {"ip": PH("ip")}
    safe, hostile = _validation_commands(PH("ip")), _validation_commands(pod_ip)
    assert len(safe) == len(hostile) == 1
    assert argv(hostile[0]) == _expected_argv(safe[0], ph, {"ip": pod_ip}, set())
    assert active_meta(hostile[0]) == active_meta(safe[0])

    def inner(cmd: str) -> str:
        toks = argv(cmd)
        return toks[toks.index("-c") + 1]

    si, hi = inner(safe[0]), inner(hostile[0])
    assert argv(hi) == _expected_argv(si, ph, {"ip": pod_ip}, set()), (si, hi)
    assert active_meta(hi) == active_meta(si), f"the inner script runs the value: {hi!r}"


@HYP
@given(value=HOSTILE)
def test_facts_script_refuses_peer_addresses_that_are_not_ips(value: str) -> None:
    """The read-only facts script takes the peers' pod IPs (from the API) for `ip route get`:
    anything that is not an IP address is refused before it can reach the script (the snapshot
    also keeps only pod IPs inside the node's podCIDR)."""
    import ipaddress

    from clusterfix_tui.core.facts import build_facts_script

    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    with pytest.raises(ValueError):
        build_facts_script(peer_pod_ips=["10.244.1.5", value], nonce="n0nce")
    COUNTS["total"]["values"] += 1
