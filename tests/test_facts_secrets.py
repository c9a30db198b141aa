"""CNI config dirs hold credentials (calico's kubeconfig with its token, `k8s_auth_token`, etcd
passwords): the facts script reads them field by field ON THE NODE (#14 item 7), so the secrets
never leave it: a network config's JSON comes back with every credential-like value blanked, any
other file of the dir only with its `server:` lines."""

from __future__ import annotations

import json
import subprocess

import pytest
from lab_helpers import lab_fixture

from clusterfix_tui.core.facts import CNI_SECRET_SED, NOT_READ

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImNmeCJ9.cfx-planted-token.c2lnbmF0dXJl"
CALICO_CONFLIST = {
    "name": "k8s-pod-network", "cniVersion": "0.3.1",
    "plugins": [
        {"type": "calico", "log_level": "info", "datastore_type": "kubernetes", "mtu": 1440,
         "ipam": {"type": "calico-ipam"},
         "policy": {"type": "k8s", "k8s_auth_token": TOKEN},
         "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
         "etcd_password": "cfx-planted-etcd-password",
         "client-key-data": "Y2Z4LXBsYW50ZWQta2V5LWRhdGE=",
         "note": f"Authorization: Bearer {TOKEN}"},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
    ],
}
CALICO_KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://10.96.0.1:443
    certificate-authority-data: Y2Z4LXBsYW50ZWQtY2E=
users:
- name: calico
  user:
    token: {TOKEN}
contexts:
- name: calico-context
  context: {{cluster: local, user: calico}}
current-context: calico-context
"""
SECRETS = (TOKEN, "cfx-planted-etcd-password", "Y2Z4LXBsYW50ZWQta2V5LWRhdGE=",
           "Y2Z4LXBsYW50ZWQtY2E=", "cfx-planted-token")


@pytest.mark.parametrize("indent", [None, 2])
def test_the_node_side_filter_blanks_credentials_and_keeps_what_the_checks_read(
        tmp_path, indent) -> None:
    conf = tmp_path / "10-calico.conflist"
    conf.write_text(json.dumps(CALICO_CONFLIST, indent=indent))
    out = subprocess.run(["sed", "-E", CNI_SECRET_SED, str(conf)], capture_output=True,
                         text=True, check=True).stdout
    assert not [s for s in SECRETS if s in out], out
    doc = json.loads(out)  # still JSON: the checks parse it
    calico = doc["plugins"][0]
    assert [p["type"] for p in doc["plugins"]] == ["calico", "portmap"]
    assert calico["kubernetes"]["kubeconfig"] == "/etc/cni/net.d/calico-kubeconfig"
    assert calico["policy"] == {"type": "k8s", "k8s_auth_token": NOT_READ}
    assert calico["etcd_password"] == calico["client-key-data"] == calico["note"] == NOT_READ


lab = lab_fixture(nodes=2, faults="none")


@pytest.mark.lab
def test_calico_credentials_in_the_cni_dir_never_leave_the_node(lab) -> None:
    from clusterfix_tui.core.diagnose import diagnose
    from clusterfix_tui.runtime import build_runtime

    planted = {"/etc/cni/net.d/99-zz-calico.conflist": json.dumps(CALICO_CONFLIST, indent=2),
               "/etc/cni/net.d/calico-kubeconfig": CALICO_KUBECONFIG}
    for path, text in planted.items():
        lab.exec("node-2", f"cat > {path}", input=text)
    try:
        with build_runtime(lab_dir=str(lab.dir)) as rt:
            d = diagnose(rt.api, rt.shells)
        assert set(d.facts) == {"node-1", "node-2"} and not d.node_errors, d.node_errors
        facts = d.facts["node-2"]
        # the planted files were read (else the scan below proves nothing) ...
        conf = facts.cni_configs["/etc/cni/net.d/99-zz-calico.conflist"]
        assert conf is not None and conf["plugins"][0]["type"] == "calico"
        assert conf["plugins"][0]["policy"]["k8s_auth_token"] == NOT_READ
        kc = facts.section("cni_conf", "/etc/cni/net.d/calico-kubeconfig")
        assert kc is not None and kc.stdout.strip() == "server: https://10.96.0.1:443"
        # ... and no secret came back, in any section of any node, nor in --json
        raw = json.dumps({n: {k: [s.stdout, s.stderr] for k, s in f.sections.items()}
                          for n, f in d.facts.items()})
        assert not [s for s in SECRETS if s in raw]
        assert not [s for s in SECRETS if s in json.dumps(d.to_dict(), default=str)]
    finally:
        lab.exec("node-2", "rm -f " + " ".join(planted), check=False)
