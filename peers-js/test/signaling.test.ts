// The signaling client against the real `peers-signaling` binary (./server.ts
// starts it on a loopback port with an in-memory store).
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";

import {
  DeviceKeys,
  PeersError,
  SignalingClient,
  SignalingEvents,
  serverOrigin,
  signalingError,
  SIGNALING_ERROR_CODES,
} from "../src/index.js";
import { nextEvent, startServer, stopServers } from "./server.js";

const TURN_SECRET = "a-turn-secret-for-tests";
const PROMPT = 5000;

let url = "";
before(async () => {
  url = await startServer(["--stun-url", "stun:127.0.0.1:3478", "--turn-url", "turn:127.0.0.1:3478", "--turn-secret", TURN_SECRET]);
});
after(stopServers);

const next = <E extends keyof SignalingEvents>(client: SignalingClient, event: E, accept?: (v: SignalingEvents[E]) => boolean) =>
  nextEvent(client, event, PROMPT, accept);

async function refused(p: Promise<unknown>, code: string): Promise<PeersError> {
  const err = await p.then(
    () => assert.fail(`accepted, expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof PeersError, String(err));
  assert.equal(err.code, code, err.message);
  return err;
}

test("the signed origin is scheme://host:port, lowercase, port always written", () => {
  assert.equal(serverOrigin("https://Signal.Example/"), "https://signal.example:443");
  assert.equal(serverOrigin("http://127.0.0.1:7000"), "http://127.0.0.1:7000");
  assert.equal(serverOrigin("ws://host"), "http://host:80");
  assert.equal(serverOrigin("wss://[::1]:9/x"), "https://[::1]:9");
  assert.throws(() => serverOrigin("ftp://host"), PeersError);
});

test("every error code of the protocol has its own PeersError code; an unknown one is Unknown", () => {
  const codes = Object.values(SIGNALING_ERROR_CODES);
  assert.equal(new Set(codes).size, codes.length);
  assert.equal(signalingError("queue_full", "x").code, "QueueFull");
  const unknown = signalingError("brand_new_code", "x");
  assert.equal(unknown.code, "Unknown");
  assert.equal(unknown.detail.wire, "brand_new_code");
});

test("two devices register, see each other's presence both ways and exchange signals", async () => {
  const alice = await SignalingClient.connect(url, DeviceKeys.generate("alice"));
  const bobKeys = DeviceKeys.generate("bob");
  assert.deepEqual(await alice.subscribe([bobKeys.deviceIdHex]), []);
  const bobOnline = next(alice, "presence", (p) => p.device === bobKeys.deviceIdHex);
  const bob = await SignalingClient.connect(url, bobKeys);
  assert.equal(bob.deviceId, bobKeys.deviceIdHex);
  assert.equal(bob.queued, 0);
  assert.deepEqual(await bobOnline, { device: bob.deviceId, online: true });
  assert.deepEqual(await bob.subscribe([alice.deviceId]), [alice.deviceId]);

  const arrives = next(bob, "signal");
  const result = await alice.signal(bob.deviceId, "offer", { sdp: "v=0 test", type: "offer" });
  assert.equal(result.outcome, "delivered");
  const signal = await arrives;
  assert.equal(signal.id, result.id);
  assert.equal(signal.from, alice.deviceId);
  assert.equal(signal.kind, "offer");
  assert.deepEqual(signal.body, { sdp: "v=0 test", type: "offer" });
  assert.equal(signal.queued, false);

  const back = next(alice, "signal");
  await bob.signal(alice.deviceId, "ice-candidate", { candidate: "", sdpMid: "0", sdpMLineIndex: 0 }, { id: "bob.1" });
  assert.equal((await back).id, "bob.1");

  const aliceGone = next(bob, "presence", (p) => p.device === alice.deviceId);
  alice.close();
  assert.equal((await alice.closed).code, "Closed");
  assert.deepEqual(await aliceGone, { device: alice.deviceId, online: false });
  await bob.unsubscribe([alice.deviceId]);
  bob.close();
});

test("a signal to an offline device is queued, delivered on its registration, and its sender told", async () => {
  const alice = await SignalingClient.connect(url, DeviceKeys.generate("alice"));
  const carolKeys = DeviceKeys.generate("carol");
  const queued = await alice.signal(carolKeys.deviceIdHex, "ready", { n: 1 }, { ttlMs: 30_000 });
  assert.equal(queued.outcome, "queued");
  assert.ok(queued.expiresAt! > Date.now() && queued.expiresAt! <= Date.now() + 31_000, String(queued.expiresAt));
  const expired = await alice.signal(carolKeys.deviceIdHex, "ready", { n: 2 }, { ttlMs: 0 });
  assert.equal(expired.outcome, "expired");

  const told = next(alice, "outcome");
  const carol = await SignalingClient.connect(url, carolKeys);
  assert.equal(carol.queued, 1);
  // Listening after connect resolved still sees the queued message.
  const signal = await next(carol, "signal");
  assert.equal(signal.id, queued.id);
  assert.equal(signal.queued, true);
  assert.deepEqual(signal.body, { n: 1 });
  const outcome = await told;
  assert.equal(outcome.id, queued.id);
  assert.equal(outcome.to, carol.deviceId);
  assert.equal(outcome.outcome, "delivered");
  alice.close();
  carol.close();
});

test("a queued signal whose time runs out gives an expired outcome, also to a sender that was offline", async () => {
  const aliceKeys = DeviceKeys.generate("alice");
  let alice = await SignalingClient.connect(url, aliceKeys);
  const nobody = DeviceKeys.generate("nobody").deviceIdHex;
  const live = await alice.signal(nobody, "cancel", {}, { ttlMs: 300 });
  assert.equal(live.outcome, "queued");
  const first = await next(alice, "outcome");
  assert.deepEqual([first.id, first.outcome, first.to], [live.id, "expired", nobody]);

  const later = await alice.signal(nobody, "cancel", {}, { ttlMs: 300 });
  alice.close();
  await new Promise((r) => setTimeout(r, 600));
  alice = await SignalingClient.connect(url, aliceKeys);
  const kept = await next(alice, "outcome");
  assert.deepEqual([kept.id, kept.outcome], [later.id, "expired"]);
  alice.close();
});

test("refusals come back as typed codes and leave the connection usable", async () => {
  const alice = await SignalingClient.connect(url, DeviceKeys.generate("alice"));
  const bob = DeviceKeys.generate("bob").deviceIdHex;
  await refused(alice.signal(alice.deviceId, "ready", {}), "SelfAddressed");
  await refused(alice.signal(bob, "shout", {}), "UnknownKind");
  await refused(alice.signal(bob, "offer", { type: "offer" }), "BadRequest");
  await refused(alice.signal(bob, "ready", { pad: "x".repeat(64 * 1024) }), "TooLarge");
  await refused(alice.request("register", { public_key: "", origin: "", signature: "" }), "AlreadyRegistered");
  const unknown = await refused(alice.request("no-such-event", {}), "UnknownEvent");
  assert.equal(unknown.kind, "Signaling");
  assert.equal(unknown.detail.wire, "unknown_event");
  // Checked before sending: a malformed id or recipient never reaches the server.
  await refused(alice.signal("not-a-device", "ready", {}), "InvalidInput");
  await refused(alice.signal(bob, "ready", {}, { id: "spaces are not allowed" }), "InvalidInput");
  assert.equal((await alice.signal(bob, "ready", {}, { ttlMs: 0 })).outcome, "expired");
  alice.close();
});

test("ice-config hands out STUN and TURN with coturn REST credentials for this device", async () => {
  const alice = await SignalingClient.connect(url, DeviceKeys.generate("alice"));
  const config = await alice.iceConfig();
  const turn = config.iceServers.find((s) => s.urls.includes("turn:127.0.0.1:3478"));
  assert.ok(config.iceServers.some((s) => s.urls.includes("stun:127.0.0.1:3478")), JSON.stringify(config));
  assert.ok(turn && turn.username && turn.credential, JSON.stringify(config));
  const [expiry, device] = turn.username.split(":");
  assert.equal(device, alice.deviceId);
  assert.equal(Number(expiry), config.expiresAt);
  assert.ok(config.expiresAt! > Date.now() / 1000);
  assert.equal(turn.credential, createHmac("sha1", TURN_SECRET).update(turn.username).digest("base64"));
  alice.close();
});

test("registering the same device again replaces the older connection, which is told why", async () => {
  const keys = DeviceKeys.generate("alice");
  const old = await SignalingClient.connect(url, keys);
  const notice = next(old, "notice");
  const fresh = await SignalingClient.connect(url, keys);
  assert.equal((await notice).code, "Replaced");
  const why = await old.closed;
  assert.equal(why.code, "Replaced");
  await refused(old.subscribe([]), "Replaced");
  assert.deepEqual(await fresh.subscribe([keys.deviceIdHex]), [keys.deviceIdHex]);
  fresh.close();
});

test("a server that answers to another origin refuses the registration with BadSignature", async () => {
  const other = await startServer(["--public-origin", "https://signal.example"]);
  await refused(SignalingClient.connect(other, DeviceKeys.generate("alice")), "BadSignature");
});
