/**
 * A receiver's staging on disk, for Node (docs/protocol.md §9.4): a {@link ReceiveStore}
 * that keeps each verified chunk so `receiveByCode` run again with the same code
 * resumes from the first chunk it lacks. The layout is the Rust receiver's
 * (peers-device `transfer/exchange.rs`), so either can resume what the other kept:
 *
 * ```text
 * OUT/.peers-transfer-<the manifest digest's first 12 bytes, hex>/
 *   resume       8 bytes: entry, chunk (u32 big-endian): the first chunk not kept yet,
 *                written in place after each chunk's bytes (a rename per chunk costs
 *                milliseconds on ext4, as long as receiving a chunk)
 *   digest       the whole manifest digest, hex (peers-js only): a staging of another manifest is discarded
 *   data/<path>  the entries as they fill
 * ```
 *
 * A saved position that does not fit the manifest starts over. Once every chunk is
 * kept, each top-level entry moves into OUT under a free name (`name (1).ext`, nothing
 * existing is replaced), executable files get their mode, and the staging is removed.
 * A staging of other files in the same directory is left alone (a later offer of
 * those files resumes there, as in Rust); with an explicit `stagingDir`, a staging of
 * another manifest found there is discarded. Node only: it imports `node:fs` when
 * called (a browser keeps nothing between runs).
 */
import { toHex } from "./bytes.js";
import { bytesBefore, Cursor, Manifest, ManifestEntry, manifestDigest, transferError, VerifiedChunk } from "./manifest.js";
import type { ReceiveStore } from "./transfer.js";

type Fs = typeof import("node:fs/promises");
type FileHandle = Awaited<ReturnType<Fs["open"]>>;

/** The staging directory's name for a manifest digest (as the Rust `Staging::dir_name`). */
export function stagingName(digest: Uint8Array): string {
  return `.peers-transfer-${toHex(digest.subarray(0, 12))}`;
}

/** The `resume` file's bytes for `at`. */
export function encodeResume(at: Cursor): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, at.entry);
  view.setUint32(4, at.chunk);
  return out;
}

/** A `resume` file's position, or `undefined` when it is not 8 bytes. */
export function decodeResume(bytes: Uint8Array): Cursor | undefined {
  if (bytes.length !== 8) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, 8);
  return { entry: view.getUint32(0), chunk: view.getUint32(4) };
}

/** `name (n).ext` for the n-th free name (n ≥ 1), the extension kept as the Rust `free_name` does. */
function numbered(name: string, n: number): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
}

export interface DirectoryStoreOptions {
  /** The staging directory; default `OUT/.peers-transfer-<digest>` (the Rust receiver's). */
  stagingDir?: string;
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
      const at = saved && decodeResume(new Uint8Array(saved));
      if (at) {
        try {
          bytesBefore(manifest, at);
          from = at;
        } catch {
          // A position outside this manifest (a damaged file): start over.
        }
      }
      await closeResume();
      resume = await fs.open(join(dir, "resume"), saved ? "r+" : "w+");
      // A longer file (damaged) would not read back as a position.
      await resume.truncate(8);
      await resume.write(encodeResume(from), 0, 8, 0);
      for (const entry of manifest.entries) {
        const path = join(dir, "data", entry.path);
        if (entry.kind === "Dir") await fs.mkdir(path, { recursive: true });
        else {
          await fs.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
          await (await fs.open(path, "a")).close();
        }
      }
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
      await resume.write(encodeResume(next), 0, 8, 0);
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
