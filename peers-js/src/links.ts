/**
 * Several connections to one device and which of them carries traffic: the handover
 * of docs/device.md §4, as far as a transfer needs it, sans-IO.
 *
 * The side with the smaller device id (byte order) is the leader and alone picks the
 * active link; the follower follows its `peers:takeover`. Each side announces
 * `peers:groupReady` on every new link (the peer adopts a link only once it arrived);
 * a link given up is retired with `peers:retire` and closed once both sides retired
 * it. The table has no drain of its own: a receiver only answers, and a sender's owner
 * (`PeerLinks`, ./meet.ts) closes a retired link only once its data stream there ended.
 *
 * ```text
 * added(link, rank)    → SendGroupReady(link); the first link is active
 * groupReady(link)     leader: the best adopted link (higher rank wins; equal ranks keep
 *                      the active one) becomes active: SendTakeover(it), Retire(every other)
 * takeover(link)       follower: active = link, Retire(every other)
 * peerRetired(link)    retired by us too → Close(link); another link → Retire, Close;
 *                      the active link while another lives (the takeover was lost) → as
 *                      takeover on the best other; the only link keeps carrying traffic
 * closed(link)         forgotten; the active one → the best remaining link
 * ```
 */
import { PeersError } from "./errors.js";

/** Link ranks, higher is better (docs/device.md §1's order, for the paths a transfer has). */
export const RANK_RELAY = 1;
export const RANK_WEBRTC = 2;

/** At most this many links to one device at once; a further one is closed at once. */
export const MAX_LINKS = 8;

export type LinkAction =
  | { kind: "SendGroupReady"; link: number }
  | { kind: "SendTakeover"; link: number }
  | { kind: "Retire"; link: number }
  | { kind: "Close"; link: number; why: string };

type Phase = "Verified" | "Adopted" | "Retired" | "PeerRetired" | "BothRetired";

interface Link {
  rank: number;
  phase: Phase;
}

/** `a < b` in byte order (the Rust `DeviceId`'s `Ord`). */
export function idLess(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! < b[i]!;
  }
  return a.length < b.length;
}

export class LinkTable {
  private readonly links = new Map<number, Link>();
  private activeLink: number | undefined;
  /** Whether this side leads (its device id is the smaller). */
  readonly leads: boolean;

  constructor(own: Uint8Array, peer: Uint8Array) {
    this.leads = idLess(own, peer);
  }

  get active(): number | undefined {
    return this.activeLink;
  }

  /** Links not yet closed. */
  get size(): number {
    return this.links.size;
  }

  private live(id: number): boolean {
    const phase = this.links.get(id)?.phase;
    return phase === "Verified" || phase === "Adopted";
  }

  /** The best live link other than `except`, by rank (the lower id on a tie: the older). */
  private best(except?: number, adoptedOnly = false): number | undefined {
    let best: number | undefined;
    for (const [id, link] of this.links) {
      if (id === except || !this.live(id) || (adoptedOnly && link.phase !== "Adopted")) continue;
      if (best === undefined || link.rank > this.links.get(best)!.rank) best = id;
    }
    return best;
  }

  private switchTo(target: number): LinkAction[] {
    this.activeLink = target;
    const actions: LinkAction[] = [];
    if (this.leads && this.links.size > 1) actions.push({ kind: "SendTakeover", link: target });
    for (const [id, link] of this.links) {
      if (id === target || !this.live(id)) continue;
      link.phase = "Retired";
      actions.push({ kind: "Retire", link: id });
    }
    return actions;
  }

  added(id: number, rank: number): LinkAction[] {
    if (this.links.has(id)) throw new PeersError("InvalidInput", "InvalidInput", `link ${id} added twice`);
    if (this.links.size >= MAX_LINKS) return [{ kind: "Close", link: id, why: `more than ${MAX_LINKS} connections to one device` }];
    this.links.set(id, { rank, phase: "Verified" });
    if (this.activeLink === undefined) this.activeLink = id;
    return [{ kind: "SendGroupReady", link: id }];
  }

  groupReady(id: number): LinkAction[] {
    const link = this.links.get(id);
    if (!link || link.phase !== "Verified") return [];
    link.phase = "Adopted";
    if (!this.leads) return [];
    const active = this.activeLink;
    const best = this.best(undefined, true);
    if (best === undefined) return [];
    const keep = active !== undefined && this.live(active) && this.links.get(active)!.rank >= this.links.get(best)!.rank;
    if (keep && active !== best) return [];
    return this.switchTo(keep ? active! : best);
  }

  takeover(id: number): LinkAction[] {
    if (this.leads || !this.live(id)) return [];
    return this.switchTo(id);
  }

  peerRetired(id: number): LinkAction[] {
    const link = this.links.get(id);
    if (!link || link.phase === "BothRetired" || link.phase === "PeerRetired") return [];
    const close: LinkAction = { kind: "Close", link: id, why: "retired by both sides" };
    if (link.phase === "Retired") {
      link.phase = "BothRetired";
      return [close];
    }
    if (id === this.activeLink) {
      const other = this.best(id);
      if (other === undefined) {
        // The only link: it keeps carrying traffic.
        link.phase = "PeerRetired";
        return [];
      }
      const actions = this.switchTo(other); // retires `id` too
      link.phase = "BothRetired";
      return [...actions, close];
    }
    link.phase = "BothRetired";
    return [{ kind: "Retire", link: id }, close];
  }

  closed(id: number): LinkAction[] {
    if (!this.links.delete(id)) return [];
    if (this.activeLink !== id) return [];
    this.activeLink = this.best();
    return [];
  }
}
