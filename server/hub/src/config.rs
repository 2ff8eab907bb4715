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

impl HubConfig {
    /// Defaults for a hub whose data lives in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            data_dir: data_dir.into(),
            admin_token: None,
            public_url: None,
            max_frame_bytes: 16 * 1024 * 1024,
            max_docs_per_session: 20_000,
            peer_queue: 4096,
            compact_after: 500,
            unload_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            auth_timeout: Duration::from_secs(15),
        }
    }
}
