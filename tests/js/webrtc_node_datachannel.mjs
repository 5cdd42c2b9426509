// A node-datachannel (libdatachannel) peer that dials a Rust device through the
// peers signaling server and exchanges frames both ways; driven by
// tests/tests/webrtc_interop_js.rs.
//
//   node webrtc_node_datachannel.mjs ORIGIN RUST_DEVICE_ID FRAMES
//
// 1. Registers with the server (prints {"event":"registered","device_id"}).
// 2. Creates an ordered data channel "peers", sends the offer and trickles
//    candidates (bodies carry the session id), applies the answer and the Rust
//    side's candidates.
// 3. On open: expects the Rust greeting, pattern(1000, 50000); sends FRAMES
//    binary frames, frame i = pattern(i, size(i)); expects each echoed back in
//    order and byte for byte.
// 4. Sends the close control message {"t":"close","code":"Normal",
//    "message":"js done"} and exits after {"event":"finished"}.
// Any deviation exits with status 1 and a message on stderr.

import { RTCPeerConnection } from "node-datachannel/polyfill";
import { fail, pattern, registerDevice, report, sameBytes, sessionId } from "./webrtc_signaling.mjs";
import { runDialer } from "./webrtc_dialer.mjs";

const [origin, rustDevice, frames] = process.argv.slice(2);
if (!origin || !rustDevice) fail("usage: webrtc_node_datachannel.mjs ORIGIN RUST_DEVICE_ID FRAMES");
setTimeout(() => fail("timed out after 60 s"), 60_000).unref();

const device = await registerDevice(origin).catch((e) => fail(e.message));
report("registered", { device_id: device.deviceId });
const pc = new RTCPeerConnection({ iceServers: [] });
try {
  const summary = await runDialer({
    pc,
    send: (kind, body) => device.send(rustDevice, kind, body),
    subscribe: (handler) => device.onSignal((signal) => signal.from === rustDevice && handler(signal.kind, signal.body)),
    frames: Number(frames || 20),
    session: sessionId(),
    pattern,
    sameBytes,
  });
  report("verified", summary);
} catch (e) {
  fail(e.stack || String(e));
}
pc.close();
device.close();
report("finished");
setTimeout(() => process.exit(0), 200);
