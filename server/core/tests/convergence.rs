//! The convergence property: N simulated editors type at random while
//! remote edits arrive; edits to the editors are delivered late, reordered
//! with the editors' own changes, or refused as stale; echoes come back
//! split, merged or as whole-document changes. At the end every editor
//! buffer, every bridge replica and the hub's document are identical, and
//! (in the insert-only variant) every keystroke is there exactly once.
//!
//! The editors here convert positions with their own naive code, not with
//! `weft_core::positions`, so the two check each other. Each case is a
//! seeded plan; a failure prints the seed (`WEFT_SEED=... cargo test`
//! replays it). `WEFT_CONVERGENCE_CASES` raises the case count for a long run.

use std::collections::VecDeque;

use weft_core::SharedDoc;
use weft_core::positions::{Encoding, LineEnding, Pos};
use weft_core::replica::{EditRequest, EditorChange, Replica};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, Text, Transact};

/// xorshift64*: small, seedable, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// What the users type. A lone `\r` (mixed line endings) typed right before
/// a `\n` makes two line breaks one, and the place between them has no
/// LSP position (tests/line_breaks.rs has the fixed cases).
const SNIPPETS: &[&str] =
    &["a", "fn x() {}", "\n", "🦀", "日本語", "e\u{301}", "👩‍💻", "\r\n", "  ", "𝕏y", "\tq", "line1\nline2\n", "\r"];

/// LSP position of char `index` in `text`, computed naively.
fn naive_pos(text: &[char], index: usize, enc: Encoding) -> Pos {
    let mut line = 0;
    let mut line_start = 0;
    let mut i = 0;
    while i < index {
        let c = text[i];
        if c == '\n' || (c == '\r' && text.get(i + 1) != Some(&'\n')) {
            line += 1;
            line_start = i + 1;
        }
        i += 1;
    }
    let character: usize = text[line_start..index]
        .iter()
        .map(|c| match enc {
            Encoding::Utf8 => c.len_utf8(),
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf32 => 1,
        })
        .sum();
    Pos { line: line as u32, character: character as u32 }
}

/// Char index of an LSP position, naively (positions are assumed valid).
fn naive_index(text: &[char], pos: Pos, enc: Encoding) -> usize {
    let len = text.len();
    let mut i = 0;
    let mut line = 0;
    while line < pos.line && i < len {
        let c = text[i];
        i += 1;
        if c == '\n' || (c == '\r' && text.get(i) != Some(&'\n')) {
            line += 1;
        }
    }
    let mut units = 0;
    while units < pos.character as usize && i < len && text[i] != '\n' && text[i] != '\r' {
        units += match enc {
            Encoding::Utf8 => text[i].len_utf8(),
            Encoding::Utf16 => text[i].len_utf16(),
            Encoding::Utf32 => 1,
        };
        i += 1;
    }
    i
}

enum ToBridge {
    Change(i32, Vec<EditorChange>),
    Answer(u64, bool),
    /// `weft/verify`: the editor's version and the hash of its buffer.
    Verify(i32, String),
}

struct Editor {
    text: Vec<char>,
    /// Set for an editor that keeps one line ending per buffer and rewrites
    /// every line break it is given (VS Code): on open, in the user's
    /// typing and in the edits it applies.
    eol: Option<LineEnding>,
    version: i32,
    enc: Encoding,
    inbox: VecDeque<EditRequest>,
}

struct Peer {
    editor: Editor,
    bridge: Replica,
    to_bridge: VecDeque<ToBridge>,
    to_hub: VecDeque<Vec<u8>>,
    from_hub: VecDeque<Vec<u8>>,
    online: bool,
    /// Whether `corrupt` ever touched this editor's buffer: only then may
    /// `weft/verify` find a mismatch.
    corrupted: bool,
}

struct Sim {
    rng: Rng,
    hub: SharedDoc,
    peers: Vec<Peer>,
    inserts_only: bool,
    corruption: bool,
    next_token: u32,
    tokens: Vec<char>,
    /// Mismatches `weft/verify` found in buffers that were never corrupted:
    /// the bridge lost track of its editor (repairs hide that otherwise).
    unexplained_repairs: Vec<String>,
}

impl Editor {
    /// Applies an LSP-style edit (range in this editor's encoding) and
    /// returns the change as the editor would report it.
    fn apply(&mut self, start: usize, end: usize, text: &str) -> EditorChange {
        let text = &match self.eol {
            Some(eol) => eol.normalize(text),
            None => text.to_owned(),
        };
        let range = (naive_pos(&self.text, start, self.enc), naive_pos(&self.text, end, self.enc));
        self.text.splice(start..end, text.chars());
        EditorChange { range: Some(range), text: text.to_owned() }
    }
}

impl Sim {
    fn new(seed: u64, n: usize, inserts_only: bool) -> Sim {
        let mut rng = Rng(seed.max(1));
        let mut peers = Vec::new();
        for i in 0..n {
            let enc = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32][rng.below(3)];
            // The first editor opens the file with content; others with
            // nothing, the same content, the same but for a line ending (a
            // lone \r where the first has \r\n: whichever is shared first,
            // the other editor gets an edit next to that \r), or something
            // different.
            let initial = match (i, rng.below(4)) {
                (0, _) => "fn main() {\r\n    🦀\n}\n".to_owned(),
                (_, 0) => String::new(),
                (_, 1) => "fn main() {\r\n    🦀\n}\n".to_owned(),
                (_, 2) => "fn main() {\r    🦀\n}\n".to_owned(),
                _ => "other 日本\n".to_owned(),
            };
            let eol = [None, None, Some(LineEnding::Lf), Some(LineEnding::CrLf)][rng.below(4)];
            let initial = match eol {
                Some(eol) => eol.normalize(&initial),
                None => initial,
            };
            let bridge = Replica::new(1000 + i as u64, enc, 0, &initial).with_line_ending(eol);
            let editor = Editor { text: initial.chars().collect(), eol, version: 0, enc, inbox: VecDeque::new() };
            let mut peer = Peer {
                editor,
                bridge,
                to_bridge: VecDeque::new(),
                to_hub: VecDeque::new(),
                from_hub: VecDeque::new(),
                online: true,
                corrupted: false,
            };
            peer.to_hub.push_back(peer.bridge.step1());
            peers.push(peer);
        }
        Sim {
            rng,
            hub: SharedDoc::new(1),
            peers,
            inserts_only,
            corruption: !inserts_only,
            next_token: 0,
            tokens: Vec::new(),
            unexplained_repairs: Vec::new(),
        }
    }

    fn after_bridge_input(&mut self, p: usize) {
        let peer = &mut self.peers[p];
        for update in peer.bridge.take_updates() {
            peer.to_hub.push_back(Message::Sync(SyncMessage::Update(update)).encode_v1());
        }
        if let Some(req) = peer.bridge.poll_edit() {
            if std::env::var("WEFT_DEBUG").is_ok() {
                eprintln!("p{p} edit #{} v{} ({} ranges)", req.id, req.version, req.edits.len());
            }
            peer.editor.inbox.push_back(req);
        }
        for n in peer.bridge.take_notices() {
            if std::env::var("WEFT_DEBUG").is_ok() {
                eprintln!("peer {p}: {n:?}");
            }
        }
    }

    fn type_something(&mut self, p: usize) {
        let mut changes = Vec::new();
        let edits = 1 + usize::from(self.rng.chance(20));
        for _ in 0..edits {
            let len = self.peers[p].editor.text.len();
            let (start, end, text) = if self.inserts_only {
                let token = char::from_u32(0x4E00 + self.next_token).unwrap_or('?');
                self.next_token += 1;
                self.tokens.push(token);
                let at = self.rng.below(len + 1);
                (at, at, token.to_string())
            } else {
                let at = self.rng.below(len + 1);
                let del = if self.rng.chance(35) { self.rng.below(6).min(len - at) } else { 0 };
                let text = if del > 0 && self.rng.chance(40) {
                    String::new()
                } else {
                    SNIPPETS[self.rng.below(SNIPPETS.len())].to_owned()
                };
                (at, at + del, text)
            };
            // Never split a \r\n: editors cannot place a cursor inside one.
            let ed = &self.peers[p].editor.text;
            let fix = |i: usize| if i > 0 && i < ed.len() && ed[i - 1] == '\r' && ed[i] == '\n' { i - 1 } else { i };
            let (start, end) = (fix(start), fix(end).max(fix(start)));
            changes.push(self.peers[p].editor.apply(start, end, &text));
        }
        let peer = &mut self.peers[p];
        peer.editor.version += 1;
        peer.to_bridge.push_back(ToBridge::Change(peer.editor.version, changes));
    }

    /// The editor takes the next edit from its bridge, like VS Code would.
    fn editor_takes_edit(&mut self, p: usize) {
        let Some(req) = self.peers[p].editor.inbox.pop_front() else { return };
        let style = self.rng.below(3);
        let answer_first = self.rng.chance(30);
        let editor = &mut self.peers[p].editor;
        if req.version != editor.version {
            self.peers[p].to_bridge.push_back(ToBridge::Answer(req.id, false));
            return;
        }
        let before = editor.text.clone();
        // Resolve every range against the text before the edit, then apply
        // from the end (LSP semantics).
        let resolved: Vec<(usize, usize, String)> = req
            .edits
            .iter()
            .map(|(s, e, t)| (naive_index(&before, *s, editor.enc), naive_index(&before, *e, editor.enc), t.clone()))
            .collect();
        let mut reported = Vec::new();
        for (s, e, t) in resolved.iter().rev() {
            reported.push(editor.apply(*s, *e, t));
        }
        let changes = match style {
            // One change per edit, from the end (as applied).
            0 => reported,
            // Merged into one change over the whole touched region.
            1 => {
                let lo = resolved.first().map_or(0, |r| r.0);
                let hi = resolved.last().map_or(0, |r| r.1);
                let new_hi = hi + editor.text.len() - before.len();
                let text: String = editor.text[lo..new_hi].iter().collect();
                vec![EditorChange {
                    range: Some((naive_pos(&before, lo, editor.enc), naive_pos(&before, hi, editor.enc))),
                    text,
                }]
            }
            // The whole document.
            _ => vec![EditorChange { range: None, text: editor.text.iter().collect() }],
        };
        editor.version += 1;
        let version = editor.version;
        let q = &mut self.peers[p].to_bridge;
        if answer_first {
            q.push_back(ToBridge::Answer(req.id, true));
            q.push_back(ToBridge::Change(version, changes));
        } else {
            q.push_back(ToBridge::Change(version, changes));
            q.push_back(ToBridge::Answer(req.id, true));
        }
    }

    fn bridge_takes_editor_message(&mut self, p: usize) {
        let Some(msg) = self.peers[p].to_bridge.pop_front() else { return };
        let bridge = &mut self.peers[p].bridge;
        match msg {
            ToBridge::Change(version, changes) => {
                if std::env::var("WEFT_DEBUG").is_ok() {
                    eprintln!(
                        "p{p} change v{version} ({} changes) {bridge:?} settled {}",
                        changes.len(),
                        bridge.is_settled()
                    );
                }
                bridge.did_change(version, &changes).expect("did_change")
            }
            ToBridge::Answer(id, applied) => {
                if std::env::var("WEFT_DEBUG").is_ok() {
                    eprintln!("p{p} answer #{id} {applied}");
                }
                bridge.edit_answered(id, applied).expect("answer")
            }
            ToBridge::Verify(version, hash) => {
                if std::env::var("WEFT_DEBUG").is_ok() {
                    eprintln!(
                        "verify p{p} editor v{version} bridge v{} settled {}",
                        bridge.version(),
                        bridge.is_settled()
                    );
                }
                if let Some(repair) = bridge.verify(version, &hash) {
                    if !self.peers[p].corrupted {
                        let editor: String = self.peers[p].editor.text.iter().collect();
                        let shadow = self.peers[p].bridge.editor_text();
                        self.unexplained_repairs
                            .push(format!("peer {p} at v{version}: editor {editor:?}, shadow {shadow:?}"));
                    }
                    self.peers[p].editor.inbox.push_back(repair);
                }
            }
        }
        self.after_bridge_input(p);
    }

    fn hub_takes(&mut self, p: usize) {
        if !self.peers[p].online {
            return;
        }
        let Some(msg) = self.peers[p].to_hub.pop_front() else { return };
        if std::env::var("WEFT_DEBUG").is_ok() {
            eprintln!("HUB TAKES from p{p}: {}", dbg_msg(&msg));
        }
        let out = self.hub.handle(&msg, true).expect("hub handle");
        for reply in out.reply {
            self.peers[p].from_hub.push_back(reply);
        }
        for delta in out.deltas {
            let msg = Message::Sync(SyncMessage::Update(delta)).encode_v1();
            for (q, peer) in self.peers.iter_mut().enumerate() {
                if q != p && peer.online {
                    peer.from_hub.push_back(msg.clone());
                }
            }
        }
    }

    fn bridge_takes_hub_message(&mut self, p: usize) {
        let Some(msg) = self.peers[p].from_hub.pop_front() else { return };
        if std::env::var("WEFT_DEBUG").is_ok() {
            eprintln!("p{p} TAKES from hub: {}", dbg_msg(&msg));
        }
        let replies = self.peers[p].bridge.handle_sync(&msg).expect("handle_sync");
        self.peers[p].to_hub.extend(replies);
        self.after_bridge_input(p);
    }

    /// Disconnects a peer (its queues to and from the hub are lost) or
    /// reconnects it with a fresh sync, as the real bridge does.
    fn toggle_online(&mut self, p: usize) {
        let peer = &mut self.peers[p];
        if peer.online {
            peer.online = false;
            peer.to_hub.clear();
            peer.from_hub.clear();
        } else {
            peer.online = true;
            peer.to_hub.push_back(peer.bridge.step1());
            // The hub's own step 1 makes the bridge send what it lacks.
            peer.from_hub.push_back(self.hub.step1());
        }
    }

    /// The editor's buffer silently loses a character (a buggy editor or
    /// extension): only `weft/verify` can notice.
    fn corrupt(&mut self, p: usize) {
        self.peers[p].corrupted = true;
        let text = &mut self.peers[p].editor.text;
        if !text.is_empty() {
            let at = self.rng.below(text.len());
            text.remove(at);
        }
    }

    fn send_verify(&mut self, p: usize) {
        let editor = &self.peers[p].editor;
        let text: String = editor.text.iter().collect();
        let hash = weft_core::replica::sha256_hex_of(&ropey::Rope::from_str(&text));
        let version = editor.version;
        self.peers[p].to_bridge.push_back(ToBridge::Verify(version, hash));
    }

    fn step(&mut self, typing: bool) {
        let p = self.rng.below(self.peers.len());
        match self.rng.below(100) {
            0..=24 if typing => self.type_something(p),
            0 if !typing => self.send_verify(p),
            25..=39 => self.editor_takes_edit(p),
            40..=59 => self.bridge_takes_editor_message(p),
            60..=74 => self.hub_takes(p),
            75..=94 => self.bridge_takes_hub_message(p),
            95 if typing => self.toggle_online(p),
            96 if typing && self.corruption => self.corrupt(p),
            97 => self.send_verify(p),
            _ => {
                self.peers[p].bridge.retry();
                self.after_bridge_input(p);
            }
        }
    }

    fn quiet(&self) -> bool {
        self.peers.iter().all(|p| {
            p.online
                && p.to_bridge.is_empty()
                && p.to_hub.is_empty()
                && p.from_hub.is_empty()
                && p.editor.inbox.is_empty()
                && p.bridge.is_settled()
        })
    }

    fn hub_text(&self) -> String {
        let doc = self.hub.doc();
        let text = doc.get_or_insert_text("content");
        text.get_string(&doc.transact())
    }
}

fn run_case(seed: u64, peers: usize, steps: usize, inserts_only: bool) -> Result<(), String> {
    let mut sim = Sim::new(seed, peers, inserts_only);
    for _ in 0..steps {
        sim.step(true);
    }
    for p in 0..sim.peers.len() {
        if !sim.peers[p].online {
            sim.toggle_online(p);
        }
    }
    let mut rounds = 0;
    loop {
        while !sim.quiet() {
            rounds += 1;
            if rounds > 200_000 {
                let states: Vec<_> = sim.peers.iter().map(|p| &p.bridge).collect();
                return Err(format!("no quiescence; states: {states:?}"));
            }
            // An editor and its bridge rewriting each other's text grow it
            // without end (line breaks rewritten and sent back, say).
            if rounds % 100 == 0
                && (sim.hub_text().len() > 1 << 20 || sim.peers.iter().any(|p| p.editor.text.len() > 1 << 20))
            {
                return Err(format!("the shared text grew past 1 MiB after {rounds} rounds without typing"));
            }
            sim.step(false);
        }
        // Quiet: every editor verifies its buffer, as extensions do when idle.
        for p in 0..sim.peers.len() {
            sim.send_verify(p);
            sim.bridge_takes_editor_message(p);
        }
        if sim.quiet() {
            break;
        }
    }
    if let Some(first) = sim.unexplained_repairs.first() {
        return Err(format!(
            "{} repairs of buffers that were never corrupted; the first: {first}",
            sim.unexplained_repairs.len()
        ));
    }
    let hub = sim.hub_text();
    for (i, peer) in sim.peers.iter().enumerate() {
        let editor: String = peer.editor.text.iter().collect();
        let shadow = peer.bridge.editor_text();
        let shared = peer.bridge.shared_text();
        // An editor that rewrites line breaks is shown them translated.
        let shown = match peer.editor.eol {
            Some(eol) => eol.normalize(&hub),
            None => hub.clone(),
        };
        if editor != shown || shadow != shown || shared != hub {
            return Err(format!(
                "peer {i} diverged:\n  hub    {hub:?}\n  editor {editor:?}\n  shadow {shadow:?}\n  shared {shared:?}\n  \
                 state vectors (equal ones with different texts: one id names two blocks): hub {:?}, peer {:?}",
                sim.hub.doc().transact().state_vector(),
                peer.bridge.doc().transact().state_vector(),
            ));
        }
    }
    if inserts_only {
        for token in &sim.tokens {
            let n = hub.chars().filter(|c| c == token).count();
            if n != 1 {
                return Err(format!("keystroke {token:?} appears {n} times in {hub:?}"));
            }
        }
    }
    Ok(())
}

/// A y-protocols message for `WEFT_DEBUG` traces.
fn dbg_msg(msg: &[u8]) -> String {
    use yrs::sync::MessageReader;
    use yrs::updates::decoder::{Decode, DecoderV1};
    let mut d = DecoderV1::new(yrs::encoding::read::Cursor::new(msg));
    let mut out = String::new();
    for m in MessageReader::new(&mut d) {
        match m {
            Ok(Message::Sync(SyncMessage::SyncStep1(sv))) => out += &format!("step1 {sv:?}; "),
            Ok(Message::Sync(SyncMessage::SyncStep2(b))) => {
                out += &format!("step2 {:?}; ", yrs::Update::decode_v1(&b).map(|u| format!("{u:?}")))
            }
            Ok(Message::Sync(SyncMessage::Update(b))) => {
                out += &format!("update {:?}; ", yrs::Update::decode_v1(&b).map(|u| format!("{u:?}")))
            }
            other => out += &format!("{other:?}; "),
        }
    }
    out
}

fn cases() -> u64 {
    std::env::var("WEFT_CONVERGENCE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1500)
}

fn base_seed() -> u64 {
    std::env::var("WEFT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

fn run_many(name: &str, peers: usize, steps: usize, inserts_only: bool) {
    let base = base_seed();
    let n = if std::env::var("WEFT_SEED").is_ok() { 1 } else { cases() };
    eprintln!("{name}: base seed {base}, {n} cases");
    for i in 0..n {
        let seed = base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let outcome = std::panic::catch_unwind(|| run_case(seed, peers, steps, inserts_only));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => panic!("{name} failed; replay with WEFT_SEED={seed}\n{err}"),
            Err(_) => panic!("{name} panicked; replay with WEFT_SEED={seed}"),
        }
    }
}

/// yrs' own handling of updates that arrive before what they build on
/// gave peer 0 a block under another block's id here (weft_core::held).
#[test]
fn a_case_that_diverged_inside_yrs_converges() {
    run_case(15724946651296268971, 3, 120, true).expect("converges");
}

#[test]
fn editors_bridges_and_hub_converge() {
    run_many("converge", 3, 120, false);
}

#[test]
fn no_keystroke_is_lost_or_duplicated() {
    run_many("keystrokes", 3, 120, true);
}

#[test]
fn a_fixed_scenario_round_trips_multibyte_text() {
    // Two editors, deterministic: A types, B receives it as one edit.
    let mut a = Replica::new(1, Encoding::Utf16, 0, "");
    let mut b = Replica::new(2, Encoding::Utf8, 0, "");
    a.mark_synced().expect("sync");
    b.mark_synced().expect("sync");
    a.did_change(
        1,
        &[EditorChange {
            range: Some((Pos { line: 0, character: 0 }, Pos { line: 0, character: 0 })),
            text: "a🦀\r\nb".into(),
        }],
    )
    .expect("change");
    for u in a.take_updates() {
        b.apply_remote(&u).expect("remote");
    }
    let req = b.poll_edit().expect("an edit for b");
    assert_eq!(req.version, 0);
    assert_eq!(req.edits, vec![(Pos { line: 0, character: 0 }, Pos { line: 0, character: 0 }, "a🦀\r\nb".into())]);
    // B's editor applies it and echoes it back: nothing goes to the CRDT.
    b.did_change(1, &[EditorChange { range: req.edits.first().map(|e| (e.0, e.1)), text: "a🦀\r\nb".into() }])
        .expect("echo");
    b.edit_answered(req.id, true).expect("answer");
    assert!(b.take_updates().is_empty(), "an echo must not become a new edit");
    assert!(b.is_settled());
    // B types after the crab: UTF-8 column 5.
    b.did_change(
        2,
        &[EditorChange {
            range: Some((Pos { line: 0, character: 5 }, Pos { line: 0, character: 5 })),
            text: "!".into(),
        }],
    )
    .expect("type");
    for u in b.take_updates() {
        a.apply_remote(&u).expect("remote");
    }
    assert_eq!(a.shared_text(), "a🦀!\r\nb");
    let req = a.poll_edit().expect("edit for a");
    // UTF-16 column of the insertion point: a (1) + crab (2) = 3.
    assert_eq!(req.edits, vec![(Pos { line: 0, character: 3 }, Pos { line: 0, character: 3 }, "!".into())]);
    let text = a.doc().get_or_insert_text("content");
    assert_eq!(text.len(&a.doc().transact()), 7, "yrs counts UTF-16 units");
}

#[test]
fn a_delete_and_retype_reaching_an_editor_in_one_edit_is_not_applied_twice() {
    // Found by the trace benchmark: A deletes "b", retypes it and types "!";
    // B's editor gets all of it in one applyEdit and echoes it end to start.
    let change = |range: ((u32, u32), (u32, u32)), text: &str| EditorChange {
        range: Some((Pos { line: range.0.0, character: range.0.1 }, Pos { line: range.1.0, character: range.1.1 })),
        text: text.to_owned(),
    };
    let mut a = Replica::new(1, Encoding::Utf16, 0, "ab z");
    let mut b = Replica::new(2, Encoding::Utf16, 0, "");
    a.mark_synced().expect("sync");
    b.mark_synced().expect("sync");
    for u in a.take_updates() {
        b.apply_remote(&u).expect("remote");
    }
    let first = b.poll_edit().expect("initial text");
    b.did_change(1, &[change(((0, 0), (0, 0)), "ab z")]).expect("echo");
    b.edit_answered(first.id, true).expect("answer");
    a.did_change(1, &[change(((0, 1), (0, 2)), "")]).expect("delete b");
    a.did_change(2, &[change(((0, 1), (0, 1)), "b")]).expect("retype b");
    a.did_change(3, &[change(((0, 4), (0, 4)), "!")]).expect("type !");
    for u in a.take_updates() {
        b.apply_remote(&u).expect("remote");
    }
    let edit = b.poll_edit().expect("the batch");
    assert!(
        edit.edits.iter().all(|(s, e, t)| !(s.character == 1 && e.character == 2 && t == "b")),
        "no-op sent: {edit:?}"
    );
    // B's editor applies it and reports it end to start.
    let echo: Vec<EditorChange> =
        edit.edits.iter().rev().map(|(s, e, t)| EditorChange { range: Some((*s, *e)), text: t.clone() }).collect();
    b.did_change(2, &echo).expect("echo");
    b.edit_answered(edit.id, true).expect("answer");
    assert!(b.take_updates().is_empty(), "the echo must not become B's own edit");
    assert_eq!(b.editor_text(), "ab z!");
    // A deletes "b" again; both end at "a z!".
    a.did_change(4, &[change(((0, 1), (0, 2)), "")]).expect("delete again");
    for u in a.take_updates() {
        b.apply_remote(&u).expect("remote");
    }
    assert_eq!(b.shared_text(), "a z!");
    assert_eq!(a.shared_text(), "a z!");
    // An echo reported as a no-op change after the real one is consumed too.
    let mut c = Replica::new(3, Encoding::Utf16, 0, "xy");
    c.mark_synced().expect("sync");
    let mut d = Replica::new(4, Encoding::Utf16, 0, "");
    d.mark_synced().expect("sync");
    for u in c.take_updates() {
        d.apply_remote(&u).expect("remote");
    }
    let first = d.poll_edit().expect("text");
    d.did_change(1, &[change(((0, 0), (0, 0)), "xy")]).expect("echo");
    d.edit_answered(first.id, true).expect("answer");
    c.did_change(1, &[change(((0, 2), (0, 2)), "!")]).expect("type");
    for u in c.take_updates() {
        d.apply_remote(&u).expect("remote");
    }
    let edit = d.poll_edit().expect("edit");
    d.did_change(2, &[change(((0, 2), (0, 2)), "!"), change(((0, 0), (0, 1)), "x")]).expect("echo with a no-op");
    d.edit_answered(edit.id, true).expect("answer");
    assert!(d.take_updates().is_empty(), "a trailing no-op in the echo must not become an edit");
    assert!(d.is_settled());
}
