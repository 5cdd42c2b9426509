// The browser device of the Chromium interop test (tests/tests/peers_js_chromium.rs,
// driven by tests/js/peers_js_chromium.mjs, which bundles this file for the page with
// esbuild). Everything runs in the page: its keys come from IndexedDB (made and stored
// on the first visit), it registers with the signaling server itself (socket.io-client
// in the page), dials the Rust device with the browser's own RTCPeerConnection, and
// runs the shared exercise (./exercise.ts). Events go to `window.peersReport(event,
// fieldsJson)`, which the driver provides. Brotli comes from brotli-wasm (its
// WebAssembly file fetched beside the bundle).
//
//   /?signaling=URL&rust=DEVICE_ID&mib=N  register, dial the Rust device, call, stream N MiB, wait for the close
//   /?signaling=URL&accept=DEVICE_ID      register, accept that device's dial (WebRtcAcceptor), answer, wait for the close
//   /?signaling=URL&daemon=SHARE_CODE&group=G
//                                         register, accept the dial of a `peers run` daemon that trusts the page in
//                                         group G (./daemon-exercise.ts), call it and answer its control calls, close
//   /?signaling=URL&send=N                send N MiB of the pattern as a picked file (`blobSources`) by code
//                                         (`sendByCode`): "code", "accepted", then "done" with the bytes and the BLAKE3 offered
//   /?socketio=ORIGIN&rust=DEVICE_ID&mib=N
//                                         no signaling: dial the Rust device's socket.io listener at ORIGIN (a
//                                         `SocketIoSocket`, WebSocket only), the handshake with the AEAD on (no
//                                         DTLS to bind), then the same calls and streams as over WebRTC
import { blake3 } from "@noble/hashes/blake3.js";
import brotliWasm from "brotli-wasm";

import {
  blobSources,
  brotliFromWasm,
  Connection,
  connectionConfig,
  dialWebRtc,
  fromHex,
  fromShareCode,
  IndexedDbKeyStore,
  loadOrCreateKeys,
  PeerConnectionLike,
  sendByCode,
  SignalingClient,
  SocketIoSocket,
  toHex,
  toShareCode,
  TrustLevel,
  WebRtcAcceptor,
  WebRtcSocket,
} from "../src/index.js";
import { answerDaemon, exerciseDaemon } from "./daemon-exercise.js";
import { exposeExercise, patternMiB, Report, uploadPattern } from "./exercise.js";

const page = globalThis as unknown as { peersReport?: (event: string, fields: string) => Promise<void> };
const report: Report = (event, fields = {}) => void page.peersReport?.(event, JSON.stringify(fields));

/** Whether this browser's DecompressionStream takes "brotli" (the codec could not use it: it decodes synchronously). */
function browserBrotli(): boolean {
  try {
    new DecompressionStream("brotli" as CompressionFormat);
    return true;
  } catch {
    return false;
  }
}

/** Sends `mib` MiB of the pattern by code, as a person's picked file would go. */
async function sendPattern(url: string, mib: number): Promise<void> {
  const hasher = blake3.create();
  const parts = Array.from({ length: mib }, (_, i) => {
    const piece = new Uint8Array(1024 * 1024);
    patternMiB(i, piece);
    hasher.update(piece);
    return piece;
  });
  const handle = await sendByCode(url, blobSources([new File(parts, "pattern.bin")]), {
    brotli: brotliFromWasm(await brotliWasm),
    onAccepted: (from, resumed) => report("accepted", { from, resumed }),
  });
  report("code", { code: handle.code });
  const sent = await handle.done;
  report("done", { bytes: sent.bytes, blake3: toHex(hasher.digest()) });
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const direct = params.get("socketio");
  const url = params.get("signaling");
  if (!url && !direct) throw new Error("no ?signaling=URL or ?socketio=ORIGIN");
  const send = params.get("send");
  if (send && url) return sendPattern(url, Number(send));
  const streamMiB = Number(params.get("mib") ?? "16");

  const store = new IndexedDbKeyStore();
  const stored = await store.load();
  const keys = stored ?? (await loadOrCreateKeys(store, "browser-user"));
  const signaling = direct ? undefined : await SignalingClient.connect(url!, keys);
  report("identity", {
    share_code: toShareCode(keys.info()),
    device_id: keys.deviceIdHex,
    from_indexeddb: stored !== undefined,
    decompression_stream_brotli: browserBrotli(),
  });
  const dialing = params.get("rust");
  const daemon = params.get("daemon");
  const accepting = params.get("accept") ?? (daemon ? toHex(fromShareCode(daemon).device_id) : null);
  const peer = dialing ?? accepting;
  if (!peer) throw new Error("no ?rust=, ?accept= or ?daemon= device");

  const createPeerConnection = (config: { iceServers: unknown[] }) =>
    new RTCPeerConnection(config as RTCConfiguration) as unknown as PeerConnectionLike;
  let socket: WebRtcSocket | SocketIoSocket;
  if (direct) {
    socket = await SocketIoSocket.connect(direct);
  } else if (dialing) {
    socket = await dialWebRtc(signaling!, dialing, { createPeerConnection });
  } else {
    const acceptor = new WebRtcAcceptor(signaling!, { createPeerConnection, onRefusal: (r) => report("refusal", r) });
    const accepted = await acceptor.accept();
    acceptor.close();
    if (accepted.from !== accepting) throw new Error(`accepted a dial from ${accepted.from}`);
    socket = accepted.socket;
  }
  const binding = socket.info.security.channelBinding;
  report("socket", {
    binding: binding ? { kind: binding.kind, local: toHex(binding.local), remote: toHex(binding.remote) } : null,
  });

  const brotli = brotliFromWasm(await brotliWasm);
  const trust = (p: { device_id: Uint8Array }) => (toHex(p.device_id) === peer ? TrustLevel.Trusted : TrustLevel.Untrusted);
  const config = await connectionConfig(keys, trust, { brotli });
  // A daemon's connection takes part in its handover (./daemon-exercise.ts): its links are set up before the first call can arrive.
  const daemonLinks = daemon ? answerDaemon(keys.deviceId, fromHex(peer), report) : undefined;
  const setup = daemonLinks && ((c: Connection) => daemonLinks.links.prepare(c));
  const connection = dialing ? await Connection.connect(socket, config, fromHex(peer), setup) : await Connection.accept(socket, config, setup);
  report("connected", { encrypted: connection.cipher !== undefined, peer: toHex(connection.remote.device_id) });
  if (daemonLinks) {
    await exerciseDaemon(connection, params.get("group") ?? "", daemonLinks, report);
    signaling?.close();
    report("done");
    return;
  }
  const exercise = exposeExercise(connection, report);
  if (accepting) {
    const reason = await connection.closed;
    report("closed", { reason, reversed: exercise.reversed() });
    signaling?.close();
    report("done");
    return;
  }
  report("echo", { reply: await connection.emit("rust.echo", { text: "hello from a browser", n: 41 }) });
  // A large, compressible answer: the Rust side sends it Brotli-compressed and chunked.
  const text = await connection.emit<string>("rust.text", 300_000);
  report("text", { length: text.length, blake3: toHex(blake3(new TextEncoder().encode(text))) });
  await uploadPattern(connection, streamMiB, report);
  const reason = await connection.closed;
  report("closed", { reason, reversed: exercise.reversed() });
  signaling?.close();
  report("done");
}

main().catch((err: unknown) => report("failed", { message: err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err) }));
