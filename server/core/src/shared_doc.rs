//! One shared document as a y-protocols endpoint: apply sync and awareness
//! messages from a peer, say what to answer, what to persist and what to
//! relay.
//!
//! This is the hub's (and later the bridge's) view of a document. It never
//! trusts its input: every message is decoded with errors as values, and
//! applying an update runs under `catch_unwind` so that a crafted update
//! that trips a panic inside yrs poisons this one document (the caller
//! reloads it from storage) instead of taking the process down. It does not
//! know who the peers are beyond the awareness client ids they control.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use yrs::encoding::read::Cursor;
use yrs::sync::awareness::AwarenessUpdate;
use yrs::sync::{Awareness, Message, MessageReader, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, Options, ReadTxn, StateVector, Transact, Update};

use crate::held::{Held, Outcome};

/// The y-protocols sync `update` message carrying `update`.
pub fn update_message(update: &[u8]) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update.to_vec())).encode_v1()
}

/// How much a v1 update inserts and deletes, in CRDT clock units (UTF-16
/// code units for text; one per other item), or `None` if it does not
/// decode. For edit summaries: who changed how much, never what.
pub fn update_extent(update: &[u8]) -> Option<(u64, u64)> {
    let update = catch_unwind(AssertUnwindSafe(|| Update::decode_v1(update))).ok()?.ok()?;
    let count = |set: &yrs::IdSet| -> u64 {
        set.iter().map(|(_, ranges)| ranges.iter().map(|r| u64::from(r.end - r.start)).sum::<u64>()).sum()
    };
    Some((count(&update.insertions(false)), count(update.delete_set())))
}

/// Why a message was not (fully) handled.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The bytes are not a y-protocols message this hub understands.
    #[error("malformed y-protocols message: {0}")]
    Malformed(String),
    /// The update decoded but yrs refused to integrate it.
    #[error("update could not be applied: {0}")]
    BadUpdate(String),
    /// yrs panicked while integrating an update; the document's in-memory
    /// state can no longer be trusted and must be reloaded from storage.
    #[error("update crashed the CRDT engine; the document must be reloaded")]
    Poisoned,
}

/// What handling one incoming buffer produced.
#[derive(Debug, Default)]
pub struct Handled {
    /// Encoded messages to send back to the sender only.
    pub reply: Vec<Vec<u8>>,
    /// Updates that changed the document, in order, exactly as integrated:
    /// persist them, then relay each to the other subscribers.
    pub deltas: Vec<Vec<u8>>,
    /// Encoded awareness messages to relay to the other subscribers.
    pub awareness: Vec<Vec<u8>>,
    /// Awareness client ids that the sender now controls (set or updated a
    /// state for); remove them when it disconnects.
    pub claimed_clients: Vec<u64>,
    /// Update-carrying messages (step 2 / update) seen, applied or not.
    pub update_messages: u64,
    /// An update that would have changed the document was refused because
    /// the sender may not write.
    pub refused_write: bool,
    /// A message that could not be handled. The messages before it in the
    /// same buffer were handled and their effects are above: persist and
    /// relay them as usual; the rest of the buffer was skipped.
    pub error: Option<SyncError>,
}

/// A v1 update with no blocks and no deletions.
const EMPTY_UPDATE: &[u8] = &[0, 0];

/// What applying one update did.
struct Applied {
    /// What changed, as integrated.
    deltas: Vec<Vec<u8>>,
    /// The error that stopped the update part way, if any.
    stopped: Option<SyncError>,
    outcome: Outcome,
}

/// A yrs document plus its awareness, driven by y-protocols messages.
pub struct SharedDoc {
    awareness: Awareness,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The step 2 answering an empty state vector (a peer joining with
    /// nothing): the whole document, encoded once until it changes, so a
    /// hundred peers joining a large document cost one encoding.
    full_reply: Option<Vec<u8>>,
    /// Updates that arrived before what they build on ([`crate::held`]).
    held: Held,
}

impl std::fmt::Debug for SharedDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedDoc").field("client_id", &self.awareness.client_id()).finish()
    }
}

impl SharedDoc {
    /// An empty document whose own (never used for edits) client id is `client_id`.
    pub fn new(client_id: u64) -> SharedDoc {
        let doc = Doc::with_options(Options { client_id: ClientID::new(client_id), ..Options::default() });
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        // Capture every integrated change as the exact v1 update yrs produced
        // for it: that is what gets persisted and relayed, so duplicates and
        // no-op messages cost nothing downstream. The observer is registered
        // on a fresh doc, so acquiring the transaction cannot fail.
        let observed = doc.observe_update_v1("weft-capture", move |_txn, event| {
            // A transaction that integrated nothing (an update held for
            // what it builds on) still fires with an empty update: skip it.
            if event.update.as_slice() != EMPTY_UPDATE
                && let Ok(mut out) = sink.lock()
            {
                out.push(event.update.clone());
            }
        });
        if let Err(err) = observed {
            tracing::error!(%err, "could not observe a fresh document");
        }
        SharedDoc { awareness: Awareness::new(doc), captured, full_reply: None, held: Held::default() }
    }

    /// Rebuilds a document from what storage holds: a snapshot (if any)
    /// then the logged updates in order. Entries that fail to decode are
    /// skipped and counted, so one corrupt row never hides the rest.
    pub fn restore<'a>(
        client_id: u64,
        snapshot: Option<&'a [u8]>,
        updates: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(SharedDoc, usize), SyncError> {
        let mut doc = SharedDoc::new(client_id);
        let mut skipped = 0;
        for bytes in snapshot.into_iter().chain(updates) {
            match doc.apply_update(bytes) {
                Ok(_) => {}
                Err(SyncError::Poisoned) => return Err(SyncError::Poisoned),
                Err(_) => skipped += 1,
            }
        }
        doc.take_captured();
        Ok((doc, skipped))
    }

    /// The underlying yrs document (read it; edit only through messages).
    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }

    /// Sync step 1 carrying this document's state vector, encoded.
    pub fn step1(&self) -> Vec<u8> {
        let sv = self.doc().transact().state_vector();
        Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1()
    }

    /// An awareness message with every live state, if there is any.
    pub fn awareness_snapshot(&self) -> Option<Vec<u8>> {
        let update = self.awareness.update().ok()?;
        if update.clients.is_empty() {
            return None;
        }
        Some(Message::Awareness(update).encode_v1())
    }

    /// The whole state as one v1 update (for snapshots).
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc().transact().encode_state_as_update_v1(&StateVector::default())
    }

    /// Marks the awareness states of `clients` as gone and returns the
    /// awareness message that tells the other peers, if any state was live.
    pub fn remove_awareness(&mut self, clients: &[u64]) -> Option<Vec<u8>> {
        let wanted: HashSet<u64> = clients.iter().copied().collect();
        let live: Vec<ClientID> = self
            .awareness
            .iter()
            .filter(|(id, state)| state.data.is_some() && wanted.contains(&id.get()))
            .map(|(id, _)| id)
            .collect();
        if live.is_empty() {
            return None;
        }
        for client in &live {
            // yrs bumps the state's clock, which a peer may have set to u32::MAX.
            let awareness = &mut self.awareness;
            if catch_unwind(AssertUnwindSafe(|| awareness.remove_state(*client))).is_err() {
                return None;
            }
        }
        let update = self.awareness.update_with_clients(live).ok()?;
        Some(Message::Awareness(update).encode_v1())
    }

    /// Handles every y-protocols message in `buf` from one peer.
    /// `can_write` false turns update messages that would change the
    /// document into refusals.
    /// Only [`SyncError::Poisoned`] is returned as an error; any other
    /// failure is reported in [`Handled::error`] next to what the earlier
    /// messages of the buffer already did.
    pub fn handle(&mut self, buf: &[u8], can_write: bool) -> Result<Handled, SyncError> {
        catch_unwind(AssertUnwindSafe(|| self.handle_unguarded(buf, can_write))).unwrap_or(Err(SyncError::Poisoned))
    }

    fn handle_unguarded(&mut self, buf: &[u8], can_write: bool) -> Result<Handled, SyncError> {
        let mut out = Handled::default();
        let mut decoder = DecoderV1::new(Cursor::new(buf));
        let mut seen = 0usize;
        for message in MessageReader::new(&mut decoder) {
            seen += 1;
            let handled = message
                .map_err(|e| SyncError::Malformed(e.to_string()))
                .and_then(|message| self.handle_message(message, can_write, &mut out));
            match handled {
                Ok(()) => {}
                Err(SyncError::Poisoned) => return Err(SyncError::Poisoned),
                Err(err) => {
                    out.error = Some(err);
                    return Ok(out);
                }
            }
        }
        if seen == 0 {
            out.error = Some(SyncError::Malformed("empty message".into()));
        }
        Ok(out)
    }

    fn handle_message(&mut self, message: Message, can_write: bool, out: &mut Handled) -> Result<(), SyncError> {
        match message {
            Message::Sync(SyncMessage::SyncStep1(sv)) if sv.is_empty() => {
                let reply = match &self.full_reply {
                    Some(reply) => reply.clone(),
                    None => {
                        let diff = self.doc().transact().encode_state_as_update_v1(&sv);
                        let reply = Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1();
                        self.full_reply = Some(reply.clone());
                        reply
                    }
                };
                out.reply.push(reply);
            }
            Message::Sync(SyncMessage::SyncStep1(sv)) => {
                let diff = self.doc().transact().encode_state_as_update_v1(&sv);
                out.reply.push(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1());
            }
            Message::Sync(SyncMessage::SyncStep2(bytes)) => self.write(&bytes, false, can_write, out)?,
            Message::Sync(SyncMessage::Update(bytes)) => self.write(&bytes, true, can_write, out)?,
            Message::Awareness(update) => self.apply_awareness(update, out)?,
            Message::AwarenessQuery => {
                if let Some(all) = self.awareness_snapshot() {
                    out.reply.push(all);
                }
            }
            // Auth messages only ever flow hub → client; custom tags are not
            // part of y-protocols. Neither is an error worth a disconnect.
            Message::Auth(_) | Message::Custom(..) => {}
        }
        Ok(())
    }

    /// A step 2 or update message (`is_update`) carrying `bytes`.
    fn write(&mut self, bytes: &[u8], is_update: bool, can_write: bool, out: &mut Handled) -> Result<(), SyncError> {
        out.update_messages += 1;
        if !can_write {
            if self.would_change(bytes)? {
                out.refused_write = true;
            }
            return Ok(());
        }
        let Applied { deltas, stopped, outcome } = self.apply_update_partly(bytes)?;
        out.deltas.extend(deltas);
        // An update that builds on something this document never got (lost
        // with a dropped connection): ask its sender for what is missing
        // with a step 1. Never for a step 2, which answers one already (no
        // ping-pong), and once until what was held integrates.
        if is_update && outcome == (Outcome::Held { first: true }) {
            let sv = self.doc().transact().state_vector();
            out.reply.push(Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1());
        }
        match stopped {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn apply_awareness(&mut self, update: AwarenessUpdate, out: &mut Handled) -> Result<(), SyncError> {
        let claimed: Vec<u64> = update.clients.keys().map(|c| c.get()).collect();
        let encoded = Message::Awareness(update.clone()).encode_v1();
        let summary =
            self.awareness.apply_update_summary(update).map_err(|e| SyncError::Malformed(format!("awareness: {e}")))?;
        if let Some(summary) = summary {
            let removed: HashSet<u64> = summary.removed.iter().map(|c| c.get()).collect();
            out.claimed_clients.extend(claimed.into_iter().filter(|c| !removed.contains(c)));
            out.awareness.push(encoded);
        }
        Ok(())
    }

    /// Applies a v1 update and returns what it changed (empty if nothing).
    pub fn apply_update(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, SyncError> {
        match self.apply_update_partly(bytes)? {
            Applied { deltas, stopped: None, .. } => Ok(deltas),
            Applied { stopped: Some(err), .. } => Err(err),
        }
    }

    /// Applies a v1 update and returns what it changed, and the error that
    /// stopped it, if any: yrs may integrate part of an update before it
    /// finds a bad block, and what it integrated is in the document, so it
    /// must be persisted and relayed like any change (the `frame` fuzz
    /// target found updates whose integrated part was dropped, leaving the
    /// live document ahead of its log). `Err` only for an undecodable
    /// update (nothing applied) or a poisoned document.
    /// The [`Outcome`] says whether the update waits for others.
    fn apply_update_partly(&mut self, bytes: &[u8]) -> Result<Applied, SyncError> {
        let update = match catch_unwind(|| Update::decode_v1(bytes)) {
            Ok(Ok(update)) => update,
            Ok(Err(e)) => return Err(SyncError::Malformed(format!("update: {e}"))),
            Err(_) => return Err(SyncError::Malformed("update: undecodable".into())),
        };
        if update.is_empty() {
            // Every joining peer answers the hub's step 1 with an empty step
            // 2: it changes nothing, and must not cost the cache.
            return Ok(Applied { deltas: Vec::new(), stopped: None, outcome: Outcome::Integrated });
        }
        // Whatever happens below may change the document.
        self.full_reply = None;
        let doc = self.awareness.doc();
        let held = &mut self.held;
        let applied = catch_unwind(AssertUnwindSafe(|| held.apply(doc, bytes, update, || doc.transact_mut())));
        match applied {
            Ok(Ok(outcome)) => Ok(Applied { deltas: self.take_captured(), stopped: None, outcome }),
            Ok(Err(e)) => Ok(Applied {
                deltas: self.take_captured(),
                stopped: Some(SyncError::BadUpdate(e.to_string())),
                outcome: Outcome::Integrated,
            }),
            Err(_) => Err(SyncError::Poisoned),
        }
    }

    /// How many updates wait for ones that have not arrived (see
    /// [`crate::held`]).
    pub fn held_updates(&self) -> usize {
        self.held.len()
    }

    /// Whether applying `bytes` would add blocks or deletions this document
    /// does not have yet (used to tell an empty step 2 from a real write).
    fn would_change(&self, bytes: &[u8]) -> Result<bool, SyncError> {
        let update = Update::decode_v1(bytes).map_err(|e| SyncError::Malformed(format!("update: {e}")))?;
        if update.is_empty() {
            return Ok(false);
        }
        let txn = self.doc().transact();
        if update.extends(&txn.state_vector()) {
            return Ok(true);
        }
        let known = txn.snapshot().delete_set;
        Ok(!update.delete_set().diff(&known).is_empty())
    }

    fn take_captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::{GetString, Text};

    fn text_update(client: u64, s: &str) -> Vec<u8> {
        let doc = Doc::with_client_id(client);
        let text = doc.get_or_insert_text(crate::CONTENT_TEXT);
        text.insert(&mut doc.transact_mut(), 0, s);
        doc.transact().encode_state_as_update_v1(&StateVector::default())
    }

    fn update_msg(update: Vec<u8>) -> Vec<u8> {
        Message::Sync(SyncMessage::Update(update)).encode_v1()
    }

    fn content(doc: &SharedDoc) -> String {
        let text = doc.doc().get_or_insert_text(crate::CONTENT_TEXT);
        text.get_string(&doc.doc().transact())
    }

    #[test]
    fn update_is_applied_captured_and_not_repeated() {
        let mut hub = SharedDoc::new(1);
        let msg = update_msg(text_update(7, "héllo 🌍"));
        let first = hub.handle(&msg, true).expect("apply");
        assert_eq!(first.deltas.len(), 1);
        assert_eq!(first.update_messages, 1);
        assert_eq!(content(&hub), "héllo 🌍");
        let again = hub.handle(&msg, true).expect("apply twice");
        assert!(again.deltas.is_empty(), "a duplicate update changes nothing");
    }

    /// An update whose predecessor was lost is held (not relayed, not
    /// persisted, not in any step 2), the sender is asked for what is
    /// missing, and both go out once the predecessor arrives.
    #[test]
    fn an_early_update_is_held_and_its_sender_asked_for_the_rest() {
        let writer = Doc::with_client_id(7);
        let text = writer.get_or_insert_text(crate::CONTENT_TEXT);
        let mut updates = Vec::new();
        // "Y" goes right after "X": it cannot be placed before "X" arrives.
        for (at, s) in [(0, "ab"), (1, "X"), (2, "Y")] {
            let mut txn = writer.transact_mut();
            text.insert(&mut txn, at, s);
            updates.push(txn.encode_update_v1());
        }
        let mut hub = SharedDoc::new(1);
        hub.handle(&update_msg(updates[0].clone()), true).expect("first");
        let early = hub.handle(&update_msg(updates[2].clone()), true).expect("early");
        assert!(early.deltas.is_empty(), "nothing to persist or relay yet");
        assert_eq!(hub.held_updates(), 1);
        let asked = early.reply.first().expect("the sender is asked for what is missing");
        assert!(
            matches!(Message::decode_v1(asked), Ok(Message::Sync(SyncMessage::SyncStep1(_)))),
            "the ask is a step 1"
        );
        // A joiner meanwhile gets exactly what the hub has integrated.
        let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
        let joined = hub.handle(&step1, true).expect("step 1");
        let joiner = SharedDoc::new(2);
        let mut joiner = joiner;
        joiner.handle(&joined.reply[0], true).expect("step 2");
        assert_eq!(content(&joiner), "ab");
        // A second early update does not ask again.
        let again = hub.handle(&update_msg(updates[2].clone()), true).expect("again");
        assert!(again.reply.is_empty());
        let late = hub.handle(&update_msg(updates[1].clone()), true).expect("late");
        assert_eq!(late.deltas.len(), 2, "the late update, then the held one");
        assert_eq!(hub.held_updates(), 0);
        assert_eq!(content(&hub), "aXYb");
        for delta in late.deltas {
            joiner.apply_update(&delta).expect("relayed");
        }
        assert_eq!(content(&joiner), "aXYb");
    }

    #[test]
    fn step1_is_answered_with_the_missing_part() {
        let mut hub = SharedDoc::new(1);
        hub.handle(&update_msg(text_update(7, "abc")), true).expect("apply");
        let peer = Doc::with_client_id(9);
        let step1 = Message::Sync(SyncMessage::SyncStep1(peer.transact().state_vector())).encode_v1();
        let out = hub.handle(&step1, true).expect("step1");
        assert_eq!(out.reply.len(), 1);
        let mut dec = DecoderV1::new(Cursor::new(&out.reply[0]));
        let Some(Ok(Message::Sync(SyncMessage::SyncStep2(diff)))) = MessageReader::new(&mut dec).next() else {
            panic!("expected step 2");
        };
        peer.transact_mut().apply_update(Update::decode_v1(&diff).expect("decode")).expect("apply");
        assert_eq!(peer.get_or_insert_text("content").get_string(&peer.transact()), "abc");
    }

    #[test]
    fn the_cached_answer_to_an_empty_step1_follows_every_change() {
        let mut hub = SharedDoc::new(1);
        let empty_step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
        let joined = |hub: &mut SharedDoc| -> String {
            let out = hub.handle(&empty_step1, false).expect("step1");
            let mut dec = DecoderV1::new(Cursor::new(&out.reply[0]));
            let Some(Ok(Message::Sync(SyncMessage::SyncStep2(diff)))) = MessageReader::new(&mut dec).next() else {
                panic!("expected step 2");
            };
            let peer = Doc::with_client_id(9);
            peer.transact_mut().apply_update(Update::decode_v1(&diff).expect("decode")).expect("apply");
            peer.get_or_insert_text("content").get_string(&peer.transact())
        };
        assert_eq!(joined(&mut hub), "");
        hub.handle(&update_msg(text_update(7, "abc")), true).expect("apply");
        assert_eq!(joined(&mut hub), "abc");
        assert_eq!(joined(&mut hub), "abc", "answered from the cache");
        hub.handle(&update_msg(text_update(8, "xyz")), true).expect("apply");
        let text = joined(&mut hub);
        assert!(text.contains("abc") && text.contains("xyz"), "{text}");
    }

    /// Found by the `frame` fuzz target: yrs integrates the first blocks of
    /// this update, then refuses a block whose parent is not a shared type.
    /// What it integrated must come out as deltas (persisted and relayed),
    /// or the live document runs ahead of its log.
    #[test]
    fn a_partly_applied_update_still_yields_what_it_changed() {
        let data: Vec<u8> = vec![
            11, 115, 114, 99, 47, 109, 97, 105, 110, 46, 114, 115, 0, 2, 91, 1, 4, 7, 0, 4, 1, 7, 99, 111, 110, 116,
            101, 110, 116, 2, 102, 110, 132, 7, 1, 41, 32, 109, 97, 105, 110, 40, 66, 41, 32, 123, 10, 32, 32, 32, 32,
            112, 114, 105, 110, 116, 108, 110, 33, 40, 34, 104, 195, 169, 108, 108, 111, 32, 240, 159, 140, 141, 34,
            41, 59, 10, 125, 1, 70, 7, 0, 4, 98, 111, 108, 0, 0, 0, 100, 4, 116, 114, 117, 101, 198, 7, 1, 46, 2, 4,
            98, 111, 108, 100, 4, 110, 117, 108, 108, 0,
        ];
        let (_doc, message) = weft_protocol::frame::split(&data).expect("a framed message");
        let mut live = SharedDoc::new(1);
        let handled = live.handle(message, true).expect("not poisoned");
        assert!(handled.error.is_some(), "the bad block is reported");
        assert!(!handled.deltas.is_empty(), "what was integrated is a delta");
        let (restored, skipped) = SharedDoc::restore(2, None, handled.deltas.iter().map(Vec::as_slice)).expect("loads");
        assert_eq!(skipped, 0);
        assert_eq!(restored.doc().transact().state_vector(), live.doc().transact().state_vector());
    }

    #[test]
    fn viewers_are_refused_but_empty_step2_is_fine() {
        let mut hub = SharedDoc::new(1);
        let out = hub.handle(&update_msg(text_update(7, "x")), false).expect("handled");
        assert!(out.refused_write);
        assert!(out.deltas.is_empty());
        assert_eq!(content(&hub), "");
        let empty = Message::Sync(SyncMessage::SyncStep2(Update::EMPTY_V1.to_vec())).encode_v1();
        let out = hub.handle(&empty, false).expect("handled");
        assert!(!out.refused_write);
        // A step 2 that only repeats what the hub already has is not a write.
        hub.handle(&update_msg(text_update(7, "x")), true).expect("apply");
        let out = hub.handle(&update_msg(text_update(7, "x")), false).expect("handled");
        assert!(!out.refused_write);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut hub = SharedDoc::new(1);
        for bad in [&[][..], &[0, 2, 50, 1], &[0, 9], &[1, 5, 1, 2], &[0, 2, 3, 0xff, 0xff, 0xff]] {
            let out = hub.handle(bad, true).expect("not poisoned");
            assert!(out.error.is_some(), "{bad:?}");
        }
        // A good update followed by garbage in one buffer: the update counts.
        // (A truncated tail ends yrs's MessageReader silently; an invalid
        // sync sub-type is an error.)
        let mut buf = update_msg(text_update(7, "kept"));
        buf.extend_from_slice(&[0, 9]);
        let out = hub.handle(&buf, true).expect("not poisoned");
        assert_eq!(out.deltas.len(), 1);
        assert!(out.error.is_some());
        assert_eq!(content(&hub), "kept");
    }

    #[test]
    fn awareness_is_claimed_and_removed() {
        let mut hub = SharedDoc::new(1);
        let peer = Awareness::new(Doc::with_client_id(42));
        let mut peer = peer;
        peer.set_local_state_raw(r#"{"name":"Ada"}"#);
        let msg = Message::Awareness(peer.update().expect("update")).encode_v1();
        let out = hub.handle(&msg, true).expect("awareness");
        assert_eq!(out.claimed_clients, vec![42]);
        assert_eq!(out.awareness.len(), 1);
        assert!(hub.awareness_snapshot().is_some());
        assert!(hub.remove_awareness(&[42]).is_some());
        assert!(hub.awareness_snapshot().is_none());
        assert!(hub.remove_awareness(&[42]).is_none(), "already gone");
    }

    #[test]
    fn restore_replays_snapshot_then_log_and_skips_corrupt_rows() {
        let mut live = SharedDoc::new(1);
        live.handle(&update_msg(text_update(7, "abc")), true).expect("apply");
        let snapshot = live.encode_state();
        let later = text_update(8, "Z");
        let (doc, skipped) =
            SharedDoc::restore(2, Some(&snapshot), [later.as_slice(), &[1, 2, 3][..]]).expect("restore");
        assert_eq!(skipped, 1);
        let s = content(&doc);
        assert!(s == "abcZ" || s == "Zabc", "{s}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut hub = SharedDoc::new(1);
            let _ = hub.handle(&bytes, true);
            let _ = hub.handle(&bytes, false);
        }
    }
}
