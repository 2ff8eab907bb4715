//! Merging the updates queued for the hub while the link was busy.
//!
//! The bridge hands the link one frame per editor change. When they come
//! faster than the socket takes them (an agent applying hundreds of edits,
//! a replay, a hub that slows this peer down for going over its frame
//! rate), they wait in the link's queue. Each time the link is free it
//! takes everything queued and merges every run of consecutive sync
//! updates for the same document into one update (yrs'
//! `merge_updates_v1`), then writes the batch with one flush. The hub then
//! integrates, logs and relays one update instead of hundreds, and every
//! receiver integrates it in one transaction. When frames come one at a
//! time nothing waits and nothing is merged, so a keystroke's latency is
//! untouched.
//!
//! Only runs are merged: a frame of another kind or another document is a
//! barrier, so the order of everything relative to everything else is kept.
//!
//! The hub's `ack` counts update-carrying frames on the wire, while the
//! link's users count the frames they queued; [`Seqs`] translates one into
//! the other.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Message;
use weft_protocol::frame::{MSG_SYNC, MessageKind, SYNC_UPDATE, message_kind, read_var_uint, split, write_var_uint};

/// At most this many sync-update frames (an editor's or a file's changes;
/// not the step 2s of a join, which are for many documents and never
/// merge) are written and not yet acknowledged; more wait in the queue,
/// where they merge. The hub acks
/// after each group commit (every ~10 ms), so this never holds back a
/// typist; it holds back a burst only while the hub is behind, or while it
/// slows this peer down for going over `--rate-frames` (it stops reading
/// the socket, so without a window the burst would sit unmerged in the
/// kernel's socket buffers and trickle through at the frame rate).
pub(crate) const ACK_WINDOW: usize = 16;
/// A full window still lets one batch (everything queued, merged) through
/// this long after the last write: a slow disk sync at the hub (an ack
/// 100 ms late) then delays a typist's keystrokes by this much, not by the
/// ack's delay, and a burst still merges into at most 100 frames a second
/// (below the hub's default `--rate-frames` of 500).
pub(crate) const ACK_PASS: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a full window waits for an ack before the link stops waiting
/// for acks on this connection (a hub that never acks must not stop edits).
pub(crate) const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// At most this many queued frames are taken into one batch.
pub(crate) const MAX_BATCH: usize = 1024;
/// A run is cut once its updates add up to this many bytes.
const MAX_RUN_BYTES: usize = 1 << 20;

/// One frame to write, and how many update-carrying frames the bridge
/// queued that it stands for (0 for frames that carry no update).
#[derive(Debug)]
pub(crate) struct Wire {
    pub msg: Message,
    pub updates: u64,
    /// A sync update (counted in [`ACK_WINDOW`]).
    pub windowed: bool,
}

/// A binary frame holding exactly one sync update: the frame's doc-id
/// prefix and the update's bytes.
pub(crate) fn sync_update(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, message) = split(frame).ok()?;
    if message_kind(message) != Some(MessageKind::SyncUpdate) {
        return None;
    }
    let prefix = &frame[..frame.len() - message.len()];
    // Past the two tags (sync, update) that message_kind read.
    let (_, rest) = read_var_uint(message)?;
    let (_, rest) = read_var_uint(rest)?;
    let (len, update) = read_var_uint(rest)?;
    // Trailing bytes after the update: not ours to reinterpret.
    (usize::try_from(len).ok()? == update.len()).then_some((prefix, update))
}

/// Whether the hub counts `msg` in its acks (the same test the hub makes:
/// a binary frame whose message is a sync step 2 or update).
fn carries_update(msg: &Message) -> bool {
    let Message::Binary(frame) = msg else { return false };
    split(frame).ok().and_then(|(_, message)| message_kind(message)).is_some_and(MessageKind::carries_update)
}

/// Merges runs of consecutive sync updates to the same document in
/// `batch`, keeping every other frame where it was. A run that yrs cannot
/// merge is sent as it came.
pub(crate) fn coalesce(batch: Vec<Message>) -> Vec<Wire> {
    let mut out = Vec::with_capacity(batch.len());
    let mut run: Vec<Message> = Vec::new();
    // The doc-id prefix length of the run's frames, and its update bytes.
    let (mut run_prefix, mut run_bytes) = (0, 0);
    for msg in batch {
        let update = match &msg {
            Message::Binary(frame) => sync_update(frame).map(|(prefix, update)| (prefix.len(), update.len())),
            _ => None,
        };
        let Some((prefix, len)) = update else {
            flush_run(&mut run, &mut out);
            let updates = u64::from(carries_update(&msg));
            out.push(Wire { msg, updates, windowed: false });
            continue;
        };
        let same_doc = matches!(
            (&msg, run.first()),
            (Message::Binary(next), Some(Message::Binary(first))) if next[..prefix] == first[..run_prefix]
        );
        if !same_doc || run_bytes + len > MAX_RUN_BYTES {
            flush_run(&mut run, &mut out);
            run_bytes = 0;
        }
        run_prefix = prefix;
        run_bytes += len;
        run.push(msg);
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<Message>, out: &mut Vec<Wire>) {
    match run.len() {
        0 => {}
        1 => out.extend(run.drain(..).map(|msg| Wire { msg, updates: 1, windowed: true })),
        n => match merge(run) {
            Some(frame) => {
                run.clear();
                out.push(Wire { msg: Message::Binary(frame.into()), updates: n as u64, windowed: true });
            }
            None => out.extend(run.drain(..).map(|msg| Wire { msg, updates: 1, windowed: true })),
        },
    }
}

/// One frame holding the merge of the run's updates (all sync updates to
/// one document); `None` if yrs refuses (or panics on) any of them.
fn merge(run: &[Message]) -> Option<Vec<u8>> {
    let mut prefix: &[u8] = &[];
    let mut updates = Vec::with_capacity(run.len());
    for msg in run {
        let Message::Binary(frame) = msg else { return None };
        let (p, update) = sync_update(frame)?;
        prefix = p;
        updates.push(update);
    }
    let merged = std::panic::catch_unwind(|| yrs::merge_updates_v1(&updates));
    let merged = match merged {
        Ok(Ok(merged)) => merged,
        Ok(Err(err)) => {
            tracing::warn!(%err, frames = run.len(), "cannot merge queued updates; sending them one by one");
            return None;
        }
        Err(_) => {
            tracing::warn!(frames = run.len(), "merging queued updates panicked inside yrs; sending them one by one");
            return None;
        }
    };
    let mut frame = Vec::with_capacity(prefix.len() + merged.len() + 8);
    frame.extend_from_slice(prefix);
    write_var_uint(&mut frame, MSG_SYNC);
    write_var_uint(&mut frame, SYNC_UPDATE);
    write_var_uint(&mut frame, merged.len() as u64);
    frame.extend_from_slice(&merged);
    Some(frame)
}

/// Translates the hub's acks (counting update-carrying frames on the
/// wire) into counts of the frames the link's user queued. One per
/// connection: both counts start at 0 with each welcome.
#[derive(Debug, Default)]
pub(crate) struct Seqs {
    wire: u64,
    queued: u64,
    /// `(wire seq, queued seq, windowed)` of every update-carrying frame
    /// written and not yet acknowledged.
    pending: VecDeque<(u64, u64, bool)>,
    /// How many of `pending` are windowed.
    windowed: usize,
}

impl Seqs {
    /// Records that `wire` was written.
    pub fn sent(&mut self, wire: &Wire) {
        if wire.updates > 0 {
            self.wire += 1;
            self.queued += wire.updates;
            self.pending.push_back((self.wire, self.queued, wire.windowed));
            self.windowed += usize::from(wire.windowed);
        }
    }

    /// Sync-update frames written and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.windowed
    }

    /// The queued count that the hub's `ack` of `seq` wire frames covers;
    /// `None` if it covers nothing new.
    pub fn acked(&mut self, seq: u64) -> Option<u64> {
        let mut covered = None;
        while let Some(&(wire, queued, windowed)) = self.pending.front() {
            if wire > seq {
                break;
            }
            covered = Some(queued);
            self.windowed -= usize::from(windowed);
            self.pending.pop_front();
        }
        covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_protocol::DocId;
    use weft_protocol::frame::join;
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact, Update};

    fn update_frame(doc: &str, update: &[u8]) -> Message {
        let mut message = Vec::new();
        write_var_uint(&mut message, MSG_SYNC);
        write_var_uint(&mut message, SYNC_UPDATE);
        write_var_uint(&mut message, update.len() as u64);
        message.extend_from_slice(update);
        Message::Binary(join(&DocId::new(doc).expect("doc id"), &message).into())
    }

    /// Edits on one doc, one update per edit, typed and deleted at
    /// pseudo-random places (a fixed LCG: the same run every time).
    fn keystrokes(doc: &Doc, n: usize, seed: u64) -> Vec<Vec<u8>> {
        let text = doc.get_or_insert_text("t");
        let mut state = seed;
        let mut next = move |m: u32| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as u32) % m.max(1)
        };
        let mut out = Vec::new();
        for _ in 0..n {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            if len > 0 && next(4) == 0 {
                let at = next(len);
                text.remove_range(&mut txn, at, 1);
            } else {
                let at = next(len + 1);
                text.insert(&mut txn, at, if next(2) == 0 { "x" } else { "ab\n" });
            }
            out.push(txn.encode_update_v1());
        }
        out
    }

    fn text_of(frames: &[Message], doc: &str) -> String {
        let target = Doc::new();
        let text = target.get_or_insert_text("t");
        for msg in frames {
            let Message::Binary(frame) = msg else { continue };
            let (id, _) = split(frame).expect("frame");
            let Some((_, update)) = sync_update(frame).filter(|_| id.as_str() == doc) else { continue };
            target.transact_mut().apply_update(Update::decode_v1(update).expect("decode")).expect("apply");
        }
        let txn = target.transact();
        assert!(txn.store().pending_update().is_none(), "the merged updates left something pending");
        text.get_string(&txn)
    }

    #[test]
    fn a_run_of_updates_becomes_one_frame_with_the_same_content() {
        let source = Doc::with_client_id(7);
        let updates = keystrokes(&source, 500, 1);
        let batch: Vec<Message> = updates.iter().map(|u| update_frame("src/a.rs", u)).collect();
        let wire = coalesce(batch.clone());
        assert_eq!(wire.len(), 1);
        assert_eq!(wire[0].updates, 500);
        let expected = source.get_or_insert_text("t").get_string(&source.transact());
        let merged: Vec<Message> = wire.into_iter().map(|w| w.msg).collect();
        assert_eq!(text_of(&merged, "src/a.rs"), expected);
        assert_eq!(text_of(&batch, "src/a.rs"), expected);
    }

    #[test]
    fn other_frames_are_barriers_and_keep_their_place() {
        let a = Doc::with_client_id(1);
        let b = Doc::with_client_id(2);
        let ua = keystrokes(&a, 30, 2);
        let ub = keystrokes(&b, 30, 3);
        let awareness = Message::Binary(join(&DocId::session(), &[1, 1, 0]).into());
        let step1 = Message::Binary(join(&DocId::new("b.rs").expect("id"), &[0, 0, 1, 0]).into());
        let control = Message::Text(r#"{"type":"x"}"#.into());
        let mut batch = Vec::new();
        batch.extend(ua[..10].iter().map(|u| update_frame("a.rs", u)));
        batch.extend(ub[..5].iter().map(|u| update_frame("b.rs", u)));
        batch.push(awareness.clone());
        batch.extend(ua[10..20].iter().map(|u| update_frame("a.rs", u)));
        batch.push(step1.clone());
        batch.push(update_frame("a.rs", &ua[20]));
        batch.push(control.clone());
        batch.extend(ua[21..].iter().map(|u| update_frame("a.rs", u)));
        batch.extend(ub[5..].iter().map(|u| update_frame("b.rs", u)));
        let wire = coalesce(batch);
        let counts: Vec<u64> = wire.iter().map(|w| w.updates).collect();
        assert_eq!(counts, [10, 5, 0, 10, 0, 1, 0, 9, 25]);
        assert_eq!(wire[2].msg, awareness);
        assert_eq!(wire[4].msg, step1);
        assert_eq!(wire[6].msg, control);
        let frames: Vec<Message> = wire.into_iter().map(|w| w.msg).collect();
        assert_eq!(text_of(&frames, "a.rs"), a.get_or_insert_text("t").get_string(&a.transact()));
        assert_eq!(text_of(&frames, "b.rs"), b.get_or_insert_text("t").get_string(&b.transact()));
    }

    #[test]
    fn updates_from_several_clients_and_a_bad_one_in_a_run() {
        // Two clients' updates interleaved (as a bridge sends after a
        // replica is recreated), merged in one run.
        let a = Doc::with_client_id(11);
        let ua = keystrokes(&a, 40, 4);
        let b = Doc::with_client_id(12);
        for u in &ua[..20] {
            b.transact_mut().apply_update(Update::decode_v1(u).expect("decode")).expect("apply");
        }
        let ub = keystrokes(&b, 20, 5);
        let mut batch: Vec<Message> = ua[..20].iter().map(|u| update_frame("d", u)).collect();
        batch.extend(ub.iter().map(|u| update_frame("d", u)));
        let wire = coalesce(batch);
        assert_eq!(wire.len(), 1);
        let frames: Vec<Message> = wire.into_iter().map(|w| w.msg).collect();
        assert_eq!(text_of(&frames, "d"), b.get_or_insert_text("t").get_string(&b.transact()));

        // Garbage inside a run: nothing is merged, nothing is lost.
        let mut batch: Vec<Message> = ua[..3].iter().map(|u| update_frame("d", u)).collect();
        batch.push(update_frame("d", &[0xff, 0xff, 0xff]));
        let wire = coalesce(batch.clone());
        assert_eq!(wire.iter().map(|w| w.updates).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert_eq!(wire.into_iter().map(|w| w.msg).collect::<Vec<_>>(), batch);
    }

    #[test]
    fn acks_are_translated_to_queued_frames() {
        let mut seqs = Seqs::default();
        let update = |updates, windowed| Wire { msg: Message::Binary(Vec::new().into()), updates, windowed };
        for (n, windowed) in [(3, true), (0, false), (1, false), (5, true), (0, false), (2, true)] {
            seqs.sent(&update(n, windowed));
        }
        // Wire frames 1..=4 carry 3, 1 (a step 2), 5, 2 queued updates.
        assert_eq!(seqs.in_flight(), 3);
        assert_eq!(seqs.acked(0), None);
        assert_eq!(seqs.acked(1), Some(3));
        assert_eq!(seqs.in_flight(), 2);
        assert_eq!(seqs.acked(2), Some(4));
        assert_eq!(seqs.in_flight(), 2);
        assert_eq!(seqs.acked(1), None);
        assert_eq!(seqs.acked(3), Some(9));
        assert_eq!(seqs.acked(4), Some(11));
        assert_eq!(seqs.acked(9), None);
    }
}
