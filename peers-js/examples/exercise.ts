// What the live interop drivers (device.ts, webrtc-device.ts, the browser page) do
// on a connection to a Rust device, shared so that each transport runs the same
// exercise: "js.reverse" answered, a "download" stream hashed, and N MiB of a fixed
// pattern streamed to "upload". No Node built-ins: the browser page uses it too.
import { blake3 } from "@noble/hashes/blake3.js";

import { Connection, toHex } from "../src/index.js";

/** Where a driver reports what it sees: one JSON object per event. */
export type Report = (event: string, fields?: Record<string, unknown>) => void;

/** Exposes "js.reverse" (a string, reversed; reported as "answered") and the "download" stream (its size and BLAKE3 reported). */
export function exposeExercise(connection: Connection, report: Report): { reversed: () => number } {
  let reversed = 0;
  connection.expose("js.reverse", (args) => {
    if (typeof args !== "string") throw new Error("expected a string");
    reversed += 1;
    report("answered", { method: "js.reverse", arg: args });
    return [...args].reverse().join("");
  });
  connection.exposeStream("download", async (meta, reader) => {
    const h = blake3.create();
    let bytes = 0;
    for await (const piece of reader) {
      h.update(piece);
      bytes += piece.length;
    }
    report("downloaded", { meta, bytes, blake3: toHex(h.digest()) });
  });
  return { reversed: () => reversed };
}

/** MiB `i` of the pattern the Rust tests expect: byte `j` is `(i·131 + j·7 + j>>8) mod 256`. */
export function patternMiB(i: number, into: Uint8Array = new Uint8Array(1024 * 1024)): Uint8Array {
  for (let j = 0; j < into.length; j++) into[j] = (i * 131 + j * 7 + (j >> 8)) & 0xff;
  return into;
}

/** Streams `mib` MiB of the pattern to "upload" and reports "streamed" with its BLAKE3 and duration. */
export async function uploadPattern(connection: Connection, mib: number, report: Report): Promise<void> {
  const size = mib * 1024 * 1024;
  const piece = new Uint8Array(1024 * 1024);
  const hasher = blake3.create();
  const writer = await connection.openStream("upload", { size });
  const started = Date.now();
  for (let i = 0; i < mib; i++) {
    hasher.update(patternMiB(i, piece));
    await writer.write(piece);
  }
  await writer.finish();
  report("streamed", { bytes: size, blake3: toHex(hasher.digest()), ms: Date.now() - started });
}
