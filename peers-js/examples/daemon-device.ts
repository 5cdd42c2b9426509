// A peers-js device in Node against a `peers run` daemon that trusts it, for the live
// interop test (tests/tests/peers_js_node_daemon.rs), printing JSON lines:
//
//   node dist/examples/daemon-device.js webrtc   SIGNALING_URL DAEMON_SHARE_CODE GROUP
//   node dist/examples/daemon-device.js relay    SIGNALING_URL DAEMON_SHARE_CODE GROUP
//   node dist/examples/daemon-device.js socketio ORIGIN        DAEMON_SHARE_CODE GROUP
//
// 1. {"event":"identity","share_code","device_id"}, registered with the server first
//    (socketio: no server);
// 2. waits for the daemon, which dials the devices it trusts (the connection then takes
//    part in the daemon's handover, ./daemon-exercise.ts): `webrtc` accepts its
//    WebRTC dial (node-datachannel, `WebRtcAcceptor`); `relay` answers its relay
//    request (`RelayAcceptor`) and nothing else, so the server's frame relay is all
//    the daemon gets; `socketio` dials the daemon's listener at ORIGIN, again every
//    250 ms while the daemon refuses it (until the test made the daemon trust it);
//    then the handshake, trusting the daemon only: {"event":"connected","transport",
//    "peer","binding"};
// 3. the RPCs both ways (./daemon-exercise.ts): "pinged", "changes", "group_ready",
//    "daemon_calls";
// 4. {"event":"receiving"}: takes one transfer the daemon offers on this connection
//    (`peers send --to`, `receiveFrom`), every chunk checked against the manifest, and
//    prints {"event":"received","bytes","files":[{path,bytes,blake3}],"paths"}, or
//    {"event":"receive_failed","kind","code","message","bytes"} (the sender cancelled...);
// 5. closes the connection ("node done") and prints "closed".
import { RTCPeerConnection } from "node-datachannel/polyfill";
import { blake3 } from "@noble/hashes/blake3.js";

import {
  Connection,
  connectionConfig,
  DeviceKeys,
  fromShareCode,
  PeerConnectionLike,
  PeersError,
  receiveFrom,
  RelayAcceptor,
  SignalingClient,
  Socket,
  SocketIoSocket,
  toHex,
  toShareCode,
  TrustLevel,
  WebRtcAcceptor,
} from "../src/index.js";
import { answerDaemon, callDaemon, linkUp } from "./daemon-exercise.js";
import type { Report } from "./exercise.js";

const report: Report = (event, fields = {}) => void process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const [mode, where, daemonCode, group] = process.argv.slice(2);
if (!mode || !where || !daemonCode || !group || !["webrtc", "relay", "socketio"].includes(mode)) {
  process.stderr.write("usage: daemon-device.js webrtc|relay|socketio SIGNALING_URL|ORIGIN DAEMON_SHARE_CODE GROUP\n");
  process.exit(2);
}
setTimeout(() => {
  process.stderr.write("timed out after 170 s\n");
  process.exit(1);
}, 170_000).unref();

const daemon = toHex(fromShareCode(daemonCode).device_id);
const keys = DeviceKeys.generate("node-user");
const signaling = mode === "socketio" ? undefined : await SignalingClient.connect(where, keys);
report("identity", { share_code: toShareCode(keys.info()), device_id: keys.deviceIdHex });

const config = await connectionConfig(keys, (peer) => (toHex(peer.device_id) === daemon ? TrustLevel.Trusted : TrustLevel.Untrusted));
const answered = answerDaemon(keys.deviceId, fromShareCode(daemonCode).device_id, report);
/** The accepted socket's channel binding (WebRTC: the DTLS fingerprints), for the "connected" line. */
let bindingKind: string | null = null;
const setup = (c: Connection) => answered.links.prepare(c);

/** The daemon's own dial, over `accept` (WebRTC or the relay), taken from the daemon only. */
async function accepted(accept: () => Promise<{ from: string; socket: Socket }>): Promise<Connection> {
  for (;;) {
    const { from, socket } = await accept();
    if (from !== daemon) {
      void socket.close("Refused", "not the daemon");
      continue;
    }
    bindingKind = socket.info.security.channelBinding?.kind ?? null;
    return Connection.accept(socket, config, setup);
  }
}

/** Dials the daemon's listener until it trusts this device. */
async function dialed(origin: string): Promise<Connection> {
  for (;;) {
    try {
      return await Connection.connect(await SocketIoSocket.connect(origin), config, fromShareCode(daemonCode!).device_id, setup);
    } catch (err) {
      report("dial_refused", { message: (err as Error).message });
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

let connection: Connection;
if (mode === "webrtc") {
  const createPeerConnection = (c: { iceServers: unknown[] }) => new RTCPeerConnection(c as never) as unknown as PeerConnectionLike;
  const acceptor = new WebRtcAcceptor(signaling!, { createPeerConnection, onRefusal: (r) => report("refusal", r) });
  connection = await accepted(() => acceptor.accept());
  acceptor.close();
} else if (mode === "relay") {
  const acceptor = new RelayAcceptor(signaling!, { allow: (device) => device === daemon });
  connection = await accepted(async () => {
    const socket = await acceptor.accept();
    return { from: socket.peer, socket };
  });
  acceptor.close();
} else {
  connection = await dialed(where);
}
report("connected", { transport: connection.transport, peer: toHex(connection.remote.device_id), binding: bindingKind });

linkUp(answered, connection);
await callDaemon(connection, group, answered, report);

const files = new Map<string, { bytes: number; hasher: ReturnType<typeof blake3.create> }>();
const receiving = receiveFrom(connection, {
  sink: (entry, chunk) => {
    let file = files.get(entry.path);
    if (!file) files.set(entry.path, (file = { bytes: 0, hasher: blake3.create() }));
    file.bytes += chunk.bytes.length;
    file.hasher.update(chunk.bytes);
  },
});
report("receiving", {});
try {
  const received = await receiving;
  report("received", {
    bytes: received.bytes,
    files: [...files].map(([path, f]) => ({ path, bytes: f.bytes, blake3: toHex(f.hasher.digest()) })),
    paths: received.paths,
  });
} catch (err) {
  const e = err as PeersError;
  report("receive_failed", { kind: e.kind, code: e.code, message: e.message, bytes: [...files.values()].reduce((n, f) => n + f.bytes, 0) });
}

await connection.close("Normal", "node done");
report("closed", { reason: await connection.closed });
signaling?.close();
setTimeout(() => process.exit(0), 100);

