#!/usr/bin/env bash
# The MSRV, checked as far as a machine with one toolchain allows. What it
# checks:
# - every manifest of the workspace (not fuzz/: nightly) states the same
#   `rust-version`, and the README's "Rust X.Y or newer" says the same;
# - no package in the locked dependency tree (all features, every target,
#   dev-dependencies too) declares a `rust-version` above it. Cargo's
#   MSRV-aware resolver (resolver 3) keeps it so when the lock is updated;
#   this catches a lock updated by hand or by an older cargo.
# What it does not: build with that toolchain (none can be installed here),
# so language features newer than the MSRV in our own code are not caught;
# clippy's `incompatible_msrv` lint (in ci/test.sh) catches standard-library
# APIs newer than `rust-version`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --format-version 1 --locked --all-features > "${TMPDIR:-/tmp}/sb-msrv-metadata.json"
python3 - "${TMPDIR:-/tmp}/sb-msrv-metadata.json" <<'PY'
import json, re, sys, tomllib

def version(text):
    return tuple(int(part) for part in text.split("."))[:2]

failures = []
with open("Cargo.toml", "rb") as f:
    msrv_text = tomllib.load(f)["package"]["rust-version"]
msrv = version(msrv_text)

for manifest in ["Cargo.toml", "macros/Cargo.toml", "cli/Cargo.toml", "bench/Cargo.toml"]:
    with open(manifest, "rb") as f:
        stated = tomllib.load(f)["package"].get("rust-version")
    if stated is None or version(stated) != msrv:
        failures.append(f"{manifest}: rust-version {stated!r}, not {msrv_text}")

readme = open("README.md", encoding="utf-8").read()
said = re.findall(r"Rust (\d+\.\d+) or newer", readme)
if not said:
    failures.append('README.md: no "Rust X.Y or newer"')
for text in said:
    if version(text) != msrv:
        failures.append(f"README.md says Rust {text} or newer, the manifests {msrv_text}")

metadata = json.load(open(sys.argv[1]))
for package in metadata["packages"]:
    stated = package.get("rust_version")
    if stated and version(stated) > msrv:
        failures.append(f"dependency {package['name']} {package['version']} needs Rust {stated}")

if failures:
    print("MSRV check failed:", *failures, sep="\n  ")
    sys.exit(1)
print(f"MSRV {msrv_text}: the manifests and the README agree; "
      f"none of the {len(metadata['packages'])} locked packages needs more")
PY
