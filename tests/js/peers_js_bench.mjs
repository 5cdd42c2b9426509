// The driver of the browser-to-Rust WebRTC bench (tests/benches/browser_webrtc.rs).
//
//   node peers_js_bench.mjs SIGNALING_URL RUST_DEVICE_ID MIB ROUNDS [CAUSES [RAW_RUST_PORT]]
//
// CAUSES "1": the page adds the rounds that test the gap's causes (see the page's header).
// RAW_RUST_PORT (not 0): the bench program's raw webrtc-rs peer takes offers on this
// loopback TCP port, one JSON string line each way (`window.rawRustAnswer`); the page
// adds a "raw-rust" round to it.
//
// PEERS_BENCH_CPU_PROFILE=FILE in the environment: the page's main thread is sampled
// (the DevTools CPU profiler, every 100 µs) during each round of the peers-js stream;
// each round's profile goes to FILE.<path>.<round>.cpuprofile (DevTools opens it) and
// a summary (busy, idle, garbage collection, the functions with the most self time)
// to standard error.
//
// Serves the bundle of peers-js/dist/bench/browser-webrtc.js (page_server.mjs), opens
// it in headless Chromium (chromium.mjs, host candidates without mDNS) and holds the
// raw channel's other end: a node-datachannel peer that answers the page's offer
// (`window.rawAnswer`, candidates gathered first, loopback only) and, for every MIB
// MiB it receives, sends back the text "done <bytes>". The page's events are printed
// as JSON lines (see the page's header); "finished" ends the run.

import net from "node:net";

import nodeDataChannel from "node-datachannel";

import { launchChromium } from "./chromium.mjs";
import { servePage } from "./page_server.mjs";
import { fail, report } from "./webrtc_signaling.mjs";

const [signaling, rustDevice, mib, rounds, causes = "0", rawRustPort = "0"] = process.argv.slice(2);
if (!signaling || !rustDevice || !mib || !rounds) fail("usage: peers_js_bench.mjs SIGNALING_URL RUST_DEVICE_ID MIB ROUNDS");
const roundBytes = Number(mib) * 1024 * 1024;
// Every round moves MIB MiB twice; allow 1 MB/s and a minute for the setup.
const perRound = 2 + (causes === "1" ? 2 : 0) + (rawRustPort !== "0" ? 1 : 0);
setTimeout(() => fail("timed out"), 60_000 + (perRound * Number(rounds) * roundBytes) / 1000).unref();

// The raw peers, kept referenced for the whole run.
const rawPeers = [];

/// Answers `offer` with a node-datachannel peer that counts what arrives.
function rawAnswer(offer) {
  const pc = new nodeDataChannel.PeerConnection("raw", { iceServers: [] });
  rawPeers.push(pc);
  pc.onDataChannel((channel) => {
    let received = 0;
    channel.onMessage((msg) => {
      if (typeof msg === "string") return fail(`the page sent text on the raw channel: ${msg}`);
      received += msg.byteLength;
      if (received > roundBytes) fail(`the raw channel carried ${received} bytes in a round of ${roundBytes}`);
      if (received === roundBytes) {
        received = 0;
        channel.sendMessage(`done ${roundBytes}`);
      }
    });
  });
  return new Promise((resolve) => {
    pc.onGatheringStateChange((state) => state === "complete" && resolve(pc.localDescription().sdp));
    pc.setRemoteDescription(offer, "offer");
  });
}

/// Passes `offer` to the bench program's raw webrtc-rs peer; resolves with its answer.
function rawRustAnswer(offer) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(rawRustPort), "127.0.0.1", () => socket.write(JSON.stringify(offer) + "\n"));
    let line = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      line += chunk;
      const end = line.indexOf("\n");
      if (end >= 0) resolve(JSON.parse(line.slice(0, end)));
    });
    socket.on("error", reject);
  });
}

const profileFile = process.env.PEERS_BENCH_CPU_PROFILE;

/// The summary of a DevTools CPU profile: total, idle, and the top self times by function.
function summarize(profile, label) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    const f = byId.get(profile.samples[i]).callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const ms = (us) => (us / 1000).toFixed(1);
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
  process.stderr.write(`[profile ${label}] ${ms(total)} ms sampled; self time by function (ms, share):\n`);
  for (const [key, us] of rows) process.stderr.write(`  ${ms(us).padStart(8)}  ${((100 * us) / total).toFixed(1).padStart(5)} %  ${key}\n`);
}

/// The page's profiler switch: "start" before a round, "stop LABEL" after it.
function profiler(page) {
  let session;
  return async (command) => {
    if (!profileFile) return;
    session ??= await page.createCDPSession();
    if (command === "start") {
      await session.send("Profiler.enable");
      await session.send("Profiler.setSamplingInterval", { interval: 100 });
      await session.send("Profiler.start");
      return;
    }
    const label = command.replace(/^stop /, "");
    const { profile } = await session.send("Profiler.stop");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(`${profileFile}.${label}.cpuprofile`, JSON.stringify(profile));
    summarize(profile, label);
  };
}

const { origin, server } = await servePage("dist/bench/browser-webrtc.js");
const browser = await launchChromium(["--disable-features=WebRtcHideLocalIpsWithMdns"]);
try {
  const page = await browser.newPage();
  page.on("console", (m) => process.stderr.write(`[page] ${m.text()}\n`));
  page.on("pageerror", (e) => process.stderr.write(`[page error] ${e.message}\n`));
  let ended;
  const end = new Promise((resolve) => (ended = resolve));
  await page.exposeFunction("peersReport", (event, fields) => {
    report(event, JSON.parse(fields));
    if (event === "done" || event === "failed") ended(event);
  });
  await page.exposeFunction("rawAnswer", rawAnswer);
  await page.exposeFunction("rawRustAnswer", rawRustAnswer);
  await page.exposeFunction("peersProfile", profiler(page));
  const rawRust = rawRustPort !== "0" ? "1" : "0";
  await page.goto(`${origin}/?${new URLSearchParams({ signaling, rust: rustDevice, mib, rounds, causes, rawRust })}`);
  if ((await end) === "failed") throw new Error("the page failed");
} catch (e) {
  await browser.close();
  fail(e.stack || String(e));
}
await browser.close();
server.close();
nodeDataChannel.cleanup();
report("finished");
setTimeout(() => process.exit(0), 200);
