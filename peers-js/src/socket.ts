/**
 * The `Socket` contract (the Rust `trait Socket`, `ISocket` in the original design):
 * a bidirectional, message-oriented, ordered, reliable channel of whole frames with
 * a close reason. `send` resolves when the transport accepted the frame (that is the
 * backpressure); frames sent concurrently go out in call order. `recv` yields frames
 * in order, then fails with the close reason.
 *
 * Implementations here: {@link memorySocketPair} (tests, integrators) and
 * {@link SocketIoSocket} (the peers socket.io transport, docs/transport-socketio.md).
 */
import { CloseReason, CloseCode, CLOSE_CODES, truncateUtf8 } from "./envelope.js";
import { PeersError, settleOnce } from "./errors.js";
import { TransportSecurity } from "./handshake.js";
import { Credit, RecvWindow, SendCredit } from "./flow.js";

export interface SocketInfo {
  transport: string;
  /** Largest frame either end accepts. */
  maxFrameSize: number;
  security: TransportSecurity;
}

export interface Socket {
  readonly info: SocketInfo;
  send(frame: Uint8Array): Promise<void>;
  recv(): Promise<Uint8Array>;
  close(code: CloseCode, message: string): Promise<void>;
  /** Resolves once with why the socket closed. */
  readonly closed: Promise<CloseReason>;
}

export function closedError(reason: CloseReason): PeersError {
  return new PeersError("Closed", reason.code, `closed by ${reason.by === "Local" ? "this side" : "the peer"}: ${reason.code}: ${reason.message}`, {
    reason,
  });
}

/** The receive side every socket shares: a FIFO of frames, then the close reason. */
export class Inbox {
  private readonly frames: Uint8Array[] = [];
  private head = 0;
  private waiter: { resolve: (f: Uint8Array) => void; reject: (e: Error) => void } | undefined;
  private reason: CloseReason | undefined;
  private resolveClosed!: (r: CloseReason) => void;
  readonly closed: Promise<CloseReason> = new Promise((r) => (this.resolveClosed = r));
  /** Called after a frame is taken by `recv` (credit bookkeeping). */
  onConsumed: (frame: Uint8Array) => void = () => {};

  get closeReason(): CloseReason | undefined {
    return this.reason;
  }

  get length(): number {
    return this.frames.length - this.head;
  }

  push(frame: Uint8Array): void {
    if (this.reason) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve(frame);
      this.onConsumed(frame);
      return;
    }
    this.frames.push(frame);
  }

  /** Ends the inbox: frames already queued are still delivered, then the reason. */
  end(reason: CloseReason, dropQueued = false): void {
    if (this.reason) return;
    this.reason = reason;
    if (dropQueued) {
      this.frames.length = 0;
      this.head = 0;
    }
    this.resolveClosed(reason);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(closedError(reason));
    }
  }

  recv(): Promise<Uint8Array> {
    if (this.head < this.frames.length) {
      const frame = this.frames[this.head] as Uint8Array;
      this.frames[this.head] = undefined as never;
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.frames.length) {
        this.frames.splice(0, this.head);
        this.head = 0;
      }
      this.onConsumed(frame);
      return Promise.resolve(frame);
    }
    if (this.reason) return Promise.reject(closedError(this.reason));
    if (this.waiter) return Promise.reject(new Error("recv called concurrently"));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
}

/**
 * The send side every socket shares: frames go out one at a time in call order,
 * each once `ready()` holds (credit, buffer room). A wait ends on {@link wake}, or,
 * where the transport's wake-up is edge-triggered and may be missed, after
 * `recheckMs`. Sends fail with the close reason once the inbox has ended.
 */
export class SendQueue {
  private chain: Promise<void> = Promise.resolve();
  private waiter: (() => void) | undefined;

  constructor(private readonly inbox: Inbox, private readonly recheckMs?: number) {}

  /** Hands `frame` to `transmit` after every earlier frame, once `ready()`; refuses one over `maxFrameSize`. */
  send(frame: Uint8Array, maxFrameSize: number, ready: () => boolean, transmit: (frame: Uint8Array) => void): Promise<void> {
    if (frame.length > maxFrameSize) {
      return Promise.reject(new PeersError("Limit", "FrameTooLarge", `frame of ${frame.length} bytes over ${maxFrameSize}`));
    }
    const next = this.chain.then(async () => {
      while (!ready()) {
        this.throwIfClosed();
        await new Promise<void>((resolve) => {
          this.waiter = resolve;
          if (this.recheckMs !== undefined) setTimeout(resolve, this.recheckMs);
        });
      }
      this.throwIfClosed();
      transmit(frame);
      this.throwIfClosed();
    });
    this.chain = next.catch(() => {});
    return next;
  }

  /** Lets a waiting send look again (credit came, the buffer drained, the socket closed). */
  wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /**
   * Ends the socket on this side once every queued frame went out, with `code` and
   * `message` (cut to 256 bytes). Resolves with the reason to tell the peer, or
   * `undefined` when the socket had already closed.
   */
  async closeAfterQueued(code: CloseCode, message: string): Promise<CloseReason | undefined> {
    if (this.inbox.closeReason) return undefined;
    await this.chain;
    if (this.inbox.closeReason) return undefined;
    const reason: CloseReason = { code, message: truncateUtf8(message, MAX_CLOSE_MESSAGE), by: "Local" };
    this.inbox.end(reason, true);
    this.wake();
    return reason;
  }

  private throwIfClosed(): void {
    const reason = this.inbox.closeReason;
    if (reason) throw closedError(reason);
  }
}

/** A close reason's message travels cut to this many bytes. */
export const MAX_CLOSE_MESSAGE = 256;

class MemorySocket implements Socket {
  readonly inbox = new Inbox();
  peer!: MemorySocket;
  readonly info: SocketInfo;
  constructor(maxFrameSize: number) {
    this.info = { transport: "memory", maxFrameSize, security: { confidential: false } };
  }
  get closed(): Promise<CloseReason> {
    return this.inbox.closed;
  }
  async send(frame: Uint8Array): Promise<void> {
    const reason = this.inbox.closeReason;
    if (reason) throw closedError(reason);
    if (frame.length > this.info.maxFrameSize) {
      throw new PeersError("Limit", "FrameTooLarge", `frame of ${frame.length} bytes over ${this.info.maxFrameSize}`);
    }
    this.peer.inbox.push(frame.slice());
  }
  recv(): Promise<Uint8Array> {
    return this.inbox.recv();
  }
  async close(code: CloseCode, message: string): Promise<void> {
    this.inbox.end({ code, message, by: "Local" }, true);
    this.peer.inbox.end({ code, message, by: "Remote" });
  }
}

/** Two connected in-memory sockets (tests). */
export function memorySocketPair(maxFrameSize = 1024 * 1024 + 4096): [Socket, Socket] {
  const a = new MemorySocket(maxFrameSize);
  const b = new MemorySocket(maxFrameSize);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

// ---------------------------------------------------------------------------
// socket.io


export interface SocketIoOptions {
  /** The request path (socket.io-client reads a URL's path as the namespace). Default "/socket.io". */
  path?: string;
  /** Largest frame this side accepts. Default 1 MiB + 4 KiB. */
  maxFrame?: number;
  /** Receive window. Default 128 frames, 4 MiB + 16 KiB. */
  window?: Credit;
  /** Connect and server hello deadline, ms. Default 10,000. */
  timeoutMs?: number;
  /** Extra socket.io-client options (transports, extraHeaders...). */
  ioOptions?: Record<string, unknown>;
}

/** The subset of socket.io-client's `Socket` this transport uses. */
interface IoSocket {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  disconnect(): unknown;
  io: { engine?: { once(event: string, listener: () => void): unknown } };
}

const DEFAULT_MAX_FRAME = 1024 * 1024 + 4096;
const DEFAULT_WINDOW: Credit = { frames: 128, bytes: 4 * 1024 * 1024 + 16 * 1024 };

/**
 * What an acceptor holds for `accept()`: what arrived before anyone asked, one caller
 * waiting, and the end. {@link close} rejects the waiting caller with `Closed` and
 * hands every held item to `discard`, as {@link push} does with what arrives after it.
 * The acceptor bounds it (it reads {@link length} before it lets more in).
 */
export class AcceptQueue<T> {
  private readonly held: T[] = [];
  private waiter: { resolve: (item: T) => void; reject: (e: Error) => void } | undefined;
  private stopped = false;

  /** `closedMessage`: the `Closed` error's text; `discard`: what becomes of an item nobody will take. */
  constructor(
    private readonly closedMessage: string,
    private readonly discard: (item: T) => void,
  ) {}

  /** Items held, not yet taken. */
  get length(): number {
    return this.held.length;
  }

  /** Whether a caller waits in {@link next}. */
  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  get closed(): boolean {
    return this.stopped;
  }

  /** The next item; rejects with `Closed` once closed, and when another call already waits. */
  next(): Promise<T> {
    const item = this.held.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.stopped) return Promise.reject(new PeersError("Closed", "Closed", this.closedMessage));
    if (this.waiter) return Promise.reject(new Error("accept called concurrently"));
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Hands `item` to the waiting caller, or holds it; discards it once closed. */
  push(item: T): void {
    if (this.stopped) return this.discard(item);
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter.resolve(item);
    else this.held.push(item);
  }

  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const item of this.held.splice(0)) this.discard(item);
    this.waiter?.reject(new PeersError("Closed", "Closed", this.closedMessage));
    this.waiter = undefined;
  }
}

/**
 * A `Socket` over socket.io-client speaking the peers socket.io transport
 * (docs/transport-socketio.md §1–3): hellos, `"b"`/`"t"` frames, cumulative
 * credit both ways, `"peers:close"` with the reason. Frames go out as `"b"`
 * (raw binary; a JavaScript client does not ask for 0x1e escaping).
 */
export class SocketIoSocket implements Socket {
  readonly info: SocketInfo;
  private readonly inbox = new Inbox();
  private readonly credit: SendCredit;
  private readonly recvWindow: RecvWindow;
  private readonly sendQueue = new SendQueue(this.inbox);

  private constructor(
    private readonly io: IoSocket,
    serverHello: { maxFrame: number; window: Credit },
    private readonly maxFrame: number,
    window: Credit,
  ) {
    this.info = {
      transport: "socket.io",
      maxFrameSize: Math.min(serverHello.maxFrame, maxFrame),
      security: { confidential: false },
    };
    this.credit = new SendCredit(serverHello.window);
    this.recvWindow = new RecvWindow(window);
    this.inbox.onConsumed = (frame) => this.onConsumed(frame);
  }

  get closed(): Promise<CloseReason> {
    return this.inbox.closed;
  }

  /** Dials `origin` (`http://host:port`) and completes the transport hello. */
  static async connect(origin: string, options: SocketIoOptions = {}): Promise<SocketIoSocket> {
    const { io } = await import("socket.io-client");
    const maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    const window = options.window ?? DEFAULT_WINDOW;
    if (window.bytes < 2 * maxFrame) {
      throw new PeersError("InvalidInput", "InvalidInput", "window.bytes must be at least 2 × maxFrame");
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = io(origin, {
      path: options.path ?? "/socket.io",
      transports: ["websocket"],
      upgrade: false,
      reconnection: false,
      timeout: timeoutMs,
      ...options.ioOptions,
    }) as unknown as IoSocket;
    // The server sends nothing but its hello before ours, except a close notice.
    const hello = await settleOnce<{ maxFrame: number; window: Credit }>(
      timeoutMs,
      () => new PeersError("Timeout", "Timeout", "no peers:hello from the server in time"),
      () => socket.disconnect(),
      ({ resolve, fail }) => {
        socket.on("connect_error", (err) =>
          fail(new PeersError("Transport", "Refused", `socket.io refused the connection: ${(err as Error).message}`)),
        );
        socket.on("peers:close", (r) => fail(new PeersError("Transport", "Refused", `the server closed: ${JSON.stringify(r)}`)));
        socket.on("peers:hello", (h) => {
          const v = h as Record<string, unknown>;
          const w = v?.window;
          if (v?.v !== 1 || typeof v.maxFrame !== "number" || v.maxFrame < 16384 || !isCredit(w)) {
            return fail(new PeersError("Transport", "ProtocolError", `unusable server hello ${JSON.stringify(h)}`));
          }
          resolve({ maxFrame: v.maxFrame, window: w });
        });
      },
    );
    const s = new SocketIoSocket(socket, hello, maxFrame, window);
    s.listen();
    socket.emit("peers:hello", { v: 1, maxFrame, window });
    return s;
  }

  private listen(): void {
    const io = this.io;
    io.on("b", (...args: unknown[]) => this.onBinary(args));
    io.on("t", (...args: unknown[]) => this.onText(args));
    io.on("peers:credit", (...args: unknown[]) => {
      if (args.length !== 1 || !isCredit(args[0])) return this.violation(`bad credit grant ${JSON.stringify(args)}`);
      this.allow(args[0]);
    });
    io.on("peers:close", (...args: unknown[]) => {
      const r = args[0] as Record<string, unknown> | undefined;
      const code = CLOSE_CODES.includes(r?.code as CloseCode) ? (r?.code as CloseCode) : "ProtocolError";
      const message = typeof r?.message === "string" ? r.message : "malformed close notice";
      this.inbox.end({ code, message, by: "Remote" });
      this.sendQueue.wake();
      io.disconnect();
    });
    io.on("peers:hello", () => this.violation("a second hello"));
    io.on("disconnect", (reason: unknown) => {
      this.inbox.end({ code: "TransportFailure", message: `socket.io disconnected: ${String(reason)}`, by: "Local" });
      this.sendQueue.wake();
    });
  }

  private onBinary(args: unknown[]): void {
    const data = args[0];
    if (args.length !== 1) return this.violation("\"b\" with more than one argument");
    let frame: Uint8Array;
    if (data instanceof Uint8Array) frame = data;
    else if (data instanceof ArrayBuffer) frame = new Uint8Array(data);
    else return this.violation("\"b\" without a binary attachment");
    this.deliver(frame);
  }

  private onText(args: unknown[]): void {
    if (args.length < 1 || args.length > 2 || typeof args[0] !== "string") return this.violation("bad \"t\" frame");
    if (args.length === 2) {
      if (!isCredit(args[1])) return this.violation("bad credit on a \"t\" frame");
      this.allow(args[1]);
    }
    let bytes: Uint8Array;
    try {
      bytes = Uint8Array.from(atob(args[0]), (c) => c.charCodeAt(0));
    } catch {
      return this.violation("bad base64 in a \"t\" frame");
    }
    this.deliver(bytes);
  }

  private deliver(frame: Uint8Array): void {
    if (this.inbox.closeReason) return;
    if (frame.length > this.maxFrame) return this.violation(`frame of ${frame.length} bytes over maxFrame ${this.maxFrame}`);
    if (!this.recvWindow.receive(frame.length)) return this.violation("frames beyond the granted credit");
    this.inbox.push(frame);
  }

  private onConsumed(frame: Uint8Array): void {
    const grant = this.recvWindow.consume(frame.length);
    if (grant && !this.inbox.closeReason) this.io.emit("peers:credit", grant);
  }

  private allow(grant: Credit): void {
    this.credit.allow(grant);
    this.sendQueue.wake();
  }

  private violation(detail: string): void {
    if (this.inbox.closeReason) return;
    const message = truncateUtf8(detail, 256);
    this.io.emit("peers:close", { code: "ProtocolError", message });
    this.inbox.end({ code: "ProtocolError", message, by: "Local" });
    this.sendQueue.wake();
    this.io.disconnect();
  }

  send(frame: Uint8Array): Promise<void> {
    return this.sendQueue.send(
      frame,
      this.info.maxFrameSize,
      () => this.credit.fits(frame.length),
      (f) => {
        this.credit.take(f.length);
        this.io.emit("b", f);
      },
    );
  }

  recv(): Promise<Uint8Array> {
    return this.inbox.recv();
  }

  async close(code: CloseCode, message: string): Promise<void> {
    const reason = await this.sendQueue.closeAfterQueued(code, message);
    if (!reason) return;
    this.io.emit("peers:close", { code, message: reason.message });
    // The disconnect packet queues behind the notice, and engine.io closes only
    // once its write buffer has drained, so the notice reaches the peer first.
    // Resolve when the connection is closed (at most 2 s), so a caller that exits
    // right after `close` does not cut the notice off.
    const engineClosed = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      const engine = this.io.io.engine;
      if (!engine) return resolve();
      engine.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.io.disconnect();
    await engineClosed;
  }
}

function isCredit(v: unknown): v is Credit {
  const c = v as Credit;
  return typeof c === "object" && c !== null && Number.isSafeInteger(c.frames) && Number.isSafeInteger(c.bytes) && c.frames >= 0 && c.bytes >= 0;
}
