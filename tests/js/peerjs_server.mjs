// The PeerJS server (npm `peer`, pinned in package.json) as the baseline of the
// signaling load bench (peers-signaling/benches/load.rs):
//
//   node peerjs_server.mjs LIMIT
//
// Listens on 127.0.0.1 on a free port with the default settings except
// `concurrent_limit` = LIMIT (its default, 5000, would refuse a 10,000-peer
// run), and prints "listening on PORT" once ready. Clients connect to
// ws://127.0.0.1:PORT/peerjs?key=peerjs&id=ID&token=TOKEN.

import { PeerServer } from "peer";

const limit = Number(process.argv[2] ?? 5000);
if (!Number.isInteger(limit) || limit < 1) {
  process.stderr.write(`peerjs_server.mjs: bad LIMIT ${process.argv[2]}\n`);
  process.exit(1);
}

PeerServer({ host: "127.0.0.1", port: 0, concurrent_limit: limit }, (server) => {
  process.stdout.write(`listening on ${server.address().port}\n`);
});
