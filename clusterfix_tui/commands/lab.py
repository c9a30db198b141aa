"""`clusterfix-tui lab up | status | reboot-node | nodeports | down`: a disposable cluster on this machine.

`lab up` runs in the background: it starts a detached daemon (API server + node agents) and
returns once the lab is ready; the lab lives until `lab down`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

DEFAULT_DIR = ".lab"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lab_command", metavar="up|status|reboot-node|nodeports|down")
    sub.required = True
    up = sub.add_parser("up", help="build a lab (in the background) and print how to use it")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3; node-1 is the control plane)")
    up.add_argument("--faults", default="none",
                    help="faults to inject: NAME[,NAME...] (NAME or NAME:NODE), all, or none (default)")
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default ./{DEFAULT_DIR})")
    up.add_argument("--shape", default="kubeadm", choices=["kubeadm", "k3s", "calico", "kube-proxy-free"],
                    help="the cluster's shape (default kubeadm: flannel + kube-proxy DaemonSets; "
                         "see docs/lab-shapes.md)")
    up.add_argument("--ip-family", default="ipv4", choices=["ipv4", "dual", "dual-v6-first"],
                    help="node addresses and podCIDRs: ipv4 (default), dual (IPv4 first) or dual-v6-first "
                         "(IPv6 ULA ranges inside the lab only)")
    up.add_argument("--ssh-user", metavar="NAME",
                    help="nodes reachable only as NAME (NOPASSWD sudo), never as root "
                         "(default: root)")
    up.add_argument("--bastion", action="store_true",
                    help="one more namespace, a jump host whose user has no sudo; nodes accept "
                         "logins only from it and ssh_config reaches them with ProxyJump")
    up.add_argument("--host-ca", metavar="CA_KEY",
                    help="an SSH CA private key (its .pub next to it): every node's host key is "
                         "certified by it for the node's address and name (HostCertificate)")
    up.add_argument("--block-workstation-nodeports", action="store_true",
                    help="every node drops tcp NodePorts (30000-32767) from this machine, as a "
                         "firewall between here and the nodes would; SSH and the API pass "
                         "(undo: lab nodeports open)")
    st = sub.add_parser("status", help="show what the lab in DIR runs")
    st.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default ./{DEFAULT_DIR})")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    rb = sub.add_parser("reboot-node", help="reboot one node: its namespaces and processes are "
                        "rebuilt (same name, address, host key); runtime state is lost, files stay")
    rb.add_argument("node", metavar="NAME", help="the node (node-1, node-2, ...)")
    rb.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default ./{DEFAULT_DIR})")
    npt = sub.add_parser("nodeports", help="block: every node drops tcp NodePorts from this "
                         "machine (a firewall between here and the nodes); open: the undo")
    npt.add_argument("action", choices=["block", "open"])
    npt.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default ./{DEFAULT_DIR})")
    down = sub.add_parser("down", help="remove every namespace, link, process and file of the lab")
    down.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default ./{DEFAULT_DIR})")


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.lab import cluster

    try:
        if args.lab_command == "up":
            return _up(cluster, args)
        if args.lab_command == "down":
            summary = cluster.down(args.dir)
            print(f"lab in {args.dir} taken down: {len(summary['pids'])} processes, "
                  f"{len(summary['netns'])} namespaces, {len(summary['links'])} links removed")
            if summary.get("left"):
                print(f"clusterfix-tui lab down: still running after SIGKILL: pids "
                      f"{' '.join(map(str, summary['left']))}", file=sys.stderr)
                return 1
            return 0
        if args.lab_command == "status":
            return _status(cluster, args)
        if args.lab_command == "nodeports":
            return _nodeports(cluster, args)
        if args.lab_command == "reboot-node":
            res = cluster.LabHandle(args.dir).reboot_node(args.node)
            b, a = res["before"], res["after"]
            print(f"{res['node']} rebooted: network namespace inode {b['netns_inode']} -> "
                  f"{a['netns_inode']}, anchor pid {b['init_pid']} -> {a['init_pid']}, sshd pid "
                  f"{b['sshd_pid']} -> {a['sshd_pid']} (same address and host key; runtime "
                  f"state lost, its pods restarted)")
            return 0
    except cluster.LabError as e:
        print(f"clusterfix-tui lab {args.lab_command}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `lab up | head`: the lab is up all the same
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 2


def _up(cluster, args: argparse.Namespace) -> int:  # noqa: ANN001
    print(f"building a {args.nodes}-node {args.shape} lab ({args.ip_family}) in {args.dir} ...", flush=True)
    h = cluster.up(args.dir, nodes=args.nodes, faults=args.faults, shape=args.shape, ip_family=args.ip_family,
                   ssh_user=args.ssh_user, bastion=args.bastion, host_ca=args.host_ca,
                   block_workstation_nodeports=args.block_workstation_nodeports)
    info = h.info
    d = shlex.quote(str(h.dir))
    print(f"lab {info['lab_id']} is up in {info.get('ready_seconds', '?')}s "
          f"(daemon pid {info['daemon_pid']}, API {info['api']['url']}); it runs in the background.")
    for n in info["nodes"]:
        extra = "".join(f" {x}" for x in n.get("ips", []) if x != n["ip"])
        cidrs = ",".join(n.get("pod_cidrs") or [n["pod_cidr"]])
        print(f"  {n['name']:8} {n['role']:13} {n['ip']:15}{extra} podCIDR {cidrs}")
    if info.get("bastion"):
        b = info["bastion"]
        print(f"  {'bastion':8} {'jump host':13} {b['ip']:15} user {b['user']} (no sudo); nodes "
              f"accept logins only from it")
    if info.get("host_ca"):
        print(f"  nodes: host keys certified by {info['host_ca']} (principals: address, name)")
    if info.get("ssh_user"):
        print(f"  nodes: login as {info['ssh_user']} (NOPASSWD sudo), root login refused")
    for f in info.get("faults") or []:
        print(f"  fault {f.get('name')} on {f.get('node') or 'the cluster'}"
              + ("" if f.get("physical", True) else " (not physical: see lab.json)"))
    first = info["nodes"][1]["name"] if len(info["nodes"]) > 1 else info["nodes"][0]["name"]
    print("\nnext:")
    print(f"  kubectl --kubeconfig {d}/kubeconfig get nodes -o wide")
    print(f"  ssh -F {d}/ssh_config {first}")
    print(f"  curl http://{info['nodes'][0]['ip']}:{info['nodeport']}/")
    print(f"  clusterfix-tui --lab-dir {d}")
    print(f"  clusterfix-tui lab down --dir {d}")
    return 0


def _nodeports(cluster, args: argparse.Namespace) -> int:  # noqa: ANN001
    from clusterfix_tui.lab import workstation

    h = cluster.LabHandle(args.dir)
    try:
        if args.action == "block":
            print(workstation.block_nodeports(h)["detail"])
        else:
            seen = workstation.open_nodeports(h)
            print("NodePorts open from this machine again: "
                  + "; ".join(f"{k}: {v}" for k, v in seen.items()))
    except RuntimeError as e:
        print(f"clusterfix-tui lab nodeports {args.action}: {e}", file=sys.stderr)
        return 1
    return 0


def _status(cluster, args: argparse.Namespace) -> int:  # noqa: ANN001
    st = cluster.status(args.dir)
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st.get("up") else 1
    if st["state"] == "absent":
        print(f"no lab in {st['dir']}")
        return 1
    print(f"lab {st['lab_id']} ({st.get('shape')}, {st.get('ip_family')}) in {st['dir']}: "
          f"{'up' if st['up'] else st['state']}"
          f"{'' if st['daemon_alive'] else ' (daemon not running: run lab down to clean up)'}")
    if st.get("api"):
        print(f"  API {st['api']['url']}   kubeconfig {st['kubeconfig']}   ssh_config {st['ssh_config']}")
    for n in st["nodes"]:
        flags = ("anchor" if n["anchor_alive"] else "ANCHOR DOWN") + ", " + ("sshd" if n["sshd_alive"] else "sshd down")
        pods = ", ".join(f"{p['namespace']}/{p['name']} {p['ip']}" for p in n["pods"])
        print(f"  {n['name']:8} {n['role'] or '':13} {n['ip'] or '':15} {flags}  {pods}")
    for f in st.get("faults") or []:
        print(f"  fault {f.get('name')} on {f.get('node') or 'the cluster'}: {f.get('detail', '')}")
    return 0 if st["up"] else 1
