// What a peers-js device does on a connection to a Rust `peers run` daemon that trusts
// it in one group (docs/device.md §2-3): it answers the control RPCs every connection
// has (`peers:ping`, `peers:groupReady`, `peers:groupLeft`, `peers:takeover`,
// `peers:retire`), reporting each call the daemon makes; it calls the daemon's
// `peers:ping` and its group's `listChanges_{group}`, reporting the changes it reads;
// it waits for the daemon's `peers:groupReady` and for one of its liveness pings (sent
// after 1 s of silence), then closes. The page does not announce the group itself (no
// `peers:groupReady` from here): it keeps no replica, so the daemon's sync engine has
// nothing to pull from it. No Node built-ins: the browser page uses it.
import { Connection, toHex } from "../src/index.js";
import type { Report } from "./exercise.js";

/** The control RPCs of docs/device.md §2, answered with `()`. */
const CONTROL = ["peers:ping", "peers:groupReady", "peers:groupLeft", "peers:takeover", "peers:retire"];

interface Change {
  seq: number;
  key: string;
  value: Uint8Array | null;
  timestamp: number;
  origin: Uint8Array;
}

/** Runs the exchange above on `connection` (accepted from or dialed to the daemon) for `group`. */
export async function exerciseDaemon(connection: Connection, group: string, report: Report): Promise<void> {
  const calls: string[] = [];
  let groupReady!: (groups: unknown) => void;
  const readied = new Promise<unknown>((r) => (groupReady = r));
  let pinged!: () => void;
  const liveness = new Promise<void>((r) => (pinged = r));
  for (const method of CONTROL) {
    connection.expose(method, (args) => {
      calls.push(method);
      report("daemon_called", { method, args });
      if (method === "peers:groupReady") groupReady(args);
      if (method === "peers:ping") pinged();
      return null;
    });
  }

  await connection.emit("peers:ping", null);
  report("pinged", {});
  const batch = await connection.emit<{ changes: Change[]; head: number; more: boolean }>(`listChanges_${group}`, { since: 0, limit: 100 });
  report("changes", {
    head: batch.head,
    more: batch.more,
    changes: batch.changes.map((c) => ({
      key: c.key,
      value: c.value === null ? null : new TextDecoder().decode(c.value),
      origin: toHex(c.origin),
    })),
  });
  report("group_ready", { groups: await readied });
  await liveness;
  report("daemon_calls", { calls });
  await connection.close("Normal", "page done");
  report("closed", { reason: await connection.closed });
}
