// sendByCode live between two peers-js devices through the real signaling server
// (./server.ts): a tree sent by code arrives through receiveByCode byte for byte, a
// wrong code is refused on both sides, a declined offer fails the sender. (The Rust
// receiver's side: tests/tests/peers_js_send.rs.)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { concat, receiveByCode, sendByCode, WORDS } from "../src/index.js";
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

test("a wrong code fails on both sides, and a declined offer fails the sender", async () => {
  const handle = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK });
  const [number, first, second] = handle.code.split("-");
  const other = WORDS.find((w) => w !== second)!;
  await assert.rejects(receiveByCode(url, `${number}-${first}-${other}`, { sink: () => assert.fail("nothing arrives") }), refused("Transfer", "WrongCode"));
  await assert.rejects(handle.done, refused("Transfer", "WrongCode"));

  const declined = await sendByCode(url, sources.slice(0, 2), { chunkSize: CHUNK });
  await assert.rejects(receiveByCode(url, declined.code, { decide: () => false, sink: () => assert.fail("nothing arrives") }), refused("Transfer", "Closed"));
  await assert.rejects(declined.done, refused("Transfer", "Declined"));
});
