#!/usr/bin/env bash
# What CI checks on Linux: formatting, lints as errors, and the README's test
# command. Run from anywhere; it works in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
# The workspace includes bench/, so the harness keeps compiling.
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test
