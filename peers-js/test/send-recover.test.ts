// sendByCode when its path breaks (docs/protocol.md §9.5, §9.5.1), between two peers-js
// devices through the real signaling server (./server.ts): a server whose relays carry
// at most 4 MiB ends the relay several times under a 12 MiB transfer, and both sides
// open new ones and resume from the receiver's last verified chunk; a receiver killed
// mid-way (SIGKILL of a Node process running examples/receive-by-code.js) is waited
// for, and the same code run again into the same directory completes the transfer with
// a new PAKE, resuming from what the first run's staging kept; a receiver
// that does not come back fails the sender once the rejoin wait is over. (The Rust
// receiver's side: tests/tests/peers_js_send.rs.)
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { blake3 } from "@noble/hashes/blake3.js";

import { blobSource, concat, receiveByCode, sendByCode, toHex, VerifiedChunk } from "../src/index.js";
import { refused } from "./tree.js";
import { startServer, stopServers } from "./server.js";

const MiB = 1 << 20;
const CHUNK = 256 * 1024;
const noise = (len: number, seed: number) => {
  let x = seed | 1;
  return new Uint8Array(len).map(() => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x & 0xff));
};

let capped = "";
let plain = "";
before(async () => {
  capped = await startServer(["--relay-max-bytes", String(4 * MiB)]);
  plain = await startServer();
});
after(stopServers);

test("relays that end at the server's byte cap are replaced on both sides; no verified chunk goes twice", async () => {
  const data = noise(12 * MiB, 7);
  const relays: number[] = [];
  const handle = await sendByCode(capped, [blobSource("big.bin", new Blob([data]))], { chunkSize: CHUNK, onNewRelay: (hops) => relays.push(hops) });
  const chunks: VerifiedChunk[] = [];
  const received = await receiveByCode(capped, handle.code, { sink: (_, chunk) => void chunks.push(chunk) });
  const sent = await handle.done;
  assert.equal(toHex(blake3(concat(...chunks.map((c) => c.bytes)))), toHex(blake3(data)), "the file arrived whole");
  assert.deepEqual(
    chunks.map((c) => c.chunk),
    Array.from({ length: data.length / CHUNK }, (_, i) => i),
    "each chunk verified once, in order",
  );
  // 12 MiB through relays of at most 4 MiB: at least three new ones, each after bytes moved.
  assert.ok(sent.hops >= 3 && relays.length === sent.hops, `hops ${sent.hops}, new relays ${relays}`);
  assert.equal(received.bytes, data.length);
  // Chunks in flight when a relay ended went again, nothing verified did: at most the relay's window and a chunk per hop.
  assert.ok(sent.bytes >= data.length && sent.bytes - data.length <= sent.hops * (CHUNK + 256 * 1024), `sent ${sent.bytes} for ${data.length} over ${sent.hops} hops`);
  assert.deepEqual(sent.paths.map((p) => p.transport), ["relay"]);
  assert.equal(sent.rejoins, 0);
});

/** Runs examples/receive-by-code.js in a child process; resolves its JSON lines one by one. */
function receiverProcess(url: string, code: string, out: string) {
  const script = fileURLToPath(new URL("../examples/receive-by-code.js", import.meta.url));
  const child = spawn(process.execPath, [script, url, code, out], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const events: { event: string }[] = [];
  lines.on("line", (l) => events.push(JSON.parse(l) as { event: string }));
  return { child, events, exited: new Promise<number | null>((r) => child.once("exit", (code) => r(code))) };
}

test("a receiver killed mid-way runs the code again: the sender reopened the session, a new PAKE, the transfer completes", async () => {
  const data = noise(12 * MiB, 11);
  const out = await mkdtemp(join(tmpdir(), "peers-js-rejoin-"));
  try {
    let killedAt = 0;
    let first: ReturnType<typeof receiverProcess> | undefined;
    const waiting: { rejoins: number; why: string }[] = [];
    let returned!: () => void;
    const back = new Promise<void>((r) => (returned = r));
    const accepted: number[] = [];
    const handle = await sendByCode(plain, [blobSource("big.bin", new Blob([data]))], {
      chunkSize: CHUNK,
      rejoinWaitMs: 60_000,
      onAccepted: (_, resumed) => accepted.push(resumed),
      onProgress: ({ bytesDone }) => {
        if (killedAt === 0 && bytesDone >= 3 * MiB && first) {
          killedAt = bytesDone;
          first.child.kill("SIGKILL");
        }
      },
      onWaitingForReturn: (w) => (waiting.push(w), returned()),
    });
    first = receiverProcess(plain, handle.code, out);
    assert.equal(await first.exited, null, "the first receiver was killed");
    assert.ok(first.events.some((e) => e.event === "confirmed"), JSON.stringify(first.events));
    await back;
    assert.deepEqual(waiting.map((w) => w.rejoins), [1]);
    // Run again into the same directory: its staging (directoryStore) keeps what the first run verified.
    const second = receiverProcess(plain, handle.code, out);
    assert.equal(await second.exited, 0, JSON.stringify(second.events));
    const done = second.events.find((e) => e.event === "done") as unknown as { bytes: number; resumed: number; files: { blake3: string }[] };
    const sent = await handle.done;
    assert.equal(done.files[0]!.blake3, toHex(blake3(data)), "the file arrived whole");
    assert.equal(toHex(blake3(await readFile(join(out, "big.bin")))), toHex(blake3(data)));
    assert.deepEqual(await readdir(out), ["big.bin"], "the staging is gone");
    assert.equal(sent.rejoins, 1);
    // The second answer resumed from the staging: only the rest moved again.
    assert.equal(accepted.length, 2);
    assert.equal(accepted[0], 0);
    assert.ok(accepted[1]! > 0 && accepted[1]! <= killedAt, `resumed ${accepted[1]}, killed at ${killedAt}`);
    assert.equal(done.resumed, accepted[1]);
    assert.equal(done.bytes, data.length - accepted[1]!);
    console.log(`# killed at ${killedAt} bytes sent; the rerun resumed at ${accepted[1]}; ${sent.bytes} bytes sent in all for ${data.length}`);
    assert.ok(sent.bytes <= data.length + killedAt - accepted[1]! + 2 * CHUNK, `sent ${sent.bytes}, killed at ${killedAt}`);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});

test("a receiver that does not come back fails the sender once the rejoin wait is over", async () => {
  const data = noise(12 * MiB, 13);
  const out = await mkdtemp(join(tmpdir(), "peers-js-rejoin-"));
  try {
    let first: ReturnType<typeof receiverProcess> | undefined;
    let waited = 0;
    const handle = await sendByCode(plain, [blobSource("big.bin", new Blob([data]))], {
      chunkSize: CHUNK,
      rejoinWaitMs: 1_500,
      onProgress: ({ bytesDone }) => {
        if (bytesDone >= 2 * MiB && first?.child.exitCode === null && !first.child.killed) first.child.kill("SIGKILL");
      },
      onWaitingForReturn: () => (waited += 1),
    });
    first = receiverProcess(plain, handle.code, out);
    const started = Date.now();
    await assert.rejects(handle.done, (err: unknown) => refused("Transfer", "Timeout")(err) && /did not run the same code again/.test((err as Error).message));
    assert.equal(waited, 1);
    assert.ok(Date.now() - started >= 1_500);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
