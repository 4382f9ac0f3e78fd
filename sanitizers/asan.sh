#!/usr/bin/env bash
# AddressSanitizer job (`just asan`), LeakSanitizer included: std rebuilt with ASan (-Zbuild-std)
# and hakmem built with `--cfg asan`, so hakmem poisons free slots, headers, tails and uncarved
# slab space and ASan sees inside the allocator. Every hakmem test, the sanitizer stress tests,
# the deterministic and free-running fuzz targets over their corpora must be clean (no error, no
# leak); the control tests (tests/controls.rs) must see a one-byte overflow, a read after free,
# a double free and a leaked Box each reported. Builds go to target/asan.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_sanitizers
export RUSTFLAGS="-Zsanitizer=address --cfg asan"
export RUSTDOCFLAGS="$RUSTFLAGS"
# detect_leaks: LeakSanitizer at every test binary's exit (the default on x86_64 Linux; explicit
# here). detect_stack_use_after_return: also catch use of a dead stack frame.
export ASAN_OPTIONS="detect_leaks=1 detect_stack_use_after_return=1 ${ASAN_OPTIONS:-}"
t0=$(date +%s)
echo "== asan: hakmem tests, sanitizer stress, fuzz targets and the control tests"
cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/asan \
    -p hakmem -p hakmem-sanitizers --tests
echo "== asan: the control tests again, showing what each broken program printed"
cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/asan \
    -p hakmem-sanitizers --test controls --test controls_global -- --nocapture --test-threads=1 2>&1 \
    | grep -E "^(test |control|    )" | cut -c1-200
echo "== asan: $(( $(date +%s) - t0 )) s"
