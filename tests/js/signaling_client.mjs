// A JavaScript signaling client (socket.io-client 4.x + @noble/ed25519 3.x) that
// speaks docs/signaling.md, driven by tests/tests/signaling_js_interop.rs.
//
//   node signaling_client.mjs ORIGIN PEER_DEVICE_ID
//
// 1. Makes a fresh ed25519 key and derives its device id
//    (SHA-256("peers/v1 device id" || public key)[0..20], hex).
// 2. Joins /signaling, waits for "challenge", signs
//    "peers/v1 signaling register" || nonce || origin (the server's origin,
//    "http://host:port") and registers (with a socket.io ack).
// 3. Watches PEER_DEVICE_ID's presence.
// 4. Echoes every signal it receives back to its sender with the same kind and
//    {"echo": <id>, "body": <body>} (plus the fields the kind requires), and
//    reports each echo's outcome.
// 5. After six signals: sends a forged "from", an oversized SDP and an unknown
//    kind (each must be refused), asks for the ICE configuration without an ack
//    (the reply comes as a "reply" event), then disconnects.
//
// Everything it observes is printed as JSON lines; the last is
// {"event":"finished"}. Any deviation exits with status 1 and a message on stderr.

import { createHash } from "node:crypto";
import * as ed from "@noble/ed25519";
import { io } from "socket.io-client";
import { registration } from "./webrtc_signaling.mjs";

const KINDS = 6;

function fail(message) {
  process.stderr.write(`signaling_client.mjs: ${message}\n`);
  process.exit(1);
}

function report(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

const [origin, peer] = process.argv.slice(2);
if (!origin || !/^[0-9a-f]{40}$/.test(peer ?? "")) fail("usage: signaling_client.mjs ORIGIN PEER_DEVICE_ID");

const secretKey = ed.utils.randomSecretKey();
const publicKey = await ed.getPublicKeyAsync(secretKey);
const deviceId = createHash("sha256")
  .update(Buffer.from("peers/v1 device id", "ascii"))
  .update(publicKey)
  .digest()
  .subarray(0, 20)
  .toString("hex");

const socket = io(`${origin}/signaling`, { transports: ["websocket"], reconnection: false });
const timer = setTimeout(() => fail("timed out"), 20000);
socket.on("connect_error", (err) => fail(`connect_error: ${err.message}`));
socket.on("notice", (notice) => report("notice", { notice }));

function bodyFor(kind, echo) {
  const base = { echo: echo.id, body: echo.body };
  if (kind === "offer" || kind === "answer") return { ...base, sdp: `echo of ${echo.id}` };
  if (kind === "ice-candidate") return { ...base, candidate: `echo ${echo.id}`, sdpMid: "0", sdpMLineIndex: 0 };
  return base;
}

let received = 0;
let counter = 0;
socket.on("signal", async (signal) => {
  report("signal", { signal });
  const reply = await socket.emitWithAck("signal", {
    id: `js-${++counter}`,
    to: signal.from,
    kind: signal.kind,
    body: bodyFor(signal.kind, signal),
  });
  if (!reply.ok) fail(`echo refused: ${JSON.stringify(reply)}`);
  report("echoed", { reply });
  if (++received === KINDS) await hostile();
});

async function hostile() {
  const refused = async (name, request) => {
    const reply = await socket.emitWithAck("signal", request);
    if (reply.ok !== false) fail(`${name} was accepted: ${JSON.stringify(reply)}`);
    report("refused", { name, code: reply.error.code, message: reply.error.message });
  };
  await refused("forged-from", { id: "f", to: peer, from: peer, kind: "ready", body: {} });
  await refused("oversized-sdp", { id: "o", to: peer, kind: "offer", body: { sdp: "a".repeat(40 * 1024) } });
  await refused("unknown-kind", { id: "u", to: peer, kind: "bogus", body: {} });
  // Without an ack the reply arrives as a "reply" event carrying our req.
  const reply = await new Promise((resolve) => {
    socket.on("reply", (value) => value.req === 4242 && resolve(value));
    socket.emit("ice-config", { req: 4242 });
  });
  report("ice-config", { reply });
  clearTimeout(timer);
  socket.disconnect();
  report("finished");
}

socket.on("challenge", async (challenge) => {
  const request = await registration(challenge, origin, secretKey, publicKey).catch((e) => fail(e.message));
  const reply = await socket.emitWithAck("register", request);
  if (!reply.ok || reply.device_id !== deviceId) fail(`registration: ${JSON.stringify(reply)}`);
  const watch = await socket.emitWithAck("subscribe", { devices: [peer] });
  if (!watch.ok) fail(`subscribe: ${JSON.stringify(watch)}`);
  report("registered", { device_id: deviceId, online: watch.online });
});
