/**
 * Sealed frames (docs/protocol.md §3): after the handshake every socket frame is
 *
 * ```text
 * | counter u64 BE | AEAD(PeerTx frame) | tag (16) |
 * nonce = 0x00000000 || counter (u64 little-endian); associated data empty
 * ```
 *
 * Each direction counts from 0; the receiver requires exactly the next counter
 * (before decrypting), so a replayed, dropped or reordered frame is refused.
 */
import { gcm } from "@noble/ciphers/aes.js";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { PeersError } from "./errors.js";
import { Session, TransportCipher } from "./handshake.js";

export const SEAL_OVERHEAD = 8 + 16;

function aead(cipher: TransportCipher, key: Uint8Array, counter: bigint) {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, counter, true);
  return cipher === TransportCipher.Aes256Gcm ? gcm(key, nonce) : chacha20poly1305(key, nonce);
}

function integrity(message: string, detail: Record<string, unknown> = {}): PeersError {
  return new PeersError("Codec", "Integrity", message, detail);
}

export class Sealer {
  private counter = 0n;
  constructor(private readonly session: Session) {}

  seal(frame: Uint8Array): Uint8Array {
    if (!this.session.encrypted) return frame;
    const sealed = aead(this.session.cipher, this.session.sendKey, this.counter).encrypt(frame);
    const out = new Uint8Array(8 + sealed.length);
    new DataView(out.buffer).setBigUint64(0, this.counter, false);
    out.set(sealed, 8);
    this.counter += 1n;
    return out;
  }
}

export class Opener {
  private expected = 0n;
  constructor(private readonly session: Session) {}

  open(record: Uint8Array): Uint8Array {
    if (!this.session.encrypted) return record;
    if (record.length < SEAL_OVERHEAD) {
      throw integrity(`sealed frame of ${record.length} bytes is shorter than ${SEAL_OVERHEAD}`);
    }
    const counter = new DataView(record.buffer, record.byteOffset, 8).getBigUint64(0, false);
    if (counter !== this.expected) {
      throw integrity(`frame counter ${counter}, expected ${this.expected} (replayed, dropped or reordered)`, {
        counter: counter.toString(),
        expected: this.expected.toString(),
      });
    }
    let plain: Uint8Array;
    try {
      plain = aead(this.session.cipher, this.session.recvKey, counter).decrypt(record.subarray(8));
    } catch {
      throw integrity(`frame ${counter} failed authentication`);
    }
    this.expected += 1n;
    return plain;
  }
}
