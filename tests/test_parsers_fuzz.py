"""Fuzz every parser with random text and with real captured output cut or corrupted anywhere:
none may raise, and parse_facts keeps the raw text of what arrived. The checks must also survive
any partial facts (a check that raises is a bug: run_checks reports it in its errors)."""

from __future__ import annotations

import os

from diag_fakes import FACTS_DATA, LAB_NONCE, SCRATCH_NONCE, ReplayAPI, load
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks import run_checks
from clusterfix_tui.core.facts import parse_facts, split_sections
from clusterfix_tui.core.snapshot import (
    build_snapshot,
    parse_flannel_net_conf,
    parse_kube_proxy_mode,
)

FAST = settings(max_examples=int(os.environ.get("CFX_FUZZ_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL = {
    "scratch-a": ((FACTS_DATA / "node-a-healthy.out").read_text(), SCRATCH_NONCE),
    "scratch-b": ((FACTS_DATA / "node-b-faults.out").read_text(), SCRATCH_NONCE),
}
_LAB = load("iptables-foreign-rule")
REAL["lab-foreign"] = (_LAB["facts"]["node-1"], LAB_NONCE)
_SNAP = build_snapshot(ReplayAPI(_LAB))


def _section(text: str, name: str) -> str:
    return text.split(f" BEGIN {name}\n", 1)[1].split("\n@@CFX", 1)[0]


SAMPLES = {name: _section(REAL["scratch-b"][0], name) for name in (
    "legacy_save", "nft_save_filter", "nft_json", "ip_link", "ip_addr", "ip_route",
    "ip_neigh_flannel", "fdb_flannel", "alternatives", "subnet_env", "iptables_version")}

PARSERS = [
    P.parse_iptables_save, P.parse_nft_json, P.parse_json_list, P.parse_alternatives,
    P.parse_env_file, P.parse_cni_conf, P.parse_kubeconfig_server, P.parse_sysctl_lines,
    P.parse_iptables_version, P.first_error_line,
    lambda t: P.parse_modules(t, t, True),
    lambda t: parse_kube_proxy_mode({"data": {"config.conf": t}}),
    lambda t: parse_flannel_net_conf({"data": {"net-conf.json": t}}),
]

text_st = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)


@FAST
@given(text_st)
def test_every_parser_takes_any_text(text):
    for parse in PARSERS:
        parse(text)


@FAST
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_every_parser_takes_cut_and_spliced_real_output(name, data):
    raw = SAMPLES[name]
    i = data.draw(st.integers(0, len(raw)))
    j = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.sampled_from(["", "\x00", "{", "]", "\"", "-A", "*nat\n", "COMMIT\n", ":X Y",
                                      "\ufffd", "-A KUBE-X -j", "\n\n", "# Table `x' is incompatible"]))
    for text in (raw[:i], raw[i:], raw[:i] + junk + raw[j:]):
        for parse in PARSERS:
            parse(text)


@FAST
@given(st.sampled_from(sorted(REAL)), st.data())
def test_parse_facts_on_truncated_real_output_never_raises_and_keeps_raw(which, data):
    text, nonce = REAL[which]
    cut = data.draw(st.integers(0, len(text)))
    part = text[:cut]
    f = parse_facts("n", part, nonce)
    full = split_sections(text, nonce)[0]
    for key, sec in f.sections.items():
        if sec.rc is not None:  # a section that closed is exactly the original
            assert sec == full[key]
        else:  # the one cut short keeps exactly what arrived of it (it is the last one)
            body = part.rsplit(f" BEGIN {key.split(' ')[0]}", 1)[1].split("\n", 1)[-1]
            assert body.startswith(sec.stdout) and sec.stderr in body
    if cut < len(text) - 1:
        assert not f.complete and f.parse_errors
    # the checks take whatever came through
    findings, errors = run_checks(_SNAP, {"node-1": f})
    assert errors == []


@FAST
@given(st.sampled_from(sorted(REAL)), st.data())
def test_parse_facts_on_corrupted_real_output(which, data):
    text, nonce = REAL[which]
    i = data.draw(st.integers(0, len(text)))
    n = data.draw(st.integers(0, 200))
    junk = data.draw(text_st)
    bad = text[:i] + junk + text[i + n:]
    f = parse_facts("n", bad, nonce)
    findings, errors = run_checks(_SNAP, {"node-1": f})
    # the rule items of a table in nft's JSON are decoded when a check first reads them
    # (parsers._PendingRules): garbled there, their reader gets NftRulesUnreadable (an error
    # naming the table, never "no rules"; run_checks keeps it to that node:
    # test_checks_isolation.py). Any other error is a bug.
    assert [e for e in errors if ": NftRulesUnreadable: " not in e] == []


@FAST
@given(text_st, st.sampled_from(["abc", LAB_NONCE]))
def test_split_sections_on_random_text(text, nonce):
    """Text that carries no marker of ours stays, byte for byte, the body of the section it is
    in: cut short (rc None, an error, incomplete) when no END came, exact with its rc when it did."""
    marker = f"@@CFX {nonce} "
    assume(marker not in "\n" + text and not text.startswith(marker))
    secs, complete, errors = split_sections(f"@@CFX {nonce} BEGIN x\n" + text, nonce)
    assert list(secs) == ["x"] and secs["x"].stdout == text and secs["x"].rc is None
    assert secs["x"].stderr == ""
    assert not complete and "section x: output ends inside it" in errors
    framed = f"@@CFX {nonce} BEGIN x\n{text}\n@@CFX {nonce} END x rc=3\n@@CFX {nonce} DONE\n"
    secs, complete, errors = split_sections(framed, nonce)
    assert list(secs) == ["x"] and secs["x"].stdout == text and secs["x"].rc == 3
    assert complete and errors == []


json_st = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "status", "name", "namespace", "labels", "podCIDR",
                         "addresses", "conditions", "type", "containerStatuses", "state",
                         "waiting", "reason", "annotations", "ports", "nodePort", "data",
                         "config.conf", "net-conf.json", "nodeName", "podIP", "restartCount",
                         "ownerReferences", "containers", "readinessProbe", "subsets"]),
        kids, max_size=5),
    max_leaves=25)


class _RandomAPI:
    def __init__(self, draw):
        self.draw = draw

    def __getattr__(self, name):
        def method(*args, **kwargs):
            if name in ("describe", "version", "get_configmap"):
                return self.draw(json_st)
            if name == "pod_log":
                return self.draw(st.text(max_size=50))
            return self.draw(st.lists(json_st, max_size=4))
        return method


@FAST
@given(st.data())
def test_snapshot_takes_any_api_shapes(data):
    snap = build_snapshot(_RandomAPI(data.draw), log_workers=1)
    snap.summary()
    snap.to_dict()
    for n in snap.nodes:
        snap.peer_pod_ips(n)
    findings, errors = run_checks(snap, {})
    assert errors == []


def test_a_word_then_an_unclosed_quote_does_not_hang_the_iptables_parser():
    """Found by the fuzz above: a long word followed by an unclosed quote made the tokenizer's
    regex backtrack exponentially (40 letters: hours), so one odd rule on one node could hang the
    diagnosis. The result must be shlex's (or the plain split it falls back to)."""
    import json
    import subprocess
    import sys

    lines = ["x" * 40 + '"', "-A INPUT -m comment --comment " + "a" * 60 + "'",
             "b c" * 30 + '"\\', "'" + "d" * 50]
    # in a child: the regex holds the GIL, a thread here could not even time it out
    code = ("import json, sys\nfrom clusterfix_tui.core import parsers as P\n"
            "print(json.dumps([P._tokens(ln) for ln in json.loads(sys.stdin.read())]))")
    try:  # a deadline, not a speed check: the old regex did not finish at all
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(lines),
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except subprocess.TimeoutExpired:
        raise AssertionError("the iptables-save tokenizer hangs on an unclosed quote") from None
    assert json.loads(out) == [list(P._tokens_reference(ln)) for ln in lines]
    save = "*filter\n:INPUT ACCEPT [0:0]\n" + "\n".join(lines) + "\nCOMMIT\n"
    P.parse_iptables_save(save)
