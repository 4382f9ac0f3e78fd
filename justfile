# hakmem: every job a user or CI runs. `just --list` shows them.

# Main job (README): fuzz campaign, each target SECONDS under libFuzzer+ASan, then a summary table.
main SECONDS="20":
    bash scripts/fuzz.sh campaign {{SECONDS}}

# The whole test suite: unit, quickcheck, stress, global allocator and LD_PRELOAD program tests.
test:
    cargo test --workspace

# Core unit tests under Miri (the OS layer uses the Rust allocator there instead of mmap).
miri:
    bash scripts/setup.sh miri
    MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p hakmem --lib

# AddressSanitizer (LeakSanitizer included) with an instrumented std and hakmem poisoning its free
# slots, headers and tails: all tests and fuzz targets clean, control tests reported.
asan:
    bash sanitizers/asan.sh

# LeakSanitizer alone (no std rebuild): tests leak nothing, a deliberately leaked Box is reported.
lsan:
    bash sanitizers/lsan.sh

# ThreadSanitizer with an instrumented std: hakmem's tests, the sanitizer stress tests and the
# free-running fuzz target must be clean, and a Relaxed remote-free queue must be reported.
tsan:
    bash sanitizers/tsan.sh

# The Rust suite: hakmem, system, mimalloc, jemalloc, snmalloc through GlobalAlloc in one process.
# The C suite: C programs and sqlite3, python3, sort, gcc, each a process under LD_PRELOAD of
# hakmem, glibc and Debian's mimalloc, jemalloc and tcmalloc (installed here). A full run takes
# about 12 minutes. FLAGS go to hakmem-bench (`just bench --help`): `--suite c`, `--only larson`.
# Both benchmark suites, then bench/results/latest.{md,json,png} and latest-c.png.
bench *FLAGS:
    bash scripts/bench.sh {{FLAGS}}

# A few seconds of every Rust workload and one quick round of every C benchmark, outputs checked.
# CI's check that both suites still run (under two minutes after the builds and packages).
bench-smoke:
    bash scripts/bench.sh --quick

# Instruction counts per malloc/free pair under callgrind.
callgrind *ALLOCATORS:
    bash scripts/callgrind.sh {{ALLOCATORS}}

# Where one Rust-suite workload spends its time (perf's cpu-clock sampling, stalls included).
profile WORKLOAD ALLOCATOR="hakmem" ROUNDS="3":
    bash scripts/profile.sh {{WORKLOAD}} {{ALLOCATOR}} {{ROUNDS}}

# Checked mode vs glibc, its debug malloc, Scudo, mimalloc, ASan: cost, misuses caught (bench/results/checked-compare.md).
checked-compare:
    bash scripts/checked-compare.sh

# Build the C drop-in: target/release/libhakmem.so
preload:
    cargo build --release -q -p hakmem-preload
    @echo "built $(pwd)/target/release/libhakmem.so"

# Run python3 under the preload library and print hakmem's statistics at exit.
preload-demo: preload
    HAKMEM_STATS=1 LD_PRELOAD=$(pwd)/target/release/libhakmem.so python3 -c \
        "d = {str(i): 'x' * (i % 300) for i in range(300000)}; print('python3 under hakmem:', len(d), 'keys,', sum(map(len, d.values())), 'bytes of values')"

# Run any command under the preload library, e.g. `just run-preloaded git status`.
run-preloaded *CMD: preload
    LD_PRELOAD=$(pwd)/target/release/libhakmem.so {{CMD}}

# Targets: deterministic, free_running, misuse. ARGS go to libFuzzer (e.g. -max_total_time=60).
# Fuzz one TARGET under libFuzzer+ASan until stopped (new corpus entries in fuzz/corpus/TARGET).
fuzz TARGET *ARGS:
    bash scripts/fuzz.sh run {{TARGET}} {{ARGS}}

# Fuzz one target under AFL++ for SECONDS.
fuzz-afl TARGET SECONDS="60":
    bash scripts/fuzz.sh afl {{TARGET}} {{SECONDS}}

# Campaigns on several cores (README, "Campaigns"): status every few seconds, a clean stop at the
# deadline or on Ctrl-C, the corpus merged into fuzz/corpus/TARGET, a summary.
# Long campaigns want every core: libFuzzer+ASan fork mode on JOBS cores (until Ctrl-C without SECONDS).
fuzz-parallel TARGET JOBS SECONDS="":
    bash scripts/campaign.sh libfuzzer {{TARGET}} {{JOBS}} {{SECONDS}}

# AFL++ on JOBS cores: the main and differently tuned secondaries (the docs' variants) find more than copies.
fuzz-afl-parallel TARGET JOBS SECONDS="":
    bash scripts/campaign.sh afl {{TARGET}} {{JOBS}} {{SECONDS}}

# A grown corpus slows every run that loads it: keep the fewest inputs with the same coverage (cargo fuzz cmin, afl-cmin).
cmin TARGET:
    bash scripts/campaign.sh cmin {{TARGET}}

# To see what a corpus never reaches: per-file line coverage of hakmem/src, HTML in target/coverage/TARGET.
coverage TARGET *DIRS:
    bash scripts/coverage.sh {{TARGET}} {{DIRS}}

# What fuzzing and tests reach together (target/coverage/all); `--committed`: what the committed corpora alone reach.
coverage-all *FLAGS:
    bash scripts/coverage.sh all {{FLAGS}}

# Docker does not run here: build.sh runs with temporary $SRC/$OUT, then $OUT's targets and the YAML are checked.
cflite-check:
    bash scripts/cflite-check.sh

# Print fuzz inputs as readable programs and re-run them in the fuzz build's configuration (debug
# assertions, overflow checks), then in the fuzz target itself (ASan), printing what each found;
# `--target misuse` for misuse inputs kept outside a misuse directory, `--save X.prog` keeps the
# listing.
replay +ARGS:
    @bash scripts/fuzz.sh replay {{ARGS}}

# The history-independence check: every seed and regression run alone, after the whole corpus,
# and after it shuffled, must give the same trace (`just history deterministic=fuzz/corpus/deterministic`
# for a grown corpus).
history *ARGS:
    @cargo run -q --release -p hakmem-fuzz --bin history -- {{ARGS}}

# The harness's own executions per second over a corpus, with no fuzzer (for profiling);
# e.g. `just fuzz-rate --each deterministic=fuzz/corpus/deterministic`.
fuzz-rate *ARGS:
    @cargo run -q --release -p hakmem-fuzz --bin exec_rate -- {{ARGS}}

# Minimize a failing input: by its structure (steps, the blocks they make, schedules, knobs) in
# the fuzz build's configuration, confirmed by the fuzz target; writes FILE.min and FILE.min.prog.
tmin TARGET FILE:
    bash scripts/fuzz.sh tmin {{TARGET}} {{FILE}}

# Minimize a crashing input with afl-tmin, then print it as a program.
afl-tmin TARGET FILE:
    bash scripts/fuzz.sh afl-tmin {{TARGET}} {{FILE}}

# Builds every target for both engines, runs each 30 s (libFuzzer) and 10 s (AFL++).
# CI's fuzz job: build, run every target under both engines, replay seeds and regressions.
fuzz-smoke:
    bash scripts/fuzz.sh smoke

# The fault catalog's check: build each planted fault (hakmem/Cargo.toml, `fault-*`), run the
# detectors that must find it from the committed seeds, print a table; non-zero if one is missed.
# e.g. `just faults`, `just faults drain-keeps-queue --runs 5`, `just faults --tests`.
faults *ARGS:
    bash scripts/faults.sh {{ARGS}}

# CI's share of the catalog, one run each, without the TSan rebuild: one fault per kind of
# finding (model and checked heap, happens-before, a schedule inside a drain, a lock held across
# fork, misuse, history independence, the C entry points' own paths).
faults-ci:
    bash scripts/faults.sh --runs 1 --detectors deterministic,misuse,history calloc-trusts-dirty-slab remote-push-relaxed drain-not-atomic fork-skips-spares-lock tail-check-off-by-one reset-keeps-large-cache malloc-mid-rounds-down

# Rewrite corpora/<target>/ from the seed programs in fuzz/harness/src/seeds.rs.
seed:
    cargo run -q -p hakmem-fuzz --bin seed
