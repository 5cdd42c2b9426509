// The Node receiver's staging on disk (src/staging-node.ts) without a network: chunks
// kept survive a new store (a new process), a staging of another manifest in the same
// staging directory is discarded, a damaged position starts over, the entries move
// into place under free names and the staging goes. The live test:
// tests/tests/peers_js_transfer.rs (a Node receiver killed under `peers send`).
import assert from "node:assert/strict";
import { mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { blobSource, buildManifest, ChunkCutter, cursorAfter, decodeResume, directoryStore, encodeResume, Manifest, stagingName, manifestDigest, VerifiedChunk } from "../src/index.js";

const CHUNK = 16 * 1024;
const bytes = (len: number, seed: number) => new Uint8Array(len).map((_, i) => (i * 31 + seed) & 0xff);

function chunksOf(manifest: Manifest, data: Uint8Array): VerifiedChunk[] {
  return [...new ChunkCutter(manifest).push(data)];
}

test("the resume file is the Rust receiver's: two positions of entry and chunk, u32 big-endian; the directory named by 12 bytes of the digest", () => {
  assert.deepEqual([...encodeResume({ entry: 1, chunk: 258 }, { entry: 1, chunk: 3 })], [0, 0, 0, 1, 0, 0, 1, 2, 0, 0, 0, 1, 0, 0, 0, 3]);
  const positions = { written: { entry: 7, chunk: 9 }, synced: { entry: 7, chunk: 2 } };
  assert.deepEqual(decodeResume(encodeResume(positions.written, positions.synced)), positions);
  // An earlier receiver's 8 bytes: written, nothing synced; a synced position after the written one: nothing synced.
  assert.deepEqual(decodeResume(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 3])), { written: { entry: 0, chunk: 3 }, synced: { entry: 0, chunk: 0 } });
  assert.deepEqual(decodeResume(encodeResume({ entry: 0, chunk: 1 }, { entry: 0, chunk: 2 }))?.synced, { entry: 0, chunk: 0 });
  assert.equal(decodeResume(new Uint8Array(7)), undefined);
  assert.equal(decodeResume(new Uint8Array(12)), undefined);
  assert.match(stagingName(new Uint8Array(32).fill(0xab)), /^\.peers-transfer-(ab){12}$/);
});

test("a staging kept by one store resumes in the next; another manifest's is discarded; a damaged position starts over", async () => {
  const out = await mkdtemp(join(tmpdir(), "peers-js-staging-"));
  try {
    const data = bytes(5 * CHUNK + 100, 1);
    const manifest = await buildManifest([blobSource("file.bin", new Blob([data]))], CHUNK);
    const chunks = chunksOf(manifest, data);
    const first = directoryStore(out);
    assert.deepEqual(await first.open(manifest), { entry: 0, chunk: 0 });
    for (const c of chunks.slice(0, 3)) await first.write(manifest.entries[0]!, c, cursorAfter(manifest, c.entry, c.chunk));
    // A new store (a process run again) finds the position after the third chunk.
    const second = directoryStore(out);
    assert.equal(second.staging(manifest), join(out, stagingName(manifestDigest(manifest))).replaceAll("\\", "/"));
    assert.deepEqual(await second.open(manifest), { entry: 0, chunk: 3 });
    for (const c of chunks.slice(3)) await second.write(manifest.entries[0]!, c, cursorAfter(manifest, c.entry, c.chunk));
    await writeFile(join(out, "file.bin"), "something already there");
    assert.deepEqual(await second.finish(manifest), ["file (1).bin"], "nothing existing is replaced");
    assert.deepEqual(Buffer.compare(await readFile(join(out, "file (1).bin")), Buffer.from(data)), 0);
    assert.deepEqual((await readdir(out)).sort(), ["file (1).bin", "file.bin"], "the staging is gone");

    // An explicit staging directory holding another manifest's chunks: discarded, from the start.
    const stagingDir = join(out, "staging");
    const other = await buildManifest([blobSource("file.bin", new Blob([bytes(3 * CHUNK, 2)]))], CHUNK);
    const a = directoryStore(out, { stagingDir });
    await a.open(other);
    const c0 = chunksOf(other, bytes(3 * CHUNK, 2))[0]!;
    await a.write(other.entries[0]!, c0, cursorAfter(other, 0, 0));
    assert.deepEqual(await directoryStore(out, { stagingDir }).open(other), { entry: 0, chunk: 1 });
    assert.deepEqual(await directoryStore(out, { stagingDir }).open(manifest), { entry: 0, chunk: 0 }, "another manifest: start over");
    assert.equal((await readFile(join(stagingDir, "data", "file.bin"))).length, 0, "the other manifest's bytes were discarded");
    // A position outside the manifest (a damaged file): start over.
    await writeFile(join(stagingDir, "resume"), encodeResume({ entry: 9, chunk: 0 }));
    assert.deepEqual(await directoryStore(out, { stagingDir }).open(manifest), { entry: 0, chunk: 0 });
    // One too long: start over, and the file is a position again (it is written in place).
    await writeFile(join(stagingDir, "resume"), new Uint8Array(12).fill(7));
    const d = directoryStore(out, { stagingDir });
    assert.deepEqual(await d.open(manifest), { entry: 0, chunk: 0 });
    await d.write(manifest.entries[0]!, chunks[0]!, cursorAfter(manifest, 0, 0));
    assert.deepEqual(new Uint8Array(await readFile(join(stagingDir, "resume"))), encodeResume({ entry: 0, chunk: 1 }, { entry: 0, chunk: 0 }));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test("a reopened staging reads back what was written after the last checkpoint and resumes at the first chunk the disk lost", async () => {
  const out = await mkdtemp(join(tmpdir(), "peers-js-staging-"));
  try {
    const data = bytes(5 * CHUNK + 100, 3);
    const manifest = await buildManifest([blobSource("file.bin", new Blob([data]))], CHUNK);
    const chunks = chunksOf(manifest, data);
    const first = directoryStore(out);
    await first.open(manifest);
    for (const c of chunks.slice(0, 4)) await first.write(manifest.entries[0]!, c, cursorAfter(manifest, c.entry, c.chunk));
    const resume = join(first.staging(manifest), "resume");
    // Four chunks written and none synced (no checkpoint in 64 MiB): the process is killed.
    assert.deepEqual(decodeResume(new Uint8Array(await readFile(resume))), { written: { entry: 0, chunk: 4 }, synced: { entry: 0, chunk: 0 } });
    assert.deepEqual(await directoryStore(out).open(manifest), { entry: 0, chunk: 4 }, "the page cache kept every chunk");
    // A crash of the machine lost the third chunk's bytes (zeros where they were).
    const file = await open(join(first.staging(manifest), "data", "file.bin"), "r+");
    await file.write(new Uint8Array(100), 0, 100, 2 * CHUNK + 5);
    await file.close();
    const second = directoryStore(out);
    assert.deepEqual(await second.open(manifest), { entry: 0, chunk: 2 }, "the lost chunk and those after it are asked again");
    for (const c of chunks.slice(2)) await second.write(manifest.entries[0]!, c, cursorAfter(manifest, c.entry, c.chunk));
    assert.deepEqual(await second.finish(manifest), ["file.bin"]);
    assert.equal(Buffer.compare(await readFile(join(out, "file.bin")), Buffer.from(data)), 0);

    // A checkpoint every two chunks: after the second, not after the third; what it covers is not read back.
    const third = directoryStore(out, { checkpointBytes: 2 * CHUNK });
    await third.open(manifest);
    for (const c of chunks.slice(0, 3)) await third.write(manifest.entries[0]!, c, cursorAfter(manifest, c.entry, c.chunk));
    assert.deepEqual(decodeResume(new Uint8Array(await readFile(resume))), { written: { entry: 0, chunk: 3 }, synced: { entry: 0, chunk: 2 } });
    const again = await open(join(third.staging(manifest), "data", "file.bin"), "r+");
    await again.write(new Uint8Array(10), 0, 10, 0);
    await again.close();
    assert.deepEqual(await directoryStore(out).open(manifest), { entry: 0, chunk: 3 });
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
