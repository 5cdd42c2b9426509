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

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const binary =
  process.env.PEERS_SIGNALING_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "debug", "peers-signaling");

const servers: ChildProcess[] = [];

/** Starts a server with `args`; resolves with its URL. */
export async function startServer(args: string[] = []): Promise<string> {
  assert.ok(existsSync(binary), `no signaling server at ${binary}: cargo build -p peers-signaling --features bin --bin peers-signaling`);
  const child = spawn(binary, ["--bind", "127.0.0.1:0", "--memory", "true", ...args], {
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
  return m[1] as string;
}

/** Kills every server started here (SIGKILL). */
export function stopServers(): void {
  for (const s of servers.splice(0)) s.kill("SIGKILL");
}
