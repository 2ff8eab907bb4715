//! weft-workspace: the disk side of a shared workspace.
//!
//! [`scan`] decides which files under a root are part of a session — the
//! host's `.gitignore`, `.weftignore` and a default ignore set are
//! respected, binary and very large files are listed but not synced — and
//! [`write`] puts a file under a root safely: never outside it, never
//! through a symlink, and atomically (temp file + rename), so no tool ever
//! reads half a file. [`mirror`] keeps such a directory in sync with a
//! session, both ways.

pub mod mirror;
pub mod scan;
pub mod write;

pub use scan::{Entry, EntryKind, ScanOptions, scan};
pub use write::{WriteError, write_atomic};
