// Shared by the WebRTC interop drivers (webrtc_node_datachannel.mjs,
// webrtc_chromium.mjs): a device registered with the peers signaling server
// (docs/signaling.md), and the frame pattern both sides check.
//
// Registration: the server sends "challenge" {v: 2, nonce}; we sign
// "peers/v1 signaling register" || nonce || origin with a fresh ed25519 key
// (origin: the server URL we dialed as "scheme://host:port", serverOrigin
// below) and send "register" {public_key, origin, signature}. Signals follow docs/transport-webrtc.md
// section 1: every body carries the session id the dialer chose.

import * as ed from "@noble/ed25519";
import { io } from "socket.io-client";
import { randomBytes } from "node:crypto";

export function report(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

export function fail(message) {
  process.stderr.write(`${process.argv[1]}: ${message}\n`);
  process.exit(1);
}

/// pattern(seed, length): the bytes of frame `seed`, as the Rust side makes them.
export function pattern(seed, length) {
  const out = new Uint8Array(length);
  for (let j = 0; j < length; j++) out[j] = (seed * 131 + j * 7 + (j >> 8)) & 0xff;
  return out;
}

/// The origin a registration signs (docs/signaling.md section 2): scheme
/// (ws → http, wss → https), "://", the lowercase host (IPv6 in brackets),
/// ":", the port (80 / 443 when the URL has none).
export function serverOrigin(url) {
  const parsed = new URL(url);
  const scheme = { "http:": "http", "ws:": "http", "https:": "https", "wss:": "https" }[parsed.protocol];
  if (!scheme) throw new Error(`not an http(s) or ws(s) URL: ${url}`);
  return `${scheme}://${parsed.hostname}:${parsed.port || (scheme === "https" ? "443" : "80")}`;
}

/// The registration request answering `challenge` for the server at `url`.
export async function registration(challenge, url, secretKey, publicKey) {
  if (challenge.v !== 2) throw new Error(`unexpected challenge ${JSON.stringify(challenge)}`);
  const origin = serverOrigin(url);
  const message = Buffer.concat([
    Buffer.from("peers/v1 signaling register", "ascii"),
    Buffer.from(challenge.nonce, "base64"),
    Buffer.from(origin, "ascii"),
  ]);
  const signature = await ed.signAsync(message, secretKey);
  return {
    public_key: Buffer.from(publicKey).toString("base64"),
    origin,
    signature: Buffer.from(signature).toString("base64"),
  };
}

export function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/// Connects to the server at `origin`, registers, and returns
/// { deviceId, send(to, kind, body), onSignal(handler), close() }.
export async function registerDevice(origin) {
  const socket = io(origin + "/signaling", { transports: ["websocket"], reconnection: false });
  const challenge = await new Promise((resolve, reject) => {
    socket.once("challenge", resolve);
    socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`)));
    setTimeout(() => reject(new Error("no challenge within 10 s")), 10_000);
  });
  const secretKey = ed.utils.randomSecretKey();
  const publicKey = await ed.getPublicKeyAsync(secretKey);
  const request = await registration(challenge, origin, secretKey, publicKey);
  const reply = await socket.timeout(10_000).emitWithAck("register", request);
  if (!reply.ok) throw new Error(`register refused: ${JSON.stringify(reply.error)}`);
  let next = 0;
  const prefix = randomBytes(4).toString("hex");
  return {
    deviceId: reply.device_id,
    async send(to, kind, body) {
      const id = `js-${prefix}-${next++}`;
      const answer = await socket.timeout(10_000).emitWithAck("signal", { id, to, kind, body, ttl_ms: 15_000 });
      if (!answer.ok) throw new Error(`signal ${kind} refused: ${JSON.stringify(answer.error)}`);
      return answer.outcome;
    },
    onSignal(handler) {
      socket.on("signal", handler);
    },
    close() {
      socket.close();
    },
  };
}

export function sessionId() {
  return randomBytes(16).toString("hex");
}
