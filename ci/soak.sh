#!/usr/bin/env bash
# Soak test, not part of normal CI: the load mix (tests/load.rs) for the
# given number of seconds, with client processes killed and the server
# restarted at random; prints totals at the end and fails on any wrong
# answer. Usage: ci/soak.sh [SECONDS] (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
SB_SOAK_SECONDS=$duration cargo test --release --test load soak -- --ignored --nocapture
