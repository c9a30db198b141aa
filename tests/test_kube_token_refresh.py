"""A token user's refresh, as the kubernetes client does it, without re-copying every setting on
every request (#17 item 2: our CPU per API call). Real HTTPS to the lab's API server on loopback;
the token comes from an exec credential plugin (a shell script) whose tokens expire at once, so
the client must run it again before each request: the fresh token must still be the one sent."""

from __future__ import annotations

import pathlib
import stat

import pytest
import yaml

from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.transports.kube import KubeClusterAPI

TOKENS = ["cfx-refresh-token-1", "cfx-refresh-token-2", "cfx-refresh-token-3",
          "cfx-refresh-token-4", "cfx-refresh-token-5", "cfx-refresh-token-6"]


@pytest.fixture
def api():
    lab = LabAPI("127.0.0.1", tokens=TOKENS, tls=True)
    lab.start()
    yield lab
    lab.stop()


def exec_kubeconfig(api: LabAPI, tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """A kubeconfig whose user runs a plugin printing the next token, already expired."""
    path = tmp_path / "kubeconfig"
    api.write_kubeconfig(path, TOKENS[0])
    doc = yaml.safe_load(path.read_text())
    runs = tmp_path / "runs"
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        f"echo x >> {runs}\n"
        f"n=$(wc -l < {runs})\n"
        "printf '{\"apiVersion\": \"client.authentication.k8s.io/v1beta1\", "
        "\"kind\": \"ExecCredential\", \"status\": {\"token\": \"cfx-refresh-token-%s\", "
        "\"expirationTimestamp\": \"2000-01-01T00:00:00Z\"}}' \"$n\"\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    doc["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                        "command": str(plugin), "interactiveMode": "Never"}}
    path.write_text(yaml.safe_dump(doc))
    return str(path), runs


def test_an_expired_token_is_refreshed_before_each_request(api: LabAPI, tmp_path: pathlib.Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, runs = exec_kubeconfig(api, tmp_path)
    kube = KubeClusterAPI(path)
    conf = kube._api_client.configuration
    proxy_at_start = conf.proxy
    # the proxy environment changing mid-session: the client's hook re-read it (setting the
    # host again) on every request; the connection pool uses the proxy it was built with
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    before = len(runs.read_text().splitlines())
    for _ in range(3):
        assert kube.version()  # 401 unless the token sent is one the plugin just printed
    after = len(runs.read_text().splitlines())
    assert after - before >= 3  # the plugin ran again for each request
    assert conf.api_key["BearerToken"] == f"Bearer cfx-refresh-token-{after}"  # the newest
    assert conf.proxy == proxy_at_start  # the settings were not copied in again
    kube.close()


def test_a_static_token_is_sent_as_before(api: LabAPI, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "kubeconfig"
    api.write_kubeconfig(path, TOKENS[3])
    kube = KubeClusterAPI(str(path))
    assert kube.version() and kube.version()
    assert kube._api_client.configuration.get_api_key_with_prefix("BearerToken") == \
        f"Bearer {TOKENS[3]}"
    kube.close()
