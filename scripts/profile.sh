#!/usr/bin/env bash
# Where one Rust-suite workload spends its time under one allocator, by sampling.
# Usage: scripts/profile.sh WORKLOAD [ALLOCATOR [ROUNDS]]   (`just profile xmalloc-like jemalloc`)
#
# perf samples the cpu-clock software event, which works on these machines although their
# hardware counters do not: it charges time, stalls included, to the instruction that was
# waiting, so it shows where cross-core misses land, which callgrind's instruction counts
# cannot. The bench's own table comes first: its `rtt ns` column says whether the two CPUs
# were near or far apart (see bench/src/placement.rs), and the profiles of the two differ.
# The profile is kept in target/profile/WORKLOAD-ALLOCATOR.data for `perf annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
workload=${1:?usage: scripts/profile.sh WORKLOAD [ALLOCATOR [ROUNDS]]}
alloc=${2:-hakmem}
rounds=${3:-3}
ensure_debs linux-perf
cargo build --release -q -p hakmem-bench
mkdir -p target/profile
data=target/profile/$workload-$alloc.data
perf record -q -e cpu-clock -F 10000 -g -o "$data" \
    target/release/hakmem-bench --suite rust --only "$workload" --alloc "$alloc" --rounds "$rounds" --no-rss
echo
echo "== where the time went (whole process, functions over 1%)"
perf report -i "$data" --no-children --stdio -g none --percent-limit 1 2>/dev/null | grep -v -e '^#' -e '^$'
echo
echo "kept: $data (perf annotate -i $data --stdio -s SYMBOL shows the hot instructions)"
