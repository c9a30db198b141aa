"""`ssh -G` shared between hosts the config cannot tell apart (#17 item 2: our CPU per node).

Every host's resolution is compared with what the real OpenSSH client prints for it (`ssh -G`,
run here per host, as before the change) on varied configs: per-host blocks differing only in
HostName (as generated inventories and the lab write them), wildcard and negated patterns,
Include (top level and inside a Host block), a HostName shared by a group, IP lookups, and the
configs that must not share (Match, %-tokens, capitals). And the number of `ssh -G` processes the
resolver started: 2 per group of identical hosts where sharing is exact, one per host otherwise."""

from __future__ import annotations

import concurrent.futures as cf
import pathlib
import shutil
import subprocess

import pytest

from clusterfix_tui.transports.ssh import _OpenSSHConfig

SSH = shutil.which("ssh")
pytestmark = pytest.mark.skipif(SSH is None, reason="the OpenSSH client is not installed")


def real_g(path: pathlib.Path, host: str, user: str | None = None,
           port: int | None = None) -> dict[str, list[str]]:
    argv = [str(SSH), "-G", "-F", str(path)]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    out = subprocess.run(argv + ["--", host], capture_output=True, text=True, check=True,
                         stdin=subprocess.DEVNULL).stdout
    opts: dict[str, list[str]] = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k:
            opts.setdefault(k.lower(), []).append(v.strip())
    return opts


def node_blocks(n: int, extra: str = "") -> str:
    return "".join(f"Host node-{i}\n  HostName 10.9.0.{i}\n  User root\n{extra}"
                   f"  IdentityFile /tmp/cfx-test/id_ed25519\n  IdentitiesOnly yes\n"
                   "  StrictHostKeyChecking yes\n  LogLevel ERROR\n\n" for i in range(1, n + 1))


CONFIGS = {
    # (config text, hosts, at most this many `ssh -G` runs when resolved in parallel)
    "per-host blocks, like the lab's": (node_blocks(12) + "Host *\n  ConnectTimeout 7\n",
                                        [f"node-{i}" for i in range(1, 13)] + ["10.9.0.3"], 6),
    "wildcards and negation": (
        "Host node-1? !node-13\n  Port 2222\n"
        "Host node-*\n  User ops\n  ServerAliveInterval 5\n"
        "Host *.lab.example 10.8.*\n  User lab\n  ProxyJump bastion.lab.example\n"
        "Host *\n  IdentityFile ~/.ssh/id_ed25519\n",
        [f"node-{i}" for i in (1, 2, 3, 10, 11, 12, 13, 14)] +
        ["a.lab.example", "b.lab.example", "10.8.0.1", "10.8.0.2", "10.7.0.1", "other"], 14),
    "a HostName shared by a group": (
        "Host gw-*\n  HostName gateway.example\n  Port 2200\nHost *\n  User u\n",
        ["gw-a", "gw-b", "gw-c", "gw-d", "x", "y", "z"], 6),
    "HostName set twice: the first wins": (
        "Host n-*\n  HostName first.example\nHost *\n  HostName second.example\n",
        ["n-1", "n-2", "n-3", "q", "r", "s"], 6),
}


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(text)
    return cfg


def resolve_all(cfg: pathlib.Path, hosts: list[str]) -> tuple[dict[str, dict], int]:
    r = _OpenSSHConfig(str(cfg), 5.0, str(SSH))
    with cf.ThreadPoolExecutor(8) as ex:
        got = dict(zip(hosts, ex.map(r._g, hosts), strict=True))
    return got, r.runs


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_host_resolves_as_ssh_G_says(tmp_path: pathlib.Path, name: str) -> None:
    text, hosts, most = CONFIGS[name]
    cfg = write(tmp_path, text)
    got, runs = resolve_all(cfg, hosts)
    for h in hosts:
        assert got[h] == real_g(cfg, h), h
    assert runs <= most, (runs, len(hosts))


def test_the_labs_config_costs_two_runs_for_any_number_of_nodes(tmp_path: pathlib.Path) -> None:
    cfg = write(tmp_path, node_blocks(30))
    hosts = [f"node-{i}" for i in range(1, 31)]
    got, runs = resolve_all(cfg, hosts)
    assert runs == 2
    for h in ("node-1", "node-17", "node-30"):
        assert got[h] == real_g(cfg, h)
        assert got[h]["hostname"] == [f"10.9.0.{h.split('-')[1]}"]
    # a jump hop's user/port are part of what is shared: the same again with -l/-p
    r = _OpenSSHConfig(str(cfg), 5.0, str(SSH))
    for h in hosts[:5]:
        assert r._g(h, "ops", 2022) == real_g(cfg, h, "ops", 2022)
    assert r.runs == 2


def test_include_at_top_level_and_inside_a_block(tmp_path: pathlib.Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-nodes.conf").write_text(node_blocks(9))
    (tmp_path / "conf.d" / "20-more.conf").write_text("Host node-5 node-6\n  Port 2205\n")
    (tmp_path / "inner.conf").write_text("User from-inner\nHost node-2\n  Port 2202\n")
    cfg = write(tmp_path, f"Include {tmp_path}/conf.d/*.conf\n"
                          f"Host node-1 node-2 node-3\n  Include {tmp_path}/inner.conf\n"
                          "  ServerAliveInterval 9\n"
                          "Host *\n  ConnectTimeout 4\n")
    hosts = [f"node-{i}" for i in range(1, 10)] + ["elsewhere"]
    got, runs = resolve_all(cfg, hosts)
    for h in hosts:
        assert got[h] == real_g(cfg, h), h
    # groups: node-1,3 (inner.conf, no Port) | node-2 | node-4,7,8,9 | node-5,6 | elsewhere
    assert runs == 2 + 1 + 2 + 2 + 1


@pytest.mark.parametrize("text", [
    "Match host node-3\n  User matched\nHost *\n  Port 22\n",
    "Host node-*\n  IdentityFile ~/.ssh/%h.key\n",
    "Host node-*\n  ControlPath ~/.ssh/cm-%C\n",
    "Host NODE-3\n  User capital\n",
    "Host node-*\n  CanonicalizeHostname yes\n  CanonicalDomains example.org\n",
    "Host node-*\n  IdentityFile ${HOME}/.ssh/k\n",
])
def test_configs_that_can_tell_hosts_apart_are_resolved_per_host(
        tmp_path: pathlib.Path, text: str) -> None:
    cfg = write(tmp_path, text)
    hosts = ["node-1", "node-2", "node-3", "node-4"]
    got, runs = resolve_all(cfg, hosts)
    assert runs == len(hosts)
    for h in hosts:
        assert got[h] == real_g(cfg, h), h


def test_names_with_capitals_are_resolved_by_themselves(tmp_path: pathlib.Path) -> None:
    cfg = write(tmp_path, node_blocks(3) + "Host *\n  User x\n")
    hosts = ["node-1", "node-2", "Node-3", "NODE-2", "node-3"]
    got, runs = resolve_all(cfg, hosts)
    for h in hosts:
        assert got[h] == real_g(cfg, h), h
    assert runs == 4  # node-1/2/3 share: 2 samples; the two names with capitals: one each


def test_the_same_name_asked_at_once_is_one_sample(tmp_path: pathlib.Path) -> None:
    """Threads asking for one name together (the sentinel, a node asked twice) must not be taken
    as two samples of its group: two outputs of one name cannot show where names go."""
    cfg = write(tmp_path, node_blocks(4))
    for _ in range(3):
        hosts = ["node-1"] * 8 + ["node-2", "node-3", "node-4", "node-1"]
        r = _OpenSSHConfig(str(cfg), 5.0, str(SSH))
        with cf.ThreadPoolExecutor(12) as ex:
            got = list(ex.map(r._g, hosts))
        for h, opts in zip(hosts, got, strict=True):
            assert opts == real_g(cfg, h), h
        assert r.runs == 2
