import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Connection,
  connectionConfig,
  DeviceKeys,
  fromShareCode,
  memorySocketPair,
  PeersError,
  toShareCode,
  TransportCipher,
  TrustLevel,
} from "../src/index.js";

async function pair(ciphers?: TransportCipher[], trustB = TrustLevel.Trusted) {
  const a = DeviceKeys.generate("alice");
  const b = DeviceKeys.generate("bob");
  const ca = await connectionConfig(a, () => TrustLevel.Trusted);
  const cb = await connectionConfig(b, () => trustB);
  if (ciphers) ca.handshake.ciphers = ciphers;
  const [sa, sb] = memorySocketPair();
  const [dialed, accepted] = await Promise.allSettled([Connection.connect(sa, ca, b.deviceId), Connection.accept(sb, cb)]);
  return { a, b, dialed, accepted };
}

test("two peers-js devices connect, call both ways and stream, with each cipher", async () => {
  for (const cipher of [TransportCipher.ChaCha20Poly1305, TransportCipher.Aes256Gcm]) {
    const { dialed, accepted, a, b } = await pair([cipher]);
    assert.equal(dialed.status, "fulfilled");
    assert.equal(accepted.status, "fulfilled");
    const x = (dialed as PromiseFulfilledResult<Connection>).value;
    const y = (accepted as PromiseFulfilledResult<Connection>).value;
    assert.equal(x.cipher, cipher);
    assert.deepEqual(x.remote.device_id, b.deviceId);
    assert.deepEqual(y.remote.device_id, a.deviceId);
    assert.deepEqual(x.sessionId, y.sessionId);
    y.expose("add", (args) => (args as number[]).reduce((s, n) => s + n, 0));
    x.expose("who", () => "alice");
    assert.equal(await x.emit("add", [1, 2, 39]), 42);
    assert.equal(await y.emit("who", null), "alice");
    await assert.rejects(x.emit("nope", null), (e: PeersError) => e.kind === "Remote" && e.code === "UnknownMethod");
    let total = 0;
    y.exposeStream("sink", async (_meta, reader) => {
      for await (const piece of reader) total += piece.length;
    });
    const writer = await x.openStream("sink", { name: "blob" });
    const piece = new Uint8Array(1 << 20).fill(7);
    for (let i = 0; i < 9; i++) await writer.write(piece);
    await writer.finish();
    assert.equal(total, 9 << 20);
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 31) & 0xff);
    y.expose("len", (arg) => (arg as Uint8Array).length);
    assert.equal(await x.emit("len", big), big.length, "a chunked call arrives whole");
    await x.close("Normal", "done");
    const reason = await y.closed;
    assert.deepEqual(reason, { code: "Normal", message: "done", by: "Remote" });
  }
});

test("an untrusted device is refused with a close reason the dialer reports", async () => {
  const { dialed, accepted } = await pair(undefined, TrustLevel.Untrusted);
  assert.equal(accepted.status, "rejected");
  assert.equal((accepted as PromiseRejectedResult).reason.code, "Untrusted");
  assert.equal(dialed.status, "rejected");
  const err = (dialed as PromiseRejectedResult).reason as PeersError;
  assert.equal(err.kind, "Closed");
  assert.equal(err.code, "Refused");
  assert.match(err.message, /Untrusted|below the floor/);
});

test("share codes round-trip and forged ones are refused", () => {
  const info = DeviceKeys.generate("alice").info(["http://192.168.1.5:7700/"]);
  const code = toShareCode(info);
  assert.match(code, /^PEERS1[A-Z2-7]+$/);
  assert.deepEqual(fromShareCode(code.toLowerCase().replace(/(.{8})/g, "$1-")), info);
  const other = DeviceKeys.generate("mallory").info();
  assert.throws(() => fromShareCode(toShareCode({ ...info, signing_key: other.signing_key })), /device id/);
});

test("the key file round-trips", () => {
  const keys = DeviceKeys.generate("alice");
  const back = DeviceKeys.fromKeyFile(keys.toKeyFile());
  assert.deepEqual(back.deviceId, keys.deviceId);
  assert.deepEqual(back.staticPublic, keys.staticPublic);
});
