"""`diagnose` and `fix --dry-run` change nothing, on any node or in the API (issue 8, point 7).

On a 3-node lab with every fault injected (so every step has a plan with mutating actions), the
state of every node is snapshotted twice before (to learn what the lab's own agents change by
themselves), then `clusterfix-tui diagnose` and `clusterfix-tui fix --dry-run` run as
subprocesses over real SSH, then the state is snapshotted again. Node state: both iptables
backends, the nft ruleset, links/addresses/routes/permanent neighbours, the flannel.1 fdb,
/etc/cni/net.d (names and contents), /run/flannel, the sysctls the steps touch, the kubeconfig
files, the iptables alternative, the persisted sysctl/module drop-ins and the backup directory.
API state: every pod's uid (a deleted pod comes back with a new one), DaemonSets' and
Deployments' generation and pod-template annotations, ConfigMaps' resourceVersions.
"""

from __future__ import annotations

import json
import time

import pytest
from trust_helpers import cli

pytestmark = pytest.mark.lab

SNAPSHOT = r"""
sec() { echo "@@ $1"; }
sec legacy; iptables-legacy-save 2>&1 | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
sec nft; iptables-nft-save 2>&1 | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//'
sec ruleset; nft list ruleset 2>&1 | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'
sec link; ip -d -o link show 2>&1 | sed -E 's/ state [A-Z]+//; s/ qlen [0-9]+//'
sec addr; ip -o addr show 2>&1 | sed -E 's/valid_lft.*//'
sec route; ip route show table all 2>&1
sec neigh; ip neigh show nud permanent 2>&1
sec fdb; bridge fdb show dev flannel.1 2>&1
sec cni; ls -1 /etc/cni/net.d 2>&1; for f in /etc/cni/net.d/*; do echo "# $f"; cat "$f" 2>&1; done
sec flannel; ls -1 /run/flannel 2>&1; cat /run/flannel/* 2>&1
sec sysctl; sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.forwarding 2>&1
sec kubeconfig; md5sum /root/.kube/config /etc/kubernetes/* 2>&1
sec alternatives; readlink -f /etc/alternatives/iptables /etc/alternatives/ip6tables 2>&1
sec dropins; cat /etc/sysctl.d/99-clusterfix-kubernetes.conf /etc/modules-load.d/clusterfix-kubernetes.conf 2>&1
true
"""
MUST_BE_STABLE = {"legacy", "nft", "cni", "sysctl", "kubeconfig", "alternatives", "dropins",
                  "route", "addr"}
# /var/backups is the host's, shared by every lab on the machine (other tests write there too):
# instead of a listing, the exact backup directories the dry run planned must not exist.


def node_state(lab) -> dict[tuple[str, str], tuple[str, ...]]:
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    for n in lab.info["nodes"]:
        text = lab.exec(n["name"], SNAPSHOT, timeout=60).stdout
        sec = None
        lines: list[str] = []
        for line in text.splitlines() + ["@@ END"]:
            if line.startswith("@@ "):
                if sec is not None:
                    out[(n["name"], sec)] = tuple(sorted(lines))
                sec, lines = line[3:], []
            else:
                lines.append(line)
    return out


def api_state(lab) -> dict[str, str]:
    from kubernetes import client, config

    api = client.ApiClient(config.new_client_from_config(config_file=f"{lab.info['dir']}/kubeconfig")
                           .configuration)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    out: dict[str, str] = {}
    pods = json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]
    for p in pods:
        m = p["metadata"]
        out[f"pod {m['namespace']}/{m['name']}"] = m.get("uid", "")
    for kind, lister in (("ds", apps.list_daemon_set_for_all_namespaces),
                         ("deploy", apps.list_deployment_for_all_namespaces)):
        for o in json.loads(lister(_preload_content=False).data)["items"]:
            m = o["metadata"]
            tmpl = ((o.get("spec") or {}).get("template") or {}).get("metadata") or {}
            out[f"{kind} {m['namespace']}/{m['name']}"] = json.dumps(
                [m.get("generation"), tmpl.get("annotations"), o.get("spec", {}).get("template", {})
                 .get("spec", {}).get("containers")], sort_keys=True)
    for o in json.loads(core.list_config_map_for_all_namespaces(_preload_content=False).data)["items"]:
        m = o["metadata"]
        out[f"cm {m['namespace']}/{m['name']}"] = m.get("resourceVersion", "")
    for o in json.loads(core.list_node(_preload_content=False).data)["items"]:
        out[f"node {o['metadata']['name']}"] = json.dumps(o.get("spec"), sort_keys=True)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=3, faults="all") as handle:
        yield handle


def settled(lab, rounds: int = 15, pause: float = 2.0):
    """Two snapshots in a row with the same MUST_BE_STABLE sections (the lab settles after its
    faults are injected and its agents restart)."""
    prev = node_state(lab), api_state(lab)
    for _ in range(rounds):
        time.sleep(pause)
        cur = node_state(lab), api_state(lab)
        moving = [k for k in prev[0] if k[1] in MUST_BE_STABLE and prev[0][k] != cur[0].get(k)]
        if not moving:
            return prev, cur
        prev = cur
    return prev, cur


def test_diagnose_and_dry_run_change_nothing(lab, tmp_path) -> None:
    (before1, api1), (before2, api2) = settled(lab)
    volatile = {k for k in before1 if before1[k] != before2.get(k)}
    api_volatile = {k for k in api1 if api1[k] != api2.get(k)}
    assert not {k for k in volatile if k[1] in MUST_BE_STABLE}, (
        f"the lab changes these by itself; the test cannot judge them: {sorted(volatile)}")

    d = cli("diagnose", "--lab-dir", lab.info["dir"], "--json", "-q", timeout=180)
    assert d.returncode == 1, (d.returncode, d.stderr[-2000:])  # findings: the faults
    findings = json.loads(d.stdout)["findings"]
    journal = tmp_path / "dry.jsonl"
    f = cli("fix", "--dry-run", "--lab-dir", lab.info["dir"], "--journal", str(journal),
            timeout=240)
    assert "Traceback" not in f.stderr, f.stderr[-3000:]
    events = [json.loads(x) for x in journal.read_text().splitlines()]
    planned = [a for e in events if e["type"] == "plan" for a in e["plan"]["actions"]
               if a.get("mutating")]
    starts = [e for e in events if e["type"] == "command_start"]
    # the dry run had real mutations to (not) do, on every node with a fault
    assert len(planned) >= 5, f"the dry run planned too little to prove anything: {len(planned)}"
    assert {a["target"] for a in planned} >= {n["name"] for n in lab.info["nodes"]} - {"node-1"}
    assert all(e.get("dry_run") for e in starts if e.get("mutating", True)), \
        "a mutating command_start in a dry run is not marked dry_run"

    import re

    bdirs = sorted({(a["target"], m) for a in planned
                    for m in re.findall(r"/var/backups/clusterfix/[0-9TZ]+-[a-z_]+/[A-Za-z0-9._-]+",
                                        a["command"])})
    assert bdirs, "the plans name no backup directory"
    for node, path in bdirs:
        assert lab.exec(node, f"test -e {path} && echo EXISTS || true").stdout.strip() == "", \
            f"the dry run created {path} on {node}"
    after, api3 = node_state(lab), api_state(lab)
    changed = sorted(k for k in before2 if k not in volatile and after.get(k) != before2[k])
    detail = {f"{k[0]}:{k[1]}": sorted(set(after.get(k, ())) ^ set(before2[k]))[:6] for k in changed}
    assert not changed, f"diagnose / fix --dry-run changed node state: {detail}"
    api_changed = sorted(k for k in api2 if k not in api_volatile and api3.get(k) != api2[k])
    assert not api_changed, f"diagnose / fix --dry-run changed API objects: {api_changed}"
    checked = len([k for k in before2 if k not in volatile])
    print(f"\nTRUST-READONLY: {len(findings)} findings, {len(planned)} mutating actions planned "
          f"and not run; {checked} node sections and {len(api2) - len(api_volatile)} API objects "
          f"unchanged (volatile skipped: {sorted(volatile)}, {sorted(api_volatile)})")
