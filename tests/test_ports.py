"""The transport error tree says what each error means (core/ports.py): finding code, title and
connection state come from the class, and core code maps them with isinstance, not by name."""

from __future__ import annotations

import pytest

from clusterfix_tui.core import ports
from clusterfix_tui.core.checks.connectivity import transport_finding
from clusterfix_tui.core.model import CommandResult as ModelCommandResult
from clusterfix_tui.transports import base


@pytest.mark.parametrize("cls,code,state", [
    (ports.NodeUnreachable, "SSH_UNREACHABLE", "unreachable"),
    (ports.ConnectTimeout, "SSH_UNREACHABLE", "unreachable"),
    (ports.AuthFailed, "SSH_AUTH_FAILED", "auth-failed"),
    (ports.HostKeyChanged, "HOST_KEY_CHANGED", "host-key-changed"),
    (ports.SudoPasswordRequired, "SUDO_PASSWORD_REQUIRED", "sudo-password"),
    (ports.TransportError, "SSH_UNREACHABLE", "error"),
    (ports.APIError, None, "error"),
    (ports.APIUnreachable, None, "error"),
    (ports.KubeconfigError, None, "error"),
])
def test_each_error_class_carries_code_title_and_state(cls, code, state):
    exc = cls("boom")
    assert (exc.code, exc.conn_state, ports.conn_state(exc)) == (code, state, state)
    assert exc.title and exc.title != "Connection failed" or cls is ports.TransportError
    assert ports.host_key(exc) is None


def test_a_subclass_named_anything_maps_by_isinstance():
    # a transport's own subclass (any name) is what its base class means
    class Weird(ports.AuthFailed):
        pass

    exc = Weird("nope")
    assert ports.conn_state(exc) == "auth-failed"
    assert transport_finding("n", None, exc).code == "SSH_AUTH_FAILED"
    # and a class merely *named* like ours means nothing
    Fake = type("HostKeyChanged", (Exception,), {})
    assert ports.conn_state(Fake("x")) == "error"
    assert transport_finding("n", None, Fake("x")).code == "SSH_UNREACHABLE"


def test_host_key_unknown_carries_a_host_key_value():
    exc = ports.HostKeyUnknown("node-2", "ssh-ed25519", "SHA256:abc", "/k", "node-2 ssh-ed25519 A",
                               node="node-2", address="10.0.0.2")
    key = ports.host_key(exc)
    assert key == ports.HostKey("ssh-ed25519", "SHA256:abc", "node-2", "10.0.0.2")
    assert str(key) == "ssh-ed25519 SHA256:abc" and exc.fingerprint == "SHA256:abc"
    assert ports.conn_state(exc) == "host-key-unknown" and exc.code == "HOST_KEY_UNKNOWN"
    f = transport_finding("node-2", "10.0.0.2", exc)
    assert f.data["key_line"] == "node-2 ssh-ed25519 A" and f.data["known_hosts"] == "/k"


def test_host_key_changed_finding_names_the_new_key():
    key = ports.HostKey("ssh-rsa", "SHA256:new", "node-3", "10.0.0.3")
    exc = ports.HostKeyChanged("changed", key=key, known_hosts="/kh", line_no=3)
    assert ports.host_key(exc) is key
    f = transport_finding("node-3", "10.0.0.3", exc)
    assert (f.code, f.data["fingerprint"], f.data["known_hosts"]) == (
        "HOST_KEY_CHANGED", "SHA256:new", "/kh")


def test_api_error_carries_its_status():
    assert ports.APIError("nope", status=404).status == 404
    assert ports.APIUnreachable("down").status is None
    assert isinstance(ports.APIUnreachable("down"), ports.APIError)


def test_old_import_paths_still_name_the_same_objects():
    from clusterfix_tui.transports import kube

    assert base.TransportError is ports.TransportError and base.HostKeyUnknown is ports.HostKeyUnknown
    assert kube.APIUnreachable is ports.APIUnreachable and kube.KubeconfigError is ports.KubeconfigError
    assert ModelCommandResult is ports.CommandResult
    assert ports.CommandResult(0, "x").to_dict() == {
        "exit_code": 0, "stdout": "x", "stderr": "", "duration": 0.0, "timed_out": False,
        "error": None}


def test_the_wizard_titles_an_error_by_its_class() -> None:
    from clusterfix_tui.core.ports import APIUnreachable, AuthFailed, HostKeyChanged
    from clusterfix_tui.ui.app import error_title

    assert error_title(AuthFailed("node-1: refused"), "x failed") == "SSH authentication failed"
    assert error_title(HostKeyChanged("changed"), "x failed") == HostKeyChanged.title
    assert error_title(APIUnreachable("down"), "x failed") == APIUnreachable.title
    assert error_title(PermissionError(13, "no"), "x failed") == "Permission denied"
    assert error_title(ValueError("odd"), "Diagnosing failed") == "Diagnosing failed"
