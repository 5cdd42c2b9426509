// Node's reference socket.io server (npm `socket.io`, pinned in package.json)
// as a baseline of the signaling load bench (peers-signaling/benches/load.rs):
//
//   node socketio_relay_server.mjs LIMIT
//
// The server's default settings, and the smallest relay an application would
// write on it: each connection names itself in the handshake query (`?id=`),
// joins the room of that name, and an "offer" event {dst, payload} is emitted
// to the room `dst` as {src, payload}. No acknowledgements, no registration,
// no queue. LIMIT is accepted for the same command line as the other baselines
// (socket.io has no connection cap). Listens on 127.0.0.1 on a free port and
// prints "listening on PORT" once ready.

import { createServer } from "node:http";
import { Server } from "socket.io";

const http = createServer();
const io = new Server(http);

io.on("connection", (socket) => {
  const id = String(socket.handshake.query.id ?? "");
  if (!id) {
    socket.disconnect(true);
    return;
  }
  socket.join(id);
  socket.on("offer", (message) => {
    if (message && typeof message.dst === "string") {
      io.to(message.dst).emit("offer", { src: id, payload: message.payload });
    }
  });
});

http.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening on ${http.address().port}\n`);
});
