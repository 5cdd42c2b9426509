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
import type { CloseCode } from "./envelope.js";
import { PeersError } from "./errors.js";

/**
 * Link ranks, higher is better: the Rust manager's order of connection classes
 * (local, WebRTC, internet, server relay; docs/protocol.md §9.7) for the paths a
 * transfer has.
 */
export const RANK_RELAY = 1;
/** A socket.io connection to a public address. */
export const RANK_INTERNET = 2;
export const RANK_WEBRTC = 3;
/** A socket.io connection to a loopback or private address. */
export const RANK_LOCAL = 4;

/** The most local URLs a sender dials (as the Rust `MAX_LOCAL_URLS`). */
export const MAX_LOCAL_URLS = 8;

/** Whether `host` (a URL's hostname: an IPv4 address, a bracketed IPv6 one or a name) is loopback or private, as the Rust `Locality::of_ip`. */
export function isLocalHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h.replace(/^::ffff:/, ""));
  if (v4) {
    const [a, b] = [Number(v4[1]), Number(v4[2])];
    // loopback, RFC 1918, link-local, RFC 6598 shared space (carrier-grade NAT, overlays).
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && (b & 0xc0) === 64);
  }
  if (!h.includes(":")) return false; // a name: not known to be local
  if (h === "::1") return true;
  const first = parseInt(h.split(":")[0] || "0", 16);
  // unique-local fc00::/7, link-local fe80::/10.
  return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80;
}

/** A socket.io URL's rank: {@link RANK_LOCAL} for a loopback or private address, {@link RANK_INTERNET} otherwise. */
export function urlRank(url: string): number {
  return isLocalHost(new URL(url).hostname) ? RANK_LOCAL : RANK_INTERNET;
}

/**
 * The URLs of a peer's advertised addresses a sender dials for a local socket
 * (docs/protocol.md §9.7, the Rust `local_urls`): `http`/`https` ones that parse, at
 * most {@link MAX_LOCAL_URLS} of them, best rank first (the order kept within a rank).
 */
export function localUrls(addresses: readonly string[]): string[] {
  const urls: string[] = [];
  for (const a of addresses) {
    if (urls.length >= MAX_LOCAL_URLS) break;
    if (!a.startsWith("http://") && !a.startsWith("https://")) continue;
    try {
      new URL(a);
    } catch {
      continue;
    }
    urls.push(a);
  }
  return urls.map((url, i) => ({ url, i, rank: urlRank(url) })).sort((x, y) => y.rank - x.rank || x.i - y.i).map((u) => u.url);
}

/** Where socket.io-client dials a URL: its origin, and its path as the request path (`/socket.io/` when it has none), as the Rust client reads it. */
export function socketIoTarget(url: string): { origin: string; path: string } {
  const u = new URL(url);
  return { origin: u.origin, path: u.pathname === "" || u.pathname === "/" ? "/socket.io/" : u.pathname };
}

/** At most this many links to one device at once; a further one is closed at once. */
export const MAX_LINKS = 8;

export type LinkAction =
  | { kind: "SendGroupReady"; link: number }
  | { kind: "SendTakeover"; link: number }
  | { kind: "Retire"; link: number }
  | { kind: "Close"; link: number; code: CloseCode; why: string };

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
    if (this.links.size >= MAX_LINKS) return [{ kind: "Close", link: id, code: "LimitExceeded", why: `more than ${MAX_LINKS} connections to one device` }];
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
    const close: LinkAction = { kind: "Close", link: id, code: "Replaced", why: "retired by both sides" };
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
