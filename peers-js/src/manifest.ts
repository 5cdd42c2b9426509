/**
 * The manifest of a transfer (docs/protocol.md §9.3) and the positions over its chunks,
 * without I/O: {@link validateManifest} (the bounds), {@link manifestDigest} (names a
 * transfer for a resume, as the Rust `Manifest::digest`), {@link buildManifest} (a
 * sender's manifest from its sources, each chunk hashed), {@link ChunkCutter} (the
 * receiver: stream bytes in, verified chunks out) and {@link ChunkSending} (the
 * sender: the chunks to read and send from the receiver's resume point).
 */
import { blake3 } from "@noble/hashes/blake3.js";

import { equal } from "./bytes.js";
import { PeersError } from "./errors.js";

/** The chunk size a sender uses unless told otherwise (as `peers send`). */
export const DEFAULT_TRANSFER_CHUNK_SIZE = 1024 * 1024;
export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const MAX_ENTRIES = 100_000;
export const MAX_CHUNK_HASHES = 1 << 20;
export const MAX_PATH_LEN = 4096;

/** A file's entry: its size, executable bit and one 32-byte BLAKE3 per chunk. */
export interface FileKind {
  size: number;
  executable: boolean;
  chunks: Uint8Array;
}

export interface ManifestEntry {
  path: string;
  kind: "Dir" | { File: FileKind };
}

export interface Manifest {
  chunk_size: number;
  entries: ManifestEntry[];
}

/** A position in the data: the next chunk to send. */
export interface Cursor {
  entry: number;
  chunk: number;
}

/** A `PeersError` of kind `Transfer`. */
export function transferError(code: string, message: string): PeersError {
  return new PeersError("Transfer", code, message);
}

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0 || new TextEncoder().encode(path).length > MAX_PATH_LEN) throw transferError("BadManifest", "a path is empty or too long");
  if (path.startsWith("/") || /[\\\u0000-\u001f\u007f]/.test(path)) throw transferError("BadManifest", `path ${JSON.stringify(path)} is not relative or has a forbidden character`);
  for (const part of path.split("/")) {
    const len = new TextEncoder().encode(part).length;
    if (len === 0 || len > 255 || part === "." || part === "..") throw transferError("BadManifest", `path ${JSON.stringify(path)} has a bad component`);
  }
  return path;
}

/** Checks a decoded offer's manifest (the bounds of §9.3) and returns it typed. */
export function validateManifest(value: unknown): Manifest {
  const m = value as Partial<Manifest> | null;
  if (typeof m !== "object" || m === null || typeof m.chunk_size !== "number" || !Array.isArray(m.entries)) throw transferError("BadManifest", "not a manifest");
  if (!Number.isInteger(m.chunk_size) || m.chunk_size < MIN_CHUNK_SIZE || m.chunk_size > MAX_CHUNK_SIZE) throw transferError("BadManifest", `chunk size ${m.chunk_size} outside ${MIN_CHUNK_SIZE}..=${MAX_CHUNK_SIZE}`);
  if (m.entries.length > MAX_ENTRIES) throw transferError("BadManifest", `more than ${MAX_ENTRIES} entries`);
  const seen = new Set<string>();
  const parents = new Set<string>();
  const files: string[] = [];
  let hashes = 0;
  for (const e of m.entries as unknown[]) {
    const entry = e as Partial<ManifestEntry> | null;
    if (typeof entry !== "object" || entry === null) throw transferError("BadManifest", "an entry is not a map");
    const path = checkPath(entry.path);
    if (seen.has(path)) throw transferError("BadManifest", `path ${JSON.stringify(path)} twice`);
    seen.add(path);
    for (let cut = path.lastIndexOf("/"); cut > 0; cut = path.lastIndexOf("/", cut - 1)) parents.add(path.slice(0, cut));
    if (entry.kind === "Dir") continue;
    files.push(path);
    const file = (entry.kind as { File?: Partial<FileKind> } | undefined)?.File;
    if (!file || typeof file.size !== "number" || !Number.isSafeInteger(file.size) || file.size < 0 || typeof file.executable !== "boolean" || !(file.chunks instanceof Uint8Array)) {
      throw transferError("BadManifest", `entry ${JSON.stringify(path)} is neither Dir nor File`);
    }
    const count = Math.ceil(file.size / m.chunk_size);
    if (file.chunks.length !== count * 32) throw transferError("BadManifest", `entry ${JSON.stringify(path)} has ${file.chunks.length / 32} chunk hashes, expected ${count}`);
    hashes += count;
    if (hashes > MAX_CHUNK_HASHES) throw transferError("BadManifest", `more than ${MAX_CHUNK_HASHES} chunk hashes`);
  }
  const both = files.find((f) => parents.has(f));
  if (both !== undefined) throw transferError("BadManifest", `${JSON.stringify(both)} is both a file and a directory`);
  return m as Manifest;
}

/** A chunk that matched its hash. */
export interface VerifiedChunk {
  entry: number;
  chunk: number;
  /** Byte offset of the chunk in its file. */
  offset: number;
  bytes: Uint8Array;
}

/**
 * Cuts the data stream into the manifest's chunks from a cursor, checking each
 * chunk's BLAKE3 (sans-IO). Holds at most one chunk (≤ 4 MiB) of unverified bytes.
 */
export class ChunkCutter {
  private entry: number;
  private chunk: number;
  private parts: Uint8Array[] = [];
  private held = 0;

  constructor(
    readonly manifest: Manifest,
    from: Cursor = { entry: 0, chunk: 0 },
  ) {
    this.entry = from.entry;
    this.chunk = from.chunk;
    this.skipEmpty();
  }

  /** The next chunk expected: where a new offer resumes. */
  get cursor(): Cursor {
    return { entry: this.entry, chunk: this.chunk };
  }

  /** Whether every chunk arrived and matched. */
  get complete(): boolean {
    return this.entry >= this.manifest.entries.length;
  }

  /** The file of the current entry and the length of its current chunk. */
  private current(): { file: FileKind; length: number } | undefined {
    const kind = this.manifest.entries[this.entry]?.kind;
    if (kind === undefined || kind === "Dir") return undefined;
    const size = this.manifest.chunk_size;
    return { file: kind.File, length: Math.min(size, kind.File.size - this.chunk * size) };
  }

  private skipEmpty(): void {
    while (this.entry < this.manifest.entries.length) {
      const c = this.current();
      if (c && c.length > 0) return;
      this.entry += 1;
      this.chunk = 0;
    }
  }

  /** Takes stream bytes; returns the chunks they completed, each verified. */
  push(data: Uint8Array): VerifiedChunk[] {
    const out: VerifiedChunk[] = [];
    let rest = data;
    while (rest.length > 0) {
      const c = this.current();
      if (!c) throw transferError("Protocol", "bytes after the last chunk");
      const take = Math.min(rest.length, c.length - this.held);
      this.parts.push(rest.subarray(0, take));
      this.held += take;
      rest = rest.subarray(take);
      if (this.held < c.length) break;
      const bytes = this.parts.length === 1 ? this.parts[0]!.slice() : concatAll(this.parts, this.held);
      this.parts = [];
      this.held = 0;
      const expected = c.file.chunks.subarray(this.chunk * 32, this.chunk * 32 + 32);
      if (!equal(blake3(bytes), expected)) throw transferError("ChunkMismatch", `chunk ${this.chunk} of entry ${this.entry} does not match the manifest`);
      out.push({ entry: this.entry, chunk: this.chunk, offset: this.chunk * this.manifest.chunk_size, bytes });
      this.chunk += 1;
      if (this.chunk * this.manifest.chunk_size >= c.file.size) {
        this.entry += 1;
        this.chunk = 0;
        this.skipEmpty();
      }
    }
    return out;
  }

  /** A new stream starts at the cursor: bytes of a chunk a broken stream did not finish are dropped. */
  restart(): void {
    this.parts = [];
    this.held = 0;
  }

  /** The stream ended: fine at a chunk boundary (complete, or a pause); an error inside a chunk. */
  end(): void {
    if (this.held > 0) throw transferError("Protocol", "the stream ended inside a chunk");
  }
}

function concatAll(parts: Uint8Array[], length: number): Uint8Array {
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}


const utf8 = new TextEncoder();

/** A file's hash: BLAKE3 over its chunk hashes in order. */
export function fileHash(chunks: Uint8Array): Uint8Array {
  return blake3(chunks);
}

function u64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

/**
 * The manifest's digest: BLAKE3 in derive-key mode (`"peers/v1 transfer manifest"`)
 * over every field, each length-prefixed (big-endian), as `Manifest::digest` in Rust.
 * The data stream's metadata carries it; the receiver names its staging by it.
 */
export function manifestDigest(manifest: Manifest): Uint8Array {
  const hasher = blake3.create({ context: utf8.encode("peers/v1 transfer manifest") });
  const size = new Uint8Array(4);
  new DataView(size.buffer).setUint32(0, manifest.chunk_size);
  hasher.update(size);
  hasher.update(u64(manifest.entries.length));
  for (const entry of manifest.entries) {
    const path = utf8.encode(entry.path);
    hasher.update(u64(path.length));
    hasher.update(path);
    if (entry.kind === "Dir") {
      hasher.update(Uint8Array.of(0));
    } else {
      const file = entry.kind.File;
      hasher.update(Uint8Array.of(1, file.executable ? 1 : 0));
      hasher.update(u64(file.size));
      hasher.update(fileHash(file.chunks));
    }
  }
  return hasher.digest();
}

/** Bytes of file content in the manifest. */
export function totalSize(manifest: Manifest): number {
  return manifest.entries.reduce((n, e) => n + (e.kind === "Dir" ? 0 : e.kind.File.size), 0);
}

/** One chunk to send: where it is, where its bytes come from, and the hash they must have. */
export interface ChunkRef {
  entry: number;
  chunk: number;
  /** Byte offset within the file. */
  offset: number;
  length: number;
  hash: Uint8Array;
}

/** The chunk at `at`, or the first after it (directories and empty files skipped); `undefined` past the last. */
function chunkAt(manifest: Manifest, at: Cursor): ChunkRef | undefined {
  let { entry, chunk } = at;
  for (; entry < manifest.entries.length; entry += 1, chunk = 0) {
    const kind = manifest.entries[entry]!.kind;
    if (kind === "Dir") continue;
    const size = manifest.chunk_size;
    if (chunk * 32 < kind.File.chunks.length) {
      const offset = chunk * size;
      return { entry, chunk, offset, length: Math.min(size, kind.File.size - offset), hash: kind.File.chunks.subarray(chunk * 32, chunk * 32 + 32) };
    }
  }
  return undefined;
}

/** Checks that `at` lies within the manifest (as the Rust `bytes_before`); returns the file bytes before it (a `Transfer`/`Protocol` error outside). */
export function bytesBefore(manifest: Manifest, at: Cursor): number {
  const outside = () => transferError("Protocol", `resume position ${JSON.stringify(at)} is outside the transfer`);
  const count = manifest.entries.length;
  if (!Number.isSafeInteger(at.entry) || !Number.isSafeInteger(at.chunk) || at.entry < 0 || at.chunk < 0) throw outside();
  if (at.entry > count || (at.entry === count && at.chunk !== 0)) throw outside();
  let before = 0;
  for (const e of manifest.entries.slice(0, at.entry)) if (e.kind !== "Dir") before += e.kind.File.size;
  const kind = manifest.entries[at.entry]?.kind;
  if (kind === undefined || kind === "Dir") {
    if (at.chunk !== 0) throw outside();
    return before;
  }
  if (at.chunk * 32 > kind.File.chunks.length) throw outside();
  return before + Math.min(at.chunk * manifest.chunk_size, kind.File.size);
}

/** The position after the verified chunk `chunk` of `entry`: where a later offer resumes once it is kept. */
export function cursorAfter(manifest: Manifest, entry: number, chunk: number): Cursor {
  const kind = manifest.entries[entry]?.kind;
  const chunks = kind === undefined || kind === "Dir" ? 0 : kind.File.chunks.length / 32;
  return chunk + 1 < chunks ? { entry, chunk: chunk + 1 } : { entry: entry + 1, chunk: 0 };
}

/**
 * The sender's side (sans-IO, as the Rust `Sending`): the chunks to read and send,
 * in manifest order, from the receiver's resume point. A resume point outside the
 * manifest is a `Transfer`/`Protocol` error.
 */
export class ChunkSending {
  private next: ChunkRef | undefined;
  private sent: number;
  /** Bytes the receiver had before this attempt (skipped). */
  readonly resumed: number;

  constructor(
    readonly manifest: Manifest,
    from: Cursor,
  ) {
    this.resumed = this.sent = bytesBefore(manifest, from);
    this.next = chunkAt(manifest, from);
  }

  /** The next chunk to read and send (`undefined`: all sent). Check the bytes read with {@link checkChunk}. */
  nextChunk(): ChunkRef | undefined {
    const chunk = this.next;
    if (!chunk) return undefined;
    this.next = chunkAt(this.manifest, { entry: chunk.entry, chunk: chunk.chunk + 1 });
    this.sent += chunk.length;
    return chunk;
  }

  /** Whether every chunk was handed out. */
  get done(): boolean {
    return this.next === undefined;
  }

  /** Bytes handed out, plus those the receiver already had. */
  get sentBytes(): number {
    return this.sent;
  }
}

/**
 * Checks bytes read for `chunk` against its length and hash: a file that changed since
 * its manifest was made must not go out under the old hash (`ChunkMismatch`).
 */
export function checkChunk(chunk: ChunkRef, bytes: Uint8Array): void {
  if (bytes.length !== chunk.length || !equal(blake3(bytes), chunk.hash)) {
    throw transferError("ChunkMismatch", `entry ${chunk.entry} changed since it was read: chunk ${chunk.chunk} differs`);
  }
}

/** What a sender offers: a directory, or a file whose bytes `read` gives. */
export type SourceEntry =
  | { path: string; dir: true }
  | {
      path: string;
      size: number;
      executable?: boolean;
      /** `length` bytes from `offset` (both within the file). */
      read(offset: number, length: number): Promise<Uint8Array>;
    };

/**
 * The manifest of `sources` (in their order; a file's bytes go in the order of the
 * entries): each file read once, chunk by chunk, and every chunk hashed; the result
 * passes {@link validateManifest}. Holds one chunk at a time.
 */
export async function buildManifest(sources: readonly SourceEntry[], chunkSize = DEFAULT_TRANSFER_CHUNK_SIZE): Promise<Manifest> {
  const entries: ManifestEntry[] = [];
  for (const source of sources) {
    if ("dir" in source) {
      entries.push({ path: source.path, kind: "Dir" });
      continue;
    }
    if (!Number.isSafeInteger(source.size) || source.size < 0) throw transferError("BadManifest", `${JSON.stringify(source.path)}: size ${source.size}`);
    const count = Math.ceil(source.size / chunkSize);
    if (count > MAX_CHUNK_HASHES) throw transferError("BadManifest", `more than ${MAX_CHUNK_HASHES} chunk hashes`);
    const chunks = new Uint8Array(count * 32);
    for (let i = 0; i < count; i++) {
      const offset = i * chunkSize;
      const length = Math.min(chunkSize, source.size - offset);
      const bytes = await source.read(offset, length);
      if (bytes.length !== length) throw transferError("Source", `${JSON.stringify(source.path)} is shorter than its size`);
      chunks.set(blake3(bytes), i * 32);
    }
    entries.push({ path: source.path, kind: { File: { size: source.size, executable: source.executable ?? false, chunks } } });
  }
  return validateManifest({ chunk_size: chunkSize, entries });
}
