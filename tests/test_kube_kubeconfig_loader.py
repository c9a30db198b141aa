"""Our own read of the kubeconfig goes through libyaml's safe loader when PyYAML has it
(transports/kube.py, _safe_loader): the same documents as yaml.safe_load, the same refusals."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from clusterfix_tui.core.ports import KubeconfigError
from clusterfix_tui.transports import kube as K

CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUQK" * 12

DOCS = [
    # kubeadm-style, embedded data
    f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {CA}
    server: https://10.0.0.1:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {{}}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {CA}
    client-key-data: {CA}
""",
    # k3s-style, flow style, quoting, comments, anchors, an exec plugin with env and args
    """# k3s
apiVersion: v1
clusters: [{cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: false}, name: default}]
contexts:
  - &ctx
    context: {cluster: default, user: default, namespace: 'kube-system'}
    name: default
current-context: default
users:
  - name: default
    user:
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: aws
        args: ["eks", "get-token", "--cluster-name", "prod"]
        env:
          - {name: AWS_PROFILE, value: "on"}
        provideClusterInfo: yes
      token: |
        multi
        line
      password: 0777
      username: ~
""",
    "",
    "---\n...\n",
]


def test_the_loader_is_libyamls_safe_loader_when_pyyaml_has_it() -> None:
    if not getattr(yaml, "__with_libyaml__", False):
        assert K._safe_loader() is yaml.SafeLoader
        return
    assert K._safe_loader() is yaml.CSafeLoader


@pytest.mark.parametrize("text", DOCS)
def test_same_documents_as_safe_load(text: str) -> None:
    assert yaml.load(text, Loader=K._safe_loader()) == yaml.safe_load(text)  # noqa: S506


def test_python_tags_are_refused_as_by_safe_load(tmp_path: pathlib.Path) -> None:
    text = "clusters: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    path = tmp_path / "evil"
    path.write_text(text)
    with pytest.raises(KubeconfigError) as info:
        K._load_kubeconfig([str(path)])
    assert "not valid YAML" in str(info.value)


def test_a_read_kubeconfig_merges_as_before(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(DOCS[0])
    second.write_text(DOCS[1])
    doc = K._load_kubeconfig([str(first), str(second)])
    assert [c["name"] for c in doc["contexts"]] == ["kubernetes-admin@kubernetes", "default"]
    assert doc["current-context"] == "kubernetes-admin@kubernetes"
    assert doc["users"][1]["user"]["exec"]["args"][-1] == "prod"
    assert doc["users"][1]["user"]["password"] == 511  # YAML 1.1 octal, as safe_load reads it
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == CA
