/**
 * Saving a received transfer in a browser: a {@link ReceiveOptions} sink that writes
 * each verified chunk into a `FileSystemDirectoryHandle`, as the chunks arrive (never
 * the whole transfer in memory). The directory is either one the person picked with
 * the File System Access API (`showDirectoryPicker`, where the browser offers it: it
 * needs a click), or a fresh directory in the origin private file system (OPFS,
 * `navigator.storage.getDirectory()`, every current browser), from which the page then
 * offers each file as a download: a disk-backed `File`, so a large file is not held in
 * memory either.
 *
 * The manifest's paths were checked by `validateManifest` (relative, no `..`, no
 * control characters). A top-level entry whose name is taken in the directory is
 * saved as `name (1).ext` … `name (999).ext`, as `peers receive` does, so nothing
 * already there is replaced. One file is open for writing at a time; Chromium writes
 * it to a swap file and puts it in place when it is closed after its last chunk.
 */
import { PeersError } from "./errors.js";
import { Manifest, ManifestEntry, VerifiedChunk } from "./manifest.js";

/** The File System Access API's directory picker, where the browser has it (not in TypeScript's DOM types). */
type DirectoryPicker = (options?: { mode?: "read" | "readwrite"; id?: string }) => Promise<FileSystemDirectoryHandle>;

/** At most this many ` (n)` suffixes are tried for a taken name. */
const MAX_RENAMES = 999;

function saveError(what: string, cause: unknown): PeersError {
  const detail = cause instanceof Error || cause instanceof DOMException ? cause.message : String(cause);
  return new PeersError("Transfer", "Save", `saving ${what}: ${detail}`);
}

/** Whether this browser lets the person pick a directory to save into. */
export function canPickDirectory(): boolean {
  return typeof (globalThis as { showDirectoryPicker?: unknown }).showDirectoryPicker === "function";
}

/** Asks the person for a directory (call it from a click handler). */
export async function pickDirectory(): Promise<FileSystemDirectoryHandle> {
  const picker = (globalThis as { showDirectoryPicker?: DirectoryPicker }).showDirectoryPicker;
  if (!picker) throw new PeersError("Transfer", "Save", "this browser has no directory picker");
  try {
    return await picker({ mode: "readwrite", id: "peers-receive" });
  } catch (err) {
    throw saveError("the directory choice", err);
  }
}

/**
 * A fresh directory in the origin private file system, `peers-receive/<name>`, emptied
 * first if a previous visit left one of that name.
 */
export async function privateDirectory(name: string): Promise<FileSystemDirectoryHandle> {
  try {
    const root = await (await navigator.storage.getDirectory()).getDirectoryHandle("peers-receive", { create: true });
    await root.removeEntry(name, { recursive: true }).catch(() => undefined);
    return await root.getDirectoryHandle(name, { create: true });
  } catch (err) {
    throw saveError("in the origin private file system", err);
  }
}

async function exists(dir: FileSystemDirectoryHandle, name: string): Promise<boolean> {
  for (const get of [() => dir.getFileHandle(name), () => dir.getDirectoryHandle(name)]) {
    try {
      await get();
      return true;
    } catch (err) {
      if (!(err instanceof DOMException) || (err.name !== "NotFoundError" && err.name !== "TypeMismatchError")) throw err;
    }
  }
  return false;
}

/** `name`, or `stem (n).ext` for the first n that is free in `dir`. */
async function freeName(dir: FileSystemDirectoryHandle, name: string): Promise<string> {
  if (!(await exists(dir, name))) return name;
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  for (let n = 1; n <= MAX_RENAMES; n++) {
    const candidate = `${stem} (${n})${ext}`;
    if (!(await exists(dir, candidate))) return candidate;
  }
  throw new PeersError("Transfer", "Save", `${name} and ${MAX_RENAMES} renamed copies exist already`);
}

/** A file the sink wrote: its path as saved (after a rename of its top-level name). */
export interface SavedFile {
  path: string;
  size: number;
  handle: FileSystemFileHandle;
}

/**
 * Writes a transfer into `root` chunk by chunk: `sink` for {@link receiveByCode},
 * `finish(manifest)` once it resolved (creates the directories and the empty files
 * that carry no chunk, closes what is open) and returns every saved file.
 */
export class DirectorySink {
  private readonly renamed = new Map<string, string>();
  private readonly dirs = new Map<string, FileSystemDirectoryHandle>();
  private readonly saved = new Map<string, SavedFile>();
  private open: { path: string; writable: FileSystemWritableFileStream } | undefined;

  constructor(readonly root: FileSystemDirectoryHandle) {}

  /** The saved path of a manifest path: its top-level name made free in `root`. */
  private async savedPath(path: string): Promise<string> {
    const slash = path.indexOf("/");
    const top = slash < 0 ? path : path.slice(0, slash);
    let name = this.renamed.get(top);
    if (name === undefined) {
      if (this.renamed.size >= 100_000) throw new PeersError("Transfer", "Save", "too many top-level entries");
      name = await freeName(this.root, top);
      this.renamed.set(top, name);
    }
    return slash < 0 ? name : name + path.slice(slash);
  }

  private async directory(parts: string[]): Promise<FileSystemDirectoryHandle> {
    let dir = this.root;
    let at = "";
    for (const part of parts) {
      at = at ? `${at}/${part}` : part;
      let next = this.dirs.get(at);
      if (!next) {
        next = await dir.getDirectoryHandle(part, { create: true });
        this.dirs.set(at, next);
      }
      dir = next;
    }
    return dir;
  }

  private async file(path: string, size: number): Promise<SavedFile> {
    const known = this.saved.get(path);
    if (known) return known;
    const parts = path.split("/");
    const name = parts.pop()!;
    const handle = await (await this.directory(parts)).getFileHandle(name, { create: true });
    const file = { path, size, handle };
    this.saved.set(path, file);
    return file;
  }

  private async closeOpen(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    if (open) await open.writable.close();
  }

  /** The sink: writes `chunk` at its offset; the file is closed after its last chunk. */
  readonly sink = async (entry: ManifestEntry, chunk: VerifiedChunk): Promise<void> => {
    if (entry.kind === "Dir") return;
    const size = entry.kind.File.size;
    try {
      const path = await this.savedPath(entry.path);
      if (this.open?.path !== path) {
        await this.closeOpen();
        const file = await this.file(path, size);
        this.open = { path, writable: await file.handle.createWritable({ keepExistingData: chunk.offset > 0 }) };
      }
      await this.open.writable.write({ type: "write", position: chunk.offset, data: chunk.bytes as Uint8Array<ArrayBuffer> });
      if (chunk.offset + chunk.bytes.length >= size) await this.closeOpen();
    } catch (err) {
      throw err instanceof PeersError ? err : saveError(entry.path, err);
    }
  };

  /** After the transfer: directories and empty files made, the open file closed; the saved files in manifest order. */
  async finish(manifest: Manifest): Promise<SavedFile[]> {
    try {
      await this.closeOpen();
      const files: SavedFile[] = [];
      for (const entry of manifest.entries) {
        const path = await this.savedPath(entry.path);
        if (entry.kind === "Dir") {
          await this.directory(path.split("/"));
          continue;
        }
        files.push(await this.file(path, entry.kind.File.size));
      }
      return files;
    } catch (err) {
      throw err instanceof PeersError ? err : saveError("the transfer", err);
    }
  }

  /** On a failure: closes the file being written (`abort`: its swap file is dropped). */
  async abort(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    await open?.writable.abort().catch(() => undefined);
  }
}
