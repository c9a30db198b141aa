"""Real-world corpus (tests/data/realworld): outputs quoted from public sources (upstream fixtures,
issue pastes), each with its source and expected result in samples.json (README.md there lists
them). Parsers, the shape model and the checks run over every one: the expected results hold and
no sample raises. What the harness adds around a quoted text (a filter table with FORWARD policy
DROP around quoted rules, ...) is written in the sample's "harness" field and marked SYNTHESISED."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import cni, iptables, run_checks
from clusterfix_tui.core.checks import iptables as ipt_mod
from clusterfix_tui.core.checks._common import detect_backend, pod_networks
from clusterfix_tui.core.facts import NodeFacts
from clusterfix_tui.core.shape import (
    _node_args,
    classify_daemonset,
    detect_shape,
    flannel_from_net_conf,
    is_mirror_pod,
    node_distribution,
    node_iptables,
    parse_net_conf,
    why_not,
)
from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info, parse_kube_proxy_mode

DATA = Path(__file__).parent / "data" / "realworld"
SAMPLES: list[dict[str, Any]] = json.loads((DATA / "samples.json").read_text())
BY_FILE = {s["file"]: s for s in SAMPLES}


def text(name: str) -> str:
    return (DATA / name).read_text()


def test_corpus_is_complete_and_documented():
    files = sorted(p.name for p in DATA.iterdir() if p.name not in ("samples.json", "README.md"))
    assert files == sorted(BY_FILE), "every sample file has exactly one samples.json entry"
    assert len(SAMPLES) >= 25
    readme = text("README.md")
    for s in SAMPLES:
        assert s["source"] and s["expect"], s["file"]
        assert s["file"] in readme and s["source"] in readme, f"{s['file']} not in README.md"
        row = next(ln for ln in readme.splitlines() if ln.startswith(f"| {s['file']} "))
        if "SYNTHESISED" in s.get("harness", ""):
            assert "SYNTHESISED" in row, s["file"]


# -- helpers: build the inputs the product reads, from the quoted texts ----------------------------


def _ds(namespace: str, name: str, components: list[str]) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "uid": f"uid-{name}", "labels": {},
            "components": components, "configmaps": []}


def _snapshot(nodes: list[dict[str, Any]] = (), daemonsets: tuple[dict[str, Any], ...] = (),
              **kw: Any) -> ClusterSnapshot:
    infos = {}
    for obj in nodes:
        n = node_info(obj)
        infos[n.name] = n
    return ClusterSnapshot(nodes=infos, daemonsets=tuple(daemonsets), **kw)


def node_from_text(raw: str) -> dict[str, Any]:
    """A Node object from a `kubectl describe node` / `get node -o yaml` excerpt: its name,
    labels (k=v) and annotations (k: v); lines cut by the excerpt are kept as far as they go."""
    labels: dict[str, str] = {}
    ann: dict[str, str] = {}
    name = "node"
    section = None
    for line in raw.splitlines():
        m = re.match(r"^Name:\s+(\S+)", line)
        if m:
            name = m.group(1)
        if line.startswith("Labels:"):
            section = "labels"
            line = line[len("Labels:"):]
        elif line.startswith("Annotations:") or line.strip() == "annotations:":
            section = "ann"
            line = line.split(":", 1)[1] if line.startswith("Annotations:") else ""
        elif line and not line.startswith(" ") and section:
            section = None if not line.startswith("  ") else section
        body = line.strip()
        if not body:
            continue
        if section == "labels" and "=" in body:
            k, v = body.split("=", 1)
            labels[k] = v
        elif re.match(r"^[a-z0-9.-]+\.[a-z]+/[A-Za-z0-9._-]+: ", body) or \
                re.match(r"^[a-z0-9.-]+/[A-Za-z0-9._-]+: ", body):
            k, v = body.split(": ", 1)
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            elif v[:1] in "'\"":
                v = v[1:]  # cut by the excerpt: kept as far as it goes
            ann[k] = v
            if section is None:
                section = "ann"
    return {"metadata": {"name": name, "labels": labels, "annotations": ann}, "spec": {},
            "status": {}}


def rules_to_filter(raw: str, feeder: str | None = None) -> str:
    """Quoted rules (iptables -S / -A lines, [pkts:bytes] counters, `iptables -A ...` commands)
    in a *filter table whose FORWARD policy is DROP (the SYNTHESISED wrapper of the README)."""
    chains: list[str] = []
    rules: list[str] = []
    for line in raw.splitlines():
        line = line.strip()
        line = re.sub(r"^\[\d+:\d+\]\s+", "", line)
        line = re.sub(r"^iptables\s+", "", line)
        if line.startswith("-N "):
            chains.append(line.split()[1])
        elif line.startswith("-A "):
            chains.append(line.split()[1])
            rules.append(line)
    if feeder:
        rules.insert(0, f"-A FORWARD -j {feeder}")
        chains.append(feeder)
    for r in rules:
        m = re.search(r" -[jg] (\S+)", r)
        if m and m.group(1) not in ("ACCEPT", "DROP", "RETURN", "MARK", "REJECT", "LOG"):
            chains.append(m.group(1))
    decl = [f":{c} - [0:0]" for c in dict.fromkeys(chains)
            if c not in ("INPUT", "FORWARD", "OUTPUT")]
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]",
                      ":OUTPUT ACCEPT [0:0]", *decl, *rules, "COMMIT", ""])


def facts_with(**kw: Any) -> NodeFacts:
    return NodeFacts(node="node-a", complete=True, **kw)


# -- per kind ---------------------------------------------------------------------------------------


def check_manifests(s: dict[str, Any]) -> None:
    docs = [d for d in yaml.safe_load_all(text(s["file"])) if isinstance(d, dict)]
    e = s["expect"]
    got = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": sorted(classify_daemonset(d))
           for d in docs if d.get("kind") == "DaemonSet"}
    assert got == e["daemonsets"]
    for cm in (d for d in docs if d.get("kind") == "ConfigMap"):
        data = cm.get("data") or {}
        if "net-conf.json" in data:
            fl = flannel_from_net_conf(parse_net_conf(data["net-conf.json"]), deployment="daemonset")
            assert (fl.network, fl.backend) == (e["network"], e["backend"])
        if "cni-conf.json" in data:
            conf, err = P.parse_cni_conf(data["cni-conf.json"])
            assert err is None and P.cni_plugin_types(conf) == e["cni_types"]
    if "cni_with_these" in e:
        snap = _snapshot([{"metadata": {"name": "n1"}, "spec": {"podCIDR": "192.168.0.0/24"}}],
                         tuple(_ds(k.split("/")[0], k.split("/")[1], v)
                               for k, v in e["daemonsets"].items()))
        shape = detect_shape(snap, {})
        assert shape.cni == e["cni_with_these"]
        for code in e["not_checked"]:
            assert why_not(shape, code, "n1") is not None, code
        for code in e.get("checked", ()):
            assert why_not(shape, code, "n1") is None, code
    if "flows" in e:
        # the flows a node's firewall is judged on: a CNI that is known never gets flannel's
        # VXLAN (udp/8472) ones (an unknown CNI is assumed to be flannel's)
        from clusterfix_tui.core.checks.firewall_path import cluster_flows

        nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
                  "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
                 for n, c, a in (("n1", "10.244.0.0/24", "10.0.0.11"),
                                 ("n2", "10.244.1.0/24", "10.0.0.12"))]
        snap = _snapshot(nodes, tuple(_ds(d["metadata"]["namespace"], d["metadata"]["name"],
                                          sorted(classify_daemonset(d)))
                                      for d in docs if d.get("kind") == "DaemonSet"))
        snap = _with_shape(snap, {})
        assert (snap.shape.cni, snap.shape.cni_detail) == tuple(e["shape"])
        assert sorted({fl.name for fl in cluster_flows(snap, "n1", facts_with())}) == e["flows"]


def check_net_conf(s: dict[str, Any], conf: dict[str, Any] | None = None) -> None:
    conf = conf if conf is not None else parse_net_conf(text(s["file"]))
    assert conf is not None
    fl = flannel_from_net_conf(conf, deployment="daemonset")
    e = s["expect"]
    for key in ("network", "ipv6_network", "backend", "direct_routing", "enable_ipv4",
                "enable_ipv6", "vxlan_port", "vni"):
        if key in e:
            assert getattr(fl, key) == e[key], (key, getattr(fl, key))
    # the snapshot's own reader agrees (case-insensitive keys, as flannel's Go decoder)
    from clusterfix_tui.core.snapshot import parse_flannel_net_conf

    net, be = parse_flannel_net_conf({"data": {"net-conf.json": json.dumps(conf)}})
    assert net == fl.network and ((be or "").lower() or None) == fl.backend
    if "vxlan_checks" in e:
        snap = _snapshot([{"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.3.1.0/24"}}],
                         (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),),
                         flannel_net_conf=conf)
        shape = detect_shape(snap, {})
        assert shape.cni == "flannel"
        assert (why_not(shape, "FLANNEL_MISSING_ROUTE") is None) == e["vxlan_checks"]


def check_flannel_backend(s: dict[str, Any]) -> None:
    backend = json.loads(text(s["file"]))
    check_net_conf(s, {"Network": "10.244.0.0/16", "Backend": dict(backend, Type="vxlan")})


def check_subnet_env(s: dict[str, Any]) -> None:
    env = P.parse_env_file(text(s["file"]))
    e = s["expect"]
    for k, v in e["env"].items():
        assert env.get(k) == v
    f = facts_with(subnet_env=env)
    for version, nets in e["pod_networks"].items():
        got = pod_networks(ClusterSnapshot(), f, int(version))
        assert got == nets, (version, got)


def check_kube_proxy_config(s: dict[str, Any]) -> None:
    mode = parse_kube_proxy_mode({"data": {"config.conf": text(s["file"])}})
    e = s["expect"]
    assert mode == e["mode"]
    snap = _snapshot([{"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.0.0/24"}}],
                     (_ds("kube-system", "kube-proxy", ["kube-proxy"]),
                      _ds("kube-flannel", "kube-flannel-ds", ["flannel"])),
                     kube_proxy_mode=mode, kube_proxy_config_found=True)
    shape = detect_shape(snap, {})
    assert shape.kube_proxy == "daemonset" and shape.kube_proxy_mode == e["mode"]
    for code in e["not_checked"]:
        assert why_not(shape, code, "n1") is not None, code
    for code in e["checked"]:
        assert why_not(shape, code, "n1") is None, code


FLANNEL_CONFLIST = "/etc/cni/net.d/10-flannel.conflist"


def check_cni_conf(s: dict[str, Any]) -> None:
    raw = text(s["file"])
    conf, err = P.parse_cni_conf(raw)
    e = s["expect"]
    assert (conf is not None) == e["parseable"]
    flannel_yml = [d for d in yaml.safe_load_all(text("flannel-kube-flannel.yml"))
                   if isinstance(d, dict) and d.get("kind") == "ConfigMap"][0]
    fl_text = flannel_yml["data"]["cni-conf.json"]
    assert cni.delegates_to_flannel(conf, FLANNEL_CONFLIST) == e["delegates_to_flannel"]
    path = "/etc/cni/net.d/00-multus.conf"
    f = facts_with(cni_files={path: raw, FLANNEL_CONFLIST: fl_text},
                   cni_configs={path: conf, FLANNEL_CONFLIST: P.parse_cni_conf(fl_text)[0]})
    codes = sorted(x.code for x in cni.check(ClusterSnapshot(), {"node-a": f}))
    assert codes == e["findings"]


def check_iptables_rules(s: dict[str, Any]) -> None:
    feeder = {"cilium-pr11819-forward-rules.txt": "CILIUM_FORWARD",
              "calico-6342-iptables-S-cali-FORWARD.txt": "cali-FORWARD",
              "centos7-binary-k8s-KUBE-FORWARD-rules.txt": "KUBE-FORWARD"}.get(s["file"])
    save = P.parse_iptables_save(rules_to_filter(text(s["file"]), feeder))
    assert not save.errors, save.errors
    e = s["expect"]
    f = facts_with(legacy=save, **_pod_network(e))
    got = [x for x in iptables.forward_drop(ClusterSnapshot(), "node-a", f)]
    assert bool(got) == e["forward_drop"], [x.evidence for x in got]
    # the sample exercises the interface / policy-mark recognition: by address alone it would
    # be a FORWARD_DROP (so the test fails if that recognition breaks)
    saved = (ipt_mod.POD_IFACE_PREFIXES, ipt_mod.CNI_CHAIN_PREFIXES, ipt_mod.CNI_COMMENT_PREFIXES)
    try:
        ipt_mod.POD_IFACE_PREFIXES = ipt_mod.CNI_CHAIN_PREFIXES = ("\0",)
        ipt_mod.CNI_COMMENT_PREFIXES = ("\0",)
        only_addr = iptables.forward_drop(ClusterSnapshot(), "node-a", f)
    finally:
        (ipt_mod.POD_IFACE_PREFIXES, ipt_mod.CNI_CHAIN_PREFIXES,
         ipt_mod.CNI_COMMENT_PREFIXES) = saved
    assert bool(only_addr) == e["forward_drop_by_address_only"]
    if "single_iptables" in e:
        check_single_iptables_plan(s, rules_to_filter(text(s["file"]), feeder), "iptables")


def check_single_iptables_plan(s: dict[str, Any], save_text: str, step: str) -> None:
    """On an iptables without -legacy/-nft variants (the sample's own `iptables-save v1.4.21`:
    CentOS 7) every planned iptables command runs the one `iptables`, with the wait flag that
    version takes (a bare -w: -w <seconds> came with 1.4.22, as kube-proxy's own iptables
    runner decides); iptables-legacy does not exist there and `-w 5` is "Bad argument"."""
    from clusterfix_tui.core.checks import firewall
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks

    e = s["expect"]["single_iptables"]
    f = facts_with(plain_save=P.parse_iptables_save(save_text),
                   iptables_version=P.parse_iptables_version(e["version"]),
                   binaries={"iptables": "/sbin/iptables", "iptables-save": "/sbin/iptables-save"},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.11",
                                                            "prefixlen": 24}]}],
                   **_pod_network(s["expect"]))
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "10.244.0.0/24", "10.0.0.11"),
                             ("node-b", "10.244.1.0/24", "10.0.0.12"))]
    snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                       {"node-a": f})
    assert snap.shape.nodes["node-a"].iptables == "single"
    xs = (iptables.forward_drop(snap, "node-a", f) if step == "iptables"
          else firewall.check(snap, {"node-a": f}))
    assert [x.code for x in xs] == e["findings"]
    plan = get_step(step).plan(_Diag(xs, {"node-a": f}, snap))
    cmds = [c for a in plan.actions for c in (a.command, a.rollback.command if a.rollback else "",
                                               a.precondition.command if a.precondition else "")]
    ipt = [c for c in cmds if "iptables" in c and "mkdir" not in c.split("&&")[0]]
    assert ipt and check_rollbacks(plan) == []
    variant = re.compile(r"(^|[\s;&|({])ip6?tables-(legacy|nft)(-save|-restore)?(\s|$)")
    for c in ipt:
        assert not variant.search(c) and "-w 5" not in c, c
    assert any(c.startswith(e["tool"]) for c in ipt), ipt


def _pod_network(e: dict[str, Any]) -> dict[str, Any]:
    """The pod network a sample's cluster used (SYNTHESISED as flannel's subnet.env when the
    row gives one), else none: the checks' default."""
    return {"subnet_env": {"FLANNEL_NETWORK": e["pod_network"]}} if "pod_network" in e else {}


def _save_facts(s: dict[str, Any]) -> NodeFacts:
    raw = text(s["file"])
    if "dedent" in s.get("harness", ""):
        raw = textwrap.dedent(raw.replace("\n\t", "\n")) if raw.startswith("#") else textwrap.dedent(raw)
    save = P.parse_iptables_save(raw)
    e = s["expect"]
    assert sorted(save.tables) == e["tables"]
    assert bool(save.errors) == e["parse_errors"]
    kw: dict[str, Any] = {}
    if e["backend"] == "legacy-save":
        kw["legacy"] = save
    elif e["backend"] == "nft-save":
        kw["nft_filter"] = P.IptablesSave({k: v for k, v in save.tables.items() if k == "filter"})
        kw["nft_nat"] = P.IptablesSave({k: v for k, v in save.tables.items() if k == "nat"})
        kw["nft_mangle"] = P.IptablesSave({k: v for k, v in save.tables.items() if k == "mangle"})
    else:  # an iptables without -legacy/-nft variants: its one iptables-save
        kw["plain_save"] = save
        kw["iptables_version"] = P.parse_iptables_version(e["iptables_version"])
        kw["binaries"] = {"iptables": "/sbin/iptables", "iptables-save": "/sbin/iptables-save"}
    if e.get("with"):
        other = P.parse_iptables_save(text(e["with"]))
        kw["nft_filter"] = other
    return facts_with(**kw, **_pod_network(e))


def check_iptables_save(s: dict[str, Any]) -> None:
    f = _save_facts(s)
    e = s["expect"]
    if "forward_drop" in e:
        assert bool(iptables.forward_drop(ClusterSnapshot(), "node-a", f)) == e["forward_drop"]
    if "kube_proxy_backend" in e:
        assert detect_backend(f)[0] == e["kube_proxy_backend"], detect_backend(f)
    if "node_iptables" in e:
        assert node_iptables(f)[0] == e["node_iptables"]
        assert any("no -legacy/-nft" in u for u in node_iptables(f)[3])  # said, not silent
    kp = (_ds("kube-system", "kube-proxy", ["kube-proxy"]),)
    node = {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.244.0.0/24"}}
    if "findings" in e:
        snap = _snapshot([node], kp, kube_proxy_mode="", kube_proxy_config_found=True)
        snap = _with_shape(snap, {"node-a": f})
        findings, errors = run_checks(snap, {"node-a": f})
        assert errors == [] and [x.code for x in findings] == e["findings"]
    if "stale_as_other_backend" in e:
        check_kube_router_not_stale(s)
    if "as_hosts_backend" in e:
        check_hosts_backend_kept(s)
    if "no_rules_missing_with_nodeports" in e:
        snap = _snapshot([node], kp, kube_proxy_mode="", kube_proxy_config_found=True,
                         nodeport_services=({"namespace": "x", "name": "y", "ports": []},))
        snap = _with_shape(snap, {"node-a": f})
        (x,) = iptables.no_rules(snap, "node-a", f)
        assert x.data["missing_chains"] == e["no_rules_missing_with_nodeports"]
        assert x.data["backend"] == "legacy"


@dataclass
class _Diag:
    """What a repair step reads of a diagnosis."""

    findings: list[Any]
    facts: dict[str, Any]
    snapshot: Any = None


AWKS = [a for a in (["mawk"], ["gawk"], ["busybox", "awk"], ["original-awk"])
        if shutil.which(a[0])]


def check_kube_router_not_stale(s: dict[str, Any]) -> None:
    """The save as the backend kube-proxy does NOT use (kube-router's netpol written with the other
    iptables, as in kube-router#1069 and k0s#5328; SYNTHESISED: nft holds kube-proxy's hint chain and
    a nat KUBE-SERVICES): only kube-proxy's chains are stale, and the planned clean-up keeps every
    line of kube-router's (its network policy is live)."""
    from clusterfix_tui.core.fixes import get_step

    raw = text(s["file"])
    e = s["expect"]
    f = facts_with(
        legacy=P.parse_iptables_save(raw),
        nft_mangle=P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"),
        nft_nat=P.parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
                                      "-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"))
    (x,) = iptables.backend_conflict(ClusterSnapshot(), "node-a", f)
    assert x.data.other_backend == "legacy"
    assert x.data.stale_chains == e["stale_as_other_backend"]
    stale = [r for rules in x.data.stale_rules.values() for r in rules]
    assert stale and not any(re.search(r"KUBE-(ROUTER|POD-FW|NWPLCY)-", r) for r in stale)

    plan = get_step("iptables").plan(_Diag([x], {"node-a": f}, {"pods": []}))
    (cmd,) = [a.command for a in plan.actions if "-restore -T filter" in a.command]
    words = shlex.split(cmd)
    assert "awk" in words, cmd  # the old plan: grep -v of every KUBE-* line
    prog = words[words.index("awk") + 1]
    from clusterfix_tui.core.fixes.iptables import ANY_KUBE_AWK

    assert AWKS, "no awk to run the planned program with"
    router_lines = [ln for ln in raw.splitlines()
                    if re.search(r"KUBE-(ROUTER|POD-FW|NWPLCY)-", ln)]
    proxy_lines = [ln for ln in raw.splitlines() if ln not in router_lines and (
        re.match(r"^(:KUBE-|-A KUBE-)", ln) or re.search(r"-[jg] KUBE-", ln))]
    assert router_lines and proxy_lines
    for awk in AWKS:
        out = subprocess.run([*awk, prog], input=raw, capture_output=True, text=True,
                             check=True).stdout.splitlines()
        assert all(ln in out for ln in router_lines), (awk, set(router_lines) - set(out))
        assert not any(ln in out for ln in proxy_lines), awk
        assert "-A INPUT -i wt0 -j ACCEPT" in out  # the host's own rules stay
        # the precondition: kube-proxy lines left -> run; only kube-router's left -> done
        assert subprocess.run([*awk, ANY_KUBE_AWK], input=raw, text=True).returncode == 0
        assert subprocess.run([*awk, ANY_KUBE_AWK], input="\n".join(out) + "\n",
                              text=True).returncode == 1


def check_hosts_backend_kept(s: dict[str, Any]) -> None:
    """The save as the backend the node's `iptables` points at while kube-proxy writes the other
    (SYNTHESISED: nft holds kube-proxy's KUBE-IPTABLES-HINT and a nat KUBE-SERVICES; the
    alternative reads legacy): docker's chains live there, so pointing `iptables` at nft is only
    offered (opt-in), and kubelet, still writing legacy, keeps its KUBE-FIREWALL there."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import default_approved

    e = s["expect"]["as_hosts_backend"]
    f = facts_with(
        legacy=P.parse_iptables_save(text(s["file"])), host_iptables="legacy",
        alternatives=P.parse_alternatives("Name: iptables\nLink: /usr/sbin/iptables\n"
                                          "Status: manual\nBest: /usr/sbin/iptables-nft\n"
                                          "Value: /usr/sbin/iptables-legacy\n"),
        nft_mangle=P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"),
        nft_nat=P.parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
                                      "-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"))
    (x,) = iptables.backend_conflict(ClusterSnapshot(), "node-a", f)
    assert x.data.stale_chains == e["stale"] and x.data.host_iptables == "legacy"
    plan = get_step("iptables").plan(_Diag([x], {"node-a": f}, {"pods": []}))
    approved = set(default_approved(plan))
    alt = [a for a in plan.actions if "update-alternatives --set iptables" in a.command]
    assert len(alt) == 1 and alt[0].id not in approved, [a.id for a in plan.actions]
    assert any("DOCKER" in n and "opt-in" in n for n in plan.notes), plan.notes
    from clusterfix_tui.core.fixes.engine import check_rollbacks

    assert check_rollbacks(plan) == []
    # kubelet's KUBE-FIREWALL was the only stale chain: nothing of legacy's filter is removed
    assert not [a for a in plan.actions if "-restore -T filter" in a.command and a.id in approved]


def _with_shape(snap: ClusterSnapshot, facts: dict[str, NodeFacts]) -> ClusterSnapshot:
    from dataclasses import replace

    return replace(snap, shape=detect_shape(snap, facts))


def check_node_text(s: dict[str, Any]) -> None:
    obj = node_from_text(text(s["file"]))
    info = node_info(obj)
    e = s["expect"]
    assert node_distribution(info) == e["distribution"]
    if "node_args_first" in e:
        assert _node_args(info)[:3] == e["node_args_first"]
    if "flannel_annotations" in e:
        assert any(k.startswith("flannel.alpha.coreos.com/") for k in info.annotations) \
            == e["flannel_annotations"]
    if "cni_with_daemonsets" in e:
        dss = tuple(_ds(k.split("/")[0], k.split("/")[1], [v])
                    for k, v in e["cni_with_daemonsets"].items())
        obj["spec"] = {"podCIDR": "10.42.0.0/24"}
        snap = _snapshot([obj], dss)
        shape = detect_shape(snap, {})
        want_cni = e.get("cni") or next(iter(e["cni_with_daemonsets"].values()))
        assert shape.cni == want_cni, shape.evidence
        for code in e.get("not_checked", ()):
            assert why_not(shape, code, info.name) is not None, code
        if "flannel_deployment" in e:
            assert shape.flannel is not None
            assert (shape.flannel.deployment, shape.flannel.backend) == \
                (e["flannel_deployment"], e["flannel_backend"])
    if "vtep_v6" in e:
        from clusterfix_tui.core.checks.flannel import V4, V6

        assert V6.vtep_mac(info) == e["vtep_v6"] and V4.vtep_mac(info) == e["vtep_v4"]
        assert V6.public_ip(info) == e["public_ipv6"]


def check_node_spec(s: dict[str, Any]) -> None:
    frag = text(s["file"]).strip().rstrip(",")
    obj = json.loads("{" + frag + "}")
    obj["metadata"] = {"name": "vm-005"}
    info = node_info(obj)
    e = s["expect"]
    from clusterfix_tui.core.shape import family_word

    assert list(info.pod_cidrs) == e["pod_cidrs"]
    assert family_word(info.pod_cidrs) == e["family"]
    assert info.pod_cidr_for(6) == e["v6"] and info.pod_cidr_for(4) == e["pod_cidrs"][0]


def check_mirror(s: dict[str, Any]) -> None:
    k, v = text(s["file"]).strip().split(": ", 1)
    assert is_mirror_pod({"annotations": {k: v.strip('"')}}) == s["expect"]["mirror"]
    assert is_mirror_pod({"annotations": {}}) is False


def check_nft_text(s: dict[str, Any]) -> None:
    """An `nft list ruleset` excerpt: its JSON form (the DERIVED sample next to it, see its row)
    holds the same rules in the same order."""
    e = s["expect"]
    rs = P.parse_nft_json(text(e["json"]))
    if not e.get("listing", True):  # a hand-written ruleset file: not one rule a line
        assert len(rs.rules) == e["rules"]
        return
    lines, in_chain = [], False
    for ln in (x.strip() for x in text(s["file"]).splitlines()):
        if ln.startswith("chain "):
            in_chain = True
        elif ln == "}":
            in_chain = False
        elif in_chain and ln and not (ln.startswith("type ") and " hook " in ln):
            lines.append(ln)
    assert len(rs.rules) == len(lines) == e["rules"]


def check_nft_json(s: dict[str, Any]) -> None:
    """kube-proxy's own rules written natively by a newer iptables-nft (the real 1.8.10 ruleset),
    read by an older host iptables that calls the chain incompatible (SYNTHESISED: host iptables
    and the incompatible chain are set by the harness; kubernetes#112477's skew): never "foreign
    nft rules", never deleted. When kube-proxy's iptables is known to be the host's, the same
    rules can only have come from raw nft: foreign, deleted by handle (the lab's fault)."""
    from dataclasses import replace

    from clusterfix_tui.core.fixes import get_step

    e = s["expect"]
    rs = P.parse_nft_json(text(s["file"]))
    chain = e["incompatible_chain"]
    f = facts_with(nft_ruleset=rs, incompatible_chains={"filter": (chain,)},
                   iptables_version=P.parse_iptables_version(e["host_iptables"]),
                   nft_mangle=P.parse_iptables_save("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"))
    snap = ClusterSnapshot()
    (x,) = iptables.incompatible_chain(snap, "node-a", f)
    assert x.data.cause == e["cause"], x.title
    assert x.data.foreign_rules == []
    # the rules are named in the data and the evidence (rendered from the JSON: no `nft -a` text)
    assert len(x.data.rules) == e["unsure_rules"] and all("ct state" in r for r in x.data.rules)
    assert sum(ev.startswith("nft -a list table ip filter: ") for ev in x.evidence) == \
        e["unsure_rules"]
    plan = get_step("iptables").plan(_Diag([x], {"node-a": f}, {"pods": []}))
    assert not [a for a in plan.actions if "nft delete rule" in a.command]
    # the same rules with kube-proxy's iptables known to be the host's: raw nft, deleted
    from clusterfix_tui.core.snapshot import PodInfo

    pod = PodInfo("kube-system", "kube-proxy-a", "node-a", "Running", True, 0, None, None, None,
                  None, "kube-proxy", None, log_tail=(f"I1201 Using {e['host_iptables']}",))
    kp = replace(snap, kube_proxy_pods={"node-a": [pod]})
    (y,) = iptables.incompatible_chain(kp, "node-a", f)
    assert y.data.cause == "foreign-nft-rule"
    assert len(y.data.foreign_rules) == e["unsure_rules"]


def check_nft_json_host(s: dict[str, Any]) -> None:
    """Another program's native nft tables on a cluster node, with its iptables-nft tables (the
    *filter/*mangle excerpt of the same node) and the node's address on its uplink
    (SYNTHESISED from the paste's `ip -br addr` and `kubectl get nodes -o wide`): the drops that
    only match the program's own interface are no cluster finding, and nothing is planned."""
    from clusterfix_tui.core.checks import firewall

    e = s["expect"]
    rs = P.parse_nft_json(text(s["file"]))
    assert not rs.errors and len(rs.chains) == e["chains"]
    save = P.parse_iptables_save(text(e["with"]))
    ip = e["node_ip"]
    f = NodeFacts(node="pi", complete=True, nft_ruleset=rs,
                  nft_filter=P.IptablesSave({"filter": save.tables["filter"]}),
                  nft_mangle=P.IptablesSave({"mangle": save.tables["mangle"]}),
                  addrs=[{"ifname": ifn, "addr_info": [{"family": "inet", "local": a,
                                                        "prefixlen": n}]}
                         for ifn, a, n in e["addrs"]])
    node = {"metadata": {"name": "pi", "annotations": {
                "k3s.io/node-args": '["server"]',
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/public-ip": ip}},
            "spec": {"podCIDR": e["pod_cidr"], "podCIDRs": [e["pod_cidr"]]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}
    snap = _with_shape(_snapshot([node], ()), {"pi": f})
    assert (snap.shape.distribution, snap.shape.cni) == ("k3s", "flannel")
    got = [x.code for x in firewall.check(snap, {"pi": f})] + \
        [x.code for x in iptables.forward_drop(snap, "pi", f)]
    assert got == e["findings"]


def check_route_text(s: dict[str, Any]) -> None:
    """A routing table in `ip route` text where `ip -j route show` was asked: what iproute2
    4.14-4.16 (Ubuntu 18.04: 4.15) prints, rc 0, since it takes -j but has no JSON for routes
    (SYNTHESISED: the harness gives the text as that section's answer; a flannel peer node in
    the snapshot). The table was not read: the flannel route check says so and finds nothing,
    never "no route to the peer" (old code: FLANNEL_MISSING_ROUTE, a flannel restart planned)."""
    from clusterfix_tui.core.facts import parse_facts

    e = s["expect"]
    n = "N0NCE"
    out = (f"@@CFX {n} BEGIN ip_route\n{text(s['file'])}\n@@CFX {n} ERR ip_route\n\n"
           f"@@CFX {n} END ip_route rc=0\n")
    f = parse_facts("pi", out, n)
    ann = {"k3s.io/node-args": '["server"]', "flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": name, "annotations": dict(ann, **{
                 "flannel.alpha.coreos.com/public-ip": ip,
                 "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"%s"}' % mac})},
              "spec": {"podCIDR": cidr}, "status": {}}
             for name, cidr, ip, mac in (("pi", "10.42.0.0/24", "192.168.1.105", "aa:bb:cc:00:00:01"),
                                         ("peer", "10.42.1.0/24", "192.168.1.106", "aa:bb:cc:00:00:02"))]
    snap = _with_shape(_snapshot(nodes, ()), {"pi": f})
    assert snap.shape.flannel_vxlan
    findings, errors = run_checks(snap, {"pi": f})
    assert errors == [] and not [x.title for x in findings if x.code in e["no_findings"]]
    assert f.routes == () and "ip_route" in f.unread_sections()
    why = why_not(snap.shape, "FLANNEL_MISSING_ROUTE", "pi")
    assert why is not None and e["why_contains"] in why, why


def _route_facts(node: str, answer: str) -> NodeFacts:
    from clusterfix_tui.core.facts import parse_facts

    n = "N0NCE"
    return parse_facts(node, f"@@CFX {n} BEGIN ip_route\n{answer}\n@@CFX {n} ERR ip_route\n\n"
                             f"@@CFX {n} END ip_route rc=0\n", n)


def check_route_json_bare_type(s: dict[str, Any]) -> None:
    """`ip -j route show` of iproute2 4.17-4.20 (Debian 10: 4.20) on a table with non-unicast
    routes: each route's type printed as a bare string (`{"blackhole",...`), not JSON
    (SYNTHESISED: the text as a flannel node's ip_route answer, rc 0; peers whose podCIDRs are
    the routes' destinations). Read as iproute2 5.0+ prints it ("type"): the finding names the
    routes flannel's route would replace, and the plan saves them and its rollback puts them
    back (old code: read as no routes at all, so the replace overwrote them unsaved and the
    rollback could not restore them). Text still not JSON after that: the table is not read
    (old code: FLANNEL_MISSING_ROUTE for every peer, a repair planned)."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks

    e = s["expect"]
    ann = {"flannel.alpha.coreos.com/backend-type": "vxlan"}
    peers = e["peers"]
    nodes = [{"metadata": {"name": name, "annotations": dict(ann, **{
                 "flannel.alpha.coreos.com/public-ip": ip,
                 "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"%s"}' % mac})},
              "spec": {"podCIDR": cidr}, "status": {"addresses": [{"type": "InternalIP",
                                                                   "address": ip}]}}
             for name, cidr, ip, mac in [("node-a", "10.244.0.0/24", "10.0.0.11",
                                          "aa:bb:cc:00:00:01")] + [tuple(p) for p in peers]]
    ds = (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)
    f = _route_facts("node-a", text(s["file"]))
    assert not [x for x in f.parse_errors if "ip_route" in x] and "ip_route" not in f.unread_sections()
    assert [(r.get("type"), r.get("dst")) for r in f.routes] == [tuple(x) for x in e["routes"]]
    snap = _with_shape(_snapshot(nodes, ds), {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == []
    (x,) = [x for x in findings if x.code == "FLANNEL_MISSING_ROUTE"]
    assert {m["peer_node"]: m["actual"] for m in x.data.missing} == e["actual"]
    plan = get_step("cni_bridge").plan(_Diag([x], {"node-a": f}, snap))
    assert check_rollbacks(plan) == []
    acts = [a for a in plan.actions if "ip route replace" in a.command]
    assert len(acts) == len(peers)
    for a in acts:
        assert "ip route save to exact" in a.command and "ip route restore <" in a.rollback.command
        assert a.change["before"] in {r for v in e["actual"].values() for r in v}
    # a text that is still not JSON: not read, nothing found, and said why
    cut = text(s["file"]).rstrip().removesuffix("]").rstrip().removesuffix("}")
    f = _route_facts("node-a", cut)
    assert f.routes == () and "invalid JSON" in f.unread_sections()["ip_route"]
    snap = _with_shape(_snapshot(nodes, ds), {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and not [x for x in findings if x.code == "FLANNEL_MISSING_ROUTE"]
    why = why_not(snap.shape, "FLANNEL_MISSING_ROUTE", "node-a")
    assert why is not None and "invalid JSON" in why, why


def cis_node(s: dict[str, Any]) -> tuple[ClusterSnapshot, NodeFacts]:
    """The flannel node of the CIS sample (SYNTHESISED: node-a 10.0.0.11 on eth0 and a peer, pods
    10.244.0.0/16, iptables 1.8.9 nf_tables only) with its DERIVED iptables-nft-save and nft -j."""
    e = s["expect"]
    ip = "10.0.0.11"
    f = facts_with(nft_filter=P.parse_iptables_save(text(e["save"])), legacy=None,
                   nft_ruleset=P.parse_nft_json(text(e["json"])),
                   iptables_version=P.parse_iptables_version("iptables v1.8.9 (nf_tables)"),
                   binaries={b: f"/usr/sbin/{b}" for b in (
                       "iptables", "iptables-save", "iptables-nft", "iptables-nft-save", "nft")},
                   subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip,
                                                            "prefixlen": 24}]}])
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "10.244.0.0/24", ip), ("node-b", "10.244.1.0/24", "10.0.0.12"))]
    snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                       {"node-a": f})
    return snap, f


def check_cis_commands(s: dict[str, Any]) -> None:
    """The quoted commands are nft commands on `table ip filter` only (what the DERIVED rows ran)."""
    lines = [ln for ln in text(s["file"]).splitlines() if ln.strip()]
    assert lines and all(ln.startswith("nft add ") and " ip filter " in ln for ln in lines)


def check_cis_save(s: dict[str, Any]) -> None:
    """iptables-nft-save (1.8.9) of a filter table holding native base chains: its own chains
    only, and the comment saying the rest is not listed (no parse error, not 'incompatible')."""
    save = P.parse_iptables_save(text(s["file"]))
    assert sorted(save.tables) == ["filter"] and not save.errors and not save.incompatible_tables
    assert any("contains incompatible base-chains" in c for c in save.comments)
    assert sorted(save.table("filter").chains) == s["expect"]["chains"]


def check_cis_ruleset(s: dict[str, Any]) -> None:
    """A CIS hardening script's native base chains added to iptables-nft's `table ip filter`
    (input and forward policy drop, next to iptables' INPUT/FORWARD) on a flannel node: the
    kernel runs every base chain of a hook, so FLANNEL-FWD's accepts in FORWARD do not save pod
    traffic from `forward`'s policy drop, nor kubelet/VXLAN/NodePorts from `input`'s. Found, and
    the narrow accepts go into those native chains (old code: nothing found: base chains in a
    table named filter were left to iptables-nft-save, which does not list them)."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks, default_approved

    e = s["expect"]
    snap, f = cis_node(s)
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and sorted(x.code for x in findings) == e["findings"], \
        [(x.code, x.evidence) for x in findings]
    (fw,) = [x for x in findings if x.code == "FIREWALL_POLICY_DROP"]
    assert sorted(fw.data.flows) == e["flows"]
    assert any("chain input policy DROP" in ev for ev in fw.evidence), fw.evidence
    for step, chain in (("host_network", "input"), ("iptables", "forward")):
        plan = get_step(step).plan(_Diag(findings, {"node-a": f}, snap))
        assert check_rollbacks(plan) == []
        approved = set(default_approved(plan))
        inserts = [a.command for a in plan.actions if a.id in approved
                   and "nft insert rule" in a.command]
        assert inserts and all(f"nft insert rule ip filter {chain} " in c for c in inserts), inserts
        # nothing in iptables' own chains (iptables-nft's FORWARD accepts already)
        assert not [a for a in plan.actions if a.id in approved
                    and re.search(r"iptables(-nft)? .*-I (INPUT|FORWARD)", a.command)]


def check_lsmod_ipvs(s: dict[str, Any]) -> None:
    """A node whose kube-proxy programs IPVS (ip_vs, ip_vs_rr, xt_ipvs, the dummy kube-ipvs0, the
    KUBE-* ipsets' hash types) without ip_vs_wrr/ip_vs_sh: kube-proxy >= 1.27 checks no modules
    (kubernetes#114669) and the kernel loads the scheduler in use on demand. With IPVS virtual
    servers in /proc/net/ip_vs (SYNTHESISED: the two-line answer of a node with the default
    Service) nothing is missing and nothing is planned (old code: IPVS_MODULES_MISSING and a
    `modprobe -a ip_vs_wrr ip_vs_sh`); with /proc/net/ip_vs missing (ip_vs not loaded) the
    finding stays."""
    from clusterfix_tui.core.checks import host
    from clusterfix_tui.core.facts import parse_facts

    e = s["expect"]
    n = "N0NCE"

    def facts(ip_vs_rc: int, ip_vs_out: str) -> NodeFacts:
        secs = {"proc_modules": (0, text(s["file"]), ""), "lib_modules": (0, "/lib/modules/x", ""),
                "kube_proxy_mode": (0, "ipvs", ""),
                "ip_vs": (ip_vs_rc, ip_vs_out, "" if ip_vs_rc == 0 else
                          "cat: /proc/net/ip_vs: No such file or directory")}
        out = "".join(f"@@CFX {n} BEGIN {k}\n{o}\n@@CFX {n} ERR {k}\n{err}\n@@CFX {n} END {k} rc={rc}\n"
                      for k, (rc, o, err) in secs.items())
        return parse_facts("node-a", out, n)

    kp = (_ds("kube-system", "kube-proxy", ["kube-proxy"]),)
    node = {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.244.0.0/24"}}
    for f, want in ((facts(0, e["ip_vs"]), e["findings"]),
                    (facts(1, ""), e["without_ip_vs_findings"])):
        assert f.modules.has("ip_vs") and f.modules.has("ip_vs_rr")
        snap = _with_shape(_snapshot([node], kp, kube_proxy_mode="ipvs",
                                     kube_proxy_config_found=True), {"node-a": f})
        got = [x for x in host.check(snap, {"node-a": f}) if x.code == "IPVS_MODULES_MISSING"]
        assert [x.data.missing for x in got] == want, [x.evidence for x in got]


def check_nft_json_0_9_0(s: dict[str, Any]) -> None:
    """`nft -j list ruleset` in nftables 0.9.0's form (Debian 10): payloads named by "name",
    meta keys as bare strings, no "op" for ==. Read as 0.9.1+ prints it. As a k3s flannel node's
    ruleset (SYNTHESISED: its address 10.20.1.1 on vxbackend, a peer): `iifname "vxbackend"
    accept` takes every VXLAN packet from the peers, so only kubelet and NodePorts (which pods
    also reach through cni0) are found (old code: the old forms matched nothing, so VXLAN too,
    and a redundant VXLAN accept was planned)."""
    from clusterfix_tui.core.checks import firewall
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import default_approved

    e = s["expect"]
    rs = P.parse_nft_json(text(s["file"]))
    assert not rs.errors and len(rs.rules) == e["rules"]
    by = {(r.table, r.handle): r for r in rs.rules}
    assert by[("filter", 7)].expr[0] == {"match": {"left": {"meta": {"key": "iifname"}},
                                                   "right": "vxbackend"}}
    assert [P.nft_rule_statement(by[("filter", h)]) for h in (6, 7, 10)] == e["rendered"]
    ip = "10.20.1.1"
    f = facts_with(nft_ruleset=rs, subnet_env={"FLANNEL_NETWORK": "10.42.0.0/16"},
                   addrs=[{"ifname": "vxbackend", "addr_info": [{"family": "inet", "local": ip,
                                                                 "prefixlen": 24}]}])
    ann = {"k3s.io/node-args": '["server"]', "flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": n, "annotations": dict(
                  ann, **{"flannel.alpha.coreos.com/public-ip": a})},
              "spec": {"podCIDR": c}, "status": {"addresses": [{"type": "InternalIP",
                                                                "address": a}]}}
             for n, c, a in (("node-a", "10.42.0.0/24", ip), ("node-b", "10.42.1.0/24", "10.20.1.2"))]
    snap = _with_shape(_snapshot(nodes, ()), {"node-a": f})
    (x,) = firewall.check(snap, {"node-a": f})
    assert x.code == "FIREWALL_POLICY_DROP" and sorted(x.data.flows) == e["flows"], x.evidence
    plan = get_step("host_network").plan(_Diag([x], {"node-a": f}, snap))
    approved = set(default_approved(plan))
    assert not [a for a in plan.actions if a.id in approved and "8472" in a.command]


def check_ip6tables_save_ufw6(s: dict[str, Any]) -> None:
    """ufw's IPv6 rules (as Alpine's ip6tables service loads them) on a dual-stack flannel node
    (SYNTHESISED: two nodes, 10.244.0.0/16 + fd00:10:244::/56, an open IPv4 filter table,
    iptables 1.8.10 nf_tables). ufw6's `-m rt --rt-type 0 -j DROP` (drop packets with an RH0
    routing header) matches no cluster flow: FORWARD policy DROP is the finding (FORWARD_DROP,
    IPv6) and nothing is planned in ufw's chains (old code: FIREWALL_REJECT blaming the RH0 rule
    for all forwarded IPv6 pod traffic, with an opt-in deleting ufw's RH0 protection)."""
    from clusterfix_tui.core.checks import firewall_path as fp
    from clusterfix_tui.core.fixes import get_step

    e = s["expect"]
    v6 = P.parse_iptables_save(text(s["file"]))
    assert not v6.errors and sorted(v6.tables) == ["filter"]
    v4 = P.parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                               ":OUTPUT ACCEPT [0:0]\nCOMMIT\n")
    f = facts_with(nft_filter=v4, ip6_nft_filter=v6,
                   iptables_version=P.parse_iptables_version("iptables v1.8.10 (nf_tables)"),
                   binaries={b: f"/sbin/{b}" for b in (
                       "iptables", "iptables-save", "iptables-nft", "iptables-nft-save",
                       "ip6tables", "ip6tables-save", "ip6tables-nft-save")},
                   subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16",
                               "FLANNEL_IPV6_NETWORK": "fd00:10:244::/56"},
                   addrs=[{"ifname": "eth0", "addr_info": [
                       {"family": "inet", "local": "10.0.0.11", "prefixlen": 24},
                       {"family": "inet6", "local": "fd00::11", "prefixlen": 64}]}])
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c4, "podCIDRs": [c4, c6]},
              "status": {"addresses": [{"type": "InternalIP", "address": a},
                                       {"type": "InternalIP", "address": a6}]}}
             for n, c4, c6, a, a6 in (
                 ("node-a", "10.244.0.0/24", "fd00:10:244::/64", "10.0.0.11", "fd00::11"),
                 ("node-b", "10.244.1.0/24", "fd00:10:244:1::/64", "10.0.0.12", "fd00::12"))]
    snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                       {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and sorted(x.code for x in findings) == e["findings"], \
        [(x.code, x.evidence) for x in findings]
    for step in ("host_network", "iptables"):
        plan = get_step(step).plan(_Diag(findings, {"node-a": f}, snap))
        assert not [a.id for a in plan.actions if "ufw6" in a.id or "ufw6" in a.command]
    fwd = fp.Flow("pods-forward", "forward", "ip6", "pods", None, None, ("fd00:10:244::/56",),
                  None, ("cni0",), ("eth0",))
    for spec in ("-m rt --rt-type 0 -j DROP", "-m rt ! --rt-type 0 -j DROP"):
        words = tuple(spec.split())
        assert fp.match_iptables_rule(P.Rule("filter", "c", spec, "DROP", words), fwd) == fp.NONE


def check_iptables_save_single(s: dict[str, Any]) -> None:
    check_single_iptables_plan(s, text(s["file"]), "host_network")


def check_nft_default_firewall(s: dict[str, Any], tmp: Path) -> None:
    """A distribution's default nftables firewall (input and forward policy drop) on a k3s
    flannel node that has nft but no iptables on the PATH (SYNTHESISED: the node, a peer, the
    node's address): the drops are found, the narrow accepts go into its own chains, and the
    iptables step's backup, run with no iptables binary on the PATH, succeeds (it called
    iptables-legacy-save unconditionally: rc 127, the step stopped)."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks, default_approved

    e = s["expect"]
    rs = P.parse_nft_json(text(s["file"]))
    ip = "10.0.0.11"
    f = facts_with(nft_ruleset=rs, subnet_env={"FLANNEL_NETWORK": e["pod_network"]},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip,
                                                            "prefixlen": 24}]}])
    ann = {"k3s.io/node-args": '["server"]', "flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": n, "annotations": dict(
                  ann, **{"flannel.alpha.coreos.com/public-ip": a})},
              "spec": {"podCIDR": c}, "status": {"addresses": [{"type": "InternalIP",
                                                                "address": a}]}}
             for n, c, a in (("node-a", "10.42.0.0/24", ip), ("node-b", "10.42.1.0/24", "10.0.0.12"))]
    snap = _with_shape(_snapshot(nodes, ()), {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and sorted(x.code for x in findings) == e["findings"]
    plan = get_step("iptables").plan(_Diag(findings, {"node-a": f}, snap))
    assert check_rollbacks(plan) == []
    approved = set(default_approved(plan))
    inserts = [a.command for a in plan.actions if a.id in approved and "nft insert rule" in a.command]
    assert len(inserts) == 2 and all("inet filter forward" in c for c in inserts)
    backup = plan.actions[0]
    assert backup.id in approved and "mkdir" in backup.command
    bdir = re.search(r"mkdir -p -m 700 (\S+)", backup.command).group(1)
    cmd = backup.command.replace(bdir, shlex.quote(str(tmp / "b")))
    run = subprocess.run(["sh", "-c", cmd], env={"PATH": "/nonexistent:/bin:/usr/bin"},
                         capture_output=True, text=True)
    assert run.returncode == 0, (run.returncode, run.stderr)


def check_ip6tables_save_single(s: dict[str, Any]) -> None:
    """A dual-stack node whose ip6tables has no -legacy/-nft variants (1.4.21: CentOS 7): its one
    `ip6tables-save` is the IPv6 view (old code: no IPv6 view at all, nothing found), and every
    planned ip6tables command runs the plain `ip6tables` with the wait flag 1.4.21 takes."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks

    e = s["expect"]
    v4 = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    drop = text(s["file"]).replace(":FORWARD ACCEPT", ":FORWARD DROP").replace(
        "-A FORWARD -j REJECT --reject-with icmp6-adm-prohibited\n", "")
    for save, want, step in ((text(s["file"]), e["findings"], "host_network"),
                             (drop, e["with_policy_drop"], "iptables")):
        f = facts_with(plain_save=P.parse_iptables_save(v4),
                       plain_save6=P.parse_iptables_save(save),
                       iptables_version=P.parse_iptables_version("iptables v1.4.21"),
                       binaries={b: f"/sbin/{b}" for b in ("iptables", "iptables-save",
                                                            "ip6tables", "ip6tables-save")},
                       subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16",
                                   "FLANNEL_IPV6_NETWORK": "fd00:10:244::/56"},
                       addrs=[{"ifname": "eth0", "addr_info": [
                           {"family": "inet", "local": "10.0.0.11", "prefixlen": 24},
                           {"family": "inet6", "local": "fd00::11", "prefixlen": 64}]}])
        nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c4, "podCIDRs": [c4, c6]},
                  "status": {"addresses": [{"type": "InternalIP", "address": a},
                                           {"type": "InternalIP", "address": a6}]}}
                 for n, c4, c6, a, a6 in (
                     ("node-a", "10.244.0.0/24", "fd00:10:244::/64", "10.0.0.11", "fd00::11"),
                     ("node-b", "10.244.1.0/24", "fd00:10:244:1::/64", "10.0.0.12", "fd00::12"))]
        snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                           {"node-a": f})
        assert snap.shape.nodes["node-a"].iptables == "single"
        findings, errors = run_checks(snap, {"node-a": f})
        assert errors == [] and sorted(x.code for x in findings) == want
        assert all("ip6tables-save: " in " ".join(x.evidence) for x in findings)
        plan = get_step(step).plan(_Diag(findings, {"node-a": f}, snap))
        cmds = [c for a in plan.actions for c in (a.command, a.rollback.command if a.rollback
                                                   else "")]
        ipt = [c for c in cmds if c.startswith("ip6tables")]
        assert ipt and check_rollbacks(plan) == []
        variant = re.compile(r"(^|[\s;&|({])ip6?tables-(legacy|nft)(-save|-restore)?(\s|$)")
        assert not [c for c in cmds if variant.search(c) or "-w 5" in c]
        assert all(c.startswith(e["tool"]) for c in ipt if "-restore" not in c)


def check_nft_json_kube_proxy(s: dict[str, Any]) -> None:
    """kube-proxy's own nftables table (nftables mode) on a k3s flannel node: its rejects and
    drops (cluster-ips-check: invalid ports of ClusterIPs, unallocated ClusterIPs) are kube-proxy's
    by design, never a firewall finding, and no step plans anything in its table (kube-proxy
    rewrites it; old code: FIREWALL_REJECT, accepts inserted into kube-proxy's chains)."""
    from clusterfix_tui.core.fixes import get_step

    e = s["expect"]
    rs = P.parse_nft_json(text(s["file"]))
    assert not rs.errors and ("ip", "kube-proxy") in rs.tables
    ip = "10.34.4.246"
    f = facts_with(nft_ruleset=rs, subnet_env={"FLANNEL_NETWORK": "10.42.0.0/16",
                                               "FLANNEL_SUBNET": "10.42.4.1/24"},
                   addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip,
                                                            "prefixlen": 24}]}])
    ann = {"k3s.io/node-args": '["server","--kube-proxy-arg","proxy-mode=nftables"]',
           "flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": n, "annotations": dict(
                  ann, **{"flannel.alpha.coreos.com/public-ip": a})},
              "spec": {"podCIDR": c, "podCIDRs": [c]},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "10.42.4.0/24", ip), ("peer", "10.42.2.0/24", "10.34.4.142"))]
    snap = _with_shape(_snapshot(nodes, ()), {"node-a": f})
    assert (snap.shape.distribution, snap.shape.cni) == ("k3s", "flannel")
    assert snap.shape.proxy_mode("node-a") == e["proxy_mode"]
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and sorted(x.code for x in findings) == e["findings"], \
        [(x.code, x.evidence) for x in findings]
    for step in ("host_network", "iptables"):
        plan = get_step(step).plan(_Diag(findings, {"node-a": f}, snap))
        assert not [a.command for a in plan.actions if e["no_action_in"] in a.command]


def iptables_s_to_save(raw: str) -> str:
    """`iptables -S` (-P policies, -N chains, -A rules) as the *filter table of an iptables-save."""
    pol: dict[str, str] = {}
    chains: list[str] = []
    rules: list[str] = []
    for line in raw.splitlines():
        words = line.split()
        if line.startswith("-P ") and len(words) == 3:
            pol[words[1]] = words[2]
        elif line.startswith("-N "):
            chains.append(words[1])
        elif line.startswith("-A "):
            rules.append(line)
    return "\n".join(["*filter", *(f":{c} {pol.get(c, 'ACCEPT')} [0:0]"
                                   for c in ("INPUT", "FORWARD", "OUTPUT")),
                      *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT", ""])


def check_iptables_s_ufw(s: dict[str, Any]) -> None:
    """A ufw host's `iptables -S` (iptables 1.8.10 nf_tables, Ubuntu 24.04) as a flannel node's
    nft backend (SYNTHESISED: the node, a peer, its address; an empty legacy backend). ufw's
    INPUT policy DROP drops VXLAN, kubelet and NodePorts: the finding names the policy, and the
    opt-in is the policy; ufw-after-input's `-m addrtype --dst-type BROADCAST -j
    ufw-skip-to-policy-input` matches no unicast cluster flow (old code: read as matching some,
    so FIREWALL_REJECT blamed `-A ufw-skip-to-policy-input -j DROP` and offered to delete it,
    which opens nothing: the policy still drops). With the cluster's ports allowed the ufw way
    and routed traffic allowed (SYNTHESISED: `ufw allow` lines, FORWARD policy ACCEPT): nothing."""
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.fixes.engine import check_rollbacks

    e = s["expect"]
    ip = "10.0.0.11"
    nodes = [{"metadata": {"name": n}, "spec": {"podCIDR": c},
              "status": {"addresses": [{"type": "InternalIP", "address": a}]}}
             for n, c, a in (("node-a", "10.244.0.0/24", ip), ("node-b", "10.244.1.0/24", "10.0.0.12"))]
    allowed = (text(s["file"]).replace("-P FORWARD DROP", "-P FORWARD ACCEPT")
               + "".join(f"-A ufw-user-input {r} -j ACCEPT\n" for r in e["allow"]))
    for raw, want in ((text(s["file"]), e["findings"]), (allowed, e["allowed_findings"])):
        save = P.parse_iptables_save(iptables_s_to_save(raw))
        assert not save.errors
        f = facts_with(nft_filter=save, legacy=P.parse_iptables_save(""),
                       iptables_version=P.parse_iptables_version("iptables v1.8.10 (nf_tables)"),
                       binaries={b: f"/usr/sbin/{b}" for b in (
                           "iptables", "iptables-save", "iptables-legacy", "iptables-legacy-save",
                           "iptables-nft", "iptables-nft-save")},
                       subnet_env={"FLANNEL_NETWORK": "10.244.0.0/16"},
                       addrs=[{"ifname": "eth0", "addr_info": [{"family": "inet", "local": ip,
                                                                "prefixlen": 24}]}])
        snap = _with_shape(_snapshot(nodes, (_ds("kube-flannel", "kube-flannel-ds", ["flannel"]),)),
                           {"node-a": f})
        findings, errors = run_checks(snap, {"node-a": f})
        assert errors == [] and sorted(x.code for x in findings) == want, \
            [(x.code, x.evidence) for x in findings]
        plan = get_step("host_network").plan(_Diag(findings, {"node-a": f}, snap))
        assert check_rollbacks(plan) == []
        cmds = " ".join(a.command for a in plan.actions)
        assert "ufw-" not in cmds, cmds  # nothing planned in ufw's chains
        if want:
            (x,) = [x for x in findings if x.code.startswith("FIREWALL_")]
            assert e["evidence"] in " ".join(x.evidence), x.evidence
            assert sorted(x.data.flows) == e["flows"]


@pytest.mark.parametrize("name", sorted(n for n, s in BY_FILE.items()
                                        if s["kind"] == "nft-json-default-firewall"))
def test_default_nft_firewall_plan(name, tmp_path):
    check_nft_default_firewall(BY_FILE[name], tmp_path)


CHECKERS = {"manifests": check_manifests, "iptables-S-legacy-warning-r6": lambda s: __import__("tests.test_realworld_r6", fromlist=["check_legacy_warning_r6"]).check_legacy_warning_r6(s), "route-r5": lambda s: __import__("tests.test_realworld_r5", fromlist=["check_route_r5"]).check_route_r5(s), "docker-S-r5": lambda s: __import__("tests.test_realworld_r5", fromlist=["check_docker_s_r5"]).check_docker_s_r5(s), "weave-save-r5": lambda s: __import__("tests.test_realworld_r5", fromlist=["check_weave_save_r5"]).check_weave_save_r5(s), "ip6tables-save-ufw6": check_ip6tables_save_ufw6, "nft-json-0.9.0": check_nft_json_0_9_0, "lsmod-ipvs": check_lsmod_ipvs, "nft-commands": check_cis_commands, "iptables-nft-save-derived": check_cis_save, "nft-json-cis": check_cis_ruleset, "ip-route-json-bare-type": check_route_json_bare_type, "iptables-S-ufw": check_iptables_s_ufw, "ip6tables-save-single": check_ip6tables_save_single, "nft-json-kube-proxy": check_nft_json_kube_proxy, "nft-json-default-firewall": lambda s: None, "blocklist-r4": lambda s: __import__("tests.test_realworld_r4", fromlist=["check_blocklist"]).check_blocklist(s), "docker-nft-r4": lambda s: __import__("tests.test_realworld_r4", fromlist=["check_docker_nft"]).check_docker_nft(s), "iptables-save-single": check_iptables_save_single, "ip-route-text": check_route_text, "nft-json-host": check_nft_json_host, "nft-text": check_nft_text, "nft-json": check_nft_json, "net-conf": check_net_conf,
            "flannel-backend": check_flannel_backend, "subnet-env": check_subnet_env,
            "kube-proxy-config": check_kube_proxy_config, "cni-conf": check_cni_conf,
            "iptables-rules": check_iptables_rules, "iptables-save": check_iptables_save,
            "node-text": check_node_text, "node-spec": check_node_spec,
            "mirror-annotation": check_mirror,
            "pod-init-api": lambda s: __import__("tests.test_realworld_api",
                                                 fromlist=["test_init_container_crashloop_is_the_pods_crash"]
                                                 ).test_init_container_crashloop_is_the_pods_crash(),
            "pod-api": lambda s: __import__("tests.test_realworld_api",
                                            fromlist=["check_pod_api"]).check_pod_api(s),
            "describe-node-api": lambda s: __import__("tests.test_realworld_api",
                                                      fromlist=["check_describe_node_api"]).check_describe_node_api(s),
            "conntrack-S": lambda s: __import__("tests.test_conntrack_realworld",
                                                fromlist=["check_conntrack_s"]).check_conntrack_s(s),
            # realapi2
            "node-conditions-api2": lambda s: __import__(
                "tests.test_realworld_api2", fromlist=["check_node_conditions"]).check_node_conditions(s),
            "kubeconfig-api2": lambda s: __import__(
                "tests.test_realworld_api2", fromlist=["check_kubeconfig_api2_tmp"]).check_kubeconfig_api2_tmp(s)}


@pytest.mark.parametrize("name", sorted(BY_FILE))
def test_sample_gives_its_expected_result(name):
    s = BY_FILE[name]
    CHECKERS[s["kind"]](s)


@pytest.mark.parametrize("name", sorted(BY_FILE))
def test_no_sample_raises_in_parsers_or_checks(name):
    """Every sample through every parser that could receive it, then all the checks: nothing
    raises, whatever the text is."""
    raw = text(name)
    save = P.parse_iptables_save(raw)
    P.parse_json_list(raw)
    P.parse_cni_conf(raw)
    P.parse_env_file(raw)
    P.parse_iptables_version(raw)
    parse_net_conf(raw)
    parse_kube_proxy_mode({"data": {"config.conf": raw}})
    obj = node_from_text(raw)
    conf, _ = P.parse_cni_conf(raw)
    f = facts_with(legacy=save, plain_save=save, subnet_env=P.parse_env_file(raw),
                   cni_files={"/etc/cni/net.d/00-x.conf": raw},
                   cni_configs={"/etc/cni/net.d/00-x.conf": conf})
    snap = _snapshot([obj], (_ds("kube-system", "kube-proxy", ["kube-proxy"]),))
    snap = _with_shape(snap, {obj["metadata"]["name"]: f})
    findings, errors = run_checks(snap, {obj["metadata"]["name"]: f})
    assert errors == []


# ufw's ufw-not-local chain as `nft -j` gives it (nftables v1.0.6, from the nft listing of the
# ufw sample's source, search corpus file id 67596634005, `nft list ruleset`: table ip filter)
UFW_NOT_LOCAL_NFT = [
    '[{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, '
    '"right": "local"}}, {"counter": {"packets": 5948, "bytes": 319771}}, {"return": null}]',
    '[{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, '
    '"right": "multicast"}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]',
    '[{"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, '
    '"right": "broadcast"}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]',
]


def test_destination_address_types_against_unicast_flows():
    """iptables `-m addrtype --dst-type` and nft `fib daddr type` (ufw's ufw-not-local and
    ufw-after-input): every cluster flow is unicast, to the node's own address (input) or through
    it (forward). Old code: BROADCAST/MULTICAST and every nft fib test were PARTIAL (a DROP
    behind them was blamed for dropping cluster traffic)."""
    from clusterfix_tui.core.checks import firewall_path as fp

    kubelet = fp.Flow("kubelet", "input", "ip", "kubelet", "tcp", (10250, 10250),
                      ("10.0.0.12/32",), ("10.0.0.11/32",), ("eth0",), None)
    fwd = fp.Flow("pods-forward", "forward", "ip", "pods", None, None, ("10.244.0.0/16",),
                  ("10.0.0.0/24",), ("cni0",), ("eth0",))
    out = fp.Flow("vxlan-out", "output", "ip", "vxlan", "udp", (8472, 8472), ("10.0.0.11/32",),
                  ("10.0.0.12/32",), None, ("eth0",))

    def ipt(args: str, flow: Any) -> int:
        words = tuple(shlex.split(args))
        return fp.match_iptables_rule(P.Rule("filter", "c", f"-A c {args}", words[-1], words), flow)

    for t in ("BROADCAST", "MULTICAST", "BROADCAST,MULTICAST"):
        assert [ipt(f"-m addrtype --dst-type {t} -j x", fl) for fl in (kubelet, fwd, out)] == \
            [fp.NONE] * 3
        assert ipt(f"-m addrtype ! --dst-type {t} -j DROP", kubelet) == fp.FULL
    assert ipt("-m addrtype --dst-type LOCAL -j RETURN", kubelet) == fp.FULL
    assert ipt("-m addrtype --dst-type LOCAL -j RETURN", fwd) == fp.NONE
    assert ipt("-m addrtype --dst-type LOCAL -j RETURN", out) == fp.PARTIAL
    assert ipt("-m addrtype --dst-type UNICAST -j x", fwd) == fp.PARTIAL
    # looked up on one interface only: not understood, never NONE
    assert ipt("-m addrtype ! --dst-type LOCAL --limit-iface-in -j DROP", kubelet) == fp.PARTIAL
    rules = [P.NftRule("ip", "filter", "ufw-not-local", None, tuple(json.loads(x)))
             for x in UFW_NOT_LOCAL_NFT]
    assert [fp.match_nft_rule(r, kubelet) for r in rules] == [fp.FULL, fp.NONE, fp.NONE]
    assert [fp.match_nft_rule(r, fwd) for r in rules] == [fp.NONE, fp.NONE, fp.NONE]
    other = P.NftRule("ip", "t", "c", None, ({"match": {"op": "==", "left": {"fib": {
        "result": "type", "flags": ["daddr", "iif"]}}, "right": "local"}},))
    assert fp.match_nft_rule(other, kubelet) == fp.PARTIAL


@pytest.mark.parametrize("rc,out,err,why", [
    # nft 0.9.0/0.9.1 built without JSON support print the ruleset as text for -j (rc 0)
    (0, "alpine-aports-nftables.nft", "", "printed text, not JSON"),
    # nft 0.9.2+ without it (nftables@6eb8bcc): the error istio#60328 quotes, rc 1
    (1, None, "Error: JSON support not compiled-in", "JSON support not compiled-in"),
])
def test_nft_without_json_support_is_not_read(rc, out, err, why):
    """A node whose `nft -j list ruleset` did not give JSON (SYNTHESISED: a k3s flannel node, no
    iptables; its ruleset Alpine's default nftables firewall, the real text of the corpus, which
    drops VXLAN, kubelet, NodePorts and forwarded pods): its nftables rules were not read, so the
    firewall codes are not checked there and say why. Old code: an empty ruleset, no finding."""
    from clusterfix_tui.core.facts import parse_facts

    n = "N0NCE"
    secs = {"nft_json": (rc, text(out) if out else "", err),
            "binaries": (0, "nft=/usr/sbin/nft", "")}
    f = parse_facts("node-a", "".join(
        f"@@CFX {n} BEGIN {k}\n{o}\n@@CFX {n} ERR {k}\n{e}\n@@CFX {n} END {k} rc={c}\n"
        for k, (c, o, e) in secs.items()), n)
    assert why in f.unread_sections()["nft_json"]
    ann = {"k3s.io/node-args": '["server"]', "flannel.alpha.coreos.com/backend-type": "vxlan"}
    nodes = [{"metadata": {"name": name, "annotations": dict(
                  ann, **{"flannel.alpha.coreos.com/public-ip": a})},
              "spec": {"podCIDR": c}, "status": {"addresses": [{"type": "InternalIP",
                                                                "address": a}]}}
             for name, c, a in (("node-a", "10.42.0.0/24", "10.0.0.11"),
                                ("node-b", "10.42.1.0/24", "10.0.0.12"))]
    snap = _with_shape(_snapshot(nodes, ()), {"node-a": f})
    findings, errors = run_checks(snap, {"node-a": f})
    assert errors == [] and findings == []
    for code in ("FIREWALL_POLICY_DROP", "FORWARD_DROP"):
        w = why_not(snap.shape, code, "node-a")
        assert w is not None and "nft_json" in w and why in w, w
