// The creator's wait for a join (src/meet.ts waitForJoin) across a restart of the real
// signaling server with a SQLite store (./server.ts; sessions survive it): a receiver
// that joins after the restart but before the creator registered again is seen once it
// does (the server ends a registration with a `joined` for each joined session of the
// device, docs/signaling.md §6), and the creator's probe of the session after the new
// registration does not reopen it; a `joined` told again for a receiver already met is
// no new join.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { DeviceKeys, PeersError, SignalingClient, toHex, waitForJoin } from "../src/index.js";
import { restartServer, startServer, stopServers } from "./server.js";

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
