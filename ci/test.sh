#!/usr/bin/env bash
# What CI checks on Linux: formatting, lints as errors, and the README's test
# command. Run from anywhere; it works in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
# The workspace includes bench/, so the harness keeps compiling; all
# features, so the hidden fuzzing entry points (src/fuzzing.rs) are linted.
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test"
cargo test
echo "== cargo test --features fuzzing --test fuzz_regressions"
# What the fuzz targets found (fuzz/, run by ci/fuzz.sh), as plain tests.
cargo test --features fuzzing --test fuzz_regressions
