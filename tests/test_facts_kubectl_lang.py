"""The node's kubectl loads a small message catalogue (#17): at every start kubectl zips the
catalogue of the language in LC_ALL and parses it back; for C (the script's LC_ALL) that is the
full English one, ~20 ms of the node's CPU, a third of kubectl's start. fr_FR's catalogue holds
only help strings of `kubectl config`, `apply` and `annotate`, none of what `kubectl get` prints.
kubectl is a Go binary (no libc locale), so only kubectl reads it; the language is not changed
when kubectl could pass it on to another program (a credential plugin: `exec:` or
`auth-provider:` in the kubeconfig), nor when kubectl reads any other kubeconfig than
/root/.kube/config (KUBECONFIG set, another HOME: not looked into).

Each case runs the script's prelude and files part on this machine with a kubectl on PATH that
prints the language and HOME it was started with."""

from __future__ import annotations

import os
import subprocess

import pytest

from clusterfix_tui.core import facts as F


def _kubectl_env(tmp_path, home: str, config: str | None, env: dict[str, str] | None = None,
                 as_root: bool = True) -> str:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "kubectl").write_text('#!/bin/sh\nprintf "LC_ALL=%s HOME=%s ARGS=%s\\n" "$LC_ALL" "$HOME" "$*"\n')
    (fake / "kubectl").chmod(0o755)
    if config is not None:
        (tmp_path / "home" / ".kube").mkdir(parents=True)
        (tmp_path / "home" / ".kube" / "config").write_text(config)
    nonce = F.new_nonce()
    parts = dict(F.script_parts([], nonce=nonce, node_name="node-1"))
    script = "\n".join([parts["prelude"], parts["files + kubectl"], parts["done"]])
    script = script.replace("PATH=/usr/local/sbin", f"PATH={fake}:/usr/local/sbin", 1)
    if as_root:  # this machine's /root is not ours to change: the home dir stands in for it
        assert script.count('"$cfx_kh" = /root') == 1
        script = script.replace('"$cfx_kh" = /root', f'"$cfx_kh" = {tmp_path / "home"}')
    run_env = {"PATH": os.environ["PATH"], "HOME": home, **(env or {})}
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=run_env, timeout=60)
    facts = F.parse_facts("node-1", r.stdout, nonce)
    sec = next(s for s in facts.sections.values() if s.name == "kubectl_get_nodes")
    assert sec.rc == 0, (sec, r.stderr)
    return sec.stdout.strip()


PLAIN = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: AAAA
    server: https://10.0.0.1:6443
  name: k
users:
- name: u
  user:
    client-certificate-data: BBBB
"""


@pytest.mark.parametrize("config", [None, PLAIN], ids=["no-kubeconfig", "plain-kubeconfig"])
def test_kubectl_loads_the_small_catalogue(tmp_path, config) -> None:
    home = str(tmp_path / "home")
    os.makedirs(home, exist_ok=True)
    out = _kubectl_env(tmp_path, home, config)
    assert out.startswith("LC_ALL=fr_FR.UTF-8 HOME=" + home + " ARGS=get --raw "), out


@pytest.mark.parametrize("config", [
    PLAIN + "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n",
    PLAIN + "    auth-provider:\n      name: oidc\n",
    '{"users": [{"name": "u", "user": {"exec": {"command": "get-token"}}}]}',
], ids=["exec-plugin", "auth-provider", "json-exec"])
def test_a_credential_plugin_keeps_the_scripts_language(tmp_path, config) -> None:
    home = str(tmp_path / "home")
    out = _kubectl_env(tmp_path, home, config)
    assert out.startswith("LC_ALL=C HOME=" + home + " "), out


def test_kubeconfig_from_the_environment_is_not_looked_into(tmp_path) -> None:
    home = str(tmp_path / "home")
    out = _kubectl_env(tmp_path, home, PLAIN, env={"KUBECONFIG": str(tmp_path / "home" / ".kube" / "config")})
    assert out.startswith("LC_ALL=C "), out


def test_another_home_is_not_looked_into(tmp_path) -> None:
    home = str(tmp_path / "home")
    out = _kubectl_env(tmp_path, home, PLAIN, as_root=False)
    assert out.startswith("LC_ALL=C HOME=" + home + " "), out


def test_an_unreadable_kubeconfig_keeps_the_scripts_language(tmp_path) -> None:
    """grep cannot read it (rc 2, not "no plugin"): the language stays C."""
    home = str(tmp_path / "home")
    (tmp_path / "home" / ".kube" / "config").parent.mkdir(parents=True)
    os.symlink(str(tmp_path / "nowhere"), tmp_path / "home" / ".kube" / "config")  # a dangling link
    out = _kubectl_env(tmp_path, home, None)
    assert out.startswith("LC_ALL=C "), out


def test_the_script_still_runs_without_grep(tmp_path) -> None:
    """No grep on the node (rc 127): the language stays C and kubectl still runs."""
    fake = tmp_path / "bin2"
    fake.mkdir()
    for tool in ("sh", "mktemp", "rm", "cat", "timeout", "kubectl_real_absent"):
        path = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if path:
            os.symlink(path, fake / tool)
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text(PLAIN)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl").write_text('#!/bin/sh\nprintf "LC_ALL=%s\\n" "$LC_ALL"\n')
    (tmp_path / "bin" / "kubectl").chmod(0o755)
    nonce = F.new_nonce()
    parts = dict(F.script_parts([], nonce=nonce, node_name="node-1"))
    script = "\n".join([parts["prelude"], parts["files + kubectl"], parts["done"]])
    script = script.replace("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH",
                            f"PATH={tmp_path / 'bin'}:{fake}", 1)
    script = script.replace('"$cfx_kh" = /root', f'"$cfx_kh" = {home}')
    r = subprocess.run([str(fake / "sh"), "-c", script], capture_output=True, text=True,
                       env={"PATH": str(fake), "HOME": str(home)}, timeout=60)
    facts = F.parse_facts("node-1", r.stdout, nonce)
    sec = next(s for s in facts.sections.values() if s.name == "kubectl_get_nodes")
    assert sec.rc == 0 and sec.stdout.strip() == "LC_ALL=C", (sec, r.stderr)
