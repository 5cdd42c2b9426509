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

echo "== cargo test (unit, integration, example and doc tests)"
cargo test --workspace --all-features
