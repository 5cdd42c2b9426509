import assert from "node:assert/strict";
import { after, test } from "node:test";

import { RTCPeerConnection } from "node-datachannel/polyfill";

import {
  BINDING_KIND,
  Connection,
  connectionConfig,
  DataChannelLike,
  DeviceKeys,
  maxMessageSize,
  PeerConnectionLike,
  PeersError,
  sdpForSignal,
  sha256Fingerprint,
  TrustLevel,
  WebRtcSocket,
} from "../src/index.js";

const FP = "4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3E:4B:12:34:56:78:9A:BC:DE:F0:12:2F";

test("the SHA-256 fingerprint is read from SDP as the Rust side reads it", () => {
  const sdp = `v=0\r\na=fingerprint:sha-1 AA:BB\r\nm=application 9\r\na=fingerprint:sha-256 ${FP}\r\n`;
  const fp = sha256Fingerprint(sdp);
  assert.equal(fp.length, 32);
  assert.equal(fp[0], 0x4a);
  assert.equal(fp[31], 0x2f);
  // the same fingerprint at session and media level is one fingerprint
  assert.deepEqual(sha256Fingerprint(`a=fingerprint:SHA-256 ${FP.toLowerCase()}\na=fingerprint:sha-256 ${FP}\n`), fp);
});

test("SDP without a fingerprint, with a malformed one, or with two that differ is refused", () => {
  const refused = (sdp: string) =>
    assert.throws(() => sha256Fingerprint(sdp), (e: unknown) => e instanceof PeersError && e.code === "Fingerprint");
  refused("v=0\r\n");
  refused("a=fingerprint:sha-256\r\n");
  refused("a=fingerprint:sha-256 AA:BB\r\n");
  refused(`a=fingerprint:sha-256 ${FP}:00\r\n`);
  refused(`a=fingerprint:sha-256 ${FP.replace(/4/g, "G")}\r\n`);
  refused(`a=fingerprint:sha-256 ${FP}\r\na=fingerprint:sha-256 ${FP.replace("4A", "4B")}\r\n`);
});

test("the peer's max-message-size: 65536 when absent, none for 0", () => {
  assert.equal(maxMessageSize("v=0\r\n"), 65_536);
  assert.equal(maxMessageSize("a=max-message-size:262144\r\n"), 262_144);
  assert.equal(maxMessageSize("a=max-message-size:0\r\n"), undefined);
});

test("the SDP of an offer or answer travels without candidate lines, the rest unchanged", () => {
  const sdp = `v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\r\na=mid:0\r\na=end-of-candidates\r\na=fingerprint:sha-256 ${FP}\r\n`;
  assert.equal(sdpForSignal(sdp), `v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=fingerprint:sha-256 ${FP}\r\n`);
  assert.equal(sdpForSignal("v=0\na=candidate:2 1 udp 1 ::1 9 typ host\na=mid:0\n"), "v=0\na=mid:0\n");
});

/** Every peer connection made here, closed when the file is done (a failed test must not keep the process alive). */
const made: PeerConnectionLike[] = [];
after(() => made.forEach((pc) => pc.close()));

/** Two node-datachannel peer connections on loopback, signaled in-process; the sockets on both ends. */
async function socketPair(): Promise<{ dialer: WebRtcSocket; acceptor: WebRtcSocket; raw: [DataChannelLike, DataChannelLike]; pcs: PeerConnectionLike[] }> {
  const a = new RTCPeerConnection({ iceServers: [] }) as unknown as PeerConnectionLike;
  const b = new RTCPeerConnection({ iceServers: [] }) as unknown as PeerConnectionLike;
  made.push(a, b);
  const trickle = (from: PeerConnectionLike, to: PeerConnectionLike, ready: Promise<void>) => {
    from.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (c?.candidate) void ready.then(() => to.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdpMid ?? "0" }));
    };
  };
  let bRemote!: () => void;
  let aRemote!: () => void;
  trickle(a, b, new Promise((r) => (bRemote = r)));
  trickle(b, a, new Promise((r) => (aRemote = r)));
  const open = (ch: DataChannelLike) =>
    ch.readyState === "open" ? Promise.resolve(ch) : new Promise<DataChannelLike>((r) => (ch.onopen = () => r(ch)));
  const accepted = new Promise<DataChannelLike>((resolve) => {
    b.ondatachannel = (ev) => resolve(open(ev.channel));
  });
  const channel = a.createDataChannel("peers", { ordered: true });
  const dialed = open(channel);
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription({ type: "offer", sdp: sdpForSignal(a.localDescription!.sdp) });
  await b.setLocalDescription(await b.createAnswer());
  bRemote(); // candidates once the answer exists (see WebRtcAcceptor)
  await a.setRemoteDescription({ type: "answer", sdp: sdpForSignal(b.localDescription!.sdp) });
  aRemote();
  const [ca, cb] = await Promise.all([dialed, accepted]);
  return { dialer: new WebRtcSocket(a, ca), acceptor: new WebRtcSocket(b, cb), raw: [ca, cb], pcs: [a, b] };
}

test("frames cross a real data channel in order, an empty frame included; the binding is mirrored", async () => {
  const { dialer, acceptor } = await socketPair();
  const bd = dialer.info.security.channelBinding!;
  const ba = acceptor.info.security.channelBinding!;
  assert.equal(bd.kind, BINDING_KIND);
  assert.deepEqual([bd.local, bd.remote], [ba.remote, ba.local]);
  assert.notDeepEqual(bd.local, bd.remote);
  assert.equal(dialer.info.security.confidential, true);
  const max = dialer.info.maxFrameSize;
  assert.ok(max >= 65_536 && max <= 256 * 1024, `max frame ${max}`);
  const frames = [new Uint8Array([1]), new Uint8Array(0), new Uint8Array(max).fill(7), new Uint8Array(1000).fill(3)];
  for (const f of frames) await dialer.send(f);
  for (const f of frames) assert.deepEqual(await acceptor.recv(), f);
  await assert.rejects(dialer.send(new Uint8Array(max + 1)), (e: unknown) => e instanceof PeersError && e.code === "FrameTooLarge");
  await acceptor.send(new Uint8Array([9, 9]));
  assert.deepEqual(await dialer.recv(), new Uint8Array([9, 9]));
  await dialer.close("Normal", "done here");
  const reason = await acceptor.closed;
  assert.deepEqual(reason, { code: "Normal", message: "done here", by: "Remote" });
  await assert.rejects(acceptor.recv(), (e: unknown) => e instanceof PeersError && e.kind === "Closed");
  await assert.rejects(dialer.send(new Uint8Array([1])), (e: unknown) => e instanceof PeersError && e.kind === "Closed");
});

test("a control message over 1 KiB closes the socket with ProtocolError, and the peer is told", async () => {
  const { dialer, acceptor, raw } = await socketPair();
  raw[0].send(JSON.stringify({ t: "ping", n: 1, pad: "x".repeat(2000) }));
  const reason = await acceptor.closed;
  assert.equal(reason.code, "ProtocolError");
  assert.equal(reason.by, "Local");
  const told = await dialer.closed;
  assert.equal(told.code, "ProtocolError");
  assert.equal(told.by, "Remote");
});

test("the handshake over WebRTC binds the fingerprints and skips the AEAD only when both sides ask", async () => {
  for (const bothSkip of [true, false]) {
    const { dialer, acceptor } = await socketPair();
    const ka = DeviceKeys.generate("alice");
    const kb = DeviceKeys.generate("bob");
    const ca = await connectionConfig(ka, () => TrustLevel.Trusted);
    const cb = await connectionConfig(kb, () => TrustLevel.Trusted);
    cb.handshake.skipAeadWhenBound = bothSkip;
    const [a, b] = await Promise.all([Connection.connect(dialer, ca, kb.deviceId), Connection.accept(acceptor, cb)]);
    assert.equal(a.cipher === undefined, bothSkip);
    assert.equal(b.cipher === undefined, bothSkip);
    b.expose("twice", (n) => (n as number) * 2);
    assert.equal(await a.emit("twice", 21), 42);
    await a.close("Normal", "bye");
    assert.equal((await b.closed).message, "bye");
  }
});
