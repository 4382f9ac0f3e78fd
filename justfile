# hakmem: every job a user or CI runs. `just --list` shows them.

# Side-by-side benchmark, then a real program under the preload library (the README's main job).
main: bench preload-demo

# The whole test suite: unit, quickcheck, stress, global allocator and LD_PRELOAD program tests.
test:
    cargo test --workspace

# Core unit tests under Miri (the OS layer uses the Rust allocator there instead of mmap).
miri:
    bash scripts/setup.sh miri
    MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p hakmem --lib

# ThreadSanitizer with an instrumented std: hakmem's tests, the sanitizer stress tests and the
# free-running fuzz target must be clean, and a Relaxed remote-free queue must be reported.
tsan:
    bash sanitizers/tsan.sh

# Benchmark hakmem against the system allocator in one process (ratios; see bench/ for flags).
bench *FLAGS:
    cargo run --release -q -p hakmem-bench -- {{FLAGS}}

# A few seconds of every benchmark workload; CI's check that the benchmark still runs.
bench-smoke:
    cargo run --release -q -p hakmem-bench -- --quick

# Instruction counts per malloc/free pair under callgrind.
callgrind *ALLOCATORS:
    bash scripts/callgrind.sh {{ALLOCATORS}}

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
