// A peers-js device in headless Chromium, driven by tests/tests/peers_js_chromium.rs.
//
//   node peers_js_chromium.mjs SIGNALING_URL RUST_DEVICE_ID STREAM_MIB
//   node peers_js_chromium.mjs SIGNALING_URL daemon DAEMON_SHARE_CODE GROUP
//   node peers_js_chromium.mjs SIGNALING_URL send MIB
//
// Bundles peers-js/dist/examples/browser-device.js (built by `npx tsc -p peers-js`)
// with esbuild (peers-js's dev dependency) into one ES module, serves it, its page and
// brotli-wasm's WebAssembly on a loopback port, and opens the page in Chromium (chromium.mjs, host candidates
// without mDNS): the page does everything itself (IndexedDB keys, registration,
// WebRTC, the handshake, RPC, the stream). Its events are printed here as JSON lines,
// each with `visit`: 1 for the visit that dials the Rust device, 2 for a second visit
// of the same origin whose keys come from IndexedDB and which accepts the Rust
// device's dial. The `daemon` form makes one visit that accepts the dial of a `peers run`
// daemon trusting the page in GROUP. The `send` form makes one visit in which the page
// sends MIB MiB of the pattern by code (its "code" event is for `peers receive`).

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { launchChromium } from "./chromium.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const [signaling, rustDevice, mib, group] = process.argv.slice(2);
if (!signaling || !rustDevice) fail("usage: peers_js_chromium.mjs SIGNALING_URL (RUST_DEVICE_ID STREAM_MIB | daemon SHARE_CODE GROUP | send MIB)");
setTimeout(() => fail("timed out after 150 s"), 150_000).unref();

const peersJs = new URL("../../peers-js/", import.meta.url);
const esbuild = createRequire(fileURLToPath(peersJs))("esbuild");
const built = await esbuild
  .build({
    entryPoints: [fileURLToPath(new URL("dist/examples/browser-device.js", peersJs))],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    // Node-only paths (FileKeyStore, Node's Brotli) load these lazily; the page never does.
    external: ["node:*"],
    write: false,
    logLevel: "error",
  })
  .catch((e) => fail(`esbuild: ${e.message}`));
const script = built.outputFiles[0].contents;
// brotli-wasm fetches its WebAssembly beside the module that loads it (the bundle)
const wasm = await readFile(fileURLToPath(new URL("node_modules/brotli-wasm/pkg.web/brotli_wasm_bg.wasm", peersJs)));
const html = '<!doctype html><html><head><meta charset="utf-8"><script type="module" src="/device.js"></script></head><body>peers-js</body></html>';

const server = createServer((req, res) => {
  const path = new URL(req.url ?? "/", "http://page").pathname;
  if (path === "/") res.writeHead(200, { "content-type": "text/html" }).end(html);
  else if (path === "/device.js") res.writeHead(200, { "content-type": "text/javascript" }).end(script);
  else if (path === "/brotli_wasm_bg.wasm") res.writeHead(200, { "content-type": "application/wasm" }).end(wasm);
  else res.writeHead(404).end();
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
report("serving", { origin, bundle_bytes: script.length });

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
  if (rustDevice === "daemon") {
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
