// What a peers-js device does on a connection to a Rust `peers run` daemon that trusts
// it in one group (docs/device.md §2-4): its `PeerLinks` answers the control RPCs every
// connection has and takes part in the handover (`peers:groupReady` with no groups on
// each new link, so the daemon's manager adopts the link and makes it the one that
// carries traffic, `peers:takeover` when this device leads), and reports each call the
// daemon makes; the device calls the daemon's `peers:ping` and its group's
// `listChanges_{group}`, reporting the changes it reads; it waits for the daemon's
// `peers:groupReady` for the group and for one of its liveness pings (sent after 1 s of
// silence). The device announces no group itself: it keeps no replica, so the daemon's
// sync engine has nothing to pull from it. No Node built-ins: the browser page uses it.
import { Connection, PeerLinks, RANK_LOCAL, RANK_RELAY, RANK_WEBRTC, toHex } from "../src/index.js";
import type { Report } from "./exercise.js";

interface Change {
  seq: number;
  key: string;
  value: Uint8Array | null;
  timestamp: number;
  origin: Uint8Array;
}

/** The device's links to the daemon and what the daemon called on them, as {@link answerDaemon} answers it. */
export interface DaemonCalls {
  /** Prepare each connection with it in the handshake's `setup`, then `add` it ({@link linkUp}). */
  links: PeerLinks;
  /** The control methods the daemon called, in order. */
  calls: string[];
  /** Its first `peers:groupReady`'s argument. */
  readied: Promise<unknown>;
  /** Its first liveness `peers:ping`. */
  pinged: Promise<void>;
}

/** The links of device `own` to `daemon` (device ids), reporting every control call the daemon makes. */
export function answerDaemon(own: Uint8Array, daemon: Uint8Array, report: Report): DaemonCalls {
  const calls: string[] = [];
  let groupReady!: (groups: unknown) => void;
  const readied = new Promise<unknown>((r) => (groupReady = r));
  let ping!: () => void;
  const pinged = new Promise<void>((r) => (ping = r));
  const links = new PeerLinks(own, daemon, {
    onEmpty: () => undefined,
    onControl: (method, args) => {
      calls.push(method);
      report("daemon_called", { method, args });
      if (method === "peers:groupReady") groupReady(args);
      if (method === "peers:ping") ping();
    },
  });
  return { links, calls, readied, pinged };
}

/** Adds a verified connection to the daemon to the device's links, ranked by its transport. */
export function linkUp(answered: DaemonCalls, connection: Connection): void {
  const rank = connection.transport === "webrtc" ? RANK_WEBRTC : connection.transport === "relay" ? RANK_RELAY : RANK_LOCAL;
  answered.links.add(connection, rank);
}

/**
 * Calls the daemon's `peers:ping` and its group's `listChanges_{group}` (reporting
 * "pinged" and "changes"), then waits for the daemon's `peers:groupReady` ("group_ready")
 * and one of its liveness pings ("daemon_calls", every control call so far).
 */
export async function callDaemon(connection: Connection, group: string, answered: DaemonCalls, report: Report): Promise<void> {
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
  report("group_ready", { groups: await answered.readied });
  await answered.pinged;
  report("daemon_calls", { calls: [...answered.calls] });
}

/** The exchange above on `connection` (prepared with `answered.links`), then closes it. */
export async function exerciseDaemon(connection: Connection, group: string, answered: DaemonCalls, report: Report): Promise<void> {
  linkUp(answered, connection);
  await callDaemon(connection, group, answered, report);
  await connection.close("Normal", "page done");
  report("closed", { reason: await connection.closed });
}
