/**
 * When the signaling client registers again after its connection dropped, sans-IO:
 * bounded exponential backoff with equal jitter (the same shape as the Rust device's
 * `ReconnectOptions`), and which failures are worth another try. `SignalingClient`
 * (./signaling.ts) carries it out.
 *
 * ```text
 * the connection dropped (not closed by this side, not `replaced`)
 *   attempt n (0, 1, 2...) waits d/2 + random·d/2, d = min(maxDelayMs, firstDelayMs · 2^n)
 *     defaults: 125–250 ms, 250–500 ms, 0.5–1 s, 1–2 s, then 1–2 s each
 *   a refusal that another try cannot change (BadSignature, Protocol, Replaced) → give up
 *   giveUpMs (60 s) after the drop with no registration → give up
 *   give up: `closed` with `Transport`/`ReconnectGaveUp` (the last failure in `detail.last`)
 * ```
 */
import { PeersError } from "./errors.js";

/** The first retry's delay bound, ms: the first attempt goes within this time of the drop. */
export const RECONNECT_FIRST_DELAY_MS = 250;
/** The longest delay between two attempts, ms. */
export const RECONNECT_MAX_DELAY_MS = 2_000;
/** How long after the drop the client keeps trying before it closes, ms. */
export const RECONNECT_GIVE_UP_MS = 60_000;

/** The reconnection schedule; `false` in `SignalingOptions.reconnect` turns it off. */
export interface ReconnectOptions {
  /** Default {@link RECONNECT_FIRST_DELAY_MS}. */
  firstDelayMs?: number;
  /** Default {@link RECONNECT_MAX_DELAY_MS}. */
  maxDelayMs?: number;
  /** Default {@link RECONNECT_GIVE_UP_MS}. */
  giveUpMs?: number;
}

/** The delay before attempt `attempt` (0-based), ms; `random` in [0, 1). */
export function reconnectDelay(attempt: number, random: number, options: ReconnectOptions = {}): number {
  const first = options.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS;
  const max = Math.max(first, options.maxDelayMs ?? RECONNECT_MAX_DELAY_MS);
  const d = Math.min(max, first * 2 ** Math.min(attempt, 30));
  return Math.round(d / 2 + (random * d) / 2);
}

/** Whether a failed registration attempt is worth another: not a refusal that holds for every try. */
export function retryable(err: unknown): boolean {
  if (!(err instanceof PeersError)) return true;
  if (err.kind === "Signaling") return err.code !== "BadSignature" && err.code !== "Protocol" && err.code !== "Replaced";
  return true;
}

/**
 * One outage: `next` says how long to wait before the next attempt, or `undefined`
 * when the client gives up (the last failure not retryable, or past `giveUpMs`).
 */
export class ReconnectSchedule {
  private attempts = 0;

  constructor(
    /** When the connection dropped, ms. */
    readonly since: number,
    private readonly options: ReconnectOptions = {},
  ) {}

  /** Attempts started so far. */
  get tried(): number {
    return this.attempts;
  }

  /** The wait before the next attempt after `last` failed (nothing failed yet: `undefined`). */
  next(now: number, random: number, last?: unknown): number | undefined {
    if (last !== undefined && !retryable(last)) return undefined;
    const delay = reconnectDelay(this.attempts, random, this.options);
    if (now + delay - this.since >= (this.options.giveUpMs ?? RECONNECT_GIVE_UP_MS)) return undefined;
    this.attempts += 1;
    return delay;
  }

  /** The error the client closes with when it gives up. */
  gaveUp(now: number, last: unknown): PeersError {
    const why = last instanceof Error ? last.message : String(last ?? "no attempt");
    return new PeersError("Transport", "ReconnectGaveUp", `not registered again within ${now - this.since} ms of the drop (${this.attempts} attempts): ${why}`, {
      last: last instanceof PeersError ? last.code : undefined,
    });
  }
}
