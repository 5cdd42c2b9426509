#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: it only
# calls apt-get when a package is missing, so a second run changes nothing.
set -euo pipefail

# Debian packages: OpenSSL headers and pkg-config (rust_socketio's TLS stack builds
# against the system OpenSSL).
packages=(pkg-config libssl-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
