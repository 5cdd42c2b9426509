/**
 * The WebRTC transport (docs/transport-webrtc.md): a {@link Socket} over one
 * ordered, reliable `RTCDataChannel` labelled "peers", and {@link dialWebRtc},
 * the dialing side of the offer/answer/candidate exchange through a
 * {@link SignalingClient}. Everything is written against the standard WebRTC API
 * shapes below, so a browser's own `RTCPeerConnection` fits, and in Node
 * `node-datachannel/polyfill`'s does.
 *
 * Channel binding: the SHA-256 certificate fingerprints of both SDPs (kind
 * `dtls-sha256-fingerprints`, 32 bytes each), as the Rust side derives them;
 * the WebRTC stack checks the certificate DTLS presents against the peer's SDP.
 */
import { CloseCode, CloseReason, CLOSE_CODES, truncateUtf8 } from "./envelope.js";
import { PeersError, settleOnce } from "./errors.js";
import { toHex } from "./bytes.js";
import { randomBytes } from "./identity.js";
import { IceServer, IncomingSignal, SignalingClient } from "./signaling.js";
import { AcceptQueue, Inbox, SendQueue, Socket, SocketInfo } from "./socket.js";

export const BINDING_KIND = "dtls-sha256-fingerprints";
export const CHANNEL_LABEL = "peers";
/** Our cap on frames (the peer's `a=max-message-size` also applies). */
export const MAX_FRAME_SIZE = 256 * 1024;
/** `a=max-message-size` when the SDP does not say (RFC 8841). */
export const DEFAULT_MAX_MESSAGE_SIZE = 65_536;
export const MAX_CONTROL_LEN = 1024;
export const MAX_SDP_LEN = 32 * 1024;
export const MAX_CANDIDATE_LEN = 1024;
const SESSION_ID = /^[0-9A-Za-z_-]{1,64}$/;
const MAX_REASON_LEN = 256;

/** The parts of `RTCDataChannel` this transport uses. */
export interface DataChannelLike {
  readonly label: string;
  readonly readyState: string;
  readonly bufferedAmount: number;
  bufferedAmountLowThreshold: number;
  binaryType: string;
  send(data: string | Uint8Array | ArrayBuffer): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onbufferedamountlow: ((ev: unknown) => void) | null;
}

/** The parts of `RTCPeerConnection` this transport uses. */
export interface PeerConnectionLike {
  readonly localDescription: { sdp: string } | null;
  readonly remoteDescription: { sdp: string } | null;
  readonly connectionState: string;
  createDataChannel(label: string, options: { ordered: boolean }): DataChannelLike;
  createOffer(): Promise<{ type: string; sdp?: string }>;
  createAnswer(): Promise<{ type: string; sdp?: string }>;
  setLocalDescription(description: { type: string; sdp?: string }): Promise<void>;
  setRemoteDescription(description: { type: string; sdp: string }): Promise<void>;
  addIceCandidate(candidate: { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }): Promise<void>;
  close(): void;
  onicecandidate: ((ev: { candidate: { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null } | null }) => void) | null;
  onconnectionstatechange: ((ev: unknown) => void) | null;
  ondatachannel: ((ev: { channel: DataChannelLike }) => void) | null;
}

export type PeerConnectionFactory = (config: { iceServers: IceServer[] }) => PeerConnectionLike;

function fingerprintError(message: string): PeersError {
  return new PeersError("Transport", "Fingerprint", message);
}

/**
 * The SHA-256 certificate fingerprint an SDP declares (session or media level),
 * 32 bytes; refuses SDP without one, with a malformed one, or with two that differ
 * (the Rust `sdp::sha256_fingerprint`).
 */
export function sha256Fingerprint(sdp: string): Uint8Array {
  let found: Uint8Array | undefined;
  for (const raw of sdp.split("\n")) {
    const line = raw.trimEnd();
    if (!line.startsWith("a=fingerprint:")) continue;
    const value = line.slice("a=fingerprint:".length);
    const space = value.indexOf(" ");
    if (space < 0) throw fingerprintError("fingerprint attribute without a value");
    if (value.slice(0, space).toLowerCase() !== "sha-256") continue;
    const parts = value.slice(space + 1).trim().split(":");
    if (parts.length !== 32) throw fingerprintError(`sha-256 fingerprint of ${parts.length} bytes, not 32`);
    const parsed = new Uint8Array(32);
    parts.forEach((p, i) => {
      if (!/^[0-9A-Fa-f]{2}$/.test(p)) throw fingerprintError("malformed fingerprint byte");
      parsed[i] = parseInt(p, 16);
    });
    if (found && toHex(found) !== toHex(parsed)) throw fingerprintError("sdp declares two different sha-256 fingerprints");
    found = parsed;
  }
  if (!found) throw fingerprintError("sdp has no sha-256 fingerprint");
  return found;
}

/** The largest message the SDP's author accepts; `undefined` for 0 ("any size"). */
export function maxMessageSize(sdp: string): number | undefined {
  for (const raw of sdp.split("\n")) {
    const line = raw.trimEnd();
    if (!line.startsWith("a=max-message-size:")) continue;
    const n = Number(line.slice("a=max-message-size:".length).trim());
    if (!Number.isSafeInteger(n) || n < 0) continue;
    return n === 0 ? undefined : n;
  }
  return DEFAULT_MAX_MESSAGE_SIZE;
}

export interface WebRtcSocketOptions {
  /** Sends wait while the channel buffers more than this; resume below half. Default 4 MiB. */
  sendBufferHigh?: number;
  /**
   * Largest frame this side sends or accepts, announced to the peer as the SDP's
   * `a=max-message-size` (`sdpForSignal`). Default 256 KiB. node-datachannel 0.33.4
   * never delivers a 256 KiB message from the Rust transport (webrtc-rs): the channel
   * stalls; 64 KiB messages flow, so Node devices talking to Rust pass 65,536.
   */
  maxFrameSize?: number;
  /** Wait for queued frames and the close message on close, ms. Default 2,000. */
  closeFlushMs?: number;
}

/**
 * A `Socket` over an open data channel (docs/transport-webrtc.md §3): binary
 * messages are frames; text messages are JSON control messages (`close` with the
 * reason, `ping`/`pong`, `empty` for an empty frame), at most 1 KiB.
 */
export class WebRtcSocket implements Socket {
  readonly info: SocketInfo;
  private readonly inbox = new Inbox();
  private readonly high: number;
  private readonly maxReceive: number;
  private readonly closeFlushMs: number;
  // the low-water callback is edge-triggered: a wait also re-checks every 50 ms
  private readonly sendQueue = new SendQueue(this.inbox, 50);

  /** `pc` is closed with the socket; its descriptions give the binding and the frame size. */
  constructor(private readonly pc: PeerConnectionLike, private readonly channel: DataChannelLike, options: WebRtcSocketOptions = {}) {
    const local = pc.localDescription?.sdp;
    const remote = pc.remoteDescription?.sdp;
    if (!local || !remote) throw new PeersError("InvalidInput", "InvalidInput", "the peer connection has no local and remote description");
    this.maxReceive = options.maxFrameSize ?? MAX_FRAME_SIZE;
    const peerMax = maxMessageSize(remote);
    this.info = {
      transport: "webrtc",
      maxFrameSize: peerMax === undefined ? this.maxReceive : Math.min(this.maxReceive, peerMax),
      security: {
        confidential: true,
        channelBinding: { kind: BINDING_KIND, local: sha256Fingerprint(local), remote: sha256Fingerprint(remote) },
      },
    };
    this.high = Math.max(1, options.sendBufferHigh ?? 4 * 1024 * 1024);
    this.closeFlushMs = options.closeFlushMs ?? 2000;
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = Math.floor(this.high / 2);
    channel.onbufferedamountlow = () => this.sendQueue.wake();
    channel.onmessage = (ev) => this.onMessage(ev.data);
    channel.onclose = () => this.fail("the data channel closed without a close message");
    channel.onerror = (ev) => this.fail(`data channel error: ${String((ev as { error?: unknown })?.error ?? ev)}`);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this.fail(`peer connection ${pc.connectionState}`);
    };
    if (channel.readyState !== "open") this.fail(`the data channel is ${channel.readyState}`);
  }

  get closed(): Promise<CloseReason> {
    return this.inbox.closed;
  }

  private onMessage(data: unknown): void {
    if (this.inbox.closeReason) return;
    if (typeof data === "string") return this.onControl(data);
    let frame: Uint8Array;
    if (data instanceof ArrayBuffer) frame = new Uint8Array(data);
    else if (data instanceof Uint8Array) frame = data;
    else return this.abort("ProtocolError", "a data channel message of an unknown type");
    if (frame.length > this.maxReceive) return this.abort("LimitExceeded", `a message of ${frame.length} bytes over ${this.maxReceive}`);
    this.inbox.push(frame);
  }

  private onControl(text: string): void {
    if (text.length > MAX_CONTROL_LEN) return this.abort("ProtocolError", `a control message of ${text.length} bytes over ${MAX_CONTROL_LEN}`);
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return; // unknown control messages are ignored
    }
    if (typeof msg !== "object" || msg === null) return;
    if (msg.t === "close") {
      // A close we cannot read is an unknown control message, ignored as the Rust side does;
      // the peer closing its connection then ends the socket with TransportFailure.
      if (!CLOSE_CODES.includes(msg.code as CloseCode) || typeof msg.message !== "string") return;
      this.inbox.end({ code: msg.code as CloseCode, message: truncateUtf8(msg.message, MAX_REASON_LEN), by: "Remote" });
      this.sendQueue.wake();
      this.pc.close();
    } else if (msg.t === "empty") {
      this.inbox.push(new Uint8Array(0));
    } else if (msg.t === "ping" && Number.isSafeInteger(msg.n)) {
      this.trySend(JSON.stringify({ t: "pong", n: msg.n }));
    }
  }

  private trySend(data: string | Uint8Array): boolean {
    try {
      this.channel.send(data);
      return true;
    } catch (err) {
      this.fail(`data channel send failed: ${(err as Error).message}`);
      return false;
    }
  }

  private fail(detail: string): void {
    if (this.inbox.closeReason) return;
    this.inbox.end({ code: "TransportFailure", message: truncateUtf8(detail, MAX_REASON_LEN), by: "Local" });
    this.sendQueue.wake();
    this.pc.close();
  }

  /** A violation by the peer: tell it why, then close. */
  private abort(code: CloseCode, detail: string): void {
    if (this.inbox.closeReason) return;
    const message = truncateUtf8(detail, MAX_REASON_LEN);
    try {
      this.channel.send(JSON.stringify({ t: "close", code, message }));
    } catch {
      // the channel is already gone; the reason stays local
    }
    this.inbox.end({ code, message, by: "Local" }, true);
    this.sendQueue.wake();
    setTimeout(() => this.pc.close(), 200);
  }

  send(frame: Uint8Array): Promise<void> {
    return this.sendQueue.send(
      frame,
      this.info.maxFrameSize,
      () => this.channel.bufferedAmount <= this.high,
      (f) => (f.length === 0 ? this.trySend(JSON.stringify({ t: "empty" })) : this.trySend(f)),
    );
  }

  recv(): Promise<Uint8Array> {
    return this.inbox.recv();
  }

  /**
   * Sends the `close` control message behind every queued frame, waits until the
   * channel's buffer is empty (at most `closeFlushMs`), then closes the peer connection.
   */
  async close(code: CloseCode, message: string): Promise<void> {
    const reason = await this.sendQueue.closeAfterQueued(code, message);
    if (!reason) return;
    try {
      this.channel.send(JSON.stringify({ t: "close", code, message: reason.message }));
      if (this.channel.bufferedAmount > 0) {
        // the low-water event at 0: the buffer drained (or the deadline passed)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.closeFlushMs);
          this.channel.bufferedAmountLowThreshold = 0;
          this.channel.onbufferedamountlow = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      // the buffered amount counts what the stack took, not what the peer acknowledged
      await new Promise((r) => setTimeout(r, 100));
    } catch {
      // the channel is already gone
    }
    this.pc.close();
  }
}

export interface DialOptions {
  /** Creates the peer connection: `(config) => new RTCPeerConnection(config)`. */
  createPeerConnection: PeerConnectionFactory;
  /** ICE servers; default: the signaling server's `ice-config`. */
  iceServers?: IceServer[];
  /** The whole attempt, ms. Default 15,000 (`connect_timeout`). */
  timeoutMs?: number;
  /** Remote candidates held until the answer is set. Default 64. */
  maxPendingCandidates?: number;
  socket?: WebRtcSocketOptions;
}

interface CandidateInit {
  candidate: string;
  sdpMid: string;
  sdpMLineIndex: number;
}

interface Refusal {
  code: string;
  detail: string;
}

/** An offer's or answer's SDP, checked as §1 says (size, `v=0`, `m=application`, one SHA-256 fingerprint). */
function checkSdp(body: Record<string, unknown>): string | Refusal {
  const sdp = body.sdp;
  if (typeof sdp !== "string") return { code: "BadSdp", detail: "no sdp" };
  if (sdp.length > MAX_SDP_LEN) return { code: "TooLarge", detail: `sdp of ${sdp.length} bytes over ${MAX_SDP_LEN}` };
  if (!sdp.startsWith("v=0") || !sdp.includes("m=application")) return { code: "BadSdp", detail: "not a data channel sdp" };
  try {
    sha256Fingerprint(sdp);
  } catch (err) {
    return { code: "BadSdp", detail: (err as Error).message };
  }
  return sdp;
}

/** A remote candidate, checked as §1 says; absent mid and index mean the one media section. */
function checkCandidate(body: Record<string, unknown>): CandidateInit | Refusal {
  const candidate = body.candidate;
  if (typeof candidate !== "string") return { code: "BadCandidate", detail: "no candidate" };
  if (candidate.length > MAX_CANDIDATE_LEN) return { code: "TooLarge", detail: `candidate of ${candidate.length} bytes` };
  if (candidate !== "" && (!candidate.startsWith("candidate:") || /[\u0000-\u001f\u007f]/.test(candidate))) {
    return { code: "BadCandidate", detail: "a malformed candidate" };
  }
  const mid = body.sdpMid;
  if (mid !== undefined && mid !== null && (typeof mid !== "string" || mid.length > 32)) return { code: "BadCandidate", detail: "bad sdpMid" };
  const index = body.sdpMLineIndex;
  return {
    candidate,
    sdpMid: typeof mid === "string" ? mid : "0",
    sdpMLineIndex: Number.isSafeInteger(index) && (index as number) >= 0 ? (index as number) : 0,
  };
}

/** A local candidate as an `ice-candidate` body (absent mid and index left out). */
function candidateBody(c: { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }): Record<string, unknown> {
  // libdatachannel writes the SDP attribute ("a=candidate:…"); the signal carries "candidate:…"
  const body: Record<string, unknown> = { candidate: c.candidate.startsWith("a=") ? c.candidate.slice(2) : c.candidate };
  if (typeof c.sdpMid === "string") body.sdpMid = c.sdpMid;
  if (typeof c.sdpMLineIndex === "number") body.sdpMLineIndex = c.sdpMLineIndex;
  return body;
}

/**
 * The SDP as it travels in an offer or answer: without `a=candidate` and
 * `a=end-of-candidates` lines, because candidates travel as `ice-candidate`
 * signals (docs/transport-webrtc.md §1). libdatachannel writes the candidates
 * gathered so far into its local description; sent as well, each would reach the
 * peer twice. With `maxMessageSize` (the socket's `maxFrameSize`), the
 * `a=max-message-size` it carries is at most that (added when absent), so the peer
 * sends no larger message: the cap this side enforces is the one it announces.
 */
export function sdpForSignal(sdp: string, maxMessageSize?: number): string {
  const lines = sdp.split(/(?<=\n)/).filter((line) => !/^a=(candidate:|end-of-candidates\b)/.test(line));
  if (maxMessageSize === undefined) return lines.join("");
  let found = false;
  const capped = lines.map((line) => {
    if (!line.startsWith("a=max-message-size:")) return line;
    found = true;
    const n = Number(line.slice("a=max-message-size:".length).trim());
    return `a=max-message-size:${Number.isSafeInteger(n) && n > 0 ? Math.min(n, maxMessageSize) : maxMessageSize}\r\n`;
  });
  if (!found) {
    if (capped.length > 0 && !capped[capped.length - 1]!.endsWith("\n")) capped[capped.length - 1] += "\r\n";
    capped.push(`a=max-message-size:${maxMessageSize}\r\n`);
  }
  return capped.join("");
}

function sessionId(): string {
  return toHex(randomBytes(16));
}

/**
 * Dials `device` over WebRTC through `signaling` (docs/transport-webrtc.md §1–2):
 * an offer with a fresh session id, trickled candidates both ways, the answer;
 * resolves with the socket once the channel is open. A `cancel` or `error` from the
 * peer rejects with `Refused`, the deadline with `ConnectTimeout` (the peer is sent a
 * `cancel`); a signal that fails the checks of §1 is answered with `error` and ends
 * the attempt with `InvalidSignal`.
 */
export async function dialWebRtc(signaling: SignalingClient, device: string, options: DialOptions): Promise<WebRtcSocket> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const maxPending = options.maxPendingCandidates ?? 64;
  const session = sessionId();
  const signalTtl = { ttlMs: timeoutMs };
  const iceServers = options.iceServers ?? (await signaling.iceConfig()).iceServers;
  const pc = options.createPeerConnection({ iceServers });
  const channel = pc.createDataChannel(CHANNEL_LABEL, { ordered: true });
  channel.binaryType = "arraybuffer";
  let remoteSet = false;
  const pending: CandidateInit[] = [];
  let chain = Promise.resolve();
  let listener: ((s: IncomingSignal) => void) | undefined;
  const send = (kind: string, body: Record<string, unknown>) => signaling.signal(device, kind, { session, ...body }, signalTtl);
  const tell = (kind: "cancel" | "error", message: string) =>
    send(kind, { message: truncateUtf8(message, MAX_REASON_LEN) }).catch(() => {});

  try {
    return await settleOnce<WebRtcSocket>(
      timeoutMs,
      () => {
        tell("cancel", "connect timeout");
        return new PeersError("Transport", "ConnectTimeout", `no data channel to ${device} within ${timeoutMs} ms`);
      },
      () => {
        // the channel first: node-datachannel keeps a never-opened channel (and the
        // process) alive past its peer connection's close
        channel.close();
        pc.close();
      },
      (attempt) => {
        const fail = (err: PeersError, told?: { kind: "cancel" | "error"; message: string }) => {
          if (attempt.settled) return;
          if (told) tell(told.kind, told.message);
          attempt.fail(err);
        };
        const refuse = (code: string, detail: string) =>
          fail(new PeersError("Transport", "InvalidSignal", `refused a signal from ${device}: ${detail}`, { reason: code }), { kind: "error", message: detail });
        listener = (s: IncomingSignal) => {
          if (s.from !== device || s.body.session !== session) return;
          chain = chain
            .then(async () => {
              if (attempt.settled) return;
              const body = s.body;
              if (s.kind === "answer") {
                if (remoteSet) return refuse("DuplicateSession", "a second answer");
                const sdp = checkSdp(body);
                if (typeof sdp !== "string") return refuse(sdp.code, sdp.detail);
                await pc.setRemoteDescription({ type: "answer", sdp });
                remoteSet = true;
                for (const c of pending.splice(0)) await pc.addIceCandidate(c);
              } else if (s.kind === "ice-candidate") {
                const c = checkCandidate(body);
                if ("code" in c) return refuse(c.code, c.detail);
                if (c.candidate === "") return; // end of candidates
                if (remoteSet) await pc.addIceCandidate(c);
                else if (pending.length < maxPending) pending.push(c);
                else refuse("Flooded", "too many candidates before the answer");
              } else if (s.kind === "cancel" || s.kind === "error") {
                const message = typeof body.message === "string" ? truncateUtf8(body.message, MAX_REASON_LEN) : "";
                fail(new PeersError("Transport", "Refused", `${device} ended the attempt (${s.kind}): ${message}`));
              }
            })
            .catch((err: unknown) =>
              fail(
                err instanceof PeersError ? err : new PeersError("Transport", "WebRtc", `webrtc: ${(err as Error).message}`),
                { kind: "cancel", message: "webrtc failure" },
              ),
            );
        };
        signaling.on("signal", listener);
        pc.onicecandidate = (ev) => {
          if (!attempt.settled && ev.candidate?.candidate) send("ice-candidate", candidateBody(ev.candidate)).catch(() => {});
        };
        pc.onconnectionstatechange = () => {
          if (pc.connectionState === "failed") fail(new PeersError("Transport", "WebRtc", "ICE or DTLS failed"));
        };
        channel.onopen = () => {
          if (attempt.settled) return;
          try {
            attempt.resolve(new WebRtcSocket(pc, channel, options.socket));
          } catch (err) {
            fail(err as PeersError, { kind: "cancel", message: "fingerprint check failed" });
          }
        };
        (async () => {
          const offer = await pc.createOffer();
          await pc.setLocalDescription(offer);
          const sdp = pc.localDescription?.sdp;
          if (!sdp) throw new PeersError("Transport", "WebRtc", "no local description");
          await send("offer", { sdp: sdpForSignal(sdp, options.socket?.maxFrameSize) });
        })().catch((err: unknown) =>
          fail(err instanceof PeersError ? err : new PeersError("Transport", "WebRtc", `webrtc: ${(err as Error).message}`)),
        );
      },
    );
  } finally {
    if (listener) signaling.off("signal", listener);
  }
}

/** Whether `id` is a valid session id (1–64 of `[0-9A-Za-z_-]`). */
export function isSessionId(id: unknown): boolean {
  return typeof id === "string" && SESSION_ID.test(id);
}

export interface AcceptOptions {
  /** Creates the peer connection: `(config) => new RTCPeerConnection(config)`. */
  createPeerConnection: PeerConnectionFactory;
  /** ICE servers; default: the signaling server's `ice-config`, asked per attempt. */
  iceServers?: IceServer[];
  /** One attempt, from the offer to the open channel, ms. Default 15,000. */
  timeoutMs?: number;
  /** Attempts in progress. Default 32 (`max_sessions`). */
  maxSessions?: number;
  /** Open sockets not yet taken by `accept()`. Default 16 (`accept_queue`). */
  acceptQueue?: number;
  /** Remote candidates held before the offer is applied. Default 64. */
  maxPendingCandidates?: number;
  /** Told of every signal refused (`BadSessionId`, `BadSdp`, `DuplicateSession`, `Flooded`...). */
  onRefusal?: (refusal: { from: string; code: string; detail: string }) => void;
  socket?: WebRtcSocketOptions;
}

/** An accepted WebRTC socket and the device that dialed, as the signaling server authenticated it. */
export interface AcceptedSocket {
  from: string;
  socket: WebRtcSocket;
}

interface AcceptSession {
  /** Created once the ICE servers are known. */
  pc: PeerConnectionLike | undefined;
  remoteSet: boolean;
  pending: CandidateInit[];
  chain: Promise<void>;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The accepting side (docs/transport-webrtc.md §1–2): answers offers relayed by
 * `signaling`, one session per `(sender, session id)`, and queues each socket
 * whose channel opened for {@link accept}. Signals are checked and routed as §1
 * says; a refused offer is answered with an `error` signal, never a cancel or error.
 */
export class WebRtcAcceptor {
  private readonly sessions = new Map<string, AcceptSession>();
  private readonly queue = new AcceptQueue<AcceptedSocket>("the acceptor is closed", ({ socket }) => void socket.close("GoingAway", "acceptor closed"));
  private readonly listener = (s: IncomingSignal) => this.onSignal(s);

  constructor(private readonly signaling: SignalingClient, private readonly options: AcceptOptions) {
    signaling.on("signal", this.listener);
  }

  /** The next accepted socket; rejects with `Closed` once {@link close} was called. */
  accept(): Promise<AcceptedSocket> {
    return this.queue.next();
  }

  /** Stops answering, ends every attempt in progress and closes sockets not yet taken. */
  close(): void {
    if (this.queue.closed) return;
    this.queue.close();
    this.signaling.off("signal", this.listener);
    for (const key of [...this.sessions.keys()]) this.end(key);
  }

  private refuse(s: IncomingSignal, code: string, detail: string, reply: boolean): void {
    this.options.onRefusal?.({ from: s.from, code, detail });
    if (reply && typeof s.body.session === "string") {
      const body = { session: s.body.session.slice(0, 64), message: truncateUtf8(`${code}: ${detail}`, MAX_REASON_LEN) };
      this.signaling.signal(s.from, "error", body, { ttlMs: 0 }).catch(() => {});
    }
  }

  private onSignal(s: IncomingSignal): void {
    if (this.queue.closed || !["offer", "answer", "ice-candidate", "cancel", "error"].includes(s.kind)) return;
    const answerable = s.kind === "offer" || s.kind === "answer";
    if (!isSessionId(s.body.session)) return this.refuse(s, "BadSessionId", "session id is not 1-64 of [0-9A-Za-z_-]", answerable);
    const key = `${s.from}/${s.body.session as string}`;
    const session = this.sessions.get(key);
    if (s.kind === "offer") {
      if (session) return this.refuse(s, "DuplicateSession", "an offer for a session in progress", true);
      const max = this.options.maxSessions ?? 32;
      if (this.sessions.size >= max || this.queue.length >= (this.options.acceptQueue ?? 16)) {
        return this.refuse(s, "Flooded", "too many attempts in progress", true);
      }
      const sdp = checkSdp(s.body);
      if (typeof sdp !== "string") return this.refuse(s, sdp.code, sdp.detail, true);
      return this.start(key, s.from, s.body.session as string, sdp);
    }
    if (!session) {
      if (s.kind === "answer" || s.kind === "ice-candidate") this.refuse(s, "UnknownSession", `${s.kind} for no session in progress`, answerable);
      return; // a cancel or error for an attempt already over
    }
    if (s.kind === "answer") return this.refuse(s, "UnknownSession", "an answer to an acceptor", true);
    if (s.kind === "cancel" || s.kind === "error") return this.end(key);
    const c = checkCandidate(s.body);
    if ("code" in c) return this.refuse(s, c.code, c.detail, false);
    if (c.candidate === "") return;
    session.chain = session.chain.then(async () => {
      if (session.remoteSet) await session.pc?.addIceCandidate(c);
      else if (session.pending.length < (this.options.maxPendingCandidates ?? 64)) session.pending.push(c);
      else this.refuse(s, "Flooded", "too many candidates before the offer was applied", false);
    }).catch((err: unknown) => {
      // a candidate that passed our checks but not the library's fails only this session
      if (this.sessions.get(key) === session) {
        this.end(key, { from: s.from, session: s.body.session as string, message: truncateUtf8(`webrtc: ${(err as Error).message}`, 200) });
      }
    });
  }

  private end(key: string, tell?: { from: string; session: string; message: string }): void {
    const session = this.sessions.get(key);
    if (!session) return;
    this.sessions.delete(key);
    clearTimeout(session.timer);
    session.pc?.close();
    if (tell) this.signaling.signal(tell.from, "cancel", { session: tell.session, message: tell.message }, { ttlMs: 0 }).catch(() => {});
  }

  private start(key: string, from: string, id: string, offer: string): void {
    const timeoutMs = this.options.timeoutMs ?? 15_000;
    const send = (kind: string, body: Record<string, unknown>) =>
      this.signaling.signal(from, kind, { session: id, ...body }, { ttlMs: timeoutMs });
    const fail = (message: string) => this.end(key, { from, session: id, message });
    const session: AcceptSession = {
      pc: undefined,
      remoteSet: false,
      pending: [],
      chain: Promise.resolve(),
      timer: setTimeout(() => fail("connect timeout"), timeoutMs),
    };
    this.sessions.set(key, session);
    session.chain = (async () => {
      const iceServers = this.options.iceServers ?? (await this.signaling.iceConfig()).iceServers;
      if (this.sessions.get(key) !== session) return;
      const pc = this.options.createPeerConnection({ iceServers });
      session.pc = pc;
      let taken = false;
      pc.onicecandidate = (ev) => {
        if (this.sessions.get(key) === session && ev.candidate?.candidate) send("ice-candidate", candidateBody(ev.candidate)).catch(() => {});
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" && this.sessions.get(key) === session) fail("ICE or DTLS failed");
      };
      pc.ondatachannel = (ev) => {
        if (taken) return; // only the first channel is used
        taken = true;
        const channel = ev.channel;
        const opened = () => {
          if (this.sessions.get(key) !== session) return;
          clearTimeout(session.timer);
          this.sessions.delete(key);
          let socket: WebRtcSocket;
          try {
            socket = new WebRtcSocket(pc, channel, this.options.socket);
          } catch (err) {
            pc.close();
            return this.options.onRefusal?.({ from, code: "Fingerprint", detail: (err as Error).message });
          }
          this.deliver({ from, socket });
        };
        if (channel.readyState === "open") opened();
        else channel.onopen = opened;
      };
      await pc.setRemoteDescription({ type: "offer", sdp: offer });
      await pc.setLocalDescription(await pc.createAnswer());
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error("no local description");
      await send("answer", { sdp: sdpForSignal(sdp, this.options.socket?.maxFrameSize) });
      // Remote candidates only once the answer exists: libdatachannel creates its ICE
      // transport with the answer, and refuses a candidate that comes earlier.
      session.remoteSet = true;
      for (const c of session.pending.splice(0)) await pc.addIceCandidate(c);
    })().catch((err: unknown) => {
      if (this.sessions.get(key) === session) fail(`webrtc: ${truncateUtf8((err as Error).message, 200)}`);
    });
  }

  private deliver(accepted: AcceptedSocket): void {
    this.queue.push(accepted);
  }
}
