// Relay pacing (src/pace.ts): the token bucket without I/O, the `rate` of
// relay-open, and a relay through a real server with a low device rate that a
// paced sender gets through (unpaced, the burst alone would close the relay with
// LimitExceeded).
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { DEFAULT_RELAY_RATE, DeviceKeys, Pacer, parseRelayEvent, relayEventUnits, RelaySocket, SignalingClient } from "../src/index.js";
import { startServer, stopServers } from "./server.js";

after(stopServers);

test("units: one per started 16 KiB of frame data", () => {
  assert.equal(relayEventUnits(0), 1);
  assert.equal(relayEventUnits(16 * 1024 - 1), 1);
  assert.equal(relayEventUnits(16 * 1024), 2);
  assert.equal(relayEventUnits(64 * 1024), 5);
});

test("the bucket spends 3/4 of the burst at once, then 3/4 of the rate", () => {
  const pacer = new Pacer({ units_per_second: 400, burst_units: 40 });
  assert.equal(pacer.reserve(0, 30), 0, "the burst's share pays at once");
  assert.equal(pacer.reserve(0, 30), 100, "30 units in debt at 300/s: 100 ms");
  assert.equal(pacer.reserve(100, 0), 0, "paid off after the wait");
  assert.equal(pacer.reserve(1000, 1000), ((1000 - 30) / 300) * 1000, "the refill stops at the burst");
  const defaults = new Pacer();
  assert.equal(defaults.reserve(0, DEFAULT_RELAY_RATE.burst_units * 0.75), 0);
  assert.ok(defaults.reserve(0, 1) > 0);
});

test("a lower rate from a server applies at once, a higher one does not add tokens", () => {
  const pacer = new Pacer();
  pacer.setRate({ units_per_second: 16, burst_units: 16 });
  assert.equal(pacer.reserve(0, 12), 0);
  assert.equal(pacer.reserve(0, 12), 1000, "12 units at 12/s");
});

test("relay-open's rate is parsed, optional, and refused when malformed", () => {
  const peer = "ab".repeat(20);
  const open = (rate: unknown) => parseRelayEvent("relay-open", [{ relay: 1, peer, max_frame: 65536, ...(rate === undefined ? {} : { rate }) }]);
  assert.deepEqual(open({ units_per_second: 800, burst_units: 3200 }), { type: "open", relay: 1, peer, maxFrame: 65536, rate: { units_per_second: 800, burst_units: 3200 } });
  assert.equal((open(undefined) as { rate?: unknown }).rate, undefined, "older servers send none");
  for (const bad of [null, 5, { units_per_second: 0, burst_units: 1 }, { units_per_second: 1 }, { units_per_second: -1, burst_units: 1 }]) {
    assert.throws(() => open(bad), `rate ${JSON.stringify(bad)}`);
  }
});

test("a paced sender gets 4 MiB through a server whose device rate is below its burst", async () => {
  // 2 requests/s and a burst of 16 per device: 32 units/s, a burst of 256 units (less
  // the registration's and relay-open's 16 each); 64 frames of 64 KiB cost 320 units:
  // unpaced, the relay closes with LimitExceeded within the first second.
  const url = await startServer(["--device-rate", "2", "--device-burst", "16"]);
  const [a, b] = await Promise.all(["a", "b"].map((n) => SignalingClient.connect(url, DeviceKeys.generate(n))));
  const [sa, sb] = await Promise.all([RelaySocket.open(a!, b!.deviceId), RelaySocket.open(b!, a!.deviceId)]);
  const max = sa.info.maxFrameSize;
  const frames = Array.from({ length: 64 }, (_, i) => new Uint8Array(max).fill(i));
  const sending = Promise.all(frames.map((f) => sa.send(f)));
  for (const f of frames) assert.deepEqual(await sb.recv(), f);
  await sending;
  await sa.close("Normal", "paced");
  assert.deepEqual(await sb.closed, { code: "Normal", message: "paced", by: "Remote" });
  a!.close();
  b!.close();
});
