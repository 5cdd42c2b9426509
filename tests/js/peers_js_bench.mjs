// The driver of the browser-to-Rust WebRTC bench (tests/benches/browser_webrtc.rs).
//
//   node peers_js_bench.mjs SIGNALING_URL RUST_DEVICE_ID MIB ROUNDS [CAUSES]
//
// CAUSES "1": the page adds the rounds that test the gap's causes (see the page's header).
//
// Serves the bundle of peers-js/dist/bench/browser-webrtc.js (page_server.mjs), opens
// it in headless Chromium (chromium.mjs, host candidates without mDNS) and holds the
// raw channel's other end: a node-datachannel peer that answers the page's offer
// (`window.rawAnswer`, candidates gathered first, loopback only) and, for every MIB
// MiB it receives, sends back the text "done <bytes>". The page's events are printed
// as JSON lines (see the page's header); "finished" ends the run.

import nodeDataChannel from "node-datachannel";

import { launchChromium } from "./chromium.mjs";
import { servePage } from "./page_server.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const [signaling, rustDevice, mib, rounds, causes = "0"] = process.argv.slice(2);
if (!signaling || !rustDevice || !mib || !rounds) fail("usage: peers_js_bench.mjs SIGNALING_URL RUST_DEVICE_ID MIB ROUNDS");
const roundBytes = Number(mib) * 1024 * 1024;
// Every round moves MIB MiB twice; allow 1 MB/s and a minute for the setup.
setTimeout(() => fail("timed out"), 60_000 + ((causes === "1" ? 4 : 2) * Number(rounds) * roundBytes) / 1000).unref();

// The raw peers, kept referenced for the whole run.
const rawPeers = [];

/// Answers `offer` with a node-datachannel peer that counts what arrives.
function rawAnswer(offer) {
  const pc = new nodeDataChannel.PeerConnection("raw", { iceServers: [] });
  rawPeers.push(pc);
  pc.onDataChannel((channel) => {
    let received = 0;
    channel.onMessage((msg) => {
      if (typeof msg === "string") return fail(`the page sent text on the raw channel: ${msg}`);
      received += msg.byteLength;
      if (received > roundBytes) fail(`the raw channel carried ${received} bytes in a round of ${roundBytes}`);
      if (received === roundBytes) {
        received = 0;
        channel.sendMessage(`done ${roundBytes}`);
      }
    });
  });
  return new Promise((resolve) => {
    pc.onGatheringStateChange((state) => state === "complete" && resolve(pc.localDescription().sdp));
    pc.setRemoteDescription(offer, "offer");
  });
}

const { origin, server } = await servePage("dist/bench/browser-webrtc.js");
const browser = await launchChromium(["--disable-features=WebRtcHideLocalIpsWithMdns"]);
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e.message}\n`));
  let ended;
  const end = new Promise((resolve) => (ended = resolve));
  await page.exposeFunction("peersReport", (event, fields) => {
    report(event, JSON.parse(fields));
    if (event === "done" || event === "failed") ended(event);
  });
  await page.exposeFunction("rawAnswer", rawAnswer);
  await page.goto(`${origin}/?${new URLSearchParams({ signaling, rust: rustDevice, mib, rounds, causes })}`);
  if ((await end) === "failed") throw new Error("the page failed");
} catch (e) {
  await browser.close();
  fail(e.stack || String(e));
}
await browser.close();
server.close();
nodeDataChannel.cleanup();
report("finished");
setTimeout(() => process.exit(0), 200);
