/**
 * The public-key operations of the handshake and of device keys: x25519 and
 * ed25519. On Node they run in `node:crypto` (OpenSSL), about a hundred times
 * faster than pure JavaScript; elsewhere (browsers, whose WebCrypto is
 * asynchronous and cannot serve the synchronous sans-IO states) in `@noble/curves`.
 * Both give the same bytes: ed25519 signatures are deterministic, and the unit
 * test `curves.test.ts` checks the two against each other.
 *
 * Verification here is the plain RFC 8032 check; the handshake adds the strict
 * checks (canonical encodings, no small-order key or R) itself.
 */
import type { KeyObject } from "node:crypto";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";

type NodeCrypto = typeof import("node:crypto");

/** `node:crypto` when the runtime is Node (20.16 or later); no import, so bundles for browsers stay clean. */
const native: NodeCrypto | undefined = (
  globalThis as { process?: { getBuiltinModule?: (name: string) => unknown } }
).process?.getBuiltinModule?.("node:crypto") as NodeCrypto | undefined;

// DER wrappers of raw 32-byte keys: PKCS#8 for secrets, SPKI for public keys
// (OIDs 1.3.101.110 X25519 and 1.3.101.112 Ed25519, RFC 8410).
const X25519_PKCS8 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);
const X25519_SPKI = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00);
const ED25519_PKCS8 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);
const ED25519_SPKI = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00);

function der(prefix: Uint8Array, key: Uint8Array): Uint8Array {
  if (key.length !== 32) throw new Error("x25519 and ed25519 keys are 32 bytes");
  const out = new Uint8Array(prefix.length + 32);
  out.set(prefix);
  out.set(key, prefix.length);
  return out;
}

/**
 * Secret key objects by the array that holds the secret, one cache per algorithm:
 * making one costs about what a DH costs (OpenSSL derives the public key), and
 * every secret here is used more than once (an ephemeral for its public key and two
 * DHs, the static key and the signing seed for every handshake). Weak: a dropped
 * secret drops its object.
 */
const x25519Secrets = new WeakMap<Uint8Array, KeyObject>();
const ed25519Secrets = new WeakMap<Uint8Array, KeyObject>();

function secretKey(crypto: NodeCrypto, prefix: Uint8Array, cache: WeakMap<Uint8Array, KeyObject>, secret: Uint8Array): KeyObject {
  let key = cache.get(secret);
  if (!key) {
    key = crypto.createPrivateKey({ key: Buffer.from(der(prefix, secret)), format: "der", type: "pkcs8" });
    cache.set(secret, key);
  }
  return key;
}

function publicKeyObject(crypto: NodeCrypto, prefix: Uint8Array, key: Uint8Array): KeyObject {
  return crypto.createPublicKey({ key: Buffer.from(der(prefix, key)), format: "der", type: "spki" });
}

/** The raw 32 bytes of a public key object (the SPKI's tail). */
function rawPublic(key: KeyObject): Uint8Array {
  return Uint8Array.from(key.export({ format: "der", type: "spki" }).subarray(-32));
}

/** Which implementation runs here: `"node:crypto"` or `"@noble/curves"`. */
export const curvesBackend: string = native ? "node:crypto" : "@noble/curves";

/** The x25519 public key of a 32-byte secret (clamped as RFC 7748 says). */
export function x25519PublicKey(secret: Uint8Array): Uint8Array {
  if (!native) return x25519.getPublicKey(secret);
  return rawPublic(native.createPublicKey(secretKey(native, X25519_PKCS8, x25519Secrets, secret)));
}

/**
 * x25519(secret, publicKey). Throws when the result is all zero (a low-order
 * public key), as both libraries do; callers map that to their own error.
 */
export function x25519Shared(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (!native) return x25519.getSharedSecret(secret, publicKey);
  const shared = native.diffieHellman({
    privateKey: secretKey(native, X25519_PKCS8, x25519Secrets, secret),
    publicKey: publicKeyObject(native, X25519_SPKI, publicKey),
  });
  return Uint8Array.from(shared);
}

/** The ed25519 public key of a 32-byte seed. */
export function ed25519PublicKey(seed: Uint8Array): Uint8Array {
  if (!native) return ed25519.getPublicKey(seed);
  return rawPublic(native.createPublicKey(secretKey(native, ED25519_PKCS8, ed25519Secrets, seed)));
}

/** The ed25519 signature (64 bytes) of `message` by `seed`. */
export function ed25519Sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  if (!native) return ed25519.sign(message, seed);
  return Uint8Array.from(native.sign(null, message, secretKey(native, ED25519_PKCS8, ed25519Secrets, seed)));
}

/**
 * RFC 8032 verification of `signature` on `message` by `publicKey`: false for a
 * wrong signature, a non-canonical `s`, or a key that is not a point. Strictness
 * beyond that (small-order keys and R, non-canonical encodings) is the caller's.
 */
export function ed25519Verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    if (!native) return ed25519.verify(signature, message, publicKey, { zip215: false });
    return native.verify(null, message, publicKeyObject(native, ED25519_SPKI, publicKey), signature);
  } catch {
    return false;
  }
}
