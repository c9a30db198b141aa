"""Real node outputs, sixth pass: what the old tools, kube-router, cilium and calico nodes print,
through the parsers, the netfilter map (core/netfilter_map.py) and the checks. The samples live
in tests/data/realworld/ (README.md and samples.json say where each comes from)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks.iptables import NOT_KUBE_PROXY_PREFIXES
from clusterfix_tui.core.netfilter_map import guess_owner, netfilter_map
from tests.test_realworld import text

# -- the netfilter map --------------------------------------------------------------------------


def _map(**kw):
    facts = dict(nft_ruleset=None, legacy=None, ip6_legacy=None, plain_save=None, plain_save6=None,
                 iptables_version=None)
    facts.update(kw)
    return netfilter_map(SimpleNamespace(**facts))


@pytest.mark.parametrize("name, version, table, policy, owner", [
    # CentOS 7: iptables 1.4.21, one `iptables-save` (no -legacy/-nft variants)
    ("centos7-binary-k8s-ipvs-docker-filter.save", None, "filter", "drop", "kube-proxy"),
    # Ubuntu 18.04-era iptables 1.6.0 (weave on kubeadm 1.11)
    ("weave-kubeadm-1.11-iptables-1.6.0-filter.save", None, "filter", "accept", "kube-proxy"),
    # the same text from an iptables 1.8 built with one backend that says legacy
    ("kube-router-1069-filter.save", "iptables v1.8.2", "filter", "drop", "docker"),
])
def test_plain_iptables_save_is_in_the_map(name, version, table, policy, owner):
    """An iptables without -legacy/-nft variants (iptables < 1.8: CentOS 7, Ubuntu 18.04) is read
    as the facts' plain_save: its tables are in the map, as legacy (old code: the map of such a
    node was empty, as if nothing filtered its traffic)."""
    save = P.parse_iptables_save(text(name))
    m = _map(plain_save=save, iptables_version=P.parse_iptables_version(version or ""))
    (e,) = [e for e in m if e["table"] == table]
    assert (e["backend"], e["family"], e["owner"]) == ("iptables-legacy", "ip", owner)
    assert {c["chain"]: c["policy"] for c in e["chains"]}["FORWARD"] == policy
    assert e["rules"] == len(save.tables[table].rules) > 0
    # the ip6tables-save of such a node, too (CentOS iptables-services)
    six = P.parse_iptables_save(text("centos-iptables-services-ip6tables.save"))
    (e6,) = _map(plain_save6=six)
    assert (e6["backend"], e6["family"], e6["table"]) == ("iptables-legacy", "ip6", "filter")


def test_plain_save_of_nf_tables_is_not_listed_twice():
    """A plain `iptables-save` whose header says nf_tables (k3s-pi's, iptables 1.8.10) shows the
    nft ruleset's own ip tables: listed once, from the ruleset when that was read; from the save,
    as iptables-nft, when it was not."""
    save = P.parse_iptables_save(text("k3s-pi-netpol-iptables-nft-excerpt.save"))
    assert {e["backend"] for e in _map(plain_save=save)} == {"iptables-nft"}
    empty = P.parse_nft_json('{"nftables": [{"metainfo": {"version": "1.0.9"}}]}')
    assert _map(plain_save=save, nft_ruleset=empty) == []


def test_kube_router_chains_are_not_kube_proxys():
    """kube-router's policy chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-* and its rules'
    'KUBE-ROUTER rule ...' / 'kube-router netpol' comments) of the real k3s sample (kube-router
    netpol embedded in k3s) are kube-router's (old code: kube-proxy's, by their KUBE- prefix)."""
    save = P.parse_iptables_save(text("k3s-pi-netpol-iptables-nft-excerpt.save"))
    t = save.tables["filter"]
    theirs = [c for c in t.chains if c.startswith(NOT_KUBE_PROXY_PREFIXES)]
    comments = [r.opt("--comment") for r in t.rules
                if "kube-router" in (r.opt("--comment") or "").lower()]
    assert len(theirs) == 15 and comments
    assert guess_owner(theirs) == "kube-router"
    assert {guess_owner([c]) for c in comments} == {"kube-router"}
    # kube-proxy's own chains stay kube-proxy's
    assert guess_owner(["KUBE-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS"]) == "kube-proxy"
    (e,) = [e for e in _map(plain_save=save) if e["table"] == "filter"]
    assert e["owner"] == "kube-router"


# -- the node state a session captures before and after its changes --------------------------------


def _facts_of(sections: dict[str, tuple[str, int]]):
    """NodeFacts from the facts script's output holding these sections (stdout, rc)."""
    from clusterfix_tui.core.facts import parse_facts

    n = "N0NCE"
    out = "".join(f"@@CFX {n} BEGIN {k}\n{o}\n@@CFX {n} ERR {k}\n\n@@CFX {n} END {k} rc={rc}\n"
                  for k, (o, rc) in sections.items())
    return parse_facts("node-a", out, n)


def _session(before: dict[str, str], after: dict[str, str], command: str) -> list[dict]:
    return [{"type": "node_state", "node": "node-a", "phase": "before", "sections": before},
            {"type": "command_start", "node": "node-a", "action_id": "a1", "command": command,
             "kind": "shell"},
            {"type": "command_end", "action_id": "a1", "exit_code": 0},
            {"type": "node_state", "node": "node-a", "phase": "after", "sections": after}]


@pytest.mark.parametrize("section, name, command", [
    # CentOS 7, iptables 1.4.21: the firewall step's ACCEPT goes through the one `iptables`
    ("iptables_save", "centos7-firewalld-iptables-filter-excerpt.save",
     "iptables -w -I INPUT 1 -p udp --dport 8472 -j ACCEPT"),
    ("iptables_save", "centos7-binary-k8s-ipvs-docker-filter.save",
     "iptables -w -I FORWARD 1 -s 172.7.0.0/16 -j ACCEPT"),
    # its ip6tables-save (CentOS iptables-services)
    ("ip6tables_save", "centos-iptables-services-ip6tables.save",
     "ip6tables -w -I INPUT 1 -p udp --dport 8472 -j ACCEPT"),
    # firewalld on its iptables backend: the port opened with firewall-cmd lands in the same save
    ("iptables_save", "centos7-firewalld-iptables-filter-excerpt.save",
     "firewall-cmd --zone=public --add-port=8472/udp"),
])
def test_plain_iptables_save_is_node_state(section, name, command):
    """On an iptables without -legacy/-nft variants its one `iptables-save` (`ip6tables-save`) is
    the node's iptables state: captured before and after a session, and a rule the session added
    is a difference its action explains (old code: not state at all, so the report showed no
    iptables change on such a node, and one made by something else went unflagged)."""
    from clusterfix_tui.core.nodestate import capture, node_changes

    raw = text(name)
    assert raw.startswith("*filter") or raw.startswith("#")
    before = capture(_facts_of({section: (raw, 0)}))
    assert section in before and "-A INPUT" in before[section]
    added = "-A INPUT -p udp -m udp --dport 8472 -j ACCEPT"
    lines = raw.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("-A "))
    after = capture(_facts_of({section: ("\n".join(lines[:i] + [added] + lines[i:]), 0)}))
    (entry,) = node_changes(_session(before, after, command))
    (ch,) = entry["sections"]
    assert ch["section"] == section and f"+{added}" in ch["diff"]
    assert ch["actions"] == ["a1"] and ch["unexplained"] is False
    # a change no action of the session explains is flagged
    (entry,) = node_changes(_session(before, after, "sysctl -w net.ipv4.ip_forward=1"))
    assert entry["sections"][0]["unexplained"] is True


def test_firewall_cmd_explains_firewalld_changes():
    """firewalld's rules live in whichever backend it uses (nft on RHEL 8/9, iptables on CentOS 7):
    a `firewall-cmd --add-source` of the session explains the difference in its active zones
    and in the iptables-nft view (old code: flagged as changed by something else)."""
    from clusterfix_tui.core.nodestate import node_changes

    zones = "running\ndefault-zone: public\npublic\n  interfaces: eth0\n"
    trusted = zones + "trusted\n  sources: 10.244.0.0/16\n"
    before = {"firewalld": zones, "nft_save_filter": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"}
    after = {"firewalld": trusted,
             "nft_save_filter": "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.244.0.0/16 -j ACCEPT\nCOMMIT\n"}
    (entry,) = node_changes(_session(before, after,
                                     "firewall-cmd --zone=trusted --add-source=10.244.0.0/16"))
    assert {c["section"]: c["unexplained"] for c in entry["sections"]} == \
        {"firewalld": False, "nft_save_filter": False}


def test_flannel_v6_entries_are_node_state():
    """A dual-stack flannel node's flannel-v6.1 neighbours and fdb are repaired like flannel.1's:
    they are captured (old code: not state, the IPv6 entries a session replaced never shown).
    The entries are SYNTHESISED in `ip -j neigh` / `bridge -j fdb` form."""
    from clusterfix_tui.core.nodestate import capture

    neigh = '[{"dst":"fd00:10:244:1::","dev":"flannel-v6.1","lladdr":"aa:bb:cc:00:00:02","state":["PERMANENT"]}]'
    fdb = '[{"mac":"aa:bb:cc:00:00:02","dev":"flannel-v6.1","dst":"fd00::12","flags":["self"],"state":"permanent"}]'
    got = capture(_facts_of({"ip6_neigh_flannel": (neigh, 0), "fdb_flannel6": (fdb, 0)}))
    assert set(got) == {"ip6_neigh_flannel", "fdb_flannel6"}
    assert '"lladdr": "aa:bb:cc:00:00:02"' in got["ip6_neigh_flannel"]


# -- iptables-nft's "iptables-legacy tables present" on a node without iptables-legacy-save ------


def _s_blocks(raw: str) -> dict[str, list[str]]:
    """The sample's `iptables -t TABLE -S` blocks: table -> its output lines (prompt lines out)."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in raw.splitlines():
        if line.startswith("[root@"):
            cur = line.split("-t", 1)[1].split()[0]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def _s_to_save(table: str, lines: list[str]) -> tuple[str, str]:
    """One `iptables -t TABLE -S` as `iptables-nft-save -t TABLE` prints it (SYNTHESISED: -P/-N
    become chain lines, the -A rules stay as they are), and the warning it printed (stderr)."""
    warn = "\n".join(ln for ln in lines if ln.startswith("# Warning"))
    pol = {w[1]: w[2] for w in (ln.split() for ln in lines) if len(w) == 3 and w[0] == "-P"}
    chains = [ln.split()[1] for ln in lines if ln.startswith("-N ")]
    rules = [ln for ln in lines if ln.startswith("-A ")]
    save = "\n".join([f"*{table}", *(f":{c} {p} [0:0]" for c, p in pol.items()),
                      *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT", ""])
    return save, warn


def _rhel_node(warning_on: str | None):
    """The node's facts: its nat/filter/mangle as iptables-nft-save (iptables v1.8.4 nf_tables),
    no iptables-legacy-save (rc 127: RHEL 8/9 ship none); the warning on stderr (iptables 1.8.3+),
    on stdout (the first 1.8 releases), or left out."""
    from clusterfix_tui.core.facts import parse_facts

    n = "N0NCE"
    blocks = _s_blocks(text("server4-iptables-nft-S-legacy-warning.txt"))
    secs = {"iptables_version": ("iptables v1.8.4 (nf_tables)", "", 0),
            "legacy_save": ("", "sh: iptables-legacy-save: command not found", 127)}
    for t in ("nat", "filter", "mangle"):
        save, warn = _s_to_save(t, blocks[t])
        assert warn.startswith("# Warning: iptables-legacy tables present")
        if warning_on == "stdout":
            save += warn + "\n"
        secs[f"nft_save_{t}"] = (save, warn if warning_on == "stderr" else "", 0)
    out = "".join(f"@@CFX {n} BEGIN {k}\n{o}\n@@CFX {n} ERR {k}\n{e}\n@@CFX {n} END {k} rc={rc}\n"
                  for k, (o, e, rc) in secs.items())
    return parse_facts("node-a", out, n)


def check_legacy_warning_r6(s: dict, warning_on: str = "stderr") -> None:
    """A RHEL-8-like node (the sample: kubelet's KUBE-FIREWALL/KUBE-KUBELET-CANARY/KUBE-MARK-* in
    iptables-nft, no KUBE-SERVICES there, and iptables-nft warning that iptables-legacy tables are
    present) without iptables-legacy-save: the rules a proxy on legacy iptables wrote are in tables
    nothing listed. KUBE_PROXY_NO_RULES is not checked there and says why (old code: 'kube-proxy
    has programmed no Service/NodePort rules', a kube-proxy restart planned); without the warning
    it is found as before."""
    from clusterfix_tui.core.checks import run_checks
    from clusterfix_tui.core.shape import not_checked, why_not
    from tests.test_realworld import _ds, _snapshot, _with_shape

    e = s["expect"]
    node = {"metadata": {"name": "node-a"}, "spec": {"podCIDR": "10.244.0.0/24"}}
    kp = (_ds("kube-system", "kube-proxy", ["kube-proxy"]),)
    for warn, want in ((warning_on, e["findings_with_warning"]), (None, e["findings_without_warning"])):
        f = _rhel_node(warn)
        assert f.legacy is None and f.nft_nat is not None
        assert "KUBE-SERVICES" not in f.nft_nat.tables["nat"].chains
        snap = _with_shape(_snapshot([node], kp, kube_proxy_mode="", kube_proxy_config_found=True,
                                     nodeport_services=({"namespace": "x", "name": "y", "ports": []},)),
                           {"node-a": f})
        findings, errors = run_checks(snap, {"node-a": f})
        assert errors == [] and [x.code for x in findings] == want
        why = why_not(snap.shape, "KUBE_PROXY_NO_RULES", "node-a")
        if warn is None:
            assert why is None and e["unread"] not in f.unread_sections()
            continue
        assert e["unread"] in f.unread_sections()
        assert why is not None and e["why_contains"] in why, why
        assert any(e["why_contains"] in str(x) for x in not_checked(snap.shape))
        # the other iptables checks still read the node (the warning says nothing about them)
        for code in e["still_checked"]:
            assert why_not(snap.shape, code, "node-a") is None, code


@pytest.mark.parametrize("warning_on", ["stderr", "stdout"])
def test_unlisted_legacy_tables_are_not_read(warning_on):
    """The sample, its warning where iptables 1.8.3+ (stderr) and the first 1.8 releases (stdout)
    print it."""
    from tests.test_realworld import BY_FILE

    check_legacy_warning_r6(BY_FILE["server4-iptables-nft-S-legacy-warning.txt"], warning_on)


def test_legacy_tables_warning_is_read_per_family():
    """The warning names its family; a listing without it says nothing."""
    assert P.legacy_tables_warning("# Warning: iptables-legacy tables present, use "
                                   "iptables-legacy-save to see them\n").endswith("to see them")
    six = "# Warning: ip6tables-legacy tables present, use ip6tables-legacy-save to see them"
    assert P.legacy_tables_warning(six) is None and P.legacy_tables_warning(six, 6) == six
    assert P.legacy_tables_warning("*nat\nCOMMIT\n") is None


def test_unlisted_legacy_tables_are_in_the_map_as_not_read():
    """The netfilter map of the RHEL-8-like node: its iptables-nft tables, and a legacy entry saying
    tables exist that nothing listed (old code: no legacy entry, as if no legacy table existed);
    without the warning, none. The wizard's rows say "(not read)" and "?" rules for it."""
    from clusterfix_tui.ui.screens.netfilter import map_rows

    for warn in ("stderr", "stdout"):
        m = netfilter_map(_rhel_node(warn))
        (e,) = [x for x in m if x["backend"] == "iptables-legacy"]
        assert e["family"] == "ip" and e["chains"] == [] and "iptables-legacy tables present" in e["not_read"]
        (row,) = [r for r in map_rows(m) if r[2] == "legacy"]
        assert row[5:] == ("(not read)", "-", "?")
    assert not [x for x in netfilter_map(_rhel_node(None)) if x["backend"] == "iptables-legacy"]


def test_weave_and_antrea_chains_have_their_owner():
    """weave-npc's chains of the real weave sample and antrea's chains and rule comments, as
    antrea's own route test expects `iptables-save -t nat/mangle` (public Go test, search corpus
    file id 6704956274): their CNI's (old code: 'unknown', not a known prefix)."""
    save = P.parse_iptables_save(text("weave-kubeadm-1.11-iptables-1.6.0-filter.save"))
    weave = [c for c in save.tables["filter"].chains if c.startswith("WEAVE-")]
    assert len(weave) == 7 and guess_owner(weave) == "weave"
    antrea = ["ANTREA-MANGLE", "ANTREA-OUTPUT", "ANTREA-POSTROUTING",
              "Antrea: jump to Antrea postrouting rules", "Antrea: masquerade Pod to external packets"]
    assert {guess_owner([n]) for n in antrea} == {"antrea"}
