#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz and libFuzzer: builds the targets
# in fuzz/ and runs each for SECONDS (default 30), one after another.
# Fails if any target crashes, panics, hangs (an input running over 10 s)
# or runs out of memory; the input is kept in fuzz/artifacts/<target>/.
#
#   bash ci/fuzz.sh [SECONDS] [TARGET...]   all targets unless named
#
# Works on a fresh machine: installs cargo-fuzz if missing, and uses the
# nightly toolchain (cargo-fuzz needs -Z flags for the sanitizer), installing
# it with rustup if missing; without rustup or network, stable with
# RUSTC_BOOTSTRAP=1 (FUZZ_TOOLCHAIN=stable forces that). Seeds are
# fuzz/seeds/<target>/ (committed, small); what libFuzzer learns goes to
# fuzz/corpus/<target>/ (not committed), so later runs on the same machine
# start from there. Builds go to fuzz/target/ (or $CARGO_TARGET_DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

seconds="${1:-30}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(frame_reader envelope body handshake_server handshake_client load_state)

log() { printf '[fuzz.sh] %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

started=$SECONDS

# The toolchain: nightly if there or installable, else stable unlocked.
# FUZZ_TOOLCHAIN=<name> picks one (with RUSTC_BOOTSTRAP=1 unless nightly).
cargo_tc=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    cargo_tc=(cargo "+$FUZZ_TOOLCHAIN")
    case "$FUZZ_TOOLCHAIN" in
        nightly*) ;;
        *) export RUSTC_BOOTSTRAP=1 ;;
    esac
elif command -v rustup >/dev/null 2>&1; then
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        log "installing the nightly toolchain (minimal profile)"
        rustup toolchain install nightly --profile minimal >/dev/null 2>&1 \
            || log "could not install nightly"
    fi
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        cargo_tc=(cargo +nightly)
    fi
fi
if [ "${cargo_tc[*]}" = cargo ] && [ -z "${FUZZ_TOOLCHAIN:-}" ]; then
    log "no nightly toolchain: using $(rustc --version) with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --version '^0.13' --locked
fi

# Release with debug assertions, so integer overflow panics too;
# AddressSanitizer (cargo-fuzz's default).
build_flags=(--release --debug-assertions)
log "building the targets with ${cargo_tc[*]}${RUSTC_BOOTSTRAP:+ and RUSTC_BOOTSTRAP=1} ($(cargo fuzz --version))"
"${cargo_tc[@]}" fuzz build "${build_flags[@]}"

dict_for() {
    case "$1" in
        handshake_*) echo "-dict=$ROOT/fuzz/dict_handshake.txt" ;;
        load_state) echo "-dict=$ROOT/fuzz/dict_connector.txt" ;;
    esac
}

logs="$ROOT/fuzz/artifacts/logs"
mkdir -p "$logs"
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$ROOT/fuzz/corpus/$target"
    mkdir -p "$corpus"
    log "$target: ${seconds} s"
    # shellcheck disable=SC2046
    if "${cargo_tc[@]}" fuzz run "${build_flags[@]}" "$target" "$corpus" "$ROOT/fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 $(dict_for "$target") \
        >"$logs/$target.log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "$logs/$target.log" | tail -1 | tr -dc 0-9)
        summary+=("$(printf '%-18s ok      %10s runs' "$target" "${runs:-?}")")
    else
        tail -60 "$logs/$target.log" >&2
        failed+=("$target")
        summary+=("$(printf '%-18s FAILED  (log: %s)' "$target" "$logs/$target.log")")
    fi
done

printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    log "crashes in: ${failed[*]} (inputs in fuzz/artifacts/<target>/;" \
        "reproduce with: cargo +nightly fuzz run <target> <input>)"
    exit 1
fi
log "fuzzing passed in $((SECONDS - started)) s"
