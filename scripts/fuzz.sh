#!/usr/bin/env bash
# Fuzzing jobs for hakmem: the campaign (the README's main job), single-target runs under
# libFuzzer or AFL++, minimization, and the CI smoke job. Installs what it needs (nightly with its
# components, cargo-fuzz, cargo-afl and AFL++) on first use.
#
#   scripts/fuzz.sh campaign [SECONDS]       every target SECONDS (default 20) under libFuzzer+ASan, then a summary
#   scripts/fuzz.sh run TARGET [ARGS...]     one target under libFuzzer+ASan until stopped (ARGS go to libFuzzer)
#   scripts/fuzz.sh afl TARGET [SECONDS]     one target under AFL++ (default 60 s)
#   scripts/fuzz.sh replay [ARGS] FILE...    a crash as a program, re-run in the fuzz build's configuration and the fuzz target
#   scripts/fuzz.sh tmin TARGET FILE         minimize a crash by its structure (libFuzzer's tmin if it fails only under ASan)
#   scripts/fuzz.sh afl-tmin TARGET FILE     minimize a crash with afl-tmin, print it as a program
#   scripts/fuzz.sh smoke                    CI: build all targets for both engines, run each 30 s
#                                            (libFuzzer) and 10 s (AFL++), replay the regressions
#
# Targets: deterministic, free_running, misuse (see fuzz/harness/src/lib.rs). Seeds are read from
# corpora/<target>/ and never written: new corpus entries go to fuzz/corpus/<target>/, crashes to
# fuzz/artifacts/<target>/, AFL++ output to fuzz/afl/out/<target>/, logs to fuzz/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
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

die() { echo "fuzz.sh: $*" >&2; exit 2; }

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

# One libFuzzer run of target $1 for $2 seconds; appends a summary row to $ROWS.
libfuzzer_row() {
    local t="$1" secs="$2" log="$LOGS/libfuzzer-$1.log" rc=0
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$LOGS"
    echo "== libFuzzer: $t for ${secs}s (log: ${log#"$ROOT"/})"
    (cd fuzz && cargo +nightly fuzz run "${CARGO_FUZZ_FLAGS[@]}" "$t" "corpus/$t" "../corpora/$t" -- \
        "${LIBFUZZER_ARGS[@]}" -max_total_time="$secs" -artifact_prefix="artifacts/$t/") >"$log" 2>&1 || rc=$?
    # The last status line (#N ... cov: C ft: F corp: N/SIZE ... exec/s: E ...) and final stats.
    local row
    row="$(awk -v t="$t" -v rc="$rc" -v logf="$log" '
        / cov: / { for (i = 1; i <= NF; i++) { if ($i == "cov:") cov = $(i+1); if ($i == "ft:") ft = $(i+1);
                   if ($i == "corp:") corp = $(i+1); if ($i == "exec/s:") eps = $(i+1) }
                   n = substr($1, 2) }
        /^stat::number_of_executed_units:/ { n = $2 }
        /^stat::average_exec_per_sec:/ { eps = $2 }
        /^stat::new_units_added:/ { added = $2 }
        /Test unit written to/ { crash = $NF; crashes++ }
        END { if (crashes == "" && rc != 0) { crashes = "FAILED(" rc ")"; crash = logf } else if (crashes == "") crashes = 0
              printf "%s|libFuzzer+ASan|%s|%s|%s|%s|%s|%s|%s|%s\n", t, n, eps, cov, ft, corp, added == "" ? "-" : added, crashes, crash }' "$log")"
    ROWS+=("$row")
}

# One AFL++ run of target $1 for $2 seconds; appends a summary row to $ROWS.
afl_row() {
    local t="$1" secs="$2" in="fuzz/afl/in/$1" out="fuzz/afl/out/$1" log="$LOGS/afl-$1.log" rc=0
    # A fresh copy of the seeds: afl-fuzz hard-links its inputs into its queue.
    rm -rf "$in" "$out"
    mkdir -p "$in" "$LOGS" "$(dirname "$out")"
    cp "corpora/$t"/* "$in/"
    echo "== AFL++: $t for ${secs}s (log: ${log#"$ROOT"/})"
    # The AFL++ build has no ASan, and afl-fuzz refuses ASAN_OPTIONS without abort_on_error.
    env -u ASAN_OPTIONS cargo afl fuzz -i "$in" -o "$out" -x corpora/hakmem.dict -V "$secs" -t 10000 \
        "fuzz/afl/target/release/$t" >"$log" 2>&1 || rc=$?
    local stats="$out/default/fuzzer_stats" crashes first
    [ -f "$stats" ] || { ROWS+=("$t|AFL++|-|-|-|-|-|-|FAILED($rc)|$log"); return; }
    crashes="$(find "$out/default/crashes" -name 'id:*' 2>/dev/null | wc -l)"
    first="$(find "$out/default/crashes" -name 'id:*' 2>/dev/null | sort | head -1)"
    ROWS+=("$(awk -F' *: *' -v t="$t" -v crashes="$crashes" -v first="$first" '
        { v[$1] = $2 }
        END { printf "%s|AFL++|%s|%s|%s|-|%s|-|%s|%s\n", t, v["execs_done"], v["execs_per_sec"], v["bitmap_cvg"],
              v["corpus_count"], crashes, first }' "$stats")")
}

# Prints the rows as a table, then where each crash is and how to look at it. Fails if any crashed.
summary() {
    local failed=0 r
    echo
    printf '%-14s %-15s %11s %9s %9s %7s %14s %6s %8s\n' target engine executions exec/s cov ft corpus new crashes
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t e n eps cov ft corp added crashes file <<<"$r"
        printf '%-14s %-15s %11s %9s %9s %7s %14s %6s %8s\n' "$t" "$e" "$n" "$eps" "$cov" "$ft" "$corp" "$added" "$crashes"
    done
    echo "(cov: libFuzzer's covered edges, or AFL++'s bitmap coverage; ft: libFuzzer's features; corpus: entries[/size])"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r t e n eps cov ft corp added crashes file <<<"$r"
        [ "$crashes" = 0 ] && continue
        failed=1
        if [[ "$crashes" == FAILED* ]]; then
            echo
            echo "$t ($e) did not run to the end: see $file"
            continue
        fi
        echo
        echo "CRASH in $t ($e): ${file:-see the log}"
        [ -n "$file" ] && [ -f "fuzz/$file" ] && file="fuzz/$file"
        if [ -n "$file" ] && [ -f "$file" ]; then
            echo "  see it:      just replay $file"
            echo "  minimize it: just $([ "$e" = "AFL++" ] && echo afl-tmin || echo tmin) $t $file"
            echo "  keep it:     just replay --save corpora/regressions/$t/NAME.prog <minimized file>  (then commit it)"
        fi
    done
    return $failed
}

cmd="${1:-campaign}"
shift || true
ROWS=()
case "$cmd" in
campaign)
    secs="${1:-20}"
    build_libfuzzer
    for t in "${TARGETS[@]}"; do libfuzzer_row "$t" "$secs"; done
    summary
    ;;
run)
    [ $# -ge 1 ] || die "usage: fuzz.sh run TARGET [libFuzzer args...]"
    check_target "$1"
    t="$1"
    shift
    build_libfuzzer "$t"
    mkdir -p "fuzz/corpus/$t"
    cd fuzz
    exec cargo +nightly fuzz run "${CARGO_FUZZ_FLAGS[@]}" "$t" "corpus/$t" "../corpora/$t" -- "${LIBFUZZER_ARGS[@]}" "$@"
    ;;
afl)
    [ $# -ge 1 ] || die "usage: fuzz.sh afl TARGET [SECONDS]"
    check_target "$1"
    build_afl
    afl_row "$1" "${2:-60}"
    summary
    ;;
replay)
    [ $# -ge 1 ] || die "usage: fuzz.sh replay [--target T] [--save X.prog] FILE..."
    build_libfuzzer >/dev/null
    cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay
    exec target/fuzz-replay/replay --fuzz-build "$FUZZ_BIN" "$@"
    ;;
tmin)
    [ $# -eq 2 ] || die "usage: fuzz.sh tmin TARGET FILE"
    check_target "$1"
    build_libfuzzer >/dev/null
    cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay
    file="$(realpath "$2")"
    # By the program's structure, in the fuzz build's configuration, confirmed by the fuzz target.
    if target/fuzz-replay/replay --target "$1" --minimize --fuzz-build "$FUZZ_BIN" "$file"; then
        echo "keep it: just replay --save corpora/regressions/<target>/NAME.prog $file.min"
        exit 0
    fi
    # Failing only under ASan (this build has none): libFuzzer's own minimizer, on the fuzz build.
    log="$LOGS/tmin-$1.log"
    mkdir -p "$LOGS"
    (cd fuzz && cargo +nightly fuzz tmin "${CARGO_FUZZ_FLAGS[@]}" "$1" "$file") >"$log" 2>&1 || true
    min="$(awk '/Minimized artifact:/ { found = 1; next } found && NF { print $NF; exit }' "$log")"
    [ -n "$min" ] && [ -f "fuzz/$min" ] && min="fuzz/$min"
    [ -n "$min" ] || { tail -20 "$log"; die "tmin failed (log: $log)"; }
    echo "minimized by libFuzzer: $min ($(wc -c <"$min") bytes; was $(wc -c <"$file"))"
    target/fuzz-replay/replay --target "$1" --fuzz-build "$FUZZ_BIN" "$min" || true
    ;;
afl-tmin)
    [ $# -eq 2 ] || die "usage: fuzz.sh afl-tmin TARGET FILE"
    check_target "$1"
    build_afl
    min="$2.min"
    cargo afl tmin -i "$2" -o "$min" "fuzz/afl/target/release/$1"
    echo "minimized: $min ($(wc -c <"$min") bytes; was $(wc -c <"$2"))"
    cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay
    target/fuzz-replay/replay --target "$1" --fuzz-build "$FUZZ_BIN" "$min" || true
    ;;
smoke)
    start=$(date +%s)
    build_libfuzzer
    build_afl
    for t in "${TARGETS[@]}"; do libfuzzer_row "$t" 30; done
    for t in "${TARGETS[@]}"; do afl_row "$t" 10; done
    echo "== replaying seeds and regressions (cargo test -p hakmem-fuzz)"
    cargo test -q -p hakmem-fuzz
    rc=0
    summary || rc=$?
    echo "fuzz smoke: $(( $(date +%s) - start )) s"
    exit $rc
    ;;
*)
    die "unknown command '$cmd' (campaign, run, afl, replay, tmin, afl-tmin, smoke)"
    ;;
esac
