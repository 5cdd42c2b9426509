// A plain WebSocket relay on npm `ws` (pinned in package.json), the floor of
// the signaling load bench (peers-signaling/benches/load.rs):
//
//   node ws_relay_server.mjs LIMIT
//
// It speaks the PeerJS server's messages, so the bench's PeerJS client drives
// it unchanged: ws://127.0.0.1:PORT/peerjs?id=ID answered {"type":"OPEN"};
// {"type":"OFFER","dst":…,"payload":…} forwarded to ID dst with "src" instead
// of "dst"; HEARTBEAT ignored. One Map from id to socket, nothing else: no
// authentication, no queue, no limits beyond LIMIT connections. Listens on
// 127.0.0.1 on a free port and prints "listening on PORT" once ready.

import { WebSocketServer } from "ws";

const limit = Number(process.argv[2] ?? 5000);
if (!Number.isInteger(limit) || limit < 1) {
  process.stderr.write(`ws_relay_server.mjs: bad LIMIT ${process.argv[2]}\n`);
  process.exit(1);
}

const sockets = new Map();
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, path: "/peerjs" }, () => {
  process.stdout.write(`listening on ${wss.address().port}\n`);
});

wss.on("connection", (ws, request) => {
  const id = new URL(request.url, "http://localhost").searchParams.get("id");
  if (!id || sockets.has(id) || sockets.size >= limit) {
    ws.close(1008, "refused");
    return;
  }
  sockets.set(id, ws);
  ws.on("close", () => sockets.delete(id));
  ws.on("message", (data) => {
    let message;
    try {
      message = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (message.type !== "OFFER" || typeof message.dst !== "string") return;
    const target = sockets.get(message.dst);
    if (target) target.send(JSON.stringify({ type: "OFFER", src: id, payload: message.payload }));
  });
  ws.send('{"type":"OPEN"}');
});
