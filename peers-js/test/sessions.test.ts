// Sessions joined by a code (docs/signaling.md §6) through the real signaling server
// (./server.ts): create, a forgiving join, the creator told, one receiver only, the
// creator refused as its own receiver, closing with a token (and a wrong one), three
// wrong secrets lock a session, and a pake session's number-only code, reopened by its
// creator (the receiver's token refused) and joined again. All joins come
// from one address, under the server's 10 joins a minute per address.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { DeviceKeys, PeersError, SessionChange, SignalingClient } from "../src/index.js";
import { startServer, stopServers } from "./server.js";

const PROMPT = 5000;

let url = "";
before(async () => {
  url = await startServer();
});
after(stopServers);

async function device(name: string): Promise<SignalingClient> {
  return SignalingClient.connect(url, DeviceKeys.generate(name));
}

function nextSession(client: SignalingClient): Promise<SessionChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no session event within ${PROMPT} ms`)), PROMPT);
    const listener = (e: SessionChange) => {
      clearTimeout(timer);
      client.off("session", listener);
      resolve(e);
    };
    client.on("session", listener);
  });
}

const refusedWith = (code: string) => (e: unknown) => e instanceof PeersError && e.kind === "Signaling" && e.code === code;

test("a session is created, joined by its code as a person types it, and closed by the receiver's token", async () => {
  const [a, b, c] = await Promise.all([device("a"), device("b"), device("c")]);
  const created = await a.createSession({ ttlMs: 60_000 });
  assert.match(created.code, /^\d{4}-[0-9A-HJKMNP-TV-Z]{6}$/);
  assert.ok(created.expiresAt > Date.now() && created.expiresAt <= Date.now() + 61_000, "the deadline follows the ttl");
  const joinedEvent = nextSession(a);
  const typed = ` ${created.code.toLowerCase().replace("-", " - ")} `;
  const joined = await b.joinSession(typed);
  assert.equal(joined.transferId, created.transferId);
  assert.equal(joined.sender, a.deviceId, "the receiver learns whom to signal");
  assert.deepEqual(await joinedEvent, { transferId: created.transferId, state: "joined", peer: b.deviceId });

  await assert.rejects(c.joinSession(created.code), refusedWith("SessionTaken"));
  await assert.rejects(a.closeSession(created.transferId, "00".repeat(32)), refusedWith("BadToken"));
  const closedEvent = nextSession(a);
  await b.closeSession(joined.transferId, joined.receiverToken);
  const closed = await closedEvent;
  assert.equal(closed.transferId, created.transferId);
  assert.equal(closed.state, "closed");
  await assert.rejects(c.joinSession(created.code), refusedWith("SessionClosed"));

  const own = await a.createSession();
  await assert.rejects(a.joinSession(own.code), refusedWith("SelfAddressed"));
  await assert.rejects(a.joinSession(""), (e: unknown) => e instanceof PeersError && e.kind === "InvalidInput");
  for (const client of [a, b, c]) client.close();
});

test("three wrong secrets lock a session (its creator told), and a pake session is joined by its number", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  const created = await a.createSession();
  const slot = created.code.slice(0, 4);
  const wrong = created.code.endsWith("000000") ? "111111" : "000000";
  const locked = nextSession(a);
  for (let i = 0; i < 3; i++) await assert.rejects(b.joinSession(`${slot}-${wrong}`), refusedWith("SessionNotFound"));
  const event = await locked;
  assert.equal(event.state, "closed");
  assert.match(event.reason ?? "", /locked/);
  await assert.rejects(b.joinSession(created.code), (e: unknown) => e instanceof PeersError && e.kind === "Signaling");

  const pake = await a.createSession({ kind: "pake" });
  assert.match(pake.code, /^[1-9]\d{0,3}$|^0$/, "a number alone: the words never reach the server");
  const first = nextSession(a);
  const joined = await b.joinSession(pake.code);
  assert.equal(joined.sender, a.deviceId);
  assert.equal((await first).state, "joined");
  await assert.rejects(a.createSession({ ttlMs: -1 }), (e: unknown) => e instanceof PeersError && e.kind === "InvalidInput");

  // Reopened by its creator (a receiver that vanished, §6): the same number is joined again, the deadline kept.
  await assert.rejects(a.reopenSession(pake.transferId, joined.receiverToken), refusedWith("BadToken"));
  const rejoined = nextSession(a);
  assert.equal(await a.reopenSession(pake.transferId, pake.senderToken), pake.expiresAt);
  await assert.rejects(b.closeSession(pake.transferId, joined.receiverToken), refusedWith("BadToken"));
  const again = await b.joinSession(pake.code);
  assert.equal((await rejoined).state, "joined");
  assert.equal(again.transferId, pake.transferId);
  await assert.rejects(a.reopenSession(created.transferId, created.senderToken), (e: unknown) => e instanceof PeersError && e.kind === "Signaling");
  a.close();
  b.close();
});
