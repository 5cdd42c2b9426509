/**
 * What both ends of a transfer by code share once they met (docs/protocol.md §9.5):
 * the creator's wait for the join ({@link waitForJoin}), the PAKE on the relay ({@link pakeOnRelay}), trust pinned to the device it confirmed
 * ({@link pinnedTo}), and the connections to that device ({@link PeerLinks}: the control
 * RPCs of docs/device.md §2 answered, the handover of §4 through a {@link LinkTable}).
 * `receiveByCode` (./transfer.ts), `sendByCode` (./send.ts) and pairing (./pair.ts) are built on them.
 */
import { equal } from "./bytes.js";
import { Connection } from "./connection.js";
import { CloseCode, CloseReason } from "./envelope.js";
import { PeersError } from "./errors.js";
import { TrustLevel } from "./handshake.js";
import { LinkAction, LinkTable } from "./links.js";
import { transferError } from "./manifest.js";
import { decodePakeFrame, encodePakeFrame, PakeConfirm, PakeRole, startPake } from "./pake.js";
import { RelaySocket } from "./relay.js";
import { generateCode } from "./code.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { CreatedSession, JoinedSession, SessionChange, SignalingClient, SignalingState } from "./signaling.js";

/** How long the PAKE may take on the relay, ms (as the Rust side). */
export const PAKE_TIMEOUT_MS = 30_000;

/**
 * The PAKE of `password` (a code's canonical text) as `role` on `relay`: each side
 * sends its frame as soon as it has it and reads exactly a `Pake` and a `Confirm`, so
 * the handshake that follows never mixes with PAKE frames. Returns the confirmed
 * peer; on any failure (`WrongCode`, a malformed frame, the deadline) the relay is
 * closed `Refused` so the peer is not left waiting.
 */
export async function pakeOnRelay(relay: RelaySocket, password: string, role: PakeRole, own: DeviceInfo, timeoutMs = PAKE_TIMEOUT_MS): Promise<DeviceInfo> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(transferError("Timeout", `the PAKE did not finish within ${timeoutMs} ms`)), timeoutMs)));
  const run = async () => {
    const [state, message] = startPake(password, role);
    await relay.send(encodePakeFrame({ pake: message }));
    const first = decodePakeFrame(await relay.recv());
    if (!("pake" in first)) throw transferError("Protocol", "expected a Pake frame first");
    const [waiting, confirm] = state.receive(first.pake, own);
    await relay.send(encodePakeFrame({ confirm }));
    const second = decodePakeFrame(await relay.recv());
    if (!("confirm" in second)) throw transferError("Protocol", "expected a Confirm frame");
    return waiting.receive(second.confirm as PakeConfirm);
  };
  try {
    return await Promise.race([run(), deadline]);
  } catch (err) {
    await relay.close("Refused", `PAKE failed: ${(err as Error).message}`).catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** A code's session made by its creator: the registered client, the session and the code. */
export interface CodeSession {
  signaling: SignalingClient;
  created: CreatedSession;
  /** The canonical text (`7-maple-orbit`). */
  code: string;
  /** The server's receive page with the code in its fragment, when the server serves one. */
  link?: string;
}

/**
 * Registers a fresh device key with the server at `url` (the sender's transfer key, or
 * a pairing device's signaling-only key, so a daemon of the same device stays
 * registered), creates a `pake` session living `ttlMs` and makes the code of `words`
 * words for its number.
 */
export async function openCode(url: string, words: number | undefined, ttlMs: number): Promise<CodeSession & { keys: DeviceKeys }> {
  const keys = DeviceKeys.generate("peers-transfer");
  const signaling = await SignalingClient.connect(url, keys);
  try {
    const created = await signaling.createSession({ kind: "pake", ttlMs });
    if (!/^\d+$/.test(created.code)) throw transferError("Protocol", `the server answered a pake session with code ${JSON.stringify(created.code)}`);
    const code = generateCode(Number(created.code), words).text;
    const out: CodeSession & { keys: DeviceKeys } = { keys, signaling, created, code };
    const page = created.receivePage;
    if (page !== undefined && page.startsWith("/") && !page.startsWith("//")) {
      const link = new URL(page, url);
      link.hash = code;
      out.link = link.toString();
    }
    return out;
  } catch (err) {
    signaling.close();
    throw err;
  }
}

/**
 * The device that joins the code's session `transferId` (the creator's `session`
 * event); fails `Timeout` after `ttlMs` or when the session expires, `Closed` when it
 * ends, with the signaling client's error when that closes, and with `stop`'s. With
 * the creator's `token`, each time the signaling client registers again after a drop
 * the session is probed (`session-reopen`, which leaves a session still waiting for
 * its receiver as it is): a server that forgot it (an in-memory one that restarted)
 * fails the wait at once, `Transfer`/`SessionLost`, rather than at the code's end.
 * The probe waits one round trip first (an `ice-config` request): the server ends a
 * registration with a `joined` for each joined session of the device (docs/signaling.md
 * §6), so a join made while this client was away is seen before the probe, which
 * would otherwise reopen that session. A `joined` for a device of `met` (a receiver
 * already met, told again by a registration) is not a new join.
 */
export function waitForJoin(signaling: SignalingClient, transferId: string, ttlMs: number, stop?: Promise<never>, token?: string, met: readonly string[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => finish(() => reject(transferError("Timeout", `nobody used the code within ${ttlMs} ms`))), ttlMs);
    const onSession = (change: SessionChange) => {
      if (change.transferId !== transferId) return;
      if (change.state === "joined" && change.peer && met.includes(change.peer)) return;
      if (change.state === "joined" && change.peer) finish(() => resolve(change.peer!));
      else if (change.state === "expired") finish(() => reject(transferError("Timeout", "the code expired before anybody used it")));
      else if (change.state === "closed") finish(() => reject(transferError("Closed", `the code's session ended: ${change.reason ?? "closed"}`)));
    };
    const onClosed = (err: PeersError) => finish(() => reject(err));
    const onState = (state: SignalingState) => {
      if (state.state !== "registered" || token === undefined) return;
      const probe = () => {
        if (settled) return;
        signaling.reopenSession(transferId, token).catch((err: unknown) => {
          if (err instanceof PeersError && err.code === "SessionNotFound") {
            finish(() => reject(transferError("SessionLost", "the signaling server restarted and forgot the code's session: make a new code")));
          }
        });
      };
      signaling.iceConfig().then(probe, probe);
    };
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signaling.off("session", onSession).off("closed", onClosed).off("state", onState);
      settle();
    };
    signaling.on("session", onSession).on("closed", onClosed).on("state", onState);
    stop?.catch((err: unknown) => finish(() => reject(err)));
  });
}

/**
 * The pauses, ms, between the joins of a receiver refused `SessionTaken`: the sender
 * still holds the session for its previous receiver (a receiver killed a moment ago; the
 * sender reopens the session within about 10 s, docs/protocol.md §9.5.1). Six joins over
 * 15 s, well within the server's join rate (10 a minute per device and per address), as
 * the Rust receiver's `TAKEN_RETRIES`.
 */
export const TAKEN_RETRIES_MS: readonly number[] = [2_000, 3_000, 3_000, 3_000, 4_000];

/**
 * Joins the session numbered `session`; a join refused `SessionTaken` is tried again
 * after each pause of `retriesMs` (ms), and the last refusal is thrown. `stop` ends
 * the wait with its error.
 */
export async function joinCode(signaling: SignalingClient, session: string, retriesMs: readonly number[] = TAKEN_RETRIES_MS, stop?: Promise<never>): Promise<JoinedSession> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await signaling.joinSession(session);
    } catch (err) {
      const pause = retriesMs[attempt];
      if (!(err instanceof PeersError && err.code === "SessionTaken") || pause === undefined) throw err;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const slept = new Promise<void>((r) => (timer = setTimeout(r, pause)));
      try {
        await (stop ? Promise.race([slept, stop]) : slept);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

/** A trust decision that accepts exactly `device` (user id, device id, both keys) and nothing else. */
export function pinnedTo(device: DeviceInfo): (peer: DeviceInfo) => TrustLevel {
  return (p) =>
    equal(p.device_id, device.device_id) && equal(p.signing_key, device.signing_key) && equal(p.static_key, device.static_key) && p.user_id === device.user_id
      ? TrustLevel.Trusted
      : TrustLevel.Untrusted;
}

/** Control RPCs of docs/device.md §2 answered without acting on them (no groups, no device messages). */
const CONTROL_NOOP = ["peers:ping", "peers:groupLeft", "peers:deviceMessage"];

/** Handover calls kept for a connection not yet added (its `peers:groupReady` and a takeover or retire). */
const MAX_EARLY_CALLS = 4;

/** What the owner of {@link PeerLinks} is told, and asked. */
export interface PeerLinkHooks {
  /** The last connection closed. */
  onEmpty: (last: CloseReason) => void;
  /** The handover made another connection active. */
  onActive?: (active: Connection) => void;
  /** Resolves once this side's own work on `connection` is done (a sender's data stream): a retired link closes only then. */
  drained?: (connection: Connection) => Promise<void>;
  /** Told of every control RPC the peer calls (docs/device.md §2), with its arguments, as it is answered. */
  onControl?: (method: string, args: unknown) => void;
}

/**
 * The verified connections of one transfer to the confirmed peer: each answers the
 * control RPCs and takes part in the handover (`peers:groupReady` with no groups,
 * `peers:takeover`, `peers:retire`) through a {@link LinkTable}; the hooks tell the
 * owner when the active connection changes and when the last one closed.
 */
export class PeerLinks {
  private readonly table: LinkTable;
  private readonly connections = new Map<number, Connection>();
  private readonly ids = new Map<Connection, number>();
  /** Handover calls that came before the connection was added (bounded: three kinds, each applied once it is). */
  private readonly early = new Map<Connection, Array<(id: number) => LinkAction[]>>();
  private nextLink = 1;
  private lastActive: number | undefined;

  constructor(
    own: Uint8Array,
    peer: Uint8Array,
    private readonly hooks: PeerLinkHooks,
  ) {
    this.table = new LinkTable(own, peer);
  }

  /**
   * Exposes the handover's RPCs on `connection` before it is added (pass it as the
   * `setup` of `Connection.connect` / `accept`: the peer may call at once after
   * `Ready`); what the peer calls before {@link add} is applied when it is added.
   */
  prepare(connection: Connection): void {
    if (this.early.has(connection) || this.ids.has(connection)) return;
    const early: Array<(id: number) => LinkAction[]> = [];
    this.early.set(connection, early);
    const on = (method: string, event?: (id: number) => LinkAction[]) =>
      connection.expose(method, (args) => {
        this.hooks.onControl?.(method, args);
        if (!event) return null;
        const id = this.ids.get(connection);
        if (id === undefined) {
          if (early.length < MAX_EARLY_CALLS) early.push(event);
        } else this.apply(event(id));
        return null;
      });
    void connection.closed.then(() => this.early.delete(connection));
    for (const method of CONTROL_NOOP) on(method);
    on("peers:groupReady", (id) => this.table.groupReady(id));
    on("peers:takeover", (id) => this.table.takeover(id));
    on("peers:retire", (id) => this.table.peerRetired(id));
  }

  /** Adds a verified connection of `rank` (./links.ts); the caller exposes its own handlers on it too. */
  add(connection: Connection, rank: number): void {
    this.prepare(connection);
    const early = this.early.get(connection) ?? [];
    this.early.delete(connection);
    const id = this.nextLink++;
    this.connections.set(id, connection);
    this.ids.set(connection, id);
    void connection.closed.then((reason) => {
      this.connections.delete(id);
      this.ids.delete(connection);
      this.apply(this.table.closed(id));
      if (this.connections.size === 0) this.hooks.onEmpty(reason);
    });
    this.apply(this.table.added(id, rank));
    for (const event of early) this.apply(event(id));
  }

  /** The connection the handover made active (the one to carry the transfer). */
  get active(): Connection | undefined {
    const id = this.table.active;
    return id === undefined ? undefined : this.connections.get(id);
  }

  private apply(actions: LinkAction[]): void {
    for (const action of actions) {
      const connection = this.connections.get(action.link);
      if (!connection) continue;
      const quiet = (p: Promise<unknown>) => void p.catch(() => undefined);
      switch (action.kind) {
        case "SendGroupReady":
          quiet(connection.emit("peers:groupReady", []));
          break;
        case "SendTakeover":
          quiet(connection.emit("peers:takeover", null));
          break;
        case "Retire":
          quiet(connection.emit("peers:retire", null));
          break;
        case "Close":
          quiet((this.hooks.drained?.(connection) ?? Promise.resolve()).then(() => connection.close(action.code, action.why)));
          break;
      }
    }
    const active = this.table.active;
    if (active !== this.lastActive) {
      this.lastActive = active;
      const connection = active === undefined ? undefined : this.connections.get(active);
      if (connection) this.hooks.onActive?.(connection);
    }
  }

  /** Waits up to `ms` for the peer to close every connection, then closes what is left with `message`. */
  async close(ms: number, message: string, code: CloseCode = "Normal"): Promise<void> {
    const open = [...this.connections.values()];
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(open.map((c) => c.closed)), new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    await Promise.all(open.map((c) => c.close(code, message)));
  }
}
