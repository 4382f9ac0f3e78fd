#!/bin/bash -eu
# Builds hakmem's fuzz targets for ClusterFuzzLite or OSS-Fuzz: run by the builder image with
# $SRC (the checkout is $SRC/hakmem) and $OUT set; `just cflite-check` runs it here with both set
# to temporary folders. For each target of fuzz/ ($OUT/TARGET): the libFuzzer binary, its seed
# corpus (corpora/TARGET: the seed programs and every regression listing, encoded by `just seed`)
# as TARGET_seed_corpus.zip, the dictionary as TARGET.dict, and TARGET.options.
set -o pipefail

repo="$SRC/hakmem"
cd "$repo/fuzz"

# The project's fuzz build (scripts/fuzz-common.sh): release with debug assertions and overflow
# checks (-O alone would drop them, and the harness's checks of a reset heap with them), without
# trace-compares instrumentation (the input decoder has no magic values; the dictionary holds the
# size-class edges). The builder images choose the toolchain (RUSTUP_TOOLCHAIN) and sanitizer.
cargo fuzz build -O --debug-assertions --no-trace-compares

bin_dir="${CARGO_TARGET_DIR:-$repo/fuzz/target}/x86_64-unknown-linux-gnu/release"
# The [[bin]] names (the package's own name has hyphens, which the pattern leaves out).
targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml)
[ -n "$targets" ] || { echo "build.sh: no [[bin]] targets in fuzz/Cargo.toml" >&2; exit 1; }

for t in $targets; do
    cp "$bin_dir/$t" "$OUT/$t"
    seeds="$repo/corpora/$t"
    if [ -z "$(ls -A "$seeds" 2>/dev/null)" ]; then
        echo "build.sh: no seed corpus in corpora/$t (just seed)" >&2
        exit 1
    fi
    rm -f "$OUT/${t}_seed_corpus.zip"
    (cd "$seeds" && zip -q -r "$OUT/${t}_seed_corpus.zip" .)
    cp "$repo/corpora/hakmem.dict" "$OUT/$t.dict"
    # A hang is a deadlocked heap lock: 10 s, not libFuzzer's 20 min. Stack-use-after-return
    # detection costs a fake frame per call and guards nothing the harness does.
    cat >"$OUT/$t.options" <<EOF
[libfuzzer]
dict = $t.dict
timeout = 10

[asan]
detect_stack_use_after_return = 0
EOF
done
echo "build.sh: $(echo "$targets" | wc -w) targets in $OUT: $(echo "$targets" | tr '\n' ' ')"
