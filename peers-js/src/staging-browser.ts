/**
 * A receiver's staging in a browser (docs/protocol.md §9.4, §9.5.1): a
 * {@link ReceiveStore} over the origin private file system (OPFS,
 * `navigator.storage.getDirectory()`), so a page closed or reloaded mid-transfer and
 * opened again with the same code (the sender waits for it) resumes from what it had
 * verified, as the Node store (./staging-node.ts) and `peers receive` do. Keyed like
 * them by the manifest digest, with the same `resume` bytes:
 *
 * ```text
 * OPFS peers-staging/.peers-transfer-<the manifest digest's first 12 bytes, hex>/
 *   digest            the whole manifest digest, hex; rewritten at each open (its age is the staging's)
 *   resume            16 bytes, as the Node store's: two positions (entry, chunk, u32
 *                     big-endian), both the first chunk not kept yet (a segment is on
 *                     disk once closed, so what is written is kept)
 *   data/<entry>/<n>  segment n of entry <entry> (its index in the manifest): SEGMENT_BYTES
 *                     of the file from n × SEGMENT_BYTES (whole chunks)
 * ```
 *
 * A window has no in-place writes that survive the page: `createWritable` writes into
 * a swap file that is put in place only by `close()` (and copied whole when opened on
 * an existing file). So each segment is one writable, closed once its last chunk (or
 * the entry's last) is written, and `resume` is saved after that close: what `resume`
 * names is on disk, and a page closed mid-segment loses at most that segment's chunks
 * (they are sent again). Nothing is copied while the data arrives.
 *
 * `open` removes stagings not used for {@link STALE_AFTER_MS} (7 days: a later
 * `peers send` of the same files resumes from one, as in Rust, within that time),
 * checks the quota (`navigator.storage.estimate()`: the bytes still to come and one
 * segment for the final copy must fit, else `Transfer`/`NoSpace`, as the Rust
 * receiver's disk check). The estimate can promise more than the browser enforces
 * (Chromium reports a rounded quota: with the quota set to 16 MiB through DevTools it
 * still says 10 GB), so a write the quota refuses (`QuotaExceededError`) is `NoSpace`
 * too; what was kept stays for a later run with more room. `finish` writes each file into the save target the page set
 * with {@link OpfsStore.saveTo} (a directory the person picked, or a fresh one in OPFS
 * from which the page offers downloads) through {@link DirectorySink} (free top-level
 * names), deleting each segment once copied, then removes the staging. Where the
 * browser has no OPFS ({@link opfsAvailable} false) the page receives without a store,
 * as before: nothing is kept between visits.
 *
 * The sans-IO parts ({@link segmentOf}, {@link resumePoint}, {@link roomNeeded},
 * {@link staleStagings}) are tested in Node (test/staging-browser.test.ts); the store
 * itself in Chromium (tests/tests/peers_js_receive_page.rs).
 */
import { toHex } from "./bytes.js";
import { PeersError } from "./errors.js";
import { bytesBefore, Cursor, Manifest, ManifestEntry, manifestDigest, totalSize, transferError, VerifiedChunk } from "./manifest.js";
import { DirectorySink, SavedFile } from "./save-browser.js";
import { decodeResume, encodeResume, stagingName } from "./staging-node.js";
import type { ReceiveStore } from "./transfer.js";

/** The OPFS directory holding every staging. */
export const STAGING_ROOT = "peers-staging";

/** A segment's size, bytes (rounded down to whole chunks, at least one): at most this much is received again after a page closed. */
export const SEGMENT_BYTES = 8 << 20;

/** A staging not opened or written for this long is removed by the next `open`, ms (7 days). */
export const STALE_AFTER_MS = 7 * 24 * 3600_000;

/** At most this many stagings are looked at for staleness per `open`. */
const MAX_STAGINGS_SCANNED = 1000;

/** Chunks per segment for a manifest. */
export function chunksPerSegment(manifest: Manifest): number {
  return Math.max(1, Math.floor(SEGMENT_BYTES / manifest.chunk_size));
}

/** The segment chunk `chunk` (of any file entry) is in, and that segment's first byte in the file. */
export function segmentOf(manifest: Manifest, chunk: number): { index: number; start: number } {
  const per = chunksPerSegment(manifest);
  const index = Math.floor(chunk / per);
  return { index, start: index * per * manifest.chunk_size };
}

/**
 * Where a staging resumes: the saved position when it lies in the manifest (moved back
 * to its segment's start: a segment is written whole by one writable), else the start.
 */
export function resumePoint(manifest: Manifest, saved: Uint8Array | undefined): Cursor {
  const at = saved && decodeResume(saved)?.synced;
  if (!at) return { entry: 0, chunk: 0 };
  try {
    bytesBefore(manifest, at);
  } catch {
    return { entry: 0, chunk: 0 };
  }
  const per = chunksPerSegment(manifest);
  return { entry: at.entry, chunk: at.chunk - (at.chunk % per) };
}

/** Bytes the rest of a transfer needs in the origin's storage: what is still to come, plus one segment for the final copy (a segment is deleted once copied). */
export function roomNeeded(manifest: Manifest, from: Cursor): number {
  const total = totalSize(manifest);
  return total - bytesBefore(manifest, from) + Math.min(total, SEGMENT_BYTES);
}

/** The stagings to remove: those not `keep` whose last use is older than `maxAgeMs` (an unknown age counts as old). */
export function staleStagings(stagings: { name: string; usedAt: number | undefined }[], now: number, keep: string, maxAgeMs = STALE_AFTER_MS): string[] {
  return stagings.filter((s) => s.name !== keep && (s.usedAt === undefined || now - s.usedAt > maxAgeMs)).map((s) => s.name);
}

/** Whether this browser has the origin private file system (else the page receives without a store). */
export function opfsAvailable(): boolean {
  return typeof navigator !== "undefined" && typeof navigator.storage?.getDirectory === "function";
}

function ioError(what: string, cause: unknown): PeersError {
  if (cause instanceof PeersError) return cause;
  const detail = cause instanceof Error || cause instanceof DOMException ? cause.message : String(cause);
  // The quota the browser enforces can be below what `estimate()` said (Chromium reports a rounded quota).
  if (cause instanceof DOMException && cause.name === "QuotaExceededError") return transferError("NoSpace", `not enough room in the browser's storage: ${what}: ${detail}`);
  return transferError("Io", `${what}: ${detail}`);
}

/** A directory handle's child names (`keys()` is not in TypeScript's DOM types yet). */
async function childNames(dir: FileSystemDirectoryHandle, max: number): Promise<string[]> {
  const names: string[] = [];
  for await (const name of (dir as unknown as { keys(): AsyncIterable<string> }).keys()) {
    names.push(name);
    if (names.length >= max) break;
  }
  return names;
}

async function readFileBytes(dir: FileSystemDirectoryHandle, name: string): Promise<{ bytes: Uint8Array; modified: number } | undefined> {
  try {
    const file = await (await dir.getFileHandle(name)).getFile();
    return { bytes: new Uint8Array(await file.arrayBuffer()), modified: file.lastModified };
  } catch {
    return undefined;
  }
}

async function writeFileBytes(dir: FileSystemDirectoryHandle, name: string, bytes: Uint8Array): Promise<void> {
  const writable = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await writable.write(bytes as Uint8Array<ArrayBuffer>);
  await writable.close();
}

/** The segment being written: one writable, put in place by `close`, after which `next` is saved. */
interface OpenSegment {
  key: string;
  start: number;
  writable: FileSystemWritableFileStream;
  next: Cursor;
}

/** The browser's {@link ReceiveStore} over OPFS (see the module documentation). */
export class OpfsStore implements ReceiveStore {
  private root: FileSystemDirectoryHandle | undefined;
  private dir: FileSystemDirectoryHandle | undefined;
  private manifest: Manifest | undefined;
  private open_: OpenSegment | undefined;
  private target: FileSystemDirectoryHandle | undefined;
  /** After `finish`: the files as saved in the target, in manifest order. */
  saved: SavedFile[] = [];

  /** Where `finish` puts the files: a directory the person picked, or a fresh one in OPFS. */
  saveTo(target: FileSystemDirectoryHandle): void {
    this.target = target;
  }

  async open(manifest: Manifest): Promise<Cursor> {
    try {
      const root = (this.root = await (await navigator.storage.getDirectory()).getDirectoryHandle(STAGING_ROOT, { create: true }));
      const name = stagingName(manifestDigest(manifest));
      await this.removeStale(root, name);
      const dir = (this.dir = await root.getDirectoryHandle(name, { create: true }));
      this.manifest = manifest;
      const digest = toHex(manifestDigest(manifest));
      const kept = await readFileBytes(dir, "digest");
      let from: Cursor = { entry: 0, chunk: 0 };
      if (kept && new TextDecoder().decode(kept.bytes).trim() === digest) from = resumePoint(manifest, (await readFileBytes(dir, "resume"))?.bytes);
      else await dir.removeEntry("data", { recursive: true }).catch(() => undefined);
      const estimate = await navigator.storage.estimate();
      const needed = roomNeeded(manifest, from);
      if (estimate.quota !== undefined) {
        const available = Math.max(0, estimate.quota - (estimate.usage ?? 0));
        if (available < needed) throw transferError("NoSpace", `not enough room in the browser's storage: ${needed} bytes needed, ${available} available`);
      }
      await writeFileBytes(dir, "digest", new TextEncoder().encode(digest));
      await dir.getDirectoryHandle("data", { create: true });
      return from;
    } catch (err) {
      throw ioError("opening the staging in the origin private file system", err);
    }
  }

  private async removeStale(root: FileSystemDirectoryHandle, keep: string): Promise<void> {
    const stagings = [];
    for (const name of await childNames(root, MAX_STAGINGS_SCANNED)) {
      if (name === keep) continue;
      const dir = await root.getDirectoryHandle(name).catch(() => undefined);
      const used = dir && (await Promise.all(["resume", "digest"].map((f) => readFileBytes(dir, f)))).map((r) => r?.modified ?? 0);
      stagings.push({ name, usedAt: used && Math.max(...used) > 0 ? Math.max(...used) : undefined });
    }
    for (const name of staleStagings(stagings, Date.now(), keep)) await root.removeEntry(name, { recursive: true }).catch(() => undefined);
  }

  /** Closes the open segment (its bytes go in place) and saves the position after it. */
  private async commit(): Promise<void> {
    const open = this.open_;
    this.open_ = undefined;
    if (!open) return;
    await open.writable.close();
    await writeFileBytes(this.dir!, "resume", encodeResume(open.next));
  }

  async write(entry: ManifestEntry, chunk: VerifiedChunk, next: Cursor): Promise<void> {
    const manifest = this.manifest;
    const dir = this.dir;
    if (!manifest || !dir) throw transferError("Protocol", "a chunk before the staging was opened");
    try {
      const segment = segmentOf(manifest, chunk.chunk);
      const key = `${chunk.entry}/${segment.index}`;
      if (this.open_?.key !== key) {
        await this.commit();
        const entryDir = await (await dir.getDirectoryHandle("data")).getDirectoryHandle(String(chunk.entry), { create: true });
        const file = await entryDir.getFileHandle(String(segment.index), { create: true });
        this.open_ = { key, start: segment.start, writable: await file.createWritable({ keepExistingData: false }), next };
      }
      const open = this.open_!;
      await open.writable.write({ type: "write", position: chunk.offset - open.start, data: chunk.bytes as Uint8Array<ArrayBuffer> });
      open.next = next;
      // The segment's last chunk, or the entry's: in place now, and the position saved.
      if ((chunk.chunk + 1) % chunksPerSegment(manifest) === 0 || next.entry !== chunk.entry) await this.commit();
    } catch (err) {
      throw ioError(`keeping a chunk of ${entry.path}`, err);
    }
  }

  async finish(manifest: Manifest): Promise<string[]> {
    const dir = this.dir;
    const target = this.target;
    if (!dir) throw transferError("Protocol", "finish before the staging was opened");
    if (!target) throw transferError("Save", "no save target was set (OpfsStore.saveTo)");
    const sink = new DirectorySink(target);
    try {
      await this.commit();
      const data = await dir.getDirectoryHandle("data");
      for (const [index, entry] of manifest.entries.entries()) {
        if (entry.kind === "Dir" || entry.kind.File.size === 0) continue;
        const size = entry.kind.File.size;
        const entryDir = await data.getDirectoryHandle(String(index), { create: true });
        const { index: last } = segmentOf(manifest, entry.kind.File.chunks.length / 32 - 1);
        const span = chunksPerSegment(manifest) * manifest.chunk_size;
        let offset = 0;
        for (let n = 0; n <= last; n++) {
          const expected = Math.min(size - offset, span);
          const segment = await entryDir.getFileHandle(String(n)).then((h) => h.getFile(), () => undefined);
          if (segment?.size !== expected) throw transferError("Io", `the staged data of ${entry.path} is incomplete (segment ${n}: ${segment?.size ?? 0} of ${expected} bytes)`);
          const reader = segment.stream().getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            await sink.sink(entry, { entry: index, chunk: 0, offset, bytes: value });
            offset += value.length;
          }
          await entryDir.removeEntry(String(n));
        }
      }
      this.saved = await sink.finish(manifest);
    } catch (err) {
      await sink.abort();
      // Staged data that does not add up is not resumed from: the next run starts over.
      if (err instanceof PeersError && err.code === "Io") await this.root?.removeEntry(dir.name, { recursive: true }).catch(() => undefined);
      throw ioError("saving the received files", err);
    }
    await this.root?.removeEntry(dir.name, { recursive: true }).catch(() => undefined);
    return [...new Set(this.saved.map((f) => f.path.split("/")[0]!))];
  }

  /** On a failure: closes the open segment without putting it in place (its chunks come again). */
  async abort(): Promise<void> {
    const open = this.open_;
    this.open_ = undefined;
    await open?.writable.abort().catch(() => undefined);
  }
}
