// Starts a stock Hocuspocus server (no extensions) for weft's comparative
// benchmarks: HOST (default 127.0.0.1) and PORT (default 0 = any free port)
// from the environment. Prints exactly one line, `listening on PORT`, once
// the socket is bound, and nothing per connection. SIGTERM/SIGINT close every
// connection and exit 0. The wire dialect is described in README.md.
import { Server } from "@hocuspocus/server";

const host = process.env.HOST || "127.0.0.1";
const port = Number.parseInt(process.env.PORT || "0", 10);

const server = new Server({
  address: host,
  port,
  quiet: true,
  // We install our own handlers below so that the only output is the ready line.
  stopOnSignals: false,
  extensions: [],
});

// Server.listen(0) would fall back to the configured default (80) because 0 is
// falsy, so the port is given only through the configuration.
await server.listen();
console.log(`listening on ${server.address.port}`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  try {
    await server.destroy();
  } finally {
    process.exit(0);
  }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
