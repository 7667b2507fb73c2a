// Node.js socket.io 4 broadcasting the same frame to every connected client.
//   node bench/peers/socketio_node_peer.js PORT
// Clients speak Engine.IO v4 over WebSocket at /socket.io/?EIO=4&transport=websocket.
// POST /broadcast emits `score_update` with frame.json's object to a room holding every client;
// POST /noop answers without sending; GET /ready answers 200.
"use strict";
const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { Server } = require("socket.io");

const data = JSON.parse(fs.readFileSync(path.join(__dirname, "frame.json"), "utf8"));
const port = Number(process.argv[2]);

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/broadcast") {
    io.to("b").emit("score_update", data);
    res.end("ok");
  } else if (req.method === "POST" && req.url === "/noop") {
    res.end("ok");
  } else if (req.url === "/ready") {
    res.end("ok");
  } else {
    res.statusCode = 404;
    res.end();
  }
});
const io = new Server(server, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => socket.join("b"));
server.listen(port, "127.0.0.1");
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
