"""The workstation cut off from NodePorts: a firewall between where clusterfix-tui runs and the
nodes that lets SSH and the API through but drops every NodePort (a corporate firewall, a cloud
security group open to tcp/22 and tcp/6443 only).

    block_nodeports(handle)    # every node drops tcp 30000-32767 from the workstation's address
    open_nodeports(handle)     # the undo

The drop is real and inside the lab's node namespaces only: a netdev ingress filter on each
node's eth0 (table netdev cfx_workstation, before netfilter's IP hooks, so before kube-proxy's
DNAT: what an external firewall does) matching the workstation's own address on the lab bridge
(the host side of the lab, the source of every connection this machine makes to a node). Traffic
from the other nodes, SSH and everything else from the workstation still get through. The
record goes into lab.json "faults" (node None: the whole cluster) and leaves it on open.
A node rebooted with `lab reboot-node` loses the filter (runtime state), like any fault.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import shlex
import socket
import time
from typing import Any

NAME = "workstation-nodeports-blocked"
TABLE = "cfx_workstation"
NODEPORT_RANGE = (30000, 32767)  # the API server's default --service-node-port-range
WORKERS = 8


def workstation_addresses(info: dict) -> list[str]:
    """The addresses the workstation's connections to the nodes come from: the lab bridge's."""
    br = info.get("bridge") or {}
    out = [str(ipaddress.ip_address(a)) for a in (br.get("address"), br.get("address6")) if a]
    if not out:
        raise RuntimeError("the lab records no bridge address (is it up?)")
    return out


def ruleset(addresses: list[str], dev: str = "eth0") -> str:
    lo, hi = NODEPORT_RANGE
    lines = []
    for a in addresses:
        fam = "ip6" if ipaddress.ip_address(a).version == 6 else "ip"
        lines.append(f"\t\t{fam} saddr {a} tcp dport {lo}-{hi} counter drop\n")
    return (f"table netdev {TABLE} {{\n"
            f"\tchain ingress {{ type filter hook ingress device {dev} priority -500; policy accept;\n"
            + "".join(lines) + "\t}\n}\n")


def _on_every_node(handle: Any, script: str, *, input: str | None = None) -> dict[str, Any]:
    names = [n["name"] for n in handle.nodes]
    with concurrent.futures.ThreadPoolExecutor(min(WORKERS, len(names) or 1)) as pool:
        res = list(pool.map(lambda n: handle.exec(n, script, check=False, timeout=30, input=input),
                            names))
    return dict(zip(names, res, strict=True))


def _connect(ip: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return "connected"
    except TimeoutError:
        return "timed out"
    except OSError as e:
        return f"failed ({e.strerror or e})"


def measure(handle: Any, timeout: float = 2.0) -> dict[str, str]:
    """From here and from a peer node: a TCP connect to the first and the last node's NodePort."""
    info = handle.info
    port = int(info.get("nodeport") or 30096)
    nodes = handle.nodes
    targets = [nodes[0]] + ([nodes[-1]] if len(nodes) > 1 else [])
    out: dict[str, str] = {}
    for t in targets:
        out[f"here -> {t['name']} {t['ip']}:{port}"] = _connect(t["ip"], port, timeout)
        peer = next((n for n in nodes if n["name"] != t["name"]), None)
        if peer is not None:
            r = handle.exec(peer["name"], f"timeout {int(timeout) + 1} bash -c "
                            "'exec 3<>\"/dev/tcp/$1/$2\"' cfx "
                            f"{shlex.quote(str(t['ip']))} {int(port)}", check=False, timeout=30)
            out[f"{peer['name']} -> {t['name']} {t['ip']}:{port}"] = (
                "connected" if r.returncode == 0 else
                "timed out" if r.returncode == 124 else f"failed (exit {r.returncode})")
    return out


def block_nodeports(handle: Any) -> dict:
    """Drop tcp NodePorts from the workstation on every node; returns the lab.json record (also
    recorded). `physical` says whether the measure after it saw the effect: nothing connects
    from here, the peers' connects still do."""
    addrs = workstation_addresses(handle.info)
    text = ruleset(addrs)
    t0 = time.monotonic()
    res = _on_every_node(handle, f"nft delete table netdev {TABLE} 2>/dev/null; nft -f -", input=text)
    bad = {n: (r.stderr or r.stdout).strip()[:300] for n, r in res.items() if r.returncode != 0}
    if bad:
        open_nodeports(handle, record=False)
        raise RuntimeError(f"blocking NodePorts from the workstation failed on {len(bad)} nodes: "
                           + "; ".join(f"{n}: {e}" for n, e in list(bad.items())[:5]))
    took = time.monotonic() - t0
    seen = measure(handle)
    physical = all((k.startswith("here") and v == "timed out") or
                   (not k.startswith("here") and v == "connected") for k, v in seen.items())
    lo, hi = NODEPORT_RANGE
    rec = {"name": NAME, "node": None, "physical": physical, "detail": (
        f"a firewall between this workstation ({', '.join(addrs)}) and the nodes: tcp {lo}-{hi} from "
        f"it is dropped on all {len(res)} nodes (netdev ingress filter on eth0, table netdev {TABLE}, "
        f"before kube-proxy's DNAT; {took:.1f}s); SSH, the API and the nodes' own traffic pass. "
        f"Measured: " + "; ".join(f"{k}: {v}" for k, v in seen.items())
        + f". Undo: `clusterfix-tui lab nodeports open --dir {handle.dir}` "
        f"(on each node: `nft delete table netdev {TABLE}`)")}
    handle.request("forget_fault", name=NAME)
    handle.record_fault(rec)
    return rec


def open_nodeports(handle: Any, *, record: bool = True) -> dict[str, str]:
    """The undo: remove the filter from every node (those that have it) and the record."""
    res = _on_every_node(handle, f"nft list table netdev {TABLE} >/dev/null 2>&1 || exit 0; "
                                 f"nft delete table netdev {TABLE}")
    bad = {n: (r.stderr or r.stdout).strip()[:300] for n, r in res.items() if r.returncode != 0}
    if record:
        handle.request("forget_fault", name=NAME)
    if bad:
        raise RuntimeError(f"removing table netdev {TABLE} failed on {len(bad)} nodes: "
                           + "; ".join(f"{n}: {e}" for n, e in list(bad.items())[:5]))
    return measure(handle)


def blocked(handle: Any) -> bool:
    return any(f.get("name") == NAME for f in handle.info.get("faults") or [])
