//! Group commit for the document logs.
//!
//! One thread owns all log writes. It takes the first waiting request,
//! then everything else that queued up while it was busy (up to a cap), and
//! writes the lot in one transaction with one disk sync. Under light load
//! that is one sync per update, as fast as the disk allows; under heavy
//! load the batch grows instead of the queue, so throughput rises with load
//! rather than collapsing at one sync per keystroke. Each request's
//! callback runs after its transaction is durable (or failed).

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
