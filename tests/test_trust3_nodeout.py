"""trust3: node output the code landed since 7eddf53 quotes (iptables-nft's "iptables-legacy
tables present" warning: NodeFacts.unread_sections, the journaled summary, the netfilter map's
not_read) taken hostile: a warning line that goes on for a MiB is quoted bounded."""

from __future__ import annotations

import json

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import parse_facts
from clusterfix_tui.core.netfilter_map import netfilter_map

WARN = "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them"


def _node(stderr: str) -> object:
    secs = {"nft_save_nat": ("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", stderr, 0)}
    out = "".join(f"@@CFX n {'BEGIN'} {k}\n{o}\n@@CFX n ERR {k}\n{e}\n@@CFX n END {k} rc={rc}\n"
                  for k, (o, e, rc) in secs.items())
    return parse_facts("node-a", out, "n")


def test_a_warning_line_of_a_mib_is_quoted_bounded():
    tail = " x" * 500_000
    assert 0 < len(P.legacy_tables_warning(WARN + tail) or "") <= 200
    assert P.legacy_tables_warning(WARN + "\n") == WARN  # the real line whole
    f = _node(WARN + tail + "\n")
    note = f.unread_sections().get("legacy_tables")
    assert note is not None and len(note) < 400, len(note or "")
    assert len(json.dumps(f.summary())) < 20_000
    entry = [e for e in netfilter_map(f) if e["table"] == "(not listed)"]
    assert len(entry) == 1 and len(entry[0]["not_read"]) < 400
