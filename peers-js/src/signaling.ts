/**
 * The signaling client (docs/signaling.md sections 1–8): joins the
 * server's namespace over socket.io, answers the `challenge` with the v2
 * registration signature over the server's origin, then sends signals,
 * watches presence, asks for the ICE configuration, creates, joins and closes
 * sessions by code, and opens frame relays (`RelaySocket`, relay.ts). Every request carries a
 * `req` and is answered through a socket.io ack; each has a deadline, and a
 * refusal is a `PeersError` of kind `"Signaling"` whose `code` is the server's
 * error code in PascalCase (`"QueueFull"`, `"SelfAddressed"`...; `"Unknown"` for
 * a code this client does not know, the wire text kept in `detail.wire`).
 * The wire forms and their parsers are in ./signaling-wire.ts.
 *
 * Events (`on(name, listener)`): `signal` (a relayed or queued message),
 * `outcome` (the later fate of a queued message), `presence`, `notice` (a
 * server notice such as `replaced`), `session` (a session's party joined, or it
 * closed or expired), `state` (the connection dropped, or is registered again) and
 * `closed`. The events that arrive before
 * a listener exists (the queued signals and outcome notices that follow the
 * registration) are kept, up to {@link MAX_BACKLOG} per event, and handed to the
 * first listener; past that bound the client closes with `Limit`/`Backlog`
 * rather than drop one.
 *
 * Reconnection: when the connection drops without this side closing it (the server
 * restarted, the network blinked), the client registers again with the same keys
 * (a fresh challenge) on the schedule of ./reconnect.ts: the first attempt within
 * {@link RECONNECT_FIRST_DELAY_MS} (250 ms), then doubling delays with jitter up to
 * {@link RECONNECT_MAX_DELAY_MS} (2 s), for at most {@link RECONNECT_GIVE_UP_MS} (60 s)
 * after the drop; then it closes with `Transport`/`ReconnectGaveUp`. While it is
 * down (`state` event `{state: "reconnecting"}`):
 * - requests in flight at the drop fail with `Transport`/`Disconnected` (their
 *   outcome is unknown; none is sent again); requests made while down wait for the
 *   registration within their own deadline, then go;
 * - every open relay ends (`TransportFailure`): the server binds a relay to the
 *   socket that opened it, and that socket is gone; relays being opened fail;
 * - the devices watched (`subscribe`) are watched again once registered, and each
 *   gets a `presence` event with its state then;
 * - once registered, a `state` event `{state: "registered", reconnected: true,
 *   downMs, attempts, queued}` tells callers to redo what lived on the old socket
 *   (relays, WebRTC signaling in flight). Sessions live in the server's store: an
 *   in-memory server that restarted has forgotten them (docs/signaling.md §6).
 * A `replaced` notice (the same device registered elsewhere) or a refusal that
 * holds for every try (`BadSignature`, `Protocol`) closes the client for good.
 * `reconnect: false` in the options keeps the old behaviour: a drop closes it.
 */
import { toHex } from "./bytes.js";
import { PeersError, invalidInput, settleOnce } from "./errors.js";
import { DeviceKeys } from "./identity.js";
import { parseRelayEvent, RELAY_EVENTS, RelayEvent } from "./relay.js";
import { Pacer, relayEventUnits } from "./pace.js";
import { RECONNECT_FIRST_DELAY_MS, RECONNECT_GIVE_UP_MS, RECONNECT_MAX_DELAY_MS, ReconnectOptions, ReconnectSchedule } from "./reconnect.js";
import {
  CHALLENGE_VERSION,
  checkDeviceId,
  CreatedSession,
  DEVICE_ID,
  fromBase64,
  IceConfig,
  IceServer,
  IncomingSignal,
  isObject,
  isText,
  isUnixTime,
  JoinedSession,
  MAX_BACKLOG,
  MAX_HELD_RELAY_EVENTS,
  MAX_PENDING_REQUESTS,
  MAX_RELAY_WAITERS,
  MAX_SESSION_CODE_LEN,
  MAX_SUBSCRIBE_BATCH,
  OutcomeNotice,
  parseOutcome,
  parsePresence,
  parseSessionChange,
  parseSignal,
  PresenceChange,
  protocolError,
  refusal,
  registrationMessage,
  serverOrigin,
  SessionChange,
  SessionKind,
  SIGNAL_ID,
  SIGNALING_ERROR_CODES,
  SignalingNotice,
  signalingError,
  SignalKind,
  SignalResult,
  toBase64,
} from "./signaling-wire.js";

export * from "./signaling-wire.js";
export * from "./reconnect.js";

/** Most devices a client keeps watching across reconnections (the server's own cap is lower). */
export const MAX_WATCHED = 4096;

/** The connection's state, as the `state` event tells it. */
export type SignalingState =
  | { state: "reconnecting"; reason: PeersError }
  | { state: "registered"; reconnected: true; downMs: number; attempts: number; queued: number };

export interface SignalingEvents {
  signal: IncomingSignal;
  /** A session this device created was joined, or one it is a party of closed or expired. */
  session: SessionChange;
  outcome: OutcomeNotice;
  presence: PresenceChange;
  notice: SignalingNotice;
  /** The connection dropped and the client is registering again, or it is registered again. */
  state: SignalingState;
  /** Why the client closed (`Closed`/`Replaced`, `RegistrationTimeout`, `Transport`/`ReconnectGaveUp`...). */
  closed: PeersError;
}
type EventName = keyof SignalingEvents;

export interface SignalingOptions {
  /** socket.io namespace. Default "/signaling". */
  namespace?: string;
  /** socket.io request path. Default "/socket.io". */
  path?: string;
  /** Deadline of the connection and registration, ms. Default 10,000. */
  connectTimeoutMs?: number;
  /** Deadline of each request, ms. Default 10,000. */
  requestTimeoutMs?: number;
  /** Register again after a drop (./reconnect.ts); `false`: a drop closes the client. Default: on. */
  reconnect?: ReconnectOptions | false;
  /** Extra socket.io-client options (transports, extraHeaders...). */
  ioOptions?: Record<string, unknown>;
}

export interface SignalOptions {
  /** The message id (1–64 of `A-Z a-z 0-9 . _ : -`). Default: a fresh one. */
  id?: string;
  /** How long the server may queue it for an offline recipient; 0: never queue. */
  ttlMs?: number;
}

interface IoSocket {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  disconnect(): unknown;
}

interface Pending {
  resolve: (reply: Record<string, unknown>) => void;
  reject: (err: PeersError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Sends it; `undefined` once sent (a drop fails it then). */
  send: (() => void) | undefined;
}

/** A socket that registered, with the events that came before the registration's reply. */
interface Dialed {
  io: IoSocket;
  queued: number;
  early: Array<[string, unknown[]]>;
}

/** Connects to the server and registers `keys` (one attempt). */
async function dial(url: string, keys: DeviceKeys, options: SignalingOptions, connectTimeoutMs: number): Promise<Dialed> {
  const origin = serverOrigin(url);
  const { io } = await import("socket.io-client");
  const base = new URL(url);
  const target = new URL(options.namespace ?? "/signaling", `${base.protocol}//${base.host}`);
  const socket = io(target.toString(), {
    path: options.path ?? "/socket.io",
    transports: ["websocket"],
    upgrade: false,
    reconnection: false,
    forceNew: true,
    timeout: connectTimeoutMs,
    ...options.ioOptions,
  }) as unknown as IoSocket;

  // Everything that arrives before the registration's reply is held here and
  // replayed into the client, so no queued signal is missed.
  const early: Array<[string, unknown[]]> = [];
  let collecting = true;
  for (const event of ["signal", "outcome", "presence", "notice", "session"]) {
    socket.on(event, (...args) => {
      if (collecting && early.length < MAX_BACKLOG) early.push([event, args]);
    });
  }
  const registered = await settleOnce<number>(
    connectTimeoutMs,
    () => new PeersError("Timeout", "Timeout", `not registered with ${origin} within ${connectTimeoutMs} ms`),
    () => socket.disconnect(),
    (attempt) => {
      const { resolve, fail } = attempt;
      socket.on("connect_error", (err) => {
        const text = (err as Error).message ?? String(err);
        const m = /^([a-z_]+): ?(.*)$/s.exec(text);
        if (m && Object.hasOwn(SIGNALING_ERROR_CODES, m[1] as string)) return fail(signalingError(m[1] as string, m[2] ?? ""));
        fail(new PeersError("Transport", "Refused", `socket.io refused the connection: ${text}`));
      });
      socket.on("disconnect", (why) => fail(new PeersError("Transport", "Disconnected", `disconnected before registering: ${String(why)}`)));
      socket.on("notice", (n) => {
        const notice = isObject(n) && typeof n.code === "string" ? n : { code: "unknown" };
        fail(signalingError(notice.code as string, String(notice.message ?? "notice before registration")));
      });
      socket.on("challenge", (...args) => {
        if (attempt.settled) return;
        const c = args[0];
        if (args.length !== 1 || !isObject(c)) return fail(protocolError(`unusable challenge ${JSON.stringify(args)}`));
        if (c.v !== CHALLENGE_VERSION) return fail(protocolError(`challenge version ${JSON.stringify(c.v)}, this client speaks ${CHALLENGE_VERSION}`));
        let signature: Uint8Array;
        try {
          const nonce = fromBase64(String(c.nonce));
          signature = keys.sign(registrationMessage(nonce, origin));
        } catch (e) {
          return fail(e instanceof PeersError ? e : protocolError(String(e)));
        }
        const request = { req: 0, public_key: toBase64(keys.signingPublic), origin, signature: toBase64(signature) };
        socket.emit("register", request, (reply: unknown) => {
          if (!isObject(reply)) return fail(protocolError(`unusable register reply ${JSON.stringify(reply)}`));
          if (reply.ok !== true) return fail(refusal(reply));
          if (reply.device_id !== keys.deviceIdHex || !Number.isSafeInteger(reply.queued) || (reply.queued as number) < 0) {
            return fail(protocolError(`the server registered ${JSON.stringify(reply)}, not ${keys.deviceIdHex}`));
          }
          resolve(reply.queued as number);
        });
      });
    },
  );
  collecting = false;
  return { io: socket, queued: registered, early };
}

/** A registered connection to a signaling server, registered again after a drop. */
export class SignalingClient {
  /** This device's id, as the server derived it (equals the keys' id). */
  readonly deviceId: string;
  /** How many queued messages the server announced at the first registration. */
  readonly queued: number;
  private nextReq = 1;
  private nextId = 1;
  private readonly idPrefix = toHex(crypto.getRandomValues(new Uint8Array(6)));
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<EventName, Array<(value: never) => void>>();
  private readonly backlog = new Map<EventName, unknown[]>();
  private closeError: PeersError | undefined;
  /** The socket registered now; `undefined` while reconnecting. */
  private io: IoSocket | undefined;
  /** Bumped at each drop: events of an older socket are ignored. */
  private generation = 0;
  /** The devices watched (`subscribe`), watched again after a reconnection. */
  private readonly watched = new Set<string>();
  /** Relays by id: their socket's handler, or the events held until the socket exists. */
  private readonly relayRoutes = new Map<number, ((e: RelayEvent) => void) | RelayEvent[]>();
  /** One pacer for all relays of this client (the server's rate is per device). */
  private readonly relayPacer = new Pacer();
  /** `openRelay` calls waiting for the server's relay-open, by peer. */
  private readonly relayWaiters = new Map<string, { resolve: (opened: { relay: number; maxFrame: number }) => void; fail: (err: PeersError) => void }>();
  private resolveClosed!: (e: PeersError) => void;
  /** Resolves once, with why the client closed for good. */
  readonly closed: Promise<PeersError> = new Promise((r) => (this.resolveClosed = r));

  private constructor(
    private readonly url: string,
    private readonly keys: DeviceKeys,
    private readonly options: SignalingOptions,
    dialed: Dialed,
    private readonly requestTimeoutMs: number,
  ) {
    this.deviceId = keys.deviceIdHex;
    this.queued = dialed.queued;
    this.attach(dialed);
  }

  /**
   * Connects to `url` (`http(s)://host:port`, the server's base URL), registers
   * with `keys` and resolves once the server accepted the registration.
   * Refusals: `Signaling`/`ServerFull`, `BadSignature`, `Protocol` (another
   * challenge version, an unusable reply); `Timeout`; `Transport`. (The first
   * registration is not retried: the caller learns at once that the server is not there.)
   */
  static async connect(url: string, keys: DeviceKeys, options: SignalingOptions = {}): Promise<SignalingClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const dialed = await dial(url, keys, options, connectTimeoutMs);
    return new SignalingClient(url, keys, options, dialed, options.requestTimeoutMs ?? 10_000);
  }

  /** Whether the client is registered now (false while reconnecting and once closed). */
  get registered(): boolean {
    return this.io !== undefined && !this.closeError;
  }

  /** How many times the connection dropped (and the client set out to register again). */
  get drops(): number {
    return this.generation;
  }

  /**
   * Resolves once the client is registered (at once when it is); fails with why it
   * closed, or `Timeout` after `timeoutMs`.
   */
  whenRegistered(timeoutMs: number): Promise<void> {
    if (this.closeError) return Promise.reject(this.closeError);
    if (this.registered) return Promise.resolve();
    let listener: ((s: SignalingState) => void) | undefined;
    return settleOnce<void>(
      timeoutMs,
      () => new PeersError("Timeout", "Timeout", `not registered again within ${timeoutMs} ms`),
      () => listener && this.off("state", listener),
      (attempt) => {
        listener = (s) => s.state === "registered" && (this.off("state", listener!), attempt.resolve());
        this.on("state", listener);
        void this.closed.then((err) => attempt.fail(err));
      },
    );
  }

  /** Adds a listener; events held while nobody listened are handed to it first. */
  on<E extends EventName>(event: E, listener: (value: SignalingEvents[E]) => void): this {
    const list = this.listeners.get(event) ?? [];
    list.push(listener as (value: never) => void);
    this.listeners.set(event, list);
    const held = this.backlog.get(event);
    if (held) {
      this.backlog.delete(event);
      for (const value of held) listener(value as SignalingEvents[E]);
    }
    if (event === "closed" && this.closeError) listener(this.closeError as SignalingEvents[E]);
    return this;
  }

  off<E extends EventName>(event: E, listener: (value: SignalingEvents[E]) => void): this {
    const list = this.listeners.get(event);
    if (list) this.listeners.set(event, list.filter((l) => l !== (listener as unknown)));
    return this;
  }

  /**
   * Sends a signal to `to`. Resolves with its first outcome (`delivered`,
   * `queued` with its deadline, `expired`); a queued one later gives an
   * `outcome` event with the same id. Refusals: `TooLarge`, `SelfAddressed`,
   * `QueueFull`, `QuotaExceeded`, `RateLimited`, `RecipientBusy`...
   */
  async signal(to: string, kind: SignalKind | string, body: Record<string, unknown>, options: SignalOptions = {}): Promise<SignalResult> {
    checkDeviceId(to, "recipient");
    if (!isObject(body)) throw invalidInput("signal body", "must be a JSON object");
    const id = options.id ?? `${this.idPrefix}-${this.nextId++}`;
    if (!SIGNAL_ID.test(id)) throw invalidInput("signal id", "must be 1..=64 of A-Z a-z 0-9 . _ : -");
    const request: Record<string, unknown> = { id, to, kind, body };
    if (options.ttlMs !== undefined) {
      if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs < 0) throw invalidInput("ttlMs", "must be a non-negative integer");
      request.ttl_ms = options.ttlMs;
    }
    const reply = await this.request("signal", request);
    const outcome = reply.outcome;
    if (reply.id !== id || (outcome !== "delivered" && outcome !== "queued" && outcome !== "expired")) {
      throw this.violation(`unusable signal reply ${JSON.stringify(reply)}`);
    }
    const result: SignalResult = { id, outcome };
    if (outcome === "queued") {
      if (!isUnixTime(reply.expires_at)) throw this.violation(`queued without expires_at: ${JSON.stringify(reply)}`);
      result.expiresAt = reply.expires_at;
    }
    return result;
  }

  /** Watches `devices`; resolves with those online now. Changes come as `presence` events. */
  async subscribe(devices: string[]): Promise<string[]> {
    for (const d of devices) checkDeviceId(d);
    if (devices.length > MAX_SUBSCRIBE_BATCH) throw invalidInput("subscribe", `at most ${MAX_SUBSCRIBE_BATCH} devices per request`);
    if (new Set([...this.watched, ...devices]).size > MAX_WATCHED) throw new PeersError("Limit", "TooManySubscriptions", `this client watches ${MAX_WATCHED} devices at most`);
    const reply = await this.request("subscribe", { devices });
    for (const d of devices) this.watched.add(d);
    const online = reply.online;
    if (!Array.isArray(online) || !online.every((d) => typeof d === "string" && DEVICE_ID.test(d) && devices.includes(d))) {
      throw this.violation(`unusable subscribe reply ${JSON.stringify(reply)}`);
    }
    return online as string[];
  }

  async unsubscribe(devices: string[]): Promise<void> {
    for (const d of devices) checkDeviceId(d);
    if (devices.length > MAX_SUBSCRIBE_BATCH) throw invalidInput("unsubscribe", `at most ${MAX_SUBSCRIBE_BATCH} devices per request`);
    for (const d of devices) this.watched.delete(d);
    await this.request("unsubscribe", { devices });
  }

  /** The ICE servers for `RTCPeerConnection` (TURN credentials valid until `expiresAt`). */
  async iceConfig(): Promise<IceConfig> {
    const reply = await this.request("ice-config", {});
    const servers = reply.ice_servers;
    const ok =
      Array.isArray(servers) &&
      servers.every(
        (s) =>
          isObject(s) &&
          Array.isArray(s.urls) &&
          s.urls.every((u) => typeof u === "string") &&
          (s.username === undefined || typeof s.username === "string") &&
          (s.credential === undefined || typeof s.credential === "string"),
      ) &&
      (reply.expires_at === undefined || isUnixTime(reply.expires_at));
    if (!ok) throw this.violation(`unusable ice-config reply ${JSON.stringify(reply)}`);
    const config: IceConfig = { iceServers: (servers as IceServer[]).map((s) => ({ ...s, urls: [...s.urls] })) };
    if (reply.expires_at !== undefined) config.expiresAt = reply.expires_at as number;
    return config;
  }

  /**
   * Sends `event` with `payload` (plus a `req`) and resolves with the `ok`
   * reply; a refusal rejects with its code. For requests this class has no
   * method for yet (sessions, relays). One made while the client reconnects waits
   * for the registration (within its deadline); one in flight when the connection
   * drops fails `Transport`/`Disconnected` and is not sent again.
   */
  request(event: string, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.closeError) return Promise.reject(this.closeError);
    if (this.pending.size >= MAX_PENDING_REQUESTS) {
      return Promise.reject(new PeersError("Limit", "TooManyRequests", `${MAX_PENDING_REQUESTS} requests already await their reply`));
    }
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        reject(new PeersError("Timeout", "Timeout", `no reply to ${event} within ${this.requestTimeoutMs} ms`, { event, req }));
      }, this.requestTimeoutMs);
      const pending: Pending = { resolve, reject, timer, send: undefined };
      pending.send = () => {
        pending.send = undefined;
        this.io?.emit(event, { ...payload, req }, (reply: unknown) => this.onReply(req, reply));
      };
      this.pending.set(req, pending);
      if (this.io) pending.send();
    });
  }

  /**
   * Asks for a frame relay with `peer` (docs/signaling.md §7) and resolves with
   * its id and frame size once the server opened it (both devices asked), within
   * `timeoutMs`. `RelaySocket.open` is the usual way in.
   */
  openRelay(peer: string, timeoutMs: number): Promise<{ relay: number; maxFrame: number }> {
    checkDeviceId(peer, "relay peer");
    if (this.closeError) return Promise.reject(this.closeError);
    if (this.relayWaiters.has(peer)) return Promise.reject(invalidInput("relay", `already opening a relay with ${peer}`));
    if (this.relayWaiters.size >= MAX_RELAY_WAITERS) {
      return Promise.reject(new PeersError("Limit", "TooManyRelays", `${MAX_RELAY_WAITERS} relays are already being opened`));
    }
    return settleOnce(
      timeoutMs,
      () => new PeersError("Timeout", "Timeout", `${peer} did not open the relay within ${timeoutMs} ms`),
      () => this.relayWaiters.delete(peer),
      (attempt) => {
        this.relayWaiters.set(peer, { resolve: attempt.resolve, fail: attempt.fail });
        this.request("relay-open", { peer }).catch((err: PeersError) => attempt.fail(err));
        void this.closed.then((err) => attempt.fail(err));
      },
    );
  }

  /**
   * Creates a transfer session lasting `ttlMs` (default: the server's, capped at its
   * maximum); the other device joins with the code, and a `session` event tells when
   * it does. Refusals: `RateLimited`, `TooManySessions`, `QuotaExceeded`, `Unavailable`.
   */
  async createSession(options: { ttlMs?: number; kind?: SessionKind } = {}): Promise<CreatedSession> {
    const request: Record<string, unknown> = {};
    if (options.ttlMs !== undefined) {
      if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs <= 0) throw invalidInput("ttlMs", "must be a positive integer");
      request.ttl_ms = options.ttlMs;
    }
    if (options.kind !== undefined) {
      if (options.kind !== "secret" && options.kind !== "pake") throw invalidInput("session kind", "must be secret or pake");
      request.kind = options.kind;
    }
    const r = await this.request("session-create", request);
    if (!isText(r.transfer_id) || !isText(r.code) || !isText(r.sender_token) || !isUnixTime(r.expires_at)) {
      throw this.violation(`unusable session-create reply ${JSON.stringify(r).slice(0, 200)}`);
    }
    const created: CreatedSession = { transferId: r.transfer_id, code: r.code, senderToken: r.sender_token, expiresAt: r.expires_at };
    if (typeof r.receive_page === "string") created.receivePage = r.receive_page;
    return created;
  }

  /**
   * Joins the session named by `code` (as the sender gave it; the server forgives
   * case, spaces, `O`/`I`/`L`). Refusals: `SessionNotFound` (also a wrong secret),
   * `SessionTaken`, `SessionExpired`, `SessionClosed`, `SelfAddressed`, `RateLimited`.
   */
  async joinSession(code: string): Promise<JoinedSession> {
    if (typeof code !== "string" || code.trim() === "" || code.length > MAX_SESSION_CODE_LEN) {
      throw invalidInput("session code", `must be 1..=${MAX_SESSION_CODE_LEN} characters`);
    }
    const r = await this.request("session-join", { code });
    if (!isText(r.transfer_id) || !isText(r.receiver_token) || typeof r.sender !== "string" || !DEVICE_ID.test(r.sender) || !isUnixTime(r.expires_at)) {
      throw this.violation(`unusable session-join reply ${JSON.stringify(r).slice(0, 200)}`);
    }
    return { transferId: r.transfer_id, receiverToken: r.receiver_token, sender: r.sender, expiresAt: r.expires_at };
  }

  /** Closes a session with either party's token; the other party gets a `session` event. Refusals: `BadToken`, `SessionNotFound`. */
  async closeSession(transferId: string, token: string): Promise<void> {
    if (!isText(transferId) || !isText(token)) throw invalidInput("session close", "transfer id and token must be non-empty strings");
    const r = await this.request("session-close", { transfer_id: transferId, token });
    if (r.transfer_id !== transferId || r.state !== "closed") throw this.violation(`unusable session-close reply ${JSON.stringify(r).slice(0, 200)}`);
  }

  /**
   * Reopens the `pake` session `transferId` with the creator's token after its
   * receiver vanished: it forgets the receiver and the next device naming its number
   * joins it (a `session` event `joined`); the deadline stays. Resolves with that
   * deadline (unix ms). Refusals: `BadToken`, `SessionNotFound`, `SessionClosed`,
   * `SessionExpired`, `QuotaExceeded` (reopened 16 times already), `BadRequest`.
   */
  async reopenSession(transferId: string, token: string): Promise<number> {
    if (!isText(transferId) || !isText(token)) throw invalidInput("session reopen", "transfer id and token must be non-empty strings");
    const r = await this.request("session-reopen", { transfer_id: transferId, token });
    if (r.transfer_id !== transferId || r.state !== "created" || !isUnixTime(r.expires_at)) {
      throw this.violation(`unusable session-reopen reply ${JSON.stringify(r).slice(0, 200)}`);
    }
    return r.expires_at;
  }

  /** Hands relay `id`'s events to `handler` (those held since it opened first). */
  routeRelay(id: number, handler: (e: RelayEvent) => void): void {
    const held = this.relayRoutes.get(id);
    this.relayRoutes.set(id, handler);
    if (Array.isArray(held)) for (const e of held) handler(e);
  }

  /** Forgets relay `id`: its later events are dropped. */
  unrouteRelay(id: number): void {
    this.relayRoutes.delete(id);
  }

  /**
   * Reserves a relay event of `len` bytes of frame data at the client's one relay
   * pacer (pace.ts: 3/4 of the rate the server named in `relay-open`); the ms to
   * wait before sending it.
   */
  relayPace(len: number): number {
    return this.relayPacer.reserve(Date.now(), relayEventUnits(len));
  }

  /** Sends a relay event (no reply); nothing once the client is closed or while it reconnects (its relays ended). */
  emitRelay(event: "relay-frame" | "relay-credit" | "relay-close", payload: Record<string, unknown>): void {
    if (!this.closeError) this.io?.emit(event, payload);
  }

  private onRelay(e: RelayEvent): void {
    if (e.type === "open") {
      const waiter = this.relayWaiters.get(e.peer);
      if (!waiter) {
        this.io?.emit("relay-close", { relay: e.relay, code: "Refused", message: "nobody waits for this relay" });
        return;
      }
      this.relayWaiters.delete(e.peer);
      if (e.rate) this.relayPacer.setRate(e.rate);
      this.relayRoutes.set(e.relay, []);
      waiter.resolve({ relay: e.relay, maxFrame: e.maxFrame });
      return;
    }
    const route = this.relayRoutes.get(e.relay);
    if (typeof route === "function") route(e);
    else if (route && route.length < MAX_HELD_RELAY_EVENTS) route.push(e);
    else if (route) throw new Error(`over ${MAX_HELD_RELAY_EVENTS} events for relay ${e.relay} before its socket existed`);
    // an event for a relay that is gone (frames in flight after a close) is dropped
  }

  /** Disconnects; pending requests fail with `Closed`. */
  close(): void {
    this.shutdown(new PeersError("Closed", "Closed", "closed by this side"));
  }

  private onReply(req: number, reply: unknown): void {
    const p = this.pending.get(req);
    if (!p) return; // timed out already
    this.pending.delete(req);
    clearTimeout(p.timer);
    if (!isObject(reply) || reply.req !== req) {
      p.reject(this.violation(`reply ${JSON.stringify(reply)} does not answer req ${req}`));
    } else if (reply.ok === true) {
      p.resolve(reply);
    } else {
      p.reject(refusal(reply));
    }
  }

  /** Makes `dialed` the client's socket: its events dispatched (those before the registration first), its drop handled. */
  private attach(dialed: Dialed): void {
    const io = dialed.io;
    const generation = this.generation;
    this.io = io;
    const handlers: Record<string, (args: unknown[]) => void> = {
      signal: (args) => this.emitEvent("signal", parseSignal(args)),
      outcome: (args) => this.emitEvent("outcome", parseOutcome(args)),
      presence: (args) => this.emitEvent("presence", parsePresence(args)),
      session: (args) => this.emitEvent("session", parseSessionChange(args)),
      notice: (args) => this.onNotice(args),
    };
    for (const name of RELAY_EVENTS) handlers[name] = (args) => this.onRelay(parseRelayEvent(name, args));
    const dispatch = (name: string, args: unknown[]) => {
      if (this.closeError || generation !== this.generation) return;
      try {
        (handlers[name] as (a: unknown[]) => void)(args);
      } catch (e) {
        this.violation(e instanceof Error ? e.message : String(e));
      }
    };
    for (const name of Object.keys(handlers)) io.on(name, (...args) => dispatch(name, args));
    io.on("disconnect", (why) => {
      if (generation === this.generation) this.dropped(new PeersError("Transport", "Disconnected", `the connection ended: ${String(why)}`));
    });
    for (const [name, args] of dialed.early) dispatch(name, args);
  }

  /**
   * The connection dropped: what lived on it fails (requests in flight, relays, relays
   * being opened), then the client registers again, or closes when told not to.
   */
  private dropped(err: PeersError): void {
    if (this.closeError) return;
    if (this.options.reconnect === false) return this.shutdown(err);
    this.generation += 1;
    this.io?.disconnect();
    this.io = undefined;
    this.failLinked(err);
    this.emitEvent("state", { state: "reconnecting", reason: err });
    void this.reconnect(new ReconnectSchedule(Date.now(), this.options.reconnect ?? {}));
  }

  /** Fails the requests sent on the socket that is gone, its relays and the relays being opened. */
  private failLinked(err: PeersError): void {
    for (const [req, p] of this.pending) {
      if (p.send !== undefined) continue; // not sent yet: it goes once registered again
      this.pending.delete(req);
      clearTimeout(p.timer);
      p.reject(err);
    }
    for (const waiter of [...this.relayWaiters.values()]) waiter.fail(err);
    const routes = [...this.relayRoutes];
    this.relayRoutes.clear();
    for (const [relay, route] of routes) {
      if (typeof route === "function") route({ type: "close", relay, code: "TransportFailure", message: `the signaling connection dropped: ${err.message}`, local: true });
    }
  }

  /** Registers again on `schedule` until it works, the schedule gives up or the client is closed. */
  private async reconnect(schedule: ReconnectSchedule): Promise<void> {
    let last: unknown;
    for (;;) {
      const wait = schedule.next(Date.now(), Math.random(), last);
      if (wait === undefined) return this.shutdown(schedule.gaveUp(Date.now(), last));
      // Unreferenced: a client nobody closed does not keep a Node process alive while it waits.
      await new Promise<void>((r) => (setTimeout(r, wait) as unknown as { unref?: () => void }).unref?.());
      if (this.closeError) return;
      const left = schedule.since + (this.options.reconnect === false ? 0 : (this.options.reconnect?.giveUpMs ?? RECONNECT_GIVE_UP_MS)) - Date.now();
      try {
        const dialed = await dial(this.url, this.keys, this.options, Math.max(1, Math.min(left, this.options.connectTimeoutMs ?? 10_000)));
        if (this.closeError) {
          dialed.io.disconnect();
          return;
        }
        this.attach(dialed);
        await this.watchAgain();
        for (const p of [...this.pending.values()]) p.send?.();
        if (this.io !== dialed.io) return; // dropped again meanwhile
        this.emitEvent("state", { state: "registered", reconnected: true, downMs: Date.now() - schedule.since, attempts: schedule.tried, queued: dialed.queued });
        return;
      } catch (err) {
        last = err;
      }
    }
  }

  /** Watches again the devices watched before the drop, and tells each one's state now as a `presence` event. */
  private async watchAgain(): Promise<void> {
    const devices = [...this.watched];
    for (let i = 0; i < devices.length; i += MAX_SUBSCRIBE_BATCH) {
      const batch = devices.slice(i, i + MAX_SUBSCRIBE_BATCH);
      let online: unknown;
      try {
        online = (await this.request("subscribe", { devices: batch })).online;
      } catch {
        continue; // refused or dropped again: the next drop's reconnection watches them again
      }
      if (!Array.isArray(online)) continue;
      for (const device of batch) if (this.watched.has(device)) this.emitEvent("presence", { device, online: online.includes(device) });
    }
  }

  private onNotice(args: unknown[]): void {
    const n = args[0];
    if (args.length !== 1 || !isObject(n) || typeof n.code !== "string") throw new Error(`unusable notice ${JSON.stringify(args)}`);
    const err = signalingError(n.code, typeof n.message === "string" ? n.message : "");
    const notice: SignalingNotice = { code: err.code, wire: n.code, raw: n };
    if (typeof n.message === "string") notice.message = n.message;
    this.emitEvent("notice", notice);
    // These two end the connection (section 2); say why rather than "disconnected".
    if (n.code === "replaced" || n.code === "registration_timeout") this.shutdown(err);
  }

  private emitEvent<E extends EventName>(event: E, value: SignalingEvents[E]): void {
    const list = this.listeners.get(event);
    if (list && list.length > 0) {
      for (const l of [...list]) (l as (v: SignalingEvents[E]) => void)(value);
      return;
    }
    if (event === "closed" || event === "state") return; // `on("closed")` replays closeError; a past state is no news
    const held = this.backlog.get(event) ?? [];
    if (held.length >= MAX_BACKLOG) {
      this.shutdown(new PeersError("Limit", "Backlog", `${MAX_BACKLOG} ${event} events arrived with no listener`));
      return;
    }
    held.push(value);
    this.backlog.set(event, held);
  }

  private violation(message: string): PeersError {
    const err = protocolError(message);
    this.shutdown(err);
    return err;
  }

  private shutdown(err: PeersError): void {
    if (this.closeError) return;
    this.closeError = err;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const waiter of [...this.relayWaiters.values()]) waiter.fail(err);
    this.io?.disconnect();
    this.io = undefined;
    this.resolveClosed(err);
    this.emitEvent("closed", err);
  }
}
