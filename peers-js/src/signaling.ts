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
 *
 * Events (`on(name, listener)`): `signal` (a relayed or queued message),
 * `outcome` (the later fate of a queued message), `presence`, `notice` (a
 * server notice such as `replaced`), `session` (a session's party joined, or it
 * closed or expired) and `closed`. The events that arrive before
 * a listener exists (the queued signals and outcome notices that follow the
 * registration) are kept, up to {@link MAX_BACKLOG} per event, and handed to the
 * first listener; past that bound the client closes with `Limit`/`Backlog`
 * rather than drop one.
 *
 * Not here yet: reconnection (a closed client stays closed, and its relays
 * end; connect a new one).
 */
import { toHex, utf8, concat } from "./bytes.js";
import { PeersError, invalidInput, settleOnce } from "./errors.js";
import { DeviceKeys } from "./identity.js";
import { parseRelayEvent, RELAY_EVENTS, RelayEvent } from "./relay.js";
import { Pacer, relayEventUnits } from "./pace.js";

/** What the registration signature starts with (27 ASCII bytes). */
export const REGISTER_CONTEXT = utf8.encode("peers/v1 signaling register");
/** The challenge version this client speaks (v2 signs the origin). */
export const CHALLENGE_VERSION = 2;
/** Signal, answer and other kinds (section 3). */
export const SIGNAL_KINDS = ["offer", "answer", "ice-candidate", "ready", "cancel", "error"] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];
/** Longest signal body the server takes, as compact JSON (section 3). */
export const MAX_SIGNAL_BODY = 64 * 1024;
/** Most devices in one subscribe (section 5). */
export const MAX_SUBSCRIBE_BATCH = 256;
/** Events kept per event name while nobody listens. */
export const MAX_BACKLOG = 4096;
/** Requests awaiting their reply at once. */
export const MAX_PENDING_REQUESTS = 1024;
/** Relays being opened at once (the server lets a device have 16 requests waiting). */
export const MAX_RELAY_WAITERS = 16;
/** Events held for a relay between its opening and its socket (a window of frames and some credit). */
export const MAX_HELD_RELAY_EVENTS = 256;

/** The error codes of section 8, wire text → `PeersError.code`. */
export const SIGNALING_ERROR_CODES: Readonly<Record<string, string>> = {
  bad_request: "BadRequest",
  too_large: "TooLarge",
  unknown_event: "UnknownEvent",
  unknown_kind: "UnknownKind",
  not_registered: "NotRegistered",
  already_registered: "AlreadyRegistered",
  bad_signature: "BadSignature",
  queue_full: "QueueFull",
  quota_exceeded: "QuotaExceeded",
  rate_limited: "RateLimited",
  too_many_subscriptions: "TooManySubscriptions",
  self_addressed: "SelfAddressed",
  server_full: "ServerFull",
  replaced: "Replaced",
  registration_timeout: "RegistrationTimeout",
  recipient_busy: "RecipientBusy",
  unavailable: "Unavailable",
  session_not_found: "SessionNotFound",
  session_taken: "SessionTaken",
  session_expired: "SessionExpired",
  session_closed: "SessionClosed",
  bad_token: "BadToken",
  too_many_sessions: "TooManySessions",
  too_many_relays: "TooManyRelays",
  internal: "Internal",
};

/** A server refusal or notice code as a `PeersError`. */
export function signalingError(wire: string, message: string, detail: Record<string, unknown> = {}): PeersError {
  const code = Object.hasOwn(SIGNALING_ERROR_CODES, wire) ? (SIGNALING_ERROR_CODES[wire] as string) : "Unknown";
  return new PeersError("Signaling", code, `${wire}: ${message}`, { ...detail, wire });
}

function protocolError(message: string): PeersError {
  return new PeersError("Signaling", "Protocol", message);
}

/**
 * The origin the registration signs (section 2): `scheme://host:port`, the
 * scheme `http` or `https` (`ws`/`wss` count as those), the host lowercase as
 * dialed (IPv6 in brackets), the port always written.
 */
export function serverOrigin(url: string | URL): string {
  const u = new URL(url);
  const scheme = { "http:": "http", "ws:": "http", "https:": "https", "wss:": "https" }[u.protocol];
  if (!scheme) throw invalidInput("signaling URL", `scheme ${u.protocol} is not http(s) or ws(s)`);
  const port = u.port || (scheme === "http" ? "80" : "443");
  return `${scheme}://${u.hostname.toLowerCase()}:${port}`;
}

/** The bytes a device signs to register: context || nonce || origin. */
export function registrationMessage(nonce: Uint8Array, origin: string): Uint8Array {
  const o = utf8.encode(origin);
  if (nonce.length !== 32) throw protocolError(`the challenge nonce is ${nonce.length} bytes, not 32`);
  if (o.length < 1 || o.length > 255) throw invalidInput("origin", "must be 1..=255 bytes");
  return concat(REGISTER_CONTEXT, nonce, o);
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function fromBase64(text: string): Uint8Array {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw protocolError("not standard padded base64");
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

const DEVICE_ID = /^[0-9a-f]{40}$/;
const SIGNAL_ID = /^[A-Za-z0-9._:-]{1,64}$/;

function checkDeviceId(id: string, what = "device id"): void {
  if (typeof id !== "string" || !DEVICE_ID.test(id)) throw invalidInput(what, "is not 40 lowercase hex digits");
}

// ---------------------------------------------------------------------------
// Events

/** A message relayed to this device (section 3). */
export interface IncomingSignal {
  id: string;
  /** The sender's device id, as the server authenticated it. */
  from: string;
  kind: string;
  body: Record<string, unknown>;
  /** Unix ms. */
  sentAt: number;
  /** True when it waited in the offline queue. */
  queued: boolean;
}

/** The first outcome of `signal` (its reply). */
export interface SignalResult {
  id: string;
  outcome: "delivered" | "queued" | "expired";
  /** Unix ms; for `queued`. */
  expiresAt?: number;
}

/** The later outcome of a queued message (section 3, "outcome"). */
export interface OutcomeNotice {
  id: string;
  to: string;
  outcome: "delivered" | "expired";
  /** Unix ms. */
  at: number;
}

export interface PresenceChange {
  device: string;
  online: boolean;
}

/** A server notice: `code` is the PascalCase code, `wire` the server's text. */
export interface SignalingNotice {
  code: string;
  wire: string;
  message?: string;
  raw: Record<string, unknown>;
}

/** `RTCIceServer`'s shape. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface IceConfig {
  iceServers: IceServer[];
  /** Unix seconds: ask again before then (TURN credentials). */
  expiresAt?: number;
}

/** A session this device created (docs/signaling.md §6). */
export interface CreatedSession {
  transferId: string;
  /** The code to give the receiver: `NNNN-SSSSSS`, or the slot number alone for a `pake` session. */
  code: string;
  /** Closes the session; keep it secret. */
  senderToken: string;
  /** Unix ms. */
  expiresAt: number;
  /** The path of the server's receive page, when it serves one and the session is of kind `pake` (docs/signaling.md §10). */
  receivePage?: string;
}

/** A session this device joined. */
export interface JoinedSession {
  transferId: string;
  /** Closes the session; keep it secret. */
  receiverToken: string;
  /** The device that created it (signal it by this id). */
  sender: string;
  /** Unix ms. */
  expiresAt: number;
}

/** A change of a session this device is a party of, told by the server. */
export interface SessionChange {
  transferId: string;
  state: "joined" | "closed" | "expired";
  /** The device that joined (for `joined`). */
  peer?: string;
  reason?: string;
}

export type SessionKind = "secret" | "pake";
/** Longest code a join sends (the server reads codes forgivingly: spaces, case). */
export const MAX_SESSION_CODE_LEN = 64;

export interface SignalingEvents {
  signal: IncomingSignal;
  /** A session this device created was joined, or one it is a party of closed or expired. */
  session: SessionChange;
  outcome: OutcomeNotice;
  presence: PresenceChange;
  notice: SignalingNotice;
  /** Why the client closed (`Closed`/`Replaced`, `RegistrationTimeout`, `Transport`...). */
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
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isUnixTime(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A registered connection to a signaling server. */
export class SignalingClient {
  /** This device's id, as the server derived it (equals the keys' id). */
  readonly deviceId: string;
  /** How many queued messages the server announced at registration. */
  readonly queued: number;
  private nextReq = 1;
  private nextId = 1;
  private readonly idPrefix = toHex(crypto.getRandomValues(new Uint8Array(6)));
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Map<EventName, Array<(value: never) => void>>();
  private readonly backlog = new Map<EventName, unknown[]>();
  private closeError: PeersError | undefined;
  /** Relays by id: their socket's handler, or the events held until the socket exists. */
  private readonly relayRoutes = new Map<number, ((e: RelayEvent) => void) | RelayEvent[]>();
  /** One pacer for all relays of this client (the server's rate is per device). */
  private readonly relayPacer = new Pacer();
  /** `openRelay` calls waiting for the server's relay-open, by peer. */
  private readonly relayWaiters = new Map<string, (opened: { relay: number; maxFrame: number }) => void>();
  private resolveClosed!: (e: PeersError) => void;
  /** Resolves once, with why the client closed. */
  readonly closed: Promise<PeersError> = new Promise((r) => (this.resolveClosed = r));

  private constructor(
    private readonly io: IoSocket,
    deviceId: string,
    queued: number,
    private readonly requestTimeoutMs: number,
  ) {
    this.deviceId = deviceId;
    this.queued = queued;
  }

  /**
   * Connects to `url` (`http(s)://host:port`, the server's base URL), registers
   * with `keys` and resolves once the server accepted the registration.
   * Refusals: `Signaling`/`ServerFull`, `BadSignature`, `Protocol` (another
   * challenge version, an unusable reply); `Timeout`; `Transport`.
   */
  static async connect(url: string, keys: DeviceKeys, options: SignalingOptions = {}): Promise<SignalingClient> {
    const origin = serverOrigin(url);
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    const { io } = await import("socket.io-client");
    const base = new URL(url);
    const target = new URL(options.namespace ?? "/signaling", `${base.protocol}//${base.host}`);
    const socket = io(target.toString(), {
      path: options.path ?? "/socket.io",
      transports: ["websocket"],
      upgrade: false,
      reconnection: false,
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
    const registered = await settleOnce<{ deviceId: string; queued: number }>(
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
            resolve({ deviceId: reply.device_id, queued: reply.queued as number });
          });
        });
      },
    );
    collecting = false;
    const client = new SignalingClient(socket, registered.deviceId, registered.queued, requestTimeoutMs);
    client.listen(early);
    return client;
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
    const reply = await this.request("subscribe", { devices });
    const online = reply.online;
    if (!Array.isArray(online) || !online.every((d) => typeof d === "string" && DEVICE_ID.test(d) && devices.includes(d))) {
      throw this.violation(`unusable subscribe reply ${JSON.stringify(reply)}`);
    }
    return online as string[];
  }

  async unsubscribe(devices: string[]): Promise<void> {
    for (const d of devices) checkDeviceId(d);
    if (devices.length > MAX_SUBSCRIBE_BATCH) throw invalidInput("unsubscribe", `at most ${MAX_SUBSCRIBE_BATCH} devices per request`);
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
   * method for yet (sessions, relays).
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
      this.pending.set(req, { resolve, reject, timer });
      this.io.emit(event, { ...payload, req }, (reply: unknown) => this.onReply(req, reply));
    });
  }

  /**
   * Asks for a frame relay with `peer` (docs/signaling.md §7) and resolves with
   * its id and frame size once the server opened it (both devices asked), within
   * `timeoutMs`. `RelaySocket.open` is the usual way in.
   */
  openRelay(peer: string, timeoutMs: number): Promise<{ relay: number; maxFrame: number }> {
    checkDeviceId(peer, "relay peer");
    if (this.relayWaiters.has(peer)) return Promise.reject(invalidInput("relay", `already opening a relay with ${peer}`));
    if (this.relayWaiters.size >= MAX_RELAY_WAITERS) {
      return Promise.reject(new PeersError("Limit", "TooManyRelays", `${MAX_RELAY_WAITERS} relays are already being opened`));
    }
    return settleOnce(
      timeoutMs,
      () => new PeersError("Timeout", "Timeout", `${peer} did not open the relay within ${timeoutMs} ms`),
      () => this.relayWaiters.delete(peer),
      (attempt) => {
        this.relayWaiters.set(peer, attempt.resolve);
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

  /** Sends a relay event (no reply); nothing once the client is closed. */
  emitRelay(event: "relay-frame" | "relay-credit" | "relay-close", payload: Record<string, unknown>): void {
    if (!this.closeError) this.io.emit(event, payload);
  }

  private onRelay(e: RelayEvent): void {
    if (e.type === "open") {
      const waiter = this.relayWaiters.get(e.peer);
      if (!waiter) {
        this.io.emit("relay-close", { relay: e.relay, code: "Refused", message: "nobody waits for this relay" });
        return;
      }
      this.relayWaiters.delete(e.peer);
      if (e.rate) this.relayPacer.setRate(e.rate);
      this.relayRoutes.set(e.relay, []);
      waiter({ relay: e.relay, maxFrame: e.maxFrame });
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

  private listen(early: Array<[string, unknown[]]>): void {
    const io = this.io;
    const handlers: Record<string, (args: unknown[]) => void> = {
      signal: (args) => this.emitEvent("signal", parseSignal(args)),
      outcome: (args) => this.emitEvent("outcome", parseOutcome(args)),
      presence: (args) => this.emitEvent("presence", parsePresence(args)),
      session: (args) => this.emitEvent("session", parseSessionChange(args)),
      notice: (args) => this.onNotice(args),
    };
    for (const name of RELAY_EVENTS) handlers[name] = (args) => this.onRelay(parseRelayEvent(name, args));
    const dispatch = (name: string, args: unknown[]) => {
      if (this.closeError) return;
      try {
        (handlers[name] as (a: unknown[]) => void)(args);
      } catch (e) {
        this.violation(e instanceof Error ? e.message : String(e));
      }
    };
    for (const name of Object.keys(handlers)) io.on(name, (...args) => dispatch(name, args));
    io.on("disconnect", (why) => this.shutdown(new PeersError("Transport", "Disconnected", `the connection ended: ${String(why)}`)));
    for (const [name, args] of early) dispatch(name, args);
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
    if (event === "closed") return; // `on("closed")` replays closeError
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
    this.io.disconnect();
    this.resolveClosed(err);
    this.emitEvent("closed", err);
  }
}

function refusal(reply: Record<string, unknown>): PeersError {
  const e = reply.error;
  if (!isObject(e) || typeof e.code !== "string") return protocolError(`a refusal without a code: ${JSON.stringify(reply)}`);
  return signalingError(e.code, typeof e.message === "string" ? e.message : "");
}

function one(args: unknown[], what: string): Record<string, unknown> {
  const v = args[0];
  if (args.length !== 1 || !isObject(v)) throw new Error(`unusable ${what} ${JSON.stringify(args).slice(0, 200)}`);
  return v;
}

function parseSignal(args: unknown[]): IncomingSignal {
  const s = one(args, "signal");
  if (
    typeof s.id !== "string" ||
    typeof s.from !== "string" ||
    !DEVICE_ID.test(s.from) ||
    typeof s.kind !== "string" ||
    !isObject(s.body) ||
    !isUnixTime(s.sent_at) ||
    typeof s.queued !== "boolean"
  ) {
    throw new Error(`unusable signal ${JSON.stringify(s).slice(0, 200)}`);
  }
  return { id: s.id, from: s.from, kind: s.kind, body: s.body, sentAt: s.sent_at, queued: s.queued };
}

function parseOutcome(args: unknown[]): OutcomeNotice {
  const o = one(args, "outcome");
  if (
    typeof o.id !== "string" ||
    typeof o.to !== "string" ||
    !DEVICE_ID.test(o.to) ||
    (o.outcome !== "delivered" && o.outcome !== "expired") ||
    !isUnixTime(o.at)
  ) {
    throw new Error(`unusable outcome ${JSON.stringify(o).slice(0, 200)}`);
  }
  return { id: o.id, to: o.to, outcome: o.outcome, at: o.at };
}

function isText(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= 256;
}

function parseSessionChange(args: unknown[]): SessionChange {
  const e = one(args, "session");
  if (
    !isText(e.transfer_id) ||
    (e.state !== "joined" && e.state !== "closed" && e.state !== "expired") ||
    (e.peer !== undefined && e.peer !== null && (typeof e.peer !== "string" || !DEVICE_ID.test(e.peer))) ||
    (e.reason !== undefined && e.reason !== null && typeof e.reason !== "string")
  ) {
    throw new Error(`unusable session event ${JSON.stringify(e).slice(0, 200)}`);
  }
  const change: SessionChange = { transferId: e.transfer_id, state: e.state };
  if (typeof e.peer === "string") change.peer = e.peer;
  if (typeof e.reason === "string") change.reason = e.reason;
  return change;
}

function parsePresence(args: unknown[]): PresenceChange {
  const p = one(args, "presence");
  if (typeof p.device !== "string" || !DEVICE_ID.test(p.device) || typeof p.online !== "boolean") {
    throw new Error(`unusable presence ${JSON.stringify(p).slice(0, 200)}`);
  }
  return { device: p.device, online: p.online };
}
