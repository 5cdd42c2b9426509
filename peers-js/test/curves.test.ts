// The curve backend (src/curves.ts) against @noble/curves: on Node the backend is
// node:crypto, and both must give the same bytes and the same refusals.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";

import {
  curvesBackend,
  ed25519PublicKey,
  ed25519Sign,
  ed25519Verify,
  x25519PublicKey,
  x25519Shared,
} from "../src/curves.js";
import { DeviceKeys, randomBytes } from "../src/identity.js";

test("on Node the curves run in node:crypto", () => {
  assert.equal(curvesBackend, "node:crypto");
});

test("x25519: the same public keys and shared secrets as @noble/curves", () => {
  for (let i = 0; i < 16; i++) {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const publicB = x25519PublicKey(b);
    assert.deepEqual(x25519PublicKey(a), x25519.getPublicKey(a));
    assert.deepEqual(publicB, x25519.getPublicKey(b));
    assert.deepEqual(x25519Shared(a, publicB), x25519.getSharedSecret(a, publicB));
  }
});

test("x25519: a low-order public key is refused, as @noble/curves refuses it", () => {
  const lowOrder = new Uint8Array(32); // the point 0: every result is zero
  const one = Uint8Array.of(1, ...new Uint8Array(31));
  for (const point of [lowOrder, one]) {
    assert.throws(() => x25519Shared(randomBytes(32), point));
    assert.throws(() => x25519.getSharedSecret(randomBytes(32), point));
  }
});

test("ed25519: the same keys and signatures as @noble/curves, and the same verdicts", () => {
  for (let i = 0; i < 16; i++) {
    const seed = randomBytes(32);
    const message = randomBytes(i * 37);
    const key = ed25519PublicKey(seed);
    assert.deepEqual(key, ed25519.getPublicKey(seed));
    const signature = ed25519Sign(message, seed);
    assert.deepEqual(signature, ed25519.sign(message, seed));
    assert.equal(ed25519Verify(signature, message, key), true);
    const flipped = signature.slice();
    flipped[i % 64]! ^= 1;
    assert.equal(ed25519Verify(flipped, message, key), false);
    assert.equal(ed25519Verify(signature, Uint8Array.of(...message, 0), key), false);
    assert.equal(ed25519Verify(signature.subarray(0, 63), message, key), false);
  }
});

test("ed25519: a signature with s not reduced (s + L) is refused by both", () => {
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  const seed = randomBytes(32);
  const message = randomBytes(40);
  const key = ed25519PublicKey(seed);
  const signature = ed25519Sign(message, seed);
  let s = 0n;
  for (let i = 31; i >= 0; i--) s = (s << 8n) | BigInt(signature[32 + i]!);
  s += L;
  const forged = signature.slice();
  for (let i = 0; i < 32; i++) forged[32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
  if (s < 1n << 256n) {
    assert.equal(ed25519Verify(forged, message, key), false);
    assert.equal(ed25519.verify(forged, message, key, { zip215: false }), false);
  }
});

test("generated device keys derive the static key: the signing key's Montgomery form, as the Rust keys (ADR 0008)", () => {
  for (let i = 0; i < 8; i++) {
    const keys = DeviceKeys.generate("alice");
    assert.deepEqual(keys.staticPublic, ed25519.utils.toMontgomery(keys.signingPublic));
  }
  // Keys from a key file keep the static secret it holds, derived or not.
  const older = DeviceKeys.fromSecrets("alice", randomBytes(32), randomBytes(32));
  assert.notDeepEqual(older.staticPublic, ed25519.utils.toMontgomery(older.signingPublic));
});
