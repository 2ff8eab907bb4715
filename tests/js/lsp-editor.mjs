#!/usr/bin/env node
// A scripted editor that drives a real `weft lsp` with the JSON-RPC library
// VS Code itself uses (`vscode-jsonrpc` + `vscode-languageserver-protocol`),
// behaving like VS Code's text model: the Rust twin is tests/src/lsp.rs
// (`LspEditor`); keep the two in step.
//
//   node tests/js/lsp-editor.mjs --weft BIN --root file:///dir --join LINK \
//        --file REL --edits N --seed S [--encoding utf-16] [--password PW]
//        [--name NAME] [--pause-ms 30] [--settle-ms 500] [--quiet-ms 1500]
//        [--timeout-ms 60000] [--stderr-file PATH] [--echo-before-answer]
//
// It starts `BIN lsp`, initializes (offering --encoding only; the server may
// still answer utf-16), sends `weft/join {link, root}`, opens ROOT/REL with
// the file's content on disk (empty if absent), and lets the server bring the
// buffer to the shared text: it applies incoming applyEdits until none has
// come for --settle-ms. Then it types N random edits (inserts of ASCII,
// newlines, emoji, CJK, combining marks; deletes), each followed by a random
// pause of 0..--pause-ms during which server messages are handled. Finally it
// waits until no applyEdit has come for --quiet-ms and `weft/status` is ok,
// sends `weft/verify` (sha256 of its buffer), waits --quiet-ms again, and
// shuts the server down.
//
// applyEdit handling is VS Code's: a TextDocumentEdit is applied only if its
// version is the buffer's current version (all-or-nothing over the whole
// WorkspaceEdit), ranges refer to the document before the edit, edits are
// sorted as VS Code sorts them and overlapping ones are refused. An applied
// edit bumps the version by one and is reported back as a didChange whose
// contentChanges go from the end of the document to its start; by default
// that didChange follows the `{applied: true}` answer on the wire
// (--echo-before-answer sends it first, as VS Code's client may). A stale
// edit is answered `{applied: false, failureReason: "stale version"}`.
//
// stdout: exactly one JSON line,
//   {"ok":true,"text":...,"version":N,"applied":A,"refused":R,...}
// or {"ok":false,"error":...}. Exit code 0 on success, 1 on any failure
// (including a protocol violation by the server: positions inside a
// character or a \r\n, past a line's end, overlapping or unversioned edits,
// malformed messages). Diagnostics go to stderr. --timeout-ms bounds the
// whole run; the child is always killed.

import { parseArgs } from 'node:util'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync, openSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import {
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection
} from 'vscode-jsonrpc/node'
import {
  ApplyWorkspaceEditRequest,
  ConfigurationRequest,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExitNotification,
  InitializeRequest,
  InitializedNotification,
  RegistrationRequest,
  ShowDocumentRequest,
  ShutdownRequest,
  UnregistrationRequest,
  WorkDoneProgressCreateRequest
} from 'vscode-languageserver-protocol'

// ---------------------------------------------------------------- output

let finished = false
let child = null
let connection = null

const log = (...args) => console.error('[lsp-editor]', ...args)

function finish (result) {
  if (finished) return
  finished = true
  try { connection && connection.dispose() } catch (e) { log('dispose failed:', e && e.message) }
  if (child && child.exitCode === null && child.signalCode === null) {
    try { child.kill('SIGKILL') } catch (e) { log('kill failed:', e && e.message) }
  }
  const code = result.ok ? 0 : 1
  process.exitCode = code
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
  // If the write callback never comes, still exit.
  setTimeout(() => process.exit(code), 1000).unref()
}

const fail = (error) => finish({ ok: false, error: String(error), ...(state ? summary() : {}) })

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
        weft: { type: 'string' },
        root: { type: 'string' },
        join: { type: 'string' },
        password: { type: 'string' },
        file: { type: 'string' },
        edits: { type: 'string', default: '20' },
        seed: { type: 'string', default: '1' },
        encoding: { type: 'string', default: 'utf-16' },
        name: { type: 'string', default: 'js-editor' },
        'pause-ms': { type: 'string', default: '30' },
        'settle-ms': { type: 'string', default: '500' },
        'quiet-ms': { type: 'string', default: '1500' },
        'timeout-ms': { type: 'string', default: '60000' },
        'stderr-file': { type: 'string' },
        'echo-before-answer': { type: 'boolean', default: false }
      },
      strict: true,
      allowPositionals: false
    }))
  } catch (e) {
    throw new Failure(`bad arguments: ${e.message}`)
  }
  for (const key of ['weft', 'root', 'join', 'file']) {
    if (!values[key]) throw new Failure(`missing --${key}`)
  }
  if (!['utf-8', 'utf-16', 'utf-32'].includes(values.encoding)) {
    throw new Failure(`bad --encoding: ${values.encoding}`)
  }
  if (!values.root.startsWith('file://')) throw new Failure(`--root must be a file:// URI: ${values.root}`)
  const num = (key) => {
    const n = Number(values[key])
    if (!Number.isInteger(n) || n < 0) throw new Failure(`bad --${key}: ${values[key]}`)
    return n
  }
  let seed
  try { seed = BigInt(values.seed) } catch { throw new Failure(`bad --seed: ${values.seed}`) }
  return {
    weft: values.weft,
    root: values.root.replace(/\/+$/, ''),
    link: values.join,
    password: values.password,
    file: values.file.replace(/^\/+/, ''),
    edits: num('edits'),
    seed,
    encoding: values.encoding,
    name: values.name,
    pauseMs: num('pause-ms'),
    settleMs: num('settle-ms'),
    quietMs: num('quiet-ms'),
    timeoutMs: num('timeout-ms'),
    stderrFile: values['stderr-file'],
    echoBeforeAnswer: values['echo-before-answer']
  }
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * xorshift64*, the generator of weft_tests::Rng, so a seed means the same
 * sequence in both harnesses.
 */
class Rng {
  constructor (seed) {
    const mask = (1n << 64n) - 1n
    this.mask = mask
    this.state = BigInt.asUintN(64, seed) || 1n
  }

  next () {
    let x = this.state
    x ^= x >> 12n
    x = (x ^ (x << 25n)) & this.mask
    x ^= x >> 27n
    this.state = x
    return (x * 0x2545F4914F6CDD1Dn) & this.mask
  }

  below (n) { return n <= 0 ? 0 : Number(this.next() % BigInt(n)) }
  pick (items) { return items[this.below(items.length)] }
}

/** The snippets of weft_tests::SNIPPETS: every width of UTF-8 and UTF-16. */
const SNIPPETS = ['a', 'fn ', '\n', '🦀', '日本語', 'e\u0301', '👩‍💻', 'ü', ' ', '{}', '𝕏']

// ---------------------------------------------------------------- positions
//
// Buffers are JS strings (UTF-16). An "offset" below is a UTF-16 index into
// the string. Lines end at \n, \r\n or \r, as LSP says.

function lineStarts (text) {
  const starts = [0]
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 10) starts.push(i + 1)
    else if (c === 13) {
      if (text.charCodeAt(i + 1) === 10) i++
      starts.push(i + 1)
    }
  }
  return starts
}

function lineContentEnd (text, starts, line) {
  if (line + 1 >= starts.length) return text.length
  const next = starts[line + 1]
  if (next >= 2 && text[next - 1] === '\n' && text[next - 2] === '\r') return next - 2
  return next - 1
}

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff

function splitsSurrogate (text, offset) {
  return offset > 0 && offset < text.length && isHigh(text.charCodeAt(offset - 1)) && isLow(text.charCodeAt(offset))
}

function splitsCrlf (text, offset) {
  return offset > 0 && offset < text.length && text[offset - 1] === '\r' && text[offset] === '\n'
}

/** Units of `s` in `enc`. */
function unitLength (s, enc) {
  if (enc === 'utf-16') return s.length
  if (enc === 'utf-8') return Buffer.byteLength(s, 'utf8')
  let n = 0
  for (const _ of s) n++ // eslint-disable-line no-unused-vars
  return n
}

/** LSP position of UTF-16 offset `offset`; throws if no position names it. */
function positionOf (text, offset, enc) {
  if (offset < 0 || offset > text.length || splitsSurrogate(text, offset)) {
    throw new Failure(`offset ${offset} is not a character boundary`)
  }
  if (splitsCrlf(text, offset)) throw new Failure(`offset ${offset} is inside a \\r\\n`)
  const starts = lineStarts(text)
  let line = starts.length - 1
  while (starts[line] > offset) line--
  return { line, character: unitLength(text.slice(starts[line], offset), enc) }
}

/** UTF-16 offset of LSP position `pos`; strict: throws a message on a bad one. */
function offsetOf (text, pos, enc) {
  if (!pos || !Number.isInteger(pos.line) || !Number.isInteger(pos.character) || pos.line < 0 || pos.character < 0) {
    throw new Error(`malformed position ${JSON.stringify(pos)}`)
  }
  const starts = lineStarts(text)
  if (pos.line >= starts.length) throw new Error(`line ${pos.line} is past the last line ${starts.length - 1}`)
  const start = starts[pos.line]
  const end = lineContentEnd(text, starts, pos.line)
  let units = 0
  let i = start
  while (i < end) {
    if (units === pos.character) return i
    const cp = text.codePointAt(i)
    const width = cp > 0xffff ? 2 : 1
    units += enc === 'utf-16' ? width : enc === 'utf-8' ? Buffer.byteLength(String.fromCodePoint(cp), 'utf8') : 1
    if (units > pos.character) {
      throw new Error(`${pos.line}:${pos.character} is inside a character (${enc})`)
    }
    i += width
  }
  if (units === pos.character) return end
  throw new Error(`${pos.line}:${pos.character} is past the end of its line (${units} ${enc} units)`)
}

/**
 * Applies LSP text edits (ranges relative to `text`) as VS Code does: sorted
 * by start, then end, then array order; overlapping ones refused. Returns the
 * new text and the contentChanges reporting it (end to start; one merged
 * change if a range could not be named in sequence).
 */
function applyTextEdits (text, edits, enc) {
  const spans = edits.map((e, i) => {
    if (!e || !e.range || typeof e.newText !== 'string') throw new Error(`malformed edit ${i}: ${JSON.stringify(e)}`)
    const start = offsetOf(text, e.range.start, enc)
    const end = offsetOf(text, e.range.end, enc)
    if (end < start) throw new Error(`edit ${i}: range ends before it starts`)
    return { start, end, i, text: e.newText }
  })
  spans.sort((a, b) => a.start - b.start || a.end - b.end || a.i - b.i)
  for (let k = 1; k < spans.length; k++) {
    if (spans[k].start < spans[k - 1].end) throw new Error(`edits ${spans[k - 1].i} and ${spans[k].i} overlap`)
  }
  let out = ''
  let at = 0
  for (const s of spans) {
    out += text.slice(at, s.start) + s.text
    at = s.end
  }
  out += text.slice(at)
  let changes = []
  let working = text
  try {
    for (let k = spans.length - 1; k >= 0; k--) {
      const s = spans[k]
      const range = { start: positionOf(working, s.start, enc), end: positionOf(working, s.end, enc) }
      working = working.slice(0, s.start) + s.text + working.slice(s.end)
      changes.push({ range, text: s.text })
    }
  } catch (e) {
    if (!(e instanceof Failure)) throw e
    const first = spans[0]
    const last = spans[spans.length - 1]
    const newEnd = out.length - (text.length - last.end)
    changes = [{
      range: { start: positionOf(text, first.start, enc), end: positionOf(text, last.end, enc) },
      text: out.slice(first.start, newEnd)
    }]
  }
  return { text: out, changes }
}

// ---------------------------------------------------------------- the editor

let state = null

function summary () {
  const buf = state.buffer
  return {
    text: buf ? buf.text : null,
    version: buf ? buf.version : null,
    applied: state.applied,
    refused: state.refused,
    violations: state.violations.slice(0, 20),
    notifications: state.notificationCounts
  }
}

function violation (what) {
  log('VIOLATION:', what)
  state.violations.push(what)
  return what
}

/** Sends a didChange for the buffer's current version. Synchronous write order. */
function sendDidChange (contentChanges) {
  const buf = state.buffer
  connection.sendNotification(DidChangeTextDocumentNotification.type, {
    textDocument: { uri: buf.uri, version: buf.version },
    contentChanges
  }).catch((e) => fail(`didChange failed: ${e.message}`))
}

/** Handles a workspace/applyEdit synchronously (no await: nothing can interleave). */
function onApplyEdit (params) {
  state.lastApplyEdit = Date.now()
  const refuse = (reason) => {
    state.refused++
    log(`applyEdit refused: ${reason}`)
    return { applied: false, failureReason: reason }
  }
  const edit = params && params.edit
  if (!edit || !Array.isArray(edit.documentChanges)) {
    return refuse(violation(`applyEdit without documentChanges (unversioned): ${JSON.stringify(params)}`))
  }
  const buf = state.buffer
  const plans = []
  for (const change of edit.documentChanges) {
    if (change.kind !== undefined) return refuse(violation(`resource operation (not offered): ${JSON.stringify(change)}`))
    const td = change.textDocument
    if (!td || typeof td.uri !== 'string') return refuse(violation(`TextDocumentEdit without uri: ${JSON.stringify(change)}`))
    if (!Number.isInteger(td.version)) return refuse(violation(`unversioned edit of ${td.uri} (version ${td.version})`))
    if (!Array.isArray(change.edits)) return refuse(violation(`malformed edits: ${JSON.stringify(change)}`))
    if (!buf || td.uri !== buf.uri) return refuse(`document not open: ${td.uri}`)
    if (plans.length > 0) return refuse(violation(`two TextDocumentEdits for ${td.uri} in one applyEdit`))
    if (td.version !== buf.version) return refuse('stale version')
    plans.push(change.edits)
  }
  let echo = null
  for (const edits of plans) {
    if (edits.length === 0) continue // nothing changes: no version bump, no didChange
    let result
    try {
      result = applyTextEdits(buf.text, edits, state.cfg.encoding)
    } catch (e) {
      return refuse(violation(`edit of ${buf.uri} v${buf.version}: ${e.message}`))
    }
    buf.text = result.text
    buf.version++
    echo = result.changes
  }
  state.applied++
  const answer = { applied: true }
  if (echo) {
    if (state.cfg.echoBeforeAnswer) {
      sendDidChange(echo)
    } else {
      // Written right after this very answer object by EchoingWriter.
      state.writer.after.set(answer, { version: buf.version, changes: echo })
    }
  }
  return answer
}

/**
 * A MessageWriter that writes, right after the answer to an applyEdit, the
 * didChange reporting it. vscode-jsonrpc does not tell a handler its request
 * id, but it puts the very object the handler returned into the response, so
 * the echo is keyed by that object. Nothing of ours can be written between
 * the handler's return and its answer (the library writes the answer a
 * microtask later; all our other writes happen in later tasks), so the
 * buffer's versions reach the server in order.
 */
class EchoingWriter {
  constructor (inner) {
    this.inner = inner
    this.after = new WeakMap()
  }

  get onError () { return this.inner.onError }
  get onClose () { return this.inner.onClose }

  write (msg) {
    const p = this.inner.write(msg)
    const echo = msg && msg.method === undefined && msg.result && typeof msg.result === 'object'
      ? this.after.get(msg.result)
      : undefined
    if (echo) {
      const { version, changes } = echo
      this.after.delete(msg.result)
      this.inner.write({
        jsonrpc: '2.0',
        method: DidChangeTextDocumentNotification.method,
        params: { textDocument: { uri: state.buffer.uri, version }, contentChanges: changes }
      }).catch((e) => fail(`didChange failed: ${e.message}`))
    }
    return p
  }

  end () { this.inner.end() }
  dispose () { this.inner.dispose() }
}

/** Replaces `len` code points at code point `at` by `text`, as typing would. */
function localEdit (at, len, text) {
  const buf = state.buffer
  const cps = Array.from(buf.text)
  const start = cps.slice(0, at).join('').length
  const end = start + cps.slice(at, at + len).join('').length
  const range = { start: positionOf(buf.text, start, state.cfg.encoding), end: positionOf(buf.text, end, state.cfg.encoding) }
  buf.text = buf.text.slice(0, start) + text + buf.text.slice(end)
  buf.version++
  sendDidChange([{ range, text }])
}

/** Code point indices where an edit may start or end. */
function editBoundaries (text) {
  const out = []
  let offset = 0
  let index = 0
  for (const ch of text) {
    if (!splitsCrlf(text, offset)) out.push(index)
    offset += ch.length
    index++
  }
  out.push(index)
  return out
}

function randomEdit (rng) {
  const text = state.buffer.text
  const bounds = editBoundaries(text)
  const total = bounds[bounds.length - 1]
  if (total > 0 && rng.below(3) === 0) {
    const at = rng.pick(bounds.slice(0, -1))
    const ends = bounds.filter((b) => b > at && b <= at + 3)
    const end = ends.length ? rng.pick(ends) : total
    localEdit(at, end - at, '')
  } else {
    let snippet = ''
    for (let n = 1 + rng.below(3); n > 0; n--) snippet += rng.pick(SNIPPETS)
    localEdit(rng.pick(bounds), 0, snippet)
  }
}

/** Waits (handling messages) until no applyEdit has come for `quietMs`. */
async function waitNoApplyEdit (quietMs, deadline, what) {
  for (;;) {
    const since = Date.now() - state.lastApplyEdit
    if (since >= quietMs) return
    if (Date.now() >= deadline) throw new Failure(`timed out waiting for ${what}`)
    await sleep(Math.min(quietMs - since, 50))
  }
}

function statusOk (status) {
  return status && typeof status === 'object' && typeof status.state === 'string' &&
    !/error|disconnect|offline|closed|failed|reconnect/i.test(status.state)
}

async function main () {
  const cfg = parseCli()
  const deadline = Date.now() + cfg.timeoutMs
  setTimeout(() => fail(`hard timeout after ${cfg.timeoutMs} ms`), cfg.timeoutMs).unref()
  state = {
    cfg,
    buffer: null,
    applied: 0,
    refused: 0,
    violations: [],
    notificationCounts: {},
    lastApplyEdit: Date.now(),
    writer: null
  }

  const stderr = cfg.stderrFile ? openSync(cfg.stderrFile, 'a') : 'inherit'
  child = spawn(cfg.weft, ['lsp'], {
    stdio: ['pipe', 'pipe', stderr],
    env: { ...process.env, WEFT_NAME: cfg.name, WEFT_LOG: process.env.WEFT_LOG || 'info' }
  })
  child.on('error', (e) => fail(`cannot start ${cfg.weft}: ${e.message}`))
  child.on('exit', (code, signal) => {
    if (!state.shuttingDown) fail(`weft lsp exited early (code ${code}, signal ${signal})`)
  })

  state.writer = new EchoingWriter(new StreamMessageWriter(child.stdin))
  connection = createMessageConnection(new StreamMessageReader(child.stdout), state.writer)
  connection.onError(([error]) => {
    // A malformed message from the server (bad header, non-JSON body): the
    // stream cannot be trusted any more.
    fail(violation(`connection error: ${error && error.message}`))
  })
  connection.onClose(() => { if (!state.shuttingDown) fail('the server closed its output') })

  // Requests from the server. Unregistered ones get MethodNotFound from the library.
  connection.onRequest(ApplyWorkspaceEditRequest.type, onApplyEdit)
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => null)
  connection.onRequest(RegistrationRequest.type, () => null)
  connection.onRequest(UnregistrationRequest.type, () => null)
  connection.onRequest(ConfigurationRequest.type, (params) => (params.items || []).map(() => null))
  connection.onRequest(ShowDocumentRequest.type, () => ({ success: true }))
  // Every notification, counted; messages shown on stderr.
  connection.onNotification((method, params) => {
    state.notificationCounts[method] = (state.notificationCounts[method] || 0) + 1
    if (method === 'window/showMessage' || method === 'weft/connection' || method === 'weft/conflict') {
      log(`${method}: ${JSON.stringify(params)}`)
    }
  })
  connection.listen()

  const init = await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    clientInfo: { name: 'weft-tests lsp-editor.mjs', version: '0' },
    locale: 'en',
    rootUri: null,
    workspaceFolders: null,
    capabilities: {
      general: { positionEncodings: [cfg.encoding] },
      workspace: {
        applyEdit: true,
        workspaceEdit: { documentChanges: true, failureHandling: 'transactional', normalizesLineEndings: false },
        configuration: true,
        workspaceFolders: true
      },
      textDocument: { synchronization: { dynamicRegistration: false, willSave: false, didSave: false } },
      window: { workDoneProgress: true, showMessage: {}, showDocument: { support: true } }
    },
    initializationOptions: { name: cfg.name },
    trace: 'off'
  })
  const chosen = (init && init.capabilities && init.capabilities.positionEncoding) || 'utf-16'
  if (chosen !== cfg.encoding && chosen !== 'utf-16') {
    throw new Failure(`server chose position encoding ${chosen}; offered ${cfg.encoding}`)
  }
  cfg.encoding = chosen
  await connection.sendNotification(InitializedNotification.type, {})

  const joinParams = { link: cfg.link, root: cfg.root }
  if (cfg.password !== undefined) joinParams.password = cfg.password
  const joined = await connection.sendRequest('weft/join', joinParams)
  log(`joined: ${JSON.stringify(joined)}`)

  const uri = cfg.root + '/' + cfg.file.split('/').map(encodeURIComponent).join('/')
  let initial = ''
  try {
    initial = readFileSync(fileURLToPath(uri), 'utf8')
  } catch (e) {
    if (e.code !== 'ENOENT') throw e
  }
  state.buffer = { uri, text: initial, version: 1 }
  state.lastApplyEdit = Date.now()
  await connection.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri, languageId: languageId(uri), version: 1, text: initial }
  })

  // Let the server bring the buffer to the shared text.
  await waitNoApplyEdit(cfg.settleMs, deadline, 'the buffer to settle after opening')
  log(`opened ${uri} v${state.buffer.version}, ${state.buffer.text.length} UTF-16 units`)

  const rng = new Rng(cfg.seed)
  for (let n = 0; n < cfg.edits; n++) {
    if (Date.now() >= deadline) throw new Failure('timed out while typing')
    randomEdit(rng)
    const pause = rng.below(cfg.pauseMs + 1)
    // Even without a pause, yield so incoming messages get handled.
    await (pause > 0 ? sleep(pause) : new Promise((resolve) => setImmediate(resolve)))
  }

  const quiet = async (what) => {
    for (;;) {
      await waitNoApplyEdit(cfg.quietMs, deadline, what)
      const status = await connection.sendRequest('weft/status')
      if (statusOk(status) && Date.now() - state.lastApplyEdit >= cfg.quietMs) return status
      if (Date.now() >= deadline) throw new Failure(`timed out waiting for ${what}; status ${JSON.stringify(status)}`)
      if (!statusOk(status)) await sleep(100)
    }
  }
  await quiet('quiet after typing')
  const buf = state.buffer
  await connection.sendNotification('weft/verify', {
    uri: buf.uri,
    version: buf.version,
    sha256: createHash('sha256').update(buf.text, 'utf8').digest('hex')
  })
  const status = await quiet('quiet after weft/verify')

  if (state.violations.length > 0) {
    throw new Failure(`the server violated the protocol: ${state.violations.slice(0, 5).join('; ')}`)
  }
  const result = { ok: true, ...summary(), uri, encoding: cfg.encoding, joined, status }

  state.shuttingDown = true
  try {
    await Promise.race([connection.sendRequest(ShutdownRequest.type), sleep(5000)])
    await connection.sendNotification(ExitNotification.type)
  } catch (e) {
    log('shutdown failed:', e.message)
  }
  await Promise.race([new Promise((resolve) => child.exitCode !== null ? resolve() : child.on('exit', resolve)), sleep(3000)])
  finish(result)
}

function languageId (uri) {
  const ext = uri.split('.').pop()
  return { rs: 'rust', py: 'python', js: 'javascript', mjs: 'javascript', ts: 'typescript', go: 'go', md: 'markdown' }[ext] || 'plaintext'
}

main().catch((e) => {
  if (!(e instanceof Failure)) log(e && e.stack ? e.stack : e)
  fail(e && e.message ? e.message : e)
})
