#!/usr/bin/env bash
# Packs the published crates (switchboard-ipc, switchboard-ipc-macros,
# switchboard-ipc-cli; bench/ and fuzz/ are `publish = false`) the way
# `cargo publish` would, each built from its own .crate file, and fails on
# any warning cargo gives about them (a name taken or yanked on crates.io,
# missing metadata, a file left out). Asks crates.io's index, like publish.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# CI packs a clean clone; a checkout being worked on may be dirty.
dirty=()
[ "${CI:-}" = true ] || dirty=(--allow-dirty)
# `--workspace` would pack the benchmark harness too (`publish = false` does
# not stop `cargo package`).
if ! cargo package --workspace --exclude switchboard-bench "${dirty[@]}" 2> >(tee "$log" >&2); then
    echo "cargo package failed" >&2
    exit 1
fi
if grep -q '^warning' "$log"; then
    echo "cargo package warned (above): fix the manifests before publishing" >&2
    grep '^warning' "$log" >&2
    exit 1
fi
ls "${CARGO_TARGET_DIR:-target}"/package/*.crate
