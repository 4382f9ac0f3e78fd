# Sourced by the fuzzing scripts (fuzz.sh, campaign.sh, cflite-check.sh) from the repository root:
# the targets, where each engine's files go, the engines' flags, the builds, and the summary table.
# shellcheck shell=bash disable=SC2034  # (the variables are for the scripts that source it)
source scripts/setup.sh

TARGETS=(deterministic free_running misuse)
ROOT="$PWD"
LOGS="$ROOT/fuzz/logs"
# Where cargo fuzz puts the libFuzzer targets.
FUZZ_BIN="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release"
# Stack-use-after-return detection costs a fake stack frame per call and guards nothing the
# harness does; hangs (a deadlocked heap lock) should fail within seconds, not libFuzzer's 20 min.
export ASAN_OPTIONS="detect_stack_use_after_return=0:${ASAN_OPTIONS:-}"
LIBFUZZER_ARGS=(-timeout=10 -print_final_stats=1 -dict="$ROOT/corpora/hakmem.dict")
# cargo fuzz's build flags, the same for build, run and tmin (or each would rebuild). Without
# trace-compares instrumentation the deterministic target runs 1.8x as many inputs per second
# (5300 vs 2870 exec/s from the seeds, 30 s each) and reaches as much coverage in that time:
# the decoder has no magic values for it to find, and the dictionary holds the size edges.
CARGO_FUZZ_FLAGS=(--no-trace-compares)
# AFL++ on a machine it does not own: no CPU governor or core_pattern changes, no UI.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

check_target() {
    local t
    for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    die "unknown target '$1' (targets: ${TARGETS[*]})"
}

build_libfuzzer() {
    ensure_cargo_fuzz
    echo "== building libFuzzer targets (ASan, nightly)"
    (cd fuzz && cargo +nightly fuzz build "${CARGO_FUZZ_FLAGS[@]}" "$@")
}

build_afl() {
    ensure_afl
    echo "== building AFL++ targets"
    # The fuzz build's configuration, as cargo fuzz builds the libFuzzer targets: debug assertions
    # and overflow checks on, so that a finding replays as the same failure.
    (cd fuzz/afl && CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true cargo afl build --release -q)
}

# What a CI log needs to hold a finding without its artifacts: the report's key lines from the
# engine's log, the input itself (base64) and the program it decodes to.
show_finding() {
    local t="$1" e="$2" file="$3" log="$LOGS/libfuzzer-$1.log"
    if [[ "$e" != AFL* ]] && [ -f "$log" ]; then
        echo "  report (from ${log#"$ROOT"/}):"
        awk '/FAILED|panicked|ERROR: |hakmem: / { on = 1 } on && n++ < 16' "$log" | cut -c1-300 | sed 's/^/    /'
    fi
    echo "  the input, $(wc -c <"$file") bytes (base64 -d > crash.bin; just replay crash.bin):"
    base64 -w 100 "$file" | head -60 | sed 's/^/    /'
    # (Built every time: a replay tool left from an older tree would judge the input wrongly.)
    if cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay 2>/dev/null; then
        echo "  replayed (the program, then the verdicts here and in the fuzz build):"
        timeout 300 target/fuzz-replay/replay --target "$t" --fuzz-build "$FUZZ_BIN" "$file" 2>&1 | head -120 | sed 's/^/    /'
    fi
}

# Prints the rows ("target|engine|executions|exec/s|cov|ft|corpus|new|crashes|first crash[|crash dir]")
# as a table, then where each crash is and how to look at it. Fails if any crashed.
summary() {
    local failed=0 r
    echo
    printf '%-14s %-20s %11s %9s %9s %7s %14s %6s %8s\n' target engine executions exec/s cov ft corpus new crashes
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t e n eps cov ft corp added crashes file where <<<"$r"
        printf '%-14s %-20s %11s %9s %9s %7s %14s %6s %8s\n' "$t" "$e" "$n" "$eps" "$cov" "$ft" "$corp" "$added" "$crashes"
    done
    echo "(cov: libFuzzer's covered edges, or AFL++'s bitmap coverage; ft: libFuzzer's features; corpus: entries[/size])"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t e n eps cov ft corp added crashes file where <<<"$r"
        [ "$crashes" = 0 ] && continue
        failed=1
        if [[ "$crashes" == FAILED* ]]; then
            echo
            echo "$t ($e) did not run to the end: see $file"
            continue
        fi
        echo
        echo "CRASH in $t ($e): ${file:-see the log}"
        [ -n "$where" ] && echo "  all $crashes of them are in $where"
        [ -n "$file" ] && [ -f "fuzz/$file" ] && file="fuzz/$file"
        if [ -n "$file" ] && [ -f "$file" ]; then
            echo "  see it:      just replay $file"
            echo "  minimize it: just $([[ "$e" == AFL* ]] && echo afl-tmin || echo tmin) $t $file"
            echo "  keep it:     just replay --save corpora/regressions/$t/NAME.prog <minimized file>  (then commit it)"
            show_finding "$t" "$e" "$file"
        fi
    done
    return $failed
}

