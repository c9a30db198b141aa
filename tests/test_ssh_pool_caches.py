"""The SSH pool's caches: known_hosts read once per file (not once per connection), answering
exactly what lookup_known_host answers and what the file holds now; identity files loaded once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from clusterfix_tui.transports import ssh as S

KEY_A = "AAAAC3NzaC1lZDI1NTE5AAAAIMz9cL3Ye5fWq9eXCD5M1hH0pTjqsbkY5K2q8nJ3Xk3A"
KEY_B = "AAAAC3NzaC1lZDI1NTE5AAAAIMz9cL3Ye5fWq9eXCD5M1hH0pTjqsbkY5K2q8nJ3Xk3B"


def _hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


LINES = [
    "# a comment",
    "",
    f"node-1,10.0.0.1 ssh-ed25519 {KEY_A}",
    f"NODE-2 ssh-ed25519 {KEY_A}",
    f"[node-3]:2222 ssh-ed25519 {KEY_A}",
    f"{_hashed('node-4')} ssh-ed25519 {KEY_A}",
    f"*.example.com,!bad.example.com ssh-ed25519 {KEY_A}",
    f"node-? ssh-rsa {KEY_B}",
    f"@revoked node-1 ssh-ed25519 {KEY_B}",
    f"@cert-authority *.example.com ssh-ed25519 {KEY_B}",
    f"@unknown-marker node-1 ssh-ed25519 {KEY_B}",
    "node-1 too-short",
    f"node-1,node-1 ecdsa-sha2-nistp256 {KEY_B}",
    f"10.0.0.1 ssh-ed25519 {KEY_B}",
    f",, ssh-ed25519 {KEY_B}",
]
NAMES = ["node-1", "Node-1", "node-2", "node-3", "[node-3]:2222", "node-4", "node-5",
         "a.example.com", "bad.example.com", "10.0.0.1", "10.0.0.2", "", "node-10"]


def test_the_cached_lookup_answers_what_the_file_scan_answers(tmp_path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(LINES) + "\n")
    other = tmp_path / "known_hosts2"
    other.write_text(f"node-1 ssh-ed25519 {KEY_B}\n")
    paths = [str(kh), str(other), str(tmp_path / "missing")]
    cache = S.KnownHosts()
    for name in NAMES:
        assert cache.lookup(paths, name) == S.lookup_known_host(paths, name), name
    # and the answers are the ones a reader of the file expects
    got = [(e.path == str(kh), e.line_no, e.marker) for e in cache.lookup(paths, "node-1")]
    assert got == [(True, 3, ""), (True, 8, ""), (True, 9, "@revoked"), (True, 13, ""),
                   (False, 1, "")]
    assert [e.line_no for e in cache.lookup(paths, "bad.example.com")] == [10]
    assert [e.line_no for e in cache.lookup(paths, "a.example.com")] == [7, 10]
    assert [e.line_no for e in cache.lookup(paths, "node-4")] == [6, 8]


def test_each_file_is_read_once_for_many_lookups(tmp_path, monkeypatch) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text("".join(f"node-{i},10.1.{i // 250}.{i % 250} ssh-ed25519 {KEY_A}\n"
                          for i in range(300)))
    parsed: list[str] = []
    real = S._KnownHostsFile.__init__

    def counting(self, path, lines):  # type: ignore[no-untyped-def]
        parsed.append(path)
        real(self, path, lines)

    monkeypatch.setattr(S._KnownHostsFile, "__init__", counting)
    cache = S.KnownHosts()
    for i in range(300):
        assert [e.line_no for e in cache.lookup([str(kh)], f"node-{i}")] == [i + 1]
    assert parsed == [str(kh)]


def test_a_changed_file_is_read_again(tmp_path) -> None:
    kh = tmp_path / "known_hosts"
    kh.write_text(f"node-1 ssh-ed25519 {KEY_A}\n")
    cache = S.KnownHosts()
    assert [e.key_b64 for e in cache.lookup([str(kh)], "node-1")] == [KEY_A]
    # the same size, another key (a reinstalled node's line replaced in place)
    kh.write_text(f"node-1 ssh-ed25519 {KEY_B}\n")
    assert [e.key_b64 for e in cache.lookup([str(kh)], "node-1")] == [KEY_B]
    # appended (an accepted key), and replaced by a new file (ssh-keygen -R)
    with open(kh, "a") as fh:
        fh.write(f"node-2 ssh-ed25519 {KEY_A}\n")
    assert [e.line_no for e in cache.lookup([str(kh)], "node-2")] == [2]
    new = tmp_path / "known_hosts.new"
    new.write_text(f"node-2 ssh-ed25519 {KEY_B}\n")
    os.replace(new, kh)
    assert cache.lookup([str(kh)], "node-1") == []
    assert [e.key_b64 for e in cache.lookup([str(kh)], "node-2")] == [KEY_B]
    kh.unlink()
    assert cache.lookup([str(kh)], "node-2") == []


# ---------------------------------------------------------------------------------------------
# identity files: loaded once per pool (loading an RSA key checks it: ~0.1 s of CPU)


def _keygen(path, kind: str) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    bits = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *bits, "-N", "", "-C", "t", "-f", str(path)],
                   check=True, capture_output=True)


def test_an_identity_file_is_loaded_once_and_each_caller_gets_its_own_copy(
        tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import paramiko
    from _env import require_tool

    require_tool("ssh-keygen")
    rsa, ed = tmp_path / "id_rsa", tmp_path / "id_ed25519"
    _keygen(rsa, "rsa")
    _keygen(ed, "ed25519")
    loads: list[str] = []
    real = paramiko.PKey.from_path

    def counting(path, passphrase=None):  # type: ignore[no-untyped-def]
        loads.append(str(path))
        return real(path, passphrase)

    monkeypatch.setattr(paramiko.PKey, "from_path", staticmethod(counting))
    (tmp_path / "ssh_config").write_text("")
    pool = S.SSHPool(str(tmp_path / "ssh_config"))  # contacts nothing
    keys = [pool._identity(str(rsa)) for _ in range(3)] + [pool._identity(str(ed))]
    assert loads == [str(rsa), str(ed)]
    assert len({id(k) for k in keys}) == 4  # copies: a certificate attached to one stays there
    assert {k.get_base64() for k in keys[:3]} == {keys[0].get_base64()}
    data = b"to be signed"
    sig = keys[1].sign_ssh_data(data)
    assert keys[0].verify_ssh_sig(data, paramiko.Message(sig.asbytes()))
    keys[0].public_blob = paramiko.PublicBlob("x", b"y")
    assert pool._identity(str(rsa)).public_blob is None
    # a replaced key file is loaded again
    rsa.unlink()
    _keygen(rsa, "rsa")
    assert pool._identity(str(rsa)).get_base64() != keys[0].get_base64()
    assert loads == [str(rsa), str(ed), str(rsa)]
