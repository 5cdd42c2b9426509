// The handover between a transfer's connections without I/O (src/links.ts): the
// leader picks and announces, the follower follows, retired links close once both
// sides retired them; and the SDP's announced message size (sdpForSignal).
import assert from "node:assert/strict";
import { test } from "node:test";

import { idLess, LinkTable, MAX_LINKS, RANK_RELAY, RANK_WEBRTC, sdpForSignal } from "../src/index.js";

const low = new Uint8Array(20).fill(1);
const high = new Uint8Array(20).fill(2);

test("the smaller device id leads, in byte order", () => {
  assert.equal(idLess(low, high), true);
  assert.equal(idLess(high, low), false);
  assert.equal(new LinkTable(low, high).leads, true);
  assert.equal(new LinkTable(high, low).leads, false);
});

test("leader: a better adopted link becomes active, is announced, and the old one retires and closes", () => {
  const t = new LinkTable(low, high);
  assert.deepEqual(t.added(1, RANK_RELAY), [{ kind: "SendGroupReady", link: 1 }]);
  assert.equal(t.active, 1, "the first link carries traffic at once");
  assert.deepEqual(t.groupReady(1), [], "one link: nothing to announce");
  assert.deepEqual(t.added(2, RANK_WEBRTC), [{ kind: "SendGroupReady", link: 2 }]);
  assert.equal(t.active, 1, "not before the peer adopted it");
  assert.deepEqual(t.groupReady(2), [
    { kind: "SendTakeover", link: 2 },
    { kind: "Retire", link: 1 },
  ]);
  assert.equal(t.active, 2);
  assert.deepEqual(t.groupReady(2), [], "a second groupReady changes nothing");
  assert.deepEqual(t.peerRetired(1), [{ kind: "Close", link: 1, code: "Replaced", why: "retired by both sides" }]);
  assert.deepEqual(t.closed(1), []);
  assert.equal(t.size, 1);
});

test("leader: a worse link is retired, the active one kept", () => {
  const t = new LinkTable(low, high);
  t.added(1, RANK_WEBRTC);
  t.groupReady(1);
  t.added(2, RANK_RELAY);
  assert.deepEqual(t.groupReady(2), [
    { kind: "SendTakeover", link: 1 },
    { kind: "Retire", link: 2 },
  ]);
  assert.equal(t.active, 1);
});

test("follower: ignores adoption, follows the takeover, and a lost takeover is made up by a retire", () => {
  const t = new LinkTable(high, low);
  t.added(1, RANK_RELAY);
  t.added(2, RANK_WEBRTC);
  assert.deepEqual(t.groupReady(2), [], "the follower never picks");
  assert.deepEqual(t.takeover(2), [{ kind: "Retire", link: 1 }]);
  assert.equal(t.active, 2);
  assert.deepEqual(t.peerRetired(1), [{ kind: "Close", link: 1, code: "Replaced", why: "retired by both sides" }]);

  const lost = new LinkTable(high, low);
  lost.added(1, RANK_RELAY);
  lost.added(2, RANK_WEBRTC);
  // The takeover on 2 never arrived; the peer retires 1, the active link.
  assert.deepEqual(lost.peerRetired(1), [
    { kind: "Retire", link: 1 },
    { kind: "Close", link: 1, code: "Replaced", why: "retired by both sides" },
  ]);
  assert.equal(lost.active, 2);
});

test("a retired only link keeps carrying; a closed active link hands over to the best left", () => {
  const t = new LinkTable(high, low);
  t.added(1, RANK_RELAY);
  assert.deepEqual(t.peerRetired(1), []);
  assert.equal(t.active, 1);
  const u = new LinkTable(low, high);
  u.added(1, RANK_RELAY);
  u.added(2, RANK_WEBRTC);
  u.added(3, RANK_RELAY);
  u.closed(1);
  assert.equal(u.active, 2);
});

test("links to one device are bounded", () => {
  const t = new LinkTable(low, high);
  for (let i = 1; i <= MAX_LINKS; i++) t.added(i, RANK_RELAY);
  assert.deepEqual(t.added(MAX_LINKS + 1, RANK_RELAY), [{ kind: "Close", link: MAX_LINKS + 1, code: "LimitExceeded", why: `more than ${MAX_LINKS} connections to one device` }]);
});

test("sdpForSignal drops candidates and caps the announced message size", () => {
  const sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\na=max-message-size:262144\r\na=end-of-candidates\r\n";
  assert.equal(sdpForSignal(sdp), "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:262144\r\n");
  assert.equal(sdpForSignal(sdp, 65536), "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:65536\r\n");
  assert.equal(sdpForSignal(sdp, 1 << 20), "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=max-message-size:262144\r\n", "never raised");
  assert.equal(sdpForSignal("v=0\r\nm=application 9\r\n", 65536), "v=0\r\nm=application 9\r\na=max-message-size:65536\r\n", "added when absent");
});
