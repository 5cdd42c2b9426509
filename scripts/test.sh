#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration and doc tests.
# Safe to run repeatedly: missing system packages are installed once, then left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== dependencies"
bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== feature combinations (checks only)"
# Without features: peers-sdk's tests build (its dev-dependency on itself brings
# test-utils); peers-signaling is a library without its binary's dependencies.
cargo check -p peers-sdk --all-targets
cargo check -p peers-signaling --lib --no-default-features
cargo check -p peers-signaling --features bin --bin peers-signaling
binary_only=$(cargo tree -e normal -p peers-signaling --no-default-features --prefix none \
    | grep -E '^(clap|toml|anyhow|tracing-subscriber) ' | sort -u || true)
if [ -n "$binary_only" ]; then
    echo "peers-signaling without the bin feature pulls the binary's dependencies:" >&2
    echo "$binary_only" >&2
    exit 1
fi

echo "== fuzz targets (built without instrumentation so none can rot; fuzz/README.md runs them)"
# The fuzz crate is a workspace of its own; it takes the main lockfile's versions.
cp Cargo.lock fuzz/Cargo.lock
cargo check --manifest-path fuzz/Cargo.toml --bins --target-dir target

echo "== peers-js: build (tsc) and node --test"
# The build also produces dist/examples/device.js, which tests/tests/peers_js.rs runs.
npx --prefix peers-js tsc -p peers-js
(cd peers-js && node --test dist/test/)

echo "== cargo test (unit, integration, example and doc tests)"
cargo test --workspace --all-features
