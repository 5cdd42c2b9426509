/**
 * Device identity: an ed25519 signing key (the identity), an x25519 static key
 * (used inside the Noise handshake), the device id derived from the signing key,
 * `DeviceInfo` as it travels in handshakes and share codes, and key storage.
 *
 * ```text
 * device_id  = SHA-256("peers/v1 device id" || ed25519 public key)[0..20]
 * share code = "PEERS1" || BASE32(MessagePack(DeviceInfo, named fields))   (RFC 4648, no padding)
 * key file   = -----BEGIN PEERS DEVICE KEY-----
 *              base64(MessagePack {v: 1, user_id, signing_seed: bin 32, static_secret: bin 32})
 *              -----END PEERS DEVICE KEY-----
 * ```
 *
 * Generated keys derive the static key from the signing key, as the Rust
 * `DeviceKeys::generate` does (ADR 0008): its secret is the first half of
 * SHA-512(signing seed), the scalar ed25519 signs with, so its public half is the
 * signing key's Montgomery form and a Rust peer meeting this device for the first time
 * has no certificate to verify.
 *
 * The key file is the Rust `DeviceKeys::save` format, so a Node device and a Rust
 * device can share one. Storage sits behind {@link KeyStore}: {@link FileKeyStore}
 * for Node, `IndexedDbKeyStore` (keystore-indexeddb.ts) for browsers.
 */
import { sha256, sha512 } from "@noble/hashes/sha2.js";
import { decode, encode } from "@msgpack/msgpack";

import { concat, equal, toHex, utf8 } from "./bytes.js";
import { ed25519PublicKey, ed25519Sign, x25519PublicKey } from "./curves.js";
import { invalidInput } from "./errors.js";

export const DEVICE_ID_DOMAIN = utf8.encode("peers/v1 device id");
export const MAX_USER_ID_LEN = 128;
export const MAX_ADDRESSES = 16;
export const MAX_ADDRESS_LEN = 256;
export const SHARE_CODE_PREFIX = "PEERS1";
export const MAX_SHARE_CODE_LEN = 4096;
export const MAX_KEY_FILE_LEN = 16 * 1024;

/** What a device tells its peers about itself (field names as on the wire). */
export interface DeviceInfo {
  user_id: string;
  /** 20 bytes, derived from `signing_key`. */
  device_id: Uint8Array;
  /** ed25519 public key, 32 bytes. */
  signing_key: Uint8Array;
  /** x25519 static public key, 32 bytes. */
  static_key: Uint8Array;
  addresses: string[];
}

/** The device id of the owner of an ed25519 public key. */
export function deviceIdOf(signingKey: Uint8Array): Uint8Array {
  return sha256(concat(DEVICE_ID_DOMAIN, signingKey)).slice(0, 20);
}

/** A device id as it is shown: 40 lowercase hex digits. */
export function deviceIdHex(id: Uint8Array): string {
  return toHex(id);
}

function validateUserId(userId: string): void {
  const len = utf8.encode(userId).length;
  if (len === 0 || len > MAX_USER_ID_LEN) {
    throw invalidInput("user id", `must be 1 to ${MAX_USER_ID_LEN} bytes, got ${len}`);
  }
}

function isBytes(v: unknown, len?: number): v is Uint8Array {
  return v instanceof Uint8Array && (len === undefined || v.length === len);
}

/**
 * Checks a decoded value is a well-formed `DeviceInfo` (types, sizes) whose
 * device id derives from its signing key, and returns it typed.
 */
export function validateDeviceInfo(value: unknown): DeviceInfo {
  if (typeof value !== "object" || value === null) throw invalidInput("device info", "not a map");
  const v = value as Record<string, unknown>;
  if (typeof v.user_id !== "string") throw invalidInput("device info", "user_id is not a string");
  validateUserId(v.user_id);
  if (!isBytes(v.device_id, 20)) throw invalidInput("device info", "device_id is not 20 bytes");
  if (!isBytes(v.signing_key, 32)) throw invalidInput("device info", "signing_key is not 32 bytes");
  if (!isBytes(v.static_key, 32)) throw invalidInput("device info", "static_key is not 32 bytes");
  if (!Array.isArray(v.addresses) || v.addresses.length > MAX_ADDRESSES) {
    throw invalidInput("device info", `addresses must be a list of at most ${MAX_ADDRESSES}`);
  }
  for (const a of v.addresses) {
    if (typeof a !== "string" || utf8.encode(a).length > MAX_ADDRESS_LEN) {
      throw invalidInput("device info", `an address is not a string of at most ${MAX_ADDRESS_LEN} bytes`);
    }
  }
  if (!equal(deviceIdOf(v.signing_key), v.device_id)) {
    throw invalidInput("device id", "does not derive from the signing key");
  }
  return {
    user_id: v.user_id,
    device_id: v.device_id,
    signing_key: v.signing_key,
    static_key: v.static_key,
    addresses: v.addresses as string[],
  };
}

/** MessagePack of a `DeviceInfo`, named fields in the Rust declaration order. */
export function encodeDeviceInfo(info: DeviceInfo): Uint8Array {
  return encode({
    user_id: info.user_id,
    device_id: info.device_id,
    signing_key: info.signing_key,
    static_key: info.static_key,
    addresses: info.addresses,
  });
}

/** Domain label that starts every static-key certificate's signed text. */
export const CERTIFICATE_LABEL = utf8.encode("peers/v2 static key");

/**
 * The text a device's identity key signs to certify its x25519 static key
 * (docs/protocol.md §2, "Static-key certificate"): label (19 bytes) |
 * len(user_id) (1 byte, 1..=128) | user_id (UTF-8) | device_id (20) |
 * signing_key (32) | static_key (32).
 */
export function certificateText(
  userId: string,
  deviceId: Uint8Array,
  signingKey: Uint8Array,
  staticKey: Uint8Array,
): Uint8Array {
  const user = utf8.encode(userId);
  return concat(CERTIFICATE_LABEL, Uint8Array.of(Math.min(user.length, 255)), user, deviceId, signingKey, staticKey);
}

/** A device's secret keys. */
export class DeviceKeys {
  readonly userId: string;
  readonly signingSeed: Uint8Array;
  readonly staticSecret: Uint8Array;
  readonly signingPublic: Uint8Array;
  readonly staticPublic: Uint8Array;
  readonly deviceId: Uint8Array;
  /** The static-key certificate, signed on first use (ed25519 is deterministic). */
  private certificate: Uint8Array | undefined;

  private constructor(userId: string, signingSeed: Uint8Array, staticSecret: Uint8Array) {
    validateUserId(userId);
    if (signingSeed.length !== 32 || staticSecret.length !== 32) throw invalidInput("device keys", "keys are 32 bytes");
    this.userId = userId;
    this.signingSeed = signingSeed.slice();
    this.staticSecret = staticSecret.slice();
    this.signingPublic = ed25519PublicKey(this.signingSeed);
    this.staticPublic = x25519PublicKey(this.staticSecret);
    this.deviceId = deviceIdOf(this.signingPublic);
  }

  /** Fresh keys from the platform's secure random source; the static key derived from the signing key (see the module documentation). */
  static generate(userId: string): DeviceKeys {
    const seed = randomBytes(32);
    return DeviceKeys.fromSecrets(userId, seed, sha512(seed).slice(0, 32));
  }

  /** Keys from their secrets (an ed25519 seed and an x25519 scalar, 32 bytes each). */
  static fromSecrets(userId: string, signingSeed: Uint8Array, staticSecret: Uint8Array): DeviceKeys {
    return new DeviceKeys(userId, signingSeed, staticSecret);
  }

  /** The device id as 40 hex digits. */
  get deviceIdHex(): string {
    return toHex(this.deviceId);
  }

  sign(message: Uint8Array): Uint8Array {
    return ed25519Sign(message, this.signingSeed);
  }

  /**
   * The signature over this device's static-key certificate text
   * ({@link certificateText}, ADR 0006), signed once and kept.
   */
  staticKeyCertificate(): Uint8Array {
    this.certificate ??= this.sign(certificateText(this.userId, this.deviceId, this.signingPublic, this.staticPublic));
    return this.certificate;
  }

  info(addresses: string[] = []): DeviceInfo {
    return validateDeviceInfo({
      user_id: this.userId,
      device_id: this.deviceId,
      signing_key: this.signingPublic,
      static_key: this.staticPublic,
      addresses,
    });
  }

  /** The Rust key file format (see the module doc). */
  toKeyFile(): string {
    const body = encode({ v: 1, user_id: this.userId, signing_seed: this.signingSeed, static_secret: this.staticSecret });
    const b64 = base64Encode(body);
    const lines = b64.match(/.{1,64}/g) ?? [];
    return ["-----BEGIN PEERS DEVICE KEY-----", ...lines, "-----END PEERS DEVICE KEY-----", ""].join("\n");
  }

  static fromKeyFile(text: string): DeviceKeys {
    if (text.length > MAX_KEY_FILE_LEN) throw invalidInput("key file", `longer than ${MAX_KEY_FILE_LEN} bytes`);
    const m = /-----BEGIN PEERS DEVICE KEY-----([\s\S]*?)-----END PEERS DEVICE KEY-----/.exec(text);
    if (!m || m[1] === undefined) throw invalidInput("key file", "no PEERS DEVICE KEY block");
    let body: unknown;
    try {
      body = decode(base64Decode(m[1].replace(/\s+/g, "")));
    } catch (e) {
      throw invalidInput("key file", `not base64 MessagePack: ${(e as Error).message}`);
    }
    const b = body as Record<string, unknown>;
    if (typeof b !== "object" || b === null || b.v !== 1) throw invalidInput("key file", "unknown version");
    if (typeof b.user_id !== "string" || !isBytes(b.signing_seed, 32) || !isBytes(b.static_secret, 32)) {
      throw invalidInput("key file", "missing or malformed fields");
    }
    return DeviceKeys.fromSecrets(b.user_id, b.signing_seed, b.static_secret);
  }
}

/** Where a device keeps its keys. Node: {@link FileKeyStore}; browsers: `IndexedDbKeyStore`. */
export interface KeyStore {
  /** The stored keys, or `undefined` when none are stored yet. */
  load(): Promise<DeviceKeys | undefined>;
  save(keys: DeviceKeys): Promise<void>;
}

/** Loads the stored keys, or generates, saves and returns new ones. */
export async function loadOrCreateKeys(store: KeyStore, userId: string): Promise<DeviceKeys> {
  const existing = await store.load();
  if (existing) return existing;
  const keys = DeviceKeys.generate(userId);
  await store.save(keys);
  return keys;
}

/**
 * Keys in a file (Node only), in the Rust key file format: written `0600` through a
 * temporary file and a rename; a file the group or others can read is refused.
 */
export class FileKeyStore implements KeyStore {
  constructor(readonly path: string) {}

  async load(): Promise<DeviceKeys | undefined> {
    const fs = await import("node:fs/promises");
    let handle;
    try {
      handle = await fs.open(this.path, "r");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    try {
      const stat = await handle.stat();
      if ((stat.mode & 0o077) !== 0) {
        throw invalidInput("key file", `${this.path} is readable by group or others (mode ${(stat.mode & 0o777).toString(8)})`);
      }
      if (stat.size > MAX_KEY_FILE_LEN) throw invalidInput("key file", `larger than ${MAX_KEY_FILE_LEN} bytes`);
      return DeviceKeys.fromKeyFile(await handle.readFile("utf8"));
    } finally {
      await handle.close();
    }
  }

  async save(keys: DeviceKeys): Promise<void> {
    const fs = await import("node:fs/promises");
    const tmp = `${this.path}.tmp-${toHex(randomBytes(6))}`;
    await fs.writeFile(tmp, keys.toKeyFile(), { mode: 0o600, flag: "wx" });
    await fs.rename(tmp, this.path);
  }
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string): Uint8Array {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const v = BASE32.indexOf(c);
    if (v < 0) throw invalidInput("share code", "not base32");
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
    value &= (1 << bits) - 1;
  }
  // Canonical: leftover bits are padding and must be zero, and at most 4 of them.
  if (bits >= 5 || value !== 0) throw invalidInput("share code", "not base32");
  return Uint8Array.from(out);
}

/** A `DeviceInfo` as a share code (what `peers trust` takes). */
export function toShareCode(info: DeviceInfo): string {
  return SHARE_CODE_PREFIX + base32Encode(encodeDeviceInfo(info));
}

/** Reads and validates a share code; case, spaces, line breaks and `-` are ignored. */
export function fromShareCode(code: string): DeviceInfo {
  if (code.length > MAX_SHARE_CODE_LEN) throw invalidInput("share code", "longer than 4096 characters");
  const cleaned = code.replace(/[\s-]/g, "").toUpperCase();
  if (!cleaned.startsWith(SHARE_CODE_PREFIX)) throw invalidInput("share code", "does not start with PEERS1");
  const bytes = base32Decode(cleaned.slice(SHARE_CODE_PREFIX.length));
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (e) {
    throw invalidInput("share code", `not a device info: ${(e as Error).message}`);
  }
  return validateDeviceInfo(value);
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

function base64Encode(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function base64Decode(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export { base64Decode, base64Encode };
