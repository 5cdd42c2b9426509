// Pairing by code (src/pair.ts): the groups' checks without I/O, and two peers-js
// devices paired through the real signaling server (./server.ts): each gets the
// other's long-term device (with its advertised URLs) and the groups; a wrong code
// fails both sides and nothing is returned. (Against `peers pair` / `peers join`:
// tests/tests/peers_js_send.rs.)
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { checkGroups, DeviceKeys, equal, joinByCode, MAX_PAIR_GROUPS, pairByCode, PeersError, WORDS } from "../src/index.js";
import { startServer, stopServers } from "./server.js";

const refused = (code: string) => (err: unknown) => err instanceof PeersError && err.kind === "Transfer" && err.code === code;

test("a pairing names 1 to 64 valid group ids", () => {
  assert.deepEqual(checkGroups(["home", "a.b-c_9"]), ["home", "a.b-c_9"]);
  assert.equal(checkGroups(Array.from({ length: MAX_PAIR_GROUPS }, (_, i) => `g${i}`)).length, MAX_PAIR_GROUPS);
  for (const bad of [[], Array.from({ length: MAX_PAIR_GROUPS + 1 }, (_, i) => `g${i}`), [""], ["a b"], ["x".repeat(65)], [7], "home", null]) {
    assert.throws(() => checkGroups(bad), refused("Protocol"), JSON.stringify(bad));
  }
});

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

test("two peers-js devices pair by code, each with the other's long-term device", async () => {
  const alice = DeviceKeys.generate("alice");
  const bob = DeviceKeys.generate("bob");
  const handle = await pairByCode(url, alice, ["home", "photos"], { addresses: ["http://10.0.0.1:7700/"] });
  const joined = await joinByCode(url, handle.code.toUpperCase().replaceAll("-", " "), bob, { addresses: ["http://10.0.0.2:7700/"] });
  const paired = await handle.done;
  assert.ok(equal(joined.device.device_id, alice.deviceId));
  assert.deepEqual(joined.device.addresses, ["http://10.0.0.1:7700/"]);
  assert.equal(joined.device.user_id, "alice");
  assert.deepEqual(joined.groups, ["home", "photos"]);
  assert.ok(equal(paired.device.device_id, bob.deviceId));
  assert.deepEqual(paired.device.addresses, ["http://10.0.0.2:7700/"]);
  assert.deepEqual(paired.groups, ["home", "photos"]);
});

test("a wrong code pairs nothing on either side", async () => {
  const handle = await pairByCode(url, DeviceKeys.generate("alice"), ["home"]);
  const [number, first, second] = handle.code.split("-");
  const other = WORDS.find((w) => w !== second)!;
  await assert.rejects(joinByCode(url, `${number}-${first}-${other}`, DeviceKeys.generate("mallory")), refused("WrongCode"));
  await assert.rejects(handle.done, refused("WrongCode"));
  await assert.rejects(joinByCode(url, "12-notaword-maple", DeviceKeys.generate("mallory")), refused("BadCode"));
});
