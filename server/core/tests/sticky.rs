//! Sticky (relative) positions through replicas: a cursor published by one
//! editor stays on its character while another types before it, is read in
//! each editor's own encoding, and never points into text an editor has
//! not applied yet (it waits at the insertion point).

use weft_core::positions::{Encoding, Pos};
use weft_core::replica::{EditorChange, Replica};

/// Delivers every pending update of `from` to `to`.
fn deliver(from: &mut Replica, to: &mut Replica) {
    for update in from.take_updates() {
        to.apply_remote(&update).expect("a valid update");
    }
}

/// Lets `editor`'s editor apply everything pending, echoing it back as a
/// well-behaved editor does.
fn settle(replica: &mut Replica) {
    while let Some(edit) = replica.poll_edit() {
        replica.edit_answered(edit.id, true).expect("answer");
        let changes: Vec<EditorChange> =
            edit.edits.iter().rev().map(|(s, e, t)| EditorChange { range: Some((*s, *e)), text: t.clone() }).collect();
        replica.did_change(edit.version + 1, &changes).expect("echo");
    }
}

fn insert(replica: &mut Replica, at: Pos, text: &str) {
    let version = replica.version() + 1;
    replica.did_change(version, &[EditorChange { range: Some((at, at)), text: text.to_owned() }]).expect("typing");
}

#[test]
fn a_cursor_stays_on_its_character_in_every_encoding() {
    let text = "héllo 🌍 wörld\nsecond 日本 line\n";
    let mut a = Replica::new(11, Encoding::Utf16, 1, text);
    a.mark_synced().expect("sync");
    let mut b = Replica::new(22, Encoding::Utf8, 1, "");
    b.mark_synced().expect("sync");
    deliver(&mut a, &mut b);
    settle(&mut b);
    assert_eq!(b.editor_text(), text);

    // A's cursor after "🌍" (UTF-16: 6 + 2 = 8), and in line 1 after "日本".
    let globe = a.sticky_at(Pos { line: 0, character: 8 }).expect("sticky");
    let kanji = a.sticky_at(Pos { line: 1, character: 9 }).expect("sticky");
    // B reads them in UTF-8: "héllo " is 7 bytes, "🌍" 4; "second 日本" 13.
    assert_eq!(b.resolve_sticky(&globe), Some(Pos { line: 0, character: 11 }));
    assert_eq!(b.resolve_sticky(&kanji), Some(Pos { line: 1, character: 13 }));

    // B types before both: they move with their characters.
    insert(&mut b, Pos { line: 0, character: 0 }, "// ü\n");
    insert(&mut b, Pos { line: 2, character: 0 }, "ß");
    deliver(&mut b, &mut a);
    settle(&mut a);
    assert_eq!(a.editor_text(), b.editor_text());
    assert_eq!(b.resolve_sticky(&globe), Some(Pos { line: 1, character: 11 }));
    assert_eq!(b.resolve_sticky(&kanji), Some(Pos { line: 2, character: 15 }));
    assert_eq!(a.resolve_sticky(&globe), Some(Pos { line: 1, character: 8 }));
    assert_eq!(a.resolve_sticky(&kanji), Some(Pos { line: 2, character: 10 }));
}

#[test]
fn a_cursor_never_points_into_text_the_editor_has_not_applied() {
    let mut a = Replica::new(11, Encoding::Utf16, 1, "abc\n");
    a.mark_synced().expect("sync");
    let mut b = Replica::new(22, Encoding::Utf16, 1, "");
    b.mark_synced().expect("sync");
    deliver(&mut a, &mut b);
    settle(&mut b);

    // A types "XYZ" after "a" and puts its cursor after "XY".
    insert(&mut a, Pos { line: 0, character: 1 }, "XYZ");
    let cursor = a.sticky_at(Pos { line: 0, character: 3 }).expect("sticky");
    // Before B has the update, the index names a character B does not know.
    assert_eq!(b.resolve_sticky(&cursor), None);
    // B's replica has it, B's editor not yet: the cursor waits where the
    // text will go, never beyond the editor's text.
    deliver(&mut a, &mut b);
    let edit = b.poll_edit().expect("an edit for B's editor");
    assert_eq!(b.resolve_sticky(&cursor), Some(Pos { line: 0, character: 1 }));
    // Applied (answer and echo): now it is on its character.
    b.edit_answered(edit.id, true).expect("answer");
    let changes: Vec<EditorChange> =
        edit.edits.iter().rev().map(|(s, e, t)| EditorChange { range: Some((*s, *e)), text: t.clone() }).collect();
    b.did_change(edit.version + 1, &changes).expect("echo");
    assert_eq!(b.editor_text(), "aXYZbc\n");
    assert_eq!(b.resolve_sticky(&cursor), Some(Pos { line: 0, character: 3 }));
    // Garbage is not a position.
    assert_eq!(b.resolve_sticky(b"\xff\x00garbage"), None);
}

#[test]
fn cursors_at_the_end_and_in_an_empty_text_are_published() {
    let mut a = Replica::new(11, Encoding::Utf16, 1, "");
    a.mark_synced().expect("sync");
    let empty = a.sticky_at(Pos { line: 0, character: 0 }).expect("a cursor in an empty text");
    assert_eq!(a.resolve_sticky(&empty), Some(Pos { line: 0, character: 0 }));
    insert(&mut a, Pos { line: 0, character: 0 }, "ab\n");
    let end = a.sticky_at(Pos { line: 1, character: 0 }).expect("a cursor at the end");
    assert_eq!(a.resolve_sticky(&end), Some(Pos { line: 1, character: 0 }));
    // Typing before it moves it along.
    insert(&mut a, Pos { line: 0, character: 0 }, "x");
    assert_eq!(a.resolve_sticky(&end), Some(Pos { line: 1, character: 0 }));
    insert(&mut a, Pos { line: 0, character: 0 }, "\n");
    assert_eq!(a.resolve_sticky(&end), Some(Pos { line: 2, character: 0 }));
}
