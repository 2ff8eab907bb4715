//! Counters and gauges for `/metrics` (Prometheus text format 0.0.4).
//! Plain atomics: reading them never blocks the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The hub's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    pub rooms: AtomicI64,
    pub docs_loaded: AtomicI64,
    pub updates: AtomicU64,
    pub updates_refused: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_malformed: AtomicU64,
    pub peers_overloaded: AtomicU64,
    pub connections_refused: AtomicU64,
    pub peers_throttled: AtomicU64,
}

/// Adds `n` to a counter.
pub fn inc(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds `n` (possibly negative) to a gauge.
pub fn add(gauge: &AtomicI64, n: i64) {
    gauge.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Renders every metric, plus the log writer's counters.
    pub fn render(&self, commits: u64, log_ops: u64) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "weft_connections",
                "Open WebSocket connections (both endpoints).",
                self.connections.load(Ordering::Relaxed),
            ),
            ("weft_sessions_loaded", "Sessions with a room in memory.", self.rooms.load(Ordering::Relaxed)),
            ("weft_docs_loaded", "Documents loaded in memory.", self.docs_loaded.load(Ordering::Relaxed)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let counters = [
            ("weft_updates_total", "Document updates applied and persisted.", self.updates.load(Ordering::Relaxed)),
            (
                "weft_updates_refused_total",
                "Updates refused (viewer writes).",
                self.updates_refused.load(Ordering::Relaxed),
            ),
            ("weft_bytes_in_total", "WebSocket payload bytes received.", self.bytes_in.load(Ordering::Relaxed)),
            ("weft_bytes_out_total", "WebSocket payload bytes sent.", self.bytes_out.load(Ordering::Relaxed)),
            (
                "weft_frames_malformed_total",
                "Frames refused as malformed.",
                self.frames_malformed.load(Ordering::Relaxed),
            ),
            (
                "weft_peers_overloaded_total",
                "Peers disconnected for reading too slowly.",
                self.peers_overloaded.load(Ordering::Relaxed),
            ),
            (
                "weft_connections_refused_total",
                "Connections refused over the per-address cap.",
                self.connections_refused.load(Ordering::Relaxed),
            ),
            (
                "weft_peers_throttled_total",
                "Times a peer was slowed down for exceeding its rate.",
                self.peers_throttled.load(Ordering::Relaxed),
            ),
            ("weft_store_commits_total", "Durable log transactions (group commits).", commits),
            ("weft_store_ops_total", "Log operations written.", log_ops),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        out
    }
}
