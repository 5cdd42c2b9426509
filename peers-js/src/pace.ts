/**
 * Pacing of relay events, sans-IO (as `peers-signaling/src/client/pace.rs`): the
 * server holds each device's relay frames, credit and closes to a rate that
 * `relay-open` names (`rate`: units per second and a burst; one unit per started
 * 16 KiB of frame data) and closes a relay whose device goes over it with
 * `LimitExceeded`. The client spends 3/4 of that budget through one token bucket
 * for all its relays, waiting before an event the bucket cannot pay for yet, so a
 * fast sender is slowed to the server's rate instead of losing its relay. The rest
 * is left for the device's other requests and for rounding between the two clocks.
 */

/** The share of the server's rate and burst spent on relay events. */
export const PACE_SHARE = 0.75;

/** Bytes of frame data per unit (`RELAY_UNIT_BYTES`). */
export const RELAY_UNIT_BYTES = 16 * 1024;

/** A relay budget as `relay-open` carries it. */
export interface RelayRate {
  units_per_second: number;
  burst_units: number;
}

/** The server's defaults (50 requests/s, a burst of 200, 16 units each), until a server says otherwise. */
export const DEFAULT_RELAY_RATE: RelayRate = { units_per_second: 800, burst_units: 3_200 };

/** The units a relay event with `len` bytes of frame data costs (0 for credit and closes: 1 unit). */
export function relayEventUnits(len: number): number {
  return Math.floor(len / RELAY_UNIT_BYTES) + 1;
}

/** A token bucket in units; a reservation it cannot pay at once puts it in debt and says how long to wait. */
export class Pacer {
  private perSecond = 1;
  private burst = 1;
  private tokens: number;
  private at: number | undefined;

  constructor(rate: RelayRate = DEFAULT_RELAY_RATE) {
    this.setRate(rate);
    this.tokens = this.burst;
  }

  /** Spends {@link PACE_SHARE} of `rate` from now on. */
  setRate(rate: RelayRate): void {
    this.perSecond = Math.max(rate.units_per_second * PACE_SHARE, 1);
    this.burst = Math.max(rate.burst_units * PACE_SHARE, 1);
    this.tokens = Math.min(this.tokens ?? this.burst, this.burst);
  }

  /** Reserves `units` at `nowMs`: how many ms to wait before sending the event. */
  reserve(nowMs: number, units: number): number {
    if (this.at !== undefined) this.tokens = Math.min(this.tokens + (Math.max(nowMs - this.at, 0) / 1000) * this.perSecond, this.burst);
    this.at = nowMs;
    this.tokens -= units;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.perSecond) * 1000;
  }
}
