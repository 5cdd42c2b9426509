#!/usr/bin/env bash
# Send-by-code benchmark: one file of random data over loopback, ours (peers send /
# peers receive through a local signaling server: on its frame relay only; on the
# relay first, then WebRTC on loopback once it is up; on the relay first, then the
# receiver's local socket; and peers send --to between two daemons over a local
# socket.io connection) beside magic-wormhole (with its mailbox
# server and transit relay run locally), iroh's sendme when it is installed, and `cat`
# into a file as the floor (and `cat` then an fsync of the file: the durable floor). Prints MB/s (file size / the receiver's wall time, from
# start to exit; for send --to, the sending command's), the receiver's peak RSS
# (/usr/bin/time -v; the receiving daemon's VmHWM for send --to) with each rate as a
# ratio of the floor's, and for `peers receive CODE` the seconds from its start to its
# first verified byte. The row webrtc-raw is the library alone: the same file over one
# webrtc-rs data channel on loopback between two processes, into a file
# (peers-transport-webrtc's bench program webrtc_raw_file); with peers-webrtc in the same
# run, the script also prints the ratio of the two. The row webrtc-raw-ndc is the same
# webrtc-rs receiver with node-datachannel's sender (peers-js's
# bench/raw-datachannel-send.ts, the same protocol and pacing): with both raw rows in a
# run, the script prints webrtc-raw / webrtc-raw-ndc (target: at least 1.0), over the
# receivers' wall times and over their transfers alone (from the channel's open to the
# synced file, without the sender's start-up). Not part of the test run.
#
# usage: benches/transfer/run.sh [--size-mib N] [--bin DIR] [--venv DIR] [--raw FILE] [--ndc FILE] [--rows "ROW..."]
#   --size-mib N  file size in MiB (default 1024)
#   --rows LIST   which rows, of: cat local relay webrtc-raw webrtc-raw-ndc webrtc code-local wormhole sendme
#                 (default: all; cat, cat+sync and tcp+sync always run, as the floors)
#   --bin DIR     where `peers` and `peers-signaling` are (default:
#                 ${CARGO_TARGET_DIR:-target}/release; build them with
#                 cargo build --release -p peers-device --bin peers, and
#                 cargo build --release -p peers-signaling --features bin --bin peers-signaling)
#   --raw FILE    the webrtc_raw_file program (default: the newest DIR/deps/webrtc_raw_file-*,
#                 from cargo bench -p peers-transport-webrtc --features test-utils
#                 --bench webrtc_raw_file --no-run); without it, the webrtc-raw rows are left out
#   --ndc FILE    node-datachannel's sender for webrtc-raw-ndc (default:
#                 peers-js/dist/bench/raw-datachannel-send.js, from npx tsc -p . in peers-js);
#                 without it or without node, the webrtc-raw-ndc row is left out
#   --venv DIR    a Python venv with magic-wormhole, magic-wormhole-mailbox-server and
#                 magic-wormhole-transit-relay (pip install ...); without it, the
#                 wormhole row is left out
set -euo pipefail

size_mib=1024
bin="${CARGO_TARGET_DIR:-target}/release"
venv=""
raw=""
ndc="$(cd "$(dirname "$0")/../.." && pwd)/peers-js/dist/bench/raw-datachannel-send.js"
rows_wanted="local relay webrtc-raw webrtc-raw-ndc webrtc code-local wormhole sendme"
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size_mib="$2"; shift 2 ;;
    --rows) rows_wanted="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --raw) raw="$2"; shift 2 ;;
    --ndc) ndc="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

work="$(mktemp -d "${TMPDIR:-/tmp}/peers-transfer-bench.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

bytes=$((size_mib * 1048576))
src="$work/src/data.bin"
mkdir -p "$work/src"
head -c "$bytes" /dev/urandom > "$src"
want="$(sha256sum < "$src" | cut -d' ' -f1)"

wanted() { case " $rows_wanted " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

rows=()
# row NAME SECONDS RSS_KIB FIRST_BYTE_S OUTFILE: checks the received bytes, keeps the row.
row() {
  local name="$1" secs="$2" rss="$3" first="$4" out="$5"
  local got; got="$(sha256sum < "$out" | cut -d' ' -f1)"
  [ "$got" = "$want" ] || { echo "$name: received bytes differ" >&2; exit 1; }
  rows+=("$name $secs $rss $first")
  rm -f "$out"
}
# record NAME TIMEFILE OUTFILE [FIRST_BYTE_S]: the wall time and peak RSS from /usr/bin/time -v.
record() {
  local name="$1" timing="$2" out="$3" first="${4:--}"
  local wall rss
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$timing")"
  rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$timing")"
  local secs; secs="$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')"
  row "$name" "$secs" "$rss" "$first" "$out"
}
# stamp: copies standard input to standard output, each line prefixed with the time.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }

# The floors: cat into a file (the page cache), and the same followed by an fsync of the
# file (`sync FILE`: the bytes on the disk, as `peers receive` leaves them).
/usr/bin/time -v -o "$work/cat.time" sh -c "cat '$src' > '$work/cat.out'"
record "cat" "$work/cat.time" "$work/cat.out"
/usr/bin/time -v -o "$work/cat-sync.time" sh -c "cat '$src' > '$work/cat-sync.out' && sync '$work/cat-sync.out'"
record "cat+sync" "$work/cat-sync.time" "$work/cat-sync.out"

# A third floor: the file through a plain loopback TCP connection into a file, then an
# fsync (`tcp+sync`): what any transfer between two processes pays here before it
# encrypts or hashes anything (bash writes the file to the socket; python3 reads it in
# 1 MiB pieces straight into the file's writes).
cat > "$work/tcp_sink.py" <<'PY'
import os, socket, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
buf = memoryview(bytearray(1 << 20))
while n := conn.recv_into(buf):
    view = buf[:n]
    while view:
        view = view[os.write(out, view):]
os.fsync(out)
PY
tcp_pipe() {
  rm -f "$work/tcp.port"; mkfifo "$work/tcp.port"
  python3 "$work/tcp_sink.py" "$work/tcp-sync.out" > "$work/tcp.port" & local sink=$!
  local port; read -r port < "$work/tcp.port"
  cat "$src" > "/dev/tcp/127.0.0.1/$port"
  wait "$sink"
}
/usr/bin/time -v -o "$work/tcp-sync.time" bash -c "$(declare -f tcp_pipe); work='$work' src='$src' tcp_pipe"
record "tcp+sync" "$work/tcp-sync.time" "$work/tcp-sync.out"

# Ours: peers send / peers receive through a local signaling server.
sig_port="$(free_port)"
"$bin/peers-signaling" --bind "127.0.0.1:$sig_port" --memory true --data-dir "$work/sig" \
  > "$work/sig.log" 2>&1 & pids+=($!)
wait_port "$sig_port"
url="http://127.0.0.1:$sig_port/"
# ours NAME PATHS: one send and receive with --paths PATHS (relay: the server's frame
# relay only; loopback: the relay first, then WebRTC on loopback once it is up; local:
# the relay first, then a socket.io connection to the receiver's local socket).
ours() {
  local name="$1" paths="$2"
  rm -f "$work/send.out"; mkfifo "$work/send.out"
  "$bin/peers" send --json --paths "$paths" --signaling "$url" "$src" > "$work/send.out" 2> "$work/send.err" & pids+=($!)
  local send_pid=$!
  exec 3< "$work/send.out"
  read -r first <&3
  local code
  code="$(echo "$first" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("code", ""))' || true)"
  if [ -z "$code" ]; then
    echo "$name: peers send printed no code: $first" >&2; tail -5 "$work/send.err" >&2; exit 1
  fi
  mkdir -p "$work/$name"
  local start; start="$(date +%s.%N)"
  /usr/bin/time -v -o "$work/$name.time" "$bin/peers" receive "$code" --out "$work/$name" --yes --json \
    --paths "$paths" --signaling "$url" 2> "$work/$name.err" | stamp > "$work/$name.log"
  cat <&3 > /dev/null; exec 3<&-
  wait "$send_pid"
  # From the start of `peers receive CODE` to its first status line with a verified byte.
  local first
  first="$(python3 -c '
import json, sys
start = float(sys.argv[2])
for line in open(sys.argv[1]):
    at, _, text = line.partition(" ")
    event = json.loads(text)
    if event.get("event") == "status" and event.get("bytes_done", 0) > 0:
        print(f"{float(at) - start:.2f}"); break
else:
    print("-")' "$work/$name.log" "$start")"
  record "$name" "$work/$name.time" "$work/$name/data.bin" "$first"
}
wanted relay && ours peers-relay relay
# The library alone: this process receives, the program starts itself again as the sender.
if [ -z "$raw" ]; then
  raw="$(ls -t "$bin"/deps/webrtc_raw_file-* 2> /dev/null | grep -v '\.d$' | head -1 || true)"
fi
# raw_row NAME [--sender COMMAND...]: the raw program receives the file from its sender.
raw_row() {
  local name="$1"; shift
  /usr/bin/time -v -o "$work/$name.time" "$raw" "$src" "$work/$name.out" "$@" 2> "$work/$name.err" \
    || { echo "$name failed:" >&2; tail -5 "$work/$name.err" >&2; exit 1; }
  record "$name" "$work/$name.time" "$work/$name.out"
}
if [ -n "$raw" ] && wanted webrtc-raw; then raw_row webrtc-raw; fi
# The same receiver with node-datachannel's sender in place of webrtc-rs's.
if [ -n "$raw" ] && [ -f "$ndc" ] && command -v node > /dev/null && wanted webrtc-raw-ndc; then
  raw_row webrtc-raw-ndc --sender node "$ndc"
fi
wanted webrtc && ours peers-webrtc loopback
wanted code-local && ours peers-code-local local

# Ours over a local socket: `peers send --to` between two daemons that trust each
# other, connected over socket.io on loopback. The rate is over the sending command's wall time (the daemon's scan of the
# file, then the transfer); the RSS is the receiving daemon's peak (VmHWM).
if wanted local; then
  la="$work/local-a"; lb="$work/local-b"
  pa="$(free_port)"; pb="$(free_port)"
  "$bin/peers" --data-dir "$la" init --user bench > /dev/null
  "$bin/peers" --data-dir "$lb" init --user bench > /dev/null
  share() { "$bin/peers" --data-dir "$1" info --advertise "http://127.0.0.1:$2" | sed -n 's/^share code //p'; }
  code_a="$(share "$la" "$pa")"; code_b="$(share "$lb" "$pb")"
  "$bin/peers" --data-dir "$la" trust "$code_b" --group bench > /dev/null
  "$bin/peers" --data-dir "$lb" trust "$code_a" --group bench > /dev/null
  "$bin/peers" --data-dir "$la" run --group bench --listen "127.0.0.1:$pa" 2> "$work/local-a.log" & pids+=($!)
  "$bin/peers" --data-dir "$lb" run --group bench --listen "127.0.0.1:$pb" --inbox "$work/local-inbox" \
    2> "$work/local-b.log" & pids+=($!)
  daemon_b=$!
  for _ in $(seq 300); do
    "$bin/peers" --data-dir "$la" status 2> /dev/null | grep -q local && break; sleep 0.1
  done
  id_b="$("$bin/peers" --data-dir "$lb" info | sed -n 's/^device //p')"
  /usr/bin/time -v -o "$work/local.time" "$bin/peers" --data-dir "$la" send --to "$id_b" --json "$src" \
    > "$work/local.log" 2>&1
  rss_b="$(awk '/VmHWM/ {print $2}' "/proc/$daemon_b/status")"
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/local.time")"
  secs="$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')"
  row "peers-local" "$secs" "$rss_b" "-" "$work/local-inbox/data.bin"
fi

# magic-wormhole, with its servers on loopback.
if [ -n "$venv" ] && wanted wormhole; then
  mb_port="$(free_port)"; tr_port="$(free_port)"
  (cd "$work" && exec "$venv/bin/twistd" -n --pidfile= wormhole-mailbox --port "tcp:$mb_port:interface=127.0.0.1" \
    > "$work/mailbox.log" 2>&1) & pids+=($!)
  (cd "$work" && exec "$venv/bin/twistd" -n --pidfile= transitrelay --port "tcp:$tr_port:interface=127.0.0.1" \
    > "$work/transit.log" 2>&1) & pids+=($!)
  wait_port "$mb_port"; wait_port "$tr_port"
  wh=("$venv/bin/wormhole" --relay-url "ws://127.0.0.1:$mb_port/v1" --transit-helper "tcp:127.0.0.1:$tr_port")
  wcode="7-benchmark-loopback"
  # --no-listen on both sides: no direct hints (they would name this machine's other
  # interface addresses), so every byte goes through the transit relay on loopback.
  "${wh[@]}" send --no-listen --code "$wcode" "$src" > "$work/wh-send.log" 2>&1 & pids+=($!)
  wsend=$!
  sleep 1
  mkdir -p "$work/wh"
  (cd "$work/wh" && /usr/bin/time -v -o "$work/wh.time" "${wh[@]}" receive --no-listen --accept-file -o data.bin "$wcode" \
    > "$work/wh-recv.log" 2>&1)
  wait "$wsend" || true
  record "magic-wormhole" "$work/wh.time" "$work/wh/data.bin"
fi

# iroh's sendme, when installed (cargo install sendme). Its relays are n0's servers on
# the internet: with them disabled, the ticket carries only this machine's addresses
# and the bytes go direct (QUIC over loopback); without that, `send` waits for a relay
# before it prints a ticket.
if command -v sendme > /dev/null && wanted sendme; then
  (cd "$work/src" && exec sendme send --relay disabled --ticket-type addresses data.bin > "$work/sendme-send.log" 2>&1) & pids+=($!)
  ticket=""
  for _ in $(seq 300); do
    ticket="$(grep -o 'blob[a-z0-9]*' "$work/sendme-send.log" | head -1 || true)"
    [ -n "$ticket" ] && break; sleep 0.1
  done
  mkdir -p "$work/sendme"
  (cd "$work/sendme" && /usr/bin/time -v -o "$work/sendme.time" sendme receive --relay disabled "$ticket" > "$work/sendme-recv.log" 2>&1)
  record "sendme" "$work/sendme.time" "$work/sendme/data.bin"
fi

floor_secs="$(echo "${rows[0]}" | cut -d' ' -f2)"
durable_secs="$(echo "${rows[1]}" | cut -d' ' -f2)"
tcp_secs="$(echo "${rows[2]}" | cut -d' ' -f2)"
printf '%s MiB of random data over loopback\n' "$size_mib"
printf '%-16s %10s %10s %12s %12s %14s %14s\n' "tool" "MB/s" "vs cat" "vs cat+sync" "vs tcp+sync" "peak RSS MiB" "first byte s"
for line in "${rows[@]}"; do
  set -- $line
  awk -v n="$1" -v s="$2" -v r="$3" -v fb="$4" -v b="$bytes" -v f="$floor_secs" -v d="$durable_secs" -v t="$tcp_secs" \
    'BEGIN { s = (s > 0 ? s : 0.01); f = (f > 0 ? f : 0.01); d = (d > 0 ? d : 0.01); t = (t > 0 ? t : 0.01);
             printf "%-16s %10.1f %10.3f %12.3f %12.3f %14.1f %14s\n", n, b/s/1e6, f/s, d/s, t/s, r/1024, fb }'
done
# peers-webrtc against the library alone, when both ran.
raw_secs=""; webrtc_secs=""; ndc_secs=""
for line in "${rows[@]}"; do
  set -- $line
  case "$1" in webrtc-raw) raw_secs="$2" ;; peers-webrtc) webrtc_secs="$2" ;; webrtc-raw-ndc) ndc_secs="$2" ;; esac
done
if [ -n "$raw_secs" ] && [ -n "$webrtc_secs" ]; then
  awk -v r="$raw_secs" -v w="$webrtc_secs" 'BEGIN { printf "peers-webrtc / webrtc-raw: %.2f\n", (w > 0 ? r / w : 0) }'
fi
# webrtc-rs's sender against node-datachannel's, to the same receiver: over the wall
# times, and over the transfers alone (the receivers' "from the channel's open" seconds).
if [ -n "$raw_secs" ] && [ -n "$ndc_secs" ]; then
  open_secs() { sed -n "s/.*from the channel's open \([0-9.]*\) s.*/\1/p" "$1"; }
  awk -v r="$raw_secs" -v n="$ndc_secs" -v ro="$(open_secs "$work/webrtc-raw.err")" -v no="$(open_secs "$work/webrtc-raw-ndc.err")" \
    'BEGIN { printf "webrtc-raw / webrtc-raw-ndc: %.2f (from the channel'"'"'s open: %.2f; target >= 1.0)\n",
             (r > 0 ? n / r : 0), (ro > 0 ? no / ro : 0) }'
fi
