/**
 * Receiving a transfer by code (docs/protocol.md §9.3–9.5), compatible with
 * `peers send`: join the code's signaling session by its number, open the server's
 * frame relay with the sender, run the PAKE (./pake.ts) on it, then the `Connection`
 * handshake as acceptor on the same relay, pinned to the confirmed device; answer the
 * offer and take the data stream, cutting it into the manifest's chunks and checking
 * each chunk's BLAKE3 before handing it to the caller's sink.
 *
 * Better paths (§9.7): with `webrtc` options the sender's WebRTC dial is accepted and
 * pinned the same way; the two connections follow the handover of docs/device.md §4
 * ({@link LinkTable}, sans-IO), and the sender's pause and new offer on WebRTC resume
 * from the cutter's cursor.
 *
 * {@link ChunkCutter} (./manifest.ts) is the sans-IO part: bytes in, verified chunks
 * out; the data stream's digest must be the accepted manifest's. The code is read by
 * `parseCode` (./code.ts) without `strict`: a unique 4-letter prefix is expanded, a word
 * outside the list goes to the PAKE as typed. When the last connection ends because
 * its path failed (a relay at the server's cap, a transport failure) after bytes were
 * verified, a new relay to the sender is opened and the pinned handshake runs again
 * on it, as the Rust receiver does (./recovery.ts, at most `MAX_HOPS` times); the
 * sender's new offer resumes from the cutter's cursor. Once bytes arrived, nothing
 * verified for `stallTimeoutMs` (60 s) fails the receive `Stalled`.
 *
 * Across runs (§9.4): with a `store` ({@link ReceiveStore}; in Node `directoryStore`,
 * ./staging-node.ts, the Rust receiver's staging layout) each verified chunk is kept
 * with the position after it, and the answer to a later offer of the same manifest
 * names the first chunk the store lacks, so a receiver run again with the same code
 * (the sender waits for it, §9.5.1) gets only the rest. In a browser the store is
 * `OpfsStore` (./staging-browser.ts, the origin private file system, kept per segment
 * of 8 MiB), which the receive page uses: a page closed or reloaded mid-transfer and
 * opened again with the same code resumes. Without a store (a browser without OPFS)
 * nothing is kept: a receiver run again starts over. The signaling client registers again
 * after a drop; a relay that died with it is replaced as after a path failure
 * (./recovery.ts). Not built: a local socket of its own.
 */
import { equal, toHex } from "./bytes.js";
import { Brotli } from "./codec.js";
import { parseCode } from "./code.js";
import { Connection, ConnectionConfig, connectionConfig } from "./connection.js";
import { CloseReason } from "./envelope.js";
import { invalidInput, PeersError } from "./errors.js";
import { DEFAULT_STALL_TIMEOUT_MS } from "./send.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { RANK_RELAY, RANK_WEBRTC } from "./links.js";
import { bytesBefore, ChunkCutter, Cursor, cursorAfter, Manifest, ManifestEntry, manifestDigest, transferError, validateManifest, VerifiedChunk } from "./manifest.js";
import { joinCode, pakeOnRelay, PeerLinks, pinnedTo } from "./meet.js";
import { receiverReopens, SIGNALING_RETURN_WAIT_MS } from "./recovery.js";
import { RelaySocket } from "./relay.js";
import { SignalingClient } from "./signaling.js";
import { PeerConnectionFactory, WebRtcAcceptor, WebRtcSocketOptions } from "./webrtc.js";

/** What the caller decides and where the bytes go. */
export interface ReceiveOptions {
  /** Asked once per manifest; false declines (the sender is told "declined"). Default: accept. */
  decide?: (manifest: Manifest, sender: DeviceInfo) => boolean | Promise<boolean>;
  /** Each verified chunk, in order (after the store kept it); awaited before the next is read (back-pressure). Needed without a `store`. */
  sink?: (entry: ManifestEntry, chunk: VerifiedChunk) => void | Promise<void>;
  /** Where verified chunks are kept across runs, and put in place at the end (Node: `directoryStore`; a browser: `OpfsStore`). */
  store?: ReceiveStore;
  /** With a `store` that kept part of this manifest: told the bytes it had (not sent again), before the rest arrives. */
  onResume?: (bytes: number) => void;
  /** Told once the PAKE confirmed the sender. */
  onConfirmed?: (sender: DeviceInfo) => void;
  /** Told when the sender starts sending over another connection (`transport`: "relay", "webrtc"). */
  onPath?: (transport: string, bytesDone: number) => void;
  /** Relay opening deadline, ms. Default 30,000. */
  relayTimeoutMs?: number;
  /** Once bytes arrived, how long no chunk may be verified before the receive fails `Stalled` (as `peers receive`), ms. Default 60,000. */
  stallTimeoutMs?: number;
  /** Brotli for the connection's codec (a browser passes `brotliFromWasm`); Node's `zlib` when absent there. */
  brotli?: Brotli;
  /**
   * WebRTC (§9.7): with it, the sender's WebRTC dial is accepted (a `WebRtcAcceptor`
   * on the transfer's signaling client, with these options) and the transfer moves
   * there when the sender does; without it the transfer stays on the relay.
   */
  webrtc?: { createPeerConnection: PeerConnectionFactory; socket?: WebRtcSocketOptions };
}

/**
 * Where a receiver keeps verified chunks between runs. `open` prepares the staging of
 * a manifest and returns the first chunk it lacks (what an earlier run of the same
 * manifest left; the start otherwise); `write` keeps a verified chunk and `next`, the
 * position after it; `finish` moves everything into place once all is verified and
 * removes the staging, returning the top-level names it stored.
 */
export interface ReceiveStore {
  open(manifest: Manifest): Promise<Cursor>;
  write(entry: ManifestEntry, chunk: VerifiedChunk, next: Cursor): Promise<void>;
  finish(manifest: Manifest): Promise<string[]>;
  /** Removes what was staged for `manifest` (the sender cancelled it for good, {@link receiveFrom}). */
  discard?(manifest: Manifest): Promise<void>;
}

/** How long a cancel waits for the data stream it follows to end before discarding (as the Rust receiver). */
const CANCEL_WAIT_MS = 10_000;

/** How many data bytes arrived over one connection. */
export interface PathBytes {
  transport: string;
  bytes: number;
}

export interface Received {
  manifest: Manifest;
  sender: DeviceInfo;
  /** Bytes verified in this run (not those the store had). */
  bytes: number;
  /** Bytes the store had from an earlier run, not sent again. */
  resumed: number;
  /** With a store: the top-level names it stored the entries under. */
  stored?: string[];
  /** The connections the data came over, in the order they were first used. */
  paths: PathBytes[];
}

/**
 * One transfer's receiving side after the PAKE: its connections to the confirmed
 * sender (the relay first, WebRTC when the sender dials it), the handover between
 * them ({@link LinkTable}), and the offer and data handlers on each, sharing one
 * {@link ChunkCutter}.
 */
class Receiver {
  /** The handover between this transfer's own connections (a transfer by code); none on a connection the caller keeps ({@link receiveFrom}). */
  private readonly links: PeerLinks | undefined;
  private cutter: ChunkCutter | undefined;
  private digest: Uint8Array | undefined;
  private streaming = false;
  private bytes = 0;
  private resumed = 0;
  private readonly paths: PathBytes[] = [];
  private readonly prepared = new Set<Connection>();
  private lastPath: string | undefined;
  /** `decide` said no: the sender's close that follows ends the transfer as `Declined`. */
  private declined = false;
  /** New relays after a break, and the bytes verified when the last one opened. */
  private hops = 0;
  private atHop = 0;
  /** The signaling client's drops when the last relay opened (a drop since then ended it). */
  private dropsAtHop = 0;
  /** The signaling client's drop count (set with `reopen`). */
  drops: () => number = () => 0;
  /** Opens a new relay to the sender and runs the pinned handshake on it (set once the first connection is up). */
  reopen: (() => Promise<Connection>) | undefined;
  private finished!: (m: Manifest) => void;
  private failed!: (e: Error) => void;
  readonly done = new Promise<Manifest>((resolve, reject) => ((this.finished = resolve), (this.failed = reject)));

  constructor(
    own: Uint8Array | undefined,
    readonly sender: DeviceInfo,
    private readonly options: ReceiveOptions,
  ) {
    this.links = own && new PeerLinks(own, sender.device_id, { onEmpty: (reason) => this.lost(reason) });
    void this.done.catch(() => undefined);
  }

  get received(): Received | undefined {
    if (!this.cutter?.complete) return undefined;
    const received: Received = { manifest: this.cutter.manifest, sender: this.sender, bytes: this.bytes, resumed: this.resumed, paths: this.paths };
    if (this.stored) received.stored = this.stored;
    return received;
  }

  /** With a store: the top-level names it put the entries under, once the last data stream did. */
  private stored: string[] | undefined;

  /** Exposes the offer, the data stream and the handover on `connection` (the `setup` of `Connection.accept`: the sender calls at once). */
  prepare(connection: Connection): void {
    if (this.prepared.has(connection)) return;
    this.prepared.add(connection);
    void connection.closed.then(() => this.prepared.delete(connection));
    connection.expose("peers:transfer:offer", (args) => this.offer(args));
    connection.exposeStream("peers:transfer:data", (meta, reader) => this.data(connection.transport, meta, reader));
    this.links?.prepare(connection);
  }

  /** A verified connection to the sender. */
  add(connection: Connection, rank: number): void {
    this.prepare(connection);
    this.links?.add(connection, rank);
  }

  /**
   * The sender gave the transfer up (`peers:transfer:cancel`, §9.4): the receive fails
   * `Cancelled`; answers whether anything of that digest was under way.
   */
  async cancel(args: unknown): Promise<boolean> {
    const digest = (args as { digest?: unknown } | null)?.digest;
    if (!(digest instanceof Uint8Array) || digest.length !== 32) throw invalidInput("cancel", "a manifest digest has 32 bytes");
    const cutter = this.cutter;
    if (!cutter || !this.digest || !equal(digest, this.digest) || cutter.complete) return false;
    this.cancelled = true;
    clearTimeout(this.stall);
    // The sender reset the stream before calling: once it ended, nothing writes into the store.
    if (this.streaming) {
      await new Promise<void>((r) => {
        const timer = setTimeout(r, CANCEL_WAIT_MS);
        this.idle.push(() => (clearTimeout(timer), r()));
      });
    }
    const store = this.options.store;
    await store?.discard?.(cutter.manifest);
    const kept = store !== undefined && store.discard === undefined;
    this.failed(transferError("Cancelled", `cancelled by the sender; the partial data was ${kept ? "kept" : "discarded"}`));
    return true;
  }

  /**
   * Resolves once no data stream runs and its handler's answer (`StreamDone`) is queued
   * on the connection: a macrotask after the handler returned, when every microtask of
   * the connection's stream code ran. A close after it reaches the sender behind the answer.
   */
  async answered(): Promise<void> {
    if (this.streaming) await new Promise<void>((r) => this.idle.push(r));
    await new Promise((r) => setTimeout(r, 0));
  }

  /** The sender cancelled: no chunk is kept after that. */
  private cancelled = false;
  /** Told when the running data stream ends. */
  private readonly idle: Array<() => void> = [];

  private async offer(args: unknown): Promise<unknown> {
    const manifest = validateManifest((args as { manifest?: unknown } | null)?.manifest);
    if (!this.cutter) {
      if (this.options.decide && !(await this.options.decide(manifest, this.sender))) {
        this.declined = true;
        return { Decline: { reason: "declined" } };
      }
      let from: Cursor = { entry: 0, chunk: 0 };
      if (this.options.store) {
        try {
          from = await this.options.store.open(manifest);
        } catch (err) {
          // No room, no storage: the sender is answered the error, and the receive fails with it.
          const e = err instanceof PeersError ? err : transferError("Io", `opening the staging failed: ${(err as Error).message}`);
          this.failed(e);
          throw e;
        }
        this.resumed = bytesBefore(manifest, from);
        if (this.resumed > 0) this.options.onResume?.(this.resumed);
      }
      this.cutter ??= new ChunkCutter(manifest, from);
      this.digest = manifestDigest(manifest);
    }
    return { Accept: { from: this.cutter.cursor } };
  }

  /** The stall timer: (re)armed on each verified chunk once bytes arrived, cleared when the transfer ends. */
  private stall: ReturnType<typeof setTimeout> | undefined;

  private moved(): void {
    clearTimeout(this.stall);
    const ms = this.options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS;
    this.stall = setTimeout(() => this.failed(transferError("Stalled", `the other side stopped responding: nothing arrived for ${ms} ms`)), ms);
  }

  private async data(transport: string, meta: unknown, reader: AsyncIterable<Uint8Array>): Promise<void> {
    const header = meta as { from?: Cursor; digest?: unknown } | null;
    const from = header?.from;
    const cutter = this.cutter;
    if (!cutter || !this.digest) throw transferError("Protocol", "data before an accepted offer");
    if (!(header?.digest instanceof Uint8Array) || !equal(header.digest, this.digest)) throw transferError("Protocol", "data of another manifest (its digest differs)");
    if (this.streaming) throw transferError("Protocol", "a second data stream while one runs");
    if (!from || from.entry !== cutter.cursor.entry || from.chunk !== cutter.cursor.chunk) throw transferError("Protocol", "data does not start at the accepted position");
    this.streaming = true;
    cutter.restart();
    if (this.lastPath !== transport) {
      this.lastPath = transport;
      if (this.paths.length > 0) this.options.onPath?.(transport, this.bytes);
    }
    let path = this.paths.find((p) => p.transport === transport);
    if (!path) this.paths.push((path = { transport, bytes: 0 }));
    try {
      for await (const piece of reader) {
        for (const chunk of cutter.push(piece)) {
          // The sender cancelled: the cancel call fails the receive; nothing more is kept.
          if (this.cancelled) return;
          const entry = cutter.manifest.entries[chunk.entry]!;
          if (this.options.store) {
            await this.options.store.write(entry, chunk, cursorAfter(cutter.manifest, chunk.entry, chunk.chunk)).catch((err: Error) => {
              throw err instanceof PeersError ? err : transferError("Io", `keeping a chunk failed: ${err.message}`);
            });
          }
          await this.options.sink?.(entry, chunk);
          this.bytes += chunk.bytes.length;
          path.bytes += chunk.bytes.length;
          this.moved();
        }
      }
      cutter.end();
      // StreamDone means "entries moved" (§9.4): the handler returns, and the sender
      // hears success, only once the store put them in place; a failed move is the answer.
      if (cutter.complete && this.options.store) {
        clearTimeout(this.stall);
        this.stored = await this.options.store.finish(cutter.manifest).catch((err: Error) => {
          throw err instanceof PeersError ? err : transferError("Io", `putting the files in place failed: ${err.message}`);
        });
      }
    } catch (err) {
      // A refused chunk or a failed sink ends the transfer; a broken connection only
      // this stream (the sender offers again on another, from the cursor).
      if (err instanceof PeersError && err.kind === "Transfer") this.failed(err);
      throw err;
    } finally {
      this.streaming = false;
      for (const told of this.idle.splice(0)) told();
    }
    if (cutter.complete) this.finished(cutter.manifest);
  }

  /**
   * The last connection closed: a path that failed after bytes moved gets a new relay
   * (the sender opens one too, §9.5; at most {@link MAX_HOPS}); anything else ends the transfer.
   */
  lost(reason: CloseReason): void {
    if (this.cutter?.complete) return;
    const reopen = this.reopen;
    if (reopen && !this.declined && receiverReopens(reason, this.bytes > this.atHop, this.hops, this.drops() > this.dropsAtHop)) {
      this.hops += 1;
      this.atHop = this.bytes;
      this.dropsAtHop = this.drops();
      void reopen().then(
        (connection) => this.add(connection, RANK_RELAY),
        (err: Error) => this.failed(transferError("Closed", `the relay broke (${reason.message}) and no new one opened: ${err.message}`)),
      );
      return;
    }
    this.failed(
      this.declined
        ? transferError("Declined", "you declined the offer; nothing was received")
        : transferError("Closed", `the sender closed the connection: ${reason.message}`),
    );
  }

  /** Waits up to `ms` for the sender to close every connection, then closes what is left. */
  close(ms: number, why: string): Promise<void> {
    clearTimeout(this.stall);
    return this.links?.close(ms, why) ?? Promise.resolve();
  }
}

/**
 * Receives one transfer that the device at the other end of `connection` offers on
 * it, with no code and no PAKE: what a `peers run` daemon that trusts this device
 * sends with `peers send --to` (docs/protocol.md §9.4, over the connection its
 * manager holds). The connection stays the caller's: its handshake already
 * authenticated the sender, and only the offer, data stream and cancel handlers are
 * exposed on it. Resolves once every chunk arrived, matched and was handed to the
 * sink (and, with a `store`, was put in place); fails `Cancelled` when the sender
 * gives up, `Closed` when the connection ends first (a later connection's offer of
 * the same files resumes from a `store`'s position), and like {@link receiveByCode}
 * otherwise. Call it before the sender offers (the offer is answered by whichever
 * call is current).
 */
export async function receiveFrom(connection: Connection, options: ReceiveOptions): Promise<Received> {
  if (!options.sink && !options.store) throw invalidInput("receive options", "a sink or a store is needed");
  const receiver = new Receiver(undefined, connection.remote, options);
  receiver.prepare(connection);
  connection.expose("peers:transfer:cancel", (args) => receiver.cancel(args));
  void connection.closed.then((reason) => receiver.lost(reason));
  try {
    await receiver.done;
    const received = receiver.received!;
    // The connection stays open: a caller that closes it at once must not overtake the sender's StreamDone.
    await receiver.answered();
    return received;
  } finally {
    await receiver.close(0, "");
  }
}

/**
 * Receives what `peers send` offers under `code` through the signaling server at
 * `url`; resolves once every chunk arrived, matched and was handed to the sink. A
 * wrong code is `PeersError` kind `Transfer`, code `WrongCode`.
 */
export async function receiveByCode(url: string, code: string, options: ReceiveOptions): Promise<Received> {
  // Not strict: a word outside the list goes to the PAKE as typed (one guess, refused there).
  const parsed = parseCode(code, false);
  if (!options.sink && !options.store) throw invalidInput("receive options", "a sink or a store is needed");
  const keys = DeviceKeys.generate("peers-transfer");
  const signaling = await SignalingClient.connect(url, keys);
  let receiver: Receiver | undefined;
  let acceptor: WebRtcAcceptor | undefined;
  let failure: Error | undefined;
  try {
    const joined = await joinCode(signaling, String(parsed.session));
    const relay = await RelaySocket.open(signaling, joined.sender, { timeoutMs: options.relayTimeoutMs ?? 30_000 });
    const sender = await pakeOnRelay(relay, parsed.text, "joiner", keys.info());
    options.onConfirmed?.(sender);
    const config = await connectionConfig(keys, pinnedTo(sender), options.brotli ? { brotli: options.brotli } : {});
    const active = new Receiver(keys.deviceId, sender, options);
    receiver = active;
    if (options.webrtc) {
      const webrtc = new WebRtcAcceptor(signaling, options.webrtc);
      acceptor = webrtc;
      void acceptWebRtc(webrtc, toHex(sender.device_id), config, active);
    }
    const relayTimeoutMs = options.relayTimeoutMs ?? 30_000;
    active.drops = () => signaling.drops;
    active.reopen = async () => {
      // After a signaling drop the relay waits for the registration (the new one is on the new socket).
      await signaling.whenRegistered(SIGNALING_RETURN_WAIT_MS);
      return Connection.accept(await RelaySocket.open(signaling, joined.sender, { timeoutMs: relayTimeoutMs }), config, (c) => active.prepare(c));
    };
    active.add(await Connection.accept(relay, config, (c) => active.prepare(c)), RANK_RELAY);
    await active.done;
    const received = active.received!;
    return received;
  } catch (err) {
    failure = err as Error;
    throw err;
  } finally {
    acceptor?.close();
    // On success the sender closes once it read StreamDone: wait for it up to 2 s; on a failure close at once.
    await receiver?.close(failure === undefined ? 2_000 : 0, failure === undefined ? "received" : `transfer failed: ${failure.message}`);
    signaling.close();
  }
}

/** Accepts the sender's WebRTC dials until the acceptor closes; each verified one joins the transfer. */
async function acceptWebRtc(acceptor: WebRtcAcceptor, senderHex: string, config: ConnectionConfig, receiver: Receiver): Promise<void> {
  for (;;) {
    let accepted;
    try {
      accepted = await acceptor.accept();
    } catch {
      return; // closed
    }
    if (accepted.from !== senderHex) {
      void accepted.socket.close("Refused", "not the device this transfer is with");
      continue;
    }
    try {
      receiver.add(await Connection.accept(accepted.socket, config, (c) => receiver.prepare(c)), RANK_WEBRTC);
    } catch {
      // A failed handshake closed its socket; the transfer goes on where it is.
    }
  }
}
