//! The two WebSocket endpoints and the one task per connection behind them.
//!
//! `/ws/{session}` speaks the weft protocol: the first frame authenticates,
//! then binary frames are doc-prefixed y-protocols messages and text frames
//! are JSON control frames. `/y/{session}/{doc}` speaks plain y-websocket
//! for one document (token in the query, as browsers cannot set headers).
//! Both end in [`serve_peer`], which pumps frames between the socket and
//! the session's room. Errors are sent as an error frame (weft) and a close
//! code; nothing a client sends can panic this task or touch other peers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weft_protocol::control::{self, AuthRequest, SessionInfo};
use weft_protocol::frame;
use weft_protocol::rest::Participant;
use weft_protocol::{ClientControl, ClientKind, DocId, ErrorCode, PROTOCOL_VERSION, PeerId, ServerControl, SessionId};

use crate::auth::{Access, Denied};
use crate::limits::{IpSlot, PeerRate};
use crate::metrics::{add, inc};
use crate::outbox::Outbox;
use crate::rest::Req;
use crate::room::{Framing, Outbound, RoomMsg, RoomPeer, room_for};
use crate::store::SessionRecord;
use crate::{Hub, PeerEntry, now_s};

/// How often an idle connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(20);

/// `GET /ws/{session}`.
pub async fn weft_endpoint(
    State(hub): State<Arc<Hub>>,
    Path(session): Path<String>,
    req: Req,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = hub.config.max_frame_bytes;
    let slot = ip_slot(&hub, req.ip);
    sized(upgrade, max).on_upgrade(move |mut socket| async move {
        match slot {
            Ok(slot) => weft_connection(hub, session, socket, req.ip, slot).await,
            Err(message) => refuse_unread(&mut socket, ErrorCode::LimitReached, &message).await,
        }
    })
}

/// A connection slot for `ip` (none needed when the address is unknown),
/// or why there is none.
fn ip_slot(hub: &Hub, ip: Option<IpAddr>) -> Result<Option<IpSlot>, String> {
    let Some(ip) = ip else { return Ok(None) };
    match hub.connections_per_ip.acquire(ip) {
        Some(slot) => Ok(Some(slot)),
        None => {
            inc(&hub.metrics.connections_refused, 1);
            tracing::warn!(%ip, max = hub.config.max_connections_per_ip, "refused a connection over the per-address cap");
            Err(format!(
                "too many connections from your address (the hub allows {}); close some or ask the hub operator to raise --max-connections-per-ip",
                hub.config.max_connections_per_ip
            ))
        }
    }
}

/// Per-connection buffer sizes. tungstenite's defaults (128 KiB to read,
/// zero-filled at once, and a 128 KiB write threshold) cost ~140 KiB of
/// resident memory per idle connection; editing frames are tens of bytes.
/// The read buffer grows to hold a large frame (the frame limit is
/// unchanged), which is then read 1 KiB per call: ~0.1 s of CPU for 50 MB.
const READ_BUFFER: usize = 1024;
/// At most this many queued frames are written before a flush.
const MAX_FRAMES_PER_FLUSH: usize = 256;
const WRITE_BUFFER: usize = 16 * 1024;

fn sized(upgrade: WebSocketUpgrade, max_frame: usize) -> WebSocketUpgrade {
    upgrade
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
}

/// `GET /y/{session}/{*doc}?token=...&password=...`.
pub async fn y_endpoint(
    State(hub): State<Arc<Hub>>,
    Path((session, doc)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    req: Req,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = hub.config.max_frame_bytes;
    let slot = ip_slot(&hub, req.ip);
    sized(upgrade, max).on_upgrade(move |mut socket| async move {
        match slot {
            Ok(slot) => y_connection(hub, session, doc, query, socket, req.ip, slot).await,
            Err(message) => close(&mut socket, ErrorCode::LimitReached, &message).await,
        }
    })
}

async fn close(socket: &mut WebSocket, code: ErrorCode, message: &str) {
    let reason: String = message.chars().take(120).collect();
    let frame = CloseFrame { code: code.close_code(), reason: Utf8Bytes::from(reason) };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        tracing::debug!("peer was gone before the close frame");
    }
}

async fn send_control(socket: &mut WebSocket, msg: &ServerControl) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

/// Refuses a connection before reading anything from it: reads (and
/// ignores) its first frame, fails, and waits briefly for the close answer
/// — closing a socket with unread input makes the kernel reset it, which
/// can destroy the error and close frames before the client reads them.
async fn refuse_unread(socket: &mut WebSocket, code: ErrorCode, message: &str) {
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.recv()).await;
    fail(socket, code, message).await;
    let linger = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
}

/// Sends an error frame and closes with its code.
async fn fail(socket: &mut WebSocket, code: ErrorCode, message: &str) {
    send_control(socket, &ServerControl::Error { code, message: message.to_owned(), doc: None }).await;
    close(socket, code, message).await;
}

/// Looks up a live session and resolves the caller's access to it (argon2
/// runs here when a password is given, so then this is called on the
/// blocking pool). Denials of an existing session are audited. `client`
/// is counted against a link with a maximum of uses unless `count_use` is
/// false (the caller then does it).
#[allow(clippy::too_many_arguments)]
fn authorize(
    hub: &Hub,
    session: &str,
    token: Option<&str>,
    password: Option<&str>,
    endpoint: &str,
    ip: Option<IpAddr>,
    client: Option<&str>,
    count_use: bool,
) -> Result<(SessionRecord, Access), Denied> {
    if !SessionId::is_well_formed(session) {
        return Err(Denied::new(ErrorCode::NotFound, "no such session"));
    }
    let id = SessionId(session.to_owned());
    let record = hub
        .store
        .session(&id)
        .map_err(|e| {
            tracing::error!(%e, "session lookup failed");
            Denied::new(ErrorCode::Internal, "the hub could not read its sessions; try again")
        })?
        .ok_or_else(|| Denied::new(ErrorCode::NotFound, "no such session: check the link"))?;
    let result = hub
        .authority
        .principal(token, now_s(), ip)
        .and_then(|principal| hub.authority.access(&principal, &record, password, ip))
        .and_then(|access| if count_use { use_link(hub, &access, client).map(|()| access) } else { Ok(access) });
    if let Err(denied) = &result {
        hub.audit_denied(&id, endpoint, denied.code, &denied.message);
    }
    result.map(|access| (record, access))
}

/// Counts a join with a link that has a maximum number of uses: a client
/// seen before passes; a new one takes a use, if any is left. Without a
/// client id every connection is a new client.
fn use_link(hub: &Hub, access: &Access, client: Option<&str>) -> Result<(), Denied> {
    let (Some(max), Some(link)) = (access.max_uses, &access.link) else { return Ok(()) };
    let anonymous;
    let client = match client {
        Some(c) => c,
        None => {
            anonymous = crate::auth::new_id().map_err(|_| Denied::new(ErrorCode::Internal, "try again"))?;
            &anonymous
        }
    };
    match hub.store.use_link(link, client, max, now_s()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Denied::new(
            ErrorCode::LimitReached,
            format!("this link was already used by {max} clients, its limit: ask the session owner for a new link"),
        )),
        Err(err) => {
            tracing::error!(%err, "recording a link use failed");
            Err(Denied::new(ErrorCode::Internal, "the hub could not record the link's use; try again"))
        }
    }
}

async fn authorize_async(
    hub: &Arc<Hub>,
    session: String,
    token: Option<String>,
    password: Option<String>,
    endpoint: &'static str,
    ip: Option<IpAddr>,
    client: Option<String>,
) -> Result<(SessionRecord, Access), Denied> {
    if password.is_none() {
        // The common case runs inline: without a password nothing hashes,
        // the lookups use the store's read connection (which never waits
        // for a disk sync), and refusals are audited through the audit
        // writer. A hop to the blocking pool per join was most of the time
        // a hundred peers joining at once waited (B6 in docs/benchmarks.md).
        // Counting a use of a limited link writes, so that goes below.
        match authorize(hub, &session, token.as_deref(), None, endpoint, ip, client.as_deref(), false) {
            Ok((record, access)) if access.max_uses.is_none() => return Ok((record, access)),
            Ok(_) => {}
            Err(denied) => return Err(denied),
        }
    }
    let hub = Arc::clone(hub);
    tokio::task::spawn_blocking(move || {
        authorize(&hub, &session, token.as_deref(), password.as_deref(), endpoint, ip, client.as_deref(), true)
    })
    .await
    .unwrap_or_else(|_| Err(Denied::new(ErrorCode::Internal, "authorization failed unexpectedly; try again")))
}

async fn weft_connection(
    hub: Arc<Hub>,
    session: String,
    mut socket: WebSocket,
    ip: Option<IpAddr>,
    slot: Option<IpSlot>,
) {
    // The first frame must be `auth`, within the configured time.
    let first = tokio::time::timeout(hub.config.auth_timeout, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Ok(Some(Ok(_))) => {
            return fail(&mut socket, ErrorCode::Malformed, "the first frame must be a JSON auth frame").await;
        }
        Err(_) => return fail(&mut socket, ErrorCode::Unauthorized, "no auth frame within the time limit").await,
        Ok(None | Some(Err(_))) => return,
    };
    let AuthRequest { token, password, name, kind, client } = match control::parse_auth(text.as_str()) {
        Ok(auth) => auth,
        Err((code, msg)) => return fail(&mut socket, code, &msg).await,
    };
    let (record, access) = match authorize_async(&hub, session, Some(token), password, "ws", ip, client).await {
        Ok(ok) => ok,
        Err(denied) => return fail(&mut socket, denied.code, &denied.message).await,
    };
    let peer_id = hub.next_peer_id();
    let welcome = ServerControl::Welcome {
        peer: peer_id,
        role: access.role,
        session: SessionInfo { id: record.id.clone(), name: record.name.clone() },
        protocol: PROTOCOL_VERSION,
        max_frame_bytes: hub.config.max_frame_bytes,
    };
    if !send_control(&mut socket, &welcome).await {
        return;
    }
    let peer = PeerSetup { id: peer_id, session: record.id, access, name, kind, framing: Framing::Weft, _slot: slot };
    spawn_peer(hub, socket, peer);
}

async fn y_connection(
    hub: Arc<Hub>,
    session: String,
    doc: String,
    query: HashMap<String, String>,
    mut socket: WebSocket,
    ip: Option<IpAddr>,
    slot: Option<IpSlot>,
) {
    let doc = match DocId::new(doc) {
        Ok(doc) => doc,
        Err(err) => return close(&mut socket, ErrorCode::Malformed, &err.to_string()).await,
    };
    let token = query.get("token").cloned();
    let password = query.get("password").cloned();
    let name =
        query.get("name").and_then(|n| control::clean_name(n)).unwrap_or_else(|| "y-websocket client".to_owned());
    let kind = match query.get("kind").map(String::as_str) {
        Some("agent") => ClientKind::Agent,
        _ => ClientKind::User,
    };
    let client = query.get("client").filter(|c| !c.is_empty() && c.len() <= 64).cloned();
    let (record, access) = match authorize_async(&hub, session, token, password, "y", ip, client).await {
        Ok(ok) => ok,
        Err(denied) => return close(&mut socket, denied.code, &denied.message).await,
    };
    let peer = PeerSetup {
        id: hub.next_peer_id(),
        session: record.id,
        access,
        name,
        kind,
        framing: Framing::Y(doc),
        _slot: slot,
    };
    spawn_peer(hub, socket, peer);
}

struct PeerSetup {
    id: PeerId,
    session: SessionId,
    access: Access,
    name: String,
    kind: ClientKind,
    framing: Framing,
    /// This connection's place under the per-address cap, held until it ends.
    _slot: Option<IpSlot>,
}

/// Serves an authorised peer on a task of its own, so the connection task
/// (axum's upgrade, the auth exchange: ~4.7 KiB of future) ends here and
/// only [`serve_peer`]'s state (~2.7 KiB) stays for the connection's life
/// (memory per idle connection counts; docs/benchmarks.md).
fn spawn_peer(hub: Arc<Hub>, socket: WebSocket, peer: PeerSetup) {
    tokio::spawn(serve_peer(hub, socket, peer));
}

/// Registers the peer, joins its room and pumps frames until either side
/// ends; always unregisters and leaves, however the connection ends.
async fn serve_peer(hub: Arc<Hub>, mut socket: WebSocket, setup: PeerSetup) {
    let outbox = Outbox::new(hub.config.peer_queue);
    let (endpoint, doc) = match &setup.framing {
        Framing::Weft => ("ws", None),
        Framing::Y(doc) => ("y", Some(doc.as_str().to_owned())),
    };
    let info = Participant {
        peer: setup.id,
        name: setup.name.clone(),
        kind: setup.kind,
        role: setup.access.role,
        link: setup.access.link.clone(),
        endpoint: endpoint.to_owned(),
        doc,
        connected_at: now_s(),
    };
    hub.peers().insert(
        setup.id,
        PeerEntry { session: setup.session.clone(), link: setup.access.link.clone(), info, outbox: outbox.clone() },
    );
    add(&hub.metrics.connections, 1);
    // Built again when the peer leaves rather than held for the whole
    // connection (memory per idle connection counts).
    let detail = || {
        serde_json::json!({
            "peer": setup.id, "name": setup.name, "kind": setup.kind, "role": setup.access.role,
            "link": setup.access.link, "invitee": setup.access.invitee, "endpoint": endpoint,
        })
    };
    audit_async(&hub, &setup.session, "peer.joined", detail());
    tracing::info!(session = %setup.session, peer = %setup.id, role = %setup.access.role, endpoint, "peer joined");

    let room = join_room(&hub, &setup, &outbox).await;
    let reason = match room {
        Ok(room) => {
            let reason = pump(&hub, &mut socket, &setup, &room, &outbox).await;
            outbox.close();
            if room.send(RoomMsg::Leave { peer: setup.id }).await.is_err() {
                tracing::debug!(peer = %setup.id, "room already stopped");
            }
            reason
        }
        Err(denied) => Some((denied.code, denied.message)),
    };
    if let Some((code, message)) = &reason {
        if setup.framing == Framing::Weft {
            send_control(&mut socket, &ServerControl::Kick { code: *code, message: message.clone() }).await;
        }
        close(&mut socket, *code, message).await;
        // Read until the peer answers the close (or 2 s pass): dropping a
        // socket with unread input makes the kernel send a reset, which can
        // destroy the close frame before the peer reads it.
        let linger = async { while let Some(Ok(_)) = socket.recv().await {} };
        if tokio::time::timeout(Duration::from_secs(2), linger).await.is_err() {
            tracing::debug!(peer = %setup.id, "peer did not answer the close");
        }
    }

    hub.peers().remove(&setup.id);
    add(&hub.metrics.connections, -1);
    audit_async(&hub, &setup.session, "peer.left", detail());
    tracing::info!(session = %setup.session, peer = %setup.id, "peer left");
}

fn audit_async(hub: &Arc<Hub>, session: &SessionId, kind: &'static str, detail: serde_json::Value) {
    hub.audit_later(Some(session), kind, detail);
}

async fn join_room(hub: &Arc<Hub>, setup: &PeerSetup, outbox: &Outbox) -> Result<mpsc::Sender<RoomMsg>, Denied> {
    // A room that is stopping drops the reply; a fresh one is then started.
    for _ in 0..5 {
        let room = room_for(hub, &setup.session);
        let (reply_tx, reply_rx) = oneshot::channel();
        let peer =
            RoomPeer { id: setup.id, role: setup.access.role, framing: setup.framing.clone(), out: outbox.clone() };
        if room.tx.send(RoomMsg::Join { peer, reply: reply_tx }).await.is_err() {
            continue;
        }
        match reply_rx.await {
            Ok(Ok(())) => return Ok(room.tx),
            Ok(Err(denied)) => return Err(denied),
            Err(_) => continue,
        }
    }
    Err(Denied::new(ErrorCode::Internal, "could not join the session's room; try again"))
}

/// Moves frames until the socket closes (`None`) or the peer must be
/// disconnected (`Some(reason)`).
async fn pump(
    hub: &Arc<Hub>,
    socket: &mut WebSocket,
    setup: &PeerSetup,
    room: &mpsc::Sender<RoomMsg>,
    outbox: &Outbox,
) -> Option<(ErrorCode, String)> {
    let mut shutdown = hub.shutdown.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A link that expires while its peer is connected cuts the peer off then.
    let expiry = setup.access.expires_at.map(|at| {
        let left = u64::try_from(at.saturating_sub(now_s())).unwrap_or(0);
        Instant::now() + Duration::from_secs(left)
    });
    let expired = async {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    // Over its rate, a peer's socket is not read until its bucket refills:
    // TCP pushes back on the sender, nothing is dropped, and the room keeps
    // serving everyone else.
    let mut rate = PeerRate::new(hub.config.rate, std::time::Instant::now());
    let mut paused: Option<Instant> = None;
    let mut warned: Option<Instant> = None;
    loop {
        tokio::select! {
            () = &mut expired => {
                return Some((ErrorCode::Unauthorized, "your link has expired: ask the session owner for a new one".into()));
            }
            () = tokio::time::sleep_until(paused.unwrap_or_else(Instant::now)), if paused.is_some() => {
                paused = None;
                last_heard = Instant::now();
            }
            incoming = socket.recv(), if paused.is_none() => {
                last_heard = Instant::now();
                let msg = match incoming {
                    None | Some(Ok(Message::Close(_))) => return None,
                    Some(Ok(msg)) => msg,
                    Some(Err(err)) => {
                        // tungstenite reports an over-long message as a read error.
                        let text = err.to_string();
                        if text.contains("too long") || text.contains("too big") || text.contains("Space limit") {
                            let msg = format!("frame larger than the hub's limit of {} bytes", hub.config.max_frame_bytes);
                            return Some((ErrorCode::TooLarge, msg));
                        }
                        tracing::debug!(peer = %setup.id, %err, "socket error");
                        return None;
                    }
                };
                let len = match &msg {
                    Message::Binary(bytes) => Some(bytes.len()),
                    Message::Text(text) => Some(text.len()),
                    _ => None,
                };
                if let Some(len) = len {
                    let wait = rate.take(len, std::time::Instant::now());
                    if !wait.is_zero() {
                        paused = Some(Instant::now() + wait);
                        inc(&hub.metrics.peers_throttled, 1);
                        if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                            warned = Some(Instant::now());
                            tracing::warn!(session = %setup.session, peer = %setup.id, pause = ?wait, "peer over its rate; slowing it down");
                            if setup.framing == Framing::Weft {
                                let limit = hub.config.rate;
                                let message = format!(
                                    "you are sending faster than this hub allows ({:.0} frames/s, {:.0} bytes/s sustained); your frames are slowed down, none is lost",
                                    limit.frames_per_s, limit.bytes_per_s
                                );
                                send_control(socket, &ServerControl::Error { code: ErrorCode::RateLimited, message, doc: None }).await;
                            }
                        }
                    }
                }
                if let Some(reason) = on_incoming(hub, socket, setup, room, msg).await {
                    return Some(reason);
                }
            }
            next = outbox.next() => {
                let out = match next {
                    Ok(out) => out,
                    Err(reason) => return Some(reason),
                };
                // Everything queued goes out with one flush: under load a
                // peer gets many frames per write instead of one syscall
                // per frame.
                let mut next = Some(out);
                let mut bytes = 0u64;
                let mut frames = 0usize;
                while let Some(out) = next.take() {
                    let msg = match out {
                        Outbound::Binary(b) => { bytes += b.len() as u64; Message::Binary(b) }
                        Outbound::Text(t) => { bytes += t.len() as u64; Message::Text(t.into()) }
                    };
                    if socket.feed(msg).await.is_err() {
                        return None;
                    }
                    frames += 1;
                    if frames < MAX_FRAMES_PER_FLUSH {
                        next = outbox.try_next();
                    }
                }
                inc(&hub.metrics.bytes_out, bytes);
                if socket.flush().await.is_err() {
                    return None;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Some((ErrorCode::ShuttingDown, "the hub is shutting down; reconnect later".into()));
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= hub.config.idle_timeout {
                    return Some((ErrorCode::Timeout, "no frame or pong for too long; reconnect".into()));
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Sends a `malformed` error frame; the connection stays open.
async fn refuse_malformed(hub: &Hub, socket: &mut WebSocket, message: String) {
    inc(&hub.metrics.frames_malformed, 1);
    send_control(socket, &ServerControl::Error { code: ErrorCode::Malformed, message, doc: None }).await;
}

/// Hands a message to the room; a stopped room ends the connection.
async fn to_room(room: &mpsc::Sender<RoomMsg>, msg: RoomMsg) -> Option<(ErrorCode, String)> {
    match room.send(msg).await {
        Ok(()) => None,
        Err(_) => Some((ErrorCode::Internal, "the session's room stopped; reconnect".into())),
    }
}

async fn on_incoming(
    hub: &Arc<Hub>,
    socket: &mut WebSocket,
    setup: &PeerSetup,
    room: &mpsc::Sender<RoomMsg>,
    msg: Message,
) -> Option<(ErrorCode, String)> {
    match msg {
        Message::Binary(bytes) => {
            inc(&hub.metrics.bytes_in, bytes.len() as u64);
            let (doc, message) = match &setup.framing {
                Framing::Y(doc) => (doc.clone(), bytes),
                Framing::Weft => match frame::split(&bytes) {
                    Ok((doc, message)) => (doc, bytes.slice_ref(message)),
                    Err(err) => {
                        refuse_malformed(hub, socket, format!("binary frame refused: {err}")).await;
                        return None;
                    }
                },
            };
            to_room(room, RoomMsg::Frame { peer: setup.id, doc, message }).await
        }
        Message::Text(text) => {
            inc(&hub.metrics.bytes_in, text.len() as u64);
            if matches!(setup.framing, Framing::Y(_)) {
                return Some((ErrorCode::Malformed, "y-websocket carries binary frames only".into()));
            }
            match serde_json::from_str::<ClientControl>(text.as_str()) {
                Ok(ClientControl::Unsubscribe { doc }) => {
                    to_room(room, RoomMsg::Unsubscribe { peer: setup.id, doc }).await
                }
                Ok(ClientControl::Auth { .. }) => {
                    let msg = "already authenticated: reconnect to change identity".to_owned();
                    refuse_malformed(hub, socket, msg).await;
                    None
                }
                Err(err) => {
                    refuse_malformed(hub, socket, format!("control frame refused: {err}")).await;
                    None
                }
            }
        }
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    }
}
