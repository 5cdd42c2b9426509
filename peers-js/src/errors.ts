/**
 * The one error type of peers-js. `kind` names the class of failure (the Rust
 * crate's error variant, e.g. `"Codec"`, `"Handshake"`, `"Closed"`), `code` the
 * precise refusal (e.g. `"UnexpectedChunk"`, `"BadSignature"`), so callers can
 * branch on it without parsing messages.
 */
export type ErrorKind =
  | "Codec"
  | "Handshake"
  | "Closed"
  | "Timeout"
  | "Remote"
  | "InvalidInput"
  | "Transport"
  | "Limit"
  | "Signaling"
  | "Transfer";

export class PeersError extends Error {
  readonly kind: ErrorKind;
  readonly code: string;
  /** Extra structured context (the close reason, the remote error, limits). */
  readonly detail: Readonly<Record<string, unknown>>;

  constructor(kind: ErrorKind, code: string, message: string, detail: Record<string, unknown> = {}) {
    super(message);
    this.name = "PeersError";
    this.kind = kind;
    this.code = code;
    this.detail = detail;
  }
}

export function codecError(code: string, message: string, detail: Record<string, unknown> = {}): PeersError {
  return new PeersError("Codec", code, message, detail);
}

export function handshakeError(code: string, message: string, detail: Record<string, unknown> = {}): PeersError {
  return new PeersError("Handshake", code, message, detail);
}

export function invalidInput(what: string, detail: string): PeersError {
  return new PeersError("InvalidInput", "InvalidInput", `invalid ${what}: ${detail}`, { what });
}

/** The ways out of an attempt run by {@link settleOnce}; only the first call counts. */
export interface Settler<T> {
  resolve(value: T): void;
  /** Runs the attempt's cleanup, then rejects with `err`. */
  fail(err: PeersError): void;
  readonly settled: boolean;
}

/**
 * Runs the attempt `start` under a deadline of `timeoutMs`: the first of
 * `resolve`, `fail` or the deadline (`fail(onTimeout())`) settles the promise, and
 * every failure runs `cleanup` once (disconnect, close) before rejecting.
 */
export function settleOnce<T>(
  timeoutMs: number,
  onTimeout: () => PeersError,
  cleanup: (err: PeersError) => void,
  start: (settler: Settler<T>) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      return true;
    };
    const settler: Settler<T> = {
      resolve: (value) => finish() && resolve(value),
      fail: (err) => {
        if (!finish()) return;
        cleanup(err);
        reject(err);
      },
      get settled() {
        return settled;
      },
    };
    const timer = setTimeout(() => settler.fail(onTimeout()), timeoutMs);
    start(settler);
  });
}
