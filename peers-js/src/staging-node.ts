/**
 * A receiver's staging on disk, for Node (docs/protocol.md §9.4): a {@link ReceiveStore}
 * that keeps each verified chunk so `receiveByCode` run again with the same code
 * resumes from the first chunk it lacks. The layout is the Rust receiver's
 * (peers-device `transfer/exchange.rs`), so either can resume what the other kept:
 *
 * ```text
 * OUT/.peers-transfer-<the manifest digest's first 12 bytes, hex>/
 *   resume       16 bytes, two positions, each entry and chunk (u32 big-endian):
 *                0..8, the first chunk not written yet, written in place after each
 *                chunk's bytes and not synced (a rename per chunk costs milliseconds on
 *                ext4, as long as receiving a chunk); 8..16, the first chunk not known
 *                to be on the disk, written at a checkpoint (every CHECKPOINT_BYTES)
 *                after the data before it was synced, and synced itself
 *   digest       the whole manifest digest, hex (peers-js only): a staging of another manifest is discarded
 *   data/<path>  the entries as they fill
 * ```
 *
 * A reopened staging resumes from the synced position, plus the chunks after it (up to
 * the written one) that still match their hashes when read back: all of them after a
 * process killed mid-way, up to the first the disk lost after a crash of the machine.
 * An 8-byte `resume` (an earlier receiver) is a written position with nothing synced.
 * A saved position that does not fit the manifest starts over. Once every chunk is
 * kept, each top-level entry moves into OUT under a free name (`name (1).ext`, nothing
 * existing is replaced), executable files get their mode, and the staging is removed.
 * A staging of other files in the same directory is left alone (a later offer of
 * those files resumes there, as in Rust); with an explicit `stagingDir`, a staging of
 * another manifest found there is discarded. Node only: it imports `node:fs` when
 * called (a browser keeps nothing between runs).
 */
import { toHex } from "./bytes.js";
import { bytesBefore, checkChunk, ChunkSending, Cursor, cursorAfter, Manifest, ManifestEntry, manifestDigest, transferError, VerifiedChunk } from "./manifest.js";
import type { ReceiveStore } from "./transfer.js";

type Fs = typeof import("node:fs/promises");
type FileHandle = Awaited<ReturnType<Fs["open"]>>;

/** The staging directory's name for a manifest digest (as the Rust `Staging::dir_name`). */
export function stagingName(digest: Uint8Array): string {
  return `.peers-transfer-${toHex(digest.subarray(0, 12))}`;
}

/** Bytes received between two checkpoints of the Node store (as the Rust receiver's): at most this much is read back when a staging is reopened. */
export const CHECKPOINT_BYTES = 64 * 1024 * 1024;

/** The two positions of a `resume` file. */
export interface SavedPositions {
  /** The first chunk not written yet. */
  written: Cursor;
  /** The first chunk not known to be on the disk (every chunk before it was synced). */
  synced: Cursor;
}

/** The `resume` file's 16 bytes for the position `written` and the checkpoint `synced` (default: the same). */
export function encodeResume(written: Cursor, synced: Cursor = written): Uint8Array {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  [written, synced].forEach((at, i) => {
    view.setUint32(i * 8, at.entry);
    view.setUint32(i * 8 + 4, at.chunk);
  });
  return out;
}

/** Whether `a` is at or before `b`. */
const atOrBefore = (a: Cursor, b: Cursor) => a.entry < b.entry || (a.entry === b.entry && a.chunk <= b.chunk);

/**
 * A `resume` file's positions: of 16 bytes, or of 8 (an earlier receiver: written,
 * nothing synced); `undefined` for any other length. A synced position after the
 * written one (a damaged file) counts as nothing synced.
 */
export function decodeResume(bytes: Uint8Array): SavedPositions | undefined {
  if (bytes.length !== 8 && bytes.length !== 16) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const at = (i: number): Cursor => ({ entry: view.getUint32(i), chunk: view.getUint32(i + 4) });
  const written = at(0);
  const start = { entry: 0, chunk: 0 };
  const synced = bytes.length === 16 ? at(8) : start;
  return { written, synced: atOrBefore(synced, written) ? synced : start };
}

/** `name (n).ext` for the n-th free name (n ≥ 1), the extension kept as the Rust `free_name` does. */
function numbered(name: string, n: number): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}

export interface DirectoryStoreOptions {
  /** The staging directory; default `OUT/.peers-transfer-<digest>` (the Rust receiver's). */
  stagingDir?: string;
  /** Bytes between two checkpoints (default {@link CHECKPOINT_BYTES}): each costs a sync of the data and of `resume`. */
  checkpointBytes?: number;
}

/** A {@link ReceiveStore} writing into `outDir` through a staging directory (see the module documentation). */
export function directoryStore(outDir: string, options: DirectoryStoreOptions = {}): ReceiveStore & { staging(manifest: Manifest): string } {
  let fs: Fs | undefined;
  const load = async () => (fs ??= await import("node:fs/promises"));
  const join = (...parts: string[]) => parts.join("/");
  const staging = (manifest: Manifest) => options.stagingDir ?? join(outDir, stagingName(manifestDigest(manifest)));
  let open: { entry: number; file: FileHandle } | undefined;
  /** The staging of the manifest being received (set by `open`). */
  let current: string | undefined;
  /** Its `resume` file, open for the transfer. */
  let resume: FileHandle | undefined;
  /** The last checkpoint, and the bytes written since. */
  let synced: Cursor = { entry: 0, chunk: 0 };
  let unsynced = 0;
  const closeResume = async () => {
    const r = resume;
    resume = undefined;
    await r?.close();
  };
  const closeOpen = async (sync: boolean) => {
    const o = open;
    open = undefined;
    if (o) {
      if (sync) await o.file.sync();
      await o.file.close();
    }
  };

  return {
    staging,

    async open(manifest: Manifest): Promise<Cursor> {
      const fs = await load();
      const dir = staging(manifest);
      current = dir;
      const digest = toHex(manifestDigest(manifest));
      const kept = await fs.readFile(join(dir, "digest"), "utf8").catch(() => undefined);
      if (kept !== undefined && kept.trim() !== digest) await fs.rm(dir, { recursive: true, force: true });
      await fs.mkdir(join(dir, "data"), { recursive: true });
      await fs.writeFile(join(dir, "digest"), digest);
      let from: Cursor = { entry: 0, chunk: 0 };
      const saved = await fs.readFile(join(dir, "resume")).catch(() => undefined);
      const positions = saved && decodeResume(new Uint8Array(saved));
      let written = from;
      if (positions) {
        try {
          bytesBefore(manifest, positions.synced);
          bytesBefore(manifest, positions.written);
          ({ synced: from, written } = positions);
        } catch {
          // A position outside this manifest (a damaged file): start over.
        }
      }
      for (const entry of manifest.entries) {
        const path = join(dir, "data", entry.path);
        if (entry.kind === "Dir") await fs.mkdir(path, { recursive: true });
        else {
          await fs.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
          await (await fs.open(path, "a")).close();
        }
      }
      synced = from;
      ({ at: from, bytes: unsynced } = await readBack(fs, manifest, join(dir, "data"), from, written));
      await closeResume();
      resume = await fs.open(join(dir, "resume"), saved ? "r+" : "w+");
      // A longer file (damaged) would not read back as positions.
      await resume.truncate(16);
      await resume.write(encodeResume(from, synced), 0, 16, 0);
      return from;
    },

    async write(entry: ManifestEntry, chunk: VerifiedChunk, next: Cursor): Promise<void> {
      const fs = await load();
      const dir = current;
      if (dir === undefined) throw transferError("Protocol", "a chunk before the staging was opened");
      if (open?.entry !== chunk.entry) {
        await closeOpen(true);
        open = { entry: chunk.entry, file: await fs.open(join(dir, "data", entry.path), "r+") };
      }
      await open.file.write(chunk.bytes, 0, chunk.bytes.length, chunk.offset);
      if (resume === undefined) throw transferError("Protocol", "a chunk before the staging was opened");
      unsynced += chunk.bytes.length;
      const checkpoint = unsynced >= (options.checkpointBytes ?? CHECKPOINT_BYTES);
      if (checkpoint) {
        // Files before this one were synced when the store moved on from them.
        await open.file.datasync();
        synced = next;
        unsynced = 0;
      }
      await resume.write(encodeResume(next, synced), 0, 16, 0);
      if (checkpoint) await resume.datasync();
    },

    async finish(manifest: Manifest): Promise<string[]> {
      const fs = await load();
      await closeOpen(true);
      await closeResume();
      const dir = staging(manifest);
      const stored: string[] = [];
      for (const entry of manifest.entries) {
        if (entry.kind !== "Dir" && entry.kind.File.executable) await fs.chmod(join(dir, "data", entry.path), 0o755).catch(() => undefined);
      }
      for (const entry of manifest.entries.filter((e) => !e.path.includes("/"))) {
        let name = entry.path;
        for (let n = 1; await fs.lstat(join(outDir, name)).then(() => true, () => false); n++) {
          if (n > 1000) throw transferError("Io", `no free name for ${entry.path} in the output directory`);
          name = numbered(entry.path, n);
        }
        await fs.rename(join(dir, "data", entry.path), join(outDir, name));
        stored.push(name);
      }
      await fs.rm(dir, { recursive: true, force: true });
      return stored;
    },

    async discard(manifest: Manifest): Promise<void> {
      const fs = await load();
      await closeOpen(false);
      await closeResume();
      await fs.rm(staging(manifest), { recursive: true, force: true });
    },
  };
}

/**
 * Reads back the chunks from `from` up to `written` from the staged files under `data`,
 * checking each against its hash; returns the position after the last that matched, and
 * the bytes read back (at most a checkpoint's worth).
 */
async function readBack(fs: Fs, manifest: Manifest, data: string, from: Cursor, written: Cursor): Promise<{ at: Cursor; bytes: number }> {
  const order = new ChunkSending(manifest, from);
  let at = from;
  let bytes = 0;
  let open: { entry: number; file: FileHandle } | undefined;
  try {
    for (let chunk = order.nextChunk(); chunk && !atOrBefore(written, { entry: chunk.entry, chunk: chunk.chunk }); chunk = order.nextChunk()) {
      if (open?.entry !== chunk.entry) {
        await open?.file.close();
        open = undefined;
        const file = await fs.open(`${data}/${manifest.entries[chunk.entry]!.path}`, "r").catch(() => undefined);
        if (!file) break;
        open = { entry: chunk.entry, file };
      }
      const buffer = new Uint8Array(chunk.length);
      const { bytesRead } = await open.file.read(buffer, 0, chunk.length, chunk.offset);
      try {
        if (bytesRead !== chunk.length) break;
        checkChunk(chunk, buffer);
      } catch {
        break;
      }
      at = cursorAfter(manifest, chunk.entry, chunk.chunk);
      bytes += chunk.length;
    }
  } finally {
    await open?.file.close();
  }
  return { at, bytes };
}
