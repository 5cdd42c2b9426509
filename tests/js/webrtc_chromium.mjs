// A headless Chromium page that dials a Rust device through the peers signaling
// server and exchanges frames both ways; driven by tests/tests/webrtc_interop_js.rs.
//
//   node webrtc_chromium.mjs ORIGIN RUST_DEVICE_ID FRAMES
//
// Chromium is launched by chromium.mjs, here without mDNS-hidden host
// candidates. Node holds
// the signaling connection (webrtc_signaling.mjs) and relays signals to and from
// the page; the page runs webrtc_dialer.mjs's runDialer against Chromium's own
// RTCPeerConnection. Output as in webrtc_node_datachannel.mjs.

import { launchChromium } from "./chromium.mjs";
import { fail, pattern, registerDevice, report, sameBytes, sessionId } from "./webrtc_signaling.mjs";
import { runDialer } from "./webrtc_dialer.mjs";

const [origin, rustDevice, frames] = process.argv.slice(2);
if (!origin || !rustDevice) fail("usage: webrtc_chromium.mjs ORIGIN RUST_DEVICE_ID FRAMES");
setTimeout(() => fail("timed out after 90 s"), 90_000).unref();

const device = await registerDevice(origin).catch((e) => fail(e.message));
report("registered", { device_id: device.deviceId });
const browser = await launchChromium(["--disable-features=WebRtcHideLocalIpsWithMdns"]);
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.exposeFunction("signalOut", (kind, body) => device.send(rustDevice, kind, body));
  await page.evaluate(() => {
    window.signalQueue = [];
    window.signalIn = (kind, body) => window.signalQueue.push([kind, body]);
  });
  device.onSignal((signal) => {
    if (signal.from === rustDevice) page.evaluate((k, b) => window.signalIn(k, b), signal.kind, signal.body).catch(() => {});
  });
  const source = `async (frames, session) => {
    const pattern = ${pattern.toString()};
    const sameBytes = ${sameBytes.toString()};
    const runDialer = ${runDialer.toString()};
    const pc = new RTCPeerConnection();
    const subscribe = (handler) => {
      const queued = window.signalQueue;
      window.signalIn = handler;
      for (const [k, b] of queued) handler(k, b);
    };
    const result = await runDialer({ pc, send: window.signalOut, subscribe, frames, session, pattern, sameBytes });
    pc.close();
    return result;
  }`;
  const summary = await page.evaluate(`(${source})(${Number(frames || 20)}, ${JSON.stringify(sessionId())})`);
  report("verified", summary);
} catch (e) {
  await browser.close();
  fail(e.stack || String(e));
}
await browser.close();
device.close();
report("finished");
setTimeout(() => process.exit(0), 200);
