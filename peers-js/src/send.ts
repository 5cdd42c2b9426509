/**
 * Sending by code (docs/protocol.md §9.3–9.5), compatible with `peers receive`: the
 * mirror of `receiveByCode` (./transfer.ts).
 *
 * ```text
 *  sendByCode                                  server                peers receive CODE
 *   fresh device key, register; session-create {"kind": "pake"} → number N
 *   code N-word-word (generateCode) returned   ◀── session-join "N"
 *   "session" joined (peer) ─▶ relay-open peer ═══ relay ═══ relay-open
 *   PAKE as creator (pakeOnRelay) ◀══════════════════════════▶ as joiner
 *   Connection.connect, pinned to the confirmed device (the dialer, as the Rust sender)
 *   call peers:transfer:offer {manifest} ─────────────────────▶ Accept {from} | Decline
 *   stream peers:transfer:data {digest, from}: chunks from `from` (ChunkSending),
 *   each read again and checked against its hash before it goes ─▶ StreamDone
 *   close the connection; session-close (always: a used or burnt code never works again)
 * ```
 *
 * The receiver's `Accept` names the first chunk it lacks (its staging of the same
 * manifest digest, §9.4), so the same files sent again after a cancel or a failure
 * resume there. Better paths (§9.7): with `webrtc` the receiver is dialed over WebRTC
 * too; the connections follow the handover of docs/device.md §4 (`PeerLinks`), and
 * when another connection becomes active the stream ends after the current chunk (a
 * pause), the offer goes again on the new one and the data goes on from the
 * receiver's answer; a retired connection closes only once its stream is over. A
 * connection that breaks under the stream: the offer goes again on another, if one
 * is left (at most {@link MAX_HOPS} times). The protocol logic is sans-IO: the
 * manifest and the chunk order ({@link buildManifest}, {@link ChunkSending},
 * ./manifest.ts), the offer's answer ({@link readAnswer}), the handover
 * (`LinkTable`, ./links.ts); this module only carries it out. What is not built: a new
 * relay after a broken one when no connection is left, waiting for a receiver that
 * vanished to run the code again (§9.5.1).
 */
import { toHex } from "./bytes.js";
import { Brotli } from "./codec.js";
import { Connection, ConnectionConfig, connectionConfig } from "./connection.js";
import { PeersError } from "./errors.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { RANK_RELAY, RANK_WEBRTC } from "./links.js";
import { checkChunk, ChunkSending, Cursor, DEFAULT_TRANSFER_CHUNK_SIZE, buildManifest, Manifest, manifestDigest, SourceEntry, totalSize, transferError } from "./manifest.js";
import { openCode, pakeOnRelay, PeerLinks, pinnedTo, waitForJoin } from "./meet.js";
import { RelaySocket } from "./relay.js";
import { SignalingClient } from "./signaling.js";
import { PathBytes } from "./transfer.js";
import { dialWebRtc, PeerConnectionFactory, WebRtcSocketOptions } from "./webrtc.js";

/** How long the code lives unless told (as `peers send`), ms. */
export const DEFAULT_CODE_TTL_MS = 10 * 60_000;
/** How long the receiving person has to answer the offer (as `peers send`), ms. */
export const DEFAULT_ANSWER_TIMEOUT_MS = 10 * 60_000;
/** Once bytes move, how long nothing may move before the send fails `Stalled` (as `peers send`), ms. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** Where a send stands. */
export type SendStage = "WaitingForPeer" | "Authenticating" | "Connecting" | "Offered" | "Sending" | "Done";

export interface SendProgress {
  /** Bytes handed to the connection, plus those the receiver had before. */
  bytesDone: number;
  bytesTotal: number;
  /** Bytes the receiver had already (a resumed transfer), not sent again. */
  bytesResumed: number;
}

export interface SendOptions {
  /** Words in the code, 2 (default) to 4. */
  words?: number;
  /** The code's lifetime, ms (the server may cap it). Default 10 minutes. */
  ttlMs?: number;
  /** Bytes per chunk, 16 KiB to 4 MiB. Default 1 MiB. */
  chunkSize?: number;
  /** Relay opening deadline after the join, ms. Default 30,000. */
  relayTimeoutMs?: number;
  /** How long the receiving person may take to answer the offer, ms. Default 10 minutes. */
  answerTimeoutMs?: number;
  /** Once the data flows, how long no chunk may go out before the send fails `Stalled`, ms. Default 60,000. */
  stallTimeoutMs?: number;
  /** Brotli for the connection's codec (a browser passes `brotliFromWasm`); Node's `zlib` when absent there. */
  brotli?: Brotli;
  onStage?: (stage: SendStage) => void;
  /** Told once the PAKE confirmed the receiver. */
  onConfirmed?: (receiver: DeviceInfo) => void;
  /** Told the receiver's answer: the first chunk it lacks, and the bytes before it (it had them). */
  onAccepted?: (from: Cursor, resumedBytes: number) => void;
  /** After each chunk handed to the connection. */
  onProgress?: (progress: SendProgress) => void;
  /** Told when the data goes on over another connection (`transport`: "relay", "webrtc"). */
  onPath?: (transport: string, bytesDone: number) => void;
  /**
   * WebRTC (§9.7): with it, the receiver is also dialed over WebRTC (signaled through
   * the server, its ICE servers) once the relay connection is up; when the handover
   * makes that connection active the data stream pauses at a chunk boundary and the
   * transfer goes on there. Without it the transfer stays on the relay.
   */
  webrtc?: { createPeerConnection: PeerConnectionFactory; socket?: WebRtcSocketOptions };
}

export interface Sent {
  manifest: Manifest;
  receiver: DeviceInfo;
  /** Bytes sent in this transfer (without those the receiver had; a chunk sent twice, after a broken connection, counts twice). */
  bytes: number;
  /** Bytes the receiver had before (a resumed transfer). */
  resumed: number;
  /** The connections the data went over, in the order they were first used, with the bytes sent on each. */
  paths: PathBytes[];
}

export interface SendHandle {
  /** The code for the receiving person (`7-maple-orbit`). */
  code: string;
  /** The server's receive page with the code in its fragment, when the server serves the page. */
  link?: string;
  manifest: Manifest;
  /** Resolves once the receiver verified and stored everything. */
  done: Promise<Sent>;
  /**
   * Stops the transfer: the receiver is told "cancelled by the sender" and keeps what
   * it verified (the same files sent again resume there); `done` fails `Cancelled`.
   */
  cancel(): void;
}

/** The receiver's answer to an offer (`Answer` in Rust), read from what the call returned. */
export type OfferAnswer = { accept: Cursor } | { decline: string };

/** Reads an offer's answer: `{Accept: {from: {entry, chunk}}}` or `{Decline: {reason}}`; anything else is `Protocol`. */
export function readAnswer(value: unknown): OfferAnswer {
  const bad = () => transferError("Protocol", `an offer answered with ${JSON.stringify(value)?.slice(0, 200)}`);
  if (typeof value !== "object" || value === null) throw bad();
  const v = value as { Accept?: { from?: { entry?: unknown; chunk?: unknown } }; Decline?: { reason?: unknown } };
  if (v.Accept !== undefined) {
    const from = v.Accept?.from;
    if (typeof from?.entry !== "number" || typeof from.chunk !== "number") throw bad();
    return { accept: { entry: from.entry, chunk: from.chunk } };
  }
  if (typeof v.Decline?.reason === "string") return { decline: v.Decline.reason };
  throw bad();
}

/**
 * Offers `sources` under a fresh code through the signaling server at `url`; resolves
 * with the code as soon as the server made the session (the manifest is built first:
 * every file read once and hashed). The rest runs in the background: `done` resolves
 * once the receiver verified everything, or fails (`Transfer` with `WrongCode`,
 * `Declined`, `Cancelled`, `Closed`, `Timeout`, `Stalled`, `ChunkMismatch` when a file changed
 * since it was read, `Protocol`; or the signaling and connection errors).
 */
export async function sendByCode(url: string, sources: readonly SourceEntry[], options: SendOptions = {}): Promise<SendHandle> {
  const manifest = await buildManifest(sources, options.chunkSize ?? DEFAULT_TRANSFER_CHUNK_SIZE);
  const { keys, signaling, created, code, link } = await openCode(url, options.words, options.ttlMs ?? DEFAULT_CODE_TTL_MS);
  const sender = new Sender(signaling, keys, manifest, sources, code, options);
  const done = (async () => {
    try {
      return await sender.run(created.transferId);
    } finally {
      await signaling.closeSession(created.transferId, created.senderToken).catch(() => undefined);
      signaling.close();
    }
  })();
  void done.catch(() => undefined);
  const handle: SendHandle = { code, manifest, done, cancel: () => sender.cancel() };
  if (link !== undefined) handle.link = link;
  return handle;
}

/** Most times one send goes on over another connection after its connection broke (as the Rust `MAX_RELAY_HOPS`). */
export const MAX_HOPS = 64;

/** How one attempt on a connection ended. */
type Attempt = "Complete" | "Paused";

/** One send once the code is out. */
class Sender {
  private links: PeerLinks | undefined;
  private cancelled!: (err: PeersError) => void;
  /** Rejects when the transfer is cancelled or its last connection closed; raced with every step. */
  private readonly stopped = new Promise<never>((_, reject) => (this.cancelled = reject));
  /** The connection the handover made active: the data goes there. */
  private active: Connection | undefined;
  /** The connection carrying the data stream now, and when that stream is over. */
  private streaming: { connection: Connection; over: Promise<void> } | undefined;
  private bytes = 0;
  private resumed: number | undefined;
  /** Set once `run` ended: a dial that completes later is closed at once. */
  private ended = false;
  private readonly paths: PathBytes[] = [];

  constructor(
    private readonly signaling: SignalingClient,
    private readonly keys: DeviceKeys,
    private readonly manifest: Manifest,
    private readonly sources: readonly SourceEntry[],
    private readonly code: string,
    private readonly options: SendOptions,
  ) {
    void this.stopped.catch(() => undefined);
  }

  cancel(): void {
    this.cancelled(transferError("Cancelled", "cancelled by the sender"));
  }

  private step<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.stopped]);
  }

  async run(transferId: string): Promise<Sent> {
    const stage = (s: SendStage) => this.options.onStage?.(s);
    stage("WaitingForPeer");
    try {
      const peer = await this.step(waitForJoin(this.signaling, transferId, this.options.ttlMs ?? DEFAULT_CODE_TTL_MS, this.stopped));
      stage("Authenticating");
      const relay = await this.step(RelaySocket.open(this.signaling, peer, { timeoutMs: this.options.relayTimeoutMs ?? 30_000 }));
      const receiver = await this.step(pakeOnRelay(relay, this.code, "creator", this.keys.info()));
      this.options.onConfirmed?.(receiver);
      stage("Connecting");
      const config = await connectionConfig(this.keys, pinnedTo(receiver), this.options.brotli ? { brotli: this.options.brotli } : {});
      const connection = await this.step(Connection.connect(relay, config, receiver.device_id));
      const links = new PeerLinks(this.keys.deviceId, receiver.device_id, {
        onEmpty: (reason) => this.cancelled(transferError("Closed", `the receiver closed the connection: ${reason.message}`)),
        onActive: (active) => (this.active = active),
        drained: (c) => (this.streaming?.connection === c ? this.streaming.over : Promise.resolve()),
      });
      this.links = links;
      links.add(connection, RANK_RELAY);
      if (this.options.webrtc) void this.dialWebRtc(receiver, config, links, this.options.webrtc);
      const sent = await this.step(this.transfer(receiver));
      stage("Done");
      await links.close(0, "transfer complete");
      return sent;
    } catch (err) {
      const why = err instanceof PeersError && err.code === "Cancelled" ? "cancelled by the sender" : `transfer failed: ${(err as Error).message}`;
      await this.links?.close(0, why);
      throw err;
    } finally {
      this.ended = true;
    }
  }

  /** Dials the receiver over WebRTC; a verified connection joins the handover, a failed dial leaves the transfer where it is. */
  private async dialWebRtc(receiver: DeviceInfo, config: ConnectionConfig, links: PeerLinks, webrtc: NonNullable<SendOptions["webrtc"]>): Promise<void> {
    // Late candidates of the attempt arrive after it: a listener keeps them out of the client's bounded backlog.
    this.signaling.on("signal", () => undefined);
    try {
      const socket = await dialWebRtc(this.signaling, toHex(receiver.device_id), { createPeerConnection: webrtc.createPeerConnection, ...(webrtc.socket ? { socket: webrtc.socket } : {}) });
      const connection = await Connection.connect(socket, config, receiver.device_id);
      if (this.ended) await connection.close("Normal", "transfer over");
      else links.add(connection, RANK_WEBRTC);
    } catch {
      // No better path: the relay carries the transfer.
    }
  }

  /**
   * Sends over the active connection; pauses at a chunk boundary and goes on over
   * another when the handover switches, and goes on over another when one breaks
   * (at most {@link MAX_HOPS} times).
   */
  private async transfer(receiver: DeviceInfo): Promise<Sent> {
    let hops = 0;
    for (let connection = this.active; ; ) {
      if (!connection) throw transferError("Closed", "no connection to the receiver");
      let attempt: Attempt;
      try {
        attempt = await this.attempt(connection);
      } catch (err) {
        // An answer or a rule (declined, a changed file, a stall) ends it; a broken connection may not.
        if (err instanceof PeersError && err.kind === "Transfer") throw err;
        // A failed write may come before the connection records its close (and the handover moves on): up to 2 s.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([connection.closed, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
        clearTimeout(timer);
        const other = this.active;
        if (other === undefined || other === connection || hops >= MAX_HOPS) throw err;
        hops += 1;
        connection = other;
        continue;
      }
      if (attempt === "Complete") return { manifest: this.manifest, receiver, bytes: this.bytes, resumed: this.resumed ?? 0, paths: this.paths };
      connection = this.active;
    }
  }

  /** One offer and data stream on `connection`: to the end, or paused once another connection is active. */
  private async attempt(connection: Connection): Promise<Attempt> {
    this.options.onStage?.("Offered");
    const answer = readAnswer(await connection.emit("peers:transfer:offer", { manifest: this.manifest }, this.options.answerTimeoutMs ?? DEFAULT_ANSWER_TIMEOUT_MS));
    if ("decline" in answer) throw transferError("Declined", `the receiver declined: ${answer.decline}`);
    const sending = new ChunkSending(this.manifest, answer.accept);
    if (this.resumed === undefined) {
      this.resumed = sending.resumed;
      this.options.onAccepted?.(answer.accept, sending.resumed);
    }
    this.options.onStage?.("Sending");
    const transport = connection.transport;
    let path = this.paths.find((p) => p.transport === transport);
    if (!path) {
      if (this.paths.length > 0) this.options.onPath?.(transport, sending.sentBytes);
      this.paths.push((path = { transport, bytes: 0 }));
    }
    const bytesTotal = totalSize(this.manifest);
    const writer = await connection.openStream("peers:transfer:data", { digest: manifestDigest(this.manifest), from: answer.accept });
    let over!: () => void;
    this.streaming = { connection, over: new Promise<void>((r) => (over = r)) };
    // A receiver that stops taking bytes (its credit never comes) fails the send within the stall timeout.
    const stallMs = this.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const moved = () => {
      clearTimeout(stall);
      stall = setTimeout(() => this.cancelled(transferError("Stalled", `the other side stopped responding: nothing moved for ${stallMs} ms`)), stallMs);
    };
    try {
      moved();
      let paused = false;
      for (;;) {
        if (this.active !== connection && !sending.done) {
          paused = true;
          break;
        }
        const chunk = sending.nextChunk();
        if (!chunk) break;
        const source = this.sources[chunk.entry];
        if (!source || "dir" in source) throw transferError("Protocol", `a chunk of entry ${chunk.entry}, which is no file`);
        const bytes = await source.read(chunk.offset, chunk.length);
        checkChunk(chunk, bytes);
        await writer.write(bytes);
        this.bytes += bytes.length;
        path.bytes += bytes.length;
        moved();
        this.options.onProgress?.({ bytesDone: sending.sentBytes, bytesTotal, bytesResumed: this.resumed });
      }
      await writer.finish();
      return paused ? "Paused" : "Complete";
    } finally {
      clearTimeout(stall);
      this.streaming = undefined;
      over();
    }
  }
}
