//! Group commit for the document logs.
//!
//! One thread owns all log writes. It takes the first waiting request,
//! then everything else that queues up within [`COMMIT_WINDOW`] (up to a
//! cap), and writes the lot in one transaction with one disk sync: at most
//! one sync per window, however many updates arrive, and under heavy load
//! the batch grows instead of the queue, so throughput rises with load
//! rather than collapsing at one sync per keystroke. Each request's
//! callback runs after its transaction is durable (or failed).
//!
//! [`AuditWriter`] does the same for audit events from hot paths (peers
//! joining and leaving, edit summaries, refused attempts): a hundred peers
//! joining at once cost one transaction, not a hundred disk syncs that
//! every session lookup would queue behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{LogOp, Store, StoreError};

/// Called once the request's ops are durable (`Ok`) or could not be written.
pub type Done = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

struct Request {
    ops: Vec<LogOp>,
    done: Done,
}

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 4096;

/// How long the writer gathers requests after the first before it commits.
/// Relays do not wait for the commit (decision 0010), only acks do, so a
/// short window costs acks up to 10 ms and saves most of the commits (and their
/// disk syncs, ~30 % of the hub's CPU at 500 updates/s without it).
const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
}

/// Handle to the writer thread. Dropping every handle lets the thread
/// drain its queue and exit; [`LogWriter::join`] waits for that.
#[derive(Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Request>,
    stats: Arc<WriterStats>,
}

impl LogWriter {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<(LogWriter, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Request>();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let handle =
            std::thread::Builder::new().name("weft-log-writer".into()).spawn(move || run(store, rx, thread_stats))?;
        Ok((LogWriter { tx, stats }, handle))
    }

    /// Queues `ops` (executed in order, after everything queued before) and
    /// calls `done` once they are durable. If the writer is gone, `done` is
    /// called at once with an error.
    pub fn submit(&self, ops: Vec<LogOp>, done: Done) {
        if let Err(mpsc::SendError(req)) = self.tx.send(Request { ops, done }) {
            (req.done)(Err(Arc::new(StoreError::Backend("log writer has stopped".into()))));
        }
    }

    /// Commit and op counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

fn run(store: Arc<dyn Store>, rx: mpsc::Receiver<Request>, stats: Arc<WriterStats>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Sleep through the window rather than wait on the channel: a
        // receiver blocked in `recv` is woken by every send, which on a busy
        // hub is a context switch per update; a sleeping one costs nothing
        // to send to.
        std::thread::sleep(COMMIT_WINDOW);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let ops: Vec<LogOp> = batch.iter_mut().flat_map(|r| std::mem::take(&mut r.ops)).collect();
        let result = store.write_log(&ops).map_err(Arc::new);
        if let Err(err) = &result {
            tracing::error!(%err, ops = ops.len(), "document log write failed");
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
        for req in batch {
            (req.done)(result.clone());
        }
    }
    tracing::debug!("log writer drained and stopped");
}

/// Most audit events in one transaction.
const MAX_AUDIT_BATCH: usize = 4096;

/// Handle to the audit writer thread; dropping every handle lets it write
/// what is queued and exit.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<super::NewEvent>,
}

impl AuditWriter {
    /// Starts the audit writer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<(AuditWriter, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<super::NewEvent>();
        let handle = std::thread::Builder::new().name("weft-audit-writer".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_AUDIT_BATCH {
                    match rx.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                if let Err(err) = store.append_events(&batch) {
                    tracing::error!(%err, events = batch.len(), "could not write audit events");
                }
            }
        })?;
        Ok((AuditWriter { tx }, handle))
    }

    /// Queues `event`; it is written with whatever else is queued.
    pub fn append(&self, event: super::NewEvent) {
        if self.tx.send(event).is_err() {
            tracing::error!("the audit writer has stopped; an audit event was not written");
        }
    }
}
