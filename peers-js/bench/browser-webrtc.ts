/**
 * The page of the browser-to-Rust WebRTC bench (`cargo bench -p peers-tests --bench
 * browser_webrtc`; its driver `tests/js/peers_js_bench.mjs` bundles this file with
 * esbuild and serves it to headless Chromium).
 *
 *   /?signaling=URL&rust=DEVICE_ID&mib=N&rounds=R[&causes=1][&rawRust=1]
 *
 * The page registers with the signaling server, dials the Rust device over WebRTC and
 * completes the handshake as `examples/browser-device.ts` does (IndexedDB keys, DTLS
 * binding, Brotli from brotli-wasm), and opens a raw `RTCDataChannel` to a
 * node-datachannel peer in the driver (`window.rawAnswer(offerSdp)` returns the answer;
 * both sides gather their candidates first). Then, R rounds alternating:
 *
 * - "peers": N MiB of random bytes (they do not compress) to the Rust device's
 *   "upload" stream, 1 MiB writes, timed from `openStream` to `finish` (the Rust
 *   handler's verdict, after its BLAKE3 of everything);
 * - "raw": the same N MiB over the raw channel, in messages of the stream's piece size
 *   (256 KiB, or the channel's smaller `maxMessageSize`), sending while
 *   `bufferedAmount` is at most 4 MiB and waiting for `bufferedamountlow` (2 MiB), as
 *   `WebRtcSocket` does; timed until the peer's "done" message (it counted every byte).
 *
 * With `causes=1` each round has two more, to test the causes of the gap: "peers-count"
 * (the same stream to the Rust "upload-count" handler, which counts the bytes and hashes
 * nothing) and "raw-frame" (the raw channel in messages of the socket's frame size, as
 * the stream's pieces go to the Rust side).
 *
 * With `rawRust=1` each round has one more: "raw-rust", the raw channel to a webrtc-rs
 * peer in the bench program (`window.rawRustAnswer(offerSdp)`), in messages of that
 * channel's `maxMessageSize` (64 KiB: webrtc-rs names none). Against "raw-frame" it
 * is the receiver's share of the gap; "peers" against it, peers-js's.
 *
 * Events go to `window.peersReport(event, fieldsJson)`: "ready" (the BLAKE3 the Rust
 * side must report, the sizes), "round" (path, round, bytes, ms), then "done" after the
 * Rust side closes, or "failed".
 */
import { blake3 } from "@noble/hashes/blake3.js";
import brotliWasm from "brotli-wasm";

import {
  brotliFromWasm,
  Connection,
  connectionConfig,
  dialWebRtc,
  fromHex,
  IndexedDbKeyStore,
  loadOrCreateKeys,
  PeerConnectionLike,
  SignalingClient,
  StreamWriter,
  toHex,
  toShareCode,
  TrustLevel,
} from "../src/index.js";

type Page = {
  peersReport?: (event: string, fields: string) => Promise<void>;
  rawAnswer?: (offer: string) => Promise<string>;
  rawRustAnswer?: (offer: string) => Promise<string>;
  /** The driver's CPU profiler around the stream's rounds ("start", "stop <label>"); a no-op unless asked for. */
  peersProfile?: (command: string) => Promise<void>;
};
const page = globalThis as unknown as Page;
const report = (event: string, fields: Record<string, unknown> = {}): void => void page.peersReport?.(event, JSON.stringify(fields));

const MIB = 1024 * 1024;
/** The stream piece of peers-js's `StreamWriter` (connection.ts `MAX_PIECE`). */
const PIECE = 256 * 1024;
/** `WebRtcSocket`'s default send buffer high-water mark; it waits for half of it. */
const HIGH = 4 * MIB;

/** 1 MiB of random bytes (`getRandomValues` fills at most 64 KiB per call). */
function randomMiB(): Uint8Array<ArrayBuffer> {
  const data = new Uint8Array(MIB);
  for (let at = 0; at < MIB; at += 65_536) crypto.getRandomValues(data.subarray(at, at + 65_536));
  return data;
}

function once(target: EventTarget, type: string): Promise<Event> {
  return new Promise((resolve) => target.addEventListener(type, resolve, { once: true }));
}

async function gathered(pc: RTCPeerConnection): Promise<void> {
  while (pc.iceGatheringState !== "complete") await once(pc, "icegatheringstatechange");
}

/** A raw channel to the peer `answer` reaches (the driver's node-datachannel peer, or the bench's webrtc-rs one), open. */
async function openRawChannel(answerOffer: ((offer: string) => Promise<string>) | undefined): Promise<{ pc: RTCPeerConnection; channel: RTCDataChannel }> {
  if (!answerOffer) throw new Error("the driver exposes no answer for this raw channel");
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel("raw", { ordered: true });
  channel.binaryType = "arraybuffer";
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await answerOffer(pc.localDescription!.sdp);
  await pc.setRemoteDescription({ type: "answer", sdp: answer });
  if (channel.readyState !== "open") await once(channel, "open");
  return { pc, channel };
}

/** Sends `mib` MiB of `data` in `size`-byte messages; resolves with the ms until the peer's "done". */
async function rawRound(channel: RTCDataChannel, data: Uint8Array<ArrayBuffer>, mib: number, size: number): Promise<number> {
  channel.bufferedAmountLowThreshold = HIGH / 2;
  const done = new Promise<void>((resolve, reject) => {
    channel.onmessage = (ev) => (ev.data === `done ${mib * MIB}` ? resolve() : reject(new Error(`raw peer: ${String(ev.data)}`)));
  });
  const started = performance.now();
  for (let sent = 0; sent < mib * MIB; ) {
    if (channel.bufferedAmount > HIGH) await once(channel, "bufferedamountlow");
    const at = sent % MIB;
    const n = Math.min(size, MIB - at, mib * MIB - sent);
    channel.send(data.subarray(at, at + n));
    sent += n;
  }
  await done;
  return performance.now() - started;
}

/** Streams `mib` MiB of `data` to the Rust device's "upload"; resolves with the ms until its verdict. */
/**
 * What held the stream's sender back, sampled every 2 ms during a round (the private
 * state read through casts; bench diagnostics only): the share of samples with no
 * credit left, and with the data channel's buffered amount above the socket's mark.
 */
function waits(writer: StreamWriter, socket: object): () => { no_credit: number; buffer_full: number } {
  const state = (writer as unknown as { state: { credit: number } }).state;
  const channel = (socket as { channel: RTCDataChannel }).channel;
  let samples = 0;
  let noCredit = 0;
  let full = 0;
  const timer = setInterval(() => {
    samples++;
    if (state.credit === 0) noCredit++;
    if (channel.bufferedAmount > HIGH) full++;
  }, 2);
  return () => {
    clearInterval(timer);
    const share = (n: number) => Math.round((100 * n) / Math.max(1, samples)) / 100;
    return { no_credit: share(noCredit), buffer_full: share(full) };
  };
}

async function peersRound(connection: Connection, socket: object, data: Uint8Array, mib: number, stream = "upload", label = stream): Promise<{ ms: number; waits: object }> {
  await page.peersProfile?.("start");
  const started = performance.now();
  const writer = await connection.openStream(stream, { size: mib * MIB });
  const sampled = waits(writer, socket);
  for (let i = 0; i < mib; i++) await writer.write(data);
  await writer.finish();
  const ms = performance.now() - started;
  const held = sampled();
  await page.peersProfile?.(`stop ${label}`);
  return { ms, waits: held };
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const url = params.get("signaling");
  const rust = params.get("rust");
  if (!url || !rust) throw new Error("needs ?signaling=URL&rust=DEVICE_ID");
  const mib = Number(params.get("mib") ?? "64");
  const rounds = Number(params.get("rounds") ?? "3");
  const causes = params.get("causes") === "1";
  const rawRust = params.get("rawRust") === "1";

  const data = randomMiB();
  const hasher = blake3.create();
  for (let i = 0; i < mib; i++) hasher.update(data);

  const store = new IndexedDbKeyStore();
  const keys = (await store.load()) ?? (await loadOrCreateKeys(store, "browser-bench"));
  const signaling = await SignalingClient.connect(url, keys);
  report("identity", { share_code: toShareCode(keys.info()) });
  const createPeerConnection = (config: { iceServers: unknown[] }) =>
    new RTCPeerConnection(config as RTCConfiguration) as unknown as PeerConnectionLike;
  const socket = await dialWebRtc(signaling, rust, { createPeerConnection });
  const brotli = brotliFromWasm(await brotliWasm);
  const trust = (p: { device_id: Uint8Array }) => (toHex(p.device_id) === rust ? TrustLevel.Trusted : TrustLevel.Untrusted);
  const connection = await Connection.connect(socket, await connectionConfig(keys, trust, { brotli }), fromHex(rust));

  const raw = await openRawChannel(page.rawAnswer);
  const size = Math.min(PIECE, raw.pc.sctp?.maxMessageSize ?? PIECE);
  const toRust = rawRust ? await openRawChannel(page.rawRustAnswer) : undefined;
  const rustSize = toRust ? Math.min(PIECE, toRust.pc.sctp?.maxMessageSize ?? PIECE) : 0;
  report("ready", { blake3: toHex(hasher.digest()), bytes: mib * MIB, raw_message: size, frame_size: socket.info.maxFrameSize, raw_rust_message: rustSize });
  for (let round = 1; round <= rounds; round++) {
    report("round", { path: "peers", round, bytes: mib * MIB, ...(await peersRound(connection, socket, data, mib, "upload", `peers.${round}`)) });
    report("round", { path: "raw", round, bytes: mib * MIB, ms: await rawRound(raw.channel, data, mib, size) });
    if (toRust) report("round", { path: "raw-rust", round, bytes: mib * MIB, ms: await rawRound(toRust.channel, data, mib, rustSize) });
    if (!causes) continue;
    report("round", { path: "peers-count", round, bytes: mib * MIB, ...(await peersRound(connection, socket, data, mib, "upload-count", `peers-count.${round}`)) });
    report("round", { path: "raw-frame", round, bytes: mib * MIB, ms: await rawRound(raw.channel, data, mib, Math.min(size, socket.info.maxFrameSize)) });
  }
  raw.pc.close();
  toRust?.pc.close();
  report("rounds");
  const reason = await connection.closed;
  signaling.close();
  report("done", { reason });
}

main().catch((err: unknown) => report("failed", { message: err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err) }));
