#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent: it only
# calls apt-get when a package is missing and npm when the lock file changed, so a
# second run changes nothing and takes well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages:
# - pkg-config, libssl-dev: rust_socketio's TLS stack builds against the system OpenSSL;
# - redis-server: the signaling server's Redis backend tests start their own instance;
# - chromium: the WebRTC interop test drives a headless page (through puppeteer-core);
# - iproute2, iptables: the NAT tests build network namespaces and NAT routers;
# - Node.js and npm for the JavaScript interop tests (tests/js/), only when no `node`
#   is installed at all (a newer Node from elsewhere is fine).
packages=(pkg-config libssl-dev redis-server chromium iproute2 iptables)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-deps: $tool is missing (install Node.js with npm)" >&2; exit 1; }
done

# npm packages of the interop tests (socket.io-client), exactly as locked. npm keeps
# its own copy of the lock in node_modules; reinstall when that is missing or older
# than tests/package-lock.json.
stamp=tests/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ tests/package-lock.json -nt "$stamp" ]; then
  (cd tests && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
