// A headless Chromium page on one origin that connects to signaling servers
// on other origins with socket.io-client's default transports (long-polling
// first); driven by tests/tests/signaling_cors_chromium.rs.
//
//   node cors_chromium.mjs PAGE_URL SERVER_URL...
//
// PAGE_URL serves a page that loads socket.io-client's browser bundle. For
// each SERVER_URL the page opens /signaling with the defaults (no
// `transports` option, no reconnection) and waits for the server's
// "challenge" or a connect_error. One JSON line per server:
//   {"event":"result","server":URL,"ok":true,"transport":"polling"|"websocket"}
//   {"event":"result","server":URL,"ok":false,"error":"..."}
// then {"event":"finished"}. Chromium is launched by chromium.mjs.

import { launchChromium } from "./chromium.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const [pageUrl, ...servers] = process.argv.slice(2);
if (!pageUrl || servers.length === 0) fail("usage: cors_chromium.mjs PAGE_URL SERVER_URL...");
setTimeout(() => fail("timed out after 60 s"), 60_000).unref();

const browser = await launchChromium();
try {
  for (const server of servers) {
    const page = await browser.newPage();
    page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
    await page.goto(pageUrl, { waitUntil: "load" });
    const result = await page.evaluate(
      (server) =>
        new Promise((resolve) => {
          const socket = io(`${server}/signaling`, { reconnection: false });
          const timer = setTimeout(() => resolve({ ok: false, error: "no challenge within 10 s" }), 10_000);
          socket.on("challenge", () => {
            clearTimeout(timer);
            const transport = socket.io.engine.transport.name;
            socket.disconnect();
            resolve({ ok: true, transport });
          });
          socket.on("connect_error", (err) => {
            clearTimeout(timer);
            socket.disconnect();
            resolve({ ok: false, error: String(err && err.message) });
          });
        }),
      server,
    );
    report("result", { server, ...result });
    await page.close();
  }
  report("finished");
} catch (e) {
  await browser.close();
  fail(e.stack || String(e));
}
await browser.close();
