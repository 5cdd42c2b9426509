// The sending side of a transfer by code without I/O (src/manifest.ts, src/code.ts,
// src/send.ts): the word list and a manifest digest against the Rust side's
// (test/vectors.json, written by tests/tests/peers_js_vectors.rs), the manifest built from sources, the chunk order from a resume point
// against the receiver's cutter, the offer's answer, the digest, codes. The live
// tests are in ./send-live.test.ts. The tree: ./tree.ts. Also the sources: nodeSources on a
// real directory (name order, a symbolic link skipped, the execute bit) and blobSources.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { blake3 } from "@noble/hashes/blake3.js";

import {
  blobSource,
  blobSources,
  buildManifest,
  ChunkCutter,
  ChunkSending,
  concat,
  fromHex,
  Manifest,
  generateCode,
  manifestDigest,
  nodeSources,
  parseCode,
  readAnswer,
  receiveByCode,
  sendByCode,
  toHex,
  validateManifest,
  WORDS,
} from "../src/index.js";
import { CHUNK, files, refused, sources } from "./tree.js";

test("a built manifest hashes every chunk and passes the receiver's checks", async () => {
  const manifest = await buildManifest(sources, CHUNK);
  assert.deepEqual(validateManifest(manifest), manifest);
  const a = manifest.entries[1]!.kind;
  assert.ok(a !== "Dir");
  assert.equal(a.File.chunks.length, 3 * 32);
  assert.deepEqual(a.File.chunks.subarray(64), blake3(files["top/a"]!.subarray(2 * CHUNK)));
  await assert.rejects(buildManifest([{ path: "../x", dir: true }], CHUNK), refused("Transfer", "BadManifest"));
  await assert.rejects(buildManifest([blobSource("f", new Blob(["x"])), { path: "f/g", dir: true }], CHUNK), refused("Transfer", "BadManifest"));
  await assert.rejects(buildManifest(sources, CHUNK - 1), refused("Transfer", "BadManifest"));
});

test("the chunks a sender sends from any resume point are those the receiver's cutter expects", async () => {
  const manifest = await buildManifest(sources, CHUNK);
  const order: [number, number][] = [];
  const everything = new ChunkSending(manifest, { entry: 0, chunk: 0 });
  for (let c = everything.nextChunk(); c; c = everything.nextChunk()) order.push([c.entry, c.chunk]);
  assert.deepEqual(order, [[1, 0], [1, 1], [1, 2], [4, 0], [5, 0]]);
  assert.ok(everything.done);
  assert.equal(everything.sentBytes, CHUNK * 3 + 100 + 10);
  const read = (entry: number, offset: number, length: number) => {
    const source = sources[entry]!;
    return "dir" in source ? new Uint8Array(0) : files[source.path]!.subarray(offset, offset + length);
  };
  for (const from of [{ entry: 0, chunk: 0 }, { entry: 1, chunk: 2 }, { entry: 2, chunk: 0 }, { entry: 4, chunk: 0 }, { entry: 6, chunk: 0 }]) {
    const sending = new ChunkSending(manifest, from);
    const cutter = new ChunkCutter(manifest, from);
    const stream: Uint8Array[] = [];
    for (let c = sending.nextChunk(); c; c = sending.nextChunk()) stream.push(read(c.entry, c.offset, c.length));
    const verified = cutter.push(concat(...stream));
    cutter.end();
    assert.ok(cutter.complete, `complete from ${JSON.stringify(from)}`);
    assert.equal(sending.resumed + verified.reduce((n, c) => n + c.bytes.length, 0), sending.sentBytes);
  }
  assert.equal(new ChunkSending(manifest, { entry: 1, chunk: 2 }).resumed, 2 * CHUNK);
  for (const outside of [{ entry: 1, chunk: 4 }, { entry: 0, chunk: 1 }, { entry: 7, chunk: 0 }, { entry: 6, chunk: 1 }, { entry: -1, chunk: 0 }]) {
    assert.throws(() => new ChunkSending(manifest, outside), refused("Transfer", "Protocol"), JSON.stringify(outside));
  }
});

test("the offer's answer is read strictly", () => {
  assert.deepEqual(readAnswer({ Accept: { from: { entry: 3, chunk: 1 } } }), { accept: { entry: 3, chunk: 1 } });
  assert.deepEqual(readAnswer({ Decline: { reason: "no" } }), { decline: "no" });
  for (const bad of [null, 7, {}, { Accept: {} }, { Accept: { from: { entry: "1", chunk: 0 } } }, { Decline: {} }]) assert.throws(() => readAnswer(bad), refused("Transfer", "Protocol"));
});

test("the digest covers every field of the manifest", async () => {
  const manifest = await buildManifest(sources, CHUNK);
  const digest = manifestDigest(manifest);
  assert.equal(digest.length, 32);
  assert.deepEqual(manifestDigest(structuredClone(manifest)), digest);
  const changed = [
    { ...manifest, chunk_size: CHUNK * 2 },
    { ...manifest, entries: manifest.entries.slice(1) },
    { ...manifest, entries: manifest.entries.map((e, i) => (i === 5 && e.kind !== "Dir" ? { ...e, kind: { File: { ...e.kind.File, executable: true } } } : e)) },
    { ...manifest, entries: manifest.entries.map((e, i) => (i === 0 ? { ...e, path: "tip" } : e)) },
  ];
  for (const other of changed) assert.notEqual(toHex(manifestDigest(other)), toHex(digest));
});

test("codes: generated from the list, read forgivingly, strict about words when asked", () => {
  const code = generateCode(42, 3, (n) => new Uint8Array(n).fill(0));
  assert.deepEqual(code, { session: 42, text: `42-${WORDS[0]}-${WORDS[0]}-${WORDS[0]}` });
  assert.equal(WORDS.length, 256);
  assert.deepEqual([...WORDS].sort(), WORDS);
  assert.equal(new Set(WORDS.map((w) => w.slice(0, 4))).size, 256);
  assert.deepEqual(parseCode(" 7 Maple  ORBI "), { session: 7, text: "7-maple-orbit" });
  assert.deepEqual(parseCode("7-fox-orbit"), { session: 7, text: "7-fox-orbit" });
  assert.throws(() => parseCode("7-maple-xyzzy"), refused("Transfer", "BadCode"));
  assert.deepEqual(parseCode("7-maple-xyzzy", false), { session: 7, text: "7-maple-xyzzy" });
  for (const bad of ["", "maple-orbit", "0-maple-orbit", "1000000-maple-orbit", "7-maple", "7-a-b-c-d-e", "7-" + "maple-".repeat(12)]) {
    assert.throws(() => parseCode(bad, false), refused("Transfer", "BadCode"), bad);
  }
  assert.throws(() => generateCode(0), refused("Transfer", "BadCode"));
});


test("the word list and a manifest's digest are those of the Rust implementation", () => {
  const { transfer } = JSON.parse(readFileSync(new URL("../../test/vectors.json", import.meta.url), "utf8")) as {
    transfer: { words: string[]; digest: string; manifest: { chunk_size: number; entries: Array<{ path: string; dir?: true; size?: number; executable?: boolean; chunks?: string }> } };
  };
  assert.deepEqual(WORDS, transfer.words);
  const manifest: Manifest = {
    chunk_size: transfer.manifest.chunk_size,
    entries: transfer.manifest.entries.map((e) => (e.dir ? { path: e.path, kind: "Dir" as const } : { path: e.path, kind: { File: { size: e.size!, executable: e.executable!, chunks: fromHex(e.chunks!) } } })),
  };
  assert.equal(toHex(manifestDigest(validateManifest(manifest))), transfer.digest);
});

test("nodeSources scans as peers send does: name order, directories first, symbolic links skipped, the execute bit", async (t) => {
  const { mkdtemp, mkdir, writeFile, symlink, chmod, rm } = await import("node:fs/promises");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const root = await mkdtemp(join(tmpdir(), "peers-js-sources-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, "top/sub"), { recursive: true });
  await writeFile(join(root, "top/b.txt"), "bee");
  await writeFile(join(root, "top/a.sh"), "#!/bin/sh\n");
  await chmod(join(root, "top/a.sh"), 0o755);
  await writeFile(join(root, "top/sub/c"), new Uint8Array(CHUNK + 1).fill(7));
  await symlink("/etc/passwd", join(root, "top/link"));
  const { entries, skipped } = await nodeSources([join(root, "top")]);
  assert.deepEqual(entries.map((e) => ("dir" in e ? `${e.path}/` : `${e.path} ${e.size}${e.executable ? " x" : ""}`)), ["top/", "top/a.sh 10 x", "top/b.txt 3", "top/sub/", `top/sub/c ${CHUNK + 1}`]);
  assert.deepEqual(skipped, [join(root, "top/link")]);
  const c = entries[4]!;
  assert.ok(!("dir" in c));
  assert.deepEqual(await c.read(CHUNK - 1, 2), Uint8Array.of(7, 7));
  await assert.rejects(nodeSources([join(root, "top"), join(root, "top/sub/../../top")]), refused("Transfer", "BadManifest"));
});

test("blobSources lists a picked folder's directories before their files", () => {
  const file = (name: string, path: string) => Object.assign(new File(["x"], name), { webkitRelativePath: path });
  const entries = blobSources([file("a", "pics/2024/a"), file("b", "pics/b"), file("c", "")]);
  assert.deepEqual(entries.map((e) => ("dir" in e ? `${e.path}/` : e.path)), ["pics/", "pics/2024/", "pics/2024/a", "pics/b", "c"]);
});
