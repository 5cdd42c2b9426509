// The dialing side of the WebRTC interop drivers, written against the standard
// RTCPeerConnection API so it runs both in Node (node-datachannel's polyfill) and
// inside a Chromium page (serialized with Function.prototype.toString, so it must
// not use anything from its module scope: everything comes in `opts`).
//
// opts: { pc, send(kind, body) → Promise, subscribe(handler(kind, body)),
//         frames, session, pattern, sameBytes }
// Returns { openMs, frames, bytes, maxMessageSize }.

export async function runDialer({ pc, send, subscribe, frames, session, pattern, sameBytes }) {
  const GREETING = { seed: 1000, size: 50000 };
  const size = (i) => Math.min(65536, 1 + ((i * 7919) % 65536));
  const dc = pc.createDataChannel("peers", { ordered: true });
  dc.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  dc.onmessage = (m) => {
    inbox.push(m.data);
    if (wake) wake();
  };
  const nextMessage = async (ms) => {
    const deadline = Date.now() + ms;
    while (inbox.length === 0) {
      if (Date.now() > deadline) throw new Error(`no message within ${ms} ms`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
      wake = null;
    }
    return inbox.shift();
  };
  const opened = new Promise((resolve, reject) => {
    dc.onopen = resolve;
    setTimeout(() => reject(new Error("data channel did not open within 30 s")), 30_000);
  });
  let remoteSet = false;
  let failure = null;
  const pending = [];
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      const body = { session, candidate: e.candidate.candidate, sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex };
      send("ice-candidate", body).catch((err) => (failure = err));
    }
  };
  let chain = Promise.resolve();
  subscribe((kind, body) => {
    chain = chain
      .then(async () => {
        if (!body || body.session !== session) return;
        if (kind === "answer") {
          await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
          remoteSet = true;
          for (const c of pending.splice(0)) await pc.addIceCandidate(c);
        } else if (kind === "ice-candidate" && body.candidate) {
          const c = { candidate: body.candidate, sdpMid: body.sdpMid ?? "0", sdpMLineIndex: body.sdpMLineIndex ?? 0 };
          if (remoteSet) await pc.addIceCandidate(c);
          else pending.push(c);
        } else if (kind === "error" || kind === "cancel") {
          failure = new Error(`${kind} from the rust device: ${body.message}`);
        }
      })
      .catch((err) => (failure = err));
  });
  const started = Date.now();
  await pc.setLocalDescription(await pc.createOffer());
  await send("offer", { session, sdp: pc.localDescription.sdp });
  await opened;
  const openMs = Date.now() - started;
  if (failure) throw failure;

  const greeting = new Uint8Array(await nextMessage(20_000));
  if (!sameBytes(greeting, pattern(GREETING.seed, GREETING.size))) throw new Error("greeting from rust damaged");
  let bytes = 0;
  for (let i = 0; i < frames; i++) {
    while (dc.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 5));
    dc.send(pattern(i, size(i)));
    bytes += size(i);
  }
  for (let i = 0; i < frames; i++) {
    const got = await nextMessage(20_000);
    if (typeof got === "string") throw new Error(`frame ${i}: got text ${got}`);
    if (!sameBytes(new Uint8Array(got), pattern(i, size(i)))) throw new Error(`echo of frame ${i} damaged or out of order`);
  }
  if (failure) throw failure;
  dc.send(JSON.stringify({ t: "close", code: "Normal", message: "js done" }));
  const deadline = Date.now() + 5_000;
  while (dc.bufferedAmount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 300));
  const maxMessageSize = pc.sctp ? pc.sctp.maxMessageSize : null;
  return { openMs, frames, bytes, maxMessageSize };
}
