"""Replay of recorded lab scenarios (tests/data/lab/*.json) for diagnostics unit tests.

A recording holds what the lab's API answered and what every node's facts script printed (real
SSH output, nonce "labnonce0001"); ReplayAPI and ReplayShells hand them back without a network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clusterfix_tui.core.model import CommandResult

LAB_DATA = Path(__file__).parent / "data" / "lab"
FACTS_DATA = Path(__file__).parent / "data" / "facts"
LAB_NONCE = "labnonce0001"
SCRATCH_NONCE = "capturenonce0001"


def scenarios() -> list[str]:
    return sorted(p.stem for p in LAB_DATA.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((LAB_DATA / f"{name}.json").read_text())


class ReplayAPI:
    def __init__(self, rec: dict[str, Any], fail: set[str] = frozenset()) -> None:
        self.rec = rec
        self.fail = set(fail)
        self.calls: list[str] = []

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if what in self.fail:
            raise ConnectionError(f"{what}: connection refused")

    def describe(self):
        self._call("describe")
        return self.rec["describe"]

    def version(self):
        self._call("version")
        return self.rec["version"]

    def list_nodes(self):
        self._call("list_nodes")
        return self.rec["nodes"]

    def list_pods(self, namespace=None, label_selector=None):
        self._call("list_pods")
        out = []
        for p in self.rec["pods"]:
            m = p["metadata"]
            if namespace and m.get("namespace") != namespace:
                continue
            if label_selector:
                k, v = label_selector.split("=", 1)
                if (m.get("labels") or {}).get(k) != v:
                    continue
            out.append(p)
        return out

    def list_daemonsets(self, namespace=None):
        self._call("list_daemonsets")
        return self.rec["daemonsets"].get(namespace or "", [])

    def get_configmap(self, namespace, name):
        self._call("get_configmap")
        return self.rec["configmaps"].get(f"{namespace}/{name}")

    def list_services(self, namespace=None):
        self._call("list_services")
        return self.rec["services"]

    def list_endpoints(self, namespace=None):
        self._call("list_endpoints")
        return self.rec["endpoints"]

    def list_events(self, namespace=None):
        self._call("list_events")
        return self.rec["events"]

    # cluster DNS: what the recording holds (older recordings: no kube-dns Service, no DNS add-on)
    def get_service(self, namespace, name):
        self._call("get_service")
        svc = (self.rec.get("dns") or {}).get("service")
        meta = (svc or {}).get("metadata") or {}
        return svc if (meta.get("namespace"), meta.get("name")) == (namespace, name) else None

    def list_deployments(self, namespace):
        self._call("list_deployments")
        return [d for d in (self.rec.get("dns") or {}).get("deployments") or ()
                if (d.get("metadata") or {}).get("namespace") == namespace]

    def list_endpointslices(self, namespace, label_selector=None):
        self._call("list_endpointslices")
        k, _, v = (label_selector or "").partition("=")
        return [s for s in (self.rec.get("dns") or {}).get("endpointslices") or ()
                if (s.get("metadata") or {}).get("namespace") == namespace
                and (not k or ((s.get("metadata") or {}).get("labels") or {}).get(k) == v)]

    def pod_log(self, namespace, name, container=None, tail_lines=50, previous=False):
        self._call("pod_log")
        key = f"{namespace}/{name}/{'previous' if previous else 'current'}"
        if key not in self.rec["logs"]:
            raise LookupError(f"no log {key}")
        return self.rec["logs"][key]


class ReplayShell:
    def __init__(self, node: str, output: str) -> None:
        self.node = node
        self.output = output
        self.scripts: list[str] = []

    def run(self, command, *, timeout=60.0, on_line=None, stdin=None):
        from clusterfix_tui.core.facts import script_nonce

        # the facts script travels on stdin (core.facts.loader_command): keep what was sent
        self.scripts.append(command + ("\n" + stdin.decode() if stdin else ""))
        nonce = script_nonce(command)
        return CommandResult(exit_code=0, stdout=self.output.replace(LAB_NONCE, nonce), stderr="")

    def close(self):
        pass


class ReplayShells:
    """A ShellFactory: recorded outputs per node; `errors` maps node -> exception to raise."""

    def __init__(self, rec: dict[str, Any], errors: dict[str, BaseException] | None = None,
                 outputs: dict[str, str] | None = None) -> None:
        self.outputs = dict(rec["facts"]) | dict(outputs or {})
        self.errors = dict(errors or {})
        self.opened: dict[str, ReplayShell] = {}
        self.addresses: dict[str, str | None] = {}

    def __call__(self, node, address=None):
        self.addresses[node] = address
        if node in self.errors:
            raise self.errors[node]
        sh = self.opened[node] = ReplayShell(node, self.outputs[node])
        return sh
