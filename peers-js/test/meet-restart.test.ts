// The creator's wait for a join (src/meet.ts waitForJoin) across a restart of the real
// signaling server with a SQLite store (./server.ts; sessions survive it): a receiver
// that joins after the restart but before the creator registered again is seen once it
// does (the server ends a registration with a `joined` for each joined session of the
// device, docs/signaling.md §6), and the creator's probe of the session after the new
// registration does not reopen it; a `joined` told again for a receiver already met is
// no new join. A join refused SessionTaken is tried again (joinCode) for a bounded time.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { DeviceKeys, joinCode, PeersError, SignalingClient, toHex, waitForJoin } from "../src/index.js";
import { nextEvent, restartServer, startServer, stopServers } from "./server.js";

const dir = mkdtempSync(join(tmpdir(), "peers-meet-"));
const args = ["--data-dir", dir];
let url = "";
before(async () => {
  url = await startServer(args);
});
after(() => {
  stopServers();
  rmSync(dir, { recursive: true, force: true });
});

test("a join made while the creator registers again after a restart is seen, once, and the session stays joined", async () => {
  // The creator registers again 2 to 4 s after the drop; the receiver joins at once.
  const creator = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"), { reconnect: { firstDelayMs: 4_000, maxDelayMs: 4_000 } });
  const created = await creator.createSession({ kind: "pake" });
  const waiting = waitForJoin(creator, created.transferId, 60_000, undefined, created.senderToken);
  const killedAt = Date.now();
  await restartServer(url, 0, args);
  const receiverKeys = DeviceKeys.generate("peers-transfer");
  const receiver = await SignalingClient.connect(url, receiverKeys);
  await receiver.joinSession(created.code);
  const joinedAfter = Date.now() - killedAt;
  assert.ok(joinedAfter < 2_000, `joined ${joinedAfter} ms after the kill: the creator may be back already`);
  assert.equal(await waiting, toHex(receiverKeys.deviceId));
  // The probe after the new registration left the session joined: a second joiner is refused.
  const intruder = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"));
  await assert.rejects(intruder.joinSession(created.code), (err: PeersError) => err.code === "SessionTaken");

  // Another restart: the creator is told of the same join again; waiting with that
  // receiver met, it is no new join.
  const again = waitForJoin(creator, created.transferId, 10_000, undefined, created.senderToken, [toHex(receiverKeys.deviceId)]);
  const told = new Promise<string | undefined>((resolve) => creator.on("session", (change) => change.state === "joined" && resolve(change.peer)));
  await restartServer(url, 0, args);
  assert.equal(await told, toHex(receiverKeys.deviceId), "the registration told the join again");
  await assert.rejects(again, (err: PeersError) => err.code === "Timeout");
  for (const c of [creator, receiver, intruder]) c.close();
});

test("a join refused SessionTaken is tried again until the creator reopens the session, within a bound", async () => {
  const creator = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"));
  const created = await creator.createSession({ kind: "pake" });
  const first = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"));
  await first.joinSession(created.code);
  const secondKeys = DeviceKeys.generate("peers-transfer");
  const second = await SignalingClient.connect(url, secondKeys);
  const started = Date.now();
  // The creator reopens the session after 1.5 s (it noticed its receiver is gone).
  const reopened = new Promise<void>((r) => setTimeout(() => void creator.reopenSession(created.transferId, created.senderToken).then(() => r()), 1_500));
  const told = nextEvent(creator, "session", 10_000, (c) => c.state === "joined" && c.peer === toHex(secondKeys.deviceId));
  const joined = await joinCode(second, created.code, [1_000, 1_000, 1_000]);
  await reopened;
  assert.equal(joined.transferId, created.transferId);
  const took = Date.now() - started;
  assert.ok(took >= 1_500 && took < 4_000, `joined after ${took} ms`);
  await told;

  // Never reopened: the same refusal once the pauses are spent.
  const third = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"));
  const refusedFrom = Date.now();
  await assert.rejects(joinCode(third, created.code, [300, 300]), (err: PeersError) => err.code === "SessionTaken");
  assert.ok(Date.now() - refusedFrom >= 600, "both pauses were waited");
  for (const c of [creator, first, second, third]) c.close();
});
