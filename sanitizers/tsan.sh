#!/usr/bin/env bash
# ThreadSanitizer job (`just tsan`): std rebuilt with TSan (-Zbuild-std), so every atomic and
# lock in std is visible to it. 1) hakmem's tests and the sanitizer stress tests must be clean;
# 2) control: the same remote-free handoff built with `fault-remote-relaxed` (Relaxed push/take)
# must be reported as a data race. Builds go to target/tsan, away from the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_sanitizers
export RUSTFLAGS="-Zsanitizer=thread --cfg tsan"
export RUSTDOCFLAGS="$RUSTFLAGS"
# halt_on_error: the first race fails the test binary (exit code 66) with its report.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
cargo=(cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu --target-dir target/tsan)
t0=$(date +%s)

echo "== tsan: hakmem tests and sanitizer stress tests, which must be clean"
# The quickcheck model tests drive several caches from one thread: no races to find, and 80 s under
# TSan, so they are skipped here (they run in the plain suite, ASan and Miri).
"${cargo[@]}" -p hakmem -p hakmem-sanitizers --tests -- --skip keep_the_model --skip keeps_the_model
t1=$(date +%s)

echo "== tsan control: Relaxed remote-free queue (feature fault-remote-relaxed) must be reported"
# The race must be on a batch (`hakmem/src/batch.rs`), which the owner reads as it takes it in from
# its inbox: written by the remote free that filled or sent it.
bash sanitizers/expect-failure.sh "WARNING: ThreadSanitizer: data race" \
    "hakmem::batch::" "<hakmem::cache::CacheInner<hakmem::policy::Release>>::take_in" -- \
    "${cargo[@]}" -p hakmem-sanitizers --features hakmem/fault-remote-relaxed --test threads -- remote_free_handoff
t2=$(date +%s)
echo "== tsan: clean suite $((t1 - t0)) s, control $((t2 - t1)) s"
