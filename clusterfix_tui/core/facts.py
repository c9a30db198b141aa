"""Node facts in ONE round trip: the remote script, and its parse into NodeFacts.

The script is POSIX sh, sent over one exec channel. Every section is framed by markers that carry
a per-run random nonce, so nothing a hostile file or rule prints can forge a section boundary:

    @@CFX <nonce> BEGIN <name> [<hex arg>]
    <stdout, exactly>
    @@CFX <nonce> ERR <name> [<hex arg>]
    <stderr, exactly>
    @@CFX <nonce> END <name> [<hex arg>] rc=<n>

The script always prints a newline before ERR and END; that newline ends the last line of the
output, so the lines between the markers, joined with "\n", are the command's output byte for
byte. Arguments (file paths, IPs) are hex encoded on the node side. A missing tool is rc=127
with "cfx: TOOL: command not found" on stderr; a missing file is rc=1. Secrets never leave the
node: kubeconfig files are reduced to their `server:` lines there; a CNI config dir's network
configs come back with every credential-like value blanked there (CNI_SECRET_SED), its other
files (calico's kubeconfig, tokens, keys) with their `server:` lines only.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import secrets
import shlex
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from clusterfix_tui.core import parsers as P

MARK = "@@CFX"

# The fixed sections, in order: (name, shell command). Commands are constant strings.
_SECTIONS: tuple[tuple[str, str], ...] = (
    ("id_u", "id -u"),
    ("hostname", "hostname"),
    ("uname_r", "uname -r"),
    ("iptables_version", "iptables -V"),
    ("alternatives", "update-alternatives --query iptables"),
    ("alternatives_link", "readlink -f /etc/alternatives/iptables"),
    ("iptables_link", "readlink -f \"$(command -v iptables)\""),
    # the full legacy save: never `-t mangle` on legacy (it would create the table)
    ("legacy_save", "iptables-legacy-save"),
    ("nft_save_nat", "iptables-nft-save -t nat"),
    ("nft_save_filter", "iptables-nft-save -t filter"),
    ("nft_save_mangle", "iptables-nft-save -t mangle"),
    ("ip6_nft_save_mangle", "ip6tables-nft-save -t mangle"),
    ("nft_json", "nft -j list ruleset"),
    ("ip_link", "ip -j -d link show"),
    ("ip_addr", "ip -j addr show"),
    ("ip_route", "ip -j route show"),
    ("ip_neigh_flannel", "ip -j neigh show dev flannel.1"),
    ("fdb_flannel", "bridge -j fdb show dev flannel.1"),
    ("kube_proxy_healthz", "curl -s -m 1 http://localhost:10256/healthz"),
    ("kube_proxy_mode", "curl -s -m 1 http://localhost:10249/proxyMode"),
    ("subnet_env", "cat /run/flannel/subnet.env"),
    ("proc_modules", "cat /proc/modules"),
    ("sys_module", "ls /sys/module"),
    ("lib_modules", "ls -d \"/lib/modules/$(uname -r)\""),
    # firewalld (only asked for its zones when it runs: firewall-cmd is slow)
    ("firewalld", "firewall-cmd --state 2>&1 && { printf 'default-zone: %s\\n' "
                  "\"$(firewall-cmd --get-default-zone 2>/dev/null)\"; "
                  "firewall-cmd --get-active-zones 2>/dev/null; }"),
    # conntrack: the table's fill (count, max, buckets), the per-CPU counters and the online CPUs
    # (kube-proxy sizes the table by them) in ONE grep of five small in-memory files (never the
    # table itself); a missing file is grep's "No such file" (no nf_conntrack: "not loaded")
    ("conntrack", "grep -H . " + " ".join(P.CONNTRACK_FILES)),
    # the same counters over ctnetlink, only where the kernel has no /proc/net/stat/nf_conntrack
    # (CONFIG_NF_CONNTRACK_PROCFS off) and only when nf_conntrack_netlink is loaded already: a
    # `conntrack` run otherwise makes the kernel load it (and nf_conntrack with it) (_SPECIAL_CALLS)
    ("conntrack_stats", "conntrack -S"),
)

# sysctl name -> /proc path
SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "/proc/sys/net/ipv4/ip_forward",
    "net.bridge.bridge-nf-call-iptables": "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "net.ipv6.conf.all.forwarding": "/proc/sys/net/ipv6/conf/all/forwarding",
    "net.bridge.bridge-nf-call-ip6tables": "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    # IPv4 forwarding per device (the kernel checks the INPUT device's): flannel's bridge and
    # vxlan device; "missing" where the device does not exist ("/" = the "." of a device name)
    "net.ipv4.conf.cni0.forwarding": "/proc/sys/net/ipv4/conf/cni0/forwarding",
    "net.ipv4.conf.flannel/1.forwarding": "/proc/sys/net/ipv4/conf/flannel.1/forwarding",
}

KUBECONFIG_GLOBS = ("/etc/kubernetes/*.conf", "/root/.kube/config",
                    "/var/lib/rancher/k3s/agent/kubelet.kubeconfig",
                    "/var/lib/rancher/rke2/agent/kubelet.kubeconfig")

# sed -E, run ON THE NODE over a CNI network config (JSON): the string value of every key that
# names a credential (calico's k8s_auth_token, etcd passwords, *-data, api keys, ...) and any
# string value holding a bearer token or a private key become NOT_READ. Keys the checks read
# (type, name, plugins, delegates, clusterNetwork, ipam, ...) name no credential.
NOT_READ = "<not read: secret>"
_SECRET_KEY = (r"[^\"]*([Tt][Oo][Kk][Ee][Nn]|[Pp][Aa][Ss][Ss]|[Ss][Ee][Cc][Rr][Ee][Tt]|"
               r"[Cc]redential|[Pp]rivate|[Aa]pi_?[Kk]ey|[Kk]ey_?[Dd]ata|-data|"
               r"[Aa]uthorization|[Cc]ookie)[^\"]*")
_JSON_STRING = r'"([^"\\]|\\.)*"'
CNI_SECRET_SED = (
    rf's/("{_SECRET_KEY}"[[:space:]]*:[[:space:]]*){_JSON_STRING}/\1"{NOT_READ}"/g;'
    rf's/"[^"]*([Bb]earer |PRIVATE KEY)[^"]*"/"{NOT_READ}"/g'
)

# systemd units of the distributions that run flannel and kube-proxy inside their own process
# (k3s: `k3s` on servers, `k3s-agent` on agents; RKE2: `rke2-server` / `rke2-agent`)
SERVICE_UNITS = ("k3s", "k3s-agent", "rke2-server", "rke2-agent")

# -- shape facts (core/shape.py): IPv6, ip6tables, old single-binary iptables, k3s/RKE2, runtime --
# Sections named here; run by _SHAPE_PART. All read-only.
SHAPE_SECTIONS: tuple[tuple[str, str], ...] = (
    ("ip6_route", "ip -6 -j route show"),
    ("ip6_nft_save_nat", "ip6tables-nft-save -t nat"),
    ("ip6_nft_save_filter", "ip6tables-nft-save -t filter"),
    ("ip6_legacy_save", "ip6tables-legacy-save"),
    ("ip6_neigh_flannel", "ip -6 -j neigh show dev flannel-v6.1"),
    ("fdb_flannel6", "bridge -j fdb show dev flannel-v6.1"),
    # kube-proxy's IPVS virtual servers, read-only (ipvsadm may modprobe ip_vs: never run it);
    # the file exists only while ip_vs is loaded
    ("ip_vs", "cat /proc/net/ip_vs"),
    # which k3s/RKE2 service runs on the node (one state per unit, in SERVICE_UNITS order): the
    # unit a restart of embedded flannel / kube-proxy goes through; read-only
    ("service_units", "systemctl is-active " + " ".join(SERVICE_UNITS)),
)
# the binaries whose presence says which iptables the node has (1.8+: -legacy/-nft variants)
IPTABLES_BINARIES = ("iptables", "iptables-save", "iptables-legacy", "iptables-legacy-save",
                     "iptables-nft", "iptables-nft-save", "ip6tables", "ip6tables-save",
                     "ip6tables-legacy-save", "ip6tables-nft-save", "nft", "docker", "crictl",
                     "k3s", "rke2", "kubelet", "containerd", "cri-o", "crio")
# files whose existence tells the distribution, the runtime and static kube-proxy manifests
SHAPE_PATHS = ("/run/containerd/containerd.sock", "/var/run/docker.sock", "/run/docker.sock",
               "/run/crio/crio.sock", "/var/run/crio/crio.sock", "/var/run/cri-dockerd.sock",
               "/run/k3s/containerd/containerd.sock", "/var/lib/rancher/k3s", "/var/lib/rancher/rke2",
               "/etc/rancher/k3s/k3s.yaml", "/etc/rancher/rke2/rke2.yaml",
               "/etc/kubernetes/manifests/kube-proxy.yaml",
               "/var/lib/rancher/rke2/agent/pod-manifests/kube-proxy.yaml",
               "/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/config.yaml",
               "/run/flannel/subnet.env")
# CNI config dirs besides /etc/cni/net.d (k3s and RKE2 keep theirs here)
EXTRA_CNI_DIRS = ("/var/lib/rancher/k3s/agent/etc/cni/net.d", "/var/lib/rancher/rke2/agent/etc/cni/net.d")
# flannel's own config when it is embedded (k3s writes the net-conf it runs with)
EMBEDDED_FLANNEL_CONF = ("/var/lib/rancher/k3s/agent/etc/flannel/net-conf.json",
                         "/var/lib/rancher/rke2/agent/etc/flannel/net-conf.json")

_PRELUDE = r"""
N=__NONCE__
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LC_ALL=C PATH
T=$(mktemp -d 2>/dev/null) || { T=/tmp/cfx.$$; mkdir -m 700 "$T" || exit 97; }
cfx_wd=
trap 'cfx_wdstop; rm -rf "$T"' EXIT
# the hex of every argument, "HEX|HEX|...|" in cfx_hx; cfx_nexthex takes them back in order into
# cfx_h. Any name: ONE od for all (not one pipeline per name): each name ends with a NUL byte (no
# name holds one), od's bytes one per line, a NUL becomes "|".
cfx_hexs_od() {
  cfx_hx=
  if [ $# -gt 0 ]; then
    cfx_hx=$(printf '%s\0' "$@" | od -An -v -tx1 | tr -s ' \n' '\n\n' | sed 's/^00$/|/' | tr -d '\n')
  fi
}
cfx_hexs() {
  cfx_hx=
  [ $# -gt 0 ] || return 0
  for cfx_hn in "$@"; do
    case $cfx_hn in ''|*[!A-Za-z0-9._/+-]*) cfx_hexs_od "$@"; return ;; esac
  done
  # names of letters, digits and ._/+- only (nearly every path): printf's "'c" argument is the
  # character's code, so the hex comes from builtins, no process
  : >"$T/hx"
  for cfx_hn in "$@"; do
    set --
    while [ -n "$cfx_hn" ]; do cfx_hr=${cfx_hn#?}; set -- "$@" "'${cfx_hn%"$cfx_hr"}"; cfx_hn=$cfx_hr; done
    printf '%02x' "$@" >>"$T/hx"; printf '|' >>"$T/hx"
  done
  IFS= read -r cfx_hx <"$T/hx"
}
cfx_nexthex() { cfx_h=${cfx_hx%%|*}; cfx_hx=${cfx_hx#*|}; }
# `cat FILE` of a section's stderr (a line or two, when any; also kube-proxy's two short answers
# and a probe's few lines) by the shell itself: its first 16
# lines with `read` (no `cat` process, ~1.5 ms of the node's CPU each, #17), the rest, if any, by
# `cat` from where `read` stopped (the same open file). Byte for byte what `cat` prints (a last
# line without a newline stays without), except a NUL byte, which the shell's `read` drops.
cfx_cate() {
  { cfx_ci=0; cfx_cl=
    while IFS= read -r cfx_cl; do
      printf '%s\n' "$cfx_cl"; cfx_cl=; cfx_ci=$((cfx_ci+1))
      if [ "$cfx_ci" -ge 16 ]; then cat; return; fi
    done
    printf '%s' "$cfx_cl"
  } <"$1"
}
# (an empty or absent file prints nothing: no `cat` process for it)
cfx_emit() {
  printf '@@CFX %s BEGIN %s\n' "$N" "$1"; if [ -s "$T/o" ]; then cat "$T/o" 2>/dev/null; fi
  printf '\n@@CFX %s ERR %s\n' "$N" "$1"; if [ -s "$T/e" ]; then cfx_cate "$T/e" 2>/dev/null; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$1" "$2"
}
# a simple command (no shell syntax: name, tool, then its argv): run under its deadline directly,
# without a `sh -c` between (one process less per section); same stdout, stderr and rc
cfx_x() {
  cfx_n=$1; cfx_tool=$2; shift 2
  if ! command -v "$cfx_tool" >/dev/null 2>&1; then
    : >"$T/o"; printf 'cfx: %s: command not found\n' "$cfx_tool" >"$T/e"; cfx_emit "$cfx_n" 127; return
  fi
  printf '@@CFX %s BEGIN %s\n' "$N" "$cfx_n"
  if [ -n "$cfx_sto" ]; then
    cfx_run /dev/null "$@" 2>"$T/e"
    [ "$cfx_rc" -eq 137 ] && printf 'cfx: timed out after __SECTION_TIMEOUT__s (killed)\n' >>"$T/e"
  else
    ( "$@" ) 2>"$T/e" </dev/null; cfx_rc=$?
  fi
  printf '\n@@CFX %s ERR %s\n' "$N" "$cfx_n"; if [ -s "$T/e" ]; then cfx_cate "$T/e"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$cfx_n" "$cfx_rc"
}
# a command with shell syntax (name, tool, command): cfx_x over `sh -c` (same command-not-found
# branch, deadline and markers)
cfx_sh() { cfx_x "$1" "$2" sh -c "$3"; }
# a one-line fact the shell read itself (a kernel value: no process): name, value
cfx_put() {
  printf '@@CFX %s BEGIN %s\n%s\n\n@@CFX %s ERR %s\n\n@@CFX %s END %s rc=0\n' "$N" "$1" "$2" "$N" "$1" "$N" "$1"
}
# `ls DIR` of a readable directory (name, dir) from the shell's glob: one name a line
cfx_lsdir() {
  cfx_v=
  for cfx_hn in "$2"/*; do
    if [ -e "$cfx_hn" ] || [ -L "$cfx_hn" ]; then cfx_v="$cfx_v${cfx_hn##*/}
"; fi
  done
  printf '@@CFX %s BEGIN %s\n%s\n@@CFX %s ERR %s\n\n@@CFX %s END %s rc=0\n' "$N" "$1" "$cfx_v" "$N" "$1" "$N" "$1"
}
# two `curl -s -m 1 URL` facts (name1 url1 name2 url2) with ONE curl, not two: each transfer's
# body into a file, its exit status from -w %{exitcode} (curl 7.75+). Used only when that is all
# curl said (two numbers, nothing on stderr, not killed at the deadline); otherwise each runs
# alone, as before.
cfx_curl2() {
  if [ -n "$cfx_sto" ] && command -v curl >/dev/null 2>&1; then
    rm -f "$T/c1" "$T/c2"
    cfx_run /dev/null curl -s -m 1 -o "$T/c1" -w '%{exitcode}\n' "$2" --next -s -m 1 -o "$T/c2" \
      -w '%{exitcode}\n' "$4" >"$T/cw" 2>"$T/e"
    cfx_r1=; cfx_r2=; cfx_r3=
    { IFS= read -r cfx_r1; IFS= read -r cfx_r2; IFS= read -r cfx_r3; } <"$T/cw"
    case "$cfx_rc:$cfx_r1:$cfx_r2:$cfx_r3" in
      137:*|*::*|*[!0-9:]*|*[0-9]) ;;
      *) if [ ! -s "$T/e" ]; then
           printf '@@CFX %s BEGIN %s\n' "$N" "$1"; if [ -s "$T/c1" ]; then cfx_cate "$T/c1"; fi
           cfx_tail "$1" "$cfx_r1"
           printf '@@CFX %s BEGIN %s\n' "$N" "$3"; if [ -s "$T/c2" ]; then cfx_cate "$T/c2"; fi
           cfx_tail "$3" "$cfx_r2"
           return
         fi ;;
    esac
  fi
  cfx_x "$1" curl curl -s -m 1 "$2"
  cfx_x "$3" curl curl -s -m 1 "$4"
}
# a fact that cannot hang (a kernel route lookup): no deadline process, one fork less per peer
cfx_shq() {
  printf '@@CFX %s BEGIN %s\n' "$N" "$1"
  ( eval "$3" ) 2>"$T/e" </dev/null; cfx_rc=$?
  printf '\n@@CFX %s ERR %s\n' "$N" "$1"; if [ -s "$T/e" ]; then cfx_cate "$T/e"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$1" "$cfx_rc"
}
cfx_sto=
command -v timeout >/dev/null 2>&1 && cfx_sto="timeout -s KILL __SECTION_TIMEOUT__"
# Each section's deadline (#14: a hung command costs only its own section, killed and reported
# "timed out", rc 137 as `timeout -s KILL` gives). Where the node has `timeout`, ONE watchdog
# (a subshell of this script, waking once a second with `sleep 1`) keeps every section run in the
# foreground (cfx_run) to it, instead of a `timeout` process each (a `timeout` and its fork cost
# ~1 ms of the node's CPU a section, ~26 sections, #17). cfx_run starts the command in the
# background and waits for it; before the wait it writes "SEQ PID" to $T/wd, after it "SEQ -".
# The watchdog reads that file at each tick; once the same section has run for
# __SECTION_TIMEOUT__ ticks (__SECTION_TIMEOUT__ to __SECTION_TIMEOUT__+1 s) it stops and then
# SIGKILLs that process and every process under it (as `timeout` kills its process group: a child
# left behind could hold the script's stdout open), only if the process is still a child of this
# shell. The watchdog ends with the script (EXIT trap) or when this shell or $T is gone. Without
# `timeout` (or `sleep`), every section runs as before (cfx_sto: none, or `timeout` each).
cfx_main=$$
cfx_killtree() {
  cfx_kp=$1; cfx_l=
  { IFS= read -r cfx_l; } <"/proc/$cfx_kp/stat" 2>/dev/null || return 0
  set -- ${cfx_l##*) }
  [ "$2" = "$cfx_main" ] || return 0
  kill -STOP "$cfx_kp" 2>/dev/null
  cfx_tree=" $cfx_kp "; cfx_more=1
  while [ -n "$cfx_more" ]; do
    cfx_more=
    for cfx_f in /proc/[0-9]*/stat; do
      cfx_l=; { IFS= read -r cfx_l; } <"$cfx_f" 2>/dev/null || continue
      cfx_q=${cfx_l%% *}
      case $cfx_tree in *" $cfx_q "*) continue ;; esac
      set -- ${cfx_l##*) }
      case $cfx_tree in *" $2 "*) kill -STOP "$cfx_q" 2>/dev/null; cfx_tree="$cfx_tree$cfx_q "; cfx_more=1 ;; esac
    done
  done
  kill -KILL $cfx_tree 2>/dev/null
}
cfx_wdog() {
  cfx_sp=
  trap 'if [ -n "$cfx_sp" ]; then kill "$cfx_sp" 2>/dev/null; wait "$cfx_sp"; fi; exit 0' TERM
  cfx_ws=; cfx_wn=0
  while kill -0 "$cfx_main" 2>/dev/null && [ -e "$T/wd" ]; do
    sleep 1 & cfx_sp=$!; wait "$cfx_sp"; cfx_sp=
    cfx_a=; cfx_b=
    { IFS=' ' read -r cfx_a cfx_b; } <"$T/wd" 2>/dev/null
    case "$cfx_a:$cfx_b" in *[!0-9:]*|:*|*:) cfx_ws=; cfx_wn=0; continue ;; esac
    if [ "$cfx_a" = "$cfx_ws" ]; then cfx_wn=$((cfx_wn+1)); else cfx_ws=$cfx_a; cfx_wn=0; fi
    if [ "$cfx_wn" -ge "$cfx_dl" ]; then cfx_killtree "$cfx_b"; cfx_wn=0; fi
  done
}
cfx_wdstop() {
  if [ -n "$cfx_wd" ]; then kill "$cfx_wd" 2>/dev/null; wait "$cfx_wd" 2>/dev/null; cfx_wd=; fi
}
# a section's command (stdin from $1, then the command; stdout and stderr the caller's) under
# its deadline: its exit status in cfx_rc (137: killed at the deadline)
cfx_seq=0
cfx_run() {
  cfx_in=$1; shift
  if [ -n "$cfx_wd" ]; then
    "$@" <"$cfx_in" &
    cfx_p=$!; cfx_seq=$((cfx_seq+1)); printf '%s %s\n' "$cfx_seq" "$cfx_p" >"$T/wd"
    wait "$cfx_p" 2>/dev/null; cfx_rc=$?
    printf '%s -\n' "$cfx_seq" >"$T/wd"
    # killed by a signal (rc 128+N; no section's tool exits with such a code itself): the shell's
    # note on it ("Killed", "Segmentation fault"; bash: a line with a pid) is what the shell prints
    # for a FOREGROUND command killed by that signal, as it did for `timeout` (which dies of its
    # child's signal, core dumps off; its own SIGKILL at the deadline); a `sh` that kills itself
    # with it, in the foreground, makes the shell print exactly that, where it did (or nothing).
    # The shell's own note on the background command is left out: shells print it or not.
    if [ "$cfx_rc" -gt 128 ] && [ "$cfx_rc" -le 192 ]; then
      sh -c 'ulimit -c 0 2>/dev/null; kill -'"$((cfx_rc-128))"' $$' </dev/null
    fi
  else
    $cfx_sto "$@" <"$cfx_in"; cfx_rc=$?
  fi
  return "$cfx_rc"
}
cfx_dl=${cfx_sto##* }  # the deadline's seconds, as `timeout` has them
cfx_wdstart() {
  if [ -n "$cfx_sto" ] && command -v sleep >/dev/null 2>&1 && [ -r /proc/self/stat ] && : >"$T/wd"; then
    cfx_wdog >/dev/null 2>&1 </dev/null &
    cfx_wd=$!
  fi
}
cfx_wdstart
# the node's kubectl (a Go binary and an API round trip: the slowest fact) runs in the
# background while the other sections run; its section is printed where it always was. One
# short request: Go's runtime on one P (GOMAXPROCS=1: no idle Ps spinning, one GC worker) and
# its first collection at 16 MB of heap, not 4 (GOGC=400; a one-Node answer needs ~7 MB, so
# none; a heap is still bounded at 5x what is live): ~10-30% less of the node's CPU, the most
# when many processes share the cores (#17). Same request, kubeconfig, credentials, deadlines.
cfx_kpid=
if command -v kubectl >/dev/null 2>&1; then
  if command -v timeout >/dev/null 2>&1; then cfx_to="timeout 8"; else cfx_to=""; fi
  HOME=${HOME:-/root} GOMAXPROCS=1 GOGC=400 $cfx_to kubectl __KUBECTL_GET__ --request-timeout=5s \
    >"$T/ko" 2>"$T/ke" </dev/null &
  cfx_kpid=$!
fi
# a file of a CNI config dir: a network config's JSON leaves the node with the value of every
# credential-like key (and any value holding a bearer token or a private key) blanked HERE;
# anything else there (calico's kubeconfig, a token, a key) leaves only its `server:` lines
# (its section streamed out: `cfx_cni FILE "cni_conf HEX"`, no temp file and `cat` for its content)
cfx_cni() {
  printf '@@CFX %s BEGIN %s\n' "$N" "$2"
  case "$1" in
    *.conf|*.conflist|*.json)
      head -c 65536 -- "$1" 2>"$T/e" | sed -E '__CNI_SED__'; cfx_rc=$?
      [ -s "$T/e" ] && cfx_rc=1 ;;
    *)
      grep -E '^[[:space:]]*-?[[:space:]]*server:' -- "$1" 2>"$T/e"
      printf 'cfx: not a CNI network config: only its server: lines were read\n' >>"$T/e"
      cfx_rc=0 ;;
  esac
  cfx_tail "$2" "$cfx_rc"
}
# a section's end: its stderr (from $T/e, `cat` only when there is some) and its exit status
cfx_tail() {
  printf '\n@@CFX %s ERR %s\n' "$N" "$1"; if [ -s "$T/e" ]; then cfx_cate "$T/e"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$1" "$2"
}
cfx_file() {
  cfx_n=$1; if [ -r "$2" ]; then cat -- "$2" >"$T/o" 2>"$T/e"; cfx_rc=$?; else
    : >"$T/o"; printf 'cfx: %s: no such file\n' "$2" >"$T/e"; cfx_rc=1; fi
  cfx_emit "$cfx_n" "$cfx_rc"
}
"""

# a sysctl file holds one line: read by the shell itself (no `cat`, no subshell per sysctl), and
# printed straight into its section
_SYSCTL_PART = r"""
printf '@@CFX %s BEGIN sysctl\n' "$N"
for cfx_kv in __SYSCTLS__; do
  cfx_k=${cfx_kv%%=*}; cfx_p=${cfx_kv#*=}
  if [ -r "$cfx_p" ]; then cfx_v=; IFS= read -r cfx_v <"$cfx_p"; printf '%s=%s\n' "$cfx_k" "$cfx_v"
  else printf '%s!missing\n' "$cfx_k"; fi
done
printf '\n@@CFX %s ERR sysctl\n\n@@CFX %s END sysctl rc=0\n' "$N" "$N"
"""

_FILES_PART = r"""
set --
for cfx_f in /etc/cni/net.d/*; do
  [ -e "$cfx_f" ] && set -- "$@" "$cfx_f"
done
cfx_ncni=$#
for cfx_f in __KUBECONFIGS__; do
  [ -e "$cfx_f" ] && set -- "$@" "$cfx_f"
done
cfx_hexs "$@"
cfx_i=0
for cfx_f in "$@"; do
  cfx_i=$((cfx_i+1)); cfx_nexthex
  if [ "$cfx_i" -le "$cfx_ncni" ]; then
    if [ -f "$cfx_f" ]; then cfx_cni "$cfx_f" "cni_conf $cfx_h"
    else : >"$T/o"; echo "cfx: not a regular file" >"$T/e"; cfx_emit "cni_conf $cfx_h" 2; fi
  else
    # the server URL only: nothing else of a kubeconfig ever leaves the node
    printf '@@CFX %s BEGIN kubeconfig %s\n' "$N" "$cfx_h"
    grep -E '^[[:space:]]*-?[[:space:]]*server:' -- "$cfx_f" 2>"$T/e"; cfx_tail "kubeconfig $cfx_h" $?
  fi
done
if [ -n "$cfx_kpid" ]; then
  # (no section runs while the script waits for a kubectl still running, up to its own 8 s
  # against a dead API: the watchdog stops meanwhile, not waking each second for nothing)
  cfx_wdre=; if [ -n "$cfx_wd" ] && kill -0 "$cfx_kpid" 2>/dev/null; then cfx_wdstop; cfx_wdre=1; fi
  wait "$cfx_kpid"; cfx_rc=$?  # started at the top (it is the slowest fact): its result here
  if [ -n "$cfx_wdre" ]; then cfx_wdstart; fi
  printf '@@CFX %s BEGIN %s\n' "$N" kubectl_get_nodes; if [ -s "$T/ko" ]; then cat "$T/ko"; fi
  printf '\n@@CFX %s ERR %s\n' "$N" kubectl_get_nodes; if [ -s "$T/ke" ]; then cfx_cate "$T/ke"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" kubectl_get_nodes "$cfx_rc"
else
  : >"$T/o"; echo "cfx: kubectl: command not found" >"$T/e"; cfx_emit kubectl_get_nodes 127
fi
"""

# Only when iptables-nft says a table is incompatible: which chains, and their nft rules (handles).
# Every tool under its own deadline (#14): one killed at it makes the table's incompatible_chains
# section "timed out" (rc 137, never "no incompatible chain": its check is then not checked on
# the node) and ends that table's reading; one `nft -a list table` gives both the chain names and
# nft_table_text.
_INCOMPAT_PART = r"""
if command -v nft >/dev/null 2>&1 && command -v iptables-nft >/dev/null 2>&1; then
  for cfx_th in nat:6e6174 filter:66696c746572 mangle:6d616e676c65; do
    cfx_t=${cfx_th%%:*}; cfx_h=${cfx_th#*:}
    cfx_run /dev/null iptables-nft -t "$cfx_t" -S >/dev/null 2>&1
    [ "$cfx_rc" -eq 0 ] && continue
    : >"$T/o"; : >"$T/e"; : >"$T/nt"; : >"$T/ne"
    if [ "$cfx_rc" -ne 137 ]; then
      cfx_run /dev/null nft -a list table ip "$cfx_t" >"$T/nt" 2>"$T/ne"
      if [ "$cfx_rc" -ne 0 ] && [ "$cfx_rc" -ne 137 ]; then continue; fi
    fi
    if [ "$cfx_rc" -ne 137 ]; then
      cfx_i=0
      for cfx_c in $(sed -n 's/^[[:space:]]*chain \([^[:space:]]*\) {.*/\1/p' "$T/nt"); do
        cfx_i=$((cfx_i+1)); [ "$cfx_i" -gt 2000 ] && break
        cfx_run /dev/null iptables-nft -t "$cfx_t" -S "$cfx_c" >/dev/null 2>>"$T/e"
        [ "$cfx_rc" -eq 137 ] && break
        if [ "$cfx_rc" -ne 0 ]; then printf '%s\n' "$cfx_c" >>"$T/o"; fi
      done
    fi
    if [ "$cfx_rc" -eq 137 ]; then
      printf 'cfx: timed out after __SECTION_TIMEOUT__s (killed)\n' >>"$T/e"
      cfx_emit "incompatible_chains $cfx_h" 137
      continue
    fi
    cfx_emit "incompatible_chains $cfx_h" 0
    mv -f "$T/nt" "$T/o"; mv -f "$T/ne" "$T/e"
    cfx_emit "nft_table_text $cfx_h" 0
  done
fi
"""


# Shape facts: which binaries exist, which paths exist, the old single-binary iptables (< 1.8 has
# no -legacy/-nft variants: its iptables-save is the only view), k3s/RKE2 CNI dirs.
_SHAPE_PART = r"""
printf '@@CFX %s BEGIN binaries\n' "$N"
for cfx_b in __BINARIES__; do
  # `command -v` into a file and `read` back: the path without a subshell per binary
  if command -v "$cfx_b" >"$T/c" 2>/dev/null; then
    cfx_p=; IFS= read -r cfx_p <"$T/c"; printf '%s=%s\n' "$cfx_b" "$cfx_p"
  fi
done
printf '\n@@CFX %s ERR binaries\n\n@@CFX %s END binaries rc=0\n' "$N" "$N"
printf '@@CFX %s BEGIN paths\n' "$N"
for cfx_f in __PATHS__; do
  [ -e "$cfx_f" ] && printf '%s\n' "$cfx_f"
done
printf '\n@@CFX %s ERR paths\n\n@@CFX %s END paths rc=0\n' "$N" "$N"
if ! command -v iptables-legacy-save >/dev/null 2>&1 && ! command -v iptables-nft-save >/dev/null 2>&1; then
  cfx_x iptables_save iptables-save iptables-save
  cfx_x ip6tables_save ip6tables-save ip6tables-save
fi
set --
for cfx_d in __CNIDIRS__; do
  [ -d "$cfx_d" ] || continue
  for cfx_f in "$cfx_d"/*; do
    [ -f "$cfx_f" ] && set -- "$@" "$cfx_f"
  done
done
cfx_ncni=$#
for cfx_f in __FLANNELCONF__; do
  [ -f "$cfx_f" ] && set -- "$@" "$cfx_f"
done
cfx_hexs "$@"
cfx_i=0
for cfx_f in "$@"; do
  cfx_i=$((cfx_i+1)); cfx_nexthex
  if [ "$cfx_i" -le "$cfx_ncni" ]; then
    cfx_cni "$cfx_f" "cni_conf $cfx_h"
  else
    head -c 65536 -- "$cfx_f" >"$T/o" 2>"$T/e"; cfx_rc=$?
    cfx_emit "flannel_conf $cfx_h" "$cfx_rc"
  fi
done
"""


# Every peer's `ip -j route get ADDR` and the netlink dumps in NL_BATCHED (`ip -j addr show`,
# `ip -j route show`, `ip -j neigh show dev flannel.1`: one `timeout` and one `ip` each before)
# in ONE `ip -j -force -batch` under one deadline, split back by awk into the same sections: the
# answers are one JSON line per command that succeeded, in order; a command that failed prints
# nothing on stdout and "Command failed -:<line>" on stderr. The route lookups come first, the
# dumps last: a dump's stderr could only come after the last lookup's, so a dump is taken from the
# batch only when nothing at all follows the last "Command failed" line and no dump failed (its
# section then is its stdout line, no stderr, rc=0: what it prints alone). Used only when it adds
# up exactly: every stdout line one JSON array, as many lines as commands that did not fail,
# stderr ending on a "Command failed" line of a lookup, awk's own exit status 0, the batch not
# killed at its deadline. Otherwise every command runs alone, as before: a lookup that failed
# (and every lookup when it does not add up: no awk, an `ip` without -j/-force/-batch, busybox)
# as `ip -j route get ADDR`, a dump under its own deadline (cfx_x). A neighbour dump of a device
# that does not exist (/sys/class/net) runs alone (it fails; its error is its own).
_ROUTE_AWK = (
    r'FILENAME == ARGV[1] { if ($0 ~ /^Command failed -:[0-9]+$/) { k = substr($0, 18) + 0;'
    r' if (!(k in bad)) nb++; bad[k] = 1; tail = 0 } else tail = 1; next }'
    r' FILENAME == ARGV[2] { na++; kd[na] = $1; hx[na] = $2; ad[na] = $3; next }'
    r' { no++; line[no] = $0; if ($0 !~ /^\[.*\]$/) odd = 1 }'
    r' END { ok = (!tail && !odd && no == na - nb);'
    r' for (k in bad) if (k < 1 || k > na || kd[k] != "r") ok = 0;'
    r' j = 0; for (i = 1; i <= na; i++) { if (ok && !(i in bad)) { j++;'
    r' a = (kd[i] == "r") ? "route_get " hx[i] : hx[i];'
    r' printf "%s %s BEGIN %s\n%s\n\n%s %s ERR %s\n\n%s %s END %s'
    r' rc=0\n", m, n, a, line[j], m, n, a, m, n, a > s }'
    r' else print kd[i] " " hx[i] " " ad[i] > f } }'
)
_ROUTES_PART = r"""
: >"$T/rq"; : >"$T/rl"
__ROUTES__
__DUMPS__
cfx_rf="$T/rl"
if command -v ip >/dev/null 2>&1 && command -v awk >/dev/null 2>&1; then
  cfx_run "$T/rq" ip -j -force -batch - >"$T/ro" 2>"$T/re"
  : >"$T/rs"; : >"$T/rf"
  if [ "$cfx_rc" -ne 137 ] && \
     awk -v m=__MARK__ -v n="$N" -v s="$T/rs" -v f="$T/rf" __AWK__ "$T/re" "$T/rl" "$T/ro" </dev/null 2>/dev/null
  then cfx_rf="$T/rf"; if [ -s "$T/rs" ]; then cat "$T/rs"; fi; fi
fi
while read -r cfx_k cfx_h cfx_a; do
  if [ "$cfx_k" = r ]; then
    printf '@@CFX %s BEGIN route_get %s\n' "$N" "$cfx_h"
    ( ip -j route get "$cfx_a" ) 2>"$T/e" </dev/null; cfx_rc=$?
    printf '\n@@CFX %s ERR route_get %s\n' "$N" "$cfx_h"; if [ -s "$T/e" ]; then cfx_cate "$T/e"; fi
    printf '\n@@CFX %s END route_get %s rc=%s\n' "$N" "$cfx_h" "$cfx_rc"
  else
    case $cfx_h in
__ALONE__
    esac
  fi
done <"$cfx_rf"
"""
# the fixed sections that go through the batch above (none of them in `skip`), in this order
NL_BATCHED = ("ip_addr", "ip_route", "ip_neigh_flannel")


def new_nonce() -> str:
    return secrets.token_hex(12)


# The VXLAN underlay probe, one per peer (its flannel.1 address: the packet goes through the
# vxlan device, encapsulated to udp/<port> on the peer, and the answer comes back the same way).
# ping when the node has it (ICMP passes most host firewalls), else a TCP connect with curl to
# tcp/10250 (any answer of the peer's kernel, a refusal included, proves the path). Started in the
# background at the top of the script, collected at the end: it costs no time of its own.
_PROBE_START = r"""
cfx_probe() {
  if command -v ping >/dev/null 2>&1; then echo "probe: ping"; ping -n -c 2 -i 0.3 -W 2 "$1" 2>&1
  elif command -v curl >/dev/null 2>&1; then echo "probe: curl tcp/10250"
    curl -sS -m 3 -o /dev/null "http://$1:10250/" 2>&1
  else echo "probe: none (no ping, no curl)"; return 127; fi
}
cfx_bg=
cfx_probes() {
  cfx_pi=0
  for cfx_ip in __PROBES__; do
    cfx_pi=$((cfx_pi+1))
    ( cfx_probe "$cfx_ip" >"$T/p$cfx_pi" 2>&1 </dev/null; echo $? >"$T/p$cfx_pi.rc" ) &
    cfx_bg="$cfx_bg $!"
  done
}
# No ping: every probe's connect in ONE curl, all at once (-Z, curl 7.66+; ~13 ms of node CPU a
# curl process, #17), each transfer's exit status and error message written by -w (7.75+) and
# made into that probe's section at the end (_PROBE_END): what `curl -sS` alone prints and
# exits with. Any other answer (an older curl): each probe runs alone then, as before.
# kube-proxy's two `curl -s -m 1 URL` sections ride in the same curl when it runs under a
# deadline (`timeout`, as each section does): two more transfers (--next: their own -s -m 1,
# each body into its own file), one curl process less (~9-16 ms of node CPU, #17). Their
# sections are printed at the end (_PROBE_END) from the bodies and -w's exit statuses: what
# `curl -s -m 1 URL` alone prints (nothing on stderr) and exits with. If any transfer's line is
# missing or odd, they run alone there (cfx_curl2), as the probes do.
# (the probes' background jobs, not the watchdog's: `wait` for these pids only)
cfx_waitbg() { for cfx_q in $cfx_pz $cfx_bg; do wait "$cfx_q"; done; cfx_bg=; }
cfx_pz=; cfx_kp=
if ! command -v ping >/dev/null 2>&1 && command -v curl >/dev/null 2>&1; then
  set --
  for cfx_ip in __PROBES__; do set -- "$@" -o /dev/null "http://$cfx_ip:10250/"; done
  if [ -n "__KPURL1__" ] && [ -n "$cfx_sto" ]; then
    cfx_kp=1  # ($T is new: no c1, c2 yet)
    $cfx_sto curl -Z -sS -m 3 -w '%{urlnum} %{exitcode} %{errormsg}\n' "$@" \
      --next -s -m 1 -o "$T/c1" -w '%{urlnum} %{exitcode} %{errormsg}\n' __KPURL1__ \
      --next -s -m 1 -o "$T/c2" -w '%{urlnum} %{exitcode} %{errormsg}\n' __KPURL2__ \
      >"$T/pz" 2>/dev/null </dev/null &
  else
    curl -Z -sS -m 3 -w '%{urlnum} %{exitcode} %{errormsg}\n' "$@" >"$T/pz" 2>/dev/null </dev/null &
  fi
  cfx_pz=$!
else
  cfx_probes
fi
"""
# the probes' hex arguments are computed here (no od|tr pipeline per marker), their rc files read
# by the shell
_PROBE_END = r"""
# (every section has run: the watchdog stops before the wait for the probes, up to their 3 s
# against an unreachable peer; what may still run below has a `timeout` each, as before)
cfx_wdstop
cfx_waitbg
cfx_pvar=
if [ -n "$cfx_pz" ]; then
  # one line per transfer, "URLNUM EXITCODE MESSAGE" (URLNUM from 0), kept in cfx_prI / cfx_pmI
  # (I = URLNUM+1, checked to be a number: no other text reaches `eval`): each probe's section is
  # what cfx_probe prints ("probe: curl tcp/10250", then `curl -sS`'s "curl: (RC) MESSAGE" line
  # when it failed) and its exit status, printed by the shell (no file, no `cat`); used only when
  # every probe has exactly one such line
  cfx_pn=0; for cfx_ip in __PROBES__; do cfx_pn=$((cfx_pn+1)); done
  # (and kube-proxy's two transfers after the probes', when they rode along)
  cfx_pt=$cfx_pn; [ -n "$cfx_kp" ] && cfx_pt=$((cfx_pn+2))
  cfx_pok=1; cfx_pseen=' '
  while IFS=' ' read -r cfx_u cfx_r cfx_m; do
    case "$cfx_u:$cfx_r" in *[!0-9:]*|:*|*:) cfx_pok=; break ;; esac
    cfx_u=$((cfx_u+1))
    case $cfx_pseen in *" $cfx_u "*) cfx_pok=; break ;; esac
    [ "$cfx_u" -le "$cfx_pt" ] || { cfx_pok=; break; }
    cfx_pseen="$cfx_pseen$cfx_u "
    eval "cfx_pr$cfx_u=\$cfx_r; cfx_pm$cfx_u=\$cfx_m"
  done <"$T/pz"
  cfx_i=0
  while [ "$cfx_i" -lt "$cfx_pt" ]; do
    cfx_i=$((cfx_i+1)); case $cfx_pseen in *" $cfx_i "*) ;; *) cfx_pok= ;; esac
  done
  if [ -n "$cfx_pok" ]; then cfx_pvar=1; else cfx_probes; cfx_waitbg; fi
fi
cfx_pi=0
for cfx_h in __PROBEHEX__; do
  cfx_pi=$((cfx_pi+1))
  printf '@@CFX %s BEGIN vxlan_probe %s\n' "$N" "$cfx_h"
  if [ -n "$cfx_pvar" ]; then
    eval "cfx_prc=\$cfx_pr$cfx_pi; cfx_m=\$cfx_pm$cfx_pi"
    if [ "$cfx_prc" -eq 0 ]; then printf 'probe: curl tcp/10250\n'
    else printf 'probe: curl tcp/10250\ncurl: (%s) %s\n' "$cfx_prc" "$cfx_m"; fi
    printf '\n@@CFX %s ERR vxlan_probe %s\n' "$N" "$cfx_h"
  else
    if [ -s "$T/p$cfx_pi" ]; then cfx_cate "$T/p$cfx_pi" 2>/dev/null; fi
    printf '\n@@CFX %s ERR vxlan_probe %s\n' "$N" "$cfx_h"
    if [ -e "$T/p$cfx_pi.rc" ]; then cfx_prc=; IFS= read -r cfx_prc <"$T/p$cfx_pi.rc"; else cfx_prc=124; fi
  fi
  printf '\n@@CFX %s END vxlan_probe %s rc=%s\n' "$N" "$cfx_h" "$cfx_prc"
done
if [ -n "$cfx_kp" ]; then
  if [ -n "$cfx_pvar" ]; then
    : >"$T/e"; cfx_i=$((cfx_pn+1)); eval "cfx_prc=\$cfx_pr$cfx_i"
    printf '@@CFX %s BEGIN %s\n' "$N" __KPNAME1__; if [ -s "$T/c1" ]; then cfx_cate "$T/c1"; fi
    cfx_tail __KPNAME1__ "$cfx_prc"
    cfx_i=$((cfx_pn+2)); eval "cfx_prc=\$cfx_pr$cfx_i"
    printf '@@CFX %s BEGIN %s\n' "$N" __KPNAME2__; if [ -s "$T/c2" ]; then cfx_cate "$T/c2"; fi
    cfx_tail __KPNAME2__ "$cfx_prc"
  else
    cfx_curl2 __KPNAME1__ __KPURL1__ __KPNAME2__ __KPURL2__
  fi
fi
"""


# seconds one fact may take on the node (a hung `iptables-save` behind a held xtables lock, a
# `cat` of a dead NFS path, a firewall-cmd waiting on D-Bus): past it the section is killed and
# reported, and the node's other facts still come back
SECTION_TIMEOUT = 10
# what the script writes on a section's stderr when that section's deadline killed it
TIMED_OUT_MARK = "cfx: timed out after"
# sections whose failure (any rc but 0, a missing `ip` included) means "not read", never
# "none there": the checks would read an unlisted link/address/route table as an empty one
FAIL_IS_UNREAD = frozenset({"ip_link", "ip_addr", "ip_route", "ip6_route"})
# sections asked for JSON (`ip -j`, `bridge -j`) whose answer, when it is not JSON, was not read:
# iproute2 4.14-4.16 (Ubuntu 18.04: 4.15) takes -j everywhere but prints `ip route`, `ip neigh`
# and `ip route get` as text, rc 0; read as JSON that would be "no routes at all"
NFT_JSON_SECTION = "nft_json"
JSON_SECTIONS = frozenset({"ip_link", "ip_addr", "ip_route", "ip6_route", "ip_neigh_flannel",
                           "ip6_neigh_flannel", "fdb_flannel", "fdb_flannel6", "route_get",
                           NFT_JSON_SECTION})
NOT_JSON_WHY = "printed text, not JSON (iproute2 before 4.17 ignores -j for routes/neighbours)"
# `nft -j list ruleset` of an nft built without JSON support: 0.9.0/0.9.1 print the ruleset as text
# (rc 0), 0.9.2+ "Error: JSON support not compiled-in" (rc 1; nftables@6eb8bcc). Either way the
# node's nftables rules were not read (a missing nft, rc 127, is a real answer)
NFT_NOT_JSON_WHY = "printed text, not JSON (nft 0.9.0/0.9.1 built without JSON support ignore -j)"


_JSON_START = ("[", "{", "")


def _not_json(text: str) -> bool:
    head = text.lstrip()[:1]
    return head not in ("", "[", "{")


def section_command(name: str) -> str | None:
    """The shell command of a fixed section (what a timed-out section was running)."""
    return dict(_SECTIONS + SHAPE_SECTIONS).get(name)


def loader_command(nonce: str) -> str:
    """The command line that carries the facts script: a few bytes whatever the cluster's size
    (the script grows with the peers; a command line is limited to 128 KiB per argument). The
    script travels on stdin, is written to a private temp file and run from there, so nothing in
    it can read the rest of the script as its input. The `N=` line lets a reader of the command
    (script_nonce) know the run's nonce.

    The script's output leaves the node in 32 KiB blocks (`dd iflag=fullblock`, when the node's
    dd has it): the script writes each marker and section on its own, ~135 writes a node, and
    every write became one SSH packet our process decrypted and handled apart (~0.2 ms of our
    CPU each, #17). A node's facts are read whole, never line by line, so nothing waits on
    this; its exit status is kept. Without such a dd the output goes straight out, as before.
    The temp directory is private (mktemp -d, or a fresh mkdir that fails if the name exists):
    no predictable file name is ever written as root."""
    if not nonce.isalnum():
        raise ValueError("nonce must be alphanumeric")
    return (f"N={nonce}\n"
            "umask 077; cfx_s=$(mktemp -d 2>/dev/null) || { cfx_s=/tmp/cfx-s.$$; "
            'mkdir "$cfx_s" || exit 97; }\n'
            'cfx_rc=97; if cat >"$cfx_s/s"; then\n'
            " if dd if=/dev/null of=/dev/null bs=32768 iflag=fullblock 2>/dev/null; then\n"
            '  { sh "$cfx_s/s" </dev/null; echo $? >"$cfx_s/rc"; } '
            "| dd bs=32768 iflag=fullblock 2>/dev/null\n"
            '  read cfx_rc <"$cfx_s/rc" || cfx_rc=1\n'
            ' else sh "$cfx_s/s" </dev/null; cfx_rc=$?; fi\n'
            'fi; rm -rf "$cfx_s"; exit $cfx_rc')


def build_facts_script(peer_pod_ips: list[str] | tuple[str, ...] = (), nonce: str | None = None,
                       skip: tuple[str, ...] | frozenset[str] = (),
                       vxlan_probes: list[str] | tuple[str, ...] = (),
                       node_name: str | None = None) -> str:
    """The one script that prints every fact. `nonce` defaults to a fresh random one; read it back
    with `script_nonce(script)` (or pass your own and keep it). `skip` names fixed sections the
    caller reads another way (the local node's links/addresses/routes come from netlink).
    `node_name`: the node's name in the API; the node's own kubectl then asks for that one Node
    in one request (`get --raw /api/v1/nodes?fieldSelector=metadata.name=NODE`): the same
    client, kubeconfig, credentials and list verb as `kubectl get nodes`, without every node
    listing every Node (N^2 objects from the API server) and without kubectl's API discovery
    first: against a dead API address `get nodes` tries discovery several times, each waiting
    its own timeout (8 s and more, killed by our `timeout 8`), one raw request fails once."""
    return "\n".join(text for _label, text in script_parts(peer_pod_ips, nonce, skip, vxlan_probes,
                                                           node_name=node_name))


def kubectl_get(node_name: str | None) -> str:
    """The node's kubectl arguments (quoted for the shell): its own Node, one raw request, with
    a name; `get nodes -o name` (the runbook's command) without one."""
    if not node_name:
        return "get nodes -o name"
    path = "/api/v1/nodes?fieldSelector=" + urllib.parse.quote(f"metadata.name={node_name}", safe="")
    return "get --raw " + shlex.quote(path)


# a command made of these characters only has no shell syntax: split on spaces, it is its argv
_SIMPLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._/:=,+-")


@functools.lru_cache(maxsize=65536)
def _ip_text(ip: str) -> str:
    """An IP address as Python writes it (ValueError for anything else). Every node's script
    names every other node's pod IP (N-1 of them): cached, N parses per diagnosis, not N^2
    (~5 ms of CPU per node at 1,000 nodes); a failed parse is not cached and raises each time."""
    return str(ipaddress.ip_address(ip.strip()))


@functools.lru_cache(maxsize=1024)
def _section_call(name: str, tool: str, cmd: str) -> str:
    """The script line of one fixed section: a simple command runs directly under its deadline
    (cfx_x), anything with shell syntax through `sh -c` (cfx_sh)."""
    if set(cmd) <= _SIMPLE:
        return f"cfx_x {name} {shlex.quote(tool)} {cmd}"
    return f"cfx_sh {name} {shlex.quote(tool)} {shlex.quote(cmd)}"


# sections whose command needs a value the shell can know without a process (the kernel release:
# /proc/sys/kernel/osrelease is what `uname -r` prints; the iptables on PATH), and sections whose
# answer IS such a value, read by the shell itself with no process and no deadline (#17: one
# `timeout` and one tool, ~2 ms of node CPU a section, for a line the kernel keeps in memory).
# Each read cannot hang: /proc/sys/kernel/* and /proc/self/status are generated from the
# running kernel's in-memory state, a readdir of sysfs (/sys/module) lists in-memory kernfs
# nodes, and `[ -e ]` of /lib/modules/REL is one stat (the root file system, which the shell
# itself runs from). Each is used only when it gives exactly what the tool prints (the tool is
# on PATH, the value is there and has the expected form); otherwise the tool runs as before
# ({old}), under its deadline.
_SPECIAL_CALLS = {
    # `id -u`: the effective uid, the 3rd field of the shell's own "Uid:" line (real, effective,
    # saved, fs); `id` runs with the shell's credentials
    "id_u": ('cfx_v=; if command -v id >/dev/null 2>&1 && { while read -r cfx_k cfx_r cfx_v cfx_w; '
             'do [ "$cfx_k" = Uid: ] && break; cfx_v=; done; } 2>/dev/null </proc/self/status; then :; fi; '
             "case $cfx_v in ''|*[!0-9]*) {old} ;; *) cfx_put id_u \"$cfx_v\" ;; esac"),
    # `hostname`: gethostname(), the UTS namespace's nodename, which /proc/sys/kernel/hostname is
    "hostname": ('if command -v hostname >/dev/null 2>&1 && { IFS= read -r cfx_v </proc/sys/kernel/hostname; } '
                 '2>/dev/null && [ -n "$cfx_v" ]; then cfx_put hostname "$cfx_v"; else {old}; fi'),
    "uname_r": ('if command -v uname >/dev/null 2>&1 && { IFS= read -r cfx_v </proc/sys/kernel/osrelease; } '
                '2>/dev/null && [ -n "$cfx_v" ]; then cfx_put uname_r "$cfx_v"; else {old}; fi'),
    # `ls -d /lib/modules/REL` of a path that exists prints the path (a release has no character
    # ls would quote); a missing one: ls itself, for its error
    "lib_modules": ('if { IFS= read -r cfx_rel </proc/sys/kernel/osrelease; } 2>/dev/null && [ -n "$cfx_rel" ]; '
                    'then case $cfx_rel in *[!A-Za-z0-9._+-]*) cfx_v=;; *) cfx_v=/lib/modules/$cfx_rel;; esac; '
                    'if [ -n "$cfx_v" ] && [ -e "$cfx_v" ] && command -v ls >/dev/null 2>&1; '
                    'then cfx_put lib_modules "$cfx_v"; else cfx_x lib_modules ls ls -d "/lib/modules/$cfx_rel"; fi; '
                    'else {old}; fi'),
    # `ls /sys/module` of a readable directory: its names one a line, dot-names left out, in
    # byte order (LC_ALL=C), as the shell's own glob gives them
    "sys_module": ('if [ -d /sys/module ] && [ -r /sys/module ] && [ -x /sys/module ] && '
                   'command -v ls >/dev/null 2>&1; then cfx_lsdir sys_module /sys/module; else {old}; fi'),
    "conntrack_stats": (f'if [ ! -e {P.CONNTRACK_STAT} ] && [ -e {P.CONNTRACK_MAX} ] && '
                        '[ -d /sys/module/nf_conntrack_netlink ] && command -v conntrack >/dev/null 2>&1; '
                        'then {old}; fi'),
    "iptables_link": ('if command -v iptables >"$T/c" 2>/dev/null && IFS= read -r cfx_ipt <"$T/c" && '
                      '[ -n "$cfx_ipt" ]; then cfx_x iptables_link iptables readlink -f "$cfx_ipt"; '
                      'else {old}; fi'),
}


# alternatives_link (`readlink -f /etc/alternatives/iptables`) and iptables_link (`readlink -f`
# of the iptables on PATH) from ONE readlink (one `timeout` and one readlink less, #17): GNU
# readlink -f canonicalizes each argument on its own and prints one line each; used only when it
# says exactly that (exit 0, nothing on stderr, exactly two lines: what each prints alone), else
# each runs alone as before ({old}: a busybox readlink takes one argument, an error is its own)
_READLINK2 = (
    'cfx_l1=; cfx_l2=; if [ -n "$cfx_sto" ] && command -v readlink >/dev/null 2>&1 && '
    'command -v iptables >"$T/c" 2>/dev/null && IFS= read -r cfx_ipt <"$T/c" && [ -n "$cfx_ipt" ] && '
    'cfx_run /dev/null readlink -f /etc/alternatives/iptables "$cfx_ipt" >"$T/o" 2>"$T/e" && '
    '[ ! -s "$T/e" ] && { IFS= read -r cfx_l1 && IFS= read -r cfx_l2 && ! IFS= read -r cfx_l3; } <"$T/o" && '
    '[ -n "$cfx_l1" ] && [ -n "$cfx_l2" ]; then\n'
    '  cfx_put alternatives_link "$cfx_l1"; cfx_put iptables_link "$cfx_l2"\nelse\n{old}\nfi')


def _curl_pairs(skip: tuple[str, ...] | frozenset[str]) -> dict[str, tuple[str, ...]]:
    """{first name: (name1, url1, name2, url2), second name: ()} for kube-proxy's two
    `curl -s -m 1 URL` sections when neither is skipped; {} otherwise."""
    names = ("kube_proxy_healthz", "kube_proxy_mode")
    cmds = dict(_SECTIONS)
    words = [cmds.get(n, "").split() for n in names]
    if any(n in skip for n in names) or any(w[:-1] != ["curl", "-s", "-m", "1"] for w in words) \
            or not all(set(w[-1]) <= _SIMPLE for w in words):
        return {}
    return {names[0]: (names[0], words[0][-1], names[1], words[1][-1]), names[1]: ()}


# the node's kubectl as the script runs it: started at the top of the prelude, its section
# printed at the end of the files part (KUBECTL_SECTION in `skip` leaves out both)
KUBECTL_SECTION = "kubectl_get_nodes"
_KUBECTL_START = re.compile(r"^if command -v kubectl .*?^fi\n", re.M | re.S)
_KUBECTL_END = re.compile(r'^if \[ -n "\$cfx_kpid" \]; then\n.*?^fi\n', re.M | re.S)


def _without_kubectl(prelude: str, files: str) -> tuple[str, str]:
    """The prelude and files part without the node's kubectl: not started, no section printed
    (not even its "command not found": an absent section is "not read", never "no kubectl")."""
    p, n1 = _KUBECTL_START.subn("", prelude, count=1)
    f, n2 = _KUBECTL_END.subn("", files, count=1)
    if n1 != 1 or n2 != 1:  # the script changed shape: never half leave it out
        raise ValueError("cannot leave the node's kubectl out of the facts script")
    return p, f


def script_parts(peer_pod_ips: list[str] | tuple[str, ...] = (), nonce: str | None = None,
                 skip: tuple[str, ...] | frozenset[str] = (),
                 vxlan_probes: list[str] | tuple[str, ...] = (),
                 node_name: str | None = None) -> list[tuple[str, str]]:
    """build_facts_script's pieces in order, each with a label (what bench/bench_node_cpu.py
    times apart on a node); joined with newlines they are the script."""
    nonce = nonce or new_nonce()
    if not nonce.isalnum():
        raise ValueError("nonce must be alphanumeric")
    prelude, files_part = _PRELUDE, _FILES_PART
    if KUBECTL_SECTION in skip:  # a re-diagnosis that does not need it (core/flow.py)
        prelude, files_part = _without_kubectl(prelude, files_part)
    out = [("prelude", prelude.replace("__NONCE__", nonce).replace("__CNI_SED__", CNI_SECRET_SED)
            .replace("__SECTION_TIMEOUT__", str(int(SECTION_TIMEOUT)))
            .replace("__KUBECTL_GET__", kubectl_get(node_name)))]
    probe_ips = [_ip_text(str(ip)) for ip in vxlan_probes]  # raises on non-IPs
    probes = " ".join(shlex.quote(ip) for ip in probe_ips)
    curls = _curl_pairs(skip)
    held = ""
    # kube-proxy's two curls ride in the probes' curl when there is one (a node without ping)
    kp = next((v for v in curls.values() if v), ("", "", "", "")) if probes else ("", "", "", "")

    def with_kp(text: str) -> str:
        for i, key in enumerate(("__KPNAME1__", "__KPURL1__", "__KPNAME2__", "__KPURL2__")):
            text = text.replace(key, kp[i])
        return text

    if probes:
        out.append(("vxlan_probe start", with_kp(_PROBE_START.replace("__PROBES__", probes))))
    for name, cmd in _SECTIONS:
        if name in skip:
            continue
        if name in curls:  # kube-proxy's two endpoints: one curl (cfx_curl2), in the first's place
            if curls[name]:  # (where they rode in the probes' curl: at the end, from it)
                out.append(("kube_proxy (one curl)", ('[ -n "$cfx_kp" ] || ' if kp[0] else "")
                            + "cfx_curl2 " + " ".join(curls[name])))
            continue
        if name in NL_BATCHED:  # in the netlink batch (_ROUTES_PART)
            continue
        tool = cmd.split()[0]
        if tool == "readlink" and "command -v" in cmd:
            tool = "iptables"
        call = _section_call(name, tool, cmd)
        if name in _SPECIAL_CALLS:
            call = _SPECIAL_CALLS[name].replace("{old}", call)
        if name == "alternatives_link" and "iptables_link" not in skip \
                and cmd == "readlink -f /etc/alternatives/iptables":
            held = call  # printed with iptables_link's (next): both from one readlink
            continue
        if name == "iptables_link" and held:
            call = _READLINK2.replace("{old}", f"{held}\n{call}")
            held = ""
        out.append((name, call))
    batch: list[str] = []
    for ip in peer_pod_ips:
        addr = _ip_text(str(ip))  # raises on anything not an IP
        if "%" in addr:  # a scoped IPv6 address (never a pod IP): on its own, quoted, as before
            cmd = f"ip -j route get {shlex.quote(addr)}"
            out.append(("route_get", f"cfx_shq {shlex.quote('route_get ' + addr.encode().hex())} ip "
                                     f"{shlex.quote(cmd)}"))
        else:
            batch.append(addr)
    cmds = dict(_SECTIONS)
    dumps, alone = [], []
    for name in NL_BATCHED:
        if name in skip:
            continue
        words = cmds[name].split()
        assert words[:2] == ["ip", "-j"] and set(cmds[name]) <= _SIMPLE, name
        line = (f"printf '%s\\n' {shlex.quote(' '.join(words[2:]))} >>\"$T/rq\"; "
                f"printf 's {name}\\n' >>\"$T/rl\"")
        if words[2:5] == ["neigh", "show", "dev"] and len(words) == 6:  # only a device there
            line = f"if [ -e /sys/class/net/{words[5]} ]; then {line}; else {_section_call(name, 'ip', cmds[name])}; fi"
        dumps.append(line)
        alone.append(f"      {name}) {_section_call(name, 'ip', cmds[name])} ;;")
    if batch or dumps:
        routes = ""
        if batch:
            routes = (f"printf 'route get %s\\n' {' '.join(batch)} >>\"$T/rq\"\n"
                      f"printf 'r %s %s\\n' {' '.join(f'{a.encode().hex()} {a}' for a in batch)} >>\"$T/rl\"")
        out.append(("route_get + ip dumps", _ROUTES_PART.replace("__ROUTES__", routes)
                    .replace("__DUMPS__", "\n".join(dumps)).replace("__ALONE__", "\n".join(alone) or "      *) ;;")
                    .replace("__MARK__", shlex.quote(MARK)).replace("__AWK__", shlex.quote(_ROUTE_AWK))))
    sysctls = " ".join(shlex.quote(f"{k}={p}") for k, p in SYSCTLS.items())
    out.append(("sysctl", _SYSCTL_PART.replace("__SYSCTLS__", sysctls)))
    out.append(("files + kubectl", files_part.replace("__KUBECONFIGS__", " ".join(KUBECONFIG_GLOBS))))
    out.append(("incompatible", _INCOMPAT_PART.replace("__SECTION_TIMEOUT__", str(int(SECTION_TIMEOUT)))))
    for name, cmd in SHAPE_SECTIONS:
        out.append((name, _section_call(name, cmd.split()[0], cmd)))
    out.append(("shape", _SHAPE_PART.replace("__BINARIES__", " ".join(IPTABLES_BINARIES))
                .replace("__PATHS__", " ".join(SHAPE_PATHS))
                .replace("__CNIDIRS__", " ".join(EXTRA_CNI_DIRS))
                .replace("__FLANNELCONF__", " ".join(EMBEDDED_FLANNEL_CONF))))
    if probes:
        out.append(("vxlan_probe end", with_kp(_PROBE_END).replace("__PROBES__", probes).replace(
            "__PROBEHEX__", " ".join(ip.encode().hex() for ip in probe_ips))))
    out.append(("done", f"printf '{MARK} %s DONE\\n' \"$N\"\n"))
    return out


def script_nonce(script: str) -> str:
    for line in script.splitlines():
        if line.startswith("N="):
            return line[2:].strip()
    raise ValueError("no nonce in script")


# -- the parsed facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    name: str
    arg: str | None  # decoded argument (file path, IP, table), if any
    stdout: str
    stderr: str
    rc: int | None  # None: the END marker never came (truncated output)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def missing_tool(self) -> bool:
        return self.rc == 127

    @property
    def timed_out(self) -> bool:
        """Killed by its own deadline on the node (SECTION_TIMEOUT): SIGKILL, and the mark."""
        return self.rc == 137 and TIMED_OUT_MARK in self.stderr

    def unread_reason(self) -> str | None:
        """Why this section's facts were NOT read (None: they were, even when the answer is
        empty). Killed at its deadline, killed by another signal, or cut off before its END
        marker: what it printed is a fragment, never "nothing there". For the sections in
        FAIL_IS_UNREAD, any failure too (a routing table that could not be listed is not an
        empty one). A missing tool (rc 127) or file (rc 1) elsewhere is a real answer."""
        if self.rc is None:
            return "cut off (no END marker)"
        if self.timed_out:
            return f"timed out after {SECTION_TIMEOUT}s"
        if 128 < self.rc < 160:  # 128+N: killed by signal N (255, 254: a tool's own exit(-1))
            return f"killed (signal {self.rc - 128})"
        if self.rc != 0 and self.name in FAIL_IS_UNREAD:
            first = next((ln.strip() for ln in self.stderr.splitlines() if ln.strip()), "")
            return f"failed (rc {self.rc}{': ' + first[:120] if first else ''})"
        if self.rc not in (0, 127) and self.name == NFT_JSON_SECTION:
            first = next((ln.strip() for ln in self.stderr.splitlines() if ln.strip()), "")
            return f"failed (rc {self.rc}{': ' + first[:120] if first else ''})"
        if self.rc == 0 and self.name in JSON_SECTIONS and _not_json(self.stdout):
            return NFT_NOT_JSON_WHY if self.name == NFT_JSON_SECTION else NOT_JSON_WHY
        return None


_new_section = P.frozen_maker(Section)


@dataclass(frozen=True)
class NodeFacts:
    """Everything one node told us, raw and parsed. Parse failures are in `parse_errors`."""

    node: str
    sections: dict[str, Section] = field(default_factory=dict)  # key: "name" or "name arg"
    complete: bool = False  # the DONE marker arrived
    uid: int | None = None
    hostname: str | None = None
    iptables_version: P.IptablesVersion | None = None
    alternatives: P.Alternatives | None = None
    host_iptables: str | None = None  # "nft" | "legacy" | None: what `iptables` runs
    legacy: P.IptablesSave | None = None
    nft_nat: P.IptablesSave | None = None
    nft_filter: P.IptablesSave | None = None
    nft_mangle: P.IptablesSave | None = None
    ip6_nft_mangle: P.IptablesSave | None = None
    nft_ruleset: P.NftRuleset | None = None
    links: tuple[dict[str, Any], ...] = ()
    addrs: tuple[dict[str, Any], ...] = ()
    routes: tuple[dict[str, Any], ...] = ()
    neigh_flannel: tuple[dict[str, Any], ...] = ()
    fdb_flannel: tuple[dict[str, Any], ...] = ()
    kube_proxy_healthz: str | None = None  # body, None when it did not answer
    kube_proxy_mode: str | None = None
    route_get: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # ip -> first route
    subnet_env: dict[str, str] | None = None
    cni_files: dict[str, str] = field(default_factory=dict)  # path -> content
    cni_configs: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # path -> parsed
    sysctls: dict[str, str | None] = field(default_factory=dict)  # None: missing
    modules: P.Modules | None = None
    kubeconfigs: dict[str, str | None] = field(default_factory=dict)  # path -> server URL
    kubectl_rc: int | None = None
    kubectl_error: str | None = None
    incompatible_chains: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> chains
    incompatible_stderr: dict[str, str] = field(default_factory=dict)
    nft_table_text: dict[str, str] = field(default_factory=dict)  # table -> `nft -a list table ip T`
    parse_errors: tuple[str, ...] = ()
    # shape facts (core/shape.py)
    routes6: tuple[dict[str, Any], ...] = ()  # `ip -6 -j route`
    ip6_nft_nat: P.IptablesSave | None = None
    ip6_nft_filter: P.IptablesSave | None = None
    ip6_legacy: P.IptablesSave | None = None
    neigh_flannel6: tuple[dict[str, Any], ...] = ()
    fdb_flannel6: tuple[dict[str, Any], ...] = ()
    plain_save: P.IptablesSave | None = None  # `iptables-save` on an iptables without -legacy/-nft
    plain_save6: P.IptablesSave | None = None
    binaries: dict[str, str] = field(default_factory=dict)  # name -> path, present ones only
    paths: tuple[str, ...] = ()  # SHAPE_PATHS that exist
    flannel_confs: dict[str, str] = field(default_factory=dict)  # embedded net-conf.json path -> text
    # the conntrack table (core/checks/conntrack.py): None when its section is not in the output
    conntrack: P.Conntrack | None = None

    def section(self, name: str, arg: str | None = None) -> Section | None:
        return self.sections.get(name if arg is None else f"{name} {arg}")

    def raw(self, name: str, arg: str | None = None) -> str:
        s = self.section(name, arg)
        return s.stdout if s else ""

    def timed_out_sections(self) -> list[str]:
        """The sections the node killed at their deadline (their facts are missing)."""
        return sorted(k for k, sec in self.sections.items() if sec.timed_out)

    def unread_sections(self) -> dict[str, str]:
        """section name -> why its facts were not read (timed out, killed, cut off, failed), for
        every section that was not read completely. A section that ran and printed nothing is
        NOT here: that is a real empty answer. A section absent from the output is not here
        either (the script runs it only on some nodes, or the facts came from elsewhere)."""
        out: dict[str, str] = {}
        for sec in self.sections.values():
            if sec.rc == 0 and (sec.name not in JSON_SECTIONS or sec.stdout[:1] in _JSON_START
                                or not _not_json(sec.stdout)):
                continue  # answered (the common case: one pass over thousands of route_get)
            why = sec.unread_reason()
            if why is not None and sec.name not in out:
                out[sec.name] = why
        # a JSON section that answered, rc 0, with text that is not JSON (after the known
        # iproute2 quirks): its view is empty because it was not read, not because there is
        # nothing (parse_facts wrote "<name>[ <arg>]: not JSON: ..." to parse_errors)
        for err in self.parse_errors:
            head, sep, why = err.partition(": ")
            name = NFT_JSON_SECTION if head == "nft -j" else head.split(" ", 1)[0]
            if sep and why.startswith("not ") and name in JSON_SECTIONS and name not in out:
                out[name] = f"printed invalid JSON ({why[:120]})"
        # iptables-nft says the kernel holds iptables-legacy tables that nothing listed (no
        # iptables-legacy-save: RHEL 8/9): what they hold is unknown ("legacy_tables" is no
        # section of its own; the checks that conclude from kube-proxy's rules being absent read it)
        if self.legacy is None and "legacy_save" not in out:  # (a legacy_save not read says so)
            for name in ("nft_save_nat", "nft_save_filter", "nft_save_mangle"):
                nft_sec = self.sections.get(name)
                line = (P.legacy_tables_warning(f"{nft_sec.stdout}\n{nft_sec.stderr}")
                        if nft_sec is not None else None)
                if line:
                    out["legacy_tables"] = (f"not listed: iptables-nft says '{line.lstrip('# ')}', and "
                                            "no iptables-legacy-save read them")
                    break
        return out

    def summary(self) -> dict[str, Any]:
        """A short per-node summary for --json and the journal."""
        return {
            "complete": self.complete,
            "uid": self.uid,
            "iptables": self.iptables_version.text if self.iptables_version else None,
            "host_iptables": self.host_iptables,
            "kube_proxy_backend": _detect_backend(self),
            "legacy_kube_chains": sum(len(v) for v in (self.legacy.kube_chains() if self.legacy else {}).values()),
            "nft_kube_chains": sum(len(t.kube_chains().get(n, ())) for n, t in
                                   (("nat", self.nft_nat), ("filter", self.nft_filter)) if t),
            "links": len(self.links),
            "routes": len(self.routes),
            "flannel_subnet": (self.subnet_env or {}).get("FLANNEL_SUBNET"),
            "sysctls": dict(self.sysctls),
            "kube_proxy_healthz": self.kube_proxy_healthz,
            "kube_proxy_mode": self.kube_proxy_mode,
            "kubectl_rc": self.kubectl_rc,
            "cni_files": sorted(self.cni_files),
            "parse_errors": list(self.parse_errors),
            "unread_sections": self.unread_sections(),
            "conntrack": _conntrack_summary(self.conntrack),
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.summary()
        d["node"] = self.node
        return d


def _conntrack_summary(ct: P.Conntrack | None) -> dict[str, Any]:
    """The conntrack table's fill for the journal and the report: state "read" | "not-loaded" |
    "not-read" (section not in the output or not parsed: `why`), count/max/buckets and the drop
    counters since boot when read."""
    if ct is None:
        return {"state": "not-read", "why": "no conntrack section in the node's output"}
    out: dict[str, Any] = {"state": ct.state}
    if ct.state == "read":
        out.update(count=ct.count, max=ct.max, buckets=ct.buckets)
        out.update({k: ct.counters[k] for k in P.CONNTRACK_COUNTERS
                    if k in ct.counters})
    elif ct.why:
        out["why"] = ct.why
    return out


class _OnFirstRead:
    """A NodeFacts field as a data descriptor, parsed on its first read. NodeFacts made by its
    own __init__ (the field passed or defaulted) store the value as before; parse_facts stores,
    for a field no check, plan, summary or --json output reads on most nodes, the parser and its
    arguments instead (under "_src_<name>"), and the first read parses them and keeps the value
    (==, repr, dataclasses.replace and pickling read it through here, so they are unchanged).
    Only for parsers that never raise on any text (tests/test_parsers_fuzz.py): a parse error
    would have nowhere to go but parse_errors, which is read at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.src = f"_src_{name}"

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return None  # the field's default, as the dataclass saw it
        d = obj.__dict__
        got = d.get(self.name, _UNSET)
        if got is _UNSET:
            fn, args = d[self.src]  # kept: a reader in another thread may be parsing it too
            got = d[self.name] = fn(*args)
        return got

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


_UNSET = object()
# field -> (the facts sections it is parsed from): read on first use (see _OnFirstRead)
ON_FIRST_READ = ("modules", "alternatives")
for _name in ON_FIRST_READ:
    setattr(NodeFacts, _name, _OnFirstRead(_name))
del _name


def _on_first_read(facts: NodeFacts, name: str, fn: Any, *args: Any) -> None:
    d = facts.__dict__
    d[f"_src_{name}"] = (fn, args)
    del d[name]


def split_sections(output: str, nonce: str) -> tuple[dict[str, Section], bool, list[str]]:
    """Cut the framed output into sections. Never raises; returns (sections, complete, errors).

    Well-formed output (what the script prints: BEGIN, ERR, END of each section one after the
    other, DONE last) is cut marker to marker with str.find (`_split_sections_fast`); anything
    else (output cut short, a marker where another was due, text between sections, a forged
    line) goes through the line-by-line reading (`_split_sections_lines`), which the fast path
    gives exactly the same result as (tests/test_facts_split.py)."""
    fast = _split_sections_fast(output, nonce)
    if fast is not None:
        return fast
    return _split_sections_lines(output, nonce)


def _split_sections_fast(output: str, nonce: str) -> tuple[dict[str, Section], bool, list[str]] | None:
    """split_sections for output in the script's own shape, or None (then the line reader runs).
    Between two markers every line is content, so a section's stdout (stderr) is the text
    between the newline ending its BEGIN (ERR) line and the newline before the next marker:
    exactly the lines the line reader would join. The output is cut at every "\n" + marker
    head at once (str.split): each piece is one marker line, then its content."""
    head = f"{MARK} {nonce} "
    sections: dict[str, Section] = {}
    errors: list[str] = []
    complete = False
    if output:
        if not output.startswith(head):
            return None
        parts = output[len(head):].split("\n" + head)
        last = len(parts) - 1
        new_section = _new_section
        i = 0
        while i <= last:
            # each piece cut in one call at its first newline: (marker line, newline, content)
            line, nl, stdout = parts[i].partition("\n")
            if line == "DONE" or line[:5] == "DONE ":
                # the DONE line; after it only the next marker (or the output's end)
                if nl and (i != last or stdout):
                    return None
                complete = True
                i += 1
                continue
            if i + 2 > last:
                return None  # no ERR and END markers after this BEGIN
            words = line.split(" ")
            if words[0] != "BEGIN" or len(words) < 2:
                return None
            name = words[1]
            if len(words) >= 3:
                arg: str | None = _unhex(words[2])
                key = f"{name} {arg}"
            else:
                arg, key = None, name
            eline, _, stderr = parts[i + 1].partition("\n")  # no newline: no stderr
            if eline != "ERR" and eline[:4] != "ERR ":
                return None
            end_line, nl, rest = parts[i + 2].partition("\n")
            if nl and (i + 2 != last or rest):
                return None  # text after the END line that is not the next marker
            if end_line != "END" and end_line[:4] != "END ":
                return None
            rc: int | None = None
            lw = end_line.rpartition(" ")[2]
            if lw[:3] == "rc=":
                try:
                    rc = int(lw[3:])
                except ValueError:
                    errors.append(f"section {key}: bad rc {lw!r}")
            sections[key] = new_section(name, arg, stdout, stderr, rc)
            i += 3
    if not complete:
        errors.append("output incomplete: no DONE marker")
    return sections, complete, errors


def _split_sections_lines(output: str, nonce: str) -> tuple[dict[str, Section], bool, list[str]]:
    """split_sections, line by line: reads any output, however cut or mangled."""
    head = f"{MARK} {nonce} "
    sections: dict[str, Section] = {}
    errors: list[str] = []
    complete = False
    cur_key: str | None = None
    cur_name = ""
    cur_arg: str | None = None
    buf: list[str] = []
    out_text: str | None = None
    lines = output.split("\n")
    for line in lines:
        if not line.startswith(head):
            if cur_key is not None:
                buf.append(line)
            continue
        words = line[len(head):].split(" ")
        kind = words[0] if words else ""
        if kind not in ("DONE", "BEGIN", "ERR", "END") or (kind == "BEGIN" and len(words) < 2):
            # not a marker we wrote (e.g. output cut inside one): content, kept as it came
            if cur_key is not None:
                buf.append(line)
            continue
        if kind == "DONE":
            complete = True
            continue
        if kind == "BEGIN" and len(words) >= 2:
            if cur_key is not None:
                errors.append(f"section {cur_key}: no END marker")
                sections[cur_key] = Section(cur_name, cur_arg, *_texts(out_text, buf), None)
            cur_name = words[1]
            cur_arg = _unhex(words[2]) if len(words) >= 3 else None
            cur_key = cur_name if cur_arg is None else f"{cur_name} {cur_arg}"
            buf, out_text = [], None
            continue
        if cur_key is None:
            errors.append(f"marker outside a section: {line[:120]!r}")
            continue
        if kind == "ERR":
            out_text = "\n".join(buf)
            buf = []
        elif kind == "END":
            rc: int | None = None
            last = words[-1] if words else ""
            if last.startswith("rc="):
                try:
                    rc = int(last[3:])
                except ValueError:
                    errors.append(f"section {cur_key}: bad rc {last!r}")
            if out_text is None:
                out_text, err_text = "\n".join(buf), ""
            else:
                err_text = "\n".join(buf)
            sections[cur_key] = Section(cur_name, cur_arg, out_text, err_text, rc)
            cur_key, buf, out_text = None, [], None
    if cur_key is not None:
        errors.append(f"section {cur_key}: output ends inside it")
        sections[cur_key] = Section(cur_name, cur_arg, *_texts(out_text, buf), None)
    if not complete:
        errors.append("output incomplete: no DONE marker")
    return sections, complete, errors


def _texts(out_text: str | None, buf: list[str]) -> tuple[str, str]:
    if out_text is None:
        return "\n".join(buf), ""
    return out_text, "\n".join(buf)


def _unhex(s: str) -> str:
    try:
        return bytes.fromhex(s).decode("utf-8", "replace")
    except ValueError:
        return s


def parse_facts(node: str, output: str, nonce: str,
                extra_sections: dict[str, str] | None = None) -> NodeFacts:
    """Pure: the script's output -> NodeFacts. Never raises; problems go to parse_errors.
    `extra_sections` ({name: stdout}) are sections read without the script (rc 0)."""
    sections, complete, errors = split_sections(output or "", nonce)
    for name, text in (extra_sections or {}).items():
        sections[name] = Section(name, None, text, "", 0)
    kw: dict[str, Any] = {}

    def sec(name: str) -> Section | None:
        return sections.get(name)

    def attempt(label: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # parsers are defensive; this is the last net
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return None

    def text_of(name: str) -> str | None:
        s = sec(name)
        return s.stdout if s is not None and s.rc == 0 else None

    s = sec("id_u")
    if s is not None and s.stdout.strip().isdigit():
        kw["uid"] = int(s.stdout.strip())
    if (t := text_of("hostname")) is not None:
        kw["hostname"] = t.strip()
    s = sec("iptables_version")
    if s is not None and s.rc == 0:
        kw["iptables_version"] = attempt("iptables -V", P.parse_iptables_version, s.stdout + s.stderr)
    alt_text = text_of("alternatives")
    link = text_of("alternatives_link") or text_of("iptables_link")
    version = kw.get("iptables_version")
    lazy_alt = alt_text is not None and version is not None and bool(version.backend)
    if alt_text is not None and not lazy_alt:
        kw["alternatives"] = attempt("alternatives", P.parse_alternatives, alt_text)
    # `iptables -V` names the backend: the alternatives are not read for it (parsed on first
    # read, for the plans that name the binary)
    kw["host_iptables"] = P.host_iptables_backend(version, kw.get("alternatives"), link)

    for key, name in (("legacy", "legacy_save"), ("nft_nat", "nft_save_nat"),
                      ("nft_filter", "nft_save_filter"), ("nft_mangle", "nft_save_mangle"),
                      ("ip6_nft_mangle", "ip6_nft_save_mangle"),
                      ("ip6_nft_nat", "ip6_nft_save_nat"), ("ip6_nft_filter", "ip6_nft_save_filter"),
                      ("ip6_legacy", "ip6_legacy_save"), ("plain_save", "iptables_save"),
                      ("plain_save6", "ip6tables_save")):
        s = sec(name)
        if s is not None and s.rc == 0:
            res = attempt(name, P.parse_iptables_save, s.stdout)
            if res is not None:
                errors.extend(f"{name}: {e}" for e in res.errors)
                kw[key] = res
    s = sec("nft_json")
    if s is not None and s.rc == 0:
        res = attempt("nft -j", P.parse_nft_json, s.stdout)
        if res is not None:
            errors.extend(f"nft -j: {e}" for e in res.errors)
            kw["nft_ruleset"] = res

    for key, name in (("links", "ip_link"), ("addrs", "ip_addr"), ("routes", "ip_route"),
                      ("neigh_flannel", "ip_neigh_flannel"), ("fdb_flannel", "fdb_flannel")):
        s = sec(name)
        if s is not None and s.rc == 0:
            items, err = P.parse_json_list(s.stdout)
            if err:
                errors.append(f"{name}: {err}")
            kw[key] = tuple(items)

    for key, name in (("kube_proxy_healthz", "kube_proxy_healthz"), ("kube_proxy_mode", "kube_proxy_mode")):
        s = sec(name)
        if s is not None and s.rc == 0 and s.stdout.strip():
            kw[key] = s.stdout.strip()

    route_get: dict[str, dict[str, Any] | None] = {}
    subnet_env = None
    cni_files: dict[str, str] = {}
    cni_configs: dict[str, dict[str, Any] | None] = {}
    kubeconfigs: dict[str, str | None] = {}
    incompatible: dict[str, tuple[str, ...]] = {}
    incompatible_err: dict[str, str] = {}
    table_text: dict[str, str] = {}
    for s in sections.values():
        if s.name == "route_get" and s.arg:
            if s.rc == 0:
                items, err = P.parse_json_list(s.stdout)
                if err:
                    errors.append(f"route_get {s.arg}: {err}")
                route_get[s.arg] = items[0] if items else None
            else:
                route_get[s.arg] = None
        elif s.name == "cni_conf" and s.arg:
            cni_files[s.arg] = s.stdout
            conf, err = P.parse_cni_conf(s.stdout)
            cni_configs[s.arg] = conf
            if err:
                errors.append(f"cni {s.arg}: {err}")
        elif s.name == "kubeconfig" and s.arg:
            kubeconfigs[s.arg] = P.parse_kubeconfig_server(s.stdout)
        elif s.name == "incompatible_chains" and s.arg:
            incompatible[s.arg] = tuple(c for c in s.stdout.split("\n") if c.strip())
            incompatible_err[s.arg] = s.stderr
        elif s.name == "nft_table_text" and s.arg:
            table_text[s.arg] = s.stdout
    s = sec("subnet_env")
    if s is not None and s.rc == 0:
        subnet_env = P.parse_env_file(s.stdout)
    s = sec("sysctl")
    if s is not None:
        kw["sysctls"] = P.parse_sysctl_lines(s.stdout)
    modules_args = (text_of("proc_modules"), text_of("sys_module"),
                    (sec("lib_modules") is not None and sec("lib_modules").rc == 0))  # type: ignore[union-attr]
    s = sec("kubectl_get_nodes")
    if s is not None:
        kw["kubectl_rc"] = s.rc
        if s.rc != 0:
            kw["kubectl_error"] = P.first_error_line(s.stderr) or P.first_error_line(s.stdout)

    for key, name in (("routes6", "ip6_route"), ("neigh_flannel6", "ip6_neigh_flannel"),
                      ("fdb_flannel6", "fdb_flannel6")):
        s = sec(name)
        if s is not None and s.rc == 0:
            items, err = P.parse_json_list(s.stdout)
            if err:
                errors.append(f"{name}: {err}")
            kw[key] = tuple(items)
    if (t := text_of("binaries")) is not None:
        kw["binaries"] = {k: v for k, _, v in (ln.partition("=") for ln in t.splitlines()) if k and v}
    if (t := text_of("paths")) is not None:
        kw["paths"] = tuple(ln for ln in t.splitlines() if ln.strip())
    kw["flannel_confs"] = {s.arg: s.stdout for s in sections.values()
                           if s.name == "flannel_conf" and s.arg and s.rc == 0}
    s = sec("conntrack")
    if s is not None:
        st = sec("conntrack_stats")
        kw["conntrack"] = P.parse_conntrack(
            None if s.unread_reason() is not None else s.stdout, s.stderr,
            st.stdout if st is not None and st.rc == 0 else None)

    facts = NodeFacts(
        node=node, sections=sections, complete=complete, route_get=route_get,
        subnet_env=subnet_env, cni_files=cni_files, cni_configs=cni_configs,
        kubeconfigs=kubeconfigs, incompatible_chains=incompatible,
        incompatible_stderr=incompatible_err, nft_table_text=table_text,
        parse_errors=tuple(errors), **kw,
    )
    # read by the ipvs check and the plans only: parsed when they read them (never raise)
    _on_first_read(facts, "modules", P.parse_modules, *modules_args)
    if lazy_alt:
        _on_first_read(facts, "alternatives", P.parse_alternatives, alt_text)
    return facts


def _detect_backend(facts: NodeFacts) -> str:
    """kube-proxy's backend as the checks decide it (iptables-wrappers' rule, rule-count fallback
    included): the summary must never disagree with the findings."""
    from clusterfix_tui.core.checks._common import detect_backend

    return detect_backend(facts)[0]
