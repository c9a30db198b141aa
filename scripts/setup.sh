#!/usr/bin/env bash
# Install everything clusterfix-tui and its lab need on a fresh Debian machine (run as root).
#   scripts/setup.sh          the app and the lab
#   scripts/setup.sh --test   plus the test extras
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

debs="openssh-server openssh-client iptables nftables iproute2 kmod conntrack curl procps util-linux sudo"
missing=""
for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# kubectl is optional (the lab's tests use it when present); the Python client is what the tool uses.
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"
