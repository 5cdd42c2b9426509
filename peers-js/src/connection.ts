/**
 * `Connection`: the handshake over a {@link Socket}, sealed frames, RPC both ways
 * with timeouts, streams with credit, close reasons (docs/protocol.md §2–6). The
 * thin async driver around the sans-IO pieces (handshake states, codec, sealer).
 *
 * One reader loop per connection; sends go out through one ordered chain, so the
 * frame counters follow the order messages were queued.
 */
import { decode } from "@msgpack/msgpack";

import { Brotli, CodecConfig, defaultCodecConfig, FrameDecoder, FrameEncoder, loadNodeBrotli } from "./codec.js";
import {
  CloseCode,
  CloseReason,
  decodeEnvelope,
  encodeEnvelope,
  encodeValue,
  Envelope,
  RemoteError,
  RemoteErrorCode,
  truncateUtf8,
} from "./envelope.js";
import { PeersError } from "./errors.js";
import {
  defaultHandshakeConfig,
  HandshakeConfig,
  Initiator,
  ReplayGuard,
  Responder,
  Session,
  TransportCipher,
  TrustLevel,
} from "./handshake.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { Opener, SEAL_OVERHEAD, Sealer } from "./seal.js";
import { closedError, Socket } from "./socket.js";

/** Decides how much a verified peer is trusted (the Rust `TrustPolicy`, `GetTrustLevel`). */
export type TrustPolicy = (remote: DeviceInfo) => TrustLevel | Promise<TrustLevel>;

export interface ConnectionConfig {
  handshake: HandshakeConfig;
  trust: TrustPolicy;
  /** Peers below this level are refused. Default `Known`. */
  trustFloor: TrustLevel;
  /** Whole handshake deadline, ms. Default 10,000. */
  handshakeTimeoutMs: number;
  /** Default `emit` timeout, ms. Default 30,000. */
  callTimeoutMs: number;
  maxCallsInFlight: number;
  maxConcurrentHandlers: number;
  /** Stream receive window, bytes. Default 4 MiB. */
  streamWindow: number;
  maxIncomingStreams: number;
  codec: CodecConfig;
  replayGuard: ReplayGuard;
  /** Wall clock, unix ms. */
  clock: () => number;
}

/**
 * Defaults for a device with `keys` judging peers with `trust`. Brotli is
 * `options.brotli` (a browser: `brotliFromWasm`), else Node's when it runs in Node;
 * without one, compressed messages are refused and nothing is compressed.
 */
export async function connectionConfig(keys: DeviceKeys, trust: TrustPolicy, options: { brotli?: Brotli } = {}): Promise<ConnectionConfig> {
  const brotli: Brotli | undefined = options.brotli ?? (await loadNodeBrotli());
  return {
    handshake: defaultHandshakeConfig(keys),
    trust,
    trustFloor: TrustLevel.Known,
    handshakeTimeoutMs: 10_000,
    callTimeoutMs: 30_000,
    maxCallsInFlight: 1024,
    maxConcurrentHandlers: 256,
    streamWindow: 4 * 1024 * 1024,
    maxIncomingStreams: 16,
    codec: defaultCodecConfig(brotli),
    replayGuard: new ReplayGuard(),
    clock: () => Date.now(),
  };
}

export type RpcHandler = (args: unknown, connection: Connection) => unknown;
export type StreamHandler = (meta: unknown, reader: StreamReader, connection: Connection) => Promise<void>;

const MAX_PIECE = 256 * 1024;

interface PendingCall {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface Outgoing {
  credit: number;
  accepted: boolean;
  waiter: (() => void) | undefined;
  done: ((error: RemoteError | null) => void) | undefined;
  result: RemoteError | null | undefined;
  failure: Error | undefined;
}

function remoteFailure(error: RemoteError): PeersError {
  return new PeersError("Remote", error.code, `remote error ${error.code}: ${error.message}`, { error });
}

async function withDeadline<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PeersError("Timeout", "Timeout", `handshake took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function failHandshake(socket: Socket, err: unknown): Promise<never> {
  const e = err as PeersError;
  if (e?.kind === "Closed") throw e;
  const code: CloseCode =
    e?.code === "Untrusted" || e?.code === "SelfConnection"
      ? "Refused"
      : e?.kind === "Handshake" || e?.kind === "Codec"
        ? "ProtocolError"
        : e?.kind === "Timeout"
          ? "Timeout"
          : "TransportFailure";
  await socket.close(code, `handshake failed: ${e?.message ?? String(err)}`).catch(() => {});
  throw err;
}

export class Connection {
  readonly remote: DeviceInfo;
  readonly trust: TrustLevel;
  readonly sessionId: Uint8Array;
  /** The transport cipher, or `undefined` when both sides skipped the AEAD on a bound channel. */
  readonly cipher: TransportCipher | undefined;
  private readonly sealer: Sealer;
  private readonly encoder: FrameEncoder;
  private sendChain: Promise<void> = Promise.resolve();
  private readonly pending = new Map<number, PendingCall>();
  private nextCallId = 0;
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly streamHandlers = new Map<string, StreamHandler>();
  private readonly incoming = new Map<number, StreamReader>();
  private readonly outgoing = new Map<number, Outgoing>();
  private nextStreamId = 0;
  private runningHandlers = 0;
  private reason: CloseReason | undefined;
  private resolveClosed!: (r: CloseReason) => void;
  /** Resolves once with why the connection closed. */
  readonly closed: Promise<CloseReason> = new Promise((r) => (this.resolveClosed = r));
  private ready: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly config: ConnectionConfig,
    session: Session,
  ) {
    this.remote = session.remote;
    this.trust = session.trust;
    this.sessionId = session.handshakeHash;
    this.cipher = session.encrypted ? session.cipher : undefined;
    this.sealer = new Sealer(session);
    this.encoder = new FrameEncoder(config.codec);
    void this.readLoop(new Opener(session), new FrameDecoder(config.codec));
  }

  /**
   * Dials: runs the handshake as initiator; returns once the responder sent `Ready`.
   * `setup` runs on the connection before anything the peer sends after `Ready` is
   * handled (expose handlers there that the peer may call at once).
   */
  static async connect(socket: Socket, config: ConnectionConfig, expected?: Uint8Array, setup?: (connection: Connection) => void): Promise<Connection> {
    const deadline = Date.now() + config.handshakeTimeoutMs;
    let session: Session;
    try {
      session = await withDeadline(config.handshakeTimeoutMs, (async () => {
        const [state, hello] = Initiator.start(config.handshake, socket.info.security, expected, config.clock());
        await socket.send(hello);
        const verify = state.read(await socket.recv(), config.clock());
        const level = await config.trust(verify.remote);
        const { message, session } = verify.finish(level, config.trustFloor, config.clock());
        if (message) await socket.send(message);
        return session;
      })());
    } catch (err) {
      return failHandshake(socket, err);
    }
    const connection = new Connection(socket, config, session);
    setup?.(connection);
    const ready = new Promise<void>((resolve, reject) => (connection.ready = { resolve, reject }));
    try {
      await withDeadline(Math.max(0, deadline - Date.now()), ready);
    } catch (err) {
      if ((err as PeersError).kind === "Timeout") await connection.close("Timeout", (err as Error).message);
      throw err;
    }
    return connection;
  }

  /** Accepts: runs the handshake as responder and sends `Ready`; `setup` as for {@link connect}. */
  static async accept(socket: Socket, config: ConnectionConfig, setup?: (connection: Connection) => void): Promise<Connection> {
    let session: Session;
    try {
      session = await withDeadline(config.handshakeTimeoutMs, (async () => {
        const responder = new Responder(config.handshake, socket.info.security, config.clock());
        const [state, response] = responder.readHello(await socket.recv(), config.clock(), config.replayGuard);
        await socket.send(response);
        const verify = state.read(await socket.recv(), config.clock());
        const level = await config.trust(verify.remote);
        return verify.finish(level, config.trustFloor, config.clock()).session;
      })());
    } catch (err) {
      return failHandshake(socket, err);
    }
    const connection = new Connection(socket, config, session);
    setup?.(connection);
    await connection.send({ type: "Ready" });
    return connection;
  }

  /** The transport under this connection (`socket.io`, `webrtc`, `relay`...: its socket's `info.transport`). */
  get transport(): string {
    return this.socket.info.transport;
  }

  get closeReason(): CloseReason | undefined {
    return this.reason;
  }

  /** Registers `handler` for calls of `method` from the peer. */
  expose(method: string, handler: RpcHandler): void {
    this.handlers.set(method, handler);
  }

  /** Registers `handler` for streams named `name` from the peer. */
  exposeStream(name: string, handler: StreamHandler): void {
    this.streamHandlers.set(name, handler);
  }

  /** Calls `method` on the peer with `args`; resolves with its answer or fails (remote error, timeout, close). */
  emit<T = unknown>(method: string, args: unknown, timeoutMs = this.config.callTimeoutMs): Promise<T> {
    if (this.reason) return Promise.reject(closedError(this.reason));
    if (this.pending.size >= this.config.maxCallsInFlight) {
      return Promise.reject(new PeersError("Limit", "TooManyCallsInFlight", `more than ${this.config.maxCallsInFlight} calls in flight`));
    }
    this.nextCallId += 1;
    const id = this.nextCallId;
    const result = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PeersError("Timeout", "Timeout", `call ${method} got no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
    });
    this.send({ type: "Call", id, method }, encodeValue(args)).catch((err) => this.settle(id, undefined, err as Error));
    return result;
  }

  /** Opens a stream `name` with `meta`; resolves once the peer accepted it. */
  async openStream(name: string, meta: unknown = null): Promise<StreamWriter> {
    if (this.reason) throw closedError(this.reason);
    const id = this.nextStreamId++;
    const state: Outgoing = { credit: 0, accepted: false, waiter: undefined, done: undefined, result: undefined, failure: undefined };
    this.outgoing.set(id, state);
    await this.send({ type: "StreamOpen", id, name }, encodeValue(meta));
    await waitFor(state, () => state.accepted || state.result !== undefined || state.failure !== undefined);
    if (state.failure) throw state.failure;
    if (state.result) {
      this.outgoing.delete(id);
      throw remoteFailure(state.result);
    }
    return new StreamWriter(this, id, state);
  }

  /** Closes with `code` and `message`, telling the peer why first. */
  async close(code: CloseCode = "Normal", message = "closed"): Promise<void> {
    if (this.reason) return;
    const text = truncateUtf8(message, 256);
    const reason: CloseReason = { code, message: text, by: "Local" };
    await this.send({ type: "Close", reason }).catch(() => {});
    this.shutdown(reason);
    await this.socket.close(code, text).catch(() => {});
  }

  /** @internal Queues one message (envelope + body) for the socket, in order. */
  send(envelope: Envelope, body?: Uint8Array): Promise<void> {
    const message = encodeEnvelope(envelope, body);
    const maxFrame = this.socket.info.maxFrameSize - (this.cipher !== undefined ? SEAL_OVERHEAD : 0);
    const frames = this.encoder.encode(message, maxFrame);
    const next = this.sendChain.then(async () => {
      if (this.reason && envelope.type !== "Close") throw closedError(this.reason);
      for (const frame of frames) await this.socket.send(this.sealer.seal(frame));
    });
    this.sendChain = next.catch(() => {});
    return next;
  }

  private settle(id: number, value: unknown, error?: Error): void {
    const call = this.pending.get(id);
    if (!call) return;
    this.pending.delete(id);
    clearTimeout(call.timer);
    if (error) call.reject(error);
    else call.resolve(value);
  }

  private shutdown(reason: CloseReason): void {
    if (this.reason) return;
    this.reason = reason;
    const err = closedError(reason);
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, err);
    for (const reader of this.incoming.values()) reader.fail(err);
    this.incoming.clear();
    for (const out of this.outgoing.values()) {
      out.failure = err;
      out.waiter?.();
    }
    this.outgoing.clear();
    this.ready?.reject(err);
    this.resolveClosed(reason);
  }

  private async protocolError(message: string): Promise<void> {
    await this.close("ProtocolError", message);
  }

  private async readLoop(opener: Opener, decoder: FrameDecoder): Promise<void> {
    let first = true;
    for (;;) {
      let record: Uint8Array;
      try {
        record = await this.socket.recv();
      } catch (err) {
        const reason = (err as PeersError).detail?.reason as CloseReason | undefined;
        this.shutdown(reason ?? { code: "TransportFailure", message: String(err), by: "Local" });
        return;
      }
      if (this.reason) return;
      let envelope: Envelope;
      let body: Uint8Array;
      try {
        const message = decoder.decode(opener.open(record));
        if (message === undefined) continue;
        [envelope, body] = decodeEnvelope(message);
      } catch (err) {
        await this.protocolError((err as Error).message);
        return;
      }
      if (first && this.ready) {
        first = false;
        if (envelope.type !== "Ready") {
          await this.protocolError("the responder's first message was not Ready");
          return;
        }
        this.ready.resolve();
        this.ready = undefined;
        continue;
      }
      first = false;
      try {
        await this.dispatch(envelope, body);
      } catch (err) {
        await this.protocolError((err as Error).message);
        return;
      }
    }
  }

  private async dispatch(envelope: Envelope, body: Uint8Array): Promise<void> {
    switch (envelope.type) {
      case "Ready":
        throw new PeersError("Codec", "Unexpected", "a second Ready");
      case "Call":
        return this.handleCall(envelope.id, envelope.method, body);
      case "Reply": {
        let value: unknown;
        try {
          value = body.length === 0 ? null : decode(body, { useBigInt64: false });
        } catch (err) {
          this.settle(envelope.id, undefined, new PeersError("Codec", "Decode", `reply does not decode: ${(err as Error).message}`));
          return;
        }
        return this.settle(envelope.id, value);
      }
      case "Fail":
        return this.settle(envelope.id, undefined, remoteFailure(envelope.error));
      case "Close":
        this.shutdown(envelope.reason);
        await this.socket.close(envelope.reason.code, envelope.reason.message).catch(() => {});
        return;
      case "StreamOpen":
        return this.handleStreamOpen(envelope.id, envelope.name, body);
      case "StreamData": {
        const reader = this.incoming.get(envelope.id);
        if (!reader) return; // finished already: the sender was told by StreamDone
        reader.push(body);
        return;
      }
      case "StreamEnd":
        this.incoming.get(envelope.id)?.end();
        return;
      case "StreamReset": {
        const reader = this.incoming.get(envelope.id);
        reader?.fail(remoteFailure(envelope.error));
        return;
      }
      case "StreamAccept":
      case "StreamCredit": {
        const out = this.outgoing.get(envelope.id);
        if (!out) return;
        out.credit += envelope.type === "StreamAccept" ? envelope.window : envelope.bytes;
        if (envelope.type === "StreamAccept") out.accepted = true;
        out.waiter?.();
        return;
      }
      case "StreamDone": {
        const out = this.outgoing.get(envelope.id);
        if (!out) return;
        this.outgoing.delete(envelope.id);
        out.result = envelope.error;
        out.waiter?.();
        return;
      }
    }
  }

  private handleCall(id: number, method: string, body: Uint8Array): void {
    const fail = (code: RemoteErrorCode, message: string) =>
      this.send({ type: "Fail", id, error: { code, message: truncateUtf8(message, 1024) } }).catch(() => {});
    const handler = this.handlers.get(method);
    if (!handler) {
      void fail("UnknownMethod", `no method ${method}`);
      return;
    }
    if (this.runningHandlers >= this.config.maxConcurrentHandlers) {
      void fail("Busy", "too many calls in progress");
      return;
    }
    let args: unknown;
    try {
      args = body.length === 0 ? null : decode(body);
    } catch (err) {
      void fail("BadArguments", (err as Error).message);
      return;
    }
    this.runningHandlers++;
    void (async () => {
      try {
        const value = await handler(args, this);
        await this.send({ type: "Reply", id }, encodeValue(value));
      } catch (err) {
        if ((err as PeersError).kind === "Closed") return;
        await fail("Handler", err instanceof Error ? err.message : String(err));
      } finally {
        this.runningHandlers--;
      }
    })();
  }

  private handleStreamOpen(id: number, name: string, body: Uint8Array): void {
    if (this.incoming.has(id)) throw new PeersError("Codec", "Unexpected", `stream ${id} opened twice`);
    const refuse = (code: RemoteErrorCode, message: string) =>
      this.send({ type: "StreamDone", id, error: { code, message } }).catch(() => {});
    const handler = this.streamHandlers.get(name);
    if (!handler) return void refuse("UnknownMethod", `no stream handler ${name}`);
    if (this.incoming.size >= this.config.maxIncomingStreams || this.runningHandlers >= this.config.maxConcurrentHandlers) {
      return void refuse("Busy", "too many streams in progress");
    }
    let meta: unknown;
    try {
      meta = body.length === 0 ? null : decode(body);
    } catch (err) {
      return void refuse("BadArguments", (err as Error).message);
    }
    const window = this.config.streamWindow;
    const reader = new StreamReader(this, id, window);
    this.incoming.set(id, reader);
    this.runningHandlers++;
    void (async () => {
      let error: RemoteError | null = null;
      try {
        await this.send({ type: "StreamAccept", id, window });
        await handler(meta, reader, this);
      } catch (err) {
        if ((err as PeersError).kind === "Closed") return;
        error = { code: "Handler", message: truncateUtf8(err instanceof Error ? err.message : String(err), 1024) };
      } finally {
        this.runningHandlers--;
        this.incoming.delete(id);
      }
      await this.send({ type: "StreamDone", id, error }).catch(() => {});
    })();
  }
}

function waitFor(state: { waiter: (() => void) | undefined }, ready: () => boolean): Promise<void> {
  return (async () => {
    while (!ready()) await new Promise<void>((r) => (state.waiter = r));
    state.waiter = undefined;
  })();
}

/** The sending side of a stream: `write` waits for the receiver's credit. */
export class StreamWriter {
  sent = 0;
  constructor(
    private readonly connection: Connection,
    readonly id: number,
    private readonly state: Outgoing,
  ) {}

  private check(): void {
    if (this.state.failure) throw this.state.failure;
    if (this.state.result !== undefined) {
      throw this.state.result ? remoteFailure(this.state.result) : new PeersError("Remote", "Finished", "the receiver finished the stream early");
    }
  }

  async write(data: Uint8Array): Promise<void> {
    let at = 0;
    while (at < data.length) {
      await waitFor(this.state, () => this.state.credit > 0 || this.state.failure !== undefined || this.state.result !== undefined);
      this.check();
      const n = Math.min(MAX_PIECE, this.state.credit, data.length - at);
      this.state.credit -= n;
      await this.connection.send({ type: "StreamData", id: this.id }, data.subarray(at, at + n));
      at += n;
      this.sent += n;
    }
  }

  /** Ends the stream and waits for the receiver's verdict (its handler's result). */
  async finish(): Promise<void> {
    this.check();
    await this.connection.send({ type: "StreamEnd", id: this.id });
    await waitFor(this.state, () => this.state.result !== undefined || this.state.failure !== undefined);
    if (this.state.failure) throw this.state.failure;
    if (this.state.result) throw remoteFailure(this.state.result);
  }
}

/** The receiving side of a stream: an async iterator of pieces; credit returns as they are read. */
export class StreamReader implements AsyncIterable<Uint8Array> {
  received = 0;
  private readonly queue: Uint8Array[] = [];
  private ended = false;
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;
  private unacknowledged = 0;
  private buffered = 0;

  constructor(
    private readonly connection: Connection,
    readonly id: number,
    private readonly window: number,
  ) {}

  /** @internal */
  push(data: Uint8Array): void {
    if (this.buffered + data.length > this.window) {
      throw new PeersError("Codec", "Unexpected", "stream data beyond the granted window");
    }
    this.buffered += data.length;
    this.received += data.length;
    this.queue.push(data.slice());
    this.wake();
  }

  /** @internal */
  end(): void {
    this.ended = true;
    this.wake();
  }

  /** @internal */
  fail(err: Error): void {
    this.failure = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The next piece, or `undefined` at the end. */
  async next(): Promise<Uint8Array | undefined> {
    for (;;) {
      const piece = this.queue.shift();
      if (piece) {
        this.buffered -= piece.length;
        this.unacknowledged += piece.length;
        if (this.unacknowledged >= this.window / 2) {
          const bytes = this.unacknowledged;
          this.unacknowledged = 0;
          await this.connection.send({ type: "StreamCredit", id: this.id, bytes });
        }
        return piece;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return undefined;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const piece = await this.next();
      if (piece === undefined) return;
      yield piece;
    }
  }
}
