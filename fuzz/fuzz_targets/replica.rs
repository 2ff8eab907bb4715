//! Fuzz target `replica`: one editor buffer mirrored by
//! `weft_core::replica::Replica` while the user types, another peer edits
//! the shared text and the hub sends arbitrary bytes.
//!
//! The input (decoded with `arbitrary`) is the buffer's encoding, the
//! editor's and the peer's starting texts, and a script of steps: the user
//! replaces a range (always a valid one, as an editor reports it), the
//! peer edits, raw bytes arrive from the hub, the first sync happens, the
//! editor applies or refuses the edit the replica asks for, the editor's
//! hash is checked. The editor is simulated faithfully: it applies an
//! edit only at the version it was made for and reports what it applied
//! as a `didChange`. Nothing may panic, and once every queued edit has
//! been delivered and the peer and the replica have exchanged their
//! states, the three texts (editor, shared text, peer) are equal and the
//! replica is settled.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ropey::Rope;
use weft_core::CONTENT_TEXT;
use weft_core::positions::{self, Encoding};
use weft_core::replica::{EditRequest, EditorChange, Replica, sha256_hex_of};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact, Update};

#[derive(Debug, Arbitrary)]
struct Script {
    encoding: u8,
    read_only: bool,
    opened: String,
    shared: String,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// The user replaces the chars `from..to` (taken modulo the length) or
    /// the whole buffer.
    Type { from: u16, to: u16, text: String, whole: bool },
    /// The peer replaces chars of the shared text.
    Peer { at: u16, delete: u8, text: String },
    /// Bytes from the hub, as a y-protocols message.
    Hub(Vec<u8>),
    /// The first sync (the hub's step 2 with the peer's state).
    Sync,
    /// The editor answers the edit it was asked for (asking first if none).
    Deliver { apply: bool },
    /// The editor sends its buffer's hash.
    Verify,
    /// The bridge's retry tick.
    Retry,
}

struct Editor {
    text: Rope,
    version: i32,
    enc: Encoding,
    pending: Option<EditRequest>,
}

impl Editor {
    /// Applies `change` to the buffer and returns it as reported.
    fn apply(&mut self, from: usize, to: usize, text: &str) -> EditorChange {
        let (from, to) = (from.min(to), from.max(to));
        let start = positions::to_pos(&self.text, from, self.enc);
        let end = positions::to_pos(&self.text, to, self.enc);
        // As the replica will read them: a position inside a `\r\n` moves.
        let a = positions::to_char(&self.text, start, self.enc).char_index;
        let b = positions::to_char(&self.text, end, self.enc).char_index.max(a);
        self.text.remove(a..b);
        self.text.insert(a, text);
        EditorChange { range: Some((start, end)), text: text.to_owned() }
    }

    /// Applies an edit request if it is for the current version.
    fn answer(&mut self, request: &EditRequest, apply: bool) -> Option<Vec<EditorChange>> {
        if !apply || request.version != self.version {
            return None;
        }
        // From the last range to the first, so earlier ranges stay valid;
        // each reported change is in the text left by the one before.
        let mut changes = Vec::new();
        for (start, end, text) in request.edits.iter().rev() {
            let a = positions::to_char(&self.text, *start, self.enc).char_index;
            let b = positions::to_char(&self.text, *end, self.enc).char_index;
            changes.push(self.apply(a, b, text));
        }
        self.version += 1;
        Some(changes)
    }
}

struct Peer {
    doc: Doc,
    text: TextRef,
}

impl Peer {
    fn new(text: &str) -> Peer {
        let doc = Doc::with_options(Options {
            client_id: yrs::ClientID::new(2),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let text_ref = doc.get_or_insert_text(CONTENT_TEXT);
        text_ref.insert(&mut doc.transact_mut(), 0, text);
        Peer { doc, text: text_ref }
    }

    fn string(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Replaces chars and returns the update.
    fn edit(&self, at: u16, delete: u8, insert: &str) -> Vec<u8> {
        let rope = Rope::from_str(&self.string());
        let from = usize::from(at) % (rope.len_chars() + 1);
        let to = (from + usize::from(delete)).min(rope.len_chars());
        let (a, b) = (positions::char_to_utf16(&rope, from), positions::char_to_utf16(&rope, to));
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            if b > a {
                self.text.remove_range(&mut txn, a, b - a);
            }
            self.text.insert(&mut txn, a, insert);
        }
        self.doc.transact().encode_state_as_update_v1(&before)
    }

    fn apply(&self, update: &[u8]) {
        if let Ok(update) = Update::decode_v1(update) {
            let _ = self.doc.transact_mut().apply_update(update);
        }
    }

    fn state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

fuzz_target!(|script: Script| weft_fuzz::run(|| check(script)));

fn check(script: Script) {
    let enc = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32][usize::from(script.encoding % 3)];
    let mut replica = Replica::new(1, enc, 0, &script.opened);
    replica.set_read_only(script.read_only);
    let mut editor = Editor { text: Rope::from_str(&script.opened), version: 0, enc, pending: None };
    let peer = Peer::new(&script.shared);
    let step2 = |peer: &Peer| Message::Sync(SyncMessage::SyncStep2(peer.state())).encode_v1();

    for step in script.steps.iter().take(64) {
        match step {
            Step::Type { from, to, text, whole } => {
                let len = editor.text.len_chars();
                let change = if *whole {
                    editor.text = Rope::from_str(text);
                    EditorChange { range: None, text: text.clone() }
                } else {
                    editor.apply(usize::from(*from) % (len + 1), usize::from(*to) % (len + 1), text)
                };
                editor.version += 1;
                let _ = replica.did_change(editor.version, &[change]);
            }
            Step::Peer { at, delete, text } => {
                let update = peer.edit(*at, *delete, text);
                if replica.is_synced() {
                    let _ = replica.apply_remote(&update);
                }
            }
            Step::Hub(bytes) => {
                let _ = replica.handle_sync(bytes);
            }
            Step::Sync => {
                if !replica.is_synced() {
                    let _ = replica.handle_sync(&step2(&peer));
                }
            }
            Step::Deliver { apply } => deliver(&mut replica, &mut editor, *apply),
            Step::Verify => {
                if editor.pending.is_none() {
                    editor.pending = replica.verify(editor.version, &sha256_hex_of(&editor.text));
                }
            }
            Step::Retry => {
                replica.retry();
            }
        }
        for update in replica.take_updates() {
            peer.apply(&update);
        }
        replica.take_notices();
    }

    // Settle: sync if not yet, exchange whole states, deliver every edit.
    if !replica.is_synced() {
        let _ = replica.handle_sync(&step2(&peer));
    }
    for update in replica.take_updates() {
        peer.apply(&update);
    }
    peer.apply(&replica.encode_state());
    replica.apply_remote(&peer.state()).expect("the peer's state applies");
    for _ in 0..32 {
        if editor.pending.is_none() {
            replica.retry();
            editor.pending = replica.poll_edit();
        }
        if editor.pending.is_none() {
            break;
        }
        deliver(&mut replica, &mut editor, true);
        for update in replica.take_updates() {
            peer.apply(&update);
        }
    }
    let editor_text = editor.text.to_string();
    assert!(replica.is_settled(), "not settled: {replica:?}");
    assert_eq!(editor_text, replica.editor_text(), "the replica lost track of the editor");
    assert_eq!(editor_text, replica.shared_text(), "the editor and the shared text differ");
    assert_eq!(peer.string(), replica.shared_text(), "the peer and the shared text differ");
    assert_eq!(replica.verify(editor.version, &sha256_hex_of(&editor.text)), None);
}

/// The editor answers the pending edit (asking for one first if none).
fn deliver(replica: &mut Replica, editor: &mut Editor, apply: bool) {
    if editor.pending.is_none() {
        editor.pending = replica.poll_edit();
    }
    let Some(request) = editor.pending.take() else { return };
    match editor.answer(&request, apply) {
        Some(changes) => {
            let _ = replica.did_change(editor.version, &changes);
            let _ = replica.edit_answered(request.id, true);
        }
        None => {
            let _ = replica.edit_answered(request.id, false);
        }
    }
}
