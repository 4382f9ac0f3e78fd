#!/usr/bin/env bash
# The fault catalog's check (`just faults`): for each planted fault (the `fault-*` features of
# hakmem/Cargo.toml), build the fuzz targets with it, run each detector the catalog names for it
# several times with different fuzzer seeds from the committed seeds, each run with a deadline,
# minimize the first finding, and print one table row per fault and detector.
#
#   scripts/faults.sh [--runs N] [--tests] [--no-tmin] [--out DIR] [NAME...]
#
# NAME: a fault (with or without the `fault-` prefix); default: every fault of the catalog.
# --runs N   runs per detector (default 3), with libFuzzer seeds 1..N
# --tests    also run `cargo test --workspace` with each fault and say which tests fail
# --no-tmin  skip minimization
# --out DIR  where logs, findings and the table go (default target/faults)
# --detectors LIST  run only these detectors (comma-separated) of each fault
#
# Detectors (the second field of a catalog line, each optionally `:SECONDS`):
#   deterministic  the deterministic target, libFuzzer+ASan (default deadline 10 s)
#   misuse         the misuse target, libFuzzer+ASan (10 s)
#   free_running   the free-running target, libFuzzer+ASan (60 s)
#   tsan           the free-running target, libFuzzer+TSan, std rebuilt with TSan (60 s)
#   watchdog       the free-running target, libFuzzer+ASan with a 5 s per-input timeout: a
#                  deadlock shows as a timeout (60 s)
#   history        the history-independence check (`just history`) over the seeds and
#                  regressions, each run with another shuffle (10 s)
# A run finds the fault when the target stops with a finding before the deadline whose report
# matches the catalog's pattern (the third field, an extended regular expression). The script
# exits non-zero if any run missed its fault or found something else.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
set +e  # (setup.sh sets -e; a finding is a failing command here)
ROOT="$PWD"

RUNS=3
TESTS=0
TMIN=1
OUT="$ROOT/target/faults"
NAMES=()
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --tests) TESTS=1; shift ;;
    --no-tmin) TMIN=0; shift ;;
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    --detectors) ONLY=",$2,"; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) NAMES+=("${1#fault-}"); shift ;;
    esac
done
mkdir -p "$OUT"

# The catalog: "name;failure;detectors;pattern;mistake" per fault, from hakmem/Cargo.toml.
catalog() {
    awk '/^# FAULT / { line = substr($0, 9); next }
         /^fault-[a-z0-9-]+ *=/ && line != "" { name = $1; sub(/^fault-/, "", name); print name ";" line; line = "" }' \
        hakmem/Cargo.toml | sed 's/ *; */;/g'
}
mapfile -t ENTRIES < <(catalog)
[ ${#ENTRIES[@]} -gt 0 ] || { echo "faults.sh: no catalog entries in hakmem/Cargo.toml" >&2; exit 2; }
if [ ${#NAMES[@]} -gt 0 ]; then
    picked=()
    for n in "${NAMES[@]}"; do
        e="$(printf '%s\n' "${ENTRIES[@]}" | grep "^$n;")" || { echo "faults.sh: no fault '$n' in the catalog" >&2; exit 2; }
        picked+=("$e")
    done
    ENTRIES=("${picked[@]}")
fi

export ASAN_OPTIONS="detect_stack_use_after_return=0:detect_leaks=0:${ASAN_OPTIONS:-}"
export TSAN_OPTIONS="halt_on_error=1:${TSAN_OPTIONS:-}"
FUZZ_FLAGS=(--no-trace-compares)
ASAN_DIR="$ROOT/fuzz/target-faults"
TSAN_DIR="$ROOT/fuzz/target-faults-tsan"
ensure_cargo_fuzz

# build SANITIZER FAULT: the fuzz targets with one fault, into that sanitizer's target dir.
build() {
    local san="$1" fault="$2" log="$OUT/build-$1-$2.log"
    local args=(--features "hakmem/fault-$fault" "${FUZZ_FLAGS[@]}")
    if [ "$san" = thread ]; then
        args+=(-s thread --build-std --target-dir "$TSAN_DIR")
    else
        args+=(--target-dir "$ASAN_DIR")
    fi
    if ! (cd fuzz && cargo +nightly fuzz build "${args[@]}") >"$log" 2>&1; then
        echo "faults.sh: build with fault-$fault ($san) failed: $log" >&2
        tail -20 "$log" >&2
        return 1
    fi
}

binary() { # SANITIZER TARGET
    if [ "$1" = thread ]; then echo "$TSAN_DIR/x86_64-unknown-linux-gnu/release/$2"; else echo "$ASAN_DIR/x86_64-unknown-linux-gnu/release/$2"; fi
}

# The first line that says what a finding was: the harness's own failure line, else the
# sanitizer's or libFuzzer's.
first_line() {
    local l
    l="$(grep -m1 -E 'hakmem-fuzz: .*FAILED' "$1")" ||
        l="$(grep -m1 -E 'hakmem: |^DIFFERS' "$1")" ||
        l="$(grep -m1 -A1 -E 'panicked at' "$1" | paste -sd' ')" ||
        l="$(grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer)|WARNING: ThreadSanitizer' "$1")" ||
        l="$(grep -m1 -iE 'error|fault|abort' "$1")" || l="(nothing printed)"
    # Strip libFuzzer's and the sanitizers' pid prefixes.
    sed -E 's/^==[0-9]+==//; s/^ +//' <<<"$l" | cut -c1-220
}

# run DETECTOR FAULT SEED DEADLINE DIR: one fuzzing run from the committed seeds; prints
# "found SECONDS ARTIFACT" or "missed SECONDS -".
run_one() {
    local det="$1" fault="$2" seed="$3" deadline="$4" dir="$5"
    local target san=address timeout=10
    case "$det" in
    history)
        local t0 t1 secs
        t0=$(date +%s.%N)
        timeout -k 5 $((deadline + 30)) "$ROOT/target/faults-history/release/history" --shuffle-seed "$seed" >"$dir/log" 2>&1
        local rc=$?
        t1=$(date +%s.%N)
        secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
        if [ $rc -ne 0 ]; then grep -m1 DIFFERS "$dir/log" >"$dir/finding.txt"; echo "found $secs $dir/finding.txt"; else echo "missed $secs -"; fi
        return 0
        ;;
    deterministic | misuse | free_running) target="$det" ;;
    tsan) target=free_running; san=thread ;;
    watchdog) target=free_running; timeout=5 ;;
    *) echo "faults.sh: unknown detector '$det'" >&2; return 2 ;;
    esac
    local corpus="$dir/corpus" art="$dir/artifacts"
    rm -rf "$corpus" "$art"
    mkdir -p "$corpus" "$art"
    cp "corpora/$target"/* "$corpus/"
    local bin t0 t1
    bin="$(binary "$san" "$target")"
    t0=$(date +%s.%N)
    # A hard limit too: a sanitizer's death in the middle of libFuzzer's own timeout can hang.
    (cd "$dir" && HAKMEM_FUZZ_REPRO_DIR="$art" exec timeout -k 5 $((deadline + 30)) "$bin" "$corpus" -seed="$seed" \
        -max_total_time="$deadline" -timeout="$timeout" -dict="$ROOT/corpora/hakmem.dict" -artifact_prefix="$art/" \
        -print_final_stats=1) >"$dir/log" 2>&1 &
    local pid=$! seen=""
    # The time to find is when the first report appears. Under TSan, libFuzzer's death callback
    # sometimes hangs in malloc inside TSan's report (the crash input is then never written):
    # such a run is stopped 15 s after its report and counts as found, with no input to minimize.
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$seen" ] && grep -qE 'WARNING: ThreadSanitizer|ERROR: AddressSanitizer|hakmem-fuzz: .*FAILED|panicked at' "$dir/log" 2>/dev/null; then
            seen=$(date +%s.%N)
        fi
        if [ -n "$seen" ] && [ "$(awk -v a="$seen" -v b="$(date +%s.%N)" 'BEGIN { print (b - a > 15) }')" = 1 ]; then
            echo "faults.sh: the fuzzer hung after its report; stopped" >>"$dir/log"
            kill -TERM "$pid" 2>/dev/null
            break
        fi
        sleep 0.2
    done
    wait "$pid"
    t1=${seen:-$(date +%s.%N)}
    local secs artifact
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    artifact="$(ls "$art"/crash-* "$art"/timeout-* "$art"/oom-* 2>/dev/null | head -1)"
    [ -n "$artifact" ] || { [ -n "$seen" ] && artifact="-"; }
    if [ -n "$artifact" ]; then echo "found $secs $artifact"; else echo "missed $secs -"; fi
}

# Steps of the minimized finding in FILE: the harness's structure-aware minimizer (the fuzz
# build's configuration), then the minimized input confirmed by the fuzz binary itself. A
# free-running finding is minimized as the deterministic program it is (or its saved
# deterministic reproducer).
minimize() {
    local det="$1" fault="$2" file="$3" dir="$4" target san=address
    case "$det" in tsan) target=free_running; san=thread ;; watchdog) target=free_running ;; *) target="$det" ;; esac
    local repro
    repro="$(ls "$dir/artifacts"/deterministic-repro-* 2>/dev/null | head -1)"
    [ -n "$repro" ] && { file="$repro"; target=deterministic; san=address; }
    [ "$target" = free_running ] && target=deterministic
    cp "$file" "$dir/finding"
    # The minimizer is built with the fault too (in the fuzz build's configuration).
    cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay --features "hakmem/fault-$fault" \
        --target-dir "$ROOT/target/faults-replay" >"$dir/tmin-build.log" 2>&1 || { echo "? (build failed)"; return; }
    timeout 300 "$REPLAY" --minimize --secs 60 --target "$target" "$dir/finding" >"$dir/tmin.log" 2>&1
    [ -s "$dir/finding.min" ] || { echo "? (does not fail alone)"; return; }
    local steps
    steps="$(awk '/^minimized from/ { print $5 }' "$dir/tmin.log")"
    # (The minimized input is a deterministic or misuse one: its ASan build confirms it.)
    local bin
    bin="$(binary address "$target")"
    if [ ! -x "$bin" ]; then
        echo "$steps steps (not confirmed: no ASan build)"
    elif ! timeout 60 "$bin" "$dir/finding.min" >"$dir/confirm.log" 2>&1; then
        echo "$steps steps"
    else
        echo "$steps steps (does not fail in the fuzz build!)"
    fi
}

REPLAY="$ROOT/target/faults-replay/fuzz-replay/replay"

TABLE="$OUT/table.txt" TABLE_MD="$OUT/table.md"
: >"$TABLE"
: >"$TABLE_MD"
# Each row also goes to table.md, as a Markdown table row (the report cut at 160 characters).
row() {
    printf '%-28s %-7s %-13s %-7s %8s %8s %9s  %s\n' "$@" | tee -a "$TABLE"
    local r="${8//|/\\|}"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${r:0:160}" >>"$TABLE_MD"
}
row fault failure detector found median worst minimized "first line of the report"
echo '|---|---|---|---|---:|---:|---|---|' >>"$TABLE_MD"
bad=0
for e in "${ENTRIES[@]}"; do
    IFS=';' read -r name failure detectors pattern mistake <<<"$e"
    IFS=',' read -r -a dets <<<"$detectors"
    built_asan=0 built_tsan=0
    for d in "${dets[@]}"; do
        det="${d%%:*}"
        [ -z "$ONLY" ] || [[ "$ONLY" == *",$det,"* ]] || continue
        deadline="${d#*:}"
        [ "$deadline" = "$d" ] && case "$det" in deterministic | misuse | history) deadline=10 ;; *) deadline=60 ;; esac
        if [ "$det" = history ]; then
            cargo build -q --release -p hakmem-fuzz --bin history --features "hakmem/fault-$name" \
                --target-dir "$ROOT/target/faults-history" >"$OUT/build-history-$name.log" 2>&1 ||
                { row "$name" "$failure" "$det" "BUILD" - - - "build failed"; bad=1; continue; }
        elif [ "$det" = tsan ]; then
            [ $built_tsan = 1 ] || build thread "$name" || { row "$name" "$failure" "$det" "BUILD" - - - "build failed"; bad=1; continue; }
            built_tsan=1
        else
            [ $built_asan = 1 ] || build address "$name" || { row "$name" "$failure" "$det" "BUILD" - - - "build failed"; bad=1; continue; }
            built_asan=1
        fi
        found=0 times=() first="" firstfile="" wrong=""
        for ((s = 1; s <= RUNS; s++)); do
            dir="$OUT/$name/$det/run$s"
            mkdir -p "$dir"
            read -r verdict secs artifact < <(run_one "$det" "$name" "$s" "$deadline" "$dir")
            if [ "$verdict" = found ]; then
                line="$(first_line "$dir/log")"
                if grep -qE -- "$pattern" <<<"$line"; then
                    found=$((found + 1))
                    times+=("$secs")
                    [ -n "$first" ] || first="$line"
                    [ -n "$firstfile" ] || [ "$artifact" = - ] || firstfile="$artifact"
                else
                    wrong="$line"
                fi
            fi
        done
        median="-" worst="-" steps="-"
        if [ ${#times[@]} -gt 0 ]; then
            median="$(printf '%s\n' "${times[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') s"
            worst="$(printf '%s\n' "${times[@]}" | sort -g | tail -1) s"
            if [ $TMIN = 1 ] && [ "$det" != history ] && [ -n "$firstfile" ]; then
                steps="$(minimize "$det" "$name" "$firstfile" "$(dirname "$(dirname "$firstfile")")")"
            fi
        fi
        [ -n "$first" ] || first="${wrong:+WRONG KIND: $wrong}"
        [ -n "$first" ] || first="(not found within ${deadline} s)"
        [ "$found" = "$RUNS" ] || bad=1
        row "$name" "$failure" "$det" "$found/$RUNS" "$median" "$worst" "$steps" "$first"
    done
done

if [ $TESTS = 1 ]; then
    echo | tee -a "$TABLE"
    printf '%-28s %s\n' fault "cargo test --workspace with the fault" | tee -a "$TABLE"
    for e in "${ENTRIES[@]}"; do
        IFS=';' read -r name _ <<<"$e"
        log="$OUT/test-$name.log"
        if timeout 900 cargo test -q --workspace --features "hakmem/fault-$name" >"$log" 2>&1; then
            verdict="passes (the tests alone miss it)"
        else
            failed="$(grep -E '^    [a-z_:]+$' "$log" | sed 's/^ *//' | head -4 | paste -sd, -)"
            verdict="FAILS: ${failed:-see $log}"
        fi
        printf '%-28s %s\n' "$name" "$verdict" | tee -a "$TABLE"
    done
fi
echo "(table: $TABLE and $TABLE_MD; logs and findings under $OUT/<fault>/<detector>/run<N>/)"
exit $bad
