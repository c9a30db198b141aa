"""The node's own `kubectl get nodes` asks for its own Node only (#17: with every node listing
every Node, a 5,000-node cluster's API server would send 25 million Node objects per diagnosis).
Same client, kubeconfig, credentials and list verb: only the answer's size changes. The node's name
reaches the shell quoted, whatever it holds."""

from __future__ import annotations

import shlex

import pytest

from clusterfix_tui.core import facts as F


def _args(script: str) -> list[str]:
    joined = script.replace("\\\n", " ")  # the shell's line continuations
    line = next(ln for ln in joined.splitlines() if "kubectl get nodes" in ln)
    cmd = line.strip().split(" >", 1)[0]  # up to the redirections
    words = shlex.split(cmd)
    return words[words.index("kubectl"):]


@pytest.mark.parametrize("name", ["node-2", "ip-10-0-0-1.ec2.internal",
                                  "n'; touch /tmp/cfx-pwned; echo '", "$(reboot)", "a b\tc"])
def test_the_node_asks_for_its_own_node_and_its_name_is_quoted(name):
    argv = _args(F.build_facts_script(["10.244.1.2"], node_name=name))
    assert argv[:4] == ["kubectl", "get", "nodes", "-o"]
    assert argv[argv.index("--field-selector") + 1] == f"metadata.name={name}"
    assert "--request-timeout=5s" in argv


def test_without_a_name_it_lists_nodes_as_before():
    argv = _args(F.build_facts_script(["10.244.1.2"]))
    assert argv == ["kubectl", "get", "nodes", "-o", "name", "--request-timeout=5s"]


def test_a_name_cannot_reach_other_placeholders():
    s = F.build_facts_script([], node_name="__NONCE__ __SECTION_TIMEOUT__ __CNI_SED__")
    assert "metadata.name=__NONCE__ __SECTION_TIMEOUT__ __CNI_SED__" in s
    assert "__KUBECTL_SCOPE__" not in s
