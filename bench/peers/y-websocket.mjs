// Starts the stock y-websocket server of @y/websocket-server 0.1.1 (its own
// `setupWSConnection`, exactly what its bundled src/server.js runs) for weft's
// comparative benchmarks, on HOST (default 127.0.0.1) and PORT (default 0 =
// any free port) from the environment. The bundled server.js prints the port
// it was *asked* for, which is useless with PORT=0; this wrapper prints
// exactly one line, `listening on PORT`, with the bound port. No persistence
// (YPERSISTENCE unset). SIGTERM/SIGINT exit 0.
import http from "node:http";
import { createRequire } from "node:module";
import { setupWSConnection } from "@y/websocket-server/utils";

// The same `ws` the bundled server.js uses (6.2.7, nested under
// @y/websocket-server), not the newer one at the top of node_modules.
const requireFromServer = createRequire(import.meta.resolve("@y/websocket-server/utils"));
const WebSocket = requireFromServer("ws");

const host = process.env.HOST || "127.0.0.1";
const port = Number.parseInt(process.env.PORT || "0", 10);

const wss = new WebSocket.Server({ noServer: true });
wss.on("connection", setupWSConnection);

const server = http.createServer((_request, response) => {
  response.writeHead(200, { "Content-Type": "text/plain" });
  response.end("okay");
});
server.on("upgrade", (request, socket, head) => {
  wss.handleUpgrade(request, socket, head, (ws) => {
    wss.emit("connection", ws, request);
  });
});

server.listen(port, host, () => {
  console.log(`listening on ${server.address().port}`);
});

const stop = () => {
  for (const client of wss.clients) client.terminate();
  server.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
