// Receives a `peers send` transfer by code into a directory, for the live interop
// test (tests/tests/peers_js_transfer.rs), printing JSON lines:
//
//   node dist/examples/receive-by-code.js SIGNALING_URL CODE OUT_DIR [--webrtc]
//
// With --webrtc it accepts the sender's WebRTC dial (node-datachannel) and follows the
// sender's move there (docs/protocol.md §9.7): {"event":"path","to","bytes_done"}.
// {"event":"confirmed","sender"} after the PAKE; {"event":"offer","entries","bytes"};
// {"event":"progress","bytes_verified"} about every MiB verified in this run;
// {"event":"done","bytes","resumed","files":[{"path","size","blake3"}],"paths":[{"transport","bytes"}]} with each file's BLAKE3
// as stored (`bytes`: verified in this run; `resumed`: kept by an earlier run). It stages
// into OUT_DIR as `peers receive` does (directoryStore): run again with the same code
// after a kill, it resumes from the first chunk it lacks; {"event":"failed","kind","code","message"} on any failure (exit 1).
import { blake3 } from "@noble/hashes/blake3.js";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { RTCPeerConnection } from "node-datachannel/polyfill";

import { directoryStore, Manifest, PeerConnectionLike, PeersError, receiveByCode, toHex } from "../src/index.js";

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
  // The Rust receiver's staging (OUT/.peers-transfer-<digest>): run again with the same code, it resumes.
  const store = directoryStore(out);
  let verified = 0;
  let told = 0;
  const { manifest, bytes, resumed, stored, paths } = await receiveByCode(url, code, {
    webrtc,
    store,
    onPath: (to, done) => report("path", { to, bytes_done: done }),
    onConfirmed: (sender) => report("confirmed", { sender: toHex(sender.device_id) }),
    decide: (m) => {
      report("offer", { entries: m.entries.length, bytes: fileSize(m) });
      return true;
    },
    sink: (_, chunk) => {
      verified += chunk.bytes.length;
      if (verified - told >= 1 << 20) report("progress", { bytes_verified: (told = verified) });
    },
  });
  // Each top-level entry went in under the name the store found free (the same one in an empty directory).
  const top = new Map(manifest.entries.filter((e) => !e.path.includes("/")).map((e, i) => [e.path, stored?.[i] ?? e.path]));
  const files = [];
  for (const e of manifest.entries) {
    if (e.kind === "Dir") continue;
    const [head, ...rest] = e.path.split("/");
    const path = join(out, top.get(head!) ?? head!, ...rest);
    files.push({ path: e.path, size: e.kind.File.size, blake3: toHex(blake3(await readFile(path))) });
  }
  report("done", { bytes, resumed, files, paths });
  process.exit(0);
} catch (err) {
  const e = err as PeersError;
  report("failed", { kind: e.kind, code: e.code, message: e.message });
  process.exit(1);
}
