// A peers-js device over WebRTC for the live interop test (tests/tests/peers_js_webrtc.rs):
// registers with the signaling server and meets a Rust `WebRtcEndpoint` through it
// (node-datachannel's RTCPeerConnection), printing what it sees as JSON lines.
//
//   node dist/examples/webrtc-device.js SIGNALING_URL RUST_DEVICE_ID_HEX [--accept] [--stream-mib N]
//
// 1. prints {"event":"identity","share_code","device_id"} once registered;
// 2. dials the Rust device (or, with --accept, waits for its offer), prints
//    {"event":"socket","binding":{kind,local,remote}} (hex fingerprints);
// 3. the handshake expecting RUST_DEVICE_ID_HEX, prints {"event":"connected","encrypted"};
// 4. exposes "js.reverse", calls "rust.echo";
// 5. dialing: streams N MiB (default 16) of a fixed pattern to "upload" and prints its
//    BLAKE3; accepting: receives the stream "download" and prints its size and BLAKE3;
// 6. waits for the Rust side to close and prints the reason.
import { RTCPeerConnection } from "node-datachannel/polyfill";

import {
  Connection,
  connectionConfig,
  DeviceKeys,
  dialWebRtc,
  fromHex,
  WebRtcAcceptor,
  WebRtcSocket,
  PeerConnectionLike,
  SignalingClient,
  toHex,
  toShareCode,
  TrustLevel,
} from "../src/index.js";
import { exposeExercise, Report, uploadPattern } from "./exercise.js";

const report: Report = (event, fields = {}) => void process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [url, rustId, ...rest] = process.argv.slice(2);
if (!url || !rustId) {
  process.stderr.write("usage: webrtc-device.js SIGNALING_URL RUST_DEVICE_ID_HEX [--stream-mib N]\n");
  process.exit(2);
}
let streamMiB = 16;
let accepting = false;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--stream-mib") streamMiB = Number(rest[++i]);
  else if (rest[i] === "--accept") accepting = true;
}
setTimeout(() => {
  process.stderr.write("timed out after 120 s\n");
  process.exit(1);
}, 120_000).unref();

const keys = DeviceKeys.generate("js-user");
const signaling = await SignalingClient.connect(url, keys);
report("identity", { share_code: toShareCode(keys.info()), device_id: keys.deviceIdHex });

const createPeerConnection = (config: { iceServers: unknown[] }) => new RTCPeerConnection(config as never) as unknown as PeerConnectionLike;
let socket: WebRtcSocket;
if (accepting) {
  const acceptor = new WebRtcAcceptor(signaling, {
    createPeerConnection,
    onRefusal: (r) => report("refusal", r),
  });
  const accepted = await acceptor.accept();
  acceptor.close();
  if (accepted.from !== rustId) throw new Error(`accepted a socket from ${accepted.from}`);
  socket = accepted.socket;
} else {
  socket = await dialWebRtc(signaling, rustId, { createPeerConnection });
}
const binding = socket.info.security.channelBinding!;
report("socket", { binding: { kind: binding.kind, local: toHex(binding.local), remote: toHex(binding.remote) }, maxFrameSize: socket.info.maxFrameSize });

const config = await connectionConfig(keys, (peer) => (toHex(peer.device_id) === rustId ? TrustLevel.Trusted : TrustLevel.Untrusted));
const connection = accepting ? await Connection.accept(socket, config) : await Connection.connect(socket, config, fromHex(rustId));
if (toHex(connection.remote.device_id) !== rustId) throw new Error("the handshake authenticated another device");
report("connected", { encrypted: connection.cipher !== undefined, peer: toHex(connection.remote.device_id) });

const exercise = exposeExercise(connection, report);

const echoed = await connection.emit("rust.echo", { text: "hello over webrtc", n: 41 });
report("echo", { reply: echoed });

if (!accepting) await uploadPattern(connection, streamMiB, report);

const reason = await connection.closed;
report("closed", { reason, reversed: exercise.reversed() });
signaling.close();
setTimeout(() => process.exit(0), 100);
