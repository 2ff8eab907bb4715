//! Control frames of the `/ws/{session}` protocol: JSON in WebSocket text
//! frames, tagged by `"type"`.
//!
//! The first frame a client sends is [`ClientControl::Auth`]; the hub
//! answers [`ServerControl::Welcome`] or an [`ServerControl::Error`]
//! followed by a close with [`ErrorCode::close_code`]. Afterwards text
//! frames carry the rest of this module and binary frames carry documents
//! (see [`crate::frame`]).

use serde::{Deserialize, Serialize};

use crate::doc_id::DocId;
use crate::ids::{ClientKind, PeerId, Role, SessionId};

/// Control frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientControl {
    /// Must be the first frame. Credentials travel here, never in the URL.
    Auth {
        /// A link token (the part after `#` in a link URL) or the admin token.
        token: String,
        /// The link's password, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Display name of the participant (1–100 characters).
        name: String,
        /// `"user"` (default) or `"agent"`.
        #[serde(default)]
        kind: ClientKind,
        /// The client's [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// A random id the client keeps across its reconnects (1–64
        /// characters): a link with a maximum number of uses counts distinct
        /// clients, so a reconnect is not a new use. Without it every
        /// connection counts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Stop receiving a document's updates and awareness (for example when
    /// the editor closes the file). Sending sync step 1 for it subscribes again.
    Unsubscribe {
        /// The document.
        doc: DocId,
    },
}

/// What a valid first frame carries, once [`parse_auth`] has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The link token or admin token.
    pub token: String,
    /// The link's password, if one was given.
    pub password: Option<String>,
    /// The display name, trimmed (see [`clean_name`]).
    pub name: String,
    /// Person or agent.
    pub kind: ClientKind,
    /// The client's own id, if it sent a valid one.
    pub client: Option<String>,
}

/// Parses the first text frame of a `/ws/` connection as the hub does: it
/// must be an `auth` frame of this [`crate::PROTOCOL_VERSION`] with a valid
/// name. The error is the code and message the hub sends before it closes.
/// Credentials are only parsed here, not checked.
pub fn parse_auth(text: &str) -> Result<AuthRequest, (ErrorCode, String)> {
    let (token, password, name, kind, client) = match serde_json::from_str::<ClientControl>(text) {
        Ok(ClientControl::Auth { token, password, name, kind, protocol, client }) => {
            if protocol != crate::PROTOCOL_VERSION {
                let version = crate::PROTOCOL_VERSION;
                let msg =
                    format!("this hub speaks weft protocol {version}, the client {protocol}: update the older side");
                return Err((ErrorCode::VersionMismatch, msg));
            }
            let client = match client {
                Some(c) if c.is_empty() || c.len() > 64 || c.chars().any(char::is_control) => {
                    return Err((ErrorCode::Malformed, "client must have 1 to 64 printable characters".into()));
                }
                other => other,
            };
            (token, password, name, kind, client)
        }
        Ok(_) => return Err((ErrorCode::Malformed, "the first frame must be an auth frame".into())),
        Err(err) => return Err((ErrorCode::Malformed, format!("the auth frame is not valid: {err}"))),
    };
    let name = clean_name(&name)
        .ok_or_else(|| (ErrorCode::Malformed, "name must have 1 to 100 printable characters".to_owned()))?;
    Ok(AuthRequest { token, password, name, kind, client })
}

/// A participant's display name, trimmed, if it then has 1 to 100
/// characters and no control character.
pub fn clean_name(name: &str) -> Option<String> {
    let name = name.trim();
    let ok = !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

/// Control frames the hub sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerControl {
    /// Authentication succeeded.
    Welcome {
        /// This connection's peer id.
        peer: PeerId,
        /// What this connection may do.
        role: Role,
        /// The session joined.
        session: SessionInfo,
        /// The hub's protocol version.
        protocol: u32,
        /// Largest frame the hub accepts, in bytes.
        max_frame_bytes: usize,
    },
    /// Something the client sent was refused. When the hub closes the
    /// connection because of it, this frame comes right before the close.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// What happened and what to do about it, for a human.
        message: String,
        /// The document concerned, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc: Option<DocId>,
    },
    /// The first `seq` update-carrying binary frames (frames whose first
    /// y-protocols message is a sync step 2 or update, counted from 1 on
    /// this connection, refused and malformed ones included; only frames
    /// whose doc-id prefix cannot be read are not counted) have been
    /// handled, and every change they carried is synced to the hub's disk.
    /// Cumulative and monotonic.
    Ack {
        /// Count of update-carrying frames handled.
        seq: u64,
    },
    /// The session's owner changed what this connection may do (for
    /// example an editor demoted to viewer): it applies from the next frame
    /// on. A client should stop sending edits when it becomes a viewer.
    Role {
        /// The new role.
        role: Role,
    },
    /// The hub is disconnecting this peer (link revoked, session deleted,
    /// hub shutting down). The close that follows carries the same code.
    Kick {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
}

/// The session a peer joined, as the welcome frame describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: SessionId,
    /// Display name given at creation.
    pub name: String,
}

/// Error codes of the hub, shared by WebSocket error frames, close codes and
/// REST error bodies. Wire names never change meaning and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame or request could not be parsed.
    Malformed,
    /// No token, or a token that is unknown, expired or revoked.
    Unauthorized,
    /// A valid token without the right to do this.
    Forbidden,
    /// The link needs a password and none or a wrong one was given.
    BadPassword,
    /// No such session (or document, or link).
    NotFound,
    /// The client speaks another protocol version.
    VersionMismatch,
    /// A frame or body above the configured size limit.
    TooLarge,
    /// A configured limit (documents per session, ...) was reached.
    LimitReached,
    /// The peer did not read its frames fast enough and was disconnected;
    /// reconnect and resynchronise.
    Overloaded,
    /// The session was deleted.
    Gone,
    /// The hub failed (storage error, ...); reconnect and resynchronise.
    Internal,
    /// The hub is shutting down.
    ShuttingDown,
    /// Nothing (no frame, no pong) arrived for too long; reconnect.
    Timeout,
    /// Too much, too fast: too many failed sign-ins (wait and retry), or
    /// frames above the per-peer rate (they are slowed down, not dropped).
    RateLimited,
}

impl ErrorCode {
    /// The WebSocket close code the hub uses when it closes a connection for
    /// this reason (4000 + the matching HTTP status where one exists).
    pub fn close_code(self) -> u16 {
        match self {
            ErrorCode::Malformed => 4400,
            ErrorCode::Unauthorized | ErrorCode::BadPassword => 4401,
            ErrorCode::Forbidden => 4403,
            ErrorCode::NotFound => 4404,
            ErrorCode::Gone => 4410,
            ErrorCode::TooLarge => 1009,
            ErrorCode::VersionMismatch => 4426,
            ErrorCode::LimitReached | ErrorCode::Overloaded | ErrorCode::RateLimited => 4429,
            ErrorCode::Internal => 1011,
            ErrorCode::ShuttingDown => 1001,
            ErrorCode::Timeout => 4408,
        }
    }

    /// The HTTP status the REST API answers with for this reason.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::Malformed => 400,
            ErrorCode::Unauthorized | ErrorCode::BadPassword => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Gone => 410,
            ErrorCode::TooLarge => 413,
            ErrorCode::VersionMismatch => 426,
            ErrorCode::LimitReached | ErrorCode::Overloaded | ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::ShuttingDown => 503,
            ErrorCode::Timeout => 408,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_frame_parses_with_defaults() {
        let frame: ClientControl =
            serde_json::from_str(r#"{"type":"auth","token":"t","name":"Ada","protocol":1}"#).expect("parse");
        assert_eq!(
            frame,
            ClientControl::Auth {
                token: "t".into(),
                password: None,
                name: "Ada".into(),
                kind: ClientKind::User,
                protocol: 1,
                client: None,
            }
        );
    }

    #[test]
    fn parse_auth_checks_version_and_name() {
        let ok = parse_auth(r#"{"type":"auth","token":"t","name":"  Ada ","protocol":1}"#).expect("valid");
        assert_eq!(
            ok,
            AuthRequest { token: "t".into(), password: None, name: "Ada".into(), kind: ClientKind::User, client: None }
        );
        let code = |text: &str| parse_auth(text).map(|_| ()).map_err(|(code, _)| code);
        assert_eq!(code(r#"{"type":"auth","token":"t","name":"Ada","protocol":99}"#), Err(ErrorCode::VersionMismatch));
        assert_eq!(code(r#"{"type":"auth","token":"t","name":" ","protocol":1}"#), Err(ErrorCode::Malformed));
        assert_eq!(code(r#"{"type":"auth","token":"t","name":"a\u0007","protocol":1}"#), Err(ErrorCode::Malformed));
        assert_eq!(code(r#"{"type":"unsubscribe","doc":"a"}"#), Err(ErrorCode::Malformed));
        assert_eq!(code("{"), Err(ErrorCode::Malformed));
        assert_eq!(clean_name(&"é".repeat(100)), Some("é".repeat(100)));
        assert_eq!(clean_name(&"é".repeat(101)), None);
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        for bad in [
            r#"{"type":"auth","token":"t","name":"A","protocol":1,"extra":1}"#,
            r#"{"type":"hello"}"#,
            r#"{"type":"unsubscribe","doc":"../x"}"#,
        ] {
            assert!(serde_json::from_str::<ClientControl>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_have_stable_shapes() {
        let ack = serde_json::to_value(ServerControl::Ack { seq: 3 }).expect("json");
        assert_eq!(ack, serde_json::json!({"type": "ack", "seq": 3}));
        let err =
            serde_json::to_value(ServerControl::Error { code: ErrorCode::Forbidden, message: "m".into(), doc: None })
                .expect("json");
        assert_eq!(err, serde_json::json!({"type": "error", "code": "forbidden", "message": "m"}));
    }
}
