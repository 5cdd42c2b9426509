// The sans-IO parts of the browser's staging (src/staging-browser.ts) in Node: which
// segment a chunk is in, where a saved position resumes (a segment's start; a damaged
// one starts over), the room the rest needs, and which stagings are stale. The store
// itself runs over the origin private file system in Chromium:
// tests/tests/peers_js_receive_page.rs (a page closed mid-transfer and opened again).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  blobSource,
  buildManifest,
  chunksPerSegment,
  encodeResume,
  resumePoint,
  roomNeeded,
  SEGMENT_BYTES,
  segmentOf,
  STALE_AFTER_MS,
  staleStagings,
} from "../src/index.js";

const MIB = 1 << 20;

test("a segment is whole chunks, at least one, about SEGMENT_BYTES", async () => {
  const small = await buildManifest([blobSource("a.bin", new Blob([new Uint8Array(100)]))], 64 * 1024);
  assert.equal(chunksPerSegment(small), SEGMENT_BYTES / (64 * 1024));
  const per = chunksPerSegment(small);
  assert.deepEqual(segmentOf(small, 0), { index: 0, start: 0 });
  assert.deepEqual(segmentOf(small, per - 1), { index: 0, start: 0 });
  assert.deepEqual(segmentOf(small, per), { index: 1, start: SEGMENT_BYTES });
  assert.deepEqual(segmentOf(small, 2 * per + 5), { index: 2, start: 2 * SEGMENT_BYTES });
  // A chunk size that does not divide the segment: whole chunks, rounded down.
  const odd = { ...small, chunk_size: 3 * MIB };
  assert.equal(chunksPerSegment(odd), 2);
  assert.deepEqual(segmentOf(odd, 3), { index: 1, start: 6 * MIB });
  // A chunk larger than a segment: one chunk per segment.
  assert.equal(chunksPerSegment({ ...small, chunk_size: 16 * MIB }), 1);
});

test("a saved position resumes at its segment's start; one outside the manifest or damaged starts over", async () => {
  const chunk = 64 * 1024;
  const per = SEGMENT_BYTES / chunk;
  const manifest = await buildManifest(
    [blobSource("a.bin", new Blob([new Uint8Array(3 * SEGMENT_BYTES + 10)])), blobSource("b.bin", new Blob([new Uint8Array(5)]))],
    chunk,
  );
  const start = { entry: 0, chunk: 0 };
  assert.deepEqual(resumePoint(manifest, undefined), start, "nothing saved");
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 0, chunk: 2 * per })), { entry: 0, chunk: 2 * per }, "a segment's end, as the store saves it");
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 0, chunk: 2 * per + 7 })), { entry: 0, chunk: 2 * per }, "inside a segment: its start");
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 1, chunk: 0 })), { entry: 1, chunk: 0 });
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 2, chunk: 0 })), { entry: 2, chunk: 0 }, "everything kept");
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 9, chunk: 0 })), start, "outside the manifest");
  assert.deepEqual(resumePoint(manifest, encodeResume({ entry: 1, chunk: 5 })), start, "past an entry's chunks");
  assert.deepEqual(resumePoint(manifest, new Uint8Array(7)), start, "not 8 bytes");
});

test("the room needed is what is still to come plus one segment for the final copy", async () => {
  const chunk = 64 * 1024;
  const manifest = await buildManifest([blobSource("a.bin", new Blob([new Uint8Array(20 * MIB)]))], chunk);
  assert.equal(roomNeeded(manifest, { entry: 0, chunk: 0 }), 20 * MIB + SEGMENT_BYTES);
  assert.equal(roomNeeded(manifest, { entry: 0, chunk: SEGMENT_BYTES / chunk }), 20 * MIB - SEGMENT_BYTES + SEGMENT_BYTES);
  assert.equal(roomNeeded(manifest, { entry: 1, chunk: 0 }), SEGMENT_BYTES);
  const tiny = await buildManifest([blobSource("t.txt", new Blob([new Uint8Array(10)]))], chunk);
  assert.equal(roomNeeded(tiny, { entry: 0, chunk: 0 }), 20, "a small transfer needs itself twice, not a whole segment");
});

test("stagings unused for longer than the age are stale, never the one being opened; an unknown age is stale", () => {
  const now = 10 * STALE_AFTER_MS;
  const stagings = [
    { name: "fresh", usedAt: now - 1000 },
    { name: "old", usedAt: now - STALE_AFTER_MS - 1 },
    { name: "edge", usedAt: now - STALE_AFTER_MS },
    { name: "unknown", usedAt: undefined },
    { name: "current", usedAt: 0 },
  ];
  assert.deepEqual(staleStagings(stagings, now, "current"), ["old", "unknown"]);
  assert.deepEqual(staleStagings(stagings, now, "current", 500), ["fresh", "old", "edge", "unknown"]);
});
