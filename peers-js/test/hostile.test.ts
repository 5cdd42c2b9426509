// The codec and handshake entries of the Rust hostile-input catalogue
// (peers-sdk/src/hostile_tests.rs), against the TypeScript decoder and handshake:
// each must be a clear, typed refusal.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import {
  Brotli,
  brotliFromWasm,
  certificateCached,
  BrotliWasmModule,
  defaultCodecConfig,
  defaultHandshakeConfig,
  DeviceKeys,
  FrameDecoder,
  FrameEncoder,
  Initiator,
  loadNodeBrotli,
  Opener,
  PeersError,
  ReplayGuard,
  Responder,
  Sealer,
  TrustLevel,
} from "../src/index.js";

const MIB = 1024 * 1024;

function chunk(id: number, index: number, count: number, total: bigint, data: Uint8Array): Uint8Array {
  const f = new Uint8Array(22 + data.length);
  const v = new DataView(f.buffer);
  f[0] = 1;
  v.setUint32(2, id);
  v.setUint32(6, index);
  v.setUint32(10, count);
  v.setBigUint64(14, total);
  f.set(data, 22);
  return f;
}

function refused(code: string, kind = "Codec") {
  return (e: unknown) => e instanceof PeersError && e.kind === kind && e.code === code;
}

test("the decoder refuses each hostile frame with a typed error", async () => {
  const config = defaultCodecConfig(await loadNodeBrotli());
  const d = () => new FrameDecoder(config);
  assert.throws(() => d().decode(chunk(1, 0, 2, 1n << 40n, new Uint8Array(4))), refused("MessageTooLarge"));
  assert.throws(() => d().decode(Uint8Array.of(1, 0, 0, 0, 0, 1)), refused("Truncated"));
  assert.throws(() => d().decode(new Uint8Array(0)), refused("Truncated"));
  assert.throws(() => d().decode(chunk(1, 2, 2, 8n, new Uint8Array(4))), refused("ChunkOutOfRange"));
  assert.throws(() => d().decode(chunk(1, 0, 0, 0n, new Uint8Array(0))), refused("ChunkOutOfRange"));
  const dup = d();
  dup.decode(chunk(1, 0, 3, 12n, new Uint8Array(4)));
  assert.throws(() => dup.decode(chunk(1, 0, 3, 12n, new Uint8Array(4))), refused("UnexpectedChunk"));
  assert.throws(() => d().decode(chunk(9, 1, 3, 12n, new Uint8Array(4))), refused("UnexpectedChunk"));
  const mismatch = d();
  mismatch.decode(chunk(1, 0, 3, 12n, new Uint8Array(4)));
  assert.throws(() => mismatch.decode(chunk(1, 1, 4, 12n, new Uint8Array(4))), refused("ChunkHeaderMismatch"));
  const over = d();
  over.decode(chunk(1, 0, 2, 6n, new Uint8Array(4)));
  assert.throws(() => over.decode(chunk(1, 1, 2, 6n, new Uint8Array(4))), refused("LengthMismatch"));
  const many = d();
  for (let id = 0; id < 8; id++) many.decode(chunk(id, 0, 2, 8n, new Uint8Array(4)));
  assert.throws(() => many.decode(chunk(8, 0, 2, 8n, new Uint8Array(4))), refused("TooManyPartialMessages"));
  assert.throws(() => d().decode(Uint8Array.of(7, 0)), refused("UnknownFrameType"));
  assert.throws(() => d().decode(Uint8Array.of(0, 2, 1)), refused("UnknownFlags"));
  assert.throws(() => d().decode(Uint8Array.of(0, 1, 1, 2, 3)), refused("Decompress"));
});

/** Both Brotli implementations: Node's zlib and the WebAssembly one browsers use. */
async function brotlis(): Promise<[[string, Brotli], [string, Brotli]]> {
  const node = await loadNodeBrotli();
  assert.ok(node);
  const wasm = createRequire(import.meta.url)("brotli-wasm") as BrotliWasmModule;
  return [
    ["node", node],
    ["wasm", brotliFromWasm(wasm)],
  ];
}

test("a Brotli bomb fails without expanding past the limit, and corrupt, truncated or trailing data is refused (both Brotli implementations)", async () => {
  for (const [name, brotli] of await brotlis()) {
    const bomb = brotli.compress(new Uint8Array(80 * MIB), 5);
    const config = { ...defaultCodecConfig(brotli), maxMessageSize: 64 * MIB };
    const frames = new FrameEncoder({ ...config, compressMinSize: undefined }).encode(bomb, MIB);
    // Re-flag the frames as compressed: the bomb travels as one compressed message.
    for (const f of frames) f[1] = 1;
    const decoder = new FrameDecoder(config);
    assert.throws(() => {
      for (const f of frames) decoder.decode(f);
    }, refused("DecompressedTooLarge"), name);
    const stream = brotli.compress(new Uint8Array(10_000).fill(42), 3);
    const whole = (bytes: Uint8Array) => Uint8Array.from([0, 1, ...bytes]);
    assert.equal(new FrameDecoder(config).decode(whole(stream))?.length, 10_000, name);
    assert.throws(() => new FrameDecoder(config).decode(whole(Uint8Array.from([...stream, 1, 2, 3]))), refused("Decompress"), `${name}: trailing bytes`);
    assert.throws(() => new FrameDecoder(config).decode(whole(stream.subarray(0, stream.length - 2))), refused("Decompress"), `${name}: truncated`);
    assert.throws(() => new FrameDecoder(config).decode(Uint8Array.of(0, 1, 1, 2, 3)), refused("Decompress"), `${name}: garbage`);
  }
  const noBrotli = new FrameDecoder(defaultCodecConfig(undefined));
  assert.throws(() => noBrotli.decode(Uint8Array.of(0, 1, 0x3b)), (e: PeersError) => e.code === "Decompress" && /no Brotli/.test(e.message));
});

test("each Brotli implementation reads what the other wrote", async () => {
  const [[, node], [, wasm]] = await brotlis();
  const message = new Uint8Array(3 * MIB).map((_, i) => (i >> 9) & 0xff);
  assert.deepEqual(wasm.decompress(node.compress(message, 5), 64 * MIB), message);
  assert.deepEqual(node.decompress(wasm.compress(message, 3), 64 * MIB), message);
});

test("frames split any way reassemble, and large messages round-trip compressed", async () => {
  const config = defaultCodecConfig(await loadNodeBrotli());
  const message = new Uint8Array(5 * MIB).map((_, i) => (i >> 10) & 0xff);
  const frames = new FrameEncoder(config).encode(message, 64 * 1024);
  assert.ok(frames.every((f) => f[1] === 1), "compressible data is sent compressed");
  const decoder = new FrameDecoder(config);
  let out: Uint8Array | undefined;
  for (const f of frames) out = decoder.decode(f) ?? out;
  assert.deepEqual(out, message);
  assert.equal(decoder.bufferedBytes, 0);
});

function handshakeParts() {
  const a = defaultHandshakeConfig(DeviceKeys.generate("alice"));
  const b = defaultHandshakeConfig(DeviceKeys.generate("bob"));
  return { a, b, security: { confidential: false } };
}

test("the handshake refuses replayed, stale, reflected, tampered and garbage messages", () => {
  const now = Date.now();
  const { a, b, security } = handshakeParts();
  const guard = new ReplayGuard();
  const [, hello] = Initiator.start(a, security, undefined, now);
  new Responder(b, security, now).readHello(hello, now, guard);
  assert.throws(() => new Responder(b, security, now).readHello(hello, now, guard), refused("Replayed", "Handshake"));
  const [, old] = Initiator.start(a, security, undefined, now - 10 * 60_000);
  assert.throws(() => new Responder(b, security, now).readHello(old, now, new ReplayGuard()), refused("StaleTimestamp", "Handshake"));
  const [expect, hello2] = Initiator.start(a, security, undefined, now);
  const reflected = Uint8Array.from(hello2);
  reflected[0] = 2;
  assert.throws(() => expect.read(reflected, now), refused("Reflected", "Handshake"));
  assert.throws(() => new Responder(b, security, now).readHello(Uint8Array.of(9, 9, 9), now, new ReplayGuard()), refused("Malformed", "Handshake"));
  assert.throws(() => new Responder(b, security, now).readHello(new Uint8Array(9000).fill(1), now, new ReplayGuard()), refused("Malformed", "Handshake"));
  const [expect3, hello3] = Initiator.start(a, security, undefined, now);
  const [, response] = new Responder(b, security, now).readHello(hello3, now, new ReplayGuard());
  const tampered = Uint8Array.from(response);
  tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
  assert.throws(() => expect3.read(tampered, now), refused("DecryptFailed", "Handshake"));
  const bound = { confidential: true, channelBinding: { kind: "dtls", local: new Uint8Array(32), remote: new Uint8Array(32).fill(1) } };
  const [, helloBound] = Initiator.start(a, bound, undefined, now);
  assert.throws(() => new Responder(b, security, now).readHello(helloBound, now, new ReplayGuard()), refused("ChannelBindingMismatch", "Handshake"));
  const [expect4, hello4] = Initiator.start(a, security, DeviceKeys.generate("carol").deviceId, now);
  const [, response4] = new Responder(b, security, now).readHello(hello4, now, new ReplayGuard());
  assert.throws(() => expect4.read(response4, now), refused("UnexpectedPeer", "Handshake"));
  const [expect5, hello5] = Initiator.start(a, security, undefined, now);
  const [, response5] = new Responder(b, security, now).readHello(hello5, now, new ReplayGuard());
  assert.throws(() => expect5.read(response5, now).finish(TrustLevel.Untrusted, TrustLevel.Known, now), refused("Untrusted", "Handshake"));
});

/**
 * Keys that hold `holder`'s static key (so they pass Noise's es/se) but show
 * `info` with the certificate `sig` in their claim.
 */
function forgedKeys(holder: DeviceKeys, info: ReturnType<DeviceKeys["info"]>, sig: Uint8Array): DeviceKeys {
  const forged = Object.create(holder) as DeviceKeys;
  forged.info = () => info;
  forged.staticKeyCertificate = () => sig;
  return forged;
}

/** Our initiator's answer to a message 2 from a responder with `keys`. */
function readResponseFrom(keys: DeviceKeys): unknown {
  const now = Date.now();
  const security = { confidential: false };
  const [expect, hello] = Initiator.start(defaultHandshakeConfig(DeviceKeys.generate("alice")), security, undefined, now);
  const [, response] = new Responder(defaultHandshakeConfig(keys), security, now).readHello(hello, now, new ReplayGuard());
  try {
    expect.read(response, now);
    return "accepted";
  } catch (e) {
    return e;
  }
}

test("a certificate for another static key is refused, also once the genuine one is cached", () => {
  const [bob, mallory] = [DeviceKeys.generate("bob"), DeviceKeys.generate("mallory")];
  const bobCert = bob.staticKeyCertificate();
  // Bob's certificate replayed by Mallory, who proves another static key.
  assert.ok(refused("InconsistentIdentity", "Handshake")(readResponseFrom(forgedKeys(mallory, bob.info(), bobCert))));
  const forged = { ...bob.info(), static_key: mallory.staticPublic };
  assert.ok(refused("BadSignature", "Handshake")(readResponseFrom(forgedKeys(mallory, forged, bobCert))));
  // A genuine handshake with Bob caches his certificate; it still covers only his key.
  assert.equal(readResponseFrom(bob), "accepted");
  assert.ok(certificateCached(bob.info(), bobCert));
  for (let i = 0; i < 2; i++) {
    assert.ok(refused("BadSignature", "Handshake")(readResponseFrom(forgedKeys(mallory, forged, bobCert))));
    assert.ok(!certificateCached(forged, bobCert), "a refused certificate is never remembered");
  }
});

test("a version-1 Hello is refused as UnsupportedVersion", () => {
  const now = Date.now();
  const { a, b, security } = handshakeParts();
  const [, hello] = Initiator.start(a, security, undefined, now);
  // The Hello is message 1's clear payload after the tag and e: a map (0x84) whose
  // first entry is "v" (0xa1 0x76) = 2 (positive fixint).
  const v1 = Uint8Array.from(hello);
  assert.deepEqual([...v1.subarray(33, 37)], [0x84, 0xa1, 0x76, 0x02]);
  v1[36] = 0x01;
  assert.throws(() => new Responder(b, security, now).readHello(v1, now, new ReplayGuard()), refused("UnsupportedVersion", "Handshake"));
});

test("sealed frames: replayed, reordered and forged frames are refused", () => {
  const session = {
    remote: DeviceKeys.generate("x").info(),
    trust: TrustLevel.Trusted,
    handshakeHash: new Uint8Array(32),
    role: "initiator" as const,
    encrypted: true,
    cipher: 2,
    sendKey: new Uint8Array(32).fill(3),
    recvKey: new Uint8Array(32).fill(3),
  };
  const sealer = new Sealer(session);
  const opener = new Opener(session);
  const f0 = sealer.seal(Uint8Array.of(0, 0, 1));
  const f1 = sealer.seal(Uint8Array.of(0, 0, 2));
  assert.throws(() => opener.open(f1), refused("Integrity"));
  assert.deepEqual(opener.open(f0), Uint8Array.of(0, 0, 1));
  assert.throws(() => opener.open(f0), refused("Integrity"));
  const forged = Uint8Array.from(f1);
  forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
  assert.throws(() => opener.open(forged), refused("Integrity"));
});
