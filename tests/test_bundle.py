"""Evidence bundles (issue #16): take, replay offline, diff; redacted, 0600, verified."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from diag_fakes import ReplayAPI as RecordedAPI
from diag_fakes import ReplayShells as RecordedShells
from diag_fakes import load, scenarios
from lab_helpers import lab_fixture

from clusterfix_tui.core import bundle as B
from clusterfix_tui.core.diagnose import diagnose
from clusterfix_tui.transports.replay import (
    RecordingAPI,
    RecordingShells,
    ReplayAPI,
    ReplayShells,
)

REPO = str(Path(__file__).resolve().parents[1])


def _keys(findings) -> list[tuple]:
    return sorted((f["code"], f["node"], f["severity"], tuple(f["evidence"])) for f in findings)


def _take(api, shells, path: Path, anonymize: bool = False) -> tuple[B.Bundle, list[dict]]:
    rapi, rshells = RecordingAPI(api), RecordingShells(shells)
    rapi.describe()
    rapi.version()
    d = diagnose(rapi, rshells)
    live = d.to_dict()
    b = B.build(rapi.calls, rshells.nodes, live, tool_version="test", anonymize=anonymize)
    B.write(b, path)
    return b, live["findings"]


# -- the recorded lab scenarios go through the bundle writer, reader and replay ------------------

@pytest.mark.parametrize("name", scenarios())
def test_every_recorded_scenario_replays_from_a_bundle(name: str, tmp_path: Path) -> None:
    rec = load(name)
    path = tmp_path / "b.tgz"
    _, direct = _take(RecordedAPI(rec), RecordedShells(rec), path)
    back = B.read(path)
    replayed = diagnose(ReplayAPI(back), ReplayShells(back))
    assert _keys(f.to_dict() for f in replayed.findings) == _keys(direct)
    assert _keys(back.findings) == _keys(direct)
    # the recording's expected codes (written when it was recorded on the lab) still come out
    for code, node in rec.get("expected") or ():
        assert any(f["code"] == code and f["node"] == node for f in direct), (code, node)


def test_bundle_file_is_private_and_verified(tmp_path: Path) -> None:
    rec = load("healthy")
    path = tmp_path / "b.tgz"
    _take(RecordedAPI(rec), RecordedShells(rec), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    b = B.read(path)
    assert b.manifest["schema_version"] == B.SCHEMA_VERSION and b.manifest["nodes"]
    # a changed member is refused, not replayed
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    members["api.json"] = members["api.json"].replace(b'"Ready"', b'"NotReady"', 1)
    bad = tmp_path / "bad.tgz"
    with tarfile.open(bad, "w:gz") as tar:
        for n, data in members.items():
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(B.BundleError, match="checksum"):
        B.read(bad)
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not a bundle")
    with pytest.raises(B.BundleError):
        B.read(junk)


def test_a_node_that_could_not_be_read_replays_as_unreachable(tmp_path: Path) -> None:
    from clusterfix_tui.core.ports import NodeUnreachable

    rec = load("healthy")
    node = rec["nodes"][1]["metadata"]["name"]
    shells = RecordedShells(rec, errors={node: NodeUnreachable(f"{node}: connection refused")})
    path = tmp_path / "b.tgz"
    _, direct = _take(RecordedAPI(rec), shells, path)
    assert any(f["code"] == "SSH_UNREACHABLE" and f["node"] == node for f in direct)
    back = B.read(path)
    replayed = diagnose(ReplayAPI(back), ReplayShells(back))
    assert _keys(f.to_dict() for f in replayed.findings) == _keys(direct)


def test_replay_refuses_writes_and_touches_no_network() -> None:
    from clusterfix_tui.core.ports import APIError
    from clusterfix_tui.transports.replay import OfflineProber

    b = B.Bundle(manifest={}, api={}, nodes={}, diagnosis={})
    with pytest.raises(APIError):
        ReplayAPI(b).delete_pod("kube-system", "x")
    with pytest.raises(APIError, match="not in the bundle"):
        ReplayAPI(b).list_nodes()
    assert OfflineProber().http("http://192.0.2.1:30096/", 1)[0] is None


# -- on a live all-faults lab ----------------------------------------------------------------------

lab = lab_fixture(nodes=3, faults="all")


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(cwd),
                          env={**os.environ, "PYTHONPATH": REPO})


def _members_text(path: Path) -> str:
    with tarfile.open(path, "r:gz") as tar:
        return "\n".join(tar.extractfile(m).read().decode() for m in tar if m.isfile())


def _secrets(lab) -> list[str]:
    """Every credential the lab holds: the admin kubeconfig's, and any in the nodes' kubeconfigs
    (tokens, client keys, certificate data)."""
    import yaml

    out = []
    cfgs = [yaml.safe_load(Path(lab.kubeconfig).read_text())]
    for n in lab.nodes:
        for f in ("/root/.kube/config", "/etc/kubernetes/kubelet.conf",
                  "/etc/kubernetes/admin.conf"):
            r = lab.exec(n["name"], f"cat {f}", check=False)
            if r.returncode == 0 and r.stdout.strip():
                cfgs.append(yaml.safe_load(r.stdout))
    for cfg in cfgs:
        for u in (cfg or {}).get("users") or ():
            for k, v in ((u or {}).get("user") or {}).items():
                if k in ("token", "client-key-data", "client-certificate-data", "password") \
                        and isinstance(v, str) and len(v) >= 8:
                    out.append(v)
    return out


@pytest.mark.lab
def test_bundle_of_the_all_faults_lab_replays_the_same_findings(lab, tmp_path: Path) -> None:
    path = tmp_path / "all.tgz"
    r = _cli("bundle", "--lab-dir", str(lab.dir), "-o", str(path), "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replayed offline: the same findings" in r.stdout
    taken = B.read(path)
    assert len(taken.findings) >= 8  # the catalog's faults, found when it was taken
    r = _cli("diagnose", "--bundle", str(path), "--json", "-q", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    replayed = json.loads(r.stdout)
    assert _keys(replayed["findings"]) == _keys(taken.findings)
    # and a live diagnosis now finds the same problems on the same nodes
    r = _cli("diagnose", "--lab-dir", str(lab.dir), "--json", "-q", cwd=tmp_path)
    live = json.loads(r.stdout)
    assert sorted((f["code"], f["node"]) for f in live["findings"]) == \
        sorted((f["code"], f["node"]) for f in replayed["findings"])
    # no credential of the lab is in it
    text = _members_text(path)
    secrets = _secrets(lab)
    assert secrets, "the lab's kubeconfig has a credential to look for"
    for s in secrets:
        assert s not in text


@pytest.mark.lab
def test_anonymized_bundle_names_no_node_and_no_lab_address(lab, tmp_path: Path) -> None:
    path = tmp_path / "anon.tgz"
    r = _cli("bundle", "--lab-dir", str(lab.dir), "-o", str(path), "-q", "--anonymize",
             cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    text = _members_text(path)
    for n in lab.nodes:
        assert not re.search(rf"(?<![\w-]){re.escape(n['name'])}(?![\w-])", text), n["name"]
        assert n["ip"] not in text
    assert lab.info["bridge"]["address"] not in text


lab_diff = lab_fixture(nodes=2, faults="none", name="lab_diff")


@pytest.mark.lab
def test_bundle_diff_shows_the_finding_and_the_rule_that_appeared(lab_diff, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tgz", tmp_path / "b.tgz"
    assert _cli("bundle", "--lab-dir", str(lab_diff.dir), "-o", str(a), "-q",
                cwd=tmp_path).returncode == 0
    lab_diff.exec("node-2", "sysctl -qw net.ipv4.ip_forward=0 && "
                  "iptables-legacy -w 5 -t filter -N CFX-DIFF-TEST")
    try:
        assert _cli("bundle", "--lab-dir", str(lab_diff.dir), "-o", str(b), "-q",
                    cwd=tmp_path).returncode == 0
        r = _cli("bundle", "diff", str(a), str(b), "--json", cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        d = json.loads(r.stdout)
        assert [(f["code"], f["node"]) for f in d["findings_appeared"]] == \
            [("IP_FORWARD_OFF", "node-2")]
        assert d["findings_gone"] == [] and list(d["nodes"]) == ["node-2"]
        changed = "\n".join("\n".join(v) for v in d["nodes"]["node-2"]["sections"].values())
        assert "+:CFX-DIFF-TEST" in changed.replace(" ", "") or "CFX-DIFF-TEST" in changed
        same = _cli("bundle", "diff", str(a), str(a), cwd=tmp_path)
        assert same.returncode == 0 and "no differences" in same.stdout
    finally:
        lab_diff.exec("node-2", "sysctl -qw net.ipv4.ip_forward=1; "
                      "iptables-legacy -w 5 -t filter -X CFX-DIFF-TEST", check=False)
