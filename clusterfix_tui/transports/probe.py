"""The workstation-side Prober (core.ports.Prober): TCP and HTTP from this machine with the
standard library, as validation's NodePort check needs. No proxies: a NodePort check must go
straight to the node."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


class StdlibProber:
    """Prober over socket and urllib. Never raises: a failure is (None/False, why)."""

    def __init__(self) -> None:
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def http(self, url: str, timeout: float) -> tuple[int | None, str]:
        try:
            with self._opener.open(url, timeout=timeout) as resp:
                return int(resp.status), "ok"
        except urllib.error.HTTPError as exc:  # an HTTP answer, even 404/503, is an answer
            return int(exc.code), str(exc.reason)
        except Exception as exc:  # noqa: BLE001
            reason = getattr(exc, "reason", exc)
            return None, f"{type(reason).__name__}: {reason}"

    def tcp(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True, "connected"
        except OSError as exc:
            return False, f"{type(exc).__name__}: {exc}"
