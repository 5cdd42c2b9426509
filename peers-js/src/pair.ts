/**
 * Pairing by code (docs/protocol.md §9.6), compatible with `peers pair` / `peers join`:
 * the meeting of a transfer by code (./meet.ts) where each side's `Confirm` carries its
 * **long-term** device (its keys and the URLs it advertises), then a `Connection`
 * between the two long-term keys, pinned to the device the PAKE confirmed (proving each
 * holds its device's private keys), over which the creator names the groups:
 *
 * ```text
 *  pairByCode (creator)                              joinByCode (joiner)
 *   fresh key for signaling only; session-create {"kind": "pake"}; the code
 *   PAKE + Confirm {long-term device} ◀══ relay ══▶ PAKE + Confirm {long-term device}
 *   Connection.connect (long-term keys) ◀═══════▶ Connection.accept (long-term keys)
 *   call "pair.groups" {groups} ──────────────────▶ checked (checkGroups)
 *                         ◀────────────────────────── nil
 *   close; session-close                              close after it
 * ```
 *
 * Neither function trusts anything: both return {@link Paired} and the caller trusts
 * the device in those groups (as `peers trust` would). A wrong code fails the PAKE on
 * both sides (`WrongCode`) and burns the session.
 */
import { Brotli } from "./codec.js";
import { parseCode } from "./code.js";
import { Connection, connectionConfig } from "./connection.js";
import { PeersError } from "./errors.js";
import { DeviceInfo, DeviceKeys } from "./identity.js";
import { transferError } from "./manifest.js";
import { openCode, pakeOnRelay, pinnedTo, waitForJoin } from "./meet.js";
import { RelaySocket } from "./relay.js";
import { SignalingClient } from "./signaling.js";

/** The call that carries the groups from the creator to the joiner. */
export const PAIR_METHOD = "pair.groups";
/** Most groups one pairing names. */
export const MAX_PAIR_GROUPS = 64;
/** Longest group id (the Rust `GroupId`: 1 to 64 of `[A-Za-z0-9_.-]`). */
export const MAX_GROUP_ID_LEN = 64;
/** How long the creator waits for the joiner's answer, and the joiner for the groups, ms. */
export const PAIR_CALL_TIMEOUT_MS = 30_000;

/** The outcome of a pairing, on either side. */
export interface Paired {
  /** The other device, as the PAKE confirmed it and its keys proved it. */
  device: DeviceInfo;
  /** The groups to trust it in. */
  groups: string[];
}

/** Checks a pairing's groups (sans-IO): 1 to 64 valid group ids; anything else is `Transfer`/`Protocol`. */
export function checkGroups(value: unknown): string[] {
  const bad = (why: string) => transferError("Protocol", `a pairing's groups: ${why}`);
  if (!Array.isArray(value)) throw bad("not a list");
  if (value.length === 0 || value.length > MAX_PAIR_GROUPS) throw bad(`${value.length} groups (1 to ${MAX_PAIR_GROUPS})`);
  for (const g of value) {
    if (typeof g !== "string" || g.length === 0 || g.length > MAX_GROUP_ID_LEN || !/^[A-Za-z0-9_.-]+$/.test(g)) throw bad(`${JSON.stringify(g)?.slice(0, 80)} is not a group id`);
  }
  return value as string[];
}

export interface PairOptions {
  /** URLs where the other device can reach this one (they travel in the `Confirm`). */
  addresses?: string[];
  /** Words in the code (creator), 2 to 4. */
  words?: number;
  /** The code's lifetime (creator), ms. Default 10 minutes. */
  ttlMs?: number;
  /** Relay opening deadline after the join, ms. Default 30,000. */
  relayTimeoutMs?: number;
  brotli?: Brotli;
}

export interface PairHandle {
  /** The code for the other device (`peers join CODE`, or `joinByCode`). */
  code: string;
  /** Resolves once the other device is confirmed and took the groups. */
  done: Promise<Paired>;
  /** Stops waiting: the session is closed; `done` fails `Cancelled`. */
  cancel(): void;
}

/**
 * Creates a pairing code for the device of `keys` and `groups` through the server at
 * `url`; the rest runs in the background until a device joins with the code.
 */
export async function pairByCode(url: string, keys: DeviceKeys, groups: string[], options: PairOptions = {}): Promise<PairHandle> {
  const offer = { groups: checkGroups(groups) };
  const own = keys.info(options.addresses ?? []);
  const ttl = options.ttlMs ?? 10 * 60_000;
  const { signaling, created, code } = await openCode(url, options.words, ttl);
  let cancel!: (err: PeersError) => void;
  const stopped = new Promise<never>((_, reject) => (cancel = reject));
  void stopped.catch(() => undefined);
  const step = <T>(work: Promise<T>) => Promise.race([work, stopped]);
  const done = (async () => {
    try {
      const joiner = await step(waitForJoin(signaling, created.transferId, ttl, stopped, created.senderToken));
      const relay = await step(RelaySocket.open(signaling, joiner, { timeoutMs: options.relayTimeoutMs ?? 30_000 }));
      const peer = await step(pakeOnRelay(relay, code, "creator", own));
      const config = await connectionConfig(keys, pinnedTo(peer), options.brotli ? { brotli: options.brotli } : {});
      const connection = await step(Connection.connect(relay, config, peer.device_id));
      try {
        await step(connection.emit(PAIR_METHOD, offer, PAIR_CALL_TIMEOUT_MS));
      } finally {
        await connection.close("Normal", "paired");
      }
      return { device: peer, groups: offer.groups };
    } finally {
      await signaling.closeSession(created.transferId, created.senderToken).catch(() => undefined);
      signaling.close();
    }
  })();
  void done.catch(() => undefined);
  return { code, done, cancel: () => cancel(transferError("Cancelled", "the pairing was cancelled")) };
}

/**
 * Joins the pairing of `code` (read as `peers join` reads it: a word outside the list
 * is `BadCode` before anything is sent) as the device of `keys`; returns the creator's
 * device and the groups once both are confirmed.
 */
export async function joinByCode(url: string, code: string, keys: DeviceKeys, options: PairOptions = {}): Promise<Paired> {
  const parsed = parseCode(code);
  const own = keys.info(options.addresses ?? []);
  // Registration uses a fresh key, so a daemon of this device stays registered.
  const signaling = await SignalingClient.connect(url, DeviceKeys.generate("peers-transfer"));
  try {
    const joined = await signaling.joinSession(String(parsed.session));
    try {
      const relay = await RelaySocket.open(signaling, joined.sender, { timeoutMs: options.relayTimeoutMs ?? 30_000 });
      const peer = await pakeOnRelay(relay, parsed.text, "joiner", own);
      const config = await connectionConfig(keys, pinnedTo(peer), options.brotli ? { brotli: options.brotli } : {});
      const connection = await Connection.accept(relay, config);
      let named!: (groups: string[]) => void;
      const groups = new Promise<string[]>((resolve) => (named = resolve));
      connection.expose(PAIR_METHOD, (args) => {
        named(checkGroups((args as { groups?: unknown } | null)?.groups));
        return null;
      });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        groups,
        connection.closed.then((reason) => transferError("Closed", `the other device closed before naming the groups: ${reason.message}`)),
        new Promise<PeersError>((r) => (timer = setTimeout(() => r(transferError("Timeout", "the other device never named the groups")), PAIR_CALL_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      // The answer may still be on its way to the creator, which closes once it has it.
      await Promise.race([connection.closed, new Promise((r) => setTimeout(r, 2_000))]);
      await connection.close("Normal", "paired");
      if (outcome instanceof PeersError) throw outcome;
      return { device: peer, groups: outcome };
    } finally {
      await signaling.closeSession(joined.transferId, joined.receiverToken).catch(() => undefined);
    }
  } finally {
    signaling.close();
  }
}
