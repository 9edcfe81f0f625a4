#!/usr/bin/env bash
# The Python package (python/): installs it with pip into a fresh virtual
# environment (with the msgpack extra), type-checks it and a program that
# uses it with `mypy --strict`, and runs its pytest suite against the Rust
# CLI and examples built here. Run from anywhere; called by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== python: build the Rust side the tests drive"
cargo build --all-features -p switchboard-ipc-cli
cargo build --all-features --example parent_child --example python_workers

venv="$target/python-ci-venv"
echo "== python: a fresh virtual environment in $venv"
rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "./python[msgpack]" pytest mypy

echo "== python: mypy --strict"
(cd python && "$venv/bin/mypy" --strict src/switchboard_ipc examples/typed_usage.py examples/worker.py examples/rust_workers.py)

echo "== python: pytest (against the installed package)"
status=0
(cd python/tests && SWITCHBOARD_BIN="$target/debug/switchboard" SWITCHBOARD_EXAMPLES="$target/debug/examples" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --keepalive .) || status=$?
if [ "$status" -eq 5 ]; then
    echo "python: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
