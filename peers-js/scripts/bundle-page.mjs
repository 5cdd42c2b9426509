// Bundles the receive page (page/index.html, page/receive.ts built by `npx tsc -p .`)
// into one directory a web server serves as it is:
//
//   node scripts/bundle-page.mjs [OUT_DIR]        default dist/receive-page
//
// OUT_DIR/index.html, OUT_DIR/receive.js (one ES module, esbuild) and
// OUT_DIR/brotli_wasm_bg.wasm (brotli-wasm fetches it beside the module). The
// signaling server serves this directory with `--receive-page OUT_DIR`.
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Builds the page into `out`; returns the bundle's size in bytes. */
export async function bundlePage(out = join(root, "dist/receive-page")) {
  await mkdir(out, { recursive: true });
  const built = await esbuild.build({
    entryPoints: [join(root, "dist/page/receive.js")],
    outfile: join(out, "receive.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "chrome120",
    minify: true,
    // Node-only paths (FileKeyStore, Node's Brotli) load these lazily; the page never does.
    external: ["node:*"],
    metafile: true,
    logLevel: "error",
  });
  await copyFile(join(root, "page/index.html"), join(out, "index.html"));
  await copyFile(join(root, "node_modules/brotli-wasm/pkg.web/brotli_wasm_bg.wasm"), join(out, "brotli_wasm_bg.wasm"));
  return Object.values(built.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2] ? resolve(process.argv[2]) : undefined;
  const bytes = await bundlePage(out);
  process.stdout.write(`receive page: ${bytes} bytes of script in ${out ?? join(root, "dist/receive-page")}\n`);
}
