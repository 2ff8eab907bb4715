//! Storage behind a small trait: sessions, links, the audit log and the
//! per-document update logs with their snapshots.
//!
//! The rooms never see SQL: they talk to [`Store`] (blocking calls, run on
//! the blocking pool or the log writer's thread) and to the group-commit
//! [`writer::LogWriter`]. SQLite ([`sqlite::SqliteStore`]) is the embedded
//! default and, today, the only implementation; a PostgreSQL store would
//! implement the same trait without touching the rooms.

pub mod seal;
pub mod sqlite;
pub mod writer;

use weft_protocol::rest::AuditEvent;
use weft_protocol::{LinkId, Role, SessionId};

/// A storage failure. The hub logs it and answers `internal`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Backend(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Encryption at rest: the key does not fit the database (wrong key,
    /// no key for an encrypted database, a key for a plain one).
    #[error("encryption at rest: {0}")]
    Key(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub name: String,
    pub public: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A share link as stored: only the hash of its secret.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    pub id: LinkId,
    pub session: SessionId,
    pub role: Role,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// argon2id PHC string, if the link has a password.
    pub password_hash: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds.
    pub revoked_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// At most this many distinct clients may join with it.
    pub max_uses: Option<u32>,
    /// Whom the link was made for (an invitation), for the audit log.
    pub invitee: Option<String>,
}

/// An audit event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub session: Option<SessionId>,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub kind: &'static str,
    pub detail: serde_json::Value,
}

/// A document as stored: the latest snapshot and the updates logged after it.
#[derive(Debug, Default)]
pub struct StoredDoc {
    pub snapshot: Option<Vec<u8>>,
    pub updates: Vec<Vec<u8>>,
}

/// One write to a document log, executed by the group-commit writer.
#[derive(Debug, Clone)]
pub enum LogOp {
    /// Append an update to the doc's log.
    Append { session: SessionId, doc: String, update: Vec<u8> },
    /// Replace the doc's snapshot and drop every logged update: the caller
    /// guarantees `snapshot` contains all updates it appended before.
    Compact { session: SessionId, doc: String, snapshot: Vec<u8> },
}

/// What the hub needs from storage. Implementations are blocking; every
/// method is atomic on its own.
pub trait Store: Send + Sync + 'static {
    fn create_session(&self, session: &SessionRecord, owner_link: &LinkRecord) -> StoreResult<()>;
    /// A live (not deleted) session.
    fn session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>>;
    /// Every live session, oldest first.
    fn sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Marks the session deleted, revokes its links and drops its documents.
    /// `false` if it did not exist.
    fn delete_session(&self, id: &SessionId, at: i64) -> StoreResult<bool>;

    fn create_link(&self, link: &LinkRecord) -> StoreResult<()>;
    fn link_by_token_hash(&self, hash: &[u8]) -> StoreResult<Option<LinkRecord>>;
    fn link(&self, session: &SessionId, id: &LinkId) -> StoreResult<Option<LinkRecord>>;
    /// `false` if there is no such link or it was already revoked.
    fn revoke_link(&self, session: &SessionId, id: &LinkId, at: i64) -> StoreResult<bool>;
    /// Records that `client` joins with `link`, which allows `max` distinct
    /// clients: `false` if it is full (a client seen before always passes).
    fn use_link(&self, link: &LinkId, client: &str, max: u32, at: i64) -> StoreResult<bool>;
    /// Gives a live link another role; `false` if there is no such live link.
    fn set_link_role(&self, session: &SessionId, id: &LinkId, role: Role) -> StoreResult<bool>;

    /// Appends an audit event; returns its id (the cursor).
    fn append_event(&self, event: &NewEvent) -> StoreResult<i64>;

    /// Appends audit events in order, in one write where the store can.
    fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        for event in events {
            self.append_event(event)?;
        }
        Ok(())
    }
    /// Events of `session` with id > `after`, oldest first, at most `limit`.
    fn events(&self, session: &SessionId, after: i64, limit: usize) -> StoreResult<Vec<AuditEvent>>;

    /// Ids of the documents a session holds.
    fn doc_ids(&self, session: &SessionId) -> StoreResult<Vec<String>>;
    /// A document's snapshot and log (empty if it has none).
    fn load_doc(&self, session: &SessionId, doc: &str) -> StoreResult<StoredDoc>;
    /// Executes `ops` in order in one transaction and returns once it is
    /// durable on disk. Appends to a deleted session are dropped.
    fn write_log(&self, ops: &[LogOp]) -> StoreResult<()>;
}
