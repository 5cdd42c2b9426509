// A peers-js signaling client for the live interop test (tests/tests/peers_js_signaling.rs):
// registers with a Rust `SignalingServer`, signals a Rust device that is offline at
// first, and prints what it sees as JSON lines.
//
//   node dist/examples/signaling.js SERVER_URL RUST_DEVICE_ID_HEX
//
// 1. registers: {"event":"registered","device_id","queued"};
// 2. watches the Rust device: {"event":"subscribed","online":[...]};
// 3. sends it an offer with a 30 s time to live: {"event":"sent","result"};
// 4. then prints, in the order they come, the Rust device's presence
//    {"event":"presence"}, the offer's later outcome {"event":"outcome"} and the Rust
//    device's signal {"event":"signal"}, which it answers with a "ready" carrying
//    {"echo": <its id>} ({"event":"echoed","result"}), followed by a signal to itself,
//    which the server refuses ({"event":"refused","kind","code","wire"});
// 5. closes and prints {"event":"finished"}. Any failure exits 1 with a message on stderr.
import { DeviceKeys, IncomingSignal, PeersError, SignalingClient } from "../src/index.js";

function report(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

function fail(message: string): never {
  process.stderr.write(`signaling.js: ${message}\n`);
  process.exit(1);
}

const [url, rustId] = process.argv.slice(2);
if (!url || !rustId) {
  process.stderr.write("usage: signaling.js SERVER_URL RUST_DEVICE_ID_HEX\n");
  process.exit(2);
}
const timer = setTimeout(() => fail("timed out"), 30_000);

const client = await SignalingClient.connect(url, DeviceKeys.generate("peers-js"));
report("registered", { device_id: client.deviceId, queued: client.queued });
report("subscribed", { online: await client.subscribe([rustId]) });
const sent = await client.signal(rustId, "offer", { sdp: "v=0 from peers-js", type: "offer" }, { ttlMs: 30_000 });
report("sent", { result: sent });

let waiting = 3;
let done!: () => void;
const finished = new Promise<void>((r) => (done = r));
const step = () => --waiting === 0 && done();

client.on("closed", (why) => waiting > 0 && fail(`closed early: ${why.code}: ${why.message}`));
client.on("notice", (notice) => report("notice", { notice }));
client.on("presence", (presence) => {
  report("presence", { presence });
  if (presence.device === rustId && presence.online) step();
});
client.on("outcome", (outcome) => {
  report("outcome", { outcome });
  if (outcome.id === sent.id) step();
});
client.on("signal", (signal: IncomingSignal) => {
  report("signal", { signal });
  void (async () => {
    const result = await client.signal(signal.from, "ready", { echo: signal.id });
    report("echoed", { result });
    try {
      await client.signal(client.deviceId, "ready", {});
      fail("a signal to itself was accepted");
    } catch (e) {
      if (!(e instanceof PeersError)) throw e;
      report("refused", { kind: e.kind, code: e.code, wire: e.detail.wire });
    }
    step();
  })().catch((e: unknown) => fail(String(e)));
});

await finished;
client.close();
clearTimeout(timer);
report("finished");
