#!/usr/bin/env bash
# The test suite: unit, property, stress and LD_PRELOAD tests. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
ensure_just
exec just test
