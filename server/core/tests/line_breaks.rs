//! Mixed line endings between an editor and the shared text: a lone `\r`
//! right before a `\n` makes two line breaks one (`\r\n`), and the place
//! between that `\r` and `\n` has no LSP position. The replica must never
//! ask the editor for an edit that starts or ends there (the `replica` fuzz
//! target found it did: fuzz/corpus/replica/seed-regression-*).
//!
//! The editor here resolves positions with its own code, the way VS Code
//! does (lines end at `\n`, `\r\n` or `\r`; a `character` past a line's
//! content means its end, before the line break), not with
//! `weft_core::positions`, so the two check each other.

use weft_core::positions::{Encoding, LineEnding, Pos};
use weft_core::replica::{EditorChange, Replica};
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Text, Transact, Update};

const ALL: [Encoding; 3] = [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32];

fn units(c: char, enc: Encoding) -> usize {
    match enc {
        Encoding::Utf8 => c.len_utf8(),
        Encoding::Utf16 => c.len_utf16(),
        Encoding::Utf32 => 1,
    }
}

/// Char index of an LSP position in `text`, clamped like VS Code does.
fn resolve(text: &[char], pos: Pos, enc: Encoding) -> usize {
    let mut i = 0;
    for _ in 0..pos.line {
        while i < text.len() && text[i] != '\n' && text[i] != '\r' {
            i += 1;
        }
        if i == text.len() {
            return i;
        }
        i += if text[i] == '\r' && text.get(i + 1) == Some(&'\n') { 2 } else { 1 };
    }
    let mut left = pos.character as usize;
    while left > 0 && i < text.len() && text[i] != '\n' && text[i] != '\r' {
        left = left.saturating_sub(units(text[i], enc));
        i += 1;
    }
    i
}

/// The LSP position of char `index` of `text` (never inside a `\r\n`).
fn position(text: &[char], index: usize, enc: Encoding) -> Pos {
    assert!(
        !(index > 0 && index < text.len() && text[index - 1] == '\r' && text[index] == '\n'),
        "no position names the inside of a \\r\\n"
    );
    let (mut line, mut start) = (0, 0);
    for (i, &c) in text[..index].iter().enumerate() {
        if c == '\n' || (c == '\r' && text.get(i + 1) != Some(&'\n')) {
            line += 1;
            start = i + 1;
        }
    }
    let character = text[start..index].iter().map(|&c| units(c, enc)).sum::<usize>();
    Pos { line, character: character as u32 }
}

/// A replica for an editor that opened `opened`, synced with a hub whose
/// document holds `shared`.
fn synced(enc: Encoding, opened: &str, shared: &str, read_only: bool) -> Replica {
    let mut replica = Replica::new(1, enc, 0, opened);
    replica.set_read_only(read_only);
    assert!(replica.handle_sync(&step2(shared)).expect("step 2").is_empty());
    replica
}

/// The hub's sync step 2 with a document holding `text`.
fn step2(text: &str) -> Vec<u8> {
    let doc = Doc::with_options(Options {
        client_id: yrs::ClientID::new(2),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    let ytext = doc.get_or_insert_text(weft_core::CONTENT_TEXT);
    ytext.insert(&mut doc.transact_mut(), 0, text);
    let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
    Message::Sync(SyncMessage::SyncStep2(state)).encode_v1()
}

/// The editor applies every edit the replica asks for (resolving all ranges
/// against the text before the edit, then applying them end to start, as
/// LSP says) and reports each as a change; returns its text once the
/// replica has nothing more to send.
fn settle(replica: &mut Replica, editor: &mut Vec<char>, version: &mut i32, enc: Encoding) -> String {
    for _ in 0..8 {
        let Some(request) = replica.poll_edit() else { break };
        assert_eq!(request.version, *version);
        let resolved: Vec<(usize, usize, &str)> = request
            .edits
            .iter()
            .map(|(s, e, t)| (resolve(editor, *s, enc), resolve(editor, *e, enc), t.as_str()))
            .collect();
        let mut changes = Vec::new();
        for &(s, e, t) in resolved.iter().rev() {
            let range = (position(editor, s, enc), position(editor, e, enc));
            editor.splice(s..e, t.chars());
            changes.push(EditorChange { range: Some(range), text: t.to_owned() });
        }
        *version += 1;
        replica.did_change(*version, &changes).expect("echo");
        replica.edit_answered(request.id, true).expect("answer");
    }
    editor.iter().collect()
}

/// Opens `opened` in an editor, syncs with `shared` and delivers every edit:
/// the editor, the replica's idea of it and the shared text must agree.
fn check(opened: &str, shared: &str) {
    for enc in ALL {
        let mut replica = synced(enc, opened, shared, false);
        let mut editor: Vec<char> = opened.chars().collect();
        let mut version = 0;
        let text = settle(&mut replica, &mut editor, &mut version, enc);
        let case = format!("{opened:?} -> {shared:?} in {enc:?}");
        assert!(replica.is_settled(), "not settled: {case}: {replica:?}");
        assert!(replica.take_updates().is_empty(), "the editor's echo went to the shared text: {case}");
        assert_eq!(text, shared, "the editor's text: {case}");
        assert_eq!(replica.editor_text(), shared, "the replica's idea of the editor's text: {case}");
        assert_eq!(replica.shared_text(), shared, "the shared text: {case}");
    }
}

#[test]
fn an_edit_changing_only_the_lf_of_a_crlf_reaches_the_editor_intact() {
    // Deleting the \n of "\r\n": the edit would start between \r and \n.
    check("a\r\nb", "a\rb");
    // Inserting between \r and \n.
    check("a\r\n", "a\rX\n");
    check("x\r\ny", "x\r\r\ny");
    // Replacing the \n and what follows, and ending inside another pair.
    check("a\r\nbc\r\nd", "a\rZ\nd");
    // At the very start and end of the text.
    check("\r\n", "\r");
    check("\r\n", "\rq\n");
}

#[test]
fn a_lone_cr_at_sync_next_to_a_lf_does_not_shift_edits() {
    // The `replica-crlf-at-sync` fuzz input: the shared text wins at sync,
    // and the edit that brings the editor to it ends inside a "\r\n".
    check("$\0\r%|\0)\r\n\0\r", "\u{77b}\u{2}VV\n\0\r");
    check("a\rb", "a\r\nb");
    check("a\r\n\rb", "a\r\n\r\nb");
}

#[test]
fn a_lone_cr_typed_before_a_lf_before_sync_is_undone_on_a_read_only_replica() {
    // The `replica-cr-typed-before-lf` fuzz input: a viewer opened "\n\n"
    // (the shared text is "\n") and typed "-\r" over the first "\n" before
    // the first sync, leaving "-\r\n". A viewer's typing is dropped at sync:
    // the editor must be brought back to "\n", which means deleting "-\r"
    // and keeping the "\n" — an edit that ends inside the "\r\n".
    for enc in ALL {
        let mut replica = Replica::new(1, enc, 0, "\n\n");
        replica.set_read_only(true);
        let mut editor: Vec<char> = "\n\n".chars().collect();
        let range = (position(&editor, 0, enc), position(&editor, 1, enc));
        editor.splice(0..1, "-\r".chars());
        replica.did_change(1, &[EditorChange { range: Some(range), text: "-\r".into() }]).expect("typed");
        assert_eq!(replica.editor_text(), "-\r\n");
        assert!(replica.handle_sync(&step2("\n")).expect("step 2").is_empty());
        let mut version = 1;
        let text = settle(&mut replica, &mut editor, &mut version, enc);
        assert!(replica.is_settled(), "{enc:?}: {replica:?}");
        assert_eq!(text, "\n", "{enc:?}");
        assert_eq!(replica.editor_text(), "\n", "{enc:?}");
        assert_eq!(replica.shared_text(), "\n", "{enc:?}");
        assert!(replica.take_updates().is_empty(), "a viewer changed the shared text");
    }
}

#[test]
fn a_remote_edit_next_to_a_crlf_keeps_a_typed_lone_cr() {
    // After the first sync: the user types a lone "\r" right before a "\n"
    // (one line break now), then a peer's edit arrives that deletes the
    // "\n": the editor must keep the "\r".
    for enc in ALL {
        let mut replica = synced(enc, "ab\ncd", "ab\ncd", false);
        let mut editor: Vec<char> = "ab\ncd".chars().collect();
        let mut version = 0;
        assert_eq!(settle(&mut replica, &mut editor, &mut version, enc), "ab\ncd");
        let range = (position(&editor, 2, enc), position(&editor, 2, enc));
        editor.splice(2..2, "\r".chars());
        version += 1;
        replica.did_change(version, &[EditorChange { range: Some(range), text: "\r".into() }]).expect("typed");
        let typed = replica.take_updates();
        assert_eq!(typed.len(), 1);
        // The peer (which holds "ab\r\ncd" now) deletes the "\n": UTF-16 offset 3.
        let peer = Doc::with_options(Options {
            client_id: yrs::ClientID::new(3),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let ytext = peer.get_or_insert_text(weft_core::CONTENT_TEXT);
        let mut txn = peer.transact_mut();
        txn.apply_update(Update::decode_v1(&replica.encode_state()).expect("state")).expect("apply");
        drop(txn);
        let before = peer.transact().state_vector();
        ytext.remove_range(&mut peer.transact_mut(), 3, 1);
        let update = peer.transact().encode_state_as_update_v1(&before);
        replica.apply_remote(&update).expect("remote");
        assert_eq!(replica.shared_text(), "ab\rcd");
        let text = settle(&mut replica, &mut editor, &mut version, enc);
        assert!(replica.is_settled(), "{enc:?}: {replica:?}");
        assert_eq!(text, "ab\rcd", "{enc:?}");
        assert_eq!(replica.editor_text(), "ab\rcd", "{enc:?}");
    }
}

/// A remote update from a peer (client 3) that first catches up with
/// `replica` and then runs `edit` on its `Y.Text` (UTF-16 offsets).
fn peer_edit(replica: &Replica, edit: impl FnOnce(&yrs::TextRef, &mut yrs::TransactionMut)) -> Vec<u8> {
    let peer = Doc::with_options(Options {
        client_id: yrs::ClientID::new(3),
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    });
    let ytext = peer.get_or_insert_text(weft_core::CONTENT_TEXT);
    peer.transact_mut().apply_update(Update::decode_v1(&replica.encode_state()).expect("state")).expect("apply");
    let before = peer.transact().state_vector();
    edit(&ytext, &mut peer.transact_mut());
    peer.transact().encode_state_as_update_v1(&before)
}

#[test]
fn an_editor_that_normalises_line_endings_is_shown_its_own_and_keeps_the_files() {
    // VS Code keeps one line ending per buffer and rewrites every line
    // break of an edit it applies. Shown the shared text's own line breaks,
    // it rewrote them, the replica sent its rewrite to the shared text, and
    // the two went on rewriting each other forever (decision 0005). With
    // `with_line_ending` the editor sees its one ending, the file keeps
    // what its writers wrote.
    for enc in ALL {
        for eol in [LineEnding::Lf, LineEnding::CrLf] {
            let shared = "a\r\nb\nc\rd";
            let shown = eol.normalize(shared);
            let mut replica = Replica::new(1, enc, 0, "").with_line_ending(eol);
            assert_eq!(replica.line_ending(), Some(eol));
            assert!(replica.handle_sync(&step2(shared)).expect("step 2").is_empty());
            let mut editor: Vec<char> = Vec::new();
            let mut version = 0;
            let case = format!("{eol:?} {enc:?}");
            assert_eq!(settle(&mut replica, &mut editor, &mut version, enc), shown, "{case}");
            assert!(replica.is_settled(), "{case}: {replica:?}");
            assert!(replica.take_updates().is_empty(), "showing the text changed it: {case}");
            assert_eq!(replica.shared_text(), shared, "{case}");

            // A peer writes a CRLF and an LF line break: shown as `eol`.
            let update = peer_edit(&replica, |text, txn| {
                text.insert(txn, 1, "x\r\ny");
                text.insert(txn, 9, "p\nq");
            });
            replica.apply_remote(&update).expect("remote");
            let shared = "ax\r\ny\r\nb\np\nqc\rd";
            assert_eq!(replica.shared_text(), shared, "{case}");
            let request = replica.poll_edit().expect("an edit for the editor");
            for (_, _, text) in &request.edits {
                assert_eq!(*text, eol.normalize(text), "an edit with foreign line breaks: {case}");
            }
            // Hand it back unanswered to `settle`, which applies it.
            replica.edit_answered(request.id, false).expect("answer");
            replica.retry();
            assert_eq!(settle(&mut replica, &mut editor, &mut version, enc), eol.normalize(shared), "{case}");
            assert!(replica.take_updates().is_empty(), "the editor's echo went to the shared text: {case}");

            // The user presses Enter on the CRLF line and on the LF line:
            // each line break is written the way its line writes them.
            let text: String = editor.iter().collect();
            let after_x = text.find('x').expect("x") + 1;
            let after_p = text.find('p').expect("p") + 1;
            let mut changes = Vec::new();
            for at in [after_p, after_x] {
                let range = (position(&editor, at, enc), position(&editor, at, enc));
                editor.splice(at..at, eol.as_str().chars());
                changes.push(EditorChange { range: Some(range), text: eol.as_str().to_owned() });
            }
            version += 1;
            replica.did_change(version, &changes).expect("typed");
            assert!(!replica.take_updates().is_empty(), "{case}");
            let shared = "ax\r\n\r\ny\r\nb\np\n\nqc\rd";
            assert_eq!(replica.shared_text(), shared, "{case}");
            assert_eq!(settle(&mut replica, &mut editor, &mut version, enc), eol.normalize(shared), "{case}");
            assert!(replica.is_settled(), "{case}: {replica:?}");
            assert!(replica.take_updates().is_empty(), "{case}");
            assert_eq!(replica.editor_text(), eol.normalize(shared), "{case}");
        }
    }
}
