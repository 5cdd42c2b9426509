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
# - coturn: the NAT tests' STUN/TURN server (each test starts its own `turnserver`
#   with its configuration on the command line, on a lab address, and kills it at
#   the end; the package's own service is never started, see below);
# - Node.js and npm for the JavaScript interop tests (tests/js/), only when no `node`
#   is installed at all (a newer Node from elsewhere is fine).
packages=(pkg-config libssl-dev redis-server chromium iproute2 iptables coturn)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # policy-rc.d exit 101 keeps the packages' services (coturn's, redis') from
  # starting during the install; the tests run their own instances.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod 755 "$policy"
    trap '$sudo_cmd rm -f "$policy"' EXIT
  fi
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# coturn's own service is not needed (and on systemd hosts would hold port 3478):
# keep it disabled and stopped. Only when systemd runs, and only if it is enabled
# or running, so a second run changes nothing.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  if systemctl is-enabled --quiet coturn 2>/dev/null || systemctl is-active --quiet coturn 2>/dev/null; then
    $sudo_cmd systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
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

# peers-js (the TypeScript implementation): its build and runtime packages, exactly as
# locked, on the same rule.
stamp=peers-js/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ peers-js/package-lock.json -nt "$stamp" ]; then
  (cd peers-js && npm ci --no-audit --no-fund --loglevel=error)
  touch "$stamp"
fi
