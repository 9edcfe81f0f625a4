#!/usr/bin/env bash
# Type-checks and lints every target (lib, the CLI, tests, examples) with all
# features for macOS and FreeBSD, so their code paths (no abstract
# namespace, the 104-byte sun_path limit, BSD peer credentials) at least
# compile. These machines cannot run those systems; see the README's
# platform table. Windows is linted here too (ci/windows.sh runs its tests).
set -euo pipefail
cd "$(dirname "$0")/.."

for target in x86_64-apple-darwin x86_64-unknown-freebsd x86_64-pc-windows-gnu; do
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
    echo "== cargo check --target $target"
    cargo check --target "$target" --all-targets --all-features
    echo "== cargo clippy --target $target -- -D warnings"
    cargo clippy --target "$target" --all-targets --all-features -- -D warnings
done
echo "cross-check passed for macOS, FreeBSD and Windows"
