"""The facts script as it was before issue #17's node-CPU pass (commit bf662d6), kept verbatim
(only the section lists and data constants come from core/facts.py, so both scripts ask for the
same facts). tests/test_facts_same.py runs both on lab nodes and compares what parse_facts reads;
bench/bench_node_cpu.py measures both. Not used by the product."""

from __future__ import annotations

import ipaddress
import shlex

from clusterfix_tui.core.facts import (
    _SECTIONS,
    CNI_SECRET_SED,
    EMBEDDED_FLANNEL_CONF,
    EXTRA_CNI_DIRS,
    IPTABLES_BINARIES,
    KUBECONFIG_GLOBS,
    MARK,
    SECTION_TIMEOUT,
    SHAPE_PATHS,
    SHAPE_SECTIONS,
    SYSCTLS,
    new_nonce,
)

_PRELUDE = r"""
N=__NONCE__
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LC_ALL=C PATH
T=$(mktemp -d 2>/dev/null) || { T=/tmp/cfx.$$; mkdir -m 700 "$T" || exit 97; }
trap 'rm -rf "$T"' EXIT
cfx_hex() { printf %s "$1" | od -An -v -tx1 | tr -d ' \n'; }
cfx_emit() {
  printf '@@CFX %s BEGIN %s\n' "$N" "$1"; cat "$T/o" 2>/dev/null
  printf '\n@@CFX %s ERR %s\n' "$N" "$1"; cat "$T/e" 2>/dev/null
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$1" "$2"
}
cfx_sh() {
  cfx_n=$1; cfx_tool=$2; shift 2
  if ! command -v "$cfx_tool" >/dev/null 2>&1; then
    : >"$T/o"; printf 'cfx: %s: command not found\n' "$cfx_tool" >"$T/e"; cfx_emit "$cfx_n" 127; return
  fi
  # stdout straight through (no temp file, no `cat`); stderr via a file, `cat` only if non-empty
  printf '@@CFX %s BEGIN %s\n' "$N" "$cfx_n"
  if [ -n "$cfx_sto" ]; then
    # each fact has its own deadline: one hung command costs one section, not the node
    $cfx_sto sh -c "$1" 2>"$T/e" </dev/null; cfx_rc=$?
    [ "$cfx_rc" -eq 137 ] && printf 'cfx: timed out after __SECTION_TIMEOUT__s (killed)\n' >>"$T/e"
  else
    ( eval "$1" ) 2>"$T/e" </dev/null; cfx_rc=$?
  fi
  printf '\n@@CFX %s ERR %s\n' "$N" "$cfx_n"; if [ -s "$T/e" ]; then cat "$T/e"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$cfx_n" "$cfx_rc"
}
# a fact that cannot hang (a kernel route lookup): no deadline process, one fork less per peer
cfx_shq() {
  printf '@@CFX %s BEGIN %s\n' "$N" "$1"
  ( eval "$3" ) 2>"$T/e" </dev/null; cfx_rc=$?
  printf '\n@@CFX %s ERR %s\n' "$N" "$1"; if [ -s "$T/e" ]; then cat "$T/e"; fi
  printf '\n@@CFX %s END %s rc=%s\n' "$N" "$1" "$cfx_rc"
}
cfx_sto=
command -v timeout >/dev/null 2>&1 && cfx_sto="timeout -s KILL __SECTION_TIMEOUT__"
# the node's kubectl (a Go binary and an API round trip: the slowest fact) runs in the
# background while the other sections run; its section is printed where it always was
cfx_kpid=
if command -v kubectl >/dev/null 2>&1; then
  if command -v timeout >/dev/null 2>&1; then cfx_to="timeout 8"; else cfx_to=""; fi
  HOME=${HOME:-/root} $cfx_to kubectl get nodes -o name --request-timeout=5s >"$T/ko" 2>"$T/ke" </dev/null &
  cfx_kpid=$!
fi
# a file of a CNI config dir: a network config's JSON leaves the node with the value of every
# credential-like key (and any value holding a bearer token or a private key) blanked HERE;
# anything else there (calico's kubeconfig, a token, a key) leaves only its `server:` lines
cfx_cni() {
  case "$1" in
    *.conf|*.conflist|*.json)
      head -c 65536 -- "$1" 2>"$T/e" | sed -E '__CNI_SED__' >"$T/o"; cfx_rc=$?
      [ -s "$T/e" ] && cfx_rc=1 ;;
    *)
      grep -E '^[[:space:]]*-?[[:space:]]*server:' -- "$1" >"$T/o" 2>"$T/e"
      printf 'cfx: not a CNI network config: only its server: lines were read\n' >>"$T/e"
      cfx_rc=0 ;;
  esac
}
cfx_file() {
  cfx_n=$1; if [ -r "$2" ]; then cat -- "$2" >"$T/o" 2>"$T/e"; cfx_rc=$?; else
    : >"$T/o"; printf 'cfx: %s: no such file\n' "$2" >"$T/e"; cfx_rc=1; fi
  cfx_emit "$cfx_n" "$cfx_rc"
}
"""

_SYSCTL_PART = r"""
: >"$T/e"; : >"$T/o"
for cfx_kv in __SYSCTLS__; do
  cfx_k=${cfx_kv%%=*}; cfx_p=${cfx_kv#*=}
  if [ -r "$cfx_p" ]; then printf '%s=%s\n' "$cfx_k" "$(cat "$cfx_p")" >>"$T/o"
  else printf '%s!missing\n' "$cfx_k" >>"$T/o"; fi
done
cfx_emit sysctl 0
"""

_FILES_PART = r"""
for cfx_f in /etc/cni/net.d/*; do
  [ -e "$cfx_f" ] || continue
  if [ -f "$cfx_f" ]; then cfx_cni "$cfx_f"
  else : >"$T/o"; echo "cfx: not a regular file" >"$T/e"; cfx_rc=2; fi
  cfx_emit "cni_conf $(cfx_hex "$cfx_f")" "$cfx_rc"
done
for cfx_f in __KUBECONFIGS__; do
  [ -e "$cfx_f" ] || continue
  # the server URL only: nothing else of a kubeconfig ever leaves the node
  grep -E '^[[:space:]]*-?[[:space:]]*server:' -- "$cfx_f" >"$T/o" 2>"$T/e"; cfx_rc=$?
  cfx_emit "kubeconfig $(cfx_hex "$cfx_f")" "$cfx_rc"
done
if [ -n "$cfx_kpid" ]; then
  wait "$cfx_kpid"; cfx_rc=$?  # started at the top (it is the slowest fact): its result here
  printf '@@CFX %s BEGIN %s\n' "$N" kubectl_get_nodes; cat "$T/ko"
  printf '\n@@CFX %s ERR %s\n' "$N" kubectl_get_nodes; cat "$T/ke"
  printf '\n@@CFX %s END %s rc=%s\n' "$N" kubectl_get_nodes "$cfx_rc"
else
  : >"$T/o"; echo "cfx: kubectl: command not found" >"$T/e"; cfx_emit kubectl_get_nodes 127
fi
"""

# Only when iptables-nft says a table is incompatible: which chains, and their nft rules (handles).
_INCOMPAT_PART = r"""
if command -v nft >/dev/null 2>&1 && command -v iptables-nft >/dev/null 2>&1; then
  for cfx_t in nat filter mangle; do
    iptables-nft -t "$cfx_t" -S >/dev/null 2>&1 && continue
    nft list table ip "$cfx_t" >/dev/null 2>&1 || continue
    : >"$T/o"; : >"$T/e"; cfx_i=0
    for cfx_c in $(nft list table ip "$cfx_t" 2>/dev/null |
        sed -n 's/^[[:space:]]*chain \([^[:space:]]*\) {.*/\1/p'); do
      cfx_i=$((cfx_i+1)); [ "$cfx_i" -gt 2000 ] && break
      if ! iptables-nft -t "$cfx_t" -S "$cfx_c" >/dev/null 2>>"$T/e"; then
        printf '%s\n' "$cfx_c" >>"$T/o"
      fi
    done
    cfx_emit "incompatible_chains $(cfx_hex "$cfx_t")" 0
    nft -a list table ip "$cfx_t" >"$T/o" 2>"$T/e"
    cfx_emit "nft_table_text $(cfx_hex "$cfx_t")" $?
  done
fi
"""


# Shape facts: which binaries exist, which paths exist, the old single-binary iptables (< 1.8 has
# no -legacy/-nft variants: its iptables-save is the only view), k3s/RKE2 CNI dirs.
_SHAPE_PART = r"""
: >"$T/o"; : >"$T/e"
for cfx_b in __BINARIES__; do
  cfx_p=$(command -v "$cfx_b" 2>/dev/null) && printf '%s=%s\n' "$cfx_b" "$cfx_p" >>"$T/o"
done
cfx_emit binaries 0
: >"$T/o"; : >"$T/e"
for cfx_f in __PATHS__; do
  [ -e "$cfx_f" ] && printf '%s\n' "$cfx_f" >>"$T/o"
done
cfx_emit paths 0
if ! command -v iptables-legacy-save >/dev/null 2>&1 && ! command -v iptables-nft-save >/dev/null 2>&1; then
  cfx_sh iptables_save iptables-save 'iptables-save'
  cfx_sh ip6tables_save ip6tables-save 'ip6tables-save'
fi
for cfx_d in __CNIDIRS__; do
  [ -d "$cfx_d" ] || continue
  for cfx_f in "$cfx_d"/*; do
    [ -f "$cfx_f" ] || continue
    cfx_cni "$cfx_f"
    cfx_emit "cni_conf $(cfx_hex "$cfx_f")" "$cfx_rc"
  done
done
for cfx_f in __FLANNELCONF__; do
  [ -f "$cfx_f" ] || continue
  head -c 65536 -- "$cfx_f" >"$T/o" 2>"$T/e"; cfx_rc=$?
  cfx_emit "flannel_conf $(cfx_hex "$cfx_f")" "$cfx_rc"
done
"""



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
cfx_pi=0
for cfx_ip in __PROBES__; do
  cfx_pi=$((cfx_pi+1))
  ( cfx_probe "$cfx_ip" >"$T/p$cfx_pi" 2>&1 </dev/null; echo $? >"$T/p$cfx_pi.rc" ) &
done
"""
_PROBE_END = r"""
wait
cfx_pi=0
for cfx_ip in __PROBES__; do
  cfx_pi=$((cfx_pi+1))
  printf '@@CFX %s BEGIN vxlan_probe %s\n' "$N" "$(cfx_hex "$cfx_ip")"; cat "$T/p$cfx_pi" 2>/dev/null
  printf '\n@@CFX %s ERR vxlan_probe %s\n' "$N" "$(cfx_hex "$cfx_ip")"
  cfx_prc=$(cat "$T/p$cfx_pi.rc" 2>/dev/null || echo 124)
  printf '\n@@CFX %s END vxlan_probe %s rc=%s\n' "$N" "$(cfx_hex "$cfx_ip")" "$cfx_prc"
done
"""



def build_facts_script(peer_pod_ips: list[str] | tuple[str, ...] = (), nonce: str | None = None,
                       skip: tuple[str, ...] | frozenset[str] = (),
                       vxlan_probes: list[str] | tuple[str, ...] = ()) -> str:
    return "\n".join(text for _label, text in script_parts(peer_pod_ips, nonce, skip, vxlan_probes))


def script_parts(peer_pod_ips: list[str] | tuple[str, ...] = (), nonce: str | None = None,
                 skip: tuple[str, ...] | frozenset[str] = (),
                 vxlan_probes: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The old build_facts_script's pieces with labels (joined with newlines: the old script)."""
    nonce = nonce or new_nonce()
    if not nonce.isalnum():
        raise ValueError("nonce must be alphanumeric")
    out = [("prelude", _PRELUDE.replace("__NONCE__", nonce).replace("__CNI_SED__", CNI_SECRET_SED)
            .replace("__SECTION_TIMEOUT__", str(int(SECTION_TIMEOUT))))]
    probes = " ".join(shlex.quote(str(ipaddress.ip_address(str(ip).strip())))
                      for ip in vxlan_probes)  # raises on anything not an IP
    if probes:
        out.append(("vxlan_probe start", _PROBE_START.replace("__PROBES__", probes)))
    for name, cmd in _SECTIONS:
        if name in skip or name in ("conntrack", "conntrack_stats"):  # facts added after v1
            continue
        tool = cmd.split()[0]
        if tool == "readlink" and "command -v" in cmd:
            tool = "iptables"
        out.append((name, f"cfx_sh {name} {shlex.quote(tool)} {shlex.quote(cmd)}"))
    for ip in peer_pod_ips:
        addr = str(ipaddress.ip_address(str(ip).strip()))  # raises on anything not an IP
        cmd = f"ip -j route get {shlex.quote(addr)}"
        out.append(("route_get", f"cfx_shq {shlex.quote('route_get ' + addr.encode().hex())} ip "
                                 f"{shlex.quote(cmd)}"))
    sysctls = " ".join(shlex.quote(f"{k}={p}") for k, p in SYSCTLS.items())
    out.append(("sysctl", _SYSCTL_PART.replace("__SYSCTLS__", sysctls)))
    out.append(("files + kubectl", _FILES_PART.replace("__KUBECONFIGS__", " ".join(KUBECONFIG_GLOBS))))
    out.append(("incompatible", _INCOMPAT_PART))
    for name, cmd in SHAPE_SECTIONS:
        out.append((name, f"cfx_sh {name} {shlex.quote(cmd.split()[0])} {shlex.quote(cmd)}"))
    out.append(("shape", _SHAPE_PART.replace("__BINARIES__", " ".join(IPTABLES_BINARIES))
                .replace("__PATHS__", " ".join(SHAPE_PATHS))
                .replace("__CNIDIRS__", " ".join(EXTRA_CNI_DIRS))
                .replace("__FLANNELCONF__", " ".join(EMBEDDED_FLANNEL_CONF))))
    if probes:
        out.append(("vxlan_probe end", _PROBE_END.replace("__PROBES__", probes)))
    out.append(("done", f"printf '{MARK} %s DONE\\n' \"$N\"\n"))
    return out
