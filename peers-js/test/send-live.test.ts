// sendByCode live between two peers-js devices through the real signaling server
// (./server.ts): a tree sent by code arrives through receiveByCode byte for byte, a
// wrong code is refused on both sides, a declined offer fails the sender, a receiver
// that stops taking bytes fails it with Stalled (with no wait for its return), a sender
// that stops sending fails the receiver with Stalled. (The Rust
// receiver's side: tests/tests/peers_js_send.rs.)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { blobSource, concat, receiveByCode, sendByCode, WORDS } from "../src/index.js";
import type { ReceiveStore } from "../src/index.js";
import { CHUNK, files, refused, sources } from "./tree.js";
import { startServer, stopServers } from "./server.js";

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

test("a tree sent by code arrives byte for byte in another peers-js device", async () => {
  const handle = await sendByCode(url, sources, { chunkSize: CHUNK });
  assert.match(handle.code, /^\d+-[a-z]+-[a-z]+$/);
  const got = new Map<string, Uint8Array[]>();
  const received = await receiveByCode(url, handle.code, { sink: (entry, chunk) => void got.set(entry.path, [...(got.get(entry.path) ?? []), chunk.bytes]) });
  const sent = await handle.done;
  assert.equal(sent.bytes, CHUNK * 3 + 110);
  assert.equal(sent.resumed, 0);
  assert.equal(received.bytes, sent.bytes);
  for (const [path, data] of Object.entries(files)) assert.deepEqual(concat(...(got.get(path) ?? [])), data, path);
});

test("a wrong code fails on both sides, and a declined offer ends both sides as Declined", async () => {
  const handle = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK });
  const [number, first, second] = handle.code.split("-");
  const other = WORDS.find((w) => w !== second)!;
  await assert.rejects(receiveByCode(url, `${number}-${first}-${other}`, { sink: () => assert.fail("nothing arrives") }), refused("Transfer", "WrongCode"));
  await assert.rejects(handle.done, refused("Transfer", "WrongCode"));

  const declined = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK });
  await assert.rejects(receiveByCode(url, declined.code, { decide: () => false, sink: () => assert.fail("nothing arrives") }), refused("Transfer", "Declined"));
  await assert.rejects(declined.done, refused("Transfer", "Declined"));
});

test("a receiver that stops taking bytes fails the sender with Stalled, and the receiver is told", async () => {
  const big = new Uint8Array(6 << 20).map((_, i) => (i * 13 + (i >> 11)) & 0xff);
  const handle = await sendByCode(url, [blobSource("big.bin", new Blob([big]))], { chunkSize: 1 << 20, stallTimeoutMs: 1_000, rejoinWaitMs: 0 });
  let chunks = 0;
  const receiving = receiveByCode(url, handle.code, { sink: () => (++chunks === 1 ? new Promise<void>(() => undefined) : undefined) }).then(
    () => assert.fail("the receiver cannot finish"),
    (err: unknown) => err,
  );
  await assert.rejects(handle.done, refused("Transfer", "Stalled"));
  const err = await receiving;
  assert.ok(refused("Transfer", "Closed")(err) && /stopped responding/.test((err as Error).message), String(err));
  assert.equal(chunks, 1);
});

test("a sender that stops sending fails the receiver with Stalled, as peers receive does", async () => {
  const big = new Uint8Array(4 << 20).map((_, i) => (i * 7 + (i >> 10)) & 0xff);
  const blob = blobSource("stuck.bin", new Blob([big]));
  if ("dir" in blob) throw new Error("a file");
  // The manifest reads each of the 4 chunks once; sending reads the first again, then waits forever.
  let reads = 0;
  const stuck = { ...blob, read: (offset: number, length: number) => (++reads > 5 ? new Promise<Uint8Array>(() => undefined) : blob.read(offset, length)) };
  const handle = await sendByCode(url, [stuck], { chunkSize: 1 << 20, stallTimeoutMs: 3_000, rejoinWaitMs: 0 });
  let chunks = 0;
  const started = Date.now();
  await assert.rejects(
    receiveByCode(url, handle.code, { stallTimeoutMs: 1_000, sink: () => void (chunks += 1) }),
    (err: unknown) => refused("Transfer", "Stalled")(err) && /stopped responding/.test((err as Error).message),
  );
  assert.equal(chunks, 1);
  assert.ok(Date.now() - started < 3_000, `the receiver's own timeout, not the sender's close: ${Date.now() - started} ms`);
  await assert.rejects(handle.done);
});

test("the sender hears success only once the receiver's store put the files in place, and a failed move fails both", async () => {
  // StreamDone means "entries moved" (docs/protocol.md §9.4).
  let moved = false;
  const slow: ReceiveStore = {
    open: async () => ({ entry: 0, chunk: 0 }),
    write: async () => undefined,
    finish: async (manifest) => {
      await new Promise((r) => setTimeout(r, 300));
      moved = true;
      return manifest.entries.map((e) => e.path.split("/")[0]!);
    },
  };
  const handle = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK });
  const receiving = receiveByCode(url, handle.code, { store: slow });
  await handle.done;
  assert.ok(moved, "the sender finished before the receiver moved the files into place");
  assert.ok((await receiving).stored?.length, "the receive reports what it stored");

  const failing: ReceiveStore = { ...slow, finish: async () => Promise.reject(new Error("no room left for the rename")) };
  const second = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK, rejoinWaitMs: 0 });
  await assert.rejects(receiveByCode(url, second.code, { store: failing }), (err: unknown) => refused("Transfer", "Io")(err) && /no room left/.test((err as Error).message));
  await assert.rejects(second.done, (err: unknown) => /no room left/.test((err as Error).message));
});
