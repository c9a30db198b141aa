"""trust3: KUBE_PROXY_SHADOWED's rollback base (ShadowedData.jump_copies, added since 7eddf53) from
a finding read back from a journal: JSON's `true` is a Python int, and it reached the shell test
as "-gt True" (a shell error: the rollback's precondition failed and its command removed nothing,
silently)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_faultvar_net2 import JUMP  # noqa: E402

from clusterfix_tui.core.checks.iptables import ShadowedData  # noqa: E402
from clusterfix_tui.core.fixes import kube_proxy_jump  # noqa: E402

ACCEPT = "-A PREROUTING -p tcp -m tcp --dport 30000:32767 -j ACCEPT"


@pytest.mark.parametrize("copies,base", [(True, 1), (False, 1), (2, 2), (0, 1), ("3", 1)])
def test_the_rollback_base_is_a_count_never_a_bool(copies, base):
    d = ShadowedData(backend="nft", ip_version=4, builtin="PREROUTING", rule=ACCEPT, via=ACCEPT,
                     jump=JUMP, services=["default/x"], binary="iptables-nft", jump_copies=copies)
    got = kube_proxy_jump.jump_ahead(d, "-w 5", "iptables:a:1", "a")
    assert got is not None
    rb = got["rollback"]
    for text in (rb.command, rb.precondition.command):
        assert f"-gt {base} ]" in text and "True" not in text and "False" not in text
