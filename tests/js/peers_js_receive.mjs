// The receive page (peers-js/page/) in headless Chromium, receiving a `peers send`
// by code; driven by tests/tests/peers_js_receive_page.rs.
//
//   node peers_js_receive.mjs SIGNALING_URL CODE           serve the page here, on a loopback port
//   node peers_js_receive.mjs SIGNALING_URL CODE --close-after BYTES --reopen-when FILE
//                                                          the same; once the page reported BYTES
//                                                          received it is closed (`closed`), and once
//                                                          FILE exists (the test made it) the page is
//                                                          opened again with the same code, in the
//                                                          same browser (its storage kept), to the end
//   node peers_js_receive.mjs SIGNALING_URL CODE --quota BYTES
//                                                          the same with the origin's storage quota set
//                                                          to BYTES (DevTools' Storage.overrideQuotaForOrigin)
//   node peers_js_receive.mjs --link LINK [--decline]      open the link `peers send` printed (the
//                                                          signaling server serves the page), click Save
//                                                          (or Decline; then `failed` also carries the
//                                                          status line the page shows)
//
// The first form bundles the page (peers-js/scripts/bundle-page.mjs, after
// `npx tsc -p peers-js`) and opens it with `?signaling=URL&accept=auto#CODE`: the
// page accepts without a click. The second opens the link with `?sink=opfs` added
// and clicks the page's Save button as a person would. Both save into the origin
// private file system: headless Chromium can show no directory picker, which the
// page uses where a person can answer it. The page's events are printed as JSON
// lines; the driver exits once the page reports `done` (0) or `failed` (1).

import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";

import { bundlePage } from "../../peers-js/scripts/bundle-page.mjs";
import { launchChromium } from "./chromium.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const args = process.argv.slice(2);
const option = (name) => {
  const at = args.indexOf(name);
  return at < 0 ? undefined : args.splice(at, 2)[1];
};
const closeAfter = option("--close-after");
const reopenWhen = option("--reopen-when");
const quota = option("--quota");
if ((closeAfter === undefined) !== (reopenWhen === undefined)) fail("--close-after and --reopen-when go together");
setTimeout(() => fail("timed out after 240 s"), 240_000).unref();

let server;
let dir;
let address;
if (args[0] === "--link") {
  if (!args[1]) fail("usage: peers_js_receive.mjs --link LINK");
  const link = new URL(args[1]);
  link.searchParams.set("sink", "opfs");
  address = link.href;
} else {
  const [signaling, code] = args;
  if (!signaling || !code) fail("usage: peers_js_receive.mjs SIGNALING_URL CODE");
  dir = await mkdtemp(join(tmpdir(), "receive-page-"));
  const bytes = await bundlePage(dir);
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
  server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://page").pathname;
    const name = path === "/" ? "index.html" : path.slice(1);
    if (!["index.html", "receive.js", "brotli_wasm_bg.wasm"].includes(name)) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": types[extname(name)] }).end(await readFile(join(dir, name)));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  report("serving", { origin, bundle_bytes: bytes });
  address = `${origin}/?${new URLSearchParams({ signaling, accept: "auto" })}#${code}`;
}

const browser = await launchChromium();
let status = 1;
/** In the page: the names of the stagings left in the origin private file system. */
async function stagingLeft() {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle("peers-staging").catch(() => undefined);
  const names = [];
  if (dir) for await (const name of dir.keys()) names.push(name);
  return names;
}

/** Opens the page at `address`; resolves with its last event: `done`, `failed`, or `closed` (`--close-after`). */
async function visit(closeAt) {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e.message}\n`));
  let ended;
  const end = new Promise((resolve) => (ended = resolve));
  let closing = false;
  await page.exposeFunction("peersReport", async (event, fields) => {
    if (closing) return;
    const parsed = JSON.parse(fields);
    if (event === "progress" && closeAt !== undefined && parsed.bytes >= closeAt) {
      // A person closes the tab mid-transfer: whatever the page had in flight is lost.
      closing = true;
      report(event, parsed);
      void page.close().then(() => {
        report("closed", { after: parsed.bytes });
        ended("closed");
      });
      return;
    }
    if (event === "offer" && args[0] === "--link") {
      // A person reads the offer and clicks Save (the page shows progress) or Decline.
      const button = args.includes("--decline") ? "#decline" : "#accept";
      await page.waitForSelector(button, { visible: true });
      await page.click(button);
    }
    if (event === "failed") parsed.status_shown = await page.$eval("#status", (p) => p.textContent);
    if (event === "resumed") parsed.status_shown = await page.$eval("#status", (p) => p.textContent);
    if (event === "done") parsed.staging_left = await page.evaluate(stagingLeft);
    if (event === "done") parsed.progress_shown = await page.$eval("#progress", (p) => ({ value: p.value, max: p.max, hidden: p.hidden }));
    report(event, parsed);
    if (event === "done" || event === "failed") ended(event);
  });
  if (quota !== undefined) {
    const cdp = await page.createCDPSession();
    await cdp.send("Storage.overrideQuotaForOrigin", { origin: new URL(address).origin, quotaSize: Number(quota) });
  }
  await page.goto(address);
  return end;
}

try {
  let last = await visit(closeAfter === undefined ? undefined : Number(closeAfter));
  if (last === "closed") {
    while (!(await stat(reopenWhen).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 100));
    last = await visit(undefined);
  }
  status = last === "done" ? 0 : 1;
} catch (e) {
  process.stderr.write(`${e.stack || e}\n`);
} finally {
  await browser.close();
  server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}
report("finished");
setTimeout(() => process.exit(status), 200);
