/**
 * PeerTx frames (docs/protocol.md §4): framing, chunking, bounded reassembly and
 * bounded Brotli decompression. Pure: no I/O, no timers.
 *
 * ```text
 * WHOLE frame:  | 0x00 | flags | message bytes ... |
 * CHUNK frame:  | 0x01 | flags | msg id u32 | index u32 | count u32 | total len u64 | data ... |
 *                 byte 0  byte 1  2..6         6..10       10..14      14..22          22..
 * flags bit 0 = COMPRESSED (the joined message is one Brotli stream); other bits reserved.
 * ```
 *
 * Every refusal of the Rust `FrameDecoder` is a {@link PeersError} of kind `"Codec"`
 * with the same code (`Truncated`, `UnknownFrameType`, `UnknownFlags`,
 * `MessageTooLarge`, `ChunkOutOfRange`, `UnexpectedChunk`, `ChunkHeaderMismatch`,
 * `LengthMismatch`, `TooManyPartialMessages`, `Decompress`, `DecompressedTooLarge`).
 */
import { codecError, PeersError } from "./errors.js";

export const TYPE_WHOLE = 0x00;
export const TYPE_CHUNK = 0x01;
export const FLAG_COMPRESSED = 0x01;
export const WHOLE_HEADER_LEN = 2;
export const CHUNK_HEADER_LEN = 22;

/** Brotli for the codec. Node: {@link loadNodeBrotli}; browsers have none yet (compressed frames are refused). */
export interface Brotli {
  /** Decompresses `data`; output beyond `max` bytes is `DecompressedTooLarge`, bad data `Decompress`. */
  decompress(data: Uint8Array, max: number): Uint8Array;
  /** Compresses at `quality` (0..=11). */
  compress(data: Uint8Array, quality: number): Uint8Array;
}

export interface CodecConfig {
  /** Largest message, sent or received (after decompression). Default 64 MiB. */
  maxMessageSize: number;
  /** Largest data per frame. Default 1 MiB + 1 KiB. */
  chunkSize: number;
  /** Messages being reassembled at once. Default 8. */
  maxPartialMessages: number;
  /** Bytes buffered by all messages being reassembled. Default 128 MiB. */
  maxReassemblyBytes: number;
  /** Brotli; without it compressed frames are refused and nothing is compressed. */
  brotli: Brotli | undefined;
  /** Compress messages of at least this size when it saves 1/16 (default 4 KiB); `undefined`: never. */
  compressMinSize: number | undefined;
  /** Brotli quality when sending. Default 3. */
  compressQuality: number;
}

export const DEFAULT_CHUNK_SIZE = (1 << 20) + 1024;

export function defaultCodecConfig(brotli?: Brotli): CodecConfig {
  return {
    maxMessageSize: 64 * 1024 * 1024,
    chunkSize: DEFAULT_CHUNK_SIZE,
    maxPartialMessages: 8,
    maxReassemblyBytes: 128 * 1024 * 1024,
    brotli,
    compressMinSize: brotli ? 4096 : undefined,
    compressQuality: 3,
  };
}

/** Splits messages into frames (§4.2). */
export class FrameEncoder {
  private nextId = 0;
  constructor(readonly config: CodecConfig) {}

  /** The frames of `message` for a socket whose frames carry at most `maxFrame` bytes of PeerTx frame. */
  encode(message: Uint8Array, maxFrame: number): Uint8Array[] {
    const max = this.config.maxMessageSize;
    if (message.length > max) {
      throw codecError("MessageTooLarge", `message of ${message.length} bytes is over the limit of ${max}`, {
        size: message.length,
        max,
      });
    }
    if (maxFrame <= CHUNK_HEADER_LEN) {
      throw codecError("FrameTooSmall", `frames of ${maxFrame} bytes cannot carry a chunk`, { maxFrame });
    }
    let flags = 0;
    let body = message;
    const brotli = this.config.brotli;
    const minSize = this.config.compressMinSize;
    if (brotli && minSize !== undefined && message.length >= minSize) {
      const compressed = worthwhile(brotli, message, this.config.compressQuality);
      if (compressed) {
        body = compressed;
        flags = FLAG_COMPRESSED;
      }
    }
    const wholeBudget = Math.min(this.config.chunkSize, maxFrame - WHOLE_HEADER_LEN);
    if (body.length <= wholeBudget) {
      const frame = new Uint8Array(WHOLE_HEADER_LEN + body.length);
      frame[0] = TYPE_WHOLE;
      frame[1] = flags;
      frame.set(body, WHOLE_HEADER_LEN);
      return [frame];
    }
    const per = Math.min(this.config.chunkSize, maxFrame - CHUNK_HEADER_LEN);
    const count = Math.ceil(body.length / per);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const frames: Uint8Array[] = [];
    for (let index = 0; index < count; index++) {
      const data = body.subarray(index * per, Math.min(body.length, (index + 1) * per));
      const frame = new Uint8Array(CHUNK_HEADER_LEN + data.length);
      const view = new DataView(frame.buffer);
      frame[0] = TYPE_CHUNK;
      frame[1] = flags;
      view.setUint32(2, id, false);
      view.setUint32(6, index, false);
      view.setUint32(10, count, false);
      view.setBigUint64(14, BigInt(body.length), false);
      frame.set(data, CHUNK_HEADER_LEN);
      frames.push(frame);
    }
    return frames;
  }
}

const SAMPLE_LEN = 16 * 1024;
const SAMPLE_FROM = 256 * 1024;

function worthwhile(brotli: Brotli, message: Uint8Array, quality: number): Uint8Array | undefined {
  const limit = (len: number) => len - Math.ceil(len / 16);
  if (message.length >= SAMPLE_FROM) {
    const sample = message.subarray(0, SAMPLE_LEN);
    if (brotli.compress(sample, Math.min(quality, 2)).length > limit(sample.length)) return undefined;
  }
  const compressed = brotli.compress(message, quality);
  return compressed.length <= limit(message.length) ? compressed : undefined;
}

interface ChunkHeader {
  flags: number;
  id: number;
  index: number;
  count: number;
  totalLen: bigint;
}

interface Partial {
  first: ChunkHeader;
  nextIndex: number;
  parts: Uint8Array[];
  received: number;
}

/** Puts frames back together into messages (§4.3), with the Rust decoder's bounds and refusals. */
export class FrameDecoder {
  private readonly partial = new Map<number, Partial>();
  private buffered = 0;

  constructor(readonly config: CodecConfig) {}

  get partialMessages(): number {
    return this.partial.size;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The message `frame` completes, or `undefined` when more frames are needed. Throws a `Codec` error on any breach. */
  decode(frame: Uint8Array): Uint8Array | undefined {
    const type = frame[0];
    if (type === undefined) throw truncated(WHOLE_HEADER_LEN, 0);
    if (type !== TYPE_WHOLE && type !== TYPE_CHUNK) {
      throw codecError("UnknownFrameType", `unknown frame type ${hexByte(type)}`, { type });
    }
    const needed = type === TYPE_WHOLE ? WHOLE_HEADER_LEN : CHUNK_HEADER_LEN;
    if (frame.length < needed) throw truncated(needed, frame.length);
    const flags = frame[1] as number;
    if ((flags & ~FLAG_COMPRESSED) !== 0) {
      throw codecError("UnknownFlags", `reserved frame flags set: ${hexByte(flags)}`, { flags });
    }
    if (type === TYPE_WHOLE) return this.complete(flags, frame.subarray(WHOLE_HEADER_LEN));
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const header: ChunkHeader = {
      flags,
      id: view.getUint32(2, false),
      index: view.getUint32(6, false),
      count: view.getUint32(10, false),
      totalLen: view.getBigUint64(14, false),
    };
    return this.chunk(header, frame.subarray(CHUNK_HEADER_LEN));
  }

  private chunk(chunk: ChunkHeader, data: Uint8Array): Uint8Array | undefined {
    const { id, index, count } = chunk;
    if (index >= count) {
      throw codecError("ChunkOutOfRange", `chunk ${index} of ${count} in message ${id}`, { id, index, count });
    }
    const max = this.config.maxMessageSize;
    if (chunk.totalLen > BigInt(max)) throw tooLarge(chunk.totalLen, max);
    const totalLen = Number(chunk.totalLen);
    const isLast = index === count - 1;
    const lengthMismatch = (actual: number) =>
      codecError("LengthMismatch", `message ${id} declared ${totalLen} bytes, got ${actual}`, {
        id,
        declared: totalLen,
        actual,
      });
    const partial = this.partial.get(id);
    if (partial === undefined) {
      if (index !== 0) throw unexpectedChunk(id, 0, index);
      if (data.length > totalLen || (isLast && data.length !== totalLen)) throw lengthMismatch(data.length);
      if (isLast) return this.complete(chunk.flags, data);
      if (this.partial.size >= this.config.maxPartialMessages) {
        throw codecError("TooManyPartialMessages", `more than ${this.config.maxPartialMessages} messages in progress`, {
          max: this.config.maxPartialMessages,
        });
      }
      this.buffered = this.withinBudget(data.length);
      this.partial.set(id, { first: chunk, nextIndex: 1, parts: [data.slice()], received: data.length });
      return undefined;
    }
    if (index !== partial.nextIndex) throw unexpectedChunk(id, partial.nextIndex, index);
    const f = partial.first;
    if (f.flags !== chunk.flags || f.count !== chunk.count || f.totalLen !== chunk.totalLen) {
      throw codecError("ChunkHeaderMismatch", `chunk header of message ${id} differs from its first chunk`, { id });
    }
    const received = partial.received + data.length;
    if (received > totalLen || (isLast && received !== totalLen)) throw lengthMismatch(received);
    this.buffered = this.withinBudget(data.length);
    partial.parts.push(data.slice());
    partial.received = received;
    partial.nextIndex = index + 1;
    if (!isLast) return undefined;
    this.partial.delete(id);
    this.buffered -= received;
    const joined = new Uint8Array(received);
    let at = 0;
    for (const p of partial.parts) {
      joined.set(p, at);
      at += p.length;
    }
    return this.complete(f.flags, joined);
  }

  private withinBudget(more: number): number {
    const total = this.buffered + more;
    const max = this.config.maxReassemblyBytes;
    if (total > max) throw tooLarge(BigInt(total), max);
    return total;
  }

  private complete(flags: number, message: Uint8Array): Uint8Array {
    const max = this.config.maxMessageSize;
    if (message.length > max) throw tooLarge(BigInt(message.length), max);
    if ((flags & FLAG_COMPRESSED) === 0) return message;
    const brotli = this.config.brotli;
    if (!brotli) {
      throw codecError(
        "Decompress",
        "a compressed frame arrived but this build has no Brotli decoder (browsers: not supported yet)",
      );
    }
    return brotli.decompress(message, max);
  }
}

function hexByte(b: number): string {
  return `0x${b.toString(16).padStart(2, "0")}`;
}

function truncated(needed: number, have: number): PeersError {
  return codecError("Truncated", `frame of ${have} bytes is shorter than its ${needed}-byte header`, { needed, have });
}

function tooLarge(size: bigint, max: number): PeersError {
  return codecError("MessageTooLarge", `message of ${size} bytes is over the limit of ${max}`, {
    size: size.toString(),
    max,
  });
}

function unexpectedChunk(id: number, expected: number, got: number): PeersError {
  return codecError("UnexpectedChunk", `message ${id}: expected chunk ${expected}, got ${got}`, { id, expected, got });
}

/**
 * Brotli from Node's `zlib` (standard streams only: the large-window extension is
 * off unless asked for, and never asked). Resolves to `undefined` outside Node.
 */
export async function loadNodeBrotli(): Promise<Brotli | undefined> {
  if (typeof process === "undefined" || !process.versions?.node) return undefined;
  const zlib = await import("node:zlib");
  return {
    decompress(data: Uint8Array, max: number): Uint8Array {
      let out: Buffer;
      try {
        // `info` gives the engine, whose `bytesWritten` is the input it consumed: zlib
        // stops at the end of the Brotli stream and ignores what follows, which the
        // protocol refuses (§4.3).
        const options = { maxOutputLength: max + 1, info: true } as import("node:zlib").BrotliOptions;
        const result = zlib.brotliDecompressSync(data, options) as unknown as {
          buffer: Buffer;
          engine: { bytesWritten: number };
        };
        out = result.buffer;
        if (result.engine.bytesWritten !== data.length) {
          throw codecError("Decompress", `${data.length - result.engine.bytesWritten} bytes after the end of the Brotli stream`);
        }
      } catch (e) {
        if (e instanceof PeersError) throw e;
        const err = e as NodeJS.ErrnoException;
        if (err.code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError) {
          throw codecError("DecompressedTooLarge", `compressed message expands beyond ${max} bytes`, { max });
        }
        throw codecError("Decompress", `corrupt or truncated Brotli data: ${err.message}`);
      }
      if (out.length > max) {
        throw codecError("DecompressedTooLarge", `compressed message expands beyond ${max} bytes`, { max });
      }
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
    compress(data: Uint8Array, quality: number): Uint8Array {
      const out = zlib.brotliCompressSync(data, {
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: quality,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        },
      });
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
  };
}
