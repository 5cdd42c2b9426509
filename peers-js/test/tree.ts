// The tree the send tests offer (./send.test.ts, ./send-live.test.ts): two directories,
// a file of three chunks (the last short), an empty one, one of a whole chunk, one of 10 bytes.
import { blobSource, MIN_CHUNK_SIZE, PeersError, SourceEntry } from "../src/index.js";

export const CHUNK = MIN_CHUNK_SIZE;
export const refused = (kind: string, code: string) => (err: unknown) => err instanceof PeersError && err.kind === kind && err.code === code;

function bytes(len: number, seed: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(len).map((_, i) => (i * 31 + seed * 7 + (i >> 9)) & 0xff);
}

export const files: Record<string, Uint8Array<ArrayBuffer>> = { "top/a": bytes(CHUNK * 2 + 100, 1), "top/empty": new Uint8Array(0), "top/sub/b": bytes(CHUNK, 2), "top/c": bytes(10, 3) };
export const sources: SourceEntry[] = [
  { path: "top", dir: true },
  blobSource("top/a", new Blob([files["top/a"]!])),
  blobSource("top/empty", new Blob([])),
  { path: "top/sub", dir: true },
  blobSource("top/sub/b", new Blob([files["top/sub/b"]!])),
  blobSource("top/c", new Blob([files["top/c"]!])),
];

