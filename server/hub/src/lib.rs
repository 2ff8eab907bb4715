//! weft-hub: the session hub.
//!
//! Authenticates peers, relays and persists CRDT updates per session, keeps
//! the audit log, and serves the REST API, the weft WebSocket protocol
//! (`/ws/{session}`) and plain y-websocket (`/y/{session}/{doc}`). Start it
//! with [`run`] on a bound listener, so tests can use port 0.
//!
//! Code map: [`room`] owns a session's documents (one task per session);
//! [`ws`] runs one task per connection; [`rest`] answers HTTP; [`store`] is
//! storage behind a trait, with group commit in [`store::writer`]; [`auth`]
//! decides rights. This crate speaks y-protocols unchanged and knows
//! nothing of LSP.

pub mod auth;
pub mod config;
pub mod embedded;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod rest;
pub mod room;
pub mod store;
pub mod tls;
pub mod ws;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_protocol::rest::Participant;
use weft_protocol::{ErrorCode, LinkId, PeerId, SessionId};

pub use config::HubConfig;

use crate::auth::Authority;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::room::RoomHandle;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::{AuditWriter, LogWriter};
use crate::store::{NewEvent, Store};

/// Shared state of a running hub.
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: LogWriter,
    pub(crate) audit_writer: AuditWriter,
    pub(crate) authority: Authority,
    pub(crate) metrics: Metrics,
    pub(crate) rooms: Mutex<HashMap<SessionId, RoomHandle>>,
    pub(crate) peers: Mutex<HashMap<PeerId, PeerEntry>>,
    pub(crate) link_base: String,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Open WebSocket connections per IP address (capped).
    pub(crate) connections_per_ip: Arc<limits::IpConnections>,
    next_peer: AtomicU64,
}

/// A connected peer as the hub-wide registry knows it.
pub(crate) struct PeerEntry {
    pub session: SessionId,
    pub link: Option<LinkId>,
    pub info: Participant,
    /// Frames for the connection, and the way to close it from anywhere
    /// (room, REST, shutdown).
    pub outbox: Outbox,
}

/// Unix seconds now.
pub(crate) fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Hub {
    pub(crate) fn next_peer_id(&self) -> PeerId {
        PeerId(self.next_peer.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn peers(&self) -> MutexGuard<'_, HashMap<PeerId, PeerEntry>> {
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn rooms(&self) -> MutexGuard<'_, HashMap<SessionId, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an audit event; a storage failure is logged, never fatal.
    pub(crate) fn audit(&self, session: Option<&SessionId>, kind: &'static str, detail: serde_json::Value) {
        let event = NewEvent { session: session.cloned(), at_ms: now_ms(), kind, detail };
        if let Err(err) = self.store.append_event(&event) {
            tracing::error!(%err, kind, "could not write an audit event");
        }
    }

    /// Queues an audit event for the audit writer (for hot paths; written
    /// within milliseconds, batched with others).
    pub(crate) fn audit_later(&self, session: Option<&SessionId>, kind: &'static str, detail: serde_json::Value) {
        self.audit_writer.append(NewEvent { session: session.cloned(), at_ms: now_ms(), kind, detail });
    }

    /// Records a refused attempt on `session` in the audit log.
    pub(crate) fn audit_denied(&self, session: &SessionId, endpoint: &str, code: ErrorCode, reason: &str) {
        let detail = serde_json::json!({"endpoint": endpoint, "code": code, "reason": reason});
        self.audit_later(Some(session), "access.denied", detail);
    }

    /// The link URL for `token` in `session`.
    pub(crate) fn link_url(&self, session: &SessionId, token: &str) -> String {
        format!("{}/s/{}#{}", self.link_base, session, token)
    }

    /// Gives every connected peer of `session` that matches `filter` the
    /// role `role`, at once (their rooms apply it from their next frame and
    /// tell them). Returns the peers changed. Call from blocking code.
    pub(crate) fn set_peer_roles(
        &self,
        session: &SessionId,
        filter: impl Fn(&PeerEntry) -> bool,
        role: weft_protocol::Role,
    ) -> Vec<PeerId> {
        let changed: Vec<PeerId> = {
            let mut peers = self.peers();
            peers
                .iter_mut()
                .filter(|(_, e)| &e.session == session && filter(e))
                .map(|(id, e)| {
                    e.info.role = role;
                    *id
                })
                .collect()
        };
        let room = self.rooms().get(session).cloned();
        if let Some(room) = room {
            for peer in &changed {
                if room.tx.blocking_send(room::RoomMsg::SetRole { peer: *peer, role }).is_err() {
                    tracing::debug!(%session, %peer, "room stopped before the role change");
                }
            }
        }
        changed
    }

    /// Kicks every peer of `session` that matches `filter`.
    pub(crate) fn kick_peers(
        &self,
        session: &SessionId,
        filter: impl Fn(&PeerEntry) -> bool,
        code: ErrorCode,
        message: &str,
    ) -> usize {
        let peers = self.peers();
        let mut n = 0;
        for entry in peers.values().filter(|e| &e.session == session && filter(e)) {
            entry.outbox.kick(code, message);
            n += 1;
        }
        n
    }
}

/// Reads the admin token from `DATA/admin.token`, creating it (mode 0600)
/// on first start.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let token = auth::new_token()?;
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Opens `DATA/hub.db`, sealing document content if encryption at rest is
/// configured. A key file that this start created is removed again if the
/// database refuses its key (a mistyped path for an encrypted database
/// leaves nothing behind); its creation is logged once the database
/// accepted it.
fn open_store(config: &HubConfig) -> anyhow::Result<SqliteStore> {
    use crate::store::seal::{self, KeyOrigin, Sealer};
    let db_path = config.data_dir.join("hub.db");
    let opening = || format!("opening the hub database {}", db_path.display());
    let Some(key_path) = &config.encrypt_at_rest else {
        return SqliteStore::open(&db_path).with_context(opening);
    };
    let (key, origin) = seal::load_or_create_key(key_path).context("reading the encryption-at-rest key")?;
    let store = match SqliteStore::open_with(&db_path, Some(Sealer::new(&key))) {
        Ok(store) => store,
        Err(err) if origin == KeyOrigin::Created => {
            let removed = std::fs::remove_file(key_path).is_ok();
            return Err(anyhow::Error::new(err).context(format!(
                "{}; the key file {} did not exist, so a new key was made for this start{}",
                opening(),
                key_path.display(),
                if removed { " and removed again" } else { " (remove that file)" }
            )));
        }
        Err(err) => return Err(anyhow::Error::new(err).context(opening())),
    };
    if origin == KeyOrigin::Created {
        tracing::warn!(
            key = %key_path.display(),
            "created a new encryption-at-rest key file (mode 0600): back it up apart from the data directory; \
             without it the stored documents cannot be read"
        );
    }
    let inside_data = match (key_path.canonicalize(), config.data_dir.canonicalize()) {
        (Ok(key), Ok(data)) => key.starts_with(data),
        _ => false,
    };
    if inside_data {
        tracing::warn!(
            key = %key_path.display(),
            "the encryption key file is inside the data directory: a copy of the directory carries its key"
        );
    }
    tracing::info!(key = %key_path.display(), "document content is encrypted at rest");
    Ok(store)
}

/// Runs a hub on `listener` until `shutdown` resolves, then disconnects
/// every peer, waits for the document logs to be flushed, and returns.
/// `on_ready` is called with the bound address once the data directory,
/// admin token and database are ready and before the first request is
/// served (the CLI prints its "listening" line there).
pub async fn run(
    config: HubConfig,
    listener: TcpListener,
    on_ready: impl FnOnce(std::net::SocketAddr) -> anyhow::Result<()>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg).context("invalid hub configuration")?;
    // TLS files and the loopback rule are checked before anything is written.
    let local = listener.local_addr().context("reading the bound address")?;
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None if config.insecure || local.ip().is_loopback() => None,
        None => anyhow::bail!(
            "refusing to serve plain HTTP on {local}, which is not a loopback address: share links, tokens and \
             edits would cross the network unencrypted. Give the hub a certificate with --tls-cert FILE --tls-key \
             FILE (WEFT_TLS_CERT, WEFT_TLS_KEY; see docs/hub.md, \"TLS\"), or pass --insecure (WEFT_INSECURE=1) if \
             a TLS-terminating proxy or a trusted network is in front of the hub"
        ),
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let admin = match &config.admin_token {
        Some(token) if !token.is_empty() => token.clone(),
        _ => admin_token(&config.data_dir)?,
    };
    let store: Arc<dyn Store> = Arc::new(open_store(&config)?);
    let (writer, writer_thread) = LogWriter::start(Arc::clone(&store)).context("starting the log writer")?;
    let (audit_writer, audit_thread) = AuditWriter::start(Arc::clone(&store)).context("starting the audit writer")?;
    let scheme = if tls.is_some() { "weft+tls" } else { "weft" };
    let link_base = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    if tls.is_some() && link_base.starts_with("weft://") {
        // (The reverse is fine: a plain hub behind a TLS-terminating proxy.)
        tracing::warn!(%link_base, "--public-url starts with weft://, so links tell clients to speak plain HTTP to this TLS hub; use weft+tls://");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let hub = Arc::new(Hub {
        authority: Authority::new(
            &admin,
            Arc::clone(&store),
            limits::AuthBackoff::new(config.auth_free_failures, Duration::from_millis(250), config.auth_backoff_max),
        ),
        connections_per_ip: limits::IpConnections::new(config.max_connections_per_ip),
        config,
        store,
        writer,
        audit_writer,
        metrics: Metrics::default(),
        rooms: Mutex::new(HashMap::new()),
        peers: Mutex::new(HashMap::new()),
        link_base: link_base.trim_end_matches('/').to_owned(),
        shutdown: stop_rx,
        // Peer ids stay unique across restarts (the audit log keeps them):
        // start from the clock, leaving room for 2^20 peers per second.
        next_peer: AtomicU64::new((now_ms().max(0) as u64) << 10),
    });

    let app = rest::router(Arc::clone(&hub));
    on_ready(local)?;
    let graceful = {
        let hub = Arc::clone(&hub);
        async move {
            shutdown.await;
            tracing::info!("shutting down: disconnecting peers");
            // Tell every connection task and every room to stop. axum does
            // not wait for upgraded WebSocket tasks, so the rooms (which
            // outlive their peers' tasks) are awaited below instead.
            stop_tx.send_replace(true);
            drop(hub);
        }
    };
    // Peers' addresses (ConnectInfo) feed the per-IP limits.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    use axum::serve::ListenerExt as _;
    let served = match tls {
        Some(config) => {
            // The no-op `tap_io` gives this listener axum's ConnectInfo
            // implementation for any listener's address.
            let listener = tls::TlsListener::new(listener, config).tap_io(|_| {});
            axum::serve(listener, app).with_graceful_shutdown(graceful).await
        }
        None => {
            // Editing frames are tens of bytes: without TCP_NODELAY, Nagle's
            // algorithm holds each one until the previous is acknowledged,
            // which with delayed ACKs adds up to ~40 ms to a relay.
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
            });
            axum::serve(listener, app).with_graceful_shutdown(graceful).await
        }
    };
    served.context("serving HTTP")?;

    // Rooms finish their pending writes and exit once their peers are gone;
    // then dropping the last writer handle lets the writer drain and stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !hub.rooms().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(hub);
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let log = writer_thread.join();
            if audit_thread.join().is_err() {
                tracing::error!("the audit writer failed while stopping");
            }
            log
        }),
    )
    .await;
    match joined {
        Ok(Ok(Ok(()))) => tracing::info!("hub stopped"),
        Ok(_) => tracing::error!("the log writer failed while stopping"),
        // Every acknowledged update is already durable; what is still queued
        // was never acknowledged, and its senders resend it on reconnect.
        Err(_) => tracing::warn!("the log writer did not stop within 10 s; exiting anyway"),
    }
    Ok(())
}
