// The receiving side of a transfer without I/O (src/transfer.ts): the manifest's
// bounds and ChunkCutter's per-chunk checks, pause and resume.
import assert from "node:assert/strict";
import { test } from "node:test";

import { blake3 } from "@noble/hashes/blake3.js";

import { ChunkCutter, concat, Manifest, PeersError, validateManifest } from "../src/index.js";

const CHUNK = 16 * 1024;
const refused = (code: string) => (err: unknown) => err instanceof PeersError && err.kind === "Transfer" && err.code === code;

function file(path: string, data: Uint8Array): Manifest["entries"][number] {
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += CHUNK) chunks.push(blake3(data.subarray(at, at + CHUNK)));
  return { path, kind: { File: { size: data.length, executable: false, chunks: concat(...chunks) } } };
}

const a = new Uint8Array(CHUNK * 2 + 100).map((_, i) => (i * 31) & 0xff);
const b = new Uint8Array(CHUNK).map((_, i) => (i * 7 + 3) & 0xff);
const manifest: Manifest = { chunk_size: CHUNK, entries: [{ path: "d", kind: "Dir" }, file("d/a", a), file("d/empty", new Uint8Array(0)), file("d/b", b)] };

test("chunks come out verified, in order, across odd piece boundaries", () => {
  const cutter = new ChunkCutter(validateManifest(manifest));
  const all = concat(a, b);
  const got = [];
  for (let at = 0; at < all.length; at += 5000) got.push(...cutter.push(all.subarray(at, at + 5000)));
  cutter.end();
  assert.ok(cutter.complete);
  assert.deepEqual(got.map((c) => [c.entry, c.chunk, c.offset, c.bytes.length]), [[1, 0, 0, CHUNK], [1, 1, CHUNK, CHUNK], [1, 2, 2 * CHUNK, 100], [3, 0, 0, CHUNK]]);
});

test("a pause at a chunk boundary resumes from the cursor; a tampered chunk, extra bytes or a cut chunk fail", () => {
  const cutter = new ChunkCutter(manifest);
  cutter.push(a.subarray(0, CHUNK));
  cutter.end();
  assert.deepEqual(cutter.cursor, { entry: 1, chunk: 1 });
  const resumed = new ChunkCutter(manifest, cutter.cursor);
  resumed.push(concat(a.subarray(CHUNK), b));
  assert.ok(resumed.complete);
  assert.throws(() => resumed.push(Uint8Array.of(1)), refused("Protocol"), "bytes after the last chunk");

  const tampered = a.slice();
  tampered[CHUNK + 5] = tampered[CHUNK + 5]! ^ 1;
  assert.throws(() => new ChunkCutter(manifest).push(tampered), refused("ChunkMismatch"));
  const cut = new ChunkCutter(manifest);
  cut.push(a.subarray(0, 10));
  assert.throws(() => cut.end(), refused("Protocol"), "ended inside a chunk");
});

test("manifests outside the bounds are refused", () => {
  const bad: unknown[] = [
    null,
    { ...manifest, chunk_size: 1024 },
    { ...manifest, chunk_size: 8 << 20 },
    { ...manifest, entries: [{ path: "../x", kind: "Dir" }] },
    { ...manifest, entries: [{ path: "/abs", kind: "Dir" }] },
    { ...manifest, entries: [{ path: "a\u0000b", kind: "Dir" }] },
    { ...manifest, entries: [{ path: "x", kind: "Dir" }, { path: "x", kind: "Dir" }] },
    { ...manifest, entries: [{ path: "x", kind: { File: { size: CHUNK + 1, executable: false, chunks: new Uint8Array(32) } } }] },
    { ...manifest, entries: [{ path: "x", kind: "Link" }] },
  ];
  for (const m of bad) assert.throws(() => validateManifest(m), refused("BadManifest"), JSON.stringify(m)?.slice(0, 80));
});
