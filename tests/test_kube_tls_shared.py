"""KubeClusterAPI makes one TLS context for all its connections (transports/kube.py
_share_tls_context) instead of urllib3's new context per connection with the CA and client
certificate loaded again each time. Verification is what it was: an untrusted server and a
certificate for another name are refused on every new connection; TLS material read from a
path (a rotated client certificate) is not shared.

Real HTTPS to the lab's API server on 127.0.0.1 (its own CA); nothing is patched."""

from __future__ import annotations

import base64
import datetime
import pathlib
import ssl
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusterfix_tui.lab.api import LabAPI
from clusterfix_tui.transports.kube import APIUnreachable, KubeClusterAPI

TOKEN = "cfx-test-token-5b2e8d0a"


@pytest.fixture(scope="module")
def lab_api():
    api = LabAPI("127.0.0.1", tokens=[TOKEN], tls=True)
    api.start()
    api.put("v1/nodes", None, "node-1", {"metadata": {"name": "node-1"}})
    yield api
    api.stop()


@pytest.fixture
def kubeconfig(lab_api: LabAPI, tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "kubeconfig"
    lab_api.write_kubeconfig(path, TOKEN)
    return path


def _edit(path: pathlib.Path, cluster: dict[str, Any] | None = None,
          user: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> pathlib.Path:
    doc = yaml.safe_load(path.read_text())
    entry = doc["clusters"][0]["cluster"]
    entry.update(cluster or {})
    doc["users"][0]["user"].update(user or {})
    for key in drop:
        entry.pop(key, None)
    out = path.with_name(path.name + "-edited")
    out.write_text(yaml.safe_dump(doc))
    return out


def _contexts(api: KubeClusterAPI, rounds: int = 3) -> list[ssl.SSLContext]:
    """The TLS context of the connection each of `rounds` requests made (a new one each)."""
    pm = api._api_client.rest_client.pool_manager
    seen = []
    for _ in range(rounds):
        pm.clear()  # the next request opens a new connection
        assert [n["metadata"]["name"] for n in api.list_nodes()] == ["node-1"]
        pool = next(iter(pm.pools._container.values()))
        conn = pool.pool.queue[-1]  # the connection just returned to the pool
        seen.append(conn.sock.context)
    return seen


def test_every_new_connection_uses_one_context(kubeconfig: pathlib.Path) -> None:
    api = KubeClusterAPI(str(kubeconfig))
    assert api.tls_shared
    ctxs = _contexts(api)
    assert all(c is ctxs[0] for c in ctxs)
    assert ctxs[0].verify_mode == ssl.CERT_REQUIRED and ctxs[0].check_hostname
    assert ctxs[0].minimum_version >= ssl.TLSVersion.TLSv1_2


def test_without_sharing_urllib3_makes_one_per_connection(kubeconfig: pathlib.Path) -> None:
    """What it was (and is for a CA read from a path): a new context per connection."""
    ca = base64.b64decode(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
                          ["certificate-authority-data"])
    ca_file = kubeconfig.with_name("ca.crt")
    ca_file.write_bytes(ca)
    path = _edit(kubeconfig, cluster={"certificate-authority": str(ca_file)},
                 drop=("certificate-authority-data",))
    api = KubeClusterAPI(str(path))
    assert not api.tls_shared
    ctxs = _contexts(api)
    assert len({id(c) for c in ctxs}) == len(ctxs)


def _refused_on_each_connection(api: KubeClusterAPI) -> None:
    """Two new connections in a row (the shared context's second use too), each refused."""
    for _ in range(2):
        api._api_client.rest_client.pool_manager.clear()
        with pytest.raises(APIUnreachable, match="TLS failed"):
            api.list_nodes()


def test_untrusted_server_is_refused_on_every_connection(kubeconfig: pathlib.Path) -> None:
    pem, _ = _self_signed("another-ca", ca=True)
    for path in (_edit(kubeconfig, cluster={"certificate-authority-data":
                                            base64.b64encode(pem).decode()}),
                 _edit(kubeconfig, drop=("certificate-authority-data",))):  # system CAs
        api = KubeClusterAPI(str(path))
        assert api.tls_shared
        _refused_on_each_connection(api)


def test_the_host_name_is_still_checked(kubeconfig: pathlib.Path) -> None:
    """The lab's certificate names 127.0.0.1 (and the lab's names), not this one."""
    path = _edit(kubeconfig, cluster={"tls-server-name": "not-the-api.example.org"})
    api = KubeClusterAPI(str(path))
    assert api.tls_shared
    _refused_on_each_connection(api)


def _self_signed(common_name: str, ca: bool = False) -> tuple[bytes, bytes]:
    """A self-signed certificate (a CA when `ca`) and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _client_cert() -> tuple[bytes, bytes]:
    return _self_signed("cfx-user")


def test_client_certificate_data_is_loaded_once_and_paths_are_not_shared(
        kubeconfig: pathlib.Path) -> None:
    cert, key = _client_cert()
    inline = _edit(kubeconfig, user={"client-certificate-data": base64.b64encode(cert).decode(),
                                     "client-key-data": base64.b64encode(key).decode()})
    api = KubeClusterAPI(str(inline))
    assert api.tls_shared
    ctxs = _contexts(api, 2)
    assert ctxs[0] is ctxs[1]
    cert_file, key_file = kubeconfig.with_name("user.crt"), kubeconfig.with_name("user.key")
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    on_disk = _edit(kubeconfig, user={"client-certificate": str(cert_file),
                                      "client-key": str(key_file)})
    api = KubeClusterAPI(str(on_disk))
    assert not api.tls_shared  # a rotated certificate is read on the next connection
    assert len(_contexts(api, 1)) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_is_left_to_urllib3(kubeconfig: pathlib.Path) -> None:
    path = _edit(kubeconfig, cluster={"insecure-skip-tls-verify": True},
                 drop=("certificate-authority-data",))
    api = KubeClusterAPI(str(path))
    assert not api.tls_shared
    assert [n["metadata"]["name"] for n in api.list_nodes()] == ["node-1"]
