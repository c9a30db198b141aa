"""Secrets never reach the journal, the reports, the terminal or the screenshots (issue 8, point 5).

A full headless session runs on a lab with faults: `clusterfix-tui fix --yes --lab-dir D
--journal J --report R` as a subprocess, then `report --format F` for every format. The secrets
are the lab's: the API token in D/kubeconfig and the SSH private key D/id_ed25519. To make the
test able to fail, they are also PLANTED where the tool does read and print: a file in every
node's /etc/cni/net.d (the cni_bridge step's snapshot action cats that directory into the journal)
holding the token, `client-key-data` (the private key, base64) and the PEM key itself. So the
journal would carry them if redaction were gone (checked: see the note in the report).
Also: journal and report files are created with mode 0600.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from trust_helpers import REPO, cli

pytestmark = pytest.mark.lab
PLANTED = "/etc/cni/net.d/99-zz-cfx-secrets.conflist"
PLANTED_PEM = "/etc/cni/net.d/99-zz-cfx-key.pem"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from lab_helpers import running_lab

    with running_lab(tmp_path_factory, nodes=3,
                     faults="cni-bridge-conflict,ip-forward-off,forward-drop") as handle:
        yield handle


def secrets_of(lab) -> dict[str, str]:
    d = Path(lab.info["dir"])
    kc = yaml.safe_load((d / "kubeconfig").read_text())
    out: dict[str, str] = {}
    for u in kc.get("users") or ():
        user = u.get("user") or {}
        if user.get("token"):
            out["kubeconfig token"] = user["token"]
        for k in ("client-key-data", "client-certificate-data"):
            if user.get(k):
                out[f"kubeconfig {k}"] = user[k]
                out[f"kubeconfig {k} (decoded)"] = base64.b64decode(user[k]).decode()
    pem = (d / "id_ed25519").read_text()
    out["ssh private key"] = pem
    body = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    for i, ln in enumerate(body):
        if len(ln) >= 16:
            out[f"ssh private key line {i}"] = ln
    out["ssh private key (base64)"] = base64.b64encode(pem.encode()).decode()
    assert "kubeconfig token" in out and len(body) >= 3
    return out


def needles(secrets: dict[str, str]) -> dict[str, str]:
    """What to look for: each secret, and for long ones a 24-character slice (a secret cut in
    half by truncation still leaks)."""
    out = {}
    for name, value in secrets.items():
        if "\n" not in value and (len(value) >= 16 or name == "kubeconfig token"):
            out[name] = value
        if len(value) > 40 and "\n" not in value:
            out[name + " [slice]"] = value[8:32]
    return out


def scan(name: str, text: str, ns: dict[str, str]) -> list[str]:
    return [f"{what} in {name}" for what, value in ns.items() if value and value in text]


@pytest.fixture(scope="module")
def session(lab, tmp_path_factory):
    secrets = secrets_of(lab)
    token = secrets["kubeconfig token"]
    key_b64 = secrets["ssh private key (base64)"]
    planted = json.dumps({
        "cniVersion": "0.3.1", "name": "zz-cfx-secrets", "plugins": [{"type": "loopback"}],
        "token": token, "client-key-data": key_b64,
        "note": "Authorization: Bearer " + token,
        "key": secrets["ssh private key"],
    }, indent=1)
    for n in lab.info["nodes"]:
        lab.exec(n["name"], f"mkdir -p /etc/cni/net.d && cat > {PLANTED}", input=planted)
        # the raw PEM too: printed line by line, where one-line-at-a-time redaction cannot
        # see the BEGIN/END around a body line
        lab.exec(n["name"], f"cat > {PLANTED_PEM}", input=secrets["ssh private key"])
    out = tmp_path_factory.mktemp("secrets")
    journal, report = out / "session.jsonl", out / "report.md"
    old_umask = os.umask(0o022)  # a permissive umask must not widen the files
    try:
        p = cli("fix", "--yes", "--lab-dir", lab.info["dir"], "--journal", str(journal),
                "--report", str(report), "--wait", "20", timeout=400)
    finally:
        os.umask(old_umask)
    reports = {}
    for fmt in ("md", "html", "json", "junit"):
        dest = out / f"report.{fmt}"
        r = cli("report", "--journal", str(journal), "--format", fmt, "-o", str(dest))
        assert r.returncode == 0, r.stderr[-2000:]
        reports[fmt] = (dest, r)
    anon = out / "report-anon.md"
    r = cli("report", "--journal", str(journal), "--format", "md", "--anonymize", "-o", str(anon))
    assert r.returncode == 0, r.stderr[-2000:]
    reports["md --anonymize"] = (anon, r)
    yield {"fix": p, "journal": journal, "report": report, "reports": reports,
           "secrets": secrets}


def test_the_planted_secrets_did_reach_the_tool(session) -> None:
    """Else the scan below proves nothing: the cni_bridge snapshot read the planted file."""
    events = [json.loads(x) for x in session["journal"].read_text().splitlines()]
    ends = [e for e in events if e["type"] == "command_end" and PLANTED in (e.get("stdout") or "")]
    assert ends, "no command output in the journal shows the planted file"
    text = "\n".join(e["stdout"] for e in ends)
    assert "[REDACTED]" in text


def test_no_secret_in_journal_reports_or_terminal(session) -> None:
    ns = needles(session["secrets"])
    leaks: list[str] = []
    leaks += scan("journal", session["journal"].read_text(), ns)
    leaks += scan("--report", session["report"].read_text(), ns)
    for fmt, (path, proc) in session["reports"].items():
        leaks += scan(f"report {fmt}", Path(path).read_text(), ns)
        leaks += scan(f"report {fmt} stdout/stderr", proc.stdout + proc.stderr, ns)
    fix = session["fix"]
    leaks += scan("fix stdout", fix.stdout, ns)
    leaks += scan("fix stderr", fix.stderr, ns)
    assert "Traceback" not in fix.stderr, fix.stderr[-3000:]
    assert not leaks, leaks
    # the session did real work (else there was nothing to leak)
    events = [json.loads(x) for x in session["journal"].read_text().splitlines()]
    assert sum(1 for e in events if e["type"] == "command_end") >= 5


def test_journal_and_reports_are_0600(session) -> None:
    paths = [session["journal"], session["report"]] + [p for p, _ in session["reports"].values()]
    for p in paths:
        mode = stat.S_IMODE(os.stat(p).st_mode)
        assert mode == 0o600, f"{p} has mode {oct(mode)}"


def test_no_key_material_in_screenshots() -> None:
    """The UI engineer's recorded screenshots (SVG) and any exported screenshots hold no key
    material or unredacted token fields."""
    svgs = list(REPO.glob("tests/**/*.svg")) + list(REPO.glob("screenshots/**/*.svg")) + \
        list(REPO.glob("docs/**/*.svg"))
    assert svgs, "the UI snapshots (tests/__snapshots__) are what this checks: none found"
    bad = re.compile(r"BEGIN [A-Z ]*PRIVATE KEY|client-key-data:\s*[A-Za-z0-9+/]{20}|"
                     r"token:\s*(?!\[REDACTED)[A-Za-z0-9._-]{16,}")
    hits = [str(p) for p in svgs if bad.search(p.read_text(errors="replace"))]
    assert not hits, hits


def test_log_pane_redaction_blanks_a_private_key_streamed_line_by_line(tmp_path) -> None:
    """The wizard's log pane gets command output one line at a time (step screen ->
    ClusterfixApp.redact): no line of a private key printed by a node may survive, including
    the short last body line that per-line pattern matching cannot recognise."""
    import subprocess

    from clusterfix_tui.ui.app import ClusterfixApp

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    pem = (tmp_path / "k").read_text().splitlines()
    app = ClusterfixApp(session=object())
    shown = [app.redact(line) for line in ["before", *pem, "after"]]
    body = [ln for ln in pem if not ln.startswith("-----")]
    leaked = [ln for ln in body if any(ln in s for s in shown)]
    assert not leaked, leaked
    assert shown[0] == "before" and shown[-1] == "after"
