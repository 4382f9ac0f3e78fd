#!/usr/bin/env bash
# Campaigns longer and wider than `just fuzz`: one target on several cores under either engine,
# with a status line while it runs, a clean stop at the deadline or on Ctrl-C, and the corpus
# merged; and corpus minimization. Only glue: the engines do the fuzzing and the merging.
#
#   scripts/campaign.sh libfuzzer TARGET JOBS [SECONDS]   libFuzzer+ASan fork mode (-fork=JOBS)
#   scripts/campaign.sh afl TARGET JOBS [SECONDS]         AFL++: one -M main, JOBS-1 -S secondaries
#   scripts/campaign.sh cmin TARGET                       minimize fuzz/corpus/TARGET and the AFL++
#                                                         queues; write them as program listings
#
# Without SECONDS a run lasts until Ctrl-C. Either way every process the run started is stopped
# (its process group), and the script says so after checking with ps. The corpus of a campaign is
# fuzz/corpus/TARGET for both engines: libFuzzer's fork mode merges into it as it goes; AFL++'s
# main instance imports it at the start (-F) and the queues are merged into it at the end
# (libFuzzer's -merge=1, which keeps only entries that add coverage). Crashes stay in
# fuzz/artifacts/TARGET/ (AFL++'s are copied there as afl-RUN-INSTANCE-id-N). Status every
# HAKMEM_STATUS_SECONDS (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fuzz-common.sh

STATUS_EVERY="${HAKMEM_STATUS_SECONDS:-5}"
# After the engines' own deadline, how long they get to finish their last job or final sync.
GRACE=120
GROUPS_STARTED=()
STOP=""

# Runs a command in a session of its own, so that it and everything it forks (libFuzzer's jobs,
# AFL++'s fork servers) form one process group the script can signal, and a terminal's Ctrl-C
# reaches only the script, which then stops them in order. Non-interactive bash does not make
# background jobs group leaders, so setsid needs no fork and the pid is the group's id.
start_group() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    GROUPS_STARTED+=("$!")
}

alive() {
    local p
    for p in "${GROUPS_STARTED[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}

# Every process still in one of the groups started, as "pid command".
strays() {
    local pg
    for pg in "${GROUPS_STARTED[@]}"; do ps -eo pid=,pgid=,args= | awk -v g="$pg" '$2 == g { $2 = ""; print }'; done
}

# SIGINT to every group (each engine then stops as on Ctrl-C: libFuzzer exits, afl-fuzz writes
# its stats and kills its fork server), then SIGKILL to whatever is left after 15 s.
stop_groups() {
    local pg i
    for pg in "${GROUPS_STARTED[@]}"; do kill -INT -- "-$pg" 2>/dev/null || true; done
    for ((i = 0; i < 15; i++)); do
        [ -z "$(strays)" ] && break
        sleep 1
    done
    if [ -n "$(strays)" ]; then
        echo "== still running after 15 s, killing:"
        strays
        for pg in "${GROUPS_STARTED[@]}"; do kill -KILL -- "-$pg" 2>/dev/null || true; done
        sleep 1
    fi
    wait 2>/dev/null || true
}

# Waits for the engines to end by themselves (their deadline), or until Ctrl-C / SIGTERM, or until
# SECONDS + GRACE have passed; prints a status line (from the function named $1) every
# STATUS_EVERY seconds; then stops every group and checks none is left.
supervise() {
    local status="$1" secs="$2" start now next
    start=$(date +%s)
    next=$((start + STATUS_EVERY))
    trap 'STOP="interrupted"' INT TERM
    while alive && [ -z "$STOP" ]; do
        sleep 1 || true # (a Ctrl-C ends the sleep; the trap has said so)
        now=$(date +%s)
        if [ -n "$secs" ] && [ $((now - start)) -gt $((secs + GRACE)) ]; then
            STOP="still running ${GRACE} s after its deadline"
        fi
        if [ "$now" -ge "$next" ]; then
            printf '[%5d s] %s\n' $((now - start)) "$("$status")"
            next=$((now + STATUS_EVERY))
        fi
    done
    [ -n "$STOP" ] && echo "== stopping ($STOP)"
    stop_groups
    trap - INT TERM
    local left
    left="$(strays)"
    if [ -n "$left" ]; then
        echo "== processes left behind:"
        echo "$left"
        die "could not stop every process of the run"
    fi
    echo "== every process of the run has ended (checked with ps)"
}

count_files() { find "$@" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# ---- libFuzzer: fork mode ---------------------------------------------------------------------

LF_LOG=""
LF_STAMP=""
LF_T=""

# The fork-mode parent's last status line (#N: cov: C ft: F corp: N exec/s: E
# oom/timeout/crash: a/b/c time: Ts job: J), as "n cov ft corp eps crashes" ("-" before the first).
# Its exec/s is the last job's alone; eps here is every execution over the time since the start.
libfuzzer_stats() {
    awk '/^#[0-9]+: cov: / { n = substr($1, 2); sub(/:$/, "", n)
            for (i = 2; i <= NF; i++) { if ($i == "cov:") c = $(i+1); if ($i == "ft:") f = $(i+1)
                if ($i == "corp:") k = $(i+1); if ($i == "time:") s = $(i+1); if ($i == "oom/timeout/crash:") x = $(i+1) } }
         END { if (n == "") print "- - - - - -"; else { split(x, a, "/"); sub(/s$/, "", s)
               printf "%s %s %s %s %.0f %d\n", n, c, f, k, n / (s > 0 ? s : 1), a[1] + a[2] + a[3] } }' "$LF_LOG"
}

new_artifacts() { find "fuzz/artifacts/$LF_T" -maxdepth 1 -type f -newer "$LF_STAMP" 2>/dev/null | sort; }

libfuzzer_status() {
    local n cov ft corp eps crashes
    read -r n cov ft corp eps crashes <<<"$(libfuzzer_stats)"
    [ "$n" = - ] && { echo "libFuzzer $LF_T: loading the corpus (first job running)"; return; }
    echo "libFuzzer $LF_T: $n execs, $eps exec/s, cov $cov ft $ft, corpus $corp, crashes $(new_artifacts | wc -l)"
}

run_libfuzzer() {
    local t="$1" jobs="$2" secs="${3:-}" before n cov ft corp eps crashes first
    LF_T="$t"
    build_libfuzzer "$t"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$LOGS"
    LF_LOG="$LOGS/parallel-libfuzzer-$t.log"
    LF_STAMP="$LOGS/.parallel-libfuzzer-$t.start"
    touch "$LF_STAMP"
    before=$(count_files "fuzz/corpus/$t")
    # Fork mode: JOBS child processes fuzz subsets of the corpus for a few seconds each and the
    # parent merges what they found into the first corpus directory. Crashes, timeouts and OOMs
    # are saved and the campaign goes on.
    local args=("${LIBFUZZER_ARGS[@]}" -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1
        -artifact_prefix="$ROOT/fuzz/artifacts/$t/")
    [ -n "$secs" ] && args+=(-max_total_time="$secs")
    echo "== libFuzzer+ASan, fork mode: $t on $jobs jobs for ${secs:-unlimited (Ctrl-C stops)} s (log: ${LF_LOG#"$ROOT"/})"
    start_group "$LF_LOG" "$FUZZ_BIN/$t" "${args[@]}" "$ROOT/fuzz/corpus/$t" "$ROOT/corpora/$t"
    local pid="${GROUPS_STARTED[-1]}"
    supervise libfuzzer_status "$secs"
    # An interrupted fork-mode parent leaves its jobs' directory behind.
    rm -rf "/tmp/libFuzzerTemp.FuzzWithFork$pid.dir"
    read -r n cov ft corp eps crashes <<<"$(libfuzzer_stats)"
    crashes=$(new_artifacts | wc -l)
    first="$(new_artifacts | head -1)"
    ROWS+=("$t|libFuzzer+ASan x$jobs|$n|$eps|$cov|$ft|$corp|$(($(count_files "fuzz/corpus/$t") - before))|$crashes|$first|fuzz/artifacts/$t/")
    summary_and_corpus "$t"
}

summary_and_corpus() {
    local rc=0
    summary || rc=$?
    echo "corpus: fuzz/corpus/$1 ($(count_files "fuzz/corpus/$1") inputs); next: just cmin $1, just coverage $1"
    return $rc
}

# ---- AFL++: one main, secondaries ---------------------------------------------------------------

AFL_OUT=""
AFL_NAMES=()

# Where cargo-afl built AFL++ for the default toolchain (its bin/ and afl-llvm/).
afl_home() {
    local v h d
    v="$(rustc -vV | sed -n 's/^release: //p')"
    h="$(rustc -vV | sed -n 's/^commit-hash: //p' | cut -c1-7)"
    d="$(find "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/rustc-$v-$h" -maxdepth 1 -name 'afl.rs-*' 2>/dev/null | sort -V | tail -1)"
    [ -n "$d" ] || die "no AFL++ built by cargo-afl for rustc $v (cargo afl config --build)"
    echo "$d"
}

# Whether this AFL++ build has CmpLog instrumentation: cargo-afl adds it only when its LLVM
# plugins were built (`cargo +nightly afl config --build --plugins`) and the targets are built
# with nightly; otherwise the cmplog fork server cargo-afl's `-c0` asks for runs the plain binary
# and finds nothing, so the instances are told `-c -`.
afl_has_cmplog() { [ -f "$(afl_home)/afl-llvm/cmplog-instructions-pass.so" ]; }

# The variants AFL++'s docs (fuzzing_in_depth.md, "Using multiple cores") recommend, one per
# instance in this order: a different power schedule each; CmpLog following transformations on
# the first secondary (when built with it); about half without trimming (AFL_DISABLE_TRIM); MOpt
# (-L 0) and old queue cycling (-Z) on one each; -P explore and -P exploit; one without the
# dictionary and one with -a binary. Prints "name|afl-fuzz flags|environment" for instance $1.
afl_variant() {
    local i="$1" cmplog="-c -"
    if [ "$i" -eq 0 ]; then
        echo "main|-M main -p explore -F $ROOT/fuzz/corpus/$AFL_T -x $ROOT/corpora/hakmem.dict -c -|AFL_FINAL_SYNC=1"
        return
    fi
    afl_has_cmplog && cmplog="-l 2AT"
    local v=(
        "fast|-p fast -x $ROOT/corpora/hakmem.dict $cmplog|AFL_DISABLE_TRIM=1"
        "coe|-p coe -P explore -x $ROOT/corpora/hakmem.dict -c -|AFL_DISABLE_TRIM=1"
        "lin|-p lin -L 0 -c -|"
        "quad|-p quad -P exploit -x $ROOT/corpora/hakmem.dict -c -|AFL_DISABLE_TRIM=1"
        "exploit|-p exploit -Z -x $ROOT/corpora/hakmem.dict -c -|"
        "rare|-p rare -a binary -x $ROOT/corpora/hakmem.dict -c -|AFL_DISABLE_TRIM=1"
        "mmopt|-p mmopt -P explore -x $ROOT/corpora/hakmem.dict -c -|"
        "seek|-p seek -x $ROOT/corpora/hakmem.dict -c -|AFL_DISABLE_TRIM=1"
    )
    local k=$(((i - 1) % ${#v[@]}))
    IFS='|' read -r name flags env <<<"${v[$k]}"
    [ "$i" -gt "${#v[@]}" ] && name="$name$(((i - 1) / ${#v[@]} + 1))"
    echo "$name|-S $name $flags|$env"
}

AFL_T=""

# One fuzzer_stats field of instance $1 ("" before the file exists).
afl_field() {
    local v
    v="$(awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "$AFL_OUT/$1/fuzzer_stats" 2>/dev/null)"
    echo "${v:-0}"
}

# Totals over the instances: "execs exec/s edges total_edges main_corpus crashes instances_reporting",
# exec/s being all executions over the time since the first instance started.
afl_totals() {
    local name execs=0 edges=0 total=0 corpus=0 crashes=0 seen=0 e start=0 last=0
    for name in "${AFL_NAMES[@]}"; do
        [ -f "$AFL_OUT/$name/fuzzer_stats" ] || continue
        seen=$((seen + 1))
        execs=$((execs + $(afl_field "$name" execs_done)))
        e=$(afl_field "$name" start_time)
        [ "$start" -eq 0 ] || [ "$e" -lt "$start" ] && start=$e
        e=$(afl_field "$name" last_update)
        [ "$e" -gt "$last" ] && last=$e
        e=$(afl_field "$name" edges_found)
        [ "$e" -gt "$edges" ] && edges=$e
        total=$(afl_field "$name" total_edges)
        crashes=$((crashes + $(afl_field "$name" saved_crashes)))
        [ "$name" = main ] && corpus=$(afl_field main corpus_count)
    done
    echo "$execs $((execs / (last > start ? last - start : 1))) $edges $total $corpus $crashes $seen"
}

afl_status() {
    local execs eps edges total corpus crashes seen
    read -r execs eps edges total corpus crashes seen <<<"$(afl_totals)"
    [ "$seen" -eq 0 ] && { echo "AFL++ $AFL_T: calibrating the seeds"; return; }
    echo "AFL++ $AFL_T x${#AFL_NAMES[@]}: $execs execs, $eps exec/s, edges $edges/$total ($(pct "$edges" "$total")), corpus $corpus (main), crashes $crashes"
}

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }'; }

run_afl() {
    local t="$1" jobs="$2" secs="${3:-}" i name flags env before
    AFL_T="$t"
    build_afl
    build_libfuzzer "$t" # for merging the queues into the libFuzzer corpus at the end
    local in="fuzz/afl/in/$t"
    AFL_OUT="$ROOT/fuzz/afl/out/$t"
    # A fresh copy of the seeds (afl-fuzz hard-links its inputs into its queue) and a fresh sync
    # directory: what earlier runs found comes in through the libFuzzer corpus (-F on the main).
    rm -rf "$in" "$AFL_OUT"
    mkdir -p "$in" "$LOGS" "$AFL_OUT" "fuzz/corpus/$t" "fuzz/artifacts/$t"
    cp "corpora/$t"/* "$in/"
    before=$(count_files "fuzz/corpus/$t")
    afl_has_cmplog || echo "== CmpLog: this cargo-afl has no LLVM plugins, so no instance runs CmpLog (see afl_has_cmplog)"
    # AFL++ has no deadline for a group of instances: each gets -V. Stats every STATUS_EVERY s.
    local common=(-i "$ROOT/$in" -o "$AFL_OUT" -t 10000)
    [ -n "$secs" ] && common+=(-V "$secs")
    AFL_NAMES=()
    for ((i = 0; i < jobs; i++)); do
        IFS='|' read -r name flags env <<<"$(afl_variant "$i")"
        AFL_NAMES+=("$name")
        local log="$LOGS/parallel-afl-$t-$name.log"
        echo "== AFL++ $name: cargo afl fuzz $flags${env:+ ($env)} (log: ${log#"$ROOT"/})"
        # The AFL++ build has no ASan, and afl-fuzz refuses ASAN_OPTIONS without abort_on_error.
        # shellcheck disable=SC2086 # flags and env are word lists
        start_group "$log" env -u ASAN_OPTIONS AFL_FUZZER_STATS_UPDATE_INTERVAL="$STATUS_EVERY" AFL_TESTCACHE_SIZE=50 $env \
            cargo afl fuzz "${common[@]}" $flags "$ROOT/fuzz/afl/target/release/$t"
    done
    echo "== AFL++: $t on $jobs instances for ${secs:-unlimited (Ctrl-C stops)} s, sync directory ${AFL_OUT#"$ROOT"/}"
    supervise afl_status "$secs"

    # Crashes into fuzz/artifacts/TARGET, where the other tools look for them, named by the run
    # (the next run starts its ids at 0 again).
    local c crashes=0 first="" run
    run="$(date -d "@$(afl_field main start_time)" +%Y%m%d-%H%M%S 2>/dev/null || date +%Y%m%d-%H%M%S)"
    for name in "${AFL_NAMES[@]}"; do
        for c in "$AFL_OUT/$name"/crashes/id:*; do
            [ -f "$c" ] || continue
            local dest
            dest="fuzz/artifacts/$t/afl-$run-$name-$(basename "$c" | cut -d, -f1 | tr : -)"
            cp "$c" "$dest"
            crashes=$((crashes + 1))
            [ -n "$first" ] || first="$dest"
        done
    done
    # One row per instance, then the whole run.
    local execs eps edges total corpus
    for name in "${AFL_NAMES[@]}"; do
        if [ ! -f "$AFL_OUT/$name/fuzzer_stats" ]; then
            ROWS+=("$t|AFL++ $name|-|-|-|-|-|-|FAILED|$LOGS/parallel-afl-$t-$name.log")
            continue
        fi
        ROWS+=("$t|AFL++ $name|$(afl_field "$name" execs_done)|$(afl_field "$name" execs_per_sec)|$(afl_field "$name" bitmap_cvg)|-|$(afl_field "$name" corpus_count)|$(afl_field "$name" corpus_found)|$(afl_field "$name" saved_crashes)|$AFL_OUT/$name/crashes")
    done
    read -r execs eps edges total corpus _ _ <<<"$(afl_totals)"
    echo
    echo "== merging the AFL++ queues into fuzz/corpus/$t (libFuzzer -merge=1: only entries that add coverage)"
    local mlog="$LOGS/parallel-afl-$t-merge.log"
    "$FUZZ_BIN/$t" -merge=1 -timeout=10 "$ROOT/fuzz/corpus/$t" "$AFL_OUT"/*/queue >"$mlog" 2>&1 \
        || die "merging the queues failed (log: ${mlog#"$ROOT"/})"
    grep -h '^MERGE-OUTER: [0-9]* new files' "$mlog" || true
    ROWS+=("$t|AFL++ x$jobs|$execs|$eps|$(pct "$edges" "$total")|-|$corpus|$(($(count_files "fuzz/corpus/$t") - before))|$crashes|$first|fuzz/artifacts/$t/afl-*")
    echo "(AFL++ rows: cov is bitmap coverage; the x$jobs row's cov is the main's edges after its final sync,"
    echo " its corpus the main's queue, its new the entries the merge added to fuzz/corpus/$t)"
    summary_and_corpus "$t"
}

# ---- cmin --------------------------------------------------------------------------------------

# "cov ft inputs" of libFuzzer's first pass over the directories given (no fuzzing).
libfuzzer_cov() {
    local t="$1"
    shift
    "$FUZZ_BIN/$t" -runs=0 "$@" 2>&1 | awk '/INITED|DONE/ && / cov: / { for (i = 1; i <= NF; i++) { if ($i == "cov:") c = $(i+1); if ($i == "ft:") f = $(i+1); if ($i == "corp:") k = $(i+1) } }
        END { split(k, a, "/"); print (c == "" ? 0 : c), (f == "" ? 0 : f), (a[1] == "" ? 0 : a[1]) }'
}

run_cmin() {
    local t="$1"
    build_libfuzzer "$t"
    local work="$ROOT/fuzz/cmin/$t"
    local pool="$work/pool" listings="$work/listings"
    rm -rf "$work"
    mkdir -p "$pool" "$listings" "fuzz/corpus/$t" "$LOGS"
    # The pool: the libFuzzer corpus and every AFL++ queue entry, named by content (libFuzzer's
    # naming) so that the same input from both engines counts once.
    local f queues=0
    for f in "fuzz/corpus/$t"/* "fuzz/afl/out/$t"/*/queue/id:*; do
        [ -f "$f" ] || continue
        case "$f" in fuzz/afl/*) queues=$((queues + 1)) ;; esac
        cp "$f" "$pool/$(sha1sum "$f" | cut -c1-40)"
    done
    local n_pool
    n_pool=$(count_files "$pool")
    [ "$n_pool" -gt 0 ] || die "nothing to minimize: fuzz/corpus/$t is empty and there is no AFL++ queue (run just fuzz-parallel $t N first)"
    echo "== pool: $n_pool distinct inputs ($(count_files "fuzz/corpus/$t") in fuzz/corpus/$t, $queues AFL++ queue entries)"
    local cov0 ft0 cov1 ft1
    read -r cov0 ft0 _ <<<"$(libfuzzer_cov "$t" "$pool")"

    # libFuzzer's minimization: the fewest inputs with every feature (edges and hit counts).
    local lf="$work/libfuzzer"
    cp -r "$pool" "$lf"
    echo "== cargo fuzz cmin $t (log: fuzz/logs/cmin-$t.log)"
    (cd fuzz && cargo +nightly fuzz cmin "${CARGO_FUZZ_FLAGS[@]}" "$t" "$lf" -- -timeout=10) >"$LOGS/cmin-$t.log" 2>&1 \
        || die "cargo fuzz cmin failed (log: fuzz/logs/cmin-$t.log)"
    echo "   kept $(count_files "$lf") of $n_pool"

    # AFL++'s, by its own edge map, when there is an AFL++ side to keep.
    local afl="$work/afl"
    if [ "$queues" -gt 0 ]; then
        build_afl
        echo "== afl-cmin $t (log: fuzz/logs/afl-cmin-$t.log)"
        # The shell version: `cargo afl cmin` runs AFL++ 4.40c's Python afl-cmin, which records
        # no tuple for these targets' inputs (it keeps nothing), where afl-cmin.bash works.
        env -u ASAN_OPTIONS "$(afl_home)/afl/bin/afl-cmin.bash" -i "$pool" -o "$afl" -t 10000 -- "$ROOT/fuzz/afl/target/release/$t" \
            >"$LOGS/afl-cmin-$t.log" 2>&1 || die "afl-cmin failed (log: fuzz/logs/afl-cmin-$t.log)"
        tr '\r' '\n' <"$LOGS/afl-cmin-$t.log" | sed 's/\x1b\[[0-9;]*m//g' | grep 'unique tuples\|Narrowed down' | sed 's/^/   /' || true
    fi

    # The minimized set: the union of both, so that it keeps each engine's coverage.
    local min="$work/minimized"
    mkdir -p "$min"
    cp "$lf"/* "$min/"
    [ -d "$afl" ] && cp "$afl"/* "$min/" 2>/dev/null
    read -r cov1 ft1 _ <<<"$(libfuzzer_cov "$t" "$min")"
    rm -rf "fuzz/corpus/$t"
    cp -r "$min" "fuzz/corpus/$t"

    # As program listings, the form corpora/ keeps (see corpora/README.md).
    cargo build -q --profile fuzz-replay -p hakmem-fuzz --bin replay
    local ok=0 bad=0
    for f in "$min"/*; do
        if target/fuzz-replay/replay --target "$t" --list "$f" >"$listings/$(basename "$f").prog" 2>/dev/null; then
            ok=$((ok + 1))
        else
            rm -f "$listings/$(basename "$f").prog"
            bad=$((bad + 1))
        fi
    done
    rm -rf "$pool" "$lf"
    echo
    echo "cmin $t: kept $(count_files "$min") of $n_pool inputs"
    echo "  libFuzzer's coverage of the pool: $cov0 edges, $ft0 features; of the kept set: $cov1 edges, $ft1 features"
    echo "  fuzz/corpus/$t is now the minimized set"
    echo "  listings: ${listings#"$ROOT"/}/ ($ok programs; $bad inputs the decoder rejects have none)"
    echo "  a listing worth keeping becomes a seed program in fuzz/harness/src/seeds.rs (then just seed)"
    # Two passes over the same inputs differ by a few edges (the threads of the free-running
    # target, lazily initialized state), so only a loss beyond 1% counts.
    [ $((cov1 * 100)) -ge $((cov0 * 99)) ] || die "the minimized set lost coverage ($cov1 < $cov0 edges)"
}

usage() { sed -n '2,17p' "$0"; exit 2; }

cmd="${1:-}"
[ $# -ge 2 ] || usage
shift
check_target "$1"
ROWS=()
case "$cmd" in
libfuzzer | afl)
    [ $# -ge 2 ] || usage
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive number, not '$2'"
    [ -z "${3:-}" ] || [[ "$3" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive number, not '$3'"
    [ "$2" -le "$(nproc)" ] || echo "== note: $2 jobs on $(nproc) cores: they will share them"
    "run_$cmd" "$@"
    ;;
cmin) run_cmin "$1" ;;
*) usage ;;
esac
