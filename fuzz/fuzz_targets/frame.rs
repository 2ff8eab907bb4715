//! Fuzz target `frame`: one binary frame of `/ws/{session}`, handled the
//! way the hub handles it.
//!
//! The input is the frame as it arrives: `weft_protocol::frame::split`
//! takes the doc-id prefix off, then the y-protocols message(s) go to
//! `weft_core::shared_doc::SharedDoc::handle` on a fresh document, once as
//! a writer and once as a read-only peer. Nothing may panic out of these
//! (a yrs panic caught inside `SharedDoc` is its `Poisoned` result, which
//! the hub survives), and:
//! * a frame that splits re-joins into a frame that splits the same way;
//! * what a writer's frame changed (`deltas`, which the hub persists and
//!   relays) rebuilds, alone, a document in the same state: storage never
//!   loses what was acknowledged;
//! * a read-only peer never changes the document, and is told when it
//!   tried to (a frame that added content to the writer's copy is
//!   refused);
//! * the calls the hub makes afterwards (step 1, snapshot, awareness
//!   snapshot and removal) return normally.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use weft_core::shared_doc::{SharedDoc, SyncError};
use weft_protocol::frame;
use yrs::{ReadTxn, Transact};

/// The hub's own client id is never used for edits; any fixed value does.
const HUB_CLIENT: u64 = 1;

fuzz_target!(|data: &[u8]| weft_fuzz::run(|| check(data)));

fn check(data: &[u8]) {
    let Ok((doc_id, message)) = frame::split(data) else { return };
    let rejoined = frame::join(&doc_id, message);
    assert_eq!(frame::split(&rejoined), Ok((doc_id, message)), "split(join(split(frame))) differs");
    let kind = frame::message_kind(message);
    if let Some(kind) = kind {
        let _ = kind.carries_update();
    }

    let mut writer = SharedDoc::new(HUB_CLIENT);
    let written = match writer.handle(message, true) {
        Ok(handled) => Some(handled),
        Err(SyncError::Poisoned) => None,
        Err(other) => panic!("handle returned {other:?}: only Poisoned is an Err"),
    };
    if let Some(handled) = &written {
        assert!(!handled.refused_write, "a writer was refused");
        let (restored, skipped) = SharedDoc::restore(2, None, handled.deltas.iter().map(Vec::as_slice))
            .unwrap_or_else(|err| panic!("the persisted deltas do not load: {err}"));
        assert_eq!(skipped, 0, "a persisted delta does not decode");
        assert_eq!(
            clocks(&restored),
            clocks(&writer),
            "the persisted deltas rebuild another state than the live document"
        );
        writer.step1();
        writer.encode_state();
        writer.awareness_snapshot();
        writer.remove_awareness(&handled.claimed_clients);
    }

    let mut reader = SharedDoc::new(HUB_CLIENT);
    let empty = reader.encode_state();
    match reader.handle(message, false) {
        Ok(handled) => {
            assert!(handled.deltas.is_empty(), "a read-only peer produced deltas");
            assert_eq!(reader.encode_state(), empty, "a read-only peer changed the document");
            // Content the writer's copy gained (a delta may also be a bare
            // delete set of unknown items, which changes nothing visible).
            let wrote = written.is_some() && !clocks(&writer).is_empty();
            assert!(!wrote || handled.refused_write, "a read-only peer's write was dropped without a refusal");
            reader.step1();
            reader.awareness_snapshot();
            reader.remove_awareness(&handled.claimed_clients);
        }
        Err(SyncError::Poisoned) => {}
        Err(other) => panic!("handle returned {other:?}: only Poisoned is an Err"),
    }
}

/// The state vector without zero clocks (`{c: 0}` and `{}` are one state).
fn clocks(doc: &SharedDoc) -> BTreeMap<u64, u32> {
    let sv = doc.doc().transact().state_vector();
    sv.iter().filter(|(_, clock)| **clock > 0).map(|(client, clock)| (client.get(), *clock)).collect()
}
