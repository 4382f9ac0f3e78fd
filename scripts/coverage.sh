#!/usr/bin/env bash
# What the corpora reach: line coverage of the hakmem crate, per file, with an HTML report.
# Builds the fuzz targets with source-based coverage (`cargo fuzz coverage`, no sanitizer: the
# lines are the same) and reads the profiles with llvm-cov from nightly's llvm-tools component.
#
#   scripts/coverage.sh TARGET [DIR...]   one target over DIRs (default: corpora/TARGET, the seeds
#                                         and regressions, and fuzz/corpus/TARGET if it has inputs)
#   scripts/coverage.sh all [--committed] every target, merged with the test suite (`cargo test
#                                         --workspace` built with -C instrument-coverage); with
#                                         --committed, only the committed corpora (corpora/TARGET:
#                                         seeds and regressions) and no tests: the corpora's own figure
#
# Reports go to target/coverage/NAME/ (NAME: the target, all or committed): index.html,
# summary.txt, and missed.txt (every run of lines never executed). The table lists every file
# of hakmem/src and totals the core (regions, slabs, thread caches, remote frees, heap, checked
# mode); the files outside it say why.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fuzz-common.sh

# The core the coverage goal is about, and why the other files of hakmem/src are not in it.
CORE=(region.rs layout.rs slab.rs list.rs cache.rs heap.rs os.rs lock.rs sync.rs size_class.rs policy.rs check.rs verify.rs report.rs guard.rs)
declare -A NOT_CORE=(
    [global.rs]="the GlobalAlloc and C entry points, TLS caches and fork handlers: programs drive a Heap (api=c: the paths those entry points call), the test suite drives these"
    [asan.rs]="ASan builds only (--cfg asan): the coverage build has none"
    [lib.rs]="re-exports"
)
COV_BIN="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/coverage/x86_64-unknown-linux-gnu/release"

llvm_tool() {
    local f
    f="$(find "$(rustc +nightly --print sysroot)/lib/rustlib" -path "*/bin/$1" -type f | head -1)"
    [ -n "$f" ] || die "no $1 in nightly's llvm-tools (rustup component add --toolchain nightly llvm-tools)"
    echo "$f"
}

# One target's profile over the directories given: fuzz/coverage/TARGET/coverage.profdata.
target_profile() {
    local t="$1"
    shift
    local dirs=() d
    for d in "$@"; do dirs+=("$(realpath "$d")"); done
    rm -rf "fuzz/coverage/$t"
    mkdir -p "$LOGS"
    echo "== cargo fuzz coverage $t: $(find "${dirs[@]}" -maxdepth 1 -type f | wc -l) inputs from ${*} (log: fuzz/logs/coverage-$t.log)"
    (cd fuzz && cargo +nightly fuzz coverage "${CARGO_FUZZ_FLAGS[@]}" -s none "$t" "${dirs[@]}") >"$LOGS/coverage-$t.log" 2>&1 \
        || { tail -20 "$LOGS/coverage-$t.log"; die "cargo fuzz coverage $t failed (log: fuzz/logs/coverage-$t.log)"; }
    [ -f "fuzz/coverage/$t/coverage.profdata" ] || die "cargo fuzz coverage wrote no profile for $t"
}

# The test suite's profile and binaries (OBJECTS), built and run with -C instrument-coverage in
# a target dir of its own.
TEST_OBJECTS=()
tests_profile() {
    local dir="$ROOT/target/coverage-tests"
    rm -rf "$dir/profraw"
    mkdir -p "$dir/profraw"
    echo "== cargo test --workspace with -C instrument-coverage (log: fuzz/logs/coverage-tests.log)"
    export CARGO_TARGET_DIR="$dir" RUSTFLAGS="-C instrument-coverage" LLVM_PROFILE_FILE="$dir/profraw/%p-%m.profraw"
    cargo +nightly test --workspace >"$LOGS/coverage-tests.log" 2>&1 \
        || { tail -30 "$LOGS/coverage-tests.log"; die "the test suite failed under coverage (log: fuzz/logs/coverage-tests.log)"; }
    mapfile -t TEST_OBJECTS < <(cargo +nightly test --workspace --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
    # The LD_PRELOAD tests build the C drop-in into the same target dir, instrumented too.
    local so
    for so in "$dir"/release/libhakmem*.so "$dir"/debug/libhakmem*.so; do [ -f "$so" ] && TEST_OBJECTS+=("$so"); done
    unset CARGO_TARGET_DIR RUSTFLAGS LLVM_PROFILE_FILE
    "$(llvm_tool llvm-profdata)" merge -sparse "$dir"/profraw/*.profraw -o "$dir/tests.profdata"
}

# Reads the profile $2 against the binaries $3... and writes target/coverage/$1/: the per-file
# table of hakmem/src (summary.txt, also printed) and the HTML report.
report() {
    local name="$1" profile="$2"
    shift 2
    local out="$ROOT/target/coverage/$name" objects=() o
    for o in "${@:2}"; do objects+=(-object "$o"); done
    rm -rf "$out"
    mkdir -p "$out"
    # Only hakmem's own sources: not the harness, the targets, std or the registry. (llvm-cov names
# the files by what is left after their common prefix: hakmem/src/x.rs, or x.rs alone.)
    local only=(-ignore-filename-regex='^(/rustc/|.*/\.cargo/|.*/\.rustup/|.*/fuzz/|.*/bench/|.*/sanitizers/|.*/tests/|.*/preload)')
    "$(llvm_tool llvm-cov)" show "$1" "${objects[@]}" -instr-profile="$profile" "${only[@]}" \
        -format=html -output-dir="$out" -show-line-counts-or-regions >/dev/null
    "$(llvm_tool llvm-cov)" report "$1" "${objects[@]}" -instr-profile="$profile" "${only[@]}" >"$out/llvm-cov-report.txt"
    # Each run of lines never executed, as FILE:FIRST-LAST (lines) and the first line's code: the
    # blocks a coverage note has to account for.
    "$(llvm_tool llvm-cov)" show "$1" "${objects[@]}" -instr-profile="$profile" "${only[@]}" -format=text \
        -show-instantiations=false | awk '
        function flush() { if (s) { printf "%s:%d-%d (%d)  %s\n", file, s, e, n, first; s = 0 } }
        /^\/.*\.rs:$/ { flush(); file = $0; sub(/:$/, "", file); sub(/.*\/src\//, "", file); next }
        { split($0, p, "|"); ln = p[2] == "" ? 0 : p[1] + 0; cnt = p[2]; gsub(/ /, "", cnt)
          if (cnt == "0") { if (s && ln == e + 1) { e = ln; n++ } else { flush(); s = ln; e = ln; n = 1; first = p[3]; gsub(/^ +/, "", first) } }
          else if (cnt != "") flush() }
        END { flush() }' >"$out/missed.txt"
    local core=" ${CORE[*]} " why
    {
        echo "line coverage of hakmem/src ($name)"
        printf '%-14s %7s %7s %8s   %s\n' file lines missed covered ""
        awk -v core="$core" '$1 ~ /\.rs$/ {
                f = $1; sub(/.*\//, "", f); lines = $(NF - 5); missed = $(NF - 4)
                printf "%-14s %7d %7d %7.1f%%   %s\n", f, lines, missed, lines ? 100 * (lines - missed) / lines : 0, index(core, " " f " ") ? "core" : "" }' \
            "$out/llvm-cov-report.txt" | sort -k5,5r -k1,1
        awk -v core="$core" '$1 ~ /\.rs$/ { f = $1; sub(/.*\//, "", f)
                if (index(core, " " f " ")) { l += $(NF - 5); m += $(NF - 4) } }
             END { printf "%-14s %7d %7d %7.1f%%\n", "core", l, m, l ? 100 * (l - m) / l : 0 }' "$out/llvm-cov-report.txt"
        [ "$name" = all ] && echo "(with the test suite, a file's lines include its own #[cfg(test)] module, which only the tests run)"
        for o in "${!NOT_CORE[@]}"; do
            why="${NOT_CORE[$o]}"
            if grep -q "^\(.*/\)\?$o " "$out/llvm-cov-report.txt"; then echo "not core: $o: $why"; fi
        done | sort
    } | tee "$out/summary.txt"
    echo "HTML report: ${out#"$ROOT"/}/index.html (lines never run are red); llvm-cov's own table: ${out#"$ROOT"/}/llvm-cov-report.txt;"
    echo "every run of lines never executed: ${out#"$ROOT"/}/missed.txt"
}

ensure_cargo_fuzz
[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
case "$1" in
all)
    committed=0
    [ "${2:-}" = "--committed" ] && committed=1
    profiles=()
    bins=()
    for t in "${TARGETS[@]}"; do
        dirs=("corpora/$t")
        [ "$committed" = 0 ] && [ -n "$(ls -A "fuzz/corpus/$t" 2>/dev/null)" ] && dirs+=("fuzz/corpus/$t")
        target_profile "$t" "${dirs[@]}"
        profiles+=("fuzz/coverage/$t/coverage.profdata")
        bins+=("$COV_BIN/$t")
    done
    name=committed
    if [ "$committed" = 0 ]; then
        name=all
        tests_profile
        profiles+=("target/coverage-tests/tests.profdata")
        bins+=("${TEST_OBJECTS[@]}")
    fi
    mkdir -p target/coverage
    "$(llvm_tool llvm-profdata)" merge -sparse "${profiles[@]}" -o "target/coverage/$name.profdata"
    report "$name" "target/coverage/$name.profdata" "${bins[@]}"
    ;;
*)
    check_target "$1"
    t="$1"
    shift
    dirs=("$@")
    if [ ${#dirs[@]} -eq 0 ]; then
        dirs=("corpora/$t")
        [ -n "$(ls -A "fuzz/corpus/$t" 2>/dev/null)" ] && dirs+=("fuzz/corpus/$t")
    fi
    target_profile "$t" "${dirs[@]}"
    report "$t" "fuzz/coverage/$t/coverage.profdata" "$COV_BIN/$t"
    ;;
esac
