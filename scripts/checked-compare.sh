#!/usr/bin/env bash
# hakmem's checked mode side by side with the hardened and debug allocators C programs already use
# (`just checked-compare`): per allocator, the cost of an allocation churn, how many of nine
# misuses it catches, and the cost of an sqlite3 session, relative to glibc's malloc. Prints a
# markdown report and writes it to bench/results/checked-compare.md; the raw logs (every run's
# stdout and stderr, the callgrind files) stay in a temp dir whose path is printed.
#
# Churn (bench/c/churn.c): one thread, 1000 slots; an op picks a random slot, frees the block there
# and mallocs one of 8 to 1024 bytes (fixed-seed xorshift64, drawn before the loop), writing its
# first and last byte. instr/op is counted by callgrind with --toggle-collect=churn_loop (only the
# loop and what it calls: start-up, drawing the ops, the final frees and exit are not counted),
# less churn_loop's own instructions (17 an op, the same in every row: the loop, the calls and
# their PLT jumps), divided by the ops: what malloc and free cost per op, as "above an empty loop".
# Allocators that cannot run under valgrind get the loop's CPU time instead: ASan (an
# instrumented build) and Scudo (it reserves 180 GiB of address space at start; valgrind 3.19
# gives its client about 64 GiB). The CPU-time column, for every row, is the median of TIME_RUNS
# interleaved runs of TIME_OPS ops over glibc's median: wall-clock noise on a shared machine, so
# read it coarsely.
#
# Misuses (hakmem/preload/tests/c/misuse.c, the same program tests/checked_preload.rs runs; argv[1]
# picks one): after the misuse the program goes on allocating and freeing, then exits 0, so an
# allocator that checks a slot only when it hands it out again gets its chance. Caught = the run
# dies by a signal or exits non-zero (the clean run, with no argument, must exit 0; a run that
# hangs is killed after 30 s and counts as missed); the table keeps the first line it printed to
# stderr. ASan runs the same sources built with
# -fsanitize=address (leak detection off: a leak is none of the nine).
#
# sqlite3 (Debian's CLI, bench/real/sqlite-session.awk): SQLITE_ROWS inserts of varied text in one
# transaction into an in-memory database, then three aggregating SELECTs; the whole process's
# instructions under callgrind over glibc's (Scudo: CPU time, as above; ASan: not measured, sqlite3
# is not instrumented). Every allocator must print what glibc printed.
#
# Left out: hardened_malloc (not packaged in Debian). mimalloc is Debian's release build (no debug
# or secure build is packaged), a reference row. "hakmem checked, guard sampling" sets
# HAKMEM_GUARD_SAMPLE=1 (guard-page sampling; a library without it ignores the variable).
#
# Environment:
#   HAKMEM_LIB_DIR        directory holding libhakmem.so and libhakmem_checked.so (default: build
#                         both from this tree into ${CARGO_TARGET_DIR:-target}/release)
#   CHURN_OPS             churn ops under callgrind (default 1000000)
#   TIME_OPS, TIME_RUNS   churn ops and runs of each CPU-time measurement (default 10000000, 5)
#   SQLITE_ROWS           rows the sqlite3 session inserts (default 100000)
#   CHECKED_COMPARE_LOGS  where the raw logs go (default: a new temp dir)
#   CHECKED_COMPARE_OUT   the report (default bench/results/checked-compare.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
started=$(date +%s)

ensure_debs gcc libc6-dev valgrind sqlite3 libclang-rt-19-dev libmimalloc2.0

churn_ops=${CHURN_OPS:-1000000}
time_ops=${TIME_OPS:-10000000}
time_runs=${TIME_RUNS:-5}
sql_rows=${SQLITE_ROWS:-100000}
report=${CHECKED_COMPARE_OUT:-bench/results/checked-compare.md}
logs=${CHECKED_COMPARE_LOGS:-$(mktemp -d /tmp/checked-compare.XXXXXX)}
mkdir -p "$logs/bin"
logs=$(cd "$logs" && pwd)
echo "checked-compare: raw logs in $logs"
ulimit -c 0
status=0
limit=300

if [ -n "${HAKMEM_LIB_DIR:-}" ]; then
    libdir=$(cd "$HAKMEM_LIB_DIR" && pwd)
else
    cargo build --release -q -p hakmem-preload -p hakmem-preload-checked
    libdir=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)
fi
for so in libhakmem.so libhakmem_checked.so; do
    [ -f "$libdir/$so" ] || { echo "checked-compare: no $so in $libdir" >&2; exit 1; }
done

deb_file() { # the file of Debian package $1 whose path ends in $2
    local f
    f=$(dpkg -L "$1" | grep -- "$2\$") || { echo "checked-compare: $1 ships no $2" >&2; exit 1; }
    echo "${f%%$'\n'*}"
}
scudo=$(deb_file libclang-rt-19-dev /libclang_rt.scudo_standalone-x86_64.so)
mimalloc=$(deb_file libmimalloc2.0 /libmimalloc.so.2)
malloc_debug=$(deb_file libc6 /libc_malloc_debug.so.0)
version() { dpkg-query -W -f='${Version}' "$1" | sed 's/^[0-9]*://; s/[-+~].*//'; }

# The rows: a label for each table, what to preload, extra environment.
names=(glibc glibc-debug scudo mimalloc asan hakmem hakmem-guard hakmem-checked hakmem-checked-guard)
declare -A label preload envs
label[glibc]="glibc $(version libc6) malloc"
label[glibc-debug]="glibc debug (libc_malloc_debug.so.0, glibc.malloc.check=3)"
label[scudo]="Scudo (LLVM $(version libclang-rt-19-dev), Debian libclang-rt-19-dev)"
label[mimalloc]="mimalloc $(version libmimalloc2.0) release (Debian ships no debug build)"
label[asan]="ASan (gcc $(gcc -dumpfullversion) -fsanitize=address)"
label[hakmem]="hakmem release"
label[hakmem-checked]="hakmem checked"
label[hakmem-guard]="hakmem release, guard pages (cost: HAKMEM_GUARD_SAMPLE=1000; misuses: =1)"
label[hakmem-checked-guard]="hakmem checked, guard pages (cost: HAKMEM_GUARD_SAMPLE=1000; misuses: =1)"
declare -A short=([glibc]="glibc" [glibc-debug]="glibc debug" [scudo]="Scudo" [mimalloc]="mimalloc release"
    [asan]="ASan" [hakmem]="hakmem release" [hakmem-checked]="hakmem checked"
    [hakmem-guard]="hakmem release, guard pages" [hakmem-checked-guard]="hakmem checked, guard pages")
preload=([glibc]="" [glibc-debug]="$malloc_debug" [scudo]="$scudo" [mimalloc]="$mimalloc" [asan]=""
    [hakmem]="$libdir/libhakmem.so" [hakmem-checked]="$libdir/libhakmem_checked.so"
    [hakmem-guard]="$libdir/libhakmem.so" [hakmem-checked-guard]="$libdir/libhakmem_checked.so")
# The guard rows guard one block in 1000 where cost is measured (the sample a user would run
# with), and every block (1) for the misuses, which then need no luck.
envs=([glibc-debug]="GLIBC_TUNABLES=glibc.malloc.check=3" [asan]="ASAN_OPTIONS=detect_leaks=0")
set_guard_sample() { envs[hakmem-guard]="HAKMEM_GUARD_SAMPLE=$1"; envs[hakmem-checked-guard]="HAKMEM_GUARD_SAMPLE=$1"; }
set_guard_sample 1000
no_valgrind() { [ "$1" = asan ] || [ "$1" = scudo ]; }

# The C programs, plain and ASan builds (misuse.c at the test's -O1).
misuse_src=hakmem/preload/tests/c/misuse.c
gcc -O2 -o "$logs/bin/churn" bench/c/churn.c
gcc -O2 -fsanitize=address -o "$logs/bin/churn-asan" bench/c/churn.c
gcc -O1 -pthread -o "$logs/bin/misuse" "$misuse_src"
gcc -O1 -pthread -fsanitize=address -o "$logs/bin/misuse-asan" "$misuse_src"
bin() { [ "$1" = asan ] && echo "$logs/bin/$2-asan" || echo "$logs/bin/$2"; }

# Sets `with` to the command prefix that runs a program under allocator $1: env with its preload and
# environment (valgrind passes both on to its client).
under() {
    local e
    read -ra e <<<"${envs[$1]:-}"
    [ -z "${preload[$1]}" ] || e+=("LD_PRELOAD=${preload[$1]}")
    with=(env "${e[@]}")
}
# Runs "$@" under allocator $1 with stdout and stderr to $2.out and $2.err, killed after $limit
# seconds; sets rc (124 for a timeout). The subshell keeps bash's "Aborted" notice for a crashed
# run out of the logs and off the terminal.
run_logged() {
    local base=$2
    under "$1"
    shift 2
    rc=0
    ("${with[@]}" timeout "$limit" "$@" >"$base.out" 2>"$base.err"; exit $?) 2>/dev/null || rc=$?
}
# Instructions callgrind counted in file $1 (with --toggle-collect, only the collected part).
cg_total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { # "$1 / $2" as "N.NNx", or "?" unless both are numbers
    [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] || { echo "?"; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'
}
# Runs "$@" with stdout and stderr to $1.out and $1.err; prints its CPU seconds (user + system).
cpu_run() {
    local base=$1 t
    shift
    t=$( { TIMEFORMAT='%3U %3S'; time "$@" >"$base.out" 2>"$base.err"; } 2>&1) || true
    t=${t##*$'\n'}
    awk '{ print $1 + $2 }' <<<"$t"
}

declare -A instr cpu caught missed sqlite
# --- churn under callgrind
echo "checked-compare: churn, $churn_ops ops under callgrind"
loop_self=""
for name in "${names[@]}"; do
    no_valgrind "$name" && continue
    f="$logs/churn.$name.callgrind"
    run_logged "$name" "$logs/churn.$name" valgrind --tool=callgrind --callgrind-out-file="$f" \
        --toggle-collect=churn_loop "$(bin "$name" churn)" "$churn_ops"
    total=$(cg_total "$f" 2>/dev/null || true)
    self=$(callgrind_annotate --inclusive=no "$f" 2>/dev/null |
        awk '/:churn_loop / { gsub(",", "", $1); print $1; exit }' || true)
    if [ "$rc" != 0 ] || [ -z "$total" ] || [ -z "$self" ]; then
        instr[$name]="failed (see churn.$name.err)"
        status=1
        continue
    fi
    instr[$name]=$(awk -v t="$total" -v s="$self" -v n="$churn_ops" 'BEGIN { printf "%.1f", (t - s) / n }')
    loop_self=$(awk -v s="$self" -v n="$churn_ops" 'BEGIN { printf "%.1f", s / n }')
    printf '  %-22s %8s instr/op\n' "$name" "${instr[$name]}"
done

# --- churn CPU time, interleaved runs
echo "checked-compare: churn CPU time, $time_runs x $time_ops ops per allocator"
for run in $(seq "$time_runs"); do
    for name in "${names[@]}"; do
        run_logged "$name" "$logs/time.$name.$run" "$(bin "$name" churn)" "$time_ops"
        if [ "$rc" = 0 ]; then
            sed -n 's/.*loop cpu \([0-9.]*\) s.*/\1/p' "$logs/time.$name.$run.out" >>"$logs/time.$name"
        fi
    done
done
for name in "${names[@]}"; do
    if [ "$(wc -l <"$logs/time.$name" 2>/dev/null || echo 0)" != "$time_runs" ]; then
        cpu[$name]="failed"
        status=1
    else
        cpu[$name]=$(median <"$logs/time.$name")
    fi
done

# --- misuses
misuses=(double-free overflow write-after-free interior remote-double-free stack realloc-after-free
    underflow read-after-free)
declare -A what=([double-free]="double free" [overflow]="1-byte overflow" [write-after-free]="write after free"
    [interior]="interior free" [remote-double-free]="remote double free" [stack]="free of a stack address"
    [realloc-after-free]="realloc of a freed block" [underflow]="1-byte underflow" [read-after-free]="read after free")
declare -A cell
first_line() { # the first line of stderr $1 with a letter or digit in it, ASan's pid dropped
    grep -m1 '[[:alnum:]]' "$1" | sed 's/^==[0-9]*==/==/' | cut -c1-170 | tr '|`' '/'"'" || true
}
echo "checked-compare: ${#misuses[@]} misuses"
set_guard_sample 1
limit=30 # a misuse may leave a free list looping
for name in "${names[@]}"; do
    run_logged "$name" "$logs/misuse.$name.clean" "$(bin "$name" misuse)"
    if [ "$rc" != 0 ]; then
        caught[$name]="clean run failed (exit $rc)"
        status=1
        continue
    fi
    n=0
    silent=0
    missed[$name]=""
    for m in "${misuses[@]}"; do
        run_logged "$name" "$logs/misuse.$name.$m" "$(bin "$name" misuse)" "$m"
        line=$(first_line "$logs/misuse.$name.$m.err")
        line=${line:+\`$line\`}
        if [ "$rc" = 0 ] || [ "$rc" = 124 ]; then # a hang reports nothing either
            cell[$name.$m]="missed$([ "$rc" = 0 ] || echo " (hung: killed after $limit s)") | $line"
            missed[$name]+="${missed[$name]:+, }${what[$m]}"
            continue
        fi
        n=$((n + 1))
        [ -n "$line" ] || silent=$((silent + 1))
        if [ "$rc" -gt 128 ]; then how="SIG$(kill -l $((rc - 128)))"; else how="exit $rc"; fi
        cell[$name.$m]="$how | ${line:-(nothing)}"
    done
    caught[$name]=$n
    [ "$silent" = 0 ] || caught[$name]+=" ($silent silent)"
    printf '  %-22s %s of %d caught\n' "$name" "${caught[$name]}" "${#misuses[@]}"
done

# --- sqlite3
set_guard_sample 1000
echo "checked-compare: sqlite3, $sql_rows inserts"
sql="$logs/sqlite.sql"
awk -v n="$sql_rows" -f bench/real/sqlite-session.awk >"$sql"
sqlite3 :memory: <"$sql" >"$logs/sqlite.expected"
for name in "${names[@]}"; do
    if [ "$name" = asan ]; then
        sqlite[$name]="not measured (sqlite3 is not instrumented)"
        continue
    fi
    if [ "$name" = scudo ]; then
        # CPU time of the whole process, runs interleaved with glibc's, medians.
        bad=""
        for run in $(seq "$time_runs"); do
            for who in glibc scudo; do
                base="$logs/sqlite-time.$who.$run"
                under "$who"
                cpu_run "$base" "${with[@]}" sqlite3 :memory: <"$sql" >>"$logs/sqlite-time.$who"
                cmp -s "$base.out" "$logs/sqlite.expected" || bad=1
            done
        done
        if [ -n "$bad" ]; then
            sqlite[$name]="output differs (see sqlite-time.*.out)"
            status=1
        else
            sqlite[$name]="($(ratio "$(median <"$logs/sqlite-time.scudo")" "$(median <"$logs/sqlite-time.glibc")") glibc's CPU time)"
        fi
        continue
    fi
    f="$logs/sqlite.$name.callgrind"
    base="$logs/sqlite.$name"
    rc=0
    under "$name"
    ("${with[@]}" valgrind --tool=callgrind --callgrind-out-file="$f" sqlite3 :memory: <"$sql" \
        >"$base.out" 2>"$base.err"; exit $?) 2>/dev/null || rc=$?
    total=$(cg_total "$f" 2>/dev/null || true)
    if [ "$rc" != 0 ] || [ -z "$total" ]; then
        sqlite[$name]="failed (see sqlite.$name.err)"
        status=1
    elif ! cmp -s "$base.out" "$logs/sqlite.expected" || grep -q '^hakmem: ' "$base.err"; then
        sqlite[$name]="output differs (see sqlite.$name.out, .err)"
        status=1
    else
        echo "$total" >"$logs/sqlite.$name.total"
        printf '  %-22s %14s instructions\n' "$name" "$total"
    fi
done
for name in "${names[@]}"; do
    [ -e "$logs/sqlite.$name.total" ] || continue
    sqlite[$name]=$(ratio "$(cat "$logs/sqlite.$name.total")" "$(cat "$logs/sqlite.glibc.total")")
done

# --- the report
{
    echo "# hakmem checked mode vs hardened and debug allocators"
    echo
    echo "\`just checked-compare\` (scripts/checked-compare.sh), $(date -u +%Y-%m-%d), hakmem $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- hakmem || echo ' (modified)'), libraries from \`$libdir\`."
    echo "$(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), shared; valgrind $(version valgrind), sqlite3 $(version sqlite3)."
    echo
    echo "| allocator | churn: instr/op (vs glibc) | churn: CPU time vs glibc | misuses caught of ${#misuses[@]} | missed | sqlite3: instructions vs glibc |"
    echo "|---|---:|---:|---:|---|---:|"
    g=${instr[glibc]:-}
    for name in "${names[@]}"; do
        if no_valgrind "$name"; then
            i="— ($(ratio "${cpu[$name]}" "${cpu[glibc]}") glibc's CPU time)"
        elif [[ ${instr[$name]} =~ ^[0-9.]+$ ]]; then
            i="${instr[$name]} ($(ratio "${instr[$name]}" "$g"))"
        else
            i=${instr[$name]}
        fi
        c=$(ratio "${cpu[$name]}" "${cpu[glibc]}")
        echo "| ${label[$name]} | $i | $c | ${caught[$name]} | ${missed[$name]:-—} | ${sqlite[$name]} |"
    done
    echo "| hardened_malloc | left out: not packaged in Debian | | | | |"
    echo
    echo "instr/op: instructions in malloc and free per op (churn_loop's own ${loop_self:-?} an op left out), $churn_ops ops of the churn under callgrind; CPU time: median of $time_runs runs of $time_ops ops, interleaved. Scudo cannot run under valgrind (it reserves 180 GiB of address space; valgrind gives a client about 64 GiB), nor ASan: their instruction columns give CPU time instead."
    echo
    echo "| misuse | allocator | caught | first line on stderr |"
    echo "|---|---|---|---|"
    for m in "${misuses[@]}"; do
        for name in "${names[@]}"; do
            echo "| ${what[$m]} | ${short[$name]} | ${cell[$name.$m]:-not run | } |"
        done
    done
    echo
    echo "Caught: the run died by a signal or exited non-zero (every clean run exits 0; a run still going after $limit s is killed and counts as missed); silent: it died with nothing on stderr (a crash on a corrupted free list, say), which depends on the address layout and may differ from run to run. After the misuse each program goes on allocating and freeing, so detection when a slot is handed out again counts."
} >"$report"
cat "$report"
echo
echo "checked-compare: wrote $report; raw logs in $logs; $(($(date +%s) - started)) s"
exit $status
