/**
 * peers-js: the `peers` protocol in TypeScript for Node 20 and browsers.
 *
 * What it does: device identity (ed25519 + x25519, the device id, share codes,
 * the key file), the PeerTx codec, the Noise XX handshake with static-key certificates and
 * cipher negotiation (sans-IO states), sealed frames, `Connection` (RPC both ways,
 * streams with credit, close reasons), a socket.io `Socket`
 * and the signaling client (registration, signals and their outcomes, presence,
 * ICE configuration, paced frame relays, registering again after a drop), the
 * transfer PAKE, receiving a transfer by code (moving to WebRTC with the sender;
 * staged on disk in Node so a rerun resumes, `directoryStore`) and saving it in a
 * browser, sending a transfer by code (`send.ts`, on the relay, the receiver's local
 * socket and WebRTC), pairing by code (`pair.ts`).
 *
 * ```ts
 * const keys = await loadOrCreateKeys(new FileKeyStore("device.key"), "alice");
 * const config = await connectionConfig(keys, (peer) => TrustLevel.Trusted);
 * const socket = await SocketIoSocket.connect("http://127.0.0.1:7700");
 * const connection = await Connection.connect(socket, config);
 * const answer = await connection.emit("echo", { text: "hi" });
 * ```
 */
export * from "./brotli-wasm.js";
export * from "./bytes.js";
export * from "./codec.js";
export * from "./connection.js";
export * from "./envelope.js";
export * from "./errors.js";
export * from "./handshake.js";
export * from "./identity.js";
export * from "./keystore-indexeddb.js";
export * from "./pake.js";
export * from "./flow.js";
export * from "./relay.js";
export * from "./seal.js";
export * from "./signaling.js";
export * from "./socket.js";
export * from "./transfer.js";
export * from "./manifest.js";
export * from "./code.js";
export * from "./meet.js";
export * from "./send.js";
export * from "./pair.js";
export * from "./sources.js";
export * from "./webrtc.js";
export * from "./save-browser.js";
export * from "./links.js";
export * from "./pace.js";
export * from "./recovery.js";
export * from "./staging-node.js";
export * from "./staging-browser.js";
