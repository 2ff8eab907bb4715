// Smoke test of every server weft's comparative benchmarks drive: weft's hub
// (`/y/`), y-sweet 0.9.1, @y/websocket-server 0.1.1, Hocuspocus 4.7.0 and the
// no-CRDT relay floor (`weft-floor relay`). For each it starts the server,
// connects two *raw* clients that speak exactly the bytes README.md
// documents (no provider library), makes A insert text, checks that B gets it
// as a sync update and that the two Y.Docs converge, then the same from B to
// A. It also pins down the quirks the load generator depends on: who speaks
// first, whether the sender gets its own update echoed, Hocuspocus's auth
// answer and SyncStatus ack. The relay gets raw bytes and must not echo them.
//
// Run after `bash scripts/bench-peers`: `node bench/peers/smoke.mjs [NAME...]`
// (names: weft y-sweet y-websocket hocuspocus relay; default all). It builds
// target/release/weft and target/release/weft-floor with cargo first (set
// SMOKE_NO_BUILD=1 to skip); SMOKE_TRACE=1 prints every frame. It runs
// every server even after a failure and exits 1 if any failed; every server
// it started is killed, on failure too.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import WebSocket from "ws";
import * as Y from "yjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const TIMEOUT_MS = 10_000;
// SMOKE_TRACE=1 prints every frame sent and received, in hex.
const TRACE = Boolean(process.env.SMOKE_TRACE);

// y-protocols message tags (y-protocols/sync and the y-websocket server).
const MSG_SYNC = 0;
const MSG_AWARENESS = 1;
const MSG_AUTH = 2;
const SYNC_STEP1 = 0;
const SYNC_STEP2 = 1;
const SYNC_UPDATE = 2;
// Hocuspocus only (@hocuspocus/server src/types.ts).
const HP_SYNC_STATUS = 8;
const HP_CLOSE = 7;
const HP_AUTH_TOKEN = 0;
const HP_AUTH_AUTHENTICATED = 2;

// ---------------------------------------------------------------- processes

/** Every child this run started, so that none outlives it. */
const children = new Set();

process.on("exit", () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(1));
}

/**
 * Starts `cmd`, resolves with the first stdout line that `ready` matches
 * (its match), and keeps the process's output for error messages.
 */
function startServer(name, cmd, args, { env = {}, ready }) {
  const child = spawn(cmd, args, {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  let output = "";
  const server = { name, child, output: () => output };
  server.ready = new Promise((resolve, reject) => {
    let pending = "";
    const timer = setTimeout(
      () => reject(new Error(`${name} printed no ready line within ${TIMEOUT_MS} ms; output:\n${output}`)),
      TIMEOUT_MS,
    );
    child.stdout.on("data", (chunk) => {
      output += chunk;
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const match = line.match(ready);
        if (match) {
          clearTimeout(timer);
          resolve(match);
        }
      }
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`${name} did not start: ${error.message}`));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before it was ready (${code ?? signal}); output:\n${output}`));
    });
  });
  return server;
}

/** Sends `signal` and waits for the exit; returns the exit code or signal. */
function stopServer(server, signal = "SIGTERM") {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode ?? child.signalCode);
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${server.name} did not exit within ${TIMEOUT_MS} ms of ${signal}`));
    }, TIMEOUT_MS);
    child.once("exit", (code, sig) => {
      clearTimeout(timer);
      children.delete(child);
      resolve(code ?? sig);
    });
    child.kill(signal);
  });
}

function cargoBuild(args) {
  console.log(`  $ cargo ${args.join(" ")}`);
  const result = spawnSync("cargo", args, { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
  if (result.status !== 0) throw new Error(`cargo ${args.join(" ")} failed (${result.status ?? result.signal})`);
}

async function httpJson(method, url, { token, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${text}`);
  return JSON.parse(text);
}

// ---------------------------------------------------------------- wire

/** Encodes a y-protocols message, with Hocuspocus's doc-name prefix if `docName` is given. */
function frame(docName, write) {
  const encoder = encoding.createEncoder();
  if (docName !== undefined) encoding.writeVarString(encoder, docName);
  write(encoder);
  return encoding.toUint8Array(encoder);
}

const syncMessage = (docName, sub, payload) =>
  frame(docName, (e) => {
    encoding.writeVarUint(e, MSG_SYNC);
    encoding.writeVarUint(e, sub);
    encoding.writeVarUint8Array(e, payload);
  });

/** Decodes one frame into {doc?, type, sub?, payload?, text?, raw}. */
function parse(bytes, prefixed) {
  const decoder = decoding.createDecoder(bytes);
  const message = { raw: bytes };
  if (prefixed) message.doc = decoding.readVarString(decoder);
  message.type = decoding.readVarUint(decoder);
  switch (message.type) {
    case MSG_SYNC:
      message.sub = decoding.readVarUint(decoder);
      message.payload = decoding.readVarUint8Array(decoder);
      break;
    case MSG_AWARENESS:
      message.payload = decoding.readVarUint8Array(decoder);
      break;
    case MSG_AUTH:
      message.sub = decoding.readVarUint(decoder);
      if (decoding.hasContent(decoder)) message.text = decoding.readVarString(decoder);
      break;
    case HP_SYNC_STATUS:
      if (prefixed) message.sub = decoding.readVarUint(decoder);
      break;
    case HP_CLOSE:
      if (prefixed) message.text = decoding.readVarString(decoder);
      break;
    default:
      break;
  }
  if (decoding.hasContent(decoder) && message.type <= MSG_AUTH) {
    throw new Error(`trailing bytes after a message: ${hex(bytes)}`);
  }
  return message;
}

const hex = (bytes) => Buffer.from(bytes.slice(0, 48)).toString("hex") + (bytes.length > 48 ? "…" : "");

function describe(m) {
  const doc = m.doc === undefined ? "" : `[${JSON.stringify(m.doc)}] `;
  const names = { 0: "sync", 1: "awareness", 2: "auth", 7: "close", 8: "sync-status" };
  const subs = { 0: "step1", 1: "step2", 2: "update" };
  let s = `${doc}${names[m.type] ?? `type ${m.type}`}`;
  if (m.type === MSG_SYNC) s += ` ${subs[m.sub] ?? m.sub} (${m.payload.length} B)`;
  else if (m.sub !== undefined) s += ` ${m.sub}`;
  if (m.text !== undefined) s += ` ${JSON.stringify(m.text)}`;
  return s;
}

/**
 * A raw client: a WebSocket, the frames it received (in order), and a Y.Doc
 * that every received sync step 2 / update is applied to on arrival.
 */
class RawClient {
  static async connect(label, url, { prefixed = false, ydoc = true } = {}) {
    const client = new RawClient(label, url, prefixed, ydoc);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label}: no connection to ${url}`)), TIMEOUT_MS);
      client.ws.once("open", () => {
        clearTimeout(timer);
        resolve();
      });
      client.ws.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`${label}: connecting to ${url}: ${error.message}`));
      });
    });
    return client;
  }

  constructor(label, url, prefixed, ydoc) {
    this.label = label;
    this.prefixed = prefixed;
    this.doc = ydoc ? new Y.Doc() : null;
    this.received = [];
    this.cursor = 0;
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "nodebuffer";
    this.ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        this.fail(new Error(`${label}: unexpected text frame ${JSON.stringify(String(data))}`));
        return;
      }
      const bytes = new Uint8Array(data);
      if (TRACE) console.log(`    ${label} <- ${hex(bytes)}`);
      let message;
      if (this.doc) {
        try {
          message = parse(bytes, prefixed);
        } catch (error) {
          this.fail(new Error(`${label}: undecodable frame ${hex(bytes)}: ${error.message}`));
          return;
        }
        if (message.type === MSG_SYNC && message.sub !== SYNC_STEP1) {
          Y.applyUpdate(this.doc, message.payload, "remote");
        }
      } else {
        message = { raw: bytes };
      }
      this.received.push(message);
      this.wake();
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
      this.wake();
    });
  }

  fail(error) {
    this.error ??= error;
    this.wake();
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  send(bytes) {
    if (TRACE) console.log(`    ${this.label} -> ${hex(bytes)}`);
    this.ws.send(bytes);
  }

  /** The next not yet consumed frame, which must satisfy `check` (else the test fails). */
  async next(what, check) {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      if (this.error) throw this.error;
      if (this.cursor < this.received.length) {
        const message = this.received[this.cursor++];
        if (!check(message)) {
          throw new Error(`${this.label}: expected ${what}, got ${this.doc ? describe(message) : hex(message.raw)}`);
        }
        return message;
      }
      if (this.closed) {
        throw new Error(`${this.label}: socket closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no ${what} within ${TIMEOUT_MS} ms`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Skips frames until one satisfies `check`; the skipped ones must satisfy `skippable`. */
  async until(what, check, skippable) {
    for (;;) {
      const message = await this.next(what, (m) => check(m) || skippable(m));
      if (check(message)) return message;
    }
  }

  text() {
    return this.doc.getText("t").toString();
  }

  /** Inserts `s` at the end of the shared text and returns the update it made. */
  insert(s) {
    let update = null;
    const capture = (u, origin) => {
      if (origin !== "remote") update = u;
    };
    this.doc.on("update", capture);
    this.doc.getText("t").insert(this.doc.getText("t").length, s);
    this.doc.off("update", capture);
    return update;
  }

  close() {
    this.ws.terminate();
  }
}

const isSync = (sub) => (m) => m.type === MSG_SYNC && m.sub === sub;
const isAwareness = (m) => m.type === MSG_AWARENESS;

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// ---------------------------------------------------------------- dialects

/**
 * Plain y-websocket (weft /y/, y-sweet, @y/websocket-server): one document
 * per socket, unprefixed y-protocols messages, the server speaks first with
 * its sync step 1.
 */
async function plainHandshake(label, url) {
  const c = await RawClient.connect(label, url);
  // 1. The server's sync step 1 comes first, unasked.
  const serverStep1 = await c.next("the server's sync step 1 first", isSync(SYNC_STEP1));
  // 2. Our step 1; the answer is a step 2 (an awareness message may come
  //    before it when the doc has presence).
  c.send(syncMessage(undefined, SYNC_STEP1, Y.encodeStateVector(c.doc)));
  await c.until("sync step 2 answering our step 1", isSync(SYNC_STEP2), isAwareness);
  // 3. Our step 2 answers the server's step 1 (nothing comes back).
  c.send(syncMessage(undefined, SYNC_STEP2, Y.encodeStateAsUpdate(c.doc, serverStep1.payload)));
  return c;
}

/**
 * A inserts, B must receive it as a sync update; then the reverse. `echo`
 * says whether the sender gets its own update back (checked either way).
 */
async function plainExchange(a, b, { echo }) {
  for (const [from, to, text] of [
    [a, b, "hello from A. "],
    [b, a, "and from B."],
  ]) {
    const update = from.insert(text);
    from.send(syncMessage(undefined, SYNC_UPDATE, update));
    await to.until(`${to.label}: the sync update with ${JSON.stringify(text)}`, isSync(SYNC_UPDATE), isAwareness);
    assert(to.text() === from.text(), `texts differ: ${JSON.stringify(from.text())} vs ${JSON.stringify(to.text())}`);
    if (echo) {
      await from.until(`${from.label}: the echo of its own update`, isSync(SYNC_UPDATE), isAwareness);
    } else {
      // A step 1 is answered after the update has been handled, so an echo
      // would arrive before the step 2.
      from.send(syncMessage(undefined, SYNC_STEP1, Y.encodeStateVector(from.doc)));
      await from.until(`${from.label}: step 2 (no echo of its own update before it)`, isSync(SYNC_STEP2), isAwareness);
    }
  }
  assert(a.text() === "hello from A. and from B.", `unexpected text ${JSON.stringify(a.text())}`);
  assert(a.text() === b.text(), "texts did not converge");
}

async function plainPair(url, { echo }) {
  const a = await plainHandshake("A", url);
  const b = await plainHandshake("B", url);
  try {
    await plainExchange(a, b, { echo });
  } finally {
    a.close();
    b.close();
  }
}

// ---------------------------------------------------------------- servers

async function smokeWeft() {
  if (!process.env.SMOKE_NO_BUILD) cargoBuild(["build", "--release", "--bin", "weft"]);
  const data = mkdtempSync(path.join(tmpdir(), "weft-smoke-"));
  const server = startServer(
    "weft",
    path.join(root, "target/release/weft"),
    ["hub", "--listen", "127.0.0.1:0", "--data", data],
    { env: { WEFT_LOG: "warn" }, ready: /^weft hub listening on http:\/\/(\S+)$/ },
  );
  try {
    const [, addr] = await server.ready;
    const admin = readFileSync(path.join(data, "admin.token"), "utf8").trim();
    const session = await httpJson("POST", `http://${addr}/api/sessions`, { token: admin, body: { name: "bench" } });
    const link = await httpJson("POST", `http://${addr}/api/sessions/${session.id}/links`, {
      token: admin,
      body: { role: "editor" },
    });
    assert(link.role === "editor", `link role ${link.role}`);
    await plainPair(`ws://${addr}/y/${session.id}/doc?token=${link.token}`, { echo: false });
    return await stopServer(server);
  } finally {
    await stopServer(server, "SIGKILL").catch(() => {});
    rmSync(data, { recursive: true, force: true });
  }
}

async function smokeYSweet() {
  const server = startServer(
    "y-sweet",
    path.join(root, "target/peers/bin/y-sweet"),
    ["serve", "--host", "127.0.0.1", "--port", "0"],
    { ready: /Listening on ws:\/\/(\S+)$/ },
  );
  try {
    const [, addr] = await server.ready;
    const ready = await httpJson("GET", `http://${addr}/ready`);
    assert(ready.ok === true, "GET /ready is not ok");
    const created = await httpJson("POST", `http://${addr}/doc/new`, { body: { docId: "bench-doc" } });
    assert(created.docId === "bench-doc", `POST /doc/new answered ${JSON.stringify(created)}`);
    await plainPair(`ws://${addr}/d/bench-doc/ws/bench-doc`, { echo: true });
    // SIGINT is y-sweet's graceful shutdown; SIGTERM just kills it.
    return await stopServer(server, "SIGINT");
  } finally {
    await stopServer(server, "SIGKILL").catch(() => {});
  }
}

async function smokeYWebsocket() {
  const server = startServer("y-websocket", "node", [path.join(here, "y-websocket.mjs")], {
    env: { HOST: "127.0.0.1", PORT: "0" },
    ready: /^listening on (\d+)$/,
  });
  try {
    const [, port] = await server.ready;
    await plainPair(`ws://127.0.0.1:${port}/bench-doc`, { echo: true });
    return await stopServer(server);
  } finally {
    await stopServer(server, "SIGKILL").catch(() => {});
  }
}

async function smokeHocuspocus() {
  const server = startServer("hocuspocus", "node", [path.join(here, "hocuspocus.mjs")], {
    env: { HOST: "127.0.0.1", PORT: "0" },
    ready: /^listening on (\d+)$/,
  });
  try {
    const [, port] = await server.ready;
    // The URL path is not looked at: the document is named in every message.
    const url = `ws://127.0.0.1:${port}/`;
    const docName = "bench-doc";
    const forDoc = (check) => (m) => m.doc === docName && check(m);
    const handshake = async (label) => {
      const c = await RawClient.connect(label, url, { prefixed: true });
      // 1. Auth first, with any token: without an onAuthenticate hook every
      //    token is accepted. The server says nothing before it.
      c.send(
        frame(docName, (e) => {
          encoding.writeVarUint(e, MSG_AUTH);
          encoding.writeVarUint(e, HP_AUTH_TOKEN);
          encoding.writeVarString(e, "");
        }),
      );
      const auth = await c.next(
        "Authenticated",
        forDoc((m) => m.type === MSG_AUTH && m.sub === HP_AUTH_AUTHENTICATED),
      );
      assert(auth.text === "read-write", `scope ${auth.text}`);
      // 2. Our step 1: the server answers with its own step 1, then step 2.
      c.send(syncMessage(docName, SYNC_STEP1, Y.encodeStateVector(c.doc)));
      const serverStep1 = await c.until(
        "the server's step 1",
        forDoc(isSync(SYNC_STEP1)),
        forDoc(isAwareness),
      );
      await c.next("step 2 right after the server's step 1", forDoc(isSync(SYNC_STEP2)));
      // 3. Our step 2 answers it; the server acks it with SyncStatus(1).
      c.send(syncMessage(docName, SYNC_STEP2, Y.encodeStateAsUpdate(c.doc, serverStep1.payload)));
      const ack = await c.next("SyncStatus ack of our step 2", forDoc((m) => m.type === HP_SYNC_STATUS));
      assert(ack.sub === 1, `SyncStatus ${ack.sub}`);
      return c;
    };
    const a = await handshake("A");
    const b = await handshake("B");
    try {
      for (const [from, to, text] of [
        [a, b, "hello from A. "],
        [b, a, "and from B."],
      ]) {
        const update = from.insert(text);
        from.send(syncMessage(docName, SYNC_UPDATE, update));
        const skip = (m) => m.doc === docName && (m.type === MSG_AWARENESS || m.type === HP_SYNC_STATUS);
        await to.until(`${to.label}: the sync update`, forDoc(isSync(SYNC_UPDATE)), skip);
        assert(to.text() === from.text(), `texts differ: ${JSON.stringify(from.text())} vs ${JSON.stringify(to.text())}`);
        // The sender gets a SyncStatus ack and its own update echoed (the
        // order of the two is not fixed: broadcasts are flushed on setImmediate).
        let acked = false;
        let echoed = false;
        while (!acked || !echoed) {
          const m = await from.next(
            "SyncStatus ack and echo",
            forDoc((m) => m.type === HP_SYNC_STATUS || isSync(SYNC_UPDATE)(m) || isAwareness(m)),
          );
          if (m.type === HP_SYNC_STATUS) {
            assert(m.sub === 1, `SyncStatus ${m.sub}`);
            acked = true;
          }
          if (m.type === MSG_SYNC) echoed = true;
        }
      }
      assert(a.text() === "hello from A. and from B.", `unexpected text ${JSON.stringify(a.text())}`);
      assert(a.text() === b.text(), "texts did not converge");
      // One socket carries any number of documents: A opens a second one.
      a.send(
        frame("second-doc", (e) => {
          encoding.writeVarUint(e, MSG_AUTH);
          encoding.writeVarUint(e, HP_AUTH_TOKEN);
          encoding.writeVarString(e, "");
        }),
      );
      await a.next(
        "Authenticated for a second document on the same socket",
        (m) => m.doc === "second-doc" && m.type === MSG_AUTH && m.sub === HP_AUTH_AUTHENTICATED,
      );
    } finally {
      a.close();
      b.close();
    }
    return await stopServer(server);
  } finally {
    await stopServer(server, "SIGKILL").catch(() => {});
  }
}

async function smokeRelay() {
  if (!process.env.SMOKE_NO_BUILD) cargoBuild(["build", "--release", "-p", "weft-bench", "--bin", "weft-floor"]);
  const server = startServer(
    "relay",
    path.join(root, "target/release/weft-floor"),
    ["relay", "--listen", "127.0.0.1:0"],
    { ready: /^listening on (\d+)$/ },
  );
  try {
    const [, port] = await server.ready;
    const url = `ws://127.0.0.1:${port}/bench-room`;
    const a = await RawClient.connect("A", url, { ydoc: false });
    const b = await RawClient.connect("B", url, { ydoc: false });
    const c = await RawClient.connect("C (other room)", `ws://127.0.0.1:${port}/other-room`, { ydoc: false });
    const d = await RawClient.connect("D (other room)", `ws://127.0.0.1:${port}/other-room`, { ydoc: false });
    try {
      // The relay does not look at the bytes: send a real y-websocket update
      // frame and an arbitrary one.
      const doc = new Y.Doc();
      let update = null;
      doc.on("update", (u) => {
        update = u;
      });
      doc.getText("t").insert(0, "hello from A");
      const frames = [syncMessage(undefined, SYNC_UPDATE, update), new Uint8Array([0xff, 0x00, 0x42])];
      // B speaks first: once A has B's bytes, both are in the room.
      const ping = new Uint8Array([1, 2, 3]);
      b.send(ping);
      await a.next("B's bytes (B -> A)", (m) => Buffer.compare(m.raw, ping) === 0);
      for (const bytes of frames) a.send(bytes);
      for (const bytes of frames) {
        await b.next(`A's bytes ${hex(bytes)}, unchanged`, (m) => Buffer.compare(m.raw, bytes) === 0);
      }
      const replica = new Y.Doc();
      Y.applyUpdate(replica, parse(b.received[0].raw, false).payload);
      assert(replica.getText("t").toString() === "hello from A", "relayed update does not decode");
      // No echo: A's next frame is B's answer, not its own bytes.
      const pong = new Uint8Array([4, 5, 6]);
      b.send(pong);
      await a.next("B's answer (and not an echo of A's own bytes)", (m) => Buffer.compare(m.raw, pong) === 0);
      // Rooms are separate: the first frame C gets is D's, none of bench-room's.
      const seven = new Uint8Array([7]);
      d.send(seven);
      await c.next("D's bytes first (nothing from the other room)", (m) => Buffer.compare(m.raw, seven) === 0);
    } finally {
      for (const client of [a, b, c, d]) client.close();
    }
    return await stopServer(server);
  } finally {
    await stopServer(server, "SIGKILL").catch(() => {});
  }
}

// ---------------------------------------------------------------- main

const all = {
  weft: smokeWeft,
  "y-sweet": smokeYSweet,
  "y-websocket": smokeYWebsocket,
  hocuspocus: smokeHocuspocus,
  relay: smokeRelay,
};
const wanted = process.argv.slice(2);
for (const name of wanted) {
  if (!(name in all)) {
    console.error(`unknown server ${name}; expected one of ${Object.keys(all).join(", ")}`);
    process.exit(2);
  }
}

let failed = false;
for (const [name, run] of Object.entries(all)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  const started = Date.now();
  try {
    const exit = await run();
    console.log(`ok   ${name} (${Date.now() - started} ms; exit on stop: ${exit})`);
  } catch (error) {
    failed = true;
    console.error(`FAIL ${name}: ${error.stack ?? error}`);
  }
}
process.exit(failed ? 1 : 0);
