//! The hub's typed configuration, with every default in one place.
//! `weft hub` fills it from flags and environment (see docs/configuration.md).

use std::path::PathBuf;
use std::time::Duration;

/// Everything `weft_hub::run` needs to know.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Directory for `hub.db` and `admin.token`.
    pub data_dir: PathBuf,
    /// The admin token; `None` reads or creates `DATA/admin.token`.
    pub admin_token: Option<String>,
    /// Base of link URLs (`weft://host:port`); `None` derives it from the
    /// address actually bound.
    pub public_url: Option<String>,
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
}

/// Default of [`HubConfig::max_frame_bytes`].
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`HubConfig::max_docs_per_session`].
pub const DEFAULT_MAX_DOCS_PER_SESSION: usize = 20_000;
/// Default of [`HubConfig::compact_after`].
pub const DEFAULT_COMPACT_AFTER: usize = 500;
/// Smallest accepted [`HubConfig::max_frame_bytes`]: an auth frame must fit.
pub const MIN_FRAME_BYTES: usize = 4096;

impl HubConfig {
    /// Defaults for a hub whose data lives in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            data_dir: data_dir.into(),
            admin_token: None,
            public_url: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_docs_per_session: DEFAULT_MAX_DOCS_PER_SESSION,
            peer_queue: 4096,
            compact_after: DEFAULT_COMPACT_AFTER,
            unload_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            auth_timeout: Duration::from_secs(15),
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
            return Err("the peer queue must hold at least 1 frame".into());
        }
        Ok(())
    }
}
