/**
 * The frame relay (docs/signaling.md §7) as a {@link Socket}: the last resort
 * when no direct transport works. Both devices ask the server for a relay with
 * each other; the server then forwards opaque frames between them.
 *
 * ```text
 *  "relay-open"   → server {req, peer}             reply {ok, state: "waiting" | "open"}
 *  "relay-open"   ← server {relay, peer, max_frame, rate?} (to both, once both asked; rate: the pacer's budget, pace.ts)
 *  "relay-frame"  ↔ {relay, data: base64(frame)}    (≤ max_frame, ≤ 90 KiB here)
 *  "relay-credit" ↔ {relay, frames, bytes}          cumulative: what the peer may have sent in total
 *  "relay-close"  ↔ {relay, code, message}
 * ```
 *
 * Flow control: each side may be sent 64 frames and 256 KiB beyond what its
 * application consumed; the receiver grants cumulative credit once half a
 * window is consumed, a sender waits for it, and a frame beyond the credit we
 * granted closes the relay with `ProtocolError`. The relay offers no security:
 * the `Connection` on top seals every frame (`security.confidential` is false).
 */
import { CloseCode, CloseReason, CLOSE_CODES, truncateUtf8 } from "./envelope.js";
import { PeersError } from "./errors.js";
import { fromBase64, toBase64 } from "./signaling.js";
import type { IncomingSignal, SignalingClient } from "./signaling.js";
import { Credit, RecvWindow, SendCredit } from "./flow.js";
import type { RelayRate } from "./pace.js";
import { AcceptQueue, Inbox, MAX_CLOSE_MESSAGE, SendQueue, Socket, SocketInfo } from "./socket.js";

/** What each side may be sent beyond what it consumed. */
export const RELAY_WINDOW: Readonly<Credit> = { frames: 64, bytes: 256 * 1024 };
/** The largest `max_frame` this client takes from the server (a larger one is lowered to it). */
export const RELAY_MAX_FRAME_LIMIT = 90 * 1024;

/** A relay event from the server, parsed (`parseRelayEvent`). */
export type RelayEvent =
  | { type: "open"; relay: number; peer: string; maxFrame: number; rate: RelayRate | undefined }
  | { type: "frame"; relay: number; data: string }
  | { type: "credit"; relay: number; frames: number; bytes: number }
  | { type: "close"; relay: number; code: string; message: string; /** Ended by this client (its signaling connection dropped), not by the server. */ local?: boolean };

/** The server's relay events by name. */
export const RELAY_EVENTS = ["relay-open", "relay-frame", "relay-credit", "relay-close"] as const;

function isCount(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

/** `relay-open`'s optional `rate` (absent from older servers). */
function parseRate(v: unknown, bad: () => Error): RelayRate | undefined {
  if (v === undefined) return undefined;
  const r = v as Partial<RelayRate> | null;
  if (typeof r !== "object" || r === null || !isCount(r.units_per_second) || !isCount(r.burst_units) || r.units_per_second < 1 || r.burst_units < 1) throw bad();
  return { units_per_second: r.units_per_second, burst_units: r.burst_units };
}

/** Parses one relay event; throws on a malformed one (the client treats that as a protocol violation). */
export function parseRelayEvent(name: (typeof RELAY_EVENTS)[number], args: unknown[]): RelayEvent {
  const v = args[0] as Record<string, unknown> | undefined;
  const bad = () => new Error(`unusable ${name} ${JSON.stringify(args).slice(0, 200)}`);
  if (args.length !== 1 || typeof v !== "object" || v === null || !isCount(v.relay)) throw bad();
  const relay = v.relay;
  switch (name) {
    case "relay-open":
      if (typeof v.peer !== "string" || !/^[0-9a-f]{40}$/.test(v.peer) || !isCount(v.max_frame) || v.max_frame < 1) throw bad();
      return { type: "open", relay, peer: v.peer, maxFrame: Math.min(v.max_frame, RELAY_MAX_FRAME_LIMIT), rate: parseRate(v.rate, bad) };
    case "relay-frame":
      if (typeof v.data !== "string") throw bad();
      return { type: "frame", relay, data: v.data };
    case "relay-credit":
      if (!isCount(v.frames) || !isCount(v.bytes)) throw bad();
      return { type: "credit", relay, frames: v.frames, bytes: v.bytes };
    case "relay-close":
      if (typeof v.code !== "string" || typeof v.message !== "string") throw bad();
      return { type: "close", relay, code: v.code, message: v.message };
  }
}

export interface RelayOptions {
  /** How long to wait for the other device to ask too, ms. Default 35,000 (the server waits 30 s). */
  timeoutMs?: number;
}

/**
 * A `Socket` through the signaling server's frame relay with one device. Open it
 * with {@link RelaySocket.open}; the other device must open one with this device
 * too (within the server's wait).
 */
export class RelaySocket implements Socket {
  readonly info: SocketInfo;
  private readonly inbox = new Inbox();
  private readonly sendQueue = new SendQueue(this.inbox);
  /** What the peer allowed us to send in total, and what we sent. */
  private readonly credit = new SendCredit(RELAY_WINDOW);
  /** What we allowed the peer, what arrived, what our application consumed. */
  private readonly recvWindow = new RecvWindow(RELAY_WINDOW);
  /** The last frame's turn at the pacer: frames leave in the order `send` was called. */
  private pacing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly signaling: SignalingClient,
    readonly relay: number,
    /** The other device (hex), as the server authenticated it. */
    readonly peer: string,
    maxFrame: number,
  ) {
    this.info = { transport: "relay", maxFrameSize: maxFrame, security: { confidential: false } };
    this.inbox.onConsumed = (frame) => this.onConsumed(frame);
    signaling.routeRelay(relay, (e) => this.onEvent(e));
    void signaling.closed.then((err) => this.end({ code: "TransportFailure", message: `signaling closed: ${err.message}`, by: "Local" }));
  }

  /**
   * Asks the server for a relay with `peer` (hex device id) and resolves once the
   * other device asked too. Refusals: `Signaling`/`TooManyRelays`, `QuotaExceeded`,
   * `SelfAddressed`...; `Timeout` when the other device does not ask in time.
   */
  static async open(signaling: SignalingClient, peer: string, options: RelayOptions = {}): Promise<RelaySocket> {
    const opened = await signaling.openRelay(peer, options.timeoutMs ?? 35_000);
    return new RelaySocket(signaling, opened.relay, peer, opened.maxFrame);
  }

  get closed(): Promise<CloseReason> {
    return this.inbox.closed;
  }

  private onEvent(e: RelayEvent): void {
    if (this.inbox.closeReason) return;
    if (e.type === "frame") {
      let frame: Uint8Array;
      try {
        frame = fromBase64(e.data);
      } catch {
        return this.violation("a relay frame that is not base64");
      }
      if (frame.length > this.info.maxFrameSize) return this.violation(`a frame of ${frame.length} bytes over ${this.info.maxFrameSize}`);
      if (!this.recvWindow.receive(frame.length)) return this.violation("frames beyond the granted credit");
      this.inbox.push(frame);
    } else if (e.type === "credit") {
      this.credit.allow(e);
      this.sendQueue.wake();
    } else if (e.type === "close") {
      const code = CLOSE_CODES.includes(e.code as CloseCode) ? (e.code as CloseCode) : "ProtocolError";
      this.end({ code, message: truncateUtf8(e.message, MAX_CLOSE_MESSAGE), by: e.local ? "Local" : "Remote" });
    }
  }

  private onConsumed(frame: Uint8Array): void {
    const grant = this.recvWindow.consume(frame.length);
    if (!grant || this.inbox.closeReason) return;
    // Credit is cumulative: a grant held back by the pacer is sent as it is (a later one supersedes it).
    const emit = () => this.inbox.closeReason || this.signaling.emitRelay("relay-credit", { relay: this.relay, ...grant });
    const wait = this.signaling.relayPace(0);
    if (wait <= 0) emit();
    else setTimeout(emit, wait);
  }

  /** Ends the socket here (no notice to send). */
  private end(reason: CloseReason): void {
    if (this.inbox.closeReason) return;
    this.inbox.end(reason);
    this.sendQueue.wake();
    this.signaling.unrouteRelay(this.relay);
  }

  /** A violation by the peer: tell it why, then close. */
  private violation(detail: string): void {
    const message = truncateUtf8(detail, MAX_CLOSE_MESSAGE);
    this.signaling.emitRelay("relay-close", { relay: this.relay, code: "ProtocolError", message });
    this.end({ code: "ProtocolError", message, by: "Local" });
  }

  async send(frame: Uint8Array): Promise<void> {
    // Frames wait their turn at the client's relay pacer, in order (pace.ts).
    const turn = this.pacing.then(() => this.paced(frame.length));
    this.pacing = turn.catch(() => undefined);
    await turn;
    return this.sendQueue.send(
      frame,
      this.info.maxFrameSize,
      () => this.credit.fits(frame.length),
      (f) => {
        this.credit.take(f.length);
        this.signaling.emitRelay("relay-frame", { relay: this.relay, data: toBase64(f) });
      },
    );
  }

  recv(): Promise<Uint8Array> {
    return this.inbox.recv();
  }

  /** Waits until the relay budget pays for a frame of `len` bytes (or the socket closed). */
  private paced(len: number): Promise<void> {
    const wait = this.signaling.relayPace(len);
    if (wait <= 0 || this.inbox.closeReason) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, wait);
      void this.inbox.closed.then(() => (clearTimeout(timer), resolve()));
    });
  }

  /** Sends `relay-close` behind every queued frame; the signaling client stays connected. */
  async close(code: CloseCode, message: string): Promise<void> {
    const reason = await this.sendQueue.closeAfterQueued(code, message);
    if (!reason) return;
    this.signaling.emitRelay("relay-close", { relay: this.relay, code, message: reason.message });
    this.signaling.unrouteRelay(this.relay);
  }
}

/** Relays an acceptor opens at once; requests beyond it are left unanswered (the asking device's dial times out). */
export const MAX_RELAY_OPENINGS = 8;
/** Opened relays an acceptor holds until {@link RelayAcceptor.accept} takes them. */
export const RELAY_ACCEPT_QUEUE = 16;

export interface RelayAcceptOptions {
  /** Whether to answer a relay request from `device` (hex). Default: every device (the handshake on top decides trust). */
  allow?: (device: string) => boolean;
  /** How long each relay may take to open, ms. Default 35,000 (the server waits 30 s). */
  timeoutMs?: number;
}

/**
 * The answering side of a device's relay dial (docs/device.md §5a, `RelayDialer`): a
 * `ready` signal whose body is `{"relay": true}` is a device asking for a frame relay.
 * The acceptor opens its side (the server pairs the two requests) and queues the
 * socket for {@link accept}; the asking device then runs the handshake as initiator
 * on it, so the caller takes it with `Connection.accept`. What a `peers run` daemon
 * that trusts this device dials when no better path works. Bounds: one opening per
 * device, at most {@link MAX_RELAY_OPENINGS} at once and {@link RELAY_ACCEPT_QUEUE}
 * open sockets not yet taken (beyond it a socket is closed `GoingAway`).
 */
export class RelayAcceptor {
  private readonly queue = new AcceptQueue<RelaySocket>("the relay acceptor is closed", (socket) => void socket.close("GoingAway", "acceptor closed"));
  private readonly opening = new Set<string>();
  private readonly listener = (s: IncomingSignal) => this.onSignal(s);

  constructor(
    private readonly signaling: SignalingClient,
    private readonly options: RelayAcceptOptions = {},
  ) {
    signaling.on("signal", this.listener);
  }

  /** The next opened relay (its `peer` is the device that asked); rejects with `Closed` once {@link close} was called. */
  accept(): Promise<RelaySocket> {
    return this.queue.next();
  }

  /** Stops answering requests and closes the relays not yet taken (relays still opening are closed when they open). */
  close(): void {
    this.queue.close();
    this.signaling.off("signal", this.listener);
  }

  private onSignal(s: IncomingSignal): void {
    if (this.queue.closed || s.kind !== "ready" || s.body.relay !== true) return;
    if (this.opening.has(s.from) || this.opening.size >= MAX_RELAY_OPENINGS) return;
    if (!(this.options.allow?.(s.from) ?? true)) return;
    this.opening.add(s.from);
    RelaySocket.open(this.signaling, s.from, { timeoutMs: this.options.timeoutMs ?? 35_000 })
      .then(
        (socket) => this.opened(socket),
        () => undefined, // the other device gave up or the server refused: its dial fails on its side
      )
      .finally(() => this.opening.delete(s.from));
  }

  private opened(socket: RelaySocket): void {
    if (!this.queue.closed && !this.queue.waiting && this.queue.length >= RELAY_ACCEPT_QUEUE) {
      void socket.close("GoingAway", "too many relays waiting to be accepted");
      return;
    }
    this.queue.push(socket);
  }
}
