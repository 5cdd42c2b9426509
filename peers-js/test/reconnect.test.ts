// The signaling client's reconnection (./src/reconnect.ts, sans-IO, and
// SignalingClient), against the real `peers-signaling` binary (./server.ts): a server
// SIGKILLed and started again on the same port is registered with again within
// seconds, with the same device id; what lived on the old socket (a relay, a relay
// being opened) fails with a typed error at once; a request made while down goes once
// registered; signals reach the client again and its presence watch reports again.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  DeviceKeys,
  PeersError,
  RECONNECT_FIRST_DELAY_MS,
  RECONNECT_GIVE_UP_MS,
  RECONNECT_MAX_DELAY_MS,
  reconnectDelay,
  ReconnectSchedule,
  RelaySocket,
  retryable,
  SignalingClient,
  SignalingEvents,
  SignalingState,
} from "../src/index.js";
import { nextEvent, restartServer, startServer, stopServers } from "./server.js";

const PROMPT = 15_000;

test("the backoff: the first attempt within 250 ms, doubling with jitter, capped at 2 s", () => {
  for (const r of [0, 0.5, 0.999]) {
    assert.ok(reconnectDelay(0, r) <= RECONNECT_FIRST_DELAY_MS && reconnectDelay(0, r) >= RECONNECT_FIRST_DELAY_MS / 2);
    assert.ok(reconnectDelay(1, r) <= 2 * RECONNECT_FIRST_DELAY_MS && reconnectDelay(1, r) >= RECONNECT_FIRST_DELAY_MS);
    assert.ok(reconnectDelay(50, r) <= RECONNECT_MAX_DELAY_MS && reconnectDelay(50, r) >= RECONNECT_MAX_DELAY_MS / 2);
  }
  assert.equal(reconnectDelay(3, 0, { firstDelayMs: 100, maxDelayMs: 300 }), 150);
});

test("the schedule gives up past its total time and on a refusal no retry changes", () => {
  const s = new ReconnectSchedule(0);
  let now = 0;
  let waits = 0;
  for (let w = s.next(now, 0.5); w !== undefined; w = s.next(now, 0.5, new PeersError("Transport", "Refused", "down"))) {
    now += w;
    waits += 1;
    assert.ok(waits < 1000);
  }
  assert.ok(now <= RECONNECT_GIVE_UP_MS && now > RECONNECT_GIVE_UP_MS - RECONNECT_MAX_DELAY_MS, `gave up at ${now} ms`);
  const gaveUp = s.gaveUp(now, new PeersError("Transport", "Refused", "down"));
  assert.equal(gaveUp.kind, "Transport");
  assert.equal(gaveUp.code, "ReconnectGaveUp");
  assert.equal(new ReconnectSchedule(0).next(10, 0.5, new PeersError("Signaling", "BadSignature", "no")), undefined);
  assert.equal(retryable(new PeersError("Signaling", "ServerFull", "full")), true);
  assert.equal(retryable(new PeersError("Signaling", "Replaced", "elsewhere")), false);
});

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

const next = <E extends keyof SignalingEvents>(client: SignalingClient, event: E, accept?: (v: SignalingEvents[E]) => boolean) =>
  nextEvent(client, event, PROMPT, accept);

test("a server SIGKILLed and restarted on the same port: registered again within seconds, signals and presence flow again", async () => {
  const [a, b] = await Promise.all([SignalingClient.connect(url, DeviceKeys.generate("a")), SignalingClient.connect(url, DeviceKeys.generate("b"))]);
  const absent = DeviceKeys.generate("absent").deviceIdHex;
  try {
    assert.deepEqual(await a.subscribe([b.deviceId]), [b.deviceId]);
    // A relay between a and b, and one a is opening with a device that never asks.
    const [relayA] = await Promise.all([RelaySocket.open(a, b.deviceId), RelaySocket.open(b, a.deviceId)]);
    const opening = RelaySocket.open(a, absent, { timeoutMs: 60_000 }).then(
      () => assert.fail("a relay opened with nobody"),
      (err: PeersError) => err,
    );
    await new Promise((r) => setTimeout(r, 200)); // its relay-open reached the server
    const reconnecting = next(a, "state", (s) => s.state === "reconnecting");
    const registered = next(a, "state", (s) => s.state === "registered");
    const killedAt = Date.now();
    const restarting = restartServer(url, 1_000);

    const dropped = (await reconnecting) as Extract<SignalingState, { state: "reconnecting" }>;
    assert.equal(dropped.reason.kind, "Transport");
    const relayClosed = await relayA.closed;
    assert.equal(relayClosed.code, "TransportFailure", "the relay bound to the old socket ended");
    const failed = await opening;
    assert.equal(failed.kind, "Transport", `the relay being opened failed at once: ${failed.message}`);
    assert.equal(failed.code, "Disconnected");
    assert.ok(Date.now() - killedAt < 1_000, "in-flight work failed within a second of the drop");
    assert.equal(a.registered, false);
    // A request made while down waits for the registration, within its deadline.
    const iceWhileDown = a.iceConfig();

    assert.equal(await restarting, url);
    const back = (await registered) as Extract<SignalingState, { state: "registered" }>;
    const reconnectMs = Date.now() - killedAt;
    console.log(`# reconnected ${reconnectMs} ms after the SIGKILL (server down 1000 ms; ${back.attempts} attempts, down ${back.downMs} ms)`);
    assert.ok(reconnectMs < 5_000, `registered again ${reconnectMs} ms after the kill`);
    assert.ok(a.registered);
    await iceWhileDown;

    // b reconnects too; a's watch (made again on the new server) tells when b is online, then offline.
    for (const until = Date.now() + PROMPT; !b.registered; await new Promise((r) => setTimeout(r, 50))) assert.ok(Date.now() < until, "b registered again");
    const c = await SignalingClient.connect(url, DeviceKeys.generate("c"));
    try {
      // Signalled by the same device id: the keys registered again, not a new identity.
      const arrived = next(a, "signal", (s) => s.from === c.deviceId);
      assert.equal((await c.signal(a.deviceId, "ready", { after: "restart" })).outcome, "delivered");
      assert.deepEqual((await arrived).body, { after: "restart" });
      const offline = next(a, "presence", (p) => p.device === b.deviceId && !p.online);
      b.close();
      await offline;
    } finally {
      c.close();
    }
  } finally {
    a.close();
    b.close();
  }
});

test("without reconnection (reconnect: false) a drop closes the client, as before", async () => {
  const a = await SignalingClient.connect(url, DeviceKeys.generate("a"), { reconnect: false });
  const restarting = restartServer(url, 200);
  const why = await a.closed;
  assert.equal(why.kind, "Transport");
  await restarting;
});
