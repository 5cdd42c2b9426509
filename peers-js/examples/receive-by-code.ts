// Receives a `peers send` transfer by code into a directory, for the live interop
// test (tests/tests/peers_js_transfer.rs), printing JSON lines:
//
//   node dist/examples/receive-by-code.js SIGNALING_URL CODE OUT_DIR [--webrtc]
//
// With --webrtc it accepts the sender's WebRTC dial (node-datachannel) and follows the
// sender's move there (docs/protocol.md §9.7): {"event":"path","to","bytes_done"}.
// {"event":"confirmed","sender"} after the PAKE; {"event":"offer","entries","bytes"};
// {"event":"done","bytes","files":[{"path","size","blake3"}],"paths":[{"transport","bytes"}]} with each file's BLAKE3
// as written; {"event":"failed","kind","code","message"} on any failure (exit 1).
import { blake3 } from "@noble/hashes/blake3.js";
import { mkdir, open, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";

import { RTCPeerConnection } from "node-datachannel/polyfill";

import { Manifest, PeerConnectionLike, PeersError, receiveByCode, toHex } from "../src/index.js";

const report = (event: string, fields: Record<string, unknown> = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [url, code, out, flag] = process.argv.slice(2);
// 64 KiB messages: node-datachannel stalls on the Rust transport's 256 KiB ones (WebRtcSocketOptions).
const webrtc =
  flag === "--webrtc"
    ? { createPeerConnection: (config: { iceServers: unknown[] }) => new RTCPeerConnection(config as never) as unknown as PeerConnectionLike, socket: { maxFrameSize: 65_536 } }
    : undefined;
if (!url || !code || !out) {
  report("failed", { message: "usage: receive-by-code.js SIGNALING_URL CODE OUT_DIR" });
  process.exit(2);
}

function fileSize(m: Manifest): number {
  return m.entries.reduce((n, e) => n + (e.kind === "Dir" ? 0 : e.kind.File.size), 0);
}

try {
  const { manifest, bytes, paths } = await receiveByCode(url, code, {
    webrtc,
    onPath: (to, done) => report("path", { to, bytes_done: done }),
    onConfirmed: (sender) => report("confirmed", { sender: toHex(sender.device_id) }),
    decide: (m) => {
      report("offer", { entries: m.entries.length, bytes: fileSize(m) });
      return true;
    },
    sink: async (entry, chunk) => {
      const path = join(out, entry.path);
      await mkdir(dirname(path), { recursive: true });
      const file = await open(path, chunk.offset === 0 ? "w" : "r+");
      await file.write(chunk.bytes, 0, chunk.bytes.length, chunk.offset);
      await file.close();
    },
  });
  const files = [];
  for (const e of manifest.entries) {
    const path = join(out, e.path);
    if (e.kind === "Dir") {
      await mkdir(path, { recursive: true });
      continue;
    }
    if (e.kind.File.size === 0) await (await open(path, "w")).close();
    files.push({ path: e.path, size: e.kind.File.size, blake3: toHex(blake3(await readFile(path))) });
  }
  report("done", { bytes, files, paths });
  process.exit(0);
} catch (err) {
  const e = err as PeersError;
  report("failed", { kind: e.kind, code: e.code, message: e.message });
  process.exit(1);
}
