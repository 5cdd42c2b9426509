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
# The combinations the crate docs promise (docs/ARCHITECTURE.md, "Crate features").
# Without features: peers-sdk's tests build (its dev-dependency on itself brings
# test-utils); peers-signaling's tests need no flag (their dev-dependency brings
# the server and the binary) except the Redis ones (`required-features`).
cargo check -p peers-sdk --all-targets
cargo check -p peers-transport-socketio --lib --no-default-features --features client
cargo check -p peers-transport-socketio --lib --no-default-features --features server
cargo check -p peers-signaling --lib --no-default-features
cargo check -p peers-signaling --lib
cargo check -p peers-signaling --lib --no-default-features --features server
cargo check -p peers-signaling --lib --no-default-features --features redis
cargo check -p peers-signaling --no-default-features --features bin --bin peers-signaling
cargo check -p peers-signaling --all-targets
cargo check -p peers-device --lib --no-default-features
cargo check -p peers-device --all-targets --no-default-features

# The API docs, with default features and with all: a broken or private link is an error.
for features in "" "--all-features"; do
    # shellcheck disable=SC2086 # the feature argument is a word or nothing
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib $features -p peers-sdk -p peers-transport-socketio \
        -p peers-transport-webrtc -p peers-signaling -p peers-device
done

# `refuse_deps PACKAGE 'FEATURE ARGS' CRATE...`: fails if the normal (non-dev)
# dependency tree of PACKAGE built with those feature arguments holds any CRATE.
refuse_deps() {
    local package=$1 features=$2
    shift 2
    local pattern
    pattern="^($(IFS='|'; echo "$*")) "
    local found
    # shellcheck disable=SC2086 # the feature arguments are words
    found=$(cargo tree -e normal -p "$package" $features --prefix none | grep -E "$pattern" | sort -u || true)
    if [ -n "$found" ]; then
        echo "$package ($features) pulls crates it must not:" >&2
        echo "$found" >&2
        exit 1
    fi
}
# A library user of the signaling crate compiles none of the binary's crates.
refuse_deps peers-signaling "--no-default-features --features server" clap toml anyhow tracing-subscriber
# A device talking to a signaling server compiles no server of it.
refuse_deps peers-signaling "" axum socketioxide governor metrics-exporter-prometheus rusqlite redis
# An application that embeds sync compiles no signaling server, Redis, exporter or CLI.
refuse_deps peers-device "--no-default-features" \
    redis socketioxide-redis governor metrics-exporter-prometheus clap toml tracing-subscriber indicatif anyhow

echo "== peers-js: build (tsc) and node --test"
# The build also produces the drivers in dist/examples/ that tests/tests/peers_js*.rs
# run (peers_js_chromium bundles browser-device.js for its page with esbuild,
# peers_js_receive_page the receive page).
# Its signaling tests start the real server binary (found through CARGO_TARGET_DIR,
# else target/).
cargo build -p peers-signaling --features bin --bin peers-signaling
npx --prefix peers-js tsc -p peers-js
# The receive page's bundle (a build product, not in git): peers-js/dist/receive-page/.
node peers-js/scripts/bundle-page.mjs
(cd peers-js && node --test dist/test/)

echo "== cargo test (unit, integration, example and doc tests)"
cargo test --workspace --all-features
