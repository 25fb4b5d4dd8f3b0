#!/usr/bin/env bash
# Fault drill: every fault of the README's reliability table, injected by its test
# (the tests marked `drill`), then one summary line: DRILL passed=N failed=M.
# Offline, CPU only; a few minutes on 2 cores. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
python -m pytest -q -p no:cacheprovider -m drill -rfE tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(tail -n 1 "$log")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 | head -n 1; }
passed=$(count passed)
failures=$(count failed)
errors=$(count error)
echo "DRILL passed=${passed:-0} failed=$(( ${failures:-0} + ${errors:-0} ))"
exit "$status"
