#!/usr/bin/env node
// Interoperability check: stock `yjs` + `y-websocket` clients against a weft hub.
//
//   node tests/js/interop.mjs --base ws://127.0.0.1:PORT --session SID --doc DOC \
//        --token TOKEN [--viewer-token VTOKEN] [--timeout-ms 20000]
//
// Two editor clients edit the Y.Text `content` of DOC concurrently, with
// multi-byte text (emoji, CJK, a combining mark). The script waits until both
// converge to the expected text, then checks that a fresh editor client gets
// the same text from the hub. With --viewer-token, a viewer client must see
// the same text, its write must be refused (auth "permission denied") and must
// not reach the hub's document.
//
// stdout: exactly one JSON line, `{"ok":true,"text":...,"length":N}` (length
// in UTF-16 code units, as Y.Text counts) or `{"ok":false,"error":...}`.
// Exit code 0 on success, 1 on any failure. Diagnostics go to stderr.
// --timeout-ms bounds the whole run; a hard timer exits 1 when it expires.

import { parseArgs } from 'node:util'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const MESSAGE_AUTH = 2 // y-websocket's message type for y-protocols/auth

// ---------------------------------------------------------------- output

let finished = false
const providers = new Set()

const log = (...args) => console.error('[interop]', ...args)

function finish (result) {
  if (finished) return
  finished = true
  for (const p of providers) {
    try { p.destroy() } catch (e) { log('destroy failed:', e && e.message) }
  }
  providers.clear()
  const code = result.ok ? 0 : 1
  process.exitCode = code
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
  // If the write callback never comes, still exit.
  setTimeout(() => process.exit(code), 1000).unref()
}

const fail = (error) => finish({ ok: false, error: String(error) })

class Failure extends Error {}

process.on('uncaughtException', (e) => {
  log('uncaught exception:', e && e.stack ? e.stack : e)
  fail(`uncaught exception: ${e && e.message ? e.message : e}`)
})
process.on('unhandledRejection', (e) => {
  log('unhandled rejection:', e && e.stack ? e.stack : e)
  fail(`unhandled rejection: ${e && e.message ? e.message : e}`)
})

// ---------------------------------------------------------------- arguments

function parseCli () {
  let values
  try {
    ({ values } = parseArgs({
      options: {
        base: { type: 'string' },
        session: { type: 'string' },
        doc: { type: 'string' },
        token: { type: 'string' },
        'viewer-token': { type: 'string' },
        'timeout-ms': { type: 'string', default: '20000' }
      },
      strict: true,
      allowPositionals: false
    }))
  } catch (e) {
    throw new Failure(`bad arguments: ${e.message}`)
  }
  for (const key of ['base', 'session', 'doc', 'token']) {
    if (!values[key]) throw new Failure(`missing --${key}`)
  }
  const timeoutMs = Number(values['timeout-ms'])
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new Failure(`bad --timeout-ms: ${values['timeout-ms']}`)
  }
  return {
    base: values.base.replace(/\/+$/, ''),
    session: values.session,
    doc: values.doc,
    token: values.token,
    viewerToken: values['viewer-token'],
    timeoutMs
  }
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let deadline = 0 // absolute ms; set in main

/** Polls `cond` every 20 ms until it is true or the global deadline passes. */
async function waitFor (what, cond, diagnose) {
  while (!cond()) {
    if (Date.now() >= deadline) {
      const extra = diagnose ? `; ${diagnose()}` : ''
      throw new Failure(`timed out waiting for ${what}${extra}`)
    }
    await sleep(20)
  }
}

function pick (rng, n) { return Math.floor(rng() * n) }

/** Small deterministic PRNG (mulberry32) so a failing run can be replayed. */
function mulberry32 (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** UTF-16 offsets at which a whole line may be inserted: 0 and after each "\n". */
function lineBoundaries (text) {
  const out = [0]
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') out.push(i + 1)
  return out
}

const sortedLines = (text) => text.split('\n').sort()

function sameMultiset (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Describes how the lines of `text` differ from the expected multiset. */
function lineDiff (text, expectedSorted) {
  const counts = new Map()
  for (const l of expectedSorted) counts.set(l, (counts.get(l) || 0) + 1)
  for (const l of text.split('\n')) counts.set(l, (counts.get(l) || 0) - 1)
  const missing = []; const extra = []
  for (const [l, c] of counts) {
    if (c > 0) missing.push(`${JSON.stringify(l)}x${c}`)
    if (c < 0) extra.push(`${JSON.stringify(l)}x${-c}`)
  }
  return `missing=[${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}] ` +
    `extra=[${extra.slice(0, 8).join(', ')}${extra.length > 8 ? ', ...' : ''}]`
}

// ---------------------------------------------------------------- clients

/**
 * One stock y-websocket client. The room name is the doc path with its
 * slashes kept (each segment percent-encoded, which is the identity for
 * ordinary paths such as `src/main.rs`), so the URL is
 * `${base}/y/${session}/${doc}?token=...`.
 */
function connectClient (name, cfg, token) {
  const doc = new Y.Doc()
  const text = doc.getText('content')
  const roomname = cfg.doc.split('/').map(encodeURIComponent).join('/')
  const provider = new WebsocketProvider(`${cfg.base}/y/${cfg.session}`, roomname, doc, {
    params: { token },
    WebSocketPolyfill: WebSocket,
    // In node, clients in one process would otherwise sync with each other
    // through lib0's in-process BroadcastChannel, bypassing the hub.
    disableBc: true,
    maxBackoffTime: 1000
  })
  providers.add(provider)
  const client = {
    name,
    doc,
    text,
    provider,
    denied: [], // reasons of auth "permission denied" messages
    closes: [], // { code, reason }
    errors: [],
    terminal: null
  }
  // Record y-protocols auth messages, then run the stock handler.
  const stockAuth = provider.messageHandlers[MESSAGE_AUTH]
  provider.messageHandlers[MESSAGE_AUTH] = (encoder, decoder, prov, emitSynced, type) => {
    const peek = { ...decoder } // decoders are plain {arr, pos} objects
    try {
      const authType = readVarUint(peek)
      if (authType === 0) client.denied.push(readVarString(peek))
    } catch (e) {
      log(`${name}: unreadable auth message: ${e.message}`)
    }
    stockAuth(encoder, decoder, prov, emitSynced, type)
  }
  provider.on('status', ({ status }) => log(`${name}: ${status}`))
  provider.on('sync', (synced) => log(`${name}: synced=${synced}`))
  provider.on('connection-close', (event) => {
    if (event) {
      client.closes.push({ code: event.code, reason: event.reason })
      log(`${name}: connection closed by peer code=${event.code} reason=${JSON.stringify(event.reason)}`)
    }
  })
  provider.on('connection-error', (event) => {
    const msg = (event && (event.message || (event.error && event.error.message))) || String(event && event.type)
    client.errors.push(msg)
    log(`${name}: connection error: ${msg}`)
  })
  provider.on('closed', (event) => {
    client.terminal = event
    log(`${name}: hub closed the connection for good code=${event.code} reason=${JSON.stringify(event.reason)}`)
  })
  return client
}

function describe (client) {
  const p = client.provider
  return `${client.name}: connected=${p.wsconnected} synced=${p.synced} ` +
    `denied=${JSON.stringify(client.denied.slice(-2))} ` +
    `closes=${JSON.stringify(client.closes.slice(-3))} errors=${JSON.stringify(client.errors.slice(-3))}`
}

async function waitSynced (...clients) {
  await waitFor(
    `${clients.map((c) => c.name).join(', ')} to sync`,
    () => {
      for (const c of clients) {
        if (c.terminal) {
          throw new Failure(`${c.name}: hub closed the connection code=${c.terminal.code} reason=${JSON.stringify(c.terminal.reason)}`)
        }
      }
      return clients.every((c) => c.provider.synced)
    },
    () => clients.map(describe).join('; ')
  )
}

function closeClient (client) {
  client.provider.destroy()
  providers.delete(client.provider)
  client.doc.destroy()
}

// Minimal lib0 varint readers (kept local so we need not import lib0 directly).
function readVarUint (d) {
  let num = 0; let mult = 1
  for (;;) {
    if (d.pos >= d.arr.length) throw new Error('unexpected end of message')
    const r = d.arr[d.pos++]
    num += (r & 0x7f) * mult
    mult *= 128
    if (r < 0x80) return num
    if (num > Number.MAX_SAFE_INTEGER) throw new Error('integer out of range')
  }
}
function readVarString (d) {
  const len = readVarUint(d)
  if (d.pos + len > d.arr.length) throw new Error('unexpected end of message')
  const s = new TextDecoder().decode(d.arr.subarray(d.pos, d.pos + len))
  d.pos += len
  return s
}

// ---------------------------------------------------------------- edits

const CRAB = '\u{1F980}' // 🦀 (a surrogate pair in UTF-16)
const CJK = '日本語'
const E_ACUTE = 'e\u0301' // "é" as e + combining acute accent
const A_LINES = 50
const B_LINES = 30

/**
 * Client A: 50 lines `alpha-NN 🦀 é` at random line boundaries; every 5th
 * step it also inserts "日本" inside one of its own earlier lines, between
 * the emoji and the combining sequence.
 * Returns the lines A expects in the final text.
 */
async function runA (client, rng) {
  const expected = new Map()
  for (let i = 0; i < A_LINES; i++) {
    const id = String(i).padStart(2, '0')
    const line = `alpha-${id} ${CRAB} ${E_ACUTE}`
    const cur = client.text.toString()
    const spots = lineBoundaries(cur)
    client.text.insert(spots[pick(rng, spots.length)], line + '\n')
    expected.set(id, line)
    if (i % 5 === 4) {
      const target = String(pick(rng, i + 1)).padStart(2, '0')
      const old = expected.get(target)
      const at = client.text.toString().indexOf(old + '\n')
      if (at < 0) throw new Failure(`A lost its own line ${JSON.stringify(old)}`)
      const split = `alpha-${target} ${CRAB}`.length // just after the emoji
      client.text.insert(at + split, '日本')
      expected.set(target, old.slice(0, split) + '日本' + old.slice(split))
    }
    await sleep(pick(rng, 8))
  }
  return [...expected.values()]
}

/**
 * Client B: 30 lines `beta-NN 🦀日本語<<cutNN>>é🦀`; a few steps later it
 * deletes the `<<cutNN>>` segment from the middle of the line (splitting an
 * item between multi-byte characters). Every 6th line is instead a
 * `beta-doomed-NN` line that B deletes whole.
 * Returns the lines B expects in the final text.
 */
async function runB (client, rng) {
  const expected = []
  const pendingCuts = []
  const pendingDoomed = []
  const cut = (id) => {
    const seg = `<<cut${id}>>`
    const at = client.text.toString().indexOf(seg)
    if (at < 0) throw new Failure(`B lost its segment ${seg}`)
    client.text.delete(at, seg.length)
  }
  const doom = (id) => {
    const line = `beta-doomed-${id} ${CJK}\n`
    const at = client.text.toString().indexOf(line)
    if (at < 0) throw new Failure(`B lost its line ${JSON.stringify(line)}`)
    client.text.delete(at, line.length)
  }
  for (let i = 0; i < B_LINES; i++) {
    const id = String(i).padStart(2, '0')
    const spots = lineBoundaries(client.text.toString())
    const at = spots[pick(rng, spots.length)]
    if (i % 6 === 5) {
      client.text.insert(at, `beta-doomed-${id} ${CJK}\n`)
      pendingDoomed.push(id)
    } else {
      client.text.insert(at, `beta-${id} ${CRAB}${CJK}<<cut${id}>>${E_ACUTE}${CRAB}\n`)
      expected.push(`beta-${id} ${CRAB}${CJK}${E_ACUTE}${CRAB}`)
      pendingCuts.push(id)
    }
    if (pendingCuts.length > 3) cut(pendingCuts.shift())
    if (pendingDoomed.length > 1) doom(pendingDoomed.shift())
    await sleep(pick(rng, 8))
  }
  while (pendingCuts.length) { cut(pendingCuts.shift()); await sleep(pick(rng, 4)) }
  while (pendingDoomed.length) { doom(pendingDoomed.shift()); await sleep(pick(rng, 4)) }
  return expected
}

// ---------------------------------------------------------------- main

async function main () {
  const cfg = parseCli()
  deadline = Date.now() + cfg.timeoutMs
  // Hard stop: whatever happens, the process ends shortly after the deadline.
  setTimeout(() => {
    log('hard timeout')
    fail(`hard timeout after ${cfg.timeoutMs} ms`)
  }, cfg.timeoutMs + 2000).unref()

  const seed = Number(process.env.WEFT_INTEROP_SEED || Date.now() % 2147483647)
  log(`seed=${seed} url=${cfg.base}/y/${cfg.session}/${cfg.doc}`)

  // 1. Two editors sync.
  const a = connectClient('A', cfg, cfg.token)
  const b = connectClient('B', cfg, cfg.token)
  await waitSynced(a, b)
  const initial = a.text.toString()
  if (b.text.toString() !== initial) {
    await waitFor('A and B to agree on the initial text', () => a.text.toString() === b.text.toString())
  }
  log(`both synced; initial length=${initial.length}`)

  // 2. Concurrent edits. Count the hub's updates that arrive while each
  // client is still editing, to show that the edits really interleaved.
  const remoteDuringEdits = { A: 0, B: 0 }
  let editing = true
  for (const cl of [a, b]) {
    cl.doc.on('update', (_u, origin) => {
      if (editing && origin === cl.provider) remoteDuringEdits[cl.name]++
    })
  }
  const [aLines, bLines] = await Promise.all([
    runA(a, mulberry32(seed)),
    runB(b, mulberry32(seed ^ 0x5eed))
  ])
  editing = false
  log(`edits done; remote updates applied while editing: A=${remoteDuringEdits.A} B=${remoteDuringEdits.B}`)
  const expectedSorted = initial.split('\n').concat(aLines, bLines).sort()

  // 3. Convergence.
  const converged = () => {
    const ta = a.text.toString()
    return ta === b.text.toString() && sameMultiset(sortedLines(ta), expectedSorted)
  }
  await waitFor('A and B to converge', converged, () => {
    const ta = a.text.toString(); const tb = b.text.toString()
    return `A(len=${ta.length}) ${lineDiff(ta, expectedSorted)}; ` +
      `B(len=${tb.length}) ${lineDiff(tb, expectedSorted)}; equal=${ta === tb}; ` +
      `${describe(a)}; ${describe(b)}`
  })
  const agreed = a.text.toString()
  log(`A and B converged; length=${agreed.length}`)

  // 4. A fresh editor reads the hub's copy.
  const c = connectClient('C', cfg, cfg.token)
  await waitSynced(c)
  if (c.text.toString() !== agreed) {
    throw new Failure(`fresh client C got a different text from the hub: ${lineDiff(c.text.toString(), expectedSorted)} ` +
      `(C len=${c.text.length}, expected len=${agreed.length})`)
  }
  closeClient(c)
  log('fresh client C sees the converged text')

  let final = agreed

  // 5. Viewer: reads, but its write is refused.
  if (cfg.viewerToken) {
    const marker = 'VIEWER-WRITE'
    const v = connectClient('V', cfg, cfg.viewerToken)
    await waitSynced(v)
    if (v.text.toString() !== agreed) {
      throw new Failure(`viewer sees a different text: ${lineDiff(v.text.toString(), expectedSorted)}`)
    }
    log('viewer V synced and sees the same text; writing')
    v.text.insert(0, marker + '\n')
    await waitFor('the hub to answer the viewer write with permission denied',
      () => v.denied.length > 0,
      () => `no auth message received; ${describe(v)}`)
    log(`V: permission denied: ${JSON.stringify(v.denied[0])}`)
    await sleep(1000)
    for (const ed of [a, b]) {
      if (ed.text.toString().includes(marker)) {
        throw new Failure(`editor ${ed.name} received the viewer's write`)
      }
    }
    const d = connectClient('D', cfg, cfg.token)
    await waitSynced(d)
    const onHub = d.text.toString()
    closeClient(d)
    closeClient(v)
    if (onHub.includes(marker)) {
      throw new Failure('the viewer\'s write reached the hub\'s document')
    }
    if (onHub !== agreed) {
      throw new Failure(`fresh client D got a different text after the viewer write: ${lineDiff(onHub, expectedSorted)}`)
    }
    log('viewer write refused; hub text unchanged')
    final = onHub
  }

  finish({ ok: true, text: final, length: final.length })
}

main().catch((e) => {
  if (!(e instanceof Failure)) log(e && e.stack ? e.stack : e)
  fail(e && e.message ? e.message : e)
})
