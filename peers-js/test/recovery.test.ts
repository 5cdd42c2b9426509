// The rules a transfer by code follows when a path breaks (src/recovery.ts) and how a
// sender ranks the receiver's local socket URLs (src/links.ts), without I/O: the same
// decisions as the Rust `transfer/live.rs` and `transfer/paths.rs`. The live tests:
// ./send-recover.test.ts, and tests/tests/peers_js_send.rs against `peers receive`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  afterBreak,
  CloseReason,
  isLocalHost,
  localUrls,
  MAX_HOPS,
  MAX_LOCAL_URLS,
  MAX_REJOINS,
  pathFailed,
  PeersError,
  RANK_INTERNET,
  RANK_LOCAL,
  RANK_RELAY,
  RANK_WEBRTC,
  receiverGone,
  receiverReopens,
  rejoinWait,
  socketIoTarget,
  transferError,
  urlRank,
} from "../src/index.js";

const reason = (code: CloseReason["code"], by: CloseReason["by"] = "Remote"): CloseReason => ({ code, message: "m", by });

test("a path failure is a relay cap, a transport failure or a timeout, whoever saw it", () => {
  for (const code of ["LimitExceeded", "TransportFailure", "Timeout"] as const) assert.ok(pathFailed(reason(code)) && pathFailed(reason(code, "Local")), code);
  for (const code of ["Normal", "GoingAway", "ProtocolError", "Refused"] as const) assert.ok(!pathFailed(reason(code)), code);
});

test("after a break the sender goes on over another connection, then a new relay, and stops at an answer or the bound", () => {
  const b = { reason: reason("TransportFailure"), other: true, hops: 0, moved: true };
  assert.equal(afterBreak(b), "Other");
  // The peer's handover replaced it with a better one: a move, not a hop; with nothing else, no move.
  assert.equal(afterBreak({ ...b, reason: reason("Replaced"), hops: MAX_HOPS }), "Moved");
  assert.equal(afterBreak({ ...b, other: false, reason: reason("Replaced") }), "Answer");
  assert.equal(afterBreak({ ...b, other: false }), "NewRelayIfOnline");
  // No bytes moved on the broken relay: no new one (it would break again), the receiver is taken as gone.
  assert.equal(afterBreak({ ...b, other: false, moved: false }), "Gone");
  assert.equal(afterBreak({ ...b, other: true, hops: MAX_HOPS }), "Gone");
  assert.equal(afterBreak({ ...b, other: false, hops: MAX_HOPS }), "Gone");
  // The receiver closed on purpose: its reason is the answer.
  assert.equal(afterBreak({ ...b, other: false, reason: reason("Normal") }), "Answer");
  // This side closed it (not a path failure): nothing to recover.
  assert.equal(afterBreak({ ...b, other: false, reason: reason("Normal", "Local") }), "Gone");
  // The relay died with the signaling connection (a server restart): a new one once registered again,
  // moved bytes or not, no presence check; still bounded, and an answer stays an answer.
  const dropped = { ...b, other: false, reason: reason("TransportFailure", "Local"), signalingDropped: true };
  assert.equal(afterBreak(dropped), "NewRelayAfterReconnect");
  assert.equal(afterBreak({ ...dropped, moved: false }), "NewRelayAfterReconnect");
  assert.equal(afterBreak({ ...dropped, hops: MAX_HOPS }), "Gone");
  assert.equal(afterBreak({ ...dropped, reason: reason("Normal") }), "Answer");
  assert.equal(afterBreak({ ...dropped, other: true }), "Other", "a direct path goes on where it is");
});

test("the sender waits for a returning receiver only when it vanished, within the bounds and the code's life", () => {
  const gone = new PeersError("Closed", "TransportFailure", "closed");
  assert.ok(receiverGone(gone));
  assert.ok(receiverGone(transferError("Stalled", "nothing moved")));
  for (const code of ["Declined", "Cancelled", "ChunkMismatch", "Closed", "WrongCode", "Protocol"]) assert.ok(!receiverGone(transferError(code, "x")), code);
  assert.ok(!receiverGone(new Error("not ours")));
  const now = 1_000_000;
  assert.equal(rejoinWait(gone, 0, 300_000, now + 600_000, now), 300_000);
  assert.equal(rejoinWait(gone, 0, 300_000, now + 20_000, now), 20_000, "never past the code's life");
  assert.equal(rejoinWait(gone, 0, 300_000, now, now), undefined, "the code expired");
  assert.equal(rejoinWait(gone, MAX_REJOINS - 1, 300_000, now + 600_000, now), 300_000);
  assert.equal(rejoinWait(gone, MAX_REJOINS, 300_000, now + 600_000, now), undefined);
  assert.equal(rejoinWait(gone, 0, 0, now + 600_000, now), undefined, "a zero wait fails at once");
  assert.equal(rejoinWait(transferError("Declined", "no"), 0, 300_000, now + 600_000, now), undefined);
});

test("the receiver opens a new relay only after a path failure that came after verified bytes", () => {
  assert.ok(receiverReopens(reason("LimitExceeded"), true, 0));
  assert.ok(!receiverReopens(reason("LimitExceeded"), false, 0));
  assert.ok(!receiverReopens(reason("Normal"), true, 0));
  assert.ok(!receiverReopens(reason("TransportFailure"), true, MAX_HOPS));
  // After a signaling drop its relay died with the server, bytes or not: a new one once registered again.
  assert.ok(receiverReopens(reason("TransportFailure", "Local"), false, 0, true));
  assert.ok(!receiverReopens(reason("Normal"), false, 0, true));
  assert.ok(!receiverReopens(reason("TransportFailure"), false, MAX_HOPS, true));
});

test("local socket URLs: http and https only, at most eight, loopback and private addresses first", () => {
  assert.ok(RANK_LOCAL > RANK_WEBRTC && RANK_WEBRTC > RANK_INTERNET && RANK_INTERNET > RANK_RELAY, "the Rust manager's order");
  for (const host of ["127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.1", "192.168.1.5", "169.254.0.9", "100.64.0.1", "100.127.0.1", "[::1]", "[fd00::1]", "[fe80::1]", "localhost"]) {
    assert.ok(isLocalHost(host), host);
  }
  for (const host of ["8.8.8.8", "172.32.0.1", "100.128.0.1", "192.169.0.1", "[2001:db8::1]", "example.com"]) assert.ok(!isLocalHost(host), host);
  assert.equal(urlRank("http://192.168.1.5:4000/socket.io/"), RANK_LOCAL);
  assert.equal(urlRank("https://203.0.113.7:4000/"), RANK_INTERNET);
  const urls = localUrls(["webrtc:x", "http://203.0.113.7:1/", "http://10.0.0.2:1/socket.io/", "tcp://10.0.0.3:1", "http://[::1]:1/", "not a url", "https://198.51.100.1:1/"]);
  assert.deepEqual(urls, ["http://10.0.0.2:1/socket.io/", "http://[::1]:1/", "http://203.0.113.7:1/", "https://198.51.100.1:1/"]);
  const many = Array.from({ length: 20 }, (_, i) => `http://10.0.0.${i}:1/`);
  assert.equal(localUrls(many).length, MAX_LOCAL_URLS);
  assert.deepEqual(socketIoTarget("http://10.0.0.2:4000/socket.io/"), { origin: "http://10.0.0.2:4000", path: "/socket.io/" });
  assert.deepEqual(socketIoTarget("https://10.0.0.2:4000/"), { origin: "https://10.0.0.2:4000", path: "/socket.io/" });
  assert.deepEqual(socketIoTarget("http://10.0.0.2:4000/peers/"), { origin: "http://10.0.0.2:4000", path: "/peers/" });
});
