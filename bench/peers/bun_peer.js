// Bun's built-in WebSocket server (uWebSockets) broadcasting the same frame to every client.
//   bun bench/peers/bun_peer.js PORT
// Clients connect to /ws. POST /broadcast publishes the frame to a topic every client
// subscribed to (uWebSockets' own fan-out); POST /noop answers without sending; GET /ready 200.
const data = await Bun.file(new URL("./frame.json", import.meta.url)).text();
const frame = `{"type":"score_update","data":${data.trim()}}`;
const port = Number(process.argv[2]);

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      if (server.upgrade(req)) return undefined;
      return new Response("upgrade failed", { status: 400 });
    }
    if (req.method === "POST" && url.pathname === "/broadcast") {
      server.publish("b", frame);
      return new Response("ok");
    }
    if (req.method === "POST" && url.pathname === "/noop") return new Response("ok");
    if (url.pathname === "/ready") return new Response("ok");
    return new Response("not found", { status: 404 });
  },
  websocket: {
    open(ws) {
      ws.subscribe("b");
    },
    message() {},
    // No per-socket limit below what 2,000 clients reading promptly ever queue.
    backpressureLimit: 16 * 1024 * 1024,
  },
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.stop(true);
    process.exit(0);
  });
}
