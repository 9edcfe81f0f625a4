#!/usr/bin/env bash
# What CI checks on Linux: the MSRV's consistency, formatting, lints as
# errors, the README's test command (all features: the AMQP tests run
# against a real RabbitMQ, which ci/rabbitmq.sh installs and starts if
# needed), and packing the published crates. Run from anywhere; it works in
# the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== MSRV (ci/msrv.sh)"
bash ci/msrv.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== layers (ci/layers.py)"
# Imports run down the layers of ARCHITECTURE.md, with no cycles but the
# ones allowed there.
python3 ci/layers.py
echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
# The workspace includes bench/, so the harness keeps compiling; all
# features, so the AMQP connector and the hidden fuzzing entry points
# (src/fuzzing.rs) are linted.
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo doc (warnings are errors)"
# Every feature, as docs.rs builds it ([package.metadata.docs.rs]): the
# hidden fuzzing entry points too, whose docs must not link to private items.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features
echo "== RabbitMQ"
bash ci/rabbitmq.sh
echo "== cargo test --all-features"
# The README's test command: with the broker tests (amqp) and the
# regressions of what the fuzz targets found (fuzzing). Without a broker
# the broker tests would be skipped (tests/support/broker.rs); here they
# must run, so a broker that does not answer fails them.
SWITCHBOARD_REQUIRE_BROKER=1 cargo test --all-features
echo "== cargo package --workspace (ci/package.sh)"
# What `cargo publish` would upload, each crate built from its .crate
# file; any warning about names or metadata fails.
bash ci/package.sh
