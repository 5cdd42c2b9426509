// A peers-js device over the signaling server's frame relay, for the live interop
// test (tests/tests/peers_js_relay.rs): registers, opens a relay with the Rust
// device (which opens one with this device too), runs the handshake over it (this
// side dials) and the shared exercise (./exercise.ts), printing JSON lines.
//
//   node dist/examples/relay-device.js SIGNALING_URL RUST_DEVICE_ID_HEX [--stream-mib N]
//
// 1. {"event":"identity","share_code","device_id"} once registered;
// 2. {"event":"relay","relay","maxFrameSize","confidential"} once the server opened it;
// 3. {"event":"connected","cipher","peer"} after the handshake;
// 4. "echo", then N MiB (default 16) of the pattern to "upload" ("streamed" with its
//    BLAKE3); "downloaded" for a stream from the Rust side; "closed" with the reason.
import {
  Connection,
  connectionConfig,
  DeviceKeys,
  fromHex,
  RelaySocket,
  SignalingClient,
  toHex,
  toShareCode,
  TransportCipher,
  TrustLevel,
} from "../src/index.js";
import { exposeExercise, Report, uploadPattern } from "./exercise.js";

const report: Report = (event, fields = {}) => void process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [url, rustId, ...rest] = process.argv.slice(2);
if (!url || !rustId) {
  process.stderr.write("usage: relay-device.js SIGNALING_URL RUST_DEVICE_ID_HEX [--stream-mib N]\n");
  process.exit(2);
}
let streamMiB = 16;
for (let i = 0; i < rest.length; i++) if (rest[i] === "--stream-mib") streamMiB = Number(rest[++i]);
setTimeout(() => {
  process.stderr.write("timed out after 150 s\n");
  process.exit(1);
}, 150_000).unref();

const keys = DeviceKeys.generate("js-user");
const signaling = await SignalingClient.connect(url, keys);
report("identity", { share_code: toShareCode(keys.info()), device_id: keys.deviceIdHex });

const socket = await RelaySocket.open(signaling, rustId);
report("relay", { relay: socket.relay, maxFrameSize: socket.info.maxFrameSize, confidential: socket.info.security.confidential });

const config = await connectionConfig(keys, (peer) => (toHex(peer.device_id) === rustId ? TrustLevel.Trusted : TrustLevel.Untrusted));
const connection = await Connection.connect(socket, config, fromHex(rustId));
report("connected", { cipher: connection.cipher === undefined ? null : TransportCipher[connection.cipher], peer: toHex(connection.remote.device_id) });
const exercise = exposeExercise(connection, report);
report("echo", { reply: await connection.emit("rust.echo", { text: "hello over the relay", n: 41 }) });
await uploadPattern(connection, streamMiB, report);

const reason = await connection.closed;
report("closed", { reason, reversed: exercise.reversed() });
signaling.close();
setTimeout(() => process.exit(0), 100);
