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
 * {@link ChunkCutter} is the sans-IO part: bytes in, verified chunks out. What is not
 * built: a new relay after a broken one, resuming from saved state across runs,
 * word-prefix expansion of the code (the code is used as typed, lower-cased, with `-`
 * between its parts), and checking the manifest digest.
 */
import { blake3 } from "@noble/hashes/blake3.js";

import { equal, toHex } from "./bytes.js";
import { Brotli } from "./codec.js";
import { Connection, ConnectionConfig, connectionConfig } from "./connection.js";
import { PeersError } from "./errors.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { decodePakeFrame, encodePakeFrame, PakeConfirm, startPake } from "./pake.js";
import { RelaySocket } from "./relay.js";
import { SignalingClient } from "./signaling.js";
import { TrustLevel } from "./handshake.js";
import { LinkAction, LinkTable, RANK_RELAY, RANK_WEBRTC } from "./links.js";
import { PeerConnectionFactory, WebRtcAcceptor, WebRtcSocketOptions } from "./webrtc.js";

export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const MAX_ENTRIES = 100_000;
export const MAX_CHUNK_HASHES = 1 << 20;
export const MAX_PATH_LEN = 4096;

/** A file's entry: its size, executable bit and one 32-byte BLAKE3 per chunk. */
export interface FileKind {
  size: number;
  executable: boolean;
  chunks: Uint8Array;
}

export interface ManifestEntry {
  path: string;
  kind: "Dir" | { File: FileKind };
}

export interface Manifest {
  chunk_size: number;
  entries: ManifestEntry[];
}

/** A position in the data: the next chunk to send. */
export interface Cursor {
  entry: number;
  chunk: number;
}

function transferError(code: string, message: string): PeersError {
  return new PeersError("Transfer", code, message);
}

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0 || new TextEncoder().encode(path).length > MAX_PATH_LEN) throw transferError("BadManifest", "a path is empty or too long");
  if (path.startsWith("/") || /[\\\u0000-\u001f\u007f]/.test(path)) throw transferError("BadManifest", `path ${JSON.stringify(path)} is not relative or has a forbidden character`);
  for (const part of path.split("/")) {
    const len = new TextEncoder().encode(part).length;
    if (len === 0 || len > 255 || part === "." || part === "..") throw transferError("BadManifest", `path ${JSON.stringify(path)} has a bad component`);
  }
  return path;
}

/** Checks a decoded offer's manifest (the bounds of §9.3) and returns it typed. */
export function validateManifest(value: unknown): Manifest {
  const m = value as Partial<Manifest> | null;
  if (typeof m !== "object" || m === null || typeof m.chunk_size !== "number" || !Array.isArray(m.entries)) throw transferError("BadManifest", "not a manifest");
  if (m.chunk_size < MIN_CHUNK_SIZE || m.chunk_size > MAX_CHUNK_SIZE) throw transferError("BadManifest", `chunk size ${m.chunk_size} outside ${MIN_CHUNK_SIZE}..=${MAX_CHUNK_SIZE}`);
  if (m.entries.length > MAX_ENTRIES) throw transferError("BadManifest", `more than ${MAX_ENTRIES} entries`);
  const seen = new Set<string>();
  let hashes = 0;
  for (const e of m.entries as unknown[]) {
    const entry = e as Partial<ManifestEntry> | null;
    if (typeof entry !== "object" || entry === null) throw transferError("BadManifest", "an entry is not a map");
    const path = checkPath(entry.path);
    if (seen.has(path)) throw transferError("BadManifest", `path ${JSON.stringify(path)} twice`);
    seen.add(path);
    if (entry.kind === "Dir") continue;
    const file = (entry.kind as { File?: Partial<FileKind> } | undefined)?.File;
    if (!file || typeof file.size !== "number" || !Number.isSafeInteger(file.size) || file.size < 0 || typeof file.executable !== "boolean" || !(file.chunks instanceof Uint8Array)) {
      throw transferError("BadManifest", `entry ${JSON.stringify(path)} is neither Dir nor File`);
    }
    const count = Math.ceil(file.size / m.chunk_size);
    if (file.chunks.length !== count * 32) throw transferError("BadManifest", `entry ${JSON.stringify(path)} has ${file.chunks.length / 32} chunk hashes, expected ${count}`);
    hashes += count;
    if (hashes > MAX_CHUNK_HASHES) throw transferError("BadManifest", `more than ${MAX_CHUNK_HASHES} chunk hashes`);
  }
  return m as Manifest;
}

/** A chunk that matched its hash. */
export interface VerifiedChunk {
  entry: number;
  chunk: number;
  /** Byte offset of the chunk in its file. */
  offset: number;
  bytes: Uint8Array;
}

/**
 * Cuts the data stream into the manifest's chunks from a cursor, checking each
 * chunk's BLAKE3 (sans-IO). Holds at most one chunk (≤ 4 MiB) of unverified bytes.
 */
export class ChunkCutter {
  private entry: number;
  private chunk: number;
  private parts: Uint8Array[] = [];
  private held = 0;

  constructor(
    readonly manifest: Manifest,
    from: Cursor = { entry: 0, chunk: 0 },
  ) {
    this.entry = from.entry;
    this.chunk = from.chunk;
    this.skipEmpty();
  }

  /** The next chunk expected: where a new offer resumes. */
  get cursor(): Cursor {
    return { entry: this.entry, chunk: this.chunk };
  }

  /** Whether every chunk arrived and matched. */
  get complete(): boolean {
    return this.entry >= this.manifest.entries.length;
  }

  /** The file of the current entry and the length of its current chunk. */
  private current(): { file: FileKind; length: number } | undefined {
    const kind = this.manifest.entries[this.entry]?.kind;
    if (kind === undefined || kind === "Dir") return undefined;
    const size = this.manifest.chunk_size;
    return { file: kind.File, length: Math.min(size, kind.File.size - this.chunk * size) };
  }

  private skipEmpty(): void {
    while (this.entry < this.manifest.entries.length) {
      const c = this.current();
      if (c && c.length > 0) return;
      this.entry += 1;
      this.chunk = 0;
    }
  }

  /** Takes stream bytes; returns the chunks they completed, each verified. */
  push(data: Uint8Array): VerifiedChunk[] {
    const out: VerifiedChunk[] = [];
    let rest = data;
    while (rest.length > 0) {
      const c = this.current();
      if (!c) throw transferError("Protocol", "bytes after the last chunk");
      const take = Math.min(rest.length, c.length - this.held);
      this.parts.push(rest.subarray(0, take));
      this.held += take;
      rest = rest.subarray(take);
      if (this.held < c.length) break;
      const bytes = this.parts.length === 1 ? this.parts[0]!.slice() : concatAll(this.parts, this.held);
      this.parts = [];
      this.held = 0;
      const expected = c.file.chunks.subarray(this.chunk * 32, this.chunk * 32 + 32);
      if (!equal(blake3(bytes), expected)) throw transferError("ChunkMismatch", `chunk ${this.chunk} of entry ${this.entry} does not match the manifest`);
      out.push({ entry: this.entry, chunk: this.chunk, offset: this.chunk * this.manifest.chunk_size, bytes });
      this.chunk += 1;
      if (this.chunk * this.manifest.chunk_size >= c.file.size) {
        this.entry += 1;
        this.chunk = 0;
        this.skipEmpty();
      }
    }
    return out;
  }

  /** A new stream starts at the cursor: bytes of a chunk a broken stream did not finish are dropped. */
  restart(): void {
    this.parts = [];
    this.held = 0;
  }

  /** The stream ended: fine at a chunk boundary (complete, or a pause); an error inside a chunk. */
  end(): void {
    if (this.held > 0) throw transferError("Protocol", "the stream ended inside a chunk");
  }
}

function concatAll(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What the caller decides and where the bytes go. */
export interface ReceiveOptions {
  /** Asked once per manifest; false declines (the sender is told "declined"). Default: accept. */
  decide?: (manifest: Manifest, sender: DeviceInfo) => boolean | Promise<boolean>;
  /** Each verified chunk, in order; awaited before the next is read (back-pressure). */
  sink: (entry: ManifestEntry, chunk: VerifiedChunk) => void | Promise<void>;
  /** Told once the PAKE confirmed the sender. */
  onConfirmed?: (sender: DeviceInfo) => void;
  /** Told when the sender starts sending over another connection (`transport`: "relay", "webrtc"). */
  onPath?: (transport: string, bytesDone: number) => void;
  /** Relay opening deadline, ms. Default 30,000. */
  relayTimeoutMs?: number;
  /** Brotli for the connection's codec (a browser passes `brotliFromWasm`); Node's `zlib` when absent there. */
  brotli?: Brotli;
  /**
   * WebRTC (§9.7): with it, the sender's WebRTC dial is accepted (a `WebRtcAcceptor`
   * on the transfer's signaling client, with these options) and the transfer moves
   * there when the sender does; without it the transfer stays on the relay.
   */
  webrtc?: { createPeerConnection: PeerConnectionFactory; socket?: WebRtcSocketOptions };
}

/** How many data bytes arrived over one connection. */
export interface PathBytes {
  transport: string;
  bytes: number;
}

export interface Received {
  manifest: Manifest;
  sender: DeviceInfo;
  bytes: number;
  /** The connections the data came over, in the order they were first used. */
  paths: PathBytes[];
}

/** The PAKE as the joiner on a relay: returns the confirmed sender. */
async function pakeOnRelay(relay: RelaySocket, password: string, own: DeviceInfo): Promise<DeviceInfo> {
  const [state, message] = startPake(password, "joiner");
  await relay.send(encodePakeFrame({ pake: message }));
  const first = decodePakeFrame(await relay.recv());
  if (!("pake" in first)) throw transferError("Protocol", "expected a Pake frame first");
  const [waiting, confirm] = state.receive(first.pake, own);
  await relay.send(encodePakeFrame({ confirm }));
  const second = decodePakeFrame(await relay.recv());
  if (!("confirm" in second)) throw transferError("Protocol", "expected a Confirm frame");
  return waiting.receive(second.confirm as PakeConfirm);
}

/** Control RPCs of docs/device.md §2 answered without acting on them (no groups, no device messages). */
const CONTROL_NOOP = ["peers:ping", "peers:groupLeft", "peers:deviceMessage"];

/**
 * One transfer's receiving side after the PAKE: its connections to the confirmed
 * sender (the relay first, WebRTC when the sender dials it), the handover between
 * them ({@link LinkTable}), and the offer and data handlers on each, sharing one
 * {@link ChunkCutter}.
 */
class Receiver {
  private readonly links: LinkTable;
  private readonly connections = new Map<number, Connection>();
  private nextLink = 1;
  private cutter: ChunkCutter | undefined;
  private streaming = false;
  private bytes = 0;
  private readonly paths: PathBytes[] = [];
  private lastPath: string | undefined;
  private finished!: (m: Manifest) => void;
  private failed!: (e: Error) => void;
  readonly done = new Promise<Manifest>((resolve, reject) => ((this.finished = resolve), (this.failed = reject)));

  constructor(
    own: Uint8Array,
    readonly sender: DeviceInfo,
    private readonly options: ReceiveOptions,
  ) {
    this.links = new LinkTable(own, sender.device_id);
    void this.done.catch(() => undefined);
  }

  get received(): Received | undefined {
    return this.cutter?.complete ? { manifest: this.cutter.manifest, sender: this.sender, bytes: this.bytes, paths: this.paths } : undefined;
  }

  /** A verified connection to the sender over `transport`. */
  add(connection: Connection, transport: string, rank: number): void {
    const id = this.nextLink++;
    this.connections.set(id, connection);
    for (const method of CONTROL_NOOP) connection.expose(method, () => null);
    connection.expose("peers:groupReady", () => (this.apply(this.links.groupReady(id)), null));
    connection.expose("peers:takeover", () => (this.apply(this.links.takeover(id)), null));
    connection.expose("peers:retire", () => (this.apply(this.links.peerRetired(id)), null));
    connection.expose("peers:transfer:offer", (args) => this.offer(args));
    connection.exposeStream("peers:transfer:data", (meta, reader) => this.data(transport, meta, reader));
    void connection.closed.then((reason) => {
      this.connections.delete(id);
      this.apply(this.links.closed(id));
      if (this.connections.size === 0) this.failed(transferError("Closed", `the sender closed the connection: ${reason.message}`));
    });
    this.apply(this.links.added(id, rank));
  }

  private apply(actions: LinkAction[]): void {
    for (const action of actions) {
      const connection = this.connections.get(action.link);
      if (!connection) continue;
      const quiet = (p: Promise<unknown>) => void p.catch(() => undefined);
      switch (action.kind) {
        case "SendGroupReady":
          quiet(connection.emit("peers:groupReady", []));
          break;
        case "SendTakeover":
          quiet(connection.emit("peers:takeover", null));
          break;
        case "Retire":
          quiet(connection.emit("peers:retire", null));
          break;
        case "Close":
          quiet(connection.close("Normal", action.why));
          break;
      }
    }
  }

  private async offer(args: unknown): Promise<unknown> {
    const manifest = validateManifest((args as { manifest?: unknown } | null)?.manifest);
    if (!this.cutter) {
      if (this.options.decide && !(await this.options.decide(manifest, this.sender))) return { Decline: { reason: "declined" } };
      this.cutter ??= new ChunkCutter(manifest);
    }
    return { Accept: { from: this.cutter.cursor } };
  }

  private async data(transport: string, meta: unknown, reader: AsyncIterable<Uint8Array>): Promise<void> {
    const from = (meta as { from?: Cursor } | null)?.from;
    const cutter = this.cutter;
    if (!cutter) throw transferError("Protocol", "data before an accepted offer");
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
          await this.options.sink(cutter.manifest.entries[chunk.entry]!, chunk);
          this.bytes += chunk.bytes.length;
          path.bytes += chunk.bytes.length;
        }
      }
      cutter.end();
    } catch (err) {
      // A refused chunk or a failed sink ends the transfer; a broken connection only
      // this stream (the sender offers again on another, from the cursor).
      if (err instanceof PeersError && err.kind === "Transfer") this.failed(err);
      throw err;
    } finally {
      this.streaming = false;
    }
    if (cutter.complete) this.finished(cutter.manifest);
  }

  /** Waits up to `ms` for the sender to close every connection, then closes what is left. */
  async close(ms: number): Promise<void> {
    const open = [...this.connections.values()];
    await Promise.race([Promise.all(open.map((c) => c.closed)), new Promise((r) => setTimeout(r, ms))]);
    await Promise.all(open.map((c) => c.close("Normal", "received")));
  }
}

/**
 * Receives what `peers send` offers under `code` through the signaling server at
 * `url`; resolves once every chunk arrived, matched and was handed to the sink. A
 * wrong code is `PeersError` kind `Transfer`, code `WrongCode`.
 */
export async function receiveByCode(url: string, code: string, options: ReceiveOptions): Promise<Received> {
  const parts = code.trim().toLowerCase().split(/[\s-]+/).filter((p) => p.length > 0);
  if (parts.length < 3 || !/^\d+$/.test(parts[0]!)) throw transferError("BadCode", "a code is a number and 2 to 4 words");
  const password = parts.join("-");
  const keys = DeviceKeys.generate("peers-transfer");
  const signaling = await SignalingClient.connect(url, keys);
  let receiver: Receiver | undefined;
  let acceptor: WebRtcAcceptor | undefined;
  try {
    const joined = await signaling.joinSession(parts[0]!);
    const relay = await RelaySocket.open(signaling, joined.sender, { timeoutMs: options.relayTimeoutMs ?? 30_000 });
    let sender: DeviceInfo;
    try {
      sender = await pakeOnRelay(relay, password, keys.info());
    } catch (err) {
      await relay.close("ProtocolError", (err as Error).message);
      throw err;
    }
    options.onConfirmed?.(sender);
    const pinned = (p: DeviceInfo) =>
      equal(p.device_id, sender.device_id) && equal(p.signing_key, sender.signing_key) && equal(p.static_key, sender.static_key) && p.user_id === sender.user_id
        ? TrustLevel.Trusted
        : TrustLevel.Untrusted;
    const config = await connectionConfig(keys, pinned, options.brotli ? { brotli: options.brotli } : {});
    const active = new Receiver(keys.deviceId, sender, options);
    receiver = active;
    if (options.webrtc) {
      const webrtc = new WebRtcAcceptor(signaling, options.webrtc);
      acceptor = webrtc;
      void acceptWebRtc(webrtc, toHex(sender.device_id), config, active);
    }
    active.add(await Connection.accept(relay, config), relay.info.transport, RANK_RELAY);
    await active.done;
    return active.received!;
  } finally {
    acceptor?.close();
    // The sender closes once it read StreamDone; close ourselves if it has not within 2 s.
    await receiver?.close(2_000);
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
      receiver.add(await Connection.accept(accepted.socket, config), accepted.socket.info.transport, RANK_WEBRTC);
    } catch {
      // A failed handshake closed its socket; the transfer goes on where it is.
    }
  }
}
