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
source scripts/fuzz-common.sh

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
