"""core/trace.py without a lab: the nft script and its rollback, `nft -a monitor trace` parsing
(real output captured on the lab), the legacy counter diff and the verdict assembly."""

from __future__ import annotations

import shlex

import pytest

from clusterfix_tui.core import trace as T

MONITOR = """\
trace id 47405d2b inet cfx_trace_ab12 pre packet: iif "eth0" ip saddr 10.213.20.1 ip daddr 10.213.20.11 tcp dport 30096 tcp flags == syn
trace id 47405d2b inet cfx_trace_ab12 pre rule ip daddr 10.213.20.11 tcp dport 30096 meta nftrace set 1 # handle 2 (verdict continue)
trace id 47405d2b inet cfx_trace_ab12 pre policy accept 
trace id 47405d2b ip nat PREROUTING packet: iif "eth0" ip saddr 10.213.20.1 ip daddr 10.213.20.11 tcp dport 30096
trace id 47405d2b ip nat PREROUTING rule  counter packets 1 bytes 60 jump KUBE-SERVICES # handle 4 (verdict jump KUBE-SERVICES)
trace id 47405d2b ip nat KUBE-SEP-U2BV666ENZFNYNHG rule meta l4proto tcp   counter packets 0 bytes 0 dnat to 10.244.1.3:8096 # handle 20 (verdict accept)
trace id 47405d2b ip filter FORWARD packet: iif "eth0" oif "flannel.1" ip daddr 10.244.1.3 tcp dport 8096
trace id 47405d2b ip filter FORWARD rule  counter packets 0 bytes 0 jump CFXV # handle 21 (verdict jump CFXV)
trace id 47405d2b ip filter CFXV rule meta l4proto tcp ct original proto-dst 30096 counter packets 0 bytes 0 reject # handle 19 (verdict drop)
"""

NATIVE_DROP = """\
trace id 11 ip nat OUTPUT rule counter packets 0 bytes 0 jump KUBE-SERVICES # handle 6 (verdict jump KUBE-SERVICES)
trace id 11 ip nat OUTPUT policy accept
trace id 11 inet vendorfw out rule ip daddr 10.244.1.3 tcp dport 8096 drop # handle 2 (verdict drop)
"""


def test_script_marks_only_and_rollback_is_idempotent():
    s = T.nft_script("ab12", [T.Match("10.0.0.1", 30096)], output=True)
    assert "add table inet cfx_trace_ab12" in s
    assert "hook prerouting priority -500" in s and "hook output priority -500" in s
    assert "policy accept" in s
    assert "ip daddr 10.0.0.1 tcp dport 30096 tcp flags & (syn | ack) == syn meta nftrace set 1" in s
    # the only statement is the mark: no verdict, no rewrite
    for word in (" drop", " reject", " accept ;", "dnat", "snat", "masquerade", " jump"):
        assert word not in s.replace("policy accept", "")
    assert "hook output" not in T.nft_script("ab12", [T.Match("10.0.0.1", 1)])
    a = T.setup_action("node-1", "ab12", [T.Match("10.0.0.1", 30096)], 1)
    assert shlex.split(a.command)[0] == "nft" and len(shlex.split(a.command)) == 2
    assert a.rollback is not None and "nft delete table inet cfx_trace_ab12" in a.rollback.command
    assert "! nft list table inet cfx_trace_ab12" in a.rollback.command
    with pytest.raises(ValueError):
        T.table_name("x; reboot")


def test_parse_monitor_skips_own_table_strips_counters():
    hops = T.parse_monitor("node-1", MONITOR, "cfx_trace_ab12")
    assert all(h.table != "cfx_trace_ab12" for h in hops)
    rules = [h for h in hops if h.kind == "rule"]
    assert rules[0].rule == "jump KUBE-SERVICES" and rules[0].handle == 4
    assert rules[0].verdict == "jump KUBE-SERVICES"
    assert all("counter packets" not in h.rule for h in rules)
    d = T.nft_death(hops)
    assert d is not None and (d.chain, d.handle, d.verdict) == ("CFXV", 19, "drop")


def test_verdict_rejected_names_node_table_chain_rule():
    n1 = T.NodeTrace("node-1", "entry", hops=T.parse_monitor("node-1", MONITOR, "cfx_trace_ab12"))
    n2 = T.NodeTrace("node-2", "destination")
    res = T.verdict([n1, n2], connected=False)
    assert res["verdict"] == "rejected"
    assert res["where"] == {"node": "node-1", "table": "ip filter", "chain": "CFXV",
                            "rule": "meta l4proto tcp ct original proto-dst 30096 reject",
                            "handle": 19}
    res = T.verdict([T.NodeTrace("node-1", "source",
                                 hops=T.parse_monitor("node-1", NATIVE_DROP))], connected=False)
    assert res["verdict"] == "dropped" and res["where"]["table"] == "inet vendorfw"


LEGACY_BEFORE = """*filter
:INPUT ACCEPT [10:600]
:FORWARD DROP [3:180]
:OUTPUT ACCEPT [10:600]
[0:0] -A INPUT -p tcp --dport 9 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def test_legacy_counters_name_the_policy_that_moved():
    after = LEGACY_BEFORE.replace(":FORWARD DROP [3:180]", ":FORWARD DROP [5:300]").replace(
        ":INPUT ACCEPT [10:600]", ":INPUT ACCEPT [12:700]")
    d = T.legacy_death(LEGACY_BEFORE, after)
    assert d is not None and (d["chain"], d["rule"], d["verdict"]) == (
        "FORWARD", "policy DROP", "dropped")
    assert T.legacy_death(LEGACY_BEFORE, LEGACY_BEFORE) is None
    moved_rule = LEGACY_BEFORE.replace("[0:0] -A INPUT", "[1:60] -A INPUT")
    d = T.legacy_death(LEGACY_BEFORE, moved_rule)
    assert d is not None and d["verdict"] == "rejected" and d["chain"] == "INPUT"
    assert T.legacy_chains_in_use(LEGACY_BEFORE) == ["filter/FORWARD", "filter/INPUT"]
    res = T.verdict([T.NodeTrace("node-1", "entry", legacy_before=LEGACY_BEFORE,
                                 legacy_after=after)], connected=False)
    assert res["verdict"] == "dropped" and res["where"]["table"] == "iptables-legacy filter"
    assert res["legacy_untraced"] == {"node-1": ["filter/FORWARD", "filter/INPUT"]}


def test_verdict_routes_forwarding_and_lost():
    seen = T.parse_monitor("node-1", NATIVE_DROP.splitlines()[0])
    res = T.verdict([T.NodeTrace("node-1", "entry", hops=seen, forwarding="0",
                                 needs_forwarding=True)], connected=False)
    assert res["verdict"] == "no-route" and "ip_forward = 0" in res["where"]["rule"]
    res = T.verdict([T.NodeTrace("node-1", "entry", hops=seen, route="RTNETLINK answers: "
                                 "Network is unreachable", route_ok=False)], connected=False)
    assert res["verdict"] == "no-route" and "unreachable" in res["where"]["rule"]
    res = T.verdict([T.NodeTrace("node-1", "entry", hops=seen, forwarding="1",
                                 needs_forwarding=True), T.NodeTrace("node-2", "destination")],
                    connected=False)
    assert res["verdict"] == "lost" and res["where"]["node"] == "node-2"
    assert "never arrived" in res["where"]["rule"]
    res = T.verdict([T.NodeTrace("node-1", "entry", hops=seen)], connected=True)
    assert res["verdict"] == "delivered"


def test_probe_command_quotes_values():
    cmd = T.probe_shell_command("10.0.0.1", 80, src_ip="10.244.0.2")
    assert 'grep -qF " "10.244.0.2/ ' in cmd
    assert "'10.244.0.2; reboot/'" in T.probe_shell_command("10.0.0.1", 80, src_ip="10.244.0.2; reboot")
    evil = T.probe_shell_command("1.2.3.4; reboot", 80)
    assert "'1.2.3.4; reboot'" in evil


def test_lost_between_nodes_names_a_stale_vtep():
    seen = T.parse_monitor("node-1", NATIVE_DROP.splitlines()[0])
    a = T.NodeTrace("node-1", "entry", hops=seen, forwarding="1", needs_forwarding=True,
                    route="10.244.1.3 via 10.244.1.0 dev flannel.1 src 10.244.0.0 uid 0 cache",
                    neigh=T.parse_neigh("10.244.1.0 dev flannel.1 lladdr 0e:00:00:00:00:01 PERMANENT\n"
                                        "10.213.20.1 dev eth0 lladdr 1e:a3:e5:de:bd:8c REACHABLE"))
    b = T.NodeTrace("node-2", "destination",
                    macs=T.parse_links("lo 00:00:00:00:00:00\nflannel.1 fe:1e:56:69:73:31\n"))
    res = T.verdict([a, b], connected=False)
    assert res["verdict"] == "lost" and res["where"]["node"] == "node-1"
    assert res["where"]["chain"] == "neighbour" and "0e:00:00:00:00:01" in res["where"]["rule"]
    assert "fe:1e:56:69:73:31" in res["where"]["rule"]
    b.macs["flannel.1"] = "0e:00:00:00:00:01"  # the entry is right: lost somewhere else
    res = T.verdict([a, b], connected=False)
    assert res["where"]["node"] == "node-2" and "never arrived" in res["where"]["rule"]


class _API:
    """Plain dicts, as ClusterAPI returns them."""

    def list_nodes(self):
        return [{"metadata": {"name": f"node-{i}"}, "spec": {"podCIDR": f"10.244.{i - 1}.0/24"},
                 "status": {"addresses": [{"type": "InternalIP", "address": f"10.0.0.{i}"}]}}
                for i in (1, 2, 3)]

    def list_services(self, namespace=None):
        return [{"metadata": {"namespace": "media", "name": "jf"},
                 "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80,
                                                         "nodePort": 30096, "protocol": "TCP"}]}}]

    def list_endpoints(self, namespace=None):
        return [{"metadata": {"namespace": "media", "name": "jf"},
                 "subsets": [{"addresses": [{"ip": "10.244.1.3"}],
                              "ports": [{"name": "http", "port": 8096}]}]}]

    def list_pods(self, namespace=None):
        return [{"metadata": {"namespace": "default", "name": "a"}, "spec": {"nodeName": "node-1"},
                 "status": {"podIP": "10.244.0.2"}},
                {"metadata": {"namespace": "media", "name": "b"},
                 "spec": {"nodeName": "node-2", "containers": [{"ports": [{"containerPort": 8096}]}]},
                 "status": {"podIP": "10.244.1.3"}}]


def test_flows_from_the_api():
    f = T.nodeport_flow(_API(), "node-1", None)
    assert (f.dst_ip, f.dst_port, f.probe_node) == ("10.0.0.1", 30096, None)
    assert [(p.node, p.role) for p in f.path] == [("node-1", "entry"), ("node-2", "destination")]
    assert T.Match("10.244.1.3", 8096) in f.path[0].matches  # endpoint found by podCIDR
    assert f.path[1].matches == (T.Match("10.244.1.3", 8096),)
    with pytest.raises(T.TraceError):
        T.nodeport_flow(_API(), "node-9", None)
    with pytest.raises(T.TraceError):
        T.nodeport_flow(_API(), "node-1", 31000)
    p = T.pod_flow(_API(), "default/a", "media/b", None)
    assert (p.dst_ip, p.dst_port, p.probe_node) == ("10.244.1.3", 8096, "node-1")
    assert [pn.node for pn in p.path] == ["node-1", "node-2"] and "10.244.1.3" in p.probe_command
    with pytest.raises(T.TraceError):
        T.pod_flow(_API(), "default/a", "default/nope", None)


def test_legacy_dnat_that_moved_is_named_when_the_probe_failed():
    before = ("*nat\n:PREROUTING ACCEPT [0:0]\n[0:0] -A PREROUTING -j KUBE-SERVICES\n"
              "[0:0] -A KUBE-SEP-X -p tcp -m tcp -j DNAT --to-destination 10.244.1.251:8096\n"
              "COMMIT\n")
    after = before.replace("[0:0] -A PREROUTING", "[1:60] -A PREROUTING").replace(
        "[0:0] -A KUBE-SEP-X", "[1:60] -A KUBE-SEP-X")
    n = T.NodeTrace("node-1", "entry", legacy_before=before, legacy_after=after, forwarding="1",
                    needs_forwarding=True)
    res = T.verdict([n], connected=False)
    assert res["verdict"] == "lost"
    assert (res["where"]["table"], res["where"]["chain"]) == ("iptables-legacy nat", "KUBE-SEP-X")
    assert "10.244.1.251:8096" in res["where"]["rule"]
    assert T.verdict([n], connected=True)["verdict"] == "delivered"


class _Shell:
    """A node shell answering the read-only node-info command with given text."""

    def __init__(self, text: str, resolved: str = "") -> None:
        self.text, self.resolved, self.commands = text, resolved, []

    def run(self, cmd, timeout=None):
        from types import SimpleNamespace

        self.commands.append(cmd)
        out = self.resolved if cmd.startswith("getent") else self.text
        return SimpleNamespace(stdout=out, stderr="", ok=True, exit_code=0, error=None)


def test_vxlan_flow_marks_only_the_probe_datagrams():
    sh = _Shell("@@vxlan dstport 4789\n")
    f = T.build_flow("vxlan", ("node-1", "node-2", None), _API(), lambda n, a: sh)
    assert (f.kind, f.dst_ip, f.dst_port, f.probe_node) == ("vxlan", "10.0.0.2", 4789, "node-1")
    assert f.delivered_on_arrival
    assert [(p.node, p.role) for p in f.path] == [("node-1", "source"), ("node-2", "destination")]
    m = f.path[0].matches[0]
    rule = m.nft()
    assert rule == ("ip saddr 10.0.0.1 ip daddr 10.0.0.2 udp dport 4789 udp length "
                    f"{T.UDP_PROBE_LENGTH} meta nftrace set 1")
    assert T.UDP_PROBE_LENGTH < 50  # a real VXLAN datagram (8+8+14+20 bytes at least) never matches
    assert "'10.0.0.2' '4789'" in f.probe_command or "10.0.0.2 4789" in f.probe_command
    # no dstport on the node: flannel's default; --port wins
    f = T.build_flow("vxlan", ("node-1", "node-2", None), _API(), lambda n, a: _Shell("@@vxlan \n"))
    assert f.dst_port == 8472
    assert T.build_flow("vxlan", ("node-1", "node-2", 9999), _API(), lambda n, a: sh).dst_port == 9999
    with pytest.raises(T.TraceError):
        T.build_flow("vxlan", ("node-1", "node-1", None), _API(), lambda n, a: sh)
    with pytest.raises(ValueError):
        T.Match("10.0.0.2; flush ruleset", 1).nft()


def test_api_flow_from_the_kubelet_kubeconfig():
    sh = _Shell("@@server /etc/kubernetes/kubelet.conf     server: https://10.0.0.3:6443\n@@vxlan \n")
    f = T.build_flow("api", ("node-1",), _API(), lambda n, a: sh)
    assert (f.dst_ip, f.dst_port, f.probe_node) == ("10.0.0.3", 6443, "node-1")
    # the API address is node-3's InternalIP: node-3 is on the path
    assert [(p.node, p.role) for p in f.path] == [("node-1", "source"), ("node-3", "destination")]
    assert "/etc/kubernetes/kubelet.conf" in f.description
    assert "server:" in sh.commands[0] and "kubelet.conf" in sh.commands[0]
    named = _Shell("@@server /var/lib/kubelet/kubeconfig - server: 'https://api.example:443'\n",
                   resolved="192.0.2.7\n")
    f = T.build_flow("api", ("node-2",), _API(), lambda n, a: named)
    assert (f.dst_ip, f.dst_port, len(f.path)) == ("192.0.2.7", 443, 1)
    assert named.commands[1].startswith("getent ahosts api.example ")
    with pytest.raises(T.TraceError):
        T.build_flow("api", ("node-1",), _API(), lambda n, a: _Shell("@@vxlan \n"))


def test_arrival_seen_by_our_own_table_only():
    """A node whose firewall is all iptables-legacy has no other nft table to trace: our own
    marking chain says the packet arrived (or was sent)."""
    own = ("trace id 5 inet cfx_trace_ab12 pre packet: iif \"eth0\" ip saddr 10.0.0.1 udp dport 8472\n"
           "trace id 5 inet cfx_trace_ab12 pre rule ip daddr 10.0.0.2 udp dport 8472 meta nftrace "
           "set 1 # handle 2 (verdict continue)\n")
    assert T.own_sightings(own, "cfx_trace_ab12") == ["pre"]
    assert T.parse_monitor("node-2", own, "cfx_trace_ab12") == []
    a = T.NodeTrace("node-1", "source", marked=["out"])
    b = T.NodeTrace("node-2", "destination", marked=[])
    res = T.verdict([a, b], connected=False)
    assert res["verdict"] == "lost" and res["where"]["node"] == "node-2"
    assert res["where"]["rule"] == "sent from node-1 and never arrived at node-2"
    b.marked = ["pre"]
    assert T.verdict([a, b], connected=True)["verdict"] == "delivered"


def test_trace_event_reaches_the_report(tmp_path):
    """A trace run writes one `trace` event; the report lists it under "Traces" (flow, verdict,
    where, hop path) in every format, and the JSON validates against the schema."""
    import json
    from pathlib import Path

    import jsonschema

    from clusterfix_tui.core import report
    from clusterfix_tui.core.journal import Journal

    res = T.verdict([T.NodeTrace("node-1", "entry",
                                 hops=T.parse_monitor("node-1", MONITOR, "cfx_trace_ab12"))],
                    connected=False)
    res.update(flow="nodeport", description="workstation -> node-1 10.0.0.1:30096",
               trace_id="ab12")
    j = Journal(str(tmp_path / "j.jsonl"))
    j.write("trace", **T.journal_event(res))
    j.close()
    events, problems = report.load_journal(tmp_path / "j.jsonl")
    model = report.build_report(events)
    assert problems == []
    assert not any("unknown type" in p for p in model["journal_problems"])
    schema = json.loads((Path(report.__file__).with_name("report_schema.json")).read_text())
    jsonschema.Draft202012Validator(schema).validate(model)
    (tr,) = model["traces"]
    assert (tr["flow"], tr["verdict"]) == ("nodeport", "rejected")
    assert tr["where"] == {"node": "node-1", "table": "ip filter", "chain": "CFXV",
                           "rule": "meta l4proto tcp ct original proto-dst 30096 reject",
                           "handle": 19}
    assert tr["path"][-1] == ("node-1: ip filter CFXV #19: meta l4proto tcp ct original "
                              "proto-dst 30096 reject -> drop")
    assert all("cfx_trace_" not in line for line in tr["path"])
    md = report.render(events, "md")
    assert "## Traces" in md and "REJECTED" in md and "handle 19" in md
    html = report.render(events, "html")
    assert "<h2>Traces</h2>" in html and "CFXV #19" in html
