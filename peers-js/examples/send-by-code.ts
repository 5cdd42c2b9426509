// Sends files or directories by code, for the live interop test
// (tests/tests/peers_js_send.rs), printing JSON lines:
//
//   node dist/examples/send-by-code.js SIGNALING_URL [--webrtc] [--no-local] [--cancel-after BYTES] [--rejoin-wait SECONDS] PATH...
//
// It dials the receiver's local socket (the socket.io URLs in its confirmed device
// info) unless --no-local, and goes on there when the handover makes it active
// ({"event":"path","to":"socket.io"}). A new relay after a broken one:
// {"event":"relay","hops"}; a receiver that vanished: {"event":"waiting","rejoins","wait_ms","why"}
// once the code is reopened for it ("done" then carries "hops" and "rejoins").
// With --webrtc it also dials the receiver over WebRTC (node-datachannel, 64 KiB
// messages) and goes on there when the handover makes it active:
// {"event":"path","to","bytes_done"}; "done" then carries "paths":[{"transport","bytes"}].
// {"event":"code","code","entries","bytes"} once the code exists; {"event":"confirmed","receiver"}
// after the PAKE; {"event":"accepted","from","resumed"} with each receiver's first answer;
// {"event":"progress","bytes_done"} after each chunk;
// {"event":"done","bytes","resumed"} once the receiver verified everything;
// {"event":"failed","kind","code","message"} on any failure (exit 1). With --cancel-after
// it cancels once BYTES were handed to the connection ({"event":"cancelling","bytes_done"}).
import { RTCPeerConnection } from "node-datachannel/polyfill";

import { nodeSources, PeerConnectionLike, PeersError, sendByCode, toHex, totalSize } from "../src/index.js";

const report = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const args = process.argv.slice(2);
const url = args.shift();
let cancelAfter: number | undefined;
let withWebRtc = false;
let local = true;
let rejoinWaitMs: number | undefined;
for (;;) {
  if (args[0] === "--webrtc") withWebRtc = true;
  else if (args[0] === "--no-local") local = false;
  else if (args[0] === "--cancel-after") cancelAfter = Number(args.splice(1, 1)[0]);
  else if (args[0] === "--rejoin-wait") rejoinWaitMs = Number(args.splice(1, 1)[0]) * 1000;
  else break;
  args.shift();
}
// 64 KiB messages: node-datachannel stalls on the Rust transport's 256 KiB ones (WebRtcSocketOptions).
const webrtc = withWebRtc
  ? { createPeerConnection: (config: { iceServers: unknown[] }) => new RTCPeerConnection(config as never) as unknown as PeerConnectionLike, socket: { maxFrameSize: 65_536 } }
  : undefined;
const usage = "usage: send-by-code.js SIGNALING_URL [--webrtc] [--no-local] [--cancel-after BYTES] [--rejoin-wait SECONDS] PATH...";
if (!url || args.length === 0 || (cancelAfter !== undefined && !Number.isSafeInteger(cancelAfter)) || (rejoinWaitMs !== undefined && !Number.isSafeInteger(rejoinWaitMs))) {
  report("failed", { message: usage });
  process.exit(2);
}

try {
  const { entries, skipped } = await nodeSources(args);
  if (skipped.length > 0) report("skipped", { paths: skipped });
  let cancelling = false;
  const handle = await sendByCode(url, entries, {
    webrtc,
    local,
    ...(rejoinWaitMs !== undefined ? { rejoinWaitMs } : {}),
    onNewRelay: (hops) => report("relay", { hops }),
    onWaitingForReturn: ({ rejoins, waitMs, why }) => report("waiting", { rejoins, wait_ms: waitMs, why }),
    onPath: (to, done) => report("path", { to, bytes_done: done }),
    onConfirmed: (receiver) => report("confirmed", { receiver: toHex(receiver.device_id) }),
    onAccepted: (from, resumed) => report("accepted", { from, resumed }),
    onProgress: ({ bytesDone }) => {
      report("progress", { bytes_done: bytesDone });
      if (cancelAfter !== undefined && bytesDone >= cancelAfter && !cancelling) {
        cancelling = true;
        report("cancelling", { bytes_done: bytesDone });
        handle.cancel();
      }
    },
  });
  report("code", { code: handle.code, entries: handle.manifest.entries.length, bytes: totalSize(handle.manifest) });
  const sent = await handle.done;
  report("done", { bytes: sent.bytes, resumed: sent.resumed, paths: sent.paths, hops: sent.hops, rejoins: sent.rejoins });
  process.exit(0);
} catch (err) {
  const e = err as PeersError;
  report("failed", { kind: e.kind, code: e.code, message: e.message });
  process.exit(1);
}
