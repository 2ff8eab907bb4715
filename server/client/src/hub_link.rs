//! The bridge's WebSocket to its hub: authenticate, pump frames, and
//! reconnect with backoff when the connection drops.
//!
//! It runs as one tokio task and talks to its owner through channels:
//! [`HubEvent`]s in (any [`Events`] sink: a crossbeam channel for a
//! synchronous thread, a tokio channel for a loop that drives the link's
//! runtime itself, as the LSP bridge does to keep a keystroke on one
//! thread), binary frames out. Frames
//! queued while it was writing are written together, runs of updates to
//! one document merged into one ([`crate::coalesce`]); the hub's acks are
//! translated back to counts of queued frames. At most [`ACK_WINDOW`]
//! update frames are unacknowledged: beyond that, frames wait (and merge)
//! until the hub catches up, or [`ACK_PASS`] has passed since the last
//! write, when one merged batch goes anyway. It keeps no
//! document state: after a reconnect the bridge resynchronises every
//! document with state vectors, so frames queued while disconnected are
//! dropped rather than replayed (the CRDT already holds their content).
//!
//! `wss://` URLs are verified with the process's [`ClientTls`]; a TLS
//! failure (an untrusted certificate, a hub that does not speak TLS) and a
//! plain `ws://` URL to a hub off this machine without `--insecure` end the
//! link for good ([`HubEvent::Untrusted`]): retrying cannot fix them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use weft_protocol::{ClientControl, ClientKind, ErrorCode, PROTOCOL_VERSION, Role, ServerControl};

use crate::coalesce::{ACK_PASS, ACK_WAIT, ACK_WINDOW, MAX_BATCH, Seqs, coalesce};
use crate::tls::ClientTls;

/// Bytes read from the socket per call. tungstenite zero-fills this much
/// of its read buffer before every read: at its default of 128 KiB that
/// was ~6 % of a bridge's main thread per keystroke (and evicts the cache);
/// 16 KiB still reads a 50 MB join in ~3,200 calls.
const READ_BUFFER: usize = 16 * 1024;

/// What the hub link tells the bridge.
#[derive(Debug)]
pub enum HubEvent {
    /// Authenticated (again): resynchronise every document now.
    Connected { role: Role, peer: u64 },
    /// The hub refused us for good (bad link, revoked, deleted session):
    /// no more attempts are made.
    Refused { code: ErrorCode, message: String },
    /// A binary frame (doc id prefix + y-protocols message).
    Frame(Vec<u8>),
    /// A control frame other than the welcome.
    Control(ServerControl),
    /// The connection dropped; a reconnect is under way.
    Disconnected { reason: String },
    /// This client will not talk to the hub (its TLS certificate is not
    /// trusted, TLS failed, or it is a plain hub off this machine without
    /// `--insecure`): no more attempts are made. `reason` says what to do.
    Untrusted { reason: String },
}

/// Credentials and identity for the auth frame.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub token: String,
    pub password: Option<String>,
    pub name: String,
    pub kind: ClientKind,
}

/// Where a link delivers its [`HubEvent`]s.
pub trait Events: Send + Sync + 'static {
    /// Delivers `event`; `false` once nobody listens (the link stops).
    fn deliver(&self, event: HubEvent) -> bool;
}

impl Events for crossbeam_channel::Sender<HubEvent> {
    fn deliver(&self, event: HubEvent) -> bool {
        self.send(event).is_ok()
    }
}

impl Events for mpsc::UnboundedSender<HubEvent> {
    fn deliver(&self, event: HubEvent) -> bool {
        self.send(event).is_ok()
    }
}

/// Handle to a running link; dropping it closes the connection for good.
pub struct HubLink {
    out: mpsc::UnboundedSender<Message>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HubLink {
    /// Queues a binary frame; dropped if the link is down (see module doc).
    pub fn send(&self, frame: Vec<u8>) {
        self.queue(Message::Binary(frame.into()));
    }

    /// Queues a control frame.
    pub fn send_control(&self, control: &ClientControl) {
        match serde_json::to_string(control) {
            Ok(text) => self.queue(Message::Text(text.into())),
            Err(err) => tracing::error!(%err, "cannot encode a control frame"),
        }
    }

    /// The link's task, to wait for after dropping the link (it then says
    /// goodbye to the hub and closes the connection). An owner that drives
    /// the link's runtime itself must drive it until this ends.
    pub fn take_task(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.take()
    }

    fn queue(&self, msg: Message) {
        if self.out.send(msg).is_err() {
            tracing::debug!("hub link stopped; frame dropped");
        }
    }
}

/// Close codes after which reconnecting cannot help.
fn is_final(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unauthorized
            | ErrorCode::BadPassword
            | ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::Gone
            | ErrorCode::VersionMismatch
    )
}

/// Starts the link to `url` (`ws://` or `wss://`) on `runtime`.
pub fn start(
    runtime: &tokio::runtime::Handle,
    url: String,
    tls: ClientTls,
    creds: Credentials,
    events: impl Events,
) -> HubLink {
    let (out, rx) = mpsc::unbounded_channel();
    // One id for the link's lifetime: its reconnects are the same client
    // (a link with a maximum number of uses counts clients, not connections).
    let client = format!("{:016x}", crate::fresh_client_id());
    let task = runtime.spawn(run(url, tls, creds, client, events, rx));
    HubLink { out, task: Some(task) }
}

enum Ended {
    /// The bridge dropped the link.
    Stopped,
    /// Try again after a pause.
    Retry(String),
    /// Do not try again.
    Final(ErrorCode, String),
    /// Do not try again: this side refuses the hub.
    Untrusted(String),
}

async fn run(
    url: String,
    tls: ClientTls,
    creds: Credentials,
    client: String,
    events: impl Events,
    mut out: mpsc::UnboundedReceiver<Message>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&url, &tls, &creds, &client, &events, &mut out, &mut backoff).await {
            Ended::Stopped => return,
            Ended::Final(code, message) => {
                events.deliver(HubEvent::Refused { code, message });
                return;
            }
            Ended::Untrusted(reason) => {
                tracing::info!(%reason, "not connecting to the hub");
                events.deliver(HubEvent::Untrusted { reason });
                return;
            }
            Ended::Retry(reason) => {
                tracing::info!(%reason, retry_in = ?backoff, "hub connection lost; reconnecting");
                if !events.deliver(HubEvent::Disconnected { reason }) {
                    return;
                }
            }
        }
        // Wait, but stop at once if the bridge drops the link.
        let sleep = tokio::time::sleep(jitter(backoff));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                frame = out.recv() => if frame.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `host:port` of a WebSocket URL, for messages.
fn authority_of(url: &str) -> String {
    let parsed = url::Url::parse(url).ok();
    let host_port = parsed.as_ref().and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    host_port.unwrap_or_else(|| url.to_owned())
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let extra = if getrandom::fill(&mut b).is_ok() { u64::from(b[0]) } else { 0 };
    d + Duration::from_millis(extra * d.as_millis().min(1000) as u64 / 1024)
}

async fn session(
    url: &str,
    tls: &ClientTls,
    creds: &Credentials,
    client: &str,
    events: &impl Events,
    out: &mut mpsc::UnboundedReceiver<Message>,
    backoff: &mut Duration,
) -> Ended {
    if let Err(err) = tls.check_url(url) {
        return Ended::Untrusted(format!("{err:#}"));
    }
    let connector = Some(tls.ws_connector());
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let connect = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector);
    let mut ws = match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(err)) => {
            return match crate::tls::explain_ws(&authority_of(url), &err) {
                Some(why) => Ended::Untrusted(why),
                None => Ended::Retry(format!("cannot connect to {url}: {err}")),
            };
        }
        Err(_) => return Ended::Retry(format!("connecting to {url} timed out")),
    };
    let auth = ClientControl::Auth {
        token: creds.token.clone(),
        password: creds.password.clone(),
        name: creds.name.clone(),
        kind: creds.kind,
        protocol: PROTOCOL_VERSION,
        client: Some(client.to_owned()),
    };
    let Ok(auth) = serde_json::to_string(&auth) else {
        return Ended::Final(ErrorCode::Internal, "cannot encode auth".into());
    };
    if let Err(err) = ws.send(Message::Text(auth.into())).await {
        return Ended::Retry(format!("sending auth failed: {err}"));
    }
    // Wait for the welcome (or the refusal and its close).
    let mut refusal: Option<(ErrorCode, String)> = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next()).await;
        match next {
            Err(_) => return Ended::Retry("the hub did not answer the auth frame".into()),
            Ok(None | Some(Err(_))) => {
                return match refusal {
                    Some((code, msg)) if is_final(code) => Ended::Final(code, msg),
                    Some((_, msg)) => Ended::Retry(msg),
                    None => Ended::Retry("connection closed during auth".into()),
                };
            }
            Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<ServerControl>(text.as_str()) {
                Ok(ServerControl::Welcome { role, peer, .. }) => {
                    // Frames queued while we were away are superseded by the resync.
                    while out.try_recv().is_ok() {}
                    *backoff = Duration::from_millis(100);
                    if !events.deliver(HubEvent::Connected { role, peer: peer.0 }) {
                        return Ended::Stopped;
                    }
                    break;
                }
                Ok(ServerControl::Error { code, message, .. }) | Ok(ServerControl::Kick { code, message }) => {
                    refusal = Some((code, message));
                }
                _ => {}
            },
            Ok(Some(Ok(Message::Close(frame)))) => {
                let (code, msg) = refusal.clone().unwrap_or((ErrorCode::Internal, format!("closed: {frame:?}")));
                return if is_final(code) { Ended::Final(code, msg) } else { Ended::Retry(msg) };
            }
            Ok(Some(Ok(_))) => {}
        }
    }
    // Pump until either side ends.
    let mut seqs = Seqs::default();
    // When the window of unacknowledged updates filled up, or None.
    let mut full_since: Option<tokio::time::Instant> = None;
    let mut wait_for_acks = true;
    let mut last_write = tokio::time::Instant::now();
    loop {
        let full = wait_for_acks && seqs.in_flight() >= ACK_WINDOW;
        match (full, full_since) {
            (true, None) => full_since = Some(tokio::time::Instant::now()),
            (false, Some(_)) => full_since = None,
            _ => {}
        }
        let give_up_at = full_since.map_or_else(tokio::time::Instant::now, |t| t + ACK_WAIT);
        // A full window holds frames back (to merge) for at most ACK_PASS.
        let pass_at = last_write + ACK_PASS;
        let held = full && tokio::time::Instant::now() < pass_at;
        tokio::select! {
            () = tokio::time::sleep_until(pass_at), if held => {}
            () = tokio::time::sleep_until(give_up_at), if full => {
                tracing::warn!(
                    unacknowledged = seqs.in_flight(),
                    "the hub has not acknowledged our updates for {ACK_WAIT:?}; sending without waiting for acks \
                     until the next reconnect"
                );
                wait_for_acks = false;
            }
            frame = out.recv(), if !held => match frame {
                Some(frame) => {
                    // Everything queued meanwhile goes in the same write,
                    // its runs of updates merged (see coalesce).
                    let mut batch = vec![frame];
                    while batch.len() < MAX_BATCH {
                        match out.try_recv() {
                            Ok(frame) => batch.push(frame),
                            Err(_) => break,
                        }
                    }
                    for wire in coalesce(batch) {
                        seqs.sent(&wire);
                        if let Err(err) = ws.feed(wire.msg).await {
                            return Ended::Retry(format!("sending failed: {err}"));
                        }
                    }
                    if let Err(err) = ws.flush().await {
                        return Ended::Retry(format!("sending failed: {err}"));
                    }
                    last_write = tokio::time::Instant::now();
                }
                None => {
                    let _ = ws.close(None).await;
                    return Ended::Stopped;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    if !events.deliver(HubEvent::Frame(bytes.to_vec())) {
                        return Ended::Stopped;
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerControl>(text.as_str()) {
                    Ok(ServerControl::Kick { code, message }) if is_final(code) => return Ended::Final(code, message),
                    Ok(ServerControl::Ack { seq }) => {
                        if let Some(seq) = seqs.acked(seq)
                            && !events.deliver(HubEvent::Control(ServerControl::Ack { seq }))
                        {
                            return Ended::Stopped;
                        }
                    }
                    Ok(ctrl) => {
                        if !events.deliver(HubEvent::Control(ctrl)) {
                            return Ended::Stopped;
                        }
                    }
                    Err(err) => tracing::warn!(%err, "unreadable control frame from the hub"),
                },
                Some(Ok(Message::Close(frame))) => return Ended::Retry(format!("the hub closed the connection: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Ended::Retry(format!("connection error: {err}")),
                None => return Ended::Retry("connection closed".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coalesce::sync_update;
    use weft_protocol::control::SessionInfo;
    use weft_protocol::frame;
    use weft_protocol::{DocId, PeerId, SessionId};
    use yrs::sync::{Message as YMessage, SyncMessage};
    use yrs::updates::decoder::Decode;
    use yrs::updates::encoder::Encode;
    use yrs::{GetString, ReadTxn, Text, Transact};

    /// A hub that welcomes the link, then reads its frames into a document
    /// and never acknowledges anything (a disk sync that takes forever).
    async fn silent_hub(listener: tokio::net::TcpListener, doc: yrs::Doc) -> anyhow::Result<()> {
        let (tcp, _) = listener.accept().await?;
        let mut ws = tokio_tungstenite::accept_async(tcp).await?;
        let _auth = ws.next().await;
        let welcome = ServerControl::Welcome {
            peer: PeerId(1),
            role: Role::Editor,
            session: SessionInfo { id: SessionId("s".into()), name: "s".into() },
            protocol: PROTOCOL_VERSION,
            max_frame_bytes: 1 << 20,
        };
        ws.send(Message::Text(serde_json::to_string(&welcome)?.into())).await?;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(bytes) = msg else { continue };
            let (_, update) = sync_update(&bytes).ok_or_else(|| anyhow::anyhow!("not a sync update frame"))?;
            let mut txn = doc.transact_mut();
            txn.apply_update(yrs::Update::decode_v1(update)?)?;
        }
        Ok(())
    }

    /// Without acks the window fills after ACK_WINDOW frames; keystrokes
    /// must still reach the hub, merged, every ACK_PASS, not wait for
    /// ACK_WAIT (when the link would give up on acks).
    #[tokio::test]
    async fn a_full_window_still_lets_merged_keystrokes_through() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/ws/s", listener.local_addr()?);
        let received = yrs::Doc::new();
        let hub = tokio::spawn(silent_hub(listener, received.clone()));
        let tls = ClientTls::new(&crate::tls::TlsOptions::default())?;
        let creds = Credentials { token: "t".into(), password: None, name: "n".into(), kind: ClientKind::Agent };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let link = start(&tokio::runtime::Handle::current(), url, tls, creds, events_tx);
        let connected = tokio::time::timeout(Duration::from_secs(10), events.recv()).await?;
        assert!(matches!(connected, Some(HubEvent::Connected { .. })), "{connected:?}");

        const KEYS: usize = 60;
        let typed = yrs::Doc::new();
        let text = typed.get_or_insert_text("content");
        let doc = DocId::new("a.txt")?;
        for i in 0..KEYS {
            let before = typed.transact().state_vector();
            text.insert(&mut typed.transact_mut(), i as u32, "x");
            let update = typed.transact().encode_state_as_update_v1(&before);
            let message = YMessage::Sync(SyncMessage::Update(update)).encode_v1();
            link.send(frame::join(&doc, &message));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // Well before ACK_WAIT, when the link would stop waiting for acks.
        let deadline = tokio::time::Instant::now() + ACK_WAIT - Duration::from_secs(2);
        let content = received.get_or_insert_text("content");
        while content.get_string(&received.transact()).len() < KEYS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {KEYS} keystrokes reached a hub that does not ack",
                content.get_string(&received.transact()).len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(link);
        hub.abort();
        Ok(())
    }
}
