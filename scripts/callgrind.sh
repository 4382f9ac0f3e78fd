#!/usr/bin/env bash
# Instructions per 64-byte malloc/free pair, counted by callgrind (stable on noisy machines).
# Usage: scripts/callgrind.sh [allocator...]   (default: system hakmem hakmem-checked mimalloc jemalloc)
# Each count includes the benchmark loop and the dyn GlobalAlloc call (a few instructions, the
# same for every allocator). snmalloc cannot run under valgrind: its start-up reservation of
# the address space for its pagemap fails there ("Failed to initialise snmalloc").
# CALLGRIND_KEEP=DIR keeps the callgrind.out files there for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
n=200000
cargo build --release -q -p hakmem-bench
bin=target/release/hakmem-bench
out=${CALLGRIND_KEEP:-$(mktemp -d)}
mkdir -p "$out"
status=0
printf '%-10s %12s   %s\n' allocator "instr/pair" "(64 B malloc + free, incl. loop and dyn call)"
for name in ${@:-system hakmem hakmem-checked mimalloc jemalloc}; do
    file="$out/callgrind.out.$name"
    # The subshell keeps bash's "Aborted" job notice for a crashed run out of the table.
    if ! (valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect='*pair_loop*' \
        "$bin" --pair-loop "$n" --alloc "$name" >"$out/$name.log" 2>&1; exit $?) 2>/dev/null; then
        why=$(grep -v '^==' "$out/$name.log" | grep -v '^\s*$' | head -1)
        printf '%-10s %12s   valgrind run failed: %s\n' "$name" "-" "${why:-see $out/$name.log}"
        status=1
        continue
    fi
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
    if [ -z "$total" ]; then
        printf '%-10s %12s   no totals in %s\n' "$name" "-" "$file"
        status=1
        continue
    fi
    awk -v t="$total" -v n="$n" -v a="$name" 'BEGIN { printf "%-10s %12.1f\n", a, t / n }'
done
[ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$out"
exit $status
