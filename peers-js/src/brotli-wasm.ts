/**
 * Brotli for browsers: {@link brotliFromWasm} wraps the `brotli-wasm` package (the
 * Rust `brotli` crate built to WebAssembly) as the codec's {@link Brotli}. Chromium's
 * `DecompressionStream` has no "brotli", and the codec decodes synchronously, so the
 * WebAssembly module is loaded once, asynchronously, by the caller:
 *
 * ```ts
 * import brotliWasm from "brotli-wasm";               // fetches brotli_wasm_bg.wasm beside the bundle
 * const config = await connectionConfig(keys, trust, { brotli: brotliFromWasm(await brotliWasm) });
 * ```
 *
 * Decompression runs as a stream with bounded output pieces, so a bomb stops one
 * piece past the limit (`DecompressedTooLarge`); corrupt, truncated data or bytes
 * after the end of the stream are `Decompress`, as with Node's Brotli.
 */
import { Brotli } from "./codec.js";
import { codecError, PeersError } from "./errors.js";

/** The parts of the `brotli-wasm` module used here. */
export interface BrotliWasmModule {
  compress(data: Uint8Array, options?: { quality?: number }): Uint8Array;
  DecompressStream: new () => {
    decompress(input: Uint8Array, outputSize: number): { buf: Uint8Array; code: number; input_offset: number };
    free(): void;
  };
  BrotliStreamResultCode: { ResultSuccess: number; NeedsMoreInput: number; NeedsMoreOutput: number };
}

/** Output produced per step: the most a bomb expands past the limit before it is stopped. */
const OUTPUT_PIECE = 256 * 1024;

export function brotliFromWasm(wasm: BrotliWasmModule): Brotli {
  const codes = wasm.BrotliStreamResultCode;
  return {
    decompress(data: Uint8Array, max: number): Uint8Array {
      const stream = new wasm.DecompressStream();
      const pieces: Uint8Array[] = [];
      let total = 0;
      let offset = 0;
      try {
        for (;;) {
          const step = stream.decompress(data.subarray(offset), Math.min(OUTPUT_PIECE, max + 1 - total));
          offset += step.input_offset;
          pieces.push(step.buf);
          total += step.buf.length;
          if (total > max) throw codecError("DecompressedTooLarge", `compressed message expands beyond ${max} bytes`, { max });
          if (step.code === codes.ResultSuccess) {
            if (offset !== data.length) throw codecError("Decompress", `${data.length - offset} bytes after the end of the Brotli stream`);
            break;
          }
          if (step.code === codes.NeedsMoreInput && offset >= data.length) throw codecError("Decompress", "truncated Brotli data");
        }
      } catch (e) {
        if (e instanceof PeersError) throw e;
        throw codecError("Decompress", `corrupt Brotli data: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        stream.free();
      }
      const out = new Uint8Array(total);
      let at = 0;
      for (const p of pieces) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    },
    compress(data: Uint8Array, quality: number): Uint8Array {
      return wasm.compress(data, { quality });
    },
  };
}
