// Serves a peers-js page on a loopback port for the Chromium drivers
// (peers_js_chromium.mjs, peers_js_bench.mjs).
//
// Bundles one compiled entry of peers-js (`peers-js/dist/...`, built by `npx tsc -p
// peers-js`) with esbuild (peers-js's dev dependency) into one ES module, and serves
// it as /device.js beside a page that loads it and brotli-wasm's WebAssembly (which
// brotli-wasm fetches beside the module that loads it).

import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { fail } from "./webrtc_signaling.mjs";

const peersJs = new URL("../../peers-js/", import.meta.url);

/// servePage(entry): serves the bundle of `peers-js/<entry>`; resolves to
/// `{ origin, bundleBytes, server }`.
export async function servePage(entry) {
  const esbuild = createRequire(fileURLToPath(peersJs))("esbuild");
  const built = await esbuild
    .build({
      entryPoints: [fileURLToPath(new URL(entry, peersJs))],
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
  return { origin: `http://127.0.0.1:${server.address().port}`, bundleBytes: script.length, server };
}
