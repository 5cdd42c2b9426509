/**
 * The message envelope (docs/protocol.md §5): one MessagePack value (rmp-serde's
 * default enum encoding: a unit variant is its name as a string, a struct variant
 * a one-key map `{Name: {fields}}`), immediately followed by the body.
 */
import { decode, encode } from "@msgpack/msgpack";

import { concat } from "./bytes.js";
import { codecError } from "./errors.js";

export const MAX_METHOD_LEN = 256;

export type RemoteErrorCode = "UnknownMethod" | "BadArguments" | "Handler" | "Busy" | "Internal";
export type CloseCode =
  | "Normal"
  | "GoingAway"
  | "ProtocolError"
  | "Refused"
  | "Timeout"
  | "TransportFailure"
  | "LimitExceeded"
  | "Replaced";
export const CLOSE_CODES: readonly CloseCode[] = [
  "Normal",
  "GoingAway",
  "ProtocolError",
  "Refused",
  "Timeout",
  "TransportFailure",
  "LimitExceeded",
  "Replaced",
];
const REMOTE_CODES: readonly RemoteErrorCode[] = ["UnknownMethod", "BadArguments", "Handler", "Busy", "Internal"];

export interface RemoteError {
  code: RemoteErrorCode;
  message: string;
}

/** Why a socket or connection closed. `by` is who closed it, seen from this side. */
export interface CloseReason {
  code: CloseCode;
  message: string;
  by: "Local" | "Remote";
}

export type Envelope =
  | { type: "Ready" }
  | { type: "Call"; id: number; method: string }
  | { type: "Reply"; id: number }
  | { type: "Fail"; id: number; error: RemoteError }
  | { type: "Close"; reason: CloseReason }
  | { type: "StreamOpen"; id: number; name: string }
  | { type: "StreamAccept"; id: number; window: number }
  | { type: "StreamData"; id: number }
  | { type: "StreamEnd"; id: number }
  | { type: "StreamReset"; id: number; error: RemoteError }
  | { type: "StreamCredit"; id: number; bytes: number }
  | { type: "StreamDone"; id: number; error: RemoteError | null };

/** Truncates `text` to at most `max` UTF-8 bytes on a character boundary. */
export function truncateUtf8(text: string, max: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= max) return text;
  let end = max;
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
  return new TextDecoder().decode(bytes.subarray(0, end));
}

export function encodeEnvelope(envelope: Envelope, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const { type, ...fields } = envelope;
  const head = type === "Ready" ? encode("Ready") : encode({ [type]: fields });
  return body.length === 0 ? head : concat(head, body);
}

export function encodeValue(value: unknown): Uint8Array {
  return encode(value === undefined ? null : value, { useBigInt64: true });
}

function bad(detail: string) {
  return codecError("Decode", `envelope: ${detail}`, { what: "envelope" });
}

function u64(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === "bigint" && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  throw bad(`${what} is not an unsigned integer this side can hold`);
}

function str(v: unknown, what: string, max: number): string {
  if (typeof v !== "string") throw bad(`${what} is not a string`);
  if (new TextEncoder().encode(v).length > max) throw bad(`${what} too long`);
  return v;
}

function remoteError(v: unknown): RemoteError {
  const e = v as Record<string, unknown>;
  if (typeof e !== "object" || e === null) throw bad("error is not a map");
  if (!REMOTE_CODES.includes(e.code as RemoteErrorCode)) throw bad(`unknown error code ${String(e.code)}`);
  return { code: e.code as RemoteErrorCode, message: str(e.message, "error message", 4096) };
}

/** Length of the first MessagePack value in `b` (bounded by `b`), or a `Decode` error. */
export function msgpackLength(b: Uint8Array, at = 0, depth = 0): number {
  if (depth > 64) throw bad("nested too deeply");
  const need = (n: number) => {
    if (at + n > b.length) throw bad("truncated");
  };
  need(1);
  const t = b[at] as number;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const items = (count: number, start: number) => {
    let p = start;
    for (let i = 0; i < count; i++) p += msgpackLength(b, p, depth + 1);
    return p - at;
  };
  if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) return 1;
  if ((t & 0xf0) === 0x80) return items(2 * (t & 0x0f), at + 1);
  if ((t & 0xf0) === 0x90) return items(t & 0x0f, at + 1);
  if ((t & 0xe0) === 0xa0) {
    need(1 + (t & 0x1f));
    return 1 + (t & 0x1f);
  }
  const sized = (lenBytes: number, mult = 1, extra = 0) => {
    need(1 + lenBytes);
    const len = lenBytes === 1 ? view.getUint8(at + 1) : lenBytes === 2 ? view.getUint16(at + 1) : view.getUint32(at + 1);
    const total = 1 + lenBytes + extra + len * mult;
    need(total);
    return total;
  };
  switch (t) {
    case 0xc4: case 0xd9: return sized(1);
    case 0xc5: case 0xda: return sized(2);
    case 0xc6: case 0xdb: return sized(4);
    case 0xc7: return sized(1, 1, 1);
    case 0xc8: return sized(2, 1, 1);
    case 0xc9: return sized(4, 1, 1);
    case 0xca: need(5); return 5;
    case 0xcb: need(9); return 9;
    case 0xcc: case 0xd0: need(2); return 2;
    case 0xcd: case 0xd1: need(3); return 3;
    case 0xce: case 0xd2: need(5); return 5;
    case 0xcf: case 0xd3: need(9); return 9;
    case 0xd4: need(3); return 3;
    case 0xd5: need(4); return 4;
    case 0xd6: need(6); return 6;
    case 0xd7: need(10); return 10;
    case 0xd8: need(18); return 18;
    case 0xdc: need(3); return items(view.getUint16(at + 1), at + 3);
    case 0xdd: need(5); return items(view.getUint32(at + 1), at + 5);
    case 0xde: need(3); return items(2 * view.getUint16(at + 1), at + 3);
    case 0xdf: need(5); return items(2 * view.getUint32(at + 1), at + 5);
    default: throw bad(`invalid MessagePack byte 0x${t.toString(16)}`);
  }
}

/** The envelope at the start of `message` and the body after it. */
export function decodeEnvelope(message: Uint8Array): [Envelope, Uint8Array] {
  const len = msgpackLength(message);
  let value: unknown;
  try {
    value = decode(message.subarray(0, len), { useBigInt64: true });
  } catch (e) {
    throw bad((e as Error).message);
  }
  const body = message.subarray(len);
  if (value === "Ready") return [{ type: "Ready" }, body];
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw bad("not a one-key map");
  const keys = Object.keys(value);
  if (keys.length !== 1) throw bad("not a one-key map");
  const type = keys[0] as string;
  const f = (value as Record<string, Record<string, unknown>>)[type];
  if (typeof f !== "object" || f === null) throw bad(`${type} has no fields`);
  const id = () => u64(f.id, "id");
  let envelope: Envelope;
  switch (type) {
    case "Call": envelope = { type, id: id(), method: str(f.method, "method name", MAX_METHOD_LEN) }; break;
    case "Reply": envelope = { type, id: id() }; break;
    case "Fail": envelope = { type, id: id(), error: remoteError(f.error) }; break;
    case "Close": {
      const r = f.reason as Record<string, unknown>;
      if (typeof r !== "object" || r === null || !CLOSE_CODES.includes(r.code as CloseCode)) throw bad("bad close reason");
      envelope = { type, reason: { code: r.code as CloseCode, message: str(r.message, "close message", 1024), by: "Remote" } };
      break;
    }
    case "StreamOpen": envelope = { type, id: id(), name: str(f.name, "stream name", MAX_METHOD_LEN) }; break;
    case "StreamAccept": envelope = { type, id: id(), window: u64(f.window, "window") }; break;
    case "StreamData": envelope = { type, id: id() }; break;
    case "StreamEnd": envelope = { type, id: id() }; break;
    case "StreamReset": envelope = { type, id: id(), error: remoteError(f.error) }; break;
    case "StreamCredit": envelope = { type, id: id(), bytes: u64(f.bytes, "bytes") }; break;
    case "StreamDone": envelope = { type, id: id(), error: f.error === null || f.error === undefined ? null : remoteError(f.error) }; break;
    default: throw bad(`unknown variant ${type}`);
  }
  return [envelope, body];
}
