#!/usr/bin/env bash
# Runs the switchboard benchmark harness, making sure first that what it
# needs is installed (idempotent: nothing is installed twice):
#   - a TrueType font for the chart (Debian: fonts-dejavu-core),
#   - python3 with venv, and a venv with communica[msgpack,rabbitmq] in
#     $CARGO_TARGET_DIR/communica-venv (default target/communica-venv).
# Then builds and runs the harness in release mode, once per tokio runtime
# (current_thread, then multi_thread), writing $CARGO_TARGET_DIR/bench.json
# and bench-multi.json, docs/bench.png and bench-multi.png, and the two
# results parts of BENCHMARKS.md.
#
#   bash bench/run.sh --quick     # about 3 minutes of running on two cores
#   bash bench/run.sh             # the full runs, about 10 minutes
#
# Extra arguments go to the harness (see `--help`), e.g.
#   bash bench/run.sh --quick --systems raw_tokio_local,switchboard_local_json
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
venv="$CARGO_TARGET_DIR/communica-venv"

missing=()
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if ! command -v python3 >/dev/null; then
    missing+=(python3 python3-venv)
elif [ ! -x "$venv/bin/python" ] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "run.sh: missing ${missing[*]} (not root or no apt-get); the harness will skip what needs them" >&2
    fi
fi

if command -v python3 >/dev/null; then
    mkdir -p "$CARGO_TARGET_DIR"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    if ! "$venv/bin/python" -c 'import communica, msgpack, aiormq' 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet 'communica[msgpack,rabbitmq]'
    fi
fi

cargo build --release -p switchboard-bench
# Once on each tokio runtime: current_thread (the method's default) and
# multi_thread (what `#[tokio::main]` gives most programs). Each has its
# own part of BENCHMARKS.md and its own chart.
for runtime in current multi; do
    suffix=$([ "$runtime" = multi ] && echo -multi || true)
    "$CARGO_TARGET_DIR/release/switchboard-bench" \
        --venv "$venv" \
        --runtime "$runtime" \
        --json "$CARGO_TARGET_DIR/bench$suffix.json" \
        --chart "$root/docs/bench$suffix.png" \
        --markdown "$root/BENCHMARKS.md" \
        "$@"
done
