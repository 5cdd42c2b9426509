/**
 * The handshake (docs/protocol.md §2): `Noise_XX_25519_ChaChaPoly_SHA256` with
 * static-key certificates (ADR 0006: the ed25519 identity key signs the x25519
 * static key once; Noise's es/se prove the static key in each handshake and its
 * payload encryption authenticates the rest of the claim) and transport cipher
 * negotiation, as sans-IO
 * states. Each state is consumed by its transition (a used state throws), takes
 * `now` (unix ms) and returns the bytes to send; nothing here does I/O.
 *
 * ```text
 * initiator: Initiator.start ─msg1─▶ ExpectResponse.read(msg2) ─▶ VerifyPeer ─finish(trust)─▶ (msg3, Session)
 * responder: new Responder ─readHello(msg1)─▶ (ExpectFinish, msg2) ─read(msg3)─▶ VerifyPeer ─finish(trust)─▶ Session
 *
 * msg1  0x01 | e (32) | Hello (MessagePack, clear)
 * msg2  0x02 | e (32) | enc(s) (48) | enc({claim, certificate})     tokens e, ee, s, es
 * msg3  0x03 | enc(s) (48) | enc({claim, certificate})              tokens s, se
 * ```
 *
 * Each check of the protocol table, and the attack it stops, is a refusal here
 * with the Rust error's name as `code` (`Malformed`, `UnsupportedVersion`,
 * `ChannelBindingMismatch`, `StaleTimestamp`, `NoCommonCipher`, `Reflected`,
 * `DecryptFailed`, `UnknownCipher`, `CipherNotOffered`, `WeakKey`,
 * `InconsistentIdentity`, `WeakSigningKey`, `BadSignature`, `SelfConnection`,
 * `UnexpectedPeer`, `Untrusted`). The replay guard of a responder is
 * {@link ReplayGuard}.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { decode, encode } from "@msgpack/msgpack";

import { concat, equal, toHex, u64be, utf8 } from "./bytes.js";
import { ed25519Verify, x25519PublicKey, x25519Shared } from "./curves.js";
import { handshakeError, PeersError } from "./errors.js";
import {
  DeviceInfo,
  DeviceKeys,
  certificateText,
  deviceIdHex,
  randomBytes,
  validateDeviceInfo,
} from "./identity.js";

export const PROTOCOL_NAME = utf8.encode("Noise_XX_25519_ChaChaPoly_SHA256");
/** 2 since the static-key certificate (ADR 0006); a responder refuses any other. */
export const PROTOCOL_VERSION = 2;
export const TAG_HELLO = 0x01;
export const TAG_RESPONSE = 0x02;
export const TAG_FINISH = 0x03;
export const MAX_HANDSHAKE_MESSAGE = 8 * 1024;
export const MAX_OFFER = 16;
/** Most verified certificates this module remembers (oldest evicted first). */
export const CERTIFICATE_CACHE_CAPACITY = 4096;
const PROLOGUE_LABEL = utf8.encode("peers/v1");

/** Transport cipher ids (§2). */
export enum TransportCipher {
  ChaCha20Poly1305 = 1,
  Aes256Gcm = 2,
}

/** Trust levels, lowest first (the Rust `TrustLevel` order). */
export enum TrustLevel {
  Untrusted = 0,
  Unknown = 1,
  NewUser = 2,
  NewDevice = 3,
  Known = 4,
  Trusted = 5,
  SelfDevice = 6,
}

/** What the transport says about its own security (the Rust `TransportSecurity`). */
export interface TransportSecurity {
  confidential: boolean;
  /** Channel binding: kind ("dtls", "tls-exporter"), this side's and the peer's values. */
  channelBinding?: { kind: string; local: Uint8Array; remote: Uint8Array } | undefined;
}

export interface HandshakeConfig {
  keys: DeviceKeys;
  addresses: string[];
  /** Largest accepted clock skew, ms. Default 300,000 (5 min). */
  timestampWindowMs: number;
  skipAeadWhenBound: boolean;
  /** Accepted transport ciphers, preferred first. Default `[Aes256Gcm, ChaCha20Poly1305]`. */
  ciphers: TransportCipher[];
  /** Randomness for ephemeral keys (tests inject a fixed source). */
  random: (n: number) => Uint8Array;
}

export function defaultHandshakeConfig(keys: DeviceKeys): HandshakeConfig {
  return {
    keys,
    addresses: [],
    timestampWindowMs: 300_000,
    skipAeadWhenBound: true,
    ciphers: [TransportCipher.Aes256Gcm, TransportCipher.ChaCha20Poly1305],
    random: randomBytes,
  };
}

/** The outcome of a handshake. */
export interface Session {
  remote: DeviceInfo;
  trust: TrustLevel;
  handshakeHash: Uint8Array;
  role: "initiator" | "responder";
  encrypted: boolean;
  cipher: TransportCipher;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
}

interface Claim {
  info: DeviceInfo;
  ts: number;
  skip_aead: boolean;
  aead?: number;
}

function nonce(counter: number): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(4, BigInt(counter), true);
  return n;
}

function hkdf2(ck: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const okm = hkdf(sha256, input, ck, new Uint8Array(0), 64);
  return [okm.slice(0, 32), okm.slice(32, 64)];
}

function dh(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = x25519Shared(secret, publicKey);
  } catch {
    throw handshakeError("WeakKey", "a key exchange result was not contributory (low-order point)");
  }
  if (shared.every((b) => b === 0)) {
    throw handshakeError("WeakKey", "a key exchange result was not contributory (low-order point)");
  }
  return shared;
}

/** Noise's SymmetricState with SHA-256 and ChaCha20-Poly1305. */
class SymmetricState {
  private ck: Uint8Array;
  private h: Uint8Array;
  private key: Uint8Array | undefined;
  private n = 0;

  constructor(prologue: Uint8Array) {
    this.ck = PROTOCOL_NAME.slice();
    this.h = PROTOCOL_NAME.slice();
    this.mixHash(prologue);
  }

  mixHash(data: Uint8Array): void {
    this.h = sha256(concat(this.h, data));
  }

  mixKey(input: Uint8Array): void {
    [this.ck, this.key] = hkdf2(this.ck, input);
    this.n = 0;
  }

  get hash(): Uint8Array {
    return this.h;
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    let out = plaintext;
    if (this.key) {
      out = chacha20poly1305(this.key, nonce(this.n), this.h).encrypt(plaintext);
      this.n += 1;
    }
    this.mixHash(out);
    return out;
  }

  decryptAndHash(ciphertext: Uint8Array, message: number): Uint8Array {
    let out = ciphertext;
    if (this.key) {
      try {
        out = chacha20poly1305(this.key, nonce(this.n), this.h).decrypt(ciphertext);
      } catch {
        throw handshakeError("DecryptFailed", `message ${message} failed to decrypt (tampered, or a different prologue)`, {
          message,
        });
      }
      this.n += 1;
    }
    this.mixHash(ciphertext);
    return out;
  }

  split(): [Uint8Array, Uint8Array] {
    return hkdf2(this.ck, new Uint8Array(0));
  }
}

function prologue(security: TransportSecurity, initiatorSide: boolean): [Uint8Array, Uint8Array | null] {
  const b = security.channelBinding;
  if (!b) return [PROLOGUE_LABEL, null];
  const [first, second] = initiatorSide ? [b.local, b.remote] : [b.remote, b.local];
  const parts: Uint8Array[] = [];
  for (const part of [utf8.encode(b.kind), first, second]) parts.push(u64be(part.length), part);
  const bound = concat(...parts);
  return [concat(PROLOGUE_LABEL, bound), sha256(bound)];
}

function malformed(message: number, detail: string): PeersError {
  return handshakeError("Malformed", `handshake message ${message} is malformed: ${detail}`, { message });
}

function splitTag(frame: Uint8Array, expected: number, message: number): Uint8Array {
  if (frame.length > MAX_HANDSHAKE_MESSAGE) throw malformed(message, `${frame.length} bytes is too long`);
  if (frame.length === 0) throw malformed(message, "empty frame");
  if (frame[0] !== expected) throw malformed(message, `unexpected tag 0x${(frame[0] as number).toString(16).padStart(2, "0")}`);
  return frame.subarray(1);
}

class Reader {
  constructor(private input: Uint8Array, private readonly message: number) {}
  take(n: number): Uint8Array {
    if (this.input.length < n) throw malformed(this.message, `need ${n} more bytes, have ${this.input.length}`);
    const head = this.input.subarray(0, n);
    this.input = this.input.subarray(n);
    return head;
  }
  rest(): Uint8Array {
    return this.input;
  }
}

function decodeMap(bytes: Uint8Array, what: string, message: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (e) {
    throw malformed(message, `${what}: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw malformed(message, `${what} is not a map`);
  }
  return value as Record<string, unknown>;
}

function u64Field(v: unknown, what: string, message: number): number {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === "bigint" && v >= 0n) return Number(v);
  throw malformed(message, `${what} is not an unsigned integer`);
}

function checkTimestamp(theirs: number, now: number, windowMs: number): void {
  const skew = Math.abs(theirs - now);
  if (skew > windowMs) {
    throw handshakeError("StaleTimestamp", `timestamp off by ${skew} ms (window ${windowMs} ms)`, { skewMs: skew, windowMs });
  }
}

function sealClaim(keys: DeviceKeys, claim: Claim): Uint8Array {
  const fields: Record<string, unknown> = {
    info: {
      user_id: claim.info.user_id,
      device_id: claim.info.device_id,
      signing_key: claim.info.signing_key,
      static_key: claim.info.static_key,
      addresses: claim.info.addresses,
    },
    ts: claim.ts,
    skip_aead: claim.skip_aead,
  };
  if (claim.aead !== undefined) fields.aead = claim.aead;
  return encode({ claim: encode(fields), sig: keys.staticKeyCertificate() });
}

/**
 * Certificates verified so far, as hex SHA-256 of signed text and signature; a Set
 * keeps insertion order, so the first entry is the oldest. Only a certificate that
 * passed the strict verification is added.
 */
const verifiedCertificates = new Set<string>();

function textOf(info: DeviceInfo): Uint8Array {
  return certificateText(info.user_id, info.device_id, info.signing_key, info.static_key);
}

/** Whether this certificate was verified before (tests). */
export function certificateCached(info: DeviceInfo, sig: Uint8Array): boolean {
  return verifiedCertificates.has(toHex(sha256(concat(textOf(info), sig))));
}

function verifyCertificate(info: DeviceInfo, sig: Uint8Array): boolean {
  const text = textOf(info);
  const entry = toHex(sha256(concat(text, sig)));
  if (verifiedCertificates.has(entry)) return true;
  // ed25519 strict: canonical s (zip215: false) and R not of small order.
  if (!strongPoint(sig.subarray(0, 32)) || !ed25519Verify(sig, text, info.signing_key)) return false;
  verifiedCertificates.add(entry);
  if (verifiedCertificates.size > CERTIFICATE_CACHE_CAPACITY) {
    const oldest = verifiedCertificates.values().next().value;
    if (oldest !== undefined) verifiedCertificates.delete(oldest);
  }
  return true;
}

/** A signing key for which signatures do not verify trivially: canonical and not of small order. */
function strongPoint(bytes: Uint8Array): boolean {
  try {
    const point = ed25519.Point.fromBytes(bytes, false);
    return !point.isSmallOrder() && equal(point.toBytes(), bytes);
  } catch {
    return false;
  }
}

function openClaim(payload: Uint8Array, provenStatic: Uint8Array, message: number): Claim {
  const signed = decodeMap(payload, "signed identity", message);
  if (!(signed.claim instanceof Uint8Array) || !(signed.sig instanceof Uint8Array) || signed.sig.length !== 64) {
    throw malformed(message, "signed identity needs claim (bin) and sig (bin 64)");
  }
  const raw = decodeMap(signed.claim, "identity claim", message);
  let info: DeviceInfo;
  try {
    info = validateDeviceInfo(raw.info);
  } catch (e) {
    const detail = (e as Error).message;
    if (detail.includes("device id")) {
      throw handshakeError("InconsistentIdentity", "inconsistent identity: device id does not match signing key");
    }
    throw malformed(message, `identity claim: ${detail}`);
  }
  if (typeof raw.skip_aead !== "boolean") throw malformed(message, "identity claim: skip_aead is not a bool");
  const claim: Claim = { info, ts: u64Field(raw.ts, "identity claim ts", message), skip_aead: raw.skip_aead };
  if (raw.aead !== undefined && raw.aead !== null) {
    if (typeof raw.aead !== "number" || !Number.isInteger(raw.aead) || raw.aead < 0 || raw.aead > 255) {
      throw malformed(message, "identity claim: aead is not a u8");
    }
    claim.aead = raw.aead;
  }
  if (!equal(info.static_key, provenStatic)) {
    throw handshakeError(
      "InconsistentIdentity",
      "inconsistent identity: static key differs from the one used in the key exchange",
    );
  }
  if (!strongPoint(info.signing_key)) {
    throw handshakeError("WeakSigningKey", "the signing key is not canonical or of small order");
  }
  if (!verifyCertificate(info, signed.sig)) {
    throw handshakeError("BadSignature", `bad signature from device ${deviceIdHex(info.device_id)}`, {
      device: deviceIdHex(info.device_id),
    });
  }
  return claim;
}

function checkPeer(config: HandshakeConfig, remote: Claim, now: number, expected: Uint8Array | undefined): void {
  if (equal(remote.info.device_id, config.keys.deviceId)) {
    throw handshakeError("SelfConnection", "the peer is this device");
  }
  checkTimestamp(remote.ts, now, config.timestampWindowMs);
  if (expected && !equal(expected, remote.info.device_id)) {
    throw handshakeError(
      "UnexpectedPeer",
      `expected device ${toHex(expected)}, the peer is ${toHex(remote.info.device_id)}`,
      { expected: toHex(expected), actual: toHex(remote.info.device_id) },
    );
  }
}

function checkTrust(remote: DeviceInfo, level: TrustLevel, floor: TrustLevel): void {
  if (level === TrustLevel.Untrusted || level < floor) {
    throw handshakeError(
      "Untrusted",
      `device ${toHex(remote.device_id)} is ${TrustLevel[level]}, below the floor ${TrustLevel[floor]}`,
      { device: toHex(remote.device_id), level: TrustLevel[level], floor: TrustLevel[floor] },
    );
  }
}

function ownClaim(config: HandshakeConfig, security: TransportSecurity, now: number): Claim {
  return {
    info: config.keys.info(config.addresses),
    ts: now,
    skip_aead: config.skipAeadWhenBound && security.confidential && security.channelBinding !== undefined,
  };
}

function checkCiphers(config: HandshakeConfig): void {
  if (config.ciphers.length === 0) throw new PeersError("InvalidInput", "InvalidInput", "the cipher list is empty");
}

/** Consumes a state: a second use of the same state is a programming error. */
class Once {
  private used = false;
  protected consume(): void {
    if (this.used) throw new Error("handshake state used twice");
    this.used = true;
  }
}

export class Initiator {
  /** Message 1 and the state that waits for message 2. */
  static start(
    config: HandshakeConfig,
    security: TransportSecurity,
    expected: Uint8Array | undefined,
    now: number,
  ): [ExpectResponse, Uint8Array] {
    checkCiphers(config);
    const [pro, binding] = prologue(security, true);
    const symmetric = new SymmetricState(pro);
    const ephemeral = config.random(32);
    const ePub = x25519PublicKey(ephemeral);
    const hello = encode({ v: PROTOCOL_VERSION, ts: now, binding, aeads: Uint8Array.from(config.ciphers) });
    symmetric.mixHash(ePub);
    const out = concat(Uint8Array.of(TAG_HELLO), ePub, symmetric.encryptAndHash(hello));
    const claim = ownClaim(config, security, now);
    return [new ExpectResponse(config, claim, symmetric, ephemeral, ePub, expected), out];
  }
}

export class ExpectResponse extends Once {
  constructor(
    private readonly config: HandshakeConfig,
    private readonly claim: Claim,
    private readonly symmetric: SymmetricState,
    private readonly ephemeral: Uint8Array,
    private readonly ePub: Uint8Array,
    private readonly expected: Uint8Array | undefined,
  ) {
    super();
  }

  read(frame: Uint8Array, now: number): VerifyPeer<"initiator"> {
    this.consume();
    if (frame.length >= 33 && equal(frame.subarray(1, 33), this.ePub)) {
      throw handshakeError("Reflected", "message 2 carries our own ephemeral key (reflected message 1)");
    }
    const r = new Reader(splitTag(frame, TAG_RESPONSE, 2), 2);
    const re = r.take(32).slice();
    const s = this.symmetric;
    s.mixHash(re);
    s.mixKey(dh(this.ephemeral, re));
    const rs = s.decryptAndHash(r.take(48), 2);
    s.mixKey(dh(this.ephemeral, rs));
    const payload = s.decryptAndHash(r.rest(), 2);
    const remote = openClaim(payload, rs, 2);
    const cipher = acceptChoice(remote.aead, this.config.ciphers);
    checkPeer(this.config, remote, now, this.expected);
    return new VerifyPeer("initiator", remote, (level, floor, t) => {
      checkTrust(remote.info, level, floor);
      const parts = [Uint8Array.of(TAG_FINISH), s.encryptAndHash(this.config.keys.staticPublic)];
      s.mixKey(dh(this.config.keys.staticSecret, re));
      const claim: Claim = { ...this.claim, ts: t };
      parts.push(s.encryptAndHash(sealClaim(this.config.keys, claim)));
      const [toResponder, toInitiator] = s.split();
      const session: Session = {
        remote: remote.info,
        trust: level,
        handshakeHash: s.hash,
        role: "initiator",
        encrypted: !(claim.skip_aead && remote.skip_aead),
        cipher,
        sendKey: toResponder,
        recvKey: toInitiator,
      };
      return { message: concat(...parts), session };
    });
  }
}

function acceptChoice(choice: number | undefined, offered: TransportCipher[]): TransportCipher {
  const cipher = choice ?? TransportCipher.ChaCha20Poly1305;
  if (cipher !== TransportCipher.ChaCha20Poly1305 && cipher !== TransportCipher.Aes256Gcm) {
    throw handshakeError("UnknownCipher", `the responder chose unknown cipher ${cipher}`, { id: cipher });
  }
  if (!offered.includes(cipher)) {
    throw handshakeError("CipherNotOffered", `the responder chose ${TransportCipher[cipher]}, which we did not offer`);
  }
  return cipher;
}

function choose(offer: Uint8Array | null, ours: TransportCipher[]): TransportCipher {
  const list = offer ?? Uint8Array.of(TransportCipher.ChaCha20Poly1305);
  if (list.length > MAX_OFFER) throw malformed(1, `cipher offer of ${list.length} entries (at most ${MAX_OFFER})`);
  const found = ours.find((c) => list.includes(c));
  if (found === undefined) {
    throw handshakeError("NoCommonCipher", `no common transport cipher (offered ${Array.from(list).join(", ")})`, {
      offered: Array.from(list),
    });
  }
  return found;
}

/** The end of a handshake: the session, and message 3 for the initiator to send. */
export interface Finished {
  session: Session;
  message?: Uint8Array;
}

/** The authenticated peer, waiting for the (possibly asynchronous) trust decision. */
export class VerifyPeer<R extends "initiator" | "responder"> extends Once {
  constructor(
    readonly role: R,
    private readonly claim: Claim,
    private readonly complete: (level: TrustLevel, floor: TrustLevel, now: number) => Finished,
  ) {
    super();
  }

  get remote(): DeviceInfo {
    return this.claim.info;
  }

  /**
   * Applies the trust decision; refuses with `Untrusted` below `floor`. The
   * initiator gets message 3 to send; the responder only the session.
   */
  finish(level: TrustLevel, floor: TrustLevel, now: number): Finished {
    this.consume();
    return this.complete(level, floor, now);
  }
}

/**
 * First messages seen within the timestamp window (§2 `Replayed`). Bounded:
 * 65,536 entries that leave only by ageing out; when full, new first messages are
 * refused `ReplayGuardFull`.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  constructor(readonly windowMs = 300_000, readonly capacity = 65_536) {}

  check(e: Uint8Array, now: number): void {
    for (const [key, at] of this.seen) {
      if (now - at > 2 * this.windowMs) this.seen.delete(key);
      else break;
    }
    const key = toHex(e);
    if (this.seen.has(key)) throw handshakeError("Replayed", "message 1 was seen before (replay)");
    if (this.seen.size >= this.capacity) {
      throw handshakeError("ReplayGuardFull", `the replay guard holds ${this.capacity} recent first messages`);
    }
    this.seen.set(key, now);
  }
}

export class Responder extends Once {
  private readonly symmetric: SymmetricState;
  private readonly binding: Uint8Array | null;
  private readonly claim: Claim;

  constructor(private readonly config: HandshakeConfig, security: TransportSecurity, now: number) {
    super();
    checkCiphers(config);
    const [pro, binding] = prologue(security, false);
    this.symmetric = new SymmetricState(pro);
    this.binding = binding;
    this.claim = ownClaim(config, security, now);
  }

  readHello(frame: Uint8Array, now: number, guard: ReplayGuard): [ExpectFinish, Uint8Array] {
    this.consume();
    const r = new Reader(splitTag(frame, TAG_HELLO, 1), 1);
    const re = r.take(32).slice();
    const s = this.symmetric;
    s.mixHash(re);
    const hello = decodeMap(s.decryptAndHash(r.rest(), 1), "hello", 1);
    const v = hello.v;
    if (typeof v !== "number" || !Number.isInteger(v)) throw malformed(1, "hello: v is not an integer");
    if (v !== PROTOCOL_VERSION) throw handshakeError("UnsupportedVersion", `unsupported protocol version ${v}`, { v });
    const ts = u64Field(hello.ts, "hello ts", 1);
    if (!("binding" in hello)) throw malformed(1, "hello: missing field binding");
    const binding = hello.binding;
    if (binding !== null && !(binding instanceof Uint8Array)) throw malformed(1, "hello: binding is not bin or nil");
    const bindingMatches =
      binding === null || this.binding === null ? binding === this.binding : equal(binding, this.binding);
    if (!bindingMatches) {
      throw handshakeError("ChannelBindingMismatch", "the channel binding differs from ours (a man in the middle?)");
    }
    checkTimestamp(ts, now, this.config.timestampWindowMs);
    guard.check(re, now);
    const aeads = hello.aeads;
    if (aeads !== undefined && aeads !== null && !(aeads instanceof Uint8Array)) {
      throw malformed(1, "hello: aeads is not bin");
    }
    const cipher = choose(aeads ?? null, this.config.ciphers);

    const ephemeral = this.config.random(32);
    const ePub = x25519PublicKey(ephemeral);
    s.mixHash(ePub);
    s.mixKey(dh(ephemeral, re));
    const encS = s.encryptAndHash(this.config.keys.staticPublic);
    s.mixKey(dh(this.config.keys.staticSecret, re));
    const claim: Claim = { ...this.claim, ts: now, aead: cipher };
    const encPayload = s.encryptAndHash(sealClaim(this.config.keys, claim));
    const out = concat(Uint8Array.of(TAG_RESPONSE), ePub, encS, encPayload);
    return [new ExpectFinish(this.config, claim, s, ephemeral, cipher), out];
  }
}

export class ExpectFinish extends Once {
  constructor(
    private readonly config: HandshakeConfig,
    private readonly claim: Claim,
    private readonly symmetric: SymmetricState,
    private readonly ephemeral: Uint8Array,
    private readonly cipher: TransportCipher,
  ) {
    super();
  }

  read(frame: Uint8Array, now: number): VerifyPeer<"responder"> {
    this.consume();
    const r = new Reader(splitTag(frame, TAG_FINISH, 3), 3);
    const s = this.symmetric;
    const rs = s.decryptAndHash(r.take(48), 3);
    s.mixKey(dh(this.ephemeral, rs));
    const payload = s.decryptAndHash(r.rest(), 3);
    const remote = openClaim(payload, rs, 3);
    checkPeer(this.config, remote, now, undefined);
    return new VerifyPeer("responder", remote, (level, floor) => {
      checkTrust(remote.info, level, floor);
      const [toResponder, toInitiator] = s.split();
      return {
        session: {
          remote: remote.info,
          trust: level,
          handshakeHash: s.hash,
          role: "responder",
          encrypted: !(this.claim.skip_aead && remote.skip_aead),
          cipher: this.cipher,
          sendKey: toInitiator,
          recvKey: toResponder,
        },
      };
    });
  }
}
