//! The bridge's main loop: one thread that owns every open document and
//! handles, strictly in arrival order, the editor's LSP messages, the hub
//! link's events and a retry tick (architecture invariants 4 and 5: one
//! owner per document, editor changes reach the CRDT in the order sent).
//!
//! The CRDT logic lives in `weft_core::replica`; this file turns LSP
//! messages into replica inputs and replica outputs into LSP messages and
//! hub frames. Session plumbing (share, join, leave, status, the embedded
//! hub) lives here too.
//!
//! Files the editor does not have open are kept in sync with the disk by a
//! `weft_workspace::mirror::Mirror` running on its own thread (its own hub
//! connection, named "NAME (files)"): a file the editor opens is *held* —
//! the editor's buffer is its truth and the mirror leaves the disk file
//! alone — and released on close, when the disk is brought to the shared
//! text. The mirror's first transfer of the tree is reported to the editor
//! with `$/progress`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use crossbeam_channel::Sender;
use lsp_server::{ErrorCode as RpcCode, Message, Notification, Request, RequestId, Response};
use lsp_types::{
    ApplyWorkspaceEditParams, DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
    InitializeParams, MessageType, OneOf, OptionalVersionedTextDocumentIdentifier, PositionEncodingKind,
    ShowMessageParams, TextDocumentEdit, TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Url,
    WorkspaceEdit,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use weft_core::positions::{Encoding, LineEnding, Pos};
use weft_core::replica::{EditRequest, EditorChange, Notice, Replica};
use weft_protocol::lsp::{
    ConnectionState, JoinParams, JoinResult, ShareLinks, ShareParams, ShareResult, StatusResult, VerifyParams,
    WeftNotification, WeftRequest,
};
use weft_protocol::rest::ParticipantList;
use weft_protocol::{ClientKind, DocId, Role, frame, lsp as wl};
use weft_workspace::mirror::{Mirror, MirrorCommand, MirrorConfig, MirrorEvent, Side};

use crate::presence::{FollowStep, Identity, Presence};
use crate::transport::{Incoming, encode, encode_request};
use weft_client::hub_link::{self, Credentials, HubEvent, HubLink};
use weft_client::link::{HubAddr, Link};
use weft_client::tls::{ClientTls, TlsOptions};
use weft_client::{fresh_client_id, hub_api};

/// What the main loop waits for: the hub link's and the mirror's events and
/// the retry tick (the editor's messages come in beside them). The hub link
/// runs on `local`, a current-thread runtime driven only by this loop while
/// it waits, so a keystroke crosses no thread inside the bridge between the
/// loop and the hub's socket, either way: the loop's own frames go out when
/// it next waits, and a frame from the hub is read and handled on this
/// thread (two thread hand-offs per keystroke fewer than a link on the I/O
/// runtime; docs/benchmarks.md). The link's work is small (framing,
/// merging queued updates); everything slow stays on the I/O runtime.
struct Inbox {
    local: tokio::runtime::Runtime,
    hub_tx: UnboundedSender<HubEvent>,
    hub_rx: UnboundedReceiver<HubEvent>,
    /// Mirror events, tagged with the session generation they belong to.
    mirror_tx: UnboundedSender<(u64, MirrorEvent)>,
    mirror_rx: UnboundedReceiver<(u64, MirrorEvent)>,
    tick: tokio::time::Interval,
}

/// One thing for the main loop to handle.
enum Event {
    /// From the editor; `None` once its input ended.
    Editor(Option<Incoming>),
    Hub(HubEvent),
    Mirror(u64, MirrorEvent),
    Tick,
    /// A wait's deadline passed.
    TimedOut,
}

impl Inbox {
    fn new() -> anyhow::Result<Inbox> {
        let local = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the main loop's runtime")?;
        let (hub_tx, hub_rx) = tokio::sync::mpsc::unbounded_channel();
        let (mirror_tx, mirror_rx) = tokio::sync::mpsc::unbounded_channel();
        let tick = local.block_on(async {
            let mut tick = tokio::time::interval(RETRY_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        Ok(Inbox { local, hub_tx, hub_rx, mirror_tx, mirror_rx, tick })
    }

    /// Runs the link until the next event (from the editor too, when given
    /// its channel) or until `deadline`.
    fn next(
        &mut self,
        editor: Option<&mut UnboundedReceiver<Incoming>>,
        deadline: Option<std::time::Instant>,
    ) -> Event {
        let Inbox { local, hub_rx, mirror_rx, tick, .. } = self;
        local.block_on(async {
            let from_editor = async {
                match editor {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = from_editor => Event::Editor(msg),
                Some(ev) = hub_rx.recv() => Event::Hub(ev),
                Some((generation, ev)) = mirror_rx.recv() => Event::Mirror(generation, ev),
                _ = tick.tick(), if deadline.is_none() => Event::Tick,
                () = timeout => Event::TimedOut,
            }
        })
    }

    /// Runs the link until its next event (other events wait), or `Err`
    /// at `deadline`.
    fn next_hub(&mut self, deadline: std::time::Instant) -> Result<HubEvent, ()> {
        let Inbox { local, hub_rx, .. } = self;
        local.block_on(async {
            match tokio::time::timeout_at(deadline.into(), hub_rx.recv()).await {
                Ok(Some(ev)) => Ok(ev),
                _ => Err(()),
            }
        })
    }

    /// Runs the runtime until a dropped link's task has said goodbye and
    /// closed its connection (at most [`LINK_CLOSE`]).
    fn finish(&self, task: Option<tokio::task::JoinHandle<()>>) {
        if let Some(task) = task
            && self.local.block_on(tokio::time::timeout(LINK_CLOSE, task)).is_err()
        {
            tracing::debug!("the hub link did not close in time; dropping the connection");
        }
    }
}

/// How long leaving waits for the hub link to send what is queued and close.
const LINK_CLOSE: Duration = Duration::from_secs(2);

/// Settings of one `weft lsp` process.
#[derive(Debug, Clone, Default)]
pub struct BridgeConfig {
    /// Display name when the editor gives none (`WEFT_NAME`, git, OS user).
    pub name: Option<String>,
    /// Default hub (`WEFT_HUB`).
    pub hub: Option<String>,
    /// Token for creating sessions on `hub` (`WEFT_HUB_TOKEN`).
    pub hub_token: Option<String>,
    /// Extra CA for TLS hubs, and whether plain hubs off this machine are
    /// allowed (`WEFT_CA`, `WEFT_INSECURE`).
    pub tls: TlsOptions,
}

/// How long share/join wait for the hub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The most selections of one editor that are published (multi-cursor).
const MAX_SELECTIONS: usize = 64;
/// How long share waits for the file tree to be durable on the hub.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);
/// How often held (refused) edits are retried and presence timers run
/// (fine enough for the ~30 Hz `weft/peers` throttle).
const RETRY_TICK: Duration = Duration::from_millis(33);

struct Session {
    side: Side,
    id: String,
    root: PathBuf,
    role: Option<Role>,
    state: ConnectionState,
    hub: HubAddr,
    tls: ClientTls,
    token: String,
    password: Option<String>,
    link: HubLink,
    /// The disk side of the session; `None` if it could not start (the
    /// editor's buffers are still shared).
    mirror: Option<MirrorThread>,
    _embedded: Option<weft_hub::embedded::EmbeddedHub>,
}

/// The mirror's thread; dropping it stops the mirror and waits for it
/// (every write it makes is atomic, so stopping never leaves half a file).
struct MirrorThread {
    commands: Sender<MirrorCommand>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MirrorThread {
    fn tell(&self, command: MirrorCommand) {
        if self.commands.send(command).is_err() {
            tracing::warn!("the workspace mirror has stopped; the disk is no longer kept in sync");
        }
    }
}

impl Drop for MirrorThread {
    fn drop(&mut self) {
        let _ = self.commands.send(MirrorCommand::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the workspace mirror's thread panicked");
        }
    }
}

/// A `$/progress` the bridge started (the token it created).
struct Progress {
    token: String,
    title: &'static str,
}

/// The bridge's state; see the module doc.
pub struct Bridge {
    out: Sender<Option<String>>,
    runtime: tokio::runtime::Runtime,
    config: BridgeConfig,
    enc: Encoding,
    name: String,
    kind: ClientKind,
    docs: HashMap<Url, Replica>,
    /// Shared documents closed while the hub was unreachable: kept until a
    /// reconnect has handed their offline edits to the hub.
    closed: HashMap<DocId, Replica>,
    session: Option<Session>,
    next_request: i32,
    pending_edits: HashMap<RequestId, (Url, u64)>,
    inbox: Inbox,
    /// Bumped at every share/join, so a stopped mirror's late events are ignored.
    generation: u64,
    /// The client accepts server-initiated `$/progress` (window.workDoneProgress).
    work_done_progress: bool,
    progress: Option<Progress>,
    /// The client handles `window/showDocument` (follow mode).
    show_document: bool,
    /// The client rewrites the line breaks of every edit it applies to its
    /// buffer's one line ending (`workspace.workspaceEdit.normalizesLineEndings`,
    /// VS Code): its replicas show it the shared text translated to it.
    normalizes_line_endings: bool,
    presence: Presence,
    /// The last `weft/cursor` if some of its selections could not be
    /// anchored yet (retried until they can).
    cursor_retry: Option<wl::CursorParams>,
    shutting_down: bool,
}

fn default_name(config: &BridgeConfig) -> String {
    if let Some(name) = config.name.clone().filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let git = std::process::Command::new("git").args(["config", "user.name"]).output();
    if let Ok(out) = git
        && out.status.success()
    {
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "anonymous".to_owned())
}

/// Picks the first encoding the client offers that we speak; UTF-16 otherwise.
fn negotiate(params: &InitializeParams) -> Encoding {
    params
        .capabilities
        .general
        .as_ref()
        .and_then(|g| g.position_encodings.as_ref())
        .and_then(|offered| offered.iter().find_map(|e| Encoding::parse(e.as_str())))
        .unwrap_or(Encoding::Utf16)
}

fn to_pos(p: lsp_types::Position) -> Pos {
    Pos { line: p.line, character: p.character }
}

fn from_pos(p: Pos) -> lsp_types::Position {
    lsp_types::Position { line: p.line, character: p.character }
}

impl Bridge {
    /// Performs the `initialize` handshake on `incoming` and returns a
    /// bridge ready to [`Bridge::run`].
    pub fn initialize(
        incoming: &mut UnboundedReceiver<Incoming>,
        out: Sender<Option<String>>,
        config: BridgeConfig,
    ) -> anyhow::Result<Option<Bridge>> {
        let (id, params) = loop {
            match incoming.blocking_recv() {
                None => return Ok(None),
                Some(Incoming::Garbage(_)) => continue,
                Some(Incoming::Message(Message::Request(req))) if req.method == "initialize" => {
                    match serde_json::from_value::<InitializeParams>(req.params.clone()) {
                        Ok(params) => break (req.id, params),
                        Err(err) => {
                            let resp = Response::new_err(
                                req.id,
                                RpcCode::InvalidParams as i32,
                                format!("bad initialize params: {err}"),
                            );
                            if let Some(text) = encode(&Message::Response(resp)) {
                                let _ = out.send(Some(text));
                            }
                        }
                    }
                }
                Some(Incoming::Message(Message::Request(req))) => {
                    let resp =
                        Response::new_err(req.id, RpcCode::ServerNotInitialized as i32, "send initialize first".into());
                    if let Some(text) = encode(&Message::Response(resp)) {
                        let _ = out.send(Some(text));
                    }
                }
                Some(Incoming::Message(Message::Notification(n))) if n.method == "exit" => return Ok(None),
                Some(Incoming::Message(_) | Incoming::DidChange(_)) => {}
            }
        };
        let enc = negotiate(&params);
        let options = params.initialization_options.clone().unwrap_or_default();
        let mut config = config;
        if let Some(name) = options.get("name").and_then(|n| n.as_str()).filter(|n| !n.trim().is_empty()) {
            config.name = Some(name.to_owned());
        }
        let kind = match options.get("kind").and_then(|k| k.as_str()) {
            Some("agent") => ClientKind::Agent,
            _ => ClientKind::User,
        };
        let name = default_name(&config);
        let color = options
            .get("color")
            .and_then(|c| c.as_str())
            .filter(|c| weft_core::presence::is_color(c))
            .map(str::to_lowercase)
            .unwrap_or_else(|| weft_core::presence::color_for(&name));
        let ms =
            |key: &str, default: u64| options.get(key).and_then(|v| v.as_u64()).filter(|v| *v > 0).unwrap_or(default);
        let idle_ms = ms("idleTimeoutMs", weft_core::presence::DEFAULT_IDLE_MS);
        let identity = Identity {
            name: name.clone(),
            color,
            kind,
            idle_ms,
            away_ms: ms("awayTimeoutMs", idle_ms.saturating_mul(3)),
            announce: options.get("announcePeers").and_then(|v| v.as_bool()).unwrap_or(false),
        };
        let show_document =
            params.capabilities.window.as_ref().and_then(|w| w.show_document.as_ref()).is_some_and(|s| s.support);
        let normalizes_line_endings = params
            .capabilities
            .workspace
            .as_ref()
            .and_then(|w| w.workspace_edit.as_ref())
            .and_then(|e| e.normalizes_line_endings)
            .unwrap_or(false);
        let capabilities = lsp_types::ServerCapabilities {
            position_encoding: Some(PositionEncodingKind::from(enc.as_str())),
            text_document_sync: Some(TextDocumentSyncCapability::Options(lsp_types::TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                ..Default::default()
            })),
            experimental: Some(serde_json::json!({
                "weft": { "protocol": weft_protocol::PROTOCOL_VERSION, "methods": wl::METHODS }
            })),
            ..Default::default()
        };
        let result = serde_json::json!({
            "capabilities": capabilities,
            "serverInfo": { "name": "weft", "version": env!("CARGO_PKG_VERSION") },
        });
        let text =
            encode(&Message::Response(Response::new_ok(id, result))).context("cannot encode the initialize answer")?;
        out.send(Some(text)).context("editor went away")?;
        tracing::info!(encoding = enc.as_str(), %name, normalizes_line_endings, "initialized");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("weft-lsp-io")
            .build()
            .context("starting the I/O runtime")?;
        let inbox = Inbox::new()?;
        let work_done_progress =
            params.capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
        Ok(Some(Bridge {
            out,
            runtime,
            config,
            enc,
            name,
            kind,
            docs: HashMap::new(),
            closed: HashMap::new(),
            session: None,
            next_request: 1,
            pending_edits: HashMap::new(),
            inbox,
            generation: 0,
            work_done_progress,
            progress: None,
            show_document,
            normalizes_line_endings,
            presence: Presence::new(identity),
            cursor_retry: None,
            shutting_down: false,
        }))
    }

    /// Handles messages until the editor sends `exit` or goes away; returns
    /// whether `shutdown` came first.
    pub fn run(mut self, mut incoming: UnboundedReceiver<Incoming>) -> anyhow::Result<bool> {
        loop {
            match self.inbox.next(Some(&mut incoming), None) {
                Event::Editor(Some(Incoming::Message(msg))) => {
                    if !self.on_message(msg) {
                        break;
                    }
                }
                Event::Editor(Some(Incoming::DidChange(params))) => self.did_change(params),
                Event::Editor(Some(Incoming::Garbage(what))) => {
                    self.log(MessageType::WARNING, &format!("ignored a malformed message from the editor ({what})"));
                }
                Event::Editor(None) => break,
                Event::Hub(ev) => self.on_hub(ev),
                Event::Mirror(generation, ev) => self.on_mirror(generation, ev),
                Event::Tick => {
                    for replica in self.docs.values_mut() {
                        replica.retry();
                    }
                    let changes = self.presence.tick();
                    self.on_presence_changes(changes);
                }
                Event::TimedOut => {}
            }
            self.flush();
        }
        self.end_session();
        let _ = self.out.send(None);
        Ok(self.shutting_down)
    }

    fn send(&self, msg: Message) {
        if let Some(text) = encode(&msg) {
            self.send_text(text);
        }
    }

    fn send_text(&self, text: String) {
        if self.out.send(Some(text)).is_err() {
            tracing::debug!("editor output closed");
        }
    }

    fn notify<T: serde::Serialize>(&self, method: &str, params: T) {
        match serde_json::to_value(params) {
            Ok(params) => self.send(Message::Notification(Notification { method: method.to_owned(), params })),
            Err(err) => tracing::error!(%err, method, "cannot encode a notification"),
        }
    }

    fn log(&self, typ: MessageType, message: &str) {
        if typ == MessageType::ERROR || typ == MessageType::WARNING {
            tracing::warn!("{message}");
        } else {
            tracing::info!("{message}");
        }
        self.notify("window/logMessage", lsp_types::LogMessageParams { typ, message: message.to_owned() });
    }

    fn show(&self, typ: MessageType, message: &str) {
        tracing::info!(shown = true, "{message}");
        self.notify("window/showMessage", ShowMessageParams { typ, message: message.to_owned() });
    }

    /// Handles one LSP message; `false` once the editor said `exit`.
    fn on_message(&mut self, msg: Message) -> bool {
        match msg {
            Message::Request(req) => self.on_request(req),
            Message::Notification(n) => return self.on_notification(n),
            Message::Response(resp) => self.on_response(resp),
        }
        true
    }

    fn on_request(&mut self, req: Request) {
        let id = req.id.clone();
        if self.shutting_down && req.method != "shutdown" {
            let resp = Response::new_err(id, RpcCode::InvalidRequest as i32, "the server is shutting down".into());
            return self.send(Message::Response(resp));
        }
        let result: Result<serde_json::Value, (i32, String)> = match req.method.as_str() {
            "shutdown" => {
                self.shutting_down = true;
                Ok(serde_json::Value::Null)
            }
            "initialize" => Err((RpcCode::InvalidRequest as i32, "already initialized".into())),
            m if m == wl::Share::METHOD => self.with_params(req.params, |b, p| b.share(p)),
            m if m == wl::Join::METHOD => self.with_params(req.params, |b, p| b.join(p)),
            m if m == wl::Leave::METHOD => {
                self.leave();
                Ok(serde_json::Value::Null)
            }
            m if m == wl::Status::METHOD => {
                serde_json::to_value(self.status(true)).map_err(|e| (RpcCode::InternalError as i32, e.to_string()))
            }
            m if m == wl::Follow::METHOD => self.with_params(req.params, |b, p| b.follow(p)),
            m if m == wl::Summon::METHOD => self.with_params(req.params, |b, _: serde_json::Value| b.summon()),
            other => Err((RpcCode::MethodNotFound as i32, format!("weft lsp does not handle {other}"))),
        };
        let resp = match result {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code, message),
        };
        self.send(Message::Response(resp));
    }

    fn with_params<P: serde::de::DeserializeOwned, R: serde::Serialize>(
        &mut self,
        params: serde_json::Value,
        f: impl FnOnce(&mut Bridge, P) -> anyhow::Result<R>,
    ) -> Result<serde_json::Value, (i32, String)> {
        let params: P = serde_json::from_value(params)
            .map_err(|e| (RpcCode::InvalidParams as i32, format!("invalid params: {e}")))?;
        let result = f(self, params).map_err(|e| (RpcCode::RequestFailed as i32, format!("{e:#}")))?;
        serde_json::to_value(result).map_err(|e| (RpcCode::InternalError as i32, e.to_string()))
    }

    fn on_notification(&mut self, n: Notification) -> bool {
        match n.method.as_str() {
            "exit" => return false,
            "initialized" | "$/cancelRequest" | "$/setTrace" | "workspace/didChangeConfiguration" => {}
            "textDocument/didOpen" => self.notification_params(n, Bridge::did_open),
            "textDocument/didChange" => self.notification_params(n, Bridge::did_change),
            "textDocument/didClose" => self.notification_params(n, Bridge::did_close),
            m if m == wl::Verify::METHOD => self.notification_params(n, Bridge::verify),
            m if m == wl::Cursor::METHOD => self.notification_params(n, Bridge::cursor),
            m if m == wl::PeersOptions::METHOD => {
                self.notification_params(n, |b, p: wl::PeersOptionsParams| b.presence.set_show_selections(p.selections))
            }
            m if m == wl::Focus::METHOD => {
                self.notification_params(n, |b, p: wl::FocusParams| b.presence.set_focus(p.focused))
            }
            m if m == wl::Doing::METHOD => {
                self.notification_params(n, |b, p: wl::DoingParams| b.presence.set_doing(p.text))
            }
            other => tracing::debug!(method = other, "ignored notification"),
        }
        true
    }

    fn notification_params<P: serde::de::DeserializeOwned>(&mut self, n: Notification, f: fn(&mut Bridge, P)) {
        match serde_json::from_value::<P>(n.params) {
            Ok(params) => f(self, params),
            Err(err) => self.log(MessageType::WARNING, &format!("ignored {} with invalid params: {err}", n.method)),
        }
    }

    fn on_response(&mut self, resp: Response) {
        let Some((uri, edit)) = self.pending_edits.remove(&resp.id) else { return };
        let applied = resp.result.as_ref().and_then(|r| r.get("applied")).and_then(|a| a.as_bool()).unwrap_or(false);
        if let Some(err) = &resp.error {
            tracing::debug!(code = err.code, message = %err.message, "editor failed an applyEdit");
        }
        if let Some(replica) = self.docs.get_mut(&uri)
            && let Err(err) = replica.edit_answered(edit, applied)
        {
            tracing::error!(%err, %uri, "replica rejected an edit answer");
        }
    }

    /// The doc id of `uri` in the current session, if it is under the root.
    fn doc_id(&self, uri: &Url) -> Option<DocId> {
        let session = self.session.as_ref()?;
        doc_id_under(&session.root, uri)
    }

    fn did_open(&mut self, p: DidOpenTextDocumentParams) {
        let uri = p.text_document.uri;
        // A normalising editor's buffer keeps the line ending it opened
        // with; an empty or one-line file gets the platform's.
        let eol = self.normalizes_line_endings.then(|| {
            LineEnding::first_in(&p.text_document.text).unwrap_or(if cfg!(windows) {
                LineEnding::CrLf
            } else {
                LineEnding::Lf
            })
        });
        let mut replica = Replica::new(fresh_client_id(), self.enc, p.text_document.version, &p.text_document.text)
            .with_line_ending(eol);
        if let Some(session) = &self.session {
            replica.set_read_only(session.role == Some(Role::Viewer));
        }
        if self.docs.insert(uri.clone(), replica).is_some() {
            self.log(MessageType::WARNING, &format!("{uri} was opened twice; using the newer buffer"));
        }
        if let (Some(doc), Some(mirror)) = (self.doc_id(&uri), self.session.as_ref().and_then(|s| s.mirror.as_ref())) {
            mirror.tell(MirrorCommand::Hold(doc));
        }
        self.start_sync(&uri);
    }

    /// Sends sync step 1 for `uri` if it is shared and the hub is connected.
    fn start_sync(&mut self, uri: &Url) {
        let Some(doc) = self.doc_id(uri) else { return };
        let Some(session) = &self.session else { return };
        if session.state != ConnectionState::Connected {
            return;
        }
        if let Some(replica) = self.docs.get(uri) {
            session.link.send(frame::join(&doc, &replica.step1()));
        }
    }

    fn did_change(&mut self, p: DidChangeTextDocumentParams) {
        let uri = p.text_document.uri;
        let Some(replica) = self.docs.get_mut(&uri) else {
            return self.log(MessageType::WARNING, &format!("didChange for {uri}, which was never opened; ignored"));
        };
        let changes: Vec<EditorChange> = p
            .content_changes
            .into_iter()
            .map(|c| EditorChange { range: c.range.map(|r| (to_pos(r.start), to_pos(r.end))), text: c.text })
            .collect();
        let typed = replica.typed();
        if let Err(err) = replica.did_change(p.text_document.version, &changes) {
            tracing::error!(%err, %uri, "a change could not be applied; the next weft/verify will repair the buffer");
        }
        if replica.typed() > typed && self.presence.typed() {
            self.notify(wl::Following::METHOD, wl::FollowParams { peer: None });
        }
        self.presence.positions_changed();
    }

    fn cursor(&mut self, p: wl::CursorParams) {
        self.publish_cursor(p, true);
    }

    /// Publishes the user's cursors (`input`: the user moved them, which
    /// counts as activity). Selections that cannot be anchored yet (before
    /// the document's first sync) are retried from `flush_presence`.
    fn publish_cursor(&mut self, p: wl::CursorParams, input: bool) {
        let Ok(uri) = Url::parse(&p.uri) else {
            return self.log(MessageType::WARNING, "weft/cursor with an invalid uri; ignored");
        };
        let doc = self.doc_id(&uri);
        let sticky = match (&doc, self.docs.get(&uri)) {
            (Some(_), Some(replica)) => p
                .selections
                .iter()
                .take(MAX_SELECTIONS)
                .filter_map(|s| {
                    let anchor = replica.sticky_at(Pos { line: s.anchor.line, character: s.anchor.character })?;
                    let head = replica.sticky_at(Pos { line: s.head.line, character: s.head.character })?;
                    Some((anchor, head))
                })
                .collect(),
            _ => Vec::new(),
        };
        let wanted = p.selections.len().min(MAX_SELECTIONS);
        self.cursor_retry = (doc.is_some() && sticky.len() < wanted).then(|| p.clone());
        self.presence.set_cursor(doc.as_ref(), sticky, p.visible, input);
    }

    fn follow(&mut self, p: wl::FollowParams) -> anyhow::Result<wl::FollowParams> {
        if self.session.is_none() {
            bail!("not in a session: share or join first");
        }
        if !self.presence.follow(p.peer) {
            bail!("no peer {} in this session (see weft/peers)", p.peer.unwrap_or_default());
        }
        Ok(wl::FollowParams { peer: self.presence.following() })
    }

    fn summon(&mut self) -> anyhow::Result<serde_json::Value> {
        let session = self.session.as_ref().context("not in a session: share first")?;
        if session.role != Some(Role::Owner) {
            bail!("only the session's owner can summon everyone");
        }
        self.presence.summon();
        Ok(serde_json::Value::Null)
    }

    fn did_close(&mut self, p: DidCloseTextDocumentParams) {
        let uri = p.text_document.uri;
        let Some(replica) = self.docs.remove(&uri) else { return };
        self.pending_edits.retain(|_, (u, _)| *u != uri);
        let (Some(doc), Some(session)) = (self.doc_id(&uri), &self.session) else { return };
        if let Some(mirror) = &session.mirror {
            mirror.tell(MirrorCommand::Release(doc.clone()));
        }
        // The last edits may still be on their way, or lost with a
        // connection that has not been noticed as dead yet: keep the replica
        // until a sync round trip has handed the hub everything it lacks.
        // Unsubscribing first makes the hub answer the step 1 with its own
        // step 1 (which the closed replica answers, then it is dropped).
        if session.state == ConnectionState::Connected {
            session.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc: doc.clone() });
            session.link.send(frame::join(&doc, &replica.step1()));
        }
        self.closed.insert(doc, replica);
    }

    fn verify(&mut self, p: VerifyParams) {
        let Ok(uri) = Url::parse(&p.uri) else {
            return self.log(MessageType::WARNING, "weft/verify with an invalid uri; ignored");
        };
        let Some(replica) = self.docs.get_mut(&uri) else { return };
        if let Some(edit) = replica.verify(p.version, &p.sha256) {
            self.send_edit(&uri, edit);
        }
    }

    fn send_edit(&mut self, uri: &Url, edit: EditRequest) {
        let id = RequestId::from(self.next_request);
        self.next_request += 1;
        let edits = edit
            .edits
            .into_iter()
            .map(|(s, e, new_text)| {
                OneOf::Left(TextEdit { range: lsp_types::Range { start: from_pos(s), end: from_pos(e) }, new_text })
            })
            .collect();
        let params = ApplyWorkspaceEditParams {
            label: Some("weft".into()),
            edit: WorkspaceEdit {
                document_changes: Some(lsp_types::DocumentChanges::Edits(vec![TextDocumentEdit {
                    text_document: OptionalVersionedTextDocumentIdentifier {
                        uri: uri.clone(),
                        version: Some(edit.version),
                    },
                    edits,
                }])),
                ..Default::default()
            },
        };
        let Some(text) = encode_request(&id, "workspace/applyEdit", &params) else { return };
        self.pending_edits.insert(id, (uri.clone(), edit.id));
        self.send_text(text);
    }

    /// Sends what the replicas produced: updates to the hub, edits to the
    /// editor, notices to the user.
    fn flush(&mut self) {
        let connected = self.session.as_ref().is_some_and(|s| s.state == ConnectionState::Connected);
        // Only documents with output: with many files open, mapping every
        // URI to a document id at every message was a visible cost.
        let mut ready = Vec::new();
        for (uri, replica) in &mut self.docs {
            let updates = replica.take_updates();
            let notices = replica.take_notices();
            let edit = replica.poll_edit();
            if !updates.is_empty() || !notices.is_empty() || edit.is_some() {
                ready.push((uri.clone(), updates, notices, edit));
            }
        }
        for (uri, updates, notices, edit) in ready {
            let doc = if updates.is_empty() { None } else { self.doc_id(&uri) };
            if let (Some(doc), Some(session), true) = (&doc, &self.session, connected) {
                for update in updates {
                    let msg = weft_core::shared_doc::update_message(&update);
                    session.link.send(frame::join(doc, &msg));
                }
            }
            for notice in notices {
                match notice {
                    Notice::Show(text) => self.show(MessageType::WARNING, &text),
                    Notice::Warn(text) => self.log(MessageType::WARNING, &format!("{uri}: {text}")),
                }
            }
            if let Some(edit) = edit {
                self.send_edit(&uri, edit);
            }
        }
        self.flush_presence(connected);
    }

    /// Sends our awareness state when due, and `weft/peers` (with follow
    /// mode's reveals) at most about 30 times a second.
    fn flush_presence(&mut self, connected: bool) {
        if let Some(cursor) = self.cursor_retry.take() {
            self.publish_cursor(cursor, false);
        }
        let Some(session) = &self.session else { return };
        if connected && let Some(msg) = self.presence.outgoing() {
            session.link.send(frame::join(&DocId::session(), &msg));
        }
        let root = session.root.clone();
        let docs = &self.docs;
        // This editor's URI for each open shared doc (as the editor spelled
        // it); built only when a peers list is due, not at every message.
        let open: std::cell::OnceCell<HashMap<DocId, String>> = std::cell::OnceCell::new();
        let uri_of = |doc: &DocId| {
            open.get_or_init(|| docs.keys().filter_map(|u| Some((doc_id_under(&root, u)?, u.to_string()))).collect())
                .get(doc)
                .cloned()
                .or_else(|| Url::from_file_path(weft_workspace::scan::path_of(&root, doc)).ok().map(|u| u.to_string()))
        };
        let is_open = |uri: &str| Url::parse(uri).is_ok_and(|u| docs.contains_key(&u));
        let resolve = |uri: &str, sticky: &[u8]| docs.get(&Url::parse(uri).ok()?)?.resolve_sticky(sticky);
        let Some(mut peers) = self.presence.peers_due(uri_of, is_open, resolve) else { return };
        match self.presence.follow_step(&peers) {
            FollowStep::Reveal(reveal) if self.show_document => self.show_document(reveal),
            FollowStep::Reveal(_) | FollowStep::Nothing => {}
            FollowStep::LeaderGone => self.notify(wl::Following::METHOD, wl::FollowParams { peer: None }),
        }
        if !self.presence.show_selections() {
            peers.iter_mut().for_each(|p| p.selections.clear());
        }
        self.notify(wl::Peers::METHOD, wl::PeersParams { peers });
    }

    fn show_document(&mut self, reveal: crate::presence::Reveal) {
        let id = RequestId::from(self.next_request);
        self.next_request += 1;
        let mut params = serde_json::json!({ "uri": reveal.uri, "external": false, "takeFocus": false });
        if let Some(selection) = reveal.selection {
            params["selection"] = serde_json::json!(selection);
        }
        self.send(Message::Request(Request { id, method: "window/showDocument".into(), params }));
    }

    fn on_hub(&mut self, ev: HubEvent) {
        match ev {
            HubEvent::Connected { role, peer } => self.on_connected(role, peer),
            HubEvent::Frame(bytes) => self.on_frame(&bytes),
            HubEvent::Control(ctrl) => match ctrl {
                weft_protocol::ServerControl::Error { code, message, doc } => {
                    self.log(MessageType::WARNING, &format!("hub refused a message ({code:?}) for {doc:?}: {message}"));
                }
                weft_protocol::ServerControl::Kick { code, message } => {
                    self.log(MessageType::WARNING, &format!("hub disconnected us ({code:?}): {message}"));
                }
                weft_protocol::ServerControl::Role { role } => self.on_role(role),
                _ => {}
            },
            HubEvent::Disconnected { reason } => {
                if let Some(session) = &mut self.session
                    && session.state != ConnectionState::Connecting
                {
                    session.state = ConnectionState::Connecting;
                    tracing::warn!(%reason, "lost the hub; working offline until it is back");
                    self.notify(wl::Connection::METHOD, self.status(false));
                }
            }
            HubEvent::Refused { code, message } => {
                if self.session.is_some() {
                    self.show(MessageType::ERROR, &format!("weft: the hub refused this session ({code:?}): {message}. Leave and join again with a valid link."));
                    if let Some(session) = &mut self.session {
                        session.state = ConnectionState::Idle;
                    }
                    self.notify(wl::Connection::METHOD, self.status(false));
                }
            }
            HubEvent::Untrusted { reason } => {
                if let Some(session) = &mut self.session {
                    session.state = ConnectionState::Idle;
                    self.show(MessageType::ERROR, &format!("weft: stopped connecting to the hub: {reason}"));
                    self.notify(wl::Connection::METHOD, self.status(false));
                }
            }
        }
    }

    fn on_connected(&mut self, role: Role, peer: u64) {
        let Some(session) = &mut self.session else { return };
        session.state = ConnectionState::Connected;
        session.role = Some(role);
        self.presence.set_role(role);
        tracing::info!(session = %session.id, %role, peer, "connected to the hub");
        let read_only = role == Role::Viewer;
        let uris: Vec<Url> = self.docs.keys().cloned().collect();
        for uri in &uris {
            if let Some(replica) = self.docs.get_mut(uri) {
                replica.set_read_only(read_only);
            }
            self.start_sync(uri);
        }
        if let Some(session) = &self.session {
            for (doc, replica) in &self.closed {
                session.link.send(frame::join(doc, &replica.step1()));
            }
            session.link.send(frame::join(&DocId::session(), &Presence::subscribe_message()));
        }
        self.notify(wl::Connection::METHOD, self.status(false));
    }

    /// The owner changed our role live (a viewer's edits are undone from
    /// now on, as for a viewer link).
    fn on_role(&mut self, role: Role) {
        let Some(session) = &mut self.session else { return };
        session.role = Some(role);
        let root = session.root.clone();
        for (uri, replica) in self.docs.iter_mut() {
            if doc_id_under(&root, uri).is_some() {
                replica.set_read_only(role == Role::Viewer);
            }
        }
        self.presence.set_role(role);
        let what = if role == Role::Viewer { " (read-only: your edits are no longer shared)" } else { "" };
        self.show(MessageType::INFO, &format!("weft: the session owner made you {role}{what}"));
        self.notify(wl::Connection::METHOD, self.status(false));
    }

    fn on_frame(&mut self, bytes: &[u8]) {
        let Ok((doc, message)) = frame::split(bytes) else {
            return tracing::warn!("unreadable frame from the hub");
        };
        let Some(session) = &self.session else { return };
        let root = session.root.clone();
        if doc.is_session_doc() {
            return self.on_presence(message);
        }
        self.presence.positions_changed();
        if let Some(replica) = self.closed.get_mut(&doc) {
            // A closed document catching up after a reconnect: once it has
            // answered the hub's step 1, the hub holds its offline edits.
            let is_step1 = frame::message_kind(message) == Some(frame::MessageKind::SyncStep1);
            match replica.handle_sync(message) {
                Ok(replies) => {
                    // Typing replayed at a first sync becomes updates here.
                    for update in replica.take_updates() {
                        session.link.send(frame::join(&doc, &weft_core::shared_doc::update_message(&update)));
                    }
                    for reply in replies {
                        session.link.send(frame::join(&doc, &reply));
                    }
                    if is_step1 {
                        session.link.send_control(&weft_protocol::ClientControl::Unsubscribe { doc: doc.clone() });
                        self.closed.remove(&doc);
                    }
                }
                Err(err) => tracing::warn!(%err, %doc, "ignored a message from the hub"),
            }
            return;
        }
        let Some(uri) = self.docs.keys().find(|u| doc_id_under(&root, u).as_ref() == Some(&doc)).cloned() else {
            return;
        };
        let Some(replica) = self.docs.get_mut(&uri) else { return };
        match replica.handle_sync(message) {
            Ok(replies) => {
                if let Some(session) = &self.session {
                    for reply in replies {
                        session.link.send(frame::join(&doc, &reply));
                    }
                }
            }
            Err(err) => tracing::warn!(%err, %doc, "ignored a message from the hub"),
        }
    }

    fn on_presence(&mut self, message: &[u8]) {
        let changes = self.presence.on_session_message(message);
        self.on_presence_changes(changes);
    }

    /// Tells the editor who joined or left, and about a summons.
    fn on_presence_changes(&mut self, changes: crate::presence::Changes) {
        if !changes.activity.is_empty() {
            if self.presence.announce() {
                for entry in &changes.activity {
                    self.show(MessageType::INFO, &format!("weft: {} {} the session", entry.name, entry.kind));
                }
            }
            self.notify(wl::Activity::METHOD, wl::ActivityParams { entries: changes.activity });
        }
        if let Some((leader, name)) = changes.summoned_by {
            self.show(
                MessageType::INFO,
                &format!("weft: {name} asked everyone to follow them; type to stop following"),
            );
            self.notify(wl::Following::METHOD, wl::FollowParams { peer: Some(leader) });
        }
    }

    fn status(&self, with_peers: bool) -> StatusResult {
        let Some(session) = &self.session else {
            return StatusResult { state: ConnectionState::Idle, session: None, role: None, peers: None, documents: 0 };
        };
        let documents = self.docs.keys().filter(|u| doc_id_under(&session.root, u).is_some()).count();
        let peers = (with_peers && session.state == ConnectionState::Connected)
            .then(|| {
                let path = format!("/api/sessions/{}/participants", session.id);
                let call = hub_api::call::<ParticipantList>(
                    &session.hub,
                    &session.tls,
                    "GET",
                    &path,
                    &session.token,
                    None::<&()>,
                );
                let call = async {
                    if let Some(pw) = &session.password {
                        tracing::debug!(len = pw.len(), "participants of a password link are not counted");
                        return None;
                    }
                    call.await.ok()
                };
                // The count is a nicety: never hold the editor's loop for long.
                let call = async { tokio::time::timeout(Duration::from_secs(2), call).await };
                self.runtime.block_on(call).ok().flatten().map(|l| l.participants.len())
            })
            .flatten();
        StatusResult { state: session.state, session: Some(session.id.clone()), role: session.role, peers, documents }
    }

    fn share(&mut self, p: ShareParams) -> anyhow::Result<ShareResult> {
        let root = root_path(&p.root)?;
        self.leave();
        let hub = p.hub.clone().or_else(|| self.config.hub.clone());
        let tls = ClientTls::new(&self.config.tls)?;
        let (hub, admin, embedded) = match hub {
            Some(hub) => {
                let token = self.config.hub_token.clone().context(
                    "sharing on a hub needs its token: set WEFT_HUB_TOKEN (or omit the hub to use an embedded one)",
                )?;
                let hub = HubAddr::parse(&hub)?;
                tls.check(&hub)?;
                (hub, token, None)
            }
            None => {
                let hub = weft_hub::embedded::start(self.runtime.handle(), &root.join(".weft").join("hub"))?;
                (HubAddr::plain(hub.authority.clone()), hub.admin.clone(), Some(hub))
            }
        };
        let name = p.name.clone().unwrap_or_else(|| {
            root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "weft session".into())
        });
        let shared = self.runtime.block_on(hub_api::create_shared_session(&hub, &tls, &admin, name, p.template))?;
        let session = shared.created.id.0.clone();
        let token = shared.created.owner.token;
        let ignore = shared.created.ignore;
        self.enter_session(Side::Host, session.clone(), root, hub, tls, token, None, embedded, &ignore);
        self.wait_connected()?;
        self.wait_tree_published();
        Ok(ShareResult { session, links: ShareLinks { editor: shared.editor.url, viewer: shared.viewer.url } })
    }

    fn join(&mut self, p: JoinParams) -> anyhow::Result<JoinResult> {
        let root = root_path(&p.root)?;
        let link = Link::parse(&p.link)?;
        let tls = ClientTls::new(&self.config.tls)?;
        tls.check(&link.hub)?;
        self.leave();
        let (hub, token) = (link.hub.clone(), link.token.clone());
        self.enter_session(Side::Guest, link.session.clone(), root, hub, tls, token, p.password, None, &[]);
        let role = self.wait_connected()?;
        Ok(JoinResult { session: link.session, role })
    }

    #[expect(clippy::too_many_arguments, reason = "one call per side; a struct would only rename them")]
    fn enter_session(
        &mut self,
        side: Side,
        id: String,
        root: PathBuf,
        hub: HubAddr,
        tls: ClientTls,
        token: String,
        password: Option<String>,
        embedded: Option<weft_hub::embedded::EmbeddedHub>,
        ignore: &[String],
    ) {
        let creds =
            Credentials { token: token.clone(), password: password.clone(), name: self.name.clone(), kind: self.kind };
        let url = hub.ws_url(&id);
        let link =
            hub_link::start(self.inbox.local.handle(), url.clone(), tls.clone(), creds, self.inbox.hub_tx.clone());
        // Documents already open start over as the editor holds them now.
        start_over(&mut self.docs, &root, self.enc);
        let mirror = self.start_mirror(MirrorConfig {
            root: root.clone(),
            side,
            url: url.clone(),
            tls: tls.clone(),
            token: token.clone(),
            password: password.clone(),
            name: format!("{} (files)", self.name),
            overwrite: false,
            ignore: ignore.to_vec(),
        });
        self.presence.reset();
        self.session = Some(Session {
            side,
            id,
            root,
            role: None,
            state: ConnectionState::Connecting,
            hub,
            tls,
            token,
            password,
            link,
            mirror,
            _embedded: embedded,
        });
    }

    /// Starts the disk side of a session on its own thread, holding the
    /// files the editor has open.
    fn start_mirror(&mut self, config: MirrorConfig) -> Option<MirrorThread> {
        self.generation += 1;
        self.progress = None;
        let root = config.root.clone();
        let root = root.as_path();
        let mirror = match Mirror::start(config, self.runtime.handle()) {
            Ok(mirror) => mirror,
            Err(err) => {
                self.show(
                    MessageType::WARNING,
                    &format!("weft: files that are not open are not synced with the disk: {err:#}"),
                );
                return None;
            }
        };
        let (commands, rx) = crossbeam_channel::unbounded();
        for uri in self.docs.keys() {
            if let Some(doc) = doc_id_under(root, uri) {
                let _ = commands.send(MirrorCommand::Hold(doc));
            }
        }
        let (events, generation) = (self.inbox.mirror_tx.clone(), self.generation);
        let thread = std::thread::Builder::new().name("weft-mirror".into()).spawn(move || {
            let report = |ev| {
                let _ = events.send((generation, ev));
            };
            if let Err(err) = mirror.run(&rx, report) {
                tracing::warn!("the workspace mirror stopped: {err:#}");
            }
        });
        match thread {
            Ok(thread) => Some(MirrorThread { commands, thread: Some(thread) }),
            Err(err) => {
                tracing::error!(%err, "cannot start the workspace mirror's thread");
                None
            }
        }
    }

    /// Share: waits until the mirror has the whole tree durable on the hub,
    /// so the links work at once (reporting progress meanwhile). Gives up
    /// waiting, not sharing, after [`PUBLISH_TIMEOUT`].
    fn wait_tree_published(&mut self) {
        if self.session.as_ref().is_none_or(|s| s.mirror.is_none()) {
            return;
        }
        let deadline = std::time::Instant::now() + PUBLISH_TIMEOUT;
        loop {
            match self.inbox.next(None, Some(deadline)) {
                Event::Hub(ev) => self.on_hub(ev),
                Event::Mirror(generation, ev) => {
                    let ready = generation == self.generation && matches!(ev, MirrorEvent::Ready { .. });
                    self.on_mirror(generation, ev);
                    if ready {
                        return;
                    }
                }
                Event::TimedOut => {
                    return self.log(
                        MessageType::WARNING,
                        "sharing: the file tree is still being published; links are ready, files arrive as they are sent",
                    );
                }
                Event::Editor(_) | Event::Tick => {}
            }
        }
    }

    fn on_mirror(&mut self, generation: u64, ev: MirrorEvent) {
        if generation != self.generation || self.session.is_none() {
            return;
        }
        let title = match self.session.as_ref().map(|s| s.side) {
            Some(Side::Host) => "weft: sharing files",
            _ => "weft: joining",
        };
        match ev {
            MirrorEvent::Progress { done, total } => self.report_progress(title, done, total),
            MirrorEvent::Ready { files } => {
                self.end_progress(&format!("{files} files in sync"));
                self.log(MessageType::INFO, &format!("weft: {files} files in sync with the disk"));
            }
            MirrorEvent::Kept { path } => self.show(
                MessageType::WARNING,
                &format!("weft: kept your {path}: it differs from the shared one and is not synced"),
            ),
            MirrorEvent::Unwritable { path, reason } => self.show(
                MessageType::WARNING,
                &format!("weft: cannot write the shared file {path} here ({reason}); it is not synced on this side"),
            ),
            MirrorEvent::Offline(_) | MirrorEvent::Connected(_) | MirrorEvent::Refused(_) => {}
        }
    }

    /// `$/progress` (begin, then report) if the client accepts it.
    fn report_progress(&mut self, title: &'static str, done: usize, total: usize) {
        if !self.work_done_progress {
            return;
        }
        let percentage = (done * 100).checked_div(total).unwrap_or(100).min(100) as u32;
        let message = format!("{done}/{total} files");
        let progress = match &self.progress {
            Some(p) => p,
            None => {
                let token = format!("weft/mirror/{}", self.generation);
                let id = RequestId::from(self.next_request);
                self.next_request += 1;
                let params = serde_json::json!({ "token": token });
                self.send(Message::Request(Request { id, method: "window/workDoneProgress/create".into(), params }));
                self.notify(
                    "$/progress",
                    serde_json::json!({ "token": token, "value": {
                        "kind": "begin", "title": title, "cancellable": false, "message": message, "percentage": percentage,
                    }}),
                );
                self.progress.insert(Progress { token, title })
            }
        };
        let value = serde_json::json!({ "kind": "report", "message": message, "percentage": percentage });
        let params = serde_json::json!({ "token": progress.token, "value": value });
        tracing::debug!(title = progress.title, done, total, "progress");
        self.notify("$/progress", params);
    }

    fn end_progress(&mut self, message: &str) {
        if let Some(progress) = self.progress.take() {
            let params = serde_json::json!({ "token": progress.token, "value": { "kind": "end", "message": message } });
            self.notify("$/progress", params);
        }
    }

    /// Waits for the first connection of a new session, handling hub events.
    fn wait_connected(&mut self) -> anyhow::Result<Role> {
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            match self.inbox.next_hub(deadline) {
                Ok(HubEvent::Connected { role, peer }) => {
                    self.on_connected(role, peer);
                    return Ok(role);
                }
                Ok(HubEvent::Refused { code, message }) => {
                    self.session = None;
                    bail!("the hub refused to join ({code:?}): {message}");
                }
                Ok(HubEvent::Untrusted { reason }) => {
                    self.session = None;
                    bail!("{reason}");
                }
                Ok(HubEvent::Disconnected { reason }) => {
                    // Never connected yet: fail now rather than let the
                    // editor wait; later drops are ridden out offline.
                    self.session = None;
                    bail!("could not reach the hub: {reason}");
                }
                Ok(other) => self.on_hub(other),
                Err(_) => {
                    self.session = None;
                    bail!("the hub did not answer within {CONNECT_TIMEOUT:?}");
                }
            }
        }
    }

    /// Drops a session, letting its hub link send what is queued (a
    /// goodbye) and close.
    fn end(&mut self, mut session: Session) {
        let task = session.link.take_task();
        drop(session);
        self.inbox.finish(task);
    }

    /// Drops the session at exit.
    fn end_session(&mut self) {
        if let Some(session) = self.session.take() {
            self.end(session);
        }
    }

    fn leave(&mut self) {
        if self.presence.following().is_some() && self.presence.follow(None) {
            self.notify(wl::Following::METHOD, wl::FollowParams { peer: None });
        }
        self.cursor_retry = None;
        if let Some(session) = &self.session
            && session.state == ConnectionState::Connected
            && let Some(goodbye) = self.presence.goodbye()
        {
            session.link.send(frame::join(&DocId::session(), &goodbye));
        }
        let Some(session) = self.session.take() else { return };
        tracing::info!(session = %session.id, "left the session");
        start_over(&mut self.docs, &session.root, self.enc);
        self.pending_edits.clear();
        if !self.closed.is_empty() {
            tracing::warn!(
                documents = self.closed.len(),
                "left while offline: edits to closed files never reached the hub"
            );
            self.closed.clear();
        }
        self.end(session);
        self.notify(wl::Peers::METHOD, wl::PeersParams { peers: Vec::new() });
        self.notify(wl::Connection::METHOD, self.status(false));
    }
}

/// The local directory of a `file://` root URI.
fn root_path(root: &str) -> anyhow::Result<PathBuf> {
    let url = Url::parse(root).with_context(|| format!("root {root:?} is not a URI"))?;
    let path = url.to_file_path().map_err(|()| anyhow::anyhow!("root {root:?} is not a file:// URI"))?;
    Ok(path)
}

/// The doc id of `uri` if it is a file under `root`.
/// Replaces the replica of every document under `root` with a fresh one
/// holding what the editor holds now (same version, same line ending).
fn start_over(docs: &mut HashMap<Url, Replica>, root: &Path, enc: Encoding) {
    for (uri, replica) in docs.iter_mut() {
        if doc_id_under(root, uri).is_some() {
            *replica = Replica::new(fresh_client_id(), enc, replica.version(), &replica.editor_text())
                .with_line_ending(replica.line_ending());
        }
    }
}

fn doc_id_under(root: &Path, uri: &Url) -> Option<DocId> {
    weft_workspace::scan::doc_id(root, &uri.to_file_path().ok()?)
}
