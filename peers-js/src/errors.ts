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
  | "Signaling";

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
