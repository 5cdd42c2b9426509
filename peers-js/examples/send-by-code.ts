// Sends files or directories by code, for the live interop test
// (tests/tests/peers_js_send.rs), printing JSON lines:
//
//   node dist/examples/send-by-code.js SIGNALING_URL [--webrtc] [--cancel-after BYTES] PATH...
//
// With --webrtc it also dials the receiver over WebRTC (node-datachannel, 64 KiB
// messages) and goes on there when the handover makes it active:
// {"event":"path","to","bytes_done"}; "done" then carries "paths":[{"transport","bytes"}].
// {"event":"code","code","entries","bytes"} once the code exists; {"event":"confirmed","receiver"}
// after the PAKE; {"event":"accepted","from","resumed"} with the receiver's answer;
// {"event":"done","bytes","resumed"} once the receiver verified everything;
// {"event":"failed","kind","code","message"} on any failure (exit 1). With --cancel-after
// it cancels once BYTES were handed to the connection ({"event":"cancelling","bytes_done"}).
import { RTCPeerConnection } from "node-datachannel/polyfill";

import { nodeSources, PeerConnectionLike, PeersError, sendByCode, toHex, totalSize } from "../src/index.js";

const report = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const args = process.argv.slice(2);
const url = args.shift();
let cancelAfter: number | undefined;
const withWebRtc = args[0] === "--webrtc";
if (withWebRtc) args.shift();
// 64 KiB messages: node-datachannel stalls on the Rust transport's 256 KiB ones (WebRtcSocketOptions).
const webrtc = withWebRtc
  ? { createPeerConnection: (config: { iceServers: unknown[] }) => new RTCPeerConnection(config as never) as unknown as PeerConnectionLike, socket: { maxFrameSize: 65_536 } }
  : undefined;
if (args[0] === "--cancel-after") {
  args.shift();
  cancelAfter = Number(args.shift());
}
if (!url || args.length === 0 || (cancelAfter !== undefined && !Number.isSafeInteger(cancelAfter))) {
  report("failed", { message: "usage: send-by-code.js SIGNALING_URL [--webrtc] [--cancel-after BYTES] PATH..." });
  process.exit(2);
}

try {
  const { entries, skipped } = await nodeSources(args);
  if (skipped.length > 0) report("skipped", { paths: skipped });
  let cancelling = false;
  const handle = await sendByCode(url, entries, {
    webrtc,
    onPath: (to, done) => report("path", { to, bytes_done: done }),
    onConfirmed: (receiver) => report("confirmed", { receiver: toHex(receiver.device_id) }),
    onAccepted: (from, resumed) => report("accepted", { from, resumed }),
    onProgress: ({ bytesDone }) => {
      if (cancelAfter !== undefined && bytesDone >= cancelAfter && !cancelling) {
        cancelling = true;
        report("cancelling", { bytes_done: bytesDone });
        handle.cancel();
      }
    },
  });
  report("code", { code: handle.code, entries: handle.manifest.entries.length, bytes: totalSize(handle.manifest) });
  const sent = await handle.done;
  report("done", { bytes: sent.bytes, resumed: sent.resumed, paths: sent.paths });
  process.exit(0);
} catch (err) {
  const e = err as PeersError;
  report("failed", { kind: e.kind, code: e.code, message: e.message });
  process.exit(1);
}
