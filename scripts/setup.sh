#!/usr/bin/env bash
# Installs what hakmem's jobs need on a fresh machine; each step is a no-op when already done.
# Usage: scripts/setup.sh [just] [miri] ...   (sourced by the other scripts, or run directly)
set -euo pipefail

ensure_just() {
    if ! command -v just >/dev/null 2>&1; then
        echo "setup: installing just (pip rust-just)"
        python3 -m pip install --quiet --disable-pip-version-check rust-just 2>&1 | grep -v "as the 'root' user" || true
        local bin
        bin="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
        export PATH="$bin:$PATH"
        hash -r
    fi
    command -v just >/dev/null || { echo "setup: just is not on PATH after install" >&2; exit 1; }
}

ensure_nightly() {
    # Components are added only when missing: `rustup component add` is slow even as a no-op.
    local have
    have="$(rustup +nightly component list --installed 2>/dev/null || true)"
    [ -n "$have" ] || { echo "setup: installing nightly toolchain"; rustup toolchain install nightly --profile minimal; }
    local missing=()
    for c in "$@"; do
        grep -q "^$c" <<<"$have" || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: adding nightly components: ${missing[*]}"
        rustup component add --toolchain nightly "${missing[@]}"
    fi
}

ensure_miri() {
    ensure_nightly miri rust-src
    cargo +nightly miri setup >/dev/null 2>&1 || cargo +nightly miri setup
}

ensure_sanitizers() {
    # ASan/TSan/LSan jobs: nightly with rust-src, because they rebuild std instrumented
    # (-Zbuild-std); the sanitizer runtimes themselves ship with rustc.
    ensure_nightly rust-src
    local t
    t="$(rustc +nightly -vV | sed -n 's/^host: //p')"
    [ "$t" = "x86_64-unknown-linux-gnu" ] || { echo "setup: sanitizer jobs expect an x86_64-unknown-linux-gnu host, not $t" >&2; exit 1; }
}

ensure_cargo_fuzz() {
    # libFuzzer targets: cargo-fuzz builds them with nightly's -Zsanitizer=address; llvm-tools is
    # for `cargo fuzz coverage`, rust-src for builds with an instrumented std.
    ensure_nightly rust-src llvm-tools
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "setup: installing cargo-fuzz"
        cargo install --locked cargo-fuzz
    fi
}

ensure_afl() {
    # AFL++ targets: cargo-afl builds AFL++ itself for the default toolchain when installed.
    if ! cargo afl --version >/dev/null 2>&1; then
        echo "setup: installing cargo-afl (and building AFL++)"
        cargo install --locked cargo-afl
    fi
    # Built per toolchain; `config --build` refuses (harmlessly) when it is there already.
    local out
    if ! out="$(cargo afl config --build 2>&1)"; then
        grep -q "already built" <<<"$out" || { echo "$out" >&2; return 1; }
    fi
}

ensure_debs() {
    # Debian packages, installed only when missing: `apt-get update` once, then one install.
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    for what in "${@:-just}"; do
        "ensure_$what"
    done
fi
