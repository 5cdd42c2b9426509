/**
 * The signaling protocol's wire forms (docs/signaling.md sections 2–8), for the
 * client in ./signaling.ts: the registration message, the error codes, the events'
 * shapes and their parsers (a malformed event throws; the client treats that as a
 * protocol violation).
 */
import { utf8, concat } from "./bytes.js";
import { PeersError, invalidInput } from "./errors.js";


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

export function protocolError(message: string): PeersError {
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

export const DEVICE_ID = /^[0-9a-f]{40}$/;
export const SIGNAL_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export function checkDeviceId(id: string, what = "device id"): void {
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
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function isUnixTime(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}


export function refusal(reply: Record<string, unknown>): PeersError {
  const e = reply.error;
  if (!isObject(e) || typeof e.code !== "string") return protocolError(`a refusal without a code: ${JSON.stringify(reply)}`);
  return signalingError(e.code, typeof e.message === "string" ? e.message : "");
}

function one(args: unknown[], what: string): Record<string, unknown> {
  const v = args[0];
  if (args.length !== 1 || !isObject(v)) throw new Error(`unusable ${what} ${JSON.stringify(args).slice(0, 200)}`);
  return v;
}

export function parseSignal(args: unknown[]): IncomingSignal {
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

export function parseOutcome(args: unknown[]): OutcomeNotice {
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

export function isText(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && v.length <= 256;
}

export function parseSessionChange(args: unknown[]): SessionChange {
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

export function parsePresence(args: unknown[]): PresenceChange {
  const p = one(args, "presence");
  if (typeof p.device !== "string" || !DEVICE_ID.test(p.device) || typeof p.online !== "boolean") {
    throw new Error(`unusable presence ${JSON.stringify(p).slice(0, 200)}`);
  }
  return { device: p.device, online: p.online };
}
