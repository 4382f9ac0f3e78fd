#!/usr/bin/env bash
# The main job: a short fuzz campaign (every fuzz target under libFuzzer+ASan, then a summary
# table). Installs what it needs first (just; nightly, cargo-fuzz: see scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_just
exec just main "$@"
