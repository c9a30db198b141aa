"""SSH as production has it, end to end over the lab (issue #14, "Done when" item 2): every node's
host key is certified by a test CA (`lab up --host-ca`), the nodes are reached as `ops` only through
the bastion, and the ssh_config the product reads is a main file that `Include`s a second file
holding the node entries, each reached by `ProxyCommand ssh -F CFG -W %h:%p bastion` (the OpenSSH
client runs the hop; the bastion's own key is in the known_hosts that hop uses). The known_hosts of
the nodes holds ONLY `@cert-authority * CA`. The real CLI (`diagnose --json --ssh-config
--kubeconfig`) must read every node, find the injected faults on their nodes, append nothing to
either known_hosts, and the nodes' sshd logs must show every login coming from the bastion.
One lab, built once; torn down by its fixture (`lab down`: by pid and name)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lab_helpers import running_lab

pytestmark = pytest.mark.lab
REPO = str(Path(__file__).resolve().parents[1])

# fault -> (node, the finding it gives there) as in tests/test_diagnose_lab.py: one per node
FAULTS = {
    "forward-drop": ("node-1", "FORWARD_DROP"),
    "ip-forward-off": ("node-2", "IP_FORWARD_OFF"),
    "br-netfilter-off": ("node-3", "BR_NETFILTER_OFF"),
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> Path:
    key = tmp_path_factory.mktemp("hostca") / "host_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cfx-test-host-ca", "-f",
                    str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def lab(tmp_path_factory, ca):
    with running_lab(tmp_path_factory, prefix="prodssh", nodes=3,
                     faults=[f"{f}:{n}" for f, (n, _) in FAULTS.items()], ssh_user="ops",
                     bastion=True, host_ca=ca, timeout=240) as handle:
        yield handle


def _accepted(node_dir: str) -> list[tuple[str, str]]:
    text = (Path(node_dir) / "sshd.log").read_text(errors="replace")
    return re.findall(r"Accepted \S+ for (\S+) from (\S+) port", text)


def _write_config(lab, ca: Path, d: Path) -> tuple[Path, Path, Path]:
    """main config (bastion + Include), nodes file, the nodes' known_hosts (CA only) and the
    bastion's known_hosts (its own key, from the lab's known_hosts)."""
    b = lab.info["bastion"]
    kh_nodes, kh_bastion = d / "known_hosts.nodes", d / "known_hosts.bastion"
    kh_nodes.write_text("@cert-authority * " + " ".join(Path(f"{ca}.pub").read_text().split()[:2])
                        + "\n")
    bastion_line = [x for x in lab.known_hosts.read_text().splitlines()
                    if x.split()[0].split(",")[0] == "bastion"]
    assert len(bastion_line) == 1, lab.known_hosts.read_text()
    kh_bastion.write_text(bastion_line[0] + "\n")
    cfg, included = d / "ssh_config", d / "conf.d" / "nodes.conf"
    included.parent.mkdir()
    common = (f"  User ops\n  IdentityFile {lab.key}\n  IdentitiesOnly yes\n"
              f"  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n")
    included.write_text("".join(
        f"Host {n['name']}\n  HostName {n['ip']}\n{common}  UserKnownHostsFile {kh_nodes}\n"
        f"  ProxyCommand ssh -F {cfg} -W %h:%p bastion\n\n" for n in lab.nodes))
    cfg.write_text(f"Include {included}\n\nHost bastion\n  HostName {b['ip']}\n{common}"
                   f"  UserKnownHostsFile {kh_bastion}\n  BatchMode yes\n")
    return cfg, kh_nodes, kh_bastion


def test_diagnose_through_include_proxycommand_and_a_host_ca_reads_every_node(lab, ca,
                                                                             tmp_path) -> None:
    b = lab.info["bastion"]
    assert lab.info.get("host_ca") == str(ca)
    for n in lab.nodes:  # each node's sshd serves its own key, certified by the CA
        nd = Path(n["node_dir"])
        assert f"HostCertificate {nd / 'ssh_host_ed25519_key'}-cert.pub" in (
            nd / "sshd_config").read_text()
        cert = subprocess.run(["ssh-keygen", "-L", "-f", str(nd / "ssh_host_ed25519_key-cert.pub")],
                              capture_output=True, text=True, check=True).stdout
        assert "host certificate" in cert and n["ip"] in cert and n["name"] in cert, cert
    cfg, kh_nodes, kh_bastion = _write_config(lab, ca, tmp_path)
    before_kh = (kh_nodes.read_text(), kh_bastion.read_text())
    before = {n["name"]: len(_accepted(n["node_dir"])) for n in lab.nodes}
    env = {**os.environ, "PYTHONPATH": REPO}
    r = subprocess.run([sys.executable, "-m", "clusterfix_tui", "diagnose", "--json",
                        "--ssh-config", str(cfg), "--kubeconfig", str(lab.kubeconfig)],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        pytest.fail(f"diagnose printed no JSON (rc {r.returncode}): {r.stdout[-2000:]}"
                    f"{r.stderr[-3000:]}")
    assert not out.get("node_errors"), out.get("node_errors")
    got = {(f["code"], f.get("node")) for f in out["findings"]}
    bad = [c for c in got if c[0].startswith(("SSH_", "SUDO", "HOST_KEY"))]
    assert not bad, (bad, r.stderr[-3000:])
    names = {n["name"] for n in lab.nodes}
    assert set(out["nodes"]) == names, out["nodes"]
    for name, node in out["nodes"].items():  # each node read, with its facts
        assert node["read"] and node["facts"] and not node["error"], (name, node)
    for fault, (node, code) in FAULTS.items():
        assert (code, node) in got, (fault, node, sorted(got))
    # trusted through the CA: nothing appended to the nodes' known_hosts (nor to the hop's)
    assert (kh_nodes.read_text(), kh_bastion.read_text()) == before_kh
    # every login of this diagnosis is ops, from the bastion's address: no node reached directly
    for n in lab.nodes:
        new = _accepted(n["node_dir"])[before[n["name"]]:]
        assert new, f"{n['name']}: no login seen in its sshd log"
        assert all(who == ("ops", b["ip"]) for who in new), (n["name"], new)
