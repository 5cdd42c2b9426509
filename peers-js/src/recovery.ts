/**
 * What a transfer by code does when its connection breaks (docs/protocol.md §9.5,
 * §9.5.1), sans-IO: the same rules as the Rust `peers send` / `peers receive`
 * (`transfer/live.rs`). `sendByCode` (./send.ts) and `receiveByCode` (./transfer.ts)
 * carry them out.
 *
 * ```text
 * sender, a connection broke under the offer or the data stream:
 *   closed "Replaced" by either side's handover, another active → Moved: offer again there (no hop)
 *   another connection is active, hops < MAX_HOPS           → Other: offer again there
 *   the receiver closed it on purpose (not a path failure)  → Answer: fail with its reason
 *   the signaling connection dropped since the attempt began
 *     (its relays end with it), a path failure, hops < MAX_HOPS → NewRelayAfterReconnect: once
 *                                                             registered again, a new relay
 *                                                             (presence right after a server
 *                                                             restart says nothing: no check)
 *   a path failure, bytes moved since the last hop,
 *     hops < MAX_HOPS                                        → NewRelayIfOnline: presence says
 *                                                             online, or online again within
 *                                                             PEER_RETURN_WAIT_MS (its signaling
 *                                                             blinked) → a new relay; else Gone
 *   anything else                                            → Gone
 * sender, the round failed: receiverGone(err), rejoins < MAX_REJOINS, a rejoin wait
 *   → session-reopen, wait min(rejoin wait, the code's life left) for a new join, new PAKE
 * receiver, its last connection closed:
 *   a path failure, bytes verified since the last hop or the signaling connection
 *   dropped since then, hops < MAX_HOPS → a new relay (once registered again)
 * ```
 */
import { CloseReason } from "./envelope.js";
import { PeersError } from "./errors.js";

/** Most times one transfer goes on over another connection or a new relay after a break (as the Rust `MAX_RELAY_HOPS`). */
export const MAX_HOPS = 64;

/** Most times a sender waits for its receiver to run the same code again (as the Rust `MAX_REJOINS`; the server allows 16 reopenings). */
export const MAX_REJOINS = 8;

/** How long a sender waits each time for a receiver that vanished to come back, ms (as `peers send --rejoin-wait`). */
export const DEFAULT_REJOIN_WAIT_MS = 300_000;

/**
 * Whether a connection closed with `reason` ended because its path did (the server's
 * caps on a relay, the path failing, seen by either side), not because a side closed
 * it on purpose (the Rust `path_failed`).
 */
export function pathFailed(reason: CloseReason): boolean {
  return reason.code === "LimitExceeded" || reason.code === "TransportFailure" || reason.code === "Timeout";
}

/**
 * Whether a send failed because the receiver vanished (its connections gone, or
 * nothing moving), not by an answer or a rule (the Rust `receiver_gone`): the
 * transfer protocol's errors are answers (declined, cancelled, a changed file, the
 * receiver's close), except a stall; the connections' and the signaling's are not.
 */
export function receiverGone(err: unknown): boolean {
  if (!(err instanceof PeersError)) return false;
  if (err.kind === "Transfer") return err.code === "Stalled";
  return true;
}

/** What the sender does after a connection broke: see the module documentation. */
export type BreakStep = "Moved" | "Other" | "Answer" | "NewRelayAfterReconnect" | "NewRelayIfOnline" | "Gone";

export interface Break {
  /** Why the broken connection closed. */
  reason: CloseReason;
  /** Whether another connection than the broken one is active. */
  other: boolean;
  /** Hops so far (moves after a break and new relays). */
  hops: number;
  /** Whether the attempt on the broken connection moved bytes. */
  moved: boolean;
  /** Whether the signaling connection dropped since the attempt began (the signaling client reconnects). */
  signalingDropped?: boolean;
}

/** The sender's step after a break (the Rust sender's `transfer` loop). */
export function afterBreak(b: Break): BreakStep {
  // A handover (either side's) closed it for a better one under the offer or the pause: a move, not a break.
  if (b.other && b.reason.code === "Replaced") return "Moved";
  if (b.other && b.hops < MAX_HOPS) return "Other";
  if (b.reason.by === "Remote" && !pathFailed(b.reason)) return "Answer";
  // The relay died with the signaling connection, not with the receiver: both sides open a new one once registered.
  if (b.signalingDropped && b.hops < MAX_HOPS && pathFailed(b.reason)) return "NewRelayAfterReconnect";
  if (b.moved && b.hops < MAX_HOPS && pathFailed(b.reason)) return "NewRelayIfOnline";
  return "Gone";
}

/** Whether the receiver opens a new relay after its last connection closed with `reason` (the Rust receiver's `Change::Lost`). */
export function receiverReopens(reason: CloseReason, movedSinceHop: boolean, hops: number, signalingDropped = false): boolean {
  return (movedSinceHop || signalingDropped) && hops < MAX_HOPS && pathFailed(reason);
}

/**
 * How long a sender whose receiver's presence says offline after a break waits for it to
 * come back online before taking it as gone, ms: a receiver whose own signaling
 * connection blinked registers again within seconds (./reconnect.ts) and opens a new
 * relay. (The Rust sender waits the same, less the silence before the break.)
 */
export const PEER_RETURN_WAIT_MS = 10_000;

/** How long a side waits for its signaling client to register again before a new relay after a drop, ms. */
export const SIGNALING_RETURN_WAIT_MS = 60_000;

/**
 * How long a sender waits for the receiver's return after a round failed with `err`,
 * ms, or `undefined` when it fails instead: not a vanished receiver, the rejoins used
 * up, no rejoin wait, or the code's life over (`expiresAt`, unix ms).
 */
export function rejoinWait(err: unknown, rejoins: number, waitMs: number, expiresAt: number, now: number): number | undefined {
  if (!receiverGone(err) || rejoins >= MAX_REJOINS || waitMs <= 0) return undefined;
  const left = expiresAt - now;
  return left > 0 ? Math.min(waitMs, left) : undefined;
}
