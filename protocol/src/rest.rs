//! Bodies of the hub's REST API (`/api/...`), all JSON.
//!
//! Every route takes `Authorization: Bearer TOKEN` (the admin token or a
//! link token). Errors are `{"error": {"code": ErrorCode, "message": "..."}}`
//! with the status of [`crate::ErrorCode::http_status`].

use serde::{Deserialize, Serialize};

use crate::control::ErrorCode;
use crate::ids::{ClientKind, LinkId, PeerId, Role, SessionId};

/// `POST /api/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Display name, 1–200 characters.
    pub name: String,
    /// A public session can be read (REST `GET`, and joined as a viewer on
    /// both WebSocket endpoints) without any token.
    #[serde(default)]
    pub public: bool,
    /// Start from one of the hub's session templates (`weft hub
    /// --templates FILE`): its links are created with the session, and its
    /// `public` flag and ignore patterns apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

/// `201` answer to [`CreateSession`]: the session and its first owner link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub id: SessionId,
    pub name: String,
    pub owner: LinkCreated,
    /// Links the template made, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkCreated>,
    /// The template's ignore patterns (gitignore syntax) for whoever shares
    /// a directory into the session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// `POST /api/sessions/{id}/links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    pub role: Role,
    /// Seconds from now until the link stops working (1 s – 10 years).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
    /// If set, joining also needs this password (1–1024 characters).
    #[serde(default)]
    pub password: Option<String>,
    /// If set, at most this many distinct clients may join with the link
    /// (1–1,000,000; a client reconnecting is not a new use).
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// An invitation: the person or agent the link is for (1–100
    /// characters). The audit log names them for every join with it.
    #[serde(default)]
    pub invitee: Option<String>,
}

/// `PATCH /api/sessions/{id}/participants/{peer}` and
/// `PATCH /api/sessions/{id}/links/{link}`: a new role (not `owner`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    pub role: Role,
}

/// `201` answer to [`CreateLink`]. The token is shown this once; the hub
/// keeps only its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkCreated {
    pub id: LinkId,
    /// The secret. Send it as a bearer token or in the `auth` frame.
    pub token: String,
    /// `weft://HOST:PORT/s/SESSION#TOKEN` (the base can be changed with the
    /// hub's `--public-url`): everything a client needs to join.
    pub url: String,
    pub role: Role,
    /// Unix seconds, if the link expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Whether joining needs a password.
    pub password: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitee: Option<String>,
}

/// A session as `GET /api/sessions[/{id}]` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: SessionId,
    pub name: String,
    pub public: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Peers connected now.
    pub participants: usize,
    /// Ids of the documents the session holds (file paths and `_session`).
    pub docs: Vec<String>,
    /// The caller's role in this session (`owner` for the admin).
    pub role: Role,
}

/// `GET /api/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// A connected peer, as `GET /api/sessions/{id}/participants` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub peer: PeerId,
    pub name: String,
    pub kind: ClientKind,
    pub role: Role,
    /// The link it joined with (absent for the admin token and public access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkId>,
    /// `"ws"` (weft protocol) or `"y"` (plain y-websocket, then also `doc`).
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// Unix seconds.
    pub connected_at: i64,
}

/// `GET /api/sessions/{id}/participants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantList {
    pub participants: Vec<Participant>,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Cursor: pass it as `after` to read what follows.
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub session: Option<SessionId>,
    /// `session.created`, `session.deleted`, `link.created`, `link.revoked`,
    /// `peer.joined`, `peer.left`, `access.denied`.
    pub kind: String,
    /// Kind-specific details (peer, name, role, link, reason, endpoint...).
    pub detail: serde_json::Value,
}

/// `GET /api/sessions/{id}/events?after=CURSOR&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<AuditEvent>,
    /// Cursor for the next page (the last event's id, or `after` if none).
    pub next: i64,
}

/// Error body of every failed REST call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}
