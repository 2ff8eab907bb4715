//! A directory mirrored with a session, both ways: the engine behind the
//! headless `weft share DIR` and `weft join LINK DIR`.
//!
//! The session doc (`_session`) holds the file tree in a `Y.Map` named
//! `files` (path → `{kind, size, exec, note?}`), written by the sharing
//! side. Every synced text file has its own doc. The disk is treated as an
//! editor of each file: a change found on disk is diffed against the last
//! synced content and handed to a [`Replica`] as a minimal ranged change;
//! edits from others come out of the replica as edits of the disk text,
//! which are written atomically. So the same OT-at-the-edge logic that
//! keeps editors consistent decides what happens when a tool writes a
//! file while a remote edit is on its way.
//!
//! Disk changes are found with a file watcher (inotify and the like,
//! through `notify`: one non-recursive watch per shared directory, so
//! ignored trees such as `target/` cost nothing) that names the files to
//! look at (size + mtime, then content) on the next tick; a full sweep
//! every few seconds catches whatever a watcher can miss (a full event
//! queue), and without a watcher the mirror polls every file each tick.
//! Creates, deletes and renames (delete + create) propagate; a restarted joiner merges three-way with the last
//! synced content kept under `.weft/base`. See
//! docs/decisions/0007-workspace-mirror.md for the rules and limits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, select};
use ropey::Rope;
use weft_client::fresh_client_id;
use weft_client::hub_link::{self, Credentials, HubEvent, HubLink};
use weft_core::held::{Held, Outcome};
use weft_core::positions::{Encoding, Pos};
use weft_core::replica::{EditorChange, Replica};
use weft_protocol::{ClientKind, DocId, Role, frame};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::types::ToJson;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;
use yrs::{Any, Doc, Map, MapRef, Observable, Origin, ReadTxn, Transact, Update};

use crate::scan::{EntryKind, ScanOptions, path_of, scan_new};
use crate::write::{Durability, write_atomic, write_file};

const LOCAL: &str = "weft-local";
/// How often the disk is checked for changes.
const TICK: Duration = Duration::from_millis(150);
/// Every how many ticks new files are looked for (a full scan) when no
/// watcher says where to look.
const RESCAN_EVERY: u32 = 10;
/// Every how many ticks every file is looked at, and the tree scanned
/// again, although the watcher said nothing: the safety net.
const SWEEP_EVERY: u32 = 40;
/// How often, at most, progress is reported while the tree is transferred.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Files whose subscription (our step 1) may wait for the hub's answer at
/// once. The hub answers each with at least two frames (its step 2 and its
/// step 1) into a per-peer queue it bounds (4,096 frames by default) and
/// disconnects a peer whose queue overflows, so thousands of step 1s sent
/// at once get this side disconnected, again at every reconnect.
const SUBSCRIBE_WINDOW: usize = 256;
/// A subscription the hub has not answered after this long frees its place
/// in the window (and is sent again, once, if the file never synced).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Which side of a session this mirror is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Shares its directory: publishes the tree and its files.
    Host,
    /// Joined with a link: materialises the tree, then syncs both ways.
    Guest,
}

/// How to reach the session.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    pub root: PathBuf,
    pub side: Side,
    /// `ws://HOST:PORT/ws/SESSION` or `wss://...`.
    pub url: String,
    /// Whom to trust for `wss://`, and whether plain `ws://` may leave
    /// this machine.
    pub tls: weft_client::tls::ClientTls,
    pub token: String,
    pub password: Option<String>,
    pub name: String,
    /// Overwrite local files that differ from the shared ones (guest).
    pub overwrite: bool,
    /// Extra ignore patterns for what this side shares (e.g. a session
    /// template's), on top of the ignore files.
    pub ignore: Vec<String>,
}

/// What the mirror's owner tells it while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorCommand {
    /// An editor opened this file: from now on the editor's buffer is the
    /// file's truth. The mirror stops reading and writing it on disk.
    Hold(DocId),
    /// The editor closed it: the disk follows the shared text again (the
    /// file is rewritten to it, whatever the disk holds, saved or not).
    Release(DocId),
    /// Stop now (Ctrl-C, leaving the session). Every write is atomic, so no
    /// file is left half-written.
    Stop,
}

/// What the mirror reports to its caller (the CLI prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorEvent {
    /// Connected with this role.
    Connected(Role),
    /// The first transfer of the tree: `done` of `total` text files are in
    /// place (guest) or durable on the hub (host). Reported at most every
    /// 100 ms until [`MirrorEvent::Ready`].
    Progress { done: usize, total: usize },
    /// The tree is in place (guest: every shared file written or kept).
    Ready { files: usize },
    /// A local file differs from the shared one and was left alone.
    Kept { path: String },
    /// A shared file cannot be written here (a directory or a file in the
    /// way, a name too long for this file system, a path that may not be
    /// written): it is not synced on this side. Reported once per path.
    Unwritable { path: String, reason: String },
    /// The connection dropped; reconnecting.
    Offline(String),
    /// The hub refused the session for good.
    Refused(String),
}

/// The `_session` document: a plain yrs doc synced with y-protocols.
struct SessionDoc {
    doc: Doc,
    /// Updates that arrived before what they build on.
    held: Held,
    files: MapRef,
    /// Tombstones: path → `{seen: {clientId: clock}}`, the state vector of
    /// the file's doc as the deleting side had it. An edit beyond it (one
    /// the deleter had not seen) wins over the delete.
    deleted: MapRef,
    outbox: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Paths whose `files` entry was added, changed or removed since the
    /// last [`SessionDoc::take_changed`], by any transaction (local or
    /// remote): what the mirror has to look at again.
    changed: Arc<Mutex<HashSet<String>>>,
    synced: bool,
}

impl SessionDoc {
    fn new(client_id: u64) -> SessionDoc {
        let doc = Doc::with_client_id(client_id);
        let files = doc.get_or_insert_map("files");
        let deleted = doc.get_or_insert_map("deleted");
        let outbox = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&outbox);
        let observed = doc.observe_update_v1(LOCAL, move |txn, e| {
            if txn.origin().is_some_and(|o| *o == Origin::from(LOCAL))
                && let Ok(mut out) = sink.lock()
            {
                out.push(e.update.clone());
            }
        });
        if let Err(err) = observed {
            tracing::error!(%err, "cannot observe the session doc");
        }
        let changed = Arc::new(Mutex::new(HashSet::new()));
        let sink = Arc::clone(&changed);
        files.observe(LOCAL, move |txn, event: &yrs::types::map::MapEvent| {
            if let Ok(mut out) = sink.lock() {
                out.extend(event.keys(txn).keys().map(|key| key.to_string()));
            }
        });
        SessionDoc { doc, held: Held::default(), files, deleted, outbox, changed, synced: false }
    }

    /// The paths whose entry changed since the last call.
    fn take_changed(&self) -> HashSet<String> {
        self.changed.lock().map(|mut set| std::mem::take(&mut *set)).unwrap_or_default()
    }

    fn step1(&self) -> Vec<u8> {
        Message::Sync(SyncMessage::SyncStep1(self.doc.transact().state_vector())).encode_v1()
    }

    fn handle(&mut self, message: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut replies = Vec::new();
        let mut decoder = DecoderV1::new(Cursor::new(message));
        for msg in MessageReader::new(&mut decoder) {
            match msg? {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    let diff = self.doc.transact().encode_state_as_update_v1(&sv);
                    replies.push(Message::Sync(SyncMessage::SyncStep2(diff)).encode_v1());
                }
                Message::Sync(SyncMessage::SyncStep2(u)) => {
                    let doc = &self.doc;
                    self.held.apply(doc, &u, Update::decode_v1(&u)?, || doc.transact_mut())?;
                    self.synced = true;
                }
                Message::Sync(SyncMessage::Update(u)) => {
                    let doc = &self.doc;
                    // Built on something lost with a dropped connection:
                    // ask the hub for what is missing (weft_core::held).
                    if self.held.apply(doc, &u, Update::decode_v1(&u)?, || doc.transact_mut())?
                        == (Outcome::Held { first: true })
                    {
                        replies.push(self.step1());
                    }
                }
                _ => {}
            }
        }
        Ok(replies)
    }

    fn take_updates(&self) -> Vec<Vec<u8>> {
        self.outbox.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// The published entry of `path`: (kind, executable), `None` if the
    /// tree does not list it (or lists something that is not an entry).
    fn entry(&self, path: &str) -> Option<(String, bool)> {
        let txn = self.doc.transact();
        let Any::Map(entry) = self.files.get(&txn, path)?.to_json(&txn) else { return None };
        let Some(Any::String(kind)) = entry.get("kind") else { return None };
        let exec = matches!(entry.get("exec"), Some(Any::Bool(true)));
        Some((kind.to_string(), exec))
    }

    /// Takes `path` out of the tree; `seen`: the state vector of its doc
    /// as this side deletes it (`None`: unknown, the delete is final).
    fn unpublish(&self, path: &str, seen: Option<&yrs::StateVector>) {
        let mut txn = self.doc.transact_mut_with(LOCAL);
        self.files.remove(&mut txn, path);
        if let Some(seen) = seen {
            let clocks: HashMap<String, Any> =
                seen.iter().map(|(client, clock)| (client.get().to_string(), Any::from(f64::from(*clock)))).collect();
            let tombstone = HashMap::from([("seen".to_owned(), Any::from(clocks))]);
            self.deleted.insert(&mut txn, path, Any::from(tombstone));
        }
    }

    /// Whether `doc` holds an edit the side that deleted `path` had not
    /// seen (its tombstone's state vector is behind `doc`'s).
    fn has_unseen_edits(&self, path: &str, doc: &Doc) -> bool {
        let txn = self.doc.transact();
        let Some(Any::Map(tombstone)) = self.deleted.get(&txn, path).map(|v| v.to_json(&txn)) else { return false };
        let Some(Any::Map(seen)) = tombstone.get("seen") else { return false };
        let mine = doc.transact().state_vector();
        mine.iter().any(|(client, clock)| {
            let theirs = match seen.get(&client.get().to_string()) {
                Some(Any::Number(n)) => n.as_f64().unwrap_or(0.0),
                _ => 0.0,
            };
            f64::from(*clock) > theirs
        })
    }

    fn publish(&self, path: &str, kind: &str, size: u64, exec: bool, note: Option<&str>) {
        let mut entry = HashMap::from([
            ("kind".to_owned(), Any::from(kind)),
            ("size".to_owned(), Any::from(size as f64)),
            ("exec".to_owned(), Any::from(exec)),
        ]);
        if let Some(note) = note {
            entry.insert("note".to_owned(), Any::from(note));
        }
        let mut txn = self.doc.transact_mut_with(LOCAL);
        self.files.insert(&mut txn, path, Any::from(entry));
        self.deleted.remove(&mut txn, path);
    }
}

/// One synced text file: its replica (the disk is its "editor").
struct FileState {
    replica: Replica,
    /// The text on disk as last read or written.
    disk: String,
    /// (size, mtime) at that moment, to notice changes cheaply.
    stamp: Option<(u64, SystemTime)>,
    exec: bool,
    /// Guest: written (or deliberately kept) after the first sync.
    materialised: bool,
    /// Guest: materialised, but the file does not exist here yet. The
    /// replica's first edit creates it with the shared text (an empty
    /// shared file is created by the flush), so a joined file is written
    /// once.
    absent: bool,
    /// The local file's difference from the shared text is not a conflict
    /// to keep apart: it was merged three-way with its saved base (after a
    /// restart), or an editor just released it (the shared text wins).
    merged: bool,
}

/// The mirror's state; [`run`] drives it.
pub struct Mirror {
    config: MirrorConfig,
    session: SessionDoc,
    files: HashMap<DocId, FileState>,
    link: HubLink,
    events: Receiver<HubEvent>,
    connected: bool,
    role: Option<Role>,
    ready: bool,
    ticks: u32,
    /// Update-carrying frames sent on the current connection, and the
    /// hub's latest ack of them (the host is ready once all are durable).
    sent_updates: u64,
    acked: u64,
    /// Files an editor holds ([`MirrorCommand::Hold`]): not on disk duty.
    held: HashSet<DocId>,
    /// Files whose replica may have output since the last flush.
    dirty: HashSet<DocId>,
    /// Subscription pacing (see [`SUBSCRIBE_WINDOW`]): files whose step 1
    /// is still to be sent on this connection, in order (an entry counts
    /// only while its id is in `queued`)...
    sync_queue: VecDeque<DocId>,
    queued: HashSet<DocId>,
    /// ...and files whose step 1 was sent and not answered yet (by the
    /// hub's step 2 or step 1, or an error about the file), with when it
    /// was sent: the window.
    in_flight: HashMap<DocId, Instant>,
    /// Files whose step 1 was sent and the hub's step 1 has not come yet
    /// (nor an error), with when: their own updates are held back, since
    /// the step 2 that answers the hub's step 1 carries them; so they are
    /// uploaded once.
    awaiting_step1: HashMap<DocId, Instant>,
    /// The last progress reported, and when.
    progress: Option<((usize, usize), Instant)>,
    /// The file watcher (`None`: polling), its events, and the directories
    /// it watches.
    watcher: Option<notify::RecommendedWatcher>,
    fs_events: Receiver<notify::Result<notify::Event>>,
    watched: HashSet<PathBuf>,
    /// Synced files the watcher named since the last tick.
    suspects: HashSet<DocId>,
    /// Shared paths this side leaves alone (kept local files, paths that
    /// may not or cannot be written here), until they leave the tree.
    apart: HashSet<DocId>,
    /// Events found where no reporter is at hand, reported after the flush.
    pending_reports: Vec<MirrorEvent>,
    /// The watcher saw something new (a file or directory not synced yet).
    rescan_due: bool,
}

/// (size, mtime) of a regular file; `None` if missing or not a regular
/// file (a symlink put in a synced file's place is never followed).
fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some((meta.len(), meta.modified().ok()?))
}

/// The text of a regular file (never through a symlink), if it is UTF-8.
fn read_regular(path: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// Whether a path from another peer may be written here: never into the
/// default-ignored directories (`.git/hooks`, `.weft/base`, ...).
fn acceptable_remote_path(doc: &DocId) -> bool {
    !doc.as_str().split('/').any(|part| crate::scan::DEFAULT_IGNORES.contains(&part))
}

/// The one ranged change turning `old` into `new` (common prefix and
/// suffix kept), in UTF-32 positions, or `None` if they are equal.
fn diff_change(old: &str, new: &str) -> Option<EditorChange> {
    if old == new {
        return None;
    }
    let rope = Rope::from_str(old);
    let (o, n): (Vec<char>, Vec<char>) = (old.chars().collect(), new.chars().collect());
    let mut prefix = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    // Never cut between \r and \n: that point has no line/column.
    let splits = |t: &[char], i: usize| i > 0 && i < t.len() && t[i - 1] == '\r' && t[i] == '\n';
    while prefix > 0 && (splits(&o, prefix) || splits(&n, prefix)) {
        prefix -= 1;
    }
    let max_suffix = o.len().min(n.len()) - prefix;
    let mut suffix = o.iter().rev().zip(n.iter().rev()).take(max_suffix).take_while(|(a, b)| a == b).count();
    while suffix > 0 && (splits(&o, o.len() - suffix) || splits(&n, n.len() - suffix)) {
        suffix -= 1;
    }
    let start = weft_core::positions::to_pos(&rope, prefix, Encoding::Utf32);
    let end = weft_core::positions::to_pos(&rope, o.len() - suffix, Encoding::Utf32);
    let text: String = n[prefix..n.len() - suffix].iter().collect();
    Some(EditorChange { range: Some((start, end)), text })
}

/// Applies an edit request (UTF-32 positions of `text`) to `text`.
fn apply_edits(text: &str, edits: &[(Pos, Pos, String)]) -> String {
    let mut rope = Rope::from_str(text);
    let resolved: Vec<(usize, usize, &str)> = edits
        .iter()
        .map(|(s, e, t)| {
            let s = weft_core::positions::to_char(&rope, *s, Encoding::Utf32).char_index;
            let e = weft_core::positions::to_char(&rope, *e, Encoding::Utf32).char_index;
            (s, e.max(s), t.as_str())
        })
        .collect();
    for (s, e, t) in resolved.into_iter().rev() {
        rope.remove(s..e);
        rope.insert(s, t);
    }
    rope.to_string()
}

impl Mirror {
    /// Prepares a mirror and starts its hub link on `runtime`.
    pub fn start(config: MirrorConfig, runtime: &tokio::runtime::Handle) -> anyhow::Result<Mirror> {
        std::fs::create_dir_all(&config.root).with_context(|| format!("cannot create {}", config.root.display()))?;
        let (tx, events) = crossbeam_channel::unbounded();
        let creds = Credentials {
            token: config.token.clone(),
            password: config.password.clone(),
            name: config.name.clone(),
            kind: ClientKind::User,
        };
        let link = hub_link::start(runtime, config.url.clone(), config.tls.clone(), creds, tx);
        let (fs_tx, fs_events) = crossbeam_channel::unbounded();
        let (watcher, fs_events) = match notify::recommended_watcher(fs_tx) {
            Ok(watcher) => (Some(watcher), fs_events),
            Err(err) => {
                tracing::warn!(%err, "no file watcher; polling the disk instead");
                // Its sender is gone: a closed channel would be "ready"
                // forever in `select!`.
                (None, crossbeam_channel::never())
            }
        };
        let mut mirror = Mirror {
            session: SessionDoc::new(fresh_client_id()),
            config,
            files: HashMap::new(),
            link,
            events,
            connected: false,
            role: None,
            ready: false,
            ticks: 0,
            sent_updates: 0,
            acked: 0,
            held: HashSet::new(),
            dirty: HashSet::new(),
            sync_queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashMap::new(),
            awaiting_step1: HashMap::new(),
            progress: None,
            watcher,
            fs_events,
            watched: HashSet::new(),
            suspects: HashSet::new(),
            apart: HashSet::new(),
            pending_reports: Vec::new(),
            rescan_due: false,
        };
        let root = mirror.config.root.clone();
        mirror.watch_dir(&root);
        if mirror.config.side == Side::Host {
            mirror.publish_tree()?;
        }
        Ok(mirror)
    }

    /// Host: scans the root, publishes the tree, and loads every text file.
    fn publish_tree(&mut self) -> anyhow::Result<()> {
        if self.role == Some(Role::Viewer) {
            return Ok(());
        }
        // Paths the session already has (including local files kept apart
        // after a conflict) are never re-published, nor read again.
        // Directories are listed anyway (no read), so one that came back is
        // watched again.
        let is_known = |doc: &DocId| {
            self.files.contains_key(doc) || self.session.entry(doc.as_str()).is_some_and(|(kind, _)| kind != "dir")
        };
        let options = ScanOptions { ignore: self.config.ignore.clone(), ..ScanOptions::default() };
        let entries = scan_new(&self.config.root, &options, &is_known)
            .with_context(|| format!("cannot list {}", self.config.root.display()))?;
        for entry in entries {
            let path = entry.path.as_str().to_owned();
            match &entry.kind {
                EntryKind::Text => {
                    self.session.publish(&path, "text", entry.size, entry.executable, None);
                    self.watch_parents(&entry.path);
                    if self.held.contains(&entry.path) {
                        // An editor's buffer carries this file's text.
                        continue;
                    }
                    let file = path_of(&self.config.root, &entry.path);
                    let Some(text) = read_regular(&file) else { continue };
                    let mut replica = Replica::new(fresh_client_id(), Encoding::Utf32, 0, &text);
                    // A file published here is new to the session: its text
                    // replaces whatever an earlier file at this path left.
                    replica.set_replace_on_sync();
                    let state = FileState {
                        replica,
                        disk: text,
                        stamp: stamp(&file),
                        exec: entry.executable,
                        materialised: true,
                        absent: false,
                        merged: false,
                    };
                    self.files.insert(entry.path.clone(), state);
                    if self.connected {
                        self.sync_file(&entry.path);
                    }
                }
                EntryKind::Unsynced { note } => {
                    self.session.publish(&path, "unsynced", entry.size, entry.executable, Some(note));
                }
                EntryKind::Dir => {
                    if self.session.entry(&path).is_none() {
                        self.session.publish(&path, "dir", 0, false, None);
                    }
                    self.watch_dir(&path_of(&self.config.root, &entry.path));
                }
                EntryKind::Symlink => {
                    self.session.publish(&path, "symlink", 0, false, Some("not synced: symbolic link"));
                }
            }
        }
        Ok(())
    }

    /// Where the last synced content of each file is kept (`.weft/` is
    /// never shared).
    fn base_dir(&self) -> PathBuf {
        self.config.root.join(".weft").join("base")
    }

    fn load_base(&self, doc: &DocId) -> Option<String> {
        std::fs::read_to_string(path_of(&self.base_dir(), doc)).ok()
    }

    /// Drops the saved base of a file deleted here (so that it coming back
    /// is not taken for "deleted while away").
    fn forget_base(&self, doc: &DocId) {
        let path = path_of(&self.base_dir(), doc);
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%err, %doc, "cannot remove the synced base of a deleted file");
        }
    }

    /// Keeps `text` as the last synced content of `doc`. Atomic, not
    /// `fsync`ed: a base only helps a restarted joiner merge, and the next
    /// sync of the file writes it again.
    fn save_base(&self, doc: &DocId, text: &str) {
        if let Err(err) = write_file(&self.base_dir(), doc, text.as_bytes(), false, Durability::Cached) {
            tracing::warn!(%err, %doc, "cannot save the synced base of a file");
        }
    }

    fn send(&mut self, doc: &DocId, message: &[u8]) {
        if frame::message_kind(message).is_some_and(frame::MessageKind::carries_update) {
            self.sent_updates += 1;
        }
        self.link.send(frame::join(doc, message));
    }

    /// Sends `updates` of `doc` as update messages.
    fn send_updates(&mut self, doc: &DocId, updates: Vec<Vec<u8>>) {
        for update in updates {
            self.send(doc, &weft_core::shared_doc::update_message(&update));
        }
    }

    /// Subscribes to `doc` on this connection: its step 1 is queued and
    /// sent as soon as the window has room ([`Mirror::pump_subscriptions`]).
    fn sync_file(&mut self, doc: &DocId) {
        if self.connected && !self.in_flight.contains_key(doc) && self.queued.insert(doc.clone()) {
            self.sync_queue.push_back(doc.clone());
        }
    }

    /// Sends queued step 1s while fewer than [`SUBSCRIBE_WINDOW`] files
    /// wait for the hub's answer.
    fn pump_subscriptions(&mut self) {
        while self.connected && self.in_flight.len() < SUBSCRIBE_WINDOW {
            let Some(doc) = self.sync_queue.pop_front() else { break };
            if !self.queued.remove(&doc) {
                continue;
            }
            let Some(step1) = self.files.get(&doc).map(|s| s.replica.step1()) else { continue };
            self.in_flight.insert(doc.clone(), Instant::now());
            self.awaiting_step1.insert(doc.clone(), Instant::now());
            self.send(&doc, &step1);
        }
    }

    /// `doc` is no longer subscribed on this side (given up, deleted, held
    /// by an editor): it leaves the queue and the window.
    fn forget_subscription(&mut self, doc: &DocId) {
        self.queued.remove(doc);
        self.in_flight.remove(doc);
        self.awaiting_step1.remove(doc);
    }

    /// Forgets every subscription (a new connection starts from none).
    fn reset_subscriptions(&mut self) {
        self.sync_queue.clear();
        self.queued.clear();
        self.in_flight.clear();
        self.awaiting_step1.clear();
    }

    /// Frees the window's places of subscriptions the hub has not answered
    /// in [`ANSWER_TIMEOUT`], so no answer that never comes stalls the rest.
    fn expire_subscriptions(&mut self) {
        let late: Vec<DocId> = self
            .in_flight
            .iter()
            .filter(|(_, sent)| sent.elapsed() >= ANSWER_TIMEOUT)
            .map(|(d, _)| d.clone())
            .collect();
        for doc in late {
            self.in_flight.remove(&doc);
            let synced = self.files.get(&doc).is_none_or(|s| s.replica.is_synced());
            tracing::warn!(%doc, synced, "the hub did not answer a subscription in time");
            if !synced {
                self.awaiting_step1.remove(&doc);
                self.sync_file(&doc);
            }
        }
        // Updates held for a step 1 that does not come go out as they are.
        let unheard: Vec<DocId> = self
            .awaiting_step1
            .iter()
            .filter(|(_, sent)| sent.elapsed() >= ANSWER_TIMEOUT)
            .map(|(d, _)| d.clone())
            .collect();
        for doc in unheard {
            self.awaiting_step1.remove(&doc);
            self.dirty.insert(doc);
        }
    }

    /// Runs until told to stop (or the command channel closes) or the hub
    /// refuses the session; reports to `report`.
    pub fn run(mut self, commands: &Receiver<MirrorCommand>, report: impl Fn(MirrorEvent)) -> anyhow::Result<()> {
        let tick = crossbeam_channel::tick(TICK);
        loop {
            select! {
                recv(commands) -> cmd => match cmd {
                    Ok(MirrorCommand::Hold(doc)) => self.hold(doc),
                    Ok(MirrorCommand::Release(doc)) => self.release(doc),
                    Ok(MirrorCommand::Stop) | Err(_) => break,
                },
                recv(self.events) -> ev => match ev {
                    Ok(HubEvent::Connected { role, .. }) => {
                        self.connected = true;
                        self.role = Some(role);
                        self.sent_updates = 0;
                        self.acked = 0;
                        report(MirrorEvent::Connected(role));
                        let step1 = self.session.step1();
                        self.send(&DocId::session(), &step1);
                        // Every file subscribes again, paced by the window.
                        self.reset_subscriptions();
                        let docs: Vec<DocId> = self.files.keys().cloned().collect();
                        for doc in &docs {
                            self.sync_file(doc);
                        }
                    }
                    Ok(HubEvent::Frame(bytes)) => self.on_frame(&bytes, &report),
                    Ok(HubEvent::Disconnected { reason }) => {
                        self.connected = false;
                        self.reset_subscriptions();
                        report(MirrorEvent::Offline(reason));
                    }
                    Ok(HubEvent::Refused { code, message }) => {
                        let code = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                        report(MirrorEvent::Refused(format!("{code}: {message}")));
                        anyhow::bail!("the hub refused this session ({code}): {message}");
                    }
                    Ok(HubEvent::Untrusted { reason }) => anyhow::bail!("{reason}"),
                    Ok(HubEvent::Control(weft_protocol::ServerControl::Ack { seq })) => self.acked = self.acked.max(seq),
                    Ok(HubEvent::Control(weft_protocol::ServerControl::Role { role })) => {
                        tracing::info!(%role, "the session owner changed this side's role");
                        self.role = Some(role);
                        for state in self.files.values_mut() {
                            state.replica.set_read_only(role == Role::Viewer);
                        }
                    }
                    Ok(HubEvent::Control(weft_protocol::ServerControl::Error { code, message, doc })) => {
                        tracing::warn!(?code, ?doc, "the hub refused a message: {message}");
                        // An error about a file answers its subscription:
                        // no step 1 will follow, so nothing is held back.
                        if let Some(doc) = doc
                            && (self.in_flight.contains_key(&doc) || self.awaiting_step1.contains_key(&doc))
                        {
                            self.forget_subscription(&doc);
                            self.dirty.insert(doc);
                        }
                    }
                    Ok(HubEvent::Control(_)) => {}
                    Err(_) => break,
                },
                recv(self.fs_events) -> ev => if let Ok(ev) = ev { self.on_fs_event(ev) },
                recv(tick) -> _ => self.on_tick(),
            }
            self.pump_subscriptions();
            self.flush();
            for event in std::mem::take(&mut self.pending_reports) {
                report(event);
            }
            if !self.ready {
                self.check_ready(&report);
            }
        }
        Ok(())
    }

    /// Reports progress, and `Ready` once the tree is known, every shared
    /// file is on disk (guest) and everything sent is durable on the hub
    /// (host).
    fn check_ready(&mut self, report: &impl Fn(MirrorEvent)) {
        if !self.connected || !self.session.synced {
            return;
        }
        let in_place = |f: &FileState| f.materialised && !f.absent && f.replica.is_settled();
        let durable = self.acked >= self.sent_updates;
        if durable && self.files.values().all(in_place) {
            self.ready = true;
            let total = self.files.len();
            // Always a last (or only) progress report: whoever shows
            // progress sees it start and reach the total.
            if self.progress.is_none_or(|((done, _), _)| done != total) {
                report(MirrorEvent::Progress { done: total, total });
            }
            report(MirrorEvent::Ready { files: total });
            return;
        }
        if self.progress.is_some_and(|(_, at)| at.elapsed() < PROGRESS_EVERY) {
            return;
        }
        let total = self.files.len();
        // The host's files are in place from the start: count them done
        // once the hub has acknowledged everything sent so far.
        let done = self.files.values().filter(|f| in_place(f) && (durable || self.config.side == Side::Guest)).count();
        if self.progress.is_none_or(|(last, _)| last != (done, total)) {
            report(MirrorEvent::Progress { done, total });
        }
        self.progress = Some(((done, total), Instant::now()));
    }

    /// An editor holds `doc` now: its replica here is dropped (after
    /// handing over what it has not sent) and the disk file is left alone.
    fn hold(&mut self, doc: DocId) {
        if let Some(mut state) = self.files.remove(&doc) {
            for update in state.replica.take_updates() {
                if self.connected {
                    self.send(&doc, &weft_core::shared_doc::update_message(&update));
                }
            }
            if self.connected {
                self.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc: doc.clone() });
            }
        }
        self.forget_subscription(&doc);
        self.dirty.remove(&doc);
        self.held.insert(doc);
    }

    /// The editor let `doc` go: the disk follows the shared text again.
    fn release(&mut self, doc: DocId) {
        if !self.held.remove(&doc) {
            return;
        }
        if !self.session.synced {
            // `adopt_tree` picks it up with the tree.
            return;
        }
        let Some((kind, exec)) = self.session.entry(doc.as_str()) else { return };
        if kind == "text" {
            self.adopt_file(doc, exec, true);
        }
    }

    fn on_frame(&mut self, bytes: &[u8], report: &impl Fn(MirrorEvent)) {
        let Ok((doc, message)) = frame::split(bytes) else { return };
        if doc.is_session_doc() {
            match self.session.handle(message) {
                Ok(replies) => replies.iter().for_each(|r| self.send(&doc, r)),
                Err(err) => tracing::warn!(%err, "ignored a session-doc message"),
            }
            if self.session.synced {
                self.adopt_tree();
            }
            return;
        }
        let Some(state) = self.files.get_mut(&doc) else { return };
        self.dirty.insert(doc.clone());
        // The hub's step 1 answers our subscription. The step 2 that
        // answers it carries everything the hub lacks, so the updates held
        // back until now are not sent again (unless no step 2 goes out).
        let kind = frame::message_kind(message);
        if matches!(kind, Some(frame::MessageKind::SyncStep1 | frame::MessageKind::SyncStep2)) {
            self.in_flight.remove(&doc);
        }
        let answer = kind == Some(frame::MessageKind::SyncStep1) && self.awaiting_step1.remove(&doc).is_some();
        let held = if answer { state.replica.take_updates() } else { Vec::new() };
        match state.replica.handle_sync(message) {
            Ok(replies) if !replies.is_empty() => replies.iter().for_each(|r| self.send(&doc, r)),
            Ok(_) => self.send_updates(&doc, held),
            Err(err) => {
                tracing::warn!(%err, %doc, "ignored a file message");
                self.send_updates(&doc, held);
            }
        }
        self.materialise(&doc, report);
    }

    /// Applies what changed in the tree since the last call: creates local
    /// state for shared text files (and directories) new here, and removes
    /// local files whose path left the tree. Only the paths whose entry
    /// changed are looked at, so a `_session` frame costs what it changed,
    /// not the size of the tree.
    fn adopt_tree(&mut self) {
        let mut changed: Vec<(String, Option<(String, bool)>)> = self
            .session
            .take_changed()
            .into_iter()
            .map(|path| {
                let entry = self.session.entry(&path);
                (path, entry)
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        // Parents before children, as in a walk of the tree.
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let read_only = self.role == Some(Role::Viewer);
        for (path, _) in changed.iter().filter(|(_, entry)| entry.is_none()) {
            let Ok(doc) = DocId::new(path.as_str()) else { continue };
            self.apart.remove(&doc);
            if !self.files.contains_key(&doc) {
                continue;
            }
            // An edit the deleting side had not seen (typed here, or that
            // reached us, concurrently with the delete) wins: the path
            // goes back into the tree with all the text.
            if !read_only
                && let Some(state) = self.files.get(&doc)
                && self.session.has_unseen_edits(doc.as_str(), state.replica.doc())
            {
                tracing::info!(%doc, "a deleted file had edits its deleter had not seen; it is kept");
                let size = state.disk.len() as u64;
                self.session.publish(doc.as_str(), "text", size, state.exec, None);
                continue;
            }
            let Some(state) = self.files.remove(&doc) else { continue };
            // Unsubscribed, so a file that comes back at this path is a new
            // subscription, which the hub answers with its step 1.
            self.forget_subscription(&doc);
            if self.connected {
                self.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc: doc.clone() });
            }
            let path = path_of(&self.config.root, &doc);
            // Only a file nobody changed locally since the last sync is
            // deleted; otherwise it stays on disk (and will be re-shared).
            if read_regular(&path).as_deref() == Some(state.disk.as_str()) {
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(%err, path = %path.display(), "cannot delete a file removed from the session");
                }
                self.forget_base(&doc);
            }
        }
        for (path, entry) in changed {
            let Some((kind, exec)) = entry else { continue };
            let Ok(doc) = DocId::new(path) else { continue };
            if doc.is_session_doc() || self.apart.contains(&doc) {
                continue;
            }
            if kind == "dir" {
                if !acceptable_remote_path(&doc) || crate::write::through_symlink(&self.config.root, &doc) {
                    continue;
                }
                let dir = path_of(&self.config.root, &doc);
                match std::fs::create_dir_all(&dir) {
                    Ok(()) => {
                        self.watch_parents(&doc);
                        self.watch_dir(&dir);
                    }
                    Err(err) => tracing::warn!(%err, dir = %dir.display(), "cannot create a shared directory"),
                }
                continue;
            }
            if kind != "text" || self.files.contains_key(&doc) || self.held.contains(&doc) {
                continue;
            }
            if !acceptable_remote_path(&doc) || crate::write::through_symlink(&self.config.root, &doc) {
                tracing::warn!(%doc, "refused a shared path that may not be written here");
                self.apart.insert(doc);
                continue;
            }
            self.adopt_file(doc, exec, false);
        }
    }

    /// Starts syncing the shared text file `doc` with the disk. `force`:
    /// an editor just released it, so the shared text replaces whatever
    /// the disk holds (the editor's edits are all in the shared text).
    fn adopt_file(&mut self, doc: DocId, exec: bool, force: bool) {
        let file = path_of(&self.config.root, &doc);
        let local = read_regular(&file);
        let base = if force { None } else { self.load_base(&doc) };
        let read_only = self.role == Some(Role::Viewer);
        let (mut replica, merged) = match (&base, &local) {
            // After a restart: the last synced content (the base) lets the
            // replica replay what changed here while we were away onto
            // the shared text, a three-way merge.
            (Some(base), Some(local)) => {
                let mut replica = Replica::new(fresh_client_id(), Encoding::Utf32, 0, base);
                if let Some(change) = diff_change(base, local)
                    && let Err(err) = replica.did_change(1, &[change])
                {
                    tracing::warn!(%err, %doc, "cannot replay local changes made while away");
                }
                (replica, true)
            }
            // Synced before, deleted here while we were away: delete it.
            (Some(_), None) => {
                if !read_only {
                    // What the deleted copy had seen is unknown: final.
                    self.session.unpublish(doc.as_str(), None);
                }
                self.forget_base(&doc);
                return;
            }
            // A local file nobody here chose to share: it is never
            // uploaded; it is kept if it differs (see `materialise`),
            // unless an editor released it.
            (None, Some(local)) => {
                let mut replica = Replica::new(fresh_client_id(), Encoding::Utf32, 0, local);
                replica.set_shared_wins();
                (replica, force)
            }
            (None, None) => (Replica::new(fresh_client_id(), Encoding::Utf32, 0, ""), false),
        };
        replica.set_read_only(read_only);
        let state = FileState {
            replica,
            disk: local.clone().unwrap_or_default(),
            stamp: stamp(&file),
            exec,
            materialised: false,
            absent: false,
            merged,
        };
        self.files.insert(doc.clone(), state);
        self.dirty.insert(doc.clone());
        self.watch_parents(&doc);
        self.sync_file(&doc);
    }

    /// Guest: after a file's first sync, decides whether it goes on disk:
    /// a local file that differs from the shared one is kept (and not
    /// synced) unless told to overwrite. The content itself is written by
    /// the replica's first edit, in [`Mirror::flush`], which also creates a
    /// missing file: each joined file is written once, with its content.
    fn materialise(&mut self, doc: &DocId, report: &impl Fn(MirrorEvent)) {
        let root = self.config.root.clone();
        let overwrite = self.config.overwrite;
        let Some(state) = self.files.get_mut(doc) else { return };
        if state.materialised || !state.replica.is_synced() {
            return;
        }
        state.materialised = true;
        let path = path_of(&root, doc);
        if let Ok(meta) = std::fs::symlink_metadata(&path)
            && !meta.is_file()
        {
            let what = if meta.is_dir() { "a directory" } else { "something that is not a regular file" };
            return self.give_up(doc, format!("{what} is in the way"));
        }
        if path.exists() {
            let equal = state.disk == state.replica.shared_text();
            if !state.merged && !equal && !overwrite {
                report(MirrorEvent::Kept { path: doc.to_string() });
                // Re-sharing it would overwrite the session's copy for everyone.
                self.files.remove(doc);
                self.apart.insert(doc.clone());
            } else if equal {
                let text = state.disk.clone();
                self.save_base(doc, &text);
            }
            return;
        }
        // Missing here: the replica's first edit (in `flush`) creates it
        // with the shared text, or the flush creates it empty.
        state.absent = true;
    }

    /// Stops syncing `doc` on this side because it cannot be written here;
    /// it stays shared for everyone else, and never blocks readiness.
    fn give_up(&mut self, doc: &DocId, reason: String) {
        tracing::warn!(%doc, %reason, "a shared file cannot be written here; it is not synced on this side");
        self.files.remove(doc);
        self.dirty.remove(doc);
        self.forget_subscription(doc);
        self.apart.insert(doc.clone());
        if self.connected {
            self.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc: doc.clone() });
        }
        self.pending_reports.push(MirrorEvent::Unwritable { path: doc.to_string(), reason });
    }

    /// Watches the directory `dir` (not recursively) from now on, if it
    /// exists and is a real directory (never a symlink). If the watcher
    /// fails otherwise (a watch limit, say), the mirror falls back to
    /// polling.
    fn watch_dir(&mut self, dir: &Path) {
        use notify::Watcher as _;
        let Some(watcher) = &mut self.watcher else { return };
        if self.watched.contains(dir) || !std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
            return;
        }
        match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
            }
            // Gone since we looked: whoever re-creates it makes us rescan.
            Err(notify::Error { kind: notify::ErrorKind::PathNotFound, .. }) => {}
            Err(err) => {
                tracing::warn!(%err, dir = %dir.display(), "cannot watch a directory; polling the disk instead");
                self.watcher = None;
                self.fs_events = crossbeam_channel::never();
            }
        }
    }

    /// Watches the directories above `doc`, up to the root, so changes to
    /// it and new siblings are noticed.
    fn watch_parents(&mut self, doc: &DocId) {
        let mut dir = path_of(&self.config.root, doc);
        while dir.pop() && dir.starts_with(&self.config.root) {
            if self.watched.contains(&dir) {
                break;
            }
            let here = dir.clone();
            self.watch_dir(&here);
        }
    }

    /// A watcher event: the synced files it names are looked at on the next
    /// tick; anything else under the root makes the next tick rescan.
    fn on_fs_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::debug!(%err, "file watcher error; sweeping everything");
                self.rescan_due = true;
                self.suspects.extend(self.files.keys().cloned());
                return;
            }
        };
        tracing::trace!(kind = ?event.kind, paths = ?event.paths, "file watcher event");
        if event.need_rescan() {
            self.rescan_due = true;
            self.suspects.extend(self.files.keys().cloned());
        }
        match event.kind {
            notify::EventKind::Access(_) => return,
            // A directory removed or moved away: its watch is gone or
            // follows it elsewhere; the next rescan watches whatever takes
            // its place.
            notify::EventKind::Remove(_) | notify::EventKind::Modify(notify::event::ModifyKind::Name(_)) => {
                for path in &event.paths {
                    if self.watched.remove(path) {
                        use notify::Watcher as _;
                        if let Some(watcher) = &mut self.watcher {
                            let _ = watcher.unwatch(path);
                        }
                        self.rescan_due = true;
                    }
                }
            }
            _ => {}
        }
        for path in &event.paths {
            if path.file_name().and_then(|n| n.to_str()).is_some_and(crate::write::is_temp_name) {
                continue;
            }
            match crate::scan::doc_id(&self.config.root, path) {
                Some(doc) if self.files.contains_key(&doc) => {
                    self.suspects.insert(doc);
                }
                Some(doc) if self.held.contains(&doc) => {}
                Some(_) => self.rescan_due = true,
                None => {}
            }
        }
    }

    fn on_tick(&mut self) {
        self.ticks = self.ticks.wrapping_add(1);
        self.expire_subscriptions();
        let watching = self.watcher.is_some();
        let sweep = !watching || self.ticks.is_multiple_of(SWEEP_EVERY);
        let rescan = if watching { self.rescan_due || sweep } else { self.ticks.is_multiple_of(RESCAN_EVERY) };
        // New local files become shared (once this side knows the tree).
        if rescan && (self.ready || self.config.side == Side::Host) {
            self.rescan_due = false;
            if let Err(err) = self.publish_tree() {
                tracing::warn!("rescan failed: {err:#}");
            }
        }
        let suspects = std::mem::take(&mut self.suspects);
        let root = self.config.root.clone();
        let mut deleted = Vec::new();
        let mut bases = Vec::new();
        for (doc, state) in self.files.iter_mut() {
            if !state.materialised {
                continue;
            }
            if state.replica.retry() {
                self.dirty.insert(doc.clone());
            }
            if !sweep && !suspects.contains(doc) {
                continue;
            }
            let path = path_of(&root, doc);
            let now = stamp(&path);
            if now.is_none() {
                if state.stamp.is_some() && !path.exists() {
                    deleted.push(doc.clone());
                }
                continue;
            }
            if now == state.stamp {
                continue;
            }
            state.stamp = now;
            let Some(text) = read_regular(&path) else { continue };
            if let Some(change) = diff_change(&state.disk, &text) {
                let version = state.replica.version() + 1;
                if let Err(err) = state.replica.did_change(version, &[change]) {
                    tracing::warn!(%err, %doc, "a disk change could not be applied");
                }
                state.disk = text;
                bases.push((doc.clone(), state.disk.clone()));
                self.dirty.insert(doc.clone());
            }
        }
        for (doc, text) in bases {
            self.save_base(&doc, &text);
        }
        // A file deleted here leaves the tree (its text stays in its doc).
        if self.role != Some(Role::Viewer) {
            for doc in deleted {
                let Some(state) = self.files.get_mut(&doc) else { continue };
                if state.replica.shared_text() != state.disk {
                    // Edits from others reached the file's doc but not the
                    // disk yet, so whoever deleted it never saw them: they
                    // win, the file comes back (and then gets them).
                    tracing::info!(%doc, "a file deleted here had edits from others it never showed; it is restored");
                    match write_atomic(&root, &doc, state.disk.as_bytes(), state.exec) {
                        Ok(written) => state.stamp = written.stamp,
                        Err(err) => tracing::warn!(%err, %doc, "cannot restore a deleted file"),
                    }
                    self.dirty.insert(doc);
                    continue;
                }
                let Some(state) = self.files.remove(&doc) else { continue };
                let seen = state.replica.doc().transact().state_vector();
                self.session.unpublish(doc.as_str(), Some(&seen));
                self.forget_base(&doc);
                self.forget_subscription(&doc);
                if self.connected {
                    self.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc });
                }
            }
        }
    }

    /// Sends local updates and applies pending edits to the disk.
    fn flush(&mut self) {
        let mut out: Vec<(DocId, Vec<u8>)> = Vec::new();
        for update in self.session.take_updates() {
            out.push((DocId::session(), weft_core::shared_doc::update_message(&update)));
        }
        let root = self.config.root.clone();
        // Only files that had input since the last flush can have output:
        // a frame for one file must not cost a walk over thousands.
        let docs = std::mem::take(&mut self.dirty);
        for doc in docs {
            self.write_pending_edit(&root, &doc);
            // Updates last: writing the edit may have picked up a disk change.
            // While the hub has not answered the file's subscription they
            // wait: the step 2 answering the hub's step 1 carries them.
            if self.connected && self.awaiting_step1.contains_key(&doc) {
                continue;
            }
            let Some(state) = self.files.get_mut(&doc) else { continue };
            for update in state.replica.take_updates() {
                out.push((doc.clone(), weft_core::shared_doc::update_message(&update)));
            }
            state.replica.take_notices();
        }
        // Offline, updates stay in the documents; the reconnect's sync
        // exchange carries them.
        if self.connected {
            for (doc, msg) in out {
                self.send(&doc, &msg);
            }
        }
    }

    /// Writes the edit `doc`'s replica has for the disk, if any, unless the
    /// disk changed since it was last read: then that change goes into the
    /// replica first and the edit is answered as refused (it comes back
    /// transformed), as an editor that typed while an applyEdit was on its
    /// way would.
    fn write_pending_edit(&mut self, root: &Path, doc: &DocId) {
        let Some(state) = self.files.get_mut(doc) else { return };
        if !state.materialised {
            return;
        }
        let Some(edit) = state.replica.poll_edit() else {
            // An empty shared file: no edit will ever create it.
            if state.absent && state.replica.is_settled() && state.disk.is_empty() {
                match write_atomic(root, doc, b"", state.exec) {
                    Ok(written) => {
                        state.stamp = written.stamp;
                        state.absent = false;
                        self.save_base(doc, "");
                        self.watch_parents(doc);
                    }
                    Err(err) => self.give_up(doc, err.to_string()),
                }
            }
            return;
        };
        let path = path_of(root, doc);
        let on_disk = read_regular(&path);
        if on_disk.is_none() && state.stamp.is_some() {
            // Deleted here and not noticed yet: never resurrect it; the
            // next tick takes the file out of the tree.
            let _ = state.replica.edit_answered(edit.id, false);
            return;
        }
        if let Some(on_disk) = on_disk.filter(|t| *t != state.disk) {
            let version = state.replica.version() + 1;
            if let Some(change) = diff_change(&state.disk, &on_disk)
                && let Err(err) = state.replica.did_change(version, &[change])
            {
                tracing::warn!(%err, %doc, "a disk change could not be applied");
            }
            state.disk = on_disk;
            state.stamp = stamp(&path);
            let _ = state.replica.edit_answered(edit.id, false);
            let text = state.disk.clone();
            self.save_base(doc, &text);
            // The transformed edit goes out at the next flush.
            self.dirty.insert(doc.clone());
            return;
        }
        let new_text = apply_edits(&state.disk, &edit.edits);
        match write_atomic(root, doc, new_text.as_bytes(), state.exec) {
            Ok(written) => {
                let version = edit.version + 1;
                let changes: Vec<EditorChange> = edit
                    .edits
                    .iter()
                    .rev()
                    .map(|(s, e, t)| EditorChange { range: Some((*s, *e)), text: t.clone() })
                    .collect();
                let _ = state.replica.edit_answered(edit.id, true);
                if let Err(err) = state.replica.did_change(version, &changes) {
                    tracing::warn!(%err, %doc, "echo of a disk write failed");
                }
                state.disk = new_text;
                state.stamp = written.stamp;
                let created = std::mem::take(&mut state.absent);
                let text = state.disk.clone();
                self.save_base(doc, &text);
                if created {
                    self.watch_parents(doc);
                }
            }
            Err(err) => {
                let _ = state.replica.edit_answered(edit.id, false);
                self.give_up(doc, err.to_string());
            }
        }
    }
}
