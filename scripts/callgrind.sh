#!/usr/bin/env bash
# Instructions per 64-byte malloc/free pair, counted by callgrind (stable on noisy machines).
# Usage: scripts/callgrind.sh [allocator...]   (default: system hakmem)
set -euo pipefail
cd "$(dirname "$0")/.."
n=200000
cargo build --release -q -p hakmem-bench
bin=target/release/hakmem-bench
out=$(mktemp -d)
for a in "${@:-system hakmem}"; do
    for name in $a; do
        valgrind --tool=callgrind --callgrind-out-file="$out/$name" --toggle-collect='*pair_loop*' \
            "$bin" --pair-loop "$n" --alloc "$name" >/dev/null 2>&1
        total=$(callgrind_annotate "$out/$name" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
        printf '%-10s %6.1f instructions per malloc/free pair (incl. loop and dyn call)\n' "$name" "$(echo "$total / $n" | bc -l)"
    done
done
rm -rf "$out"
