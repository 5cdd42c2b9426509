// A transfer by code between two peers-js devices whose signaling server (./server.ts,
// the real binary) is SIGKILLed mid-way and started again on the same port: both
// signaling clients register again (./src/reconnect.ts), the relay that died with the
// server is replaced by a new one on both sides, and the transfer goes on from the
// receiver's last verified chunk (docs/protocol.md §9.5), the file's hash checked; on
// WebRTC (node-datachannel) the transfer goes on untouched, and nothing starts over. A
// blip of the receiver's own link (a TCP proxy cut under it, the server up): its relay
// ends on both sides, the sender waits for it to be online again, both open a new relay.
import assert from "node:assert/strict";
import { createServer, Socket as TcpSocket, connect as tcpConnect } from "node:net";
import { after, before, test } from "node:test";

import { blake3 } from "@noble/hashes/blake3.js";
import { RTCPeerConnection } from "node-datachannel/polyfill";

import { blobSource, concat, PeerConnectionLike, PeersError, receiveByCode, sendByCode, toHex, VerifiedChunk } from "../src/index.js";
import { restartServer, startServer, stopServers } from "./server.js";

const MiB = 1 << 20;
const CHUNK = 256 * 1024;
const noise = (len: number, seed: number) => {
  let x = seed | 1;
  return new Uint8Array(len).map(() => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x & 0xff));
};

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

test("a signaling server killed and restarted under a relay transfer: new relays on both sides, no verified chunk goes twice", async () => {
  const data = noise(8 * MiB, 11);
  const relays: number[] = [];
  const links: string[] = [];
  const handle = await sendByCode(url, [blobSource("big.bin", new Blob([data]))], { chunkSize: CHUNK, local: false, onNewRelay: (hops) => relays.push(hops), onSignaling: (s) => links.push(s) });
  const chunks: VerifiedChunk[] = [];
  let restarting: Promise<string> | undefined;
  let killedAt = 0;
  let restartedAt = 0;
  let resumedAt = 0;
  let bytesAtKill = 0;
  const received = await receiveByCode(url, handle.code, {
    sink: (_, chunk) => {
      chunks.push(chunk);
      const bytes = chunks.length * CHUNK;
      if (!restarting && bytes >= 2 * MiB) {
        killedAt = Date.now();
        bytesAtKill = bytes;
        restarting = restartServer(url, 1_000);
        void restarting.then(() => (restartedAt = Date.now()));
      } else if (restartedAt && !resumedAt) resumedAt = Date.now();
    },
  });
  const sent = await handle.done;
  assert.ok(restarting, "the server was killed mid-way");
  await restarting;
  console.log(`# killed at ${bytesAtKill} of ${data.length} bytes; the server listened again ${restartedAt - killedAt} ms and the first chunk after that came ${resumedAt - killedAt} ms after the kill`);
  assert.equal(toHex(blake3(concat(...chunks.map((c) => c.bytes)))), toHex(blake3(data)), "the file arrived whole");
  assert.deepEqual(
    chunks.map((c) => c.chunk),
    Array.from({ length: data.length / CHUNK }, (_, i) => i),
    "each chunk verified once, in order: nothing started over",
  );
  assert.ok(sent.hops >= 1 && relays.length === sent.hops, `hops ${sent.hops}, new relays ${relays}`);
  assert.equal(received.bytes, data.length);
  // Chunks in flight when the relay died went again, nothing verified did.
  assert.ok(sent.bytes - data.length <= sent.hops * (CHUNK + 256 * 1024), `sent ${sent.bytes} for ${data.length} over ${sent.hops} hops`);
  assert.deepEqual(sent.paths.map((p) => p.transport), ["relay"]);
  assert.equal(sent.rejoins, 0);
  assert.ok(resumedAt - killedAt < 10_000, `resumed ${resumedAt - killedAt} ms after the kill`);
  assert.deepEqual(links, ["reconnecting", "registered"], "the sender said it registered again, and when it was back");
});

test("a code nobody used yet when the in-memory server restarted fails at once with SessionLost, not at the code's end", async () => {
  const handle = await sendByCode(url, [blobSource("small.bin", new Blob([noise(1000, 3)]))]);
  const started = Date.now();
  await restartServer(url, 300);
  await assert.rejects(handle.done, (err: unknown) => err instanceof PeersError && err.kind === "Transfer" && err.code === "SessionLost");
  console.log(`# the sender knew its code was gone ${Date.now() - started} ms after the kill`);
  assert.ok(Date.now() - started < 10_000);
});

test("a signaling server killed and restarted while the transfer is on WebRTC: it goes on there, nothing starts over", async () => {
  const data = noise(16 * MiB, 17);
  const made: RTCPeerConnection[] = [];
  // 64 KiB messages: node-datachannel stalls on larger ones (WebRtcSocketOptions).
  const webrtc = {
    createPeerConnection: (config: { iceServers: unknown[] }) => {
      const pc = new RTCPeerConnection(config as never);
      made.push(pc);
      return pc as unknown as PeerConnectionLike;
    },
    socket: { maxFrameSize: 65_536 },
  };
  try {
    let newRelays = 0;
    const handle = await sendByCode(url, [blobSource("direct.bin", new Blob([data]))], { chunkSize: CHUNK, local: false, webrtc, onNewRelay: () => (newRelays += 1) });
    const chunks: VerifiedChunk[] = [];
    let onWebRtc = false;
    let restarting: Promise<string> | undefined;
    let bytesAtKill = 0;
    const received = await receiveByCode(url, handle.code, {
      webrtc,
      onPath: (to) => (onWebRtc ||= to === "webrtc"),
      sink: async (_, chunk) => {
        chunks.push(chunk);
        if (onWebRtc && !restarting && chunks.length * CHUNK >= 4 * MiB) {
          bytesAtKill = chunks.length * CHUNK;
          restarting = restartServer(url, 1_000);
        }
        // Slow enough that the outage falls inside the transfer.
        if (restarting) await new Promise((r) => setTimeout(r, 20));
      },
    });
    const sent = await handle.done;
    assert.ok(restarting, `the server was killed while on WebRTC (paths ${JSON.stringify(sent.paths)})`);
    await restarting;
    console.log(`# killed at ${bytesAtKill} of ${data.length} bytes on WebRTC; paths ${JSON.stringify(sent.paths)}, hops ${sent.hops}`);
    assert.equal(toHex(blake3(concat(...chunks.map((c) => c.bytes)))), toHex(blake3(data)), "the file arrived whole");
    assert.deepEqual(
      chunks.map((c) => c.chunk),
      Array.from({ length: data.length / CHUNK }, (_, i) => i),
      "each chunk verified once, in order: nothing started over",
    );
    assert.equal(received.bytes, data.length);
    assert.equal(newRelays, 0, "no new relay: the direct path carried on");
    assert.equal(sent.rejoins, 0);
    const onDirect = sent.paths.find((p) => p.transport === "webrtc")?.bytes ?? 0;
    assert.ok(onDirect >= data.length - bytesAtKill, `the rest went over WebRTC: ${JSON.stringify(sent.paths)}`);
  } finally {
    made.forEach((pc) => pc.close());
  }
});

/** A TCP proxy to `url` on a free loopback port: its URL, and `cut()` to end every connection through it (a network blip). */
async function proxyTo(url: string): Promise<{ url: string; cut: () => number; close: () => void }> {
  const target = new URL(url);
  const open = new Set<TcpSocket>();
  const server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      open.add(s);
      s.on("close", () => open.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => {
      const n = open.size;
      for (const s of open) s.destroy();
      return n;
    },
    close: () => server.close(),
  };
}

test("the receiver's own link blinks under a relay transfer (the server stays up): new relays on both sides, no verified chunk twice", async () => {
  const data = noise(8 * MiB, 23);
  const proxy = await proxyTo(url);
  try {
    const handle = await sendByCode(url, [blobSource("blip.bin", new Blob([data]))], { chunkSize: CHUNK, local: false });
    const chunks: VerifiedChunk[] = [];
    let cutAt = 0;
    const received = await receiveByCode(proxy.url, handle.code, {
      sink: (_, chunk) => {
        chunks.push(chunk);
        if (!cutAt && chunks.length * CHUNK >= 2 * MiB) {
          cutAt = Date.now();
          assert.ok(proxy.cut() > 0, "the receiver's connection went through the proxy");
        }
      },
    });
    const sent = await handle.done;
    assert.ok(cutAt, "the link was cut mid-way");
    console.log(`# the receiver's link cut at 2 MiB; done ${Date.now() - cutAt} ms later, hops ${sent.hops}`);
    assert.equal(toHex(blake3(concat(...chunks.map((c) => c.bytes)))), toHex(blake3(data)), "the file arrived whole");
    assert.deepEqual(
      chunks.map((c) => c.chunk),
      Array.from({ length: data.length / CHUNK }, (_, i) => i),
      "each chunk verified once, in order",
    );
    assert.equal(received.bytes, data.length);
    assert.ok(sent.hops >= 1);
    assert.equal(sent.rejoins, 0, "not taken for a receiver that vanished");
  } finally {
    proxy.close();
  }
});
