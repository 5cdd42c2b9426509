// The receive page (page/index.html): receives what `peers send` offers by code,
// in the browser, through peers-js's `receiveByCode`. Bundled with its HTML and
// brotli-wasm's WebAssembly by scripts/bundle-page.mjs; the signaling server serves
// the bundle when run with `--receive-page DIR` (docs/signaling.md), and `peers send`
// prints its link beside the code.
//
//   PAGE#7-maple-orbit                 the code in the fragment (never sent to a server): receive at once
//   PAGE                               a form asks for the code
//   ?signaling=URL                     the signaling server (default: the page's own origin)
//   ?accept=auto                       accept the offer without a click, into the origin private file system
//   ?sink=opfs                         save into the origin private file system even where a directory picker exists
//   ?staging=off                       keep nothing between visits (default: staged in OPFS where the browser has it)
//
// Staging (staging-browser.ts): where the browser has the origin private file system,
// every verified chunk is kept there (per 8 MiB segment) under the manifest's digest,
// so a page closed or reloaded mid-transfer and opened again with the same code
// resumes ("resuming: N MiB already here"): the sender waits for the code to be run
// again and sends only the rest. Once complete, the staged files go to the save target
// below and the staging is deleted. Without OPFS nothing is kept: chunks go straight
// to the save target, and a page opened again starts over.
//
// Saving: "Save" asks for a directory with the File System Access API where the
// browser offers it and writes each verified chunk into it as it arrives; elsewhere
// (or when the person cancels the picker) the chunks go to the origin private file
// system and each file is then offered as a download from there (save-browser.ts).
// When a test drives the page (`window.peersReport` exists), events are reported
// to it and each saved file's BLAKE3 is computed from what was written.
import { blake3 } from "@noble/hashes/blake3.js";
import brotliWasm from "brotli-wasm";

import {
  brotliFromWasm,
  canPickDirectory,
  DirectorySink,
  Manifest,
  OpfsStore,
  opfsAvailable,
  PeerConnectionLike,
  PeersError,
  pickDirectory,
  privateDirectory,
  receiveByCode,
  SavedFile,
  toHex,
} from "../src/index.js";

const page = globalThis as unknown as { peersReport?: (event: string, fields: string) => Promise<void> };
const report = (event: string, fields: Record<string, unknown> = {}): void => void page.peersReport?.(event, JSON.stringify(fields));

const params = new URLSearchParams(location.search);
const signalingUrl = params.get("signaling") ?? location.origin;
const autoAccept = params.get("accept") === "auto";
const privateOnly = params.get("sink") === "opfs";
const staging = params.get("staging") !== "off" && opfsAvailable();

const element = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const status = (text: string, error = false): void => {
  const p = element<HTMLParagraphElement>("status");
  p.textContent = text;
  p.className = error ? "error" : "";
};

function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}

function totalBytes(m: Manifest): number {
  return m.entries.reduce((n, e) => n + (e.kind === "Dir" ? 0 : e.kind.File.size), 0);
}

/** Waits for the person's answer to the offer; resolves with the directory to save into, or undefined to decline. */
function askPerson(manifest: Manifest, transferName: string): Promise<{ dir: FileSystemDirectoryHandle; picked: boolean } | undefined> {
  const files = manifest.entries.filter((e) => e.kind !== "Dir").length;
  const first = manifest.entries[0]?.path ?? "";
  element("offer-text").textContent = `${files === 1 ? first : `${files} files (${first}…)`}, ${mib(totalBytes(manifest))}`;
  element("offer").hidden = false;
  return new Promise((resolve, reject) => {
    const answer = (value: { dir: FileSystemDirectoryHandle; picked: boolean } | undefined): void => {
      element("offer").hidden = true;
      resolve(value);
    };
    element<HTMLButtonElement>("decline").onclick = () => answer(undefined);
    element<HTMLButtonElement>("accept").onclick = () => {
      // The picker must be called in the click's own task (user activation).
      const picked = canPickDirectory() && !privateOnly ? pickDirectory().then((dir) => ({ dir, picked: true })) : Promise.reject(new Error("no picker"));
      picked
        .catch(() => privateDirectory(transferName).then((dir) => ({ dir, picked: false })))
        .then(answer, reject);
    };
  });
}

/** The BLAKE3 of a saved file, read back as a stream. */
async function hashFile(file: SavedFile): Promise<string> {
  const hasher = blake3.create();
  const reader = (await file.handle.getFile()).stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hasher.update(value);
  }
  return toHex(hasher.digest());
}

/** Download links for files saved in the origin private file system (disk-backed, not read into memory). */
async function offerDownloads(files: SavedFile[]): Promise<void> {
  const list = element<HTMLUListElement>("files");
  for (const file of files) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await file.handle.getFile());
    a.download = file.path.split("/").pop()!;
    a.textContent = `${file.path} (${mib(file.size)})`;
    const li = document.createElement("li");
    li.append(a);
    list.append(li);
  }
  if (files.length === 1 && !page.peersReport) list.querySelector("a")?.click();
}

async function receive(code: string): Promise<void> {
  element("code-form").hidden = true;
  status(`Connecting with code ${code}…`);
  const progress = element<HTMLProgressElement>("progress");
  let target: { sink: DirectorySink; picked: boolean } | undefined;
  const store = staging ? new OpfsStore() : undefined;
  let received = 0;
  let resumed = 0;
  let nextReport = 0;
  let started = 0;
  const brotli = brotliFromWasm(await brotliWasm);
  try {
    const { manifest, bytes, paths } = await receiveByCode(signalingUrl, code, {
      brotli,
      ...(store ? { store } : {}),
      onResume: (kept) => {
        resumed = received = kept;
        progress.value = kept;
        status(`Receiving ${mib(progress.max)}… resuming: ${mib(kept)} already here.`);
        report("resumed", { bytes: kept });
      },
      // The sender moves the transfer to WebRTC when it connects (direct, or TURN); else it stays on the relay.
      webrtc: { createPeerConnection: (config) => new RTCPeerConnection(config as RTCConfiguration) as unknown as PeerConnectionLike },
      onPath: (to, done) => report("path", { to, bytes_done: done }),
      onConfirmed: (sender) => {
        status("The code matched. Waiting for the offer…");
        report("confirmed", { sender: toHex(sender.device_id) });
      },
      decide: async (m) => {
        const total = totalBytes(m);
        report("offer", { entries: m.entries.length, bytes: total });
        const name = `transfer-${Date.now()}`;
        const answer = autoAccept ? { dir: await privateDirectory(name), picked: false } : await askPerson(m, name);
        if (!answer) {
          status("Declined.");
          return false;
        }
        target = { sink: new DirectorySink(answer.dir), picked: answer.picked };
        store?.saveTo(answer.dir);
        progress.max = Math.max(total, 1);
        progress.hidden = false;
        status(`Receiving ${mib(total)}…`);
        started = performance.now();
        report("accepted", { sink: answer.picked ? "directory" : "opfs", staging: store !== undefined });
        return true;
      },
      sink: async (entry, chunk) => {
        // With a store the chunk is kept already (and saved at the end); else it is written now.
        if (!store) await target!.sink.sink(entry, chunk);
        received += chunk.bytes.length;
        progress.value = received;
        const seconds = (performance.now() - started) / 1000;
        element("rate").textContent = `${mib(received)} of ${mib(progress.max)}, ${((received - resumed) / (1 << 20) / Math.max(seconds, 0.001)).toFixed(1)} MiB/s`;
        if (received >= nextReport) {
          report("progress", { bytes: received });
          nextReport = received + (8 << 20);
        }
      },
    });
    const saved = store ? store.saved : await target!.sink.finish(manifest);
    status(target!.picked ? `Saved ${mib(bytes + resumed)} into the folder you chose.` : `Received ${mib(bytes + resumed)}. Save the files:`);
    if (!target!.picked) await offerDownloads(saved);
    const files = page.peersReport ? await Promise.all(saved.map(async (f) => ({ path: f.path, size: f.size, blake3: await hashFile(f) }))) : [];
    report("done", { bytes, resumed, files, paths, sink: target!.picked ? "directory" : "opfs", seconds: (performance.now() - started) / 1000 });
  } catch (err) {
    await (store ?? target?.sink)?.abort();
    const e = err instanceof PeersError ? err : new PeersError("Transport", "Unexpected", String(err));
    if (e.code === "Declined") status("Declined: nothing was received.");
    else status(e.code === "WrongCode" ? "The code did not match. Ask the sender for a new code." : `Failed: ${e.message}`, true);
    report("failed", { kind: e.kind, code: e.code, message: e.message });
  }
}

const fromFragment = decodeURIComponent(location.hash.slice(1)).trim();
if (fromFragment) {
  // The code leaves the address bar and the history: it works once.
  history.replaceState(null, "", location.pathname + location.search);
  void receive(fromFragment);
} else {
  element<HTMLFormElement>("code-form").onsubmit = (event) => {
    event.preventDefault();
    void receive(element<HTMLInputElement>("code").value.trim());
  };
}
