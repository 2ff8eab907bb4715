//! The embedded default store: one SQLite file in WAL mode with
//! `synchronous = FULL`, so a committed transaction survives SIGKILL and
//! power loss.
//!
//! Two connections: one for the document log (only the group-commit writer
//! and document loads use it) and one for metadata (sessions, links,
//! audit), so a slow disk sync of the log never blocks a REST request for
//! longer than SQLite's own locking does.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use weft_protocol::rest::AuditEvent;
use weft_protocol::{LinkId, Role, SessionId};

use super::{LinkRecord, LogOp, NewEvent, SessionRecord, Store, StoreError, StoreResult, StoredDoc};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE TABLE IF NOT EXISTS links (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    role TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    password_hash TEXT,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS links_by_session ON links(session_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_id, id);
CREATE TABLE IF NOT EXISTS doc_snapshots (
    session_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (session_id, doc_id)
);
CREATE TABLE IF NOT EXISTS doc_updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS doc_updates_by_doc ON doc_updates(session_id, doc_id, seq);
";

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    meta: Mutex<Connection>,
    log: Mutex<Connection>,
}

fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL + FULL: every commit syncs the WAL, so a commit that returned is
    // durable, and readers never block the writer.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let meta = open(path)?;
        meta.execute_batch(SCHEMA)?;
        let log = open(path)?;
        Ok(SqliteStore { meta: Mutex::new(meta), log: Mutex::new(log) })
    }

    fn meta(&self) -> StoreResult<std::sync::MutexGuard<'_, Connection>> {
        self.meta.lock().map_err(|_| StoreError::Backend("metadata connection poisoned".into()))
    }

    fn log(&self) -> StoreResult<std::sync::MutexGuard<'_, Connection>> {
        self.log.lock().map_err(|_| StoreError::Backend("log connection poisoned".into()))
    }
}

fn insert_link(conn: &Connection, link: &LinkRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO links (id, session_id, role, token_hash, password_hash, expires_at, revoked_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            link.id.0,
            link.session.0,
            link.role.as_str(),
            link.token_hash,
            link.password_hash,
            link.expires_at,
            link.revoked_at,
            link.created_at
        ],
    )?;
    Ok(())
}

fn row_to_link(row: &rusqlite::Row<'_>) -> rusqlite::Result<(LinkRecord, String)> {
    let role: String = row.get(2)?;
    Ok((
        LinkRecord {
            id: LinkId(row.get(0)?),
            session: SessionId(row.get(1)?),
            role: Role::Viewer,
            token_hash: row.get(3)?,
            password_hash: row.get(4)?,
            expires_at: row.get(5)?,
            revoked_at: row.get(6)?,
            created_at: row.get(7)?,
        },
        role,
    ))
}

fn finish_link(found: Option<(LinkRecord, String)>) -> StoreResult<Option<LinkRecord>> {
    match found {
        None => Ok(None),
        Some((mut link, role)) => {
            link.role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("link role {role:?}")))?;
            Ok(Some(link))
        }
    }
}

const LINK_COLUMNS: &str = "id, session_id, role, token_hash, password_hash, expires_at, revoked_at, created_at";

fn row_to_session(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId(row.get(0)?),
        name: row.get(1)?,
        public: row.get::<_, i64>(2)? != 0,
        created_at: row.get(3)?,
    })
}

impl Store for SqliteStore {
    fn create_session(&self, session: &SessionRecord, owner_link: &LinkRecord) -> StoreResult<()> {
        let mut conn = self.meta()?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO sessions (id, name, public, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![session.id.0, session.name, session.public as i64, session.created_at],
        )?;
        insert_link(&tx, owner_link)?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        let conn = self.meta()?;
        Ok(conn
            .query_row(
                "SELECT id, name, public, created_at FROM sessions WHERE id = ?1 AND deleted_at IS NULL",
                [&id.0],
                row_to_session,
            )
            .optional()?)
    }

    fn sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let conn = self.meta()?;
        let mut stmt = conn.prepare(
            "SELECT id, name, public, created_at FROM sessions WHERE deleted_at IS NULL ORDER BY created_at, id",
        )?;
        let rows = stmt.query_map([], row_to_session)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_session(&self, id: &SessionId, at: i64) -> StoreResult<bool> {
        // Metadata first (a deleted session refuses new appends), then the
        // documents on the log connection, so no late append survives.
        let deleted = {
            let mut conn = self.meta()?;
            let tx = conn.transaction()?;
            let n = tx.execute(
                "UPDATE sessions SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
                params![id.0, at],
            )?;
            tx.execute(
                "UPDATE links SET revoked_at = ?2 WHERE session_id = ?1 AND revoked_at IS NULL",
                params![id.0, at],
            )?;
            tx.commit()?;
            n > 0
        };
        if deleted {
            let mut log = self.log()?;
            let tx = log.transaction()?;
            tx.execute("DELETE FROM doc_updates WHERE session_id = ?1", [&id.0])?;
            tx.execute("DELETE FROM doc_snapshots WHERE session_id = ?1", [&id.0])?;
            tx.commit()?;
        }
        Ok(deleted)
    }

    fn create_link(&self, link: &LinkRecord) -> StoreResult<()> {
        insert_link(&*self.meta()?, link)?;
        Ok(())
    }

    fn link_by_token_hash(&self, hash: &[u8]) -> StoreResult<Option<LinkRecord>> {
        let conn = self.meta()?;
        let found = conn
            .query_row(&format!("SELECT {LINK_COLUMNS} FROM links WHERE token_hash = ?1"), [hash], row_to_link)
            .optional()?;
        finish_link(found)
    }

    fn link(&self, session: &SessionId, id: &LinkId) -> StoreResult<Option<LinkRecord>> {
        let conn = self.meta()?;
        let found = conn
            .query_row(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE id = ?1 AND session_id = ?2"),
                [&id.0, &session.0],
                row_to_link,
            )
            .optional()?;
        finish_link(found)
    }

    fn revoke_link(&self, session: &SessionId, id: &LinkId, at: i64) -> StoreResult<bool> {
        let conn = self.meta()?;
        let n = conn.execute(
            "UPDATE links SET revoked_at = ?3 WHERE id = ?1 AND session_id = ?2 AND revoked_at IS NULL",
            params![id.0, session.0, at],
        )?;
        Ok(n > 0)
    }

    fn append_event(&self, event: &NewEvent) -> StoreResult<i64> {
        let conn = self.meta()?;
        conn.execute(
            "INSERT INTO events (session_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            params![event.session.as_ref().map(|s| s.0.as_str()), event.at_ms, event.kind, event.detail.to_string()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn events(&self, session: &SessionId, after: i64, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let conn = self.meta()?;
        let mut stmt = conn.prepare(
            "SELECT id, at_ms, session_id, kind, detail FROM events WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![session.0, after, limit as i64], |row| {
            let detail: String = row.get(4)?;
            Ok(AuditEvent {
                id: row.get(0)?,
                at_ms: row.get(1)?,
                session: row.get::<_, Option<String>>(2)?.map(SessionId),
                kind: row.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn doc_ids(&self, session: &SessionId) -> StoreResult<Vec<String>> {
        let conn = self.log()?;
        let mut stmt = conn.prepare(
            "SELECT doc_id FROM doc_snapshots WHERE session_id = ?1
             UNION SELECT doc_id FROM doc_updates WHERE session_id = ?1 ORDER BY 1",
        )?;
        let rows = stmt.query_map([&session.0], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn load_doc(&self, session: &SessionId, doc: &str) -> StoreResult<StoredDoc> {
        let conn = self.log()?;
        let snapshot = conn
            .query_row(
                "SELECT data FROM doc_snapshots WHERE session_id = ?1 AND doc_id = ?2",
                [&session.0, doc],
                |row| row.get(0),
            )
            .optional()?;
        let mut stmt =
            conn.prepare("SELECT data FROM doc_updates WHERE session_id = ?1 AND doc_id = ?2 ORDER BY seq")?;
        let updates = stmt.query_map([&session.0, doc], |row| row.get(0))?.collect::<Result<_, _>>()?;
        Ok(StoredDoc { snapshot, updates })
    }

    fn write_log(&self, ops: &[LogOp]) -> StoreResult<()> {
        let mut conn = self.log()?;
        let tx = conn.transaction()?;
        {
            let mut append = tx.prepare_cached(
                "INSERT INTO doc_updates (session_id, doc_id, data)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND deleted_at IS NULL)",
            )?;
            for op in ops {
                match op {
                    LogOp::Append { session, doc, update } => {
                        append.execute(params![session.0, doc, update])?;
                    }
                    LogOp::Compact { session, doc, snapshot } => {
                        tx.execute("DELETE FROM doc_updates WHERE session_id = ?1 AND doc_id = ?2", [&session.0, doc])?;
                        tx.execute(
                            "INSERT INTO doc_snapshots (session_id, doc_id, data)
                             SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND deleted_at IS NULL)
                             ON CONFLICT (session_id, doc_id) DO UPDATE SET data = excluded.data",
                            params![session.0, doc, snapshot],
                        )?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
