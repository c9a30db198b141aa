"""The facts script travels on stdin, and every fact has its own deadline (issue #14 item 4)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.core.facts import (
    SECTION_TIMEOUT,
    build_facts_script,
    loader_command,
    new_nonce,
    parse_facts,
    script_nonce,
)
from clusterfix_tui.transports.local import LocalShell

ARG_MAX_STRLEN = 128 * 1024  # the kernel's limit on one argument (MAX_ARG_STRLEN)


def test_the_command_line_stays_small_whatever_the_cluster_size() -> None:
    nonce = new_nonce()
    assert script_nonce(loader_command(nonce)) == nonce
    assert len(loader_command(nonce)) < 512
    with pytest.raises(ValueError):
        loader_command("a b")


def test_three_thousand_peers_are_read_through_stdin() -> None:
    peers = [f"10.{i // 250}.{i % 250}.7" for i in range(3000)]
    nonce = new_nonce()
    script = build_facts_script(peers, nonce=nonce)
    assert len(script) > ARG_MAX_STRLEN  # as one `sh -c` argument this could not be exec'd
    res = LocalShell().run(loader_command(nonce), timeout=600, stdin=script.encode())
    assert res.ok, res.stderr[-500:]
    facts = parse_facts("here", res.stdout, nonce)
    assert facts.complete and not facts.parse_errors
    assert len(facts.route_get) == 3000
    assert all(v is not None for v in facts.route_get.values())


lab = lab_fixture(nodes=2, faults="none")


@pytest.mark.lab
def test_a_hung_fact_costs_one_section_not_the_node(lab) -> None:
    from clusterfix_tui.core.diagnose import diagnose
    from clusterfix_tui.runtime import build_runtime

    hang = Path(lab.info["state_dir"]) / "node-2" / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    # only node-2's mount namespace sees the hanging update-alternatives
    lab.exec("node-2", f"mount --bind {hang} \"$(command -v update-alternatives)\"")
    try:
        with build_runtime(lab_dir=str(lab.dir)) as rt:
            t0 = time.monotonic()
            d = diagnose(rt.api, rt.shells)
            took = time.monotonic() - t0
        print(f"diagnose with one hung fact on node-2: {took:.1f}s "
              f"(section deadline {SECTION_TIMEOUT}s)")
        assert set(d.facts) == {"node-1", "node-2"} and not d.node_errors, d.node_errors
        sec = d.facts["node-2"].section("alternatives")
        assert sec is not None and sec.rc == 137 and "timed out" in sec.stderr
        assert d.facts["node-1"].section("alternatives").rc != 137
        assert not [f for f in d.findings if f.code == "FACTS_UNREADABLE"]
        # the hang is a finding on node-2 naming the section (and its command), nothing else
        hung = [f for f in d.findings if f.code == "NODE_FACTS_TIMEOUT"]
        assert [(f.node, f.data.sections, f.data.commands, f.step) for f in hung] == [
            ("node-2", ["alternatives"], ["update-alternatives --query iptables"], None)]
        assert [f.code for f in d.findings] == ["NODE_FACTS_TIMEOUT"], d.findings
        # and never an action: on this healthy lab, no step plans anything from it
        from clusterfix_tui.core.fixes import get_step
        from clusterfix_tui.core.model import STEP_ORDER

        for step in STEP_ORDER:
            assert not get_step(step).plan(d).actions, step
    finally:
        lab.exec("node-2", "umount \"$(command -v update-alternatives)\"", check=False)


@pytest.mark.lab
def test_a_hung_fact_a_check_needs_is_no_finding_and_no_action(lab) -> None:
    """node-2's `iptables-nft-save -t nat` hangs (only that table: filter and mangle answer).
    Read as empty, the missing nat table would be KUBE_PROXY_NO_RULES and a kube-proxy restart
    on a healthy node; killed at its deadline it is not read: no finding from it, no action,
    and "not checked" names the section (issue #14's safety gap)."""
    from clusterfix_tui.core.diagnose import diagnose
    from clusterfix_tui.core.fixes import get_step
    from clusterfix_tui.core.model import STEP_ORDER
    from clusterfix_tui.runtime import build_runtime

    bindir = Path(lab.info["state_dir"]) / "node-2" / "hang-bin"
    bindir.mkdir(exist_ok=True)
    wrapper = bindir / "iptables-nft-save"
    # first on the facts script's PATH (/usr/local/sbin), in node-2's mount namespace only
    wrapper.write_text("#!/bin/sh\n"
                       'case " $* " in *" nat "*) exec sleep 600 ;; esac\n'
                       'exec /usr/sbin/iptables-nft-save "$@"\n')
    wrapper.chmod(0o755)
    lab.exec("node-2", f"mount --bind {bindir} /usr/local/sbin")
    try:
        with build_runtime(lab_dir=str(lab.dir)) as rt:
            d = diagnose(rt.api, rt.shells)
        assert set(d.facts) == {"node-1", "node-2"} and not d.node_errors, d.node_errors
        f2 = d.facts["node-2"]
        assert f2.section("nft_save_nat").timed_out
        assert f2.section("nft_save_filter").rc == 0 and f2.nft_filter is not None  # answered
        assert f2.unread_sections() == {"nft_save_nat": f"timed out after {SECTION_TIMEOUT}s"}
        assert d.facts["node-1"].unread_sections() == {}
        assert [(f.code, f.node) for f in d.findings] == [("NODE_FACTS_TIMEOUT", "node-2")], \
            d.findings
        for step in STEP_ORDER:
            assert not get_step(step).plan(d).actions, step
        (g,) = [g for g in d.not_checked if "KUBE_PROXY_NO_RULES" in g["codes"]]
        assert g["nodes"] == ["node-2"] and g["why"].startswith("nft_save_nat timed out")
        assert any("KUBE_PROXY_NO_RULES" in ln and "node-2" in ln
                   for ln in d.to_dict()["notes"])
    finally:
        lab.exec("node-2", "umount /usr/local/sbin", check=False)
