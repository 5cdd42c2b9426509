// The frame relay socket (src/relay.ts) between two peers-js devices through the
// real signaling server (./server.ts): frames both ways in order with the credit
// granted as they are read, the close reason, the server's refusal of a relay with
// oneself, a peer that never asks (Timeout), a sender that overruns the window
// (ProtocolError), malformed relay events, and the relay acceptor (a `ready` signal
// with `{"relay": true}` answered by opening the relay, from allowed devices only).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { DeviceKeys, parseRelayEvent, PeersError, RelayAcceptor, RELAY_WINDOW, RelaySocket, SignalingClient } from "../src/index.js";
import { startServer, stopServers } from "./server.js";

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

async function device(name: string): Promise<SignalingClient> {
  return SignalingClient.connect(url, DeviceKeys.generate(name));
}

test("frames cross the relay both ways in order, beyond several windows, and the close reason arrives", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  const [sa, sb] = await Promise.all([RelaySocket.open(a, b.deviceId), RelaySocket.open(b, a.deviceId)]);
  assert.equal(sa.relay, sb.relay);
  assert.equal(sa.peer, b.deviceId);
  assert.equal(sb.peer, a.deviceId);
  assert.equal(sa.info.security.confidential, false);
  const max = sa.info.maxFrameSize;
  // 3 windows of frames and more than a window of bytes: the sender waits for credit
  const frames = Array.from({ length: RELAY_WINDOW.frames * 3 }, (_, i) => new Uint8Array(i % 7 === 0 ? max : 1000 + i).fill(i & 0xff));
  const sending = Promise.all(frames.map((f) => sa.send(f)));
  for (const f of frames) assert.deepEqual(await sb.recv(), f);
  await sending;
  await sb.send(new Uint8Array([4, 2]));
  assert.deepEqual(await sa.recv(), new Uint8Array([4, 2]));
  await assert.rejects(sa.send(new Uint8Array(max + 1)), (e: unknown) => e instanceof PeersError && e.code === "FrameTooLarge");
  await sa.close("GoingAway", "see you");
  assert.deepEqual(await sb.closed, { code: "GoingAway", message: "see you", by: "Remote" });
  await assert.rejects(sb.recv(), (e: unknown) => e instanceof PeersError && e.kind === "Closed");
  a.close();
  b.close();
});

test("a relay with oneself is refused by the server, one the peer never asks for times out", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  await assert.rejects(RelaySocket.open(a, a.deviceId), (e: unknown) => e instanceof PeersError && e.kind === "Signaling");
  await assert.rejects(RelaySocket.open(a, b.deviceId, { timeoutMs: 500 }), (e: unknown) => e instanceof PeersError && e.code === "Timeout");
  a.close();
  b.close();
});

test("a sender that overruns the window closes the relay with ProtocolError", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  const [sa, sb] = await Promise.all([RelaySocket.open(a, b.deviceId), RelaySocket.open(b, a.deviceId)]);
  // past the socket's own credit check: raw frames, one more than the window, never read
  for (let i = 0; i <= RELAY_WINDOW.frames; i++) a.emitRelay("relay-frame", { relay: sa.relay, data: "AAAA" });
  const reason = await sb.closed;
  assert.equal(reason.code, "ProtocolError");
  assert.equal((await sa.closed).code, "ProtocolError");
  a.close();
  b.close();
});

test("malformed relay events are refused", () => {
  const refused = (name: "relay-open" | "relay-frame" | "relay-credit" | "relay-close", args: unknown[]) =>
    assert.throws(() => parseRelayEvent(name, args), /unusable/);
  refused("relay-frame", [{ relay: -1, data: "" }]);
  refused("relay-frame", [{ relay: 1 }]);
  refused("relay-frame", [{ relay: 1, data: "" }, "extra"]);
  refused("relay-open", [{ relay: 1, peer: "not hex", max_frame: 65536 }]);
  refused("relay-open", [{ relay: 1, peer: "ab".repeat(20), max_frame: 0 }]);
  refused("relay-credit", [{ relay: 1, frames: 1.5, bytes: 0 }]);
  refused("relay-close", [{ relay: 1, code: 7, message: "" }]);
  assert.equal((parseRelayEvent("relay-open", [{ relay: 1, peer: "ab".repeat(20), max_frame: 1 << 30 }]) as { maxFrame: number }).maxFrame, 90 * 1024);
});

test("a relay acceptor answers a relay request from an allowed device, and not from another", async () => {
  const [a, b, c] = await Promise.all([device("a"), device("b"), device("c")]);
  const acceptor = new RelayAcceptor(b, { allow: (d) => d === a.deviceId, timeoutMs: 5_000 });
  // c asks first: not allowed, so its relay never opens
  assert.equal((await c.signal(b.deviceId, "ready", { relay: true })).outcome, "delivered");
  await assert.rejects(RelaySocket.open(c, b.deviceId, { timeoutMs: 700 }), (e: unknown) => e instanceof PeersError && e.code === "Timeout");
  // a asks as a `peers run` daemon's relay dialer does: the signal, then its side of the relay
  assert.equal((await a.signal(b.deviceId, "ready", { relay: true })).outcome, "delivered");
  const [sa, sb] = await Promise.all([RelaySocket.open(a, b.deviceId), acceptor.accept()]);
  assert.equal(sb.peer, a.deviceId);
  assert.equal(sa.relay, sb.relay);
  await sa.send(new Uint8Array([1, 2, 3]));
  assert.deepEqual(await sb.recv(), new Uint8Array([1, 2, 3]));
  // a `ready` without the relay flag is someone else's business
  assert.equal((await a.signal(b.deviceId, "ready", {})).outcome, "delivered");
  acceptor.close();
  await assert.rejects(acceptor.accept(), (e: unknown) => e instanceof PeersError && e.kind === "Closed");
  await sa.close("Normal", "done");
  for (const d of [a, b, c]) d.close();
});
