// A peers-js device for the live interop test (tests/tests/peers_js.rs): dials a
// Rust `SocketIoServer` + `Connection::accept`, and prints what it sees as JSON lines.
//
//   node dist/examples/device.js ORIGIN RUST_DEVICE_ID_HEX [--cipher aes|chacha] [--stream-mib N]
//
// 1. prints {"event":"identity","share_code":...};
// 2. connects (socket.io, then the handshake, expecting RUST_DEVICE_ID_HEX);
//    a refusal prints {"event":"refused","kind","code","message"} and exits 0;
// 3. exposes "js.reverse" (a string, reversed), calls "rust.echo" {text, n};
//    calls "rust.text" (a compressible answer: Brotli from Rust) and "rust.noise"
//    (3 MiB of incompressible bytes: CHUNK frames from Rust);
// 4. streams N MiB (default 64) of a fixed pattern to "upload" and prints its BLAKE3;
//    receives a stream "download" from the Rust side and prints its size and BLAKE3;
// 5. waits for the connection to close (the Rust side closes, or asks this side to
//    with "js.close") and prints the reason.
import { blake3 } from "@noble/hashes/blake3.js";

import {
  Connection,
  connectionConfig,
  DeviceKeys,
  fromHex,
  PeersError,
  SocketIoSocket,
  toHex,
  toShareCode,
  TransportCipher,
  TrustLevel,
} from "../src/index.js";
import { exposeExercise, Report, uploadPattern } from "./exercise.js";

const report: Report = (event, fields = {}) => void process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [origin, rustId, ...rest] = process.argv.slice(2);
if (!origin || !rustId) {
  process.stderr.write("usage: device.js ORIGIN RUST_DEVICE_ID_HEX [--cipher aes|chacha] [--stream-mib N]\n");
  process.exit(2);
}
let cipher = TransportCipher.ChaCha20Poly1305;
let streamMiB = 64;
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--cipher") cipher = rest[++i] === "aes" ? TransportCipher.Aes256Gcm : TransportCipher.ChaCha20Poly1305;
  else if (rest[i] === "--stream-mib") streamMiB = Number(rest[++i]);
}

const keys = DeviceKeys.generate("js-user");
report("identity", { share_code: toShareCode(keys.info()), device_id: keys.deviceIdHex });

const rustDevice = fromHex(rustId);
const config = await connectionConfig(keys, (peer) =>
  toHex(peer.device_id) === rustId ? TrustLevel.Trusted : TrustLevel.Untrusted,
);
config.handshake.ciphers = [cipher];
const socket = await SocketIoSocket.connect(origin);
let connection: Connection;
try {
  connection = await Connection.connect(socket, config, rustDevice);
} catch (err) {
  const e = err as PeersError;
  report("refused", { kind: e.kind, code: e.code, message: e.message });
  process.exit(0);
}
report("connected", { cipher: connection.cipher === undefined ? null : TransportCipher[connection.cipher], peer: toHex(connection.remote.device_id) });

const exercise = exposeExercise(connection, report);

// The Rust side asks this device to close: after the reply is queued, with a reason.
let closing: Promise<void> | undefined;
connection.expose("js.close", () => {
  setTimeout(() => (closing = connection.close("Normal", "js done")), 0);
  return null;
});

const echoed = await connection.emit("rust.echo", { text: "hello from peers-js", n: 41 });
report("echo", { reply: echoed });
// A large, compressible answer: the Rust side sends it Brotli-compressed and chunked.
const text = await connection.emit<string>("rust.text", 300_000);
report("text", { length: text.length, blake3: toHex(blake3(new TextEncoder().encode(text))) });
// A large incompressible answer: the Rust side sends it in CHUNK frames.
const noise = await connection.emit<Uint8Array>("rust.noise", 3 * 1024 * 1024 + 5);
report("noise", { length: noise.length, blake3: toHex(blake3(noise)) });

await uploadPattern(connection, streamMiB, report);

const reason = await connection.closed;
await closing; // our own close: the notice is on its way before we exit
report("closed", { reason, reversed: exercise.reversed() });
process.exit(0);
