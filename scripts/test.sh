#!/usr/bin/env bash
# Install what the tests need, then run them (as root: the lab builds network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# The lab tests mostly wait (sshd, probes, the lab's own reconcile loop): they run side by side on
# CFX_TEST_WORKERS pytest-xdist workers (default 3; 0 runs them all in this process). conftest.py
# puts the tests that share a lab (a module, or one shape of a parametrized module) in one group,
# which runs on one worker in file order; a lab test with a lab of its own is a group by itself;
# the lab groups go out first, the biggest first (hence --no-loadscope-reorder).
set +e
python3 -m pytest -q -n "${CFX_TEST_WORKERS:-3}" --dist loadgroup --no-loadscope-reorder "$@"
rc=$?
# pytest's 5 means no test was collected: that is a failure here, never a pass.
[ $rc -eq 5 ] && { echo "no tests collected" >&2; exit 1; }
exit $rc
