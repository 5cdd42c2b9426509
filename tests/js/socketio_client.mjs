// A standard JavaScript socket.io client (socket.io-client 4.x) speaking the peers
// socket.io transport mapping (docs/transport-socketio.md, section 1), driven by
// tests/tests/interop_socketio_js.rs.
//
//   node socketio_client.mjs ORIGIN [--path /socket.io] [--transport websocket|polling]
//                                   [--send SIZE:KIND,...] [--close-by js|server]
//
// ORIGIN is `http://host:port`: for socket.io-client the path of the URL names the
// namespace, and the request path is the `path` option.
//
// 1. Joins the default namespace and waits for the server's "peers:hello".
// 2. Answers with its own hello, without escapeRecordSeparators (raw binary).
// 3. Sends the frames of --send in order, within the server's credit: frame i has
//    SIZE bytes of pattern(i, SIZE), as a binary "b" event (KIND b) or as base64
//    text "t" (KIND t).
// 4. Echoes every frame the server sends back as "b", after checking it: a server
//    frame starts with (seed u32 LE, length u32 LE) and continues with
//    pattern(seed, length). Credit is granted back as frames are consumed.
// 5. On the server frame "done": sends a "t" frame holding a JSON summary, then
//    with --close-by js sends "peers:close" {Normal, "js client done"} and
//    disconnects; with --close-by server waits for the server's "peers:close".
//
// Everything it observes is printed to stdout as JSON lines; the last line is
// {"event":"finished"}. Any deviation from the protocol exits with status 1 and
// a message on stderr.

import { io } from "socket.io-client";

const MAX_FRAME = 256 * 1024 + 4096;
const WINDOW = { frames: 4, bytes: 2 * MAX_FRAME };

function fail(message) {
  process.stderr.write(`socketio_client.mjs: ${message}\n`);
  process.exit(1);
}

function report(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/// The bytes both sides agree on: 0x1e and 0x1d (the bytes rust_socketio
/// would mangle) appear often.
function pattern(seed, length) {
  const out = Buffer.alloc(length);
  for (let j = 0; j < length; j++) {
    out[j] = (seed * 131 + j * 7 + (j >> 8)) & 0xff;
  }
  return out;
}

function parseArgs(argv) {
  const args = { url: undefined, path: "/socket.io", transport: "websocket", send: [], closeBy: "js" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--transport") args.transport = value();
    else if (arg === "--path") args.path = value();
    else if (arg === "--close-by") args.closeBy = value();
    else if (arg === "--send") {
      args.send = value()
        .split(",")
        .filter((s) => s.length > 0)
        .map((item) => {
          const [size, kind] = item.split(":");
          if (!/^\d+$/.test(size) || !["b", "t"].includes(kind)) fail(`bad --send item ${item}`);
          return { size: Number(size), kind };
        });
    } else if (args.url === undefined) args.url = arg;
    else fail(`unexpected argument ${arg}`);
  }
  if (args.url === undefined) fail("usage: socketio_client.mjs ORIGIN [options]");
  if (!["websocket", "polling"].includes(args.transport)) fail(`bad --transport ${args.transport}`);
  if (!["js", "server"].includes(args.closeBy)) fail(`bad --close-by ${args.closeBy}`);
  return args;
}

const args = parseArgs(process.argv.slice(2));
const socket = io(args.url, {
  path: args.path,
  transports: [args.transport],
  upgrade: false,
  reconnection: false,
  timeout: 10000,
});

// Sending: cumulative credit, as granted by the server.
const allowed = { frames: 0, bytes: 0 };
const sent = { frames: 0, bytes: 0 };
let creditWaiter = null;
function allow(grant) {
  if (!Number.isSafeInteger(grant?.frames) || !Number.isSafeInteger(grant?.bytes)) {
    fail(`bad credit grant ${JSON.stringify(grant)}`);
  }
  allowed.frames = Math.max(allowed.frames, grant.frames);
  allowed.bytes = Math.max(allowed.bytes, grant.bytes);
  if (creditWaiter) creditWaiter();
}
async function sendFrame(frame, kind) {
  while (!(allowed.frames > sent.frames && allowed.bytes - sent.bytes >= frame.length)) {
    await new Promise((resolve) => (creditWaiter = resolve));
    creditWaiter = null;
  }
  sent.frames += 1;
  sent.bytes += frame.length;
  if (kind === "t") socket.emit("t", frame.toString("base64"));
  else socket.emit("b", frame);
}

// Receiving: consume at once, grant a new window when half of it is used up.
const consumed = { frames: 0, bytes: 0 };
const granted = { ...WINDOW };
function consumedFrame(length) {
  consumed.frames += 1;
  consumed.bytes += length;
  if (consumed.frames > granted.frames || consumed.bytes > granted.bytes) {
    fail(`server sent beyond our credit: ${JSON.stringify({ consumed, granted })}`);
  }
  const outstandingFrames = consumed.frames - (granted.frames - WINDOW.frames);
  const outstandingBytes = consumed.bytes - (granted.bytes - WINDOW.bytes);
  if (outstandingFrames * 2 >= WINDOW.frames || outstandingBytes * 2 >= WINDOW.bytes) {
    granted.frames = consumed.frames + WINDOW.frames;
    granted.bytes = consumed.bytes + WINDOW.bytes;
    socket.emit("peers:credit", { ...granted });
  }
}

let helloSeen = false;
let received = 0;
let echoed = 0;
let echoedBytes = 0;
let closeNotice = null;
// Echoes go out in arrival order, one at a time.
let echoChain = Promise.resolve();

socket.on("connect_error", (err) => fail(`connect_error: ${err.message}`));

socket.on("peers:hello", (hello) => {
  if (helloSeen) fail("a second server hello");
  helloSeen = true;
  if (hello?.v !== 1 || !(hello.maxFrame >= 16384) || !(hello.window?.bytes >= hello.maxFrame)) {
    fail(`unusable server hello ${JSON.stringify(hello)}`);
  }
  report("server_hello", { hello, transport: socket.io.engine.transport.name });
  allow(hello.window);
  socket.emit("peers:hello", { v: 1, maxFrame: MAX_FRAME, window: WINDOW });
  echoChain = echoChain.then(async () => {
    for (const [i, { size, kind }] of args.send.entries()) {
      if (size > hello.maxFrame) fail(`frame ${i} of ${size} bytes is over the server's maxFrame`);
      await sendFrame(pattern(i, size), kind);
    }
    report("sent", { frames: args.send.length });
  });
});

socket.on("peers:credit", (grant) => allow(grant));

socket.on("b", (data, ...rest) => {
  if (rest.length > 0) fail(`"b" with ${rest.length} extra arguments`);
  const frame = Buffer.isBuffer(data) ? data : Buffer.from(data);
  consumedFrame(frame.length);
  received += 1;
  if (frame.length === 4 && frame.toString("latin1") === "done") {
    echoChain = echoChain.then(async () => {
      const summary = { echoed, echoedBytes };
      await sendFrame(Buffer.from(JSON.stringify(summary)), "t");
      report("summary_sent", summary);
      if (args.closeBy === "js") {
        socket.emit("peers:close", { code: "Normal", message: "js client done" });
        report("close_sent");
        // engine.io flushes the notice before it closes.
        socket.disconnect();
      }
    });
    return;
  }
  if (frame.length < 8) fail(`server frame of ${frame.length} bytes has no header`);
  const seed = frame.readUInt32LE(0);
  const length = frame.readUInt32LE(4);
  if (length !== frame.length) fail(`server frame says ${length} bytes, has ${frame.length}`);
  if (!frame.subarray(8).equals(pattern(seed, length).subarray(8))) {
    fail(`server frame ${seed} (${length} bytes) is damaged`);
  }
  echoChain = echoChain.then(async () => {
    await sendFrame(frame, "b");
    echoed += 1;
    echoedBytes += frame.length;
  });
});

socket.on("t", () => fail('the server sent a "t" frame; it only sends "b"'));

socket.on("peers:close", (notice) => {
  closeNotice = notice;
  report("close_received", { notice, framesReceived: received });
  socket.disconnect();
});

socket.onAny((event) => {
  if (!["peers:hello", "peers:credit", "b", "t", "peers:close"].includes(event)) {
    fail(`unexpected event ${event}`);
  }
});

socket.on("disconnect", (reason) => {
  report("disconnected", { reason });
  if (args.closeBy === "server" && closeNotice === null) fail(`disconnected (${reason}) without a close notice`);
  report("finished");
  // Not process.exit() at once: "disconnect" fires inside socket.disconnect(),
  // before the WebSocket has flushed the close notice and the disconnect packet.
  // Node exits by itself once the connection is closed.
  setTimeout(() => process.exit(0), 2000).unref();
});

setTimeout(() => fail("no result within 20 s"), 20000).unref();
