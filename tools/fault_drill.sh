#!/usr/bin/env bash
# Fault drill: every fault of the README's reliability table, injected by the tests the table
# names (its third column: test names, `name_*` prefixes, test files), then one summary line:
# DRILL passed=N failed=M. Offline, CPU only. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
names=$(awk '/^## Reliability/{on=1; next} /^## /{on=0} on && /^\| /' README.md \
        | awk -F'|' '{print $4}' | grep -oE 'test_[A-Za-z0-9_]+' | sort -u)
if [ -z "$names" ]; then
  echo "DRILL passed=0 failed=1 (no test named in README's reliability table)"
  exit 1
fi
selection=$(echo "$names" | paste -sd' ' | sed 's/ / or /g')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
python -m pytest -q -p no:cacheprovider -rfE -k "$selection" tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(tail -n 1 "$log")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | cut -d' ' -f1 | head -n 1; }
passed=$(count passed)
failures=$(count failed)
errors=$(count error)
echo "DRILL passed=${passed:-0} failed=$(( ${failures:-0} + ${errors:-0} ))"
exit "$status"
