#!/usr/bin/env bash
# `just bench` and `just bench-smoke`: hakmem-bench with the given flags, after what its C suite
# needs: the Debian packages of the peers (mimalloc, jemalloc, tcmalloc) and of the real programs
# (sqlite3, python3, sort, gcc), and this tree's preload libraries (libhakmem.so,
# libhakmem_checked.so, which hakmem-bench finds beside its own binary). The C programs of
# bench/c/ are compiled by the bench crate's build script. `--suite rust` needs none of this and
# skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

rust_only=""
prev=""
for a in "$@"; do
    { [ "$a" = "--suite=rust" ] || { [ "$prev" = "--suite" ] && [ "$a" = rust ]; }; } && rust_only=1
    prev=$a
done
if [ -z "$rust_only" ]; then
    ensure_debs gcc libc6-dev mawk sqlite3 python3 coreutils \
        libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4
    cargo build --release -q -p hakmem-preload -p hakmem-preload-checked
fi
exec cargo run --release -q -p hakmem-bench -- "$@"
