/**
 * Credit-based flow control, sans-IO: the one implementation the socket.io
 * socket and the frame relay use (the Rust side's `peers_sdk::flow`).
 *
 * Credit is cumulative: a grant says "in total you may have sent `frames`
 * frames and `bytes` bytes"; a stale or repeated grant does nothing. The
 * receiver grants again once half a window is consumed, so it buffers at most
 * one window of frames its application has not read.
 */

/** Cumulative credit: "in total you may have sent `frames` frames and `bytes` bytes". */
export interface Credit {
  frames: number;
  bytes: number;
}

/** The sending side: what the peer allows in total, and what was sent. */
export class SendCredit {
  private allowed: Credit;
  private readonly sent: Credit = { frames: 0, bytes: 0 };

  /** A sender the peer already allows `initial`. */
  constructor(initial: Readonly<Credit>) {
    this.allowed = { ...initial };
  }

  /** Takes a grant into account; one below an earlier grant changes nothing. */
  allow(grant: Readonly<Credit>): void {
    this.allowed = { frames: Math.max(this.allowed.frames, grant.frames), bytes: Math.max(this.allowed.bytes, grant.bytes) };
  }

  /** Whether a frame of `len` bytes fits the credit now. */
  fits(len: number): boolean {
    return this.allowed.frames > this.sent.frames && this.allowed.bytes - this.sent.bytes >= len;
  }

  /** Counts one frame of `len` bytes as sent (call only when it `fits`). */
  take(len: number): void {
    this.sent.frames += 1;
    this.sent.bytes += len;
  }
}

/** The receiving side: what was granted, received and consumed. */
export class RecvWindow {
  private granted: Credit;
  private readonly received: Credit = { frames: 0, bytes: 0 };
  private readonly consumed: Credit = { frames: 0, bytes: 0 };

  /** A receiver that granted `window` from the start. */
  constructor(private readonly window: Readonly<Credit>) {
    this.granted = { ...window };
  }

  /** Counts an arrived frame of `len` bytes; false when it is beyond the credit granted (the peer broke the protocol). */
  receive(len: number): boolean {
    this.received.frames += 1;
    this.received.bytes += len;
    return this.received.frames <= this.granted.frames && this.received.bytes <= this.granted.bytes;
  }

  /** Counts a frame of `len` bytes the application read; returns the grant to send, if one is due. */
  consume(len: number): Credit | undefined {
    this.consumed.frames += 1;
    this.consumed.bytes += len;
    const w = this.window;
    const outFrames = this.consumed.frames - (this.granted.frames - w.frames);
    const outBytes = this.consumed.bytes - (this.granted.bytes - w.bytes);
    if (outFrames * 2 < w.frames && outBytes * 2 < w.bytes) return undefined;
    this.granted = { frames: this.consumed.frames + w.frames, bytes: this.consumed.bytes + w.bytes };
    return { ...this.granted };
  }
}
