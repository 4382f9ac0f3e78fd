#!/usr/bin/env bash
# Control-test runner: `expect-failure.sh NEEDLE... -- CMD...` runs CMD and succeeds only if CMD
# fails AND its output contains every NEEDLE. A sanitizer that stays silent makes this fail.
# The full output goes to target/sanitizer-logs/; the matching lines are printed.
set -uo pipefail
needles=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do needles+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "usage: $0 NEEDLE... -- CMD..." >&2; exit 2; }
shift
mkdir -p target/sanitizer-logs
log="target/sanitizer-logs/control-$(date +%s)-$$.log"
echo "control: $*"
"$@" >"$log" 2>&1
rc=$?
missing=0
for n in "${needles[@]}"; do
    grep -qF -- "$n" "$log" || { echo "control: MISSING from output: $n"; missing=1; }
done
if [ "$rc" -eq 0 ] || [ "$missing" -ne 0 ]; then
    echo "control: FAILED: the broken build was expected to be reported (exit code $rc); last output:"
    tail -n 60 "$log"
    exit 1
fi
echo "control: reported as expected (exit code $rc); key lines (full log: $log):"
pat=(-e "SUMMARY:" -e "ERROR:" -e " of size " -e "hakmem: ")
for n in "${needles[@]}"; do pat+=(-e "$n"); done
grep -F "${pat[@]}" "$log" | head -n 16 | sed 's/^/    /'
exit 0
