"""Outputs hold no secrets and are private (issue #14 item 7): diagnose --json / text and
validate --json / --junit go through the journal's redactor; files are written 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from clusterfix_tui.core import bundle as B

REPO = str(Path(__file__).resolve().parents[1])
SECRET = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXBheWxvYWQtZm9yLXRlc3Q.c2lnbmF0dXJlLWJ5dGVz"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clusterfix_tui", *args], capture_output=True,
                          text=True, timeout=120, cwd=str(cwd),
                          env={**os.environ, "PYTHONPATH": REPO})


def _bundle_with_a_node_printing_a_token(tmp_path: Path) -> Path:
    """A bundle written as is (B.write does not redact; B.build would): node-1's facts run
    failed with a bearer token in its stderr, which FACTS_UNREADABLE quotes as evidence."""
    node = {"metadata": {"name": "node-1", "uid": "u1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
                       "conditions": [{"type": "Ready", "status": "True"}]},
            "spec": {"podCIDR": "10.244.0.0/24"}}
    api = {B.call_key("list_nodes", (), {}): {"ok": [node]}}
    cap = B.NodeCapture(node="node-1", address="192.0.2.10", nonce="n0nce", stdout="",
                        stderr=f"curl: Authorization: Bearer {SECRET}\n", exit_code=1)
    path = tmp_path / "b.tgz"
    B.write(B.Bundle(manifest={"schema_version": B.SCHEMA_VERSION}, api=api,
                     nodes={"node-1": cap}, diagnosis={}), path)
    return path


def test_diagnose_output_is_redacted(tmp_path: Path) -> None:
    path = _bundle_with_a_node_printing_a_token(tmp_path)
    r = _cli("diagnose", "--bundle", str(path), "--json", "-q", cwd=tmp_path)
    doc = json.loads(r.stdout)
    unreadable = [f for f in doc["findings"] if f["code"] == "FACTS_UNREADABLE"]
    assert unreadable and any("Bearer" in e for e in unreadable[0]["evidence"])  # it is quoted
    assert SECRET not in r.stdout and "[REDACTED]" in r.stdout
    r = _cli("diagnose", "--bundle", str(path), "-q", cwd=tmp_path)
    assert "FACTS_UNREADABLE" in r.stdout and SECRET not in r.stdout


def test_validate_junit_is_private(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        f"users: [{{name: u, user: {{token: {SECRET}}}}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    junit = tmp_path / "out.xml"
    r = _cli("validate", "--kubeconfig", str(kubeconfig), "--junit", str(junit), "--json",
             cwd=tmp_path)
    assert r.returncode == 2  # the API does not answer: could not validate
    assert stat.S_IMODE(os.stat(junit).st_mode) == 0o600
    assert "testsuite" in junit.read_text() and SECRET not in junit.read_text()
    assert SECRET not in r.stdout + r.stderr
