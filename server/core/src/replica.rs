//! One editor buffer mirrored into one shared `Y.Text`: the bridge's
//! document state machine, sans-IO.
//!
//! Three texts are tracked exactly:
//! * `shadow` — what the editor holds at `version`, rebuilt from its
//!   `didOpen`/`didChange` stream (its hash can be checked with `verify`);
//! * `crdt` — a rope mirror of the `Y.Text`, which is the shared truth;
//! * the remote changes not yet in the editor, as OT change sets:
//!   `crdt == unsent(sent(shadow))`.
//!
//! A remote update is composed onto `unsent`. `unsent` goes to the editor
//! as one versioned edit (`sent`), one at a time. A change from the editor
//! is either the echo of `sent` — recognised by the text it produces, since
//! editors may split, merge or trim what they apply — or the user's own
//! edit, which is transformed through everything the editor has not seen
//! and applied to the `Y.Text` (so the editor never needs our edit to have
//! landed first). A refused edit is simply folded back into `unsent` and
//! sent again once the editor's newer changes are in. Every step is
//! O(edit · log n). See docs/decisions/0005-ot-at-the-edge.md.
//!
//! This module knows no LSP types, no sockets and no clock.

use std::sync::{Arc, Mutex};

use ropey::Rope;
use sha2::{Digest, Sha256};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::types::Delta;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{
    Any, ClientID, Doc, GetString, IndexedSequence, Observable, OffsetKind, Options, Origin, Out, ReadTxn, StateVector,
    Text, TextRef, Transact, Update,
};

use crate::CONTENT_TEXT;
use crate::changeset::{ChangeSet, Mismatch};
use crate::held::{Held, Outcome};
use crate::positions::{self, Encoding, LineEnding, Pos};

const LOCAL: &str = "weft-local";
/// Repairs attempted in a row before the user is asked to reopen the file.
pub const MAX_REPAIRS: u32 = 3;
const REMOTE: &str = "weft-remote";

/// A change the editor reported: a range in its encoding (`None` = the
/// whole document) and the new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorChange {
    pub range: Option<(Pos, Pos)>,
    pub text: String,
}

/// An edit for the editor to apply if its buffer is still at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditRequest {
    /// Correlates the editor's answer ([`Replica::edit_answered`]).
    pub id: u64,
    pub version: i32,
    /// Non-overlapping ranges of the editor's current text, ascending.
    pub edits: Vec<(Pos, Pos, String)>,
}

/// Something the bridge should tell the user or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Show this to the user (read-only refusal, repaired divergence).
    Show(String),
    /// Log this as a warning (bad input that was survived).
    Warn(String),
}

/// Why a replica could not take an input.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("malformed sync message: {0}")]
    Malformed(String),
    #[error("update could not be applied: {0}")]
    Update(String),
    #[error("internal state error: {0}")]
    State(#[from] Mismatch),
}

#[derive(Debug)]
enum Sent {
    /// An incremental edit of the shadow.
    Edit { id: u64, change: ChangeSet },
    /// A whole-buffer replacement after divergence: the editor's text is
    /// unknown until it answers. `echo_seen` records whether a change came
    /// in meanwhile (then it was the repair's own echo, or the repair will
    /// be refused as stale).
    Full { id: u64, text: Rope, echo_seen: bool },
}

/// How an editor that keeps one line ending per buffer (VS Code) sees the
/// shared text: every line break written as `eol` (see
/// [`Replica::with_line_ending`]).
#[derive(Debug)]
struct Translation {
    eol: LineEnding,
    /// The `Y.Text`'s exact text (`crdt` is its translation).
    shared: Rope,
}

/// Remote text deltas captured by the observer, in UTF-16 units.
type Captured = Arc<Mutex<Vec<Vec<DeltaOp>>>>;

#[derive(Debug, Clone)]
enum DeltaOp {
    Retain(u32),
    Delete(u32),
    Insert(String),
}

/// The bridge's state for one document open in one editor.
pub struct Replica {
    doc: Doc,
    /// Remote updates that arrived before what they build on.
    held: Held,
    text: TextRef,
    enc: Encoding,
    /// The shared text as the editor sees it: the `Y.Text`'s text, or that
    /// text with translated line breaks when `translation` is set.
    crdt: Rope,
    /// For an editor that rewrites line breaks: its line ending and the
    /// exact shared text.
    translation: Option<Translation>,
    shadow: Rope,
    version: i32,
    sent: Option<Sent>,
    unsent: ChangeSet,
    next_id: u64,
    /// Whether the first sync with the hub completed.
    synced: bool,
    /// A repair was applied before its echo arrived: the next change is
    /// that echo and is skipped (its ranges refer to the unknown text).
    skip_echo: bool,
    /// A repair was refused: send a new one (the shadow is not trusted).
    repair_pending: bool,
    /// Repairs in a row that did not help (no other change between them).
    repairs: u32,
    /// Editor changes since the last repair was sent.
    changes_since_repair: u32,
    read_only: bool,
    /// Set when an edit was refused: wait for the editor's next change (or
    /// an explicit retry) before sending again.
    hold: bool,
    captured: Captured,
    outbox: Arc<Mutex<Vec<Vec<u8>>>>,
    notices: Vec<Notice>,
    /// Editor changes that were the user's own (see [`Replica::typed`]).
    typed: u64,
    /// Until synced: the text the editor opened with and the user's edits
    /// since, so they can be replayed onto the shared text at sync.
    opened: Rope,
    pre_sync: ChangeSet,
    /// At the first sync, the editor's text replaces the shared text (a
    /// file created anew at a path whose document held older text).
    replace_on_sync: bool,
    /// At the first sync, the shared text wins even when it is empty: the
    /// editor's text is never uploaded (content nobody chose to share).
    shared_wins: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("version", &self.version)
            .field("synced", &self.synced)
            .field("shadow_len", &self.shadow.len_chars())
            .field("crdt_len", &self.crdt.len_chars())
            .field(
                "sent",
                &self.sent.as_ref().map(|s| match s {
                    Sent::Edit { id, .. } => format!("edit #{id}"),
                    Sent::Full { id, .. } => format!("repair #{id}"),
                }),
            )
            .field("unsent_identity", &self.unsent.is_identity())
            .field("hold", &self.hold)
            .field("repair_pending", &self.repair_pending)
            .field("skip_echo", &self.skip_echo)
            .finish()
    }
}

fn delta_ops(delta: &[Delta<Out>]) -> Vec<DeltaOp> {
    delta
        .iter()
        .map(|d| match d {
            Delta::Retain(n, _) => DeltaOp::Retain(*n),
            Delta::Deleted(n) => DeltaOp::Delete(*n),
            Delta::Inserted(Out::Any(Any::String(s)), _) => DeltaOp::Insert(s.to_string()),
            // An embed counts as one unit in a Y.Text; show it as U+FFFC.
            Delta::Inserted(_, _) => DeltaOp::Insert("\u{FFFC}".to_owned()),
        })
        .collect()
}

impl Replica {
    /// A replica for a buffer the editor just opened with `text` at
    /// `version`. It is not synced: call [`Replica::handle_sync`] with the
    /// hub's messages, or [`Replica::mark_synced`] if there is no hub.
    pub fn new(client_id: u64, enc: Encoding, version: i32, text: &str) -> Replica {
        let doc = Doc::with_options(Options {
            client_id: ClientID::new(client_id),
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        });
        let ytext = doc.get_or_insert_text(CONTENT_TEXT);
        let captured: Captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        ytext.observe(LOCAL, move |txn, event| {
            let remote = txn.origin().is_none_or(|o| *o != Origin::from(LOCAL));
            if remote && let Ok(mut out) = sink.lock() {
                out.push(delta_ops(event.delta(txn)));
            }
        });
        let outbox = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&outbox);
        let observed = doc.observe_update_v1(LOCAL, move |txn, event| {
            if txn.origin().is_some_and(|o| *o == Origin::from(LOCAL))
                && let Ok(mut out) = sink.lock()
            {
                out.push(event.update.clone());
            }
        });
        if let Err(err) = observed {
            tracing::error!(%err, "could not observe a fresh document");
        }
        let shadow = Rope::from_str(text);
        Replica {
            doc,
            held: Held::default(),
            text: ytext,
            enc,
            crdt: Rope::new(),
            translation: None,
            unsent: ChangeSet::identity(0),
            version,
            sent: None,
            next_id: 1,
            synced: false,
            skip_echo: false,
            repair_pending: false,
            repairs: 0,
            changes_since_repair: 0,
            read_only: false,
            hold: false,
            captured,
            outbox,
            notices: Vec::new(),
            opened: shadow.clone(),
            pre_sync: ChangeSet::identity(shadow.len_chars()),
            replace_on_sync: false,
            shared_wins: false,
            typed: 0,
            shadow,
        }
        .with_unsent_reset()
    }

    /// For an editor that rewrites the line breaks of every edit it
    /// applies to the one line ending its buffer keeps (VS Code, which
    /// announces `workspaceEdit.normalizesLineEndings`): the editor is
    /// shown the shared text with every line break written as `eol`, and
    /// line breaks it types reach the shared text as the line ending of
    /// the line they are typed in. The shared text keeps what each writer
    /// wrote (a CRLF file stays CRLF beside an LF editor), and no edit ever
    /// comes back rewritten, which otherwise looped (decision 0005). Call
    /// it right after [`Replica::new`]; `None` changes nothing.
    pub fn with_line_ending(mut self, eol: impl Into<Option<LineEnding>>) -> Replica {
        if let Some(eol) = eol.into() {
            self.translation = Some(Translation { eol, shared: self.crdt.clone() });
        }
        self
    }

    /// The line ending the editor is shown, if line breaks are translated.
    pub fn line_ending(&self) -> Option<LineEnding> {
        self.translation.as_ref().map(|t| t.eol)
    }

    /// The exact shared text as a rope (what `Y.Text` offsets count).
    fn shared_rope(&self) -> &Rope {
        self.translation.as_ref().map_or(&self.crdt, |t| &t.shared)
    }

    fn with_unsent_reset(mut self) -> Replica {
        // Until synced, the editor's text is not in the CRDT; `unsent` maps
        // the shadow to the (empty) CRDT so the invariant holds throughout.
        self.unsent = diff(&self.shadow, &self.crdt);
        self
    }

    /// Makes the first sync replace the shared text with the editor's
    /// (instead of "the shared text wins"): for a file created anew.
    pub fn set_replace_on_sync(&mut self) {
        self.replace_on_sync = true;
    }

    /// Makes the first sync bring the editor to the shared text even if that
    /// is empty, never uploading the editor's text.
    pub fn set_shared_wins(&mut self) {
        self.shared_wins = true;
    }

    /// Refuses local edits from now on (viewer links).
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
    }

    /// A sticky (relative) index for the editor position `pos`, encoded
    /// with yrs's v1 encoding (Yjs's `encodeRelativePosition`): it stays on
    /// the same character while others type before it. `None` before the
    /// first sync or while a whole-buffer repair is in flight (the editor's
    /// text is unknown then).
    pub fn sticky_at(&self, pos: Pos) -> Option<Vec<u8>> {
        if !self.synced {
            return None;
        }
        let mut at = positions::to_char(&self.shadow, pos, self.enc).char_index;
        match &self.sent {
            Some(Sent::Edit { change, .. }) => at = change.map_forward(at),
            Some(Sent::Full { .. }) => return None,
            None => {}
        }
        let at = self.unsent.map_forward(at).min(self.crdt.len_chars());
        let at = match &self.translation {
            Some(t) => positions::shared_offset(&self.crdt, &t.shared, at),
            None => at,
        };
        let utf16 = positions::char_to_utf16(self.shared_rope(), at);
        let txn = self.doc.transact();
        // Stick to the character after; at the very end (or in an empty
        // text) there is none, so stick to the one before (or the start).
        let index = self
            .text
            .sticky_index(&txn, utf16, yrs::Assoc::After)
            .or_else(|| self.text.sticky_index(&txn, utf16, yrs::Assoc::Before))?;
        Some(index.encode_v1())
    }

    /// The editor position a sticky index from [`Replica::sticky_at`] (any
    /// peer's) points at now, in the editor's own text: a position in text
    /// the editor has not received yet lands where that text will go.
    /// `None` if the index cannot be read or its character is not in this
    /// document yet (its update is still on its way).
    pub fn resolve_sticky(&self, encoded: &[u8]) -> Option<Pos> {
        if !self.synced {
            return None;
        }
        let index = yrs::StickyIndex::decode_v1(encoded).ok()?;
        let txn = self.doc.transact();
        let offset = index.get_offset(&txn)?;
        if offset.branch.id() != AsRef::<yrs::branch::Branch>::as_ref(&self.text).id() {
            return None;
        }
        let at = positions::utf16_to_char(self.shared_rope(), offset.index as usize);
        let at = match &self.translation {
            Some(t) => positions::translated_offset(&t.shared, &self.crdt, at),
            None => at,
        };
        let mut at = self.unsent.map_back(at);
        match &self.sent {
            Some(Sent::Edit { change, .. }) => at = change.map_back(at),
            Some(Sent::Full { .. }) => return None,
            None => {}
        }
        Some(positions::to_pos(&self.shadow, at.min(self.shadow.len_chars()), self.enc))
    }

    /// The text the editor holds, as the bridge believes.
    pub fn editor_text(&self) -> String {
        self.shadow.to_string()
    }

    /// The shared text.
    pub fn shared_text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// The editor's version the bridge last saw.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// Whether the first sync with the hub completed.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Whether the editor holds the shared text (nothing in flight or queued).
    pub fn is_settled(&self) -> bool {
        self.synced && self.sent.is_none() && self.unsent.is_identity() && !self.repair_pending
    }

    /// The yrs document (read it; change it only through this type).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// Sync step 1 for the hub.
    pub fn step1(&self) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep1(self.doc.transact().state_vector())).encode_v1()
    }

    /// Local updates to send to the hub since the last call.
    pub fn take_updates(&mut self) -> Vec<Vec<u8>> {
        self.outbox.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Notices since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Handles a y-protocols message from the hub; returns replies for it.
    /// The first step 2 completes the initial sync.
    pub fn handle_sync(&mut self, message: &[u8]) -> Result<Vec<Vec<u8>>, ReplicaError> {
        let mut replies = Vec::new();
        let mut decoder = DecoderV1::new(Cursor::new(message));
        for msg in MessageReader::new(&mut decoder) {
            match msg.map_err(|e| ReplicaError::Malformed(e.to_string()))? {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                    replies.push(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1());
                }
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    self.apply_remote(&update)?;
                    if !self.synced {
                        self.mark_synced()?;
                    }
                }
                Message::Sync(SyncMessage::Update(update)) => {
                    // Built on something this replica never got (lost with
                    // a dropped connection): ask the hub for what is
                    // missing, once until it arrives (see crate::held).
                    let outcome = self.integrate(&update)?;
                    if outcome == (Outcome::Held { first: true }) {
                        let sv = self.doc.transact().state_vector();
                        replies.push(Message::Sync(SyncMessage::SyncStep1(sv)).encode_v1());
                    }
                }
                // Presence and auth are handled above this layer.
                _ => {}
            }
        }
        Ok(replies)
    }

    /// Integrates a remote v1 update.
    pub fn apply_remote(&mut self, update: &[u8]) -> Result<(), ReplicaError> {
        self.integrate(update).map(|_| ())
    }

    /// [`Replica::apply_remote`], saying whether the update is held for
    /// missing dependencies ([`crate::held`]).
    fn integrate(&mut self, raw: &[u8]) -> Result<Outcome, ReplicaError> {
        let update = Update::decode_v1(raw).map_err(|e| ReplicaError::Malformed(e.to_string()))?;
        let doc = &self.doc;
        let applied = self.held.apply(doc, raw, update, || doc.transact_mut_with(REMOTE));
        // What yrs integrated before refusing a bad update is in the
        // document: bring the editor to it before reporting the error.
        let outcome = self.take_remote_deltas().and(applied.map_err(|e| ReplicaError::Update(e.to_string())))?;
        Ok(outcome)
    }

    /// Turns the remote changes captured since the last call into editor
    /// changes.
    fn take_remote_deltas(&mut self) -> Result<(), ReplicaError> {
        let deltas = self.captured.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
        for delta in deltas {
            let change = self.delta_to_change(&delta);
            let change = self.apply_shared(change)?;
            self.unsent = self.unsent.compose(&change)?;
        }
        Ok(())
    }

    /// Converts a UTF-16 delta over the current `crdt` into a char change set.
    fn delta_to_change(&self, delta: &[DeltaOp]) -> ChangeSet {
        let mut cs = ChangeSet::identity(0);
        let mut at = 0usize; // char index into crdt (pre-change)
        for op in delta {
            match op {
                DeltaOp::Retain(n) => {
                    let end = positions::utf16_to_char(
                        self.shared_rope(),
                        positions::char_to_utf16(self.shared_rope(), at) as usize + *n as usize,
                    );
                    cs.retain(end - at);
                    at = end;
                }
                DeltaOp::Delete(n) => {
                    let end = positions::utf16_to_char(
                        self.shared_rope(),
                        positions::char_to_utf16(self.shared_rope(), at) as usize + *n as usize,
                    );
                    cs.delete(end - at);
                    at = end;
                }
                DeltaOp::Insert(s) => cs.insert(s),
            }
        }
        cs.retain(self.shared_rope().len_chars() - at);
        cs
    }

    /// Applies `change` (of the exact shared text) to the shared rope and
    /// to `crdt`, and returns it as the editor sees it, over `crdt`: the
    /// same change when line breaks are not translated. O(edit): each edit is widened by a
    /// `\r` before or a `\n` after (where two line breaks can become one
    /// or one two), translated, and trimmed to what really changed.
    fn apply_shared(&mut self, change: ChangeSet) -> Result<ChangeSet, ReplicaError> {
        let Some(t) = &mut self.translation else {
            change.apply(&mut self.crdt)?;
            return Ok(change);
        };
        let mut shared = t.shared.clone();
        let mut view = self.crdt.clone();
        let mut total = ChangeSet::identity(view.len_chars());
        for (s, e, text) in change.edits().into_iter().rev() {
            let from = if s > 0 && shared.char(s - 1) == '\r' { s - 1 } else { s };
            let to = if e < shared.len_chars() && shared.char(e) == '\n' { e + 1 } else { e };
            let (vs, ve) =
                (positions::translated_offset(&shared, &view, from), positions::translated_offset(&shared, &view, to));
            let mut fragment = shared.slice(from..s).to_string();
            fragment.push_str(&text);
            fragment.extend(shared.slice(e..to).chars());
            ChangeSet::replace(shared.len_chars(), s, e - s, &text).apply(&mut shared)?;
            let old: Vec<char> = view.slice(vs..ve).chars().collect();
            let new: Vec<char> = t.eol.normalize(&fragment).chars().collect();
            let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
            let room = old.len().min(new.len()) - prefix;
            let suffix = old.iter().rev().zip(new.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
            let inserted: String = new[prefix..new.len() - suffix].iter().collect();
            let step = ChangeSet::replace(view.len_chars(), vs + prefix, old.len() - prefix - suffix, &inserted);
            step.apply(&mut view)?;
            total = total.compose(&step)?;
        }
        t.shared = shared;
        self.crdt = view;
        Ok(total)
    }

    /// Completes the initial sync: if the shared text is empty the
    /// editor's content becomes shared, otherwise the shared text wins and
    /// the editor is brought to it.
    pub fn mark_synced(&mut self) -> Result<(), ReplicaError> {
        if self.synced {
            return Ok(());
        }
        self.synced = true;
        if self.replace_on_sync && !self.read_only {
            // The editor's text becomes the shared text, whatever it held.
            let change = diff(&self.crdt, &self.shadow);
            self.unsent = self.apply_local_to_crdt(&change)?;
        } else if self.shared_wins {
            self.unsent = diff(&self.shadow, &self.crdt);
        } else if self.crdt.len_chars() == 0 && self.shadow.len_chars() > 0 && !self.read_only {
            let content = self.shadow.to_string();
            let mut txn = self.doc.transact_mut_with(LOCAL);
            self.text.insert(&mut txn, 0, &content);
            drop(txn);
            match &mut self.translation {
                Some(t) => {
                    // The editor's text goes in as it is; it is shown
                    // translated (the same, unless it mixed line endings).
                    t.shared = self.shadow.clone();
                    self.crdt = Rope::from_str(&t.eol.normalize(&content));
                    self.unsent = diff(&self.shadow, &self.crdt);
                }
                None => {
                    self.crdt = self.shadow.clone();
                    self.unsent = ChangeSet::identity(self.shadow.len_chars());
                }
            }
        } else {
            // The shared text wins over what the editor opened with, but
            // keystrokes typed since are replayed onto it, never dropped.
            let to_shared = diff(&self.opened, &self.crdt);
            let pre = std::mem::replace(&mut self.pre_sync, ChangeSet::identity(0));
            let (typed, for_editor) = ChangeSet::transform(&pre, &to_shared)?;
            if !typed.is_identity() && !self.read_only {
                let correction = self.apply_local_to_crdt(&typed)?;
                self.unsent = for_editor.compose(&correction)?;
            } else {
                self.unsent = diff(&self.shadow, &self.crdt);
            }
        }
        self.opened = Rope::new();
        Ok(())
    }

    /// Applies a `didChange` from the editor.
    pub fn did_change(&mut self, version: i32, changes: &[EditorChange]) -> Result<(), ReplicaError> {
        if version <= self.version {
            self.notices.push(Notice::Warn(format!(
                "didChange version {version} is not newer than {}; applying it anyway",
                self.version
            )));
        }
        self.hold = false;
        self.changes_since_repair = self.changes_since_repair.saturating_add(1);
        if !self.synced {
            // Nothing is shared yet (the hub's state has not arrived): the
            // editor's text is only recorded, and decided on at sync.
            self.typed += changes.len() as u64;
            for change in changes {
                let (edit, notice) = to_change(&self.shadow, change, self.enc);
                self.notices.extend(notice);
                edit.apply(&mut self.shadow)?;
                self.pre_sync = self.pre_sync.compose(&edit)?;
            }
            // A buffer that stays unshared for long would grow this without
            // bound: past a cap, its current text counts as "opened".
            if self.pre_sync.ops().len() > 1024 {
                self.opened = self.shadow.clone();
                self.pre_sync = ChangeSet::identity(self.shadow.len_chars());
            }
            self.unsent = diff(&self.shadow, &self.crdt);
            self.version = version;
            return Ok(());
        }
        let mut rest = changes;
        if let Some(Sent::Full { echo_seen, .. }) = &mut self.sent {
            // The editor's text is unknown until it answers the repair; its
            // changes cannot be interpreted and are superseded by the repair.
            *echo_seen = true;
            self.version = version;
            return Ok(());
        }
        if std::mem::take(&mut self.skip_echo) || self.repair_pending {
            // The repair's own echo, or a change to a buffer whose text is
            // unknown until the pending repair lands: superseded by it.
            self.version = version;
            return Ok(());
        }
        if let Some(Sent::Edit { change, .. }) = &self.sent {
            let change = change.clone();
            if let Some(k) = self.echo_prefix(&change, changes)? {
                change.apply(&mut self.shadow)?;
                self.sent = None;
                rest = &changes[k..];
            }
        }
        // A change that is not the echo means the editor moved on: whatever
        // is in flight cannot apply any more (its version is stale).
        if !rest.is_empty()
            && let Some(Sent::Edit { change, .. }) = self.sent.take()
        {
            self.unsent = change.compose(&self.unsent)?;
        }
        self.typed += rest.len() as u64;
        for change in rest {
            let (edit, notice) = to_change(&self.shadow, change, self.enc);
            self.notices.extend(notice);
            self.local_edit(edit)?;
        }
        self.version = version;
        Ok(())
    }

    /// How many editor changes so far were the user's own (not echoes of
    /// remote edits): tells typing from an applied edit's report.
    pub fn typed(&self) -> u64 {
        self.typed
    }

    /// The number of leading `changes` whose combined effect equals `sent`
    /// applied to the shadow, if any.
    fn echo_prefix(&mut self, sent: &ChangeSet, changes: &[EditorChange]) -> Result<Option<usize>, ReplicaError> {
        let mut expected = self.shadow.clone();
        sent.apply(&mut expected)?;
        let base = self.shadow.clone();
        let mut probe = base.clone();
        let mut lo = usize::MAX;
        let mut hi_from_end = usize::MAX;
        let sent_edits = sent.edits();
        if let (Some(first), Some(last)) = (sent_edits.first(), sent_edits.last()) {
            lo = first.0;
            hi_from_end = base.len_chars() - last.1;
        }
        for (k, change) in changes.iter().enumerate() {
            let (edit, _) = to_change(&probe, change, self.enc);
            if let (Some(first), Some(last)) = (edit.edits().first(), edit.edits().last()) {
                lo = lo.min(first.0);
                hi_from_end = hi_from_end.min(probe.len_chars() - last.1);
            }
            edit.apply(&mut probe)?;
            if probe.len_chars() != expected.len_chars() {
                continue;
            }
            // Both results share the text before `lo` and after
            // `hi_from_end` chars from the end; compare only the middle.
            let start = lo.min(probe.len_chars());
            let end = probe.len_chars().saturating_sub(hi_from_end).max(start);
            if probe.slice(start..end) == expected.slice(start..end) {
                // Changes right after the match that change nothing (an
                // edit replacing text with the same text, reported on its
                // own) belong to the echo too.
                let mut taken = k + 1;
                for change in &changes[taken..] {
                    let (edit, _) = to_change(&probe, change, self.enc);
                    let noop = edit.edits().iter().all(|(s, e, t)| probe.slice(*s..*e) == t.as_str());
                    if !noop {
                        break;
                    }
                    taken += 1;
                }
                return Ok(Some(taken));
            }
        }
        // An empty report is the echo of an edit that changed nothing.
        if changes.is_empty() && expected == base {
            return Ok(Some(0));
        }
        Ok(None)
    }

    /// Applies a user edit of the shadow.
    fn local_edit(&mut self, edit: ChangeSet) -> Result<(), ReplicaError> {
        if edit.is_identity() {
            return Ok(());
        }
        if self.read_only {
            let inverse = invert(&edit, &self.shadow);
            edit.apply(&mut self.shadow)?;
            self.unsent = inverse.compose(&self.unsent)?;
            self.notices.push(Notice::Show(
                "This session is read-only for you (viewer link): your change was undone.".to_owned(),
            ));
            return Ok(());
        }
        let (for_crdt, for_editor) = ChangeSet::transform(&edit, &self.unsent)?;
        let correction = self.apply_local_to_crdt(&for_crdt)?;
        edit.apply(&mut self.shadow)?;
        self.unsent = for_editor.compose(&correction)?;
        Ok(())
    }

    /// Applies a change set of the crdt rope to the `Y.Text` as local edits.
    /// Returns the change that turns the expected text (`crdt` with
    /// `change` applied) into the text `crdt` now holds: identity, except
    /// when translated line breaks came out differently (a line break
    /// typed next to a lone `\r`); the caller hands it to the editor.
    fn apply_local_to_crdt(&mut self, change: &ChangeSet) -> Result<ChangeSet, ReplicaError> {
        let shared_change = match &self.translation {
            None => change.clone(),
            Some(t) => {
                // The same edits at the same lines and columns of the exact
                // text, their line breaks written as the line they land in
                // writes them.
                let mut out = ChangeSet::identity(0);
                let mut at = 0;
                for (s, e, text) in change.edits() {
                    let from = positions::shared_offset(&self.crdt, &t.shared, s).max(at);
                    let to = positions::shared_offset(&self.crdt, &t.shared, e).max(from);
                    let eol = positions::line_ending_at(&t.shared, from).unwrap_or(t.eol);
                    out.retain(from - at);
                    out.delete(to - from);
                    out.insert(&eol.normalize(&text));
                    at = to;
                }
                out.retain(t.shared.len_chars() - at);
                out
            }
        };
        let edits = shared_change.edits();
        {
            let shared = self.shared_rope();
            let mut txn = self.doc.transact_mut_with(LOCAL);
            // Apply from the end so earlier offsets stay valid.
            for (start, end, text) in edits.iter().rev() {
                let s = positions::char_to_utf16(shared, *start);
                let e = positions::char_to_utf16(shared, *end);
                if e > s {
                    self.text.remove_range(&mut txn, s, e - s);
                }
                if !text.is_empty() {
                    self.text.insert(&mut txn, s, text);
                }
            }
        }
        let before = self.crdt.clone();
        let actual = self.apply_shared(shared_change)?;
        if actual == *change {
            return Ok(ChangeSet::identity(change.target_len()));
        }
        let correction = invert(change, &before).compose(&actual)?;
        let mut expected = before;
        change.apply(&mut expected)?;
        // The same text reached another way (a line break inserted after
        // the one it was typed before, say) needs no correction; the
        // texts can differ only where the correction's edits are.
        let edits = correction.edits();
        let (lo, hi) = edits.iter().fold((usize::MAX, 0), |(lo, hi), (s, e, _)| (lo.min(*s), hi.max(*e)));
        if lo <= hi {
            let hi_actual = (hi + self.crdt.len_chars()).saturating_sub(expected.len_chars());
            if hi_actual >= lo && expected.slice(lo..hi) == self.crdt.slice(lo..hi_actual) {
                return Ok(ChangeSet::identity(change.target_len()));
            }
        }
        Ok(correction)
    }

    /// The next edit to send to the editor, if one is due.
    pub fn poll_edit(&mut self) -> Option<EditRequest> {
        if !self.synced || self.sent.is_some() || self.hold {
            return None;
        }
        if std::mem::take(&mut self.repair_pending) {
            return Some(self.repair());
        }
        if self.unsent.is_identity() {
            return None;
        }
        let change = std::mem::replace(&mut self.unsent, ChangeSet::identity(0));
        self.unsent = ChangeSet::identity(change.target_len());
        // Edits that replace text with the same text are never sent: editors
        // may drop them from their report, and they change nothing.
        let edits: Vec<(Pos, Pos, String)> = change
            .edits()
            .into_iter()
            .filter(|(s, e, text)| self.shadow.slice(*s..*e) != text.as_str())
            .map(|(s, e, text)| {
                let (s, e, text) = widen_past_crlf(&self.shadow, s, e, text);
                (positions::to_pos(&self.shadow, s, self.enc), positions::to_pos(&self.shadow, e, self.enc), text)
            })
            .collect();
        if edits.is_empty() {
            // Nothing visible: the editor already holds the result.
            if let Err(err) = change.apply(&mut self.shadow) {
                tracing::error!(%err, "a no-op change did not fit the editor text");
            }
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.sent = Some(Sent::Edit { id, change });
        Some(EditRequest { id, version: self.version, edits })
    }

    /// The editor's answer to edit `id`.
    pub fn edit_answered(&mut self, id: u64, applied: bool) -> Result<(), ReplicaError> {
        match self.sent.take() {
            Some(Sent::Edit { id: sent, change }) if sent == id => {
                if applied {
                    // The echo (a didChange) is still to come: keep waiting for it.
                    self.sent = Some(Sent::Edit { id: sent, change });
                } else {
                    self.unsent = change.compose(&self.unsent)?;
                    self.hold = true;
                }
            }
            Some(Sent::Full { id: sent, text, echo_seen }) if sent == id => {
                if applied {
                    self.shadow = text;
                    self.skip_echo = !echo_seen;
                } else {
                    // The editor's text is still unknown: repair again after
                    // its next change (or the retry tick).
                    self.repair_pending = true;
                    self.hold = true;
                }
            }
            other => self.sent = other,
        }
        Ok(())
    }

    /// Allows a refused edit to be sent again without waiting for a change;
    /// whether one was held back (only then can [`Replica::poll_edit`] have
    /// something new).
    pub fn retry(&mut self) -> bool {
        std::mem::take(&mut self.hold)
    }

    /// Checks the editor's hash of its buffer at `version`. On mismatch
    /// returns the edit that replaces the buffer with the shared text.
    pub fn verify(&mut self, version: i32, sha256_hex: &str) -> Option<EditRequest> {
        if version != self.version || self.sent.is_some() || !self.synced || self.repair_pending {
            return None;
        }
        let mine = sha256_hex_of(&self.shadow);
        if mine.eq_ignore_ascii_case(sha256_hex) {
            self.repairs = 0;
            return None;
        }
        if self.repairs >= MAX_REPAIRS && self.changes_since_repair <= 1 {
            if self.repairs == MAX_REPAIRS {
                self.repairs += 1;
                self.notices.push(Notice::Show(
                    "weft cannot bring this buffer back in line with the shared text; close and reopen the file."
                        .to_owned(),
                ));
            }
            return None;
        }
        // Only the repair's own echo since the last repair: it did not help.
        self.repairs = if self.changes_since_repair <= 1 { self.repairs + 1 } else { 1 };
        self.changes_since_repair = 0;
        self.notices.push(Notice::Warn(format!(
            "editor buffer diverged at version {version} (hash {sha256_hex}, expected {mine}); replacing it with the shared text"
        )));
        Some(self.repair())
    }

    /// A whole-buffer replacement with the shared text. The editor's real
    /// text is unknown, so the range ends at line 2³¹−1 (LSP's largest
    /// position), which editors clamp to their actual end: VS Code
    /// validates ranges that way and Neovim's `apply_text_edits` does too.
    fn repair(&mut self) -> EditRequest {
        let id = self.next_id;
        self.next_id += 1;
        let end = Pos { line: i32::MAX as u32, character: 0 };
        let text = self.crdt.clone();
        self.unsent = ChangeSet::identity(self.crdt.len_chars());
        self.sent = Some(Sent::Full { id, text: text.clone(), echo_seen: false });
        EditRequest { id, version: self.version, edits: vec![(Pos { line: 0, character: 0 }, end, text.to_string())] }
    }

    /// Encodes the whole shared state as one update (for tests and snapshots).
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc.transact().encode_state_as_update_v1(&StateVector::default())
    }
}

/// Converts one editor change, in `text`'s coordinates, to a change set;
/// a range that had to be clamped comes with a warning.
fn to_change(text: &Rope, change: &EditorChange, enc: Encoding) -> (ChangeSet, Option<Notice>) {
    let len = text.len_chars();
    let Some((start, end)) = change.range else {
        return (ChangeSet::replace(len, 0, len, &change.text), None);
    };
    let s = positions::to_char(text, start, enc);
    let e = positions::to_char(text, end, enc);
    let notice = (s.clamped || e.clamped || e.char_index < s.char_index).then(|| {
        Notice::Warn(format!("didChange range {start:?}..{end:?} is outside the document or inverted; clamped"))
    });
    let (a, b) = (s.char_index.min(e.char_index), s.char_index.max(e.char_index));
    (ChangeSet::replace(len, a, b - a, &change.text), notice)
}

/// The smallest single replacement turning `from` into `to` (common
/// prefix and suffix kept). O(n): used once per document open.
fn diff(from: &Rope, to: &Rope) -> ChangeSet {
    let (n, m) = (from.len_chars(), to.len_chars());
    let prefix = from.chars().zip(to.chars()).take_while(|(a, b)| a == b).count();
    let max_suffix = n.min(m) - prefix;
    let suffix =
        from.chars_at(n).reversed().zip(to.chars_at(m).reversed()).take(max_suffix).take_while(|(a, b)| a == b).count();
    let middle = to.slice(prefix..m - suffix).to_string();
    ChangeSet::replace(n, prefix, n - suffix - prefix, &middle)
}

/// Lower-case hex SHA-256 of a rope's UTF-8 text.
pub fn sha256_hex_of(rope: &Rope) -> String {
    let mut hasher = Sha256::new();
    for chunk in rope.chunks() {
        hasher.update(chunk.as_bytes());
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of `change`, given the text it applies to.
fn invert(change: &ChangeSet, base: &Rope) -> ChangeSet {
    let mut inv = ChangeSet::identity(0);
    let mut at = 0;
    for op in change.ops() {
        match op {
            crate::changeset::Op::Retain(n) => {
                inv.retain(*n);
                at += n;
            }
            crate::changeset::Op::Delete(n) => {
                inv.insert(&base.slice(at..at + n).to_string());
                at += n;
            }
            crate::changeset::Op::Insert(_, n) => inv.delete(*n),
        }
    }
    inv
}

/// An edit of `rope`'s chars `s..e` by `text`, widened so that neither end
/// falls between the `\r` and the `\n` of a line break: no LSP position
/// names that place ([`positions::splits_crlf`]; it would reach the editor
/// as the place before the `\r`, one char early). The widened edit takes
/// the whole pair and puts back the part it did not mean to change, so it
/// produces the same text. The edits of one change set are at least one kept
/// char apart, and widening takes only a kept `\r` before or `\n` after, so
/// widened edits may touch but never overlap. Where they touch, the char at
/// the shared place (a `\r` put back, or a kept `\n` before it) cannot be
/// inside a pair, so its position names the same place whether the other
/// edit was applied first or not (editors apply a request end to start).
fn widen_past_crlf(rope: &Rope, mut s: usize, mut e: usize, mut text: String) -> (usize, usize, String) {
    if positions::splits_crlf(rope, s) {
        s -= 1;
        text.insert(0, '\r');
    }
    if positions::splits_crlf(rope, e) {
        e += 1;
        text.push('\n');
    }
    (s, e, text)
}
