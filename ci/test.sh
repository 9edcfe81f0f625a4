#!/usr/bin/env bash
# What CI checks on Linux: formatting, lints as errors, and the README's test
# command (all features: the AMQP tests run against a real RabbitMQ, which
# ci/rabbitmq.sh installs and starts if needed). Run from anywhere; it works
# in the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --workspace --all-targets --all-features -- -D warnings"
# The workspace includes bench/, so the harness keeps compiling.
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== RabbitMQ"
bash ci/rabbitmq.sh
echo "== cargo test --all-features"
cargo test --all-features
