//! The hub's typed configuration, with every default in one place.
//! `weft hub` fills it from flags and environment (see docs/configuration.md).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use weft_protocol::Role;

/// A named set of defaults a new session can start from (`weft hub
/// --templates FILE`, a JSON object `{"templates": {NAME: TEMPLATE}}`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionTemplate {
    /// Whether sessions from it are public (a request may still say so).
    #[serde(default)]
    pub public: bool,
    /// Links created with every session from it.
    #[serde(default)]
    pub links: Vec<TemplateLink>,
    /// Ignore patterns (gitignore syntax) for sharing a directory into it.
    #[serde(default)]
    pub ignore: Vec<String>,
}

/// One link of a [`SessionTemplate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateLink {
    pub role: Role,
    #[serde(default)]
    pub expires_in_s: Option<u64>,
    #[serde(default)]
    pub max_uses: Option<u32>,
}

/// The template file's shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    pub templates: BTreeMap<String, SessionTemplate>,
}

/// Everything `weft_hub::run` needs to know.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Directory for `hub.db` and `admin.token`.
    pub data_dir: PathBuf,
    /// The admin token; `None` reads or creates `DATA/admin.token`.
    pub admin_token: Option<String>,
    /// Base of link URLs (`weft://host:port`, `weft+tls://host:port`);
    /// `None` derives it from the address actually bound.
    pub public_url: Option<String>,
    /// Serve HTTPS and WSS with this certificate and key; `None` serves
    /// plain HTTP, which [`crate::run`] allows only on a loopback address
    /// unless [`HubConfig::insecure`] is set.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Allow plain HTTP on an address that is not loopback (`--insecure`),
    /// for a trusted network or behind a TLS-terminating proxy.
    pub insecure: bool,
    /// Largest WebSocket message accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Most documents one session may hold.
    pub max_docs_per_session: usize,
    /// Frames queued for one slow peer before it is disconnected.
    pub peer_queue: usize,
    /// Logged updates per doc after which a snapshot replaces the log.
    pub compact_after: usize,
    /// A loaded doc with no subscriber is unloaded after this long.
    pub unload_after: Duration,
    /// A connection silent this long (no frame, no pong) is closed.
    pub idle_timeout: Duration,
    /// Time a new WebSocket has to send its auth frame.
    pub auth_timeout: Duration,
    /// Per-peer rate: frames and bytes a second, with bursts. A peer over
    /// it is slowed (its socket is not read until the bucket refills).
    pub rate: crate::limits::RateLimit,
    /// Open WebSocket connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Failed authentications an IP address or a link may make before the
    /// back-off starts.
    pub auth_free_failures: u32,
    /// Longest back-off after repeated failed authentications.
    pub auth_backoff_max: Duration,
    /// Key file for encryption at rest: document updates and snapshots are
    /// sealed before they are stored. Created (mode 0600, random key) if
    /// missing. `None`: stored as they are.
    pub encrypt_at_rest: Option<PathBuf>,
    /// Session templates by name.
    pub templates: BTreeMap<String, SessionTemplate>,
    /// Live sessions one owner may hold. Sessions are created with the
    /// hub's admin token, so today that is the hub's whole count.
    pub max_sessions_per_owner: usize,
}

/// Default of [`HubConfig::max_sessions_per_owner`].
pub const DEFAULT_MAX_SESSIONS_PER_OWNER: usize = 10_000;

/// Default of [`HubConfig::max_frame_bytes`].
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`HubConfig::max_docs_per_session`].
pub const DEFAULT_MAX_DOCS_PER_SESSION: usize = 20_000;
/// Default of [`HubConfig::compact_after`].
pub const DEFAULT_COMPACT_AFTER: usize = 500;
/// Default of [`HubConfig::peer_queue`].
pub const DEFAULT_PEER_QUEUE: usize = 4096;
/// Default sustained frames a second per peer (a fast typist sends tens,
/// presence about 30; a reconnect's resync sends two per document, which
/// the burst absorbs).
pub const DEFAULT_RATE_FRAMES: f64 = 500.0;
/// Default burst of frames per peer: a whole large tree's resync.
pub const DEFAULT_BURST_FRAMES: f64 = 50_000.0;
/// Default sustained bytes a second per peer.
pub const DEFAULT_RATE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// Default burst of bytes per peer: sharing a large workspace at once.
pub const DEFAULT_BURST_BYTES: f64 = 256.0 * 1024.0 * 1024.0;
/// Default of [`HubConfig::max_connections_per_ip`]: a whole team behind
/// one NAT or reverse proxy fits.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 4096;
/// Default of [`HubConfig::auth_free_failures`].
pub const DEFAULT_AUTH_FREE_FAILURES: u32 = 5;
/// Default of [`HubConfig::auth_backoff_max`].
pub const DEFAULT_AUTH_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Smallest accepted [`HubConfig::max_frame_bytes`]: an auth frame must fit.
pub const MIN_FRAME_BYTES: usize = 4096;

impl HubConfig {
    /// Defaults for a hub whose data lives in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            data_dir: data_dir.into(),
            admin_token: None,
            public_url: None,
            tls: None,
            insecure: false,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_docs_per_session: DEFAULT_MAX_DOCS_PER_SESSION,
            peer_queue: DEFAULT_PEER_QUEUE,
            compact_after: DEFAULT_COMPACT_AFTER,
            unload_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            auth_timeout: Duration::from_secs(15),
            rate: crate::limits::RateLimit {
                frames_per_s: DEFAULT_RATE_FRAMES,
                burst_frames: DEFAULT_BURST_FRAMES,
                bytes_per_s: DEFAULT_RATE_BYTES,
                burst_bytes: DEFAULT_BURST_BYTES,
            },
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            auth_free_failures: DEFAULT_AUTH_FREE_FAILURES,
            auth_backoff_max: DEFAULT_AUTH_BACKOFF_MAX,
            encrypt_at_rest: None,
            templates: BTreeMap::new(),
            max_sessions_per_owner: DEFAULT_MAX_SESSIONS_PER_OWNER,
        }
    }
}

impl HubConfig {
    /// Checks the limits; the message says which value to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(format!("--max-frame-bytes must be at least {MIN_FRAME_BYTES}"));
        }
        if self.max_docs_per_session == 0 {
            return Err("--max-docs-per-session must be at least 1".into());
        }
        if self.compact_after == 0 {
            return Err("--compact-after must be at least 1".into());
        }
        if self.peer_queue == 0 {
            return Err("--peer-queue must be at least 1".into());
        }
        let rate = &self.rate;
        if !(rate.frames_per_s > 0.0 && rate.bytes_per_s > 0.0) {
            return Err("--rate-frames and --rate-bytes must be above 0".into());
        }
        if rate.burst_bytes < self.max_frame_bytes as f64 || rate.burst_frames < 1.0 {
            return Err(
                "--burst-bytes must hold at least one frame of --max-frame-bytes, --burst-frames at least 1".into()
            );
        }
        if self.max_sessions_per_owner == 0 {
            return Err("--max-sessions-per-owner must be at least 1".into());
        }
        if self.max_connections_per_ip == 0 {
            return Err("--max-connections-per-ip must be at least 1".into());
        }
        for (name, template) in &self.templates {
            if name.trim().is_empty() || name.len() > 100 {
                return Err(format!("template name {name:?} must have 1 to 100 characters"));
            }
            for link in &template.links {
                if link.expires_in_s.is_some_and(|s| s == 0 || s > 10 * 365 * 24 * 3600) {
                    return Err(format!("template {name:?}: expires_in_s must be between 1 s and 10 years"));
                }
                if link.max_uses.is_some_and(|n| n == 0 || n > 1_000_000) {
                    return Err(format!("template {name:?}: max_uses must be between 1 and 1000000"));
                }
            }
            if template.ignore.iter().any(|p| p.trim().is_empty() || p.len() > 1000) {
                return Err(format!("template {name:?}: ignore patterns must have 1 to 1000 characters"));
            }
        }
        Ok(())
    }
}
