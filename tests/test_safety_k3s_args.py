"""k3s's node-args (k3s.io/node-args: its command line with /etc/rancher/k3s/config.yaml and
config.yaml.d/*.yaml merged in, `--name=value` split in two; k3s pkg/nodeconfig getNodeArgs):
`--kube-proxy-arg` repeats (a `kube-proxy-arg:` list in config.yaml is one pair per item), and a
single-valued flag given twice takes the last (the command line's come after the file's). The old
code read only the first `--kube-proxy-arg` and the first of any flag."""

from __future__ import annotations

import json

from clusterfix_tui.core.shape import _arg_value, _component_arg, detect_shape
from clusterfix_tui.core.snapshot import ClusterSnapshot, node_info

# The k3s_args of a real k3os config (github.com/alexwaibel/home-cluster-proxmox,
# server/packer/templates/k3os-config.pkrtpl.hcl), as k3s records them in k3s.io/node-args; two
# --kube-proxy-arg, neither of them the mode. SYNTHESISED: one more item, a config.yaml
# `kube-proxy-arg: [proxy-mode=ipvs]` entry, appended as k3s merges it.
REAL_K3OS_ARGS = [
    "server", "--disable", "traefik", "--disable", "servicelb", "--disable", "metrics-server",
    "--disable", "local-storage", "--kube-controller-manager-arg", "address=0.0.0.0",
    "--kube-controller-manager-arg", "bind-address=0.0.0.0", "--kube-proxy-arg",
    "metrics-bind-address=0.0.0.0", "--kube-scheduler-arg", "address=0.0.0.0",
    "--kube-scheduler-arg", "bind-address=0.0.0.0", "--kube-scheduler-arg",
    "feature-gates=MixedProtocolLBService=true", "--kube-proxy-arg",
    "feature-gates=MixedProtocolLBService=true", "--kube-controller-manager-arg",
    "feature-gates=MixedProtocolLBService=true", "--kube-apiserver-arg",
    "feature-gates=MixedProtocolLBService=true", "--kubelet-arg",
    "feature-gates=MixedProtocolLBService=true", "--etcd-expose-metrics", "true",
]


def _shape(args: list[str]):
    node = {"metadata": {"name": "k3s-1", "annotations": {
        "k3s.io/node-args": json.dumps(args),
        "flannel.alpha.coreos.com/backend-type": "vxlan"}},
        "spec": {"podCIDR": "10.42.0.0/24"}, "status": {}}
    snap = ClusterSnapshot(nodes={"k3s-1": node_info(node)})
    return detect_shape(snap, {})


def test_proxy_mode_from_a_later_kube_proxy_arg() -> None:
    shape = _shape(REAL_K3OS_ARGS + ["--kube-proxy-arg", "proxy-mode=ipvs"])
    assert shape.kube_proxy_mode == "ipvs"


def test_the_last_proxy_mode_wins_and_dashed_forms_are_read() -> None:
    args = ["server", "--kube-proxy-arg", "proxy-mode=iptables", "--kube-proxy-arg",
            "--proxy-mode=nftables"]
    assert _component_arg(args, "--kube-proxy-arg", "proxy-mode") == "nftables"
    assert _shape(args).kube_proxy_mode == "nftables"
    assert _component_arg(REAL_K3OS_ARGS, "--kube-proxy-arg", "proxy-mode") is None


def test_single_valued_flag_takes_the_last() -> None:
    # config.yaml `flannel-backend: vxlan`, then `--flannel-backend=none` on the command line
    args = ["server", "--flannel-backend", "vxlan", "--flannel-backend", "none"]
    assert _arg_value(args, "--flannel-backend") == "none"


# -- `iptables-save -c`: "[packets:bytes] -A ..." -------------------------------------------------

def test_save_with_counters_parses_as_without() -> None:
    """The real rules of projectcalico/felix#2606 (its description: two FORWARD rules with their
    [packets:bytes] counters, tests/data/realworld/calico-felix-2606-forward-counters.txt) in an
    `iptables-save -c` table (SYNTHESISED WRAPPER: *filter with its chain lines): read as the
    same rules, spec without the counters. The old parser called each line "not understood" and
    kept no rule."""
    from pathlib import Path

    from clusterfix_tui.core import parsers as P

    real = (Path(__file__).parent / "data" / "realworld" /
            "calico-felix-2606-forward-counters.txt").read_text()
    assert real.startswith("[20:2039] -A FORWARD")

    def wrap(body: str) -> str:
        return ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [5:300]\n:OUTPUT ACCEPT [0:0]\n"
                ":cali-FORWARD - [0:0]\n" + body + "COMMIT\n")

    stripped = "".join(ln.split("] ", 1)[1] + "\n" for ln in real.splitlines() if ln.strip())
    got, want = P.parse_iptables_save(wrap(real)), P.parse_iptables_save(wrap(stripped))
    assert not got.errors and not want.errors
    rules = got.table("filter").rules_in("FORWARD")
    assert [r.spec for r in rules] == [r.spec for r in want.table("filter").rules_in("FORWARD")]
    assert [r.target for r in rules] == ["cali-FORWARD", "ACCEPT"]
    assert not rules[0].spec.startswith("[")
