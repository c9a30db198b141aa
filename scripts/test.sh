#!/usr/bin/env bash
# Install what the tests need, then run them (as root: the lab builds network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
set +e
python3 -m pytest -q "$@"
rc=$?
# pytest's 5 means no test was collected: that is a failure here, never a pass.
[ $rc -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit $rc
