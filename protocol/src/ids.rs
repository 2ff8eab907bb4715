//! Identifier newtypes and small enums shared by every wire message.
//!
//! Ids are opaque to clients: a `SessionId` or `LinkId` is a short random
//! string chosen by the hub, a `PeerId` a number unique within one hub
//! process. Nothing here generates ids (that needs randomness, which lives
//! in the hub).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A shared workspace on a hub. URL-safe, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl SessionId {
    /// Whether `s` could be a session id: 1–64 characters of `[A-Za-z0-9_-]`.
    /// Used to refuse hostile path segments before any lookup.
    pub fn is_well_formed(s: &str) -> bool {
        is_token_like(s)
    }
}

/// A share link of a session (not its secret: the id is shown in lists and
/// audit events, the secret never is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkId(pub String);

impl LinkId {
    /// Same shape as a session id.
    pub fn is_well_formed(s: &str) -> bool {
        is_token_like(s)
    }
}

fn is_token_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// One connection of one participant to one hub (a participant with two
/// editor windows has two peers). Unique within a hub process, never reused
/// while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

macro_rules! display_inner {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}
display_inner!(SessionId, LinkId, PeerId);

/// What a link (and so every peer that joined with it) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Edits, creates and revokes links, reads the audit log, deletes the session.
    Owner,
    /// Edits documents.
    Editor,
    /// Receives everything; every update it sends is refused.
    Viewer,
    /// Edits like an editor; shown as an automated participant.
    Agent,
}

impl Role {
    /// Whether updates from this role are applied.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::Viewer)
    }

    /// Whether this role may manage links, read the audit log and delete.
    pub fn is_owner(self) -> bool {
        matches!(self, Role::Owner)
    }

    /// The wire name (`"owner"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Agent => "agent",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "editor" => Role::Editor,
            "viewer" => Role::Viewer,
            "agent" => Role::Agent,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a peer is a person at an editor or an automated participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    #[default]
    User,
    Agent,
}

impl ClientKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::User => "user",
            ClientKind::Agent => "agent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in [Role::Owner, Role::Editor, Role::Viewer, Role::Agent] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).expect("serialize");
            assert_eq!(json, format!("\"{role}\""));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn session_ids_refuse_path_tricks() {
        assert!(SessionId::is_well_formed("abc_DEF-123"));
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!SessionId::is_well_formed(bad), "{bad:?}");
        }
    }
}
