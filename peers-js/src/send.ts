/**
 * Sending by code (docs/protocol.md §9.3–9.7), compatible with `peers receive`: the
 * mirror of `receiveByCode` (./transfer.ts).
 *
 * ```text
 *  sendByCode                                  server                peers receive CODE
 *   fresh device key, register; session-create {"kind": "pake"} → number N
 *   code N-word-word (generateCode) returned   ◀── session-join "N"
 *   "session" joined (peer) ─▶ relay-open peer ═══ relay ═══ relay-open
 *   PAKE as creator (pakeOnRelay) ◀══════════════════════════▶ as joiner
 *   Connection.connect, pinned to the confirmed device (the dialer, as the Rust sender)
 *   dial its local socket (the URLs in its DeviceInfo) and WebRTC ──▶ better paths
 *   call peers:transfer:offer {manifest} ─────────────────────▶ Accept {from} | Decline
 *   stream peers:transfer:data {digest, from}: chunks from `from` (ChunkSending),
 *   each read again and checked against its hash before it goes ─▶ StreamDone
 *   close the connection; session-close (always: a used or burnt code never works again)
 * ```
 *
 * The receiver's `Accept` names the first chunk it lacks (its staging of the same
 * manifest digest, §9.4), so the same files sent again after a cancel or a failure
 * resume there. Better paths (§9.7): the receiver's local socket (the socket.io URLs
 * its confirmed device info names, at most 8, each ranked by its address: local for
 * loopback and private ones, internet otherwise; `local: false` turns it off) and,
 * with `webrtc`, WebRTC. The connections follow the handover of docs/device.md §4
 * (`PeerLinks`); when another connection becomes active the stream ends after the
 * current chunk (a pause), the offer goes again on the new one and the data goes on
 * from the receiver's answer; a retired connection closes only once its stream is over.
 *
 * Breaks (§9.5, §9.5.1): a connection that breaks under the stream is followed by an
 * offer on another, if one is active; with none left, after a path failure that came
 * after bytes moved and while the server has the receiver online (presence), by a new
 * relay (the receiver opens one too; the same pinned handshake, no new PAKE); at most
 * {@link MAX_HOPS} of both per receiver. A receiver that vanished (its relay gone and
 * it offline, or nothing moving for the stall timeout) is waited for: the sender
 * reopens the code's session (`session-reopen`), and whoever joins next runs a new
 * PAKE on the same words and answers the offer from what it kept; at most
 * {@link MAX_REJOINS} waits of `rejoinWaitMs` (5 minutes), never past the code's
 * lifetime. The protocol logic is sans-IO: the manifest and the chunk order
 * ({@link buildManifest}, {@link ChunkSending}, ./manifest.ts), the offer's answer
 * ({@link readAnswer}), the handover and the URL ranks (`LinkTable`, `localUrls`,
 * ./links.ts), what follows a break (./recovery.ts); this module only carries it out.
 *
 * The signaling connection (§9.5 and docs/signaling.md): the client registers again
 * after a drop (a server restart, a network blip; ./reconnect.ts). A transfer on a
 * direct path (WebRTC, the receiver's local socket) goes on untouched; one on the
 * relay loses it (the server binds relays to the socket that opened them), and both
 * sides open a new relay once registered again, run the pinned handshake on it and
 * go on from the receiver's last verified chunk (a hop, ./recovery.ts). What lives in
 * the server's store does not survive a restart of an in-memory server: a code not yet
 * used, or a receiver that vanished during the outage, cannot come back through the
 * code's session (`SessionNotFound`), and the send fails.
 */
import { toHex } from "./bytes.js";
import { Brotli } from "./codec.js";
import { Connection, ConnectionConfig, connectionConfig } from "./connection.js";
import { PeersError } from "./errors.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { localUrls, RANK_RELAY, RANK_WEBRTC, socketIoTarget, urlRank } from "./links.js";
import { checkChunk, ChunkSending, Cursor, DEFAULT_TRANSFER_CHUNK_SIZE, buildManifest, Manifest, manifestDigest, SourceEntry, totalSize, transferError } from "./manifest.js";
import { openCode, pakeOnRelay, PeerLinks, pinnedTo, waitForJoin } from "./meet.js";
import { RelaySocket } from "./relay.js";
import { afterBreak, DEFAULT_REJOIN_WAIT_MS, PEER_RETURN_WAIT_MS, rejoinWait, SIGNALING_RETURN_WAIT_MS } from "./recovery.js";
import { CreatedSession, PresenceChange, SignalingClient, SignalingState } from "./signaling.js";
import { Socket, SocketIoOptions, SocketIoSocket } from "./socket.js";
import { PathBytes } from "./transfer.js";
import { dialWebRtc, PeerConnectionFactory, WebRtcSocketOptions } from "./webrtc.js";

/** How long the code lives unless told (as `peers send`), ms. */
export const DEFAULT_CODE_TTL_MS = 10 * 60_000;
/** How long the receiving person has to answer the offer (as `peers send`), ms. */
export const DEFAULT_ANSWER_TIMEOUT_MS = 10 * 60_000;
/** Once bytes move, how long nothing may move before the send fails `Stalled` (as `peers send`), ms. */
export const DEFAULT_STALL_TIMEOUT_MS = 60_000;

/** Where a send stands. */
export type SendStage = "WaitingForPeer" | "Authenticating" | "Connecting" | "Offered" | "Sending" | "WaitingForReturn" | "Done";

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
  /** Told when the data goes on over another kind of connection (`transport`: "relay", "webrtc", "socket.io"). */
  onPath?: (transport: string, bytesDone: number) => void;
  /** Told when a new relay replaced a broken one (`hops`: moves after a break so far, this one included). */
  onNewRelay?: (hops: number) => void;
  /**
   * Told when the sender's signaling connection dropped and it registers again
   * (`"reconnecting"`), and when it is registered again (`"registered"`), beside the
   * stage: the data may keep moving on WebRTC or a local socket meanwhile (as the Rust
   * `Status::signaling`, docs/protocol.md §9.5).
   */
  onSignaling?: (state: SignalingState["state"]) => void;
  /**
   * Told when the receiver vanished mid-way (§9.5.1) and the sender reopened the code:
   * `peers receive CODE` run again (into the same directory) resumes. `rejoins`
   * counts the waits, `waitMs` is how long this one lasts, `why` what broke.
   */
  onWaitingForReturn?: (wait: { rejoins: number; waitMs: number; why: string }) => void;
  /**
   * How long to wait each time for a receiver that vanished to run the code again, ms
   * (at most {@link MAX_REJOINS} times, never past the code's lifetime); 0 fails at
   * once. Default 5 minutes (as `peers send --rejoin-wait`).
   */
  rejoinWaitMs?: number;
  /**
   * The receiver's local socket (§9.7): its confirmed device info names socket.io URLs
   * (`peers receive` listens on its interfaces); the sender dials them (at most 8,
   * loopback and private addresses first) with the same pinned trust, and the transfer
   * moves there mid-way as it does to WebRTC. `false` turns it off (as `--paths relay`);
   * an object passes socket.io options for the dials. Default: on.
   */
  local?: boolean | SocketIoOptions;
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
  /** Moves to another connection or a new relay after a break. */
  hops: number;
  /** Times the receiver vanished and came back with the code. */
  rejoins: number;
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
  const onState = (state: SignalingState) => options.onSignaling?.(state.state);
  signaling.on("state", onState);
  const done = (async () => {
    try {
      return await sender.run(created);
    } finally {
      await signaling.closeSession(created.transferId, created.senderToken).catch(() => undefined);
      signaling.off("state", onState);
      signaling.close();
    }
  })();
  void done.catch(() => undefined);
  const handle: SendHandle = { code, manifest, done, cancel: () => sender.cancel() };
  if (link !== undefined) handle.link = link;
  return handle;
}

/** How one attempt on a connection ended. */
type Attempt = "Complete" | "Paused";

/** One receiver the sender met (the first, or one that ran the code again): its connections and where the data goes. */
interface Round {
  receiver: DeviceInfo;
  /** The receiver's device id, hex (the relay's peer). */
  peer: string;
  config: ConnectionConfig;
  links: PeerLinks;
  /** The connection the handover made active: the data goes there. */
  active: Connection | undefined;
  /** The connection carrying the data stream now, and when that stream is over. */
  streaming: { connection: Connection; over: Promise<void> } | undefined;
  /** Fails the round (a stall): raced with its transfer. */
  fail: (err: PeersError) => void;
  failed: Promise<never>;
  /** Set once the round ended: its background work (dials, a broken attempt) stops. */
  over: boolean;
  /** Whether this receiver answered an offer yet. */
  accepted: boolean;
}

/** One send once the code is out. */
class Sender {
  private cancelled!: (err: PeersError) => void;
  /** Rejects when the transfer is cancelled; raced with every step. */
  private readonly stopped = new Promise<never>((_, reject) => (this.cancelled = reject));
  private bytes = 0;
  private resumed: number | undefined;
  private hops = 0;
  private rejoins = 0;
  /** The receivers met so far (at most one per rejoin): a `joined` told again for one of them is no new join. */
  private readonly met: string[] = [];
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
    // Late WebRTC candidates and presence changes arrive unasked: listeners keep them out of the client's bounded backlog.
    this.signaling.on("signal", () => undefined).on("presence", () => undefined);
  }

  cancel(): void {
    this.cancelled(transferError("Cancelled", "cancelled by the sender"));
  }

  private step<T>(work: Promise<T>): Promise<T> {
    return Promise.race([work, this.stopped]);
  }

  /**
   * Meets the receiver and sends; when the receiver vanishes mid-way, reopens the
   * code's session and does it again with whoever joins next (a new PAKE on the same
   * words), at most {@link MAX_REJOINS} times and never past the code's lifetime.
   */
  async run(created: CreatedSession): Promise<Sent> {
    const stage = (s: SendStage) => this.options.onStage?.(s);
    stage("WaitingForPeer");
    let joinWait = this.options.ttlMs ?? DEFAULT_CODE_TTL_MS;
    try {
      for (;;) {
        const round = await this.meet(created.transferId, created.senderToken, joinWait);
        try {
          const sent = await this.step(Promise.race([this.transfer(round), round.failed]));
          stage("Done");
          round.over = true;
          await round.links.close(0, "transfer complete");
          return sent;
        } catch (err) {
          round.over = true;
          const wait = rejoinWait(err, this.rejoins, this.options.rejoinWaitMs ?? DEFAULT_REJOIN_WAIT_MS, created.expiresAt, Date.now());
          const cancelled = err instanceof PeersError && err.code === "Cancelled";
          await round.links.close(0, cancelled ? "cancelled by the sender" : wait !== undefined ? "the receiver is gone" : `transfer failed: ${(err as Error).message}`);
          if (wait === undefined) throw err;
          try {
            await this.step(this.signaling.reopenSession(created.transferId, created.senderToken));
          } catch (refused) {
            if (refused instanceof PeersError && refused.code === "Cancelled") throw refused;
            throw transferError("Protocol", `the receiver is gone (${(err as Error).message}) and the code cannot take it back: ${(refused as Error).message}`);
          }
          this.rejoins += 1;
          joinWait = wait;
          stage("WaitingForReturn");
          this.options.onWaitingForReturn?.({ rejoins: this.rejoins, waitMs: wait, why: (err as Error).message });
        }
      }
    } finally {
      this.ended = true;
    }
  }

  /** Waits for a join, runs the PAKE and the pinned handshake on the relay; a failure here ends the send (no new round). */
  private async meet(transferId: string, token: string, joinWait: number): Promise<Round> {
    const stage = (s: SendStage) => this.options.onStage?.(s);
    let peer: string;
    try {
      peer = await this.step(waitForJoin(this.signaling, transferId, joinWait, this.stopped, token, this.met));
      this.met.push(peer);
    } catch (err) {
      if (this.rejoins > 0 && err instanceof PeersError && err.code === "Timeout") {
        throw transferError("Timeout", `the receiver did not run the same code again within ${joinWait} ms`);
      }
      throw err;
    }
    stage("Authenticating");
    const relay = await this.step(RelaySocket.open(this.signaling, peer, { timeoutMs: this.options.relayTimeoutMs ?? 30_000 }));
    const receiver = await this.step(pakeOnRelay(relay, this.code, "creator", this.keys.info()));
    this.options.onConfirmed?.(receiver);
    stage("Connecting");
    const config = await connectionConfig(this.keys, pinnedTo(receiver), this.options.brotli ? { brotli: this.options.brotli } : {});
    let fail!: (err: PeersError) => void;
    const failed = new Promise<never>((_, reject) => (fail = reject));
    void failed.catch(() => undefined);
    const round: Round = { receiver, peer, config, links: undefined as never, active: undefined, streaming: undefined, fail, failed, over: false, accepted: false };
    round.links = new PeerLinks(this.keys.deviceId, receiver.device_id, {
      // A broken attempt decides what follows (another connection, a new relay, a rejoin).
      onEmpty: () => undefined,
      onActive: (active) => (round.active = active),
      drained: (c) => (round.streaming?.connection === c ? round.streaming.over : Promise.resolve()),
    });
    round.links.add(await this.step(this.connect(round, relay)), RANK_RELAY);
    if (this.options.webrtc) void this.dialWebRtc(round, this.options.webrtc);
    const local = this.options.local ?? true;
    if (local !== false) void this.dialLocal(round, localUrls(receiver.addresses), local === true ? {} : local);
    return round;
  }

  /** The pinned handshake to the round's receiver on `socket`, the handover's RPCs exposed before the peer can call. */
  private connect(round: Round, socket: Socket): Promise<Connection> {
    return Connection.connect(socket, round.config, round.receiver.device_id, (c) => round.links.prepare(c));
  }

  /** Adds a dialed connection to the round, or closes it when the round is over. */
  private async join(round: Round, connection: Connection, rank: number): Promise<void> {
    if (this.ended || round.over) await connection.close("Normal", "transfer over");
    else round.links.add(connection, rank);
  }

  /** Dials the receiver over WebRTC; a verified connection joins the handover, a failed dial leaves the transfer where it is. */
  private async dialWebRtc(round: Round, webrtc: NonNullable<SendOptions["webrtc"]>): Promise<void> {
    try {
      const socket = await dialWebRtc(this.signaling, round.peer, { createPeerConnection: webrtc.createPeerConnection, ...(webrtc.socket ? { socket: webrtc.socket } : {}) });
      await this.join(round, await this.connect(round, socket), RANK_WEBRTC);
    } catch {
      // No better path: the relay carries the transfer.
    }
  }

  /**
   * Dials the receiver's local socket (§9.7): its advertised socket.io URLs, best
   * rank first, until one runs the pinned handshake; that connection joins the
   * handover ranked by its address. A URL that does not answer (another network, a
   * browser's mixed-content rule) is skipped; none left: the transfer stays where it is.
   */
  private async dialLocal(round: Round, urls: string[], socket: SocketIoOptions): Promise<void> {
    for (const url of urls) {
      if (this.ended || round.over) return;
      try {
        const target = socketIoTarget(url);
        const io = await SocketIoSocket.connect(target.origin, { path: target.path, ...socket });
        await this.join(round, await this.connect(round, io), urlRank(url));
        return;
      } catch {
        // The next URL.
      }
    }
  }

  /**
   * Whether the signaling server has `peer` online (presence), or has it again within
   * {@link PEER_RETURN_WAIT_MS} (its own signaling connection may have blinked: it
   * registers again within seconds and opens a new relay); unknown counts as online, as in Rust.
   */
  private async isOnline(peer: string): Promise<boolean> {
    let listener: ((p: PresenceChange) => void) | undefined;
    const back = new Promise<boolean>((resolve) => (listener = (p) => p.device === peer && p.online && resolve(true)));
    this.signaling.on("presence", listener!);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if ((await this.signaling.subscribe([peer])).includes(peer)) return true;
      return await Promise.race([back, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), PEER_RETURN_WAIT_MS)))]);
    } catch {
      return true;
    } finally {
      clearTimeout(timer);
      this.signaling.off("presence", listener!);
      void this.signaling.unsubscribe([peer]).catch(() => undefined);
    }
  }

  /**
   * Sends over the active connection; pauses at a chunk boundary and goes on over
   * another when the handover switches; after a break goes on over another
   * connection, or a new relay while the receiver is online (./recovery.ts).
   */
  private async transfer(round: Round): Promise<Sent> {
    for (let connection = round.active; ; ) {
      if (!connection) throw transferError("Closed", "no connection to the receiver");
      const before = this.bytes;
      const drops = this.signaling.drops;
      let attempt: Attempt;
      try {
        attempt = await this.attempt(round, connection);
      } catch (err) {
        // An answer or a rule (declined, a changed file, a stall) ends it; a broken connection may not.
        if (round.over || (err instanceof PeersError && err.kind === "Transfer")) throw err;
        // A failed write may come before the connection records its close (and the handover moves on): up to 2 s.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const reason = await Promise.race([connection.closed, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 2_000)))]);
        clearTimeout(timer);
        if (reason === undefined || round.over) throw err;
        const other = round.active !== undefined && round.active !== connection ? round.active : undefined;
        const next = afterBreak({ reason, other: other !== undefined, hops: this.hops, moved: this.bytes > before, signalingDropped: this.signaling.drops > drops });
        if (next === "Answer") throw transferError("Closed", `the receiver closed the connection: ${reason.message}`);
        if (next === "Gone" || (next === "NewRelayIfOnline" && !(await this.isOnline(round.peer)))) throw err;
        if (next === "Moved") {
          connection = other;
          continue;
        }
        this.hops += 1;
        if (next === "Other") {
          connection = other;
          continue;
        }
        if (next === "NewRelayAfterReconnect") await this.signaling.whenRegistered(SIGNALING_RETURN_WAIT_MS);
        const relay = await RelaySocket.open(this.signaling, round.peer, { timeoutMs: this.options.relayTimeoutMs ?? 30_000 });
        const fresh = await this.connect(round, relay);
        await this.join(round, fresh, RANK_RELAY);
        this.options.onNewRelay?.(this.hops);
        connection = round.active ?? fresh;
        continue;
      }
      if (attempt === "Complete") {
        return { manifest: this.manifest, receiver: round.receiver, bytes: this.bytes, resumed: this.resumed ?? 0, paths: this.paths, hops: this.hops, rejoins: this.rejoins };
      }
      connection = round.active;
    }
  }

  /** One offer and data stream on `connection`: to the end, or paused once another connection is active. */
  private async attempt(round: Round, connection: Connection): Promise<Attempt> {
    this.options.onStage?.("Offered");
    const answer = readAnswer(await connection.emit("peers:transfer:offer", { manifest: this.manifest }, this.options.answerTimeoutMs ?? DEFAULT_ANSWER_TIMEOUT_MS));
    if ("decline" in answer) throw transferError("Declined", `the receiver declined: ${answer.decline}`);
    const sending = new ChunkSending(this.manifest, answer.accept);
    if (!round.accepted) {
      round.accepted = true;
      this.resumed ??= sending.resumed;
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
    round.streaming = { connection, over: new Promise<void>((r) => (over = r)) };
    // A receiver that stops taking bytes (its credit never comes) fails the round within the stall timeout.
    const stallMs = this.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const moved = () => {
      clearTimeout(stall);
      stall = setTimeout(() => round.fail(transferError("Stalled", `the other side stopped responding: nothing moved for ${stallMs} ms`)), stallMs);
    };
    try {
      moved();
      let paused = false;
      for (;;) {
        if (round.over) throw transferError("Closed", "the round is over");
        if (round.active !== connection && !sending.done) {
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
        this.options.onProgress?.({ bytesDone: sending.sentBytes, bytesTotal, bytesResumed: this.resumed ?? 0 });
      }
      await writer.finish();
      return paused ? "Paused" : "Complete";
    } finally {
      clearTimeout(stall);
      round.streaming = undefined;
      over();
    }
  }
}
