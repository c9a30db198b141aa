"""The node's own kubectl asks for its own Node only, in one request (#17): with every node listing
every Node, a 5,000-node cluster's API server would send 25 million Node objects per diagnosis;
and `kubectl get nodes` first runs API discovery, which against a dead API address is tried
several times, each waiting its own timeout (the long pole of every diagnosis while a worker's
kubeconfig is broken). Same client, kubeconfig, credentials and list verb. The node's name
reaches the shell quoted and the URL encoded, whatever it holds."""

from __future__ import annotations

import shlex
import urllib.parse

import pytest

from clusterfix_tui.core import facts as F


def _args(script: str) -> list[str]:
    joined = script.replace("\\\n", " ")  # the shell's line continuations
    line = next(ln for ln in joined.splitlines() if " kubectl " in ln and "--request-timeout" in ln)
    cmd = line.strip().split(" >", 1)[0]  # up to the redirections
    words = shlex.split(cmd)
    return words[words.index("kubectl"):]


@pytest.mark.parametrize("name", ["node-2", "ip-10-0-0-1.ec2.internal",
                                  "n'; touch /tmp/cfx-pwned; echo '", "$(reboot)", "a b\tc&x=1#y"])
def test_the_node_asks_for_its_own_node_in_one_request_and_its_name_is_quoted(name):
    argv = _args(F.build_facts_script(["10.244.1.2"], node_name=name))
    assert argv[:3] == ["kubectl", "get", "--raw"] and argv[4:] == ["--request-timeout=5s"]
    url = urllib.parse.urlsplit(argv[3])
    assert url.path == "/api/v1/nodes"
    assert urllib.parse.parse_qs(url.query) == {"fieldSelector": [f"metadata.name={name}"]}


def test_without_a_name_it_lists_nodes_as_before():
    argv = _args(F.build_facts_script(["10.244.1.2"]))
    assert argv == ["kubectl", "get", "nodes", "-o", "name", "--request-timeout=5s"]


def test_a_name_cannot_reach_other_placeholders():
    s = F.build_facts_script([], node_name="__NONCE__ __SECTION_TIMEOUT__ __CNI_SED__")
    assert "__NONCE__" in urllib.parse.unquote(s) and "__KUBECTL_GET__" not in s
    assert f"N={F.script_nonce(s)}" in s and "timeout -s KILL 10" in s
