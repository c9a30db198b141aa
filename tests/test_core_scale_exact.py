"""#17, the core at 5,000 nodes: the faster paths give exactly what the code they replace gave.

- `parsers.frozen_maker`: the parsers' constructors for Rule, NftRule, NftChain and facts.Section
  make the same objects as the dataclasses' own __init__ (==, hash, repr, fields);
- the iptables rule matcher reads a rule's tokens once (`compile_iptables_rule`) and answers each
  flow from that: compared with the per-flow token reader it replaced (kept verbatim below) on
  every rule in tests/data and on random rules, against flows of every kind;
- build_snapshot describes each pod once: a kube-proxy/flannel pod whose container hint picks the
  status the plain description already uses is that same PodInfo, and one whose hint picks another
  container is described again (call counts, not timings).
No timing here: bench/bench_core.py prints the figures."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from diag_fakes import LAB_NONCE, ReplayAPI, load, scenarios

from clusterfix_tui.core import facts as F
from clusterfix_tui.core import parsers as P
from clusterfix_tui.core import snapshot as S
from clusterfix_tui.core.checks import firewall_path as FP
from clusterfix_tui.core.checks.firewall_path import FULL, NONE, PARTIAL, Flow

DATA = Path(__file__).parent / "data"


def _all_outputs() -> list[str]:
    outs = []
    for sc in scenarios():
        outs.extend(load(sc)["facts"].values())
    return outs


# -- frozen_maker ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,args", [
    (P.Rule, ("nat", "KUBE-SVC-X", "-A KUBE-SVC-X -j DNAT", "DNAT", ("-j", "DNAT"))),
    (P.NftRule, ("ip", "filter", "INPUT", 7, ({"drop": None},), "a comment")),
    (P.NftChain, ("inet", "fw", "input", 1, "filter", "input", 0, "drop")),
    (F.Section, ("route_get", "10.244.1.2", "[]", "", 0)),
])
def test_frozen_maker_makes_what_the_dataclass_makes(cls: Any, args: tuple[Any, ...]) -> None:
    made = P.frozen_maker(cls)(*args)
    ref = cls(*args)
    assert type(made) is cls
    assert made == ref and repr(made) == repr(ref)
    try:
        want = hash(ref)
    except TypeError:  # a field holds a dict (an nft rule's expressions): neither hashes
        with pytest.raises(TypeError):
            hash(made)
    else:
        assert hash(made) == want
    assert vars(made) == vars(ref) and list(vars(made)) == list(vars(ref))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "x"  # type: ignore[misc]


def test_parsed_objects_equal_their_dataclass_rebuilds() -> None:
    """Every Rule/NftRule/NftChain/Section parsed from the recorded outputs is the object the
    dataclass's own constructor makes from the same fields."""
    counts = {"rule": 0, "nft_rule": 0, "nft_chain": 0, "section": 0}

    def same(o: Any) -> None:
        ref = type(o)(*(getattr(o, f.name) for f in dataclasses.fields(o)))
        assert o == ref and repr(o) == repr(ref) and vars(o) == vars(ref)

    for out in _all_outputs():
        nf = F.parse_facts("n", out, LAB_NONCE)
        for sec in nf.sections.values():
            same(sec)
            counts["section"] += 1
        for f in dataclasses.fields(nf):
            v = getattr(nf, f.name)
            if isinstance(v, P.IptablesSave):
                for t in v.tables.values():
                    for r in t.rules:
                        same(r)
                        counts["rule"] += 1
            elif isinstance(v, P.NftRuleset):
                for r in v.rules:
                    same(r)
                    counts["nft_rule"] += 1
                for c in v.chains:
                    same(c)
                    counts["nft_chain"] += 1
    assert all(n > 100 for n in counts.values()), counts


# -- the iptables rule matcher -------------------------------------------------------------------


def _reference_match(rule: P.Rule, flow: Flow) -> int:
    """match_iptables_rule before #17's third core pass, verbatim (tokens read per flow)."""
    toks = list(rule.args)
    res: list[int] = []
    neg = False
    i = 0
    while i < len(toks):
        t = toks[i]
        if t in ("-j", "--jump", "-g", "--goto"):
            break
        if t == "!":
            neg = True
            i += 1
            continue
        val = toks[i + 1] if i + 1 < len(toks) else ""
        v: int | None = None
        step = 2
        if t in ("-m", "--match"):
            v = None
        elif t in ("-p", "--protocol"):
            v = FP.match_proto(flow, val)
        elif t in ("-s", "--source", "--src"):
            v = FP.match_addr(flow.saddrs, flow.family, val.split(","))
        elif t in ("-d", "--destination", "--dst"):
            v = FP.match_addr(flow.daddrs, flow.family, val.split(","))
        elif t in ("-i", "--in-interface"):
            v = FP.match_iface(flow.iifs, [val])
        elif t in ("-o", "--out-interface"):
            v = FP.match_iface(flow.oifs, [val])
        elif t in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            v = FP.match_ports(flow.dports, FP._port_ranges(val))
        elif t in ("--state", "--ctstate"):
            v = FP.match_ctstate(flow, val.split(","))
        elif t == "--ctstatus":
            st = {x.lower() for x in val.split(",")}
            v = FULL if (flow.dnat and "dnat" in st) else NONE if not flow.dnat and st <= {"dnat"} \
                else PARTIAL
        elif t == "--comment":
            v = None
        elif t == "--dst-type":
            v = (FULL if flow.hook in ("input",) else NONE if flow.hook == "forward" else PARTIAL) \
                if val.upper() == "LOCAL" else PARTIAL
        elif t == "--syn":
            v = FULL if flow.proto == "tcp" else NONE
            step = 1
        elif t.startswith("-"):
            v = PARTIAL
            if not val or val.startswith("-") or val == "!":
                step = 1
        else:
            v = None
            step = 1
        if v is not None:
            res.append(FP._not(v) if neg else v)
        neg = False
        i += step
    return FP._and(*res)


def _flows() -> list[Flow]:
    out = []
    for hook in ("input", "forward", "output"):
        for proto in ("tcp", "udp", None):
            for dnat in (False, True):
                out.append(Flow("f", hook, "ip", "d", proto, (8472, 8472) if proto else None,
                                ("10.213.0.11/32", "10.213.0.12/32"), ("10.244.1.0/24",),
                                ("eth0",), ("cni0", "flannel.1"), dnat))
    out.append(Flow("any", "forward", "ip", "d"))
    out.append(Flow("v6", "input", "ip6", "d", "udp", (1, 65535), ("fd00::1/128",), None,
                    ("eth0",), None))
    return out


def _saved_rules() -> list[P.Rule]:
    texts = [p.read_text() for p in (DATA / "facts").glob("*.out")]
    for p in (DATA / "firewall").glob("*.json"):
        texts.extend(v for v in json.loads(p.read_text()).values() if isinstance(v, str))
    for out in _all_outputs():
        secs = F.split_sections(out, LAB_NONCE)[0]
        texts.extend(s.stdout for k, s in secs.items() if "save" in k)
    rules = []
    for t in texts:
        for tab in P.parse_iptables_save(t).tables.values():
            rules.extend(tab.rules)
    return rules


_WORDS = ["-p", "tcp", "udp", "all", "-s", "-d", "10.244.0.0/16", "10.213.0.11", "fd00::/8,10.0.0.0/8",
          "-i", "-o", "eth0", "cni+", "flannel.1", "--dport", "--dports", "8472", "1:1024", "30000-32767",
          "x", "--state", "--ctstate", "NEW,ESTABLISHED", "RELATED", "--ctstatus", "DNAT", "dnat,snat",
          "--dst-type", "LOCAL", "UNICAST", "--syn", "!", "-m", "comment", "--comment", "-j", "-g",
          "DROP", "ACCEPT", "--weird", "", "-", "--to-destination", "1.2.3.4:80", "--src", "--dst"]


def test_compiled_rule_matches_as_the_token_reader_did() -> None:
    flows = _flows()
    rules = _saved_rules()
    assert len(rules) > 300
    rnd = random.Random(17)
    for _ in range(4000):
        args = tuple(rnd.choice(_WORDS) for _ in range(rnd.randint(0, 9)))
        rules.append(P.Rule("filter", "INPUT", "-A INPUT " + " ".join(args), None, args))
    seen = set()
    for r in rules:
        for fl in flows:
            want = _reference_match(r, fl)
            assert FP.match_iptables_rule(r, fl) == want, (r.spec, fl)
            assert FP._match_ops(FP.compile_iptables_rule(r.args), fl) == want
            seen.add(want)
    assert seen == {FULL, PARTIAL, NONE}


def test_each_rule_compiled_once_per_table_whatever_the_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    """node_hits reads a table's rules once for all of the node's flows (they were re-read per
    flow and per rule visit)."""
    text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:X - [0:0]\n" + \
        "".join(f"-A INPUT -p tcp --dport {1000 + i} -j X\n" for i in range(40)) + \
        "-A X -s 10.0.0.0/8 -j RETURN\n-A INPUT -p udp -j ACCEPT\nCOMMIT\n"
    save = P.parse_iptables_save(text)
    calls: list[int] = []
    real = FP.compile_iptables_rule

    def counting(args: tuple[str, ...]) -> Any:
        calls.append(1)
        return real(args)

    monkeypatch.setattr(FP, "compile_iptables_rule", counting)
    flows = [f for f in _flows() if f.hook == "input" and f.family == "ip"]
    hits = FP.node_hits(None, flows, {"nft": save})
    assert hits  # the DROP policy is met by some flows
    assert len(calls) == len(save.tables["filter"].rules)  # 42, not 42 x flows x visits


# -- build_snapshot: one description per pod ------------------------------------------------------


def _count_pod_info(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = S.pod_info

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(S, "pod_info", counting)
    return calls


def test_each_pod_is_described_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = load("healthy")
    ref = S.build_snapshot(ReplayAPI(rec), with_logs=False)
    calls = _count_pod_info(monkeypatch)
    snap = S.build_snapshot(ReplayAPI(rec), with_logs=False)
    assert snap == ref
    assert len(calls) == len(rec["pods"])  # the kube-proxy and flannel pods were described twice
    assert snap.kube_proxy_pods and snap.flannel_pods


def test_a_pod_whose_hint_picks_another_container_is_described_for_it() -> None:
    """flannel's pod with a crash-looping sidecar: the plain description is the worst container
    (the sidecar), flannel's view is the flannel container's own status."""
    rec = json.loads(json.dumps(load("healthy")))
    pod = next(p for p in rec["pods"] if p["metadata"]["namespace"] == "kube-flannel")
    spec_c = pod["spec"]["containers"]
    spec_c.append({"name": "sidecar", "image": "busybox:1.36"})
    pod["status"]["containerStatuses"].append(
        {"name": "sidecar", "ready": False, "restartCount": 9, "image": "busybox:1.36",
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}})
    snap = S.build_snapshot(ReplayAPI(rec), with_logs=False)
    node = pod["spec"]["nodeName"]
    plain = next(p for p in snap.pods if p.name == pod["metadata"]["name"])
    assert plain.container == "sidecar" and plain.waiting_reason == "CrashLoopBackOff"
    fl = next(p for p in snap.flannel_pods[node] if p.name == pod["metadata"]["name"])
    assert fl.container != "sidecar" and fl.waiting_reason is None
    assert fl == S.pod_info(pod, S._container_for(pod, "flannel") or "kube-flannel")


# -- pod_networks: network texts read through a string-keyed cache ----------------------------------


def _reference_pod_networks(snapshot: Any, facts: Any, version: int) -> list[str]:
    """checks._common.pod_networks before #17's third core pass, verbatim."""
    from clusterfix_tui.core.checks._common import DEFAULT_POD_NETWORK, _text, net_of

    nets: list[str] = []
    fl = getattr(getattr(snapshot, "shape", None), "flannel", None)
    cands = [getattr(fl, "network", None), getattr(fl, "ipv6_network", None),
             getattr(snapshot, "flannel_network", None)]
    env = (facts.subnet_env or {}) if facts is not None else {}
    cands += [env.get("FLANNEL_NETWORK"), env.get("FLANNEL_IPV6_NETWORK")]
    for c in cands:
        n = net_of(c) if c else None
        if n is not None and n.version == version and _text(n) not in nets:
            nets.append(_text(n))
    if nets:
        return nets
    for c in getattr(snapshot, "cluster_cidrs", ()) or ():
        n = net_of(c)
        if n is not None and n.version == version and _text(n) not in nets:
            nets.append(_text(n))
    if nets:
        return nets
    for info in (getattr(snapshot, "nodes", {}) or {}).values():
        for c in getattr(info, "pod_cidrs", ()) or ((info.pod_cidr,) if info.pod_cidr else ()):
            n = net_of(c)
            if n is not None and n.version == version and _text(n) not in nets:
                nets.append(_text(n))
    if not nets and version == 4:
        nets.append(DEFAULT_POD_NETWORK)
    return nets


def test_pod_networks_as_before() -> None:
    from types import SimpleNamespace

    from clusterfix_tui.core.checks._common import pod_networks

    texts: list[Any] = [None, "", "10.244.0.0/16", "10.244.1.7/16", "fd00:10:244::/56", "bogus",
                        "10.244.0.0/33", "1" * 70, 42, "10.96.0.0/12", "fd00::1/64", "10.244.0.0/16 "]
    rnd = random.Random(17)
    seen = set()
    for _ in range(3000):
        def pick() -> Any:
            return rnd.choice(texts)

        fl = SimpleNamespace(network=pick(), ipv6_network=pick()) if rnd.random() < 0.5 else None
        nodes = {f"n{i}": SimpleNamespace(pod_cidrs=tuple(t for t in (pick(), pick()) if t)
                                          if rnd.random() < 0.6 else (), pod_cidr=pick())
                 for i in range(rnd.randint(0, 4))}
        snap = SimpleNamespace(shape=SimpleNamespace(flannel=fl), flannel_network=pick(),
                               cluster_cidrs=tuple(t for t in (pick(), pick()) if t and
                                                   rnd.random() < 0.4), nodes=nodes)
        env = {k: v for k, v in (("FLANNEL_NETWORK", pick()), ("FLANNEL_IPV6_NETWORK", pick()))
               if v is not None} if rnd.random() < 0.5 else None
        facts = SimpleNamespace(subnet_env=env) if rnd.random() < 0.8 else None
        for v in (4, 6):
            want = _reference_pod_networks(snap, facts, v)
            assert pod_networks(snap, facts, v) == want
            seen.add(len(want))
    assert {0, 1, 2} <= seen


def test_pod_networks_reads_the_nodes_podcidrs_once_per_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """No flannel network, no clusterCIDR (calico/cilium with their own IPAM): every node's
    pod_networks is every node's podCIDR. It was read per node and check (N^2); now once per
    snapshot and family, with the same answer, and nothing of it in the snapshot's dict."""
    from clusterfix_tui.core.checks import _common as C
    from clusterfix_tui.core.snapshot import ClusterSnapshot, NodeInfo

    def snapshot(n: int) -> ClusterSnapshot:
        nodes = {f"node-{i}": NodeInfo(f"node-{i}", f"10.0.{i >> 8}.{i & 255}", (),
                                       f"192.168.{i % 250}.0/24", {}, {}, {}, None,
                                       pod_cidrs=(f"192.168.{i % 250}.0/24", f"fd00:{i:x}::/64"))
                 for i in range(n)}
        return ClusterSnapshot(nodes=nodes)

    calls: list[int] = []
    real = C._version_text

    def counting(c: Any) -> Any:
        calls.append(1)
        return real(c)

    monkeypatch.setattr(C, "_version_text", counting)
    counts = []
    for n in (50, 200):
        snap = snapshot(n)
        before = snap.to_dict()
        calls.clear()
        for _node in snap.nodes:  # every node asks (pod_networks per node and check)
            for v in (4, 6):
                got = C.pod_networks(snap, None, v)
                assert got == _reference_pod_networks(snap, None, v)
                got.append("mutated by a caller")  # a fresh list each time: the memo is unharmed
        counts.append(len(calls))  # only the nodes' podCIDRs: no other candidate is set
        assert snap.to_dict() == before and "derived" not in snap.to_dict()
        assert C.pod_networks(snap, None, 4)[:2] == ["192.168.0.0/24", "192.168.1.0/24"]
    assert counts[1] <= 5 * counts[0]  # linear: 4x the nodes; the per-node scan gave 16x

