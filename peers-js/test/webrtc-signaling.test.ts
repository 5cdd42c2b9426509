// The WebRTC dialer and acceptor through the real signaling server (./server.ts),
// with node-datachannel's RTCPeerConnection: hostile signals to an acceptor are
// refused with their sender told, a refusing and a silent peer end a dial, and a
// real dial works after all of it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { RTCPeerConnection } from "node-datachannel/polyfill";

import {
  DeviceKeys,
  dialWebRtc,
  IncomingSignal,
  PeerConnectionLike,
  PeersError,
  SignalingClient,
  WebRtcAcceptor,
} from "../src/index.js";
import { startServer, stopServers } from "./server.js";

const PROMPT = 5000;
const made: RTCPeerConnection[] = [];
const createPeerConnection = (config: { iceServers: unknown[] }) => {
  const pc = new RTCPeerConnection(config as never);
  made.push(pc);
  return pc as unknown as PeerConnectionLike;
};

let url = "";
before(async () => {
  url = await startServer();
});
after(() => {
  made.forEach((pc) => pc.close());
  stopServers();
});

async function device(name: string): Promise<SignalingClient> {
  return SignalingClient.connect(url, DeviceKeys.generate(name));
}

/** The next signal `client` receives that `accept` takes, within PROMPT. */
function nextSignal(client: SignalingClient, accept: (s: IncomingSignal) => boolean = () => true): Promise<IncomingSignal> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no signal within ${PROMPT} ms`)), PROMPT);
    const listener = (s: IncomingSignal) => {
      if (!accept(s)) return;
      clearTimeout(timer);
      client.off("signal", listener);
      res(s);
    };
    client.on("signal", listener);
  });
}

const SDP_WITHOUT_FINGERPRINT = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

test("hostile signals to an acceptor are refused, the sender of an offer or answer told, and a real dial works after them", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  const refusals: { from: string; code: string }[] = [];
  let refused: (() => void) | undefined;
  const onRefusal = (r: { from: string; code: string }) => {
    refusals.push(r);
    refused?.();
  };
  const acceptor = new WebRtcAcceptor(b, { createPeerConnection, iceServers: [], onRefusal });
  // (an offer without a string sdp, or with one over 32 KiB, never gets here: the
  // server refuses it as bad_request / too_large)
  const cases: { kind: string; body: Record<string, unknown>; code: string; told: boolean }[] = [
    { kind: "offer", body: { session: "not a session!", sdp: "v=0" }, code: "BadSessionId", told: true },
    { kind: "offer", body: { session: "s1", sdp: SDP_WITHOUT_FINGERPRINT }, code: "BadSdp", told: true },
    { kind: "offer", body: { session: "s2", sdp: "hello" }, code: "BadSdp", told: true },
    { kind: "answer", body: { session: "s5", sdp: "v=0" }, code: "UnknownSession", told: true },
    { kind: "ice-candidate", body: { session: "s6", candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host" }, code: "UnknownSession", told: false },
  ];
  for (const c of cases) {
    const before = refusals.length;
    const told = c.told ? nextSignal(a, (s) => s.kind === "error") : undefined;
    await a.signal(b.deviceId, c.kind, c.body);
    if (told) {
      const error = await told;
      assert.equal(error.from, b.deviceId);
      assert.match(String(error.body.message), new RegExp(c.code), `${c.kind} ${c.code}`);
    } else {
      if (refusals.length === before) await new Promise<void>((r) => (refused = r));
    }
    assert.deepEqual(refusals.slice(before).map((r) => [r.from, r.code]), [[a.deviceId, c.code]], `${c.kind} ${c.code}`);
  }
  // a cancel or error for no session is ignored, without a reply or a refusal
  await a.signal(b.deviceId, "cancel", { session: "s7", message: "never mind" });
  await a.signal(b.deviceId, "error", { session: "s8", message: "no" });

  const [dialed, accepted] = await Promise.all([dialWebRtc(a, b.deviceId, { createPeerConnection, iceServers: [] }), acceptor.accept()]);
  assert.equal(accepted.from, a.deviceId);
  await dialed.send(new Uint8Array([1, 2, 3]));
  assert.deepEqual(await accepted.socket.recv(), new Uint8Array([1, 2, 3]));
  await accepted.socket.close("Normal", "bye");
  assert.deepEqual(await dialed.closed, { code: "Normal", message: "bye", by: "Remote" });
  assert.equal(refusals.length, cases.length, "nothing else was refused");
  acceptor.close();
  await assert.rejects(acceptor.accept(), (e: unknown) => e instanceof PeersError && e.kind === "Closed");
  a.close();
  b.close();
});

test("a dial ends with Refused when the peer answers error, and with ConnectTimeout (the peer told cancel) when it stays silent", async () => {
  const [a, b] = await Promise.all([device("a"), device("b")]);
  const offer = nextSignal(b, (s) => s.kind === "offer");
  const refusedDial = assert.rejects(
    dialWebRtc(a, b.deviceId, { createPeerConnection, iceServers: [] }),
    (e: unknown) => e instanceof PeersError && e.code === "Refused" && /not now/.test(e.message),
  );
  const o = await offer;
  // candidates travel as ice-candidate signals, never inside the SDP as well
  assert.doesNotMatch(String(o.body.sdp), /^a=(candidate|end-of-candidates)/m);
  await b.signal(a.deviceId, "error", { session: o.body.session, message: "not now" });
  await refusedDial;

  const cancel = nextSignal(b, (s) => s.kind === "cancel");
  const started = Date.now();
  await assert.rejects(
    dialWebRtc(a, b.deviceId, { createPeerConnection, iceServers: [], timeoutMs: 1500 }),
    (e: unknown) => e instanceof PeersError && e.code === "ConnectTimeout",
  );
  assert.ok(Date.now() - started < PROMPT, "the deadline holds");
  assert.equal((await cancel).body.message, "connect timeout");
  a.close();
  b.close();
});
