// A peers-js device in headless Chromium, driven by tests/tests/peers_js_chromium.rs.
//
//   node peers_js_chromium.mjs SIGNALING_URL RUST_DEVICE_ID STREAM_MIB
//   node peers_js_chromium.mjs SIGNALING_URL daemon DAEMON_SHARE_CODE GROUP
//   node peers_js_chromium.mjs SIGNALING_URL send MIB
//   node peers_js_chromium.mjs SOCKETIO_ORIGIN socketio RUST_DEVICE_ID STREAM_MIB
//
// Serves the bundle of peers-js/dist/examples/browser-device.js on a loopback port
// (page_server.mjs) and opens the page in Chromium (chromium.mjs, host candidates
// without mDNS): the page does everything itself (IndexedDB keys, registration,
// WebRTC, the handshake, RPC, the stream). Its events are printed here as JSON lines,
// each with `visit`: 1 for the visit that dials the Rust device, 2 for a second visit
// of the same origin whose keys come from IndexedDB and which accepts the Rust
// device's dial. The `daemon` form makes one visit that accepts the dial of a `peers run`
// daemon trusting the page in GROUP. The `send` form makes one visit in which the page
// sends MIB MiB of the pattern by code (its "code" event is for `peers receive`). The
// `socketio` form makes one visit that dials a Rust socket.io listener directly (no
// signaling server), as a page dials a device's local socket.

import { launchChromium } from "./chromium.mjs";
import { servePage } from "./page_server.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const [signaling, rustDevice, mib, group] = process.argv.slice(2);
if (!signaling || !rustDevice) fail("usage: peers_js_chromium.mjs SIGNALING_URL (RUST_DEVICE_ID STREAM_MIB | daemon SHARE_CODE GROUP | send MIB) | SOCKETIO_ORIGIN socketio RUST_DEVICE_ID STREAM_MIB");
setTimeout(() => fail("timed out after 150 s"), 150_000).unref();

const { origin, bundleBytes, server } = await servePage("dist/examples/browser-device.js");
report("serving", { origin, bundle_bytes: bundleBytes });

const browser = await launchChromium(["--disable-features=WebRtcHideLocalIpsWithMdns"]);
let visit = 0;
let visitEnded;
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e.message}\n`));
  await page.exposeFunction("peersReport", (event, fields) => {
    report(event, { visit, ...JSON.parse(fields) });
    if (event === "done" || event === "failed") visitEnded?.(event);
  });
  const open = async (query) => {
    visit += 1;
    const ended = new Promise((resolve) => (visitEnded = resolve));
    await page.goto(`${origin}/?${new URLSearchParams(query)}`);
    if ((await ended) === "failed") throw new Error(`visit ${visit} failed`);
  };
  if (rustDevice === "socketio") {
    await open({ socketio: signaling, rust: mib, mib: group ?? "16" });
  } else if (rustDevice === "daemon") {
    await open({ signaling, daemon: mib, group });
  } else if (rustDevice === "send") {
    await open({ signaling, send: mib ?? "16" });
  } else {
    await open({ signaling, rust: rustDevice, mib: mib ?? "16" });
    await open({ signaling, accept: rustDevice });
  }
} catch (e) {
  await browser.close();
  fail(e.stack || String(e));
}
await browser.close();
server.close();
report("finished");
setTimeout(() => process.exit(0), 200);
