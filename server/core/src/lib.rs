//! weft-core: the sans-IO heart of weft.
//!
//! Bytes in, messages out: this crate holds yrs documents and speaks
//! y-protocols (sync and awareness) over byte slices. It owns no task, no
//! socket, no clock and no randomness (client ids are passed in), so every
//! behaviour here is tested deterministically. The hub and the bridge wrap
//! it with I/O.

pub mod changeset;
pub mod held;
pub mod positions;
pub mod presence;
pub mod replica;
pub mod shared_doc;

pub use shared_doc::{Handled, SharedDoc, SyncError};

/// Name of the `Y.Text` that holds a file's content in a file doc.
pub const CONTENT_TEXT: &str = "content";
