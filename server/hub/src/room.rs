//! A room: the one task that owns a session's loaded documents and its
//! connected peers.
//!
//! Every document of a session is touched only by its room task, so no lock
//! guards a yrs document and no transaction lives across an `.await`.
//! Connections talk to the room through a bounded mailbox; the room talks
//! back through each peer's bounded outbound queue. Overflow policy: a peer
//! whose queue is full is disconnected with `overloaded` and resyncs
//! losslessly on reconnect — one slow reader never slows the room.
//!
//! Durability: an update is applied in memory, relayed to the other peers
//! at once (in arrival order), and handed to the group-commit writer; only
//! once it is on disk is it acknowledged to its sender. Completions are
//! processed in submission order, so acks are cumulative (ADR 0010).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use weft_core::SharedDoc;
use weft_core::shared_doc::update_message;
use weft_protocol::frame;
use weft_protocol::{DocId, ErrorCode, PeerId, Role, ServerControl, SessionId};

use crate::Hub;
use crate::auth::Denied;
use crate::metrics::{add, inc};
use crate::outbox::{Outbox, Refused};
use crate::store::{LogOp, StoreError};

/// Capacity of a room's mailbox; connections wait when it is full.
const MAILBOX: usize = 1024;
/// How often a room looks for idle documents and whether it can stop.
const TICK: Duration = Duration::from_secs(2);
/// Edit summaries go to the audit log per peer in buckets this long.
const EDIT_BUCKET: Duration = Duration::from_secs(60);

/// How a peer's frames are framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `/ws/`: binary frames prefixed with a doc id, JSON control frames.
    Weft,
    /// `/y/`: plain y-websocket, one document per socket.
    Y(DocId),
}

/// A frame for a connection task to write.
#[derive(Debug)]
pub enum Outbound {
    Binary(Bytes),
    Text(String),
}

/// A peer as the room knows it.
pub struct RoomPeer {
    pub id: PeerId,
    pub role: Role,
    pub framing: Framing,
    /// Frames for the peer's connection; also how the room closes it.
    pub out: Outbox,
}

/// Messages a room handles.
pub enum RoomMsg {
    /// Adds a peer. The reply is dropped unanswered if the room is stopping;
    /// the caller then asks the hub for a fresh room.
    Join { peer: RoomPeer, reply: oneshot::Sender<Result<(), Denied>> },
    /// A y-protocols message from a peer for a document.
    Frame { peer: PeerId, doc: DocId, message: Bytes },
    /// The peer no longer wants this document.
    Unsubscribe { peer: PeerId, doc: DocId },
    /// The peer disconnected.
    Leave { peer: PeerId },
    /// The owner gave the peer another role: it applies from its next frame.
    SetRole { peer: PeerId, role: Role },
    /// Disconnect everyone and stop (session deleted).
    Close { code: ErrorCode, message: String },
}

/// Sender side of a room's mailbox.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomMsg>,
}

/// The room of `session`, started if it is not running.
pub fn room_for(hub: &Arc<Hub>, session: &SessionId) -> RoomHandle {
    let mut rooms = hub.rooms();
    if let Some(handle) = rooms.get(session).filter(|h| !h.tx.is_closed()) {
        return handle.clone();
    }
    let (tx, rx) = mpsc::channel(MAILBOX);
    let handle = RoomHandle { tx };
    rooms.insert(session.clone(), handle.clone());
    add(&hub.metrics.rooms, 1);
    let room = Room::new(Arc::clone(hub), session.clone());
    tokio::spawn(room.run(rx, handle.clone()));
    handle
}

struct PeerState {
    peer: RoomPeer,
    /// Update-carrying frames received so far (the ack counter).
    update_seq: u64,
    /// Awareness client ids this peer controls, per document.
    claimed: HashMap<DocId, HashSet<u64>>,
    /// Whether a `/y/` viewer was already told it cannot write.
    told_read_only: bool,
}

struct DocEntry {
    doc: SharedDoc,
    subscribers: HashSet<PeerId>,
    /// Updates appended since the last snapshot.
    log_len: usize,
    last_used: Instant,
}

/// Updates waiting for their log write, in submission order.
struct Pending {
    id: u64,
    doc: DocId,
    from: PeerId,
    /// Updates in this write (for the metrics).
    updates: usize,
    ack: Option<u64>,
    result: Option<Result<(), Arc<StoreError>>>,
}

type Durable = (u64, Result<(), Arc<StoreError>>);

/// Per file: clock units (UTF-16 for text) inserted and deleted.
type FileEdits = BTreeMap<DocId, (u64, u64)>;

struct Room {
    hub: Arc<Hub>,
    session: SessionId,
    /// Per peer and file: clock units inserted and deleted in the current
    /// bucket (for `edits.summary` audit events; never content).
    edits: HashMap<PeerId, FileEdits>,
    /// Unix ms when the current bucket started.
    bucket_start: i64,
    peers: HashMap<PeerId, PeerState>,
    docs: HashMap<DocId, DocEntry>,
    /// Ids of every document the session holds (stored or loaded), for the limit.
    known_docs: Option<HashSet<String>>,
    pending: VecDeque<Pending>,
    next_pending: u64,
    durable_tx: mpsc::UnboundedSender<Durable>,
    durable_rx: Option<mpsc::UnboundedReceiver<Durable>>,
    /// Set when the room must stop (fatal storage or CRDT failure, deletion).
    closing: Option<(ErrorCode, String)>,
}

/// The y-protocols `auth` message denying permission (y-websocket clients
/// report it through their `permissionDeniedHandler`).
fn auth_denied_message(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 4);
    frame::write_var_uint(&mut out, frame::MSG_AUTH);
    frame::write_var_uint(&mut out, 0);
    frame::write_var_uint(&mut out, reason.len() as u64);
    out.extend_from_slice(reason.as_bytes());
    out
}

fn control(msg: &ServerControl) -> Outbound {
    Outbound::Text(serde_json::to_string(msg).unwrap_or_else(|_| String::from("{\"type\":\"error\"}")))
}

fn hub_client_id() -> u64 {
    let mut buf = [0u8; 4];
    // The hub never edits, so its client id only has to be unlikely to
    // collide with a peer's; a fixed fallback is acceptable.
    if getrandom::fill(&mut buf).is_err() {
        return 0x7eef;
    }
    u64::from(u32::from_le_bytes(buf))
}

impl Room {
    fn new(hub: Arc<Hub>, session: SessionId) -> Room {
        let (durable_tx, durable_rx) = mpsc::unbounded_channel();
        Room {
            hub,
            session,
            peers: HashMap::new(),
            docs: HashMap::new(),
            known_docs: None,
            pending: VecDeque::new(),
            next_pending: 1,
            durable_tx,
            durable_rx: Some(durable_rx),
            closing: None,
            edits: HashMap::new(),
            bucket_start: crate::now_ms(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<RoomMsg>, me: RoomHandle) {
        tracing::debug!(session = %self.session, "room started");
        let Some(mut durable_rx) = self.durable_rx.take() else { return };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.hub.shutdown.clone();
        loop {
            tokio::select! {
                // Durable completions first: they release relays and acks.
                biased;
                Some(first) = durable_rx.recv() => self.on_durable(first, &mut durable_rx),
                msg = rx.recv() => match msg {
                    Some(msg) => self.on_message(msg).await,
                    None => break,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        // Writes already handed to the log writer still
                        // complete: it drains its queue before it stops.
                        self.closing = Some((ErrorCode::ShuttingDown, "the hub is shutting down; reconnect later".into()));
                    }
                }
                _ = tick.tick() => {
                    if crate::now_ms() - self.bucket_start >= EDIT_BUCKET.as_millis() as i64 {
                        self.audit_edits(None);
                    }
                    self.unload_idle();
                    if self.peers.is_empty() && self.docs.is_empty() && self.pending.is_empty() {
                        break;
                    }
                }
            }
            if let Some((code, message)) = self.closing.take() {
                self.close_all(code, &message);
                break;
            }
        }
        self.audit_edits(None);
        // Leave the registry (unless a newer room took our place), then
        // refuse whoever raced to join: their reply channel drops and they
        // retry on a fresh room.
        {
            let mut rooms = self.hub.rooms();
            if rooms.get(&self.session).is_some_and(|h| h.tx.same_channel(&me.tx)) {
                rooms.remove(&self.session);
            }
        }
        rx.close();
        while rx.try_recv().is_ok() {}
        add(&self.hub.metrics.rooms, -1);
        add(&self.hub.metrics.docs_loaded, -(self.docs.len() as i64));
        tracing::debug!(session = %self.session, "room stopped");
    }

    async fn on_message(&mut self, msg: RoomMsg) {
        match msg {
            RoomMsg::Join { peer, reply } => {
                let result = self.join(peer).await;
                if reply.send(result).is_err() {
                    tracing::debug!(session = %self.session, "joining peer went away");
                }
            }
            RoomMsg::Frame { peer, doc, message } => self.on_frame(peer, doc, &message).await,
            RoomMsg::Unsubscribe { peer, doc } => self.unsubscribe(peer, &doc),
            RoomMsg::Leave { peer } => self.leave(peer),
            RoomMsg::SetRole { peer, role } => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.peer.role = role;
                    state.told_read_only = false;
                    if state.peer.framing == Framing::Weft {
                        self.send(peer, control(&ServerControl::Role { role }));
                    }
                }
            }
            RoomMsg::Close { code, message } => self.closing = Some((code, message)),
        }
    }

    async fn join(&mut self, peer: RoomPeer) -> Result<(), Denied> {
        let id = peer.id;
        let framing = peer.framing.clone();
        self.peers.insert(id, PeerState { peer, update_seq: 0, claimed: HashMap::new(), told_read_only: false });
        if let Framing::Y(doc) = framing {
            // y-websocket: the server opens with its step 1 and the current
            // awareness, then answers the client's step 1.
            if let Err(denied) = self.load(&doc).await {
                self.peers.remove(&id);
                return Err(denied);
            }
            self.subscribe(id, &doc);
        }
        Ok(())
    }

    /// Subscribes `peer` to a loaded `doc` and sends it the hub's step 1 and
    /// the document's awareness.
    fn subscribe(&mut self, peer: PeerId, doc: &DocId) {
        let Some(entry) = self.docs.get_mut(doc) else { return };
        if !entry.subscribers.insert(peer) {
            return;
        }
        let mut greeting = vec![entry.doc.step1()];
        greeting.extend(entry.doc.awareness_snapshot());
        for msg in greeting {
            self.send_doc(peer, doc, &msg);
        }
    }

    fn unsubscribe(&mut self, peer: PeerId, doc: &DocId) {
        let claimed = self.peers.get_mut(&peer).and_then(|p| p.claimed.remove(doc)).unwrap_or_default();
        let Some(entry) = self.docs.get_mut(doc) else { return };
        entry.subscribers.remove(&peer);
        entry.last_used = Instant::now();
        let ids: Vec<u64> = claimed.into_iter().collect();
        if let Some(gone) = entry.doc.remove_awareness(&ids) {
            self.broadcast(doc, &gone, Some(peer));
        }
    }

    /// Writes the edit summaries of the current bucket to the audit log (of
    /// one peer, when it leaves; of everyone, when the bucket ends).
    fn audit_edits(&mut self, only: Option<PeerId>) {
        let now = crate::now_ms();
        let taken: Vec<(PeerId, FileEdits)> = match only {
            Some(peer) => self.edits.remove(&peer).map(|e| vec![(peer, e)]).unwrap_or_default(),
            None => {
                let all = self.edits.drain().collect();
                self.bucket_start = now;
                all
            }
        };
        for (peer, files) in taken {
            let name = self.hub.peers().get(&peer).map(|p| p.info.name.clone());
            let files: Vec<serde_json::Value> = files
                .into_iter()
                .map(|(doc, (inserted, deleted))| serde_json::json!({"doc": doc, "inserted": inserted, "deleted": deleted}))
                .collect();
            let detail = serde_json::json!({
                "peer": peer, "name": name, "from_ms": self.bucket_start, "to_ms": now, "files": files,
            });
            self.hub.audit_later(Some(&self.session), "edits.summary", detail);
        }
    }

    fn leave(&mut self, peer: PeerId) {
        self.audit_edits(Some(peer));
        let Some(state) = self.peers.get(&peer) else { return };
        let mut docs: HashSet<DocId> = state.claimed.keys().cloned().collect();
        docs.extend(self.docs.iter().filter(|(_, e)| e.subscribers.contains(&peer)).map(|(d, _)| d.clone()));
        for doc in docs {
            self.unsubscribe(peer, &doc);
        }
        self.peers.remove(&peer);
    }

    /// Loads `doc` from storage if it is not in memory.
    async fn load(&mut self, doc: &DocId) -> Result<(), Denied> {
        if let Some(entry) = self.docs.get_mut(doc) {
            entry.last_used = Instant::now();
            return Ok(());
        }
        let store = Arc::clone(&self.hub.store);
        if self.known_docs.is_none() {
            let session = self.session.clone();
            let ids = tokio::task::spawn_blocking(move || store.doc_ids(&session)).await;
            match ids {
                Ok(Ok(ids)) => self.known_docs = Some(ids.into_iter().collect()),
                _ => return Err(self.storage_failed("listing the session's documents")),
            }
        }
        let known = self.known_docs.get_or_insert_with(HashSet::new);
        if !known.contains(doc.as_str()) && known.len() >= self.hub.config.max_docs_per_session {
            return Err(Denied::new(
                ErrorCode::LimitReached,
                format!(
                    "this session already holds {} documents, the hub's limit; ask the hub operator to raise --max-docs-per-session",
                    known.len()
                ),
            ));
        }
        let (store, session, name) = (Arc::clone(&self.hub.store), self.session.clone(), doc.as_str().to_owned());
        let stored = match tokio::task::spawn_blocking(move || store.load_doc(&session, &name)).await {
            Ok(Ok(stored)) => stored,
            _ => return Err(self.storage_failed("loading a document")),
        };
        let log_len = stored.updates.len();
        let restored =
            SharedDoc::restore(hub_client_id(), stored.snapshot.as_deref(), stored.updates.iter().map(Vec::as_slice));
        let shared = match restored {
            Ok((shared, 0)) => shared,
            Ok((shared, skipped)) => {
                tracing::error!(session = %self.session, %doc, skipped, "skipped corrupt stored updates");
                shared
            }
            Err(err) => {
                tracing::error!(session = %self.session, %doc, %err, "stored document cannot be loaded");
                return Err(Denied::new(
                    ErrorCode::Internal,
                    "the stored document is damaged; the hub log has details",
                ));
            }
        };
        known.insert(doc.as_str().to_owned());
        self.docs.insert(
            doc.clone(),
            DocEntry { doc: shared, subscribers: HashSet::new(), log_len, last_used: Instant::now() },
        );
        add(&self.hub.metrics.docs_loaded, 1);
        Ok(())
    }

    fn storage_failed(&self, what: &str) -> Denied {
        tracing::error!(session = %self.session, what, "storage failed");
        Denied::new(ErrorCode::Internal, format!("the hub's storage failed while {what}; try again"))
    }

    async fn on_frame(&mut self, peer: PeerId, doc: DocId, message: &[u8]) {
        let Some(state) = self.peers.get(&peer) else { return };
        let role = state.peer.role;
        let is_weft = state.peer.framing == Framing::Weft;
        let kind = frame::message_kind(message);
        // Every frame whose first message carries an update is counted for
        // acks, whatever happens to it, so a client's count stays in step.
        let counts_for_ack = kind.is_some_and(frame::MessageKind::carries_update);
        if let Err(denied) = self.load(&doc).await {
            self.refuse(peer, &doc, denied.code, &denied.message);
            self.settle_frame(peer, &doc, Vec::new(), counts_for_ack);
            return;
        }
        let Some(entry) = self.docs.get_mut(&doc) else { return };
        entry.last_used = Instant::now();
        let mut handled = match entry.doc.handle(message, role.can_write()) {
            Ok(handled) => handled,
            Err(_poisoned) => {
                tracing::error!(session = %self.session, %doc, %peer, "an update crashed the CRDT engine; restarting the room");
                self.closing =
                    Some((ErrorCode::Internal, "the hub hit an internal error; reconnect to resynchronise".into()));
                return;
            }
        };
        for reply in &handled.reply {
            self.send_doc(peer, &doc, reply);
        }
        if is_weft && kind == Some(frame::MessageKind::SyncStep1) {
            // The weft protocol subscribes on step 1: answer with the hub's
            // own step 1 so the peer sends what the hub lacks.
            self.subscribe(peer, &doc);
        }
        if !handled.awareness.is_empty() {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.claimed.entry(doc.clone()).or_default().extend(handled.claimed_clients.iter().copied());
            }
            for msg in &handled.awareness {
                self.broadcast(&doc, msg, Some(peer));
            }
        }
        if handled.refused_write {
            inc(&self.hub.metrics.updates_refused, 1);
            tracing::debug!(session = %self.session, %doc, %peer, "refused a write from a read-only peer");
            self.refuse(
                peer,
                &doc,
                ErrorCode::Forbidden,
                "this link is read-only (viewer): your change was not applied",
            );
        }
        if let Some(err) = handled.error.take() {
            inc(&self.hub.metrics.frames_malformed, 1);
            tracing::debug!(session = %self.session, %doc, %peer, %err, "refused a message");
            self.refuse(peer, &doc, ErrorCode::Malformed, &format!("{err}; the rest of the frame was ignored"));
        }
        let deltas = std::mem::take(&mut handled.deltas);
        self.settle_frame(peer, &doc, deltas, counts_for_ack || handled.update_messages > 0);
    }

    /// Persists what a frame changed and, for update-carrying frames,
    /// advances the sender's ack counter behind it.
    fn settle_frame(&mut self, peer: PeerId, doc: &DocId, deltas: Vec<Vec<u8>>, counts_for_ack: bool) {
        let ack = match self.peers.get_mut(&peer) {
            Some(state) if counts_for_ack && state.peer.framing == Framing::Weft => {
                state.update_seq += 1;
                Some(state.update_seq)
            }
            _ => None,
        };
        if ack.is_some() || !deltas.is_empty() {
            self.persist(peer, doc.clone(), deltas, ack);
        }
    }

    /// Relays `deltas` and queues them for the log; the ack follows durability.
    fn persist(&mut self, from: PeerId, doc: DocId, deltas: Vec<Vec<u8>>, ack: Option<u64>) {
        for update in &deltas {
            if let Some((inserted, deleted)) = weft_core::shared_doc::update_extent(update) {
                let counts = self.edits.entry(from).or_default().entry(doc.clone()).or_default();
                counts.0 += inserted;
                counts.1 += deleted;
            }
        }
        // Relayed at once, acknowledged once durable (ADR 0010): a peer that
        // received an update the hub then lost gives it back on its next
        // sync, and the sender keeps it until its ack.
        for delta in &deltas {
            self.broadcast(&doc, &update_message(delta), Some(from));
        }
        let id = self.next_pending;
        self.next_pending += 1;
        let updates = deltas.len();
        let mut ops: Vec<LogOp> = deltas
            .into_iter()
            .map(|update| LogOp::Append { session: self.session.clone(), doc: doc.as_str().to_owned(), update })
            .collect();
        let has_ops = !ops.is_empty();
        if let Some(entry) = self.docs.get_mut(&doc).filter(|_| has_ops) {
            entry.log_len += updates;
            if entry.log_len >= self.hub.config.compact_after {
                // Everything appended so far is in memory, and the writer is
                // FIFO, so this snapshot covers every row it replaces.
                ops.push(LogOp::Compact {
                    session: self.session.clone(),
                    doc: doc.as_str().to_owned(),
                    snapshot: entry.doc.encode_state(),
                });
                entry.log_len = 0;
            }
        }
        self.pending.push_back(Pending {
            id,
            doc,
            from,
            updates,
            ack,
            result: if has_ops { None } else { Some(Ok(())) },
        });
        if has_ops {
            let tx = self.durable_tx.clone();
            self.hub.writer.submit(
                ops,
                Box::new(move |result| {
                    // The room may have stopped; then nobody waits for this.
                    let _ = tx.send((id, result));
                }),
            );
        }
        self.release();
    }

    /// Marks `first` and every other completion already waiting as done,
    /// then releases once: one group commit is one pass, one ack per peer.
    fn on_durable(&mut self, first: Durable, more: &mut mpsc::UnboundedReceiver<Durable>) {
        let mut next = Some(first);
        while let Some((id, result)) = next {
            if let Some(p) = self.pending.iter_mut().find(|p| p.id == id) {
                p.result = Some(result);
            }
            next = more.try_recv().ok();
        }
        self.release();
    }

    /// Acknowledges every completed write at the queue's head. Acks are
    /// cumulative, so a peer gets one ack, its highest, per release: a group
    /// commit that covered a hundred of its frames is one ack frame, not a
    /// hundred in its queue.
    fn release(&mut self) {
        let mut acks: Vec<(PeerId, u64)> = Vec::new();
        while self.pending.front().is_some_and(|p| p.result.is_some()) {
            let Some(done) = self.pending.pop_front() else { break };
            match done.result {
                Some(Ok(())) => {
                    inc(&self.hub.metrics.updates, done.updates as u64);
                    if let Some(seq) = done.ack {
                        match acks.iter_mut().find(|(peer, _)| *peer == done.from) {
                            Some((_, highest)) => *highest = (*highest).max(seq),
                            None => acks.push((done.from, seq)),
                        }
                    }
                }
                Some(Err(err)) => {
                    tracing::error!(session = %self.session, %err, "an update could not be made durable; restarting the room");
                    self.closing = Some((
                        ErrorCode::Internal,
                        "the hub could not save a change; reconnect to resynchronise (nothing you sent is lost)".into(),
                    ));
                    break;
                }
                None => {}
            }
        }
        for (peer, seq) in acks {
            self.send(peer, control(&ServerControl::Ack { seq }));
        }
    }

    /// Tells a peer its message was refused.
    fn refuse(&mut self, peer: PeerId, doc: &DocId, code: ErrorCode, message: &str) {
        let Some(state) = self.peers.get_mut(&peer) else { return };
        match &state.peer.framing {
            Framing::Weft => {
                let frame =
                    control(&ServerControl::Error { code, message: message.to_owned(), doc: Some(doc.clone()) });
                self.send(peer, frame);
            }
            Framing::Y(_) if code == ErrorCode::Forbidden => {
                if !state.told_read_only {
                    state.told_read_only = true;
                    self.send_doc(peer, doc, &auth_denied_message(message));
                }
            }
            // y-websocket has no error frame: the connection is closed with
            // the code, and the client reconnects and resyncs.
            Framing::Y(_) => state.peer.out.kick(code, message),
        }
    }

    /// Sends a y-protocols message about `doc` to one peer, framed for it.
    fn send_doc(&mut self, peer: PeerId, doc: &DocId, message: &[u8]) {
        let Some(state) = self.peers.get(&peer) else { return };
        let bytes = match &state.peer.framing {
            Framing::Weft => Bytes::from(frame::join(doc, message)),
            Framing::Y(own) if own == doc => Bytes::copy_from_slice(message),
            Framing::Y(_) => return,
        };
        self.send(peer, Outbound::Binary(bytes));
    }

    /// Sends a y-protocols message about `doc` to every subscriber but `except`.
    fn broadcast(&mut self, doc: &DocId, message: &[u8], except: Option<PeerId>) {
        let Some(entry) = self.docs.get(doc) else { return };
        let mut raw: Option<Bytes> = None;
        let mut prefixed: Option<Bytes> = None;
        let targets: Vec<PeerId> = entry.subscribers.iter().copied().filter(|p| Some(*p) != except).collect();
        for peer in targets {
            let Some(state) = self.peers.get(&peer) else { continue };
            let bytes = match &state.peer.framing {
                Framing::Weft => prefixed.get_or_insert_with(|| Bytes::from(frame::join(doc, message))).clone(),
                Framing::Y(_) => raw.get_or_insert_with(|| Bytes::copy_from_slice(message)).clone(),
            };
            self.send(peer, Outbound::Binary(bytes));
        }
    }

    /// Queues a frame for a peer; a full queue disconnects the peer.
    fn send(&mut self, peer: PeerId, frame: Outbound) {
        let Some(state) = self.peers.get(&peer) else { return };
        match state.peer.out.try_send(frame) {
            Ok(()) => {}
            Err(Refused::Full) => {
                inc(&self.hub.metrics.peers_overloaded, 1);
                tracing::warn!(session = %self.session, %peer, "peer reads too slowly; disconnecting it");
                state.peer.out.kick(
                    ErrorCode::Overloaded,
                    "you fell too far behind; reconnect to resynchronise (nothing is lost)",
                );
                self.leave(peer);
            }
            // The connection is closing; its Leave is on the way.
            Err(Refused::Closed) => {}
        }
    }

    /// Unloads documents nobody has used for a while, compacting their log.
    fn unload_idle(&mut self) {
        let busy: HashSet<&DocId> = self.pending.iter().map(|p| &p.doc).collect();
        let after = self.hub.config.unload_after;
        let idle: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(id, e)| e.subscribers.is_empty() && !busy.contains(id) && e.last_used.elapsed() >= after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let Some(entry) = self.docs.remove(&id) else { continue };
            add(&self.hub.metrics.docs_loaded, -1);
            if entry.log_len > 0 {
                let op = LogOp::Compact {
                    session: self.session.clone(),
                    doc: id.as_str().to_owned(),
                    snapshot: entry.doc.encode_state(),
                };
                let (session, doc) = (self.session.clone(), id.clone());
                self.hub.writer.submit(
                    vec![op],
                    Box::new(move |result| {
                        if let Err(err) = result {
                            tracing::warn!(%session, %doc, %err, "compacting an idle document failed; its log stays");
                        }
                    }),
                );
            }
            tracing::debug!(session = %self.session, doc = %id, "unloaded idle document");
        }
    }

    fn close_all(&mut self, code: ErrorCode, message: &str) {
        for state in self.peers.values() {
            state.peer.out.kick(code, message);
        }
        self.peers.clear();
    }
}
