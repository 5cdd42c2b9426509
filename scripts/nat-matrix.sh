#!/usr/bin/env bash
# Runs each NAT scenario of tests/tests/nat_matrix.rs RUNS times (default 10)
# and prints the matrix that docs/NAT.md reports: successes, the class reached,
# and the time to reach it (min / median / max), plus the scenario's own
# second figure where it prints one (e: the 16 MiB transfer; f: both changes
# across after the move). A failed run's output is kept in a temporary file
# named on stderr. Needs root, like the tests, and coturn (`turnserver`, the
# lab's STUN/TURN server; scripts/install-deps.sh installs it).
#
#   bash scripts/nat-matrix.sh [RUNS]
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
for tool in turnserver turnutils_stunclient ip iptables; do
  command -v "$tool" >/dev/null 2>&1 || { echo "nat-matrix: $tool is missing (run scripts/install-deps.sh)" >&2; exit 1; }
done

cargo build -q --workspace --bins
cargo test -q -p peers-tests --test nat_matrix --no-run 2>/dev/null

scenarios=(
  a_same_lan_connects_over_a_local_socket
  b_endpoint_independent_nats_connect_directly_over_webrtc
  c_symmetric_nats_connect_over_turn
  d_udp_blocked_falls_back_to_the_servers_relay
  e_five_percent_loss_carries_16_mib_intact
  f_a_device_that_moves_to_the_other_lan_reconnects_and_keeps_syncing
)

# Seconds from a Rust Duration's Debug form (750.1ms, 2.73s, 912µs).
to_seconds() {
  awk '{ v = $1; if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else if (v ~ /µs$/) { sub(/µs$/, "", v); v /= 1000000 } else { sub(/s$/, "", v) } printf "%.3f\n", v }'
}

# min / median / max of the numbers on stdin.
summary() {
  sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) { print "-"; exit } printf "%.2f / %.2f / %.2f s", a[1], a[int((NR + 1) / 2)], a[NR] }'
}

printf '| scenario | class reached | success | time to the class (min / median / max) | second figure (min / median / max) |\n'
printf '|---|---|---|---|---|\n'
for name in "${scenarios[@]}"; do
  ok=0 class="-" firsts="" seconds=""
  for _ in $(seq "$runs"); do
    out=$(cargo test -q -p peers-tests --test nat_matrix -- --nocapture --exact "$name" 2>&1)
    status=$?
    if [ $status -ne 0 ]; then
      log=$(mktemp "${TMPDIR:-/tmp}/nat-matrix-${name%%_*}-XXXX.log")
      printf '%s\n' "$out" >"$log"
      echo "scenario ${name%%_*} failed; its output is in $log" >&2
    fi
    if [ $status -eq 0 ]; then
      ok=$((ok + 1))
      lines=$(grep -E '^[a-f]\) .* in [0-9.]+(ms|µs|s)$' <<<"$out")
      first=$(head -n1 <<<"$lines")
      class=$(awk '{ print $2 }' <<<"$first")
      firsts+="$(awk '{ print $NF }' <<<"$first" | to_seconds)"$'\n'
      if [ "$(wc -l <<<"$lines")" -gt 1 ]; then
        seconds+="$(tail -n1 <<<"$lines" | awk '{ print $NF }' | to_seconds)"$'\n'
      fi
    fi
  done
  printf '| %s | %s | %d/%d | %s | %s |\n' "${name%%_*}" "$class" "$ok" "$runs" \
    "$(grep -v '^$' <<<"$firsts" | summary)" "$(grep -v '^$' <<<"$seconds" | summary)"
done
