/**
 * The node-datachannel sender of the `webrtc-raw-ndc` row of `benches/transfer/run.sh`:
 * one file over one node-datachannel data channel to the webrtc-rs receiver of
 * `peers-transport-webrtc`'s bench program `webrtc_raw_file`, which starts it:
 *
 *   webrtc_raw_file SRC DST --sender node dist/bench/raw-datachannel-send.js
 *
 * runs `node dist/bench/raw-datachannel-send.js --send SRC` with its standard input and
 * output as the signaling pipe. It does what that program's own sender (`--send`) does,
 * so that the receiver's time means the same thing with either sender:
 *
 * - one peer connection (node-datachannel's own API, no polyfill; no ICE servers, ICE
 *   bound to loopback as the receiver's `WebRtcConfig::loopback()` is) and one ordered,
 *   reliable channel, offered;
 * - every candidate gathered first, then one line to standard output:
 *   `{"sdp":{"type":"offer","sdp":…},"size":N}`; the receiver's answer is the first line
 *   on standard input (`{"type":"answer","sdp":…}`);
 * - the file in binary messages of 64 KiB (the Rust sender's frame size; webrtc-rs
 *   names no `a=max-message-size`, so the channel allows no more), or the channel's
 *   smaller `maxMessageSize`, read in 1 MiB pieces (constant memory);
 * - held at the Rust socket's buffered-amount marks: no message while more than 4 MiB
 *   is buffered, woken when it falls below 2 MiB (`onBufferedAmountLow`), or after
 *   50 ms to look again, as the Rust sender does;
 * - then it waits for the receiver's second line (it has every byte, synced), closes
 *   and exits.
 */
import { open } from "node:fs/promises";
import { createInterface } from "node:readline";

import { cleanup, PeerConnection } from "node-datachannel";

/** The Rust sender's message size (`WebRtcConfig::max_frame_size`). */
const FRAME = 64 * 1024;
/** `WebRtcConfig::send_buffer_high`; sends resume below half of it. */
const HIGH = 4 * 1024 * 1024;
/** How much of the file is read at once. */
const PIECE = 1024 * 1024;
/** The Rust sender's wait before it looks at the buffered amount again. */
const RECHECK_MS = 50;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const src = args[0] === "--send" && args.length === 2 ? args[1] : undefined;
  if (src === undefined) throw new Error("usage: raw-datachannel-send.js --send SRC");
  const file = await open(src, "r");
  const size = (await file.stat()).size;
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const nextLine = async (what: string): Promise<string> => {
    const line = await lines.next();
    if (line.done) throw new Error(`the receiver closed the pipe before ${what}`);
    return line.value;
  };

  const pc = new PeerConnection("raw-send", { iceServers: [], bindAddress: "127.0.0.1" });
  // The connection's and ICE's states so far, for the error message of a failed run.
  const states: string[] = [];
  pc.onStateChange((state) => states.push(`pc ${state}`));
  pc.onIceStateChange((state) => states.push(`ice ${state}`));
  const gathered = new Promise<void>((resolve) =>
    pc.onGatheringStateChange((state) => {
      if (state === "complete") resolve();
    }),
  );
  const channel = pc.createDataChannel("raw");
  const opened = new Promise<void>((resolve, reject) => {
    channel.onOpen(resolve);
    channel.onError((err) => reject(new Error(`data channel: ${err}`)));
    channel.onClosed(() => reject(new Error("the data channel closed")));
  });
  // Creating the channel negotiates: the offer is set and gathering starts.
  await gathered;
  const offer = pc.localDescription();
  if (!offer) throw new Error("no local description");
  process.stdout.write(JSON.stringify({ sdp: { type: offer.type, sdp: offer.sdp }, size }) + "\n");
  const answer = JSON.parse(await nextLine("its answer")) as { type: string; sdp: string };
  if (answer.type !== "answer") throw new Error(`expected an answer, got ${answer.type}`);
  try {
    pc.setRemoteDescription(answer.sdp, "answer");
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)} (events: ${states.join(", ") || "none"}; now pc ${pc.state()}, ice ${pc.iceState()}, signaling ${pc.signalingState()})`);
  }
  await opened;

  const message = Math.min(FRAME, channel.maxMessageSize());
  let drained: (() => void) | undefined;
  channel.setBufferedAmountLowThreshold(HIGH / 2);
  channel.onBufferedAmountLow(() => drained?.());
  const belowHigh = async (): Promise<void> => {
    while (channel.bufferedAmount() > HIGH) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, RECHECK_MS);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      drained = undefined;
    }
  };
  const piece = Buffer.alloc(PIECE);
  for (let sent = 0; sent < size; ) {
    const { bytesRead } = await file.read(piece, 0, Math.min(PIECE, size - sent), sent);
    if (bytesRead === 0) throw new Error(`${src} ended after ${sent} of ${size} bytes`);
    for (let at = 0; at < bytesRead; at += message) {
      await belowHigh();
      // The message is copied into the channel (sent, or queued: `false`), so the piece
      // can be read into again; a closed channel throws.
      channel.sendMessageBinary(piece.subarray(at, Math.min(at + message, bytesRead)));
    }
    sent += bytesRead;
  }
  await file.close();
  // The receiver says when it has everything; until then SCTP drains the buffer.
  await nextLine("the end");
  channel.close();
  pc.close();
  cleanup();
}

// Exits when done: standard input stays open until the receiver has seen this process end.
main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`raw-datachannel-send: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
