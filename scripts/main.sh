#!/usr/bin/env bash
# The main job: hakmem side by side with the system allocator, then a real program under the
# LD_PRELOAD library with its statistics. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_just
exec just main
