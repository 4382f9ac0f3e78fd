#!/usr/bin/env bash
# LeakSanitizer alone (`just lsan`): the cheap leak job. No std rebuild is needed (LSan only
# intercepts malloc/free and scans memory at exit), so it builds in about a minute. hakmem's tests
# and the sanitizer tests must exit with no leak; the control (tests/controls.rs, `leak`) must
# see a deliberately leaked Box reported. `just asan` runs LeakSanitizer too, inside ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_sanitizers
export RUSTFLAGS="-Zsanitizer=leak"
export LSAN_OPTIONS="${LSAN_OPTIONS:-}"
t0=$(date +%s)
echo "== lsan: hakmem tests, sanitizer tests and the leak control"
cargo +nightly test --target x86_64-unknown-linux-gnu --target-dir target/lsan -p hakmem -p hakmem-sanitizers --tests
cargo +nightly test --target x86_64-unknown-linux-gnu --target-dir target/lsan -p hakmem-sanitizers --test controls \
    -- --nocapture control_leak 2>&1 | grep -E "^(test |control|    )" | cut -c1-200
echo "== lsan: $(( $(date +%s) - t0 )) s"
