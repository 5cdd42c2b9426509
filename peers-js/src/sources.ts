/**
 * What `sendByCode` reads from: {@link SourceEntry} lists made from a browser's `File`s
 * ({@link blobSources}) or from paths on a Node disk ({@link nodeSources}, which loads
 * `node:fs` only when called, so browser bundles never import it).
 */
import { SourceEntry, transferError } from "./manifest.js";

/** A file given as a `Blob` (a browser `File`, or Node's `Blob`), sent under `path`. */
export function blobSource(path: string, blob: Blob): SourceEntry {
  return {
    path,
    size: blob.size,
    read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
  };
}

/**
 * Files a person picked (an `<input type=file multiple>`'s `File`s, or a folder's with
 * their `webkitRelativePath`): each file under its relative path (or its name), and
 * the directories those paths name listed before their files.
 */
export function blobSources(files: Iterable<File>): SourceEntry[] {
  const out: SourceEntry[] = [];
  const dirs = new Set<string>();
  for (const file of files) {
    const path = (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name;
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!dirs.has(dir)) {
        dirs.add(dir);
        out.push({ path: dir, dir: true });
      }
    }
    out.push(blobSource(path, file));
  }
  return out;
}

/** What {@link nodeSources} found: the entries, and what it left out. */
export interface NodeSources {
  entries: SourceEntry[];
  /** Symbolic links and special files (never followed or sent), and names that are not UTF-8-safe. */
  skipped: string[];
}

/**
 * Scans `paths` on this disk as `peers send` does: each becomes a top-level entry named
 * by its last component, a directory brings its whole tree in name order, symbolic
 * links are never followed, and they and anything that is not a regular file or a
 * directory are skipped. The owner's execute bit travels.
 */
export async function nodeSources(paths: readonly string[]): Promise<NodeSources> {
  const fs = await import("node:fs/promises");
  const { basename, join } = await import("node:path");
  const out: NodeSources = { entries: [], skipped: [] };
  const add = async (local: string, name: string): Promise<void> => {
    const meta = await fs.lstat(local);
    if (meta.isDirectory()) {
      out.entries.push({ path: name, dir: true });
      const children = (await fs.readdir(local)).sort();
      for (const child of children) await add(join(local, child), `${name}/${child}`);
    } else if (meta.isFile()) {
      out.entries.push({
        path: name,
        size: meta.size,
        executable: (meta.mode & 0o100) !== 0,
        read: async (offset, length) => {
          const file = await fs.open(local, "r");
          try {
            const bytes = new Uint8Array(length);
            let at = 0;
            while (at < length) {
              const { bytesRead } = await file.read(bytes, at, length - at, offset + at);
              if (bytesRead === 0) break;
              at += bytesRead;
            }
            return bytes.subarray(0, at);
          } finally {
            await file.close();
          }
        },
      });
    } else {
      out.skipped.push(local);
    }
  };
  const names = new Set<string>();
  for (const path of paths) {
    const name = basename(path);
    if (names.has(name)) throw transferError("BadManifest", `two arguments are named ${JSON.stringify(name)}`);
    names.add(name);
    await add(path, name);
  }
  return out;
}
