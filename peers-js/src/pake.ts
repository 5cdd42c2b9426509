/**
 * The PAKE that turns a short code into trust in one device key (docs/protocol.md
 * §9.2, §9.5), compatible with the Rust side (`peers-device/src/transfer/pake.rs`).
 *
 * SPAKE2 over the Ed25519 group in symmetric mode (as the `spake2` crate 0.4 does it),
 * the canonical text of the whole code as the password and `"peers/v1 transfer pake"`
 * as the identity, then key confirmation carrying each side's `DeviceInfo`:
 *
 * ```text
 *  creator (sender / pairer)                              joiner (receiver)
 *   ── Pake    (33 B: 'S' ‖ element) ──────────────────▶
 *   ◀──────────────────────────────────────────  Pake ──
 *        both: K = SHA-256(SHA-256(pw) ‖ SHA-256(id) ‖ min(X, Y) ‖ max(X, Y) ‖ Z)
 *   ── Confirm { device, mac } ────────────────────────▶
 *   ◀──────────────────────────── Confirm { device, mac } ──
 *        mac = HMAC-SHA256(HKDF-SHA256(K, "peers/v1 transfer confirm <role>"), device fields)
 * ```
 *
 * SPAKE2 here: `w` = HKDF-SHA256(salt "", the password, info "SPAKE2 pw", 48 bytes) read
 * as a big-endian integer mod ℓ; `x` = 64 random bytes read little-endian mod ℓ; the
 * element sent is `x·B + w·S` (S the crate's fixed point); `Z = x·(Y − w·S)`.
 *
 * Sans-IO: {@link startPake} and the two states take and return bytes and values; the
 * caller moves them (one {@link PakeFrame} per relay frame). A wrong code fails the
 * peer's `Confirm`: `PeersError` kind `Transfer`, code `WrongCode`.
 */
import { decode, encode } from "@msgpack/msgpack";
import { ed25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, equal, fromHex, utf8 } from "./bytes.js";
import { PeersError } from "./errors.js";
import { DeviceInfo, randomBytes, validateDeviceInfo } from "./identity.js";

/** The SPAKE2 identity both sides use (symmetric mode). */
export const PAKE_IDENTITY = utf8.encode("peers/v1 transfer pake");
/** A SPAKE2 message: the side byte `'S'` and a compressed Edwards point. */
export const PAKE_MESSAGE_LEN = 33;
/** The largest `PakeFrame` either side sends or reads. */
export const MAX_PAKE_FRAME = 4096;
/** The side byte of symmetric SPAKE2. */
const SIDE_SYMMETRIC = 0x53;
/** The `spake2` crate's symmetric blinding point S for Ed25519. */
const S = ed25519.Point.fromBytes(fromHex("6f00dae87c1be1a73b5922ef431cd8f57879569c222d22b1cd71e8546ab8e6f1"));
/** The order ℓ of the Ed25519 prime-order group. */
const ORDER = ed25519.Point.Fn.ORDER;

/** Which end of a code session this device is. */
export type PakeRole = "creator" | "joiner";

/** The second PAKE message: this side's device, confirmed with the PAKE key. */
export interface PakeConfirm {
  device: DeviceInfo;
  /** HMAC-SHA256, 32 bytes. */
  mac: Uint8Array;
}

/** One frame of the PAKE exchange: `{"Pake": bin}` or `{"Confirm": [device, mac]}` on the wire. */
export type PakeFrame = { pake: Uint8Array } | { confirm: PakeConfirm };

function transferError(code: "WrongCode" | "Protocol", message: string): PeersError {
  return new PeersError("Transfer", code, message);
}

function bigEndian(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** Nonzero (so a valid multiplier) except with negligible probability; a zero is refused. */
function nonzero(n: bigint, what: string): bigint {
  if (n === 0n) throw transferError("Protocol", `${what} reduced to zero`);
  return n;
}

/** The password's scalar, as the `spake2` crate derives it for Ed25519. */
function passwordScalar(password: Uint8Array): bigint {
  const okm = hkdf(sha256, password, new Uint8Array(0), utf8.encode("SPAKE2 pw"), 48);
  return nonzero(bigEndian(okm) % ORDER, "the password scalar");
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function label(role: PakeRole): Uint8Array {
  return utf8.encode(`peers/v1 transfer confirm ${role}`);
}

function peerOf(role: PakeRole): PakeRole {
  return role === "creator" ? "joiner" : "creator";
}

/** The bytes a `Confirm` MAC covers: every field of the device, each with a u32 big-endian length. */
function macInput(device: DeviceInfo): Uint8Array {
  const fields = [utf8.encode(device.user_id), device.device_id, device.signing_key, device.static_key, ...device.addresses.map((a) => utf8.encode(a))];
  return concat(
    ...fields.flatMap((f) => {
      const len = new Uint8Array(4);
      new DataView(len.buffer).setUint32(0, f.length);
      return [len, f];
    }),
  );
}

function confirmationMac(key: Uint8Array, role: PakeRole, device: DeviceInfo): Uint8Array {
  return hmac(sha256, hkdf(sha256, key, undefined, label(role), 32), macInput(device));
}

/**
 * Starts the PAKE on `password` (the canonical text of the code) as `role`; send the
 * returned 33-byte message to the peer. `random` draws the secret (64 bytes); tests
 * fix it.
 */
export function startPake(password: string, role: PakeRole, random: (n: number) => Uint8Array = randomBytes): [AwaitPake, Uint8Array] {
  const pw = utf8.encode(password);
  const w = passwordScalar(pw);
  const x = nonzero(bigEndian(random(64).reverse()) % ORDER, "the secret scalar");
  const element = ed25519.Point.BASE.multiply(x).add(S.multiply(w)).toBytes();
  return [new AwaitPake(role, pw, w, x, element), concat(Uint8Array.of(SIDE_SYMMETRIC), element)];
}

/** Waiting for the peer's SPAKE2 message. */
export class AwaitPake {
  constructor(
    readonly role: PakeRole,
    private readonly password: Uint8Array,
    private readonly w: bigint,
    private readonly x: bigint,
    private readonly element: Uint8Array,
  ) {}

  /** Takes the peer's message; returns the state waiting for its `Confirm` and this side's `Confirm` of `own`. */
  receive(peer: Uint8Array, own: DeviceInfo): [AwaitConfirm, PakeConfirm] {
    if (peer.length !== PAKE_MESSAGE_LEN) throw transferError("Protocol", `PAKE message of ${peer.length} bytes, expected ${PAKE_MESSAGE_LEN}`);
    if (peer[0] !== SIDE_SYMMETRIC) throw transferError("Protocol", "PAKE message: bad side");
    const theirs = peer.subarray(1);
    let y;
    try {
      y = ed25519.Point.fromBytes(theirs, true);
    } catch {
      throw transferError("Protocol", "PAKE message: corrupt message");
    }
    const z = y.add(S.multiply(this.w).negate()).multiplyUnsafe(this.x).toBytes();
    const [first, second] = compareBytes(this.element, theirs) < 0 ? [this.element, theirs] : [theirs, this.element];
    const key = sha256(concat(sha256(this.password), sha256(PAKE_IDENTITY), first, second, z));
    const confirm = { device: own, mac: confirmationMac(key, this.role, own) };
    return [new AwaitConfirm(this.role, key), confirm];
  }
}

/** Waiting for the peer's `Confirm`. */
export class AwaitConfirm {
  constructor(
    readonly role: PakeRole,
    private readonly key: Uint8Array,
  ) {}

  /** Checks the peer's `Confirm`: the device that knows the code, or `WrongCode`. */
  receive(confirm: PakeConfirm): DeviceInfo {
    if (!equal(confirmationMac(this.key, peerOf(this.role), confirm.device), confirm.mac)) {
      throw transferError("WrongCode", "the code did not match on both sides");
    }
    try {
      return validateDeviceInfo(confirm.device);
    } catch (err) {
      throw transferError("Protocol", `confirmed device: ${(err as Error).message}`);
    }
  }
}

/** A frame's bytes, as the Rust side writes them (`rmp-serde`, structs as arrays). */
export function encodePakeFrame(frame: PakeFrame): Uint8Array {
  const value =
    "pake" in frame
      ? { Pake: frame.pake }
      : { Confirm: [[frame.confirm.device.user_id, frame.confirm.device.device_id, frame.confirm.device.signing_key, frame.confirm.device.static_key, frame.confirm.device.addresses], frame.confirm.mac] };
  const bytes = encode(value);
  if (bytes.length > MAX_PAKE_FRAME) throw transferError("Protocol", `PAKE frame of ${bytes.length} bytes`);
  return bytes;
}

/** Reads a frame, refusing one over {@link MAX_PAKE_FRAME} before decoding it, and any malformed one. */
export function decodePakeFrame(bytes: Uint8Array): PakeFrame {
  if (bytes.length > MAX_PAKE_FRAME) throw transferError("Protocol", `PAKE frame of ${bytes.length} bytes`);
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (err) {
    throw transferError("Protocol", `PAKE frame: ${(err as Error).message}`);
  }
  const bad = (why: string) => transferError("Protocol", `PAKE frame: ${why}`);
  if (typeof value !== "object" || value === null || value instanceof Uint8Array || Array.isArray(value)) throw bad("not a one-key map");
  const entries = Object.entries(value);
  if (entries.length !== 1) throw bad("not a one-key map");
  const [tag, body] = entries[0]!;
  if (tag === "Pake") {
    if (!(body instanceof Uint8Array) || body.length !== PAKE_MESSAGE_LEN) throw bad(`Pake is not ${PAKE_MESSAGE_LEN} bytes`);
    return { pake: body };
  }
  if (tag !== "Confirm") throw bad(`unknown frame ${JSON.stringify(tag).slice(0, 40)}`);
  if (!Array.isArray(body) || body.length !== 2 || !Array.isArray(body[0]) || body[0].length !== 5) throw bad("Confirm is not [device, mac]");
  const [[user_id, device_id, signing_key, static_key, addresses], mac] = body as [unknown[], unknown];
  if (!(mac instanceof Uint8Array) || mac.length !== 32) throw bad("mac is not 32 bytes");
  let device: DeviceInfo;
  try {
    device = validateDeviceInfo({ user_id, device_id, signing_key, static_key, addresses });
  } catch (err) {
    throw bad(`device: ${(err as Error).message}`);
  }
  return { confirm: { device, mac } };
}
