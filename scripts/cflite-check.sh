#!/usr/bin/env bash
# Checks the ClusterFuzzLite / OSS-Fuzz integration without Docker (`just cflite-check`): runs
# .clusterfuzzlite/build.sh as the builder image would, with $SRC and $OUT temporary folders and
# the checkout at $SRC/hakmem, then checks what it left in $OUT: every target of fuzz/Cargo.toml
# is there and is a libFuzzer binary, runs its whole seed zip, and replays each regression listing
# of its target (in the zip as regress-NAME) on its own; each has a dictionary and an options file
# that name it. Also parses every YAML file of .clusterfuzzlite/ and .github/workflows/ and checks
# the workflows run the three ClusterFuzzLite modes (code-change, batch, prune) on Rust.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fuzz-common.sh

ensure_cargo_fuzz
ensure_debs zip unzip binutils
work="$(mktemp -d "${TMPDIR:-/tmp}/hakmem-cflite.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export SRC="$work/src" OUT="$work/out"
mkdir -p "$SRC" "$OUT"
# The checkout as the Dockerfile's COPY puts it (a link: the build reuses fuzz/target's cache).
ln -s "$ROOT" "$SRC/hakmem"
echo "== .clusterfuzzlite/build.sh with SRC=$SRC OUT=$OUT (nightly, as the builder image's toolchain)"
(cd "$SRC/hakmem" && RUSTUP_TOOLCHAIN=nightly bash "$SRC/hakmem/.clusterfuzzlite/build.sh")

fail=0
bad() { echo "  FAIL: $*"; fail=1; }

mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml)
[ ${#targets[@]} -gt 0 ] || die "no targets in fuzz/Cargo.toml"
for t in "${targets[@]}"; do
    echo "== $t"
    bin="$OUT/$t"
    [ -x "$bin" ] || { bad "$OUT/$t is missing or not executable"; continue; }
    # A libFuzzer binary: it defines the entry point and answers libFuzzer's flags. (Whole
    # outputs into grep -c: grep -q would stop reading early and fail the pipe.)
    [ "$(nm "$bin" 2>/dev/null | grep -c ' T LLVMFuzzerTestOneInput$')" -eq 1 ] || bad "$t does not define LLVMFuzzerTestOneInput"
    [ "$("$bin" -help=1 2>&1 | grep -c '^Usage:')" -ge 1 ] || bad "$t does not answer libFuzzer's -help=1"

    zipf="$OUT/${t}_seed_corpus.zip"
    [ -f "$zipf" ] || { bad "no $zipf"; continue; }
    seeds="$work/seeds-$t"
    mkdir -p "$seeds"
    unzip -q "$zipf" -d "$seeds"
    n=$(find "$seeds" -type f | wc -l)
    want=$(find "corpora/$t" -maxdepth 1 -type f | wc -l)
    [ "$n" -eq "$want" ] || bad "the seed zip holds $n inputs, corpora/$t $want"

    # The whole seed corpus, as ClusterFuzzLite starts a run: every input must run and pass.
    log="$work/$t-seeds.log"
    if ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$bin" -runs=0 -dict="$OUT/$t.dict" "$seeds" >"$log" 2>&1; then
        echo "  seed zip: $n inputs run: $(grep -o 'INITED.*' "$log" | head -1)"
    else
        bad "$t fails on its seed zip:"
        tail -15 "$log"
    fi

    # Each regression listing of the target (free_running also takes deterministic's) must be in
    # the zip, and pass alone.
    dirs=("corpora/regressions/$t")
    [ "$t" = free_running ] && dirs+=(corpora/regressions/deterministic)
    regs=0
    for prog in $(find "${dirs[@]}" -name '*.prog' 2>/dev/null | sort); do
        name="regress-$(basename "$prog" .prog)"
        if [ ! -f "$seeds/$name" ]; then
            bad "regression $prog is not in the seed zip as $name (just seed)"
            continue
        fi
        ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$bin" "$seeds/$name" >"$work/reg.log" 2>&1 \
            || { bad "$t fails on $name:"; tail -10 "$work/reg.log"; }
        regs=$((regs + 1))
    done
    echo "  regressions: $regs replayed one by one"

    [ -f "$OUT/$t.dict" ] || bad "no $t.dict"
    python3 - "$OUT/$t.options" "$t" <<'EOF' || bad "$t.options"
import configparser, sys
c = configparser.ConfigParser()
assert c.read(sys.argv[1]), "missing"
assert c["libfuzzer"]["dict"] == sys.argv[2] + ".dict", "its dict is not " + sys.argv[2] + ".dict"
print("  options:", {s: dict(c[s]) for s in c.sections()})
EOF
done

echo "== YAML files"
python3 -c 'import yaml' 2>/dev/null || {
    echo "setup: installing PyYAML (pip)"
    python3 -m pip install --quiet --disable-pip-version-check pyyaml 2>&1 | grep -v "as the 'root' user" || true
}
python3 - .clusterfuzzlite/project.yaml .github/workflows/*.yml <<'EOF' || fail=1
import sys, yaml
failed = False
modes = set()
for path in sys.argv[1:]:
    try:
        doc = yaml.safe_load(open(path))
    except yaml.YAMLError as e:
        print(f"  FAIL: {path}: {e}")
        failed = True
        continue
    if path.endswith("project.yaml"):
        ok = doc.get("language") == "rust"
        print(f"  {path}: language {doc.get('language')}" + ("" if ok else "  FAIL: not rust"))
        failed |= not ok
        continue
    # YAML 1.1 reads the key `on` as true.
    triggers = doc.get("on", doc.get(True))
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    build = [s for s in steps if s.get("uses", "").startswith("google/clusterfuzzlite/actions/build_fuzzers@")]
    run = [s for s in steps if s.get("uses", "").startswith("google/clusterfuzzlite/actions/run_fuzzers@")]
    ok = bool(triggers) and build and run and all(s["with"].get("language") == "rust" for s in build)
    ms = [s["with"].get("mode") for s in run]
    modes.update(ms)
    print(f"  {path}: on {sorted(triggers)}, modes {ms}" + ("" if ok else "  FAIL: needs a trigger, build_fuzzers with language rust and run_fuzzers"))
    failed |= not ok
missing = {"code-change", "batch", "prune"} - modes
if missing:
    print(f"  FAIL: no workflow runs {sorted(missing)}")
    failed = True
sys.exit(1 if failed else 0)
EOF

echo
if [ "$fail" -ne 0 ]; then
    echo "cflite-check: FAILED"
    exit 1
fi
echo "cflite-check: build.sh built ${#targets[@]} libFuzzer targets; each ran its seed zip and replayed its regressions; the YAML files parse"
