// The real peers-signaling binary for the Node tests, on a loopback port with an
// in-memory store (built by `cargo build -p peers-signaling --features bin --bin
// peers-signaling`; found through PEERS_SIGNALING_BIN, else $CARGO_TARGET_DIR/debug/,
// else target/debug/). A missing binary fails the test, never skips it.
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import type { SignalingClient, SignalingEvents } from "../src/index.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const binary =
  process.env.PEERS_SIGNALING_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "debug", "peers-signaling");

const servers: ChildProcess[] = [];
/** The process serving each URL started here. */
const byUrl = new Map<string, ChildProcess>();

/** Starts a server with `args` (on `bind`, default any free loopback port; in memory unless `args` name a `--data-dir`); resolves with its URL. */
export async function startServer(args: string[] = [], bind = "127.0.0.1:0"): Promise<string> {
  assert.ok(existsSync(binary), `no signaling server at ${binary}: cargo build -p peers-signaling --features bin --bin peers-signaling`);
  const store = args.includes("--data-dir") ? [] : ["--memory", "true"];
  const child = spawn(binary, ["--bind", bind, ...store, ...args], {
    env: { ...process.env, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  servers.push(child);
  const lines = createInterface({ input: child.stdout! });
  const line = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error("the server printed nothing in 20 s")), 20_000);
    lines.once("line", (l) => (clearTimeout(timer), res(l)));
    child.once("exit", (code) => rej(new Error(`the server exited with ${code}`)));
  });
  const m = /^listening on (\S+)$/.exec(line);
  assert.ok(m, `unexpected first line ${JSON.stringify(line)}`);
  byUrl.set(m[1] as string, child);
  return m[1] as string;
}

/**
 * SIGKILLs the server at `url` (one started here) and, after `downMs`, starts a new
 * one with `args` on the same port (its state is gone: in-memory store); resolves
 * with the new one's URL (the same) once it listens.
 */
export async function restartServer(url: string, downMs: number, args: string[] = []): Promise<string> {
  const child = byUrl.get(url);
  assert.ok(child, `no server of this test at ${url}`);
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
  await new Promise((r) => setTimeout(r, downMs));
  return startServer(args, new URL(url).host);
}

/** Kills every server started here (SIGKILL). */
export function stopServers(): void {
  for (const s of servers.splice(0)) s.kill("SIGKILL");
}

/** The next `event` of `client` that `accept` takes, within `withinMs`. */
export function nextEvent<E extends keyof SignalingEvents>(
  client: SignalingClient,
  event: E,
  withinMs: number,
  accept: (v: SignalingEvents[E]) => boolean = () => true,
): Promise<SignalingEvents[E]> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no ${event} within ${withinMs} ms`)), withinMs);
    const listener = (v: SignalingEvents[E]) => {
      if (!accept(v)) return;
      clearTimeout(timer);
      client.off(event, listener);
      res(v);
    };
    client.on(event, listener);
  });
}
