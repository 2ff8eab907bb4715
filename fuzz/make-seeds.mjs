// Writes the seed corpus of the fuzz targets (fuzz/corpus/*/seed-*):
// real frames encoded by stock yjs + y-protocols (as a client sends them),
// cut and broken variants, and first frames, doc ids and links.
// Run after `npm ci --prefix tests/js`:  node fuzz/make-seeds.mjs
// Other seed-regression-* files are inputs the fuzzer found, kept as found.
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const require = createRequire(new URL('../tests/js/package.json', import.meta.url));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const Y = await load('yjs');
const encoding = await load('lib0/encoding');
const syncProtocol = await load('y-protocols/sync');
const awarenessProtocol = await load('y-protocols/awareness');

const corpus = new URL('./corpus/', import.meta.url);
function seed(target, name, bytes) {
  const dir = new URL(`${target}/`, corpus);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL(`seed-${name}`, dir), bytes);
}

// frame = varString(doc id) + y-protocols message(s)
function frame(docId, ...messages) {
  const enc = encoding.createEncoder();
  encoding.writeVarString(enc, docId);
  for (const m of messages) encoding.writeUint8Array(enc, m);
  return encoding.toUint8Array(enc);
}
function msg(write) {
  const enc = encoding.createEncoder();
  write(enc);
  return encoding.toUint8Array(enc);
}
const step1 = (doc) => msg((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep1(e, doc); });
const step2 = (doc, sv) => msg((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeSyncStep2(e, doc, sv); });
const update = (u) => msg((e) => { encoding.writeVarUint(e, 0); syncProtocol.writeUpdate(e, u); });
const awareness = (aw, clients) => msg((e) => {
  encoding.writeVarUint(e, 1);
  encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(aw, clients));
});

const FILE = 'src/main.rs';

// A text typed by two clients, with deletions and multi-byte characters.
const a = new Y.Doc(); a.clientID = 7;
const b = new Y.Doc(); b.clientID = 9;
a.getText('content').insert(0, 'fn main() {\n    println!("héllo 🌍");\n}\n');
Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
const svBefore = Y.encodeStateVector(b);
b.getText('content').delete(3, 4);
b.getText('content').insert(3, 'start');
const bIncrement = Y.encodeStateAsUpdate(b, svBefore);
a.getText('content').format(0, 2, { bold: true });

seed('frame', 'step1-empty', frame(FILE, step1(new Y.Doc())));
seed('frame', 'step1-known', frame(FILE, step1(a)));
seed('frame', 'update-text', frame(FILE, update(Y.encodeStateAsUpdate(a))));
seed('frame', 'update-gap', frame(FILE, update(bIncrement))); // depends on a's text
seed('frame', 'step2-two-clients', frame(FILE, step2(b, new Uint8Array([0]))));
seed('frame', 'update-then-step1', frame('docs/ünï code.md', update(Y.encodeStateAsUpdate(b)), step1(b)));

// The session document: maps, arrays, nested types.
const s = new Y.Doc(); s.clientID = 3;
const files = s.getMap('files');
const entry = new Y.Map();
files.set('src/main.rs', entry);
entry.set('kind', 'file');
entry.set('size', 42);
s.getArray('chat').push([{ from: 'Ada', text: 'hi', at: 1700000000 }, 'plain', 3.5, null, true]);
files.delete('src/main.rs');
seed('frame', 'session-doc', frame('_session', update(Y.encodeStateAsUpdate(s))));

// Awareness: a state, then its removal; a query.
const aw = new awarenessProtocol.Awareness(new Y.Doc());
aw.setLocalState({ user: { name: 'Ada', color: '#ff0000' }, cursor: { anchor: 1, head: 4 } });
seed('frame', 'awareness', frame(FILE, awareness(aw, [aw.clientID])));
aw.setLocalState(null);
seed('frame', 'awareness-removed', frame(FILE, awareness(aw, [aw.clientID])));
seed('frame', 'query-awareness', frame(FILE, new Uint8Array([3])));

// Broken ones.
const full = frame(FILE, update(Y.encodeStateAsUpdate(b)));
seed('frame', 'truncated-update', full.slice(0, Math.floor(full.length / 2)));
seed('frame', 'bad-sync-type', frame(FILE, new Uint8Array([0, 9])));
seed('frame', 'auth-message', frame(FILE, new Uint8Array([2, 0, 6, 0x64, 0x65, 0x6e, 0x69, 0x65, 0x64])));
seed('frame', 'bad-doc-id', frame('../etc/passwd', step1(a)));
seed('frame', 'no-message', frame(FILE));
seed('frame', 'prefix-too-long', new Uint8Array([0xff, 0xff, 0x03, 0x61]));
// Regression: a client id of 2^53 (yrs asserts ids fit in 53 bits) in a
// sync step 1's state vector; the same id in an update or an awareness
// message trips the same assertion.
seed('frame', 'regression-client-id-2pow53',
  frame('a', new Uint8Array([0, 0, 10, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0])));

// First frames, control frames, doc ids and links (one target: `auth`).
const text = (name, s) => seed('auth', name, new TextEncoder().encode(s));
text('auth-valid', '{"type":"auth","token":"tok-en","name":"Ada","protocol":1}');
text('auth-full', '{"type":"auth","token":"t","password":"pw","name":"  Bot 🤖 ","kind":"agent","protocol":1,"client":"c-42"}');
text('auth-old-protocol', '{"type":"auth","token":"t","name":"Ada","protocol":0}');
text('auth-bad-name', '{"type":"auth","token":"t","name":"a\\u0007b","protocol":1}');
text('auth-extra-field', '{"type":"auth","token":"t","name":"A","protocol":1,"admin":true}');
text('auth-truncated', '{"type":"auth","token":"t","na');
text('unsubscribe', '{"type":"unsubscribe","doc":"src/lib.rs"}');
text('unsubscribe-escape', '{"type":"unsubscribe","doc":"a/../../b"}');
text('doc-id', 'src/ünï/main.rs');
text('doc-id-session', '_session');
text('doc-id-dots', 'a/./b//c\\d');
text('link', 'weft://127.0.0.1:7420/s/abc_D-1#tok-en');
text('link-tls-v6', 'weft+tls://[::1]:443/s/abc#t');
text('link-bad', 'weft://u:p@h:99999/s/..#');
aw.destroy(); // stops its renewal timer, so node exits
